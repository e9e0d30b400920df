#include "samples.h"

#include <vmhost/loader/plugin_host.h>

#include <vmhost/schema/common.capnp.h>
#include <vmhost/schema/migration.capnp.h>
#include <vmhost/schema/network.capnp.h>
#include <vmhost/schema/scheduler.capnp.h>
#include <vmhost/schema/storage.capnp.h>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstring>
#include <limits>
#include <random>

namespace vmhost::plugincheck {
namespace {

namespace schema = vmhost::schema;

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kMax64 = std::numeric_limits<uint64_t>::max();
constexpr uint32_t kMax32 = std::numeric_limits<uint32_t>::max();
// Seeds the kit's pseudo-random payloads: the same bytes on every run.
constexpr uint64_t kSeed = 0x766d686f73742d31ull;  // "vmhost-1"

Bytes encode(capnp::MessageBuilder& message) {
  auto words = capnp::messageToFlatArray(message);
  return Bytes::of(words.asPtr());
}

// A text with the given bytes (which may include NULs).
kj::StringPtr text(const std::string& s) { return kj::StringPtr(s.c_str(), s.size()); }

std::string repeat(const std::string& unit, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += unit;
  return out;
}

// Hostile names: path traversal, separators, embedded NUL, very long,
// multi-byte (long enough that an error message quoting it is truncated).
const std::vector<std::string>& hostileNames() {
  static const std::vector<std::string> names = {
      "",
      "..",
      "../../../../etc",
      "a/b",
      std::string("vm\0../x", 7),
      "UPPER case 'quoted' <xml> & \"json\"",
      repeat("a", 5000),
      repeat("\xc3\xa9", 1000),        // "é" x 1000
      "x" + repeat("\xc3\xa9", 1000),  // shifted by one byte
      "\xff\xfe not utf-8",
  };
  return names;
}

void setRef(schema::VmRef::Builder ref, const std::string& ns, const std::string& name,
            const std::string& uid) {
  ref.setNamespace(text(ns));
  ref.setName(text(name));
  ref.setUid(text(uid));
}

void setSampleRef(schema::VmRef::Builder ref, const SampleVm& vm) {
  setRef(ref, "default", vm.name, "6f1c1a52-7b4e-4d0e-9a51-3c2d1e0f4a5b");
}

template <typename Response>
std::function<std::string(PluginInstance&, const Bytes&)> viaHost(uint32_t method) {
  return [method](PluginInstance& instance, const Bytes& request) -> std::string {
    kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(request.data()),
                                          request.size() / sizeof(capnp::word));
    auto reply = instance.call<Response>(method, words);
    return reply.ok() ? "" : reply.error().describe();
  };
}

template <typename Request, typename Response>
MethodSpec method(uint32_t id, const char* name) {
  MethodSpec m;
  m.id = id;
  m.name = name;
  m.request = capnp::Schema::from<Request>();
  m.response = capnp::Schema::from<Response>();
  m.viaHost = viaHost<Response>(id);
  return m;
}

// --- scheduler ------------------------------------------------------------------

void setNode(schema::NodeInfo::Builder node, const std::string& name, uint64_t cpu, uint64_t mem,
             uint64_t cpuUsed, uint64_t memUsed) {
  node.setName(text(name));
  auto labels = node.initLabels(1);
  labels[0].setKey("kubernetes.io/hostname");
  labels[0].setValue(text(name));
  node.setSchedulable(true);
  node.setReady(true);
  node.initCapacity().setCpuMillis(cpu);
  node.getCapacity().setMemoryBytes(mem);
  node.initAllocated().setCpuMillis(cpuUsed);
  node.getAllocated().setMemoryBytes(memUsed);
  node.setCpuAllocationRatio(1.0f);
  node.setMemoryAllocationRatio(1.0f);
}

Bytes scheduleSample(const SampleVm& vm) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<schema::ScheduleRequest>();
  auto spec = request.initVm();
  setSampleRef(spec.initRef(), vm);
  spec.initRequests().setCpuMillis(500);
  spec.getRequests().setMemoryBytes(512 * kMiB);
  // Three roomy nodes, allocated to different degrees so that spreading and
  // packing policies both have a unique best choice.
  auto nodes = request.initNodes(3);
  setNode(nodes[0], "conformance-node-a", 8000, 16 * kGiB, 1000, 2 * kGiB);
  setNode(nodes[1], "conformance-node-b", 8000, 16 * kGiB, 3000, 6 * kGiB);
  setNode(nodes[2], "conformance-node-c", 8000, 16 * kGiB, 5000, 10 * kGiB);
  request.setFullSync(true);
  return encode(message);
}

