// `vmhost check-config FILE` (and start-up, which shares the code): each
// failure is exactly one line on stderr naming the file and the cause, with
// a non-zero exit; a good config prints OK. Runs the real binary.
#define BOOST_TEST_MODULE check_config
#include <boost/test/unit_test.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace fs = std::filesystem;

namespace {

struct Run {
  int exit = -1;
  std::string out;
  std::string err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Sandbox {
  fs::path dir;
  Sandbox() {
    char tmpl[] = "/tmp/vmhost-check-config-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~Sandbox() { fs::remove_all(dir); }

  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(dir / name) << text;
    return dir / name;
  }

  Run vmhost(const std::string& args) const {
    std::string cmd = std::string(VMHOST_TEST_BINARY_DIR) + "/bin/vmhost " + args + " >" +
                      (dir / "out").string() + " 2>" + (dir / "err").string();
    int status = std::system(cmd.c_str());
    Run r;
    r.exit = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(dir / "out");
    r.err = slurp(dir / "err");
    return r;
  }

  // check-config on a config file holding `text`; returns the run.
  Run check(const std::string& text) const {
    auto file = write("vmhost.yaml", text);
    return vmhost("check-config " + file.string());
  }
  std::string cfg() const { return (dir / "vmhost.yaml").string(); }
};

std::string pluginDir() { return std::getenv("VMHOST_PLUGIN_DIR"); }
std::string fixtureDir() { return std::getenv("VMHOST_FIXTURE_PLUGIN_DIR"); }

// One line, then a newline, nothing else; and a failing exit code.
void expectOneLine(const Run& r, const std::string& line) {
  BOOST_TEST(r.exit == 1);
  BOOST_TEST(r.out.empty());
  BOOST_TEST(r.err == line + "\n");
}

}  // namespace

BOOST_AUTO_TEST_CASE(good_config_is_ok) {
  Sandbox s;
  auto r = s.check(
      "plugins:\n"
      "  storage: {name: local, config: {pool: " +
      (s.dir / "pool").string() +
      "}}\n"
      "  network: {name: libvirt-network, config: {macPrefix: '52:54:00'}}\n"
      "  migration: {name: precopy, config: {maxDowntimeMs: 500}}\n");
  BOOST_TEST(r.exit == 0, r.err);
  BOOST_TEST(r.out.find(s.cfg() + ": OK (") == 0, r.out);
  BOOST_TEST(r.out.find("storage local 0.1.0") != std::string::npos, r.out);
}

BOOST_AUTO_TEST_CASE(missing_file) {
  Sandbox s;
  auto r = s.vmhost("check-config " + (s.dir / "nope.yaml").string());
  expectOneLine(
      r, (s.dir / "nope.yaml").string() + ": cannot open config file: No such file or directory");
}

BOOST_AUTO_TEST_CASE(invalid_yaml_names_the_position) {
  Sandbox s;
  auto r = s.check("plugins: {scheduler: [\n");
  BOOST_TEST(r.exit == 1);
  BOOST_TEST(r.err.rfind(s.cfg() + ":", 0) == 0, r.err);
  BOOST_TEST(r.err.find("invalid YAML") != std::string::npos, r.err);
}

BOOST_AUTO_TEST_CASE(unknown_top_level_key) {
  Sandbox s;
  auto r = s.check("plugns: {}\n");
  expectOneLine(r, s.cfg() +
                       ":1:1: unknown key 'plugns' (expected one of: pluginDir, plugins, dataDir, "
                       "listen, nodeName, libvirt, node, cluster, store, events, migrations)");
}

BOOST_AUTO_TEST_CASE(store_backend_is_checked) {
  Sandbox s;
  auto r = s.check("store: {backend: mysql}\n");
  expectOneLine(r, s.cfg() + ":1:18: store.backend: expected one of: sqlite, got 'mysql'");
  r = s.check("store: {backend: sqlite, path: /x}\n");
  expectOneLine(r, s.cfg() + ":1:26: store: unknown key 'path' (expected one of: backend)");
}

BOOST_AUTO_TEST_CASE(unknown_slot_key) {
  Sandbox s;
  auto r = s.check("plugins:\n  scheduler: {nmae: default}\n");
  expectOneLine(
      r, s.cfg() +
             ":2:15: plugins.scheduler: unknown key 'nmae' (expected one of: name, path, config)");
}

BOOST_AUTO_TEST_CASE(unknown_slot) {
  Sandbox s;
  auto r = s.check("plugins:\n  schedular: {name: default}\n");
  expectOneLine(r, s.cfg() +
                       ":2:3: plugins: unknown slot 'schedular' (expected one of: scheduler, "
                       "storage, network, migration)");
}

BOOST_AUTO_TEST_CASE(unknown_key_in_plugin_config_names_the_slot_plugin_and_key) {
  Sandbox s;
  auto r = s.check("plugins:\n  migration: {name: precopy, config: {maxDowntime: 5}}\n");
  expectOneLine(r, s.cfg() +
                       ": plugins.migration (precopy): config: unknown key \"maxDowntime\" (known "
                       "keys: bandwidthMiBps, maxDowntimeMs, completionTimeoutPerGiBSeconds, "
                       "progressTimeoutSeconds, autoConverge, parallelConnections)");
  r = s.check("plugins:\n  storage: {name: local, config: {pol: /srv/pool}}\n");
  BOOST_TEST(r.exit == 1);
  BOOST_TEST(r.err.rfind(s.cfg() + ": plugins.storage (local): config: unknown key \"pol\" "
                                   "(known keys: pool",
                         0) == 0,
             r.err);
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);
}

