#!/usr/bin/env bash
# Dead-host recovery on the multi-host harness with real QEMU (TCG): two
# hosts with storage `shared-dir` on a directory both see, and libvirt's lock
# manager (virtlockd, disk leases in a lockspace on that directory).
#   - host2 runs `moveme` (a persistent disk on the shared storage) and
#     `held` (a hostPath disk: local to host2);
#   - host2 is cut off the network while its guests keep running: NotReady,
#     then lost after the grace period: `moveme` is placed on host1, but
#     host1's QEMU cannot lock the disk host2's QEMU still holds (QEMU's
#     image lock fires at open; virtlockd's lease, held by host2 in the
#     shared lockspace, would be checked when the CPUs start), so it does
#     not run twice (its Ready condition carries the lock error);
#     `held` gets Recovery=False (LocalDisks) and stays bound to host2;
#   - host2 dies (everything in it killed): the lease is free and `moveme`
#     boots on host1, on the same disk.
# Usage: cluster_recovery_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=${1:?build dir}
SRC=${2:?source dir}
. "$SRC/tests/lib/harness.sh"
. "$SRC/tests/e2e/lib_qemu.sh"
. "$SRC/tests/cluster/lib_cluster.sh"
. "$SRC/tests/cluster/lib_cluster_vmhost.sh"

cluster_test_begin vmhost-cluster-recovery
SHARED="$TDIR/shared"
CLUSTER_LOCKSPACE="$SHARED/lockspace"
mkdir -p "$SHARED/volumes"

cluster_up 2 || { echo "FAIL: the harness could not create 2 hosts"; exit 1; }
CONTROLLER="$CLUSTER_CONTROLLER_IP:$JOIN_PORT"
cat >"$TDIR/controller.yaml" <<YAML
cluster: {insecure: true, joinTokenFile: "$TDIR/token", heartbeatTimeoutSeconds: 4, deadNodeGracePeriodSeconds: 6}
plugins:
  scheduler: {name: default, config: {cpuAllocationRatio: 10}}
  storage: {name: shared-dir, config: {path: "$SHARED/volumes"}}
YAML
start_controller ctl "$TDIR/controller.yaml" --listen "127.0.0.1:$API_PORT" \
  --cluster-listen "$CONTROLLER" --data-dir "$TDIR/ctl"
export VMHOST CONTROLLER TDIR SHARED
CLUSTER_NODE_CMD='cat >"$HOST_DIR/node.yaml" <<YAML
libvirt: {uri: "$LIBVIRT_URI"}
node: {heartbeatSeconds: 1, resyncSeconds: 3, stopGracePeriodSeconds: 10}
cluster: {insecure: true, controller: "$CONTROLLER", joinTokenFile: "$TDIR/token"}
plugins: {storage: {name: shared-dir, config: {path: "$SHARED/volumes"}}}
YAML
exec "$VMHOST" node --config "$HOST_DIR/node.yaml" --data-dir "$HOST_DIR/vmhost" --node-name "$HOST_NAME"'
export CLUSTER_NODE_CMD
for h in host1 host2; do cluster_start_node "$h"; done
node_status() { vmctl ctl get node "$1" 2>/dev/null | awk 'NR == 2 { print $2 }'; }
ready() { [ "$(node_status "$1")" = Ready ]; }
for h in host1 host2; do check "$h's node joins" wait_for 120 ready "$h"; done

# Both VMs on host2: host1 is cordoned while they are placed.
check "cordon host1" vmctl ctl cordon host1
head -c $((8 << 20)) /dev/zero >"$CLUSTER_DIR/host2/local-disk.raw"
write_guest_vm "$TDIR/moveme.yaml" moveme 96Mi "  disks: [{name: data}]
  volumes: [{name: data, persistent: {claimName: moveme-data, size: 16Mi}}]"
write_guest_vm "$TDIR/held.yaml" held 96Mi "  disks: [{name: scratch}]
  volumes: [{name: scratch, hostPath: {path: $CLUSTER_DIR/host2/local-disk.raw}}]"
vmctl ctl apply -f "$TDIR/moveme.yaml" >/dev/null
vmctl ctl apply -f "$TDIR/held.yaml" >/dev/null
check "moveme runs" wait_phase ctl moveme Running 300
check "held runs" wait_phase ctl held Running 120
node_of() { kctl ctl get virtualmachines "$1" -o jsonpath='{.status.nodeName}'; }
check "both on host2" test "$(node_of moveme)/$(node_of held)" = host2/host2
check "uncordon host1" vmctl ctl uncordon host1
check "moveme's disk is on the shared storage" \
  test -e "$SHARED/volumes/persistent/default/moveme-data.qcow2"
qemu_of() {  # HOST VM -> pids of VM's QEMU in HOST
  local pid
  for pid in $(cluster_host_pids "$1"); do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "guest=default_$2," && echo "$pid"
  done
  return 0
}
check "a lease for moveme's disk is held in the lockspace" \
  sh -c "ls '$CLUSTER_LOCKSPACE' | grep -q ."
host2_moveme=$(qemu_of host2 moveme)
check "moveme's QEMU runs in host2" test -n "$host2_moveme"

# ---- host2 cut off: lost after the grace period, but no second copy
cluster_cut host2
not_ready() { [ "$(node_status host2)" = NotReady ]; }
check "host2 cut off: NotReady" wait_for 30 not_ready
placed_on_host1() { [ "$(node_of moveme)" = host1 ]; }
check "after the grace period moveme is placed on host1" wait_for 60 placed_on_host1
kctl ctl get virtualmachines moveme -o jsonpath='{.status.conditions[?(@.type=="Recovery")].message}'; echo
lock_refused() {
  kctl ctl get virtualmachines moveme -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}' |
    grep -qi 'lock'
}
check "host1 cannot start it while host2's QEMU holds the disk lock" wait_for 60 lock_refused
echo "  moveme on host1: $(kctl ctl get virtualmachines moveme -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}')"
sleep 4
check "no QEMU for moveme in host1 (it never ran twice)" test -z "$(qemu_of host1 moveme)"
check "host2's copy still runs, untouched" test "$(qemu_of host2 moveme)" = "$host2_moveme"
held_reason() {
  [ "$(kctl ctl get virtualmachines held -o jsonpath='{.status.conditions[?(@.type=="Recovery")].reason}')" = LocalDisks ]
}
check "held (a local disk) gets Recovery=False, LocalDisks" wait_for 20 held_reason
echo "  held: $(kctl ctl get virtualmachines held -o jsonpath='{.status.conditions[?(@.type=="Recovery")].message}')"
check "held stays bound to host2" test "$(node_of held)" = host2

# ---- host2 dies: the lease is released, moveme boots on host1
cluster_kill host2
check "moveme runs on host1 once host2 is dead" wait_phase ctl moveme Running 120
check "its QEMU is in host1" test -n "$(qemu_of host1 moveme)"
console="$CLUSTER_DIR/host1/vmhost/node/console/default_moveme.log"
check "the guest boots on host1" wait_for 120 grep -q "vmhost-guest: booted" "$console"
check "on the same disk (the shared volume)" \
  test -e "$SHARED/volumes/persistent/default/moveme-data.qcow2"
check "held is still bound to the dead host2" test "$(node_of held)" = host2
finish
