// A third party's storage plugin, as small as the contract allows: blank
// raw disks as sparse files in a pool directory. A test fixture
// (tests/integration/sdk/out_of_tree.sh builds it out of tree against the
// installed SDK, with and without vmhost_add_plugin, with g++ and clang++,
// and runs the conformance kit on it); not a plugin to deploy.
#include "config.capnp.h"

#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace {

namespace schema = vmhost::schema;
using vmhost::sdk::Error;

// Names become parts of file names: a conservative alphabet, no "..".
std::string checkedName(const char* what, capnp::Text::Reader name) {
  std::string s(name.cStr(), name.size());
  bool ok = !s.empty() && s.size() <= 63 && s != "." && s != "..";
  for (char c : s) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.');
  }
  if (!ok) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                std::string(what) + ": must be 1-63 characters of [A-Za-z0-9._-], not . or ..");
  }
  return s;
}

std::string targetDev(schema::Volume::Reader volume) {
  std::string prefix;
  switch (volume.getBus()) {
    case schema::DiskBus::VIRTIO:
      prefix = "vd";
      break;
    case schema::DiskBus::SATA:
    case schema::DiskBus::SCSI:
      prefix = "sd";
      break;
    default:
      throw Error(VMHOST_ERR_INVALID_ARGUMENT, "volume.bus: unknown bus");
  }
  if (volume.getDiskIndex() >= 26) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT, "volume.diskIndex: must be 0..25");
  }
  return prefix + static_cast<char>('a' + volume.getDiskIndex());
}

class TinyDir final : public vmhost::sdk::StoragePlugin {
 public:
  explicit TinyDir(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    auto config = vmhost::sdk::decodeConfig<TinyDirConfig>(ctx, message);
    pool_ = config.getPool().cStr();
    maxBytes_ = config.getMaxVolumeBytes();
    if (pool_.empty() || pool_[0] != '/') {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT, "config.pool: must be an absolute path");
    }
    if (::mkdir(pool_.c_str(), 0700) != 0 && errno != EEXIST) {
      throw Error(VMHOST_ERR_FAILED_PRECONDITION,
                  "config.pool: cannot create " + pool_ + ": " + std::strerror(errno));
    }
  }

  void prepare(schema::VolumeRequest::Reader request,
               schema::VolumeAttachment::Builder attachment) override {
    auto volume = request.getVolume();
    if (!volume.getSource().isEmpty()) {
      throw Error(VMHOST_ERR_UNIMPLEMENTED, "volume.source: only blank disks (empty) are offered");
    }
    if (volume.getSizeBytes() == 0 || volume.getSizeBytes() > maxBytes_) {
      throw Error(VMHOST_ERR_OUT_OF_RANGE,
                  "volume.sizeBytes: must be 1.." + std::to_string(maxBytes_));
    }
    std::string dev = targetDev(volume);
    std::string path = fileOf(request.getVm(), volume);
    bool created = true;
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
      created = false;
    } else if (fd < 0) {
      throw Error(VMHOST_ERR_UNAVAILABLE, path + ": " + std::strerror(errno), true);
    } else {
      int rc = ::ftruncate(fd, static_cast<off_t>(volume.getSizeBytes()));
      int err = errno;
      ::close(fd);
      if (rc != 0) {
        ::unlink(path.c_str());
        throw Error(VMHOST_ERR_RESOURCE_EXHAUSTED, path + ": " + std::strerror(err));
      }
    }
    attachment.setVolumeName(volume.getName());
    attachment.setDiskType("file");
    attachment.setSourcePath(path);
    attachment.setFormat("raw");
    attachment.setTargetDev(dev);
    attachment.setBus(volume.getBus());
    attachment.setReadOnly(volume.getReadOnly());
    attachment.setBootOrder(volume.getBootOrder());
    attachment.setCreated(created);
  }

  void release(schema::VolumeRelease::Reader request,
               schema::VolumeReleased::Builder released) override {
    auto volume = request.getVolume();
    bool drop =
        request.getDeleteData() && volume.getReclaimPolicy() == schema::ReclaimPolicy::DELETE;
    if (!drop) {
      released.setRetained(true);
      return;
    }
    std::string path = fileOf(request.getVm(), volume);
    if (::unlink(path.c_str()) == 0) {
      released.setDeleted(true);
    } else if (errno != ENOENT) {
      throw Error(VMHOST_ERR_UNAVAILABLE, path + ": " + std::strerror(errno), true);
    }
  }

 private:
  std::string fileOf(schema::VmRef::Reader vm, schema::Volume::Reader volume) const {
    return pool_ + "/" + checkedName("vm.namespace", vm.getNamespace()) + "_" +
           checkedName("vm.name", vm.getName()) + "_" +
           checkedName("volume.name", volume.getName()) + ".raw";
  }

  std::string pool_;
  uint64_t maxBytes_ = 0;
};

}  // namespace

VMHOST_PLUGIN(TinyDir, "tiny-dir", "1.0.0", "Test fixture: blank raw disks in a directory", 0)
