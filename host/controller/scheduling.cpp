#include "controller/scheduling.h"

#include "api/conditions.h"
#include "api/objects.h"

#include <vmhost/schema/scheduler.capnp.h>

#include <capnp/message.h>

#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

namespace vmhost::controller {
namespace {

using Clock = std::chrono::steady_clock;

bool terminalPhase(const std::string& phase) {
  return phase == "Stopped" || phase == "Succeeded" || phase == "Failed";
}

float ratioAnnotation(const api::Node& node, const char* key) {
  auto it = node.metadata.annotations.find(key);
  if (it == node.metadata.annotations.end()) return 0;
  // A bad annotation falls back to the plugin's default: passed on, "inf"
  // or "nan" would make the plugin refuse every request carrying the node.
  try {
    float v = std::stof(it->second);
    return std::isfinite(v) && v > 0 ? v : 0;
  } catch (...) {
    return 0;
  }
}

bool nodeReady(const api::Node& node) {
  const api::Condition* ready = api::findCondition(node.status.conditions, "Ready");
  return ready != nullptr && ready->status == "True";
}

}  // namespace

SchedulingController::SchedulingController(store::Store& store, PluginInstance& scheduler,
                                           metrics::Registry& metrics, SchedulingOptions options)
    : store_(store),
      scheduler_(scheduler),
      options_(options),
      nodeCache_((scheduler.info().capabilities & VMHOST_CAP_SCHEDULER_NODE_CACHE) != 0) {
  if (auto h = metrics.histogram("vmhost_scheduling_duration_seconds",
                                 "Time to place one VM, including the scheduler plugin call",
                                 {"result"});
      h.ok()) {
    latency_ = h.value();
  }
  if (auto g = metrics.gauge("vmhost_virtual_machines", "VirtualMachines by phase", {"phase"});
      g.ok()) {
    phases_ = g.value();
  }
  if (auto c = metrics.counter("vmhost_scheduling_attempts_total", "Scheduling attempts by result",
                               {"result"});
      c.ok()) {
    attempts_ = c.value();
  }
}

bool SchedulingController::holdsResources(const api::VirtualMachine& vm) const {
  return !vm.status.nodeName.empty() && !terminalPhase(vm.status.phase);
}

std::string SchedulingController::incomingTarget(const api::VirtualMachine& vm) {
  const auto& m = vm.status.migration;
  if (!m || api::migrationStateFinished(*m) || m->targetNode.empty() ||
      m->targetNode == vm.status.nodeName) {
    return "";
  }
  return m->targetNode;
}

bool SchedulingController::wantsPlacement(const api::VirtualMachine& vm) const {
  return vm.status.nodeName.empty() && !vm.metadata.deletionTimestamp &&
         vm.spec.runStrategy != "Halted";
}

bool SchedulingController::resync() {
  auto vms = store_.list(api::kVirtualMachinesResource, "");
  auto nodes = store_.list(api::kNodesResource, "");
  if (!vms.ok() || !nodes.ok()) {
    std::fprintf(stderr, "controller: cannot list %s: %s\n", vms.ok() ? "nodes" : "VMs",
                 (vms.ok() ? nodes.error() : vms.error()).message.c_str());
    return false;
  }
  vms_.clear();
  nodes_.clear();
  phaseCounts_.clear();
  allocated_.clear();
  for (const auto& object : nodes.value().items) {
    auto node = api::decodeStoredNode(object);
    if (node.ok()) nodes_[node.value().metadata.name] = std::move(node.value());
  }
  for (const auto& object : vms.value().items) {
    store::WatchEvent event;
    event.type = store::WatchEventType::kAdded;
    event.object = std::make_shared<store::StoredObject>(object);
    applyVm(event);
  }
  dirtyNodes_.clear();
  removedNodes_.clear();
  fullSync_ = true;
  unschedulable_.clear();
  vmRevision_ = vms.value().revision;
  nodeRevision_ = nodes.value().revision;
  return true;
}

void SchedulingController::updatePhaseGauge() {
  if (phases_ == nullptr || !phasesDirty_) return;
  for (const char* phase : api::kPhases) {
    auto it = phaseCounts_.find(phase);
    phases_->set({phase}, it == phaseCounts_.end() ? 0.0 : static_cast<double>(it->second));
  }
  phasesDirty_ = false;
}

void SchedulingController::applyVm(const store::WatchEvent& event) {
  const auto& object = *event.object;
  VmKey key{object.key.ns, object.key.name};
  auto it = vms_.find(key);
  // Already known at this revision or a later one: the controller applies
  // its own bindings ahead of their watch events (see scheduleOne), and an
  // older event must not undo one.
  if (it != vms_.end() && object.modRevision <= it->second.revision) return;
  phasesDirty_ = true;
  // Phase counts are kept per event (O(1)), not recounted over every VM.
  auto phaseOf = [](const api::VirtualMachine& vm) {
    return vm.status.phase.empty() ? std::string("Pending") : vm.status.phase;
  };
  // Take the old contribution out of the node's allocation.
  const VmEntry* held = nullptr;
  if (it != vms_.end()) {
    --phaseCounts_[phaseOf(it->second.vm)];
    if (holdsResources(it->second.vm)) {
      held = &it->second;
      auto& a = allocated_[held->vm.status.nodeName];
      a.first -= held->cpuMillis;
      a.second -= held->memoryBytes;
      dirtyNodes_.insert(held->vm.status.nodeName);
      if (auto t = incomingTarget(held->vm); !t.empty()) {
        auto& b = allocated_[t];
        b.first -= held->cpuMillis;
        b.second -= held->memoryBytes;
        dirtyNodes_.insert(t);
      }
    }
  }
  if (event.type == store::WatchEventType::kDeleted) {
    // What it held is free now: the VMs waiting for room may fit.
    if (held != nullptr) retryUnschedulable_ = true;
    vms_.erase(key);
    unschedulable_.erase(key);
    queue_.erase(key);
    return;
  }
  auto vm = api::decodeStoredVirtualMachine(object);
  if (!vm.ok()) {
    std::fprintf(stderr, "controller: skipping %s: %s\n", object.key.describe().c_str(),
                 vm.error().message.c_str());
    if (held != nullptr) retryUnschedulable_ = true;
    vms_.erase(key);
    return;
  }
  VmEntry entry;
  entry.cpuMillis = vm.value().spec.cpu.cores * 1000;
  entry.memoryBytes = vm.value().spec.memory.value();
  entry.revision = object.modRevision;
  entry.vm = std::move(vm.value());
  ++phaseCounts_[phaseOf(entry.vm)];
  bool holds = holdsResources(entry.vm);
  if (holds) {
    auto& a = allocated_[entry.vm.status.nodeName];
    a.first += entry.cpuMillis;
    a.second += entry.memoryBytes;
    dirtyNodes_.insert(entry.vm.status.nodeName);
    // A VM migrating to a node holds room there too until its migration
    // ends (the target prepares before anything moves), though it stays
    // bound to its source: neither a new VM nor another migration may take it.
    if (auto t = incomingTarget(entry.vm); !t.empty()) {
      auto& b = allocated_[t];
      b.first += entry.cpuMillis;
      b.second += entry.memoryBytes;
      dirtyNodes_.insert(t);
    }
  }
  if (held != nullptr &&
      (!holds || held->vm.status.nodeName != entry.vm.status.nodeName ||
       entry.cpuMillis < held->cpuMillis || entry.memoryBytes < held->memoryBytes)) {
    retryUnschedulable_ = true;  // stopped, moved or shrunk: room freed
  }
  if (wantsPlacement(entry.vm)) {
    queue_.insert(key);
  } else {
    queue_.erase(key);
    unschedulable_.erase(key);
    if (entry.vm.status.nodeName.empty() && entry.vm.spec.runStrategy == "Halted" &&
        entry.vm.status.phase != "Stopped" && !entry.vm.metadata.deletionTimestamp) {
      halted_.insert(key);
    }
  }
  vms_[key] = std::move(entry);
}

void SchedulingController::applyNode(const store::WatchEvent& event) {
  const std::string& name = event.object->key.name;
  if (event.type == store::WatchEventType::kDeleted) {
    nodes_.erase(name);
    removedNodes_.insert(name);
    dirtyNodes_.erase(name);
  } else {
    auto node = api::decodeStoredNode(*event.object);
    if (!node.ok()) return;
    nodes_[name] = std::move(node.value());
    dirtyNodes_.insert(name);
    removedNodes_.erase(name);
  }
  // A node change may make an unschedulable VM fit.
  retryUnschedulable_ = true;
}

void SchedulingController::markHalted(const VmKey& key) {
  auto r = api::updateVirtualMachineStatus(store_, key.first, key.second,
                                           [](api::VirtualMachineStatus& s) {
                                             if (!s.nodeName.empty() || s.phase == "Stopped")
                                               return false;
                                             s.phase = "Stopped";
                                             api::removeCondition(s.conditions, "Scheduled");
                                             return true;
                                           });
  if (!r.ok() && r.error().code != VMHOST_ERR_NOT_FOUND) {
    std::fprintf(stderr, "controller: vm %s/%s: %s\n", key.first.c_str(), key.second.c_str(),
                 r.error().message.c_str());
  }
}

void SchedulingController::fillRequest(schema::ScheduleRequest::Builder request, const VmKey& key,
                                       const api::VirtualMachine& vmObj, int64_t cpuMillis,
                                       int64_t memoryBytes,
                                       const std::map<std::string, std::string>& nodeSelector,
                                       const std::string& exclude) {
  auto vm = request.initVm();
  auto ref = vm.initRef();
  ref.setNamespace(key.first);
  ref.setName(key.second);
  ref.setUid(vmObj.metadata.uid);
  vm.initRequests().setCpuMillis(static_cast<uint64_t>(std::max<int64_t>(0, cpuMillis)));
  vm.getRequests().setMemoryBytes(static_cast<uint64_t>(std::max<int64_t>(0, memoryBytes)));
  auto selector = vm.initNodeSelector(static_cast<unsigned>(nodeSelector.size()));
  unsigned i = 0;
  for (const auto& [k, v] : nodeSelector) {
    selector[i].setKey(k);
    selector[i].setValue(v);
    ++i;
  }
  // A plugin without a node cache is sent every node on every call.
  const bool full = fullSync_ || !nodeCache_;
  std::vector<const api::Node*> send;
  if (full) {
    for (const auto& [name, node] : nodes_) send.push_back(&node);
  } else {
    for (const auto& name : dirtyNodes_) {
      if (auto n = nodes_.find(name); n != nodes_.end()) send.push_back(&n->second);
    }
    // The excluded node goes as unschedulable (and is resent as it is on
    // the next call: it is marked dirty after this one).
    if (!exclude.empty() && !dirtyNodes_.count(exclude)) {
      if (auto n = nodes_.find(exclude); n != nodes_.end()) send.push_back(&n->second);
    }
  }
  request.setFullSync(full);
  auto nodes = request.initNodes(static_cast<unsigned>(send.size()));
  for (unsigned n = 0; n < send.size(); ++n) {
    const api::Node& node = *send[n];
    auto out = nodes[n];
    out.setName(node.metadata.name);
    auto labels = out.initLabels(static_cast<unsigned>(node.metadata.labels.size()));
    unsigned l = 0;
    for (const auto& [k, v] : node.metadata.labels) {
      labels[l].setKey(k);
      labels[l].setValue(v);
      ++l;
    }
    out.setSchedulable(!node.spec.unschedulable && node.metadata.name != exclude);
    out.setReady(nodeReady(node));
    const auto& amounts =
        node.status.allocatable.cpu ? node.status.allocatable : node.status.capacity;
    auto cap = out.initCapacity();
    cap.setCpuMillis(
        amounts.cpu ? static_cast<uint64_t>(std::max<int64_t>(0, amounts.cpu->milliValue)) : 0);
    cap.setMemoryBytes(
        amounts.memory ? static_cast<uint64_t>(std::max<int64_t>(0, amounts.memory->value())) : 0);
    auto used = allocated_[node.metadata.name];
    auto alloc = out.initAllocated();
    alloc.setCpuMillis(static_cast<uint64_t>(std::max<int64_t>(0, used.first)));
    alloc.setMemoryBytes(static_cast<uint64_t>(std::max<int64_t>(0, used.second)));
    out.setCpuAllocationRatio(ratioAnnotation(node, api::kCpuAllocationRatioAnnotation));
    out.setMemoryAllocationRatio(ratioAnnotation(node, api::kMemoryAllocationRatioAnnotation));
  }
  auto removed = request.initRemovedNodes(full ? 0 : static_cast<unsigned>(removedNodes_.size()));
  if (!full) {
    unsigned r = 0;
    for (const auto& name : removedNodes_) removed.set(r++, name);
  }
}

void SchedulingController::scheduleOne(const VmKey& key) {
  auto it = vms_.find(key);
  if (it == vms_.end() || !wantsPlacement(it->second.vm)) return;
  const VmEntry& entry = it->second;
  auto started = Clock::now();

  capnp::MallocMessageBuilder message;
  fillRequest(message.initRoot<schema::ScheduleRequest>(), key, entry.vm, entry.cpuMillis,
              entry.memoryBytes, entry.vm.spec.nodeSelector, "");
  auto reply = scheduler_.call<schema::ScheduleResult>(VMHOST_METHOD_SCHEDULER_SCHEDULE, message);
  auto seconds = std::chrono::duration<double>(Clock::now() - started).count();
  // The call failed, or answered with a node the host does not have: say
  // why on the VM; it is retried with the unschedulable ones. What such a
  // call left in the plugin's cache is unknown, so the next call is a full
  // sync.
  auto schedulerError = [&](const std::string& msg) {
    fullSync_ = true;
    if (attempts_) attempts_->inc({"error"});
    if (latency_) latency_->observe({"error"}, seconds);
    if (unschedulable_.count(key) && unschedulable_[key] == msg) return;
    unschedulable_[key] = msg;
    event(entry.vm, api::kEventTypeWarning, "FailedScheduling", msg);
    (void)api::updateVirtualMachineStatus(
        store_, key.first, key.second, [&](api::VirtualMachineStatus& s) {
          if (!s.nodeName.empty()) return false;
          // Scheduling: being placed, but the scheduler failed this attempt
          // (Pending means no node fits).
          s.phase = "Scheduling";
          return api::setCondition(s.conditions, "Scheduled", "False", "SchedulerError", msg) ||
                 true;
        });
  };
  if (!reply.ok()) return schedulerError(reply.error().message);
  auto result = reply.value().get();
  if (result.isScheduled() && !nodes_.count(result.getScheduled().getNode().cStr())) {
    return schedulerError("the scheduler plugin chose node \"" +
                          std::string(result.getScheduled().getNode().cStr()) +
                          "\", which is not a known node");
  }
  fullSync_ = false;
  dirtyNodes_.clear();
  removedNodes_.clear();
  if (result.isScheduled()) {
    std::string node = result.getScheduled().getNode().cStr();
    // The plugin has added the VM to `node` in its cache ("assume"), but
    // whether the VM really is there is only known once the write below
    // has happened, or not. Resending the node with the host's figures on
    // the next call, whatever the outcome, keeps the plugin's count equal
    // to the host's (allocated_) without trusting how the plugin assumed.
    dirtyNodes_.insert(node);
    auto bound = bind(key, entry, node);
    if (!bound.ok()) {
      if (attempts_) attempts_->inc({"error"});
      std::fprintf(stderr, "controller: vm %s/%s: binding to %s: %s\n", key.first.c_str(),
                   key.second.c_str(), node.c_str(), bound.error().message.c_str());
      unschedulable_.try_emplace(key);  // tried again with the unschedulable ones
      return;
    }
    if (!bound.value()) {
      // The VM changed, went away or was bound by another writer after the
      // plugin saw it: the decision is void. Its watch event brings the VM
      // as it is now (and queues it again if it still wants a node).
      if (attempts_) attempts_->inc({"stale"});
      return;
    }
    ++placements_;
    event(entry.vm, api::kEventTypeNormal, "Scheduled",
          "Successfully assigned " + key.first + "/" + key.second + " to " + node);
    if (attempts_) attempts_->inc({"scheduled"});
    if (latency_) latency_->observe({"scheduled"}, seconds);
    unschedulable_.erase(key);
    // Account for it now; its watch event, at the same revision, is skipped.
    store::WatchEvent event;
    event.type = store::WatchEventType::kModified;
    event.object = std::make_shared<store::StoredObject>(std::move(*bound.value()));
    applyVm(event);
    return;
  }
  std::string msg = result.getUnschedulable().getMessage().cStr();
  if (attempts_) attempts_->inc({"unschedulable"});
  if (latency_) latency_->observe({"unschedulable"}, seconds);
  if (unschedulable_.count(key) && unschedulable_[key] == msg) return;
  unschedulable_[key] = msg;
  event(entry.vm, api::kEventTypeWarning, "FailedScheduling", msg);
  auto written = api::updateVirtualMachineStatus(
      store_, key.first, key.second, [&](api::VirtualMachineStatus& s) {
        if (!s.nodeName.empty()) return false;
        bool changed = s.phase != "Pending";
        s.phase = "Pending";
        changed |= api::setCondition(s.conditions, "Scheduled", "False", "Unschedulable", msg);
        return changed;
      });
  if (!written.ok() && written.error().code != VMHOST_ERR_NOT_FOUND) {
    std::fprintf(stderr, "controller: vm %s/%s: %s\n", key.first.c_str(), key.second.c_str(),
                 written.error().message.c_str());
  }
}

std::future<Result<std::string>> SchedulingController::pickMigrationTarget(
    const api::VirtualMachine& vm, const std::string& source,
    const std::map<std::string, std::string>& nodeSelector) {
  auto query = std::make_shared<TargetQuery>();
  query->vm = vm;
  query->source = source;
  query->nodeSelector = nodeSelector;
  auto answer = query->answer.get_future();
  std::lock_guard<std::mutex> lock(wakeMu_);
  targetQueries_.push_back(std::move(query));
  woken_ = true;
  wakeCv_.notify_one();
  return answer;
}

void SchedulingController::answerTarget(TargetQuery& q) {
  VmKey key{q.vm.metadata.ns, q.vm.metadata.name};
  // The migration's selector narrows the VM's own; it never replaces it
  // (a key both name with different values: no node can have both).
  auto selector = q.vm.spec.nodeSelector;
  for (const auto& [k, v] : q.nodeSelector) {
    auto [it, added] = selector.emplace(k, v);
    if (!added && it->second != v) {
      q.answer.set_value(Error{VMHOST_ERR_FAILED_PRECONDITION,
                               "the migration asks for " + k + "=" + v +
                                   " but the VM's nodeSelector has " + k + "=" + it->second,
                               false});
      return;
    }
  }
  capnp::MallocMessageBuilder message;
  fillRequest(message.initRoot<schema::ScheduleRequest>(), key, q.vm, q.vm.spec.cpu.cores * 1000,
              q.vm.spec.memory.value(), selector, q.source);
  auto reply = scheduler_.call<schema::ScheduleResult>(VMHOST_METHOD_SCHEDULER_SCHEDULE, message);
  if (!reply.ok()) {
    fullSync_ = true;
    q.answer.set_value(Error{VMHOST_ERR_UNAVAILABLE,
                             "the scheduler plugin failed: " + reply.error().message, true});
    return;
  }
  fullSync_ = false;
  dirtyNodes_.clear();
  removedNodes_.clear();
  // What the plugin now believes about these two is not what the host has:
  // the source was sent unschedulable, and the chosen node holds the VM in
  // its cache. Both go again, as they are, on the next call.
  dirtyNodes_.insert(q.source);
  auto result = reply.value().get();
  if (result.isScheduled()) {
    std::string node = result.getScheduled().getNode().cStr();
    dirtyNodes_.insert(node);
    if (!nodes_.count(node) || node == q.source) {
      fullSync_ = true;
      q.answer.set_value(
          Error{VMHOST_ERR_UNAVAILABLE,
                "the scheduler plugin chose node \"" + node + "\", which is not a possible target",
                true});
      return;
    }
    q.answer.set_value(node);
    return;
  }
  q.answer.set_value(
      Error{VMHOST_ERR_FAILED_PRECONDITION, result.getUnschedulable().getMessage().cStr(), false});
}

void SchedulingController::event(const api::VirtualMachine& vm, const char* type,
                                 const char* reason, const std::string& message) {
  if (options_.events == nullptr) return;
  options_.events->record(
      api::vmEvent(vm, type, reason, message, api::EventSource{"vmhost-scheduler", ""}));
}

Result<std::optional<store::StoredObject>> SchedulingController::bind(const VmKey& key,
                                                                      const VmEntry& asked,
                                                                      const std::string& node) {
  // updateVirtualMachineStatus() lets a mutation see the status only; the
  // checks here need the whole object, under the same optimistic concurrency.
  auto storeKey = api::virtualMachineKey(key.first, key.second);
  constexpr int kMaxAttempts = 16;
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    auto cur = store_.get(storeKey);
    if (!cur.ok()) {
      if (cur.error().code == VMHOST_ERR_NOT_FOUND) return std::optional<store::StoredObject>();
      return cur.error();
    }
    auto decoded = api::decodeStoredVirtualMachine(cur.value());
    if (!decoded.ok()) return decoded.error();
    api::VirtualMachine& vm = decoded.value();
    // Only the VM the plugin was asked about, as it was asked: the same
    // object (a deleted and re-created VM has a new uid), still unbound and
    // wanting a node (not Halted, not being deleted), asking for the same
    // resources on the same nodes.
    if (vm.metadata.uid != asked.vm.metadata.uid || !wantsPlacement(vm) ||
        vm.spec.cpu.cores * 1000 != asked.cpuMillis ||
        vm.spec.memory.value() != asked.memoryBytes ||
        vm.spec.nodeSelector != asked.vm.spec.nodeSelector) {
      return std::optional<store::StoredObject>();
    }
    vm.status.nodeName = node;
    vm.status.phase = "Scheduled";
    api::setCondition(vm.status.conditions, "Scheduled", "True", "Scheduled",
                      "placed on node " + node);
    if (auto errs = api::validateVirtualMachineStatus(vm.status); !errs.empty()) {
      return Error{VMHOST_ERR_INVALID_ARGUMENT, errs.front().toString(), false};
    }
    std::string value = api::storeValue(vm);
    auto written = store_.update(storeKey, value, cur.value().modRevision);
    if (written.ok()) {
      store::StoredObject object;
      object.key = storeKey;
      object.value = std::move(value);
      object.createRevision = written.value().createRevision;
      object.modRevision = written.value().modRevision;
      return std::optional<store::StoredObject>(std::move(object));
    }
    if (written.error().code != VMHOST_ERR_ABORTED) return written.error();
  }
  return Error{VMHOST_ERR_ABORTED,
               storeKey.describe() + ": status update kept conflicting with other writers", true};
}

