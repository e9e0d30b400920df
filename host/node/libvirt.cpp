#include "node/libvirt.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

namespace vmhost::node {

namespace {

// libvirt prints every error to stderr unless a handler is set; ours drops
// them, since each one also comes back to the caller as a value.
void silentErrorHandler(void* /*userData*/, virErrorPtr /*error*/) {}

std::once_flag gInitOnce;
int gInitResult = -1;

// Process-wide set-up, once: thread-safe initialisation, the silent handler,
// and libvirt's default event loop on a thread of its own. The embedded QEMU
// driver runs its monitors on that loop, and remote connections their
// keepalives. The thread runs for the rest of the process: libvirt offers no
// way to unregister the default implementation, and stopping it would strand
// any connection still open.
int ensureLibvirt() {
  std::call_once(gInitOnce, [] {
    if (virInitialize() < 0) return;
    virSetErrorFunc(nullptr, silentErrorHandler);
    if (virEventRegisterDefaultImpl() < 0) return;
    std::thread([] {
      for (;;) {
        if (virEventRunDefaultImpl() < 0) {
          // Only fails on a broken poll; do not spin.
          virResetLastError();
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      }
    }).detach();
    gInitResult = 0;
  });
  return gInitResult;
}

vmhost_status statusFor(int code) {
  switch (code) {
    case VIR_ERR_NO_DOMAIN:
    case VIR_ERR_NO_DOMAIN_METADATA:
    case VIR_ERR_NO_NETWORK:
    case VIR_ERR_NO_STORAGE_POOL:
    case VIR_ERR_NO_STORAGE_VOL:
      return VMHOST_ERR_NOT_FOUND;
    case VIR_ERR_XML_ERROR:
    case VIR_ERR_XML_DETAIL:
    case VIR_ERR_XML_INVALID_SCHEMA:
    case VIR_ERR_INVALID_ARG:
    case VIR_ERR_CONFIG_UNSUPPORTED:
    case VIR_ERR_INVALID_MAC:
      return VMHOST_ERR_INVALID_ARGUMENT;
    case VIR_ERR_DOM_EXIST:
      return VMHOST_ERR_ALREADY_EXISTS;
    case VIR_ERR_OPERATION_INVALID:
      return VMHOST_ERR_FAILED_PRECONDITION;
    case VIR_ERR_OPERATION_DENIED:
    case VIR_ERR_AUTH_FAILED:
    case VIR_ERR_AUTH_CANCELLED:
    case VIR_ERR_ACCESS_DENIED:
      return VMHOST_ERR_PERMISSION_DENIED;
    case VIR_ERR_OPERATION_TIMEOUT:
    case VIR_ERR_AGENT_UNRESPONSIVE:
      return VMHOST_ERR_DEADLINE_EXCEEDED;
    case VIR_ERR_NO_SUPPORT:
    case VIR_ERR_OPERATION_UNSUPPORTED:
    case VIR_ERR_ARGUMENT_UNSUPPORTED:
      return VMHOST_ERR_UNIMPLEMENTED;
    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_RPC:
    case VIR_ERR_SYSTEM_ERROR:
    case VIR_ERR_NO_MEMORY:
      return VMHOST_ERR_UNAVAILABLE;
    case VIR_ERR_INTERNAL_ERROR:
      return VMHOST_ERR_INTERNAL;
    default:
      return VMHOST_ERR_UNKNOWN;
  }
}

bool lastErrorIs(int code) {
  virErrorPtr e = virGetLastError();
  return e && e->code == code;
}

DomainState toState(int s) {
  switch (s) {
    case VIR_DOMAIN_NOSTATE:
      return DomainState::kNoState;
    case VIR_DOMAIN_RUNNING:
      return DomainState::kRunning;
    case VIR_DOMAIN_BLOCKED:
      return DomainState::kBlocked;
    case VIR_DOMAIN_PAUSED:
      return DomainState::kPaused;
    case VIR_DOMAIN_SHUTDOWN:
      return DomainState::kShuttingDown;
    case VIR_DOMAIN_SHUTOFF:
      return DomainState::kShutOff;
    case VIR_DOMAIN_CRASHED:
      return DomainState::kCrashed;
    case VIR_DOMAIN_PMSUSPENDED:
      return DomainState::kSuspended;
    default:
      return DomainState::kUnknown;
  }
}

struct FreeDeleter {
  void operator()(char* p) const { std::free(p); }
};
using CString = std::unique_ptr<char, FreeDeleter>;

std::string domainNameOf(virDomainPtr dom) {
  const char* n = virDomainGetName(dom);
  return n ? n : "";
}

}  // namespace

Error libvirtError(std::string_view vm, std::string_view action) {
  Error out;
  std::string prefix = vm.empty() ? "" : "vm " + std::string(vm) + ": ";
  virErrorPtr e = virGetLastError();
  if (!e) {
    out.code = VMHOST_ERR_UNKNOWN;
    out.message = prefix + std::string(action) + " failed: libvirt reported no error";
    return out;
  }
  out.code = statusFor(e->code);
  out.retryable = out.code == VMHOST_ERR_UNAVAILABLE || out.code == VMHOST_ERR_DEADLINE_EXCEEDED;
  out.message = prefix + std::string(action) +
                " failed: " + (e->message ? e->message : "unknown libvirt error");
  virResetLastError();
  return out;
}

std::string vmLabel(std::string_view domainName) {
  auto sep = domainName.find('_');
  if (sep == std::string_view::npos || sep == 0 || sep + 1 == domainName.size()) {
    return std::string(domainName);
  }
  return std::string(domainName.substr(0, sep)) + "/" + std::string(domainName.substr(sep + 1));
}

const char* domainStateName(DomainState state) {
  switch (state) {
    case DomainState::kNoState:
      return "nostate";
    case DomainState::kRunning:
      return "running";
    case DomainState::kBlocked:
      return "blocked";
    case DomainState::kPaused:
      return "paused";
    case DomainState::kShuttingDown:
      return "shutting-down";
    case DomainState::kShutOff:
      return "shut-off";
    case DomainState::kCrashed:
      return "crashed";
    case DomainState::kSuspended:
      return "pm-suspended";
    case DomainState::kUnknown:
      break;
  }
  return "unknown";
}

// --- Domain ------------------------------------------------------------------

Domain::Domain(virDomainPtr dom, std::string name)
    : dom_(dom), name_(std::move(name)), label_(vmLabel(name_)) {}

Domain::Domain(Domain&& other) noexcept
    : dom_(std::exchange(other.dom_, nullptr)),
      name_(std::move(other.name_)),
      label_(std::move(other.label_)) {}

Domain& Domain::operator=(Domain&& other) noexcept {
  if (this != &other) {
    if (dom_) virDomainFree(dom_);
    dom_ = std::exchange(other.dom_, nullptr);
    name_ = std::move(other.name_);
    label_ = std::move(other.label_);
  }
  return *this;
}

Domain::~Domain() {
  if (dom_) virDomainFree(dom_);
}

std::string Domain::uuid() const {
  char buf[VIR_UUID_STRING_BUFLEN] = {};
  if (virDomainGetUUIDString(dom_, buf) < 0) {
    virResetLastError();
    return "";
  }
  return buf;
}

Status Domain::start() {
  if (virDomainCreate(dom_) < 0) return libvirtError(label_, "start");
  return Ok{};
}

Status Domain::shutdown() {
  if (virDomainShutdownFlags(dom_, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) == 0) return Ok{};
  // A driver with no choice of method (the test driver) rejects the flag;
  // its default is the only graceful shutdown it has.
  if (!lastErrorIs(VIR_ERR_INVALID_ARG)) return libvirtError(label_, "shutdown");
  if (virDomainShutdownFlags(dom_, VIR_DOMAIN_SHUTDOWN_DEFAULT) < 0) {
    return libvirtError(label_, "shutdown");
  }
  return Ok{};
}

Status Domain::destroy() {
  if (virDomainDestroy(dom_) == 0) return Ok{};
  Error err = libvirtError(label_, "destroy");
  int active = virDomainIsActive(dom_);
  if (active == 0) return Ok{};
  virResetLastError();
  return err;
}

Status Domain::undefine(unsigned flags) {
  if (virDomainUndefineFlags(dom_, flags) == 0) return Ok{};
  // As virsh does: a driver that rejects a flag has none of that state.
  unsigned basic = flags & (kUndefineManagedSave | kUndefineSnapshotsMetadata);
  if (basic != flags && (lastErrorIs(VIR_ERR_INVALID_ARG) || lastErrorIs(VIR_ERR_NO_SUPPORT))) {
    if (virDomainUndefineFlags(dom_, basic) == 0) return Ok{};
  }
  return libvirtError(label_, "undefine");
}

Result<DomainStatus> Domain::state() const {
  int st = 0;
  int reason = 0;
  if (virDomainGetState(dom_, &st, &reason, 0) < 0) return libvirtError(label_, "get state");
  return DomainStatus{toState(st), reason};
}

Result<bool> Domain::isActive() const {
  int active = virDomainIsActive(dom_);
  if (active < 0) return libvirtError(label_, "get state");
  return active == 1;
}

Result<std::string> Domain::xml(bool inactive) const {
  CString desc(virDomainGetXMLDesc(dom_, inactive ? VIR_DOMAIN_XML_INACTIVE : 0));
  if (!desc) return libvirtError(label_, "get XML");
  return std::string(desc.get());
}

Result<std::optional<VmMetadata>> Domain::metadata() const {
  std::string uri(kMetadataNamespace);
  CString raw(virDomainGetMetadata(dom_, VIR_DOMAIN_METADATA_ELEMENT, uri.c_str(),
                                   VIR_DOMAIN_AFFECT_CURRENT));
  if (!raw) {
    if (lastErrorIs(VIR_ERR_NO_DOMAIN_METADATA)) {
      virResetLastError();
      return std::optional<VmMetadata>();
    }
    return libvirtError(label_, "get metadata");
  }
  auto md = parseVmMetadata(raw.get());
  if (!md) {
    Error e = md.error();
    e.message = "vm " + label_ + ": " + e.message;
    return e;
  }
  return std::optional<VmMetadata>(std::move(md.value()));
}

Status Domain::setMetadata(const DomainSpec& spec) {
  if (auto st = validateDomainSpec(spec); !st) return st.error();
  auto active = isActive();
  if (!active) return active.error();
  unsigned flags = VIR_DOMAIN_AFFECT_CONFIG | (active.value() ? VIR_DOMAIN_AFFECT_LIVE : 0);
  std::string uri(kMetadataNamespace);
  std::string key(kMetadataPrefix);
  if (virDomainSetMetadata(dom_, VIR_DOMAIN_METADATA_ELEMENT, vmMetadataXml(spec).c_str(),
                           key.c_str(), uri.c_str(), flags) < 0) {
    return libvirtError(label_, "set metadata");
  }
  return Ok{};
}

// --- Connection --------------------------------------------------------------

Connection::Connection(virConnectPtr conn, std::string uri) : conn_(conn), uri_(std::move(uri)) {}

Connection::Connection(Connection&& other) noexcept
    : conn_(std::exchange(other.conn_, nullptr)), uri_(std::move(other.uri_)) {}

Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    if (conn_) virConnectClose(conn_);
    conn_ = std::exchange(other.conn_, nullptr);
    uri_ = std::move(other.uri_);
  }
  return *this;
}

