// Field errors in Kubernetes' shape (apimachinery/pkg/util/validation/field)
// and a JSON decoder that collects them with exact field paths, so a user
// sees `spec.interfaces[0].model: Unsupported value: "ne2k": supported
// values: "virtio", "e1000"` rather than "bad request".
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmhost::api {

// Insertion-ordered so encoded objects read apiVersion, kind, metadata, spec, status.
using Json = nlohmann::ordered_json;

enum class FieldErrorType : uint8_t {
  kNotFound,
  kRequired,
  kDuplicate,
  kInvalid,
  kNotSupported,
  kForbidden,
  kTooLong,
  kTooMany,
  kInternal,
  kTypeInvalid,
  // A field the schema does not declare, under fieldValidation=Strict.
  kUnknownField,
};

struct FieldError {
  FieldErrorType type = FieldErrorType::kInvalid;
  std::string field;  // "spec.interfaces[0].model"
  std::string value;  // the bad value as JSON ("\"ne2k\"", "-1"); empty: not shown
  std::string detail;

  // "Unsupported value: \"ne2k\": supported values: ..." (Status cause message).
  std::string body() const;
  // "<field>: <body>".
  std::string toString() const;
  // The Status cause type, e.g. "FieldValueNotSupported".
  std::string reason() const;
};
using FieldErrors = std::vector<FieldError>;

FieldError required(std::string field, std::string detail = "");
FieldError invalid(std::string field, const Json& value, std::string detail);
FieldError notSupported(std::string field, const Json& value,
                        const std::vector<std::string>& supported);
FieldError duplicate(std::string field, const Json& value);
FieldError forbidden(std::string field, std::string detail);
FieldError tooLong(std::string field, size_t max);

// An enum's values (a `const char* const[]` such as kRunStrategies): as a
// list for notSupported(), and whether `v` is one of them.
template <size_t N>
std::vector<std::string> values(const char* const (&list)[N]) {
  return std::vector<std::string>(std::begin(list), std::end(list));
}
template <size_t N>
bool oneOf(const std::string& v, const char* const (&list)[N]) {
  for (const char* s : list) {
    if (v == s) return true;
  }
  return false;
}

// How unknown fields are treated (the fieldValidation query parameter).
enum class FieldValidation : uint8_t { kIgnore, kWarn, kStrict };

// "a.b" / "a[3]" path building.
std::string childPath(const std::string& path, std::string_view key);
std::string indexPath(const std::string& path, size_t index);
std::string keyPath(const std::string& path, std::string_view key);  // a[key]

// Walks a JSON document into typed values, collecting errors instead of
// stopping at the first, so one response lists every problem.
class Decoder {
 public:
  explicit Decoder(FieldValidation mode) : mode_(mode) {}

  FieldErrors errors;
  // Unknown fields under kWarn, as `unknown field "spec.foo"` (Kubernetes' warning text).
  std::vector<std::string> warnings;

  // True if `j` is an object; unknown keys (not in `known`) are reported per
  // the mode. Null counts as absent: false without an error.
  bool object(const Json& j, const std::string& path,
              std::initializer_list<std::string_view> known);
  // True if `j` is an array (null: false, no error).
  bool array(const Json& j, const std::string& path);

  // Each reads obj[key] when present and non-null into `out`; a wrong type
  // records a type error and leaves `out` unchanged. Return whether a value
  // was read.
  bool str(const Json& obj, std::string_view key, const std::string& path, std::string& out);
  bool integer(const Json& obj, std::string_view key, const std::string& path, int64_t& out);
  bool boolean(const Json& obj, std::string_view key, const std::string& path, bool& out);
  bool stringMap(const Json& obj, std::string_view key, const std::string& path,
                 std::map<std::string, std::string>& out);
  bool stringList(const Json& obj, std::string_view key, const std::string& path,
                  std::vector<std::string>& out);

  void typeError(const std::string& path, const Json& value, std::string_view expected);
  FieldValidation mode() const { return mode_; }

 private:
  FieldValidation mode_;
};

// JSON type name as OpenAPI says it: "string", "integer", "number", "boolean", "object", "array".
std::string jsonTypeName(const Json& j);

// Kubernetes name rules (apimachinery/pkg/util/validation). Each returns
// error details (empty = valid).
std::vector<std::string> isDns1123Subdomain(std::string_view value);
std::vector<std::string> isDns1123Label(std::string_view value);
std::vector<std::string> isQualifiedName(std::string_view value);
std::vector<std::string> isValidLabelValue(std::string_view value);

// metadata.labels / nodeSelector style maps: qualified-name keys, label values.
void validateLabels(const std::map<std::string, std::string>& labels, const std::string& path,
                    FieldErrors& errs);
// Annotations: qualified-name keys, total size at most 256 KiB.
void validateAnnotations(const std::map<std::string, std::string>& annotations,
                         const std::string& path, FieldErrors& errs);

}  // namespace vmhost::api
