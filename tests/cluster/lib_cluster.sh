# shellcheck shell=bash
# Multi-host harness: N vmhost hosts on this one machine, for cluster and
# live-migration tests. Source this file, then:
#
#   cluster_up N              create host1..hostN (and start their node hook)
#   cluster_exec HOST CMD...  run CMD inside HOST's namespaces
#   cluster_cut HOST          unplug HOST from the network (its processes keep running)
#   cluster_restore HOST      plug it back in
#   cluster_kill HOST         power loss: unplug HOST and SIGKILL everything in it
#   cluster_start_node HOST   (re)start HOST's node hook
#   cluster_kill_node HOST [SIG]  signal the node hook's process (default KILL)
#   cluster_restart_libvirtd HOST restart HOST's libvirtd (its guests keep running)
#   cluster_down [--keep]     tear everything down (call it from your EXIT trap)
#   cluster_leftovers         print whatever of the cluster still exists; 0 if nothing
#
# Each host is a set of namespaces (network, UTS, mount) held by one
# `sleep infinity` process: its own hostname, a tmpfs on /run, its own
# /etc/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt
# (bind mounts of directories under CLUSTER_DIR/hostI) and /etc/hosts naming
# every host, and one veth to a bridge. The bridge lives in a "switch" network
# namespace that the harness creates; the only thing it adds to the root
# namespace is one veth, vmhc<id>, carrying the controller's address, so a
# controller started in the root namespace reaches every host. Addresses come
# from a free 10.88.X.0/24 (X picked at bring-up; VMHOST_CLUSTER_NET=10.88.X
# pins it): .1 is the controller side, hostI is .(10+I).
#
# Every host runs virtlogd and libvirtd (qemu:///system, and
# qemu+tcp://<ip>/system with auth_tcp none, bound to the host's own address,
# for peer-to-peer migration) with a distinct hostname and host_uuid, and then
# the node hook: CLUSTER_NODE_CMD, a bash command line run inside the host with
# HOST_NAME, HOST_INDEX, HOST_IP, HOST_DIR, LIBVIRT_URI (qemu:///system),
# LIBVIRT_TCP_URI (qemu+tcp://<ip>/system), CONTROLLER_IP and CLUSTER_DIR set,
# for example
#   CLUSTER_NODE_CMD='exec "$VMHOST" node --config "$HOST_DIR/node.yaml"'
# (export the variables and functions it uses). Its output goes to
# HOST_DIR/node.log. Empty (the default): no node process.
#
# All state lives under CLUSTER_DIR (default: a new /tmp/vmhost-cluster-XXXXXX);
# a registry entry in /run/vmhost-cluster/ names every live cluster, so that
# `cluster.sh list|down|reap` can find them. Needs root with CAP_SYS_ADMIN and
# CAP_NET_ADMIN; cluster_up refuses, with a message, where it cannot create
# namespaces. See docs/cluster-harness.md.

# shellcheck source=deploy/lib/require.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/deploy/lib/require.sh"

CLUSTER_REGISTRY=${VMHOST_CLUSTER_REGISTRY:-/run/vmhost-cluster}
CLUSTER_MAX_HOSTS=20
# libvirtd's first start probes QEMU's capabilities (several seconds per host
# under TCG on 2 cores); this bounds the wait for its TCP socket.
CLUSTER_LIBVIRTD_TIMEOUT=${VMHOST_CLUSTER_LIBVIRTD_TIMEOUT:-180}

cluster_log() { echo "cluster: $*" >&2; }

# cluster_scratch_begin PREFIX: a directory /tmp/PREFIX-XXXXXX (TDIR) for a
# test, with the cluster's state in CLUSTER_DIR; on exit the cluster goes
# down and, when the test failed ($FAILURES or $rc non-zero), the files
# CLUSTER_TEST_LOGS names (globs) are printed and TDIR is kept, otherwise
# removed. For the harness's own tests; vmhost's add theirs
# (lib_cluster_vmhost.sh).
cluster_scratch_cleanup() {
  local failed=0 f
  if [ "${rc:-0}" -ne 0 ] || [ "${FAILURES:-0}" -ne 0 ]; then failed=1; fi
  if [ $failed -eq 1 ]; then
    # shellcheck disable=SC2086 # globs, expanded here
    for f in ${CLUSTER_TEST_LOGS:-}; do
      [ -s "$f" ] && { echo "== $f"; tail -n 30 "$f"; }
    done
  fi
  cluster_down --keep || { rc=1; failed=1; }
  if [ $failed -eq 1 ]; then
    echo "--- the cluster's state and logs are kept in $TDIR"
  else
    rm -rf "$TDIR"
  fi
}
cluster_scratch_begin() {
  TDIR=$(mktemp -d "/tmp/${1:?prefix}-XXXXXX")
  CLUSTER_DIR="$TDIR/cluster"
  EXTRA_CLEANUP=cluster_scratch_cleanup
}

