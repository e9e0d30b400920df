#!/usr/bin/env bash
# The quick start: installs dependencies, builds vmhost, assembles the tiny
# test guest, starts libvirtd for the node's networks (deploy/node-setup.sh),
# starts `vmhost all-in-one` (real QEMU through libvirt's embedded driver),
# creates a VM on the `default` NAT network (created on first use), waits for
# it to run and shows the lines its serial console printed when it booted and
# got its DHCP address.
#
# Re-running it is safe: it restarts the host (running VMs are re-adopted,
# not restarted) and re-applies the VM.
#   VMHOST_DATA_DIR   where the host keeps its state (default: <repo>/.vmhost)
#   VMHOST_LISTEN     the API's address (default: 127.0.0.1:8080)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
data=${VMHOST_DATA_DIR:-$root/.vmhost}
listen=${VMHOST_LISTEN:-127.0.0.1:8080}
api="http://$listen"

. "$root/deploy/lib/require.sh"

"$root/deploy/install-deps.sh"
# Checked once install-deps.sh has had its chance to install them.
require_tools curl:curl
[ "$(id -u)" -eq 0 ] || require_tools sudo:sudo
"$root/deploy/build.sh"
# libvirtd with its network driver: qemu:///embed reaches libvirt networks
# through it (the all-in-one config's `default` NAT network).
if [ "$(id -u)" -eq 0 ]; then "$root/deploy/node-setup.sh"; else sudo "$root/deploy/node-setup.sh"; fi
guest_dir="${VMHOST_CACHE_DIR:-$HOME/.cache/vmhost}/guest"
"$root/deploy/guest/build-guest.sh" "$guest_dir"

echo
echo "== plugins"
"$build/bin/vmhost" plugins list --config "$root/deploy/all-in-one.yaml"

mkdir -p "$data"
if [ -f "$data/vmhost.pid" ] && kill -0 "$(cat "$data/vmhost.pid")" 2>/dev/null; then
  echo "== stopping the previous vmhost (pid $(cat "$data/vmhost.pid")); its VMs keep running"
  kill "$(cat "$data/vmhost.pid")"
  for _ in $(seq 1 100); do kill -0 "$(cat "$data/vmhost.pid")" 2>/dev/null || break; sleep 0.1; done
fi
echo "== starting vmhost all-in-one (data in $data, log in $data/vmhost.log)"
nohup "$build/bin/vmhost" all-in-one --config "$root/deploy/all-in-one.yaml" --data-dir "$data" \
  --listen "$listen" >"$data/vmhost.log" 2>&1 &
echo $! >"$data/vmhost.pid"
for _ in $(seq 1 300); do
  curl -fsS "$api/healthz" >/dev/null 2>&1 && break
  if ! kill -0 "$(cat "$data/vmhost.pid")" 2>/dev/null; then
    echo "vmhost exited:"; tail -n 20 "$data/vmhost.log"; exit 1
  fi
  sleep 0.2
done
curl -fsS "$api/healthz" >/dev/null || { echo "the API did not come up on $api"; tail -n 20 "$data/vmhost.log"; exit 1; }

cat >"$data/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- cluster: {server: "$api"}
  name: vmhost
contexts:
- context: {cluster: vmhost, user: vmhost, namespace: default}
  name: vmhost
current-context: vmhost
users:
- name: vmhost
  user: {}
KC

cat >"$data/quickstart-vm.yaml" <<YAML
apiVersion: vmhost.io/v1
kind: VirtualMachine
metadata:
  name: quickstart
spec:
  cpu: {cores: 1}
  memory: 128Mi
  boot:
    kernel: $guest_dir/vmlinux
    initrd: $guest_dir/initramfs.gz
    cmdline: "console=ttyS0 quiet cryptomgr.notests"
  interfaces:
  - {name: eth0, network: default}
YAML
vmctl=("$build/bin/vmctl" --server "$api")
echo "== creating the VM (the first start probes QEMU's capabilities: up to a minute)"
"${vmctl[@]}" apply -f "$data/quickstart-vm.yaml"
"${vmctl[@]}" wait quickstart --for=phase=Running --timeout=300s
"${vmctl[@]}" get
console="$data/node/console/default_quickstart.log"
for _ in $(seq 1 600); do grep -q "vmhost-guest: booted" "$console" 2>/dev/null && break; sleep 0.2; done
echo
echo "== the guest's serial console:"
grep "vmhost-guest: booted" "$console" | tail -n 1 || { echo "(no boot line yet; see $console)"; exit 1; }
for _ in $(seq 1 300); do grep -q "vmhost-guest: eth0 address" "$console" 2>/dev/null && break; sleep 0.2; done
# (the guest's shell prompt may share the line: print from the message on)
grep -o "vmhost-guest: eth0 address .*" "$console" | tail -n 1 ||
  { echo "(no DHCP address on network default yet; see $console and /var/log/libvirt/libvirtd.log)"; exit 1; }

cat <<TXT

vmhost is running: API on $api (pid $(cat "$data/vmhost.pid"), log $data/vmhost.log).
  $build/bin/vmctl --server $api get
  $build/bin/vmctl --server $api describe quickstart
  $build/bin/vmctl --server $api console quickstart   # the guest's shell; Ctrl-] detaches
  KUBECONFIG=$data/kubeconfig kubectl get virtualmachines,nodes
  $build/bin/vmctl --server $api stop quickstart      # or start, delete
Stop the host (VMs keep running until deleted): kill \$(cat $data/vmhost.pid)
TXT
