#include "node/domain/converter.h"

#include <algorithm>
#include <cctype>

namespace vmhost::node {
namespace {

Error refused(const std::string& what, const std::string& name, const std::string& problem) {
  return Error{VMHOST_ERR_FAILED_PRECONDITION, what + " " + name + ": " + problem, false};
}

std::string lowered(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string text(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

Result<DiskSpec> toDisk(const api::Disk& disk, uint32_t index, schema::VolumeAttachment::Reader a) {
  DiskSpec d;
  d.volumeName = disk.name;
  std::string answered = text(a.getVolumeName());
  if (!answered.empty() && answered != disk.name) {
    return refused("volume", disk.name,
                   "the storage plugin answered for volume " + answered + " instead");
  }

  d.bus = diskBusName(a.getBus());
  d.targetDev = text(a.getTargetDev());
  if (d.bus != disk.bus) {
    return refused("volume", disk.name,
                   "the storage plugin attached it on bus " + d.bus +
                       (d.targetDev.empty() ? "" : " (target " + d.targetDev + ")") +
                       " but the spec asks for bus " + disk.bus);
  }
  if (d.targetDev.empty()) d.targetDev = diskTargetName(d.bus, index);

  uint32_t specBoot =
      disk.bootOrder ? static_cast<uint32_t>(std::max<int64_t>(0, *disk.bootOrder)) : 0;
  d.bootOrder = a.getBootOrder() != 0 ? a.getBootOrder() : specBoot;
  if (specBoot != 0 && d.bootOrder != specBoot) {
    return refused("volume", disk.name,
                   "the storage plugin answered boot order " + std::to_string(d.bootOrder) +
                       " but the spec asks for " + std::to_string(specBoot));
  }

  if (disk.readOnly && !a.getReadOnly()) {
    return refused("volume", disk.name,
                   "the spec asks for a read-only disk but the storage plugin attached it "
                   "writable");
  }
  d.readOnly = disk.readOnly || a.getReadOnly();

  d.diskType = a.getDiskType().size() > 0 ? text(a.getDiskType()) : "file";
  d.format = a.getFormat().size() > 0 ? text(a.getFormat()) : "raw";
  d.sourcePath = text(a.getSourcePath());
  d.shared = a.getShared();
  d.cache = text(a.getCache());
  return d;
}

Result<InterfaceSpec> toInterface(const api::Interface& iface,
                                  schema::InterfaceAttachment::Reader a) {
  InterfaceSpec n;
  n.interfaceName = iface.name;
  std::string answered = text(a.getInterfaceName());
  if (!answered.empty() && answered != iface.name) {
    return refused("interface", iface.name,
                   "the network plugin answered for interface " + answered + " instead");
  }

  n.type = text(a.getType());
  n.source = text(a.getSource());
  if (n.type.empty()) {
    if (!iface.network.empty()) {
      n.type = "network";
      if (n.source.empty()) n.source = iface.network;
    } else if (!iface.bridge.empty()) {
      n.type = "bridge";
      if (n.source.empty()) n.source = iface.bridge;
    } else {
      n.type = "user";
    }
  }

  n.mac = text(a.getMac());
  if (n.mac.empty()) n.mac = iface.macAddress;
  if (!iface.macAddress.empty() && lowered(n.mac) != lowered(iface.macAddress)) {
    return refused(
        "interface", iface.name,
        "the network plugin assigned MAC " + n.mac + " but the spec pins " + iface.macAddress);
  }

  n.model = text(a.getModel());
  if (n.model.empty()) n.model = iface.model;
  if (n.model.empty()) n.model = "virtio";
  n.targetDev = text(a.getTargetDev());
  return n;
}

}  // namespace

std::string diskBusName(schema::DiskBus bus) {
  switch (bus) {
    case schema::DiskBus::VIRTIO:
      return "virtio";
    case schema::DiskBus::SATA:
      return "sata";
    case schema::DiskBus::SCSI:
      return "scsi";
  }
  // A bus from a newer schema than this host knows: it can match no spec.
  return "unknown(" + std::to_string(static_cast<uint16_t>(bus)) + ")";
}

schema::DiskBus diskBusOf(const std::string& bus) {
  if (bus == "sata") return schema::DiskBus::SATA;
  if (bus == "scsi") return schema::DiskBus::SCSI;
  return schema::DiskBus::VIRTIO;
}

std::vector<uint32_t> diskIndexes(const api::VirtualMachine& vm) {
  std::vector<uint32_t> out;
  uint32_t vd = 0, sd = 0;
  for (const auto& d : vm.spec.disks) out.push_back(d.bus == "virtio" ? vd++ : sd++);
  return out;
}

std::string diskTargetName(const std::string& bus, uint32_t index) {
  std::string suffix;
  uint64_t i = index;
  do {
    suffix.insert(suffix.begin(), static_cast<char>('a' + i % 26));
    i = i / 26;
  } while (i-- > 0);
  return (bus == "virtio" ? "vd" : "sd") + suffix;
}

Result<DomainSpec> toDomainSpec(const api::VirtualMachine& vm, const PluginAttachments& attachments,
                                const NodeChoices& node) {
  const auto& s = vm.spec;
  if (attachments.volumes.size() != s.disks.size() ||
      attachments.interfaces.size() != s.interfaces.size()) {
    return Error{VMHOST_ERR_INTERNAL,
                 "vm " + vm.metadata.ns + "/" + vm.metadata.name + ": " +
                     std::to_string(s.disks.size()) + " disks and " +
                     std::to_string(s.interfaces.size()) + " interfaces, but " +
                     std::to_string(attachments.volumes.size()) + " volume and " +
                     std::to_string(attachments.interfaces.size()) + " interface attachments",
                 false};
  }
  DomainSpec spec;
  spec.name =
      node.domainName.empty() ? domainName(vm.metadata.ns, vm.metadata.name) : node.domainName;
  // The object's uid: stable for the VM's life, new for a recreated VM.
  spec.uuid = vm.metadata.uid;
  spec.vm = VmIdentity{vm.metadata.ns, vm.metadata.name, vm.metadata.uid,
                       static_cast<uint64_t>(std::max<int64_t>(0, vm.metadata.generation))};
  spec.virtType = node.virtType;
  spec.machine = node.machine;
  spec.memoryBytes = static_cast<uint64_t>(std::max<int64_t>(0, s.memory.value()));
  spec.vcpus = static_cast<uint32_t>(std::max<int64_t>(1, s.cpu.cores));
  if (s.boot) {
    spec.kernel = s.boot->kernel;
    spec.initrd = s.boot->initrd;
    spec.cmdline = s.boot->cmdline;
  }
  spec.serialLogFile = node.serialLogFile;
  if (s.graphics) {
    GraphicsSpec g;
    g.type = s.graphics->type;
    spec.graphics = g;
  }
  if (s.video) {
    VideoSpec v;
    v.model = s.video->model;
    if (s.video->heads) v.heads = static_cast<uint32_t>(*s.video->heads);
    spec.video = v;
  }
  auto indexes = diskIndexes(vm);
  for (size_t i = 0; i < s.disks.size(); ++i) {
    auto d = toDisk(s.disks[i], indexes[i], attachments.volumes[i]);
    if (!d.ok()) return d.error();
    spec.disks.push_back(std::move(d.value()));
  }
  for (size_t i = 0; i < s.interfaces.size(); ++i) {
    auto n = toInterface(s.interfaces[i], attachments.interfaces[i]);
    if (!n.ok()) return n.error();
    spec.interfaces.push_back(std::move(n.value()));
  }
  return spec;
}

}  // namespace vmhost::node
