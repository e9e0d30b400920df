#include "apiserver/http.h"

#include "common/yaml.h"

#include <algorithm>
#include <cctype>

namespace vmhost::apiserver {

Reply jsonReply(unsigned code, const Json& j) {
  // Names from the URL may carry invalid UTF-8 into messages; replace it
  // rather than fail the reply.
  return Reply{
      code, j.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json", {}};
}

Json statusObject(unsigned code, const std::string& reason, const std::string& message,
                  Json details) {
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
                  Json details) {
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

Reply notFoundReply() {
  return statusReply(404, "NotFound", "the server could not find the requested resource");
}

Reply methodNotAllowed() {
  return statusReply(405, "MethodNotAllowed",
                     "the server does not allow this method on the requested resource");
}

namespace {

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

}  // namespace

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

namespace {

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

}  // namespace

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

std::variant<Json, Reply> requestBody(const Request& req) {
  const std::string& m = req.contentType;
  if (!m.empty() && m != "application/json" && !isYaml(m)) {
    return statusReply(415, "UnsupportedMediaType",
                       "the body of the request was in an unknown format - accepted media "
                       "types include: application/json, application/yaml");
  }
  if (req.body.empty()) return badRequest("the request body is empty");
  return parseBody(req.body, m);
}

Verb verbOf(kj::HttpMethod method) {
  switch (method) {
    case kj::HttpMethod::GET:
      return Verb::kGet;
    case kj::HttpMethod::POST:
      return Verb::kPost;
    case kj::HttpMethod::PUT:
      return Verb::kPut;
    case kj::HttpMethod::PATCH:
      return Verb::kPatch;
    case kj::HttpMethod::DELETE:
      return Verb::kDelete;
    default:
      return Verb::kOther;
  }
}

kj::Promise<bool> readBody(kj::AsyncInputStream& in, std::string& out, size_t maxBytes) {
  auto buf = kj::heapArray<kj::byte>(65536);
  auto& ref = buf;
  return in.tryRead(ref.begin(), 1, ref.size())
      .then([&in, &out, maxBytes, buf = kj::mv(buf)](size_t n) mutable -> kj::Promise<bool> {
        if (n == 0) return true;
        out.append(reinterpret_cast<const char*>(buf.begin()), n);
        if (out.size() > maxBytes) return false;
        return readBody(in, out, maxBytes);
      });
}

kj::Promise<void> Responder::send(Reply reply) {
  record_(reply.code);
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
  if (!warning.empty()) headers.set(ids_.warning, kj::heapString(warning));
  auto body = kj::heapString(reply.body);
  auto stream = response_.send(reply.code, statusText(reply.code), headers, body.size());
  auto p = stream->write(body.begin(), body.size());
  return p.attach(kj::mv(stream), kj::mv(body));
}

}  // namespace vmhost::apiserver
