// scheduler `binpack`: places each VM on the feasible node with the least
// room left after placement (kube-scheduler's MostAllocated), filling nodes
// before starting new ones so that empty nodes can be drained or powered
// down. The filters, node cache and config are shared with `default` (see
// ../common/).
#include "scheduler_plugin.h"

#include <vmhost/plugin.hpp>

namespace {

class BinpackScheduler final : public vmhost::scheduler::CachingScheduler {
 public:
  explicit BinpackScheduler(vmhost::sdk::PluginContext& ctx)
      : CachingScheduler(ctx, vmhost::scheduler::Strategy::kMostAllocated) {}
};

}  // namespace

VMHOST_PLUGIN(BinpackScheduler, "binpack", "0.1.0",
              "Packs VMs: the feasible node with the least room left (most allocated)",
              VMHOST_CAP_SCHEDULER_NODE_CACHE)
