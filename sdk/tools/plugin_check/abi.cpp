#include "abi.h"

#include "runner.h"

#include <dlfcn.h>

#include <kj/exception.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>

namespace vmhost::plugincheck {
namespace {

std::atomic<bool> gVerbose{false};

void kitLog(void*, int32_t level, const char* message) {
  if (!gVerbose.load()) return;
  std::fprintf(stderr, "  plugin log (level %d): %s\n", level,
               message != nullptr ? message : "(null)");
}

void kitProgress(void*, const char* vmUid, const char* what, uint64_t done, uint64_t total) {
  if (!gVerbose.load()) return;
  std::fprintf(stderr, "  plugin progress (vm %s): %s: %llu of %llu bytes\n",
               vmUid != nullptr ? vmUid : "(null)", what != nullptr ? what : "(null)",
               static_cast<unsigned long long>(done), static_cast<unsigned long long>(total));
}

const vmhost_host_callbacks kCallbacks = {sizeof(vmhost_host_callbacks), nullptr, &kitLog,
                                          &kitProgress};

// What escaped, for a reason.
std::string describeCurrentException() {
  try {
    throw;
  } catch (const kj::Exception& e) {
    return std::string("kj::Exception: ") + e.getDescription().cStr();
  } catch (const std::exception& e) {
    return std::string("std::exception: ") + e.what();
  } catch (...) {
    return "an exception of unknown type";
  }
}

[[noreturn]] void escaped(const char* fn) {
  fail(std::string(fn) + " let an exception escape across the C ABI (" +
       describeCurrentException() + ")");
}

bool validUtf8(const char* s, size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(s);
  size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xe  ? 3
                 : (c >> 3) == 0x1e ? 4
                                    : 0;
    if (len == 0 || i + len > n) return false;
    uint32_t cp = len == 1 ? c : c & (0x7f >> len);
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    // Overlong forms, surrogates, beyond U+10FFFF.
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return false;
    i += len;
  }
  return true;
}

void readValue(const capnp::DynamicValue::Reader& value, int depth);

void readStruct(capnp::DynamicStruct::Reader s, int depth) {
  KJ_REQUIRE(depth < 128, "message nests deeper than the kit reads");
  auto readField = [&](capnp::StructSchema::Field field) {
    auto type = field.getType();
    if (type.isAnyPointer() || type.isInterface()) return;
    readValue(s.get(field), depth + 1);
  };
  for (auto field : s.getSchema().getNonUnionFields()) readField(field);
  KJ_IF_MAYBE (field, s.which()) {
    readField(*field);
  }
}

void readValue(const capnp::DynamicValue::Reader& value, int depth) {
  switch (value.getType()) {
    case capnp::DynamicValue::TEXT:
      (void)value.as<capnp::Text>();
      break;
    case capnp::DynamicValue::DATA:
      (void)value.as<capnp::Data>();
      break;
    case capnp::DynamicValue::STRUCT:
      readStruct(value.as<capnp::DynamicStruct>(), depth);
      break;
    case capnp::DynamicValue::LIST:
      for (auto element : value.as<capnp::DynamicList>()) readValue(element, depth + 1);
      break;
    default:
      break;
  }
}

}  // namespace

void fail(const std::string& reason) { throw Failure(reason); }

void setVerbose(bool verbose) { gVerbose = verbose; }

std::string statusText(int32_t code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS"};
  if (code >= 0 && code <= VMHOST_ERR_DATA_LOSS) return kNames[code];
  return "code " + std::to_string(code);
}

// --- Bytes --------------------------------------------------------------------

Bytes Bytes::of(const void* data, size_t size, size_t misalign) {
  Bytes b;
  b.null_ = false;
  b.size_ = size;
  b.offset_ = misalign % sizeof(uint64_t);
  b.storage_.assign((b.offset_ + size) / sizeof(uint64_t) + 1, 0);
  if (size > 0) std::memcpy(reinterpret_cast<uint8_t*>(b.storage_.data()) + b.offset_, data, size);
  return b;
}

