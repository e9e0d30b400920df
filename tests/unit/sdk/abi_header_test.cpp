// Pins the plugin ABI. Any edit to sdk/include/vmhost/plugin.h changes its
// hash and fails this test, so an ABI change is always deliberate (as Envoy
// does for its dynamic-module ABI). When you change the header on purpose:
// keep old plugins working (see the rules at the top of plugin.h), bump
// VMHOST_ABI_VERSION if they cannot, then update kPinnedSha256 below in the
// same commit and say why in its message.
#define BOOST_TEST_MODULE abi_header
#include <boost/test/unit_test.hpp>

#include <vmhost/plugin.h>

#include <openssl/evp.h>

#include <cstddef>
#include <fstream>
#include <sstream>
#include <string>

namespace {

constexpr const char* kPinnedSha256 =
    "62d3d60c011978c98a59c10eca5d896aac0447691b757f45ac89cae53ccc2488";

std::string sha256Hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(header_hash_is_pinned) {
  std::ifstream in(std::string(VMHOST_TEST_SOURCE_DIR) + "/sdk/include/vmhost/plugin.h",
                   std::ios::binary);
  BOOST_TEST_REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  BOOST_TEST(sha256Hex(ss.str()) == kPinnedSha256,
             "sdk/include/vmhost/plugin.h changed: this is an ABI change; see this test's header");
}

// The layout on LP64 (x86_64, aarch64), as plugins built today see it.
BOOST_AUTO_TEST_CASE(struct_layout_is_pinned) {
  BOOST_TEST(sizeof(vmhost_error) == 8u + VMHOST_ERROR_MESSAGE_SIZE);
  BOOST_TEST(offsetof(vmhost_error, message) == 8u);
  BOOST_TEST(sizeof(vmhost_buffer) == 24u);
  BOOST_TEST(sizeof(vmhost_negotiation) == 24u);
  BOOST_TEST(offsetof(vmhost_negotiation, abi_version) == 20u);
  BOOST_TEST(offsetof(vmhost_host_callbacks, log) == 16u);
  BOOST_TEST(offsetof(vmhost_host_callbacks, report_progress) == 24u);  // SDK 0.2
  BOOST_TEST(sizeof(vmhost_host_callbacks) == 32u);
  BOOST_TEST(offsetof(vmhost_plugin_descriptor, name) == 16u);
  BOOST_TEST(offsetof(vmhost_plugin_descriptor, capabilities) == 40u);
  BOOST_TEST(offsetof(vmhost_plugin_descriptor, create_fn) == 48u);
  BOOST_TEST(offsetof(vmhost_plugin_descriptor, release_fn) == 72u);
  BOOST_TEST(sizeof(vmhost_plugin_descriptor) == 80u);
}

BOOST_AUTO_TEST_CASE(numbering_is_pinned) {
  BOOST_TEST(VMHOST_KIND_SCHEDULER == 1);
  BOOST_TEST(VMHOST_KIND_MIGRATION == 4);
  BOOST_TEST(VMHOST_ERR_INVALID_ARGUMENT == 3);
  BOOST_TEST(VMHOST_ERR_UNIMPLEMENTED == 12);
  BOOST_TEST(VMHOST_ERR_DATA_LOSS == 15);
  BOOST_TEST(VMHOST_METHOD_STORAGE_RELEASE == 2);
  BOOST_TEST(VMHOST_METHOD_MIGRATION_PROGRESS == 2);
}
