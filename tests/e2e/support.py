# SPDX-License-Identifier: MIT
"""Shared helpers of the end-to-end tests: start the real monoshop binary in a
fresh data directory on free loopback ports, talk HTTP/JSON to it, wait for
conditions with deadlines (never fixed sleeps), and stop it cleanly.

Standard library only; run by Debian's /usr/bin/python3.
"""

import decimal
import http.client
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

Decimal = decimal.Decimal

LISTEN_RE = re.compile(r"http: listening on 127\.0\.0\.1:(\d+)")
GRPC_LISTEN_RE = re.compile(r"grpc: listening on 127\.0\.0\.1:(\d+)")

# Every server started by this process, so that a failure kills them all.
_servers = []
_tempdirs = []


class TestFailure(Exception):
    """A check failed; the message says which and why."""


# While > 0 (inside wait_until's polls), passed checks are not printed.
_quiet = 0


def say(*args):
    if not _quiet:
        print(*args, flush=True)


def step(msg):
    print("--", msg, flush=True)


def check(cond, msg):
    """Fail with |msg| unless |cond|; print it as passed otherwise."""
    if not cond:
        raise TestFailure(msg)
    say("   ok:", msg)


def check_eq(got, want, what):
    if got != want:
        raise TestFailure("%s: expected %r, got %r" % (what, want, got))
    say("   ok: %s == %r" % (what, want))


def wait_until(pred, timeout, what, interval=0.05):
    """Poll |pred| until it returns a truthy value (which is returned) or the
    deadline passes (then fail naming |what| and the last value/exception)."""
    global _quiet
    start = time.monotonic()
    deadline = start + timeout
    last = None
    while True:
        _quiet += 1
        try:
            v = pred()
            last = v
        except TestFailure:
            raise
        except Exception as e:  # connection refused etc. while polling
            last = e
        finally:
            _quiet -= 1
        if last and not isinstance(last, Exception):
            say("   ok: %s (after %.2fs)" % (what, time.monotonic() - start))
            return last
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %.1fs waiting for %s (last: %r)"
                              % (timeout, what, last))
        time.sleep(interval)