Connection::~Connection() {
  if (conn_) virConnectClose(conn_);
}

Result<Connection> Connection::open(const std::string& uri) {
  if (ensureLibvirt() < 0) return libvirtError("", "initialise libvirt");
  virConnectPtr conn = virConnectOpen(uri.c_str());
  if (!conn) return libvirtError("", "connect to " + uri);
  return Connection(conn, uri);
}

Result<Domain> Connection::defineXml(std::string_view xml, std::string_view vm) {
  std::string copy(xml);
  virDomainPtr dom = virDomainDefineXML(conn_, copy.c_str());
  if (!dom) return libvirtError(vm, "define");
  return Domain(dom, domainNameOf(dom));
}

Result<Domain> Connection::define(const DomainSpec& spec) {
  std::string label = spec.vm.ns.empty() && spec.vm.name.empty() ? vmLabel(spec.name)
                                                                 : spec.vm.ns + "/" + spec.vm.name;
  auto xml = toDomainXml(spec);
  if (!xml) {
    Error e = xml.error();
    e.message = "vm " + label + ": define failed: " + e.message;
    return e;
  }
  return defineXml(xml.value(), label);
}

Result<Domain> Connection::lookupByName(std::string_view name) {
  std::string n(name);
  virDomainPtr dom = virDomainLookupByName(conn_, n.c_str());
  if (!dom) return libvirtError(vmLabel(name), "lookup");
  return Domain(dom, domainNameOf(dom));
}

