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
// defined, for the plugins' release calls) is kept under
// <dataDir>/node/vms/, so a VM deleted while the agent was down is still
// cleaned up when it comes back.
#pragma once

#include "api/types.h"
#include "common/metrics.h"
#include "node/agent/control_plane.h"
#include "node/libvirt.h"

#include <vmhost/loader/plugin_host.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <stop_token>
#include <string>

namespace vmhost::node {

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
};

class NodeAgent {
 public:
  // Everything passed by reference must outlive the agent.
  NodeAgent(ControlPlane& control, Connection& libvirt, PluginInstance& storage,
            PluginInstance& network, metrics::Registry& metrics, AgentOptions options);
  ~NodeAgent();
  NodeAgent(const NodeAgent&) = delete;
  NodeAgent& operator=(const NodeAgent&) = delete;

  // Creates or refreshes this node's Node object (capacity from libvirt).
  Status registerNode();

  // Runs until `stop` is requested.
  void run(std::stop_token stop);

  // Reconciles one VM now (tests and the loop use it). Returns the error
  // that kept it from converging, if any.
  Status reconcile(const std::string& ns, const std::string& name);

  // Reconcile passes that ended with an error (for tests and metrics).
  uint64_t failures() const { return failures_; }

 private:
  using VmKey = std::pair<std::string, std::string>;

  Status ensureRunning(const api::VirtualMachine& vm, std::optional<Domain>& domain);
  Status ensureStopped(const api::VirtualMachine& vm, std::optional<Domain>& domain);
  // Stops the domain for an eviction request, then acknowledges it.
  Status ensureEvicted(const api::VirtualMachine& vm, std::optional<Domain>& domain);
  // Shuts the domain down (forced after the grace period); true once it is off.
  Result<bool> stopDomain(const VmKey& key, std::optional<Domain>& domain);
  Status cleanup(const VmKey& key, const std::string& expectedUid, bool deleteData);
  Status setPhase(const api::VirtualMachine& vm, const std::string& phase,
                  const std::string& readyStatus, const std::string& reason,
                  const std::string& message);
  Result<DomainSpec> prepare(const api::VirtualMachine& vm,
                             std::vector<api::InterfaceStatus>& macs);
  // `deleteData`: the VM is deleted (persistent disks with reclaimPolicy
  // Delete and empty disks go); otherwise only what this node attached.
  Status releaseDevices(const api::VirtualMachine& vm, bool deleteData);
  // Releases the VM's ephemeral volumes only: an overlay lives while its
  // domain runs, so each start gets a fresh one on the base image.
  Status releaseEphemeral(const api::VirtualMachine& vm);
  std::string stateFile(const VmKey& key) const;
  std::string consoleLog(const VmKey& key) const;
  bool adopt();  // lists domains: queues the VMs of those this node owns
  void pollDomains();

  ControlPlane& control_;
  Connection& libvirt_;
  PluginInstance& storage_;
  PluginInstance& network_;
  AgentOptions options_;
  metrics::Histogram* reconcileLatency_ = nullptr;
  metrics::Histogram* startSteps_ = nullptr;  // {node, step}
  metrics::Counter* reconcileErrors_ = nullptr;

  std::set<VmKey> queue_;
  std::set<VmKey> mine_;  // VMs bound to this node, or with a domain here
  std::map<VmKey, std::chrono::steady_clock::time_point> stopping_;  // ACPI shutdown sent at
  std::map<std::string, DomainState> lastStates_;                    // by domain name
  // MAC -> the VM of this node that has it: a second VM asking for a MAC in
  // use here is refused (PrepareFailed) instead of breaking both guests'
  // networking. Rebuilt from the VMs' status on every (re)list.
  std::map<std::string, VmKey> macOwners_;
  Status claimMacs(const VmKey& key, const std::vector<api::InterfaceStatus>& macs);

  // The VM whose disks are being prepared: the storage plugin's progress
  // reports (from any thread) are written to its status.
  struct Preparing {
    std::string uid;
    VmKey key;
    std::chrono::steady_clock::time_point lastReport{};
  };
  void onProgress(const std::string& uid, const std::string& what, uint64_t done, uint64_t total);
  std::mutex progressMu_;
  Preparing preparing_;
  std::atomic<uint64_t> failures_{0};
};

}  // namespace vmhost::node
