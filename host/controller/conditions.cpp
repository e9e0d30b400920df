#include "controller/conditions.h"

#include "api/objects.h"

#include <algorithm>

namespace vmhost::controller {

bool setCondition(std::vector<api::Condition>& conditions, const std::string& type,
                  const std::string& status, const std::string& reason,
                  const std::string& message) {
  for (auto& c : conditions) {
    if (c.type != type) continue;
    if (c.status == status && c.reason == reason && c.message == message) return false;
    if (c.status != status) c.lastTransitionTime = api::nowRfc3339();
    c.status = status;
    c.reason = reason;
    c.message = message;
    return true;
  }
  conditions.push_back(api::Condition{type, status, reason, message, api::nowRfc3339()});
  return true;
}

bool removeCondition(std::vector<api::Condition>& conditions, const std::string& type) {
  auto it = std::remove_if(conditions.begin(), conditions.end(),
                           [&](const api::Condition& c) { return c.type == type; });
  bool removed = it != conditions.end();
  conditions.erase(it, conditions.end());
  return removed;
}

const api::Condition* findCondition(const std::vector<api::Condition>& conditions,
                                    const std::string& type) {
  for (const auto& c : conditions) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

}  // namespace vmhost::controller
