#!/usr/bin/env bash
# Live migration benchmarks of issue 10 (point 13) on the multi-host harness
# with real QEMU (TCG): vmhost against raw libvirt, the same guest between the
# same two hosts, runs alternating (vmhost A->B, virsh A->B, vmhost B->A,
# virsh B->A, ...). Figures: docs/benchmarks.md ("Live migration: vmhost
# against raw libvirt").
#
#  shared  a 128 MiB guest whose 16 MiB disk is on `shared-dir` (nothing
#          copied): a VirtualMachineMigration (wall clock from just before
#          `kubectl apply` to the watch showing Succeeded; status.result's
#          totalMs, downtimeMs, bytesTransferred) against `virsh migrate
#          --live --p2p --persistent --undefinesource --unsafe` of a plain
#          libvirt domain of the same guest (cluster_guest_xml, q35, its own
#          16 MiB disk in the same shared directory), defined with virsh and
#          unknown to vmhost (so no node agent fights the move).
#  local   the nodes on `local` storage; a 1 GiB persistent volume made from
#          a 1 GiB qcow2 holding a marker and FILL MiB of random data
#          (copied by libvirt's NBD storage migration), against `virsh
#          migrate ... --copy-storage-all` of a plain domain on a copy of the
#          same image (the target's file made first with `qemu-img create` of
#          the same size, as libvirt needs; that step is timed on its own).
#  drain   4 VMs with evictionStrategy LiveMigrate (shared-dir disks) on one
#          host: `vmctl drain HOST` total time, then uncordon and drain the
#          other host back, DRAIN_RUNS times.
#
# Each measured migration first waits until no other harness test runs on
# the machine (`--quiet-wait SECONDS`: the most it waits in all, then it
# measures anyway; 0 = never wait), and records the 1-minute load average
# and how many other harness tests ran when it started. Fails (exit 1) if a
# migration fails (each failure's phase, reason and message are printed);
# with --enforce-targets also if a ratio of medians vmhost/virsh exceeds 1.2
# or a median downtime exceeds the max downtime (300 ms, precopy's and
# QEMU's default).
# Usage: vmhost_migration_bench.sh BUILD_DIR SOURCE_DIR [--runs N (10)]
#   [--disk-runs N (10)] [--drain-runs N (3)] [--fill-mib N (256)]
#   [--phases shared,drain,local] [--quiet-wait SECONDS (0)] [--enforce-targets]
set -euo pipefail
# Absolute: the node hooks run in the hosts' namespaces from another directory.
BUILD=$(cd "${1:?build dir}" && pwd)
SRC=$(cd "${2:?source dir}" && pwd)
shift 2
RUNS=10 DISK_RUNS=10 DRAIN_RUNS=3 FILL_MIB=256 PHASES=shared,drain,local QUIET_BUDGET=0 ENFORCE=0
while [ $# -gt 0 ]; do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --disk-runs) DISK_RUNS=$2; shift 2 ;;
    --drain-runs) DRAIN_RUNS=$2; shift 2 ;;
    --fill-mib) FILL_MIB=$2; shift 2 ;;
    --phases) PHASES=$2; shift 2 ;;
    --quiet-wait) QUIET_BUDGET=$2; shift 2 ;;
    --enforce-targets) ENFORCE=1; shift ;;
    *) echo "unknown argument $1"; exit 2 ;;
  esac
done
export LC_ALL=C
. "$SRC/tests/lib/harness.sh"
. "$SRC/tests/e2e/lib_qemu.sh"
. "$SRC/tests/cluster/lib_cluster.sh"
. "$SRC/tests/cluster/lib_cluster_vmhost.sh"
. "$SRC/tests/cluster/lib_cluster_migration.sh"
. "$SRC/tests/cluster/lib_cluster_guest.sh"
require_tools setsid:util-linux pgrep:procps sha256sum:coreutils

MAX_DOWNTIME_MS=300
FAILED_RUNS=()
build_id() {
  echo "commit $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo '?')$(
    git -C "$SRC" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)'), vmhost sha256 $(
    sha256sum "$VMHOST" | cut -c1-12)"
}
BUILD_AT_START=$(build_id)
echo "bench: started $(date -u +%FT%TZ), $BUILD_AT_START"
echo "bench: nproc $(nproc), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(
  awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), TCG, load $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- other tests on the machine --------------------------------------------
