// The host's side of the boundary: a plugin that throws, fails, or returns
// malformed, oversized or misaligned Cap'n Proto yields an error for that
// call only; the host and every other plugin keep working.
#define BOOST_TEST_MODULE plugin_loader
#include <boost/test/unit_test.hpp>

#include <vmhost/loader/plugin_host.h>

#include <vmhost/schema/scheduler.capnp.h>
#include <vmhost/schema/storage.capnp.h>

#include <cstdlib>
#include <string>

using namespace vmhost;

namespace {

std::string fixture(const std::string& name) {
  return std::string(std::getenv("VMHOST_FIXTURE_PLUGIN_DIR")) + "/vmhost-scheduler-" + name +
         ".so";
}
std::string plugin(const std::string& file) {
  return std::string(std::getenv("VMHOST_PLUGIN_DIR")) + "/" + file;
}

std::unique_ptr<PluginInstance> instance(const std::string& path, std::string config = "{}") {
  auto lib = PluginLibrary::open(path);
  BOOST_TEST_REQUIRE(lib.ok(), (lib.ok() ? "" : lib.error().message));
  auto inst = PluginInstance::create(lib.value(), config);
  BOOST_TEST_REQUIRE(inst.ok(), (inst.ok() ? "" : inst.error().message));
  return std::move(inst.value());
}

Result<Reply<schema::ScheduleResult>> schedule(PluginInstance& p, const char* vm = "vm") {
  capnp::MallocMessageBuilder message;
  auto req = message.initRoot<schema::ScheduleRequest>();
  req.initVm().initRef().setName(vm);
  req.setFullSync(true);
  return p.call<schema::ScheduleResult>(VMHOST_METHOD_SCHEDULER_SCHEDULE, message);
}

// The host still works: a real plugin loads and answers.
void hostStillWorks() {
  auto storage =
      instance(plugin("vmhost-storage-local.so"), R"({"pool":"/tmp/vmhost-loader-test"})");
  capnp::MallocMessageBuilder message;
  auto req = message.initRoot<schema::VolumeRequest>();
  req.initVm().setName("vm");
  req.getVm().setNamespace("default");
  auto vol = req.initVolume();
  vol.setName("data");
  vol.initSource().setHostPath("/dev/null");
  auto reply = storage->call<schema::VolumeAttachment>(VMHOST_METHOD_STORAGE_PREPARE, message);
  BOOST_TEST_REQUIRE(reply.ok(), (reply.ok() ? "" : reply.error().message));
  BOOST_TEST(std::string(reply.value().get().getTargetDev().cStr()) == "vda");
}

}  // namespace

BOOST_AUTO_TEST_CASE(author_layer_turns_an_exception_into_internal) {
  auto p = instance(fixture("throws"));
  for (int i = 0; i < 3; ++i) {  // the same instance keeps answering
    auto r = schedule(*p);
    BOOST_TEST_REQUIRE(!r.ok());
    BOOST_TEST(r.error().code == VMHOST_ERR_INTERNAL);
    BOOST_TEST(r.error().message == "scheduler plugin 'throws': fixture: schedule exploded");
    BOOST_TEST(!r.error().retryable);
  }
  hostStillWorks();
}

BOOST_AUTO_TEST_CASE(plugin_error_keeps_code_and_retryable) {
  auto p = instance(fixture("sdk-error"));
  auto r = schedule(*p);
  BOOST_TEST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == VMHOST_ERR_UNAVAILABLE);
  BOOST_TEST(r.error().retryable);
  BOOST_TEST(r.error().message == "scheduler plugin 'sdk-error': fixture: backend unavailable");
  auto ok = schedule(*p, "ok");  // the next call succeeds
  BOOST_TEST_REQUIRE(ok.ok());
  BOOST_TEST(std::string(ok.value().get().getScheduled().getNode().cStr()) == "node-a");
}

BOOST_AUTO_TEST_CASE(exception_escaping_the_c_boundary_is_contained) {
  auto p = instance(fixture("raw-throw"));
  auto r = schedule(*p);
  BOOST_TEST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == VMHOST_ERR_INTERNAL);
  BOOST_TEST(
      r.error().message ==
      "scheduler plugin 'raw-throw': exception escaped the plugin ABI boundary (a plugin bug)");
  hostStillWorks();
}

BOOST_AUTO_TEST_CASE(malformed_response_is_an_error) {
  auto p = instance(fixture("garbage"));
  auto r = schedule(*p);
  BOOST_TEST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == VMHOST_ERR_INTERNAL);
  BOOST_TEST(r.error().message.rfind(
                 "scheduler plugin 'garbage' returned a malformed response to method 1: ", 0) == 0,
             r.error().message);
  hostStillWorks();
}

BOOST_AUTO_TEST_CASE(oversized_response_is_refused_before_reading) {
  auto p = instance(fixture("oversized"));
  auto r = schedule(*p);
  BOOST_TEST_REQUIRE(!r.ok());
  BOOST_TEST(
      r.error().message ==
      "scheduler plugin 'oversized' returned a malformed response to method 1: size 75497472 "
      "exceeds the limit of 67108864 bytes");
  hostStillWorks();
}

