// The baseline of the invoke benchmark: the same decision as the precopy
// plugin's plan(), behind a plain C++ virtual call in another translation
// unit (so the compiler cannot inline it away).
#pragma once

#include <cstdint>
#include <memory>

struct DirectRequest {
  uint64_t memoryBytes;
  uint64_t diskBytesToCopy;
  bool sharedStorage;
};

struct DirectPlan {
  uint64_t bandwidthMiBps;
  uint64_t maxDowntimeMs;
  bool autoConverge;
  bool allowPostCopy;
  uint64_t completionTimeoutSeconds;
  uint64_t progressTimeoutSeconds;
  uint32_t parallelConnections;
  bool copyStorage;
};

class Planner {
 public:
  virtual ~Planner() = default;
  virtual DirectPlan plan(const DirectRequest& request) = 0;
};

std::unique_ptr<Planner> makeDirectPlanner();
