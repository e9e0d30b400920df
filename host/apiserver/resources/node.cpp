// vmhost.io/v1 Node (cluster-scoped): a host. Node agents register it with
// status; the spec (cordoning) is the operator's.
#include "api/types.h"
#include "apiserver/openapi_schema.h"
#include "apiserver/resources/registry.h"
#include "apiserver/rest.h"

namespace vmhost::apiserver {
namespace {

struct NodeTraits {
  using T = api::Node;
  static api::Decoded<T> decode(const Json& j, api::FieldValidation m) {
    return api::decodeNode(j, m);
  }
  static api::FieldErrors validate(const T& v) { return api::validateNode(v); }
  static Json view(const T& v) { return api::encode(v); }
  static Result<T> fromStore(const store::StoredObject& o) { return api::decodeStoredNode(o); }
  static std::string stored(const T& v) { return api::storeValue(v); }
  static store::Key key(const std::string&, const std::string& name) { return api::nodeKey(name); }
  static const char* storeResource() { return api::kNodesResource; }
  static Json specOf(const T& v) { return api::encode(v)["spec"]; }
  // A node agent may create its Node with status; it is kept.
  static void onCreate(T& v) { api::applyNodeDefaults(v); }
  static void keepFromCurrent(T& next, const T& cur) {
    next.status = cur.status;
    api::applyNodeDefaults(next);
  }
  static void takeStatus(T& next, const T& in) { next.status = in.status; }
  static Json columns() {
    return Json::array({column("Name", "string", "Name of the node.", 0, "name"),
                        column("Status", "string",
                               "Ready, NotReady or Unknown; "
                               "SchedulingDisabled when cordoned."),
                        column("CPU", "string", "Allocatable CPUs."),
                        column("Memory", "string", "Allocatable memory."),
                        column("Age", "string", "Time since registration."),
                        column("Capacity-CPU", "string", "CPUs of the host.", 1),
                        column("Capacity-Memory", "string", "Memory of the host.", 1)});
  }
  static Json cells(const T& n) {
    auto q = [](const std::optional<api::Quantity>& v) {
      return v ? v->text : std::string("<none>");
    };
    return Json::array({n.metadata.name, n.readiness(), q(n.status.allocatable.cpu),
                        q(n.status.allocatable.memory), age(n.metadata), q(n.status.capacity.cpu),
                        q(n.status.capacity.memory)});
  }
  static std::vector<std::string> fieldLabels() { return {"metadata.name", "spec.unschedulable"}; }
  static std::string field(const T& n, const std::string& f) {
    if (f == "metadata.name") return n.metadata.name;
    if (f == "spec.unschedulable") return n.spec.unschedulable ? "true" : "false";
    return "";
  }
};

using namespace oas;

Json resourcesSchema(const std::string& desc) {
  return obj(desc, Json{{"cpu", quantity("CPUs.")}, {"memory", quantity("Memory.")}});
}

}  // namespace

ResourceRegistration nodeResource() {
  return {ResourceInfo{api::kGroup,
                       api::kVersion,
                       "nodes",
                       "node",
                       api::kNodeKind,
                       false,
                       {"no"},
                       {},
                       "io.vmhost.v1.Node"},
          [](ResourceInfo info, Services svc) -> std::unique_ptr<ResourceHandler> {
            return std::make_unique<TypedHandler<NodeTraits>>(std::move(info), svc);
          },
          [] {
            return topLevel(
                "A host that runs VMs. Registered by the node agent; labelled "
                "kubernetes.io/hostname=<name>.",
                api::kGroup, api::kVersion, api::kNodeKind,
                obj("Operator-set node state.",
                    Json{{"unschedulable", boolean("Cordoned: no new VMs are placed here.")}}),
                obj("Reported by the node agent.",
                    Json{{"capacity", resourcesSchema("What the host has.")},
                         {"allocatable", resourcesSchema("What VMs may use.")},
                         {"conditions", conditionsSchema("Node conditions (Ready).")}}),
                false);
          }};
}

}  // namespace vmhost::apiserver