std::vector<Payload> scheduleExtremes() {
  std::vector<Payload> out;
  {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::ScheduleRequest>();
    auto spec = request.initVm();
    setSampleRef(spec.initRef(), {});
    spec.initRequests().setCpuMillis(kMax64);
    spec.getRequests().setMemoryBytes(kMax64);
    auto nodes = request.initNodes(4);
    const float ratios[] = {std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(), -1.0f, 1e30f};
    for (unsigned i = 0; i < 4; ++i) {
      setNode(nodes[i], "huge-" + std::to_string(i), kMax64, kMax64, kMax64 - i, kMax64);
      nodes[i].setCpuAllocationRatio(ratios[i]);
      nodes[i].setMemoryAllocationRatio(ratios[3 - i]);
    }
    request.setFullSync(true);
    out.push_back(
        {"schedule request with maximal values and NaN/inf/negative ratios", encode(message)});
  }
  {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::ScheduleRequest>();
    setSampleRef(request.initVm().initRef(), {});
    request.setFullSync(true);
    request.setWantNodeReasons(true);
    out.push_back({"schedule request with no nodes", encode(message)});
  }
  {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::ScheduleRequest>();
    auto spec = request.initVm();
    setSampleRef(spec.initRef(), {});
    auto selector = spec.initNodeSelector(2);
    selector[0].setKey("");
    selector[1].setKey("kubernetes.io/hostname");
    selector[1].setValue("nowhere");
    auto nodes = request.initNodes(5);
    setNode(nodes[0], "", 0, 0, 0, 0);
    setNode(nodes[1], "dup", 1000, kGiB, 0, 0);
    setNode(nodes[2], "dup", 1000, kGiB, 5000, 5 * kGiB);  // over-allocated
    setNode(nodes[3], hostileNames()[7], 1000, kGiB, 0, 0);
    setNode(nodes[4], "unready", 1000, kGiB, 0, 0);
    nodes[4].setReady(false);
    nodes[4].setSchedulable(false);
    request.setFullSync(true);
    request.setWantNodeReasons(true);
    out.push_back(
        {"schedule request with empty, duplicate and over-allocated nodes", encode(message)});
  }
  {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::ScheduleRequest>();
    setSampleRef(request.initVm().initRef(), {});
    auto nodes = request.initNodes(1);
    setNode(nodes[0], "delta", 1000, kGiB, 0, 0);
    auto removed = request.initRemovedNodes(3);
    removed.set(0, "delta");
    removed.set(1, "never-seen");
    removed.set(2, "");
    request.setFullSync(false);
    out.push_back({"schedule request with a delta removing unknown nodes", encode(message)});
  }
  {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::ScheduleRequest>();
    auto spec = request.initVm();
    setSampleRef(spec.initRef(), {});
    spec.initRequests().setCpuMillis(100);
    auto nodes = request.initNodes(2000);
    for (unsigned i = 0; i < nodes.size(); ++i) {
      setNode(nodes[i], "many-" + std::to_string(i), 4000, 8 * kGiB, i % 4000, 0);
    }
    request.setFullSync(true);
    request.setWantNodeReasons(true);
    out.push_back({"schedule request with 2000 nodes", encode(message)});
  }
  return out;
}

// --- storage --------------------------------------------------------------------

