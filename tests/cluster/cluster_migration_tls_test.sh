#!/usr/bin/env bash
# Live migration over TLS, vmhost on the multi-host harness with real QEMU
# (TCG): a cluster with a PKI (`vmhost init`), the controller in the root
# namespace with mutual TLS, and two nodes that get their certificates from
# it. Each node writes its certificate as libvirt's TLS migration reads it
# (node.migrationTlsDir, qemu.conf migrate_tls_x509_cert_dir), and asks for
# TLS migrations (VIR_MIGRATE_TLS) because the cluster has a PKI:
#   - a VM on local disks migrates host -> host and back: the memory and
#     the NBD disk copy both go over TLS;
#   - with a certificate the target's QEMU cannot trust, the migration fails
#     with the TLS error and the guest stays on the source (so the stream
#     really was TLS); the restarted agent rewrites its certificate and the
#     next migration succeeds.
# Usage: cluster_migration_tls_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=${1:?build dir}
SRC=${2:?source dir}
. "$SRC/tests/lib/harness.sh"
. "$SRC/tests/e2e/lib_qemu.sh"
. "$SRC/tests/cluster/lib_cluster.sh"
. "$SRC/tests/cluster/lib_cluster_vmhost.sh"
. "$SRC/tests/cluster/lib_cluster_migration.sh"
require_tools openssl:openssl

cluster_test_begin vmhost-cluster-migration-tls
# QEMU's TLS directory is each host's own /etc/libvirt/pki/qemu (it must
# exist before libvirtd starts); the node writes the files into it.
for i in 1 2; do mkdir -p "$CLUSTER_DIR/host$i/etc/libvirt/pki/qemu"; done
CLUSTER_QEMU_CONF_EXTRA='migrate_tls_x509_cert_dir = "/etc/libvirt/pki/qemu"'
cluster_up 2 || { echo "FAIL: the harness could not create 2 hosts"; exit 1; }

C="$TDIR/ctl"
IP=$CLUSTER_CONTROLLER_IP
check "vmhost init (the cluster's CA and tokens)" \
  "$VMHOST" init --data-dir "$C" --address "$IP" --api-port "$API_PORT" --cluster-port "$JOIN_PORT"
cat >"$TDIR/controller.yaml" <<YAML
listen: "$IP:$API_PORT"
cluster: {listen: "$IP:$JOIN_PORT", heartbeatTimeoutSeconds: 6}
plugins: {scheduler: {name: default, config: {cpuAllocationRatio: 10}}}
YAML
"$VMHOST" controller --config "$TDIR/controller.yaml" --data-dir "$C" >"$WORK/ctl.log" 2>&1 &
AIO_PIDS+=("$!")
up() { grep -q "API on https://$IP:$API_PORT, nodes join on $IP:$JOIN_PORT (mutual TLS)" "$WORK/ctl.log"; }
check "the controller serves https and mutual TLS" wait_for 30 up
# The harness's kctl/vmctl, through what vmhost init wrote.
cp "$C/admin.kubeconfig" "$WORK/ctl.kubeconfig"
mkdir -p "$WORK/.config/vmhost"
cp "$C/vmctl.yaml" "$WORK/.config/vmhost/vmctl.yaml"
API_ctl="https://$IP:$API_PORT"

export VMHOST C IP API_PORT JOIN_PORT
CLUSTER_NODE_CMD='cat >"$HOST_DIR/node.yaml" <<YAML
libvirt: {uri: "$LIBVIRT_URI"}
node: {heartbeatSeconds: 1, resyncSeconds: 3, stopGracePeriodSeconds: 10,
       libvirtEndpoint: "$LIBVIRT_TCP_URI", migrationTlsDir: /etc/libvirt/pki/qemu}
cluster: {controller: "$IP:$JOIN_PORT", apiServer: "https://$IP:$API_PORT",
          caFile: "$C/pki/ca.crt", joinTokenFile: "$C/join-token"}
