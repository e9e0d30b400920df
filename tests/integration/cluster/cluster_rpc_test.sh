#!/usr/bin/env bash
# The cluster over Cap'n Proto RPC, with processes on loopback and libvirt's
# test driver: `vmhost controller` and two `vmhost node`s. VMs are pushed to
# the node they are bound to and run there; status comes back; refusals
# (wrong token, other protocol version, a name already connected, an
# oversized node object, an oversized or malformed message) change nothing
# and leave the controller serving; a killed node goes NotReady after the
# heartbeat timeout and Ready again when it comes back; a restarted
# controller gets its nodes back and loses nothing.
# usage: cluster_rpc_test.sh BUILD_DIR SOURCE_DIR
BUILD=$1
SRC=$2
. "$SRC/tests/lib/harness.sh"
PROBE="$BUILD/bin/vmhost-rpc-probe"
TOKEN=0123456789abcdef-test-token

API_PORT=$(free_port)
JOIN_PORT=$(free_port)
cat >"$WORK/controller.yaml" <<YAML
cluster: {insecure: true, joinToken: "$TOKEN", heartbeatTimeoutSeconds: 3}
plugins:
  scheduler: {name: default}
YAML
node_config() {
  cat >"$WORK/$1.yaml" <<YAML
libvirt: {uri: "test:///default"}
node: {heartbeatSeconds: 1, labels: {rack: "$2"}}
cluster: {insecure: true, joinTokenFile: "$WORK/token"}
plugins:
  storage: {name: local, config: {pool: $WORK/$1/pool}}
YAML
}
echo "$TOKEN" >"$WORK/token"
node_config node-a r1
node_config node-b r2

start_controller ctl "$WORK/controller.yaml" --listen "127.0.0.1:$API_PORT" \
  --cluster-listen "127.0.0.1:$JOIN_PORT"
JOIN="127.0.0.1:$JOIN_PORT"
start_node node-a "$WORK/node-a.yaml" "$JOIN"
start_node node-b "$WORK/node-b.yaml" "$JOIN"
node_status() { vmctl ctl get node "$1" 2>/dev/null | awk 'NR == 2 { print $2 }'; }
ready() { [ "$(node_status "$1")" = Ready ]; }
check "node-a joins and is Ready" wait_for 20 ready node-a
check "node-b joins and is Ready" wait_for 20 ready node-b
check "the controller logged the joins" grep -q "node node-a joined from 127.0.0.1:" "$WORK/ctl.log"
check "node labels came with the join" \
  test "$(kctl ctl get nodes node-b -o jsonpath='{.metadata.labels.rack}')" = r2

vm() {  # NAME [SPEC LINES]
  cat >"$WORK/$1.yaml" <<YAML
apiVersion: vmhost.io/v1
kind: VirtualMachine
metadata: {name: $1}
spec:
  memory: 64Mi
  disks: [{name: scratch}]
  volumes: [{name: scratch, empty: {size: 16Mi}}]
  interfaces: [{name: net0, network: default}]
${2:-}
YAML
  vmctl ctl apply -f "$WORK/$1.yaml" >/dev/null
}
for i in 1 2 3 4; do vm "vm$i"; done
vm pinned "  nodeSelector: {rack: r2}"
all_running() {
  [ "$(vmctl ctl get 2>/dev/null | awk 'NR > 1 && $2 == "Running"' | wc -l)" -eq 5 ]
}
check "5 VMs reach Running on the nodes" wait_for 30 all_running
vmctl ctl get
on() { vmctl ctl get 2>/dev/null | awk -v n="$1" 'NR > 1 && $3 == n' | wc -l; }
check "the default scheduler spreads them (3/2 with the pinned one)" \
  sh -c "[ $(on node-a) -ge 2 ] && [ $(on node-b) -ge 2 ]"
check "the nodeSelector VM runs on node-b" \
  test "$(kctl ctl get virtualmachines pinned -o jsonpath='{.status.nodeName}')" = node-b
check "each node made the disks of its own VMs" \
  test -e "$WORK/node-b/pool/vms/default/pinned/scratch.qcow2"
check "status came back over RPC: a MAC per interface" \
  test -n "$(kctl ctl get virtualmachines vm1 -o jsonpath='{.status.interfaces[0].mac}')"
check "vmctl stop through the controller" vmctl ctl stop vm1
check "vm1 reaches Stopped" wait_phase ctl vm1 Stopped 20
check "vmctl delete" vmctl ctl delete vm2
gone() { ! vmctl ctl get vm vm2 >/dev/null 2>&1; }
check "vm2 is gone" wait_for 20 gone
vm2_node=$(grep -l "vm2" "$WORK"/node-*/pool/vms/default -r 2>/dev/null | head -n 1 || true)
no_vm2_disk() { [ -z "$(find "$WORK"/node-*/pool/vms/default -maxdepth 1 -name vm2 2>/dev/null)" ]; }
check "its node released its disk" wait_for 20 no_vm2_disk

