// Events: the codec and validation of core/v1 Event, and the recorder's
// promises (api/event_recorder.h) against a real SQLite store: an Event per
// record, repeats aggregated into a count, a per-object rate limit so a
// flapping VM cannot fill the store, a bounded queue, and expiry after the
// TTL.
#define BOOST_TEST_MODULE api_events
#include <boost/test/unit_test.hpp>

#include "api/event_recorder.h"
#include "api/events.h"
#include "api/timestamps.h"
#include "store/sqlite/sqlite_store.h"

#include <cstdlib>
#include <filesystem>
#include <string>

using namespace vmhost;
using namespace vmhost::api;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  fs::path dir;
  std::unique_ptr<store::SqliteStore> store;
  Fixture() {
    std::string tmpl = (fs::temp_directory_path() / "vmhost-events-test-XXXXXX").string();
    BOOST_TEST_REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    dir = tmpl;
    store::SqliteStoreOptions o;
    o.syncEveryCommit = false;
    auto s = store::SqliteStore::open(dir.string(), o);
    BOOST_TEST_REQUIRE(s.ok());
    store = std::move(s.value());
  }
  ~Fixture() {
    store.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::vector<Event> events() {
    auto l = store->list(kEventsResource, "");
    BOOST_TEST_REQUIRE(l.ok());
    std::vector<Event> out;
    for (const auto& o : l->items) {
      auto e = decodeStoredEvent(o);
      BOOST_TEST_REQUIRE(e.ok());
      out.push_back(e.value());
    }
    return out;
  }
};

VirtualMachine vm(const std::string& name, const std::string& uid) {
  VirtualMachine v;
  v.metadata.ns = "default";
  v.metadata.name = name;
  v.metadata.uid = uid;
  return v;
}

