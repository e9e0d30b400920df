#!/usr/bin/env bash
# Issue 4's benchmarks on real QEMU (TCG) through `vmhost all-in-one` on
# qemu:///embed:
#  1. create -> Running for VMs with an ephemeral qcow2 overlay on a cached
#     base image and one NIC, split into the node's steps (storage prepare,
#     network prepare, define, start) from vmhost_node_vm_start_step_seconds;
#     the client-side create -> Running time is polled every 20 ms.
#  2. the guest's disk throughput through the overlay vs the raw base file
#     (busybox dd inside the guest, driven through `vmctl console`): a ratio.
# Fails (exit 1) if a step breaks; with --enforce-targets also if storage +
# network preparation take 50 ms or more on average.
# usage: disks_bench.sh BUILD_DIR SOURCE_DIR [--vms N] [--enforce-targets]
BUILD=$1
SRC=$2
shift 2
VMS=10
ENFORCE=0
while [ $# -gt 0 ]; do
  case $1 in
    --vms) VMS=$2; shift 2 ;;
    --enforce-targets) ENFORCE=1; shift ;;
    *) echo "unknown argument $1"; exit 2 ;;
  esac
done
. "$SRC/tests/lib/harness.sh"
. "$SRC/tests/e2e/lib_qemu.sh"
require_tools pkill:procps curl:curl
EXTRA_CLEANUP='pkill -9 -f "qemu-system.*guest=default_bench-" || true'

data="$WORK/aio"
base="$WORK/base.raw"
# 64 MiB of incompressible data: the base image every overlay reads.
head -c $((64 * 1024 * 1024)) /dev/urandom >"$base"
cp "$base" "$WORK/raw-copy.raw"

write_qemu_config "$WORK/config.yaml" "$data"
start_aio aio "$WORK/config.yaml" bench-node

bench_vm() {  # NAME [EXTRA DISKS/VOLUMES YAML]
  write_guest_vm "$WORK/$1.yaml" "$1" 128Mi "  disks:
  - {name: root, bus: virtio}${2:+
$2}
  volumes:
  - {name: root, ephemeral: {image: {path: $base}}}${3:+
$3}
  interfaces:
  - {name: net0, user: {}}"
}
ms_now() { date +%s%3N; }
running() { [ "$(phase aio "$1")" = Running ]; }

# Warm-up: the first start in a fresh embed root probes QEMU (tens of s).
bench_vm bench-warm
vmctl aio apply -f "$WORK/bench-warm.yaml" >/dev/null || { echo "FAIL: apply"; exit 1; }
wait_phase aio bench-warm Running 300 || { echo "FAIL: warm-up VM did not run"; exit 1; }
vmctl aio delete bench-warm >/dev/null
metric_sum() {  # STEP FIELD(sum|count)
  curl -fsS "$API_aio/metrics" |
    sed -n "s/^vmhost_node_vm_start_step_seconds_$2{node=\"bench-node\",step=\"$1\"} //p"
}
declare -A sum0 cnt0
for s in storage network define start; do
  sum0[$s]=$(metric_sum $s sum); cnt0[$s]=$(metric_sum $s count)
done

totals=()
for i in $(seq 1 "$VMS"); do
  bench_vm "bench-$i"
  t0=$(ms_now)
  vmctl aio apply -f "$WORK/bench-$i.yaml" >/dev/null || { echo "FAIL: apply bench-$i"; exit 1; }
  ok=0
  for _ in $(seq 1 3000); do
    if running "bench-$i"; then ok=1; break; fi
    sleep 0.02
  done
  [ $ok = 1 ] || { echo "FAIL: bench-$i did not reach Running"; exit 1; }
  totals+=($(($(ms_now) - t0)))
done
echo "== create -> Running, $VMS VMs one after another (ephemeral overlay on a cached 64 MiB base, one user NIC)"
printf '%s\n' "${totals[@]}" | sort -n | awk '{a[NR]=$1; s+=$1} END {
  printf "client-side create -> Running: mean %.0f ms, p50 %d ms, max %d ms (polled every 20 ms through vmctl)\n",
    s/NR, a[int((NR+1)/2)], a[NR] }'
