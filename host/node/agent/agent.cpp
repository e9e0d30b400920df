#include "node/agent/agent.h"

#include "api/conditions.h"
#include "api/eviction.h"
#include "api/objects.h"
#include "api/vocabulary.h"

#include <vmhost/schema/network.capnp.h>
#include <vmhost/schema/storage.capnp.h>

#include <capnp/message.h>
#include <libvirt/libvirt.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace vmhost::node {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

void fillVmRef(schema::VmRef::Builder ref, const api::VirtualMachine& vm) {
  ref.setNamespace(vm.metadata.ns);
  ref.setName(vm.metadata.name);
  ref.setUid(vm.metadata.uid);
}

schema::DiskBus diskBus(const std::string& bus) {
  if (bus == "sata") return schema::DiskBus::SATA;
  if (bus == "scsi") return schema::DiskBus::SCSI;
  return schema::DiskBus::VIRTIO;
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
  out.setBus(diskBus(disk.bus));
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

// The index of each disk among the disks of its target family (vdX or sdX).
std::vector<uint32_t> diskIndexes(const api::VirtualMachine& vm) {
  std::vector<uint32_t> out;
  uint32_t vd = 0, sd = 0;
  for (const auto& d : vm.spec.disks) out.push_back(d.bus == "virtio" ? vd++ : sd++);
  return out;
}

bool isStopped(DomainState s) { return s == DomainState::kShutOff || s == DomainState::kCrashed; }

}  // namespace

NodeAgent::NodeAgent(ControlPlane& control, Connection& libvirt, PluginInstance& storage,
                     PluginInstance& network, metrics::Registry& metrics, AgentOptions options)
    : control_(control),
      libvirt_(libvirt),
      storage_(storage),
      network_(network),
      options_(std::move(options)) {
  if (auto h = metrics.histogram("vmhost_node_reconcile_duration_seconds",
                                 "Time of one VM reconcile pass on a node", {"node"});
      h.ok()) {
    reconcileLatency_ = h.value();
  }
  if (auto h = metrics.histogram(
          "vmhost_node_vm_start_step_seconds",
          "Time of each step of starting a VM on a node: storage (the storage plugin "
          "prepares every disk), network (the network plugin attaches every NIC), define "
          "(libvirt defines the domain), start (libvirt starts it)",
          {"node", "step"});
      h.ok()) {
    startSteps_ = h.value();
  }
  if (auto c = metrics.counter("vmhost_node_reconcile_errors_total",
                               "Reconcile passes that ended with an error", {"node"});
      c.ok()) {
    reconcileErrors_ = c.value();
  }
  std::error_code ec;
  fs::create_directories(fs::path(options_.dataDir) / "node" / "vms", ec);
  fs::create_directories(fs::path(options_.dataDir) / "node" / "console", ec);
  storage_.setProgressHandler([this](const std::string& uid, const std::string& what, uint64_t done,
                                     uint64_t total) { onProgress(uid, what, done, total); });
}

NodeAgent::~NodeAgent() { storage_.setProgressHandler({}); }

namespace {
std::string mebibytes(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}
}  // namespace

// A storage plugin's progress (a base image being fetched) as the VM's
// ImagesReady condition, at most once a second per VM plus the last report.
void NodeAgent::onProgress(const std::string& uid, const std::string& what, uint64_t done,
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
    if (s.nodeName != options_.nodeName) return false;
    api::setCondition(s.conditions, "ImagesReady", finished ? "True" : "False",
                      finished ? "Fetched" : "Fetching", message);
    return true;
  });
}

std::string NodeAgent::stateFile(const VmKey& key) const {
  return (fs::path(options_.dataDir) / "node" / "vms" /
          (domainName(key.first, key.second) + ".json"))
      .string();
}

std::string NodeAgent::consoleLog(const VmKey& key) const {
  return (fs::path(options_.dataDir) / "node" / "console" /
          (domainName(key.first, key.second) + ".log"))
      .string();
}

