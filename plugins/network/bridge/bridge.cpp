// network plugin `bridge`: attaches a VM's interface (a tap libvirt creates)
// to an existing Linux bridge on the node. The operator owns the bridge; the
// plugin checks it exists (in the node's network namespace) and, when
// configured, that it is one the VMs may use. MACs are stable per VM and
// interface, as with libvirt-network.
#include "config.capnp.h"
#include "interface_plugin.h"

#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <net/if.h>

#include <set>
#include <string>

namespace {

using vmhost::sdk::Error;
namespace schema = vmhost::schema;

class Bridge final : public vmhost::plugins::net::LibvirtInterfacePlugin {
 public:
  explicit Bridge(vmhost::sdk::PluginContext& ctx) : Bridge(config(ctx)) {}

 private:
  struct Config {
    std::string macPrefix;
    std::string defaultModel;
    std::set<std::string> allowed;
  };
  explicit Bridge(Config c)
      : LibvirtInterfacePlugin(c.macPrefix, c.defaultModel), allowed_(std::move(c.allowed)) {}

  static Config config(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    auto c = vmhost::sdk::decodeConfig<BridgeConfig>(ctx, message);
    Config out{c.getMacPrefix().cStr(), c.getDefaultModel().cStr(), {}};
    for (auto b : c.getAllowedBridges()) {
      std::string name = b.cStr();
      if (name.empty() || name.size() >= IF_NAMESIZE) {
        throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                    "config.allowedBridges: '" + name + "' is not an interface name");
      }
      out.allowed.insert(name);
    }
    return out;
  }

  std::string checkBridge(schema::InterfaceRequest::Reader request, const std::string& name,
                          const std::string& bridge) const override {
    if (bridge.empty() || bridge.size() >= IF_NAMESIZE) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                  "interface " + name + ": bridge '" + bridge + "' is not an interface name");
    }
    if (!allowed_.empty() && !allowed_.count(bridge)) {
      throw Error(VMHOST_ERR_PERMISSION_DENIED,
                  "interface " + name + ": bridge " + bridge + " is not in config.allowedBridges");
    }
    // Checked in this process's network namespace, the node's. Retryable: the
    // operator may be bringing the bridge up.
    if (if_nametoindex(bridge.c_str()) == 0) {
      throw Error(VMHOST_ERR_FAILED_PRECONDITION,
                  "interface " + name + ": bridge " + bridge + " does not exist on node " +
                      request.getNode().cStr(),
                  true);
    }
    return bridge;
  }

  std::set<std::string> allowed_;
};

}  // namespace

VMHOST_PLUGIN(Bridge, "bridge", "0.1.0", "Interfaces on existing Linux bridges of the node",
              VMHOST_CAP_THREAD_SAFE)
