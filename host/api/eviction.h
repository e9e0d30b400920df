// The eviction hand-shake between the controller and a node, as both sides
// (and vmctl, which shows it) read it, and how a drain names the live
// migrations it creates. The controller's side, which decides when to
// request and what to do once acknowledged, is controller/eviction.h; the
// node's is in its agent.
//
// A drain is requested on the Node: spec.unschedulable true and the
// annotation kDrainAnnotation. Per VM bound to a draining node that is not
// live-migrated (evictionStrategy None or Restart, or LiveMigrate while not
// Running):
//   1. request  the controller sets Evicting=True (reason kEvictingReason)
//               with a message carrying a random eviction id;
//   2. ack      the node stops the domain and then writes phase Stopped and
//               Ready=False, reason kEvictedReason, message evictionAck();
//   3. unbind   the controller, seeing the acknowledgement of the current
//               request id, clears status.nodeName (and removes Evicting).
// The id makes a stale acknowledgement (of an earlier, cancelled eviction)
// worthless.
//
// A Running VM with evictionStrategy LiveMigrate is moved by a
// VirtualMachineMigration the controller creates, named
// drainMigrationName(vm, node), carrying:
//   label      kDrainNodeLabel = NODE (when NODE fits a label value), for
//              `kubectl get vmim -l vmhost.io/drain-node=NODE`
//   annotation kDrainNodeAnnotation = NODE (always: what the controller and
//              vmctl go by)
//   annotation kDrainAnnotation = the Node's drain annotation when it was
//              created (which drain it belongs to)
//   annotation kDrainAttemptAnnotation = 1, 2, ... (retries of a failed one)
#pragma once

#include "api/types.h"
#include "api/vocabulary.h"

#include <string>

namespace vmhost::api {

// Appended to an eviction request's message when the guest was not running.
inline constexpr const char* kNotRunningNote = "; the guest was not running";

// On a VirtualMachineMigration a drain created (see above).
inline constexpr const char* kDrainNodeLabel = "vmhost.io/drain-node";
inline constexpr const char* kDrainNodeAnnotation = "vmhost.io/drain-node";
inline constexpr const char* kDrainAttemptAnnotation = "vmhost.io/drain-attempt";

// A drain was requested and is still wanted (uncordoning cancels it).
bool nodeDraining(const Node& node);

// The active eviction request on the VM, if any (Evicting=True).
const Condition* evictionRequest(const VirtualMachineStatus& status);

// The Ready message with which a node acknowledges `request` once the
// domain is stopped.
std::string evictionAck(const Condition& request);

// Whether the node acknowledged the VM's current eviction request.
bool evictionAcknowledged(const VirtualMachineStatus& status);

// The name of the migration that moves VM `vm` off draining node `node`:
// "<vm>-drain-<node>", deterministic so that a restarted controller finds
// the one it created; shortened with a hash of the whole when longer than
// a name may be (253).
std::string drainMigrationName(const std::string& vm, const std::string& node);

// The node whose drain created the migration with this metadata; "" if no
// drain did.
std::string drainMigrationNode(const ObjectMeta& meta);

}  // namespace vmhost::api
