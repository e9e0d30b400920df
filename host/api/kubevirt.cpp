#include "api/kubevirt.h"

#include <limits>

namespace vmhost::api {

namespace {

constexpr const char* kExtensionFields[] = {"runStrategy", "evictionStrategy", "boot", "disks",
                                            "volumes"};

struct MemoryUnit {
  const char* libvirt;  // libvirt's unit name
  const char* suffix;   // the Kubernetes quantity suffix with the same factor
};

// libvirt's memory units (formatdomain.html#memory-allocation); KiB is the default.
constexpr MemoryUnit kMemoryUnits[] = {
    {"b", ""},     {"bytes", ""}, {"KB", "k"},   {"k", "Ki"},   {"KiB", "Ki"},
    {"MB", "M"},   {"M", "Mi"},   {"MiB", "Mi"}, {"GB", "G"},   {"G", "Gi"},
    {"GiB", "Gi"}, {"TB", "T"},   {"T", "Ti"},   {"TiB", "Ti"},
};

std::vector<std::string> unitNames() {
  std::vector<std::string> out;
  for (const auto& u : kMemoryUnits) out.push_back(u.libvirt);
  return out;
}

// Reads the first element of an array of objects (graphics and video are
// lists in the old kind; vmhost supports one of each).
const Json* firstOf(Decoder& d, const Json& obj, std::string_view key, const std::string& path) {
  auto it = obj.find(std::string(key));
  if (it == obj.end() || !d.array(*it, childPath(path, key)) || it->empty()) return nullptr;
  if (it->size() > 1) {
    d.errors.push_back(FieldError{FieldErrorType::kTooMany, indexPath(childPath(path, key), 1), "",
                                  "at most one is supported"});
  }
  return &(*it)[0];
}

void decodeDomain(Decoder& d, const Json& dom, const std::string& path, VirtualMachineSpec& s) {
  if (!d.object(dom, path, {"type", "memory", "os", "devices", "cpu"})) return;
  std::string type;
  if (d.str(dom, "type", path, type) && type != "qemu" && type != "kvm") {
    d.errors.push_back(notSupported(childPath(path, "type"), Json(type), {"qemu", "kvm"}));
  }
  if (auto it = dom.find("cpu"); it != dom.end()) {
    std::string p = childPath(path, "cpu");
    if (d.object(*it, p, {"cores"})) d.integer(*it, "cores", p, s.cpu.cores);
  }
  if (auto it = dom.find("memory"); it != dom.end() && !it->is_null()) {
    std::string p = childPath(path, "memory");
    if (d.object(*it, p, {"unit", "value"})) {
      std::string unit = "KiB";
      d.str(*it, "unit", p, unit);
      int64_t value = 0;
      bool haveValue = d.integer(*it, "value", p, value);
      const MemoryUnit* u = nullptr;
      for (const auto& m : kMemoryUnits) {
        if (unit == m.libvirt) u = &m;
      }
      if (!u) {
        d.errors.push_back(notSupported(childPath(p, "unit"), Json(unit), unitNames()));
      } else if (!haveValue) {
        d.errors.push_back(required(childPath(p, "value")));
      } else if (value <= 0) {
        d.errors.push_back(
            invalid(childPath(p, "value"), Json(value), "must be greater than zero"));
      } else {
        auto q = parseQuantity(std::to_string(value) + u->suffix);
        if (!q) {
          d.errors.push_back(invalid(childPath(p, "value"), Json(value), q.error().message));
        } else {
          s.memory = q.value();
        }
      }
    }
  } else {
    d.errors.push_back(required(childPath(path, "memory")));
  }
  if (auto it = dom.find("os"); it != dom.end()) {
    std::string p = childPath(path, "os");
    if (d.object(*it, p, {"type"})) {
      if (auto t = it->find("type"); t != it->end()) {
        std::string tp = childPath(p, "type");
        if (d.object(*t, tp, {"os", "arch", "machine"})) {
          std::string os;
          if (d.str(*t, "os", tp, os) && os != "hvm") {
            d.errors.push_back(notSupported(childPath(tp, "os"), Json(os), {"hvm"}));
          }
          std::string ignored;
          d.str(*t, "arch", tp, ignored);
          d.str(*t, "machine", tp, ignored);
        }
      }
    }
  }
  auto devIt = dom.find("devices");
  if (devIt == dom.end()) return;
  std::string dp = childPath(path, "devices");
  if (!d.object(*devIt, dp, {"interfaces", "video", "graphics"})) return;
  const Json& dev = *devIt;
  if (auto it = dev.find("interfaces");
      it != dev.end() && d.array(*it, childPath(dp, "interfaces"))) {
    for (size_t i = 0; i < it->size(); ++i) {
      std::string ip = indexPath(childPath(dp, "interfaces"), i);
      const Json& e = (*it)[i];
      if (!d.object(e, ip, {"type", "source", "model", "mac", "name"})) continue;
      Interface iface;
      iface.name = "net" + std::to_string(i);
      d.str(e, "name", ip, iface.name);
      std::string type;
      d.str(e, "type", ip, type);
      std::string sourceNetwork, sourceBridge;
      if (auto src = e.find("source"); src != e.end()) {
        std::string sp = childPath(ip, "source");
        if (d.object(*src, sp, {"network", "bridge"})) {
          d.str(*src, "network", sp, sourceNetwork);
          d.str(*src, "bridge", sp, sourceBridge);
        }
      }
      if (type == "network") {
        if (sourceNetwork.empty()) d.errors.push_back(required(childPath(ip, "source.network")));
        iface.network = sourceNetwork;
      } else if (type == "bridge") {
        if (sourceBridge.empty()) d.errors.push_back(required(childPath(ip, "source.bridge")));
        iface.bridge = sourceBridge;
      } else if (type == "user") {
        iface.user = true;
      } else if (type.empty()) {
        d.errors.push_back(required(childPath(ip, "type")));
      } else {
        d.errors.push_back(
            notSupported(childPath(ip, "type"), Json(type), {"network", "bridge", "user"}));
      }
      if (auto m = e.find("model"); m != e.end()) {
        std::string mp = childPath(ip, "model");
        if (d.object(*m, mp, {"type"})) d.str(*m, "type", mp, iface.model);
      }
      if (auto m = e.find("mac"); m != e.end()) {
        std::string mp = childPath(ip, "mac");
        if (d.object(*m, mp, {"address"})) d.str(*m, "address", mp, iface.macAddress);
      }
      s.interfaces.push_back(std::move(iface));
    }
  }
  if (const Json* v = firstOf(d, dev, "video", dp)) {
    std::string vp = indexPath(childPath(dp, "video"), 0);
    if (d.object(*v, vp, {"model"})) {
      Video video;
      if (auto m = v->find("model"); m != v->end()) {
        std::string mp = childPath(vp, "model");
        if (d.object(*m, mp, {"type", "heads", "vram"})) {
          d.str(*m, "type", mp, video.model);
          int64_t heads = 0;
          if (d.integer(*m, "heads", mp, heads)) video.heads = heads;
          int64_t vram = 0;
          d.integer(*m, "vram", mp, vram);
        }
      }
      s.video = video;
    }
  }
  if (const Json* g = firstOf(d, dev, "graphics", dp)) {
    std::string gp = indexPath(childPath(dp, "graphics"), 0);
    // autoPort, defaultMode and listen are libvirt display settings vmhost
    // always chooses itself; they are accepted and kept in the original spec.
    if (d.object(*g, gp, {"type", "autoPort", "defaultMode", "listen", "port"})) {
      Graphics graphics;
      d.str(*g, "type", gp, graphics.type);
      s.graphics = graphics;
    }
  }
}

// The vmhost.io/v1 fields carried at the same place in the old kind's spec:
// decoded by the vmhost.io decoder, so errors and defaults are the same.
void decodeExtensions(Decoder& d, const Json& spec, VirtualMachineSpec& out) {
  Json ext = Json::object();
  for (const char* k : kExtensionFields) {
    if (spec.contains(k)) ext[k] = spec[k];
  }
  if (ext.empty()) return;
  ext["memory"] = "1Mi";  // required by the decoder; not copied
  auto sub = decodeVirtualMachine(Json{{"spec", ext}}, d.mode());
  for (auto& e : sub.errors) d.errors.push_back(std::move(e));
  for (auto& w : sub.warnings) d.warnings.push_back(std::move(w));
  out.runStrategy = sub.value.spec.runStrategy;
  out.evictionStrategy = sub.value.spec.evictionStrategy;
  out.boot = sub.value.spec.boot;
  out.disks = sub.value.spec.disks;
  out.volumes = sub.value.spec.volumes;
}

std::string renamePath(const std::string& field) {
  static const std::pair<const char*, const char*> kRenames[] = {
      {"spec.memory", "spec.domain.memory"},
      {"spec.cpu", "spec.domain.cpu"},
      {"spec.interfaces", "spec.domain.devices.interfaces"},
      {"spec.graphics", "spec.domain.devices.graphics[0]"},
      {"spec.video.model", "spec.domain.devices.video[0].model.type"},
      {"spec.video.heads", "spec.domain.devices.video[0].model.heads"},
  };
  for (const auto& [from, to] : kRenames) {
    std::string f(from);
    if (field.rfind(f, 0) == 0 &&
        (field.size() == f.size() || field[f.size()] == '.' || field[f.size()] == '[')) {
      return std::string(to) + field.substr(f.size());
    }
  }
  return field;
}

Json kubevirtSpecFrom(const VirtualMachineSpec& s) {
  Json spec = Json::object();
  if (!s.nodeSelector.empty()) spec["nodeSelector"] = s.nodeSelector;
  Json dom = Json::object();
  Json devices = Json::object();
  if (!s.interfaces.empty()) {
    Json arr = Json::array();
    for (const auto& n : s.interfaces) {
      Json e = Json::object();
      if (!n.network.empty()) {
        e["source"] = Json{{"network", n.network}};
        e["type"] = "network";
      } else if (!n.bridge.empty()) {
        e["source"] = Json{{"bridge", n.bridge}};
        e["type"] = "bridge";
      } else {
        e["type"] = "user";
      }
      e["name"] = n.name;
      if (!n.model.empty()) e["model"] = Json{{"type", n.model}};
      if (!n.macAddress.empty()) e["mac"] = Json{{"address", n.macAddress}};
      arr.push_back(std::move(e));
    }
    devices["interfaces"] = std::move(arr);
  }
  if (s.video) {
    Json model = Json{{"type", s.video->model}};
    if (s.video->heads) model["heads"] = *s.video->heads;
    devices["video"] = Json::array({Json{{"model", std::move(model)}}});
  }
  if (s.graphics) devices["graphics"] = Json::array({Json{{"type", s.graphics->type}}});
  if (!devices.empty()) dom["devices"] = std::move(devices);
  // The largest binary unit that divides the size exactly, as libvirt would print it.
  int64_t bytes = s.memory.value();
  const char* unit = "b";
  int64_t value = bytes;
  for (auto [name, factor] :
       {std::pair{"GiB", int64_t{1} << 30}, std::pair{"MiB", int64_t{1} << 20},
        std::pair{"KiB", int64_t{1} << 10}}) {
    if (bytes != 0 && bytes % factor == 0) {
      unit = name;
      value = bytes / factor;
      break;
    }
  }
  dom["memory"] = Json{{"unit", unit}, {"value", value}};
  if (s.cpu.cores != 1) dom["cpu"] = Json{{"cores", s.cpu.cores}};
  dom["os"] = Json{{"type", Json{{"os", "hvm"}}}};
  dom["type"] = "qemu";
  spec["domain"] = std::move(dom);
  Json vmhostSpec = encodeVirtualMachineSpec(s);
  for (const char* k : kExtensionFields) {
    if (!vmhostSpec.contains(k)) continue;
    if (std::string(k) == "runStrategy" && vmhostSpec[k] == "Always") continue;
    if (std::string(k) == "evictionStrategy" && vmhostSpec[k] == "None") continue;
    spec[k] = vmhostSpec[k];
  }
  return spec;
}

}  // namespace

Decoded<VirtualMachine> decodeKubevirtVm(const Json& j, FieldValidation mode) {
  Decoded<VirtualMachine> out;
  Decoder d(mode);
  VirtualMachine& vm = out.value;
  if (d.object(j, "", {"apiVersion", "kind", "metadata", "spec", "status"})) {
    if (auto it = j.find("metadata"); it != j.end()) decodeMeta(d, *it, "metadata", vm.metadata);
    auto specIt = j.find("spec");
    if (specIt != j.end() && d.object(*specIt, "spec",
                                      {"nodeSelector", "domain", "runStrategy", "evictionStrategy",
                                       "boot", "disks", "volumes"})) {
      d.stringMap(*specIt, "nodeSelector", "spec", vm.spec.nodeSelector);
      decodeExtensions(d, *specIt, vm.spec);
      if (auto dom = specIt->find("domain"); dom != specIt->end() && !dom->is_null()) {
        decodeDomain(d, *dom, "spec.domain", vm.spec);
      } else {
        d.errors.push_back(required("spec.domain"));
      }
      vm.metadata.annotations[kKubevirtSpecAnnotation] = specIt->dump();
    } else if (specIt == j.end() || specIt->is_null()) {
      d.errors.push_back(required("spec"));
    }
    if (auto it = j.find("status");
        it != j.end() &&
        d.object(*it, "status", {"phase", "nodeName", "conditions", "interfaces"})) {
      d.str(*it, "phase", "status", vm.status.phase);
      d.str(*it, "nodeName", "status", vm.status.nodeName);
      if (auto c = it->find("conditions"); c != it->end()) {
        decodeConditions(d, *c, "status.conditions", vm.status.conditions);
      }
    }
  }
  out.errors = std::move(d.errors);
  out.warnings = std::move(d.warnings);
  return out;
}

FieldErrors validateKubevirtVm(const VirtualMachine& vm) {
  FieldErrors errs = validateVirtualMachine(vm);
  for (auto& e : errs) e.field = renamePath(e.field);
  return errs;
}

Json encodeKubevirtVm(const VirtualMachine& vm) {
  Json j = Json::object();
  j["apiVersion"] = kKubevirtApiVersion;
  j["kind"] = kKubevirtKind;
  ObjectMeta meta = vm.metadata;
  Json spec;
  if (auto it = meta.annotations.find(kKubevirtSpecAnnotation); it != meta.annotations.end()) {
    // The original spec, if it still describes this VM: converting it must
    // give the VirtualMachine's current spec (nobody changed it through
    // vmhost.io since).
    Json original = Json::parse(it->second, nullptr, false);
    if (!original.is_discarded()) {
      Decoded<VirtualMachine> again =
          decodeKubevirtVm(Json{{"spec", original}}, FieldValidation::kIgnore);
      if (again.ok() &&
          encodeVirtualMachineSpec(again.value.spec) == encodeVirtualMachineSpec(vm.spec)) {
        spec = std::move(original);
      }
    }
    meta.annotations.erase(it);
  }
  if (spec.is_null()) spec = kubevirtSpecFrom(vm.spec);
  j["metadata"] = encodeMeta(meta);
  j["spec"] = std::move(spec);
  Json status = Json::object();
  if (!vm.status.phase.empty()) status["phase"] = vm.status.phase;
  if (!vm.status.nodeName.empty()) status["nodeName"] = vm.status.nodeName;
  if (!vm.status.conditions.empty()) status["conditions"] = encodeConditions(vm.status.conditions);
  j["status"] = std::move(status);
  return j;
}

}  // namespace vmhost::api
