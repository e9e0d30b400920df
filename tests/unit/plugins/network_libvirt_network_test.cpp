#define BOOST_TEST_MODULE network_libvirt_network
#include "plugin_fixture.h"

#include <libvirt/libvirt.h>
#include <vmhost/schema/network.capnp.h>

#include <atomic>
#include <regex>
#include <thread>
#include <vector>

using namespace vmhost;

namespace {

enum class Src { Network, Bridge, User };

Result<Reply<schema::InterfaceAttachment>> attach(PluginInstance& p, const std::string& uid,
                                                  const std::string& iface, Src src,
                                                  const std::string& mac = "",
                                                  const std::string& model = "") {
  capnp::MallocMessageBuilder m;
  auto r = m.initRoot<schema::InterfaceRequest>();
  r.initVm().setNamespace("default");
  r.getVm().setName("vm1");
  r.getVm().setUid(uid);
  auto i = r.initInterface();
  i.setName(iface);
  i.setMac(mac);
  i.setModel(model);
  switch (src) {
    case Src::Network:
      i.initSource().setNetwork("default");
      break;
    case Src::Bridge:
      i.initSource().setBridge("br0");
      break;
    case Src::User:
      i.initSource().setUser();
      break;
  }
  return p.call<schema::InterfaceAttachment>(VMHOST_METHOD_NETWORK_ATTACH, m);
}

std::string str(capnp::Text::Reader t) { return t.cStr(); }

}  // namespace

BOOST_AUTO_TEST_CASE(network_source_maps_to_libvirt_network) {
  auto p = test::loadPlugin("vmhost-network-libvirt-network.so");
  auto a = attach(*p, "uid-1", "eth0", Src::Network);
  BOOST_TEST_REQUIRE(a.ok());
  auto att = a.value().get();
  BOOST_TEST(str(att.getType()) == "network");
  BOOST_TEST(str(att.getSource()) == "default");
  BOOST_TEST(str(att.getModel()) == "virtio");
  BOOST_TEST(std::regex_match(str(att.getMac()),
                              std::regex("52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}")));
}

BOOST_AUTO_TEST_CASE(bridge_and_user_sources) {
  auto p = test::loadPlugin("vmhost-network-libvirt-network.so");
  auto b = attach(*p, "uid-1", "eth0", Src::Bridge, "", "e1000");
  BOOST_TEST_REQUIRE(b.ok());
  BOOST_TEST(str(b.value().get().getType()) == "bridge");
  BOOST_TEST(str(b.value().get().getSource()) == "br0");
  BOOST_TEST(str(b.value().get().getModel()) == "e1000");
  auto u = attach(*p, "uid-1", "eth1", Src::User);
  BOOST_TEST_REQUIRE(u.ok());
  BOOST_TEST(str(u.value().get().getType()) == "user");
}

BOOST_AUTO_TEST_CASE(mac_is_stable_per_vm_and_interface) {
  auto p = test::loadPlugin("vmhost-network-libvirt-network.so");
  auto a1 = attach(*p, "uid-1", "eth0", Src::Network);
  auto a2 = attach(*p, "uid-1", "eth0", Src::Network);
  auto other = attach(*p, "uid-1", "eth1", Src::Network);
  auto otherVm = attach(*p, "uid-2", "eth0", Src::Network);
  BOOST_TEST_REQUIRE((a1.ok() && a2.ok() && other.ok() && otherVm.ok()));
  BOOST_TEST(str(a1.value().get().getMac()) == str(a2.value().get().getMac()));
  BOOST_TEST(str(a1.value().get().getMac()) != str(other.value().get().getMac()));
  BOOST_TEST(str(a1.value().get().getMac()) != str(otherVm.value().get().getMac()));
  // A second instance (a restarted host) assigns the same MAC.
  auto q = test::loadPlugin("vmhost-network-libvirt-network.so");
  auto again = attach(*q, "uid-1", "eth0", Src::Network);
  BOOST_TEST_REQUIRE(again.ok());
  BOOST_TEST(str(again.value().get().getMac()) == str(a1.value().get().getMac()));
}

