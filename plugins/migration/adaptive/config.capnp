# Config of the `adaptive` migration plugin: precopy's parameters (KubeVirt's
# defaults), auto-converge and post-copy allowed, and the pace of its steps
# for a guest that dirties memory faster than the link carries it.
@0xc96d536e3ff659f9;

struct AdaptiveConfig {
  bandwidthMiBps @0 :UInt64 = 0;                     # 0: unlimited
  maxDowntimeMs @1 :UInt64 = 300;                    # where the max downtime starts
  completionTimeoutPerGiBSeconds @2 :UInt64 = 150;   # scaled by memory + disks to copy
  progressTimeoutSeconds @3 :UInt64 = 150;           # only once every step is spent; 0: never
  parallelConnections @4 :UInt32 = 1;
  autoConverge @5 :Bool = true;                      # step 2: QEMU throttles the vCPUs
  allowPostCopy @6 :Bool = true;                     # step 3: the target pulls the rest
  maxDowntimeCapMs @7 :UInt64 = 2000;                # step 1 doubles the max downtime up to this
  stallSeconds @8 :UInt32 = 5;                       # no new low this long: not converging
  autoConvergeSeconds @9 :UInt32 = 10;               # how long step 2 gets
  autoConvergeInitial @10 :UInt32 = 0;               # QEMU's throttle start, percent (0: 20)
  autoConvergeIncrement @11 :UInt32 = 0;             # its growth per pass, percent (0: 10)
}
