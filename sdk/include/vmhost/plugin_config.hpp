// Decoding a plugin's config (JSON text from the host's config file) into a
// Cap'n Proto struct the plugin declares, with unknown keys refused:
//
//   # config.capnp, built with vmhost_add_plugin(... SCHEMAS config.capnp)
//   struct LocalConfig { pool @0 :Text = "/var/lib/vmhost/pool"; }
//
//   capnp::MallocMessageBuilder message;
//   auto config = vmhost::sdk::decodeConfig<LocalConfig>(ctx, message);
//
// A bad config throws vmhost::sdk::Error(INVALID_ARGUMENT, "config: ...")
// naming the key and the problem, which fails the plugin's create() with
// that message:
//
//   config: unknown key "pol" (known keys: pool)
//   config: key "reserveMemoryBytes": expected a number, got the string "lots"
//   config: key "networks[1].forward": unknown value "bridge" (expected one of: nat, none)
//   config: key "parallelConnections": 5000000000 is out of range (0 to 4294967295)
//
// How JSON maps onto the struct: an object per struct or group, keys are
// field names; a union takes one of its members' keys; numbers for numeric
// fields (integers also as strings holding one, which is how Cap'n Proto
// writes 64-bit integers; JSON numbers are doubles, so integers above 2^53
// need the string form to stay exact); true/false for Bool; strings for
// Text and for enums (the enumerant's name); arrays for lists and Data
// (bytes 0-255). Absent keys keep the schema's defaults.
#pragma once

#include <vmhost/plugin.hpp>

#include <capnp/compat/json.h>
#include <capnp/dynamic.h>
#include <capnp/message.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace vmhost::sdk {
namespace detail {

// Walks the parsed JSON against the struct's schema and fills the struct
// through the dynamic API, so that every error knows the key it is at. (One
// pass that both checks and decodes, so the check and the decoder cannot
// disagree.)
class ConfigDecoder {
 public:
  using Json = capnp::JsonValue;

  void decodeRoot(Json::Reader value, capnp::DynamicStruct::Builder out) {
    if (value.which() != Json::OBJECT) fail("expected an object, got " + describe(value));
    decodeStruct(value, out, "");
  }