others() { pgrep -f 'cluster_.*_test\.sh|libvirt_migration_test' 2>/dev/null | wc -l; }
QUIET_USED=0
# quiet_wait: until no other harness test runs, within what is left of the budget.
quiet_wait() {
  [ "$QUIET_BUDGET" -gt 0 ] || return 0
  local t0=$SECONDS said=0
  while [ "$(others)" -gt 0 ]; do
    if [ $((QUIET_USED + SECONDS - t0)) -ge "$QUIET_BUDGET" ]; then
      echo "bench: waited ${QUIET_BUDGET} s in all for other harness tests to end; measuring anyway"
      break
    fi
    [ $said -eq 1 ] || { echo "bench: other harness tests run; waiting"; said=1; }
    sleep 10
  done
  QUIET_USED=$((QUIET_USED + SECONDS - t0))
  [ $said -eq 0 ] || echo "bench: waited $((SECONDS - t0)) s (${QUIET_USED} s in all)"
}
# conditions: "load L others N" at the start of a run.
conditions() { echo "load $(cut -d' ' -f1 /proc/loadavg) others $(others)"; }

# ---- the cluster -------------------------------------------------------------
cluster_test_begin vmhost-migration-bench
migration_cluster_begin 2

# Two watches for the whole run, each line stamped on arrival; restarted if
# kubectl's watch ends; each in its own session so that its kubectl goes with
# it. $TDIR/watch: the migrations ("EPOCH NAME PHASE"); $TDIR/vmwatch: the
# VMs' record ("EPOCH VM MIGRATION RECORD_PHASE NODE"), what the nodes write.
watch_objects() {  # RESOURCE JSONPATH FILE
  while :; do
    HOME="$WORK" KUBECONFIG="$WORK/ctl.kubeconfig" kubectl get "$1" -w -o jsonpath="$2" 2>>"$3.err" |
      while IFS= read -r l; do echo "$EPOCHREALTIME $l"; done
    sleep 0.2
  done >>"$3"
}
export -f watch_objects
export WORK
: >"$TDIR/watch"
: >"$TDIR/vmwatch"
WATCHERS=()
bench_cleanup() {
  local w
  for w in "${WATCHERS[@]}"; do kill -- "-$w" 2>/dev/null || true; done
  cluster_test_cleanup
}
EXTRA_CLEANUP=bench_cleanup
start_watchers() {
  setsid bash -c 'watch_objects "$@"' _ virtualmachinemigrations \
    '{.metadata.name} {.status.phase}{"\n"}' "$TDIR/watch" </dev/null >/dev/null 2>&1 &
  WATCHERS+=($!)
  setsid bash -c 'watch_objects "$@"' _ virtualmachines \
    '{.metadata.name} {.status.migration.name} {.status.migration.phase} {.status.nodeName}{"\n"}' \
    "$TDIR/vmwatch" </dev/null >/dev/null 2>&1 &
  WATCHERS+=($!)
}

# need DESCRIPTION COMMAND...: check, and return 1 if it failed.
need() { local before=$FAILURES; check "$@"; [ "$FAILURES" -eq "$before" ]; }
other_host() { if [ "$1" = host1 ]; then echo host2; else echo host1; fi; }
booted_vm() { grep -q 'vmhost-guest: booted' "$(console_of "$1" "$2")" 2>/dev/null; }  # HOST VM
booted_raw() { grep -q 'vmhost-guest: booted' "$(cluster_guest_console "$1" "$2")" 2>/dev/null; }
raw_state() { timeout 20 virsh -c "$(cluster_libvirt_uri "$1")" domstate "$2" 2>/dev/null | head -n 1 || true; }
raw_where() {  # DOM: the host whose libvirt runs DOM
  local h
  for h in host1 host2; do [ "$(raw_state "$h" "$1")" = running ] && { echo "$h"; return 0; }; done
  echo none
}
to_bytes() {  # "62.203 MiB" -> bytes
  awk '{ v = $1; u = $2; m = 1
         if (u == "KiB") m = 1024; else if (u == "MiB") m = 1048576; else if (u == "GiB") m = 1073741824
         printf "%.0f\n", v * m }' <<<"$1"
}

# raw_xml NAME CMDLINE_EXTRA DISK_FILE: cluster_guest_xml's domain as close to
# vmhost's as it matters (q35, no USB controller, the same kernel command
# line) with one virtio qcow2 disk, libvirt's default cache (as vmhost's).
raw_xml() {
  cluster_guest_xml "$1" |
    sed -e "s|machine='pc'|machine='q35'|" -e "s|<cmdline>\(.*\)</cmdline>|<cmdline>\1 $2</cmdline>|" |
    awk -v f="$3" '{ print }
      /<devices>/ {
        print "    <disk type=\x27file\x27 device=\x27disk\x27>"
        print "      <driver name=\x27qemu\x27 type=\x27qcow2\x27/>"
        print "      <source file=\x27" f "\x27/>"
        print "      <target dev=\x27vda\x27 bus=\x27virtio\x27/>"
        print "    </disk>"
        print "    <controller type=\x27usb\x27 model=\x27none\x27/>"
      }'
}
raw_start() {  # HOST NAME XML_FILE: defined (persistent, as vmhost's domains) and started
  local uri
  uri=$(cluster_libvirt_uri "$1")
  timeout 60 virsh -c "$uri" define "$3" >/dev/null && timeout 120 virsh -c "$uri" start "$2" >/dev/null
}
raw_remove() {  # NAME: destroyed and undefined wherever it is
  local h uri
  for h in host1 host2; do
    uri=$(cluster_libvirt_uri "$h")
    timeout 60 virsh -c "$uri" destroy "$1" >/dev/null 2>&1 || true
    timeout 60 virsh -c "$uri" undefine "$1" >/dev/null 2>&1 || true
  done
}

