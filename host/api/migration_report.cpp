// applyMigrationReport(): how a node's view of a VM's migration is merged
// into the VM's status (the rules are in migration.h).
#include "api/migration.h"

#include "api/timestamps.h"

namespace vmhost::api {
namespace {

Error refused(const std::string& why) {
  return Error{VMHOST_ERR_FAILED_PRECONDITION, "migration report refused: " + why, false};
}

}  // namespace

Result<bool> applyMigrationReport(VirtualMachineStatus& status, const std::string& node,
                                  const MigrationState& report) {
  if (!status.migration) return refused("the VM has no migration in flight");
  MigrationState& cur = *status.migration;
  if (cur.uid != report.uid || cur.name != report.name) {
    return refused("the VM's migration is " + cur.name + " (uid " + cur.uid + "), not " +
                   report.name + " (uid " + report.uid + ")");
  }
  bool isSource = node == cur.sourceNode;
  bool isTarget = node == cur.targetNode;
  if (!isSource && !isTarget) {
    return refused("node " + node + " is neither the source (" + cur.sourceNode +
                   ") nor the target (" + cur.targetNode + ") of migration " + cur.name);
  }
  if (migrationStateFinished(cur)) {
    // Repeats of the outcome are fine (a restarted agent says it again).
    // The source's figures complete a success the target reported first.
    if (report.phase == cur.phase) {
      if (isSource && report.result && !cur.result) {
        cur.result = report.result;
        if (report.progress) cur.progress = report.progress;
        return true;
      }
      return false;
    }
    return refused("migration " + cur.name + " has already " +
                   (cur.phase == kMigrationSucceeded ? "succeeded" : "failed"));
  }
  const std::string& want = report.phase;
  bool changed = false;
  auto finish = [&](const std::string& phase) {
    cur.phase = phase;
    cur.endTimestamp = nowRfc3339();
    changed = true;
  };

  if (want == kMigrationFailed) {
    // The guest keeps running on the source, which stays bound. Only the
    // source knows whether its libvirt job runs, so once the target is
    // ready only the source may say it failed (a job that completes after
    // a Failed record would leave the guest running on an unbound node).
    if (isTarget && !isSource && cur.phase != kMigrationPreparingTarget) {
      return refused("the target may fail a migration only while preparing (it is " + cur.phase +
                     "); the source decides once its job may run");
    }
    if (status.nodeName != cur.sourceNode) {
      return refused("the VM is already bound to " + status.nodeName);
    }
    cur.reason = report.reason;
    cur.message = report.message;
    if (report.progress) cur.progress = report.progress;
    finish(kMigrationFailed);
    return changed;
  }

  if (want == kMigrationTargetReady) {
    if (!isTarget) return refused("only the target reports TargetReady");
    if (cur.phase != kMigrationPreparingTarget) {
      // A repeat of what the target published (a retry, a restarted agent):
      // nothing to do. Anything else is refused: once ready, the source may
      // already be migrating to what was published, which must not change
      // under it.
      if (cur.target && cur.target == report.target) return false;
      return refused("migration " + cur.name + " is " + cur.phase +
                     ": TargetReady only follows PreparingTarget, and the published target "
                     "does not change");
    }
    if (!report.target || report.target->domainXml.empty() || report.target->libvirtUri.empty()) {
      return refused("a TargetReady report needs the target's domain XML and libvirt URI");
    }
    cur.phase = kMigrationTargetReady;
    cur.target = report.target;
    return true;
  }

  if (want == kMigrationRunning) {
    if (!isSource) return refused("only the source reports a running migration");
    if (cur.phase != kMigrationTargetReady && cur.phase != kMigrationRunning) {
      return refused("migration " + cur.name + " is " + cur.phase + ", not ready to run");
    }
    if (cur.phase != kMigrationRunning) {
      cur.phase = kMigrationRunning;
      changed = true;
    }
    if (report.progress && cur.progress != report.progress) {
      cur.progress = report.progress;
      changed = true;
    }
    return changed;
  }

  if (want == kMigrationSucceeded) {
    if (cur.phase != kMigrationTargetReady && cur.phase != kMigrationRunning) {
      return refused("migration " + cur.name + " is " + cur.phase + ", it cannot have succeeded");
    }
    if (status.nodeName != cur.sourceNode) {
      return refused("the VM is bound to " + status.nodeName + ", not the source " +
                     cur.sourceNode);
    }
    // The handover: one write moves the binding and records the outcome.
    status.nodeName = cur.targetNode;
    if (report.result) cur.result = report.result;
    if (report.progress) cur.progress = report.progress;
    finish(kMigrationSucceeded);
    return changed;
  }

  return refused("a node cannot report phase '" + want + "'");
}

}  // namespace vmhost::api
