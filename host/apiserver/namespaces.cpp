#include "apiserver/namespaces.h"

#include "api/objects.h"
#include "apiserver/resource.h"

#include <set>

namespace vmhost::apiserver {

Reply serveNamespaces(store::Store& store, const Request& req, const std::string& name) {
  std::set<std::string> names{"default"};
  store::ListOptions opts;
  opts.limit = 1000;
  for (int page = 0; page < 10000; ++page) {
    auto res = store.list(api::kVirtualMachinesResource, "", opts);
    if (!res) return statusReply(503, "ServiceUnavailable", res.error().message);
    for (const auto& o : res->items) names.insert(o.key.ns);
    if (!res->next) break;
    opts.after = res->next;
  }
  auto object = [](const std::string& n) {
    return Json{{"apiVersion", "v1"},
                {"kind", "Namespace"},
                {"metadata", {{"name", n}}},
                {"spec", Json::object()},
                {"status", {{"phase", "Active"}}}};
  };
  std::vector<std::string> selected;
  if (!name.empty()) {
    if (!names.count(name)) {
      return statusReply(404, "NotFound", "namespaces \"" + name + "\" not found",
                         Json{{"name", name}, {"kind", "namespaces"}});
    }
    selected.push_back(name);
  } else {
    selected.assign(names.begin(), names.end());
  }
  if (req.wantTable) {
    Json rows = Json::array();
    for (const auto& n : selected) {
      Json partial = Json::object();
      partial["kind"] = "PartialObjectMetadata";
      partial["apiVersion"] = "meta.k8s.io/v1";
      partial["metadata"] = Json{{"name", n}};
      Json row = Json::object();
      row["cells"] = Json::array({n, "Active"});
      row["object"] = std::move(partial);
      rows.push_back(std::move(row));
    }
    return jsonReply(200, Json{{"kind", "Table"},
                               {"apiVersion", "meta.k8s.io/v1"},
                               {"metadata", Json::object()},
                               {"columnDefinitions",
                                Json::array({column("Name", "string", "Namespace.", 0, "name"),
                                             column("Status", "string", "Always Active.")})},
                               {"rows", rows}});
  }
  if (!name.empty()) return jsonReply(200, object(name));
  Json items = Json::array();
  for (const auto& n : selected) items.push_back(object(n));
  return jsonReply(200, Json{{"apiVersion", "v1"},
                             {"kind", "NamespaceList"},
                             {"metadata", Json::object()},
                             {"items", items}});
}

}  // namespace vmhost::apiserver
