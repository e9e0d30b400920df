#include "api/types.h"

#include "api/migration.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace vmhost::api {

namespace {

// Reads obj[key] as a quantity; a malformed one is an Invalid error quoting
// Kubernetes' regular expression.
bool quantity(Decoder& d, const Json& obj, std::string_view key, const std::string& path,
              std::optional<Quantity>& out) {
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return false;
  std::string p = childPath(path, key);
  std::string text;
  if (it->is_string()) {
    text = it->get<std::string>();
  } else if (it->is_number_integer() || it->is_number_unsigned()) {
    // Kubernetes accepts a bare JSON number for a quantity (int-or-string).
    text = it->dump();
  } else {
    d.typeError(p, *it, "string");
    return false;
  }
  auto q = parseQuantity(text);
  if (!q) {
    d.errors.push_back(invalid(p, Json(text), q.error().message));
    return false;
  }
  out = std::move(q.value());
  return true;
}

void nameRule(const std::string& path, const std::string& name, bool label, FieldErrors& errs) {
  if (name.empty()) {
    errs.push_back(required(path));
    return;
  }
  for (auto& m : label ? isDns1123Label(name) : isDns1123Subdomain(name)) {
    errs.push_back(invalid(path, Json(name), m));
  }
}

bool isHex(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit((unsigned char)c); });
}

// 02:00:00:aa:bb:cc style unicast MAC.
bool validMac(const std::string& mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    if (i % 3 == 2) {
      if (mac[i] != ':') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(mac[i]))) {
      return false;
    }
  }
  int first = std::stoi(mac.substr(0, 2), nullptr, 16);
  return (first & 1) == 0;  // multicast addresses cannot be a NIC's
}

void decodeImage(Decoder& d, const Json& j, const std::string& path, ImageSource& out) {
  if (!d.object(j, path, {"path", "url", "sha256"})) return;
  d.str(j, "path", path, out.path);
  d.str(j, "url", path, out.url);
  d.str(j, "sha256", path, out.sha256);
}

void validateImage(const ImageSource& img, const std::string& path, FieldErrors& errs) {
  if (img.path.empty() == img.url.empty()) {
    errs.push_back(invalid(path, Json(), "exactly one of path and url must be set"));
  }
  if (!img.path.empty() && img.path[0] != '/') {
    errs.push_back(invalid(childPath(path, "path"), Json(img.path), "must be an absolute path"));
  }
  if (!img.url.empty() && img.url.rfind("http://", 0) != 0 && img.url.rfind("https://", 0) != 0 &&
      img.url.rfind("file://", 0) != 0) {
    errs.push_back(notSupported(childPath(path, "url"), Json(img.url.substr(0, img.url.find(':'))),
                                {"http", "https", "file"}));
  }
  if (!img.sha256.empty() && (img.sha256.size() != 64 || !isHex(img.sha256))) {
    errs.push_back(
        invalid(childPath(path, "sha256"), Json(img.sha256), "must be 64 hexadecimal digits"));
  }
}

Json encodeImage(const ImageSource& img) {
  Json j = Json::object();
  if (!img.path.empty()) j["path"] = img.path;
  if (!img.url.empty()) j["url"] = img.url;
  if (!img.sha256.empty()) j["sha256"] = img.sha256;
  return j;
}

void decodeResources(Decoder& d, const Json& obj, std::string_view key, const std::string& path,
                     ResourceAmounts& out) {
  auto it = obj.find(std::string(key));
  if (it == obj.end()) return;
  std::string p = childPath(path, key);
  if (!d.object(*it, p, {"cpu", "memory"})) return;
  quantity(d, *it, "cpu", p, out.cpu);
  quantity(d, *it, "memory", p, out.memory);
}

Json encodeResources(const ResourceAmounts& r) {
  Json j = Json::object();
  if (r.cpu) j["cpu"] = r.cpu->text;
  if (r.memory) j["memory"] = r.memory->text;
  return j;
}

