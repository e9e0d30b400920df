// The contract checks. Each runs in its own child process (see runner.h) and
// fails by throwing Failure (abi.h); returning is a pass.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace vmhost::plugincheck {

struct CheckContext {
  std::string path;     // absolute path of the plugin file
  std::string config;   // the config JSON instances are created with
  std::string workDir;  // an empty directory of this check's own
  int32_t kind = 0;     // a vmhost_plugin_kind (as the host loader saw it)
  uint64_t capabilities = 0;
};

struct Check {
  std::string name;     // kebab-case, as printed
  std::string summary;  // one line, for --list
  bool needsLoader;     // runs only when the host loader accepts the plugin
  bool strict;          // runs only with --strict
  std::function<void(const CheckContext&)> run;
};

// Every check, in the order they run.
const std::vector<Check>& allChecks();

// `config` with an extra, unknown top-level key.
std::string withUnknownKey(const std::string& config);

}  // namespace vmhost::plugincheck