# await_migration NAME T0 TIMEOUT_S: prints "PHASE SECONDS_SINCE_T0 HOW" once
# NAME is Succeeded or Failed: the time the watch saw it ("watch"), or, if the
# watch missed it for 3 s after a poll saw it, the poll's time ("poll").
await_migration() {
  local name=$1 t0=$2 deadline=$((SECONDS + $3)) line polled="" polled_at=0 p next_poll=$((SECONDS + 20))
  while [ $SECONDS -lt $deadline ]; do
    line=$(grep -m 1 -E "^[0-9.]+ $name (Succeeded|Failed)\$" "$TDIR/watch" || true)
    if [ -n "$line" ]; then
      awk -v t0="$t0" '{ printf "%s %.3f watch\n", $3, $1 - t0 }' <<<"$line"
      return 0
    fi
    # A poll now and then in case the watch missed it (not often: each is a
    # kubectl process on the cores the migration uses).
    if [ -z "$polled" ] && [ $SECONDS -ge $next_poll ]; then
      next_poll=$((SECONDS + 5))
      p=$(mig_phase "$name")
      case $p in Succeeded | Failed) polled="$p $EPOCHREALTIME" polled_at=$SECONDS ;; esac
    fi
    if [ -n "$polled" ] && [ $((SECONDS - polled_at)) -ge 3 ]; then
      awk -v t0="$t0" '{ printf "%s %.3f poll\n", $1, $2 - t0 }' <<<"$polled"
      return 0
    fi
    sleep 0.1
  done
  echo "$(mig_phase "$name") - timeout"
}
# phases_of NAME T0: "Pending 0.21 Scheduling 0.25 ..." (first sight of each phase, s since T0)
phases_of() {
  awk -v n="$1" -v t0="$2" '$2 == n && NF >= 3 && !($3 in s) { s[$3] = $1; o[++k] = $3 }
    END { for (i = 1; i <= k; i++) printf "%s %.2f ", o[i], s[o[i]] - t0 }' "$TDIR/watch"
}
# record_of NAME T0 TARGET: the VM's record of migration NAME: first sight of
# each of its phases, and of the VM bound to TARGET ("bound"), s since T0.
record_of() {
  awk -v n="$1" -v t0="$2" -v to="$3" '$3 == n && NF >= 4 && !($4 in s) { s[$4] = $1; o[++k] = $4 }
    $3 == n && NF >= 5 && $5 == to && !("bound" in s) { s["bound"] = $1; o[++k] = "bound" }
    END { for (i = 1; i <= k; i++) printf "%s %.2f ", o[i], s[o[i]] - t0 }' "$TDIR/vmwatch"
}
# PHASE_COLUMNS: what KIND.phases holds per vmhost run (s after the apply; - if not seen).
PHASE_COLUMNS="Pending Scheduling PreparingTarget rec:TargetReady rec:Running Running rec:Succeeded rec:bound Succeeded"
phase_row() {  # NAME T0 TARGET
  local p r c v row=""
  p=$(phases_of "$1" "$2") r=$(record_of "$1" "$2" "$3")
  for c in $PHASE_COLUMNS; do
    case $c in
      rec:*) v=$(awk -v k="${c#rec:}" '{ for (i = 1; i < NF; i += 2) if ($i == k) { print $(i + 1); exit } }' <<<"$r") ;;
      *) v=$(awk -v k="$c" '{ for (i = 1; i < NF; i += 2) if ($i == k) { print $(i + 1); exit } }' <<<"$p") ;;
    esac
    row+="${v:--} "
  done
  echo "$row"
}

