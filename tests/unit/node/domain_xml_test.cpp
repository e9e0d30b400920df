// Golden-file tests for the domain translation, in the manner of libvirt's
// qemuxmlconftest, from the input production starts from to the final XML:
//
//   tests/fixtures/domain/<case>.vm.yaml       a VM manifest (or the seed
//                                              demo's tests/fixtures/seed-vm.yaml),
//                                              read as the API reads it
//   tests/fixtures/domain/<case>.answers.yaml  what the API assigned, what the
//                                              node chose and what the plugins
//                                              answered (Cap'n Proto JSON)
//   tests/fixtures/domain/<case>.xml           toDomainXml(toDomainSpec(...)),
//                                              byte for byte
//
// plus DomainSpec -> XML cases for what the writer can express beyond any
// VM spec (escaping, fixed VNC ports, every disk type and format). Every
// golden is also checked against libvirt's own schema (virt-xml-validate).
//
// After an intended change to the output, regenerate the files and review
// the diff:  VMHOST_UPDATE_GOLDEN=1 ctest -R unit_node_domain_xml
#define BOOST_TEST_MODULE node_domain_xml
#include <boost/test/unit_test.hpp>

#include "api/kubevirt.h"
#include "api/types.h"
#include "common/yaml.h"
#include "node/domain/converter.h"
#include "node/domain/domain_xml.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <vector>

using namespace vmhost;
using namespace vmhost::node;
namespace fs = std::filesystem;