# --- lookups -----------------------------------------------------------------

# cluster_host_index HOST: HOST is "hostI" or "I"; prints I.
cluster_host_index() {
  local h=${1:?host}
  h=${h#host}
  case $h in '' | *[!0-9]*) cluster_log "no such host: $1"; return 1 ;; esac
  if [ "$h" -lt 1 ] || [ "$h" -gt "${CLUSTER_N:-0}" ]; then
    cluster_log "no such host: $1 (the cluster has host1..host${CLUSTER_N:-0})"
    return 1
  fi
  echo "$h"
}
cluster_host_ip() { local i; i=$(cluster_host_index "$1") || return 1; echo "$CLUSTER_NET.$((10 + i))"; }
cluster_host_dir() { local i; i=$(cluster_host_index "$1") || return 1; echo "$CLUSTER_DIR/host$i"; }
# cluster_libvirt_uri HOST: the URI that reaches HOST's libvirtd from the root namespace.
cluster_libvirt_uri() { echo "qemu+tcp://$(cluster_host_ip "$1")/system"; }
# cluster_host_pid HOST: the pid holding HOST's namespaces.
cluster_host_pid() { local d; d=$(cluster_host_dir "$1") && cat "$d/holder.pid"; }

_cluster_switch_pid() { cat "$CLUSTER_DIR/switch/holder.pid"; }

# _cluster_ns_of PID: "net:[inode] uts:[inode]" of PID's namespaces.
_cluster_ns_of() { echo "$(readlink "/proc/$1/ns/net") $(readlink "/proc/$1/ns/uts")"; }

# _cluster_pids_in NSFILE: every pid in both the network and the UTS
# namespace recorded in NSFILE (written at bring-up, so this works after the
# holder died). Every process the harness starts in a host enters both. Two
# of them because the kernel reuses a namespace's inode number once it is
# freed: a stale record must not match someone else's namespace.
_cluster_pids_in() {
  local nsfile=$1 net uts p pn pu
  [ -f "$nsfile" ] || return 0
  read -r net uts <"$nsfile"
  for p in /proc/[0-9]*; do
    pn=$(readlink "$p/ns/net" 2>/dev/null) || continue
    [ "$pn" = "$net" ] || continue
    pu=$(readlink "$p/ns/uts" 2>/dev/null) || continue
    [ "$pu" = "$uts" ] && echo "${p#/proc/}"
  done
  return 0
}

# _cluster_holder_alive DIR: DIR's namespace holder still runs (same pid and
# start time as recorded, and not a zombie).
_cluster_holder_alive() {
  local pid
  pid=$(cat "$1/holder.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && _cluster_running "$pid" &&
    [ "$(_cluster_proc_start "$pid" 2>/dev/null || true)" = "$(cat "$1/holder.start" 2>/dev/null)" ]
}

# cluster_host_pids HOST: every process running inside HOST (holder included).
cluster_host_pids() { local d; d=$(cluster_host_dir "$1") && _cluster_pids_in "$d/ns"; }

# _cluster_node_pid I: the pid of hostI's node hook if it still runs (a pid
# from node.pid that is no longer inside the host may be reused: never signal it).
_cluster_node_pid() {
  local pid inside
  pid=$(cat "$CLUSTER_DIR/host$1/node.pid" 2>/dev/null) || return 1
  # Not `_cluster_pids_in | grep -q`: under pipefail, grep's early exit
  # (SIGPIPE to the lister) would fail the pipeline with the node running.
  inside=$(_cluster_pids_in "$CLUSTER_DIR/host$1/ns")
  grep -qx "$pid" <<<"$inside" || return 1
  echo "$pid"
}

# _cluster_running PID: alive and not a zombie. Zombies are common here: the
# harness's own children stay zombies until the shell reaps them, and so do
# orphans on machines whose PID 1 reaps slowly.
_cluster_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# _cluster_proc_start PID: the process's start time (clock ticks since boot),
# to tell a pid from a later process that reused it.
_cluster_proc_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  # shellcheck disable=SC2086 # split the fields on purpose
  set -- $stat
  echo "${20}"
}

# --- loading state -----------------------------------------------------------

# cluster_load DIR: adopt the cluster whose state is in DIR (for a second
# shell, or the CLI). Sets CLUSTER_DIR, CLUSTER_ID, CLUSTER_N, CLUSTER_NET,
# CLUSTER_CONTROLLER_IP, CLUSTER_ROOT_IF, CLUSTER_NODE_CMD.
cluster_load() {
  local dir=${1:?cluster dir}
  [ -f "$dir/cluster.env" ] || { cluster_log "$dir holds no live cluster (no cluster.env)"; return 1; }
  # shellcheck source=/dev/null
  . "$dir/cluster.env"
}

