#define BOOST_TEST_MODULE storage_local
#include "plugin_fixture.h"

#include <vmhost/schema/storage.capnp.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <thread>

using namespace vmhost;
namespace fs = std::filesystem;

namespace {

using SetSource = std::function<void(schema::Volume::Source::Builder)>;

void requireQemuImg() {
  BOOST_TEST_REQUIRE(std::system("qemu-img --version >/dev/null 2>&1") == 0,
                     "qemu-img not found: install the qemu-utils package (deploy/install-deps.sh)");
}

// Output of a command the test controls (paths under the test's temp dir).
std::string run(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  BOOST_TEST_REQUIRE(f != nullptr);
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
  ::pclose(f);
  return out;
}

std::string info(const fs::path& file) {
  return run("qemu-img info --output=json '" + file.string() + "'");
}

bool hasSize(const fs::path& file, uint64_t size) {
  return info(file).find("\"virtual-size\": " + std::to_string(size) + ",") != std::string::npos;
}

std::string sha256(const fs::path& file) {
  return run("sha256sum '" + file.string() + "'").substr(0, 64);
}

// A one-file HTTP server on 127.0.0.1 (an ephemeral port) for `requests`
// requests: GET /base.qcow2 gets `file`, anything else 404.
struct HttpServer {
  int fd = -1;
  uint16_t port = 0;
  std::thread thread;
  HttpServer(const fs::path& file, int requests) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_TEST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    BOOST_TEST_REQUIRE(::listen(fd, 4) == 0);
    std::ifstream in(file, std::ios::binary);
    std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    thread = std::thread([this, body, requests] {
      for (int i = 0; i < requests; ++i) {
        int c = ::accept(fd, nullptr, nullptr);
        if (c < 0) return;
        char buf[4096];
        ssize_t n = ::recv(c, buf, sizeof buf - 1, 0);
        std::string req(buf, n > 0 ? static_cast<size_t>(n) : 0);
        std::string resp =
            req.rfind("GET /base.qcow2 ", 0) == 0
                ? "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                      "\r\nConnection: close\r\n\r\n" + body
                : std::string(
                      "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        for (size_t off = 0; off < resp.size();) {
          ssize_t w = ::send(c, resp.data() + off, resp.size() - off, MSG_NOSIGNAL);
          if (w <= 0) break;
          off += static_cast<size_t>(w);
        }
        ::close(c);
      }
    });
  }
  ~HttpServer() {
    ::shutdown(fd, SHUT_RDWR);
    ::close(fd);
    thread.join();
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
};

struct Pool {
  fs::path dir;
  std::unique_ptr<PluginInstance> plugin;
  Pool() {
    requireQemuImg();
    char tmpl[] = "/tmp/vmhost-local-XXXXXX";
    dir = ::mkdtemp(tmpl);
    plugin = test::loadPlugin("vmhost-storage-local.so",
                              R"({"pool":")" + (dir / "pool").string() + R"("})");
  }
  ~Pool() { fs::remove_all(dir); }

  fs::path vmDir() const { return dir / "pool" / "vms" / "default" / "vm1"; }

  // A base image in the test dir: qcow2 (via qemu-img) or raw.
  fs::path base(const std::string& name, uint64_t size, bool qcow2 = true) {
    fs::path p = dir / name;
    if (qcow2) {
      BOOST_TEST_REQUIRE(
          std::system(("qemu-img create -q -f qcow2 '" + p.string() + "' " + std::to_string(size))
                          .c_str()) == 0);
    } else {
      std::ofstream(p) << std::string(size, 'x');
    }
    return p;
  }

  Result<Reply<schema::VolumeAttachment>> prepare(const std::string& vol, uint64_t size,
                                                  const SetSource& source,
                                                  const std::string& vm = "vm1") {
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<schema::VolumeRequest>();
    r.initVm().setNamespace("default");
    r.getVm().setName(vm);
    r.setNode("node-a");
    auto v = r.initVolume();
    v.setName(vol);
    v.setSizeBytes(size);
    source(v.initSource());
    return plugin->call<schema::VolumeAttachment>(VMHOST_METHOD_STORAGE_PREPARE, m);
  }

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

