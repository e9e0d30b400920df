#!/usr/bin/env bash
# vmhost as a cluster on the multi-host harness, with real QEMU (TCG): three
# hosts (network namespaces, each with its own libvirtd on qemu:///system)
# run `vmhost node`, the controller runs in the root namespace.
#   - 6 VMs: the default scheduler spreads them 2/2/2; the guests boot;
#   - a VM with a nodeSelector lands on its host;
#   - with `binpack` in the controller's config (a restart), new VMs pack
#     onto one host;
#   - kill -9 of a node agent: its guests keep running (same QEMU pids), and
#     the restarted agent re-adopts them without a restart (one boot each);
#   - a host cut off the network: NotReady within the heartbeat timeout while
#     its guests keep running, and none of its VMs starts anywhere else;
#     plugged back in: Ready;
#   - a controller restart: nothing lost, nothing duplicated.
# Not here yet: restarting a dead host's VMs elsewhere (issue 5, point 6).
# Usage: cluster_e2e_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=${1:?build dir}
SRC=${2:?source dir}
. "$SRC/tests/lib/harness.sh"
. "$SRC/tests/e2e/lib_qemu.sh"
. "$SRC/tests/cluster/lib_cluster.sh"
. "$SRC/tests/cluster/lib_cluster_vmhost.sh"

cluster_test_begin vmhost-cluster-e2e


cluster_up 3 || { echo "FAIL: the harness could not create 3 hosts"; exit 1; }
CONTROLLER="$CLUSTER_CONTROLLER_IP:$JOIN_PORT"

controller_config() {  # SCHEDULER
  cat >"$TDIR/controller.yaml" <<YAML
cluster: {insecure: true, joinTokenFile: "$TDIR/token", heartbeatTimeoutSeconds: 6}
plugins:
  scheduler: {name: $1, config: {cpuAllocationRatio: 10}}
YAML
}
controller_config default
start_controller ctl "$TDIR/controller.yaml" --listen "127.0.0.1:$API_PORT" \
  --cluster-listen "$CONTROLLER" --data-dir "$TDIR/ctl"

# Each host's node: config written by the hook, inside the host.
export VMHOST CONTROLLER TDIR
CLUSTER_NODE_CMD='cat >"$HOST_DIR/node.yaml" <<YAML
libvirt: {uri: "$LIBVIRT_URI"}
node: {heartbeatSeconds: 1, resyncSeconds: 5, stopGracePeriodSeconds: 10, labels: {host: "$HOST_NAME"},
       libvirtEndpoint: "$LIBVIRT_TCP_URI"}
cluster: {insecure: true, controller: "$CONTROLLER", joinTokenFile: "$TDIR/token"}
plugins: {storage: {name: local, config: {pool: $HOST_DIR/pool}}}
YAML
exec "$VMHOST" node --config "$HOST_DIR/node.yaml" --data-dir "$HOST_DIR/vmhost" --node-name "$HOST_NAME"'
export CLUSTER_NODE_CMD
for h in host1 host2 host3; do cluster_start_node "$h"; done

node_status() { vmctl ctl get node "$1" 2>/dev/null | awk 'NR == 2 { print $2 }'; }
ready() { [ "$(node_status "$1")" = Ready ]; }
for h in host1 host2 host3; do check "$h's node joins and is Ready" wait_for 120 ready "$h"; done
check "host2 registered its libvirt endpoint" \
  test "$(kctl ctl get nodes host2 -o jsonpath='{.metadata.annotations.vmhost\.io/libvirt-endpoint}')" = \
  "qemu+tcp://$(cluster_host_ip host2)/system"

guest_vm() {  # NAME [EXTRA SPEC]
  write_guest_vm "$TDIR/$1.yaml" "$1" 96Mi "${2:-}"
  vmctl ctl apply -f "$TDIR/$1.yaml" >/dev/null
}
for i in 1 2 3 4 5 6; do guest_vm "vm$i"; done
running_count() { vmctl ctl get 2>/dev/null | awk 'NR > 1 && $2 == "Running"' | wc -l; }
six_running() { [ "$(running_count)" -ge 6 ]; }
# The first start on each host waits for libvirtd's QEMU probe.
check "6 VMs reach Running" wait_for 300 six_running
vmctl ctl get
on() { vmctl ctl get 2>/dev/null | awk -v n="$1" 'NR > 1 && $3 == n' | wc -l; }
check "the default scheduler spreads them 2/2/2" \
  test "$(on host1)/$(on host2)/$(on host3)" = "2/2/2"
# The guests' consoles (the node asks QEMU to log the serial port).
console_of() {  # VM -> its console log on its host
  local node
  node=$(kctl ctl get virtualmachines "$1" -o jsonpath='{.status.nodeName}')
  echo "$CLUSTER_DIR/$node/vmhost/node/console/default_$1.log"
}
booted_all() {
  local i
  for i in 1 2 3 4 5 6; do grep -q "vmhost-guest: booted" "$(console_of "vm$i")" 2>/dev/null || return 1; done
}
check "every guest booted (console)" wait_for 180 booted_all
qemu_on() {  # HOST -> "vm pid" lines of the QEMU processes in that host
  local pid
  for pid in $(cluster_host_pids "$1"); do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -o 'guest=default_[a-z0-9-]*' |
      sed "s/guest=default_//; s/\$/ $pid/" || true
  done | sort
}
qemu_all() { for h in host1 host2 host3; do qemu_on "$h" | sed "s/^/$h /"; done; }
qemu_all >"$TDIR/qemu.before"
check "one QEMU per VM, on the VM's node" test "$(wc -l <"$TDIR/qemu.before")" -eq 6

