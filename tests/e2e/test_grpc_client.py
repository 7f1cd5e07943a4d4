# SPDX-License-Identifier: MIT
"""Interop the other way: monoshop's own gRPC client against a server from
the official gRPC stack (Debian's python3-grpcio, gRPC core 1.51) that
implements discount.DiscountProtoService from stubs protoc generates at test
time, with its own table ("IPhone X" 42, where our seed says 150, so a
discount of 42 proves the call reached it).

monoshop hosts Basket and Ordering with remote.discount=grpc://127.0.0.1:PORT
and is driven over REST. Covered: a plain call; a retry honouring
grpc-retry-pushback-ms and sending grpc-previous-rpc-attempts; retries
bounded by grpc.retry_max_attempts; a negative pushback meaning "do not
retry"; the call deadline (bus.call_timeout_ms=500, sent as grpc-timeout,
not retried) -> 503; the circuit breaker (opens after grpc.breaker_failures
failures, then fails fast without reaching the server, half-opens, closes);
the server stopped -> fast 503s and /health 503 naming why; the server
restarted on the same port -> recovery without restarting monoshop.

Usage: /usr/bin/python3 test_grpc_client.py PATH/TO/monoshop PATH/TO/proto
"""

import os
import sys
import threading
import time
from concurrent import futures

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (Decimal, Server, TestFailure, check, check_eq,  # noqa: E402
                     exe_and_proto_from_argv, expect_problem, expect_status,
                     grpc_stubs, run, say, step, timed, wait_until)

try:
    import grpc  # noqa: E402
except ImportError:
    print("needs Debian's python3-grpcio for /usr/bin/python3", file=sys.stderr)
    sys.exit(1)

IPHONE = "5334c996-8457-4cf0-815c-ed2b77c4ff61"
OTHER = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
BREAKER_FAILURES = 4
BREAKER_OPEN_MS = 3000
CALL_TIMEOUT_MS = 500
RETRY_MAX_ATTEMPTS = 3


def cart(user, product="IPhone X", price=500, pid=IPHONE):
    return {"cart": {"userName": user, "items": [
        {"quantity": 1, "color": "Red", "price": price, "productId": pid,
         "productName": product}]}}


