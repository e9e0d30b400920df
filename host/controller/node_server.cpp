#include "controller/node_server.h"

#include "api/conditions.h"
#include "api/events.h"
#include "api/migration.h"
#include "api/objects.h"
#include "common/net/event_loop_thread.h"
#include "common/net/tls.h"
#include "common/secret.h"
#include "common/waker.h"
#include "controller/eviction.h"
#include "rpc/cluster.capnp.h"

#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.h>
#include <kj/async-io.h>
#include <kj/compat/tls.h>
#include <kj/debug.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <atomic>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

namespace vmhost::controller {
namespace {

using Clock = std::chrono::steady_clock;
using VmKey = std::pair<std::string, std::string>;

void logLine(const std::string& line) { std::fprintf(stderr, "controller: %s\n", line.c_str()); }

bool validNodeName(const std::string& name) {
  static const std::regex kName("[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?");
  return std::regex_match(name, kName);
}

std::string text(capnp::Data::Reader d) {
  return std::string(reinterpret_cast<const char*>(d.begin()), d.size());
}

capnp::ReaderOptions readerOptions() {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = NodeServer::kMaxMessageWords;
  o.nestingLimit = 64;
  return o;
}

// One joined node, as the loop thread sees it.
struct NodeConn {
  std::string name;
  std::string peer;
  rpc::NodeEvents::Client events;
  std::deque<std::pair<rpc::VmEvent::Type, std::string>> pending;
  bool inFlight = false;
  bool closed = false;
  NodeConn(std::string n, std::string p, rpc::NodeEvents::Client e)
      : name(std::move(n)), peer(std::move(p)), events(kj::mv(e)) {}
};

}  // namespace

struct NodeServer::Impl {
  Impl(store::Store& s, metrics::Registry& m, NodeServerOptions o)
      : store(s), metrics(m), options(std::move(o)) {}

  store::Store& store;
  metrics::Registry& metrics;
  NodeServerOptions options;
  std::atomic<uint16_t> port{0};

  // ---- loop-thread state
  std::map<std::string, std::shared_ptr<NodeConn>> conns;
  // Where each VM goes: the node it is bound to and, while its
  // status.migration names one, the migration's target.
  struct Placed {
    std::string node;
    std::string target;  // empty, or != node
    std::string json;    // the stored VM
    std::string source;  // the last migration's source (it may still speak of the VM)
    bool on(const std::string& n) const { return !n.empty() && (n == node || n == target); }
  };
  std::map<VmKey, Placed> vms;
  std::map<std::string, Clock::time_point> lastSeen;
  std::set<std::string> notReady;
  std::unique_ptr<store::Watch> watch;
  Waker waker;
  kj::TaskSet* tasks = nullptr;

  // ---- pushing VMs to nodes
  void enqueue(const std::string& node, rpc::VmEvent::Type type, const std::string& json) {
    auto it = conns.find(node);
    if (it == conns.end() || it->second->closed) return;  // sent in full at its next join
    it->second->pending.emplace_back(type, json);
  }

  void flush(const std::shared_ptr<NodeConn>& conn) {
    if (conn->inFlight || conn->closed || conn->pending.empty()) return;
    auto req = conn->events.vmsChangedRequest();
    size_t n = std::min<size_t>(conn->pending.size(), 512);
    auto list = req.initEvents(static_cast<unsigned>(n));
    for (size_t i = 0; i < n; ++i) {
      auto& [type, json] = conn->pending.front();
      list[i].setType(type);
      if (!json.empty()) {
        list[i].setObject(
            capnp::Data::Reader(reinterpret_cast<const kj::byte*>(json.data()), json.size()));
      }
      conn->pending.pop_front();
    }
    conn->inFlight = true;
    tasks->add(req.send().then(
        [this, conn](auto&&) {
          conn->inFlight = false;
          flush(conn);
        },
        [conn](kj::Exception&& e) {
          // The node went away; its session's destructor unregisters it.
          conn->closed = true;
          logLine("node " + conn->name +
                  ": pushing VMs failed: " + std::string(e.getDescription().cStr()));
        }));
  }

  void flushAll() {
    for (auto& [name, conn] : conns) flush(conn);
  }

