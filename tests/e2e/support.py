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
                 name="monoshop"):
        self.exe = exe
        self.work = tempdir()
        self.data_dir = data_dir or os.path.join(self.work, "data")
        self.extra = list(extra)
        self.env = env if env is not None else clean_env()
        self.config = config
        self.name = name
        self.proc = None
        self.port = None
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
              "--set", "grpc.listen=127.0.0.1:0"]
        for x in self.extra:
            a += ["--set", x]
        return a

    def start(self, extra=None, timeout=10):
        """Start (or restart) the binary, learn its port from the log and wait
        for GET /health to answer 200."""
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
        if self not in _servers:
            _servers.append(self)

        def port_logged():
            m = LISTEN_RE.search(self.log())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise TestFailure("%s exited with status %s before listening;"
                                  " log:\n%s" % (self.name, self.proc.returncode,
                                                 self.log()))
            return None

        self.port = wait_until(port_logged, timeout,
                               "the log line 'http: listening on 127.0.0.1:PORT'")

        def healthy():
            if self.proc.poll() is not None:
                raise TestFailure("%s exited with status %s; log:\n%s"
                                  % (self.name, self.proc.returncode, self.log()))
            return self.get("/health").status == 200

        wait_until(healthy, timeout, "GET /health to answer 200")
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
