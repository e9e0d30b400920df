// kubevirt.io/v1alpha1 VM, the seed demo's kind: a second view of the same
// VirtualMachine objects (api/kubevirt.h converts both ways).
#include "api/kubevirt.h"
#include "apiserver/openapi_schema.h"
#include "apiserver/resources/registry.h"
#include "apiserver/resources/virtual_machine.h"

namespace vmhost::apiserver {
namespace {

struct KubevirtTraits : VmTraits {
  static api::Decoded<T> decode(const Json& j, api::FieldValidation m) {
    return api::decodeKubevirtVm(j, m);
  }
  static api::FieldErrors validate(const T& v) { return api::validateKubevirtVm(v); }
  static Json view(const T& v) { return api::encodeKubevirtVm(v); }
  static void takeStatus(T& next, const T& in) {
    // The old kind has no interfaces or observedGeneration: keep ours.
    next.status.phase = in.status.phase;
    next.status.nodeName = in.status.nodeName;
    next.status.conditions = in.status.conditions;
  }
};

using namespace oas;

Json kubevirtSpecSchema() {
  Json graphics = obj("A graphical console (the first one is used).",
                      Json{{"type", enumStr("Protocol.", list(api::kGraphicsTypes))},
                           {"autoPort", str("Accepted for compatibility; vmhost picks ports.")},
                           {"defaultMode", str("Accepted for compatibility.")},
                           {"listen", str("Accepted for compatibility.")},
                           {"port", str("Accepted for compatibility.")}});
  Json video = obj(
      "A video device (the first one is used).",
      Json{{"model", obj("The model.", Json{{"type", enumStr("Model.", list(api::kVideoModels))},
                                            {"heads", integer("Heads.")},
                                            {"vram", integer("Accepted; ignored.")}})}});
  Json iface =
      obj("A network interface.",
          Json{{"type", enumStr("Kind of attachment.", {"network", "bridge", "user"})},
               {"name", str("Interface name (default net<index>).")},
               {"source", obj("What to attach to.", Json{{"network", str("libvirt network name.")},
                                                         {"bridge", str("Host bridge name.")}})},
               {"model",
                obj("NIC model.", Json{{"type", enumStr("Model.", list(api::kInterfaceModels))}})},
               {"mac", obj("MAC address.", Json{{"address", str("The address.")}})}},
          {"type"});
  Json domain = obj(
      "The libvirt-style domain description.",
      Json{{"type", enumStr("Hypervisor type.", {"qemu", "kvm"})},
           {"memory", obj("Guest memory.",
                          Json{{"unit", str("libvirt unit: b, KB, KiB (default), MB, MiB, GB, "
                                            "GiB, TB, TiB.")},
                               {"value", integer("Amount in unit.")}},
                          {"value"})},
           {"cpu", obj("Virtual CPUs.", Json{{"cores", integer("Number of cores.")}})},
           {"os",
            obj("Guest OS type.",
                Json{{"type", obj("OS type.", Json{{"os", enumStr("Type.", {"hvm"})},
                                                   {"arch", str("Accepted; ignored.")},
                                                   {"machine", str("Accepted; ignored.")}})}})},
           {"devices", obj("Devices.", Json{{"interfaces", arr("Network interfaces.", iface)},
                                            {"video", arr("Video devices.", video)},
                                            {"graphics", arr("Graphical consoles.", graphics)}})}},
      {"memory"});
  Json props =
      Json{{"nodeSelector", stringMap("Node labels the VM's node must have.")}, {"domain", domain}};
  // vmhost.io/v1 fields the old kind lacks, under the same names.
  Json vmhost = virtualMachineSpecSchema()["properties"];
  for (const char* k : {"runStrategy", "evictionStrategy", "boot", "disks", "volumes"}) {
    props[k] = vmhost[k];
  }
  return obj(
      "The VM's desired state (kubevirt.io/v1alpha1 shape, plus vmhost.io/v1's run "
      "strategy, boot, disks and volumes).",
      std::move(props), {"domain"});
}

}  // namespace

ResourceRegistration kubevirtVmResource() {
  return {
      ResourceInfo{api::kKubevirtGroup,
                   api::kKubevirtVersion,
                   "vms",
                   "vm",
                   api::kKubevirtKind,
                   true,
                   {},
                   {},
                   "io.kubevirt.v1alpha1.VM"},
      [](ResourceInfo info, Services svc) -> std::unique_ptr<ResourceHandler> {
        return std::make_unique<TypedHandler<KubevirtTraits>>(std::move(info), svc);
      },
      [] {
        return topLevel(
            "The seed demo's KubeVirt v1alpha1 VM, served as a view of vmhost.io/v1 "
            "VirtualMachine objects.",
            api::kKubevirtGroup, api::kKubevirtVersion, api::kKubevirtKind, kubevirtSpecSchema(),
            obj("Observed state.", Json{{"phase", enumStr("Lifecycle phase.", list(api::kPhases))},
                                        {"nodeName", str("The node the VM is bound to.")},
                                        {"conditions", conditionsSchema("Conditions.")}}),
            true);
      }};
}

}  // namespace vmhost::apiserver
