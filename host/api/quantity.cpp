#include "api/quantity.h"

#include <cctype>
#include <limits>

namespace vmhost::api {

namespace {

using i128 = __int128;

Error malformed() {
  return Error{VMHOST_ERR_INVALID_ARGUMENT,
               std::string("quantities must match the regular expression '") + kQuantityRegex + "'",
               false};
}

Error tooLarge() { return Error{VMHOST_ERR_INVALID_ARGUMENT, "quantity is too large", false}; }

constexpr i128 kLimit = std::numeric_limits<int64_t>::max();

}  // namespace

int64_t Quantity::value() const {
  // Round toward +infinity, as resource.Quantity.Value() does.
  int64_t q = milliValue / 1000;
  if (milliValue % 1000 > 0) ++q;
  return q;
}

Result<Quantity> parseQuantity(std::string_view text) {
  // Grammar (apimachinery resource/quantity.go):
  //   <sign><digits>[.<digits>]<suffix>, suffix = binarySI | decimalSI | decimalExponent
  //   binarySI = Ki | Mi | Gi | Ti | Pi | Ei
  //   decimalSI = n | u | m | "" | k | M | G | T | P | E
  //   decimalExponent = (e|E) <sign><digits>
  size_t i = 0;
  bool neg = false;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
    neg = text[i] == '-';
    ++i;
  }
  i128 mantissa = 0;
  int fracDigits = 0;
  bool sawDigit = false, sawDot = false;
  // Digits beyond what fits are only accepted as zeros after the point;
  // anything larger is rejected as too large below.
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (c == '.') {
      if (sawDot) return malformed();
      sawDot = true;
      continue;
    }
    if (!std::isdigit(static_cast<unsigned char>(c))) break;
    sawDigit = true;
    if (mantissa > kLimit * 1000) return tooLarge();
    mantissa = mantissa * 10 + (c - '0');
    if (sawDot) ++fracDigits;
    if (fracDigits > 30) return malformed();
  }
  if (!sawDigit) return malformed();

  std::string_view suffix = text.substr(i);
  int exp10 = 0;  // value = mantissa * 10^(exp10 - fracDigits) * 2^exp2
  int exp2 = 0;
  if (suffix.empty()) {
  } else if (suffix == "Ki") {
    exp2 = 10;
  } else if (suffix == "Mi") {
    exp2 = 20;
  } else if (suffix == "Gi") {
    exp2 = 30;
  } else if (suffix == "Ti") {
    exp2 = 40;
  } else if (suffix == "Pi") {
    exp2 = 50;
  } else if (suffix == "Ei") {
    exp2 = 60;
  } else if (suffix == "n") {
    exp10 = -9;
  } else if (suffix == "u") {
    exp10 = -6;
  } else if (suffix == "m") {
    exp10 = -3;
  } else if (suffix == "k") {
    exp10 = 3;
  } else if (suffix == "M") {
    exp10 = 6;
  } else if (suffix == "G") {
    exp10 = 9;
  } else if (suffix == "T") {
    exp10 = 12;
  } else if (suffix == "P") {
    exp10 = 15;
  } else if (suffix == "E") {
    exp10 = 18;
  } else if (suffix[0] == 'e' || suffix[0] == 'E') {
    size_t j = 1;
    bool eneg = false;
    if (j < suffix.size() && (suffix[j] == '+' || suffix[j] == '-')) {
      eneg = suffix[j] == '-';
      ++j;
    }
    if (j >= suffix.size()) return malformed();
    int e = 0;
    for (; j < suffix.size(); ++j) {
      if (!std::isdigit(static_cast<unsigned char>(suffix[j]))) return malformed();
      e = e * 10 + (suffix[j] - '0');
      if (e > 1000) return eneg ? malformed() : tooLarge();
    }
    exp10 = eneg ? -e : e;
  } else {
    return malformed();
  }

  // milli = mantissa * 10^(exp10 - fracDigits + 3) * 2^exp2, rounded up.
  i128 v = mantissa;
  for (int k = 0; k < exp2; ++k) {
    v *= 2;
    if (v > kLimit * 1000) return tooLarge();
  }
  int scale = exp10 - fracDigits + 3;
  if (scale >= 0) {
    for (int k = 0; k < scale; ++k) {
      if (v == 0) break;
      v *= 10;
      if (v > kLimit) return tooLarge();
    }
  } else {
    bool remainder = false;
    for (int k = 0; k < -scale && v != 0; ++k) {
      if (v % 10 != 0) remainder = true;
      v /= 10;
    }
    // Round away from zero, so "1n" of memory is one byte, not zero, as
    // Kubernetes rounds quantities up to the smallest representable unit.
    if (remainder) v += 1;
  }
  if (v > kLimit) return tooLarge();
  Quantity q;
  q.text = std::string(text);
  q.milliValue = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  return q;
}

Quantity bytesQuantity(int64_t bytes) {
  static const char* kUnits[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
  int unit = 0;
  int64_t v = bytes;
  while (unit < 6 && v != 0 && v % 1024 == 0) {
    v /= 1024;
    ++unit;
  }
  Quantity q;
  q.text = std::to_string(v) + kUnits[unit];
  q.milliValue = bytes > std::numeric_limits<int64_t>::max() / 1000
                     ? std::numeric_limits<int64_t>::max()
                     : bytes * 1000;
  return q;
}

}  // namespace vmhost::api
