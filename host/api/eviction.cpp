#include "api/eviction.h"

#include "api/conditions.h"

#include <cstdint>
#include <cstdio>

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

std::string drainMigrationName(const std::string& vm, const std::string& node) {
  std::string full = vm + "-drain-" + node;
  constexpr size_t kMax = 253;
  if (full.size() <= kMax) return full;
  // FNV-1a of the whole name keeps two long names apart.
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : full) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(h));
  std::string head = full.substr(0, kMax - 17);
  // A name part ends with a letter or digit.
  while (!head.empty() && (head.back() == '-' || head.back() == '.')) head.pop_back();
  return head + "-" + hash;
}

std::string drainMigrationNode(const ObjectMeta& meta) {
  auto it = meta.annotations.find(kDrainNodeAnnotation);
  return it == meta.annotations.end() ? "" : it->second;
}

}  // namespace vmhost::api