namespace {

const fs::path kFixtures = fs::path(VMHOST_TEST_SOURCE_DIR) / "tests/fixtures";
const fs::path kGoldenDir = kFixtures / "domain";

bool updateGolden() {
  const char* v = std::getenv("VMHOST_UPDATE_GOLDEN");
  return v && std::string(v) == "1";
}

std::string readFile(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The first line where two texts differ, for a readable failure.
std::string firstDifference(const std::string& want, const std::string& got) {
  std::istringstream a(want), b(got);
  std::string la, lb;
  for (int line = 1;; ++line) {
    bool ha = static_cast<bool>(std::getline(a, la));
    bool hb = static_cast<bool>(std::getline(b, lb));
    if (!ha && !hb) return "texts are equal";
    if (!ha || !hb || la != lb) {
      return "line " + std::to_string(line) + ":\n  golden: " + (ha ? la : "<end>") +
             "\n  actual: " + (hb ? lb : "<end>");
    }
  }
}

void checkGolden(const std::string& name, const DomainSpec& spec) {
  auto xml = toDomainXml(spec);
  BOOST_TEST_REQUIRE(xml.ok(), (xml.ok() ? "" : xml.error().describe()));
  fs::path file = kGoldenDir / (name + ".xml");
  if (updateGolden()) {
    fs::create_directories(kGoldenDir);
    std::ofstream(file, std::ios::binary) << xml.value();
    BOOST_TEST_MESSAGE("updated " << file);
    return;
  }
  BOOST_TEST_REQUIRE(fs::exists(file),
                     file << " is missing; run with VMHOST_UPDATE_GOLDEN=1 to create it");
  std::string want = readFile(file);
  BOOST_TEST(want == xml.value(), name << ".xml differs at " << firstDifference(want, xml.value()));
}

// The guest the e2e tests boot, as the node would describe it.
DomainSpec minimalSpec() {
  DomainSpec s;
  s.vm = {"default", "tiny", "5b0c1f6e-8d1a-4a3e-9f57-2d8c0b1e4a10", 1};
  s.name = domainName(s.vm.ns, s.vm.name);
  s.uuid = "5b0c1f6e-8d1a-4a3e-9f57-2d8c0b1e4a10";
  s.memoryBytes = 128ull << 20;
  s.vcpus = 1;
  s.kernel = "/var/cache/vmhost/guest/vmlinux";
  s.initrd = "/var/cache/vmhost/guest/initramfs.gz";
  s.cmdline = "console=ttyS0 quiet cryptomgr.notests";
  s.serialLogFile = "/var/log/vmhost/default_tiny.serial.log";
  return s;
}

Error expectInvalid(const DomainSpec& s) {
  auto xml = toDomainXml(s);
  BOOST_TEST_REQUIRE(!xml.ok(), "spec was accepted");
  BOOST_TEST(xml.error().code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(!xml.error().retryable);
  return xml.error();
}

void expectInvalidField(const DomainSpec& s, const std::string& message) {
  Error e = expectInvalid(s);
  BOOST_TEST(e.message == message);
}

std::string which(const std::string& tool) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    fs::path p = fs::path(dir.empty() ? "." : dir) / tool;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return "";
}

// ---- From the VM manifest ----

// Each case's manifest; the answers and the golden are <name>.answers.yaml
// and <name>.xml in kGoldenDir.
struct ManifestCase {
  std::string name;
  fs::path manifest;
};
const std::vector<ManifestCase> kManifestCases = {
    {"seed_vm", kFixtures / "seed-vm.yaml"},
    {"kernel_boot_guest", kGoldenDir / "kernel_boot_guest.vm.yaml"},
    {"every_volume_source", kGoldenDir / "every_volume_source.vm.yaml"},
    {"nics_every_source", kGoldenDir / "nics_every_source.vm.yaml"},
    {"plugins_silent", kGoldenDir / "plugins_silent.vm.yaml"},
    {"vnc_virtio_video_kvm", kGoldenDir / "vnc_virtio_video_kvm.vm.yaml"},
};

// The DomainSpec -> XML cases below.
const std::set<std::string> kSpecCases = {"minimal_kernel_boot",  "disks_all_combinations",
                                          "interfaces_all_types", "vnc_fixed_port",
                                          "kvm_pc_disk_boot",     "hostile_strings"};

api::Json yamlFile(const fs::path& file) {
  auto json = yaml::parseToJson(readFile(file));
  BOOST_TEST_REQUIRE(json.ok(), file << ": " << (json.ok() ? "" : json.error().message));
  return api::Json::parse(json.value());
}

std::string fieldErrors(const api::FieldErrors& errors) {
  std::string out;
  for (const auto& e : errors) out += "\n  " + e.toString();
  return out;
}

// The manifest as the API decodes and validates it (strict: a typo in a
// fixture fails), with what the API would have assigned.
api::VirtualMachine loadVm(const fs::path& file, const api::Json& assigned) {
  api::Json j = yamlFile(file);
  bool kubevirt = j.value("apiVersion", "") == api::kKubevirtApiVersion;
  auto decoded = kubevirt ? api::decodeKubevirtVm(j, api::FieldValidation::kStrict)
                          : api::decodeVirtualMachine(j, api::FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(decoded.ok(), file << ":" << fieldErrors(decoded.errors));
  api::VirtualMachine vm = std::move(decoded.value);
  if (vm.metadata.ns.empty()) vm.metadata.ns = assigned.at("namespace").get<std::string>();
  BOOST_TEST_REQUIRE(vm.metadata.ns == assigned.at("namespace").get<std::string>());
  vm.metadata.uid = assigned.at("uid").get<std::string>();
  vm.metadata.generation = assigned.at("generation").get<int64_t>();
  auto errors = kubevirt ? api::validateKubevirtVm(vm) : api::validateVirtualMachine(vm);
  BOOST_TEST_REQUIRE(errors.empty(), file << ":" << fieldErrors(errors));
  return vm;
}

// A plugin's answer from its Cap'n Proto JSON form, unknown fields refused.
template <typename T>
typename T::Reader decodeAnswer(capnp::MallocMessageBuilder& message, const api::Json& j) {
  capnp::JsonCodec codec;
  codec.setRejectUnknownFields(true);
  std::string text = j.dump();
  auto root = message.initRoot<T>();
  codec.decode(kj::ArrayPtr<const char>(text.data(), text.size()), root);
  return root.asReader();
}

struct Answers {
  api::Json assigned;
  NodeChoices node;
  PluginAttachments attachments;
  std::vector<std::unique_ptr<capnp::MallocMessageBuilder>> messages;  // behind the readers
};

std::unique_ptr<Answers> loadAnswers(const fs::path& file, const api::Json& j) {
  auto out = std::make_unique<Answers>();
  for (const auto& [key, value] : j.items()) {
    BOOST_TEST_REQUIRE(
        (key == "assigned" || key == "node" || key == "volumes" || key == "interfaces"),
        file << ": unknown key " << key);
  }
  out->assigned = j.at("assigned");
  const api::Json& node = j.at("node");
  out->node.serialLogFile = node.value("serialLogFile", "");
  out->node.machine = node.value("machine", out->node.machine);
  std::string virtType = node.value("virtType", "qemu");
  BOOST_TEST_REQUIRE((virtType == "qemu" || virtType == "kvm"), file << ": virtType " << virtType);
  out->node.virtType = virtType == "kvm" ? VirtType::kKvm : VirtType::kQemu;
  for (const auto& v : j.at("volumes")) {
    out->messages.push_back(std::make_unique<capnp::MallocMessageBuilder>());
    out->attachments.volumes.push_back(
        decodeAnswer<schema::VolumeAttachment>(*out->messages.back(), v));
  }
  for (const auto& i : j.at("interfaces")) {
    out->messages.push_back(std::make_unique<capnp::MallocMessageBuilder>());
    out->attachments.interfaces.push_back(
        decodeAnswer<schema::InterfaceAttachment>(*out->messages.back(), i));
  }
  return out;
}

// The case's domain, with `change` applied to its answers first.
Result<DomainSpec> convertCase(const ManifestCase& c,
                               const std::function<void(api::Json&)>& change = {}) {
  fs::path file = kGoldenDir / (c.name + ".answers.yaml");
  api::Json j = yamlFile(file);
  if (change) change(j);
  auto answers = loadAnswers(file, j);
  api::VirtualMachine vm = loadVm(c.manifest, answers->assigned);
  return toDomainSpec(vm, answers->attachments, answers->node);
}

const ManifestCase& manifestCase(const std::string& name) {
  for (const auto& c : kManifestCases) {
    if (c.name == name) return c;
  }
  BOOST_FAIL("no case " << name);
  throw std::logic_error("unreachable");
}

// The converter's refusal of a case whose answers were changed.
Error refusal(const std::string& name, const std::function<void(api::Json&)>& change) {
  auto spec = convertCase(manifestCase(name), change);
  BOOST_TEST_REQUIRE(!spec.ok(), name << ": the changed answers were accepted");
  return spec.error();
}

void expectRefusal(const std::string& name, const std::function<void(api::Json&)>& change,
                   const std::string& message) {
  Error e = refusal(name, change);
  BOOST_TEST(e.code == VMHOST_ERR_FAILED_PRECONDITION);
  BOOST_TEST(!e.retryable);
  BOOST_TEST(e.message == message);
}

}  // namespace

BOOST_AUTO_TEST_CASE(vm_manifests_to_domain_xml) {
  for (const auto& c : kManifestCases) {
    BOOST_TEST_CONTEXT(c.name) {
      auto spec = convertCase(c);
      BOOST_TEST_REQUIRE(spec.ok(), (spec.ok() ? "" : spec.error().describe()));
      checkGolden(c.name, spec.value());
    }
  }
}

// An answer that contradicts the spec where the guest would notice is
// refused, naming the volume or interface (rules: node/domain/converter.h).
BOOST_AUTO_TEST_CASE(answers_contradicting_the_spec_are_refused) {
  expectRefusal(
      "every_volume_source", [](api::Json& j) { j["volumes"][1]["bus"] = "virtio"; },
      "volume data: the storage plugin attached it on bus virtio (target sda) but the spec asks "
      "for bus scsi");
  expectRefusal(
      "every_volume_source", [](api::Json& j) { j["volumes"][0]["bootOrder"] = 3; },
      "volume root: the storage plugin answered boot order 3 but the spec asks for 1");
  expectRefusal(
      "every_volume_source", [](api::Json& j) { j["volumes"][2]["readOnly"] = false; },
      "volume seed: the spec asks for a read-only disk but the storage plugin attached it "
      "writable");
  expectRefusal(
      "every_volume_source", [](api::Json& j) { j["volumes"][0]["volumeName"] = "data"; },
      "volume root: the storage plugin answered for volume data instead");
  expectRefusal(
      "nics_every_source", [](api::Json& j) { j["interfaces"][0]["interfaceName"] = "eth9"; },
      "interface net0: the network plugin answered for interface eth9 instead");
  expectRefusal(
      "nics_every_source", [](api::Json& j) { j["interfaces"][1]["mac"] = "52:54:00:aa:bb:02"; },
      "interface uplink: the network plugin assigned MAC 52:54:00:aa:bb:02 but the spec pins "
      "52:54:00:AA:BB:01");
  // One answer per device, in order, is the caller's contract.
  Error e = refusal("nics_every_source", [](api::Json& j) { j["interfaces"].erase(3); });
  BOOST_TEST(e.code == VMHOST_ERR_INTERNAL);
  BOOST_TEST(e.message ==
             "vm default/nics: 0 disks and 4 interfaces, but 0 volume and 3 interface attachments");
}

// Where the plugin speaks and the spec does not forbid it, the plugin wins.
BOOST_AUTO_TEST_CASE(plugin_answers_win_where_the_spec_allows) {
  // A source offered read-only only: the disk is read-only.
  auto ro = convertCase(manifestCase("kernel_boot_guest"),
                        [](api::Json& j) { j["volumes"][0]["readOnly"] = true; });
  BOOST_TEST_REQUIRE(ro.ok(), (ro.ok() ? "" : ro.error().describe()));
  BOOST_TEST(ro.value().disks[0].readOnly);
  // A model of the plugin's (its wiring needs virtio) over the spec's e1000.
  auto model = convertCase(manifestCase("nics_every_source"),
                           [](api::Json& j) { j["interfaces"][1]["model"] = "virtio"; });
  BOOST_TEST_REQUIRE(model.ok(), (model.ok() ? "" : model.error().describe()));
  BOOST_TEST(model.value().interfaces[1].model == "virtio");
  // A MAC the plugin assigned where the spec pins none.
  auto mac = convertCase(manifestCase("kernel_boot_guest"));
  BOOST_TEST_REQUIRE(mac.ok());
  BOOST_TEST(mac.value().interfaces[0].mac == "52:54:00:3e:91:0c");
  // A pinned MAC the plugin does not echo is kept.
  auto pinned = convertCase(manifestCase("nics_every_source"),
                            [](api::Json& j) { j["interfaces"][1].erase("mac"); });
  BOOST_TEST_REQUIRE(pinned.ok());
  BOOST_TEST(pinned.value().interfaces[1].mac == "52:54:00:AA:BB:01");
}

BOOST_AUTO_TEST_CASE(disk_targets_follow_each_bus_family) {
  BOOST_TEST(diskTargetName("virtio", 0) == "vda");
  BOOST_TEST(diskTargetName("sata", 25) == "sdz");
  BOOST_TEST(diskTargetName("scsi", 26) == "sdaa");
  BOOST_TEST(diskTargetName("virtio", 27) == "vdab");
  api::VirtualMachine vm;
  for (std::string bus : {"sata", "virtio", "scsi", "virtio"}) {
    api::Disk d;
    d.bus = bus;
    vm.spec.disks.push_back(d);
  }
  BOOST_TEST(diskIndexes(vm) == (std::vector<uint32_t>{0, 0, 1, 1}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(minimal_kernel_boot) { checkGolden("minimal_kernel_boot", minimalSpec()); }

BOOST_AUTO_TEST_CASE(disks_all_combinations) {
  DomainSpec s = minimalSpec();
  s.vm.name = "disks";
  s.name = domainName(s.vm.ns, s.vm.name);
  s.kernel.clear();
  s.initrd.clear();
  s.cmdline.clear();
  // Every type x format x bus; read-only wherever QEMU has it (not sata);
  // boot order on a few, in an order unlike the device order.
  char virtioNext = 'a';
  char sdNext = 'a';
  uint32_t boot = 0;
  for (std::string bus : {"virtio", "sata", "scsi"}) {
    for (std::string type : {"file", "block"}) {
      for (std::string format : {"qcow2", "raw"}) {
        DiskSpec d;
        d.bus = bus;
        d.diskType = type;
        d.format = format;
        d.targetDev =
            bus == "virtio" ? std::string("vd") + virtioNext++ : std::string("sd") + sdNext++;
        d.volumeName = d.targetDev + "-" + type + "-" + format;
        d.sourcePath = type == "block" ? "/dev/vmhost/" + d.volumeName
                                       : "/var/lib/vmhost/pool/" + d.volumeName + "." + format;
        d.readOnly = bus != "sata" && format == "raw";
        if (type == "file" && format == "qcow2") d.bootOrder = 3 - boot++;
        d.shared = type == "block";
        if (d.shared) d.cache = "none";
        s.disks.push_back(d);
      }
    }
  }
  checkGolden("disks_all_combinations", s);
}

BOOST_AUTO_TEST_CASE(interfaces_all_types) {
  DomainSpec s = minimalSpec();
  s.vm.name = "nics";
  s.name = domainName(s.vm.ns, s.vm.name);
  s.interfaces = {
      {"default", "network", "default", "52:54:00:6b:3c:01", "virtio", ""},
      {"uplink", "bridge", "br0", "52:54:00:6B:3C:02", "e1000", "vmh-uplink"},
      {"slirp", "user", "", "", "virtio", ""},
      {"tap", "ethernet", "", "52:54:00:6b:3c:04", "virtio", "vmh-tap0"},
  };
  checkGolden("interfaces_all_types", s);
}

BOOST_AUTO_TEST_CASE(vnc_fixed_port) {
  DomainSpec s = minimalSpec();
  s.vm.name = "vnc";
  s.name = domainName(s.vm.ns, s.vm.name);
  s.graphics = GraphicsSpec{"vnc", false, 5905, "127.0.0.1", ""};
  s.video = VideoSpec{"virtio", 2};
  checkGolden("vnc_fixed_port", s);
}

BOOST_AUTO_TEST_CASE(kvm_pc_disk_boot) {
  DomainSpec s = minimalSpec();
  s.vm.name = "legacy";
  s.name = domainName(s.vm.ns, s.vm.name);
  s.virtType = VirtType::kKvm;
  s.machine = "pc-i440fx-7.2";
  s.kernel.clear();
  s.initrd.clear();
  s.cmdline.clear();
  s.memoryBytes = 1000000000;  // not a KiB multiple: rounds up to 976563 KiB
  s.vcpus = 4;
  s.disks = {{"root", "/var/lib/vmhost/pool/legacy-root.qcow2", "file", "qcow2", "vda", "virtio",
              false, 1, false, "writeback"}};
  checkGolden("kvm_pc_disk_boot", s);
}

BOOST_AUTO_TEST_CASE(hostile_strings) {
  DomainSpec s = minimalSpec();
  s.vm.ns = "ns<&>'\"";
  s.vm.name = "vm<on_crash>restart<x & y>";
  s.vm.uid = "uid' onload='x";
  s.name = domainName(s.vm.ns, s.vm.name);
  s.kernel = "/boot/it's a \"kernel\" & <more>";
  s.initrd = "/boot/ünïcödé initrd";
  s.cmdline = "console=ttyS0 init=/bin/sh -c \"echo '<pwned>' && reboot\" </cmdline>";
  s.serialLogFile = "/var/log/a&b/<serial>.log";
  s.disks = {{"v'ol", "/srv/disk ' /><disk type='file", "file", "raw", "vda", "virtio", false, 0,
              false, ""}};
  s.interfaces = {{"n\"ic", "network", "net' ><source bridge='evil", "", "virtio", ""}};
  checkGolden("hostile_strings", s);
  // The escaping really happened: no raw quote or bracket leaked.
  auto xml = toDomainXml(s);
  BOOST_TEST(xml.value().find("<on_crash>restart") == std::string::npos);
  BOOST_TEST(xml.value().find("<source bridge='evil") == std::string::npos);
  BOOST_TEST(xml.value().find("' onload='x") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(output_is_deterministic) {
  auto a = toDomainXml(minimalSpec());
  auto b = toDomainXml(minimalSpec());
  BOOST_TEST(a.value() == b.value());
}

BOOST_AUTO_TEST_CASE(rejects_invalid_specs_naming_the_field) {
  auto with = [](auto mutate) {
    DomainSpec s = minimalSpec();
    mutate(s);
    return s;
  };
  expectInvalidField(with([](DomainSpec& s) { s.name.clear(); }), "name: must not be empty");
  expectInvalidField(with([](DomainSpec& s) { s.memoryBytes = 0; }),
                     "memoryBytes: must be greater than 0");
  expectInvalidField(with([](DomainSpec& s) { s.vcpus = 0; }), "vcpus: must be greater than 0");
  expectInvalidField(with([](DomainSpec& s) { s.name = "a/b"; }),
                     "name: 'a/b' must not contain '/'");
  expectInvalidField(with([](DomainSpec& s) { s.uuid = "not-a-uuid"; }),
                     "uuid: 'not-a-uuid' is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
  expectInvalidField(with([](DomainSpec& s) { s.vm.ns.clear(); }),
                     "vm.namespace: must not be empty");
  expectInvalidField(with([](DomainSpec& s) { s.machine = "virt"; }),
                     "machine: 'virt' is not one of q35, pc, pc-q35-<ver>, pc-i440fx-<ver>");
  expectInvalidField(with([](DomainSpec& s) { s.kernel = "vmlinux"; }),
                     "kernel: 'vmlinux' is not an absolute path");
  expectInvalidField(with([](DomainSpec& s) { s.kernel.clear(); }), "initrd: needs a kernel");
  expectInvalidField(with([](DomainSpec& s) { s.cmdline = "console=ttyS0\nrdinit=/x"; }),
                     "cmdline: contains control character 0x0a at byte 13");
  expectInvalidField(with([](DomainSpec& s) { s.name = "vm\xff"; }),
                     "name: is not valid UTF-8 (at byte 2)");
  expectInvalidField(with([](DomainSpec& s) { s.name = "vm\xc0\xaf"; }),
                     "name: is not valid UTF-8 (at byte 2)");
  expectInvalidField(with([](DomainSpec& s) { s.serialLogFile = "serial.log"; }),
                     "serialLogFile: 'serial.log' is not an absolute path");
}

BOOST_AUTO_TEST_CASE(rejects_invalid_disks) {
  auto with = [](std::vector<DiskSpec> disks) {
    DomainSpec s = minimalSpec();
    s.disks = std::move(disks);
    return s;
  };
  DiskSpec ok{"root", "/pool/root.qcow2", "file", "qcow2", "vda", "virtio", false, 1, false, ""};
  auto changed = [&](auto mutate) {
    DiskSpec d = ok;
    mutate(d);
    return d;
  };
  expectInvalidField(with({ok, changed([](DiskSpec& d) { d.bootOrder = 2; })}),
                     "disks[1].targetDev: 'vda' is already used by disks[0]");
  expectInvalidField(with({ok, changed([](DiskSpec& d) { d.targetDev = "vdb"; })}),
                     "disks[1].bootOrder: 1 is already used by disks[0]");
  expectInvalidField(with({changed([](DiskSpec& d) { d.sourcePath.clear(); })}),
                     "disks[0].sourcePath: must not be empty");
  expectInvalidField(with({changed([](DiskSpec& d) { d.diskType = "network"; })}),
                     "disks[0].diskType: 'network' is not one of file, block");
  expectInvalidField(with({changed([](DiskSpec& d) { d.format = "vmdk"; })}),
                     "disks[0].format: 'vmdk' is not one of qcow2, raw");
  expectInvalidField(with({changed([](DiskSpec& d) { d.bus = "ide"; })}),
                     "disks[0].bus: 'ide' is not one of virtio, sata, scsi");
  expectInvalidField(
      with({changed([](DiskSpec& d) { d.bus = "sata"; })}),
      "disks[0].targetDev: 'vda' does not name a sata disk (expected sda, sdb, ...)");
  expectInvalidField(
      with({changed([](DiskSpec& d) { d.targetDev = "vd1"; })}),
      "disks[0].targetDev: 'vd1' does not name a virtio disk (expected vda, vdb, ...)");
  expectInvalidField(with({changed([](DiskSpec& d) {
                       d.bus = "sata";
                       d.targetDev = "sda";
                       d.readOnly = true;
                     })}),
                     "disks[0].readOnly: a read-only disk cannot use bus sata; use virtio or scsi");
  expectInvalidField(
      with({changed([](DiskSpec& d) { d.cache = "fast"; })}),
      "disks[0].cache: 'fast' is not one of none, writethrough, writeback, directsync, unsafe");
  // sata and scsi share the sd* names.
  expectInvalidField(with({changed([](DiskSpec& d) {
                             d.bus = "sata";
                             d.targetDev = "sda";
                           }),
                           changed([](DiskSpec& d) {
                             d.bus = "scsi";
                             d.targetDev = "sda";
                             d.bootOrder = 0;
                           })}),
                     "disks[1].targetDev: 'sda' is already used by disks[0]");
}

BOOST_AUTO_TEST_CASE(rejects_invalid_interfaces) {
  auto with = [](std::vector<InterfaceSpec> nics) {
    DomainSpec s = minimalSpec();
    s.interfaces = std::move(nics);
    return s;
  };
  InterfaceSpec ok{"default", "network", "default", "52:54:00:00:00:01", "virtio", ""};
  auto changed = [&](auto mutate) {
    InterfaceSpec n = ok;
    mutate(n);
    return n;
  };
  expectInvalidField(
      with({changed([](InterfaceSpec& n) { n.mac = "52:54:00:00:00"; })}),
      "interfaces[0].mac: '52:54:00:00:00' is not a MAC address (xx:xx:xx:xx:xx:xx)");
  expectInvalidField(
      with({changed([](InterfaceSpec& n) { n.mac = "52-54-00-00-00-01"; })}),
      "interfaces[0].mac: '52-54-00-00-00-01' is not a MAC address (xx:xx:xx:xx:xx:xx)");
  expectInvalidField(
      with({changed([](InterfaceSpec& n) { n.mac = "52:54:00:00:00:0g"; })}),
      "interfaces[0].mac: '52:54:00:00:00:0g' is not a MAC address (xx:xx:xx:xx:xx:xx)");
  expectInvalidField(with({changed([](InterfaceSpec& n) { n.mac = "01:00:5e:00:00:01"; })}),
                     "interfaces[0].mac: '01:00:5e:00:00:01' is a multicast address");
  expectInvalidField(with({changed([](InterfaceSpec& n) { n.mac = "00:00:00:00:00:00"; })}),
                     "interfaces[0].mac: the all-zero address is not valid");
  expectInvalidField(with({ok, changed([](InterfaceSpec& n) { n.mac = "52:54:00:00:00:01"; })}),
                     "interfaces[1].mac: '52:54:00:00:00:01' is already used by interfaces[0]");
  expectInvalidField(with({changed([](InterfaceSpec& n) { n.type = "direct"; })}),
                     "interfaces[0].type: 'direct' is not one of network, bridge, user, ethernet");
  expectInvalidField(with({changed([](InterfaceSpec& n) { n.source.clear(); })}),
                     "interfaces[0].source: must name the network for type network");
  expectInvalidField(with({changed([](InterfaceSpec& n) { n.type = "user"; })}),
                     "interfaces[0].source: must be empty for type user");
  expectInvalidField(
      with({changed([](InterfaceSpec& n) {
        n.type = "bridge";
        n.source = "br0'/><x";
      })}),
      "interfaces[0].source: 'br0'/><x' is not an interface name (1-15 of [A-Za-z0-9._-])");
  expectInvalidField(with({changed([](InterfaceSpec& n) { n.source = "a/b"; })}),
                     "interfaces[0].source: 'a/b' must not contain '/'");
  expectInvalidField(with({changed([](InterfaceSpec& n) { n.model = "virtio net"; })}),
                     "interfaces[0].model: 'virtio net' is not a NIC model name");
  expectInvalidField(
      with({changed([](InterfaceSpec& n) { n.targetDev = "a-very-long-tap-name"; })}),
      "interfaces[0].targetDev: 'a-very-long-tap-name' is not an interface name (1-15 of "
      "[A-Za-z0-9._-])");
}

BOOST_AUTO_TEST_CASE(rejects_invalid_graphics_and_video) {
  DomainSpec s = minimalSpec();
  s.graphics = GraphicsSpec{"rdp", true, 0, "", ""};
  expectInvalidField(s, "graphics.type: 'rdp' is not one of spice, vnc");
  s.graphics = GraphicsSpec{"vnc", false, 0, "", ""};
  expectInvalidField(s, "graphics.port: 0 is not in 5900..65535");
  s.graphics = GraphicsSpec{"vnc", true, 5901, "", ""};
  expectInvalidField(s, "graphics.port: must be 0 when autoport is on");
  s.graphics = GraphicsSpec{"vnc", true, 0, "", "any"};
  expectInvalidField(s, "graphics.defaultMode: applies to spice only");
  s.graphics = GraphicsSpec{"spice", true, 0, "127.0.0.1' passwd='x", ""};
  expectInvalidField(s, "graphics.listen: '127.0.0.1' passwd='x' is not an address or host name");
  s.graphics.reset();
  s.video = VideoSpec{"cirrus", 1};
  expectInvalidField(s, "video.model: 'cirrus' is not one of qxl, virtio, vga, bochs, none");
  s.video = VideoSpec{"qxl", 0};
  expectInvalidField(s, "video.heads: 0 is not in 1..4");
}

BOOST_AUTO_TEST_CASE(metadata_round_trips) {
  DomainSpec s = minimalSpec();
  s.vm.generation = 42;
  s.disks = {{"root", "/pool/root.qcow2", "file", "qcow2", "vda", "virtio", false, 1, true, ""}};
  s.interfaces = {{"default", "network", "default", "52:54:00:AA:00:01", "virtio", ""}};
  auto md = parseVmMetadata(vmMetadataXml(s));
  BOOST_TEST_REQUIRE(md.ok(), (md.ok() ? "" : md.error().describe()));
  BOOST_TEST(md.value().vm.ns == "default");
  BOOST_TEST(md.value().vm.name == "tiny");
  BOOST_TEST(md.value().vm.uid == s.vm.uid);
  BOOST_TEST(md.value().vm.generation == 42u);
  BOOST_TEST_REQUIRE(md.value().disks.size() == 1u);
  BOOST_TEST(md.value().disks[0].volume == "root");
  BOOST_TEST(md.value().disks[0].target == "vda");
  BOOST_TEST(md.value().disks[0].shared);
  BOOST_TEST_REQUIRE(md.value().interfaces.size() == 1u);
  BOOST_TEST(md.value().interfaces[0].mac == "52:54:00:aa:00:01");
}

// What virDomainGetMetadata hands back is libxml2's serialisation, not ours:
// double quotes, maybe another prefix, character references, foreign children.
BOOST_AUTO_TEST_CASE(metadata_parses_libvirt_serialisation) {
  auto md = parseVmMetadata(
      "<?xml version=\"1.0\"?>\n<!-- c -->\n"
      "<v:vm xmlns:v=\"https://vmhost.io/xmlns/domain/1\" namespace=\"a&amp;b\" "
      "name=\"x&#10;y&#x3c;\" "
      "uid='u' generation=\"7\">\n  <v:disk volume=\"d\" target=\"sda\" shared=\"no\"/>\n"
      "  <other:thing xmlns:other=\"urn:x\"/>\n  <v:future a=\"1\">text</v:future>\n</v:vm>\n");
  BOOST_TEST_REQUIRE(md.ok(), (md.ok() ? "" : md.error().describe()));
  BOOST_TEST(md.value().vm.ns == "a&b");
  BOOST_TEST(md.value().vm.name == "x\ny<");
  BOOST_TEST(md.value().vm.generation == 7u);
  BOOST_TEST(md.value().disks.size() == 1u);
  BOOST_TEST(!md.value().disks[0].shared);
}

// virDomainGetMetadata's form: the namespace is stripped.
BOOST_AUTO_TEST_CASE(metadata_parses_the_element_without_namespace) {
  auto md = parseVmMetadata(
      "<vm namespace=\"default\" name=\"x\" uid=\"u\" generation=\"3\">\n"
      "  <disk volume=\"root\" target=\"vda\" shared=\"yes\"/>\n"
      "  <interface name=\"n\" mac=\"52:54:00:00:00:01\"/>\n</vm>\n");
  BOOST_TEST_REQUIRE(md.ok(), (md.ok() ? "" : md.error().describe()));
  BOOST_TEST(md.value().vm.generation == 3u);
  BOOST_TEST(md.value().disks.size() == 1u);
  BOOST_TEST(md.value().interfaces.size() == 1u);
}

BOOST_AUTO_TEST_CASE(metadata_rejects_what_is_not_ours) {
  auto err = [](std::string_view xml) {
    auto md = parseVmMetadata(xml);
    BOOST_TEST_REQUIRE(!md.ok());
    BOOST_TEST(md.error().code == VMHOST_ERR_INVALID_ARGUMENT);
    return md.error().message;
  };
  BOOST_TEST(err("<vm xmlns='urn:other' namespace='a' name='b'/>") ==
             "vmhost metadata: <vm> is not in namespace https://vmhost.io/xmlns/domain/1");
  BOOST_TEST(err("<v:vm xmlns:v='https://vmhost.io/xmlns/domain/1' name='b'/>") ==
             "vmhost metadata: namespace and name are required");
  BOOST_TEST(err("<v:vm xmlns:v='https://vmhost.io/xmlns/domain/1' namespace='a' name='b' "
                 "generation='x'/>") == "vmhost metadata: generation 'x' is not a number");
  BOOST_TEST(err("<v:vm xmlns:v='https://vmhost.io/xmlns/domain/1' namespace='a' name='b'>") ==
             "vmhost metadata: missing </v:vm> at offset 72");
  BOOST_TEST(err("<v:vm namespace='a' name='b'/>") ==
             "vmhost metadata: <v:vm> is not in namespace https://vmhost.io/xmlns/domain/1");
  BOOST_TEST(err("<v:vm a='&bogus;'/>").find("unknown entity &bogus;") != std::string::npos);
  BOOST_TEST(err("") == "vmhost metadata: expected an element at offset 0");
  std::string deep;
  for (int i = 0; i < 20; ++i) deep += "<a>";
  BOOST_TEST(err(deep).find("nested too deeply") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(domain_name_joins_namespace_and_name) {
  BOOST_TEST(domainName("default", "vm1") == "default_vm1");
}

// Every golden file must be a domain libvirt's own schema accepts. The tool
// comes with libvirt-clients, which deploy/install-deps.sh installs: a
// missing tool is a broken setup, so this fails rather than skips.
BOOST_AUTO_TEST_CASE(golden_files_pass_virt_xml_validate) {
  std::string tool = which("virt-xml-validate");
  BOOST_TEST_REQUIRE(
      !tool.empty(),
      "virt-xml-validate not found in PATH: install libvirt-clients (deploy/install-deps.sh)");
  // virt-xml-validate runs xmllint; without it every file "fails" with a
  // message that does not say why.
  BOOST_TEST_REQUIRE(!which("xmllint").empty(),
                     "xmllint not found in PATH (virt-xml-validate needs it): install "
                     "libxml2-utils (deploy/install-deps.sh)");
  std::set<std::string> cases = kSpecCases;
  for (const auto& c : kManifestCases) cases.insert(c.name);
  std::set<std::string> found, inputs;
  for (const auto& entry : fs::directory_iterator(kGoldenDir)) {
    std::string file = entry.path().filename().string();
    if (entry.path().extension() == ".xml") found.insert(entry.path().stem().string());
    for (std::string suffix : {".vm.yaml", ".answers.yaml"}) {
      if (file.size() > suffix.size() && file.ends_with(suffix)) {
        inputs.insert(file.substr(0, file.size() - suffix.size()));
      }
    }
  }
  BOOST_TEST(found == cases, "golden files in " << kGoldenDir << " do not match the test cases");
  for (const auto& name : inputs) {
    BOOST_TEST(cases.count(name) == 1,
               name << ".*.yaml in " << kGoldenDir << " belongs to no case");
  }
  for (const auto& name : cases) {
    fs::path file = kGoldenDir / (name + ".xml");
    std::string cmd = "'" + tool + "' '" + file.string() + "' domain 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    BOOST_TEST_REQUIRE(p != nullptr);
    std::string out;
    std::array<char, 512> buf;
    while (size_t n = std::fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
    int status = ::pclose(p);
    BOOST_TEST((WIFEXITED(status) && WEXITSTATUS(status) == 0), name << ".xml: " << out);
  }
}
