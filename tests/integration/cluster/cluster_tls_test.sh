#!/usr/bin/env bash
# The cluster with `vmhost init`'s PKI, on loopback with libvirt's test
# driver: the API is https with a bearer token (kubectl through the
# generated kubeconfig, vmctl through the generated config), nodes get their
# certificate once with the join token and then join with mutual TLS.
# Refused, each with a log line and nothing changed: no token / a wrong API
# token, a wrong join token, a second node taking a joined node's name, a
# client certificate from another CA, a node certificate used for another
# node's name, and plain TCP on the TLS port.
# usage: cluster_tls_test.sh BUILD_DIR SOURCE_DIR
BUILD=$1
SRC=$2
. "$SRC/tests/lib/harness.sh"
require_tools openssl:openssl curl:curl
PROBE="$BUILD/bin/vmhost-rpc-probe"

API_PORT=$(free_port)
JOIN_PORT=$(free_port)
C="$WORK/ctl"
check "vmhost init creates the cluster's secrets" \
  "$VMHOST" init --data-dir "$C" --address 127.0.0.1 --api-port "$API_PORT" --cluster-port "$JOIN_PORT"
check "keys and tokens are private (0600)" \
  test "$(stat -c %a "$C/pki/ca.key") $(stat -c %a "$C/join-token") $(stat -c %a "$C/api-token")" = "600 600 600"
check "vmhost init refuses to overwrite a CA" sh -c "! '$VMHOST' init --data-dir '$C' 2>/dev/null"

cat >"$WORK/controller.yaml" <<YAML
listen: "127.0.0.1:$API_PORT"
cluster: {listen: "127.0.0.1:$JOIN_PORT"}
plugins: {scheduler: {name: default}}
YAML
"$VMHOST" controller --config "$WORK/controller.yaml" --data-dir "$C" >"$WORK/ctl.log" 2>&1 &
PID_ctl=$!
AIO_PIDS+=("$PID_ctl")
up() { grep -q "API on https://127.0.0.1:$API_PORT, nodes join on 127.0.0.1:$JOIN_PORT (mutual TLS)" "$WORK/ctl.log"; }
check "the controller serves https and mutual TLS" wait_for 20 up
API="https://127.0.0.1:$API_PORT"
JOIN="127.0.0.1:$JOIN_PORT"
VM() { "$VMCTL_BIN" --config "$C/vmctl.yaml" "$@"; }
K() { HOME="$WORK" KUBECONFIG="$C/admin.kubeconfig" kubectl --request-timeout=20s "$@"; }

node_config() {  # NAME [TOKEN FILE]
  cat >"$WORK/$1.yaml" <<YAML
libvirt: {uri: "test:///default"}
node: {heartbeatSeconds: 1}
cluster:
  controller: "$JOIN"
  apiServer: "$API"
  caFile: "$C/pki/ca.crt"
  joinTokenFile: "${2:-$C/join-token}"
plugins: {storage: {name: local, config: {pool: $WORK/$1/pool}}}
YAML
}
node_config node-a
start_node node-a "$WORK/node-a.yaml" "$JOIN"
ready() { [ "$(VM get node "$1" 2>/dev/null | awk 'NR == 2 { print $2 }')" = Ready ]; }
check "node-a gets its certificate and joins" wait_for 30 ready node-a
check "its certificate is the CA's, CN node-a, client auth" \
  sh -c "openssl verify -CAfile '$C/pki/ca.crt' '$WORK/node-a/pki/node.crt' >/dev/null &&
         openssl x509 -in '$WORK/node-a/pki/node.crt' -noout -subject | grep -q 'CN = node-a' &&
         openssl x509 -in '$WORK/node-a/pki/node.crt' -noout -ext extendedKeyUsage | grep -q 'Client Authentication'"
