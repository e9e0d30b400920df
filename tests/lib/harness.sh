# Shared helpers for the shell-driven integration and e2e tests: start a
# `vmhost all-in-one`, talk to it with vmctl and kubectl, assert, and clean
# up on every exit path. Source it; set BUILD (the build dir) first.
# A test calling tools beyond the harness's lists them at its start:
#   require_tools curl:curl   (deploy/lib/require.sh, sourced here)
set -euo pipefail

: "${BUILD:?BUILD must point at the build directory}"
# shellcheck source=deploy/lib/require.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/deploy/lib/require.sh"
# kctl's kubectl, free_port's python3.
require_tools kubectl:kubernetes-client python3:python3
VMHOST="$BUILD/bin/vmhost"
VMCTL_BIN="$BUILD/bin/vmctl"
WORK=$(mktemp -d /tmp/vmhost-test-XXXXXX)
AIO_PIDS=()
FAILURES=0
CHECKS=0

cleanup() {
  local rc=$?
  for pid in "${AIO_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${AIO_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${EXTRA_CLEANUP:-}" ]; then eval "$EXTRA_CLEANUP" || true; fi
  if [ "$rc" -ne 0 ] || [ "$FAILURES" -ne 0 ]; then
    echo "--- logs in $WORK (kept) ---"
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 40 "$f"; }; done
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# free_port: a TCP port free on 127.0.0.1 now (for servers whose port must
# stay the same across a restart).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

fail() { echo "FAIL: $*"; FAILURES=$((FAILURES + 1)); CHECKS=$((CHECKS + 1)); }
pass() { echo "ok: $*"; CHECKS=$((CHECKS + 1)); }
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
finish() {
  echo "$((CHECKS - FAILURES)) passed, $FAILURES failed"
  [ "$FAILURES" -eq 0 ]
}

# start_aio NAME CONFIG NODE [extra flags]: starts an all-in-one with its
# data in $WORK/NAME, waits for its API, sets API_NAME (URL) and writes a
# kubeconfig to $WORK/NAME.kubeconfig.
start_aio() {
  local name=$1 config=$2 node=$3; shift 3
  local log="$WORK/$name.log"
  "$VMHOST" all-in-one --config "$config" --data-dir "$WORK/$name" --node-name "$node" \
    --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
  local pid=$!
  AIO_PIDS+=("$pid")
  eval "PID_$name=$pid"
  local url=""
  for _ in $(seq 1 600); do
    url=$(grep -o 'API on http://[0-9.:]*' "$log" 2>/dev/null | head -n 1 | sed 's/API on //') || true
    [ -n "$url" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then echo "vmhost all-in-one exited:"; cat "$log"; return 1; fi
    sleep 0.1
  done
  [ -n "$url" ] || { echo "vmhost all-in-one did not start in 60 s"; cat "$log"; return 1; }
  eval "API_$name=$url"
  write_kubeconfig "$name" "$url"
}

# write_kubeconfig NAME URL: $WORK/NAME.kubeconfig for kctl.
write_kubeconfig() {
  cat >"$WORK/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- cluster: {server: "$2"}
  name: $1
contexts:
- context: {cluster: $1, user: $1, namespace: default}
  name: $1
current-context: $1
users:
- name: $1
  user: {}
KC
}

# stop_aio NAME [SIGNAL]
stop_aio() {
  local name=$1 sig=${2:-TERM}
  local pid
  eval "pid=\$PID_${name//[^a-zA-Z0-9_]/_}"
  kill "-$sig" "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

vmctl() {  # vmctl NAME ARGS...
  local name=$1; shift
  local url
  eval "url=\$API_$name"
  HOME="$WORK" "$VMCTL_BIN" --server "$url" "$@"
}

kctl() {  # kctl NAME ARGS...
  local name=$1; shift
  HOME="$WORK" KUBECONFIG="$WORK/$name.kubeconfig" kubectl --request-timeout=20s "$@"
}

# phase NAME VM: the VM's status.phase ("" if absent)
phase() { vmctl "$1" get vm "$2" -o json 2>/dev/null | sed -n 's/^    "phase": "\(.*\)",\{0,1\}$/\1/p' | head -n 1; }

# wait_phase NAME VM PHASE TIMEOUT_S
wait_phase() {
  vmctl "$1" wait "$2" --for="phase=$3" --timeout="${4}s" >/dev/null
}

# wait_for TIMEOUT_S COMMAND...: polls every 0.2 s until COMMAND succeeds.
wait_for() {
  local timeout=$1; shift
  local deadline=$((SECONDS + timeout))
  while [ $SECONDS -lt $deadline ]; do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  return 1
}

# start_controller NAME CONFIG [extra flags]: a `vmhost controller` with its
# data in $WORK/NAME on free loopback ports; sets API_NAME, JOIN_NAME (the
# ADDR:PORT nodes join) and PID_NAME, and writes $WORK/NAME.kubeconfig.
start_controller() {
  local name=$1 config=$2; shift 2
  local log="$WORK/$name.log"
  # Later flags win: pass --listen/--cluster-listen to pin the ports (a
  # restarted controller must come back where its nodes look for it).
  "$VMHOST" controller --config "$config" --data-dir "$WORK/$name" --listen 127.0.0.1:0 \
    --cluster-listen 127.0.0.1:0 "$@" >>"$log" 2>&1 &
  local pid=$!
  AIO_PIDS+=("$pid")
  eval "PID_$name=$pid"
  local line="" before
  before=$(grep -c 'vmhost controller: API on' "$log" 2>/dev/null || true)
  for _ in $(seq 1 300); do
    if [ "$(grep -c 'vmhost controller: API on' "$log" 2>/dev/null || true)" -gt "${before:-0}" ]; then
      line=$(grep 'vmhost controller: API on' "$log" | tail -n 1)
      break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then echo "vmhost controller exited:"; cat "$log"; return 1; fi
    sleep 0.2
  done
  [ -n "$line" ] || { echo "vmhost controller did not start in 60 s"; cat "$log"; return 1; }
  eval "API_$name=$(sed 's/.*API on \(http:[^,]*\),.*/\1/' <<<"$line")"
  eval "JOIN_$name=$(sed 's/.*nodes join on \([0-9.:]*\),.*/\1/' <<<"$line")"
  local url
  eval "url=\$API_$name"
  write_kubeconfig "$name" "$url"
}

# start_node NAME CONFIG CONTROLLER_ADDR [extra flags]: a `vmhost node`
# named NAME with its data in $WORK/NAME; sets PID_NAME.
start_node() {
  local name=$1 config=$2 controller=$3; shift 3
  "$VMHOST" node --config "$config" --data-dir "$WORK/$name" --node-name "$name" \
    --controller "$controller" "$@" >>"$WORK/$name.log" 2>&1 &
  local pid=$!
  AIO_PIDS+=("$pid")
  eval "PID_${name//[^a-zA-Z0-9_]/_}=$pid"
}
