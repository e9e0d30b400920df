#include "controller/migration.h"

#include "api/events.h"
#include "api/objects.h"
#include "api/timestamps.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <thread>

namespace vmhost::controller {
namespace {

bool active(const std::string& phase) {
  return phase == api::kMigrationScheduling || phase == api::kMigrationPreparingTarget ||
         phase == api::kMigrationRunning;
}

bool finished(const std::string& phase) {
  return phase == api::kMigrationSucceeded || phase == api::kMigrationFailed;
}

int64_t nowSeconds() { return static_cast<int64_t>(std::time(nullptr)); }

void logLine(const std::string& line) { std::fprintf(stderr, "controller: %s\n", line.c_str()); }

}  // namespace

MigrationController::MigrationController(store::Store& store, SchedulingController& scheduling,
                                         MigrationOptions options)
    : store_(store), scheduling_(scheduling), options_(options) {}

void MigrationController::run(std::stop_token stop) {
  // Woken by any change to a migration or a VM (the nodes write the VMs'
  // records), so that each step follows the last without waiting for the
  // next period; a pass that wrote anything is followed by another at once
  // (new -> Pending -> Scheduling needs no waiting). `interval` is only the
  // longest sleep.
  std::mutex mu;
  std::condition_variable cv;
  bool woken = true;
  auto wake = [&] {
    std::lock_guard lock(mu);
    woken = true;
    cv.notify_one();
  };
  std::unique_ptr<store::Watch> migrations, vms;
  while (!stop.stop_requested()) {
    if (!migrations || !vms) {
      migrations.reset();
      vms.reset();
      if (auto rev = store_.currentRevision(); rev.ok()) {
        auto m = store_.watch(api::kMigrationsResource, "", rev.value());
        auto v = store_.watch(api::kVirtualMachinesResource, "", rev.value());
        if (m.ok() && v.ok()) {
          migrations = std::move(m.value());
          vms = std::move(v.value());
          migrations->setNotify(wake);
          vms->setNotify(wake);
        }
      }
    }
    // What the watches hold only says "look again": drained, bounded.
    for (store::Watch* w : {migrations.get(), vms.get()}) {
      for (int n = 0; w != nullptr && n < 100000; ++n) {
        auto e = w->tryNext();
        if (!e) break;
        if (e->type == store::WatchEventType::kError) {
          migrations.reset();
          vms.reset();
          break;
        }
      }
    }
    for (int round = 0; round < 8 && !stop.stop_requested(); ++round) {
      auto before = store_.currentRevision();
      reconcileOnce();
      auto after = store_.currentRevision();
      if (!before.ok() || !after.ok() || before.value() == after.value()) break;
    }
    std::unique_lock lock(mu);
    // A target question in flight is answered by the scheduler's next round:
    // looked at again soon.
    auto wait = asked_.empty() ? options_.interval : std::chrono::milliseconds(20);
    cv.wait_for(lock, wait, [&] { return woken || stop.stop_requested(); });
    woken = false;
  }
  if (migrations) migrations->setNotify(nullptr);
  if (vms) vms->setNotify(nullptr);
}

void MigrationController::event(const api::VirtualMachineMigration& m, const char* type,
                                const char* reason, const std::string& message) {
  if (options_.events == nullptr) return;
  api::EventRecord e;
  e.object.apiVersion = api::kApiVersion;
  e.object.kind = api::kVirtualMachineMigrationKind;
  e.object.ns = m.metadata.ns;
  e.object.name = m.metadata.name;
  e.object.uid = m.metadata.uid;
  e.type = type;
  e.reason = reason;
  e.message = message;
  e.source = api::EventSource{"vmhost-migration", ""};
  options_.events->record(std::move(e));
}

void MigrationController::setStatus(
    const api::VirtualMachineMigration& m,
    const std::function<bool(api::VirtualMachineMigrationStatus&)>& mutate) {
  auto r = api::updateMigrationStatus(store_, m.metadata.ns, m.metadata.name, mutate);
  if (!r.ok() && r.error().code != VMHOST_ERR_NOT_FOUND) {
    logLine("migration " + m.metadata.ns + "/" + m.metadata.name + ": " + r.error().message);
  }
}

void MigrationController::fail(const api::VirtualMachineMigration& m, const std::string& reason,
                               const std::string& message) {
  bool wrote = false;
  setStatus(m, [&](api::VirtualMachineMigrationStatus& s) {
    if (finished(s.phase)) return false;
    s.phase = api::kMigrationFailed;
    s.reason = reason;
    s.message = message;
    s.endTimestamp = api::nowRfc3339();
    wrote = true;
    return true;
  });
  if (wrote) {
    logLine("migration " + m.metadata.ns + "/" + m.metadata.name + " failed: " + message);
    event(m, api::kEventTypeWarning, "MigrationFailed", message);
  }
}

void MigrationController::finalize(const api::VirtualMachineMigration& m) {
  // The finalizer goes; a deleted object without finalizers is removed.
  auto key = api::migrationKey(m.metadata.ns, m.metadata.name);
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto cur = store_.get(key);
    if (!cur.ok()) return;
    auto decoded = api::decodeStoredMigration(cur.value());
    if (!decoded.ok() || decoded.value().metadata.uid != m.metadata.uid) return;
    auto obj = decoded.value();
    std::erase(obj.metadata.finalizers, std::string(api::kMigrationFinalizer));
    Result<store::StoredObject> w =
        obj.metadata.finalizers.empty() && obj.metadata.deletionTimestamp
            ? store_.remove(key, cur.value().modRevision)
            : store_.update(key, api::storeValue(obj), cur.value().modRevision);
    if (w.ok() || w.error().code != VMHOST_ERR_ABORTED) return;
  }
}

