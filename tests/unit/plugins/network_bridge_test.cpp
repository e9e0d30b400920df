#define BOOST_TEST_MODULE network_bridge
#include "plugin_fixture.h"

#include <vmhost/schema/network.capnp.h>

#include <sched.h>

#include <cstdlib>

using namespace vmhost;

namespace {

Result<Reply<schema::InterfaceAttachment>> attach(PluginInstance& p, const std::string& bridge,
                                                  const std::string& network = "") {
  capnp::MallocMessageBuilder m;
  auto r = m.initRoot<schema::InterfaceRequest>();
  r.initVm().setNamespace("default");
  r.getVm().setName("vm1");
  r.getVm().setUid("uid-1");
  r.setNode("node-a");
  auto i = r.initInterface();
  i.setName("eth0");
  if (!network.empty()) {
    i.initSource().setNetwork(network);
  } else {
    i.initSource().setBridge(bridge);
  }
  return p.call<schema::InterfaceAttachment>(VMHOST_METHOD_NETWORK_ATTACH, m);
}

std::string str(capnp::Text::Reader t) { return t.cStr(); }

// A private network namespace with a real Linux bridge in it, so the test
// needs no change to the host's own network (requires root, as CI runs).
struct BridgeNamespace {
  BridgeNamespace() {
    BOOST_TEST_REQUIRE(::unshare(CLONE_NEWNET) == 0,
                       "unshare(CLONE_NEWNET) failed: this test needs root (CAP_SYS_ADMIN)");
    BOOST_TEST_REQUIRE(std::system("ip link add vmhtestbr0 type bridge") == 0,
                       "cannot create a bridge with iproute2 in the test's namespace");
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(absent_bridge_is_a_retryable_precondition) {
  auto p = test::loadPlugin("vmhost-network-bridge.so");
  auto a = attach(*p, "vmhost-nobr0");
  BOOST_TEST_REQUIRE(!a.ok());
  BOOST_TEST(a.error().code == VMHOST_ERR_FAILED_PRECONDITION);
  BOOST_TEST(a.error().retryable);
  BOOST_TEST(
      a.error().message ==
      "network plugin 'bridge': interface eth0: bridge vmhost-nobr0 does not exist on node node-a");
}

BOOST_AUTO_TEST_CASE(existing_bridge_is_attached_with_a_stable_mac) {
  BridgeNamespace ns;
  auto p = test::loadPlugin("vmhost-network-bridge.so");
  auto a = attach(*p, "vmhtestbr0");
  BOOST_TEST_REQUIRE(a.ok(), (a.ok() ? "" : a.error().message));
  BOOST_TEST(str(a.value().get().getType()) == "bridge");
  BOOST_TEST(str(a.value().get().getSource()) == "vmhtestbr0");
  BOOST_TEST(str(a.value().get().getModel()) == "virtio");
  // The same VM and interface get the same MAC from either network plugin.
  auto lv = test::loadPlugin("vmhost-network-libvirt-network.so");
  auto b = attach(*lv, "vmhtestbr0");
  BOOST_TEST_REQUIRE(b.ok());
  BOOST_TEST(str(a.value().get().getMac()) == str(b.value().get().getMac()));
}

BOOST_AUTO_TEST_CASE(allowed_bridges_are_enforced) {
  auto p = test::loadPlugin("vmhost-network-bridge.so", R"({"allowedBridges":["br-vms"]})");
  auto a = attach(*p, "br-other");
  BOOST_TEST_REQUIRE(!a.ok());
  BOOST_TEST(a.error().code == VMHOST_ERR_PERMISSION_DENIED);
  BOOST_TEST(
      a.error().message ==
      "network plugin 'bridge': interface eth0: bridge br-other is not in config.allowedBridges");
}

BOOST_AUTO_TEST_CASE(libvirt_networks_pass_through) {
  auto p = test::loadPlugin("vmhost-network-bridge.so");
  auto a = attach(*p, "", "default");
  BOOST_TEST_REQUIRE(a.ok());
  BOOST_TEST(str(a.value().get().getType()) == "network");
  BOOST_TEST(str(a.value().get().getSource()) == "default");
}

BOOST_AUTO_TEST_CASE(config_is_checked) {
  BOOST_TEST(test::createError("vmhost-network-bridge.so",
                               R"({"allowedBridges":["a-name-far-too-long-for-linux"]})") ==
             "plugin 'bridge' (network): create failed: INVALID_ARGUMENT: config.allowedBridges: "
             "'a-name-far-too-long-for-linux' is not an interface name");
  BOOST_TEST(
      test::createError("vmhost-network-bridge.so", R"({"macPrefix":"zz"})") ==
      "plugin 'bridge' (network): create failed: INVALID_ARGUMENT: config.macPrefix: expected "
      "three hex octets like 52:54:00, got 'zz'");
}
