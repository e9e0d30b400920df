// The qcow2 volume store behind the `local` and `shared-dir` storage plugins.
//
// Layout under the root directory (the pool, or the shared directory):
//   vms/<ns>/<vm>/<volume>.qcow2             empty disks (kept on stop)
//   vms/<ns>/<vm>/<volume>.ephemeral.qcow2   overlays on a base image (gone on release)
//   persistent/<ns>/<claim>.qcow2            named disks (claimName, or "<vm>-<volume>")
//   images/<sha256 of the URL>               base images fetched from a URL, once
//   images/overlays/<sha256>.qcow2           an empty overlay per base image (path, size,
//                                            mtime): each VM's overlay is a copy of it
// No path contains the node's name, so a root every node mounts at the same
// path (shared-dir) gives every node the same volumes.
//
// Why qemu-img and not libvirt's storage-pool API: the plugin then needs no
// libvirt connection (plugins see only the C ABI and their config; the host
// owns the connection), a `dir` pool would have to be defined, started and
// refreshed on every node (and refreshed again on every node whenever another
// node of a shared directory adds a volume), and libvirt's volume API does
// nothing here that `qemu-img create/convert/resize` does not: it runs
// qemu-img itself for qcow2 volumes. qemu-img runs via posix_spawnp with an
// argument vector (no shell), its stderr captured for messages, its wait
// bounded.
//
// Error codes: base image missing NOT_FOUND; URL unreachable UNAVAILABLE
// (retryable); checksum mismatch DATA_LOSS (the bytes are not the bytes the
// spec names: not a malformed request, not retryable); pool full
// RESOURCE_EXHAUSTED; permission denied PERMISSION_DENIED; bad request
// INVALID_ARGUMENT; qemu-img absent FAILED_PRECONDITION. Every message names
// the volume and the cause.
#pragma once

#include <vmhost/plugin.hpp>

#include <filesystem>
#include <functional>
#include <mutex>
#include <set>
#include <string>

namespace vmhost::storage {

class VolumeStore {
 public:
  // Progress of a base-image fetch: the VM's uid, what ("volume root:
  // fetching URL"), bytes done and total (0: unknown).
  using Progress = std::function<void(const std::string& vmUid, const std::string& what,
                                      uint64_t done, uint64_t total)>;

  // `root`: absolute directory; `shared`: every node sees the same root.
  VolumeStore(std::string root, bool shared, Progress progress = {});

  void prepare(schema::VolumeRequest::Reader request, schema::VolumeAttachment::Builder out);
  void release(schema::VolumeRelease::Reader request, schema::VolumeReleased::Builder out);

 private:
  struct Base {
    std::string path;
    std::string format;  // "qcow2" or "raw"
  };
  Base resolveImage(const std::string& volume, schema::Image::Reader image,
                    const std::string& vmUid);
  std::string fetch(const std::string& volume, const std::string& url, const std::string& sha256,
                    const std::string& vmUid);
  void verify(const std::string& volume, const std::string& path, const std::string& sha256);
  std::filesystem::path overlayTemplate(const std::string& volume, const Base& base);

  std::string root_;
  bool shared_;
  Progress progress_;
  std::mutex mutex_;                // guards verified_
  std::set<std::string> verified_;  // memoKey()s of files this instance has checked
};

// A storage plugin that is a VolumeStore over one directory: what `local`
// and `shared-dir` share. Each only decodes its own config and says whether
// the directory is shared between nodes.
class VolumeStorePlugin : public sdk::StoragePlugin {
 public:
  // `field` names the config key of `root` in the error for a relative path.
  // `cache` is the QEMU cache mode every attachment carries ("": libvirt's
  // default); an unknown one is refused naming config.cache.
  // Fetch progress goes to the host through `ctx`, which outlives the plugin.
  VolumeStorePlugin(const sdk::PluginContext& ctx, const std::string& field,
                    const std::string& root, bool shared, std::string cache = "")
      : store_(checkedRoot(field, root), shared,
               [&ctx](const std::string& uid, const std::string& what, uint64_t done,
                      uint64_t total) { ctx.reportProgress(uid, what, done, total); }),
        cache_(checkedCache(std::move(cache))) {}

  void prepare(schema::VolumeRequest::Reader request,
               schema::VolumeAttachment::Builder out) override {
    store_.prepare(request, out);
    out.setCache(cache_);
  }

  void release(schema::VolumeRelease::Reader request,
               schema::VolumeReleased::Builder out) override {
    store_.release(request, out);
  }

 private:
  static std::string checkedRoot(const std::string& field, const std::string& root) {
    if (root.empty() || root[0] != '/') {
      throw sdk::Error(VMHOST_ERR_INVALID_ARGUMENT,
                       field + ": must be an absolute path, got '" + root + "'");
    }
    return root;
  }

  static std::string checkedCache(std::string cache) {
    for (const char* mode : {"", "none", "writethrough", "writeback", "directsync", "unsafe"}) {
      if (cache == mode) return cache;
    }
    throw sdk::Error(VMHOST_ERR_INVALID_ARGUMENT,
                     "config.cache: '" + cache +
                         "' is not one of none, writethrough, writeback, directsync, unsafe "
                         "(or empty for libvirt's default)");
  }

  VolumeStore store_;
  std::string cache_;
};

}  // namespace vmhost::storage
