#define BOOST_TEST_MODULE storage_local
#include "plugin_fixture.h"

#include <vmhost/schema/storage.capnp.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

using namespace vmhost;
namespace fs = std::filesystem;

namespace {

struct Pool {
  fs::path dir;
  std::unique_ptr<PluginInstance> plugin;
  Pool() {
    char tmpl[] = "/tmp/vmhost-local-XXXXXX";
    dir = ::mkdtemp(tmpl);
    plugin = test::loadPlugin("vmhost-storage-local.so", R"({"pool":")" + dir.string() + R"("})");
  }
  ~Pool() { fs::remove_all(dir); }

  Result<Reply<schema::VolumeAttachment>> prepare(const std::string& vol, uint64_t size,
                                                  schema::DiskBus bus = schema::DiskBus::VIRTIO,
                                                  uint32_t index = 0) {
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<schema::VolumeRequest>();
    r.initVm().setNamespace("default");
    r.getVm().setName("vm1");
    auto v = r.initVolume();
    v.setName(vol);
    v.setSizeBytes(size);
    v.setBus(bus);
    v.setDiskIndex(index);
    v.initSource().setEmpty();
    return plugin->call<schema::VolumeAttachment>(VMHOST_METHOD_STORAGE_PREPARE, m);
  }

  Result<Reply<schema::VolumeReleased>> release(const std::string& vol, bool deleteData,
                                                schema::ReclaimPolicy policy = schema::ReclaimPolicy::DELETE) {
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<schema::VolumeRelease>();
    r.initVm().setNamespace("default");
    r.getVm().setName("vm1");
    auto v = r.initVolume();
    v.setName(vol);
    v.setReclaimPolicy(policy);
    v.initSource().setEmpty();
    r.setDeleteData(deleteData);
    return plugin->call<schema::VolumeReleased>(VMHOST_METHOD_STORAGE_RELEASE, m);
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(empty_disk_is_a_sparse_file_of_the_size) {
  Pool pool;
  auto a = pool.prepare("data", 1 << 20);
  BOOST_TEST_REQUIRE(a.ok(), (a.ok() ? "" : a.error().message));
  auto att = a.value().get();
  fs::path file = pool.dir / "default" / "vm1" / "data.img";
  BOOST_TEST(std::string(att.getSourcePath().cStr()) == file.string());
  BOOST_TEST(std::string(att.getDiskType().cStr()) == "file");
  BOOST_TEST(std::string(att.getFormat().cStr()) == "raw");
  BOOST_TEST(std::string(att.getTargetDev().cStr()) == "vda");
  BOOST_TEST(att.getCreated());
  BOOST_TEST(fs::file_size(file) == (1u << 20));
}

BOOST_AUTO_TEST_CASE(prepare_is_idempotent) {
  Pool pool;
  auto a = pool.prepare("data", 4096);
  auto b = pool.prepare("data", 4096);
  BOOST_TEST_REQUIRE((a.ok() && b.ok()));
  BOOST_TEST(std::string(a.value().get().getSourcePath().cStr()) ==
             std::string(b.value().get().getSourcePath().cStr()));
  BOOST_TEST(a.value().get().getCreated());
  BOOST_TEST(!b.value().get().getCreated());
}

BOOST_AUTO_TEST_CASE(target_names_follow_libvirt) {
  Pool pool;
  struct Case { schema::DiskBus bus; uint32_t index; const char* dev; };
  for (auto c : {Case{schema::DiskBus::VIRTIO, 1, "vdb"}, Case{schema::DiskBus::SATA, 0, "sda"},
                 Case{schema::DiskBus::VIRTIO, 25, "vdz"}, Case{schema::DiskBus::VIRTIO, 26, "vdaa"},
                 Case{schema::DiskBus::SCSI, 27, "sdab"}}) {
    auto a = pool.prepare("d" + std::to_string(c.index), 4096, c.bus, c.index);
    BOOST_TEST_REQUIRE(a.ok());
    BOOST_TEST(std::string(a.value().get().getTargetDev().cStr()) == c.dev);
  }
}

BOOST_AUTO_TEST_CASE(release_deletes_once_and_is_idempotent) {
  Pool pool;
  BOOST_TEST_REQUIRE(pool.prepare("data", 4096).ok());
  auto r1 = pool.release("data", true);
  auto r2 = pool.release("data", true);
  BOOST_TEST_REQUIRE((r1.ok() && r2.ok()));
  BOOST_TEST(r1.value().get().getDeleted());
  BOOST_TEST(!r2.value().get().getDeleted());
  BOOST_TEST(!fs::exists(pool.dir / "default" / "vm1"));
}

BOOST_AUTO_TEST_CASE(release_keeps_data_when_retained_or_only_stopping) {
  Pool pool;
  BOOST_TEST_REQUIRE(pool.prepare("data", 4096).ok());
  auto stop = pool.release("data", false);
  BOOST_TEST_REQUIRE(stop.ok());
  BOOST_TEST(stop.value().get().getRetained());
  auto retained = pool.release("data", true, schema::ReclaimPolicy::RETAIN);
  BOOST_TEST_REQUIRE(retained.ok());
  BOOST_TEST(retained.value().get().getRetained());
  BOOST_TEST(fs::exists(pool.dir / "default" / "vm1" / "data.img"));
}

BOOST_AUTO_TEST_CASE(bad_input_is_invalid_argument) {
  Pool pool;
  auto noSize = pool.prepare("data", 0);
  BOOST_TEST_REQUIRE(!noSize.ok());
  BOOST_TEST(noSize.error().code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(noSize.error().message == "storage plugin 'local': volume data: an empty disk needs sizeBytes");
  auto badName = pool.prepare("../escape", 4096);
  BOOST_TEST_REQUIRE(!badName.ok());
  BOOST_TEST(badName.error().message ==
             "storage plugin 'local': volume.name: '../escape' is not a valid name (DNS-1123 subdomain)");
}

BOOST_AUTO_TEST_CASE(unwritable_pool_is_permission_denied) {
  if (::geteuid() == 0) {
    // root ignores mode bits; use a path under a file instead, which fails for everyone.
    Pool pool;
    std::ofstream(pool.dir / "blocker") << "x";
    auto p = test::loadPlugin("vmhost-storage-local.so",
                              R"({"pool":")" + (pool.dir / "blocker").string() + R"("})");
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<schema::VolumeRequest>();
    r.initVm().setNamespace("default");
    r.getVm().setName("vm1");
    r.initVolume().setName("data");
    r.getVolume().setSizeBytes(4096);
    r.getVolume().initSource().setEmpty();
    auto a = p->call<schema::VolumeAttachment>(VMHOST_METHOD_STORAGE_PREPARE, m);
    BOOST_TEST_REQUIRE(!a.ok());
    BOOST_TEST(a.error().message.find("creating " + (pool.dir / "blocker").string()) != std::string::npos,
               a.error().message);
    return;
  }
  Pool pool;
  ::chmod(pool.dir.c_str(), 0500);
  auto a = pool.prepare("data", 4096);
  ::chmod(pool.dir.c_str(), 0700);
  BOOST_TEST_REQUIRE(!a.ok());
  BOOST_TEST(a.error().code == VMHOST_ERR_PERMISSION_DENIED);
}

BOOST_AUTO_TEST_CASE(config_is_checked) {
  BOOST_TEST(test::createError("vmhost-storage-local.so", R"({"pool":"rel"})") ==
             "plugin 'local' (storage): create failed: INVALID_ARGUMENT: config.pool: must be an "
             "absolute path, got 'rel'");
  BOOST_TEST(test::createError("vmhost-storage-local.so", R"({"pol":"/x"})")
                 .find("create failed: INVALID_ARGUMENT: config: ") != std::string::npos);
}
