// YAML -> JSON text, shared by the config loader and vmctl (manifests).
#pragma once

#include <string>

namespace YAML {
class Node;
}

namespace vmhost {

// Converts a YAML node to JSON text. Plain (unquoted) scalars that read as
// numbers, booleans or null become those; everything else is a string, as
// YAML 1.2's core schema says.
std::string yamlToJson(const YAML::Node& node);

// Appends `s` to `out` as a JSON string literal.
void appendJsonString(std::string& out, const std::string& s);

}  // namespace vmhost
