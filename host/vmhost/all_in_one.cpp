#include "vmhost/all_in_one.h"

#include "api/server.h"
#include "common/config.h"
#include "common/metrics.h"
#include "common/store/sqlite_store.h"
#include "controller/scheduling.h"
#include "node/agent/agent.h"
#include "node/agent/console.h"
#include "node/libvirt.h"

#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <thread>

namespace vmhost::cli {
namespace {

namespace fs = std::filesystem;

const char* kUsage =
    "usage: vmhost all-in-one --config FILE [--listen ADDR:PORT] [--data-dir DIR] [--node-name "
    "NAME]\n";

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

}  // namespace

int allInOne(const std::vector<std::string>& args) {
  std::string configFile, listen, dataDir, nodeName;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "vmhost all-in-one: %s needs a value\n%s", flag, kUsage);
        std::exit(2);
      }
      return args[++i];
    };
    const std::string& a = args[i];
    if (a == "--config")
      configFile = value("--config");
    else if (a == "--listen")
      listen = value("--listen");
    else if (a == "--data-dir")
      dataDir = value("--data-dir");
    else if (a == "--node-name")
      nodeName = value("--node-name");
    else {
      std::fprintf(stderr, "vmhost all-in-one: unexpected argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (configFile.empty()) {
    std::fprintf(stderr, "vmhost all-in-one: --config is required\n%s", kUsage);
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
  auto store = store::SqliteStore::open(config.dataDir);
  if (!store.ok()) {
    std::fprintf(stderr, "%s: store: %s\n", config.dataDir.c_str(), store.error().message.c_str());
    return 1;
  }
  std::string uri = resolvedLibvirtUri(config);
  if (std::string root = embedRoot(uri); !root.empty()) {
    if (auto s = node::prepareEmbedRoot(root); !s.ok()) {
      std::fprintf(stderr, "libvirt embed root %s: %s\n", root.c_str(), s.error().message.c_str());
      return 1;
    }
  }
  auto libvirt = node::Connection::open(uri);
  if (!libvirt.ok()) {
    std::fprintf(stderr, "libvirt %s: %s\n", uri.c_str(), libvirt.error().message.c_str());
    return 1;
  }

  // Signals are taken by sigwait() below, never by the worker threads.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  metrics::Registry registry;
  node::LibvirtConsoles consoles(libvirt.value());
  api::ServerOptions serverOptions;
  serverOptions.listenAddress = config.listen;
  serverOptions.consoles = &consoles;
  api::Server server(*store.value(), registry, serverOptions);
  auto port = server.start();
  if (!port.ok()) {
    std::fprintf(stderr, "listen %s: %s\n", config.listen.c_str(), port.error().message.c_str());
    return 1;
  }

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
  controller::SchedulingController scheduling(*store.value(),
                                              plugins.value().get(VMHOST_KIND_SCHEDULER), registry);
  node::AgentOptions agentOptions;
  agentOptions.nodeName = config.node.name;
  agentOptions.dataDir = config.dataDir;
  agentOptions.labels = config.node.labels;
  agentOptions.stopGracePeriod = std::chrono::seconds(config.node.stopGracePeriodSeconds);
  agentOptions.resync = std::chrono::seconds(config.node.resyncSeconds);
  agentOptions.heartbeat = std::chrono::seconds(config.node.heartbeatSeconds);
  agentOptions.cpuAllocationRatio = config.node.cpuAllocationRatio;
  agentOptions.memoryAllocationRatio = config.node.memoryAllocationRatio;
  node::StoreControlPlane controlPlane(*store.value());
  node::NodeAgent agent(controlPlane, libvirt.value(), plugins.value().get(VMHOST_KIND_STORAGE),
                        plugins.value().get(VMHOST_KIND_NETWORK), registry, agentOptions);
  if (auto s = agent.registerNode(); !s.ok()) {
    std::fprintf(stderr, "node %s: %s\n", config.node.name.c_str(), s.error().message.c_str());
    return 1;
  }

  std::string host = config.listen.substr(0, config.listen.rfind(':'));
  std::printf("vmhost all-in-one: API on http://%s:%u, node %s, libvirt %s, data in %s\n",
              host.c_str(), static_cast<unsigned>(port.value()), config.node.name.c_str(),
              uri.c_str(), config.dataDir.c_str());
  std::fflush(stdout);

  {
    std::jthread controllerThread([&](std::stop_token stop) { scheduling.run(stop); });
    std::jthread nodeThread([&](std::stop_token stop) { agent.run(stop); });
    int sig = 0;
    sigwait(&signals, &sig);
    std::printf("vmhost all-in-one: %s, stopping (VMs keep running)\n",
                sig == SIGINT ? "SIGINT" : "SIGTERM");
    std::fflush(stdout);
    controllerThread.request_stop();
    nodeThread.request_stop();
  }
  server.stop();
  return 0;
}

}  // namespace vmhost::cli
