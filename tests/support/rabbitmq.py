# SPDX-License-Identifier: MIT
"""A throw-away RabbitMQ broker for the tests (SPEC §6, issue 4).

start() runs Debian's rabbitmq-server (3.10) as a private node:

* free loopback ports for AMQP, Erlang distribution and epmd
  (RABBITMQ_NODE_PORT, RABBITMQ_DIST_PORT, ERL_EPMD_PORT), bound to
  127.0.0.1 only, and a node name of its own (monoshop-test-<pid>-<n>@localhost),
  so that it never meets another broker or the system's;
* a temporary base directory holding everything it writes (Mnesia, logs,
  config, enabled-plugins file = no plugins, Erlang cookie via HOME), owned
  by the 'rabbitmq' user when we are root (the server then runs as that
  user, as Debian's /usr/sbin/rabbitmq-server wrapper would arrange);
* ready when a pika BlockingConnection as guest succeeds (deadline 60 s).

The returned Broker has .url (amqp://guest:guest@127.0.0.1:PORT/), .port,
.node, .base, stop(), kill() (SIGKILL: a crash), restart() (stop and start
again on the same port and data directory: durable queues and persistent
messages survive) and log_tail(). Every broker is stopped and its directory
removed at exit, on SIGTERM/SIGINT/SIGHUP too (atexit + signal handlers).

As a script (manual use): `/usr/bin/python3 rabbitmq.py` starts a broker,
prints its URL and serves until Ctrl-C; `rabbitmq.py --selftest` starts,
connects, publishes a persistent message, restarts, finds it, stops.

Needs Debian's rabbitmq-server and python3-pika (for /usr/bin/python3).
"""

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

_brokers = []
_counter = 0


class BrokerError(Exception):
    """The broker did not start or stop as it should; the message has the
    log tail."""


def _log(*args):
    print("[rabbitmq]", *args, flush=True)


