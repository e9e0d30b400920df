// Quantities, VirtualMachine/Node decode + validation with exact field paths,
// encode round trips, and the kubevirt.io/v1alpha1 seed VM conversion.
#define BOOST_TEST_MODULE api_types
#include <boost/test/unit_test.hpp>

#include "api/kubevirt.h"
#include "api/types.h"

#include "common/yaml.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

using namespace vmhost::api;

namespace {

Json vmJson() {
  return Json::parse(R"({
    "apiVersion": "vmhost.io/v1", "kind": "VirtualMachine",
    "metadata": {"name": "vm1", "namespace": "default", "labels": {"app": "web"}},
    "spec": {
      "memory": "128Mi",
      "cpu": {"cores": 2},
      "nodeSelector": {"kubernetes.io/hostname": "n1"},
      "boot": {"kernel": "/var/lib/vmhost/vmlinuz", "initrd": "/var/lib/vmhost/initrd",
               "cmdline": "console=ttyS0"},
      "disks": [{"name": "root", "bus": "virtio", "bootOrder": 1},
                {"name": "data", "bus": "sata", "readOnly": true}],
      "volumes": [{"name": "root", "ephemeral": {"image": {"path": "/images/root.qcow2"}}},
                  {"name": "data", "persistent": {"claimName": "data-1", "size": "1Gi"}}],
      "interfaces": [{"name": "net0", "network": "default"},
                     {"name": "net1", "user": {}, "model": "e1000",
                      "macAddress": "02:00:00:00:00:01"}]
    }
  })");
}

// All errors of decode + validate, as "field: body" strings.
std::vector<std::string> errorsOf(const Json& j, FieldValidation mode = FieldValidation::kStrict) {
  auto d = decodeVirtualMachine(j, mode);
  std::vector<std::string> out;
  for (auto& e : d.errors) out.push_back(e.toString());
  if (d.ok()) {
    for (auto& e : validateVirtualMachine(d.value)) out.push_back(e.toString());
  }
  return out;
}

std::string only(const std::vector<std::string>& errs) {
  BOOST_TEST_REQUIRE(errs.size() == 1u, "expected one error, got " << errs.size());
  return errs[0];
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Manifests read as the API and vmctl read them (common/yaml.h).
Json yamlToJson(const YAML::Node& n) {
  auto json = vmhost::yaml::toJson(n);
  BOOST_REQUIRE_MESSAGE(json.ok(), (json.ok() ? std::string() : json.error().message));
  return Json::parse(json.value());
}

}  // namespace

BOOST_AUTO_TEST_CASE(quantity_table) {
  struct Row {
    const char* text;
    int64_t milli;
  };
  const Row rows[] = {
      {"0", 0},
      {"1", 1000},
      {"128Mi", 128LL * 1024 * 1024 * 1000},
      {"1Ki", 1024000},
      {"1Gi", 1073741824000LL},
      {"2Ti", 2LL * 1099511627776LL * 1000},
      {"1k", 1000000},
      {"1M", 1000000000LL},
      {"1G", 1000000000000LL},
      {"500m", 500},
      {"1.5", 1500},
      {"1.5Gi", 1610612736000LL},
      {"0.5Ki", 512000},
      {"1e3", 1000000},
      {"1E3", 1000000},
      {"2e-3", 2},
      {"1e+2", 100000},
      {"-128Mi", -128LL * 1024 * 1024 * 1000},
      {"+5", 5000},
      {"100n", 1},  // rounded up to the smallest unit kept
      {"1u", 1},
      {"1.", 1000},
      {".5", 500},
  };
  for (const auto& r : rows) {
    auto q = parseQuantity(r.text);
    BOOST_TEST_REQUIRE(q.ok(), r.text << ": " << (q.ok() ? "" : q.error().message));
    BOOST_TEST(q->milliValue == r.milli, r.text);
    BOOST_TEST(q->text == r.text);
  }
  BOOST_TEST(parseQuantity("128Mi")->value() == 134217728);
  BOOST_TEST(parseQuantity("1500m")->value() == 2);  // Value() rounds up
  for (const char* bad : {"", "abc", "1.2.3", "Mi", "1MB", "1 Mi", "1e", "1Mi5", "--1", "1ki"}) {
    auto q = parseQuantity(bad);
    BOOST_TEST_REQUIRE(!q.ok(), bad);
    BOOST_TEST(q.error().message ==
                   "quantities must match the regular expression "
                   "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
               bad);
  }
  BOOST_TEST(parseQuantity("100Ei").error().message == "quantity is too large");
  BOOST_TEST(parseQuantity("1e400").error().message == "quantity is too large");
  BOOST_TEST(bytesQuantity(8388608).text == "8Mi");
  BOOST_TEST(bytesQuantity(1000).text == "1000");
}

