// Kubernetes resource quantities ("128Mi", "1.5G", "500m", "1e3"), parsed
// exactly as apimachinery's resource.Quantity does for the values vmhost
// stores: CPU counts and byte sizes.
#pragma once

#include "common/result.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace vmhost::api {

// The regular expression Kubernetes quotes when a quantity does not parse;
// error messages repeat it so users recognise the rule.
inline constexpr const char* kQuantityRegex = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

struct Quantity {
  std::string text;        // as written by the user; kept so a round trip is byte-stable
  int64_t milliValue = 0;  // the value * 1000, rounded up (CPU "500m" -> 500)

  // The value rounded up to an integer (bytes for memory), as Quantity.Value().
  int64_t value() const;
  bool isZero() const { return milliValue == 0; }
  bool negative() const { return milliValue < 0; }
  friend bool operator==(const Quantity& a, const Quantity& b) { return a.text == b.text; }
};

// INVALID_ARGUMENT with "quantities must match the regular expression ..."
// for a malformed string, or "quantity is too large" when the value does not
// fit in int64 milli-units (about 9.2e15, i.e. 8 EiB for bytes).
Result<Quantity> parseQuantity(std::string_view text);

// A quantity for a byte count, in the largest binary unit that divides it
// ("8Mi" for 8388608), as Kubernetes prints memory.
Quantity bytesQuantity(int64_t bytes);

}  // namespace vmhost::api