  Result<Reply<schema::VolumeReleased>> release(
      const std::string& vol, bool deleteData,
      schema::ReclaimPolicy policy = schema::ReclaimPolicy::DELETE,
      const SetSource& source = [](auto s) { s.setEmpty(); }, bool migrated = false) {
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<schema::VolumeRelease>();
    r.initVm().setNamespace("default");
    r.getVm().setName("vm1");
    auto v = r.initVolume();
    v.setName(vol);
    v.setReclaimPolicy(policy);
    source(v.initSource());
    r.setDeleteData(deleteData);
    r.setMigrated(migrated);
    return plugin->call<schema::VolumeReleased>(VMHOST_METHOD_STORAGE_RELEASE, m);
  }
};

SetSource ephemeralPath(const fs::path& p, const std::string& sha = "") {
  return [p, sha](schema::Volume::Source::Builder s) {
    auto i = s.initEphemeral();
    i.setPath(p.string());
    i.setSha256(sha);
  };
}

SetSource ephemeralUrl(const std::string& url, const std::string& sha = "") {
  return [url, sha](schema::Volume::Source::Builder s) {
    auto i = s.initEphemeral();
    i.setUrl(url);
    i.setSha256(sha);
  };
}

SetSource persistent(const std::string& claim, const fs::path& image = {}) {
  return [claim, image](schema::Volume::Source::Builder s) {
    auto p = s.initPersistent();
    p.setClaimName(claim);
    if (!image.empty()) p.initImage().setPath(image.string());
  };
}

std::string path(Result<Reply<schema::VolumeAttachment>>& a) {
  return a.value().get().getSourcePath().cStr();
}

}  // namespace

BOOST_AUTO_TEST_CASE(empty_disk_is_a_qcow2_of_the_size) {
  Pool pool;
  auto a = pool.prepare("data", 1 << 20);
  BOOST_TEST_REQUIRE(a.ok(), (a.ok() ? "" : a.error().message));
  auto att = a.value().get();
  fs::path file = pool.vmDir() / "data.qcow2";
  BOOST_TEST(std::string(att.getSourcePath().cStr()) == file.string());
  BOOST_TEST(std::string(att.getDiskType().cStr()) == "file");
  BOOST_TEST(std::string(att.getFormat().cStr()) == "qcow2");
  BOOST_TEST(std::string(att.getTargetDev().cStr()) == "vda");
  BOOST_TEST(att.getCreated());
  BOOST_TEST(!att.getShared());
  BOOST_TEST(info(file).find("\"format\": \"qcow2\"") != std::string::npos, info(file));
  BOOST_TEST(hasSize(file, 1 << 20), info(file));
}

BOOST_AUTO_TEST_CASE(prepare_is_idempotent) {
  Pool pool;
  auto a = pool.prepare("data", 1 << 20);
  auto b = pool.prepare("data", 1 << 20);
  BOOST_TEST_REQUIRE((a.ok() && b.ok()));
  BOOST_TEST(path(a) == path(b));
  BOOST_TEST(a.value().get().getCreated());
  BOOST_TEST(!b.value().get().getCreated());
  // no temp files left behind
  size_t files = 0;
  for (auto& e : fs::directory_iterator(pool.vmDir())) files += e.is_regular_file() ? 1 : 0;
  BOOST_TEST(files == 1u);
}

BOOST_AUTO_TEST_CASE(target_names_follow_libvirt) {
  Pool pool;
  struct Case {
    schema::DiskBus bus;
    uint32_t index;
    const char* dev;
  };
  for (auto c :
       {Case{schema::DiskBus::VIRTIO, 1, "vdb"}, Case{schema::DiskBus::SATA, 0, "sda"},
        Case{schema::DiskBus::VIRTIO, 25, "vdz"}, Case{schema::DiskBus::VIRTIO, 26, "vdaa"},
        Case{schema::DiskBus::SCSI, 27, "sdab"}}) {
    auto a = pool.prepare("d" + std::to_string(c.index), 1 << 20, c.bus, c.index);
    BOOST_TEST_REQUIRE(a.ok());
    BOOST_TEST(std::string(a.value().get().getTargetDev().cStr()) == c.dev);
  }
}