  static Placed placed(const api::VirtualMachine& vm, const std::string& json) {
    Placed p{vm.status.nodeName, "", json, ""};
    if (vm.status.migration && vm.status.migration->targetNode != p.node) {
      p.target = vm.status.migration->targetNode;
    }
    if (vm.status.migration) p.source = vm.status.migration->sourceNode;
    return p;
  }

  // The VM's node binding changed (or the VM did): tell the nodes concerned.
  void apply(const VmKey& key, const Placed& now, bool deleted) {
    auto it = vms.find(key);
    if (it != vms.end()) {
      for (const std::string* old : {&it->second.node, &it->second.target}) {
        if (old->empty() || (!deleted && now.on(*old))) continue;
        enqueue(*old, deleted ? rpc::VmEvent::Type::DELETED : rpc::VmEvent::Type::UNBOUND,
                now.json);
      }
    }
    if (deleted) {
      if (it != vms.end()) vms.erase(it);
      return;
    }
    if (!now.node.empty()) enqueue(now.node, rpc::VmEvent::Type::UPSERT, now.json);
    if (!now.target.empty()) enqueue(now.target, rpc::VmEvent::Type::UPSERT, now.json);
    vms[key] = now;
  }

  Status relist() {
    auto list = store.list(api::kVirtualMachinesResource, "");
    if (!list.ok()) return list.error();
    std::map<VmKey, Placed> fresh;
    for (const auto& o : list.value().items) {
      auto vm = api::decodeStoredVirtualMachine(o);
      if (!vm.ok()) continue;
      fresh[{o.key.ns, o.key.name}] = placed(vm.value(), o.value);
    }
    // Nodes are told what changed while the watch was down.
    for (const auto& [key, v] : vms) {
      auto f = fresh.find(key);
      for (const std::string* old : {&v.node, &v.target}) {
        if (old->empty()) continue;
        if (f == fresh.end()) {
          enqueue(*old, rpc::VmEvent::Type::DELETED, v.json);
        } else if (!f->second.on(*old)) {
          enqueue(*old, rpc::VmEvent::Type::UNBOUND, f->second.json);
        }
      }
    }
    for (const auto& [key, v] : fresh) {
      if (!v.node.empty()) enqueue(v.node, rpc::VmEvent::Type::UPSERT, v.json);
      if (!v.target.empty()) enqueue(v.target, rpc::VmEvent::Type::UPSERT, v.json);
    }
    vms = std::move(fresh);
    if (watch) watch->setNotify(nullptr);
    waker.reset();
    auto w = store.watch(api::kVirtualMachinesResource, "", list.value().revision);
    if (!w.ok()) return w.error();
    watch = std::move(w.value());
    watch->setNotify([this] { waker.notify(); });
    return Ok{};
  }

  kj::Promise<void> watchLoop(kj::Timer& timer) {
    return waker.wait().then([this, &timer]() { return drainWatch(timer); });
  }

  // Applies what the store watch has queued, in bounded batches.
  kj::Promise<void> drainWatch(kj::Timer& timer) {
    bool broken = false, more = false;
    for (int n = 0;; ++n) {
      if (n == 4096) {
        more = true;
        break;
      }
      auto event = watch->tryNext();
      if (!event) break;
      if (event->type == store::WatchEventType::kError) {
        broken = true;
        break;
      }
      VmKey key{event->object->key.ns, event->object->key.name};
      bool deleted = event->type == store::WatchEventType::kDeleted;
      Placed now{"", "", event->object->value, ""};
      if (!deleted) {
        auto vm = api::decodeStoredVirtualMachine(*event->object);
        if (!vm.ok()) continue;
        now = placed(vm.value(), event->object->value);
      }
      apply(key, now, deleted);
    }
    if (broken) {
      if (auto s = relist(); !s.ok()) {
        logLine("re-listing VMs: " + s.error().message);
        return timer.afterDelay(1 * kj::SECONDS).then([this, &timer]() {
          waker.notify();
          return drainWatch(timer);
        });
      }
      more = true;
    }
    flushAll();
    if (more) return kj::evalLater([this, &timer]() { return drainWatch(timer); });
    return watchLoop(timer);
  }

