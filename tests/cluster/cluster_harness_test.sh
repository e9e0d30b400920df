#!/usr/bin/env bash
# The multi-host harness itself (tests/cluster/lib_cluster.sh), with real
# libvirtd and QEMU (TCG) and no vmhost process:
#   - refusal: without CAP_SYS_ADMIN/CAP_NET_ADMIN (dropped for real with
#     setpriv) cluster.sh says why and exits non-zero, creating nothing;
#   - 3 hosts: each libvirtd answers on qemu+tcp://<ip>/system from the root
#     namespace with its own hostname and host_uuid; the hosts reach each
#     other; the node hook runs inside each host with its environment;
#   - the tiny guest started on host1 live-migrates (peer-to-peer) to host2
#     and keeps running there without a reboot (console log and uptime);
#   - host3 cut off: unreachable from everywhere while its libvirtd still
#     runs; restored; killed (power loss);
#   - teardown: no namespace, interface, address, process or mount is left.
# Usage: cluster_harness_test.sh BUILD_DIR SOURCE_DIR
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

# fails CMD...: CMD must fail (for check).
fails() { ! "$@" 2>/dev/null; }
# reach IP: a TCP connection to IP's libvirtd port succeeds within 3 s.
reach() { timeout 3 bash -c "</dev/tcp/$1/16509" 2>/dev/null; }

trap 'exit 130' INT
trap 'exit 143' TERM

# The cluster and this test's files in a directory of their own (kept, with
# these logs printed, on failure).
cluster_scratch_begin vmhost-cluster-test
CLUSTER_TEST_LOGS="$CLUSTER_DIR/host*/log/*.log $CLUSTER_DIR/host*/var/log/libvirt/*.log $CLUSTER_DIR/host*/var/log/libvirt/qemu/*.log"

require_tools python3:python3 setpriv:util-linux

# --- refusal -------------------------------------------------------------------
# Drop the two capabilities from the bounding set: the exec'd script, though
# uid 0, then really cannot create namespaces.
echo "--- refusal without CAP_SYS_ADMIN/CAP_NET_ADMIN"
rc_refuse=0
setpriv --bounding-set=-sys_admin,-net_admin --inh-caps=-sys_admin,-net_admin -- \
  "$SRC/tests/cluster/cluster.sh" up 1 --dir "$TDIR/refused" >"$TDIR/refuse.log" 2>&1 || rc_refuse=$?
check "refused with a non-zero status (got $rc_refuse)" [ "$rc_refuse" -ne 0 ]
check "the refusal says why" grep -q "refusing to run: cannot create network, UTS and mount namespaces" "$TDIR/refuse.log"
check "the refusal names the missing capabilities" grep -q "CAP_SYS_ADMIN and CAP_NET_ADMIN" "$TDIR/refuse.log"
check "the refusal created no state" [ ! -e "$TDIR/refused" ]
check "the refusal registered no cluster" fails grep -rqsF "$TDIR/refused" "$CLUSTER_REGISTRY"
cat "$TDIR/refuse.log"

# --- bring-up ------------------------------------------------------------------
echo "--- 3 hosts"
# The node hook: a stand-in for `vmhost node` that records what it was given.
# shellcheck disable=SC2016 # expanded inside each host
CLUSTER_NODE_CMD='echo "$HOST_NAME $HOST_INDEX $HOST_IP $LIBVIRT_URI $LIBVIRT_TCP_URI $CONTROLLER_IP $(hostname)" >"$HOST_DIR/node.env"; exec sleep infinity'
t0=$SECONDS
cluster_up 3
echo "bring-up: $((SECONDS - t0)) s"

