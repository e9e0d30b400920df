#include "plugin_commands.h"
#include "vmhost/usage.h"

#include "common/config.h"

#include <vmhost/loader/plugin_host.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <set>

namespace vmhost::cli {
namespace {

std::string abiRange(const PluginInfo& info) {
  return std::to_string(info.abiMin) + ".." + std::to_string(info.abiMax);
}

void printTable(const std::vector<PluginInfo>& infos, bool withSlot) {
  std::printf(
      withSlot ? "%-10s %-10s %-18s %-9s %-5s %-22s %s\n" : "%.0s%-10s %-18s %-9s %-5s %-22s %s\n",
      "SLOT", "KIND", "NAME", "VERSION", "ABI", "CAPABILITIES", "PATH");
  for (const auto& info : infos) {
    std::string kind = kindName(info.kind);
    std::printf(withSlot ? "%-10s %-10s %-18s %-9s %-5s %-22s %s\n"
                         : "%.0s%-10s %-18s %-9s %-5s %-22s %s\n",
                kind.c_str(), kind.c_str(), info.name.c_str(), info.version.c_str(),
                abiRange(info).c_str(), capabilityNames(info.kind, info.capabilities).c_str(),
                info.path.c_str());
  }
}

// Parses `--config FILE` (or --config=FILE); returns false on bad usage.
bool configFlag(const std::vector<std::string>& args, std::string& config, std::string& error) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config") {
      if (i + 1 >= args.size()) {
        error = "--config needs a file";
        return false;
      }
      config = args[++i];
    } else if (args[i].rfind("--config=", 0) == 0) {
      config = args[i].substr(9);
    } else {
      error = "unexpected argument '" + args[i] + "'";
      return false;
    }
  }
  return true;
}

}  // namespace

const char* kCheckConfigUsage =
    "usage: vmhost check-config FILE\n"
    "  Validates FILE and creates each plugin it selects, without starting anything;\n"
    "  one line per failure naming the file and the cause.\n";
const char* kPluginsListUsage =
    "usage: vmhost plugins list [--config FILE]\n"
    "  The plugins in the plugin directory, or (with --config) the ones FILE selects.\n";
const char* kPluginsInspectUsage =
    "usage: vmhost plugins inspect FILE.so\n"
    "  One plugin's descriptor: kind, name, version, ABI range, capabilities.\n";

int checkConfig(const std::vector<std::string>& args) {
  if (helpRequested(args)) return printUsage(kCheckConfigUsage);
  if (args.size() == 1 && args[0].size() > 1 && args[0][0] == '-') {
    return usageError("vmhost check-config", "unknown flag '" + args[0] + "'", kCheckConfigUsage);
  }
  if (args.size() != 1) {
    return usageError("vmhost check-config", args.empty() ? "FILE is required" : "one FILE only",
                      kCheckConfigUsage);
  }
  auto config = loadConfigFile(args[0]);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.error().message.c_str());
    return 1;
  }
  auto plugins = loadPlugins(config.value());
  if (!plugins.ok()) {
    std::fprintf(stderr, "%s\n", plugins.error().message.c_str());
    return 1;
  }
  std::string summary;
  for (auto kind : kAllKinds) {
    const auto& info = plugins.value().get(kind).info();
    summary +=
        (summary.empty() ? "" : ", ") + kindName(kind) + " " + info.name + " " + info.version;
  }
  std::printf("%s: OK (%s)\n", args[0].c_str(), summary.c_str());
  return 0;
}

int pluginsList(const std::vector<std::string>& args) {
  if (helpRequested(args)) return printUsage(kPluginsListUsage);
  std::string configFile, error;
  if (!configFlag(args, configFile, error)) {
    return usageError("vmhost plugins list", error, kPluginsListUsage);
  }
  std::vector<PluginInfo> infos;
  if (!configFile.empty()) {
    // The plugins a config selects, loaded and created as start-up would.
    auto config = loadConfigFile(configFile);
    if (!config.ok()) {
      std::fprintf(stderr, "%s\n", config.error().message.c_str());
      return 1;
    }
    auto plugins = loadPlugins(config.value());
    if (!plugins.ok()) {
      std::fprintf(stderr, "%s\n", plugins.error().message.c_str());
      return 1;
    }
    for (auto kind : kAllKinds) infos.push_back(plugins.value().get(kind).info());
    printTable(infos, true);
    return 0;
  }
  // Every plugin in the plugin directory.
  std::string dir = defaultPluginDir();
  std::error_code ec;
  std::set<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".so") files.insert(entry.path().string());
  }
  if (ec) {
    std::fprintf(stderr, "%s: cannot list plugin directory: %s\n", dir.c_str(),
                 ec.message().c_str());
    return 1;
  }
  int rc = 0;
  for (const auto& file : files) {
    auto lib = PluginLibrary::open(file);
    if (!lib.ok()) {
      std::fprintf(stderr, "%s\n", lib.error().message.c_str());
      rc = 1;
      continue;
    }
    infos.push_back(lib.value()->info());
  }
  std::printf("plugin directory: %s\n", dir.c_str());
  printTable(infos, false);
  return rc;
}

int pluginsInspect(const std::vector<std::string>& args) {
  if (helpRequested(args)) return printUsage(kPluginsInspectUsage);
  if (args.size() != 1 || (args[0].size() > 1 && args[0][0] == '-')) {
    return usageError(
        "vmhost plugins inspect",
        args.size() == 1 ? "unknown flag '" + args[0] + "'" : "one FILE.so is required",
        kPluginsInspectUsage);
  }
  auto lib = PluginLibrary::open(args[0]);
  if (!lib.ok()) {
    std::fprintf(stderr, "%s\n", lib.error().message.c_str());
    return 1;
  }
  const PluginInfo& info = lib.value()->info();
  std::printf("path:         %s\n", info.path.c_str());
  std::printf("kind:         %s\n", kindName(info.kind).c_str());
  std::printf("name:         %s\n", info.name.c_str());
  std::printf("version:      %s\n", info.version.c_str());
  std::printf("description:  %s\n", info.description.c_str());
  std::printf("abi:          %s (negotiated %u; host supports %u..%u)\n", abiRange(info).c_str(),
              info.abiVersion, VMHOST_ABI_VERSION_MIN, VMHOST_ABI_VERSION);
  std::printf("capabilities: %s (0x%llx)\n", capabilityNames(info.kind, info.capabilities).c_str(),
              static_cast<unsigned long long>(info.capabilities));
  return 0;
}

}  // namespace vmhost::cli
