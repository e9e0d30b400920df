// A VM's devices on this node, through the storage and network plugins:
// preparing and releasing its volumes and interfaces, the MACs the node's VMs
// hold, and the storage plugin's image-progress reports, which become the
// VM's ImagesReady condition. The node agent's lifecycle (vm_lifecycle.cpp)
// decides when; this says how (KubeVirt's virt-handler keeps device
// management apart from domain management the same way).
//
// Errors name the device and keep the plugin's code and retryable flag:
//   "volume <volume>: storage plugin '<plugin>': <the plugin's message>"
//   "interface <interface>: network plugin '<plugin>': <the plugin's message>"
// (the "<kind> plugin '<plugin>': " part is the plugin loader's, for every
// call; see docs/plugin-author-guide.md, "Errors").
#pragma once

#include "api/types.h"
#include "common/metrics.h"
#include "node/agent/control_plane.h"
#include "node/domain/converter.h"

#include <vmhost/loader/plugin_host.h>
#include <vmhost/schema/network.capnp.h>
#include <vmhost/schema/storage.capnp.h>

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace vmhost::node {

using VmKey = std::pair<std::string, std::string>;  // namespace, name

class Devices {
 public:
  // Everything passed by reference must outlive this. `startSteps` (may be
  // null) times the storage and network steps of a start.
  Devices(ControlPlane& control, PluginInstance& storage, PluginInstance& network,
          std::string nodeName, metrics::Histogram* startSteps);
  ~Devices();
  Devices(const Devices&) = delete;
  Devices& operator=(const Devices&) = delete;

  // The plugins' answers for one VM, in the spec's order. The readers that
  // attachments() returns live as long as this object.
  class Prepared {
   public:
    PluginAttachments attachments() const;

   private:
    friend class Devices;
    std::vector<Reply<schema::VolumeAttachment>> volumes_;
    std::vector<Reply<schema::InterfaceAttachment>> interfaces_;
  };

  // Prepares every volume, then attaches every interface (each call is
  // idempotent, so a retry after a failure repeats the ones that worked).
  // Stops at the first error.
  Result<Prepared> prepare(const api::VirtualMachine& vm);

  // `deleteData`: the VM is deleted (persistent disks with reclaimPolicy
  // Delete and empty disks go); otherwise only what this node attached.
  // `migrated`: the VM was live-migrated and runs on another node with its
  // own copy of its non-shared disks (or this node was a migration's target
  // that failed): this node's copies go whatever the reclaim policy
  // (VolumeRelease.migrated; shared volumes stay, the plugin knows which).
  // Tries every device; the error is the last failure.
  Status release(const api::VirtualMachine& vm, bool deleteData, bool migrated = false);

  // Releases the VM's ephemeral volumes only: an overlay lives while its
  // domain runs, so each start gets a fresh one on the base image.
  Status releaseEphemeral(const api::VirtualMachine& vm);

  // Records that the VM `key` uses `macs` (its previous claims are
  // replaced). A MAC another VM of this node holds is refused
  // (ALREADY_EXISTS, retryable: the other VM may go) instead of breaking
  // both guests' networking; so is one MAC on two of the VM's interfaces.
  Status claimMacs(const VmKey& key, const std::vector<api::InterfaceStatus>& macs);

  // Drops the VM's MAC claims; whether it held any.
  bool forget(const VmKey& key);

 private:
  void onProgress(const std::string& uid, const std::string& what, uint64_t done, uint64_t total);

  ControlPlane& control_;
  PluginInstance& storage_;
  PluginInstance& network_;
  std::string nodeName_;
  metrics::Histogram* startSteps_;  // {node, step}; may be null

  // MAC (lower case) -> the VM of this node that has it.
  std::map<std::string, VmKey> macOwners_;

  // The VM whose disks are being prepared: the storage plugin's progress
  // reports (from any thread) are written to its status.
  struct Preparing {
    std::string uid;
    VmKey key;
    std::chrono::steady_clock::time_point lastReport{};
  };
  std::mutex progressMu_;
  Preparing preparing_;
};

}  // namespace vmhost::node
