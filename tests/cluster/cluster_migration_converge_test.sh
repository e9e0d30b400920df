#!/usr/bin/env bash
# Convergence, vmhost on the multi-host harness with real QEMU (TCG): a guest
# that rewrites 32 MiB of its RAM in a loop (vmhost.dirty=32), migrated over a
# link limited to 8 MiB/s for the test (the migration's parameters), on
# shared-dir disks (only memory moves).
#   - `precopy` (the default plugin): it never converges; the plugin aborts
#     at its completion timeout (20 s per GiB for the test): Failed, reason
#     AbortedByPlugin, the guest still runs on the source, nothing on the
#     target;
#   - `adaptive` (one line of the nodes' config): raises the max downtime,
#     then relies on auto-converge, then switches to post-copy: Succeeded,
#     the guest runs on the target, and the result says which step ended it.
# Usage: cluster_migration_converge_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=${1:?build dir}
SRC=${2:?source dir}
. "$SRC/tests/lib/harness.sh"
. "$SRC/tests/e2e/lib_qemu.sh"
. "$SRC/tests/cluster/lib_cluster.sh"
. "$SRC/tests/cluster/lib_cluster_vmhost.sh"
. "$SRC/tests/cluster/lib_cluster_migration.sh"

cluster_test_begin vmhost-cluster-migration-converge
migration_cluster_begin 2
start_agents shared-dir "{name: precopy}"

VM=busy
write_guest_vm_args "$TDIR/$VM.yaml" "$VM" 192Mi "vmhost.ticker=1 vmhost.dirty=32" "  disks:
  - {name: data}
  volumes:
  - name: data
    persistent: {claimName: $VM-data, size: 16Mi}"
vmctl ctl apply -f "$TDIR/$VM.yaml" >/dev/null
check "$VM reaches Running" wait_phase ctl "$VM" Running 300
src=$(vm_node "$VM")
dst=host2
[ "$src" = host2 ] && dst=host1
check "the guest ticks" wait_for 90 ticks_on "$src" "$VM" 3
check "the guest dirties its memory" grep -q "vmhost-guest: dirtying 32 MiB" "$(console_of "$src" "$VM")"
LINK="{bandwidthMiBps: 8, completionTimeoutPerGiBSeconds: 20}"

# ---- precopy: never converges, aborted at its timeout
t0=$SECONDS
phase=$(migrate "$VM" "$dst" precopy-1 "$LINK")
took=$((SECONDS - t0))
echo "  precopy: $phase after ${took} s: $(mig_field precopy-1 .status.reason): $(mig_field precopy-1 .status.message)"
echo "  last progress: $(mig_field precopy-1 .status.progress)"
check "[precopy] the migration Failed" test "$phase" = Failed
check "[precopy] aborted by the plugin at its completion timeout" \
  test "$(mig_field precopy-1 .status.reason)" = AbortedByPlugin
check "[precopy] the message says why" \
  grep -q "completion timeout" <<<"$(mig_field precopy-1 .status.message)"
check "[precopy] it ran past the timeout, not much longer (${took} s)" test "$took" -ge 20 -a "$took" -le 90
check "[precopy] the guest still runs on $src" test "$(vm_node "$VM")" = "$src" -a "$(domstate "$src" "$VM")" = running
check "[precopy] nothing left on $dst" wait_for 30 eval "! has_domain $dst $VM"
check "[precopy] one running copy" test "$(running_copies "$VM")" -eq 1

# ---- adaptive: converges
stop_agents
start_agents shared-dir "{name: adaptive}"
phase=$(migrate "$VM" "$dst" adaptive-1 "{bandwidthMiBps: 8}")
echo "  adaptive: $phase: result $(mig_field adaptive-1 .status.result); last decision: $(mig_field adaptive-1 .status.progress.lastDecision)"
check "[adaptive] the migration Succeeded ($(mig_field adaptive-1 .status.message))" test "$phase" = Succeeded
check "[adaptive] the guest runs on $dst" wait_for 30 eval "[ \"\$(domstate $dst $VM)\" = running ]"
check "[adaptive] bound to $dst" test "$(vm_node "$VM")" = "$dst"
check "[adaptive] one running copy" test "$(running_copies "$VM")" -eq 1
check "[adaptive] the guest ticks on $dst" wait_for 30 ticks_on "$dst" "$VM" 2
ended=$(mig_field adaptive-1 .status.result.endedBy)
check "[adaptive] the result says which step ended it ($ended)" \
  grep -Eq "post-copy|auto-converge|max downtime" <<<"$ended"

finish
