// Builders for the OpenAPI (v3 flavour) schemas of served kinds, shared by
// the resource files (each describes its own kind) and openapi.cpp (which
// assembles the documents). kubectl reads these to validate manifests, to
// choose the patch type and for `kubectl explain`.
#pragma once

#include "api/validation.h"

#include <iterator>
#include <string>
#include <vector>

namespace vmhost::apiserver::oas {

using Json = api::Json;

inline constexpr const char* kMetaPrefix = "io.k8s.apimachinery.pkg.apis.meta.v1.";

Json str(const std::string& desc);
Json integer(const std::string& desc);
Json boolean(const std::string& desc);
Json enumStr(const std::string& desc, std::vector<std::string> values);
template <size_t N>
std::vector<std::string> list(const char* const (&l)[N]) {
  return std::vector<std::string>(std::begin(l), std::end(l));
}
// A resource.Quantity: a string like "128Mi" (a bare integer is accepted too).
Json quantity(const std::string& desc);
Json ref(const std::string& name);
Json ref(const std::string& name, const std::string& desc);
Json obj(const std::string& desc, Json props, std::vector<std::string> required = {});
Json arr(const std::string& desc, Json items);
Json stringMap(const std::string& desc);
Json timestamp(const std::string& desc);
Json gvk(const std::string& group, const std::string& version, const std::string& kind);
Json conditionsSchema(const std::string& desc);
// ObjectMeta, ListMeta, Status (io.k8s.apimachinery.pkg.apis.meta.v1.*).
Json metaSchemas();
// A top-level kind: apiVersion, kind, metadata, spec, status.
Json topLevel(const std::string& desc, const std::string& group, const std::string& version,
              const std::string& kind, Json spec, Json status, bool specRequired);
// The list kind of `itemRef` (kind ends in "List").
Json listOf(const std::string& itemRef, const std::string& group, const std::string& version,
            const std::string& kind);

}  // namespace vmhost::apiserver::oas
