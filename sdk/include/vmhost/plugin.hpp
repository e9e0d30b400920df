// vmhost plugin author layer: header-only C++ over the C ABI in plugin.h.
//
// Implement one of the kind interfaces below and export it with one macro:
//
//   class MyScheduler final : public vmhost::sdk::SchedulerPlugin {
//    public:
//     explicit MyScheduler(vmhost::sdk::PluginContext& ctx);
//     void schedule(vmhost::schema::ScheduleRequest::Reader request,
//                   vmhost::schema::ScheduleResult::Builder result) override;
//   };
//   VMHOST_PLUGIN(MyScheduler, "my-scheduler", "1.0.0", "Places VMs my way", 0)
//
// The layer negotiates the ABI version, decodes requests with bounded
// readers and reads every field of a request before the method runs (a
// request whose fields do not decode fails as INVALID_ARGUMENT), encodes
// responses as flat word arrays, and turns every exception
// into an error code at the boundary: throw vmhost::sdk::Error to choose the
// code; any other exception becomes VMHOST_ERR_INTERNAL. Nothing but the C
// types of plugin.h leaves the shared object.
//
// This header is compiled into the plugin with the plugin's own compiler;
// the host never sees these C++ types.
#pragma once

#include <vmhost/plugin.h>
#include <vmhost/schema/common.capnp.h>
#include <vmhost/schema/migration.capnp.h>
#include <vmhost/schema/network.capnp.h>
#include <vmhost/schema/scheduler.capnp.h>
#include <vmhost/schema/storage.capnp.h>

#include <capnp/any.h>
#include <capnp/dynamic.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace vmhost::sdk {

// Throw from a plugin method (or constructor) to fail the call with `code`.
class Error : public std::exception {
 public:
  Error(vmhost_status code, std::string message, bool retryable = false)
      : code_(code), message_(std::move(message)), retryable_(retryable) {}
  const char* what() const noexcept override { return message_.c_str(); }
  vmhost_status code() const noexcept { return code_; }
  bool retryable() const noexcept { return retryable_; }

 private:
  vmhost_status code_;
  std::string message_;
  bool retryable_;
};

// What an instance gets from the host. Lives as long as the instance.
class PluginContext {
 public:
  PluginContext(std::string config_json, const vmhost_host_callbacks* host)
      : config_json_(std::move(config_json)), host_(host) {}

  // The slot's `config` section as JSON text ("{}" when absent).
  std::string_view configJson() const { return config_json_; }

  // Logs through the host (its log format, its destination). Thread-safe.
  void log(vmhost_log_level level, std::string_view message) const {
    if (!hostHas(offsetof(vmhost_host_callbacks, log) + sizeof(host_->log)) ||
        host_->log == nullptr) {
      return;
    }
    std::string text(message);
    host_->log(host_->host_ctx, level, text.c_str());
  }

  // Reports progress of a long step of the current call (bytes `done` of
  // `total`, 0 when unknown) for the VM whose uid the request carries.
  // Thread-safe; a no-op on hosts that predate it. Cheap: the host
  // rate-limits, so call it as data arrives.
  void reportProgress(std::string_view vmUid, std::string_view what, uint64_t done,
                      uint64_t total) const {
    if (!hostHas(offsetof(vmhost_host_callbacks, report_progress) +
                 sizeof(host_->report_progress)) ||
        host_->report_progress == nullptr) {
      return;
    }
    std::string uid(vmUid), text(what);
    host_->report_progress(host_->host_ctx, uid.c_str(), text.c_str(), done, total);
  }

 private:
  // Whether the host's table is at least `size` bytes long (it may be an
  // older host's, shorter than this header's).
  bool hostHas(size_t size) const { return host_ != nullptr && host_->struct_size >= size; }

  std::string config_json_;
  const vmhost_host_callbacks* host_;  // borrowed; valid until destroy
};

namespace detail {

// Bounds for reading a request. The host is the caller, but a plugin still
// reads bytes from outside itself: never trust them.
inline capnp::ReaderOptions requestReaderOptions() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = size_t{64} * 1024 * 1024 / sizeof(capnp::word);  // 64 MiB
  options.nestingLimit = 64;
  return options;
}

