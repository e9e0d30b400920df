# Config of the `precopy` migration plugin. Defaults follow KubeVirt's
# migration configuration.
@0xf6b1c2d3e4a5b697;

struct PrecopyConfig {
  bandwidthMiBps @0 :UInt64 = 0;                     # 0: unlimited
  maxDowntimeMs @1 :UInt64 = 300;
  completionTimeoutPerGiBSeconds @2 :UInt64 = 150;   # scaled by memory + disks to copy
  progressTimeoutSeconds @3 :UInt64 = 150;
  autoConverge @4 :Bool = true;
  parallelConnections @5 :UInt32 = 1;
}
