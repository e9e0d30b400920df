// MigrationController (controller/migration.h) over a real SqliteStore (in
// a temporary directory) and a real SchedulingController with the `default`
// scheduler plugin loaded as a shared object. Each test writes what the API
// and the node agents would write (the VirtualMachineMigration as created,
// deletionTimestamp as the REST layer sets it when finalizers hold a delete,
// the nodes' reports merged by api::applyMigrationReport as the node server
// merges them) and drives both controllers on this thread, one round of each
// per pass: the migration controller asks for a target, the scheduling
// controller's next round answers it, the pass after writes it.
#define BOOST_TEST_MODULE controller_migration
#include <boost/test/unit_test.hpp>

#include "api/conditions.h"
#include "api/migration.h"
#include "api/objects.h"
#include "api/timestamps.h"
#include "common/metrics.h"
#include "controller/migration.h"
#include "controller/scheduling.h"
#include "store/sqlite/sqlite_store.h"

#include <vmhost/loader/plugin_host.h>

#include <stdlib.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace vmhost;
using namespace vmhost::controller;

namespace {

std::string defaultPlugin() {
  const char* dir = std::getenv("VMHOST_PLUGIN_DIR");
  BOOST_TEST_REQUIRE(dir != nullptr, "VMHOST_PLUGIN_DIR is not set (run through ctest)");
  return std::string(dir) + "/vmhost-scheduler-default.so";
}

std::string rfc3339(int64_t secondsSinceEpoch) {
  std::time_t t = static_cast<std::time_t>(secondsSinceEpoch);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The events the controller records, in order ("Type Reason: message").
struct RecordingSink : api::EventSink {
  std::vector<api::EventRecord> events;
  void record(api::EventRecord e) override { events.push_back(std::move(e)); }
  std::vector<std::string> reasons() const {
    std::vector<std::string> out;
    for (const auto& e : events) out.push_back(e.type + " " + e.reason);
    return out;
  }
};

bool hasFinalizer(const api::VirtualMachineMigration& m) {
  const auto& f = m.metadata.finalizers;
  return std::find(f.begin(), f.end(), api::kMigrationFinalizer) != f.end();
}

// A cluster in one process: the store, the scheduler plugin, both
// controllers, and the writes of the API and the node agents.
class Cluster {
 public:
  explicit Cluster(MigrationOptions options = {}) : options_(options) {
    std::string tmpl = (fs::temp_directory_path() / "vmhost-migration-test-XXXXXX").string();
    BOOST_TEST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    store::SqliteStoreOptions so;
    so.syncEveryCommit = false;
    auto s = store::SqliteStore::open(dir_.string(), so);
    BOOST_TEST_REQUIRE(s.ok(), (s.ok() ? "" : s.error().message));
    store_ = std::move(s.value());
    auto lib = PluginLibrary::open(defaultPlugin());
    BOOST_TEST_REQUIRE(lib.ok(), (lib.ok() ? "" : lib.error().message));
    auto instance = PluginInstance::create(lib.value(), "{}");
    BOOST_TEST_REQUIRE(instance.ok(), (instance.ok() ? "" : instance.error().message));
    plugin_ = std::move(instance.value());
    SchedulingOptions so2;
    so2.retryInterval = std::chrono::hours(1);
    scheduling_ = std::make_unique<SchedulingController>(*store_, *plugin_, metrics_, so2);
    newMigrationController();
  }
  ~Cluster() {
    migration_.reset();
    scheduling_.reset();
    plugin_.reset();
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // A restart of the migration controller (what it asked is lost).
  void newMigrationController() {
    migration_.reset();
    migration_ = std::make_unique<MigrationController>(*store_, *scheduling_, options_);
  }
  store::Store& store() { return *store_; }
  SchedulingController& scheduling() { return *scheduling_; }
  MigrationController& migrations() { return *migration_; }

  // One round of each controller.
  bool pass() {
    BOOST_TEST_REQUIRE(scheduling_->runOnce());
    return migration_->reconcileOnce();
  }
  // Passes until `done` holds (at most `max`); whether it did.
  bool until(const std::function<bool()>& done, int max = 40) {
    for (int i = 0; i < max; ++i) {
      if (done()) return true;
      pass();
    }
    return done();
  }
  void passes(int n) {
    for (int i = 0; i < n; ++i) pass();
  }

  // --- nodes, as a node agent registers them
  void addNode(const std::string& name, int cores = 8) {
    api::Node node;
    node.metadata.name = name;
    node.metadata.uid = api::newUid();
    node.metadata.creationTimestamp = api::nowRfc3339();
    node.metadata.generation = 1;
    api::applyNodeDefaults(node);
    node.status.capacity.cpu = api::parseQuantity(std::to_string(cores)).value();
    node.status.capacity.memory = api::parseQuantity("64Gi").value();
    api::setCondition(node.status.conditions, "Ready", "True", "NodeReady", "");
    auto r = store_->create(api::nodeKey(name), api::storeValue(node));
    BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
  }

  // --- a VM placed on `node` whose domain runs there
  void addRunningVm(const std::string& name, const std::string& node, int cores = 1) {
    api::VirtualMachine vm;
    vm.metadata.ns = "default";
    vm.metadata.name = name;
    vm.metadata.uid = api::newUid();
    vm.metadata.creationTimestamp = api::nowRfc3339();
    vm.metadata.generation = 1;
    vm.spec.cpu.cores = cores;
    vm.spec.memory = api::parseQuantity("1Gi").value();
    vm.status.phase = "Running";
    vm.status.nodeName = node;
    api::setCondition(vm.status.conditions, "Scheduled", "True", "Scheduled",
                      "placed on node " + node);
    auto r = store_->create(api::virtualMachineKey("default", name), api::storeValue(vm));
    BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
  }
  api::VirtualMachine vm(const std::string& name) {
    auto cur = store_->get(api::virtualMachineKey("default", name));
    BOOST_TEST_REQUIRE(cur.ok(), name);
    auto vm = api::decodeStoredVirtualMachine(cur.value());
    BOOST_TEST_REQUIRE(vm.ok());
    return vm.value();
  }
  api::MigrationState record(const std::string& vmName) {
    auto v = vm(vmName);
    BOOST_TEST_REQUIRE(v.status.migration.has_value(), vmName << " has no status.migration");
    return *v.status.migration;
  }
  void setVmStatus(const std::string& name,
                   const std::function<void(api::VirtualMachineStatus&)>& change) {
    auto r = api::updateVirtualMachineStatus(*store_, "default", name,
                                             [&](api::VirtualMachineStatus& s) {
                                               change(s);
                                               return true;
                                             });
    BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
  }
  void deleteVm(const std::string& name) {
    BOOST_TEST_REQUIRE(store_->remove(api::virtualMachineKey("default", name), 0).ok());
  }

  // A node's report, merged as the node server merges it. The result of the
  // merge (refusals are the test's to judge).
  Result<bool> reportAs(const std::string& node, const std::string& vmName,
                        const std::function<void(api::MigrationState&)>& say) {
    std::optional<Result<bool>> merged;
    auto r = api::updateVirtualMachineStatus(
        *store_, "default", vmName, [&](api::VirtualMachineStatus& s) {
          if (!s.migration) {
            merged = Result<bool>(Error{VMHOST_ERR_FAILED_PRECONDITION, "no record", false});
            return false;
          }
          api::MigrationState report = *s.migration;
          say(report);
          merged = api::applyMigrationReport(s, node, report);
          return merged->ok() && merged->value();
        });
    BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
    return *merged;
  }
  void mustReport(const std::string& node, const std::string& vmName,
                  const std::function<void(api::MigrationState&)>& say) {
    auto r = reportAs(node, vmName, say);
    BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
  }
  void targetReady(const std::string& vmName) {
    auto rec = record(vmName);
    mustReport(rec.targetNode, vmName, [](api::MigrationState& m) {
      m.phase = api::kMigrationTargetReady;
      api::MigrationTarget t;
      t.domainXml = "<domain/>";
      t.libvirtUri = "qemu+tcp://192.0.2.2/system";
      m.target = t;
    });
  }
  void sourceRunning(const std::string& vmName, const api::MigrationProgress& p) {
    auto rec = record(vmName);
    mustReport(rec.sourceNode, vmName, [&](api::MigrationState& m) {
      m.phase = api::kMigrationRunning;
      m.progress = p;
    });
  }
  void sourceSucceeded(const std::string& vmName, const api::MigrationResult& result) {
    auto rec = record(vmName);
    mustReport(rec.sourceNode, vmName, [&](api::MigrationState& m) {
      m.phase = api::kMigrationSucceeded;
      m.result = result;
    });
  }
  void sourceFailed(const std::string& vmName, const std::string& reason,
                    const std::string& message) {
    auto rec = record(vmName);
    mustReport(rec.sourceNode, vmName, [&](api::MigrationState& m) {
      m.phase = api::kMigrationFailed;
      m.reason = reason;
      m.message = message;
    });
  }

  // --- VirtualMachineMigrations, as the API creates and deletes them
  void createMigration(const std::string& name, const std::string& vmName,
                       const std::function<void(api::VirtualMachineMigration&)>& shape = {}) {
    api::VirtualMachineMigration m;
    m.metadata.ns = "default";
    m.metadata.name = name;
    m.metadata.uid = api::newUid();
    m.metadata.creationTimestamp = api::nowRfc3339();
    m.metadata.generation = 1;
    m.spec.vmName = vmName;
    if (shape) shape(m);
    BOOST_TEST_REQUIRE(api::validateVirtualMachineMigration(m).empty());
    auto r = store_->create(api::migrationKey("default", name), api::storeValue(m));
    BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
  }
  std::optional<api::VirtualMachineMigration> findMigration(const std::string& name) {
    auto cur = store_->get(api::migrationKey("default", name));
    if (!cur.ok()) {
      BOOST_TEST_REQUIRE(cur.error().code == VMHOST_ERR_NOT_FOUND);
      return std::nullopt;
    }
    auto m = api::decodeStoredMigration(cur.value());
    BOOST_TEST_REQUIRE(m.ok());
    return m.value();
  }
  api::VirtualMachineMigration migration(const std::string& name) {
    auto m = findMigration(name);
    BOOST_TEST_REQUIRE(m.has_value(), name << " is not in the store");
    return *m;
  }
  std::string phase(const std::string& name) {
    auto m = findMigration(name);
    return m ? m->status.phase : "<gone>";
  }
  // A delete through the REST layer while finalizers hold the object.
  void deleteMigration(const std::string& name) {
    auto key = api::migrationKey("default", name);
    auto cur = store_->get(key);
    BOOST_TEST_REQUIRE(cur.ok());
    auto m = api::decodeStoredMigration(cur.value());
    BOOST_TEST_REQUIRE(m.ok());
    BOOST_TEST_REQUIRE(!m.value().metadata.finalizers.empty(),
                       "without finalizers the REST layer removes it outright");
    m.value().metadata.deletionTimestamp = api::nowRfc3339();
    auto w = store_->update(key, api::storeValue(m.value()), cur.value().modRevision);
    BOOST_TEST_REQUIRE(w.ok(), (w.ok() ? "" : w.error().message));
  }
  void setMigrationStatus(const std::string& name,
                          const std::function<void(api::VirtualMachineMigrationStatus&)>& change) {
    auto r = api::updateMigrationStatus(*store_, "default", name,
                                        [&](api::VirtualMachineMigrationStatus& s) {
                                          change(s);
                                          return true;
                                        });
    BOOST_TEST_REQUIRE(r.ok(), (r.ok() ? "" : r.error().message));
  }

  // A watch on the migrations from now, and the phases (phase/reason) it
  // saw for `name`, consecutive repeats folded; "<deleted>" for a delete.
  void watchMigrations() {
    auto rev = store_->currentRevision();
    BOOST_TEST_REQUIRE(rev.ok());
    auto w = store_->watch(api::kMigrationsResource, "", rev.value());
    BOOST_TEST_REQUIRE(w.ok());
    watch_ = std::move(w.value());
  }
  std::vector<std::string> watchedPhases(const std::string& name) {
    BOOST_TEST_REQUIRE(watch_ != nullptr);
    while (auto e = watch_->tryNext()) {
      BOOST_TEST_REQUIRE((e->type != store::WatchEventType::kError));
      if (e->object->key.name != name) continue;
      std::string seen;
      if (e->type == store::WatchEventType::kDeleted) {
        seen = "<deleted>";
      } else {
        auto m = api::decodeStoredMigration(*e->object);
        BOOST_TEST_REQUIRE(m.ok());
        seen = m.value().status.phase;
        if (!m.value().status.reason.empty()) seen += "/" + m.value().status.reason;
      }
      auto& list = watched_[name];
      if (list.empty() || list.back() != seen) list.push_back(seen);
    }
    return watched_[name];
  }

 private:
  fs::path dir_;
  MigrationOptions options_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<PluginInstance> plugin_;
  metrics::Registry metrics_;
  std::unique_ptr<SchedulingController> scheduling_;
  std::unique_ptr<MigrationController> migration_;
  std::unique_ptr<store::Watch> watch_;
  std::map<std::string, std::vector<std::string>> watched_;
};

// Drives `name` to PreparingTarget (the VM's record written).
void toPreparingTarget(Cluster& c, const std::string& name) {
  // (Boost.Test evaluates a message whether or not the check fails: the
  // state is read once the passes are done.)
  bool reached = c.until([&] { return c.phase(name) == api::kMigrationPreparingTarget; });
  auto s = c.migration(name).status;
  BOOST_TEST_REQUIRE(reached,
                     name << " is " << s.phase << " (" << s.reason << ": " << s.message << ")");
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

// --- the way to PreparingTarget -----------------------------------------------------

BOOST_AUTO_TEST_CASE(pending_scheduling_preparing_target_and_the_vm_record) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.watchMigrations();
  c.createMigration("mig1", "vm1", [](api::VirtualMachineMigration& m) {
    m.spec.parameters.bandwidthMiBps = 64;
    m.spec.parameters.allowPostCopy = true;
  });
  toPreparingTarget(c, "mig1");

  auto seen = c.watchedPhases("mig1");
  // Created with no status; every transition is its own write (kubectl get -w).
  std::vector<std::string> wantPrefix = {"", "Pending/Queued", "Scheduling", "PreparingTarget"};
  std::vector<std::string> phases;
  for (const auto& s : seen) {
    if (s == "" && !phases.empty()) continue;  // the finalizer write
    phases.push_back(s);
  }
  BOOST_TEST(phases == wantPrefix, boost::test_tools::per_element());

  auto m = c.migration("mig1");
  auto vm = c.vm("vm1");
  BOOST_TEST(hasFinalizer(m));
  BOOST_TEST(m.status.sourceNode == "n1");
  BOOST_TEST(m.status.targetNode == "n2");
  BOOST_TEST(m.status.vmUid == vm.metadata.uid);
  BOOST_TEST(!m.status.startTimestamp.empty());
  BOOST_TEST(m.status.endTimestamp.empty());
  BOOST_TEST(m.status.reason.empty());

  BOOST_TEST_REQUIRE(vm.status.migration.has_value());
  const auto& rec = *vm.status.migration;
  BOOST_TEST(rec.name == "mig1");
  BOOST_TEST(rec.uid == m.metadata.uid);
  BOOST_TEST(rec.phase == api::kMigrationPreparingTarget);
  BOOST_TEST(rec.sourceNode == "n1");
  BOOST_TEST(rec.targetNode == "n2");
  BOOST_TEST(!rec.abortRequested);
  BOOST_TEST(!rec.startTimestamp.empty());
  BOOST_TEST((rec.parameters == m.spec.parameters));
  BOOST_TEST(vm.status.nodeName == "n1");  // nothing moves before libvirt says so
  BOOST_TEST(api::validateVirtualMachineStatus(vm.status).empty());

  // Quiet while the target prepares: no rewrites of the record or the object.
  auto rev = c.store().currentRevision().value();
  c.passes(5);
  BOOST_TEST(c.store().currentRevision().value() == rev);
}

BOOST_AUTO_TEST_CASE(the_target_is_never_the_source_and_spec_target_node_is_honoured) {
  Cluster c;
  for (const char* n : {"n1", "n2", "n3", "n4"}) c.addNode(n);
  c.addRunningVm("vm1", "n1");
  c.addRunningVm("vm2", "n1");
  c.createMigration("any", "vm1");
  c.createMigration("to-n3", "vm2",
                    [](api::VirtualMachineMigration& m) { m.spec.targetNode = "n3"; });
  toPreparingTarget(c, "any");
  toPreparingTarget(c, "to-n3");
  BOOST_TEST(c.migration("any").status.targetNode != "n1");
  BOOST_TEST(c.record("vm1").targetNode == c.migration("any").status.targetNode);
  BOOST_TEST(c.migration("to-n3").status.targetNode == "n3");
  BOOST_TEST(c.record("vm2").targetNode == "n3");
}

BOOST_AUTO_TEST_CASE(a_restarted_controller_asks_again_and_carries_on_from_the_record) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1");
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationScheduling; }));
  c.pass();                    // asked
  c.newMigrationController();  // the question is lost with it
  toPreparingTarget(c, "mig1");
  BOOST_TEST(c.record("vm1").targetNode == "n2");

  // Killed between the record's write and the object's: the object still
  // says Scheduling; the record is what counts, and no second one is written.
  auto rec = c.record("vm1");
  c.setMigrationStatus("mig1", [](api::VirtualMachineMigrationStatus& s) {
    s.phase = api::kMigrationScheduling;
    s.targetNode.clear();
  });
  c.newMigrationController();
  toPreparingTarget(c, "mig1");
  BOOST_TEST(c.migration("mig1").status.targetNode == "n2");
  BOOST_TEST((c.record("vm1") == rec));
}

