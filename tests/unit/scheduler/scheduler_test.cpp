// Scheduler plugins `default` and `binpack`, driven exactly as the host drives
// them: the built .so is loaded through the host loader, requests are encoded
// as ScheduleRequest messages and results decoded from ScheduleResult.
//
// Most cases are tables: a cluster, a VM, and the outcome each plugin must
// give, written as the node name for a placement or the Unschedulable message.
#define BOOST_TEST_MODULE scheduler plugins
#include "common/config.h"

#include <vmhost/loader/plugin_host.h>
#include <vmhost/schema/scheduler.capnp.h>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using vmhost::PluginInstance;
using vmhost::PluginLibrary;
using vmhost::schema::ScheduleRequest;
using vmhost::schema::ScheduleResult;

constexpr uint64_t GiB = 1ull << 30;
using Labels = std::vector<std::pair<std::string, std::string>>;

// A node as the host reports it. Defaults: 4 vCPU, 8 GiB, empty, ready,
// schedulable, the plugin's default allocation ratios.
struct N {
  std::string name;
  uint64_t cpu = 4000;
  uint64_t mem = 8 * GiB;
  uint64_t usedCpu = 0;
  uint64_t usedMem = 0;
  Labels labels = {};
  bool schedulable = true;
  bool ready = true;
  float cpuRatio = 0;
  float memRatio = 0;
};

// A VM to place. Defaults: 1 vCPU, 1 GiB, no selector.
struct Vm {
  uint64_t cpu = 1000;
  uint64_t mem = 1 * GiB;
  Labels selector = {};
  std::string name = "vm-1";
};

struct Call {
  std::vector<N> nodes;
  bool fullSync = true;
  std::vector<std::string> removed = {};
  bool wantNodeReasons = false;
};

// A failed result's error, for assertion messages (which Boost.Test
// evaluates even when the assertion holds).
template <typename T>
std::string why(const vmhost::Result<T>& result) {
  return result.ok() ? std::string() : result.error().describe();
}

std::string pluginPath(const std::string& name) {
  const char* dir = std::getenv("VMHOST_PLUGIN_DIR");
  BOOST_REQUIRE_MESSAGE(dir != nullptr, "VMHOST_PLUGIN_DIR is not set (run through ctest)");
  return std::string(dir != nullptr ? dir : "") + "/vmhost-scheduler-" + name + ".so";
}

std::shared_ptr<const PluginLibrary> openPlugin(const std::string& name) {
  auto lib = PluginLibrary::open(pluginPath(name));
  BOOST_REQUIRE_MESSAGE(lib.ok(), why(lib));
  return lib.value();
}

std::unique_ptr<PluginInstance> createPlugin(const std::string& name,
                                             const std::string& config = "{}") {
  auto instance = PluginInstance::create(openPlugin(name), config);
  BOOST_REQUIRE_MESSAGE(instance.ok(), why(instance));
  return std::move(instance.value());
}

void setLabels(capnp::List<vmhost::schema::Label>::Builder out, const Labels& labels) {
  for (unsigned i = 0; i < labels.size(); ++i) {
    out[i].setKey(labels[i].first);
    out[i].setValue(labels[i].second);
  }
}

vmhost::Result<vmhost::Reply<ScheduleResult>> schedule(PluginInstance& plugin, const Vm& vm,
                                                       const Call& call) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<ScheduleRequest>();
  auto spec = request.initVm();
  spec.initRef().setName(vm.name);
  spec.getRef().setNamespace("default");
  spec.initRequests().setCpuMillis(vm.cpu);
  spec.getRequests().setMemoryBytes(vm.mem);
  setLabels(spec.initNodeSelector(static_cast<unsigned>(vm.selector.size())), vm.selector);
  auto nodes = request.initNodes(static_cast<unsigned>(call.nodes.size()));
  for (unsigned i = 0; i < call.nodes.size(); ++i) {
    const N& n = call.nodes[i];
    auto node = nodes[i];
    node.setName(n.name);
    setLabels(node.initLabels(static_cast<unsigned>(n.labels.size())), n.labels);
    node.setSchedulable(n.schedulable);
    node.setReady(n.ready);
    node.initCapacity().setCpuMillis(n.cpu);
    node.getCapacity().setMemoryBytes(n.mem);
    node.initAllocated().setCpuMillis(n.usedCpu);
    node.getAllocated().setMemoryBytes(n.usedMem);
    node.setCpuAllocationRatio(n.cpuRatio);
    node.setMemoryAllocationRatio(n.memRatio);
  }
  request.setFullSync(call.fullSync);
  auto removed = request.initRemovedNodes(static_cast<unsigned>(call.removed.size()));
  for (unsigned i = 0; i < call.removed.size(); ++i) removed.set(i, call.removed[i]);
  request.setWantNodeReasons(call.wantNodeReasons);
  return plugin.call<ScheduleResult>(VMHOST_METHOD_SCHEDULER_SCHEDULE, message);
}

// The outcome in one string: the chosen node's name, the Unschedulable
// message, or "error: CODE: message".
std::string describe(ScheduleResult::Reader root) {
  if (root.isScheduled()) return root.getScheduled().getNode().cStr();
  return root.getUnschedulable().getMessage().cStr();
}

std::string outcome(vmhost::Result<vmhost::Reply<ScheduleResult>>& result) {
  if (!result.ok()) return "error: " + result.error().describe();
  return describe(result.value().get());
}