BOOST_AUTO_TEST_CASE(given_mac_is_kept_and_checked) {
  auto p = test::loadPlugin("vmhost-network-libvirt-network.so");
  auto a = attach(*p, "uid-1", "eth0", Src::Network, "52:54:00:AB:CD:EF");
  BOOST_TEST_REQUIRE(a.ok());
  BOOST_TEST(str(a.value().get().getMac()) == "52:54:00:ab:cd:ef");
  auto bad = attach(*p, "uid-1", "eth0", Src::Network, "52:54:00:zz:00:00");
  BOOST_TEST_REQUIRE(!bad.ok());
  BOOST_TEST(bad.error().message ==
             "network plugin 'libvirt-network': interface eth0: mac '52:54:00:zz:00:00' is not a "
             "MAC address");
  auto multicast = attach(*p, "uid-1", "eth0", Src::Network, "01:00:5e:00:00:01");
  BOOST_TEST_REQUIRE(!multicast.ok());
  BOOST_TEST(multicast.error().code == VMHOST_ERR_INVALID_ARGUMENT);
  auto model = attach(*p, "uid-1", "eth0", Src::Network, "", "ne2k");
  BOOST_TEST_REQUIRE(!model.ok());
  BOOST_TEST(
      model.error().message ==
      "network plugin 'libvirt-network': interface eth0: model: 'ne2k' is not one of virtio, "
      "e1000, e1000e, rtl8139");
}

BOOST_AUTO_TEST_CASE(config_prefix_is_used_and_checked) {
  auto p = test::loadPlugin("vmhost-network-libvirt-network.so", R"({"macPrefix":"02:AA:00"})");
  auto a = attach(*p, "uid-1", "eth0", Src::Network);
  BOOST_TEST_REQUIRE(a.ok());
  BOOST_TEST(str(a.value().get().getMac()).rfind("02:aa:00:", 0) == 0);
  BOOST_TEST(
      test::createError("vmhost-network-libvirt-network.so", R"({"macPrefix":"01:00:00"})") ==
      "plugin 'libvirt-network' (network): create failed: INVALID_ARGUMENT: config.macPrefix: "
      "01:00:00 is a multicast prefix");
}

BOOST_AUTO_TEST_CASE(detach_is_idempotent) {
  auto p = test::loadPlugin("vmhost-network-libvirt-network.so");
  for (int i = 0; i < 2; ++i) {
    capnp::MallocMessageBuilder m;
    m.initRoot<schema::InterfaceRelease>().initInterface().setName("eth0");
    auto r = p->call<schema::InterfaceReleased>(VMHOST_METHOD_NETWORK_DETACH, m);
    BOOST_TEST_REQUIRE(r.ok());
  }
}

// --- networks the plugin creates (config.networks) and checks (config.checkNetworks)

namespace {

const std::string kPlugin = "vmhost-network-libvirt-network.so";

Result<Reply<schema::InterfaceAttachment>> attachTo(PluginInstance& p, const std::string& network) {
  capnp::MallocMessageBuilder m;
  auto r = m.initRoot<schema::InterfaceRequest>();
  r.initVm().setNamespace("default");
  r.getVm().setName("vm1");
  r.getVm().setUid("uid-1");
  r.setNode("node-a");
  auto i = r.initInterface();
  i.setName("eth0");
  i.initSource().setNetwork(network);
  return p.call<schema::InterfaceAttachment>(VMHOST_METHOD_NETWORK_ATTACH, m);
}

// A config with one network; `fields` are extra or overriding JSON members.
std::string oneNetwork(const std::string& fields,
                       const std::string& uri = "network+unix:///system?socket=/nonexistent/s") {
  return R"({"uri":")" + uri + R"(","networks":[{"name":"nat0","bridge":"vmhosttest0",)" + fields +
         "}]}";
}

const std::string kCreateFailed =
    "plugin 'libvirt-network' (network): create failed: INVALID_ARGUMENT: ";

}  // namespace

