#include "config.h"
#include "yaml.h"

#include <yaml-cpp/yaml.h>
#include <algorithm>
#include <boost/dll/runtime_symbol_info.hpp>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

namespace vmhost {
namespace fs = std::filesystem;
namespace {

Error configError(const std::string& file, const YAML::Mark* mark, const std::string& cause) {
  std::string where = file;
  if (mark != nullptr && mark->line >= 0) {
    where += ":" + std::to_string(mark->line + 1) + ":" + std::to_string(mark->column + 1);
  }
  return Error{VMHOST_ERR_INVALID_ARGUMENT, where + ": " + cause, false};
}

std::string joinKeys(const std::vector<std::string>& keys) {
  std::string out;
  for (const auto& k : keys) out += (out.empty() ? "" : ", ") + k;
  return out;
}

// Returns the first key of `map` not in `known`, if any.
std::optional<std::pair<std::string, YAML::Mark>> unknownKey(
    const YAML::Node& map, const std::vector<std::string>& known) {
  for (const auto& kv : map) {
    std::string key = kv.first.Scalar();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return std::make_pair(key, kv.first.Mark());
    }
  }
  return std::nullopt;
}

fs::path anchor(const std::string& file) {
  fs::path p(file);
  return p.has_parent_path() ? p.parent_path() : fs::path(".");
}

std::string resolve(const std::string& file, const std::string& path) {
  fs::path p(path);
  if (p.is_absolute()) return p.lexically_normal().string();
  return (anchor(file) / p).lexically_normal().string();
}

}  // namespace

std::string defaultPluginName(vmhost_plugin_kind kind) {
  switch (kind) {
    case VMHOST_KIND_SCHEDULER:
      return "default";
    case VMHOST_KIND_STORAGE:
      return "local";
    case VMHOST_KIND_NETWORK:
      return "libvirt-network";
    case VMHOST_KIND_MIGRATION:
      return "precopy";
    default:
      return "";
  }
}

std::string pluginFileName(vmhost_plugin_kind kind, const std::string& name) {
  return "vmhost-" + kindName(kind) + "-" + name + ".so";
}

