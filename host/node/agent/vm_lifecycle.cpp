#include "node/agent/agent.h"

#include "api/conditions.h"
#include "api/eviction.h"
#include "api/objects.h"
#include "api/vocabulary.h"
#include "node/domain/converter.h"

#include <libvirt/libvirt.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace vmhost::node {
namespace {

namespace fs = std::filesystem;

bool isStopped(DomainState s) { return s == DomainState::kShutOff || s == DomainState::kCrashed; }

}  // namespace

std::string NodeAgent::stateFile(const VmKey& key) const {
  return (fs::path(options_.dataDir) / "node" / "vms" /
          (domainName(key.first, key.second) + ".json"))
      .string();
}

std::string NodeAgent::consoleLog(const VmKey& key) const {
  return (fs::path(options_.dataDir) / "node" / "console" /
          (domainName(key.first, key.second) + ".log"))
      .string();
}

Status NodeAgent::setPhase(const api::VirtualMachine& vm, const std::string& phase,
                           const std::string& readyStatus, const std::string& reason,
                           const std::string& message) {
  auto r =
      control_.updateVmStatus(vm.metadata.ns, vm.metadata.name, [&](api::VirtualMachineStatus& s) {
        if (s.nodeName != options_.nodeName) return false;  // re-bound meanwhile: not ours to say
        bool changed = s.phase != phase;
        s.phase = phase;
        changed |= api::setCondition(s.conditions, "Ready", readyStatus, reason, message);
        return changed;
      });
  if (!r.ok() && r.error().code != VMHOST_ERR_NOT_FOUND) return r.error();
  return Ok{};
}

void NodeAgent::event(const api::VirtualMachine& vm, const char* type, const char* reason,
                      const std::string& message) {
  control_.recordEvent(
      api::vmEvent(vm, type, reason, message, api::EventSource{"vmhost-node", options_.nodeName}));
}

bool NodeAgent::retryHeld(const api::VirtualMachine& vm) {
  auto it = holds_.find({vm.metadata.ns, vm.metadata.name});
  if (it == holds_.end()) return false;
  const RetryHold& hold = it->second;
  if (hold.uid != vm.metadata.uid || hold.generation != vm.metadata.generation) {
    holds_.erase(it);  // a new spec (or a new VM of that name) gets a fresh try
    return false;
  }
  return !hold.retryable || Clock::now() < hold.next;
}

Error NodeAgent::prepareFailed(const api::VirtualMachine& vm, const Error& error) {
  RetryHold& hold = holds_[{vm.metadata.ns, vm.metadata.name}];
  if (hold.uid != vm.metadata.uid || hold.generation != vm.metadata.generation) {
    hold = RetryHold{vm.metadata.uid, vm.metadata.generation, false, 0, {}};
  }
  hold.retryable = error.retryable;
  ++hold.failures;
  std::string next;
  if (error.retryable) {
    auto delay = options_.retryBackoffInitial;
    for (uint32_t i = 1; i < hold.failures && delay < options_.retryBackoffMax; ++i) delay *= 2;
    delay = std::min(delay, options_.retryBackoffMax);
    hold.next = Clock::now() + delay;
    next = "retrying in " + (delay.count() % 1000 == 0 ? std::to_string(delay.count() / 1000) + "s"
                                                       : std::to_string(delay.count()) + "ms");
  } else {
    next = "not retried until the VM's spec changes or the node restarts";
  }
  (void)setPhase(vm, vm.status.phase.empty() ? "Scheduled" : vm.status.phase, "False",
                 "PrepareFailed",
                 error.message + " (" + statusName(error.code) + "; " + next + ")");
  // Without the retry delay, so that repeats aggregate into one Event.
  event(vm, api::kEventTypeWarning, "FailedPrepare",
        error.message + " (" + statusName(error.code) + ")");
  return error;
}