def _free_ports(n):
    """|n| distinct loopback TCP ports that were free a moment ago."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _epmd():
    p = shutil.which("epmd")
    if p:
        return p
    for root, _dirs, files in os.walk("/usr/lib/erlang"):
        if "epmd" in files:
            return os.path.join(root, "epmd")
    return "epmd"


class Broker:
    def __init__(self):
        global _counter
        _counter += 1
        if not os.access(SERVER, os.X_OK):
            raise BrokerError("%s not found: apt-get install -y rabbitmq-server"
                              % SERVER)
        self.port, self.dist_port, self.epmd_port = _free_ports(3)
        self.node = "monoshop-test-%d-%d@localhost" % (os.getpid(), _counter)
        self.url = "amqp://guest:guest@127.0.0.1:%d/" % self.port
        self.base = tempfile.mkdtemp(prefix="monoshop-rabbitmq-")
        self.proc = None
        self.boot_seconds = None
        self._starts = 0
        self._out = None
        self._user = None
        self._epmd = None
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("rabbitmq")
            except KeyError:
                self._user = None  # no such user: run as root
        for sub in ("mnesia", "log", "home"):
            os.mkdir(os.path.join(self.base, sub))
        self._write(os.path.join(self.base, "rabbitmq.conf"), "\n".join([
            "listeners.tcp.default = 127.0.0.1:%d" % self.port,
            "loopback_users.guest = true",
            "log.file.level = info",
            "log.console = false",  # stdout keeps only the boot banner/crashes
            # a test machine may have little free disk; do not block
            # publishers because of that
            "disk_free_limit.absolute = 1MB",
            "",
        ]))
        self._write(os.path.join(self.base, "enabled_plugins"), "[].\n")
        self._write(os.path.join(self.base, "rabbitmq-env.conf"), "")
        if self._user:
            for root, dirs, files in os.walk(self.base):
                for n in [root] + [os.path.join(root, x) for x in dirs + files]:
                    os.chown(n, self._user.pw_uid, self._user.pw_gid)
        _brokers.append(self)
        self._watchdog = _Watchdog(self)

    @staticmethod
    def _write(path, text):
        with open(path, "w") as f:
            f.write(text)

    def env(self):
        """The environment of the server (and of rabbitmqctl/epmd)."""
        b = self.base
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RABBITMQ_") and not k.startswith("ERL_")}
        env.update({
            "HOME": os.path.join(b, "home"),  # .erlang.cookie goes there
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONF_ENV_FILE": os.path.join(b, "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": os.path.join(b, "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(b, "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(b, "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": os.path.join(b, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(b, "log"),
            "RABBITMQ_PID_FILE": os.path.join(b, "rabbitmq.pid"),
        })
        if self._user:
            env["USER"] = env["LOGNAME"] = "rabbitmq"
        return env

    # -- life ------------------------------------------------------------
    def start(self, timeout=BOOT_TIMEOUT):
        """Start the node and wait until AMQP accepts guest (bounded)."""
        if self.proc is not None and self.proc.poll() is None:
            raise BrokerError("broker %s already running" % self.node)
        if not _port_free(self.port):
            # restart: the old listener may linger a moment
            deadline = time.monotonic() + 10
            while not _port_free(self.port) and time.monotonic() < deadline:
                time.sleep(0.1)
        self._start_epmd()
        self._starts += 1
        out_path = os.path.join(self.base, "log", "console.%d.log" % self._starts)
        self._out = open(out_path, "wb")
        if self._user:
            os.chown(out_path, self._user.pw_uid, self._user.pw_gid)
        kw = {}
        if self._user:
            kw = {"user": self._user.pw_uid, "group": self._user.pw_gid,
                  "extra_groups": []}
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [SERVER], env=self.env(), cwd=self.base, stdin=subprocess.DEVNULL,
            stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True, **kw)
        self._watchdog.tell("pgid %d" % self.proc.pid)
        _log("starting %s on 127.0.0.1:%d (dist %d, epmd %d) in %s"
             % (self.node, self.port, self.dist_port, self.epmd_port, self.base))
        deadline = t0 + timeout
        last = None
        while True:
            if self.proc.poll() is not None:
                raise BrokerError("rabbitmq-server exited with %s while booting;"
                                  " log tail:\n%s" % (self.proc.returncode,
                                                      self.log_tail()))
            try:
                c = self.connect(timeout=2)
                c.close()
                break
            except Exception as e:  # not up yet
                last = e
            if time.monotonic() >= deadline:
                tail = self.log_tail(console=True)
                self._terminate(kill=True)
                raise BrokerError("rabbitmq-server did not accept AMQP on port %d"
                                  " within %.0fs (last: %r); log tail:\n%s"
                                  % (self.port, timeout, last, tail))
            time.sleep(0.2)
        self.boot_seconds = time.monotonic() - t0
        _log("broker %s up at %s after %.1fs" % (self.node, self.url,
                                                  self.boot_seconds))
        return self

    def _start_epmd(self):
        """Our own epmd on the private port, as our child (the VM would
        otherwise start a daemon that outlives everything)."""
        if self._epmd is not None and self._epmd.poll() is None:
            return
        self._epmd = subprocess.Popen(
            [_epmd(), "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            env=self.env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        self._watchdog.tell("epmd %d" % self._epmd.pid)
        deadline = time.monotonic() + 10
        while _port_free(self.epmd_port):
            if self._epmd.poll() is not None or time.monotonic() > deadline:
                raise BrokerError("epmd did not listen on port %d (status %s)"
                                  % (self.epmd_port, self._epmd.poll()))
            time.sleep(0.02)

    def connect(self, timeout=5, heartbeat=None):
        """A pika BlockingConnection to this broker as guest."""
        import pika
        params = pika.ConnectionParameters(
            host="127.0.0.1", port=self.port,
            credentials=pika.PlainCredentials("guest", "guest"),
            socket_timeout=timeout, blocked_connection_timeout=30,
            connection_attempts=1, heartbeat=heartbeat,
            stack_timeout=timeout + 5)
        return pika.BlockingConnection(params)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _terminate(self, kill=False, timeout=STOP_TIMEOUT):
        """SIGTERM (graceful: the script's trap stops the node) or SIGKILL
        the whole process group; wait for the exit. Returns seconds."""
        t0 = time.monotonic()
        if self.proc is None:
            return 0.0
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _log("broker %s did not stop within %.0fs of SIGTERM: SIGKILL"
                     % (self.node, timeout))
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        # the VM may have left children (erl_child_setup, inet_gethost) in
        # the group: make sure nothing of it is left
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self._out:
            self._out.close()
            self._out = None
        return time.monotonic() - t0

    def stop(self):
        """Graceful stop (SIGTERM to the group; SIGKILL after 30 s)."""
        if not self.running():
            return
        secs = self._terminate()
        _log("broker %s stopped (status %s) in %.1fs"
             % (self.node, self.proc.returncode, secs))

    def kill(self):
        """SIGKILL: the broker crashes (unconfirmed data may be lost)."""
        if not self.running():
            return
        self._terminate(kill=True)
        _log("broker %s killed" % self.node)

    def restart(self, kill=False, down_seconds=0.0):
        """Stop (or, with |kill|, SIGKILL) and start again on the same port,
        node name and data directory; optionally stay down |down_seconds|."""
        if kill:
            self.kill()
        else:
            self.stop()
        if down_seconds:
            time.sleep(down_seconds)
        return self.start()

    def close(self):
        """Stop the node and epmd, remove the directory (idempotent)."""
        try:
            self._terminate(kill=False, timeout=15)
        finally:
            if self._epmd is not None:
                if self._epmd.poll() is None:
                    self._epmd.terminate()
                try:
                    self._epmd.wait(10)
                except subprocess.TimeoutExpired:
                    self._epmd.kill()
                    self._epmd.wait(10)
                self._epmd = None
            if self.base and os.path.isdir(self.base):
                if os.environ.get("E2E_KEEP"):
                    _log("kept broker directory %s" % self.base)
                else:
                    shutil.rmtree(self.base, ignore_errors=True)
            if self in _brokers:
                _brokers.remove(self)
            self._watchdog.done()

    # -- diagnostics -----------------------------------------------------
    def log_tail(self, n=40, console=None):
        """The last lines of the node's log and (|console|; default: when
        the node is not running) of the latest start's console output (boot
        banner, early errors)."""
        if console is None:
            console = not self.running()
        parts = []
        logdir = os.path.join(self.base, "log")
        try:
            names = sorted(os.listdir(logdir))
        except OSError:
            names = []
        for name in names:
            if name.startswith("console.") and (
                    not console or name != "console.%d.log" % self._starts):
                continue
            if name.endswith("_upgrade.log"):
                continue
            try:
                with open(os.path.join(logdir, name), "rb") as f:
                    lines = f.read().decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            parts.append("== %s ==\n%s" % (name, "\n".join(lines[-n:])))
        return "\n".join(parts) or "(no log)"

    def ctl(self, *args, timeout=30):
        """rabbitmqctl -n NODE ARGS... as the broker's user; (status, output)."""
        kw = {}
        if self._user:
            kw = {"user": self._user.pw_uid, "group": self._user.pw_gid,
                  "extra_groups": []}
        p = subprocess.run(["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", self.node]
                           + list(args), env=self.env(), cwd=self.base,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, **kw)
        return p.returncode, p.stdout.decode("utf-8", "replace")