std::string place(PluginInstance& plugin, const Vm& vm, const Call& call) {
  auto result = schedule(plugin, vm, call);
  return outcome(result);
}

// --- single-call placement: one table, both plugins ---------------------------

struct PlacementCase {
  std::string name;
  std::vector<N> nodes;
  Vm vm;
  std::string expectDefault;       // node name or Unschedulable message
  std::string expectBinpack = "";  // "" = same as expectDefault
  std::string config = "{}";
};

const std::vector<PlacementCase>& placementCases() {
  static const std::vector<PlacementCase> cases = {
      // CPU fit: allocated + request <= allocatable.
      {"cpu: only the big node fits",
       {{.name = "a", .cpu = 1000}, {.name = "b", .cpu = 4000}},
       {.cpu = 2000},
       "b"},
      {"cpu: exactly full fits", {{.name = "a", .cpu = 2000, .usedCpu = 1000}}, {.cpu = 1000}, "a"},
      {"cpu: one millicore over does not",
       {{.name = "a", .cpu = 2000, .usedCpu = 1001}},
       {.cpu = 1000},
       "0/1 nodes: 1 insufficient cpu"},
      {"cpu: node reported above allocatable takes nothing, not even a zero request",
       {{.name = "a", .cpu = 2000, .usedCpu = 3000}},
       {.cpu = 0, .mem = 0},
       "0/1 nodes: 1 insufficient cpu"},
      {"cpu: zero request fits a full node",
       {{.name = "a", .usedCpu = 4000, .usedMem = 8 * GiB}},
       {.cpu = 0, .mem = 0},
       "a"},
      // Memory fit.
      {"memory: only the big node fits",
       {{.name = "a", .mem = 1 * GiB}, {.name = "b", .mem = 8 * GiB}},
       {.mem = 2 * GiB},
       "b"},
      {"memory: exactly full fits",
       {{.name = "a", .mem = 4 * GiB, .usedMem = 3 * GiB}},
       {.mem = 1 * GiB},
       "a"},
      {"memory: one byte over does not",
       {{.name = "a", .mem = 4 * GiB, .usedMem = 3 * GiB + 1}},
       {.mem = 1 * GiB},
       "0/1 nodes: 1 insufficient memory"},
      // Allocation ratios: per node, and the config default for ratio 0.
      {"ratio: node cpu ratio 4 makes 1 vCPU hold 4",
       {{.name = "a", .cpu = 1000, .cpuRatio = 4}},
       {.cpu = 4000},
       "a"},
      {"ratio: node cpu ratio 4, one millicore more does not fit",
       {{.name = "a", .cpu = 1000, .cpuRatio = 4}},
       {.cpu = 4001},
       "0/1 nodes: 1 insufficient cpu"},
      {"ratio: node memory ratio 1.5",
       {{.name = "a", .mem = 4 * GiB, .memRatio = 1.5}},
       {.mem = 6 * GiB},
       "a"},
      {"ratio: node memory ratio 1.5, one byte more does not fit",
       {{.name = "a", .mem = 4 * GiB, .memRatio = 1.5}},
       {.mem = 6 * GiB + 1},
       "0/1 nodes: 1 insufficient memory"},
      {"ratio: inexact float ratio rounds (1000 * 0.7f = 700)",
       {{.name = "a", .cpu = 1000, .cpuRatio = 0.7f}},
       {.cpu = 700},
       "a"},
      {"ratio: below-one ratio shrinks allocatable",
       {{.name = "a", .cpu = 1000, .cpuRatio = 0.7f}},
       {.cpu = 701},
       "0/1 nodes: 1 insufficient cpu"},
      {"ratio: config default applies to ratio 0",
       {{.name = "a", .cpu = 1000}},
       {.cpu = 2000},
       "a",
       "",
       R"({"cpuAllocationRatio": 2})"},
      {"ratio: config default bounds too",
       {{.name = "a", .cpu = 1000}},
       {.cpu = 2001},
       "0/1 nodes: 1 insufficient cpu",
       "",
       R"({"cpuAllocationRatio": 2})"},
      {"ratio: config memory default",
       {{.name = "a", .mem = 1 * GiB}},
       {.mem = 3 * GiB},
       "a",
       "",
       R"({"memoryAllocationRatio": 3})"},
      {"ratio: the node's own ratio beats the config default",
       {{.name = "a", .cpu = 1000, .cpuRatio = 1}},
       {.cpu = 2000},
       "0/1 nodes: 1 insufficient cpu",
       "",
       R"({"cpuAllocationRatio": 4})"},
      // Node selector: every selector label must equal the node's.
      {"selector: picks the labelled node",
       {{.name = "a", .labels = {{"zone", "a"}}},
        {.name = "b", .labels = {{"zone", "b"}}},
        {.name = "c"}},
       {.selector = {{"zone", "b"}}},
       "b"},
      {"selector: all labels must match",
       {{.name = "a", .labels = {{"zone", "b"}}},
        {.name = "b", .labels = {{"gpu", "true"}}},
        {.name = "c", .labels = {{"gpu", "true"}, {"zone", "b"}}}},
       {.selector = {{"zone", "b"}, {"gpu", "true"}}},
       "c"},
      {"selector: value must be equal, not a prefix",
       {{.name = "a", .labels = {{"zone", "ab"}}}},
       {.selector = {{"zone", "a"}}},
       "0/1 nodes: 1 node selector mismatch"},
      {"selector: label no node has",
       {{.name = "a", .labels = {{"zone", "a"}}}, {.name = "b"}},
       {.selector = {{"rack", "1"}}},
       "0/2 nodes: 2 node selector mismatch"},
      {"selector: two values for one key match nothing",
       {{.name = "a", .labels = {{"zone", "a"}}}, {.name = "b", .labels = {{"zone", "b"}}}},
       {.selector = {{"zone", "a"}, {"zone", "b"}}},
       "0/2 nodes: 2 node selector mismatch"},
      {"selector: a repeated selector label is harmless",
       {{.name = "a", .labels = {{"zone", "a"}}}, {.name = "b"}},
       {.selector = {{"zone", "a"}, {"zone", "a"}}},
       "a"},
      {"selector: a node's repeated label key takes the later value",
       {{.name = "a", .labels = {{"zone", "x"}, {"zone", "y"}}}},
       {.selector = {{"zone", "y"}}},
       "a"},
      {"selector: ...and not the earlier one",
       {{.name = "a", .labels = {{"zone", "x"}, {"zone", "y"}}}},
       {.selector = {{"zone", "x"}}},
       "0/1 nodes: 1 node selector mismatch"},
      {"selector: label on a node without room",
       {{.name = "a", .cpu = 500, .labels = {{"zone", "a"}}}, {.name = "b"}},
       {.selector = {{"zone", "a"}}},
       "0/2 nodes: 1 insufficient cpu, 1 node selector mismatch"},
      // Cordoned and not-ready nodes.
      {"cordoned: skipped",
       {{.name = "a", .schedulable = false}, {.name = "b", .cpu = 2000}},
       {},
       "b"},
      {"cordoned: only node",
       {{.name = "a", .schedulable = false}},
       {},
       "0/1 nodes: 1 node unschedulable"},
      {"not ready: skipped", {{.name = "a", .ready = false}, {.name = "b", .cpu = 2000}}, {}, "b"},
      {"not ready: only node", {{.name = "a", .ready = false}}, {}, "0/1 nodes: 1 node not ready"},
      // Scoring: spread (least allocated) vs pack (most allocated).
      {"score: spread picks the emptier node, pack the fuller",
       {{.name = "a", .usedCpu = 3000, .usedMem = 6 * GiB}, {.name = "b"}},
       {},
       "b",
       "a"},
      {"score: memory counts as much as cpu",
       {{.name = "a", .usedMem = 6 * GiB}, {.name = "b", .usedMem = 2 * GiB}},
       {},
       "b",
       "a"},
      {"score: fractions, not absolute room (big node half full vs small node empty)",
       {{.name = "big", .cpu = 64000, .mem = 256 * GiB, .usedCpu = 32000, .usedMem = 128 * GiB},
        {.name = "small", .cpu = 4000, .mem = 16 * GiB}},
       {},
       "small",
       "big"},
      {"score: ties go to the first name", {{.name = "c"}, {.name = "a"}, {.name = "b"}}, {}, "a"},
      {"score: ties go to the first name, byte order",
       {{.name = "node-b"}, {.name = "Node-z"}, {.name = "node-a"}},
       {},
       "Node-z"},
      // Unschedulable messages: most frequent reason first, then by text;
      // each node once, under its first failing filter.
      {"message: counts sorted by count",
       {{.name = "a", .mem = 1 * GiB},
        {.name = "b", .mem = 1 * GiB},
        {.name = "c", .mem = 1 * GiB, .labels = {{"zone", "a"}}},
        {.name = "d", .labels = {{"zone", "b"}}},
        {.name = "e", .schedulable = false}},
       {.mem = 2 * GiB, .selector = {{"zone", "a"}}},
       "0/5 nodes: 3 node selector mismatch, 1 insufficient memory, 1 node unschedulable"},
      {"message: the example from the schema",
       {{.name = "a", .mem = 1 * GiB, .labels = {{"zone", "a"}}},
        {.name = "b", .mem = 1 * GiB, .labels = {{"zone", "a"}}},
        {.name = "c", .mem = 1 * GiB, .labels = {{"zone", "a"}}},
        {.name = "d"},
        {.name = "e", .labels = {{"zone", "b"}}}},
       {.mem = 2 * GiB, .selector = {{"zone", "a"}}},
       "0/5 nodes: 3 insufficient memory, 2 node selector mismatch"},
      {"message: equal counts by reason text",
       {{.name = "a", .ready = false}, {.name = "b", .cpu = 500}},
       {},
       "0/2 nodes: 1 insufficient cpu, 1 node not ready"},
      {"message: filter order is not ready, unschedulable, selector, cpu, memory",
       {{.name = "a", .cpu = 0, .mem = 0, .schedulable = false, .ready = false},
        {.name = "b", .cpu = 0, .mem = 0, .schedulable = false},
        {.name = "c", .cpu = 0, .mem = 0},
        {.name = "d", .cpu = 0, .mem = 0, .labels = {{"zone", "a"}}},
        {.name = "e", .mem = 0, .labels = {{"zone", "a"}}}},
       {.selector = {{"zone", "a"}}},
       "0/5 nodes: 1 insufficient cpu, 1 insufficient memory, 1 node not ready, "
       "1 node selector mismatch, 1 node unschedulable"},
      {"message: no nodes", {}, {}, "0/0 nodes: no nodes available"},
      // Duplicate names in one request: the later entry wins.
      {"duplicates: later entry wins (big)",
       {{.name = "a", .cpu = 1000}, {.name = "a"}},
       {.cpu = 2000},
       "a"},
      {"duplicates: later entry wins (small)",
       {{.name = "a"}, {.name = "a", .cpu = 1000}},
       {.cpu = 2000},
       "0/1 nodes: 1 insufficient cpu"},
  };
  return cases;
}