// --- the limits ----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(node_limit_holds_the_third_outbound_migration_in_pending) {
  MigrationOptions o;
  o.parallelOutboundMigrationsPerNode = 2;
  Cluster c(o);
  c.addNode("n1");
  c.addNode("n2");
  c.addNode("n3");
  for (const char* v : {"vm1", "vm2", "vm3"}) c.addRunningVm(v, "n1");
  c.addRunningVm("other", "n2");
  c.createMigration("mig1", "vm1");
  c.createMigration("mig2", "vm2");
  toPreparingTarget(c, "mig1");
  toPreparingTarget(c, "mig2");

  c.createMigration("mig3", "vm3");
  c.createMigration("from-n2", "other");  // another node's limit is its own
  toPreparingTarget(c, "from-n2");
  c.passes(5);
  auto m3 = c.migration("mig3");
  BOOST_TEST(m3.status.phase == api::kMigrationPending);
  BOOST_TEST(m3.status.reason == "NodeLimit");
  BOOST_TEST(contains(m3.status.message, "n1"), m3.status.message);
  BOOST_TEST(contains(m3.status.message, "limit 2"), m3.status.message);
  BOOST_TEST(hasFinalizer(m3));
  BOOST_TEST(!c.vm("vm3").status.migration.has_value());

  // One ends: the third goes.
  c.targetReady("vm1");
  c.sourceSucceeded("vm1", {});
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationSucceeded; }));
  toPreparingTarget(c, "mig3");
  BOOST_TEST(c.migration("mig3").status.reason.empty());
  BOOST_TEST(c.migration("mig3").status.message.empty());
  BOOST_TEST(c.record("vm3").phase == api::kMigrationPreparingTarget);
}