Status NodeAgent::cleanup(const VmKey& key, const std::string& expectedUid, bool deleteData,
                          bool migrated) {
  std::string name = domainName(key.first, key.second);
  std::error_code ec;
  // The source of a completed live migration: its copies of the disks go.
  if (fs::exists(migratedMarker(key), ec)) migrated = true;
  auto domain = libvirt_.lookupByName(name);
  if (domain.ok()) {
    auto meta = domain.value().metadata();
    if (!meta.ok() || !meta.value()) return Ok{};  // not ours: never touch it
    if (!expectedUid.empty() && meta.value()->vm.uid != expectedUid) return Ok{};
    if (auto st = domain.value().state(); st.ok() && st.value().state == DomainState::kShutOff &&
                                          st.value().reason == VIR_DOMAIN_SHUTOFF_MIGRATED) {
      migrated = true;
    }
    if (auto s = domain.value().destroy(); !s.ok()) return s.error();
    if (auto s = domain.value().undefine(); !s.ok()) return s.error();
  } else if (domain.error().code != VMHOST_ERR_NOT_FOUND) {
    return domain.error();
  }
  // Release what the plugins prepared, from the VM as it was defined.
  std::ifstream in(stateFile(key));
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    store::StoredObject object;
    object.key = api::virtualMachineKey(key.first, key.second);
    object.value = ss.str();
    auto vm = api::decodeStoredVirtualMachine(object);
    if (vm.ok() && (expectedUid.empty() || vm.value().metadata.uid == expectedUid)) {
      if (auto s = devices_.release(vm.value(), deleteData, migrated); !s.ok()) return s.error();
    }
  }
  fs::remove(stateFile(key), ec);
  fs::remove(migratedMarker(key), ec);
  fs::remove(consoleLog(key), ec);
  stopping_.erase(key);
  holds_.erase(key);
  if (devices_.forget(key)) {
    // A MAC this VM held is free: a VM that lost a claim to it may start now.
    for (auto& [other, hold] : holds_) {
      if (!hold.retryable) continue;
      hold.next = Clock::now();
      queue_.insert(other);
    }
  }
  return Ok{};
}

Status NodeAgent::ensureRunning(const api::VirtualMachine& vm, std::optional<Domain>& domain) {
  VmKey key{vm.metadata.ns, vm.metadata.name};
  stopping_.erase(key);
  if (domain) {
    auto state = domain->state();
    if (!state.ok()) return state.error();
    DomainState s = state.value().state;
    if (s == DomainState::kShutOff && state.value().reason == VIR_DOMAIN_SHUTOFF_MIGRATED) {
      // Shut off by a completed live migration: the guest runs on the
      // target. Never started here again; the handover rebinds the VM.
      return Error{VMHOST_ERR_FAILED_PRECONDITION,
                   "vm " + vm.metadata.ns + "/" + vm.metadata.name +
                       ": the domain migrated away; waiting for the handover",
                   true};
    }
    if (!isStopped(s)) {
      if (vm.status.phase != "Running")
        return setPhase(vm, "Running", "True", "DomainRunning", "the domain is running");
      return Ok{};
    }
    // The guest stopped (by itself, or it crashed): its overlays go now,
    // whether or not the run strategy starts it again.
    if (auto r = devices_.releaseEphemeral(vm); !r.ok()) return r.error();
    // Stopped: does the run strategy want it back?
    bool guestShutdown =
        s == DomainState::kShutOff && state.value().reason == VIR_DOMAIN_SHUTOFF_SHUTDOWN;
    bool wasRunning = vm.status.phase == "Running";
    bool crashed =
        s == DomainState::kCrashed ||
        (s == DomainState::kShutOff && state.value().reason == VIR_DOMAIN_SHUTOFF_CRASHED);
    if (vm.spec.runStrategy == "Manual" && wasRunning) {
      if (crashed) {
        event(vm, api::kEventTypeWarning, "GuestCrashed",
              "the guest crashed; runStrategy Manual leaves it stopped");
        return setPhase(vm, "Failed", "False", "GuestCrashed",
                        "the guest crashed; runStrategy Manual leaves it stopped");
      }
      event(vm, api::kEventTypeNormal, "Stopped",
            "the guest stopped; runStrategy Manual leaves it stopped");
      return setPhase(vm, "Stopped", "False", "GuestStopped",
                      "the guest stopped; runStrategy Manual leaves it stopped");
    }
    if (vm.spec.runStrategy == "Manual" &&
        (vm.status.phase == "Stopped" || vm.status.phase == "Failed")) {
      return Ok{};
    }
    if (vm.spec.runStrategy == "RerunOnFailure" && guestShutdown && wasRunning) {
      event(vm, api::kEventTypeNormal, "Stopped", "the guest shut down cleanly");
      return setPhase(vm, "Succeeded", "False", "GuestShutdown", "the guest shut down cleanly");
    }
    if (vm.spec.runStrategy == "RerunOnFailure" && vm.status.phase == "Succeeded") return Ok{};
    if (wasRunning) {
      event(vm, api::kEventTypeWarning, crashed ? "GuestCrashed" : "GuestStopped",
            std::string(crashed ? "the guest crashed" : "the guest stopped") +
                "; starting it again (runStrategy " + vm.spec.runStrategy + ")");
    }
  }
  // Define (or redefine: the spec may have changed while it was stopped) and start.
  if (retryHeld(vm)) return Ok{};
  {
    // Record the VM before its devices are prepared, so that a failure or a
    // crash after some of them were leaves enough to release them.
    std::ofstream out(stateFile(key), std::ios::trunc);
    out << api::storeValue(vm);
  }
  auto prepared = devices_.prepare(vm);
  if (!prepared.ok()) return prepareFailed(vm, prepared.error());
  NodeChoices choices;
  choices.serialLogFile = consoleLog(key);
  auto spec = toDomainSpec(vm, prepared.value().attachments(), choices);
  if (!spec.ok()) return prepareFailed(vm, spec.error());
  std::vector<api::InterfaceStatus> macs;
  for (const auto& n : spec.value().interfaces) macs.push_back({n.interfaceName, n.mac});
  if (auto s = devices_.claimMacs(key, macs); !s.ok()) return prepareFailed(vm, s.error());
  holds_.erase(key);
  auto defineStart = Clock::now();
  auto defined = libvirt_.define(spec.value());
  if (!defined.ok()) {
    // A definition libvirt refuses as invalid will not get better by
    // retrying: Failed until the spec changes. Anything else is retried.
    bool permanent = defined.error().code == VMHOST_ERR_INVALID_ARGUMENT;
    (void)setPhase(vm,
                   permanent ? "Failed" : (vm.status.phase.empty() ? "Scheduled" : vm.status.phase),
                   "False", "DefineFailed", defined.error().message);
    event(vm, api::kEventTypeWarning, "FailedDefine", defined.error().message);
    return defined.error();
  }
  auto startStart = Clock::now();
  if (startSteps_ != nullptr) {
    startSteps_->observe({options_.nodeName, "define"},
                         std::chrono::duration<double>(startStart - defineStart).count());
  }
  if (auto s = defined.value().start(); !s.ok()) {
    (void)setPhase(vm, vm.status.phase.empty() ? "Scheduled" : vm.status.phase, "False",
                   "StartFailed", s.error().message);
    event(vm, api::kEventTypeWarning, "FailedStart", s.error().message);
    return s.error();
  }
  if (startSteps_ != nullptr) {
    startSteps_->observe({options_.nodeName, "start"},
                         std::chrono::duration<double>(Clock::now() - startStart).count());
  }
  lastStates_[defined.value().name()] = DomainState::kRunning;
  auto r =
      control_.updateVmStatus(vm.metadata.ns, vm.metadata.name, [&](api::VirtualMachineStatus& s) {
        if (s.nodeName != options_.nodeName) return false;
        s.phase = "Running";
        s.interfaces = macs;
        s.observedGeneration = vm.metadata.generation;
        api::setCondition(s.conditions, "Ready", "True", "DomainRunning", "the domain is running");
        return true;
      });
  if (!r.ok() && r.error().code != VMHOST_ERR_NOT_FOUND) return r.error();
  event(vm, api::kEventTypeNormal, "Started", "the domain is running on node " + options_.nodeName);
  return Ok{};
}