# vmhost_run KIND VM FROM TO RUN: one VirtualMachineMigration, timed; appends
# "WALL_S TOTAL_MS DOWNTIME_MS BYTES" to $TDIR/KIND.vmhost. Returns 1 if it failed.
vmhost_run() {
  local kind=$1 vm=$2 from=$3 to=$4 r=$5 name t0 out phase wall how res cond
  name="$vm-r$r"
  cat >"$TDIR/$name.yaml" <<YAML
apiVersion: vmhost.io/v1
kind: VirtualMachineMigration
metadata: {name: $name}
spec: {vmName: $vm, targetNode: $to}
YAML
  quiet_wait
  cond=$(conditions)
  t0=$EPOCHREALTIME
  if ! kctl ctl apply -f "$TDIR/$name.yaml" >/dev/null 2>"$TDIR/$name.err"; then
    fail "[$kind] run $r vmhost $from->$to: kubectl apply failed: $(cat "$TDIR/$name.err")"
    FAILED_RUNS+=("$kind run $r vmhost $from->$to: apply failed")
    return 1
  fi
  out=$(await_migration "$name" "$t0" 900)
  read -r phase wall how <<<"$out"
  if [ "$phase" != Succeeded ]; then
    local why
    why="phase '${phase:-}' ($how), reason '$(mig_field "$name" .status.reason)', message '$(mig_field "$name" .status.message)'"
    fail "[$kind] run $r vmhost $from->$to: $why"
    FAILED_RUNS+=("$kind run $r vmhost $from->$to: $why; phases seen: $(phases_of "$name" "$t0")")
    kctl ctl get virtualmachinemigrations "$name" -o yaml 2>/dev/null | sed 's/^/    /' || true
    return 1
  fi
  res=$(mig_field "$name" '.status.result.totalMs} {.status.result.downtimeMs} {.status.result.bytesTransferred')
  local total down bytes
  read -r total down bytes <<<"$res"
  printf '%s %s %s %s\n' "$wall" "${total:-?}" "${down:-?}" "${bytes:-?}" >>"$TDIR/$kind.vmhost"
  awk -v r="$r" -v f="$from" -v t="$to" -v w="$wall" -v tm="${total:-?}" -v d="${down:-?}" -v b="${bytes:-0}" \
    -v how="$how" -v c="$cond" -v k="$kind" -v e="$(mig_field "$name" .status.result.endedBy)" \
    'BEGIN { printf "[%s] run %s vmhost %s->%s: wall %.2f s (%s), migration %s ms, downtime %s ms, data %.1f MiB, ended by %s; %s\n",
             k, r, f, t, w, how, tm, d, b / 1048576, e, c }'
  echo "    phases (s after apply): $(phases_of "$name" "$t0")| the VM's record: $(record_of "$name" "$t0" "$to")"
  phase_row "$name" "$t0" "$to" >>"$TDIR/$kind.phases"
  # Settled (not timed): bound to the target, running there, gone from the source.
  settled() { [ "$(vm_node "$vm")" = "$to" ] && [ "$(domstate "$to" "$vm")" = running ] && ! has_domain "$from" "$vm"; }
  wait_for 60 settled || echo "    note: 60 s after Succeeded: bound to '$(vm_node "$vm")', $to '$(domstate "$to" "$vm")', $from has the domain: $(has_domain "$from" "$vm" && echo yes || echo no)"
}

# virsh_run KIND DOM FROM TO RUN [FLAGS...]: one raw `virsh migrate`, timed;
# appends "WALL_S ELAPSED_MS DOWNTIME_MS BYTES" to $TDIR/KIND.virsh.
# RAW_DISK (a path inside the hosts' private /var/lib/libvirt): with
# --copy-storage-all, the target's file is made first and the source's
# removed after.
virsh_run() {
  local kind=$1 dom=$2 from=$3 to=$4 r=$5 ip t0 t1 rc=0 info elapsed down data prep="" cond
  shift 5
  ip=$(cluster_host_ip "$to")
  quiet_wait
  if [ -n "${RAW_DISK:-}" ]; then
    local p0 target
    target="$(cluster_host_dir "$to")$RAW_DISK"
    mkdir -p "$(dirname "$target")"
    p0=$EPOCHREALTIME
    qemu-img create -q -f qcow2 "$target" "$RAW_DISK_SIZE"
    prep=$(awk -v a="$p0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
  fi
  cond=$(conditions)
  t0=$EPOCHREALTIME
  # vmhost's flags: live, peer-to-peer, persistent on the target; its source
  # agent undefines the source's definition afterwards, as done here after
  # the source's job figures are read.
  timeout 900 virsh -c "$(cluster_libvirt_uri "$from")" migrate --live --p2p --persistent \
    "$@" "$dom" "qemu+tcp://$ip/system" "tcp://$ip" >"$TDIR/virsh.out" 2>&1 || rc=$?
  t1=$EPOCHREALTIME
  if [ $rc -ne 0 ]; then
    fail "[$kind] run $r virsh $from->$to: exit $rc: $(tr '\n' ' ' <"$TDIR/virsh.out")"
    FAILED_RUNS+=("$kind run $r virsh $from->$to: exit $rc: $(tr '\n' ' ' <"$TDIR/virsh.out")")
    [ -z "${RAW_DISK:-}" ] || rm -f "$(cluster_host_dir "$to")$RAW_DISK"
    return 1
  fi
  # The source's figures (the target's lack the disk's bytes), as vmhost reads them.
  info=$(timeout 20 virsh -c "$(cluster_libvirt_uri "$from")" domjobinfo --completed "$dom" 2>&1) || true
  [ -s "$TDIR/jobinfo.$kind" ] || printf '%s\n' "$info" >"$TDIR/jobinfo.$kind"
  timeout 60 virsh -c "$(cluster_libvirt_uri "$from")" undefine "$dom" >/dev/null 2>&1 ||
    echo "    note: undefine of $dom on $from failed"
  elapsed=$(sed -n 's/^Time elapsed: *\([0-9]*\) *ms *$/\1/p' <<<"$info")
  down=$(sed -n 's/^Total downtime: *\([0-9]*\) *ms *$/\1/p' <<<"$info")
  data=$(sed -n 's/^Data processed: *//p' <<<"$info")
  data=$(if [ -n "$data" ]; then to_bytes "$data"; else echo '?'; fi)
  [ -z "${RAW_DISK:-}" ] || rm -f "$(cluster_host_dir "$from")$RAW_DISK"
  awk -v a="$t0" -v b="$t1" -v e="${elapsed:-?}" -v d="${down:-?}" -v x="$data" \
    'BEGIN { printf "%.3f %s %s %s\n", b - a, e, d, x }' >>"$TDIR/$kind.virsh"
  awk -v r="$r" -v f="$from" -v t="$to" -v a="$t0" -v b="$t1" -v e="${elapsed:-?}" -v d="${down:-?}" \
    -v x="$data" -v c="$cond" -v k="$kind" -v p="$prep" \
    'BEGIN { printf "[%s] run %s virsh  %s->%s: wall %.2f s, migration %s ms, downtime %s ms, data %.1f MiB%s; %s\n",
             k, r, f, t, b - a, e, d, x / 1048576, p == "" ? "" : ", target file made in " p " ms", c }'
  [ "$(raw_state "$to" "$dom")" = running ] || echo "    note: $dom is '$(raw_state "$to" "$dom")' on $to"
}

