// vmhost-plugin-check: the plugin conformance kit.
//
//   vmhost-plugin-check FILE.so [--config JSON] [--only CHECK[,CHECK...]]
//                               [--strict] [--timeout SECONDS] [--verbose]
//   vmhost-plugin-check --list
//
// Loads a plugin and runs the contract checks for its kind, each in a child
// process of its own: a check that crashes, aborts or hangs past the timeout
// fails with the signal or the timeout named, and the next check runs. Prints
// `PASS <check>` or `FAIL <check>: <reason>` per check, then
// `N passed, M failed`.
//
// Exit status: 0 when every check passes; 1 when one fails, or when the file
// cannot be loaded at all (with the loader's one-line error on stderr); 2 on
// a usage error.
//
// The first line, `load`, says whether the host's own loader
// (vmhost::PluginLibrary::open) accepts the plugin; when it does not, only
// the descriptor and negotiation checks run. `--strict` adds checks beyond
// the ABI's minimum (see --list): valid UTF-8 in error messages and strict
// reading of request fields, both of which plugin.hpp provides.
//
// Config: instances are created with --config (default "{}"). Every check
// gets a fresh empty directory, which "@TMPDIR@" in --config stands for; a
// storage plugin with no --config gets {"pool": "<that directory>/pool"}.
// With a --config of your own, a storage plugin's checks prepare and release
// (deleteData) volumes of VMs named default/conformance-vm* in your pool.
#include "abi.h"
#include "checks.h"
#include "runner.h"

#include <vmhost/loader/plugin_host.h>

#include <dlfcn.h>
#include <stdlib.h>

#include <kj/exception.h>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace vmhost::plugincheck {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage =
    "usage: vmhost-plugin-check FILE.so [--config JSON] [--only CHECK[,CHECK...]]\n"
    "                           [--strict] [--timeout SECONDS] [--verbose]\n"
    "       vmhost-plugin-check --list\n"
    "\n"
    "Runs the vmhost plugin contract checks on FILE.so, each in its own process.\n"
    "  --config JSON     the config instances are created with (default {}; for a\n"
    "                    storage plugin {\"pool\": \"<fresh directory>/pool\"});\n"
    "                    @TMPDIR@ stands for a fresh directory per check\n"
    "  --only CHECKS     run only these checks (comma-separated, repeatable)\n"
    "  --strict          also run the strict checks (see --list; --only runs them too)\n"
    "  --timeout SECS    per-check time limit (default 10)\n"
    "  --verbose         show what the plugin logs\n"
    "  --list            list the checks and exit\n"
    "Exit status: 0 all checks pass, 1 a check fails or FILE does not load, 2 usage.\n";

constexpr const char* kLoadCheck = "load";

struct Options {
  std::string path;
  std::optional<std::string> config;
  std::set<std::string> only;
  bool strict = false;
  bool verbose = false;
  bool list = false;
  int timeoutSeconds = 10;
};

[[noreturn]] void usage(const std::string& error) {
  std::fprintf(stderr, "vmhost-plugin-check: %s\n%s", error.c_str(), kUsage);
  std::exit(2);
}

bool knownCheck(const std::string& name) {
  if (name == kLoadCheck) return true;
  for (const auto& check : allChecks()) {
    if (check.name == name) return true;
  }
  return false;
}

Options parse(int argc, char** argv) {
  Options o;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto value = [&](size_t& i, const std::string& flag, std::string& out) {
    const std::string& arg = args[i];
    if (arg.size() > flag.size() && arg.compare(0, flag.size() + 1, flag + "=") == 0) {
      out = arg.substr(flag.size() + 1);
      return true;
    }
    if (arg != flag) return false;
    if (i + 1 >= args.size()) usage(flag + " needs a value");
    out = args[++i];
    return true;
  };
  for (size_t i = 0; i < args.size(); ++i) {
    std::string v;
    if (args[i] == "-h" || args[i] == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (args[i] == "--strict") {
      o.strict = true;
    } else if (args[i] == "--verbose" || args[i] == "-v") {
      o.verbose = true;
    } else if (args[i] == "--list") {
      o.list = true;
    } else if (value(i, "--config", v)) {
      o.config = v;
    } else if (value(i, "--only", v)) {
      std::stringstream names(v);
      for (std::string name; std::getline(names, name, ',');) {
        if (name.empty()) continue;
        if (!knownCheck(name)) usage("unknown check '" + name + "' (see --list)");
        o.only.insert(name);
      }
      if (o.only.empty()) usage("--only needs a check name");
    } else if (value(i, "--timeout", v)) {
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), o.timeoutSeconds);
      if (ec != std::errc() || end != v.data() + v.size() || o.timeoutSeconds <= 0) {
        usage("--timeout needs a positive number of seconds, got '" + v + "'");
      }
    } else if (args[i].size() > 1 && args[i][0] == '-') {
      usage("unknown option '" + args[i] + "'");
    } else if (o.path.empty()) {
      o.path = args[i];
    } else {
      usage("unexpected argument '" + args[i] + "'");
    }
  }
  if (o.path.empty() && !o.list) usage("no plugin file given");
  return o;
}

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string replaceAll(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
  return s;
}

// The config instances of one check are created with.
std::string effectiveConfig(const Options& o, int32_t kind, const std::string& workDir) {
  if (o.config) {
    std::string escaped = jsonString(workDir);
    return replaceAll(*o.config, "@TMPDIR@", escaped.substr(1, escaped.size() - 2));
  }
  if (kind == VMHOST_KIND_STORAGE) return "{\"pool\": " + jsonString(workDir + "/pool") + "}";
  return "{}";
}