uuids=()
for i in 1 2 3; do
  ip=$(cluster_host_ip "host$i")
  uri=$(cluster_libvirt_uri "host$i")
  check "host$i: libvirtd answers on $uri from the root namespace" \
    [ "$(timeout 20 virsh -c "$uri" hostname)" = "host$i" ]
  uuid=$(timeout 20 virsh -c "$uri" capabilities | sed -n 's:.*<uuid>\(.*\)</uuid>.*:\1:p' | head -n 1)
  check "host$i: libvirt's host UUID is the configured one" [ "$uuid" = "$(cat "$CLUSTER_DIR/host$i/host_uuid")" ]
  uuids+=("$uuid")
  check "host$i: its own hostname" [ "$(cluster_exec "host$i" hostname)" = "host$i" ]
  check "host$i: a tmpfs on /run" [ "$(cluster_exec "host$i" stat -f -c %T /run)" = tmpfs ]
  check "host$i: libvirt state in its own directory" [ -d "$CLUSTER_DIR/host$i/var/lib/libvirt/qemu" ]
  check "host$i: the node hook runs inside the host with its environment" wait_for 10 grep -qx \
    "host$i $i $ip qemu:///system qemu+tcp://$ip/system $CLUSTER_CONTROLLER_IP host$i" "$CLUSTER_DIR/host$i/node.env"
  check "host$i: the node hook's process is in the host's namespaces" \
    grep -qx "$(cat "$CLUSTER_DIR/host$i/node.pid")" <(cluster_host_pids "host$i")
done
check "the three host UUIDs differ" [ "$(printf '%s\n' "${uuids[@]}" | sort -u | wc -l)" -eq 3 ]

