#include "node/agent/rpc_control_plane.h"

#include "api/events.h"
#include "api/migration.h"
#include "api/objects.h"
#include "common/net/event_loop_thread.h"
#include "common/net/tls.h"
#include "rpc/cluster.capnp.h"

#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.h>
#include <kj/async-io.h>
#include <kj/compat/tls.h>
#include <kj/debug.h>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace vmhost::node {
namespace {

using VmKey = std::pair<std::string, std::string>;
constexpr size_t kMaxMessageWords = 8u * 1024 * 1024 / 8;

capnp::ReaderOptions readerOptions() {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = kMaxMessageWords;
  o.nestingLimit = 64;
  return o;
}

struct FeedState {
  std::mutex mu;
  std::deque<VmEvent> events;
  std::function<void()> notify;
};

class Feed final : public VmFeed {
 public:
  explicit Feed(std::shared_ptr<FeedState> state) : state_(std::move(state)) {}
  std::optional<VmEvent> tryNext() override {
    std::lock_guard lock(state_->mu);
    if (state_->events.empty()) return std::nullopt;
    VmEvent e = std::move(state_->events.front());
    state_->events.pop_front();
    return e;
  }
  void setNotify(std::function<void()> notify) override {
    std::function<void()> now;
    {
      std::lock_guard lock(state_->mu);
      state_->notify = std::move(notify);
      if (!state_->events.empty()) now = state_->notify;
    }
    if (now) now();
  }

 private:
  std::shared_ptr<FeedState> state_;
};

void push(const std::shared_ptr<FeedState>& feed, VmEvent event) {
  if (!feed) return;
  std::function<void()> notify;
  {
    std::lock_guard lock(feed->mu);
    feed->events.push_back(std::move(event));
    notify = feed->notify;
  }
  if (notify) notify();
}

}  // namespace

struct RpcControlPlane::Impl {
  explicit Impl(RpcControlPlaneOptions o) : options(std::move(o)) {
    if (options.protocolVersion == 0) options.protocolVersion = rpc::PROTOCOL_VERSION;
  }

  RpcControlPlaneOptions options;

  // Shared with the agent's thread.
  std::mutex mu;
  std::condition_variable cv;
  std::map<VmKey, api::VirtualMachine> cache;     // the VMs bound to this node
  std::map<VmKey, api::VirtualMachine> incoming;  // a (re)join's list until `synced`
  std::set<VmKey> deleted;  // `deleted` events (not `unbound`) since the last upsert
  bool synced = false;
  // The join's answer (the session) is in: the controller pushes the list,
  // and so SYNCED, before it answers the join, so `synced` alone does not
  // mean calls can go out yet.
  bool joined = false;
  bool stopping = false;
  std::string lastError = "not connected yet";
  std::string nodeJson;  // set by registerNode(); the join carries it
  std::shared_ptr<FeedState> feed;

  uint64_t joinAttempts = 0;  // finished join attempts, successful or not

  // Loop thread only.
  kj::Maybe<rpc::NodeSession::Client> session;
  kj::TaskSet* tasks = nullptr;  // fire-and-forget calls (events)
  kj::Timer* timer = nullptr;

  // Calls can be made and the list is complete. Under mu.
  bool ready() const { return synced && joined; }

  void log(const std::string& line) {
    std::fprintf(stderr, "node %s: %s\n", options.nodeName.c_str(), line.c_str());
  }

  void onEvents(capnp::List<rpc::VmEvent>::Reader events) {
    std::lock_guard lock(mu);
    for (auto e : events) {
      if (e.getType() == rpc::VmEvent::Type::SYNCED) {
        cache = std::move(incoming);
        incoming.clear();
        synced = true;
        cv.notify_all();
        continue;
      }
      auto data = e.getObject();
      store::StoredObject object;
      object.key = api::virtualMachineKey("controller", "push");
      object.value.assign(reinterpret_cast<const char*>(data.begin()), data.size());
      auto vm = api::decodeStoredVirtualMachine(object);
      if (!vm.ok()) {
        log("ignoring an undecodable VM from the controller: " + vm.error().message);
        continue;
      }
      VmKey key{vm.value().metadata.ns, vm.value().metadata.name};
      bool gone =
          e.getType() == rpc::VmEvent::Type::DELETED || e.getType() == rpc::VmEvent::Type::UNBOUND;
      auto& target = synced ? cache : incoming;
      if (gone) {
        target.erase(key);
        if (e.getType() == rpc::VmEvent::Type::DELETED) {
          deleted.insert(key);
        } else {
          deleted.erase(key);
        }
      } else {
        target[key] = vm.value();
        deleted.erase(key);
      }
      if (synced) {
        push(feed, VmEvent{gone ? VmEvent::Type::kDeleted : VmEvent::Type::kUpsert,
                           std::move(vm.value())});
      }
    }
  }

