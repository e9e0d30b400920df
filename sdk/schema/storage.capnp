# vmhost SDK schema: storage plugins (VMHOST_KIND_STORAGE).
# Evolution rules: see common.capnp.
@0xc2ebf37ad8bff72f;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("vmhost::schema");

using Common = import "common.capnp";

enum DiskBus @0x866a7ce1961302c9 {
  virtio @0;
  sata @1;
  scsi @2;
}

enum ReclaimPolicy @0x972c316d5181f1cf {
  delete @0;   # the volume goes with the VM
  retain @1;   # the volume outlives the VM
}

# A base image: a local path or a URL, with an optional checksum.
struct Image @0xf5f827d4e39e3a00 {
  path @0 :Text;
  url @1 :Text;
  sha256 @2 :Text;  # lower-case hex; empty: not checked
}

# A volume as the VM spec declares it.
struct Volume @0xf393f572635c5af7 {
  name @0 :Text;               # unique within the VM
  sizeBytes @1 :UInt64;        # 0: the image's size (or the plugin's default)
  bus @2 :DiskBus;
  bootOrder @3 :UInt32;        # 0: not bootable
  readOnly @4 :Bool;
  reclaimPolicy @5 :ReclaimPolicy;
  diskIndex @6 :UInt32;        # position among the VM's disks on this bus (0 -> vda)
  source :union {
    empty @7 :Void;                      # a blank disk of sizeBytes
    ephemeral @8 :Image;                 # copy-on-write overlay, gone with the VM
    persistent @9 :PersistentSource;     # a named disk that outlives stop/start
    hostPath @10 :Text;                  # an existing file or block device, used as is
  }
}

struct PersistentSource @0xd15f87b2505fa0ce {
  claimName @0 :Text;   # the disk's name; defaults to "<vm>-<volume>" when empty
  image @1 :Image;      # optional: initial content
}

# VMHOST_METHOD_STORAGE_PREPARE request. Idempotent: preparing a prepared
# volume returns the same attachment.
struct VolumeRequest @0x9060f9654b673a5b {
  vm @0 :Common.VmRef;
  node @1 :Text;
  volume @2 :Volume;
}

# VMHOST_METHOD_STORAGE_PREPARE response: what the libvirt <disk> needs.
struct VolumeAttachment @0x9c8b763b21ab1481 {
  volumeName @0 :Text;
  diskType @1 :Text;    # <disk type=...>: "file", "block", "network"
  sourcePath @2 :Text;  # <source file=...> or dev=...
  format @3 :Text;      # <driver type=...>: "qcow2", "raw"
  targetDev @4 :Text;   # <target dev=...>: "vda"
  bus @5 :DiskBus;
  readOnly @6 :Bool;
  shared @7 :Bool;      # reachable from every node (no copy on migration)
  created @8 :Bool;     # this call created the volume; false on a repeat
  bootOrder @9 :UInt32;
  # <driver cache=...>: "none", "writethrough", "writeback", "directsync",
  # "unsafe"; "" (the default, and what plugins older than this field send)
  # keeps libvirt's default. The storage plugin's call, not the host's: a
  # disk on shared storage wants "none" so that a live migration never
  # leaves the source's page cache holding writes the target cannot see,
  # but "none" means O_DIRECT, which tmpfs and some FUSE file systems refuse.
  cache @10 :Text;
}

# VMHOST_METHOD_STORAGE_RELEASE request. Idempotent: releasing a released
# volume succeeds.
struct VolumeRelease @0xfe5f7514296d90d9 {
  vm @0 :Common.VmRef;
  node @1 :Text;
  volume @2 :Volume;
  deleteData @3 :Bool;  # the VM is being deleted: drop data unless retained
  # The VM was live-migrated to another node, which holds its own copy of
  # this volume (or this node was the target of a migration that failed and
  # holds a partial copy): drop this node's copy whatever the reclaim policy.
  # A volume the plugin attaches as shared (the same data on every node) is
  # released as without it: its data is the VM's only copy.
  migrated @4 :Bool;
}

# VMHOST_METHOD_STORAGE_RELEASE response.
struct VolumeReleased @0xcd7ed6fa14990f9d {
  deleted @0 :Bool;   # data was removed by this call
  retained @1 :Bool;  # data kept (reclaimPolicy retain, or not deleteData)
}
