#include "checks.h"

#include "abi.h"
#include "runner.h"
#include "samples.h"

#include <vmhost/loader/plugin_host.h>

#include <vmhost/schema/migration.capnp.h>
#include <vmhost/schema/network.capnp.h>
#include <vmhost/schema/scheduler.capnp.h>
#include <vmhost/schema/storage.capnp.h>

#include <cstddef>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>

namespace vmhost::plugincheck {
namespace {

namespace schema = vmhost::schema;

constexpr uint32_t kPoison32 = 0xdeadbeefu;
constexpr const char* kUnknownKey = "vmhostConformanceUnknownKey";

std::string toStd(kj::StringPtr s) { return std::string(s.cStr(), s.size()); }

// Collects the problems of a check and fails with the first few of them.
class Problems {
 public:
  void add(std::string problem) {
    ++count_;
    if (shown_.size() < 3) shown_.push_back(std::move(problem));
  }
  void failIfAny(const std::string& context = "") const {
    if (count_ == 0) return;
    std::string reason = context.empty() ? "" : context + ": ";
    if (count_ > 1) reason += std::to_string(count_) + " problems, first: ";
    for (size_t i = 0; i < shown_.size(); ++i) reason += (i > 0 ? "; " : "") + shown_[i];
    fail(reason);
  }

