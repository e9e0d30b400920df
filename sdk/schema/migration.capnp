# vmhost SDK schema: live-migration plugins (VMHOST_KIND_MIGRATION).
# Evolution rules: see common.capnp.
@0xceecc98e58519e49;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("vmhost::schema");

using Common = import "common.capnp";

# VMHOST_METHOD_MIGRATION_PLAN request.
struct MigrationRequest @0xd3f429806d1935c0 {
  vm @0 :Common.VmRef;
  sourceNode @1 :Text;
  targetNode @2 :Text;
  memoryBytes @3 :UInt64;     # guest RAM
  diskBytesToCopy @4 :UInt64; # non-shared disks that must be copied
  sharedStorage @5 :Bool;     # every disk is reachable from the target
  # What the VirtualMachineMigration's spec asks for this one migration; the
  # plugin decides how far to honour it (0 / unset: the plugin's own value).
  overrides @6 :MigrationOverrides;
}

# Per-migration overrides from VirtualMachineMigration.spec.parameters.
struct MigrationOverrides @0xe1a1b7f0c0d2a3b4 {
  bandwidthMiBps @0 :UInt64;                  # 0: not overridden
  maxDowntimeMs @1 :UInt64;                   # 0: not overridden
  completionTimeoutPerGiBSeconds @2 :UInt64;  # 0: not overridden
  progressTimeoutSeconds @3 :UInt64;          # 0: not overridden
  parallelConnections @4 :UInt32;             # 0: not overridden
  allowPostCopy @5 :Choice;
  autoConverge @6 :Choice;

  enum Choice {
    unset @0;
    no @1;
    yes @2;
  }
}

# VMHOST_METHOD_MIGRATION_PLAN response: the libvirt migration parameters.
struct MigrationPlan @0xbe5aa2678811e099 {
  bandwidthMiBps @0 :UInt64;           # 0: unlimited
  maxDowntimeMs @1 :UInt64;
  autoConverge @2 :Bool;
  allowPostCopy @3 :Bool;
  completionTimeoutSeconds @4 :UInt64; # abort past this (0: never)
  progressTimeoutSeconds @5 :UInt64;   # abort when remaining data stops shrinking this long
  parallelConnections @6 :UInt32;      # 0 or 1: a single connection
  copyStorage @7 :Bool;                # copy non-shared disks (block migration)
  # QEMU's auto-converge throttle (percent of vCPU time), when autoConverge:
  # where it starts and how much it grows per step; 0: QEMU's defaults (20, 10).
  autoConvergeInitial @8 :UInt32;
  autoConvergeIncrement @9 :UInt32;
}

# VMHOST_METHOD_MIGRATION_PROGRESS request, sent periodically while a
# migration runs.
struct MigrationProgress @0x8fb57243d641fe29 {
  plan @0 :MigrationPlan;          # the plan in force
  elapsedMs @1 :UInt64;
  dataTotalBytes @2 :UInt64;
  dataProcessedBytes @3 :UInt64;
  dataRemainingBytes @4 :UInt64;
  dirtyRateBytesPerSecond @5 :UInt64;
  iteration @6 :UInt64;            # memory pass number
  msSinceProgress @7 :UInt64;      # since dataRemainingBytes last reached a new low
  postCopyActive @8 :Bool;
  maxDowntimeMs @9 :UInt64;        # the max downtime in force now (raised by decisions)
  autoConvergeThrottle @10 :UInt32; # QEMU's current vCPU throttle, percent (0: none)
  memoryRemainingBytes @11 :UInt64;
  diskRemainingBytes @12 :UInt64;  # non-shared disks still to copy
  bandwidthBytesPerSecond @13 :UInt64; # the transfer rate QEMU measures now
}

# VMHOST_METHOD_MIGRATION_PROGRESS response.
struct MigrationDecision @0xa705e6502644c698 {
  action @0 :Action;
  reason @1 :Text;             # for the VM's events and the migration's status
  newMaxDowntimeMs @2 :UInt64; # 0: keep the current value (with continue or raiseMaxDowntime)

  enum Action {
    continue @0;
    switchToPostCopy @1;
    abort @2;
    raiseMaxDowntime @3;       # set newMaxDowntimeMs on the running job, then continue
  }
}
