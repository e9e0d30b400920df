# Config of the `precopy` migration plugin. Defaults follow KubeVirt's
# migration configuration (and libvirt's/QEMU's max downtime).
@0xf6b1c2d3e4a5b697;

struct PrecopyConfig {
  bandwidthMiBps @0 :UInt64 = 0;                     # 0: unlimited
  maxDowntimeMs @1 :UInt64 = 300;                    # libvirt's and QEMU's default
  completionTimeoutPerGiBSeconds @2 :UInt64 = 150;   # scaled by memory + disks to copy
  progressTimeoutSeconds @3 :UInt64 = 150;           # 0: never
  autoConverge @4 :Bool = false;
  parallelConnections @5 :UInt32 = 1;
}
