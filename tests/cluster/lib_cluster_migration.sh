# shellcheck shell=bash
# What the live-migration cluster tests share, after harness.sh, lib_qemu.sh,
# lib_cluster.sh and lib_cluster_vmhost.sh (and cluster_test_begin,
# cluster_up): a controller in the root namespace, `vmhost node` on each
# harness host, and ways to look at a guest from both hosts' libvirt.
#
#   migration_cluster_begin NHOSTS   hosts up, controller started (CONTROLLER_YAML
#                                    extra lines in $MIGRATION_CONTROLLER_EXTRA)
#   start_agents STORAGE [MIGRATION] every host's node with that storage plugin
#                                    (shared-dir | local) and migration plugin
#   stop_agents                      SIGTERM every host's node (guests keep running)
#   migrate VM TO NAME [PARAMS]      a VirtualMachineMigration; waits for its end
#   start_migration VM TO NAME [PARAMS]  the same without waiting
#   mig_phase NAME, mig_field NAME JSONPATH
#   domstate HOST VM, running_copies VM, vm_node VM, console_of HOST VM,
#   last_tick HOST VM, ticks_on HOST VM MIN, mac_of HOST VM

migration_cluster_begin() {
  local n=${1:-2}
  cluster_up "$n" || { echo "FAIL: the harness could not create $n hosts"; exit 1; }
  CONTROLLER="$CLUSTER_CONTROLLER_IP:$JOIN_PORT"
  SHARED="$TDIR/shared"
  mkdir -p "$SHARED/volumes"
  cat >"$TDIR/controller.yaml" <<YAML
cluster: {insecure: true, joinTokenFile: "$TDIR/token", heartbeatTimeoutSeconds: 6}
plugins:
  scheduler: {name: default, config: {cpuAllocationRatio: 10}}
${MIGRATION_CONTROLLER_EXTRA:-}
YAML
  start_controller_again
  # STORAGE selects the nodes' storage plugin: shared-dir (one directory
  # every host sees) or local (a pool in each host's own directory);
  # MIGRATION their migration plugin slot (YAML).
  export VMHOST CONTROLLER TDIR SHARED
  CLUSTER_NODE_CMD='case $STORAGE in
  shared-dir) storage="{name: shared-dir, config: {path: \"$SHARED/volumes\"}}" ;;
  *) storage="{name: local, config: {pool: \"$HOST_DIR/pool\"}}" ;;
esac
cat >"$HOST_DIR/node.yaml" <<YAML
libvirt: {uri: "$LIBVIRT_URI"}
node: {heartbeatSeconds: 1, resyncSeconds: 3, stopGracePeriodSeconds: 10,
       libvirtEndpoint: "$LIBVIRT_TCP_URI"}
cluster: {insecure: true, controller: "$CONTROLLER", joinTokenFile: "$TDIR/token"}
plugins: {storage: $storage, migration: $MIGRATION}
YAML
exec "$VMHOST" node --config "$HOST_DIR/node.yaml" --data-dir "$HOST_DIR/vmhost" --node-name "$HOST_NAME"'
  export CLUSTER_NODE_CMD
}

# The controller on the same ports and data (a restart after a kill).
start_controller_again() {
  start_controller ctl "$TDIR/controller.yaml" --listen "127.0.0.1:$API_PORT" \
    --cluster-listen "$CONTROLLER" --data-dir "$TDIR/ctl"
}

node_status() { vmctl ctl get node "$1" 2>/dev/null | awk 'NR == 2 { print $2 }'; }
ready() { [ "$(node_status "$1")" = Ready ]; }
cluster_hosts() { local i; for i in $(seq 1 "${CLUSTER_HOSTS:-2}"); do echo "host$i"; done; }

start_agents() {  # STORAGE [MIGRATION YAML]
  export STORAGE=$1 MIGRATION=${2:-"{name: precopy}"}
  local h
  for h in $(cluster_hosts); do cluster_start_node "$h"; done
  for h in $(cluster_hosts); do check "[$1] $h's node joins and is Ready" wait_for 120 ready "$h"; done
}
stop_agents() {
  local h
  for h in $(cluster_hosts); do cluster_kill_node "$h" TERM || true; done
}

