#!/usr/bin/env bash
# Cordon, uncordon and drain on a cluster of processes on loopback:
# `vmhost controller` and two `vmhost node`s on libvirt's test driver.
# Cordon keeps new VMs off a node; a drain stops the drained node's
# evictionStrategy None VMs (runStrategy Halted, unbound) and moves its
# Restart VMs (and a LiveMigrate VM that is not running) to the other node,
# never running one on both: a watch of every VM change during the drain
# shows each moved VM stopped on node-a (acknowledged) and unbound before
# node-b has it. Running LiveMigrate VMs get a VirtualMachineMigration each
# (<vm>-drain-<node>), paced by the migration controller's limits (1 per
# node here); a failed one is shown; uncordon withdraws those not started
# and leaves the one preparing its target to finish; vmctl migrate --cancel
# then cancels that one. (The test driver cannot migrate: node-b is frozen
# with SIGSTOP so that a migration stays PreparingTarget.)
# usage: drain_test.sh BUILD_DIR SOURCE_DIR
BUILD=$1
SRC=$2
. "$SRC/tests/lib/harness.sh"
require_tools curl:curl
TOKEN=0123456789abcdef-test-token

cat >"$WORK/controller.yaml" <<YAML
# A node frozen for the LiveMigrate part (below) stays Ready meanwhile.
cluster: {insecure: true, joinToken: "$TOKEN", heartbeatTimeoutSeconds: 60}
migrations: {parallelOutboundMigrationsPerNode: 1}
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
vm lmoff LiveMigrate
for v in r1 r2 n1 lmoff; do check "$v runs" wait_phase ctl "$v" Running 30; done
for v in r1 r2 n1 lmoff; do check "$v is on node-a" test "$(node_of "$v")" = node-a; done
# A LiveMigrate VM that is not running has nothing to move live: evicted as
# with Restart (stopped already, unbound, and as Halted it stays stopped).
check "vmctl stop lmoff" vmctl ctl stop lmoff
check "lmoff is Stopped" wait_phase ctl lmoff Stopped 30
check "lmoff stays bound to node-a" test "$(node_of lmoff)" = node-a
vmctl ctl uncordon node-b >/dev/null

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
check "and how many are left" grep -q "^node/node-a: 4 VMs left, 0 migrating, 0 waiting to migrate$" <<<"$out"
check "the stopped LiveMigrate VM is evicted, not migrated" grep -q "evicting default/lmoff (evictionStrategy LiveMigrate): stop" <<<"$out"
check "evicted default/lmoff" grep -q "^evicted default/lmoff$" <<<"$out"
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
check "lmoff is unbound" test -z "$(node_of lmoff)"
check "lmoff is Stopped" wait_phase ctl lmoff Stopped 30
check "no migration was made for lmoff" test -z "$(kctl ctl get virtualmachinemigrations -o name)"
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
# ---- LiveMigrate: migrations, paced, failures shown, withdrawn on uncordon
for v in r1 r2 n1 late lmoff; do vmctl ctl delete "$v" >/dev/null; done
vm_gone() { ! vmctl ctl get vm "$1" >/dev/null 2>&1; }
for v in r1 r2 n1 late lmoff; do check "$v deleted" wait_for 20 vm_gone "$v"; done
vmctl ctl uncordon node-a >/dev/null
vmctl ctl cordon node-b >/dev/null
vm lm1 LiveMigrate
vm lm2 LiveMigrate
for v in lm1 lm2; do check "$v runs" wait_phase ctl "$v" Running 30; done
for v in lm1 lm2; do check "$v is on node-a" test "$(node_of "$v")" = node-a; done
mfield() { kctl ctl get virtualmachinemigrations "$1" -o jsonpath="$2" 2>/dev/null; }
# node-b still cordoned: no node can take them, the migrations fail.
set +e
out=$(vmctl ctl drain node-a --timeout=8s 2>&1)
rc=$?
set -e
echo "$out"
check "the drain cannot finish (exit 1 at the timeout)" test "$rc" -eq 1
for v in lm1 lm2; do
  check "$v got its migration ($v-drain-node-a)" test "$(mfield "$v-drain-node-a" '{.spec.vmName}')" = "$v"
  check "labelled with the drained node" \
    test "$(mfield "$v-drain-node-a" '{.metadata.labels.vmhost\.io/drain-node}')" = node-a
  check "$v's migration failed (no node fits)" test "$(mfield "$v-drain-node-a" '{.status.phase}')" = Failed
  check "vmctl drain shows it, and the retry" grep -q \
    "migrating default/$v (evictionStrategy LiveMigrate): $v-drain-node-a Failed (SchedulingFailed: .*); the controller tries again" \
    <<<"$out"
  check "$v still runs on node-a, never asked to stop" test \
    "$(phase ctl "$v")/$(node_of "$v")/$(field "$v" '{.status.conditions[?(@.type=="Evicting")].status}')" = Running/node-a/
