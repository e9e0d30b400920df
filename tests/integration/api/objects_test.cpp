// The typed store codec and the status writers' helpers (objects.h) over a
// real SqliteStore: what the reconcilers and node agents use instead of HTTP.
#define BOOST_TEST_MODULE api_objects
#include <boost/test/unit_test.hpp>

#include "api/objects.h"
#include "store/sqlite/sqlite_store.h"

#include <unistd.h>

#include <filesystem>
#include <thread>

namespace fs = std::filesystem;
using namespace vmhost;
using namespace vmhost::api;

namespace {

struct TempStore {
  fs::path dir;
  std::unique_ptr<store::SqliteStore> store;
  TempStore() {
    char tmpl[] = "/tmp/vmhost-api-objects-XXXXXX";
    dir = ::mkdtemp(tmpl);
    store::SqliteStoreOptions opts;
    opts.syncEveryCommit = false;
    auto s = store::SqliteStore::open(dir.string(), opts);
    BOOST_TEST_REQUIRE(s.ok());
    store = std::move(s.value());
  }
  ~TempStore() {
    store.reset();
    fs::remove_all(dir);
  }
};

VirtualMachine sampleVm(const std::string& name) {
  VirtualMachine vm;
  vm.metadata.name = name;
  vm.metadata.ns = "default";
  vm.metadata.uid = newUid();
  vm.metadata.creationTimestamp = nowRfc3339();
  vm.metadata.generation = 1;
  vm.spec.memory = parseQuantity("128Mi").value();
  vm.status.phase = "Pending";
  return vm;
}

}  // namespace

BOOST_AUTO_TEST_CASE(stored_values_round_trip_with_revision) {
  TempStore t;
  auto vm = sampleVm("a");
  vm.metadata.resourceVersion = "999";  // never stored: the revision is
  auto created = t.store->create(virtualMachineKey("default", "a"), storeValue(vm));
  BOOST_TEST_REQUIRE(created.ok());
  BOOST_TEST(created->value.find("resourceVersion") == std::string::npos);
  auto back = decodeStoredVirtualMachine(*created);
  BOOST_TEST_REQUIRE(back.ok());
  BOOST_TEST(back->metadata.resourceVersion == std::to_string(created->modRevision));
  BOOST_TEST(back->spec.memory.text == "128Mi");

  store::StoredObject garbage{virtualMachineKey("default", "x"), "not json", 1, 1};
  auto bad = decodeStoredVirtualMachine(garbage);
  BOOST_TEST_REQUIRE(!bad.ok());
  BOOST_TEST(bad.error().code == VMHOST_ERR_DATA_LOSS);
  BOOST_TEST(bad.error().message == "virtualmachines/default/x: stored value is not JSON");
}

BOOST_AUTO_TEST_CASE(status_updates_retry_conflicts_and_validate) {
  TempStore t;
  BOOST_TEST_REQUIRE(
      t.store->create(virtualMachineKey("default", "vm"), storeValue(sampleVm("vm"))).ok());

  // Two writers, each setting its own condition, many times: every update
  // lands (conflicts are retried), none is lost.
  auto writer = [&](const std::string& type) {
    for (int i = 0; i < 25; ++i) {
      auto r = updateVirtualMachineStatus(
          *t.store, "default", "vm",
          [&](VirtualMachineStatus& s) {
            for (auto& c : s.conditions) {
              if (c.type == type) {
                c.message = std::to_string(i);
                return true;
              }
            }
            s.conditions.push_back({type, "True", "Test", std::to_string(i), ""});
            return true;
          },
          1000);
      BOOST_TEST(r.ok());
    }
  };
  std::thread a(writer, "A"), b(writer, "B");
  a.join();
  b.join();
  auto vm = decodeStoredVirtualMachine(t.store->get(virtualMachineKey("default", "vm")).value());
  BOOST_TEST_REQUIRE(vm.ok());
  BOOST_TEST_REQUIRE(vm->status.conditions.size() == 2u);
  for (const auto& c : vm->status.conditions) BOOST_TEST(c.message == "24");

  // No write when the mutation says so.
  int64_t rev = t.store->currentRevision().value();
  BOOST_TEST(updateVirtualMachineStatus(*t.store, "default", "vm", [](VirtualMachineStatus&) {
               return false;
             }).ok());
  BOOST_TEST(t.store->currentRevision().value() == rev);

  // An invalid status is refused with the field path, and not written.
  auto bad = updateVirtualMachineStatus(*t.store, "default", "vm", [](VirtualMachineStatus& s) {
    s.phase = "Sleeping";
    return true;
  });
  BOOST_TEST_REQUIRE(!bad.ok());
  BOOST_TEST(bad.error().code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(bad.error().message.rfind("status.phase: Unsupported value: \"Sleeping\"", 0) == 0);
  BOOST_TEST(t.store->currentRevision().value() == rev);

  auto missing = updateVirtualMachineStatus(*t.store, "default", "nope",
                                            [](VirtualMachineStatus&) { return true; });
  BOOST_TEST(missing.error().code == VMHOST_ERR_NOT_FOUND);
}

BOOST_AUTO_TEST_CASE(node_registration) {
  TempStore t;
  Node n;
  n.metadata.name = "n1";
  n.metadata.labels["zone"] = "a";
  n.status.capacity.cpu = parseQuantity("4").value();
  n.status.conditions.push_back({"Ready", "True", "NodeReady", "", ""});
  auto first = registerNode(*t.store, n);
  BOOST_TEST_REQUIRE(first.ok());
  BOOST_TEST(first->metadata.labels.at("kubernetes.io/hostname") == "n1");
  BOOST_TEST(!first->metadata.uid.empty());

  // The operator cordons it; the agent re-registers: the cordon stays,
  // labels merge, status is replaced.
  auto stored = decodeStoredNode(t.store->get(nodeKey("n1")).value());
  stored->spec.unschedulable = true;
  BOOST_TEST_REQUIRE(t.store->update(nodeKey("n1"), storeValue(*stored), 0).ok());
  Node again;
  again.metadata.name = "n1";
  again.metadata.labels["disk"] = "ssd";
  again.status.capacity.cpu = parseQuantity("8").value();
  auto second = registerNode(*t.store, again);
  BOOST_TEST_REQUIRE(second.ok());
  BOOST_TEST(second->spec.unschedulable);
  BOOST_TEST(second->metadata.labels.at("zone") == "a");
  BOOST_TEST(second->metadata.labels.at("disk") == "ssd");
  BOOST_TEST(second->status.capacity.cpu->text == "8");
  BOOST_TEST(second->metadata.uid == first->metadata.uid);

  auto hb = updateNodeStatus(*t.store, "n1", [](NodeStatus& s) {
    s.conditions = {{"Ready", "False", "HeartbeatMissed", "no heartbeat for 40s", ""}};
    return true;
  });
  BOOST_TEST_REQUIRE(hb.ok());
  BOOST_TEST(hb->readiness() == "NotReady,SchedulingDisabled");
}
