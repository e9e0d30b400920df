#!/usr/bin/env bash
# Level-triggered: kill -9 the all-in-one host while N VMs (default 20) run
# on real QEMU, restart it: the same N domains keep running (same QEMU
# pids: none restarted), none duplicated, none lost; status converges.
# usage: restart_qemu_test.sh BUILD_DIR SOURCE_DIR [N]
BUILD=$1
SRC=$2
N=${3:-20}
. "$SRC/tests/lib/harness.sh"
. "$SRC/tests/e2e/lib_qemu.sh"
require_tools pkill:procps
EXTRA_CLEANUP='pkill -9 -f "qemu-system.*guest=default_r[0-9]*," || true'

write_qemu_config "$WORK/config.yaml" "$WORK/aio"
start_aio aio "$WORK/config.yaml" restart-node
for i in $(seq 1 "$N"); do
  write_guest_vm "$WORK/r$i.yaml" "r$i" 64Mi
  cat "$WORK/r$i.yaml"; echo "---"
done >"$WORK/all.yaml"
check "vmctl apply $N VMs" vmctl aio apply -f "$WORK/all.yaml"
running() { [ "$(vmctl aio get | grep -c ' Running ')" -eq "$N" ]; }
check "all $N reach Running" wait_for 400 running
for i in $(seq 1 "$N"); do qemu_pids "default_r$i"; done | sort >"$WORK/pids.before"
check "$N QEMU processes" test "$(wc -l <"$WORK/pids.before")" -eq "$N"

stop_aio aio KILL
check "the guests survive the host's kill -9" test "$(for i in $(seq 1 "$N"); do qemu_pids "default_r$i"; done | wc -l)" -eq "$N"
mv "$WORK/aio.log" "$WORK/aio-before-kill.log"
start_aio aio "$WORK/config.yaml" restart-node
check "all $N still Running after the restart" wait_for 120 running
sleep 8  # more than a resync period: let the agent act on everything it adopted
for i in $(seq 1 "$N"); do qemu_pids "default_r$i"; done | sort >"$WORK/pids.after"
check "the same QEMU processes: none restarted, none duplicated, none lost" cmp -s "$WORK/pids.before" "$WORK/pids.after"
check "no reconcile error after the restart" sh -c "! grep -q 'vm default/r' '$WORK/aio.log'"
for i in $(seq 1 "$N"); do vmctl aio delete "r$i" >/dev/null; done
gone() { [ -z "$(for i in $(seq 1 "$N"); do qemu_pids "default_r$i"; done)" ]; }
check "every guest is gone after delete" wait_for 120 gone
finish
