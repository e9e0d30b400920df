# The node <-> controller protocol of a vmhost cluster (Cap'n Proto RPC over
# TCP). IDs are pinned; the protocol only ever gains fields and methods.
# A change an older peer could not survive bumps `protocolVersion`; the
# controller refuses a node of another version with a message saying both.
#
# Objects (Node, VirtualMachine) travel as the JSON the store keeps (the API's
# codec in host/api/objects.h), so both sides decode them with the same
# validating code. Every message is read with bounded ReaderOptions.
@0x97967d40fd6fcc4d;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("vmhost::rpc");

const protocolVersion :UInt32 = 1;

# The controller's bootstrap capability.
interface Cluster @0x861704bdb2df4fd6 {
  # Admits a node. `events` is where the controller pushes the VMs bound to
  # it (and those whose status.migration names it as the target): first
  # every one of them, then a `synced` event, then changes.
  # Refused (an exception whose description says why) for another protocol
  # version, a wrong join token, a bad node name, or a name that is already
  # connected.
  join @0 (request :JoinRequest, events :NodeEvents) -> (session :NodeSession);
}

struct JoinRequest @0xde35b06f489dec39 {
  protocolVersion @0 :UInt32;
  token @1 :Text;      # the cluster's join token (vmhost init writes it)
  nodeName @2 :Text;   # a DNS-1123 label
  node @3 :Data;       # the Node object (JSON): capacity, labels, Ready
}

# Controller -> node.
interface NodeEvents @0xeedbe5becc57d224 {
  vmsChanged @0 (events :List(VmEvent)) -> ();
}

struct VmEvent @0x8ba10fa7e1ae18a9 {
  type @0 :Type;
  object @1 :Data;  # the VirtualMachine (JSON); for `deleted`, its last value

  enum Type @0xd4119edf953bf55e {
    upsert @0;   # bound to this node, created or changed
    deleted @1;  # deleted: its data may go
    synced @2;   # the initial list is complete (no object)
    unbound @3;  # still exists but no longer bound to this node (moved by a
                 # drain, a lost-node recovery or a live migration): stop it
                 # here, keep its disks
  }
}

# Node -> controller, for one joined node.
interface NodeSession @0xaf8386b0b8b07a05 {
  # The node is alive; the controller marks it NotReady when heartbeats stop
  # for longer than its timeout.
  heartbeat @0 () -> ();
  # Writes the node-owned part of a VM's status (phase, the Ready and
  # ImagesReady conditions, interfaces, observedGeneration). Refused for a
  # VM not bound to this node. `vm` is the VirtualMachine (JSON) whose
  # status is the node's view.
  reportStatus @1 (vm :Data) -> ();
  # Refreshes the Node object (capacity, labels) after the join.
  registerNode @2 (node :Data) -> ();
  # Records an Event about a VM bound to this node. `event` is a core/v1
  # Event (JSON; only involvedObject, type, reason and message are read:
  # the controller names the source, and refuses events about VMs not bound
  # to the node).
  recordEvent @3 (event :Data) -> ();
  # Reports the node's side of a live migration: `vm` is the VirtualMachine
  # (JSON) whose status.migration is the node's view (api/migration.h says
  # what each side may write; the handover is the source's Succeeded).
  # Refused for a node that is neither the migration's source nor its target.
  reportMigration @4 (vm :Data) -> ();
}
