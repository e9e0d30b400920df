#!/usr/bin/env bash
# A NIC on a bridge, seen from both sides, in a private network namespace:
# the test makes a bridge with an address there, runs `vmhost all-in-one`
# (qemu:///embed, network plugin `bridge` with allowedBridges) inside it and
# boots a guest with a `bridge:` interface and a static address
# (vmhost.ip=) running a TCP echo service (vmhost.echo=). Proves: the host
# pings the guest and gets its TCP echo back; the MAC the guest sees is the
# one in status.interfaces (read with kubectl); a tap on the bridge exists
# while it runs and is gone after delete.
# usage: bridge_qemu_test.sh BUILD_DIR SOURCE_DIR
[ -n "${VMHOST_TEST_NETNS:-}" ] ||
  VMHOST_TEST_NETNS=1 exec unshare --net --fork --kill-child=SIGTERM "$0" "$@"
BUILD=$1
SRC=$2
. "$SRC/tests/lib/harness.sh"
. "$SRC/tests/e2e/lib_qemu.sh"
require_private_netns
EMBED="$WORK/libvirt"
EXTRA_CLEANUP='kill_embed_qemus "$EMBED"'
BR=vmhbr0
HOST_IP=10.77.0.1
GUEST_IP=10.77.0.10
PORT=7777

make_test_bridge "$BR" "$HOST_IP/24"
write_embed_config "$WORK/config.yaml" "$EMBED" "{name: local, config: {pool: $WORK/pool}}" \
  "{name: bridge, config: {allowedBridges: [$BR]}}"
start_aio aio "$WORK/config.yaml" bridge-node
vm=br-vm
console="$WORK/aio/node/console/default_$vm.log"
write_guest_vm_args "$WORK/$vm.yaml" "$vm" 128Mi "vmhost.ip=$GUEST_IP/24 vmhost.echo=$PORT" "  interfaces:
  - {name: net0, bridge: $BR}"
taps_before=$(tap_count)
require "vmctl apply" vmctl aio apply -f "$WORK/$vm.yaml"
require "the VM reaches Running" wait_phase aio "$vm" Running 240
check "the guest booted" wait_for 90 grep -q "vmhost-guest: booted" "$console"
grep "vmhost-guest: \(nic\|eth0\|echo\)" "$console" || true
check "the guest set its address" console_has "$console" 1 "vmhost-guest: eth0 address $GUEST_IP/24$"
check "one more tap in the namespace" test "$(tap_count)" -eq $((taps_before + 1))
taps_on "$BR"
check "the tap is a port of $BR" test "$(taps_on "$BR" | wc -l)" -eq 1

pinged() { busybox ping -c 1 -W 1 "$GUEST_IP" >/dev/null 2>&1; }
check "the host pings the guest" wait_for 30 pinged
busybox ping -c 3 -W 1 "$GUEST_IP" | tail -n 2 || true
echoed() { [ "$(tcp_echo "$GUEST_IP" "$PORT" "hello-$vm")" = "hello-$vm" ]; }
check "the guest echoes the host's TCP message" wait_for 30 echoed

status=$(status_mac aio "$vm")
seen=$(guest_mac "$console" eth0)
echo "status.interfaces[0].mac=$status guest eth0=$seen"
check "status.interfaces[0].mac is set" test -n "$status"
check "the guest's MAC is the one in the VM's status" test "$seen" = "$status"
check "vmctl shows the same MAC" sh -c "HOME='$WORK' '$VMCTL_BIN' --server '$API_aio' get vm $vm -o json | grep -q '\"mac\": \"$status\"'"
neigh=$(ip neigh show "$GUEST_IP" dev "$BR" | sed -n 's/.* lladdr \([0-9a-f:]*\).*/\1/p')
check "the host's neighbour entry for the guest has that MAC ($neigh)" test "$neigh" = "$status"

check "vmctl delete" vmctl aio delete "$vm"
no_qemu() { [ -z "$(embed_qemu_pids "$EMBED")" ]; }
check "no QEMU after delete" wait_for 60 no_qemu
taps_gone() { [ "$(tap_count)" -eq "$taps_before" ]; }
check "the tap is gone after delete" wait_for 30 taps_gone
finish
