// The eviction controller: empties a drained node by stopping or re-placing
// each VM bound to it according to the VM's spec.evictionStrategy.
//
// A drain is requested on the Node: spec.unschedulable true (cordoned) and
// the annotation vmhost.io/drain (vmctl drain sets both in one merge patch;
// vmctl uncordon removes both, which cancels what has not completed). The
// logic lives here, in the controller, so a drain continues when the client
// that asked for it goes away.
//
// Per VM bound to a draining node, a two-step hand-shake that guarantees a
// VM never runs on two nodes at once:
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
// LiveMigrate needs live migration, which this version does not have: while
// a VM with evictionStrategy LiveMigrate is bound to a draining node, no
// eviction is started on that node (the drain fails as a whole and touches
// no other VM); that VM gets Evicting=False, reason LiveMigrationUnsupported.
//
// Level-triggered: it polls the nodes every `interval`, and the VMs while a
// drain or an eviction is in progress; a controller restart converges.
#pragma once

#include "api/event_recorder.h"
#include "api/eviction.h"
#include "api/types.h"
#include "store/store.h"

#include <chrono>
#include <map>
#include <stop_token>
#include <string>

namespace vmhost::controller {

enum class EvictionStep {
  kNothing,  // not on a draining node, nothing to undo
  kRequest,  // set Evicting=True with a new id
  kWait,     // requested; the node has not acknowledged yet
  kRefuse,   // LiveMigrate: Evicting=False, LiveMigrationUnsupported
  kCancel,   // the drain is off: remove Evicting
  kReplace,  // acknowledged, Restart: unbind for the scheduler
  kHalt,     // acknowledged, None (or stopped Manual): unbind, runStrategy Halted
};

// The next step for `vm`. `node` is the node it is bound to (nullptr if
// unbound or unknown); `nodeBlocked` is whether a VM with evictionStrategy
// LiveMigrate is bound to that node (then no new eviction starts there).
EvictionStep nextEvictionStep(const api::VirtualMachine& vm, const api::Node* node,
                              bool nodeBlocked);

struct EvictionOptions {
  std::chrono::milliseconds interval{1000};
  // Where Evicting / Evicted / EvictionRefused events go; null: none.
  api::EventSink* events = nullptr;
};

class EvictionController {
 public:
  explicit EvictionController(store::Store& store, EvictionOptions options = {});

  // Runs until `stop` is requested.
  void run(std::stop_token stop);

  // One pass over the nodes and (when needed) the VMs; returns whether any
  // eviction is still in progress or any node is draining.
  bool reconcileOnce();

 private:
  void apply(const api::VirtualMachine& vm, EvictionStep step);

  store::Store& store_;
  EvictionOptions options_;
  bool scanVms_ = true;  // the first pass looks for leftovers of a drain
};

}  // namespace vmhost::controller
