#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The benchmark driver (issue 7; bench/README.md): runs every scenario on
loopback against the programs of a release build, each side by side with a
peer measured in the same run, interleaved round by round (these machines
are shared and noisy), and prints one table of medians, spreads and ratios.

  bench.py --build DIR [--rounds N] [--quick] [--only 1,2,3,4,5]
           [--out FILE.md] [--json FILE.json]

Scenarios (numbers as in the issue):
 1. bus call cost: bench/bus_bench (direct handler / in-process bus / gRPC /
    nng), 1 call in flight and 64 in flight;
 2. gRPC server: h2load against GetDiscount on our server (the in-memory
    handler behind our gRPC transport; also the real Discount module) and on
    bench/ref_grpc_server (official gRPC C++, callback API), several
    connection/stream mixes; gRPC statuses counted on the server side, and
    a separate correctness check through python grpcio;
 3. REST: wrk against GET /basket/{user} and POST /basket, and against
    bench/mhd_ceiling (libmicrohttpd, same thread model, same body);
 4. checkout pipeline: baskets stored, then checked out by concurrent
    clients (bench/httpload); orders per second and checkout->order latency
    from the databases (the outbox row's occurred_ms against the inbox row's
    handled_ms): dev mode, split over RabbitMQ, split over nng (when built),
    and bench/raw_amqp_confirms (the broker's ceiling);
 5. footprint: VmRSS idle (fresh start, no traffic) and the largest VmRSS
    sampled under each load, per process; start-to-ready time.

Every step is bounded in time; every process started here is stopped at the
end (and on SIGINT/SIGTERM). Standard library only.
"""

import argparse
import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Scenario sizes (kept small enough for the whole run to take ~10 minutes on
# 2 cores; raise them with care: every phase has a deadline).
BUS_SECONDS = 1.0          # per mode and metric, per round
H2_SECONDS = 3             # h2load measuring time per run
BUSY_POLL_US = 50          # the opt-in busy poll measured beside the default
H2_WARMUP = 1              # h2load warm-up per run
H2_MIXES = [(1, 1), (4, 16), (16, 64)]   # (connections, streams each)
WRK_SECONDS = 3
WRK_CONNS = 32
CHECKOUTS = 3000           # per mode and round
STORE_CONC = 16
CHECKOUT_CONC = 32
PREFETCH = 16              # events.prefetch's default: the raw consumer's
PIPELINE_TIMEOUT = 90      # seconds for a batch's orders to appear
READY_RUNS = 5
# Our AMQP envelope for a 2-item basket (MassTransit JSON): the golden
# fixture of the envelope tests; the raw publisher sends as many bytes.
ENVELOPE_FIXTURE = os.path.join(ROOT, "tests", "fixtures", "masstransit",
                                "monoshop-basket-checkout.json")
ENVELOPE_BYTES = (os.path.getsize(ENVELOPE_FIXTURE)
                  if os.path.exists(ENVELOPE_FIXTURE) else 2000)

_procs = []
_tmp = []


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cleanup():
    for p in list(_procs):
        p.stop(quiet=True)
    for d in _tmp:
        shutil.rmtree(d, ignore_errors=True)


def _on_signal(sig, frame):
    cleanup()
    sys.exit(128 + sig)


def tempdir(prefix):
    d = tempfile.mkdtemp(prefix="monoshop-bench-" + prefix)
    _tmp.append(d)
    return d


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def median(xs):
    return statistics.median(xs) if xs else None


def spread(xs):
    return (min(xs), max(xs)) if xs else (None, None)


def proc_status(pid):
    """(VmRSS, VmHWM) of |pid| in KiB, or (None, None)."""
    rss = hwm = None
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def cpu_seconds(pids=(), pgids=()):
    """CPU time (user + system, s) used so far by the live processes in
    |pids| or in the process groups |pgids| (the broker: rabbitmq-server
    and its Erlang VM)."""
    tck = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        f = st[st.rindex(")") + 2:].split()
        if int(d) in pids or int(f[2]) in pgids:
            total += int(f[11]) + int(f[12])   # utime, stime
    return total / tck


def children_cpu_seconds():
    """CPU time of the children waited for so far (the load generators)."""
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def machine_busy():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


class CpuMeter:
    """CPU seconds per party over one phase: each process or process group
    named, the load generators (children waited for), and the machine's
    busy share."""

    def __init__(self, parties):
        self.parties = parties   # [(name, pids, pgids)]
        self.t0 = [cpu_seconds(p, g) for _, p, g in parties]
        self.c0 = children_cpu_seconds()
        self.m0 = machine_busy()

    def done(self):
        t1 = [cpu_seconds(p, g) for _, p, g in self.parties]
        m1 = machine_busy()
        out = {name: t1[i] - self.t0[i]
               for i, (name, _, _) in enumerate(self.parties)}
        out["load generator"] = children_cpu_seconds() - self.c0
        total = m1[1] - self.m0[1]
        out["machine busy share"] = (m1[0] - self.m0[0]) / total if total else None
        return out


# -- processes -------------------------------------------------------------

class Proc:
    """A child process with its output in a file, stopped at exit."""

    def __init__(self, label, argv, env=None, cwd=None):
        self.label = label
        self.argv = argv
        d = tempdir("log-")
        self.log_path = os.path.join(d, re.sub(r"[^\w.-]", "_", label) + ".log")
        self._log = open(self.log_path, "wb")
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                  stdout=self._log, stderr=subprocess.STDOUT,
                                  env=env, cwd=cwd)
        _procs.append(self)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern, timeout):
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = rx.search(self.log())
            if m:
                return m
            if not self.alive():
                raise RuntimeError("%s exited (%s) before %r; log:\n%s"
                                   % (self.label, self.p.returncode, pattern,
                                      self.log()[-3000:]))
            time.sleep(0.005)
        raise RuntimeError("%s: no %r within %ss; log:\n%s"
                           % (self.label, pattern, timeout, self.log()[-3000:]))

    def rss(self):
        return proc_status(self.pid)

    def stop(self, timeout=20, quiet=False):
        if self in _procs:
            _procs.remove(self)
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                if not quiet:
                    log("   %s did not stop in %ss: SIGKILL" % (self.label, timeout))
                self.p.kill()
                self.p.wait(10)
        self._log.close()
        return self.log()


class Sampler(threading.Thread):
    """Samples VmRSS of the watched processes every 50 ms and keeps, per
    (label, phase), the largest value seen."""

    def __init__(self):
        super().__init__(daemon=True)
        self.lock = threading.Lock()
        self.watch = {}      # label -> Proc
        self.phase = None
        self.peak = {}       # (label, phase) -> KiB
        self.stopping = False

    def add(self, proc):
        with self.lock:
            self.watch[proc.label] = proc

    def remove(self, proc):
        with self.lock:
            self.watch.pop(proc.label, None)

    def set_phase(self, phase):
        with self.lock:
            self.phase = phase

    def run(self):
        while not self.stopping:
            with self.lock:
                items = list(self.watch.items())
                phase = self.phase
            if phase:
                for label, p in items:
                    rss, _ = proc_status(p.pid)
                    if rss is not None:
                        k = (label, phase)
                        if rss > self.peak.get(k, 0):
                            self.peak[k] = rss
            time.sleep(0.05)


SAMPLER = Sampler()


class Monoshop(Proc):
    """One monoshop process on free loopback ports, in its own data dir."""

    def __init__(self, exe, label, sets=(), data_dir=None, grpc=False,
                 nng_listen=None):
        self.data_dir = data_dir or tempdir("data-")
        self.http_port = free_port()
        # Always a port of its own: the default (8081) would collide
        # between processes that serve Discount.
        self.grpc_port = free_port()
        argv = [exe, "--set", "node.data_dir=" + self.data_dir,
                "--set", "http.listen=127.0.0.1:%d" % self.http_port,
                "--set", "grpc.listen=127.0.0.1:%d" % self.grpc_port]
        if nng_listen:
            argv += ["--set", "nng.listen=" + nng_listen]
        for s in sets:
            argv += ["--set", s]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("MONOSHOP_")}
        super().__init__(label, argv, env=env)

    def request(self, method, path, body=None, timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.http_port,
                                       timeout=timeout)
        try:
            hdrs = {"Content-Type": "application/json"} if body else {}
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def wait_ready(self, timeout=20):
        """Seconds from spawn to the first 200 on /health."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.alive():
                raise RuntimeError("%s exited (%s); log:\n%s"
                                   % (self.label, self.p.returncode,
                                      self.log()[-3000:]))
            try:
                st, _ = self.request("GET", "/health", timeout=2)
                if st == 200:
                    return time.monotonic() - self.t0
            except OSError:
                pass
            time.sleep(0.002)
        raise RuntimeError("%s: /health not 200 within %ss; log:\n%s"
                           % (self.label, timeout, self.log()[-3000:]))

    def db(self, name):
        return os.path.join(self.data_dir, name + ".db")


def run(argv, timeout, what):
    """Runs |argv| to completion (bounded); returns stdout (text)."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError("%s: no result within %ss" % (what, timeout))
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (what, p.returncode,
                                                   p.stderr.decode()[-2000:]))
    err = p.stderr.decode().strip()
    if err:
        log("   [%s] %s" % (what, err[-600:]))
    return p.stdout.decode()


def last_json(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON line in: %r" % text[-500:])


# -- results ---------------------------------------------------------------

class Results:
    """Rows of the final table and the raw samples behind them."""

    def __init__(self):
        self.rows = []
        self.raw = {}
        self.notes = []

    def add(self, scen, figure, ours, peer=None, ratio=None, target=None,
            met=None, unit=""):
        self.rows.append(dict(scen=scen, figure=figure, ours=ours, peer=peer,
                              ratio=ratio, target=target, met=met, unit=unit))

    def note(self, text):
        self.notes.append(text)


def fmt(v, digits=None):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if digits is None:
        a = abs(v)
        digits = 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3
    return "{:,.{}f}".format(v, digits)


def fmt_ms(xs, digits=None):
    """median (min-max) of |xs|."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    lo, hi = spread(xs)
    if len(xs) == 1:
        return fmt(xs[0], digits)
    return "%s (%s–%s)" % (fmt(median(xs), digits), fmt(lo, digits),
                           fmt(hi, digits))


def ratio_of(num, den):
    """Median of the per-round ratios num[i]/den[i] (paired rounds)."""
    rs = [a / b for a, b in zip(num, den) if a is not None and b]
    return rs


# -- 1. bus call cost -----------------------------------------------------

def scenario_bus(b, res, rounds):
    log("== 1. bus call cost")
    d = tempdir("busdb-")
    out = run([b.bus_bench, "--seconds", str(BUS_SECONDS), "--rounds",
               str(rounds), "--threads", "64", "--db-dir", d],
              timeout=60 + rounds * 16 * BUS_SECONDS * 2, what="bus_bench")
    lat, thr = {}, {}
    nng_built = False
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        j = json.loads(line)
        if j.get("metric") == "modes":
            nng_built = j["nng_built"]
        elif j.get("metric") == "latency":
            lat.setdefault(j["mode"], []).append(j)
        elif j.get("metric") == "throughput":
            thr.setdefault(j["mode"], []).append(j)
    res.raw["bus"] = {"latency": lat, "throughput": thr}
    names = {"direct": "direct handler call", "local": "in-process bus",
             "grpc": "gRPC, loopback", "nng": "nng, loopback",
             "local-db": "in-process bus, real Discount (SQLite)",
             "grpc-db": "gRPC, real Discount (SQLite)"}
    direct_p50 = [j["p50_us"] for j in lat.get("direct", [])]
    direct_best = [j["best_batch_us"] for j in lat.get("direct", [])]
    for mode in ["direct", "local", "grpc", "nng", "local-db", "grpc-db"]:
        if mode not in lat:
            if mode == "nng":
                res.add(1, "nng, loopback", "not built" if not nng_built
                        else "did not answer")
            continue
        ls = lat[mode]
        errs = sum(j["errors"] for j in ls) + sum(j["errors"] for j in thr.get(mode, []))
        p50 = [j["p50_us"] for j in ls]
        p99 = [j["p99_us"] for j in ls]
        tp = [j["per_s"] for j in thr.get(mode, [])]
        target = met = None
        if mode == "local":
            # Per-call p50s (both include the same clock reads), and the
            # best 1000-call batch mean (no clock in the loop): two views
            # that a noisy neighbour cannot inflate, unlike a plain mean.
            over = [a - d for a, d in zip(p50, direct_p50)]
            best = [j["best_batch_us"] for j in ls]
            over_b = [a - d for a, d in zip(best, direct_best)]
            res.add(1, "in-process bus overhead over the direct call: p50 "
                    "difference; best-batch-mean difference (µs)",
                    "%s; %s" % (fmt_ms(over, 3), fmt_ms(over_b, 3)),
                    peer="direct: p50 %s, best batch %s" % (
                        fmt_ms(direct_p50, 3), fmt_ms(direct_best, 4)),
                    target="< 1 µs", met=median(over) < 1.0)
        if mode == "grpc":
            target, met = "p50 < 100 µs", median(p50) < 100
        res.add(1, names[mode] + ": 1 in flight p50 / p99 (µs)",
                "%s / %s" % (fmt_ms(p50), fmt_ms(p99)), target=target, met=met)
        res.add(1, names[mode] + ": 64 in flight (calls/s)", fmt_ms(tp),
                peer=("errors: %d" % errs) if errs else None)


# -- 2. gRPC server ---------------------------------------------------------

def grpc_frame():
    pb = b"\x0a\x08IPhone X"     # GetDiscountRequest{productName: "IPhone X"}
    return b"\x00" + struct.pack(">I", len(pb)) + pb


def h2load(port, conns, streams, frame_path, seconds=H2_SECONDS,
           warmup=H2_WARMUP):
    """One h2load run; returns dict(rps, ok_http, failed, p50_us, p99_us)."""
    d = tempdir("h2-")
    lf = os.path.join(d, "req.log")
    argv = ["h2load", "-t1", "-c%d" % conns, "-m%d" % streams,
            "-D", str(seconds), "--warm-up-time=%s" % warmup,
            "-H", "content-type: application/grpc", "-H", "te: trailers",
            "-d", frame_path, "--log-file=" + lf,
            "http://127.0.0.1:%d/discount.DiscountProtoService/GetDiscount"
            % port]
    out = run(argv, timeout=seconds + warmup + 30, what="h2load")
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, "
                  r"(\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if not m or not r:
        raise RuntimeError("h2load output not understood:\n" + out)
    durs = []
    with open(lf) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3 and parts[1] == "200":
                durs.append(int(parts[2]))
    durs.sort()
    shutil.rmtree(d, ignore_errors=True)
    pct = (lambda q: durs[min(len(durs) - 1, int(len(durs) * q))]
           if durs else None)
    return dict(rps=float(m.group(2)), done=int(r.group(3)),
                ok_http=int(r.group(4)), failed=int(r.group(5)) + int(r.group(6)),
                p50_us=pct(0.5), p99_us=pct(0.99))


def grpc_counts_from_metrics(text):
    """{code: n} of monoshop_grpc_server_requests_total for GetDiscount."""
    c = {}
    for m in re.finditer(r'monoshop_grpc_server_requests_total\{method="/discount'
                         r'\.DiscountProtoService/GetDiscount",code="(\w+)"\} (\d+)',
                         text):
        c[m.group(1)] = c.get(m.group(1), 0) + int(m.group(2))
    return c


def start_grpc_server(b, kind):
    """Starts one gRPC server of |kind|: ref, ours, monoshop. Returns
    (proc, port)."""
    port = free_port()
    if kind == "ref":
        p = Proc("ref_grpc_server", [b.ref_server, "--listen",
                                     "127.0.0.1:%d" % port])
        p.wait_log(r"ready", 20)
    elif kind in ("ours", "ours-bp"):
        argv = [b.bus_bench, "--serve", "127.0.0.1:%d" % port]
        if kind == "ours-bp":
            argv += ["--set", "grpc.busy_poll_us=%d" % BUSY_POLL_US]
        p = Proc("ours_grpc_mem" if kind == "ours" else "ours_grpc_mem_bp", argv)
        p.wait_log(r"ready", 20)
    else:
        p = Monoshop(b.monoshop, "split: discount (gRPC server)",
                     sets=["node.modules=discount"], grpc=True)
        p.wait_ready()
        port = p.grpc_port
    return p, port


def stop_grpc_server(p, kind):
    """Stops |p| and returns {status: count} of the calls it answered."""
    if kind == "monoshop":
        try:
            _, body = p.request("GET", "/metrics")
            counts = grpc_counts_from_metrics(body.decode())
        except OSError:
            counts = {}
        p.stop()
        return counts
    out = p.stop()
    if kind == "ref":
        m = re.search(r"answered (\d+)", out)
        return {"OK": int(m.group(1))} if m else {}
    return grpc_counts_from_metrics(out)


def grpcio_check(b, res):
    """Status correctness through the stock python grpcio client: every
    reply of ours equals the reference's, and the unknown product gets the
    zero coupon with status OK."""
    try:
        import grpc  # noqa: F401
    except ImportError:
        res.note("gRPC status check through python grpcio skipped: "
                 "python3-grpcio is not installed")
        return None
    code = r'''
import sys, grpc
sys.path.insert(0, sys.argv[1])
import discount_pb2 as pb, discount_pb2_grpc as pbg
out = []
for port in sys.argv[2:]:
    ch = grpc.insecure_channel("127.0.0.1:" + port)
    st = pbg.DiscountProtoServiceStub(ch)
    seen = {}
    for i in range(300):
        for name in ("IPhone X", "Samsung 10", "nope"):
            r, call = st.GetDiscount.with_call(pb.GetDiscountRequest(productName=name), timeout=5)
            if call.code() != grpc.StatusCode.OK:
                print("BAD", port, call.code()); sys.exit(1)
            seen[name] = (r.id, r.productName, r.description, r.amount)
    out.append(seen)
    ch.close()
print("SAME" if all(o == out[0] for o in out) else "DIFF", out[0])
'''
    stubs = tempdir("stubs-")
    try:
        run(["protoc", "--proto_path=" + os.path.join(ROOT, "proto"),
             "--python_out=" + stubs, "--grpc_python_out=" + stubs,
             "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
             "discount.proto"], 30, "protoc (python stubs)")
    except (RuntimeError, OSError) as e:
        res.note("gRPC status check skipped: %s" % e)
        return None
    servers = [start_grpc_server(b, k) for k in ("ref", "ours", "monoshop")]
    try:
        out = run([sys.executable, "-c", code, stubs] +
                  [str(port) for _, port in servers], 60, "grpcio check")
    finally:
        for (p, _), k in zip(servers, ("ref", "ours", "monoshop")):
            stop_grpc_server(p, k)
    ok = out.startswith("SAME")
    res.note("gRPC status check (python grpcio, 900 calls to each of the "
             "reference, ours in memory and the real Discount): %s"
             % ("every call OK, identical replies " + out[5:].strip()
                if ok else "MISMATCH: " + out.strip()))
    return ok


def scenario_grpc(b, res, rounds):
    log("== 2. gRPC server")
    if not b.ref_server:
        res.add(2, "reference server", "not built (needs g++, libgrpc++-dev, "
                "protobuf-compiler-grpc)")
    frame = os.path.join(tempdir("frame-"), "getdiscount.bin")
    with open(frame, "wb") as f:
        f.write(grpc_frame())
    kinds = ["ours", "ours-bp", "monoshop"]
    if b.ref_server:
        kinds.insert(0, "ref")
    data = {}   # (mix, kind) -> list of runs
    for r in range(rounds):
        for mix in H2_MIXES:
            for kind in kinds:
                p, port = start_grpc_server(b, kind)
                SAMPLER.add(p)
                SAMPLER.set_phase("grpc")
                try:
                    h = h2load(port, mix[0], mix[1], frame)
                finally:
                    SAMPLER.set_phase(None)
                    SAMPLER.remove(p)
                    counts = stop_grpc_server(p, kind)
                total = sum(counts.values())
                ok = counts.get("OK", 0)
                # CANCELLED: the streams h2load leaves in flight when its
                # time is up (at most conns x streams); not an error.
                h["cancelled"] = counts.get("CANCELLED", 0)
                h["non_ok"] = total - ok - h["cancelled"]
                h["codes"] = counts
                # What h2load counted as 2xx includes gRPC errors: only the
                # OK share counts as served.
                h["ok_rps"] = h["rps"] * (ok / total) if total else h["rps"]
                data.setdefault((mix, kind), []).append(h)
                log("   round %d -c%d -m%d %-8s %9.0f req/s  p50 %s µs  p99 %s µs"
                    "  (non-OK: %d)" % (r + 1, mix[0], mix[1], kind, h["ok_rps"],
                                       h["p50_us"], h["p99_us"], h["non_ok"]))
    res.raw["grpc"] = {"%s/c%dm%d" % (k, m[0], m[1]): v for (m, k), v in data.items()}
    names = {"ours": "ours (in-memory handler)",
             "ours-bp": "ours (in-memory handler), grpc.busy_poll_us=%d"
                        % BUSY_POLL_US,
             "monoshop": "monoshop node.modules=discount (SQLite)"}
    for mix in H2_MIXES:
        ref = data.get((mix, "ref"), [])
        for kind in ("ours", "ours-bp", "monoshop"):
            runs = data[(mix, kind)]
            rps = [h["ok_rps"] for h in runs]
            p99 = [h["p99_us"] for h in runs]
            p50 = [h["p50_us"] for h in runs]
            non_ok = sum(h["non_ok"] for h in runs) + sum(h["failed"] for h in runs)
            rr = ratio_of(rps, [h["ok_rps"] for h in ref])
            pr = ratio_of(p99, [h["p99_us"] for h in ref])
            tgt = met = None
            if kind in ("ours", "ours-bp") and ref:
                tgt = "≥ 1.5× req/s, p99 ≤ ref"
                met = median(rr) >= 1.5 and median(pr) <= 1.0
            res.add(2, "-c%d -m%d %s: OK req/s; p50 / p99 µs%s"
                    % (mix[0], mix[1], names[kind],
                       "; non-OK %d" % non_ok if non_ok else ""),
                    "%s; %s / %s" % (fmt_ms(rps), fmt_ms(p50), fmt_ms(p99)),
                    peer=("%s; %s / %s" % (fmt_ms([h["ok_rps"] for h in ref]),
                                           fmt_ms([h["p50_us"] for h in ref]),
                                           fmt_ms([h["p99_us"] for h in ref]))
                          if ref else None),
                    ratio=("%s× req/s, p99 %s×" % (fmt_ms(rr, 2), fmt_ms(pr, 2))
                           if ref else None),
                    target=tgt, met=met)
    grpcio_check(b, res)


# -- 3. REST ----------------------------------------------------------------

WRK_LUA = r'''
local body = os.getenv("WRK_BODY")
local mode = os.getenv("WRK_MODE")
local n = 0
request = function()
  if mode == "post" then
    n = n + 1
    local user = "rest-post-" .. (n % 1000)
    return wrk.format("POST", "/basket", {["Content-Type"] = "application/json"},
                      string.format(body, user))
  end
  return wrk.format("GET", wrk.path)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"io_errors":%d,"status_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
'''

BASKET_POST = ('{"cart":{"userName":"%s","items":['
               '{"quantity":2,"color":"Red","price":500,'
               '"productId":"5334c996-8457-4cf0-815c-ed2b77c4ff61",'
               '"productName":"IPhone X"},'
               '{"quantity":1,"color":"Blue","price":400,'
               '"productId":"6ec1297b-ec0a-4aa1-be25-6726e3b51a27",'
               '"productName":"Samsung 10"}]}}')


def wrk(port, path, mode, body_fmt, lua):
    env = dict(os.environ, WRK_MODE=mode, WRK_BODY=body_fmt)
    argv = ["wrk", "-t1", "-c%d" % WRK_CONNS, "-d%ds" % WRK_SECONDS,
            "-s", lua, "http://127.0.0.1:%d%s" % (port, path)]
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, timeout=WRK_SECONDS + 30)
    except subprocess.TimeoutExpired:
        raise RuntimeError("wrk: no result in time")
    j = last_json(p.stdout.decode())
    j["rps"] = j["requests"] / (j["duration_us"] / 1e6)
    j["ok_rps"] = (j["requests"] - j["status_errors"]) / (j["duration_us"] / 1e6)
    return j