class _Watchdog:
    """A small process in a session of its own that outlives us: if this
    process dies without closing the broker (SIGKILL, e.g. a test timeout),
    the pipe to the watchdog closes and it kills the broker's process
    group and epmd and removes the directory."""

    def __init__(self, broker):
        self.proc = None
        try:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--watchdog",
                 broker.base, _epmd(), str(broker.epmd_port)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
                env=broker.env())
        except OSError as e:
            _log("no watchdog (%r): a SIGKILLed test may leave a broker" % e)

    def tell(self, line):
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.stdin.write((line + "\n").encode())
                self.proc.stdin.flush()
            except OSError:
                pass

    def done(self):
        if self.proc:
            self.tell("done")
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self.proc = None


def _watchdog_main(base, epmd, epmd_port):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    pgid = epmd_pid = None
    for line in sys.stdin:
        w = line.split()
        if w[:1] == ["pgid"]:
            pgid = int(w[1])
        elif w[:1] == ["epmd"]:
            epmd_pid = int(w[1])
        elif w[:1] == ["done"]:
            return
    # EOF without "done": the owner died
    for pg in (pgid, epmd_pid):
        if pg:
            try:
                os.killpg(pg, signal.SIGKILL)
            except OSError:
                pass
    try:
        subprocess.run([epmd, "-port", epmd_port, "-kill"], timeout=10,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except Exception:
        pass
    if not os.environ.get("E2E_KEEP"):
        shutil.rmtree(base, ignore_errors=True)


def start(timeout=BOOT_TIMEOUT):
    """Start a private broker (see the module doc) and return it."""
    b = Broker()
    try:
        return b.start(timeout)
    except BaseException:
        b.close()
        raise


def _cleanup():
    for b in list(_brokers):
        try:
            b.close()
        except Exception as e:  # best effort at exit
            print("[rabbitmq] cleanup of %s failed: %r" % (b.node, e),
                  file=sys.stderr)


atexit.register(_cleanup)


def _install_signal_handlers():
    """Clean up on SIGTERM/SIGINT/SIGHUP as well, then re-raise the
    default behaviour. A handler that the program installed already (e.g.
    the e2e runner's, turning SIGTERM into a test failure) is kept: its
    exception unwinds to the atexit hook."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        cur = signal.getsignal(sig)
        if cur not in (signal.SIG_DFL, None, signal.default_int_handler):
            continue

        def handler(signum, frame, _sig=sig):
            _cleanup()
            signal.signal(_sig, signal.SIG_DFL)
            os.kill(os.getpid(), _sig)
        signal.signal(sig, handler)


_install_signal_handlers()


def _selftest():
    import pika
    t0 = time.monotonic()
    b = start()
    c = b.connect()
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare("selftest", durable=True)
    ch.basic_publish("", "selftest", b"hello",
                     pika.BasicProperties(delivery_mode=2), mandatory=True)
    c.close()
    _log("published one persistent message; restarting")
    t1 = time.monotonic()
    b.restart()
    _log("restart took %.1fs (same port %d)" % (time.monotonic() - t1, b.port))
    c = b.connect()
    ch = c.channel()
    q = ch.queue_declare("selftest", durable=True, passive=True)
    n = q.method.message_count
    _, _, body = ch.basic_get("selftest", auto_ack=True)
    c.close()
    if n != 1 or body != b"hello":
        raise BrokerError("after a restart the queue held %d messages, body %r"
                          % (n, body))
    _log("the persistent message survived the restart")
    rc, out = b.ctl("status")
    _log("rabbitmqctl status -> %d (%d bytes)" % (rc, len(out)))
    b.close()
    _log("selftest passed in %.1fs" % (time.monotonic() - t0))


def main():
    if sys.argv[1:2] == ["--watchdog"]:
        _watchdog_main(*sys.argv[2:5])
        return
    if "--selftest" in sys.argv[1:]:
        _selftest()
        return
    b = start()
    print(b.url, flush=True)
    _log("serving; Ctrl-C stops it")
    try:
        while b.running():
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    b.close()


if __name__ == "__main__":
    main()
