// network plugin `libvirt-network`: interfaces on libvirt networks (and
// bridges or QEMU user networking). Assigns each interface a MAC derived from
// the VM's uid and the interface name, so it is the same on every attach,
// restart and migration.
#include "config.capnp.h"
#include "interface_plugin.h"

#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <string>

namespace {

class LibvirtNetwork final : public vmhost::plugins::net::LibvirtInterfacePlugin {
 public:
  explicit LibvirtNetwork(vmhost::sdk::PluginContext& ctx) : LibvirtNetwork(config(ctx)) {}

 private:
  struct Config {
    std::string macPrefix;
    std::string defaultModel;
  };
  explicit LibvirtNetwork(Config c) : LibvirtInterfacePlugin(c.macPrefix, c.defaultModel) {}

  static Config config(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    auto c = vmhost::sdk::decodeConfig<LibvirtNetworkConfig>(ctx, message);
    return Config{c.getMacPrefix().cStr(), c.getDefaultModel().cStr()};
  }
};

}  // namespace

VMHOST_PLUGIN(LibvirtNetwork, "libvirt-network", "0.1.0",
              "Interfaces on libvirt networks, bridges or user networking", VMHOST_CAP_THREAD_SAFE)
