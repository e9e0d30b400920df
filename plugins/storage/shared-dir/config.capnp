# Config of the `shared-dir` storage plugin (the slot's `config:` section).
@0xe3c1a8f0b7d25c41;

struct SharedDirConfig {
  path @0 :Text;  # absolute directory every node mounts at this same path (NFS, ...)
  # QEMU cache mode of every disk ("none", "writethrough", "writeback",
  # "directsync", "unsafe"); "" keeps libvirt's default. "none" is what a
  # live migration between nodes needs to be safe (no writes left in the
  # source's page cache), but it opens the files with O_DIRECT, which tmpfs
  # and some FUSE file systems refuse: hence the operator's choice.
  cache @1 :Text;
}
