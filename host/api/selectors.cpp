#include "api/selectors.h"

#include <algorithm>

namespace vmhost::api {

namespace {

std::string trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

// Splits on commas outside parentheses ("a in (x,y),b=c" -> 2 terms).
Result<std::vector<std::string>> splitTerms(std::string_view text) {
  std::vector<std::string> out;
  int depth = 0;
  std::string cur;
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth < 0 || depth > 1) {
      return Error{
          VMHOST_ERR_INVALID_ARGUMENT,
          "unable to parse requirement: unbalanced parentheses in \"" + std::string(text) + "\"",
          false};
    }
    if (c == ',' && depth == 0) {
      out.push_back(trim(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (depth != 0) {
    return Error{
        VMHOST_ERR_INVALID_ARGUMENT,
        "unable to parse requirement: unbalanced parentheses in \"" + std::string(text) + "\"",
        false};
  }
  out.push_back(trim(cur));
  return out;
}

Error bad(const std::string& term, const std::string& why) {
  return Error{VMHOST_ERR_INVALID_ARGUMENT, "unable to parse requirement: \"" + term + "\": " + why,
               false};
}

Result<Requirement> parseTerm(const std::string& term, bool setOps) {
  Requirement r;
  if (term.empty()) return bad(term, "empty requirement");
  if (setOps && term[0] == '!') {
    r.key = trim(term.substr(1));
    r.op = Requirement::Op::kDoesNotExist;
    if (r.key.empty()) return bad(term, "missing key");
    return r;
  }
  size_t pos;
  if ((pos = term.find("!=")) != std::string::npos) {
    r.key = trim(term.substr(0, pos));
    r.op = Requirement::Op::kNotEquals;
    r.values = {trim(term.substr(pos + 2))};
  } else if ((pos = term.find("==")) != std::string::npos) {
    r.key = trim(term.substr(0, pos));
    r.values = {trim(term.substr(pos + 2))};
  } else if ((pos = term.find('=')) != std::string::npos) {
    r.key = trim(term.substr(0, pos));
    r.values = {trim(term.substr(pos + 1))};
  } else if (setOps && (pos = term.find('(')) != std::string::npos) {
    std::string head = trim(term.substr(0, pos));
    size_t sp = head.find_last_of(" \t");
    if (sp == std::string::npos || term.back() != ')') return bad(term, "expected KEY in (V,...)");
    std::string op = head.substr(sp + 1);
    r.key = trim(head.substr(0, sp));
    if (op == "in") {
      r.op = Requirement::Op::kIn;
    } else if (op == "notin") {
      r.op = Requirement::Op::kNotIn;
    } else {
      return bad(term, "unknown operator \"" + op + "\"");
    }
    std::string inner = term.substr(pos + 1, term.size() - pos - 2);
    size_t start = 0;
    for (int guard = 0; guard < 10000; ++guard) {
      size_t comma = inner.find(',', start);
      r.values.push_back(trim(inner.substr(start, comma - start)));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  } else if (setOps) {
    r.key = trim(term);
    r.op = Requirement::Op::kExists;
    if (r.key.find_first_of(" \t") != std::string::npos) return bad(term, "unexpected space");
  } else {
    return bad(term, "expected KEY=VALUE or KEY!=VALUE");
  }
  if (r.key.empty()) return bad(term, "missing key");
  return r;
}

bool eval(const Requirement& r, const std::optional<std::string>& v) {
  switch (r.op) {
    case Requirement::Op::kEquals:
      return v && *v == r.values[0];
    case Requirement::Op::kNotEquals:
      return !v || *v != r.values[0];
    case Requirement::Op::kIn:
      return v && std::find(r.values.begin(), r.values.end(), *v) != r.values.end();
    case Requirement::Op::kNotIn:
      return !v || std::find(r.values.begin(), r.values.end(), *v) == r.values.end();
    case Requirement::Op::kExists:
      return v.has_value();
    case Requirement::Op::kDoesNotExist:
      return !v.has_value();
  }
  return false;
}

}  // namespace

Result<LabelSelector> LabelSelector::parse(std::string_view text) {
  LabelSelector sel;
  if (trim(text).empty()) return sel;
  auto terms = splitTerms(text);
  if (!terms) return terms.error();
  for (const auto& t : *terms) {
    auto r = parseTerm(t, true);
    if (!r) return r.error();
    sel.reqs_.push_back(std::move(r.value()));
  }
  return sel;
}

bool LabelSelector::matches(const std::map<std::string, std::string>& labels) const {
  for (const auto& r : reqs_) {
    auto it = labels.find(r.key);
    std::optional<std::string> v;
    if (it != labels.end()) v = it->second;
    if (!eval(r, v)) return false;
  }
  return true;
}

Result<FieldSelector> FieldSelector::parse(std::string_view text,
                                           const std::vector<std::string>& supported) {
  FieldSelector sel;
  if (trim(text).empty()) return sel;
  auto terms = splitTerms(text);
  if (!terms) return terms.error();
  for (const auto& t : *terms) {
    auto r = parseTerm(t, false);
    if (!r) return r.error();
    if (std::find(supported.begin(), supported.end(), r->key) == supported.end()) {
      return Error{VMHOST_ERR_INVALID_ARGUMENT, "field label not supported: " + r->key, false};
    }
    sel.reqs_.push_back(std::move(r.value()));
  }
  return sel;
}

bool FieldSelector::matches(const std::function<std::string(const std::string&)>& value) const {
  for (const auto& r : reqs_) {
    if (!eval(r, value(r.key))) return false;
  }
  return true;
}

std::optional<std::string> FieldSelector::pinnedName() const {
  for (const auto& r : reqs_) {
    if (r.key == "metadata.name" && r.op == Requirement::Op::kEquals) return r.values[0];
  }
  return std::nullopt;
}

}  // namespace vmhost::api