BOOST_AUTO_TEST_CASE(bad_size_and_null_data_are_refused) {
  auto bad = schedule(*instance(fixture("bad-size")));
  BOOST_TEST_REQUIRE(!bad.ok());
  BOOST_TEST(
      bad.error().message ==
      "scheduler plugin 'bad-size' returned a malformed response to method 1: size 13 is not "
      "a multiple of 8");
  auto null = schedule(*instance(fixture("null-data")));
  BOOST_TEST_REQUIRE(!null.ok());
  BOOST_TEST(
      null.error().message ==
      "scheduler plugin 'null-data' returned a malformed response to method 1: empty buffer");
}

BOOST_AUTO_TEST_CASE(misaligned_valid_response_is_copied_and_read) {
  auto p = instance(fixture("misaligned"));
  auto r = schedule(*p);
  BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
  BOOST_TEST(std::string(r.value().get().getScheduled().getNode().cStr()) == "node-a");
}

BOOST_AUTO_TEST_CASE(traversal_limit_bounds_what_the_host_reads) {
  // A small limit turns a valid but large-for-the-limit response into an error.
  auto lib = PluginLibrary::open(fixture("misaligned"));
  BOOST_TEST_REQUIRE(lib.ok());
  ResponseLimits limits;
  limits.traversalLimitWords = 2;
  auto inst = PluginInstance::create(lib.value(), "{}", limits);
  BOOST_TEST_REQUIRE(inst.ok());
  auto r = schedule(*inst.value());
  BOOST_TEST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == VMHOST_ERR_INTERNAL);
}

BOOST_AUTO_TEST_CASE(create_failure_carries_the_plugins_message) {
  auto lib = PluginLibrary::open(fixture("create-fails"));
  BOOST_TEST_REQUIRE(lib.ok());
  auto inst = PluginInstance::create(lib.value(), "{}");
  BOOST_TEST_REQUIRE(!inst.ok());
  BOOST_TEST(inst.error().code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(
      inst.error().message ==
      "plugin 'create-fails' (scheduler): create failed: INVALID_ARGUMENT: config.pool: must "
      "be an absolute path, got 'relative/dir'");
}

BOOST_AUTO_TEST_CASE(unknown_method_is_unimplemented) {
  auto p = instance(plugin("vmhost-storage-local.so"), R"({"pool":"/tmp/vmhost-loader-test"})");
  capnp::MallocMessageBuilder message;
  message.initRoot<schema::VolumeRequest>();
  auto r = p->call<schema::VolumeAttachment>(999, message);
  BOOST_TEST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == VMHOST_ERR_UNIMPLEMENTED);
  BOOST_TEST(r.error().message ==
             "storage plugin 'local': method 999 is not implemented by this plugin");
}

BOOST_AUTO_TEST_CASE(malformed_request_is_invalid_argument) {
  auto p = instance(plugin("vmhost-storage-local.so"), R"({"pool":"/tmp/vmhost-loader-test"})");
  // A segment table claiming far more words than follow.
  kj::Array<capnp::word> bad = kj::heapArray<capnp::word>(2);
  uint32_t table[4] = {0, 1000000, 0, 0};
  std::memcpy(bad.begin(), table, sizeof(table));
  auto r = p->call<schema::VolumeAttachment>(VMHOST_METHOD_STORAGE_PREPARE, bad.asPtr());
  BOOST_TEST_REQUIRE(!r.ok());
  BOOST_TEST(r.error().code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(r.error().message.rfind("storage plugin 'local': malformed request: ", 0) == 0,
             r.error().message);
}

BOOST_AUTO_TEST_CASE(library_is_loaded_once_and_reported) {
  auto a = PluginLibrary::open(plugin("vmhost-migration-precopy.so"));
  auto b = PluginLibrary::open(plugin("vmhost-migration-precopy.so"));
  BOOST_TEST_REQUIRE((a.ok() && b.ok()));
  BOOST_TEST(&a.value()->descriptor() == &b.value()->descriptor());
  const PluginInfo& info = a.value()->info();
  BOOST_TEST(info.kind == VMHOST_KIND_MIGRATION);
  BOOST_TEST(info.name == "precopy");
  BOOST_TEST(info.abiMin == 1u);
  BOOST_TEST(info.abiMax == VMHOST_ABI_VERSION);
  BOOST_TEST(capabilityNames(info.kind, info.capabilities) == "thread-safe");
}

BOOST_AUTO_TEST_CASE(negotiation_refuses_a_host_range_the_plugin_does_not_speak) {
  auto r = PluginLibrary::open(plugin("vmhost-migration-precopy.so"), AbiRange{2, 5});
  BOOST_TEST_REQUIRE(!r.ok());
  BOOST_TEST(
      r.error().message.find("ABI out of range: plugin supports ABI 1, host supports ABI 2..5") !=
          std::string::npos,
      r.error().message);
}
