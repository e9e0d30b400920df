// The virtualmachinemigrations resource through the generic REST handler
// (apiserver/rest.h) over a real SqliteStore, without HTTP: what a create
// sets, the immutable spec, the status subresource, deletes and
// finalizers, the Table columns, field selectors, discovery and OpenAPI.
#define BOOST_TEST_MODULE api_migration_rest
#include <boost/test/unit_test.hpp>

#include "api/migration.h"
#include "apiserver/discovery.h"
#include "apiserver/openapi.h"
#include "apiserver/resources/registry.h"
#include "store/sqlite/sqlite_store.h"

#include <kj/timer.h>
#include <unistd.h>

#include <filesystem>

namespace fs = std::filesystem;
using namespace vmhost;
using namespace vmhost::apiserver;
using api::Json;

namespace {

const ResourceRegistration& registration() {
  for (const auto& r : registeredResources()) {
    if (r.info.plural == "virtualmachinemigrations") return r;
  }
  BOOST_FAIL("virtualmachinemigrations is not registered");
  throw 0;
}

struct Env {
  fs::path dir;
  std::unique_ptr<store::SqliteStore> store;
  kj::TimerImpl timer{kj::origin<kj::TimePoint>()};
  std::unique_ptr<ResourceHandler> h;
  Env() {
    char tmpl[] = "/tmp/vmhost-migration-rest-XXXXXX";
    dir = ::mkdtemp(tmpl);
    store::SqliteStoreOptions opts;
    opts.syncEveryCommit = false;
    auto s = store::SqliteStore::open(dir.string(), opts);
    BOOST_TEST_REQUIRE(s.ok());
    store = std::move(s.value());
    h = registration().make(registration().info, Services{*store, timer, std::chrono::seconds(60)});
  }
  ~Env() {
    h.reset();
    store.reset();
    fs::remove_all(dir);
  }
  int64_t revision() { return store->currentRevision().value(); }
};

Request req(api::FieldValidation mode = api::FieldValidation::kStrict) {
  Request r;
  r.fieldValidation = mode;
  return r;
}

Json manifest(const std::string& name, const std::string& vm = "vm1") {
  return Json{{"apiVersion", "vmhost.io/v1"},
              {"kind", "VirtualMachineMigration"},
              {"metadata", Json{{"name", name}}},
              {"spec", Json{{"vmName", vm}}}};
}

Json body(const Reply& r) { return Json::parse(r.body); }

// "field: message" of each cause of a 422.
std::vector<std::string> causes(const Reply& r) {
  std::vector<std::string> out;
  Json b = body(r);
  for (const auto& c : b["details"]["causes"]) {
    out.push_back(c["field"].get<std::string>() + ": " + c["message"].get<std::string>());
  }
  return out;
}

Json mergePatch(const std::string& text) { return Json::parse(text); }

}  // namespace

BOOST_AUTO_TEST_CASE(create_sets_server_fields_and_leaves_status_empty) {
  Env env;
  Json m = manifest("m1");
  m["metadata"]["uid"] = "mine";
  m["metadata"]["generation"] = 9;
  m["status"] = Json{{"phase", "Succeeded"}, {"sourceNode", "a"}};
  auto r = env.h->create(req(), "default", m);
  BOOST_TEST_REQUIRE(r.code == 201u, r.body);
  Json j = body(r);
  BOOST_TEST(j["kind"] == "VirtualMachineMigration");
  BOOST_TEST(j["apiVersion"] == "vmhost.io/v1");
  BOOST_TEST(j["metadata"]["namespace"] == "default");
  BOOST_TEST(j["metadata"]["uid"] != "mine");
  BOOST_TEST(j["metadata"]["uid"].get<std::string>().size() == 36u);
  BOOST_TEST(j["metadata"]["generation"] == 1);
  BOOST_TEST(!j["metadata"]["creationTimestamp"].get<std::string>().empty());
  BOOST_TEST(j["status"] == Json::object());  // the controller writes Pending
  BOOST_TEST(j["spec"] == Json::parse(R"({"vmName": "vm1"})"));
  BOOST_TEST(j["metadata"]["resourceVersion"] == std::to_string(env.revision()));

  auto stored =
      api::decodeStoredMigration(env.store->get(api::migrationKey("default", "m1")).value());
  BOOST_TEST_REQUIRE(stored.ok());
  BOOST_TEST(stored->spec.vmName == "vm1");
  BOOST_TEST(stored->status.phase.empty());

  // generateName works as for the other kinds.
  Json gen = manifest("");
  gen["metadata"] = Json{{"generateName", "vm1-migration-"}};
  auto g = env.h->create(req(), "default", gen);
  BOOST_TEST_REQUIRE(g.code == 201u, g.body);
  BOOST_TEST(body(g)["metadata"]["name"].get<std::string>().rfind("vm1-migration-", 0) == 0);
}

