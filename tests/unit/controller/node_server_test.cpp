// The node server's session handling (controller/node_server.h), in one
// process: a real SqliteStore, the real NodeServer on a loopback port, and
// the node's real RpcControlPlane as the client; a raw Cap'n Proto client
// plays a node that speaks out of turn, and a fake EventSink records what
// the server forwards. Covers the join (token, registration, the VMs
// pushed), changes pushed as upsert / unbound / deleted, status reports
// (only for the node's own VMs, only the node-owned fields), heartbeats
// (NotReady after the timeout, Ready again), events (the node's, with the
// source set by the server), and a returning node replacing its silent
// session.
#define BOOST_TEST_MODULE controller_node_server
#include <boost/test/unit_test.hpp>

#include "api/conditions.h"
#include "api/event_recorder.h"
#include "api/objects.h"
#include "controller/node_server.h"
#include "node/agent/rpc_control_plane.h"
#include "rpc/cluster.capnp.h"
#include "store/sqlite/sqlite_store.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

using namespace vmhost;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string kToken = "0123456789abcdef-token";

class RecordingSink final : public api::EventSink {
 public:
  void record(api::EventRecord event) override {
    std::lock_guard lock(mu_);
    records_.push_back(std::move(event));
  }
  std::vector<api::EventRecord> records() {
    std::lock_guard lock(mu_);
    return records_;
  }

 private:
  std::mutex mu_;
  std::vector<api::EventRecord> records_;
};

struct Fixture {
  fs::path dir;
  std::unique_ptr<store::SqliteStore> store;
  metrics::Registry metrics;
  RecordingSink events;
  std::unique_ptr<controller::NodeServer> server;
  uint16_t port = 0;

  explicit Fixture(std::chrono::seconds heartbeatTimeout = std::chrono::seconds(40)) {
    std::string tmpl = (fs::temp_directory_path() / "vmhost-node-server-test-XXXXXX").string();
    BOOST_TEST_REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    dir = tmpl;
    store::SqliteStoreOptions o;
    o.syncEveryCommit = false;
    auto s = store::SqliteStore::open(dir.string(), o);
    BOOST_TEST_REQUIRE(s.ok());
    store = std::move(s.value());
    createVm("mine", "n1");
    createVm("theirs", "n2");
    createVm("unbound", "");
    controller::NodeServerOptions options;
    options.listenAddress = "127.0.0.1:0";
    options.joinToken = kToken;
    options.heartbeatTimeout = heartbeatTimeout;
    options.events = &events;
    server = std::make_unique<controller::NodeServer>(*store, metrics, options);
    auto p = server->start();
    BOOST_TEST_REQUIRE(p.ok(), (p.ok() ? "" : p.error().message));
    port = p.value();
  }
  ~Fixture() {
    server.reset();
    store.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port); }

  void createVm(const std::string& name, const std::string& node) {
    api::VirtualMachine vm;
    vm.metadata.ns = "default";
    vm.metadata.name = name;
    vm.metadata.uid = "uid-" + name;
    vm.metadata.generation = 1;
    vm.metadata.creationTimestamp = api::nowRfc3339();
    vm.spec.memory = api::parseQuantity("64Mi").value();
    vm.status.phase = node.empty() ? "Pending" : "Scheduled";
    vm.status.nodeName = node;
    BOOST_TEST_REQUIRE(
        store->create(api::virtualMachineKey("default", name), api::storeValue(vm)).ok());
  }

  api::VirtualMachine getVm(const std::string& name) {
    auto o = store->get(api::virtualMachineKey("default", name));
    BOOST_TEST_REQUIRE(o.ok());
    return api::decodeStoredVirtualMachine(o.value()).value();
  }

  void setNode(const std::string& name, const std::string& node) {
    auto r =
        api::updateVirtualMachineStatus(*store, "default", name, [&](api::VirtualMachineStatus& s) {
          s.nodeName = node;
          return true;
        });
    BOOST_TEST_REQUIRE(r.ok());
  }

  std::string readiness(const std::string& node) {
    auto o = store->get(api::nodeKey(node));
    if (!o.ok()) return "<absent>";
    auto n = api::decodeStoredNode(o.value());
    const api::Condition* c = api::findCondition(n.value().status.conditions, "Ready");
    return c == nullptr ? "<none>" : c->status;
  }
};

std::unique_ptr<node::RpcControlPlane> client(const Fixture& f, const std::string& name,
                                              const std::string& token = kToken) {
  node::RpcControlPlaneOptions o;
  o.controllerAddress = f.address();
  o.joinToken = token;
  o.nodeName = name;
  return std::make_unique<node::RpcControlPlane>(o);
}

api::Node nodeObject(const std::string& name) {
  api::Node n;
  n.metadata.name = name;
  api::setCondition(n.status.conditions, "Ready", "True", "NodeAgentReady", "test");
  return n;
}

// Events until `pred` holds or 5 s pass.
template <typename Pred>
bool waitFor(Pred pred, std::chrono::milliseconds timeout = 5000ms) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

