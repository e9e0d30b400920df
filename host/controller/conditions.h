// Helpers for status conditions, shared by the controller and node agents.
#pragma once

#include "api/types.h"

#include <string>
#include <vector>

namespace vmhost::controller {

// Sets (or adds) the condition `type`; lastTransitionTime changes only when
// the status does, as Kubernetes does. Returns whether anything changed.
bool setCondition(std::vector<api::Condition>& conditions, const std::string& type,
                  const std::string& status, const std::string& reason, const std::string& message);

// Removes the condition `type`; returns whether it was there.
bool removeCondition(std::vector<api::Condition>& conditions, const std::string& type);

const api::Condition* findCondition(const std::vector<api::Condition>& conditions,
                                    const std::string& type);

}  // namespace vmhost::controller