Bytes Bytes::of(kj::ArrayPtr<const capnp::word> words, size_t misalign) {
  return of(words.begin(), words.size() * sizeof(capnp::word), misalign);
}

const uint8_t* Bytes::data() const {
  if (null_) return nullptr;
  return reinterpret_cast<const uint8_t*>(storage_.data()) + offset_;
}

// --- decoding -----------------------------------------------------------------

capnp::ReaderOptions requestReaderOptions() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = (uint64_t{64} << 20) / sizeof(capnp::word);  // 64 MiB
  options.nestingLimit = 64;
  return options;
}

capnp::ReaderOptions responseReaderOptions() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 16u << 20;
  options.nestingLimit = 64;
  return options;
}

void readEverything(capnp::DynamicStruct::Reader root) { readStruct(root, 0); }

Decoding classify(const Bytes& bytes, capnp::StructSchema type) {
  if (bytes.isNull() || bytes.size() == 0 || bytes.size() % sizeof(capnp::word) != 0) {
    return Decoding::Structural;
  }
  // An aligned copy: alignment is the plugin's business, not the message's.
  auto words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  std::unique_ptr<capnp::FlatArrayMessageReader> reader;
  capnp::DynamicStruct::Reader root;
  try {
    reader = std::make_unique<capnp::FlatArrayMessageReader>(words.asPtr(), requestReaderOptions());
    root = reader->getRoot<capnp::DynamicStruct>(type);
    (void)root.totalSize();
  } catch (const kj::Exception&) {
    return Decoding::Structural;
  }
  try {
    readEverything(root);
  } catch (const kj::Exception&) {
    return Decoding::Fields;
  }
  return Decoding::Valid;
}

std::string responseProblem(const vmhost_buffer& buffer, capnp::StructSchema type) {
  if (buffer.data == nullptr) return "response data is NULL";
  if (buffer.size == 0) return "response size is 0";
  if (reinterpret_cast<uintptr_t>(buffer.data) % alignof(capnp::word) != 0) {
    return "response data is not 8-byte aligned (address " +
           std::to_string(reinterpret_cast<uintptr_t>(buffer.data)) + ")";
  }
  if (buffer.size % sizeof(capnp::word) != 0) {
    return "response size " + std::to_string(buffer.size) + " is not a multiple of 8";
  }
  if (buffer.size > kMaxResponseBytes) {
    return "response size " + std::to_string(buffer.size) + " exceeds the host's limit of " +
           std::to_string(kMaxResponseBytes) + " bytes";
  }
  kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(buffer.data),
                                        buffer.size / sizeof(capnp::word));
  try {
    capnp::FlatArrayMessageReader reader(words, responseReaderOptions());
    auto root = reader.getRoot<capnp::DynamicStruct>(type);
    (void)root.totalSize();
    readEverything(root);
  } catch (const kj::Exception& e) {
    return std::string("response does not decode as ") + type.getShortDisplayName().cStr() + ": " +
           e.getDescription().cStr();
  }
  return "";
}

// --- errors and buffers -------------------------------------------------------

vmhost_error poisonedError() {
  vmhost_error err;
  err.code = 0x7eadbeef;
  err.retryable = 0x5a;
  std::memset(err.message, 'X', sizeof(err.message));
  return err;
}

std::string printable(std::string_view text) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xe  ? 3
                 : (c >> 3) == 0x1e ? 4
                                    : 0;
    if (len > 1 && i + len <= text.size() && validUtf8(text.data() + i, len)) {
      out.append(text.substr(i, len));
      i += len;
      continue;
    }
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else if (c == '\n' || c == '\r' || c == '\t') {
      out += ' ';
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
    ++i;
  }
  return out;
}

std::string errorText(const vmhost_error& err) {
  const void* nul = std::memchr(err.message, '\0', sizeof(err.message));
  size_t n = nul != nullptr ? static_cast<size_t>(static_cast<const char*>(nul) - err.message)
                            : sizeof(err.message);
  std::string text = printable(std::string_view(err.message, std::min<size_t>(n, 300)));
  return n > 300 ? text + "..." : text;
}