# stats FILE COLUMN: "min median max n" (median of an even count: the mean of the middle two)
stats() {
  [ -s "$1" ] || { echo "- - - 0"; return; }
  cut -d' ' -f"$2" "$1" | grep -v -e '?' -e '^-*$' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "- - - 0"; exit }
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%s %s %s %d\n", v[1], m, v[NR], NR }'
}
median() { stats "$1" "$2" | cut -d' ' -f2; }

SUMMARY="$TDIR/summary"
: >"$SUMMARY"
TARGETS_MISSED=0
# summarize KIND TITLE
summarize() {
  local kind=$1 vw xw rt
  local vf="$TDIR/$kind.vmhost" xf="$TDIR/$kind.virsh"
  {
    echo "[$kind] $2"
    line() {  # LABEL FILE COLUMN UNIT SCALE
      stats "$2" "$3" | awk -v l="$1" -v u="$4" -v s="$5" '$4 == 0 { printf "  %-40s no data\n", l; next }
        { printf "  %-40s min %s, median %s, max %s %s (n=%d)\n", l, $1 * s, $2 * s, $3 * s, u, $4 }'
    }
    line "vmhost wall (apply -> Succeeded)" "$vf" 1 s 1
    line "virsh migrate wall" "$xf" 1 s 1
    line "vmhost migration time (libvirt)" "$vf" 2 ms 1
    line "virsh migration time (libvirt)" "$xf" 2 ms 1
    line "vmhost downtime (libvirt)" "$vf" 3 ms 1
    line "virsh downtime (libvirt)" "$xf" 3 ms 1
    line "vmhost data moved (MiB)" "$vf" 4 MiB 0.00000095367431640625
    line "virsh data moved (MiB)" "$xf" 4 MiB 0.00000095367431640625
    if [ -s "$TDIR/$kind.phases" ]; then
      local c i=0 row=""
      for c in $PHASE_COLUMNS; do
        i=$((i + 1))
        row+="$c $(median "$TDIR/$kind.phases" "$i"), "
      done
      echo "  vmhost, first seen (median s after the apply; rec: the VM's record, bound: the VM on the target):"
      echo "    ${row%, }"
    fi
  } >>"$SUMMARY"
  if [ -s "$TDIR/jobinfo.$kind" ]; then
    echo "bench: [$kind] virsh domjobinfo --completed on the source after run 1:"
    sed 's/^/    /' "$TDIR/jobinfo.$kind"
  fi
  vw=$(median "$vf" 1) xw=$(median "$xf" 1)
  if [ "$vw" != - ] && [ "$xw" != - ]; then
    rt=$(awk -v a="$vw" -v b="$xw" 'BEGIN { printf "%.2f", a / b }')
    local met=met
    awk -v r="$rt" 'BEGIN { exit !(r > 1.2) }' && { met="NOT met"; TARGETS_MISSED=$((TARGETS_MISSED + 1)); }
    echo "  ratio of median walls vmhost/virsh: $rt (target <= 1.2: $met)" >>"$SUMMARY"
    rt=$(awk -v a="$(median "$vf" 2)" -v b="$(median "$xf" 2)" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
    echo "  ratio of median migration times (libvirt) vmhost/virsh: $rt" >>"$SUMMARY"
  fi
  local d
  for d in vmhost virsh; do
    local md
    md=$(median "$TDIR/$kind.$d" 3)
    [ "$md" != - ] || continue
    if awk -v m="$md" -v x="$MAX_DOWNTIME_MS" 'BEGIN { exit !(m > x) }'; then
      echo "  $d median downtime $md ms: above the max downtime $MAX_DOWNTIME_MS ms (NOT met)" >>"$SUMMARY"
      TARGETS_MISSED=$((TARGETS_MISSED + 1))
    else
      echo "  $d median downtime $md ms <= max downtime $MAX_DOWNTIME_MS ms: met" >>"$SUMMARY"
    fi
  done
}

# alternate KIND VM DOM A RUNS [VIRSH FLAGS...]: vmhost A->B, virsh A->B,
# vmhost B->A, virsh B->A, ... RUNS of each. Each side goes on from where its
# guest is (a failed run leaves it on its source).
alternate() {
  local kind=$1 vm=$2 dom=$3 a=$4 runs=$5 r vsrc rsrc
  shift 5
  vsrc=$a rsrc=$a
  for r in $(seq 1 "$runs"); do
    vmhost_run "$kind" "$vm" "$vsrc" "$(other_host "$vsrc")" "$r" || true
    [ -z "$(vm_node "$vm")" ] || vsrc=$(vm_node "$vm")
    sleep 1
    virsh_run "$kind" "$dom" "$rsrc" "$(other_host "$rsrc")" "$r" "$@" || true
    rsrc=$(raw_where "$dom")
    [ "$rsrc" != none ] || { fail "[$kind] the raw domain $dom runs nowhere"; return 1; }
    sleep 1
  done
}

delete_vm() {
  vmctl ctl delete vm "$1" >/dev/null 2>&1 || true
  gone_vm() { ! vmctl ctl get vm "$1" >/dev/null 2>&1; }
  wait_for 120 gone_vm "$1" || echo "bench: note: VM $1 still there 120 s after its delete"
}

# guest_up KIND VM DOM: both guests booted, then 15 s for them to settle (a
# migration right after the boot is the slowest; docs/benchmarks.md).
guests_booted() { booted_vm "$(vm_node "$1")" "$1" && booted_raw "$(raw_where "$2")" "$2"; }

# ---- 1. shared-dir: nothing copied -------------------------------------------
phase_shared() {
  local vm=bs dom="bench-raw-s-$CLUSTER_ID" a
  write_guest_vm_args "$TDIR/$vm.yaml" "$vm" 128Mi "vmhost.marker=vda:$vm" "  disks:
  - {name: data}
  volumes:
  - name: data
    persistent: {claimName: $vm-data, size: 16Mi}"
  vmctl ctl apply -f "$TDIR/$vm.yaml" >/dev/null
  need "[shared] $vm reaches Running" wait_phase ctl "$vm" Running 300 || return 1
  a=$(vm_node "$vm")
  mkdir -p "$SHARED/raw"
  qemu-img create -q -f qcow2 "$SHARED/raw/$dom.qcow2" 16M
  raw_xml "$dom" "vmhost.marker=vda:$dom" "$SHARED/raw/$dom.qcow2" >"$TDIR/$dom.xml"
  need "[shared] the plain domain $dom starts on $a" raw_start "$a" "$dom" "$TDIR/$dom.xml" || return 1
  need "[shared] both guests booted" wait_for 120 guests_booted "$vm" "$dom" || return 1
  echo "bench: [shared] vmhost's domain default_$vm and the plain $dom on $a; virsh's max downtime for $dom: $(
    timeout 20 virsh -c "$(cluster_libvirt_uri "$a")" migrate-getmaxdowntime "$dom" 2>/dev/null || echo '?') ms"
  sleep 15
  alternate shared "$vm" "$dom" "$a" "$RUNS" --unsafe
  summarize shared "128 MiB guest, 16 MiB disk on shared-dir (not copied), $RUNS runs each, alternating"
  delete_vm "$vm"
  raw_remove "$dom"
}

