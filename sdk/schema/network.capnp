# vmhost SDK schema: network plugins (VMHOST_KIND_NETWORK).
# Evolution rules: see common.capnp.
@0xa6194e7c38591eaf;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("vmhost::schema");

using Common = import "common.capnp";

# An interface as the VM spec declares it.
struct Interface @0x854613456f4a843f {
  name @0 :Text;    # unique within the VM
  model @1 :Text;   # "virtio" (default) or "e1000"
  mac @2 :Text;     # "" to let the plugin assign one
  source :union {
    network @3 :Text;   # a libvirt network name
    bridge @4 :Text;    # a host Linux bridge
    user @5 :Void;      # QEMU user networking
  }
}

# VMHOST_METHOD_NETWORK_ATTACH request. Idempotent.
struct InterfaceRequest @0xa87afe15e5e9c0d2 {
  vm @0 :Common.VmRef;
  node @1 :Text;
  interface @2 :Interface;
  index @3 :UInt32;   # position among the VM's interfaces
}

# VMHOST_METHOD_NETWORK_ATTACH response: what the libvirt <interface> needs.
struct InterfaceAttachment @0xb36e83d63751ccaf {
  interfaceName @0 :Text;
  type @1 :Text;       # <interface type=...>: "network", "bridge", "user", "ethernet"
  source @2 :Text;     # network or bridge name; "" for user
  mac @3 :Text;        # lower-case "52:54:00:xx:xx:xx"; stable for the VM and interface
  model @4 :Text;
  targetDev @5 :Text;  # tap name when the plugin manages it; "" lets libvirt choose
}

# VMHOST_METHOD_NETWORK_DETACH request. Idempotent.
struct InterfaceRelease @0xf339d4f4d213dbf6 {
  vm @0 :Common.VmRef;
  node @1 :Text;
  interface @2 :Interface;
  attachment @3 :InterfaceAttachment;
}

# VMHOST_METHOD_NETWORK_DETACH response.
struct InterfaceReleased @0xef32ed06718a4336 {
  released @0 :Bool;  # something was torn down by this call
}