_cluster_save() {
  {
    printf 'CLUSTER_DIR=%q\n' "$CLUSTER_DIR"
    printf 'CLUSTER_ID=%q\n' "$CLUSTER_ID"
    printf 'CLUSTER_N=%q\n' "$CLUSTER_N"
    printf 'CLUSTER_NET=%q\n' "$CLUSTER_NET"
    printf 'CLUSTER_CONTROLLER_IP=%q\n' "$CLUSTER_CONTROLLER_IP"
    printf 'CLUSTER_ROOT_IF=%q\n' "$CLUSTER_ROOT_IF"
    printf 'CLUSTER_OWNER=%q\n' "$CLUSTER_OWNER"
    printf 'CLUSTER_NODE_CMD=%q\n' "${CLUSTER_NODE_CMD:-}"
  } >"$CLUSTER_DIR/cluster.env.tmp"
  mv "$CLUSTER_DIR/cluster.env.tmp" "$CLUSTER_DIR/cluster.env"
}

# --- preflight ---------------------------------------------------------------

# cluster_preflight: can this machine run the harness? Prints why not and
# returns 2 when it cannot.
cluster_preflight() {
  local err
  if ! missing_tools unshare:util-linux nsenter:util-linux setsid:util-linux flock:util-linux \
    ip:iproute2 virsh:libvirt-clients libvirtd:libvirt-daemon virtlogd:libvirt-daemon \
    virtlockd:libvirt-daemon qemu-system-x86_64:qemu-system-x86; then
    cluster_log "refusing to run: the tools above are missing"
    return 2
  fi
  # The real thing, not a guess from the uid: create the namespaces and a
  # bridge once, exactly as cluster_up will.
  if ! err=$(unshare --net --uts --mount --propagation private -- \
    ip link add name vmhc-probe type bridge 2>&1); then
    cluster_log "refusing to run: cannot create network, UTS and mount namespaces here"
    cluster_log "  (unshare --net --uts --mount: ${err:-failed})."
    cluster_log "  The multi-host harness needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN:"
    cluster_log "  run it as root on a VM or bare metal, or in a privileged container."
    return 2
  fi
  getent passwd libvirt-qemu >/dev/null || {
    cluster_log "refusing to run: the libvirt-qemu user is missing (run deploy/install-deps.sh)"
    return 2
  }
}

# --- bring-up ----------------------------------------------------------------

# _cluster_spawn_holder PIDFILE UNSHARE-FLAGS...: a process holding new
# namespaces, in its own session (a Ctrl-C in the terminal must not kill the
# hosts before the teardown does it in order).
_cluster_spawn_holder() {
  local pidfile=$1; shift
  rm -f "$pidfile"
  # The holder must not inherit the registry lock's descriptor (it would
  # hold the lock for the cluster's whole life).
  (
    if [ -n "${_cluster_lockfd:-}" ]; then exec {_cluster_lockfd}>&-; fi
    # shellcheck disable=SC2016 # expanded by the inner sh
    exec setsid unshare "$@" -- /bin/sh -c 'echo $$ >"$1.tmp" && mv "$1.tmp" "$1" && exec sleep infinity' \
      holder "$pidfile" </dev/null >/dev/null 2>"$pidfile.err"
  ) &
  local _
  for _ in $(seq 1 100); do
    if [ -s "$pidfile" ]; then
      _cluster_proc_start "$(cat "$pidfile")" >"${pidfile%.pid}.start" && return 0
      break
    fi
    sleep 0.1
  done
  cluster_log "the namespace holder did not start: $(cat "$pidfile.err" 2>/dev/null)"
  return 1
}

# _cluster_host_env I: sets _cluster_env to the environment (NAME=VALUE
# words) every command inside hostI gets.
_cluster_host_env() {
  local i=$1 ip="$CLUSTER_NET.$((10 + $1))"
  _cluster_env=("HOST_NAME=host$i" "HOST_INDEX=$i" "HOST_IP=$ip" "HOST_DIR=$CLUSTER_DIR/host$i"
    "LIBVIRT_URI=qemu:///system" "LIBVIRT_TCP_URI=qemu+tcp://$ip/system"
    "LIBVIRT_DEFAULT_URI=qemu:///system" "CONTROLLER_IP=$CLUSTER_CONTROLLER_IP"
    "CLUSTER_DIR=$CLUSTER_DIR")
}

