#include "apiserver/discovery.h"

#include <algorithm>

namespace vmhost::apiserver {

Discovery::Discovery(std::vector<ResourceInfo> resources, std::string vmhostVersion)
    : resources_(std::move(resources)), vmhostVersion_(std::move(vmhostVersion)) {
  for (const auto& r : resources_) {
    std::pair<std::string, std::string> gv{r.group, r.version};
    if (!r.group.empty() && std::find(groups_.begin(), groups_.end(), gv) == groups_.end()) {
      groups_.push_back(gv);
    }
  }
}

Json Discovery::group(const std::string& name) const {
  for (const auto& [g, v] : groups_) {
    if (g != name) continue;
    Json gv{{"groupVersion", g + "/" + v}, {"version", v}};
    return Json{{"name", g}, {"versions", Json::array({gv})}, {"preferredVersion", gv}};
  }
  return nullptr;
}

Json Discovery::resourceList(const std::string& group, const std::string& version) const {
  Json resources = Json::array();
  if (group.empty() && version == "v1") {
    // The core group serves namespaces (implicit, namespaces.h) besides what
    // is registered in it (kubectl refuses an empty core group). Nodes are
    // vmhost.io/v1 only: kubectl resolves `nodes` to them all the same,
    // while a core v1 Node would make kubectl use strategic merge patch and
    // describe it by asking for pods.
    resources.push_back(Json{{"name", "namespaces"},
                             {"singularName", "namespace"},
                             {"namespaced", false},
                             {"kind", "Namespace"},
                             {"verbs", Json::array({"get", "list"})},
                             {"shortNames", Json::array({"ns"})}});
  }
  for (const auto& i : resources_) {
    if (i.group != group || i.version != version) continue;
    Json r{{"name", i.plural},
           {"singularName", i.singular},
           {"namespaced", i.namespaced},
           {"kind", i.kind},
           {"verbs", i.verbs}};
    if (!i.shortNames.empty()) r["shortNames"] = i.shortNames;
    if (!i.categories.empty()) r["categories"] = i.categories;
    resources.push_back(std::move(r));
    if (i.statusSubresource) {
      resources.push_back(Json{{"name", i.plural + "/status"},
                               {"singularName", ""},
                               {"namespaced", i.namespaced},
                               {"kind", i.kind},
                               {"verbs", Json::array({"get", "patch", "update"})}});
    }
  }
  Json list{{"kind", "APIResourceList"},
            {"apiVersion", "v1"},
            {"groupVersion", group.empty() ? version : group + "/" + version},
            {"resources", resources}};
  if (group.empty()) list.erase("apiVersion");
  return list;
}

std::optional<Reply> Discovery::serve(const Request& req, uint16_t port) const {
  const auto& s = req.segments;
  if (s.size() == 1 && s[0] == "version") {
    return jsonReply(200, Json{{"major", "1"},
                               {"minor", "32"},
                               {"gitVersion", "v1.32.0+vmhost-" + vmhostVersion_},
                               {"gitCommit", ""},
                               {"gitTreeState", "clean"},
                               {"buildDate", "1970-01-01T00:00:00Z"},
                               {"goVersion", "none (vmhost, C++)"},
                               {"compiler", "gc"},
                               {"platform", "linux/amd64"}});
  }
  if (s.size() == 1 && s[0] == "api") {
    std::string addr = "127.0.0.1:" + std::to_string(port);
    return jsonReply(
        200, Json{{"kind", "APIVersions"},
                  {"versions", Json::array({"v1"})},
                  {"serverAddressByClientCIDRs",
                   Json::array({Json{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", addr}}})}});
  }
  if (s.size() == 2 && s[0] == "api" && s[1] == "v1") return jsonReply(200, resourceList("", "v1"));
  if (s.size() == 1 && s[0] == "apis") {
    Json groups = Json::array();
    for (const auto& [g, v] : groups_) groups.push_back(group(g));
    return jsonReply(200, Json{{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", groups}});
  }
  if (s.size() == 2 && s[0] == "apis") {
    Json g = group(s[1]);
    if (g.is_null()) return std::nullopt;
    g["kind"] = "APIGroup";
    g["apiVersion"] = "v1";
    return jsonReply(200, g);
  }
  if (s.size() == 3 && s[0] == "apis") {
    for (const auto& [g, v] : groups_) {
      if (g == s[1] && v == s[2]) return jsonReply(200, resourceList(g, v));
    }
  }
  return std::nullopt;
}

}  // namespace vmhost::apiserver