BOOST_AUTO_TEST_CASE(node_limit_counts_migrations_started_in_the_same_pass) {
  MigrationOptions o;
  o.parallelOutboundMigrationsPerNode = 2;
  Cluster c(o);
  c.addNode("n1");
  c.addNode("n2");
  for (const char* v : {"vm1", "vm2", "vm3"}) c.addRunningVm(v, "n1");
  for (const char* m : {"mig1", "mig2", "mig3"}) c.createMigration(m, std::string("vm") + m[3]);
  c.passes(8);
  int preparing = 0, waiting = 0;
  for (const char* m : {"mig1", "mig2", "mig3"}) {
    auto s = c.migration(m).status;
    if (s.phase == api::kMigrationPreparingTarget) ++preparing;
    if (s.phase == api::kMigrationPending && s.reason == "NodeLimit") ++waiting;
  }
  BOOST_TEST(preparing == 2);
  BOOST_TEST(waiting == 1);
}

BOOST_AUTO_TEST_CASE(cluster_limit_holds_the_second_migration_in_pending) {
  MigrationOptions o;
  o.parallelMigrationsPerCluster = 1;
  Cluster c(o);
  c.addNode("n1");
  c.addNode("n2");
  c.addNode("n3");
  c.addRunningVm("vm1", "n1");
  c.addRunningVm("vm2", "n2");
  c.createMigration("mig1", "vm1");
  toPreparingTarget(c, "mig1");
  c.createMigration("mig2", "vm2");
  c.passes(5);
  auto m2 = c.migration("mig2");
  BOOST_TEST(m2.status.phase == api::kMigrationPending);
  BOOST_TEST(m2.status.reason == "ClusterLimit");
  BOOST_TEST(contains(m2.status.message, "limit 1"), m2.status.message);
  BOOST_TEST(!c.vm("vm2").status.migration.has_value());

  // The first fails on its target: the second goes.
  c.mustReport(c.record("vm1").targetNode, "vm1", [](api::MigrationState& m) {
    m.phase = api::kMigrationFailed;
    m.reason = "PreparingTargetFailed";
    m.message = "no space";
  });
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationFailed; }));
  toPreparingTarget(c, "mig2");
}

