# Config of the `default` and `binpack` scheduler plugins (the slot's
# `config:` section), e.g.
#
#   plugins:
#     scheduler: {name: default, config: {cpuAllocationRatio: 4}}
@0xac6db658b0493ca0;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("vmhost::scheduler");

struct SchedulerConfig {
  # Overcommit applied to nodes that do not set their own ratio
  # (NodeInfo.*AllocationRatio = 0): allocatable = capacity * ratio. > 0.
  cpuAllocationRatio @0 :Float32 = 1.0;
  memoryAllocationRatio @1 :Float32 = 1.0;
}
