// Who may call the API: bearer tokens (the cluster's API token), and the
// join token for the one request a joining node makes (its certificate).
// /healthz, /livez and /readyz stay open, as kube-apiserver's do.
#pragma once

#include "apiserver/http.h"

#include <optional>
#include <string>
#include <vector>

namespace vmhost::apiserver {

struct Credentials {
  std::vector<std::string> bearerTokens;  // empty: no authentication (loopback all-in-one)
  std::string joinToken;                  // accepted only for a node's certificate request
};

// Whether `req` is a node's certificate request
// (POST /apis/vmhost.io/v1/nodes/<name>/certificate).
bool isCertificateRequest(const Request& req);

// nullopt: let the request through; otherwise the 401 to send (logged).
// `authorization` is the Authorization header ("" when absent).
std::optional<Reply> authenticate(const Request& req, const std::string& authorization,
                                  const Credentials& credentials);

}  // namespace vmhost::apiserver
