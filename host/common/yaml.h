// YAML -> JSON: the one conversion the config loader, the API server
// (application/yaml bodies) and vmctl (manifests) share, so a manifest means
// the same thing whichever of them reads it.
//
// Scalar rules: YAML 1.2's core schema, for plain (unquoted, untagged)
// scalars only; a quoted or tagged scalar is always a string.
//   null    ""  ~  null  Null  NULL
//   bool    true  True  TRUE  false  False  FALSE     (not yes/no/on/off)
//   int     [-+]?[0-9]+, 0o[0-7]+, 0x[0-9a-fA-F]+     (as JSON integers)
//   float   [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
//   anything else, including .inf and .nan (JSON has no such numbers), is a
//   string. An integer outside the signed 64-bit range is written as
//   written, which JSON readers take as a float.
// Mapping keys must be scalars and become strings. Aliases are expanded.
#pragma once

#include "common/result.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace YAML {
class Node;
}

namespace vmhost::yaml {

struct Limits {
  // Documents nested deeper than this are refused (parsers recurse).
  int maxDepth = 100;
  // At most this many nodes are converted; 0: no limit. Aliases let a small
  // document name one subtree many times ("billion laughs"); untrusted input
  // sets a bound proportional to its size.
  size_t maxNodes = 0;
};

// One YAML node as JSON text. INVALID_ARGUMENT (the message says what) for a
// non-scalar mapping key, a string that is not UTF-8, or a limit exceeded.
Result<std::string> toJson(const YAML::Node& node, const Limits& limits = {});

// Parses `text` as one YAML document and converts it. Parse errors name the
// place: "line 3, column 5: illegal map value".
Result<std::string> parseToJson(std::string_view text, const Limits& limits = {});

// Every document of a YAML stream (`---` separated), null documents
// included as "null".
Result<std::vector<std::string>> parseAllToJson(std::string_view text, const Limits& limits = {});

// Whether a plain scalar is null/bool/int/float by the rules above, and its
// JSON text ("null", "true", "42", "1.5e3"); nullopt-like empty result for
// a string. Exposed for tests.
std::string plainScalarJson(std::string_view scalar);

// Appends `s` to `out` as a JSON string literal (control characters
// escaped; bytes are not checked: the caller knows they are UTF-8).
void appendJsonString(std::string& out, std::string_view s);

// Whether `s` is valid UTF-8.
bool validUtf8(std::string_view s);

}  // namespace vmhost::yaml
