#include "apiserver/resource.h"

#include "api/timestamps.h"

namespace vmhost::apiserver {

Reply notFound(const ResourceInfo& r, const std::string& name) {
  return statusReply(404, "NotFound", r.groupResource() + " \"" + name + "\" not found",
                     Json{{"name", name}, {"group", r.group}, {"kind", r.plural}});
}

Reply conflict(const ResourceInfo& r, const std::string& name, const std::string& why) {
  return statusReply(
      409, "Conflict",
      "Operation cannot be fulfilled on " + r.groupResource() + " \"" + name + "\": " + why,
      Json{{"name", name}, {"group", r.group}, {"kind", r.plural}});
}

const char* const kModified =
    "the object has been modified; please apply your changes to the latest version and try again";

Reply invalidReply(const ResourceInfo& r, const std::string& name, const api::FieldErrors& errs) {
  std::string list;
  for (size_t i = 0; i < errs.size(); ++i) list += (i ? ", " : "") + errs[i].toString();
  if (errs.size() > 1) list = "[" + list + "]";
  Json causes = Json::array();
  for (const auto& e : errs) {
    causes.push_back(Json{{"reason", e.reason()}, {"message", e.body()}, {"field", e.field}});
  }
  return statusReply(
      422, "Invalid", r.qualifiedKind() + " \"" + name + "\" is invalid: " + list,
      Json{{"name", name}, {"group", r.group}, {"kind", r.kind}, {"causes", causes}});
}

Reply storeErrorReply(const ResourceInfo& r, const std::string& name, const Error& e) {
  switch (e.code) {
    case VMHOST_ERR_NOT_FOUND:
      return notFound(r, name);
    case VMHOST_ERR_ALREADY_EXISTS:
      return statusReply(409, "AlreadyExists",
                         r.groupResource() + " \"" + name + "\" already exists",
                         Json{{"name", name}, {"group", r.group}, {"kind", r.plural}});
    case VMHOST_ERR_ABORTED:
      return conflict(r, name, kModified);
    case VMHOST_ERR_OUT_OF_RANGE:
      return statusReply(410, "Expired", e.message);
    case VMHOST_ERR_RESOURCE_EXHAUSTED:
      return statusReply(413, "RequestEntityTooLarge",
                         "the object is too large to store: " + e.message);
    case VMHOST_ERR_INVALID_ARGUMENT:
      return badRequest(e.message);
    case VMHOST_ERR_UNAVAILABLE:
      return statusReply(503, "ServiceUnavailable", e.message);
    default:
      return statusReply(500, "InternalError", e.describe());
  }
}

std::string age(const api::ObjectMeta& m) { return api::ageOf(m.creationTimestamp); }

Json column(const std::string& name, const std::string& type, const std::string& desc, int priority,
            const std::string& format) {
  return Json{{"name", name},
              {"type", type},
              {"format", format},
              {"description", desc},
              {"priority", priority}};
}

std::optional<Route> parseRoute(const Request& req) {
  const auto& s = req.segments;
  Route r;
  size_t i;
  if (s.size() >= 4 && s[0] == "apis") {
    r.group = s[1];
    r.version = s[2];
    i = 3;
  } else if (s.size() >= 3 && s[0] == "api") {
    r.version = s[1];
    i = 2;
  } else {
    return std::nullopt;
  }
  if (s[i] == "namespaces" && s.size() >= i + 3) {
    r.ns = s[i + 1];
    r.nsGiven = true;
    i += 2;
  }
  r.resource = s[i++];
  if (i < s.size()) r.name = s[i++];
  if (i < s.size()) r.subresource = s[i++];
  if (i < s.size()) return std::nullopt;
  return r;
}

bool scopeMatches(const ResourceInfo& info, const Route& route, const Request& req) {
  if (route.nsGiven == info.namespaced) return true;
  // All namespaces at once: a list or watch of a namespaced resource.
  return info.namespaced && !route.nsGiven && route.name.empty() && req.verb == Verb::kGet;
}

kj::Promise<void> serveResource(ResourceHandler& h, const Route& route, Request& req,
                                Responder& out) {
  const ResourceInfo& info = h.info;
  if (!scopeMatches(info, route, req)) return out.send(notFoundReply());
  bool status = route.subresource == "status";
  if (!route.subresource.empty() && !(status && info.statusSubresource)) {
    return out.send(notFoundReply());
  }
  if (info.namespaced && route.nsGiven) {
    auto errs = api::isDns1123Label(route.ns);
    if (!errs.empty()) {
      return out.send(badRequest("invalid namespace \"" + route.ns + "\": " + errs[0]));
    }
  }
  if (route.name.empty()) {
    if (req.verb == Verb::kGet) {
      if (req.flag("watch")) return h.watch(req, route.ns, out);
      return out.send(h.list(req, route.ns));
    }
    if (req.verb == Verb::kPost) {
      auto body = requestBody(req);
      if (auto* r = std::get_if<Reply>(&body)) return out.send(std::move(*r));
      return out.send(h.create(req, route.ns, std::get<Json>(body)));
    }
    return out.send(methodNotAllowed());
  }
  switch (req.verb) {
    case Verb::kGet:
      if (req.flag("watch")) {
        // Legacy single-object watch: the same stream, pinned by name.
        req.query["fieldSelector"] = "metadata.name=" + route.name;
        return h.watch(req, route.ns, out);
      }
      return out.send(h.get(req, route.ns, route.name));
    case Verb::kPut: {
      auto body = requestBody(req);
      if (auto* r = std::get_if<Reply>(&body)) return out.send(std::move(*r));
      return out.send(h.update(req, route.ns, route.name, std::get<Json>(body), status));
    }
    case Verb::kPatch: {
      bool jsonPatch = req.contentType == "application/json-patch+json";
      if (!jsonPatch && req.contentType != "application/merge-patch+json") {
        return out.send(statusReply(415, "UnsupportedMediaType",
                                    "the body of the request was in an unknown format - accepted "
                                    "media types include: application/json-patch+json, "
                                    "application/merge-patch+json"));
      }
      auto body = parseBody(req.body, req.contentType);
      if (auto* r = std::get_if<Reply>(&body)) return out.send(std::move(*r));
      return out.send(h.patch(req, route.ns, route.name, std::get<Json>(body), jsonPatch, status));
    }
    case Verb::kDelete:
      if (status) return out.send(methodNotAllowed());
      return out.send(h.remove(req, route.ns, route.name));
    default:
      return out.send(methodNotAllowed());
  }
}

}  // namespace vmhost::apiserver
