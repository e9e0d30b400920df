// A thin RAII wrapper over the libvirt C API for the node: one connection
// (qemu:///system, qemu:///embed?root=DIR, test:///default), the domain
// operations the node's reconcile loop needs, and errors as values.
//
// libvirt never prints here: a process-wide error handler swallows its
// reports, and every failure comes back as an Error whose message carries
// libvirt's own text and the VM it concerns, e.g.
//   "vm default/vm1: define failed: XML error: ..."
//
// Threads: a Connection may be shared between threads (libvirt connections
// are thread-safe); a Domain is a handle, cheap to move, not to be used from
// two threads at once. libvirt's error state is per thread, which is what
// libvirtError() relies on.
#pragma once

#include "common/result.h"
#include "node/domain/domain_xml.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// libvirt's handle types, so that users of this header need not include
// libvirt's headers.
typedef struct _virConnect* virConnectPtr;
typedef struct _virDomain* virDomainPtr;

namespace vmhost::node {

// The calling thread's last libvirt error as an Error, then cleared:
//   "vm <vm>: <action> failed: <libvirt message>"   (vm non-empty)
//   "<action> failed: <libvirt message>"            (vm empty)
// The code follows libvirt's (no such domain -> NOT_FOUND, bad XML ->
// INVALID_ARGUMENT, daemon unreachable -> UNAVAILABLE and retryable, ...).
// Call it right after the failing call: any libvirt call resets the state.
Error libvirtError(std::string_view vm, std::string_view action);

// How a domain names its VM in messages: "default/vm1" for "default_vm1".
std::string vmLabel(std::string_view domainName);

enum class DomainState {
  kNoState,
  kRunning,
  kBlocked,
  kPaused,
  kShuttingDown,
  kShutOff,
  kCrashed,
  kSuspended,  // guest power management (S3)
  kUnknown,
};
const char* domainStateName(DomainState state);

struct DomainStatus {
  DomainState state = DomainState::kUnknown;
  int reason = 0;  // libvirt's per-state reason code (virDomainShutoffReason, ...)
};

// What may be removed along with a domain's definition.
enum UndefineFlags : unsigned {
  kUndefineManagedSave = 1u << 0,
  kUndefineSnapshotsMetadata = 1u << 1,
  kUndefineNvram = 1u << 2,
  kUndefineCheckpointsMetadata = 1u << 4,
  kUndefineTpm = 1u << 5,
  // A deleted VM leaves nothing behind in libvirt.
  kUndefineAll = kUndefineManagedSave | kUndefineSnapshotsMetadata | kUndefineNvram |
                 kUndefineCheckpointsMetadata | kUndefineTpm,
};

class Domain {
 public:
  Domain(Domain&& other) noexcept;
  Domain& operator=(Domain&& other) noexcept;
  Domain(const Domain&) = delete;
  Domain& operator=(const Domain&) = delete;
  ~Domain();

  const std::string& name() const { return name_; }
  const std::string& label() const { return label_; }  // for messages: "default/vm1"
  std::string uuid() const;

  // virDomainCreate: boots a defined, stopped domain.
  Status start();
  // Graceful: presses the ACPI power button and returns; the guest decides
  // when (and whether) it powers off. Watch state() for kShutOff.
  Status shutdown();
  // Forced: kills QEMU. Idempotent: a domain that is already stopped is a
  // success (a freshly opened qemu:///embed connection may be reaping the
  // same process concurrently, and the caller wants it stopped either way).
  Status destroy();
  // Removes the definition (the domain must be stopped, or it becomes
  // transient until it stops). `flags` is a set of UndefineFlags; drivers that
  // do not know a flag have no such state to remove, so the call is retried
  // without the flags they reject.
  Status undefine(unsigned flags = kUndefineAll);

  Result<DomainStatus> state() const;
  Result<bool> isActive() const;
  // The domain XML; `inactive` gives the persistent definition instead of
  // the live one.
  Result<std::string> xml(bool inactive = false) const;
  // The vmhost metadata element: nullopt when the domain has none (not ours).
  // A malformed element is an error (INVALID_ARGUMENT).
  Result<std::optional<VmMetadata>> metadata() const;
  // Replaces the metadata element in the persistent definition and, when
  // running, the live one (e.g. a new generation).
  Status setMetadata(const DomainSpec& spec);

  // OWNERSHIP: the pointer stays owned by this Domain.
  virDomainPtr raw() const { return dom_; }

 private:
  friend class Connection;
  Domain(virDomainPtr dom, std::string name);

  virDomainPtr dom_ = nullptr;
  std::string name_;
  std::string label_;
};

// One domain as listAll() reports it.
struct DomainInfo {
  std::string name;
  std::string uuid;
  DomainStatus status;
  bool active = false;
  bool persistent = false;
  std::optional<VmMetadata> metadata;  // nullopt: not a vmhost domain (or malformed)
  std::string metadataError;           // set when a vmhost element exists but is malformed
};

class Connection {
 public:
  // Opens `uri`. The first call in a process sets up what libvirt needs
  // process-wide: initialisation, the silent error handler and an event loop
  // thread (required by qemu:///embed; keepalives use it elsewhere).
  static Result<Connection> open(const std::string& uri);

  Connection(Connection&& other) noexcept;
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  const std::string& uri() const { return uri_; }

  // Defines (or redefines) a persistent domain. `vm` names it in errors.
  Result<Domain> defineXml(std::string_view xml, std::string_view vm);
  // toDomainXml + defineXml: spec errors and libvirt errors alike name the VM.
  Result<Domain> define(const DomainSpec& spec);

  // NOT_FOUND when there is no such domain.
  Result<Domain> lookupByName(std::string_view name);
  Result<Domain> lookupByUuid(std::string_view uuid);

  // Every domain, running or not, with its state and vmhost metadata: what a
  // restarted node reads to re-adopt the domains it owns. Domains that vanish
  // while being listed are left out.
  Result<std::vector<DomainInfo>> listAll();

  // OWNERSHIP: the pointer stays owned by this Connection.
  virConnectPtr raw() const { return conn_; }

 private:
  Connection(virConnectPtr conn, std::string uri);

  virConnectPtr conn_ = nullptr;
  std::string uri_;
};

// qemu:///embed support: the URI for a root directory, and the root's
// etc/qemu.conf with what this kind of host needs (run QEMU as root, no
// security driver, cgroups or namespaces, serial logs written by QEMU itself
// since there is no virtlogd). An existing qemu.conf is left alone.
std::string embedUri(std::string_view root);
Status prepareEmbedRoot(const std::string& root);

}  // namespace vmhost::node
