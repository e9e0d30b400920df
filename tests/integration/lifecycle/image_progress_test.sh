#!/usr/bin/env bash
# A base image fetched over HTTP shows its progress in the VM's status: the
# ImagesReady condition says Fetching with bytes and a percentage while the
# node downloads it, then Fetched; the VM runs on an overlay of the cached
# image, and a second VM on the same URL does not fetch it again.
# The server is python3's http.server on 127.0.0.1, slowed down so that the
# fetch lasts a few seconds. libvirt's test driver: no QEMU.
# usage: image_progress_test.sh BUILD_DIR SOURCE_DIR
BUILD=$1
SRC=$2
. "$SRC/tests/lib/harness.sh"
require_tools python3:python3

# 6 MiB served in 64 KiB pieces, 40 ms apart: ~4 s.
head -c $((6 * 1024 * 1024)) /dev/zero >"$WORK/base.raw"
cat >"$WORK/slow_server.py" <<'PY'
import http.server, os, sys, time
root = sys.argv[1]
class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = os.path.join(root, os.path.basename(self.path))
        if not os.path.isfile(path):
            self.send_error(404); return
        with open(os.path.join(root, "requests"), "a") as log: log.write(self.path + "\n")
        size = os.path.getsize(path)
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with open(path, "rb") as f:
            while True:
                chunk = f.read(65536)
                if not chunk: break
                self.wfile.write(chunk); self.wfile.flush(); time.sleep(0.04)
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
print(server.server_address[1], flush=True)
server.serve_forever()
PY
python3 "$WORK/slow_server.py" "$WORK" >"$WORK/port" 2>"$WORK/server.log" &
SERVER_PID=$!
EXTRA_CLEANUP="kill $SERVER_PID 2>/dev/null || true"
wait_for 10 test -s "$WORK/port" || { echo "FAIL: the HTTP server did not start"; cat "$WORK/server.log"; exit 1; }
url="http://127.0.0.1:$(cat "$WORK/port")/base.raw"

cat >"$WORK/config.yaml" <<YAML
libvirt: {uri: "test:///default"}
plugins:
  scheduler: {name: default}
  storage: {name: local, config: {pool: $WORK/pool}}
  network: {name: libvirt-network}
YAML
start_aio aio "$WORK/config.yaml" node-a

vm_yaml() {
  cat <<YAML
apiVersion: vmhost.io/v1
kind: VirtualMachine
metadata: {name: $1}
spec:
  memory: 64Mi
  disks: [{name: root, bus: virtio}]
  volumes: [{name: root, ephemeral: {image: {url: "$url"}}}]
YAML
}
vm_yaml fetch-1 >"$WORK/vm1.yaml"
check "vmctl apply (image by URL)" vmctl aio apply -f "$WORK/vm1.yaml"

images_condition() {  # VM FIELD
  kctl aio get virtualmachines "$1" \
    -o jsonpath="{.status.conditions[?(@.type==\"ImagesReady\")].$2}" 2>/dev/null
}
fetching() {
  [ "$(images_condition fetch-1 reason)" = Fetching ] &&
    images_condition fetch-1 message |
    grep -Eq "volume root: fetching $url: [0-9.]+ MiB of 6.0 MiB \([0-9]+%\)"
}
check "status shows the fetch in progress (Fetching, bytes of total, %)" wait_for 20 fetching
echo "  while fetching: $(images_condition fetch-1 message)"
check "the VM reaches Running once the image is in" wait_phase aio fetch-1 Running 30
check "ImagesReady is True/Fetched after the fetch" \
  test "$(images_condition fetch-1 status)/$(images_condition fetch-1 reason)" = True/Fetched
final=$(images_condition fetch-1 message)
echo "  after: $final"
check "the last report is 100%" grep -q '6.0 MiB of 6.0 MiB (100%)' <<<"$final"
check "the image is cached once in the pool" \
  test "$(find "$WORK/pool/images" -maxdepth 1 -type f | wc -l)" -eq 1

vm_yaml fetch-2 >"$WORK/vm2.yaml"
check "a second VM on the same URL" vmctl aio apply -f "$WORK/vm2.yaml"
check "it runs" wait_phase aio fetch-2 Running 20
check "the server was asked once (fetched once per node)" test "$(wc -l <"$WORK/requests")" -eq 1
check "no fetch condition on a VM whose image was cached" \
  test -z "$(images_condition fetch-2 reason)"
finish
