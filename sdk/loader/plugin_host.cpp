#include <vmhost/loader/plugin_host.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <system_error>

namespace vmhost {
namespace {

// Every library ever loaded, by canonical path. The handles are never
// dlclose()d: see PluginLibrary.
std::mutex& registryMutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, void*>& registry() {
  static auto* libs = new std::map<std::string, void*>();
  return *libs;
}

Error loadError(const std::string& path, const std::string& cause) {
  return Error{VMHOST_ERR_FAILED_PRECONDITION, path + ": " + cause, false};
}

bool isElf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic,
                                         "\x7f"
                                         "ELF",
                                         4) == 0;
}

bool validName(const char* name) {
  if (name == nullptr || *name == '\0' || std::strlen(name) > 63) return false;
  for (const char* p = name; *p; ++p) {
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) return false;
  }
  return true;
}

void hostLog(void* ctx, int32_t level, const char* message) {
  const auto* info = &static_cast<const PluginInstance*>(ctx)->info();
  static const char* names[] = {"debug", "info", "warning", "error"};
  const char* lvl = level >= 0 && level <= 3 ? names[level] : "info";
  std::fprintf(stderr, "%s plugin %s: %s: %s\n", kindName(info->kind).c_str(), info->name.c_str(),
               lvl, message != nullptr ? message : "");
}

}  // namespace

void PluginInstance::hostProgress(void* ctx, const char* vmUid, const char* what, uint64_t done,
                                  uint64_t total) {
  auto* self = static_cast<PluginInstance*>(ctx);
  ProgressHandler handler;
  {
    std::lock_guard lock(self->progressMu_);
    handler = self->progress_;
  }
  if (handler) {
    handler(vmUid != nullptr ? vmUid : "", what != nullptr ? what : "", done, total);
  }
}

void PluginInstance::setProgressHandler(ProgressHandler handler) {
  std::lock_guard lock(progressMu_);
  progress_ = std::move(handler);
}

std::string kindName(int32_t kind) {
  switch (kind) {
    case VMHOST_KIND_SCHEDULER:
      return "scheduler";
    case VMHOST_KIND_STORAGE:
      return "storage";
    case VMHOST_KIND_NETWORK:
      return "network";
    case VMHOST_KIND_MIGRATION:
      return "migration";
    default:
      return "invalid(" + std::to_string(kind) + ")";
  }
}

std::optional<vmhost_plugin_kind> parseKind(std::string_view name) {
  if (name == "scheduler") return VMHOST_KIND_SCHEDULER;
  if (name == "storage") return VMHOST_KIND_STORAGE;
  if (name == "network") return VMHOST_KIND_NETWORK;
  if (name == "migration") return VMHOST_KIND_MIGRATION;
  return std::nullopt;
}

std::string capabilityNames(int32_t kind, uint64_t caps) {
  std::string out;
  auto add = [&](uint64_t bit, const char* name) {
    if (caps & bit) {
      if (!out.empty()) out += ",";
      out += name;
      caps &= ~bit;
    }
  };
  add(VMHOST_CAP_THREAD_SAFE, "thread-safe");
  switch (kind) {
    case VMHOST_KIND_SCHEDULER:
      add(VMHOST_CAP_SCHEDULER_NODE_CACHE, "node-cache");
      break;
    case VMHOST_KIND_STORAGE:
      add(VMHOST_CAP_STORAGE_SHARED, "shared");
      add(VMHOST_CAP_STORAGE_RESIZE, "resize");
      break;
    case VMHOST_KIND_NETWORK:
      add(VMHOST_CAP_NETWORK_HOTPLUG, "hotplug");
      break;
    case VMHOST_KIND_MIGRATION:
      add(VMHOST_CAP_MIGRATION_POSTCOPY, "post-copy");
      break;
    default:
      break;
  }
  for (int bit = 0; bit < 64; ++bit) {
    if (caps & (1ull << bit)) {
      if (!out.empty()) out += ",";
      out += "bit" + std::to_string(bit);
    }
  }
  return out.empty() ? "none" : out;
}

