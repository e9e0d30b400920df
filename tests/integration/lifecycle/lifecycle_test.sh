#!/usr/bin/env bash
# The VM lifecycle through the real binaries on libvirt's test driver:
# kubectl with the seed's manifest verbatim, vmctl apply/stop/start/wait/
# delete, scheduling by node name, and rejected input leaving nothing behind.
# usage: lifecycle_test.sh BUILD_DIR SOURCE_DIR
BUILD=$1
SRC=$2
. "$SRC/tests/lib/harness.sh"
require_tools curl:curl

seed="$SRC/tests/fixtures/seed-vm.yaml"
if [ -f "$SRC/../shared/seed-vm.yaml" ]; then
  check "the fixture is the seed manifest, byte for byte" cmp -s "$seed" "$SRC/../shared/seed-vm.yaml"
fi

start_aio master "$SRC/deploy/all-in-one-test.yaml" master
start_aio other "$SRC/deploy/all-in-one-test.yaml" other

# The seed demo: runs on a node named master, stays Pending elsewhere.
check "kubectl create -f seed-vm.yaml (master)" kctl master create -f "$seed"
check "seed VM reaches Running on master" wait_phase master testvm Running 30
check "seed VM is bound to master" test "$(kctl master get vms.kubevirt.io testvm -o jsonpath='{.status.nodeName}')" = master
check "kubectl create -f seed-vm.yaml (other)" kctl other create -f "$seed"
check "seed VM stays Pending on other" wait_phase other testvm Pending 30
msg=$(kctl other get virtualmachine testvm -o jsonpath='{.status.conditions[?(@.type=="Scheduled")].message}')
check "Unschedulable reason: '$msg'" test "$msg" = "0/1 nodes: 1 node selector mismatch"
reason=$(kctl other get virtualmachine testvm -o jsonpath='{.status.conditions[?(@.type=="Scheduled")].reason}')
check "condition reason is Unschedulable" test "$reason" = Unschedulable

# Events: what the scheduler did, as kubectl and vmctl show it.
events_show() {  # events_show NAME PATTERN ARGS...: kubectl's output of ARGS matches PATTERN
  local name=$1 pattern=$2 out; shift 2
  out=$(kctl "$name" "$@" 2>&1) || true  # a refusal is output to match too
  grep -q -- "$pattern" <<<"$out"
}
check "kubectl get events: Scheduled (master)" \
  wait_for 15 events_show master 'Normal .*Scheduled .*virtualmachine/testvm .*Successfully assigned default/testvm to master' get events
check "kubectl get events -o wide: the source and count" \
  wait_for 15 events_show master 'vmhost-scheduler' get events -o wide
check "kubectl get events --field-selector: FailedScheduling (other)" \
  wait_for 15 events_show other 'Warning .*FailedScheduling .*0/1 nodes: 1 node selector mismatch' \
  get events --field-selector involvedObject.name=testvm,type=Warning
check "an unknown field selector is refused" \
  events_show other 'field label not supported' get events --field-selector spec.nothing=x
check "kubectl describe virtualmachine shows its events" \
  wait_for 15 sh -c "HOME=$WORK KUBECONFIG=$WORK/other.kubeconfig kubectl describe virtualmachine testvm | sed -n '/^Events:/,\$p' | grep -q 'Warning .*FailedScheduling .*vmhost-scheduler .*0/1 nodes: 1 node selector mismatch'"
check "kubectl get events: Started, reported by the node" \
  wait_for 15 events_show master 'Normal .*Started .*virtualmachine/testvm .*the domain is running on node master' get events
check "vmctl describe shows the events" \
  sh -c "HOME=$WORK $VMCTL_BIN --server $API_master describe testvm | sed -n '/^Events:/,\$p' | grep -q 'Normal .*Scheduled .*vmhost-scheduler .*Successfully assigned'"

# vmctl: apply, stop, start, wait, delete.
cat >"$WORK/vm1.yaml" <<YAML
apiVersion: vmhost.io/v1
kind: VirtualMachine
metadata:
  name: vm1
spec:
  runStrategy: Halted
  cpu: {cores: 1}
  memory: 64Mi
