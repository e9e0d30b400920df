#include "api/eviction.h"

#include "api/conditions.h"

namespace vmhost::api {

bool nodeDraining(const Node& node) {
  return node.spec.unschedulable && node.metadata.annotations.count(kDrainAnnotation) > 0;
}

const Condition* evictionRequest(const VirtualMachineStatus& status) {
  const Condition* c = findCondition(status.conditions, kEvictingCondition);
  return c != nullptr && c->status == "True" ? c : nullptr;
}

std::string evictionAck(const Condition& request) {
  return "the domain is stopped for the eviction: " + request.message;
}

bool evictionAcknowledged(const VirtualMachineStatus& status) {
  const Condition* request = evictionRequest(status);
  const Condition* ready = findCondition(status.conditions, kReadyCondition);
  return request != nullptr && ready != nullptr && status.phase == kPhaseStopped &&
         ready->status == "False" && ready->reason == kEvictedReason &&
         ready->message == evictionAck(*request);
}

std::string liveMigrateRefusal(const std::string& ns, const std::string& name) {
  return "VM " + ns + "/" + name +
         ": evictionStrategy LiveMigrate needs live migration, which this version does not "
         "have; set Restart or None";
}

}  // namespace vmhost::api