# ---- 2. local: a 1 GiB disk copied -------------------------------------------
phase_local() {
  local vm=bl dom="bench-raw-l-$CLUSTER_ID" a img="$TDIR/fill.qcow2"
  stop_agents
  start_agents local
  # The image: 1 GiB, the marker at its start, FILL_MIB MiB of random data from 1 MiB on.
  qemu-img create -q -f raw "$TDIR/fill.raw" 1G
  printf 'vmhost-marker:%s\n' "bench-fill" | dd of="$TDIR/fill.raw" conv=notrunc status=none
  if [ "$FILL_MIB" -gt 0 ]; then
    dd if=/dev/urandom of="$TDIR/fill.raw" bs=1M seek=1 count="$FILL_MIB" conv=notrunc status=none
  fi
  qemu-img convert -q -f raw -O qcow2 "$TDIR/fill.raw" "$img"
  rm -f "$TDIR/fill.raw"
  echo "bench: [local] image: $(qemu-img info "$img" | sed -n 's/^disk size: /disk size /p; s/^virtual size: \([^(]*\).*/virtual size \1/p' | tr '\n' ' ')"
  write_guest_vm_args "$TDIR/$vm.yaml" "$vm" 128Mi "vmhost.marker=vda:$vm" "  disks:
  - {name: data}
  volumes:
  - name: data
    persistent: {claimName: $vm-data, size: 1Gi, image: {path: $img}}"
  vmctl ctl apply -f "$TDIR/$vm.yaml" >/dev/null
  need "[local] $vm reaches Running" wait_phase ctl "$vm" Running 300 || return 1
  a=$(vm_node "$vm")
  RAW_DISK="/var/lib/libvirt/images/$dom.qcow2" RAW_DISK_SIZE=1G
  mkdir -p "$(cluster_host_dir "$a")/var/lib/libvirt/images"
  cp --sparse=always "$img" "$(cluster_host_dir "$a")$RAW_DISK"
  raw_xml "$dom" "vmhost.marker=vda:$dom" "$RAW_DISK" >"$TDIR/$dom.xml"
  need "[local] the plain domain $dom starts on $a" raw_start "$a" "$dom" "$TDIR/$dom.xml" || return 1
  need "[local] both guests booted" wait_for 120 guests_booted "$vm" "$dom" || return 1
  echo "bench: [local] $vm's volume on $a: $(find "$(cluster_host_dir "$a")/pool" -name "*$vm-data*" -exec du -h --apparent-size {} \; -exec du -h {} \; 2>/dev/null | awk '{print $1}' | tr '\n' ' ')(apparent, allocated)"
  echo "bench: [local] markers: $(grep -ho 'vmhost-guest: marker vda [^ ]*' "$(console_of "$a" "$vm")" "$(cluster_guest_console "$a" "$dom")" | tr -d '\r' | tr '\n' ';')"
  sleep 15
  alternate local "$vm" "$dom" "$a" "$DISK_RUNS" --copy-storage-all
  RAW_DISK=
  summarize local "128 MiB guest, 1 GiB local disk copied (image with ${FILL_MIB} MiB of random data), $DISK_RUNS runs each, alternating"
  delete_vm "$vm"
  raw_remove "$dom"
}

