// network plugin `libvirt-network`: interfaces on libvirt networks (and
// bridges or QEMU user networking). Assigns each interface a MAC derived from
// the VM's uid and the interface name, so it is the same on every attach,
// restart and migration.
//
// It can also own the node's networks: each network in config.networks
// (a bridge with the node's address, DHCP from libvirt's dnsmasq, NAT to the
// node's uplinks) is defined, started and marked autostart the first time an
// interface attaches to it. With config.checkNetworks, an interface on any
// other network is checked to exist and be active before the domain is
// defined, so a missing network is a VM condition naming it.
#include "config.capnp.h"
#include "interface_plugin.h"

#include <arpa/inet.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <net/if.h>

#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace {

using vmhost::sdk::Error;
namespace schema = vmhost::schema;

// An IPv4 address in host byte order, or throws naming `field`.
uint32_t parseIpv4(const std::string& field, const std::string& text) {
  in_addr a{};
  if (text.empty() || inet_pton(AF_INET, text.c_str(), &a) != 1) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                field + ": '" + text + "' is not an IPv4 address (like 192.168.213.10)");
  }
  return ntohl(a.s_addr);
}

std::string formatIpv4(uint32_t host) {
  in_addr a{};
  a.s_addr = htonl(host);
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof(buf));
  return buf;
}

// A NAT network as configured, checked.
struct NetworkSpec {
  std::string field;  // "config.networks[i]", for messages
  std::string name;
  std::string bridge;
  std::string address;  // the node's address on the bridge
  unsigned prefix = 0;
  std::string dhcpStart, dhcpEnd;  // both empty: no DHCP
  std::string forward;             // "nat" or "none"

  // The libvirt network XML. Every value is checked to hold no XML
  // metacharacters (names, interface names, dotted quads).
  std::string xml() const {
    std::string x = "<network>\n  <name>" + name + "</name>\n";
    if (forward == "nat") x += "  <forward mode='nat'/>\n";
    x += "  <bridge name='" + bridge + "' stp='off' delay='0'/>\n";
    x += "  <ip address='" + address + "' prefix='" + std::to_string(prefix) + "'>\n";
    if (!dhcpStart.empty()) {
      x += "    <dhcp>\n      <range start='" + dhcpStart + "' end='" + dhcpEnd +
           "'/>\n    </dhcp>\n";
    }
    x += "  </ip>\n</network>\n";
    return x;
  }
};

NetworkSpec checkNetworkConfig(const std::string& field, NatNetwork::Reader n) {
  NetworkSpec s;
  s.field = field;
  s.name = n.getName().cStr();
  if (s.name.empty() || s.name.size() > 64 ||
      s.name.find_first_not_of(
          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
          std::string::npos ||
      s.name[0] == '.' || s.name[0] == '-') {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                field + ".name: '" + s.name +
                    "' is not a network name (letters, digits, '_', '.', '-'; up to 64)");
  }
  s.bridge = n.getBridge().cStr();
  if (s.bridge.empty() || s.bridge.size() >= IF_NAMESIZE ||
      s.bridge.find_first_not_of(
          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
          std::string::npos) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                field + ".bridge: '" + s.bridge + "' is not an interface name (up to " +
                    std::to_string(IF_NAMESIZE - 1) + " letters, digits, '_', '.', '-')");
  }
  std::string cidr = n.getAddress().cStr();
  auto slash = cidr.find('/');
  std::string prefixText = slash == std::string::npos ? "" : cidr.substr(slash + 1);
  in_addr probe{};
  if (slash == std::string::npos || prefixText.empty() || prefixText.size() > 2 ||
      prefixText.find_first_not_of("0123456789") != std::string::npos ||
      inet_pton(AF_INET, cidr.substr(0, slash).c_str(), &probe) != 1) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                field + ".address: '" + cidr +
                    "' is not an IPv4 address with a prefix length (like 192.168.213.1/24)");
  }
  s.prefix = static_cast<unsigned>(std::stoul(prefixText));
  if (s.prefix < 8 || s.prefix > 30) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                field + ".address: prefix length /" + prefixText +
                    " is outside 8..30 (a subnet with room for the node and guests)");
  }
  s.address = cidr.substr(0, slash);
  uint32_t host = ntohl(probe.s_addr);
  uint32_t mask = ~uint32_t{0} << (32 - s.prefix);
  uint32_t net = host & mask;
  uint32_t broadcast = net | ~mask;
  std::string subnet = formatIpv4(net) + "/" + std::to_string(s.prefix);
  if (host == net || host == broadcast) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                field + ".address: " + s.address + " is the " +
                    (host == net ? "network" : "broadcast") + " address of " + subnet +
                    "; give the node's address in it, like " + formatIpv4(net + 1) + "/" +
                    std::to_string(s.prefix));
  }
  s.dhcpStart = n.getDhcpStart().cStr();
  s.dhcpEnd = n.getDhcpEnd().cStr();
  if (s.dhcpStart.empty() != s.dhcpEnd.empty()) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                field + (s.dhcpStart.empty() ? ".dhcpStart" : ".dhcpEnd") +
                    ": missing; give both dhcpStart and dhcpEnd, or neither (no DHCP)");
  }
  if (!s.dhcpStart.empty()) {
    uint32_t first = parseIpv4(field + ".dhcpStart", s.dhcpStart);
    uint32_t last = parseIpv4(field + ".dhcpEnd", s.dhcpEnd);
    for (auto [which, a] : {std::pair{".dhcpStart", first}, std::pair{".dhcpEnd", last}}) {
      if ((a & mask) != net || a == net || a == broadcast) {
        throw Error(VMHOST_ERR_INVALID_ARGUMENT, field + which + ": " + formatIpv4(a) +
                                                     " is outside the usable addresses of " +
                                                     subnet + " (" + formatIpv4(net + 1) + " to " +
                                                     formatIpv4(broadcast - 1) + ")");
      }
    }
    if (first > last) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                  field + ": dhcpStart " + s.dhcpStart + " comes after dhcpEnd " + s.dhcpEnd);
    }
    if (host >= first && host <= last) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT, field + ": the DHCP range " + s.dhcpStart + " to " +
                                                   s.dhcpEnd + " holds the node's own address " +
                                                   s.address);
    }
  }
  s.forward = n.getForward().cStr();
  if (s.forward != "nat" && s.forward != "none") {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                field + ".forward: '" + s.forward + "' is not one of nat, none");
  }
  return s;
}

