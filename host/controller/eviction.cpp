#include "controller/eviction.h"

#include "api/conditions.h"
#include "api/eviction.h"
#include "api/objects.h"
#include "api/timestamps.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
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

bool migrationFinished(const api::VirtualMachineMigration& m) {
  return m.status.phase == api::kMigrationSucceeded || m.status.phase == api::kMigrationFailed;
}

bool migrationStarted(const api::VirtualMachineMigration& m) {
  return m.status.phase == api::kMigrationPreparingTarget ||
         m.status.phase == api::kMigrationRunning || migrationFinished(m);
}

std::string keyOf(const std::string& ns, const std::string& name) { return ns + "/" + name; }

int64_t attemptOf(const api::VirtualMachineMigration& m) {
  auto it = m.metadata.annotations.find(api::kDrainAttemptAnnotation);
  if (it == m.metadata.annotations.end()) return 1;
  try {
    return std::max<int64_t>(1, std::stoll(it->second));
  } catch (...) {
    return 1;
  }
}

std::string drainOf(const api::ObjectMeta& meta) {
  auto it = meta.annotations.find(api::kDrainAnnotation);
  return it == meta.annotations.end() ? "" : it->second;
}

// "Failed (SchedulingFailed: no node can take the VM)".
std::string outcome(const api::VirtualMachineMigration& m) {
  std::string s = m.status.phase;
  if (!m.status.reason.empty() || !m.status.message.empty()) {
    s += " (" + m.status.reason + (m.status.message.empty() ? "" : ": " + m.status.message) + ")";
  }
  return s;
}

}  // namespace

EvictionStep nextEvictionStep(const api::VirtualMachine& vm, const api::Node* node,
                              const EvictionMigrations& migrations) {
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
    const api::VirtualMachineMigration* m = migrations.drain;
    // A migration in flight (the drain's or another) is waited for, whatever
    // the VM's phase: it moves the VM, or fails and then we decide again.
    if (m != nullptr && (!migrationFinished(*m) || m->metadata.deletionTimestamp)) {
      return EvictionStep::kWait;
    }
    if (migrations.otherInFlight) return EvictionStep::kWait;
    if (vm.status.phase == api::kPhaseRunning) {
      if (m == nullptr) return EvictionStep::kMigrate;
      return migrations.replaceDue ? EvictionStep::kMigrate : EvictionStep::kWait;
    }
    // Not running: no guest to move; evicted as with Restart.
  }
  return EvictionStep::kRequest;
}

EvictionController::EvictionController(store::Store& store, EvictionOptions options)
    : store_(store), options_(options) {}

void EvictionController::event(const api::VirtualMachine& vm, const char* type, const char* reason,
                               const std::string& message) {
  if (options_.events == nullptr) return;
  options_.events->record(
      api::vmEvent(vm, type, reason, message, api::EventSource{"vmhost-eviction", ""}));
}

bool EvictionController::deleteMigration(const StoredMigration& m) {
  auto key = api::migrationKey(m.object.metadata.ns, m.object.metadata.name);
  if (m.object.metadata.finalizers.empty()) {
    auto r = store_.remove(key, m.modRevision);
    if (!r.ok() && r.error().code != VMHOST_ERR_NOT_FOUND) {
      if (r.error().code != VMHOST_ERR_ABORTED) logLine(key.describe() + ": " + r.error().message);
      return false;  // changed meanwhile: the next pass
    }
    return true;
  }
  if (m.object.metadata.deletionTimestamp) return false;
  // The finalizer's holder (the migration controller) finishes the delete.
  auto obj = m.object;
  obj.metadata.deletionTimestamp = api::nowRfc3339();
  obj.metadata.generation += 1;
  auto r = store_.update(key, api::storeValue(obj), m.modRevision);
  if (!r.ok() && r.error().code != VMHOST_ERR_ABORTED && r.error().code != VMHOST_ERR_NOT_FOUND) {
    logLine(key.describe() + ": " + r.error().message);
  }
  return false;
}

bool EvictionController::retryDue(const api::VirtualMachineMigration& m,
                                  const api::Node& node) const {
  if (drainOf(m.metadata) != drainOf(node.metadata)) return true;  // an earlier drain's
  int64_t attempt = attemptOf(m);
  int64_t delay = options_.migrationRetry.count();
  for (int64_t i = 1; i < attempt && delay < options_.migrationRetryMax.count(); ++i) delay *= 2;
  delay = std::min<int64_t>(delay, options_.migrationRetryMax.count());
  auto ended = api::parseRfc3339(m.status.endTimestamp.empty() ? m.metadata.creationTimestamp
                                                               : m.status.endTimestamp);
  if (!ended) return true;
  return static_cast<int64_t>(std::time(nullptr)) >= *ended + delay;
}

