// The VirtualMachineMigration kind and a VM's status.migration: decode
// (every error with its field path), validate, encode, the store codec and
// the status writer. applyMigrationReport() is migration_report.cpp's.
#include "api/migration.h"

#include <algorithm>
#include <limits>

namespace vmhost::api {

namespace {

std::string joinErrors(const FieldErrors& errs) {
  std::string out;
  for (const auto& e : errs) out += (out.empty() ? "" : "; ") + e.toString();
  return out;
}

// Reads obj[key] as a non-negative integer of at most `max` (a JSON number;
// 2.0 counts, 2.5 does not). Returns whether a value was read.
bool unsignedInt(Decoder& d, const Json& obj, std::string_view key, const std::string& path,
                 uint64_t& out, uint64_t max = std::numeric_limits<uint64_t>::max()) {
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return false;
  std::string p = childPath(path, key);
  uint64_t v = 0;
  // nlohmann counts unsigned numbers as integers too: check them first. (A
  // parsed non-negative number is unsigned; one built in C++ from an int is not.)
  if (it->is_number_unsigned()) {
    v = it->get<uint64_t>();
  } else if (it->is_number_integer()) {
    int64_t i = it->get<int64_t>();
    if (i < 0) {
      d.errors.push_back(invalid(p, *it, "must be greater than or equal to 0"));
      return false;
    }
    v = static_cast<uint64_t>(i);
  } else if (it->is_number_float()) {
    double f = it->get<double>();
    // Range first: converting an out-of-range double is undefined.
    if (f < 0 && f >= -9.2e18 && f == static_cast<double>(static_cast<int64_t>(f))) {
      d.errors.push_back(invalid(p, *it, "must be greater than or equal to 0"));
      return false;
    }
    if (!(f >= 0 && f < 1.8e19 && f == static_cast<double>(static_cast<uint64_t>(f)))) {
      d.typeError(p, *it, "integer");
      return false;
    }
    v = static_cast<uint64_t>(f);
  } else {
    d.typeError(p, *it, "integer");
    return false;
  }
  if (v > max) {
    d.errors.push_back(invalid(p, *it, "must be at most " + std::to_string(max)));
    return false;
  }
  out = v;
  return true;
}

void optionalBool(Decoder& d, const Json& obj, std::string_view key, const std::string& path,
                  std::optional<bool>& out) {
  bool b = false;
  if (d.boolean(obj, key, path, b)) out = b;
}

// ---- the pieces shared by the kind and the VM's record

void decodeParameters(Decoder& d, const Json& j, const std::string& path, MigrationParameters& p) {
  if (!d.object(
          j, path,
          {"bandwidthMiBps", "maxDowntimeMs", "completionTimeoutPerGiBSeconds",
           "progressTimeoutSeconds", "parallelConnections", "allowPostCopy", "autoConverge"})) {
    return;
  }
  unsignedInt(d, j, "bandwidthMiBps", path, p.bandwidthMiBps);
  unsignedInt(d, j, "maxDowntimeMs", path, p.maxDowntimeMs);
  unsignedInt(d, j, "completionTimeoutPerGiBSeconds", path, p.completionTimeoutPerGiBSeconds);
  unsignedInt(d, j, "progressTimeoutSeconds", path, p.progressTimeoutSeconds);
  uint64_t conns = 0;
  if (unsignedInt(d, j, "parallelConnections", path, conns, std::numeric_limits<uint32_t>::max())) {
    p.parallelConnections = static_cast<uint32_t>(conns);
  }
  optionalBool(d, j, "allowPostCopy", path, p.allowPostCopy);
  optionalBool(d, j, "autoConverge", path, p.autoConverge);
}

constexpr uint64_t kMaxDowntimeMs = 600000;  // ten minutes
constexpr uint64_t kMaxBandwidthMiBps = 1000000;
constexpr uint64_t kMaxTimeoutSeconds = 1000000;
constexpr uint32_t kMaxParallelConnections = 64;

void validateParameters(const MigrationParameters& p, const std::string& path, FieldErrors& errs) {
  auto atMost = [&](const char* field, uint64_t v, uint64_t max) {
    if (v > max) {
      errs.push_back(invalid(
          childPath(path, field), Json(v),
          "must be between 0 and " + std::to_string(max) + " (0: the migration plugin's value)"));
    }
  };
  atMost("bandwidthMiBps", p.bandwidthMiBps, kMaxBandwidthMiBps);
  atMost("maxDowntimeMs", p.maxDowntimeMs, kMaxDowntimeMs);
  atMost("completionTimeoutPerGiBSeconds", p.completionTimeoutPerGiBSeconds, kMaxTimeoutSeconds);
  atMost("progressTimeoutSeconds", p.progressTimeoutSeconds, kMaxTimeoutSeconds);
  atMost("parallelConnections", p.parallelConnections, kMaxParallelConnections);
}

// Zero values are the plugin's own: left out.
Json encodeParameters(const MigrationParameters& p) {
  Json j = Json::object();
  if (p.bandwidthMiBps != 0) j["bandwidthMiBps"] = p.bandwidthMiBps;
  if (p.maxDowntimeMs != 0) j["maxDowntimeMs"] = p.maxDowntimeMs;
  if (p.completionTimeoutPerGiBSeconds != 0) {
    j["completionTimeoutPerGiBSeconds"] = p.completionTimeoutPerGiBSeconds;
  }
  if (p.progressTimeoutSeconds != 0) j["progressTimeoutSeconds"] = p.progressTimeoutSeconds;
  if (p.parallelConnections != 0) j["parallelConnections"] = p.parallelConnections;
  if (p.allowPostCopy) j["allowPostCopy"] = *p.allowPostCopy;
  if (p.autoConverge) j["autoConverge"] = *p.autoConverge;
  return j;
}

void decodeProgress(Decoder& d, const Json& j, const std::string& path,
                    std::optional<MigrationProgress>& out) {
  if (!d.object(
          j, path,
          {"dataTotalBytes", "dataProcessedBytes", "dataRemainingBytes", "dirtyRateBytesPerSecond",
           "memoryIteration", "maxDowntimeMs", "elapsedMs", "postCopy", "lastDecision"})) {
    return;
  }
  MigrationProgress p;
  unsignedInt(d, j, "dataTotalBytes", path, p.dataTotalBytes);
  unsignedInt(d, j, "dataProcessedBytes", path, p.dataProcessedBytes);
  unsignedInt(d, j, "dataRemainingBytes", path, p.dataRemainingBytes);
  unsignedInt(d, j, "dirtyRateBytesPerSecond", path, p.dirtyRateBytesPerSecond);
  unsignedInt(d, j, "memoryIteration", path, p.memoryIteration);
  unsignedInt(d, j, "maxDowntimeMs", path, p.maxDowntimeMs);
  unsignedInt(d, j, "elapsedMs", path, p.elapsedMs);
  d.boolean(j, "postCopy", path, p.postCopy);
  d.str(j, "lastDecision", path, p.lastDecision);
  out = std::move(p);
}

// The figures are measurements (0 is one): always there when progress is.
Json encodeProgress(const MigrationProgress& p) {
  Json j = Json::object();
  j["dataTotalBytes"] = p.dataTotalBytes;
  j["dataProcessedBytes"] = p.dataProcessedBytes;
  j["dataRemainingBytes"] = p.dataRemainingBytes;
  j["dirtyRateBytesPerSecond"] = p.dirtyRateBytesPerSecond;
  j["memoryIteration"] = p.memoryIteration;
  j["maxDowntimeMs"] = p.maxDowntimeMs;
  j["elapsedMs"] = p.elapsedMs;
  if (p.postCopy) j["postCopy"] = true;
  if (!p.lastDecision.empty()) j["lastDecision"] = p.lastDecision;
  return j;
}

void decodeResult(Decoder& d, const Json& j, const std::string& path,
                  std::optional<MigrationResult>& out) {
  if (!d.object(j, path, {"totalMs", "downtimeMs", "bytesTransferred", "endedBy"})) return;
  MigrationResult r;
  unsignedInt(d, j, "totalMs", path, r.totalMs);
  unsignedInt(d, j, "downtimeMs", path, r.downtimeMs);
  unsignedInt(d, j, "bytesTransferred", path, r.bytesTransferred);
  d.str(j, "endedBy", path, r.endedBy);
  out = std::move(r);
}

Json encodeResult(const MigrationResult& r) {
  Json j = Json::object();
  j["totalMs"] = r.totalMs;
  j["downtimeMs"] = r.downtimeMs;
  j["bytesTransferred"] = r.bytesTransferred;
  if (!r.endedBy.empty()) j["endedBy"] = r.endedBy;
  return j;
}

void decodeTarget(Decoder& d, const Json& j, const std::string& path,
                  std::optional<MigrationTarget>& out) {
  if (!d.object(j, path, {"domainXml", "libvirtUri", "migrateUri", "tls", "copyDisks"})) return;
  MigrationTarget t;
  d.str(j, "domainXml", path, t.domainXml);
  d.str(j, "libvirtUri", path, t.libvirtUri);
  d.str(j, "migrateUri", path, t.migrateUri);
  d.boolean(j, "tls", path, t.tls);
  d.stringList(j, "copyDisks", path, t.copyDisks);
  out = std::move(t);
}

Json encodeTarget(const MigrationTarget& t) {
  Json j = Json::object();
  if (!t.domainXml.empty()) j["domainXml"] = t.domainXml;
  if (!t.libvirtUri.empty()) j["libvirtUri"] = t.libvirtUri;
  if (!t.migrateUri.empty()) j["migrateUri"] = t.migrateUri;
  if (t.tls) j["tls"] = true;
  if (!t.copyDisks.empty()) j["copyDisks"] = t.copyDisks;
  return j;
}

// A node name (as Node's metadata.name): a DNS-1123 subdomain. Empty is
// the caller's to judge.
void nodeNameRule(const std::string& path, const std::string& name, FieldErrors& errs) {
  if (name.empty()) return;
  for (auto& m : isDns1123Subdomain(name)) errs.push_back(invalid(path, Json(name), m));
}

// ---- the kind's spec and status

void decodeSpec(Decoder& d, const Json& j, const std::string& path,
                VirtualMachineMigrationSpec& s) {
  if (!d.object(j, path, {"vmName", "targetNode", "nodeSelector", "parameters"})) return;
  d.str(j, "vmName", path, s.vmName);
  d.str(j, "targetNode", path, s.targetNode);
  d.stringMap(j, "nodeSelector", path, s.nodeSelector);
  if (auto it = j.find("parameters"); it != j.end()) {
    decodeParameters(d, *it, childPath(path, "parameters"), s.parameters);
  }
}

void decodeStatus(Decoder& d, const Json& j, const std::string& path,
                  VirtualMachineMigrationStatus& s) {
  if (!d.object(j, path,
                {"phase", "reason", "message", "vmUid", "sourceNode", "targetNode",
                 "startTimestamp", "endTimestamp", "progress", "result"})) {
    return;
  }
  d.str(j, "phase", path, s.phase);
  d.str(j, "reason", path, s.reason);
  d.str(j, "message", path, s.message);
  d.str(j, "vmUid", path, s.vmUid);
  d.str(j, "sourceNode", path, s.sourceNode);
  d.str(j, "targetNode", path, s.targetNode);
  d.str(j, "startTimestamp", path, s.startTimestamp);
  d.str(j, "endTimestamp", path, s.endTimestamp);
  if (auto it = j.find("progress"); it != j.end()) {
    decodeProgress(d, *it, childPath(path, "progress"), s.progress);
  }
  if (auto it = j.find("result"); it != j.end()) {
    decodeResult(d, *it, childPath(path, "result"), s.result);
  }
}

FieldErrors validateSpec(const VirtualMachineMigrationSpec& s) {
  FieldErrors errs;
  if (s.vmName.empty()) {
    errs.push_back(required("spec.vmName", "the name of the VM to migrate"));
  } else {
    // VMs are named as metadata.name says: a DNS-1123 subdomain.
    for (auto& m : isDns1123Subdomain(s.vmName)) {
      errs.push_back(invalid("spec.vmName", Json(s.vmName), m));
    }
  }
  nodeNameRule("spec.targetNode", s.targetNode, errs);
  validateLabels(s.nodeSelector, "spec.nodeSelector", errs);
  validateParameters(s.parameters, "spec.parameters", errs);
  return errs;
}

FieldErrors validateStatus(const VirtualMachineMigrationStatus& s) {
  FieldErrors errs;
  if (!s.phase.empty() && !oneOf(s.phase, kMigrationPhases)) {
    errs.push_back(notSupported("status.phase", Json(s.phase), values(kMigrationPhases)));
  }
  nodeNameRule("status.sourceNode", s.sourceNode, errs);
  nodeNameRule("status.targetNode", s.targetNode, errs);
  return errs;
}

Json encodeSpec(const VirtualMachineMigrationSpec& s) {
  Json j = Json::object();
  j["vmName"] = s.vmName;
  if (!s.targetNode.empty()) j["targetNode"] = s.targetNode;
  if (!s.nodeSelector.empty()) j["nodeSelector"] = s.nodeSelector;
  Json params = encodeParameters(s.parameters);
  if (!params.empty()) j["parameters"] = std::move(params);
  return j;
}

Json encodeStatus(const VirtualMachineMigrationStatus& s) {
  Json j = Json::object();
  if (!s.phase.empty()) j["phase"] = s.phase;
  if (!s.reason.empty()) j["reason"] = s.reason;
  if (!s.message.empty()) j["message"] = s.message;
  if (!s.vmUid.empty()) j["vmUid"] = s.vmUid;
  if (!s.sourceNode.empty()) j["sourceNode"] = s.sourceNode;
  if (!s.targetNode.empty()) j["targetNode"] = s.targetNode;
  if (!s.startTimestamp.empty()) j["startTimestamp"] = s.startTimestamp;
  if (!s.endTimestamp.empty()) j["endTimestamp"] = s.endTimestamp;
  if (s.progress) j["progress"] = encodeProgress(*s.progress);
  if (s.result) j["result"] = encodeResult(*s.result);
  return j;
}

}  // namespace

// ---------------------------------------------------------------- the kind

Decoded<VirtualMachineMigration> decodeVirtualMachineMigration(const Json& j,
                                                               FieldValidation mode) {
  return decodeEnvelope<VirtualMachineMigration>(
      j, mode,
      [](Decoder& d, const Json& v, const std::string& path, VirtualMachineMigrationSpec& out) {
        decodeSpec(d, v, path, out);
      },
      [](Decoder& d, const Json& v, const std::string& path, VirtualMachineMigrationStatus& out) {
        decodeStatus(d, v, path, out);
      });
}

FieldErrors validateVirtualMachineMigration(const VirtualMachineMigration& m) {
  FieldErrors errs = validateMeta(m.metadata, true);
  for (auto& e : validateSpec(m.spec)) errs.push_back(std::move(e));
  for (auto& e : validateStatus(m.status)) errs.push_back(std::move(e));
  return errs;
}

Json encode(const VirtualMachineMigration& m) {
  Json j = Json::object();
  j["apiVersion"] = kApiVersion;
  j["kind"] = kVirtualMachineMigrationKind;
  j["metadata"] = encodeMeta(m.metadata);
  j["spec"] = encodeSpec(m.spec);
  j["status"] = encodeStatus(m.status);
  return j;
}

// ---------------------------------------------------------------- status.migration

void decodeMigrationState(Decoder& d, const Json& j, const std::string& path, MigrationState& out) {
  if (!d.object(j, path,
                {"name", "uid", "sourceNode", "targetNode", "phase", "abortRequested", "reason",
                 "message", "parameters", "target", "progress", "result", "startTimestamp",
                 "endTimestamp"})) {
    return;
  }
  d.str(j, "name", path, out.name);
  d.str(j, "uid", path, out.uid);
  d.str(j, "sourceNode", path, out.sourceNode);
  d.str(j, "targetNode", path, out.targetNode);
  d.str(j, "phase", path, out.phase);
  d.boolean(j, "abortRequested", path, out.abortRequested);
  d.str(j, "reason", path, out.reason);
  d.str(j, "message", path, out.message);
  if (auto it = j.find("parameters"); it != j.end()) {
    decodeParameters(d, *it, childPath(path, "parameters"), out.parameters);
  }
  if (auto it = j.find("target"); it != j.end()) {
    decodeTarget(d, *it, childPath(path, "target"), out.target);
  }
  if (auto it = j.find("progress"); it != j.end()) {
    decodeProgress(d, *it, childPath(path, "progress"), out.progress);
  }
  if (auto it = j.find("result"); it != j.end()) {
    decodeResult(d, *it, childPath(path, "result"), out.result);
  }
  d.str(j, "startTimestamp", path, out.startTimestamp);
  d.str(j, "endTimestamp", path, out.endTimestamp);
}

FieldErrors validateMigrationState(const MigrationState& m, const std::string& path) {
  FieldErrors errs;
  std::string name = childPath(path, "name");
  if (m.name.empty()) {
    errs.push_back(required(name, "the VirtualMachineMigration"));
  } else {
    for (auto& e : isDns1123Subdomain(m.name)) errs.push_back(invalid(name, Json(m.name), e));
  }
  if (m.uid.empty()) errs.push_back(required(childPath(path, "uid"), "the migration's uid"));
  for (const auto& [field, node] :
       {std::pair{"sourceNode", &m.sourceNode}, std::pair{"targetNode", &m.targetNode}}) {
    if (node->empty()) {
      errs.push_back(required(childPath(path, field)));
    } else {
      nodeNameRule(childPath(path, field), *node, errs);
    }
  }
  if (!m.sourceNode.empty() && m.sourceNode == m.targetNode) {
    errs.push_back(
        invalid(childPath(path, "targetNode"), Json(m.targetNode), "must differ from sourceNode"));
  }
  if (m.phase.empty()) {
    errs.push_back(required(childPath(path, "phase")));
  } else if (!oneOf(m.phase, kMigrationStatePhases)) {
    errs.push_back(
        notSupported(childPath(path, "phase"), Json(m.phase), values(kMigrationStatePhases)));
  }
  validateParameters(m.parameters, childPath(path, "parameters"), errs);
  return errs;
}

Json encodeMigrationState(const MigrationState& m) {
  Json j = Json::object();
  if (!m.name.empty()) j["name"] = m.name;
  if (!m.uid.empty()) j["uid"] = m.uid;
  if (!m.sourceNode.empty()) j["sourceNode"] = m.sourceNode;
  if (!m.targetNode.empty()) j["targetNode"] = m.targetNode;
  if (!m.phase.empty()) j["phase"] = m.phase;
  if (m.abortRequested) j["abortRequested"] = true;
  if (!m.reason.empty()) j["reason"] = m.reason;
  if (!m.message.empty()) j["message"] = m.message;
  Json params = encodeParameters(m.parameters);
  if (!params.empty()) j["parameters"] = std::move(params);
  if (m.target) j["target"] = encodeTarget(*m.target);
  if (m.progress) j["progress"] = encodeProgress(*m.progress);
  if (m.result) j["result"] = encodeResult(*m.result);
  if (!m.startTimestamp.empty()) j["startTimestamp"] = m.startTimestamp;
  if (!m.endTimestamp.empty()) j["endTimestamp"] = m.endTimestamp;
  return j;
}

// ---------------------------------------------------------------- the store

store::Key migrationKey(const std::string& ns, const std::string& name) {
  return store::Key{kMigrationsResource, ns, name};
}

std::string storeValue(const VirtualMachineMigration& m) {
  Json j = encode(m);
  j["metadata"].erase("resourceVersion");
  return j.dump();
}

Result<VirtualMachineMigration> decodeStoredMigration(const store::StoredObject& object) {
  Json j = Json::parse(object.value, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Error{VMHOST_ERR_DATA_LOSS, object.key.describe() + ": stored value is not JSON", false};
  }
  auto d = decodeVirtualMachineMigration(j, FieldValidation::kIgnore);
  if (!d.ok()) {
    return Error{VMHOST_ERR_DATA_LOSS, object.key.describe() + ": " + joinErrors(d.errors), false};
  }
  d.value.metadata.resourceVersion = std::to_string(object.modRevision);
  return std::move(d.value);
}

Result<VirtualMachineMigration> updateMigrationStatus(
    store::Store& store, const std::string& ns, const std::string& name,
    const std::function<bool(VirtualMachineMigrationStatus&)>& mutate, int maxAttempts) {
  auto key = migrationKey(ns, name);
  for (int attempt = 0; attempt < maxAttempts; ++attempt) {
    auto cur = store.get(key);
    if (!cur) return cur.error();
    auto m = decodeStoredMigration(*cur);
    if (!m) return m.error();
    if (!mutate(m->status)) return std::move(m.value());
    auto errs = validateStatus(m->status);
    if (!errs.empty()) return Error{VMHOST_ERR_INVALID_ARGUMENT, joinErrors(errs), false};
    auto written = store.update(key, storeValue(*m), cur->modRevision);
    if (written) {
      m->metadata.resourceVersion = std::to_string(written->modRevision);
      return std::move(m.value());
    }
    if (written.error().code != VMHOST_ERR_ABORTED) return written.error();
  }
  return Error{VMHOST_ERR_ABORTED,
               key.describe() + ": status update kept conflicting with other writers", true};
}

}  // namespace vmhost::api
