// The libvirt side of a live migration, for the node agent's source side
// (node/migration/source.cpp): start the job, watch it, steer it, abort it.
//
// One migration is peer-to-peer (VIR_MIGRATE_PEER2PEER): the source's
// libvirtd connects to the target's libvirtd (MigrateParams::destUri) and runs
// the whole job itself, so the agent's call to migrate() only waits. QEMU's
// stream goes to MigrateParams::migrateUri. The target domain is made
// persistent (PERSIST_DEST); the source's definition is NOT undefined: after
// a successful migration the source domain is shut off with reason
// VIR_DOMAIN_SHUTOFF_MIGRATED (DomainStatus.reason == kShutoffMigrated), so a
// restarted agent tells a finished migration (shut off, migrated) from a
// failed one (still running) by the source domain's state alone.
//
// Threads: migrate() blocks for the whole job; call it on a thread of its
// own, and poll jobStats() / steer with abortJob(), setMaxDowntime(),
// setBandwidth(), startPostCopy() from another thread on the same Connection
// (libvirt connections are thread-safe). migrate() itself runs the job on a
// second connection it opens to conn.uri(): calls on a connection whose
// migrate call is in flight were measured to stall for 5-10 s. Every call
// looks the domain up by name itself: a Domain handle is per thread.
//
// The job belongs to the source's libvirtd, not to the caller: when the
// process that called migrate() dies, the migration goes on (measured), and
// a restarted agent finds it with jobStats() (active, kMigrationOut) and
// watches it to its end: the source domain then either shut off with reason
// migrated (done; its completed stats hold the figures) or still running
// with no job (failed or aborted; libvirt 9.0 keeps no completed stats then).
//
// What was measured on the harness (libvirt 9.0, QEMU 7.2, TCG), and why the
// calls are made the way they are: docs/cluster-harness.md, "Live migration
// through libvirt".
#pragma once

#include "common/result.h"
#include "node/libvirt.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vmhost::node {

// virDomainShutoffReason VIR_DOMAIN_SHUTOFF_MIGRATED: the source domain's
// state after a successful migration (DomainStatus.reason with kShutOff).
inline constexpr int kShutoffMigrated = 4;
// virDomainRunningReason VIR_DOMAIN_RUNNING_MIGRATED: the target domain's.
inline constexpr int kRunningMigrated = 2;

