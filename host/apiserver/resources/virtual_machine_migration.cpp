// vmhost.io/v1 VirtualMachineMigration (api/migration.h): create one to
// move a running VM to another node, delete it to cancel. The spec is the
// user's and immutable after create (an update that changes it is 422
// Invalid, "field is immutable", as Kubernetes answers for immutable
// fields); the status is the migration controller's, through the status
// subresource or api::updateMigrationStatus(). A create starts with an
// empty status: the controller writes Pending. Deletes honour finalizers
// (the controller's vmhost.io/migration holds a cancel until it is
// resolved) through rest.h, as for every kind.
#include "apiserver/resources/virtual_machine_migration.h"

#include "api/migration.h"
#include "apiserver/openapi_schema.h"
#include "apiserver/resources/registry.h"
#include "apiserver/rest.h"

namespace vmhost::apiserver {
namespace {

// The kind as the REST layer handles it, plus what an update tried to do
// to the spec: keepFromCurrent() cannot refuse, so it notes the change and
// validate() reports it.
struct MigrationObject : api::VirtualMachineMigration {
  std::optional<Json> changedSpec;
};

struct MigrationTraits {
  using T = MigrationObject;
  static T wrap(api::VirtualMachineMigration m) {
    T t;
    static_cast<api::VirtualMachineMigration&>(t) = std::move(m);
    return t;
  }
  static const api::VirtualMachineMigration& kind(const T& t) { return t; }

  static api::Decoded<T> decode(const Json& j, api::FieldValidation m) {
    auto d = api::decodeVirtualMachineMigration(j, m);
    api::Decoded<T> out;
    out.value = wrap(std::move(d.value));
    out.errors = std::move(d.errors);
    out.warnings = std::move(d.warnings);
    return out;
  }
  static api::FieldErrors validate(const T& v) {
    auto errs = api::validateVirtualMachineMigration(kind(v));
    if (v.changedSpec) errs.push_back(api::invalid("spec", *v.changedSpec, "field is immutable"));
    return errs;
  }
  static Json view(const T& v) { return api::encode(kind(v)); }
  static Result<T> fromStore(const store::StoredObject& o) {
    auto m = api::decodeStoredMigration(o);
    if (!m) return m.error();
    return wrap(std::move(m.value()));
  }
  static std::string stored(const T& v) { return api::storeValue(kind(v)); }
  static store::Key key(const std::string& ns, const std::string& name) {
    return api::migrationKey(ns, name);
  }
  static const char* storeResource() { return api::kMigrationsResource; }
  static Json specOf(const T& v) { return api::encode(kind(v))["spec"]; }
  static void onCreate(T& v) {
    // Status is the controller's; it writes Pending first.
    v.status = api::VirtualMachineMigrationStatus{};
  }
  static void keepFromCurrent(T& next, const T& cur) {
    next.status = cur.status;
    Json spec = specOf(next);
    if (spec != specOf(cur)) next.changedSpec = std::move(spec);
  }
  static void takeStatus(T& next, const T& in) { next.status = in.status; }