void setSampleVolume(schema::Volume::Builder volume) {
  volume.setName("disk0");
  volume.setSizeBytes(kMiB);
  volume.setBus(schema::DiskBus::VIRTIO);
  volume.setBootOrder(1);
  volume.setDiskIndex(0);
  volume.setReclaimPolicy(schema::ReclaimPolicy::DELETE);
  volume.getSource().setEmpty();
}

Bytes prepareSample(const SampleVm& vm) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<schema::VolumeRequest>();
  setSampleRef(request.initVm(), vm);
  request.setNode("conformance-node");
  setSampleVolume(request.initVolume());
  return encode(message);
}

Bytes releaseSample(const SampleVm& vm) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<schema::VolumeRelease>();
  setSampleRef(request.initVm(), vm);
  request.setNode("conformance-node");
  setSampleVolume(request.initVolume());
  request.setDeleteData(true);
  return encode(message);
}

// Volumes a storage plugin must refuse or handle without harm. No host path
// names an existing file: a plugin that deletes what it should not cannot
// do damage here.
template <typename Builder>
void storageExtremes(std::vector<Payload>& out, const char* what,
                     const std::function<Builder(capnp::MallocMessageBuilder&)>& init) {
  {
    capnp::MallocMessageBuilder message;
    auto request = init(message);
    auto volume = request.getVolume();
    volume.setSizeBytes(kMax64);
    volume.setDiskIndex(kMax32);
    volume.setBootOrder(kMax32);
    volume.setBus(static_cast<schema::DiskBus>(999));
    volume.setReclaimPolicy(static_cast<schema::ReclaimPolicy>(999));
    out.push_back(
        {std::string(what) + " with maximal sizes and unknown enum values", encode(message)});
  }
  for (size_t i = 0; i < hostileNames().size(); ++i) {
    capnp::MallocMessageBuilder message;
    auto request = init(message);
    const auto& name = hostileNames()[i];
    setRef(request.getVm(), name, name, name);
    request.getVolume().setName(text(name));
    out.push_back(
        {std::string(what) + " with hostile names #" + std::to_string(i), encode(message)});
  }
  for (const char* path : {"", "relative/path", "/nonexistent/vmhost-plugin-check/disk.img"}) {
    capnp::MallocMessageBuilder message;
    auto request = init(message);
    request.getVolume().getSource().setHostPath(path);
    out.push_back({std::string(what) + " with hostPath '" + path + "'", encode(message)});
  }
  {
    capnp::MallocMessageBuilder message;
    auto request = init(message);
    request.getVolume().getSource().initEphemeral().setPath(
        "/nonexistent/vmhost-plugin-check/base.qcow2");
    out.push_back({std::string(what) + " with a missing ephemeral base image", encode(message)});
  }
  {
    capnp::MallocMessageBuilder message;
    auto request = init(message);
    request.getVolume().getSource().initPersistent();
    request.getVolume().setSizeBytes(0);
    out.push_back(
        {std::string(what) + " with an empty persistent source and size 0", encode(message)});
  }
}

std::vector<Payload> prepareExtremes() {
  std::vector<Payload> out;
  storageExtremes<schema::VolumeRequest::Builder>(
      out, "prepare", [](capnp::MallocMessageBuilder& m) {
        auto request = m.initRoot<schema::VolumeRequest>();
        setSampleRef(request.initVm(), {});
        request.setNode("conformance-node");
        setSampleVolume(request.initVolume());
        return request;
      });
  return out;
}

std::vector<Payload> releaseExtremes() {
  std::vector<Payload> out;
  storageExtremes<schema::VolumeRelease::Builder>(
      out, "release", [](capnp::MallocMessageBuilder& m) {
        auto request = m.initRoot<schema::VolumeRelease>();
        setSampleRef(request.initVm(), {});
        request.setNode("conformance-node");
        setSampleVolume(request.initVolume());
        request.setDeleteData(true);
        return request;
      });
  return out;
}

// --- network --------------------------------------------------------------------

void setSampleInterface(schema::Interface::Builder iface) {
  iface.setName("net0");
  iface.setModel("virtio");
  iface.setMac("");
  iface.getSource().setNetwork("default");
}

