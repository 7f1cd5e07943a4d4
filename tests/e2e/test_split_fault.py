# SPDX-License-Identifier: MIT
"""The fault ledger of the three-process deployment (SPEC §5; issue 5).

config/split/*.ini as three processes (every fixed port and the broker
overridden with --set: free loopback ports pinned for the whole test so
restarts come back on them, temporary data directories, a private RabbitMQ
from tests/support/rabbitmq.py). A bounded stream of checkouts (CHECKOUTS
from THREADS threads, paced over about STREAM_SECONDS, never longer than
STREAM_LIMIT; each: store a basket for a unique user, check it out) runs
while, in turn:

1. Ordering is SIGKILLed and, after a few more checkouts, restarted;
2. the broker is restarted (same port and data);
3. Basket is SIGKILLed right after a commit (the moment a new row appears
   in its outbox, while a burst of BURST checkouts released at once is
   being answered) and restarted on the same data directory and ports;
4. Discount is SIGKILLed (stores answer 503, each in under a second: the
   circuit is open) and restarted on the same port.

Clients retry a store that got 503 or a refused connection, a bounded
number of times; a checkout whose connection was refused never reached
Basket and is retried too. A checkout answered 200 is committed; one whose
connection broke after it was sent is indeterminate. At the end, within a
deadline: every committed checkout is exactly one order; no user has two
orders; an indeterminate one is one order, or none with its basket still
there; a refused one made no order; PRAGMA integrity_check is ok on every
database of every process. The ledger is printed either way.

Needs Debian's rabbitmq-server and python3-pika.

Usage: /usr/bin/python3 test_split_fault.py PATH/TO/monoshop
"""

import collections
import http.client
import os
import sqlite3
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (MT_ENDPOINT, MT_ERROR, SplitDeployment,  # noqa: E402
                     TestFailure, amqp_queue_count, check, check_eq,
                     exe_from_argv, pending_outbox_count, run_with_broker, say,
                     start_broker, step, wait_queue_drained, wait_until)
from test_story import IPHONE, checkout_dto  # noqa: E402

CHECKOUTS = 150
THREADS = 3
STREAM_SECONDS = 42.0    # pacing target
STREAM_LIMIT = 60.0      # hard bound: no new checkout after this
RETRY_SECONDS = 25.0     # how long a store / an unsent checkout is retried
RETRY_PAUSE = 0.2
FAST_503 = 1.0           # a 503 while the circuit is open: under this
# (seconds into the stream, what); each waits for the previous one to end
FAULTS = ((5.0, "ordering"), (12.0, "broker"), (24.0, "basket"), (31.0, "discount"))
PREFIX = "sf-"
BURST = 12               # checkouts released at once when Basket is killed


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = []             # users whose checkout was attempted
        self.committed = set()     # checkout answered 200
        self.refused = {}          # user -> "status body" (answered, not 200)
        self.indeterminate = {}    # user -> exception (sent, no answer)
        self.unsent = {}           # user -> exception (never connected)
        self.store_failed = {}     # user -> last status/exception
        self.store_503 = []        # (seconds it took, t into the stream)
        self.store_retries = 0
        self.checkout_retries = 0
        self.inflight = 0
        self.latency = []

    def add(self, attr, user, detail):
        with self.lock:
            getattr(self, attr)[user] = detail


def cart(user):
    return {"cart": {"userName": user, "items": [
        {"quantity": 1, "color": "Red", "price": 500, "productId": IPHONE,
         "productName": "IPhone X"}]}}


def track(ledger, fn):
    with ledger.lock:
        ledger.inflight += 1
    try:
        return fn()
    finally:
        with ledger.lock:
            ledger.inflight -= 1


def store(basket, ledger, user, t0, abort):
    """Store |user|'s basket, retrying 503s and refused/broken connections
    (storing is idempotent) for at most RETRY_SECONDS. True when stored."""
    deadline = time.monotonic() + RETRY_SECONDS
    last = None
    while True:
        s = time.monotonic()
        try:
            r = track(ledger, lambda: basket.post("/basket", cart(user), timeout=10))
        except (OSError, http.client.HTTPException) as e:
            last = repr(e)
        else:
            secs = time.monotonic() - s
            if r.status == 201:
                return True
            last = "%d %s" % (r.status, r.text[:160])
            if r.status == 503:
                with ledger.lock:
                    ledger.store_503.append((secs, s - t0))
            else:
                ledger.add("store_failed", user, last)
                return False
        if time.monotonic() > deadline or abort.is_set():
            ledger.add("store_failed", user, last)
            return False
        with ledger.lock:
            ledger.store_retries += 1
        abort.wait(RETRY_PAUSE)


