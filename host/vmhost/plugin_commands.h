// `vmhost check-config`, `vmhost plugins list`, `vmhost plugins inspect`.
#pragma once

#include <string>
#include <vector>

namespace vmhost::cli {

// Each returns the process exit code; output goes to stdout, errors (one
// line each) to stderr.
int checkConfig(const std::vector<std::string>& args);
int pluginsList(const std::vector<std::string>& args);
int pluginsInspect(const std::vector<std::string>& args);

}  // namespace vmhost::cli
