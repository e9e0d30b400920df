// SchedulingController over a real SqliteStore (in a temporary directory)
// with scheduler plugins loaded as real shared objects: the `default` plugin
// from the build, and fixtures (tests/fixtures/plugins/) that record what
// the host sends them. Each test drives the controller round by round with
// runOnce() and writes to the store between rounds the way the API and the
// node agents do; a one-shot hook on the plugin's call observer writes
// between the plugin's answer and the controller's status write, where the
// races with other writers happen.
#define BOOST_TEST_MODULE controller_scheduling
#include <boost/test/unit_test.hpp>

#include "api/conditions.h"
#include "api/objects.h"
#include "common/metrics.h"
#include "controller/scheduling.h"
#include "store/sqlite/sqlite_store.h"

#include <vmhost/loader/plugin_host.h>

#include <dlfcn.h>
#include <stdlib.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace vmhost;
using namespace vmhost::controller;
using vmhost::api::findCondition;
using vmhost::api::setCondition;

namespace {

std::string pluginDir() { return std::getenv("VMHOST_PLUGIN_DIR"); }
std::string fixtureDir() { return std::getenv("VMHOST_FIXTURE_PLUGIN_DIR"); }
std::string defaultPlugin() { return pluginDir() + "/vmhost-scheduler-default.so"; }
std::string fixturePlugin(const std::string& name) {
  return fixtureDir() + "/vmhost-scheduler-" + name + ".so";
}

// The lines a recorder fixture logged since the last call (see
// tests/fixtures/plugins/recording_scheduler.cpp for their format).
std::vector<std::string> takeRequests(const std::string& path) {
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  BOOST_TEST_REQUIRE(handle != nullptr, path << " is not loaded");
  using Take = const char* (*)();
  auto take = reinterpret_cast<Take>(::dlsym(handle, "vmhost_fixture_take_requests"));
  ::dlclose(handle);  // drops the reference RTLD_NOLOAD took; the host's stays
  BOOST_TEST_REQUIRE(take != nullptr);
  std::vector<std::string> lines;
  std::istringstream in(take());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

struct NodeShape {
  int64_t cores = 4;
  bool ready = true;
  bool cordoned = false;
  std::map<std::string, std::string> labels = {};
};

struct VmShape {
  int64_t cores = 1;
  std::map<std::string, std::string> nodeSelector = {};
};

// A store in a fresh directory, a scheduler plugin and the controller under
// test, plus the writes the API and node agents would make.
class Cluster {
 public:
  explicit Cluster(const std::string& plugin = defaultPlugin(),
                   store::SqliteStoreOptions storeOptions = {}) {
    std::string tmpl = (fs::temp_directory_path() / "vmhost-scheduling-test-XXXXXX").string();
    BOOST_TEST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    storeOptions.syncEveryCommit = false;
    storeOptions_ = storeOptions;
    openStore();
    loadPlugin(plugin);
    // Only events and explicit retries move things: a test that needs the
    // periodic retry asks for it.
    options_.retryInterval = std::chrono::hours(1);
  }
  ~Cluster() {
    controller_.reset();
    plugin_.reset();
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void openStore() {
    auto s = store::SqliteStore::open(dir_.string(), storeOptions_);
    BOOST_TEST_REQUIRE(s.ok(), (s.ok() ? "" : s.error().message));
    store_ = std::move(s.value());
  }
  // A process restart: the controller, the plugin instance and the store go
  // away and come back over the same directory.
  void restart() {
    controller_.reset();
    plugin_.reset();
    store_.reset();
    openStore();
    loadPlugin(pluginPath_);
  }
  void loadPlugin(const std::string& path) {
    pluginPath_ = path;
    auto lib = PluginLibrary::open(path);
    BOOST_TEST_REQUIRE(lib.ok(), (lib.ok() ? "" : lib.error().message));
    auto instance = PluginInstance::create(lib.value(), "{}");
    BOOST_TEST_REQUIRE(instance.ok(), (instance.ok() ? "" : instance.error().message));
    plugin_ = std::move(instance.value());
    // Runs `hook_` once, right after the plugin answered and before the
    // controller writes the answer into the VM.
    plugin_->setObserver([this](const PluginInfo&, uint32_t, int32_t, double) {
      if (!hook_) return;
      auto hook = std::move(hook_);
      hook_ = nullptr;
      hook();
    });
  }

  SchedulingController& controller() {
    if (!controller_) {
      controller_ = std::make_unique<SchedulingController>(*store_, *plugin_, metrics_, options_);
    }
    return *controller_;
  }
  void newController() { controller_.reset(); }
  void setRetryInterval(std::chrono::milliseconds interval) {
    options_.retryInterval = interval;
    controller_.reset();
  }
  void step() { BOOST_TEST_REQUIRE(controller().runOnce()); }
  // What the next plugin call is followed by (another writer's change).
  void afterNextCall(std::function<void()> hook) { hook_ = std::move(hook); }

  store::Store& store() { return *store_; }
  const std::string& pluginPath() const { return pluginPath_; }
  int64_t revision() {
    auto vms = store_->list(api::kVirtualMachinesResource, "");
    BOOST_TEST_REQUIRE(vms.ok());
    return vms.value().revision;
  }

  // --- nodes, as a node agent registers them and an operator cordons them
  void addNode(const std::string& name, NodeShape shape = {}) {
    api::Node node;
    node.metadata.name = name;
    node.metadata.uid = api::newUid();
    node.metadata.creationTimestamp = api::nowRfc3339();
    node.metadata.generation = 1;
    node.metadata.labels = shape.labels;
    api::applyNodeDefaults(node);
    node.spec.unschedulable = shape.cordoned;
    node.status.capacity.cpu = api::parseQuantity(std::to_string(shape.cores)).value();
    node.status.capacity.memory = api::parseQuantity("64Gi").value();
    setCondition(node.status.conditions, "Ready", shape.ready ? "True" : "False",
                 shape.ready ? "NodeReady" : "NodeNotReady", "");
    auto r = store_->create(api::nodeKey(name), api::storeValue(node));
    BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
  }
  void updateNode(const std::string& name, const std::function<void(api::Node&)>& change) {
    auto cur = store_->get(api::nodeKey(name));
    BOOST_TEST_REQUIRE(cur.ok());
    auto node = api::decodeStoredNode(cur.value());
    BOOST_TEST_REQUIRE(node.ok());
    change(node.value());
    auto r =
        store_->update(api::nodeKey(name), api::storeValue(node.value()), cur.value().modRevision);
    BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
  }
  void removeNode(const std::string& name) {
    BOOST_TEST_REQUIRE(store_->remove(api::nodeKey(name), 0).ok());
  }

  // --- VMs, as the API creates, changes and deletes them
  void addVm(const std::string& name, VmShape shape = {}) {
    api::VirtualMachine vm;
    vm.metadata.ns = "default";
    vm.metadata.name = name;
    vm.metadata.uid = api::newUid();
    vm.metadata.creationTimestamp = api::nowRfc3339();
    vm.metadata.generation = 1;
    vm.spec.cpu.cores = shape.cores;
    vm.spec.memory = api::parseQuantity("1Gi").value();
    vm.spec.nodeSelector = shape.nodeSelector;
    vm.status.phase = "Pending";
    auto r = store_->create(api::virtualMachineKey("default", name), api::storeValue(vm));
    BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
  }
  // A spec change through the API (which bumps the generation).
  void changeVm(const std::string& name, const std::function<void(api::VirtualMachine&)>& change) {
    auto key = api::virtualMachineKey("default", name);
    auto cur = store_->get(key);
    BOOST_TEST_REQUIRE(cur.ok());
    auto vm = api::decodeStoredVirtualMachine(cur.value());
    BOOST_TEST_REQUIRE(vm.ok());
    change(vm.value());
    vm.value().metadata.generation += 1;
    auto r = store_->update(key, api::storeValue(vm.value()), cur.value().modRevision);
    BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
  }
  // A status write, as a node agent (or another controller) makes it.
  void setVmStatus(const std::string& name,
                   const std::function<void(api::VirtualMachineStatus&)>& change) {
    auto r = api::updateVirtualMachineStatus(*store_, "default", name,
                                             [&](api::VirtualMachineStatus& s) {
                                               change(s);
                                               return true;
                                             });
    BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
  }
  void deleteVm(const std::string& name) {
    BOOST_TEST_REQUIRE(store_->remove(api::virtualMachineKey("default", name), 0).ok());
  }
  api::VirtualMachine vm(const std::string& name) {
    auto cur = store_->get(api::virtualMachineKey("default", name));
    BOOST_TEST_REQUIRE(cur.ok(), name);
    auto vm = api::decodeStoredVirtualMachine(cur.value());
    BOOST_TEST_REQUIRE(vm.ok());
    return vm.value();
  }
  std::string nodeOf(const std::string& name) { return vm(name).status.nodeName; }
  // "Scheduled=True Scheduled: placed on node a", or "" without the condition.
  std::string scheduled(const std::string& name) {
    auto v = vm(name);
    const api::Condition* c = findCondition(v.status.conditions, "Scheduled");
    if (c == nullptr) return "";
    return "Scheduled=" + c->status + " " + c->reason + ": " + c->message;
  }
  // Cores of the VMs bound to `node` that hold resources there.
  int64_t coresOn(const std::string& node) {
    auto vms = store_->list(api::kVirtualMachinesResource, "");
    BOOST_TEST_REQUIRE(vms.ok());
    int64_t cores = 0;
    for (const auto& object : vms.value().items) {
      auto v = api::decodeStoredVirtualMachine(object);
      BOOST_TEST_REQUIRE(v.ok());
      const auto& phase = v.value().status.phase;
      if (v.value().status.nodeName == node && phase != "Stopped" && phase != "Succeeded" &&
          phase != "Failed") {
        cores += v.value().spec.cpu.cores;
      }
    }
    return cores;
  }

 private:
  fs::path dir_;
  store::SqliteStoreOptions storeOptions_;
  std::unique_ptr<store::SqliteStore> store_;
  std::string pluginPath_;
  std::unique_ptr<PluginInstance> plugin_;
  metrics::Registry metrics_;
  SchedulingOptions options_;
  std::unique_ptr<SchedulingController> controller_;
  std::function<void()> hook_;
};

}  // namespace

// --- placement ---------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(placement_writes_node_and_condition_once) {
  Cluster c;
  c.addNode("a");
  c.addVm("vm1");
  c.step();
  auto vm = c.vm("vm1");
  BOOST_TEST(vm.status.nodeName == "a");
  BOOST_TEST(vm.status.phase == "Scheduled");
  BOOST_TEST(c.scheduled("vm1") == "Scheduled=True Scheduled: placed on node a");
  BOOST_TEST(c.controller().placements() == 1u);

  // Later rounds, and the node agent's own status writes, bring no second
  // write from the controller.
  int64_t revision = c.revision();
  c.step();
  BOOST_TEST(c.revision() == revision);
  c.setVmStatus("vm1", [](api::VirtualMachineStatus& s) { s.phase = "Running"; });
  revision = c.revision();
  c.step();
  c.step();
  BOOST_TEST(c.revision() == revision);
  BOOST_TEST(c.vm("vm1").status.phase == "Running");
  BOOST_TEST(c.controller().placements() == 1u);

  // Nor does a new controller retrying everything on every round.
  c.setRetryInterval(std::chrono::milliseconds(0));
  for (int i = 0; i < 3; ++i) c.step();
  BOOST_TEST(c.revision() == revision);
  BOOST_TEST(c.controller().placements() == 0u);
}

BOOST_AUTO_TEST_CASE(unschedulable_reason_is_written_once_and_updated_when_nodes_change) {
  Cluster c;
  c.setRetryInterval(std::chrono::milliseconds(0));  // every round retries
  c.addNode("a", {.cores = 1});
  c.addVm("big", {.cores = 2});
  c.step();
  auto vm = c.vm("big");
  BOOST_TEST(vm.status.nodeName.empty());
  BOOST_TEST(vm.status.phase == "Pending");
  BOOST_TEST(c.scheduled("big") == "Scheduled=False Unschedulable: 0/1 nodes: 1 insufficient cpu");
  for (int i = 0; i < 3; ++i) c.step();
  BOOST_TEST(c.vm("big").metadata.resourceVersion == vm.metadata.resourceVersion);

  c.addNode("b", {.cores = 1, .labels = {{"disk", "ssd"}}});
  c.step();
  BOOST_TEST(c.scheduled("big") == "Scheduled=False Unschedulable: 0/2 nodes: 2 insufficient cpu");

  c.addVm("picky", {.cores = 1, .nodeSelector = {{"disk", "nvme"}}});
  c.step();
  BOOST_TEST(c.scheduled("picky") ==
             "Scheduled=False Unschedulable: 0/2 nodes: 2 node selector mismatch");

  c.addNode("c", {.cores = 2, .labels = {{"disk", "nvme"}}});
  c.step();
  BOOST_TEST(c.nodeOf("big") == "c");
  BOOST_TEST(c.scheduled("big") == "Scheduled=True Scheduled: placed on node c");
  // c is full now: picky matches it only, and c has no cpu left.
  BOOST_TEST(c.nodeOf("picky").empty());
  BOOST_TEST(c.scheduled("picky") ==
             "Scheduled=False Unschedulable: 0/3 nodes: 2 node selector mismatch, 1 "
             "insufficient cpu");
}

BOOST_AUTO_TEST_CASE(cordoned_and_not_ready_nodes_get_nothing) {
  Cluster c;
  c.addNode("a", {.cores = 8, .cordoned = true});
  c.addNode("b", {.cores = 8, .ready = false});
  c.addNode("c", {.cores = 1});
  c.addVm("vm1");
  c.step();
  BOOST_TEST(c.nodeOf("vm1") == "c");
  c.addVm("vm2");
  c.step();
  BOOST_TEST(c.nodeOf("vm2").empty());
  BOOST_TEST(c.scheduled("vm2") ==
             "Scheduled=False Unschedulable: 0/3 nodes: 1 insufficient cpu, 1 node not ready, 1 "
             "node unschedulable");

  // Uncordoning is a node change: the waiting VM is tried again at once.
  c.updateNode("a", [](api::Node& n) { n.spec.unschedulable = false; });
  c.step();
  BOOST_TEST(c.nodeOf("vm2") == "a");

  // A node that turns NotReady takes nothing more, however empty.
  c.updateNode("a", [](api::Node& n) {
    setCondition(n.status.conditions, "Ready", "False", "NodeNotReady", "heartbeat lost");
  });
  c.addVm("vm3");
  c.step();
  BOOST_TEST(c.nodeOf("vm3").empty());
  BOOST_TEST(c.scheduled("vm3") ==
             "Scheduled=False Unschedulable: 0/3 nodes: 2 node not ready, 1 insufficient cpu");
}

BOOST_AUTO_TEST_CASE(plugin_errors_and_unknown_nodes_are_scheduler_errors) {
  // The fixture fails every VM with a retryable UNAVAILABLE, except one named
  // "ok", which it places on "node-a" whatever nodes there are.
  Cluster c(fixturePlugin("sdk-error"));
  c.addNode("b");
  c.addVm("vm1");
  c.step();
  BOOST_TEST(c.nodeOf("vm1").empty());
  BOOST_TEST(c.vm("vm1").status.phase == "Scheduling");
  BOOST_TEST(c.scheduled("vm1").find("Scheduled=False SchedulerError: ") == 0u);
  BOOST_TEST(c.scheduled("vm1").find("fixture: backend unavailable") != std::string::npos);

  // A node the host does not know is refused, not written into the VM.
  c.addVm("ok");
  c.step();
  BOOST_TEST(c.nodeOf("ok").empty());
  BOOST_TEST(c.scheduled("ok") ==
             "Scheduled=False SchedulerError: the scheduler plugin chose node \"node-a\", which "
             "is not a known node");
  BOOST_TEST(c.controller().placements() == 0u);

  // Once that node exists, the same answer binds.
  c.addNode("node-a");
  c.step();
  BOOST_TEST(c.nodeOf("ok") == "node-a");
}

BOOST_AUTO_TEST_CASE(a_bad_ratio_annotation_falls_back_to_the_plugins_default) {
  Cluster c;
  c.addNode("a", {.cores = 2});
  for (const char* bad : {"inf", "nan", "-1", "lots"}) {
    BOOST_TEST_CONTEXT(bad) {
      c.updateNode("a", [&](api::Node& n) {
        n.metadata.annotations[api::kCpuAllocationRatioAnnotation] = bad;
      });
      std::string name = std::string("vm-") + (bad[0] == '-' ? "minus" : bad);
      c.addVm(name);
      c.step();
      BOOST_TEST(c.scheduled(name) == "Scheduled=True Scheduled: placed on node a");
      c.deleteVm(name);
    }
  }
  // A good one is the node's overcommit: 2 cores * 2 = 4 allocatable.
  c.updateNode(
      "a", [](api::Node& n) { n.metadata.annotations[api::kCpuAllocationRatioAnnotation] = "2"; });
  c.addVm("big", {.cores = 4});
  c.step();
  BOOST_TEST(c.nodeOf("big") == "a");
}

// --- what the plugin is sent ---------------------------------------------------------

BOOST_AUTO_TEST_CASE(full_lists_for_a_plugin_without_the_node_cache_capability) {
  Cluster c(fixturePlugin("recorder-full"));
  auto lib = PluginLibrary::open(c.pluginPath());
  BOOST_TEST_REQUIRE(lib.ok());
  BOOST_TEST_REQUIRE((lib.value()->info().capabilities & VMHOST_CAP_SCHEDULER_NODE_CACHE) == 0u);
  c.addNode("a", {.cores = 2});
  c.addNode("b", {.cores = 2});
  c.addVm("vm1");
  c.step();
  c.addVm("vm2");
  c.step();
  c.addVm("vm3");
  c.step();
  BOOST_TEST(c.nodeOf("vm1") == "a");
  BOOST_TEST(c.nodeOf("vm2") == "b");
  BOOST_TEST(c.nodeOf("vm3") == "a");
  // The fixture forgets everything between calls, so these placements are
  // only right because every call carried every node with its allocation.
  std::vector<std::string> want = {"full a:0 b:0", "full a:1000 b:0", "full a:1000 b:1000"};
  BOOST_TEST(takeRequests(c.pluginPath()) == want, boost::test_tools::per_element());

  c.removeNode("b");
  c.deleteVm("vm1");
  c.addVm("vm4");
  c.step();
  BOOST_TEST(c.nodeOf("vm4") == "a");
  want = {"full a:1000"};  // no removedNodes in a full list
  BOOST_TEST(takeRequests(c.pluginPath()) == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(deltas_for_a_plugin_with_the_node_cache_capability) {
  store::SqliteStoreOptions options;
  options.watchQueueLimit = 8;  // so that a burst of writes ends the watch
  Cluster c(fixturePlugin("recorder-cache"), options);
  c.addNode("a", {.cores = 2});
  c.addNode("b", {.cores = 2});
  c.addVm("vm1");
  c.step();
  c.addVm("vm2");
  c.step();
  BOOST_TEST(c.nodeOf("vm1") == "a");
  BOOST_TEST(c.nodeOf("vm2") == "b");
  // The first call carries everything; later ones what changed since, and
  // the node the previous placement went to, with its allocation as the
  // status write left it.
  std::vector<std::string> want = {"full a:0 b:0", "delta a:1000"};
  BOOST_TEST(takeRequests(c.pluginPath()) == want, boost::test_tools::per_element());

  c.removeNode("b");
  c.updateNode("a", [](api::Node& n) { n.metadata.labels["zone"] = "z1"; });
  c.addVm("vm3");
  c.step();
  BOOST_TEST(c.nodeOf("vm3") == "a");
  want = {"delta a:1000 -b"};  // b was vm2's node, but it is gone
  BOOST_TEST(takeRequests(c.pluginPath()) == want, boost::test_tools::per_element());

  // A watch that ends (here: too far behind) means a new list, and the
  // plugin's cache is replaced.
  for (int i = 0; i < 20; ++i) {
    c.updateNode("a", [&](api::Node& n) { n.metadata.labels["round"] = std::to_string(i); });
  }
  c.addVm("vm4");
  c.step();  // the watch's end: lists again
  c.step();
  BOOST_TEST(c.nodeOf("vm4").empty());  // a is full (vm1 + vm3)
  want = {"full a:2000"};
  BOOST_TEST(takeRequests(c.pluginPath()) == want, boost::test_tools::per_element());

  // So does a new controller.
  c.newController();
  c.deleteVm("vm4");
  c.addVm("vm5");
  c.step();
  want = {"full a:2000"};
  BOOST_TEST(takeRequests(c.pluginPath()) == want, boost::test_tools::per_element());
}

// --- the plugin's counts follow the host's ---------------------------------------------

BOOST_AUTO_TEST_CASE(a_deleted_or_stopped_vm_frees_its_node_for_the_next_vm) {
  Cluster c;
  c.addNode("a", {.cores = 2});
  c.addVm("vm1", {.cores = 2});
  c.step();
  BOOST_TEST(c.nodeOf("vm1") == "a");
  c.addVm("vm2", {.cores = 2});
  c.step();
  BOOST_TEST(c.scheduled("vm2") == "Scheduled=False Unschedulable: 0/1 nodes: 1 insufficient cpu");
  c.step();  // takes in the watch event of vm2's own status write

  // The periodic retry is an hour away: the deletion itself is what makes
  // the waiting VM try again, and the plugin's cache must know a is free.
  c.deleteVm("vm1");
  c.step();
  BOOST_TEST(c.nodeOf("vm2") == "a");

  c.addVm("vm3", {.cores = 2});
  c.step();
  c.step();
  BOOST_TEST(c.nodeOf("vm3").empty());
  c.setVmStatus("vm2", [](api::VirtualMachineStatus& s) { s.phase = "Stopped"; });
  c.step();
  BOOST_TEST(c.nodeOf("vm3") == "a");
  BOOST_TEST(c.coresOn("a") == 2);
}

// Another writer binds the VM to another node between the plugin's answer
// and the controller's write (a second controller, say). The controller must
// not count that as its placement, and the node the plugin chose must not
// stay full in the plugin's cache.
BOOST_AUTO_TEST_CASE(a_vm_bound_elsewhere_meanwhile_leaves_the_chosen_node_free) {
  Cluster c;
  c.addNode("a", {.cores = 2});
  c.addNode("b", {.cores = 2});
  c.addVm("vm1", {.cores = 2});
  c.afterNextCall([&] {
    c.setVmStatus("vm1", [](api::VirtualMachineStatus& s) {
      s.nodeName = "b";
      s.phase = "Scheduled";
    });
  });
  c.step();  // the plugin chose a (equal nodes: the first by name)
  BOOST_TEST(c.nodeOf("vm1") == "b");
  BOOST_TEST(c.controller().placements() == 0u);

  c.addVm("vm2", {.cores = 2});
  c.step();
  BOOST_TEST(c.nodeOf("vm2") == "a");
  BOOST_TEST(c.controller().placements() == 1u);
}

// The VM the plugin placed is gone or changed by the time the controller
// writes the placement. The decision was about a VM that no longer exists as
// it was asked about: it must not be written onto what is there now (that
// can overfill the node: the plugin counted the VM as it was), and the
// plugin must learn that the node did not get it before placing the next VM
// of the same round.
BOOST_AUTO_TEST_CASE(a_vm_changed_meanwhile_is_not_bound_by_the_stale_decision) {
  struct Case {
    std::string name;
    std::function<void(Cluster&)> change;
    std::string phaseAfter;  // vm1's, once the controller has seen the change
  };
  const std::vector<Case> cases = {
      {"deleted and created again, bigger",
       [](Cluster& c) {
         c.deleteVm("vm1");
         c.addVm("vm1", {.cores = 3});
       },
       "Pending"},
      {"resized", [](Cluster& c) { c.changeVm("vm1", [](auto& v) { v.spec.cpu.cores = 3; }); },
       "Pending"},
      {"halted",
       [](Cluster& c) { c.changeVm("vm1", [](auto& v) { v.spec.runStrategy = "Halted"; }); },
       "Stopped"},
      {"being deleted",
       [](Cluster& c) {
         c.changeVm("vm1", [](auto& v) {
           v.metadata.finalizers = {"vmhost.io/test"};
           v.metadata.deletionTimestamp = api::nowRfc3339();
         });
       },
       "Pending"},
  };
  for (const auto& k : cases) {
    BOOST_TEST_CONTEXT(k.name) {
      Cluster c;
      c.addNode("a", {.cores = 4});
      c.addVm("vm1", {.cores = 1});
      c.addVm("vm2", {.cores = 2});  // placed in the same round, after vm1
      c.afterNextCall([&] { k.change(c); });
      c.step();
      // Whatever vm1 is now, the plugin never evaluated it: not bound.
      BOOST_TEST(c.nodeOf("vm1").empty());
      BOOST_TEST(c.nodeOf("vm2") == "a");
      BOOST_TEST(c.coresOn("a") <= 4);
      BOOST_TEST(c.controller().placements() == 1u);
      c.step();  // the change arrives: vm1 as it now is (3 cores do not fit)
      BOOST_TEST(c.vm("vm1").status.phase == k.phaseAfter);
      BOOST_TEST(c.nodeOf("vm1").empty());

      // The plugin's count for a is the host's: a VM that fits what is left
      // is placed, one more is refused.
      int64_t left = 4 - c.coresOn("a");
      BOOST_TEST(left == 2);
      c.addVm("fits", {.cores = left});
      c.step();
      BOOST_TEST(c.nodeOf("fits") == "a");
      c.addVm("too-big", {.cores = 1});
      c.step();
      BOOST_TEST(c.nodeOf("too-big").empty());
      BOOST_TEST(c.coresOn("a") == 4);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_failed_status_write_resends_the_node) {
  Cluster c;
  c.addNode("a", {.cores = 2});
  c.addVm("vm1", {.cores = 2});
  c.addVm("vm2", {.cores = 2});
  c.afterNextCall([&] { c.deleteVm("vm1"); });  // vm1's write gets NOT_FOUND
  c.step();
  // vm2, in the same round, finds a as empty as it is.
  BOOST_TEST(c.nodeOf("vm2") == "a");
  BOOST_TEST(c.controller().placements() == 1u);
}

// --- restart -------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_restarted_controller_places_nothing_twice) {
  Cluster c;
  c.addNode("a", {.cores = 2});
  c.addNode("b", {.cores = 2});
  for (const char* name : {"vm1", "vm2", "vm3"}) c.addVm(name, {.cores = 2});
  c.step();
  BOOST_TEST(c.controller().placements() == 2u);
  std::map<std::string, std::string> before;
  for (const char* name : {"vm1", "vm2", "vm3"}) before[name] = c.nodeOf(name);
  BOOST_TEST(before["vm3"].empty());

  // A second controller over the same store and plugin instance.
  c.newController();
  int64_t revision = c.revision();
  c.step();
  c.step();
  BOOST_TEST(c.controller().placements() == 0u);
  BOOST_TEST(c.revision() == revision);  // nothing rewritten, not even vm3's reason

  // A whole process restart: new store handle, new plugin instance with an
  // empty cache. The VMs already bound still count on their nodes.
  c.restart();
  c.step();
  BOOST_TEST(c.controller().placements() == 0u);
  BOOST_TEST(c.revision() == revision);
  c.addNode("c", {.cores = 2});
  c.addVm("vm4", {.cores = 1});
  c.step();
  BOOST_TEST(c.controller().placements() == 1u);
  for (const char* name : {"vm1", "vm2"}) BOOST_TEST(c.nodeOf(name) == before[name]);
  BOOST_TEST(c.nodeOf("vm3") == "c");
  BOOST_TEST(c.nodeOf("vm4").empty());  // a, b and c are full
}