# _cluster_spawn_in I NAME CMD...: a long-running process inside hostI, in
# its own session; pid in hostI/NAME.pid, output appended to hostI/log/NAME.log.
_cluster_spawn_in() {
  local i=$1 name=$2; shift 2
  local d="$CLUSTER_DIR/host$i" hp
  hp=$(cat "$d/holder.pid")
  rm -f "$d/$name.pid"
  _cluster_host_env "$i"
  # shellcheck disable=SC2016 # expanded by the inner sh
  setsid nsenter --target "$hp" --net --uts --mount -- \
    env "${_cluster_env[@]}" /bin/sh -c 'echo $$ >"$1.tmp" && mv "$1.tmp" "$1"; shift; exec "$@"' \
    sh "$d/$name.pid" "$@" </dev/null >>"$d/log/$name.log" 2>&1 &
  local _
  for _ in $(seq 1 100); do
    [ -s "$d/$name.pid" ] && return 0
    sleep 0.1
  done
  cluster_log "host$i: $name did not start; see $d/log/$name.log"
  return 1
}

_cluster_write_host_config() {
  local i=$1 d="$CLUSTER_DIR/host$1" ip="$CLUSTER_NET.$((10 + $1))" uuid
  mkdir -p "$d/etc/libvirt" "$d/var/lib/libvirt" "$d/var/log/libvirt/qemu" \
    "$d/var/cache/libvirt" "$d/log"
  uuid=$(cat /proc/sys/kernel/random/uuid)
  echo "$uuid" >"$d/host_uuid"
  # TCP without authentication: reachable only on the harness's own network.
  cat >"$d/etc/libvirt/libvirtd.conf" <<EOF
# host$i of the vmhost cluster harness ($CLUSTER_DIR)
listen_tls = 0
listen_tcp = 1
listen_addr = "$ip"
auth_tcp = "none"
auth_unix_rw = "none"
unix_sock_rw_perms = "0700"
host_uuid = "$uuid"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  # What libvirtd needs in these containers (docs/ARCHITECTURE "Facts"), and
  # incoming migrations on the host's own address.
  cat >"$d/etc/libvirt/qemu.conf" <<EOF
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
migration_address = "$ip"
migration_host = "$ip"
EOF
  # CLUSTER_QEMU_CONF_EXTRA: more qemu.conf lines, the same on every host
  # (paths under /etc/libvirt, /var/lib/libvirt... are the host's own), e.g.
  #   migrate_tls_x509_cert_dir = "/etc/libvirt/pki/qemu"
  # for TLS migration. libvirtd refuses to start when a *_tls_x509_cert_dir
  # does not exist: create CLUSTER_DIR/hostI/etc/libvirt/pki/qemu first.
  if [ -n "${CLUSTER_QEMU_CONF_EXTRA:-}" ]; then
    printf '%s\n' "$CLUSTER_QEMU_CONF_EXTRA" >>"$d/etc/libvirt/qemu.conf"
  fi
  cat >"$d/etc/libvirt/virtlogd.conf" <<EOF
log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
EOF
  # CLUSTER_LOCKSPACE (a directory every host sees, like shared storage):
  # libvirt's lock manager with virtlockd, a lease per disk in that
  # lockspace, so no two hosts run QEMU on the same disk at once.
  if [ -n "${CLUSTER_LOCKSPACE:-}" ]; then
    mkdir -p "$CLUSTER_LOCKSPACE"
    echo 'lock_manager = "lockd"' >>"$d/etc/libvirt/qemu.conf"
    cat >"$d/etc/libvirt/qemu-lockd.conf" <<EOF
auto_disk_leases = 1
require_lease_for_disks = 1
file_lockspace_dir = "$CLUSTER_LOCKSPACE"
EOF
    cat >"$d/etc/libvirt/virtlockd.conf" <<EOF
log_outputs = "3:file:/var/log/libvirt/virtlockd.log"
EOF
  fi
}