// Strict field reading. Cap'n Proto reads lazily: a field that does not
// read as its type (a text without its NUL, a list where a struct belongs)
// throws only when a handler gets to it, maybe halfway through its work, and
// a handler that never reads it never notices. So every request is read
// whole before its handler runs, and such a request fails as
// INVALID_ARGUMENT naming the field, as `vmhost-plugin-check --strict`
// (check strict-decoding) expects of every plugin.
//
// The walk follows a plan worked out once per struct type from its schema
// (which pointer holds what, which union member it belongs to) and reads
// each pointer with the same typed accessor generated code uses. Walking
// through the dynamic API instead costs several times the rest of a call
// (resolving each field's type from the schema on every read).

// How to read one field of a struct type.
struct ReadPlan;
struct FieldRead {
  enum class Kind : uint8_t {
    Text,
    Data,
    Struct,
    Group,
    StructList,
    TextList,
    DataList,
    Primitives,
    Dynamic
  };
  Kind kind;
  capnp::schema::Type::Which element;  // Primitives: the element type
  uint16_t pointer;                    // index in the pointer section (not for groups)
  uint16_t discriminant;               // the union member it is, or NO_DISCRIMINANT
  const char* name;                    // schema data: static
  const ReadPlan* plan;                // Struct, Group, StructList
  capnp::StructSchema::Field field;    // Dynamic: read through the dynamic API
};

struct ReadPlan {
  capnp::StructSchema schema;
  bool hasUnion = false;
  uint32_t discriminantOffset = 0;  // in 16-bit units
  std::vector<FieldRead> fields;    // only those that hold pointers
};

// The plan of `schema`, built on first use and kept for the life of the
// plugin (plans of nested types are shared, recursive types handled).
inline const ReadPlan& readPlan(capnp::StructSchema schema) {
  static std::mutex mutex;
  static auto* plans = new std::map<uint64_t, std::unique_ptr<ReadPlan>>();  // never freed
  std::lock_guard<std::mutex> lock(mutex);
  struct Builder {
    std::map<uint64_t, std::unique_ptr<ReadPlan>>& plans;
    const ReadPlan& build(capnp::StructSchema s) {
      auto& slot = plans[s.getProto().getId()];
      if (slot) return *slot;
      slot = std::make_unique<ReadPlan>();
      ReadPlan& plan = *slot;  // in the map before its fields: a type may contain itself
      plan.schema = s;
      auto proto = s.getProto().getStruct();
      plan.hasUnion = proto.getDiscriminantCount() > 0;
      plan.discriminantOffset = proto.getDiscriminantOffset();
      for (auto field : s.getFields()) {
        auto fp = field.getProto();
        FieldRead f{FieldRead::Kind::Dynamic,
                    capnp::schema::Type::VOID,
                    0,
                    fp.getDiscriminantValue(),
                    fp.getName().cStr(),
                    nullptr,
                    field};
        using T = capnp::schema::Type;
        if (fp.isGroup()) {
          f.kind = FieldRead::Kind::Group;
          f.plan = &build(field.getType().asStruct());
          plan.fields.push_back(f);
          continue;
        }
        f.pointer = static_cast<uint16_t>(fp.getSlot().getOffset());
        auto type = field.getType();
        switch (type.which()) {
          case T::TEXT:
            f.kind = FieldRead::Kind::Text;
            break;
          case T::DATA:
            f.kind = FieldRead::Kind::Data;
            break;
          case T::STRUCT:
            f.kind = FieldRead::Kind::Struct;
            f.plan = &build(type.asStruct());
            break;
          case T::LIST: {
            auto element = type.asList().getElementType();
            switch (element.which()) {
              case T::STRUCT:
                f.kind = FieldRead::Kind::StructList;
                f.plan = &build(element.asStruct());
                break;
              case T::TEXT:
                f.kind = FieldRead::Kind::TextList;
                break;
              case T::DATA:
                f.kind = FieldRead::Kind::DataList;
                break;
              case T::LIST:
              case T::ANY_POINTER:
              case T::INTERFACE:
                f.kind = FieldRead::Kind::Dynamic;
                break;
              default:
                f.kind = FieldRead::Kind::Primitives;
                f.element = element.which();
                break;
            }
            break;
          }
          default:
            // Data-section fields always read (out of range is the default);
            // interfaces and AnyPointer have no type to check.
            continue;
        }
        plan.fields.push_back(f);
      }
      return plan;
    }
  };
  return Builder{*plans}.build(schema);
}

