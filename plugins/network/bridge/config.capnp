# Config of the `bridge` network plugin.
@0xc8e2d4b6a1f3e597;

struct BridgeConfig {
  macPrefix @0 :Text = "52:54:00";  # OUI of assigned MACs (QEMU's by default)
  defaultModel @1 :Text = "virtio";
  allowedBridges @2 :List(Text);    # empty: any bridge on the node
}