 private:
  size_t count_ = 0;
  std::vector<std::string> shown_;
};

std::vector<MethodSpec> methodsFor(const CheckContext& ctx) {
  auto methods = methodsOf(ctx.kind);
  require(!methods.empty(), "the kit knows no methods for plugin kind " + std::to_string(ctx.kind));
  return methods;
}

// --- negotiation ------------------------------------------------------------------

struct Offer {
  const vmhost_plugin_descriptor* descriptor;
  vmhost_negotiation n;
};

std::string range(uint32_t a, uint32_t b) {
  return "[" + std::to_string(a) + "," + std::to_string(b) + "]";
}

Offer offer(const Entry& entry, uint32_t min, uint32_t max) {
  Offer o{};
  o.n.struct_size = sizeof(vmhost_negotiation);
  o.n.host_abi_min = min;
  o.n.host_abi_max = max;
  o.n.plugin_abi_min = o.n.plugin_abi_max = o.n.abi_version = kPoison32;
  noteStep("negotiating with the host range " + range(min, max));
  o.descriptor = entry.call(&o.n);
  return o;
}

void requireRangeReported(const Offer& o, const std::string& what) {
  require(o.n.plugin_abi_min != kPoison32 && o.n.plugin_abi_max != kPoison32,
          what + ": plugin_abi_min/plugin_abi_max not filled in");
  require(o.n.plugin_abi_min >= 1 && o.n.plugin_abi_min <= o.n.plugin_abi_max,
          what + ": reported plugin range " + range(o.n.plugin_abi_min, o.n.plugin_abi_max) +
              " is not a range of versions (>= 1)");
}

// The plugin's own range, as it reports it to a host offering ours.
std::pair<uint32_t, uint32_t> pluginRange(const Entry& entry) {
  Offer o = offer(entry, VMHOST_ABI_VERSION_MIN, VMHOST_ABI_VERSION);
  requireRangeReported(o, "offered " + range(VMHOST_ABI_VERSION_MIN, VMHOST_ABI_VERSION));
  return {o.n.plugin_abi_min, o.n.plugin_abi_max};
}

void requireRefusal(const Offer& o, const std::string& what,
                    std::pair<uint32_t, uint32_t> expected) {
  require(o.descriptor == nullptr,
          what + ": the plugin accepted (returned a descriptor) instead of refusing");
  require(o.n.abi_version == 0, what + ": refused but set abi_version to " +
                                    std::to_string(o.n.abi_version) + " (must be 0)");
  requireRangeReported(o, what);
  require(o.n.plugin_abi_min == expected.first && o.n.plugin_abi_max == expected.second,
          what + ": reported range " + range(o.n.plugin_abi_min, o.n.plugin_abi_max) +
              " differs from the range it reported before " +
              range(expected.first, expected.second));
}

void requireAcceptance(const Offer& o, const std::string& what, uint32_t version) {
  require(o.descriptor != nullptr, what + ": the plugin refused (returned NULL)");
  require(o.n.abi_version == version, what + ": chose version " + std::to_string(o.n.abi_version) +
                                          ", expected " + std::to_string(version));
  require(o.descriptor->abi_version == version,
          what + ": descriptor->abi_version is " + std::to_string(o.descriptor->abi_version) +
              " but the negotiation chose " + std::to_string(version));
  requireRangeReported(o, what);
}

bool validName(const char* name) {
  // [a-z0-9-]{1,63}
  if (name == nullptr) return false;
  size_t n = 0;
  for (; name[n] != '\0' && n <= 63; ++n) {
    char ch = name[n];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) return false;
  }
  return n >= 1 && n <= 63;
}

void checkDescriptor(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  Offer o = offer(entry, VMHOST_ABI_VERSION_MIN, VMHOST_ABI_VERSION);
  if (o.descriptor == nullptr) {
    // Not our range: inspect the descriptor the plugin gives its own range.
    requireRangeReported(o, "offered " + range(VMHOST_ABI_VERSION_MIN, VMHOST_ABI_VERSION));
    o = offer(entry, o.n.plugin_abi_min, o.n.plugin_abi_max);
    require(o.descriptor != nullptr, "the plugin refuses even the range it reports supporting");
  }
  const vmhost_plugin_descriptor& d = *o.descriptor;
  require(d.struct_size >= sizeof(vmhost_plugin_descriptor),
          "struct_size " + std::to_string(d.struct_size) +
              " < sizeof(vmhost_plugin_descriptor) = " +
              std::to_string(sizeof(vmhost_plugin_descriptor)));
  Problems problems;
  if (d.abi_version != o.n.abi_version) {
    problems.add("abi_version " + std::to_string(d.abi_version) + " differs from the negotiated " +
                 std::to_string(o.n.abi_version));
  }
  if (d.create_fn == nullptr) problems.add("create_fn is NULL");
  if (d.destroy_fn == nullptr) problems.add("destroy_fn is NULL");
  if (d.invoke_fn == nullptr) problems.add("invoke_fn is NULL");
  if (d.release_fn == nullptr) problems.add("release_fn is NULL");
  if (d.kind < VMHOST_KIND_SCHEDULER || d.kind > VMHOST_KIND_MIGRATION) {
    problems.add("kind " + std::to_string(d.kind) + " is not a vmhost_plugin_kind");
  }
  if (!validName(d.name)) {
    problems.add(d.name == nullptr
                     ? std::string("name is NULL")
                     : "name '" + std::string(d.name) + "' does not match [a-z0-9-]{1,63}");
  }
  if (d.version == nullptr || *d.version == '\0') problems.add("version is NULL or empty");
  if (d.description == nullptr) {
    problems.add("description is NULL (use \"\")");
  } else if (std::strpbrk(d.description, "\r\n") != nullptr) {
    problems.add("description is more than one line");
  }
  if (d.capabilities >> 32 != 0) problems.add("capability bits 32-63 are reserved but set");
  if (d.reserved0 != 0)
    problems.add("reserved0 is " + std::to_string(d.reserved0) + " (must be 0)");
  problems.failIfAny();
}

void checkNegotiateLow(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  auto plugin = pluginRange(entry);
  Offer o = offer(entry, 1, 1);
  if (plugin.first <= 1) {
    requireAcceptance(o, "offered [1,1]", 1);
  } else {
    requireRefusal(o, "offered [1,1] (plugin minimum " + std::to_string(plugin.first) + ")",
                   plugin);
  }
}

void checkNegotiateHigh(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  auto plugin = pluginRange(entry);
  uint32_t top = plugin.second;
  requireAcceptance(offer(entry, top, top + 10), "offered " + range(top, top + 10), top);
  // The highest common version, not the lowest.
  if (plugin.first < top) {
    requireAcceptance(offer(entry, plugin.first, top + 10),
                      "offered " + range(plugin.first, top + 10), top);
  }
}

void checkNegotiateAbove(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  auto plugin = pluginRange(entry);
  uint32_t top = plugin.second;
  requireRefusal(offer(entry, top + 1, top + 5), "offered " + range(top + 1, top + 5), plugin);
}

void checkNegotiateBelow(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  auto plugin = pluginRange(entry);
  requireRefusal(offer(entry, 0, 0), "offered [0,0]", plugin);
}

void checkNegotiateInverted(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  auto plugin = pluginRange(entry);
  // Ranges whose ends straddle the plugin's range but contain nothing.
  requireRefusal(offer(entry, plugin.second, plugin.first - 1),
                 "offered the empty range " + range(plugin.second, plugin.first - 1), plugin);
  requireRefusal(offer(entry, plugin.second + 5, plugin.first),
                 "offered the empty range " + range(plugin.second + 5, plugin.first), plugin);
}

void checkNegotiateNull(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  noteStep("calling the entry point with NULL");
  require(entry.call(nullptr) == nullptr, "entry(NULL) returned a descriptor (must return NULL)");
}

void checkNegotiateStructSize(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  auto plugin = pluginRange(entry);
  constexpr size_t kSlack = 32;
  alignas(vmhost_negotiation) unsigned char buffer[sizeof(vmhost_negotiation) + kSlack];

  // An older host whose struct ends before the plugin's outputs: the plugin
  // cannot answer, so it refuses, and writes nothing past struct_size.
  const size_t shortSize = offsetof(vmhost_negotiation, plugin_abi_min);
  std::memset(buffer, 0xa5, sizeof(buffer));
  auto* n = reinterpret_cast<vmhost_negotiation*>(buffer);
  n->struct_size = static_cast<uint32_t>(shortSize);
  n->host_abi_min = VMHOST_ABI_VERSION_MIN;
  n->host_abi_max = VMHOST_ABI_VERSION;
  noteStep("negotiating with a " + std::to_string(shortSize) + "-byte struct");
  require(entry.call(n) == nullptr, "accepted a negotiation struct of " +
                                        std::to_string(shortSize) +
                                        " bytes, too short to answer in");
  for (size_t i = shortSize; i < sizeof(buffer); ++i) {
    require(buffer[i] == 0xa5, "wrote past struct_size (" + std::to_string(shortSize) +
                                   ") of a short negotiation struct, at byte " + std::to_string(i));
  }

  // A newer host with a larger struct: the plugin negotiates as usual and
  // leaves the fields it does not know alone.
  std::memset(buffer, 0xa5, sizeof(buffer));
  n->struct_size = static_cast<uint32_t>(sizeof(buffer));
  n->host_abi_min = VMHOST_ABI_VERSION_MIN;
  n->host_abi_max = plugin.second + 1;
  n->plugin_abi_min = n->plugin_abi_max = n->abi_version = kPoison32;
  noteStep("negotiating with a " + std::to_string(sizeof(buffer)) + "-byte struct");
  const vmhost_plugin_descriptor* d = entry.call(n);
  require(d != nullptr, "refused a negotiation struct larger than its own (struct_size " +
                            std::to_string(sizeof(buffer)) + "): newer hosts append fields");
  require(n->abi_version == plugin.second, "with a larger negotiation struct, chose version " +
                                               std::to_string(n->abi_version) + " instead of " +
                                               std::to_string(plugin.second));
  for (size_t i = sizeof(vmhost_negotiation); i < sizeof(buffer); ++i) {
    require(buffer[i] == 0xa5,
            "wrote past the end of the negotiation struct it knows, at byte " + std::to_string(i));
  }
}

void checkNegotiateRepeat(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  auto plugin = pluginRange(entry);
  Offer first = offer(entry, VMHOST_ABI_VERSION_MIN, VMHOST_ABI_VERSION);
  require(first.descriptor != nullptr,
          "refused the host's range " + range(VMHOST_ABI_VERSION_MIN, VMHOST_ABI_VERSION));
  (void)offer(entry, plugin.second + 1, plugin.second + 5);  // a refusal in between
  Offer second = offer(entry, VMHOST_ABI_VERSION_MIN, VMHOST_ABI_VERSION);
  require(second.descriptor == first.descriptor,
          "a second call returned a different descriptor pointer (the descriptor must be static)");
  require(second.n.abi_version == first.n.abi_version &&
              second.descriptor->abi_version == first.n.abi_version,
          "a second call negotiated a different version");
}

// --- instances ----------------------------------------------------------------------

void checkCreateDestroy(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  const auto& d = entry.negotiate();
  noteStep("creating and destroying an instance");
  { Instance one(d, ctx.config); }
  {
    noteStep("two instances at once");
    Instance a(d, ctx.config);
    Instance b(d, ctx.config);
    require(a.handle() != b.handle(), "two live instances have the same handle");
  }
  noteStep("creating an instance after destroying others");
  { Instance again(d, ctx.config); }
  noteStep("destroy_fn(NULL)");
  callDestroy(d, nullptr);
}

std::string quoted(const std::string& config) {
  return config.size() > 80 ? "'" + config.substr(0, 77) + "...'" : "'" + config + "'";
}

void checkCreateBadConfig(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  const auto& d = entry.negotiate();
  for (const std::string& config : {std::string("{not json"), withUnknownKey(ctx.config)}) {
    noteStep("create with config " + quoted(config));
    Created c = rawCreate(d, config);
    if (c.rc == VMHOST_OK) {
      if (c.instance != nullptr) callDestroy(d, c.instance);
      fail("create accepted the config " + quoted(config));
    }
    require(c.instance == nullptr,
            "create with config " + quoted(config) + " failed but set *out (it must stay NULL)");
    std::string problem = errorProblem(c.rc, c.err, false);
    require(problem.empty(), "create with config " + quoted(config) + " " + problem);
  }
}

// --- invoke ----------------------------------------------------------------------

const std::set<std::string>& sampleNodes() {
  static const std::set<std::string> nodes = {"conformance-node-a", "conformance-node-b",
                                              "conformance-node-c"};
  return nodes;
}

bool validMac(const std::string& mac) {
  // [0-9a-f]{2}(:[0-9a-f]{2}){5}, with the multicast bit clear.
  auto hex = [](char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'); };
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    if (i % 3 == 2 ? mac[i] != ':' : !hex(mac[i])) return false;
  }
  int first = (mac[0] <= '9' ? mac[0] - '0' : mac[0] - 'a' + 10) * 16 +
              (mac[1] <= '9' ? mac[1] - '0' : mac[1] - 'a' + 10);
  return (first & 1) == 0;
}

// What a sample's response must say, beyond decoding.
void checkSampleReply(const MethodSpec& m, Reply& reply) {
  const std::string what = m.name + " of the sample request";
  if (m.request == capnp::Schema::from<schema::ScheduleRequest>()) {
    auto result = reply.as<schema::ScheduleResult>();
    if (result.isUnschedulable()) {
      fail(what + ": a 500m/512Mi VM is unschedulable on three roomy nodes: " +
           toStd(result.getUnschedulable().getMessage()));
    }
    std::string node = toStd(result.getScheduled().getNode());
    require(sampleNodes().count(node) == 1,
            what + ": placed the VM on '" + node + "', not one of the nodes sent");
    require(result.getScheduled().getFeasibleNodes() <= 3,
            what + ": feasibleNodes " + std::to_string(result.getScheduled().getFeasibleNodes()) +
                " > the 3 nodes sent");
  } else if (m.request == capnp::Schema::from<schema::VolumeRequest>()) {
    auto a = reply.as<schema::VolumeAttachment>();
    require(toStd(a.getVolumeName()) == "disk0",
            what + ": volumeName is '" + toStd(a.getVolumeName()) + "', not 'disk0'");
    require(toStd(a.getTargetDev()) == "vda", what + ": targetDev is '" + toStd(a.getTargetDev()) +
                                                  "' for virtio disk index 0 (expected 'vda')");
    require(a.getSourcePath().size() > 0, what + ": sourcePath is empty");
    require(a.getDiskType().size() > 0, what + ": diskType is empty");
    require(a.getFormat().size() > 0, what + ": format is empty");
  } else if (m.request == capnp::Schema::from<schema::InterfaceRequest>()) {
    auto a = reply.as<schema::InterfaceAttachment>();
    require(validMac(toStd(a.getMac())),
            what + ": mac '" + toStd(a.getMac()) + "' is not a lower-case unicast MAC address");
    require(toStd(a.getInterfaceName()) == "net0",
            what + ": interfaceName is '" + toStd(a.getInterfaceName()) + "'");
    require(toStd(a.getType()) == "network" && toStd(a.getSource()) == "default",
            what + ": an interface on network 'default' came back as type '" + toStd(a.getType()) +
                "', source '" + toStd(a.getSource()) + "'");
  }
}

void checkInvokeValid(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  const auto& d = entry.negotiate();
  auto methods = methodsFor(ctx);
  {
    Instance instance(d, ctx.config);
    for (const auto& m : methods) {
      Reply reply =
          instance.call(m.id, m.sample({}), m.response, m.name + " of the sample request");
      checkSampleReply(m, reply);
    }
  }
  {
    // The same requests, with every object in its own segment.
    Instance instance(d, ctx.config);
    for (const auto& m : methods) {
      (void)instance.call(m.id, splitIntoSegments(m.sample({}), m.request), m.response,
                          m.name + " of the sample request split into one segment per object");
    }
  }
  {
    // Through the host's own loader, which validates responses as vmhost does.
    auto library = PluginLibrary::open(ctx.path);
    require(library.ok(), "the host loader refuses the plugin: " +
                              (library.ok() ? std::string() : library.error().message));
    auto instance = PluginInstance::create(library.value(), ctx.config);
    require(instance.ok(), "the host loader cannot create an instance: " +
                               (instance.ok() ? std::string() : instance.error().message));
    for (const auto& m : methods) {
      std::string error = m.viaHost(*instance.value(), m.sample({}));
      require(error.empty(), m.name + " through the host loader: " + error);
    }
  }
}

void checkInvokeIdempotent(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  const auto& d = entry.negotiate();
  auto methods = methodsFor(ctx);
  Instance instance(d, ctx.config);
  auto call = [&](const MethodSpec& m, const Bytes& request, const std::string& what) {
    return instance.call(m.id, request, m.response, what);
  };
  switch (ctx.kind) {
    case VMHOST_KIND_SCHEDULER: {
      const auto& m = methods[0];
      Reply first = call(m, m.sample({}), "SCHEDULE (fullSync)");
      Reply second = call(m, m.sample({}), "SCHEDULE (the same fullSync again)");
      require(
          first.as<schema::ScheduleResult>().which() == second.as<schema::ScheduleResult>().which(),
          "the same fullSync request was scheduled once and unschedulable once");
      break;
    }
    case VMHOST_KIND_STORAGE: {
      const auto& prepare = methods[0];
      const auto& release = methods[1];
      Reply p1 = call(prepare, prepare.sample({}), "PREPARE");
      Reply p2 = call(prepare, prepare.sample({}), "PREPARE (repeated)");
      auto a1 = p1.as<schema::VolumeAttachment>();
      auto a2 = p2.as<schema::VolumeAttachment>();
      require(a1.getSourcePath() == a2.getSourcePath(),
              "a repeated PREPARE returned sourcePath '" + toStd(a2.getSourcePath()) +
                  "', the first '" + toStd(a1.getSourcePath()) + "'");
      require(a1.getTargetDev() == a2.getTargetDev(),
              "a repeated PREPARE returned targetDev '" + toStd(a2.getTargetDev()) +
                  "', the first '" + toStd(a1.getTargetDev()) + "'");
      require(a1.getDiskType() == a2.getDiskType() && a1.getFormat() == a2.getFormat(),
              "a repeated PREPARE returned a different diskType or format");
      require(!a2.getCreated(),
              "a repeated PREPARE says it created the volume (created must be false on a repeat)");
      Reply r1 = call(release, release.sample({}), "RELEASE with deleteData");
      Reply r2 = call(release, release.sample({}), "RELEASE with deleteData (repeated)");
      require(!r2.as<schema::VolumeReleased>().getDeleted(),
              "a repeated RELEASE says it deleted data again (deleted must be false when nothing "
              "was left)");
      break;
    }
    case VMHOST_KIND_NETWORK: {
      const auto& attach = methods[0];
      const auto& detach = methods[1];
      Reply first = call(attach, attach.sample({}), "ATTACH");
      Reply second = call(attach, attach.sample({}), "ATTACH (repeated)");
      auto a1 = first.as<schema::InterfaceAttachment>();
      auto a2 = second.as<schema::InterfaceAttachment>();
      require(a1.getMac() == a2.getMac(), "a repeated ATTACH returned mac " + toStd(a2.getMac()) +
                                              ", the first " + toStd(a1.getMac()));
      require(a1.getTargetDev() == a2.getTargetDev() && a1.getType() == a2.getType() &&
                  a1.getSource() == a2.getSource(),
              "a repeated ATTACH returned a different type, source or targetDev");
      // DETACH what the plugin attached, twice.
      capnp::MallocMessageBuilder message;
      {
        Bytes sample = attach.sample({});
        auto words = kj::heapArray<capnp::word>(sample.size() / sizeof(capnp::word));
        std::memcpy(words.begin(), sample.data(), sample.size());
        capnp::FlatArrayMessageReader reader(words.asPtr());
        auto request = reader.getRoot<schema::InterfaceRequest>();
        auto release = message.initRoot<schema::InterfaceRelease>();
        release.setVm(request.getVm());
        release.setNode(request.getNode());
        release.setInterface(request.getInterface());
        release.setAttachment(a1);
      }
      Bytes request = Bytes::of(capnp::messageToFlatArray(message).asPtr());
      (void)call(detach, request, "DETACH");
      (void)call(detach, request, "DETACH (repeated)");
      break;
    }
    case VMHOST_KIND_MIGRATION: {
      const auto& plan = methods[0];
      const auto& progress = methods[1];
      Reply first = call(plan, plan.sample({}), "PLAN");
      Reply second = call(plan, plan.sample({}), "PLAN (repeated)");
      require(
          first.bytes().size() == second.bytes().size() &&
              std::memcmp(first.bytes().data(), second.bytes().data(), first.bytes().size()) == 0,
          "the same PLAN request produced different responses");
      (void)call(progress, progress.sample({}), "PROGRESS");
      (void)call(progress, progress.sample({}), "PROGRESS (repeated)");
      break;
    }
    default:
      fail("unknown kind");
  }
}

// A failed call must zero *response; an OK one must be well-formed (and is
// released here).
std::string outcomeProblem(Instance& instance, const Invoked& r, capnp::StructSchema type) {
  if (r.rc == VMHOST_OK) {
    if (isPoisoned(r.response)) return "returned OK without filling *response";
    std::string problem = responseProblem(r.response, type);
    vmhost_buffer buffer = r.response;
    instance.release(buffer);
    return problem.empty() ? "" : "returned OK with a bad response: " + problem;
  }
  if (!isZeroed(r.response)) return "returned " + statusText(r.rc) + " without zeroing *response";
  return "";
}

void checkMalformedRequest(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  const auto& d = entry.negotiate();
  Instance instance(d, ctx.config);
  Problems problems;
  size_t total = 0;
  for (const auto& m : methodsFor(ctx)) {
    for (const auto& p : malformedPayloads(m)) {
      ++total;
      const std::string what = m.name + " with " + p.name;
      noteStep(what);
      Invoked r = instance.invoke(m.id, p.bytes);
      std::string problem = outcomeProblem(instance, r, m.response);
      if (classify(p.bytes, m.request) != Decoding::Structural) {
        // Not malformed after all (a random message may decode): anything
        // but a crash or a bad response will do.
        if (!problem.empty()) problems.add(what + ": " + problem);
        continue;
      }
      if (r.rc != VMHOST_ERR_INVALID_ARGUMENT) {
        problems.add(what + ": returned " + statusText(r.rc) +
                     (r.rc == VMHOST_OK ? "" : " (" + errorText(r.err) + ")") +
                     ", expected INVALID_ARGUMENT");
      } else if (!problem.empty()) {
        problems.add(what + ": " + problem);
      }
    }
    // A valid request at an odd address: decoding it (from a copy) or
    // refusing it are both fine.
    ++total;
    Bytes misaligned = Bytes::of(m.sample({}).span(), 1);
    noteStep(m.name + " with the sample request misaligned by one byte");
    Invoked r = instance.invoke(m.id, misaligned);
    std::string problem = outcomeProblem(instance, r, m.response);
    if (r.rc != VMHOST_OK && r.rc != VMHOST_ERR_INVALID_ARGUMENT) {
      problems.add(m.name + " with the sample request misaligned by one byte: returned " +
                   statusText(r.rc) + ", expected OK or INVALID_ARGUMENT");
    } else if (!problem.empty()) {
      problems.add(m.name + " with the sample request misaligned by one byte: " + problem);
    }
  }
  problems.failIfAny();
}

void checkUnknownMethod(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  const auto& d = entry.negotiate();
  Instance instance(d, ctx.config);
  auto methods = methodsFor(ctx);
  Bytes request = methods[0].sample({});
  Problems problems;
  for (uint32_t method : {0u, 999u, methods.back().id + 1, 0xffffffffu}) {
    noteStep("unknown method " + std::to_string(method));
    Invoked r = instance.invoke(method, request);
    std::string what = "method " + std::to_string(method);
    std::string problem = outcomeProblem(instance, r, methods[0].response);
    if (r.rc != VMHOST_ERR_UNIMPLEMENTED) {
      problems.add(what + ": returned " + statusText(r.rc) + ", expected UNIMPLEMENTED");
    } else if (!problem.empty()) {
      problems.add(what + ": " + problem);
    }
  }
  problems.failIfAny();
}

// --- hostile input ------------------------------------------------------------------

std::vector<std::pair<std::string, std::string>> hostileConfigs(const std::string& config) {
  std::vector<std::pair<std::string, std::string>> out = {
      {"malformed JSON", "{not json"},
      {"an unknown key", withUnknownKey(config)},
      {"an empty string", ""},
      {"JSON null", "null"},
      {"a JSON array", "[]"},
      {"a JSON string", "\"{}\""},
      {"a JSON number", "42"},
      {"an unterminated object", "{\"a\":"},
      {"a stray brace", "}"},
      {"an embedded NUL", std::string("{\0}", 3)},
      {"invalid UTF-8", "{\"\xff\xfe\": 1}"},
      {"arrays nested 100000 deep", std::string(100000, '[') + std::string(100000, ']')},
      {"objects nested 10000 deep",
       [] {
         std::string s;
         for (int i = 0; i < 10000; ++i) s += "{\"a\":";
         s += "1";
         for (int i = 0; i < 10000; ++i) s += "}";
         return s;
       }()},
      {"a 4 MiB string value",
       "{\"" + std::string(kUnknownKey) + "\": \"" + std::string(4u << 20, 'x') + "\"}"},
      {"1 MiB of whitespace around the config",
       std::string(1u << 20, ' ') + config + std::string(1u << 20, ' ')},
      {"a duplicated unknown key",
       "{\"" + std::string(kUnknownKey) + "\": 1, \"" + kUnknownKey + "\": 2}"},
  };
  return out;
}

void exerciseInstance(Instance& instance, const std::vector<MethodSpec>& methods,
                      Problems& problems, const std::string& context) {
  for (const auto& m : methods) {
    noteStep(m.name + " " + context);
    Invoked r = instance.invoke(m.id, m.sample({}));
    std::string problem = outcomeProblem(instance, r, m.response);
    if (!problem.empty()) problems.add(context + ", " + m.name + ": " + problem);
  }
}

void checkExceptionContainment(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  const auto& d = entry.negotiate();
  auto methods = methodsFor(ctx);
  Problems problems;

  // create: hostile configs, host callbacks and out pointer.
  for (const auto& [what, config] : hostileConfigs(ctx.config)) {
    noteStep("create with " + what);
    Created c = rawCreate(d, config);
    if (c.rc == VMHOST_OK) {
      if (c.instance == nullptr)
        problems.add("create with " + what + ": returned OK with *out NULL");
      callDestroy(d, c.instance);
    } else if (c.instance != nullptr) {
      problems.add("create with " + what + ": failed but set *out (it must stay NULL)");
    }
  }
  {
    noteStep("create with out == NULL");
    Created c = rawCreate(d, reinterpret_cast<const uint8_t*>(ctx.config.data()), ctx.config.size(),
                          kitCallbacks(), /*nullOut=*/true);
    if (c.rc == VMHOST_OK) problems.add("create with out == NULL returned OK");
  }
  const vmhost_host_callbacks noLog = {sizeof(vmhost_host_callbacks), nullptr, nullptr, nullptr};
  const vmhost_host_callbacks empty = {0, nullptr, nullptr, nullptr};
  // A host built before report_progress existed: its table ends after log.
  const vmhost_host_callbacks oldHost = {
      static_cast<uint32_t>(offsetof(vmhost_host_callbacks, report_progress)), nullptr,
      kitCallbacks()->log, nullptr};
  const std::pair<const char*, const vmhost_host_callbacks*> hosts[] = {
      {"host == NULL", nullptr},
      {"host->log == NULL", &noLog},
      {"host->struct_size == 0", &empty},
      {"a host table without report_progress (SDK 0.1)", &oldHost}};
  for (const auto& [what, host] : hosts) {
    noteStep(std::string("create with ") + what);
    Created c =
        rawCreate(d, reinterpret_cast<const uint8_t*>(ctx.config.data()), ctx.config.size(), host);
    if (c.rc != VMHOST_OK) continue;  // refusing is fine
    // Instance adopts nothing here: drive the raw handle, then destroy it.
    for (const auto& m : methods) {
      vmhost_buffer response = poisonedBuffer();
      vmhost_error err = poisonedError();
      Bytes request = m.sample({});
      noteStep(m.name + " on an instance created with " + what);
      int32_t rc = callInvoke(d, c.instance, m.id, request, &response, &err);
      if (rc == VMHOST_OK && !isPoisoned(response)) callRelease(d, c.instance, &response);
    }
    noteStep(std::string("destroying an instance created with ") + what);
    callDestroy(d, c.instance);
  }

  Instance instance(d, ctx.config);
  // invoke without an instance or without a response.
  for (const auto& m : methods) {
    Bytes request = m.sample({});
    vmhost_buffer response = poisonedBuffer();
    vmhost_error err = poisonedError();
    noteStep(m.name + " on a NULL instance");
    int32_t rc = callInvoke(d, nullptr, m.id, request, &response, &err);
    if (rc == VMHOST_OK) {
      problems.add(m.name + " on a NULL instance returned OK");
    } else if (!isZeroed(response)) {
      problems.add(m.name + " on a NULL instance did not zero *response");
    }
    err = poisonedError();
    noteStep(m.name + " with response == NULL");
    rc = callInvoke(d, instance.handle(), m.id, request, nullptr, &err);
    if (rc == VMHOST_OK) problems.add(m.name + " with response == NULL returned OK");
  }
  // release of zeroed buffers.
  vmhost_buffer zeroed{nullptr, 0, nullptr};
  noteStep("releasing a zeroed buffer");
  instance.release(zeroed);
  instance.release(zeroed);
  if (!isZeroed(zeroed)) problems.add("release_fn of a zeroed buffer left it non-zero");

  // invoke with everything the kit has.
  for (const auto& m : methods) {
    for (const auto& p : hostilePayloads(m)) {
      noteStep(m.name + " with " + p.name);
      Invoked r = instance.invoke(m.id, p.bytes);
      std::string problem = outcomeProblem(instance, r, m.response);
      if (!problem.empty()) problems.add(m.name + " with " + p.name + ": " + problem);
    }
  }
  // Still working after all that.
  exerciseInstance(instance, methods, problems, "after the hostile calls");
  problems.failIfAny();
}

// Every failing call the kit knows how to provoke, with its error struct.
template <typename Visit>
void forEachFailure(const CheckContext& ctx, const Visit& visit) {
  Entry entry = Entry::load(ctx.path);
  const auto& d = entry.negotiate();
  auto methods = methodsFor(ctx);
  for (const auto& [what, config] : hostileConfigs(ctx.config)) {
    noteStep("create with " + what);
    Created c = rawCreate(d, config);
    if (c.rc == VMHOST_OK) {
      callDestroy(d, c.instance);
    } else {
      visit("create with " + what, c.rc, c.err);
    }
  }
  Instance instance(d, ctx.config);
  auto invoke = [&](const std::string& what, uint32_t method, const Bytes& request) {
    noteStep(what);
    Invoked r = instance.invoke(method, request);
    if (r.rc == VMHOST_OK) {
      if (!isPoisoned(r.response)) instance.release(r.response);
    } else {
      visit(what, r.rc, r.err);
    }
  };
  for (const auto& m : methods) {
    Bytes request = m.sample({});
    vmhost_buffer response = poisonedBuffer();
    vmhost_error err = poisonedError();
    noteStep(m.name + " on a NULL instance");
    int32_t rc = callInvoke(d, nullptr, m.id, request, &response, &err);
    if (rc != VMHOST_OK) visit(m.name + " on a NULL instance", rc, err);
    err = poisonedError();
    noteStep(m.name + " with response == NULL");
    rc = callInvoke(d, instance.handle(), m.id, request, nullptr, &err);
    if (rc != VMHOST_OK) visit(m.name + " with response == NULL", rc, err);
    for (const auto& p : hostilePayloads(m)) invoke(m.name + " with " + p.name, m.id, p.bytes);
  }
  for (uint32_t method : {0u, 999u})
    invoke("method " + std::to_string(method), method, methods[0].sample({}));
}

void checkErrorStruct(const CheckContext& ctx) {
  Problems problems;
  forEachFailure(ctx, [&](const std::string& what, int32_t rc, const vmhost_error& err) {
    std::string problem = errorProblem(rc, err, false);
    if (!problem.empty()) problems.add(what + ": " + problem);
  });
  problems.failIfAny();
}

void checkErrorUtf8(const CheckContext& ctx) {
  Problems problems;
  forEachFailure(ctx, [&](const std::string& what, int32_t rc, const vmhost_error& err) {
    std::string problem = errorProblem(rc, err, true);
    if (!problem.empty()) problems.add(what + ": " + problem);
  });
  problems.failIfAny();
}

void checkStrictDecoding(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  const auto& d = entry.negotiate();
  Instance instance(d, ctx.config);
  Problems problems;
  for (const auto& m : methodsFor(ctx)) {
    for (const auto& p : hostilePayloads(m)) {
      if (classify(p.bytes, m.request) != Decoding::Fields) continue;
      noteStep(m.name + " with " + p.name);
      Invoked r = instance.invoke(m.id, p.bytes);
      (void)outcomeProblem(instance, r, m.response);
      if (r.rc != VMHOST_ERR_INVALID_ARGUMENT) {
        problems.add(m.name + " with " + p.name + ": returned " + statusText(r.rc) +
                     (r.rc == VMHOST_OK ? "" : " (" + errorText(r.err) + ")") +
                     ", expected INVALID_ARGUMENT");
      }
    }
  }
  problems.failIfAny("requests whose fields do not decode");
}

// --- threads ------------------------------------------------------------------------

void hammer(const vmhost_plugin_descriptor& d, const CheckContext& ctx,
            const std::vector<MethodSpec>& methods, Instance* shared, std::string& firstError) {
  constexpr int kThreads = 4, kRounds = 50;
  std::mutex mutex;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        std::unique_ptr<Instance> own;
        if (shared == nullptr) own = std::make_unique<Instance>(d, ctx.config);
        Instance& instance = shared != nullptr ? *shared : *own;
        SampleVm vm{"conformance-vm-" + std::to_string(t)};
        for (int round = 0; round < kRounds; ++round) {
          for (const auto& m : methods) (void)instance.call(m.id, m.sample(vm), m.response, m.name);
        }
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mutex);
        if (firstError.empty()) firstError = e.what();
      }
    });
  }
  for (auto& thread : threads) thread.join();
}

