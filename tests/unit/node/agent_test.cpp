// NodeAgent against a fake control plane (the one thing no real component
// gives a unit test: a controller to assert on and to push VM events from),
// libvirt's test driver (test:///default: real libvirt in this process, no
// QEMU) and the real default plugins: storage `local` in a temp pool and
// network `libvirt-network` with user networking.
//
// test:///default is one instance per process: each case uses VM names of
// its own.
#define BOOST_TEST_MODULE node_agent
#include <boost/test/unit_test.hpp>

#include "api/conditions.h"
#include "api/eviction.h"
#include "api/migration.h"
#include "api/types.h"
#include "api/vocabulary.h"
#include "common/metrics.h"
#include "common/yaml.h"
#include "node/agent/agent.h"
#include "node/agent/control_plane.h"
#include "node/libvirt.h"

#include <vmhost/loader/plugin_host.h>

#include <libvirt/libvirt.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace vmhost;
using namespace vmhost::node;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* kNode = "n1";

// ---- The fake control plane ----

class FakeFeed final : public VmFeed {
 public:
  std::optional<VmEvent> tryNext() override {
    std::lock_guard lock(mu_);
    if (events_.empty()) return std::nullopt;
    VmEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
  }
  void setNotify(std::function<void()> notify) override {
    std::lock_guard lock(mu_);
    notify_ = std::move(notify);
  }
  void push(VmEvent e) {
    std::function<void()> notify;
    {
      std::lock_guard lock(mu_);
      events_.push_back(std::move(e));
      notify = notify_;
    }
    if (notify) notify();
  }

 private:
  std::mutex mu_;
  std::deque<VmEvent> events_;
  std::function<void()> notify_;
};

// Holds the VMs as a controller would and records every status write.
class FakeControlPlane final : public ControlPlane {
 public:
  struct StatusWrite {
    std::string name;
    api::VirtualMachineStatus status;
  };

  Status registerNode(const api::Node& node) override {
    std::lock_guard lock(mu_);
    nodes_.push_back(node);
    return Ok{};
  }
  Status heartbeat() override {
    std::lock_guard lock(mu_);
    ++heartbeats_;
    return Ok{};
  }
  Result<VmSnapshot> listAndWatch() override {
    std::lock_guard lock(mu_);
    VmSnapshot snapshot;
    for (const auto& [key, vm] : vms_) snapshot.vms.push_back(vm);
    auto feed = std::make_unique<FakeFeed>();
    feed_ = feed.get();
    snapshot.feed = std::move(feed);
    ++lists_;
    return snapshot;
  }
  Result<std::optional<api::VirtualMachine>> getVm(const std::string& ns,
                                                   const std::string& name) override {
    std::lock_guard lock(mu_);
    auto it = vms_.find({ns, name});
    if (it == vms_.end()) return std::optional<api::VirtualMachine>{};
    return std::optional<api::VirtualMachine>(it->second);
  }
  bool confirmedDeleted(const std::string& ns, const std::string& name) override {
    std::lock_guard lock(mu_);
    return deleted_.count({ns, name}) > 0;
  }
  Status updateVmStatus(const std::string& ns, const std::string& name,
                        const std::function<bool(api::VirtualMachineStatus&)>& mutate) override {
    std::lock_guard lock(mu_);
    auto it = vms_.find({ns, name});
    if (it == vms_.end()) return Error{VMHOST_ERR_NOT_FOUND, "vm " + name + " not found", false};
    api::VirtualMachineStatus status = it->second.status;
    if (!mutate(status)) return Ok{};
    it->second.status = status;
    writes_.push_back({name, status});
    return Ok{};
  }

