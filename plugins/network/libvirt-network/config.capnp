# Config of the `libvirt-network` network plugin.
@0xe3c1f0a0b2d9c841;

struct LibvirtNetworkConfig {
  macPrefix @0 :Text = "52:54:00";  # OUI of assigned MACs (QEMU's by default)
  defaultModel @1 :Text = "virtio";
  # The libvirt connection that owns the node's networks. With qemu:///embed
  # (no daemon of its own) QEMU reaches networks through this same daemon,
  # which deploy/node-setup.sh starts.
  uri @2 :Text = "network:///system";
  # Networks the plugin creates on the node: when an interface attaches to
  # one of them, it is defined (if absent), started (if inactive) and marked
  # autostart, idempotently.
  networks @3 :List(NatNetwork);
  # For an interface on a network not in `networks`: check at attach that it
  # exists and is active, so a missing network is a VM condition naming it
  # rather than a failed domain start.
  checkNetworks @4 :Bool = false;
}

# A routed subnet behind a bridge, with DHCP and DNS from a dnsmasq libvirt
# runs and, for forward "nat", masquerading to the node's other interfaces.
struct NatNetwork {
  name @0 :Text;       # the libvirt network's name, as interfaces refer to it
  bridge @1 :Text;     # the Linux bridge libvirt creates, e.g. vmhostbr0
  address @2 :Text;    # the node's address on the bridge, with prefix: 192.168.213.1/24
  dhcpStart @3 :Text;  # first and last address DHCP hands out (both, or neither: no DHCP)
  dhcpEnd @4 :Text;
  forward @5 :Text = "nat";  # "nat", or "none" for an isolated network
}
