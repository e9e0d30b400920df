#include "controller/eviction.h"

#include "api/conditions.h"
#include "api/eviction.h"
#include "api/objects.h"

#include <cstdio>
#include <functional>
#include <random>
#include <set>
#include <thread>

namespace vmhost::controller {
namespace {

std::string newEvictionId() {
  static std::mt19937_64 rng{std::random_device{}()};
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

void logLine(const std::string& line) {
  std::fprintf(stderr, "controller: drain: %s\n", line.c_str());
}

// Reads the VM, lets `mutate` change it (false: no write), writes with
// optimistic concurrency, retries on conflicts (bounded).
Status updateVm(store::Store& store, const std::string& ns, const std::string& name,
                const std::function<bool(api::VirtualMachine&)>& mutate) {
  auto key = api::virtualMachineKey(ns, name);
  for (int attempt = 0; attempt < 16; ++attempt) {
    auto cur = store.get(key);
    if (!cur) return cur.error();
    auto vm = api::decodeStoredVirtualMachine(*cur);
    if (!vm) return vm.error();
    std::string specBefore = api::encodeVirtualMachineSpec(vm->spec).dump();
    if (!mutate(*vm)) return Ok{};
    if (api::encodeVirtualMachineSpec(vm->spec).dump() != specBefore) ++vm->metadata.generation;
    auto errs = api::validateVirtualMachine(*vm);
    if (!errs.empty()) {
      return Error{VMHOST_ERR_INVALID_ARGUMENT, errs.front().toString(), false};
    }
    auto written = store.update(key, api::storeValue(*vm), cur->modRevision);
    if (written) return Ok{};
    if (written.error().code != VMHOST_ERR_ABORTED) return written.error();
  }
  return Error{VMHOST_ERR_ABORTED, key.describe() + ": update kept conflicting with other writers",
               true};
}

}  // namespace

EvictionStep nextEvictionStep(const api::VirtualMachine& vm, const api::Node* node,
                              bool nodeBlocked) {
  if (vm.metadata.deletionTimestamp) return EvictionStep::kNothing;  // going anyway
  const api::Condition* evicting =
      api::findCondition(vm.status.conditions, api::kEvictingCondition);
  bool draining = !vm.status.nodeName.empty() && node != nullptr && api::nodeDraining(*node);
  if (!draining) return evicting != nullptr ? EvictionStep::kCancel : EvictionStep::kNothing;
  if (api::evictionRequest(vm.status) != nullptr) {
    if (!api::evictionAcknowledged(vm.status)) return EvictionStep::kWait;
    if (vm.spec.evictionStrategy == "None") return EvictionStep::kHalt;
    // A Manual or RerunOnFailure VM that was not running when the drain
    // began would be started by its new node (it has no domain there):
    // it stays stopped instead, as with None.
    bool startsItself = vm.spec.runStrategy == "Always";
    if (!startsItself && vm.spec.runStrategy != "Halted" &&
        api::evictionRequest(vm.status)->message.find(api::kNotRunningNote) != std::string::npos) {
      return EvictionStep::kHalt;
    }
    return EvictionStep::kReplace;
  }
  if (vm.spec.evictionStrategy == "LiveMigrate") {
    bool refused = evicting != nullptr && evicting->reason == api::kLiveMigrationUnsupportedReason;
    return refused ? EvictionStep::kWait : EvictionStep::kRefuse;
  }
  if (nodeBlocked) {
    // A refusal left from an earlier strategy is not this VM's problem now.
    return evicting != nullptr ? EvictionStep::kCancel : EvictionStep::kWait;
  }
  return EvictionStep::kRequest;
}

EvictionController::EvictionController(store::Store& store, EvictionOptions options)
    : store_(store), options_(options) {}

void EvictionController::apply(const api::VirtualMachine& vm, EvictionStep step) {
  const std::string& ns = vm.metadata.ns;
  const std::string& name = vm.metadata.name;
  const std::string node = vm.status.nodeName;
  const std::string uid = vm.metadata.uid;
  std::string id = newEvictionId();
  std::string what;
  // Every write re-checks, on the VM as stored, that the step still applies.
  auto write = [&](const std::function<bool(api::VirtualMachine&)>& mutate) {
    auto s = updateVm(store_, ns, name, [&](api::VirtualMachine& cur) {
      if (cur.metadata.uid != uid || cur.status.nodeName != node) return false;
      return mutate(cur);
    });
    if (!s.ok() && s.error().code != VMHOST_ERR_NOT_FOUND) {
      logLine("vm " + ns + "/" + name + ": " + s.error().message);
      return false;
    }
    return s.ok();
  };
  auto event = [&](const char* type, const char* reason, const std::string& message) {
    if (options_.events == nullptr) return;
    options_.events->record(
        api::vmEvent(vm, type, reason, message, api::EventSource{"vmhost-eviction", ""}));
  };
  switch (step) {
    case EvictionStep::kNothing:
    case EvictionStep::kWait:
      return;
    case EvictionStep::kRequest:
      if (write([&](api::VirtualMachine& cur) {
            if (api::findCondition(cur.status.conditions, api::kEvictingCondition) != nullptr &&
                api::evictionRequest(cur.status) != nullptr)
              return false;
            bool running = cur.status.phase != "Stopped" && cur.status.phase != "Succeeded" &&
                           cur.status.phase != "Failed";
            api::setCondition(
                cur.status.conditions, api::kEvictingCondition, "True", api::kEvictingReason,
                "node " + node + " is being drained (eviction " + id + ", evictionStrategy " +
                    cur.spec.evictionStrategy + ")" + (running ? "" : api::kNotRunningNote));
            return true;
          })) {
        logLine("vm " + ns + "/" + name + ": eviction " + id + " requested from node " + node +
                " (evictionStrategy " + vm.spec.evictionStrategy + ")");
        event(api::kEventTypeNormal, "Evicting",
              "node " + node + " is being drained: stopping the VM there (evictionStrategy " +
                  vm.spec.evictionStrategy + ")");
      }
      return;
    case EvictionStep::kRefuse:
      if (write([&](api::VirtualMachine& cur) {
            if (cur.spec.evictionStrategy != "LiveMigrate" || api::evictionRequest(cur.status))
              return false;
            return api::setCondition(cur.status.conditions, api::kEvictingCondition, "False",
                                     api::kLiveMigrationUnsupportedReason,
                                     api::liveMigrateRefusal(ns, name));
          })) {
        logLine("node " + node + " cannot be drained: " + api::liveMigrateRefusal(ns, name));
        event(api::kEventTypeWarning, "EvictionRefused", api::liveMigrateRefusal(ns, name));
      }
      return;
    case EvictionStep::kCancel:
      if (write([&](api::VirtualMachine& cur) {
            return api::removeCondition(cur.status.conditions, api::kEvictingCondition);
          })) {
        logLine("vm " + ns + "/" + name + ": eviction from node " + node + " cancelled");
        event(api::kEventTypeNormal, "EvictionCancelled",
              "node " + node + " is no longer being drained");
      }
      return;
    case EvictionStep::kReplace:
    case EvictionStep::kHalt: {
      bool halt = step == EvictionStep::kHalt;
      if (write([&](api::VirtualMachine& cur) {
            if (!api::evictionAcknowledged(cur.status)) return false;
            // The strategies decided the step: changed meanwhile, decide again.
            if (cur.spec.evictionStrategy != vm.spec.evictionStrategy ||
                cur.spec.runStrategy != vm.spec.runStrategy)
              return false;
            api::removeCondition(cur.status.conditions, api::kEvictingCondition);
            cur.status.nodeName.clear();
            if (halt) {
              cur.status.phase = "Stopped";
              api::setCondition(
                  cur.status.conditions, "Ready", "False", api::kEvictedReason,
                  "stopped by the drain of node " + node + " (evictionStrategy " +
                      cur.spec.evictionStrategy +
                      (cur.spec.evictionStrategy == "None"
                           ? ""
                           : ", runStrategy " + cur.spec.runStrategy + " and not running") +
                      "); vmctl start runs it again");
              api::removeCondition(cur.status.conditions, "Scheduled");
              cur.spec.runStrategy = "Halted";
            } else {
              cur.status.phase = "Pending";
              api::setCondition(
                  cur.status.conditions, "Ready", "False", api::kEvictedReason,
                  "stopped on node " + node + " by its drain; to be started elsewhere");
              api::setCondition(cur.status.conditions, "Scheduled", "False", api::kEvictedReason,
                                "evicted from node " + node + "; waiting for a new placement");
            }
            return true;
          })) {
        std::string done =
            "stopped on node " + node +
            (halt ? ", unbound and halted (evictionStrategy " + vm.spec.evictionStrategy + ")"
                  : ", unbound for a new placement (evictionStrategy Restart)");
        logLine("vm " + ns + "/" + name + ": " + done);
        event(api::kEventTypeNormal, "Evicted", done);
      }
      return;
    }
  }
}

bool EvictionController::reconcileOnce() {
  auto nodes = store_.list(api::kNodesResource, "");
  if (!nodes.ok()) {
    logLine("cannot list nodes: " + nodes.error().message);
    return true;
  }
  std::map<std::string, api::Node> byName;
  bool anyDraining = false;
  for (const auto& object : nodes.value().items) {
    auto node = api::decodeStoredNode(object);
    if (!node.ok()) continue;
    anyDraining |= api::nodeDraining(node.value());
    byName[node.value().metadata.name] = std::move(node.value());
  }
  if (!anyDraining && !scanVms_) return false;
  auto vms = store_.list(api::kVirtualMachinesResource, "");
  if (!vms.ok()) {
    logLine("cannot list VMs: " + vms.error().message);
    return true;
  }
  std::vector<api::VirtualMachine> all;
  std::set<std::string> blocked;  // nodes with a LiveMigrate VM bound to them
  for (const auto& object : vms.value().items) {
    auto vm = api::decodeStoredVirtualMachine(object);
    if (!vm.ok()) continue;
    if (!vm.value().status.nodeName.empty() && vm.value().spec.evictionStrategy == "LiveMigrate" &&
        !vm.value().metadata.deletionTimestamp && !api::evictionRequest(vm.value().status)) {
      blocked.insert(vm.value().status.nodeName);
    }
    all.push_back(std::move(vm.value()));
  }
  bool inProgress = false;
  for (const auto& vm : all) {
    auto it = byName.find(vm.status.nodeName);
    const api::Node* node = it == byName.end() ? nullptr : &it->second;
    EvictionStep step = nextEvictionStep(vm, node, blocked.count(vm.status.nodeName) > 0);
    if (step != EvictionStep::kNothing) inProgress = true;
    apply(vm, step);
  }
  // Keep looking at VMs until no eviction is left to finish or undo.
  scanVms_ = inProgress;
  return inProgress || anyDraining;
}

void EvictionController::run(std::stop_token stop) {
  while (!stop.stop_requested()) {
    reconcileOnce();
    auto until = std::chrono::steady_clock::now() + options_.interval;
    while (!stop.stop_requested() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

}  // namespace vmhost::controller