template <typename T>
const ReadPlan& readPlanOf() {
  static const ReadPlan& plan = readPlan(capnp::Schema::from<T>());
  return plan;
}

class FieldWalk {
 public:
  // Reads every pointer field of `s` as `plan` says; throws kj::Exception on
  // the first one that does not read, with path() naming it.
  void readStruct(capnp::AnyStruct::Reader s, const ReadPlan& plan) {
    uint16_t which = 0;
    if (plan.hasUnion) {
      auto data = s.getDataSection();
      size_t at = size_t{plan.discriminantOffset} * 2;
      if (at + 2 <= data.size()) which = static_cast<uint16_t>(data[at] | (data[at + 1] << 8));
    }
    auto pointers = s.getPointerSection();
    for (const auto& f : plan.fields) {
      if (f.discriminant != capnp::schema::Field::NO_DISCRIMINANT && f.discriminant != which) {
        continue;
      }
      push(f.name, 0);
      if (f.kind == FieldRead::Kind::Group) {
        readStruct(s, *f.plan);  // a group's fields live in the struct itself
      } else if (f.kind == FieldRead::Kind::Dynamic) {
        readValue(s.as<capnp::DynamicStruct>(plan.schema).get(f.field));
      } else if (f.pointer < pointers.size()) {  // else absent: the default
        readPointer(pointers[f.pointer], f);
      }
      pop();  // not on a throw: path() then names the failing field
    }
  }

  // "nodes[2].labels[0].key": where the walk stopped.
  std::string path() const {
    std::string out;
    for (size_t i = 0; i < std::min(depth_, kMaxDepth); ++i) {
      if (path_[i].name == nullptr) {
        out += "[" + std::to_string(path_[i].index) + "]";
      } else {
        if (!out.empty()) out += '.';
        out += path_[i].name;
      }
    }
    return depth_ > kMaxDepth ? out + "..." : out;
  }

 private:
  struct Part {
    const char* name;  // a field name, or nullptr for a list index
    uint32_t index;
  };
  static constexpr size_t kMaxDepth = 128;  // deeper parts are not named

  void push(const char* name, uint32_t index) {
    if (depth_ < kMaxDepth) path_[depth_] = Part{name, index};
    ++depth_;
  }
  void pop() { --depth_; }

  void readPointer(capnp::AnyPointer::Reader p, const FieldRead& f) {
    using T = capnp::schema::Type;
    switch (f.kind) {
      case FieldRead::Kind::Text:
        (void)p.getAs<capnp::Text>();
        break;
      case FieldRead::Kind::Data:
        (void)p.getAs<capnp::Data>();
        break;
      case FieldRead::Kind::Struct:
        readStruct(p.getAs<capnp::AnyStruct>(), *f.plan);
        break;
      case FieldRead::Kind::StructList: {
        // Any struct type reads a struct list the same way (the element
        // layout is checked against the list, not against the type).
        auto list = p.getAs<capnp::List<schema::VmRef>>();
        for (uint32_t i = 0; i < list.size(); ++i) {
          push(nullptr, i);
          readStruct(capnp::AnyStruct::Reader(list[i]), *f.plan);
          pop();
        }
        break;
      }
      case FieldRead::Kind::TextList:
        readEach(p.getAs<capnp::List<capnp::Text>>());
        break;
      case FieldRead::Kind::DataList:
        readEach(p.getAs<capnp::List<capnp::Data>>());
        break;
      case FieldRead::Kind::Primitives:
        switch (f.element) {
          case T::VOID:
            (void)p.getAs<capnp::List<capnp::Void>>();
            break;
          case T::BOOL:
            (void)p.getAs<capnp::List<bool>>();
            break;
          case T::INT8:
          case T::UINT8:
            (void)p.getAs<capnp::List<uint8_t>>();
            break;
          case T::INT16:
          case T::UINT16:
          case T::ENUM:
            (void)p.getAs<capnp::List<uint16_t>>();
            break;
          case T::INT32:
          case T::UINT32:
          case T::FLOAT32:
            (void)p.getAs<capnp::List<uint32_t>>();
            break;
          default:
            (void)p.getAs<capnp::List<uint64_t>>();
            break;
        }
        break;
      default:
        break;
    }
  }

