// The host side of the plugin ABI: loading shared objects, negotiating the
// ABI, creating instances and calling them with bounded decoding of whatever
// they return. A plugin's failure is an Error for that call only.
//
// The one plugin loader: vmhost's processes and the conformance kit
// (vmhost-plugin-check) both link it, so the kit judges a plugin by the code
// that will load it. It lives in sdk/ so that the kit builds from sdk/ alone.
#pragma once

#include <vmhost/loader/result.h>

#include <vmhost/plugin.h>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace vmhost {

// "scheduler", "storage", "network", "migration"; "invalid(N)" otherwise.
std::string kindName(int32_t kind);
std::optional<vmhost_plugin_kind> parseKind(std::string_view name);
// Comma-separated names of the capability bits, e.g. "thread-safe,shared".
std::string capabilityNames(int32_t kind, uint64_t capabilities);

struct AbiRange {
  uint32_t min = VMHOST_ABI_VERSION_MIN;
  uint32_t max = VMHOST_ABI_VERSION;
};

struct PluginInfo {
  std::string path;
  int32_t kind = VMHOST_KIND_INVALID;
  std::string name;
  std::string version;
  std::string description;
  uint64_t capabilities = 0;
  uint32_t abiMin = 0;  // what the plugin supports
  uint32_t abiMax = 0;
  uint32_t abiVersion = 0;  // what was negotiated
};

// A plugin shared object, loaded and negotiated. The shared object stays
// mapped for the life of the process, whatever happens to this handle:
// unloading code that may still have threads, atexit handlers or TLS
// destructors registered is where plugin hosts crash.
class PluginLibrary {
 public:
  // Loads `path` and negotiates within `host`. Errors are one line naming
  // the file and the cause.
  static Result<std::shared_ptr<const PluginLibrary>> open(const std::string& path,
                                                           AbiRange host = {});

  const PluginInfo& info() const { return info_; }
  const vmhost_plugin_descriptor& descriptor() const { return *descriptor_; }

 private:
  PluginLibrary(PluginInfo info, const vmhost_plugin_descriptor* descriptor)
      : info_(std::move(info)), descriptor_(descriptor) {}
  PluginInfo info_;
  const vmhost_plugin_descriptor* descriptor_;  // owned by the plugin; static
};

// Bounds on what the host accepts from a plugin.
struct ResponseLimits {
  size_t maxBytes = 64u << 20;               // a larger response is refused
  uint64_t traversalLimitWords = 16u << 20;  // 128 MiB of traversal
  int nestingLimit = 64;
};

class PluginInstance;

// A response owned by the host until destroyed, then handed back to the
// plugin's release function. Must not outlive its PluginInstance.
template <typename T>
class Reply {
 public:
  typename T::Reader get() const { return root_; }

 private:
  friend class PluginInstance;
  Reply(std::shared_ptr<void> buffer, typename T::Reader root)
      : buffer_(std::move(buffer)), root_(root) {}
  std::shared_ptr<void> buffer_;  // the plugin's buffer, released on last copy
  typename T::Reader root_;
};

class PluginInstance {
 public:
  // Creates an instance with `configJson` (the slot's config section). A
  // failure's message is createFailurePrefix() followed by the plugin's own
  // message (e.g. "config: unknown key ...").
  static Result<std::unique_ptr<PluginInstance>> create(
      std::shared_ptr<const PluginLibrary> library, std::string_view configJson,
      ResponseLimits limits = {});
  // "plugin 'local' (storage): create failed: INVALID_ARGUMENT: ". A caller
  // that names the plugin itself (the config loader names the slot and the
  // plugin) strips it to show the plugin's message under its own prefix.
  static std::string createFailurePrefix(const PluginInfo& info, int32_t code);
  ~PluginInstance();
  PluginInstance(const PluginInstance&) = delete;
  PluginInstance& operator=(const PluginInstance&) = delete;

  const PluginInfo& info() const { return library_->info(); }

