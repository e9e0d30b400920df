// The author layer as a plugin gets it: decodeConfig's messages (the key
// and the problem in words) and the strict reading of requests (a field
// that does not read as its type fails the call as INVALID_ARGUMENT, naming
// the field).
#define BOOST_TEST_MODULE sdk author layer
#include <boost/test/unit_test.hpp>

#include "config_test.capnp.h"

#include <vmhost/schema/scheduler.capnp.h>
#include <vmhost/schema/storage.capnp.h>
#include <vmhost/plugin.hpp>
#include <vmhost/plugin_config.hpp>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <string>

namespace {

// The message decodeConfig refuses `json` with ("" when it accepts it).
std::string refusal(const std::string& json) {
  vmhost::sdk::PluginContext ctx(json, nullptr);
  capnp::MallocMessageBuilder message;
  try {
    (void)vmhost::sdk::decodeConfig<TestConfig>(ctx, message);
    return "";
  } catch (const vmhost::sdk::Error& e) {
    BOOST_TEST(e.code() == VMHOST_ERR_INVALID_ARGUMENT);
    BOOST_TEST(!e.retryable());
    return e.what();
  }
}

const std::string kKnown =
    "(known keys: pool, maxPoolBytes, parallel, offset, ratio, verbose, networks, tags, source, "
    "limits, empty)";

}  // namespace

BOOST_AUTO_TEST_CASE(a_good_config_decodes_with_defaults_for_absent_keys) {
  vmhost::sdk::PluginContext ctx(
      R"({"maxPoolBytes": "18446744073709551615", "parallel": 4, "offset": -128,
          "ratio": 2.5, "verbose": true, "tags": ["a", "b"], "source": {"url": "http://x"},
          "networks": [{"name": "n0"}, {"name": "n1", "cidr": "10.0.0.0/8", "forward": "route", "address": "10.0.0.1"}],
          "limits": {"cpuMillis": 1500}, "empty": {}})",
      nullptr);
  capnp::MallocMessageBuilder message;
  auto c = vmhost::sdk::decodeConfig<TestConfig>(ctx, message);
  BOOST_TEST(std::string(c.getPool().cStr()) == "/var/lib/test/pool");
  BOOST_TEST(c.getMaxPoolBytes() == UINT64_MAX);
  BOOST_TEST(c.getParallel() == 4u);
  BOOST_TEST(c.getOffset() == -128);
  BOOST_TEST(c.getRatio() == 2.5f);
  BOOST_TEST(c.getVerbose());
  BOOST_TEST(c.getTags().size() == 2u);
  BOOST_TEST(std::string(c.getTags()[1].cStr()) == "b");
  BOOST_TEST(c.getSource().isUrl());
  BOOST_TEST(c.getNetworks()[0].isDhcp());
  BOOST_TEST(std::string(c.getNetworks()[1].getAddress().cStr()) == "10.0.0.1");
  BOOST_TEST(c.getNetworks().size() == 2u);
  BOOST_TEST((c.getNetworks()[0].getForward() == Forward::NAT));
  BOOST_TEST((c.getNetworks()[1].getForward() == Forward::ROUTE));
  BOOST_TEST(std::string(c.getNetworks()[1].getCidr().cStr()) == "10.0.0.0/8");
  BOOST_TEST(c.getLimits().getCpuMillis() == 1500u);
  BOOST_TEST(refusal("{}") == "");
}

BOOST_AUTO_TEST_CASE(unknown_key) {
  BOOST_TEST(refusal(R"({"pol": "/x"})") == "config: unknown key \"pol\" " + kKnown);
  BOOST_TEST(refusal(R"({"networks": [{"name": "a"}, {"nmae": "b"}]})") ==
             "config: unknown key \"networks[1].nmae\" (known keys: name, cidr, forward, dhcp, "
             "address)");
  BOOST_TEST(refusal(R"({"limits": {"memoryBytes": 1}})") ==
             "config: unknown key \"limits.memoryBytes\" (known keys: cpuMillis)");
  BOOST_TEST(refusal(R"({"empty": {"x": 1}})") ==
             "config: unknown key \"empty.x\" (it takes no keys)");
}

BOOST_AUTO_TEST_CASE(wrong_type) {
  BOOST_TEST(refusal(R"({"maxPoolBytes": "lots"})") ==
             "config: key \"maxPoolBytes\": expected a number, got the string \"lots\"");
  BOOST_TEST(refusal(R"({"parallel": true})") ==
             "config: key \"parallel\": expected a number, got true");
  BOOST_TEST(refusal(R"({"pool": 5})") ==
             "config: key \"pool\": expected a string, got the number 5");
  BOOST_TEST(refusal(R"({"verbose": "yes"})") ==
             "config: key \"verbose\": expected true or false, got the string \"yes\"");
  BOOST_TEST(refusal(R"({"tags": "a"})") ==
             "config: key \"tags\": expected an array, got the string \"a\"");
  BOOST_TEST(refusal(R"({"limits": null})") ==
             "config: key \"limits\": expected an object, got null");
  BOOST_TEST(refusal(R"({"parallel": 1.5})") ==
             "config: key \"parallel\": expected a whole number, got 1.5");
  BOOST_TEST(refusal("[]") == "config: expected an object, got an array");
  BOOST_TEST(refusal("null") == "config: expected an object, got null");
}

BOOST_AUTO_TEST_CASE(nested_path) {
  BOOST_TEST(refusal(R"({"networks": [{"name": "a"}, {"name": "b", "cidr": 10}]})") ==
             "config: key \"networks[1].cidr\": expected a string, got the number 10");
  BOOST_TEST(refusal(R"({"tags": ["a", 2]})") ==
             "config: key \"tags[1]\": expected a string, got the number 2");
  BOOST_TEST(refusal(R"({"limits": {"cpuMillis": -1}})") ==
             "config: key \"limits.cpuMillis\": -1 is out of range (0 to 4294967295)");
}

