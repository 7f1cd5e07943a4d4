# SPDX-License-Identifier: MIT
"""Split over gRPC (SPEC §1, §5; issue 3): two monoshop processes, Discount
alone (node.modules=discount, its own data dir, a gRPC port fixed in
advance) and Basket+Ordering (remote.discount=grpc://127.0.0.1:PORT, its own
data dir). The REST story of test_story.py gives the same answers as dev
mode; with Discount killed (SIGKILL) storing a basket answers 503 fast (the
circuit breaker) while /health says why and checkout still works; with
Discount restarted on the same port and data dir, Basket recovers without a
restart.

Standard library only (the processes talk gRPC to each other, the test
talks REST). The proto directory argument is accepted for symmetry with the
other gRPC tests and not used.

Usage: /usr/bin/python3 test_split_grpc.py PATH/TO/monoshop [PATH/TO/proto]
"""

import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (Decimal, Server, TestFailure, check, check_eq,  # noqa: E402
                     expect_problem, expect_status, free_port, integrity_check,
                     run, say, step, timed, wait_until)
from test_story import (CART, IPHONE, SAMSUNG, UNKNOWN,  # noqa: E402
                        check_cart, check_order_items, checkout_dto, get_cart,
                        orders_by_name)

BREAKER_FAILURES = 5  # grpc.breaker_failures' default


def normalize(v):
    """|v| without what legitimately differs between two runs: generated
    ids, trace ids, durations."""
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in v.items()
                if k not in ("id", "orderId", "traceId", "totalDuration")}
    if isinstance(v, list):
        return [normalize(x) for x in v]
    return v


def story(srv, user):
    """The REST story (test_story.py steps 2-7, trimmed) against |srv|;
    returns the transcript of (what, status, normalized body)."""
    t = []

    def rec(what, r):
        t.append((what, r.status, normalize(r.json if r.json is not None else r.text)))
        return r

    cart_body = {"cart": dict(CART["cart"], userName=user)}
    want = {IPHONE: (2, 350), SAMSUNG: (1, 300)}
    r = rec("POST /basket", expect_status(srv.post("/basket", cart_body), 201,
                                          "POST /basket (IPhone X 500 x2, Samsung 10 400)"))
    check_eq(r.json, {"userName": user}, "POST /basket body")
    cart = get_cart(srv, user)
    rec("GET /basket", srv.get("/basket/" + user))
    check_cart(cart, user, want, 1000)

    rec("POST /basket (round trip)", expect_status(
        srv.post("/basket", {"cart": cart}), 201, "storing the GET result again"))
    cart = get_cart(srv, user)
    rec("GET /basket (round trip)", srv.get("/basket/" + user))
    check_cart(cart, user, want, 1000)

    extra = {"quantity": 1, "color": "Black", "price": Decimal("10.50"),
             "productId": UNKNOWN, "productName": "E2E Gadget"}
    other = {"cart": {"userName": user + "-2", "items": [extra]}}
    rec("POST /basket (no coupon)", expect_status(srv.post("/basket", other), 201,
                                                  "POST /basket with an unknown product"))
    check_cart(get_cart(srv, user + "-2"), user + "-2", {UNKNOWN: (1, "10.50")}, "10.50")
    rec("GET /basket (no coupon)", srv.get("/basket/" + user + "-2"))

    r = rec("POST /basket/checkout", expect_status(
        srv.post("/basket/checkout", checkout_dto(user)), 200, "POST /basket/checkout"))
    check_eq(r.json, {"isSuccess": True}, "checkout body")
    r = srv.get("/basket/" + user)
    expect_problem(r, 404, "GET /basket/%s after checkout" % user)
    rec("GET /basket after checkout", r)
    orders = wait_until(lambda: orders_by_name(srv, user), 10,
                        "GET /orders/%s to return the checked-out order" % user)
    check_eq(len(orders), 1, "number of orders named like %s" % user)
    check_order_items(orders[0], want)
    check_eq(Decimal(orders[0]["totalPrice"]), Decimal(1000), "order.totalPrice")
    rec("GET /orders/{name}", srv.get("/orders/" + user))
    rec("GET /orders page", srv.get("/orders?pageIndex=0&pageSize=10"))
    return t


def entry(srv, name):
    r = srv.get("/health")
    h = r.json if isinstance(r.json, dict) else {}
    return r.status, h.get("status"), (h.get("entries") or {}).get(name)


