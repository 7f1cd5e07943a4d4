# SPDX-License-Identifier: MIT
"""No checkout lost, none doubled, while the broker restarts (SPEC §5,
issue 4; reference/wire.md §4.9-4.10: a Jepsen-style ledger).

Basket+Discount and Ordering in two processes on a private broker
(tests/support/rabbitmq.py). A bounded stream of checkouts (CHECKOUTS
baskets stored and checked out by THREADS threads, paced over about
STREAM_SECONDS) runs while the broker is restarted twice: once gracefully
(SIGTERM) and once by SIGKILL, each time on the same port and data
directory. At the end, within a deadline:

* every checkout that answered 200 is exactly one order (orders counted by
  name: none missing, no duplicates), and no refused checkout made one;
* Basket's outbox is empty, Ordering's queue is drained, nothing went to
  the error queue;
* both processes exit 0 on SIGTERM and PRAGMA integrity_check is ok on
  every database.

The ledger (sent / ok / refused / indeterminate / orders found / missing /
duplicates) is printed either way.

Needs Debian's rabbitmq-server and python3-pika.

Usage: /usr/bin/python3 test_amqp_fault.py PATH/TO/monoshop
"""

import collections
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (MT_ENDPOINT, MT_ERROR, Server, TestFailure,  # noqa: E402
                     amqp_queue_count, check, check_eq, exe_from_argv,
                     integrity_check, run_with_broker, say, sql, start_broker,
                     step, wait_broker_health, wait_queue_drained, wait_until)
from test_story import IPHONE, checkout_dto  # noqa: E402

CHECKOUTS = 200
THREADS = 4
STREAM_SECONDS = 36.0   # pacing target
STREAM_LIMIT = 60.0     # hard bound: stop sending after this
RESTARTS = ((6.0, False), (20.0, True))  # (seconds into the stream, SIGKILL?)
PREFIX = "fault-"


def orders_by_prefix(srv):
    """{orderName: count} of every order whose name starts with PREFIX."""
    r = srv.get("/orders?pageIndex=0&pageSize=1000", timeout=30)
    if r.status != 200 or not isinstance(r.json, dict):
        raise TestFailure("GET /orders page: %r" % r)
    page = r.json["orders"]
    if page.get("count", 0) > 1000:
        raise TestFailure("more than 1000 orders: %r" % page.get("count"))
    c = collections.Counter(o["orderName"] for o in page["data"]
                            if o["orderName"].startswith(PREFIX))
    return c


def pending_outbox(srv):
    return sql(srv.db("basket"), "SELECT count(*) FROM outbox WHERE sent_ms IS NULL")[0][0]


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = []            # user names whose checkout was attempted
        self.ok = set()           # checkout answered 200
        self.refused = {}         # user -> status (checkout answered, not 200)
        self.indeterminate = {}   # user -> exception (no answer)
        self.store_failed = {}    # user -> status/exception (basket not stored)
        self.latency = []

    def record(self, user, kind, detail=None, secs=None):
        with self.lock:
            if kind == "ok":
                self.ok.add(user)
            elif kind == "refused":
                self.refused[user] = detail
            elif kind == "indeterminate":
                self.indeterminate[user] = detail
            elif kind == "store":
                self.store_failed[user] = detail
            if secs is not None:
                self.latency.append(secs)


def worker(basket, ledger, t0, tid, users, interval, stop_evt):
    for i, user in enumerate(users):
        target = t0 + i * interval + tid * interval / THREADS
        now = time.monotonic()
        if now - t0 > STREAM_LIMIT:
            return
        if target > now and stop_evt.wait(target - now):
            return
        if stop_evt.is_set():
            return
        cart = {"cart": {"userName": user, "items": [
            {"quantity": 1, "color": "Red", "price": 500, "productId": IPHONE,
             "productName": "IPhone X"}]}}
        try:
            r = basket.post("/basket", cart, timeout=15)
            if r.status != 201:
                ledger.record(user, "store", r.status)
                continue
        except Exception as e:
            ledger.record(user, "store", repr(e))
            continue
        with ledger.lock:
            ledger.sent.append(user)
        s = time.monotonic()
        try:
            r = basket.post("/basket/checkout", checkout_dto(user), timeout=15)
        except Exception as e:
            ledger.record(user, "indeterminate", repr(e))
            continue
        secs = time.monotonic() - s
        if r.status == 200:
            ledger.record(user, "ok", secs=secs)
        else:
            ledger.record(user, "refused", "%d %s" % (r.status, r.text[:200]), secs)


def chaos(broker, t0, stop_evt, log):
    for at, kill in RESTARTS:
        while time.monotonic() - t0 < at:
            if stop_evt.wait(0.1):
                return
        s = time.monotonic()
        try:
            broker.restart(kill=kill)
            log.append("t=%.1fs broker %s and started again in %.1fs"
                       % (s - t0, "SIGKILLed" if kill else "stopped (SIGTERM)",
                          time.monotonic() - s))
        except Exception as e:
            log.append("t=%.1fs broker restart failed: %r" % (s - t0, e))
            return


def sampler(basket, stop_evt, out):
    """Largest number of events waiting in Basket's outbox during the
    stream (evidence that the restarts caught events in flight)."""
    while not stop_evt.wait(0.2):
        try:
            out.append(pending_outbox(basket))
        except Exception:
            pass