  void recordEvent(api::EventRecord event) override {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(event));
  }
  Status reportMigration(const std::string& ns, const std::string& name,
                         const api::MigrationState& report) override {
    std::lock_guard lock(mu_);
    auto it = vms_.find({ns, name});
    if (it == vms_.end()) return Error{VMHOST_ERR_NOT_FOUND, "vm " + name + " not found", false};
    auto merged = api::applyMigrationReport(it->second.status, "node1", report);
    if (!merged.ok()) return merged.error();
    return Ok{};
  }

  // ---- for the test
  // The reasons of the events recorded about `name`, in order.
  std::vector<std::string> eventReasons(const std::string& name) {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& e : events_) {
      if (e.object.name == name) out.push_back(e.reason);
    }
    return out;
  }
  std::vector<api::EventRecord> events(const std::string& name) {
    std::lock_guard lock(mu_);
    std::vector<api::EventRecord> out;
    for (const auto& e : events_) {
      if (e.object.name == name) out.push_back(e);
    }
    return out;
  }
  void put(const api::VirtualMachine& vm) {
    std::lock_guard lock(mu_);
    vms_[{vm.metadata.ns, vm.metadata.name}] = vm;
    deleted_.erase({vm.metadata.ns, vm.metadata.name});
  }
  // Changes the spec as the API would: a new generation.
  void changeSpec(const std::string& name,
                  const std::function<void(api::VirtualMachineSpec&)>& change) {
    std::lock_guard lock(mu_);
    auto& vm = vms_.at({"default", name});
    change(vm.spec);
    ++vm.metadata.generation;
  }
  void changeStatus(const std::string& name,
                    const std::function<void(api::VirtualMachineStatus&)>& change) {
    std::lock_guard lock(mu_);
    change(vms_.at({"default", name}).status);
  }
  void remove(const std::string& name) {
    std::lock_guard lock(mu_);
    vms_.erase({"default", name});
    deleted_.insert({"default", name});
  }
  api::VirtualMachine vm(const std::string& name) {
    std::lock_guard lock(mu_);
    return vms_.at({"default", name});
  }
  std::vector<StatusWrite> writes(const std::string& name) {
    std::lock_guard lock(mu_);
    std::vector<StatusWrite> out;
    for (const auto& w : writes_) {
      if (w.name == name) out.push_back(w);
    }
    return out;
  }
  size_t lists() {
    std::lock_guard lock(mu_);
    return lists_;
  }
  size_t nodes() {
    std::lock_guard lock(mu_);
    return nodes_.size();
  }
  // Pushes an event to the agent's current feed (after its first list).
  void push(VmEvent e) {
    std::lock_guard lock(mu_);
    BOOST_TEST_REQUIRE(feed_ != nullptr);
    feed_->push(std::move(e));
  }

 private:
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, api::VirtualMachine> vms_;
  std::set<std::pair<std::string, std::string>> deleted_;
  std::vector<StatusWrite> writes_;
  std::vector<api::EventRecord> events_;
  std::vector<api::Node> nodes_;
  size_t heartbeats_ = 0;
  size_t lists_ = 0;
  FakeFeed* feed_ = nullptr;  // owned by the agent's snapshot
};

// ---- The node: real libvirt (test driver), real plugins, a temp data dir ----

std::unique_ptr<PluginInstance> loadPlugin(const std::string& file, const std::string& config) {
  const char* dir = std::getenv("VMHOST_PLUGIN_DIR");
  BOOST_TEST_REQUIRE(dir != nullptr, "VMHOST_PLUGIN_DIR is not set");
  auto lib = PluginLibrary::open(std::string(dir) + "/" + file);
  BOOST_TEST_REQUIRE(lib.ok(), (lib.ok() ? "" : lib.error().message));
  auto inst = PluginInstance::create(lib.value(), config);
  BOOST_TEST_REQUIRE(inst.ok(), (inst.ok() ? "" : inst.error().message));
  return std::move(inst.value());
}

std::string jsonString(const std::string& s) {
  std::string out;
  yaml::appendJsonString(out, s);
  return out;
}

// Removed with everything in it, even when a fixture's set-up fails.
struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/vmhost-agent-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

struct TestNode {
  TempDir temp;
  fs::path dir = temp.path;
  fs::path pool;
  FakeControlPlane control;
  std::optional<Connection> libvirt;
  std::string networkConfig = "{}";
  std::unique_ptr<PluginInstance> storage, network;
  std::unique_ptr<metrics::Registry> metrics;
  std::unique_ptr<NodeAgent> agent;
  AgentOptions options;