def main():
    if len(sys.argv) not in (2, 3):
        print("usage: %s PATH/TO/monoshop [PATH/TO/proto]" % sys.argv[0],
              file=sys.stderr)
        sys.exit(2)
    exe = os.path.abspath(sys.argv[1])

    step("0. the same story against dev mode, for comparison")
    dev = Server(exe, name="dev")
    dev.start()
    dev_t = story(dev, "splituser")
    dev.stop()

    port = free_port()
    disc = Server(exe, name="discount", grpc_listen="127.0.0.1:%d" % port,
                  extra=["node.modules=discount"])
    shop = Server(exe, name="basket-ordering", extra=[
        "node.modules=basket ordering",
        "remote.discount=grpc://127.0.0.1:%d" % port])
    step("1. Discount alone on gRPC port %d, then Basket+Ordering calling it" % port)
    disc.start(want_grpc=True)
    check_eq(disc.grpc_port, port, "Discount's gRPC port")
    shop.start()
    st, overall, e = entry(shop, "discount")
    check(isinstance(e, dict) and e.get("status") == "Healthy",
          "Basket's /health has a Healthy 'discount' entry: %r" % (e,))
    say("   discount entry: %r" % e)

    step("2. the REST story through the split gives dev mode's answers")
    split_t = story(shop, "splituser")
    for (w1, s1, b1), (w2, s2, b2) in zip(dev_t, split_t):
        if (s1, b1) != (s2, b2):
            raise TestFailure("%s differs: dev mode %d %r, split %d %r"
                              % (w1, s1, b1, s2, b2))
    check_eq(len(split_t), len(dev_t), "transcript length")
    say("   ok: %d answers identical to dev mode's" % len(split_t))
    check(not os.path.exists(shop.db("discount")),
          "Basket+Ordering's data dir has no discount.db")
    check(not os.path.exists(disc.db("basket")) and not os.path.exists(disc.db("ordering")),
          "Discount's data dir has no basket.db / ordering.db")
    expect_status(shop.post("/basket", {"cart": {"userName": "waiting", "items": [
        dict(CART["cart"]["items"][0], quantity=1)]}}), 201,
        "POST /basket for 'waiting' (checked out while Discount is down)")

    step("3. SIGKILL Discount -> stores answer 503, fast once the breaker opens")
    disc.kill()
    times = []
    for i in range(BREAKER_FAILURES + 3):
        r, secs = timed(lambda: shop.post("/basket", {"cart": dict(CART["cart"],
                                                                   userName="down")}))
        expect_problem(r, 503, "POST /basket #%d with Discount killed" % (i + 1))
        times.append(round(secs, 3))
    say("   seconds per store: %r" % times)
    check(all(s < 1.0 for s in times[BREAKER_FAILURES:]),
          "stores after %d failures answer in under 1 s: %r" % (BREAKER_FAILURES, times))
    check(max(times) < 5.0, "no store waited long: %r" % times)

    def down():
        st, overall, e = entry(shop, "discount")
        if st == 503 and overall == "Unhealthy" and isinstance(e, dict) \
                and e.get("status") == "Unhealthy" and e.get("description"):
            return e
        return None
    e = wait_until(down, 5, "/health 503 with the discount entry Unhealthy, described")
    say("   discount entry: %r" % e)
    expect_status(shop.get("/basket/waiting"), 200, "GET /basket works without Discount")
    r = expect_status(shop.post("/basket/checkout", checkout_dto("waiting")), 200,
                      "checkout works without Discount")
    orders = wait_until(lambda: [o for o in orders_by_name(shop, "waiting")
                                 if o["orderName"] == "waiting"], 10,
                        "the order of 'waiting'")
    check_order_items(orders[0], {IPHONE: (1, 350)})

    step("4. restart Discount on port %d and its data dir -> Basket recovers" % port)
    disc.start(want_grpc=True)
    check_eq(disc.grpc_port, port, "Discount's gRPC port after the restart")
    wait_until(lambda: shop.post("/basket", {"cart": dict(CART["cart"],
                                                          userName="back")}).status == 201,
               15, "a store to succeed again (Basket not restarted)", interval=0.2)
    check_cart(get_cart(shop, "back"), "back", {IPHONE: (2, 350), SAMSUNG: (1, 300)}, 1000)
    wait_until(lambda: shop.get("/health").status == 200, 10, "Basket's /health back to 200")
    check(shop.alive(), "Basket+Ordering was never restarted")

    step("5. SIGTERM both -> exit 0, databases intact")
    shop.stop()
    disc.stop()
    integrity_check(shop.data_dir)
    integrity_check(disc.data_dir)


if __name__ == "__main__":
    run(main)