Result<bool> NodeAgent::stopDomain(const VmKey& key, std::optional<Domain>& domain) {
  if (domain) {
    auto state = domain->state();
    if (!state.ok()) return state.error();
    if (!isStopped(state.value().state)) {
      auto it = stopping_.find(key);
      if (it == stopping_.end()) {
        // Ask the guest first; it gets the grace period to power off.
        if (auto s = domain->shutdown(); !s.ok()) {
          if (auto d = domain->destroy(); !d.ok()) return d.error();
        } else {
          stopping_[key] = Clock::now();
          queue_.insert(key);
          return false;
        }
      } else if (Clock::now() - it->second < options_.stopGracePeriod) {
        return false;  // still within the grace period; the poll requeues it
      } else if (auto d = domain->destroy(); !d.ok()) {
        return d.error();
      }
    }
  }
  stopping_.erase(key);
  return true;
}

Status NodeAgent::ensureEvicted(const api::VirtualMachine& vm, std::optional<Domain>& domain) {
  VmKey key{vm.metadata.ns, vm.metadata.name};
  auto stopped = stopDomain(key, domain);
  if (!stopped.ok()) return stopped.error();
  if (!stopped.value()) return Ok{};  // shutting down; requeued until it is off
  if (api::evictionAcknowledged(vm.status)) return Ok{};
  if (auto r = devices_.releaseEphemeral(vm); !r.ok()) return r.error();
  // The domain is off and this node starts no VM that carries an eviction
  // request: acknowledge this request (its id is in the message), so the
  // controller may let another node start the VM.
  std::string ack;
  auto r =
      control_.updateVmStatus(vm.metadata.ns, vm.metadata.name, [&](api::VirtualMachineStatus& s) {
        if (s.nodeName != options_.nodeName) return false;
        const api::Condition* request = api::evictionRequest(s);
        if (request == nullptr || api::evictionAcknowledged(s)) return false;
        ack = api::evictionAck(*request);
        s.phase = "Stopped";
        api::setCondition(s.conditions, "Ready", "False", api::kEvictedReason, ack);
        return true;
      });
  if (!r.ok() && r.error().code != VMHOST_ERR_NOT_FOUND) return r.error();
  if (r.ok() && !ack.empty()) {
    std::fprintf(stderr, "node %s: vm %s/%s: %s\n", options_.nodeName.c_str(),
                 vm.metadata.ns.c_str(), vm.metadata.name.c_str(), ack.c_str());
  }
  return Ok{};
}