void checkThreadSafety(const CheckContext& ctx) {
  Entry entry = Entry::load(ctx.path);
  const auto& d = entry.negotiate();
  auto methods = methodsFor(ctx);
  std::string error;
  // Instances are independent: the host calls different ones concurrently.
  noteStep("4 threads, one instance each");
  hammer(d, ctx, methods, nullptr, error);
  require(error.empty(), "4 threads, one instance each: " + error);
  if ((d.capabilities & VMHOST_CAP_THREAD_SAFE) != 0) {
    noteStep("4 threads sharing one VMHOST_CAP_THREAD_SAFE instance");
    Instance shared(d, ctx.config);
    hammer(d, ctx, methods, &shared, error);
    require(error.empty(), "VMHOST_CAP_THREAD_SAFE, 4 threads on one instance: " + error);
  }
}

}  // namespace

std::string withUnknownKey(const std::string& config) {
  const std::string key = "\"" + std::string(kUnknownKey) + "\": 1";
  size_t open = config.find_first_not_of(" \t\r\n");
  if (open == std::string::npos || config[open] != '{') return "{" + key + "}";
  size_t next = config.find_first_not_of(" \t\r\n", open + 1);
  bool emptyObject = next != std::string::npos && config[next] == '}';
  return config.substr(0, open + 1) + key + (emptyObject ? "" : ", ") + config.substr(open + 1);
}

