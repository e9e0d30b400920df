// An example scheduler plugin: places a VM on the first node (in name order)
// with room for it. Shows the whole author's job: one class, one macro.
#include "config.capnp.h"

#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <map>
#include <string>

namespace {

namespace schema = vmhost::schema;

struct Node {
  uint64_t freeMemory = 0;
  uint64_t freeCpu = 0;
  bool usable = true;
};

class FirstFit final : public vmhost::sdk::SchedulerPlugin {
 public:
  explicit FirstFit(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    reserve_ = vmhost::sdk::decodeConfig<FirstFitConfig>(ctx, message).getReserveMemoryBytes();
    ctx.log(VMHOST_LOG_INFO, "first-fit ready");
  }

  void schedule(schema::ScheduleRequest::Reader request,
                schema::ScheduleResult::Builder result) override {
    if (request.getVm().getRef().getName().size() == 0) {
      throw vmhost::sdk::Error(VMHOST_ERR_INVALID_ARGUMENT, "vm.ref.name: must not be empty");
    }
    if (request.getFullSync()) nodes_.clear();
    for (auto name : request.getRemovedNodes()) nodes_.erase(name.cStr());
    for (auto n : request.getNodes()) {
      auto cap = n.getCapacity();
      auto used = n.getAllocated();
      Node& node = nodes_[n.getName().cStr()];
      node.freeMemory = cap.getMemoryBytes() > used.getMemoryBytes()
                            ? cap.getMemoryBytes() - used.getMemoryBytes()
                            : 0;
      node.freeCpu =
          cap.getCpuMillis() > used.getCpuMillis() ? cap.getCpuMillis() - used.getCpuMillis() : 0;
      node.usable = n.getSchedulable() && n.getReady();
    }
    auto want = request.getVm().getRequests();
    for (auto& [name, node] : nodes_) {
      if (node.usable && node.freeCpu >= want.getCpuMillis() &&
          node.freeMemory >= want.getMemoryBytes() + reserve_) {
        node.freeMemory -= want.getMemoryBytes();  // assume, until the host says otherwise
        node.freeCpu -= want.getCpuMillis();
        result.initScheduled().setNode(name);
        return;
      }
    }
    auto u = result.initUnschedulable();
    u.setTotalNodes(static_cast<uint32_t>(nodes_.size()));
    u.setMessage("0/" + std::to_string(nodes_.size()) + " nodes: " + std::to_string(nodes_.size()) +
                 " insufficient resources");
  }

 private:
  uint64_t reserve_ = 0;
  std::map<std::string, Node> nodes_;
};

}  // namespace

VMHOST_PLUGIN(FirstFit, "first-fit", "1.0.0", "Example: the first node with room",
              VMHOST_CAP_SCHEDULER_NODE_CACHE)