BOOST_AUTO_TEST_CASE(invalid_creates_are_refused_with_the_field) {
  Env env;
  int64_t before = env.revision();
  Json noVm = manifest("bad");
  noVm["spec"].erase("vmName");
  auto r = env.h->create(req(), "default", noVm);
  BOOST_TEST(r.code == 422u);
  BOOST_TEST(body(r)["reason"] == "Invalid");
  BOOST_TEST(body(r)["message"] ==
             "VirtualMachineMigration.vmhost.io \"bad\" is invalid: spec.vmName: Required value: "
             "the name of the VM to migrate");
  BOOST_TEST(causes(r) == (std::vector<std::string>{
                              "spec.vmName: Required value: the name of the VM to migrate"}),
             boost::test_tools::per_element());

  Json noSpec = manifest("bad");
  noSpec.erase("spec");
  BOOST_TEST(causes(env.h->create(req(), "default", noSpec)) ==
                 (std::vector<std::string>{"spec: Required value"}),
             boost::test_tools::per_element());

  Json unknown = manifest("bad");
  unknown["spec"]["parameters"] = Json{{"maxDowntime", 5}};
  auto strict = env.h->create(req(), "default", unknown);
  BOOST_TEST(causes(strict) ==
                 (std::vector<std::string>{
                     "spec.parameters.maxDowntime: Unknown field: field not declared in schema"}),
             boost::test_tools::per_element());
  auto warned = env.h->create(req(api::FieldValidation::kWarn), "default", unknown);
  BOOST_TEST(warned.code == 201u);
  BOOST_TEST(warned.warnings ==
                 (std::vector<std::string>{"unknown field \"spec.parameters.maxDowntime\""}),
             boost::test_tools::per_element());
  BOOST_TEST(env.h->remove(req(), "default", "bad").code == 200u);

  Json range = manifest("bad");
  range["spec"]["parameters"] = Json{{"maxDowntimeMs", 600001}};
  BOOST_TEST(causes(env.h->create(req(), "default", range)) ==
                 (std::vector<std::string>{"spec.parameters.maxDowntimeMs: Invalid value: 600001: "
                                           "must be between 0 and 600000 (0: the migration "
                                           "plugin's value)"}),
             boost::test_tools::per_element());

  Json kind = manifest("bad");
  kind["kind"] = "VirtualMachine";
  BOOST_TEST(env.h->create(req(), "default", kind).code == 400u);
  BOOST_TEST(env.revision() == before + 2);  // the warned create and its delete only
}

BOOST_AUTO_TEST_CASE(spec_is_immutable) {
  Env env;
  Json m = manifest("m1");
  m["metadata"]["labels"] = Json{{"app", "web"}};
  m["spec"]["targetNode"] = "node-b";
  m["spec"]["parameters"] = Json{{"maxDowntimeMs", 300}};
  auto created = env.h->create(req(), "default", m);
  BOOST_TEST_REQUIRE(created.code == 201u);
  Json cur = body(created);
  int64_t before = env.revision();

  // PUT with another target: 422 on spec.
  Json put = cur;
  put["spec"]["targetNode"] = "node-c";
  auto r = env.h->update(req(), "default", "m1", put, false);
  BOOST_TEST(r.code == 422u);
  BOOST_TEST_REQUIRE(causes(r).size() == 1u);
  BOOST_TEST(body(r)["details"]["causes"][0]["field"] == "spec");
  BOOST_TEST(body(r)["details"]["causes"][0]["reason"] == "FieldValueInvalid");
  BOOST_TEST(causes(r)[0].find(": field is immutable") != std::string::npos, causes(r)[0]);
  BOOST_TEST(body(r)["message"].get<std::string>().rfind(
                 "VirtualMachineMigration.vmhost.io \"m1\" is invalid: spec: Invalid value: ", 0) ==
             0);

  // Merge patches of each part of the spec: 422 too.
  for (const char* p : {R"({"spec":{"vmName":"vm2"}})", R"({"spec":{"targetNode":null}})",
                        R"({"spec":{"nodeSelector":{"zone":"a"}}})",
                        R"({"spec":{"parameters":{"maxDowntimeMs":400}}})",
                        R"({"spec":{"parameters":{"allowPostCopy":true}}})"}) {
    auto pr = env.h->patch(req(), "default", "m1", mergePatch(p), false, false);
    BOOST_TEST(pr.code == 422u, p);
    BOOST_TEST(body(pr)["details"]["causes"][0]["field"] == "spec", p);
  }
  // A JSON patch as well.
  auto jp = env.h->patch(req(), "default", "m1",
                         Json::parse(R"([{"op":"replace","path":"/spec/vmName","value":"x"}])"),
                         true, false);
  BOOST_TEST(jp.code == 422u);
  BOOST_TEST(env.revision() == before);

  // The same spec, written differently (an explicit empty parameter list
  // is none): not a change. Metadata may change; generation stays.
  auto same = env.h->patch(req(), "default", "m1",
                           mergePatch(R"({"spec":{"parameters":{"bandwidthMiBps":0}},
                                          "metadata":{"labels":{"app":"db"}}})"),
                           false, false);
  BOOST_TEST_REQUIRE(same.code == 200u, same.body);
  BOOST_TEST(body(same)["metadata"]["labels"]["app"] == "db");
  BOOST_TEST(body(same)["metadata"]["generation"] == 1);
  BOOST_TEST(body(same)["spec"] == cur["spec"]);

  // The main resource ignores status.
  auto st = env.h->patch(req(), "default", "m1", mergePatch(R"({"status":{"phase":"Failed"}})"),
                         false, false);
  BOOST_TEST(st.code == 200u);
  BOOST_TEST(body(st)["status"] == Json::object());
}

