#define BOOST_TEST_MODULE network_libvirt_network
#include "plugin_fixture.h"

#include <vmhost/schema/network.capnp.h>

#include <regex>

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