Result<Domain> Connection::lookupByUuid(std::string_view uuid) {
  std::string u(uuid);
  virDomainPtr dom = virDomainLookupByUUIDString(conn_, u.c_str());
  if (!dom) return libvirtError(u, "lookup");
  return Domain(dom, domainNameOf(dom));
}

Result<std::vector<DomainInfo>> Connection::listAll() {
  virDomainPtr* doms = nullptr;
  int n = virConnectListAllDomains(conn_, &doms, 0);
  if (n < 0) return libvirtError("", "list domains on " + uri_);
  // Own every handle at once, so an early return frees them all.
  std::vector<Domain> handles;
  handles.reserve(n);
  for (int i = 0; i < n; ++i) handles.push_back(Domain(doms[i], domainNameOf(doms[i])));
  std::free(doms);

  std::vector<DomainInfo> out;
  out.reserve(handles.size());
  for (auto& d : handles) {
    DomainInfo info;
    info.name = d.name();
    info.uuid = d.uuid();
    auto st = d.state();
    if (!st) {
      if (st.error().code == VMHOST_ERR_NOT_FOUND) continue;  // undefined meanwhile
      return st.error();
    }
    info.status = st.value();
    info.active = virDomainIsActive(d.raw()) == 1;
    info.persistent = virDomainIsPersistent(d.raw()) == 1;
    virResetLastError();
    auto md = d.metadata();
    if (md) {
      info.metadata = std::move(md.value());
    } else if (md.error().code == VMHOST_ERR_INVALID_ARGUMENT) {
      info.metadataError = md.error().message;
    } else if (md.error().code == VMHOST_ERR_NOT_FOUND) {
      continue;  // the domain vanished (no-metadata is not an error, see metadata())
    } else {
      return md.error();
    }
    out.push_back(std::move(info));
  }
  return out;
}

