# Config of the `libvirt-network` network plugin.
@0xe3c1f0a0b2d9c841;

struct LibvirtNetworkConfig {
  macPrefix @0 :Text = "52:54:00";  # OUI of assigned MACs (QEMU's by default)
  defaultModel @1 :Text = "virtio";
}
