#include "api/validation.h"

#include <algorithm>
#include <limits>

namespace vmhost::api {

namespace {

const char* typeText(FieldErrorType t) {
  switch (t) {
    case FieldErrorType::kNotFound:
      return "Not found";
    case FieldErrorType::kRequired:
      return "Required value";
    case FieldErrorType::kDuplicate:
      return "Duplicate value";
    case FieldErrorType::kInvalid:
      return "Invalid value";
    case FieldErrorType::kNotSupported:
      return "Unsupported value";
    case FieldErrorType::kForbidden:
      return "Forbidden";
    case FieldErrorType::kTooLong:
      return "Too long";
    case FieldErrorType::kTooMany:
      return "Too many";
    case FieldErrorType::kInternal:
      return "Internal error";
    case FieldErrorType::kTypeInvalid:
      return "Invalid value";
    case FieldErrorType::kUnknownField:
      return "Unknown field";
  }
  return "Invalid value";
}

bool isLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool isAlnum(char c) { return isLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }

// [a-z0-9]([-a-z0-9]*[a-z0-9])?
bool matchesLabel(std::string_view s) {
  if (s.empty() || !isLowerAlnum(s.front()) || !isLowerAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return isLowerAlnum(c) || c == '-'; });
}

// ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]
bool matchesQualifiedPart(std::string_view s) {
  if (s.empty() || !isAlnum(s.front()) || !isAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return isAlnum(c) || c == '-' || c == '_' || c == '.'; });
}

const char* kSubdomainMsg =
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const char* kLabelMsg =
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const char* kQualifiedMsg =
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const char* kLabelValueMsg =
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

}  // namespace

std::string FieldError::body() const {
  std::string out = typeText(type);
  switch (type) {
    case FieldErrorType::kRequired:
    case FieldErrorType::kForbidden:
    case FieldErrorType::kTooLong:
    case FieldErrorType::kInternal:
    case FieldErrorType::kUnknownField:
      // Kubernetes omits the value for these types.
      if (!detail.empty()) out += ": " + detail;
      return out;
    default:
      break;
  }
  if (!value.empty()) out += ": " + value;
  if (!detail.empty()) out += ": " + detail;
  return out;
}

std::string FieldError::toString() const { return field + ": " + body(); }

std::string FieldError::reason() const {
  switch (type) {
    case FieldErrorType::kNotFound:
      return "FieldValueNotFound";
    case FieldErrorType::kRequired:
      return "FieldValueRequired";
    case FieldErrorType::kDuplicate:
      return "FieldValueDuplicate";
    case FieldErrorType::kInvalid:
      return "FieldValueInvalid";
    case FieldErrorType::kNotSupported:
      return "FieldValueNotSupported";
    case FieldErrorType::kForbidden:
      return "FieldValueForbidden";
    case FieldErrorType::kTooLong:
      return "FieldValueTooLong";
    case FieldErrorType::kTooMany:
      return "FieldValueTooMany";
    case FieldErrorType::kInternal:
      return "InternalError";
    case FieldErrorType::kTypeInvalid:
      return "FieldValueTypeInvalid";
    case FieldErrorType::kUnknownField:
      return "FieldValueUnknown";
  }
  return "FieldValueInvalid";
}

FieldError required(std::string field, std::string detail) {
  return FieldError{FieldErrorType::kRequired, std::move(field), "", std::move(detail)};
}

FieldError invalid(std::string field, const Json& value, std::string detail) {
  return FieldError{FieldErrorType::kInvalid, std::move(field), value.dump(), std::move(detail)};
}

FieldError notSupported(std::string field, const Json& value,
                        const std::vector<std::string>& supported) {
  std::string detail = "supported values: ";
  for (size_t i = 0; i < supported.size(); ++i) {
    if (i) detail += ", ";
    detail += "\"" + supported[i] + "\"";
  }
  return FieldError{FieldErrorType::kNotSupported, std::move(field), value.dump(),
                    std::move(detail)};
}

