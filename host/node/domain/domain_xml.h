// Domain translation, second half: what the node wants a VM to be
// (DomainSpec) -> the libvirt domain XML that makes it so. The one place that
// knows libvirt's XML vocabulary; everything else speaks DomainSpec. The first
// half, the VM and its plugins' attachments -> DomainSpec, is converter.h.
// Golden-file tests pin the output of both, from the VM manifest to the XML
// (tests/unit/node/domain_xml_test.cpp, tests/fixtures/domain/).
//
// The XML also carries a <vmhost:vm> metadata element naming the VM that owns
// the domain, so that a restarted node can list libvirt's domains and re-adopt
// the ones it owns (parseVmMetadata reads it back).
#pragma once

#include "common/result.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmhost::node {

// The XML namespace of the metadata element. Versioned: a new, incompatible
// layout gets a new URI, and a node keeps reading the old one.
inline constexpr std::string_view kMetadataNamespace = "https://vmhost.io/xmlns/domain/1";
inline constexpr std::string_view kMetadataPrefix = "vmhost";

// One disk, as a storage plugin's VolumeAttachment describes it.
struct DiskSpec {
  std::string volumeName;         // the VM's volume behind this disk (metadata only; may be empty)
  std::string sourcePath;         // absolute: a file, or a block device
  std::string diskType = "file";  // "file" | "block"
  std::string format = "raw";     // "qcow2" | "raw"
  std::string targetDev;          // "vda" (virtio), "sda" (sata, scsi)
  std::string bus = "virtio";     // "virtio" | "sata" | "scsi"
  bool readOnly = false;
  uint32_t bootOrder = 0;  // 0: not a boot device; otherwise unique among the VM's devices
  // Reachable from every node with the same path: a migration leaves it in
  // place instead of copying it. Recorded in the metadata for the migration.
  bool shared = false;
  // QEMU cache mode ("none", "writeback", ...); "" keeps libvirt's default.
  // Shared disks want "none" for a safe live migration, but O_DIRECT fails
  // on tmpfs, so this is the storage plugin's call (VolumeAttachment.cache),
  // not a fixed choice.
  std::string cache;
};

// One NIC, as a network plugin's InterfaceAttachment describes it.
struct InterfaceSpec {
  std::string interfaceName;     // the VM's interface behind this NIC (metadata only; may be empty)
  std::string type = "network";  // "network" | "bridge" | "user" | "ethernet"
  std::string source;            // network or bridge name; empty for user and ethernet
  std::string mac;               // "52:54:00:xx:xx:xx"; empty lets libvirt choose
  std::string model = "virtio";  // "virtio", "e1000", ...
  // The host-side tap. For "ethernet" it is a tap the plugin created and owns
  // (libvirt uses it as is); for the others only its name. Empty: libvirt's.
  std::string targetDev;
};

struct GraphicsSpec {
  std::string type = "spice";  // "spice" | "vnc"
  bool autoport = true;
  uint32_t port = 0;        // required when !autoport
  std::string listen;       // an address; empty keeps qemu.conf's default (loopback)
  std::string defaultMode;  // spice only: "any" | "secure" | "insecure"; empty: libvirt's
};

struct VideoSpec {
  std::string model = "qxl";  // "qxl" | "virtio" | "vga" | "bochs" | "none"
  uint32_t heads = 1;
};

// The VM object that owns the domain; stored in the domain's metadata.
struct VmIdentity {
  std::string ns;  // namespace
  std::string name;
  std::string uid;          // the object's uid: a recreated VM with the same name differs
  uint64_t generation = 0;  // the spec generation the domain was defined from
};

enum class VirtType { kQemu, kKvm };

struct DomainSpec {
  std::string name;  // libvirt domain name: domainName(vm.ns, vm.name)
  std::string uuid;  // 8-4-4-4-12 hex; empty lets libvirt choose (then it is not stable)
  VmIdentity vm;
  // TCG by default: KVM is not available on every host (see ARCHITECTURE.md).
  VirtType virtType = VirtType::kQemu;
  // q35 by default: PCIe, an AHCI controller built in (sata disks need nothing
  // extra), modern-only virtio, and what KubeVirt defaults to. Boot time under
  // TCG measured the same as pc. "pc" (i440fx) is accepted for old guests.
  std::string machine = "q35";
  uint64_t memoryBytes = 0;  // rounded up to KiB
  uint32_t vcpus = 0;
  // Direct kernel boot (optional): absolute paths on the node.
  std::string kernel;
  std::string initrd;
  std::string cmdline;
  std::vector<DiskSpec> disks;
  std::vector<InterfaceSpec> interfaces;
  // Serial port 0 is always a pty (the console); its output is also appended
  // to this file when set (absolute path), so it survives the domain.
  std::string serialLogFile;
  std::optional<GraphicsSpec> graphics;  // none by default: headless
  std::optional<VideoSpec> video;
};

// "<namespace>_<name>": '_' cannot occur in a Kubernetes namespace or name,
// so the pair is recoverable and two VMs never collide.
std::string domainName(std::string_view ns, std::string_view name);

// Checks a spec; the error (INVALID_ARGUMENT) names the offending field, e.g.
// "disks[1].targetDev: 'vda' is used twice".
Status validateDomainSpec(const DomainSpec& spec);

// The libvirt domain XML for a spec (validated first). Deterministic: the same
// spec gives the same bytes.
Result<std::string> toDomainXml(const DomainSpec& spec);

// What the metadata element records, read back from a defined domain.
struct VmMetadata {
  VmIdentity vm;
  struct Disk {
    std::string volume;
    std::string target;
    bool shared = false;
  };
  struct Interface {
    std::string name;
    std::string mac;
  };
  std::vector<Disk> disks;
  std::vector<Interface> interfaces;
};

// The metadata element alone, without prefix or namespace declaration: the
// form virDomainSetMetadata takes (e.g. to bump the generation without
// redefining the domain) and virDomainGetMetadata returns.
std::string vmMetadataXml(const DomainSpec& spec);

// Parses the metadata element as virDomainGetMetadata returns it (libvirt
// strips the namespace: no prefix, no declaration) or as it appears in the
// domain XML (any prefix bound to kMetadataNamespace); either quote style,
// entities. The input is
// whatever is stored in a domain, so malformed input is an error, not a crash.
Result<VmMetadata> parseVmMetadata(std::string_view xml);

// Escapes the five XML special characters (for text and attribute values).
std::string xmlEscape(std::string_view s);

}  // namespace vmhost::node