  TestNode() {
    BOOST_TEST_REQUIRE(std::system("qemu-img --version >/dev/null 2>&1") == 0,
                       "qemu-img not found: install qemu-utils (deploy/install-deps.sh)");
    BOOST_TEST_REQUIRE(!dir.empty(), "mkdtemp failed");
    pool = dir / "pool";
    auto c = Connection::open("test:///default");
    BOOST_TEST_REQUIRE(c.ok(), (c.ok() ? "" : c.error().describe()));
    libvirt.emplace(std::move(c.value()));
    options.nodeName = kNode;
    options.dataDir = (dir / "data").string();
    options.retryBackoffInitial = 200ms;
    options.retryBackoffMax = 400ms;
    options.domainPoll = 50ms;
    start();
  }
  ~TestNode() { agent.reset(); }

  // A (re)started node process: fresh plugins, metrics and agent over the
  // same libvirt, data directory and pool.
  void start() {
    agent.reset();
    storage = loadPlugin("vmhost-storage-local.so", "{\"pool\":" + jsonString(pool.string()) + "}");
    network = loadPlugin("vmhost-network-libvirt-network.so", networkConfig);
    metrics = std::make_unique<metrics::Registry>();
    agent = std::make_unique<NodeAgent>(control, *libvirt, *storage, *network, *metrics, options);
  }

  Status reconcile(const std::string& name) { return agent->reconcile("default", name); }

  // How often this agent defined or started a domain.
  uint64_t steps(const std::string& step) {
    auto h = metrics->histogram("vmhost_node_vm_start_step_seconds", "", {"node", "step"});
    BOOST_TEST_REQUIRE(h.ok());
    return h.value()->count({kNode, step});
  }

  std::optional<Domain> domain(const std::string& name) {
    auto d = libvirt->lookupByName(domainName("default", name));
    if (!d.ok()) {
      BOOST_TEST_REQUIRE(d.error().code == VMHOST_ERR_NOT_FOUND, d.error().message);
      return std::nullopt;
    }
    return std::move(d.value());
  }

  DomainState state(const std::string& name) {
    auto d = domain(name);
    BOOST_TEST_REQUIRE(d.has_value(), "no domain for " << name);
    auto s = d->state();
    BOOST_TEST_REQUIRE(s.ok());
    return s.value().state;
  }

  fs::path volumeFile(const std::string& vm, const std::string& volume) {
    return pool / "vms" / "default" / vm / (volume + ".qcow2");
  }
};

// The error of a failed status, for messages (evaluated whether or not the
// check fails).
std::string why(const Status& s) { return s.ok() ? "" : s.error().describe(); }

// A VM through the API's own decoder, bound to this node.
api::VirtualMachine makeVm(const std::string& yamlSpec) {
  static int serial = 0;
  auto json = yaml::parseToJson(yamlSpec);
  BOOST_TEST_REQUIRE(json.ok(), (json.ok() ? "" : json.error().message));
  auto decoded =
      api::decodeVirtualMachine(api::Json::parse(json.value()), api::FieldValidation::kStrict);
  std::string errors;
  for (const auto& e : decoded.errors) errors += " " + e.toString();
  BOOST_TEST_REQUIRE(decoded.ok(), errors);
  api::VirtualMachine vm = std::move(decoded.value);
  vm.metadata.ns = "default";
  char uid[40];
  std::snprintf(uid, sizeof uid, "00000000-0000-4000-8000-%012d", ++serial);
  vm.metadata.uid = uid;
  vm.metadata.generation = 1;
  for (const auto& e : api::validateVirtualMachine(vm)) errors += " " + e.toString();
  BOOST_TEST_REQUIRE(errors.empty(), errors);
  vm.status.nodeName = kNode;
  vm.status.phase = api::kPhaseScheduled;
  return vm;
}

// A VM with a scratch disk (an empty qcow2 in the pool) and a user NIC.
api::VirtualMachine scratchVm(const std::string& name) {
  return makeVm("apiVersion: vmhost.io/v1\nkind: VirtualMachine\nmetadata: {name: " + name +
                "}\nspec:\n  memory: 64Mi\n  boot: {kernel: /nonexistent/vmlinux}\n"
                "  disks: [{name: scratch}]\n"
                "  volumes: [{name: scratch, empty: {size: 16Mi}}]\n"
                "  interfaces: [{name: net0, user: {}}]\n");
}

