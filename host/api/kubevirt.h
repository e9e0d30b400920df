// The seed demo's kubevirt.io/v1alpha1 `VM` (resource `vms`), served as a
// second view of the same VirtualMachine objects.
//
// A VM written through kubevirt.io is converted into a VirtualMachine and
// its original spec is kept in an annotation, so reading it back through
// kubevirt.io returns exactly what was written (as long as nobody changed
// the VirtualMachine since); otherwise the view is rebuilt from the
// VirtualMachine's spec. What the old kind cannot express (run and
// eviction strategies, direct boot, disks, volumes) appears in its spec under
// the same names as in vmhost.io/v1 (spec.runStrategy, spec.disks, ...), so
// `kubectl patch vm X --type=merge -p '{"spec":{"runStrategy":"Halted"}}'`
// means the same through either view.
#pragma once

#include "api/types.h"

namespace vmhost::api {

inline constexpr const char* kKubevirtGroup = "kubevirt.io";
inline constexpr const char* kKubevirtVersion = "v1alpha1";
inline constexpr const char* kKubevirtApiVersion = "kubevirt.io/v1alpha1";
inline constexpr const char* kKubevirtKind = "VM";

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

}  // namespace vmhost::api
