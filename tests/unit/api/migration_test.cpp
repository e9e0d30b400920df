// The VirtualMachineMigration kind (api/migration.h): decode with field
// paths, validation (every rule, with its path), encode round trips, the
// VM's status.migration inside the VM codec, and the store codec and
// status writer over a real SqliteStore.
#define BOOST_TEST_MODULE api_migration
#include <boost/test/unit_test.hpp>

#include "api/migration.h"
#include "api/objects.h"
#include "store/sqlite/sqlite_store.h"

#include <unistd.h>

#include <filesystem>

namespace fs = std::filesystem;
using namespace vmhost;
using namespace vmhost::api;

namespace {

// Every field set, in the order encode() writes them: encode(decode(x)) == x.
Json fullMigration() {
  return Json::parse(R"({
    "apiVersion": "vmhost.io/v1", "kind": "VirtualMachineMigration",
    "metadata": {"name": "mig1", "namespace": "default", "uid": "u-1",
                 "resourceVersion": "7", "generation": 1,
                 "creationTimestamp": "2026-01-02T03:04:05Z",
                 "labels": {"app": "web"}, "finalizers": ["vmhost.io/migration"]},
    "spec": {
      "vmName": "vm1",
      "targetNode": "node-b",
      "nodeSelector": {"zone": "a"},
      "parameters": {"bandwidthMiBps": 1000, "maxDowntimeMs": 300,
                     "completionTimeoutPerGiBSeconds": 150, "progressTimeoutSeconds": 120,
                     "parallelConnections": 4, "allowPostCopy": false, "autoConverge": true}
    },
    "status": {
      "phase": "Running", "reason": "Migrating", "message": "pre-copy iteration 3",
      "vmUid": "vm-uid-1", "sourceNode": "node-a", "targetNode": "node-b",
      "startTimestamp": "2026-01-02T03:04:06Z", "endTimestamp": "2026-01-02T03:05:06Z",
      "progress": {"dataTotalBytes": 18446744073709551615, "dataProcessedBytes": 1000,
                   "dataRemainingBytes": 0, "dirtyRateBytesPerSecond": 5,
                   "memoryIteration": 3, "maxDowntimeMs": 300, "elapsedMs": 4000,
                   "postCopy": true, "lastDecision": "raise max downtime to 600 ms"},
      "result": {"totalMs": 9000, "downtimeMs": 42, "bytesTransferred": 123456789,
                 "endedBy": "pre-copy"}
    }
  })");
}

Json fullState() {
  return Json::parse(R"({
    "name": "mig1", "uid": "u-1", "sourceNode": "node-a", "targetNode": "node-b",
    "phase": "Running", "abortRequested": true, "reason": "Aborted", "message": "cancelled",
    "parameters": {"maxDowntimeMs": 500, "allowPostCopy": true},
    "target": {"domainXml": "<domain type='kvm'/>", "libvirtUri": "qemu+tls://10.0.0.2/system",
               "migrateUri": "tcp://10.0.0.2", "tls": true, "copyDisks": ["vda", "vdb"]},
    "progress": {"dataTotalBytes": 100, "dataProcessedBytes": 50, "dataRemainingBytes": 50,
                 "dirtyRateBytesPerSecond": 0, "memoryIteration": 1, "maxDowntimeMs": 500,
                 "elapsedMs": 10},
    "result": {"totalMs": 1, "downtimeMs": 2, "bytesTransferred": 3},
    "startTimestamp": "2026-01-02T03:04:06Z", "endTimestamp": "2026-01-02T03:05:06Z"
  })");
}

Json minimal() {
  return Json::parse(R"({"apiVersion": "vmhost.io/v1", "kind": "VirtualMachineMigration",
                         "metadata": {"name": "m", "namespace": "default"},
                         "spec": {"vmName": "vm1"}})");
}

// All errors of decode + validate, as "field: body" strings.
std::vector<std::string> errorsOf(const Json& j, FieldValidation mode = FieldValidation::kStrict) {
  auto d = decodeVirtualMachineMigration(j, mode);
  std::vector<std::string> out;
  for (auto& e : d.errors) out.push_back(e.toString());
  if (d.ok()) {
    for (auto& e : validateVirtualMachineMigration(d.value)) out.push_back(e.toString());
  }
  return out;
}