const api::Condition* ready(const api::VirtualMachine& vm) {
  return api::findCondition(vm.status.conditions, api::kReadyCondition);
}

// Reconciles until `done` holds (a shutdown takes a pass to send and one to
// see), at most `passes` times.
void reconcileUntil(TestNode& node, const std::string& name, const std::function<bool()>& done,
                    int passes = 5) {
  for (int i = 0; i < passes && !done(); ++i) {
    auto s = node.reconcile(name);
    BOOST_TEST_REQUIRE(s.ok(), why(s));
  }
  BOOST_TEST_REQUIRE(done(), name << ": not reached after " << passes << " passes");
}

bool waitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

}  // namespace

BOOST_AUTO_TEST_CASE(define_and_start_reach_running_with_macs_in_status) {
  TestNode node;
  node.control.put(scratchVm("run1"));
  auto s = node.reconcile("run1");
  BOOST_TEST_REQUIRE(s.ok(), why(s));

  auto vm = node.control.vm("run1");
  BOOST_TEST(vm.status.phase == api::kPhaseRunning);
  BOOST_TEST_REQUIRE(ready(vm) != nullptr);
  BOOST_TEST(ready(vm)->status == "True");
  BOOST_TEST(ready(vm)->reason == "DomainRunning");
  BOOST_TEST(vm.status.observedGeneration == 1);
  BOOST_TEST_REQUIRE(vm.status.interfaces.size() == 1u);
  BOOST_TEST(vm.status.interfaces[0].name == "net0");
  BOOST_TEST(std::regex_match(vm.status.interfaces[0].mac,
                              std::regex("52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}")));

  BOOST_TEST((node.state("run1") == DomainState::kRunning));
  BOOST_TEST(fs::exists(node.volumeFile("run1", "scratch")));
  // The domain libvirt holds is the converter's: the plugin's volume, the
  // plugin's MAC, the node's serial log.
  auto xml = node.domain("run1")->xml(true);
  BOOST_TEST_REQUIRE(xml.ok());
  BOOST_TEST(xml.value().find(node.volumeFile("run1", "scratch").string()) != std::string::npos);
  BOOST_TEST(xml.value().find(vm.status.interfaces[0].mac) != std::string::npos);
  BOOST_TEST(xml.value().find("node/console/default_run1.log") != std::string::npos);
  BOOST_TEST(node.steps("define") == 1u);
  BOOST_TEST(node.steps("start") == 1u);

  // One Started event, reported by this node.
  auto events = node.control.events("run1");
  BOOST_TEST_REQUIRE(events.size() == 1u);
  BOOST_TEST(events[0].reason == "Started");
  BOOST_TEST(events[0].type == api::kEventTypeNormal);
  BOOST_TEST(events[0].object.uid == vm.metadata.uid);
  BOOST_TEST(events[0].source.component == "vmhost-node");
  BOOST_TEST(events[0].source.host == node.options.nodeName);

  // Converged: another pass changes nothing, and records nothing.
  size_t writes = node.control.writes("run1").size();
  BOOST_TEST_REQUIRE(node.reconcile("run1").ok());
  BOOST_TEST(node.control.writes("run1").size() == writes);
  BOOST_TEST(node.steps("start") == 1u);
  BOOST_TEST(node.control.events("run1").size() == 1u);
}

BOOST_AUTO_TEST_CASE(halted_stops_the_domain) {
  TestNode node;
  node.control.put(scratchVm("halt1"));
  BOOST_TEST_REQUIRE(node.reconcile("halt1").ok());
  BOOST_TEST_REQUIRE((node.state("halt1") == DomainState::kRunning));

  node.control.changeSpec("halt1", [](api::VirtualMachineSpec& s) { s.runStrategy = "Halted"; });
  reconcileUntil(node, "halt1",
                 [&] { return node.control.vm("halt1").status.phase == api::kPhaseStopped; });
  BOOST_TEST((node.state("halt1") == DomainState::kShutOff));
  auto vm = node.control.vm("halt1");
  BOOST_TEST(ready(vm)->status == "False");
  BOOST_TEST(ready(vm)->reason == "Stopped");
  BOOST_TEST(
      (node.control.eventReasons("halt1") == std::vector<std::string>{"Started", "Stopped"}));
  // Stopped keeps the disk and the definition.
  BOOST_TEST(fs::exists(node.volumeFile("halt1", "scratch")));
  BOOST_TEST_REQUIRE(node.reconcile("halt1").ok());
  BOOST_TEST((node.state("halt1") == DomainState::kShutOff));
}

