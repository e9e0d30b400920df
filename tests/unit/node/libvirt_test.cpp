// The libvirt wrapper against libvirt's in-process test driver
// (test:///default): lifecycle, listing with metadata, and errors as values
// that carry libvirt's message and the VM's name.
#define BOOST_TEST_MODULE node_libvirt
#include <boost/test/unit_test.hpp>

#include "node/libvirt.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <ostream>
#include <string>

using namespace vmhost;
using namespace vmhost::node;

namespace vmhost::node {
std::ostream& operator<<(std::ostream& os, DomainState s) { return os << domainStateName(s); }
}  // namespace vmhost::node

namespace {

// Each case uses its own VM names: test:///default is one shared instance
// per process.
DomainSpec spec(const std::string& name) {
  DomainSpec s;
  s.vm = {"default", name, "uid-" + name, 1};
  s.name = domainName(s.vm.ns, s.vm.name);
  s.memoryBytes = 128ull << 20;
  s.vcpus = 1;
  s.kernel = "/nonexistent/vmlinux";  // the test driver boots nothing
  s.disks = {
      {"root", "/nonexistent/root.qcow2", "file", "qcow2", "vda", "virtio", false, 1, true, ""}};
  s.interfaces = {{"default", "user", "", "52:54:00:00:00:01", "virtio", ""}};
  return s;
}

Connection openTest() {
  auto c = Connection::open("test:///default");
  BOOST_TEST_REQUIRE(c.ok(), (c.ok() ? "" : c.error().describe()));
  return std::move(c.value());
}

const DomainInfo* find(const std::vector<DomainInfo>& all, const std::string& name) {
  for (const auto& d : all) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

// Captures what the process writes to fd 2 while it lives.
class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    saved_ = ::dup(2);
    file_ = std::tmpfile();
    ::dup2(::fileno(file_), 2);
  }
  std::string finish() {
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    std::string out;
    std::rewind(file_);
    char buf[256];
    while (size_t n = std::fread(buf, 1, sizeof buf, file_)) out.append(buf, n);
    std::fclose(file_);
    return out;
  }

 private:
  int saved_ = -1;
  FILE* file_ = nullptr;
};

}  // namespace

BOOST_AUTO_TEST_CASE(lifecycle_define_start_shutdown_destroy_undefine) {
  Connection conn = openTest();
  BOOST_TEST(conn.uri() == "test:///default");
  auto dom = conn.define(spec("life"));
  BOOST_TEST_REQUIRE(dom.ok(), (dom.ok() ? "" : dom.error().describe()));
  BOOST_TEST(dom->name() == "default_life");
  BOOST_TEST(dom->label() == "default/life");
  BOOST_TEST(dom->state().value().state == DomainState::kShutOff);

  BOOST_TEST_REQUIRE(dom->start().ok());
  BOOST_TEST(dom->state().value().state == DomainState::kRunning);
  BOOST_TEST(dom->isActive().value());

  // Starting twice is the caller's mistake, reported with libvirt's words.
  auto again = dom->start();
  BOOST_TEST_REQUIRE(!again.ok());
  BOOST_TEST(again.error().message.rfind("vm default/life: start failed: ", 0) == 0,
             again.error().message);
  BOOST_TEST(again.error().message.find("already running") != std::string::npos,
             again.error().message);

  BOOST_TEST_REQUIRE(dom->shutdown().ok());
  BOOST_TEST(dom->state().value().state == DomainState::kShutOff);
  // Destroying a stopped domain is a no-op, not an error.
  BOOST_TEST(dom->destroy().ok());

  BOOST_TEST_REQUIRE(dom->start().ok());
  BOOST_TEST_REQUIRE(dom->destroy().ok());
  BOOST_TEST(dom->state().value().state == DomainState::kShutOff);

  // The test driver rejects the NVRAM/TPM/checkpoint flags; undefine falls
  // back to the ones it knows.
  BOOST_TEST_REQUIRE(dom->undefine().ok());
  auto gone = conn.lookupByName("default_life");
  BOOST_TEST_REQUIRE(!gone.ok());
  BOOST_TEST(gone.error().code == VMHOST_ERR_NOT_FOUND);
  BOOST_TEST(gone.error().message.rfind("vm default/life: lookup failed: Domain not found", 0) == 0,
             gone.error().message);
}

BOOST_AUTO_TEST_CASE(lookup_by_name_and_uuid) {
  Connection conn = openTest();
  DomainSpec s = spec("lookup");
  s.uuid = "6a2d1b9e-3c4f-4e5a-8b7c-9d0e1f2a3b4c";
  auto dom = conn.define(s);
  BOOST_TEST_REQUIRE(dom.ok());
  auto byName = conn.lookupByName("default_lookup");
  BOOST_TEST_REQUIRE(byName.ok());
  BOOST_TEST(byName->uuid() == s.uuid);
  auto byUuid = conn.lookupByUuid(s.uuid);
  BOOST_TEST_REQUIRE(byUuid.ok());
  BOOST_TEST(byUuid->name() == "default_lookup");
  auto missing = conn.lookupByUuid("00000000-0000-4000-8000-000000000000");
  BOOST_TEST(missing.error().code == VMHOST_ERR_NOT_FOUND);
  BOOST_TEST(dom->undefine().ok());
}