  template <typename List>
  void readEach(List list) {
    for (uint32_t i = 0; i < list.size(); ++i) {
      push(nullptr, i);
      (void)list[i];  // reads (and checks) the element
      pop();
    }
  }

  // The dynamic API, for the rare field types the plan leaves to it (lists
  // of lists).
  void readValue(const capnp::DynamicValue::Reader& value) {
    switch (value.getType()) {
      case capnp::DynamicValue::STRUCT: {
        auto s = value.as<capnp::DynamicStruct>();
        readStruct(capnp::AnyStruct::Reader(s), readPlan(s.getSchema()));
        break;
      }
      case capnp::DynamicValue::LIST: {
        auto list = value.as<capnp::DynamicList>();
        auto element = list.getSchema().getElementType();
        if (!(element.isText() || element.isData() || element.isList() || element.isStruct())) {
          break;
        }
        for (uint32_t i = 0; i < list.size(); ++i) {
          push(nullptr, i);
          readValue(list[i]);
          pop();
        }
        break;
      }
      default:
        break;
    }
  }

  Part path_[kMaxDepth];
  size_t depth_ = 0;
};

class Request {
 public:
  Request(const uint8_t* data, size_t size) {
    if (data == nullptr || size == 0 || size % sizeof(capnp::word) != 0) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT, "request is not a Cap'n Proto flat array (size " +
                                                   std::to_string(size) +
                                                   " is not a positive multiple of 8)");
    }
    kj::ArrayPtr<const capnp::word> words;
    if (reinterpret_cast<uintptr_t>(data) % alignof(capnp::word) == 0) {
      words = kj::arrayPtr(reinterpret_cast<const capnp::word*>(data), size / sizeof(capnp::word));
    } else {
      copy_ = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
      std::memcpy(copy_.begin(), data, size);
      words = copy_.asPtr();
    }
    try {
      reader_.emplace(words, requestReaderOptions());
    } catch (const kj::Exception& e) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                  std::string("malformed request: ") + e.getDescription().cStr());
    }
  }

  // Decodes and validates the whole message up front, so that a malformed
  // request fails here as INVALID_ARGUMENT instead of inside the handler:
  // first its structure (every pointer, within the limits), then every
  // field against its type (FieldWalk).
  template <typename T>
  typename T::Reader root() {
    typename T::Reader root;
    try {
      root = reader_->getRoot<T>();
      (void)root.totalSize();
    } catch (const kj::Exception& e) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                  std::string("malformed request: ") + e.getDescription().cStr());
    }
    FieldWalk walk;
    try {
      walk.readStruct(capnp::AnyStruct::Reader(root), readPlanOf<T>());
    } catch (const kj::Exception& e) {
      throw Error(VMHOST_ERR_INVALID_ARGUMENT,
                  "malformed request: field " + walk.path() + ": " + e.getDescription().cStr());
    }
    return root;
  }

 private:
  kj::Array<capnp::word> copy_;
  std::optional<capnp::FlatArrayMessageReader> reader_;
};

// The message a method writes its response into; small first segment so a
// small response costs one small allocation.
class Response {
 public:
  Response() : builder_(128) {}
  capnp::MessageBuilder& builder() { return builder_; }

