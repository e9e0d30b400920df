#include "api/server.h"

#include "api/kubevirt.h"
#include "api/objects.h"
#include "api/openapi.h"
#include "api/selectors.h"
#include "api/types.h"
#include "common/waker.h"
#include "common/yaml.h"

#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <kj/compat/tls.h>
#include <kj/debug.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <thread>

namespace vmhost::api {

namespace {

using Clock = std::chrono::steady_clock;

// Documents nested deeper than this are refused before parsing: parsers and
// merge patch recurse, and no manifest needs more.
constexpr int kMaxNestingDepth = 100;

// ================================================================ replies

struct Reply {
  unsigned code = 200;
  std::string body;
  std::string contentType = "application/json";
  std::vector<std::string> warnings;
};

Reply jsonReply(unsigned code, const Json& j) {
  // Names from the URL may carry invalid UTF-8 into messages; replace it
  // rather than fail the reply.
  return Reply{
      code, j.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json", {}};
}

Json statusObject(unsigned code, const std::string& reason, const std::string& message,
                  Json details = nullptr) {
  Json j = Json::object();
  j["kind"] = "Status";
  j["apiVersion"] = "v1";
  j["metadata"] = Json::object();
  j["status"] = "Failure";
  j["message"] = message;
  j["reason"] = reason;
  if (!details.is_null()) j["details"] = std::move(details);
  j["code"] = code;
  return j;
}

Reply statusReply(unsigned code, const std::string& reason, const std::string& message,
                  Json details = nullptr) {
  return jsonReply(code, statusObject(code, reason, message, std::move(details)));
}

Reply badRequest(const std::string& message) { return statusReply(400, "BadRequest", message); }

const char* statusText(unsigned code) {
  switch (code) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 413:
      return "Request Entity Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

// ================================================================ requests

std::string percentDecode(std::string_view s, bool plusIsSpace) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else if (c == '+' && plusIsSpace) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

enum class Verb : uint8_t { kGet, kPost, kPut, kPatch, kDelete, kOther };

struct Request {
  Verb verb = Verb::kOther;
  std::string method;  // for messages
  std::string path;
  std::vector<std::string> segments;
  std::map<std::string, std::string> query;
  std::string accept;
  std::string contentType;  // media type only, lower case
  std::string body;
  bool wantTable = false;
  FieldValidation fieldValidation = FieldValidation::kWarn;
  bool dryRun = false;
  const kj::HttpHeaders* headers = nullptr;  // valid while the request is served

  std::string param(const std::string& key) const {
    auto it = query.find(key);
    return it == query.end() ? "" : it->second;
  }
  bool flag(const std::string& key) const {
    auto v = param(key);
    return v == "true" || v == "1";
  }
};

void parseTarget(const std::string& url, Request& req) {
  size_t q = url.find('?');
  req.path = url.substr(0, q);
  size_t start = 0;
  for (int guard = 0; guard < 64 && start <= req.path.size(); ++guard) {
    size_t slash = req.path.find('/', start);
    std::string seg =
        req.path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!seg.empty()) req.segments.push_back(percentDecode(seg, false));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (q == std::string::npos) return;
  std::string_view qs(url);
  qs = qs.substr(q + 1);
  size_t pos = 0;
  for (int guard = 0; guard < 256 && pos <= qs.size(); ++guard) {
    size_t amp = qs.find('&', pos);
    std::string_view kv =
        qs.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    if (!kv.empty()) {
      size_t eq = kv.find('=');
      std::string k = percentDecode(kv.substr(0, eq), true);
      std::string v = eq == std::string_view::npos ? "" : percentDecode(kv.substr(eq + 1), true);
      req.query[k] = v;
    }
    if (amp == std::string_view::npos) break;
    pos = amp + 1;
  }
}

std::string mediaType(std::string_view header) {
  std::string out(header.substr(0, header.find(';')));
  out.erase(std::remove(out.begin(), out.end(), ' '), out.end());
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return out;
}

bool isYaml(const std::string& media) {
  return media == "application/yaml" || media == "application/x-yaml" || media == "text/yaml";
}

// Nesting depth of brackets outside strings (JSON), or also of YAML block
// indentation (in steps of one column), whichever is deeper.
int nestingDepth(const std::string& body, bool yaml) {
  int depth = 0, maxDepth = 0;
  bool inString = false, escape = false;
  char quote = 0;
  size_t lineIndent = 0;
  bool atLineStart = true;
  for (char c : body) {
    if (yaml) {
      if (c == '\n') {
        atLineStart = true;
        lineIndent = 0;
        inString = false;
        continue;
      }
      if (atLineStart) {
        if (c == ' ' || c == '-') {
          ++lineIndent;
          if (static_cast<int>(lineIndent) > maxDepth) maxDepth = static_cast<int>(lineIndent) / 2;
          continue;
        }
        atLineStart = false;
      }
    }
    if (inString) {
      if (escape) {
        escape = false;
      } else if (c == '\\' && quote == '"') {
        escape = true;
      } else if (c == quote) {
        inString = false;
      }
      continue;
    }
    if (c == '"' || (yaml && c == '\'')) {
      inString = true;
      quote = c;
    } else if (c == '[' || c == '{') {
      maxDepth = std::max(maxDepth, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return maxDepth;
}

// The body as JSON, or the 400 Status explaining where it is malformed.
std::variant<Json, Reply> parseBody(const std::string& body, const std::string& media) {
  bool yaml = isYaml(media);
  if (nestingDepth(body, yaml) > kMaxNestingDepth) {
    return badRequest("the request body is nested more than " + std::to_string(kMaxNestingDepth) +
                      " levels deep");
  }
  if (yaml) {
    // Without aliases a document has fewer nodes than bytes; with them,
    // the node limit bounds what they expand to.
    auto json = vmhost::yaml::parseToJson(body, {kMaxNestingDepth, body.size() + 16});
    if (!json.ok())
      return badRequest("the request body is not valid YAML: " + json.error().message);
    return Json::parse(json.value(), nullptr, false);
  }
  try {
    return Json::parse(body);
  } catch (const Json::parse_error& e) {
    // nlohmann: "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
    std::string what = e.what();
    size_t at = what.find(" at line ");
    std::string where = at == std::string::npos ? what : what.substr(at + 4);
    return badRequest("the request body is not valid JSON: " + where);
  }
}

// ================================================================ resources

struct ResourceInfo {
  std::string group, version, plural, singular, kind;
  bool namespaced = true;
  std::vector<std::string> shortNames;
  std::vector<std::string> categories;

  std::string apiVersion() const { return group + "/" + version; }
  std::string groupResource() const { return plural + "." + group; }
  std::string qualifiedKind() const { return kind + "." + group; }
};

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

const char* kModified =
    "the object has been modified; please apply your changes to the latest version and try again";

Reply invalidReply(const ResourceInfo& r, const std::string& name, const FieldErrors& errs) {
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

std::string age(const ObjectMeta& m) { return ageOf(m.creationTimestamp); }

Json column(const std::string& name, const std::string& type, const std::string& desc,
            int priority = 0, const std::string& format = "") {
  return Json{{"name", name},
              {"type", type},
              {"format", format},
              {"description", desc},
              {"priority", priority}};
}

// ---- per-kind behaviour ----

struct VmTraits {
  using T = VirtualMachine;
  static Decoded<T> decode(const Json& j, FieldValidation m) { return decodeVirtualMachine(j, m); }
  static FieldErrors validate(const T& v) { return validateVirtualMachine(v); }
  static Json view(const T& v) { return encode(v); }
  static Result<T> fromStore(const store::StoredObject& o) { return decodeStoredVirtualMachine(o); }
  static store::Key key(const std::string& ns, const std::string& name) {
    return virtualMachineKey(ns, name);
  }
  static const char* storeResource() { return kVirtualMachinesResource; }
  static Json specOf(const T& v) { return encodeVirtualMachineSpec(v.spec); }
  static void onCreate(T& v) {
    // Status is the reconcilers'; a new VM starts Pending whatever was sent.
    v.status = VirtualMachineStatus{};
    v.status.phase = "Pending";
  }
  static void keepFromCurrent(T& next, const T& cur) { next.status = cur.status; }
  static void takeStatus(T& next, const T& in) { next.status = in.status; }
  static Json columns() {
    return Json::array({column("Name", "string", "Name of the VM.", 0, "name"),
                        column("Phase", "string", "Lifecycle phase."),
                        column("Node", "string", "The node the VM is bound to."),
                        column("Age", "string", "Time since creation."),
                        column("Cores", "integer", "Virtual CPU cores.", 1),
                        column("Memory", "string", "Guest memory.", 1),
                        column("RunStrategy", "string", "Run strategy.", 1),
                        column("Reason", "string", "Why the VM is not running, if known.", 1)});
  }
  static Json cells(const T& v) {
    std::string reason;
    for (const auto& c : v.status.conditions) {
      if (c.status == "False" && !c.reason.empty()) reason = c.reason;
    }
    return Json::array({v.metadata.name, v.status.phase, v.status.nodeName, age(v.metadata),
                        v.spec.cpu.cores, v.spec.memory.text, v.spec.runStrategy, reason});
  }
  static std::vector<std::string> fieldLabels() {
    return {"metadata.name", "metadata.namespace", "status.phase", "status.nodeName"};
  }
  static std::string field(const T& v, const std::string& f) {
    if (f == "metadata.name") return v.metadata.name;
    if (f == "metadata.namespace") return v.metadata.ns;
    if (f == "status.phase") return v.status.phase;
    if (f == "status.nodeName") return v.status.nodeName;
    return "";
  }
};

struct KubevirtTraits : VmTraits {
  static Decoded<T> decode(const Json& j, FieldValidation m) { return decodeKubevirtVm(j, m); }
  static FieldErrors validate(const T& v) { return validateKubevirtVm(v); }
  static Json view(const T& v) { return encodeKubevirtVm(v); }
  static void takeStatus(T& next, const T& in) {
    // The old kind has no interfaces or observedGeneration: keep ours.
    next.status.phase = in.status.phase;
    next.status.nodeName = in.status.nodeName;
    next.status.conditions = in.status.conditions;
  }
};

struct NodeTraits {
  using T = Node;
  static Decoded<T> decode(const Json& j, FieldValidation m) { return decodeNode(j, m); }
  static FieldErrors validate(const T& v) { return validateNode(v); }
  static Json view(const T& v) { return encode(v); }
  static Result<T> fromStore(const store::StoredObject& o) { return decodeStoredNode(o); }
  static store::Key key(const std::string&, const std::string& name) { return nodeKey(name); }
  static const char* storeResource() { return kNodesResource; }
  static Json specOf(const T& v) { return encode(v)["spec"]; }
  // A node agent may create its Node with status; it is kept.
  static void onCreate(T& v) { applyNodeDefaults(v); }
  static void keepFromCurrent(T& next, const T& cur) {
    next.status = cur.status;
    applyNodeDefaults(next);
  }
  static void takeStatus(T& next, const T& in) { next.status = in.status; }
  static Json columns() {
    return Json::array({column("Name", "string", "Name of the node.", 0, "name"),
                        column("Status", "string",
                               "Ready, NotReady or Unknown; "
                               "SchedulingDisabled when cordoned."),
                        column("CPU", "string", "Allocatable CPUs."),
                        column("Memory", "string", "Allocatable memory."),
                        column("Age", "string", "Time since registration."),
                        column("Capacity-CPU", "string", "CPUs of the host.", 1),
                        column("Capacity-Memory", "string", "Memory of the host.", 1)});
  }
  static Json cells(const T& n) {
    auto q = [](const std::optional<Quantity>& v) { return v ? v->text : std::string("<none>"); };
    return Json::array({n.metadata.name, n.readiness(), q(n.status.allocatable.cpu),
                        q(n.status.allocatable.memory), age(n.metadata), q(n.status.capacity.cpu),
                        q(n.status.capacity.memory)});
  }
  static std::vector<std::string> fieldLabels() { return {"metadata.name", "spec.unschedulable"}; }
  static std::string field(const T& n, const std::string& f) {
    if (f == "metadata.name") return n.metadata.name;
    if (f == "spec.unschedulable") return n.spec.unschedulable ? "true" : "false";
    return "";
  }
};

using vmhost::Waker;

struct Services {
  store::Store& store;
  kj::Timer& timer;
  const ServerOptions& options;
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
  // Either a Reply (an error before streaming) or a promise that streams.
  virtual std::variant<Reply, kj::Promise<void>> watch(const Request& req, const std::string& ns,
                                                       kj::HttpService::Response& response,
                                                       const kj::HttpHeaderTable& table) = 0;
};

std::string base64url(const std::string& in) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  int val = 0, bits = -6;
  for (unsigned char c : in) {
    val = (val << 8) + c;
    bits += 8;
    while (bits >= 0) {
      out.push_back(k[(val >> bits) & 0x3F]);
      bits -= 6;
    }
  }
  if (bits > -6) out.push_back(k[((val << 8) >> (bits + 8)) & 0x3F]);
  return out;
}

std::optional<std::string> unbase64url(const std::string& in) {
  std::string out;
  int val = 0, bits = -8;
  for (char c : in) {
    int d;
    if (c >= 'A' && c <= 'Z') {
      d = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      d = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      d = c - '0' + 52;
    } else if (c == '-') {
      d = 62;
    } else if (c == '_') {
      d = 63;
    } else {
      return std::nullopt;
    }
    val = (val << 6) + d;
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

std::optional<int64_t> parseRevision(const std::string& s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  if (!std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit((unsigned char)c); })) {
    return std::nullopt;
  }
  return std::stoll(s);
}

std::string randomSuffix() {
  // Kubernetes' generateName alphabet: no vowels, no confusable characters.
  static const char* k = "bcdfghjklmnpqrstvwxz2456789";
  thread_local std::mt19937 rng{std::random_device{}()};
  std::string s;
  for (int i = 0; i < 5; ++i) s += k[rng() % 27];
  return s;
}

template <typename Tr>
class TypedHandler final : public ResourceHandler {
 public:
  using T = typename Tr::T;

  TypedHandler(ResourceInfo info, Services services)
      : ResourceHandler(std::move(info)), svc_(services) {}

  Reply get(const Request& req, const std::string& ns, const std::string& name) override {
    auto cur = load(ns, name);
    if (!cur) return storeErrorReply(info, name, cur.error());
    if (req.wantTable) {
      return jsonReply(200, table({cur.value()}, cur->metadata.resourceVersion, req, true));
    }
    return jsonReply(200, Tr::view(*cur));
  }

  Reply list(const Request& req, const std::string& ns) override {
    auto sel = selectors(req);
    if (auto* r = std::get_if<Reply>(&sel)) return *r;
    auto& [labels, fields] = std::get<Selectors>(sel);
    store::ListOptions opts;
    std::string listRv;
    if (auto limit = parseRevision(req.param("limit")); limit && *limit > 0) {
      opts.limit = static_cast<size_t>(*limit);
    }
    if (auto token = req.param("continue"); !token.empty()) {
      auto raw = unbase64url(token);
      Json t = raw ? Json::parse(*raw, nullptr, false) : Json();
      if (!t.is_object() || !t["ns"].is_string() || !t["name"].is_string() ||
          !t["rv"].is_string()) {
        return statusReply(410, "Expired", "the provided continue parameter is not valid");
      }
      opts.after = store::ListCursor{t["ns"], t["name"]};
      listRv = t["rv"];
    }
    auto res = svc_.store.list(Tr::storeResource(), ns, opts);
    if (!res) return storeErrorReply(info, "", res.error());
    if (listRv.empty()) listRv = std::to_string(res->revision);
    std::vector<T> items;
    for (const auto& o : res->items) {
      auto obj = Tr::fromStore(o);
      if (!obj) continue;  // undecodable values are skipped, not fatal to the list
      if (!matches(*obj, labels, fields)) continue;
      items.push_back(std::move(obj.value()));
    }
    Json meta = Json{{"resourceVersion", listRv}};
    if (res->next) {
      meta["continue"] =
          base64url(Json{{"rv", listRv}, {"ns", res->next->ns}, {"name", res->next->name}}.dump());
    }
    if (req.wantTable) {
      Json t = table(items, listRv, req, true);
      t["metadata"] = meta;
      return jsonReply(200, t);
    }
    Json j = Json::object();
    j["apiVersion"] = info.apiVersion();
    j["kind"] = info.kind + "List";
    j["metadata"] = meta;
    Json arr = Json::array();
    for (const auto& it : items) arr.push_back(Tr::view(it));
    j["items"] = std::move(arr);
    return jsonReply(200, j);
  }

  Reply create(const Request& req, const std::string& ns, const Json& body) override {
    if (auto r = checkTypeMeta(body)) return *r;
    auto d = Tr::decode(body, req.fieldValidation);
    T obj = std::move(d.value);
    if (!d.ok()) return withWarnings(invalidReply(info, obj.metadata.name, d.errors), d.warnings);
    if (info.namespaced) {
      if (!obj.metadata.ns.empty() && obj.metadata.ns != ns) {
        return badRequest(
            "the namespace of the provided object does not match the namespace sent on the "
            "request");
      }
      obj.metadata.ns = ns;
    } else {
      obj.metadata.ns.clear();
    }
    if (obj.metadata.name.empty() && !obj.metadata.generateName.empty()) {
      obj.metadata.name = obj.metadata.generateName + randomSuffix();
    }
    obj.metadata.uid = newUid();
    obj.metadata.creationTimestamp = nowRfc3339();
    obj.metadata.generation = 1;
    obj.metadata.resourceVersion.clear();
    obj.metadata.deletionTimestamp.reset();
    Tr::onCreate(obj);
    auto errs = Tr::validate(obj);
    if (!errs.empty()) return withWarnings(invalidReply(info, obj.metadata.name, errs), d.warnings);
    if (req.dryRun) return withWarnings(jsonReply(201, Tr::view(obj)), d.warnings);
    auto r = svc_.store.create(Tr::key(ns, obj.metadata.name), storeValue(obj));
    if (!r) return storeErrorReply(info, obj.metadata.name, r.error());
    obj.metadata.resourceVersion = std::to_string(r->modRevision);
    return withWarnings(jsonReply(201, Tr::view(obj)), d.warnings);
  }

  Reply update(const Request& req, const std::string& ns, const std::string& name, const Json& body,
               bool status) override {
    if (auto r = checkTypeMeta(body)) return *r;
    auto d = Tr::decode(body, req.fieldValidation);
    if (!d.ok()) return withWarnings(invalidReply(info, name, d.errors), d.warnings);
    if (auto r = checkIdentity(d.value, ns, name)) return *r;
    if (d.value.metadata.resourceVersion.empty()) {
      return invalidReply(info, name,
                          {FieldError{FieldErrorType::kInvalid, "metadata.resourceVersion", "0x0",
                                      "must be specified for an update"}});
    }
    auto rv = parseRevision(d.value.metadata.resourceVersion);
    if (!rv) return conflict(info, name, kModified);
    auto cur = load(ns, name);
    if (!cur) return storeErrorReply(info, name, cur.error());
    bool conflicted = false;
    return withWarnings(commit(req, *cur, std::move(d.value), *rv, status, conflicted), d.warnings);
  }

  Reply patch(const Request& req, const std::string& ns, const std::string& name,
              const Json& patchDoc, bool jsonPatch, bool status) override {
    // Without a resourceVersion in the patch, a concurrent write is not the
    // client's concern: re-read and re-apply, as kube-apiserver does.
    for (int attempt = 0; attempt < 8; ++attempt) {
      auto cur = load(ns, name);
      if (!cur) return storeErrorReply(info, name, cur.error());
      Json target = Tr::view(*cur);
      try {
        if (jsonPatch) {
          target = target.patch(patchDoc);
        } else {
          target.merge_patch(patchDoc);
        }
      } catch (const std::exception& e) {
        std::string what = e.what();
        size_t b = what.find("] ");
        return statusReply(422, "Invalid",
                           "the JSON patch could not be applied: " +
                               (b == std::string::npos ? what : what.substr(b + 2)));
      }
      if (!target.is_object()) return badRequest("the patched object is not a JSON object");
      int64_t curRv = *parseRevision(cur->metadata.resourceVersion);
      int64_t expected = curRv;
      bool clientRv = false;
      if (auto m = target.find("metadata"); m != target.end() && m->is_object()) {
        auto rvIt = m->find("resourceVersion");
        if (rvIt != m->end() && rvIt->is_string() &&
            rvIt->get<std::string>() != cur->metadata.resourceVersion) {
          auto parsed = parseRevision(*rvIt);
          if (!parsed || *parsed != curRv) return conflict(info, name, kModified);
        }
        if (rvIt == m->end() || rvIt->is_null())
          (*m)["resourceVersion"] = cur->metadata.resourceVersion;
        clientRv = patchDoc.is_object() && patchDoc.contains("metadata") &&
                   patchDoc["metadata"].is_object() &&
                   patchDoc["metadata"].contains("resourceVersion");
      }
      auto d = Tr::decode(target, req.fieldValidation);
      if (!d.ok()) return withWarnings(invalidReply(info, name, d.errors), d.warnings);
      if (auto r = checkIdentity(d.value, ns, name)) return *r;
      bool conflicted = false;
      Reply r = commit(req, *cur, std::move(d.value), expected, status, conflicted);
      if (conflicted && !clientRv) continue;
      return withWarnings(std::move(r), d.warnings);
    }
    return conflict(info, name, kModified);
  }

  Reply remove(const Request& req, const std::string& ns, const std::string& name) override {
    auto cur = load(ns, name);
    if (!cur) return storeErrorReply(info, name, cur.error());
    if (!req.body.empty()) {
      auto parsed = parseBody(req.body, req.contentType);
      if (auto* r = std::get_if<Reply>(&parsed)) return *r;
      const Json& opts = std::get<Json>(parsed);
      if (opts.is_object() && opts.contains("preconditions") && opts["preconditions"].is_object()) {
        const Json& pre = opts["preconditions"];
        if (pre.contains("uid") && pre["uid"].is_string() &&
            pre["uid"].get<std::string>() != cur->metadata.uid) {
          return conflict(
              info, name,
              "Precondition failed: UID in precondition: " + pre["uid"].get<std::string>() +
                  ", UID in object meta: " + cur->metadata.uid);
        }
        if (pre.contains("resourceVersion") && pre["resourceVersion"].is_string() &&
            pre["resourceVersion"].get<std::string>() != cur->metadata.resourceVersion) {
          return conflict(info, name,
                          "Precondition failed: ResourceVersion in precondition: " +
                              pre["resourceVersion"].get<std::string>() +
                              ", ResourceVersion in object meta: " + cur->metadata.resourceVersion);
        }
      }
      if (opts.is_object() && opts.contains("dryRun") && opts["dryRun"].is_array() &&
          !opts["dryRun"].empty()) {
        return jsonReply(200, Tr::view(*cur));
      }
    }
    if (req.dryRun) return jsonReply(200, Tr::view(*cur));
    int64_t curRv = *parseRevision(cur->metadata.resourceVersion);
    auto key = Tr::key(ns, name);
    if (!cur->metadata.finalizers.empty()) {
      // Finalizers hold the object: mark it; the last finalizer's removal deletes it.
      if (cur->metadata.deletionTimestamp) return jsonReply(200, Tr::view(*cur));
      T next = *cur;
      next.metadata.deletionTimestamp = nowRfc3339();
      next.metadata.generation += 1;
      auto r = svc_.store.update(key, storeValue(next), curRv);
      if (!r) return storeErrorReply(info, name, r.error());
      next.metadata.resourceVersion = std::to_string(r->modRevision);
      return jsonReply(200, Tr::view(next));
    }
    auto r = svc_.store.remove(key, curRv);
    if (!r) return storeErrorReply(info, name, r.error());
    T gone = *cur;
    gone.metadata.resourceVersion = std::to_string(r->modRevision);
    return jsonReply(200, Tr::view(gone));
  }

  std::variant<Reply, kj::Promise<void>> watch(const Request& req, const std::string& ns,
                                               kj::HttpService::Response& response,
                                               const kj::HttpHeaderTable& headerTable) override {
    auto sel = selectors(req);
    if (auto* r = std::get_if<Reply>(&sel)) return *r;
    auto st = kj::heap<WatchState>();
    st->labels = std::get<Selectors>(sel).labels;
    st->fields = std::get<Selectors>(sel).fields;
    st->wantTable = req.wantTable;
    st->request = req;
    std::string rvParam = req.param("resourceVersion");
    int64_t from = 0;
    std::string initial;
    if (rvParam.empty() || rvParam == "0") {
      // Kubernetes semantics: synthetic ADDED events for what exists, then changes.
      auto res = svc_.store.list(Tr::storeResource(), ns);
      if (!res) return storeErrorReply(info, "", res.error());
      from = res->revision;
      st->selectedComplete = true;
      for (const auto& o : res->items) {
        auto obj = Tr::fromStore(o);
        if (obj && matches(*obj, st->labels, st->fields)) {
          initial += eventLine(*st, "ADDED", *obj);
          st->selected.insert(o.key.ns + "/" + o.key.name);
        }
      }
    } else {
      auto rv = parseRevision(rvParam);
      if (!rv) return badRequest("invalid resourceVersion \"" + rvParam + "\"");
      from = *rv;
      if (!st->labels.empty() || !st->fields.empty()) {
        // What the client's list (taken at `from`, usually just now) showed
        // as selected; exact if nothing was written since.
        auto res = svc_.store.list(Tr::storeResource(), ns);
        if (res && res->revision == from) {
          for (const auto& o : res->items) {
            auto obj = Tr::fromStore(o);
            if (obj && matches(*obj, st->labels, st->fields)) {
              st->selected.insert(o.key.ns + "/" + o.key.name);
            }
          }
          st->selectedComplete = true;
        }
      }
    }
    kj::HttpHeaders headers(headerTable);
    headers.set(kj::HttpHeaderId::CONTENT_TYPE, "application/json");
    auto w = svc_.store.watch(Tr::storeResource(), ns, from);
    if (!w) {
      if (w.error().code != VMHOST_ERR_OUT_OF_RANGE) return storeErrorReply(info, "", w.error());
      // As kube-apiserver: 200, then one ERROR event carrying 410 Expired.
      Json ev{{"type", "ERROR"},
              {"object", statusObject(410, "Expired",
                                      "too old resource version: " + rvParam + " (" +
                                          w.error().message + ")")}};
      auto text = kj::heapString(ev.dump() + "\n");
      auto stream = response.send(200, "OK", headers);
      auto p = stream->write(text.begin(), text.size());
      return p.attach(kj::mv(stream), kj::mv(text));
    }
    st->watch = std::move(w.value());
    auto waker = std::make_shared<Waker>();
    st->waker = waker;
    st->watch->setNotify([waker] { waker->notify(); });
    st->stream = response.send(200, "OK", headers);
    int64_t timeout = svc_.options.maxWatchTimeout.count();
    if (auto t = parseRevision(req.param("timeoutSeconds")); t && *t > 0 && *t < timeout) {
      timeout = *t;
    }
    WatchState& ref = *st;
    kj::Promise<void> first = kj::READY_NOW;
    if (!initial.empty()) {
      ref.pending = kj::heapString(initial);
      first = ref.stream->write(ref.pending.begin(), ref.pending.size());
    }
    auto disconnected = ref.stream->whenWriteDisconnected();
    return first.then([this, &ref]() { return pump(ref); })
        .exclusiveJoin(svc_.timer.afterDelay(timeout * kj::SECONDS))
        .exclusiveJoin(kj::mv(disconnected))
        .attach(kj::mv(st));
  }

 private:
  struct Selectors {
    LabelSelector labels;
    FieldSelector fields;
  };

  struct WatchState {
    ~WatchState() {
      // Stop notifications before the waker goes away.
      if (watch) watch->close();
      if (waker) waker->reset();
    }
    LabelSelector labels;
    FieldSelector fields;
    bool wantTable = false;
    bool sentColumns = false;
    Request request;
    std::unique_ptr<store::Watch> watch;
    std::shared_ptr<Waker> waker;
    kj::Own<kj::AsyncOutputStream> stream;
    kj::String pending;
    // Objects the client currently sees as selected, so an object leaving
    // the selection is reported DELETED and one entering it ADDED, as
    // kube-apiserver does. Complete when the watch began with a listing;
    // otherwise objects selected before the start revision are unknown
    // until they change.
    std::set<std::string> selected;
    bool selectedComplete = false;
    std::set<std::string> deselected;  // seen leaving; known not selected
  };

  std::variant<Selectors, Reply> selectors(const Request& req) {
    auto labels = LabelSelector::parse(req.param("labelSelector"));
    if (!labels) return badRequest(labels.error().message);
    auto fields = FieldSelector::parse(req.param("fieldSelector"), Tr::fieldLabels());
    if (!fields) return badRequest(fields.error().message);
    return Selectors{std::move(labels.value()), std::move(fields.value())};
  }

  static bool matches(const T& obj, const LabelSelector& labels, const FieldSelector& fields) {
    if (!labels.matches(obj.metadata.labels)) return false;
    return fields.matches([&](const std::string& f) { return Tr::field(obj, f); });
  }

  Result<T> load(const std::string& ns, const std::string& name) {
    auto o = svc_.store.get(Tr::key(ns, name));
    if (!o) return o.error();
    return Tr::fromStore(*o);
  }

  std::optional<Reply> checkTypeMeta(const Json& body) {
    if (!body.is_object()) return badRequest("the request body must be a JSON or YAML object");
    auto av = body.find("apiVersion");
    if (av != body.end() && !(av->is_string() && *av == info.apiVersion())) {
      return badRequest("the API version in the data (" +
                        (av->is_string() ? av->get<std::string>() : av->dump()) +
                        ") does not match the expected API version (" + info.apiVersion() + ")");
    }
    auto k = body.find("kind");
    if (k != body.end() && !(k->is_string() && *k == info.kind)) {
      return badRequest("the kind in the data (" +
                        (k->is_string() ? k->get<std::string>() : k->dump()) +
                        ") does not match the expected kind (" + info.kind + ")");
    }
    return std::nullopt;
  }

  std::optional<Reply> checkIdentity(const T& obj, const std::string& ns, const std::string& name) {
    if (obj.metadata.name != name) {
      return badRequest("the name of the object (" + obj.metadata.name +
                        ") does not match the name on the URL (" + name + ")");
    }
    if (info.namespaced && !obj.metadata.ns.empty() && obj.metadata.ns != ns) {
      return badRequest(
          "the namespace of the provided object does not match the namespace sent on the "
          "request");
    }
    return std::nullopt;
  }

  static Reply withWarnings(Reply r, const std::vector<std::string>& warnings) {
    r.warnings.insert(r.warnings.end(), warnings.begin(), warnings.end());
    return r;
  }

  // Builds the object to store from the current one and the client's, then
  // validates and writes it with optimistic concurrency on `expectedRv`.
  Reply commit(const Request& req, const T& cur, T in, int64_t expectedRv, bool status,
               bool& conflicted) {
    const std::string& name = cur.metadata.name;
    int64_t curRv = *parseRevision(cur.metadata.resourceVersion);
    if (expectedRv != curRv) {
      conflicted = true;
      return conflict(info, name, kModified);
    }
    T next;
    if (status) {
      // The status subresource changes status only.
      next = cur;
      Tr::takeStatus(next, in);
    } else {
      // The main resource ignores status and the server-owned metadata.
      next = std::move(in);
      Tr::keepFromCurrent(next, cur);
      next.metadata.ns = cur.metadata.ns;
      next.metadata.uid = cur.metadata.uid;
      next.metadata.creationTimestamp = cur.metadata.creationTimestamp;
      next.metadata.deletionTimestamp = cur.metadata.deletionTimestamp;
      next.metadata.generateName = cur.metadata.generateName;
      next.metadata.generation = cur.metadata.generation;
      if (Tr::specOf(next) != Tr::specOf(cur)) next.metadata.generation += 1;
    }
    next.metadata.resourceVersion = cur.metadata.resourceVersion;
    auto errs = Tr::validate(next);
    if (!errs.empty()) return invalidReply(info, name, errs);
    std::string value = storeValue(next);
    if (value == storeValue(cur)) return jsonReply(200, Tr::view(cur));  // no-op: no new revision
    if (req.dryRun) return jsonReply(200, Tr::view(next));
    auto key = Tr::key(cur.metadata.ns, name);
    if (next.metadata.deletionTimestamp && next.metadata.finalizers.empty()) {
      auto r = svc_.store.remove(key, curRv);
      if (!r) {
        conflicted = r.error().code == VMHOST_ERR_ABORTED;
        return storeErrorReply(info, name, r.error());
      }
      next.metadata.resourceVersion = std::to_string(r->modRevision);
      return jsonReply(200, Tr::view(next));
    }
    auto r = svc_.store.update(key, value, curRv);
    if (!r) {
      conflicted = r.error().code == VMHOST_ERR_ABORTED;
      return storeErrorReply(info, name, r.error());
    }
    next.metadata.resourceVersion = std::to_string(r->modRevision);
    return jsonReply(200, Tr::view(next));
  }

  Json table(const std::vector<T>& items, const std::string& rv, const Request& req,
             bool withColumns) {
    Json t = Json::object();
    t["kind"] = "Table";
    t["apiVersion"] = "meta.k8s.io/v1";
    t["metadata"] = Json{{"resourceVersion", rv}};
    t["columnDefinitions"] = withColumns ? Tr::columns() : Json::array();
    Json rows = Json::array();
    std::string include = req.param("includeObject");
    for (const auto& it : items) {
      Json row = Json{{"cells", Tr::cells(it)}};
      if (include == "Object") {
        row["object"] = Tr::view(it);
      } else if (include != "None") {
        Json meta = Tr::view(it)["metadata"];
        row["object"] = Json{{"kind", "PartialObjectMetadata"},
                             {"apiVersion", "meta.k8s.io/v1"},
                             {"metadata", std::move(meta)}};
      }
      rows.push_back(std::move(row));
    }
    t["rows"] = std::move(rows);
    return t;
  }

  std::string eventLine(WatchState& st, const char* type, const T& obj) {
    Json object;
    if (st.wantTable) {
      object = table({obj}, obj.metadata.resourceVersion, st.request, true);
      st.sentColumns = true;
    } else {
      object = Tr::view(obj);
    }
    return Json{{"type", type}, {"object", std::move(object)}}.dump() + "\n";
  }

  // Writes what the store watch has, then waits for more; bounded batches
  // keep one busy watch from starving the loop.
  kj::Promise<void> pump(WatchState& st) {
    std::string batch;
    bool ended = false;
    size_t taken = 0;
    for (; taken < 512; ++taken) {
      auto ev = st.watch->tryNext();
      if (!ev) break;
      if (ev->type == store::WatchEventType::kError) {
        // A slow or closed watch: end the stream; the client watches again.
        ended = true;
        break;
      }
      auto obj = Tr::fromStore(*ev->object);
      if (!obj) continue;
      std::string key = ev->object->key.ns + "/" + ev->object->key.name;
      bool now = matches(*obj, st.labels, st.fields);
      bool before = st.selected.count(key) > 0;
      const char* type = nullptr;
      // Without a complete starting set, a MODIFIED object not seen before
      // may have been selected all along: report it MODIFIED, unless it was
      // seen leaving. (One that leaves unseen is not reported: it may never
      // have been selected.)
      bool unknown = !st.selectedComplete && !st.deselected.count(key);
      if (ev->type == store::WatchEventType::kDeleted) {
        if (before || (unknown && now)) type = "DELETED";
        st.selected.erase(key);
        st.deselected.erase(key);
      } else if (now) {
        bool known = before || (unknown && ev->type == store::WatchEventType::kModified);
        type = known ? "MODIFIED" : "ADDED";
        st.selected.insert(key);
        st.deselected.erase(key);
      } else if (before) {
        type = "DELETED";  // it left the selection
        st.selected.erase(key);
        st.deselected.insert(key);
      } else if (!st.selectedComplete) {
        st.deselected.insert(key);
      }
      if (type) batch += eventLine(st, type, *obj);
    }
    kj::Promise<void> written = kj::READY_NOW;
    if (!batch.empty()) {
      st.pending = kj::heapString(batch);
      written = st.stream->write(st.pending.begin(), st.pending.size());
    }
    bool more = taken == 512;
    return written.then([this, &st, ended, more]() -> kj::Promise<void> {
      if (ended || st.watch->finished()) return kj::READY_NOW;
      if (more) return kj::evalLater([this, &st]() { return pump(st); });
      return st.waker->wait().then([this, &st]() { return pump(st); });
    });
  }

  Services svc_;
};

// ================================================================ service

struct Route {
  std::string group, version;
  std::string ns;
  std::string resource;
  std::string name;
  std::string subresource;
  bool nsGiven = false;
};

class ApiService final : public kj::HttpService {
 public:
  ApiService(store::Store& store, metrics::Registry& metrics, const ServerOptions& options,
             kj::Timer& timer, const kj::HttpHeaderTable& table, kj::HttpHeaderId acceptId,
             kj::HttpHeaderId warningId, kj::HttpHeaderId authorizationId,
             std::atomic<uint16_t>& port)
      : store_(store),
        options_(options),
        table_(table),
        acceptId_(acceptId),
        warningId_(warningId),
        authorizationId_(authorizationId),
        port_(port),
        docs_(buildOpenApiDocs(options.vmhostVersion)) {
    Services svc{store, timer, options};
    handlers_.push_back(std::make_unique<TypedHandler<VmTraits>>(ResourceInfo{kGroup,
                                                                              kVersion,
                                                                              "virtualmachines",
                                                                              "virtualmachine",
                                                                              kVirtualMachineKind,
                                                                              true,
                                                                              {"vm"},
                                                                              {"all"}},
                                                                 svc));
    handlers_.push_back(std::make_unique<TypedHandler<NodeTraits>>(
        ResourceInfo{kGroup, kVersion, "nodes", "node", kNodeKind, false, {"no"}, {}}, svc));
    handlers_.push_back(std::make_unique<TypedHandler<KubevirtTraits>>(
        ResourceInfo{kKubevirtGroup, kKubevirtVersion, "vms", "vm", kKubevirtKind, true, {}, {}},
        svc));
    auto requests = metrics.counter(
        "apiserver_request_total",
        "Counter of API requests broken out by verb, group, version, resource, subresource and "
        "HTTP response code.",
        {"verb", "group", "version", "resource", "subresource", "code"});
    auto latency = metrics.histogram(
        "apiserver_request_duration_seconds",
        "Response latency distribution in seconds by verb, group, version, resource and "
        "subresource (watches excluded).",
        {"verb", "group", "version", "resource", "subresource"});

    requests_ = requests ? *requests : nullptr;
    latency_ = latency ? *latency : nullptr;
    metrics_ = &metrics;
  }

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url,
                            const kj::HttpHeaders& headers, kj::AsyncInputStream& body,
                            Response& response) override {
    auto req = kj::heap<Request>();
    req->method = kj::str(method).cStr();
    switch (method) {
      case kj::HttpMethod::GET:
        req->verb = Verb::kGet;
        break;
      case kj::HttpMethod::POST:
        req->verb = Verb::kPost;
        break;
      case kj::HttpMethod::PUT:
        req->verb = Verb::kPut;
        break;
      case kj::HttpMethod::PATCH:
        req->verb = Verb::kPatch;
        break;
      case kj::HttpMethod::DELETE:
        req->verb = Verb::kDelete;
        break;
      default:
        req->verb = Verb::kOther;
        break;
    }
    parseTarget(std::string(url.cStr()), *req);
    req->headers = &headers;
    if (auto denied = authenticate(*req, headers)) {
      auto start = Clock::now();
      auto& r = *req;
      return send(response, r, kj::mv(*denied), start).attach(kj::mv(req));
    }
    KJ_IF_MAYBE (a, headers.get(acceptId_)) {
      req->accept = a->cStr();
    }
    KJ_IF_MAYBE (c, headers.get(kj::HttpHeaderId::CONTENT_TYPE)) {
      req->contentType = mediaType(c->cStr());
    }
    req->wantTable = req->accept.find("as=Table") != std::string::npos;
    std::string fv = req->param("fieldValidation");
    req->fieldValidation = fv == "Strict"   ? FieldValidation::kStrict
                           : fv == "Ignore" ? FieldValidation::kIgnore
                                            : FieldValidation::kWarn;
    req->dryRun = req->param("dryRun") == "All";
    auto start = Clock::now();

    bool hasBody = req->verb == Verb::kPost || req->verb == Verb::kPut ||
                   req->verb == Verb::kPatch || req->verb == Verb::kDelete;
    if (hasBody) {
      KJ_IF_MAYBE (len, body.tryGetLength()) {
        if (*len > options_.maxBodyBytes) {
          return send(response, *req, tooLarge(), start);
        }
      }
      auto& r = *req;
      return readBody(body, r.body)
          .then([this, &response, &r, start](bool fits) -> kj::Promise<void> {
            if (!fits) return send(response, r, tooLarge(), start);
            return dispatch(r, response, start);
          })
          .attach(kj::mv(req));
    }
    auto& r = *req;
    return dispatch(r, response, start).attach(kj::mv(req));
  }

 private:
  // Bearer tokens (ServerOptions::bearerTokens); the node certificate
  // request takes the join token instead. nullopt: let it through.
  std::optional<Reply> authenticate(const Request& req, const kj::HttpHeaders& headers) const {
    if (options_.bearerTokens.empty()) return std::nullopt;
    if (req.path == "/healthz" || req.path == "/livez" || req.path == "/readyz") {
      return std::nullopt;
    }
    std::string token;
    KJ_IF_MAYBE (a, headers.get(authorizationId_)) {
      std::string value = a->cStr();
      if (value.rfind("Bearer ", 0) == 0) token = value.substr(7);
    }
    bool certificateRequest = req.segments.size() == 6 && req.segments[0] == "apis" &&
                              req.segments[3] == "nodes" && req.segments[5] == "certificate";
    auto same = [](const std::string& a, const std::string& b) {
      unsigned char diff = a.size() == b.size() ? 0 : 1;
      for (size_t i = 0; i < a.size(); ++i) {
        diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
      }
      return diff == 0;
    };
    if (!token.empty()) {
      if (certificateRequest) {
        if (!options_.joinToken.empty() && same(token, options_.joinToken)) return std::nullopt;
      } else {
        for (const auto& t : options_.bearerTokens) {
          if (same(token, t)) return std::nullopt;
        }
      }
    }
    std::fprintf(stderr, "api: 401 %s %s: %s\n", req.method.c_str(), req.path.c_str(),
                 token.empty() ? "no bearer token" : "wrong bearer token");
    return statusReply(401, "Unauthorized", "Unauthorized");
  }

  Reply tooLarge() const {
    return statusReply(413, "RequestEntityTooLarge",
                       "the request body is larger than the limit of " +
                           std::to_string(options_.maxBodyBytes) + " bytes");
  }

  // Reads the body into `out`; false if it exceeds the limit.
  kj::Promise<bool> readBody(kj::AsyncInputStream& in, std::string& out) {
    auto buf = kj::heapArray<kj::byte>(65536);
    auto& ref = buf;
    return in.tryRead(ref.begin(), 1, ref.size())
        .then([this, &in, &out, buf = kj::mv(buf)](size_t n) mutable -> kj::Promise<bool> {
          if (n == 0) return true;
          out.append(reinterpret_cast<const char*>(buf.begin()), n);
          if (out.size() > options_.maxBodyBytes) return false;
          return readBody(in, out);
        });
  }

  kj::Promise<void> send(Response& response, const Request& req, Reply reply,
                         Clock::time_point start) {
    record(req, reply.code, start);
    kj::HttpHeaders headers(table_);
    headers.set(kj::HttpHeaderId::CONTENT_TYPE, kj::heapString(reply.contentType));
    std::string warning;
    for (const auto& w : reply.warnings) {
      std::string escaped;
      for (char c : w) {
        if (c == '"' || c == '\\') escaped += '\\';
        escaped += c;
      }
      warning += (warning.empty() ? "" : ", ") + std::string("299 - \"") + escaped + "\"";
    }
    if (!warning.empty()) headers.set(warningId_, kj::heapString(warning));
    auto body = kj::heapString(reply.body);
    auto stream = response.send(reply.code, statusText(reply.code), headers, body.size());
    auto p = stream->write(body.begin(), body.size());
    return p.attach(kj::mv(stream), kj::mv(body));
  }

  // verb, group, version, resource, subresource for metrics.
  std::array<std::string, 5> labels(const Request& req) const {
    std::array<std::string, 5> l;
    const char* verb = "";
    switch (req.verb) {
      case Verb::kGet:
        verb = req.flag("watch") ? "WATCH" : "GET";
        break;
      case Verb::kPost:
        verb = "POST";
        break;
      case Verb::kPut:
        verb = "PUT";
        break;
      case Verb::kPatch:
        verb = "PATCH";
        break;
      case Verb::kDelete:
        verb = "DELETE";
        break;
      default:
        verb = "OTHER";
        break;
    }
    l[0] = verb;
    auto route = parseRoute(req);
    if (route) {
      l[1] = route->group;
      l[2] = route->version;
      l[3] = route->resource;
      l[4] = route->subresource;
      if (req.verb == Verb::kGet && !req.flag("watch") && route->name.empty()) l[0] = "LIST";
    }
    return l;
  }

  void record(const Request& req, unsigned code, Clock::time_point start) {
    auto l = labels(req);
    if (requests_) requests_->inc({l[0], l[1], l[2], l[3], l[4], std::to_string(code)});
    if (latency_ && l[0] != "WATCH") {
      double secs = std::chrono::duration<double>(Clock::now() - start).count();
      latency_->observe({l[0], l[1], l[2], l[3], l[4]}, secs);
    }
  }

  // /apis/<g>/<v>/[namespaces/<ns>/]<resource>[/<name>[/<sub>]]
  std::optional<Route> parseRoute(const Request& req) const {
    const auto& s = req.segments;
    if (s.size() < 4 || s[0] != "apis") return std::nullopt;
    Route r;
    r.group = s[1];
    r.version = s[2];
    size_t i = 3;
    if (s[i] == "namespaces" && s.size() >= 6) {
      r.ns = s[4];
      r.nsGiven = true;
      i = 5;
    }
    r.resource = s[i++];
    if (i < s.size()) r.name = s[i++];
    if (i < s.size()) r.subresource = s[i++];
    if (i < s.size()) return std::nullopt;
    return r;
  }

  // ---- the console subresource: a WebSocket carrying the serial port's
  // bytes, binary frames both ways (text frames from the client are taken
  // as bytes too). The provider's thread hands output to this loop through
  // a ConsoleBridge.
  struct ConsoleBridge {
    std::mutex mu;
    std::string pending;  // output not yet sent
    bool closed = false;
    std::string reason;
    Waker waker;
  };
  // Output the client has not taken yet beyond this is dropped, oldest
  // first (a console is interactive; the serial log keeps everything).
  static constexpr size_t kConsoleBacklog = 1u << 20;

  kj::Promise<void> console(const Route& route, Request& req, Response& response,
                            Clock::time_point start) {
    if (req.verb != Verb::kGet) {
      return send(response, req,
                  statusReply(405, "MethodNotAllowed", "the console is attached with GET"), start);
    }
    if (req.headers == nullptr || !req.headers->isWebSocket()) {
      return send(response, req,
                  badRequest("the console subresource needs a WebSocket upgrade (use vmctl "
                             "console)"),
                  start);
    }
    if (options_.consoles == nullptr) {
      return send(response, req,
                  statusReply(503, "ServiceUnavailable", "this API server serves no consoles"),
                  start);
    }
    auto stored = store_.get(virtualMachineKey(route.ns, route.name));
    if (!stored.ok()) {
      if (stored.error().code == VMHOST_ERR_NOT_FOUND) {
        return send(
            response, req,
            statusReply(404, "NotFound",
                        "virtualmachines.vmhost.io \"" + route.name + "\" not found",
                        Json{{"name", route.name}, {"group", kGroup}, {"kind", "virtualmachines"}}),
            start);
      }
      return send(response, req, statusReply(503, "ServiceUnavailable", stored.error().message),
                  start);
    }
    auto vm = decodeStoredVirtualMachine(*stored);
    if (!vm.ok()) {
      return send(response, req, statusReply(500, "InternalError", vm.error().message), start);
    }
    if (vm->status.phase != "Running") {
      return send(
          response, req,
          statusReply(409, "Conflict",
                      "VirtualMachine " + route.ns + "/" + route.name + " is not running (phase " +
                          (vm->status.phase.empty() ? "Pending" : vm->status.phase) +
                          "); start it first"),
          start);
    }
    auto bridge = std::make_shared<ConsoleBridge>();
    api::ConsoleCallbacks callbacks;
    callbacks.onData = [bridge](std::string_view bytes) {
      std::lock_guard lock(bridge->mu);
      bridge->pending.append(bytes);
      if (bridge->pending.size() > kConsoleBacklog) {
        bridge->pending.erase(0, bridge->pending.size() - kConsoleBacklog);
      }
      bridge->waker.notify();
    };
    callbacks.onClose = [bridge](const std::string& reason) {
      std::lock_guard lock(bridge->mu);
      bridge->closed = true;
      bridge->reason = reason;
      bridge->waker.notify();
    };
    auto stream = options_.consoles->openConsole(*vm, std::move(callbacks));
    if (!stream.ok()) {
      const Error& e = stream.error();
      unsigned code = e.code == VMHOST_ERR_NOT_FOUND             ? 404
                      : e.code == VMHOST_ERR_FAILED_PRECONDITION ? 409
                                                                 : 503;
      const char* reason = code == 404   ? "NotFound"
                           : code == 409 ? "Conflict"
                                         : "ServiceUnavailable";
      return send(response, req, statusReply(code, reason, e.message), start);
    }
    record(req, 101, start);
    auto ws = response.acceptWebSocket(kj::HttpHeaders(table_));
    auto& socket = *ws;
    auto& input = *stream.value();
    auto out = consoleOut(socket, bridge);
    auto in = consoleIn(socket, input);
    return out.exclusiveJoin(kj::mv(in))
        .catch_([](kj::Exception&&) {})  // the client went away
        .attach(kj::mv(stream.value()), kj::mv(ws), kj::mv(bridge));
  }

  // Guest -> client, until the provider closes the console (then a Close
  // frame with its reason).
  static kj::Promise<void> consoleOut(kj::WebSocket& ws, std::shared_ptr<ConsoleBridge> b) {
    return b->waker.wait().then([&ws, b]() mutable -> kj::Promise<void> {
      std::string data;
      bool closed;
      std::string reason;
      {
        std::lock_guard lock(b->mu);
        data.swap(b->pending);
        closed = b->closed;
        reason = b->reason;
      }
      kj::Promise<void> sent = kj::READY_NOW;
      if (!data.empty()) {
        auto bytes =
            kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(data.data()), data.size());
        auto& ref = bytes;
        sent = ws.send(ref.asPtr()).attach(kj::mv(bytes));
      }
      if (closed) {
        // A close reason is at most 123 bytes.
        if (reason.size() > 120) reason.resize(120);
        return sent.then([&ws, reason]() { return ws.close(1000, reason); });
      }
      return sent.then([&ws, b]() mutable { return consoleOut(ws, kj::mv(b)); });
    });
  }

  // Client -> guest, until the client detaches (a Close frame) or goes away.
  static kj::Promise<void> consoleIn(kj::WebSocket& ws, api::ConsoleStream& console) {
    return ws.receive(64 * 1024).then(
        [&ws, &console](kj::WebSocket::Message&& m) -> kj::Promise<void> {
          std::string_view bytes;
          KJ_SWITCH_ONEOF(m) {
            KJ_CASE_ONEOF(text, kj::String) { bytes = std::string_view(text.begin(), text.size()); }
            KJ_CASE_ONEOF(data, kj::Array<kj::byte>) {
              bytes = std::string_view(reinterpret_cast<const char*>(data.begin()), data.size());
            }
            KJ_CASE_ONEOF(close, kj::WebSocket::Close) {
              (void)close;
              return ws.close(1000, "detached");
            }
          }
          // A failed write means the console ended: the output side reports
          // why and closes; keep reading until then or until the client leaves.
          if (!bytes.empty()) (void)console.write(bytes);
          return consoleIn(ws, console);
        });
  }

  ResourceHandler* handlerFor(const Route& r) {
    for (auto& h : handlers_) {
      if (h->info.group == r.group && h->info.version == r.version &&
          h->info.plural == r.resource) {
        return h.get();
      }
    }
    return nullptr;
  }

  kj::Promise<void> dispatch(Request& req, Response& response, Clock::time_point start) {
    try {
      auto route = parseRoute(req);
      if (route) {
        if (ResourceHandler* h = handlerFor(*route))
          return resource(*h, *route, req, response, start);
      }
      return send(response, req, nonResource(req), start);
    } catch (const std::exception& e) {
      return send(response, req, statusReply(500, "InternalError", e.what()), start);
    }
  }

  kj::Promise<void> resource(ResourceHandler& h, const Route& route, Request& req,
                             Response& response, Clock::time_point start) {
    const ResourceInfo& info = h.info;
    auto methodNotAllowed = [&] {
      return send(response, req,
                  statusReply(405, "MethodNotAllowed",
                              "the server does not allow this method on the requested resource"),
                  start);
    };
    if (route.nsGiven != info.namespaced &&
        !(info.namespaced && !route.nsGiven && route.name.empty() && req.verb == Verb::kGet)) {
      return send(response, req,
                  statusReply(404, "NotFound", "the server could not find the requested resource"),
                  start);
    }
    if (route.subresource == "console" && info.group == kGroup && info.namespaced) {
      return console(route, req, response, start);
    }
    if (route.subresource == "certificate" && info.plural == "nodes" &&
        options_.issueNodeCertificate) {
      if (req.verb != Verb::kPost) {
        return send(response, req,
                    statusReply(405, "MethodNotAllowed", "POST a PEM certificate request"), start);
      }
      auto cert = options_.issueNodeCertificate(route.name, req.body);
      if (!cert.ok()) {
        unsigned code = cert.error().code == VMHOST_ERR_ALREADY_EXISTS ? 409
                        : cert.error().code == VMHOST_ERR_INTERNAL     ? 500
                                                                       : 400;
        std::fprintf(stderr, "api: refused a certificate for node %s: %s\n", route.name.c_str(),
                     cert.error().message.c_str());
        return send(response, req,
                    statusReply(code,
                                code == 409   ? "AlreadyExists"
                                : code == 500 ? "InternalError"
                                              : "BadRequest",
                                cert.error().message),
                    start);
      }
      return send(response, req, jsonReply(201, Json{{"certificate", cert.value()}}), start);
    }
    if (!route.subresource.empty() && route.subresource != "status") {
      return send(response, req,
                  statusReply(404, "NotFound", "the server could not find the requested resource"),
                  start);
    }
    if (info.namespaced && route.nsGiven) {
      auto errs = isDns1123Label(route.ns);
      if (!errs.empty())
        return send(response, req, badRequest("invalid namespace \"" + route.ns + "\": " + errs[0]),
                    start);
    }
    bool status = route.subresource == "status";
    if (route.name.empty()) {
      if (req.verb == Verb::kGet) {
        if (req.flag("watch")) {
          return watch(h, route, req, response, start);
        }
        return send(response, req, h.list(req, route.ns), start);
      }
      if (req.verb == Verb::kPost) {
        auto body = bodyJson(req);
        if (auto* r = std::get_if<Reply>(&body)) return send(response, req, std::move(*r), start);
        return send(response, req, h.create(req, route.ns, std::get<Json>(body)), start);
      }
      return methodNotAllowed();
    }
    switch (req.verb) {
      case Verb::kGet:
        if (req.flag("watch")) {
          // Legacy single-object watch: the same stream, pinned by name.
          req.query["fieldSelector"] = "metadata.name=" + route.name;
          return watch(h, route, req, response, start);
        }
        return send(response, req, h.get(req, route.ns, route.name), start);
      case Verb::kPut: {
        auto body = bodyJson(req);
        if (auto* r = std::get_if<Reply>(&body)) return send(response, req, std::move(*r), start);
        return send(response, req,
                    h.update(req, route.ns, route.name, std::get<Json>(body), status), start);
      }
      case Verb::kPatch: {
        bool jsonPatch = req.contentType == "application/json-patch+json";
        if (!jsonPatch && req.contentType != "application/merge-patch+json") {
          return send(response, req,
                      statusReply(415, "UnsupportedMediaType",
                                  "the body of the request was in an unknown format - accepted "
                                  "media types include: application/json-patch+json, "
                                  "application/merge-patch+json"),
                      start);
        }
        auto body = parseBody(req.body, req.contentType);
        if (auto* r = std::get_if<Reply>(&body)) return send(response, req, std::move(*r), start);
        return send(response, req,
                    h.patch(req, route.ns, route.name, std::get<Json>(body), jsonPatch, status),
                    start);
      }
      case Verb::kDelete:
        if (status) return methodNotAllowed();
        return send(response, req, h.remove(req, route.ns, route.name), start);
      default:
        return methodNotAllowed();
    }
  }

  kj::Promise<void> watch(ResourceHandler& h, const Route& route, Request& req, Response& response,
                          Clock::time_point start) {
    auto w = h.watch(req, route.ns, response, table_);
    if (auto* r = std::get_if<Reply>(&w)) return send(response, req, std::move(*r), start);
    record(req, 200, start);  // streaming has begun
    return kj::mv(std::get<kj::Promise<void>>(w));
  }

  std::variant<Json, Reply> bodyJson(const Request& req) {
    const std::string& m = req.contentType;
    if (!m.empty() && m != "application/json" && !isYaml(m)) {
      return statusReply(415, "UnsupportedMediaType",
                         "the body of the request was in an unknown format - accepted media "
                         "types include: application/json, application/yaml");
    }
    if (req.body.empty()) return badRequest("the request body is empty");
    return parseBody(req.body, m);
  }

  Json groupJson(const std::string& group, const std::string& version) const {
    Json gv{{"groupVersion", group + "/" + version}, {"version", version}};
    return Json{{"name", group}, {"versions", Json::array({gv})}, {"preferredVersion", gv}};
  }

  Json resourceList(const std::string& group, const std::string& version) const {
    Json resources = Json::array();
    for (const auto& h : handlers_) {
      const auto& i = h->info;
      if (i.group != group || i.version != version) continue;
      Json r{
          {"name", i.plural},
          {"singularName", i.singular},
          {"namespaced", i.namespaced},
          {"kind", i.kind},
          {"verbs", Json::array({"create", "delete", "get", "list", "patch", "update", "watch"})}};
      if (!i.shortNames.empty()) r["shortNames"] = i.shortNames;
      if (!i.categories.empty()) r["categories"] = i.categories;
      resources.push_back(std::move(r));
      resources.push_back(Json{{"name", i.plural + "/status"},
                               {"singularName", ""},
                               {"namespaced", i.namespaced},
                               {"kind", i.kind},
                               {"verbs", Json::array({"get", "patch", "update"})}});
    }
    return Json{{"kind", "APIResourceList"},
                {"apiVersion", "v1"},
                {"groupVersion", group + "/" + version},
                {"resources", resources}};
  }

  Reply metricsReply() {
    // VMs by phase are the scheduling controller's gauge (it holds them in
    // memory); the API server only exposes the shared registry.
    return Reply{200, metrics_->render(), metrics::Registry::kContentType, {}};
  }

  // Namespaces are implicit: "default" and every namespace holding a VM.
  // Served read-only so `kubectl get namespaces` works.
  Reply namespaces(const Request& req, const std::string& name) {
    std::set<std::string> names{"default"};
    store::ListOptions opts;
    opts.limit = 1000;
    for (int page = 0; page < 10000; ++page) {
      auto res = store_.list(kVirtualMachinesResource, "", opts);
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

  Reply nonResource(const Request& req) {
    const auto& s = req.segments;
    if (req.verb != Verb::kGet) {
      if (!s.empty() && (s[0] == "apis" || s[0] == "api")) {
        return statusReply(404, "NotFound", "the server could not find the requested resource");
      }
      return statusReply(405, "MethodNotAllowed",
                         "the server does not allow this method on the requested resource");
    }
    if (s.size() == 1 && s[0] == "version") {
      return jsonReply(200, Json{{"major", "1"},
                                 {"minor", "32"},
                                 {"gitVersion", "v1.32.0+vmhost-" + options_.vmhostVersion},
                                 {"gitCommit", ""},
                                 {"gitTreeState", "clean"},
                                 {"buildDate", "1970-01-01T00:00:00Z"},
                                 {"goVersion", "none (vmhost, C++)"},
                                 {"compiler", "gc"},
                                 {"platform", "linux/amd64"}});
    }
    if (s.size() == 1 && (s[0] == "healthz" || s[0] == "livez" || s[0] == "readyz")) {
      auto rev = store_.currentRevision();
      if (!rev) return Reply{503, "store unavailable: " + rev.error().message, "text/plain", {}};
      return Reply{200, "ok", "text/plain", {}};
    }
    if (s.size() == 1 && s[0] == "metrics") return metricsReply();
    if (s.size() == 1 && s[0] == "api") {
      std::string addr = "127.0.0.1:" + std::to_string(port_.load());
      return jsonReply(
          200, Json{{"kind", "APIVersions"},
                    {"versions", Json::array({"v1"})},
                    {"serverAddressByClientCIDRs",
                     Json::array({Json{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", addr}}})}});
    }
    if (s.size() == 2 && s[0] == "api" && s[1] == "v1") {
      // The core group serves only namespaces (kubectl refuses an empty
      // group). Nodes are vmhost.io/v1 only: kubectl resolves `nodes` to them
      // all the same, while a core v1 Node would make kubectl use strategic
      // merge patch and describe it by asking for pods.
      Json ns{{"name", "namespaces"},
              {"singularName", "namespace"},
              {"namespaced", false},
              {"kind", "Namespace"},
              {"verbs", Json::array({"get", "list"})},
              {"shortNames", Json::array({"ns"})}};
      return jsonReply(200, Json{{"kind", "APIResourceList"},
                                 {"groupVersion", "v1"},
                                 {"resources", Json::array({ns})}});
    }
    if ((s.size() == 3 || s.size() == 4) && s[0] == "api" && s[1] == "v1" && s[2] == "namespaces") {
      return namespaces(req, s.size() == 4 ? s[3] : "");
    }
    if (s.size() == 1 && s[0] == "apis") {
      return jsonReply(
          200, Json{{"kind", "APIGroupList"},
                    {"apiVersion", "v1"},
                    {"groups", Json::array({groupJson(kGroup, kVersion),
                                            groupJson(kKubevirtGroup, kKubevirtVersion)})}});
    }
    if (s.size() == 2 && s[0] == "apis" && (s[1] == kGroup || s[1] == kKubevirtGroup)) {
      Json g = s[1] == kGroup ? groupJson(kGroup, kVersion)
                              : groupJson(kKubevirtGroup, kKubevirtVersion);
      g["kind"] = "APIGroup";
      g["apiVersion"] = "v1";
      return jsonReply(200, g);
    }
    if (s.size() == 3 && s[0] == "apis" &&
        ((s[1] == kGroup && s[2] == kVersion) ||
         (s[1] == kKubevirtGroup && s[2] == kKubevirtVersion))) {
      return jsonReply(200, resourceList(s[1], s[2]));
    }
    if (s.size() == 2 && s[0] == "openapi" && s[1] == "v2") {
      bool protobuf = req.accept.find("protobuf") != std::string::npos;
      if (protobuf) {
        return Reply{200,
                     docs_.v2Protobuf,
                     "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                     {}};
      }
      return Reply{200, docs_.v2Json, "application/json", {}};
    }
    if (s.size() == 2 && s[0] == "openapi" && s[1] == "v3") {
      return Reply{200, docs_.v3Index, "application/json", {}};
    }
    if (s.size() >= 3 && s[0] == "openapi" && s[1] == "v3") {
      std::string rest;
      for (size_t i = 2; i < s.size(); ++i) rest += (i > 2 ? "/" : "") + s[i];
      for (const auto& d : docs_.v3) {
        if (d.path == rest) return Reply{200, d.json, "application/json", {}};
      }
    }
    return statusReply(404, "NotFound", "the server could not find the requested resource");
  }

  store::Store& store_;
  const ServerOptions& options_;
  const kj::HttpHeaderTable& table_;
  kj::HttpHeaderId acceptId_;
  kj::HttpHeaderId warningId_;
  kj::HttpHeaderId authorizationId_;
  std::atomic<uint16_t>& port_;
  OpenApiDocs docs_;
  std::vector<std::unique_ptr<ResourceHandler>> handlers_;
  metrics::Registry* metrics_ = nullptr;
  metrics::Counter* requests_ = nullptr;
  metrics::Histogram* latency_ = nullptr;
};

}  // namespace

// ================================================================ Server

struct Server::Impl {
  Impl(store::Store& s, metrics::Registry& m, ServerOptions o)
      : store(s), metrics(m), options(std::move(o)) {}
  store::Store& store;
  metrics::Registry& metrics;
  ServerOptions options;
  std::atomic<uint16_t> port{0};
  std::thread thread;
  std::mutex mu;
  bool started = false;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stopFulfiller;

  void run(std::promise<Result<uint16_t>>& ready) {
    bool reported = false;
    try {
      auto io = kj::setupAsyncIo();
      kj::HttpHeaderTable::Builder builder;
      auto acceptId = builder.add("Accept");
      auto warningId = builder.add("Warning");
      auto authorizationId = builder.add("Authorization");
      auto table = builder.build();
      ApiService service(store, metrics, options, io.provider->getTimer(), *table, acceptId,
                         warningId, authorizationId, port);
      kj::HttpServer http(io.provider->getTimer(), *table, service);
      auto addr = io.provider->getNetwork().parseAddress(options.listenAddress).wait(io.waitScope);
      kj::Own<kj::ConnectionReceiver> listener = addr->listen();
      kj::Own<kj::TlsContext> tls;
      kj::Maybe<kj::TlsKeypair> keypair;
      if (!options.tlsCertPem.empty() && !options.tlsKeyPem.empty()) {
        keypair = kj::TlsKeypair{kj::TlsPrivateKey(options.tlsKeyPem.c_str()),
                                 kj::TlsCertificate(options.tlsCertPem.c_str())};
        kj::TlsContext::Options o;
        o.useSystemTrustStore = false;
        o.defaultKeypair = KJ_ASSERT_NONNULL(keypair);
        o.timer = io.provider->getTimer();
        o.acceptTimeout = 10 * kj::SECONDS;
        tls = kj::heap<kj::TlsContext>(kj::mv(o));
        uint16_t bound = static_cast<uint16_t>(listener->getPort());
        listener = tls->wrapPort(kj::mv(listener));
        port = bound;
      }
      if (!tls) port = static_cast<uint16_t>(listener->getPort());
      auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
      {
        std::lock_guard lock(mu);
        stopFulfiller = kj::mv(paf.fulfiller);
      }
      ready.set_value(port.load());
      reported = true;
      http.listenHttp(*listener).exclusiveJoin(kj::mv(paf.promise)).wait(io.waitScope);
    } catch (const kj::Exception& e) {
      if (!reported) {
        ready.set_value(Error{VMHOST_ERR_UNAVAILABLE,
                              "cannot serve the API on " + options.listenAddress + ": " +
                                  std::string(e.getDescription().cStr()),
                              false});
      }
    } catch (const std::exception& e) {
      if (!reported) {
        ready.set_value(Error{VMHOST_ERR_UNAVAILABLE,
                              "cannot serve the API on " + options.listenAddress + ": " + e.what(),
                              false});
      }
    }
  }
};

Server::Server(store::Store& store, metrics::Registry& metrics, ServerOptions options)
    : impl_(std::make_unique<Impl>(store, metrics, std::move(options))) {}

Server::~Server() { stop(); }

Result<uint16_t> Server::start() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->started) return Error{VMHOST_ERR_FAILED_PRECONDITION, "already started", false};
    impl_->started = true;
  }
  // Shared: the thread may still be inside set_value() when get() returns.
  auto ready = std::make_shared<std::promise<Result<uint16_t>>>();
  auto future = ready->get_future();
  impl_->thread = std::thread([this, ready] { impl_->run(*ready); });
  Result<uint16_t> r = future.get();
  if (!r) impl_->thread.join();
  return r;
}

void Server::stop() {
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> f;
  {
    std::lock_guard lock(impl_->mu);
    f = kj::mv(impl_->stopFulfiller);
  }
  if (f) f->fulfill();
  f = nullptr;
  if (impl_->thread.joinable()) impl_->thread.join();
}

uint16_t Server::port() const { return impl_->port.load(); }

}  // namespace vmhost::api
