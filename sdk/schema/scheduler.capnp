# vmhost SDK schema: scheduler plugins (VMHOST_KIND_SCHEDULER).
# Evolution rules: see common.capnp.
@0xa9ce6e8a548fd47b;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("vmhost::schema");

using Common = import "common.capnp";

# VMHOST_METHOD_SCHEDULER_SCHEDULE request.
#
# A plugin that does not declare VMHOST_CAP_SCHEDULER_NODE_CACHE gets
# `fullSync` with every node on every call, and need keep nothing between
# calls.
#
# One that declares it keeps the nodes it was sent. With `fullSync` the list
# replaces the cache (the first call, after the host re-lists its state, and
# after a call that failed); otherwise `nodes` holds only the nodes added or
# changed since the previous call on this instance and `removedNodes` the
# ones gone. After a placement the plugin adds the VM's requests to the
# chosen node's `allocated` in its cache ("assume"). The host resends the
# chosen node on its next call whatever became of the placement: its
# `allocated` then includes the VM if the host's write of the decision took,
# and not if the VM changed, went away or was bound elsewhere meanwhile. A
# node whose allocation changes on the host (a VM deleted, stopped, moved)
# is resent too. So at the start of every call the cache holds the host's
# own figures, however the plugin assumed; no field says which VMs came or
# went, because the resent node already carries their sum.
struct ScheduleRequest @0xfcc300996048058d {
  vm @0 :Common.VmSpec;
  nodes @1 :List(Common.NodeInfo);
  fullSync @2 :Bool;
  removedNodes @3 :List(Text);
  wantNodeReasons @4 :Bool;   # fill Unschedulable.nodeReasons (costly; for describe)
}

# VMHOST_METHOD_SCHEDULER_SCHEDULE response.
struct ScheduleResult @0xe511f79d22392ad0 {
  union {
    scheduled @0 :Placement;
    unschedulable @1 :Unschedulable;
  }
}

struct Placement @0xd9015acc2ab52c3e {
  node @0 :Text;
  score @1 :Int64;          # plugin-defined, higher is better
  feasibleNodes @2 :UInt32; # how many nodes passed the filters
}

struct Unschedulable @0xdc885dc5fe16a5fc {
  # One line for the VM's condition, e.g.
  # "0/5 nodes: 3 insufficient memory, 2 node selector mismatch".
  message @0 :Text;
  totalNodes @1 :UInt32;
  reasons @2 :List(ReasonCount);  # most frequent first
  nodeReasons @3 :List(NodeReason);
}

struct ReasonCount @0xd4a68f8f2b0ee69c {
  reason @0 :Text;
  count @1 :UInt32;
}

struct NodeReason @0xb622b71032cfa964 {
  node @0 :Text;
  reason @1 :Text;
}