Bytes attachSample(const SampleVm& vm) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<schema::InterfaceRequest>();
  setSampleRef(request.initVm(), vm);
  request.setNode("conformance-node");
  setSampleInterface(request.initInterface());
  request.setIndex(0);
  return encode(message);
}

Bytes detachSample(const SampleVm& vm) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<schema::InterfaceRelease>();
  setSampleRef(request.initVm(), vm);
  request.setNode("conformance-node");
  setSampleInterface(request.initInterface());
  auto attachment = request.initAttachment();
  attachment.setInterfaceName("net0");
  attachment.setType("network");
  attachment.setSource("default");
  attachment.setMac("52:54:00:12:34:56");
  attachment.setModel("virtio");
  return encode(message);
}

std::vector<Payload> attachExtremes() {
  std::vector<Payload> out;
  auto add = [&](const std::string& what,
                 const std::function<void(schema::InterfaceRequest::Builder)>& edit) {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::InterfaceRequest>();
    setSampleRef(request.initVm(), {});
    request.setNode("conformance-node");
    setSampleInterface(request.initInterface());
    edit(request);
    out.push_back({"attach " + what, encode(message)});
  };
  for (const char* mac :
       {"ff:ff:ff:ff:ff:ff", "zz:zz:zz:zz:zz:zz", "52:54:00:12:34", "52-54-00-12-34-56"}) {
    add(std::string("with mac '") + mac + "'", [&](auto r) { r.getInterface().setMac(mac); });
  }
  add("with an unknown model", [](auto r) { r.getInterface().setModel("no-such-model"); });
  add("with index 2^32-1", [](auto r) { r.setIndex(kMax32); });
  add("with an empty bridge", [](auto r) { r.getInterface().getSource().setBridge(""); });
  add("with user networking", [](auto r) { r.getInterface().getSource().setUser(); });
  add("with an empty network", [](auto r) { r.getInterface().getSource().setNetwork(""); });
  for (size_t i = 0; i < hostileNames().size(); ++i) {
    add("with hostile names #" + std::to_string(i), [&](auto r) {
      const auto& name = hostileNames()[i];
      setRef(r.getVm(), name, name, name);
      r.getInterface().setName(text(name));
      r.getInterface().getSource().setNetwork(text(name));
      r.getInterface().setModel(text(name));
    });
  }
  return out;
}

std::vector<Payload> detachExtremes() {
  std::vector<Payload> out;
  for (size_t i = 0; i < hostileNames().size(); ++i) {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::InterfaceRelease>();
    const auto& name = hostileNames()[i];
    setRef(request.initVm(), name, name, name);
    request.setNode(text(name));
    request.initInterface().setName(text(name));
    auto attachment = request.initAttachment();
    attachment.setInterfaceName(text(name));
    attachment.setTargetDev(text(name));
    attachment.setMac(text(name));
    out.push_back({"detach with hostile names #" + std::to_string(i), encode(message)});
  }
  return out;
}

// --- migration ------------------------------------------------------------------

Bytes planSample(const SampleVm& vm) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<schema::MigrationRequest>();
  setSampleRef(request.initVm(), vm);
  request.setSourceNode("conformance-node-a");
  request.setTargetNode("conformance-node-b");
  request.setMemoryBytes(4 * kGiB);
  request.setDiskBytesToCopy(10 * kGiB);
  request.setSharedStorage(false);
  auto overrides = request.initOverrides();  // what a VirtualMachineMigration's spec may ask
  overrides.setMaxDowntimeMs(500);
  overrides.setProgressTimeoutSeconds(300);
  overrides.setAllowPostCopy(schema::MigrationOverrides::Choice::NO);
  return encode(message);
}

void setSamplePlan(schema::MigrationPlan::Builder plan) {
  plan.setBandwidthMiBps(0);
  plan.setMaxDowntimeMs(300);
  plan.setAutoConverge(true);
  plan.setAllowPostCopy(false);
  plan.setCompletionTimeoutSeconds(2100);
  plan.setProgressTimeoutSeconds(150);
  plan.setParallelConnections(1);
  plan.setCopyStorage(true);
}

