// The source side of one live migration while it runs: the libvirt job on a
// thread of its own (migrate() blocks until the job ends) and a monitor
// thread that reads the job's figures every `poll`, asks the migration
// plugin what to do (onProgress) and applies its decision to the running job
// (raise the max downtime, switch to post-copy, abort). The node agent's
// loop only looks at progress() and outcome(); it never blocks on the job.
//
// A restarted agent re-attaches to a job still in flight (libvirtd runs a
// peer-to-peer migration by itself): attach = true starts only the monitor,
// which ends when libvirt reports no job any more; the agent then reads the
// domain's state to tell a finished migration (shut off, reason migrated)
// from a failed one (still running).
//
// Threads: both threads and the agent's share the Connection (libvirt
// connections are thread-safe); each looks the domain up by name.
#pragma once

#include "api/migration_state.h"
#include "common/result.h"
#include "node/libvirt.h"
#include "node/migration/libvirt_migration.h"

#include <vmhost/loader/plugin_host.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace vmhost::node {

// The migration plugin's plan (schema::MigrationPlan) as values.
struct MigrationPlanValues {
  uint64_t bandwidthMiBps = 0;
  uint64_t maxDowntimeMs = 0;
  bool autoConverge = false;
  bool allowPostCopy = false;
  uint64_t completionTimeoutSeconds = 0;
  uint64_t progressTimeoutSeconds = 0;
  uint32_t parallelConnections = 0;
  bool copyStorage = false;
  uint32_t autoConvergeInitial = 0;
  uint32_t autoConvergeIncrement = 0;
};

struct SourceJobOptions {
  std::string domainName;
  std::string vmLabel;  // "default/vm1", for messages
  MigrateParams params;
  MigrationPlanValues plan;          // echoed to onProgress as the plan in force
  PluginInstance* plugin = nullptr;  // null: no decisions, the job runs as planned
  std::chrono::milliseconds poll{1000};
  bool attach = false;  // re-attach to a job in flight: monitor only
};

struct SourceJobOutcome {
  bool ok = false;              // libvirt reported the migration complete
  std::string reason;           // not ok: MigrationFailed, AbortedByPlugin, Cancelled
  std::string message;          // not ok: what libvirt or the plugin said
  api::MigrationResult result;  // ok: libvirt's completed figures
};

class SourceJob {
 public:
  SourceJob(Connection& libvirt, SourceJobOptions options);
  ~SourceJob();  // joins both threads (aborting the job first if it still runs)
  SourceJob(const SourceJob&) = delete;
  SourceJob& operator=(const SourceJob&) = delete;

  void start();

  // Asks libvirt to abort the job (a cancel); the outcome says Cancelled.
  void cancel();

  // The latest figures; whether they changed since the last call.
  api::MigrationProgress progress(bool* changed = nullptr);

  // Set once the job has ended.
  std::optional<SourceJobOutcome> outcome() const;

 private:
  void runMigrate();
  void runMonitor();
  void decide(const JobStats& stats);
  void finish(SourceJobOutcome outcome);

  Connection& libvirt_;
  SourceJobOptions options_;
  std::chrono::steady_clock::time_point started_;

  mutable std::mutex mu_;
  api::MigrationProgress progress_;
  bool progressChanged_ = false;
  std::optional<SourceJobOutcome> outcome_;
  std::string abortReason_;  // set when the plugin or a cancel aborted the job
  std::string abortMessage_;

  // Monitor-thread state.
  uint64_t lowestRemaining_ = UINT64_MAX;
  std::chrono::steady_clock::time_point lastLow_;
  uint64_t maxDowntimeMs_ = 0;
  bool postCopy_ = false;
  std::string endedBy_;

  std::atomic<bool> migrateDone_{false};
  std::atomic<bool> stop_{false};
  std::jthread migrateThread_;
  std::jthread monitorThread_;
};

}  // namespace vmhost::node