vm_node() { kctl ctl get virtualmachines "$1" -o jsonpath='{.status.nodeName}' 2>/dev/null || true; }
domstate() {  # HOST VM: libvirt's state of the VM's domain on HOST ("" if none)
  timeout 20 virsh -c "$(cluster_libvirt_uri "$1")" domstate "default_$2" 2>/dev/null | head -n 1 || true
}
has_domain() { timeout 20 virsh -c "$(cluster_libvirt_uri "$1")" dominfo "default_$2" >/dev/null 2>&1; }
running_copies() {  # VM: how many hosts' libvirt run it
  local n=0 h
  for h in $(cluster_hosts); do [ "$(domstate "$h" "$1")" = running ] && n=$((n + 1)); done
  echo "$n"
}
console_of() { echo "$CLUSTER_DIR/$1/vmhost/node/console/default_$2.log"; }  # HOST VM
last_tick() {  # HOST VM: "N UPTIME DISK" of the last tick the guest printed on HOST
  sed -n 's/.*vmhost-guest: tick \([0-9]*\) uptime=\([0-9.]*\) disk=\(.*\)$/\1 \2 \3/p' \
    "$(console_of "$1" "$2")" 2>/dev/null | tr -d '\r' | tail -n 1
}
ticks_on() {  # HOST VM MIN: the guest ticked at least MIN times on HOST
  local n
  n=$(grep -c 'vmhost-guest: tick ' "$(console_of "$1" "$2")" 2>/dev/null) || true
  [ "${n:-0}" -ge "$3" ]
}
mac_of() {  # HOST VM: the MAC of the domain's NIC in HOST's libvirt
  timeout 20 virsh -c "$(cluster_libvirt_uri "$1")" domiflist "default_$2" 2>/dev/null |
    awk 'NR > 2 && $5 ~ /:/ { print $5; exit }'
}

# start_migration VM TO NAME [PARAMETERS YAML]
start_migration() {
  cat >"$TDIR/$3.yaml" <<YAML
apiVersion: vmhost.io/v1
kind: VirtualMachineMigration
metadata: {name: $3}
spec: {vmName: $1${2:+, targetNode: $2}${4:+, parameters: $4}}
YAML
  kctl ctl apply -f "$TDIR/$3.yaml" >/dev/null
}
mig_phase() { kctl ctl get virtualmachinemigrations "$1" -o jsonpath='{.status.phase}' 2>/dev/null || true; }
mig_field() { kctl ctl get virtualmachinemigrations "$1" -o jsonpath="{$2}" 2>/dev/null || true; }
# wait_migration NAME [TIMEOUT_S]: prints the final phase (empty on timeout).
wait_migration() {
  local phase="" deadline=$((SECONDS + ${2:-180}))
  while [ $SECONDS -lt $deadline ]; do
    phase=$(mig_phase "$1")
    case $phase in Succeeded | Failed) echo "$phase"; return 0 ;; esac
    sleep 0.5
  done
  echo "$phase"
}
# migrate VM TO NAME [PARAMETERS YAML]: prints the final phase.
migrate() {
  start_migration "$@"
  wait_migration "$3"
}
mig_running() {  # NAME: Running with data moving
  [ "$(mig_phase "$1")" = Running ] && [ "$(mig_field "$1" .status.progress.dataProcessedBytes)" -gt 0 ] 2>/dev/null
}

# watch_copies VM FILE: samples both hosts' libvirt every 0.5 s in the
# background, appending the number of running copies to FILE; stop with
# kill $WATCH_PID. max_copies FILE: the most seen.
watch_copies() {
  ( while :; do running_copies "$1" >>"$2"; sleep 0.5; done ) &
  WATCH_PID=$!
}
max_copies() { sort -n "$1" | tail -n 1; }
