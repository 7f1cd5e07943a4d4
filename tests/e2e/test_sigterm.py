# SPDX-License-Identifier: MIT
"""SIGTERM under load (issue 5: graceful shutdown; SPEC §1 "stops accepting,
finishes what is in flight, flushes what it owes, exits 0").

A. REST in flight (dev mode, debug.discount_delay_ms makes every store
   take DELAY_MS, debug.hold_events keeps every event in the outbox): slow
   stores and a stream of checkouts run; SIGTERM while SLOW stores are in
   the handler. Every request that had started before the SIGTERM gets its
   normal answer (201 / 200, never a reset); new connections are refused
   while the process still finishes the stores; it exits 0 within
   node.shutdown_timeout_ms + a margin; every checkout answered 200 left
   its event in the outbox. After a restart (no hold) each of them is
   exactly one order.
B. gRPC in flight: Discount alone (debug.discount_delay_ms), GetDiscount
   calls from grpcio and a REST store of a Basket+Ordering process in its
   handler when Discount gets SIGTERM: all complete OK (coupon 150, the
   store 201 with the discounted price); a new connection is refused; exit
   0 in time.
C. Events in flight (config/split/*.ini, ports and broker overridden, a
   private RabbitMQ): Ordering stopped, BURST checkouts; Basket gets
   SIGTERM right after the last one answered (its relay is publishing):
   exit 0, undelivered events stay in its outbox and go out after its
   restart. Ordering is started with the backlog waiting and gets SIGTERM
   as soon as it committed its first order (consuming): exit 0 in time; it
   acked only what it committed (orders + messages still queued cover every
   checkout); after its restart every checkout is exactly one order.

Needs Debian's python3-grpcio, python3-protobuf, protobuf-compiler,
protobuf-compiler-grpc, rabbitmq-server and python3-pika.

Usage: /usr/bin/python3 test_sigterm.py PATH/TO/monoshop PATH/TO/proto
"""

import http.client
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (MT_ENDPOINT, Server, SplitDeployment, TestFailure,  # noqa: E402
                     amqp_queue_count, check, check_eq, connect_refused,
                     exe_and_proto_from_argv, expect_status, free_port,
                     grpc_stubs, integrity_check, pending_outbox_count,
                     run_with_broker, say, sql, start_broker, step,
                     wait_queue_drained, wait_until)
from test_story import IPHONE, checkout_dto  # noqa: E402

DELAY_MS = 2000          # debug.discount_delay_ms: a store's time in the handler
SHUTDOWN_MS = 8000       # node.shutdown_timeout_ms
MARGIN = 5.0             # seconds beyond it allowed for the exit
SLOW = 4                 # slow stores in flight at the SIGTERM (http.threads 8)
PRE = 60                 # baskets stored beforehand for the checkout stream
BURST = 300              # part C: checkouts waiting for Ordering
IN_FLIGHT_MARGIN = 0.05  # a request started this long before SIGTERM was in flight


_deferred = []


def deferred_check(cond, msg):
    """check(), but a failure is reported at the end of the test, so that
    the other parts still run and say what they see."""
    if cond:
        say("   ok: " + msg)
    else:
        say("   FAILED (reported at the end): " + msg)
        _deferred.append(msg)


def cart(user, qty=1):
    return {"cart": {"userName": user, "items": [
        {"quantity": qty, "color": "Red", "price": 500, "productId": IPHONE,
         "productName": "IPhone X"}]}}


class Outcome:
    def __init__(self, what, user, start):
        self.what, self.user, self.start = what, user, start
        self.end = None
        self.status = None
        self.error = None
        self.resp = None

    def __repr__(self):
        return "<%s %s t=%.3f..%s %s>" % (
            self.what, self.user, self.start,
            "%.3f" % self.end if self.end else "?",
            self.status if self.error is None else repr(self.error))


def timed_request(srv, what, user, fn, out, lock):
    o = Outcome(what, user, time.monotonic())
    with lock:
        out.append(o)
    try:
        o.resp = fn()
        o.status = o.resp.status
    except (OSError, http.client.HTTPException) as e:
        o.error = e
    o.end = time.monotonic()
    return o


