#!/usr/bin/env bash
# Storage, seen from inside a real guest (TCG), for each storage plugin given
# (default: local shared-dir). One VM with three data disks:
#   vda keep    persistent {claimName, size}, reclaimPolicy Retain
#   vdb drop    persistent {claimName, image: a base holding marker "base"}, Delete
#   vdc scratch ephemeral {image: a blank qcow2 base}: an overlay
# The guest (vmhost.marker=) prints each disk's marker and writes one where
# there is none. Proves: the marker written on vda survives vmctl stop/start
# (and is on the pool file, read on the host); vdb is a copy of its image;
# vdc's overlay exists while running, is gone when stopped (the guest's
# write with it) and after delete, and its base is untouched; delete removes
# the Delete disk and keeps the Retain one.
# The runs share one qemu:///embed root: only the first probes QEMU.
# usage: storage_qemu_test.sh BUILD_DIR SOURCE_DIR [PLUGIN...]
BUILD=$1
SRC=$2
shift 2
PLUGINS=("$@")
[ ${#PLUGINS[@]} -gt 0 ] || PLUGINS=(local shared-dir)
. "$SRC/tests/lib/harness.sh"
. "$SRC/tests/e2e/lib_qemu.sh"
EMBED="$WORK/libvirt"
EXTRA_CLEANUP='kill_embed_qemus "$EMBED"'

make_marked_image "$WORK/base-marked.qcow2" qcow2 16M base
make_marked_image "$WORK/base-blank.qcow2" qcow2 16M
blank_sha=$(sha256sum <"$WORK/base-blank.qcow2")
check "the marked base image holds its marker" test "$(disk_marker "$WORK/base-marked.qcow2")" = base

for plugin in "${PLUGINS[@]}"; do
  echo "=== storage $plugin"
  root="$WORK/store-$plugin"
  case $plugin in
    local) storage="{name: local, config: {pool: $root}}" ;;
    shared-dir) storage="{name: shared-dir, config: {path: $root}}" ;;
    *) echo "FAIL: unknown storage plugin $plugin"; exit 1 ;;
  esac
  write_embed_config "$WORK/$plugin.yaml" "$EMBED" "$storage"
  aio="aio_${plugin//-/_}"
  data="$WORK/$aio"
  start_aio "$aio" "$WORK/$plugin.yaml" storage-node
  vm="st-$plugin"
  console="$data/node/console/default_$vm.log"
  keep="$root/persistent/default/$vm-keep.qcow2"
  drop="$root/persistent/default/$vm-drop.qcow2"
  overlay="$root/vms/default/$vm/scratch.ephemeral.qcow2"
  write_guest_vm_args "$WORK/$vm.yaml" "$vm" 128Mi \
    "vmhost.marker=vda:keep-1 vmhost.marker=vdb:drop-1 vmhost.marker=vdc:scratch-1" "  disks:
  - {name: keep, bus: virtio}
  - {name: drop, bus: virtio}
  - {name: scratch, bus: virtio}
  volumes:
  - name: keep
    persistent: {claimName: $vm-keep, size: 16Mi, reclaimPolicy: Retain}
  - name: drop
    persistent: {claimName: $vm-drop, image: {path: $WORK/base-marked.qcow2}, reclaimPolicy: Delete}
  - name: scratch
    ephemeral: {image: {path: $WORK/base-blank.qcow2}}"
  require "[$plugin] vmctl apply" vmctl "$aio" apply -f "$WORK/$vm.yaml"
  require "[$plugin] the VM reaches Running" wait_phase "$aio" "$vm" Running 240
  check "[$plugin] the guest booted" wait_for 90 grep -q "vmhost-guest: booted" "$console"
  grep "vmhost-guest: \(disks\|marker\)" "$console" || true
  check "[$plugin] the guest sees three disks" console_has "$console" 1 "vmhost-guest: disks vda vdb vdc$"
  check "[$plugin] boot 1: vda was blank, the guest wrote keep-1" grep -q "vmhost-guest: marker vda wrote keep-1" "$console"
  check "[$plugin] boot 1: vdb is a copy of the marked image" console_has "$console" 1 "vmhost-guest: marker vdb base$"
  check "[$plugin] boot 1: vdc (overlay on a blank base) was blank, the guest wrote scratch-1" \
    grep -q "vmhost-guest: marker vdc wrote scratch-1" "$console"
  check "[$plugin] the persistent files exist" test -f "$keep" -a -f "$drop"
  check "[$plugin] the overlay exists while the VM runs" test -f "$overlay"
  backing=$(qemu-img info -U --output=json "$overlay" 2>/dev/null | sed -n 's/^ *"backing-filename": "\(.*\)",\{0,1\}$/\1/p' | head -n 1 || true)
  check "[$plugin] the overlay is backed by the base image ($backing)" test "$backing" = "$WORK/base-blank.qcow2"
  seen=$(lines_of "$console")

  check "[$plugin] vmctl stop" vmctl "$aio" stop "$vm"
  check "[$plugin] the VM reaches Stopped" wait_phase "$aio" "$vm" Stopped 90
  no_qemu() { ! embed_qemu_pids "$EMBED" | grep -q "^default_$vm "; }
  check "[$plugin] no QEMU after stop" wait_for 30 no_qemu
  check "[$plugin] the overlay is gone while stopped" wait_for 30 test ! -e "$overlay"
  check "[$plugin] the pool file of vda holds keep-1 (read on the host)" test "$(disk_marker "$keep")" = keep-1

  check "[$plugin] vmctl start" vmctl "$aio" start "$vm"
  check "[$plugin] the VM runs again" wait_phase "$aio" "$vm" Running 120
  booted2() { console_from "$console" $((seen + 1)) | grep -q "vmhost-guest: booted"; }
  check "[$plugin] the guest booted a second time" wait_for 90 booted2
  console_from "$console" $((seen + 1)) | grep "vmhost-guest: marker" || true
  check "[$plugin] boot 2: vda still holds keep-1" console_has "$console" $((seen + 1)) "vmhost-guest: marker vda keep-1$"
  check "[$plugin] boot 2: vdb still holds base" console_has "$console" $((seen + 1)) "vmhost-guest: marker vdb base$"
  check "[$plugin] boot 2: vdc is a fresh overlay (the write is gone)" console_has "$console" $((seen + 1)) "vmhost-guest: marker vdc none$"
  check "[$plugin] the overlay exists again" test -f "$overlay"

  check "[$plugin] vmctl delete" vmctl "$aio" delete "$vm"
  check "[$plugin] no QEMU after delete" wait_for 60 no_qemu
  check "[$plugin] the overlay is removed" wait_for 30 test ! -e "$overlay"
  check "[$plugin] the Delete disk is removed" wait_for 30 test ! -e "$drop"
  check "[$plugin] the Retain disk is kept" test -f "$keep"
  check "[$plugin] the kept disk still holds keep-1" test "$(disk_marker "$keep")" = keep-1
  check "[$plugin] the ephemeral base image is untouched" test "$(sha256sum <"$WORK/base-blank.qcow2")" = "$blank_sha"
  check "[$plugin] the domain is undefined" wait_for 30 test ! -e "$EMBED/etc/qemu/default_$vm.xml"
  stop_aio "$aio"
done
finish