_cluster_setup_host() {
  local i=$1 d="$CLUSTER_DIR/host$1" ip="$CLUSTER_NET.$((10 + $1))" hp sp
  sp=$(_cluster_switch_pid)
  _cluster_write_host_config "$i"
  _cluster_spawn_holder "$d/holder.pid" --net --uts --mount --propagation private || return 1
  hp=$(cat "$d/holder.pid")
  _cluster_ns_of "$hp" >"$d/ns"
  # One veth: "hI" on the switch's bridge, "eth0" inside the host.
  nsenter --target "$sp" --net -- ip link add name "h$i" type veth peer name eth0 netns "$hp" || return 1
  nsenter --target "$sp" --net -- ip link set "h$i" master br0 up || return 1
  # Inside the host: network, hostname, and the private libvirt directories.
  # shellcheck disable=SC2016 # expanded by the inner sh
  nsenter --target "$hp" --net --uts --mount -- /bin/sh -euc '
    d=$1 ip=$2 name=$3
    hostname "$name"
    ip link set lo up
    ip addr add "$ip/24" dev eth0
    ip link set eth0 up
    mount -t tmpfs -o mode=0755 tmpfs /run
    mkdir -p /run/libvirt /run/lock
    for p in /etc/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
      # No installed package need have made the mount point (a minimal
      # Debian has none of them before libvirtd first runs).
      mkdir -p "$p"
      mount --bind "$d$p" "$p"
    done
    mount --bind "$4" /etc/hosts
  ' setup "$d" "$ip" "host$i" "$CLUSTER_DIR/hosts" || return 1
  _cluster_spawn_in "$i" virtlogd virtlogd || return 1
  if [ -n "${CLUSTER_LOCKSPACE:-}" ]; then
    _cluster_spawn_in "$i" virtlockd virtlockd || return 1
  fi
  _cluster_spawn_in "$i" libvirtd libvirtd --listen || return 1
}

# _cluster_wait_libvirtd I: until hostI's libvirtd answers on its TCP socket
# from the root namespace (and reports the host's own hostname).
_cluster_wait_libvirtd() {
  local i=$1 d="$CLUSTER_DIR/host$1" uri deadline got
  uri="qemu+tcp://$CLUSTER_NET.$((10 + $1))/system"
  deadline=$((SECONDS + CLUSTER_LIBVIRTD_TIMEOUT))
  while [ $SECONDS -lt $deadline ]; do
    got=$(timeout 10 virsh -c "$uri" hostname 2>/dev/null) || got=
    [ "$got" = "host$i" ] && return 0
    if ! _cluster_running "$(cat "$d/libvirtd.pid" 2>/dev/null)"; then
      cluster_log "host$i: libvirtd exited; last lines of $d/log/libvirtd.log and var/log/libvirt/libvirtd.log:"
      tail -n 20 "$d/log/libvirtd.log" "$d/var/log/libvirt/libvirtd.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
  cluster_log "host$i: libvirtd did not answer on $uri within ${CLUSTER_LIBVIRTD_TIMEOUT}s"
  return 1
}

_cluster_pick_net() {
  if [ -n "${VMHOST_CLUSTER_NET:-}" ]; then
    echo "$VMHOST_CLUSTER_NET"
    return 0
  fi
  local o used
  used=$( { ip -4 -o addr show; ip -4 route show; } 2>/dev/null)
  for o in $(seq 0 255); do
    if ! grep -qE "(^|[^0-9.])10\.88\.$o\." <<<"$used"; then
      echo "10.88.$o"
      return 0
    fi
  done
  cluster_log "no free 10.88.X.0/24 network in the root namespace"
  return 1
}

# _cluster_up_net: the switch namespace, its bridge, and the root veth with
# the controller's address. Runs under the registry lock.
_cluster_up_net() {
  local sp
  mkdir -p "$CLUSTER_DIR/switch"
  _cluster_spawn_holder "$CLUSTER_DIR/switch/holder.pid" --net --uts --mount --propagation private || return 1
  sp=$(_cluster_switch_pid)
  _cluster_ns_of "$sp" >"$CLUSTER_DIR/switch/ns"
  nsenter --target "$sp" --net -- ip link add name br0 type bridge || return 1
  nsenter --target "$sp" --net -- ip link set br0 up || return 1
  ip link add name "$CLUSTER_ROOT_IF" type veth peer name ctl netns "$sp" || return 1
  nsenter --target "$sp" --net -- ip link set ctl master br0 up || return 1
  ip addr add "$CLUSTER_CONTROLLER_IP/24" dev "$CLUSTER_ROOT_IF" || return 1
  ip link set "$CLUSTER_ROOT_IF" up || return 1
}

_cluster_up_hosts() {
  local i
  {
    echo "127.0.0.1 localhost"
    echo "$CLUSTER_CONTROLLER_IP controller"
    for i in $(seq 1 "$CLUSTER_N"); do echo "$CLUSTER_NET.$((10 + i)) host$i"; done
  } >"$CLUSTER_DIR/hosts"
  for i in $(seq 1 "$CLUSTER_N"); do
    _cluster_setup_host "$i" || { cluster_log "host$i: set-up failed"; return 1; }
  done
  for i in $(seq 1 "$CLUSTER_N"); do
    _cluster_wait_libvirtd "$i" || return 1
    cluster_log "host$i: $CLUSTER_NET.$((10 + i)), libvirtd up"
  done
  if [ -n "${CLUSTER_NODE_CMD:-}" ]; then
    for i in $(seq 1 "$CLUSTER_N"); do cluster_start_node "host$i" || return 1; done
  fi
}

