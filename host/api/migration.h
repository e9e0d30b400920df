// Live migration in the API: the vmhost.io/v1 VirtualMachineMigration kind
// (namespaced; create one to move a running VM to another node, delete it to
// cancel), and the record of a migration in flight that the VM's own status
// carries (status.migration), which is what the source and target nodes see
// and write. The orchestration is controller/migration.h; the node's two
// sides are node/migration/.
//
// Who writes what (every write is optimistic-concurrency, level-triggered):
//   user        VirtualMachineMigration spec; delete = cancel
//   controller  the migration's status (phases Pending, Scheduling, mirrored
//               from the VM's record after that); the VM's status.migration
//               when it picks the target (phase PreparingTarget) and when a
//               cancel sets abortRequested
//   target node status.migration: TargetReady with `target`, or Failed
//   source node status.migration: Running with `progress`, Failed, or
//               Succeeded with `result`; the Succeeded write also moves
//               status.nodeName to the target (the handover: one write, only
//               after libvirt reported the migration complete)
// applyMigrationReport() is that merge, shared by the controller's node
// server and the all-in-one's store control plane.
#pragma once

#include "api/migration_state.h"
#include "api/types.h"
#include "common/result.h"
#include "store/store.h"

#include <functional>
#include <map>
#include <optional>
#include <string>

namespace vmhost::api {

struct VirtualMachineMigrationSpec {
  std::string vmName;                               // required: the VM in the migration's namespace
  std::string targetNode;                           // optional: this node, or fail
  std::map<std::string, std::string> nodeSelector;  // optional: narrows the scheduler's choice
  MigrationParameters parameters;
};

struct VirtualMachineMigrationStatus {
  std::string phase;    // kMigrationPhases; empty until the controller first writes
  std::string reason;   // Pending: why it waits; Failed: the step (CamelCase)
  std::string message;  // Failed: the step and libvirt's or the plugin's words
  std::string vmUid;
  std::string sourceNode;
  std::string targetNode;
  std::string startTimestamp;  // when it left Pending
  std::string endTimestamp;    // when it reached Succeeded or Failed
  std::optional<MigrationProgress> progress;
  std::optional<MigrationResult> result;
};

struct VirtualMachineMigration {
  ObjectMeta metadata;
  VirtualMachineMigrationSpec spec;
  VirtualMachineMigrationStatus status;
};

// ---- Decode / validate / encode (migration.cpp), as types.h does for the
// other kinds. spec is immutable after create (the REST traits enforce it).
Decoded<VirtualMachineMigration> decodeVirtualMachineMigration(const Json& j, FieldValidation mode);
FieldErrors validateVirtualMachineMigration(const VirtualMachineMigration& m);
Json encode(const VirtualMachineMigration& m);

// status.migration of a VM, for types.cpp's VM codec.
void decodeMigrationState(Decoder& d, const Json& j, const std::string& path, MigrationState& out);
FieldErrors validateMigrationState(const MigrationState& m, const std::string& path);
Json encodeMigrationState(const MigrationState& m);

// ---- In the store (as objects.h for the other kinds):
// ("virtualmachinemigrations", <namespace>, <name>).
store::Key migrationKey(const std::string& ns, const std::string& name);
std::string storeValue(const VirtualMachineMigration& m);
Result<VirtualMachineMigration> decodeStoredMigration(const store::StoredObject& object);
// Read-modify-write of the status with optimistic concurrency, as
// updateVirtualMachineStatus() (`mutate` returns false: no write).
Result<VirtualMachineMigration> updateMigrationStatus(
    store::Store& store, const std::string& ns, const std::string& name,
    const std::function<bool(VirtualMachineMigrationStatus&)>& mutate, int maxAttempts = 16);

// ---- A node's report (migration_report.cpp) ----

// Merges what node `node` reports about the VM's migration (`report`, its
// view of status.migration) into `status`, by the node's role in it:
//   target  PreparingTarget -> TargetReady (with `target`), or -> Failed
//   source  TargetReady|Running -> Running (progress), -> Failed, or
//           -> Succeeded (result), which also sets status.nodeName to the
//           target: the handover
//   target  TargetReady|Running -> Succeeded when it runs the resumed guest
//           (the source may be gone: libvirt resumes the target only once
//           the migration completed)
// Anything else is refused (FAILED_PRECONDITION, saying why): a report for
// another migration uid, from a node that is neither side, a phase going
// back, a finished migration changing. Returns whether `status` changed.
Result<bool> applyMigrationReport(VirtualMachineStatus& status, const std::string& node,
                                  const MigrationState& report);

}  // namespace vmhost::api
