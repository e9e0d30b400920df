// vmhost-sim-nodes: many simulated vmhost nodes in one process, for the
// cluster scale benchmark (tests/bench/cluster/cluster_bench.py).
//
// What is real and what is simulated: every simulated node is the real node
// code, a NodeAgent and an RpcControlPlane (its own Cap'n Proto RPC
// connection to the controller, its own join, heartbeats, VM pushes and
// status reports), as `vmhost node` wires them. Only libvirt is simulated:
// each node has its own connection to libvirt's test driver on a node XML
// file of its own (test:///DIR/node-N.xml), because test:///default is one
// shared instance per process (every node would list, and adopt, the others'
// domains), while a file URI gives each connection a fresh, isolated
// instance. The storage and network plugins are loaded once from the config
// and shared; the benchmark's VMs have no disks and no NICs, so they are not
// called.
//
// usage: vmhost-sim-nodes --config FILE --controller ADDR:PORT --nodes N
//                         --work-dir DIR [--prefix NAME] [--first N]
//                         [--cpus N] [--memory-mib N]
// The config is a `vmhost node` config (node:, cluster: joinToken or
// joinTokenFile, plugins:); its node.heartbeatSeconds and resyncSeconds
// apply to every simulated node. Node i (first <= i < first + nodes) is
// named PREFIX<i> and keeps its state in DIR/PREFIX<i>. Runs until SIGTERM
// or SIGINT.
#include "common/config.h"
#include "common/metrics.h"
#include "node/agent/agent.h"
#include "node/agent/rpc_control_plane.h"
#include "node/libvirt.h"

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage =
    "usage: vmhost-sim-nodes --config FILE --controller ADDR:PORT --nodes N --work-dir DIR\n"
    "                        [--prefix NAME] [--first N] [--cpus N] [--memory-mib N]\n";

struct SimNode {
  std::string name;
  std::optional<vmhost::node::Connection> libvirt;
  std::unique_ptr<vmhost::node::RpcControlPlane> control;
  std::unique_ptr<vmhost::node::NodeAgent> agent;
  std::optional<std::jthread> thread;
};

// A libvirt test driver node description: its capacity is what the node
// registers.
std::string nodeXml(int cpus, long memoryMib) {
  return "<node>\n  <cpu><mhz>2800</mhz><model>x86_64</model><active>" + std::to_string(cpus) +
         "</active><nodes>1</nodes><sockets>1</sockets><cores>" + std::to_string(cpus) +
         "</cores><threads>1</threads></cpu>\n  <memory>" + std::to_string(memoryMib * 1024) +
         "</memory>\n</node>\n";
}

}  // namespace

