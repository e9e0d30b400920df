// vmhost: the host binary. main() only dispatches; each command lives in its
// own module.
#include "plugin_commands.h"
#include "vmhost/all_in_one.h"
#include "vmhost/usage.h"

#include <vmhost/plugin.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

const char* kUsage =
    "usage: vmhost COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  all-in-one --config FILE   run the controller and a node in one process\n"
    "             [--listen ADDR:PORT] [--data-dir DIR] [--node-name NAME]\n"
    "  controller --config FILE   the API, the scheduler and the node server (cluster.listen)\n"
    "             [--listen ADDR:PORT] [--cluster-listen ADDR:PORT] [--data-dir DIR]\n"
    "  node --config FILE         a host: joins the controller (cluster.controller) and runs\n"
    "             [--controller ADDR:PORT] [--data-dir DIR] [--node-name NAME]   its VMs\n"
    "  init --data-dir DIR        create a cluster's CA, controller certificate and tokens\n"
    "             [--address HOST]... [--api-port 8443] [--cluster-port 7070]\n"
    "  check-config FILE          validate a config and its plugins without starting anything\n"
    "  plugins list [--config F]  list the plugins in the plugin directory, or those F selects\n"
    "  plugins inspect FILE.so    print a plugin's kind, name, version, ABI range, capabilities\n"
    "  version                    print the host and plugin ABI versions\n"
    "\n"
    "environment:\n"
    "  VMHOST_PLUGIN_DIR          plugin directory when the config names none\n"
    "                             (default: <bin>/../lib/vmhost/plugins)\n";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::string cmd = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (cmd == "check-config") return vmhost::cli::checkConfig(rest);
  if (cmd == "all-in-one") return vmhost::cli::allInOne(rest);
  if (cmd == "controller") return vmhost::cli::controllerMain(rest);
  if (cmd == "init") return vmhost::cli::initCluster(rest);
  if (cmd == "node") return vmhost::cli::nodeMain(rest);
  if (cmd == "version") {
    if (vmhost::cli::helpRequested(rest)) {
      return vmhost::cli::printUsage(
          "usage: vmhost version\n  The host's version and the plugin ABI versions it offers.\n");
    }
    if (!rest.empty()) {
      return vmhost::cli::usageError("vmhost version", "unexpected argument '" + rest[0] + "'",
                                     "usage: vmhost version\n");
    }
    std::printf("vmhost %s (plugin ABI %u..%u)\n", VMHOST_VERSION, VMHOST_ABI_VERSION_MIN,
                VMHOST_ABI_VERSION);
    return 0;
  }
  if (cmd == "plugins") {
    if (!rest.empty() && rest[0] == "list")
      return vmhost::cli::pluginsList({rest.begin() + 1, rest.end()});
    if (!rest.empty() && rest[0] == "inspect") {
      return vmhost::cli::pluginsInspect({rest.begin() + 1, rest.end()});
    }
    const char* kPluginsUsage =
        "usage: vmhost plugins list [--config FILE]\n"
        "       vmhost plugins inspect FILE.so\n";
    if (vmhost::cli::helpRequested(rest)) return vmhost::cli::printUsage(kPluginsUsage);
    return vmhost::cli::usageError("vmhost plugins", "expected 'list' or 'inspect'", kPluginsUsage);
  }
  std::fprintf(stderr, "vmhost: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return 2;
}
