#include "apiserver/openapi.h"

#include "apiserver/openapi_schema.h"

#include <algorithm>
#include <cstdio>
#include <optional>

namespace vmhost::apiserver {

using namespace oas;

namespace {

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

Json operation(const ResourceInfo& r, const std::string& id, const std::string& action,
               const std::string& desc, Json params, const std::string& responseSchema,
               const std::string& responseCode, std::optional<Json> body) {
  Json op = Json::object();
  op["tags"] = Json::array({(r.group.empty() ? std::string("core") : r.group) + "_" + r.version});
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
Json pathsFor(const ResourceInfo& r) {
  Json paths = Json::object();
  std::string base =
      r.group.empty() ? "/api/" + r.version + "/" : "/apis/" + r.group + "/" + r.version + "/";
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
  if (r.statusSubresource) {
    paths[item + "/status"] =
        Json{{"get", operation(r, "read" + suffix + "Status", "get",
                               "read status of the specified " + r.kind, Json::array(),
                               r.schemaName, "200", std::nullopt)},
             {"put", operation(r, "replace" + suffix + "Status", "put",
                               "replace status of the specified " + r.kind, bodyParams(),
                               r.schemaName, "200", requestBody(r.schemaName))},
             {"patch", operation(r, "patch" + suffix + "Status", "patch",
                                 "partially update status of the specified " + r.kind, bodyParams(),
                                 r.schemaName, "200", patchBody())},
             {"parameters", itemParams}};
  }
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

Json openApiSchemas(const std::vector<ResourceRegistration>& resources) {
  Json s = metaSchemas();
  for (const auto& r : resources) {
    const ResourceInfo& i = r.info;
    s[i.schemaName] = r.schema();
    s[i.schemaName + "List"] = listOf(i.schemaName, i.group, i.version, i.kind + "List");
  }
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

OpenApiDocs buildOpenApiDocs(const std::vector<ResourceRegistration>& resources,
                             const std::string& serverVersion) {
  OpenApiDocs docs;
  Json schemas = openApiSchemas(resources);
  Json allPaths = Json::object();
  Json v3Index = Json{{"paths", Json::object()}};

  // One document per group-version; the core group's is served even when
  // it has no resource of its own, because kubectl asks for it.
  std::vector<std::pair<std::string, std::string>> gvs{{"", "v1"}};
  for (const auto& r : resources) {
    std::pair<std::string, std::string> gv{r.info.group, r.info.version};
    if (std::find(gvs.begin(), gvs.end(), gv) == gvs.end()) gvs.push_back(gv);
  }
  for (const auto& [group, version] : gvs) {
    Json paths = Json::object();
    Json comps = Json::object();
    for (const auto& reg : resources) {
      const ResourceInfo& r = reg.info;
      if (r.group != group || r.version != version) continue;
      Json p = pathsFor(r);
      for (auto it = p.begin(); it != p.end(); ++it) {
        paths[it.key()] = it.value();
        allPaths[it.key()] = it.value();
      }
      comps[r.schemaName] = schemas[r.schemaName];
      comps[r.schemaName + "List"] = schemas[r.schemaName + "List"];
    }
    if (!comps.empty()) {
      for (const char* meta : {"ObjectMeta", "ListMeta", "Status"}) {
        comps[std::string(kMetaPrefix) + meta] = schemas[std::string(kMetaPrefix) + meta];
      }
    }
    Json doc = Json{{"openapi", "3.0.0"},
                    {"info", {{"title", "vmhost"}, {"version", serverVersion}}},
                    {"paths", std::move(paths)},
                    {"components", {{"schemas", std::move(comps)}}}};
    OpenApiDocs::GroupVersionDoc g;
    g.path = group.empty() ? "api/" + version : "apis/" + group + "/" + version;
    g.json = doc.dump();
    g.hash = fnv1aHex(g.json);
    v3Index["paths"][g.path] =
        Json{{"serverRelativeURL", "/openapi/v3/" + g.path + "?hash=" + g.hash}};
    docs.v3.push_back(std::move(g));
  }
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

std::optional<Reply> serveOpenApi(const OpenApiDocs& docs, const Request& req) {
  const auto& s = req.segments;
  if (s.size() == 2 && s[0] == "openapi" && s[1] == "v2") {
    bool protobuf = req.accept.find("protobuf") != std::string::npos;
    if (protobuf) {
      return Reply{
          200, docs.v2Protobuf, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf", {}};
    }
    return Reply{200, docs.v2Json, "application/json", {}};
  }
  if (s.size() == 2 && s[0] == "openapi" && s[1] == "v3") {
    return Reply{200, docs.v3Index, "application/json", {}};
  }
  if (s.size() >= 3 && s[0] == "openapi" && s[1] == "v3") {
    std::string path;
    for (size_t i = 2; i < s.size(); ++i) path += (i > 2 ? "/" : "") + s[i];
    for (const auto& d : docs.v3) {
      if (d.path == path) return Reply{200, d.json, "application/json", {}};
    }
  }
  return std::nullopt;
}

}  // namespace vmhost::apiserver
