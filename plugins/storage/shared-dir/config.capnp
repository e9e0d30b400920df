# Config of the `shared-dir` storage plugin (the slot's `config:` section).
@0xe3c1a8f0b7d25c41;

struct SharedDirConfig {
  path @0 :Text;  # absolute directory every node mounts at this same path (NFS, ...)
}
