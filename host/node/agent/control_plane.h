// What the node agent needs from the controller side, and nothing more:
// register the node, see the VMs bound to it (a snapshot, then a feed of
// changes), read one, and write the node-owned part of a VM's status.
//
// Two implementations share the agent's code path:
//   StoreControlPlane  the all-in-one process: the store itself.
//   (node/rpc)         a `vmhost node` process: Cap'n Proto RPC to the
//                      controller, which does the store writes.
#pragma once

#include "api/event_recorder.h"
#include "api/types.h"
#include "common/result.h"
#include "store/store.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vmhost::node {

struct VmEvent {
  enum class Type {
    kUpsert,   // `vm` was created or changed
    kDeleted,  // `vm` (metadata.ns/name/uid) is gone
    kRelist,   // events were lost: list again
  };
  Type type = Type::kUpsert;
  api::VirtualMachine vm;
};

class VmFeed {
 public:
  virtual ~VmFeed() = default;
  // The next event, without blocking; nullopt when there is none now.
  virtual std::optional<VmEvent> tryNext() = 0;
  // `notify` is called (from any thread) when an event may be waiting.
  virtual void setNotify(std::function<void()> notify) = 0;
};

struct VmSnapshot {
  // Every VM the node may have to act on (the store gives all; a controller
  // gives those bound to the node). The agent filters by status.nodeName.
  std::vector<api::VirtualMachine> vms;
  std::unique_ptr<VmFeed> feed;  // changes after the snapshot
};

class ControlPlane {
 public:
  virtual ~ControlPlane() = default;

  // Creates or refreshes the node's object: capacity, labels, Ready.
  virtual Status registerNode(const api::Node& node) = 0;

  // The node is alive. The store version has nothing to do; over RPC it
  // is what keeps the node Ready.
  virtual Status heartbeat() = 0;

  virtual Result<VmSnapshot> listAndWatch() = 0;

  // The VM as the control plane has it now; nullopt when it is gone.
  virtual Result<std::optional<api::VirtualMachine>> getVm(const std::string& ns,
                                                           const std::string& name) = 0;

  // After getVm() found nothing: whether the VM is known to be deleted (its
  // data may go), rather than merely not bound to this node any more or
  // unknown after a reconnect (its disks must stay: it may run elsewhere).
  virtual bool confirmedDeleted(const std::string& ns, const std::string& name) = 0;

  // Applies `mutate` to the VM's current status and writes it when it
  // returns true (retrying on conflicts). NOT_FOUND when the VM is gone.
  virtual Status updateVmStatus(const std::string& ns, const std::string& name,
                                const std::function<bool(api::VirtualMachineStatus&)>& mutate) = 0;

  // Records an Event about a VM bound to this node (best effort: never
  // blocks on the store or the network, never fails the caller). The
  // controller side sets who reported it (source: vmhost-node, this node).
  virtual void recordEvent(api::EventRecord event) = 0;

  // Reports this node's side of the VM's live migration: `report` is its
  // view of status.migration, merged by api::applyMigrationReport (which
  // says what each side may write). FAILED_PRECONDITION, not retryable,
  // when it is refused (e.g. the migration already failed); NOT_FOUND when
  // the VM is gone.
  virtual Status reportMigration(const std::string& ns, const std::string& name,
                                 const api::MigrationState& report) = 0;
};

// The all-in-one's control plane: the store, directly, and the process's
// event recorder.
class StoreControlPlane final : public ControlPlane {
 public:
  // Both must outlive it; `nodeName` is the source of the node's events.
  StoreControlPlane(store::Store& store, api::EventSink& events, std::string nodeName)
      : store_(store), events_(events), nodeName_(std::move(nodeName)) {}

  Status registerNode(const api::Node& node) override;
  Status heartbeat() override { return Ok{}; }
  Result<VmSnapshot> listAndWatch() override;
  Result<std::optional<api::VirtualMachine>> getVm(const std::string& ns,
                                                   const std::string& name) override;
  // The store is the truth: absent is deleted.
  bool confirmedDeleted(const std::string&, const std::string&) override { return true; }
  Status updateVmStatus(const std::string& ns, const std::string& name,
                        const std::function<bool(api::VirtualMachineStatus&)>& mutate) override;
  void recordEvent(api::EventRecord event) override {
    event.source = api::EventSource{"vmhost-node", nodeName_};
    events_.record(std::move(event));
  }
  Status reportMigration(const std::string& ns, const std::string& name,
                         const api::MigrationState& report) override;

 private:
  store::Store& store_;
  api::EventSink& events_;
  std::string nodeName_;
};

}  // namespace vmhost::node