Status NodeAgent::registerNode() {
  virNodeInfo info{};
  if (virNodeGetInfo(libvirt_.raw(), &info) != 0) {
    return libvirtError("", "reading the node's capacity");
  }
  api::Node node;
  node.metadata.name = options_.nodeName;
  node.metadata.labels = options_.labels;
  if (options_.cpuAllocationRatio > 0) {
    node.metadata.annotations[api::kCpuAllocationRatioAnnotation] =
        std::to_string(options_.cpuAllocationRatio);
  }
  node.metadata.annotations[api::kLibvirtEndpointAnnotation] =
      options_.libvirtEndpoint.empty() ? libvirt_.uri() : options_.libvirtEndpoint;
  if (options_.memoryAllocationRatio > 0) {
    node.metadata.annotations[api::kMemoryAllocationRatioAnnotation] =
        std::to_string(options_.memoryAllocationRatio);
  }
  auto cpu = api::parseQuantity(std::to_string(info.cpus));
  if (!cpu.ok()) return cpu.error();
  node.status.capacity.cpu = cpu.value();
  node.status.capacity.memory = api::bytesQuantity(static_cast<int64_t>(info.memory) * 1024);
  node.status.allocatable = node.status.capacity;
  api::setCondition(node.status.conditions, "Ready", "True", "NodeAgentReady",
                    "vmhost node agent is running (libvirt " + libvirt_.uri() + ")");
  return control_.registerNode(node);
}

Status NodeAgent::setPhase(const api::VirtualMachine& vm, const std::string& phase,
                           const std::string& readyStatus, const std::string& reason,
                           const std::string& message) {
  auto r =
      control_.updateVmStatus(vm.metadata.ns, vm.metadata.name, [&](api::VirtualMachineStatus& s) {
        if (s.nodeName != options_.nodeName) return false;  // re-bound meanwhile: not ours to say
        bool changed = s.phase != phase;
        s.phase = phase;
        changed |= api::setCondition(s.conditions, "Ready", readyStatus, reason, message);
        return changed;
      });
  if (!r.ok() && r.error().code != VMHOST_ERR_NOT_FOUND) return r.error();
  return Ok{};
}