// --- what fails at once ------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_vm_that_does_not_exist_fails_vm_not_found) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.createMigration("mig1", "ghost");
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationFailed; }));
  auto m = c.migration("mig1");
  BOOST_TEST(m.status.reason == "VmNotFound");
  BOOST_TEST(contains(m.status.message, "ghost"), m.status.message);
  BOOST_TEST(!m.status.endTimestamp.empty());
  // Finished: nothing to hold a delete for.
  BOOST_TEST_REQUIRE(c.until([&] { return !hasFinalizer(c.migration("mig1")); }));
  c.passes(3);
  BOOST_TEST(c.migration("mig1").status.reason == "VmNotFound");
}

BOOST_AUTO_TEST_CASE(a_vm_that_is_not_running_fails_vm_not_running) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.setVmStatus("vm1", [](api::VirtualMachineStatus& s) { s.phase = "Stopped"; });
  c.createMigration("mig1", "vm1");
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationFailed; }));
  BOOST_TEST(c.migration("mig1").status.reason == "VmNotRunning");
}

BOOST_AUTO_TEST_CASE(a_second_migration_of_a_migrating_vm_fails_already_migrating) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addNode("n3");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1");
  toPreparingTarget(c, "mig1");
  auto rec = c.record("vm1");
  c.createMigration("mig2", "vm1");
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig2") == api::kMigrationFailed; }));
  auto m2 = c.migration("mig2");
  BOOST_TEST(m2.status.reason == "AlreadyMigrating");
  BOOST_TEST(contains(m2.status.message, "mig1"), m2.status.message);
  // The first goes on untouched.
  BOOST_TEST(c.phase("mig1") == api::kMigrationPreparingTarget);
  BOOST_TEST((c.record("vm1") == rec));
}

BOOST_AUTO_TEST_CASE(two_migrations_created_together_for_one_vm_one_wins) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addNode("n3");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1");
  c.createMigration("mig2", "vm1");
  auto settled = [&](const std::string& name) {
    auto p = c.phase(name);
    return p == api::kMigrationPreparingTarget || p == api::kMigrationFailed;
  };
  BOOST_TEST_REQUIRE(c.until([&] { return settled("mig1") && settled("mig2"); }));
  auto a = c.migration("mig1").status, b = c.migration("mig2").status;
  BOOST_TEST_CONTEXT(a.phase << "/" << a.reason << " " << b.phase << "/" << b.reason) {
    auto& winner = a.phase == api::kMigrationPreparingTarget ? a : b;
    auto& loser = a.phase == api::kMigrationPreparingTarget ? b : a;
    BOOST_TEST(winner.phase == api::kMigrationPreparingTarget);
    BOOST_TEST(loser.phase == api::kMigrationFailed);
    BOOST_TEST(loser.reason == "AlreadyMigrating");
    BOOST_TEST(c.record("vm1").targetNode == winner.targetNode);
  }
}

BOOST_AUTO_TEST_CASE(spec_target_node_equal_to_the_source_fails_scheduling_failed) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1",
                    [](api::VirtualMachineMigration& m) { m.spec.targetNode = "n1"; });
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationFailed; }));
  auto m = c.migration("mig1");
  BOOST_TEST(m.status.reason == "SchedulingFailed");
  BOOST_TEST(contains(m.status.message, "n1"), m.status.message);
  BOOST_TEST(!c.vm("vm1").status.migration.has_value());
  BOOST_TEST(c.vm("vm1").status.nodeName == "n1");
}

BOOST_AUTO_TEST_CASE(a_spec_target_node_that_does_not_fit_fails_with_the_plugins_reason) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1",
                    [](api::VirtualMachineMigration& m) { m.spec.targetNode = "nowhere"; });
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationFailed; }));
  auto m = c.migration("mig1");
  BOOST_TEST(m.status.reason == "SchedulingFailed");
  BOOST_TEST(contains(m.status.message, "selector"), m.status.message);
  BOOST_TEST(!c.vm("vm1").status.migration.has_value());
}

BOOST_AUTO_TEST_CASE(with_one_node_scheduling_fails_with_the_plugins_reason) {
  Cluster c;
  c.addNode("n1");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1");
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationFailed; }));
  auto m = c.migration("mig1");
  BOOST_TEST(m.status.reason == "SchedulingFailed");
  BOOST_TEST_MESSAGE("one node: " << m.status.message);
  // "no node can take the VM: " and the plugin's own words about the one node.
  BOOST_TEST(contains(m.status.message, "no node can take the VM: 0/1 nodes"), m.status.message);
  BOOST_TEST(!m.status.endTimestamp.empty());
  BOOST_TEST(!c.vm("vm1").status.migration.has_value());
}

// --- mirroring the VM's record -------------------------------------------------------

