#include "api/openapi.h"

#include "api/kubevirt.h"
#include "api/types.h"

#include <cstdio>

namespace vmhost::api {

namespace {

constexpr const char* kMetaPrefix = "io.k8s.apimachinery.pkg.apis.meta.v1.";

// ---- schema builders (OpenAPI v3 flavour; v2 is derived) ----

Json str(const std::string& desc) { return Json{{"description", desc}, {"type", "string"}}; }
Json integer(const std::string& desc) {
  return Json{{"description", desc}, {"type", "integer"}, {"format", "int64"}};
}
Json boolean(const std::string& desc) { return Json{{"description", desc}, {"type", "boolean"}}; }
Json enumStr(const std::string& desc, std::vector<std::string> values) {
  // kubectl explain prints the enum itself.
  return Json{{"description", desc}, {"type", "string"}, {"enum", values}};
}
template <size_t N>
std::vector<std::string> list(const char* const (&l)[N]) {
  return std::vector<std::string>(std::begin(l), std::end(l));
}
// A resource.Quantity: a string like "128Mi" (a bare integer is accepted too).
Json quantity(const std::string& desc) {
  return Json{{"description", desc + " A Kubernetes quantity, e.g. 128Mi, 2Gi, 500m."},
              {"x-kubernetes-int-or-string", true},
              {"anyOf", Json::array({Json{{"type", "integer"}}, Json{{"type", "string"}}})}};
}
Json ref(const std::string& name) { return Json{{"$ref", "#/components/schemas/" + name}}; }
Json ref(const std::string& name, const std::string& desc) {
  return Json{{"description", desc}, {"allOf", Json::array({ref(name)})}};
}
Json obj(const std::string& desc, Json props, std::vector<std::string> required = {}) {
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

Json imageSchema() {
  return obj("A disk image: a file on the node or a URL to fetch.",
             Json{{"path", str("Absolute path of an image file on the node.")},
                  {"url", str("http, https or file URL of the image.")},
                  {"sha256", str("Expected SHA-256 of the image, 64 hex digits (optional).")}});
}

Json vmSpecSchema() {
  return obj(
      "The desired state of a virtual machine.",
      Json{
          {"runStrategy",
           enumStr("Whether the VM should run: Always (default: restarted whenever it stops), "
                   "Halted (stopped), Manual (started and stopped by request), RerunOnFailure "
                   "(restarted only after a failure).",
                   list(kRunStrategies))},
          {"cpu", obj("Virtual CPUs.", Json{{"cores", integer("Number of cores (default 1).")}})},
          {"memory", quantity("Guest memory, e.g. 128Mi.")},
          {"nodeSelector", stringMap("Node labels the VM's node must have, e.g. "
                                     "kubernetes.io/hostname: node1.")},
          {"evictionStrategy",
           enumStr("What happens when its node is drained (vmctl drain): None (default) stops "
                   "it (runStrategy becomes Halted), Restart stops it and starts it on another "
                   "node, LiveMigrate is refused until vmhost has live migration.",
                   list(kEvictionStrategies))},
          {"boot", obj("Direct kernel boot: start the guest from a kernel and initrd on the node "
                       "instead of a boot disk.",
                       Json{{"kernel", str("Absolute path of the kernel on the node.")},
                            {"initrd", str("Absolute path of the initrd on the node.")},
                            {"cmdline", str("Kernel command line, e.g. console=ttyS0.")}},
                       {"kernel"})},
          {"disks", arr("Disks attached to the guest, each backed by the volume of the same name.",
                        obj("A disk.",
                            Json{{"name", str("Name of the volume backing this disk.")},
                                 {"bus", enumStr("The bus (default virtio).", list(kDiskBuses))},
                                 {"bootOrder", integer("Boot priority, 1 first.")},
                                 {"readOnly", boolean("Attach read-only.")}},
                            {"name"}))},
          {"volumes",
           arr("Storage for disks; each sets exactly one source.",
               obj("A volume.",
                   Json{{"name", str("Name, referenced by a disk (a DNS-1123 label).")},
                        {"empty", obj("A new empty disk that lives as long as the VM.",
                                      Json{{"size", quantity("Size of the disk.")}}, {"size"})},
                        {"hostPath",
                         obj("A file or block device on the node.",
                             Json{{"path", str("Absolute path on the node.")}}, {"path"})},
                        {"ephemeral",
                         obj("A copy-on-write overlay over an image; changes are discarded "
                             "when the VM stops.",
                             Json{{"image", imageSchema()}}, {"image"})},
                        {"persistent",
                         obj("A volume that outlives the VM's runs, prepared by the storage "
                             "plugin.",
                             Json{{"claimName", str("Name of the volume in the storage backend.")},
                                  {"size", quantity("Size of the volume.")},
                                  {"image", imageSchema()},
                                  {"reclaimPolicy",
                                   enumStr("What happens to the volume when the VM is deleted "
                                           "(default Delete).",
                                           list(kReclaimPolicies))}},
                             {"claimName"})}},
                   {"name"}))},
          {"interfaces",
           arr("Network interfaces; each sets exactly one of network, bridge and user.",
               obj("A network interface.",
                   Json{{"name", str("Name (a DNS-1123 label).")},
                        {"network", str("Attach to this libvirt network.")},
                        {"bridge", str("Attach to this host bridge.")},
                        {"user", Json{{"description", "User-mode networking (no host setup)."},
                                      {"type", "object"}}},
                        {"model", enumStr("NIC model (default virtio).", list(kInterfaceModels))},
                        {"macAddress", str("Fixed MAC address; generated when empty.")}},
                   {"name"}))},
          {"graphics", obj("A graphical console.",
                           Json{{"type", enumStr("Protocol.", list(kGraphicsTypes))}}, {"type"})},
          {"video", obj("The video device.",
                        Json{{"model", enumStr("Model.", list(kVideoModels))},
                             {"heads", integer("Number of heads (1-4).")}},
                        {"model"})},
      },
      {"memory"});
}

Json vmStatusSchema() {
  return obj("The observed state of a virtual machine, written by vmhost.",
             Json{{"phase", enumStr("Where the VM is in its lifecycle.", list(kPhases))},
                  {"nodeName", str("The node the VM is bound to.")},
                  {"conditions", conditionsSchema("Current conditions, e.g. Scheduled "
                                                  "(reason Unschedulable when no node fits).")},
                  {"interfaces",
                   arr("Interfaces as the guest got them.",
                       obj("An interface's state.", Json{{"name", str("Interface name.")},
                                                         {"mac", str("Its MAC address.")}}))},
                  {"observedGeneration", integer("The metadata.generation the status reflects.")}});
}

Json resourcesSchema(const std::string& desc) {
  return obj(desc, Json{{"cpu", quantity("CPUs.")}, {"memory", quantity("Memory.")}});
}

Json kubevirtSpecSchema() {
  Json graphics = obj("A graphical console (the first one is used).",
                      Json{{"type", enumStr("Protocol.", list(kGraphicsTypes))},
                           {"autoPort", str("Accepted for compatibility; vmhost picks ports.")},
                           {"defaultMode", str("Accepted for compatibility.")},
                           {"listen", str("Accepted for compatibility.")},
                           {"port", str("Accepted for compatibility.")}});
  Json video =
      obj("A video device (the first one is used).",
          Json{{"model", obj("The model.", Json{{"type", enumStr("Model.", list(kVideoModels))},
                                                {"heads", integer("Heads.")},
                                                {"vram", integer("Accepted; ignored.")}})}});
  Json iface = obj(
      "A network interface.",
      Json{{"type", enumStr("Kind of attachment.", {"network", "bridge", "user"})},
           {"name", str("Interface name (default net<index>).")},
           {"source", obj("What to attach to.", Json{{"network", str("libvirt network name.")},
                                                     {"bridge", str("Host bridge name.")}})},
           {"model", obj("NIC model.", Json{{"type", enumStr("Model.", list(kInterfaceModels))}})},
           {"mac", obj("MAC address.", Json{{"address", str("The address.")}})}},
      {"type"});
  Json domain = obj(
      "The libvirt-style domain description.",
      Json{{"type", enumStr("Hypervisor type.", {"qemu", "kvm"})},
           {"memory", obj("Guest memory.",
                          Json{{"unit", str("libvirt unit: b, KB, KiB (default), MB, MiB, GB, "
                                            "GiB, TB, TiB.")},
                               {"value", integer("Amount in unit.")}},
                          {"value"})},
           {"cpu", obj("Virtual CPUs.", Json{{"cores", integer("Number of cores.")}})},
           {"os",
            obj("Guest OS type.",
                Json{{"type", obj("OS type.", Json{{"os", enumStr("Type.", {"hvm"})},
                                                   {"arch", str("Accepted; ignored.")},
                                                   {"machine", str("Accepted; ignored.")}})}})},
           {"devices", obj("Devices.", Json{{"interfaces", arr("Network interfaces.", iface)},
                                            {"video", arr("Video devices.", video)},
                                            {"graphics", arr("Graphical consoles.", graphics)}})}},
      {"memory"});
  Json props =
      Json{{"nodeSelector", stringMap("Node labels the VM's node must have.")}, {"domain", domain}};
  // vmhost.io/v1 fields the old kind lacks, under the same names.
  Json vmhost = vmSpecSchema()["properties"];
  for (const char* k : {"runStrategy", "evictionStrategy", "boot", "disks", "volumes"}) {
    props[k] = vmhost[k];
  }
  return obj(
      "The VM's desired state (kubevirt.io/v1alpha1 shape, plus vmhost.io/v1's run "
      "strategy, boot, disks and volumes).",
      std::move(props), {"domain"});
}

Json topLevel(const std::string& desc, const std::string& group, const std::string& version,
              const std::string& kind, Json spec, Json status, bool specRequired) {
  Json j = obj(
      desc,
      Json{{"apiVersion",
            str("Versioned schema of this representation: " + group + "/" + version + ".")},
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
          Json{{"apiVersion", str(group + "/" + version)},
               {"kind", str(kind)},
               {"metadata", ref(std::string(kMetaPrefix) + "ListMeta", "Standard list metadata.")},
               {"items", arr("The objects.", ref(itemRef))}},
          {"items"});
  j["x-kubernetes-group-version-kind"] = gvk(group, version, kind);
  return j;
}

struct ResourceDoc {
  std::string group, version, plural, kind, schemaName;
  bool namespaced;
};

const std::vector<ResourceDoc>& resourceDocs() {
  static const std::vector<ResourceDoc> docs = {
      {kGroup, kVersion, "virtualmachines", kVirtualMachineKind, "io.vmhost.v1.VirtualMachine",
       true},
      {kGroup, kVersion, "nodes", kNodeKind, "io.vmhost.v1.Node", false},
      {kKubevirtGroup, kKubevirtVersion, "vms", kKubevirtKind, "io.kubevirt.v1alpha1.VM", true},
  };
  return docs;
}

Json queryParam(const std::string& name, const std::string& desc, const std::string& type) {
  return Json{{"name", name}, {"in", "query"}, {"description", desc}, {"schema", {{"type", type}}}};
}

Json bodyParams() {
  return Json::array(
      {queryParam("dryRun", "When All, validate and return the result without storing it.",
                  "string"),
       queryParam("fieldManager", "Accepted; vmhost keeps no managedFields.", "string"),
       queryParam("fieldValidation",
                  "How unknown fields are treated: Ignore (drop), Warn (drop and warn), Strict "
                  "(reject with 422). Default Warn.",
                  "string")});
}

Json listParams() {
  return Json::array(
      {queryParam("labelSelector", "Select by labels (=, ==, !=, in, notin, exists).", "string"),
       queryParam("fieldSelector",
                  "Select by fields: metadata.name, metadata.namespace (VMs also status.phase, "
                  "status.nodeName).",
                  "string"),
       queryParam("limit", "Page size.", "integer"),
       queryParam("continue", "Token from the previous page.", "string"),
       queryParam("watch", "Stream changes (ADDED, MODIFIED, DELETED) instead of listing.",
                  "boolean"),
       queryParam("resourceVersion", "For watch: stream changes after this version.", "string"),
       queryParam("timeoutSeconds", "For watch: end the stream after this long.", "integer"),
       queryParam("allowWatchBookmarks", "Accepted; no bookmarks are sent.", "boolean")});
}

Json response(const std::string& schemaName, const std::string& desc = "OK") {
  return Json{{"description", desc},
              {"content",
               {{"application/json", {{"schema", ref(schemaName)}}},
                {"application/yaml", {{"schema", ref(schemaName)}}}}}};
}

Json operation(const ResourceDoc& r, const std::string& id, const std::string& action,
               const std::string& desc, Json params, const std::string& responseSchema,
               const std::string& responseCode, std::optional<Json> body) {
  Json op = Json::object();
  op["tags"] = Json::array({r.group + "_" + r.version});
  op["description"] = desc;
  op["operationId"] = id;
  op["parameters"] = std::move(params);
  if (body) op["requestBody"] = std::move(*body);
  op["responses"] = Json{{responseCode, response(responseSchema)},
                         {"401", Json{{"description", "Unauthorized"}}}};
  op["x-kubernetes-action"] = action;
  op["x-kubernetes-group-version-kind"] = gvk(r.group, r.version, r.kind)[0];
  return op;
}

Json requestBody(const std::string& schemaName) {
  return Json{{"content", {{"*/*", {{"schema", ref(schemaName)}}}}}, {"required", true}};
}

Json patchBody() {
  Json any =
      Json{{"schema", Json{{"type", "object"}, {"x-kubernetes-preserve-unknown-fields", true}}}};
  // No application/strategic-merge-patch+json: kubectl then uses JSON merge
  // patch for apply and edit, which is what the server implements.
  return Json{
      {"content", {{"application/json-patch+json", any}, {"application/merge-patch+json", any}}},
      {"required", true}};
}

// Path items for one resource, keyed by path.
Json pathsFor(const ResourceDoc& r) {
  Json paths = Json::object();
  std::string base = "/apis/" + r.group + "/" + r.version + "/";
  std::string coll = base + (r.namespaced ? "namespaces/{namespace}/" : "") + r.plural;
  std::string item = coll + "/{name}";
  std::string list = r.schemaName + "List";
  std::string suffix = r.kind + (r.namespaced ? "Namespaced" : "");
  Json nsParam = Json{{"name", "namespace"},
                      {"in", "path"},
                      {"required", true},
                      {"description", "object name and auth scope"},
                      {"schema", {{"type", "string"}}}};
  Json nameParam = Json{{"name", "name"},
                        {"in", "path"},
                        {"required", true},
                        {"description", "name of the " + r.kind},
                        {"schema", {{"type", "string"}}}};
  Json collParams = Json::array();
  if (r.namespaced) collParams.push_back(nsParam);
  Json itemParams = collParams;
  itemParams.push_back(nameParam);

  paths[coll] =
      Json{{"get", operation(r, "list" + suffix, "list", "list or watch objects of kind " + r.kind,
                             listParams(), list, "200", std::nullopt)},
           {"post", operation(r, "create" + suffix, "post", "create a " + r.kind, bodyParams(),
                              r.schemaName, "201", requestBody(r.schemaName))},
           {"parameters", collParams}};
  paths[item] = Json{
      {"get", operation(r, "read" + suffix, "get", "read the specified " + r.kind, Json::array(),
                        r.schemaName, "200", std::nullopt)},
      {"put", operation(r, "replace" + suffix, "put", "replace the specified " + r.kind,
                        bodyParams(), r.schemaName, "200", requestBody(r.schemaName))},
      {"patch", operation(r, "patch" + suffix, "patch", "partially update the specified " + r.kind,
                          bodyParams(), r.schemaName, "200", patchBody())},
      {"delete",
       operation(r, "delete" + suffix, "delete", "delete a " + r.kind,
                 Json::array({queryParam("dryRun", "When All, do not delete.", "string")}),
                 r.schemaName, "200", std::nullopt)},
      {"parameters", itemParams}};
  paths[item + "/status"] =
      Json{{"get", operation(r, "read" + suffix + "Status", "get",
                             "read status of the specified " + r.kind, Json::array(), r.schemaName,
                             "200", std::nullopt)},
           {"put", operation(r, "replace" + suffix + "Status", "put",
                             "replace status of the specified " + r.kind, bodyParams(),
                             r.schemaName, "200", requestBody(r.schemaName))},
           {"patch", operation(r, "patch" + suffix + "Status", "patch",
                               "partially update status of the specified " + r.kind, bodyParams(),
                               r.schemaName, "200", patchBody())},
           {"parameters", itemParams}};
  if (r.namespaced) {
    paths[base + r.plural] =
        Json{{"get", operation(r, "list" + r.kind + "ForAllNamespaces", "list",
                               "list or watch objects of kind " + r.kind + " in all namespaces",
                               listParams(), list, "200", std::nullopt)}};
  }
  return paths;
}

// v3 -> v2: refs point at #/definitions, request bodies become body
// parameters, parameter schemas flatten, int-or-string loses anyOf (v2 has
// no anyOf; kube-openapi publishes such fields without a type).
Json toV2Schema(Json s) {
  if (s.is_object()) {
    if (s.contains("$ref")) {
      std::string r = s["$ref"];
      s["$ref"] = "#/definitions/" + r.substr(r.rfind('/') + 1);
    }
    if (s.contains("anyOf")) s.erase("anyOf");
    if (s.contains("allOf") && s["allOf"].size() == 1 && s["allOf"][0].contains("$ref")) {
      // kube-openapi v2 style: a $ref with a sibling description.
      std::string r = s["allOf"][0]["$ref"];
      s.erase("allOf");
      s["$ref"] = "#/definitions/" + r.substr(r.rfind('/') + 1);
    }
    for (auto it = s.begin(); it != s.end(); ++it) {
      if (it.key() != "$ref") it.value() = toV2Schema(it.value());
    }
  } else if (s.is_array()) {
    for (auto& e : s) e = toV2Schema(e);
  }
  return s;
}

Json toV2Operation(const Json& op) {
  Json out = Json::object();
  out["description"] = op["description"];
  out["consumes"] =
      op.contains("requestBody")
          ? (op["requestBody"]["content"].contains("application/merge-patch+json")
                 ? Json::array({"application/json-patch+json", "application/merge-patch+json"})
                 : Json::array({"*/*"}))
          : Json::array({"*/*"});
  out["produces"] = Json::array({"application/json", "application/yaml"});
  out["schemes"] = Json::array({"https"});
  out["tags"] = op["tags"];
  out["operationId"] = op["operationId"];
  Json params = Json::array();
  if (op.contains("requestBody")) {
    Json schema = op["requestBody"]["content"].begin().value()["schema"];
    params.push_back(
        Json{{"name", "body"}, {"in", "body"}, {"required", true}, {"schema", toV2Schema(schema)}});
  }
  for (const auto& p : op["parameters"]) {
    params.push_back(Json{{"uniqueItems", true},
                          {"type", p["schema"]["type"]},
                          {"description", p["description"]},
                          {"name", p["name"]},
                          {"in", p["in"]}});
  }
  out["parameters"] = std::move(params);
  Json responses = Json::object();
  for (auto it = op["responses"].begin(); it != op["responses"].end(); ++it) {
    Json r{{"description", it.value()["description"]}};
    if (it.value().contains("content")) {
      r["schema"] = toV2Schema(it.value()["content"]["application/json"]["schema"]);
    }
    responses[it.key()] = std::move(r);
  }
  out["responses"] = std::move(responses);
  out["x-kubernetes-action"] = op["x-kubernetes-action"];
  out["x-kubernetes-group-version-kind"] = op["x-kubernetes-group-version-kind"];
  return out;
}

Json toV2PathItem(const Json& item) {
  Json out = Json::object();
  for (auto it = item.begin(); it != item.end(); ++it) {
    if (it.key() == "parameters") {
      Json params = Json::array();
      for (const auto& p : it.value()) {
        params.push_back(Json{{"uniqueItems", true},
                              {"type", "string"},
                              {"description", p["description"]},
                              {"name", p["name"]},
                              {"in", p["in"]},
                              {"required", true}});
      }
      out["parameters"] = std::move(params);
    } else {
      out[it.key()] = toV2Operation(it.value());
    }
  }
  return out;
}

std::string fnv1aHex(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llX", static_cast<unsigned long long>(h));
  return buf;
}

// ---- protobuf writer (proto3 wire format) ----

class Pb {
 public:
  void str(int field, const std::string& s) {
    if (s.empty()) return;
    key(field, 2);
    varint(s.size());
    out_ += s;
  }
  void boolean(int field, bool b) {
    if (!b) return;
    key(field, 0);
    varint(1);
  }
  void msg(int field, const Pb& m) {
    key(field, 2);
    varint(m.out_.size());
    out_ += m.out_;
  }
  const std::string& bytes() const { return out_; }

 private:
  void key(int field, int wire) { varint((static_cast<uint64_t>(field) << 3) | wire); }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      out_ += static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    out_ += static_cast<char>(v);
  }
  std::string out_;
};

// openapi_v2.Any {yaml = 2}: JSON is YAML, which is how kube-openapi reads it.
Pb anyYaml(const Json& v) {
  Pb a;
  a.str(2, v.dump());
  return a;
}

void vendorExtensions(Pb& m, int field, const Json& obj) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (it.key().rfind("x-", 0) != 0) continue;
    Pb named;
    named.str(1, it.key());
    named.msg(2, anyYaml(it.value()));
    m.msg(field, named);
  }
}

Pb schemaPb(const Json& s) {
  Pb m;
  if (!s.is_object()) return m;
  if (s.contains("$ref")) m.str(1, s["$ref"].get<std::string>());
  if (s.contains("format")) m.str(2, s["format"].get<std::string>());
  if (s.contains("description")) m.str(4, s["description"].get<std::string>());
  if (s.contains("required")) {
    for (const auto& r : s["required"]) m.str(19, r.get<std::string>());
  }
  if (s.contains("enum")) {
    for (const auto& e : s["enum"]) m.msg(20, anyYaml(e));
  }
  if (s.contains("additionalProperties")) {
    Pb ap;
    if (s["additionalProperties"].is_boolean()) {
      ap.boolean(2, s["additionalProperties"].get<bool>());
    } else {
      ap.msg(1, schemaPb(s["additionalProperties"]));
    }
    m.msg(21, ap);
  }
  if (s.contains("type")) {
    Pb t;
    t.str(1, s["type"].get<std::string>());
    m.msg(22, t);
  }
  if (s.contains("items")) {
    Pb items;
    items.msg(1, schemaPb(s["items"]));
    m.msg(23, items);
  }
  if (s.contains("properties")) {
    Pb props;
    for (auto it = s["properties"].begin(); it != s["properties"].end(); ++it) {
      Pb named;
      named.str(1, it.key());
      named.msg(2, schemaPb(it.value()));
      props.msg(1, named);
    }
    m.msg(25, props);
  }
  vendorExtensions(m, 31, s);
  return m;
}

Pb parameterPb(const Json& p) {
  Pb item;   // ParametersItem
  Pb param;  // Parameter
  if (p["in"] == "body") {
    Pb body;
    body.str(1, p.value("description", ""));
    body.str(2, p["name"].get<std::string>());
    body.str(3, "body");
    body.boolean(4, p.value("required", false));
    body.msg(5, schemaPb(p["schema"]));
    param.msg(1, body);
  } else {
    Pb sub;
    bool path = p["in"] == "path";
    sub.boolean(1, p.value("required", false));
    sub.str(2, p["in"].get<std::string>());
    sub.str(3, p.value("description", ""));
    sub.str(4, p["name"].get<std::string>());
    sub.str(path ? 5 : 6, p.value("type", "string"));
    Pb nonBody;
    nonBody.msg(path ? 4 : 3, sub);
    param.msg(2, nonBody);
  }
  item.msg(1, param);
  return item;
}

Pb operationPb(const Json& op) {
  Pb m;
  for (const auto& t : op["tags"]) m.str(1, t.get<std::string>());
  m.str(3, op.value("description", ""));
  m.str(5, op.value("operationId", ""));
  for (const auto& p : op["produces"]) m.str(6, p.get<std::string>());
  for (const auto& c : op["consumes"]) m.str(7, c.get<std::string>());
  for (const auto& p : op["parameters"]) m.msg(8, parameterPb(p));
  Pb responses;
  for (auto it = op["responses"].begin(); it != op["responses"].end(); ++it) {
    Pb resp;
    resp.str(1, it.value().value("description", ""));
    if (it.value().contains("schema")) {
      Pb item;
      item.msg(1, schemaPb(it.value()["schema"]));
      resp.msg(2, item);
    }
    Pb value;
    value.msg(1, resp);
    Pb named;
    named.str(1, it.key());
    named.msg(2, value);
    responses.msg(1, named);
  }
  m.msg(9, responses);
  for (const auto& s : op["schemes"]) m.str(10, s.get<std::string>());
  vendorExtensions(m, 13, op);
  return m;
}

}  // namespace

