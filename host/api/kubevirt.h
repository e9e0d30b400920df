// The seed demo's kubevirt.io/v1alpha1 `VM` (resource `vms`), served as a
// second view of the same VirtualMachine objects.
//
// A VM written through kubevirt.io is converted into a VirtualMachine and
// its original spec is kept in an annotation, so reading it back through
// kubevirt.io returns exactly what was written (as long as nobody changed
// the VirtualMachine since); otherwise the view is rebuilt from the
// VirtualMachine's spec. Parts of a VirtualMachine the old kind cannot
// express (disks, volumes, direct boot, run and eviction strategies) are
// kept as they are when a VM is updated through kubevirt.io.
#pragma once

#include "api/types.h"

namespace vmhost::api {

inline constexpr const char* kKubevirtGroup = "kubevirt.io";
inline constexpr const char* kKubevirtVersion = "v1alpha1";
inline constexpr const char* kKubevirtApiVersion = "kubevirt.io/v1alpha1";
inline constexpr const char* kKubevirtKind = "VM";
// Holds the kubevirt.io/v1alpha1 spec as written, as compact JSON.
inline constexpr const char* kKubevirtSpecAnnotation = "vmhost.io/kubevirt-v1alpha1-spec";

// kubevirt.io/v1alpha1 VM JSON -> VirtualMachine (metadata, spec, status),
// with field paths in the VM's own terms (spec.domain.memory.value).
// Semantic validation of the result is validateKubevirtVm().
Decoded<VirtualMachine> decodeKubevirtVm(const Json& j, FieldValidation mode);

// validateVirtualMachine() with paths renamed to where the kubevirt.io
// object holds the field (spec.memory -> spec.domain.memory).
FieldErrors validateKubevirtVm(const VirtualMachine& vm);

// VirtualMachine -> kubevirt.io/v1alpha1 VM JSON (the annotation itself is
// not shown).
Json encodeKubevirtVm(const VirtualMachine& vm);

// After a write through kubevirt.io: carries over from `current` the parts
// of the spec that the kubevirt view cannot express.
void keepNonKubevirtFields(VirtualMachineSpec& updated, const VirtualMachineSpec& current);

}  // namespace vmhost::api