Result<DomainSpec> NodeAgent::prepare(const api::VirtualMachine& vm,
                                      std::vector<api::InterfaceStatus>& macs) {
  {
    std::lock_guard lock(progressMu_);
    preparing_ = Preparing{vm.metadata.uid, {vm.metadata.ns, vm.metadata.name}, {}};
  }
  struct Done {
    NodeAgent* self;
    ~Done() {
      std::lock_guard lock(self->progressMu_);
      self->preparing_ = {};
    }
  } done{this};
  DomainSpec spec;
  spec.name = domainName(vm.metadata.ns, vm.metadata.name);
  spec.uuid = vm.metadata.uid;
  spec.vm = VmIdentity{vm.metadata.ns, vm.metadata.name, vm.metadata.uid,
                       static_cast<uint64_t>(std::max<int64_t>(0, vm.metadata.generation))};
  spec.memoryBytes = static_cast<uint64_t>(std::max<int64_t>(0, vm.spec.memory.value()));
  spec.vcpus = static_cast<uint32_t>(std::max<int64_t>(1, vm.spec.cpu.cores));
  if (vm.spec.boot) {
    spec.kernel = vm.spec.boot->kernel;
    spec.initrd = vm.spec.boot->initrd;
    spec.cmdline = vm.spec.boot->cmdline;
  }
  spec.serialLogFile = consoleLog({vm.metadata.ns, vm.metadata.name});
  if (vm.spec.graphics) {
    GraphicsSpec g;
    g.type = vm.spec.graphics->type;
    spec.graphics = g;
  }
  if (vm.spec.video) {
    VideoSpec v;
    v.model = vm.spec.video->model;
    if (vm.spec.video->heads) v.heads = static_cast<uint32_t>(*vm.spec.video->heads);
    spec.video = v;
  }
  auto stepStart = Clock::now();
  auto step = [&](const char* name) {
    auto now = Clock::now();
    if (startSteps_ != nullptr) {
      startSteps_->observe({options_.nodeName, name},
                           std::chrono::duration<double>(now - stepStart).count());
    }
    stepStart = now;
  };
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
    request.setNode(options_.nodeName);
    fillVolume(request.initVolume(), disk, *volume, indexes[i]);
    auto reply = storage_.call<schema::VolumeAttachment>(VMHOST_METHOD_STORAGE_PREPARE, message);
    if (!reply.ok()) {
      return Error{reply.error().code, "volume " + volume->name + ": " + reply.error().message,
                   reply.error().retryable};
    }
    auto a = reply.value().get();
    DiskSpec d;
    d.volumeName = volume->name;
    d.sourcePath = a.getSourcePath().cStr();
    d.diskType = a.getDiskType().cStr();
    d.format = a.getFormat().cStr();
    d.targetDev = a.getTargetDev().cStr();
    d.bus = disk.bus;
    d.readOnly = a.getReadOnly();
    d.bootOrder = a.getBootOrder();
    d.shared = a.getShared();
    d.cache = a.getCache().cStr();
    spec.disks.push_back(std::move(d));
  }
  step("storage");
  for (size_t i = 0; i < vm.spec.interfaces.size(); ++i) {
    const api::Interface& iface = vm.spec.interfaces[i];
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::InterfaceRequest>();
    fillVmRef(request.initVm(), vm);
    request.setNode(options_.nodeName);
    request.setIndex(static_cast<uint32_t>(i));
    fillInterface(request.initInterface(), iface);
    auto reply = network_.call<schema::InterfaceAttachment>(VMHOST_METHOD_NETWORK_ATTACH, message);
    if (!reply.ok()) {
      return Error{reply.error().code, "interface " + iface.name + ": " + reply.error().message,
                   reply.error().retryable};
    }
    auto a = reply.value().get();
    InterfaceSpec n;
    n.interfaceName = iface.name;
    n.type = a.getType().cStr();
    n.source = a.getSource().cStr();
    n.mac = a.getMac().cStr();
    n.model = a.getModel().cStr();
    n.targetDev = a.getTargetDev().cStr();
    macs.push_back(api::InterfaceStatus{iface.name, n.mac});
    spec.interfaces.push_back(std::move(n));
  }
  if (auto s = claimMacs({vm.metadata.ns, vm.metadata.name}, macs); !s.ok()) return s.error();
  step("network");
  return spec;
}

Status NodeAgent::claimMacs(const VmKey& key, const std::vector<api::InterfaceStatus>& macs) {
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

Status NodeAgent::releaseDevices(const api::VirtualMachine& vm, bool deleteData) {
  Status result = Ok{};
  for (const auto& disk : vm.spec.disks) {
    const api::Volume* volume = findVolume(vm, disk.name);
    if (volume == nullptr) continue;
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::VolumeRelease>();
    fillVmRef(request.initVm(), vm);
    request.setNode(options_.nodeName);
    fillVolume(request.initVolume(), disk, *volume, 0);
    request.setDeleteData(deleteData);
    auto reply = storage_.call<schema::VolumeReleased>(VMHOST_METHOD_STORAGE_RELEASE, message);
    if (!reply.ok())
      result =
          Error{reply.error().code, "volume " + volume->name + ": " + reply.error().message, true};
  }
  for (const auto& iface : vm.spec.interfaces) {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::InterfaceRelease>();
    fillVmRef(request.initVm(), vm);
    request.setNode(options_.nodeName);
    fillInterface(request.initInterface(), iface);
    auto reply = network_.call<schema::InterfaceReleased>(VMHOST_METHOD_NETWORK_DETACH, message);
    if (!reply.ok())
      result =
          Error{reply.error().code, "interface " + iface.name + ": " + reply.error().message, true};
  }
  return result;
}

Status NodeAgent::releaseEphemeral(const api::VirtualMachine& vm) {
  for (const auto& disk : vm.spec.disks) {
    const api::Volume* volume = findVolume(vm, disk.name);
    if (volume == nullptr || !volume->ephemeral) continue;
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::VolumeRelease>();
    fillVmRef(request.initVm(), vm);
    request.setNode(options_.nodeName);
    fillVolume(request.initVolume(), disk, *volume, 0);
    request.setDeleteData(false);  // the VM stays; an overlay goes with any release
    auto reply = storage_.call<schema::VolumeReleased>(VMHOST_METHOD_STORAGE_RELEASE, message);
    if (!reply.ok()) {
      return Error{reply.error().code, "volume " + volume->name + ": " + reply.error().message,
                   true};
    }
  }
  return Ok{};
}

Status NodeAgent::cleanup(const VmKey& key, const std::string& expectedUid, bool deleteData) {
  std::string name = domainName(key.first, key.second);
  auto domain = libvirt_.lookupByName(name);
  if (domain.ok()) {
    auto meta = domain.value().metadata();
    if (!meta.ok() || !meta.value()) return Ok{};  // not ours: never touch it
    if (!expectedUid.empty() && meta.value()->vm.uid != expectedUid) return Ok{};
    if (auto s = domain.value().destroy(); !s.ok()) return s.error();
    if (auto s = domain.value().undefine(); !s.ok()) return s.error();
  } else if (domain.error().code != VMHOST_ERR_NOT_FOUND) {
    return domain.error();
  }
  // Release what the plugins prepared, from the VM as it was defined.
  std::ifstream in(stateFile(key));
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    store::StoredObject object;
    object.key = api::virtualMachineKey(key.first, key.second);
    object.value = ss.str();
    auto vm = api::decodeStoredVirtualMachine(object);
    if (vm.ok() && (expectedUid.empty() || vm.value().metadata.uid == expectedUid)) {
      if (auto s = releaseDevices(vm.value(), deleteData); !s.ok()) return s.error();
    }
  }
  std::error_code ec;
  fs::remove(stateFile(key), ec);
  fs::remove(consoleLog(key), ec);
  stopping_.erase(key);
  std::erase_if(macOwners_, [&](const auto& e) { return e.second == key; });
  return Ok{};
}

