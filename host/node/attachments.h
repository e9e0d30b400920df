// What storage and network plugins answer (VolumeAttachment,
// InterfaceAttachment; sdk/schema/) -> the disk and NIC entries of a
// DomainSpec. Field for field: the plugins already speak libvirt's terms.
// Validation is toDomainXml's (e.g. a "network" disk type is refused there,
// naming the disk).
#pragma once

#include "node/domain_xml.h"

#include <vmhost/schema/network.capnp.h>
#include <vmhost/schema/storage.capnp.h>

namespace vmhost::node {

inline std::string diskBusName(schema::DiskBus bus) {
  switch (bus) {
    case schema::DiskBus::VIRTIO:
      return "virtio";
    case schema::DiskBus::SATA:
      return "sata";
    case schema::DiskBus::SCSI:
      return "scsi";
  }
  // A bus from a newer schema than this host knows: let validation say so.
  return "unknown(" + std::to_string(static_cast<uint16_t>(bus)) + ")";
}

inline DiskSpec toDiskSpec(schema::VolumeAttachment::Reader a) {
  DiskSpec d;
  d.volumeName = a.getVolumeName().cStr();
  d.diskType = a.getDiskType().cStr();
  d.sourcePath = a.getSourcePath().cStr();
  d.format = a.getFormat().cStr();
  d.targetDev = a.getTargetDev().cStr();
  d.bus = diskBusName(a.getBus());
  d.readOnly = a.getReadOnly();
  d.bootOrder = a.getBootOrder();
  d.shared = a.getShared();
  return d;
}

inline InterfaceSpec toInterfaceSpec(schema::InterfaceAttachment::Reader a) {
  InterfaceSpec n;
  n.interfaceName = a.getInterfaceName().cStr();
  n.type = a.getType().cStr();
  n.source = a.getSource().cStr();
  n.mac = a.getMac().cStr();
  n.model = a.getModel().size() == 0 ? std::string("virtio") : std::string(a.getModel().cStr());
  n.targetDev = a.getTargetDev().cStr();
  return n;
}

}  // namespace vmhost::node