  // Ready -> NotReady after the timeout without a heartbeat.
  kj::Promise<void> heartbeatLoop(kj::Timer& timer) {
    return timer.afterDelay(1 * kj::SECONDS).then([this, &timer]() {
      auto now = Clock::now();
      for (const auto& [name, seen] : lastSeen) {
        if (notReady.count(name) || now - seen < options.heartbeatTimeout) continue;
        auto secs = std::chrono::duration_cast<std::chrono::seconds>(now - seen).count();
        std::string message = "no heartbeat from the node for " + std::to_string(secs) +
                              " s (timeout " + std::to_string(options.heartbeatTimeout.count()) +
                              " s)";
        auto r = api::updateNodeStatus(store, name, [&](api::NodeStatus& s) {
          return api::setCondition(s.conditions, "Ready", "Unknown", "NodeStatusUnknown", message);
        });
        if (r.ok() || r.error().code == VMHOST_ERR_NOT_FOUND) {
          notReady.insert(name);
          logLine("node " + name + " is NotReady: " + message);
        }
      }
      return heartbeatLoop(timer);
    });
  }

  void markAlive(const std::string& name, const char* reason, const std::string& message) {
    lastSeen[name] = Clock::now();
    if (!notReady.count(name)) return;
    auto r = api::updateNodeStatus(store, name, [&](api::NodeStatus& s) {
      return api::setCondition(s.conditions, "Ready", "True", reason, message);
    });
    if (r.ok()) {
      notReady.erase(name);
      logLine("node " + name + " is Ready again");
    }
  }

  void run(net::LoopContext& ctx);

  // Last, so that it stops (and run() returns) before what run() uses goes.
  net::EventLoopThread loop;
};

namespace {

class SessionImpl final : public rpc::NodeSession::Server {
 public:
  SessionImpl(NodeServer::Impl& impl, std::shared_ptr<NodeConn> conn)
      : impl_(impl), conn_(std::move(conn)) {}
  ~SessionImpl() {
    conn_->closed = true;
    auto it = impl_.conns.find(conn_->name);
    if (it != impl_.conns.end() && it->second == conn_) {
      impl_.conns.erase(it);
      logLine("node " + conn_->name + " disconnected (" + conn_->peer + ")");
    }
  }

 protected:
  kj::Promise<void> heartbeat(HeartbeatContext) override {
    impl_.markAlive(conn_->name, "NodeAgentReady", "heartbeats resumed");
    return kj::READY_NOW;
  }