std::string defaultPluginDir() {
  if (const char* env = std::getenv("VMHOST_PLUGIN_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  boost::system::error_code ec;
  auto exe = boost::dll::program_location(ec);
  if (ec) return "/usr/lib/vmhost/plugins";
  return (fs::path(exe.parent_path().string()) / ".." / "lib" / "vmhost" / "plugins")
      .lexically_normal()
      .string();
}

std::string resolvedLibvirtUri(const HostConfig& config) {
  std::string uri = config.libvirtUri;
  const std::string token = "{dataDir}";
  for (size_t pos = uri.find(token); pos != std::string::npos; pos = uri.find(token, pos)) {
    uri.replace(pos, token.size(), config.dataDir);
    pos += config.dataDir.size();
  }
  return uri;
}

HostConfig defaultConfig() {
  HostConfig config;
  config.file = "(defaults)";
  config.pluginDir = defaultPluginDir();
  for (auto kind : kAllKinds) {
    PluginSlot& slot = config.plugins[kind - 1];
    slot.kind = kind;
    slot.name = defaultPluginName(kind);
    slot.path = (fs::path(config.pluginDir) / pluginFileName(kind, slot.name)).string();
    slot.configJson = "{}";
  }
  return config;
}

Result<HostConfig> loadConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    std::error_code ec;
    if (fs::is_directory(path, ec))
      return configError(path, nullptr, "is a directory, not a config file");
    return configError(path, nullptr,
                       std::string("cannot open config file: ") + std::strerror(err));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parseConfig(ss.str(), path);
}

Result<HostConfig> parseConfig(const std::string& text, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    return configError(file, &e.mark, "invalid YAML: " + e.msg);
  }
  HostConfig config = defaultConfig();
  config.file = file;
  if (root.IsNull()) return config;  // an empty file: all defaults
  if (!root.IsMap()) {
    auto mark = root.Mark();
    return configError(file, &mark, "the config must be a mapping of keys to values");
  }
  static const std::vector<std::string> kTopKeys = {"pluginDir", "plugins", "dataDir",   "listen",
                                                    "nodeName",  "libvirt", "node",      "cluster",
                                                    "store",     "events",  "migrations"};
  if (auto bad = unknownKey(root, kTopKeys)) {
    return configError(
        file, &bad->second,
        "unknown key '" + bad->first + "' (expected one of: " + joinKeys(kTopKeys) + ")");
  }
  if (auto dir = root["pluginDir"]) {
    auto mark = dir.Mark();
    if (!dir.IsScalar() || dir.Scalar().empty()) {
      return configError(file, &mark, "pluginDir: must be a non-empty path");
    }
    config.pluginDir = resolve(file, dir.Scalar());
  }
  auto scalar = [&](const char* key, std::string& out, bool path) -> std::optional<Error> {
    auto n = root[key];
    if (!n) return std::nullopt;
    auto mark = n.Mark();
    if (!n.IsScalar() || n.Scalar().empty()) {
      return configError(file, &mark, std::string(key) + ": must be a non-empty string");
    }
    out = path ? resolve(file, n.Scalar()) : n.Scalar();
    return std::nullopt;
  };
  if (auto e = scalar("dataDir", config.dataDir, true)) return *e;
  if (auto e = scalar("listen", config.listen, false)) return *e;
  if (auto e = scalar("nodeName", config.node.name, false)) return *e;
  if (auto n = root["listen"]) {
    static const std::regex kListen(R"(([0-9.]+|\[[0-9a-fA-F:]+\]|[a-zA-Z0-9.-]+):[0-9]{1,5})");
    auto mark = n.Mark();
    if (!std::regex_match(config.listen, kListen)) {
      return configError(file, &mark, "listen: expected ADDRESS:PORT, got '" + config.listen + "'");
    }
  }
  if (auto n = root["nodeName"]) {
    static const std::regex kNodeName("[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?");
    auto mark = n.Mark();
    if (!std::regex_match(config.node.name, kNodeName)) {
      return configError(file, &mark,
                         "nodeName: '" + config.node.name +
                             "' is not a valid name (lower-case DNS-1123 subdomain)");
    }
  }
  if (auto lv = root["libvirt"]) {
    auto mark = lv.Mark();
    if (!lv.IsMap()) return configError(file, &mark, "libvirt: must be a mapping with 'uri'");
    static const std::vector<std::string> kKeys = {"uri"};
    if (auto bad = unknownKey(lv, kKeys)) {
      return configError(
          file, &bad->second,
          "libvirt: unknown key '" + bad->first + "' (expected one of: " + joinKeys(kKeys) + ")");
    }
    if (auto uri = lv["uri"]) {
      auto m = uri.Mark();
      if (!uri.IsScalar() || uri.Scalar().find(":///") == std::string::npos) {
        return configError(file, &m, "libvirt.uri: expected a libvirt URI like qemu:///system");
      }
      config.libvirtUri = uri.Scalar();
    }
  }
  if (auto st = root["store"]) {
    auto mark = st.Mark();
    if (!st.IsMap()) return configError(file, &mark, "store: must be a mapping with 'backend'");
    static const std::vector<std::string> kKeys = {"backend"};
    if (auto bad = unknownKey(st, kKeys)) {
      return configError(
          file, &bad->second,
          "store: unknown key '" + bad->first + "' (expected one of: " + joinKeys(kKeys) + ")");
    }
    if (auto b = st["backend"]) {
      auto m = b.Mark();
      std::string known;
      for (auto k : store::kBackends) known += (known.empty() ? "" : ", ") + std::string(k);
      bool ok = b.IsScalar() && std::find(store::kBackends.begin(), store::kBackends.end(),
                                          b.Scalar()) != store::kBackends.end();
      if (!ok) {
        return configError(file, &m,
                           "store.backend: expected one of: " + known + ", got '" +
                               (b.IsScalar() ? b.Scalar() : "<not a string>") + "'");
      }
      config.store.backend = b.Scalar();
    }
  }
  if (auto ev = root["events"]) {
    auto mark = ev.Mark();
    if (!ev.IsMap()) return configError(file, &mark, "events: must be a mapping with 'ttlSeconds'");
    static const std::vector<std::string> kKeys = {"ttlSeconds"};
    if (auto bad = unknownKey(ev, kKeys)) {
      return configError(
          file, &bad->second,
          "events: unknown key '" + bad->first + "' (expected one of: " + joinKeys(kKeys) + ")");
    }
    if (auto n = ev["ttlSeconds"]) {
      auto m = n.Mark();
      int64_t v = 0;
      bool ok = n.IsScalar();
      if (ok) {
        const std::string& t = n.Scalar();
        auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
        ok = ec == std::errc() && p == t.data() + t.size();
      }
      if (!ok) return configError(file, &m, "events.ttlSeconds: expected an integer");
      if (v < 60 || v > 30 * 86400) {
        return configError(file, &m, "events.ttlSeconds: must be in 60..2592000 (30 days)");
      }
      config.eventTtlSeconds = v;
    }
  }
  if (auto mg = root["migrations"]) {
    auto mark = mg.Mark();
    if (!mg.IsMap()) return configError(file, &mark, "migrations: must be a mapping");
    struct Limit {
      const char* key;
      int64_t* out;
      int64_t min, max;
    };
    const Limit kLimits[] = {
        {"parallelMigrationsPerCluster", &config.migrations.parallelMigrationsPerCluster, 1, 1000},
        {"parallelOutboundMigrationsPerNode", &config.migrations.parallelOutboundMigrationsPerNode,
         1, 100},
        {"targetPrepareTimeoutSeconds", &config.migrations.targetPrepareTimeoutSeconds, 10, 86400},
    };
    std::vector<std::string> keys;
    for (const auto& l : kLimits) keys.push_back(l.key);
    if (auto bad = unknownKey(mg, keys)) {
      return configError(
          file, &bad->second,
          "migrations: unknown key '" + bad->first + "' (expected one of: " + joinKeys(keys) + ")");
    }
    for (const auto& l : kLimits) {
      auto n = mg[l.key];
      if (!n) continue;
      auto m = n.Mark();
      int64_t v = 0;
      bool ok = n.IsScalar();
      if (ok) {
        const std::string& t = n.Scalar();
        auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
        ok = ec == std::errc() && p == t.data() + t.size();
      }
      std::string what = std::string("migrations.") + l.key;
      if (!ok) return configError(file, &m, what + ": expected an integer");
      if (v < l.min || v > l.max) {
        return configError(
            file, &m,
            what + ": must be in " + std::to_string(l.min) + ".." + std::to_string(l.max));
      }
      *l.out = v;
    }
  }
  if (auto cl = root["cluster"]) {
    auto mark = cl.Mark();
    if (!cl.IsMap()) return configError(file, &mark, "cluster: must be a mapping");
    static const std::vector<std::string> kKeys = {"listen",
                                                   "controller",
                                                   "joinToken",
                                                   "joinTokenFile",
                                                   "heartbeatTimeoutSeconds",
                                                   "caFile",
                                                   "apiServer",
                                                   "deadNodeGracePeriodSeconds",
                                                   "insecure"};
    if (auto bad = unknownKey(cl, kKeys)) {
      return configError(
          file, &bad->second,
          "cluster: unknown key '" + bad->first + "' (expected one of: " + joinKeys(kKeys) + ")");
    }
    static const std::regex kAddress(R"(([0-9.]+|\[[0-9a-fA-F:]+\]|[a-zA-Z0-9.-]+):[0-9]{1,5})");
    for (const char* key : {"listen", "controller"}) {
      auto n = cl[key];
      if (!n) continue;
      auto m = n.Mark();
      if (!n.IsScalar() || !std::regex_match(n.Scalar(), kAddress)) {
        return configError(file, &m,
                           std::string("cluster.") + key + ": expected ADDRESS:PORT, got '" +
                               (n.IsScalar() ? n.Scalar() : std::string("(not a string)")) + "'");
      }
      (std::string(key) == "listen" ? config.cluster.listen : config.cluster.controller) =
          n.Scalar();
    }
    if (auto n = cl["insecure"]) {
      auto m = n.Mark();
      try {
        config.cluster.insecure = n.as<bool>();
      } catch (const YAML::Exception&) {
        return configError(file, &m, "cluster.insecure: expected true or false");
      }
    }
    if (auto n = cl["caFile"]) {
      auto m = n.Mark();
      if (!n.IsScalar() || n.Scalar().empty()) {
        return configError(file, &m, "cluster.caFile: must be a path");
      }
      config.cluster.caFile = resolve(file, n.Scalar());
    }
    if (auto n = cl["apiServer"]) {
      auto m = n.Mark();
      if (!n.IsScalar() || n.Scalar().rfind("https://", 0) != 0) {
        return configError(file, &m, "cluster.apiServer: expected https://HOST:PORT");
      }
      config.cluster.apiServer = n.Scalar();
    }
    if (!config.cluster.caFile.empty() && config.cluster.apiServer.empty()) {
      auto m = cl["caFile"].Mark();
      return configError(file, &m,
                         "cluster.caFile needs cluster.apiServer (where the node gets its "
                         "certificate)");
    }
    if (cl["joinToken"] && cl["joinTokenFile"]) {
      auto m = cl["joinTokenFile"].Mark();
      return configError(file, &m, "cluster: give joinToken or joinTokenFile, not both");
    }
    if (auto n = cl["joinToken"]) {
      auto m = n.Mark();
      if (!n.IsScalar() || n.Scalar().size() < 16) {
        return configError(file, &m,
                           "cluster.joinToken: must be a string of 16 characters or more");
      }
      config.cluster.joinToken = n.Scalar();
    }
    if (auto n = cl["joinTokenFile"]) {
      auto m = n.Mark();
      if (!n.IsScalar() || n.Scalar().empty()) {
        return configError(file, &m, "cluster.joinTokenFile: must be a path");
      }
      std::string path = resolve(file, n.Scalar());
      std::ifstream in(path);
      std::string token;
      if (!in || !std::getline(in, token)) {
        return configError(file, &m, "cluster.joinTokenFile: cannot read " + path);
      }
      while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
        token.pop_back();
      }
      if (token.size() < 16) {
        return configError(file, &m,
                           "cluster.joinTokenFile: " + path + " holds no token of 16+ characters");
      }
      config.cluster.joinToken = token;
    }
    if (auto n = cl["heartbeatTimeoutSeconds"]) {
      auto m = n.Mark();
      int64_t v = 0;
      try {
        v = n.as<int64_t>();
      } catch (const YAML::Exception&) {
        return configError(file, &m, "cluster.heartbeatTimeoutSeconds: expected an integer");
      }
      if (v < 2 || v > 3600) {
        return configError(file, &m, "cluster.heartbeatTimeoutSeconds: must be in 2..3600");
      }
      config.cluster.heartbeatTimeoutSeconds = v;
    }
    if (auto n = cl["deadNodeGracePeriodSeconds"]) {
      auto m = n.Mark();
      int64_t v = 0;
      try {
        v = n.as<int64_t>();
      } catch (const YAML::Exception&) {
        return configError(file, &m, "cluster.deadNodeGracePeriodSeconds: expected an integer");
      }
      if (v < 1 || v > 86400) {
        return configError(file, &m, "cluster.deadNodeGracePeriodSeconds: must be in 1..86400");
      }
      config.cluster.deadNodeGracePeriodSeconds = v;
    }
  }
  if (auto nd = root["node"]) {
    auto mark = nd.Mark();
    if (!nd.IsMap()) return configError(file, &mark, "node: must be a mapping");
    static const std::vector<std::string> kKeys = {
        "labels",          "stopGracePeriodSeconds", "heartbeatSeconds",
        "resyncSeconds",   "cpuAllocationRatio",     "memoryAllocationRatio",
        "libvirtEndpoint", "migrationTlsDir"};
    if (auto bad = unknownKey(nd, kKeys)) {
      return configError(
          file, &bad->second,
          "node: unknown key '" + bad->first + "' (expected one of: " + joinKeys(kKeys) + ")");
    }
    auto integer = [&](const char* key, int64_t& out, int64_t min,
                       int64_t max) -> std::optional<Error> {
      auto n = nd[key];
      if (!n) return std::nullopt;
      auto m = n.Mark();
      try {
        out = n.as<int64_t>();
      } catch (const YAML::Exception&) {
        return configError(file, &m, std::string("node.") + key + ": expected an integer");
      }
      if (out < min || out > max) {
        return configError(file, &m,
                           std::string("node.") + key + ": must be in " + std::to_string(min) +
                               ".." + std::to_string(max));
      }
      return std::nullopt;
    };
    auto ratio = [&](const char* key, double& out) -> std::optional<Error> {
      auto n = nd[key];
      if (!n) return std::nullopt;
      auto m = n.Mark();
      try {
        out = n.as<double>();
      } catch (const YAML::Exception&) {
        return configError(file, &m, std::string("node.") + key + ": expected a number");
      }
      if (!(out > 0 && out <= 1000)) {
        return configError(file, &m, std::string("node.") + key + ": must be > 0 and <= 1000");
      }
      return std::nullopt;
    };
    if (auto e = integer("stopGracePeriodSeconds", config.node.stopGracePeriodSeconds, 0, 3600))
      return *e;
    if (auto e = integer("heartbeatSeconds", config.node.heartbeatSeconds, 1, 3600)) return *e;
    if (auto e = integer("resyncSeconds", config.node.resyncSeconds, 1, 3600)) return *e;
    if (auto e = ratio("cpuAllocationRatio", config.node.cpuAllocationRatio)) return *e;
    if (auto e = ratio("memoryAllocationRatio", config.node.memoryAllocationRatio)) return *e;
    if (auto n = nd["libvirtEndpoint"]) {
      auto m = n.Mark();
      if (!n.IsScalar() || n.Scalar().find("://") == std::string::npos) {
        return configError(file, &m,
                           "node.libvirtEndpoint: expected a libvirt URI like "
                           "qemu+tcp://10.0.0.2/system");
      }
      config.node.libvirtEndpoint = n.Scalar();
    }
    if (auto n = nd["migrationTlsDir"]) {
      auto m = n.Mark();
      if (!n.IsScalar() || n.Scalar().empty()) {
        return configError(file, &m, "node.migrationTlsDir: must be a directory path");
      }
      config.node.migrationTlsDir = resolve(file, n.Scalar());
    }
    if (auto labels = nd["labels"]) {
      auto m = labels.Mark();
      if (!labels.IsMap())
        return configError(file, &m, "node.labels: must be a mapping of strings");
      for (const auto& kv : labels) {
        if (!kv.second.IsScalar()) {
          auto vm = kv.second.Mark();
          return configError(file, &vm, "node.labels." + kv.first.Scalar() + ": must be a string");
        }
        config.node.labels[kv.first.Scalar()] = kv.second.Scalar();
      }
    }
  }
  auto plugins = root["plugins"];
  if (plugins && !plugins.IsNull()) {
    auto mark = plugins.Mark();
    if (!plugins.IsMap())
      return configError(file, &mark, "plugins: must be a mapping of slot to plugin");
    static const std::vector<std::string> kSlots = {"scheduler", "storage", "network", "migration"};
    if (auto bad = unknownKey(plugins, kSlots)) {
      return configError(
          file, &bad->second,
          "plugins: unknown slot '" + bad->first + "' (expected one of: " + joinKeys(kSlots) + ")");
    }
    for (const auto& kv : plugins) {
      std::string slotName = kv.first.Scalar();
      vmhost_plugin_kind kind = *parseKind(slotName);
      const YAML::Node& node = kv.second;
      auto where = node.Mark();
      std::string ctx = "plugins." + slotName + ": ";
      if (!node.IsMap())
        return configError(file, &where, ctx + "must be a mapping with 'name' or 'path'");
      static const std::vector<std::string> kSlotKeys = {"name", "path", "config"};
      if (auto bad = unknownKey(node, kSlotKeys)) {
        return configError(file, &bad->second,
                           ctx + "unknown key '" + bad->first +
                               "' (expected one of: " + joinKeys(kSlotKeys) + ")");
      }
      PluginSlot slot;
      slot.kind = kind;
      slot.fromFile = true;
      auto name = node["name"];
      auto path = node["path"];
      if (name && path)
        return configError(file, &where, ctx + "give either 'name' or 'path', not both");
      if (!name && !path) return configError(file, &where, ctx + "missing 'name' or 'path'");
      if (name) {
        auto m = name.Mark();
        static const std::regex kName("[a-z0-9][a-z0-9-]{0,62}");
        if (!name.IsScalar() || !std::regex_match(name.Scalar(), kName)) {
          return configError(file, &m,
                             ctx + "name: must match [a-z0-9][a-z0-9-]*, got '" +
                                 (name.IsScalar() ? name.Scalar() : "<not a string>") + "'");
        }
        slot.name = name.Scalar();
      } else {
        auto m = path.Mark();
        if (!path.IsScalar() || path.Scalar().empty()) {
          return configError(file, &m, ctx + "path: must be a non-empty path");
        }
        slot.path = resolve(file, path.Scalar());
      }
      auto cfg = node["config"];
      if (cfg && !cfg.IsNull()) {
        auto m = cfg.Mark();
        if (!cfg.IsMap()) return configError(file, &m, ctx + "config: must be a mapping");
        auto json = yaml::toJson(cfg);
        if (!json.ok()) return configError(file, &m, ctx + "config: " + json.error().message);
        slot.configJson = std::move(json.value());
      } else {
        slot.configJson = "{}";
      }
      config.plugins[kind - 1] = std::move(slot);
    }
  }
  for (auto& slot : config.plugins) {
    if (slot.path.empty()) {
      slot.path = (fs::path(config.pluginDir) / pluginFileName(slot.kind, slot.name)).string();
    }
  }
  return config;
}