Result<std::shared_ptr<const PluginLibrary>> PluginLibrary::open(const std::string& path,
                                                                 AbiRange host) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return loadError(path, "plugin file not found");
  if (std::filesystem::is_directory(path, ec))
    return loadError(path, "is a directory, not a plugin file");
  if (!isElf(path)) return loadError(path, "not a shared object (no ELF header)");

  std::string canonical = std::filesystem::weakly_canonical(path, ec).string();
  if (ec) canonical = path;
  const vmhost_plugin_descriptor* descriptor = nullptr;
  vmhost_negotiation n{};
  {
    std::lock_guard<std::mutex> lock(registryMutex());
    auto it = registry().find(canonical);
    if (it == registry().end()) {
      // RTLD_LOCAL: two plugins may define the same symbols (their own copies
      // of the SDK schemas); RTLD_NOW: a missing symbol fails here, not mid-call.
      void* handle = ::dlopen(canonical.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle == nullptr) {
        // dlerror() names the cause: a missing dependency, a wrong architecture...
        const char* why = ::dlerror();
        return loadError(path, std::string("cannot load shared object: ") +
                                   (why != nullptr ? why : "unknown dlopen error"));
      }
      it = registry().emplace(canonical, handle).first;
    }
    (void)::dlerror();
    void* symbol = ::dlsym(it->second, VMHOST_PLUGIN_ENTRY_SYMBOL);
    if (symbol == nullptr) {
      return loadError(path, std::string("no entry symbol '") + VMHOST_PLUGIN_ENTRY_SYMBOL +
                                 "' (not a vmhost plugin)");
    }
    auto entry = reinterpret_cast<vmhost_plugin_entry_fn>(symbol);
    n.struct_size = sizeof(n);
    n.host_abi_min = host.min;
    n.host_abi_max = host.max;
    descriptor = entry(&n);
  }
  auto range = [](uint32_t a, uint32_t b) {
    return a == b ? std::to_string(a) : std::to_string(a) + ".." + std::to_string(b);
  };
  if (descriptor == nullptr) {
    return loadError(path, "ABI out of range: plugin supports ABI " +
                               range(n.plugin_abi_min, n.plugin_abi_max) + ", host supports ABI " +
                               range(host.min, host.max));
  }
  if (n.abi_version < host.min || n.abi_version > host.max ||
      descriptor->abi_version != n.abi_version) {
    return loadError(path, "ABI negotiation failed: plugin chose version " +
                               std::to_string(n.abi_version) + ", host supports " +
                               range(host.min, host.max));
  }
  if (descriptor->struct_size < sizeof(vmhost_plugin_descriptor) ||
      descriptor->create_fn == nullptr || descriptor->destroy_fn == nullptr ||
      descriptor->invoke_fn == nullptr || descriptor->release_fn == nullptr) {
    return loadError(path, "invalid descriptor: missing functions or struct_size too small");
  }
  if (descriptor->kind < VMHOST_KIND_SCHEDULER || descriptor->kind > VMHOST_KIND_MIGRATION) {
    return loadError(path, "invalid descriptor: unknown kind " + std::to_string(descriptor->kind));
  }
  if (!validName(descriptor->name)) {
    return loadError(path, "invalid descriptor: name must match [a-z0-9-]{1,63}");
  }
  PluginInfo info;
  info.path = canonical;
  info.kind = descriptor->kind;
  info.name = descriptor->name;
  info.version = descriptor->version != nullptr ? descriptor->version : "";
  info.description = descriptor->description != nullptr ? descriptor->description : "";
  info.capabilities = descriptor->capabilities;
  info.abiMin = n.plugin_abi_min;
  info.abiMax = n.plugin_abi_max;
  info.abiVersion = n.abi_version;
  return std::shared_ptr<const PluginLibrary>(new PluginLibrary(std::move(info), descriptor));
}

PluginInstance::PluginInstance(std::shared_ptr<const PluginLibrary> library,
                               vmhost_instance* instance, ResponseLimits limits)
    : library_(std::move(library)),
      instance_(instance),
      limits_(limits),
      threadSafe_((library_->info().capabilities & VMHOST_CAP_THREAD_SAFE) != 0),
      callbacks_{sizeof(vmhost_host_callbacks), this, &hostLog, &PluginInstance::hostProgress} {}

PluginInstance::~PluginInstance() {
  if (instance_ != nullptr) library_->descriptor().destroy_fn(instance_);
}