  kj::Promise<void> reportStatus(ReportStatusContext context) override {
    auto data = context.getParams().getVm();
    KJ_REQUIRE(data.size() <= NodeServer::kMaxObjectBytes, "status report too large");
    store::StoredObject object;
    object.key = api::virtualMachineKey("report", conn_->name);
    object.value = text(data);
    auto vm = api::decodeStoredVirtualMachine(object);
    KJ_REQUIRE(vm.ok(), "undecodable VM in a status report", vm.error().message);
    const auto& reported = vm.value();
    bool foreign = false;
    auto r = api::updateVirtualMachineStatus(
        impl_.store, reported.metadata.ns, reported.metadata.name,
        [&](api::VirtualMachineStatus& s) {
          if (s.nodeName != conn_->name) {
            foreign = true;
            return false;
          }
          s.phase = reported.status.phase;
          s.interfaces = reported.status.interfaces;
          s.observedGeneration = reported.status.observedGeneration;
          // The node owns every condition but the scheduler's and the
          // eviction controller's (a node's stale copy must not revive a
          // cancelled eviction request).
          for (const auto& c : reported.status.conditions) {
            if (c.type == "Scheduled" || c.type == api::kEvictingCondition) continue;
            api::setCondition(s.conditions, c.type, c.status, c.reason, c.message);
          }
          return true;
        });
    if (foreign) {
      logLine("node " + conn_->name + ": refused a status report for VM " + reported.metadata.ns +
              "/" + reported.metadata.name + " (not bound to it)");
      KJ_FAIL_REQUIRE("the VM is not bound to this node", reported.metadata.ns,
                      reported.metadata.name);
    }
    if (!r.ok() && r.error().code != VMHOST_ERR_NOT_FOUND) {
      KJ_FAIL_REQUIRE("status write failed", r.error().message);
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> reportMigration(ReportMigrationContext context) override {
    auto data = context.getParams().getVm();
    KJ_REQUIRE(data.size() <= NodeServer::kMaxObjectBytes, "migration report too large");
    store::StoredObject object;
    object.key = api::virtualMachineKey("report", conn_->name);
    object.value = text(data);
    auto vm = api::decodeStoredVirtualMachine(object);
    KJ_REQUIRE(vm.ok(), "undecodable VM in a migration report", vm.error().message);
    const auto& reported = vm.value();
    KJ_REQUIRE(reported.status.migration.has_value(),
               "a migration report without status.migration");
    std::string refusal;
    auto r = api::updateVirtualMachineStatus(
        impl_.store, reported.metadata.ns, reported.metadata.name,
        [&](api::VirtualMachineStatus& s) {
          auto merged = api::applyMigrationReport(s, conn_->name, *reported.status.migration);
          if (!merged.ok()) {
            refusal = merged.error().message;
            return false;
          }
          return merged.value();
        });
    if (!refusal.empty()) {
      logLine("node " + conn_->name + ": vm " + reported.metadata.ns + "/" +
              reported.metadata.name + ": " + refusal);
      KJ_FAIL_REQUIRE(refusal);
    }
    if (!r.ok()) KJ_FAIL_REQUIRE("migration status write failed", r.error().message);
    return kj::READY_NOW;
  }

  kj::Promise<void> recordEvent(RecordEventContext context) override {
    auto data = context.getParams().getEvent();
    KJ_REQUIRE(data.size() <= 64 * 1024, "event too large");
    if (impl_.options.events == nullptr) return kj::READY_NOW;
    api::Json j = api::Json::parse(text(data), nullptr, false);
    auto d = api::decodeEvent(j.is_discarded() ? api::Json() : j, api::FieldValidation::kIgnore);
    KJ_REQUIRE(d.ok() && j.is_object(), "undecodable event");
    const api::ObjectReference& ref = d.value.involvedObject;
    // A node speaks only of the VMs bound to it.
    auto vm = impl_.vms.find({ref.ns, ref.name});
    if (ref.kind != api::kVirtualMachineKind || vm == impl_.vms.end() ||
        !(vm->second.on(conn_->name) || vm->second.source == conn_->name)) {
      logLine("node " + conn_->name + ": refused an event about " + ref.kind + " " + ref.ns + "/" +
              ref.name + " (not a VM bound to it)");
      KJ_FAIL_REQUIRE("the event is not about a VM bound to this node");
    }
    api::EventRecord record;
    record.object = ref;
    record.object.apiVersion = api::kApiVersion;
    record.type = d.value.type;
    record.reason = d.value.reason;
    record.message = d.value.message;
    record.source = api::EventSource{"vmhost-node", conn_->name};
    if (record.type != api::kEventTypeNormal && record.type != api::kEventTypeWarning) {
      record.type = api::kEventTypeNormal;
    }
    impl_.options.events->record(std::move(record));
    return kj::READY_NOW;
  }

  kj::Promise<void> registerNode(RegisterNodeContext context) override {
    auto node = decodeNode(context.getParams().getNode(), conn_->name);
    auto r = api::registerNode(impl_.store, node);
    KJ_REQUIRE(r.ok(), "registering the node failed", r.error().message);
    impl_.markAlive(conn_->name, "NodeAgentReady", "the node registered");
    return kj::READY_NOW;
  }

 public:
  static api::Node decodeNode(capnp::Data::Reader data, const std::string& name) {
    KJ_REQUIRE(data.size() <= NodeServer::kMaxObjectBytes, "node object too large");
    store::StoredObject object;
    object.key = api::nodeKey(name);
    object.value = text(data);
    auto node = api::decodeStoredNode(object);
    KJ_REQUIRE(node.ok(), "undecodable node object", node.error().message);
    KJ_REQUIRE(node.value().metadata.name == name, "the node object names another node",
               node.value().metadata.name, name);
    return node.value();
  }

 private:
  NodeServer::Impl& impl_;
  std::shared_ptr<NodeConn> conn_;
};

class ClusterImpl final : public rpc::Cluster::Server {
 public:
  // `certName`: the CN of the peer's TLS client certificate (mutual TLS), or
  // nullopt on a plain connection.
  ClusterImpl(NodeServer::Impl& impl, std::string peer, std::optional<std::string> certName)
      : impl_(impl), peer_(std::move(peer)), certName_(std::move(certName)) {}

 protected:
  kj::Promise<void> join(JoinContext context) override {
    auto params = context.getParams();
    auto req = params.getRequest();
    std::string name = req.getNodeName().cStr();
    auto refuse = [&](const std::string& why) -> kj::Promise<void> {
      logLine("refused a node join from " + peer_ + " (node '" + name.substr(0, 64) + "'): " + why);
      return KJ_EXCEPTION(FAILED, kj::str("join refused: ", why.c_str()));
    };
    if (req.getProtocolVersion() != rpc::PROTOCOL_VERSION) {
      return refuse("protocol version " + std::to_string(req.getProtocolVersion()) +
                    " is not supported (this controller speaks version " +
                    std::to_string(rpc::PROTOCOL_VERSION) + ")");
    }
    if (certName_) {
      // The certificate says who the node is; a name is not a claim.
      if (*certName_ != name) {
        return refuse("the client certificate is for node '" + *certName_ + "', not '" + name +
                      "'");
      }
    } else if (!sameSecret(req.getToken().cStr(), impl_.options.joinToken)) {
      return refuse("wrong join token");
    }
    if (!validNodeName(name)) return refuse("invalid node name");
    if (auto it = impl_.conns.find(name); it != impl_.conns.end() && !it->second->closed) {
      // A connection whose heartbeats stopped may be half-open (the host
      // lost power or its link): the node coming back replaces it. A live
      // one is replaced only by the certificate's owner (mutual TLS).
      auto seen = impl_.lastSeen.find(name);
      bool stale = seen == impl_.lastSeen.end() ||
                   Clock::now() - seen->second > impl_.options.heartbeatTimeout;
      if (!stale && !certName_) {
        return refuse("node " + name + " is already connected from " + it->second->peer);
      }
      logLine("node " + name + ": a new session from " + peer_ + " replaces the " +
              (stale ? "silent" : "previous") + " one from " + it->second->peer);
      it->second->closed = true;
      impl_.conns.erase(it);
    }
    api::Node node;
    try {
      node = SessionImpl::decodeNode(req.getNode(), name);
    } catch (const kj::Exception& e) {
      return refuse(e.getDescription().cStr());
    }
    auto r = api::registerNode(impl_.store, node);
    if (!r.ok()) return refuse("registering the node failed: " + r.error().message);
    auto conn = std::make_shared<NodeConn>(name, peer_, params.getEvents());
    impl_.conns[name] = conn;
    impl_.notReady.erase(name);
    impl_.lastSeen[name] = Clock::now();
    for (const auto& [key, v] : impl_.vms) {
      if (v.on(name)) conn->pending.emplace_back(rpc::VmEvent::Type::UPSERT, v.json);
    }
    conn->pending.emplace_back(rpc::VmEvent::Type::SYNCED, std::string());
    impl_.flush(conn);
    logLine("node " + name + " joined from " + peer_);
    context.getResults().setSession(kj::heap<SessionImpl>(impl_, conn));
    return kj::READY_NOW;
  }

 private:
  NodeServer::Impl& impl_;
  std::string peer_;
  std::optional<std::string> certName_;
};

// One accepted connection: its RPC system, alive until the peer leaves.
struct Connection {
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  Connection(kj::Own<kj::AsyncIoStream> s, capnp::Capability::Client bootstrap)
      : stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER, readerOptions()),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
};

class ErrorLogger final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    logLine(std::string("task failed: ") + e.getDescription().cStr());
  }
};

std::string peerName(kj::PeerIdentity* identity) {
  if (identity == nullptr) return "(unknown peer)";
  std::string s = identity->toString().cStr();
  return s.empty() ? "(unknown peer)" : s;
}

void serve(NodeServer::Impl& impl, kj::TaskSet& tasks, kj::Own<kj::AsyncIoStream> stream,
           std::string peer, std::optional<std::string> certName) {
  auto conn =
      kj::heap<Connection>(kj::mv(stream), kj::heap<ClusterImpl>(impl, peer, kj::mv(certName)));
  auto done = conn->network.onDisconnect();
  tasks.add(done.attach(kj::mv(conn)));
}

kj::Promise<void> acceptLoop(NodeServer::Impl& impl, kj::ConnectionReceiver& listener,
                             kj::TaskSet& tasks, kj::TlsContext* tls) {
  return listener.acceptAuthenticated().then(
      [&impl, &listener, &tasks, tls](kj::AuthenticatedStream&& accepted) {
        std::string peer = peerName(accepted.peerIdentity.get());
        if (tls == nullptr) {
          serve(impl, tasks, kj::mv(accepted.stream), peer, std::nullopt);
        } else {
          // The handshake runs beside the accept loop: a slow or hostile
          // peer does not hold up the others.
          tasks.add(tls->wrapServer(kj::mv(accepted))
                        .then(
                            [&impl, &tasks, peer](kj::AuthenticatedStream&& secured) {
                              auto& id = kj::downcast<kj::TlsPeerIdentity>(*secured.peerIdentity);
                              if (!id.hasCertificate()) {
                                logLine("refused a connection from " + peer +
                                        ": no client certificate");
                                return;
                              }
                              serve(impl, tasks, kj::mv(secured.stream), peer,
                                    std::string(id.getCommonName().cStr()));
                            },
                            [peer](kj::Exception&& e) {
                              logLine("refused a connection from " + peer +
                                      ": TLS handshake failed: " + e.getDescription().cStr());
                            }));
        }
        return acceptLoop(impl, listener, tasks, tls);
      });
}

}  // namespace