void EvictionController::createDrainMigration(const api::VirtualMachine& vm, const api::Node& node,
                                              const StoredMigration* existing) {
  const std::string& ns = vm.metadata.ns;
  const std::string nodeName = node.metadata.name;
  const std::string name = api::drainMigrationName(vm.metadata.name, nodeName);
  int64_t attempt = 1;
  if (existing != nullptr) {
    // Finished without moving the VM: make room for the next attempt.
    const auto& old = existing->object;
    if (drainOf(old.metadata) == drainOf(node.metadata)) attempt = attemptOf(old) + 1;
    if (!deleteMigration(*existing)) return;  // gone by a later pass
    logLine("vm " + keyOf(ns, vm.metadata.name) + ": drain migration " + name + " ended " +
            outcome(old) + "; trying again (attempt " + std::to_string(attempt) + ")");
    event(vm, api::kEventTypeWarning, "MigrationRetry",
          "the drain's migration " + name + " ended " + outcome(old) + "; trying again (attempt " +
              std::to_string(attempt) + ")");
  }
  api::VirtualMachineMigration m;
  m.metadata.name = name;
  m.metadata.ns = ns;
  m.metadata.uid = api::newUid();
  m.metadata.creationTimestamp = api::nowRfc3339();
  m.metadata.generation = 1;
  m.metadata.annotations[api::kDrainNodeAnnotation] = nodeName;
  m.metadata.annotations[api::kDrainAnnotation] = drainOf(node.metadata);
  m.metadata.annotations[api::kDrainAttemptAnnotation] = std::to_string(attempt);
  m.metadata.labels[api::kDrainNodeLabel] = nodeName;
  m.spec.vmName = vm.metadata.name;
  if (!api::validateVirtualMachineMigration(m).empty()) {
    m.metadata.labels.clear();  // a node name longer than a label value may be
  }
  auto errs = api::validateVirtualMachineMigration(m);
  if (!errs.empty()) {
    logLine("vm " + keyOf(ns, vm.metadata.name) + ": cannot create migration " + name + ": " +
            errs.front().toString());
    return;
  }
  auto r = store_.create(api::migrationKey(ns, name), api::storeValue(m));
  if (!r.ok()) {
    if (r.error().code != VMHOST_ERR_ALREADY_EXISTS) {
      logLine("vm " + keyOf(ns, vm.metadata.name) + ": cannot create migration " + name + ": " +
              r.error().message);
    }
    return;
  }
  logLine("vm " + keyOf(ns, vm.metadata.name) + ": live-migrating it off node " + nodeName +
          " (VirtualMachineMigration " + name + ", evictionStrategy LiveMigrate)");
  event(vm, api::kEventTypeNormal, "Migrating",
        "node " + nodeName + " is being drained: live-migrating the VM (VirtualMachineMigration " +
            name + ")");
  // A refusal left by an earlier version (LiveMigrationUnsupported) is
  // no longer true.
  const api::Condition* stale = api::findCondition(vm.status.conditions, api::kEvictingCondition);
  if (stale != nullptr && stale->status != "True") {
    (void)updateVm(store_, ns, vm.metadata.name, [&](api::VirtualMachine& cur) {
      if (cur.metadata.uid != vm.metadata.uid || api::evictionRequest(cur.status)) return false;
      return api::removeCondition(cur.status.conditions, api::kEvictingCondition);
    });
  }
}

void EvictionController::withdraw(const StoredMigration& stored,
                                  const std::map<std::string, api::Node>& nodes,
                                  const std::vector<api::VirtualMachine>& vms) {
  const auto& m = stored.object;
  std::string nodeName = api::drainMigrationNode(m.metadata);
  if (nodeName.empty() || migrationFinished(m) || m.metadata.deletionTimestamp) return;
  auto it = nodes.find(nodeName);
  if (it != nodes.end() && api::nodeDraining(it->second)) return;  // still wanted
  std::string label = keyOf(m.metadata.ns, m.metadata.name);
  const api::VirtualMachine* vm = nullptr;
  for (const auto& v : vms) {
    if (v.metadata.ns == m.metadata.ns && v.metadata.name == m.spec.vmName) vm = &v;
  }
  if (migrationStarted(m)) {
    if (leftToFinish_.insert(m.metadata.uid).second) {
      logLine("node " + nodeName + " is no longer drained: migration " + label + " is " +
              m.status.phase + ", left to finish");
    }
    return;
  }
  std::string phase = m.status.phase.empty() ? "not started" : m.status.phase;
  deleteMigration(stored);
  logLine("node " + nodeName + " is no longer drained: migration " + label + " (" + phase +
          ") withdrawn");
  if (vm != nullptr) {
    event(*vm, api::kEventTypeNormal, "MigrationWithdrawn",
          "node " + nodeName + " is no longer being drained: migration " + m.metadata.name + " (" +
              phase + ") withdrawn");
  }
}