# cluster_up N: bring up host1..hostN. On failure everything is torn down
# again (logs kept in CLUSTER_DIR) and it returns non-zero. CLUSTER_OWNER
# (default: this shell's pid) is the process whose death makes the cluster
# stale for `cluster.sh reap`; "detached" means never stale.
cluster_up() {
  local n=${1:?number of hosts}
  case $n in '' | *[!0-9]*) cluster_log "cluster_up: not a number: $n"; return 1 ;; esac
  if [ "$n" -lt 1 ] || [ "$n" -gt "$CLUSTER_MAX_HOSTS" ]; then
    cluster_log "cluster_up: 1..$CLUSTER_MAX_HOSTS hosts, not $n"
    return 1
  fi
  cluster_preflight || return 2
  _cluster_reap_stale
  if [ -z "${CLUSTER_DIR:-}" ]; then
    CLUSTER_DIR=$(mktemp -d /tmp/vmhost-cluster-XXXXXX)
  else
    mkdir -p "$CLUSTER_DIR"
    CLUSTER_DIR=$(cd "$CLUSTER_DIR" && pwd)
    [ ! -e "$CLUSTER_DIR/cluster.env" ] || { cluster_log "$CLUSTER_DIR already holds a cluster"; return 1; }
  fi
  CLUSTER_N=$n
  CLUSTER_ID=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
  CLUSTER_ROOT_IF="vmhc$CLUSTER_ID"
  if [ -z "${CLUSTER_OWNER:-}" ]; then
    CLUSTER_OWNER="$$:$(_cluster_proc_start $$)"
  fi
  mkdir -p "$CLUSTER_REGISTRY"

  # Pick the network and plumb the root veth under one lock, so concurrent
  # bring-ups (other build trees) never pick the same 10.88.X.
  local rc=0 had_e=0
  exec {_cluster_lockfd}>"$CLUSTER_REGISTRY/.lock"
  if ! flock -w 300 "$_cluster_lockfd"; then
    cluster_log "cannot take $CLUSTER_REGISTRY/.lock in 300 s"
    exec {_cluster_lockfd}>&-; _cluster_lockfd=
    return 1
  fi
  CLUSTER_NET=$(_cluster_pick_net) || { exec {_cluster_lockfd}>&-; _cluster_lockfd=; return 1; }
  CLUSTER_CONTROLLER_IP="$CLUSTER_NET.1"
  _cluster_save
  echo "$CLUSTER_DIR" >"$CLUSTER_REGISTRY/$CLUSTER_ID"
  cluster_log "cluster $CLUSTER_ID: $n hosts on $CLUSTER_NET.0/24 (controller $CLUSTER_CONTROLLER_IP via $CLUSTER_ROOT_IF), state in $CLUSTER_DIR"
  # set -e is not in force inside a function called from a condition, so
  # the steps run in a subshell with it on, outside any condition.
  case $- in *e*) had_e=1 ;; esac
  set +e
  (set -e; _cluster_up_net)
  rc=$?
  exec {_cluster_lockfd}>&-
  _cluster_lockfd=
  if [ $rc -eq 0 ]; then
    (set -e; _cluster_up_hosts)
    rc=$?
  fi
  if [ $had_e -eq 1 ]; then set -e; fi
  if [ $rc -ne 0 ]; then
    cluster_log "bring-up failed; tearing down (logs kept in $CLUSTER_DIR)"
    cluster_down --keep
    return 1
  fi
  cluster_log "cluster $CLUSTER_ID up: $(for i in $(seq 1 "$n"); do printf 'host%s=%s ' "$i" "$CLUSTER_NET.$((10 + i))"; done)"
}

# --- operations --------------------------------------------------------------