std::string errorProblem(int32_t rc, const vmhost_error& err, bool utf8) {
  if (rc == VMHOST_OK) return "returned OK";
  if (rc < VMHOST_ERR_CANCELLED || rc > VMHOST_ERR_DATA_LOSS) {
    return "returned " + statusText(rc) + ", which is not a vmhost_status";
  }
  if (err.code == 0x7eadbeef) return "returned " + statusText(rc) + " but left err.code unset";
  if (err.code != rc) {
    return "returned " + statusText(rc) + " but set err.code to " + statusText(err.code);
  }
  const void* nul = std::memchr(err.message, '\0', sizeof(err.message));
  if (nul == nullptr) {
    return "returned " + statusText(rc) + " but err.message has no NUL within " +
           std::to_string(sizeof(err.message)) + " bytes";
  }
  size_t n = static_cast<size_t>(static_cast<const char*>(nul) - err.message);
  if (n == 0) return "returned " + statusText(rc) + " with an empty err.message";
  if (utf8 && !validUtf8(err.message, n)) {
    return "returned " + statusText(rc) + " with an err.message that is not valid UTF-8: '" +
           errorText(err) + "'";
  }
  return "";
}

vmhost_buffer poisonedBuffer() {
  // Points at the kit's own bytes: recognisable, and harmless if read.
  alignas(8) static const uint8_t kPoison[16] = {};
  return vmhost_buffer{kPoison + 8, 0xdead, const_cast<uint8_t*>(kPoison)};
}

bool isPoisoned(const vmhost_buffer& b) {
  auto p = poisonedBuffer();
  return b.data == p.data || b.size == p.size || b.opaque == p.opaque;
}

bool isZeroed(const vmhost_buffer& b) {
  return b.data == nullptr && b.size == 0 && b.opaque == nullptr;
}

const vmhost_host_callbacks* kitCallbacks() { return &kCallbacks; }

// --- entry ----------------------------------------------------------------------

Entry Entry::load(const std::string& path) {
  noteStep("loading the plugin");
  noteCall("dlopen (the plugin's static initializers)");
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    fail("cannot dlopen " + path + ": " + (why != nullptr ? why : "unknown error"));
  }
  noteCall("");
  // Never dlclose()d, as the host never unloads a plugin.
  void* symbol = ::dlsym(handle, VMHOST_PLUGIN_ENTRY_SYMBOL);
  if (symbol == nullptr) fail(std::string("no entry symbol '") + VMHOST_PLUGIN_ENTRY_SYMBOL + "'");
  Entry entry;
  entry.fn_ = reinterpret_cast<vmhost_plugin_entry_fn>(symbol);
  return entry;
}

const vmhost_plugin_descriptor* Entry::call(vmhost_negotiation* negotiation) const {
  noteCall(VMHOST_PLUGIN_ENTRY_SYMBOL);
  const vmhost_plugin_descriptor* d = nullptr;
  try {
    d = fn_(negotiation);
  } catch (...) {
    escaped(VMHOST_PLUGIN_ENTRY_SYMBOL);
  }
  noteCall("");
  return d;
}

const vmhost_plugin_descriptor& Entry::negotiate(uint32_t min, uint32_t max) const {
  vmhost_negotiation n{};
  n.struct_size = sizeof(n);
  n.host_abi_min = min;
  n.host_abi_max = max;
  const vmhost_plugin_descriptor* d = call(&n);
  if (d == nullptr) {
    fail("the plugin refuses host ABI range [" + std::to_string(min) + "," + std::to_string(max) +
         "] (it reports [" + std::to_string(n.plugin_abi_min) + "," +
         std::to_string(n.plugin_abi_max) + "])");
  }
  return *d;
}

// --- create / invoke / release ------------------------------------------------

int32_t callCreate(const vmhost_plugin_descriptor& d, const uint8_t* config, size_t size,
                   const vmhost_host_callbacks* host, vmhost_instance** out, vmhost_error* err) {
  noteCall("create_fn");
  int32_t rc = 0;
  try {
    rc = d.create_fn(config, size, host, out, err);
  } catch (...) {
    escaped("create_fn");
  }
  noteCall("");
  return rc;
}

