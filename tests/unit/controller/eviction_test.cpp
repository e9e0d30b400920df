// The eviction controller's decisions (nextEvictionStep) and the
// request/acknowledgement hand-shake that keeps a drained VM from running on
// two nodes at once.
#define BOOST_TEST_MODULE controller_eviction
#include <boost/test/unit_test.hpp>

#include "api/conditions.h"
#include "controller/eviction.h"

using namespace vmhost;
using namespace vmhost::controller;

namespace {

api::Node node(bool unschedulable, bool drain) {
  api::Node n;
  n.metadata.name = "node-a";
  n.spec.unschedulable = unschedulable;
  if (drain) n.metadata.annotations[api::kDrainAnnotation] = "2026-11-25T17:00:00Z";
  return n;
}

api::VirtualMachine vm(const std::string& strategy, const std::string& phase = "Running") {
  api::VirtualMachine v;
  v.metadata.ns = "default";
  v.metadata.name = "vm1";
  v.metadata.uid = "u1";
  v.spec.evictionStrategy = strategy;
  v.status.nodeName = "node-a";
  v.status.phase = phase;
  api::setCondition(v.status.conditions, "Ready", "True", "DomainRunning", "the domain is running");
  return v;
}

void request(api::VirtualMachine& v, const std::string& id) {
  api::setCondition(v.status.conditions, api::kEvictingCondition, "True", api::kEvictingReason,
                    "node node-a is being drained (eviction " + id + ")");
}

// What a node agent writes once the domain is off.
void acknowledge(api::VirtualMachine& v) {
  const api::Condition* r = api::evictionRequest(v.status);
  BOOST_REQUIRE(r != nullptr);
  v.status.phase = "Stopped";
  api::setCondition(v.status.conditions, "Ready", "False", api::kEvictedReason,
                    api::evictionAck(*r));
}

}  // namespace

BOOST_AUTO_TEST_CASE(only_a_cordoned_node_with_the_drain_annotation_drains) {
  BOOST_TEST(api::nodeDraining(node(true, true)));
  BOOST_TEST(!api::nodeDraining(node(true, false)));  // cordon alone evicts nothing
  BOOST_TEST(!api::nodeDraining(node(false, true)));  // uncordoned: the drain is off
  auto n = node(true, false);
  auto v = vm("Restart");
  BOOST_TEST(static_cast<int>(nextEvictionStep(v, &n, false)) ==
             static_cast<int>(EvictionStep::kNothing));
}

BOOST_AUTO_TEST_CASE(restart_and_none_are_requested_then_unbound_only_after_the_ack) {
  auto n = node(true, true);
  for (const std::string strategy : {"Restart", "None"}) {
    auto v = vm(strategy);
    BOOST_TEST(static_cast<int>(nextEvictionStep(v, &n, false)) ==
               static_cast<int>(EvictionStep::kRequest));
    request(v, "aaaa");
    BOOST_TEST(static_cast<int>(nextEvictionStep(v, &n, false)) ==
               static_cast<int>(EvictionStep::kWait));
    // The phase alone (Stopped from before) is no acknowledgement.
    v.status.phase = "Stopped";
    BOOST_TEST(!api::evictionAcknowledged(v.status));
    BOOST_TEST(static_cast<int>(nextEvictionStep(v, &n, false)) ==
               static_cast<int>(EvictionStep::kWait));
    acknowledge(v);
    BOOST_TEST(api::evictionAcknowledged(v.status));
    auto want = strategy == "None" ? EvictionStep::kHalt : EvictionStep::kReplace;
    BOOST_TEST(static_cast<int>(nextEvictionStep(v, &n, false)) == static_cast<int>(want));
  }
}

BOOST_AUTO_TEST_CASE(an_ack_of_an_earlier_request_is_worthless) {
  auto n = node(true, true);
  auto v = vm("Restart");
  request(v, "old1");
  acknowledge(v);
  request(v, "new2");  // a later eviction: the old ack must not count
  BOOST_TEST(!api::evictionAcknowledged(v.status));
  BOOST_TEST(static_cast<int>(nextEvictionStep(v, &n, false)) ==
             static_cast<int>(EvictionStep::kWait));
}