def print_ledger(ledger, found, stream_secs):
    ok = ledger.ok
    missing = sorted(u for u in ok if found.get(u, 0) == 0)
    dups = sorted((u, n) for u, n in found.items() if n > 1)
    unexpected = sorted(u for u in found if u not in ok
                        and u not in ledger.indeterminate)
    recovered = sorted(u for u in found if u in ledger.indeterminate)
    lat = sorted(ledger.latency)
    p = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0.0)
    say("   ledger: sent %d, ok %d, refused %d, indeterminate %d, store failed %d;"
        " orders found %d (%d names), missing %d, duplicates %d, unexpected %d,"
        " recovered %d; stream %.1fs; checkout latency p50 %.3fs p99 %.3fs max %.3fs"
        % (len(ledger.sent), len(ok), len(ledger.refused), len(ledger.indeterminate),
           len(ledger.store_failed), sum(found.values()), len(found), len(missing),
           len(dups), len(unexpected), len(recovered), stream_secs, p(0.5), p(0.99),
           lat[-1] if lat else 0.0))
    if ledger.refused:
        say("   refused: %r" % dict(list(ledger.refused.items())[:10]))
    if ledger.indeterminate:
        say("   indeterminate: %r" % dict(list(ledger.indeterminate.items())[:10]))
    if ledger.store_failed:
        say("   store failed: %r" % dict(list(ledger.store_failed.items())[:10]))
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
    url = broker.url
    ordering = Server(exe, name="ordering", extra=[
        "node.modules=ordering", "events.broker=" + url])
    basket = Server(exe, name="basket-discount", extra=[
        "node.modules=basket discount", "events.broker=" + url])

    step("1. Ordering and Basket+Discount on the broker")
    ordering.start(timeout=20)
    basket.start(timeout=20)
    for s in (ordering, basket):
        wait_broker_health(s, True, 15)

    step("2. %d checkouts from %d threads over ~%.0fs; broker restarts at %s"
         % (CHECKOUTS, THREADS, STREAM_SECONDS,
            ", ".join("%.0fs (%s)" % (at, "SIGKILL" if k else "SIGTERM")
                      for at, k in RESTARTS)))
    ledger = Ledger()
    per = CHECKOUTS // THREADS
    interval = STREAM_SECONDS / per
    users = [["%s%d-%03d" % (PREFIX, t, i) for i in range(per)] for t in range(THREADS)]
    t0 = time.monotonic()
    stop_evt = threading.Event()  # the stream is over: the helpers stop
    abort_evt = threading.Event()  # the test failed: the workers stop too
    chaos_log = []
    backlog = []
    ct = threading.Thread(target=chaos, args=(broker, t0, stop_evt, chaos_log),
                          daemon=True)
    st = threading.Thread(target=sampler, args=(basket, stop_evt, backlog), daemon=True)
    ths = [threading.Thread(target=worker, daemon=True,
                            args=(basket, ledger, t0, t, users[t], interval, abort_evt))
           for t in range(THREADS)]
    try:
        for th in [ct, st] + ths:
            th.start()
        for th in ths:
            th.join()
        stream_secs = time.monotonic() - t0
        stop_evt.set()
        ct.join()
        st.join()
    finally:
        # on a failure or SIGTERM (a TestFailure raised in this thread), stop
        # every helper before the servers and the broker are torn down
        abort_evt.set()
        stop_evt.set()
        for th in [ct, st] + ths:
            if th.is_alive():
                th.join(30)
    say("   largest outbox backlog during the stream: %d events (%d samples)"
        % (max(backlog or [0]), len(backlog)))
    for line in chaos_log:
        say("   " + line)
    check(len(chaos_log) == len(RESTARTS) and all("failed" not in x for x in chaos_log),
          "the broker was restarted %d times during the stream" % len(RESTARTS))
    say("   stream done after %.1fs: %d sent, %d ok" % (stream_secs, len(ledger.sent),
                                                       len(ledger.ok)))
    check(broker.running(), "the broker runs")

    step("3. every checkout that answered 200 becomes exactly one order")
    found = {}

    def all_there():
        nonlocal found
        found = orders_by_prefix(ordering)
        return all(found.get(u, 0) >= 1 for u in ledger.ok)
    try:
        wait_until(all_there, 120, "an order for each of the %d checkouts" % len(ledger.ok),
                   interval=0.5)
    except TestFailure:
        print_ledger(ledger, found, stream_secs)
        say("   Basket outbox pending: %s; %s ready: %s"
            % (pending_outbox(basket), MT_ENDPOINT, amqp_queue_count(broker, MT_ENDPOINT)))
        raise
    # let late duplicates (redeliveries, republished events) arrive
    wait_until(lambda: pending_outbox(basket) == 0, 30, "Basket's outbox empty")
    wait_queue_drained(broker, MT_ENDPOINT, 30)
    found = orders_by_prefix(ordering)
    missing, dups, unexpected = print_ledger(ledger, found, stream_secs)
    check_eq(len(ledger.sent), CHECKOUTS, "checkouts sent (all baskets stored)")
    check_eq(len(ledger.ok), len(ledger.sent),
             "checkouts answered 200 (the outbox takes them while the broker is down)")
    check_eq(missing, [], "checkouts answered 200 without an order (lost)")
    check_eq(dups, [], "names with more than one order (doubled)")
    check_eq(unexpected, [], "orders of checkouts that were refused")
    n = amqp_queue_count(broker, MT_ERROR)
    check(not n, "nothing in %s (%r)" % (MT_ERROR, n))

    step("4. SIGTERM both -> exit 0, databases intact")
    for s in (ordering, basket):
        wait_broker_health(s, True, 15)
    basket.stop(timeout=20)
    ordering.stop(timeout=20)
    integrity_check(basket.data_dir)
    integrity_check(ordering.data_dir)
    broker.close()


if __name__ == "__main__":
    run_with_broker(main)