def checkout(basket, ledger, user, abort):
    with ledger.lock:
        ledger.sent.append(user)
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        s = time.monotonic()
        try:
            r = track(ledger, lambda: basket.post("/basket/checkout",
                                                  checkout_dto(user), timeout=15))
        except ConnectionRefusedError as e:
            # never reached Basket (it is down): certainly not processed
            if time.monotonic() > deadline or abort.is_set():
                ledger.add("unsent", user, repr(e))
                return
            with ledger.lock:
                ledger.checkout_retries += 1
            abort.wait(RETRY_PAUSE)
            continue
        except (OSError, http.client.HTTPException) as e:
            ledger.add("indeterminate", user, repr(e))
            return
        with ledger.lock:
            ledger.latency.append(time.monotonic() - s)
        if r.status == 200:
            with ledger.lock:
                ledger.committed.add(user)
        else:
            ledger.add("refused", user, "%d %s" % (r.status, r.text[:160]))
        return


def worker(dep, ledger, t0, tid, users, interval, abort):
    for i, user in enumerate(users):
        target = t0 + (i + tid / THREADS) * interval
        now = time.monotonic()
        if now - t0 > STREAM_LIMIT or abort.is_set():
            return
        if target > now and abort.wait(target - now):
            return
        if store(dep.basket, ledger, user, t0, abort):
            checkout(dep.basket, ledger, user, abort)


class Chaos:
    """The faults, one after the other, from a thread of their own."""

    def __init__(self, dep, broker, ledger, t0, stop):
        self.dep, self.rmq, self.ledger = dep, broker, ledger
        self.t0, self.stop = t0, stop
        self.done = 0
        self.burst = []
        self.log = []
        self.error = None

    def note(self, msg):
        self.log.append("t=%5.1fs %s" % (time.monotonic() - self.t0, msg))
        say("   chaos: " + self.log[-1])

    def wait_for(self, pred, timeout):
        """Poll |pred| until true or |timeout|; False when the stream ended."""
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end or self.stop.is_set():
                return pred()
            self.stop.wait(0.01)
        return True

    def run(self):
        try:
            for at, what in FAULTS:
                while time.monotonic() - self.t0 < at:
                    if self.stop.wait(0.05):
                        self.note("stream ended before the %s fault" % what)
                        return
                getattr(self, what)()
                self.done += 1
        except Exception as e:  # reported by the main thread
            self.error = e
            self.note("FAILED: %r" % e)

    def committed(self):
        with self.ledger.lock:
            return len(self.ledger.committed)

    def ordering(self):
        p = self.dep.ordering
        c0 = self.committed()
        p.kill()
        self.note("Ordering SIGKILLed (%d checkouts committed so far)" % c0)
        self.wait_for(lambda: self.committed() >= c0 + 4, 5)
        s = time.monotonic()
        p.start(timeout=20, health=None)
        self.note("Ordering restarted after %d more commits, in %.1fs, same port %d"
                  % (self.committed() - c0, time.monotonic() - s, p.port))

    def broker(self):
        s = time.monotonic()
        self.rmq.restart()
        self.note("broker stopped and started again in %.1fs"
                  % (time.monotonic() - s))

    def basket(self):
        """A burst of BURST checkouts released at once by a barrier (so that
        several are in flight), and Basket SIGKILLed the moment the first
        new outbox row is committed."""
        p = self.dep.basket
        users = ["%sburst-%02d" % (PREFIX, i) for i in range(BURST)]
        for u in users:
            if not store(p, self.ledger, u, self.t0, self.stop):
                raise TestFailure("could not store the basket of %s" % u)
        gate = threading.Barrier(BURST + 1)

        def go(u):
            try:
                gate.wait(10)
            except threading.BrokenBarrierError:
                return
            checkout(p, self.ledger, u, self.stop)
        self.burst = [threading.Thread(target=go, args=(u,), daemon=True)
                      for u in users]
        for th in self.burst:
            th.start()
        conn = sqlite3.connect(p.db("basket"), timeout=5)
        try:
            def last_seq():
                return conn.execute("SELECT coalesce(max(seq), 0) FROM outbox"
                                    ).fetchone()[0]
            seq0 = last_seq()
            gate.wait(10)
            end = time.monotonic() + 10
            while last_seq() == seq0:  # a new checkout commits
                if time.monotonic() > end or self.stop.is_set():
                    raise TestFailure("no checkout committed within 10 s to"
                                      " kill Basket after")
                if time.monotonic() > end - 8:
                    time.sleep(0.001)  # busy-poll only the first 2 s
            with self.ledger.lock:
                inflight = self.ledger.inflight
            p.kill()
        finally:
            conn.close()
        self.note("Basket SIGKILLed right after outbox row %d committed"
                  " (%d requests in flight, a burst of %d checkouts among them)"
                  % (seq0 + 1, inflight, BURST))
        port = p.port
        s = time.monotonic()
        p.start(timeout=20, health=None)
        if p.port != port:
            raise TestFailure("Basket came back on port %d, not %d" % (p.port, port))
        self.note("Basket restarted in %.1fs on the same data dir and port %d"
                  % (time.monotonic() - s, port))

    def discount(self):
        p = self.dep.discount
        with self.ledger.lock:
            n0 = len(self.ledger.store_503)
        p.kill()
        self.note("Discount SIGKILLed")
        self.wait_for(lambda: len(self.ledger.store_503) >= n0 + 6, 8)
        with self.ledger.lock:
            n = len(self.ledger.store_503) - n0
        s = time.monotonic()
        p.start(timeout=20, health=None, want_grpc=True)
        if p.grpc_port != self.dep.grpc_ports["discount"]:
            raise TestFailure("Discount came back on gRPC port %s" % p.grpc_port)
        self.note("Discount restarted (after %d stores answered 503) in %.1fs"
                  % (n, time.monotonic() - s))


