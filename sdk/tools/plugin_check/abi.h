// The kit's view of a plugin: the raw C ABI of <vmhost/plugin.h>, called
// directly (no host loader in between) so that every check controls exactly
// what the plugin receives and sees exactly what it returns.
#pragma once

#include <vmhost/plugin.h>

#include <capnp/dynamic.h>
#include <capnp/serialize.h>

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace vmhost::plugincheck {

// A check fails by throwing this; what() is the reason printed after
// "FAIL <check>: ".
class Failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& reason);
inline void require(bool ok, const std::string& reason) {
  if (!ok) fail(reason);
}

// Plugin log lines go to stderr when set (--verbose); dropped otherwise.
void setVerbose(bool verbose);

// "INVALID_ARGUMENT", or "code 77" for a value that is not a vmhost_status.
std::string statusText(int32_t code);

// Request bytes at a chosen distance from an 8-byte boundary, or NULL.
class Bytes {
 public:
  Bytes() = default;  // NULL, size 0
  static Bytes of(const void* data, size_t size, size_t misalign = 0);
  static Bytes of(kj::ArrayPtr<const capnp::word> words, size_t misalign = 0);
  static Bytes of(std::span<const uint8_t> bytes, size_t misalign = 0) {
    return of(bytes.data(), bytes.size(), misalign);
  }

  const uint8_t* data() const;
  size_t size() const { return size_; }
  bool isNull() const { return null_; }
  std::span<const uint8_t> span() const { return {data(), size_}; }

 private:
  std::vector<uint64_t> storage_;
  size_t offset_ = 0;
  size_t size_ = 0;
  bool null_ = true;
};

// A named request payload.
struct Payload {
  std::string name;
  Bytes bytes;
};

// The bounds plugin.hpp decodes requests with.
capnp::ReaderOptions requestReaderOptions();
// The bounds the host decodes responses with (host ResponseLimits).
capnp::ReaderOptions responseReaderOptions();
constexpr size_t kMaxResponseBytes = 64u << 20;

// Reads every field of `root`: texts, data, lists, nested structs and the
// active member of each union. Throws kj::Exception on anything malformed
// (a text without its NUL, a pointer of the wrong kind, ...).
void readEverything(capnp::DynamicStruct::Reader root);

// How far `bytes` decodes as a `type` message under requestReaderOptions().
enum class Decoding {
  Valid,       // decodes, and every field reads
  Structural,  // not a message at all: size, segment table, pointers, bounds, depth
  Fields,      // the message traverses, but some field does not read as its type
};
Decoding classify(const Bytes& bytes, capnp::StructSchema type);

// "" when `buffer` is a well-formed flat array holding a `type` message;
// otherwise why not.
std::string responseProblem(const vmhost_buffer& buffer, capnp::StructSchema type);

// An error struct with a code, flag and message the plugin must overwrite
// (the message has no NUL at all).
vmhost_error poisonedError();
// "" when `err` properly reports the failing `rc`: err.code == rc, rc a
// vmhost_status other than OK, a non-empty message NUL-terminated within
// the array (and, with `utf8`, valid UTF-8).
std::string errorProblem(int32_t rc, const vmhost_error& err, bool utf8);
// `text` for a one-line report: valid UTF-8 kept, control characters as
// spaces, other bytes as \xNN.
std::string printable(std::string_view text);
// err.message, bounded and printable (for reasons).
std::string errorText(const vmhost_error& err);

// The response the kit passes in: recognisable, so that a plugin that
// neither fills nor zeroes it is noticed.
vmhost_buffer poisonedBuffer();
bool isPoisoned(const vmhost_buffer& buffer);
bool isZeroed(const vmhost_buffer& buffer);

// The host callbacks the kit lends to instances (valid for the process).
const vmhost_host_callbacks* kitCallbacks();

// The plugin's entry point, dlopen()ed in this process.
class Entry {
 public:
  // Fails the check when the file does not load or has no entry symbol.
  static Entry load(const std::string& path);

  // Calls the entry point. An exception escaping it fails the check.
  const vmhost_plugin_descriptor* call(vmhost_negotiation* negotiation) const;

  // Negotiates with the host range [min, max]; fails the check on refusal.
  const vmhost_plugin_descriptor& negotiate(uint32_t min = VMHOST_ABI_VERSION_MIN,
                                            uint32_t max = VMHOST_ABI_VERSION) const;

 private:
  vmhost_plugin_entry_fn fn_ = nullptr;
};

// The descriptor's functions, called as the host calls them, with the call
// noted for a crash report (runner.h) and an escaping exception turned into
// a Failure.
int32_t callCreate(const vmhost_plugin_descriptor& d, const uint8_t* config, size_t size,
                   const vmhost_host_callbacks* host, vmhost_instance** out, vmhost_error* err);
void callDestroy(const vmhost_plugin_descriptor& d, vmhost_instance* instance);
int32_t callInvoke(const vmhost_plugin_descriptor& d, vmhost_instance* instance, uint32_t method,
                   const Bytes& request, vmhost_buffer* response, vmhost_error* err);
void callRelease(const vmhost_plugin_descriptor& d, vmhost_instance* instance,
                 vmhost_buffer* buffer);

// A create_fn call (*out starts NULL, the error poisoned).
struct Created {
  int32_t rc = 0;
  vmhost_instance* instance = nullptr;
  vmhost_error err{};
};
Created rawCreate(const vmhost_plugin_descriptor& d, std::string_view config,
                  const vmhost_host_callbacks* host = kitCallbacks());
Created rawCreate(const vmhost_plugin_descriptor& d, const uint8_t* config, size_t size,
                  const vmhost_host_callbacks* host, bool nullOut = false);

// A raw invoke_fn call.
struct Invoked {
  int32_t rc = 0;
  vmhost_buffer response{};
  vmhost_error err{};
};

class Reply;

// An instance, destroyed with the object.
class Instance {
 public:
  // Fails the check unless create_fn succeeds.
  Instance(const vmhost_plugin_descriptor& d, std::string_view config);
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  vmhost_instance* handle() const { return instance_; }
  const vmhost_plugin_descriptor& descriptor() const { return *d_; }

  // Calls invoke_fn as is (poisoned response and error, no checks).
  Invoked invoke(uint32_t method, const Bytes& request);
  // Hands a response back to release_fn.
  void release(vmhost_buffer& buffer);

  // Expects VMHOST_OK and a well-formed `type` response; `what` names the
  // call in the reason.
  Reply call(uint32_t method, const Bytes& request, capnp::StructSchema type,
             const std::string& what);

 private:
  const vmhost_plugin_descriptor* d_;
  vmhost_instance* instance_ = nullptr;
};

// A validated response, released when destroyed.
class Reply {
 public:
  Reply(Instance& instance, vmhost_buffer buffer);
  ~Reply();
  Reply(Reply&& other) noexcept;
  Reply& operator=(Reply&&) = delete;

  std::span<const uint8_t> bytes() const { return {buffer_.data, buffer_.size}; }
  template <typename T>
  typename T::Reader as() {
    return reader_->getRoot<T>();
  }

 private:
  Instance* instance_;
  vmhost_buffer buffer_;
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
};

}  // namespace vmhost::plugincheck