  [[noreturn]] static void fail(const std::string& problem) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT, "config: " + problem);
  }

  // A string as the message quotes it: JSON escapes, at most ~60 bytes.
  static std::string quote(std::string_view s) {
    constexpr size_t kMax = 60;
    bool cut = s.size() > kMax;
    if (cut) {
      size_t end = kMax;
      // Not inside a UTF-8 sequence.
      while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
      s = s.substr(0, end);
    }
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += c;
      } else if (c == '\n') {
        out += "\\n";
      } else if (static_cast<unsigned char>(c) < 0x20) {
        static const char* hex = "0123456789abcdef";
        out += "\\u00";
        out += hex[(c >> 4) & 0xF];
        out += hex[c & 0xF];
      } else {
        out += c;
      }
    }
    return out + (cut ? "...\"" : "\"");
  }

  static std::string number(double d) {
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
    char buf[64];
    // Fixed notation where it is short (5000000000, not 5e+09).
    bool fixed = d == 0 || (std::fabs(d) >= 1e-4 && std::fabs(d) < 1e21);
    auto r = fixed ? std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::fixed)
                   : std::to_chars(buf, buf + sizeof(buf), d);
    return r.ec == std::errc() ? std::string(buf, r.ptr) : std::to_string(d);
  }

  // The parser's reason without the check that produced it: "expected
  // !input.exhausted(); JSON message ends prematurely." -> "JSON message
  // ends prematurely".
  static std::string parserProblem(std::string_view description) {
    if (description.rfind("expected ", 0) == 0) {
      size_t cut = description.find("]; ");
      if (cut == std::string_view::npos)
        cut = description.find("; ");
      else
        cut += 1;
      if (cut != std::string_view::npos) description.remove_prefix(cut + 2);
    }
    while (!description.empty() && (description.back() == '.' || description.back() == ' ')) {
      description.remove_suffix(1);
    }
    return std::string(description);
  }

  static std::string describe(Json::Reader v) {
    switch (v.which()) {
      case Json::NULL_:
        return "null";
      case Json::BOOLEAN:
        return v.getBoolean() ? "true" : "false";
      case Json::NUMBER:
        return "the number " + number(v.getNumber());
      case Json::STRING:
        return "the string " + quote(text(v.getString()));
      case Json::ARRAY:
        return "an array";
      case Json::OBJECT:
        return "an object";
      default:
        return "a function call";
    }
  }

 private:
  static std::string_view text(capnp::Text::Reader t) { return {t.begin(), t.size()}; }

  [[noreturn]] static void failAt(const std::string& path, const std::string& problem) {
    fail("key " + quote(path) + ": " + problem);
  }

  [[noreturn]] static void expected(const std::string& path, const std::string& what,
                                    Json::Reader got) {
    failAt(path, "expected " + what + ", got " + describe(got));
  }

  static std::string names(capnp::StructSchema schema) {
    std::string out;
    for (auto field : schema.getFields()) {
      if (!out.empty()) out += ", ";
      out += field.getProto().getName().cStr();
    }
    return out;
  }

  static std::string names(capnp::EnumSchema schema) {
    std::string out;
    for (auto e : schema.getEnumerants()) {
      if (!out.empty()) out += ", ";
      out += e.getProto().getName().cStr();
    }
    return out;
  }

  // Where a value goes: a struct's field or a list's element.
  class Slot {
   public:
    Slot(capnp::DynamicStruct::Builder parent, capnp::StructSchema::Field field)
        : parent_(parent), field_(field), inList_(false) {}
    Slot(capnp::DynamicList::Builder list, uint32_t index)
        : list_(list), index_(index), inList_(true) {}

    void set(const capnp::DynamicValue::Reader& value) {
      if (inList_) {
        list_.set(index_, value);
      } else {
        parent_.set(field_, value);
      }
    }
    capnp::DynamicValue::Builder init(uint32_t size) {
      return inList_ ? list_.init(index_, size) : parent_.init(field_, size);
    }
    capnp::DynamicStruct::Builder initStruct() {
      return inList_ ? list_[index_].as<capnp::DynamicStruct>()
                     : parent_.init(field_).as<capnp::DynamicStruct>();
    }

   private:
    capnp::DynamicStruct::Builder parent_;
    capnp::StructSchema::Field field_;
    capnp::DynamicList::Builder list_;
    uint32_t index_ = 0;
    bool inList_;
  };

  void decodeStruct(Json::Reader value, capnp::DynamicStruct::Builder out,
                    const std::string& path) {
    auto schema = out.getSchema();
    std::vector<std::string_view> seen;
    std::string unionMember;  // the key that chose this struct's union member
    for (auto entry : value.getObject()) {
      std::string_view key = text(entry.getName());
      std::string at = path.empty() ? std::string(key) : path + "." + std::string(key);
      KJ_IF_MAYBE (field, schema.findFieldByName(entry.getName())) {
        for (auto other : seen) {
          if (other == key) failAt(at, "given twice");
        }
        seen.push_back(key);
        if (field->getProto().getDiscriminantValue() != capnp::schema::Field::NO_DISCRIMINANT) {
          if (!unionMember.empty()) {
            fail("keys " + quote(unionMember) + " and " + quote(at) +
                 " are alternatives (members of one union): give one of them");
          }
          unionMember = at;
        }
        decodeValue(field->getType(), entry.getValue(), Slot(out, *field), at);
      } else {
        std::string known = names(schema);
        fail("unknown key " + quote(at) +
             (known.empty()
                  ? std::string(" (") + (path.empty() ? "the config" : "it") + " takes no keys)"
                  : " (known keys: " + known + ")"));
      }
    }
  }

  template <typename Int>
  static bool parseInt(std::string_view s, Int& out, bool& outOfRange) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    outOfRange = r.ec == std::errc::result_out_of_range;
    return r.ptr == s.data() + s.size() && (r.ec == std::errc() || outOfRange) && !s.empty();
  }

  static void integer(capnp::Type type, Json::Reader value, Slot slot, const std::string& path) {
    int64_t min = 0;
    uint64_t max = 0;
    switch (type.which()) {
      case capnp::schema::Type::INT8:
        min = INT8_MIN, max = INT8_MAX;
        break;
      case capnp::schema::Type::INT16:
        min = INT16_MIN, max = INT16_MAX;
        break;
      case capnp::schema::Type::INT32:
        min = INT32_MIN, max = INT32_MAX;
        break;
      case capnp::schema::Type::INT64:
        min = INT64_MIN, max = INT64_MAX;
        break;
      case capnp::schema::Type::UINT8:
        max = UINT8_MAX;
        break;
      case capnp::schema::Type::UINT16:
        max = UINT16_MAX;
        break;
      case capnp::schema::Type::UINT32:
        max = UINT32_MAX;
        break;
      default:
        max = UINT64_MAX;
        break;
    }
    auto outOfRange = [&](const std::string& shown) {
      failAt(path, shown + " is out of range (" + std::to_string(min) + " to " +
                       std::to_string(max) + ")");
    };
    bool negative = false;
    uint64_t magnitude = 0;  // of the value; negative: its absolute value
    if (value.which() == Json::NUMBER) {
      double d = value.getNumber();
      if (!std::isfinite(d) || std::floor(d) != d) {
        failAt(path, "expected a whole number, got " + number(d));
      }
      // Beyond 64 bits either way: out of range for every integer type.
      if (d < -9223372036854775808.0 || d >= 18446744073709551616.0) outOfRange(number(d));
      negative = d < 0;
      magnitude = static_cast<uint64_t>(negative ? -d : d);
    } else if (value.which() == Json::STRING) {
      std::string_view s = text(value.getString());
      bool tooBig = false;
      if (!s.empty() && s[0] == '-') {
        int64_t v = 0;
        if (!parseInt(s, v, tooBig)) expected(path, "a number", value);
        if (tooBig) outOfRange(std::string(s));
        negative = v < 0;
        magnitude = negative ? static_cast<uint64_t>(-(v + 1)) + 1 : static_cast<uint64_t>(v);
      } else {
        if (!parseInt(s, magnitude, tooBig)) expected(path, "a number", value);
        if (tooBig) outOfRange(std::string(s));
      }
    } else {
      expected(path, "a number", value);
    }
    std::string shown = value.which() == Json::STRING ? std::string(text(value.getString()))
                                                      : number(value.getNumber());
    if (negative) {
      if (min == 0 || magnitude > static_cast<uint64_t>(-(min + 1)) + 1) outOfRange(shown);
      slot.set(magnitude == static_cast<uint64_t>(INT64_MAX) + 1
                   ? INT64_MIN
                   : -static_cast<int64_t>(magnitude));
    } else {
      if (magnitude > max) outOfRange(shown);
      if (min < 0) {
        slot.set(static_cast<int64_t>(magnitude));
      } else {
        slot.set(magnitude);
      }
    }
  }

  static double floating(Json::Reader value, const std::string& path) {
    if (value.which() == Json::NUMBER) return value.getNumber();
    if (value.which() == Json::STRING) {
      std::string_view s = text(value.getString());
      // Cap'n Proto's JSON spelling of the values JSON numbers cannot hold.
      if (s == "NaN") return std::nan("");
      if (s == "Infinity") return HUGE_VAL;
      if (s == "-Infinity") return -HUGE_VAL;
      double d = 0;
      auto r = std::from_chars(s.data(), s.data() + s.size(), d);
      if (!s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size()) return d;
    }
    expected(path, "a number", value);
  }

  void decodeValue(capnp::Type type, Json::Reader value, Slot slot, const std::string& path) {
    switch (type.which()) {
      case capnp::schema::Type::VOID:
        if (value.which() != Json::NULL_) expected(path, "null", value);
        slot.set(capnp::VOID);
        return;
      case capnp::schema::Type::BOOL:
        if (value.which() != Json::BOOLEAN) expected(path, "true or false", value);
        slot.set(value.getBoolean());
        return;
      case capnp::schema::Type::INT8:
      case capnp::schema::Type::INT16:
      case capnp::schema::Type::INT32:
      case capnp::schema::Type::INT64:
      case capnp::schema::Type::UINT8:
      case capnp::schema::Type::UINT16:
      case capnp::schema::Type::UINT32:
      case capnp::schema::Type::UINT64:
        integer(type, value, slot, path);
        return;
      case capnp::schema::Type::FLOAT32:
        // Out of Float32's range becomes infinity, which the plugin's own
        // checks name (as "must be finite").
        slot.set(static_cast<float>(floating(value, path)));
        return;
      case capnp::schema::Type::FLOAT64:
        slot.set(floating(value, path));
        return;
      case capnp::schema::Type::TEXT:
        if (value.which() != Json::STRING) expected(path, "a string", value);
        slot.set(value.getString());
        return;
      case capnp::schema::Type::DATA: {
        if (value.which() != Json::ARRAY) expected(path, "an array of bytes (0 to 255)", value);
        auto items = value.getArray();
        auto bytes = slot.init(items.size()).as<capnp::Data>();
        for (uint32_t i = 0; i < items.size(); ++i) {
          auto item = items[i];
          double d = item.which() == Json::NUMBER ? item.getNumber() : -1;
          if (!(d >= 0 && d <= 255 && std::floor(d) == d)) {
            expected(path + "[" + std::to_string(i) + "]", "a byte (0 to 255)", item);
          }
          bytes[i] = static_cast<capnp::byte>(d);
        }
        return;
      }
      case capnp::schema::Type::LIST: {
        if (value.which() != Json::ARRAY) expected(path, "an array", value);
        auto items = value.getArray();
        auto element = type.asList().getElementType();
        auto list = slot.init(items.size()).as<capnp::DynamicList>();
        for (uint32_t i = 0; i < items.size(); ++i) {
          decodeValue(element, items[i], Slot(list, i), path + "[" + std::to_string(i) + "]");
        }
        return;
      }
      case capnp::schema::Type::ENUM: {
        auto schema = type.asEnum();
        if (value.which() != Json::STRING) {
          expected(path, "one of: " + names(schema), value);
        }
        KJ_IF_MAYBE (e, schema.findEnumerantByName(value.getString())) {
          slot.set(capnp::DynamicEnum(*e));
        } else {
          failAt(path, "unknown value " + quote(text(value.getString())) +
                           " (expected one of: " + names(schema) + ")");
        }
        return;
      }
      case capnp::schema::Type::STRUCT:
        if (value.which() != Json::OBJECT) expected(path, "an object", value);
        decodeStruct(value, slot.initStruct(), path);
        return;
      default:
        failAt(path, "this field cannot be set from a config");
    }
  }
};

}  // namespace detail

template <typename T>
typename T::Reader decodeConfig(const PluginContext& ctx, capnp::MallocMessageBuilder& message) {
  auto root = message.initRoot<T>();
  auto text = ctx.configJson();
  capnp::MallocMessageBuilder parsed;
  auto json = parsed.initRoot<capnp::JsonValue>();
  try {
    capnp::JsonCodec codec;
    codec.setMaxNestingDepth(32);
    codec.decodeRaw(kj::ArrayPtr<const char>(text.data(), text.size()), json);
  } catch (const kj::Exception& e) {
    detail::ConfigDecoder::fail(
        "not valid JSON (" + detail::ConfigDecoder::parserProblem(e.getDescription().cStr()) + ")");
  }
  detail::ConfigDecoder().decodeRoot(json.asReader(), capnp::toDynamic(root));
  return root.asReader();
}

}  // namespace vmhost::sdk