Status NodeAgent::ensureRunning(const api::VirtualMachine& vm, std::optional<Domain>& domain) {
  VmKey key{vm.metadata.ns, vm.metadata.name};
  stopping_.erase(key);
  if (domain) {
    auto state = domain->state();
    if (!state.ok()) return state.error();
    DomainState s = state.value().state;
    if (!isStopped(s)) {
      if (vm.status.phase != "Running")
        return setPhase(vm, "Running", "True", "DomainRunning", "the domain is running");
      return Ok{};
    }
    // The guest stopped (by itself, or it crashed): its overlays go now,
    // whether or not the run strategy starts it again.
    if (auto r = releaseEphemeral(vm); !r.ok()) return r.error();
    // Stopped: does the run strategy want it back?
    bool guestShutdown =
        s == DomainState::kShutOff && state.value().reason == VIR_DOMAIN_SHUTOFF_SHUTDOWN;
    bool wasRunning = vm.status.phase == "Running";
    bool crashed =
        s == DomainState::kCrashed ||
        (s == DomainState::kShutOff && state.value().reason == VIR_DOMAIN_SHUTOFF_CRASHED);
    if (vm.spec.runStrategy == "Manual" && wasRunning) {
      if (crashed)
        return setPhase(vm, "Failed", "False", "GuestCrashed",
                        "the guest crashed; runStrategy Manual leaves it stopped");
      return setPhase(vm, "Stopped", "False", "GuestStopped",
                      "the guest stopped; runStrategy Manual leaves it stopped");
    }
    if (vm.spec.runStrategy == "Manual" &&
        (vm.status.phase == "Stopped" || vm.status.phase == "Failed")) {
      return Ok{};
    }
    if (vm.spec.runStrategy == "RerunOnFailure" && guestShutdown && wasRunning) {
      return setPhase(vm, "Succeeded", "False", "GuestShutdown", "the guest shut down cleanly");
    }
    if (vm.spec.runStrategy == "RerunOnFailure" && vm.status.phase == "Succeeded") return Ok{};
  }
  // Define (or redefine: the spec may have changed while it was stopped) and start.
  std::vector<api::InterfaceStatus> macs;
  auto spec = prepare(vm, macs);
  if (!spec.ok()) {
    (void)setPhase(vm, vm.status.phase.empty() ? "Scheduled" : vm.status.phase, "False",
                   "PrepareFailed", spec.error().message);
    return spec.error();
  }
  {
    // Record the VM as defined before defining, so a crash in between still
    // leaves enough to clean up.
    std::ofstream out(stateFile(key), std::ios::trunc);
    out << api::storeValue(vm);
  }
  auto defineStart = Clock::now();
  auto defined = libvirt_.define(spec.value());
  if (!defined.ok()) {
    // A definition libvirt refuses as invalid will not get better by
    // retrying: Failed until the spec changes. Anything else is retried.
    bool permanent = defined.error().code == VMHOST_ERR_INVALID_ARGUMENT;
    (void)setPhase(vm,
                   permanent ? "Failed" : (vm.status.phase.empty() ? "Scheduled" : vm.status.phase),
                   "False", "DefineFailed", defined.error().message);
    return defined.error();
  }
  auto startStart = Clock::now();
  if (startSteps_ != nullptr) {
    startSteps_->observe({options_.nodeName, "define"},
                         std::chrono::duration<double>(startStart - defineStart).count());
  }
  if (auto s = defined.value().start(); !s.ok()) {
    (void)setPhase(vm, vm.status.phase.empty() ? "Scheduled" : vm.status.phase, "False",
                   "StartFailed", s.error().message);
    return s.error();
  }
  if (startSteps_ != nullptr) {
    startSteps_->observe({options_.nodeName, "start"},
                         std::chrono::duration<double>(Clock::now() - startStart).count());
  }
  lastStates_[defined.value().name()] = DomainState::kRunning;
  auto r =
      control_.updateVmStatus(vm.metadata.ns, vm.metadata.name, [&](api::VirtualMachineStatus& s) {
        if (s.nodeName != options_.nodeName) return false;
        s.phase = "Running";
        s.interfaces = macs;
        s.observedGeneration = vm.metadata.generation;
        api::setCondition(s.conditions, "Ready", "True", "DomainRunning", "the domain is running");
        return true;
      });
  if (!r.ok() && r.error().code != VMHOST_ERR_NOT_FOUND) return r.error();
  return Ok{};
}

