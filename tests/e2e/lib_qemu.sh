# Helpers for e2e tests with real QEMU guests (TCG) through qemu:///embed.
# Source after tests/lib/harness.sh.

# QEMU and its image tool; pgrep for QEMU's pids; busybox's ping and nc talk
# to the guests; ip for the tests' bridges and taps.
require_tools qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils pgrep:procps \
  busybox:busybox-static ip:iproute2
GUEST_DIR=$("$SRC/deploy/guest/build-guest.sh" >"$WORK/guest-build.log" 2>&1 && \
  echo "${VMHOST_CACHE_DIR:-$HOME/.cache/vmhost}/guest") || {
  echo "FAIL: cannot build the test guest:"; cat "$WORK/guest-build.log"; exit 1; }

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

# ---- Guest-visible proofs (storage, bridge NIC, restart) ----

# write_embed_config FILE LIBVIRT_ROOT STORAGE_YAML [NETWORK_YAML]: an
# all-in-one config on qemu:///embed with an explicit embed root, so that
# several all-in-one runs of one test share libvirt's QEMU capability cache
# (the probe costs tens of seconds per new root), and the given plugin slots,
# e.g. "{name: local, config: {pool: /x}}".
write_embed_config() {
  cat >"$1" <<YAML
libvirt:
  uri: "qemu:///embed?root=$2"
node:
  stopGracePeriodSeconds: 20
  resyncSeconds: 5
plugins:
  scheduler: {name: default, config: {cpuAllocationRatio: 10}}
  storage: $3
${4:+  network: $4}
YAML
}

# write_guest_vm_args FILE NAME MEMORY CMDLINE_EXTRA [EXTRA SPEC YAML]: as
# write_guest_vm, with guest hooks (vmhost.ip=, vmhost.echo=, vmhost.marker=;
# see deploy/guest/build-guest.sh) appended to the kernel command line.
write_guest_vm_args() {
  local file=$1 name=$2 memory=$3
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
    cmdline: "console=ttyS0 quiet cryptomgr.notests $4"
${5:-}
YAML
}

# disk_marker IMAGE: the marker the guest hook vmhost.marker= wrote at the
# start of a disk image (qcow2 or raw), read on the host; "none" if there is
# none. Not for images a running QEMU holds (qemu-img takes the lock).
disk_marker() {
  local raw held
  raw=$(mktemp "$WORK/marker.XXXXXX")
  qemu-img dd -O raw if="$1" of="$raw" bs=512 count=1 >/dev/null 2>&1 || { rm -f "$raw"; echo error; return; }
  held=$(head -c 80 "$raw" | tr -d '\000' | head -n 1)
  rm -f "$raw"
  case $held in vmhost-marker:?*) echo "${held#vmhost-marker:}" ;; *) echo none ;; esac
}

# make_marked_image FILE FORMAT SIZE [TEXT]: a base image made with qemu-img,
# holding the marker TEXT at its start when given.
make_marked_image() {
  local raw="$1.raw"
  qemu-img create -q -f raw "$raw" "$3"
  if [ -n "${4:-}" ]; then
    printf 'vmhost-marker:%s\n' "$4" | dd of="$raw" conv=notrunc status=none
  fi
  if [ "$2" = raw ]; then mv "$raw" "$1"; else qemu-img convert -q -f raw -O "$2" "$raw" "$1" && rm -f "$raw"; fi
}

# console_from FILE LINE: the console log from line LINE on (a later boot's
# lines: the node appends every boot to the same file).
console_from() { tail -n "+$2" "$1" 2>/dev/null || true; }
lines_of() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
# console_has FILE FROM_LINE REGEX: a line of the console from FROM_LINE on
# matches REGEX (the serial console ends lines with CR LF; the CR is dropped).
console_has() { console_from "$1" "$2" | tr -d '\r' | grep -q -- "$3"; }

# embed_qemu_pids LIBVIRT_ROOT: "DOMAIN PID" of every QEMU that embed root
# started (from libvirt's pid files), for precise cleanup and counting.
embed_qemu_pids() {
  local f pid
  for f in "$1"/run/qemu/*.pid; do
    [ -f "$f" ] || continue
    [ "${f##*/}" = driver.pid ] && continue  # the embedding process itself
    pid=$(cat "$f" 2>/dev/null) || continue
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$(basename "$f" .pid) $pid"
  done
  return 0
}

# kill_embed_qemus LIBVIRT_ROOT: kill -9 the QEMUs of that embed root only.
kill_embed_qemus() {
  local _d pid
  embed_qemu_pids "$1" | while read -r _d pid; do kill -9 "$pid" 2>/dev/null || true; done
}

# A test that needs its own network runs itself in a new network namespace
# (the namespace holds only lo and what the test creates, and disappears with
# the test's last process; the root namespace's network is never touched).
# Its first lines, before sourcing harness.sh:
#   [ -n "${VMHOST_TEST_NETNS:-}" ] ||
#     VMHOST_TEST_NETNS=1 exec unshare --net --fork --kill-child=SIGTERM "$0" "$@"
# then, after sourcing this file, require_private_netns.
require_private_netns() {
  [ -n "${VMHOST_TEST_NETNS:-}" ] || { echo "FAIL: not re-executed in a private network namespace"; exit 1; }
  [ "$(readlink /proc/self/ns/net)" != "$(readlink /proc/1/ns/net)" ] ||
    { echo "FAIL: still in the root network namespace (unshare --net failed?)"; exit 1; }
  ip link set lo up || { echo "FAIL: cannot bring lo up in the test's network namespace"; exit 1; }
}

# make_test_bridge NAME ADDR/PREFIX: a bridge with an address, in the test's
# private network namespace.
make_test_bridge() {
  if ! { ip link add "$1" type bridge && ip addr add "$2" dev "$1" && ip link set "$1" up; }; then
    echo "FAIL: cannot create bridge $1"
    exit 1
  fi
}

# status_mac NAME VM [INTERFACE_INDEX]: status.interfaces[i].mac, read with kubectl.
status_mac() {
  kctl "$1" get virtualmachines "$2" -o "jsonpath={.status.interfaces[${3:-0}].mac}" 2>/dev/null || true
}

# guest_mac CONSOLE NIC: the MAC the guest printed for NIC (last boot's line).
guest_mac() { sed -n "s/^vmhost-guest: nic $2 \([0-9a-f:]*\).*/\1/p" "$1" 2>/dev/null | tail -n 1; }

# tcp_echo ADDR PORT TEXT: sends TEXT to an echo service, prints the reply.
tcp_echo() { echo "$3" | timeout 10 busybox nc -w 3 "$1" "$2" 2>/dev/null | head -n 1; }

# tap_count: tap devices in this network namespace. (Not /sys/class/net:
# sysfs shows the namespace that mounted it, the root one.)
tap_count() { ip -o link show type tun | wc -l; }
# taps_on BRIDGE: "NAME master BRIDGE" for each tap that is a port of BRIDGE.
taps_on() { ip -o link show master "$1" type tun | awk -F': ' '{print $2}' | sed "s/@.*//; s/$/ master $1/"; }

# require DESCRIPTION COMMAND...: as check, but a failure ends the test at
# once (nothing after it could pass; the trap still tears everything down).
require() {
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; echo "stopping: a required step failed"; exit 1; fi
}