def tempdir(prefix="monoshop-e2e-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _tempdirs.append(d)
    return d


def clean_env(**extra):
    """The current environment without any MONOSHOP_* variable, plus |extra|."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONOSHOP_")}
    env.update(extra)
    return env


def dumps(obj):
    """JSON text of |obj|; Decimal values are written exactly as numbers."""
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int, float)):
        return json.dumps(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + dumps(v)
                              for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    raise TypeError("cannot encode %r" % (obj,))


class Response:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage (case-insensitive)
        self.raw = raw
        self.text = raw.decode("utf-8", "replace")
        ctype = headers.get("Content-Type", "") or ""
        self.json = None
        if "json" in ctype:
            try:
                self.json = json.loads(self.text, parse_float=Decimal)
            except ValueError:
                self.json = None

    @property
    def body(self):
        return self.json if self.json is not None else self.text

    def header(self, name):
        return self.headers.get(name)

    def __repr__(self):
        t = self.text if len(self.text) < 600 else self.text[:600] + "..."
        return "<HTTP %d %s %s>" % (self.status,
                                    self.headers.get("Content-Type"), t)


class Server:
    """One monoshop process in its own data directory."""

    def __init__(self, exe, data_dir=None, extra=(), env=None, config=None,
                 name="monoshop", grpc_listen="127.0.0.1:0"):
        self.exe = exe
        self.grpc_listen = grpc_listen
        self.work = tempdir()
        self.data_dir = data_dir or os.path.join(self.work, "data")
        self.extra = list(extra)
        self.env = env if env is not None else clean_env()
        self.config = config
        self.name = name
        self.proc = None
        self.port = None
        self.grpc_port = None  # learnt from the log, when it has the line
        self.log_path = None
        self._log = None
        self._starts = 0

    # -- process ---------------------------------------------------------
    def argv(self):
        a = [self.exe]
        if self.config:
            a += ["--config", self.config]
        a += ["--set", "node.data_dir=" + self.data_dir,
              "--set", "http.listen=127.0.0.1:0",
              "--set", "grpc.listen=" + self.grpc_listen]
        for x in self.extra:
            a += ["--set", x]
        return a

    def start(self, extra=None, timeout=10, health=200, want_grpc=False):
        """Start (or restart) the binary, learn its port from the log and wait
        for GET /health to answer |health| (200; None = any answer, for a
        process whose dependency is down on purpose). With |want_grpc|, also
        wait for the log line 'grpc: listening on 127.0.0.1:PORT' and keep
        the port in self.grpc_port (learnt anyway when the line is there)."""
        if extra is not None:
            self.extra = list(extra)
        assert self.proc is None or self.proc.poll() is not None
        self._starts += 1
        self.log_path = os.path.join(self.work, "%s.%d.log" % (self.name,
                                                               self._starts))
        self._log = open(self.log_path, "wb")
        argv = self.argv()
        print("   $ " + " ".join(argv), flush=True)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log,
                                     env=self.env)
        self.grpc_port = None
        if self not in _servers:
            _servers.append(self)

        def logged(regex):
            def pred():
                m = regex.search(self.log())
                if m:
                    return int(m.group(1))
                if self.proc.poll() is not None:
                    raise TestFailure("%s exited with status %s before listening;"
                                      " log:\n%s" % (self.name, self.proc.returncode,
                                                     self.log()))
                return None
            return pred

        self.port = wait_until(logged(LISTEN_RE), timeout,
                               "the log line 'http: listening on 127.0.0.1:PORT'")
        if want_grpc:
            self.grpc_port = wait_until(
                logged(GRPC_LISTEN_RE), timeout,
                "the log line 'grpc: listening on 127.0.0.1:PORT'")

        def healthy():
            if self.proc.poll() is not None:
                raise TestFailure("%s exited with status %s; log:\n%s"
                                  % (self.name, self.proc.returncode, self.log()))
            st = self.get("/health").status
            return st == health if health is not None else True

        wait_until(healthy, timeout, "GET /health to answer %s" % (health or ""))
        if self.grpc_port is None:
            m = GRPC_LISTEN_RE.search(self.log())
            if m:
                self.grpc_port = int(m.group(1))
        return self

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        """SIGTERM; the process must exit 0 within |timeout| seconds."""
        if not self.alive():
            raise TestFailure("%s is not running (status %s) when asked to stop"
                              % (self.name, self.proc and self.proc.returncode))
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure("%s did not exit within %ss of SIGTERM; log tail:\n%s"
                              % (self.name, timeout, tail(self.log())))
        self._close_log()
        if rc != 0:
            raise TestFailure("%s exited with status %d after SIGTERM; log tail:\n%s"
                              % (self.name, rc, tail(self.log())))
        print("   ok: %s exited 0 after SIGTERM" % self.name, flush=True)

    def kill(self):
        """SIGKILL and reap (no-op if not running)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._close_log()

    def _close_log(self):
        if self._log:
            self._log.close()
            self._log = None

    # -- HTTP ------------------------------------------------------------
    def request(self, method, path, body=None, data=None, headers=None,
                timeout=10):
        """One request on a fresh connection. |body| is encoded with dumps();
        |data| (bytes/str) is sent as is. Returns a Response."""
        hdrs = {}
        payload = None
        # A process started with http.api_key (self.api_key, e.g. from a
        # split file) gets it on every write, unless the test says otherwise.
        key = getattr(self, "api_key", None)
        if key and method not in ("GET", "HEAD"):
            hdrs["X-Api-Key"] = key
        if body is not None:
            payload = dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif data is not None:
            payload = data.encode() if isinstance(data, str) else data
            hdrs["Content-Type"] = "application/json"
        if headers:
            hdrs.update(headers)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            try:
                conn.request(method, path, body=payload, headers=hdrs)
            except (BrokenPipeError, ConnectionResetError):
                # The server may answer (e.g. 413) and close before reading
                # all of the body; the answer is still there to read.
                pass
            r = conn.getresponse()
            raw = r.read()
            return Response(r.status, r.headers, raw)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # -- files -----------------------------------------------------------
    def db(self, name):
        return os.path.join(self.data_dir, name + ".db")


def tail(text, n=40):
    lines = text.splitlines()
    return "\n".join(lines[-n:])


def sql(path, query, args=()):
    """Run one query on the SQLite file at |path| and return all rows; the
    connection is closed at once so no lock is held."""
    conn = sqlite3.connect(path, timeout=10)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def integrity_check(data_dir):
    dbs = sorted(f for f in os.listdir(data_dir) if f.endswith(".db"))
    check(dbs, "data dir %s holds .db files (%s)" % (data_dir, dbs))
    for f in dbs:
        rows = sql(os.path.join(data_dir, f), "PRAGMA integrity_check")
        check_eq(rows, [("ok",)], "PRAGMA integrity_check on %s" % f)


def expect_status(resp, status, what):
    if resp.status != status:
        raise TestFailure("%s: expected HTTP %d, got %r" % (what, status, resp))
    say("   ok: %s -> %d" % (what, status))
    return resp


def expect_problem(resp, status, what, instance=None, fields=(),
                   detail_contains=None):
    """|resp| must be an application/problem+json error with |status| and the
    ProblemDetails fields; |fields| are names that some validationErrors
    entry's propertyName must mention."""
    expect_status(resp, status, what)
    ctype = resp.header("Content-Type") or ""
    if not ctype.startswith("application/problem+json"):
        raise TestFailure("%s: Content-Type should be application/problem+json,"
                          " got %r" % (what, ctype))
    p = resp.json
    if not isinstance(p, dict):
        raise TestFailure("%s: body is not a JSON object: %r" % (what, resp))
    for k in ("title", "status", "detail", "instance", "traceId"):
        if k not in p:
            raise TestFailure("%s: problem has no %r: %r" % (what, k, p))
    for k in ("title", "detail", "instance", "traceId"):
        if not isinstance(p[k], str):
            raise TestFailure("%s: problem %r should be a string: %r" % (what, k, p))
    if p["status"] != status:
        raise TestFailure("%s: problem status %r != %d" % (what, p["status"], status))
    if not p["traceId"]:
        raise TestFailure("%s: empty traceId: %r" % (what, p))
    if instance is not None and p["instance"] != instance:
        raise TestFailure("%s: instance should be %r, got %r"
                          % (what, instance, p["instance"]))
    if detail_contains is not None and detail_contains not in p["detail"]:
        raise TestFailure("%s: detail should mention %r: %r"
                          % (what, detail_contains, p["detail"]))
    if fields:
        ve = p.get("validationErrors")
        if not isinstance(ve, list) or not ve:
            raise TestFailure("%s: expected a non-empty validationErrors array: %r"
                              % (what, p))
        for e in ve:
            if not isinstance(e, dict) or not isinstance(e.get("propertyName"), str) \
                    or not isinstance(e.get("errorMessage"), str):
                raise TestFailure("%s: validationErrors entry without "
                                  "propertyName/errorMessage strings: %r" % (what, e))
        names = [e["propertyName"].lower() for e in ve]
        for f in fields:
            if not any(f.lower() in n for n in names):
                raise TestFailure("%s: no validationErrors propertyName names %r: %r"
                                  % (what, f, ve))
    say("   ok: %s is problem+json %d (%s)" % (what, status, p.get("detail")))
    return p


def run(main):
    """Run |main()|; on any failure print it with the servers' log tails, kill
    every server this test started and exit 1."""
    def on_term(signum, frame):
        raise TestFailure("killed by signal %d (test timeout?)" % signum)

    signal.signal(signal.SIGTERM, on_term)
    ok = False
    try:
        main()
        ok = True
    except TestFailure as e:
        print("\nFAIL:", e, file=sys.stderr, flush=True)
    except Exception:
        print("\nFAIL: unexpected exception", file=sys.stderr, flush=True)
        traceback.print_exc()
    finally:
        for s in _servers:
            if not ok and s.log_path:
                print("\n== log tail of %s (%s, %s) ==\n%s" % (
                    s.name, s.log_path,
                    "running" if s.alive() else "exited %s" % s.proc.returncode,
                    tail(s.log(), 60)), file=sys.stderr)
            s.kill()
        if ok or not os.environ.get("E2E_KEEP"):
            for d in _tempdirs:
                shutil.rmtree(d, ignore_errors=True)
        elif _tempdirs:
            print("kept temp dirs: %s" % _tempdirs, file=sys.stderr)
    if ok:
        print("PASS", flush=True)
        sys.exit(0)
    sys.exit(1)


def exe_from_argv():
    if len(sys.argv) != 2:
        print("usage: %s PATH/TO/monoshop" % sys.argv[0], file=sys.stderr)
        sys.exit(2)
    exe = os.path.abspath(sys.argv[1])
    if not os.access(exe, os.X_OK):
        print("not an executable: %s" % exe, file=sys.stderr)
        sys.exit(1)
    return exe


def new_guid():
    return str(uuid.uuid4())


# -- gRPC tests ------------------------------------------------------------
# The gRPC tests take a second argument, the repository's proto/ directory,
# and need Debian's python3-grpcio, python3-protobuf, protobuf-compiler and
# protobuf-compiler-grpc (imported lazily: the tests above stay standard
# library only).

def exe_and_proto_from_argv():
    """(monoshop executable, proto directory) from the command line."""
    if len(sys.argv) != 3:
        print("usage: %s PATH/TO/monoshop PATH/TO/proto" % sys.argv[0],
              file=sys.stderr)
        sys.exit(2)
    exe = os.path.abspath(sys.argv[1])
    proto = os.path.abspath(sys.argv[2])
    if not os.access(exe, os.X_OK):
        print("not an executable: %s" % exe, file=sys.stderr)
        sys.exit(1)
    if not os.path.isfile(os.path.join(proto, "discount.proto")):
        print("no discount.proto in %s" % proto, file=sys.stderr)
        sys.exit(1)
    return exe, proto


def free_port():
    """A loopback TCP port that was free a moment ago (bound to port 0 and
    released), for a process that must listen on a port fixed in advance."""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


GRPC_PROTOS = ("discount.proto", "grpc/health/v1/health.proto",
               "grpc/reflection/v1/reflection.proto")


class Stubs:
    """The generated Python modules: discount_pb2/_grpc, health_pb2/_grpc,
    reflection_pb2/_grpc (grpc.reflection.v1)."""


def grpc_stubs(proto_dir, files=GRPC_PROTOS):
    """Generate the Python stubs of |files| (paths under |proto_dir|) with
    protoc and grpc_python_plugin into a temporary directory and import them.

    The health and reflection files live under grpc/..., so their generated
    modules are grpc.health.v1.health_pb2 etc.: the temporary grpc/ tree is
    added to the grpcio package's search path so that those names resolve
    next to the real grpc package."""
    import importlib
    for f in files:
        if not os.path.isfile(os.path.join(proto_dir, f)):
            raise TestFailure("%s is missing under %s" % (f, proto_dir))
    try:
        import grpc  # noqa: F401
        import google.protobuf  # noqa: F401
    except ImportError as e:
        raise TestFailure("needs Debian's python3-grpcio and python3-protobuf"
                          " for /usr/bin/python3 (%s)" % e)
    out = tempdir("monoshop-stubs-")
    argv = ["protoc", "--proto_path=" + proto_dir, "--python_out=" + out,
            "--grpc_python_out=" + out,
            "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin"]
    argv += list(files)
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise TestFailure("protoc not found (Debian: protobuf-compiler,"
                          " protobuf-compiler-grpc)")
    if p.returncode != 0:
        raise TestFailure("protoc failed (%d): %s" % (p.returncode,
                                                     p.stdout.decode()))
    sys.path.insert(0, out)
    gdir = os.path.join(out, "grpc")
    if os.path.isdir(gdir) and gdir not in grpc.__path__:
        grpc.__path__.append(gdir)
    st = Stubs()
    names = {
        "discount.proto": [("discount_pb2", "discount_pb2"),
                           ("discount_pb2_grpc", "discount_pb2_grpc")],
        "grpc/health/v1/health.proto": [
            ("health_pb2", "grpc.health.v1.health_pb2"),
            ("health_pb2_grpc", "grpc.health.v1.health_pb2_grpc")],
        "grpc/reflection/v1/reflection.proto": [
            ("reflection_pb2", "grpc.reflection.v1.reflection_pb2"),
            ("reflection_pb2_grpc", "grpc.reflection.v1.reflection_pb2_grpc")],
    }
    for f in files:
        for attr, mod in names.get(f, []):
            setattr(st, attr, importlib.import_module(mod))
    say("   ok: generated and imported the stubs of %s" % ", ".join(files))
    return st


def expect_rpc_error(fn, code, what, details=None, details_contains=None):
    """Call |fn()|; it must raise grpc.RpcError with |code| (a
    grpc.StatusCode). Returns the error."""
    import grpc
    try:
        r = fn()
    except grpc.RpcError as e:
        if e.code() != code:
            raise TestFailure("%s: expected %s, got %s (%r)"
                              % (what, code.name, e.code().name, e.details()))
        if details is not None and e.details() != details:
            raise TestFailure("%s: expected the message %r, got %r"
                              % (what, details, e.details()))
        if details_contains is not None and \
                details_contains not in (e.details() or ""):
            raise TestFailure("%s: the message should mention %r: %r"
                              % (what, details_contains, e.details()))
        say("   ok: %s -> %s (%r)" % (what, code.name, e.details()))
        return e
    raise TestFailure("%s: expected %s, got a success: %r"
                      % (what, code.name, r))


def timed(fn):
    """(fn(), seconds it took)."""
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t


# -- AMQP / RabbitMQ tests (issue 4) ----------------------------------------
# Need Debian's rabbitmq-server and python3-pika (for /usr/bin/python3). Each
# test file starts one private broker with tests/support/rabbitmq.py (free
# loopback ports, temporary directory, stopped and removed at exit). pika and
# the launcher are imported lazily: the tests above stay standard library only.

MT_CONTENT_TYPE = "application/vnd.masstransit+json"
MT_EVENT_EXCHANGE = "BuildingBlocks.Messaging.Events:BasketCheckoutEvent"
MT_EVENT_URN = "urn:message:BuildingBlocks.Messaging.Events:BasketCheckoutEvent"
MT_BASE_URN = "urn:message:BuildingBlocks.Messaging.Events:IntegrationEvent"
MT_ENDPOINT = "basket-checkout-event-handler"
MT_ERROR = MT_ENDPOINT + "_error"
MT_SKIPPED = MT_ENDPOINT + "_skipped"

_E2E_DIR = os.path.dirname(os.path.abspath(__file__))
_brokers = []


def rabbitmq_module():
    """tests/support/rabbitmq.py, imported (needs python3-pika)."""
    try:
        import pika  # noqa: F401
    except ImportError as e:
        raise TestFailure("needs Debian's python3-pika for /usr/bin/python3 (%s)" % e)
    d = os.path.join(os.path.dirname(_E2E_DIR), "support")
    if d not in sys.path:
        sys.path.insert(0, d)
    import rabbitmq
    return rabbitmq


def start_broker():
    """Start a private RabbitMQ broker; it is stopped at exit and its log
    tail printed when the test fails (see run_with_broker)."""
    rmq = rabbitmq_module()
    try:
        b = rmq.start()
    except rmq.BrokerError as e:
        raise TestFailure("RabbitMQ did not start: %s" % e)
    _brokers.append(b)
    say("   ok: RabbitMQ %s at %s booted in %.1fs" % (b.node, b.url, b.boot_seconds))
    return b


def run_with_broker(main):
    """run(main), printing the log tail of every broker the test started
    when it fails (the brokers are stopped by the launcher's atexit hook,
    after the servers are killed)."""
    def wrapped():
        try:
            main()
        except BaseException:
            for b in _brokers:
                try:
                    print("\n== RabbitMQ %s (%s) log tail ==\n%s"
                          % (b.node, "running" if b.running() else "stopped",
                             b.log_tail(30)), file=sys.stderr, flush=True)
                except Exception:
                    pass
            raise
    run(wrapped)


def amqp_connect(broker):
    """A pika BlockingConnection (heartbeats off: the test may sit idle)."""
    return broker.connect(timeout=5, heartbeat=0)


def amqp_queue_count(broker, name):
    """Ready messages of queue |name| by a passive queue_declare, or None
    when the queue does not exist (the 404 closes only that channel)."""
    import pika
    c = amqp_connect(broker)
    try:
        ch = c.channel()
        try:
            return ch.queue_declare(name, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code == 404:
                return None
            raise
    finally:
        if c.is_open:
            c.close()


def amqp_exists(broker, kind, name):
    """True when exchange/queue |name| exists (passive declare)."""
    import pika
    c = amqp_connect(broker)
    try:
        ch = c.channel()
        try:
            if kind == "exchange":
                ch.exchange_declare(name, passive=True)
            else:
                ch.queue_declare(name, passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code == 404:
                return False
            raise
    finally:
        if c.is_open:
            c.close()


def rabbit_list(broker, what, *cols):
    """rabbitmqctl list_<what> COLS --formatter json, as a list of dicts."""
    rc, out = broker.ctl("list_" + what, *cols, "--formatter", "json")
    if rc != 0:
        raise TestFailure("rabbitmqctl list_%s failed (%d): %s" % (what, rc, out))
    start = out.find("[")
    try:
        return json.loads(out[start:]) if start >= 0 else []
    except ValueError:
        raise TestFailure("rabbitmqctl list_%s: not JSON: %r" % (what, out))


def rabbit_queue_depth(broker, name):
    """(ready, unacked) of queue |name| according to the broker, or None."""
    for q in rabbit_list(broker, "queues", "name", "messages_ready",
                         "messages_unacknowledged"):
        if q.get("name") == name:
            return q["messages_ready"], q["messages_unacknowledged"]
    return None


def wait_queue_drained(broker, name, timeout, what=None):
    """Wait until queue |name| holds no message, ready or unacknowledged
    (a passive declare's message_count and rabbitmqctl's counts)."""
    def drained():
        n = amqp_queue_count(broker, name)
        if n != 0:
            return None
        d = rabbit_queue_depth(broker, name)
        return d == (0, 0) and d
    return wait_until(drained, timeout, what or "queue %s drained (0 ready, 0 unacked)"
                      % name, interval=0.3)


def mt_publish(broker, body, message_id, exchange=MT_EVENT_EXCHANGE,
               content_type=MT_CONTENT_TYPE, headers=None):
    """Publish |body| (bytes, str or an envelope dict, written indented as
    MassTransit does) like MassTransit: persistent, message_id, confirmed."""
    import pika
    if isinstance(body, dict):
        body = json.dumps(body, indent=2)
    if isinstance(body, str):
        body = body.encode()
    c = amqp_connect(broker)
    try:
        ch = c.channel()
        ch.confirm_delivery()
        ch.basic_publish(exchange, "", body, pika.BasicProperties(
            content_type=content_type, delivery_mode=2, message_id=message_id,
            headers=headers or {}), mandatory=False)
    finally:
        if c.is_open:
            c.close()
    return body


def broker_entry(srv):
    """(HTTP status, overall status, the 'broker' entry) of GET /health."""
    r = srv.get("/health")
    h = r.json if isinstance(r.json, dict) else {}
    return r.status, h.get("status"), (h.get("entries") or {}).get("broker")


def wait_broker_health(srv, healthy, timeout, what=None):
    """Wait until |srv|'s /health has the 'broker' entry Healthy and 200
    (|healthy|) or Unhealthy and 503 (not |healthy|); returns the entry."""
    want, code = ("Healthy", 200) if healthy else ("Unhealthy", 503)

    def pred():
        st, overall, e = broker_entry(srv)
        if st == code and isinstance(e, dict) and e.get("status") == want:
            return e
        return None
    return wait_until(pred, timeout, what or "%s's /health %d with the broker entry %s"
                      % (srv.name, code, want), interval=0.2)


# -- split deployments, traces, metrics (issue 5) ----------------------------
# The three-process deployment of config/split/*.ini, every fixed port and the
# broker URL overridden with --set (free loopback ports, temporary data
# directories, a private broker), so that the tests never depend on 6001-6003
# or 5672 being free.

# E2E_SPLIT_DIR: try other split files (default: the repository's).
SPLIT_DIR = os.environ.get("E2E_SPLIT_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(_E2E_DIR)), "config", "split")
SPLIT_ROLES = ("basket", "discount", "ordering")
TRACE_RE = re.compile(r"trace=([0-9a-f]{32})\b")


class Endpoint:
    """An HTTP client of one listener (127.0.0.1:|port|) with Server's
    request/get/post/put/delete."""

    def __init__(self, port, name="endpoint"):
        self.port = port
        self.name = name

    request = Server.request
    get = Server.get
    post = Server.post
    put = Server.put
    delete = Server.delete

    def __repr__(self):
        return "<%s http://127.0.0.1:%d>" % (self.name, self.port)


def read_ini(path):
    """{"section.key": (value, line number)} of the INI file at |path|, read
    the way monoshop reads it: [section] headers, `key = value`, comments on
    their own line starting with # or ;, values optionally double-quoted."""
    out = {}
    section = None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            s = line.strip()
            if not s or s[0] in "#;":
                continue
            if s.startswith("[") and s.endswith("]"):
                section = s[1:-1].strip().lower()
                continue
            if "=" not in s or section is None:
                raise TestFailure("%s:%d: not a key = value line: %r" % (path, n, s))
            k, v = s.split("=", 1)
            k, v = k.strip().lower(), v.strip()
            if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
                v = v[1:-1]
            out[section + "." + k] = (v, n)
    return out


class PinnedServer(Server):
    """A Server whose HTTP listener is on a port fixed in advance
    (|http_port|; None = port 0 as usual), so that a restart comes back on
    the same port, and whose --set overrides may replace Server's own."""

    def __init__(self, exe, http_port=None, **kw):
        super().__init__(exe, **kw)
        self.http_port = http_port

    def argv(self):
        a = super().argv()
        if self.http_port:
            a += ["--set", "http.listen=127.0.0.1:%d" % self.http_port]
        return a

    def endpoint(self):
        e = Endpoint(self.port, self.name)
        e.api_key = getattr(self, "api_key", None)
        return e


_PORT_IN_VALUE = re.compile(r":\d{2,5}(?:/|$)")


class SplitDeployment:
    """basket, discount and ordering: three monoshop processes started from
    config/split/{role}.ini with --set overrides for every key that names a
    fixed port or the broker:

    * node.data_dir: a temporary directory per process (Server's);
    * http.listen: port 0 (learnt from the log) or, with |pin|, a free port
      fixed now, so that restarts come back on it;
    * grpc.listen: a free port fixed now (Discount's is needed by the
      others' remote.discount; the others' keep the restart promise);
    * remote.<role>: grpc://127.0.0.1:<that process's gRPC port>;
    * events.broker: |broker_url| (a private broker);
    * nng.listen: a free port (tcp) or a temporary socket (ipc).

    Any other key of a split file whose value names a port is an error here
    (the test would otherwise depend on it). |extra| maps a role to more
    --set items ("key=value"), e.g. {"discount": ["debug.discount_delay_ms=500"]};
    |common| goes to all three."""

    def __init__(self, exe, broker_url, pin=False, extra=None, common=(),
                 split_dir=SPLIT_DIR):
        self.exe = exe
        self.broker_url = broker_url
        self.split_dir = split_dir
        self.files = {}
        self.ini = {}
        for role in SPLIT_ROLES:
            path = os.path.join(split_dir, role + ".ini")
            if not os.path.isfile(path):
                raise TestFailure("%s is missing (SPEC §1: config/split/"
                                  "{basket,discount,ordering}.ini)" % path)
            self.files[role] = path
            self.ini[role] = read_ini(path)
        self.grpc_ports = {r: free_port() for r in SPLIT_ROLES}
        self.http_ports = {r: (free_port() if pin else None) for r in SPLIT_ROLES}
        self.procs = {}
        extra = extra or {}
        for role in SPLIT_ROLES:
            sets = self._overrides(role) + list(common) + list(extra.get(role, ()))
            self.procs[role] = PinnedServer(
                exe, http_port=self.http_ports[role], name=role,
                config=self.files[role],
                grpc_listen="127.0.0.1:%d" % self.grpc_ports[role], extra=sets)
            # The split files turn the access keys on (issue 8): REST
            # writes carry http.api_key (Server.request), admin RPCs the
            # metadata of discount_grpc_metadata().
            self.procs[role].api_key = self.ini[role].get("http.api_key",
                                                          (None, 0))[0]

    def _overrides(self, role):
        sets = []
        for key, (value, line) in sorted(self.ini[role].items()):
            where = "%s:%d (%s = %s)" % (self.files[role], line, key, value)
            if key in ("node.data_dir", "http.listen", "grpc.listen"):
                continue  # Server/PinnedServer set these
            if key == "events.broker":
                if value:
                    sets.append("events.broker=" + self.broker_url)
            elif key.startswith("remote."):
                target = key.split(".", 1)[1]
                if not value:
                    continue
                if target not in self.grpc_ports or not value.startswith("grpc://"):
                    raise TestFailure("%s: the test cannot override this remote"
                                      % where)
                sets.append("%s=grpc://127.0.0.1:%d" % (key, self.grpc_ports[target]))
            elif key == "nng.listen":
                if value.startswith("ipc://"):
                    sets.append("nng.listen=ipc://" + os.path.join(
                        tempdir("monoshop-nng-"), role + ".ipc"))
                elif value:
                    sets.append("nng.listen=tcp://127.0.0.1:%d" % free_port())
            elif _PORT_IN_VALUE.search(value) or "127.0.0.1" in value \
                    or "localhost" in value:
                raise TestFailure("%s names an address the test does not know how"
                                  " to override" % where)
        return sets

    # -- processes -------------------------------------------------------
    @property
    def basket(self):
        return self.procs["basket"]

    @property
    def discount(self):
        return self.procs["discount"]

    @property
    def ordering(self):
        return self.procs["ordering"]

    def discount_grpc(self):
        return "127.0.0.1:%d" % self.grpc_ports["discount"]

    def start(self, order=("discount", "ordering", "basket"), timeout=20):
        """Start the processes in |order|; each may answer /health 503 while
        a later one is missing. Then wait until all three are Healthy."""
        for role in order:
            p = self.procs[role]
            p.start(timeout=timeout, health=None, want_grpc=(role == "discount"))
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout=30):
        for role in SPLIT_ROLES:
            p = self.procs[role]
            wait_until(lambda p=p: p.get("/health").status == 200, timeout,
                       "%s's /health 200" % role, interval=0.2)

    def discount_grpc_metadata(self):
        """The gRPC metadata Discount's admin RPCs need (grpc.api_key of
        discount.ini), or ()."""
        key = self.ini["discount"].get("grpc.api_key", (None, 0))[0]
        return (("x-api-key", key),) if key else ()

    def endpoints(self):
        return {"basket": self.basket.endpoint(),
                "ordering": self.ordering.endpoint(),
                "discount_grpc": self.discount_grpc(),
                "discount_grpc_metadata": self.discount_grpc_metadata()}

    def stop(self, timeout=20):
        """SIGTERM each running process (exit 0 expected), Basket first."""
        for role in ("basket", "ordering", "discount"):
            p = self.procs[role]
            if p.alive():
                p.stop(timeout=timeout)

    def integrity_check(self):
        for role in SPLIT_ROLES:
            integrity_check(self.procs[role].data_dir)


def metric_samples(text, name):
    """[(labels, value)] of the samples of metric |name| in Prometheus text
    |text| (labels as the raw '{...}' string, '' when none)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and m.group(1) == name:
            try:
                out.append((m.group(2) or "", float(m.group(3))))
            except ValueError:
                raise TestFailure("metric %s: not a number in %r" % (name, line))
    return out


def metric_sum(text, name):
    """Sum of every sample of |name| (None when it has no sample)."""
    s = metric_samples(text, name)
    return sum(v for _, v in s) if s else None


def trace_ids(text):
    """Every trace id of the 'trace=<32 hex>' prefixes in log |text|."""
    return set(TRACE_RE.findall(text))


def lines_with(text, needle):
    return [ln for ln in text.splitlines() if needle in ln]


def pending_outbox_count(srv):
    """Outbox rows of |srv|'s basket.db not yet marked sent."""
    return sql(srv.db("basket"),
               "SELECT count(*) FROM outbox WHERE sent_ms IS NULL")[0][0]


def connect_refused(port, timeout=1.0):
    """True when a TCP connect to 127.0.0.1:|port| is refused now; False
    when it is accepted (the socket is closed at once)."""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except (ConnectionRefusedError, ConnectionResetError):
        # A reset is a connect that raced the listener's close: the
        # connection was not taken either.
        return True
    finally:
        s.close()


# -- nng (issue 6) -----------------------------------------------------------
# Processes that talk over nng only (no broker): a listener with nng.listen
# on a port or IPC path fixed in advance, peers pointing remote.* and
# events.broker at it.

NNG_LISTEN_RE = re.compile(r"nng: listening on (\S+)")


def nng_listening(srv, timeout=10):
    """Wait for |srv|'s log line 'nng: listening on URL'; returns the URL."""
    def pred():
        m = NNG_LISTEN_RE.search(srv.log())
        if m:
            return m.group(1)
        if not srv.alive():
            raise TestFailure("%s exited before its nng listener was up; log:\n%s"
                              % (srv.name, tail(srv.log())))
        return None
    return wait_until(pred, timeout, "%s's log line 'nng: listening on URL'"
                      % srv.name)


def health_entry(srv, name):
    """(HTTP status, overall status, entry |name|) of |srv|'s GET /health."""
    r = srv.get("/health")
    h = r.json if isinstance(r.json, dict) else {}
    return r.status, h.get("status"), (h.get("entries") or {}).get(name)