std::string only(const std::vector<std::string>& errs) {
  BOOST_TEST_REQUIRE(errs.size() == 1u, "expected one error, got "
                                            << errs.size() << ": "
                                            << (errs.empty() ? "" : errs[0]));
  return errs[0];
}

// `mutate` applied to minimal(): the one error it causes.
template <typename F>
std::string errorOf(F mutate) {
  Json j = minimal();
  mutate(j);
  return only(errorsOf(j));
}

Json vmWith(const Json& migration) {
  Json j = Json::parse(R"({"apiVersion": "vmhost.io/v1", "kind": "VirtualMachine",
                           "metadata": {"name": "vm1", "namespace": "default"},
                           "spec": {"memory": "128Mi"},
                           "status": {"phase": "Running", "nodeName": "node-a"}})");
  j["status"]["migration"] = migration;
  return j;
}

std::vector<std::string> vmErrorsOf(const Json& j) {
  auto d = decodeVirtualMachine(j, FieldValidation::kStrict);
  std::vector<std::string> out;
  for (auto& e : d.errors) out.push_back(e.toString());
  if (d.ok()) {
    for (auto& e : validateVirtualMachine(d.value)) out.push_back(e.toString());
  }
  return out;
}

struct TempStore {
  fs::path dir;
  std::unique_ptr<store::SqliteStore> store;
  TempStore() {
    char tmpl[] = "/tmp/vmhost-api-migration-XXXXXX";
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

}  // namespace

BOOST_AUTO_TEST_CASE(full_object_round_trips) {
  Json in = fullMigration();
  auto d = decodeVirtualMachineMigration(in, FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(d.ok(), (d.ok() ? "" : d.errors[0].toString()));
  BOOST_TEST(d.warnings.empty());
  const auto& m = d.value;
  BOOST_TEST(m.spec.vmName == "vm1");
  BOOST_TEST(m.spec.parameters.bandwidthMiBps == 1000u);
  BOOST_TEST(m.spec.parameters.parallelConnections == 4u);
  BOOST_TEST((m.spec.parameters.allowPostCopy == std::optional<bool>(false)));
  BOOST_TEST((m.spec.parameters.autoConverge == std::optional<bool>(true)));
  BOOST_TEST_REQUIRE(m.status.progress.has_value());
  BOOST_TEST(m.status.progress->dataTotalBytes == 18446744073709551615ull);
  BOOST_TEST(m.status.progress->postCopy);
  BOOST_TEST_REQUIRE(m.status.result.has_value());
  BOOST_TEST(m.status.result->downtimeMs == 42u);
  BOOST_TEST(validateVirtualMachineMigration(m).empty());

  Json out = encode(m);
  BOOST_TEST(out == in, out.dump());
  // uint64 values are JSON numbers, not strings.
  BOOST_TEST(out["status"]["progress"]["dataTotalBytes"].is_number_unsigned());

  // Optional fields left unset are left out.
  auto small = decodeVirtualMachineMigration(minimal(), FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(small.ok());
  Json enc = encode(small.value);
  BOOST_TEST(enc["spec"] == Json::parse(R"({"vmName": "vm1"})"));
  BOOST_TEST(enc["status"] == Json::object());
  // Empty parameters are no parameters.
  Json withEmpty = minimal();
  withEmpty["spec"]["parameters"] = Json::object();
  BOOST_TEST(encode(decodeVirtualMachineMigration(withEmpty, FieldValidation::kStrict).value) ==
             enc);
  // false booleans are values (the plugin's own when absent), so they stay.
  Json off = minimal();
  off["spec"]["parameters"] = Json{{"autoConverge", false}};
  BOOST_TEST(encode(decodeVirtualMachineMigration(off, FieldValidation::kStrict).value)["spec"] ==
             off["spec"]);
}

BOOST_AUTO_TEST_CASE(decode_errors_name_the_field) {
  BOOST_TEST(only(errorsOf(Json::parse(R"({"apiVersion": "vmhost.io/v1", "metadata":
                                           {"name": "m"}})"))) == "spec: Required value");
  BOOST_TEST(errorOf([](Json& j) { j["spec"]["vmName"] = 3; }) ==
             "spec.vmName: Invalid value: \"integer\": spec.vmName in body must be of type "
             "string: \"integer\"");
  BOOST_TEST(errorOf([](Json& j) { j["spec"]["parameters"] = "fast"; }) ==
             "spec.parameters: Invalid value: \"string\": spec.parameters in body must be of "
             "type object: \"string\"");
  BOOST_TEST(errorOf([](Json& j) { j["spec"]["parameters"]["maxDowntimeMs"] = -1; }) ==
             "spec.parameters.maxDowntimeMs: Invalid value: -1: must be greater than or equal "
             "to 0");
  BOOST_TEST(errorOf([](Json& j) { j["spec"]["parameters"]["bandwidthMiBps"] = 2.5; }) ==
             "spec.parameters.bandwidthMiBps: Invalid value: \"number\": "
             "spec.parameters.bandwidthMiBps in body must be of type integer: \"number\"");
  {  // 20.0 is an integer in JSON Schema
    Json j = minimal();
    j["spec"]["parameters"]["bandwidthMiBps"] = 20.0;
    auto d = decodeVirtualMachineMigration(j, FieldValidation::kStrict);
    BOOST_TEST_REQUIRE(d.ok());
    BOOST_TEST(d.value.spec.parameters.bandwidthMiBps == 20u);
  }
  BOOST_TEST(
      errorOf([](Json& j) { j["spec"]["parameters"]["parallelConnections"] = 4294967296ull; }) ==
      "spec.parameters.parallelConnections: Invalid value: 4294967296: must be at most "
      "4294967295");
  BOOST_TEST(errorOf([](Json& j) { j["spec"]["parameters"]["allowPostCopy"] = "yes"; }) ==
             "spec.parameters.allowPostCopy: Invalid value: \"string\": "
             "spec.parameters.allowPostCopy in body must be of type boolean: \"string\"");
  BOOST_TEST(errorOf([](Json& j) {
               j["spec"]["nodeSelector"] = Json{{"zone", 1}};
             }) ==
             "spec.nodeSelector[zone]: Invalid value: \"integer\": spec.nodeSelector[zone] in "
             "body must be of type string: \"integer\"");
  BOOST_TEST(errorOf([](Json& j) {
               j["status"]["progress"] = Json{{"dataTotalBytes", "lots"}};
             }) ==
             "status.progress.dataTotalBytes: Invalid value: \"string\": "
             "status.progress.dataTotalBytes in body must be of type integer: \"string\"");
  BOOST_TEST(errorOf([](Json& j) {
               j["status"]["result"] = Json{{"downtimeMs", true}};
             }) ==
             "status.result.downtimeMs: Invalid value: \"boolean\": status.result.downtimeMs in "
             "body must be of type integer: \"boolean\"");

  // Unknown fields, per fieldValidation.
  Json unknown = minimal();
  unknown["spec"]["foo"] = 1;
  unknown["spec"]["parameters"] = Json{{"speed", 1}};
  unknown["status"] = Json{{"progress", Json{{"eta", 1}}}};
  auto strict = errorsOf(unknown);
  BOOST_TEST(strict == (std::vector<std::string>{
                           "spec.foo: Unknown field: field not declared in schema",
                           "spec.parameters.speed: Unknown field: field not declared in schema",
                           "status.progress.eta: Unknown field: field not declared in schema"}),
             boost::test_tools::per_element());
  auto warn = decodeVirtualMachineMigration(unknown, FieldValidation::kWarn);
  BOOST_TEST(warn.ok());
  BOOST_TEST(warn.warnings == (std::vector<std::string>{"unknown field \"spec.foo\"",
                                                        "unknown field \"spec.parameters.speed\"",
                                                        "unknown field \"status.progress.eta\""}),
             boost::test_tools::per_element());
  auto ignore = decodeVirtualMachineMigration(unknown, FieldValidation::kIgnore);
  BOOST_TEST(ignore.ok());
  BOOST_TEST(ignore.warnings.empty());
}

BOOST_AUTO_TEST_CASE(validation_rules_with_paths) {
  BOOST_TEST(errorsOf(minimal()).empty());
  BOOST_TEST(errorsOf(fullMigration()).empty());

  BOOST_TEST(errorOf([](Json& j) { j["spec"].erase("vmName"); }) ==
             "spec.vmName: Required value: the name of the VM to migrate");
  BOOST_TEST(errorOf([](Json& j) { j["spec"]["vmName"] = ""; }) ==
             "spec.vmName: Required value: the name of the VM to migrate");
  BOOST_TEST(
      errorOf([](Json& j) {
        j["spec"]["vmName"] = "Bad_VM";
      }).rfind("spec.vmName: Invalid value: \"Bad_VM\": a lowercase RFC 1123 subdomain", 0) == 0);
  BOOST_TEST(errorsOf([] {
               Json j = minimal();
               j["spec"]["vmName"] = "web.prod-1";  // VM names are subdomains: dots are fine
               return j;
             }())
                 .empty());
  BOOST_TEST(
      errorOf([](Json& j) {
        j["spec"]["targetNode"] = "Node_B";
      }).rfind("spec.targetNode: Invalid value: \"Node_B\": a lowercase RFC 1123 subdomain", 0) ==
      0);
  BOOST_TEST(
      errorOf([](Json& j) {
        j["spec"]["nodeSelector"] = Json{{"bad key!", "x"}};
      }).rfind("spec.nodeSelector: Invalid value: \"bad key!\": name part must consist", 0) == 0);
  BOOST_TEST(
      errorOf([](Json& j) {
        j["spec"]["nodeSelector"] = Json{{"zone", "a b"}};
      }).rfind("spec.nodeSelector[zone]: Invalid value: \"a b\": a valid label must be", 0) == 0);

  struct Range {
    const char* field;
    uint64_t max;
  };
  for (const Range& r :
       {Range{"maxDowntimeMs", 600000}, Range{"bandwidthMiBps", 1000000},
        Range{"completionTimeoutPerGiBSeconds", 1000000}, Range{"progressTimeoutSeconds", 1000000},
        Range{"parallelConnections", 64}}) {
    for (uint64_t ok : {uint64_t{0}, uint64_t{1}, r.max}) {
      Json j = minimal();
      j["spec"]["parameters"][r.field] = ok;
      BOOST_TEST(errorsOf(j).empty(), r.field << "=" << ok);
    }
    Json j = minimal();
    j["spec"]["parameters"][r.field] = r.max + 1;
    BOOST_TEST(only(errorsOf(j)) == std::string("spec.parameters.") + r.field +
                                        ": Invalid value: " + std::to_string(r.max + 1) +
                                        ": must be between 0 and " + std::to_string(r.max) +
                                        " (0: the migration plugin's value)");
  }

  for (const char* phase : kMigrationPhases) {
    Json j = minimal();
    j["status"]["phase"] = phase;
    BOOST_TEST(errorsOf(j).empty(), phase);
  }
  BOOST_TEST(errorOf([](Json& j) { j["status"]["phase"] = "TargetReady"; }) ==
             "status.phase: Unsupported value: \"TargetReady\": supported values: \"Pending\", "
             "\"Scheduling\", \"PreparingTarget\", \"Running\", \"Succeeded\", \"Failed\"");
  BOOST_TEST(errorOf([](Json& j) {
               j["status"]["sourceNode"] = "-a";
             }).rfind("status.sourceNode: Invalid value: \"-a\"", 0) == 0);
  BOOST_TEST(errorOf([](Json& j) {
               j["status"]["targetNode"] = "B";
             }).rfind("status.targetNode: Invalid value: \"B\"", 0) == 0);

  // Metadata follows the other namespaced kinds.
  BOOST_TEST(errorOf([](Json& j) {
               j["metadata"]["name"] = "Bad_Name";
             }).rfind("metadata.name: Invalid value: \"Bad_Name\"", 0) == 0);
  BOOST_TEST(errorOf([](Json& j) { j["metadata"].erase("name"); }) ==
             "metadata.name: Required value: name or generateName is required");

  // Several problems: all reported at once.
  Json many = minimal();
  many["spec"]["vmName"] = "";
  many["spec"]["targetNode"] = "X";
  many["spec"]["parameters"]["parallelConnections"] = 65;
  many["status"]["phase"] = "Sleeping";
  BOOST_TEST(errorsOf(many).size() == 4u);
}

BOOST_AUTO_TEST_CASE(vm_status_migration_round_trips) {
  Json state = fullState();
  Json vm = vmWith(state);
  auto d = decodeVirtualMachine(vm, FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(d.ok(), (d.ok() ? "" : d.errors[0].toString()));
  BOOST_TEST(validateVirtualMachine(d.value).empty());
  BOOST_TEST_REQUIRE(d.value.status.migration.has_value());
  const MigrationState& m = *d.value.status.migration;
  BOOST_TEST(m.name == "mig1");
  BOOST_TEST(m.abortRequested);
  BOOST_TEST(m.parameters.maxDowntimeMs == 500u);
  BOOST_TEST_REQUIRE(m.target.has_value());
  BOOST_TEST(m.target->tls);
  BOOST_TEST(m.target->copyDisks == (std::vector<std::string>{"vda", "vdb"}),
             boost::test_tools::per_element());
  BOOST_TEST(m.target->domainXml == "<domain type='kvm'/>");
  BOOST_TEST_REQUIRE(m.progress.has_value());
  BOOST_TEST(m.progress->dataRemainingBytes == 50u);
  BOOST_TEST(encode(d.value)["status"]["migration"] == state);
  BOOST_TEST(encodeMigrationState(m) == state);

  // The functions the VM codec calls, directly.
  Decoder dec(FieldValidation::kStrict);
  MigrationState direct;
  decodeMigrationState(dec, state, "status.migration", direct);
  BOOST_TEST(dec.errors.empty());
  BOOST_TEST((direct == m));

  // Through the store, as the nodes and the controller read it.
  store::StoredObject o{virtualMachineKey("default", "vm1"), storeValue(d.value), 3, 1};
  auto back = decodeStoredVirtualMachine(o);
  BOOST_TEST_REQUIRE(back.ok());
  BOOST_TEST((back->status.migration == d.value.status.migration));

  // No record: no field.
  auto plain = decodeVirtualMachine(vmWith(nullptr), FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(plain.ok());
  BOOST_TEST(!plain.value.status.migration.has_value());
  BOOST_TEST(!encode(plain.value)["status"].contains("migration"));

  // Every phase of the record is accepted.
  for (const char* phase : kMigrationStatePhases) {
    Json s = fullState();
    s["phase"] = phase;
    BOOST_TEST(vmErrorsOf(vmWith(s)).empty(), phase);
  }
}

BOOST_AUTO_TEST_CASE(vm_status_migration_errors) {
  auto errorWith = [](auto mutate) {
    Json s = fullState();
    mutate(s);
    return only(vmErrorsOf(vmWith(s)));
  };
  BOOST_TEST(errorWith([](Json& s) { s["phase"] = "Pending"; }) ==
             "status.migration.phase: Unsupported value: \"Pending\": supported values: "
             "\"PreparingTarget\", \"TargetReady\", \"Running\", \"Succeeded\", \"Failed\"");
  BOOST_TEST(errorWith([](Json& s) { s.erase("phase"); }) ==
             "status.migration.phase: Required value");
  BOOST_TEST(errorWith([](Json& s) { s.erase("name"); }) ==
             "status.migration.name: Required value: the VirtualMachineMigration");
  BOOST_TEST(errorWith([](Json& s) { s["uid"] = ""; }) ==
             "status.migration.uid: Required value: the migration's uid");
  BOOST_TEST(errorWith([](Json& s) { s.erase("sourceNode"); }) ==
             "status.migration.sourceNode: Required value");
  BOOST_TEST(errorWith([](Json& s) { s.erase("targetNode"); }) ==
             "status.migration.targetNode: Required value");
  BOOST_TEST(errorWith([](Json& s) { s["targetNode"] = "node-a"; }) ==
             "status.migration.targetNode: Invalid value: \"node-a\": must differ from "
             "sourceNode");
  BOOST_TEST(errorWith([](Json& s) {
               s["targetNode"] = "Node B";
             }).rfind("status.migration.targetNode: Invalid value: \"Node B\"", 0) == 0);
  BOOST_TEST(errorWith([](Json& s) { s["parameters"]["parallelConnections"] = 100; }) ==
             "status.migration.parameters.parallelConnections: Invalid value: 100: must be "
             "between 0 and 64 (0: the migration plugin's value)");
  BOOST_TEST(errorWith([](Json& s) { s["target"]["copyDisks"] = "vda"; }) ==
             "status.migration.target.copyDisks: Invalid value: \"string\": "
             "status.migration.target.copyDisks in body must be of type array: \"string\"");
  BOOST_TEST(errorWith([](Json& s) { s["progress"]["dataRemainingBytes"] = -5; }) ==
             "status.migration.progress.dataRemainingBytes: Invalid value: -5: must be greater "
             "than or equal to 0");
  BOOST_TEST(errorWith([](Json& s) { s["target"]["port"] = 1; }) ==
             "status.migration.target.port: Unknown field: field not declared in schema");
  BOOST_TEST(only(vmErrorsOf(vmWith("running"))) ==
             "status.migration: Invalid value: \"string\": status.migration in body must be of "
             "type object: \"string\"");
  // The status writers' check sees it too.
  auto d = decodeVirtualMachine(vmWith(fullState()), FieldValidation::kStrict);
  d.value.status.migration->phase = "Paused";
  BOOST_TEST(validateVirtualMachineStatus(d.value.status).size() == 1u);
}

BOOST_AUTO_TEST_CASE(store_codec_and_status_writer) {
  TempStore t;
  auto d = decodeVirtualMachineMigration(fullMigration(), FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(d.ok());
  VirtualMachineMigration m = d.value;
  m.status = {};
  BOOST_TEST(migrationKey("default", "mig1").describe() == "virtualmachinemigrations/default/mig1");
  std::string value = storeValue(m);
  BOOST_TEST(value.find("resourceVersion") == std::string::npos);
  auto created = t.store->create(migrationKey("default", "mig1"), value);
  BOOST_TEST_REQUIRE(created.ok());
  auto back = decodeStoredMigration(*created);
  BOOST_TEST_REQUIRE(back.ok());
  BOOST_TEST(back->metadata.resourceVersion == std::to_string(created->modRevision));
  m.metadata.resourceVersion = back->metadata.resourceVersion;
  BOOST_TEST(encode(*back) == encode(m));

  store::StoredObject garbage{migrationKey("default", "x"), "[1]", 1, 1};
  auto bad = decodeStoredMigration(garbage);
  BOOST_TEST_REQUIRE(!bad.ok());
  BOOST_TEST(bad.error().code == VMHOST_ERR_DATA_LOSS);
  BOOST_TEST(bad.error().message == "virtualmachinemigrations/default/x: stored value is not JSON");

  // The controller's writes: validated, optimistic, retried.
  auto pending =
      updateMigrationStatus(*t.store, "default", "mig1", [](VirtualMachineMigrationStatus& s) {
        s.phase = kMigrationPending;
        s.reason = "ClusterLimit";
        return true;
      });
  BOOST_TEST_REQUIRE(pending.ok());
  BOOST_TEST(pending->status.phase == "Pending");
  auto stored = decodeStoredMigration(t.store->get(migrationKey("default", "mig1")).value());
  BOOST_TEST(stored->status.reason == "ClusterLimit");
  BOOST_TEST(stored->metadata.resourceVersion == pending->metadata.resourceVersion);
  BOOST_TEST(stored->spec.vmName == "vm1");  // the spec is left alone

  int64_t rev = t.store->currentRevision().value();
  BOOST_TEST(updateMigrationStatus(*t.store, "default", "mig1", [](VirtualMachineMigrationStatus&) {
               return false;
             }).ok());
  auto invalidPhase =
      updateMigrationStatus(*t.store, "default", "mig1", [](VirtualMachineMigrationStatus& s) {
        s.phase = "Done";
        return true;
      });
  BOOST_TEST_REQUIRE(!invalidPhase.ok());
  BOOST_TEST(invalidPhase.error().code == VMHOST_ERR_INVALID_ARGUMENT);
  BOOST_TEST(invalidPhase.error().message.rfind("status.phase: Unsupported value: \"Done\"", 0) ==
             0);
  BOOST_TEST(t.store->currentRevision().value() == rev);
  auto missing = updateMigrationStatus(*t.store, "default", "nope",
                                       [](VirtualMachineMigrationStatus&) { return true; });
  BOOST_TEST(missing.error().code == VMHOST_ERR_NOT_FOUND);

  // A conflicting writer in between is retried over.
  bool once = false;
  auto retried =
      updateMigrationStatus(*t.store, "default", "mig1", [&](VirtualMachineMigrationStatus& s) {
        if (!once) {
          once = true;
          auto cur = t.store->get(migrationKey("default", "mig1"));
          auto other = decodeStoredMigration(*cur).value();
          other.metadata.labels["touched"] = "yes";
          BOOST_TEST(
              t.store->update(migrationKey("default", "mig1"), storeValue(other), cur->modRevision)
                  .ok());
        }
        s.phase = kMigrationScheduling;
        return true;
      });
  BOOST_TEST_REQUIRE(retried.ok());
  BOOST_TEST(retried->status.phase == "Scheduling");
  BOOST_TEST(retried->metadata.labels.at("touched") == "yes");
}
