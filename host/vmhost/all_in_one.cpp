#include "vmhost/all_in_one.h"

#include "api/event_recorder.h"
#include "apiserver/server.h"
#include "common/config.h"
#include "common/metrics.h"
#include "controller/eviction.h"
#include "controller/migration.h"
#include "controller/node_server.h"
#include "controller/recovery.h"
#include "controller/scheduling.h"
#include "node/agent/agent.h"
#include "node/agent/console.h"
#include "node/agent/rpc_control_plane.h"
#include "node/libvirt.h"
#include "store/backends.h"
#include "vmhost/cluster_tls.h"
#include "vmhost/usage.h"

#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <regex>
#include <thread>

namespace vmhost::cli {
namespace {

namespace fs = std::filesystem;

enum class Mode { kAllInOne, kController, kNode };

const char* modeName(Mode m) {
  return m == Mode::kAllInOne ? "all-in-one" : m == Mode::kController ? "controller" : "node";
}

std::string usage(Mode m) {
  std::string u = std::string("usage: vmhost ") + modeName(m) + " --config FILE";
  if (m != Mode::kNode) u += " [--listen ADDR:PORT]";
  if (m == Mode::kController) u += " [--cluster-listen ADDR:PORT]";
  if (m == Mode::kNode) u += " [--controller ADDR:PORT]";
  u += " [--data-dir DIR]";
  if (m != Mode::kController) u += " [--node-name NAME]";
  u += "\n";
  u += m == Mode::kAllInOne
           ? "  The controller and a node in one process, with the embedded store.\n"
       : m == Mode::kController
           ? "  The API, the store, the reconcilers and the node server nodes join.\n"
           : "  A host: joins the controller and runs the VMs bound to it.\n";
  return u;
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  std::string name(buf);
  for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto dot = name.find('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}

// The embed root of a qemu:///embed?root=DIR URI, if it is one.
std::string embedRoot(const std::string& uri) {
  static const std::regex kEmbed(R"(qemu:///embed\?root=([^&]+))");
  std::smatch m;
  return std::regex_search(uri, m, kEmbed) ? m[1].str() : std::string();
}

// The one wiring of every mode: the controller side (store, API,
// scheduler, and in controller mode the node server) and the node side
// (libvirt, plugins, agent) are the same components; only what connects
// the agent to the controller differs (the store itself, or RPC).
int runHost(Mode mode, const std::vector<std::string>& args) {
  const bool controllerSide = mode != Mode::kNode;
  const bool nodeSide = mode != Mode::kController;
  const std::string me = std::string("vmhost ") + modeName(mode);
  if (helpRequested(args)) return printUsage(usage(mode));
  std::string configFile, listen, dataDir, nodeName, clusterListen, controllerAddress;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "%s: %s needs a value\n%s", me.c_str(), flag, usage(mode).c_str());
        std::exit(2);
      }
      return args[++i];
    };
    const std::string& a = args[i];
    if (a == "--config")
      configFile = value("--config");
    else if (a == "--listen" && mode != Mode::kNode)
      listen = value("--listen");
    else if (a == "--data-dir")
      dataDir = value("--data-dir");
    else if (a == "--node-name" && nodeSide)
      nodeName = value("--node-name");
    else if (a == "--cluster-listen" && mode == Mode::kController)
      clusterListen = value("--cluster-listen");
    else if (a == "--controller" && mode == Mode::kNode)
      controllerAddress = value("--controller");
    else {
      return usageError(
          me, (a.size() > 1 && a[0] == '-' ? "unknown flag '" : "unexpected argument '") + a + "'",
          usage(mode));
    }
  }
  if (configFile.empty()) {
    std::fprintf(stderr, "%s: --config is required\n%s", me.c_str(), usage(mode).c_str());
    return 2;
  }
  auto loaded = loadConfigFile(configFile);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", loaded.error().message.c_str());
    return 1;
  }
  HostConfig config = std::move(loaded.value());
  if (!listen.empty()) config.listen = listen;
  if (!dataDir.empty()) config.dataDir = fs::absolute(dataDir).lexically_normal().string();
  if (!nodeName.empty()) config.node.name = nodeName;
  if (config.node.name.empty()) config.node.name = hostname();
  if (!clusterListen.empty()) config.cluster.listen = clusterListen;
  if (!controllerAddress.empty()) config.cluster.controller = controllerAddress;
  if (mode == Mode::kNode && config.cluster.controller.empty()) {
    std::fprintf(stderr, "%s: %s: cluster.controller (or --controller) is required\n", me.c_str(),
                 configFile.c_str());
    return 2;
  }
  // TLS: a controller whose data directory `vmhost init` prepared serves
  // https (bearer tokens) and mutual TLS to nodes; a node with
  // cluster.caFile gets its certificate and joins with it.
  std::optional<ControllerTls> controllerTls;
  std::optional<NodeTls> nodeTls;
  if (mode != Mode::kNode) {
    auto loaded = loadControllerTls(config.dataDir);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s: %s\n", me.c_str(), loaded.error().message.c_str());
      return 1;
    }
    controllerTls = std::move(loaded.value());
    if (controllerTls && config.cluster.joinToken.empty()) {
      config.cluster.joinToken = controllerTls->joinToken;
    }
    // Without TLS and tokens the API may listen on loopback only: in
    // all-in-one mode, or a test cluster's controller (cluster.insecure).
    std::string apiHost = config.listen.substr(0, config.listen.rfind(':'));
    bool loopback = apiHost.rfind("127.", 0) == 0 || apiHost == "localhost" || apiHost == "[::1]";
    if (!controllerTls && !loopback) {
      std::fprintf(stderr,
                   "%s: the API would listen on %s without TLS or a token: listen on loopback, "
                   "or run `vmhost init --data-dir %s` first\n",
                   me.c_str(), config.listen.c_str(), config.dataDir.c_str());
      return 2;
    }
  }
  if (mode == Mode::kController) {
    if (!controllerTls && !config.cluster.insecure) {
      std::fprintf(stderr,
                   "%s: %s has no cluster PKI: run `vmhost init --data-dir %s` first (or set "
                   "cluster.insecure: true for a test cluster on a private network)\n",
                   me.c_str(), config.dataDir.c_str(), config.dataDir.c_str());
      return 2;
    }
    if (!controllerTls) {
      std::fprintf(stderr,
                   "%s: WARNING: cluster.insecure: the API and node traffic are NOT encrypted "
                   "or authenticated beyond the join token\n",
                   me.c_str());
    }
  }
  if (mode == Mode::kController && !controllerTls && config.cluster.joinToken.empty()) {
    std::fprintf(stderr,
                 "%s: %s: cluster.joinToken or cluster.joinTokenFile is required (nodes join "
                 "with it)\n",
                 me.c_str(), configFile.c_str());
    return 2;
  }
  if (mode == Mode::kNode && !config.cluster.caFile.empty()) {
    auto t = bootstrapNode(config);
    if (!t.ok()) {
      std::fprintf(stderr, "%s: %s\n", me.c_str(), t.error().message.c_str());
      return 1;
    }
    nodeTls = std::move(t.value());
    // libvirt's TLS migration reads the same certificate (qemu.conf's
    // migrate_tls_x509_cert_dir names this directory).
    std::string dir =
        config.node.migrationTlsDir.empty()
            ? (std::filesystem::path(config.dataDir) / "node" / "migration-tls").string()
            : config.node.migrationTlsDir;
    if (auto s = writeMigrationTls(*nodeTls, dir); !s.ok()) {
      std::fprintf(stderr, "%s: %s\n", me.c_str(), s.error().message.c_str());
      return 1;
    }
  } else if (mode == Mode::kNode && !config.cluster.insecure) {
    std::fprintf(stderr,
                 "%s: %s: cluster.caFile and cluster.apiServer are required to join with TLS "
                 "(or cluster.insecure: true for a test cluster on a private network)\n",
                 me.c_str(), configFile.c_str());
    return 2;
  } else if (mode == Mode::kNode && config.cluster.joinToken.empty()) {
    std::fprintf(stderr,
                 "%s: %s: cluster.joinToken or cluster.joinTokenFile is required (the node "
                 "joins with it)\n",
                 me.c_str(), configFile.c_str());
    return 2;
  }

  std::error_code ec;
  fs::create_directories(config.dataDir, ec);
  if (ec) {
    std::fprintf(stderr, "%s: data directory: %s\n", config.dataDir.c_str(), ec.message().c_str());
    return 1;
  }
  auto plugins = loadPlugins(config);
  if (!plugins.ok()) {
    std::fprintf(stderr, "%s\n", plugins.error().message.c_str());
    return 1;
  }
  std::unique_ptr<store::Store> store;
  if (controllerSide) {
    // Events are best effort (Kubernetes' are too): they need not cost an
    // fsync each.
    config.store.bestEffortResources = {api::kEventsResource};
    auto opened = store::openStore(config.store, config.dataDir);
    if (!opened.ok()) {
      std::fprintf(stderr, "%s: store: %s\n", config.dataDir.c_str(),
                   opened.error().message.c_str());
      return 1;
    }
    store = std::move(opened.value());
  }
  std::string uri = resolvedLibvirtUri(config);
  std::optional<node::Connection> libvirt;
  if (nodeSide) {
    if (std::string root = embedRoot(uri); !root.empty()) {
      if (auto s = node::prepareEmbedRoot(root); !s.ok()) {
        std::fprintf(stderr, "libvirt embed root %s: %s\n", root.c_str(),
                     s.error().message.c_str());
        return 1;
      }
    }
    auto opened = node::Connection::open(uri);
    if (!opened.ok()) {
      std::fprintf(stderr, "libvirt %s: %s\n", uri.c_str(), opened.error().message.c_str());
      return 1;
    }
    libvirt.emplace(std::move(opened.value()));
  }

  // Signals are taken by sigwait() below, never by the worker threads.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  metrics::Registry registry;
  if (auto h = registry.histogram("vmhost_plugin_call_duration_seconds",
                                  "Plugin calls through the ABI, by plugin, method and status",
                                  {"kind", "plugin", "method", "code"});
      h.ok()) {
    metrics::Histogram* histogram = h.value();
    for (auto kind : kAllKinds) {
      plugins.value().get(kind).setObserver([histogram](const PluginInfo& info, uint32_t method,
                                                        int32_t code, double seconds) {
        histogram->observe(
            {kindName(info.kind), info.name, std::to_string(method), statusName(code)}, seconds);
      });
    }
  }

  // ---- controller side
  std::optional<node::LibvirtConsoles> consoles;
  if (mode == Mode::kAllInOne) consoles.emplace(*libvirt);
  std::unique_ptr<apiserver::Server> server;
  std::unique_ptr<controller::SchedulingController> scheduling;
  std::unique_ptr<controller::EvictionController> eviction;
  std::unique_ptr<controller::MigrationController> migration;
  std::unique_ptr<controller::DeadNodeRecovery> recovery;
  std::unique_ptr<controller::NodeServer> nodeServer;
  // Events (api/event_recorder.h): recorded by the controllers and the
  // nodes, written by this recorder, expired after the TTL.
  std::unique_ptr<api::EventRecorder> events;
  std::unique_ptr<api::EventExpiry> eventExpiry;
  uint16_t apiPort = 0, clusterPort = 0;
  if (controllerSide) {
    events = std::make_unique<api::EventRecorder>(*store, &registry);
    eventExpiry = std::make_unique<api::EventExpiry>(
        *store, api::EventExpiryOptions{std::chrono::seconds(config.eventTtlSeconds),
                                        std::chrono::seconds(60)});
    apiserver::ServerOptions serverOptions;
    serverOptions.listenAddress = config.listen;
    // Consoles of VMs on other hosts go through their nodes: not yet.
    serverOptions.consoles = consoles ? &*consoles : nullptr;
    if (controllerTls) {
      serverOptions.tlsCertPem = controllerTls->certPem;
      serverOptions.tlsKeyPem = controllerTls->keyPem;
      serverOptions.bearerTokens = {controllerTls->apiToken};
      serverOptions.joinToken = config.cluster.joinToken;
      const ControllerTls* t = &*controllerTls;
      serverOptions.issueNodeCertificate = [t](const std::string& node, const std::string& csr) {
        return issueNodeCertificate(*t, node, csr);
      };
    }
    server = std::make_unique<apiserver::Server>(*store, registry, serverOptions);
    auto port = server->start();
    if (!port.ok()) {
      std::fprintf(stderr, "listen %s: %s\n", config.listen.c_str(), port.error().message.c_str());
      return 1;
    }
    apiPort = port.value();
    controller::SchedulingOptions schedulingOptions;
    schedulingOptions.events = events.get();
    scheduling = std::make_unique<controller::SchedulingController>(
        *store, plugins.value().get(VMHOST_KIND_SCHEDULER), registry, schedulingOptions);
    // Drains (vmctl drain): stops or re-places a drained node's VMs.
    controller::EvictionOptions evictionOptions;
    evictionOptions.events = events.get();
    eviction = std::make_unique<controller::EvictionController>(*store, evictionOptions);
    // Live migrations (VirtualMachineMigration objects).
    controller::MigrationOptions migrationOptions;
    migrationOptions.parallelMigrationsPerCluster = config.migrations.parallelMigrationsPerCluster;
    migrationOptions.parallelOutboundMigrationsPerNode =
        config.migrations.parallelOutboundMigrationsPerNode;
    migrationOptions.targetPrepareTimeout =
        std::chrono::seconds(config.migrations.targetPrepareTimeoutSeconds);
    migrationOptions.events = events.get();
    migration =
        std::make_unique<controller::MigrationController>(*store, *scheduling, migrationOptions);
  }
  if (mode == Mode::kController) {
    // Lost nodes' VMs (there is no elsewhere in all-in-one).
    controller::RecoveryOptions recoveryOptions;
    recoveryOptions.gracePeriod = std::chrono::seconds(config.cluster.deadNodeGracePeriodSeconds);
    recoveryOptions.sharedStorage = (plugins.value().get(VMHOST_KIND_STORAGE).info().capabilities &
                                     VMHOST_CAP_STORAGE_SHARED) != 0;
    recoveryOptions.events = events.get();
    recovery = std::make_unique<controller::DeadNodeRecovery>(*store, recoveryOptions);
    controller::NodeServerOptions nodeOptions;
    nodeOptions.listenAddress = config.cluster.listen;
    nodeOptions.joinToken = config.cluster.joinToken;
    nodeOptions.heartbeatTimeout = std::chrono::seconds(config.cluster.heartbeatTimeoutSeconds);
    nodeOptions.events = events.get();
    if (controllerTls) {
      nodeOptions.caPem = controllerTls->ca.certPem;
      nodeOptions.certPem = controllerTls->certPem;
      nodeOptions.keyPem = controllerTls->keyPem;
    }
    nodeServer = std::make_unique<controller::NodeServer>(*store, registry, nodeOptions);
    auto port = nodeServer->start();
    if (!port.ok()) {
      std::fprintf(stderr, "cluster.listen %s: %s\n", config.cluster.listen.c_str(),
                   port.error().message.c_str());
      return 1;
    }
    clusterPort = port.value();
  }

  // ---- node side
  std::unique_ptr<node::ControlPlane> controlPlane;
  std::unique_ptr<node::NodeAgent> agent;
  if (nodeSide) {
    if (mode == Mode::kAllInOne) {
      controlPlane = std::make_unique<node::StoreControlPlane>(*store, *events, config.node.name);
    } else {
      node::RpcControlPlaneOptions rpcOptions;
      rpcOptions.controllerAddress = config.cluster.controller;
      rpcOptions.joinToken = config.cluster.joinToken;
      rpcOptions.nodeName = config.node.name;
      if (nodeTls) {
        rpcOptions.caPem = nodeTls->caPem;
        rpcOptions.certPem = nodeTls->certPem;
        rpcOptions.keyPem = nodeTls->keyPem;
      }
      controlPlane = std::make_unique<node::RpcControlPlane>(rpcOptions);
    }
    node::AgentOptions agentOptions;
    agentOptions.nodeName = config.node.name;
    agentOptions.dataDir = config.dataDir;
    agentOptions.labels = config.node.labels;
    agentOptions.stopGracePeriod = std::chrono::seconds(config.node.stopGracePeriodSeconds);
    agentOptions.resync = std::chrono::seconds(config.node.resyncSeconds);
    agentOptions.heartbeat = std::chrono::seconds(config.node.heartbeatSeconds);
    agentOptions.cpuAllocationRatio = config.node.cpuAllocationRatio;
    agentOptions.memoryAllocationRatio = config.node.memoryAllocationRatio;
    agentOptions.libvirtEndpoint = config.node.libvirtEndpoint;
    // Migration streams are TLS in a cluster with a PKI (libvirt's TLS
    // migration with the cluster's certificates, docs/operator-guide.md).
    agentOptions.migrationTls = nodeTls.has_value();
    agent = std::make_unique<node::NodeAgent>(
        *controlPlane, *libvirt, plugins.value().get(VMHOST_KIND_STORAGE),
        plugins.value().get(VMHOST_KIND_NETWORK), registry, agentOptions,
        &plugins.value().get(VMHOST_KIND_MIGRATION));
    // All-in-one: the node is registered before the API says it is up. A
    // node process joins in its run loop (retrying while the controller is
    // away), so it starts even when the controller does not answer yet.
    if (mode == Mode::kAllInOne) {
      if (auto s = agent->registerNode(); !s.ok()) {
        std::fprintf(stderr, "node %s: %s\n", config.node.name.c_str(), s.error().message.c_str());
        return 1;
      }
    }
  }

  std::string host = config.listen.substr(0, config.listen.rfind(':'));
  if (mode == Mode::kAllInOne) {
    std::printf("vmhost all-in-one: API on http://%s:%u, node %s, libvirt %s, data in %s\n",
                host.c_str(), static_cast<unsigned>(apiPort), config.node.name.c_str(), uri.c_str(),
                config.dataDir.c_str());
  } else if (mode == Mode::kController) {
    std::string chost = config.cluster.listen.substr(0, config.cluster.listen.rfind(':'));
    std::printf("vmhost controller: API on %s://%s:%u, nodes join on %s:%u%s, data in %s\n",
                controllerTls ? "https" : "http", host.c_str(), static_cast<unsigned>(apiPort),
                chost.c_str(), static_cast<unsigned>(clusterPort),
                controllerTls ? " (mutual TLS)" : "", config.dataDir.c_str());
  } else {
    std::printf("vmhost node: %s, controller %s, libvirt %s, data in %s\n",
                config.node.name.c_str(), config.cluster.controller.c_str(), uri.c_str(),
                config.dataDir.c_str());
  }
  std::fflush(stdout);

  {
    std::optional<std::jthread> controllerThread, evictionThread, recoveryThread, nodeThread,
        expiryThread, migrationThread;
    if (eventExpiry) expiryThread.emplace([&](std::stop_token stop) { eventExpiry->run(stop); });
    if (recovery) recoveryThread.emplace([&](std::stop_token stop) { recovery->run(stop); });
    if (scheduling) controllerThread.emplace([&](std::stop_token stop) { scheduling->run(stop); });
    if (eviction) evictionThread.emplace([&](std::stop_token stop) { eviction->run(stop); });
    if (migration) migrationThread.emplace([&](std::stop_token stop) { migration->run(stop); });
    if (agent) nodeThread.emplace([&](std::stop_token stop) { agent->run(stop); });
    int sig = 0;
    sigwait(&signals, &sig);
    std::printf("%s: %s, stopping (VMs keep running)\n", me.c_str(),
                sig == SIGINT ? "SIGINT" : "SIGTERM");
    std::fflush(stdout);
    if (controllerThread) controllerThread->request_stop();
    if (evictionThread) evictionThread->request_stop();
    if (migrationThread) migrationThread->request_stop();
    if (recoveryThread) recoveryThread->request_stop();
    if (nodeThread) nodeThread->request_stop();
    if (expiryThread) expiryThread->request_stop();
  }
  if (nodeServer) nodeServer->stop();
  if (server) server->stop();
  return 0;
}

}  // namespace

int allInOne(const std::vector<std::string>& args) { return runHost(Mode::kAllInOne, args); }
int controllerMain(const std::vector<std::string>& args) {
  return runHost(Mode::kController, args);
}
int nodeMain(const std::vector<std::string>& args) { return runHost(Mode::kNode, args); }

}  // namespace vmhost::cli
