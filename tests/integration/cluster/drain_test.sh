#!/usr/bin/env bash
# Cordon, uncordon and drain on a cluster of processes on loopback:
# `vmhost controller` and two `vmhost node`s on libvirt's test driver.
# Cordon keeps new VMs off a node; a drain refuses LiveMigrate VMs up front
# (changing nothing), then stops the drained node's evictionStrategy None
# VMs (runStrategy Halted, unbound) and moves its Restart VMs to the other
# node, never running one on both: a watch of every VM change during the
# drain shows each moved VM stopped on node-a (acknowledged) and unbound
# before node-b has it.
# usage: drain_test.sh BUILD_DIR SOURCE_DIR
BUILD=$1
SRC=$2
. "$SRC/tests/lib/harness.sh"
require_tools curl:curl
TOKEN=0123456789abcdef-test-token

cat >"$WORK/controller.yaml" <<YAML
cluster: {insecure: true, joinToken: "$TOKEN", heartbeatTimeoutSeconds: 10}
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
start_controller ctl "$WORK/controller.yaml"
start_node node-a "$WORK/node-a.yaml" "$JOIN_ctl"
start_node node-b "$WORK/node-b.yaml" "$JOIN_ctl"
node_status() { vmctl ctl get node "$1" 2>/dev/null | awk 'NR == 2 { print $2 }'; }
ready() { [ "$(node_status "$1")" = Ready ]; }
check "node-a joins and is Ready" wait_for 20 ready node-a
check "node-b joins and is Ready" wait_for 20 ready node-b

vm() {  # NAME EVICTION_STRATEGY
  cat >"$WORK/$1.yaml" <<YAML
apiVersion: vmhost.io/v1
kind: VirtualMachine
metadata: {name: $1}
spec:
  memory: 64Mi
  evictionStrategy: $2
  disks: [{name: scratch}]
  volumes: [{name: scratch, empty: {size: 16Mi}}]
YAML
  vmctl ctl apply -f "$WORK/$1.yaml" >/dev/null
}
node_of() { kctl ctl get virtualmachines "$1" -o jsonpath='{.status.nodeName}'; }
field() { kctl ctl get virtualmachines "$1" -o jsonpath="$2"; }

# ---- cordon / uncordon
out=$(vmctl ctl cordon node-a)
check "vmctl cordon says so" test "$out" = "node/node-a cordoned"
check "a cordoned node shows Ready,SchedulingDisabled" \
  test "$(node_status node-a)" = "Ready,SchedulingDisabled"
check "spec.unschedulable is set" \
  test "$(kctl ctl get nodes node-a -o jsonpath='{.spec.unschedulable}')" = true
vm c1 None
vm c2 None
check "c1 runs" wait_phase ctl c1 Running 30
check "c2 runs" wait_phase ctl c2 Running 30
check "new VMs land on the other node (c1)" test "$(node_of c1)" = node-b
check "new VMs land on the other node (c2)" test "$(node_of c2)" = node-b
check "vmctl uncordon" vmctl ctl uncordon node-a
check "node-a is schedulable again" test "$(node_status node-a)" = Ready
vmctl ctl delete c1 >/dev/null
vmctl ctl delete c2 >/dev/null

# ---- the VMs to drain, all on node-a (node-b cordoned meanwhile)
vmctl ctl cordon node-b >/dev/null
vm r1 Restart
vm r2 Restart
vm n1 None
vm lm1 LiveMigrate
for v in r1 r2 n1 lm1; do check "$v runs" wait_phase ctl "$v" Running 30; done
for v in r1 r2 n1 lm1; do check "$v is on node-a" test "$(node_of "$v")" = node-a; done
vmctl ctl uncordon node-b >/dev/null

# ---- LiveMigrate: refused, naming the VM, nothing changed
set +e
out=$(vmctl ctl drain node-a --timeout=30s 2>&1)
rc=$?
set -e
echo "$out"
check "a drain with a LiveMigrate VM fails" test "$rc" -ne 0
check "the refusal names the VM and the way out" grep -q \
  "VM default/lm1: evictionStrategy LiveMigrate needs live migration, which this version does not have; set Restart or None" \
  <<<"$out"
check "it says nothing was changed" grep -q "drain of node node-a refused; nothing was changed" <<<"$out"
check "node-a was not cordoned" test "$(node_status node-a)" = Ready
for v in r1 r2 n1; do check "$v still runs on node-a" test "$(phase ctl "$v")/$(node_of "$v")" = Running/node-a; done
# The controller holds the same line when the drain is asked for without
# vmctl (the annotation set by hand): no eviction starts on the node, and the
# LiveMigrate VM says why; uncordoning withdraws it all.
kctl ctl patch node node-a --type merge \
  -p '{"spec":{"unschedulable":true},"metadata":{"annotations":{"vmhost.io/drain":"by-hand"}}}' >/dev/null
refused() {
  [ "$(field lm1 '{.status.conditions[?(@.type=="Evicting")].reason}')" = LiveMigrationUnsupported ]
}
check "the controller refuses the LiveMigrate VM (its Evicting condition)" wait_for 15 refused
check "the condition's message names the VM" grep -q "VM default/lm1: evictionStrategy LiveMigrate needs live migration" \
  <<<"$(field lm1 '{.status.conditions[?(@.type=="Evicting")].message}')"