BOOST_AUTO_TEST_CASE(placement_table) {
  for (const std::string plugin : {"default", "binpack"}) {
    for (const auto& c : placementCases()) {
      BOOST_TEST_CONTEXT(plugin << ": " << c.name) {
        auto instance = createPlugin(plugin, c.config);
        std::string want =
            plugin == "binpack" && !c.expectBinpack.empty() ? c.expectBinpack : c.expectDefault;
        BOOST_TEST(place(*instance, c.vm, {c.nodes}) == want);
      }
    }
  }
}

// --- result fields -------------------------------------------------------------

BOOST_AUTO_TEST_CASE(placement_fields) {
  // One empty 4 vCPU / 8 GiB node and a 1 vCPU / 2 GiB VM: 3/4 of cpu and
  // 3/4 of memory stay free, so spread scores 750000 and pack 250000 (the
  // mean fraction free or used, in millionths).
  std::vector<N> nodes = {{.name = "a"}, {.name = "b", .cpu = 500}, {.name = "c", .ready = false}};
  for (auto [plugin, score] : {std::pair{"default", 750000}, std::pair{"binpack", 250000}}) {
    BOOST_TEST_CONTEXT(plugin) {
      auto instance = createPlugin(plugin);
      auto result = schedule(*instance, {.cpu = 1000, .mem = 2 * GiB}, {nodes});
      BOOST_REQUIRE_MESSAGE(result.ok(), outcome(result));
      auto root = result.value().get();
      BOOST_REQUIRE(root.isScheduled());
      BOOST_TEST(root.getScheduled().getNode().cStr() == std::string("a"));
      BOOST_TEST(root.getScheduled().getScore() == score);
      BOOST_TEST(root.getScheduled().getFeasibleNodes() == 1u);
    }
  }
}