BOOST_AUTO_TEST_CASE(status_subresource) {
  Env env;
  BOOST_TEST_REQUIRE(env.h->create(req(), "default", manifest("m1")).code == 201u);
  auto r = env.h->patch(req(), "default", "m1", mergePatch(R"({"status":{
      "phase":"Running","sourceNode":"node-a","targetNode":"node-b","vmUid":"u",
      "progress":{"dataTotalBytes":200,"dataProcessedBytes":50,"dataRemainingBytes":150}},
      "spec":{"vmName":"ignored"}})"),
                        false, true);
  BOOST_TEST_REQUIRE(r.code == 200u, r.body);
  Json j = body(r);
  BOOST_TEST(j["status"]["phase"] == "Running");
  BOOST_TEST(j["status"]["progress"]["dataRemainingBytes"] == 150);
  BOOST_TEST(j["status"]["progress"]["elapsedMs"] == 0);
  BOOST_TEST(j["spec"]["vmName"] == "vm1");  // the status subresource changes status only
  BOOST_TEST(j["metadata"]["generation"] == 1);

  auto bad = env.h->patch(req(), "default", "m1", mergePatch(R"({"status":{"phase":"Done"}})"),
                          false, true);
  BOOST_TEST(bad.code == 422u);
  BOOST_TEST(body(bad)["details"]["causes"][0]["field"] == "status.phase");

  // PUT /status with the whole object.
  Json put = j;
  put["status"]["phase"] = "Succeeded";
  put["status"].erase("progress");
  put["status"]["result"] = Json{{"totalMs", 900}, {"downtimeMs", 12}, {"bytesTransferred", 7}};
  auto u = env.h->update(req(), "default", "m1", put, true);
  BOOST_TEST_REQUIRE(u.code == 200u, u.body);
  BOOST_TEST(body(u)["status"]["result"]["downtimeMs"] == 12);
  auto stored =
      api::decodeStoredMigration(env.store->get(api::migrationKey("default", "m1")).value());
  BOOST_TEST(stored->status.phase == "Succeeded");
  BOOST_TEST(stored->status.result->totalMs == 900u);
}

