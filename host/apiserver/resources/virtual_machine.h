// The VirtualMachine traits, shared with the kubevirt.io view of the same objects.
#pragma once

#include "api/types.h"
#include "apiserver/rest.h"

namespace vmhost::apiserver {

struct VmTraits {
  using T = api::VirtualMachine;
  static api::Decoded<T> decode(const Json& j, api::FieldValidation m) {
    return api::decodeVirtualMachine(j, m);
  }
  static api::FieldErrors validate(const T& v) { return api::validateVirtualMachine(v); }
  static Json view(const T& v) { return api::encode(v); }
  static Result<T> fromStore(const store::StoredObject& o) {
    return api::decodeStoredVirtualMachine(o);
  }
  static std::string stored(const T& v) { return api::storeValue(v); }
  static store::Key key(const std::string& ns, const std::string& name) {
    return api::virtualMachineKey(ns, name);
  }
  static const char* storeResource() { return api::kVirtualMachinesResource; }
  static Json specOf(const T& v) { return api::encodeVirtualMachineSpec(v.spec); }
  static void onCreate(T& v) {
    // Status is the reconcilers'; a new VM starts Pending whatever was sent.
    v.status = api::VirtualMachineStatus{};
    v.status.phase = api::kPhasePending;
  }
  static void keepFromCurrent(T& next, const T& cur) { next.status = cur.status; }
  static void takeStatus(T& next, const T& in) { next.status = in.status; }
  static Json columns() {
    return Json::array(
        {column("Name", "string", "Name of the VM.", 0, "name"),
         column("Phase", "string", "Lifecycle phase."),
         column("Node", "string", "The node the VM is bound to."),
         column("Age", "string", "Time since creation."),
         column("Cores", "integer", "Virtual CPU cores.", 1),
         column("Memory", "string", "Guest memory.", 1),
         column("RunStrategy", "string", "Run strategy.", 1),
         column("Reason", "string", "Why the VM is not running, if known.", 1),
         column("Migration", "string", "The live migration in flight: its phase and target.", 1)});
  }
  static Json cells(const T& v) {
    std::string reason;
    for (const auto& c : v.status.conditions) {
      if (c.status == "False" && !c.reason.empty()) reason = c.reason;
    }
    std::string migration;
    if (v.status.migration && !api::migrationStateFinished(*v.status.migration)) {
      migration = v.status.migration->phase + " -> " + v.status.migration->targetNode;
    }
    return Json::array({v.metadata.name, v.status.phase, v.status.nodeName, age(v.metadata),
                        v.spec.cpu.cores, v.spec.memory.text, v.spec.runStrategy, reason,
                        migration});
  }
  static std::vector<std::string> fieldLabels() {
    return {"metadata.name", "metadata.namespace", "status.phase", "status.nodeName"};
  }
  static std::string field(const T& v, const std::string& f) {
    if (f == "metadata.name") return v.metadata.name;
    if (f == "metadata.namespace") return v.metadata.ns;
    if (f == "status.phase") return v.status.phase;
    if (f == "status.nodeName") return v.status.nodeName;
    return "";
  }
};

// The OpenAPI schema of a VirtualMachine's spec (the kubevirt.io view reuses parts).
Json virtualMachineSpecSchema();

}  // namespace vmhost::apiserver
