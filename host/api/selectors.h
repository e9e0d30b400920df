// Label and field selectors, in Kubernetes' query syntax:
//   labelSelector=app=web,tier!=db,env in (a,b),!legacy,release
//   fieldSelector=metadata.name=vm1,status.phase!=Running
#pragma once

#include "common/result.h"

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmhost::api {

struct Requirement {
  enum class Op : uint8_t { kEquals, kNotEquals, kIn, kNotIn, kExists, kDoesNotExist };
  std::string key;
  Op op = Op::kEquals;
  std::vector<std::string> values;
};

class LabelSelector {
 public:
  // INVALID_ARGUMENT naming the problem ("unable to parse requirement: ...").
  static Result<LabelSelector> parse(std::string_view text);
  bool matches(const std::map<std::string, std::string>& labels) const;
  bool empty() const { return reqs_.empty(); }

 private:
  std::vector<Requirement> reqs_;
};

class FieldSelector {
 public:
  // Only =, == and != (as Kubernetes). `supported` lists the field names the
  // resource can be selected by; others are INVALID_ARGUMENT
  // ("field label not supported: spec.x").
  static Result<FieldSelector> parse(std::string_view text,
                                     const std::vector<std::string>& supported);
  // `value(field)` returns the object's value of a supported field.
  bool matches(const std::function<std::string(const std::string&)>& value) const;
  bool empty() const { return reqs_.empty(); }
  // The name a "metadata.name=x" term pins, if any (lets a watch skip others cheaply).
  std::optional<std::string> pinnedName() const;

 private:
  std::vector<Requirement> reqs_;
};

}  // namespace vmhost::api