BOOST_AUTO_TEST_CASE(decodes_and_defaults) {
  auto d = decodeVirtualMachine(vmJson(), FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(d.ok());
  BOOST_TEST(validateVirtualMachine(d.value).empty());
  const auto& s = d.value.spec;
  BOOST_TEST(s.runStrategy == "Always");
  BOOST_TEST(s.evictionStrategy == "None");
  BOOST_TEST(s.cpu.cores == 2);
  BOOST_TEST(s.memory.value() == 134217728);
  BOOST_TEST(s.disks.size() == 2u);
  BOOST_TEST(*s.disks[0].bootOrder == 1);
  BOOST_TEST(s.disks[1].readOnly);
  BOOST_TEST(s.volumes[1].persistent->reclaimPolicy == "Delete");
  BOOST_TEST(s.interfaces[0].model.empty());  // the network plugin's default
  BOOST_TEST(s.interfaces[1].user);
  BOOST_TEST(d.value.metadata.labels.at("app") == "web");

  // Defaults for an almost empty spec.
  auto m =
      decodeVirtualMachine(Json::parse(R"({"metadata":{"name":"a"},"spec":{"memory":"64Mi"}})"),
                           FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(m.ok());
  BOOST_TEST(m.value.spec.cpu.cores == 1);
  BOOST_TEST(validateVirtualMachine(m.value).empty());
}

BOOST_AUTO_TEST_CASE(encode_round_trip_is_stable) {
  auto d = decodeVirtualMachine(vmJson(), FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(d.ok());
  Json once = encode(d.value);
  BOOST_TEST(once["spec"]["runStrategy"] == "Always");
  BOOST_TEST(once["spec"]["interfaces"][1]["user"] == Json::object());
  BOOST_TEST(once["spec"]["memory"] == "128Mi");
  auto d2 = decodeVirtualMachine(once, FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(d2.ok());
  BOOST_TEST(encode(d2.value).dump() == once.dump());

  Node n;
  n.metadata.name = "master";
  applyNodeDefaults(n);
  n.status.capacity.cpu = parseQuantity("2").value();
  n.status.capacity.memory = parseQuantity("24Gi").value();
  n.status.conditions.push_back(Condition{"Ready", "True", "NodeReady", "ok", ""});
  Json nj = encode(n);
  BOOST_TEST(nj["metadata"]["labels"]["kubernetes.io/hostname"] == "master");
  auto nd = decodeNode(nj, FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(nd.ok());
  BOOST_TEST(validateNode(nd.value).empty());
  BOOST_TEST(encode(nd.value).dump() == nj.dump());
  BOOST_TEST(nd.value.readiness() == "Ready");
  nd.value.spec.unschedulable = true;
  BOOST_TEST(nd.value.readiness() == "Ready,SchedulingDisabled");
}

BOOST_AUTO_TEST_CASE(field_errors_have_exact_paths) {
  auto with = [](const char* pointer, Json value) {
    Json j = vmJson();
    j[Json::json_pointer(pointer)] = std::move(value);
    return j;
  };
  BOOST_TEST(only(errorsOf(with("/spec/memory", "-128Mi"))) ==
             "spec.memory: Invalid value: \"-128Mi\": must be greater than zero");
  BOOST_TEST(only(errorsOf(with("/spec/memory", "lots"))) ==
             "spec.memory: Invalid value: \"lots\": quantities must match the regular expression "
             "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
  BOOST_TEST(only(errorsOf(with("/spec/interfaces/0/model", "ne2k"))) ==
             "spec.interfaces[0].model: Unsupported value: \"ne2k\": supported values: "
             "\"virtio\", \"e1000\"");
  BOOST_TEST(only(errorsOf(with("/spec/runStrategy", "Sometimes"))) ==
             "spec.runStrategy: Unsupported value: \"Sometimes\": supported values: \"Always\", "
             "\"Halted\", \"Manual\", \"RerunOnFailure\"");
  BOOST_TEST(only(errorsOf(with("/spec/evictionStrategy", "Never"))) ==
             "spec.evictionStrategy: Unsupported value: \"Never\": supported values: \"None\", "
             "\"Restart\", \"LiveMigrate\"");
  BOOST_TEST(only(errorsOf(with("/spec/cpu/cores", "two"))) ==
             "spec.cpu.cores: Invalid value: \"string\": spec.cpu.cores in body must be of type "
             "integer: \"string\"");
  BOOST_TEST(only(errorsOf(with("/spec/cpu/cores", 0))) ==
             "spec.cpu.cores: Invalid value: 0: must be between 1 and 512");
  BOOST_TEST(only(errorsOf(with("/spec/foo", 1))) ==
             "spec.foo: Unknown field: field not declared in schema");
  BOOST_TEST(only(errorsOf(with("/spec/disks/1/bus", "ide"))) ==
             "spec.disks[1].bus: Unsupported value: \"ide\": supported values: \"virtio\", "
             "\"sata\", \"scsi\"");
  BOOST_TEST(only(errorsOf(with("/spec/disks/1/name", "nope"))) ==
             "spec.disks[1].name: Not found: \"nope\": no volume of that name in spec.volumes");
  BOOST_TEST(only(errorsOf(with("/spec/disks/1/bootOrder", 1))) ==
             "spec.disks[1].bootOrder: Duplicate value: 1");
  BOOST_TEST(only(errorsOf(with("/spec/volumes/1/persistent/reclaimPolicy", "Keep"))) ==
             "spec.volumes[1].persistent.reclaimPolicy: Unsupported value: \"Keep\": supported "
             "values: \"Delete\", \"Retain\"");
  BOOST_TEST(only(errorsOf(with("/spec/volumes/0/ephemeral/image/sha256", "abc"))) ==
             "spec.volumes[0].ephemeral.image.sha256: Invalid value: \"abc\": must be 64 "
             "hexadecimal digits");
  BOOST_TEST(only(errorsOf(with("/spec/interfaces/1/macAddress", "01:00:00:00:00:01"))) ==
             "spec.interfaces[1].macAddress: Invalid value: \"01:00:00:00:00:01\": must be a "
             "unicast MAC address like 02:00:00:00:00:01");
  BOOST_TEST(only(errorsOf(with("/spec/interfaces/1/name", "net0"))) ==
             "spec.interfaces[1].name: Duplicate value: \"net0\"");
  BOOST_TEST(only(errorsOf(with("/spec/interfaces/0/bridge", "br0"))) ==
             "spec.interfaces[0]: Invalid value: \"net0\": exactly one of network, bridge and "
             "user must be set");
  BOOST_TEST(only(errorsOf(with("/spec/boot/kernel", "vmlinuz"))) ==
             "spec.boot.kernel: Invalid value: \"vmlinuz\": must be an absolute path");
  BOOST_TEST(only(errorsOf(with("/spec/nodeSelector/bad key", "x"))) ==
             "spec.nodeSelector: Invalid value: \"bad key\": name part must consist of "
             "alphanumeric characters, '-', '_' or '.', and must start and end with an "
             "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
             "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')");
  BOOST_TEST(only(errorsOf(with("/metadata/name", "Bad_Name"))) ==
             "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must "
             "consist of lower case alphanumeric characters, '-' or '.', and must start and end "
             "with an alphanumeric character (e.g. 'example.com', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')");
  BOOST_TEST(only(errorsOf(with("/metadata/name", std::string(254, 'a')))) ==
             "metadata.name: Invalid value: \"" + std::string(254, 'a') +
                 "\": must be no more than 253 characters");
  BOOST_TEST(only(errorsOf(with("/status/phase", "Sleeping"))) ==
             "status.phase: Unsupported value: \"Sleeping\": supported values: \"Pending\", "
             "\"Scheduling\", \"Scheduled\", \"Running\", \"Stopped\", \"Succeeded\", "
             "\"Failed\"");
  {
    Json j = vmJson();
    j["spec"].erase("memory");
    BOOST_TEST(only(errorsOf(j)) == "spec.memory: Required value");
  }
  {
    Json j = vmJson();
    j["spec"]["volumes"][0]["hostPath"] = Json{{"path", "/x"}};
    BOOST_TEST(only(errorsOf(j)) ==
               "spec.volumes[0]: Invalid value: \"root\": exactly one of empty, hostPath, "
               "ephemeral and persistent must be set");
  }
  {
    // Every error is reported, not just the first.
    Json j = vmJson();
    j["spec"]["memory"] = "0";
    j["spec"]["interfaces"][0]["model"] = "ne2k";
    BOOST_TEST(errorsOf(j).size() == 2u);
  }
}

// The rest of the rules, one table row each: a JSON Patch-like edit of the
// valid manifest and the exact error it must produce.
BOOST_AUTO_TEST_CASE(every_rule_has_its_field_path) {
  struct Row {
    const char* pointer;
    const char* value;  // JSON; "!" removes the field
    const char* error;
  };
  const Row rows[] = {
      {"/spec/boot/kernel", "!", "spec.boot.kernel: Required value"},
      {"/spec/boot/initrd", R"("initrd.img")",
       "spec.boot.initrd: Invalid value: \"initrd.img\": must be an absolute path"},
      {"/spec/cpu/cores", "600", "spec.cpu.cores: Invalid value: 600: must be between 1 and 512"},
      {"/spec/cpu/cores", "2.5",
       "spec.cpu.cores: Invalid value: \"number\": spec.cpu.cores in body must be of type "
       "integer: \"number\""},
      {"/spec/cpu/cores", "18446744073709551615",
       "spec.cpu.cores: Invalid value: 18446744073709551615: must be at most "
       "9223372036854775807"},
      {"/spec/cpu/cores", "1e300",
       "spec.cpu.cores: Invalid value: \"number\": spec.cpu.cores in body must be of type "
       "integer: \"number\""},
      {"/spec/cpu/cores", "4.0", nullptr},  // integral numbers are integers
      {"/spec/memory", "512", "spec.memory: Invalid value: \"512\": must be at least 1Mi"},
      {"/spec/memory", "true",
       "spec.memory: Invalid value: \"boolean\": spec.memory in body must be of type string: "
       "\"boolean\""},
      {"/spec/disks/0/bootOrder", "0",
       "spec.disks[0].bootOrder: Invalid value: 0: must be greater than zero"},
      {"/spec/disks/1/name", R"("root")", "spec.disks[1].name: Duplicate value: \"root\""},
      {"/spec/disks/0/readOnly", R"("yes")",
       "spec.disks[0].readOnly: Invalid value: \"string\": spec.disks[0].readOnly in body must "
       "be of type boolean: \"string\""},
      {"/spec/disks", R"({"name":"x"})",
       "spec.disks: Invalid value: \"object\": spec.disks in body must be of type array: "
       "\"object\""},
      {"/spec/volumes/2", R"({"name":"root","hostPath":{"path":"/x"}})",
       "spec.volumes[2].name: Duplicate value: \"root\""},
      {"/spec/volumes/2", R"({"name":"Data","hostPath":{"path":"/x"}})",
       "spec.volumes[2].name: Invalid value: \"Data\": a lowercase RFC 1123 label must consist "
       "of lower case alphanumeric characters or '-', and must start and end with an "
       "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
       "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"},
      {"/spec/volumes/0/ephemeral/image", R"({"path":"/a","url":"http://b"})",
       "spec.volumes[0].ephemeral.image: Invalid value: null: exactly one of path and url must "
       "be set"},
      {"/spec/volumes/0/ephemeral/image", R"({"path":"a.qcow2"})",
       "spec.volumes[0].ephemeral.image.path: Invalid value: \"a.qcow2\": must be an absolute "
       "path"},
      {"/spec/volumes/0/ephemeral/image", R"({"url":"ftp://host/a.qcow2"})",
       "spec.volumes[0].ephemeral.image.url: Unsupported value: \"ftp\": supported values: "
       "\"http\", \"https\", \"file\""},
      {"/spec/volumes/1/persistent/claimName", "!",
       "spec.volumes[1].persistent.claimName: Required value"},
      {"/spec/volumes/1/persistent/size", "!",
       "spec.volumes[1].persistent.size: Required value: size or image is required"},
      {"/spec/volumes/1/persistent/size", R"("-1Gi")",
       "spec.volumes[1].persistent.size: Invalid value: \"-1Gi\": must be greater than zero"},
      {"/spec/volumes/1", R"({"name":"data","empty":{}})",
       "spec.volumes[1].empty.size: Required value"},
      {"/spec/volumes/1", R"({"name":"data","empty":{"size":"0"}})",
       "spec.volumes[1].empty.size: Invalid value: \"0\": must be greater than zero"},
      {"/spec/volumes/1", R"({"name":"data","hostPath":{"path":"disk.img"}})",
       "spec.volumes[1].hostPath.path: Invalid value: \"disk.img\": must be an absolute path"},
      {"/spec/volumes/1", R"({"name":"data","hostPath":{}})",
       "spec.volumes[1].hostPath.path: Required value"},
      {"/spec/volumes/1", R"({"name":"data"})",
       "spec.volumes[1]: Invalid value: \"data\": exactly one of empty, hostPath, ephemeral and "
       "persistent must be set"},
      {"/spec/interfaces/0/name", "!", "spec.interfaces[0].name: Required value"},
      {"/spec/interfaces/1/user", "1",
       "spec.interfaces[1].user: Invalid value: \"integer\": spec.interfaces[1].user in body "
       "must be of type object: \"integer\""},
      {"/spec/graphics", R"({"type":"rdp"})",
       "spec.graphics.type: Unsupported value: \"rdp\": supported values: \"spice\", \"vnc\""},
      {"/spec/video", R"({"model":"s3"})",
       "spec.video.model: Unsupported value: \"s3\": supported values: \"virtio\", \"qxl\", "
       "\"vga\", \"cirrus\", \"bochs\""},
      {"/spec/video", R"({"model":"qxl","heads":9})",
       "spec.video.heads: Invalid value: 9: must be between 1 and 4"},
      {"/spec/nodeSelector/zone", R"("bad value!")",
       "spec.nodeSelector[zone]: Invalid value: \"bad value!\": a valid label must be an empty "
       "string or consist of alphanumeric characters, '-', '_' or '.', and must start and end "
       "with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
       "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"},
      {"/spec/nodeSelector/zone", "3",
       "spec.nodeSelector[zone]: Invalid value: \"integer\": spec.nodeSelector[zone] in body "
       "must be of type string: \"integer\""},
      {"/metadata/name", "!", "metadata.name: Required value: name or generateName is required"},
      {"/metadata/namespace", R"("Prod")",
       "metadata.namespace: Invalid value: \"Prod\": a lowercase RFC 1123 label must consist of "
       "lower case alphanumeric characters or '-', and must start and end with an alphanumeric "
       "character (e.g. 'my-name',  or '123-abc', regex used for validation is "
       "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"},
      {"/metadata/labels/app", R"("")", nullptr},  // an empty label value is valid
      {"/metadata/finalizers", R"(["bad finalizer"])",
       "metadata.finalizers[0]: Invalid value: \"bad finalizer\": name part must consist of "
       "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
       "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
       "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"},
      {"/metadata/annotations/a", R"(7)",
       "metadata.annotations[a]: Invalid value: \"integer\": metadata.annotations[a] in body "
       "must be of type string: \"integer\""},
      {"/status/nodeName", R"("Node_1")",
       "status.nodeName: Invalid value: \"Node_1\": a lowercase RFC 1123 subdomain must consist "
       "of lower case alphanumeric characters, '-' or '.', and must start and end with an "
       "alphanumeric character (e.g. 'example.com', regex used for validation is "
       "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"},
      {"/status/conditions",
       R"([{"type":"Ready","status":"True"},{"type":"Ready","status":"False"}])",
       "status.conditions[1].type: Duplicate value: \"Ready\""},
      {"/status/conditions", R"([{"status":"True"}])", "status.conditions[0].type: Required value"},
      {"/spec", "null", "spec: Required value"},
  };
  for (const auto& r : rows) {
    Json j = vmJson();
    Json::json_pointer ptr(r.pointer);
    if (std::string(r.value) == "!") {
      j[ptr.parent_pointer()].erase(ptr.back());
    } else {
      j[ptr] = Json::parse(r.value);
    }
    auto errs = errorsOf(j);
    if (r.error == nullptr) {
      BOOST_TEST(errs.empty(), r.pointer);
      continue;
    }
    BOOST_TEST_REQUIRE(errs.size() == 1u, r.pointer << " = " << r.value << ": " << errs.size()
                                                    << " errors"
                                                    << (errs.empty() ? "" : ", first: " + errs[0]));
    BOOST_TEST(errs[0] == r.error, r.pointer << " = " << r.value << ": " << errs[0]);
  }

  // Annotations: at most 256 KiB in all.
  Json big = vmJson();
  big["metadata"]["annotations"]["a"] = std::string(300 * 1024, 'x');
  BOOST_TEST(only(errorsOf(big)) ==
             "metadata.annotations: Too long: must have at most 262144 bytes");

  // A Node may not have a namespace.
  Node n;
  n.metadata.name = "n1";
  n.metadata.ns = "default";
  auto nodeErrs = validateNode(n);
  BOOST_TEST_REQUIRE(nodeErrs.size() == 1u);
  BOOST_TEST(nodeErrs[0].toString() == "metadata.namespace: Forbidden: not allowed on this type");
}

BOOST_AUTO_TEST_CASE(unknown_fields_follow_field_validation) {
  Json j = vmJson();
  j["spec"]["foo"] = 1;
  j["metadata"]["bar"] = "x";
  auto strict = decodeVirtualMachine(j, FieldValidation::kStrict);
  BOOST_TEST(strict.errors.size() == 2u);
  BOOST_TEST(strict.errors[0].field == "metadata.bar");
  BOOST_TEST(strict.errors[0].reason() == "FieldValueUnknown");
  auto warn = decodeVirtualMachine(j, FieldValidation::kWarn);
  BOOST_TEST(warn.ok());
  BOOST_TEST(warn.warnings.size() == 2u);
  BOOST_TEST(warn.warnings[1] == "unknown field \"spec.foo\"");
  auto ignore = decodeVirtualMachine(j, FieldValidation::kIgnore);
  BOOST_TEST(ignore.ok());
  BOOST_TEST(ignore.warnings.empty());
  // Dropped on encode, as Kubernetes prunes unknown fields.
  BOOST_TEST(!encode(ignore.value)["spec"].contains("foo"));
}

BOOST_AUTO_TEST_CASE(node_validation) {
  auto d = decodeNode(Json::parse(R"({"metadata":{"name":"n1"},
      "status":{"capacity":{"cpu":"2","memory":"-1Gi"},"conditions":[{"type":"Ready","status":"Yes"}]}})"),
                      FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(d.ok());
  auto errs = validateNode(d.value);
  BOOST_TEST_REQUIRE(errs.size() == 2u);
  BOOST_TEST(errs[0].toString() ==
             "status.capacity.memory: Invalid value: \"-1Gi\": must be greater than or equal to 0");
  BOOST_TEST(errs[1].toString() ==
             "status.conditions[0].status: Unsupported value: \"Yes\": supported values: "
             "\"True\", \"False\", \"Unknown\"");
}

BOOST_AUTO_TEST_CASE(seed_vm_converts_both_ways) {
  std::filesystem::path fixture =
      std::filesystem::path(VMHOST_TEST_SOURCE_DIR) / "tests/fixtures/seed-vm.yaml";
  Json seed = yamlToJson(YAML::LoadFile(fixture.string()));
  BOOST_TEST(seed["kind"] == "VM");
  seed["metadata"]["namespace"] = "default";

  auto d = decodeKubevirtVm(seed, FieldValidation::kStrict);
  for (auto& e : d.errors) BOOST_TEST_MESSAGE(e.toString());
  BOOST_TEST_REQUIRE(d.ok());
  BOOST_TEST(validateKubevirtVm(d.value).empty());
  const auto& s = d.value.spec;
  BOOST_TEST(s.memory.text == "8192Ki");
  BOOST_TEST(s.memory.value() == 8 * 1024 * 1024);
  BOOST_TEST(s.nodeSelector.at("kubernetes.io/hostname") == "master");
  BOOST_TEST_REQUIRE(s.interfaces.size() == 1u);
  BOOST_TEST(s.interfaces[0].name == "net0");
  BOOST_TEST(s.interfaces[0].network == "default");
  BOOST_TEST(s.graphics->type == "spice");
  BOOST_TEST(s.video->model == "qxl");
  BOOST_TEST(*s.video->heads == 1);
  BOOST_TEST(s.runStrategy == "Always");

  // Through the vmhost.io view it is an ordinary VirtualMachine...
  Json vmhost = encode(d.value);
  BOOST_TEST(vmhost["spec"]["memory"] == "8192Ki");
  // ...and back through kubevirt.io the spec is exactly what was written.
  Json back = encodeKubevirtVm(d.value);
  BOOST_TEST(back["spec"] == seed["spec"]);
  BOOST_TEST(back["kind"] == "VM");
  BOOST_TEST(back["apiVersion"] == "kubevirt.io/v1alpha1");
  BOOST_TEST(!back["metadata"].contains("annotations"));

  // A change made through vmhost.io shows in the kubevirt.io view.
  VirtualMachine changed = d.value;
  changed.spec.memory = parseQuantity("16Mi").value();
  Json rebuilt = encodeKubevirtVm(changed);
  BOOST_TEST(rebuilt["spec"]["domain"]["memory"] == Json::parse(R"({"unit":"MiB","value":16})"));
  BOOST_TEST(rebuilt["spec"]["domain"]["devices"]["interfaces"][0]["source"]["network"] ==
             "default");
  auto again = decodeKubevirtVm(rebuilt, FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(again.ok());
  BOOST_TEST(encodeVirtualMachineSpec(again.value.spec) == encodeVirtualMachineSpec(changed.spec));
}

BOOST_AUTO_TEST_CASE(kubevirt_errors_use_kubevirt_paths) {
  Json vm = Json::parse(R"({"apiVersion":"kubevirt.io/v1alpha1","kind":"VM",
    "metadata":{"name":"x"},
    "spec":{"domain":{"memory":{"unit":"KiB","value":-5},"type":"xen",
      "devices":{"interfaces":[{"type":"socket"}]}}}})");
  auto d = decodeKubevirtVm(vm, FieldValidation::kStrict);
  std::vector<std::string> errs;
  for (auto& e : d.errors) errs.push_back(e.toString());
  BOOST_TEST_REQUIRE(errs.size() == 3u);
  BOOST_TEST(errs[0] ==
             "spec.domain.type: Unsupported value: \"xen\": supported values: \"qemu\", \"kvm\"");
  BOOST_TEST(errs[1] == "spec.domain.memory.value: Invalid value: -5: must be greater than zero");
  BOOST_TEST(errs[2] ==
             "spec.domain.devices.interfaces[0].type: Unsupported value: \"socket\": supported "
             "values: \"network\", \"bridge\", \"user\"");

  Json small = Json::parse(R"({"metadata":{"name":"x"},
    "spec":{"domain":{"memory":{"unit":"KiB","value":16}}}})");
  auto s = decodeKubevirtVm(small, FieldValidation::kStrict);
  BOOST_TEST_REQUIRE(s.ok());
  auto verrs = validateKubevirtVm(s.value);
  BOOST_TEST_REQUIRE(verrs.size() == 1u);
  BOOST_TEST(verrs[0].toString() ==
             "spec.domain.memory: Invalid value: \"16Ki\": must be at least 1Mi");
}

BOOST_AUTO_TEST_CASE(seed_fixture_matches_shared_copy) {
  std::filesystem::path repo(VMHOST_TEST_SOURCE_DIR);
  std::filesystem::path shared = repo.parent_path() / "shared" / "seed-vm.yaml";
  if (std::filesystem::exists(shared)) {
    BOOST_TEST(slurp(shared) == slurp(repo / "tests/fixtures/seed-vm.yaml"));
  } else {
    BOOST_TEST_MESSAGE("no ../shared/seed-vm.yaml beside the repository; fixture not compared");
  }
}
