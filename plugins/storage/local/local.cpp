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
//
// A release with `migrated` set (the VM was live-migrated and runs on another
// node, on that node's own copy; or a failed migration's target drops its
// partial copy) deletes this node's copy of an empty, ephemeral or persistent
// volume whatever the reclaim policy and deleteData say. Host paths are the
// operator's: never touched.
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

  void release(vmhost::schema::VolumeRelease::Reader request,
               vmhost::schema::VolumeReleased::Builder out) override {
    if (!request.getMigrated()) return VolumeStorePlugin::release(request, out);
    // The same release, as a delete of a volume whose policy is delete.
    capnp::MallocMessageBuilder message;
    message.setRoot(request);
    auto copy = message.getRoot<vmhost::schema::VolumeRelease>();
    copy.setDeleteData(true);
    copy.getVolume().setReclaimPolicy(vmhost::schema::ReclaimPolicy::DELETE);
    VolumeStorePlugin::release(copy.asReader(), out);
  }

 private:
  static std::string configRoot(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    return vmhost::sdk::decodeConfig<LocalConfig>(ctx, message).getPool().cStr();
  }
};

}  // namespace

VMHOST_PLUGIN(LocalStorage, "local", "0.1.0",
              "Volumes as qcow2 files in a pool directory on the node", VMHOST_CAP_STORAGE_RESIZE)
