# Helpers for e2e tests with real QEMU guests (TCG) through qemu:///embed.
# Source after tests/lib/harness.sh.

GUEST_DIR=$("$SRC/deploy/guest/build-guest.sh" >"$WORK/guest-build.log" 2>&1 && \
  echo "${VMHOST_CACHE_DIR:-$HOME/.cache/vmhost}/guest") || {
  echo "FAIL: cannot build the test guest:"; cat "$WORK/guest-build.log"; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "FAIL: qemu-system-x86_64 is not installed"; exit 1; }

# write_qemu_config FILE DATA_DIR: an all-in-one config on qemu:///embed.
write_qemu_config() {
  cat >"$1" <<YAML
libvirt:
  uri: "qemu:///embed?root={dataDir}/libvirt"
node:
  stopGracePeriodSeconds: 20
  resyncSeconds: 5
plugins:
  scheduler: {name: default, config: {cpuAllocationRatio: 10}}
  storage: {name: local, config: {pool: $2/pool}}
YAML
}

# write_guest_vm FILE NAME [MEMORY] [EXTRA SPEC YAML]: a VM booting the tiny guest.
write_guest_vm() {
  local file=$1 name=$2 memory=${3:-128Mi}
  cat >"$file" <<YAML
apiVersion: vmhost.io/v1
kind: VirtualMachine
metadata:
  name: $name
spec:
  cpu: {cores: 1}
  memory: $memory
  boot:
    kernel: $GUEST_DIR/vmlinux
    initrd: $GUEST_DIR/initramfs.gz
    cmdline: "console=ttyS0 quiet cryptomgr.notests"
${4:-}
YAML
}

# qemu_pids DOMAIN: pids of the QEMU processes running that domain.
qemu_pids() { pgrep -f "qemu-system.*guest=$1," || true; }