Result<bool> NodeAgent::stopDomain(const VmKey& key, std::optional<Domain>& domain) {
  if (domain) {
    auto state = domain->state();
    if (!state.ok()) return state.error();
    if (!isStopped(state.value().state)) {
      auto it = stopping_.find(key);
      if (it == stopping_.end()) {
        // Ask the guest first; it gets the grace period to power off.
        if (auto s = domain->shutdown(); !s.ok()) {
          if (auto d = domain->destroy(); !d.ok()) return d.error();
        } else {
          stopping_[key] = Clock::now();
          queue_.insert(key);
          return false;
        }
      } else if (Clock::now() - it->second < options_.stopGracePeriod) {
        return false;  // still within the grace period; the poll requeues it
      } else if (auto d = domain->destroy(); !d.ok()) {
        return d.error();
      }
    }
  }
  stopping_.erase(key);
  return true;
}

Status NodeAgent::ensureEvicted(const api::VirtualMachine& vm, std::optional<Domain>& domain) {
  VmKey key{vm.metadata.ns, vm.metadata.name};
  auto stopped = stopDomain(key, domain);
  if (!stopped.ok()) return stopped.error();
  if (!stopped.value()) return Ok{};  // shutting down; requeued until it is off
  if (api::evictionAcknowledged(vm.status)) return Ok{};
  if (auto r = releaseEphemeral(vm); !r.ok()) return r.error();
  // The domain is off and this node starts no VM that carries an eviction
  // request: acknowledge this request (its id is in the message), so the
  // controller may let another node start the VM.
  std::string ack;
  auto r =
      control_.updateVmStatus(vm.metadata.ns, vm.metadata.name, [&](api::VirtualMachineStatus& s) {
        if (s.nodeName != options_.nodeName) return false;
        const api::Condition* request = api::evictionRequest(s);
        if (request == nullptr || api::evictionAcknowledged(s)) return false;
        ack = api::evictionAck(*request);
        s.phase = "Stopped";
        api::setCondition(s.conditions, "Ready", "False", api::kEvictedReason, ack);
        return true;
      });
  if (!r.ok() && r.error().code != VMHOST_ERR_NOT_FOUND) return r.error();
  if (r.ok() && !ack.empty()) {
    std::fprintf(stderr, "node %s: vm %s/%s: %s\n", options_.nodeName.c_str(),
                 vm.metadata.ns.c_str(), vm.metadata.name.c_str(), ack.c_str());
  }
  return Ok{};
}

