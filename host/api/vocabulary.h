// The words every vmhost component speaks: condition types and reasons,
// labels and annotations, and the VM phases. The API server, the
// controller's reconcilers, the node agents and vmctl all name these
// through this header (as KubeVirt's staging/src/kubevirt.io/api is shared
// by virt-controller, virt-handler and virtctl), so a name changes in one
// place and no component imports another to learn it.
//
// Header-only and dependency-free on purpose: vmctl includes it without
// linking the API's types.
#pragma once

namespace vmhost::api {

// ---- VirtualMachine phases (status.phase) ----
inline constexpr const char* kPhasePending = "Pending";
inline constexpr const char* kPhaseScheduling = "Scheduling";
inline constexpr const char* kPhaseScheduled = "Scheduled";
inline constexpr const char* kPhaseRunning = "Running";
inline constexpr const char* kPhaseStopped = "Stopped";
inline constexpr const char* kPhaseSucceeded = "Succeeded";
inline constexpr const char* kPhaseFailed = "Failed";

// ---- Condition types ----
// VM and Node: whether it is up (the node agent writes it for VMs and for
// its own Node; the node server writes Unknown when heartbeats stop).
inline constexpr const char* kReadyCondition = "Ready";
// VM: the scheduler's placement decision.
inline constexpr const char* kScheduledCondition = "Scheduled";
// VM: base images being fetched by the storage plugin (progress in the message).
inline constexpr const char* kImagesReadyCondition = "ImagesReady";
// VM: an eviction (drain) in progress; see api/eviction.h.
inline constexpr const char* kEvictingCondition = "Evicting";
// VM: dead-host recovery's decision (controller/recovery.h).
inline constexpr const char* kRecoveryCondition = "Recovery";

// ---- Condition reasons written by more than one component ----
inline constexpr const char* kEvictingReason = "NodeDrain";
inline constexpr const char* kEvictedReason = "Evicted";
inline constexpr const char* kLiveMigrationUnsupportedReason = "LiveMigrationUnsupported";

// ---- Labels ----
// Every Node carries its own name under this label, as the kubelet sets it.
inline constexpr const char* kHostnameLabel = "kubernetes.io/hostname";

// ---- Annotations ----
// Node: a drain was requested (vmctl drain sets it with spec.unschedulable;
// vmctl uncordon removes both). The value is when it was asked for.
inline constexpr const char* kDrainAnnotation = "vmhost.io/drain";
// Node: the node agent's overcommit for its node, overriding the scheduler
// plugin's default.
inline constexpr const char* kCpuAllocationRatioAnnotation = "vmhost.io/cpu-allocation-ratio";
inline constexpr const char* kMemoryAllocationRatioAnnotation = "vmhost.io/memory-allocation-ratio";
// Node: where other hosts reach this node's libvirt (live migration's target URI).
inline constexpr const char* kLibvirtEndpointAnnotation = "vmhost.io/libvirt-endpoint";
// VirtualMachine: the kubevirt.io/v1alpha1 spec as written through that view
// (compact JSON); see api/kubevirt.h.
inline constexpr const char* kKubevirtSpecAnnotation = "vmhost.io/kubevirt-v1alpha1-spec";

}  // namespace vmhost::api