BOOST_AUTO_TEST_CASE(release_deletes_once_and_is_idempotent) {
  Pool pool;
  BOOST_TEST_REQUIRE(pool.prepare("data", 1 << 20).ok());
  auto r1 = pool.release("data", true);
  auto r2 = pool.release("data", true);
  BOOST_TEST_REQUIRE((r1.ok() && r2.ok()));
  BOOST_TEST(r1.value().get().getDeleted());
  BOOST_TEST(!r2.value().get().getDeleted());
  BOOST_TEST(!fs::exists(pool.vmDir()));
}

BOOST_AUTO_TEST_CASE(release_keeps_data_when_retained_or_only_stopping) {
  Pool pool;
  BOOST_TEST_REQUIRE(pool.prepare("data", 1 << 20).ok());
  auto stop = pool.release("data", false);
  BOOST_TEST_REQUIRE(stop.ok());
  BOOST_TEST(stop.value().get().getRetained());
  auto retained = pool.release("data", true, schema::ReclaimPolicy::RETAIN);
  BOOST_TEST_REQUIRE(retained.ok());
  BOOST_TEST(retained.value().get().getRetained());
  BOOST_TEST(fs::exists(pool.vmDir() / "data.qcow2"));
}

BOOST_AUTO_TEST_CASE(empty_disk_grows_on_size_increase_and_never_shrinks) {
  Pool pool;
  BOOST_TEST_REQUIRE(pool.prepare("data", 1 << 20).ok());
  auto grown = pool.prepare("data", 4 << 20);
  BOOST_TEST_REQUIRE(grown.ok(), (grown.ok() ? "" : grown.error().message));
  BOOST_TEST(!grown.value().get().getCreated());
  BOOST_TEST(hasSize(pool.vmDir() / "data.qcow2", 4 << 20), info(pool.vmDir() / "data.qcow2"));
  BOOST_TEST_REQUIRE(pool.prepare("data", 2 << 20).ok());
  BOOST_TEST(hasSize(pool.vmDir() / "data.qcow2", 4 << 20));
}

// Overlays are copies of one template per base image; a base replaced in
// place (new size, new mtime) gets a new template, so a new overlay sees
// the new base's size while an existing overlay is left as it is.
BOOST_AUTO_TEST_CASE(overlays_follow_a_replaced_base) {
  Pool pool;
  fs::path base = pool.base("base.raw", 1 << 20, /*qcow2=*/false);
  auto a = pool.prepare("root", 0, ephemeralPath(base), "vm-a");
  BOOST_TEST_REQUIRE(a.ok(), (a.ok() ? "" : a.error().message));
  fs::path first = pool.dir / "pool" / "vms" / "default" / "vm-a" / "root.ephemeral.qcow2";
  BOOST_TEST(hasSize(first, 1 << 20), info(first));
  std::string i = info(first);
  BOOST_TEST(i.find("\"backing-filename\": \"" + base.string() + "\"") != std::string::npos, i);
  BOOST_TEST(i.find("\"backing-filename-format\": \"raw\"") != std::string::npos, i);

  fs::remove(base);
  pool.base("base.raw", 3 << 20, /*qcow2=*/false);
  auto b = pool.prepare("root", 0, ephemeralPath(base), "vm-b");
  BOOST_TEST_REQUIRE(b.ok(), (b.ok() ? "" : b.error().message));
  fs::path second = pool.dir / "pool" / "vms" / "default" / "vm-b" / "root.ephemeral.qcow2";
  BOOST_TEST(hasSize(second, 3 << 20), info(second));
  BOOST_TEST(hasSize(first, 1 << 20), info(first));
  size_t templates = 0;
  for (const auto& e : fs::directory_iterator(pool.dir / "pool" / "images" / "overlays")) {
    (void)e;
    ++templates;
  }
  BOOST_TEST(templates == 2u);
}

