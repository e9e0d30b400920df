// The API server's pure parts: selectors, merge / JSON patch semantics the
// server relies on, the OpenAPI documents kubectl reads, and the metrics
// registry's exposition format.
#define BOOST_TEST_MODULE api_parts
#include <boost/test/unit_test.hpp>

#include "api/selectors.h"
#include "apiserver/openapi.h"
#include "apiserver/resources/registry.h"
#include "common/metrics.h"

#include <thread>

using namespace vmhost;
using namespace vmhost::api;
using vmhost::apiserver::buildOpenApiDocs;
using vmhost::apiserver::OpenApiDocs;
using vmhost::apiserver::openApiSchemas;
using vmhost::apiserver::registeredResources;
using vmhost::apiserver::swaggerToProtobuf;

namespace {

// A protobuf reader for the top level of a message: field number -> raw
// length-delimited payloads (enough to check the OpenAPI v2 encoding's shape).
std::multimap<int, std::string> fields(const std::string& msg) {
  std::multimap<int, std::string> out;
  size_t i = 0;
  auto varint = [&](uint64_t& v) {
    v = 0;
    for (int shift = 0; i < msg.size() && shift < 64; shift += 7) {
      uint8_t b = static_cast<uint8_t>(msg[i++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  for (int guard = 0; guard < 100000 && i < msg.size(); ++guard) {
    uint64_t key, len;
    if (!varint(key)) break;
    if ((key & 7) == 0) {
      varint(len);
      out.emplace(static_cast<int>(key >> 3), std::to_string(len));
      continue;
    }
    BOOST_TEST_REQUIRE((key & 7) == 2u);
    varint(len);
    out.emplace(static_cast<int>(key >> 3), msg.substr(i, len));
    i += len;
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(label_selectors) {
  std::map<std::string, std::string> labels{{"app", "web"}, {"tier", "front"}};
  auto match = [&](const std::string& sel) {
    auto s = LabelSelector::parse(sel);
    BOOST_TEST_REQUIRE(s.ok(), sel);
    return s->matches(labels);
  };
  BOOST_TEST(match(""));
  BOOST_TEST(match("app=web"));
  BOOST_TEST(match("app==web"));
  BOOST_TEST(!match("app=db"));
  BOOST_TEST(match("app!=db"));
  BOOST_TEST(match("app in (db, web)"));
  BOOST_TEST(!match("app notin (db,web)"));
  BOOST_TEST(match("tier,app=web"));
  BOOST_TEST(!match("!tier"));
  BOOST_TEST(match("!legacy"));
  BOOST_TEST(match("legacy!=x"));  // absent key satisfies !=
  BOOST_TEST(!match("app=web,tier=back"));
  BOOST_TEST(!LabelSelector::parse("app in (a,b").ok());
  BOOST_TEST(!LabelSelector::parse("app maybe (a)").ok());
}

BOOST_AUTO_TEST_CASE(field_selectors) {
  std::vector<std::string> supported{"metadata.name", "status.phase"};
  auto s = FieldSelector::parse("metadata.name=vm1,status.phase!=Running", supported);
  BOOST_TEST_REQUIRE(s.ok());
  BOOST_TEST(*s->pinnedName() == "vm1");
  auto value = [](const std::string& phase) {
    return [phase](const std::string& f) { return f == "metadata.name" ? "vm1" : phase; };
  };
  BOOST_TEST(s->matches(value("Pending")));
  BOOST_TEST(!s->matches(value("Running")));
  auto bad = FieldSelector::parse("spec.memory=1Gi", supported);
  BOOST_TEST_REQUIRE(!bad.ok());
  BOOST_TEST(bad.error().message == "field label not supported: spec.memory");
  BOOST_TEST(!FieldSelector::parse("metadata.name", supported).ok());
}

// RFC 7386 and RFC 6902 as the server applies them (through nlohmann::json).
BOOST_AUTO_TEST_CASE(merge_and_json_patch) {
  Json target = Json::parse(
      R"({"spec":{"memory":"128Mi","cpu":{"cores":1},"nodeSelector":{"a":"1","b":"2"},
          "interfaces":[{"name":"net0","user":{}}]}})");
  Json merged = target;
  merged.merge_patch(Json::parse(
      R"({"spec":{"memory":"256Mi","nodeSelector":{"a":null,"c":"3"},
          "interfaces":[{"name":"net1","network":"default"}]}})"));
  BOOST_TEST(merged["spec"]["memory"] == "256Mi");
  BOOST_TEST(merged["spec"]["cpu"]["cores"] == 1);  // untouched keys stay
  BOOST_TEST(merged["spec"]["nodeSelector"] ==
             Json::parse(R"({"b":"2","c":"3"})"));        // null deletes
  BOOST_TEST(merged["spec"]["interfaces"].size() == 1u);  // lists are replaced whole
  BOOST_TEST(merged["spec"]["interfaces"][0]["name"] == "net1");

  Json patched = target.patch(Json::parse(
      R"([{"op":"replace","path":"/spec/cpu/cores","value":4},
          {"op":"add","path":"/spec/interfaces/-","value":{"name":"net1","bridge":"br0"}},
          {"op":"remove","path":"/spec/nodeSelector/a"}])"));
  BOOST_TEST(patched["spec"]["cpu"]["cores"] == 4);
  BOOST_TEST(patched["spec"]["interfaces"].size() == 2u);
  BOOST_TEST(!patched["spec"]["nodeSelector"].contains("a"));
  BOOST_CHECK_THROW(
      target.patch(Json::parse(R"([{"op":"test","path":"/spec/memory","value":"1"}])")),
      std::exception);
}

BOOST_AUTO_TEST_CASE(openapi_documents) {
  OpenApiDocs docs = buildOpenApiDocs(registeredResources(), "test");
  Json index = Json::parse(docs.v3Index);
  BOOST_TEST(index["paths"].contains("apis/vmhost.io/v1"));
  BOOST_TEST(index["paths"].contains("apis/kubevirt.io/v1alpha1"));

  // Every kind has a schema tagged with its group-version-kind.
  Json schemas = openApiSchemas(registeredResources());
  for (const char* name :
       {"io.vmhost.v1.VirtualMachine", "io.vmhost.v1.Node", "io.kubevirt.v1alpha1.VM",
        "io.vmhost.v1.VirtualMachineList", "io.vmhost.v1.VirtualMachineMigration",
        "io.vmhost.v1.VirtualMachineMigrationList"}) {
    BOOST_TEST_REQUIRE(schemas.contains(name), name);
    BOOST_TEST(schemas[name]["x-kubernetes-group-version-kind"].size() == 1u, name);
  }

  // kubectl 1.32 enables server-side field validation when the PATCH
  // operation for the kind declares the fieldValidation query parameter;
  // and it uses JSON merge patch for apply because strategic merge patch
  // is not among the PATCH body types.
  for (const auto& gv : docs.v3) {
    Json doc = Json::parse(gv.json);
    BOOST_TEST(doc["openapi"] == "3.0.0");
    for (auto it = doc["paths"].begin(); it != doc["paths"].end(); ++it) {
      if (!it.value().contains("patch")) continue;
      const Json& op = it.value()["patch"];
      BOOST_TEST(op.contains("x-kubernetes-group-version-kind"), it.key());
      bool fieldValidation = false;
      for (const auto& p : op["parameters"]) {
        if (p["name"] == "fieldValidation" && p["in"] == "query") fieldValidation = true;
      }
      BOOST_TEST(fieldValidation, it.key());
      BOOST_TEST(!op["requestBody"]["content"].contains("application/strategic-merge-patch+json"));
      BOOST_TEST(op["requestBody"]["content"].contains("application/merge-patch+json"));
    }
  }
  BOOST_TEST(index["paths"].contains("api/v1"));  // kubectl asks for the core group's
  std::string vmhostDoc;
  for (const auto& gv : docs.v3) {
    if (gv.path == "apis/vmhost.io/v1") vmhostDoc = gv.json;
  }
  BOOST_TEST_REQUIRE(!vmhostDoc.empty());
  Json vm = Json::parse(vmhostDoc)["components"]["schemas"]["io.vmhost.v1.VirtualMachine"];
  BOOST_TEST(vm["properties"]["spec"]["properties"]["interfaces"]["items"]["properties"]["model"]
               ["enum"] == Json::parse(R"(["virtio","e1000"])"));

  // Swagger 2.0: refs point at definitions, and the protobuf encoding has
  // the document's fields where gnostic's openapi_v2.Document puts them.
  Json v2 = Json::parse(docs.v2Json);
  BOOST_TEST(v2["swagger"] == "2.0");
  BOOST_TEST(v2["definitions"]["io.vmhost.v1.VirtualMachine"]["properties"]["metadata"]["$ref"] ==
             "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
  auto top = fields(docs.v2Protobuf);
  BOOST_TEST(top.find(1)->second == "2.0");  // swagger
  BOOST_TEST(top.count(8) == 1u);            // paths
  BOOST_TEST_REQUIRE(top.count(9) == 1u);    // definitions
  auto defs = fields(top.find(9)->second);
  size_t named = defs.count(1);
  BOOST_TEST(named == v2["definitions"].size());
  bool sawVm = false;
  for (auto [it, end] = defs.equal_range(1); it != end; ++it) {
    auto nameAndSchema = fields(it->second);
    if (nameAndSchema.find(1)->second != "io.vmhost.v1.VirtualMachine") continue;
    sawVm = true;
    auto schema = fields(nameAndSchema.find(2)->second);
    BOOST_TEST(schema.count(25) == 1u);          // properties
    BOOST_TEST_REQUIRE(schema.count(31) == 1u);  // x-kubernetes-group-version-kind
    auto ext = fields(schema.find(31)->second);
    BOOST_TEST(ext.find(1)->second == "x-kubernetes-group-version-kind");
    auto any = fields(ext.find(2)->second);
    BOOST_TEST(Json::parse(any.find(2)->second)[0]["kind"] == "VirtualMachine");
  }
  BOOST_TEST(sawVm);
}

BOOST_AUTO_TEST_CASE(metrics_registry) {
  metrics::Registry reg;
  auto c = reg.counter("requests_total", "Requests.", {"verb", "code"});
  BOOST_TEST_REQUIRE(c.ok());
  (*c)->inc({"GET", "200"});
  (*c)->inc({"GET", "200"}, 2);
  (*c)->inc({"POST", "201"});
  (*c)->inc({"POST", "201"}, -5);  // ignored: counters only go up
  BOOST_TEST((*c)->value({"GET", "200"}) == 3);
  // The same name again is the same family; another shape is refused.
  BOOST_TEST(reg.counter("requests_total", "Requests.", {"verb", "code"}).value() == *c);
  auto clash = reg.gauge("requests_total", "x", {"verb", "code"});
  BOOST_TEST_REQUIRE(!clash.ok());
  BOOST_TEST(clash.error().message ==
             "metric requests_total is already registered as a counter with other labels");

  auto g = reg.gauge("vms", "VMs by phase.", {"phase"});
  (*g)->set({"Running"}, 3);
  (*g)->add({"Running"}, -1);
  (*g)->set({"quote\"d\n"}, 1);

  auto h = reg.histogram("latency_seconds", "Latency.", {}, {0.1, 1});
  (*h)->observe({}, 0.05);
  (*h)->observe({}, 0.5);
  (*h)->observe({}, 5);
  BOOST_TEST((*h)->count() == 3u);

  // Concurrent updates are not lost.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) (*c)->inc({"PUT", "200"});
    });
  }
  for (auto& t : threads) t.join();
  BOOST_TEST((*c)->value({"PUT", "200"}) == 4000);

  std::string text = reg.render();
  BOOST_TEST(text ==
             "# HELP latency_seconds Latency.\n"
             "# TYPE latency_seconds histogram\n"
             "latency_seconds_bucket{le=\"0.1\"} 1\n"
             "latency_seconds_bucket{le=\"1\"} 2\n"
             "latency_seconds_bucket{le=\"+Inf\"} 3\n"
             "latency_seconds_sum 5.55\n"
             "latency_seconds_count 3\n"
             "# HELP requests_total Requests.\n"
             "# TYPE requests_total counter\n"
             "requests_total{verb=\"GET\",code=\"200\"} 3\n"
             "requests_total{verb=\"POST\",code=\"201\"} 1\n"
             "requests_total{verb=\"PUT\",code=\"200\"} 4000\n"
             "# HELP vms VMs by phase.\n"
             "# TYPE vms gauge\n"
             "vms{phase=\"Running\"} 2\n"
             "vms{phase=\"quote\\\"d\\n\"} 1\n");
}