BOOST_AUTO_TEST_CASE(unschedulable_fields) {
  std::vector<N> nodes = {{.name = "d", .labels = {{"zone", "b"}}},
                          {.name = "a", .mem = 1 * GiB, .labels = {{"zone", "a"}}},
                          {.name = "c", .ready = false},
                          {.name = "b", .mem = 1 * GiB, .labels = {{"zone", "a"}}}};
  Vm vm{.mem = 2 * GiB, .selector = {{"zone", "a"}}};
  for (const std::string plugin : {"default", "binpack"}) {
    BOOST_TEST_CONTEXT(plugin) {
      auto instance = createPlugin(plugin);
      for (bool want : {false, true}) {
        BOOST_TEST_CONTEXT("wantNodeReasons " << want) {
          auto result = schedule(*instance, vm, {.nodes = nodes, .wantNodeReasons = want});
          BOOST_REQUIRE_MESSAGE(result.ok(), outcome(result));
          auto root = result.value().get();
          BOOST_REQUIRE(root.isUnschedulable());
          auto u = root.getUnschedulable();
          BOOST_TEST(u.getMessage().cStr() ==
                     std::string("0/4 nodes: 2 insufficient memory, 1 node not ready, "
                                 "1 node selector mismatch"));
          BOOST_TEST(u.getTotalNodes() == 4u);
          std::vector<std::string> reasons;
          for (auto r : u.getReasons()) {
            reasons.push_back(std::to_string(r.getCount()) + " " + r.getReason().cStr());
          }
          std::vector<std::string> wantReasons = {"2 insufficient memory", "1 node not ready",
                                                  "1 node selector mismatch"};
          BOOST_TEST(reasons == wantReasons, boost::test_tools::per_element());
          std::vector<std::string> nodeReasons;
          for (auto r : u.getNodeReasons()) {
            nodeReasons.push_back(std::string(r.getNode().cStr()) + ": " + r.getReason().cStr());
          }
          std::vector<std::string> wantNodeReasons;
          if (want) {
            wantNodeReasons = {"a: insufficient memory", "b: insufficient memory",
                               "c: node not ready", "d: node selector mismatch"};
          }
          BOOST_TEST(nodeReasons == wantNodeReasons, boost::test_tools::per_element());
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(descriptor) {
  for (const std::string plugin : {"default", "binpack"}) {
    BOOST_TEST_CONTEXT(plugin) {
      auto lib = openPlugin(plugin);
      BOOST_TEST(lib->info().name == plugin);
      BOOST_TEST(lib->info().kind == VMHOST_KIND_SCHEDULER);
      BOOST_TEST((lib->info().capabilities & VMHOST_CAP_SCHEDULER_NODE_CACHE) != 0u);
    }
  }
}

// --- the node cache across calls ------------------------------------------------

struct Step {
  std::string what;
  Call call;
  Vm vm;
  std::string expect;
  std::string expectBinpack = "";  // "" = same as expect
};

void runSteps(const std::string& plugin, const std::vector<Step>& steps) {
  auto instance = createPlugin(plugin);
  for (size_t i = 0; i < steps.size(); ++i) {
    BOOST_TEST_CONTEXT(plugin << ": step " << i << ": " << steps[i].what) {
      const Step& s = steps[i];
      std::string want =
          plugin == "binpack" && !s.expectBinpack.empty() ? s.expectBinpack : s.expect;
      BOOST_TEST(place(*instance, s.vm, s.call) == want);
    }
  }
}

// Every VM is a zero-size probe unless said otherwise, so that placements do
// not change the cache between steps.
const Vm kProbe{.cpu = 0, .mem = 0};

BOOST_AUTO_TEST_CASE(delta_updates) {
  const Vm big{.cpu = 3000, .mem = 0};
  const std::vector<Step> steps = {
      {"full sync", {{{.name = "a", .cpu = 1000}, {.name = "b"}}}, big, "b"},
      // b holds the big VM now (assumed): spread prefers a, pack b.
      {"no change: cache kept", {{}, false}, kProbe, "a", "b"},
      {"update b: now full",
       {{{.name = "b", .usedCpu = 4000}}, false},
       big,
       "0/2 nodes: 2 insufficient cpu"},
      {"add c", {{{.name = "c"}}, false}, big, "c"},
      {"remove c", {{}, false, {"c"}}, big, "0/2 nodes: 2 insufficient cpu"},
      {"removing an unknown node is not an error", {{}, false, {"nope", "c"}}, kProbe, "a", "b"},
      {"cordon a via delta",
       {{{.name = "a", .cpu = 1000, .schedulable = false}}, false},
       kProbe,
       "b"},
      {"b not ready via delta",
       {{{.name = "b", .ready = false}}, false},
       kProbe,
       "0/2 nodes: 1 node not ready, 1 node unschedulable"},
      {"label a via delta",
       {{{.name = "a", .labels = {{"zone", "x"}}}}, false},
       {.cpu = 0, .mem = 0, .selector = {{"zone", "x"}}},
       "a"},
      {"relabel a via delta",
       {{{.name = "a", .labels = {{"zone", "y"}}}}, false},
       {.cpu = 0, .mem = 0, .selector = {{"zone", "x"}}},
       "0/2 nodes: 1 node not ready, 1 node selector mismatch"},
      {"new label matches", {{}, false}, {.cpu = 0, .mem = 0, .selector = {{"zone", "y"}}}, "a"},
      // (a's new slot is the one c left: freed slots are reused.)
      {"remove and re-add a in one request: present", {{{.name = "a"}}, false, {"a"}}, kProbe, "a"},
      {"remove a, add d", {{{.name = "d"}}, false, {"a"}}, kProbe, "d"},
      {"full sync replaces everything", {{{.name = "e"}}, true}, kProbe, "e"},
      {"...and a, b, d are gone",
       {{}, false},
       {.cpu = 5000, .mem = 0},
       "0/1 nodes: 1 insufficient cpu"},
      {"full sync ignores removedNodes", {{{.name = "f"}}, true, {"f"}}, kProbe, "f"},
      {"full sync with no nodes empties the cache",
       {{}, true},
       kProbe,
       "0/0 nodes: no nodes available"},
      {"deltas fill an emptied cache", {{{.name = "h"}, {.name = "g"}}, false}, kProbe, "g"},
  };
  runSteps("default", steps);
  runSteps("binpack", steps);
}

BOOST_AUTO_TEST_CASE(many_nodes_keep_name_order) {
  // Ties go to the first name however nodes arrived: in one full sync, in
  // deltas, with removals in between (exercises the incremental name order).
  for (const std::string plugin : {"default", "binpack"}) {
    BOOST_TEST_CONTEXT(plugin) {
      auto instance = createPlugin(plugin);
      std::vector<N> first;
      for (int i = 99; i >= 50; --i) first.push_back({.name = "n" + std::to_string(i)});
      BOOST_TEST(place(*instance, kProbe, {first}) == "n50");
      BOOST_TEST(place(*instance, kProbe, {{{.name = "n70"}, {.name = "n20"}}, false}) == "n20");
      BOOST_TEST(place(*instance, kProbe, {{}, false, {"n20", "n50"}}) == "n51");
      BOOST_TEST(place(*instance, kProbe, {{{.name = "n05"}, {.name = "n00"}}, false}) == "n00");
      BOOST_TEST(place(*instance, kProbe, {{}, false, {"n00"}}) == "n05");
    }
  }
}

BOOST_AUTO_TEST_CASE(assume_after_placement) {
  // Two identical nodes, VMs placed back to back without resending nodes:
  // spread alternates, pack fills the first node before using the second.
  const std::vector<N> nodes = {{.name = "a", .cpu = 2000}, {.name = "b", .cpu = 2000}};
  const Vm vm{.cpu = 1000, .mem = 0};
  struct Case {
    std::string plugin;
    std::vector<std::string> expect;
  };
  const std::vector<Case> cases = {
      {"default", {"a", "b", "a", "b", "0/2 nodes: 2 insufficient cpu"}},
      {"binpack", {"a", "a", "b", "b", "0/2 nodes: 2 insufficient cpu"}},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.plugin) {
      auto instance = createPlugin(c.plugin);
      for (size_t i = 0; i < c.expect.size(); ++i) {
        Call call{i == 0 ? nodes : std::vector<N>{}, i == 0};
        BOOST_TEST_CONTEXT("vm " << i) { BOOST_TEST(place(*instance, vm, call) == c.expect[i]); }
      }
      // The host's next update of a node overrides what the plugin assumed.
      BOOST_TEST(place(*instance, vm, {{{.name = "b", .cpu = 2000}}, false}) == "b");
    }
  }
}

BOOST_AUTO_TEST_CASE(assume_counts_memory) {
  const std::vector<N> nodes = {{.name = "a", .mem = 4 * GiB}, {.name = "b", .mem = 4 * GiB}};
  const Vm vm{.cpu = 0, .mem = 3 * GiB};
  for (const std::string plugin : {"default", "binpack"}) {
    BOOST_TEST_CONTEXT(plugin) {
      auto instance = createPlugin(plugin);
      BOOST_TEST(place(*instance, vm, {nodes}) == "a");
      BOOST_TEST(place(*instance, vm, {{}, false}) == "b");
      BOOST_TEST(place(*instance, vm, {{}, false}) == "0/2 nodes: 2 insufficient memory");
    }
  }
}

// --- against a reference model ----------------------------------------------------

// The rules written as plainly as possible: a map of nodes in name order,
// every filter per node, every score by division. The plugins' indexes,
// slots and incremental name order must agree with it on long random runs.
class ReferenceModel {
 public:
  ReferenceModel(double cpuRatio, double memRatio, bool pack)
      : cpuRatio_(cpuRatio), memRatio_(memRatio), pack_(pack) {}

  void apply(const Call& call) {
    if (call.fullSync) {
      nodes_.clear();
    } else {
      for (const auto& name : call.removed) nodes_.erase(name);
    }
    for (const auto& n : call.nodes) nodes_[n.name] = n;  // later entry wins
  }

  // "" when the node passes every filter.
  std::string reason(const N& n, const Vm& vm) const {
    if (!n.ready) return "node not ready";
    if (!n.schedulable) return "node unschedulable";
    for (const auto& [key, value] : vm.selector) {
      std::string have;
      bool found = false;
      for (const auto& [k, v] : n.labels) {
        if (k == key) {
          have = v;  // a repeated key: the later value wins
          found = true;
        }
      }
      if (!found || have != value) return "node selector mismatch";
    }
    if (static_cast<double>(n.usedCpu + vm.cpu) > allocatable(n.cpu, n.cpuRatio, cpuRatio_)) {
      return "insufficient cpu";
    }
    if (static_cast<double>(n.usedMem + vm.mem) > allocatable(n.mem, n.memRatio, memRatio_)) {
      return "insufficient memory";
    }
    return "";
  }

  // Sum over cpu and memory of the fraction left free after placement.
  double free(const N& n, const Vm& vm) const {
    auto part = [](uint64_t used, uint64_t request, double alloc) {
      return alloc > 0 ? (alloc - static_cast<double>(used + request)) / alloc : 0.0;
    };
    return part(n.usedCpu, vm.cpu, allocatable(n.cpu, n.cpuRatio, cpuRatio_)) +
           part(n.usedMem, vm.mem, allocatable(n.mem, n.memRatio, memRatio_));
  }

  // Checks the plugin's answer for `vm` and, when it placed the VM, assumes
  // the placement as the plugin does.
  void check(const Vm& vm, bool wantNodeReasons, const ScheduleResult::Reader& result) {
    std::map<std::string, uint32_t> counts;
    std::vector<std::string> nodeReasons;
    uint32_t feasible = 0;
    double best = pack_ ? INFINITY : -INFINITY;
    for (const auto& [name, n] : nodes_) {
      std::string why = reason(n, vm);
      if (why.empty()) {
        ++feasible;
        best = pack_ ? std::min(best, free(n, vm)) : std::max(best, free(n, vm));
      } else {
        ++counts[why];
        nodeReasons.push_back(name + ": " + why);
      }
    }
    if (feasible > 0) {
      BOOST_REQUIRE_MESSAGE(result.isScheduled(), "want a placement, got: " << describe(result));
      auto placement = result.getScheduled();
      std::string chosen = placement.getNode().cStr();
      BOOST_REQUIRE_MESSAGE(nodes_.count(chosen) == 1, "placed on unknown node " << chosen);
      N& n = nodes_[chosen];
      BOOST_REQUIRE_MESSAGE(reason(n, vm).empty(), chosen << " fails: " << reason(n, vm));
      // The best score, up to rounding (the plugin multiplies by inverses).
      BOOST_TEST(std::abs(free(n, vm) - best) <= 1e-9, chosen << " is not the best node");
      BOOST_TEST(placement.getFeasibleNodes() == feasible);
      n.usedCpu += vm.cpu;
      n.usedMem += vm.mem;
      ++placed;
      return;
    }
    std::vector<std::pair<std::string, uint32_t>> sorted(counts.begin(), counts.end());
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    std::string message = "0/" + std::to_string(nodes_.size()) + " nodes: ";
    if (nodes_.empty()) message += "no nodes available";
    for (size_t i = 0; i < sorted.size(); ++i) {
      message += (i > 0 ? ", " : "") + std::to_string(sorted[i].second) + " " + sorted[i].first;
    }
    BOOST_REQUIRE_MESSAGE(result.isUnschedulable(),
                          "want '" << message << "', got: " << describe(result));
    auto u = result.getUnschedulable();
    BOOST_TEST(u.getMessage().cStr() == message);
    BOOST_TEST(u.getTotalNodes() == nodes_.size());
    std::vector<std::string> got;
    for (auto r : u.getNodeReasons()) {
      got.push_back(std::string(r.getNode().cStr()) + ": " + r.getReason().cStr());
    }
    if (!wantNodeReasons) nodeReasons.clear();
    BOOST_TEST(got == nodeReasons, boost::test_tools::per_element());
    ++unschedulable;
  }

  int placed = 0;
  int unschedulable = 0;

 private:
  static double allocatable(uint64_t capacity, float nodeRatio, double defaultRatio) {
    // Ratios in the run are 1, 1.5 and 2: capacity * ratio is exact.
    return static_cast<double>(capacity) * (nodeRatio > 0 ? nodeRatio : defaultRatio);
  }

  double cpuRatio_, memRatio_;
  bool pack_;
  std::map<std::string, N> nodes_;
};

BOOST_AUTO_TEST_CASE(matches_reference_model) {
  const std::pair<std::string, std::string> labelPool[] = {{"zone", "z1"}, {"zone", "z2"},
                                                           {"zone", "z3"}, {"gpu", "true"},
                                                           {"rack", "r1"}, {"rack", "r2"}};
  const std::vector<Labels> selectors = {{},
                                         {},
                                         {},
                                         {{"zone", "z1"}},
                                         {{"zone", "z2"}, {"gpu", "true"}},
                                         {{"rack", "r2"}, {"zone", "z3"}},
                                         {{"gpu", "true"}},
                                         {{"zone", "nowhere"}}};
  const uint64_t cpus[] = {2000, 4000, 8000, 16000};
  const uint64_t mems[] = {4 * GiB, 8 * GiB, 16 * GiB, 32 * GiB};
  const float ratios[] = {0, 0, 1, 1.5f, 2};
  for (const std::string plugin : {"default", "binpack"}) {
    BOOST_TEST_CONTEXT(plugin) {
      std::mt19937 rng(7);
      auto pick = [&](uint32_t n) { return rng() % n; };
      auto randomNode = [&] {
        N n{.name = "n" + std::to_string(pick(300))};
        n.cpu = cpus[pick(4)];
        n.mem = mems[pick(4)];
        n.usedCpu = n.cpu * pick(3) / 4;
        n.usedMem = n.mem * pick(3) / 4;
        for (uint32_t k = pick(4); k > 0; --k) n.labels.push_back(labelPool[pick(6)]);
        n.schedulable = pick(20) != 0;
        n.ready = pick(20) != 0;
        n.cpuRatio = ratios[pick(5)];
        n.memRatio = ratios[pick(5)];
        return n;
      };
      auto instance =
          createPlugin(plugin, R"({"cpuAllocationRatio": 1.5, "memoryAllocationRatio": 1})");
      ReferenceModel model(1.5, 1, plugin == "binpack");
      for (int step = 0; step < 3000; ++step) {
        Call call{{}, step == 0 || pick(100) == 0};
        if (call.fullSync) {
          for (int i = 0; i < 150; ++i) call.nodes.push_back(randomNode());
        } else if (pick(8) == 0) {
          for (uint32_t i = pick(5); i > 0; --i) call.nodes.push_back(randomNode());
          for (uint32_t i = pick(4); i > 0; --i) call.removed.push_back(randomNode().name);
        }
        call.wantNodeReasons = pick(2) == 0;
        Vm vm{.cpu = 500 * pick(9), .mem = GiB / 2 * pick(9), .selector = selectors[pick(8)]};
        model.apply(call);
        BOOST_TEST_CONTEXT("step " << step) {
          auto result = schedule(*instance, vm, call);
          BOOST_REQUIRE_MESSAGE(result.ok(), why(result));
          model.check(vm, call.wantNodeReasons, result.value().get());
        }
      }
      // Both outcomes must have been exercised for the run to mean much.
      BOOST_TEST(model.placed > 500);
      BOOST_TEST(model.unschedulable > 500);
    }
  }
}

// --- bad input ---------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(invalid_requests) {
  struct Case {
    std::string name;
    Vm vm;
    std::vector<N> nodes;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"empty vm name",
       {.name = ""},
       {{.name = "a"}},
       "error: INVALID_ARGUMENT: scheduler plugin '%s': vm.ref.name: must not be empty"},
      {"empty node name",
       {},
       {{.name = "a"}, {.name = ""}},
       "error: INVALID_ARGUMENT: scheduler plugin '%s': nodes[1].name: must not be empty"},
      {"negative node ratio",
       {},
       {{.name = "a", .cpuRatio = -1}},
       "error: INVALID_ARGUMENT: scheduler plugin '%s': nodes[0] (a).cpuAllocationRatio: must be "
       "a finite number >= 0 (0 = the plugin's default), got -1"},
      {"infinite node ratio",
       {},
       {{.name = "a", .memRatio = INFINITY}},
       "error: INVALID_ARGUMENT: scheduler plugin '%s': nodes[0] (a).memoryAllocationRatio: must "
       "be a finite number >= 0 (0 = the plugin's default), got inf"},
  };
  for (const std::string plugin : {"default", "binpack"}) {
    for (const auto& c : cases) {
      BOOST_TEST_CONTEXT(plugin << ": " << c.name) {
        auto instance = createPlugin(plugin);
        // A rejected request changes nothing: the cache still holds only
        // `z` from the first call, not the nodes of the bad one.
        BOOST_TEST(place(*instance, kProbe, {{{.name = "z", .cpu = 1000}}}) == "z");
        std::string want = c.expect;
        want.replace(want.find("%s"), 2, plugin);
        BOOST_TEST(place(*instance, c.vm, {c.nodes, false}) == want);
        BOOST_TEST(place(*instance, {.cpu = 2000, .mem = 0}, {{}, false}) ==
                   "0/1 nodes: 1 insufficient cpu");
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(bad_config) {
  struct Case {
    std::string config;
    std::string expect;  // after "plugin '<name>' (scheduler): create failed: "
  };
  const std::vector<Case> cases = {
      {R"({"cpuAllocationRatio": -1})",
       "INVALID_ARGUMENT: config.cpuAllocationRatio: must be > 0, got -1"},
      {R"({"cpuAllocationRatio": 0})",
       "INVALID_ARGUMENT: config.cpuAllocationRatio: must be > 0, got 0"},
      {R"({"memoryAllocationRatio": -0.5})",
       "INVALID_ARGUMENT: config.memoryAllocationRatio: must be > 0, got -0.5"},
      {R"({"memoryAllocationRatio": 1e39})",
       "INVALID_ARGUMENT: config.memoryAllocationRatio: must be finite, got inf"},
  };
  for (const std::string plugin : {"default", "binpack"}) {
    auto lib = openPlugin(plugin);
    for (const auto& c : cases) {
      BOOST_TEST_CONTEXT(plugin << ": " << c.config) {
        auto instance = PluginInstance::create(lib, c.config);
        BOOST_REQUIRE(!instance.ok());
        BOOST_TEST(instance.error().code == VMHOST_ERR_INVALID_ARGUMENT);
        BOOST_TEST(instance.error().message ==
                   "plugin '" + plugin + "' (scheduler): create failed: " + c.expect);
      }
    }
    BOOST_TEST_CONTEXT(plugin << ": unknown field") {
      auto instance = PluginInstance::create(lib, R"({"cpuRatio": 2})");
      BOOST_REQUIRE(!instance.ok());
      BOOST_TEST(instance.error().code == VMHOST_ERR_INVALID_ARGUMENT);
      const std::string prefix =
          "plugin '" + plugin + "' (scheduler): create failed: INVALID_ARGUMENT: config: ";
      BOOST_TEST(instance.error().message.rfind(prefix, 0) == 0u, instance.error().message);
      BOOST_TEST(instance.error().message.find("cpuRatio") != std::string::npos,
                 instance.error().message);
    }
    for (const std::string good :
         {"{}", R"({"cpuAllocationRatio": 4, "memoryAllocationRatio": 1.5})"}) {
      BOOST_TEST_CONTEXT(plugin << ": " << good) {
        auto instance = PluginInstance::create(lib, good);
        BOOST_TEST(instance.ok(), why(instance));
      }
    }
  }
}

// --- through the host config file ---------------------------------------------------

BOOST_AUTO_TEST_CASE(config_file_selects_plugin) {
  // The same cluster and VM; only the config file's scheduler slot differs.
  // Spread and pack disagree on this cluster.
  const std::vector<N> nodes = {{.name = "a", .cpu = 2000, .usedCpu = 1000}, {.name = "b"}};
  const Vm vm{.cpu = 1000, .mem = 0};
  // And a 1 vCPU node takes a 2 vCPU VM only with cpuAllocationRatio >= 2.
  const std::vector<N> small = {{.name = "a", .cpu = 1000}};
  const Vm twoCpu{.cpu = 2000, .mem = 0};
  struct Case {
    std::string text;
    std::string plugin;
    std::vector<N> nodes;
    Vm vm;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"plugins: {scheduler: {name: default}}", "default", nodes, vm, "b"},
      {"plugins: {scheduler: {name: binpack}}", "binpack", nodes, vm, "a"},
      // The slot's config reaches the plugin.
      {"plugins: {scheduler: {name: default}}", "default", small, twoCpu,
       "0/1 nodes: 1 insufficient cpu"},
      {"plugins: {scheduler: {name: default, config: {cpuAllocationRatio: 2}}}", "default", small,
       twoCpu, "a"},
      {"plugins: {scheduler: {name: binpack, config: {cpuAllocationRatio: 2}}}", "binpack", small,
       twoCpu, "a"},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.text) {
      auto config = vmhost::parseConfig(c.text, "test.yaml");
      BOOST_REQUIRE_MESSAGE(config.ok(), why(config));
      auto plugins = vmhost::loadPlugins(config.value());
      BOOST_REQUIRE_MESSAGE(plugins.ok(), why(plugins));
      auto& scheduler = plugins.value().get(VMHOST_KIND_SCHEDULER);
      BOOST_TEST(scheduler.info().name == c.plugin);
      BOOST_TEST(place(scheduler, c.vm, {c.nodes}) == c.expect);
    }
  }
}

BOOST_AUTO_TEST_CASE(config_file_bad_scheduler_config) {
  auto config = vmhost::parseConfig(
      "plugins: {scheduler: {name: binpack, config: {memoryAllocationRatio: -1}}}", "test.yaml");
  BOOST_REQUIRE_MESSAGE(config.ok(), why(config));
  auto plugins = vmhost::loadPlugins(config.value());
  BOOST_REQUIRE(!plugins.ok());
  BOOST_TEST(plugins.error().message ==
             "test.yaml: plugins.scheduler (binpack): config.memoryAllocationRatio: must be > 0, "
             "got -1");
}

}  // namespace