std::string oneLine(const std::string& text) {
  std::string s = printable(text);
  if (s.size() > 2000) s = s.substr(0, 1997) + "...";
  return s;
}

// What the host loader makes of the file, found out in a child process.
struct Probe {
  bool loaded = false;     // the host loader accepts the plugin
  bool reachable = false;  // dlopen() and the entry symbol work (checks can run)
  std::string error;       // the loader's one-line error
  int32_t kind = 0;
  uint64_t capabilities = 0;
  std::string name, version;
};

Probe probe(const std::string& path, std::chrono::seconds timeout) {
  auto outcome = runInChild(
      [&]() -> std::string {
        auto library = PluginLibrary::open(path);
        std::ostringstream out;
        if (library.ok()) {
          const auto& info = library.value()->info();
          out << "OK\n"
              << info.kind << "\n"
              << info.capabilities << "\n"
              << info.name << "\n"
              << info.version;
          return out.str();
        }
        void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        bool reachable =
            handle != nullptr && ::dlsym(handle, VMHOST_PLUGIN_ENTRY_SYMBOL) != nullptr;
        out << "ERR\n" << (reachable ? 1 : 0) << "\n" << library.error().message;
        return out.str();
      },
      timeout);
  Probe p;
  if (outcome.kind != ChildOutcome::Kind::Reported) {
    p.error = path + ": loading the plugin " + outcome.describe(timeout);
    return p;
  }
  std::istringstream in(outcome.report);
  std::string status, line;
  std::getline(in, status);
  if (status == "OK") {
    p.loaded = p.reachable = true;
    std::getline(in, line);
    p.kind = std::stoi(line);
    std::getline(in, line);
    p.capabilities = std::stoull(line);
    std::getline(in, p.name);
    std::getline(in, p.version);
  } else {
    std::getline(in, line);
    p.reachable = line == "1";
    std::getline(in, p.error, '\0');
  }
  return p;
}

std::string runCheck(const Check& check, const CheckContext& ctx) {
  try {
    check.run(ctx);
    return "";
  } catch (const Failure& f) {
    return f.what();
  } catch (const kj::Exception& e) {
    return std::string("unexpected exception (escaped from the plugin?): ") +
           e.getDescription().cStr();
  } catch (const std::exception& e) {
    return std::string("unexpected exception (escaped from the plugin?): ") + e.what();
  } catch (...) {
    return "unexpected exception of unknown type (escaped from the plugin?)";
  }
}

int run(const Options& o) {
  const std::chrono::seconds timeout(o.timeoutSeconds);
  setVerbose(o.verbose);
  std::error_code ec;
  const std::string path = fs::absolute(o.path, ec).lexically_normal().string();
  auto selected = [&](const std::string& name) { return o.only.empty() || o.only.count(name) > 0; };
  // A strict check runs with --strict, or when --only names it.
  auto runs = [&](const Check& check) {
    return selected(check.name) && (!check.strict || o.strict || o.only.count(check.name) > 0);
  };

  Probe p = probe(path, timeout);
  if (!p.reachable) {
    std::fprintf(stderr, "%s\n", oneLine(p.error).c_str());
    return 1;
  }

  int passed = 0, failed = 0;
  auto report = [&](const std::string& name, const std::string& reason) {
    if (reason.empty()) {
      std::printf("PASS %s\n", name.c_str());
      ++passed;
    } else {
      std::printf("FAIL %s: %s\n", name.c_str(), oneLine(reason).c_str());
      ++failed;
    }
    std::fflush(stdout);
  };

  bool loaderChecksWanted = false;
  for (const auto& check : allChecks()) {
    if (check.needsLoader && runs(check)) loaderChecksWanted = true;
  }
  if (selected(kLoadCheck) || (!p.loaded && loaderChecksWanted)) {
    report(kLoadCheck, p.loaded ? "" : "the host loader refuses the plugin: " + p.error);
  }

  const char* tmp = std::getenv("TMPDIR");
  std::string base = (tmp != nullptr && *tmp != '\0' ? std::string(tmp) : std::string("/tmp")) +
                     "/vmhost-plugin-check.XXXXXX";
  if (::mkdtemp(base.data()) == nullptr) {
    std::fprintf(stderr, "vmhost-plugin-check: cannot create a temporary directory %s: %s\n",
                 base.c_str(), std::strerror(errno));
    return 1;
  }

  for (const auto& check : allChecks()) {
    if (!runs(check)) continue;
    if (check.needsLoader && !p.loaded) continue;  // "load" failed and says why
    CheckContext ctx;
    ctx.path = path;
    ctx.workDir = base + "/" + check.name;
    fs::create_directories(ctx.workDir, ec);
    ctx.config = effectiveConfig(o, p.kind, ctx.workDir);
    ctx.kind = p.kind;
    ctx.capabilities = p.capabilities;
    auto outcome = runInChild([&] { return "R" + runCheck(check, ctx); }, timeout);
    if (outcome.kind == ChildOutcome::Kind::Reported) {
      report(check.name, outcome.report.substr(1));
    } else {
      report(check.name, outcome.describe(timeout));
    }
  }
  fs::remove_all(base, ec);

  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace vmhost::plugincheck

int main(int argc, char** argv) {
  using namespace vmhost::plugincheck;
  Options options = parse(argc, argv);
  if (options.list) {
    std::printf("%-22s %s\n", kLoadCheck,
                "the host loader (vmhost::PluginLibrary::open) accepts the plugin");
    for (const auto& check : allChecks())
      std::printf("%-22s %s\n", check.name.c_str(), check.summary.c_str());
    return 0;
  }
  return run(options);
}