  static Json columns() {
    return Json::array(
        {column("Name", "string", "Name of the migration.", 0, "name"),
         column("VM", "string", "The VM it migrates (spec.vmName)."),
         column("Phase", "string", "Where the migration is."),
         column("Source", "string", "The node the VM runs on when it started."),
         column("Target", "string",
                "The node the VM moves to (chosen by the scheduler, or spec.targetNode)."),
         column("Progress", "string", "Data processed of the total, while Running."),
         column("Age", "string", "Time since creation."),
         column("Reason", "string", "Why it waits (Pending) or the step that failed.", 1)});
  }
  static std::string progress(const T& v) {
    const auto& p = v.status.progress;
    if (v.status.phase != api::kMigrationRunning || !p || p->dataTotalBytes == 0) return "";
    uint64_t pct = p->dataProcessedBytes >= p->dataTotalBytes
                       ? 100
                       : static_cast<uint64_t>(static_cast<double>(p->dataProcessedBytes) * 100.0 /
                                               static_cast<double>(p->dataTotalBytes));
    return std::to_string(pct) + "%";
  }
  static Json cells(const T& v) {
    const std::string& target =
        v.status.targetNode.empty() ? v.spec.targetNode : v.status.targetNode;
    return Json::array({v.metadata.name, v.spec.vmName, v.status.phase, v.status.sourceNode, target,
                        progress(v), age(v.metadata), v.status.reason});
  }
  static std::vector<std::string> fieldLabels() {
    return {"metadata.name", "metadata.namespace", "spec.vmName",      "spec.targetNode",
            "status.phase",  "status.sourceNode",  "status.targetNode"};
  }
  static std::string field(const T& v, const std::string& f) {
    if (f == "metadata.name") return v.metadata.name;
    if (f == "metadata.namespace") return v.metadata.ns;
    if (f == "spec.vmName") return v.spec.vmName;
    if (f == "spec.targetNode") return v.spec.targetNode;
    if (f == "status.phase") return v.status.phase;
    if (f == "status.sourceNode") return v.status.sourceNode;
    if (f == "status.targetNode") return v.status.targetNode;
    return "";
  }
};

using namespace oas;

Json uint64(const std::string& desc) {
  Json j = integer(desc);
  j["minimum"] = 0;
  return j;
}

Json parametersSchema() {
  return obj(
      "Overrides of what the migration plugin plans for this migration; 0 or absent: the "
      "plugin's value.",
      Json{{"bandwidthMiBps", uint64("Bandwidth limit in MiB/s (at most 1000000).")},
           {"maxDowntimeMs",
            uint64("The longest pause of the guest at the switch-over, in ms (1-600000).")},
           {"completionTimeoutPerGiBSeconds",
            uint64("Abort when not complete after this many seconds per GiB to move.")},
           {"progressTimeoutSeconds",
            uint64("Abort when the data remaining has not shrunk for this long.")},
           {"parallelConnections", uint64("Parallel migration streams (at most 64).")},
           {"allowPostCopy", boolean("Whether the plugin may switch to post-copy.")},
           {"autoConverge", boolean("Whether to throttle the guest's CPUs to converge.")}});
}

Json progressSchema() {
  return obj("The running migration's figures, as libvirt reports them on the source.",
             Json{{"dataTotalBytes", uint64("Data to move in all (memory and copied disks).")},
                  {"dataProcessedBytes", uint64("Data moved so far.")},
                  {"dataRemainingBytes", uint64("Data still to move.")},
                  {"dirtyRateBytesPerSecond", uint64("How fast the guest dirties memory.")},
                  {"memoryIteration", uint64("The pre-copy pass over memory.")},
                  {"maxDowntimeMs", uint64("The max downtime in force now.")},
                  {"elapsedMs", uint64("Time since the migration started.")},
                  {"postCopy", boolean("Switched to post-copy.")},
                  {"lastDecision", str("The plugin's last decision other than continue, with "
                                       "its reason.")}});
}

Json resultSchema() {
  return obj("What a finished migration took.",
             Json{{"totalMs", uint64("libvirt's total time.")},
                  {"downtimeMs", uint64("libvirt's total downtime of the guest.")},
                  {"bytesTransferred", uint64("Data moved.")},
                  {"endedBy", str("What made it converge, e.g. pre-copy, post-copy.")}});
}

Json migrationSpecSchema() {
  return obj(
      "What to migrate and where. Immutable after create.",
      Json{{"vmName", str("The VM to migrate, in the migration's namespace (required).")},
           {"targetNode", str("The node to migrate to; empty: the scheduler chooses (never the "
                              "source).")},
           {"nodeSelector", stringMap("Node labels the target must have.")},
           {"parameters", parametersSchema()}},
      {"vmName"});
}

Json migrationStatusSchema() {
  return obj(
      "The observed state of the migration, written by vmhost.",
      Json{{"phase", enumStr("Where the migration is; empty until the controller first writes.",
                             list(api::kMigrationPhases))},
           {"reason", str("Pending: why it waits; Failed: the step that failed (CamelCase).")},
           {"message", str("Failed: the step and libvirt's or the plugin's words.")},
           {"vmUid", str("The uid of the VM migrated.")},
           {"sourceNode", str("The node the VM ran on.")},
           {"targetNode", str("The node the VM moves to.")},
           {"startTimestamp", timestamp("When it left Pending.")},
           {"endTimestamp", timestamp("When it reached Succeeded or Failed.")},
           {"progress", progressSchema()},
           {"result", resultSchema()}});
}

}  // namespace

// status.migration of a VirtualMachine (the VM's schema includes it).
Json migrationStateSchema() {
  return obj(
      "The live migration in flight, or the last one: the record the source and target nodes "
      "see and write.",
      Json{{"name", str("The VirtualMachineMigration.")},
           {"uid", str("Its uid.")},
           {"sourceNode", str("The node the VM migrates from.")},
           {"targetNode", str("The node the VM migrates to.")},
           {"phase", enumStr("Where the migration is.", list(api::kMigrationStatePhases))},
           {"abortRequested", boolean("The migration was cancelled.")},
           {"reason", str("Failed: the step that failed.")},
           {"message", str("Failed: what happened.")},
           {"parameters", parametersSchema()},
           {"target",
            obj("What the target published for the source.",
                Json{{"domainXml", str("The domain as the target runs it.")},
                     {"libvirtUri", str("The target's libvirt, for peer-to-peer migration.")},
                     {"migrateUri", str("Where QEMU's migration stream goes.")},
                     {"tls", boolean("The stream must be TLS.")},
                     {"copyDisks", arr("The disks copied (not on shared storage), by target "
                                       "dev (vda).",
                                       Json{{"type", "string"}, {"default", ""}})}})},
           {"progress", progressSchema()},
           {"result", resultSchema()},
           {"startTimestamp", timestamp("When the migration started.")},
           {"endTimestamp", timestamp("When it finished.")}},
      {"name", "uid", "sourceNode", "targetNode", "phase"});
}

ResourceRegistration virtualMachineMigrationResource() {
  return {ResourceInfo{api::kGroup,
                       api::kVersion,
                       api::kMigrationsResource,
                       "virtualmachinemigration",
                       api::kVirtualMachineMigrationKind,
                       true,
                       {"vmim", "migration"},
                       {"all"},
                       "io.vmhost.v1.VirtualMachineMigration"},
          [](ResourceInfo info, Services svc) -> std::unique_ptr<ResourceHandler> {
            return std::make_unique<TypedHandler<MigrationTraits>>(std::move(info), svc);
          },
          [] {
            return topLevel(
                "A live migration of a VM to another node: create one to move the VM while it "
                "runs, delete it to cancel a migration that has not finished.",
                api::kGroup, api::kVersion, api::kVirtualMachineMigrationKind,
                migrationSpecSchema(), migrationStatusSchema(), true);
          }};
}

}  // namespace vmhost::apiserver
