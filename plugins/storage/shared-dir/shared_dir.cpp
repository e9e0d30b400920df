// storage plugin `shared-dir`: the volume types of `local` in a directory
// every node mounts at the same path (NFS, CephFS, ...), so a VM's disks are
// reachable from any node and need no copy for live migration. Volume paths
// never contain the node's name: a volume prepared on node A is found, not
// recreated, when node B prepares the same request. Creation is a link() of
// a finished temp file, so two nodes racing on one volume end with one file.
//
// qemu-img, not libvirt's storage-pool API: see plugins/storage/local and
// plugins/storage/common/volume_store.h; with a shared directory a libvirt
// pool on each node would also need refreshing whenever another node adds a
// volume.
#include "config.capnp.h"
#include "volume_store.h"

#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <string>

namespace {

class SharedDirStorage final : public vmhost::storage::VolumeStorePlugin {
 public:
  explicit SharedDirStorage(vmhost::sdk::PluginContext& ctx) : SharedDirStorage(ctx, config(ctx)) {}

 private:
  struct Config {
    std::string path;
    std::string cache;
  };
  SharedDirStorage(vmhost::sdk::PluginContext& ctx, Config c)
      : VolumeStorePlugin(ctx, "config.path", c.path, /*shared=*/true, std::move(c.cache)) {}

  static Config config(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    auto c = vmhost::sdk::decodeConfig<SharedDirConfig>(ctx, message);
    return {c.getPath().cStr(), c.getCache().cStr()};
  }
};

}  // namespace

VMHOST_PLUGIN(SharedDirStorage, "shared-dir", "0.1.0",
              "Volumes as qcow2 files in a directory every node mounts at the same path",
              VMHOST_CAP_STORAGE_SHARED | VMHOST_CAP_STORAGE_RESIZE)
