// `vmhost all-in-one`: the controller and a node in one process, with the
// embedded store. The separate `controller` and `node` modes share these
// components; only the wiring between them differs.
#pragma once

#include <string>
#include <vector>

namespace vmhost::cli {

int allInOne(const std::vector<std::string>& args);

}  // namespace vmhost::cli