bool MigrationController::reconcileOnce() {
  auto list = store_.list(api::kMigrationsResource, "");
  if (!list.ok()) return false;
  std::vector<std::pair<api::VirtualMachineMigration, int64_t>> all;
  for (const auto& o : list.value().items) {
    auto m = api::decodeStoredMigration(o);
    if (m.ok()) all.emplace_back(std::move(m.value()), o.modRevision);
  }
  // Oldest first: the queue is fair, and the limits count what runs.
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.second < b.second;  // creation order is close enough to modRevision order
  });
  std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.first.metadata.creationTimestamp < b.first.metadata.creationTimestamp;
  });
  Counts counts;
  for (const auto& [m, rev] : all) {
    if (active(m.status.phase)) {
      ++counts.running;
      ++counts.outbound[m.status.sourceNode];
    }
  }
  bool unfinished = false;
  for (auto& [m, rev] : all) {
    reconcile(m, rev, counts);
    unfinished |= !finished(m.status.phase);
  }
  // Questions about migrations that went away or moved on from Scheduling
  // (failed or cancelled before the answer was read): they would hold the
  // next question back.
  for (auto it = asked_.begin(); it != asked_.end();) {
    bool known = std::any_of(all.begin(), all.end(), [&](const auto& e) {
      return e.first.metadata.uid == it->first && e.first.status.phase == api::kMigrationScheduling;
    });
    it = known ? std::next(it) : asked_.erase(it);
  }
  return unfinished;
}