  void run(net::LoopContext& ctx);

  // The connection's loop. Last, so that it stops (and run() returns)
  // before the members run() uses are destroyed.
  net::EventLoopThread loop;
};

namespace {

class EventsImpl final : public rpc::NodeEvents::Server {
 public:
  explicit EventsImpl(RpcControlPlane::Impl& impl) : impl_(impl) {}

 protected:
  kj::Promise<void> vmsChanged(VmsChangedContext context) override {
    impl_.onEvents(context.getParams().getEvents());
    return kj::READY_NOW;
  }

 private:
  RpcControlPlane::Impl& impl_;
};

}  // namespace

namespace {

class LogErrors final : public kj::TaskSet::ErrorHandler {
 public:
  explicit LogErrors(RpcControlPlane::Impl& impl) : impl_(impl) {}
  void taskFailed(kj::Exception&& e) override;

 private:
  RpcControlPlane::Impl& impl_;
};

void LogErrors::taskFailed(kj::Exception&& e) {
  impl_.log(std::string("a call to the controller failed: ") + e.getDescription().cStr());
}

}  // namespace

void RpcControlPlane::Impl::run(net::LoopContext& ctx) {
  LogErrors errors(*this);
  kj::TaskSet taskSet(errors);
  tasks = &taskSet;
  KJ_DEFER(tasks = nullptr);
  auto& io = ctx.io;
  auto& timer = ctx.timer();
  this->timer = &timer;
  ctx.ready(0);
  std::unique_ptr<net::Tls> tls;
  std::string serverHost =
      options.controllerAddress.substr(0, options.controllerAddress.rfind(':'));
  if (!serverHost.empty() && serverHost.front() == '[')
    serverHost = serverHost.substr(1, serverHost.size() - 2);
  if (!options.certPem.empty()) {
    auto made = net::clientTls({options.caPem, options.certPem, options.keyPem}, "the node");
    if (made.ok()) {
      tls = std::move(made.value());
    } else {
      std::lock_guard lock(mu);
      lastError = made.error().message;
      log(lastError);
    }
  }
  auto backoff = 500 * kj::MILLISECONDS;
  for (;;) {
    std::string node;
    {
      std::lock_guard lock(mu);
      if (stopping) break;
      node = nodeJson;
    }
    if (node.empty()) {  // registerNode() has not run yet
      timer.afterDelay(100 * kj::MILLISECONDS).exclusiveJoin(ctx.stopped()).wait(io.waitScope);
      continue;
    }
    try {
      auto addr =
          io.provider->getNetwork().parseAddress(options.controllerAddress).wait(io.waitScope);
      auto stream = timer.timeoutAfter(10 * kj::SECONDS, addr->connect()).wait(io.waitScope);
      if (tls) {
        // The controller's certificate must be the cluster CA's and name
        // the address the node was given.
        stream = timer
                     .timeoutAfter(10 * kj::SECONDS,
                                   tls->context->wrapClient(kj::mv(stream), serverHost.c_str()))
                     .wait(io.waitScope);
      } else if (!options.certPem.empty()) {
        KJ_FAIL_REQUIRE("no usable TLS context; not connecting in the clear");
      }
      capnp::TwoPartyVatNetwork network(*stream, capnp::rpc::twoparty::Side::CLIENT,
                                        readerOptions());
      auto rpc = capnp::makeRpcClient(network);
      capnp::word scratch[4] = {};
      capnp::MallocMessageBuilder vatMessage(scratch);
      auto vat = vatMessage.initRoot<capnp::rpc::twoparty::VatId>();
      vat.setSide(capnp::rpc::twoparty::Side::SERVER);
      auto cluster = rpc.bootstrap(vat).castAs<rpc::Cluster>();
      auto req = cluster.joinRequest();
      auto r = req.initRequest();
      r.setProtocolVersion(options.protocolVersion);
      r.setToken(options.joinToken);
      r.setNodeName(options.nodeName);
      r.setNode(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(node.data()), node.size()));
      req.setEvents(kj::heap<EventsImpl>(*this));
      {
        std::lock_guard lock(mu);
        incoming.clear();
      }
      auto response =
          timer.timeoutAfter(kCallTimeout.count() * kj::SECONDS, req.send()).wait(io.waitScope);
      session = response.getSession();
      KJ_DEFER(session = nullptr);
      {
        std::lock_guard lock(mu);
        lastError.clear();
        joined = true;
        ++joinAttempts;
      }
      cv.notify_all();
      log("joined the controller at " + options.controllerAddress);
      backoff = 500 * kj::MILLISECONDS;
      network.onDisconnect().exclusiveJoin(ctx.stopped()).wait(io.waitScope);
      bool stop;
      {
        std::lock_guard lock(mu);
        stop = stopping;
      }
      if (!stop) log("lost the controller at " + options.controllerAddress + "; reconnecting");
    } catch (const kj::Exception& e) {
      std::string why = e.getDescription().cStr();
      // A refusal arrives as "remote exception: join refused: ..."
      auto at = why.find("join refused: ");
      if (at != std::string::npos) why = why.substr(at);
      {
        std::lock_guard lock(mu);
        lastError = "controller " + options.controllerAddress + ": " + why;
        ++joinAttempts;
      }
      cv.notify_all();
      log("cannot join the controller at " + options.controllerAddress + ": " + why);
    }
    std::shared_ptr<FeedState> f;
    {
      std::lock_guard lock(mu);
      // Until the next join's list is complete, the agent keeps the last
      // view (the guests keep running) and lists again once it is.
      synced = false;
      joined = false;
      f = feed;
      feed.reset();
      if (stopping) break;
    }
    push(f, VmEvent{VmEvent::Type::kRelist, {}});
    timer.afterDelay(backoff).exclusiveJoin(ctx.stopped()).wait(io.waitScope);
    backoff = std::min(backoff * 2, 30 * kj::SECONDS);
  }
}