// A full pool: the error says so (RESOURCE_EXHAUSTED, "No space left"),
// is retryable, and leaves no partial file. The pool is a 2 MiB tmpfs in a
// mount namespace of this test process (root needed, as in CI).
BOOST_AUTO_TEST_CASE(a_full_pool_is_reported_and_leaves_nothing_behind) {
  BOOST_TEST_REQUIRE(::geteuid() == 0, "this test mounts a small tmpfs: run it as root");
  BOOST_TEST_REQUIRE(::unshare(CLONE_NEWNS) == 0, "unshare(CLONE_NEWNS): " << std::strerror(errno));
  BOOST_TEST_REQUIRE(::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0);
  Pool pool;
  fs::path small = pool.dir / "small";
  fs::create_directories(small);
  BOOST_TEST_REQUIRE(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=2m") == 0,
                     "mount tmpfs: " << std::strerror(errno));
  auto plugin = test::loadPlugin("vmhost-storage-local.so",
                                 R"({"pool":")" + (small / "pool").string() + R"("})");
  // A 4 MiB base of incompressible bytes: its copy cannot fit.
  fs::path base = pool.dir / "big.raw";
  {
    std::ofstream out(base, std::ios::binary);
    std::mt19937 rng(7);
    for (int i = 0; i < (4 << 20) / 4; ++i) {
      uint32_t v = rng();
      out.write(reinterpret_cast<const char*>(&v), 4);
    }
  }
  capnp::MallocMessageBuilder m;
  auto r = m.initRoot<schema::VolumeRequest>();
  r.initVm().setNamespace("default");
  r.getVm().setName("vm1");
  auto v = r.initVolume();
  v.setName("root");
  persistent("full-disk", base)(v.initSource());
  auto a = plugin->call<schema::VolumeAttachment>(VMHOST_METHOD_STORAGE_PREPARE, m);
  BOOST_TEST_REQUIRE(!a.ok());
  BOOST_TEST(a.error().code == VMHOST_ERR_RESOURCE_EXHAUSTED, a.error().message);
  BOOST_TEST(a.error().retryable);
  BOOST_TEST(a.error().message.find("volume root") != std::string::npos, a.error().message);
  BOOST_TEST(a.error().message.find("No space left") != std::string::npos, a.error().message);
  size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(small / "pool")) {
    if (e.is_regular_file()) ++files;
  }
  BOOST_TEST(files == 0u, "a partial file was left in the pool");
  ::umount2(small.c_str(), MNT_DETACH);
}

BOOST_AUTO_TEST_CASE(ephemeral_is_an_overlay_on_a_base_by_path_gone_on_release) {
  Pool pool;
  fs::path base = pool.base("base.qcow2", 2 << 20);
  auto a = pool.prepare("root", 0, ephemeralPath(base));
  BOOST_TEST_REQUIRE(a.ok(), (a.ok() ? "" : a.error().message));
  fs::path file = pool.vmDir() / "root.ephemeral.qcow2";
  BOOST_TEST(path(a) == file.string());
  BOOST_TEST(a.value().get().getCreated());
  BOOST_TEST(std::string(a.value().get().getFormat().cStr()) == "qcow2");
  std::string i = info(file);
  BOOST_TEST(i.find("\"backing-filename\": \"" + base.string() + "\"") != std::string::npos, i);
  BOOST_TEST(i.find("\"backing-filename-format\": \"qcow2\"") != std::string::npos, i);
  BOOST_TEST(hasSize(file, 2 << 20), i);

  auto again = pool.prepare("root", 0, ephemeralPath(base));
  BOOST_TEST_REQUIRE(again.ok());
  BOOST_TEST(!again.value().get().getCreated());
  BOOST_TEST(path(again) == file.string());

  // Gone with any release (stop included); the base stays.
  auto r1 = pool.release("root", false, schema::ReclaimPolicy::DELETE, ephemeralPath(base));
  auto r2 = pool.release("root", false, schema::ReclaimPolicy::DELETE, ephemeralPath(base));
  BOOST_TEST_REQUIRE((r1.ok() && r2.ok()));
  BOOST_TEST(r1.value().get().getDeleted());
  BOOST_TEST(!r2.value().get().getDeleted());
  BOOST_TEST(!fs::exists(file));
  BOOST_TEST(fs::exists(base));
}

