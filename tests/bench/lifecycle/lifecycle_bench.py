#!/usr/bin/env python3
"""VM lifecycle benchmarks of issue 3, against a real `vmhost all-in-one` on
libvirt's test driver (test:///default: 16 fake CPUs, 3 GiB, no QEMU).

  1. density:    a watch, then 100 VMs created 100 ms apart (KubeVirt's
                 density-test shape); per VM, client monotonic time from the
                 create being sent to the watch first showing phase Running.
                 Target p99 < 100 ms.
  2. burst:      1,000 VMs created as fast as the API takes them by a few
                 concurrent clients; VMs Running per second (first create sent
                 to last Running) and create-to-Running percentiles.
  3. throughput: API create throughput (VMs/s through HTTP into the store) of
                 runStrategy Halted VMs, so the node does no work; per number
                 of concurrent clients.
  4. rss:        VmRSS of the vmhost process idle, then with 10,000 (Halted)
                 VMs stored. Target < 100 MB.

Each phase runs on a fresh all-in-one whose data dir is in a temporary
directory (removed at the end; kept with --keep, or when a phase failed, for
its logs); the all-in-one only listens on 127.0.0.1 and is killed on every
exit path (and by PR_SET_PDEATHSIG if this script is killed). Every wait is
bounded. The script runs a copy of BUILD/bin/vmhost and the plugins taken at
its start, so a rebuild meanwhile cannot mix builds. Python 3 standard
library only. Figures and how to read them: docs/benchmarks.md.

usage: lifecycle_bench.py --build BUILD_DIR [--phases density,burst,throughput,rss]
                          [--json FILE] [--enforce-targets] [--small]
Exit status: 0 if every phase completed (every VM reached its phase in
time); 1 if one did not; 2 with --enforce-targets if a target was missed.
"""
import argparse
import ctypes
import hashlib
import http.client
import json
import os
import queue
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

GROUP_PATH = "/apis/vmhost.io/v1"
VMS_PATH = GROUP_PATH + "/namespaces/default/virtualmachines"

