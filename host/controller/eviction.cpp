#include "controller/eviction.h"

#include "api/objects.h"
#include "controller/conditions.h"

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

bool nodeDraining(const api::Node& node) {
  return node.spec.unschedulable && node.metadata.annotations.count(kDrainAnnotation) > 0;
}

const api::Condition* evictionRequest(const api::VirtualMachineStatus& status) {
  const api::Condition* c = findCondition(status.conditions, kEvictingCondition);
  return c != nullptr && c->status == "True" ? c : nullptr;
}

std::string evictionAck(const api::Condition& request) {
  return "the domain is stopped for the eviction: " + request.message;
}

bool evictionAcknowledged(const api::VirtualMachineStatus& status) {
  const api::Condition* request = evictionRequest(status);
  const api::Condition* ready = findCondition(status.conditions, "Ready");
  return request != nullptr && ready != nullptr && status.phase == "Stopped" &&
         ready->status == "False" && ready->reason == kEvictedReason &&
         ready->message == evictionAck(*request);
}

std::string liveMigrateRefusal(const std::string& ns, const std::string& name) {
  return "VM " + ns + "/" + name +
         ": evictionStrategy LiveMigrate needs live migration, which this version does not "
         "have; set Restart or None";
}

EvictionStep nextEvictionStep(const api::VirtualMachine& vm, const api::Node* node,
                              bool nodeBlocked) {
  if (vm.metadata.deletionTimestamp) return EvictionStep::kNothing;  // going anyway
  const api::Condition* evicting = findCondition(vm.status.conditions, kEvictingCondition);
  bool draining = !vm.status.nodeName.empty() && node != nullptr && nodeDraining(*node);
  if (!draining) return evicting != nullptr ? EvictionStep::kCancel : EvictionStep::kNothing;
  if (evictionRequest(vm.status) != nullptr) {
    if (!evictionAcknowledged(vm.status)) return EvictionStep::kWait;
    if (vm.spec.evictionStrategy == "None") return EvictionStep::kHalt;
    // A Manual or RerunOnFailure VM that was not running when the drain
    // began would be started by its new node (it has no domain there):
    // it stays stopped instead, as with None.
    bool startsItself = vm.spec.runStrategy == "Always";
    if (!startsItself && vm.spec.runStrategy != "Halted" &&
        evictionRequest(vm.status)->message.find(kNotRunningNote) != std::string::npos) {
      return EvictionStep::kHalt;
    }
    return EvictionStep::kReplace;
  }
  if (vm.spec.evictionStrategy == "LiveMigrate") {
    bool refused = evicting != nullptr && evicting->reason == kLiveMigrationUnsupportedReason;
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
  switch (step) {
    case EvictionStep::kNothing:
    case EvictionStep::kWait:
      return;
    case EvictionStep::kRequest:
      if (write([&](api::VirtualMachine& cur) {
            if (findCondition(cur.status.conditions, kEvictingCondition) != nullptr &&
                evictionRequest(cur.status) != nullptr)
              return false;
            bool running = cur.status.phase != "Stopped" && cur.status.phase != "Succeeded" &&
                           cur.status.phase != "Failed";
            setCondition(cur.status.conditions, kEvictingCondition, "True", kEvictingReason,
                         "node " + node + " is being drained (eviction " + id +
                             ", evictionStrategy " + cur.spec.evictionStrategy + ")" +
                             (running ? "" : kNotRunningNote));
            return true;
          })) {
        logLine("vm " + ns + "/" + name + ": eviction " + id + " requested from node " + node +
                " (evictionStrategy " + vm.spec.evictionStrategy + ")");
      }
      return;
    case EvictionStep::kRefuse:
      if (write([&](api::VirtualMachine& cur) {
            if (cur.spec.evictionStrategy != "LiveMigrate" || evictionRequest(cur.status))
              return false;
            return setCondition(cur.status.conditions, kEvictingCondition, "False",
                                kLiveMigrationUnsupportedReason, liveMigrateRefusal(ns, name));
          })) {
        logLine("node " + node + " cannot be drained: " + liveMigrateRefusal(ns, name));
      }
      return;
    case EvictionStep::kCancel:
      if (write([&](api::VirtualMachine& cur) {
            return removeCondition(cur.status.conditions, kEvictingCondition);
          })) {
        logLine("vm " + ns + "/" + name + ": eviction from node " + node + " cancelled");
      }
      return;
    case EvictionStep::kReplace:
    case EvictionStep::kHalt: {
      bool halt = step == EvictionStep::kHalt;
      if (write([&](api::VirtualMachine& cur) {
            if (!evictionAcknowledged(cur.status)) return false;
            // The strategies decided the step: changed meanwhile, decide again.
            if (cur.spec.evictionStrategy != vm.spec.evictionStrategy ||
                cur.spec.runStrategy != vm.spec.runStrategy)
              return false;
            removeCondition(cur.status.conditions, kEvictingCondition);
            cur.status.nodeName.clear();
            if (halt) {
              cur.status.phase = "Stopped";
              setCondition(
                  cur.status.conditions, "Ready", "False", kEvictedReason,
                  "stopped by the drain of node " + node + " (evictionStrategy " +
                      cur.spec.evictionStrategy +
                      (cur.spec.evictionStrategy == "None"
                           ? ""
                           : ", runStrategy " + cur.spec.runStrategy + " and not running") +
                      "); vmctl start runs it again");
              removeCondition(cur.status.conditions, "Scheduled");
              cur.spec.runStrategy = "Halted";
            } else {
              cur.status.phase = "Pending";
              setCondition(cur.status.conditions, "Ready", "False", kEvictedReason,
                           "stopped on node " + node + " by its drain; to be started elsewhere");
              setCondition(cur.status.conditions, "Scheduled", "False", kEvictedReason,
                           "evicted from node " + node + "; waiting for a new placement");
            }
            return true;
          })) {
        logLine("vm " + ns + "/" + name + ": stopped on node " + node +
                (halt ? ", unbound and halted (evictionStrategy " + vm.spec.evictionStrategy + ")"
                      : ", unbound for a new placement (evictionStrategy Restart)"));
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
    anyDraining |= nodeDraining(node.value());
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
        !vm.value().metadata.deletionTimestamp && !evictionRequest(vm.value().status)) {
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
