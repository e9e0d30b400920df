#include "api/objects.h"

#include <cstdio>
#include <ctime>
#include <random>

namespace vmhost::api {

namespace {

std::string joinErrors(const FieldErrors& errs) {
  std::string out;
  for (const auto& e : errs) {
    if (!out.empty()) out += "; ";
    out += e.toString();
  }
  return out;
}

template <typename T>
Json storedJson(const T& obj) {
  Json j = encode(obj);
  j["metadata"].erase("resourceVersion");
  return j;
}

}  // namespace

store::Key virtualMachineKey(const std::string& ns, const std::string& name) {
  return store::Key{kVirtualMachinesResource, ns, name};
}

store::Key nodeKey(const std::string& name) { return store::Key{kNodesResource, "", name}; }

std::string storeValue(const VirtualMachine& vm) { return storedJson(vm).dump(); }
std::string storeValue(const Node& node) { return storedJson(node).dump(); }

Result<VirtualMachine> decodeStoredVirtualMachine(const store::StoredObject& object) {
  Json j = Json::parse(object.value, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Error{VMHOST_ERR_DATA_LOSS, object.key.describe() + ": stored value is not JSON", false};
  }
  auto d = decodeVirtualMachine(j, FieldValidation::kIgnore);
  if (!d.ok()) {
    return Error{VMHOST_ERR_DATA_LOSS, object.key.describe() + ": " + joinErrors(d.errors), false};
  }
  d.value.metadata.resourceVersion = std::to_string(object.modRevision);
  return std::move(d.value);
}

Result<Node> decodeStoredNode(const store::StoredObject& object) {
  Json j = Json::parse(object.value, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Error{VMHOST_ERR_DATA_LOSS, object.key.describe() + ": stored value is not JSON", false};
  }
  auto d = decodeNode(j, FieldValidation::kIgnore);
  if (!d.ok()) {
    return Error{VMHOST_ERR_DATA_LOSS, object.key.describe() + ": " + joinErrors(d.errors), false};
  }
  d.value.metadata.resourceVersion = std::to_string(object.modRevision);
  return std::move(d.value);
}

Result<VirtualMachine> updateVirtualMachineStatus(
    store::Store& store, const std::string& ns, const std::string& name,
    const std::function<bool(VirtualMachineStatus&)>& mutate, int maxAttempts) {
  auto key = virtualMachineKey(ns, name);
  for (int attempt = 0; attempt < maxAttempts; ++attempt) {
    auto cur = store.get(key);
    if (!cur) return cur.error();
    auto vm = decodeStoredVirtualMachine(*cur);
    if (!vm) return vm.error();
    if (!mutate(vm->status)) return std::move(vm.value());
    auto errs = validateVirtualMachineStatus(vm->status);
    if (!errs.empty()) return Error{VMHOST_ERR_INVALID_ARGUMENT, joinErrors(errs), false};
    auto written = store.update(key, storeValue(*vm), cur->modRevision);
    if (written) {
      vm->metadata.resourceVersion = std::to_string(written->modRevision);
      return std::move(vm.value());
    }
    if (written.error().code != VMHOST_ERR_ABORTED) return written.error();
  }
  return Error{VMHOST_ERR_ABORTED,
               key.describe() + ": status update kept conflicting with other writers", true};
}

Result<Node> registerNode(store::Store& store, const Node& node, int maxAttempts) {
  auto key = nodeKey(node.metadata.name);
  for (int attempt = 0; attempt < maxAttempts; ++attempt) {
    auto cur = store.get(key);
    Node next = node;
    if (cur) {
      auto stored = decodeStoredNode(*cur);
      if (!stored) return stored.error();
      next = *stored;
      for (const auto& [k, v] : node.metadata.labels) next.metadata.labels[k] = v;
      // The node's own annotations (allocation ratios, libvirt endpoint)
      // follow its config; others (an operator's) stay.
      for (const auto& [k, v] : node.metadata.annotations) next.metadata.annotations[k] = v;
      next.status = node.status;
    } else if (cur.error().code == VMHOST_ERR_NOT_FOUND) {
      next.metadata.uid = newUid();
      next.metadata.creationTimestamp = nowRfc3339();
      next.metadata.generation = 1;
      next.metadata.resourceVersion.clear();
    } else {
      return cur.error();
    }
    applyNodeDefaults(next);
    auto errs = validateNode(next);
    if (!errs.empty()) return Error{VMHOST_ERR_INVALID_ARGUMENT, joinErrors(errs), false};
    auto written = cur ? store.update(key, storeValue(next), cur->modRevision)
                       : store.create(key, storeValue(next));
    if (written) {
      next.metadata.resourceVersion = std::to_string(written->modRevision);
      return next;
    }
    auto code = written.error().code;
    if (code != VMHOST_ERR_ABORTED && code != VMHOST_ERR_ALREADY_EXISTS &&
        code != VMHOST_ERR_NOT_FOUND) {
      return written.error();
    }
  }
  return Error{VMHOST_ERR_ABORTED, key.describe() + ": registration kept conflicting", true};
}

Result<Node> updateNodeStatus(store::Store& store, const std::string& name,
                              const std::function<bool(NodeStatus&)>& mutate, int maxAttempts) {
  auto key = nodeKey(name);
  for (int attempt = 0; attempt < maxAttempts; ++attempt) {
    auto cur = store.get(key);
    if (!cur) return cur.error();
    auto node = decodeStoredNode(*cur);
    if (!node) return node.error();
    if (!mutate(node->status)) return std::move(node.value());
    auto errs = validateNode(*node);
    if (!errs.empty()) return Error{VMHOST_ERR_INVALID_ARGUMENT, joinErrors(errs), false};
    auto written = store.update(key, storeValue(*node), cur->modRevision);
    if (written) {
      node->metadata.resourceVersion = std::to_string(written->modRevision);
      return std::move(node.value());
    }
    if (written.error().code != VMHOST_ERR_ABORTED) return written.error();
  }
  return Error{VMHOST_ERR_ABORTED, key.describe() + ": status update kept conflicting", true};
}

std::string newUid() {
  // Not a secret, only unique: a per-thread Mersenne Twister seeded from the OS.
  thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t a = rng(), b = rng();
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xffff),
                static_cast<unsigned>(b >> 48),
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

}  // namespace vmhost::api
