// `vmhost all-in-one`: the controller and a node in one process, with the
// embedded store. The separate `controller` and `node` modes share these
// components; only the wiring between them differs.
#pragma once

#include <string>
#include <vector>

namespace vmhost::cli {

int allInOne(const std::vector<std::string>& args);
// `vmhost controller`: store, API, scheduler, and the node server nodes join.
int controllerMain(const std::vector<std::string>& args);
// `vmhost node`: libvirt, the storage and network plugins, the node agent,
// joined to a controller over RPC.
int nodeMain(const std::vector<std::string>& args);
// `vmhost init`: the cluster CA, the controller's certificate, the join and
// API tokens, and client configs (init_command.cpp).
int initCluster(const std::vector<std::string>& args);

}  // namespace vmhost::cli
