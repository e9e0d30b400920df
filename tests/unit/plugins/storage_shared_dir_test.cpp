#define BOOST_TEST_MODULE storage_shared_dir
#include "plugin_fixture.h"

#include <vmhost/schema/storage.capnp.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>

using namespace vmhost;
namespace fs = std::filesystem;

namespace {

using SetSource = std::function<void(schema::Volume::Source::Builder)>;

// One directory, two plugin instances standing for two nodes that mount it
// at the same path.
struct Share {
  fs::path dir;
  std::unique_ptr<PluginInstance> nodeA, nodeB;
  Share() {
    BOOST_TEST_REQUIRE(
        std::system("qemu-img --version >/dev/null 2>&1") == 0,
        "qemu-img not found: install the qemu-utils package (deploy/install-deps.sh)");
    char tmpl[] = "/tmp/vmhost-shared-XXXXXX";
    dir = ::mkdtemp(tmpl);
    std::string config = R"({"path":")" + (dir / "share").string() + R"("})";
    nodeA = test::loadPlugin("vmhost-storage-shared-dir.so", config);
    nodeB = test::loadPlugin("vmhost-storage-shared-dir.so", config);
  }
  ~Share() { fs::remove_all(dir); }

  static Result<Reply<schema::VolumeAttachment>> prepare(PluginInstance& node,
                                                         const std::string& nodeName,
                                                         const std::string& vol, uint64_t size,
                                                         const SetSource& source) {
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<schema::VolumeRequest>();
    r.initVm().setNamespace("default");
    r.getVm().setName("vm1");
    r.setNode(nodeName);
    auto v = r.initVolume();
    v.setName(vol);
    v.setSizeBytes(size);
    source(v.initSource());
    return node.call<schema::VolumeAttachment>(VMHOST_METHOD_STORAGE_PREPARE, m);
  }

