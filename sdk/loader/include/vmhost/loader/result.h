// Expected outcomes as values: a call that can fail for reasons outside the
// caller's control (a bad file, a plugin error) returns Result<T>.
//
// The loader's own error type, and the host's: the loader returns the same
// Result the host's callers already handle, so a plugin's error passes up
// through the node agent or the scheduler with a plain `return r.error();`,
// with no conversion at every call site. It is defined in terms of the ABI's
// status codes, which is why it lives next to the loader in sdk/.
#pragma once

#include <vmhost/plugin.h>

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace vmhost {

// An error as it crosses the plugin boundary: a status code, a one-line
// message and whether the same call may succeed later.
struct Error {
  vmhost_status code = VMHOST_ERR_UNKNOWN;
  std::string message;
  bool retryable = false;

  // "INVALID_ARGUMENT: <message>"
  std::string describe() const;
};

const char* statusName(int32_t code);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }
  T* operator->() { return &value(); }
  T& operator*() & { return value(); }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};
using Status = Result<Ok>;

}  // namespace vmhost