FieldError duplicate(std::string field, const Json& value) {
  return FieldError{FieldErrorType::kDuplicate, std::move(field), value.dump(), ""};
}

FieldError forbidden(std::string field, std::string detail) {
  return FieldError{FieldErrorType::kForbidden, std::move(field), "", std::move(detail)};
}

FieldError tooLong(std::string field, size_t max) {
  return FieldError{FieldErrorType::kTooLong, std::move(field), "",
                    "must have at most " + std::to_string(max) + " bytes"};
}

std::string childPath(const std::string& path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return path + "." + std::string(key);
}

std::string indexPath(const std::string& path, size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

std::string keyPath(const std::string& path, std::string_view key) {
  return path + "[" + std::string(key) + "]";
}

std::string jsonTypeName(const Json& j) {
  switch (j.type()) {
    case Json::value_t::string:
      return "string";
    case Json::value_t::boolean:
      return "boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "integer";
    case Json::value_t::number_float:
      return "number";
    case Json::value_t::object:
      return "object";
    case Json::value_t::array:
      return "array";
    case Json::value_t::null:
      return "null";
    default:
      return "unknown";
  }
}

void Decoder::typeError(const std::string& path, const Json& value, std::string_view expected) {
  // The wording of the Kubernetes OpenAPI validator for custom resources.
  std::string actual = jsonTypeName(value);
  errors.push_back(FieldError{
      FieldErrorType::kTypeInvalid, path, "\"" + actual + "\"",
      path + " in body must be of type " + std::string(expected) + ": \"" + actual + "\""});
}

bool Decoder::object(const Json& j, const std::string& path,
                     std::initializer_list<std::string_view> known) {
  if (j.is_null()) return false;
  if (!j.is_object()) {
    typeError(path, j, "object");
    return false;
  }
  if (mode_ == FieldValidation::kIgnore) return true;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string p = childPath(path, key);
    if (mode_ == FieldValidation::kStrict) {
      errors.push_back(
          FieldError{FieldErrorType::kUnknownField, p, "", "field not declared in schema"});
    } else {
      warnings.push_back("unknown field \"" + p + "\"");
    }
  }
  return true;
}

bool Decoder::array(const Json& j, const std::string& path) {
  if (j.is_null()) return false;
  if (!j.is_array()) {
    typeError(path, j, "array");
    return false;
  }
  return true;
}

bool Decoder::str(const Json& obj, std::string_view key, const std::string& path,
                  std::string& out) {
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return false;
  std::string p = childPath(path, key);
  if (!it->is_string()) {
    typeError(p, *it, "string");
    return false;
  }
  out = it->get<std::string>();
  return true;
}

bool Decoder::integer(const Json& obj, std::string_view key, const std::string& path,
                      int64_t& out) {
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return false;
  std::string p = childPath(path, key);
  // nlohmann counts unsigned numbers as integers too: check them first.
  if (it->is_number_unsigned()) {
    uint64_t u = it->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      // Above int64: reject rather than wrap around.
      errors.push_back(invalid(p, *it, "must be at most 9223372036854775807"));
      return false;
    }
    out = static_cast<int64_t>(u);
    return true;
  }
  if (it->is_number_integer()) {
    out = it->get<int64_t>();
    return true;
  }
  // 2.0 is an integer in JSON Schema; 2.5 is not.
  if (it->is_number_float()) {
    double d = it->get<double>();
    // Range first: converting an out-of-range double to int64 is undefined.
    if (d >= -9.2e18 && d <= 9.2e18 && d == static_cast<double>(static_cast<int64_t>(d))) {
      out = static_cast<int64_t>(d);
      return true;
    }
  }
  typeError(p, *it, "integer");
  return false;
}

bool Decoder::boolean(const Json& obj, std::string_view key, const std::string& path, bool& out) {
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return false;
  if (!it->is_boolean()) {
    typeError(childPath(path, key), *it, "boolean");
    return false;
  }
  out = it->get<bool>();
  return true;
}

