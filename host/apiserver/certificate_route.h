// POST /apis/vmhost.io/v1/nodes/<name>/certificate, authenticated with the
// join token (auth.h): signs a joining node's certificate request (PEM body)
// and answers {"certificate": PEM}. The signing is the controller's
// (vmhost/cluster_tls.h); this route only speaks HTTP.
#pragma once

#include "apiserver/http.h"
#include "common/result.h"

#include <functional>
#include <string>

namespace vmhost::apiserver {

using CertificateIssuer =
    std::function<Result<std::string>(const std::string& node, const std::string& csrPem)>;

Reply serveNodeCertificate(const std::string& node, const Request& req,
                           const CertificateIssuer& issue);

}  // namespace vmhost::apiserver