# ---- 3. a drain of 4 LiveMigrate VMs -----------------------------------------
DRAIN_VMS="dr1 dr2 dr3 dr4"
all_on() {  # HOST: every drain VM Running on HOST
  local vm
  for vm in $DRAIN_VMS; do
    [ "$(vm_node "$vm")" = "$1" ] && [ "$(domstate "$1" "$vm")" = running ] || return 1
  done
}
all_booted() { local vm; for vm in $DRAIN_VMS; do booted_vm "$1" "$vm" || return 1; done; }
phase_drain() {
  local vm src dst r t0 t1 t2 rc cond
  vmctl ctl cordon host2 >/dev/null
  for vm in $DRAIN_VMS; do
    write_guest_vm_args "$TDIR/$vm.yaml" "$vm" 128Mi "vmhost.marker=vda:$vm" "  evictionStrategy: LiveMigrate
  disks:
  - {name: data}
  volumes:
  - name: data
    persistent: {claimName: $vm-data, size: 16Mi}"
    vmctl ctl apply -f "$TDIR/$vm.yaml" >/dev/null
  done
  need "[drain] 4 VMs run on host1" wait_for 300 all_on host1 || return 1
  need "[drain] 4 guests booted" wait_for 120 all_booted host1 || return 1
  vmctl ctl uncordon host2 >/dev/null
  sleep 15
  src=host1
  for r in $(seq 1 "$DRAIN_RUNS"); do
    dst=$(other_host "$src")
    quiet_wait
    cond=$(conditions)
    rc=0
    t0=$EPOCHREALTIME
    vmctl ctl drain "$src" --timeout=15m >"$TDIR/drain$r.log" 2>&1 || rc=$?
    t1=$EPOCHREALTIME
    wait_for 120 all_on "$dst" || true
    t2=$EPOCHREALTIME
    # The migrations this drain made: the watch's lines since t0.
    awk -v t0="$t0" -v t1="$t1" '$1 >= t0 && NF >= 3 { phase[$2] = $3; if ($3 == "Succeeded") done[$2] = $1
        n = 0; for (m in phase) if (phase[m] == "Scheduling" || phase[m] == "PreparingTarget" || phase[m] == "Running") n++
        if (n > max) max = n }
      END { for (m in done) printf "%s %.2f\n", m, done[m] - t0 >"/dev/stderr"; print max + 0 }' \
      "$TDIR/watch" 2>"$TDIR/drain$r.done" >"$TDIR/drain$r.max"
    local names=() m detail=""
    mapfile -t names < <(sort -k2 -g "$TDIR/drain$r.done" | cut -d' ' -f1)
    for m in "${names[@]}"; do
      detail+="$(mig_field "$m" '.spec.vmName} {.status.result.totalMs} {.status.result.downtimeMs' |
        awk '{ printf "%s %s/%s ms", $1, $2, $3 }'), "
    done
    if [ $rc -ne 0 ] || ! all_on "$dst"; then
      fail "[drain] run $r: vmctl drain $src exit $rc; all on $dst: $(all_on "$dst" && echo yes || echo no)"
      FAILED_RUNS+=("drain run $r ($src): vmctl drain exit $rc: $(tail -n 5 "$TDIR/drain$r.log" | tr '\n' ' ')")
      sed 's/^/    /' "$TDIR/drain$r.log"
      kctl ctl get virtualmachinemigrations -o wide 2>/dev/null | sed 's/^/    /' || true
    else
      awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }' >>"$TDIR/drain.times"
    fi
    awk -v r="$r" -v s="$src" -v d="$dst" -v a="$t0" -v b="$t1" -v c="$t2" -v n="${#names[@]}" \
      -v mx="$(cat "$TDIR/drain$r.max")" -v cond="$cond" \
      'BEGIN { printf "[drain] run %s: vmctl drain %s: %.1f s (all 4 Running on %s %.1f s after the start), %d migrations Succeeded, at most %d in flight; %s\n",
               r, s, b - a, d, c - a, n, mx, cond }'
    echo "    migrations (vm:migration/downtime), in order of completion: $detail"
    echo "    completed at (s after the drain started): $(sort -k2 -g "$TDIR/drain$r.done" | awk '{ printf "%s ", $2 }')"
    echo "drain $src -> $dst: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s; ${#names[@]} migrations, at most $(cat "$TDIR/drain$r.max") in flight; $detail" >>"$TDIR/drain.lines"
    vmctl ctl uncordon "$src" >/dev/null
    sleep 5
    src=$dst
  done
  {
    echo "[drain] 4 LiveMigrate VMs (128 MiB, 16 MiB shared-dir disk each), $DRAIN_RUNS drains"
    stats "$TDIR/drain.times" 1 | awk '$4 == 0 { print "  vmctl drain: no successful drain"; next }
      { printf "  vmctl drain total time: min %.1f, median %.1f, max %.1f s (n=%d)\n", $1, $2, $3, $4 }'
    sed 's/^/  /' "$TDIR/drain.lines" 2>/dev/null || true
  } >>"$SUMMARY"
  for vm in $DRAIN_VMS; do vmctl ctl delete vm "$vm" >/dev/null 2>&1 || true; done
  for vm in $DRAIN_VMS; do delete_vm "$vm"; done
}