// Takes what the feed has now (bounded).
std::vector<node::VmEvent> drain(node::VmFeed& feed) {
  std::vector<node::VmEvent> out;
  for (int i = 0; i < 1000; ++i) {
    auto e = feed.tryNext();
    if (!e) break;
    out.push_back(std::move(*e));
  }
  return out;
}

// A node that speaks out of turn: joins as `name` and calls the session
// directly. Returns the exception text of `call` ("" if it succeeded).
template <typename Call>
std::string rawSession(const Fixture& f, const std::string& name, Call call) {
  class Events final : public rpc::NodeEvents::Server {
   protected:
    kj::Promise<void> vmsChanged(VmsChangedContext) override { return kj::READY_NOW; }
  };
  auto io = kj::setupAsyncIo();
  auto addr = io.provider->getNetwork().parseAddress(f.address()).wait(io.waitScope);
  auto stream = addr->connect().wait(io.waitScope);
  capnp::TwoPartyVatNetwork network(*stream, capnp::rpc::twoparty::Side::CLIENT);
  auto rpc = capnp::makeRpcClient(network);
  capnp::MallocMessageBuilder vatMessage;
  auto vat = vatMessage.initRoot<capnp::rpc::twoparty::VatId>();
  vat.setSide(capnp::rpc::twoparty::Side::SERVER);
  auto cluster = rpc.bootstrap(vat).castAs<rpc::Cluster>();
  auto req = cluster.joinRequest();
  auto r = req.initRequest();
  r.setProtocolVersion(rpc::PROTOCOL_VERSION);
  r.setToken(kToken);
  r.setNodeName(name);
  std::string node = api::storeValue(nodeObject(name));
  r.setNode(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(node.data()), node.size()));
  req.setEvents(kj::heap<Events>());
  auto session = req.send().wait(io.waitScope).getSession();
  try {
    call(session).wait(io.waitScope);
    return "";
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  }
}

capnp::Data::Reader bytes(const std::string& s) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_join_registers_the_node_and_pushes_only_its_vms) {
  Fixture f;
  auto c = client(f, "n1");
  BOOST_TEST_REQUIRE(c->registerNode(nodeObject("n1")).ok());
  BOOST_TEST(f.readiness("n1") == "True");
  auto snap = c->listAndWatch();
  BOOST_TEST_REQUIRE(snap.ok());
  BOOST_TEST_REQUIRE(snap.value().vms.size() == 1u);
  BOOST_TEST(snap.value().vms[0].metadata.name == "mine");
  auto got = c->getVm("default", "theirs");
  BOOST_TEST_REQUIRE(got.ok());
  BOOST_TEST(!got.value().has_value());
}

BOOST_AUTO_TEST_CASE(a_wrong_token_is_refused_and_registers_nothing) {
  Fixture f;
  auto c = client(f, "n1", "not-the-token-at-all");
  auto s = c->registerNode(nodeObject("n1"));
  BOOST_TEST_REQUIRE(!s.ok());
  BOOST_TEST(s.error().message.find("wrong join token") != std::string::npos, s.error().message);
  BOOST_TEST(f.readiness("n1") == "<absent>");
}

BOOST_AUTO_TEST_CASE(changes_are_pushed_as_upserts_unbinds_and_deletes) {
  Fixture f;
  auto c = client(f, "n1");
  BOOST_TEST_REQUIRE(c->registerNode(nodeObject("n1")).ok());
  auto snap = c->listAndWatch();
  BOOST_TEST_REQUIRE(snap.ok());
  auto& feed = *snap.value().feed;

  f.setNode("unbound", "n1");  // bound here: an upsert
  std::vector<node::VmEvent> seen;
  BOOST_TEST(waitFor([&] {
    for (auto& e : drain(feed)) seen.push_back(std::move(e));
    return !seen.empty();
  }));
  BOOST_TEST_REQUIRE(seen.size() == 1u);
  BOOST_TEST((seen[0].type == node::VmEvent::Type::kUpsert));
  BOOST_TEST(seen[0].vm.metadata.name == "unbound");

  f.setNode("unbound", "n2");  // moved away: gone from here, but not deleted
  seen.clear();
  BOOST_TEST(waitFor([&] {
    for (auto& e : drain(feed)) seen.push_back(std::move(e));
    return !seen.empty();
  }));
  BOOST_TEST_REQUIRE(seen.size() == 1u);
  BOOST_TEST((seen[0].type == node::VmEvent::Type::kDeleted));
  BOOST_TEST(!c->confirmedDeleted("default", "unbound"));  // its disks stay

  auto cur = f.store->get(api::virtualMachineKey("default", "mine"));
  BOOST_TEST_REQUIRE(f.store->remove(cur.value().key, 0).ok());
  seen.clear();
  BOOST_TEST(waitFor([&] {
    for (auto& e : drain(feed)) seen.push_back(std::move(e));
    return !seen.empty();
  }));
  BOOST_TEST_REQUIRE(seen.size() == 1u);
  BOOST_TEST((seen[0].type == node::VmEvent::Type::kDeleted));
  BOOST_TEST(c->confirmedDeleted("default", "mine"));  // deleted: its data may go
}