BOOST_AUTO_TEST_CASE(live_migrate_is_refused_and_blocks_the_other_evictions) {
  auto n = node(true, true);
  auto lm = vm("LiveMigrate");
  BOOST_TEST(static_cast<int>(nextEvictionStep(lm, &n, true)) ==
             static_cast<int>(EvictionStep::kRefuse));
  api::setCondition(lm.status.conditions, api::kEvictingCondition, "False",
                    api::kLiveMigrationUnsupportedReason,
                    api::liveMigrateRefusal("default", "vm1"));
  BOOST_TEST(static_cast<int>(nextEvictionStep(lm, &n, true)) ==
             static_cast<int>(EvictionStep::kWait));
  BOOST_TEST(api::liveMigrateRefusal("default", "vm1").find("default/vm1") != std::string::npos);
  // Another VM on the blocked node is left alone.
  auto other = vm("Restart");
  BOOST_TEST(static_cast<int>(nextEvictionStep(other, &n, true)) ==
             static_cast<int>(EvictionStep::kWait));
  // ... but one whose eviction began before the block finishes.
  request(other, "bbbb");
  acknowledge(other);
  BOOST_TEST(static_cast<int>(nextEvictionStep(other, &n, true)) ==
             static_cast<int>(EvictionStep::kReplace));
}

BOOST_AUTO_TEST_CASE(uncordoning_cancels_what_has_not_completed) {
  auto off = node(false, false);
  auto v = vm("Restart");
  request(v, "cccc");
  BOOST_TEST(static_cast<int>(nextEvictionStep(v, &off, false)) ==
             static_cast<int>(EvictionStep::kCancel));
  auto lm = vm("LiveMigrate");
  api::setCondition(lm.status.conditions, api::kEvictingCondition, "False",
                    api::kLiveMigrationUnsupportedReason, "x");
  BOOST_TEST(static_cast<int>(nextEvictionStep(lm, &off, false)) ==
             static_cast<int>(EvictionStep::kCancel));
  // A VM being deleted is not evicted.
  auto n = node(true, true);
  auto gone = vm("Restart");
  gone.metadata.deletionTimestamp = "2026-11-25T17:00:00Z";
  BOOST_TEST(static_cast<int>(nextEvictionStep(gone, &n, false)) ==
             static_cast<int>(EvictionStep::kNothing));
}

BOOST_AUTO_TEST_CASE(a_stopped_manual_vm_is_not_started_elsewhere) {
  auto n = node(true, true);
  for (const std::string run : {"Manual", "RerunOnFailure"}) {
    // Running when the drain began: moved, and its new node starts it.
    auto running = vm("Restart");
    running.spec.runStrategy = run;
    api::setCondition(running.status.conditions, api::kEvictingCondition, "True",
                      api::kEvictingReason,
                      "node node-a is being drained (eviction dddd, evictionStrategy Restart)");
    acknowledge(running);
    BOOST_TEST(static_cast<int>(nextEvictionStep(running, &n, false)) ==
               static_cast<int>(EvictionStep::kReplace));
    // Not running: a new node would start it (no domain there), so it is halted.
    auto stopped = vm("Restart", "Stopped");
    stopped.spec.runStrategy = run;
    api::setCondition(stopped.status.conditions, api::kEvictingCondition, "True",
                      api::kEvictingReason,
                      std::string("node node-a is being drained (eviction eeee, evictionStrategy "
                                  "Restart)") +
                          api::kNotRunningNote);
    acknowledge(stopped);
    BOOST_TEST(static_cast<int>(nextEvictionStep(stopped, &n, false)) ==
               static_cast<int>(EvictionStep::kHalt));
  }
  // Always restarts wherever it is: moved even if it was not running.
  auto always = vm("Restart", "Failed");
  api::setCondition(
      always.status.conditions, api::kEvictingCondition, "True", api::kEvictingReason,
      std::string("node node-a is being drained (eviction ffff)") + api::kNotRunningNote);
  acknowledge(always);
  BOOST_TEST(static_cast<int>(nextEvictionStep(always, &n, false)) ==
             static_cast<int>(EvictionStep::kReplace));
}
