#!/usr/bin/env python3
"""Cluster scale benchmark of issue 5 (point 9): a real `vmhost controller`
with many simulated nodes on loopback, and thousands of VMs.

The nodes are vmhost-sim-nodes processes (default; many nodes per process):
each simulated node is the real NodeAgent + RpcControlPlane with its own Cap'n
Proto RPC connection to the controller, on its own instance of libvirt's test
driver (test:///DIR/node.xml; no QEMU). With --node-mode process, every node
is a separate `vmhost node` process instead (for comparing the cost of a
node process).

  1. join:    N nodes start; time until the controller lists all N Ready.
  2. idle:    a window (--traffic-seconds, 60) with N nodes and no VMs: the
              TCP payload bytes on the controller's cluster port, both ways,
              from `ss -ti` (tcp_info bytes_received / bytes_acked of every
              established connection on the port) before and after, and the
              segments; per node per minute. Only heartbeats flow then.
  3. vms:     a watch, then V VMs (runStrategy Always, 1 core, 2Mi, no disks,
              no NICs) created by a few concurrent clients; time from the
              first create sent to the watch showing the last one Running.
              Targets: < 60 s; the controller's peak RSS (VmHWM) < 200 MB.
  4. loaded:  the same traffic window with the V VMs running.

The controller's CPU (utime + stime from /proc/PID/stat) is reported per
phase. Everything listens on 127.0.0.1, runs in a temporary directory
(removed at the end; kept with --keep or on failure) and is killed on every
exit path (PR_SET_PDEATHSIG too). Every wait is bounded. Python 3 standard
library only. Figures and how to read them: docs/benchmarks.md.

usage: cluster_bench.py --build BUILD_DIR [--nodes 500] [--vms 5000]
                        [--node-mode sim|process] [--json FILE] [--enforce-targets]
Exit status: 0 if every phase completed; 1 if nodes did not join or VMs did
not reach Running in time; 2 with --enforce-targets if a target was missed.
"""
import argparse
import ctypes
import hashlib
import http.client
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

GROUP_PATH = "/apis/vmhost.io/v1"
VMS_PATH = GROUP_PATH + "/namespaces/default/virtualmachines"
NODES_PATH = GROUP_PATH + "/nodes"
TOKEN = "cluster-bench-join-token-0123456789"

RUNNING_TARGET_S = 60.0
RSS_TARGET_MB = 200.0


class BenchError(Exception):
    pass


