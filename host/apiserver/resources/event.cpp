// core/v1 Event (api/events.h): what happened to a VM, recorded by the
// controller and the nodes (api/event_recorder.h), read by `kubectl get
// events`, `kubectl describe virtualmachine` (which selects by
// involvedObject.*) and `vmctl describe`. No status subresource: an Event
// is written whole.
#include "api/events.h"
#include "apiserver/openapi_schema.h"
#include "apiserver/resources/registry.h"
#include "apiserver/rest.h"

#include <cctype>

namespace vmhost::apiserver {
namespace {

struct EventTraits {
  using T = api::Event;
  static api::Decoded<T> decode(const Json& j, api::FieldValidation m) {
    return api::decodeEvent(j, m);
  }
  static api::FieldErrors validate(const T& e) { return api::validateEvent(e); }
  static Json view(const T& e) { return api::encode(e); }
  static Result<T> fromStore(const store::StoredObject& o) { return api::decodeStoredEvent(o); }
  static std::string stored(const T& e) { return api::storeValue(e); }
  static store::Key key(const std::string& ns, const std::string& name) {
    return api::eventKey(ns, name);
  }
  static const char* storeResource() { return api::kEventsResource; }
  static Json specOf(const T& e) {
    Json j = api::encode(e);
    j.erase("metadata");
    return j;
  }
  static void onCreate(T& e) {
    if (e.firstTimestamp.empty()) e.firstTimestamp = e.metadata.creationTimestamp;
    if (e.lastTimestamp.empty()) e.lastTimestamp = e.firstTimestamp;
    if (e.involvedObject.ns.empty()) e.involvedObject.ns = e.metadata.ns;
  }
  static void keepFromCurrent(T&, const T&) {}
  static void takeStatus(T&, const T&) {}  // no status subresource
  static Json columns() {
    return Json::array({column("Last Seen", "string", "Time since the event last happened."),
                        column("Type", "string", "Normal or Warning."),
                        column("Reason", "string", "Why the event happened, CamelCase."),
                        column("Object", "string", "The object the event is about."),
                        column("Subobject", "string", "The part of the object (fieldPath).", 1),
                        column("Source", "string", "The component that reported it.", 1),
                        column("Message", "string", "What happened."),
                        column("First Seen", "string", "Time since it first happened.", 1),
                        column("Count", "integer", "How often it happened.", 1),
                        column("Name", "string", "The Event's name.", 1, "name")});
  }
  static Json cells(const T& e) {
    std::string kind = e.involvedObject.kind;
    for (char& c : kind) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string source = e.source.component;
    if (!e.source.host.empty()) source += ", " + e.source.host;
    return Json::array({api::ageOf(e.lastTimestamp), e.type, e.reason,
                        kind + "/" + e.involvedObject.name, e.involvedObject.fieldPath, source,
                        e.message, api::ageOf(e.firstTimestamp), e.count, e.metadata.name});
  }
  static std::vector<std::string> fieldLabels() {
    return {"metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type"};
  }
  static std::string field(const T& e, const std::string& f) {
    const auto& r = e.involvedObject;
    if (f == "metadata.name") return e.metadata.name;
    if (f == "metadata.namespace") return e.metadata.ns;
    if (f == "involvedObject.kind") return r.kind;
    if (f == "involvedObject.namespace") return r.ns;
    if (f == "involvedObject.name") return r.name;
    if (f == "involvedObject.uid") return r.uid;
    if (f == "involvedObject.apiVersion") return r.apiVersion;
    if (f == "involvedObject.resourceVersion") return r.resourceVersion;
    if (f == "involvedObject.fieldPath") return r.fieldPath;
    if (f == "reason") return e.reason;
    if (f == "reportingComponent") return e.reportingComponent;
    if (f == "source") return e.source.component;
    if (f == "type") return e.type;
    return "";
  }
};

using namespace oas;

Json eventSchema() {
  Json ref = obj("The object this event is about.",
                 Json{{"apiVersion", str("API version of the object.")},
                      {"kind", str("Kind of the object, e.g. VirtualMachine.")},
                      {"namespace", str("Namespace of the object.")},
                      {"name", str("Name of the object.")},
                      {"uid", str("UID of the object.")},
                      {"resourceVersion", str("The object's resourceVersion, if known.")},
                      {"fieldPath", str("The part of the object, if any.")}});
  Json j = obj(
      "Something that happened to an object, e.g. a VM placed, started, stopped or failed. "
      "Events expire (an hour after they last happened, by default).",
      Json{{"apiVersion", str("v1")},
           {"kind", str("Event")},
           {"metadata",
            oas::ref(std::string(kMetaPrefix) + "ObjectMeta", "Standard object metadata.")},
           {"involvedObject", ref},
           {"reason", str("Why, CamelCase: Scheduled, FailedScheduling, Started, Stopped, ...")},
           {"message", str("What happened, for humans.")},
           {"source", obj("Who reported it.", Json{{"component", str("The component.")},
                                                   {"host", str("The node, for node events.")}})},
           {"firstTimestamp", timestamp("When it first happened.")},
           {"lastTimestamp", timestamp("When it last happened.")},
           {"count", integer("How often it happened.")},
           {"type", enumStr("Normal or Warning.", {"Normal", "Warning"})},
           {"eventTime", timestamp("Not set by vmhost.")},
           {"reportingComponent", str("As source.component.")},
           {"reportingInstance", str("As source.host.")}},
      {"metadata", "involvedObject"});
  j["x-kubernetes-group-version-kind"] = gvk("", "v1", "Event");
  return j;
}

}  // namespace

ResourceRegistration eventResource() {
  ResourceInfo info{
      "", "v1", "events", "event", api::kEventKind, true, {"ev"}, {}, "io.k8s.api.core.v1.Event"};
  info.statusSubresource = false;
  return {std::move(info),
          [](ResourceInfo info, Services svc) -> std::unique_ptr<ResourceHandler> {
            return std::make_unique<TypedHandler<EventTraits>>(std::move(info), svc);
          },
          [] { return eventSchema(); }};
}

}  // namespace vmhost::apiserver
