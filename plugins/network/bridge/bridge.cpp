// network plugin `bridge`: attaches a VM's interface (a tap libvirt creates)
// to an existing Linux bridge on the node. The operator owns the bridge; the
// plugin checks it exists (in the node's network namespace) and, when
// configured, that it is one the VMs may use. MACs are stable per VM and
// interface, as with libvirt-network.
#include "config.capnp.h"
#include "mac.h"

#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <net/if.h>

#include <set>
#include <string>

namespace {

using vmhost::sdk::Error;
namespace net = vmhost::plugins::net;
namespace schema = vmhost::schema;

class Bridge final : public vmhost::sdk::NetworkPlugin {
 public:
  explicit Bridge(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    auto config = vmhost::sdk::decodeConfig<BridgeConfig>(ctx, message);
    prefix_ = net::checkPrefix("config.macPrefix", config.getMacPrefix().cStr());
    defaultModel_ = config.getDefaultModel().cStr();
    net::checkModel("config.defaultModel", defaultModel_);
    for (auto b : config.getAllowedBridges()) {
      std::string name = b.cStr();
      if (name.empty() || name.size() >= IF_NAMESIZE) {
        throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                    "config.allowedBridges: '" + name + "' is not an interface name");
      }
      allowed_.insert(name);
    }
  }

  void attach(schema::InterfaceRequest::Reader request,
              schema::InterfaceAttachment::Builder out) override {
    auto iface = request.getInterface();
    std::string name = iface.getName().cStr();
    if (name.empty()) throw Error(VMHOST_ERR_INVALID_ARGUMENT, "interface.name: must not be empty");
    std::string model =
        iface.getModel().size() > 0 ? std::string(iface.getModel().cStr()) : defaultModel_;
    net::checkModel("interface " + name + ": model", model);
    auto source = iface.getSource();
    switch (source.which()) {
      case schema::Interface::Source::BRIDGE:
        out.setType("bridge");
        out.setSource(checkBridge(request, name, source.getBridge().cStr()));
        break;
      // A node whose operator chose this plugin still runs VMs that ask for
      // a libvirt network or user networking: libvirt wires those itself.
      case schema::Interface::Source::NETWORK:
        if (source.getNetwork().size() == 0) {
          throw Error(VMHOST_ERR_INVALID_ARGUMENT, "interface " + name + ": network name is empty");
        }
        out.setType("network");
        out.setSource(source.getNetwork());
        break;
      case schema::Interface::Source::USER:
        out.setType("user");
        break;
      default:
        throw Error(VMHOST_ERR_INVALID_ARGUMENT, "interface " + name + ": unknown source type");
    }
    out.setInterfaceName(name);
    out.setMac(net::resolveMac(prefix_, request));
    out.setModel(model);
  }

  void detach(schema::InterfaceRelease::Reader, schema::InterfaceReleased::Builder out) override {
    // libvirt removes the tap from the bridge with the domain.
    out.setReleased(false);
  }

 private:
  std::string checkBridge(schema::InterfaceRequest::Reader request, const std::string& name,
                          const std::string& bridge) const {
    if (bridge.empty() || bridge.size() >= IF_NAMESIZE) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                  "interface " + name + ": bridge '" + bridge + "' is not an interface name");
    }
    if (!allowed_.empty() && !allowed_.count(bridge)) {
      throw Error(VMHOST_ERR_PERMISSION_DENIED,
                  "interface " + name + ": bridge " + bridge + " is not in config.allowedBridges");
    }
    // Retryable: the operator may be bringing the bridge up.
    if (if_nametoindex(bridge.c_str()) == 0) {
      throw Error(VMHOST_ERR_FAILED_PRECONDITION,
                  "interface " + name + ": bridge " + bridge + " does not exist on node " +
                      request.getNode().cStr(),
                  true);
    }
    return bridge;
  }

  std::string prefix_;
  std::string defaultModel_;
  std::set<std::string> allowed_;
};

}  // namespace

VMHOST_PLUGIN(Bridge, "bridge", "0.1.0", "Interfaces on existing Linux bridges of the node",
              VMHOST_CAP_THREAD_SAFE)