Status NodeAgent::ensureStopped(const api::VirtualMachine& vm, std::optional<Domain>& domain) {
  VmKey key{vm.metadata.ns, vm.metadata.name};
  auto stopped = stopDomain(key, domain);
  if (!stopped.ok()) return stopped.error();
  if (!stopped.value()) return Ok{};
  if (vm.status.phase != "Stopped") {
    // Before the phase says Stopped, so that a failed release is retried.
    if (auto r = devices_.releaseEphemeral(vm); !r.ok()) return r.error();
    event(vm, api::kEventTypeNormal, "Stopped", "stopped: runStrategy is Halted");
    return setPhase(vm, "Stopped", "False", "Stopped", "runStrategy is Halted");
  }
  return Ok{};
}

Status NodeAgent::reconcile(const std::string& ns, const std::string& name) {
  auto started = Clock::now();
  Status s = reconcileVm({ns, name});
  if (reconcileLatency_) {
    reconcileLatency_->observe({options_.nodeName},
                               std::chrono::duration<double>(Clock::now() - started).count());
  }
  if (!s.ok()) {
    ++failures_;
    if (reconcileErrors_) reconcileErrors_->inc({options_.nodeName});
  }
  return s;
}

Status NodeAgent::reconcileVm(const VmKey& key) {
  const auto& [ns, name] = key;
  auto current = control_.getVm(ns, name);
  if (!current.ok()) return current.error();
  if (!current.value()) {
    // Gone from this node's view. Its data goes only when the control plane
    // knows it was deleted; a VM that may run elsewhere keeps its disks.
    mine_.erase(key);
    if (auto job = sourceJobs_.find(key); job != sourceJobs_.end()) {
      // A migration still running: it ends before the domain is looked at.
      if (!job->second.job->outcome()) return Ok{};
      sourceJobs_.erase(job);
    }
    return cleanup(key, "", control_.confirmedDeleted(ns, name));
  }
  const api::VirtualMachine& vm = *current.value();

  std::optional<Domain> domain;
  auto found = libvirt_.lookupByName(domainName(ns, name));
  if (found.ok()) {
    auto meta = found.value().metadata();
    if (meta.ok() && meta.value() && meta.value()->vm.uid != vm.metadata.uid) {
      // A domain of an earlier VM with the same name: tear it down first.
      if (auto s = cleanup(key, meta.value()->vm.uid, /*deleteData=*/true); !s.ok()) {
        return s;
      }
    } else {
      domain = std::move(found.value());
    }
  } else if (found.error().code != VMHOST_ERR_NOT_FOUND) {
    return found.error();
  }

  if (migrationTarget(vm) && !vm.metadata.deletionTimestamp) {
    return reconcileMigrationTarget(vm, domain);
  }
  if (vm.status.nodeName != options_.nodeName || vm.metadata.deletionTimestamp) {
    mine_.erase(key);
    sourceJobs_.erase(key);
    holds_.erase(key);
    // Bound elsewhere (a drain, a lost node's VM restarted on another one):
    // stop the copy here but keep its disks, which may be the new node's.
    bool deleting = vm.metadata.deletionTimestamp.has_value();
    if (domain) return cleanup(key, vm.metadata.uid, deleting);
    return Ok{};
  }
  mine_.insert(key);
  // The source of a live migration in flight: nothing else happens to the
  // domain until it ends.
  if (vm.status.migration && vm.status.migration->sourceNode == options_.nodeName &&
      !api::migrationStateFinished(*vm.status.migration)) {
    return reconcileMigrationSource(vm, domain);
  }
  if (sourceJobs_.count(key)) sourceJobs_.erase(key);
  // Being evicted (a drain): stopped whatever the run strategy says, and
  // never started again here (the hand-shake: api/eviction.h).
  if (api::evictionRequest(vm.status) != nullptr) return ensureEvicted(vm, domain);
  if (vm.spec.runStrategy == "Halted") return ensureStopped(vm, domain);
  return ensureRunning(vm, domain);
}

}  // namespace vmhost::node