int main(int argc, char** argv) {
  // Signals are taken by sigwait() below, never by another thread (the
  // plugins' and libvirt's included): blocked before any is created.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::string configFile, controller, workDir, prefix = "sim-";
  long nodes = 0, first = 0, memoryMib = 32768;
  int cpus = 16;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "vmhost-sim-nodes: %s needs a value\n%s", a.c_str(), kUsage);
      return 2;
    }
    std::string v = argv[++i];
    if (a == "--config") {
      configFile = v;
    } else if (a == "--controller") {
      controller = v;
    } else if (a == "--nodes") {
      nodes = std::strtol(v.c_str(), nullptr, 10);
    } else if (a == "--first") {
      first = std::strtol(v.c_str(), nullptr, 10);
    } else if (a == "--work-dir") {
      workDir = v;
    } else if (a == "--prefix") {
      prefix = v;
    } else if (a == "--cpus") {
      cpus = static_cast<int>(std::strtol(v.c_str(), nullptr, 10));
    } else if (a == "--memory-mib") {
      memoryMib = std::strtol(v.c_str(), nullptr, 10);
    } else {
      std::fprintf(stderr, "vmhost-sim-nodes: unexpected argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (configFile.empty() || controller.empty() || workDir.empty() || nodes <= 0 || nodes > 10000 ||
      first < 0 || cpus <= 0 || memoryMib <= 0) {
    std::fprintf(stderr, "%s", kUsage);
    return 2;
  }
  auto loaded = vmhost::loadConfigFile(configFile);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", loaded.error().message.c_str());
    return 1;
  }
  vmhost::HostConfig config = std::move(loaded.value());
  if (config.cluster.joinToken.empty()) {
    std::fprintf(stderr, "vmhost-sim-nodes: %s: cluster.joinToken or joinTokenFile is required\n",
                 configFile.c_str());
    return 2;
  }
  auto plugins = vmhost::loadPlugins(config);
  if (!plugins.ok()) {
    std::fprintf(stderr, "%s\n", plugins.error().message.c_str());
    return 1;
  }

  vmhost::metrics::Registry registry;  // shared: every series has a node label
  std::vector<SimNode> sims(static_cast<size_t>(nodes));
  auto started = std::chrono::steady_clock::now();
  for (long i = 0; i < nodes; ++i) {
    SimNode& sim = sims[static_cast<size_t>(i)];
    sim.name = prefix + std::to_string(first + i);
    fs::path dir = fs::absolute(fs::path(workDir) / sim.name);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      std::fprintf(stderr, "vmhost-sim-nodes: %s: %s\n", dir.c_str(), ec.message().c_str());
      return 1;
    }
    fs::path xml = dir / "libvirt-test-node.xml";
    {
      std::ofstream out(xml, std::ios::trunc);
      out << nodeXml(cpus, memoryMib);
      if (!out) {
        std::fprintf(stderr, "vmhost-sim-nodes: cannot write %s\n", xml.c_str());
        return 1;
      }
    }
    auto opened = vmhost::node::Connection::open("test://" + xml.string());
    if (!opened.ok()) {
      std::fprintf(stderr, "vmhost-sim-nodes: %s: libvirt: %s\n", sim.name.c_str(),
                   opened.error().message.c_str());
      return 1;
    }
    sim.libvirt.emplace(std::move(opened.value()));
    vmhost::node::RpcControlPlaneOptions rpc;
    rpc.controllerAddress = controller;
    rpc.joinToken = config.cluster.joinToken;
    rpc.nodeName = sim.name;
    sim.control = std::make_unique<vmhost::node::RpcControlPlane>(rpc);
    vmhost::node::AgentOptions options;
    options.nodeName = sim.name;
    options.dataDir = dir.string();
    options.labels = config.node.labels;
    options.stopGracePeriod = std::chrono::seconds(config.node.stopGracePeriodSeconds);
    options.resync = std::chrono::seconds(config.node.resyncSeconds);
    options.heartbeat = std::chrono::seconds(config.node.heartbeatSeconds);
    options.cpuAllocationRatio = config.node.cpuAllocationRatio;
    options.memoryAllocationRatio = config.node.memoryAllocationRatio;
    sim.agent = std::make_unique<vmhost::node::NodeAgent>(
        *sim.control, *sim.libvirt, plugins.value().get(VMHOST_KIND_STORAGE),
        plugins.value().get(VMHOST_KIND_NETWORK), registry, options);
  }
  // The agents join from their run loops, as `vmhost node` does.
  for (auto& sim : sims) {
    auto* agent = sim.agent.get();
    sim.thread.emplace([agent](std::stop_token stop) { agent->run(stop); });
  }
  std::printf("vmhost-sim-nodes: %ld nodes %s%ld..%s%ld started in %.1f s, controller %s\n", nodes,
              prefix.c_str(), first, prefix.c_str(), first + nodes - 1,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
              controller.c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  std::printf("vmhost-sim-nodes: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  std::fflush(stdout);
  for (auto& sim : sims) sim.thread->request_stop();
  for (auto& sim : sims) sim.thread.reset();  // joins
  for (auto& sim : sims) {
    sim.agent.reset();
    sim.control.reset();  // disconnects
  }
  return 0;
}