def scenario_rest(b, res, rounds, dev):
    log("== 3. REST")
    st, _ = dev.request("POST", "/basket", BASKET_POST % "rest-get")
    if st not in (200, 201):
        raise RuntimeError("POST /basket answered %d" % st)
    st, body = dev.request("GET", "/basket/rest-get")
    if st != 200:
        raise RuntimeError("GET /basket/rest-get answered %d" % st)
    d = tempdir("rest-")
    body_path = os.path.join(d, "body.json")
    with open(body_path, "wb") as f:
        f.write(body)
    lua = os.path.join(d, "bench.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)
    cport = free_port()
    ceiling = Proc("mhd_ceiling", [b.mhd_ceiling, "--port", str(cport),
                                   "--threads", "4", "--body", body_path])
    ceiling.wait_log(r"listening on", 10)
    SAMPLER.add(ceiling)
    data = {}
    try:
        for r in range(rounds):
            for name, port, path, mode in (
                    ("ceiling", cport, "/basket/rest-get", "get"),
                    ("get", dev.http_port, "/basket/rest-get", "get"),
                    ("post", dev.http_port, "/basket", "post")):
                SAMPLER.set_phase("rest")
                try:
                    j = wrk(port, path, mode, BASKET_POST, lua)
                finally:
                    SAMPLER.set_phase(None)
                data.setdefault(name, []).append(j)
                log("   round %d %-8s %9.0f req/s (non-2xx %d, io errors %d)"
                    "  p50 %d µs  p99 %d µs" % (r + 1, name, j["ok_rps"],
                                                j["status_errors"], j["io_errors"],
                                                j["p50_us"], j["p99_us"]))
    finally:
        SAMPLER.remove(ceiling)
        ceiling.stop()
    res.raw["rest"] = data
    ceil = [j["ok_rps"] for j in data["ceiling"]]
    for name, figure in (("get", "GET /basket/{user}"),
                         ("post", "POST /basket (2 items: 2 Discount calls + "
                                  "1 SQLite transaction)")):
        runs = data[name]
        rps = [j["ok_rps"] for j in runs]
        rr = ratio_of(rps, ceil)
        errs = sum(j["status_errors"] + j["io_errors"] for j in runs)
        tgt = met = None
        if name == "get":
            tgt, met = "≥ 0.5× ceiling", median(rr) >= 0.5
        res.add(3, "%s, wrk -t1 -c%d: req/s; p50 / p99 µs%s"
                % (figure, WRK_CONNS, "; errors %d" % errs if errs else ""),
                "%s; %s / %s" % (fmt_ms(rps), fmt_ms([j["p50_us"] for j in runs]),
                                 fmt_ms([j["p99_us"] for j in runs])),
                peer="ceiling %s; %s / %s" % (
                    fmt_ms(ceil), fmt_ms([j["p50_us"] for j in data["ceiling"]]),
                    fmt_ms([j["p99_us"] for j in data["ceiling"]])),
                ratio="%s×" % fmt_ms(rr, 2), target=tgt, met=met)


# -- 4. checkout pipeline ---------------------------------------------------

def httpload(b, port, mode, prefix, count, conc, seconds=120):
    out = run([b.httpload, "--port", str(port), "--mode", mode, "--prefix",
               prefix, "--count", str(count), "--conc", str(conc), "--items",
               "2", "--seconds", str(seconds)], seconds + 30,
              "httpload %s" % mode)
    return last_json(out)


def outbox_max_seq(basket_db):
    c = sqlite3.connect(basket_db, timeout=10)
    try:
        return c.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
    finally:
        c.close()


def wait_orders(basket_db, ordering_db, after_seq, expect, timeout):
    """Waits until |expect| events of this batch (outbox seq > after_seq) are
    in Ordering's inbox; returns (n, [latency ms], orders/s)."""
    c = sqlite3.connect(ordering_db, timeout=10)
    try:
        c.execute("ATTACH DATABASE ? AS b", (basket_db,))
        q = ("SELECT count(*) FROM b.outbox o JOIN inbox i ON i.id = o.id "
             "WHERE o.seq > ?")
        end = time.monotonic() + timeout
        n = 0
        while time.monotonic() < end:
            n = c.execute(q, (after_seq,)).fetchone()[0]
            if n >= expect:
                break
            time.sleep(0.05)
        rows = c.execute("SELECT o.occurred_ms, i.handled_ms FROM b.outbox o "
                         "JOIN inbox i ON i.id = o.id WHERE o.seq > ?",
                         (after_seq,)).fetchall()
    finally:
        c.close()
    if not rows:
        return 0, [], None
    lat = sorted(h - o for o, h in rows)
    t0 = min(o for o, _ in rows)
    t1 = max(h for _, h in rows)
    return len(rows), lat, len(rows) / max(0.001, (t1 - t0) / 1000.0)


def pct(xs, q):
    return xs[min(len(xs) - 1, int(len(xs) * q))] if xs else None


def wait_http(p, timeout=20):
    """Waits until |p| answers HTTP at all (its /health may say 503: a
    front whose broker is unreachable on purpose)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not p.alive():
            raise RuntimeError("%s exited; log:\n%s" % (p.label, p.log()[-3000:]))
        try:
            p.request("GET", "/health", timeout=2)
            return
        except OSError:
            time.sleep(0.002)
    raise RuntimeError("%s: no HTTP answer within %ss" % (p.label, timeout))


def relay_drain(basket_db, expect, timeout):
    """Waits until |expect| outbox rows are sent (confirmed and marked);
    returns (n sent, events/s). The rate is the steady one: from the first
    commit of marked rows to the last, without the rows of the first (the
    process start, connect and first round are not the relay's pace)."""
    c = sqlite3.connect(basket_db, timeout=10)
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            n = c.execute("SELECT count(*) FROM outbox WHERE sent_ms IS NOT "
                          "NULL").fetchone()[0]
            if n >= expect:
                break
            time.sleep(0.02)
        sent = [r[0] for r in c.execute("SELECT sent_ms FROM outbox WHERE "
                                        "sent_ms IS NOT NULL")]
    finally:
        c.close()
    if len(sent) < 2:
        return len(sent), None
    t0, t1 = min(sent), max(sent)
    first = sum(1 for t in sent if t == t0)
    return len(sent), (len(sent) - first) / max(0.001, (t1 - t0) / 1000.0)


def consumer_drain(basket_db, ordering_db, expect, timeout):
    """Waits until the |expect| events of |basket_db|'s outbox are in
    Ordering's inbox; returns (n, orders/s from the first inbox row to the
    last)."""
    c = sqlite3.connect(ordering_db, timeout=10)
    try:
        c.execute("ATTACH DATABASE ? AS b", (basket_db,))
        q = "FROM b.outbox o JOIN inbox i ON i.id = o.id"
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            n = c.execute("SELECT count(*) " + q).fetchone()[0]
            if n >= expect:
                break
            time.sleep(0.02)
        n, t0, t1 = c.execute("SELECT count(*), min(i.handled_ms), "
                              "max(i.handled_ms) " + q).fetchone()
    finally:
        c.close()
    if n < 2:
        return n, None
    return n, (n - 1) / max(0.001, (t1 - t0) / 1000.0)


def amqp_stages(b, front, back, broker, prefix):
    """The split's AMQP code without the HTTP front end competing for the
    2 cores: |expect| checkouts are made on a front whose broker is
    unreachable (they wait in its outbox) while Ordering is stopped; then
    (i) relay drain: the same data dir is started with the broker, and its
    relay publishes them (confirms) into the queue nobody consumes;
    (ii) consumer drain: Ordering is started again on its data dir and
    turns the queued envelopes into orders. Returns (stats, the new
    Ordering process)."""
    back.stop()
    SAMPLER.remove(back)
    dead = "amqp://guest:guest@127.0.0.1:%d/" % free_port()
    held = Monoshop(b.monoshop, "split amqp stages: basket+discount (held)",
                    sets=["node.modules=basket discount",
                          "events.broker=" + dead])
    try:
        wait_http(held, 60)
        s = httpload(b, held.http_port, "store", prefix, CHECKOUTS, STORE_CONC)
        c = httpload(b, held.http_port, "checkout", prefix, CHECKOUTS,
                     CHECKOUT_CONC)
    finally:
        held.stop()
    relay = Monoshop(b.monoshop, "split amqp stages: basket+discount (relay)",
                     data_dir=held.data_dir,
                     sets=["node.modules=basket discount",
                           "events.broker=" + broker.url])
    try:
        sent, relay_ps = relay_drain(held.db("basket"), c["ok"],
                                     PIPELINE_TIMEOUT)
    finally:
        relay.stop()
    o = Monoshop(b.monoshop, back.label, data_dir=back.data_dir,
                 sets=["node.modules=ordering", "events.broker=" + broker.url])
    SAMPLER.add(o)
    n, consume_ps = consumer_drain(held.db("basket"), o.db("ordering"), sent,
                                   PIPELINE_TIMEOUT)
    o.wait_ready(60)
    return dict(checked_out=c["ok"], errors=s["e4xx"] + s["e5xx"] + s["eio"] +
                c["e4xx"] + c["e5xx"] + c["eio"], sent=sent,
                relay_per_s=relay_ps, orders=n, consume_per_s=consume_ps), o


def start_broker(res):
    sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
    try:
        import rabbitmq
    except ImportError as e:
        res.note("RabbitMQ runs skipped: %s" % e)
        return None
    try:
        b = rabbitmq.start()
    except Exception as e:  # BrokerError and friends
        res.note("RabbitMQ runs skipped: the broker did not start (%s)"
                 % str(e).splitlines()[0])
        return None
    log("   RabbitMQ up at %s in %.1fs" % (b.url, b.boot_seconds))
    return b


def scenario_pipeline(b, res, rounds, dev, broker):
    log("== 4. checkout pipeline")
    modes = [("dev", dev, dev)]
    if broker:
        a = Monoshop(b.monoshop, "split amqp: basket+discount",
                     sets=["node.modules=basket discount",
                           "events.broker=" + broker.url])
        o = Monoshop(b.monoshop, "split amqp: ordering",
                     sets=["node.modules=ordering", "events.broker=" + broker.url])
        for p in (a, o):
            p.wait_ready(60)
            SAMPLER.add(p)
        modes.append(("amqp", a, o))
        modes.append(("raw", None, None))
    if b.has_nng:
        nport = free_port()
        o = Monoshop(b.monoshop, "split nng: ordering",
                     sets=["node.modules=ordering"],
                     nng_listen="tcp://127.0.0.1:%d" % nport)
        a = Monoshop(b.monoshop, "split nng: basket+discount",
                     sets=["node.modules=basket discount",
                           "events.broker=nng+tcp://127.0.0.1:%d" % nport])
        for p in (o, a):
            p.wait_ready(60)
            SAMPLER.add(p)
        modes.append(("nng", a, o))
    else:
        res.add(4, "split over nng", "not built")
    if broker:
        # The stages right after the raw run they are compared with.
        modes.append(("stages", None, None))
    data = {}
    for r in range(rounds):
        for i, (name, front, back) in enumerate(modes):
            if name == "raw":
                meter = CpuMeter([("broker", (), {broker.proc.pid})])
                out = run([b.raw_amqp, "--url", broker.url, "--size",
                           str(ENVELOPE_BYTES), "--window", "64", "--count",
                           str(CHECKOUTS), "--seconds", "20", "--consume",
                           str(PREFETCH)], 60, "raw_amqp_confirms")
                j = last_json(out)
                cpu = meter.done()
                j["cpu_us_per_msg"] = {k: cpu[k] * 1e6 / CHECKOUTS
                                       for k in ("broker", "load generator")}
                data.setdefault(name, []).append(j)
                log("   round %d raw      %9.0f msg/s confirmed (p50 %.2f ms, "
                    "p99 %.2f ms), %.0f msg/s consumed+acked"
                    % (r + 1, j["per_s"], j["confirm_p50_ms"],
                       j["confirm_p99_ms"], j["consume_per_s"]))
                continue
            if name == "stages":
                k = [m[0] for m in modes].index("amqp")
                _, fa, fo = modes[k]
                j, o2 = amqp_stages(b, fa, fo, broker, "stage-r%d-" % r)
                modes[k] = ("amqp", fa, o2)
                data.setdefault(name, []).append(j)
                log("   round %d stages   relay drain %d at %.0f/s, consumer "
                    "drain %d at %.0f/s, errors %d"
                    % (r + 1, j["sent"], j["relay_per_s"] or 0, j["orders"],
                       j["consume_per_s"] or 0, j["errors"]))
                continue
            prefix = "%s-r%d-" % (name, r)
            SAMPLER.set_phase("checkout")
            try:
                s = httpload(b, front.http_port, "store", prefix, CHECKOUTS,
                             STORE_CONC)
                before = outbox_max_seq(front.db("basket"))
                # Where the CPU goes, per order, from the checkouts to the
                # last order: what bounds the pipeline on this box.
                parties = [("basket+discount", {front.pid}, ()),
                           ("ordering", {back.pid}, ())]
                if name == "dev":
                    parties = [("monoshop", {front.pid}, ())]
                elif name == "amqp":
                    parties.append(("broker", (), {broker.proc.pid}))
                meter = CpuMeter(parties)
                c = httpload(b, front.http_port, "checkout", prefix, CHECKOUTS,
                             CHECKOUT_CONC)
                n, lat, ops = wait_orders(front.db("basket"), back.db("ordering"),
                                          before, c["ok"], PIPELINE_TIMEOUT)
                cpu = meter.done()
            finally:
                SAMPLER.set_phase(None)
            j = dict(stored=s["ok"], store_rps=s["per_s"], checked_out=c["ok"],
                     checkout_rps=c["per_s"], checkout_p99_ms=c["p99_ms"],
                     errors=s["e4xx"] + s["e5xx"] + s["eio"] + c["e4xx"] +
                     c["e5xx"] + c["eio"], orders=n, orders_per_s=ops,
                     lat_p50_ms=pct(lat, 0.5), lat_p99_ms=pct(lat, 0.99),
                     cpu_us_per_order={k: (v * 1e6 / n if n else None)
                                       for k, v in cpu.items()
                                       if k != "machine busy share"},
                     busy_share=cpu["machine busy share"])
            data.setdefault(name, []).append(j)
            log("   round %d %-8s stored %d (%.0f/s), checked out %d (%.0f/s), "
                "orders %d at %.0f/s, latency p50 %s ms p99 %s ms, errors %d"
                % (r + 1, name, j["stored"], j["store_rps"], j["checked_out"],
                   j["checkout_rps"], n, ops or 0, j["lat_p50_ms"],
                   j["lat_p99_ms"], j["errors"]))
    res.raw["pipeline"] = data
    raw = [j["per_s"] for j in data.get("raw", [])]
    names = {"dev": "dev mode (one process, in-process events)",
             "amqp": "split over RabbitMQ (persistent, confirms)",
             "nng": "split over nng"}
    for name in ("dev", "amqp", "nng"):
        runs = data.get(name)
        if not runs:
            continue
        ops = [j["orders_per_s"] for j in runs]
        tgt = met = peer = ratio = None
        if name == "dev":
            tgt, met = "≥ 5,000 orders/s", median(ops) >= 5000
        if name == "amqp" and raw:
            rr = ratio_of(ops, raw)
            peer = "raw confirms %s msg/s" % fmt_ms(raw)
            ratio = "%s×" % fmt_ms(rr, 2)
            tgt, met = "≥ 0.5× raw", median(rr) >= 0.5
        lost = sum(j["checked_out"] - j["orders"] for j in runs)
        errs = sum(j["errors"] for j in runs)
        res.add(4, "%s: orders/s; checkout→order p50 / p99 ms%s%s"
                % (names[name], "; MISSING orders %d" % lost if lost else "",
                   "; HTTP errors %d" % errs if errs else ""),
                "%s; %s / %s" % (fmt_ms(ops), fmt_ms([j["lat_p50_ms"] for j in runs]),
                                 fmt_ms([j["lat_p99_ms"] for j in runs])),
                peer=peer, ratio=ratio, target=tgt, met=met)
        res.add(4, "%s: POST /basket/checkout req/s (HTTP side)" % names[name],
                fmt_ms([j["checkout_rps"] for j in runs]))
        # CPU per order, per party, and what the sum implies.
        keys = list(runs[0]["cpu_us_per_order"])
        per = {k: [j["cpu_us_per_order"][k] or 0 for j in runs] for k in keys}
        tot = [sum(j["cpu_us_per_order"][k] or 0 for k in keys) for j in runs]
        note = ""
        if name == "amqp" and raw:
            # Cores the whole pipeline would need at half the raw rate.
            need = [t * 0.5 * rw / 1e6 for t, rw in zip(tot, raw)]
            note = ("; at 0.5× raw it would need %s cores (this machine: %d)"
                    % (fmt_ms(need, 2), os.cpu_count()))
        res.add(4, "%s: CPU µs (user+sys) per order, checkouts to last "
                "order, by process; share of the machine busy%s"
                % (names[name], note),
                "%s; total %s; busy %s%%"
                % (", ".join("%s %s" % (k, fmt_ms(per[k])) for k in keys),
                   fmt_ms(tot),
                   fmt_ms([100 * (j["busy_share"] or 0) for j in runs])))
    stages = data.get("stages")
    if stages and raw:
        lost = sum(j["checked_out"] - j["orders"] for j in stages)
        errs = sum(j["errors"] for j in stages)
        rp = [j["relay_per_s"] or 0 for j in stages]
        cp = [j["consume_per_s"] or 0 for j in stages]
        rawc = [j["consume_per_s"] for j in data["raw"]]
        res.add(4, "RabbitMQ stage, relay drain (%d checkouts waiting in the "
                "outbox, Ordering stopped; Basket restarted with the broker): "
                "events published and confirmed /s%s%s"
                % (CHECKOUTS, "; MISSING %d" % lost if lost else "",
                   "; HTTP errors %d" % errs if errs else ""),
                fmt_ms(rp), peer="raw confirms %s msg/s" % fmt_ms(raw),
                ratio="%s×" % fmt_ms(ratio_of(rp, raw), 2))
        res.add(4, "RabbitMQ stage, consumer drain (those envelopes queued, "
                "Ordering started): orders/s",
                fmt_ms(cp), peer="raw consume+ack (prefetch %d) %s msg/s"
                % (PREFETCH, fmt_ms(rawc)),
                ratio="%s×" % fmt_ms(ratio_of(cp, rawc), 2))
    if raw:
        rj = data["raw"]
        res.add(4, "raw peer: CPU µs (user+sys) per message published, "
                "confirmed, consumed and acked",
                "broker %s, raw client %s"
                % (fmt_ms([j["cpu_us_per_msg"]["broker"] for j in rj]),
                   fmt_ms([j["cpu_us_per_msg"]["load generator"] for j in rj])))
        res.add(4, "raw librabbitmq publisher, %d B persistent, 64 unconfirmed: "
                "confirm p50 / p99 ms" % ENVELOPE_BYTES,
                "%s / %s" % (fmt_ms([j["confirm_p50_ms"] for j in data["raw"]]),
                             fmt_ms([j["confirm_p99_ms"] for j in data["raw"]])))
    return [p for _, f, bk in modes if f for p in {f, bk}]


# -- 5. footprint -----------------------------------------------------------

def scenario_footprint(b, res, long_lived, broker):
    log("== 5. footprint")
    # Start to ready, dev mode: a fresh data directory (migrations and
    # seeds) and one that exists; the "ready" log line and the first 200.
    fresh, warm, line = [], [], []
    d = None
    for i in range(READY_RUNS * 2):
        first = i % 2 == 0
        if first:
            d = tempdir("ready-")
        p = Monoshop(b.monoshop, "ready", data_dir=os.path.join(d, "data"))
        t = p.wait_ready()
        m = p.wait_log(r"ready: modules", 5)
        (fresh if first else warm).append(t * 1000)
        line.append(m is not None)
        p.stop()
    res.add(5, "dev mode, spawn → first 200 on /health, fresh data dir (ms)",
            fmt_ms(fresh), target="< 100 ms", met=median(fresh) < 100)
    res.add(5, "dev mode, spawn → first 200 on /health, existing data (ms)",
            fmt_ms(warm), target="< 100 ms", met=median(warm) < 100)
    # Idle: each process kind started fresh, 1 s without traffic.
    idle_cfgs = [("dev mode", ["node.modules=basket discount ordering"], False)]
    idle_cfgs.append(("split: discount (gRPC server)",
                      ["node.modules=discount"], True))
    if broker:
        idle_cfgs += [("split amqp: basket+discount",
                       ["node.modules=basket discount",
                        "events.broker=" + broker.url], False),
                      ("split amqp: ordering",
                       ["node.modules=ordering", "events.broker=" + broker.url],
                       False)]
    nport = free_port()
    if b.has_nng:
        idle_cfgs += [("split nng: ordering", ["node.modules=ordering",
                                               "nng.listen=tcp://127.0.0.1:%d"
                                               % nport], False),
                      ("split nng: basket+discount",
                       ["node.modules=basket discount",
                        "events.broker=nng+tcp://127.0.0.1:%d" % nport], False)]
    idle = {}
    running = []
    for label, sets, grpc in idle_cfgs:
        p = Monoshop(b.monoshop, "idle " + label, sets=sets, grpc=grpc)
        p.wait_ready(60)
        running.append(p)
        time.sleep(1.0)
        idle[label] = p.rss()[0]
    for p in running:
        p.stop()
    # Under load: the largest VmRSS sampled during each scenario.
    labels = ["dev mode"] + [p.label for p in long_lived if p.label != "dev mode"]
    labels += ["split: discount (gRPC server)"]
    for label in labels:
        peaks = {ph: v for (lb, ph), v in SAMPLER.peak.items() if lb == label}
        hwm = None
        for p in long_lived:
            if p.label == label:
                hwm = p.rss()[1]
        tgt = met = None
        if label == "dev mode":
            tgt = "idle < 16 MiB, load < 64 MiB"
            met = (idle.get(label) or 1e9) < 16 * 1024 and \
                max(list(peaks.values()) + [hwm or 0]) < 64 * 1024
        elif peaks:
            tgt = "load < 64 MiB"
            met = max(list(peaks.values()) + [hwm or 0]) < 64 * 1024
        res.add(5, "%s: VmRSS idle; largest under load by scenario (MiB)" % label,
                "idle %s; %s%s" % (
                    fmt(idle[label] / 1024.0, 1) if idle.get(label) else "n/a",
                    ", ".join("%s %s" % (ph, fmt(v / 1024.0, 1))
                              for ph, v in sorted(peaks.items())) or "no load",
                    "; VmHWM %s" % fmt(hwm / 1024.0, 1) if hwm else ""),
                target=tgt, met=met)
    for name in ("ref_grpc_server", "ours_grpc_mem", "mhd_ceiling"):
        peaks = [v for (lb, ph), v in SAMPLER.peak.items() if lb == name]
        if peaks:
            res.add(5, "%s: largest VmRSS under load (MiB)" % name,
                    fmt(max(peaks) / 1024.0, 1))


# -- output -----------------------------------------------------------------

def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, timeout=10
                                  ).stdout.decode().strip()
        except Exception:
            return "?"
    cpu = sh("lscpu | grep -E '^(Model name|CPU\\(s\\)|Thread|Core|Socket|"
             "CPU max MHz|L2|L3)'")
    return dict(date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                kernel=sh("uname -srm"), cpu=cpu, load=sh("cat /proc/loadavg"),
                mem=sh("grep MemTotal /proc/meminfo"),
                versions=sh("dpkg-query -W -f '${Package} ${Version}\\n' "
                            "libnghttp2-14 libgrpc++1.51 libmicrohttpd12 "
                            "librabbitmq4 rabbitmq-server libsqlite3-0 "
                            "nghttp2-client wrk libnng1 2>/dev/null"))


def render(res, m):
    out = ["## Results", "",
           "Machine: %s; %s; %s; load before the run: %s"
           % (m["date"], m["kernel"], m["mem"], m["load"]), "", "```",
           m["cpu"], m["versions"], "```", "",
           "Figures: median of the rounds (min–max). Ratios: median of the "
           "per-round ratios, each against the peer measured next to it.", "",
           "| # | figure | ours | peer | ratio | target | met |",
           "|---|---|---|---|---|---|---|"]
    for r in res.rows:
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            r["scen"], r["figure"], r["ours"], r["peer"] or "", r["ratio"] or "",
            r["target"] or "", met))
    if res.notes:
        out.append("")
        for n in res.notes:
            out.append("* " + n)
    return "\n".join(out) + "\n"