Json openApiSchemas() {
  Json s = metaSchemas();
  s["io.vmhost.v1.VirtualMachine"] = topLevel(
      "A virtual machine: a pet VM that vmhost places on a node and keeps running "
      "according to its runStrategy.",
      kGroup, kVersion, kVirtualMachineKind, vmSpecSchema(), vmStatusSchema(), true);
  s["io.vmhost.v1.VirtualMachineList"] =
      listOf("io.vmhost.v1.VirtualMachine", kGroup, kVersion, "VirtualMachineList");
  s["io.vmhost.v1.Node"] = topLevel(
      "A host that runs VMs. Registered by the node agent; labelled kubernetes.io/hostname=<name>.",
      kGroup, kVersion, kNodeKind,
      obj("Operator-set node state.",
          Json{{"unschedulable", boolean("Cordoned: no new VMs are placed here.")}}),
      obj("Reported by the node agent.",
          Json{{"capacity", resourcesSchema("What the host has.")},
               {"allocatable", resourcesSchema("What VMs may use.")},
               {"conditions", conditionsSchema("Node conditions (Ready).")}}),
      false);
  s["io.vmhost.v1.NodeList"] = listOf("io.vmhost.v1.Node", kGroup, kVersion, "NodeList");
  s["io.kubevirt.v1alpha1.VM"] = topLevel(
      "The seed demo's KubeVirt v1alpha1 VM, served as a view of vmhost.io/v1 "
      "VirtualMachine objects.",
      kKubevirtGroup, kKubevirtVersion, kKubevirtKind, kubevirtSpecSchema(),
      obj("Observed state.", Json{{"phase", enumStr("Lifecycle phase.", list(kPhases))},
                                  {"nodeName", str("The node the VM is bound to.")},
                                  {"conditions", conditionsSchema("Conditions.")}}),
      true);
  s["io.kubevirt.v1alpha1.VMList"] =
      listOf("io.kubevirt.v1alpha1.VM", kKubevirtGroup, kKubevirtVersion, "VMList");
  return s;
}