EventRecord started(const VirtualMachine& v, std::string message = "the domain is running") {
  return vmEvent(v, kEventTypeNormal, "Started", std::move(message), {"vmhost-node", "n1"});
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(a_record_becomes_an_event_about_the_vm, Fixture) {
  EventRecorder r(*store, nullptr);
  r.record(started(vm("vm1", "uid-1")));
  r.flush();
  auto all = events();
  BOOST_TEST_REQUIRE(all.size() == 1u);
  const Event& e = all[0];
  BOOST_TEST(e.metadata.ns == "default");
  BOOST_TEST(e.metadata.name.rfind("vm1.", 0) == 0);
  BOOST_TEST(e.involvedObject.kind == "VirtualMachine");
  BOOST_TEST(e.involvedObject.apiVersion == "vmhost.io/v1");
  BOOST_TEST(e.involvedObject.name == "vm1");
  BOOST_TEST(e.involvedObject.uid == "uid-1");
  BOOST_TEST(e.type == "Normal");
  BOOST_TEST(e.reason == "Started");
  BOOST_TEST(e.source.component == "vmhost-node");
  BOOST_TEST(e.source.host == "n1");
  BOOST_TEST(e.count == 1);
  BOOST_TEST(!e.firstTimestamp.empty());
  BOOST_TEST(e.firstTimestamp == e.lastTimestamp);
  BOOST_TEST(validateEvent(e).empty());
}

BOOST_FIXTURE_TEST_CASE(repeats_raise_the_count_instead_of_adding_events, Fixture) {
  EventRecorder r(*store, nullptr);
  auto v = vm("vm1", "uid-1");
  for (int i = 0; i < 5; ++i) r.record(started(v));
  r.record(started(v, "another message"));
  r.flush();
  auto all = events();
  BOOST_TEST_REQUIRE(all.size() == 2u);
  int64_t total = 0;
  for (const auto& e : all) total += e.count;
  BOOST_TEST(total == 6);
  bool fiveTimes = all[0].count == 5 || all[1].count == 5;
  BOOST_TEST(fiveTimes);
}

BOOST_FIXTURE_TEST_CASE(a_flapping_vm_is_rate_limited_others_are_not, Fixture) {
  metrics::Registry registry;
  EventRecorderOptions o;
  o.burst = 10;
  EventRecorder r(*store, &registry, o);
  auto flapping = vm("flap", "uid-flap");
  for (int i = 0; i < 200; ++i) {
    r.record(vmEvent(flapping, kEventTypeWarning, "Crashed", "crash " + std::to_string(i),
                     {"vmhost-node", "n1"}));
  }
  r.record(started(vm("calm", "uid-calm")));
  r.flush();
  size_t flap = 0, calm = 0;
  for (const auto& e : events()) (e.involvedObject.name == "flap" ? flap : calm) += 1;
  BOOST_TEST(flap == 10u);  // the burst, then nothing until tokens refill
  BOOST_TEST(calm == 1u);
  BOOST_TEST(r.dropped() == 190u);
  BOOST_TEST(registry.render().find("vmhost_events_total{result=\"rate_limited\"} 190") !=
             std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(a_full_queue_drops_instead_of_blocking, Fixture) {
  EventRecorderOptions o;
  o.queueLimit = 3;
  o.burst = 1000;
  EventRecorder r(*store, nullptr, o);
  for (int i = 0; i < 500; ++i) {
    r.record(started(vm("vm" + std::to_string(i), "uid-" + std::to_string(i))));
  }
  r.flush();
  size_t written = events().size();
  BOOST_TEST(written >= 3u);
  BOOST_TEST(written + r.dropped() == 500u);
}

BOOST_FIXTURE_TEST_CASE(messages_are_cut_to_the_limit_on_a_character_boundary, Fixture) {
  EventRecorder r(*store, nullptr);
  std::string longMessage;
  while (longMessage.size() < 2000) longMessage += "é";
  r.record(started(vm("vm1", "uid-1"), longMessage));
  r.flush();
  auto all = events();
  BOOST_TEST_REQUIRE(all.size() == 1u);
  BOOST_TEST(all[0].message.size() <= kMaxEventMessageBytes);
  BOOST_TEST(all[0].message.size() % 2 == 0u);  // whole two-byte characters
}

BOOST_FIXTURE_TEST_CASE(expiry_deletes_what_is_older_than_the_ttl, Fixture) {
  Event old;
  old.metadata.ns = "default";
  old.metadata.name = "vm1.old";
  old.involvedObject = referenceTo(vm("vm1", "uid-1"));
  old.reason = "Started";
  old.firstTimestamp = old.lastTimestamp = formatRfc3339(std::time(nullptr) - 7200);
  BOOST_TEST_REQUIRE(store->create(eventKey("default", "vm1.old"), storeValue(old)).ok());
  Event recent = old;
  recent.metadata.name = "vm1.recent";
  recent.firstTimestamp = recent.lastTimestamp = formatRfc3339(std::time(nullptr) - 60);
  BOOST_TEST_REQUIRE(store->create(eventKey("default", "vm1.recent"), storeValue(recent)).ok());
  EventExpiry expiry(*store, {std::chrono::seconds(3600), std::chrono::seconds(60)});
  BOOST_TEST(expiry.expireOnce() == 1u);
  auto left = events();
  BOOST_TEST_REQUIRE(left.size() == 1u);
  BOOST_TEST(left[0].metadata.name == "vm1.recent");
}

BOOST_AUTO_TEST_CASE(validation_names_the_field) {
  Event e;
  e.metadata.ns = "default";
  e.metadata.name = "vm1.abc";
  e.involvedObject.kind = "VirtualMachine";
  e.involvedObject.name = "vm1";
  e.involvedObject.ns = "other";
  e.reason = "";
  e.type = "Bad";
  auto errs = validateEvent(e);
  std::string all;
  for (const auto& x : errs) all += x.toString() + "\n";
  BOOST_TEST(all.find("involvedObject.namespace: Invalid value: \"other\": does not match") !=
                 std::string::npos,
             all);
  BOOST_TEST(all.find("type: Unsupported value: \"Bad\"") != std::string::npos, all);
  BOOST_TEST(all.find("reason: Required value") != std::string::npos, all);
}

BOOST_AUTO_TEST_CASE(encode_decode_round_trip) {
  Event e;
  e.metadata.ns = "default";
  e.metadata.name = "vm1.abc";
  e.involvedObject = referenceTo(vm("vm1", "uid-1"));
  e.reason = "FailedStart";
  e.message = "vm default/vm1: start failed: internal error";
  e.type = kEventTypeWarning;
  e.source = {"vmhost-node", "n1"};
  e.count = 3;
  e.firstTimestamp = "2026-01-01T00:00:00Z";
  e.lastTimestamp = "2026-01-01T00:05:00Z";
  Json j = encode(e);
  BOOST_TEST(j["apiVersion"] == "v1");
  BOOST_TEST(j["kind"] == "Event");
  auto d = decodeEvent(j, FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(d.ok());
  BOOST_TEST(encode(d.value) == j);
}