BOOST_AUTO_TEST_CASE(ephemeral_on_a_raw_base_grows_to_the_requested_size) {
  Pool pool;
  fs::path base = pool.base("base.raw", 1 << 20, /*qcow2=*/false);
  auto a = pool.prepare("root", 3 << 20, ephemeralPath(base));
  BOOST_TEST_REQUIRE(a.ok(), (a.ok() ? "" : a.error().message));
  std::string i = info(path(a));
  BOOST_TEST(i.find("\"backing-filename-format\": \"raw\"") != std::string::npos, i);
  BOOST_TEST(hasSize(path(a), 3 << 20), i);
  auto grown = pool.prepare("root", 5 << 20, ephemeralPath(base));
  BOOST_TEST_REQUIRE(grown.ok());
  BOOST_TEST(hasSize(path(a), 5 << 20), info(path(a)));
}

BOOST_AUTO_TEST_CASE(base_by_file_url_is_fetched_once_and_checked) {
  Pool pool;
  fs::path src = pool.base("src.qcow2", 2 << 20);
  std::string url = "file://" + src.string();
  auto a = pool.prepare("root", 0, ephemeralUrl(url, sha256(src)));
  BOOST_TEST_REQUIRE(a.ok(), (a.ok() ? "" : a.error().message));
  // cached under images/<sha256 of the URL>
  std::string urlSha = run("printf '%s' '" + url + "' | sha256sum").substr(0, 64);
  fs::path cached = pool.dir / "pool" / "images" / urlSha;
  BOOST_TEST(fs::exists(cached));
  BOOST_TEST(
      info(path(a)).find("\"backing-filename\": \"" + cached.string() + "\"") != std::string::npos,
      info(path(a)));
  // Once per node: another VM uses the cache even with the source gone.
  fs::remove(src);
  auto b = pool.prepare("root", 0, ephemeralUrl(url), "vm2");
  BOOST_TEST_REQUIRE(b.ok(), (b.ok() ? "" : b.error().message));
  BOOST_TEST(b.value().get().getCreated());
  size_t images = 0;
  for (auto& e : fs::directory_iterator(pool.dir / "pool" / "images"))
    images += e.is_regular_file() ? 1 : 0;
  BOOST_TEST(images == 1u);
}

BOOST_AUTO_TEST_CASE(base_by_http_url_is_fetched_and_a_404_is_not_found) {
  Pool pool;
  fs::path src = pool.base("src.qcow2", 2 << 20);
  HttpServer server(src, 2);
  auto a = pool.prepare("root", 0, ephemeralUrl(server.url("/base.qcow2"), sha256(src)));
  BOOST_TEST_REQUIRE(a.ok(), (a.ok() ? "" : a.error().message));
  BOOST_TEST(a.value().get().getCreated());
  BOOST_TEST(hasSize(path(a), 2 << 20), info(path(a)));
  auto missing = pool.prepare("other", 0, ephemeralUrl(server.url("/nope.qcow2")));
  BOOST_TEST_REQUIRE(!missing.ok());
  BOOST_TEST(missing.error().code == VMHOST_ERR_NOT_FOUND);
  BOOST_TEST(missing.error().message.find("volume other: fetching base image " +
                                          server.url("/nope.qcow2") + ": base image missing") !=
                 std::string::npos,
             missing.error().message);
}

