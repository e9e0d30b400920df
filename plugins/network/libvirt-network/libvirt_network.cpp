// network plugin `libvirt-network`: interfaces on libvirt networks (and
// bridges or QEMU user networking). Assigns each interface a MAC derived from
// the VM's uid and the interface name, so it is the same on every attach,
// restart and migration.
#include "config.capnp.h"

#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <cctype>
#include <cstdio>
#include <regex>
#include <string>

namespace {

using vmhost::sdk::Error;
namespace schema = vmhost::schema;

// FNV-1a: stable across builds and platforms (std::hash is not).
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const std::regex& macPattern() {
  static const std::regex re("[0-9a-f]{2}(:[0-9a-f]{2}){5}");
  return re;
}

class LibvirtNetwork final : public vmhost::sdk::NetworkPlugin {
 public:
  explicit LibvirtNetwork(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    auto config = vmhost::sdk::decodeConfig<LibvirtNetworkConfig>(ctx, message);
    prefix_ = lower(config.getMacPrefix().cStr());
    static const std::regex kPrefix("[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}");
    if (!std::regex_match(prefix_, kPrefix)) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                  "config.macPrefix: expected three hex octets like 52:54:00, got '" + prefix_ + "'");
    }
    if (std::stoul(prefix_.substr(0, 2), nullptr, 16) & 1) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT, "config.macPrefix: " + prefix_ + " is a multicast prefix");
    }
    defaultModel_ = config.getDefaultModel().cStr();
    checkModel("config.defaultModel", defaultModel_);
  }

  void attach(schema::InterfaceRequest::Reader request,
              schema::InterfaceAttachment::Builder out) override {
    auto iface = request.getInterface();
    std::string name = iface.getName().cStr();
    if (name.empty()) throw Error(VMHOST_ERR_INVALID_ARGUMENT, "interface.name: must not be empty");
    std::string model = iface.getModel().size() > 0 ? std::string(iface.getModel().cStr()) : defaultModel_;
    checkModel("interface " + name + ": model", model);

    std::string mac = lower(iface.getMac().cStr());
    if (mac.empty()) {
      uint64_t h = fnv1a(std::string(request.getVm().getUid().cStr()) + "/" +
                         request.getVm().getNamespace().cStr() + "/" + request.getVm().getName().cStr() +
                         "/" + name);
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%s:%02x:%02x:%02x", prefix_.c_str(),
                    static_cast<unsigned>((h >> 16) & 0xff), static_cast<unsigned>((h >> 8) & 0xff),
                    static_cast<unsigned>(h & 0xff));
      mac = buf;
    } else if (!std::regex_match(mac, macPattern())) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT, "interface " + name + ": mac '" + mac + "' is not a MAC address");
    } else if (std::stoul(mac.substr(0, 2), nullptr, 16) & 1) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT, "interface " + name + ": mac " + mac + " is multicast");
    }

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
  static void checkModel(const std::string& field, const std::string& model) {
    if (model != "virtio" && model != "e1000" && model != "e1000e" && model != "rtl8139") {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                  field + ": '" + model + "' is not one of virtio, e1000, e1000e, rtl8139");
    }
  }

  std::string prefix_;
  std::string defaultModel_;
};

}  // namespace

VMHOST_PLUGIN(LibvirtNetwork, "libvirt-network", "0.1.0",
              "Interfaces on libvirt networks, bridges or user networking", VMHOST_CAP_THREAD_SAFE)