BOOST_AUTO_TEST_CASE(running_and_succeeded_are_mirrored_from_the_record) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1");
  toPreparingTarget(c, "mig1");

  c.targetReady("vm1");
  c.passes(3);
  BOOST_TEST(c.phase("mig1") == api::kMigrationPreparingTarget);  // no phase of its own

  api::MigrationProgress p;
  p.dataTotalBytes = 1 << 30;
  p.dataProcessedBytes = 1 << 20;
  p.dataRemainingBytes = (1 << 30) - (1 << 20);
  p.dirtyRateBytesPerSecond = 4096;
  p.memoryIteration = 1;
  p.maxDowntimeMs = 300;
  p.elapsedMs = 1500;
  c.sourceRunning("vm1", p);
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationRunning; }));
  auto m = c.migration("mig1");
  BOOST_TEST_REQUIRE(m.status.progress.has_value());
  BOOST_TEST((*m.status.progress == p));

  // New figures follow.
  p.dataProcessedBytes = 1 << 29;
  p.memoryIteration = 2;
  p.lastDecision = "raise max downtime to 600 ms: not converging";
  c.sourceRunning("vm1", p);
  BOOST_TEST_REQUIRE(c.until([&] {
    auto s = c.migration("mig1").status;
    return s.progress && *s.progress == p;
  }));

  api::MigrationResult result{4200, 35, 3u << 30, "pre-copy"};
  c.sourceSucceeded("vm1", result);
  BOOST_TEST(c.vm("vm1").status.nodeName == "n2");  // the handover
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationSucceeded; }));
  m = c.migration("mig1");
  BOOST_TEST_REQUIRE(m.status.result.has_value());
  BOOST_TEST((*m.status.result == result));
  BOOST_TEST(!m.status.endTimestamp.empty());
  BOOST_TEST(m.status.endTimestamp == c.record("vm1").endTimestamp);
  BOOST_TEST(m.status.targetNode == "n2");
  BOOST_TEST(m.status.reason.empty());
  // Finished: the finalizer goes, the object stays (as a record of what happened).
  BOOST_TEST_REQUIRE(c.until([&] { return !hasFinalizer(c.migration("mig1")); }));
  BOOST_TEST(!c.pass());  // nothing unfinished
  auto rev = c.store().currentRevision().value();
  c.passes(3);
  BOOST_TEST(c.store().currentRevision().value() == rev);
}

BOOST_AUTO_TEST_CASE(failed_is_mirrored_with_the_nodes_reason) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1");
  toPreparingTarget(c, "mig1");
  c.targetReady("vm1");
  c.sourceRunning("vm1", {});
  c.sourceFailed("vm1", "MigrationFailed", "migrating to node n2: internal error: qemu died");
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationFailed; }));
  auto m = c.migration("mig1");
  BOOST_TEST(m.status.reason == "MigrationFailed");
  BOOST_TEST(m.status.message == "migrating to node n2: internal error: qemu died");
  BOOST_TEST(!m.status.endTimestamp.empty());
  BOOST_TEST(c.vm("vm1").status.nodeName == "n1");
}

BOOST_AUTO_TEST_CASE(a_vm_deleted_or_a_record_replaced_mid_migration_fails_it) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.addRunningVm("vm2", "n1");
  c.createMigration("mig1", "vm1");
  c.createMigration("mig2", "vm2");
  toPreparingTarget(c, "mig1");
  toPreparingTarget(c, "mig2");
  c.deleteVm("vm1");
  c.setVmStatus("vm2", [](api::VirtualMachineStatus& s) { s.migration.reset(); });
  BOOST_TEST_REQUIRE(c.until([&] {
    return c.phase("mig1") == api::kMigrationFailed && c.phase("mig2") == api::kMigrationFailed;
  }));
  BOOST_TEST(c.migration("mig1").status.reason == "VmDeleted");
  BOOST_TEST(c.migration("mig2").status.reason == "RecordLost");
}

// --- cancel (delete) -------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(cancel_before_target_ready_fails_cancelled_and_removes_the_object) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1");
  toPreparingTarget(c, "mig1");
  c.watchMigrations();
  c.deleteMigration("mig1");
  bool removed = c.until([&] { return !c.findMigration("mig1"); });
  BOOST_TEST_REQUIRE(removed, "mig1 is " << c.phase("mig1"));
  auto seen = c.watchedPhases("mig1");
  BOOST_TEST_REQUIRE(seen.size() >= 2u);
  BOOST_TEST(seen[seen.size() - 2] == "Failed/Cancelled");
  BOOST_TEST(seen.back() == "<deleted>");
  // The record says so too: the target undoes what it prepared.
  auto rec = c.record("vm1");
  BOOST_TEST(rec.phase == api::kMigrationFailed);
  BOOST_TEST(rec.reason == "Cancelled");
  BOOST_TEST(!rec.endTimestamp.empty());
  BOOST_TEST(c.vm("vm1").status.nodeName == "n1");
  // A TargetReady that comes late is refused.
  auto late = c.reportAs("n2", "vm1", [](api::MigrationState& m) {
    m.phase = api::kMigrationTargetReady;
    m.target = api::MigrationTarget{"<domain/>", "qemu+tcp://x/system", "", false, {}};
  });
  BOOST_TEST(!late.ok());
}

BOOST_AUTO_TEST_CASE(cancel_while_pending_or_scheduling_removes_the_object) {
  MigrationOptions o;
  o.parallelMigrationsPerCluster = 1;
  Cluster c(o);
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.addRunningVm("vm2", "n1");
  c.createMigration("mig1", "vm1");
  toPreparingTarget(c, "mig1");
  c.createMigration("waiting", "vm2");
  BOOST_TEST_REQUIRE(
      c.until([&] { return c.migration("waiting").status.reason == "ClusterLimit"; }));
  c.watchMigrations();
  c.deleteMigration("waiting");
  BOOST_TEST_REQUIRE(c.until([&] { return !c.findMigration("waiting"); }));
  auto seen = c.watchedPhases("waiting");
  BOOST_TEST_REQUIRE(seen.size() >= 2u);
  BOOST_TEST(seen[seen.size() - 2] == "Failed/Cancelled");
  BOOST_TEST(!c.vm("vm2").status.migration.has_value());
  BOOST_TEST(c.phase("mig1") == api::kMigrationPreparingTarget);
}