RpcControlPlane::RpcControlPlane(RpcControlPlaneOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {
  auto started =
      impl_->loop.start("the connection to the controller at " + impl_->options.controllerAddress,
                        [this](net::LoopContext& ctx) { impl_->run(ctx); });
  if (!started.ok()) impl_->log(started.error().message);
}

RpcControlPlane::~RpcControlPlane() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  impl_->loop.stop();
}

namespace {

// Runs `call` on the RPC loop and waits for its promise, bounded.
template <typename Func>
Status onLoop(RpcControlPlane::Impl& impl, const char* what, Func&& call) {
  kj::Own<const kj::Executor> executor = impl.loop.executor();
  if (!executor) return Error{VMHOST_ERR_UNAVAILABLE, std::string(what) + ": stopping", true};
  try {
    executor->executeSync([&]() -> kj::Promise<void> {
      KJ_IF_MAYBE (s, impl.session) {
        return impl.timer->timeoutAfter(RpcControlPlane::kCallTimeout.count() * kj::SECONDS,
                                        call(*s));
      }
      std::string why;
      {
        std::lock_guard lock(impl.mu);
        why = impl.lastError;
      }
      return KJ_EXCEPTION(DISCONNECTED, kj::str("not connected (", why.c_str(), ")"));
    });
    return Ok{};
  } catch (const kj::Exception& e) {
    return Error{VMHOST_ERR_UNAVAILABLE, std::string(what) + ": " + e.getDescription().cStr(),
                 true};
  }
}

}  // namespace

Status RpcControlPlane::registerNode(const api::Node& node) {
  std::string json = api::storeValue(node);
  {
    std::unique_lock lock(impl_->mu);
    bool first = impl_->nodeJson.empty();
    impl_->nodeJson = json;
    if (first) {
      // The first registration is the join: wait for its outcome.
      uint64_t before = impl_->joinAttempts;
      impl_->cv.wait_for(lock, kCallTimeout, [&] {
        return impl_->ready() || impl_->stopping || impl_->joinAttempts > before;
      });
      // A join that succeeded gets its list right after; give it a moment.
      impl_->cv.wait_for(lock, kCallTimeout, [&] {
        return impl_->ready() || impl_->stopping || !impl_->lastError.empty();
      });
      if (impl_->ready()) return Ok{};
      return Error{VMHOST_ERR_UNAVAILABLE, impl_->lastError, true};
    }
  }
  return onLoop(*impl_, "registering the node", [json](rpc::NodeSession::Client& s) {
    auto req = s.registerNodeRequest();
    req.setNode(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(json.data()), json.size()));
    return req.send().ignoreResult();
  });
}

Status RpcControlPlane::heartbeat() {
  return onLoop(*impl_, "heartbeat", [](rpc::NodeSession::Client& s) {
    return s.heartbeatRequest().send().ignoreResult();
  });
}