BOOST_AUTO_TEST_CASE(delete_undefines_the_domain_and_releases_the_volumes) {
  TestNode node;
  node.control.put(scratchVm("del1"));
  BOOST_TEST_REQUIRE(node.reconcile("del1").ok());
  BOOST_TEST_REQUIRE(fs::exists(node.volumeFile("del1", "scratch")));
  fs::path state = fs::path(node.options.dataDir) / "node" / "vms" / "default_del1.json";
  BOOST_TEST_REQUIRE(fs::exists(state));

  node.control.remove("del1");
  BOOST_TEST_REQUIRE(node.reconcile("del1").ok());
  BOOST_TEST(!node.domain("del1").has_value());
  BOOST_TEST(!fs::exists(node.volumeFile("del1", "scratch")));
  BOOST_TEST(!fs::exists(state));
}

BOOST_AUTO_TEST_CASE(a_vm_bound_to_another_node_is_cleaned_up_here_but_keeps_its_disks) {
  TestNode node;
  node.control.put(scratchVm("moved1"));
  BOOST_TEST_REQUIRE(node.reconcile("moved1").ok());
  BOOST_TEST_REQUIRE(node.domain("moved1").has_value());

  node.control.changeStatus("moved1", [](api::VirtualMachineStatus& s) { s.nodeName = "n2"; });
  size_t writes = node.control.writes("moved1").size();
  BOOST_TEST_REQUIRE(node.reconcile("moved1").ok());
  BOOST_TEST(!node.domain("moved1").has_value());
  BOOST_TEST(fs::exists(node.volumeFile("moved1", "scratch")));
  // The status is the other node's to write now.
  BOOST_TEST(node.control.writes("moved1").size() == writes);
}

BOOST_AUTO_TEST_CASE(a_restarted_agent_adopts_the_running_domain_and_starts_nothing_twice) {
  TestNode node;
  node.control.put(scratchVm("adopt1"));
  BOOST_TEST_REQUIRE(node.reconcile("adopt1").ok());
  auto before = node.domain("adopt1");
  BOOST_TEST_REQUIRE(before.has_value());
  int id = virDomainGetID(before->raw());
  auto mac = node.control.vm("adopt1").status.interfaces.at(0).mac;

  // The node process restarts: new plugins and agent, same libvirt and data.
  node.start();
  {
    std::jthread loop([&](std::stop_token stop) { node.agent->run(stop); });
    // Through its loop: registered, listed, and every VM of the node
    // reconciled (the domain poll and the adoption queue it at once).
    BOOST_TEST_REQUIRE(waitFor([&] { return node.control.lists() >= 1; }));
    std::this_thread::sleep_for(500ms);
  }
  BOOST_TEST(node.control.nodes() >= 1u);
  BOOST_TEST(node.steps("define") == 0u);
  BOOST_TEST(node.steps("start") == 0u);
  BOOST_TEST(node.agent->failures() == 0u);
  // Adopting is not starting: still the one Started event.
  BOOST_TEST(node.control.eventReasons("adopt1") == std::vector<std::string>{"Started"});
  BOOST_TEST((node.state("adopt1") == DomainState::kRunning));
  BOOST_TEST(virDomainGetID(node.domain("adopt1")->raw()) == id);
  BOOST_TEST(node.control.vm("adopt1").status.phase == api::kPhaseRunning);
  BOOST_TEST(node.control.vm("adopt1").status.interfaces.at(0).mac == mac);
}

