#!/usr/bin/env bash
# The libvirt-network plugin's NAT network on a fresh node, end to end: in
# private network, mount, UTS and PID namespaces (never the host's network or
# /run/libvirt), deploy/node-setup.sh starts libvirtd; `vmhost all-in-one` on
# qemu:///embed creates the `default` NAT network (bridge + dnsmasq + NAT)
# when the seed manifest, applied verbatim, attaches to it; a tiny guest on
# the same network gets a DHCP address from its range and answers ping from
# the node's side; a VM on a network that does not exist gets a condition
# naming it.
# usage: nat_network_qemu_test.sh BUILD_DIR SOURCE_DIR
BUILD=$1
SRC=$2

if [ -z "${VMHOST_NAT_TEST_IN_NS:-}" ]; then
  # Re-run this script as PID 1 of new namespaces. --kill-child: if this
  # process is killed (a CTest timeout), the namespace's PID 1 gets SIGKILL,
  # and with it every process left in the namespace (libvirtd, dnsmasq, QEMU).
  [ "$(id -u)" -eq 0 ] || { echo "FAIL: needs root (namespaces, bridges, libvirtd)"; exit 1; }
  . "$SRC/deploy/lib/require.sh"
  require_tools unshare:util-linux
  export VMHOST_NAT_TEST_IN_NS=1
  exec unshare --net --mount --uts --pid --fork --kill-child --mount-proc -- "$0" "$@"
fi

. "$SRC/tests/lib/harness.sh"
# A work directory of its own name: on a shared machine, other sessions sweep
# stale /tmp/vmhost-test-* directories, which took this test's logs with them.
rmdir "$WORK"
WORK=$(mktemp -d /tmp/vmhost-nat-e2e-XXXXXX)
# PID 1 of a namespace gets signals from outside only for handled ones: make
# SIGINT/SIGTERM run the harness's EXIT trap (teardown, logs).
trap 'exit 130' INT
trap 'exit 143' TERM
. "$SRC/tests/e2e/lib_qemu.sh"
require_tools virsh:libvirt-clients

# The node's private libvirt: /run on tmpfs, libvirt's dirs bound from $WORK.
# Mounts made here are private to this namespace (unshare makes them so).
ns="$WORK/ns"
mkdir -p "$ns/etc" "$ns/lib" "$ns/log" "$ns/cache"
# The mount points themselves: no installed package need have made them (a
# minimal Debian has none before libvirtd first runs).
mkdir -p /etc/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
mount -t tmpfs -o mode=755 vmhost-nat-run /run
mount --bind "$ns/etc" /etc/libvirt
mount --bind "$ns/lib" /var/lib/libvirt
mount --bind "$ns/log" /var/log/libvirt
mount --bind "$ns/cache" /var/cache/libvirt
hostname vmhost-nat-e2e
ip link set lo up

subnet_prefix=192.168.213
bridge=vmhostbr0
data="$WORK/master"  # start_aio keeps the data of host NAME in $WORK/NAME

