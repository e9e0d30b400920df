#include "scheduler_plugin.h"

#include "config.capnp.h"

#include <vmhost/plugin_config.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>

namespace vmhost::scheduler {
namespace {

using sdk::Error;

// The shortest text that reads back as `v` ("-1", "0.5", "inf", "nan").
std::string formatFloat(float v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : std::string("?");
}

double configRatio(const char* field, float value) {
  if (std::isinf(value)) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                std::string("config.") + field + ": must be finite, got " + formatFloat(value));
  }
  if (!(value > 0)) {  // also refuses NaN
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                std::string("config.") + field + ": must be > 0, got " + formatFloat(value));
  }
  return value;
}

AllocationRatios decodeRatios(const sdk::PluginContext& ctx) {
  capnp::MallocMessageBuilder message;
  auto config = sdk::decodeConfig<SchedulerConfig>(ctx, message);
  return AllocationRatios{configRatio("cpuAllocationRatio", config.getCpuAllocationRatio()),
                          configRatio("memoryAllocationRatio", config.getMemoryAllocationRatio())};
}

void checkNodeRatio(uint32_t index, const schema::NodeInfo::Reader& node, const char* field,
                    float value) {
  if (std::isfinite(value) && value >= 0) return;
  throw Error(VMHOST_ERR_INVALID_ARGUMENT,
              "nodes[" + std::to_string(index) + "] (" + node.getName().cStr() + ")." + field +
                  ": must be a finite number >= 0 (0 = the plugin's default), got " +
                  formatFloat(value));
}

// Everything apply() and best() rely on, checked up front so that a bad
// request fails whole instead of half-updating the cache.
void validate(schema::ScheduleRequest::Reader request) {
  if (request.getVm().getRef().getName().size() == 0) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT, "vm.ref.name: must not be empty");
  }
  auto nodes = request.getNodes();
  for (uint32_t i = 0; i < nodes.size(); ++i) {
    auto node = nodes[i];
    if (node.getName().size() == 0) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                  "nodes[" + std::to_string(i) + "].name: must not be empty");
    }
    checkNodeRatio(i, node, "cpuAllocationRatio", node.getCpuAllocationRatio());
    checkNodeRatio(i, node, "memoryAllocationRatio", node.getMemoryAllocationRatio());
  }
}

int64_t clampToInt64(uint64_t v) {
  constexpr uint64_t kMax = std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(std::min(v, kMax));
}

// "0/5 nodes: 3 insufficient memory, 2 node selector mismatch": most
// frequent reason first, equal counts in the order of their text.
std::string unschedulableMessage(
    uint32_t total, const std::vector<std::pair<std::string_view, uint32_t>>& reasons) {
  std::string message = "0/" + std::to_string(total) + " nodes: ";
  if (total == 0) return message + "no nodes available";
  for (size_t i = 0; i < reasons.size(); ++i) {
    if (i > 0) message += ", ";
    message += std::to_string(reasons[i].second);
    message += ' ';
    message += reasons[i].first;
  }
  return message;
}

}  // namespace

CachingScheduler::CachingScheduler(sdk::PluginContext& ctx, Strategy strategy)
    : strategy_(strategy), cache_(decodeRatios(ctx)) {}

void CachingScheduler::schedule(schema::ScheduleRequest::Reader request,
                                schema::ScheduleResult::Builder result) {
  validate(request);
  cache_.apply(request);

  auto vm = request.getVm();
  auto requests = vm.getRequests();
  Demand demand{clampToInt64(requests.getCpuMillis()), clampToInt64(requests.getMemoryBytes())};
  cache_.resolve(vm.getNodeSelector(), selector_);

  Selection pick = cache_.best(selector_, demand, strategy_);
  if (pick.slot != Selection::kNone) {
    cache_.assume(pick.slot, demand);
    auto placement = result.initScheduled();
    placement.setNode(cache_.name(pick.slot));
    placement.setScore(pick.score);
    placement.setFeasibleNodes(pick.feasibleNodes);
    return;
  }

  // Nothing fits: the slow path, which asks every node why.
  auto counts = cache_.countReasons(selector_, demand);
  std::vector<std::pair<std::string_view, uint32_t>> reasons;
  for (size_t i = 0; i < kReasonCount; ++i) {
    if (counts[i] > 0) reasons.emplace_back(reasonText(static_cast<Reason>(i)), counts[i]);
  }
  std::sort(reasons.begin(), reasons.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });

  uint32_t total = cache_.size();
  auto out = result.initUnschedulable();
  out.setMessage(unschedulableMessage(total, reasons));
  out.setTotalNodes(total);
  auto list = out.initReasons(static_cast<unsigned>(reasons.size()));
  for (unsigned i = 0; i < reasons.size(); ++i) {
    list[i].setReason(capnp::Text::Reader(reasons[i].first.data(), reasons[i].first.size()));
    list[i].setCount(reasons[i].second);
  }
  if (request.getWantNodeReasons()) {
    // Every node failed (otherwise the VM was placed), so there is one entry
    // per node, in name order.
    auto nodeReasons = out.initNodeReasons(total);
    unsigned i = 0;
    cache_.forEachFailure(selector_, demand, [&](const std::string& name, Reason reason) {
      auto text = reasonText(reason);
      nodeReasons[i].setNode(name);
      nodeReasons[i].setReason(capnp::Text::Reader(text.data(), text.size()));
      ++i;
    });
  }
}

}  // namespace vmhost::scheduler