bool Decoder::stringMap(const Json& obj, std::string_view key, const std::string& path,
                        std::map<std::string, std::string>& out) {
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return false;
  std::string p = childPath(path, key);
  if (!it->is_object()) {
    typeError(p, *it, "object");
    return false;
  }
  for (auto e = it->begin(); e != it->end(); ++e) {
    if (!e.value().is_string()) {
      typeError(keyPath(p, e.key()), e.value(), "string");
      continue;
    }
    out[e.key()] = e.value().get<std::string>();
  }
  return true;
}

bool Decoder::stringList(const Json& obj, std::string_view key, const std::string& path,
                         std::vector<std::string>& out) {
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return false;
  std::string p = childPath(path, key);
  if (!it->is_array()) {
    typeError(p, *it, "array");
    return false;
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& e = (*it)[i];
    if (!e.is_string()) {
      typeError(indexPath(p, i), e, "string");
      continue;
    }
    out.push_back(e.get<std::string>());
  }
  return true;
}

std::vector<std::string> isDns1123Subdomain(std::string_view value) {
  std::vector<std::string> errs;
  if (value.size() > 253) errs.push_back("must be no more than 253 characters");
  bool ok = !value.empty();
  size_t start = 0;
  while (ok) {
    size_t dot = value.find('.', start);
    std::string_view part =
        value.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (!matchesLabel(part)) ok = false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (!ok) errs.push_back(kSubdomainMsg);
  return errs;
}

std::vector<std::string> isDns1123Label(std::string_view value) {
  std::vector<std::string> errs;
  if (value.size() > 63) errs.push_back("must be no more than 63 characters");
  if (!matchesLabel(value)) errs.push_back(kLabelMsg);
  return errs;
}

std::vector<std::string> isQualifiedName(std::string_view value) {
  std::vector<std::string> errs;
  std::string_view name = value;
  size_t slash = value.find('/');
  if (slash != std::string_view::npos) {
    if (value.find('/', slash + 1) != std::string_view::npos) {
      errs.push_back(std::string("a qualified name ") + kQualifiedMsg +
                     " with an optional DNS subdomain prefix and '/' (e.g. "
                     "'example.com/MyName')");
      return errs;
    }
    std::string_view prefix = value.substr(0, slash);
    name = value.substr(slash + 1);
    if (prefix.empty()) {
      errs.push_back("prefix part must be non-empty");
    } else {
      for (auto& m : isDns1123Subdomain(prefix)) errs.push_back("prefix part " + m);
    }
  }
  if (name.empty()) {
    errs.push_back("name part must be non-empty");
  } else if (name.size() > 63) {
    errs.push_back("name part must be no more than 63 characters");
  }
  if (!name.empty() && !matchesQualifiedPart(name)) errs.push_back(kQualifiedMsg);
  return errs;
}

std::vector<std::string> isValidLabelValue(std::string_view value) {
  std::vector<std::string> errs;
  if (value.size() > 63) errs.push_back("must be no more than 63 characters");
  if (!value.empty() && !matchesQualifiedPart(value)) errs.push_back(kLabelValueMsg);
  return errs;
}

void validateLabels(const std::map<std::string, std::string>& labels, const std::string& path,
                    FieldErrors& errs) {
  for (const auto& [k, v] : labels) {
    for (auto& m : isQualifiedName(k)) errs.push_back(invalid(path, Json(k), m));
    for (auto& m : isValidLabelValue(v)) errs.push_back(invalid(keyPath(path, k), Json(v), m));
  }
}

void validateAnnotations(const std::map<std::string, std::string>& annotations,
                         const std::string& path, FieldErrors& errs) {
  size_t total = 0;
  for (const auto& [k, v] : annotations) {
    for (auto& m : isQualifiedName(k)) errs.push_back(invalid(path, Json(k), m));
    total += k.size() + v.size();
  }
  constexpr size_t kMax = 256 * 1024;  // Kubernetes' TotalAnnotationSizeLimitB
  if (total > kMax) errs.push_back(tooLong(path, kMax));
}

}  // namespace vmhost::api