BOOST_AUTO_TEST_CASE(cancel_while_running_requests_the_abort_and_waits_for_the_outcome) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1");
  toPreparingTarget(c, "mig1");
  c.targetReady("vm1");
  c.sourceRunning("vm1", {});
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationRunning; }));

  c.deleteMigration("mig1");
  BOOST_TEST_REQUIRE(c.until([&] { return c.record("vm1").abortRequested; }));
  c.passes(5);
  // Held by the finalizer until the source says how the job ended.
  auto m = c.findMigration("mig1");
  BOOST_TEST_REQUIRE(m.has_value());
  BOOST_TEST(m->status.phase == api::kMigrationRunning);
  BOOST_TEST(m->metadata.deletionTimestamp.has_value());
  BOOST_TEST(hasFinalizer(*m));
  BOOST_TEST(c.record("vm1").phase == api::kMigrationRunning);

  // Progress still mirrors while the abort takes effect.
  api::MigrationProgress p;
  p.dataProcessedBytes = 99;
  c.sourceRunning("vm1", p);
  BOOST_TEST_REQUIRE(c.until([&] {
    auto s = c.migration("mig1").status;
    return s.progress && s.progress->dataProcessedBytes == 99u;
  }));
  BOOST_TEST(c.record("vm1").abortRequested);  // the report did not clear it

  c.watchMigrations();
  c.sourceFailed("vm1", "Cancelled", "migrating to node n2: operation aborted");
  BOOST_TEST_REQUIRE(c.until([&] { return !c.findMigration("mig1"); }));
  auto seen = c.watchedPhases("mig1");
  BOOST_TEST_REQUIRE(seen.size() >= 2u);
  BOOST_TEST(seen[seen.size() - 2] == "Failed/Cancelled");
  BOOST_TEST(seen.back() == "<deleted>");
  BOOST_TEST(c.vm("vm1").status.nodeName == "n1");
}

BOOST_AUTO_TEST_CASE(cancel_of_target_ready_requests_the_abort) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1");
  toPreparingTarget(c, "mig1");
  c.targetReady("vm1");
  c.deleteMigration("mig1");
  BOOST_TEST_REQUIRE(c.until([&] { return c.record("vm1").abortRequested; }));
  c.passes(3);
  BOOST_TEST(c.findMigration("mig1").has_value());
  BOOST_TEST(c.record("vm1").phase == api::kMigrationTargetReady);
  c.sourceFailed("vm1", "Cancelled", "cancelled before the migration started");
  BOOST_TEST_REQUIRE(c.until([&] { return !c.findMigration("mig1"); }));
}

BOOST_AUTO_TEST_CASE(a_cancel_that_lost_the_race_to_completion_says_succeeded) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1");
  toPreparingTarget(c, "mig1");
  c.targetReady("vm1");
  c.sourceRunning("vm1", {});
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationRunning; }));
  c.deleteMigration("mig1");
  BOOST_TEST_REQUIRE(c.until([&] { return c.record("vm1").abortRequested; }));
  c.watchMigrations();
  c.sourceSucceeded("vm1", api::MigrationResult{100, 5, 10, "pre-copy"});
  BOOST_TEST_REQUIRE(c.until([&] { return !c.findMigration("mig1"); }));
  auto seen = c.watchedPhases("mig1");
  BOOST_TEST_REQUIRE(seen.size() >= 2u);
  BOOST_TEST(seen[seen.size() - 2] == "Succeeded");
  BOOST_TEST(c.vm("vm1").status.nodeName == "n2");
}

// --- the target's deadline -----------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_target_that_does_not_prepare_in_time_fails_target_timeout) {
  MigrationOptions o;
  o.targetPrepareTimeout = std::chrono::seconds(30);
  Cluster c(o);
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1");
  toPreparingTarget(c, "mig1");
  c.passes(3);
  BOOST_TEST(c.record("vm1").phase == api::kMigrationPreparingTarget);  // within the deadline

  // Time passes (the record says when it was written).
  c.setVmStatus("vm1", [](api::VirtualMachineStatus& s) {
    s.migration->startTimestamp = rfc3339(static_cast<int64_t>(std::time(nullptr)) - 60);
  });
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationFailed; }));
  auto rec = c.record("vm1");
  BOOST_TEST(rec.phase == api::kMigrationFailed);
  BOOST_TEST(rec.reason == "TargetTimeout");
  BOOST_TEST(contains(rec.message, "n2"), rec.message);
  BOOST_TEST(contains(rec.message, "30 s"), rec.message);
  auto m = c.migration("mig1");
  BOOST_TEST(m.status.reason == "TargetTimeout");
  BOOST_TEST(m.status.message == rec.message);
  BOOST_TEST(!m.status.endTimestamp.empty());
  BOOST_TEST(c.vm("vm1").status.nodeName == "n1");
  // The target's late TargetReady is refused: the source never starts.
  auto late = c.reportAs("n2", "vm1", [](api::MigrationState& m) {
    m.phase = api::kMigrationTargetReady;
    m.target = api::MigrationTarget{"<domain/>", "qemu+tcp://x/system", "", false, {}};
  });
  BOOST_TEST(!late.ok());
}

BOOST_AUTO_TEST_CASE(target_ready_is_not_timed_out) {
  MigrationOptions o;
  o.targetPrepareTimeout = std::chrono::seconds(30);
  Cluster c(o);
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1");
  toPreparingTarget(c, "mig1");
  c.targetReady("vm1");
  c.setVmStatus("vm1", [](api::VirtualMachineStatus& s) {
    s.migration->startTimestamp = rfc3339(static_cast<int64_t>(std::time(nullptr)) - 60);
  });
  c.passes(5);
  BOOST_TEST(c.record("vm1").phase == api::kMigrationTargetReady);
  BOOST_TEST(c.phase("mig1") == api::kMigrationPreparingTarget);
}

// --- the target's room ------------------------------------------------------------------

// The target prepares (disks, NICs, memory for the incoming guest) before
// anything moves, while the VM stays bound to the source: a node already
// receiving a VM has that much less room for another.
BOOST_AUTO_TEST_CASE(a_node_receiving_a_vm_is_not_picked_for_one_that_no_longer_fits) {
  Cluster c;
  c.addNode("n1", 8);
  c.addNode("n2", 2);
  c.addNode("n3", 2);
  c.addRunningVm("vm1", "n1", 2);
  c.addRunningVm("vm2", "n1", 2);
  c.createMigration("mig1", "vm1");
  toPreparingTarget(c, "mig1");
  std::string first = c.migration("mig1").status.targetNode;
  c.createMigration("mig2", "vm2");
  toPreparingTarget(c, "mig2");
  BOOST_TEST(c.migration("mig2").status.targetNode != first);
  BOOST_TEST(c.migration("mig2").status.targetNode != "n1");
}

BOOST_AUTO_TEST_CASE(migrations_scheduled_together_do_not_share_the_room_of_one) {
  Cluster c;
  c.addNode("n1", 8);
  c.addNode("n2", 2);
  c.addNode("n3", 2);
  c.addRunningVm("vm1", "n1", 2);
  c.addRunningVm("vm2", "n1", 2);
  c.createMigration("mig1", "vm1");
  c.createMigration("mig2", "vm2");
  toPreparingTarget(c, "mig1");
  toPreparingTarget(c, "mig2");
  auto t1 = c.migration("mig1").status.targetNode, t2 = c.migration("mig2").status.targetNode;
  BOOST_TEST(t1 != t2);
  BOOST_TEST(t1 != "n1");
  BOOST_TEST(t2 != "n1");
}