# Teardown, from the harness's EXIT trap (after it stops vmhost), on every
# exit path: QEMU, dnsmasq and libvirtd by their pid files. Anything left
# dies with this PID namespace when the script exits.
teardown() {
  local f pid
  for f in "$data"/libvirt/run/qemu/*.pid /run/libvirt/network/*.pid /run/libvirtd.pid; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 1
  for f in "$data"/libvirt/run/qemu/*.pid /run/libvirt/network/*.pid /run/libvirtd.pid; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    kill -KILL "$pid" 2>/dev/null || true
  done
  # Keep libvirtd's log beside the others (the harness prints $WORK/*.log on failure).
  cp "$ns/log/libvirtd.log" "$WORK/libvirtd.log" 2>/dev/null || true
}
EXTRA_CLEANUP=teardown

# 1. libvirtd, started the way an operator starts it. No skip: a node where
# it cannot start fails this test.
if ! "$SRC/deploy/node-setup.sh" >"$WORK/node-setup.log" 2>&1; then
  echo "FAIL: deploy/node-setup.sh could not start libvirtd:"
  cat "$WORK/node-setup.log"
  tail -n 30 "$ns/log/libvirtd.log" 2>/dev/null || true
  exit 1
fi
cat "$WORK/node-setup.log"
check "node-setup.sh is idempotent" "$SRC/deploy/node-setup.sh"
check "the default network does not exist yet" sh -c '! virsh -q -c network:///system net-info default >/dev/null 2>&1'

# 2. vmhost all-in-one on qemu:///embed, the default NAT network configured
# as in deploy/all-in-one.yaml.
write_qemu_config "$WORK/config.yaml" "$data"
cat >>"$WORK/config.yaml" <<YAML
  network:
    name: libvirt-network
    config:
      checkNetworks: true
      networks:
      - {name: default, bridge: $bridge, address: $subnet_prefix.1/24,
         dhcpStart: $subnet_prefix.10, dhcpEnd: $subnet_prefix.250}
YAML
start_aio master "$WORK/config.yaml" master

# 3. The seed manifest, verbatim, on the node named master.
seed="$SRC/tests/fixtures/seed-vm.yaml"
if [ -f "$SRC/../shared/seed-vm.yaml" ]; then
  check "the fixture is the seed manifest, byte for byte" cmp -s "$seed" "$SRC/../shared/seed-vm.yaml"
fi
check "kubectl create -f seed-vm.yaml" kctl master create -f "$seed"
# The first start in a new embed root probes QEMU's capabilities (tens of seconds).
check "the seed VM reaches Running" wait_phase master testvm Running 240
check "the default network was created: active" sh -c "virsh -q -c network:///system net-info default | grep -Eq '^Active: +yes'"
check "... and autostarted" sh -c "virsh -q -c network:///system net-info default | grep -Eq '^Autostart: +yes'"
check "... on bridge $bridge with the node's address" sh -c "ip -4 -o addr show dev $bridge | grep -q ' $subnet_prefix.1/24 '"
check "... with libvirt's dnsmasq serving it" test -s /run/libvirt/network/default.pid
libvirtd_runs() { [ -s /run/libvirtd.pid ] && kill -0 "$(cat /run/libvirtd.pid)" 2>/dev/null; }
check "libvirtd still runs" libvirtd_runs
check "the seed VM's NIC is on network default" \
  grep -q "<source network='default'" "$data/libvirt/etc/qemu/default_testvm.xml"

# 4. A tiny guest on the same network: a DHCP lease from the range, and ping.
write_guest_vm "$WORK/guest.yaml" nat-guest 128Mi "  interfaces:
  - {name: eth0, network: default}"
check "vmctl apply (guest on network default)" vmctl master apply -f "$WORK/guest.yaml"
check "the guest reaches Running" wait_phase master nat-guest Running 180
console="$data/node/console/default_nat-guest.log"
check "the guest's console shows a DHCP address" \
  wait_for 120 grep -qs "vmhost-guest: eth0 address" "$console"
line=$(grep -m 1 "vmhost-guest: eth0 address" "$console" || true)
echo "console: $line"
addr=$(echo "$line" | sed -n 's/.*eth0 address \([0-9.]*\)\/\([0-9]*\).*/\1/p')
last=${addr##*.}
check "the address ($addr) is from the network's DHCP range" \
  sh -c "[ '${addr%.*}' = '$subnet_prefix' ] && [ '$last' -ge 10 ] && [ '$last' -le 250 ]"
check "libvirt lists the lease" sh -c "virsh -q -c network:///system net-dhcp-leases default | grep -q '$addr/24'"
check "the guest answers ping from the node" busybox ping -c 3 -W 5 "$addr"

# 5. A network that does not exist: a condition naming it, and no domain.
write_guest_vm "$WORK/nonet.yaml" no-net 64Mi "  interfaces:
  - {name: eth0, network: nosuchnet}"
check "vmctl apply (guest on a missing network)" vmctl master apply -f "$WORK/nonet.yaml"
condition_names_network() {
  vmctl master get vm no-net -o json 2>/dev/null |
    grep -q "interface eth0: network plugin 'libvirt-network': interface eth0: network nosuchnet does not exist on node master"
}
check "its Ready condition names the missing network" wait_for 60 condition_names_network
vmctl master get vm no-net -o json | grep -E '"(phase|reason|message)"' || true
reason_is_prepare_failed() {
  vmctl master get vm no-net -o json 2>/dev/null | grep -q '"reason": "PrepareFailed"'
}
check "its reason is PrepareFailed" reason_is_prepare_failed
check "no domain was defined for it" test ! -e "$data/libvirt/etc/qemu/default_no-net.xml"

# 6. Deleting the VMs leaves the network in place (the node's, not a VM's).
check "vmctl delete nat-guest" vmctl master delete nat-guest
no_guest_qemu() { [ -z "$(qemu_pids default_nat-guest)" ]; }
check "no QEMU process after delete" wait_for 60 no_guest_qemu
check "the network stays active" sh -c "virsh -q -c network:///system net-info default | grep -Eq '^Active: +yes'"
check "libvirtd still runs at the end" libvirtd_runs
finish