plugins: {storage: {name: local, config: {pool: "$HOST_DIR/pool"}}}
YAML
exec "$VMHOST" node --config "$HOST_DIR/node.yaml" --data-dir "$HOST_DIR/vmhost" --node-name "$HOST_NAME"'
export CLUSTER_NODE_CMD
for h in host1 host2; do cluster_start_node "$h"; done
for h in host1 host2; do check "$h gets its certificate and joins over mutual TLS" wait_for 120 ready "$h"; done
tls_dir() { echo "$(cluster_host_dir "$1")/etc/libvirt/pki/qemu"; }
for h in host1 host2; do
  check "$h wrote its migration certificates (server and client: its own, the CA's)" sh -c "
    d='$(tls_dir "$h")'
    for f in ca-cert server-cert server-key client-cert client-key; do [ -s \"\$d/\$f.pem\" ] || exit 1; done
    openssl verify -CAfile '$C/pki/ca.crt' \"\$d/server-cert.pem\" >/dev/null &&
    openssl x509 -in \"\$d/server-cert.pem\" -noout -subject | grep -q 'CN = $h' &&
    openssl x509 -in \"\$d/server-cert.pem\" -noout -ext extendedKeyUsage | grep -q 'Server Authentication' &&
    [ \"\$(stat -c %a \"\$d/server-key.pem\")\" = 600 ]"
done

VM=secure
write_guest_vm_args "$TDIR/$VM.yaml" "$VM" 128Mi "vmhost.ticker=1 vmhost.marker=vda:$VM" "  disks:
  - {name: data}
  volumes:
  - name: data
    persistent: {claimName: $VM-data, size: 16Mi}"
kctl ctl apply -f "$TDIR/$VM.yaml" >/dev/null
running() { [ "$(kctl ctl get virtualmachines "$VM" -o jsonpath='{.status.phase}' 2>/dev/null)" = Running ]; }
check "$VM reaches Running" wait_for 300 running
src=$(vm_node "$VM")
dst=host2
[ "$src" = host2 ] && dst=host1
check "the guest ticks" wait_for 90 ticks_on "$src" "$VM" 3

phase=$(migrate "$VM" "$dst" tls-1)
check "[tls] $src -> $dst Succeeded ($(mig_field tls-1 .status.message))" test "$phase" = Succeeded
check "[tls] the guest runs on $dst" wait_for 30 eval "[ \"\$(domstate $dst $VM)\" = running ]"
check "[tls] one running copy" test "$(running_copies "$VM")" -eq 1
check "[tls] the guest ticks on $dst" wait_for 30 ticks_on "$dst" "$VM" 2

# A target certificate the source cannot trust: the TLS handshake fails.
back=$src
# (A server certificate like the node's, for the node's name, but signed by
# another CA.)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TDIR/rogue-ca.key" -out "$TDIR/rogue-ca.crt" \
  -days 1 -subj "/CN=rogue-ca" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$TDIR/rogue.key" -out "$TDIR/rogue.csr" \
  -subj "/CN=$back" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' \
  >"$TDIR/rogue.ext"
openssl x509 -req -in "$TDIR/rogue.csr" -CA "$TDIR/rogue-ca.crt" -CAkey "$TDIR/rogue-ca.key" \
  -CAcreateserial -out "$TDIR/rogue.crt" -days 1 -extfile "$TDIR/rogue.ext" 2>/dev/null
cp "$TDIR/rogue.crt" "$(tls_dir "$back")/server-cert.pem"
cp "$TDIR/rogue.key" "$(tls_dir "$back")/server-key.pem"
phase=$(migrate "$VM" "$back" tls-rogue)
msg=$(mig_field tls-rogue .status.message)
check "[tls] a target certificate outside the CA: Failed ($msg)" test "$phase" = Failed
check "[tls] ... with a TLS error from libvirt/QEMU" grep -Eiq "tls|certificate|handshake" <<<"$msg"
check "[tls] the guest still runs on $dst" test "$(vm_node "$VM")" = "$dst" -a "$(domstate "$dst" "$VM")" = running
check "[tls] nothing left on $back" wait_for 60 eval "! has_domain $back $VM"
# The agent writes its own certificate back at start.
cluster_kill_node "$back" TERM
cluster_start_node "$back"
check "[tls] $back's agent is back" wait_for 60 ready "$back"
cert_back() { openssl verify -CAfile "$C/pki/ca.crt" "$(tls_dir "$back")/server-cert.pem" >/dev/null 2>&1; }
check "[tls] the restarted agent wrote its own certificate back" wait_for 60 cert_back
phase=$(migrate "$VM" "$back" tls-2)
check "[tls] $dst -> $back Succeeded ($(mig_field tls-2 .status.message))" test "$phase" = Succeeded
check "[tls] one running copy" test "$(running_copies "$VM")" -eq 1

finish
