// A served resource: what discovery says of it (ResourceInfo) and the verbs
// it answers (ResourceHandler). The generic REST machinery in rest.h
// implements ResourceHandler for any kind that describes itself with a
// traits struct; resources/ holds one file per resource and the one table
// (resources/registry.h) that registers them.
#pragma once

#include "api/types.h"
#include "apiserver/http.h"
#include "common/result.h"
#include "store/store.h"

#include <kj/timer.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vmhost::apiserver {

struct ResourceInfo {
  std::string group;  // "" for the core group (/api/v1)
  std::string version;
  std::string plural, singular, kind;
  bool namespaced = true;
  std::vector<std::string> shortNames;
  std::vector<std::string> categories;
  // The OpenAPI schema name of the kind, e.g. "io.vmhost.v1.VirtualMachine".
  std::string schemaName;
  std::vector<std::string> verbs = {"create", "delete", "get", "list", "patch", "update", "watch"};
  bool statusSubresource = true;

  std::string apiVersion() const { return group.empty() ? version : group + "/" + version; }
  // "virtualmachines.vmhost.io", "events" (core), as Kubernetes' messages say it.
  std::string groupResource() const { return group.empty() ? plural : plural + "." + group; }
  std::string qualifiedKind() const { return group.empty() ? kind : kind + "." + group; }
};

// What a handler may use; owned by the server.
struct Services {
  store::Store& store;
  kj::Timer& timer;
  // A watch without timeoutSeconds ends after this long.
  std::chrono::seconds maxWatchTimeout;
};

class ResourceHandler {
 public:
  explicit ResourceHandler(ResourceInfo info) : info(std::move(info)) {}
  virtual ~ResourceHandler() = default;
  const ResourceInfo info;

  virtual Reply get(const Request& req, const std::string& ns, const std::string& name) = 0;
  virtual Reply list(const Request& req, const std::string& ns) = 0;
  virtual Reply create(const Request& req, const std::string& ns, const Json& body) = 0;
  virtual Reply update(const Request& req, const std::string& ns, const std::string& name,
                       const Json& body, bool status) = 0;
  virtual Reply patch(const Request& req, const std::string& ns, const std::string& name,
                      const Json& patch, bool jsonPatch, bool status) = 0;
  virtual Reply remove(const Request& req, const std::string& ns, const std::string& name) = 0;
  // Streams watch events through `out` (or answers an error with it).
  virtual kj::Promise<void> watch(const Request& req, const std::string& ns, Responder& out) = 0;
};

// A request for a resource: /apis/<g>/<v>/[namespaces/<ns>/]<resource>[/<name>[/<sub>]]
// or, for the core group (group ""), /api/v1/[namespaces/<ns>/]<resource>[...].
struct Route {
  std::string group, version;
  std::string ns;
  std::string resource;
  std::string name;
  std::string subresource;
  bool nsGiven = false;
};
std::optional<Route> parseRoute(const Request& req);

// Whether the route's scope fits the resource: a namespaced resource is
// addressed within a namespace (or listed across all of them), a
// cluster-scoped one never is.
bool scopeMatches(const ResourceInfo& info, const Route& route, const Request& req);

// The verbs of one resource (the main resource and its status
// subresource), mapped from the HTTP method onto the handler. Other
// subresources are the server's (console, certificate): 404 here.
kj::Promise<void> serveResource(ResourceHandler& h, const Route& route, Request& req,
                                Responder& out);

// Errors in Kubernetes' words, naming the resource.
Reply notFound(const ResourceInfo& r, const std::string& name);
Reply conflict(const ResourceInfo& r, const std::string& name, const std::string& why);
Reply invalidReply(const ResourceInfo& r, const std::string& name, const api::FieldErrors& errs);
Reply storeErrorReply(const ResourceInfo& r, const std::string& name, const Error& e);
// "the object has been modified; please apply your changes to the latest version..."
extern const char* const kModified;

// A Table column definition (meta.k8s.io/v1), for kubectl get.
Json column(const std::string& name, const std::string& type, const std::string& desc,
            int priority = 0, const std::string& format = "");
// The AGE cell of an object.
std::string age(const api::ObjectMeta& m);

}  // namespace vmhost::apiserver
