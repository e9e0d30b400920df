// The API's kinds as typed C++ values: vmhost.io/v1 VirtualMachine
// (namespaced) and Node (cluster-scoped), with JSON decode (collecting every
// error with its field path), validation and encode.
//
// The encoded vmhost.io/v1 JSON is also what the store holds (without
// metadata.resourceVersion, which is the store's modRevision), so the
// reconcilers that watch the store decode the same bytes with the same code
// (see objects.h).
#pragma once

#include "api/migration_state.h"
#include "api/quantity.h"
#include "api/validation.h"
#include "api/vocabulary.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace vmhost::api {

inline constexpr const char* kGroup = "vmhost.io";
inline constexpr const char* kVersion = "v1";
inline constexpr const char* kApiVersion = "vmhost.io/v1";
inline constexpr const char* kVirtualMachineKind = "VirtualMachine";
inline constexpr const char* kNodeKind = "Node";

struct ObjectMeta {
  std::string name;
  std::string generateName;
  std::string ns;  // "namespace"; empty for cluster-scoped kinds
  std::string uid;
  std::string resourceVersion;
  int64_t generation = 0;
  std::string creationTimestamp;                 // RFC 3339, UTC, seconds
  std::optional<std::string> deletionTimestamp;  // set while finalizers hold a delete
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::vector<std::string> finalizers;
  Json ownerReferences;  // passed through unchanged; null when absent
};

struct Condition {
  std::string type;
  std::string status;  // "True", "False", "Unknown"
  std::string reason;
  std::string message;
  std::string lastTransitionTime;
  friend bool operator==(const Condition&, const Condition&) = default;
};

// ---- VirtualMachine ----

inline constexpr const char* kRunStrategies[] = {"Always", "Halted", "Manual", "RerunOnFailure"};
inline constexpr const char* kEvictionStrategies[] = {"None", "Restart", "LiveMigrate"};
inline constexpr const char* kDiskBuses[] = {"virtio", "sata", "scsi"};
inline constexpr const char* kInterfaceModels[] = {"virtio", "e1000"};
inline constexpr const char* kReclaimPolicies[] = {"Delete", "Retain"};
inline constexpr const char* kGraphicsTypes[] = {"spice", "vnc"};
inline constexpr const char* kVideoModels[] = {"virtio", "qxl", "vga", "cirrus", "bochs"};
inline constexpr const char* kPhases[] = {"Pending", "Scheduling", "Scheduled", "Running",
                                          "Stopped", "Succeeded",  "Failed"};

struct CpuSpec {
  int64_t cores = 1;
};

// Direct kernel boot: the guest starts from a kernel (and initrd) on the
// node instead of a boot disk, as minimal test guests do.
struct BootSpec {
  std::string kernel;
  std::string initrd;
  std::string cmdline;
};

struct Disk {
  std::string name;  // the volume it is backed by
  std::string bus = "virtio";
  std::optional<int64_t> bootOrder;
  bool readOnly = false;
};

struct ImageSource {
  std::string path;  // exactly one of path and url
  std::string url;
  std::string sha256;  // optional, 64 hex digits
};

struct EmptyVolume {
  Quantity size;
};
struct HostPathVolume {
  std::string path;
};
struct EphemeralVolume {
  ImageSource image;
};
struct PersistentVolume {
  std::string claimName;
  std::optional<Quantity> size;
  std::optional<ImageSource> image;
  std::string reclaimPolicy = "Delete";
};

// Exactly one source is set.
struct Volume {
  std::string name;
  std::optional<EmptyVolume> empty;
  std::optional<HostPathVolume> hostPath;
  std::optional<EphemeralVolume> ephemeral;
  std::optional<PersistentVolume> persistent;
};

// Exactly one of network, bridge and user is set.
struct Interface {
  std::string name;
  std::string network;  // a libvirt network name
  std::string bridge;   // a host bridge name
  bool user = false;    // user-mode (slirp) networking
  // Empty: the network plugin's default (virtio for the default plugins).
  std::string model;
  std::string macAddress;
};

struct Graphics {
  std::string type;
};

struct Video {
  std::string model;
  std::optional<int64_t> heads;
};

