#include "apiserver/certificate_route.h"

#include <cstdio>

namespace vmhost::apiserver {

Reply serveNodeCertificate(const std::string& node, const Request& req,
                           const CertificateIssuer& issue) {
  if (req.verb != Verb::kPost) {
    return statusReply(405, "MethodNotAllowed", "POST a PEM certificate request");
  }
  auto cert = issue(node, req.body);
  if (!cert.ok()) {
    unsigned code = cert.error().code == VMHOST_ERR_ALREADY_EXISTS ? 409
                    : cert.error().code == VMHOST_ERR_INTERNAL     ? 500
                                                                   : 400;
    std::fprintf(stderr, "api: refused a certificate for node %s: %s\n", node.c_str(),
                 cert.error().message.c_str());
    return statusReply(code,
                       code == 409   ? "AlreadyExists"
                       : code == 500 ? "InternalError"
                                     : "BadRequest",
                       cert.error().message);
  }
  return jsonReply(201, Json{{"certificate", cert.value()}});
}

}  // namespace vmhost::apiserver
