// The node agent: makes this host's libvirt match the VMs the controller
// bound to it, as KubeVirt's virt-handler does.
//
// Level-triggered: it lists and watches the VMs, polls its domains' states,
// and reconciles every VM of this node at least every `resync`. Reconciling
// one VM compares what should be (the VM's spec and runStrategy) with what
// is (the libvirt domain) and takes one step towards the former: prepare
// disks and NICs through the storage and network plugins, define and start
// the domain, shut it down, or tear it down when the VM is deleted. A restart
// re-reads the store and libvirt and converges: a running domain is adopted,
// never started a second time (libvirt domain names are unique per host and
// every start goes through a lookup).
//
// What the node needs to undo its work after a VM is gone (the VM as it was
// last prepared, for the plugins' release calls) is kept under
// <dataDir>/node/vms/, so a VM deleted while the agent was down is still
// cleaned up when it comes back.
//
// A failure to prepare a VM's devices is the VM's Ready condition (reason
// PrepareFailed) with the error's code and what happens next:
//   "volume root: storage plugin 'local': <message> (NOT_FOUND; not retried
//    until the VM's spec changes or the node restarts)"
//   "... (UNAVAILABLE; retrying in 4s)"
// A non-retryable error is not tried again for the same spec generation
// while the agent runs; a retryable one backs off (retryBackoff*).
//
// Split as KubeVirt's virt-handler splits its work: NodeAgent is the loop
// and a VM's lifecycle, Devices the plugin side, the converter the domain.
//   agent.cpp         the loop: watch, queue, resync, domain polling, adoption,
//                     heartbeat and node registration
//   vm_lifecycle.cpp  one VM: reconcile, run/stop/evict its domain, clean up,
//                     its phase and Ready condition, the retry holds
//   devices.{h,cpp}   class Devices: its volumes and interfaces through the
//                     plugins, the node's MAC claims, image progress
//   node/domain/      the VM and the plugins' answers -> the domain XML
#pragma once

#include "api/types.h"
#include "common/metrics.h"
#include "node/agent/control_plane.h"
#include "node/agent/devices.h"
#include "node/libvirt.h"
#include "node/migration/source_job.h"

#include <vmhost/loader/plugin_host.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stop_token>
#include <string>

namespace vmhost::node {

inline bool isStoppedState(DomainState s) {
  return s == DomainState::kShutOff || s == DomainState::kCrashed;
}

struct AgentOptions {
  std::string nodeName;
  std::string dataDir;  // local state under <dataDir>/node
  std::map<std::string, std::string> labels;
  std::chrono::seconds stopGracePeriod{30};  // ACPI shutdown, then a forced stop
  std::chrono::seconds resync{10};
  std::chrono::seconds heartbeat{10};  // how often the node tells the controller it is alive
  std::chrono::milliseconds domainPoll{1000};  // how often domain states are compared
  double cpuAllocationRatio = 0;               // 0: the scheduler's default
  double memoryAllocationRatio = 0;
  // Published as the Node's vmhost.io/libvirt-endpoint annotation; empty:
  // the node's own libvirt URI.
  std::string libvirtEndpoint;
  // After a retryable error preparing a VM's devices, the next try waits
  // this long, doubled per consecutive failure up to retryBackoffMax.
  std::chrono::milliseconds retryBackoffInitial{1000};
  std::chrono::milliseconds retryBackoffMax{60000};
  // Live migration, as a target: where the source's QEMU sends the stream
  // (empty: tcp://<the host of libvirtEndpoint>), and whether it must be
  // TLS (libvirt's TLS migration with the cluster's certificates).
  std::string migrationUri;
  bool migrationTls = false;
  // As a source: how often the job's figures are read and the migration
  // plugin is asked what to do.
  std::chrono::milliseconds migrationPoll{1000};
};

class NodeAgent {
 public:
  // Everything passed by reference must outlive the agent.
  // `migration` (may be null: this node then fails the migrations it is
  // the source of) plans and steers outbound live migrations.
  NodeAgent(ControlPlane& control, Connection& libvirt, PluginInstance& storage,
            PluginInstance& network, metrics::Registry& metrics, AgentOptions options,
            PluginInstance* migration = nullptr);
  ~NodeAgent();
  NodeAgent(const NodeAgent&) = delete;
  NodeAgent& operator=(const NodeAgent&) = delete;

  // Creates or refreshes this node's Node object (capacity from libvirt).
  Status registerNode();

  // Runs until `stop` is requested.
  void run(std::stop_token stop);

