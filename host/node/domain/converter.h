// Domain translation, first half: a VM (api::VirtualMachine), what its
// storage and network plugins answered for it and what the node chose -> the
// DomainSpec that toDomainXml (domain_xml.h) writes. One pass, as KubeVirt's
// virtwrap/converter turns a VMI into a libvirt domain: the node agent builds
// every domain through it, and the golden tests run through it from the VM's
// manifest to the XML (tests/unit/node/domain_xml_test.cpp).
//
// Who decides what. The plugin's answer wins where it speaks (it is the one
// that knows what it attached), otherwise the VM spec, otherwise the default;
// an answer that contradicts the spec where the guest would notice is refused.
//
// Per disk (spec.disks[i] and the VolumeAttachment answered for it):
//   bus         the plugin's, which must be the spec's: the bus and the target
//               name are how the guest finds its disks (root=/dev/vda in a
//               command line, sata for a guest without virtio drivers)
//   targetDev   the plugin's; empty: vdX or sdX from the disk's position among
//               the VM's disks of its family (virtio: vd*, sata and scsi: sd*)
//   bootOrder   the plugin's when non-zero (it echoes the request), otherwise
//               the spec's; both set and different: refused (which disk boots)
//   readOnly    read-only when either says so (a plugin may offer a source
//               read-only only); the spec read-only and the answer writable:
//               refused (the guest would write what the user protected)
//   volumeName  the spec's disk name; an answer for another volume: refused
//   diskType    the plugin's; empty: "file"
//   format      the plugin's; empty: "raw" (never a guessed qcow2: a raw file
//               the guest wrote a qcow2 header into could then name any host
//               file as its backing file)
//   sourcePath, shared, cache: the plugin's alone; the spec has no say.
//
// Per interface (spec.interfaces[i] and its InterfaceAttachment):
//   interfaceName  the spec's; an answer for another interface: refused
//   type, source   the plugin's (it may wire a bridge interface as a tap of its
//                  own, type "ethernet"); an empty type: the spec's kind
//                  (network, bridge, user) with its network or bridge name
//   mac            the plugin's; empty: the spec's macAddress (or libvirt's
//                  choice); the spec's set and the answer different (in any
//                  case): refused, since a pinned MAC is what DHCP reservations
//                  and licences key on
//   model          the plugin's; empty: the spec's; empty: "virtio". Not
//                  refused when it differs: the plugin knows which models its
//                  wiring supports (vhost-user and macvtap offloads need virtio).
//
// A refusal is FAILED_PRECONDITION, not retryable (the same answer would come
// again), and names the volume or interface: "volume data: the storage plugin
// attached it on bus virtio (target vda) but the spec asks for bus sata".
// Everything else about the result (paths, names, ranges) is checked where
// every DomainSpec is, by validateDomainSpec when the domain is defined.
#pragma once

#include "api/types.h"
#include "common/result.h"
#include "node/domain/domain_xml.h"

#include <vmhost/schema/network.capnp.h>
#include <vmhost/schema/storage.capnp.h>

#include <cstdint>
#include <string>
#include <vector>

namespace vmhost::node {

// What the plugins answered for one VM, in the spec's order: volumes[i] for
// spec.disks[i], interfaces[i] for spec.interfaces[i]. The readers point
// into the plugins' replies, which the caller keeps alive during the call.
struct PluginAttachments {
  std::vector<schema::VolumeAttachment::Reader> volumes;
  std::vector<schema::InterfaceAttachment::Reader> interfaces;
};

// What the node decides, not the VM.
struct NodeChoices {
  std::string domainName;     // empty: domainName(namespace, name)
  std::string serialLogFile;  // absolute; empty: the console is not logged
  VirtType virtType = VirtType::kQemu;
  std::string machine = "q35";
};

// The DomainSpec for `vm` with these attachments; see the rules above.
// INTERNAL when the attachments do not match the spec's disks and
// interfaces one for one (a caller's bug).
Result<DomainSpec> toDomainSpec(const api::VirtualMachine& vm, const PluginAttachments& attachments,
                                const NodeChoices& node);

// The position of each of the VM's disks among those of its target family
// (vd* for virtio, sd* for sata and scsi): what a storage plugin is told
// (Volume.diskIndex) and what an empty targetDev is derived from.
std::vector<uint32_t> diskIndexes(const api::VirtualMachine& vm);

// "vda", ..., "vdz", "vdaa", ... (or sd*), as libvirt names disks.
std::string diskTargetName(const std::string& bus, uint32_t index);

std::string diskBusName(schema::DiskBus bus);
// The schema's enumerant for an API bus name; virtio for one it does not know.
schema::DiskBus diskBusOf(const std::string& bus);

}  // namespace vmhost::node