Status NodeAgent::ensureStopped(const api::VirtualMachine& vm, std::optional<Domain>& domain) {
  VmKey key{vm.metadata.ns, vm.metadata.name};
  auto stopped = stopDomain(key, domain);
  if (!stopped.ok()) return stopped.error();
  if (!stopped.value()) return Ok{};
  if (vm.status.phase != "Stopped") {
    // Before the phase says Stopped, so that a failed release is retried.
    if (auto r = releaseEphemeral(vm); !r.ok()) return r.error();
    return setPhase(vm, "Stopped", "False", "Stopped", "runStrategy is Halted");
  }
  return Ok{};
}

Status NodeAgent::reconcile(const std::string& ns, const std::string& name) {
  auto started = Clock::now();
  VmKey key{ns, name};
  auto finish = [&](Status s) {
    if (reconcileLatency_) {
      reconcileLatency_->observe({options_.nodeName},
                                 std::chrono::duration<double>(Clock::now() - started).count());
    }
    if (!s.ok()) {
      ++failures_;
      if (reconcileErrors_) reconcileErrors_->inc({options_.nodeName});
    }
    return s;
  };
  auto current = control_.getVm(ns, name);
  if (!current.ok()) return finish(current.error());
  if (!current.value()) {
    // Gone from this node's view. Its data goes only when the control plane
    // knows it was deleted; a VM that may run elsewhere keeps its disks.
    mine_.erase(key);
    return finish(cleanup(key, "", control_.confirmedDeleted(ns, name)));
  }
  const api::VirtualMachine& vm = *current.value();

  std::optional<Domain> domain;
  auto found = libvirt_.lookupByName(domainName(ns, name));
  if (found.ok()) {
    auto meta = found.value().metadata();
    if (meta.ok() && meta.value() && meta.value()->vm.uid != vm.metadata.uid) {
      // A domain of an earlier VM with the same name: tear it down first.
      if (auto s = cleanup(key, meta.value()->vm.uid, /*deleteData=*/true); !s.ok()) {
        return finish(s);
      }
    } else {
      domain = std::move(found.value());
    }
  } else if (found.error().code != VMHOST_ERR_NOT_FOUND) {
    return finish(found.error());
  }

  if (vm.status.nodeName != options_.nodeName || vm.metadata.deletionTimestamp) {
    mine_.erase(key);
    // Bound elsewhere (a drain, a lost node's VM restarted on another one):
    // stop the copy here but keep its disks, which may be the new node's.
    bool deleting = vm.metadata.deletionTimestamp.has_value();
    if (domain) return finish(cleanup(key, vm.metadata.uid, deleting));
    return finish(Ok{});
  }
  mine_.insert(key);
  // Being evicted (a drain): stopped whatever the run strategy says, and
  // never started again here (see controller/eviction.h).
  if (api::evictionRequest(vm.status) != nullptr) return finish(ensureEvicted(vm, domain));
  if (vm.spec.runStrategy == "Halted") return finish(ensureStopped(vm, domain));
  return finish(ensureRunning(vm, domain));
}

bool NodeAgent::adopt() {
  auto domains = libvirt_.listAll();
  if (!domains.ok()) {
    std::fprintf(stderr, "node %s: listing domains: %s\n", options_.nodeName.c_str(),
                 domains.error().message.c_str());
    return false;
  }
  for (const auto& d : domains.value()) {
    lastStates_[d.name] = d.status.state;
    if (!d.metadata) continue;
    VmKey key{d.metadata->vm.ns, d.metadata->vm.name};
    mine_.insert(key);
    queue_.insert(key);
  }
  // VMs whose domain is gone but whose local state is left (deleted while down).
  std::error_code ec;
  for (const auto& entry :
       fs::directory_iterator(fs::path(options_.dataDir) / "node" / "vms", ec)) {
    std::string stem = entry.path().stem().string();
    auto sep = stem.find('_');
    if (sep == std::string::npos) continue;
    VmKey key{stem.substr(0, sep), stem.substr(sep + 1)};
    mine_.insert(key);
    queue_.insert(key);
  }
  return true;
}