// --- qemu:///embed -------------------------------------------------------------

std::string embedUri(std::string_view root) { return "qemu:///embed?root=" + std::string(root); }

Status prepareEmbedRoot(const std::string& root) {
  auto failed = [&](const std::string& what) -> Status {
    return Error{VMHOST_ERR_UNAVAILABLE,
                 "prepare " + root + ": " + what + ": " + std::strerror(errno), false};
  };
  if (root.empty() || root.front() != '/') {
    return Error{VMHOST_ERR_INVALID_ARGUMENT, "embed root '" + root + "' is not an absolute path",
                 false};
  }
  for (const std::string& dir : {root, root + "/etc"}) {
    if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) return failed("mkdir " + dir);
  }
  std::string conf = root + "/etc/qemu.conf";
  struct stat st {};
  if (::stat(conf.c_str(), &st) == 0) return Ok{};
  std::ofstream f(conf);
  // libvirt resolves its default QEMU user (libvirt-qemu) before reading this
  // file, so that user must exist even though QEMU runs as root here.
  f << "# Written by vmhost for an embedded QEMU driver (qemu:///embed).\n"
       "user = \"root\"\n"
       "group = \"root\"\n"
       "security_driver = \"none\"\n"
       "cgroup_controllers = [ ]\n"
       "namespaces = [ ]\n"
       "# No virtlogd in embedded mode: QEMU writes its own logs.\n"
       "stdio_handler = \"file\"\n";
  f.close();
  if (!f) return failed("write " + conf);
  return Ok{};
}

}  // namespace vmhost::node
