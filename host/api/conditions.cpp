#include "api/conditions.h"

#include "api/timestamps.h"

#include <algorithm>

namespace vmhost::api {

bool setCondition(std::vector<Condition>& conditions, const std::string& type,
                  const std::string& status, const std::string& reason,
                  const std::string& message) {
  for (auto& c : conditions) {
    if (c.type != type) continue;
    if (c.status == status && c.reason == reason && c.message == message) return false;
    if (c.status != status) c.lastTransitionTime = nowRfc3339();
    c.status = status;
    c.reason = reason;
    c.message = message;
    return true;
  }
  conditions.push_back(Condition{type, status, reason, message, nowRfc3339()});
  return true;
}

bool removeCondition(std::vector<Condition>& conditions, const std::string& type) {
  auto it = std::remove_if(conditions.begin(), conditions.end(),
                           [&](const Condition& c) { return c.type == type; });
  bool removed = it != conditions.end();
  conditions.erase(it, conditions.end());
  return removed;
}

const Condition* findCondition(const std::vector<Condition>& conditions, const std::string& type) {
  for (const auto& c : conditions) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

}  // namespace vmhost::api
