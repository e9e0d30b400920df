// storage plugin `local`: volumes as qcow2 files under a pool directory on
// the node: blank disks, overlays on cached base images (by path, or fetched
// once per node from a file:// or http(s):// URL), named persistent disks,
// and host paths passed through. The store is plugins/storage/common.
//
// qemu-img, not libvirt's storage-pool API: the plugin needs no libvirt
// connection (the host owns it; plugins see only the C ABI and their config),
// no `dir` pool has to be defined, started and refreshed on each node, and
// for qcow2 the pool API runs qemu-img itself anyway. qemu-img is spawned
// with an argument vector (no shell), stderr captured, the wait bounded.
#include "config.capnp.h"
#include "volume_store.h"

#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <string>

namespace {

class LocalStorage final : public vmhost::storage::VolumeStorePlugin {
 public:
  explicit LocalStorage(vmhost::sdk::PluginContext& ctx)
      : VolumeStorePlugin(ctx, "config.pool", configRoot(ctx), /*shared=*/false) {}

 private:
  static std::string configRoot(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    return vmhost::sdk::decodeConfig<LocalConfig>(ctx, message).getPool().cStr();
  }
};

}  // namespace

VMHOST_PLUGIN(LocalStorage, "local", "0.1.0",
              "Volumes as qcow2 files in a pool directory on the node", VMHOST_CAP_STORAGE_RESIZE)