BOOST_AUTO_TEST_CASE(the_loop_follows_the_feed) {
  TestNode node;
  std::jthread loop([&](std::stop_token stop) { node.agent->run(stop); });
  BOOST_TEST_REQUIRE(waitFor([&] { return node.control.lists() >= 1; }));

  auto vm = scratchVm("feed1");
  node.control.put(vm);
  node.control.push(VmEvent{VmEvent::Type::kUpsert, vm});
  BOOST_TEST(waitFor([&] { return node.control.vm("feed1").status.phase == api::kPhaseRunning; }));

  node.control.remove("feed1");
  node.control.push(VmEvent{VmEvent::Type::kDeleted, vm});
  BOOST_TEST(waitFor([&] { return !node.domain("feed1").has_value(); }));
  BOOST_TEST(waitFor([&] { return !fs::exists(node.volumeFile("feed1", "scratch")); }));
}

// A plugin's non-retryable error: the code is in the condition, and the
// node does not try again until the spec changes or the node restarts.
BOOST_AUTO_TEST_CASE(a_non_retryable_plugin_error_is_shown_with_its_code_and_not_retried) {
  TestNode node;
  fs::path image = node.dir / "images" / "base.qcow2";
  node.control.put(
      makeVm("apiVersion: vmhost.io/v1\nkind: VirtualMachine\nmetadata: {name: "
             "broken1}\nspec:\n  memory: 64Mi\n  disks: [{name: scratch}, {name: root}]\n"
             "  volumes:\n  - {name: scratch, empty: {size: 16Mi}}\n"
             "  - {name: root, ephemeral: {image: {path: " +
             image.string() + "}}}\n"));
  auto s = node.reconcile("broken1");
  BOOST_TEST_REQUIRE(!s.ok());
  BOOST_TEST(s.error().code == VMHOST_ERR_NOT_FOUND);
  BOOST_TEST(!s.error().retryable);
  auto vm = node.control.vm("broken1");
  BOOST_TEST_REQUIRE(ready(vm) != nullptr);
  BOOST_TEST(ready(vm)->status == "False");
  BOOST_TEST(ready(vm)->reason == "PrepareFailed");
  BOOST_TEST_MESSAGE("Ready: " << ready(vm)->message);
  const std::string prefix = "volume root: storage plugin 'local': volume root: ";
  const std::string suffix =
      " (NOT_FOUND; not retried until the VM's spec changes or the node restarts)";
  BOOST_TEST(ready(vm)->message.rfind(prefix, 0) == 0, ready(vm)->message);
  BOOST_TEST(ready(vm)->message.find(image.string()) != std::string::npos, ready(vm)->message);
  BOOST_TEST(ready(vm)->message.ends_with(suffix), ready(vm)->message);
  BOOST_TEST(vm.status.phase == api::kPhaseScheduled);
  BOOST_TEST(!node.domain("broken1").has_value());
  BOOST_TEST(node.agent->failures() == 1u);
  auto failed = node.control.events("broken1");
  BOOST_TEST_REQUIRE(failed.size() == 1u);
  BOOST_TEST(failed[0].type == api::kEventTypeWarning);
  BOOST_TEST(failed[0].reason == "FailedPrepare");
  BOOST_TEST(failed[0].message.rfind(prefix, 0) == 0, failed[0].message);
  BOOST_TEST(failed[0].message.ends_with(" (NOT_FOUND)"), failed[0].message);

  // The cause goes away, but the same spec is not tried again: no retry,
  // no status write, no domain.
  fs::create_directories(image.parent_path());
  BOOST_TEST_REQUIRE(
      std::system(("qemu-img create -q -f qcow2 '" + image.string() + "' 16M").c_str()) == 0);
  size_t writes = node.control.writes("broken1").size();
  for (int i = 0; i < 3; ++i) BOOST_TEST_REQUIRE(node.reconcile("broken1").ok());
  BOOST_TEST(node.agent->failures() == 1u);
  BOOST_TEST(node.control.writes("broken1").size() == writes);
  BOOST_TEST(!node.domain("broken1").has_value());

  // A new generation of the spec is tried at once.
  node.control.changeSpec("broken1", [](api::VirtualMachineSpec& s) { s.cpu.cores = 2; });
  BOOST_TEST_REQUIRE(node.reconcile("broken1").ok());
  BOOST_TEST(node.control.vm("broken1").status.phase == api::kPhaseRunning);

  // Deleting it releases the volumes the failed pass had already prepared.
  node.control.remove("broken1");
  BOOST_TEST_REQUIRE(node.reconcile("broken1").ok());
  BOOST_TEST(!fs::exists(node.volumeFile("broken1", "scratch")));
}

