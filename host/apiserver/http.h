// The HTTP plumbing of the API server: a request as the routes see it, a
// reply, Kubernetes Status objects, bodies (JSON or YAML, bounded), and the
// Responder a route answers through. Nothing here knows a resource.
#pragma once

#include "api/validation.h"

#include <kj/async.h>
#include <kj/compat/http.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace vmhost::apiserver {

using Json = api::Json;
using Clock = std::chrono::steady_clock;

// Documents nested deeper than this are refused before parsing: parsers and
// merge patch recurse, and no manifest needs more.
inline constexpr int kMaxNestingDepth = 100;

struct Reply {
  unsigned code = 200;
  std::string body;
  std::string contentType = "application/json";
  std::vector<std::string> warnings;  // sent as "Warning: 299 - ..." headers
};

Reply jsonReply(unsigned code, const Json& j);
// A metav1.Status (Failure) object.
Json statusObject(unsigned code, const std::string& reason, const std::string& message,
                  Json details = nullptr);
Reply statusReply(unsigned code, const std::string& reason, const std::string& message,
                  Json details = nullptr);
Reply badRequest(const std::string& message);
Reply notFoundReply();     // 404 for a path the server does not serve
Reply methodNotAllowed();  // 405
const char* statusText(unsigned code);

enum class Verb : uint8_t { kGet, kPost, kPut, kPatch, kDelete, kOther };

struct Request {
  Verb verb = Verb::kOther;
  std::string method;  // for messages
  std::string path;
  std::vector<std::string> segments;  // percent-decoded
  std::map<std::string, std::string> query;
  std::string accept;
  std::string contentType;  // media type only, lower case
  std::string body;
  bool wantTable = false;
  api::FieldValidation fieldValidation = api::FieldValidation::kWarn;
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
  bool watch() const { return verb == Verb::kGet && flag("watch"); }
};

// Fills path, segments and query from the request target.
void parseTarget(const std::string& url, Request& req);
Verb verbOf(kj::HttpMethod method);
// "application/json; charset=utf-8" -> "application/json".
std::string mediaType(std::string_view header);
bool isYaml(const std::string& media);

// The body as JSON (YAML when `media` says so, through common/yaml.h), or
// the 400 Status explaining where it is malformed.
std::variant<Json, Reply> parseBody(const std::string& body, const std::string& media);
// parseBody for a create/update/patch body: also refuses other media types
// (415) and an empty body.
std::variant<Json, Reply> requestBody(const Request& req);

// Reads `in` into `out`; false if it exceeds `maxBytes`.
kj::Promise<bool> readBody(kj::AsyncInputStream& in, std::string& out, size_t maxBytes);

// The header ids every route needs, from the server's table.
struct HeaderIds {
  kj::HttpHeaderId accept;
  kj::HttpHeaderId warning;
  kj::HttpHeaderId authorization;
};

// How a route answers one request: a whole Reply, or a stream it writes
// itself (watches, WebSockets) after calling streaming(). Either way the
// request is counted once in the server's metrics, with its code.
class Responder {
 public:
  using Recorder = std::function<void(unsigned code)>;
  Responder(kj::HttpService::Response& response, const kj::HttpHeaderTable& table,
            const HeaderIds& ids, Recorder record)
      : response_(response), table_(table), ids_(ids), record_(std::move(record)) {}

  kj::Promise<void> send(Reply reply);
  // Counts the request as answered with `code` (101 for a WebSocket, 200
  // for a watch) before the route streams through response().
  void streaming(unsigned code) { record_(code); }

  kj::HttpService::Response& response() { return response_; }
  const kj::HttpHeaderTable& table() const { return table_; }

 private:
  kj::HttpService::Response& response_;
  const kj::HttpHeaderTable& table_;
  const HeaderIds& ids_;
  Recorder record_;
};

}  // namespace vmhost::apiserver