std::string swaggerToProtobuf(const Json& swagger) {
  Pb doc;
  doc.str(1, swagger.value("swagger", "2.0"));
  Pb info;
  info.str(1, swagger["info"].value("title", ""));
  info.str(2, swagger["info"].value("version", ""));
  doc.msg(2, info);
  Pb paths;
  for (auto it = swagger["paths"].begin(); it != swagger["paths"].end(); ++it) {
    Pb item;
    static const std::pair<const char*, int> kOps[] = {
        {"get", 2}, {"put", 3}, {"post", 4}, {"delete", 5}, {"patch", 8}};
    for (auto [name, field] : kOps) {
      if (it.value().contains(name)) item.msg(field, operationPb(it.value()[name]));
    }
    if (it.value().contains("parameters")) {
      for (const auto& p : it.value()["parameters"]) item.msg(9, parameterPb(p));
    }
    Pb named;
    named.str(1, it.key());
    named.msg(2, item);
    paths.msg(2, named);
  }
  doc.msg(8, paths);
  Pb defs;
  for (auto it = swagger["definitions"].begin(); it != swagger["definitions"].end(); ++it) {
    Pb named;
    named.str(1, it.key());
    named.msg(2, schemaPb(it.value()));
    defs.msg(1, named);
  }
  doc.msg(9, defs);
  return doc.bytes();
}