void EvictionController::apply(const api::VirtualMachine& vm, EvictionStep step,
                               const api::Node* boundNode, const StoredMigration* drain) {
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
    this->event(vm, type, reason, message);
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
    case EvictionStep::kMigrate:
      if (boundNode != nullptr) createDrainMigration(vm, *boundNode, drain);
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
  // The migrations first, then the VMs: a migration read Succeeded was
  // mirrored after the handover, so the VMs read next show the VM moved.
  auto migrations = store_.list(api::kMigrationsResource, "");
  if (!migrations.ok()) {
    logLine("cannot list migrations: " + migrations.error().message);
    return true;
  }
  std::map<std::string, StoredMigration> drains;  // by namespace/name
  std::set<std::string> inFlight;                 // namespace/vm with an unfinished migration
  for (const auto& object : migrations.value().items) {
    auto m = api::decodeStoredMigration(object);
    if (!m.ok()) continue;
    std::string name = keyOf(m.value().metadata.ns, m.value().metadata.name);
    if (!migrationFinished(m.value()) || m.value().metadata.deletionTimestamp) {
      inFlight.insert(keyOf(m.value().metadata.ns, m.value().spec.vmName) + "\n" + name);
    }
    if (!api::drainMigrationNode(m.value().metadata).empty()) {
      drains[name] = StoredMigration{std::move(m.value()), object.modRevision};
    }
  }
  auto vms = store_.list(api::kVirtualMachinesResource, "");
  if (!vms.ok()) {
    logLine("cannot list VMs: " + vms.error().message);
    return true;
  }
  std::vector<api::VirtualMachine> all;
  for (const auto& object : vms.value().items) {
    auto vm = api::decodeStoredVirtualMachine(object);
    if (vm.ok()) all.push_back(std::move(vm.value()));
  }
  bool inProgress = false;
  for (const auto& vm : all) {
    auto it = byName.find(vm.status.nodeName);
    const api::Node* node = it == byName.end() ? nullptr : &it->second;
    EvictionMigrations view;
    const StoredMigration* drain = nullptr;
    if (node != nullptr && vm.spec.evictionStrategy == "LiveMigrate" && api::nodeDraining(*node)) {
      std::string drainName =
          keyOf(vm.metadata.ns, api::drainMigrationName(vm.metadata.name, node->metadata.name));
      if (auto d = drains.find(drainName); d != drains.end()) {
        drain = &d->second;
        view.drain = &drain->object;
        view.replaceDue = migrationFinished(drain->object) && retryDue(drain->object, *node);
      }
      std::string vmKey = keyOf(vm.metadata.ns, vm.metadata.name) + "\n";
      for (auto f = inFlight.lower_bound(vmKey); f != inFlight.end() && f->rfind(vmKey, 0) == 0;
           ++f) {
        if (f->substr(vmKey.size()) != drainName) view.otherInFlight = true;
      }
      if (vm.status.migration && !api::migrationStateFinished(*vm.status.migration) &&
          (drain == nullptr || vm.status.migration->uid != drain->object.metadata.uid)) {
        view.otherInFlight = true;
      }
    }
    EvictionStep step = nextEvictionStep(vm, node, view);
    if (step != EvictionStep::kNothing) inProgress = true;
    apply(vm, step, node, drain);
  }
  // Drain migrations of nodes no longer drained: withdrawn if not started.
  bool drainMigrationsLeft = false;
  std::set<std::string> unfinished;
  for (const auto& [name, m] : drains) {
    withdraw(m, byName, all);
    if (!migrationFinished(m.object)) {
      drainMigrationsLeft = true;
      unfinished.insert(m.object.metadata.uid);
    }
  }
  std::erase_if(leftToFinish_, [&](const std::string& uid) { return !unfinished.count(uid); });
  // Keep looking until no eviction or drain migration is left to finish or undo.
  scanVms_ = inProgress || drainMigrationsLeft;
  return inProgress || anyDraining || drainMigrationsLeft;
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
