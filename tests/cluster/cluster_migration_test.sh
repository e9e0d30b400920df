#!/usr/bin/env bash
# Live migration with vmhost on the multi-host harness, real QEMU (TCG): two
# hosts run `vmhost node`, the controller runs in the root namespace, and a
# VirtualMachineMigration moves a running guest host1 -> host2 -> host1:
#   - once with its disk on `shared-dir` (nothing copied), once on `local`
#     disks (copied by libvirt's NBD storage migration);
#   - the guest prints a tick counter with its uptime and its disk's marker
#     (vmhost.ticker=): on the target the counter goes on where it stopped,
#     the uptime never goes back, the guest never boots again there, the
#     marker reads the same, and the MAC is the one it booted with;
#   - libvirt on both hosts: exactly one running copy after each move; the
#     source's domain and (for local disks) its copy of the disk are gone;
#   - the migration object ends Succeeded with its time, downtime and bytes.
# Usage: cluster_migration_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=${1:?build dir}
SRC=${2:?source dir}
. "$SRC/tests/lib/harness.sh"
. "$SRC/tests/e2e/lib_qemu.sh"
. "$SRC/tests/cluster/lib_cluster.sh"
. "$SRC/tests/cluster/lib_cluster_vmhost.sh"
. "$SRC/tests/cluster/lib_cluster_migration.sh"

cluster_test_begin vmhost-cluster-migration
migration_cluster_begin 2

MIG_SEQ=0
LAST_MIGRATION=

# prove_move VM FROM TO LABEL [vmctl]: migrates VM FROM -> TO (a
# VirtualMachineMigration applied with kubectl, or `vmctl migrate --to
# --wait`) and checks everything.
prove_move() {
  local vm=$1 from=$2 to=$3 label=$4 how=${5:-kubectl} before after phase n0 u0 d0 n1 u1 d1 mac0
  before=$(last_tick "$from" "$vm")
  read -r n0 u0 d0 <<<"$before"
  mac0=$(mac_of "$from" "$vm")
  MIG_SEQ=$((MIG_SEQ + 1))
  if [ "$how" = vmctl ]; then
    local rc=0
    vmctl ctl migrate "$vm" --to "$to" --wait --timeout=3m >"$TDIR/vmctl-migrate.out" 2>&1 || rc=$?
    tail -n 3 "$TDIR/vmctl-migrate.out"
    LAST_MIGRATION=$(sed -n 's|^virtualmachinemigration.vmhost.io/\([^ ]*\) created$|\1|p' "$TDIR/vmctl-migrate.out")
    check "[$label] vmctl migrate --wait exits 0 and says where, how long, the downtime and the data" \
      sh -c "[ $rc -eq 0 ] && grep -Eq '^migrated $vm to $to in [0-9.]+ s \(downtime [0-9]+ ms, [0-9.]+ MiB moved' '$TDIR/vmctl-migrate.out'"
    phase=$(mig_phase "$LAST_MIGRATION")
  else
    LAST_MIGRATION="$vm-m$MIG_SEQ"
    phase=$(migrate "$vm" "$to" "$LAST_MIGRATION")
  fi
  check "[$label] $vm $from -> $to: the migration Succeeded (got '$phase': $(mig_field "$LAST_MIGRATION" .status.message))" \
    test "$phase" = Succeeded
  kctl ctl get virtualmachinemigrations "$LAST_MIGRATION" -o wide 2>/dev/null || true
  echo "  result: $(mig_field "$LAST_MIGRATION" .status.result)"
  check "[$label] its result has a total time" test -n "$(mig_field "$LAST_MIGRATION" .status.result.totalMs)"
  check "[$label] the VM is bound to $to" test "$(vm_node "$vm")" = "$to"
  check "[$label] the guest runs on $to" wait_for 30 eval "[ \"\$(domstate $to $vm)\" = running ]"
  check "[$label] the source $from's domain is gone" wait_for 30 eval "! has_domain $from $vm"
  check "[$label] exactly one running copy (both hosts' libvirt)" test "$(running_copies "$vm")" -eq 1
  check "[$label] the guest ticks on $to" wait_for 30 ticks_on "$to" "$vm" 2
  after=$(last_tick "$to" "$vm")
  read -r n1 u1 d1 <<<"$after"
  echo "  last tick on $from: $before; on $to: $after"
  check "[$label] the counter continued ($n0 -> $n1), no restart" test "${n1:-0}" -gt "${n0:-0}"
  check "[$label] the uptime is monotonic ($u0 -> $u1)" \
    awk -v a="${u0:-0}" -v b="${u1:-0}" 'BEGIN { exit !(b > a) }'
  check "[$label] the guest did not boot on $to" \
    sh -c "! grep -q 'vmhost-guest: booted' '$(console_of "$to" "$vm")'"
  check "[$label] the disk marker reads the same ($d0 / $d1)" test -n "$d1" -a "$d1" = "$d0"
  check "[$label] the MAC is unchanged ($mac0)" test -n "$mac0" -a "$(mac_of "$to" "$vm")" = "$mac0"
}

guest_with_disk() {  # VM STORAGE_LABEL
  write_guest_vm_args "$TDIR/$1.yaml" "$1" 128Mi "vmhost.ticker=1 vmhost.marker=vda:$1-marker" "  disks:
  - {name: data}
  volumes:
  - name: data
    persistent: {claimName: $1-data, size: 16Mi}
  interfaces:
  - {name: nic0, user: {}}"
  vmctl ctl apply -f "$TDIR/$1.yaml" >/dev/null
}

run_phase() {  # STORAGE VM
  local storage=$1 vm=$2
  start_agents "$storage"
  guest_with_disk "$vm"
  check "[$storage] $vm reaches Running" wait_phase ctl "$vm" Running 300
  local first
  first=$(vm_node "$vm")
  check "[$storage] $vm starts on host1 or host2" test -n "$first"
  local second=host2
  [ "$first" = host2 ] && second=host1
  check "[$storage] the guest ticks (and wrote its marker)" wait_for 90 ticks_on "$first" "$vm" 3
  check "[$storage] the marker is on its disk" \
    sh -c "last=\$(sed -n 's/.*tick [0-9]* uptime=[0-9.]* disk=//p' '$(console_of "$first" "$vm")' | tr -d '\r' | tail -n 1); [ \"\$last\" = 'vmhost-marker:$vm-marker' ]"
  prove_move "$vm" "$first" "$second" "$storage"
  sleep 2
  prove_move "$vm" "$second" "$first" "$storage" vmctl
}

run_phase shared-dir mig-shared
vmctl ctl delete vm mig-shared >/dev/null
gone() { ! vmctl ctl get vm mig-shared >/dev/null 2>&1; }
check "[shared-dir] the VM is deleted" wait_for 60 gone
stop_agents

run_phase local mig-local
# The source's copy of a local disk goes after a move; the VM's host keeps one.
home=$(vm_node mig-local)
away=host2
[ "$home" = host2 ] && away=host1
check "[local] $home's pool holds the disk" \
  sh -c "find '$(cluster_host_dir "$home")/pool' -name '*mig-local-data*' | grep -q ."
check "[local] $away's pool no longer holds a copy" \
  sh -c "! find '$(cluster_host_dir "$away")/pool' -name '*mig-local-data*' | grep -q ."

finish