// libvirt objects, freed on scope exit.
struct ConnCloser {
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
struct NetFreer {
  void operator()(virNetworkPtr n) const { virNetworkFree(n); }
};
using Conn = std::unique_ptr<virConnect, ConnCloser>;
using Net = std::unique_ptr<virNetwork, NetFreer>;

// The message of libvirt's last error in this thread (and resets it).
std::string lastLibvirtError() {
  virErrorPtr e = virGetLastError();
  std::string m = e && e->message ? e->message : "libvirt reported no error";
  virResetLastError();
  return m;
}

int lastLibvirtCode() {
  virErrorPtr e = virGetLastError();
  return e ? e->code : VIR_ERR_OK;
}

class LibvirtNetwork final : public vmhost::plugins::net::LibvirtInterfacePlugin {
 public:
  explicit LibvirtNetwork(vmhost::sdk::PluginContext& ctx) : LibvirtNetwork(config(ctx)) {}

 private:
  struct Config {
    std::string macPrefix;
    std::string defaultModel;
    std::string uri;
    std::vector<NetworkSpec> networks;
    bool checkNetworks = false;
  };
  explicit LibvirtNetwork(Config c)
      : LibvirtInterfacePlugin(c.macPrefix, c.defaultModel),
        uri_(std::move(c.uri)),
        checkNetworks_(c.checkNetworks) {
    for (auto& n : c.networks) networks_.emplace(n.name, std::move(n));
  }