def sigterm_and_wait(proc, name, timeout):
    """SIGTERM |proc| (a Server), wait for its exit; returns (status, seconds)."""
    t = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise TestFailure("%s did not exit within %.1fs of SIGTERM" % (name, timeout))
    finally:
        proc._close_log()
    return rc, time.monotonic() - t


def launch(p):
    """Start the process of Server |p| without waiting for anything (its log
    and process handled as Server.start does)."""
    p._starts += 1
    p.log_path = os.path.join(p.work, "%s.%d.log" % (p.name, p._starts))
    p._log = open(p.log_path, "wb")
    print("   $ " + " ".join(p.argv()), flush=True)
    p.proc = subprocess.Popen(p.argv(), stdin=subprocess.DEVNULL, stdout=p._log,
                              stderr=p._log, env=p.env)


def orders_of_users(ordering_db, prefix):
    """{order_name: count} of the orders whose name starts with |prefix|, read
    from ordering.db directly (the process may be stopped)."""
    rows = sql(ordering_db, "SELECT order_name, count(*) FROM orders"
               " WHERE order_name LIKE ? GROUP BY order_name", (prefix + "%",))
    return dict(rows)


def part_a(exe):
    step("A1. dev mode: %d baskets stored beforehand (no delay)" % PRE)
    srv = Server(exe, name="dev")
    srv.start()
    pre = ["st-pre-%02d" % i for i in range(PRE)]
    for u in pre:
        expect_status(srv.post("/basket", cart(u)), 201, "POST /basket for " + u)
    srv.stop()

    step("A2. restart with debug.discount_delay_ms=%d, debug.hold_events=true,"
         " node.shutdown_timeout_ms=%d; %d slow stores + a checkout stream;"
         " SIGTERM while the stores are in the handler" % (DELAY_MS, SHUTDOWN_MS, SLOW))
    srv.start(extra=["debug.discount_delay_ms=%d" % DELAY_MS, "debug.hold_events=true",
                     "node.shutdown_timeout_ms=%d" % SHUTDOWN_MS, "http.threads=8"])
    port = srv.port
    out, lock = [], threading.Lock()
    refused = threading.Event()

    def slow(i):
        u = "st-slow-%d" % i
        return timed_request(srv, "store", u, lambda: srv.post(
            "/basket", cart(u, 2), timeout=SHUTDOWN_MS / 1000 + 10), out, lock)

    def checkouts(k):
        for u in pre[k::2]:
            o = timed_request(srv, "checkout", u, lambda u=u: srv.post(
                "/basket/checkout", checkout_dto(u), timeout=15), out, lock)
            if isinstance(o.error, ConnectionRefusedError):
                refused.set()
                return
            if refused.wait(0.02):
                return

    pool = ThreadPoolExecutor(SLOW + 2)
    slows = [pool.submit(slow, i) for i in range(SLOW)]
    # MHD's pool may queue a connection behind a blocked thread: not every
    # slow store need be in the handler yet (the others are in flight too)
    wait_until(lambda: srv.log().count("holding the call") >= 2, 10,
               "stores in Discount's handler (log: 'holding the call')")
    cos = [pool.submit(checkouts, k) for k in range(2)]
    end = time.monotonic() + 0.5  # a few checkouts before the signal
    while time.monotonic() < end and \
            sum(1 for o in list(out) if o.what == "checkout" and o.end) < 3:
        time.sleep(0.01)
    t_term = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    say("   SIGTERM sent at t=%.3f" % t_term)

    # probe with new connections until one is refused (or the process is gone)
    t_ref, alive, pending_slow = None, False, []
    while time.monotonic() < t_term + SHUTDOWN_MS / 1000 + MARGIN:
        if connect_refused(port):
            t_ref = time.monotonic()
            alive = srv.alive()
            pending_slow = [o for o in list(out) if o.what == "store" and o.end is None]
            break
        if not srv.alive():
            break
        time.sleep(0.02)
    if t_ref is None:
        deferred_check(False, "a new REST connection is refused after SIGTERM (none"
                       " was, until the process exited)")
    else:
        say("   refused %.3fs after SIGTERM; process alive: %s; slow stores still in"
            " flight: %d" % (t_ref - t_term, alive, len(pending_slow)))
        deferred_check(alive and pending_slow, "new REST connections are refused"
                       " while the stores in flight are still being finished (refused"
                       " only %.3fs after SIGTERM, with %d stores in flight)"
                       % (t_ref - t_term, len(pending_slow)))
    try:
        rc = srv.proc.wait(SHUTDOWN_MS / 1000 + MARGIN)
    except subprocess.TimeoutExpired:
        raise TestFailure("dev did not exit within %.1fs of SIGTERM"
                          % (SHUTDOWN_MS / 1000 + MARGIN))
    exit_secs = time.monotonic() - t_term
    srv._close_log()
    for f in slows + cos:
        f.result(30)
    pool.shutdown()
    say("   exit status %s after %.2fs" % (rc, exit_secs))
    check_eq(rc, 0, "exit status after SIGTERM")
    check(exit_secs < SHUTDOWN_MS / 1000 + MARGIN, "exited within shutdown_timeout_ms"
          " + %.0fs (%.2fs)" % (MARGIN, exit_secs))

    stores = [o for o in out if o.what == "store"]
    cks = [o for o in out if o.what == "checkout"]
    for o in stores:
        check(o.error is None and o.status == 201,
              "slow store %s in flight at SIGTERM answered 201 (%r)" % (o.user, o))
        check(o.end > t_term, "store %s (%.2fs) ended after the SIGTERM (was in"
              " flight)" % (o.user, o.end - o.start))
    before = [o for o in cks if o.start < t_term - IN_FLIGHT_MARGIN]
    after = [o for o in cks if o.start >= t_term - IN_FLIGHT_MARGIN]
    bad = [o for o in before if o.error is not None or o.status != 200]
    check_eq(bad, [], "checkouts started before the SIGTERM without their 200")
    ok_after = [o for o in after if o.error is None and o.status == 200]
    ref_after = [o for o in after if isinstance(o.error, ConnectionRefusedError)]
    other = [o for o in after if o not in ok_after and o not in ref_after]
    say("   checkouts: %d before SIGTERM (all 200), %d around/after it: %d 200,"
        " %d refused, %d other %r" % (len(before), len(after), len(ok_after),
                                       len(ref_after), len(other), other[:5]))
    check(not [o for o in other if o.error is None],
          "no checkout was answered with something else than 200: %r" % other)
    if t_ref is not None:
        late = [o for o in cks if o.start > t_ref
                and not isinstance(o.error, ConnectionRefusedError)]
        deferred_check(not late, "checkouts that connected after the listener was"
                       " seen refusing were refused too, not reset: %r" % late)
    committed = [o.user for o in cks if o.error is None and o.status == 200]
    broken = [o.user for o in other]
    pending = pending_outbox_count(srv)
    say("   events left in the outbox: %d (checkouts answered 200: %d, connection"
        " broken around the SIGTERM: %d)" % (pending, len(committed), len(broken)))
    check(len(committed) <= pending <= len(committed) + len(broken),
          "every checkout answered 200 left its event in the outbox (hold_events)")
    integrity_check(srv.data_dir)

    step("A3. restart without hold or delay: each checkout answered 200 is"
         " exactly one order")
    srv.start(extra=[])

    def all_orders():
        found = orders_of_users(srv.db("ordering"), "st-pre-")
        return all(found.get(u, 0) >= 1 for u in committed) and found
    found = wait_until(all_orders, 30, "an order for each of the %d committed checkouts"
                       % len(committed))
    wait_until(lambda: pending_outbox_count(srv) == 0, 15, "the outbox empty")
    found = orders_of_users(srv.db("ordering"), "st-pre-")
    check_eq(sorted(u for u, n in found.items() if n > 1), [], "users with two orders")
    for u in broken:
        if not found.get(u):
            expect_status(srv.get("/basket/" + u), 200,
                          "%s: no order, so its basket is still there" % u)
    unexpected = sorted(set(found) - set(committed) - set(broken))
    check_eq(unexpected, [], "orders of checkouts that were never answered 200")
    for o in stores:
        r = expect_status(srv.get("/basket/" + o.user), 200,
                          "the basket stored during the shutdown, %s" % o.user)
        check_eq(r.json["cart"]["items"][0]["price"], 350,
                 "its IPhone X at 350 (discounted)")
    srv.stop()
    integrity_check(srv.data_dir)