void MigrationController::reconcile(api::VirtualMachineMigration& m, int64_t modRevision,
                                    Counts& counts) {
  const std::string label = m.metadata.ns + "/" + m.metadata.name;
  const bool deleting = m.metadata.deletionTimestamp.has_value();
  auto& st = m.status;

  // The finalizer, so that a delete (a cancel) waits for what is in flight.
  bool hasFinalizer = std::find(m.metadata.finalizers.begin(), m.metadata.finalizers.end(),
                                api::kMigrationFinalizer) != m.metadata.finalizers.end();
  if (!deleting && !finished(st.phase) && !hasFinalizer) {
    auto obj = m;
    obj.metadata.finalizers.push_back(api::kMigrationFinalizer);
    auto w = store_.update(api::migrationKey(m.metadata.ns, m.metadata.name), api::storeValue(obj),
                           modRevision);
    if (!w.ok()) return;  // changed meanwhile: the next pass
  }

  // The VM it names, as stored.
  auto vmObject = store_.get(api::virtualMachineKey(m.metadata.ns, m.spec.vmName));
  std::optional<api::VirtualMachine> vm;
  if (vmObject.ok()) {
    auto d = api::decodeStoredVirtualMachine(vmObject.value());
    if (d.ok()) vm = std::move(d.value());
  } else if (vmObject.error().code != VMHOST_ERR_NOT_FOUND) {
    return;  // the store is unwell: try again
  }
  if (vm && !st.vmUid.empty() && vm->metadata.uid != st.vmUid) vm.reset();  // another VM now
  const api::MigrationState* record =
      vm && vm->status.migration && vm->status.migration->uid == m.metadata.uid
          ? &*vm->status.migration
          : nullptr;

  if (finished(st.phase)) {
    if (deleting || hasFinalizer) finalize(m);
    return;
  }

  if (deleting) {
    // A cancel. Not started on any node yet: it fails now.
    if (record == nullptr || record->phase == api::kMigrationPreparingTarget) {
      if (record != nullptr) {
        // The target may be preparing: the record fails first (a conditional
        // write, so a TargetReady that won the race is seen next pass).
        auto r = api::updateVirtualMachineStatus(
            store_, m.metadata.ns, m.spec.vmName, [&](api::VirtualMachineStatus& s) {
              if (!s.migration || s.migration->uid != m.metadata.uid ||
                  s.migration->phase != api::kMigrationPreparingTarget) {
                return false;
              }
              s.migration->phase = api::kMigrationFailed;
              s.migration->reason = "Cancelled";
              s.migration->message = "cancelled before the target was ready";
              s.migration->endTimestamp = api::nowRfc3339();
              return true;
            });
        if (!r.ok()) return;
        if (!r.value().status.migration ||
            r.value().status.migration->phase != api::kMigrationFailed) {
          return;  // the target was ready first: abort it the other way next pass
        }
      }
      fail(m, "Cancelled", "cancelled: the VirtualMachineMigration was deleted before it started");
      finalize(m);
      return;
    }
    if (!record->abortRequested && !api::migrationStateFinished(*record)) {
      (void)api::updateVirtualMachineStatus(
          store_, m.metadata.ns, m.spec.vmName, [&](api::VirtualMachineStatus& s) {
            if (!s.migration || s.migration->uid != m.metadata.uid ||
                api::migrationStateFinished(*s.migration) || s.migration->abortRequested) {
              return false;
            }
            s.migration->abortRequested = true;
            return true;
          });
      event(m, api::kEventTypeNormal, "MigrationCancelling",
            "cancelling: aborting the job on " + record->sourceNode);
    }
    // Mirrored below until the source says how it ended.
  }

  if (st.phase.empty()) {
    if (!vm) return fail(m, "VmNotFound", "VirtualMachine " + m.spec.vmName + " does not exist");
    if (vm->status.nodeName.empty() || vm->status.phase != "Running") {
      return fail(m, "VmNotRunning",
                  "VirtualMachine " + m.spec.vmName + " is not running on a node (phase " +
                      (vm->status.phase.empty() ? std::string("none") : vm->status.phase) + ")");
    }
    setStatus(m, [&](api::VirtualMachineMigrationStatus& s) {
      if (!s.phase.empty()) return false;
      s.phase = api::kMigrationPending;
      s.vmUid = vm->metadata.uid;
      s.sourceNode = vm->status.nodeName;
      s.reason = "Queued";
      s.message = "waiting for its turn";
      return true;
    });
    return;
  }

  if (!vm) return fail(m, "VmDeleted", "VirtualMachine " + m.spec.vmName + " was deleted");

  if (st.phase == api::kMigrationPending) {
    if (vm->status.migration && !api::migrationStateFinished(*vm->status.migration) &&
        vm->status.migration->uid != m.metadata.uid) {
      return fail(m, "AlreadyMigrating",
                  "VirtualMachine " + m.spec.vmName + " is already being migrated by " +
                      vm->status.migration->name);
    }
    if (vm->status.nodeName.empty() || vm->status.phase != "Running") {
      return fail(m, "VmNotRunning", "VirtualMachine " + m.spec.vmName + " stopped running");
    }
    std::string source = vm->status.nodeName;
    std::string reason, message;
    if (counts.running >= options_.parallelMigrationsPerCluster) {
      reason = "ClusterLimit";
      message = "waiting: " + std::to_string(counts.running) +
                " migrations are running in the cluster (limit " +
                std::to_string(options_.parallelMigrationsPerCluster) + ")";
    } else if (counts.outbound[source] >= options_.parallelOutboundMigrationsPerNode) {
      reason = "NodeLimit";
      message = "waiting: " + std::to_string(counts.outbound[source]) +
                " migrations are running from node " + source + " (limit " +
                std::to_string(options_.parallelOutboundMigrationsPerNode) + ")";
    }
    if (!reason.empty()) {
      setStatus(m, [&](api::VirtualMachineMigrationStatus& s) {
        if (s.phase != api::kMigrationPending || (s.reason == reason && s.message == message)) {
          return false;
        }
        s.reason = reason;
        s.message = message;
        return true;
      });
      return;
    }
    ++counts.running;
    ++counts.outbound[source];
    setStatus(m, [&](api::VirtualMachineMigrationStatus& s) {
      if (s.phase != api::kMigrationPending) return false;
      s.phase = api::kMigrationScheduling;
      s.sourceNode = source;
      s.reason.clear();
      s.message.clear();
      s.startTimestamp = api::nowRfc3339();
      return true;
    });
    return;
  }

  if (st.phase == api::kMigrationScheduling) {
    if (record != nullptr) {
      // Written before a restart: carry on from the record.
      setStatus(m, [&](api::VirtualMachineMigrationStatus& s) {
        if (s.phase != api::kMigrationScheduling) return false;
        s.phase = api::kMigrationPreparingTarget;
        s.targetNode = record->targetNode;
        return true;
      });
      return;
    }
    if (vm->status.migration && !api::migrationStateFinished(*vm->status.migration)) {
      return fail(m, "AlreadyMigrating",
                  "VirtualMachine " + m.spec.vmName + " is already being migrated by " +
                      vm->status.migration->name);
    }
    auto it = asked_.find(m.metadata.uid);
    if (it == asked_.end()) {
      auto selector = m.spec.nodeSelector;
      if (!m.spec.targetNode.empty()) selector["kubernetes.io/hostname"] = m.spec.targetNode;
      if (!m.spec.targetNode.empty() && m.spec.targetNode == st.sourceNode) {
        return fail(m, "SchedulingFailed",
                    "spec.targetNode " + m.spec.targetNode + " is the node the VM runs on");
      }
      // One question at a time: the scheduler counts what a node receives
      // from the VMs' records, so each answer must come after the record of
      // the one before (two answered together could share one node's room).
      if (!asked_.empty()) return;
      asked_.emplace(m.metadata.uid, scheduling_.pickMigrationTarget(*vm, st.sourceNode, selector));
      return;
    }
    if (it->second.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
    auto answer = it->second.get();
    asked_.erase(it);
    if (!answer.ok()) {
      if (answer.error().retryable) return;  // asked again next pass
      return fail(m, "SchedulingFailed", "no node can take the VM: " + answer.error().message);
    }
    std::string target = answer.value();
    // The record that makes the target prepare: written only onto the VM as
    // it was when the migration was queued, still running on the source.
    bool written = false;
    auto r = api::updateVirtualMachineStatus(
        store_, m.metadata.ns, m.spec.vmName, [&](api::VirtualMachineStatus& s) {
          if (s.nodeName != st.sourceNode || s.phase != "Running") return false;
          if (s.migration && !api::migrationStateFinished(*s.migration)) return false;
          api::MigrationState rec;
          rec.name = m.metadata.name;
          rec.uid = m.metadata.uid;
          rec.sourceNode = st.sourceNode;
          rec.targetNode = target;
          rec.phase = api::kMigrationPreparingTarget;
          rec.parameters = m.spec.parameters;
          rec.startTimestamp = api::nowRfc3339();
          s.migration = rec;
          written = true;
          return true;
        });
    if (!r.ok()) return;
    if (!written) {
      return fail(
          m, "VmNotRunning",
          "VirtualMachine " + m.spec.vmName + " is no longer running on node " + st.sourceNode);
    }
    setStatus(m, [&](api::VirtualMachineMigrationStatus& s) {
      if (s.phase != api::kMigrationScheduling) return false;
      s.phase = api::kMigrationPreparingTarget;
      s.targetNode = target;
      return true;
    });
    event(m, api::kEventTypeNormal, "MigrationScheduled",
          "migrating " + m.spec.vmName + " from node " + st.sourceNode + " to node " + target);
    return;
  }

  // PreparingTarget or Running: the nodes speak through the VM's record.
  if (record == nullptr) {
    return fail(m, "RecordLost",
                "the VM's status no longer records this migration (it was replaced or removed)");
  }
  if (record->phase == api::kMigrationPreparingTarget ||
      record->phase == api::kMigrationTargetReady) {
    auto started = api::parseRfc3339(record->startTimestamp);
    if (record->phase == api::kMigrationPreparingTarget && started &&
        nowSeconds() - *started > options_.targetPrepareTimeout.count()) {
      (void)api::updateVirtualMachineStatus(
          store_, m.metadata.ns, m.spec.vmName, [&](api::VirtualMachineStatus& s) {
            if (!s.migration || s.migration->uid != m.metadata.uid ||
                s.migration->phase != api::kMigrationPreparingTarget) {
              return false;
            }
            s.migration->phase = api::kMigrationFailed;
            s.migration->reason = "TargetTimeout";
            s.migration->message = "node " + s.migration->targetNode + " did not prepare within " +
                                   std::to_string(options_.targetPrepareTimeout.count()) + " s";
            s.migration->endTimestamp = api::nowRfc3339();
            return true;
          });
    }
    return;
  }
  if (record->phase == api::kMigrationRunning) {
    setStatus(m, [&](api::VirtualMachineMigrationStatus& s) {
      if (finished(s.phase)) return false;
      bool changed = s.phase != api::kMigrationRunning || s.progress != record->progress;
      s.phase = api::kMigrationRunning;
      s.progress = record->progress;
      return changed;
    });
    return;
  }
  // Finished on the nodes.
  bool ok = record->phase == api::kMigrationSucceeded;
  bool wrote = false;
  setStatus(m, [&](api::VirtualMachineMigrationStatus& s) {
    if (finished(s.phase)) return false;
    s.phase = ok ? api::kMigrationSucceeded : api::kMigrationFailed;
    s.reason = ok ? "" : record->reason;
    s.message = ok ? "" : record->message;
    s.targetNode = record->targetNode;
    s.progress = record->progress;
    s.result = record->result;
    s.endTimestamp = record->endTimestamp.empty() ? api::nowRfc3339() : record->endTimestamp;
    wrote = true;
    return true;
  });
  if (wrote) {
    if (ok) {
      std::string msg = "migrated " + m.spec.vmName + " to node " + record->targetNode;
      if (record->result) {
        msg += " in " + std::to_string(record->result->totalMs) + " ms (downtime " +
               std::to_string(record->result->downtimeMs) + " ms, " +
               std::to_string(record->result->bytesTransferred / (1024 * 1024)) + " MiB moved)";
      }
      logLine("migration " + label + ": " + msg);
      event(m, api::kEventTypeNormal, "MigrationSucceeded", msg);
    } else {
      logLine("migration " + label + " failed: " + record->message);
      event(m, api::kEventTypeWarning, "MigrationFailed", record->message);
    }
  }
  if (deleting) finalize(m);
}

}  // namespace vmhost::controller