# cluster_exec HOST CMD...: run CMD inside HOST (its network, UTS and mount
# namespaces), with the host's environment (HOST_NAME, HOST_IP, ...;
# LIBVIRT_DEFAULT_URI=qemu:///system, so `virsh list` talks to its libvirtd).
cluster_exec() {
  local i hp
  i=$(cluster_host_index "${1:?host}") || return 1
  shift
  [ $# -gt 0 ] || { cluster_log "cluster_exec: no command"; return 1; }
  hp=$(cat "$CLUSTER_DIR/host$i/holder.pid")
  _cluster_host_env "$i"
  nsenter --target "$hp" --net --uts --mount -- env "${_cluster_env[@]}" "$@"
}

# cluster_start_node HOST: start CLUSTER_NODE_CMD inside HOST (bash -c, the
# host's environment), output to HOST_DIR/log/node.log, pid in HOST_DIR/node.pid.
cluster_start_node() {
  local i
  i=$(cluster_host_index "${1:?host}") || return 1
  [ -n "${CLUSTER_NODE_CMD:-}" ] || { cluster_log "CLUSTER_NODE_CMD is empty: no node hook to start"; return 1; }
  if _cluster_node_pid "$i" >/dev/null; then
    cluster_log "host$i: the node hook is already running"
    return 1
  fi
  _cluster_spawn_in "$i" node bash -c "$CLUSTER_NODE_CMD"
}

# cluster_restart_libvirtd HOST: stop HOST's libvirtd (TERM; its QEMUs keep
# running) and start it again, as an upgrade or a crash of the daemon would;
# returns once it answers again on its TCP socket.
cluster_restart_libvirtd() {
  local i pid inside
  i=$(cluster_host_index "${1:?host}") || return 1
  pid=$(cat "$CLUSTER_DIR/host$i/libvirtd.pid" 2>/dev/null) || pid=
  # Not `_cluster_pids_in | grep -q`: under pipefail, grep's early exit
  # fails the pipeline (SIGPIPE) and the old daemon would live on.
  inside=$(_cluster_pids_in "$CLUSTER_DIR/host$i/ns")
  if [ -n "$pid" ] && grep -qx "$pid" <<<"$inside"; then
    _cluster_kill_pids TERM "$pid" || _cluster_kill_pids KILL "$pid" || {
      cluster_log "host$i: libvirtd (pid $pid) does not stop"
      return 1
    }
  fi
  _cluster_spawn_in "$i" libvirtd libvirtd --listen || return 1
  _cluster_wait_libvirtd "$i"
}

# cluster_kill_node HOST [SIGNAL]: signal HOST's node hook (default KILL) and
# wait (10 s at most) until it is gone.
cluster_kill_node() {
  local i pid sig=${2:-KILL} _
  i=$(cluster_host_index "${1:?host}") || return 1
  pid=$(_cluster_node_pid "$i") || { cluster_log "host$i: no node hook is running"; return 1; }
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    _cluster_running "$pid" || return 0
    sleep 0.1
  done
  cluster_log "host$i: the node hook (pid $pid) is still running after SIG$sig"
  return 1
}

# cluster_cut HOST: take HOST's link down at the switch. Everything inside
# keeps running; nothing reaches it and it reaches nothing.
cluster_cut() {
  local i
  i=$(cluster_host_index "${1:?host}") || return 1
  nsenter --target "$(_cluster_switch_pid)" --net -- ip link set "h$i" down
}

cluster_restore() {
  local i
  i=$(cluster_host_index "${1:?host}") || return 1
  nsenter --target "$(_cluster_switch_pid)" --net -- ip link set "h$i" up
}

# _cluster_kill_pids SIGNAL PID...: signal them, then wait (5 s at most).
_cluster_kill_pids() {
  local sig=$1 p _ left; shift
  [ $# -gt 0 ] || return 0
  kill "-$sig" "$@" 2>/dev/null || true
  for _ in $(seq 1 50); do
    left=0
    for p in "$@"; do _cluster_running "$p" && left=1; done
    [ $left -eq 0 ] && return 0
    sleep 0.1
  done
  return 1
}

# cluster_kill HOST: a power loss. Cut HOST off, then SIGKILL every process
# in it (node, libvirtd, virtlogd, QEMU) but the namespace holder, so its
# files stay inspectable and cluster_down still cleans up.
cluster_kill() {
  local i hp pids=() p
  i=$(cluster_host_index "${1:?host}") || return 1
  cluster_cut "host$i" || return 1
  hp=$(cat "$CLUSTER_DIR/host$i/holder.pid")
  for p in $(_cluster_pids_in "$CLUSTER_DIR/host$i/ns"); do
    [ "$p" = "$hp" ] || pids+=("$p")
  done
  _cluster_kill_pids KILL "${pids[@]}" || { cluster_log "host$i: processes survived SIGKILL"; return 1; }
}

# --- teardown ----------------------------------------------------------------

# _cluster_teardown_all: stop every process in the hosts' and the switch's
# namespaces, all hosts at once (libvirtd takes seconds to stop): TERM, then
# KILL what is left after 5 s. The namespaces go with the last of them.
_cluster_teardown_all() {
  local d pids=() sig
  for sig in TERM KILL; do
    pids=()
    for d in "$CLUSTER_DIR"/host* "$CLUSTER_DIR"/switch; do
      [ -d "$d" ] || continue
      [ -f "$d/ns" ] && mapfile -t -O "${#pids[@]}" pids < <(_cluster_pids_in "$d/ns")
      # Also when bring-up failed before its namespaces were recorded.
      _cluster_holder_alive "$d" && pids+=("$(cat "$d/holder.pid")")
    done
    _cluster_kill_pids "$sig" "${pids[@]}" && return 0
  done
  return 1
}

# cluster_leftovers: print every trace of the cluster that still exists
# (processes in its namespaces, the root veth, the controller address, its
# registry entry, mounts of its directories). Returns 1 if there is any.
cluster_leftovers() {
  local found=0 f pids
  for f in "$CLUSTER_DIR"/switch/ns "$CLUSTER_DIR"/host*/ns; do
    [ -f "$f" ] || continue
    pids=$(_cluster_pids_in "$f" | tr '\n' ' ')
    if [ -n "$pids" ]; then echo "processes left in ${f%/ns}: $pids"; found=1; fi
  done
  for f in "$CLUSTER_DIR"/switch "$CLUSTER_DIR"/host*; do
    if _cluster_holder_alive "$f"; then echo "the namespace holder of $f still runs"; found=1; fi
  done
  if ip link show "$CLUSTER_ROOT_IF" >/dev/null 2>&1; then echo "interface $CLUSTER_ROOT_IF is still there"; found=1; fi
  if ip -4 -o addr show | grep -q "inet $CLUSTER_CONTROLLER_IP/"; then echo "address $CLUSTER_CONTROLLER_IP is still assigned"; found=1; fi
  if [ -e "$CLUSTER_REGISTRY/$CLUSTER_ID" ]; then echo "registry entry $CLUSTER_REGISTRY/$CLUSTER_ID is still there"; found=1; fi
  if grep -qF "$CLUSTER_DIR" /proc/self/mountinfo; then echo "mounts of $CLUSTER_DIR in the root namespace"; found=1; fi
  [ $found -eq 0 ]
}

# cluster_down [--keep]: tear the cluster down: node hooks first, then every
# process in every host (QEMU included), the hosts' and the switch's
# namespaces, the root veth, the registry entry. Safe to call twice, from a
# trap, or after a failed bring-up. Removes CLUSTER_DIR unless --keep or
# CLUSTER_KEEP=1. Returns 1 if something survived (and says what).
cluster_down() {
  local keep=0 i rc=0 out pid
  [ "${1:-}" = --keep ] && keep=1
  [ "${CLUSTER_KEEP:-0}" = 1 ] && keep=1
  [ -n "${CLUSTER_DIR:-}" ] && [ -f "$CLUSTER_DIR/cluster.env" ] || return 0
  local nodes=()
  for i in $(seq 1 "${CLUSTER_N:-0}"); do
    if pid=$(_cluster_node_pid "$i"); then nodes+=("$pid"); fi
  done
  _cluster_kill_pids TERM "${nodes[@]}" || _cluster_kill_pids KILL "${nodes[@]}" || true
  _cluster_teardown_all || true
  # The root end goes with its peer's namespace; make sure.
  if ip link show "$CLUSTER_ROOT_IF" >/dev/null 2>&1; then ip link del "$CLUSTER_ROOT_IF" 2>/dev/null || true; fi
  rm -f "$CLUSTER_REGISTRY/$CLUSTER_ID"
  if ! out=$(cluster_leftovers); then
    cluster_log "teardown left something behind:"
    printf '%s\n' "$out" >&2
    rc=1
    keep=1
  fi
  mv "$CLUSTER_DIR/cluster.env" "$CLUSTER_DIR/cluster.env.down"
  if [ $keep -eq 0 ]; then
    rm -rf "$CLUSTER_DIR"
    cluster_log "cluster $CLUSTER_ID down"
  else
    cluster_log "cluster $CLUSTER_ID down; state and logs kept in $CLUSTER_DIR"
  fi
  return $rc
}

# _cluster_reap_stale: tear down registered clusters whose owner is gone
# (a test killed by a timeout before its trap could run).
_cluster_reap_stale() {
  local f dir owner pid start
  [ -d "$CLUSTER_REGISTRY" ] || return 0
  for f in "$CLUSTER_REGISTRY"/*; do
    [ -f "$f" ] || continue
    dir=$(cat "$f")
    owner=$( (cluster_load "$dir" 2>/dev/null && echo "$CLUSTER_OWNER") ) || owner=
    [ "$owner" = detached ] && continue
    pid=${owner%%:*} start=${owner#*:}
    if [ -n "$pid" ] && _cluster_running "$pid" && [ "$(_cluster_proc_start "$pid")" = "$start" ]; then
      continue
    fi
    cluster_log "reaping stale cluster $(basename "$f") ($dir, owner ${owner:-unknown} is gone)"
    if [ -f "$dir/cluster.env" ]; then
      (cluster_load "$dir" && cluster_down --keep) || true
    else
      rm -f "$f"
    fi
  done
}
