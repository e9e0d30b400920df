# shellcheck shell=bash
# The tiny test guest on harness hosts, straight through libvirt (no vmhost):
# a domain definition, its console, its uptime, and a timed live migration.
# Source after lib_cluster.sh; GUEST_DIR is the built guest (tests/e2e/lib_qemu.sh).

require_tools virsh:libvirt-clients python3:python3 qemu-system-x86_64:qemu-system-x86

# cluster_guest_xml NAME: a 128 MiB TCG domain booting the tiny guest, with
# no NIC (libvirt networks are not available) and no disk. Its serial console
# is a unix socket logged by virtlogd; both paths are in the host's private
# /var/lib/libvirt and /var/log/libvirt, so a migration's source and target
# never share one. on_reboot=destroy: a reboot makes the domain vanish rather
# than pass unnoticed.
cluster_guest_xml() {
  local name=${1:?domain name}
  : "${GUEST_DIR:?GUEST_DIR must point at the built guest}"
  cat <<XML
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$GUEST_DIR/vmlinux</kernel>
    <initrd>$GUEST_DIR/initramfs.gz</initrd>
    <cmdline>console=ttyS0 quiet cryptomgr.notests</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <serial type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/$name.serial'/>
      <log file='/var/log/libvirt/qemu/$name-serial.log' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
XML
}

# cluster_guest_console HOST NAME: the file with what the guest printed while on HOST.
cluster_guest_console() { echo "$(cluster_host_dir "$1")/var/log/libvirt/qemu/$2-serial.log"; }

# cluster_guest_uptime HOST NAME [TIMEOUT_S]: the guest's /proc/uptime, asked
# on its serial console on HOST (the shell there answers; 30 s at most).
cluster_guest_uptime() {
  local sock
  sock="$(cluster_host_dir "$1")/var/lib/libvirt/qemu/$2.serial"
  python3 - "$sock" "${3:-30}" <<'PY'
import re, socket, sys, time
path, timeout = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
s.settimeout(0.5)
deadline = time.time() + timeout
buf, next_send = b"", 0.0
while time.time() < deadline:
    if time.time() >= next_send:
        s.sendall(b"\necho VMHOST_UPTIME=$(cut -d' ' -f1 /proc/uptime)\n")
        next_send = time.time() + 3
    try:
        data = s.recv(4096)
    except socket.timeout:
        continue
    if not data:
        break
    buf += data
    m = re.search(rb"VMHOST_UPTIME=([0-9]+\.[0-9]+)\r?\n", buf)
    if m:
        print(m.group(1).decode())
        sys.exit(0)
sys.exit(1)
PY
}

# cluster_migrate SRC DST NAME: live peer-to-peer migration of NAME from SRC
# to DST (virsh migrate --live --p2p, migrate URI tcp://<dst-ip>). Prints
# "WALL_S ELAPSED_MS DOWNTIME_MS" (virsh's wall time; the migration's time
# and downtime as the target's libvirt reports them, "?" if it does not).
# virsh's output goes to stderr. Returns virsh's status.
cluster_migrate() {
  local src=$1 dst=$2 name=$3 ip t0 t1 rc=0 info elapsed downtime
  ip=$(cluster_host_ip "$dst") || return 1
  t0=$(date +%s.%N)
  timeout 300 virsh -c "$(cluster_libvirt_uri "$src")" migrate --live --p2p "$name" \
    "qemu+tcp://$ip/system" "tcp://$ip" >&2 || rc=$?
  t1=$(date +%s.%N)
  [ $rc -eq 0 ] || return $rc
  info=$(timeout 20 virsh -c "$(cluster_libvirt_uri "$dst")" domjobinfo --completed "$name" 2>&1) || true
  elapsed=$(sed -n 's/^Time elapsed: *\([0-9]*\) *ms *$/\1/p' <<<"$info")
  downtime=$(sed -n 's/^Total downtime: *\([0-9]*\) *ms *$/\1/p' <<<"$info")
  awk -v a="$t0" -v b="$t1" -v e="${elapsed:-?}" -v d="${downtime:-?}" 'BEGIN{printf "%.2f %s %s\n", b - a, e, d}'
}
