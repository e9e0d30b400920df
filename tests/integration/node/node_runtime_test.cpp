// The node's runtime layer against real QEMU: the tiny guest
// (deploy/guest/build-guest.sh) defined from a DomainSpec through
// domain_xml, started through the libvirt wrapper on an embedded QEMU driver
// (qemu:///embed?root=<temp dir>), booted to its serial "booted" line,
// stopped, undefined, and nothing left behind.
//
// Why embedded rather than a private libvirtd: no daemon to start, no
// /run/libvirt, /etc/libvirt or /var/lib/libvirt to isolate from other users
// of the machine (that needs a mount namespace), and the whole state is one
// directory that goes away afterwards. Measured here (2 shared cores,
// loaded): first define+start 5.2 s embedded (capability probe ~4 s),
// 5.1 s through a fresh libvirtd (socket up in 0.2 s, same probe), and
// 1.4 s embedded with the capability cache copied in, which this test does:
// the cache file does not depend on the root, and libvirt revalidates it
// against the QEMU binary itself.
//
// Nothing here skips: a missing QEMU, a libvirt that cannot open or a guest
// image that cannot be built fails the test with the reason.
#define BOOST_TEST_MODULE node_runtime_e2e
#include <boost/test/unit_test.hpp>

#include "node/libvirt.h"

#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <thread>

using namespace vmhost;
using namespace vmhost::node;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace vmhost::node {
std::ostream& operator<<(std::ostream& os, DomainState s) { return os << domainStateName(s); }
}  // namespace vmhost::node

