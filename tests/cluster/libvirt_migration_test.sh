#!/usr/bin/env bash
# The libvirt side of live migration (host/node/migration/libvirt_migration.h)
# on two harness hosts with real QEMU (TCG), driven by vmhost-migration-tool
# exactly as the node agent drives it: migrate() on one thread, job stats
# polled and the job steered from another, on one connection.
#
# Two guests on host1, each with a qcow2 disk (16 MiB of data) in host1's
# own directory; each target disk is another file, in the target's own
# directory, and each destination XML is generated independently (no PCI
# addresses, the target's path): "raw", the harness's guest XML (machine pc,
# a unix-socket console whose uptime is read before and after), and "vmx",
# vmhost's own toDomainXml (q35).
#   - abort, twice: in the NBD disk copy (1 MiB/s, after 2 s) and in the
#     memory phase (4 MiB/s, 1 s into it): CANCELLED, the guest keeps running
#     on host1 (no reboot), host2 holds no domain and no QEMU;
#   - host1 -> host2, disk copied (copyDisks): the guest runs on host2 with
#     reason migrated, its uptime continued, host1's definition is shut off
#     with reason migrated, the disks are identical (qemu-img compare, the
#     guest's marker); job stats were printed while it ran; the max downtime
#     set before the job is in force in it; the source keeps the completed
#     stats (downtime), readable more than once; the same for vmx;
#   - host2's libvirtd restarted: the destination XMLs as generated are now
#     refused by libvirt's ABI check (machine pc / q35 vs the source's
#     pc-i440fx-7.2 / pc-q35-7.2); aligned (alignDestXml, migrate()'s
#     default) they pass: vmx host2 -> host1;
#   - raw host2 -> host1 in post-copy (switched 0.5 s into the memory phase,
#     post-copy bandwidth 25 MiB/s so that the poller sees the phase);
#   - raw host1 -> host2 over TLS (certificates with the hosts' IPs in the
#     subjectAltName; a tls.destination the certificate lacks is refused).
# Usage: libvirt_migration_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=${1:?build dir}
SRC=${2:?source dir}
# shellcheck source=tests/lib/harness.sh
. "$SRC/tests/lib/harness.sh"
# shellcheck source=tests/e2e/lib_qemu.sh
. "$SRC/tests/e2e/lib_qemu.sh"
# shellcheck source=tests/cluster/lib_cluster.sh
. "$SRC/tests/cluster/lib_cluster.sh"
# shellcheck source=tests/cluster/lib_cluster_guest.sh
. "$SRC/tests/cluster/lib_cluster_guest.sh"
require_tools openssl:openssl qemu-img:qemu-utils

TOOL="$BUILD/tests/vmhost-migration-tool"
[ -x "$TOOL" ] || { echo "FAIL: $TOOL is not built"; exit 1; }

trap 'exit 130' INT
trap 'exit 143' TERM

# The cluster and this test's files in a directory of their own (kept, with
# these logs printed, on failure).
cluster_scratch_begin vmhost-libvirt-migration
CLUSTER_TEST_LOGS="$TDIR/*.out $CLUSTER_DIR/host*/var/log/libvirt/*.log $CLUSTER_DIR/host*/var/log/libvirt/qemu/*.log"

# TLS: each host's certificates in its own /etc/libvirt/pki/qemu (made after
# bring-up, once the addresses are known: QEMU reads them per migration; the
# directory must exist before libvirtd starts).
for i in 1 2; do mkdir -p "$CLUSTER_DIR/host$i/etc/libvirt/pki/qemu" "$CLUSTER_DIR/host$i/disks"; done
CLUSTER_QEMU_CONF_EXTRA='migrate_tls_x509_cert_dir = "/etc/libvirt/pki/qemu"'
t_start=$SECONDS
cluster_up 2
h1=$(cluster_libvirt_uri host1)
h2=$(cluster_libvirt_uri host2)
ip1=$(cluster_host_ip host1)
ip2=$(cluster_host_ip host2)

