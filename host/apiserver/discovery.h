// Discovery, as kubectl reads it: /version, /api, /api/v1, /apis,
// /apis/<group>, /apis/<group>/<version>. Groups and resource lists come from
// the registered resources (resources/registry.h), so a new resource is
// discoverable the moment it is registered.
#pragma once

#include "apiserver/http.h"
#include "apiserver/resource.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vmhost::apiserver {

class Discovery {
 public:
  Discovery(std::vector<ResourceInfo> resources, std::string vmhostVersion);

  // The discovery document for `req` (a GET), or nullopt when the path is
  // not a discovery path. `port` is the server's, for /api's address.
  std::optional<Reply> serve(const Request& req, uint16_t port) const;

 private:
  Json group(const std::string& name) const;
  Json resourceList(const std::string& group, const std::string& version) const;

  std::vector<ResourceInfo> resources_;
  std::vector<std::pair<std::string, std::string>> groups_;  // (group, version), named groups only
  std::string vmhostVersion_;
};

}  // namespace vmhost::apiserver
