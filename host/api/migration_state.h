// The record of a live migration that a VirtualMachine's status carries
// (status.migration), and the figures a migration reports: what the source
// and target nodes see and write. The VirtualMachineMigration kind, and who
// writes what, are in api/migration.h.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace vmhost::api {

inline constexpr const char* kVirtualMachineMigrationKind = "VirtualMachineMigration";
inline constexpr const char* kMigrationsResource = "virtualmachinemigrations";
// Holds a deleted migration until a cancel of what is in flight is resolved.
inline constexpr const char* kMigrationFinalizer = "vmhost.io/migration";

// Phases of a VirtualMachineMigration (status.phase).
inline constexpr const char* kMigrationPending = "Pending";
inline constexpr const char* kMigrationScheduling = "Scheduling";
inline constexpr const char* kMigrationPreparingTarget = "PreparingTarget";
inline constexpr const char* kMigrationRunning = "Running";
inline constexpr const char* kMigrationSucceeded = "Succeeded";
inline constexpr const char* kMigrationFailed = "Failed";
// Only in the VM's record: the target has prepared everything.
inline constexpr const char* kMigrationTargetReady = "TargetReady";

inline constexpr const char* kMigrationPhases[] = {kMigrationPending,         kMigrationScheduling,
                                                   kMigrationPreparingTarget, kMigrationRunning,
                                                   kMigrationSucceeded,       kMigrationFailed};
inline constexpr const char* kMigrationStatePhases[] = {kMigrationPreparingTarget,
                                                        kMigrationTargetReady, kMigrationRunning,
                                                        kMigrationSucceeded, kMigrationFailed};

// Per-migration overrides (spec.parameters), handed to the migration plugin
// (schema MigrationOverrides); 0 / nullopt: the plugin's own value.
struct MigrationParameters {
  uint64_t bandwidthMiBps = 0;
  uint64_t maxDowntimeMs = 0;
  uint64_t completionTimeoutPerGiBSeconds = 0;
  uint64_t progressTimeoutSeconds = 0;
  uint32_t parallelConnections = 0;
  std::optional<bool> allowPostCopy;
  std::optional<bool> autoConverge;
  friend bool operator==(const MigrationParameters&, const MigrationParameters&) = default;
};

// A running migration's figures, as libvirt reports them on the source.
struct MigrationProgress {
  uint64_t dataTotalBytes = 0;
  uint64_t dataProcessedBytes = 0;
  uint64_t dataRemainingBytes = 0;
  uint64_t dirtyRateBytesPerSecond = 0;
  uint64_t memoryIteration = 0;
  uint64_t maxDowntimeMs = 0;  // in force now
  uint64_t elapsedMs = 0;
  bool postCopy = false;     // switched to post-copy
  std::string lastDecision;  // the plugin's last non-trivial decision, with its reason
  friend bool operator==(const MigrationProgress&, const MigrationProgress&) = default;
};

struct MigrationResult {
  uint64_t totalMs = 0;     // libvirt's time elapsed
  uint64_t downtimeMs = 0;  // libvirt's total downtime
  uint64_t bytesTransferred = 0;
  std::string
      endedBy;  // what made it converge, e.g. "pre-copy", "post-copy", "max downtime 800 ms"
  friend bool operator==(const MigrationResult&, const MigrationResult&) = default;
};

// What the target published for the source: everything the source needs to
// start the libvirt job, in the target's own terms.
struct MigrationTarget {
  std::string domainXml;   // the domain as the target runs it (its own attachments)
  std::string libvirtUri;  // the target's libvirt, for peer-to-peer (qemu+tcp://IP/system)
  std::string migrateUri;  // where QEMU's stream goes (tcp://IP)
  bool tls = false;        // the stream must be TLS (the cluster has a PKI)
  std::vector<std::string> copyDisks;  // target devs (vda) of the disks copied (not shared)
  friend bool operator==(const MigrationTarget&, const MigrationTarget&) = default;
};

// status.migration of a VirtualMachine: the migration in flight (or the last
// one, until the next replaces it).
struct MigrationState {
  std::string name;  // the VirtualMachineMigration
  std::string uid;   // its uid
  std::string sourceNode;
  std::string targetNode;
  std::string phase;  // kMigrationStatePhases
  bool abortRequested = false;
  std::string reason, message;  // Failed
  MigrationParameters parameters;
  std::optional<MigrationTarget> target;
  std::optional<MigrationProgress> progress;
  std::optional<MigrationResult> result;
  std::string startTimestamp, endTimestamp;
  friend bool operator==(const MigrationState&, const MigrationState&) = default;
};

inline bool migrationStateFinished(const MigrationState& m) {
  return m.phase == kMigrationSucceeded || m.phase == kMigrationFailed;
}

}  // namespace vmhost::api