def part_b(exe, proto):
    import grpc
    st = grpc_stubs(proto, files=("discount.proto",))
    pb, rpc = st.discount_pb2, st.discount_pb2_grpc
    gport = free_port()
    step("B1. Discount alone (gRPC %d, debug.discount_delay_ms=%d) and"
         " Basket+Ordering calling it" % (gport, DELAY_MS))
    disc = Server(exe, name="discount", grpc_listen="127.0.0.1:%d" % gport, extra=[
        "node.modules=discount", "debug.discount_delay_ms=%d" % DELAY_MS,
        "node.shutdown_timeout_ms=%d" % SHUTDOWN_MS])
    shop = Server(exe, name="basket-ordering", extra=[
        "node.modules=basket ordering", "remote.discount=grpc://127.0.0.1:%d" % gport,
        "bus.call_timeout_ms=%d" % (DELAY_MS * 3)])
    disc.start(want_grpc=True)
    shop.start()

    step("B2. 3 GetDiscount calls from grpcio and a REST store in Discount's"
         " handler; SIGTERM Discount")
    ch = grpc.insecure_channel("127.0.0.1:%d" % gport)
    stub = rpc.DiscountProtoServiceStub(ch)
    futs = [stub.GetDiscount.future(pb.GetDiscountRequest(productName="IPhone X"),
                                    timeout=DELAY_MS / 1000 + 10) for _ in range(3)]
    pool = ThreadPoolExecutor(1)
    store = pool.submit(lambda: shop.post("/basket", cart("grpc-inflight"), timeout=30))
    wait_until(lambda: disc.log().count("holding the call") >= 4, 10,
               "4 calls in Discount's handler")
    t = time.monotonic()
    disc.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: connect_refused(gport), 5,
               "a new gRPC connection to be refused")
    secs = time.monotonic() - t
    check(disc.alive() and not all(f.done() for f in futs),
          "a new gRPC connection is refused while the calls in flight are still"
          " being finished (refused only %.3fs after SIGTERM; %d of 3 calls done)"
          % (secs, sum(1 for f in futs if f.done())))
    for i, f in enumerate(futs):
        c = f.result(DELAY_MS / 1000 + 10)
        check_eq((c.productName, c.amount), ("IPhone X", 150),
                 "GetDiscount #%d in flight at SIGTERM completed OK" % (i + 1))
    ch.close()
    r = store.result(30)
    pool.shutdown()
    expect_status(r, 201, "the REST store whose GetDiscount was in flight")
    try:
        rc = disc.proc.wait(SHUTDOWN_MS / 1000 + MARGIN)
    except subprocess.TimeoutExpired:
        raise TestFailure("Discount did not exit within %.1fs of SIGTERM"
                          % (SHUTDOWN_MS / 1000 + MARGIN))
    disc._close_log()
    secs = time.monotonic() - t
    check_eq(rc, 0, "Discount's exit status after SIGTERM (%.2fs)" % secs)
    r = expect_status(shop.get("/basket/grpc-inflight"), 200, "GET the stored basket")
    check_eq(r.json["cart"]["items"][0]["price"], 350,
             "its IPhone X at 350: the coupon of the call in flight was applied")
    shop.stop()
    integrity_check(disc.data_dir)
    integrity_check(shop.data_dir)