  static Config config(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    auto c = vmhost::sdk::decodeConfig<LibvirtNetworkConfig>(ctx, message);
    Config out{c.getMacPrefix().cStr(),
               c.getDefaultModel().cStr(),
               c.getUri().cStr(),
               {},
               c.getCheckNetworks()};
    if (out.uri.empty()) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                  "config.uri: must not be empty (the node's libvirt network connection, like "
                  "network:///system)");
    }
    std::set<std::string> names, bridges;
    auto list = c.getNetworks();
    for (unsigned i = 0; i < list.size(); ++i) {
      std::string field = "config.networks[" + std::to_string(i) + "]";
      auto n = checkNetworkConfig(field, list[i]);
      if (!names.insert(n.name).second) {
        throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                    field + ".name: network " + n.name + " is configured twice");
      }
      if (!bridges.insert(n.bridge).second) {
        throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                    field + ".bridge: bridge " + n.bridge + " is used by two networks");
      }
      out.networks.push_back(std::move(n));
    }
    return out;
  }

  std::string checkNetwork(schema::InterfaceRequest::Reader request, const std::string& name,
                           const std::string& network) override {
    auto it = networks_.find(network);
    if (it == networks_.end() && !checkNetworks_) return network;
    std::string node = request.getNode().cStr();
    std::lock_guard<std::mutex> lock(mu_);
    try {
      if (it != networks_.end()) {
        ensure(it->second, name, node);
      } else {
        check(network, name, node);
      }
    } catch (...) {
      // A connection that died (libvirtd restarted) is opened afresh next time.
      if (conn_ && virConnectIsAlive(conn_.get()) != 1) conn_.reset();
      throw;
    }
    return network;
  }

  // The connection to the node's network driver, opened on first use and
  // again after it dies. Caller holds mu_.
  virConnectPtr connection(const std::string& iface, const std::string& node) {
    if (conn_ && virConnectIsAlive(conn_.get()) == 1) return conn_.get();
    conn_.reset();
    static std::once_flag init;
    std::call_once(init, [] { virInitialize(); });
    Conn c(virConnectOpen(uri_.c_str()));
    if (!c) {
      throw Error(VMHOST_ERR_UNAVAILABLE,
                  "interface " + iface + ": cannot connect to libvirt at " + uri_ + " on node " +
                      node + " (" + lastLibvirtError() +
                      "); start libvirtd there with deploy/node-setup.sh, or set config.uri",
                  true);
    }
    conn_ = std::move(c);
    return conn_.get();
  }

  // Defines, starts and autostarts a configured network, each only if needed.
  void ensure(const NetworkSpec& spec, const std::string& iface, const std::string& node) {
    virConnectPtr c = connection(iface, node);
    std::string where = "interface " + iface + ": network " + spec.name + " (" + spec.field +
                        ") on node " + node + ": ";
    Net net(virNetworkLookupByName(c, spec.name.c_str()));
    bool defined = false;
    if (!net) {
      if (lastLibvirtCode() != VIR_ERR_NO_NETWORK) {
        throw Error(VMHOST_ERR_UNAVAILABLE, where + "lookup failed: " + lastLibvirtError(), true);
      }
      virResetLastError();
      net.reset(virNetworkDefineXML(c, spec.xml().c_str()));
      if (!net) {
        throw Error(VMHOST_ERR_FAILED_PRECONDITION, where + "define failed: " + lastLibvirtError());
      }
      defined = true;
    } else {
      // Someone else's network of that name: never redefine it, but do not
      // let it pass for the configured one either.
      std::unique_ptr<char, decltype(&std::free)> bridge(virNetworkGetBridgeName(net.get()),
                                                         &std::free);
      std::string actual = bridge ? bridge.get() : "";
      if (!bridge) virResetLastError();
      if (actual != spec.bridge) {
        throw Error(VMHOST_ERR_FAILED_PRECONDITION,
                    where + "exists with bridge '" + actual + "', not " + spec.bridge +
                        "; remove it (virsh net-destroy, net-undefine) or rename the configured "
                        "network");
      }
    }
    int active = virNetworkIsActive(net.get());
    if (active < 0) {
      throw Error(VMHOST_ERR_UNAVAILABLE, where + "state unknown: " + lastLibvirtError(), true);
    }
    if (active == 0 && virNetworkCreate(net.get()) < 0) {
      std::string why = lastLibvirtError();
      // Leave nothing half-done: a network this call defined goes again.
      if (defined) {
        virNetworkUndefine(net.get());
        virResetLastError();
      }
      throw Error(VMHOST_ERR_FAILED_PRECONDITION, where + "start failed: " + why, true);
    }
    int autostart = 0;
    if (virNetworkGetAutostart(net.get(), &autostart) < 0 ||
        (!autostart && virNetworkSetAutostart(net.get(), 1) < 0)) {
      throw Error(VMHOST_ERR_UNAVAILABLE, where + "autostart failed: " + lastLibvirtError(), true);
    }
  }

  // An unconfigured network must exist and be active.
  void check(const std::string& network, const std::string& iface, const std::string& node) {
    virConnectPtr c = connection(iface, node);
    std::string where = "interface " + iface + ": network " + network;
    Net net(virNetworkLookupByName(c, network.c_str()));
    if (!net) {
      if (lastLibvirtCode() == VIR_ERR_NO_NETWORK) {
        virResetLastError();
        throw Error(VMHOST_ERR_NOT_FOUND,
                    where + " does not exist on node " + node + " (libvirt at " + uri_ +
                        "); define it there (virsh net-define) or add it to the libvirt-network "
                        "plugin's config.networks");
      }
      throw Error(VMHOST_ERR_UNAVAILABLE,
                  where + ": lookup on node " + node + " failed: " + lastLibvirtError(), true);
    }
    int active = virNetworkIsActive(net.get());
    if (active < 0) {
      throw Error(VMHOST_ERR_UNAVAILABLE,
                  where + ": state unknown on node " + node + ": " + lastLibvirtError(), true);
    }
    if (active == 0) {
      throw Error(VMHOST_ERR_FAILED_PRECONDITION,
                  where + " exists on node " + node +
                      " but is not active; start it there (virsh "
                      "net-start " +
                      network + ", and net-autostart)",
                  true);
    }
  }

  const std::string uri_;
  const bool checkNetworks_;
  std::map<std::string, NetworkSpec> networks_;
  std::mutex mu_;
  Conn conn_;  // guarded by mu_
};

}  // namespace

VMHOST_PLUGIN(LibvirtNetwork, "libvirt-network", "0.1.0",
              "Interfaces on libvirt networks (optionally created as NAT networks), bridges or "
              "user networking",
              VMHOST_CAP_THREAD_SAFE)