OpenApiDocs buildOpenApiDocs(const std::string& serverVersion) {
  OpenApiDocs docs;
  Json schemas = openApiSchemas();
  Json allPaths = Json::object();
  Json v3Index = Json{{"paths", Json::object()}};

  struct Gv {
    std::string group, version;
  };
  for (const Gv& gv : {Gv{kGroup, kVersion}, Gv{kKubevirtGroup, kKubevirtVersion}}) {
    Json paths = Json::object();
    Json comps = Json::object();
    for (const auto& r : resourceDocs()) {
      if (r.group != gv.group || r.version != gv.version) continue;
      Json p = pathsFor(r);
      for (auto it = p.begin(); it != p.end(); ++it) {
        paths[it.key()] = it.value();
        allPaths[it.key()] = it.value();
      }
      comps[r.schemaName] = schemas[r.schemaName];
      comps[r.schemaName + "List"] = schemas[r.schemaName + "List"];
    }
    for (const char* meta : {"ObjectMeta", "ListMeta", "Status"}) {
      comps[std::string(kMetaPrefix) + meta] = schemas[std::string(kMetaPrefix) + meta];
    }
    Json doc = Json{{"openapi", "3.0.0"},
                    {"info", {{"title", "vmhost"}, {"version", serverVersion}}},
                    {"paths", std::move(paths)},
                    {"components", {{"schemas", std::move(comps)}}}};
    OpenApiDocs::GroupVersionDoc g;
    g.path = "apis/" + gv.group + "/" + gv.version;
    g.json = doc.dump();
    g.hash = fnv1aHex(g.json);
    v3Index["paths"][g.path] =
        Json{{"serverRelativeURL", "/openapi/v3/" + g.path + "?hash=" + g.hash}};
    docs.v3.push_back(std::move(g));
  }
  // The core group serves no resources, but kubectl asks for its document.
  Json core = Json{{"openapi", "3.0.0"},
                   {"info", {{"title", "vmhost"}, {"version", serverVersion}}},
                   {"paths", Json::object()},
                   {"components", {{"schemas", Json::object()}}}};
  OpenApiDocs::GroupVersionDoc c;
  c.path = "api/v1";
  c.json = core.dump();
  c.hash = fnv1aHex(c.json);
  v3Index["paths"][c.path] =
      Json{{"serverRelativeURL", "/openapi/v3/" + c.path + "?hash=" + c.hash}};
  docs.v3.push_back(std::move(c));
  docs.v3Index = v3Index.dump();

  Json v2Paths = Json::object();
  for (auto it = allPaths.begin(); it != allPaths.end(); ++it) {
    v2Paths[it.key()] = toV2PathItem(it.value());
  }
  Json defs = Json::object();
  for (auto it = schemas.begin(); it != schemas.end(); ++it)
    defs[it.key()] = toV2Schema(it.value());
  Json v2 = Json{{"swagger", "2.0"},
                 {"info", {{"title", "vmhost"}, {"version", serverVersion}}},
                 {"paths", std::move(v2Paths)},
                 {"definitions", std::move(defs)}};
  docs.v2Json = v2.dump();
  docs.v2Protobuf = swaggerToProtobuf(v2);
  return docs;
}

}  // namespace vmhost::api
