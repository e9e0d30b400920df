# A plugin config with every kind of field decodeConfig maps JSON onto
# (tests/unit/sdk/plugin_config_test.cpp).
@0xd7e1c0a4b9f23561;

enum Forward {
  nat @0;
  none @1;
  route @2;
}

struct TestNetwork {
  name @0 :Text;
  cidr @1 :Text;
  forward @2 :Forward = nat;
  union {
    dhcp @3 :Void;
    address @4 :Text;
  }
}

struct TestConfig {
  pool @0 :Text = "/var/lib/test/pool";
  maxPoolBytes @1 :UInt64;
  parallel @2 :UInt32 = 1;
  offset @3 :Int8;
  ratio @4 :Float32 = 1.0;
  verbose @5 :Bool;
  networks @6 :List(TestNetwork);
  tags @7 :List(Text);
  source :union {
    path @8 :Text;
    url @9 :Text;
  }
  limits :group {
    cpuMillis @10 :UInt32;
  }
  empty @11 :Empty;
}

struct Empty {}

# Requests whose fields do not read as the SDK schemas' types: the same
# layout, with a list of numbers where a text belongs.
struct WrongRef {
  namespace @0 :Text;
  name @1 :List(UInt64);  # VmRef.name is Text
}

struct WrongVolumeRequest {
  vm @0 :WrongRef;  # VolumeRequest.vm is VmRef
}

struct WrongNode {
  name @0 :List(UInt64);  # NodeInfo.name is Text
}

struct WrongScheduleRequest {
  vm @0 :Empty;                # ScheduleRequest.vm is VmSpec (an empty one reads fine)
  nodes @1 :List(WrongNode);   # ScheduleRequest.nodes is List(NodeInfo)
}

# A list of lists, which the strict walk reads through the dynamic API.
struct Grid {
  rows @0 :List(List(Text));
}

struct WrongGrid {
  rows @0 :List(List(UInt64));  # Grid.rows holds texts
}