Bytes progressSample(const SampleVm&) {
  capnp::MallocMessageBuilder message;
  auto progress = message.initRoot<schema::MigrationProgress>();
  setSamplePlan(progress.initPlan());
  progress.setElapsedMs(10000);
  progress.setDataTotalBytes(14 * kGiB);
  progress.setDataProcessedBytes(7 * kGiB);
  progress.setDataRemainingBytes(7 * kGiB);
  progress.setDirtyRateBytesPerSecond(100 * kMiB);
  progress.setIteration(1);
  progress.setMsSinceProgress(500);
  progress.setMaxDowntimeMs(300);
  progress.setAutoConvergeThrottle(0);
  progress.setMemoryRemainingBytes(2 * kGiB);
  progress.setDiskRemainingBytes(5 * kGiB);
  progress.setBandwidthBytesPerSecond(110 * kMiB);
  return encode(message);
}

std::vector<Payload> planExtremes() {
  std::vector<Payload> out;
  {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::MigrationRequest>();
    setSampleRef(request.initVm(), {});
    request.setSourceNode("same");
    request.setTargetNode("same");
    request.setMemoryBytes(kMax64);
    request.setDiskBytesToCopy(kMax64);
    out.push_back({"plan with maximal sizes and source == target", encode(message)});
  }
  {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::MigrationRequest>();
    const auto& name = hostileNames()[7];
    setRef(request.initVm(), name, name, name);
    request.setSharedStorage(true);
    request.setDiskBytesToCopy(kMax64);
    out.push_back({"plan with hostile names, shared storage and disks to copy", encode(message)});
  }
  {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::MigrationRequest>();
    setSampleRef(request.initVm(), {});
    request.setMemoryBytes(kMax64);
    auto overrides = request.initOverrides();
    overrides.setBandwidthMiBps(kMax64);
    overrides.setMaxDowntimeMs(kMax64);
    overrides.setCompletionTimeoutPerGiBSeconds(kMax64);
    overrides.setProgressTimeoutSeconds(kMax64);
    overrides.setParallelConnections(0xffffffffu);
    overrides.setAllowPostCopy(schema::MigrationOverrides::Choice::YES);
    overrides.setAutoConverge(schema::MigrationOverrides::Choice::YES);
    out.push_back({"plan with maximal overrides (overflow bait)", encode(message)});
  }
  return out;
}

std::vector<Payload> progressExtremes() {
  std::vector<Payload> out;
  {
    capnp::MallocMessageBuilder message;
    auto progress = message.initRoot<schema::MigrationProgress>();
    auto plan = progress.initPlan();
    setSamplePlan(plan);
    plan.setCompletionTimeoutSeconds(kMax64);
    plan.setProgressTimeoutSeconds(kMax64);
    plan.setMaxDowntimeMs(kMax64);
    progress.setElapsedMs(kMax64);
    progress.setMsSinceProgress(kMax64);
    progress.setDataTotalBytes(1);
    progress.setDataProcessedBytes(kMax64);
    progress.setDataRemainingBytes(kMax64);
    progress.setIteration(kMax64);
    progress.setDirtyRateBytesPerSecond(kMax64);
    progress.setMaxDowntimeMs(kMax64);
    progress.setAutoConvergeThrottle(0xffffffffu);
    progress.setMemoryRemainingBytes(kMax64);
    progress.setDiskRemainingBytes(kMax64);
    progress.setBandwidthBytesPerSecond(kMax64);
    out.push_back({"progress with maximal values (overflow bait)", encode(message)});
  }
  {
    capnp::MallocMessageBuilder message;
    auto progress = message.initRoot<schema::MigrationProgress>();
    auto plan = progress.initPlan();
    setSamplePlan(plan);
    plan.setAllowPostCopy(true);
    plan.setMaxDowntimeMs(kMax64 / 2 + 1);  // doubling it overflows
    progress.setMaxDowntimeMs(kMax64 / 2 + 1);
    progress.setElapsedMs(1000);
    progress.setMsSinceProgress(kMax64);
    progress.setDataRemainingBytes(kMax64);
    progress.setDirtyRateBytesPerSecond(kMax64);
    progress.setBandwidthBytesPerSecond(1);
    progress.setAutoConvergeThrottle(100);
    progress.setIteration(2);
    out.push_back(
        {"progress stalled with a max downtime near 2^63 (overflow bait)", encode(message)});
  }
  {
    capnp::MallocMessageBuilder message;
    auto progress = message.initRoot<schema::MigrationProgress>();
    setSamplePlan(progress.initPlan());
    progress.setPostCopyActive(true);  // while the plan does not allow it
    out.push_back({"progress in post-copy the plan did not allow", encode(message)});
  }
  return out;
}