BOOST_AUTO_TEST_CASE(no_room_left_on_the_only_other_node_fails_scheduling) {
  Cluster c;
  c.addNode("n1", 8);
  c.addNode("n2", 2);
  c.addRunningVm("vm1", "n1", 2);
  c.addRunningVm("vm2", "n1", 2);
  c.createMigration("mig1", "vm1");
  toPreparingTarget(c, "mig1");
  c.createMigration("mig2", "vm2");
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig2") == api::kMigrationFailed; }));
  auto m2 = c.migration("mig2");
  BOOST_TEST(m2.status.reason == "SchedulingFailed");
  BOOST_TEST(contains(m2.status.message, "insufficient cpu"), m2.status.message);
  // Once the first has moved, n2 is full for real.
  c.targetReady("vm1");
  c.sourceSucceeded("vm1", {});
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationSucceeded; }));
  BOOST_TEST(c.vm("vm1").status.nodeName == "n2");
}

// The VM's own nodeSelector holds wherever it goes: a migration narrows the
// choice, it does not replace the VM's constraints.
BOOST_AUTO_TEST_CASE(the_vms_node_selector_holds_and_the_migrations_narrows_it) {
  MigrationOptions o;
  o.parallelOutboundMigrationsPerNode = 5;  // all three from n1 at once
  Cluster c(o);
  c.addNode("n1");
  c.addNode("n2");
  c.addNode("n3");
  c.addNode("n4");
  auto label = [&](const std::string& node, const std::string& disk) {
    auto key = api::nodeKey(node);
    auto cur = c.store().get(key);
    BOOST_TEST_REQUIRE(cur.ok());
    auto n = api::decodeStoredNode(cur.value());
    BOOST_TEST_REQUIRE(n.ok());
    n.value().metadata.labels["disk"] = disk;
    BOOST_TEST_REQUIRE(
        c.store().update(key, api::storeValue(n.value()), cur.value().modRevision).ok());
  };
  label("n1", "ssd");
  label("n2", "hdd");
  label("n3", "ssd");
  label("n4", "hdd");
  for (const char* v : {"vm1", "vm2", "vm3"}) {
    c.addRunningVm(v, "n1");
    auto key = api::virtualMachineKey("default", v);
    auto cur = c.store().get(key);
    auto vm = api::decodeStoredVirtualMachine(cur.value());
    vm.value().spec.nodeSelector["disk"] = "ssd";
    BOOST_TEST_REQUIRE(
        c.store().update(key, api::storeValue(vm.value()), cur.value().modRevision).ok());
  }
  c.createMigration("plain", "vm1");
  c.createMigration("hdd", "vm2",
                    [](api::VirtualMachineMigration& m) { m.spec.nodeSelector["disk"] = "hdd"; });
  c.createMigration("to-n4", "vm3",
                    [](api::VirtualMachineMigration& m) { m.spec.targetNode = "n4"; });
  toPreparingTarget(c, "plain");
  BOOST_TEST(c.migration("plain").status.targetNode == "n3");
  for (const char* m : {"hdd", "to-n4"}) {
    BOOST_TEST_CONTEXT(m) {
      BOOST_TEST_REQUIRE(c.until([&] {
        auto p = c.phase(m);
        return p == api::kMigrationFailed || p == api::kMigrationPreparingTarget;
      }));
      auto s = c.migration(m).status;
      BOOST_TEST(s.phase == api::kMigrationFailed, s.phase << " to " << s.targetNode);
      BOOST_TEST(s.reason == "SchedulingFailed");
    }
  }
}

// A cancel racing the target: the target's TargetReady lands between the
// delete and the controller's next pass. The record must not be failed
// under a source that may start; the abort goes the source's way.
BOOST_AUTO_TEST_CASE(a_cancel_racing_target_ready_aborts_through_the_source) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1");
  toPreparingTarget(c, "mig1");
  c.deleteMigration("mig1");
  c.targetReady("vm1");
  BOOST_TEST_REQUIRE(c.until([&] { return c.record("vm1").abortRequested; }));
  BOOST_TEST(c.record("vm1").phase == api::kMigrationTargetReady);
  BOOST_TEST(c.findMigration("mig1").has_value());
  c.sourceFailed("vm1", "Cancelled", "cancelled before the migration started");
  BOOST_TEST_REQUIRE(c.until([&] { return !c.findMigration("mig1"); }));
}

// Target questions go one at a time (each answer sees the record of the one
// before): a question whose migration failed before its answer was read
// must not hold the others back.
BOOST_AUTO_TEST_CASE(a_question_left_by_a_failed_migration_does_not_block_the_next) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.addRunningVm("vm2", "n1");
  c.createMigration("mig1", "vm1");
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationScheduling; }));
  c.pass();  // mig1 asks; the scheduler answers in the next round
  c.deleteVm("vm1");
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationFailed; }));
  BOOST_TEST(c.migration("mig1").status.reason == "VmDeleted");
  c.createMigration("mig2", "vm2");
  toPreparingTarget(c, "mig2");
  BOOST_TEST(c.record("vm2").targetNode == "n2");
}

BOOST_AUTO_TEST_CASE(four_migrations_from_one_node_all_land_within_the_limits) {
  // A drain's shape: 4 VMs leave n1, at most 2 at once, onto nodes that
  // have room for 2 each.
  Cluster c;
  c.addNode("n1", 8);
  c.addNode("n2", 2);
  c.addNode("n3", 2);
  for (int i = 1; i <= 4; ++i) {
    c.addRunningVm("vm" + std::to_string(i), "n1", 1);
    c.createMigration("mig" + std::to_string(i), "vm" + std::to_string(i));
  }
  std::map<std::string, int> landed;
  for (int round = 0; round < 200 && landed.size() < 4; ++round) {
    c.pass();
    int inFlight = 0;
    for (int i = 1; i <= 4; ++i) {
      std::string m = "mig" + std::to_string(i), v = "vm" + std::to_string(i);
      auto phase = c.phase(m);
      if (phase == api::kMigrationScheduling || phase == api::kMigrationPreparingTarget ||
          phase == api::kMigrationRunning) {
        ++inFlight;
      }
      BOOST_TEST_REQUIRE(phase != api::kMigrationFailed,
                         m << ": " << c.migration(m).status.message);
      if (phase == api::kMigrationPreparingTarget &&
          c.record(v).phase == api::kMigrationPreparingTarget) {
        // The nodes do their part at once.
        c.targetReady(v);
        c.sourceSucceeded(v, {});
      }
      if (phase == api::kMigrationSucceeded && !landed.count(m)) landed[m] = 1;
    }
    BOOST_TEST_REQUIRE(inFlight <= 2);
  }
  BOOST_TEST(landed.size() == 4u);
  std::map<std::string, int> perNode;
  for (int i = 1; i <= 4; ++i) ++perNode[c.vm("vm" + std::to_string(i)).status.nodeName];
  BOOST_TEST(perNode["n2"] == 2);
  BOOST_TEST(perNode["n3"] == 2);
}