def orders_by_user(ordering):
    """{orderName: count} of the orders of this test's users."""
    r = ordering.get("/orders?pageIndex=0&pageSize=1000", timeout=30)
    if r.status != 200 or not isinstance(r.json, dict):
        raise TestFailure("GET /orders page: %r" % r)
    page = r.json["orders"]
    if page.get("count", 0) > 1000:
        raise TestFailure("more than 1000 orders: %r" % page.get("count"))
    return collections.Counter(o["orderName"] for o in page["data"]
                               if o["orderName"].startswith(PREFIX))


def print_ledger(ledger, found, stream_secs):
    committed = ledger.committed
    missing = sorted(u for u in committed if found.get(u, 0) == 0)
    dups = sorted((u, n) for u, n in found.items() if n > 1)
    ind_order = sorted(u for u in ledger.indeterminate if found.get(u, 0) >= 1)
    unexpected = sorted(u for u in found if u not in committed
                        and u not in ledger.indeterminate)
    lat = sorted(ledger.latency)
    p = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0.0)
    say("   LEDGER: sent %d / committed %d / indeterminate %d (%d became orders)"
        " / orders found %d for %d users / duplicates %d / missing %d"
        % (len(ledger.sent), len(committed), len(ledger.indeterminate),
           len(ind_order), sum(found.values()), len(found), len(dups), len(missing)))
    say("           refused %d, unsent (Basket down) %d, store failed %d,"
        " unexpected orders %d; retries: %d stores, %d checkouts; 503s %d;"
        " stream %.1fs; checkout latency p50 %.3fs p99 %.3fs max %.3fs"
        % (len(ledger.refused), len(ledger.unsent), len(ledger.store_failed),
           len(unexpected), ledger.store_retries, ledger.checkout_retries,
           len(ledger.store_503), stream_secs, p(0.5), p(0.99),
           lat[-1] if lat else 0.0))
    for name, d in (("refused", ledger.refused), ("indeterminate", ledger.indeterminate),
                    ("unsent", ledger.unsent), ("store failed", ledger.store_failed)):
        if d:
            say("   %s: %r" % (name, dict(sorted(d.items())[:8])))
    if missing:
        say("   missing: %r" % missing[:20])
    if dups:
        say("   duplicates: %r" % dups[:20])
    if unexpected:
        say("   unexpected: %r" % unexpected[:20])
    return missing, dups, unexpected


