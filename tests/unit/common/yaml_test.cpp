// The one YAML -> JSON conversion (common/yaml.h): its scalar rules, what it
// refuses, and that the config loader, the API and vmctl get the same JSON.
#define BOOST_TEST_MODULE common_yaml
#include <boost/test/unit_test.hpp>

#include "common/yaml.h"

#include <yaml-cpp/yaml.h>

#include <string>

using vmhost::yaml::parseAllToJson;
using vmhost::yaml::parseToJson;
using vmhost::yaml::plainScalarJson;

namespace {

std::string json(const std::string& yaml) {
  auto r = parseToJson(yaml);
  BOOST_REQUIRE_MESSAGE(r.ok(), yaml + ": " + (r.ok() ? "" : r.error().message));
  return r.value();
}

std::string error(const std::string& yaml, vmhost::yaml::Limits limits = {}) {
  auto r = parseToJson(yaml, limits);
  BOOST_REQUIRE_MESSAGE(!r.ok(), yaml + " converted to " + (r.ok() ? r.value() : ""));
  return r.error().message;
}

}  // namespace

BOOST_AUTO_TEST_CASE(nulls_and_booleans_follow_the_core_schema) {
  for (const char* s : {"", "~", "null", "Null", "NULL"}) BOOST_TEST(plainScalarJson(s) == "null");
  for (const char* s : {"true", "True", "TRUE"}) BOOST_TEST(plainScalarJson(s) == "true");
  for (const char* s : {"false", "False", "FALSE"}) BOOST_TEST(plainScalarJson(s) == "false");
  // YAML 1.1's booleans are strings here (the "Norway problem").
  for (const char* s : {"yes", "no", "on", "off", "y", "n", "nULL", "tRUE"}) {
    BOOST_TEST(plainScalarJson(s).empty(), s);
  }
}

BOOST_AUTO_TEST_CASE(integers_decimal_octal_hex) {
  BOOST_TEST(plainScalarJson("0") == "0");
  BOOST_TEST(plainScalarJson("42") == "42");
  BOOST_TEST(plainScalarJson("-17") == "-17");
  BOOST_TEST(plainScalarJson("+17") == "17");
  BOOST_TEST(plainScalarJson("007") == "7");
  BOOST_TEST(plainScalarJson("0o17") == "15");
  BOOST_TEST(plainScalarJson("0x1F") == "31");
  BOOST_TEST(plainScalarJson("9223372036854775807") == "9223372036854775807");
  BOOST_TEST(plainScalarJson("-9223372036854775808") == "-9223372036854775808");
  // Beyond int64: still a number, as written.
  BOOST_TEST(plainScalarJson("99999999999999999999") == "99999999999999999999");
  for (const char* s : {"0o8", "0xG", "1_000", "12a", "0b101", "1,000", "- 1"}) {
    BOOST_TEST(plainScalarJson(s).empty(), s);
  }
}

BOOST_AUTO_TEST_CASE(floats_become_valid_json_numbers) {
  BOOST_TEST(plainScalarJson("1.5") == "1.5");
  BOOST_TEST(plainScalarJson("-0.25") == "-0.25");
  BOOST_TEST(plainScalarJson("+1.5") == "1.5");
  BOOST_TEST(plainScalarJson(".5") == "0.5");
  BOOST_TEST(plainScalarJson("-.5") == "-0.5");
  BOOST_TEST(plainScalarJson("1.") == "1.0");
  BOOST_TEST(plainScalarJson("1e3") == "1e3");
  BOOST_TEST(plainScalarJson("1.E-3") == "1.0E-3");
  // No JSON for these: strings.
  for (const char* s : {".inf", "-.Inf", ".nan", ".", "1e", "e3", "1.2.3", "1e3.5"}) {
    BOOST_TEST(plainScalarJson(s).empty(), s);
  }
}

BOOST_AUTO_TEST_CASE(quoted_and_tagged_scalars_are_strings) {
  BOOST_TEST(json("a: \"42\"") == R"({"a":"42"})");
  BOOST_TEST(json("a: 'true'") == R"({"a":"true"})");
  BOOST_TEST(json("a: !!str 42") == R"({"a":"42"})");
  BOOST_TEST(json("a: ''") == R"({"a":""})");
  BOOST_TEST(json("a:") == R"({"a":null})");
  BOOST_TEST(json("a: 42\nb: yes\nc: 1.5\nd: [1, x, null]") ==
             R"({"a":42,"b":"yes","c":1.5,"d":[1,"x",null]})");
}

BOOST_AUTO_TEST_CASE(strings_are_escaped) {
  BOOST_TEST(json("a: \"q\\\"b\\\\\\t\\n\\x01\"") == R"({"a":"q\"b\\\t\n\u0001"})");
  BOOST_TEST(json("a: héllo") == "{\"a\":\"héllo\"}");
}

BOOST_AUTO_TEST_CASE(what_is_refused) {
  BOOST_TEST(error("? [a, b]\n: 1\n").find("a mapping key must be a string") != std::string::npos);
  // "\xff" in YAML is U+00FF, valid; raw bytes that are not UTF-8 are not.
  BOOST_TEST(json("a: \"\\xff\"") == "{\"a\":\"\xc3\xbf\"}");
  BOOST_TEST(error("a: b\xff\xfe").find("not valid UTF-8") != std::string::npos);
  BOOST_TEST(error("a: [x\nb: 1\n").rfind("line ", 0) == 0);
  BOOST_TEST(error("[[[[1]]]]", {2, 0}).find("nested more than 2 levels") != std::string::npos);
  std::string laughs = "a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n";
  BOOST_TEST(error(laughs, {100, 30}).find("too many nodes") != std::string::npos);
  BOOST_TEST(parseToJson(laughs, {100, 200}).ok());  // 112 nodes
}

BOOST_AUTO_TEST_CASE(streams_keep_every_document) {
  auto docs = parseAllToJson("a: 1\n---\n---\nb: x\n");
  BOOST_REQUIRE(docs.ok());
  BOOST_REQUIRE(docs.value().size() == 3u);
  BOOST_TEST(docs.value()[0] == R"({"a":1})");
  BOOST_TEST(docs.value()[1] == "null");
  BOOST_TEST(docs.value()[2] == R"({"b":"x"})");
}