// What a restarted node sees: every domain, its state, and for its own
// domains who they belong to.
BOOST_AUTO_TEST_CASE(list_all_reports_state_and_vmhost_metadata) {
  Connection conn = openTest();
  auto running = conn.define(spec("listed-running"));
  auto stopped = conn.define(spec("listed-stopped"));
  BOOST_TEST_REQUIRE(running.ok());
  BOOST_TEST_REQUIRE(stopped.ok());
  BOOST_TEST_REQUIRE(running->start().ok());

  auto all = conn.listAll();
  BOOST_TEST_REQUIRE(all.ok(), (all.ok() ? "" : all.error().describe()));
  const DomainInfo* r = find(all.value(), "default_listed-running");
  const DomainInfo* s = find(all.value(), "default_listed-stopped");
  // The test driver's own domain: not vmhost's, so no metadata.
  const DomainInfo* foreign = find(all.value(), "test");
  BOOST_TEST_REQUIRE(r);
  BOOST_TEST_REQUIRE(s);
  BOOST_TEST_REQUIRE(foreign);
  BOOST_TEST(r->active);
  BOOST_TEST(r->persistent);
  BOOST_TEST(r->status.state == DomainState::kRunning);
  BOOST_TEST(!s->active);
  BOOST_TEST(s->status.state == DomainState::kShutOff);
  BOOST_TEST(!r->uuid.empty());
  BOOST_TEST_REQUIRE(r->metadata.has_value());
  BOOST_TEST(r->metadata->vm.ns == "default");
  BOOST_TEST(r->metadata->vm.name == "listed-running");
  BOOST_TEST(r->metadata->vm.uid == "uid-listed-running");
  BOOST_TEST(r->metadata->vm.generation == 1u);
  BOOST_TEST_REQUIRE(r->metadata->disks.size() == 1u);
  BOOST_TEST(r->metadata->disks[0].volume == "root");
  BOOST_TEST(r->metadata->disks[0].shared);
  BOOST_TEST_REQUIRE(r->metadata->interfaces.size() == 1u);
  BOOST_TEST(r->metadata->interfaces[0].mac == "52:54:00:00:00:01");
  BOOST_TEST(!foreign->metadata.has_value());
  BOOST_TEST(foreign->metadataError.empty());

  // A new generation without redefining: live and persistent both change.
  DomainSpec next = spec("listed-running");
  next.vm.generation = 2;
  auto set = running->setMetadata(next);
  BOOST_TEST_REQUIRE(set.ok(), (set.ok() ? "" : set.error().describe()));
  auto md = running->metadata();
  BOOST_TEST_REQUIRE(md.ok());
  BOOST_TEST(md.value()->vm.generation == 2u);

  BOOST_TEST(running->destroy().ok());
  BOOST_TEST(running->undefine().ok());
  BOOST_TEST(stopped->undefine().ok());
}

BOOST_AUTO_TEST_CASE(define_errors_carry_libvirt_message_and_vm) {
  Connection conn = openTest();
  auto bad = conn.defineXml("<domain type='qemu'><name>x</name>", "default/broken");
  BOOST_TEST_REQUIRE(!bad.ok());
  BOOST_TEST(bad.error().code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(bad.error().message.rfind("vm default/broken: define failed: ", 0) == 0,
             bad.error().message);
  // libvirt's own explanation follows, not a generic "operation failed".
  BOOST_TEST(bad.error().message.find("Premature end of data in tag domain") != std::string::npos,
             bad.error().message);

  // Well-formed but wrong: libvirt's parser says what.
  auto noMemory = conn.defineXml(
      "<domain type='qemu'><name>default_nomem</name><os><type>hvm</type></os></domain>",
      "default/nomem");
  BOOST_TEST_REQUIRE(!noMemory.ok());
  BOOST_TEST(noMemory.error().message.rfind("vm default/nomem: define failed: ", 0) == 0,
             noMemory.error().message);

  // A bad spec never reaches libvirt, and says which field.
  DomainSpec s = spec("badspec");
  s.memoryBytes = 0;
  auto badSpec = conn.define(s);
  BOOST_TEST_REQUIRE(!badSpec.ok());
  BOOST_TEST(badSpec.error().code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(badSpec.error().message ==
             "vm default/badspec: define failed: memoryBytes: must be greater than 0");
}

BOOST_AUTO_TEST_CASE(libvirt_prints_nothing_to_stderr) {
  Connection conn = openTest();
  StderrCapture capture;
  auto missing = conn.lookupByName("default_nope");
  auto bad = conn.defineXml("not xml", "default/x");
  auto badUri = Connection::open("nosuchdriver:///x");
  std::string printed = capture.finish();
  BOOST_TEST(!missing.ok());
  BOOST_TEST(!bad.ok());
  BOOST_TEST(!badUri.ok());
  BOOST_TEST(printed.empty(), "libvirt wrote to stderr: " << printed);
}

BOOST_AUTO_TEST_CASE(open_failure_is_an_error_with_the_reason) {
  auto c = Connection::open("nosuchdriver:///x");
  BOOST_TEST_REQUIRE(!c.ok());
  BOOST_TEST(c.error().message.rfind("connect to nosuchdriver:///x failed: ", 0) == 0,
             c.error().message);
  BOOST_TEST(c.error().message.size() >
             std::string("connect to nosuchdriver:///x failed: ").size());
}

BOOST_AUTO_TEST_CASE(labels_and_state_names) {
  BOOST_TEST(vmLabel("default_vm1") == "default/vm1");
  BOOST_TEST(vmLabel("plain") == "plain");
  BOOST_TEST(std::string(domainStateName(DomainState::kShutOff)) == "shut-off");
  BOOST_TEST(embedUri("/tmp/r") == "qemu:///embed?root=/tmp/r");
}
