#include "api/events.h"

#include "api/timestamps.h"
#include "api/validation.h"

namespace vmhost::api {

namespace {

void decodeReference(Decoder& d, const Json& j, const std::string& path, ObjectReference& out) {
  if (!d.object(
          j, path,
          {"apiVersion", "kind", "namespace", "name", "uid", "resourceVersion", "fieldPath"})) {
    return;
  }
  d.str(j, "apiVersion", path, out.apiVersion);
  d.str(j, "kind", path, out.kind);
  d.str(j, "namespace", path, out.ns);
  d.str(j, "name", path, out.name);
  d.str(j, "uid", path, out.uid);
  d.str(j, "resourceVersion", path, out.resourceVersion);
  d.str(j, "fieldPath", path, out.fieldPath);
}

Json encodeReference(const ObjectReference& r) {
  Json j = Json::object();
  if (!r.apiVersion.empty()) j["apiVersion"] = r.apiVersion;
  if (!r.kind.empty()) j["kind"] = r.kind;
  if (!r.ns.empty()) j["namespace"] = r.ns;
  if (!r.name.empty()) j["name"] = r.name;
  if (!r.uid.empty()) j["uid"] = r.uid;
  if (!r.resourceVersion.empty()) j["resourceVersion"] = r.resourceVersion;
  if (!r.fieldPath.empty()) j["fieldPath"] = r.fieldPath;
  return j;
}

std::string joinErrors(const FieldErrors& errs) {
  std::string out;
  for (const auto& e : errs) out += (out.empty() ? "" : "; ") + e.toString();
  return out;
}

}  // namespace

ObjectReference referenceTo(const VirtualMachine& vm) {
  ObjectReference r;
  r.apiVersion = kApiVersion;
  r.kind = kVirtualMachineKind;
  r.ns = vm.metadata.ns;
  r.name = vm.metadata.name;
  r.uid = vm.metadata.uid;
  return r;
}

Decoded<Event> decodeEvent(const Json& j, FieldValidation mode) {
  Decoded<Event> out;
  Decoder d(mode);
  Event& e = out.value;
  if (d.object(j, "",
               {"apiVersion", "kind", "metadata", "involvedObject", "reason", "message", "source",
                "firstTimestamp", "lastTimestamp", "count", "type", "eventTime", "series", "action",
                "related", "reportingComponent", "reportingInstance"})) {
    if (auto it = j.find("metadata"); it != j.end()) decodeMeta(d, *it, "metadata", e.metadata);
    if (auto it = j.find("involvedObject"); it != j.end()) {
      decodeReference(d, *it, "involvedObject", e.involvedObject);
    }
    d.str(j, "reason", "", e.reason);
    d.str(j, "message", "", e.message);
    if (auto it = j.find("source");
        it != j.end() && d.object(*it, "source", {"component", "host"})) {
      d.str(*it, "component", "source", e.source.component);
      d.str(*it, "host", "source", e.source.host);
    }
    d.str(j, "firstTimestamp", "", e.firstTimestamp);
    d.str(j, "lastTimestamp", "", e.lastTimestamp);
    d.integer(j, "count", "", e.count);
    d.str(j, "type", "", e.type);
    d.str(j, "reportingComponent", "", e.reportingComponent);
    d.str(j, "reportingInstance", "", e.reportingInstance);
  }
  out.errors = std::move(d.errors);
  out.warnings = std::move(d.warnings);
  return out;
}

FieldErrors validateEvent(const Event& e) {
  FieldErrors errs = validateMeta(e.metadata, true);
  const ObjectReference& r = e.involvedObject;
  if (r.name.empty()) errs.push_back(required("involvedObject.name"));
  if (r.kind.empty()) errs.push_back(required("involvedObject.kind"));
  if (!r.ns.empty() && !e.metadata.ns.empty() && r.ns != e.metadata.ns) {
    errs.push_back(
        invalid("involvedObject.namespace", Json(r.ns), "does not match event.namespace"));
  }
  if (e.type != kEventTypeNormal && e.type != kEventTypeWarning) {
    errs.push_back(notSupported("type", Json(e.type), {kEventTypeNormal, kEventTypeWarning}));
  }
  if (e.reason.empty()) errs.push_back(required("reason"));
  if (e.reason.size() > 128) errs.push_back(tooLong("reason", 128));
  if (e.message.size() > kMaxEventMessageBytes) {
    errs.push_back(tooLong("message", kMaxEventMessageBytes));
  }
  if (e.count < 0)
    errs.push_back(invalid("count", Json(e.count), "must be greater than or equal to 0"));
  for (const auto* ts : {&e.firstTimestamp, &e.lastTimestamp}) {
    if (!ts->empty() && !parseRfc3339(*ts)) {
      errs.push_back(invalid(ts == &e.firstTimestamp ? "firstTimestamp" : "lastTimestamp",
                             Json(*ts), "must be an RFC 3339 timestamp"));
    }
  }
  return errs;
}

Json encode(const Event& e) {
  Json j = Json::object();
  j["apiVersion"] = "v1";
  j["kind"] = kEventKind;
  j["metadata"] = encodeMeta(e.metadata);
  j["involvedObject"] = encodeReference(e.involvedObject);
  j["reason"] = e.reason;
  j["message"] = e.message;
  Json source = Json::object();
  if (!e.source.component.empty()) source["component"] = e.source.component;
  if (!e.source.host.empty()) source["host"] = e.source.host;
  j["source"] = std::move(source);
  j["firstTimestamp"] = e.firstTimestamp.empty() ? Json(nullptr) : Json(e.firstTimestamp);
  j["lastTimestamp"] = e.lastTimestamp.empty() ? Json(nullptr) : Json(e.lastTimestamp);
  j["count"] = e.count;
  j["type"] = e.type;
  j["eventTime"] = nullptr;
  j["reportingComponent"] = e.reportingComponent;
  j["reportingInstance"] = e.reportingInstance;
  return j;
}

store::Key eventKey(const std::string& ns, const std::string& name) {
  return store::Key{kEventsResource, ns, name};
}

std::string storeValue(const Event& e) {
  Json j = encode(e);
  j["metadata"].erase("resourceVersion");
  return j.dump();
}

Result<Event> decodeStoredEvent(const store::StoredObject& object) {
  Json j = Json::parse(object.value, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Error{VMHOST_ERR_DATA_LOSS, object.key.describe() + ": stored value is not JSON", false};
  }
  auto d = decodeEvent(j, FieldValidation::kIgnore);
  if (!d.ok()) {
    return Error{VMHOST_ERR_DATA_LOSS, object.key.describe() + ": " + joinErrors(d.errors), false};
  }
  d.value.metadata.resourceVersion = std::to_string(object.modRevision);
  return std::move(d.value);
}

}  // namespace vmhost::api
