#include "direct_planner.h"

namespace {

class DirectPrecopy final : public Planner {
 public:
  DirectPlan plan(const DirectRequest& r) override {
    constexpr uint64_t kGiB = 1ull << 30;
    uint64_t bytes = r.memoryBytes + (r.sharedStorage ? 0 : r.diskBytesToCopy);
    uint64_t gib = bytes == 0 ? 1 : (bytes + kGiB - 1) / kGiB;
    return DirectPlan{0,         300, true, false,
                      150 * gib, 150, 1,    !r.sharedStorage && r.diskBytesToCopy > 0};
  }
};

}  // namespace

std::unique_ptr<Planner> makeDirectPlanner() { return std::make_unique<DirectPrecopy>(); }
