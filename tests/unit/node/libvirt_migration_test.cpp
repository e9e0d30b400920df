// The parts of the libvirt migration wrapper that need no second host
// (node/migration/libvirt_migration.h): the destination XML's alignment with
// the source's live definition, and the flags a plan becomes. The job itself
// is proven on the harness (tests/cluster/libvirt_migration_test.sh).
#define BOOST_TEST_MODULE node_libvirt_migration
#include "node/migration/libvirt_migration.h"

#include <boost/test/unit_test.hpp>

#include <string>

namespace vmhost::node {
namespace {

const char* kSource = R"(<domain type='qemu'>
  <name>default_vm1</name>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
  </os>
  <cpu mode='custom' match='exact' check='full'>
    <model fallback='forbid'>qemu64</model>
  </cpu>
  <devices>
    <disk type='file' device='disk'><source file='/pool-a/vm1.qcow2'/></disk>
  </devices>
</domain>)";

const char* kTarget = R"(<domain type='qemu'>
  <name>default_vm1</name>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
  </os>
  <cputune><shares>1024</shares></cputune>
  <devices>
    <disk type='file' device='disk'><source file='/pool-b/vm1.qcow2'/></disk>
  </devices>
</domain>)";

BOOST_AUTO_TEST_CASE(the_target_runs_the_sources_machine_type_and_cpu_with_its_own_disks) {
  auto aligned = alignDestXml(kSource, kTarget);
  BOOST_REQUIRE(aligned.ok());
  const std::string& x = aligned.value();
  BOOST_TEST(x.find("machine='pc-q35-7.2'") != std::string::npos);
  BOOST_TEST(x.find("machine='q35'") == std::string::npos);
  BOOST_TEST(x.find("<model fallback='forbid'>qemu64</model>") != std::string::npos);
  BOOST_TEST(x.find("<cpu ") < x.find("<devices>"));
  // What the target chose stays: its disk path, its <cputune> (not a <cpu>).
  BOOST_TEST(x.find("/pool-b/vm1.qcow2") != std::string::npos);
  BOOST_TEST(x.find("/pool-a/") == std::string::npos);
  BOOST_TEST(x.find("<cputune><shares>1024</shares></cputune>") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_target_cpu_element_is_replaced_not_doubled) {
  std::string target = kTarget;
  target.replace(target.find("<devices>"), 0, "<cpu mode='host-model'/>\n  ");
  auto aligned = alignDestXml(kSource, target);
  BOOST_REQUIRE(aligned.ok());
  const std::string& x = aligned.value();
  BOOST_TEST(x.find("host-model") == std::string::npos);
  BOOST_TEST(x.find("<cpu ") == x.rfind("<cpu "));
}

BOOST_AUTO_TEST_CASE(xml_without_an_os_type_is_refused) {
  auto noSource = alignDestXml("<domain><devices/></domain>", kTarget);
  BOOST_REQUIRE(!noSource.ok());
  BOOST_TEST(noSource.error().code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(noSource.error().message.find("source") != std::string::npos);
  auto noTarget = alignDestXml(kSource, "<domain><devices/></domain>");
  BOOST_REQUIRE(!noTarget.ok());
  BOOST_TEST(noTarget.error().message.find("destination") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_plan_becomes_libvirts_flags) {
  MigrateParams p;
  BOOST_TEST(describeMigrateFlags(p) == "live,peer2peer,persist-dest");
  p.copyDisks = {"vda"};
  p.tls = true;
  p.allowPostCopy = true;
  p.autoConverge = true;
  BOOST_TEST(describeMigrateFlags(p) ==
             "live,peer2peer,persist-dest,non-shared-inc,auto-converge,postcopy,tls");
  p.copyFullChain = true;
  p.parallelConnections = 4;
  p.unsafe = true;
  BOOST_TEST(describeMigrateFlags(p) ==
             "live,peer2peer,persist-dest,non-shared-disk,parallel,auto-converge,postcopy,tls,"
             "unsafe");
}

}  // namespace
}  // namespace vmhost::node
