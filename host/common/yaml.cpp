#include "common/yaml.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace vmhost::yaml {

namespace {

Error invalid(std::string message) {
  return Error{VMHOST_ERR_INVALID_ARGUMENT, std::move(message), false};
}

bool allOf(std::string_view s, int (*pred)(int)) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!pred(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

int isOctal(int c) { return c >= '0' && c <= '7'; }

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool coreFloat(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t intDigits = 0, fracDigits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++intDigits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++fracDigits;
    if (intDigits == 0 && fracDigits == 0) return false;
  } else if (intDigits == 0) {
    return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t expDigits = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++expDigits;
    if (expDigits == 0) return false;
  }
  return i == s.size();
}

// A decimal, octal or hex integer as JSON; empty when it does not fit int64.
std::string integerJson(std::string_view digits, int base, bool negative) {
  std::string text(digits);
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(text.c_str(), &end, base);
  if (errno == ERANGE || end != text.c_str() + text.size()) return "";
  if (negative ? v > 9223372036854775808ULL : v > 9223372036854775807ULL) return "";
  if (v == 0) return "0";
  return (negative ? "-" : "") + std::to_string(v);
}

struct Converter {
  const Limits& limits;
  size_t nodes = 0;

  Status convert(const YAML::Node& node, int depth, std::string& out) {
    if (depth > limits.maxDepth) {
      return invalid("it is nested more than " + std::to_string(limits.maxDepth) + " levels deep");
    }
    if (limits.maxNodes != 0 && ++nodes > limits.maxNodes) {
      return invalid("it expands to too many nodes (more than " + std::to_string(limits.maxNodes) +
                     ")");
    }
    switch (node.Type()) {
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined:
        out += "null";
        return Ok{};
      case YAML::NodeType::Scalar: {
        const std::string& s = node.Scalar();
        if (node.Tag() == "?") {
          std::string json = plainScalarJson(s);
          if (!json.empty()) {
            out += json;
            return Ok{};
          }
        }
        if (!validUtf8(s)) return invalid(where(node) + "a string is not valid UTF-8");
        appendJsonString(out, s);
        return Ok{};
      }
      case YAML::NodeType::Sequence: {
        out += '[';
        bool first = true;
        for (const auto& item : node) {
          if (!first) out += ',';
          first = false;
          if (auto s = convert(item, depth + 1, out); !s.ok()) return s;
        }
        out += ']';
        return Ok{};
      }
      case YAML::NodeType::Map: {
        out += '{';
        bool first = true;
        for (const auto& kv : node) {
          if (!kv.first.IsScalar()) {
            return invalid(where(kv.first) + "a mapping key must be a string");
          }
          if (!validUtf8(kv.first.Scalar())) {
            return invalid(where(kv.first) + "a mapping key is not valid UTF-8");
          }
          if (!first) out += ',';
          first = false;
          appendJsonString(out, kv.first.Scalar());
          out += ':';
          if (auto s = convert(kv.second, depth + 1, out); !s.ok()) return s;
        }
        out += '}';
        return Ok{};
      }
    }
    return Ok{};
  }

  static std::string where(const YAML::Node& node) {
    auto m = node.Mark();
    if (m.is_null()) return "";
    return "line " + std::to_string(m.line + 1) + ", column " + std::to_string(m.column + 1) + ": ";
  }
};

Error parseError(const YAML::Exception& e) {
  if (e.mark.is_null()) return invalid(e.msg);
  return invalid("line " + std::to_string(e.mark.line + 1) + ", column " +
                 std::to_string(e.mark.column + 1) + ": " + e.msg);
}

}  // namespace

std::string plainScalarJson(std::string_view s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return "null";
  if (s == "true" || s == "True" || s == "TRUE") return "true";
  if (s == "false" || s == "False" || s == "FALSE") return "false";
  if (s.size() > 2 && s[0] == '0' && s[1] == 'o' && allOf(s.substr(2), isOctal)) {
    return integerJson(s.substr(2), 8, false);
  }
  if (s.size() > 2 && s[0] == '0' && s[1] == 'x' && allOf(s.substr(2), isxdigit)) {
    return integerJson(s.substr(2), 16, false);
  }
  bool negative = s[0] == '-';
  std::string_view digits = (s[0] == '-' || s[0] == '+') ? s.substr(1) : s;
  if (allOf(digits, isdigit)) {
    std::string json = integerJson(digits, 10, negative);
    if (!json.empty()) return json;
    // Out of int64 range: a JSON number all the same (readers take it as a float).
    return (negative ? "-" : "") + std::string(digits);
  }
  if (coreFloat(s)) {
    // JSON wants a digit on both sides of the point and no '+'.
    std::string out;
    size_t i = 0;
    if (s[0] == '-' || s[0] == '+') {
      if (s[0] == '-') out += '-';
      i = 1;
    }
    if (s[i] == '.') out += '0';
    for (; i < s.size(); ++i) {
      out += s[i];
      bool pointBeforeExponentOrEnd =
          s[i] == '.' && (i + 1 == s.size() || s[i + 1] == 'e' || s[i + 1] == 'E');
      if (pointBeforeExponentOrEnd) out += '0';
    }
    return out;
  }
  return "";
}

bool validUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (len == 0 || c > 0xf4 || i + len > s.size()) return false;
    uint32_t cp = c & (0xff >> (len + 1));
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += len;
  }
  return true;
}

void appendJsonString(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

Result<std::string> toJson(const YAML::Node& node, const Limits& limits) {
  Converter c{limits};
  std::string out;
  if (auto s = c.convert(node, 0, out); !s.ok()) return s.error();
  return out;
}

Result<std::string> parseToJson(std::string_view text, const Limits& limits) {
  YAML::Node node;
  try {
    node = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return parseError(e);
  }
  return toJson(node, limits);
}

Result<std::vector<std::string>> parseAllToJson(std::string_view text, const Limits& limits) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& e) {
    return parseError(e);
  }
  std::vector<std::string> out;
  for (const auto& d : docs) {
    auto json = toJson(d, limits);
    if (!json.ok()) return json.error();
    out.push_back(std::move(json.value()));
  }
  return out;
}

}  // namespace vmhost::yaml