void NodeAgent::pollDomains() {
  auto domains = libvirt_.listAll();
  if (!domains.ok()) return;
  for (const auto& d : domains.value()) {
    auto& last = lastStates_[d.name];
    if (last != d.status.state && d.metadata)
      queue_.insert({d.metadata->vm.ns, d.metadata->vm.name});
    last = d.status.state;
  }
  for (const auto& [key, since] : stopping_) queue_.insert(key);
}

void NodeAgent::run(std::stop_token stop) {
  while (!stop.stop_requested()) {
    if (auto s = registerNode(); !s.ok()) {
      std::fprintf(stderr, "node %s: registering: %s\n", options_.nodeName.c_str(),
                   s.error().message.c_str());
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    adopt();
    auto snapshot = control_.listAndWatch();
    if (!snapshot.ok()) {
      std::fprintf(stderr, "node %s: listing VMs: %s\n", options_.nodeName.c_str(),
                   snapshot.error().message.c_str());
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    for (const auto& vm : snapshot.value().vms) {
      if (vm.status.nodeName == options_.nodeName) {
        VmKey key{vm.metadata.ns, vm.metadata.name};
        mine_.insert(key);
        queue_.insert(key);
        // The MACs this node's VMs hold; a start that loses a race to a
        // claim here retries on its next pass (the error is retryable).
        (void)claimMacs(key, vm.status.interfaces);
      }
    }
    auto& feed = *snapshot.value().feed;
    std::mutex mu;
    std::condition_variable cv;
    bool woken = false;
    feed.setNotify([&] {
      std::lock_guard<std::mutex> lock(mu);
      woken = true;
      cv.notify_one();
    });
    auto lastResync = Clock::now();
    auto lastHeartbeat = Clock::now();
    auto lastPoll = Clock::now();
    bool relist = false;
    while (!stop.stop_requested() && !relist) {
      for (int n = 0; n < 10000; ++n) {
        auto event = feed.tryNext();
        if (!event) break;
        if (event->type == VmEvent::Type::kRelist) {
          relist = true;
          break;
        }
        VmKey key{event->vm.metadata.ns, event->vm.metadata.name};
        if (event->type == VmEvent::Type::kDeleted) {
          if (mine_.count(key)) queue_.insert(key);
          continue;
        }
        if (event->vm.status.nodeName == options_.nodeName || mine_.count(key)) {
          queue_.insert(key);
        }
      }
      if (Clock::now() - lastHeartbeat >= options_.heartbeat) {
        if (auto s = control_.heartbeat(); !s.ok()) {
          std::fprintf(stderr, "node %s: heartbeat: %s\n", options_.nodeName.c_str(),
                       s.error().message.c_str());
        }
        lastHeartbeat = Clock::now();
      }
      if (Clock::now() - lastPoll >= options_.domainPoll) {
        pollDomains();
        lastPoll = Clock::now();
      }
      if (Clock::now() - lastResync >= options_.resync) {
        for (const auto& key : mine_) queue_.insert(key);
        lastResync = Clock::now();
      }
      auto queue = std::move(queue_);
      queue_.clear();
      for (const auto& key : queue) {
        if (stop.stop_requested()) break;
        auto s = reconcile(key.first, key.second);
        if (!s.ok()) {
          std::fprintf(stderr, "node %s: vm %s/%s: %s\n", options_.nodeName.c_str(),
                       key.first.c_str(), key.second.c_str(), s.error().message.c_str());
        }
      }
      std::unique_lock<std::mutex> lock(mu);
      cv.wait_for(lock, std::chrono::milliseconds(200),
                  [&] { return woken || stop.stop_requested(); });
      woken = false;
    }
  }
}

}  // namespace vmhost::node
