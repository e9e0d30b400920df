#!/usr/bin/env python3
"""A scripted vmhost API for `vmctl migrate --wait`: the path that ends
Succeeded, which the test driver cannot produce (it cannot migrate). It
answers the GETs vmctl makes before creating (the VM, the --to node), records
the POSTed VirtualMachineMigration in BODY_FILE, and serves the migration
through a fixed sequence of phases, one step per GET:
Pending (NodeLimit) -> Scheduling -> PreparingTarget -> Running 25% -> Running
75% (a decision) -> Succeeded (result). Writes its port to PORT_FILE.
usage: fake_migration_api.py PORT_FILE BODY_FILE"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT_FILE, BODY_FILE = sys.argv[1], sys.argv[2]
BASE = "/apis/vmhost.io/v1"
NAME = "vm1-migration-abcde"
MIB = 1024 * 1024


def migration(step):
    status = {"sourceNode": "node-a"}
    if step == 0:
        status.update(phase="Pending", reason="NodeLimit",
                      message="waiting: 2 migrations are running from node node-a (limit 2)")
    elif step == 1:
        status.update(phase="Scheduling")
    elif step == 2:
        status.update(phase="PreparingTarget", targetNode="node-b")
    elif step in (3, 4):
        done = 55 * MIB if step == 3 else 165 * MIB
        status.update(phase="Running", targetNode="node-b", progress={
            "dataTotalBytes": 220 * MIB, "dataProcessedBytes": done,
            "dataRemainingBytes": 220 * MIB - done, "dirtyRateBytesPerSecond": 3 * MIB + MIB // 5,
            "memoryIteration": step - 1, "maxDowntimeMs": 300, "elapsedMs": 1000 * (step - 2),
            **({"lastDecision": "raise max downtime to 600 ms: not converging"} if step == 4 else {})})
    else:
        status.update(phase="Succeeded", targetNode="node-b", result={
            "totalMs": 1234, "downtimeMs": 85, "bytesTransferred": 63 * MIB, "endedBy": "pre-copy"})
    return {"apiVersion": "vmhost.io/v1", "kind": "VirtualMachineMigration",
            "metadata": {"name": NAME, "namespace": "default", "uid": "u-1",
                         "creationTimestamp": "2026-11-25T17:00:00Z"},
            "spec": {"vmName": "vm1", "targetNode": "node-b"}, "status": status}


class Handler(BaseHTTPRequestHandler):
    steps = 0

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == BASE + "/namespaces/default/virtualmachines/vm1":
            return self.reply(200, {"metadata": {"name": "vm1"}})
        if self.path == BASE + "/nodes/node-b":
            return self.reply(200, {"metadata": {"name": "node-b"}})
        if self.path == BASE + "/namespaces/default/virtualmachinemigrations/" + NAME:
            step = Handler.steps
            Handler.steps += 1
            return self.reply(200, migration(step))
        self.reply(404, {"kind": "Status", "reason": "NotFound", "message": self.path + " not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        with open(BODY_FILE, "wb") as f:
            f.write(self.rfile.read(length))
        Handler.steps = 0
        m = migration(0)
        del m["status"]
        self.reply(201, m)

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