class Calls:
    """What the Python server saw: one record per attempt."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rows = []  # (monotonic time, productName, metadata dict, time_remaining)

    def add(self, row):
        with self.lock:
            self.rows.append(row)

    def of(self, name):
        with self.lock:
            return [r for r in self.rows if r[1] == name]

    def count(self):
        with self.lock:
            return len(self.rows)


def make_servicer(st, calls):
    pb = st.discount_pb2

    class Discount(st.discount_pb2_grpc.DiscountProtoServiceServicer):
        """A stock-grpcio Discount with its own table and a few test modes."""

        def __init__(self):
            self.table = {"IPhone X": (1, "IPhone X", "Python IPhone", 42),
                          "Flaky": (3, "Flaky", "Python Flaky", 5),
                          "Flaky2": (4, "Flaky2", "Python Flaky2", 6)}
            self.mode = "ok"  # "unavailable": every call fails UNAVAILABLE

        def GetDiscount(self, req, ctx):
            name = req.productName
            md = dict(ctx.invocation_metadata())
            calls.add((time.monotonic(), name, md, ctx.time_remaining()))
            n = len(calls.of(name))
            if self.mode == "unavailable":
                ctx.abort(grpc.StatusCode.UNAVAILABLE, "python server: down on purpose")
            if name == "Flaky" and n == 1:
                ctx.set_trailing_metadata((("grpc-retry-pushback-ms", "50"),))
                ctx.abort(grpc.StatusCode.UNAVAILABLE, "python server: flaky, retry in 50 ms")
            if name == "Flaky2" and n <= 2:
                ctx.abort(grpc.StatusCode.UNAVAILABLE, "python server: flaky2")
            if name == "Down":
                ctx.abort(grpc.StatusCode.UNAVAILABLE, "python server: always down")
            if name == "NoRetry":
                ctx.set_trailing_metadata((("grpc-retry-pushback-ms", "-1"),))
                ctx.abort(grpc.StatusCode.UNAVAILABLE, "python server: do not retry")
            if name == "Slow":
                end = time.monotonic() + 3
                while time.monotonic() < end and ctx.is_active():
                    time.sleep(0.02)
            c = self.table.get(name)
            if c is None:
                return pb.CouponModel(id=0, productName="No Discount",
                                      description="No Discount Desc", amount=0)
            return pb.CouponModel(id=c[0], productName=c[1], description=c[2],
                                  amount=c[3])

    return Discount()


def start_python_server(st, servicer, port=0):
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    st.discount_pb2_grpc.add_DiscountProtoServiceServicer_to_server(servicer, srv)
    got = srv.add_insecure_port("127.0.0.1:%d" % port)
    if got == 0 or (port and got != port):
        raise TestFailure("the Python gRPC server could not bind 127.0.0.1:%d (got %d)"
                          % (port, got))
    srv.start()
    say("   ok: Python grpcio DiscountProtoService on 127.0.0.1:%d" % got)
    return srv, got


def price_of(shop, user):
    r = expect_status(shop.get("/basket/" + user), 200, "GET /basket/" + user)
    return Decimal(r.json["cart"]["items"][0]["price"])


def store_ok(shop, user, product, price, want):
    expect_status(shop.post("/basket", cart(user, product, price)), 201,
                  "POST /basket %s at %s" % (product, price))
    check_eq(price_of(shop, user), Decimal(want), "stored price of %s" % product)


def discount_entry(shop):
    r = shop.get("/health")
    h = r.json if isinstance(r.json, dict) else {}
    return r.status, h.get("status"), (h.get("entries") or {}).get("discount")


def health_down(shop):
    """/health is 503 Unhealthy with the discount entry Unhealthy and a
    description (polled: the probe may lag)."""
    st, overall, e = discount_entry(shop)
    if st == 503 and overall == "Unhealthy" and isinstance(e, dict) \
            and e.get("status") == "Unhealthy" and e.get("description"):
        return e
    return None


def main():
    exe, proto = exe_and_proto_from_argv()
    st = grpc_stubs(proto, ("discount.proto",))
    calls = Calls()
    servicer = make_servicer(st, calls)
    pysrv, port = start_python_server(st, servicer)

    shop = Server(exe, name="basket-ordering", extra=[
        "node.modules=basket ordering",
        "remote.discount=grpc://127.0.0.1:%d" % port,
        "bus.call_timeout_ms=%d" % CALL_TIMEOUT_MS,
        "grpc.retry_max_attempts=%d" % RETRY_MAX_ATTEMPTS,
        "grpc.breaker_failures=%d" % BREAKER_FAILURES,
        "grpc.breaker_open_ms=%d" % BREAKER_OPEN_MS])
    step("1. Basket+Ordering with Discount on the Python server (port %d)" % port)
    shop.start()
    st_, overall, e = discount_entry(shop)
    check(isinstance(e, dict), "/health has a 'discount' entry: %r" % (e,))
    check_eq(e.get("status"), "Healthy", "health entry discount status")
    check("remote" in (e.get("tags") or []),
          "the discount entry is tagged remote (%r)" % e.get("tags"))

    store_ok(shop, "py1", "IPhone X", 500, 458)
    rows = calls.of("IPhone X")
    check(len(rows) >= 1, "the Python server received GetDiscount(IPhone X)")
    md = rows[-1][2]
    say("   request metadata seen by the Python server: %r" % md)
    check(rows[-1][3] is not None and rows[-1][3] <= CALL_TIMEOUT_MS / 1000 + 0.05,
          "the call carried a deadline (grpc-timeout) within bus.call_timeout_ms"
          " (time remaining at the server %r)" % rows[-1][3])
    check("grpc-previous-rpc-attempts" not in md,
          "a first attempt has no grpc-previous-rpc-attempts")
    store_ok(shop, "py0", "Gadget", Decimal("10.50"), "10.50")  # "No Discount" from Python

    step("2. UNAVAILABLE + grpc-retry-pushback-ms: 50 -> retried once, succeeds")
    store_ok(shop, "flaky", "Flaky", 100, 95)
    rows = calls.of("Flaky")
    check_eq(len(rows), 2, "attempts of GetDiscount(Flaky) at the Python server")
    check_eq(rows[1][2].get("grpc-previous-rpc-attempts"), "1",
             "the retry carried grpc-previous-rpc-attempts")
    gap = rows[1][0] - rows[0][0]
    check(gap >= 0.045, "the retry waited the pushback of 50 ms (%.3fs)" % gap)

    step("3. UNAVAILABLE twice (no pushback) -> backoff, third attempt succeeds")
    store_ok(shop, "flaky2", "Flaky2", 100, 94)
    rows = calls.of("Flaky2")
    check_eq(len(rows), 3, "attempts of GetDiscount(Flaky2)")
    check_eq([r[2].get("grpc-previous-rpc-attempts") for r in rows],
             [None, "1", "2"], "grpc-previous-rpc-attempts of the attempts")

    step("4. always UNAVAILABLE -> %d attempts (grpc.retry_max_attempts), 503"
         % RETRY_MAX_ATTEMPTS)
    expect_problem(shop.post("/basket", cart("down", "Down")), 503,
                   "POST /basket with a product Discount never answers")
    check_eq(len(calls.of("Down")), RETRY_MAX_ATTEMPTS, "attempts of GetDiscount(Down)")
    store_ok(shop, "py1", "IPhone X", 500, 458)  # a success closes the count

    step("5. a negative grpc-retry-pushback-ms means: do not retry")
    expect_problem(shop.post("/basket", cart("noretry", "NoRetry")), 503,
                   "POST /basket when Discount says do not retry")
    check_eq(len(calls.of("NoRetry")), 1, "attempts of GetDiscount(NoRetry)")
    store_ok(shop, "py1", "IPhone X", 500, 458)

    step("6. slower than bus.call_timeout_ms=%d -> 503, not retried" % CALL_TIMEOUT_MS)
    r, secs = timed(lambda: shop.post("/basket", cart("slow", "Slow")))
    expect_problem(r, 503, "POST /basket with a product Discount is slow on")
    check(secs < 2.0, "the 503 came after the call deadline, not the server's"
          " 3 s (%.2fs)" % secs)
    rows = calls.of("Slow")
    check_eq(len(rows), 1, "attempts of GetDiscount(Slow) (a deadline is not retried)")
    check(rows[0][3] is not None and rows[0][3] <= CALL_TIMEOUT_MS / 1000 + 0.05,
          "the server saw the deadline in grpc-timeout (%.3fs left)" % rows[0][3])
    expect_problem(shop.get("/basket/slow"), 404, "the slow basket was not stored")
    store_ok(shop, "py1", "IPhone X", 500, 458)

    step("7. circuit breaker: every call UNAVAILABLE -> opens after %d failures,"
         " then fails fast without reaching the server" % BREAKER_FAILURES)
    servicer.mode = "unavailable"
    seen = []
    for i in range(BREAKER_FAILURES + 4):
        before = calls.count()
        r, secs = timed(lambda: shop.post("/basket", cart("brk", "IPhone X")))
        expect_problem(r, 503, "POST /basket #%d while Discount fails" % (i + 1))
        seen.append((calls.count() - before, round(secs, 3)))
    say("   (attempts reaching the server, seconds) per store: %r" % seen)
    check(all(n == 0 for n, _ in seen[-3:]),
          "the last stores did not reach the server (breaker open): %r" % seen)
    check(all(s < 1.0 for _, s in seen[BREAKER_FAILURES:]),
          "stores after %d failures answered in under 1 s: %r"
          % (BREAKER_FAILURES, seen))
    e = wait_until(lambda: health_down(shop), 5,
                   "/health 503 with the discount entry Unhealthy")
    say("   discount entry: %r" % e)
    servicer.mode = "ok"
    wait_until(lambda: shop.post("/basket", cart("brk", "IPhone X")).status == 201,
               10, "a store to succeed again after grpc.breaker_open_ms"
               " (half-open probe)", interval=0.2)
    check_eq(price_of(shop, "brk"), Decimal(458), "price after the breaker closed")
    wait_until(lambda: shop.get("/health").status == 200, 10, "/health back to 200")

    step("8. the Python server stops -> fast 503s, /health 503 says why")
    pysrv.stop(None).wait(10)
    seen = []
    for i in range(BREAKER_FAILURES + 3):
        r, secs = timed(lambda: shop.post("/basket", cart("gone", "IPhone X")))
        expect_problem(r, 503, "POST /basket #%d with Discount gone" % (i + 1))
        seen.append(round(secs, 3))
    say("   seconds per store: %r" % seen)
    check(all(s < 1.0 for s in seen[BREAKER_FAILURES:]),
          "stores after %d failures answered in under 1 s: %r"
          % (BREAKER_FAILURES, seen))
    e = wait_until(lambda: health_down(shop), 5,
                   "/health 503 with the discount entry Unhealthy")
    say("   discount entry: %r" % e)
    r = shop.get("/basket/py1")
    expect_status(r, 200, "GET /basket/py1 (no Discount needed) still works")

    step("9. the Python server comes back on port %d -> recovery, no restart" % port)
    pysrv, _ = start_python_server(st, servicer, port)
    wait_until(lambda: shop.post("/basket", cart("back", "IPhone X")).status == 201,
               15, "a store to succeed again", interval=0.2)
    check_eq(price_of(shop, "back"), Decimal(458), "the price comes from the Python"
             " server again")
    wait_until(lambda: shop.get("/health").status == 200, 10, "/health back to 200")
    check(shop.alive(), "monoshop was never restarted")
    shop.stop()
    pysrv.stop(None).wait(10)


if __name__ == "__main__":
    run(main)