BOOST_AUTO_TEST_CASE(wrong_type_in_plugin_config_names_the_key) {
  Sandbox s;
  auto r = s.check("plugins:\n  migration: {name: precopy, config: {maxDowntimeMs: lots}}\n");
  expectOneLine(r, s.cfg() +
                       ": plugins.migration (precopy): config: key \"maxDowntimeMs\": expected a "
                       "number, got the string \"lots\"");
  r = s.check(
      "plugins:\n  network: {name: libvirt-network, config: {networks: [{name: a, bridge: br9, "
      "address: 10.9.0.1/24}, {name: b, bridge: br8, adress: 10.8.0.1/24}]}}\n");
  BOOST_TEST(r.exit == 1);
  BOOST_TEST(r.err.rfind(s.cfg() + ": plugins.network (libvirt-network): config: unknown key "
                                   "\"networks[1].adress\" (known keys: name, bridge, address,",
                         0) == 0,
             r.err);
}

BOOST_AUTO_TEST_CASE(missing_plugin_file) {
  Sandbox s;
  auto r = s.check("plugins:\n  network: {name: ovs}\n");
  expectOneLine(r, s.cfg() + ": plugins.network: " + pluginDir() +
                       "/vmhost-network-ovs.so: plugin file not found");
}

BOOST_AUTO_TEST_CASE(not_a_shared_object) {
  Sandbox s;
  auto fake = s.write("fake.so", "#!/bin/sh\necho not a plugin\n");
  auto r = s.check("plugins:\n  scheduler: {path: fake.so}\n");  // relative to the config file
  expectOneLine(r, s.cfg() + ": plugins.scheduler: " + fake.string() +
                       ": not a shared object (no ELF header)");
}

BOOST_AUTO_TEST_CASE(no_entry_symbol) {
  Sandbox s;
  std::string so = fixtureDir() + "/vmhost-scheduler-no-entry.so";
  auto r = s.check("plugins:\n  scheduler: {path: " + so + "}\n");
  expectOneLine(r, s.cfg() + ": plugins.scheduler: " + so +
                       ": no entry symbol 'vmhost_plugin_entry' (not a vmhost plugin)");
}

BOOST_AUTO_TEST_CASE(abi_out_of_range) {
  Sandbox s;
  std::string so = fixtureDir() + "/vmhost-scheduler-abi-future.so";
  auto r = s.check("plugins:\n  scheduler: {path: " + so + "}\n");
  expectOneLine(r, s.cfg() + ": plugins.scheduler: " + so +
                       ": ABI out of range: plugin supports ABI 7..9, host supports ABI 1");
}

BOOST_AUTO_TEST_CASE(wrong_kind_for_the_slot) {
  Sandbox s;
  std::string so = pluginDir() + "/vmhost-network-libvirt-network.so";
  auto r = s.check("plugins:\n  storage: {path: " + so + "}\n");
  expectOneLine(r, s.cfg() + ": plugins.storage: " + so +
                       ": plugin 'libvirt-network' is a network plugin, not a storage plugin");
}

BOOST_AUTO_TEST_CASE(create_failure_with_the_plugins_message) {
  Sandbox s;
  auto r = s.check("plugins:\n  storage: {name: local, config: {pool: relative/dir}}\n");
  expectOneLine(r, s.cfg() +
                       ": plugins.storage (local): config.pool: must be an absolute path, got "
                       "'relative/dir'");
}

BOOST_AUTO_TEST_CASE(name_and_path_together) {
  Sandbox s;
  auto r = s.check("plugins:\n  storage: {name: local, path: /x.so}\n");
  expectOneLine(r, s.cfg() + ":2:12: plugins.storage: give either 'name' or 'path', not both");
}

BOOST_AUTO_TEST_CASE(swapping_a_backend_is_one_line) {
  Sandbox s;
  std::string pool = (s.dir / "pool").string();
  auto a = s.vmhost(
      "plugins list --config " +
      s.write("a.yaml", "plugins:\n  storage: {name: local, config: {pool: " + pool + "}}\n")
          .string());
  BOOST_TEST(a.exit == 0, a.err);
  BOOST_TEST(a.out.find("storage    storage    local") != std::string::npos, a.out);
}

BOOST_AUTO_TEST_CASE(plugins_inspect_prints_the_descriptor) {
  Sandbox s;
  auto r = s.vmhost("plugins inspect " + pluginDir() + "/vmhost-network-libvirt-network.so");
  BOOST_TEST(r.exit == 0, r.err);
  BOOST_TEST(r.out.find("kind:         network\n") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("name:         libvirt-network\n") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("version:      0.1.0\n") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("abi:          1..1") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("capabilities: thread-safe") != std::string::npos, r.out);
  auto bad = s.vmhost("plugins inspect " + (s.dir / "missing.so").string());
  expectOneLine(bad, (s.dir / "missing.so").string() + ": plugin file not found");
}
