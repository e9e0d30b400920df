#include "node/agent/devices.h"

#include "api/conditions.h"
#include "api/vocabulary.h"

#include <capnp/message.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace vmhost::node {
namespace {

using Clock = std::chrono::steady_clock;

void fillVmRef(schema::VmRef::Builder ref, const api::VirtualMachine& vm) {
  ref.setNamespace(vm.metadata.ns);
  ref.setName(vm.metadata.name);
  ref.setUid(vm.metadata.uid);
}

void fillImage(schema::Image::Builder out, const api::ImageSource& image) {
  out.setPath(image.path);
  out.setUrl(image.url);
  out.setSha256(image.sha256);
}

// Fills a plugin Volume from the VM's disk and the volume behind it.
void fillVolume(schema::Volume::Builder out, const api::Disk& disk, const api::Volume& volume,
                uint32_t diskIndex) {
  out.setName(volume.name);
  out.setBus(diskBusOf(disk.bus));
  out.setBootOrder(disk.bootOrder ? static_cast<uint32_t>(*disk.bootOrder) : 0);
  out.setReadOnly(disk.readOnly);
  out.setDiskIndex(diskIndex);
  auto source = out.initSource();
  if (volume.empty) {
    out.setSizeBytes(static_cast<uint64_t>(std::max<int64_t>(0, volume.empty->size.value())));
    source.setEmpty();
  } else if (volume.hostPath) {
    source.setHostPath(volume.hostPath->path);
  } else if (volume.ephemeral) {
    fillImage(source.initEphemeral(), volume.ephemeral->image);
  } else if (volume.persistent) {
    const auto& p = *volume.persistent;
    if (p.size) out.setSizeBytes(static_cast<uint64_t>(std::max<int64_t>(0, p.size->value())));
    out.setReclaimPolicy(p.reclaimPolicy == "Retain" ? schema::ReclaimPolicy::RETAIN
                                                     : schema::ReclaimPolicy::DELETE);
    auto ps = source.initPersistent();
    ps.setClaimName(p.claimName);
    if (p.image) fillImage(ps.initImage(), *p.image);
  }
}

void fillInterface(schema::Interface::Builder out, const api::Interface& iface) {
  out.setName(iface.name);
  out.setModel(iface.model);
  out.setMac(iface.macAddress);
  auto source = out.initSource();
  if (!iface.network.empty()) {
    source.setNetwork(iface.network);
  } else if (!iface.bridge.empty()) {
    source.setBridge(iface.bridge);
  } else {
    source.setUser();
  }
}

const api::Volume* findVolume(const api::VirtualMachine& vm, const std::string& name) {
  for (const auto& v : vm.spec.volumes) {
    if (v.name == name) return &v;
  }
  return nullptr;
}

// A plugin's error for one device: the code and retryable flag as the plugin
// said, the message prefixed with the device.
Error deviceError(const std::string& device, const std::string& name, const Error& e) {
  return Error{e.code, device + " " + name + ": " + e.message, e.retryable};
}

std::string mebibytes(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

}  // namespace

Devices::Devices(ControlPlane& control, PluginInstance& storage, PluginInstance& network,
                 std::string nodeName, metrics::Histogram* startSteps)
    : control_(control),
      storage_(storage),
      network_(network),
      nodeName_(std::move(nodeName)),
      startSteps_(startSteps) {
  storage_.setProgressHandler([this](const std::string& uid, const std::string& what, uint64_t done,
                                     uint64_t total) { onProgress(uid, what, done, total); });
}

Devices::~Devices() { storage_.setProgressHandler({}); }

PluginAttachments Devices::Prepared::attachments() const {
  PluginAttachments out;
  for (const auto& r : volumes_) out.volumes.push_back(r.get());
  for (const auto& r : interfaces_) out.interfaces.push_back(r.get());
  return out;
}

// A storage plugin's progress (a base image being fetched) as the VM's
// ImagesReady condition, at most once a second per VM plus the last report.
void Devices::onProgress(const std::string& uid, const std::string& what, uint64_t done,
                         uint64_t total) {
  VmKey key;
  bool finished = total > 0 && done >= total;
  {
    std::lock_guard lock(progressMu_);
    if (preparing_.uid != uid || uid.empty()) return;  // not the VM being prepared
    auto now = Clock::now();
    if (!finished && now - preparing_.lastReport < std::chrono::seconds(1)) return;
    preparing_.lastReport = now;
    key = preparing_.key;
  }
  std::string message = what + ": " + mebibytes(done);
  if (total > 0) {
    message += " of " + mebibytes(total) + " (" +
               std::to_string(static_cast<int>(100.0 * static_cast<double>(done) /
                                               static_cast<double>(total))) +
               "%)";
  }
  (void)control_.updateVmStatus(key.first, key.second, [&](api::VirtualMachineStatus& s) {
    if (s.nodeName != nodeName_) return false;
    api::setCondition(s.conditions, api::kImagesReadyCondition, finished ? "True" : "False",
                      finished ? "Fetched" : "Fetching", message);
    return true;
  });
}

Result<Devices::Prepared> Devices::prepare(const api::VirtualMachine& vm) {
  {
    std::lock_guard lock(progressMu_);
    preparing_ = Preparing{vm.metadata.uid, {vm.metadata.ns, vm.metadata.name}, {}};
  }
  struct Done {
    Devices* self;
    ~Done() {
      std::lock_guard lock(self->progressMu_);
      self->preparing_ = {};
    }
  } done{this};
  auto stepStart = Clock::now();
  auto step = [&](const char* name) {
    auto now = Clock::now();
    if (startSteps_ != nullptr) {
      startSteps_->observe({nodeName_, name},
                           std::chrono::duration<double>(now - stepStart).count());
    }
    stepStart = now;
  };

  Prepared out;
  auto indexes = diskIndexes(vm);
  for (size_t i = 0; i < vm.spec.disks.size(); ++i) {
    const api::Disk& disk = vm.spec.disks[i];
    const api::Volume* volume = findVolume(vm, disk.name);
    if (volume == nullptr) {
      return Error{VMHOST_ERR_INVALID_ARGUMENT, "disk " + disk.name + ": no volume of that name",
                   false};
    }
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::VolumeRequest>();
    fillVmRef(request.initVm(), vm);
    request.setNode(nodeName_);
    fillVolume(request.initVolume(), disk, *volume, indexes[i]);
    auto reply = storage_.call<schema::VolumeAttachment>(VMHOST_METHOD_STORAGE_PREPARE, message);
    if (!reply.ok()) return deviceError("volume", volume->name, reply.error());
    out.volumes_.push_back(std::move(reply.value()));
  }
  step("storage");
  for (size_t i = 0; i < vm.spec.interfaces.size(); ++i) {
    const api::Interface& iface = vm.spec.interfaces[i];
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::InterfaceRequest>();
    fillVmRef(request.initVm(), vm);
    request.setNode(nodeName_);
    request.setIndex(static_cast<uint32_t>(i));
    fillInterface(request.initInterface(), iface);
    auto reply = network_.call<schema::InterfaceAttachment>(VMHOST_METHOD_NETWORK_ATTACH, message);
    if (!reply.ok()) return deviceError("interface", iface.name, reply.error());
    out.interfaces_.push_back(std::move(reply.value()));
  }
  step("network");
  return out;
}

Status Devices::claimMacs(const VmKey& key, const std::vector<api::InterfaceStatus>& macs) {
  auto lower = [](std::string m) {
    for (char& c : m) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return m;
  };
  std::map<std::string, std::string> seen;  // mac -> interface
  for (const auto& i : macs) {
    std::string mac = lower(i.mac);
    if (mac.empty()) continue;
    if (auto it = seen.find(mac); it != seen.end()) {
      return Error{VMHOST_ERR_INVALID_ARGUMENT,
                   "interfaces " + it->second + " and " + i.name + " have the same MAC " + mac,
                   false};
    }
    seen[mac] = i.name;
    auto owner = macOwners_.find(mac);
    if (owner != macOwners_.end() && owner->second != key) {
      return Error{VMHOST_ERR_ALREADY_EXISTS,
                   "interface " + i.name + ": MAC " + mac + " is already used by VM " +
                       owner->second.first + "/" + owner->second.second +
                       " on this node (MAC collision; give this interface another macAddress)",
                   true};
    }
  }
  std::erase_if(macOwners_, [&](const auto& e) { return e.second == key; });
  for (const auto& [mac, name] : seen) macOwners_[mac] = key;
  return Ok{};
}

bool Devices::forget(const VmKey& key) {
  return std::erase_if(macOwners_, [&](const auto& e) { return e.second == key; }) > 0;
}

Status Devices::release(const api::VirtualMachine& vm, bool deleteData, bool migrated) {
  Status result = Ok{};
  for (const auto& disk : vm.spec.disks) {
    const api::Volume* volume = findVolume(vm, disk.name);
    if (volume == nullptr) continue;
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::VolumeRelease>();
    fillVmRef(request.initVm(), vm);
    request.setNode(nodeName_);
    fillVolume(request.initVolume(), disk, *volume, 0);
    request.setDeleteData(deleteData);
    request.setMigrated(migrated);
    auto reply = storage_.call<schema::VolumeReleased>(VMHOST_METHOD_STORAGE_RELEASE, message);
    // A release is retried on every pass until it works, whatever the
    // plugin says: what it would leave behind is the node's to clean up.
    if (!reply.ok()) {
      Error e = deviceError("volume", volume->name, reply.error());
      e.retryable = true;
      result = std::move(e);
    }
  }
  for (const auto& iface : vm.spec.interfaces) {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::InterfaceRelease>();
    fillVmRef(request.initVm(), vm);
    request.setNode(nodeName_);
    fillInterface(request.initInterface(), iface);
    auto reply = network_.call<schema::InterfaceReleased>(VMHOST_METHOD_NETWORK_DETACH, message);
    if (!reply.ok()) {
      Error e = deviceError("interface", iface.name, reply.error());
      e.retryable = true;
      result = std::move(e);
    }
  }
  return result;
}

Status Devices::releaseEphemeral(const api::VirtualMachine& vm) {
  for (const auto& disk : vm.spec.disks) {
    const api::Volume* volume = findVolume(vm, disk.name);
    if (volume == nullptr || !volume->ephemeral) continue;
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::VolumeRelease>();
    fillVmRef(request.initVm(), vm);
    request.setNode(nodeName_);
    fillVolume(request.initVolume(), disk, *volume, 0);
    request.setDeleteData(false);  // the VM stays; an overlay goes with any release
    auto reply = storage_.call<schema::VolumeReleased>(VMHOST_METHOD_STORAGE_RELEASE, message);
    if (!reply.ok()) {
      Error e = deviceError("volume", volume->name, reply.error());
      e.retryable = true;
      return e;
    }
  }
  return Ok{};
}

}  // namespace vmhost::node