const std::vector<Check>& allChecks() {
  static const std::vector<Check> checks = {
      {"descriptor",
       "struct_size, functions, kind, name [a-z0-9-]{1,63}, version, description, reserved bits",
       false, false, checkDescriptor},
      {"negotiate-low",
       "host offers [1,1]: accepted with version 1 if the plugin supports it, else refused", false,
       false, checkNegotiateLow},
      {"negotiate-high", "host offers [max,max+10]: the plugin picks its highest version", false,
       false, checkNegotiateHigh},
      {"negotiate-above", "host offers [max+1,max+5]: refused with abi_version 0, range reported",
       false, false, checkNegotiateAbove},
      {"negotiate-below", "host offers [0,0]: refused, range reported", false, false,
       checkNegotiateBelow},
      {"negotiate-inverted", "host offers empty ranges (min > max): refused", false, false,
       checkNegotiateInverted},
      {"negotiate-null", "entry(NULL) returns NULL without crashing", false, false,
       checkNegotiateNull},
      {"negotiate-struct-size",
       "a too-short negotiation struct is refused, a longer one accepted; no writes past either",
       false, false, checkNegotiateStructSize},
      {"negotiate-repeat", "calling the entry again returns the same descriptor", false, false,
       checkNegotiateRepeat},
      {"create-destroy", "create/destroy, two live instances, create again, destroy(NULL)", true,
       false, checkCreateDestroy},
      {"create-bad-config",
       "malformed JSON and an unknown key are refused with a message, *out NULL", true, false,
       checkCreateBadConfig},
      {"invoke-valid",
       "each method's sample request succeeds with a well-formed response (raw, multi-segment, "
       "host loader)",
       true, false, checkInvokeValid},
      {"invoke-idempotent", "repeated requests give the same answers", true, false,
       checkInvokeIdempotent},
      {"malformed-request",
       "undecodable requests are refused with INVALID_ARGUMENT and a zeroed response", true, false,
       checkMalformedRequest},
      {"unknown-method", "methods 0, 999, last+1 and 2^32-1 return UNIMPLEMENTED", true, false,
       checkUnknownMethod},
      {"exception-containment",
       "hostile configs, callbacks, pointers and requests yield codes, never a crash", true, false,
       checkExceptionContainment},
      {"error-struct",
       "every failure sets err.code to the returned code and a NUL-terminated, non-empty message",
       true, false, checkErrorStruct},
      {"thread-safety",
       "instances used from 4 threads at once (one shared instance if VMHOST_CAP_THREAD_SAFE)",
       true, false, checkThreadSafety},
      {"error-utf8", "(strict) error messages are valid UTF-8, also when truncated", true, true,
       checkErrorUtf8},
      {"strict-decoding",
       "(strict) requests with fields that do not decode are refused with INVALID_ARGUMENT", true,
       true, checkStrictDecoding},
  };
  return checks;
}

}  // namespace vmhost::plugincheck
