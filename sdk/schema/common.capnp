# vmhost SDK schema: types shared by every plugin kind.
#
# Evolution rules (the data contract is as stable as the C ABI):
#  - File and struct IDs are pinned here and never change.
#  - Fields, enumerants and union members are only ever added, with the next
#    ordinal; none is removed, renumbered, renamed to mean something else, or
#    retyped. A field no longer used is kept and documented as obsolete.
#  - Defaults never change. A reader must accept messages without the newer
#    fields (they read as defaults) and with fields it does not know (ignored).
#  - Messages cross the plugin boundary as flat, 8-byte-aligned word arrays;
#    each side reads the other's with bounded ReaderOptions (untrusted input).
@0x974e2e8c3f9e7815;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("vmhost::schema");

struct Label @0x89c4cee8f0fb7be0 {
  key @0 :Text;
  value @1 :Text;
}

# Identifies a VM in the cluster.
struct VmRef @0xe4ff807e901f3c3f {
  namespace @0 :Text;
  name @1 :Text;
  uid @2 :Text;   # unique for the object's lifetime; stable across restarts
}

# Compute resources. CPU in millicores (1000 = one vCPU), memory in bytes.
struct Resources @0xc0b0a5a582d903c8 {
  cpuMillis @0 :UInt64;
  memoryBytes @1 :UInt64;
}

# What the scheduler needs to know of a VM.
struct VmSpec @0xb5fea2cf641e50db {
  ref @0 :VmRef;
  requests @1 :Resources;       # what placement reserves on the node
  nodeSelector @2 :List(Label); # every label must match the node's exactly
  labels @3 :List(Label);       # the VM's own labels
}

# A node as the scheduler sees it: capacity, what is already allocated,
# labels and whether it takes new VMs.
struct NodeInfo @0xfc4b4c29ae8a1e2e {
  name @0 :Text;
  labels @1 :List(Label);
  schedulable @2 :Bool = true;  # false when cordoned
  ready @3 :Bool = true;        # false when the node stopped heartbeating
  capacity @4 :Resources;
  allocated @5 :Resources;      # sum of the requests of VMs bound to the node
  # Overcommit: allocatable = capacity * ratio. 0 means "the plugin's default".
  cpuAllocationRatio @6 :Float32;
  memoryAllocationRatio @7 :Float32;
}