BOOST_AUTO_TEST_CASE(table_columns_and_progress) {
  Env env;
  BOOST_TEST_REQUIRE(env.h->create(req(), "default", manifest("m1", "vm1")).code == 201u);
  Json target = manifest("m2", "vm2");
  target["spec"]["targetNode"] = "node-c";
  BOOST_TEST_REQUIRE(env.h->create(req(), "default", target).code == 201u);
  BOOST_TEST(env.h
                 ->patch(req(), "default", "m1", mergePatch(R"({"status":{
      "phase":"Running","sourceNode":"node-a","targetNode":"node-b",
      "progress":{"dataTotalBytes":3000,"dataProcessedBytes":1000}}})"),
                         false, true)
                 .code == 200u);
  Request t = req();
  t.wantTable = true;
  Json table = body(env.h->list(t, "default"));
  BOOST_TEST(table["kind"] == "Table");
  std::vector<std::string> names;
  for (const auto& c : table["columnDefinitions"]) {
    if (c["priority"] == 0) names.push_back(c["name"]);
  }
  BOOST_TEST(names == (std::vector<std::string>{"Name", "VM", "Phase", "Source", "Target",
                                                "Progress", "Age"}),
             boost::test_tools::per_element());
  BOOST_TEST_REQUIRE(table["rows"].size() == 2u);
  Json m1 = table["rows"][0]["cells"];
  BOOST_TEST(m1[0] == "m1");
  BOOST_TEST(m1[1] == "vm1");
  BOOST_TEST(m1[2] == "Running");
  BOOST_TEST(m1[3] == "node-a");
  BOOST_TEST(m1[4] == "node-b");
  BOOST_TEST(m1[5] == "33%");
  BOOST_TEST(!m1[6].get<std::string>().empty());
  Json m2 = table["rows"][1]["cells"];
  BOOST_TEST(m2[2] == "");
  BOOST_TEST(m2[4] == "node-c");  // the requested target until one is chosen
  BOOST_TEST(m2[5] == "");        // no progress unless Running

  // Not Running: no progress shown even with figures.
  BOOST_TEST(env.h
                 ->patch(req(), "default", "m1", mergePatch(R"({"status":{"phase":"Succeeded"}})"),
                         false, true)
                 .code == 200u);
  Json row = body(env.h->get(t, "default", "m1"))["rows"][0]["cells"];
  BOOST_TEST(row[5] == "");
}