done
check "kubectl get vmim -l vmhost.io/drain-node=node-a" test \
  "$(kctl ctl get virtualmachinemigrations -l vmhost.io/drain-node=node-a -o name | wc -l)" -eq 2
check "the controller logged the migrations" grep -q "vm default/lm1: live-migrating it off node node-a (VirtualMachineMigration lm1-drain-node-a" "$WORK/ctl.log"
out=$(vmctl ctl uncordon node-a)
check "uncordon with only finished migrations: nothing to withdraw" test "$out" = "node/node-a uncordoned"

# node-b schedulable but frozen: a target that never prepares. With one
# migration per node at a time, one prepares (forever) and one waits.
vmctl ctl uncordon node-b >/dev/null
kill -STOP "$PID_node_b"
EXTRA_CLEANUP="kill -CONT $PID_node_b"
set +e
out=$(vmctl ctl drain node-a --timeout=8s 2>&1)
rc=$?
set -e
echo "$out"
check "the drain waits (exit 1 at the timeout)" test "$rc" -eq 1
phase_of() { mfield "$1-drain-node-a" '{.status.phase}'; }
preparing=""; waiting=""
for v in lm1 lm2; do
  case "$(phase_of "$v")" in
    PreparingTarget) preparing=$v ;;
    Pending) waiting=$v ;;
  esac
done
check "one migration prepares its target (the earlier drain's were replaced)" test -n "$preparing"
check "the other waits for it (Pending)" test -n "$waiting"
check "waiting with the reason NodeLimit" test "$(mfield "$waiting-drain-node-a" '{.status.reason}')" = NodeLimit
check "a new attempt for the new drain" test "$(mfield "$waiting-drain-node-a" '{.metadata.annotations.vmhost\.io/drain-attempt}')" = 1
check "vmctl drain showed the one preparing" grep -q \
  "migrating default/$preparing (evictionStrategy LiveMigrate): $preparing-drain-node-a PreparingTarget to node node-b" <<<"$out"
check "and the one waiting" grep -q \
  "migrating default/$waiting (evictionStrategy LiveMigrate): $waiting-drain-node-a Pending (NodeLimit: waiting: 1 migrations are running from node node-a (limit 1))" <<<"$out"
check "and the counts" grep -q "^node/node-a: 2 VMs left, 1 migrating, 1 waiting to migrate$" <<<"$out"
out=$(vmctl ctl uncordon node-a)
echo "$out"
check "uncordon says which migration is withdrawn" grep -q \
  "^virtualmachinemigration.vmhost.io/$waiting-drain-node-a (VM default/$waiting) has not started (Pending): withdrawn by the controller$" <<<"$out"
check "and which is left to finish" grep -q \
  "^virtualmachinemigration.vmhost.io/$preparing-drain-node-a (VM default/$preparing) is PreparingTarget to node node-b: left to finish" <<<"$out"
gone() { ! kctl ctl get virtualmachinemigrations "$1" >/dev/null 2>&1; }
check "the one not started is withdrawn (gone)" wait_for 15 gone "$waiting-drain-node-a"
sleep 2
check "the one preparing is left alone" test \
  "$(phase_of "$preparing")/$(mfield "$preparing-drain-node-a" '{.metadata.deletionTimestamp}')" = PreparingTarget/
check "the controller logged the withdrawal" grep -q \
  "node node-a is no longer drained: migration default/$waiting-drain-node-a (Pending) withdrawn" "$WORK/ctl.log"

# vmctl migrate --cancel of the one in flight, waiting for the outcome.
set +e
out=$(vmctl ctl migrate "$preparing" --cancel --wait 2>&1)
rc=$?
set -e
echo "$out"
check "vmctl migrate --cancel --wait succeeds" test "$rc" -eq 0
check "it says it is cancelling the one in flight" grep -q \
  "^virtualmachinemigration.vmhost.io/$preparing-drain-node-a cancelling (PreparingTarget from node node-a to node node-b" <<<"$out"
check "it waited for the end" grep -Eq \
  "^virtualmachinemigration.vmhost.io/$preparing-drain-node-a cancelled(: Failed \(Cancelled| \(deleted\))" <<<"$out"
no_note() { ! grep -q '^note:' <<<"$out"; }
check "no note about the drain: it is withdrawn" no_note
check "the VM's record says Cancelled" test "$(field "$preparing" '{.status.migration.reason}')" = Cancelled
kill -CONT "$PID_node_b"
EXTRA_CLEANUP=""
for v in lm1 lm2; do
  check "$v still runs on node-a" test "$(phase ctl "$v")/$(node_of "$v")" = Running/node-a
done
check "nothing left to cancel" sh -c "! HOME=$WORK $VMCTL_BIN --server $API_ctl migrate $preparing --cancel >/dev/null 2>&1"
finish