 private:
  capnp::MallocMessageBuilder builder_;
};

}  // namespace detail

// Each kind's interface. `dispatch` maps method ids onto the virtual methods;
// a plugin overrides the methods, not dispatch.
class PluginBase {
 public:
  virtual ~PluginBase() = default;
  // Returns false for a method this kind does not have.
  virtual bool dispatch(uint32_t method, detail::Request& in, detail::Response& out) = 0;
};

class SchedulerPlugin : public PluginBase {
 public:
  static constexpr vmhost_plugin_kind kKind = VMHOST_KIND_SCHEDULER;
  virtual void schedule(schema::ScheduleRequest::Reader request,
                        schema::ScheduleResult::Builder result) = 0;

  bool dispatch(uint32_t method, detail::Request& in, detail::Response& out) final {
    if (method != VMHOST_METHOD_SCHEDULER_SCHEDULE) return false;
    auto request = in.root<schema::ScheduleRequest>();
    schedule(request, out.builder().initRoot<schema::ScheduleResult>());
    return true;
  }
};

class StoragePlugin : public PluginBase {
 public:
  static constexpr vmhost_plugin_kind kKind = VMHOST_KIND_STORAGE;
  virtual void prepare(schema::VolumeRequest::Reader request,
                       schema::VolumeAttachment::Builder attachment) = 0;
  virtual void release(schema::VolumeRelease::Reader request,
                       schema::VolumeReleased::Builder released) = 0;

  bool dispatch(uint32_t method, detail::Request& in, detail::Response& out) final {
    switch (method) {
      case VMHOST_METHOD_STORAGE_PREPARE: {
        auto request = in.root<schema::VolumeRequest>();
        prepare(request, out.builder().initRoot<schema::VolumeAttachment>());
        return true;
      }
      case VMHOST_METHOD_STORAGE_RELEASE: {
        auto request = in.root<schema::VolumeRelease>();
        release(request, out.builder().initRoot<schema::VolumeReleased>());
        return true;
      }
      default:
        return false;
    }
  }
};

class NetworkPlugin : public PluginBase {
 public:
  static constexpr vmhost_plugin_kind kKind = VMHOST_KIND_NETWORK;
  virtual void attach(schema::InterfaceRequest::Reader request,
                      schema::InterfaceAttachment::Builder attachment) = 0;
  virtual void detach(schema::InterfaceRelease::Reader request,
                      schema::InterfaceReleased::Builder released) = 0;

  bool dispatch(uint32_t method, detail::Request& in, detail::Response& out) final {
    switch (method) {
      case VMHOST_METHOD_NETWORK_ATTACH: {
        auto request = in.root<schema::InterfaceRequest>();
        attach(request, out.builder().initRoot<schema::InterfaceAttachment>());
        return true;
      }
      case VMHOST_METHOD_NETWORK_DETACH: {
        auto request = in.root<schema::InterfaceRelease>();
        detach(request, out.builder().initRoot<schema::InterfaceReleased>());
        return true;
      }
      default:
        return false;
    }
  }
};

class MigrationPlugin : public PluginBase {
 public:
  static constexpr vmhost_plugin_kind kKind = VMHOST_KIND_MIGRATION;
  virtual void plan(schema::MigrationRequest::Reader request,
                    schema::MigrationPlan::Builder plan) = 0;
  virtual void onProgress(schema::MigrationProgress::Reader progress,
                          schema::MigrationDecision::Builder decision) = 0;

  bool dispatch(uint32_t method, detail::Request& in, detail::Response& out) final {
    switch (method) {
      case VMHOST_METHOD_MIGRATION_PLAN: {
        auto request = in.root<schema::MigrationRequest>();
        plan(request, out.builder().initRoot<schema::MigrationPlan>());
        return true;
      }
      case VMHOST_METHOD_MIGRATION_PROGRESS: {
        auto request = in.root<schema::MigrationProgress>();
        onProgress(request, out.builder().initRoot<schema::MigrationDecision>());
        return true;
      }
      default:
        return false;
    }
  }
};

