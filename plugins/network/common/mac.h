// MAC addresses for network plugins: stable per VM and interface, so a VM
// keeps its MACs across restarts, re-attachment and migration, whichever
// node or plugin instance assigns them.
#pragma once

#include <vmhost/plugin.hpp>

#include <cctype>
#include <cstdio>
#include <regex>
#include <string>

namespace vmhost::plugins::net {

inline std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// FNV-1a: stable across builds and platforms (std::hash is not).
inline uint64_t fnv1a(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// Checks a config's OUI ("52:54:00"), lower-cased; throws sdk::Error naming `field`.
inline std::string checkPrefix(const std::string& field, std::string prefix) {
  prefix = lower(std::move(prefix));
  static const std::regex kPrefix("[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}");
  if (!std::regex_match(prefix, kPrefix)) {
    throw sdk::Error(VMHOST_ERR_INVALID_ARGUMENT,
                     field + ": expected three hex octets like 52:54:00, got '" + prefix + "'");
  }
  if (std::stoul(prefix.substr(0, 2), nullptr, 16) & 1) {
    throw sdk::Error(VMHOST_ERR_INVALID_ARGUMENT, field + ": " + prefix + " is a multicast prefix");
  }
  return prefix;
}

// The interface's MAC: the one the spec gives (checked, lower-cased) or one
// derived from the VM's uid, namespace, name and the interface's name.
inline std::string resolveMac(const std::string& prefix, schema::InterfaceRequest::Reader request) {
  auto vm = request.getVm();
  std::string name = request.getInterface().getName().cStr();
  std::string mac = lower(request.getInterface().getMac().cStr());
  if (mac.empty()) {
    uint64_t h = fnv1a(std::string(vm.getUid().cStr()) + "/" + vm.getNamespace().cStr() + "/" +
                       vm.getName().cStr() + "/" + name);
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%s:%02x:%02x:%02x", prefix.c_str(),
                  static_cast<unsigned>((h >> 16) & 0xff), static_cast<unsigned>((h >> 8) & 0xff),
                  static_cast<unsigned>(h & 0xff));
    return buf;
  }
  static const std::regex kMac("[0-9a-f]{2}(:[0-9a-f]{2}){5}");
  if (!std::regex_match(mac, kMac)) {
    throw sdk::Error(VMHOST_ERR_INVALID_ARGUMENT,
                     "interface " + name + ": mac '" + mac + "' is not a MAC address");
  }
  if (std::stoul(mac.substr(0, 2), nullptr, 16) & 1) {
    throw sdk::Error(VMHOST_ERR_INVALID_ARGUMENT,
                     "interface " + name + ": mac " + mac + " is multicast");
  }
  return mac;
}

// Throws unless `model` is one QEMU emulates for a NIC here.
inline void checkModel(const std::string& field, const std::string& model) {
  if (model != "virtio" && model != "e1000" && model != "e1000e" && model != "rtl8139") {
    throw sdk::Error(VMHOST_ERR_INVALID_ARGUMENT,
                     field + ": '" + model + "' is not one of virtio, e1000, e1000e, rtl8139");
  }
}

}  // namespace vmhost::plugins::net
