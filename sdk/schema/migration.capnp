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
}

# VMHOST_METHOD_MIGRATION_PROGRESS response.
struct MigrationDecision @0xa705e6502644c698 {
  action @0 :Action;
  reason @1 :Text;             # for the VM's events and the migration's status
  newMaxDowntimeMs @2 :UInt64; # 0: keep the current value

  enum Action {
    continue @0;
    switchToPostCopy @1;
    abort @2;
  }
}
