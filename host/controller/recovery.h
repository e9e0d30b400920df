// Dead-host recovery: the VMs of a node that has been NotReady for longer
// than a grace period are started elsewhere, when that is safe.
//
// Policy (docs/operator-guide.md, "When a host dies"):
//   - only VMs with runStrategy Always are moved (the user asked for them to
//     run; Halted/Manual/RerunOnFailure VMs wait for their node);
//   - a VM whose disks are local to the lost host (a `local` storage plugin,
//     or any hostPath volume) stays bound to it, with a Recovery=False
//     condition (reason LocalDisks) saying why: its data is on that host;
//   - with shared storage (a storage plugin that declares
//     VMHOST_CAP_STORAGE_SHARED, e.g. shared-dir) the VM is unbound
//     (Recovery=True, reason RestartedElsewhere) and the scheduler places it
//     on a Ready node.
// NotReady only means the controller stopped hearing from the node: its
// guests may still run. The guard against a second copy is not this timer
// but disk locks: QEMU locks its image files (OFD locks, which hold across
// hosts on shared storage that supports them, e.g. NFSv4), and nodes run
// libvirt's lock manager (virtlockd, disk leases in a lockspace on the shared
// storage; taken when the guest's CPUs start, so QEMU's own lock, taken at
// open, is the one that fires first where both apply). The new node's start
// fails with the lock error, visible in the VM's Ready condition, and is
// retried; measured in tests/cluster/cluster_recovery_test.sh. When the lost
// host comes back, its agent sees the VM bound elsewhere and stops its copy
// (keeping the disks), which releases the locks.
#pragma once

#include "api/event_recorder.h"
#include "store/store.h"

#include <chrono>
#include <set>
#include <stop_token>
#include <string>

namespace vmhost::controller {

struct RecoveryOptions {
  std::chrono::seconds gracePeriod{300};
  bool sharedStorage = false;  // the storage plugin declares VMHOST_CAP_STORAGE_SHARED
  std::chrono::milliseconds interval{1000};
  // Where Recovered / RecoveryHeld events go; null: none.
  api::EventSink* events = nullptr;
};

class DeadNodeRecovery {
 public:
  DeadNodeRecovery(store::Store& store, RecoveryOptions options)
      : store_(store), options_(options) {}

  void run(std::stop_token stop);
  // One pass; returns the names of the nodes it considers lost.
  std::set<std::string> reconcileOnce();

 private:
  void event(const api::VirtualMachine& vm, const char* type, const char* reason,
             const std::string& message);

  store::Store& store_;
  RecoveryOptions options_;
};

}  // namespace vmhost::controller