YAML
check "vmctl apply (Halted)" vmctl master apply -f "$WORK/vm1.yaml"
check "a Halted VM is Stopped" wait_phase master vm1 Stopped 20
check "vmctl start" vmctl master start vm1
check "started VM reaches Running" wait_phase master vm1 Running 20
check "vmctl get lists it" sh -c "HOME=$WORK $VMCTL_BIN --server $API_master get | grep -q '^vm1 .*Running .*master'"
check "vmctl get -o yaml shows the phase" sh -c "HOME=$WORK $VMCTL_BIN --server $API_master get vm vm1 -o yaml | grep -q '^  phase: Running$'"
check "vmctl get -o json shows the node" sh -c "HOME=$WORK $VMCTL_BIN --server $API_master get vm vm1 -o json | grep -q '\"nodeName\": \"master\"'"
mkdir -p "$WORK/cfg"
printf 'server: %s\nnamespace: default\n' "$API_master" >"$WORK/cfg/vmctl.yaml"
check "vmctl reads its server from --config" sh -c "$VMCTL_BIN --config $WORK/cfg/vmctl.yaml get vm vm1 | grep -q Running"
printf 'sever: x\n' >"$WORK/cfg/bad.yaml"
check "vmctl names an unknown config key" sh -c "$VMCTL_BIN --config $WORK/cfg/bad.yaml get 2>&1 | grep -q \"unknown key 'sever'\""
metrics=$(curl -fsS "$API_master/metrics")
# The metrics text goes to grep on stdin: it may hold any character.
has_metric() { grep -q "$1" <<<"$metrics"; }
check "/metrics: VMs by phase" has_metric '^vmhost_virtual_machines{phase="Running"} 2$'
check "/metrics: plugin call latency by plugin" has_metric '^vmhost_plugin_call_duration_seconds_count{kind="scheduler",plugin="default",method="1",code="OK"}'
check "/metrics: reconcile latency" has_metric '^vmhost_node_reconcile_duration_seconds_count{node="master"}'
check "/metrics: API requests by verb and code" has_metric '^apiserver_request_total{.*code="201"'
check "vmctl stop" vmctl master stop vm1
check "stopped VM reaches Stopped" wait_phase master vm1 Stopped 30
check "vmctl start again" vmctl master start vm1
check "VM runs again" wait_phase master vm1 Running 20
check "vmctl delete" vmctl master delete vm1
check "VM is gone" wait_for 10 sh -c "! HOME=$WORK $VMCTL_BIN --server $API_master get vm vm1 >/dev/null 2>&1"

# MAC collision: a second VM asking for a MAC a running VM of the node holds
# is refused with a condition naming both, and runs once the MAC is free.
for vm in mac-a mac-b; do
  cat >"$WORK/$vm.yaml" <<YAML
apiVersion: vmhost.io/v1
kind: VirtualMachine
metadata:
  name: $vm
spec:
  nodeSelector: {kubernetes.io/hostname: master}
  memory: 64Mi
  interfaces:
  - {name: net0, network: default, macAddress: "52:54:00:aa:bb:01"}
YAML
done
check "vmctl apply mac-a" vmctl master apply -f "$WORK/mac-a.yaml"
check "mac-a reaches Running" wait_phase master mac-a Running 20
check "vmctl apply mac-b (same MAC)" vmctl master apply -f "$WORK/mac-b.yaml"
mac_refused() {
  kctl master get virtualmachines mac-b -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}' \
    2>/dev/null | grep -q 'MAC 52:54:00:aa:bb:01 is already used by VM default/mac-a'
}
check "mac-b is refused: MAC collision with mac-a" wait_for 20 mac_refused
kctl master get virtualmachines mac-b -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}'; echo
check "mac-b is not Running" test "$(phase master mac-b)" != Running
check "vmctl delete mac-a" vmctl master delete mac-a
check "mac-b runs once the MAC is free" wait_phase master mac-b Running 30
check "vmctl delete mac-b" vmctl master delete mac-b

# Bad input: a clear error, nothing stored.
cat >"$WORK/bad.yaml" <<YAML
apiVersion: vmhost.io/v1
kind: VirtualMachine
metadata:
  name: bad
spec:
  memory: -64Mi
YAML
out=$(vmctl master apply -f "$WORK/bad.yaml" 2>&1) && fail "negative memory accepted" || pass "negative memory refused"
check "the error names the field: $out" sh -c "echo '$out' | grep -q 'spec.memory'"
check "nothing was stored" sh -c "! HOME=$WORK $VMCTL_BIN --server $API_master get vm bad >/dev/null 2>&1"

finish