// --- hand-made messages ---------------------------------------------------------

uint64_t structPointer(int32_t offsetWords, uint16_t dataWords, uint16_t pointers) {
  return static_cast<uint64_t>(static_cast<uint32_t>(offsetWords) * 4u) |
         (static_cast<uint64_t>(dataWords) << 32) | (static_cast<uint64_t>(pointers) << 48);
}

uint64_t listPointer(int32_t offsetWords, unsigned elementSize, uint32_t count) {
  return static_cast<uint64_t>(static_cast<uint32_t>(offsetWords) * 4u | 1u) |
         (static_cast<uint64_t>((count << 3) | elementSize) << 32);
}

uint64_t farPointer(uint32_t segment, uint32_t offsetWords) {
  return static_cast<uint64_t>((offsetWords << 3) | 2u) | (static_cast<uint64_t>(segment) << 32);
}

void putLittleEndian(std::vector<uint8_t>& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

// A message from a segment table and segment words, exactly as given.
Bytes rawMessage(const std::vector<uint32_t>& table, const std::vector<uint64_t>& words) {
  std::vector<uint8_t> out;
  for (uint32_t t : table) putLittleEndian(out, t, 4);
  if (out.size() % 8 != 0) putLittleEndian(out, 0, 4);
  for (uint64_t w : words) putLittleEndian(out, w, 8);
  return Bytes::of(out.data(), out.size());
}

// One segment holding `words`.
Bytes singleSegment(const std::vector<uint64_t>& words) {
  return rawMessage({0, static_cast<uint32_t>(words.size())}, words);
}

std::vector<uint8_t> randomBytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng() >> 56);
  return out;
}

}  // namespace

std::vector<MethodSpec> methodsOf(int32_t kind) {
  std::vector<MethodSpec> out;
  switch (kind) {
    case VMHOST_KIND_SCHEDULER: {
      auto m = method<schema::ScheduleRequest, schema::ScheduleResult>(
          VMHOST_METHOD_SCHEDULER_SCHEDULE, "SCHEDULE");
      m.sample = scheduleSample;
      m.extremes = scheduleExtremes;
      out.push_back(std::move(m));
      break;
    }
    case VMHOST_KIND_STORAGE: {
      auto prepare = method<schema::VolumeRequest, schema::VolumeAttachment>(
          VMHOST_METHOD_STORAGE_PREPARE, "PREPARE");
      prepare.sample = prepareSample;
      prepare.extremes = prepareExtremes;
      out.push_back(std::move(prepare));
      auto release = method<schema::VolumeRelease, schema::VolumeReleased>(
          VMHOST_METHOD_STORAGE_RELEASE, "RELEASE");
      release.sample = releaseSample;
      release.extremes = releaseExtremes;
      out.push_back(std::move(release));
      break;
    }
    case VMHOST_KIND_NETWORK: {
      auto attach = method<schema::InterfaceRequest, schema::InterfaceAttachment>(
          VMHOST_METHOD_NETWORK_ATTACH, "ATTACH");
      attach.sample = attachSample;
      attach.extremes = attachExtremes;
      out.push_back(std::move(attach));
      auto detach = method<schema::InterfaceRelease, schema::InterfaceReleased>(
          VMHOST_METHOD_NETWORK_DETACH, "DETACH");
      detach.sample = detachSample;
      detach.extremes = detachExtremes;
      out.push_back(std::move(detach));
      break;
    }
    case VMHOST_KIND_MIGRATION: {
      auto plan = method<schema::MigrationRequest, schema::MigrationPlan>(
          VMHOST_METHOD_MIGRATION_PLAN, "PLAN");
      plan.sample = planSample;
      plan.extremes = planExtremes;
      out.push_back(std::move(plan));
      auto progress = method<schema::MigrationProgress, schema::MigrationDecision>(
          VMHOST_METHOD_MIGRATION_PROGRESS, "PROGRESS");
      progress.sample = progressSample;
      progress.extremes = progressExtremes;
      out.push_back(std::move(progress));
      break;
    }
    default:
      break;
  }
  return out;
}

