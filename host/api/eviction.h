// The eviction hand-shake between the controller and a node, as both sides
// (and vmctl, which shows it) read it. The controller's side, which decides
// when to request and what to do once acknowledged, is
// controller/eviction.h; the node's is in its agent.
//
// A drain is requested on the Node: spec.unschedulable true and the
// annotation kDrainAnnotation. Per VM bound to a draining node:
//   1. request  the controller sets Evicting=True (reason kEvictingReason)
//               with a message carrying a random eviction id;
//   2. ack      the node stops the domain and then writes phase Stopped and
//               Ready=False, reason kEvictedReason, message evictionAck();
//   3. unbind   the controller, seeing the acknowledgement of the current
//               request id, clears status.nodeName (and removes Evicting).
// The id makes a stale acknowledgement (of an earlier, cancelled eviction)
// worthless.
#pragma once

#include "api/types.h"
#include "api/vocabulary.h"

#include <string>

namespace vmhost::api {

// Appended to an eviction request's message when the guest was not running.
inline constexpr const char* kNotRunningNote = "; the guest was not running";

// A drain was requested and is still wanted (uncordoning cancels it).
bool nodeDraining(const Node& node);

// The active eviction request on the VM, if any (Evicting=True).
const Condition* evictionRequest(const VirtualMachineStatus& status);

// The Ready message with which a node acknowledges `request` once the
// domain is stopped.
std::string evictionAck(const Condition& request);

// Whether the node acknowledged the VM's current eviction request.
bool evictionAcknowledged(const VirtualMachineStatus& status);

// The message of the LiveMigrate refusal, naming the VM.
std::string liveMigrateRefusal(const std::string& ns, const std::string& name);

}  // namespace vmhost::api
