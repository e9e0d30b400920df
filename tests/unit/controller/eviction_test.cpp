// The eviction controller's decisions (nextEvictionStep) and the
// request/acknowledgement hand-shake that keeps a drained VM from running on
// two nodes at once; then the LiveMigrate path of the controller over a real
// SqliteStore (in a temporary directory): the drain's migrations created
// once (also across a restart), paced by nobody here (the migration
// controller's part is played by the test, writing the migrations' status),
// retried after a failure, withdrawn on uncordon while not started and kept
// once running.
#define BOOST_TEST_MODULE controller_eviction
#include <boost/test/unit_test.hpp>

#include "api/conditions.h"
#include "api/objects.h"
#include "api/quantity.h"
#include "controller/eviction.h"
#include "store/sqlite/sqlite_store.h"

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <vector>

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
  BOOST_TEST(static_cast<int>(nextEvictionStep(v, &n)) == static_cast<int>(EvictionStep::kNothing));
}

BOOST_AUTO_TEST_CASE(restart_and_none_are_requested_then_unbound_only_after_the_ack) {
  auto n = node(true, true);
  for (const std::string strategy : {"Restart", "None"}) {
    auto v = vm(strategy);
    BOOST_TEST(static_cast<int>(nextEvictionStep(v, &n)) ==
               static_cast<int>(EvictionStep::kRequest));
    request(v, "aaaa");
    BOOST_TEST(static_cast<int>(nextEvictionStep(v, &n)) == static_cast<int>(EvictionStep::kWait));
    // The phase alone (Stopped from before) is no acknowledgement.
    v.status.phase = "Stopped";
    BOOST_TEST(!api::evictionAcknowledged(v.status));
    BOOST_TEST(static_cast<int>(nextEvictionStep(v, &n)) == static_cast<int>(EvictionStep::kWait));
    acknowledge(v);
    BOOST_TEST(api::evictionAcknowledged(v.status));
    auto want = strategy == "None" ? EvictionStep::kHalt : EvictionStep::kReplace;
    BOOST_TEST(static_cast<int>(nextEvictionStep(v, &n)) == static_cast<int>(want));
  }
}

BOOST_AUTO_TEST_CASE(an_ack_of_an_earlier_request_is_worthless) {
  auto n = node(true, true);
  auto v = vm("Restart");
  request(v, "old1");
  acknowledge(v);
  request(v, "new2");  // a later eviction: the old ack must not count
  BOOST_TEST(!api::evictionAcknowledged(v.status));
  BOOST_TEST(static_cast<int>(nextEvictionStep(v, &n)) == static_cast<int>(EvictionStep::kWait));
}

