# Config of the test fixture `tiny-dir` storage plugin.
@0xa4c7e2f1b3d59e61;

struct TinyDirConfig {
  pool @0 :Text;                             # absolute directory, created if absent
  maxVolumeBytes @1 :UInt64 = 1073741824;    # larger blank disks are refused
}