Result<Plugins> loadPlugins(const HostConfig& config) {
  Plugins out;
  for (auto kind : kAllKinds) {
    const PluginSlot& slot = config.slot(kind);
    std::string ctx = config.file + ": plugins." + kindName(kind) + ": ";
    auto lib = PluginLibrary::open(slot.path);
    if (!lib.ok()) {
      return Error{lib.error().code, ctx + lib.error().message, false};
    }
    const PluginInfo& info = lib.value()->info();
    if (info.kind != kind) {
      return Error{VMHOST_ERR_FAILED_PRECONDITION,
                   ctx + slot.path + ": plugin '" + info.name + "' is a " + kindName(info.kind) +
                       " plugin, not a " + kindName(kind) + " plugin",
                   false};
    }
    auto instance = PluginInstance::create(lib.value(), slot.configJson);
    if (!instance.ok()) {
      // "vmhost.yaml: plugins.storage (local): config: unknown key ...": the
      // slot and the plugin's name, then the plugin's own words; the
      // loader's "plugin 'local' (storage): create failed: CODE: " would
      // only repeat them.
      const Error& e = instance.error();
      std::string said = e.message;
      std::string loaderPrefix = PluginInstance::createFailurePrefix(info, e.code);
      if (said.rfind(loaderPrefix, 0) == 0) said.erase(0, loaderPrefix.size());
      return Error{e.code,
                   config.file + ": plugins." + kindName(kind) + " (" + info.name + "): " + said,
                   e.retryable};
    }
    out.instances[kind - 1] = std::move(instance.value());
  }
  return out;
}

}  // namespace vmhost
