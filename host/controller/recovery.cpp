#include "controller/recovery.h"

#include "api/conditions.h"
#include "api/objects.h"

#include <cstdio>
#include <ctime>
#include <thread>

namespace vmhost::controller {
namespace {

void logLine(const std::string& line) { std::fprintf(stderr, "controller: %s\n", line.c_str()); }

}  // namespace

void DeadNodeRecovery::event(const api::VirtualMachine& vm, const char* type, const char* reason,
                             const std::string& message) {
  if (options_.events == nullptr) return;
  options_.events->record(
      api::vmEvent(vm, type, reason, message, api::EventSource{"vmhost-recovery", ""}));
}

std::set<std::string> DeadNodeRecovery::reconcileOnce() {
  std::set<std::string> lost;
  std::map<std::string, std::string> since;
  auto nodes = store_.list(api::kNodesResource, "");
  if (!nodes.ok()) return lost;
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  for (const auto& object : nodes.value().items) {
    auto node = api::decodeStoredNode(object);
    if (!node.ok()) continue;
    const api::Condition* ready = api::findCondition(node.value().status.conditions, "Ready");
    if (ready == nullptr || ready->status == "True") continue;
    auto t = api::parseRfc3339(ready->lastTransitionTime);
    if (!t || now - *t < options_.gracePeriod.count()) continue;
    lost.insert(node.value().metadata.name);
    since[node.value().metadata.name] = ready->lastTransitionTime;
  }
  if (lost.empty()) return lost;
  auto vms = store_.list(api::kVirtualMachinesResource, "");
  if (!vms.ok()) return lost;
  for (const auto& object : vms.value().items) {
    auto vm = api::decodeStoredVirtualMachine(object);
    if (!vm.ok()) continue;
    const auto& v = vm.value();
    const std::string node = v.status.nodeName;
    if (node.empty() || !lost.count(node) || v.metadata.deletionTimestamp) continue;
    if (v.spec.runStrategy != "Always") continue;
    std::string local;
    for (const auto& vol : v.spec.volumes) {
      if (vol.hostPath || !options_.sharedStorage) local += (local.empty() ? "" : ", ") + vol.name;
    }
    std::string label = v.metadata.ns + "/" + v.metadata.name;
    std::string lostFor = "node " + node + " has been NotReady since " + since[node] +
                          " (grace period " + std::to_string(options_.gracePeriod.count()) + " s)";
    if (!local.empty()) {
      std::string message = lostFor + ": the VM's disks (" + local +
                            ") are local to it, so it is not restarted elsewhere; it runs again "
                            "when the node is back, or delete it";
      bool held = false;
      auto r = api::updateVirtualMachineStatus(
          store_, v.metadata.ns, v.metadata.name, [&](api::VirtualMachineStatus& s) {
            if (s.nodeName != node) return false;
            held = api::setCondition(s.conditions, api::kRecoveryCondition, "False", "LocalDisks",
                                     message);
            return held;
          });
      if (r.ok() && held) {
        logLine("vm " + label + ": held on lost node " + node + " (local disks)");
        event(v, api::kEventTypeWarning, "RecoveryHeld", message);
      }
      continue;
    }
    bool moved = false;
    auto r = api::updateVirtualMachineStatus(
        store_, v.metadata.ns, v.metadata.name, [&](api::VirtualMachineStatus& s) {
          if (s.nodeName != node) return false;
          s.nodeName.clear();
          s.phase = "Pending";
          api::setCondition(s.conditions, "Recovery", "True", "RestartedElsewhere",
                            lostFor +
                                ": restarting the VM on another node (disk leases keep a "
                                "second copy from opening its disks)");
          api::setCondition(s.conditions, "Ready", "False", "NodeLost",
                            lostFor + "; to be started on another node");
          api::setCondition(s.conditions, "Scheduled", "False", "NodeLost",
                            "node " + node + " lost; waiting for a new placement");
          moved = true;
          return true;
        });
    if (r.ok() && moved) {
      logLine("vm " + label + ": node " + node + " lost; placing it again");
      event(v, api::kEventTypeWarning, "Recovered",
            lostFor + ": restarting the VM on another node");
    }
  }
  return lost;
}

void DeadNodeRecovery::run(std::stop_token stop) {
  while (!stop.stop_requested()) {
    reconcileOnce();
    for (int i = 0; i < 10 && !stop.stop_requested(); ++i) {
      std::this_thread::sleep_for(options_.interval / 10);
    }
  }
}

}  // namespace vmhost::controller