namespace detail {

// The length of the valid UTF-8 sequence starting at s[i] (0 if invalid).
inline size_t utf8SequenceLength(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  }
  return len;
}

// Fills the host's error struct. The message is truncated to fit at a
// character boundary and invalid UTF-8 (plugins quote raw input) becomes
// '?', so the host always gets valid, NUL-terminated UTF-8.
inline int32_t fail(vmhost_error* err, int32_t code, std::string_view message,
                    bool retryable = false) {
  if (err != nullptr) {
    err->code = code;
    err->retryable = retryable ? 1 : 0;
    size_t out = 0;
    const size_t cap = sizeof(err->message) - 1;
    for (size_t i = 0; i < message.size();) {
      size_t len = utf8SequenceLength(message, i);
      if (len == 0) {
        if (out + 1 > cap) break;
        err->message[out++] = '?';
        ++i;
        continue;
      }
      if (out + len > cap) break;
      std::memcpy(err->message + out, message.data() + i, len);
      out += len;
      i += len;
    }
    err->message[out] = '\0';
  }
  return code;
}

// Runs `fn`, converting every exception into an error code.
template <typename Fn>
int32_t contain(vmhost_error* err, Fn&& fn) noexcept {
  try {
    return fn();
  } catch (const Error& e) {
    return fail(err, e.code(), e.what(), e.retryable());
  } catch (const kj::Exception& e) {
    // Cap'n Proto reads lazily: a field of the wrong pointer kind surfaces
    // only when the method reads it, from capnp's layout code. That is bad
    // input, not a plugin fault.
    std::string_view file = e.getFile() != nullptr ? e.getFile() : "";
    if (file.find("capnp/layout") != std::string_view::npos ||
        file.find("capnp/arena") != std::string_view::npos) {
      return fail(err, VMHOST_ERR_INVALID_ARGUMENT,
                  std::string("malformed request: ") + e.getDescription().cStr());
    }
    return fail(err, VMHOST_ERR_INTERNAL, e.getDescription().cStr(),
                e.getType() == kj::Exception::Type::OVERLOADED ||
                    e.getType() == kj::Exception::Type::DISCONNECTED);
  } catch (const std::bad_alloc&) {
    return fail(err, VMHOST_ERR_RESOURCE_EXHAUSTED, "out of memory", true);
  } catch (const std::exception& e) {
    return fail(err, VMHOST_ERR_INTERNAL, e.what());
  } catch (...) {
    return fail(err, VMHOST_ERR_INTERNAL, "unknown exception");
  }
}

}  // namespace detail
}  // namespace vmhost::sdk

// The instance behind the opaque C handle. One definition per plugin shared
// object (symbols are hidden, so plugins never see each other's).
struct vmhost_instance {
  vmhost::sdk::PluginContext context;
  std::unique_ptr<vmhost::sdk::PluginBase> plugin;
};