struct MigrateParams {
  // The target's libvirtd, for peer-to-peer: "qemu+tcp://10.x.y.z/system"
  // (or qemu+tls://). Required.
  std::string destUri;
  // Where QEMU's stream goes: "tcp://10.x.y.z". Empty: libvirt asks the target
  // (its migration_host, else its hostname). The host named here is also the
  // name QEMU checks the target's TLS certificate against (see tlsDestination).
  std::string migrateUri;
  // The domain XML the target runs (VIR_MIGRATE_PARAM_DEST_XML), e.g. built
  // from the target's own disk and NIC attachments. Empty: the source's.
  // libvirt checks it against the source's live definition (ABI stability):
  // migrate() aligns it with the source first (alignDestXml(), see there for
  // why) unless alignWithSource is false.
  std::string destXml;
  bool alignWithSource = true;
  // Target devs ("vda") to copy with NBD (VIR_MIGRATE_PARAM_MIGRATE_DISKS).
  // Empty: no disk is copied (all are shared). The target's files must exist
  // already, with the same virtual size (the target's storage plugin prepares
  // them; libvirt pre-creates files only for disks in libvirt storage pools).
  std::vector<std::string> copyDisks;
  // How copyDisks are copied: false (default) VIR_MIGRATE_NON_SHARED_INC,
  // only the top image of each disk's chain (the target's file has the same
  // backing content, or none: a standalone qcow2 is copied whole either way);
  // true VIR_MIGRATE_NON_SHARED_DISK, the whole chain flattened into the
  // target's file.
  bool copyFullChain = false;
  // VIR_MIGRATE_PARAM_BANDWIDTH, MiB/s, from the first byte (memory and the
  // NBD disk copy); 0 unlimited. setBandwidth() changes it during the job.
  uint64_t bandwidthMiBps = 0;
  // VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY, MiB/s after the switch to
  // post-copy; 0 unlimited.
  uint64_t postCopyBandwidthMiBps = 0;
  // > 1: VIR_MIGRATE_PARALLEL with VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS.
  uint32_t parallelConnections = 0;
  // VIR_MIGRATE_AUTO_CONVERGE; the initial and step percentages of vCPU
  // throttling (VIR_MIGRATE_PARAM_AUTO_CONVERGE_*), 0 = QEMU's defaults (20, 10).
  bool autoConverge = false;
  uint32_t autoConvergeInitial = 0;
  uint32_t autoConvergeIncrement = 0;
  // VIR_MIGRATE_POSTCOPY: allows startPostCopy() later in the job. The
  // migration starts as pre-copy either way.
  bool allowPostCopy = false;
  // VIR_MIGRATE_TLS: QEMU's stream (and the NBD disk copy) over TLS with the
  // certificates in qemu.conf's migrate_tls_x509_cert_dir on both hosts.
  bool tls = false;
  // VIR_MIGRATE_PARAM_TLS_DESTINATION: the name the target's certificate is
  // checked against. Empty: the host of migrateUri, so a migrate URI with an
  // IP address needs that IP in the certificate's subjectAltName.
  std::string tlsDestination;
  // VIR_MIGRATE_UNSAFE: migrate although libvirt thinks a disk that is not
  // copied is not shared (a file on a local file system, e.g. a directory
  // every harness host sees) and its cache mode is neither none nor
  // directsync. libvirt refuses otherwise ("Migration without shared storage
  // is unsafe"). Set it only when the storage plugin declares the disk shared.
  bool unsafe = false;
  // Max downtime for the switch-over, ms; 0 keeps the domain's (QEMU's
  // default is 300). Set on the domain just before the job starts, which
  // libvirt carries into the job (measured).
  uint64_t maxDowntimeMs = 0;
};

// The libvirt flags and typed parameters migrate() passes, for tests and
// messages: "live,peer2peer,persist-dest,non-shared-inc".
std::string describeMigrateFlags(const MigrateParams& p);

// Blocking: runs the whole migration of `domainName` (virDomainMigrateToURI3,
// LIVE | PEER2PEER | PERSIST_DEST plus what `p` asks for). Returns when
// libvirt reports the migration complete (the target runs the guest, the
// source is shut off with reason migrated) or failed/aborted (the guest still
// runs on the source). Errors name the domain and libvirt's message; an
// aborted job is CANCELLED, a refused unsafe migration FAILED_PRECONDITION.
Status migrate(Connection& conn, const std::string& domainName, const MigrateParams& p);

// virDomainJobType.
enum class JobType { kNone, kBounded, kUnbounded, kCompleted, kFailed, kCancelled };
const char* jobTypeName(JobType t);

// virDomainJobOperation (the ones that matter here; others are kOther).
enum class JobOperation { kUnknown, kMigrationIn, kMigrationOut, kOther };

