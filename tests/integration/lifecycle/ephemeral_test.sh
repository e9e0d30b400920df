#!/usr/bin/env bash
# An ephemeral volume's overlay lives while the VM's domain runs: created on
# start, removed on stop (vmctl stop), created afresh (a new file) on the
# next start, removed on delete; the base image is never written. On
# libvirt's test driver (no QEMU), so it runs in seconds; the guest-visible
# side is e2e_storage_qemu.
# usage: ephemeral_test.sh BUILD_DIR SOURCE_DIR
BUILD=$1
SRC=$2
. "$SRC/tests/lib/harness.sh"
require_tools qemu-img:qemu-utils

cat >"$WORK/config.yaml" <<YAML
libvirt: {uri: "test:///default"}
node: {stopGracePeriodSeconds: 5, resyncSeconds: 2}
plugins:
  storage: {name: local, config: {pool: $WORK/pool}}
YAML
start_aio aio "$WORK/config.yaml" eph-node
qemu-img create -q -f qcow2 "$WORK/base.qcow2" 16M
base_sha=$(sha256sum <"$WORK/base.qcow2")
cat >"$WORK/vm.yaml" <<YAML
apiVersion: vmhost.io/v1
kind: VirtualMachine
metadata: {name: eph}
spec:
  cpu: {cores: 1}
  memory: 64Mi
  disks: [{name: scratch}]
  volumes: [{name: scratch, ephemeral: {image: {path: $WORK/base.qcow2}}}]
YAML
overlay="$WORK/pool/vms/default/eph/scratch.ephemeral.qcow2"
check "vmctl apply" vmctl aio apply -f "$WORK/vm.yaml"
check "the VM reaches Running" wait_phase aio eph Running 30
check "the overlay exists while it runs" test -f "$overlay"
# Tag the file (nothing on the test driver writes it): a re-created overlay
# has a fresh mtime, a kept one this old one.
touch -d @1000000000 "$overlay" 2>/dev/null || true
check "vmctl stop" vmctl aio stop eph
check "the VM reaches Stopped" wait_phase aio eph Stopped 30
check "the overlay is gone while stopped" wait_for 10 test ! -e "$overlay"
check "vmctl start" vmctl aio start eph
check "the VM runs again" wait_phase aio eph Running 30
check "a new overlay exists" test -f "$overlay"
check "the new overlay is a new file (not the tagged one)" test "$(stat -c %Y "$overlay" 2>/dev/null || echo 1000000000)" != 1000000000
check "vmctl delete" vmctl aio delete eph
check "the overlay is removed on delete" wait_for 20 test ! -e "$overlay"
check "the base image is untouched" test "$(sha256sum <"$WORK/base.qcow2")" = "$base_sha"
finish