guest_vm pinned "  nodeSelector: {host: host3}"
check "the nodeSelector VM runs on host3" wait_phase ctl pinned Running 120
check "...on host3" test "$(kctl ctl get virtualmachines pinned -o jsonpath='{.status.nodeName}')" = host3
# Events cross from the node to the controller over RPC (NodeSession.recordEvent).
started_event() {
  kctl ctl get events --field-selector involvedObject.name=pinned,reason=Started -o wide 2>/dev/null |
    grep -q 'vmhost-node, host3'
}
check "host3's Started event for it, through the controller" wait_for 30 started_event
vmctl ctl delete pinned >/dev/null

# ---- kill -9 a node agent: guests keep running, re-adopted, not restarted
victim_vms=$(awk '$1 == "host1" { print $2 }' "$TDIR/qemu.before" | tr '\n' ' ')
agent_pid() { pgrep -f -- "vmhost node .*--data-dir $CLUSTER_DIR/$1/vmhost" || true; }
kill_agent() {  # HOST: SIGKILL its vmhost node and wait until it is gone
  local pid
  pid=$(agent_pid "$1")
  [ -n "$pid" ] || return 1
  kill -9 $pid
  wait_for 10 sh -c "! kill -0 $pid 2>/dev/null"
}
check "kill -9 host1's node agent" kill_agent host1
check "no node agent runs on host1" test -z "$(agent_pid host1)"
sleep 2
check "its guests keep running (same QEMU pids)" \
  test "$(qemu_on host1 | sed 's/^/host1 /')" = "$(grep '^host1 ' "$TDIR/qemu.before")"
cluster_start_node host1
check "host1's node is back" wait_for 60 ready host1
sleep 6  # a resync pass (resyncSeconds 5) has looked at every VM
check "after the restart: the same QEMU processes everywhere" \
  test "$(qemu_all)" = "$(cat "$TDIR/qemu.before")"
one_boot() {
  local vm
  for vm in $victim_vms; do [ "$(grep -c 'vmhost-guest: booted' "$(console_of "$vm")")" -eq 1 ] || return 1; done
}
check "host1's guests booted once (re-adopted, not restarted)" one_boot
check "all 6 still Running" test "$(running_count)" -eq 6

# ---- cut host3 off: NotReady, guests keep running, nothing starts twice
cluster_cut host3
not_ready() { [ "$(node_status host3)" = NotReady ]; }
check "host3 cut off: NotReady within the timeout (6 s)" wait_for 30 not_ready
sleep 5
check "its guests keep running on host3" \
  test "$(qemu_on host3 | sed 's/^/host3 /')" = "$(grep '^host3 ' "$TDIR/qemu.before")"
check "no VM of host3 started anywhere else" \
  test "$(qemu_all | wc -l)" -eq 6
cluster_restore host3
check "host3 plugged back in: Ready" wait_for 60 ready host3

# ---- host3's agent dies while its link is down (the controller cannot see
# the connection close until packets flow again); the restarted agent
# rejoins (replacing the silent session if it is still there) and re-adopts
# its guests.
cluster_cut host3
check "host3 cut off again: NotReady" wait_for 30 not_ready
check "kill -9 host3's node agent while cut off" kill_agent host3
cluster_restore host3
cluster_start_node host3
check "the restarted agent rejoins: Ready" wait_for 60 ready host3
sleep 6
check "host3's guests were re-adopted, not restarted (same QEMU pids)" \
  test "$(qemu_on host3 | sed 's/^/host3 /')" = "$(grep '^host3 ' "$TDIR/qemu.before")"

# ---- binpack (controller restart with another scheduler)
stop_aio ctl TERM
controller_config binpack
start_controller ctl "$TDIR/controller.yaml" --listen "127.0.0.1:$API_PORT" \
  --cluster-listen "$CONTROLLER" --data-dir "$TDIR/ctl"
for h in host1 host2 host3; do check "$h rejoins the restarted controller" wait_for 60 ready "$h"; done
check "after the controller restart: the same 6 VMs" test "$(vmctl ctl get | awk 'NR > 1' | wc -l)" -eq 6
check "...with the same QEMU processes (nothing lost, nothing duplicated)" \
  test "$(qemu_all)" = "$(cat "$TDIR/qemu.before")"
# Make room, then 4 new VMs: binpack puts them all on one host.
for i in 1 2 3 4 5 6; do vmctl ctl delete "vm$i" >/dev/null; done
no_guests() { [ -z "$(qemu_all)" ]; }
check "deleted VMs leave no QEMU on any host" wait_for 120 no_guests
for i in 1 2 3 4; do guest_vm "pack$i"; done
four_running() { [ "$(running_count)" -ge 4 ]; }
check "the 4 new VMs run" wait_for 180 four_running
packed=$(kctl ctl get virtualmachines -o jsonpath='{range .items[*]}{.status.nodeName}{"\n"}{end}' | sort -u)
echo "  binpack placed pack1..4 on: $(echo $packed)"
check "binpack packs them onto one host" test "$(wc -l <<<"$packed")" -eq 1
check "their QEMU processes are all on that host" \
  test "$(qemu_all | awk '{ print $1 }' | sort -u)" = "$packed"
finish