  // Called after every call() with the method, the status code (VMHOST_OK
  // or the error's) and the call's duration, e.g. to feed a latency
  // histogram. Set it before the instance is shared between threads.
  using CallObserver =
      std::function<void(const PluginInfo&, uint32_t method, int32_t code, double seconds)>;
  void setObserver(CallObserver observer) { observer_ = std::move(observer); }

  // Receives the plugin's progress reports (vmhost_host_callbacks.
  // report_progress): the VM's uid, what is in progress, bytes done and
  // total (0: unknown). Called on whatever thread the plugin reports from;
  // the handler rate-limits. Replaceable at any time.
  using ProgressHandler = std::function<void(const std::string& vmUid, const std::string& what,
                                             uint64_t done, uint64_t total)>;
  void setProgressHandler(ProgressHandler handler);

  // Calls `method` with `request`, expecting a response of type T. Any
  // failure of the plugin (an error, an exception it contained, a
  // malformed or oversized response) is an Error for this call only.
  template <typename T>
  Result<Reply<T>> call(uint32_t method, capnp::MessageBuilder& request) {
    auto words = capnp::messageToFlatArray(request);
    return call<T>(method, words.asPtr());
  }

  template <typename T>
  Result<Reply<T>> call(uint32_t method, kj::ArrayPtr<const capnp::word> request);

 private:
  struct Raw;
  PluginInstance(std::shared_ptr<const PluginLibrary> library, vmhost_instance* instance,
                 ResponseLimits limits);
  Result<std::shared_ptr<Raw>> invokeRaw(uint32_t method, kj::ArrayPtr<const capnp::word> request);
  Error malformed(const std::string& why, uint32_t method) const;

  std::shared_ptr<const PluginLibrary> library_;
  vmhost_instance* instance_;  // owned; destroyed through the descriptor
  ResponseLimits limits_;
  bool threadSafe_;
  std::mutex mutex_;                 // serializes calls unless the plugin is VMHOST_CAP_THREAD_SAFE
  vmhost_host_callbacks callbacks_;  // lent to the plugin until destroy
  CallObserver observer_;
  static void hostProgress(void* ctx, const char* vmUid, const char* what, uint64_t done,
                           uint64_t total);
  std::mutex progressMu_;
  ProgressHandler progress_;
};

// The decoded response buffer of one call (defined here so that call<T> can
// be a template).
struct PluginInstance::Raw {
  Raw(const vmhost_plugin_descriptor* d, vmhost_instance* i, vmhost_buffer b,
      kj::Array<capnp::word> copy, kj::ArrayPtr<const capnp::word> words,
      const capnp::ReaderOptions& options)
      : descriptor(d), instance(i), buffer(b), copy(kj::mv(copy)), reader(words, options) {}
  ~Raw() { descriptor->release_fn(instance, &buffer); }
  const vmhost_plugin_descriptor* descriptor;
  vmhost_instance* instance;
  vmhost_buffer buffer;
  kj::Array<capnp::word> copy;  // when the plugin's buffer was not aligned
  capnp::FlatArrayMessageReader reader;
};

template <typename T>
Result<Reply<T>> PluginInstance::call(uint32_t method, kj::ArrayPtr<const capnp::word> request) {
  auto started = std::chrono::steady_clock::now();
  auto decoded = [&]() -> Result<Reply<T>> {
    auto raw = invokeRaw(method, request);
    if (!raw.ok()) return raw.error();
    std::shared_ptr<Raw> owned = std::move(raw.value());
    try {
      auto root = owned->reader.template getRoot<T>();
      (void)root.totalSize();  // validates every pointer within the limits
      return Reply<T>(std::move(owned), root);
    } catch (const kj::Exception& e) {
      return malformed(e.getDescription().cStr(), method);
    }
  }();
  if (observer_) {
    observer_(info(), method, decoded.ok() ? VMHOST_OK : decoded.error().code,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  return decoded;
}

}  // namespace vmhost
