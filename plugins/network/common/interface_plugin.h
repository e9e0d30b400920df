// What every network plugin that lets libvirt wire the NIC shares: name and
// model checks, the stable MAC, and the mapping of a libvirt network or user
// networking onto the attachment. A plugin only decides what a network or
// bridge interface may attach to (checkNetwork, checkBridge).
#pragma once

#include "mac.h"

#include <vmhost/plugin.hpp>

#include <string>

namespace vmhost::plugins::net {

class LibvirtInterfacePlugin : public sdk::NetworkPlugin {
 public:
  // Throws sdk::Error naming config.macPrefix / config.defaultModel.
  LibvirtInterfacePlugin(const std::string& macPrefix, std::string defaultModel)
      : prefix_(checkPrefix("config.macPrefix", macPrefix)),
        defaultModel_(std::move(defaultModel)) {
    checkModel("config.defaultModel", defaultModel_);
  }

  void attach(schema::InterfaceRequest::Reader request,
              schema::InterfaceAttachment::Builder out) final {
    auto iface = request.getInterface();
    std::string name = iface.getName().cStr();
    if (name.empty()) {
      throw sdk::Error(VMHOST_ERR_INVALID_ARGUMENT, "interface.name: must not be empty");
    }
    std::string model =
        iface.getModel().size() > 0 ? std::string(iface.getModel().cStr()) : defaultModel_;
    checkModel("interface " + name + ": model", model);
    std::string mac = resolveMac(prefix_, request);
    auto source = iface.getSource();
    switch (source.which()) {
      case schema::Interface::Source::NETWORK:
        if (source.getNetwork().size() == 0) {
          throw sdk::Error(VMHOST_ERR_INVALID_ARGUMENT,
                           "interface " + name + ": network name is empty");
        }
        out.setType("network");
        out.setSource(checkNetwork(request, name, source.getNetwork().cStr()));
        break;
      case schema::Interface::Source::BRIDGE:
        out.setType("bridge");
        out.setSource(checkBridge(request, name, source.getBridge().cStr()));
        break;
      case schema::Interface::Source::USER:
        out.setType("user");
        break;
      default:
        throw sdk::Error(VMHOST_ERR_INVALID_ARGUMENT,
                         "interface " + name + ": unknown source type");
    }
    out.setInterfaceName(name);
    out.setMac(mac);
    out.setModel(model);
  }

  void detach(schema::InterfaceRelease::Reader, schema::InterfaceReleased::Builder out) override {
    // libvirt tears the tap down (and takes it off its bridge) with the domain.
    out.setReleased(false);
  }

 protected:
  // The libvirt network a network interface attaches to (never empty), or
  // throws. Default: the name as given (libvirt reports a missing network at
  // start). May be called from several threads at once.
  virtual std::string checkNetwork(schema::InterfaceRequest::Reader request,
                                   const std::string& name, const std::string& network) {
    (void)request;
    (void)name;
    return network;
  }

  // The bridge a bridge interface attaches to, or throws. Default: any
  // non-empty name (libvirt reports a missing bridge at start).
  virtual std::string checkBridge(schema::InterfaceRequest::Reader request, const std::string& name,
                                  const std::string& bridge) const {
    (void)request;
    if (bridge.empty()) {
      throw sdk::Error(VMHOST_ERR_INVALID_ARGUMENT, "interface " + name + ": bridge name is empty");
    }
    return bridge;
  }

 private:
  std::string prefix_;
  std::string defaultModel_;
};

}  // namespace vmhost::plugins::net