namespace vmhost::sdk::detail {

template <typename Plugin>
int32_t create(const uint8_t* config, size_t config_size, const vmhost_host_callbacks* host,
               vmhost_instance** out, vmhost_error* err) noexcept {
  if (out == nullptr) return fail(err, VMHOST_ERR_INVALID_ARGUMENT, "create: out is NULL");
  *out = nullptr;
  return contain(err, [&]() -> int32_t {
    std::string json = config_size == 0 || config == nullptr
                           ? std::string("{}")
                           : std::string(reinterpret_cast<const char*>(config), config_size);
    auto instance = std::unique_ptr<vmhost_instance>(
        new vmhost_instance{PluginContext(std::move(json), host), nullptr});
    instance->plugin = std::make_unique<Plugin>(instance->context);
    *out = instance.release();
    return VMHOST_OK;
  });
}

inline void destroy(vmhost_instance* instance) noexcept {
  try {
    delete instance;
  } catch (...) {
    // A destructor that throws has nowhere to report to; never cross the ABI.
  }
}

inline int32_t invoke(vmhost_instance* instance, uint32_t method, const uint8_t* request,
                      size_t request_size, vmhost_buffer* response, vmhost_error* err) noexcept {
  if (response == nullptr)
    return fail(err, VMHOST_ERR_INVALID_ARGUMENT, "invoke: response is NULL");
  *response = vmhost_buffer{nullptr, 0, nullptr};
  if (instance == nullptr)
    return fail(err, VMHOST_ERR_INVALID_ARGUMENT, "invoke: instance is NULL");
  return contain(err, [&]() -> int32_t {
    Response out;
    Request in(request, request_size);
    if (!instance->plugin->dispatch(method, in, out)) {
      return fail(err, VMHOST_ERR_UNIMPLEMENTED,
                  "method " + std::to_string(method) + " is not implemented by this plugin");
    }
    auto words = std::make_unique<kj::Array<capnp::word>>(capnp::messageToFlatArray(out.builder()));
    response->data = reinterpret_cast<const uint8_t*>(words->begin());
    response->size = words->size() * sizeof(capnp::word);
    response->opaque = words.release();
    return VMHOST_OK;
  });
}

inline void release(vmhost_instance*, vmhost_buffer* buffer) noexcept {
  if (buffer == nullptr) return;
  delete static_cast<kj::Array<capnp::word>*>(buffer->opaque);
  *buffer = vmhost_buffer{nullptr, 0, nullptr};
}

// The plugin supports every ABI version from 1 to the one its header names.
template <typename Plugin>
const vmhost_plugin_descriptor* entry(vmhost_negotiation* n, vmhost_plugin_descriptor* d) noexcept {
  if (n == nullptr || n->struct_size < sizeof(vmhost_negotiation)) return nullptr;
  n->plugin_abi_min = VMHOST_ABI_VERSION_MIN;
  n->plugin_abi_max = VMHOST_ABI_VERSION;
  n->abi_version = 0;
  uint32_t low = std::max(n->host_abi_min, n->plugin_abi_min);
  uint32_t high = std::min(n->host_abi_max, n->plugin_abi_max);
  if (low > high) return nullptr;
  n->abi_version = high;
  d->abi_version = high;
  return d;
}

}  // namespace vmhost::sdk::detail

// Exports CLASS as this shared object's plugin. CLASS derives from one of
// SchedulerPlugin, StoragePlugin, NetworkPlugin, MigrationPlugin and has a
// constructor taking vmhost::sdk::PluginContext&. NAME, VERSION and
// DESCRIPTION are string literals; CAPS is a VMHOST_CAP_* mask.
//
// The entry is declared before it is defined so that the macro compiles
// cleanly under -Wmissing-prototypes (clang) and -Wmissing-declarations.
#define VMHOST_PLUGIN(CLASS, NAME, VERSION, DESCRIPTION, CAPS)                         \
  static_assert(std::is_base_of_v<::vmhost::sdk::PluginBase, CLASS>,                   \
                #CLASS " must derive from a vmhost::sdk plugin interface");            \
  extern "C" VMHOST_PLUGIN_EXPORT const vmhost_plugin_descriptor* vmhost_plugin_entry( \
      vmhost_negotiation* negotiation);                                                \
  extern "C" VMHOST_PLUGIN_EXPORT const vmhost_plugin_descriptor* vmhost_plugin_entry( \
      vmhost_negotiation* negotiation) {                                               \
    static vmhost_plugin_descriptor descriptor = {                                     \
        sizeof(vmhost_plugin_descriptor),                                              \
        0,                                                                             \
        CLASS::kKind,                                                                  \
        0,                                                                             \
        NAME,                                                                          \
        VERSION,                                                                       \
        DESCRIPTION,                                                                   \
        (CAPS),                                                                        \
        &::vmhost::sdk::detail::create<CLASS>,                                         \
        &::vmhost::sdk::detail::destroy,                                               \
        &::vmhost::sdk::detail::invoke,                                                \
        &::vmhost::sdk::detail::release,                                               \
    };                                                                                 \
    return ::vmhost::sdk::detail::entry<CLASS>(negotiation, &descriptor);              \
  }
