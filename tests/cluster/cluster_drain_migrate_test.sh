#!/usr/bin/env bash
# A drain with live migration, vmhost on the multi-host harness with real
# QEMU (TCG): four VMs with evictionStrategy LiveMigrate on host1 (shared-dir
# disks); `vmctl drain host1` moves every one of them to host2 while they
# run, and the migrations' watch (kubectl get -w) never shows more than 2
# running at once (parallelOutboundMigrationsPerNode, KubeVirt's default).
# Then a drain aborted with `vmctl uncordon`: the migrations not yet started
# are withdrawn.
# Usage: cluster_drain_migrate_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=${1:?build dir}
SRC=${2:?source dir}
. "$SRC/tests/lib/harness.sh"
. "$SRC/tests/e2e/lib_qemu.sh"
. "$SRC/tests/cluster/lib_cluster.sh"
. "$SRC/tests/cluster/lib_cluster_vmhost.sh"
. "$SRC/tests/cluster/lib_cluster_migration.sh"

cluster_test_begin vmhost-cluster-drain-migrate
migration_cluster_begin 2
start_agents shared-dir

# All four on host1: host2 cordoned while they are placed.
vmctl ctl cordon host2 >/dev/null
VMS="d1 d2 d3 d4"
for vm in $VMS; do
  write_guest_vm_args "$TDIR/$vm.yaml" "$vm" 128Mi "vmhost.ticker=1" "  evictionStrategy: LiveMigrate
  disks:
  - {name: data}
  volumes:
  - name: data
    persistent: {claimName: $vm-data, size: 16Mi}"
  vmctl ctl apply -f "$TDIR/$vm.yaml" >/dev/null
done
all_on() {  # HOST: every VM Running on HOST
  local vm
  for vm in $VMS; do
    [ "$(vm_node "$vm")" = "$1" ] && [ "$(domstate "$1" "$vm")" = running ] || return 1
  done
}
check "4 VMs run on host1" wait_for 300 all_on host1
for vm in $VMS; do check "$vm ticks on host1" wait_for 90 ticks_on host1 "$vm" 2; done
vmctl ctl uncordon host2 >/dev/null

# The migrations' watch, from before the drain.
kctl ctl get virtualmachinemigrations -w -o jsonpath='{.metadata.name} {.status.phase}{"\n"}' \
  >"$TDIR/watch" 2>/dev/null &
WATCH=$!
drain_cleanup() {
  kill "$WATCH" 2>/dev/null || true
  cluster_test_cleanup
}
EXTRA_CLEANUP=drain_cleanup
sleep 1
t0=$SECONDS
check "vmctl drain host1 completes" vmctl ctl drain host1 --timeout=10m
took=$((SECONDS - t0))
echo "  drain of 4 VMs: ${took} s"
check "every VM runs on host2" wait_for 60 all_on host2
for vm in $VMS; do
  check "$vm: one running copy" test "$(running_copies "$vm")" -eq 1
  check "$vm: the guest did not boot again on host2" \
    sh -c "! grep -q 'vmhost-guest: booted' '$(console_of host2 "$vm")'"
done
sleep 2
kill "$WATCH" 2>/dev/null || true
# Replays the watch: the most migrations in flight at once.
max_running=$(awk '
  { phase[$1] = $2; n = 0
    for (m in phase) if (phase[m] == "Scheduling" || phase[m] == "PreparingTarget" || phase[m] == "Running") n++
    if (n > max) max = n }
  END { print max + 0 }' "$TDIR/watch")
succeeded=$(awk '$2 == "Succeeded" { s[$1] = 1 } END { print length(s) }' "$TDIR/watch")
echo "  watch: $(wc -l <"$TDIR/watch") events, at most $max_running in flight, $succeeded succeeded"
check "the watch saw 4 migrations succeed" test "$succeeded" -eq 4
check "never more than 2 migrations in flight at once (saw $max_running)" test "$max_running" -le 2
check "and 2 did run at once (the limit, not less)" test "$max_running" -eq 2
echo "DRAIN_SECONDS=$took"

# ---- an aborted drain: back to host1, uncordon while some wait. host1's
# agent is frozen (SIGSTOP) so that the first two migrations stay in
# PreparingTarget and the other two wait Pending behind the limit.
vmctl ctl uncordon host1 >/dev/null
agent1=$(cat "$CLUSTER_DIR/host1/node.pid")
kill -STOP "$agent1"
vmctl ctl drain host2 --timeout=10m >"$TDIR/drain2.log" 2>&1 &
DRAIN=$!
count_phase() {  # PHASE: how many migrations are in it
  kctl ctl get virtualmachinemigrations -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' 2>/dev/null |
    grep -cx "$1" || true
}
queued() { [ "$(count_phase Pending)" -eq 2 ] && [ "$(count_phase PreparingTarget)" -eq 2 ]; }
check "the second drain: 2 migrations preparing on the frozen target, 2 waiting Pending" wait_for 60 queued
vmctl ctl uncordon host2 | tee "$TDIR/uncordon.log"
no_pending() { [ "$(count_phase Pending)" -eq 0 ]; }
check "uncordon withdraws the 2 migrations that had not started" wait_for 60 no_pending
check "vmctl uncordon says so" grep -q "withdrawn" "$TDIR/uncordon.log"
kill -CONT "$agent1"
wait "$DRAIN" || true
check "host1's thawed agent rejoins" wait_for 90 ready host1
started=$(kctl ctl get virtualmachinemigrations -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase}{"\n"}{end}' 2>/dev/null |
  awk '$2 == "PreparingTarget" || $2 == "Running" { print $1 }')
echo "  left to finish: $started"
for m in $started; do
  check "$m, started before the uncordon, finishes: Succeeded" test "$(wait_migration "$m" 180)" = Succeeded
done
for vm in $VMS; do check "$vm: one running copy after the aborted drain" test "$(running_copies "$vm")" -eq 1; done
moved=0
for vm in $VMS; do [ "$(vm_node "$vm")" = host1 ] && moved=$((moved + 1)); done
echo "  aborted drain: $moved of 4 moved back"
check "exactly the 2 started ones moved (the drain was aborted)" test "$moved" -eq 2

finish
