#!/usr/bin/env bash
# Live migration between two harness hosts: the tiny guest (128 MiB, idle,
# TCG) migrated peer-to-peer back and forth ROUNDS times; prints each round
# and min / median / max of virsh's wall time and of the migration's time and
# downtime as the target's libvirt reports them. Figures: docs/benchmarks.md.
# Usage: migration_bench.sh BUILD_DIR SOURCE_DIR [ROUNDS (default 10)]
set -euo pipefail
BUILD=${1:?build dir}
SRC=${2:?source dir}
ROUNDS=${3:-10}
# shellcheck source=tests/lib/harness.sh
. "$SRC/tests/lib/harness.sh"
# shellcheck source=tests/e2e/lib_qemu.sh
. "$SRC/tests/e2e/lib_qemu.sh"
# shellcheck source=tests/cluster/lib_cluster.sh
. "$SRC/tests/cluster/lib_cluster.sh"
# shellcheck source=tests/cluster/lib_cluster_guest.sh
. "$SRC/tests/cluster/lib_cluster_guest.sh"
require_tools virsh:libvirt-clients
trap 'exit 130' INT
trap 'exit 143' TERM
EXTRA_CLEANUP='cluster_down'

cluster_up 2
dom="bench-guest-$CLUSTER_ID"
cluster_guest_xml "$dom" >"$WORK/guest.xml"
timeout 120 virsh -c "$(cluster_libvirt_uri host1)" create "$WORK/guest.xml" >/dev/null
wait_for 120 grep -q "vmhost-guest: booted" "$(cluster_guest_console host1 "$dom")" ||
  { echo "FAIL: the guest did not boot"; exit 1; }
up0=$(cluster_guest_uptime host1 "$dom")

: >"$WORK/rounds"
src=host1 dst=host2
for r in $(seq 1 "$ROUNDS"); do
  figures=$(cluster_migrate "$src" "$dst" "$dom" 2>>"$WORK/virsh.log") ||
    { echo "FAIL: round $r: migration $src -> $dst failed"; cat "$WORK/virsh.log"; exit 1; }
  echo "round $r $src->$dst: $figures" | awk '{printf "round %s %s wall %s s, migration %s ms, downtime %s ms\n", $2, $3, $4, $5, $6}'
  echo "$figures" >>"$WORK/rounds"
  tmp=$src src=$dst dst=$tmp
  sleep 1
done
up1=$(cluster_guest_uptime "$src" "$dom")
awk -v a="$up0" -v b="$up1" 'BEGIN{exit !(b > a)}' ||
  { echo "FAIL: guest uptime went from $up0 to $up1 s: rebooted?"; exit 1; }
echo "guest uptime $up0 s -> $up1 s over $ROUNDS migrations (no reboot)"
# stats COLUMN NAME UNIT
stats() {
  cut -d' ' -f"$1" "$WORK/rounds" | grep -v '?' | sort -n |
    awk -v n="$2" -v u="$3" '{v[NR]=$1} END{if (NR==0) {print n ": no data"; exit}
      printf "%s: min %s, median %s, max %s %s (n=%d)\n", n, v[1], v[int((NR+1)/2)], v[NR], u, NR}'
}
stats 1 "virsh migrate wall" s
stats 2 "migration time" ms
stats 3 "downtime" ms
