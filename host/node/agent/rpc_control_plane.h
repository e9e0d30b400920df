// A `vmhost node` process's control plane: Cap'n Proto RPC to the
// controller (host/rpc/cluster.capnp). The node joins with the cluster's
// join token, receives the VMs bound to it (pushed, not polled), reports
// their status and heartbeats. When the controller goes away the node keeps
// its guests running and its last view of their VMs, and reconnects with
// exponential backoff (0.5 s doubling to 30 s); after a rejoin the agent
// relists.
//
// Threading: one KJ event loop on a thread of its own owns the connection;
// the agent's calls cross to it with kj::Executor::executeSync and wait at
// most kCallTimeout.
#pragma once

#include "node/agent/control_plane.h"

#include <chrono>
#include <memory>
#include <string>

namespace vmhost::node {

struct RpcControlPlaneOptions {
  std::string controllerAddress;  // HOST:PORT
  std::string joinToken;
  std::string nodeName;
  uint32_t protocolVersion = 0;  // 0: this build's; tests set others
  // Mutual TLS: the cluster CA, and this node's certificate and key (PEM).
  // All empty: plain TCP (tests on loopback).
  std::string caPem, certPem, keyPem;
};

class RpcControlPlane final : public ControlPlane {
 public:
  static constexpr std::chrono::seconds kCallTimeout{15};

  explicit RpcControlPlane(RpcControlPlaneOptions options);
  ~RpcControlPlane() override;  // disconnects; the guests keep running
  RpcControlPlane(const RpcControlPlane&) = delete;
  RpcControlPlane& operator=(const RpcControlPlane&) = delete;

  // Registration doubles as the join: the node object goes with it.
  Status registerNode(const api::Node& node) override;
  Status heartbeat() override;
  Result<VmSnapshot> listAndWatch() override;
  Result<std::optional<api::VirtualMachine>> getVm(const std::string& ns,
                                                   const std::string& name) override;
  // Only on a `deleted` event from the controller (not `unbound`, not a VM
  // missing from a rejoin's list).
  bool confirmedDeleted(const std::string& ns, const std::string& name) override;
  Status updateVmStatus(const std::string& ns, const std::string& name,
                        const std::function<bool(api::VirtualMachineStatus&)>& mutate) override;
  // Sent to the controller without waiting for it; dropped while not joined.
  void recordEvent(api::EventRecord event) override;
  Status reportMigration(const std::string& ns, const std::string& name,
                         const api::MigrationState& report) override;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace vmhost::node