BOOST_AUTO_TEST_CASE(checksum_mismatch_is_data_loss_and_caches_nothing) {
  Pool pool;
  fs::path src = pool.base("src.qcow2", 1 << 20);
  std::string wrong(64, '0');
  auto a = pool.prepare("root", 0, ephemeralUrl("file://" + src.string(), wrong));
  BOOST_TEST_REQUIRE(!a.ok());
  BOOST_TEST(a.error().code == VMHOST_ERR_DATA_LOSS);
  BOOST_TEST(a.error().message.find("volume root: checksum mismatch for base image file://" +
                                    src.string()) != std::string::npos,
             a.error().message);
  BOOST_TEST(fs::is_empty(pool.dir / "pool" / "images"));
  auto byPath = pool.prepare("root", 0, ephemeralPath(src, wrong));
  BOOST_TEST_REQUIRE(!byPath.ok());
  BOOST_TEST(byPath.error().code == VMHOST_ERR_DATA_LOSS);
  BOOST_TEST(!fs::exists(pool.vmDir() / "root.ephemeral.qcow2"));
  auto malformed = pool.prepare("root", 0, ephemeralPath(src, "ABC"));
  BOOST_TEST_REQUIRE(!malformed.ok());
  BOOST_TEST(malformed.error().code == VMHOST_ERR_INVALID_ARGUMENT);
}

BOOST_AUTO_TEST_CASE(missing_or_unreachable_base_image_names_the_cause) {
  Pool pool;
  auto byPath = pool.prepare("root", 0, ephemeralPath(pool.dir / "nope.qcow2"));
  BOOST_TEST_REQUIRE(!byPath.ok());
  BOOST_TEST(byPath.error().code == VMHOST_ERR_NOT_FOUND);
  BOOST_TEST(
      byPath.error().message.find("volume root: base image " + (pool.dir / "nope.qcow2").string() +
                                  ": No such file or directory") != std::string::npos,
      byPath.error().message);
  auto byUrl =
      pool.prepare("root", 0, ephemeralUrl("file://" + (pool.dir / "nope.qcow2").string()));
  BOOST_TEST_REQUIRE(!byUrl.ok());
  BOOST_TEST(byUrl.error().code == VMHOST_ERR_NOT_FOUND);
  BOOST_TEST(
      byUrl.error().message.find("volume root: fetching base image file://") != std::string::npos,
      byUrl.error().message);
  // Nothing listens on port 1 of the loopback: connection refused.
  auto down = pool.prepare("root", 0, ephemeralUrl("http://127.0.0.1:1/base.qcow2"));
  BOOST_TEST_REQUIRE(!down.ok());
  BOOST_TEST(down.error().code == VMHOST_ERR_UNAVAILABLE);
  BOOST_TEST(down.error().retryable);
  BOOST_TEST(
      down.error().message.find("volume root: fetching base image http://127.0.0.1:1/base.qcow2: "
                                "unreachable") != std::string::npos,
      down.error().message);
  auto ftp = pool.prepare("root", 0, ephemeralUrl("ftp://127.0.0.1/base.qcow2"));
  BOOST_TEST_REQUIRE(!ftp.ok());
  BOOST_TEST(ftp.error().code == VMHOST_ERR_INVALID_ARGUMENT);
}