prep=0
for s in storage network define start; do
  sum=$(metric_sum $s sum); cnt=$(metric_sum $s count)
  mean=$(awk -v s1="$sum" -v s0="${sum0[$s]:-0}" -v c1="$cnt" -v c0="${cnt0[$s]:-0}" \
    'BEGIN { printf "%.2f", (s1 - s0) * 1000 / (c1 - c0) }')
  printf '  node step %-8s mean %8s ms  (%d starts)\n' "$s" "$mean" $((cnt - ${cnt0[$s]:-0}))
  case $s in storage|network) prep=$(awk -v a="$prep" -v b="$mean" 'BEGIN { print a + b }') ;; esac
done
echo "  storage + network preparation: $prep ms (target < 50 ms)"
for i in $(seq 1 "$VMS"); do vmctl aio delete "bench-$i" >/dev/null; done

# Disk I/O: vda = the overlay on the base, vdb = a raw copy of the base.
bench_vm bench-io "  - {name: raw, bus: virtio}" "  - {name: raw, hostPath: {path: $WORK/raw-copy.raw}}"
vmctl aio apply -f "$WORK/bench-io.yaml" >/dev/null
wait_phase aio bench-io Running 120 || { echo "FAIL: bench-io did not run"; exit 1; }
console="$data/node/console/default_bench-io.log"
wait_for 120 grep -q "vmhost-guest: booted" "$console" || { echo "FAIL: bench-io did not boot"; exit 1; }
guest() {  # COMMANDS: run in the guest's shell, print what it printed
  printf '%s\n' "$1" | timeout 300 "$VMCTL_BIN" --server "$API_aio" console bench-io 2>/dev/null
}
# Reads bypass the guest's page cache (drop_caches before each); writes
# are synced (conv=fsync). Busybox dd prints no rate: the guest times it
# with /proc/uptime (10 ms ticks; runs take seconds under TCG). Three runs
# each, the best counts.
dd_rate() {  # DEV read|write -> MB/s
  local cmd out mb
  if [ "$2" = read ]; then
    mb=64
    cmd="sync; echo 3 >/proc/sys/vm/drop_caches; read a _ </proc/uptime; dd if=/dev/$1 of=/dev/null bs=1M count=$mb 2>/dev/null"
  else
    mb=32
    cmd="read a _ </proc/uptime; dd if=/dev/zero of=/dev/$1 bs=1M count=$mb conv=fsync 2>/dev/null"
  fi
  out=$(guest "$cmd; read b _ </proc/uptime; echo dd-time \$a \$b")
  sed -n 's/^dd-time \([0-9.]*\) \([0-9.]*\).*/\1 \2/p' <<<"$out" | tail -n 1 |
    awk -v mb="$mb" '{ t = $2 - $1; if (t > 0) printf "%.1f\n", mb * 1.048576 / t }'
}
best() { sort -gr | head -n 1; }
declare -A rate
for dev in vda vdb; do
  for op in read write; do
    rate[$dev-$op]=$(for _ in 1 2 3; do dd_rate $dev $op; done | best)
    [ -n "${rate[$dev-$op]}" ] || { echo "FAIL: no dd figure for $dev $op"; guest "dd if=/dev/$dev of=/dev/null bs=1M count=1; echo done"; exit 1; }
  done
done
echo "== guest disk I/O (busybox dd in the guest, TCG, best of 3)"
for op in read write; do
  awk -v o="${rate[vda-$op]}" -v r="${rate[vdb-$op]}" -v op="$op" 'BEGIN {
    printf "  %-5s overlay (vda) %7.1f MB/s   raw (vdb) %7.1f MB/s   overlay/raw %.2f\n", op, o, r, o / r }'
done
vmctl aio delete bench-io >/dev/null
if [ "$ENFORCE" = 1 ] && awk -v p="$prep" 'BEGIN { exit !(p >= 50) }'; then
  echo "FAIL: storage + network preparation $prep ms >= 50 ms"; exit 1
fi
finish