check "its key is private" test "$(stat -c %a "$WORK/node-a/pki/node.key")" = 600
kubectl_ok() { K get nodes node-a >/dev/null; }
check "kubectl works through the generated kubeconfig (https, token)" kubectl_ok
cat >"$WORK/vm1.yaml" <<YAML
apiVersion: vmhost.io/v1
kind: VirtualMachine
metadata: {name: vm1}
spec: {memory: 64Mi}
YAML
check "vmctl apply through the generated config" VM apply -f "$WORK/vm1.yaml"
running() { [ "$(VM get vm vm1 -o json 2>/dev/null | sed -n 's/^    "phase": "\(.*\)",\{0,1\}$/\1/p')" = Running ]; }
check "the VM runs on the TLS-joined node" wait_for 30 running

# ---- the API's authentication
code() { curl -s -o /dev/null -w '%{http_code}' --cacert "$C/pki/ca.crt" "$@"; }
check "no token: 401" test "$(code "$API/apis/vmhost.io/v1/nodes")" = 401
check "a wrong token: 401" test "$(code -H 'Authorization: Bearer nope' "$API/apis/vmhost.io/v1/nodes")" = 401
check "the join token is not an API token" \
  test "$(code -H "Authorization: Bearer $(cat "$C/join-token")" "$API/apis/vmhost.io/v1/nodes")" = 401
check "the API token works" \
  test "$(code -H "Authorization: Bearer $(cat "$C/api-token")" "$API/apis/vmhost.io/v1/nodes")" = 200
check "/healthz stays open" test "$(code "$API/healthz")" = 200
check "the API logged the refusals" grep -q "api: 401 GET /apis/vmhost.io/v1/nodes: wrong bearer token" "$WORK/ctl.log"
check "plain http on the https port gets no answer" \
  sh -c "! curl -s -m 5 http://127.0.0.1:$API_PORT/healthz >/dev/null"

nodes() { VM get node 2>/dev/null | awk 'NR > 1' | wc -l; }
n0=$(nodes)
# ---- refused joins: nothing changes
echo "not-the-token-0123456789" >"$WORK/bad-token"
node_config intruder "$WORK/bad-token"
out=$("$VMHOST" node --config "$WORK/intruder.yaml" --data-dir "$WORK/intruder" --node-name intruder 2>&1 || true)
echo "  wrong join token: $out"
check "a wrong join token gets no certificate" grep -q "refused this node's certificate request (HTTP 401)" <<<"$out"
check "and leaves no key or certificate behind" test ! -e "$WORK/intruder/pki/node.crt"
node_config thief
out=$("$VMHOST" node --config "$WORK/thief.yaml" --data-dir "$WORK/thief" --node-name node-a 2>&1 || true)
echo "  second node-a: $out"
check "a joined node's name is not issued twice" grep -q "node node-a already has a certificate" <<<"$out"
out=$("$PROBE" "$JOIN" foreign-ca node-a "$C/pki/ca.crt" || true)
echo "  another CA: $out"
check "a client certificate from another CA is refused" grep -q "^refused" <<<"$out"
check "the controller logged it" grep -q "TLS handshake failed: .*certificate verify failed" "$WORK/ctl.log"
out=$("$PROBE" "$JOIN" tls-join node-b "$C/pki/ca.crt" "$WORK/node-a/pki/node.crt" "$WORK/node-a/pki/node.key" || true)
echo "  node-a's certificate as node-b: $out"
check "a certificate cannot join under another node's name" \
  grep -q "the client certificate is for node 'node-a', not 'node-b'" <<<"$out"
out=$("$PROBE" "$JOIN" join node-c "$(cat "$C/join-token")" || true)
echo "  plain TCP: $out"
check "plain TCP on the TLS port is refused" grep -q "^refused" <<<"$out"
check "the controller logged it" grep -q "TLS handshake failed: .*wrong version number" "$WORK/ctl.log"
check "no node was added" test "$(nodes)" -eq "$n0"
check "node-a is still Ready" ready node-a
check "the controller is still up" kill -0 "$PID_ctl"
finish