// The first volume was prepared, the second failed: deleting the VM then
// releases the first (nothing orphaned in the pool).
BOOST_AUTO_TEST_CASE(a_vm_deleted_after_a_half_done_prepare_leaves_no_volume) {
  TestNode node;
  node.control.put(
      makeVm("apiVersion: vmhost.io/v1\nkind: VirtualMachine\nmetadata: {name: half1}\nspec:\n"
             "  memory: 64Mi\n  disks: [{name: scratch}, {name: root}]\n"
             "  volumes:\n  - {name: scratch, empty: {size: 16Mi}}\n"
             "  - {name: root, ephemeral: {image: {path: /nonexistent/base.qcow2}}}\n"));
  BOOST_TEST_REQUIRE(!node.reconcile("half1").ok());
  BOOST_TEST_REQUIRE(fs::exists(node.volumeFile("half1", "scratch")));
  node.control.remove("half1");
  BOOST_TEST_REQUIRE(node.reconcile("half1").ok());
  BOOST_TEST(!fs::exists(node.volumeFile("half1", "scratch")));
  BOOST_TEST(!fs::exists(fs::path(node.options.dataDir) / "node" / "vms" / "default_half1.json"));
}

BOOST_AUTO_TEST_CASE(a_restarted_node_tries_a_held_vm_again) {
  TestNode node;
  fs::path image = node.dir / "missing.qcow2";
  node.control.put(
      makeVm("apiVersion: vmhost.io/v1\nkind: VirtualMachine\nmetadata: {name: held1}\nspec:\n"
             "  memory: 64Mi\n  disks: [{name: root}]\n"
             "  volumes: [{name: root, ephemeral: {image: {path: " +
             image.string() + "}}}]\n"));
  BOOST_TEST_REQUIRE(!node.reconcile("held1").ok());
  BOOST_TEST_REQUIRE(node.reconcile("held1").ok());  // held
  BOOST_TEST_REQUIRE(
      std::system(("qemu-img create -q -f qcow2 '" + image.string() + "' 16M").c_str()) == 0);
  node.start();
  BOOST_TEST_REQUIRE(node.reconcile("held1").ok());
  BOOST_TEST(node.control.vm("held1").status.phase == api::kPhaseRunning);
  BOOST_TEST(ready(node.control.vm("held1"))->reason == "DomainRunning");
}

// The network plugin's errors carry the interface in the same way.
BOOST_AUTO_TEST_CASE(a_network_plugin_error_names_the_interface_and_its_code) {
  TestNode node;
  // The plugin checks networks through this process's test driver, which
  // has a network "default" and no "nosuchnet".
  node.networkConfig = R"({"uri":"test:///default","checkNetworks":true})";
  node.start();
  node.control.put(
      makeVm("apiVersion: vmhost.io/v1\nkind: VirtualMachine\nmetadata: {name: nonet1}\nspec:\n"
             "  memory: 64Mi\n  interfaces: [{name: eth0, network: nosuchnet}]\n"));
  auto s = node.reconcile("nonet1");
  BOOST_TEST_REQUIRE(!s.ok());
  auto vm = node.control.vm("nonet1");
  BOOST_TEST(ready(vm)->reason == "PrepareFailed");
  BOOST_TEST(ready(vm)->message.rfind("interface eth0: network plugin 'libvirt-network': "
                                      "interface eth0: network nosuchnet does not exist",
                                      0) == 0,
             ready(vm)->message);
  BOOST_TEST(ready(vm)->message.ends_with(
                 " (NOT_FOUND; not retried until the VM's spec changes or the node restarts)"),
             ready(vm)->message);
  BOOST_TEST(!node.domain("nonet1").has_value());
}