BOOST_AUTO_TEST_CASE(persistent_disk_outlives_stop_and_honours_reclaim_policy) {
  Pool pool;
  auto a = pool.prepare("data", 1 << 20, persistent("pg-data"));
  BOOST_TEST_REQUIRE(a.ok(), (a.ok() ? "" : a.error().message));
  fs::path file = pool.dir / "pool" / "persistent" / "default" / "pg-data.qcow2";
  BOOST_TEST(path(a) == file.string());
  BOOST_TEST(a.value().get().getCreated());
  auto ino = [&] {
    struct stat st {};
    ::stat(file.c_str(), &st);
    return st.st_ino;
  };
  auto before = ino();

  auto stop = pool.release("data", false, schema::ReclaimPolicy::DELETE, persistent("pg-data"));
  BOOST_TEST_REQUIRE(stop.ok());
  BOOST_TEST(stop.value().get().getRetained());
  auto start = pool.prepare("data", 1 << 20, persistent("pg-data"));
  BOOST_TEST_REQUIRE(start.ok());
  BOOST_TEST(!start.value().get().getCreated());
  BOOST_TEST(ino() == before);  // the same disk, not a new one

  auto grown = pool.prepare("data", 2 << 20, persistent("pg-data"));
  BOOST_TEST_REQUIRE(grown.ok());
  BOOST_TEST(hasSize(file, 2 << 20), info(file));

  auto retain = pool.release("data", true, schema::ReclaimPolicy::RETAIN, persistent("pg-data"));
  BOOST_TEST_REQUIRE(retain.ok());
  BOOST_TEST(retain.value().get().getRetained());
  BOOST_TEST(fs::exists(file));
  auto del = pool.release("data", true, schema::ReclaimPolicy::DELETE, persistent("pg-data"));
  auto del2 = pool.release("data", true, schema::ReclaimPolicy::DELETE, persistent("pg-data"));
  BOOST_TEST_REQUIRE((del.ok() && del2.ok()));
  BOOST_TEST(del.value().get().getDeleted());
  BOOST_TEST(!del2.value().get().getDeleted());
  BOOST_TEST(!fs::exists(file));
}

// VolumeRelease.migrated: the VM runs on another node, on that node's own
// copy (or a failed migration's target drops its partial copy): this node's
// copy goes whatever the reclaim policy and deleteData say; a host path is
// never touched.
BOOST_AUTO_TEST_CASE(release_after_migration_deletes_this_nodes_copy_whatever_the_policy) {
  Pool pool;
  fs::path base = pool.base("base.qcow2", 1 << 20);
  BOOST_TEST_REQUIRE(pool.prepare("data", 1 << 20).ok());
  BOOST_TEST_REQUIRE(pool.prepare("root", 0, ephemeralPath(base)).ok());
  BOOST_TEST_REQUIRE(pool.prepare("keep", 1 << 20, persistent("pg-data")).ok());
  BOOST_TEST_REQUIRE(pool.prepare("scratch", 1 << 20, persistent("")).ok());
  fs::path hostFile = pool.dir / "host.img";
  std::ofstream(hostFile) << std::string(4096, 'h');
  auto hostPath = [&](schema::Volume::Source::Builder s) { s.setHostPath(hostFile.string()); };
  BOOST_TEST_REQUIRE(pool.prepare("passthrough", 0, hostPath).ok());
  fs::path persistentDir = pool.dir / "pool" / "persistent" / "default";
  BOOST_TEST_REQUIRE(fs::exists(persistentDir / "pg-data.qcow2"));

  using RP = schema::ReclaimPolicy;
  auto empty = [](schema::Volume::Source::Builder s) { s.setEmpty(); };
  // deleteData false (the VM is not being deleted) and retain: gone all the same
  auto data = pool.release("data", false, RP::RETAIN, empty, /*migrated=*/true);
  auto root = pool.release("root", false, RP::RETAIN, ephemeralPath(base), true);
  auto keep = pool.release("keep", false, RP::RETAIN, persistent("pg-data"), true);
  auto scratch = pool.release("scratch", true, RP::DELETE, persistent(""), true);
  auto host = pool.release("passthrough", true, RP::DELETE, hostPath, true);
  for (auto* r : {&data, &root, &keep, &scratch, &host}) {
    BOOST_TEST_REQUIRE(r->ok(), (r->ok() ? "" : r->error().message));
  }
  for (auto* r : {&data, &root, &keep, &scratch}) {
    BOOST_TEST(r->value().get().getDeleted());
    BOOST_TEST(!r->value().get().getRetained());
  }
  BOOST_TEST(!fs::exists(pool.vmDir()));  // empty and overlay gone, their directory too
  BOOST_TEST(!fs::exists(persistentDir / "pg-data.qcow2"));
  BOOST_TEST(!fs::exists(persistentDir / "vm1-scratch.qcow2"));
  BOOST_TEST(!host.value().get().getDeleted());
  BOOST_TEST(fs::exists(hostFile));  // the operator's
  BOOST_TEST(fs::exists(base));      // and the base image stays
  BOOST_TEST(fs::file_size(hostFile) == 4096u);
  // idempotent: a repeat succeeds, deleting nothing
  auto again = pool.release("keep", false, RP::RETAIN, persistent("pg-data"), true);
  BOOST_TEST_REQUIRE(again.ok());
  BOOST_TEST(!again.value().get().getDeleted());
  // without the flag the policy still rules (the same release keeps a retained disk)
  BOOST_TEST_REQUIRE(pool.prepare("keep", 1 << 20, persistent("pg-data")).ok());
  auto retained = pool.release("keep", true, RP::RETAIN, persistent("pg-data"));
  BOOST_TEST_REQUIRE(retained.ok());
  BOOST_TEST(retained.value().get().getRetained());
  BOOST_TEST(fs::exists(persistentDir / "pg-data.qcow2"));
}