BOOST_AUTO_TEST_CASE(network_config_is_checked_naming_the_field) {
  auto err = [](const std::string& fields) {
    return test::createError(kPlugin, oneNetwork(fields));
  };
  BOOST_TEST(err(R"("address":"192.168.213.1")") ==
             kCreateFailed +
                 "config.networks[0].address: '192.168.213.1' is not an IPv4 address with a "
                 "prefix length (like 192.168.213.1/24)");
  BOOST_TEST(err(R"("address":"192.168.300.1/24")") ==
             kCreateFailed +
                 "config.networks[0].address: '192.168.300.1/24' is not an IPv4 address with a "
                 "prefix length (like 192.168.213.1/24)");
  BOOST_TEST(err(R"("address":"192.168.213.1/33")") ==
             kCreateFailed +
                 "config.networks[0].address: prefix length /33 is outside 8..30 (a subnet with "
                 "room for the node and guests)");
  BOOST_TEST(err(R"("address":"192.168.213.0/24")") ==
             kCreateFailed +
                 "config.networks[0].address: 192.168.213.0 is the network address of "
                 "192.168.213.0/24; give the node's address in it, like 192.168.213.1/24");
  BOOST_TEST(
      err(R"("address":"192.168.213.1/24","dhcpStart":"192.168.214.10","dhcpEnd":"192.168.213.20")") ==
      kCreateFailed +
          "config.networks[0].dhcpStart: 192.168.214.10 is outside the usable addresses of "
          "192.168.213.0/24 (192.168.213.1 to 192.168.213.254)");
  BOOST_TEST(
      err(R"("address":"192.168.213.1/24","dhcpStart":"192.168.213.10","dhcpEnd":"192.168.213.255")") ==
      kCreateFailed +
          "config.networks[0].dhcpEnd: 192.168.213.255 is outside the usable addresses of "
          "192.168.213.0/24 (192.168.213.1 to 192.168.213.254)");
  BOOST_TEST(
      err(R"("address":"192.168.213.1/24","dhcpStart":"192.168.213.50","dhcpEnd":"192.168.213.20")") ==
      kCreateFailed +
          "config.networks[0]: dhcpStart 192.168.213.50 comes after dhcpEnd "
          "192.168.213.20");
  BOOST_TEST(
      err(R"("address":"192.168.213.1/24","dhcpStart":"192.168.213.1","dhcpEnd":"192.168.213.20")") ==
      kCreateFailed +
          "config.networks[0]: the DHCP range 192.168.213.1 to 192.168.213.20 holds "
          "the node's own address 192.168.213.1");
  BOOST_TEST(err(R"("address":"192.168.213.1/24","dhcpStart":"192.168.213.10")") ==
             kCreateFailed +
                 "config.networks[0].dhcpEnd: missing; give both dhcpStart and dhcpEnd, or "
                 "neither (no DHCP)");
  BOOST_TEST(err(R"("address":"192.168.213.1/24","dhcpStart":"x","dhcpEnd":"192.168.213.9")") ==
             kCreateFailed +
                 "config.networks[0].dhcpStart: 'x' is not an IPv4 address (like "
                 "192.168.213.10)");
  BOOST_TEST(err(R"("address":"192.168.213.1/24","forward":"bridge")") ==
             kCreateFailed + "config.networks[0].forward: 'bridge' is not one of nat, none");
  BOOST_TEST(test::createError(kPlugin, R"({"networks":[{"name":"a b","bridge":"br0",)"
                                        R"("address":"10.1.0.1/24"}]})") ==
             kCreateFailed +
                 "config.networks[0].name: 'a b' is not a network name (letters, digits, '_', "
                 "'.', '-'; up to 64)");
  BOOST_TEST(test::createError(kPlugin,
                               R"({"networks":[{"name":"n","bridge":"a-very-long-bridge0",)"
                               R"("address":"10.1.0.1/24"}]})") ==
             kCreateFailed +
                 "config.networks[0].bridge: 'a-very-long-bridge0' is not an interface name (up "
                 "to 15 letters, digits, '_', '.', '-')");
  BOOST_TEST(test::createError(kPlugin,
                               R"({"networks":[)"
                               R"({"name":"n","bridge":"br0","address":"10.1.0.1/24"},)"
                               R"({"name":"n","bridge":"br1","address":"10.2.0.1/24"}]})") ==
             kCreateFailed + "config.networks[1].name: network n is configured twice");
  BOOST_TEST(test::createError(kPlugin,
                               R"({"networks":[)"
                               R"({"name":"n","bridge":"br0","address":"10.1.0.1/24"},)"
                               R"({"name":"m","bridge":"br0","address":"10.2.0.1/24"}]})") ==
             kCreateFailed + "config.networks[1].bridge: bridge br0 is used by two networks");
  BOOST_TEST(test::createError(kPlugin, R"({"uri":""})") ==
             kCreateFailed +
                 "config.uri: must not be empty (the node's libvirt network connection, like "
                 "network:///system)");
  BOOST_TEST(
      test::createError(kPlugin, R"({"networks":[{"name":"n","bridge":"br0","adress":"x"}]})")
          .find(kCreateFailed + "config: ") == 0);
}