  // Reconciles one VM now (tests and the loop use it). Returns the error
  // that kept it from converging, if any; a VM whose retries are held
  // (see above) is left alone and returns Ok.
  Status reconcile(const std::string& ns, const std::string& name);

  // Reconcile passes that ended with an error (for tests and metrics).
  uint64_t failures() const { return failures_; }

 private:
  using Clock = std::chrono::steady_clock;

  // ---- the loop (agent.cpp)
  bool adopt();  // lists domains: queues the VMs of those this node owns
  void pollDomains();

  // ---- one VM's lifecycle (vm_lifecycle.cpp)
  Status reconcileVm(const VmKey& key);
  Status ensureRunning(const api::VirtualMachine& vm, std::optional<Domain>& domain);
  Status ensureStopped(const api::VirtualMachine& vm, std::optional<Domain>& domain);
  // Stops the domain for an eviction request, then acknowledges it.
  Status ensureEvicted(const api::VirtualMachine& vm, std::optional<Domain>& domain);
  // Shuts the domain down (forced after the grace period); true once it is off.
  Result<bool> stopDomain(const VmKey& key, std::optional<Domain>& domain);
  // `migrated`: the VM runs elsewhere with its own copies of its disks
  // (Devices::release). Also set when the domain here was shut off by a
  // completed migration, or the source's marker file says so.
  Status cleanup(const VmKey& key, const std::string& expectedUid, bool deleteData,
                 bool migrated = false);
  Status setPhase(const api::VirtualMachine& vm, const std::string& phase,
                  const std::string& readyStatus, const std::string& reason,
                  const std::string& message);
  // Records an Event about `vm` through the control plane (best effort).
  void event(const api::VirtualMachine& vm, const char* type, const char* reason,
             const std::string& message);
  // Whether a start of `vm` must wait: a held non-retryable error for this
  // generation, or a retryable one still backing off.
  bool retryHeld(const api::VirtualMachine& vm);
  // Records the failure and writes it as the PrepareFailed condition; returns it.
  Error prepareFailed(const api::VirtualMachine& vm, const Error& error);
  std::string stateFile(const VmKey& key) const;

  // ---- live migration (vm_migration.cpp)
  // Whether this node is the target of the VM's migration (and not yet bound to it).
  bool migrationTarget(const api::VirtualMachine& vm) const {
    return vm.status.migration && vm.status.migration->targetNode == options_.nodeName &&
           vm.status.nodeName != options_.nodeName;
  }
  Status reconcileMigrationTarget(const api::VirtualMachine& vm, std::optional<Domain>& domain);
  Status reconcileMigrationSource(const api::VirtualMachine& vm, std::optional<Domain>& domain);
  Status reportMigration(const api::VirtualMachine& vm, api::MigrationState report);
  // Written by the source when libvirt reported its migration complete.
  std::string migratedMarker(const VmKey& key) const;
  std::string consoleLog(const VmKey& key) const;

  ControlPlane& control_;
  Connection& libvirt_;
  AgentOptions options_;
  metrics::Histogram* reconcileLatency_ = nullptr;
  metrics::Histogram* startSteps_ = nullptr;  // {node, step}
  metrics::Counter* reconcileErrors_ = nullptr;
  Devices devices_;
  PluginInstance* migrationPlugin_ = nullptr;

  // The loop's state.
  std::set<VmKey> queue_;
  std::set<VmKey> mine_;                           // VMs bound to this node, or with a domain here
  std::map<std::string, DomainState> lastStates_;  // by domain name

  // The lifecycle's state.
  std::map<VmKey, Clock::time_point> stopping_;  // ACPI shutdown sent at
  // The last failed prepare of a VM, until a prepare succeeds or the VM goes.
  struct RetryHold {
    std::string uid;
    int64_t generation = 0;
    bool retryable = false;
    uint32_t failures = 0;   // consecutive, for this uid and generation
    Clock::time_point next;  // retryable: the earliest next try
  };
  std::map<VmKey, RetryHold> holds_;
  std::atomic<uint64_t> failures_{0};

  // Outbound migrations running here, by VM (and the migration's uid).
  struct SourceJobEntry {
    std::string uid;
    std::unique_ptr<SourceJob> job;
  };
  std::map<VmKey, SourceJobEntry> sourceJobs_;
  // Incoming migrations whose domain runs here (resumed): since when. The
  // target reports the success itself only after kTargetHandoverGrace.
  std::map<VmKey, Clock::time_point> targetRunningSince_;
  static constexpr std::chrono::seconds kTargetHandoverGrace{10};
};

}  // namespace vmhost::node
