#!/usr/bin/env bash
# The multi-host harness from a shell (see docs/cluster-harness.md).
#
#   cluster.sh up [N] [--dir DIR] [--detach]   N hosts (default 3); stays in
#        the foreground until Ctrl-C / SIGTERM, then tears everything down.
#        --detach: bring up, print, return; `cluster.sh down` removes it.
#   cluster.sh exec HOST CMD...     run CMD inside HOST (e.g. host1 virsh list)
#   cluster.sh cut|restore|kill HOST
#   cluster.sh status               the hosts, their addresses and processes
#   cluster.sh list                 the live clusters on this machine
#   cluster.sh down [--keep]        tear down
#   cluster.sh reap                 tear down clusters whose owner process died
#
# Commands other than up find the cluster in --dir DIR, else $VMHOST_CLUSTER_DIR,
# else the only live one on this machine. CLUSTER_NODE_CMD (see lib_cluster.sh)
# is the node hook that `up` starts on every host.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/cluster/lib_cluster.sh
. "$here/lib_cluster.sh"

usage() { sed -n '2,17s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }

cmd=${1:-}
[ -n "$cmd" ] || usage 1
shift
dir=${VMHOST_CLUSTER_DIR:-}
detach=0 keep=0 n=3
args=()
# Options before the first operand (exec's command keeps its own options).
while [ $# -gt 0 ]; do
  case $1 in
    --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
    --detach) detach=1; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) usage 0 ;;
    *)
      if [ "$cmd" = exec ] && [ ${#args[@]} -ge 1 ]; then args+=("$@"); break; fi
      args+=("$1"); shift ;;
  esac
done

# find_cluster: load the cluster named by --dir / VMHOST_CLUSTER_DIR, else the
# only one registered.
find_cluster() {
  if [ -n "$dir" ]; then cluster_load "$dir"; return; fi
  local live=() f
  for f in "$CLUSTER_REGISTRY"/*; do
    [ -f "$f" ] && [ -f "$(cat "$f")/cluster.env" ] && live+=("$(cat "$f")")
  done
  case ${#live[@]} in
    0) cluster_log "no live cluster on this machine (start one: cluster.sh up)"; exit 1 ;;
    1) cluster_load "${live[0]}" ;;
    *) cluster_log "several live clusters; pick one with --dir: ${live[*]}"; exit 1 ;;
  esac
}

case $cmd in
  up)
    if [ ${#args[@]} -gt 0 ]; then n=${args[0]}; fi
    if [ -n "$dir" ]; then CLUSTER_DIR=$dir; fi
    if [ $detach -eq 1 ]; then
      CLUSTER_OWNER=detached
    else
      trap 'exit 130' INT
      trap 'exit 143' TERM
      waiter=
      trap 'if [ -n "$waiter" ]; then kill "$waiter" 2>/dev/null || true; fi; cluster_down' EXIT
    fi
    rc=0
    cluster_up "$n" || rc=$?
    if [ $rc -ne 0 ]; then trap - EXIT; exit "$rc"; fi
    echo "cluster up in $CLUSTER_DIR: controller $CLUSTER_CONTROLLER_IP"
    for i in $(seq 1 "$CLUSTER_N"); do
      echo "  host$i  $(cluster_host_ip "host$i")  $(cluster_libvirt_uri "host$i")"
    done
    echo "try: $0 exec host1 virsh list --all"
    if [ $detach -eq 1 ]; then
      echo "tear down with: $0 down --dir $CLUSTER_DIR"
      exit 0
    fi
    echo "Ctrl-C tears it down."
    # Wait in the background so that a signal runs the trap at once.
    while :; do
      sleep 3600 &
      waiter=$!
      wait "$waiter" || true
    done
    ;;
  exec)
    find_cluster
    [ ${#args[@]} -ge 2 ] || { cluster_log "usage: cluster.sh exec HOST CMD..."; exit 1; }
    cluster_exec "${args[@]}"
    ;;
  cut | restore | kill)
    find_cluster
    [ ${#args[@]} -eq 1 ] || { cluster_log "usage: cluster.sh $cmd HOST"; exit 1; }
    "cluster_$cmd" "${args[0]}"
    ;;
  status)
    find_cluster
    echo "cluster $CLUSTER_ID in $CLUSTER_DIR: controller $CLUSTER_CONTROLLER_IP ($CLUSTER_ROOT_IF)"
    for i in $(seq 1 "$CLUSTER_N"); do
      link=$(nsenter --target "$(_cluster_switch_pid)" --net -- ip -br link show "h$i" | awk '{print $2}')
      procs=$(for p in $(cluster_host_pids "host$i"); do cat "/proc/$p/comm" 2>/dev/null; done | sort | uniq -c |
        awk '{printf "%s%s(%s)", sep, $2, $1; sep=" "}')
      echo "  host$i  $(cluster_host_ip "host$i")  link $link  $procs"
    done
    ;;
  list)
    for f in "$CLUSTER_REGISTRY"/*; do
      [ -f "$f" ] || continue
      (cluster_load "$(cat "$f")" && echo "$CLUSTER_ID $CLUSTER_DIR $CLUSTER_N hosts $CLUSTER_NET.0/24 owner $CLUSTER_OWNER") || true
    done
    ;;
  down)
    find_cluster
    if [ $keep -eq 1 ]; then cluster_down --keep; else cluster_down; fi
    ;;
  reap)
    _cluster_reap_stale
    ;;
  -h | --help | help) usage 0 ;;
  *) cluster_log "unknown command: $cmd"; usage 1 ;;
esac
