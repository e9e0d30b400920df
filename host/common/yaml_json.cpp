#include "yaml_json.h"

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <regex>

namespace vmhost {

void appendJsonString(std::string& out, const std::string& s) {
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

namespace {

bool isJsonNumber(const std::string& s) {
  static const std::regex number(R"(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)");
  return std::regex_match(s, number);
}

// YAML -> JSON. Plain (unquoted) scalars that read as numbers, booleans or
// null become those; everything else is a string, as YAML 1.2's core schema.
void toJson(const YAML::Node& node, std::string& out) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      out += "null";
      break;
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      bool plain = node.Tag() == "?";
      if (plain && (s == "true" || s == "false" || s == "null" || isJsonNumber(s))) {
        out += s;
      } else if (plain && (s == "~" || s == "Null" || s == "NULL")) {
        out += "null";
      } else if (plain && (s == "True" || s == "TRUE")) {
        out += "true";
      } else if (plain && (s == "False" || s == "FALSE")) {
        out += "false";
      } else {
        appendJsonString(out, s);
      }
      break;
    }
    case YAML::NodeType::Sequence: {
      out += '[';
      bool first = true;
      for (const auto& item : node) {
        if (!first) out += ',';
        first = false;
        toJson(item, out);
      }
      out += ']';
      break;
    }
    case YAML::NodeType::Map: {
      out += '{';
      bool first = true;
      for (const auto& kv : node) {
        if (!first) out += ',';
        first = false;
        appendJsonString(out, kv.first.Scalar());
        out += ':';
        toJson(kv.second, out);
      }
      out += '}';
      break;
    }
  }
}

}  // namespace

std::string yamlToJson(const YAML::Node& node) {
  std::string out;
  toJson(node, out);
  return out;
}

}  // namespace vmhost
