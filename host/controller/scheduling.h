// The scheduling controller: places pending VMs on nodes through the
// scheduler plugin and writes the decision into the VM's status.
//
// Level-triggered, like KubeVirt's virt-controller: it lists VMs and nodes,
// then watches both; every change re-evaluates what is pending, and pending
// VMs are retried periodically, so a missed or failed write only delays a
// placement. A restart re-lists and converges; a VM is bound once (the
// status write uses optimistic concurrency, and a bound VM is never
// re-placed here).
//
// The plugin is sent the node list as sdk/schema/scheduler.capnp says: in
// full on every call unless it declares VMHOST_CAP_SCHEDULER_NODE_CACHE,
// otherwise in full after a (re)list or a failed call and as deltas between.
// A plugin decision is written only onto the VM the plugin saw (same uid,
// resources, selector, still wanting a node); a VM that changed meanwhile
// waits for its watch event and is placed afresh.
#pragma once

#include "api/event_recorder.h"
#include "api/types.h"
#include "api/vocabulary.h"
#include "common/metrics.h"
#include "store/store.h"

#include <vmhost/loader/plugin_host.h>
#include <vmhost/schema/scheduler.capnp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <string>

namespace vmhost::controller {

struct SchedulingOptions {
  // Unschedulable VMs are tried again at least this often (and at once when
  // a node changes).
  std::chrono::milliseconds retryInterval{5000};
  // Where Scheduled / FailedScheduling events go; null: none recorded.
  // Must outlive the controller.
  api::EventSink* events = nullptr;
};

class SchedulingController {
 public:
  // All three must outlive the controller.
  SchedulingController(store::Store& store, PluginInstance& scheduler, metrics::Registry& metrics,
                       SchedulingOptions options = {});

  // Runs until `stop` is requested (checked at least every 200 ms).
  void run(std::stop_token stop);

  // One round of run() without the wait: lists and watches the store when
  // not watching yet (or after a watch ended), applies the changes the
  // watches hold, marks the Halted VMs stopped and tries every VM due for
  // placement. False when the store cannot be listed or watched. run()
  // calls it in a loop; tests call it directly to interleave their own
  // writes with the controller's rounds. Not for use while run() runs.
  bool runOnce(std::stop_token stop = {});

  // The number of VMs placed since construction (for tests and metrics).
  uint64_t placements() const { return placements_.load(); }

  // A live migration's target (controller/migration.h): the scheduler
  // plugin's choice among the nodes other than `source` that fit the VM,
  // its own nodeSelector and `nodeSelector`. Thread-safe; answered by the
  // next round of run() (the plugin is called from one thread, with the
  // node figures and the cache protocol of the placements). The answer:
  // the node, or FAILED_PRECONDITION with the plugin's reason when none
  // fits, or UNAVAILABLE when the plugin call failed.
  std::future<Result<std::string>> pickMigrationTarget(
      const api::VirtualMachine& vm, const std::string& source,
      const std::map<std::string, std::string>& nodeSelector);

 private:
  struct VmEntry {
    api::VirtualMachine vm;
    int64_t cpuMillis = 0;
    int64_t memoryBytes = 0;
    int64_t revision = 0;  // the store revision this entry reflects
  };
  using VmKey = std::pair<std::string, std::string>;  // namespace, name

  bool resync();  // full list; false when the store is unavailable
  void applyVm(const store::WatchEvent& event);
  void applyNode(const store::WatchEvent& event);
  bool holdsResources(const api::VirtualMachine& vm) const;
  // The node an unfinished live migration of `vm` goes to (it holds the
  // VM's room there as well), or empty.
  static std::string incomingTarget(const api::VirtualMachine& vm);
  bool wantsPlacement(const api::VirtualMachine& vm) const;
  void scheduleOne(const VmKey& key);
  // The plugin's request for one VM; `exclude` goes as unschedulable.
  void fillRequest(schema::ScheduleRequest::Builder request, const VmKey& key,
                   const api::VirtualMachine& vm, int64_t cpuMillis, int64_t memoryBytes,
                   const std::map<std::string, std::string>& nodeSelector,
                   const std::string& exclude);
  struct TargetQuery {
    api::VirtualMachine vm;
    std::string source;
    std::map<std::string, std::string> nodeSelector;
    std::promise<Result<std::string>> answer;
  };
  void answerTarget(TargetQuery& query);
  // Writes the plugin's choice of `node` into the VM, if the VM in the store
  // still is the one the plugin was asked about (`asked`). The object as
  // written; nullopt when the VM changed, went away or was bound meanwhile.
  Result<std::optional<store::StoredObject>> bind(const VmKey& key, const VmEntry& asked,
                                                  const std::string& node);
  void markHalted(const VmKey& key);
  void event(const api::VirtualMachine& vm, const char* type, const char* reason,
             const std::string& message);

  store::Store& store_;
  PluginInstance& scheduler_;
  SchedulingOptions options_;
  metrics::Histogram* latency_ = nullptr;
  metrics::Counter* attempts_ = nullptr;
  metrics::Gauge* phases_ = nullptr;
  bool phasesDirty_ = true;
  std::map<std::string, int64_t> phaseCounts_;  // VMs by phase, kept per event
  void updatePhaseGauge();

  std::map<VmKey, VmEntry> vms_;
  std::map<std::string, api::Node> nodes_;
  // The plugin declares VMHOST_CAP_SCHEDULER_NODE_CACHE: it is sent deltas.
  // Otherwise every call carries every node (fullSync).
  const bool nodeCache_;
  // Nodes to (re)send to the plugin on the next call: those whose figures
  // changed here since the last call, and the node that call placed a VM on
  // (the plugin assumed it; the host's count is what the bind left). With
  // removedNodes_ this keeps the plugin's cache equal to nodes_/allocated_.
  std::set<std::string> dirtyNodes_;
  std::set<std::string> removedNodes_;
  bool fullSync_ = true;  // after a resync or a failed call: send everything
  // An unschedulable VM may fit now (a node changed, a VM freed room).
  bool retryUnschedulable_ = false;
  // VMs seen unschedulable, with the message last written (avoids rewriting it).
  std::map<VmKey, std::string> unschedulable_;
  // Sum of the requests of the VMs holding resources on each node: cpu millis, memory bytes.
  std::map<std::string, std::pair<int64_t, int64_t>> allocated_;
  std::set<VmKey> queue_;   // VMs to try to place in the next round
  std::set<VmKey> halted_;  // never-placed VMs with runStrategy Halted: phase Stopped
  int64_t vmRevision_ = 0;
  int64_t nodeRevision_ = 0;
  // The watches' notify wakes run() between rounds. Declared before the
  // watches, which are destroyed first and wait for a notify in flight.
  std::mutex wakeMu_;
  std::condition_variable wakeCv_;
  bool woken_ = false;
  std::deque<std::shared_ptr<TargetQuery>> targetQueries_;  // under wakeMu_
  std::unique_ptr<store::Watch> vmWatch_;  // null: list again before the next round
  std::unique_ptr<store::Watch> nodeWatch_;
  std::chrono::steady_clock::time_point lastRetry_;
  std::atomic<uint64_t> placements_{0};
};

}  // namespace vmhost::controller