BOOST_AUTO_TEST_CASE(unconfigured_networks_never_touch_libvirt) {
  // Neither listed nor checked: no connection is made (the URI is unreachable).
  auto p = test::loadPlugin(kPlugin, oneNetwork(R"("address":"10.1.0.1/24")"));
  auto a = attachTo(*p, "elsewhere");
  BOOST_TEST_REQUIRE(a.ok(), (a.ok() ? "" : a.error().message));
  BOOST_TEST(str(a.value().get().getSource()) == "elsewhere");
}

BOOST_AUTO_TEST_CASE(unreachable_libvirt_names_the_uri_and_the_setup_script) {
  auto p = test::loadPlugin(kPlugin, oneNetwork(R"("address":"10.1.0.1/24")"));
  auto a = attachTo(*p, "nat0");
  BOOST_TEST_REQUIRE(!a.ok());
  BOOST_TEST(a.error().code == VMHOST_ERR_UNAVAILABLE);
  BOOST_TEST(a.error().retryable);
  BOOST_TEST(a.error().message.find(
                 "network plugin 'libvirt-network': interface eth0: cannot connect to libvirt at "
                 "network+unix:///system?socket=/nonexistent/s on node node-a (") == 0,
             a.error().message);
  BOOST_TEST(a.error().message.find("/nonexistent/s") != std::string::npos);
  BOOST_TEST(a.error().message.find(
                 "); start libvirtd there with deploy/node-setup.sh, or set config.uri") !=
                 std::string::npos,
             a.error().message);
}

BOOST_AUTO_TEST_CASE(configured_network_is_defined_started_and_autostarted) {
  // libvirt's test driver: one in-memory driver shared by every connection
  // to test:///default in this process, the plugin's and ours.
  virConnectPtr c = virConnectOpen("test:///default");
  BOOST_TEST_REQUIRE(c != nullptr);
  auto p = test::loadPlugin(
      kPlugin, oneNetwork(R"("address":"192.168.213.1/24","dhcpStart":"192.168.213.10",)"
                          R"("dhcpEnd":"192.168.213.250")",
                          "test:///default"));
  BOOST_TEST(virNetworkLookupByName(c, "nat0") == nullptr);
  for (int i = 0; i < 2; ++i) {  // the second attach finds it all done
    auto a = attachTo(*p, "nat0");
    BOOST_TEST_REQUIRE(a.ok(), (a.ok() ? "" : a.error().message));
    BOOST_TEST(str(a.value().get().getType()) == "network");
    BOOST_TEST(str(a.value().get().getSource()) == "nat0");
  }
  virNetworkPtr n = virNetworkLookupByName(c, "nat0");
  BOOST_TEST_REQUIRE(n != nullptr);
  BOOST_TEST(virNetworkIsActive(n) == 1);
  BOOST_TEST(virNetworkIsPersistent(n) == 1);
  int autostart = 0;
  BOOST_TEST(virNetworkGetAutostart(n, &autostart) == 0);
  BOOST_TEST(autostart == 1);
  char* xml = virNetworkGetXMLDesc(n, 0);
  BOOST_TEST_REQUIRE(xml != nullptr);
  std::string x = xml;
  free(xml);
  BOOST_TEST(x.find("<forward mode='nat'") != std::string::npos, x);
  BOOST_TEST(x.find("<bridge name='vmhosttest0'") != std::string::npos, x);
  BOOST_TEST(x.find("<ip address='192.168.213.1' prefix='24'>") != std::string::npos, x);
  BOOST_TEST(x.find("<range start='192.168.213.10' end='192.168.213.250'") != std::string::npos, x);

  // Stopped behind the plugin's back: the next attach starts it again.
  BOOST_TEST(virNetworkDestroy(n) == 0);
  auto again = attachTo(*p, "nat0");
  BOOST_TEST_REQUIRE(again.ok(), (again.ok() ? "" : again.error().message));
  BOOST_TEST(virNetworkIsActive(n) == 1);
  virNetworkDestroy(n);
  virNetworkUndefine(n);
  virNetworkFree(n);
  virConnectClose(c);
}