BOOST_AUTO_TEST_CASE(status_reports_change_the_node_owned_part_of_its_own_vms_only) {
  Fixture f;
  auto c = client(f, "n1");
  BOOST_TEST_REQUIRE(c->registerNode(nodeObject("n1")).ok());
  BOOST_TEST_REQUIRE(c->listAndWatch().ok());
  auto s = c->updateVmStatus("default", "mine", [](api::VirtualMachineStatus& st) {
    st.phase = "Running";
    st.nodeName = "n2";  // not the node's to change
    api::setCondition(st.conditions, "Ready", "True", "DomainRunning", "running");
    api::setCondition(st.conditions, "Scheduled", "False", "Forged", "the node may not say");
    return true;
  });
  BOOST_TEST_REQUIRE(s.ok(), (s.ok() ? "" : s.error().message));
  auto vm = f.getVm("mine");
  BOOST_TEST(vm.status.phase == "Running");
  BOOST_TEST(vm.status.nodeName == "n1");
  BOOST_TEST(api::findCondition(vm.status.conditions, "Ready")->status == "True");
  BOOST_TEST(api::findCondition(vm.status.conditions, "Scheduled") == nullptr);

  // Another node's VM, reported anyway: refused, nothing written.
  api::VirtualMachine theirs = f.getVm("theirs");
  theirs.status.phase = "Failed";
  std::string json = api::storeValue(theirs);
  std::string refused = rawSession(f, "n3", [&](rpc::NodeSession::Client& session) {
    auto req = session.reportStatusRequest();
    req.setVm(bytes(json));
    return req.send().ignoreResult();
  });
  BOOST_TEST(refused.find("not bound to this node") != std::string::npos, refused);
  BOOST_TEST(f.getVm("theirs").status.phase == "Scheduled");
}

BOOST_AUTO_TEST_CASE(a_silent_node_goes_not_ready_and_comes_back_with_a_heartbeat) {
  Fixture f(std::chrono::seconds(2));
  auto c = client(f, "n1");
  BOOST_TEST_REQUIRE(c->registerNode(nodeObject("n1")).ok());
  BOOST_TEST(f.readiness("n1") == "True");
  BOOST_TEST(waitFor([&] { return f.readiness("n1") == "Unknown"; }, 6000ms));
  BOOST_TEST_REQUIRE(c->heartbeat().ok());
  BOOST_TEST(waitFor([&] { return f.readiness("n1") == "True"; }));
}

BOOST_AUTO_TEST_CASE(events_of_its_own_vms_are_forwarded_with_the_source_set_by_the_server) {
  Fixture f;
  auto c = client(f, "n1");
  BOOST_TEST_REQUIRE(c->registerNode(nodeObject("n1")).ok());
  BOOST_TEST_REQUIRE(c->listAndWatch().ok());
  api::EventRecord record = api::vmEvent(f.getVm("mine"), api::kEventTypeNormal, "Started",
                                         "the domain is running", {"forged", "elsewhere"});
  c->recordEvent(record);
  BOOST_TEST_REQUIRE(waitFor([&] { return f.events.records().size() == 1u; }));
  auto got = f.events.records()[0];
  BOOST_TEST(got.reason == "Started");
  BOOST_TEST(got.object.name == "mine");
  BOOST_TEST(got.object.uid == "uid-mine");
  BOOST_TEST(got.source.component == "vmhost-node");
  BOOST_TEST(got.source.host == "n1");

  // About another node's VM: refused, not forwarded.
  api::Event e;
  e.involvedObject = api::referenceTo(f.getVm("theirs"));
  e.reason = "Started";
  e.message = "lies";
  std::string json = api::encode(e).dump();
  std::string refused = rawSession(f, "n3", [&](rpc::NodeSession::Client& session) {
    auto req = session.recordEventRequest();
    req.setEvent(bytes(json));
    return req.send().ignoreResult();
  });
  BOOST_TEST(refused.find("not about a VM bound to this node") != std::string::npos, refused);
  BOOST_TEST(f.events.records().size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_live_session_is_not_taken_over_a_silent_one_is) {
  Fixture f(std::chrono::seconds(2));
  auto first = client(f, "n1");
  BOOST_TEST_REQUIRE(first->registerNode(nodeObject("n1")).ok());
  // A second node claiming the same name while the first heartbeats: refused.
  auto second = client(f, "n1");
  auto s = second->registerNode(nodeObject("n1"));
  BOOST_TEST_REQUIRE(!s.ok());
  BOOST_TEST(s.error().message.find("already connected") != std::string::npos, s.error().message);
  second.reset();
  // Silent past the timeout (a half-open connection, say): a new session
  // for the name replaces it.
  std::this_thread::sleep_for(2500ms);
  auto third = client(f, "n1");
  BOOST_TEST_REQUIRE(third->registerNode(nodeObject("n1")).ok());
  BOOST_TEST_REQUIRE(third->listAndWatch().ok());
  auto mine = third->getVm("default", "mine");
  BOOST_TEST_REQUIRE(mine.ok());
  BOOST_TEST(mine.value().has_value());
}