# make_pki: a CA, and for each host a server and a client certificate whose
# subjectAltName holds its IP and its hostname.
make_pki() {
  local pki="$TDIR/pki" i d role eku
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca-key.pem" -out "$pki/ca-cert.pem" \
    -days 2 -subj "/CN=vmhost test CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  for i in 1 2; do
    d="$CLUSTER_DIR/host$i/etc/libvirt/pki/qemu"
    cp "$pki/ca-cert.pem" "$d/"
    for role in server client; do
      eku=serverAuth
      [ $role = client ] && eku=clientAuth
      openssl req -newkey rsa:2048 -nodes -keyout "$d/$role-key.pem" -out "$pki/$role$i.csr" \
        -subj "/CN=host$i" 2>/dev/null
      printf 'subjectAltName=IP:%s,DNS:host%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' \
        "$(cluster_host_ip "host$i")" "$i" "$eku" >"$pki/$role$i.ext"
      openssl x509 -req -in "$pki/$role$i.csr" -CA "$pki/ca-cert.pem" -CAkey "$pki/ca-key.pem" \
        -CAcreateserial -out "$d/$role-cert.pem" -days 2 -extfile "$pki/$role$i.ext" 2>/dev/null
    done
    chmod 600 "$d"/*-key.pem
  done
}
check "certificates for both hosts" make_pki

# guest_xml NAME UUID DISK [CMDLINE_EXTRA]: cluster_guest_xml with a qcow2
# virtio disk and a fixed UUID; no PCI addresses.
guest_xml() {
  cluster_guest_xml "$1" | sed \
    -e "s|<name>$1</name>|<name>$1</name><uuid>$2</uuid>|" \
    -e "s|cryptomgr.notests</cmdline>|cryptomgr.notests ${4:-}</cmdline>|" \
    -e "s|<devices>|<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$3'/><target dev='vda' bus='virtio'/></disk>|"
}
uuid() { cat /proc/sys/kernel/random/uuid; }
domstate() { timeout 20 virsh -c "$1" domstate --reason "$2" 2>/dev/null | head -n 1; }
domains_on() { timeout 20 virsh -c "$1" list --all --name 2>/dev/null | sed '/^$/d'; }
# qemu_in HOST DOM: pids of DOM's QEMU among HOST's processes.
qemu_in() {
  local p
  for p in $(cluster_host_pids "$1"); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "guest=$2," && echo "$p"
  done
  return 0
}
# disk_head FILE: the marker line at the start of a qcow2 image (a running
# QEMU may hold it: -U).
disk_head() {
  local raw="$TDIR/head.raw"
  rm -f "$raw"
  qemu-img dd -U -f qcow2 -O raw if="$1" of="$raw" bs=512 count=1 >/dev/null 2>&1 || { echo error; return; }
  head -c 80 "$raw" | tr -d '\000' | head -n 1
}
# migrate NAME OUT ARGS...: the tool's migrate, output in OUT; its status.
migrate() {
  local name=$1 out=$2
  shift 2
  local rc_=0
  timeout 240 "$TOOL" migrate "$@" >"$out" 2>&1 || rc_=$?
  sed "s/^/  [$name] /" "$out" | grep -v '^  \[[^]]*\] stats: ' || true
  echo "  [$name] ($(grep -c '^stats: ' "$out" || true) stats lines)"
  return $rc_
}
uptime_after() {  # uptime_after U1 T1 U2 T2: U2 continued from U1 (no reboot)
  awk -v u1="${1:-0}" -v t1="$2" -v u2="${3:-0}" -v t2="$4" 'BEGIN{exit !(u1 > 0 && u2 >= u1 + 0.5 * (t2 - t1))}'
}

# --- two guests on host1 ------------------------------------------------------------
echo "--- two guests on host1, disks in host1's own directory"
raw="mig-$CLUSTER_ID"
vmx="default_vmx-$CLUSTER_ID"
raw_uuid=$(uuid)
vmx_uuid=$(uuid)
d1="$CLUSTER_DIR/host1/disks"
d2="$CLUSTER_DIR/host2/disks"
# The source disk: 16 MiB of random data at 1 MiB (the guest writes its
# marker at 0 on first boot); the targets: empty images of the same size, as
# the target's storage plugin prepares them.
head -c 16M /dev/urandom >"$TDIR/fill"
qemu-img create -q -f raw "$TDIR/src.raw" 64M
dd if="$TDIR/fill" of="$TDIR/src.raw" bs=1M seek=1 conv=notrunc status=none
qemu-img convert -q -f raw -O qcow2 "$TDIR/src.raw" "$d1/$raw.qcow2"
cp "$d1/$raw.qcow2" "$d1/vmx.qcow2"
qemu-img create -q -f qcow2 "$d2/$raw-copy.qcow2" 64M
qemu-img create -q -f qcow2 "$d2/vmx-copy.qcow2" 64M
rm -f "$TDIR/src.raw"

guest_xml "$raw" "$raw_uuid" "$d1/$raw.qcow2" "vmhost.marker=vda:migrated-$CLUSTER_ID" >"$TDIR/raw-src.xml"
guest_xml "$raw" "$raw_uuid" "$d2/$raw-copy.qcow2" >"$TDIR/raw-dst.xml"
GUEST_DIR=$GUEST_DIR "$TOOL" xml "$vmx" "$vmx_uuid" "$d1/vmx.qcow2" /var/log/libvirt/qemu/vmx.serial.log >"$TDIR/vmx-src.xml"
GUEST_DIR=$GUEST_DIR "$TOOL" xml "$vmx" "$vmx_uuid" "$d2/vmx-copy.qcow2" /var/log/libvirt/qemu/vmx.serial.log >"$TDIR/vmx-dst.xml"
check "vmhost's XML has no PCI address and names machine q35" \
  bash -c "! grep -q '<address' '$TDIR/vmx-dst.xml' && grep -q \"machine='q35'\" '$TDIR/vmx-dst.xml'"

timeout 60 virsh -c "$h1" define "$TDIR/raw-src.xml" >/dev/null
timeout 60 virsh -c "$h1" define "$TDIR/vmx-src.xml" >/dev/null
timeout 120 virsh -c "$h1" start "$raw" >/dev/null
timeout 120 virsh -c "$h1" start "$vmx" >/dev/null
console1=$(cluster_guest_console host1 "$raw")
console2=$(cluster_guest_console host2 "$raw")
require "raw boots on host1 and writes its disk marker" wait_for 120 grep -q "vmhost-guest: booted" "$console1"
check "raw wrote the marker on first boot" grep -q "marker vda wrote migrated-$CLUSTER_ID" "$console1"
vmx_console1="$CLUSTER_DIR/host1/var/log/libvirt/qemu/vmx.serial.log"
check "vmx boots on host1" wait_for 120 grep -q "vmhost-guest: booted" "$vmx_console1"

# --- abort ---------------------------------------------------------------------------
# abort_case NAME ARGS...: a slow migration of raw host1 -> host2 aborted from
# the poller: CANCELLED, the guest runs on in host1, nothing on host2.
abort_case() {
  local name=$1 u1 t1 u2 t2
  shift
  u1=$(cluster_guest_uptime host1 "$raw") || u1=
  t1=$(date +%s.%N)
  migrate "$name" "$TDIR/$name.out" "$h1" "$raw" --dest-uri "$h2" --migrate-uri "tcp://$ip2" \
    --dest-xml "$TDIR/raw-dst.xml" --copy-disk vda --poll-ms 250 "$@" || true
  check "$name: the tool polled job stats while it ran" grep -q "^stats: unbounded migration-out" "$TDIR/$name.out"
  check "$name: requested" grep -q "^abort: requested" "$TDIR/$name.out"
  check "$name: migrate() failed with CANCELLED" grep -q "^result: error CANCELLED: " "$TDIR/$name.out"
  check "$name: the guest still runs on host1" [ "$(domstate "$h1" "$raw")" = "running (booted)" ]
  u2=$(cluster_guest_uptime host1 "$raw") || u2=
  t2=$(date +%s.%N)
  check "$name: the guest answers on host1, no reboot (uptime $u1 -> $u2 s)" uptime_after "$u1" "$t1" "$u2" "$t2"
  check "$name: no domain on host2" [ -z "$(domains_on "$h2")" ]
  check "$name: no QEMU of the guest on host2" [ -z "$(qemu_in host2 "$raw")" ]
}
echo "--- abort during the disk copy (1 MiB/s, after 2 s)"
abort_case abort-disk --bandwidth 1 --abort-after 2
check "abort-disk: it was still copying the disk" bash -c "! grep -q '^memory-phase' '$TDIR/abort-disk.out'"
echo "--- abort during the memory phase (4 MiB/s, 1 s into it)"
abort_case abort-memory --bandwidth 4 --abort-after-memory 1
check "abort-memory: it had reached the memory phase" grep -q "^memory-phase" "$TDIR/abort-memory.out"

# --- host1 -> host2, disk copied ------------------------------------------------------
echo "--- host1 -> host2, disk copied by NBD"
up1=$(cluster_guest_uptime host1 "$raw") || up1=
t_up1=$(date +%s.%N)
rc_m=0
migrate raw "$TDIR/raw.out" "$h1" "$raw" --dest-uri "$h2" --migrate-uri "tcp://$ip2" \
  --dest-xml "$TDIR/raw-dst.xml" --copy-disk vda --max-downtime 500 --poll-ms 200 || rc_m=$?
check "migrate() succeeded" [ "$rc_m" -eq 0 ]
check "job stats printed while it ran" grep -q "^stats: unbounded migration-out .* disk " "$TDIR/raw.out"
check "the max downtime set before the job is in force in it" grep -qx "max-downtime: 500" "$TDIR/raw.out"
check "the source's completed stats carry the downtime" grep -Eq "^completed: completed .*downtime=[1-9][0-9]*" "$TDIR/raw.out"
check "the guest runs on host2, reason migrated" [ "$(domstate "$h2" "$raw")" = "running (migrated)" ]
check "host1's domain is shut off, reason migrated" [ "$(domstate "$h1" "$raw")" = "shut off (migrated)" ]
check "host1 keeps the definition" grep -qx "$raw" <(domains_on "$h1")
check "host2's definition is persistent" grep -qx "$raw" <(timeout 20 virsh -c "$h2" list --persistent --name)
check "host2 runs it on host2's disk" bash -c "timeout 20 virsh -c '$h2' domblklist '$raw' | grep -q '$d2/$raw-copy.qcow2'"
check "its QEMU runs inside host2" [ -n "$(qemu_in host2 "$raw")" ]
check "no QEMU of it is left on host1" [ -z "$(qemu_in host1 "$raw")" ]
up2=$(cluster_guest_uptime host2 "$raw") || up2=
t_up2=$(date +%s.%N)
check "the guest answers on host2, no reboot (uptime $up1 -> $up2 s)" uptime_after "$up1" "$t_up1" "$up2" "$t_up2"
check "host2's console shows no boot" bash -c "! grep -q 'vmhost-guest: booted' '$console2'"
check "the disks are identical (qemu-img compare)" qemu-img compare -U -q "$d1/$raw.qcow2" "$d2/$raw-copy.qcow2"
check "the marker is on host2's disk" [ "$(disk_head "$d2/$raw-copy.qcow2")" = "vmhost-marker:migrated-$CLUSTER_ID" ]
"$TOOL" stats "$h2" "$raw" --completed >"$TDIR/target-completed.out" 2>&1 || true
echo "  target's completed stats: $(cat "$TDIR/target-completed.out")"
"$TOOL" stats "$h1" "$raw" --completed >"$TDIR/source-completed.out" 2>&1 || true
check "the source's completed stats can be read again (KEEP_COMPLETED)" grep -q "^completed migration-out" "$TDIR/source-completed.out"

echo "--- vmhost's XML (q35), host1 -> host2, disk copied"
rc_m=0
migrate vmx "$TDIR/vmx.out" "$h1" "$vmx" --dest-uri "$h2" --migrate-uri "tcp://$ip2" \
  --dest-xml "$TDIR/vmx-dst.xml" --copy-disk vda || rc_m=$?
check "vmx: migrate() succeeded" [ "$rc_m" -eq 0 ]
check "vmx: runs on host2, reason migrated" [ "$(domstate "$h2" "$vmx")" = "running (migrated)" ]
check "vmx: host1's is shut off, reason migrated" [ "$(domstate "$h1" "$vmx")" = "shut off (migrated)" ]
check "vmx: the disks are identical" qemu-img compare -U -q "$d1/vmx.qcow2" "$d2/vmx-copy.qcow2"
check "vmx: its vmhost metadata went along" bash -c "timeout 20 virsh -c '$h2' dumpxml '$vmx' | grep -Eq \"uid=.$vmx_uuid.\""

# --- the ABI check after a restart of the source's libvirtd ------------------------
echo "--- host2's libvirtd restarted; back to host1 with the destination XML as generated"
check "host2's libvirtd restarts (guests keep running)" cluster_restart_libvirtd host2
check "raw still runs on host2" [ "$(domstate "$h2" "$raw")" = "running (migrated)" ]
migrate raw-noalign "$TDIR/raw-noalign.out" "$h2" "$raw" --dest-uri "$h1" --migrate-uri "tcp://$ip1" \
  --dest-xml "$TDIR/raw-src.xml" --copy-disk vda --no-align || true
check "unaligned: refused by libvirt's ABI check (machine type)" \
  grep -q "^result: error .*Target domain machine type pc does not match source pc-i440fx" "$TDIR/raw-noalign.out"
migrate vmx-noalign "$TDIR/vmx-noalign.out" "$h2" "$vmx" --dest-uri "$h1" --migrate-uri "tcp://$ip1" \
  --dest-xml "$TDIR/vmx-src.xml" --copy-disk vda --no-align || true
check "unaligned vmhost XML: refused too (q35)" \
  grep -q "^result: error .*Target domain machine type q35 does not match source pc-q35" "$TDIR/vmx-noalign.out"
check "after the refusals nothing runs on host1" [ -z "$(timeout 20 virsh -c "$h1" list --name | sed '/^$/d')" ]
"$TOOL" migratable-xml "$h2" "$raw" >"$TDIR/raw-live.xml"
"$TOOL" align "$TDIR/raw-live.xml" "$TDIR/raw-src.xml" >"$TDIR/raw-src-aligned.xml"
check "alignDestXml: the source's exact machine type" grep -q "machine='pc-i440fx-" "$TDIR/raw-src-aligned.xml"
check "alignDestXml: the source's CPU" grep -q "<model fallback='forbid'>qemu64</model>" "$TDIR/raw-src-aligned.xml"
check "alignDestXml: the target's disk path kept" grep -q "$d1/$raw.qcow2" "$TDIR/raw-src-aligned.xml"

echo "--- vmhost's XML, aligned, host2 -> host1"
rc_m=0
migrate vmx-back "$TDIR/vmx-back.out" "$h2" "$vmx" --dest-uri "$h1" --migrate-uri "tcp://$ip1" \
  --dest-xml "$TDIR/vmx-src.xml" --copy-disk vda || rc_m=$?
check "vmx aligned: migrate() succeeded" [ "$rc_m" -eq 0 ]
check "vmx aligned: runs on host1" [ "$(domstate "$h1" "$vmx")" = "running (migrated)" ]

# --- post-copy back ---------------------------------------------------------------------
echo "--- raw, aligned, host2 -> host1 in post-copy"
up2=$(cluster_guest_uptime host2 "$raw") || up2=
t_up2=$(date +%s.%N)
rc_m=0
migrate postcopy "$TDIR/postcopy.out" "$h2" "$raw" --dest-uri "$h1" --migrate-uri "tcp://$ip1" \
  --dest-xml "$TDIR/raw-src.xml" --copy-disk vda --bandwidth 5 --postcopy --postcopy-after 0.5 --postcopy-bandwidth 25 --poll-ms 200 || rc_m=$?
check "post-copy: migrate() succeeded" [ "$rc_m" -eq 0 ]
check "post-copy: switched" grep -q "^post-copy: started at" "$TDIR/postcopy.out"
check "post-copy: the job reported its post-copy phase" grep -q "^stats: .* post-copy" "$TDIR/postcopy.out"
check "post-copy: pages were fetched on demand" grep -Eq "^completed: .*postcopy_requests=[1-9]" "$TDIR/postcopy.out"
check "post-copy: the guest runs on host1" [ "$(domstate "$h1" "$raw")" = "running (migrated)" ]
check "post-copy: host2's is shut off, reason migrated" [ "$(domstate "$h2" "$raw")" = "shut off (migrated)" ]
up1=$(cluster_guest_uptime host1 "$raw") || up1=
t_up1=$(date +%s.%N)
check "post-copy: no reboot (uptime $up2 -> $up1 s)" uptime_after "$up2" "$t_up2" "$up1" "$t_up1"
check "post-copy: the disks are identical" qemu-img compare -U -q "$d1/$raw.qcow2" "$d2/$raw-copy.qcow2"

# --- TLS --------------------------------------------------------------------------------
echo "--- host1 -> host2 over TLS"
# QEMU checks the target's certificate against the migrate URI's host, or
# against tls.destination: a name the certificate lacks must fail.
rc_m=0
migrate tls-wrong-name "$TDIR/tls-wrong.out" "$h1" "$raw" --dest-uri "$h2" --migrate-uri "tcp://$ip2" \
  --dest-xml "$TDIR/raw-dst.xml" --copy-disk vda --tls --tls-destination not-host2 || rc_m=$?
check "tls: a certificate without the expected name is refused" \
  grep -q "^result: error .*Certificate does not match the hostname not-host2" "$TDIR/tls-wrong.out"
check "tls: after the refusal the guest still runs on host1" [ "$(domstate "$h1" "$raw")" = "running (migrated)" ]
rc_m=0
migrate tls "$TDIR/tls.out" "$h1" "$raw" --dest-uri "$h2" --migrate-uri "tcp://$ip2" \
  --dest-xml "$TDIR/raw-dst.xml" --copy-disk vda --tls || rc_m=$?
check "tls: migrate() succeeded" [ "$rc_m" -eq 0 ]
check "tls: the guest runs on host2" [ "$(domstate "$h2" "$raw")" = "running (migrated)" ]
check "tls: the disks are identical" qemu-img compare -U -q "$d1/$raw.qcow2" "$d2/$raw-copy.qcow2"
up2=$(cluster_guest_uptime host2 "$raw") || up2=
t_up2=$(date +%s.%N)
check "tls: no reboot (uptime $up1 -> $up2 s)" uptime_after "$up1" "$t_up1" "$up2" "$t_up2"

echo "test body: $((SECONDS - t_start)) s"
finish