BOOST_AUTO_TEST_CASE(bad_enum) {
  BOOST_TEST(refusal(R"({"networks": [{"forward": "bridge"}]})") ==
             "config: key \"networks[0].forward\": unknown value \"bridge\" (expected one of: "
             "nat, none, route)");
  BOOST_TEST(refusal(R"({"networks": [{"forward": 1}]})") ==
             "config: key \"networks[0].forward\": expected one of: nat, none, route, got the "
             "number 1");
}

BOOST_AUTO_TEST_CASE(out_of_range_number) {
  BOOST_TEST(refusal(R"({"parallel": 5000000000})") ==
             "config: key \"parallel\": 5000000000 is out of range (0 to 4294967295)");
  BOOST_TEST(refusal(R"({"offset": 128})") ==
             "config: key \"offset\": 128 is out of range (-128 to 127)");
  BOOST_TEST(refusal(R"({"offset": "-129"})") ==
             "config: key \"offset\": -129 is out of range (-128 to 127)");
  BOOST_TEST(refusal(R"({"maxPoolBytes": -1})") ==
             "config: key \"maxPoolBytes\": -1 is out of range (0 to 18446744073709551615)");
  BOOST_TEST(refusal(R"({"maxPoolBytes": "18446744073709551616"})") ==
             "config: key \"maxPoolBytes\": 18446744073709551616 is out of range (0 to "
             "18446744073709551615)");
}

BOOST_AUTO_TEST_CASE(duplicates_unions_and_syntax) {
  BOOST_TEST(refusal(R"({"pool": "/a", "pool": "/b"})") == "config: key \"pool\": given twice");
  BOOST_TEST(refusal(R"({"source": {"path": "/a", "url": "http://b"}})") ==
             "config: keys \"source.path\" and \"source.url\" are alternatives (members of one "
             "union): give one of them");
  BOOST_TEST(refusal(R"({"networks": [{"dhcp": null, "address": "10.0.0.1"}]})") ==
             "config: keys \"networks[0].dhcp\" and \"networks[0].address\" are alternatives "
             "(members of one union): give one of them");
  BOOST_TEST(refusal(R"({"networks": [{"dhcp": true}]})") ==
             "config: key \"networks[0].dhcp\": expected null, got true");
  BOOST_TEST(refusal("{not json") == "config: not valid JSON (Unexpected input in JSON message)");
  BOOST_TEST(refusal(R"({"pool":)") == "config: not valid JSON (JSON message ends prematurely)");
  // Long values are cut in the message, not quoted whole.
  std::string long_value(500, 'x');
  BOOST_TEST(refusal(R"({"parallel": ")" + long_value + "\"}") ==
             "config: key \"parallel\": expected a number, got the string \"" +
                 std::string(60, 'x') + "...\"");
}

// --- strict reading of requests ---------------------------------------------------

namespace {

// The Error Request::root<T> throws for `words` ("" when it reads).
template <typename T>
std::string readError(kj::ArrayPtr<const capnp::word> words) {
  vmhost::sdk::detail::Request request(reinterpret_cast<const uint8_t*>(words.begin()),
                                       words.size() * sizeof(capnp::word));
  try {
    (void)request.root<T>();
    return "";
  } catch (const vmhost::sdk::Error& e) {
    BOOST_TEST(e.code() == VMHOST_ERR_INVALID_ARGUMENT);
    return e.what();
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_field_that_does_not_read_as_its_type_is_refused_naming_it) {
  {
    capnp::MallocMessageBuilder message;
    auto wrong = message.initRoot<WrongVolumeRequest>();
    wrong.initVm().setNamespace("default");
    wrong.getVm().initName(2);
    auto words = capnp::messageToFlatArray(message);
    std::string error = readError<vmhost::schema::VolumeRequest>(words);
    BOOST_TEST(error.rfind("malformed request: field vm.name: ", 0) == 0u, error);
  }
  {
    capnp::MallocMessageBuilder message;
    auto wrong = message.initRoot<WrongScheduleRequest>();
    wrong.initVm();
    auto nodes = wrong.initNodes(3);
    nodes[2].initName(1);
    auto words = capnp::messageToFlatArray(message);
    std::string error = readError<vmhost::schema::ScheduleRequest>(words);
    BOOST_TEST(error.rfind("malformed request: field nodes[2].name: ", 0) == 0u, error);
  }
  {
    capnp::MallocMessageBuilder message;
    auto rows = message.initRoot<WrongGrid>().initRows(2);
    rows.init(1, 3);  // rows[0] stays null, which reads as an empty list
    auto words = capnp::messageToFlatArray(message);
    std::string error = readError<Grid>(words);
    BOOST_TEST(error.rfind("malformed request: field rows[1]: ", 0) == 0u, error);
    capnp::MallocMessageBuilder good;
    good.initRoot<Grid>().initRows(1).init(0, 2).set(1, "b");
    BOOST_TEST(readError<Grid>(capnp::messageToFlatArray(good)) == "");
  }
  {
    // The same request with a proper text reads.
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<vmhost::schema::ScheduleRequest>();
    request.initNodes(3)[2].setName("node-c");
    request.initRemovedNodes(1).set(0, "gone");
    auto words = capnp::messageToFlatArray(message);
    BOOST_TEST(readError<vmhost::schema::ScheduleRequest>(words) == "");
  }
}