P99_TARGET_MS = 100.0
RSS_TARGET_MB = 100.0


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# statistics


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    if not s:
        return float("nan")
    rank = max(1, -(-len(s) * p // 100))  # ceil(n * p / 100)
    return s[int(rank) - 1]


def summary_ms(values):
    return {
        "n": len(values),
        "p50": percentile(values, 50) * 1000,
        "p95": percentile(values, 95) * 1000,
        "p99": percentile(values, 99) * 1000,
        "max": max(values) * 1000 if values else float("nan"),
    }


# --------------------------------------------------------------------------
# the all-in-one under test


def die_with_parent():
    """In the child before exec: SIGKILL it if this script dies, even by
    SIGKILL, so no all-in-one outlives the benchmark."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class AllInOne:
    CONFIG = """\
# written by lifecycle_bench.py: deploy/all-in-one-test.yaml with room for
# 1,000 one-core VMs on the test driver's 16 fake CPUs
dataDir: {data}
listen: 127.0.0.1:0
libvirt:
  uri: test:///default
node:
  stopGracePeriodSeconds: 5
plugins:
  scheduler: {{name: default, config: {{cpuAllocationRatio: 100}}}}
  storage: {{name: local, config: {{pool: {data}/pool}}}}
  network: {{name: libvirt-network}}
  migration: {{name: precopy}}
"""

    live = []  # every started instance, for the exit-path cleanup

    def __init__(self, vmhost, plugin_dir, workdir, name):
        self.vmhost = vmhost
        self.plugin_dir = plugin_dir
        self.dir = os.path.join(workdir, name)
        self.name = name
        self.proc = None
        self.host = "127.0.0.1"
        self.port = None

    def start(self, timeout=60):
        os.makedirs(self.dir)
        data = os.path.join(self.dir, "data")
        config = os.path.join(self.dir, "config.yaml")
        with open(config, "w") as f:
            f.write(self.CONFIG.format(data=data))
        self.log = os.path.join(self.dir, "vmhost.log")
        env = dict(os.environ)
        if self.plugin_dir:
            env["VMHOST_PLUGIN_DIR"] = self.plugin_dir
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                [self.vmhost, "all-in-one", "--config", config, "--data-dir", data,
                 "--node-name", "master", "--listen", "127.0.0.1:0"],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                preexec_fn=die_with_parent)
        AllInOne.live.append(self)
        deadline = time.monotonic() + timeout
        pattern = re.compile(rb"API on http://127\.0\.0\.1:(\d+)")
        while time.monotonic() < deadline:
            with open(self.log, "rb") as f:
                m = pattern.search(f.read())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                raise BenchError("vmhost all-in-one exited:\n" + open(self.log).read())
            time.sleep(0.05)
        if self.port is None:
            raise BenchError("vmhost all-in-one did not start in %d s" % timeout)
        # The node registers before the API line is printed; wait for it to
        # be listed so the first VM does not race the node's registration.
        c = Client(self)
        while time.monotonic() < deadline:
            status, body = c.request("GET", GROUP_PATH + "/nodes")
            if status == 200 and json.loads(body).get("items"):
                break
            time.sleep(0.05)
        c.close()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def proc_status(self):
        """VmRSS and VmHWM in MB (MiB), and threads."""
        out = {}
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) / 1024.0
                elif key == "Threads":
                    out[key] = int(value)
        return out

    def cpu_seconds(self):
        """utime + stime of the vmhost process, in seconds."""
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def threads(self):
        """{tid: (on-CPU s, runqueue-wait s)} of every thread of the vmhost
        process, from /proc/PID/task/TID/schedstat. The wait is time the
        thread was runnable but not running: what other load costs it."""
        out = {}
        base = "/proc/%d/task" % self.pid
        for tid in os.listdir(base):
            try:
                with open(os.path.join(base, tid, "schedstat")) as f:
                    run, wait, _ = f.read().split()
                out[int(tid)] = (int(run) / 1e9, int(wait) / 1e9)
            except (OSError, ValueError):
                pass
        return out

    def metrics(self):
        c = Client(self, timeout=60)
        status, body = c.request("GET", "/metrics")
        c.close()
        if status != 200:
            return {}
        return parse_metrics(body.decode())


def parse_metrics(text):
    """{(name, frozenset(labels)): value} of the _sum and _count series."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        if not (name.endswith("_sum") or name.endswith("_count") or name.endswith("_total")):
            continue
        lab = frozenset(re.findall(r'(\w+)="([^"]*)"', labels))
        try:
            out[(name, lab)] = float(value)
        except ValueError:
            pass
    return out


def metric_delta(before, after, name, **labels):
    """Sum over series of `name` whose labels include `labels`: after - before."""
    want = set(labels.items())
    total = 0.0
    for (n, lab), v in after.items():
        if n == name and want <= set(lab):
            total += v - before.get((n, lab), 0.0)
    return total


def client_cpu():
    """CPU seconds this benchmark process (all its threads) has used: the
    client competes with vmhost for the same cores."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def thread_breakdown(before, after, wall):
    """Per vmhost thread (in creation order), over a phase of `wall` seconds:
    on-CPU and runqueue-wait seconds; the rest of the wall time the thread
    was blocked (store lock, fsync, network, or idle)."""
    rows = []
    for i, tid in enumerate(sorted(after)):
        run0, wait0 = before.get(tid, (0.0, 0.0))
        run1, wait1 = after[tid]
        rows.append({"thread": i, "tid": tid, "cpu_s": run1 - run0, "runqueue_s": wait1 - wait0, "wall_s": wall})
    return rows


def server_breakdown(before, after):
    """Mean server-side durations (ms) between two /metrics scrapes."""
    rows = {}

    def mean(name, **labels):
        count = metric_delta(before, after, name + "_count", **labels)
        total = metric_delta(before, after, name + "_sum", **labels)
        return (total / count * 1000 if count else float("nan")), int(count)

    rows["api POST virtualmachines"] = mean("apiserver_request_duration_seconds", verb="POST",
                                            resource="virtualmachines")
    rows["scheduling (plugin call)"] = mean("vmhost_scheduling_duration_seconds")
    rows["node reconcile"] = mean("vmhost_node_reconcile_duration_seconds")
    return rows


# --------------------------------------------------------------------------
# HTTP


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, aio, timeout=30):
        self.host, self.port, self.timeout = aio.host, aio.port, timeout
        self.conn = None

    def request(self, method, path, body=None):
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
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


def vm_body(name, run_strategy):
    return json.dumps({
        "apiVersion": "vmhost.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {"cpu": {"cores": 1}, "memory": "2Mi", "runStrategy": run_strategy},
    }).encode()


class Watcher(threading.Thread):
    """Streams the VM watch from the current resourceVersion and records, per
    VM, the client monotonic time at which each phase was first seen, the
    creationTimestamp and, at Running, the Ready condition's
    lastTransitionTime (both RFC 3339, seconds)."""

    def __init__(self, aio):
        super().__init__(daemon=True)
        self.aio = aio
        self.cond = threading.Condition()
        self.first = {}      # name -> {phase: monotonic}
        self.server = {}     # name -> (creationTimestamp, Ready lastTransitionTime at Running)
        self.counts = {}     # phase -> VMs first seen in it
        self.events = 0
        self.error = None
        self.conn = None
        self.ready = threading.Event()

    def run(self):
        try:
            c = Client(self.aio)
            status, body = c.request("GET", VMS_PATH + "?limit=1")
            c.close()
            rv = json.loads(body)["metadata"]["resourceVersion"]
            self.conn = http.client.HTTPConnection(self.aio.host, self.aio.port, timeout=3600)
            self.conn.request("GET", "%s?watch=true&resourceVersion=%s&timeoutSeconds=3600" % (VMS_PATH, rv))
            resp = self.conn.getresponse()
            if resp.status != 200:
                raise BenchError("watch: HTTP %d: %s" % (resp.status, resp.read()[:300]))
            self.ready.set()
            while True:
                line = resp.readline()
                if not line:
                    break
                now = time.monotonic()
                line = line.strip()
                if not line:
                    continue
                ev = json.loads(line)
                obj = ev.get("object", {})
                name = obj.get("metadata", {}).get("name")
                phase = (obj.get("status") or {}).get("phase")
                with self.cond:
                    self.events += 1
                    if name and phase:
                        seen = self.first.setdefault(name, {})
                        if phase not in seen:
                            seen[phase] = now
                            self.counts[phase] = self.counts.get(phase, 0) + 1
                            if phase == "Running":
                                ready = [c.get("lastTransitionTime") for c in obj["status"].get("conditions", [])
                                         if c.get("type") == "Ready"]
                                self.server[name] = (obj["metadata"].get("creationTimestamp"),
                                                     ready[0] if ready else None)
                            self.cond.notify_all()
        except Exception as e:  # noqa: BLE001 - reported by wait()
            if not getattr(self, "stopping", False):
                self.error = e
        finally:
            self.ready.set()
            with self.cond:
                self.cond.notify_all()

    def start_and_wait(self, timeout=30):
        self.start()
        if not self.ready.wait(timeout) or self.error:
            raise BenchError("the watch did not start: %s" % self.error)

    def wait_count(self, phase, n, timeout):
        """Waits until n VMs have been seen in `phase`; False on timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.counts.get(phase, 0) < n:
                left = deadline - time.monotonic()
                if left <= 0 or self.error or not self.is_alive():
                    return False
                self.cond.wait(min(left, 1.0))
        return True

    def stop(self):
        self.stopping = True
        if self.conn is not None and self.conn.sock is not None:
            try:
                self.conn.sock.shutdown(2)
            except OSError:
                pass
        self.join(timeout=10)


def create_vms(aio, names, run_strategy, clients):
    """Creates `names` with `clients` concurrent connections as fast as the API
    takes them. Returns ({name: monotonic send time}, first send, last reply)."""
    work = queue.Queue()
    for n in names:
        work.put(n)
    sent = {}
    errors = []
    lock = threading.Lock()

    def worker():
        c = Client(aio)
        try:
            while not errors:
                try:
                    name = work.get_nowait()
                except queue.Empty:
                    return
                body = vm_body(name, run_strategy)
                t = time.monotonic()
                status, data = c.request("POST", VMS_PATH, body)
                if status != 201:
                    with lock:
                        errors.append("create %s: HTTP %d: %s" % (name, status, data[:300]))
                    return
                with lock:
                    sent[name] = t
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
    return sent, min(sent.values()), last


def parse_rfc3339(s):
    return time.mktime(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ")) if s else None


# --------------------------------------------------------------------------
# phases


def phase_density(args, mkaio, results):
    n, interval = args.density_count, args.density_interval_ms / 1000.0
    aio = mkaio("density")
    watch = Watcher(aio)
    watch.start_and_wait()
    m0, cpu0, th0, wall0 = aio.metrics(), aio.cpu_seconds(), aio.threads(), time.monotonic()
    ccpu0 = client_cpu()

    # A dispatcher keeps the 100 ms cadence even if a create is slow: the
    # creates go to a pool of connections.
    jobs = queue.Queue()
    sent, lag, errors = {}, [], []
    lock = threading.Lock()

    def worker():
        c = Client(aio)
        while True:
            job = jobs.get()
            if job is None:
                break
            name, due = job
            t = time.monotonic()
            try:
                status, data = c.request("POST", VMS_PATH, vm_body(name, "Always"))
            except Exception as e:  # noqa: BLE001
                status, data = -1, repr(e).encode()
            with lock:
                if status != 201:
                    errors.append("create %s: HTTP %d: %s" % (name, status, data[:300]))
                sent[name] = t
                lag.append(t - due)
        c.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
    for t in pool:
        t.start()
    start = time.monotonic() + 0.05
    for i in range(n):
        due = start + i * interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        jobs.put(("d%04d" % i, due))
    for _ in pool:
        jobs.put(None)
    for t in pool:
        t.join(timeout=120)
    if errors:
        raise BenchError(errors[0])
    ok = watch.wait_count("Running", n, args.timeout)
    watch.stop()
    th1, wall1, ccpu1 = aio.threads(), time.monotonic(), client_cpu()
    m1, cpu1 = aio.metrics(), aio.cpu_seconds()
    aio.stop()

    lat = [watch.first[v]["Running"] - t for v, t in sent.items() if "Running" in watch.first.get(v, {})]
    sched = [watch.first[v]["Scheduled"] - t for v, t in sent.items() if "Scheduled" in watch.first.get(v, {})]
    server = []
    for v, (created, ready) in watch.server.items():
        if created and ready:
            server.append(parse_rfc3339(ready) - parse_rfc3339(created))
    r = {
        "vms": n, "interval_ms": args.density_interval_ms, "completed": ok,
        "running": len(lat),
        "create_to_running_ms": summary_ms(lat) if lat else None,
        "create_to_scheduled_ms": summary_ms(sched) if sched else None,
        "max_dispatch_lag_ms": max(lag) * 1000 if lag else None,
        "server_side_s": {"resolution_s": 1, "p50": percentile(server, 50), "p99": percentile(server, 99),
                          "max": max(server)} if server else None,
        "server_breakdown_ms": server_breakdown(m0, m1),
        "vmhost_cpu_s": cpu1 - cpu0, "client_cpu_s": ccpu1 - ccpu0, "wall_s": wall1 - wall0,
        "threads": thread_breakdown(th0, th1, wall1 - wall0),
    }
    results["density"] = r
    if not ok:
        raise BenchError("density: only %d of %d VMs reached Running in %d s" % (len(lat), n, args.timeout))


def phase_burst(args, mkaio, results):
    n, clients = args.burst_count, args.burst_clients
    aio = mkaio("burst")
    watch = Watcher(aio)
    watch.start_and_wait()
    m0, cpu0, th0, wall0 = aio.metrics(), aio.cpu_seconds(), aio.threads(), time.monotonic()
    ccpu0 = client_cpu()
    names = ["b%05d" % i for i in range(n)]
    sent, first, last_reply = create_vms(aio, names, "Always", clients)
    ok = watch.wait_count("Running", n, args.timeout)
    th1, wall1, ccpu1 = aio.threads(), time.monotonic(), client_cpu()
    watch.stop()
    m1, cpu1 = aio.metrics(), aio.cpu_seconds()
    aio.stop()
    lat = [watch.first[v]["Running"] - t for v, t in sent.items() if "Running" in watch.first.get(v, {})]
    last_running = max((watch.first[v]["Running"] for v in sent if "Running" in watch.first.get(v, {})),
                       default=None)
    r = {
        "vms": n, "clients": clients, "completed": ok, "running": len(lat),
        "create_phase_s": last_reply - first,
        "creates_per_s": n / (last_reply - first),
        "first_create_to_last_running_s": (last_running - first) if last_running else None,
        "running_per_s": (len(lat) / (last_running - first)) if last_running else None,
        "create_to_running_ms": summary_ms(lat) if lat else None,
        "server_breakdown_ms": server_breakdown(m0, m1),
        "vmhost_cpu_s": cpu1 - cpu0, "client_cpu_s": ccpu1 - ccpu0,
        "threads": thread_breakdown(th0, th1, wall1 - wall0),
    }
    results["burst"] = r
    if not ok:
        raise BenchError("burst: only %d of %d VMs reached Running in %d s" % (len(lat), n, args.timeout))


def phase_throughput(args, mkaio, results):
    aio = mkaio("throughput")
    rows = []
    for clients in args.throughput_clients:
        m0, cpu0, ccpu0 = aio.metrics(), aio.cpu_seconds(), client_cpu()
        names = ["t%02d-%05d" % (clients, i) for i in range(args.throughput_count)]
        sent, first, last = create_vms(aio, names, "Halted", clients)
        ccpu1 = client_cpu()
        m1, cpu1 = aio.metrics(), aio.cpu_seconds()
        post = server_breakdown(m0, m1)["api POST virtualmachines"]
        rows.append({"clients": clients, "vms": len(sent), "seconds": last - first,
                     "vms_per_s": len(sent) / (last - first), "server_post_mean_ms": post[0],
                     "vmhost_cpu_s": cpu1 - cpu0, "client_cpu_s": ccpu1 - ccpu0})
        # Let the controller write the Stopped phases of this batch before
        # the next one, so each row measures the API alone as far as possible.
        time.sleep(1.0)
    aio.stop()
    results["throughput"] = rows


def phase_rss(args, mkaio, results):
    n, clients = args.rss_count, args.rss_clients
    aio = mkaio("rss")
    time.sleep(2.0)
    idle = aio.proc_status()
    watch = Watcher(aio)
    watch.start_and_wait()
    names = ["r%05d" % i for i in range(n)]
    t0 = time.monotonic()
    sent, first, last = create_vms(aio, names, "Halted", clients)
    created = time.monotonic()
    after_create = aio.proc_status()
    ok = watch.wait_count("Stopped", n, args.timeout)
    settled = time.monotonic()
    watch.stop()
    time.sleep(2.0)
    stored = aio.proc_status()
    # What a `kubectl get vms` of everything costs on top.
    c = Client(aio, timeout=120)
    status, body = c.request("GET", VMS_PATH)
    c.close()
    listed = len(json.loads(body).get("items", [])) if status == 200 else -1
    after_list = aio.proc_status()
    aio.stop()
    # Creates per second in each tenth of the run: does the rate fall as the
    # store grows?
    times = sorted(sent.values())
    tenth = max(1, len(times) // 10)
    by_tenth = []
    for k in range(0, len(times) - tenth + 1, tenth):
        span = times[k + tenth - 1] - times[k]
        by_tenth.append(round((tenth - 1) / span, 1) if span > 0 else None)
    results["rss"] = {
        "vms": n, "clients": clients, "completed": ok, "creates_per_s_by_tenth": by_tenth,
        "create_s": created - t0, "creates_per_s": n / (last - first),
        "all_stopped_s": settled - t0,
        "idle_mb": idle["VmRSS"], "after_create_mb": after_create["VmRSS"],
        "stored_mb": stored["VmRSS"], "peak_mb": stored["VmHWM"],
        "after_full_list_mb": after_list["VmRSS"], "full_list_items": listed,
        "threads": stored.get("Threads"),
    }
    if not ok:
        raise BenchError("rss: only %d of %d VMs reached Stopped in %d s"
                         % (watch.counts.get("Stopped", 0), n, args.timeout))


def fsync_probe(workdir, rounds=200):
    """write(4 KiB) + fdatasync on the data dir's file system, two ways: appending
    (the file grows, so the file system journals its size too) and overwriting
    a preallocated file (as SQLite does once its WAL file has reached its
    size). One store commit (WAL, synchronous=FULL) costs about one of these."""
    out = {}
    block = b"x" * 4096
    for mode in ("append", "overwrite"):
        path = os.path.join(workdir, "fsync-probe")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        times = []
        try:
            if mode == "overwrite":
                os.write(fd, block * rounds)
                os.fsync(fd)
            for i in range(rounds):
                t = time.monotonic()
                if mode == "append":
                    os.write(fd, block)
                else:
                    os.pwrite(fd, block, i * 4096)
                os.fdatasync(fd)
                times.append(time.monotonic() - t)
        finally:
            os.close(fd)
            os.unlink(path)
        out[mode] = {"median_ms": percentile(times, 50) * 1000, "p99_ms": percentile(times, 99) * 1000}
    return out


def binary_identity(vmhost):
    """What was measured: the vmhost binary's sha256 prefix and mtime, and
    the source tree's HEAD (with "+dirty" when it has local changes)."""
    h = hashlib.sha256()
    with open(vmhost, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    out = {"sha256": h.hexdigest()[:12],
           "mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.stat(vmhost).st_mtime))}
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        head = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", src, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        out["source"] = head + ("+dirty" if dirty else "") if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        out["source"] = "unknown"
    return out


# --------------------------------------------------------------------------
# report


def fmt(v, spec=".1f"):
    if v is None:
        return "-"
    if isinstance(v, float) and v != v:
        return "-"
    return format(v, spec)


def report(results, out):
    w = out.write
    m = results["machine"]
    w("\n== vmhost VM lifecycle benchmarks (issue 3) ==\n")
    w("machine: %s, nproc %d, load average at start %s, at end %s\n"
      % (m["cpu"], m["nproc"], m["loadavg_start"], m.get("loadavg_end", "-")))
    b = results["binary"]
    w("vmhost binary: sha256 %s, built %s; source HEAD at run time %s\n" % (b["sha256"], b["mtime"], b["source"]))
    f = results["fsync"]
    w("data dir file system: 4 KiB write + fdatasync: appending median %s ms (p99 %s), "
      "overwriting median %s ms (p99 %s)\n\n"
      % (fmt(f["append"]["median_ms"], ".2f"), fmt(f["append"]["p99_ms"], ".2f"),
         fmt(f["overwrite"]["median_ms"], ".2f"), fmt(f["overwrite"]["p99_ms"], ".2f")))
    rows = []
    d = results.get("density")
    if d and d.get("create_to_running_ms"):
        s = d["create_to_running_ms"]
        rows.append(("density: %d VMs, %d ms apart, create->Running (client)" % (d["vms"], d["interval_ms"]),
                     "p50 %s / p95 %s / p99 %s / max %s ms" % (fmt(s["p50"]), fmt(s["p95"]), fmt(s["p99"]),
                                                               fmt(s["max"])),
                     "p99 < %d ms: %s" % (P99_TARGET_MS, "met" if s["p99"] < P99_TARGET_MS else "NOT met")))
        if d.get("create_to_scheduled_ms"):
            s2 = d["create_to_scheduled_ms"]
            rows.append(("  of which create->Scheduled", "p50 %s / p99 %s ms" % (fmt(s2["p50"]), fmt(s2["p99"])), ""))
        if d.get("server_side_s"):
            sv = d["server_side_s"]
            rows.append(("  server view creationTimestamp->Ready (1 s resolution)",
                         "p50 %d / p99 %d / max %d s" % (sv["p50"], sv["p99"], sv["max"]), ""))
    b = results.get("burst")
    if b and b.get("create_to_running_ms"):
        s = b["create_to_running_ms"]
        rows.append(("burst: %d VMs, %d clients, Running/s (first create->last Running)" % (b["vms"], b["clients"]),
                     "%s VMs/s (%s s)" % (fmt(b["running_per_s"]), fmt(b["first_create_to_last_running_s"])), ""))
        rows.append(("  creates accepted/s during the burst", "%s VMs/s" % fmt(b["creates_per_s"]), ""))
        rows.append(("  create->Running", "p50 %s / p99 %s / max %s ms" % (fmt(s["p50"], ".0f"), fmt(s["p99"], ".0f"),
                                                                         fmt(s["max"], ".0f")), ""))
    for t in results.get("throughput", []):
        rows.append(("API create throughput, Halted, %d client(s), %d VMs" % (t["clients"], t["vms"]),
                     "%s VMs/s (server POST mean %s ms; CPU vmhost %s s, client %s s)"
                     % (fmt(t["vms_per_s"]), fmt(t["server_post_mean_ms"], ".2f"), fmt(t["vmhost_cpu_s"], ".2f"),
                        fmt(t["client_cpu_s"], ".2f")),
                     ""))
    r = results.get("rss")
    if r:
        rows.append(("RSS idle (no VMs)", "%s MB" % fmt(r["idle_mb"]), ""))
        rows.append(("RSS with %d Halted VMs stored" % r["vms"], "%s MB (peak %s MB)" % (fmt(r["stored_mb"]),
                                                                                       fmt(r["peak_mb"])),
                     "< %d MB: %s" % (RSS_TARGET_MB, "met" if r["stored_mb"] < RSS_TARGET_MB else "NOT met")))
        rows.append(("  after one full list of %d VMs" % r["full_list_items"], "%s MB" % fmt(r["after_full_list_mb"]), ""))
        rows.append(("  creating them (%d clients)" % r["clients"],
                     "%s VMs/s, %s s; all Stopped after %s s" % (fmt(r["creates_per_s"]), fmt(r["create_s"]),
                                                                 fmt(r["all_stopped_s"])), ""))
        rows.append(("  creates/s in each tenth of them", " ".join(fmt(x, ".0f") for x in r["creates_per_s_by_tenth"]),
                     ""))
    wa = max(len(a) for a, _, _ in rows) if rows else 10
    wb = max(len(bb) for _, bb, _ in rows) if rows else 10
    w("%-*s  %-*s  %s\n" % (wa, "measure", wb, "result", "target"))
    w("%s  %s  %s\n" % ("-" * wa, "-" * wb, "-" * 16))
    for a, bb, c in rows:
        w("%-*s  %-*s  %s\n" % (wa, a, wb, bb, c))
    w("\nserver-side means from /metrics (ms, count):\n")
    for name in ("density", "burst"):
        ph = results.get(name)
        if not ph:
            continue
        parts = ["%s %s (%d)" % (k, fmt(v[0], ".2f"), v[1]) for k, v in ph["server_breakdown_ms"].items()]
        w("  %-8s %s; CPU: vmhost %s s, this client %s s\n"
          % (name, ", ".join(parts), fmt(ph["vmhost_cpu_s"], ".2f"), fmt(ph["client_cpu_s"], ".2f")))
    w("\nvmhost threads (creation order) over each phase: on-CPU s / runnable-but-waiting s / wall s:\n")
    for name in ("density", "burst"):
        ph = results.get(name)
        if not ph:
            continue
        parts = ["#%d %s/%s" % (t["thread"], fmt(t["cpu_s"], ".2f"), fmt(t["runqueue_s"], ".2f"))
                 for t in ph["threads"]]
        w("  %-8s %s  (wall %s s)\n" % (name, "  ".join(parts), fmt(ph["threads"][0]["wall_s"] if ph["threads"] else None, ".1f")))
    out.flush()


def targets_met(results):
    ok = True
    d = results.get("density")
    if d and d.get("create_to_running_ms"):
        ok &= d["create_to_running_ms"]["p99"] < P99_TARGET_MS
    r = results.get("rss")
    if r:
        ok &= r["stored_mb"] < RSS_TARGET_MB
    return ok


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="the build directory (bin/vmhost, lib/vmhost/plugins)")
    ap.add_argument("--plugin-dir", help="default: BUILD/lib/vmhost/plugins, or $VMHOST_PLUGIN_DIR")
    ap.add_argument("--phases", default="density,burst,throughput,rss")
    ap.add_argument("--density-count", type=int, default=100)
    ap.add_argument("--density-interval-ms", type=int, default=100)
    ap.add_argument("--burst-count", type=int, default=1000)
    ap.add_argument("--burst-clients", type=int, default=4)
    ap.add_argument("--throughput-count", type=int, default=1000, help="VMs per client-count row")
    ap.add_argument("--throughput-clients", default="1,4,16")
    ap.add_argument("--rss-count", type=int, default=10000)
    ap.add_argument("--rss-clients", type=int, default=4)
    ap.add_argument("--timeout", type=int, default=600, help="seconds any one wait may take")
    ap.add_argument("--small", action="store_true", help="a quick smoke run: 20/200/200/1000 VMs")
    ap.add_argument("--tmpdir", help="where the data dirs go (default: $TMPDIR or /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument("--enforce-targets", action="store_true",
                    help="exit 2 if p99 create->Running >= 100 ms or RSS >= 100 MB")
    args = ap.parse_args()
    args.throughput_clients = [int(x) for x in args.throughput_clients.split(",") if x]
    if args.small:
        args.density_count, args.burst_count, args.throughput_count, args.rss_count = 20, 200, 200, 1000
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - {"density", "burst", "throughput", "rss"}
    if unknown:
        ap.error("unknown phase(s): " + ", ".join(sorted(unknown)))

    vmhost = os.path.join(args.build, "bin", "vmhost")
    plugin_dir = args.plugin_dir or os.environ.get("VMHOST_PLUGIN_DIR") or os.path.join(args.build, "lib", "vmhost",
                                                                                          "plugins")
    if not os.access(vmhost, os.X_OK):
        ap.error("%s: not an executable" % vmhost)

    workdir = tempfile.mkdtemp(prefix="vmhost-bench-", dir=args.tmpdir)

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
               "args": {k: v for k, v in vars(args).items()}}
    rc = 0
    try:
        # Measure a snapshot of the build, so a rebuild while this runs can
        # neither break a phase nor mix two builds in one report.
        snap_bin = os.path.join(workdir, "bin", "vmhost")
        os.makedirs(os.path.dirname(snap_bin))
        shutil.copy2(vmhost, snap_bin)
        snap_plugins = os.path.join(workdir, "plugins")
        shutil.copytree(plugin_dir, snap_plugins)
        vmhost, plugin_dir = snap_bin, snap_plugins
        results["binary"] = binary_identity(vmhost)
        results["fsync"] = fsync_probe(workdir)

        def mkaio(name):
            return AllInOne(vmhost, plugin_dir, workdir, name).start()

        for p in phases:
            print("lifecycle_bench: %s ..." % p, flush=True)
            t = time.monotonic()
            try:
                {"density": phase_density, "burst": phase_burst, "throughput": phase_throughput,
                 "rss": phase_rss}[p](args, mkaio, results)
            except BenchError as e:
                print("lifecycle_bench: %s: FAILED: %s" % (p, e), flush=True)
                rc = 1
            finally:
                for aio in AllInOne.live:
                    aio.stop()
            print("lifecycle_bench: %s done in %.1f s" % (p, time.monotonic() - t), flush=True)
        results["machine"]["loadavg_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
        report(results, sys.stdout)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2, default=str)
        if rc == 0 and args.enforce_targets and not targets_met(results):
            rc = 2
    except KeyboardInterrupt as e:
        print("lifecycle_bench: interrupted (%s)" % e, flush=True)
        rc = 130
    finally:
        for aio in AllInOne.live:
            try:
                aio.stop()
            except Exception:  # noqa: BLE001
                if aio.proc and aio.proc.poll() is None:
                    aio.proc.kill()
        if args.keep or rc == 1:
            print("lifecycle_bench: data and logs kept in %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