def main():
    exe = exe_from_argv()
    broker = start_broker()
    dep = SplitDeployment(exe, broker.url, pin=True,
                          common=["events.reconnect_max_ms=1000"])

    step("1. three processes from config/split/*.ini on pinned free ports")
    dep.start()
    say("   ports: basket http %d, ordering http %d, discount grpc %d"
        % (dep.basket.port, dep.ordering.port, dep.grpc_ports["discount"]))

    step("2. %d checkouts from %d threads over ~%.0fs; faults at %s"
         % (CHECKOUTS, THREADS, STREAM_SECONDS,
            ", ".join("%.0fs %s" % f for f in FAULTS)))
    ledger = Ledger()
    per = CHECKOUTS // THREADS
    interval = STREAM_SECONDS / per
    users = [["%s%d-%03d" % (PREFIX, t, i) for i in range(per)] for t in range(THREADS)]
    abort = threading.Event()
    stop = threading.Event()
    t0 = time.monotonic()
    chaos = Chaos(dep, broker, ledger, t0, stop)
    ct = threading.Thread(target=chaos.run, daemon=True)
    ths = [threading.Thread(target=worker, daemon=True,
                            args=(dep, ledger, t0, t, users[t], interval, abort))
           for t in range(THREADS)]
    try:
        for th in [ct] + ths:
            th.start()
        for th in ths:
            th.join()
        stream_secs = time.monotonic() - t0
        stop.set()
        ct.join(60)
        for th in chaos.burst:
            th.join(30)
    finally:
        abort.set()
        stop.set()
        for th in [ct] + ths + chaos.burst:
            if th.is_alive():
                th.join(30)
    if chaos.error:
        raise TestFailure("a fault could not be injected: %r" % chaos.error)
    check_eq(chaos.done, len(FAULTS), "faults injected and recovered during the stream")
    say("   stream done after %.1fs: %d sent, %d committed"
        % (stream_secs, len(ledger.sent), len(ledger.committed)))

    step("3. while Discount was down, every 503 came fast (circuit open)")
    slow = [(round(s, 3), round(t, 1)) for s, t in ledger.store_503 if s >= FAST_503]
    say("   503s: %d, slowest %.3fs" % (len(ledger.store_503),
                                          max([s for s, _ in ledger.store_503] or [0])))
    check(ledger.store_503, "stores answered 503 while Discount was down")
    check_eq(slow, [], "503s that took %.1fs or more (seconds, t)" % FAST_503)

    step("4. every committed checkout becomes exactly one order")
    for p in (dep.basket, dep.ordering, dep.discount):
        check(p.alive(), "%s runs" % p.name)
    dep.wait_healthy(60)
    found = {}

    def all_there():
        nonlocal found
        found = orders_by_user(dep.ordering)
        return all(found.get(u, 0) >= 1 for u in ledger.committed)
    try:
        wait_until(all_there, 90, "an order for each of the %d committed checkouts"
                   % len(ledger.committed), interval=0.5)
        # let late duplicates (redeliveries, republished events) arrive
        wait_until(lambda: pending_outbox_count(dep.basket) == 0, 30,
                   "Basket's outbox empty", interval=0.2)
        wait_queue_drained(broker, MT_ENDPOINT, 30)
    except TestFailure:
        print_ledger(ledger, found, stream_secs)
        say("   Basket outbox pending: %s; %s ready: %s"
            % (pending_outbox_count(dep.basket), MT_ENDPOINT,
               amqp_queue_count(broker, MT_ENDPOINT)))
        raise
    found = orders_by_user(dep.ordering)
    missing, dups, unexpected = print_ledger(ledger, found, stream_secs)
    check(len(ledger.sent) >= CHECKOUTS * 0.8,
          "at least 80%% of the %d checkouts were sent (%d)" % (CHECKOUTS, len(ledger.sent)))
    check_eq(ledger.store_failed, {}, "stores that failed after %.0fs of retries"
             % RETRY_SECONDS)
    check_eq(missing, [], "committed checkouts without an order (lost)")
    check_eq(dups, [], "users with more than one order (doubled)")
    check_eq(unexpected, [], "orders of checkouts that were refused or never sent")
    bad = []
    for u in sorted(ledger.indeterminate):
        if found.get(u, 0) == 0:
            st = dep.basket.get("/basket/" + u).status
            if st != 200:
                bad.append((u, st))
    check_eq(bad, [], "indeterminate checkouts with neither an order nor their"
             " basket (user, GET /basket status)")
    for u in sorted(ledger.unsent):
        check_eq(dep.basket.get("/basket/" + u).status, 200,
                 "the basket of %s (checkout never sent) is still there" % u)
    n = amqp_queue_count(broker, MT_ERROR)
    check(not n, "nothing in %s (%r)" % (MT_ERROR, n))

    step("5. SIGTERM the three -> exit 0; PRAGMA integrity_check on every database")
    dep.stop()
    dep.integrity_check()
    broker.close()


if __name__ == "__main__":
    run_with_broker(main)