  static Result<Reply<schema::VolumeReleased>> release(PluginInstance& node,
                                                       const std::string& nodeName,
                                                       const std::string& vol, bool deleteData,
                                                       schema::ReclaimPolicy policy,
                                                       const SetSource& source) {
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<schema::VolumeRelease>();
    r.initVm().setNamespace("default");
    r.getVm().setName("vm1");
    r.setNode(nodeName);
    auto v = r.initVolume();
    v.setName(vol);
    v.setReclaimPolicy(policy);
    source(v.initSource());
    r.setDeleteData(deleteData);
    return node.call<schema::VolumeReleased>(VMHOST_METHOD_STORAGE_RELEASE, m);
  }
};

std::string path(Result<Reply<schema::VolumeAttachment>>& a) {
  return a.value().get().getSourcePath().cStr();
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_volume_prepared_on_one_node_is_found_on_the_other) {
  Share share;
  struct Case {
    const char* vol;
    uint64_t size;
    SetSource source;
  };
  fs::path base = share.dir / "base.qcow2";
  BOOST_TEST_REQUIRE(
      std::system(("qemu-img create -q -f qcow2 '" + base.string() + "' 1M").c_str()) == 0);
  for (const auto& c :
       {Case{"blank", 1 << 20, [](auto s) { s.setEmpty(); }},
        Case{"root", 0, [&](auto s) { s.initEphemeral().setUrl("file://" + base.string()); }},
        Case{"data", 1 << 20, [](auto s) { s.initPersistent().setClaimName("pg-data"); }}}) {
    auto a = Share::prepare(*share.nodeA, "node-a", c.vol, c.size, c.source);
    BOOST_TEST_REQUIRE(a.ok(), (a.ok() ? "" : a.error().message));
    auto b = Share::prepare(*share.nodeB, "node-b", c.vol, c.size, c.source);
    BOOST_TEST_REQUIRE(b.ok(), (b.ok() ? "" : b.error().message));
    BOOST_TEST(a.value().get().getCreated(), c.vol);
    BOOST_TEST(!b.value().get().getCreated(), c.vol);  // found, not recreated
    BOOST_TEST(path(a) == path(b));
    BOOST_TEST(path(a).rfind((share.dir / "share").string() + "/", 0) == 0u, path(a));
    BOOST_TEST(path(a).find("node-") == std::string::npos, path(a));
    BOOST_TEST(a.value().get().getShared());
    BOOST_TEST(b.value().get().getShared());
    BOOST_TEST(std::string(a.value().get().getFormat().cStr()) == "qcow2");
  }
}

BOOST_AUTO_TEST_CASE(a_persistent_disk_follows_the_vm_and_is_released_anywhere) {
  Share share;
  SetSource claim = [](auto s) { s.initPersistent().setClaimName("pg-data"); };
  auto a = Share::prepare(*share.nodeA, "node-a", "data", 1 << 20, claim);
  BOOST_TEST_REQUIRE(a.ok());
  // stopped on A, started on B: the same disk
  auto stop =
      Share::release(*share.nodeA, "node-a", "data", false, schema::ReclaimPolicy::DELETE, claim);
  BOOST_TEST_REQUIRE(stop.ok());
  BOOST_TEST(stop.value().get().getRetained());
  auto b = Share::prepare(*share.nodeB, "node-b", "data", 1 << 20, claim);
  BOOST_TEST_REQUIRE(b.ok());
  BOOST_TEST(!b.value().get().getCreated());
  BOOST_TEST(path(a) == path(b));
  auto retain =
      Share::release(*share.nodeB, "node-b", "data", true, schema::ReclaimPolicy::RETAIN, claim);
  BOOST_TEST_REQUIRE(retain.ok());
  BOOST_TEST(fs::exists(path(a)));
  auto del =
      Share::release(*share.nodeB, "node-b", "data", true, schema::ReclaimPolicy::DELETE, claim);
  auto again =
      Share::release(*share.nodeA, "node-a", "data", true, schema::ReclaimPolicy::DELETE, claim);
  BOOST_TEST_REQUIRE((del.ok() && again.ok()));
  BOOST_TEST(del.value().get().getDeleted());
  BOOST_TEST(!again.value().get().getDeleted());
  BOOST_TEST(!fs::exists(path(a)));
}

BOOST_AUTO_TEST_CASE(config_is_checked) {
  BOOST_TEST(
      test::createError("vmhost-storage-shared-dir.so", R"({"path":"rel"})") ==
      "plugin 'shared-dir' (storage): create failed: INVALID_ARGUMENT: config.path: must be an "
      "absolute path, got 'rel'");
  BOOST_TEST(test::createError("vmhost-storage-shared-dir.so", "{}")
                 .find("config.path: must be an absolute path") != std::string::npos);
  BOOST_TEST(test::createError("vmhost-storage-shared-dir.so", R"({"pool":"/x"})")
                 .find("create failed: INVALID_ARGUMENT: config: ") != std::string::npos);
}

// The cache mode is the operator's choice for the share, carried on every
// attachment; empty (libvirt's default) unless the config says otherwise.
BOOST_AUTO_TEST_CASE(every_attachment_carries_the_configured_cache_mode) {
  Share share;
  auto blank = [](auto s) { s.setEmpty(); };
  auto a = Share::prepare(*share.nodeA, "node-a", "blank", 1 << 20, blank);
  BOOST_TEST_REQUIRE(a.ok(), (a.ok() ? "" : a.error().message));
  BOOST_TEST(std::string(a.value().get().getCache().cStr()) == "");

  auto none =
      test::loadPlugin("vmhost-storage-shared-dir.so",
                       R"({"path":")" + (share.dir / "share").string() + R"(","cache":"none"})");
  auto b = Share::prepare(*none, "node-b", "blank", 1 << 20, blank);
  BOOST_TEST_REQUIRE(b.ok(), (b.ok() ? "" : b.error().message));
  BOOST_TEST(std::string(b.value().get().getCache().cStr()) == "none");

  BOOST_TEST(test::createError("vmhost-storage-shared-dir.so",
                               R"({"path":"/srv/share","cache":"fast"})") ==
             "plugin 'shared-dir' (storage): create failed: INVALID_ARGUMENT: config.cache: 'fast' "
             "is not one of none, writethrough, writeback, directsync, unsafe (or empty for "
             "libvirt's default)");
}