BOOST_AUTO_TEST_CASE(field_selectors) {
  Env env;
  BOOST_TEST_REQUIRE(env.h->create(req(), "default", manifest("a", "vm1")).code == 201u);
  BOOST_TEST_REQUIRE(env.h->create(req(), "default", manifest("b", "vm2")).code == 201u);
  BOOST_TEST_REQUIRE(env.h->create(req(), "other", manifest("c", "vm1")).code == 201u);
  BOOST_TEST(env.h
                 ->patch(req(), "default", "b", mergePatch(R"({"status":{"phase":"Pending"}})"),
                         false, true)
                 .code == 200u);
  auto names = [&](const std::string& ns, const std::string& selector) {
    Request r = req();
    r.query["fieldSelector"] = selector;
    Reply rep = env.h->list(r, ns);
    BOOST_TEST_REQUIRE(rep.code == 200u, rep.body);
    std::vector<std::string> out;
    Json list = body(rep);
    for (const auto& i : list["items"]) out.push_back(i["metadata"]["name"]);
    return out;
  };
  using V = std::vector<std::string>;
  BOOST_TEST(names("default", "spec.vmName=vm1") == V{"a"}, boost::test_tools::per_element());
  BOOST_TEST(names("", "spec.vmName=vm1") == (V{"a", "c"}), boost::test_tools::per_element());
  BOOST_TEST(names("", "metadata.namespace=other") == V{"c"}, boost::test_tools::per_element());
  BOOST_TEST(names("default", "metadata.name=b") == V{"b"}, boost::test_tools::per_element());
  BOOST_TEST(names("default", "status.phase=Pending") == V{"b"}, boost::test_tools::per_element());
  BOOST_TEST(names("default", "status.phase!=Pending") == V{"a"}, boost::test_tools::per_element());
  Request bad = req();
  bad.query["fieldSelector"] = "spec.parameters=1";
  auto r = env.h->list(bad, "default");
  BOOST_TEST(r.code == 400u);
  BOOST_TEST(body(r)["message"].get<std::string>().find(
                 "field label not supported: spec.parameters") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(delete_and_finalizers) {
  Env env;
  BOOST_TEST_REQUIRE(env.h->create(req(), "default", manifest("plain")).code == 201u);
  BOOST_TEST(env.h->remove(req(), "default", "plain").code == 200u);
  BOOST_TEST(env.store->get(api::migrationKey("default", "plain")).error().code ==
             VMHOST_ERR_NOT_FOUND);
  BOOST_TEST(env.h->remove(req(), "default", "plain").code == 404u);

  // The controller's finalizer holds a delete (the cancel) until it goes.
  BOOST_TEST_REQUIRE(env.h->create(req(), "default", manifest("held")).code == 201u);
  BOOST_TEST(env.h
                 ->patch(req(), "default", "held",
                         mergePatch(R"({"metadata":{"finalizers":["vmhost.io/migration"]}})"),
                         false, false)
                 .code == 200u);
  auto del = env.h->remove(req(), "default", "held");
  BOOST_TEST_REQUIRE(del.code == 200u);
  BOOST_TEST(body(del)["metadata"].contains("deletionTimestamp"));
  auto stored =
      api::decodeStoredMigration(env.store->get(api::migrationKey("default", "held")).value());
  BOOST_TEST_REQUIRE(stored.ok());
  BOOST_TEST(stored->metadata.deletionTimestamp.has_value());
  // The status still moves while it is held (the controller records the cancel).
  BOOST_TEST(api::updateMigrationStatus(*env.store, "default", "held",
                                        [](api::VirtualMachineMigrationStatus& s) {
                                          s.phase = api::kMigrationFailed;
                                          s.reason = "Cancelled";
                                          return true;
                                        })
                 .ok());
  // ... the spec still does not.
  BOOST_TEST(
      env.h->patch(req(), "default", "held", mergePatch(R"({"spec":{"vmName":"x"}})"), false, false)
          .code == 422u);
  auto release = env.h->patch(req(), "default", "held",
                              mergePatch(R"({"metadata":{"finalizers":null}})"), false, false);
  BOOST_TEST(release.code == 200u);
  BOOST_TEST(env.store->get(api::migrationKey("default", "held")).error().code ==
             VMHOST_ERR_NOT_FOUND);
}

BOOST_AUTO_TEST_CASE(discovery_and_openapi) {
  const ResourceInfo& info = registration().info;
  BOOST_TEST(info.group == "vmhost.io");
  BOOST_TEST(info.version == "v1");
  BOOST_TEST(info.kind == "VirtualMachineMigration");
  BOOST_TEST(info.singular == "virtualmachinemigration");
  BOOST_TEST(info.namespaced);
  BOOST_TEST(info.statusSubresource);
  BOOST_TEST(info.shortNames == (std::vector<std::string>{"vmim", "migration"}),
             boost::test_tools::per_element());

  std::vector<ResourceInfo> infos;
  for (const auto& r : registeredResources()) infos.push_back(r.info);
  Discovery discovery(infos, "test");
  Request r;
  r.verb = Verb::kGet;
  r.segments = {"apis", "vmhost.io", "v1"};
  auto list = discovery.serve(r, 0);
  BOOST_TEST_REQUIRE(list.has_value());
  bool main = false, status = false;
  Json doc = Json::parse(list->body);
  for (const auto& res : doc["resources"]) {
    if (res["name"] == "virtualmachinemigrations") {
      main = true;
      BOOST_TEST(res["kind"] == "VirtualMachineMigration");
      BOOST_TEST(res["shortNames"] == Json::parse(R"(["vmim","migration"])"));
      BOOST_TEST(res["categories"] == Json::parse(R"(["all"])"));
    }
    if (res["name"] == "virtualmachinemigrations/status") status = true;
  }
  BOOST_TEST(main);
  BOOST_TEST(status);

  Json schemas = openApiSchemas(registeredResources());
  BOOST_TEST_REQUIRE(schemas.contains("io.vmhost.v1.VirtualMachineMigration"));
  BOOST_TEST(schemas.contains("io.vmhost.v1.VirtualMachineMigrationList"));
  Json m = schemas["io.vmhost.v1.VirtualMachineMigration"];
  BOOST_TEST(m["x-kubernetes-group-version-kind"][0]["kind"] == "VirtualMachineMigration");
  BOOST_TEST(m["required"] == Json::parse(R"(["spec"])"));
  BOOST_TEST(m["properties"]["spec"]["required"] == Json::parse(R"(["vmName"])"));
  BOOST_TEST(m["properties"]["spec"]["properties"]["parameters"]["properties"].size() == 7u);
  BOOST_TEST(m["properties"]["status"]["properties"]["phase"]["enum"].size() == 6u);
  BOOST_TEST(m["properties"]["status"]["properties"]["progress"]["properties"].contains(
      "dataRemainingBytes"));
  Json vm = schemas["io.vmhost.v1.VirtualMachine"];
  BOOST_TEST(
      vm["properties"]["status"]["properties"]["migration"]["properties"]["target"]["properties"]
          .contains("domainXml"));

  // The documents kubectl reads carry its paths, status included.
  OpenApiDocs docs = buildOpenApiDocs(registeredResources(), "test");
  for (const auto& gv : docs.v3) {
    if (gv.path != "apis/vmhost.io/v1") continue;
    Json paths = Json::parse(gv.json)["paths"];
    BOOST_TEST(paths.contains(
        "/apis/vmhost.io/v1/namespaces/{namespace}/virtualmachinemigrations/{name}/status"));
    BOOST_TEST(paths.contains("/apis/vmhost.io/v1/virtualmachinemigrations"));
  }
}
