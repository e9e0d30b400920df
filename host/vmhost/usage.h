// The command-line conventions every `vmhost` command follows: `--help`
// (or `-h`) prints the command's usage on stdout and exits 0; a usage error
// (an unknown flag, a missing or extra argument) prints the problem and the
// usage on stderr and exits 2; a failure of the work itself exits 1.
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace vmhost::cli {

inline bool helpRequested(const std::vector<std::string>& args) {
  return std::any_of(args.begin(), args.end(),
                     [](const std::string& a) { return a == "--help" || a == "-h"; });
}

inline int printUsage(const std::string& usage) {
  std::fputs(usage.c_str(), stdout);
  return 0;
}

// `command`: "vmhost check-config"; `problem`: "unknown flag '--x'".
inline int usageError(const std::string& command, const std::string& problem,
                      const std::string& usage) {
  std::fprintf(stderr, "%s: %s\n%s", command.c_str(), problem.c_str(), usage.c_str());
  return 2;
}

}  // namespace vmhost::cli