struct VirtualMachineSpec {
  std::string runStrategy = "Always";
  CpuSpec cpu;
  Quantity memory;  // required
  std::map<std::string, std::string> nodeSelector;
  std::string evictionStrategy = "None";
  std::optional<BootSpec> boot;
  std::vector<Disk> disks;
  std::vector<Volume> volumes;
  std::vector<Interface> interfaces;
  std::optional<Graphics> graphics;
  std::optional<Video> video;
};

struct InterfaceStatus {
  std::string name;
  std::string mac;
};

struct VirtualMachineStatus {
  std::string phase;  // empty until first written
  std::string nodeName;
  std::vector<Condition> conditions;
  std::vector<InterfaceStatus> interfaces;
  int64_t observedGeneration = 0;
  // The migration in flight, or the last one (api/migration.h says who
  // writes which part).
  std::optional<MigrationState> migration;
};

struct VirtualMachine {
  ObjectMeta metadata;
  VirtualMachineSpec spec;
  VirtualMachineStatus status;
};

// ---- Node ----

struct ResourceAmounts {
  std::optional<Quantity> cpu;
  std::optional<Quantity> memory;
};

struct NodeSpec {
  bool unschedulable = false;  // cordoned: no new VMs are placed here
};

struct NodeStatus {
  ResourceAmounts capacity;
  ResourceAmounts allocatable;
  std::vector<Condition> conditions;  // "Ready"
};

struct Node {
  ObjectMeta metadata;
  NodeSpec spec;
  NodeStatus status;

  // "Ready", "NotReady" or "Unknown", plus ",SchedulingDisabled" when cordoned.
  std::string readiness() const;
};

// ---- Decode / validate / encode ----

template <typename T>
struct Decoded {
  T value;
  FieldErrors errors;
  std::vector<std::string> warnings;  // unknown fields under FieldValidation::kWarn
  bool ok() const { return errors.empty(); }
};

// The envelope of a kind with a required spec: apiVersion, kind, metadata,
// spec (decodeSpec) and status (decodeStatus), unknown fields per `mode`.
template <typename T, typename SpecFn, typename StatusFn>
Decoded<T> decodeEnvelope(const Json& j, FieldValidation mode, SpecFn decodeSpec,
                          StatusFn decodeStatus) {
  Decoded<T> out;
  Decoder d(mode);
  if (d.object(j, "", {"apiVersion", "kind", "metadata", "spec", "status"})) {
    if (auto it = j.find("metadata"); it != j.end()) {
      decodeMeta(d, *it, "metadata", out.value.metadata);
    }
    if (auto it = j.find("spec"); it != j.end() && !it->is_null()) {
      decodeSpec(d, *it, "spec", out.value.spec);
    } else {
      d.errors.push_back(required("spec"));
    }
    if (auto it = j.find("status"); it != j.end()) {
      decodeStatus(d, *it, "status", out.value.status);
    }
  }
  out.errors = std::move(d.errors);
  out.warnings = std::move(d.warnings);
  return out;
}

// Types and formats only (a malformed quantity is an error here); semantic
// rules are in validate*(). apiVersion and kind are accepted, not checked:
// the caller knows which endpoint the object came through.
Decoded<VirtualMachine> decodeVirtualMachine(const Json& j, FieldValidation mode);
Decoded<Node> decodeNode(const Json& j, FieldValidation mode);
void decodeMeta(Decoder& d, const Json& j, const std::string& path, ObjectMeta& out);
void decodeConditions(Decoder& d, const Json& j, const std::string& path,
                      std::vector<Condition>& out);

// Semantic rules: names (DNS-1123), required fields, enums, cross references
// (every disk names a volume), ranges. `namespaced` selects the name rules.
FieldErrors validateMeta(const ObjectMeta& m, bool namespaced);
FieldErrors validateVirtualMachineSpec(const VirtualMachineSpec& spec);
FieldErrors validateVirtualMachineStatus(const VirtualMachineStatus& status);
FieldErrors validateVirtualMachine(const VirtualMachine& vm);
FieldErrors validateNode(const Node& node);

Json encodeMeta(const ObjectMeta& m);
Json encodeConditions(const std::vector<Condition>& conditions);
Json encodeVirtualMachineSpec(const VirtualMachineSpec& spec);
Json encodeVirtualMachineStatus(const VirtualMachineStatus& status);
Json encode(const VirtualMachine& vm);
Json encode(const Node& node);

// Sets the kubernetes.io/hostname label to the node's name.
void applyNodeDefaults(Node& node);

}  // namespace vmhost::api