# Every host reaches every other one: TCP to libvirtd by address, and
# libvirt itself by hostname (/etc/hosts).
for i in 1 2 3; do
  for j in 1 2 3; do
    [ "$i" = "$j" ] && continue
    check "host$i reaches host$j's libvirtd by name" \
      [ "$(cluster_exec "host$i" timeout 20 virsh -c "qemu+tcp://host$j/system" hostname)" = "host$j" ]
  done
done

# The node hook can be killed (as a test of a dead node agent would) and restarted.
check "host1: cluster_kill_node stops the node hook" cluster_kill_node host1 KILL
check "host1: libvirtd survives its node hook" [ "$(timeout 20 virsh -c "$(cluster_libvirt_uri host1)" hostname)" = host1 ]
rm -f "$CLUSTER_DIR/host1/node.env"
check "host1: cluster_start_node starts it again" cluster_start_node host1
check "host1: the restarted node hook ran" wait_for 10 test -s "$CLUSTER_DIR/host1/node.env"

# --- live migration ------------------------------------------------------------
echo "--- live migration host1 -> host2"
dom="cluster-guest-$CLUSTER_ID"
h1=$(cluster_libvirt_uri host1)
h2=$(cluster_libvirt_uri host2)
ip2=$(cluster_host_ip host2)
cluster_guest_xml "$dom" >"$TDIR/guest.xml"
guest_uptime() { cluster_guest_uptime "$1" "$dom"; }
console1=$(cluster_guest_console host1 "$dom")
console2=$(cluster_guest_console host2 "$dom")
booted() { if [ -f "$1" ]; then grep -c "vmhost-guest: booted" "$1" || true; else echo 0; fi; }
# qemu_in HOST: pids of the guest's QEMU among HOST's processes.
qemu_in() {
  local p
  for p in $(cluster_host_pids "$1"); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "guest=$dom," && echo "$p"
  done
  return 0
}

timeout 120 virsh -c "$h1" create "$TDIR/guest.xml"
check "the guest boots on host1" wait_for 120 grep -q "vmhost-guest: booted" "$console1"
check "its QEMU runs inside host1" [ -n "$(qemu_in host1)" ]
up1=$(guest_uptime host1) || up1=
t_up1=$(date +%s.%N)
check "the guest answers on its console on host1 (uptime $up1 s)" [ -n "$up1" ]

rc_m=0
figures=$(cluster_migrate host1 host2 "$dom" 2>"$TDIR/migrate.log") || rc_m=$?
cat "$TDIR/migrate.log"
check "virsh migrate --live --p2p host1 -> host2 succeeded" [ "$rc_m" -eq 0 ]
read -r wall elapsed downtime <<<"${figures:-? ? ?}"
echo "migration: virsh migrate ${wall} s wall; libvirt (target): ${elapsed} ms elapsed, ${downtime} ms downtime"
check "the target reports the migration's downtime" [ "$downtime" != "?" ]

check "the guest runs on host2" [ "$(timeout 20 virsh -c "$h2" domstate "$dom" 2>/dev/null | head -n 1)" = running ]
check "the guest is gone from host1" [ -z "$(timeout 20 virsh -c "$h1" list --name | grep -x "$dom" || true)" ]
check "its QEMU now runs inside host2" [ -n "$(qemu_in host2)" ]
check "no QEMU of it is left on host1" [ -z "$(qemu_in host1)" ]
up2=$(guest_uptime host2) || up2=
t_up2=$(date +%s.%N)
check "the guest answers on its console on host2 (uptime $up2 s)" [ -n "$up2" ]
# Not rebooted: its uptime went on from where it was on host1 (a reboot
# would restart it from ~0), and host2's console never saw a boot.
check "no reboot: uptime $up1 s -> $up2 s across the migration" \
  awk -v u1="${up1:-0}" -v u2="${up2:-0}" -v t1="$t_up1" -v t2="$t_up2" \
  'BEGIN{exit !(u1 > 0 && u2 >= u1 + 0.5 * (t2 - t1))}'
check "no reboot: host2's console shows no boot" [ "$(booted "$console2")" -eq 0 ]
check "host1's console shows exactly one boot" [ "$(booted "$console1")" -eq 1 ]
check "host2's console carries on the same session" grep -q "VMHOST_UPTIME=$up2" "$console2"

# --- cut, restore, kill --------------------------------------------------------
echo "--- host3 cut off"
ip3=$(cluster_host_ip host3)
libvirtd3=$(cat "$CLUSTER_DIR/host3/libvirtd.pid")
cluster_cut host3
check "host3 unreachable from the root namespace" fails reach "$ip3"
check "host3 unreachable from host1" fails cluster_exec host1 timeout 3 bash -c "</dev/tcp/$ip3/16509"
check "host3 cannot reach host2" fails cluster_exec host3 timeout 3 bash -c "</dev/tcp/$ip2/16509"
check "virsh cannot reach host3" fails timeout 10 virsh -c "qemu+tcp://$ip3/system" hostname
check "host3's libvirtd still runs" kill -0 "$libvirtd3"
check "host3's libvirtd still answers inside host3" [ "$(cluster_exec host3 timeout 20 virsh hostname)" = host3 ]
check "host1 still reaches host2" reach "$ip2"
cluster_restore host3
check "host3 reachable again after cluster_restore" wait_for 10 reach "$ip3"
cluster_kill host3
check "cluster_kill: host3 unreachable" fails reach "$ip3"
check "cluster_kill: host3's libvirtd is gone" fails kill -0 "$libvirtd3"
check "cluster_kill: only the namespace holder is left in host3" \
  [ "$(cluster_host_pids host3)" = "$(cat "$CLUSTER_DIR/host3/holder.pid")" ]
check "the guest on host2 is unaffected" [ "$(timeout 20 virsh -c "$h2" domstate "$dom" 2>/dev/null | head -n 1)" = running ]

# --- teardown ------------------------------------------------------------------
echo "--- teardown"
# pid:start-time of the processes that must go (pids get reused quickly here).
procs=()
for p in $(qemu_in host2) $(cat "$CLUSTER_DIR"/switch/holder.pid "$CLUSTER_DIR"/host*/holder.pid); do
  procs+=("$p:$(_cluster_proc_start "$p")")
done
# gone PID:START: that process no longer runs (a zombie waiting for this
# shell to reap it counts as gone; its pid may already name another process).
gone() { ! _cluster_running "${1%%:*}" || [ "$(_cluster_proc_start "${1%%:*}" 2>/dev/null || true)" != "${1#*:}" ]; }
t0=$SECONDS
rc_down=0
cluster_down --keep || rc_down=$?
echo "teardown: $((SECONDS - t0)) s"
check "cluster_down succeeded" [ "$rc_down" -eq 0 ]
check "cluster_leftovers finds nothing" cluster_leftovers
for p in "${procs[@]}"; do check "process ${p%%:*} (the guest's QEMU, a namespace holder) is gone" gone "$p"; done
check "no QEMU of the guest anywhere" [ -z "$(pgrep -f "guest=$dom," || true)" ]
check "no interface of the cluster in the root namespace" [ -z "$(ip -o link show | grep "vmhc$CLUSTER_ID" || true)" ]
check "no route to the cluster's network" [ -z "$(ip -4 route show | grep "^$CLUSTER_NET\." || true)" ]
check "no mount of the cluster's directories" [ -z "$(grep -F "$CLUSTER_DIR" /proc/*/mountinfo 2>/dev/null || true)" ]
check "no registry entry" [ ! -e "$CLUSTER_REGISTRY/$CLUSTER_ID" ]
finish