BOOST_AUTO_TEST_CASE(persistent_disk_defaults_its_name_and_copies_its_image) {
  Pool pool;
  fs::path base = pool.base("base.qcow2", 2 << 20);
  auto a = pool.prepare("data", 0, persistent("", base));
  BOOST_TEST_REQUIRE(a.ok(), (a.ok() ? "" : a.error().message));
  fs::path file = pool.dir / "pool" / "persistent" / "default" / "vm1-data.qcow2";
  BOOST_TEST(path(a) == file.string());
  std::string i = info(file);
  BOOST_TEST(i.find("backing-filename") == std::string::npos,
             i);  // a copy: independent of the base
  BOOST_TEST(hasSize(file, 2 << 20), i);
  auto noSize = pool.prepare("other", 0, persistent(""));
  BOOST_TEST_REQUIRE(!noSize.ok());
  BOOST_TEST(noSize.error().code == VMHOST_ERR_INVALID_ARGUMENT);
}

BOOST_AUTO_TEST_CASE(bad_input_is_invalid_argument) {
  Pool pool;
  auto noSize = pool.prepare("data", 0);
  BOOST_TEST_REQUIRE(!noSize.ok());
  BOOST_TEST(noSize.error().code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(noSize.error().message ==
             "storage plugin 'local': volume data: an empty disk needs sizeBytes");
  auto badName = pool.prepare("../escape", 4096);
  BOOST_TEST_REQUIRE(!badName.ok());
  BOOST_TEST(
      badName.error().message ==
      "storage plugin 'local': volume.name: '../escape' is not a valid name (DNS-1123 subdomain)");
  auto badClaim = pool.prepare("data", 4096, persistent("../../etc"));
  BOOST_TEST_REQUIRE(!badClaim.ok());
  BOOST_TEST(badClaim.error().code == VMHOST_ERR_INVALID_ARGUMENT);
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
    BOOST_TEST(a.error().message.find("volume data: creating " + (pool.dir / "blocker").string()) !=
                   std::string::npos,
               a.error().message);
    return;
  }
  Pool pool;
  fs::create_directory(pool.dir / "pool");
  ::chmod((pool.dir / "pool").c_str(), 0500);
  auto a = pool.prepare("data", 4096);
  ::chmod((pool.dir / "pool").c_str(), 0700);
  BOOST_TEST_REQUIRE(!a.ok());
  BOOST_TEST(a.error().code == VMHOST_ERR_PERMISSION_DENIED);
  BOOST_TEST(a.error().message.find("volume data: creating ") != std::string::npos,
             a.error().message);
}

BOOST_AUTO_TEST_CASE(config_is_checked) {
  BOOST_TEST(test::createError("vmhost-storage-local.so", R"({"pool":"rel"})") ==
             "plugin 'local' (storage): create failed: INVALID_ARGUMENT: config.pool: must be an "
             "absolute path, got 'rel'");
  BOOST_TEST(test::createError("vmhost-storage-local.so", R"({"pol":"/x"})")
                 .find("create failed: INVALID_ARGUMENT: config: ") != std::string::npos);
}