Bytes splitIntoSegments(const Bytes& request, capnp::StructSchema type) {
  auto words = kj::heapArray<capnp::word>(request.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), request.data(), request.size());
  capnp::FlatArrayMessageReader reader(words.asPtr());
  capnp::MallocMessageBuilder message(1, capnp::AllocationStrategy::FIXED_SIZE);
  message.setRoot(reader.getRoot<capnp::DynamicStruct>(type));
  return encode(message);
}

std::vector<Payload> malformedPayloads(const MethodSpec& m) {
  std::vector<Payload> out;
  Bytes sample = m.sample({});
  out.push_back({"empty request (NULL, 0)", Bytes()});
  out.push_back({"empty request (non-NULL, 0)", Bytes::of(sample.data(), 0)});
  out.push_back({"7 bytes", Bytes::of(sample.data(), 7)});
  const uint8_t garbage[8] = {0xde, 0xad, 0xbe, 0xef, 0xfe, 0xed, 0xfa, 0xce};
  out.push_back({"8 bytes of garbage", Bytes::of(garbage, sizeof(garbage))});
  out.push_back({"the sample request plus one byte", [&] {
                   std::vector<uint8_t> b(sample.data(), sample.data() + sample.size());
                   b.push_back(0);
                   return Bytes::of(b.data(), b.size());
                 }()});
  out.push_back(
      {"the sample request missing its last word", Bytes::of(sample.data(), sample.size() - 8)});
  out.push_back(
      {"a segment table claiming a 32 GiB first segment", rawMessage({0, 0xfffffff0u}, {0})});
  out.push_back(
      {"a segment table claiming 4 segments of 16 GiB",
       rawMessage({3, 1, 0x7fffffffu, 0x7fffffffu, 0x7fffffffu}, {structPointer(0, 0, 0)})});
  out.push_back(
      {"a segment table whose sizes overflow 32 bits", rawMessage({1, 0xffffffffu, 2}, {0, 0, 0})});
  out.push_back({"a segment table claiming 2^31 segments", rawMessage({0x7fffffffu, 1}, {0})});
  out.push_back({"a root pointer far out of bounds", singleSegment({structPointer(100000, 1, 1)})});
  out.push_back({"a far pointer to a missing segment", singleSegment({farPointer(7, 0)})});
  out.push_back({"a list pointer claiming 2^29 words of data",
                 singleSegment({structPointer(0, 0, 1), listPointer(0, 5, (1u << 29) - 1)})});
  // root -> struct whose only pointer points to itself: infinite depth.
  out.push_back({"a cyclic struct pointer",
                 singleSegment({structPointer(0, 0, 1), structPointer(-1, 0, 1)})});
  {
    std::vector<uint64_t> chain(10000, structPointer(0, 0, 1));
    chain.push_back(0);
    out.push_back({"structs nested 10000 deep", singleSegment(chain)});
  }
  std::mt19937_64 rng(kSeed ^ m.id);
  for (size_t n : {size_t{8}, size_t{16}, size_t{64}, size_t{256}, size_t{4096}}) {
    auto bytes = randomBytes(rng, n);
    out.push_back({std::to_string(n) + " random bytes", Bytes::of(bytes.data(), bytes.size())});
  }
  for (size_t n : {size_t{1}, size_t{3}, size_t{8}, size_t{64}}) {
    // A plausible single-segment table followed by random words.
    auto bytes = randomBytes(rng, n * 8);
    std::vector<uint64_t> words(n);
    std::memcpy(words.data(), bytes.data(), bytes.size());
    out.push_back(
        {"a valid segment table and " + std::to_string(n) + " random words", singleSegment(words)});
  }
  return out;
}