def die_with_parent():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Proc:
    live = []

    def __init__(self, argv, log, env):
        self.log = log
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, preexec_fn=die_with_parent)
        Proc.live.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=30):
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def status(self):
        """VmRSS and VmHWM in MiB, and Threads."""
        out = {}
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) / 1024.0
                elif key == "Threads":
                    out[key] = int(value)
        return out


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port, timeout=60):
        self.port, self.timeout = port, timeout
        self.conn = None

    def request(self, method, path, body=None):
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, data
            except (http.client.HTTPException, ConnectionError, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def vm_body(name):
    return json.dumps({
        "apiVersion": "vmhost.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {"cpu": {"cores": 1}, "memory": "2Mi", "runStrategy": "Always"},
    }).encode()


class Watcher(threading.Thread):
    """Streams the VM watch; records when each VM was first seen in each phase."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.cond = threading.Condition()
        self.first = {}   # name -> {phase: monotonic}
        self.counts = {}  # phase -> VMs first seen in it
        self.node = {}    # name -> status.nodeName when first seen Running
        self.events = 0
        self.error = None
        self.conn = None
        self.ready = threading.Event()

    def run(self):
        try:
            c = Client(self.port)
            status, body = c.request("GET", VMS_PATH + "?limit=1")
            c.close()
            rv = json.loads(body)["metadata"]["resourceVersion"]
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3600)
            self.conn.request("GET", "%s?watch=true&resourceVersion=%s&timeoutSeconds=3600" % (VMS_PATH, rv))
            resp = self.conn.getresponse()
            if resp.status != 200:
                raise BenchError("watch: HTTP %d" % resp.status)
            self.ready.set()
            while True:
                line = resp.readline()
                if not line:
                    break
                now = time.monotonic()
                line = line.strip()
                if not line:
                    continue
                obj = json.loads(line).get("object", {})
                name = obj.get("metadata", {}).get("name")
                phase = (obj.get("status") or {}).get("phase")
                with self.cond:
                    self.events += 1
                    if name and phase:
                        seen = self.first.setdefault(name, {})
                        if phase not in seen:
                            seen[phase] = now
                            if phase == "Running":
                                self.node[name] = (obj.get("status") or {}).get("nodeName")
                            self.counts[phase] = self.counts.get(phase, 0) + 1
                            self.cond.notify_all()
        except Exception as e:  # noqa: BLE001
            with self.cond:
                self.error = repr(e)
                self.cond.notify_all()
        finally:
            self.ready.set()

    def wait_count(self, phase, n, deadline):
        with self.cond:
            while self.counts.get(phase, 0) < n:
                left = deadline - time.monotonic()
                if left <= 0 or self.error:
                    return False
                self.cond.wait(min(left, 1.0))
        return True

    def stop(self):
        if self.conn is not None and self.conn.sock is not None:
            try:
                self.conn.sock.shutdown(2)
            except OSError:
                pass
        self.join(timeout=10)


def create_vms(port, names, clients):
    """Creates `names` with `clients` concurrent connections. Returns (first send, last reply)."""
    work = queue.Queue()
    for n in names:
        work.put(n)
    errors, firsts = [], []
    lock = threading.Lock()

    def worker():
        c = Client(port)
        try:
            while not errors:
                try:
                    name = work.get_nowait()
                except queue.Empty:
                    return
                t = time.monotonic()
                status, data = c.request("POST", VMS_PATH, vm_body(name))
                with lock:
                    firsts.append(t)
                if status != 201:
                    with lock:
                        errors.append("create %s: HTTP %d: %s" % (name, status, data[:300]))
                    return
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append("create: %r" % e)
        finally:
            c.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=3600)
    last = time.monotonic()
    if errors:
        raise BenchError(errors[0])
    return min(firsts), last


def ready_nodes(port):
    c = Client(port)
    try:
        status, body = c.request("GET", NODES_PATH)
    finally:
        c.close()
    if status != 200:
        return 0, 0
    items = json.loads(body).get("items", [])
    ready = 0
    for n in items:
        for cond in (n.get("status") or {}).get("conditions", []):
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                ready += 1
    return len(items), ready


def tcp_totals(port):
    """Sums tcp_info over the established connections whose local port is
    `port` (the controller's side): payload bytes received and sent (acked),
    segments in and out."""
    out = subprocess.run(["ss", "-tinH", "state", "established", "( sport = :%d )" % port],
                         capture_output=True, text=True, timeout=60).stdout
    tot = {"conns": 0, "bytes_received": 0, "bytes_acked": 0, "segs_in": 0, "segs_out": 0}
    for key in ("bytes_received", "bytes_acked", "segs_in", "segs_out"):
        for m in re.finditer(r"\b%s:(\d+)" % key, out):
            tot[key] += int(m.group(1))
    tot["conns"] = len(re.findall(r"\bsegs_in:", out))
    return tot


def traffic_window(ctl, cluster_port, nodes, seconds, hb_seconds):
    before, cpu0, t0 = tcp_totals(cluster_port), ctl.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    after, cpu1, wall = tcp_totals(cluster_port), ctl.cpu_seconds(), time.monotonic() - t0
    per_min = 60.0 / wall / max(1, nodes)
    d = {k: after[k] - before[k] for k in ("bytes_received", "bytes_acked", "segs_in", "segs_out")}
    # On the wire each segment adds IPv4 (20) + TCP with timestamps (32) bytes.
    wire = (d["bytes_received"] + d["bytes_acked"] + 52 * (d["segs_in"] + d["segs_out"])) * per_min
    return {
        "seconds": wall, "conns": after["conns"], "heartbeat_seconds": hb_seconds,
        "node_to_controller_bytes_per_node_min": d["bytes_received"] * per_min,
        "controller_to_node_bytes_per_node_min": d["bytes_acked"] * per_min,
        "segments_per_node_min": (d["segs_in"] + d["segs_out"]) * per_min,
        "wire_bytes_per_node_min": wire,
        "controller_cpu_s": cpu1 - cpu0,
    }


def binary_identity(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        head = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", src, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        source = head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        source = "unknown"
    return {"sha256": h.hexdigest()[:12], "source": source}


def wait_line(proc, pattern, timeout):
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        with open(proc.log, "rb") as f:
            m = rx.search(f.read())
        if m:
            return m
        if not proc.alive():
            raise BenchError("%s exited:\n%s" % (proc.log, open(proc.log, errors="replace").read()[-3000:]))
        time.sleep(0.1)
    raise BenchError("no %r in %s after %d s" % (pattern, proc.log, timeout))


def run(args, workdir, results):
    bindir = os.path.join(workdir, "bin")
    os.makedirs(bindir)
    # Measure a snapshot of the build, so a rebuild meanwhile cannot mix builds.
    vmhost = shutil.copy2(os.path.join(args.build, "bin", "vmhost"), bindir)
    sim = None
    if args.node_mode == "sim":
        sim = shutil.copy2(os.path.join(args.build, "bin", "vmhost-sim-nodes"), bindir)
    plugin_dir = shutil.copytree(args.plugin_dir, os.path.join(workdir, "plugins"))
    results["binary"] = binary_identity(vmhost)
    env = dict(os.environ, VMHOST_PLUGIN_DIR=plugin_dir)
    with open(os.path.join(workdir, "token"), "w") as f:
        f.write(TOKEN + "\n")

    ctl_yaml = os.path.join(workdir, "controller.yaml")
    with open(ctl_yaml, "w") as f:
        f.write("cluster: {insecure: true, joinToken: \"%s\", heartbeatTimeoutSeconds: %d}\n"
                "plugins:\n  scheduler: {name: default}\n" % (TOKEN, args.heartbeat_timeout))
    ctl = Proc([vmhost, "controller", "--config", ctl_yaml, "--data-dir", os.path.join(workdir, "ctl"),
                "--listen", "127.0.0.1:0", "--cluster-listen", "127.0.0.1:0"],
               os.path.join(workdir, "controller.log"), env)
    m = wait_line(ctl, rb"API on http://127\.0\.0\.1:(\d+), nodes join on 127\.0\.0\.1:(\d+)", 60)
    api_port, cluster_port = int(m.group(1)), int(m.group(2))
    join = "127.0.0.1:%d" % cluster_port
    time.sleep(1)
    results["controller_idle"] = ctl.status()
    results["controller_idle"]["cpu_s"] = ctl.cpu_seconds()

    def node_yaml(path, uri):
        with open(path, "w") as f:
            f.write("libvirt: {uri: \"%s\"}\n" % uri +
                    "node: {heartbeatSeconds: %d, resyncSeconds: %d}\n" % (args.heartbeat_seconds, args.resync_seconds) +
                    "cluster: {insecure: true, joinTokenFile: \"%s\"}\n" % os.path.join(workdir, "token") +
                    "plugins:\n  storage: {name: local, config: {pool: %s}}\n" % os.path.join(workdir, "pool"))

    # ---- join
    print(time.strftime("%H:%M:%S ") + "cluster_bench: starting %d nodes (%s) ..." % (args.nodes, args.node_mode), flush=True)
    nodes = []
    cpu0, t0 = ctl.cpu_seconds(), time.monotonic()
    if args.node_mode == "sim":
        cfg = os.path.join(workdir, "sim.yaml")
        node_yaml(cfg, "test:///default")  # each simulated node opens its own file URI instead
        per = -(-args.nodes // args.sim_procs)
        for p in range(args.sim_procs):
            first = p * per
            n = min(per, args.nodes - first)
            if n <= 0:
                break
            nodes.append(Proc([sim, "--config", cfg, "--controller", join, "--nodes", str(n), "--first", str(first),
                               "--work-dir", os.path.join(workdir, "nodes")],
                              os.path.join(workdir, "sim-%d.log" % p), env))
    else:
        xml = ("<node><cpu><mhz>2800</mhz><model>x86_64</model><active>16</active><nodes>1</nodes>"
               "<sockets>1</sockets><cores>16</cores><threads>1</threads></cpu>"
               "<memory>33554432</memory></node>\n")
        for i in range(args.nodes):
            d = os.path.join(workdir, "nodes", "sim-%d" % i)
            os.makedirs(d)
            with open(os.path.join(d, "node.xml"), "w") as f:
                f.write(xml)
            node_yaml(os.path.join(d, "node.yaml"), "test://" + os.path.join(d, "node.xml"))
            nodes.append(Proc([vmhost, "node", "--config", os.path.join(d, "node.yaml"), "--data-dir", d,
                               "--node-name", "sim-%d" % i, "--controller", join],
                              os.path.join(d, "node.log"), env))
    deadline = t0 + args.join_timeout
    listed = ready = 0
    while time.monotonic() < deadline:
        listed, ready = ready_nodes(api_port)
        if ready >= args.nodes:
            break
        if not ctl.alive() or not all(p.alive() for p in nodes):
            raise BenchError("a process exited while the nodes joined (logs in %s)" % workdir)
        time.sleep(0.5)
    join_s = time.monotonic() - t0
    if ready < args.nodes:
        raise BenchError("only %d of %d nodes Ready (%d listed) after %d s" % (ready, args.nodes, listed,
                                                                              args.join_timeout))
    results["join"] = {"nodes": args.nodes, "all_ready_s": join_s, "controller_cpu_s": ctl.cpu_seconds() - cpu0,
                       "controller": ctl.status()}
    print(time.strftime("%H:%M:%S ") + "cluster_bench: %d nodes Ready in %.1f s" % (args.nodes, join_s), flush=True)
    time.sleep(2)

    def node_procs_status():
        rss = sum(p.status()["VmRSS"] for p in nodes)
        cpu = sum(p.cpu_seconds() for p in nodes)
        threads = sum(p.status()["Threads"] for p in nodes)
        return {"processes": len(nodes), "rss_mb_total": rss, "cpu_s_total": cpu, "threads_total": threads}

    results["node_processes_after_join"] = node_procs_status()

    # ---- idle traffic: heartbeats only
    if args.traffic_seconds > 0:
        print(time.strftime("%H:%M:%S ") + "cluster_bench: idle traffic window (%d s) ..." % args.traffic_seconds, flush=True)
        results["idle"] = traffic_window(ctl, cluster_port, args.nodes, args.traffic_seconds,
                                         args.heartbeat_seconds)

    # ---- VMs
    print(time.strftime("%H:%M:%S ") + "cluster_bench: creating %d VMs ..." % args.vms, flush=True)
    w = Watcher(api_port)
    w.start()
    if not w.ready.wait(30) or w.error:
        raise BenchError("the watch did not start: %s" % w.error)
    names = ["vm-%05d" % i for i in range(args.vms)]
    cpu0, nodes_cpu0 = ctl.cpu_seconds(), node_procs_status()["cpu_s_total"]
    try:
        first, last_create = create_vms(api_port, names, args.clients)
    except BenchError as e:
        raise BenchError("%s (controller %s, node processes alive %d of %d)"
                         % (e, "alive" if ctl.alive() else "exited %s" % ctl.proc.returncode,
                            sum(p.alive() for p in nodes), len(nodes)))
    deadline = first + args.running_timeout
    ok = False
    while time.monotonic() < deadline:  # in steps, so a dead process fails the run at once
        ok = w.wait_count("Running", args.vms, min(deadline, time.monotonic() + 2))
        if ok or w.error:
            break
        if not ctl.alive() or not all(p.alive() for p in nodes):
            raise BenchError("a process exited while the VMs started (logs in %s)" % workdir)
    end = time.monotonic()
    running = w.counts.get("Running", 0)
    cpu1 = ctl.cpu_seconds()
    st = ctl.status()
    run_times = sorted(v["Running"] - first for v in w.first.values() if "Running" in v)
    per_node = {}
    for n in w.node.values():
        per_node[n] = per_node.get(n, 0) + 1
    results["vms"] = {
        "nodes_used": len(per_node), "vms_per_node_min": min(per_node.values(), default=0),
        "vms_per_node_max": max(per_node.values(), default=0),
        "vms": args.vms, "clients": args.clients, "running": running,
        "create_s": last_create - first, "creates_per_s": args.vms / max(1e-9, last_create - first),
        "all_running_s": (run_times[-1] if ok and run_times else None),
        "half_running_s": (run_times[len(run_times) // 2] if run_times else None),
        "controller_cpu_s": cpu1 - cpu0, "controller_rss_mb": st["VmRSS"], "controller_hwm_mb": st["VmHWM"],
        "controller_threads": st["Threads"],
        "nodes_cpu_s": node_procs_status()["cpu_s_total"] - nodes_cpu0,
        "watch_events": w.events,
    }
    if not ok:
        raise BenchError("only %d of %d VMs Running after %d s (%s)" % (running, args.vms, args.running_timeout,
                                                                      w.error or "timeout"))
    print(time.strftime("%H:%M:%S ") + "cluster_bench: %d VMs Running %.1f s after the first create" % (args.vms, run_times[-1]), flush=True)
    w.stop()

    if args.traffic_seconds > 0:
        time.sleep(5)  # the last status reports and pushes settle
        print(time.strftime("%H:%M:%S ") + "cluster_bench: traffic window with the VMs running (%d s) ..." % args.traffic_seconds, flush=True)
        results["loaded"] = traffic_window(ctl, cluster_port, args.nodes, args.traffic_seconds,
                                           args.heartbeat_seconds)
    results["controller_end"] = ctl.status()
    results["controller_end"]["cpu_s"] = ctl.cpu_seconds()
    results["node_processes_end"] = node_procs_status()
    for p in nodes:
        if not p.alive():
            raise BenchError("a node process exited (logs in %s)" % workdir)


def fmt(v, spec=".1f"):
    return "n/a" if v is None else format(v, spec)


def report(results):
    m = results["machine"]
    print("\ncluster scale: %s, nproc %s, load %s -> %s; binary %s (source %s)"
          % (m["cpu"], m["nproc"], m["loadavg_start"], m.get("loadavg_end"), results.get("binary", {}).get("sha256"),
             results.get("binary", {}).get("source")))
    a = results["args"]
    print("  %d nodes (%s, %s), %d VMs, heartbeat every %d s"
          % (a["nodes"], a["node_mode"], "%d process(es)" % a["sim_procs"] if a["node_mode"] == "sim" else "one each",
             a["vms"], a["heartbeat_seconds"]))
    ci = results.get("controller_idle")
    if ci:
        print("  controller idle (no nodes): RSS %s MB" % fmt(ci["VmRSS"]))
    j = results.get("join")
    if j:
        print("  join: all %d Ready in %s s; controller CPU %s s; controller RSS %s MB"
              % (j["nodes"], fmt(j["all_ready_s"]), fmt(j["controller_cpu_s"], ".2f"), fmt(j["controller"]["VmRSS"])))
    np_ = results.get("node_processes_after_join")
    if np_:
        print("  node processes after the join: %d, RSS %s MB total, %d threads, CPU %s s"
              % (np_["processes"], fmt(np_["rss_mb_total"]), np_["threads_total"], fmt(np_["cpu_s_total"], ".1f")))
    for key, label in (("idle", "idle (no VMs)"), ("loaded", "with the VMs running")):
        t = results.get(key)
        if t:
            print("  traffic %s, %.0f s, %d connections: per node per minute %s B node->controller, %s B back, "
                  "%s segments, ~%s B on the wire; controller CPU %s s"
                  % (label, t["seconds"], t["conns"], fmt(t["node_to_controller_bytes_per_node_min"], ".0f"),
                     fmt(t["controller_to_node_bytes_per_node_min"], ".0f"), fmt(t["segments_per_node_min"]),
                     fmt(t["wire_bytes_per_node_min"], ".0f"), fmt(t["controller_cpu_s"], ".2f")))
    v = results.get("vms")
    if v:
        print("  %d VMs, %d clients: created in %s s (%s/s); half Running at %s s, all Running at %s s "
              "(target < %d s: %s)" % (v["vms"], v["clients"], fmt(v["create_s"]), fmt(v["creates_per_s"], ".0f"),
                                       fmt(v["half_running_s"]), fmt(v["all_running_s"]), RUNNING_TARGET_S,
                                       "met" if v["all_running_s"] is not None and v["all_running_s"] < RUNNING_TARGET_S
                                       else "NOT met"))
        print("  placement: %d nodes used, %d to %d VMs per node" % (v["nodes_used"], v["vms_per_node_min"],
                                                                    v["vms_per_node_max"]))
        print("  controller over it: CPU %s s, RSS %s MB, peak (VmHWM) %s MB (target < %d MB: %s), %d threads; "
              "node processes CPU %s s" % (fmt(v["controller_cpu_s"], ".2f"), fmt(v["controller_rss_mb"]),
                                          fmt(v["controller_hwm_mb"]), RSS_TARGET_MB,
                                          "met" if v["controller_hwm_mb"] < RSS_TARGET_MB else "NOT met",
                                          v["controller_threads"], fmt(v["nodes_cpu_s"], ".1f")))
    ce = results.get("controller_end")
    if ce:
        print("  controller at the end: RSS %s MB, peak %s MB, CPU %s s in all"
              % (fmt(ce["VmRSS"]), fmt(ce["VmHWM"]), fmt(ce["cpu_s"], ".1f")))
    sys.stdout.flush()


def targets_met(results):
    v = results.get("vms") or {}
    return (v.get("all_running_s") is not None and v["all_running_s"] < RUNNING_TARGET_S
            and v.get("controller_hwm_mb", 1e9) < RSS_TARGET_MB)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--plugin-dir", help="default: BUILD/lib/vmhost/plugins, or $VMHOST_PLUGIN_DIR")
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--vms", type=int, default=5000)
    ap.add_argument("--node-mode", choices=("sim", "process"), default="sim")
    ap.add_argument("--sim-procs", type=int, default=1, help="vmhost-sim-nodes processes the nodes are split over")
    ap.add_argument("--clients", type=int, default=4, help="concurrent API clients creating the VMs")
    ap.add_argument("--heartbeat-seconds", type=int, default=10, help="node.heartbeatSeconds (default 10)")
    ap.add_argument("--resync-seconds", type=int, default=10, help="node.resyncSeconds (default 10)")
    ap.add_argument("--heartbeat-timeout", type=int, default=40, help="cluster.heartbeatTimeoutSeconds")
    ap.add_argument("--traffic-seconds", type=int, default=60, help="each traffic window; 0 skips them")
    ap.add_argument("--join-timeout", type=int, default=300)
    ap.add_argument("--running-timeout", type=int, default=600)
    ap.add_argument("--tmpdir")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--enforce-targets", action="store_true",
                    help="exit 2 if all Running takes >= 60 s or the controller's peak RSS >= 200 MB")
    args = ap.parse_args()
    args.plugin_dir = args.plugin_dir or os.environ.get("VMHOST_PLUGIN_DIR") or os.path.join(
        args.build, "lib", "vmhost", "plugins")
    if args.nodes < 1 or args.vms < 0 or args.sim_procs < 1:
        ap.error("--nodes and --sim-procs must be >= 1")
    for b in ("vmhost", "vmhost-sim-nodes") if args.node_mode == "sim" else ("vmhost",):
        if not os.access(os.path.join(args.build, "bin", b), os.X_OK):
            ap.error("%s/bin/%s: not an executable" % (args.build, b))
    if shutil.which("ss") is None:
        ap.error("ss (iproute2) is needed for the traffic figures")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    results = {"machine": {"cpu": cpu, "nproc": os.cpu_count(),
                           "loadavg_start": " ".join(open("/proc/loadavg").read().split()[:3])},
               "args": dict(vars(args))}
    workdir = tempfile.mkdtemp(prefix="vmhost-cluster-bench-", dir=args.tmpdir)
    rc = 0
    try:
        run(args, workdir, results)
    except BenchError as e:
        print(time.strftime("%H:%M:%S ") + "cluster_bench: FAILED: %s" % e, flush=True)
        rc = 1
    except KeyboardInterrupt as e:
        print(time.strftime("%H:%M:%S ") + "cluster_bench: interrupted (%s)" % e, flush=True)
        rc = 130
    finally:
        for p in reversed(Proc.live):
            try:
                p.stop()
            except Exception:  # noqa: BLE001
                p.proc.kill()
    results["machine"]["loadavg_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    if rc == 0 and args.enforce_targets and not targets_met(results):
        print(time.strftime("%H:%M:%S ") + "cluster_bench: a target was missed", flush=True)
        rc = 2
    if args.keep or rc == 1:
        print(time.strftime("%H:%M:%S ") + "cluster_bench: logs kept in %s" % workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