class Build:
    def __init__(self, d):
        d = os.path.abspath(d)
        self.dir = d
        self.monoshop = os.path.join(d, "src", "monoshop")
        self.bus_bench = os.path.join(d, "bench", "bus_bench")
        self.httpload = os.path.join(d, "bench", "httpload")
        self.mhd_ceiling = os.path.join(d, "bench", "mhd_ceiling")
        self.raw_amqp = os.path.join(d, "bench", "raw_amqp_confirms")
        ref = os.path.join(d, "bench", "ref_grpc_server")
        self.ref_server = ref if os.access(ref, os.X_OK) else None
        for p in (self.monoshop, self.bus_bench, self.httpload, self.mhd_ceiling):
            if not os.access(p, os.X_OK):
                raise SystemExit("missing %s: build with -Dbench=true" % p)
        h = subprocess.run([self.monoshop, "--help"], stdout=subprocess.PIPE,
                           timeout=10).stdout.decode()
        m = re.search(r"Transports in this build:(.*)", h)
        self.transports = m.group(1).split() if m else []
        self.has_nng = "nng+tcp" in self.transports
        self.has_amqp = "amqp" in self.transports and os.access(self.raw_amqp,
                                                                os.X_OK)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="1,2,3,4,5")
    ap.add_argument("--quick", action="store_true",
                    help="short phases, 1 round: a smoke test of the harness")
    ap.add_argument("--out", help="write the table (markdown) here too")
    ap.add_argument("--json", help="write the raw samples here")
    a = ap.parse_args()
    global H2_SECONDS, H2_WARMUP, WRK_SECONDS, CHECKOUTS, BUS_SECONDS, READY_RUNS
    if a.quick:
        a.rounds = 1
        H2_SECONDS, H2_WARMUP, WRK_SECONDS = 1, 0.5, 1
        CHECKOUTS, BUS_SECONDS, READY_RUNS = 500, 0.3, 2
    only = {int(x) for x in a.only.split(",") if x}
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    for tool in ("h2load", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit("%s not found: see the apt-get line in "
                             "bench/README.md" % tool)
    b = Build(a.build)
    res = Results()
    m = machine()
    t_start = time.monotonic()
    SAMPLER.start()
    dev = None
    broker = None
    long_lived = []
    try:
        if only & {3, 4, 5}:
            dev = Monoshop(b.monoshop, "dev mode")
            dev.wait_ready()
            SAMPLER.add(dev)
            long_lived.append(dev)
        if 1 in only:
            scenario_bus(b, res, a.rounds)
        if 2 in only:
            scenario_grpc(b, res, a.rounds)
        if 3 in only:
            scenario_rest(b, res, a.rounds, dev)
        if only & {4, 5} and b.has_amqp:
            log("== starting RabbitMQ")
            broker = start_broker(res)
        if 4 in only:
            long_lived += [p for p in scenario_pipeline(b, res, a.rounds, dev,
                                                        broker)
                           if p is not dev]
        if 5 in only:
            scenario_footprint(b, res, long_lived, broker)
    finally:
        SAMPLER.stopping = True
        for p in long_lived:
            p.stop(quiet=True)
        if broker is not None:
            broker.close()
    res.note("whole run: %.0f s, %d round(s)" % (time.monotonic() - t_start,
                                                  a.rounds))
    text = render(res, m)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(machine=m, raw=res.raw, rows=res.rows), f, indent=1,
                      default=str)


if __name__ == "__main__":
    main()