void validateConditions(const std::vector<Condition>& conds, const std::string& path,
                        FieldErrors& errs) {
  std::set<std::string> seen;
  for (size_t i = 0; i < conds.size(); ++i) {
    std::string p = indexPath(path, i);
    if (conds[i].type.empty()) errs.push_back(required(childPath(p, "type")));
    if (!seen.insert(conds[i].type).second) {
      errs.push_back(duplicate(childPath(p, "type"), Json(conds[i].type)));
    }
    if (conds[i].status != "True" && conds[i].status != "False" && conds[i].status != "Unknown") {
      errs.push_back(notSupported(childPath(p, "status"), Json(conds[i].status),
                                  {"True", "False", "Unknown"}));
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- metadata

void decodeMeta(Decoder& d, const Json& j, const std::string& path, ObjectMeta& out) {
  if (!d.object(j, path,
                {"name", "generateName", "namespace", "uid", "resourceVersion", "generation",
                 "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
                 "annotations", "finalizers", "ownerReferences", "managedFields", "selfLink"})) {
    return;
  }
  d.str(j, "name", path, out.name);
  d.str(j, "generateName", path, out.generateName);
  d.str(j, "namespace", path, out.ns);
  d.str(j, "uid", path, out.uid);
  d.str(j, "resourceVersion", path, out.resourceVersion);
  d.integer(j, "generation", path, out.generation);
  d.str(j, "creationTimestamp", path, out.creationTimestamp);
  std::string ts;
  if (d.str(j, "deletionTimestamp", path, ts)) out.deletionTimestamp = ts;
  d.stringMap(j, "labels", path, out.labels);
  d.stringMap(j, "annotations", path, out.annotations);
  d.stringList(j, "finalizers", path, out.finalizers);
  auto owners = j.find("ownerReferences");
  if (owners != j.end() && !owners->is_null()) {
    if (d.array(*owners, childPath(path, "ownerReferences"))) out.ownerReferences = *owners;
  }
}

FieldErrors validateMeta(const ObjectMeta& m, bool namespaced) {
  FieldErrors errs;
  if (m.name.empty() && m.generateName.empty()) {
    errs.push_back(required("metadata.name", "name or generateName is required"));
  } else if (!m.name.empty()) {
    nameRule("metadata.name", m.name, false, errs);
  }
  if (namespaced && !m.ns.empty()) nameRule("metadata.namespace", m.ns, true, errs);
  validateLabels(m.labels, "metadata.labels", errs);
  validateAnnotations(m.annotations, "metadata.annotations", errs);
  for (size_t i = 0; i < m.finalizers.size(); ++i) {
    for (auto& msg : isQualifiedName(m.finalizers[i])) {
      errs.push_back(invalid(indexPath("metadata.finalizers", i), Json(m.finalizers[i]), msg));
    }
  }
  return errs;
}

Json encodeMeta(const ObjectMeta& m) {
  Json j = Json::object();
  if (!m.name.empty()) j["name"] = m.name;
  if (!m.generateName.empty()) j["generateName"] = m.generateName;
  if (!m.ns.empty()) j["namespace"] = m.ns;
  if (!m.uid.empty()) j["uid"] = m.uid;
  if (!m.resourceVersion.empty()) j["resourceVersion"] = m.resourceVersion;
  if (m.generation != 0) j["generation"] = m.generation;
  if (!m.creationTimestamp.empty()) j["creationTimestamp"] = m.creationTimestamp;
  if (m.deletionTimestamp) {
    j["deletionTimestamp"] = *m.deletionTimestamp;
    j["deletionGracePeriodSeconds"] = 0;
  }
  if (!m.labels.empty()) j["labels"] = m.labels;
  if (!m.annotations.empty()) j["annotations"] = m.annotations;
  if (!m.finalizers.empty()) j["finalizers"] = m.finalizers;
  if (!m.ownerReferences.is_null()) j["ownerReferences"] = m.ownerReferences;
  return j;
}

// ---------------------------------------------------------------- conditions

void decodeConditions(Decoder& d, const Json& j, const std::string& path,
                      std::vector<Condition>& out) {
  if (!d.array(j, path)) return;
  for (size_t i = 0; i < j.size(); ++i) {
    std::string p = indexPath(path, i);
    const Json& c = j[i];
    if (!d.object(c, p,
                  {"type", "status", "reason", "message", "lastTransitionTime", "lastProbeTime",
                   "lastHeartbeatTime"})) {
      continue;
    }
    Condition cond;
    d.str(c, "type", p, cond.type);
    d.str(c, "status", p, cond.status);
    d.str(c, "reason", p, cond.reason);
    d.str(c, "message", p, cond.message);
    d.str(c, "lastTransitionTime", p, cond.lastTransitionTime);
    out.push_back(std::move(cond));
  }
}

Json encodeConditions(const std::vector<Condition>& conditions) {
  Json arr = Json::array();
  for (const auto& c : conditions) {
    Json j = Json::object();
    j["type"] = c.type;
    j["status"] = c.status;
    if (!c.reason.empty()) j["reason"] = c.reason;
    if (!c.message.empty()) j["message"] = c.message;
    if (!c.lastTransitionTime.empty()) j["lastTransitionTime"] = c.lastTransitionTime;
    arr.push_back(std::move(j));
  }
  return arr;
}

// ---------------------------------------------------------------- VirtualMachine

namespace {

void decodeSpec(Decoder& d, const Json& j, const std::string& path, VirtualMachineSpec& s) {
  if (!d.object(j, path,
                {"runStrategy", "cpu", "memory", "nodeSelector", "evictionStrategy", "boot",
                 "disks", "volumes", "interfaces", "graphics", "video"})) {
    return;
  }
  d.str(j, "runStrategy", path, s.runStrategy);
  d.str(j, "evictionStrategy", path, s.evictionStrategy);
  if (auto it = j.find("cpu"); it != j.end()) {
    std::string p = childPath(path, "cpu");
    if (d.object(*it, p, {"cores"})) d.integer(*it, "cores", p, s.cpu.cores);
  }
  std::optional<Quantity> mem;
  if (quantity(d, j, "memory", path, mem)) s.memory = *mem;
  d.stringMap(j, "nodeSelector", path, s.nodeSelector);
  if (auto it = j.find("boot"); it != j.end()) {
    std::string p = childPath(path, "boot");
    if (d.object(*it, p, {"kernel", "initrd", "cmdline"})) {
      BootSpec b;
      d.str(*it, "kernel", p, b.kernel);
      d.str(*it, "initrd", p, b.initrd);
      d.str(*it, "cmdline", p, b.cmdline);
      s.boot = std::move(b);
    }
  }
  if (auto it = j.find("disks"); it != j.end()) {
    std::string p = childPath(path, "disks");
    if (d.array(*it, p)) {
      for (size_t i = 0; i < it->size(); ++i) {
        std::string ip = indexPath(p, i);
        const Json& e = (*it)[i];
        if (!d.object(e, ip, {"name", "bus", "bootOrder", "readOnly"})) continue;
        Disk disk;
        d.str(e, "name", ip, disk.name);
        d.str(e, "bus", ip, disk.bus);
        int64_t order = 0;
        if (d.integer(e, "bootOrder", ip, order)) disk.bootOrder = order;
        d.boolean(e, "readOnly", ip, disk.readOnly);
        s.disks.push_back(std::move(disk));
      }
    }
  }
  if (auto it = j.find("volumes"); it != j.end()) {
    std::string p = childPath(path, "volumes");
    if (d.array(*it, p)) {
      for (size_t i = 0; i < it->size(); ++i) {
        std::string ip = indexPath(p, i);
        const Json& e = (*it)[i];
        if (!d.object(e, ip, {"name", "empty", "hostPath", "ephemeral", "persistent"})) continue;
        Volume v;
        d.str(e, "name", ip, v.name);
        if (auto s2 = e.find("empty"); s2 != e.end() && !s2->is_null()) {
          std::string sp = childPath(ip, "empty");
          if (d.object(*s2, sp, {"size"})) {
            std::optional<Quantity> size;
            quantity(d, *s2, "size", sp, size);
            v.empty = EmptyVolume{size.value_or(Quantity{})};
          }
        }
        if (auto s2 = e.find("hostPath"); s2 != e.end() && !s2->is_null()) {
          std::string sp = childPath(ip, "hostPath");
          if (d.object(*s2, sp, {"path"})) {
            HostPathVolume h;
            d.str(*s2, "path", sp, h.path);
            v.hostPath = h;
          }
        }
        if (auto s2 = e.find("ephemeral"); s2 != e.end() && !s2->is_null()) {
          std::string sp = childPath(ip, "ephemeral");
          if (d.object(*s2, sp, {"image"})) {
            EphemeralVolume ev;
            if (auto im = s2->find("image"); im != s2->end()) {
              decodeImage(d, *im, childPath(sp, "image"), ev.image);
            }
            v.ephemeral = ev;
          }
        }
        if (auto s2 = e.find("persistent"); s2 != e.end() && !s2->is_null()) {
          std::string sp = childPath(ip, "persistent");
          if (d.object(*s2, sp, {"claimName", "size", "image", "reclaimPolicy"})) {
            PersistentVolume pv;
            d.str(*s2, "claimName", sp, pv.claimName);
            quantity(d, *s2, "size", sp, pv.size);
            if (auto im = s2->find("image"); im != s2->end() && !im->is_null()) {
              ImageSource img;
              decodeImage(d, *im, childPath(sp, "image"), img);
              pv.image = img;
            }
            d.str(*s2, "reclaimPolicy", sp, pv.reclaimPolicy);
            v.persistent = pv;
          }
        }
        s.volumes.push_back(std::move(v));
      }
    }
  }
  if (auto it = j.find("interfaces"); it != j.end()) {
    std::string p = childPath(path, "interfaces");
    if (d.array(*it, p)) {
      for (size_t i = 0; i < it->size(); ++i) {
        std::string ip = indexPath(p, i);
        const Json& e = (*it)[i];
        if (!d.object(e, ip, {"name", "network", "bridge", "user", "model", "macAddress"})) {
          continue;
        }
        Interface iface;
        d.str(e, "name", ip, iface.name);
        d.str(e, "network", ip, iface.network);
        d.str(e, "bridge", ip, iface.bridge);
        if (auto u = e.find("user"); u != e.end() && !u->is_null()) {
          if (d.object(*u, childPath(ip, "user"), {})) iface.user = true;
        }
        d.str(e, "model", ip, iface.model);
        d.str(e, "macAddress", ip, iface.macAddress);
        s.interfaces.push_back(std::move(iface));
      }
    }
  }
  if (auto it = j.find("graphics"); it != j.end()) {
    std::string p = childPath(path, "graphics");
    if (d.object(*it, p, {"type"})) {
      Graphics g;
      d.str(*it, "type", p, g.type);
      s.graphics = g;
    }
  }
  if (auto it = j.find("video"); it != j.end()) {
    std::string p = childPath(path, "video");
    if (d.object(*it, p, {"model", "heads"})) {
      Video v;
      d.str(*it, "model", p, v.model);
      int64_t heads = 0;
      if (d.integer(*it, "heads", p, heads)) v.heads = heads;
      s.video = v;
    }
  }
}

void decodeStatus(Decoder& d, const Json& j, const std::string& path, VirtualMachineStatus& s) {
  if (!d.object(
          j, path,
          {"phase", "nodeName", "conditions", "interfaces", "observedGeneration", "migration"})) {
    return;
  }
  d.str(j, "phase", path, s.phase);
  d.str(j, "nodeName", path, s.nodeName);
  d.integer(j, "observedGeneration", path, s.observedGeneration);
  if (auto it = j.find("conditions"); it != j.end()) {
    decodeConditions(d, *it, childPath(path, "conditions"), s.conditions);
  }
  if (auto it = j.find("interfaces"); it != j.end()) {
    std::string p = childPath(path, "interfaces");
    if (d.array(*it, p)) {
      for (size_t i = 0; i < it->size(); ++i) {
        std::string ip = indexPath(p, i);
        if (!d.object((*it)[i], ip, {"name", "mac"})) continue;
        InterfaceStatus st;
        d.str((*it)[i], "name", ip, st.name);
        d.str((*it)[i], "mac", ip, st.mac);
        s.interfaces.push_back(std::move(st));
      }
    }
  }
  if (auto it = j.find("migration"); it != j.end() && !it->is_null()) {
    MigrationState m;
    decodeMigrationState(d, *it, childPath(path, "migration"), m);
    if (it->is_object()) s.migration = std::move(m);
  }
}

}  // namespace

Decoded<VirtualMachine> decodeVirtualMachine(const Json& j, FieldValidation mode) {
  return decodeEnvelope<VirtualMachine>(
      j, mode,
      [](Decoder& d, const Json& v, const std::string& path, VirtualMachineSpec& out) {
        decodeSpec(d, v, path, out);
      },
      [](Decoder& d, const Json& v, const std::string& path, VirtualMachineStatus& out) {
        decodeStatus(d, v, path, out);
      });
}

FieldErrors validateVirtualMachineSpec(const VirtualMachineSpec& s) {
  FieldErrors errs;
  if (!oneOf(s.runStrategy, kRunStrategies)) {
    errs.push_back(notSupported("spec.runStrategy", Json(s.runStrategy), values(kRunStrategies)));
  }
  if (!oneOf(s.evictionStrategy, kEvictionStrategies)) {
    errs.push_back(notSupported("spec.evictionStrategy", Json(s.evictionStrategy),
                                values(kEvictionStrategies)));
  }
  if (s.cpu.cores < 1 || s.cpu.cores > 512) {
    errs.push_back(invalid("spec.cpu.cores", Json(s.cpu.cores), "must be between 1 and 512"));
  }
  if (s.memory.text.empty()) {
    errs.push_back(required("spec.memory"));
  } else if (s.memory.milliValue <= 0) {
    errs.push_back(invalid("spec.memory", Json(s.memory.text), "must be greater than zero"));
  } else if (s.memory.value() < 1024 * 1024) {
    // Below 1 MiB no guest firmware or kernel starts; catches "128" meant as MiB.
    errs.push_back(invalid("spec.memory", Json(s.memory.text), "must be at least 1Mi"));
  }
  validateLabels(s.nodeSelector, "spec.nodeSelector", errs);
  if (s.boot) {
    const auto& b = *s.boot;
    if (b.kernel.empty()) {
      errs.push_back(required("spec.boot.kernel"));
    } else if (b.kernel[0] != '/') {
      errs.push_back(invalid("spec.boot.kernel", Json(b.kernel), "must be an absolute path"));
    }
    if (!b.initrd.empty() && b.initrd[0] != '/') {
      errs.push_back(invalid("spec.boot.initrd", Json(b.initrd), "must be an absolute path"));
    }
  }
  std::set<std::string> volumeNames;
  for (size_t i = 0; i < s.volumes.size(); ++i) {
    const Volume& v = s.volumes[i];
    std::string p = indexPath("spec.volumes", i);
    nameRule(childPath(p, "name"), v.name, true, errs);
    if (!v.name.empty() && !volumeNames.insert(v.name).second) {
      errs.push_back(duplicate(childPath(p, "name"), Json(v.name)));
    }
    int sources =
        (v.empty ? 1 : 0) + (v.hostPath ? 1 : 0) + (v.ephemeral ? 1 : 0) + (v.persistent ? 1 : 0);
    if (sources != 1) {
      errs.push_back(invalid(p, Json(v.name),
                             "exactly one of empty, hostPath, ephemeral and persistent must be "
                             "set"));
    }
    if (v.empty) {
      if (v.empty->size.text.empty()) {
        errs.push_back(required(childPath(p, "empty.size")));
      } else if (v.empty->size.milliValue <= 0) {
        errs.push_back(invalid(childPath(p, "empty.size"), Json(v.empty->size.text),
                               "must be greater than zero"));
      }
    }
    if (v.hostPath) {
      if (v.hostPath->path.empty()) {
        errs.push_back(required(childPath(p, "hostPath.path")));
      } else if (v.hostPath->path[0] != '/') {
        errs.push_back(invalid(childPath(p, "hostPath.path"), Json(v.hostPath->path),
                               "must be an absolute path"));
      }
    }
    if (v.ephemeral) validateImage(v.ephemeral->image, childPath(p, "ephemeral.image"), errs);
    if (v.persistent) {
      const auto& pv = *v.persistent;
      std::string pp = childPath(p, "persistent");
      nameRule(childPath(pp, "claimName"), pv.claimName, false, errs);
      if (pv.size && pv.size->milliValue <= 0) {
        errs.push_back(
            invalid(childPath(pp, "size"), Json(pv.size->text), "must be greater than zero"));
      }
      if (!pv.size && !pv.image) {
        errs.push_back(required(childPath(pp, "size"), "size or image is required"));
      }
      if (pv.image) validateImage(*pv.image, childPath(pp, "image"), errs);
      if (!oneOf(pv.reclaimPolicy, kReclaimPolicies)) {
        errs.push_back(notSupported(childPath(pp, "reclaimPolicy"), Json(pv.reclaimPolicy),
                                    values(kReclaimPolicies)));
      }
    }
  }
  std::set<std::string> diskNames;
  std::set<int64_t> bootOrders;
  for (size_t i = 0; i < s.disks.size(); ++i) {
    const Disk& d = s.disks[i];
    std::string p = indexPath("spec.disks", i);
    nameRule(childPath(p, "name"), d.name, true, errs);
    if (!d.name.empty() && !diskNames.insert(d.name).second) {
      errs.push_back(duplicate(childPath(p, "name"), Json(d.name)));
    } else if (!d.name.empty() && !volumeNames.count(d.name)) {
      errs.push_back(FieldError{FieldErrorType::kNotFound, childPath(p, "name"),
                                Json(d.name).dump(), "no volume of that name in spec.volumes"});
    }
    if (!oneOf(d.bus, kDiskBuses)) {
      errs.push_back(notSupported(childPath(p, "bus"), Json(d.bus), values(kDiskBuses)));
    }
    if (d.bootOrder) {
      if (*d.bootOrder < 1) {
        errs.push_back(
            invalid(childPath(p, "bootOrder"), Json(*d.bootOrder), "must be greater than zero"));
      } else if (!bootOrders.insert(*d.bootOrder).second) {
        errs.push_back(duplicate(childPath(p, "bootOrder"), Json(*d.bootOrder)));
      }
    }
  }
  std::set<std::string> ifaceNames;
  for (size_t i = 0; i < s.interfaces.size(); ++i) {
    const Interface& n = s.interfaces[i];
    std::string p = indexPath("spec.interfaces", i);
    nameRule(childPath(p, "name"), n.name, true, errs);
    if (!n.name.empty() && !ifaceNames.insert(n.name).second) {
      errs.push_back(duplicate(childPath(p, "name"), Json(n.name)));
    }
    int kinds = (n.network.empty() ? 0 : 1) + (n.bridge.empty() ? 0 : 1) + (n.user ? 1 : 0);
    if (kinds != 1) {
      errs.push_back(
          invalid(p, Json(n.name), "exactly one of network, bridge and user must be set"));
    }
    if (!n.model.empty() && !oneOf(n.model, kInterfaceModels)) {
      errs.push_back(notSupported(childPath(p, "model"), Json(n.model), values(kInterfaceModels)));
    }
    if (!n.macAddress.empty() && !validMac(n.macAddress)) {
      errs.push_back(invalid(childPath(p, "macAddress"), Json(n.macAddress),
                             "must be a unicast MAC address like 02:00:00:00:00:01"));
    }
  }
  if (s.graphics && !oneOf(s.graphics->type, kGraphicsTypes)) {
    errs.push_back(
        notSupported("spec.graphics.type", Json(s.graphics->type), values(kGraphicsTypes)));
  }
  if (s.video) {
    if (!oneOf(s.video->model, kVideoModels)) {
      errs.push_back(notSupported("spec.video.model", Json(s.video->model), values(kVideoModels)));
    }
    if (s.video->heads && (*s.video->heads < 1 || *s.video->heads > 4)) {
      errs.push_back(invalid("spec.video.heads", Json(*s.video->heads), "must be between 1 and 4"));
    }
  }
  return errs;
}

FieldErrors validateVirtualMachineStatus(const VirtualMachineStatus& s) {
  FieldErrors errs;
  if (!s.phase.empty() && !oneOf(s.phase, kPhases)) {
    errs.push_back(notSupported("status.phase", Json(s.phase), values(kPhases)));
  }
  if (!s.nodeName.empty()) {
    for (auto& m : isDns1123Subdomain(s.nodeName)) {
      errs.push_back(invalid("status.nodeName", Json(s.nodeName), m));
    }
  }
  validateConditions(s.conditions, "status.conditions", errs);
  if (s.migration) {
    for (auto& e : validateMigrationState(*s.migration, "status.migration")) {
      errs.push_back(std::move(e));
    }
  }
  return errs;
}

FieldErrors validateVirtualMachine(const VirtualMachine& vm) {
  FieldErrors errs = validateMeta(vm.metadata, true);
  for (auto& e : validateVirtualMachineSpec(vm.spec)) errs.push_back(std::move(e));
  for (auto& e : validateVirtualMachineStatus(vm.status)) errs.push_back(std::move(e));
  return errs;
}

Json encodeVirtualMachineSpec(const VirtualMachineSpec& s) {
  Json j = Json::object();
  j["runStrategy"] = s.runStrategy;
  j["cpu"] = Json{{"cores", s.cpu.cores}};
  j["memory"] = s.memory.text;
  if (!s.nodeSelector.empty()) j["nodeSelector"] = s.nodeSelector;
  j["evictionStrategy"] = s.evictionStrategy;
  if (s.boot) {
    Json b = Json::object();
    b["kernel"] = s.boot->kernel;
    if (!s.boot->initrd.empty()) b["initrd"] = s.boot->initrd;
    if (!s.boot->cmdline.empty()) b["cmdline"] = s.boot->cmdline;
    j["boot"] = std::move(b);
  }
  if (!s.disks.empty()) {
    Json arr = Json::array();
    for (const auto& d : s.disks) {
      Json e = Json::object();
      e["name"] = d.name;
      // Defaults inside list items are left out: kubectl apply's merge patch
      // replaces whole lists, so a filled-in default would make every
      // re-apply of an unchanged manifest a change.
      if (d.bus != "virtio") e["bus"] = d.bus;
      if (d.bootOrder) e["bootOrder"] = *d.bootOrder;
      if (d.readOnly) e["readOnly"] = true;
      arr.push_back(std::move(e));
    }
    j["disks"] = std::move(arr);
  }
  if (!s.volumes.empty()) {
    Json arr = Json::array();
    for (const auto& v : s.volumes) {
      Json e = Json::object();
      e["name"] = v.name;
      if (v.empty) e["empty"] = Json{{"size", v.empty->size.text}};
      if (v.hostPath) e["hostPath"] = Json{{"path", v.hostPath->path}};
      if (v.ephemeral) e["ephemeral"] = Json{{"image", encodeImage(v.ephemeral->image)}};
      if (v.persistent) {
        Json p = Json::object();
        p["claimName"] = v.persistent->claimName;
        if (v.persistent->size) p["size"] = v.persistent->size->text;
        if (v.persistent->image) p["image"] = encodeImage(*v.persistent->image);
        if (v.persistent->reclaimPolicy != "Delete")
          p["reclaimPolicy"] = v.persistent->reclaimPolicy;
        e["persistent"] = std::move(p);
      }
      arr.push_back(std::move(e));
    }
    j["volumes"] = std::move(arr);
  }
  if (!s.interfaces.empty()) {
    Json arr = Json::array();
    for (const auto& n : s.interfaces) {
      Json e = Json::object();
      e["name"] = n.name;
      if (!n.network.empty()) e["network"] = n.network;
      if (!n.bridge.empty()) e["bridge"] = n.bridge;
      if (n.user) e["user"] = Json::object();
      if (!n.model.empty()) e["model"] = n.model;
      if (!n.macAddress.empty()) e["macAddress"] = n.macAddress;
      arr.push_back(std::move(e));
    }
    j["interfaces"] = std::move(arr);
  }
  if (s.graphics) j["graphics"] = Json{{"type", s.graphics->type}};
  if (s.video) {
    Json v = Json::object();
    v["model"] = s.video->model;
    if (s.video->heads) v["heads"] = *s.video->heads;
    j["video"] = std::move(v);
  }
  return j;
}

Json encodeVirtualMachineStatus(const VirtualMachineStatus& s) {
  Json j = Json::object();
  if (!s.phase.empty()) j["phase"] = s.phase;
  if (!s.nodeName.empty()) j["nodeName"] = s.nodeName;
  if (!s.conditions.empty()) j["conditions"] = encodeConditions(s.conditions);
  if (!s.interfaces.empty()) {
    Json arr = Json::array();
    for (const auto& i : s.interfaces) arr.push_back(Json{{"name", i.name}, {"mac", i.mac}});
    j["interfaces"] = std::move(arr);
  }
  if (s.observedGeneration != 0) j["observedGeneration"] = s.observedGeneration;
  if (s.migration) j["migration"] = encodeMigrationState(*s.migration);
  return j;
}

Json encode(const VirtualMachine& vm) {
  Json j = Json::object();
  j["apiVersion"] = kApiVersion;
  j["kind"] = kVirtualMachineKind;
  j["metadata"] = encodeMeta(vm.metadata);
  j["spec"] = encodeVirtualMachineSpec(vm.spec);
  j["status"] = encodeVirtualMachineStatus(vm.status);
  return j;
}

// ---------------------------------------------------------------- Node

std::string Node::readiness() const {
  std::string r = "Unknown";
  for (const auto& c : status.conditions) {
    if (c.type == "Ready") r = c.status == "True" ? "Ready" : "NotReady";
  }
  if (spec.unschedulable) r += ",SchedulingDisabled";
  return r;
}

Decoded<Node> decodeNode(const Json& j, FieldValidation mode) {
  Decoded<Node> out;
  Decoder d(mode);
  if (d.object(j, "", {"apiVersion", "kind", "metadata", "spec", "status"})) {
    if (auto it = j.find("metadata"); it != j.end()) {
      decodeMeta(d, *it, "metadata", out.value.metadata);
    }
    if (auto it = j.find("spec"); it != j.end() && d.object(*it, "spec", {"unschedulable"})) {
      d.boolean(*it, "unschedulable", "spec", out.value.spec.unschedulable);
    }
    if (auto it = j.find("status");
        it != j.end() && d.object(*it, "status", {"capacity", "allocatable", "conditions"})) {
      decodeResources(d, *it, "capacity", "status", out.value.status.capacity);
      decodeResources(d, *it, "allocatable", "status", out.value.status.allocatable);
      if (auto c = it->find("conditions"); c != it->end()) {
        decodeConditions(d, *c, "status.conditions", out.value.status.conditions);
      }
    }
  }
  out.errors = std::move(d.errors);
  out.warnings = std::move(d.warnings);
  return out;
}

FieldErrors validateNode(const Node& node) {
  FieldErrors errs = validateMeta(node.metadata, false);
  if (!node.metadata.ns.empty()) {
    errs.push_back(forbidden("metadata.namespace", "not allowed on this type"));
  }
  for (const auto* r : {&node.status.capacity, &node.status.allocatable}) {
    std::string p = r == &node.status.capacity ? "status.capacity" : "status.allocatable";
    if (r->cpu && r->cpu->negative()) {
      errs.push_back(invalid(p + ".cpu", Json(r->cpu->text), "must be greater than or equal to 0"));
    }
    if (r->memory && r->memory->negative()) {
      errs.push_back(
          invalid(p + ".memory", Json(r->memory->text), "must be greater than or equal to 0"));
    }
  }
  validateConditions(node.status.conditions, "status.conditions", errs);
  return errs;
}

Json encode(const Node& node) {
  Json j = Json::object();
  j["apiVersion"] = kApiVersion;
  j["kind"] = kNodeKind;
  j["metadata"] = encodeMeta(node.metadata);
  Json spec = Json::object();
  if (node.spec.unschedulable) spec["unschedulable"] = true;
  j["spec"] = std::move(spec);
  Json status = Json::object();
  status["capacity"] = encodeResources(node.status.capacity);
  status["allocatable"] = encodeResources(node.status.allocatable);
  if (!node.status.conditions.empty())
    status["conditions"] = encodeConditions(node.status.conditions);
  j["status"] = std::move(status);
  return j;
}

void applyNodeDefaults(Node& node) {
  if (!node.metadata.name.empty()) node.metadata.labels[kHostnameLabel] = node.metadata.name;
}

}  // namespace vmhost::api