// One virDomainGetJobStats answer. Fields libvirt did not report are 0.
struct JobStats {
  JobType type = JobType::kNone;
  bool active = false;  // a job is running (bounded or unbounded)
  JobOperation operation = JobOperation::kUnknown;
  uint64_t elapsedMs = 0;
  uint64_t remainingMs = 0;  // libvirt's estimate, bounded jobs only
  uint64_t dataTotal = 0, dataProcessed = 0, dataRemaining = 0;  // bytes: memory + disks
  uint64_t memTotal = 0, memProcessed = 0, memRemaining = 0;     // bytes
  uint64_t diskTotal = 0, diskProcessed = 0, diskRemaining = 0;  // bytes (NBD copy)
  uint64_t dirtyRatePagesPerSecond = 0;
  uint64_t pageSize = 0;
  uint64_t dirtyRateBytesPerSecond = 0;  // dirty rate * page size
  uint64_t memIteration = 0;             // pre-copy pass (1 = the first full pass)
  uint64_t memBps = 0;                   // memory transfer rate, bytes/s
  uint64_t diskBps = 0;
  uint64_t postCopyRequests = 0;  // page faults served from the source during post-copy
  uint64_t downtimeMs = 0;        // completed stats: the guest's actual pause
  uint64_t downtimeNetMs = 0;     // ... without the network time
  uint64_t setupTimeMs = 0;
  uint32_t autoConvergeThrottle = 0;  // percent of vCPU time taken away now
  // The domain is in the post-copy phase now (its state: running/paused with
  // reason post-copy). Current stats only; completed stats show it through
  // postCopyRequests.
  bool postCopy = false;
  bool hasSuccess = false;  // libvirt reported VIR_DOMAIN_JOB_SUCCESS (completed stats)
  bool success = false;
  std::string errorMessage;  // VIR_DOMAIN_JOB_ERRMSG (a failed job's completed stats)
};

// The domain's job now, or (completed) the last finished job's statistics
// (VIR_DOMAIN_JOB_STATS_COMPLETED, always with KEEP_COMPLETED so that every
// reader sees them, not just the first). type kNone: no job / no completed
// stats; also for a domain that is not running (the source of a migration
// that just completed). After a successful migration the source keeps them on its shut-off
// domain; the target only after a pre-copy migration (not after post-copy:
// measured), so read them from the source.
Result<JobStats> jobStats(Connection& conn, const std::string& domainName, bool completed = false);

// One line for logs: "unbounded migration-out 1520ms data 62.0/128.5MiB (66.5MiB left) mem ..."
std::string describeJobStats(const JobStats& s);

// virDomainAbortJob: the migration fails (CANCELLED from migrate()) and the
// guest keeps running on the source. FAILED_PRECONDITION when no job runs.
// Impossible after startPostCopy() (the target owns the guest's state then).
Status abortJob(Connection& conn, const std::string& domainName);
// virDomainMigrateSetMaxDowntime: during the job, or before it (libvirt keeps
// it for the next migration of the running domain).
Status setMaxDowntime(Connection& conn, const std::string& domainName, uint64_t ms);
// virDomainMigrateGetMaxDowntime.
Result<uint64_t> maxDowntime(Connection& conn, const std::string& domainName);
// virDomainMigrateStartPostCopy: switch a job started with allowPostCopy to
// post-copy: the guest runs on the target from now on, pages it misses are
// fetched from the source (userfaultfd on the target). Only in the memory
// phase (jobStats().memTotal > 0): while the NBD disk copy still runs, QEMU
// refuses ("Postcopy must be started after migration has been started").
Status startPostCopy(Connection& conn, const std::string& domainName);
// virDomainMigrateSetMaxSpeed (pre-copy bandwidth), MiB/s; 0 = unlimited.
Status setBandwidth(Connection& conn, const std::string& domainName, uint64_t MiBps);

// The domain's live XML as libvirt would send it to a target
// (VIR_DOMAIN_XML_MIGRATABLE).
Result<std::string> migratableXml(Connection& conn, const std::string& domainName);

// Makes a destination XML built independently on the target (same devices,
// its own disk paths, no PCI addresses) pass libvirt's ABI check against the
// source's live definition, by copying from `sourceXml` (the source's live or
// migratable XML) what libvirt expands from QEMU's capabilities when it
// starts a domain, and what it no longer can expand after a restart of the
// source's libvirtd: the exact machine type (<type machine='pc-q35-7.2'>
// instead of 'q35') and the <cpu> element (libvirt adds the default CPU
// model, qemu64 under TCG). Without it, the check passes only while the
// source's libvirtd has not been restarted since it started the domain
// (then: "Target domain machine type q35 does not match source pc-q35-7.2",
// and next "Target CPU does not match source"). Everything else of `destXml`
// is kept. INVALID_ARGUMENT when either XML lacks <os><type>.
Result<std::string> alignDestXml(std::string_view sourceXml, std::string_view destXml);

}  // namespace vmhost::node
