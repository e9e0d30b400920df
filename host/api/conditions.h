// Status conditions (metav1.Condition-like), as every component that writes
// status changes them.
#pragma once

#include "api/types.h"

#include <string>
#include <vector>

namespace vmhost::api {

// Sets (or adds) the condition `type`; lastTransitionTime changes only when
// the status does, as Kubernetes does. Returns whether anything changed.
bool setCondition(std::vector<Condition>& conditions, const std::string& type,
                  const std::string& status, const std::string& reason, const std::string& message);

// Removes the condition `type`; returns whether it was there.
bool removeCondition(std::vector<Condition>& conditions, const std::string& type);

const Condition* findCondition(const std::vector<Condition>& conditions, const std::string& type);

}  // namespace vmhost::api
