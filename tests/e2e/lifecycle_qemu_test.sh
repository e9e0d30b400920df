#!/usr/bin/env bash
# A real QEMU guest (TCG) through the whole lifecycle: create, Running, the
# guest's console proves it booted, stop, start again, delete; no QEMU
# process, disk, console log or local state left behind.
# usage: lifecycle_qemu_test.sh BUILD_DIR SOURCE_DIR
BUILD=$1
SRC=$2
. "$SRC/tests/lib/harness.sh"
. "$SRC/tests/e2e/lib_qemu.sh"
require_tools pkill:procps
EXTRA_CLEANUP='pkill -9 -f "qemu-system.*guest=default_e2e-" || true'

write_qemu_config "$WORK/config.yaml" "$WORK/aio"
start_aio aio "$WORK/config.yaml" e2e-node
data="$WORK/aio"
console="$data/node/console/default_e2e-vm.log"

write_guest_vm "$WORK/vm.yaml" e2e-vm 128Mi "  disks:
  - {name: scratch, bus: virtio}
  volumes:
  - name: scratch
    empty: {size: 16Mi}"
check "vmctl apply" vmctl aio apply -f "$WORK/vm.yaml"
# The first start in a new embed root probes QEMU's capabilities (tens of seconds).
check "the VM reaches Running" wait_phase aio e2e-vm Running 240
check "the guest's console shows it booted" wait_for 90 grep -q "vmhost-guest: booted" "$console"
grep "vmhost-guest: booted" "$console" | head -n 1
check "one QEMU process runs it" test "$(qemu_pids default_e2e-vm | wc -l)" -eq 1

# vmctl console: a line typed through the API reaches the guest's shell and
# its answer comes back. $((6*7)) is evaluated by the guest, so "-42" proves
# the shell ran the line (the terminal's echo of the line shows "$((6*7))").
console_line() {
  printf 'echo vmhost-console-$((6*7))\n' |
    timeout 60 "$VMCTL_BIN" --server "$API_aio" console e2e-vm >"$WORK/console.out" 2>"$WORK/console.err"
  grep -q "vmhost-console-42" "$WORK/console.out"
}
check "vmctl console: the guest's shell answers a line sent through the API" wait_for 60 console_line
cat "$WORK/console.err"
check "the console said how to detach" grep -q "escape character is \^\]" "$WORK/console.err"
# Ctrl-] detaches at once, with exit code 0, and the guest keeps running.
detach_fast() {
  local t0=$SECONDS
  printf 'echo detaching\n\035' | timeout 20 "$VMCTL_BIN" --server "$API_aio" console e2e-vm \
    >/dev/null 2>&1 && [ $((SECONDS - t0)) -lt 5 ]
}
check "Ctrl-] detaches (exit 0, within 5 s)" detach_fast
check "the guest still runs after the detach" test "$(qemu_pids default_e2e-vm | wc -l)" -eq 1
missing_console() {
  ! "$VMCTL_BIN" --server "$API_aio" console no-such-vm </dev/null >/dev/null 2>"$WORK/console-missing.err" &&
    grep -q 'not found' "$WORK/console-missing.err"
}
check "a console on a missing VM is refused with NotFound" missing_console
disk_files() { find "$data/pool" -type f -name 'scratch*' 2>/dev/null; }
check "its scratch disk exists in the pool" test -n "$(disk_files)"
# qemu:///embed keeps persistent definitions in <root>/etc/qemu/<domain>.xml.
check "the domain is defined" test -f "$data/libvirt/etc/qemu/default_e2e-vm.xml"

check "vmctl stop" vmctl aio stop e2e-vm
check "the VM reaches Stopped" wait_phase aio e2e-vm Stopped 90
# wait_for re-runs its command: the conditions are functions, evaluated at every poll.
no_qemu() { [ -z "$(qemu_pids default_e2e-vm)" ]; }
no_disk() { [ -z "$(disk_files)" ]; }
no_state() { [ -z "$(ls -A "$data/node/vms")" ]; }
check "no QEMU process after stop" wait_for 20 no_qemu
stopped_console() {
  ! "$VMCTL_BIN" --server "$API_aio" console e2e-vm </dev/null >/dev/null 2>"$WORK/console-stopped.err" &&
    grep -q 'is not running' "$WORK/console-stopped.err"
}
check "a console on a stopped VM is refused: not running" stopped_console
cat "$WORK/console-stopped.err"
check "the disk outlives a stop" test -n "$(disk_files)"

check "vmctl start" vmctl aio start e2e-vm
check "the VM runs again" wait_phase aio e2e-vm Running 120
check "the guest booted a second time" wait_for 90 sh -c "[ \$(grep -c 'vmhost-guest: booted' '$console') -ge 2 ]"

check "vmctl delete" vmctl aio delete e2e-vm
check "no QEMU process after delete" wait_for 60 no_qemu
check "the disk is released" wait_for 30 no_disk
check "the console log is removed" wait_for 30 test ! -e "$console"
check "no local state is left" wait_for 30 no_state
check "the domain is undefined" test ! -e "$data/libvirt/etc/qemu/default_e2e-vm.xml"
finish