Result<std::unique_ptr<PluginInstance>> PluginInstance::create(
    std::shared_ptr<const PluginLibrary> library, std::string_view configJson,
    ResponseLimits limits) {
  const PluginInfo& info = library->info();
  const auto& d = library->descriptor();
  std::unique_ptr<PluginInstance> self(new PluginInstance(library, nullptr, limits));
  vmhost_instance* instance = nullptr;
  vmhost_error err{};
  int32_t rc;
  try {
    rc = d.create_fn(reinterpret_cast<const uint8_t*>(configJson.data()), configJson.size(),
                     &self->callbacks_, &instance, &err);
  } catch (...) {
    rc = VMHOST_ERR_INTERNAL;
    instance = nullptr;
    std::snprintf(err.message, sizeof(err.message),
                  "exception escaped the plugin ABI boundary (a plugin bug)");
  }
  if (rc != VMHOST_OK || instance == nullptr) {
    err.message[sizeof(err.message) - 1] = '\0';
    if (instance != nullptr) d.destroy_fn(instance);
    int32_t code = rc != VMHOST_OK ? rc : VMHOST_ERR_INTERNAL;
    std::string msg = err.message[0] != '\0' ? err.message : "(no message)";
    if (rc == VMHOST_OK) msg = "create returned OK without an instance";
    return Error{static_cast<vmhost_status>(code), createFailurePrefix(info, code) + msg,
                 err.retryable != 0};
  }
  self->instance_ = instance;
  return self;
}

std::string PluginInstance::createFailurePrefix(const PluginInfo& info, int32_t code) {
  return "plugin '" + info.name + "' (" + kindName(info.kind) +
         "): create failed: " + statusName(code) + ": ";
}

Error PluginInstance::malformed(const std::string& why, uint32_t method) const {
  return Error{VMHOST_ERR_INTERNAL,
               kindName(info().kind) + " plugin '" + info().name +
                   "' returned a malformed response to method " + std::to_string(method) + ": " +
                   why,
               false};
}

Result<std::shared_ptr<PluginInstance::Raw>> PluginInstance::invokeRaw(
    uint32_t method, kj::ArrayPtr<const capnp::word> request) {
  const auto& d = library_->descriptor();
  vmhost_buffer buffer{nullptr, 0, nullptr};
  vmhost_error err{};
  int32_t rc;
  {
    std::unique_lock<std::mutex> lock(mutex_, std::defer_lock);
    if (!threadSafe_) lock.lock();
    try {
      rc = d.invoke_fn(instance_, method, reinterpret_cast<const uint8_t*>(request.begin()),
                       request.size() * sizeof(capnp::word), &buffer, &err);
    } catch (...) {
      // An exception must never cross the C boundary; when a plugin breaks
      // that rule anyway (same toolchain, so it unwinds), contain it here.
      rc = VMHOST_ERR_INTERNAL;
      buffer = vmhost_buffer{nullptr, 0, nullptr};
      std::snprintf(err.message, sizeof(err.message),
                    "exception escaped the plugin ABI boundary (a plugin bug)");
    }
  }
  if (rc != VMHOST_OK) {
    d.release_fn(instance_, &buffer);  // safe on a zeroed buffer; frees a stray one
    err.message[sizeof(err.message) - 1] = '\0';
    int32_t code =
        rc >= VMHOST_ERR_CANCELLED && rc <= VMHOST_ERR_DATA_LOSS ? rc : VMHOST_ERR_UNKNOWN;
    return Error{static_cast<vmhost_status>(code),
                 kindName(info().kind) + " plugin '" + info().name +
                     "': " + (err.message[0] != '\0' ? err.message : "(no message)"),
                 err.retryable != 0};
  }
  auto refuse = [&](const std::string& why) {
    d.release_fn(instance_, &buffer);
    return malformed(why, method);
  };
  if (buffer.data == nullptr || buffer.size == 0) return refuse("empty buffer");
  if (buffer.size % sizeof(capnp::word) != 0) {
    return refuse("size " + std::to_string(buffer.size) + " is not a multiple of 8");
  }
  if (buffer.size > limits_.maxBytes) {
    return refuse("size " + std::to_string(buffer.size) + " exceeds the limit of " +
                  std::to_string(limits_.maxBytes) + " bytes");
  }
  kj::Array<capnp::word> copy;
  kj::ArrayPtr<const capnp::word> words;
  if (reinterpret_cast<uintptr_t>(buffer.data) % alignof(capnp::word) != 0) {
    copy = kj::heapArray<capnp::word>(buffer.size / sizeof(capnp::word));
    std::memcpy(copy.begin(), buffer.data, buffer.size);
    words = copy.asPtr();
  } else {
    words = kj::arrayPtr(reinterpret_cast<const capnp::word*>(buffer.data),
                         buffer.size / sizeof(capnp::word));
  }
  capnp::ReaderOptions options;
  options.traversalLimitInWords = limits_.traversalLimitWords;
  options.nestingLimit = limits_.nestingLimit;
  try {
    return std::make_shared<Raw>(&d, instance_, buffer, kj::mv(copy), words, options);
  } catch (const kj::Exception& e) {
    return refuse(e.getDescription().cStr());
  }
}

}  // namespace vmhost