BOOST_AUTO_TEST_CASE(uncordoning_cancels_what_has_not_completed) {
  auto off = node(false, false);
  auto v = vm("Restart");
  request(v, "cccc");
  BOOST_TEST(static_cast<int>(nextEvictionStep(v, &off)) ==
             static_cast<int>(EvictionStep::kCancel));
  // A refusal left by an earlier version goes too.
  auto lm = vm("LiveMigrate");
  api::setCondition(lm.status.conditions, api::kEvictingCondition, "False",
                    api::kLiveMigrationUnsupportedReason, "x");
  BOOST_TEST(static_cast<int>(nextEvictionStep(lm, &off)) ==
             static_cast<int>(EvictionStep::kCancel));
  // A VM being deleted is not evicted.
  auto n = node(true, true);
  auto gone = vm("Restart");
  gone.metadata.deletionTimestamp = "2026-11-25T17:00:00Z";
  BOOST_TEST(static_cast<int>(nextEvictionStep(gone, &n)) ==
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
    BOOST_TEST(static_cast<int>(nextEvictionStep(running, &n)) ==
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
    BOOST_TEST(static_cast<int>(nextEvictionStep(stopped, &n)) ==
               static_cast<int>(EvictionStep::kHalt));
  }
  // Always restarts wherever it is: moved even if it was not running.
  auto always = vm("Restart", "Failed");
  api::setCondition(
      always.status.conditions, api::kEvictingCondition, "True", api::kEvictingReason,
      std::string("node node-a is being drained (eviction ffff)") + api::kNotRunningNote);
  acknowledge(always);
  BOOST_TEST(static_cast<int>(nextEvictionStep(always, &n)) ==
             static_cast<int>(EvictionStep::kReplace));
}

// ---- LiveMigrate: the decisions

namespace {

api::VirtualMachineMigration migration(const std::string& phase) {
  api::VirtualMachineMigration m;
  m.metadata.ns = "default";
  m.metadata.name = api::drainMigrationName("vm1", "node-a");
  m.metadata.uid = "m1";
  m.spec.vmName = "vm1";
  m.status.phase = phase;
  return m;
}

int stepOf(const api::VirtualMachine& v, const api::Node& n, const EvictionMigrations& m = {}) {
  return static_cast<int>(nextEvictionStep(v, &n, m));
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_running_live_migrate_vm_is_migrated_not_stopped) {
  auto n = node(true, true);
  auto lm = vm("LiveMigrate");
  BOOST_TEST(stepOf(lm, n) == static_cast<int>(EvictionStep::kMigrate));
  // The migration exists and has not finished: wait for it, in every phase.
  for (const char* phase : {"", "Pending", "Scheduling", "PreparingTarget", "Running"}) {
    auto m = migration(phase);
    BOOST_TEST(stepOf(lm, n, {&m, false, false}) == static_cast<int>(EvictionStep::kWait));
  }
  // Being deleted (a cancel, a withdrawal): waited for until it is gone.
  auto deleting = migration("Failed");
  deleting.metadata.deletionTimestamp = "2026-11-25T17:00:00Z";
  BOOST_TEST(stepOf(lm, n, {&deleting, false, true}) == static_cast<int>(EvictionStep::kWait));
  // Failed: replaced once the backoff has passed, not before.
  auto failed = migration("Failed");
  BOOST_TEST(stepOf(lm, n, {&failed, false, false}) == static_cast<int>(EvictionStep::kWait));
  BOOST_TEST(stepOf(lm, n, {&failed, false, true}) == static_cast<int>(EvictionStep::kMigrate));
  // Another migration of the VM in flight (a user's): no drain migration.
  BOOST_TEST(stepOf(lm, n, {nullptr, true, false}) == static_cast<int>(EvictionStep::kWait));
  // Never the stop request: the node agent would stop the guest.
  BOOST_TEST(api::evictionRequest(lm.status) == nullptr);
  // Not draining: nothing (the withdrawal of its migrations is the controller's).
  auto off = node(false, false);
  auto m = migration("Pending");
  BOOST_TEST(stepOf(lm, off, {&m, false, false}) == static_cast<int>(EvictionStep::kNothing));
}

BOOST_AUTO_TEST_CASE(a_live_migrate_vm_that_is_not_running_is_evicted_as_with_restart) {
  auto n = node(true, true);
  for (const char* phase : {"Stopped", "Scheduled", "Failed", "Succeeded"}) {
    auto lm = vm("LiveMigrate", phase);
    BOOST_TEST(stepOf(lm, n) == static_cast<int>(EvictionStep::kRequest), phase);
    // A failed migration of it does not hold the eviction back.
    auto failed = migration("Failed");
    BOOST_TEST(stepOf(lm, n, {&failed, false, false}) == static_cast<int>(EvictionStep::kRequest));
  }
  // One created while it ran is waited for (the migration controller fails it).
  auto stopped = vm("LiveMigrate", "Stopped");
  auto pending = migration("Pending");
  BOOST_TEST(stepOf(stopped, n, {&pending, false, false}) == static_cast<int>(EvictionStep::kWait));
  // Then the hand-shake of Restart: requested, acknowledged, re-placed; a
  // stopped Manual one is halted.
  request(stopped, "gggg");
  BOOST_TEST(stepOf(stopped, n) == static_cast<int>(EvictionStep::kWait));
  acknowledge(stopped);
  BOOST_TEST(stepOf(stopped, n) == static_cast<int>(EvictionStep::kReplace));
  auto manual = vm("LiveMigrate", "Stopped");
  manual.spec.runStrategy = "Manual";
  api::setCondition(
      manual.status.conditions, api::kEvictingCondition, "True", api::kEvictingReason,
      std::string("node node-a is being drained (eviction hhhh, evictionStrategy LiveMigrate)") +
          api::kNotRunningNote);
  acknowledge(manual);
  BOOST_TEST(stepOf(manual, n) == static_cast<int>(EvictionStep::kHalt));
  // Once requested, the hand-shake goes on even if the VM runs again meanwhile.
  auto running = vm("LiveMigrate");
  request(running, "iiii");
  BOOST_TEST(stepOf(running, n) == static_cast<int>(EvictionStep::kWait));
}

BOOST_AUTO_TEST_CASE(drain_migration_names_are_deterministic_and_valid) {
  BOOST_TEST(api::drainMigrationName("vm1", "node-a") == "vm1-drain-node-a");
  std::string longVm(200, 'v'), longNode(200, 'n');
  std::string a = api::drainMigrationName(longVm, longNode);
  std::string b = api::drainMigrationName(longVm, longNode + "x");
  BOOST_TEST(a.size() <= 253u);
  BOOST_TEST(a == api::drainMigrationName(longVm, longNode));
  BOOST_TEST(a != b);
  api::ObjectMeta meta;
  BOOST_TEST(api::drainMigrationNode(meta).empty());
  meta.annotations[api::kDrainNodeAnnotation] = "node-a";
  BOOST_TEST(api::drainMigrationNode(meta) == "node-a");
}

// ---- LiveMigrate: the controller over a real store

namespace {

namespace fs = std::filesystem;

class Store {
 public:
  Store() {
    std::string tmpl = (fs::temp_directory_path() / "vmhost-eviction-test-XXXXXX").string();
    BOOST_TEST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    open();
  }
  ~Store() {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // A process restart: the store closes and opens again over the same files.
  void reopen() {
    store_.reset();
    open();
  }
  store::Store& operator*() { return *store_; }
  store::Store* operator->() { return store_.get(); }

 private:
  void open() {
    store::SqliteStoreOptions options;
    options.syncEveryCommit = false;
    auto s = store::SqliteStore::open(dir_.string(), options);
    BOOST_TEST_REQUIRE(s.ok(), (s.ok() ? "" : s.error().message));
    store_ = std::move(s.value());
  }
  fs::path dir_;
  std::unique_ptr<store::SqliteStore> store_;
};

void addNode(store::Store& s, const std::string& name, bool draining) {
  api::Node n;
  n.metadata.name = name;
  n.metadata.uid = api::newUid();
  n.metadata.creationTimestamp = api::nowRfc3339();
  n.metadata.generation = 1;
  api::applyNodeDefaults(n);
  n.spec.unschedulable = draining;
  if (draining) n.metadata.annotations[api::kDrainAnnotation] = "2026-11-25T17:00:00Z";
  api::setCondition(n.status.conditions, "Ready", "True", "NodeReady", "");
  auto r = s.create(api::nodeKey(name), api::storeValue(n));
  BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
}

// vmctl uncordon: spec.unschedulable false and the drain annotation gone.
void uncordon(store::Store& s, const std::string& name) {
  auto cur = s.get(api::nodeKey(name));
  BOOST_TEST_REQUIRE(cur.ok());
  auto n = api::decodeStoredNode(cur.value());
  BOOST_TEST_REQUIRE(n.ok());
  n.value().spec.unschedulable = false;
  n.value().metadata.annotations.erase(api::kDrainAnnotation);
  BOOST_TEST_REQUIRE(
      s.update(api::nodeKey(name), api::storeValue(n.value()), cur.value().modRevision).ok());
}

void addVm(store::Store& s, const std::string& name, const std::string& strategy,
           const std::string& node, const std::string& phase = "Running") {
  api::VirtualMachine v;
  v.metadata.ns = "default";
  v.metadata.name = name;
  v.metadata.uid = api::newUid();
  v.metadata.creationTimestamp = api::nowRfc3339();
  v.metadata.generation = 1;
  v.spec.memory = api::parseQuantity("64Mi").value();
  v.spec.evictionStrategy = strategy;
  v.status.nodeName = node;
  v.status.phase = phase;
  auto r = s.create(api::virtualMachineKey("default", name), api::storeValue(v));
  BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
}

api::VirtualMachine getVm(store::Store& s, const std::string& name) {
  auto cur = s.get(api::virtualMachineKey("default", name));
  BOOST_TEST_REQUIRE(cur.ok(), name);
  auto v = api::decodeStoredVirtualMachine(cur.value());
  BOOST_TEST_REQUIRE(v.ok());
  return v.value();
}

std::vector<api::VirtualMachineMigration> migrations(store::Store& s) {
  auto list = s.list(api::kMigrationsResource, "");
  BOOST_TEST_REQUIRE(list.ok());
  std::vector<api::VirtualMachineMigration> out;
  for (const auto& o : list.value().items) {
    auto m = api::decodeStoredMigration(o);
    BOOST_TEST_REQUIRE(m.ok());
    out.push_back(m.value());
  }
  return out;
}

std::vector<std::string> names(store::Store& s) {
  std::vector<std::string> out;
  for (const auto& m : migrations(s)) out.push_back(m.metadata.name);
  return out;
}

std::optional<api::VirtualMachineMigration> getMigration(store::Store& s, const std::string& name) {
  auto cur = s.get(api::migrationKey("default", name));
  if (!cur.ok()) return std::nullopt;
  auto m = api::decodeStoredMigration(cur.value());
  BOOST_TEST_REQUIRE(m.ok());
  return m.value();
}

// The migration controller's writes: its finalizer, then a phase.
void addFinalizer(store::Store& s, const std::string& name) {
  auto key = api::migrationKey("default", name);
  auto cur = s.get(key);
  BOOST_TEST_REQUIRE(cur.ok());
  auto m = api::decodeStoredMigration(cur.value());
  BOOST_TEST_REQUIRE(m.ok());
  m.value().metadata.finalizers.push_back(api::kMigrationFinalizer);
  BOOST_TEST_REQUIRE(s.update(key, api::storeValue(m.value()), cur.value().modRevision).ok());
}

void setPhase(store::Store& s, const std::string& name, const std::string& phase,
              const std::string& reason = "") {
  auto r =
      api::updateMigrationStatus(s, "default", name, [&](api::VirtualMachineMigrationStatus& st) {
        st.phase = phase;
        st.reason = reason;
        st.message = reason.empty() ? "" : "it did not work";
        if (phase == "Failed" || phase == "Succeeded") {
          st.endTimestamp = api::nowRfc3339();
        }
        return true;
      });
  BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
}

void addMigration(store::Store& s, const std::string& name, const std::string& vm) {
  api::VirtualMachineMigration m;
  m.metadata.ns = "default";
  m.metadata.name = name;
  m.metadata.uid = api::newUid();
  m.metadata.creationTimestamp = api::nowRfc3339();
  m.metadata.generation = 1;
  m.spec.vmName = vm;
  BOOST_TEST_REQUIRE(s.create(api::migrationKey("default", name), api::storeValue(m)).ok());
}

EvictionOptions quick() {
  EvictionOptions o;
  o.interval = std::chrono::milliseconds(10);
  o.migrationRetry = std::chrono::hours(1);  // a test that wants a retry says so
  o.migrationRetryMax = std::chrono::hours(1);
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_drain_creates_one_migration_per_running_live_migrate_vm) {
  Store s;
  addNode(*s, "node-a", true);
  addNode(*s, "node-b", false);
  addVm(*s, "lm1", "LiveMigrate", "node-a");
  addVm(*s, "lm2", "LiveMigrate", "node-a");
  addVm(*s, "lm3", "LiveMigrate", "node-b");               // not on the drained node
  addVm(*s, "lmoff", "LiveMigrate", "node-a", "Stopped");  // nothing to move live
  addVm(*s, "r1", "Restart", "node-a");
  EvictionController c(*s, quick());
  BOOST_TEST(c.reconcileOnce());
  BOOST_TEST(names(*s) == (std::vector<std::string>{"lm1-drain-node-a", "lm2-drain-node-a"}),
             boost::test_tools::per_element());
  for (const auto& m : migrations(*s)) {
    BOOST_TEST(m.spec.targetNode.empty());  // the scheduler's choice
    BOOST_TEST(m.metadata.labels.at(api::kDrainNodeLabel) == "node-a");
    BOOST_TEST(api::drainMigrationNode(m.metadata) == "node-a");
    BOOST_TEST(m.metadata.annotations.at(api::kDrainAnnotation) == "2026-11-25T17:00:00Z");
    BOOST_TEST(m.metadata.annotations.at(api::kDrainAttemptAnnotation) == "1");
    BOOST_TEST(m.status.phase.empty());  // the migration controller's to write
    BOOST_TEST(!m.metadata.uid.empty());
  }
  BOOST_TEST(migrations(*s)[0].spec.vmName == "lm1");
  // The live-migrated VMs are not asked to stop; the others are.
  BOOST_TEST(api::findCondition(getVm(*s, "lm1").status.conditions, api::kEvictingCondition) ==
             nullptr);
  BOOST_TEST(api::evictionRequest(getVm(*s, "r1").status) != nullptr);
  const api::Condition* off = api::evictionRequest(getVm(*s, "lmoff").status);
  BOOST_TEST_REQUIRE(off != nullptr);
  BOOST_TEST(off->message.find(api::kNotRunningNote) != std::string::npos);
  BOOST_TEST(api::findCondition(getVm(*s, "lm3").status.conditions, api::kEvictingCondition) ==
             nullptr);
  // Passes while they run create nothing more.
  setPhase(*s, "lm1-drain-node-a", "Pending");
  BOOST_TEST(c.reconcileOnce());
  BOOST_TEST(migrations(*s).size() == 2u);
}

BOOST_AUTO_TEST_CASE(a_restarted_controller_creates_no_second_migration) {
  Store s;
  addNode(*s, "node-a", true);
  addVm(*s, "lm1", "LiveMigrate", "node-a");
  std::string uid;
  {
    EvictionController c(*s, quick());
    c.reconcileOnce();
    auto m = getMigration(*s, "lm1-drain-node-a");
    BOOST_TEST_REQUIRE(m.has_value());
    uid = m->metadata.uid;
  }
  s.reopen();
  for (int pass = 0; pass < 3; ++pass) {
    EvictionController c(*s, quick());  // a new process each time
    c.reconcileOnce();
    c.reconcileOnce();
  }
  BOOST_TEST(migrations(*s).size() == 1u);
  BOOST_TEST(getMigration(*s, "lm1-drain-node-a")->metadata.uid == uid);
}

BOOST_AUTO_TEST_CASE(uncordon_withdraws_what_has_not_started_and_keeps_what_runs) {
  Store s;
  addNode(*s, "node-a", true);
  addNode(*s, "node-b", true);
  const std::vector<std::string> vms = {"fresh",     "pending", "scheduling",
                                        "preparing", "running", "done"};
  for (const auto& v : vms) addVm(*s, v, "LiveMigrate", "node-a");
  addVm(*s, "elsewhere", "LiveMigrate", "node-b");  // node-b stays drained
  EvictionController c(*s, quick());
  c.reconcileOnce();
  BOOST_TEST_REQUIRE(migrations(*s).size() == vms.size() + 1);
  // What the migration controller made of them (fresh: not seen yet).
  for (const auto& v : vms) {
    if (v != "fresh") addFinalizer(*s, v + "-drain-node-a");
  }
  addFinalizer(*s, "elsewhere-drain-node-b");
  setPhase(*s, "pending-drain-node-a", "Pending", "NodeLimit");
  setPhase(*s, "scheduling-drain-node-a", "Scheduling");
  setPhase(*s, "preparing-drain-node-a", "PreparingTarget");
  setPhase(*s, "running-drain-node-a", "Running");
  setPhase(*s, "done-drain-node-a", "Failed", "SchedulingFailed");
  setPhase(*s, "elsewhere-drain-node-b", "Pending", "NodeLimit");
  uncordon(*s, "node-a");
  c.reconcileOnce();
  // Not started: a delete without finalizer removes it; with one, it is
  // marked for the migration controller (which fails it Cancelled).
  BOOST_TEST(!getMigration(*s, "fresh-drain-node-a").has_value());
  for (const char* name : {"pending-drain-node-a", "scheduling-drain-node-a"}) {
    auto m = getMigration(*s, name);
    BOOST_TEST_REQUIRE(m.has_value(), name);
    BOOST_TEST(m->metadata.deletionTimestamp.has_value(), name);
  }
  // Started, finished, or of a node still drained: left alone.
  for (const char* name : {"preparing-drain-node-a", "running-drain-node-a", "done-drain-node-a",
                           "elsewhere-drain-node-b"}) {
    auto m = getMigration(*s, name);
    BOOST_TEST_REQUIRE(m.has_value(), name);
    BOOST_TEST(!m->metadata.deletionTimestamp.has_value(), name);
  }
  // Nothing is created again for node-a, and the later passes change nothing.
  c.reconcileOnce();
  c.reconcileOnce();
  BOOST_TEST(!getMigration(*s, "fresh-drain-node-a").has_value());
  BOOST_TEST(!getMigration(*s, "running-drain-node-a")->metadata.deletionTimestamp.has_value());
  // A restarted controller withdraws too (its first pass looks).
  addMigration(*s, "late-drain-node-a", "pending");
  {
    auto key = api::migrationKey("default", "late-drain-node-a");
    auto cur = s->get(key);
    auto m = api::decodeStoredMigration(cur.value());
    m.value().metadata.annotations[api::kDrainNodeAnnotation] = "node-a";
    BOOST_TEST_REQUIRE(s->update(key, api::storeValue(m.value()), cur.value().modRevision).ok());
  }
  EvictionController restarted(*s, quick());
  restarted.reconcileOnce();
  BOOST_TEST(!getMigration(*s, "late-drain-node-a").has_value());
}

BOOST_AUTO_TEST_CASE(a_failed_drain_migration_is_tried_again_after_the_backoff) {
  Store s;
  addNode(*s, "node-a", true);
  addVm(*s, "lm1", "LiveMigrate", "node-a");
  EvictionController c(*s, quick());  // backoff: an hour
  c.reconcileOnce();
  auto first = getMigration(*s, "lm1-drain-node-a");
  BOOST_TEST_REQUIRE(first.has_value());
  setPhase(*s, "lm1-drain-node-a", "Failed", "SchedulingFailed");
  c.reconcileOnce();
  auto still = getMigration(*s, "lm1-drain-node-a");
  BOOST_TEST_REQUIRE(still.has_value());
  BOOST_TEST(still->metadata.uid == first->metadata.uid);  // within the backoff: kept
  BOOST_TEST(still->status.phase == "Failed");
  // No backoff: replaced by attempt 2, same name, a new object.
  auto now = quick();
  now.migrationRetry = std::chrono::seconds(0);
  EvictionController retrying(*s, now);
  retrying.reconcileOnce();
  auto second = getMigration(*s, "lm1-drain-node-a");
  BOOST_TEST_REQUIRE(second.has_value());
  BOOST_TEST(second->metadata.uid != first->metadata.uid);
  BOOST_TEST(second->status.phase.empty());
  BOOST_TEST(second->metadata.annotations.at(api::kDrainAttemptAnnotation) == "2");
  BOOST_TEST(migrations(*s).size() == 1u);
  // A failed one whose finalizer is still there is marked first, then replaced.
  addFinalizer(*s, "lm1-drain-node-a");
  setPhase(*s, "lm1-drain-node-a", "Failed", "TargetTimeout");
  retrying.reconcileOnce();
  auto marked = getMigration(*s, "lm1-drain-node-a");
  BOOST_TEST_REQUIRE(marked.has_value());
  BOOST_TEST(marked->metadata.deletionTimestamp.has_value());
}

BOOST_AUTO_TEST_CASE(another_migration_of_the_vm_holds_the_drain_back) {
  Store s;
  addNode(*s, "node-a", true);
  addVm(*s, "lm1", "LiveMigrate", "node-a");
  addMigration(*s, "lm1-migration-abcde", "lm1");  // a user's vmctl migrate
  EvictionController c(*s, quick());
  c.reconcileOnce();
  BOOST_TEST(names(*s) == (std::vector<std::string>{"lm1-migration-abcde"}),
             boost::test_tools::per_element());
  // It failed: the drain's own follows.
  setPhase(*s, "lm1-migration-abcde", "Failed", "SchedulingFailed");
  c.reconcileOnce();
  BOOST_TEST(getMigration(*s, "lm1-drain-node-a").has_value());
}

BOOST_AUTO_TEST_CASE(the_drain_is_complete_once_the_migration_handed_the_vm_over) {
  Store s;
  addNode(*s, "node-a", true);
  addNode(*s, "node-b", false);
  addVm(*s, "lm1", "LiveMigrate", "node-a");
  EvictionController c(*s, quick());
  c.reconcileOnce();
  // The handover: the VM is bound to the target, then the object says Succeeded.
  auto r = api::updateVirtualMachineStatus(*s, "default", "lm1", [](api::VirtualMachineStatus& st) {
    st.nodeName = "node-b";
    return true;
  });
  BOOST_TEST_REQUIRE(r.ok());
  setPhase(*s, "lm1-drain-node-a", "Succeeded");
  c.reconcileOnce();
  c.reconcileOnce();
  BOOST_TEST(names(*s) == (std::vector<std::string>{"lm1-drain-node-a"}),
             boost::test_tools::per_element());
  BOOST_TEST(getMigration(*s, "lm1-drain-node-a")->status.phase == "Succeeded");
  BOOST_TEST(getVm(*s, "lm1").status.nodeName == "node-b");
  BOOST_TEST(api::findCondition(getVm(*s, "lm1").status.conditions, api::kEvictingCondition) ==
             nullptr);
}
