// The controller's side of the node protocol (host/rpc/cluster.capnp): nodes
// join over Cap'n Proto RPC with the cluster's join token, get the VMs bound
// to them pushed (a watch, not polling), report the node-owned part of VM
// status and heartbeat. A node whose heartbeats stop for longer than the
// timeout is marked NotReady (its Ready condition False, reason
// NodeStatusUnknown); the scheduler places nothing new there.
//
// Threading: one KJ event loop on its own thread serves every connection;
// store writes are synchronous calls from that thread; store watch
// notifications wake it through a cross-thread fulfiller.
//
// Untrusted peers: every message is read with bounded ReaderOptions
// (traversal limit kMaxMessageWords, nesting 64); object payloads above
// kMaxObjectBytes are refused; a refused join is logged with the peer's
// address and the reason, and changes nothing.
#pragma once

#include "api/event_recorder.h"
#include "common/metrics.h"
#include "common/result.h"
#include "store/store.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace vmhost::controller {

struct NodeServerOptions {
  std::string listenAddress = "127.0.0.1:7070";  // ":0" picks a port (see start())
  std::string joinToken;                         // required without TLS, 16+ characters
  std::chrono::seconds heartbeatTimeout{40};
  // Mutual TLS (vmhost init's PKI): the server presents certPem/keyPem and
  // accepts only clients with a certificate signed by caPem; a node's
  // certificate CN is its name, and it may join only as that name. All
  // empty: plain TCP and the join token (tests on loopback).
  std::string caPem, certPem, keyPem;
  // Where the nodes' events go (recordEvent); null: they are dropped.
  // Must outlive the server.
  api::EventSink* events = nullptr;
};

class NodeServer {
 public:
  static constexpr size_t kMaxMessageWords = 8u * 1024 * 1024 / 8;  // 8 MiB
  static constexpr size_t kMaxObjectBytes = 2u * 1024 * 1024;

  // `store` and `metrics` must outlive the server.
  NodeServer(store::Store& store, metrics::Registry& metrics, NodeServerOptions options);
  ~NodeServer();  // stop()
  NodeServer(const NodeServer&) = delete;
  NodeServer& operator=(const NodeServer&) = delete;

  // Binds and serves on a thread of its own; returns the bound port.
  Result<uint16_t> start();
  void stop();

  struct Impl;  // public so the RPC servers in the .cpp can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace vmhost::controller