namespace {

constexpr auto kBootTimeout = std::chrono::seconds(60);
constexpr auto kShutdownTimeout = std::chrono::seconds(30);
const char* kQemu = "/usr/bin/qemu-system-x86_64";

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string readFile(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Where deploy/guest/build-guest.sh puts the guest by default (the
// guest_image fixture runs it without arguments).
fs::path guestDir() {
  if (const char* d = std::getenv("VMHOST_GUEST_DIR")) return d;
  if (const char* c = std::getenv("VMHOST_CACHE_DIR")) return fs::path(c) / "guest";
  const char* home = std::getenv("HOME");
  return fs::path(home ? home : "/root") / ".cache/vmhost/guest";
}

// Processes whose command line mentions `needle`: QEMU started in an embed
// root carries paths under that root in its arguments.
std::vector<pid_t> processesMentioning(const std::string& needle) {
  std::vector<pid_t> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = readFile(entry.path() / "cmdline");
    if (cmdline.find(needle) != std::string::npos) out.push_back(std::stoi(name));
  }
  return out;
}

bool waitFor(std::chrono::milliseconds timeout, const std::function<bool()>& done) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

// Kills, by pid, the QEMU processes a root still has; they were started by
// this test (their command lines name its private root).
void killLeftovers(const std::string& root) {
  for (pid_t pid : processesMentioning(root)) {
    if (pid != ::getpid()) ::kill(pid, SIGKILL);
  }
  waitFor(std::chrono::seconds(5), [&] { return processesMentioning(root).empty(); });
}

// All e2e roots live under one parent; each records its owner's pid, so a
// later run can clean up after one that was killed (a ctest timeout leaves
// QEMU running: embedded domains outlive their process).
const fs::path kRootsParent = "/tmp/vmhost-node-e2e";

// A zombie counts as dead: kill(pid, 0) succeeds on one, and a killed test
// stays a zombie until something reaps it.
bool processAlive(pid_t pid) {
  std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  return stat[close + 2] != 'Z';
}

void sweepAbandonedRoots() {
  std::error_code ec;
  if (!fs::exists(kRootsParent, ec)) return;
  for (const auto& entry : fs::directory_iterator(kRootsParent, ec)) {
    std::string owner = readFile(entry.path() / "owner.pid");
    pid_t pid = owner.empty() ? 0 : std::atoi(owner.c_str());
    if (pid > 0 && processAlive(pid)) continue;  // still in use
    killLeftovers(entry.path().string() + "/");
    fs::remove_all(entry.path(), ec);
  }
}

// One embedded QEMU driver for the whole test program: libvirt allows one
// embed root per process, and the capability probe is paid once.
struct EmbedHost {
  std::string root;
  std::optional<Connection> conn;
  std::string setupError;  // non-empty: every test fails with it
  fs::path capsCache = fs::path(VMHOST_TEST_BINARY_DIR) / "tests/node-e2e/qemu-capabilities";
  fs::path guest;
  std::string cmdline;

  EmbedHost() {
    try {
      setUp();
    } catch (const std::exception& e) {
      setupError = std::string("setup threw: ") + e.what();
    }
  }

  void setUp() {
    if (::access(kQemu, X_OK) != 0) {
      setupError =
          std::string(kQemu) + " not found: install qemu-system-x86 (deploy/install-deps.sh)";
      return;
    }
    guest = guestDir();
    for (const char* f : {"vmlinux", "initramfs.gz", "manifest"}) {
      if (!fs::exists(guest / f)) {
        setupError = (guest / f).string() +
                     " missing: run deploy/guest/build-guest.sh (ctest's guest_image fixture does)";
        return;
      }
    }
    std::istringstream manifest(readFile(guest / "manifest"));
    for (std::string line; std::getline(manifest, line);) {
      if (line.rfind("cmdline=", 0) == 0) cmdline = line.substr(8);
    }
    if (cmdline.empty()) cmdline = "console=ttyS0 quiet";

    sweepAbandonedRoots();
    fs::create_directories(kRootsParent);
    std::string tmpl = (kRootsParent / "r-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) {
      setupError = "mkdtemp " + tmpl + ": " + std::strerror(errno);
      return;
    }
    root = tmpl;
    std::ofstream(root + "/owner.pid") << ::getpid();
    if (auto st = prepareEmbedRoot(root); !st) {
      setupError = st.error().describe();
      return;
    }
    fs::create_directories(root + "/serial");
    bool primed = false;
    std::error_code ec;
    if (fs::exists(capsCache, ec)) {
      fs::create_directories(root + "/cache/qemu", ec);
      fs::copy(capsCache, root + "/cache/qemu/capabilities", fs::copy_options::recursive, ec);
      primed = !ec;
    }
    auto t0 = Clock::now();
    auto c = Connection::open(embedUri(root));
    if (!c) {
      setupError = c.error().describe();
      return;
    }
    conn.emplace(std::move(c.value()));
    BOOST_TEST_MESSAGE("embed root " << root << ": connection open in " << secondsSince(t0)
                                     << " s; capability cache " << (primed ? "primed" : "cold"));
  }

  ~EmbedHost() {
    if (conn) {
      if (auto all = conn->listAll()) {
        for (const auto& d : all.value()) {
          if (auto dom = conn->lookupByName(d.name)) {
            (void)dom->destroy();
            (void)dom->undefine();
          }
        }
      }
      saveCapabilities();
      conn.reset();
    }
    if (!root.empty()) {
      killLeftovers(root + "/");
      std::error_code ec;
      fs::remove_all(root, ec);
    }
  }

  // Keeps the probed capabilities for the next run (atomically: another
  // build may be reading them).
  void saveCapabilities() {
    std::error_code ec;
    fs::path probed = fs::path(root) / "cache/qemu/capabilities";
    if (!fs::exists(probed, ec)) return;
    fs::path tmp = capsCache.string() + ".tmp." + std::to_string(::getpid());
    fs::create_directories(capsCache.parent_path(), ec);
    fs::remove_all(tmp, ec);
    fs::copy(probed, tmp, fs::copy_options::recursive, ec);
    if (ec) return;
    fs::remove_all(capsCache, ec);
    fs::rename(tmp, capsCache, ec);
    if (ec) fs::remove_all(tmp, ec);
  }
};

EmbedHost* gHost = nullptr;

struct GlobalHost {
  GlobalHost() { gHost = new EmbedHost(); }
  ~GlobalHost() {
    delete gHost;
    gHost = nullptr;
  }
};
BOOST_TEST_GLOBAL_FIXTURE(GlobalHost);

EmbedHost& host() {
  BOOST_TEST_REQUIRE(gHost != nullptr);
  BOOST_TEST_REQUIRE(gHost->setupError.empty(), gHost->setupError);
  return *gHost;
}

DomainSpec guestSpec(const std::string& name) {
  EmbedHost& h = host();
  DomainSpec s;
  s.vm = {"default", name, "e2e-" + name, 1};
  s.name = domainName(s.vm.ns, s.vm.name);
  s.memoryBytes = 128ull << 20;
  s.vcpus = 1;
  s.kernel = (h.guest / "vmlinux").string();
  s.initrd = (h.guest / "initramfs.gz").string();
  s.cmdline = h.cmdline;
  s.serialLogFile = h.root + "/serial/" + s.name + ".log";
  return s;
}

// Per test: whatever a case leaves defined or running is removed, even when
// an assertion aborted it half way.
struct DomainCleanup {
  std::vector<std::string> names;
  ~DomainCleanup() {
    if (!gHost || !gHost->conn) return;
    for (const auto& n : names) {
      if (auto dom = gHost->conn->lookupByName(n)) {
        (void)dom->destroy();
        (void)dom->undefine();
      }
    }
  }
};

void expectNothingLeft(const std::string& domainName) {
  EmbedHost& h = host();
  auto gone = h.conn->lookupByName(domainName);
  BOOST_TEST(!gone.ok());
  if (!gone.ok()) BOOST_TEST(gone.error().code == VMHOST_ERR_NOT_FOUND, gone.error().describe());
  auto all = h.conn->listAll();
  BOOST_TEST_REQUIRE(all.ok(), (all.ok() ? "" : all.error().describe()));
  BOOST_TEST(all.value().empty());
  bool noQemu =
      waitFor(std::chrono::seconds(5), [&] { return processesMentioning(h.root + "/").empty(); });
  BOOST_TEST(noQemu, "QEMU processes still running from " << h.root);
}

}  // namespace

// A blank image in the root, made with qemu-img (qemu-utils).
std::string makeImage(const std::string& name, const std::string& format) {
  std::string path = host().root + "/" + name + "." + format;
  std::string cmd = "qemu-img create -q -f " + format + " '" + path + "' 16M";
  int rc = std::system(cmd.c_str());
  BOOST_TEST_REQUIRE(rc == 0,
                     "'" << cmd << "' failed (exit " << rc << "): is qemu-utils installed?");
  return path;
}

BOOST_AUTO_TEST_CASE(boots_tiny_guest_and_shuts_it_down_gracefully) {
  EmbedHost& h = host();
  DomainCleanup cleanup{{"default_boot"}};
  DomainSpec spec = guestSpec("boot");
  // One disk per bus and a NIC, so QEMU accepts each kind of device the
  // translation emits; the guest has drivers for virtio only.
  spec.disks = {
      {"root", makeImage("root", "qcow2"), "file", "qcow2", "vda", "virtio", false, 1, false, ""},
      {"data", makeImage("data", "raw"), "file", "raw", "sda", "sata", false, 0, false, ""},
      {"seed", makeImage("seed", "raw"), "file", "raw", "sdb", "scsi", true, 0, false, ""},
  };
  spec.interfaces = {{"default", "user", "", "52:54:00:e2:e0:01", "virtio", ""}};

  auto t0 = Clock::now();
  auto dom = h.conn->define(spec);
  BOOST_TEST_REQUIRE(dom.ok(), (dom.ok() ? "" : dom.error().describe()));
  double defineS = secondsSince(t0);
  auto started = dom->start();
  BOOST_TEST_REQUIRE(started.ok(), (started.ok() ? "" : started.error().describe()));
  double startS = secondsSince(t0);

  auto bootT0 = Clock::now();
  std::string serial;
  bool booted = waitFor(kBootTimeout, [&] {
    serial = readFile(spec.serialLogFile);
    return serial.find("vmhost-guest: booted") != std::string::npos;
  });
  BOOST_TEST_REQUIRE(booted, "no 'vmhost-guest: booted' line in " << spec.serialLogFile << " after "
                                                                  << kBootTimeout.count()
                                                                  << " s; log:\n"
                                                                  << serial);
  BOOST_TEST(serial.find("vmhost-guest: disks vda") != std::string::npos, serial);
  BOOST_TEST(serial.find("vmhost-guest: nic eth0 52:54:00:e2:e0:01") != std::string::npos, serial);
  auto line = serial.substr(serial.find("vmhost-guest: booted"));
  line = line.substr(0, line.find_first_of("\r\n"));
  BOOST_TEST_MESSAGE(line);
  BOOST_TEST_MESSAGE("define " << defineS << " s, define+start " << startS
                               << " s, start to booted line " << secondsSince(bootT0) << " s");

  auto st = dom->state();
  BOOST_TEST_REQUIRE(st.ok());
  BOOST_TEST(st.value().state == DomainState::kRunning);

  // A restarted node finds its VM in the domain list by the metadata.
  auto all = h.conn->listAll();
  BOOST_TEST_REQUIRE(all.ok(), (all.ok() ? "" : all.error().describe()));
  BOOST_TEST_REQUIRE(all.value().size() == 1u);
  const DomainInfo& info = all.value()[0];
  BOOST_TEST(info.name == "default_boot");
  BOOST_TEST(info.active);
  BOOST_TEST(info.persistent);
  BOOST_TEST_REQUIRE(info.metadata.has_value(), info.metadataError);
  BOOST_TEST(info.metadata->vm.ns == "default");
  BOOST_TEST(info.metadata->vm.name == "boot");
  BOOST_TEST(info.metadata->vm.uid == "e2e-boot");
  BOOST_TEST(info.metadata->disks.size() == 3u);
  BOOST_TEST(info.metadata->interfaces.size() == 1u);

  // ACPI power button: the guest's acpid powers it off.
  auto shutT0 = Clock::now();
  auto down = dom->shutdown();
  BOOST_TEST_REQUIRE(down.ok(), (down.ok() ? "" : down.error().describe()));
  bool off = waitFor(kShutdownTimeout, [&] {
    auto s = dom->state();
    return s.ok() && s.value().state == DomainState::kShutOff;
  });
  BOOST_TEST(off, "guest did not power off within " << kShutdownTimeout.count()
                                                    << " s of an ACPI shutdown; serial log:\n"
                                                    << readFile(spec.serialLogFile));
  BOOST_TEST_MESSAGE("ACPI shutdown to shut-off " << secondsSince(shutT0) << " s");
  if (!off) BOOST_TEST(dom->destroy().ok());

  auto undefined = dom->undefine();
  BOOST_TEST_REQUIRE(undefined.ok(), (undefined.ok() ? "" : undefined.error().describe()));
  expectNothingLeft("default_boot");
}

BOOST_AUTO_TEST_CASE(destroy_forces_a_running_guest_off) {
  EmbedHost& h = host();
  DomainCleanup cleanup{{"default_forced"}};
  DomainSpec spec = guestSpec("forced");
  auto dom = h.conn->define(spec);
  BOOST_TEST_REQUIRE(dom.ok(), (dom.ok() ? "" : dom.error().describe()));
  auto started = dom->start();
  BOOST_TEST_REQUIRE(started.ok(), (started.ok() ? "" : started.error().describe()));
  BOOST_TEST(dom->state().value().state == DomainState::kRunning);
  BOOST_TEST(!processesMentioning(h.root + "/").empty());

  auto destroyed = dom->destroy();
  BOOST_TEST_REQUIRE(destroyed.ok(), (destroyed.ok() ? "" : destroyed.error().describe()));
  BOOST_TEST(dom->state().value().state == DomainState::kShutOff);
  BOOST_TEST(dom->destroy().ok());  // idempotent
  BOOST_TEST_REQUIRE(dom->undefine().ok());
  expectNothingLeft("default_forced");
}

BOOST_AUTO_TEST_CASE(define_errors_carry_libvirt_message_and_vm_name) {
  EmbedHost& h = host();
  DomainCleanup cleanup{{"default_badmachine", "default_rosata", "default_x"}};

  auto malformed = h.conn->defineXml("<domain type='qemu'><name>default_x</name>", "default/x");
  BOOST_TEST_REQUIRE(!malformed.ok());
  BOOST_TEST(malformed.error().code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(malformed.error().message.rfind("vm default/x: define failed: ", 0) == 0,
             malformed.error().message);
  BOOST_TEST(malformed.error().message.find("Premature end of data") != std::string::npos,
             malformed.error().message);

  // Valid XML that QEMU cannot run: the QEMU driver's own reason comes back.
  DomainSpec spec = guestSpec("badmachine");
  spec.machine = "pc-q35-0.1";
  auto badMachine = h.conn->define(spec);
  BOOST_TEST_REQUIRE(!badMachine.ok());
  BOOST_TEST(badMachine.error().message.rfind("vm default/badmachine: define failed: ", 0) == 0,
             badMachine.error().message);
  BOOST_TEST(badMachine.error().message.find("pc-q35-0.1") != std::string::npos,
             badMachine.error().message);

  // What domain_xml refuses up front, libvirt refuses too, in its words.
  std::string xml = toDomainXml(guestSpec("rosata")).value();
  xml.replace(xml.find("<devices>\n"), 10,
              "<devices>\n    <disk type='file' device='disk'><driver name='qemu' type='raw'/>"
              "<source file='/dev/null'/><target dev='sda' bus='sata'/><readonly/></disk>\n");
  auto roSata = h.conn->defineXml(xml, "default/rosata");
  BOOST_TEST_REQUIRE(!roSata.ok());
  BOOST_TEST(roSata.error().message ==
             "vm default/rosata: define failed: unsupported configuration: readonly sata disks are "
             "not supported");
  BOOST_TEST(roSata.error().code == VMHOST_ERR_INVALID_ARGUMENT);

  // An invalid spec names the field and never reaches libvirt.
  DomainSpec noCpu = guestSpec("nocpu");
  noCpu.vcpus = 0;
  auto rejected = h.conn->define(noCpu);
  BOOST_TEST_REQUIRE(!rejected.ok());
  BOOST_TEST(rejected.error().message ==
             "vm default/nocpu: define failed: vcpus: must be greater than 0");

  auto all = h.conn->listAll();
  BOOST_TEST_REQUIRE(all.ok());
  BOOST_TEST(all.value().empty());
}
