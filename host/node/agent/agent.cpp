#include "node/agent/agent.h"

#include "api/conditions.h"
#include "api/objects.h"
#include "api/vocabulary.h"

#include <libvirt/libvirt.h>

#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <thread>

namespace vmhost::node {
namespace {

namespace fs = std::filesystem;

template <typename T>
T* orNull(Result<T*> r) {
  return r.ok() ? r.value() : nullptr;
}

}  // namespace

NodeAgent::NodeAgent(ControlPlane& control, Connection& libvirt, PluginInstance& storage,
                     PluginInstance& network, metrics::Registry& metrics, AgentOptions options,
                     PluginInstance* migration)
    : control_(control),
      libvirt_(libvirt),
      options_(std::move(options)),
      reconcileLatency_(
          orNull(metrics.histogram("vmhost_node_reconcile_duration_seconds",
                                   "Time of one VM reconcile pass on a node", {"node"}))),
      startSteps_(orNull(metrics.histogram(
          "vmhost_node_vm_start_step_seconds",
          "Time of each step of starting a VM on a node: storage (the storage plugin "
          "prepares every disk), network (the network plugin attaches every NIC), define "
          "(libvirt defines the domain), start (libvirt starts it)",
          {"node", "step"}))),
      reconcileErrors_(
          orNull(metrics.counter("vmhost_node_reconcile_errors_total",
                                 "Reconcile passes that ended with an error", {"node"}))),
      devices_(control, storage, network, options_.nodeName, startSteps_),
      migrationPlugin_(migration) {
  std::error_code ec;
  fs::create_directories(fs::path(options_.dataDir) / "node" / "vms", ec);
  fs::create_directories(fs::path(options_.dataDir) / "node" / "console", ec);
}

NodeAgent::~NodeAgent() = default;

Status NodeAgent::registerNode() {
  virNodeInfo info{};
  if (virNodeGetInfo(libvirt_.raw(), &info) != 0) {
    return libvirtError("", "reading the node's capacity");
  }
  api::Node node;
  node.metadata.name = options_.nodeName;
  node.metadata.labels = options_.labels;
  if (options_.cpuAllocationRatio > 0) {
    node.metadata.annotations[api::kCpuAllocationRatioAnnotation] =
        std::to_string(options_.cpuAllocationRatio);
  }
  node.metadata.annotations[api::kLibvirtEndpointAnnotation] =
      options_.libvirtEndpoint.empty() ? libvirt_.uri() : options_.libvirtEndpoint;
  if (options_.memoryAllocationRatio > 0) {
    node.metadata.annotations[api::kMemoryAllocationRatioAnnotation] =
        std::to_string(options_.memoryAllocationRatio);
  }
  auto cpu = api::parseQuantity(std::to_string(info.cpus));
  if (!cpu.ok()) return cpu.error();
  node.status.capacity.cpu = cpu.value();
  node.status.capacity.memory = api::bytesQuantity(static_cast<int64_t>(info.memory) * 1024);
  node.status.allocatable = node.status.capacity;
  api::setCondition(node.status.conditions, "Ready", "True", "NodeAgentReady",
                    "vmhost node agent is running (libvirt " + libvirt_.uri() + ")");
  return control_.registerNode(node);
}

bool NodeAgent::adopt() {
  auto domains = libvirt_.listAll();
  if (!domains.ok()) {
    std::fprintf(stderr, "node %s: listing domains: %s\n", options_.nodeName.c_str(),
                 domains.error().message.c_str());
    return false;
  }
  for (const auto& d : domains.value()) {
    lastStates_[d.name] = d.status.state;
    if (!d.metadata) continue;
    VmKey key{d.metadata->vm.ns, d.metadata->vm.name};
    mine_.insert(key);
    queue_.insert(key);
  }
  // VMs whose domain is gone but whose local state is left (deleted while down).
  std::error_code ec;
  for (const auto& entry :
       fs::directory_iterator(fs::path(options_.dataDir) / "node" / "vms", ec)) {
    std::string stem = entry.path().stem().string();
    auto sep = stem.find('_');
    if (sep == std::string::npos) continue;
    VmKey key{stem.substr(0, sep), stem.substr(sep + 1)};
    mine_.insert(key);
    queue_.insert(key);
  }
  return true;
}

void NodeAgent::pollDomains() {
  auto domains = libvirt_.listAll();
  if (!domains.ok()) return;
  for (const auto& d : domains.value()) {
    auto& last = lastStates_[d.name];
    if (last != d.status.state && d.metadata)
      queue_.insert({d.metadata->vm.ns, d.metadata->vm.name});
    last = d.status.state;
  }
  for (const auto& [key, since] : stopping_) queue_.insert(key);
  auto now = Clock::now();
  // Outbound migrations: their progress is reported, their end acted on.
  for (auto& [key, entry] : sourceJobs_) queue_.insert(key);
  for (const auto& [key, hold] : holds_) {
    if (hold.retryable && now >= hold.next) queue_.insert(key);
  }
}

void NodeAgent::run(std::stop_token stop) {
  while (!stop.stop_requested()) {
    if (auto s = registerNode(); !s.ok()) {
      std::fprintf(stderr, "node %s: registering: %s\n", options_.nodeName.c_str(),
                   s.error().message.c_str());
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    adopt();
    auto snapshot = control_.listAndWatch();
    if (!snapshot.ok()) {
      std::fprintf(stderr, "node %s: listing VMs: %s\n", options_.nodeName.c_str(),
                   snapshot.error().message.c_str());
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    for (const auto& vm : snapshot.value().vms) {
      if (migrationTarget(vm)) {
        VmKey key{vm.metadata.ns, vm.metadata.name};
        mine_.insert(key);
        queue_.insert(key);
      }
      if (vm.status.nodeName == options_.nodeName) {
        VmKey key{vm.metadata.ns, vm.metadata.name};
        mine_.insert(key);
        queue_.insert(key);
        // The MACs this node's VMs hold; a start that loses a race to a
        // claim here retries on its next pass (the error is retryable).
        (void)devices_.claimMacs(key, vm.status.interfaces);
      }
    }
    auto& feed = *snapshot.value().feed;
    std::mutex mu;
    std::condition_variable cv;
    bool woken = false;
    feed.setNotify([&] {
      std::lock_guard<std::mutex> lock(mu);
      woken = true;
      cv.notify_one();
    });
    auto lastResync = Clock::now();
    auto lastHeartbeat = Clock::now();
    auto lastPoll = Clock::now();
    bool relist = false;
    while (!stop.stop_requested() && !relist) {
      for (int n = 0; n < 10000; ++n) {
        auto event = feed.tryNext();
        if (!event) break;
        if (event->type == VmEvent::Type::kRelist) {
          relist = true;
          break;
        }
        VmKey key{event->vm.metadata.ns, event->vm.metadata.name};
        if (event->type == VmEvent::Type::kDeleted) {
          if (mine_.count(key)) queue_.insert(key);
          continue;
        }
        if (event->vm.status.nodeName == options_.nodeName || mine_.count(key) ||
            migrationTarget(event->vm)) {
          queue_.insert(key);
        }
      }
      if (Clock::now() - lastHeartbeat >= options_.heartbeat) {
        if (auto s = control_.heartbeat(); !s.ok()) {
          std::fprintf(stderr, "node %s: heartbeat: %s\n", options_.nodeName.c_str(),
                       s.error().message.c_str());
        }
        lastHeartbeat = Clock::now();
      }
      if (Clock::now() - lastPoll >= options_.domainPoll) {
        pollDomains();
        lastPoll = Clock::now();
      }
      if (Clock::now() - lastResync >= options_.resync) {
        for (const auto& key : mine_) queue_.insert(key);
        lastResync = Clock::now();
      }
      auto queue = std::move(queue_);
      queue_.clear();
      for (const auto& key : queue) {
        if (stop.stop_requested()) break;
        auto s = reconcile(key.first, key.second);
        if (!s.ok()) {
          std::fprintf(stderr, "node %s: vm %s/%s: %s\n", options_.nodeName.c_str(),
                       key.first.c_str(), key.second.c_str(), s.error().message.c_str());
        }
      }
      std::unique_lock<std::mutex> lock(mu);
      cv.wait_for(lock, std::chrono::milliseconds(200),
                  [&] { return woken || stop.stop_requested(); });
      woken = false;
    }
  }
}

}  // namespace vmhost::node