// --- events -------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(each_outcome_is_one_event_on_the_migration) {
  RecordingSink sink;
  MigrationOptions o;
  o.events = &sink;
  Cluster c(o);
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.addRunningVm("vm2", "n1");
  c.createMigration("ok", "vm1");
  toPreparingTarget(c, "ok");
  c.targetReady("vm1");
  c.sourceRunning("vm1", {});
  c.sourceSucceeded("vm1", api::MigrationResult{2000, 30, 64u << 20, "pre-copy"});
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("ok") == api::kMigrationSucceeded; }));
  c.createMigration("cancelled", "vm2");
  toPreparingTarget(c, "cancelled");
  c.targetReady("vm2");
  c.sourceRunning("vm2", {});
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("cancelled") == api::kMigrationRunning; }));
  c.deleteMigration("cancelled");
  c.passes(3);
  c.sourceFailed("vm2", "Cancelled", "migrating to node n2: operation aborted");
  BOOST_TEST_REQUIRE(c.until([&] { return !c.findMigration("cancelled"); }));
  c.passes(3);

  std::vector<std::string> want = {"Normal MigrationScheduled", "Normal MigrationSucceeded",
                                   "Normal MigrationScheduled", "Normal MigrationCancelling",
                                   "Warning MigrationFailed"};
  BOOST_TEST(sink.reasons() == want, boost::test_tools::per_element());
  BOOST_TEST_REQUIRE(sink.events.size() == want.size());
  const auto& done = sink.events[1];
  BOOST_TEST(done.object.kind == api::kVirtualMachineMigrationKind);
  BOOST_TEST(done.object.name == "ok");
  BOOST_TEST(done.object.uid == c.migration("ok").metadata.uid);
  BOOST_TEST(done.message == "migrated vm1 to node n2 in 2000 ms (downtime 30 ms, 64 MiB moved)");
  BOOST_TEST(sink.events[0].message == "migrating vm1 from node n1 to node n2");
  BOOST_TEST(sink.events[4].message == "migrating to node n2: operation aborted");
}

BOOST_AUTO_TEST_CASE(there_and_back_a_new_record_replaces_a_finished_one) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.createMigration("there", "vm1");
  toPreparingTarget(c, "there");
  c.targetReady("vm1");
  c.sourceSucceeded("vm1", {});
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("there") == api::kMigrationSucceeded; }));
  BOOST_TEST(c.vm("vm1").status.nodeName == "n2");

  c.createMigration("back", "vm1");
  toPreparingTarget(c, "back");
  auto back = c.migration("back");
  BOOST_TEST(back.status.sourceNode == "n2");
  BOOST_TEST(back.status.targetNode == "n1");
  auto rec = c.record("vm1");
  BOOST_TEST(rec.name == "back");
  BOOST_TEST(rec.uid == back.metadata.uid);
  BOOST_TEST(rec.sourceNode == "n2");
  BOOST_TEST(rec.targetNode == "n1");
  BOOST_TEST(!rec.result.has_value());  // nothing of the first one carried over
  BOOST_TEST(!rec.target.has_value());
  c.targetReady("vm1");
  c.sourceSucceeded("vm1", {});
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("back") == api::kMigrationSucceeded; }));
  BOOST_TEST(c.vm("vm1").status.nodeName == "n1");
  // The first keeps saying what happened to it.
  BOOST_TEST(c.phase("there") == api::kMigrationSucceeded);
  BOOST_TEST(c.migration("there").status.targetNode == "n2");
}

// Both controllers on their own threads, as the controller process runs
// them: the target question crosses threads (pickMigrationTarget's future).
BOOST_AUTO_TEST_CASE(both_controllers_running_on_their_threads) {
  MigrationOptions o;
  o.interval = std::chrono::milliseconds(20);
  Cluster c(o);
  c.addNode("n1");
  c.addNode("n2");
  c.addNode("n3");
  for (int i = 1; i <= 3; ++i) c.addRunningVm("vm" + std::to_string(i), "n1");
  auto waitFor = [&](const std::function<bool()>& done) {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!done() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
  };
  {
    std::jthread scheduler([&](std::stop_token stop) { c.scheduling().run(stop); });
    std::jthread migrations([&](std::stop_token stop) { c.migrations().run(stop); });
    for (int i = 1; i <= 3; ++i) {
      c.createMigration("mig" + std::to_string(i), "vm" + std::to_string(i));
    }
    for (int i = 1; i <= 3; ++i) {
      std::string m = "mig" + std::to_string(i), v = "vm" + std::to_string(i);
      BOOST_TEST_REQUIRE(waitFor([&] { return c.phase(m) == api::kMigrationPreparingTarget; }));
      c.targetReady(v);
      c.sourceSucceeded(v, {});
      BOOST_TEST_REQUIRE(waitFor([&] { return c.phase(m) == api::kMigrationSucceeded; }));
    }
  }
  for (int i = 1; i <= 3; ++i) {
    BOOST_TEST(c.vm("vm" + std::to_string(i)).status.nodeName != "n1");
  }
}

BOOST_AUTO_TEST_CASE(cancel_with_the_target_question_in_flight_writes_no_record) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.addRunningVm("vm2", "n1");
  c.createMigration("mig1", "vm1");
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationScheduling; }));
  c.pass();  // asked
  c.deleteMigration("mig1");
  BOOST_TEST_REQUIRE(c.until([&] { return !c.findMigration("mig1"); }));
  c.passes(3);
  BOOST_TEST(!c.vm("vm1").status.migration.has_value());
  // And the next migration is not held back by the question left behind.
  c.createMigration("mig2", "vm2");
  toPreparingTarget(c, "mig2");
}

BOOST_AUTO_TEST_CASE(a_vm_that_stops_before_its_target_is_written_fails_vm_not_running) {
  Cluster c;
  c.addNode("n1");
  c.addNode("n2");
  c.addRunningVm("vm1", "n1");
  c.createMigration("mig1", "vm1");
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationScheduling; }));
  c.pass();  // asked
  c.setVmStatus("vm1", [](api::VirtualMachineStatus& s) { s.phase = "Stopped"; });
  BOOST_TEST_REQUIRE(c.until([&] { return c.phase("mig1") == api::kMigrationFailed; }));
  BOOST_TEST(c.migration("mig1").status.reason == "VmNotRunning");
  BOOST_TEST(!c.vm("vm1").status.migration.has_value());
}
