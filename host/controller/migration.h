// The migration controller: drives each VirtualMachineMigration from its
// creation to Succeeded or Failed (api/migration.h says who writes what).
//
//   ""               -> Pending: the VM exists, runs and is bound; uid and
//                       source recorded. A second migration of a VM that has
//                       one in flight fails (AlreadyMigrating).
//   Pending          -> Scheduling when the limits allow (at most
//                       parallelMigrationsPerCluster running, at most
//                       parallelOutboundMigrationsPerNode from the source);
//                       otherwise it waits, the reason and message saying for
//                       what.
//   Scheduling       -> PreparingTarget: the scheduler plugin picks the target
//                       (never the source; the VM's and the migration's
//                       selectors; spec.targetNode as a hostname selector);
//                       the VM's status.migration is written (phase
//                       PreparingTarget), which is what makes the target
//                       node prepare. No node fits: Failed (SchedulingFailed).
//   PreparingTarget, Running, Succeeded, Failed: mirrored from the VM's
//                       record, which the nodes write; a target that does not
//                       prepare within targetPrepareTimeout fails it.
// Delete = cancel: the controller's finalizer holds the object; a migration
// not yet started fails (Cancelled) at once; one in flight gets
// abortRequested, and the finalizer goes once the outcome is recorded (a
// migration that completed before the abort took effect says Succeeded).
//
// Level-triggered: every pass re-reads the migrations and the VMs they name;
// a restart converges (a Scheduling migration is asked for again; one whose
// VM record already exists goes on from there).
#pragma once

#include "api/event_recorder.h"
#include "api/migration.h"
#include "common/metrics.h"
#include "controller/scheduling.h"
#include "store/store.h"

#include <chrono>
#include <future>
#include <map>
#include <stop_token>
#include <string>

namespace vmhost::controller {

struct MigrationOptions {
  int64_t parallelMigrationsPerCluster = 5;
  int64_t parallelOutboundMigrationsPerNode = 2;
  std::chrono::seconds targetPrepareTimeout{300};
  std::chrono::milliseconds interval{500};
  api::EventSink* events = nullptr;  // may be null
};

class MigrationController {
 public:
  // `store` and `scheduling` must outlive it.
  MigrationController(store::Store& store, SchedulingController& scheduling,
                      MigrationOptions options = {});

  void run(std::stop_token stop);

  // One pass over every migration; returns whether any is unfinished.
  bool reconcileOnce();

 private:
  struct Counts {
    int64_t running = 0;
    std::map<std::string, int64_t> outbound;  // by source node
  };
  void reconcile(api::VirtualMachineMigration& m, int64_t modRevision, Counts& counts);
  // Writes the migration's status (optimistic concurrency on `modRevision`
  // is left to updateMigrationStatus, which re-reads).
  void setStatus(const api::VirtualMachineMigration& m,
                 const std::function<bool(api::VirtualMachineMigrationStatus&)>& mutate);
  void fail(const api::VirtualMachineMigration& m, const std::string& reason,
            const std::string& message);
  void event(const api::VirtualMachineMigration& m, const char* type, const char* reason,
             const std::string& message);
  void finalize(const api::VirtualMachineMigration& m);

  store::Store& store_;
  SchedulingController& scheduling_;
  MigrationOptions options_;
  // Target questions in flight, by migration uid.
  std::map<std::string, std::future<Result<std::string>>> asked_;
};

}  // namespace vmhost::controller
