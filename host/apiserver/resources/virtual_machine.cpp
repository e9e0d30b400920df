// vmhost.io/v1 VirtualMachine: the user's VM (api/types.h). Status is the
// reconcilers' (scheduler, node agents): a create starts Pending, and the
// main resource never changes status.
#include "apiserver/resources/virtual_machine.h"

#include "apiserver/openapi_schema.h"
#include "apiserver/resources/registry.h"
#include "apiserver/resources/virtual_machine_migration.h"

namespace vmhost::apiserver {

using namespace oas;

namespace {

Json imageSchema() {
  return obj("A disk image: a file on the node or a URL to fetch.",
             Json{{"path", str("Absolute path of an image file on the node.")},
                  {"url", str("http, https or file URL of the image.")},
                  {"sha256", str("Expected SHA-256 of the image, 64 hex digits (optional).")}});
}

}  // namespace

Json virtualMachineSpecSchema() {
  return obj(
      "The desired state of a virtual machine.",
      Json{
          {"runStrategy",
           enumStr("Whether the VM should run: Always (default: restarted whenever it stops), "
                   "Halted (stopped), Manual (started and stopped by request), RerunOnFailure "
                   "(restarted only after a failure).",
                   list(api::kRunStrategies))},
          {"cpu", obj("Virtual CPUs.", Json{{"cores", integer("Number of cores (default 1).")}})},
          {"memory", quantity("Guest memory, e.g. 128Mi.")},
          {"nodeSelector", stringMap("Node labels the VM's node must have, e.g. "
                                     "kubernetes.io/hostname: node1.")},
          {"evictionStrategy",
           enumStr("What happens when its node is drained (vmctl drain): None (default) stops "
                   "it (runStrategy becomes Halted), Restart stops it and starts it on another "
                   "node, LiveMigrate moves it while it runs (a VirtualMachineMigration; a VM "
                   "that is not running is moved as with Restart).",
                   list(api::kEvictionStrategies))},
          {"boot", obj("Direct kernel boot: start the guest from a kernel and initrd on the node "
                       "instead of a boot disk.",
                       Json{{"kernel", str("Absolute path of the kernel on the node.")},
                            {"initrd", str("Absolute path of the initrd on the node.")},
                            {"cmdline", str("Kernel command line, e.g. console=ttyS0.")}},
                       {"kernel"})},
          {"disks",
           arr("Disks attached to the guest, each backed by the volume of the same name.",
               obj("A disk.",
                   Json{{"name", str("Name of the volume backing this disk.")},
                        {"bus", enumStr("The bus (default virtio).", list(api::kDiskBuses))},
                        {"bootOrder", integer("Boot priority, 1 first.")},
                        {"readOnly", boolean("Attach read-only.")}},
                   {"name"}))},
          {"volumes",
           arr("Storage for disks; each sets exactly one source.",
               obj("A volume.",
                   Json{{"name", str("Name, referenced by a disk (a DNS-1123 label).")},
                        {"empty", obj("A new empty disk that lives as long as the VM.",
                                      Json{{"size", quantity("Size of the disk.")}}, {"size"})},
                        {"hostPath",
                         obj("A file or block device on the node.",
                             Json{{"path", str("Absolute path on the node.")}}, {"path"})},
                        {"ephemeral",
                         obj("A copy-on-write overlay over an image; changes are discarded "
                             "when the VM stops.",
                             Json{{"image", imageSchema()}}, {"image"})},
                        {"persistent",
                         obj("A volume that outlives the VM's runs, prepared by the storage "
                             "plugin.",
                             Json{{"claimName", str("Name of the volume in the storage backend.")},
                                  {"size", quantity("Size of the volume.")},
                                  {"image", imageSchema()},
                                  {"reclaimPolicy",
                                   enumStr("What happens to the volume when the VM is deleted "
                                           "(default Delete).",
                                           list(api::kReclaimPolicies))}},
                             {"claimName"})}},
                   {"name"}))},
          {"interfaces",
           arr("Network interfaces; each sets exactly one of network, bridge and user.",
               obj("A network interface.",
                   Json{{"name", str("Name (a DNS-1123 label).")},
                        {"network", str("Attach to this libvirt network.")},
                        {"bridge", str("Attach to this host bridge.")},
                        {"user", Json{{"description", "User-mode networking (no host setup)."},
                                      {"type", "object"}}},
                        {"model", enumStr("NIC model; default: the network plugin's (virtio for "
                                          "the default plugins).",
                                          list(api::kInterfaceModels))},
                        {"macAddress", str("Fixed MAC address; generated when empty.")}},
                   {"name"}))},
          {"graphics",
           obj("A graphical console.",
               Json{{"type", enumStr("Protocol.", list(api::kGraphicsTypes))}}, {"type"})},
          {"video", obj("The video device.",
                        Json{{"model", enumStr("Model.", list(api::kVideoModels))},
                             {"heads", integer("Number of heads (1-4).")}},
                        {"model"})},
      },
      {"memory"});
}

namespace {

Json vmStatusSchema() {
  return obj("The observed state of a virtual machine, written by vmhost.",
             Json{{"phase", enumStr("Where the VM is in its lifecycle.", list(api::kPhases))},
                  {"nodeName", str("The node the VM is bound to.")},
                  {"conditions", conditionsSchema("Current conditions, e.g. Scheduled "
                                                  "(reason Unschedulable when no node fits).")},
                  {"interfaces",
                   arr("Interfaces as the guest got them.",
                       obj("An interface's state.", Json{{"name", str("Interface name.")},
                                                         {"mac", str("Its MAC address.")}}))},
                  {"observedGeneration", integer("The metadata.generation the status reflects.")},
                  {"migration", migrationStateSchema()}});
}

}  // namespace

ResourceRegistration virtualMachineResource() {
  return {ResourceInfo{api::kGroup,
                       api::kVersion,
                       "virtualmachines",
                       "virtualmachine",
                       api::kVirtualMachineKind,
                       true,
                       {"vm"},
                       {"all"},
                       "io.vmhost.v1.VirtualMachine"},
          [](ResourceInfo info, Services svc) -> std::unique_ptr<ResourceHandler> {
            return std::make_unique<TypedHandler<VmTraits>>(std::move(info), svc);
          },
          [] {
            return topLevel(
                "A virtual machine: a pet VM that vmhost places on a node and keeps running "
                "according to its runStrategy.",
                api::kGroup, api::kVersion, api::kVirtualMachineKind, virtualMachineSpecSchema(),
                vmStatusSchema(), true);
          }};
}

}  // namespace vmhost::apiserver
