// Loads a default plugin through the host's loader for a test.
#pragma once

#include <vmhost/loader/plugin_host.h>

#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <memory>
#include <string>

namespace vmhost::test {

inline std::unique_ptr<PluginInstance> loadPlugin(const std::string& file,
                                                  const std::string& config = "{}") {
  const char* dir = std::getenv("VMHOST_PLUGIN_DIR");
  BOOST_TEST_REQUIRE(dir != nullptr);
  auto lib = PluginLibrary::open(std::string(dir) + "/" + file);
  BOOST_TEST_REQUIRE(lib.ok(), (lib.ok() ? "" : lib.error().message));
  auto inst = PluginInstance::create(lib.value(), config);
  BOOST_TEST_REQUIRE(inst.ok(), (inst.ok() ? "" : inst.error().message));
  return std::move(inst.value());
}

// The error create() gives for `config`.
inline std::string createError(const std::string& file, const std::string& config) {
  auto lib = PluginLibrary::open(std::string(std::getenv("VMHOST_PLUGIN_DIR")) + "/" + file);
  BOOST_TEST_REQUIRE(lib.ok());
  auto inst = PluginInstance::create(lib.value(), config);
  return inst.ok() ? std::string("(created)") : inst.error().message;
}

}  // namespace vmhost::test