std::vector<Payload> hostilePayloads(const MethodSpec& m) {
  std::vector<Payload> out = malformedPayloads(m);
  Bytes sample = m.sample({});
  // A list of 2^29-1 void elements (zero bytes on the wire) where the first
  // pointer field is: a reader that does not charge elements to its
  // traversal limit walks 512 M of them.
  out.push_back({"a void list of 2^29-1 elements (amplification)",
                 singleSegment({structPointer(0, 0, 1), listPointer(0, 0, (1u << 29) - 1)})});
  out.push_back({"the sample request, misaligned by 1", Bytes::of(sample.span(), 1)});
  out.push_back({"the sample request, misaligned by 4", Bytes::of(sample.span(), 4)});
  for (size_t words = 1; words < sample.size() / 8; ++words) {
    out.push_back({"the sample request truncated to " + std::to_string(words) + " words",
                   Bytes::of(sample.data(), words * 8)});
  }
  {
    capnp::MallocMessageBuilder message;
    message.initRoot<capnp::DynamicStruct>(m.request);
    out.push_back(
        {"an empty " + std::string(m.request.getShortDisplayName().cStr()), encode(message)});
  }
  {
    // Every pointer of the root pointing at a 3-byte list with no NUL: a text
    // without terminator, a list where a struct belongs, bytes for a struct list.
    auto proto = m.request.getProto().getStruct();
    uint16_t dataWords = proto.getDataWordCount(), pointers = proto.getPointerCount();
    std::vector<uint64_t> words{structPointer(0, dataWords, pointers)};
    for (uint16_t i = 0; i < dataWords; ++i) words.push_back(0);
    const size_t firstPointer = words.size();
    for (uint16_t i = 0; i < pointers; ++i) words.push_back(0);
    for (uint16_t i = 0; i < pointers; ++i) {
      size_t at = firstPointer + i;
      words[at] = listPointer(static_cast<int32_t>(words.size() - at - 1), 2, 3);
      words.push_back(0x636261);  // "abc", no NUL
    }
    out.push_back({"pointers of the wrong kind (texts without NUL, lists for structs)",
                   singleSegment(words)});
  }
  for (const auto& kind :
       {VMHOST_KIND_SCHEDULER, VMHOST_KIND_STORAGE, VMHOST_KIND_NETWORK, VMHOST_KIND_MIGRATION}) {
    for (const auto& other : methodsOf(kind)) {
      if (other.request == m.request) continue;
      out.push_back(
          {"a " + std::string(other.request.getShortDisplayName().cStr()) + " (wrong type)",
           other.sample({})});
    }
  }
  out.push_back({"the sample request split into one segment per object",
                 splitIntoSegments(sample, m.request)});
  for (auto& extreme : m.extremes()) out.push_back(std::move(extreme));
  // Mutations of the sample: a few bytes flipped, anywhere.
  std::mt19937_64 rng(kSeed + m.id);
  for (int i = 0; i < 300; ++i) {
    std::vector<uint8_t> bytes(sample.data(), sample.data() + sample.size());
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      bytes[rng() % bytes.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
    }
    out.push_back({"the sample request with bytes flipped (mutation #" + std::to_string(i) + ")",
                   Bytes::of(bytes.data(), bytes.size())});
  }
  return out;
}

}  // namespace vmhost::plugincheck
