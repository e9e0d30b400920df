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
# One that declares it gets the node list batched and cached: an instance
# keeps the nodes it was sent. With `fullSync` the list replaces the cache; otherwise `nodes` holds
# only nodes added or changed since the previous call on this instance and
# `removedNodes` the ones gone. After a successful placement the plugin adds
# the VM's requests to the chosen node's `allocated` in its cache (the host's
# next update of that node overrides it), so back-to-back calls see each
# other's placements without the host resending the node.
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
