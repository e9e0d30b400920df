// network plugin `libvirt-network`: interfaces on libvirt networks (and
// bridges or QEMU user networking). Assigns each interface a MAC derived from
// the VM's uid and the interface name, so it is the same on every attach,
// restart and migration.
#include "config.capnp.h"
#include "mac.h"

#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <cctype>
#include <cstdio>
#include <regex>
#include <string>

namespace {

using vmhost::sdk::Error;
namespace net = vmhost::plugins::net;
namespace schema = vmhost::schema;

class LibvirtNetwork final : public vmhost::sdk::NetworkPlugin {
 public:
  explicit LibvirtNetwork(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    auto config = vmhost::sdk::decodeConfig<LibvirtNetworkConfig>(ctx, message);
    prefix_ = net::checkPrefix("config.macPrefix", config.getMacPrefix().cStr());
    defaultModel_ = config.getDefaultModel().cStr();
    net::checkModel("config.defaultModel", defaultModel_);
  }

  void attach(schema::InterfaceRequest::Reader request,
              schema::InterfaceAttachment::Builder out) override {
    auto iface = request.getInterface();
    std::string name = iface.getName().cStr();
    if (name.empty()) throw Error(VMHOST_ERR_INVALID_ARGUMENT, "interface.name: must not be empty");
    std::string model =
        iface.getModel().size() > 0 ? std::string(iface.getModel().cStr()) : defaultModel_;
    net::checkModel("interface " + name + ": model", model);

    std::string mac = net::resolveMac(prefix_, request);

    auto source = iface.getSource();
    switch (source.which()) {
      case schema::Interface::Source::NETWORK:
        if (source.getNetwork().size() == 0) {
          throw Error(VMHOST_ERR_INVALID_ARGUMENT, "interface " + name + ": network name is empty");
        }
        out.setType("network");
        out.setSource(source.getNetwork());
        break;
      case schema::Interface::Source::BRIDGE:
        if (source.getBridge().size() == 0) {
          throw Error(VMHOST_ERR_INVALID_ARGUMENT, "interface " + name + ": bridge name is empty");
        }
        out.setType("bridge");
        out.setSource(source.getBridge());
        break;
      case schema::Interface::Source::USER:
        out.setType("user");
        break;
      default:
        throw Error(VMHOST_ERR_INVALID_ARGUMENT, "interface " + name + ": unknown source type");
    }
    out.setInterfaceName(name);
    out.setMac(mac);
    out.setModel(model);
  }

  void detach(schema::InterfaceRelease::Reader, schema::InterfaceReleased::Builder out) override {
    // libvirt tears the tap down with the domain; nothing of ours to release.
    out.setReleased(false);
  }

 private:
  std::string prefix_;
  std::string defaultModel_;
};

}  // namespace

VMHOST_PLUGIN(LibvirtNetwork, "libvirt-network", "0.1.0",
              "Interfaces on libvirt networks, bridges or user networking", VMHOST_CAP_THREAD_SAFE)