# ---- refusals: each is logged by the controller and changes nothing
nodes_before=$(vmctl ctl get node | wc -l)
out=$("$PROBE" "$JOIN" join intruder wrong-token-0123456789 || true)
echo "  wrong token: $out"
check "a wrong join token is refused" grep -q "refused: .*wrong join token" <<<"$out"
check "the controller logged the refusal" grep -q "refused a node join from 127.0.0.1:.*wrong join token" "$WORK/ctl.log"
out=$("$PROBE" "$JOIN" join intruder "$TOKEN" 99 || true)
echo "  protocol 99: $out"
check "another protocol version is refused, naming both" \
  grep -q "protocol version 99 is not supported (this controller speaks version 1)" <<<"$out"
out=$("$PROBE" "$JOIN" join node-a "$TOKEN" || true)
echo "  name of a connected node: $out"
check "a node claiming a connected node's name is refused" grep -q "node node-a is already connected" <<<"$out"
out=$("$PROBE" "$JOIN" oversized intruder "$TOKEN" || true)
echo "  oversized node object: $out"
check "an oversized node object is refused" grep -q "refused: .*node object too large" <<<"$out"
out=$("$PROBE" "$JOIN" huge || true)
echo "  16 MiB message: $out"
check "a message over the reader's limit gets the connection closed" grep -q "^closed" <<<"$out"
out=$("$PROBE" "$JOIN" garbage || true)
echo "  malformed bytes: $out"
check "malformed bytes get the connection closed" grep -q "^closed" <<<"$out"
check "no node was added by any of them" test "$(vmctl ctl get node | wc -l)" -eq "$nodes_before"
check "the controller is still up" kill -0 "$PID_ctl"
check "node-a is still Ready" ready node-a
# A session that stopped heartbeating (half-open: its host lost power) is
# replaced by the node coming back; only then.
"$PROBE" "$JOIN" join ghost "$TOKEN" 1 20 >"$WORK/ghost1.out" 2>&1 &
GHOST=$!
EXTRA_CLEANUP="kill $GHOST 2>/dev/null || true"
wait_for 10 grep -q joined "$WORK/ghost1.out"
out=$("$PROBE" "$JOIN" join ghost "$TOKEN" || true)
check "a second ghost while the first is fresh is refused" grep -q "already connected" <<<"$out"
sleep 4  # > heartbeatTimeoutSeconds (3): the first session is silent
out=$("$PROBE" "$JOIN" join ghost "$TOKEN" || true)
echo "  ghost after its heartbeats stopped: $out"
check "the returning node replaces the silent session" test "$out" = joined
check "the controller logged the replacement" \
  grep -q "node ghost: a new session from .* replaces the silent one" "$WORK/ctl.log"
kill "$GHOST" 2>/dev/null || true
wait "$GHOST" 2>/dev/null || true

# ---- node health
stop_aio node-b KILL
not_ready() { [ "$(node_status node-b)" = NotReady ]; }
check "a killed node goes NotReady after the heartbeat timeout (3 s)" wait_for 15 not_ready
check "the reason is the missing heartbeats" \
  sh -c "$(printf '%q ' env HOME="$WORK" KUBECONFIG="$WORK/ctl.kubeconfig" kubectl get nodes node-b -o jsonpath='{.status.conditions[0].message}') | grep -q 'no heartbeat from the node'"
check "node-a stays Ready" ready node-a
start_node node-b "$WORK/node-b.yaml" "$JOIN"
check "node-b comes back Ready" wait_for 20 ready node-b
check "its VMs run again" wait_for 30 sh -c "[ \$(HOME=$WORK $VMCTL_BIN --server $API_ctl get | awk 'NR > 1 && \$2 == \"Running\"' | wc -l) -eq 3 ]"

# ---- controller restart: nothing lost, nothing duplicated
stop_aio ctl TERM
sleep 1
start_controller ctl "$WORK/controller.yaml" --listen "127.0.0.1:$API_PORT" \
  --cluster-listen "127.0.0.1:$JOIN_PORT"
rejoined() { [ "$(grep -c 'node node-a joined' "$WORK/ctl.log")" -ge 2 ]; }
check "node-a rejoins the restarted controller" wait_for 30 rejoined
check "node-a is Ready" wait_for 10 ready node-a
check "the same 4 VMs are there" test "$(vmctl ctl get | awk 'NR > 1' | wc -l)" -eq 4
vm vm5
check "a VM created after the restart runs" wait_phase ctl vm5 Running 30
check "vm1 is still Stopped" test "$(phase ctl vm1)" = Stopped
finish
