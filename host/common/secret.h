// Comparing secrets (join and API tokens) without an early exit, so the
// time a comparison takes says nothing about how much of a guess was right.
#pragma once

#include <string_view>

namespace vmhost {

inline bool sameSecret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

}  // namespace vmhost
