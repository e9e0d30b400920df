#include "apiserver/auth.h"

#include "common/secret.h"

#include <cstdio>

namespace vmhost::apiserver {

bool isCertificateRequest(const Request& req) {
  return req.segments.size() == 6 && req.segments[0] == "apis" && req.segments[3] == "nodes" &&
         req.segments[5] == "certificate";
}

std::optional<Reply> authenticate(const Request& req, const std::string& authorization,
                                  const Credentials& credentials) {
  if (credentials.bearerTokens.empty()) return std::nullopt;
  if (req.path == "/healthz" || req.path == "/livez" || req.path == "/readyz") {
    return std::nullopt;
  }
  std::string token;
  if (authorization.rfind("Bearer ", 0) == 0) token = authorization.substr(7);
  if (!token.empty()) {
    if (isCertificateRequest(req)) {
      if (!credentials.joinToken.empty() && sameSecret(token, credentials.joinToken)) {
        return std::nullopt;
      }
    } else {
      for (const auto& t : credentials.bearerTokens) {
        if (sameSecret(token, t)) return std::nullopt;
      }
    }
  }
  std::fprintf(stderr, "api: 401 %s %s: %s\n", req.method.c_str(), req.path.c_str(),
               token.empty() ? "no bearer token" : "wrong bearer token");
  return statusReply(401, "Unauthorized", "Unauthorized");
}

}  // namespace vmhost::apiserver