// A retryable error is tried again after a backoff that doubles, bounded.
BOOST_AUTO_TEST_CASE(a_retryable_plugin_error_is_retried_with_a_bounded_backoff) {
  TestNode node;  // backoff 200 ms, at most 400 ms
  node.control.put(makeVm(
      "apiVersion: vmhost.io/v1\nkind: VirtualMachine\nmetadata: {name: retry1}\nspec:\n"
      "  memory: 64Mi\n  disks: [{name: root}]\n"
      "  volumes: [{name: root, ephemeral: {image: {url: 'http://127.0.0.1:1/base.qcow2'}}}]\n"));
  auto message = [&] { return ready(node.control.vm("retry1"))->message; };

  auto s = node.reconcile("retry1");
  BOOST_TEST_REQUIRE(!s.ok());
  BOOST_TEST(s.error().code == VMHOST_ERR_UNAVAILABLE);
  BOOST_TEST(s.error().retryable);
  BOOST_TEST(message().rfind("volume root: storage plugin 'local': ", 0) == 0, message());
  BOOST_TEST(message().ends_with(" (UNAVAILABLE; retrying in 200ms)"), message());
  BOOST_TEST(node.agent->failures() == 1u);

  // Within the backoff: not tried.
  BOOST_TEST_REQUIRE(node.reconcile("retry1").ok());
  BOOST_TEST(node.agent->failures() == 1u);

  std::this_thread::sleep_for(250ms);
  BOOST_TEST_REQUIRE(!node.reconcile("retry1").ok());
  BOOST_TEST(node.agent->failures() == 2u);
  BOOST_TEST(message().ends_with(" (UNAVAILABLE; retrying in 400ms)"), message());

  std::this_thread::sleep_for(450ms);
  BOOST_TEST_REQUIRE(!node.reconcile("retry1").ok());
  BOOST_TEST(node.agent->failures() == 3u);
  BOOST_TEST(message().ends_with(" (UNAVAILABLE; retrying in 400ms)"), message());  // the bound
}

BOOST_AUTO_TEST_CASE(an_eviction_request_stops_the_domain_and_is_acknowledged) {
  TestNode node;
  node.control.put(scratchVm("evict1"));
  BOOST_TEST_REQUIRE(node.reconcile("evict1").ok());
  BOOST_TEST_REQUIRE((node.state("evict1") == DomainState::kRunning));

  node.control.changeStatus("evict1", [](api::VirtualMachineStatus& s) {
    api::setCondition(s.conditions, api::kEvictingCondition, "True", api::kEvictingReason,
                      "node n1 is being drained (eviction 4f2a, evictionStrategy Restart)");
  });
  reconcileUntil(node, "evict1",
                 [&] { return api::evictionAcknowledged(node.control.vm("evict1").status); });
  auto vm = node.control.vm("evict1");
  BOOST_TEST(vm.status.phase == api::kPhaseStopped);
  BOOST_TEST(ready(vm)->reason == api::kEvictedReason);
  BOOST_TEST(ready(vm)->message ==
             api::evictionAck(*api::findCondition(vm.status.conditions, api::kEvictingCondition)));
  BOOST_TEST((node.state("evict1") == DomainState::kShutOff));

  // Never started again here while the request stands, whatever the run
  // strategy (Always) says.
  for (int i = 0; i < 3; ++i) BOOST_TEST_REQUIRE(node.reconcile("evict1").ok());
  BOOST_TEST((node.state("evict1") == DomainState::kShutOff));
  BOOST_TEST(node.steps("start") == 1u);
}

// A NIC without a model gets the network plugin's default (its config's
// defaultModel); a model the spec names is kept.
BOOST_AUTO_TEST_CASE(a_nic_without_a_model_gets_the_network_plugins_default) {
  TestNode node;
  node.networkConfig = R"({"defaultModel":"e1000"})";
  node.start();
  node.control.put(
      makeVm("apiVersion: vmhost.io/v1\nkind: VirtualMachine\nmetadata: {name: nic1}\nspec:\n"
             "  memory: 64Mi\n  interfaces: [{name: eth0, network: default},\n"
             "               {name: eth1, network: default, model: virtio}]\n"));
  BOOST_TEST_REQUIRE(node.reconcile("nic1").ok());
  auto xml = node.domain("nic1")->xml(true);
  BOOST_TEST_REQUIRE(xml.ok());
  const std::string& x = xml.value();
  auto first = x.find("<model type='e1000'/>");
  auto second = x.find("<model type='virtio'/>");
  BOOST_TEST(first != std::string::npos, x);
  BOOST_TEST(second != std::string::npos, x);
  BOOST_TEST(first < second, x);
}
