// The scheduling controller: places pending VMs on nodes through the
// scheduler plugin and writes the decision into the VM's status.
//
// Level-triggered, like KubeVirt's virt-controller: it lists VMs and nodes,
// then watches both; every change re-evaluates what is pending, and pending
// VMs are retried periodically, so a missed or failed write only delays a
// placement. A restart re-lists and converges; a VM is bound once (the
// status write uses optimistic concurrency, and a bound VM is never
// re-placed here).
#pragma once

#include "api/types.h"
#include "common/metrics.h"
#include "common/store/store.h"

#include <vmhost/loader/plugin_host.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <stop_token>
#include <string>

namespace vmhost::controller {

struct SchedulingOptions {
  // Unschedulable VMs are tried again at least this often (and at once when
  // a node changes).
  std::chrono::milliseconds retryInterval{5000};
};

// Annotations a node agent sets on its Node to override the scheduler
// plugin's default overcommit for that node.
inline constexpr const char* kCpuAllocationRatioAnnotation = "vmhost.io/cpu-allocation-ratio";
// Where other hosts reach this node's libvirt (live migration's target URI).
inline constexpr const char* kLibvirtEndpointAnnotation = "vmhost.io/libvirt-endpoint";
inline constexpr const char* kMemoryAllocationRatioAnnotation = "vmhost.io/memory-allocation-ratio";

class SchedulingController {
 public:
  // All three must outlive the controller.
  SchedulingController(store::Store& store, PluginInstance& scheduler, metrics::Registry& metrics,
                       SchedulingOptions options = {});

  // Runs until `stop` is requested (checked at least every 200 ms).
  void run(std::stop_token stop);

  // The number of VMs placed since construction (for tests and metrics).
  uint64_t placements() const { return placements_.load(); }

 private:
  struct VmEntry {
    api::VirtualMachine vm;
    int64_t cpuMillis = 0;
    int64_t memoryBytes = 0;
  };
  using VmKey = std::pair<std::string, std::string>;  // namespace, name

  bool resync();  // full list; false when the store is unavailable
  void applyVm(const store::WatchEvent& event);
  void applyNode(const store::WatchEvent& event);
  bool holdsResources(const api::VirtualMachine& vm) const;
  bool wantsPlacement(const api::VirtualMachine& vm) const;
  void scheduleOne(const VmKey& key);
  void markHalted(const VmKey& key);

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
  // Nodes to (re)send to the plugin on the next call; all of them after a resync.
  std::set<std::string> dirtyNodes_;
  std::set<std::string> removedNodes_;
  bool fullSync_ = true;
  // VMs seen unschedulable, with the message last written (avoids rewriting it).
  std::map<VmKey, std::string> unschedulable_;
  // Sum of the requests of the VMs holding resources on each node: cpu millis, memory bytes.
  std::map<std::string, std::pair<int64_t, int64_t>> allocated_;
  std::set<VmKey> queue_;   // VMs to try to place in the next round
  std::set<VmKey> halted_;  // never-placed VMs with runStrategy Halted: phase Stopped
  int64_t vmRevision_ = 0;
  int64_t nodeRevision_ = 0;
  std::atomic<uint64_t> placements_{0};
};

}  // namespace vmhost::controller