def part_c(exe):
    step("C1. three processes from config/split/*.ini on a private broker")
    broker = start_broker()
    dep = SplitDeployment(exe, broker.url, pin=True, common=[
        "node.shutdown_timeout_ms=%d" % SHUTDOWN_MS, "events.reconnect_max_ms=1000"])
    dep.start()
    basket, ordering = dep.basket, dep.ordering
    ordering.stop()

    step("C2. Ordering stopped; %d checkouts; SIGTERM Basket right after the"
         " last one answered (its relay is publishing)" % BURST)
    users = ["ev-%03d" % i for i in range(BURST)]

    def buy(u):
        r = basket.post("/basket", cart(u), timeout=15)
        if r.status != 201:
            raise TestFailure("store of %s: %r" % (u, r))
        r = basket.post("/basket/checkout", checkout_dto(u), timeout=15)
        if r.status != 200:
            raise TestFailure("checkout of %s: %r" % (u, r))
    with ThreadPoolExecutor(6) as pool:
        for f in [pool.submit(buy, u) for u in users]:
            f.result(60)
    pending0 = pending_outbox_count(basket)
    rc, secs = sigterm_and_wait(basket, "basket", SHUTDOWN_MS / 1000 + MARGIN)
    pending = pending_outbox_count(basket)
    say("   Basket: %d events pending at the SIGTERM, %d left in the outbox at"
        " exit (status %s after %.2fs)" % (pending0, pending, rc, secs))
    check_eq(rc, 0, "Basket's exit status after SIGTERM")
    check(pending <= pending0, "what was not confirmed stays in the outbox")
    basket.start(timeout=20)
    wait_until(lambda: pending_outbox_count(basket) == 0, 30,
               "Basket's outbox empty after its restart (the rest published)")

    step("C3. Ordering started with %d events waiting; SIGTERM once it committed"
         " its first order" % BURST)
    odb = ordering.db("ordering")
    launch(ordering)  # not Server.start: it would wait for /health first
    conn = sqlite3.connect(odb, timeout=5)
    try:
        end = time.monotonic() + 30
        while conn.execute("SELECT count(*) FROM orders WHERE order_name LIKE 'ev-%'"
                           ).fetchone()[0] == 0:
            if time.monotonic() > end or not ordering.alive():
                raise TestFailure("Ordering made no order within 30 s (running: %s)"
                                  % ordering.alive())
            time.sleep(0.001)
    finally:
        conn.close()
    rc, secs = sigterm_and_wait(ordering, "ordering", SHUTDOWN_MS / 1000 + MARGIN)
    check_eq(rc, 0, "Ordering's exit status after SIGTERM (%.2fs)" % secs)
    found = orders_of_users(odb, "ev-")
    queued = amqp_queue_count(broker, MT_ENDPOINT)
    say("   at exit: %d orders committed, %d messages back in %s"
        % (len(found), queued, MT_ENDPOINT))
    if len(found) == BURST:
        say("   note: Ordering had consumed the whole backlog before the SIGTERM"
            " took effect: no event was in flight this time")
    check_eq(sorted(u for u, n in found.items() if n > 1), [], "users with two orders")
    check(len(found) + (queued or 0) >= BURST,
          "nothing acked without its order: %d orders + %d queued >= %d"
          % (len(found), queued or 0, BURST))

    step("C4. restart Ordering: every checkout is exactly one order")
    ordering.start(timeout=20)
    wait_until(lambda: len(orders_of_users(odb, "ev-")) == BURST, 60,
               "an order for each of the %d checkouts" % BURST, interval=0.2)
    wait_queue_drained(broker, MT_ENDPOINT, 30)
    found = orders_of_users(odb, "ev-")
    check_eq(sorted(found), sorted(users), "order names")
    check_eq(sorted(u for u, n in found.items() if n > 1), [], "users with two orders")
    dep.stop()
    dep.integrity_check()
    broker.close()


def main():
    exe, proto = exe_and_proto_from_argv()
    part_a(exe)
    part_b(exe, proto)
    part_c(exe)
    if _deferred:
        raise TestFailure("; ".join(_deferred))


if __name__ == "__main__":
    run_with_broker(main)