Result<VmSnapshot> RpcControlPlane::listAndWatch() {
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait_for(lock, kCallTimeout, [&] { return impl_->ready() || impl_->stopping; });
  if (!impl_->ready()) {
    return Error{VMHOST_ERR_UNAVAILABLE, "not joined: " + impl_->lastError, true};
  }
  VmSnapshot snapshot;
  for (const auto& [key, vm] : impl_->cache) snapshot.vms.push_back(vm);
  impl_->feed = std::make_shared<FeedState>();
  snapshot.feed = std::make_unique<Feed>(impl_->feed);
  return snapshot;
}

Result<std::optional<api::VirtualMachine>> RpcControlPlane::getVm(const std::string& ns,
                                                                  const std::string& name) {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->cache.find({ns, name});
  if (it == impl_->cache.end()) return std::optional<api::VirtualMachine>{};
  return std::optional<api::VirtualMachine>(it->second);
}

bool RpcControlPlane::confirmedDeleted(const std::string& ns, const std::string& name) {
  std::lock_guard lock(impl_->mu);
  return impl_->deleted.count({ns, name}) > 0;
}

Status RpcControlPlane::updateVmStatus(
    const std::string& ns, const std::string& name,
    const std::function<bool(api::VirtualMachineStatus&)>& mutate) {
  api::VirtualMachine vm;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->cache.find({ns, name});
    if (it == impl_->cache.end()) {
      return Error{VMHOST_ERR_NOT_FOUND, "vm " + ns + "/" + name + " is not bound here", false};
    }
    vm = it->second;
  }
  if (!mutate(vm.status)) return Ok{};
  std::string json = api::storeValue(vm);
  auto s = onLoop(*impl_, "reporting VM status", [json](rpc::NodeSession::Client& session) {
    auto req = session.reportStatusRequest();
    req.setVm(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(json.data()), json.size()));
    return req.send().ignoreResult();
  });
  if (!s.ok()) return s;
  std::lock_guard lock(impl_->mu);
  auto it = impl_->cache.find({ns, name});
  if (it != impl_->cache.end() && it->second.metadata.uid == vm.metadata.uid) {
    it->second.status = vm.status;
  }
  return Ok{};
}

void RpcControlPlane::recordEvent(api::EventRecord record) {
  api::Event e;
  e.involvedObject = record.object;
  e.type = record.type;
  e.reason = record.reason;
  e.message = record.message;
  std::string json = api::encode(e).dump();
  kj::Own<const kj::Executor> executor = impl_->loop.executor();
  if (!executor) return;
  try {
    // Only hands the call to the loop: the agent never waits for it.
    executor->executeSync([&] {
      if (impl_->tasks == nullptr) return;
      KJ_IF_MAYBE (s, impl_->session) {
        auto req = s->recordEventRequest();
        req.setEvent(
            capnp::Data::Reader(reinterpret_cast<const kj::byte*>(json.data()), json.size()));
        impl_->tasks->add(req.send().ignoreResult());
      }
    });
  } catch (const kj::Exception&) {
    // The loop is stopping: the event is dropped, as events are while not joined.
  }
}

Status RpcControlPlane::reportMigration(const std::string& ns, const std::string& name,
                                        const api::MigrationState& report) {
  api::VirtualMachine vm;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->cache.find({ns, name});
    if (it == impl_->cache.end()) {
      return Error{VMHOST_ERR_NOT_FOUND, "vm " + ns + "/" + name + " is not known here", false};
    }
    vm = it->second;
  }
  vm.status.migration = report;
  std::string json = api::storeValue(vm);
  auto s = onLoop(*impl_, "reporting a migration", [json](rpc::NodeSession::Client& session) {
    auto req = session.reportMigrationRequest();
    req.setVm(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(json.data()), json.size()));
    return req.send().ignoreResult();
  });
  if (!s.ok()) {
    // The controller's refusal (api::applyMigrationReport) is an answer, not
    // a network failure: asking again gets the same.
    if (s.error().message.find("migration report refused") != std::string::npos) {
      return Error{VMHOST_ERR_FAILED_PRECONDITION, s.error().message, false};
    }
    return s;
  }
  std::lock_guard lock(impl_->mu);
  auto it = impl_->cache.find({ns, name});
  if (it != impl_->cache.end() && it->second.metadata.uid == vm.metadata.uid &&
      it->second.status.migration && it->second.status.migration->uid == report.uid) {
    // What the controller now has, until its push says more.
    auto merged = it->second.status;
    if (api::applyMigrationReport(merged, impl_->options.nodeName, report).ok()) {
      it->second.status = merged;
    }
  }
  return Ok{};
}

}  // namespace vmhost::node
