// The eviction controller: empties a drained node by stopping, re-placing or
// live-migrating each VM bound to it according to the VM's
// spec.evictionStrategy.
//
// A drain is requested on the Node: spec.unschedulable true (cordoned) and
// the annotation vmhost.io/drain (vmctl drain sets both in one merge patch;
// vmctl uncordon removes both, which cancels what has not completed). The
// logic lives here, in the controller, so a drain continues when the client
// that asked for it goes away. The drain is complete when no VM is bound to
// the node.
//
// None and Restart (and LiveMigrate while the VM is not Running): per VM, a
// two-step hand-shake that guarantees a VM never runs on two nodes at once:
//   1. request  the controller sets the status condition Evicting=True
//               (reason NodeDrain) with a message that carries a random
//               eviction id. The node's agent, seeing it on a VM bound to it,
//               stops the domain (ACPI shutdown, then a forced stop after
//               the grace period) and only then acknowledges: phase Stopped
//               and Ready=False, reason Evicted, message api::evictionAck(request).
//               The agent never starts a VM that carries the request.
//   2. unbind   seeing the acknowledgement for the current request id, the
//               controller clears status.nodeName in one optimistic-
//               concurrency write (which also removes Evicting):
//                 Restart  the scheduler places it anew (the drained node is
//                          cordoned) and the new node starts it;
//                 None     spec.runStrategy becomes Halted in the same write:
//                          it stays stopped until `vmctl start`. So does a
//                          Manual or RerunOnFailure VM that was not running
//                          when the eviction was requested (a new node would
//                          start it: it has no domain there).
//               The old node sees it unbound and undefines the domain.
// The scheduler places only unbound VMs, and the unbind happens only after
// the old node reported the domain stopped, so a new node cannot start the
// VM before the old one has stopped it. The id makes a stale acknowledgement
// (of an earlier, cancelled eviction) worthless.
//
// LiveMigrate, VM Running: the controller creates a VirtualMachineMigration
// named api::drainMigrationName(vm, node) ("<vm>-drain-<node>": a restarted
// controller finds it instead of creating a second), labelled and annotated
// vmhost.io/drain-node=<node> (api/eviction.h). The migration controller
// (controller/migration.h) paces them: they wait in Pending while its limits
// are reached (by default at most 2 outbound from one node, 5 in the
// cluster), so a drain of many VMs moves a few at a time. The VM leaves the
// node at the migration's handover. Meanwhile nothing is written on the VM
// (the node agent must not see Evicting=True: that would stop the guest).
//   - A drain migration that ends Failed (or Succeeded with the VM back on
//     the node) while the node still drains is replaced by a new one of the
//     same name after a backoff (migrationRetry, doubled per attempt up to
//     migrationRetryMax; the attempt is in its vmhost.io/drain-attempt
//     annotation). One left from an earlier drain is replaced at once.
//   - No drain migration is created while another migration of the VM is
//     unfinished (a user's `vmctl migrate`): that one moves it, or fails and
//     the drain's follows.
//   - A drain migration deleted by someone else (`vmctl migrate --cancel`)
//     is created again while the node drains: uncordon stops a drain.
// LiveMigrate, VM not Running (Scheduled, Stopped, Succeeded, Failed): there
// is no running guest to move; it is evicted as with Restart (the hand-shake
// above; a Manual or RerunOnFailure one that is not running is halted).
// A drain migration created before the VM stopped is waited for first (the
// migration controller fails it, VmNotRunning).
//
// Uncordon (the drain withdrawn): evictions not acknowledged yet are
// cancelled (Evicting removed); drain migrations that have not started
// (phase "", Pending or Scheduling) are deleted, which the migration
// controller turns into Failed (Cancelled) and removes; those already
// PreparingTarget or Running are left to finish (the VM ends on the target,
// or stays where it is if the migration fails).
//
// Level-triggered: it polls the nodes every `interval`, and the VMs and the
// migrations while a drain, an eviction or a drain migration is in progress;
// a controller restart converges.
#pragma once

#include "api/event_recorder.h"
#include "api/eviction.h"
#include "api/migration.h"
#include "api/types.h"
#include "store/store.h"

#include <chrono>
#include <map>
#include <set>
#include <stop_token>
#include <string>

namespace vmhost::controller {

enum class EvictionStep {
  kNothing,  // not on a draining node, nothing to undo
  kRequest,  // set Evicting=True with a new id
  kWait,     // requested and not acknowledged yet, or a migration in flight
  kMigrate,  // LiveMigrate and Running: create the drain's migration (or
             // replace the finished one that did not move the VM)
  kCancel,   // the drain is off: remove Evicting
  kReplace,  // acknowledged, Restart: unbind for the scheduler
  kHalt,     // acknowledged, None (or stopped Manual): unbind, runStrategy Halted
};

// What the controller knows about the migrations of a VM bound to a
// draining node, for nextEvictionStep().
struct EvictionMigrations {
  // The drain's migration of the VM from its node (api::drainMigrationName),
  // if it exists.
  const api::VirtualMachineMigration* drain = nullptr;
  // Another migration of the VM is unfinished (a migration object, or the
  // VM's status.migration).
  bool otherInFlight = false;
  // `drain` is finished without having moved the VM and may be replaced now:
  // its backoff has passed, or it belongs to an earlier drain.
  bool replaceDue = false;
};

// The next step for `vm`. `node` is the node it is bound to (nullptr if
// unbound or unknown).
EvictionStep nextEvictionStep(const api::VirtualMachine& vm, const api::Node* node,
                              const EvictionMigrations& migrations = {});

struct EvictionOptions {
  std::chrono::milliseconds interval{1000};
  // A drain migration that failed is tried again after migrationRetry, then
  // twice as long per attempt, at most migrationRetryMax.
  std::chrono::seconds migrationRetry{20};
  std::chrono::seconds migrationRetryMax{300};
  // Where Evicting / Evicted / EvictionCancelled / Migrating /
  // MigrationRetry / MigrationWithdrawn events go; null: none.
  api::EventSink* events = nullptr;
};

class EvictionController {
 public:
  explicit EvictionController(store::Store& store, EvictionOptions options = {});

  // Runs until `stop` is requested.
  void run(std::stop_token stop);

  // One pass over the nodes and (when needed) the VMs and migrations;
  // returns whether any eviction or drain migration is still in progress or
  // any node is draining.
  bool reconcileOnce();

 private:
  struct StoredMigration {
    api::VirtualMachineMigration object;
    int64_t modRevision = 0;
  };
  void apply(const api::VirtualMachine& vm, EvictionStep step, const api::Node* boundNode,
             const StoredMigration* drain);
  void createDrainMigration(const api::VirtualMachine& vm, const api::Node& node,
                            const StoredMigration* existing);
  // Deletes as the API does: marked while finalizers hold it, removed
  // otherwise. Returns whether it is gone.
  bool deleteMigration(const StoredMigration& m);
  void withdraw(const StoredMigration& m, const std::map<std::string, api::Node>& nodes,
                const std::vector<api::VirtualMachine>& vms);
  bool retryDue(const api::VirtualMachineMigration& m, const api::Node& node) const;
  void event(const api::VirtualMachine& vm, const char* type, const char* reason,
             const std::string& message);

  store::Store& store_;
  EvictionOptions options_;
  bool scanVms_ = true;  // the first pass looks for leftovers of a drain
  // Drain migrations already logged as left to finish after an uncordon.
  std::set<std::string> leftToFinish_;
};

}  // namespace vmhost::controller
