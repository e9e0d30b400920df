// OpenAPI documents for the served kinds, as kube-apiserver publishes them:
//   /openapi/v2                     one Swagger 2.0 document (JSON, or the
//                                   gnostic protobuf encoding kubectl asks for)
//   /openapi/v3                     an index of group-version documents
//   /openapi/v3/apis/<group>/<ver>  OpenAPI 3.0 for one group-version
//
// kubectl uses them to validate manifests (client side, or to learn that
// the server validates fields itself: the `fieldValidation` parameter on
// PATCH), to choose the patch type for apply/edit (no strategic merge here,
// so JSON merge patch) and for `kubectl explain`.
#pragma once

#include "apiserver/http.h"
#include "apiserver/resources/registry.h"

#include <optional>
#include <string>
#include <vector>

namespace vmhost::apiserver {

struct OpenApiDocs {
  std::string v2Json;
  std::string v2Protobuf;  // gnostic openapi_v2.Document
  std::string v3Index;     // {"paths": {"apis/vmhost.io/v1": {"serverRelativeURL": ...}}}
  struct GroupVersionDoc {
    std::string path;  // "apis/vmhost.io/v1"
    std::string json;
    std::string hash;  // content hash, in the index's serverRelativeURL
  };
  std::vector<GroupVersionDoc> v3;
};

// Builds every document once, from the registered resources (they only
// change with the binary).
OpenApiDocs buildOpenApiDocs(const std::vector<ResourceRegistration>& resources,
                             const std::string& serverVersion);

// The component schemas by name (io.vmhost.v1.VirtualMachine, ...), OpenAPI
// v3 style; exposed for tests.
Json openApiSchemas(const std::vector<ResourceRegistration>& resources);

// GET /openapi/v2, /openapi/v3, /openapi/v3/<group-version>; nullopt for
// another path.
std::optional<Reply> serveOpenApi(const OpenApiDocs& docs, const Request& req);

// Encodes a Swagger 2.0 JSON document as gnostic's openapi_v2.Document
// protobuf (the subset kube-openapi reads: paths, definitions, vendor
// extensions as YAML).
std::string swaggerToProtobuf(const Json& swagger);

}  // namespace vmhost::apiserver
