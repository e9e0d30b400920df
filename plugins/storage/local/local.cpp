// storage plugin `local`: volumes as files under a pool directory on the
// node. This version creates blank (sparse raw) disks and passes host paths
// through; overlays, persistent disks and image fetching build on it.
#include "config.capnp.h"

#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <regex>
#include <string>

namespace {

namespace fs = std::filesystem;
using vmhost::sdk::Error;
namespace schema = vmhost::schema;

// "vda", ..., "vdz", "vdaa", ... as libvirt names them.
std::string targetDev(schema::DiskBus bus, uint32_t index) {
  std::string suffix;
  uint64_t i = index;
  do {
    suffix.insert(suffix.begin(), static_cast<char>('a' + i % 26));
    i = i / 26;
  } while (i-- > 0);
  return (bus == schema::DiskBus::VIRTIO ? "vd" : "sd") + suffix;
}

void checkName(const char* field, const std::string& value) {
  static const std::regex kName("[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?");
  if (!std::regex_match(value, kName)) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                std::string(field) + ": '" + value + "' is not a valid name (DNS-1123 subdomain)");
  }
}

[[noreturn]] void throwErrno(const std::string& what, int err) {
  vmhost_status code = err == EACCES || err == EPERM ? VMHOST_ERR_PERMISSION_DENIED
                       : err == ENOSPC || err == EDQUOT ? VMHOST_ERR_RESOURCE_EXHAUSTED
                                                        : VMHOST_ERR_INTERNAL;
  throw Error(code, what + ": " + std::strerror(err), err == ENOSPC || err == EAGAIN);
}

class LocalStorage final : public vmhost::sdk::StoragePlugin {
 public:
  explicit LocalStorage(vmhost::sdk::PluginContext& ctx) {
    capnp::MallocMessageBuilder message;
    auto config = vmhost::sdk::decodeConfig<LocalConfig>(ctx, message);
    pool_ = config.getPool().cStr();
    if (pool_.empty() || pool_[0] != '/') {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                  "config.pool: must be an absolute path, got '" + pool_ + "'");
    }
  }

  void prepare(schema::VolumeRequest::Reader request,
               schema::VolumeAttachment::Builder out) override {
    auto vm = request.getVm();
    auto volume = request.getVolume();
    std::string ns = vm.getNamespace().cStr(), name = vm.getName().cStr();
    std::string volName = volume.getName().cStr();
    checkName("vm.namespace", ns);
    checkName("vm.name", name);
    checkName("volume.name", volName);

    out.setVolumeName(volName);
    out.setTargetDev(targetDev(volume.getBus(), volume.getDiskIndex()));
    out.setBus(volume.getBus());
    out.setReadOnly(volume.getReadOnly());
    out.setBootOrder(volume.getBootOrder());
    out.setShared(false);

    auto source = volume.getSource();
    switch (source.which()) {
      case schema::Volume::Source::EMPTY: {
        if (volume.getSizeBytes() == 0) {
          throw Error(VMHOST_ERR_INVALID_ARGUMENT, "volume " + volName + ": an empty disk needs sizeBytes");
        }
        fs::path dir = fs::path(pool_) / ns / name;
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) throwErrno("creating " + dir.string(), ec.value());
        fs::path file = dir / (volName + ".img");
        int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        bool created = fd >= 0;
        if (fd < 0 && errno != EEXIST) throwErrno("creating " + file.string(), errno);
        if (created) {
          if (::ftruncate(fd, static_cast<off_t>(volume.getSizeBytes())) != 0) {
            int err = errno;
            ::close(fd);
            ::unlink(file.c_str());
            throwErrno("sizing " + file.string(), err);
          }
          ::close(fd);
        }
        out.setDiskType("file");
        out.setSourcePath(file.string());
        out.setFormat("raw");
        out.setCreated(created);
        return;
      }
      case schema::Volume::Source::HOST_PATH: {
        std::string path = source.getHostPath().cStr();
        struct stat st {};
        if (path.empty() || path[0] != '/') {
          throw Error(VMHOST_ERR_INVALID_ARGUMENT, "volume " + volName + ": hostPath must be absolute");
        }
        if (::stat(path.c_str(), &st) != 0) throwErrno("volume " + volName + ": " + path, errno);
        out.setDiskType(S_ISBLK(st.st_mode) ? "block" : "file");
        out.setSourcePath(path);
        out.setFormat("raw");
        out.setCreated(false);
        return;
      }
      case schema::Volume::Source::EPHEMERAL:
      case schema::Volume::Source::PERSISTENT:
        throw Error(VMHOST_ERR_UNIMPLEMENTED,
                    "volume " + volName + ": image-backed volumes are not supported by storage local yet");
    }
    throw Error(VMHOST_ERR_INVALID_ARGUMENT, "volume " + volName + ": unknown source type");
  }

  void release(schema::VolumeRelease::Reader request,
               schema::VolumeReleased::Builder out) override {
    auto vm = request.getVm();
    auto volume = request.getVolume();
    std::string ns = vm.getNamespace().cStr(), name = vm.getName().cStr();
    std::string volName = volume.getName().cStr();
    checkName("vm.namespace", ns);
    checkName("vm.name", name);
    checkName("volume.name", volName);
    bool drop = request.getDeleteData() && volume.getReclaimPolicy() == schema::ReclaimPolicy::DELETE;
    if (volume.getSource().which() != schema::Volume::Source::EMPTY || !drop) {
      out.setRetained(volume.getSource().which() == schema::Volume::Source::EMPTY);
      return;  // host paths belong to the operator; nothing to drop otherwise
    }
    fs::path dir = fs::path(pool_) / ns / name;
    fs::path file = dir / (volName + ".img");
    if (::unlink(file.c_str()) == 0) {
      out.setDeleted(true);
    } else if (errno != ENOENT) {
      throwErrno("removing " + file.string(), errno);
    }
    // Drop the VM's directory once its last volume is gone (ENOTEMPTY is fine).
    ::rmdir(dir.c_str());
  }

 private:
  std::string pool_;
};

}  // namespace

VMHOST_PLUGIN(LocalStorage, "local", "0.1.0", "Volumes as files in a pool directory on the node",
              VMHOST_CAP_STORAGE_RESIZE)