bool SchedulingController::runOnce(std::stop_token stop) {
  if (!vmWatch_ || !nodeWatch_) {
    vmWatch_.reset();
    nodeWatch_.reset();
    if (!resync()) return false;
    auto vmWatch = store_.watch(api::kVirtualMachinesResource, "", vmRevision_);
    auto nodeWatch = store_.watch(api::kNodesResource, "", nodeRevision_);
    if (!vmWatch.ok() || !nodeWatch.ok()) {
      std::fprintf(stderr, "controller: cannot watch: %s\n",
                   (vmWatch.ok() ? nodeWatch.error() : vmWatch.error()).message.c_str());
      return false;
    }
    vmWatch_ = std::move(vmWatch.value());
    nodeWatch_ = std::move(nodeWatch.value());
    auto wake = [this] {
      std::lock_guard<std::mutex> lock(wakeMu_);
      woken_ = true;
      wakeCv_.notify_one();
    };
    vmWatch_->setNotify(wake);
    nodeWatch_->setNotify(wake);
    lastRetry_ = Clock::now();
  }
  // Drain both watches (bounded per round so a flood cannot starve scheduling).
  bool relist = false;
  for (int n = 0; n < 10000; ++n) {
    auto event = nodeWatch_->tryNext();
    if (!event) break;
    if (event->type == store::WatchEventType::kError) {
      relist = true;
      break;
    }
    applyNode(*event);
  }
  for (int n = 0; n < 10000 && !relist; ++n) {
    auto event = vmWatch_->tryNext();
    if (!event) break;
    if (event->type == store::WatchEventType::kError) {
      relist = true;
      break;
    }
    applyVm(*event);
  }
  if (relist) {
    // A watch ended (too slow, compacted): the next round lists again, and
    // run() starts it without waiting.
    vmWatch_.reset();
    nodeWatch_.reset();
    std::lock_guard<std::mutex> lock(wakeMu_);
    woken_ = true;
    return true;
  }
  if (Clock::now() - lastRetry_ >= options_.retryInterval) {
    retryUnschedulable_ = true;
    lastRetry_ = Clock::now();
  }
  if (retryUnschedulable_) {
    for (const auto& [key, message] : unschedulable_) queue_.insert(key);
    retryUnschedulable_ = false;
  }
  updatePhaseGauge();
  auto halted = std::move(halted_);
  halted_.clear();
  for (const auto& key : halted) markHalted(key);
  auto queue = std::move(queue_);
  queue_.clear();
  for (const auto& key : queue) {
    if (stop.stop_requested()) break;
    scheduleOne(key);
  }
  // Migration targets, asked from other threads.
  std::deque<std::shared_ptr<TargetQuery>> queries;
  {
    std::lock_guard<std::mutex> lock(wakeMu_);
    queries.swap(targetQueries_);
  }
  for (auto& q : queries) answerTarget(*q);
  return true;
}

void SchedulingController::run(std::stop_token stop) {
  while (!stop.stop_requested()) {
    if (!runOnce(stop)) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    std::unique_lock<std::mutex> lock(wakeMu_);
    wakeCv_.wait_for(lock, std::chrono::milliseconds(200),
                     [&] { return woken_ || stop.stop_requested(); });
    woken_ = false;
  }
}

}  // namespace vmhost::controller