start_agents shared-dir
start_watchers
# libvirtd probes QEMU's capabilities on first use, not at its start: under
# TCG that added ~3.5 s to the first migration into a host that had not run
# a domain yet. Probed here, before anything is measured.
for h in host1 host2; do
  t0=$EPOCHREALTIME
  timeout 300 virsh -c "$(cluster_libvirt_uri "$h")" domcapabilities --virttype qemu --arch x86_64 \
    --machine q35 >/dev/null || echo "bench: note: domcapabilities on $h failed"
  echo "bench: $h: QEMU capabilities probed in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
done
case ",$PHASES," in *,shared,*) phase_shared || true ;; esac
case ",$PHASES," in *,drain,*) phase_drain || true ;; esac
case ",$PHASES," in *,local,*) phase_local || true ;; esac

echo
echo "==== summary: vmhost_migration_bench ($(date -u +%FT%TZ)) ===="
echo "machine: nproc $(nproc), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(
  awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), QEMU TCG, load now $(cut -d' ' -f1-3 /proc/loadavg); waited ${QUIET_USED} s for other tests"
echo "build: $BUILD_AT_START$([ "$(build_id)" = "$BUILD_AT_START" ] || echo "; at the end: $(build_id) (rebuilt during the run)")"
cat "$SUMMARY"
if [ ${#FAILED_RUNS[@]} -gt 0 ]; then
  echo "failed runs (${#FAILED_RUNS[@]}):"
  printf '  %s\n' "${FAILED_RUNS[@]}"
fi
echo "===="
if [ "$ENFORCE" = 1 ] && [ "$TARGETS_MISSED" -gt 0 ]; then fail "$TARGETS_MISSED target(s) not met"; fi
finish