void NodeServer::Impl::run(net::LoopContext& ctx) {
  ErrorLogger errors;
  kj::TaskSet taskSet(errors);
  tasks = &taskSet;
  KJ_DEFER(tasks = nullptr);
  auto& timer = ctx.timer();
  if (auto s = relist(); !s.ok()) return ctx.failed(s.error());
  // Every known node gets a full timeout from now: a restarted controller
  // does not declare the cluster dead.
  if (auto nodes = store.list(api::kNodesResource, ""); nodes.ok()) {
    for (const auto& o : nodes.value().items) lastSeen[o.key.name] = Clock::now();
  }
  auto addr =
      ctx.io.provider->getNetwork().parseAddress(options.listenAddress).wait(ctx.io.waitScope);
  auto listener = addr->listen();
  std::unique_ptr<net::Tls> tls;
  if (!options.certPem.empty()) {
    auto made = net::serverTls({options.caPem, options.certPem, options.keyPem},
                               net::ClientCertificates::kRequired, timer,
                               "the node server on " + options.listenAddress);
    if (!made.ok()) return ctx.failed(made.error());
    tls = std::move(made.value());
  }
  port = static_cast<uint16_t>(listener->getPort());
  ctx.ready(port.load());
  acceptLoop(*this, *listener, taskSet, tls ? tls->context.get() : nullptr)
      .exclusiveJoin(watchLoop(timer))
      .exclusiveJoin(heartbeatLoop(timer))
      .exclusiveJoin(ctx.stopped())
      .wait(ctx.io.waitScope);
  if (watch) watch->setNotify(nullptr);
  waker.reset();
  conns.clear();
}

NodeServer::NodeServer(store::Store& store, metrics::Registry& metrics, NodeServerOptions options)
    : impl_(std::make_unique<Impl>(store, metrics, std::move(options))) {}

NodeServer::~NodeServer() { stop(); }

Result<uint16_t> NodeServer::start() {
  if (impl_->options.joinToken.size() < 16) {
    return Error{VMHOST_ERR_INVALID_ARGUMENT,
                 "the node server needs a join token of 16+ characters (cluster.joinToken)", false};
  }
  return impl_->loop.start("nodes on " + impl_->options.listenAddress,
                           [this](net::LoopContext& ctx) { impl_->run(ctx); });
}

void NodeServer::stop() { impl_->loop.stop(); }

}  // namespace vmhost::controller
