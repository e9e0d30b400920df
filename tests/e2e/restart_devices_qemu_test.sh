#!/usr/bin/env bash
# Restarting the node side (kill -9 of the all-in-one process) while VMs with
# disks and NICs run, in a private network namespace: N VMs (default 2), each
# with an ephemeral overlay, a persistent disk and a NIC on a bridge. Counted
# before and after: taps, pool files (by inode: none re-created), domains,
# domain definitions (by checksum), node state files, QEMU processes (by pid). After the restart: the same
# counts and pids, every VM Running with the same status MACs, no guest
# rebooted, every guest still answers a TCP echo through its NIC.
# usage: restart_devices_qemu_test.sh BUILD_DIR SOURCE_DIR [N]
[ -n "${VMHOST_TEST_NETNS:-}" ] ||
  VMHOST_TEST_NETNS=1 exec unshare --net --fork --kill-child=SIGTERM "$0" "$@"
BUILD=$1
SRC=$2
N=${3:-2}
. "$SRC/tests/lib/harness.sh"
. "$SRC/tests/e2e/lib_qemu.sh"
require_private_netns
EMBED="$WORK/libvirt"
EXTRA_CLEANUP='kill_embed_qemus "$EMBED"'
BR=vmhbr0
PORT=7777

make_test_bridge "$BR" 10.78.0.1/24
make_marked_image "$WORK/base.qcow2" qcow2 16M
write_embed_config "$WORK/config.yaml" "$EMBED" "{name: local, config: {pool: $WORK/pool}}" \
  "{name: bridge, config: {allowedBridges: [$BR]}}"
start_aio aio "$WORK/config.yaml" restart-node
for i in $(seq 1 "$N"); do
  write_guest_vm_args "$WORK/rd$i.yaml" "rd$i" 96Mi "vmhost.ip=10.78.0.$((10 + i))/24 vmhost.echo=$PORT" "  disks:
  - {name: scratch, bus: virtio}
  - {name: data, bus: virtio}
  volumes:
  - name: scratch
    ephemeral: {image: {path: $WORK/base.qcow2}}
  - name: data
    persistent: {claimName: rd$i-data, size: 16Mi}
  interfaces:
  - {name: net0, bridge: $BR}"
  cat "$WORK/rd$i.yaml"; echo "---"
done >"$WORK/all.yaml"
require "vmctl apply $N VMs" vmctl aio apply -f "$WORK/all.yaml"
running() { [ "$(vmctl aio get 2>/dev/null | grep -c ' Running ')" -eq "$N" ]; }
require "all $N reach Running" wait_for 300 running
booted_all() {
  local i
  for i in $(seq 1 "$N"); do
    grep -q "vmhost-guest: booted" "$WORK/aio/node/console/default_rd$i.log" 2>/dev/null || return 1
  done
}
check "every guest booted" wait_for 120 booted_all
echo_all() {
  local i
  for i in $(seq 1 "$N"); do
    [ "$(tcp_echo "10.78.0.$((10 + i))" "$PORT" "rd$i")" = "rd$i" ] || return 1
  done
}
check "every guest answers a TCP echo" wait_for 60 echo_all

# snapshot FILE: everything that must not change across the restart.
snapshot() {
  {
    echo "taps $(tap_count)"
    taps_on "$BR" | sort | sed 's/^/tap /'
    find "$WORK/pool" -type f -printf 'file %P inode %i\n' | sort
    echo "domains $(find "$EMBED/etc/qemu" -maxdepth 1 -name '*.xml' | wc -l)"
    # A redefinition would rewrite these (libvirt's persistent definitions).
    (cd "$EMBED/etc/qemu" && sha256sum ./*.xml) | sed 's/^/definition /'
    echo "state files $(find "$WORK/aio/node/vms" -type f | wc -l)"
    embed_qemu_pids "$EMBED" | sort | sed 's/^/qemu /'
    for i in $(seq 1 "$N"); do
      echo "rd$i mac $(status_mac aio "rd$i")"
      echo "rd$i boots $(grep -c 'vmhost-guest: booted' "$WORK/aio/node/console/default_rd$i.log")"
    done
  } >"$1"
}
snapshot "$WORK/before.txt"
cat "$WORK/before.txt"
check "$N taps, $N overlays, $N persistent disks, $N QEMUs before the restart" sh -c "
  grep -qx 'taps $N' '$WORK/before.txt' &&
  [ \$(grep -c '\.ephemeral\.qcow2 ' '$WORK/before.txt') -eq $N ] &&
  [ \$(grep -c '^file persistent/' '$WORK/before.txt') -eq $N ] &&
  [ \$(grep -c '^qemu ' '$WORK/before.txt') -eq $N ] &&
  ! grep -q 'mac \$' '$WORK/before.txt'"

stop_aio aio KILL
check "the guests survive the host's kill -9" test "$(embed_qemu_pids "$EMBED" | wc -l)" -eq "$N"
mv "$WORK/aio.log" "$WORK/aio-before-kill.log"
start_aio aio "$WORK/config.yaml" restart-node
check "all $N Running after the restart" wait_for 120 running
sleep 12  # two resync periods: let the agent act on everything it adopted
check "all $N still Running" running
snapshot "$WORK/after.txt"
check "the same taps, pool files (inodes), domains, state files, QEMU pids, MACs and boot counts" \
  cmp -s "$WORK/before.txt" "$WORK/after.txt"
diff "$WORK/before.txt" "$WORK/after.txt" || true
check "every guest still answers a TCP echo" wait_for 30 echo_all
ready_all() {
  local i
  for i in $(seq 1 "$N"); do
    [ "$(kctl aio get virtualmachines "rd$i" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] || return 1
  done
}
check "every VM's Ready condition is True" wait_for 30 ready_all
node_ready() {
  [ "$(kctl aio get nodes restart-node -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
check "the node is Ready again" wait_for 30 node_ready
check "no reconcile error after the restart" sh -c "! grep -q 'vm default/rd' '$WORK/aio.log'"

for i in $(seq 1 "$N"); do vmctl aio delete "rd$i" >/dev/null; done
no_qemu() { [ -z "$(embed_qemu_pids "$EMBED")" ]; }
check "every guest is gone after delete" wait_for 120 no_qemu
no_taps() { [ "$(tap_count)" -eq 0 ]; }
check "no tap left" wait_for 30 no_taps
no_overlays() { [ -z "$(find "$WORK/pool" -name '*.ephemeral.qcow2')" ]; }
check "no overlay left" wait_for 30 no_overlays
no_persistent() { [ -z "$(find "$WORK/pool" -path '*/persistent/*' -type f)" ]; }
check "no persistent disk left (reclaimPolicy Delete)" wait_for 30 no_persistent
finish
