// scheduler `default`: places each VM on the feasible node with the most
// room left after placement (kube-scheduler's LeastAllocated), spreading load
// and leaving headroom for growth on every node. The filters, node cache and
// config are shared with `binpack` (see ../common/).
#include "scheduler_plugin.h"

#include <vmhost/plugin.hpp>

namespace {

class DefaultScheduler final : public vmhost::scheduler::CachingScheduler {
 public:
  explicit DefaultScheduler(vmhost::sdk::PluginContext& ctx)
      : CachingScheduler(ctx, vmhost::scheduler::Strategy::kLeastAllocated) {}
};

}  // namespace

VMHOST_PLUGIN(DefaultScheduler, "default", "0.1.0",
              "Spreads VMs: the feasible node with the most room left (least allocated)",
              VMHOST_CAP_SCHEDULER_NODE_CACHE)