check "the controller logged the refusal" grep -q "node node-a cannot be drained: VM default/lm1" "$WORK/ctl.log"
sleep 2
for v in r1 r2 n1; do
  check "$v was not touched (Running on node-a, no eviction)" test \
    "$(phase ctl "$v")/$(node_of "$v")/$(field "$v" '{.status.conditions[?(@.type=="Evicting")].status}')" = Running/node-a/
done
vmctl ctl uncordon node-a >/dev/null
unrefused() { [ -z "$(field lm1 '{.status.conditions[?(@.type=="Evicting")].reason}')" ]; }
check "uncordoning withdraws the refusal" wait_for 15 unrefused
vmctl ctl delete lm1 >/dev/null
gone() { ! vmctl ctl get vm lm1 >/dev/null 2>&1; }
check "lm1 is gone" wait_for 20 gone

# ---- drain: a watch records every VM change while it runs
curl -sN "$API_ctl/apis/vmhost.io/v1/namespaces/default/virtualmachines?watch=true" \
  >"$WORK/watch.jsonl" 2>/dev/null &
WATCH_PID=$!
EXTRA_CLEANUP="kill $WATCH_PID"
sleep 1
set +e
out=$(vmctl ctl drain node-a --timeout=60s 2>&1)
rc=$?
set -e
echo "$out"
check "vmctl drain succeeds" test "$rc" -eq 0
check "it cordons first" grep -q "^node/node-a cordoned" <<<"$out"
check "it prints progress per VM" grep -q "evicting default/r1 (evictionStrategy Restart)" <<<"$out"
check "it ends drained" grep -q "^node/node-a drained$" <<<"$out"
check "node-a is cordoned" test "$(node_status node-a)" = "Ready,SchedulingDisabled"
for v in r1 r2; do
  check "$v (Restart) runs on node-b" wait_for 30 sh -c \
    "[ \"\$(HOME=$WORK $VMCTL_BIN --server $API_ctl get vm $v | awk 'NR == 2 { print \$2 \"/\" \$3 }')\" = Running/node-b ]"
done
check "n1 (None) is Stopped" test "$(phase ctl n1)" = Stopped
check "n1 is Halted" test "$(field n1 '{.spec.runStrategy}')" = Halted
check "n1 is bound to no node" test -z "$(node_of n1)"
check "n1 says why" grep -q "stopped by the drain of node node-a" <<<"$(field n1 '{.status.conditions}')"
for v in r1 r2 n1; do
  check "node-a stopped $v for the eviction (its log)" \
    grep -q "node node-a: vm default/$v: the domain is stopped for the eviction" "$WORK/node-a.log"
  undefined() { [ ! -e "$WORK/node-a/node/vms/default_$1.json" ]; }
  check "node-a cleaned $v up (no local state left)" wait_for 20 undefined "$v"
done
check "the controller logged the moves" grep -q "vm default/r1: stopped on node node-a, unbound for a new placement" "$WORK/ctl.log"
sleep 1
kill "$WATCH_PID" 2>/dev/null || true
EXTRA_CLEANUP=""
# Each moved VM: node-a acknowledged the stop, then it was unbound, and only
# then bound to node-b; node-a never reported it again after the unbind.
check "never on two nodes at once (the watch shows stop, unbind, then re-place)" python3 - "$WORK/watch.jsonl" <<'PY'
import json, sys
events = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    e = json.loads(line)
    o = e["object"]
    st = o.get("status", {})
    ready = next((c for c in st.get("conditions", []) if c["type"] == "Ready"), {})
    events.setdefault(o["metadata"]["name"], []).append(
        (st.get("nodeName", ""), st.get("phase", ""), ready.get("reason", "")))
ok = True
for vm in ("r1", "r2"):
    seq = events.get(vm, [])
    first_b = next((i for i, s in enumerate(seq) if s[0] == "node-b"), None)
    if first_b is None:
        print(vm, "never reached node-b:", seq); ok = False; continue
    unbound = [i for i in range(first_b) if seq[i][0] == ""]
    acked = [i for i in range(first_b) if seq[i] == ("node-a", "Stopped", "Evicted")]
    if not unbound or not acked or acked[-1] > unbound[-1]:
        print(vm, "was not stopped and unbound before node-b got it:", seq); ok = False
    if any(s[0] == "node-a" for s in seq[first_b:]):
        print(vm, "went back to node-a:", seq); ok = False
sys.exit(0 if ok else 1)
PY

# ---- after the drain
vm late None
check "a new VM runs" wait_phase ctl late Running 30
check "and lands on node-b, not the drained node" test "$(node_of late)" = node-b
check "vmctl uncordon" vmctl ctl uncordon node-a
check "the drain request is gone with it" \
  test -z "$(kctl ctl get nodes node-a -o jsonpath='{.metadata.annotations.vmhost\.io/drain}')"
check "vmctl start brings n1 back" vmctl ctl start n1
check "n1 runs again" wait_phase ctl n1 Running 30
check "a drain of a missing node fails clearly" sh -c \
  "HOME=$WORK $VMCTL_BIN --server $API_ctl drain nosuch 2>&1 | grep -q 'node \"nosuch\" not found'"
finish