BOOST_AUTO_TEST_CASE(a_foreign_network_of_that_name_is_not_taken_over) {
  virConnectPtr c = virConnectOpen("test:///default");
  BOOST_TEST_REQUIRE(c != nullptr);
  // test:///default comes with a network named default on bridge virbr0.
  auto p = test::loadPlugin(
      kPlugin, R"({"uri":"test:///default","networks":[{"name":"default","bridge":"vmhostbr9",)"
               R"("address":"192.168.213.1/24"}]})");
  auto a = attachTo(*p, "default");
  BOOST_TEST_REQUIRE(!a.ok());
  BOOST_TEST(a.error().code == VMHOST_ERR_FAILED_PRECONDITION);
  BOOST_TEST(a.error().message ==
             "network plugin 'libvirt-network': interface eth0: network default "
             "(config.networks[0]) on node node-a: exists with bridge 'virbr0', not vmhostbr9; "
             "remove it (virsh net-destroy, net-undefine) or rename the configured network");
  virConnectClose(c);
}

BOOST_AUTO_TEST_CASE(checked_networks_must_exist_and_be_active) {
  virConnectPtr c = virConnectOpen("test:///default");
  BOOST_TEST_REQUIRE(c != nullptr);
  auto p = test::loadPlugin(kPlugin, R"({"uri":"test:///default","checkNetworks":true})");
  auto ok = attachTo(*p, "default");
  BOOST_TEST_REQUIRE(ok.ok(), (ok.ok() ? "" : ok.error().message));
  auto missing = attachTo(*p, "nosuchnet");
  BOOST_TEST_REQUIRE(!missing.ok());
  BOOST_TEST(missing.error().code == VMHOST_ERR_NOT_FOUND);
  BOOST_TEST(missing.error().message ==
             "network plugin 'libvirt-network': interface eth0: network nosuchnet does not exist "
             "on node node-a (libvirt at test:///default); define it there (virsh net-define) or "
             "add it to the libvirt-network plugin's config.networks");
  virNetworkPtr def = virNetworkLookupByName(c, "default");
  BOOST_TEST_REQUIRE(def != nullptr);
  BOOST_TEST(virNetworkDestroy(def) == 0);
  auto inactive = attachTo(*p, "default");
  BOOST_TEST(virNetworkCreate(def) == 0);
  virNetworkFree(def);
  BOOST_TEST_REQUIRE(!inactive.ok());
  BOOST_TEST(inactive.error().code == VMHOST_ERR_FAILED_PRECONDITION);
  BOOST_TEST(inactive.error().message ==
             "network plugin 'libvirt-network': interface eth0: network default exists on node "
             "node-a but is not active; start it there (virsh net-start default, and "
             "net-autostart)");
  virConnectClose(c);
}

BOOST_AUTO_TEST_CASE(concurrent_attaches_create_the_network_once) {
  // The plugin declares VMHOST_CAP_THREAD_SAFE: the host may attach the
  // interfaces of several VMs at once, all to a network not yet defined.
  virConnectPtr c = virConnectOpen("test:///default");
  BOOST_TEST_REQUIRE(c != nullptr);
  auto p = test::loadPlugin(
      kPlugin, R"({"uri":"test:///default","networks":[{"name":"nat1","bridge":"vmhosttest1",)"
               R"("address":"10.213.0.1/24","dhcpStart":"10.213.0.10","dhcpEnd":"10.213.0.20"}]})");
  std::atomic<int> ok{0};
  std::vector<std::string> errors(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto a = attachTo(*p, "nat1");
      if (a.ok()) {
        ++ok;
      } else {
        errors[i] = a.error().message;
      }
    });
  }
  for (auto& t : threads) t.join();
  BOOST_TEST(ok.load() == 8);
  for (const auto& e : errors) BOOST_TEST(e.empty(), e);
  virNetworkPtr n = virNetworkLookupByName(c, "nat1");
  BOOST_TEST_REQUIRE(n != nullptr);
  BOOST_TEST(virNetworkIsActive(n) == 1);
  virNetworkDestroy(n);
  virNetworkUndefine(n);
  virNetworkFree(n);
  virConnectClose(c);
}