void callDestroy(const vmhost_plugin_descriptor& d, vmhost_instance* instance) {
  noteCall("destroy_fn");
  try {
    d.destroy_fn(instance);
  } catch (...) {
    escaped("destroy_fn");
  }
  noteCall("");
}

int32_t callInvoke(const vmhost_plugin_descriptor& d, vmhost_instance* instance, uint32_t method,
                   const Bytes& request, vmhost_buffer* response, vmhost_error* err) {
  noteCall("invoke_fn");
  int32_t rc = 0;
  try {
    rc = d.invoke_fn(instance, method, request.data(), request.size(), response, err);
  } catch (...) {
    escaped("invoke_fn");
  }
  noteCall("");
  return rc;
}

void callRelease(const vmhost_plugin_descriptor& d, vmhost_instance* instance,
                 vmhost_buffer* buffer) {
  noteCall("release_fn");
  try {
    d.release_fn(instance, buffer);
  } catch (...) {
    escaped("release_fn");
  }
  noteCall("");
}

Created rawCreate(const vmhost_plugin_descriptor& d, std::string_view config,
                  const vmhost_host_callbacks* host) {
  return rawCreate(d, reinterpret_cast<const uint8_t*>(config.data()), config.size(), host);
}

Created rawCreate(const vmhost_plugin_descriptor& d, const uint8_t* config, size_t size,
                  const vmhost_host_callbacks* host, bool nullOut) {
  Created c;
  c.err = poisonedError();
  c.instance = nullptr;  // as the host passes it: a failing create leaves it NULL
  c.rc = callCreate(d, config, size, host, nullOut ? nullptr : &c.instance, &c.err);
  if (nullOut) c.instance = nullptr;
  return c;
}

Instance::Instance(const vmhost_plugin_descriptor& d, std::string_view config) : d_(&d) {
  Created c = rawCreate(d, config);
  if (c.rc != VMHOST_OK) {
    fail("create with config " + std::string(config) + " returned " + statusText(c.rc) + ": " +
         errorText(c.err));
  }
  if (c.instance == nullptr) fail("create returned OK without storing an instance in *out");
  instance_ = c.instance;
}

Instance::~Instance() {
  try {
    callDestroy(*d_, instance_);
  } catch (...) {
    // A destructor cannot fail the check; create-destroy destroys explicitly.
  }
}

Invoked Instance::invoke(uint32_t method, const Bytes& request) {
  Invoked r;
  r.response = poisonedBuffer();
  r.err = poisonedError();
  r.rc = callInvoke(*d_, instance_, method, request, &r.response, &r.err);
  return r;
}

void Instance::release(vmhost_buffer& buffer) { callRelease(*d_, instance_, &buffer); }

Reply Instance::call(uint32_t method, const Bytes& request, capnp::StructSchema type,
                     const std::string& what) {
  noteStep(what);
  Invoked r = invoke(method, request);
  if (r.rc != VMHOST_OK) {
    fail(what + " returned " + statusText(r.rc) + ": " + errorText(r.err));
  }
  if (isPoisoned(r.response)) fail(what + " returned OK without filling *response");
  std::string problem = responseProblem(r.response, type);
  if (!problem.empty()) {
    release(r.response);
    fail(what + ": " + problem);
  }
  return Reply(*this, r.response);
}

Reply::Reply(Instance& instance, vmhost_buffer buffer) : instance_(&instance), buffer_(buffer) {
  kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(buffer.data),
                                        buffer.size / sizeof(capnp::word));
  reader_ = std::make_unique<capnp::FlatArrayMessageReader>(words, responseReaderOptions());
}

Reply::Reply(Reply&& other) noexcept
    : instance_(other.instance_), buffer_(other.buffer_), reader_(std::move(other.reader_)) {
  other.instance_ = nullptr;
}

Reply::~Reply() {
  reader_.reset();
  if (instance_ != nullptr) {
    try {
      instance_->release(buffer_);
    } catch (...) {
    }
  }
}

}  // namespace vmhost::plugincheck
