#include "apiserver/openapi_schema.h"

namespace vmhost::apiserver::oas {

Json str(const std::string& desc) { return Json{{"description", desc}, {"type", "string"}}; }
Json integer(const std::string& desc) {
  return Json{{"description", desc}, {"type", "integer"}, {"format", "int64"}};
}
Json boolean(const std::string& desc) { return Json{{"description", desc}, {"type", "boolean"}}; }
Json enumStr(const std::string& desc, std::vector<std::string> values) {
  // kubectl explain prints the enum itself.
  return Json{{"description", desc}, {"type", "string"}, {"enum", values}};
}
Json quantity(const std::string& desc) {
  return Json{{"description", desc + " A Kubernetes quantity, e.g. 128Mi, 2Gi, 500m."},
              {"x-kubernetes-int-or-string", true},
              {"anyOf", Json::array({Json{{"type", "integer"}}, Json{{"type", "string"}}})}};
}
Json ref(const std::string& name) { return Json{{"$ref", "#/components/schemas/" + name}}; }
Json ref(const std::string& name, const std::string& desc) {
  return Json{{"description", desc}, {"allOf", Json::array({ref(name)})}};
}
Json obj(const std::string& desc, Json props, std::vector<std::string> required) {
  Json j{{"description", desc}, {"type", "object"}, {"properties", std::move(props)}};
  if (!required.empty()) j["required"] = required;
  return j;
}
Json arr(const std::string& desc, Json items) {
  return Json{{"description", desc}, {"type", "array"}, {"items", std::move(items)}};
}
Json stringMap(const std::string& desc) {
  return Json{{"description", desc},
              {"type", "object"},
              {"additionalProperties", Json{{"type", "string"}, {"default", ""}}}};
}
Json timestamp(const std::string& desc) {
  return Json{{"description", desc}, {"type", "string"}, {"format", "date-time"}};
}
Json gvk(const std::string& group, const std::string& version, const std::string& kind) {
  return Json::array({Json{{"group", group}, {"kind", kind}, {"version", version}}});
}

Json conditionsSchema(const std::string& desc) {
  return arr(desc, obj("A condition: one aspect of the object's state.",
                       Json{{"type", str("The condition, e.g. Ready or Scheduled.")},
                            {"status", enumStr("Whether it holds.", {"True", "False", "Unknown"})},
                            {"reason", str("A CamelCase reason for the last transition, e.g. "
                                           "Unschedulable.")},
                            {"message", str("Human-readable detail, e.g. \"0/1 nodes: 1 node "
                                            "selector mismatch\".")},
                            {"lastTransitionTime",
                             Json{{"description", "When the status last changed (RFC 3339)."},
                                  {"type", "string"},
                                  {"format", "date-time"}}}},
                       {"type", "status"}));
}

Json metaSchemas() {
  Json s = Json::object();
  s[std::string(kMetaPrefix) + "ObjectMeta"] = obj(
      "Standard object metadata.",
      Json{
          {"name", str("Name, unique within a namespace (a DNS-1123 subdomain).")},
          {"generateName", str("A prefix for a server-generated name, used when name is empty.")},
          {"namespace", str("The namespace of a namespaced object (a DNS-1123 label).")},
          {"uid", str("Unique in time and space; set by the server.")},
          {"resourceVersion",
           str("Opaque version for optimistic concurrency and watches; set by the server.")},
          {"generation", integer("Incremented by the server when the spec changes.")},
          {"creationTimestamp", Json{{"description", "When the object was created (RFC 3339)."},
                                     {"type", "string"},
                                     {"format", "date-time"}}},
          {"deletionTimestamp",
           Json{{"description", "Set when deletion is requested while finalizers remain."},
                {"type", "string"},
                {"format", "date-time"}}},
          {"deletionGracePeriodSeconds", integer("Always 0 here.")},
          {"labels", stringMap("Key/value pairs for selection (labelSelector).")},
          {"annotations", stringMap("Key/value pairs for tools; not used for selection.")},
          {"finalizers", arr("Deletion waits until this list is empty.",
                             Json{{"type", "string"}, {"default", ""}})},
          {"ownerReferences",
           arr("Objects this one depends on.",
               Json{{"type", "object"}, {"x-kubernetes-preserve-unknown-fields", true}})},
          {"managedFields",
           arr("Not maintained by vmhost; accepted and dropped.",
               Json{{"type", "object"}, {"x-kubernetes-preserve-unknown-fields", true}})},
          {"selfLink", str("Deprecated; ignored.")},
      });
  s[std::string(kMetaPrefix) + "ListMeta"] =
      obj("Standard list metadata.",
          Json{{"resourceVersion", str("The store revision the list was read at.")},
               {"continue", str("Token for the next page, if the list was cut by limit.")},
               {"remainingItemCount", integer("Not set by vmhost.")}});
  s[std::string(kMetaPrefix) + "Status"] = obj(
      "The result of an operation that does not return an object, or an error.",
      Json{{"apiVersion", str("v1")},
           {"kind", str("Status")},
           {"metadata", ref(std::string(kMetaPrefix) + "ListMeta", "Standard list metadata.")},
           {"status", str("Success or Failure.")},
           {"message", str("Human-readable description.")},
           {"reason", str("Machine-readable reason, e.g. NotFound, Invalid.")},
           {"details", Json{{"type", "object"}, {"x-kubernetes-preserve-unknown-fields", true}}},
           {"code", Json{{"type", "integer"}, {"format", "int32"}}}});
  return s;
}

Json topLevel(const std::string& desc, const std::string& group, const std::string& version,
              const std::string& kind, Json spec, Json status, bool specRequired) {
  Json j = obj(
      desc,
      Json{{"apiVersion", str("Versioned schema of this representation: " +
                              (group.empty() ? version : group + "/" + version) + ".")},
           {"kind", str("Kind of this object: " + kind + ".")},
           {"metadata", ref(std::string(kMetaPrefix) + "ObjectMeta", "Standard object metadata.")},
           {"spec", std::move(spec)},
           {"status", std::move(status)}});
  if (specRequired) j["required"] = Json::array({"spec"});
  j["x-kubernetes-group-version-kind"] = gvk(group, version, kind);
  return j;
}

Json listOf(const std::string& itemRef, const std::string& group, const std::string& version,
            const std::string& kind) {
  Json j =
      obj("A list of " + kind.substr(0, kind.size() - 4) + " objects.",
          Json{{"apiVersion", str(group.empty() ? version : group + "/" + version)},
               {"kind", str(kind)},
               {"metadata", ref(std::string(kMetaPrefix) + "ListMeta", "Standard list metadata.")},
               {"items", arr("The objects.", ref(itemRef))}},
          {"items"});
  j["x-kubernetes-group-version-kind"] = gvk(group, version, kind);
  return j;
}

}  // namespace vmhost::apiserver::oas
