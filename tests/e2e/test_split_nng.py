# SPDX-License-Identifier: MIT
"""Split over nng only, no broker (SPEC §1, §5; issue 6).

Two processes: Discount+Ordering (node.modules="discount ordering",
nng.listen=tcp://127.0.0.1:P) and Basket alone (remote.discount and
events.broker both nng+tcp://127.0.0.1:P: one shared connection). Storing a
basket gets Discount's coupon over nng; a checkout's event goes from
Basket's outbox straight to Ordering's listener and is marked sent only
once Ordering committed the order.

Then the consumer dies: Discount+Ordering is killed with SIGKILL, a
checkout made meanwhile waits in Basket's outbox (Basket's /health says why,
storing a basket answers 503 at once), and when the process is back on the
same port and data directory the event is delivered, exactly once.

Then three processes, each module alone: Discount listening on TCP,
Ordering on an IPC path, Basket with remote.discount and events.broker
pointing at the two (nng+tcp:// and nng+ipc://).

Standard library only: the processes talk nng to each other, the test talks
REST to them.

Usage: /usr/bin/python3 test_split_nng.py PATH/TO/monoshop
"""

import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (Decimal, Server, check, check_eq,  # noqa: E402
                     exe_from_argv, expect_problem, expect_status, free_port,
                     health_entry, integrity_check, nng_listening,
                     pending_outbox_count, run, say, step, tempdir, timed,
                     wait_until)
from test_story import (CART, IPHONE, SAMSUNG, check_cart,  # noqa: E402
                        check_order_items, checkout_dto, get_cart,
                        orders_by_name)

WANT = {IPHONE: (2, 350), SAMSUNG: (1, 300)}  # coupons of 150 and 100


def cart_of(user):
    return {"cart": dict(CART["cart"], userName=user)}


def orders_named(srv, name):
    """Orders whose orderName is exactly |name| (the route matches
    substrings)."""
    return [o for o in orders_by_name(srv, name) if o.get("orderName") == name]


def buy(shop, orders, user):
    """Store |user|'s cart through |shop| (coupons from Discount over nng),
    check it out, and wait for the order at |orders|; returns the order."""
    expect_status(shop.post("/basket", cart_of(user)), 201, "POST /basket for " + user)
    check_cart(get_cart(shop, user), user, WANT, 1000)
    r = expect_status(shop.post("/basket/checkout", checkout_dto(user)), 200,
                      "POST /basket/checkout for " + user)
    check_eq(r.json, {"isSuccess": True}, "checkout body")
    expect_problem(shop.get("/basket/" + user), 404, "the basket is gone after checkout")
    found = wait_until(lambda: orders_named(orders, user), 15,
                       "the order of %s at %s" % (user, orders.name))
    check_eq(len(found), 1, "orders named %s" % user)
    check_order_items(found[0], WANT)
    check_eq(Decimal(found[0]["totalPrice"]), Decimal(1000), "order.totalPrice")
    wait_until(lambda: pending_outbox_count(shop) == 0, 10,
               "Basket's outbox to have nothing pending")
    return found[0]


def two_processes(exe):
    port = free_port()
    listen = "tcp://127.0.0.1:%d" % port
    url = "nng+tcp://127.0.0.1:%d" % port
    cons = Server(exe, name="discount-ordering", extra=[
        "node.modules=discount ordering", "nng.listen=" + listen])
    shop = Server(exe, name="basket", extra=[
        "node.modules=basket", "remote.discount=" + url, "events.broker=" + url])

    step("1. Discount+Ordering listening on %s, Basket pointing at it" % listen)
    cons.start()
    check_eq(nng_listening(cons), listen, "the nng listener's address")
    shop.start()
    st, overall, e = health_entry(shop, "discount")
    check(isinstance(e, dict) and e.get("status") == "Healthy",
          "Basket's /health has a Healthy 'discount' entry: %r" % (e,))
    st, overall, b = health_entry(shop, "broker")
    check(b is None, "no separate 'broker' entry: one connection for both roles")
    st, overall, e = health_entry(cons, "nng+tcp")
    check(isinstance(e, dict) and e.get("status") == "Healthy",
          "Discount+Ordering's /health has a Healthy nng listener: %r" % (e,))

    step("2. the REST story over nng: coupon applied, checkout becomes an order")
    buy(shop, cons, "nnguser")
    check(not os.path.exists(shop.db("discount")) and not os.path.exists(shop.db("ordering")),
          "Basket's data dir has neither discount.db nor ordering.db")
    check(not os.path.exists(cons.db("basket")), "the consumer's data dir has no basket.db")

    step("3. SIGKILL Discount+Ordering; a checkout waits in Basket's outbox")
    expect_status(shop.post("/basket", cart_of("held")), 201,
                  "POST /basket for 'held' (checked out while the consumer is down)")
    cons.kill()
    r = expect_status(shop.post("/basket/checkout", checkout_dto("held")), 200,
                      "checkout with the consumer killed")
    check_eq(r.json, {"isSuccess": True}, "checkout body")
    check_eq(pending_outbox_count(shop), 1, "Basket's outbox holds the event")

    def down():
        st, overall, e = health_entry(shop, "discount")
        if st == 503 and isinstance(e, dict) and e.get("status") == "Unhealthy" \
                and "cannot reach " + url in (e.get("description") or ""):
            return e
        return None
    e = wait_until(down, 10, "Basket's /health 503 saying it cannot reach %s" % url)
    say("   discount entry: %r" % e)
    times = []
    for i in range(3):
        r, secs = timed(lambda: shop.post("/basket", cart_of("down")))
        expect_problem(r, 503, "POST /basket #%d with Discount down" % (i + 1))
        times.append(round(secs, 3))
    check(all(s < 1.0 for s in times), "stores fail fast: %r s" % times)
    check_eq(pending_outbox_count(shop), 1, "the event is still pending")

    step("4. restart Discount+Ordering on the same port -> the event arrives, once")
    cons.start()
    held = wait_until(lambda: orders_named(cons, "held"), 20,
                      "the order of 'held' after the restart")
    check_order_items(held[0], {IPHONE: (2, 350), SAMSUNG: (1, 300)})
    wait_until(lambda: pending_outbox_count(shop) == 0, 10,
               "Basket's outbox to mark the event sent")
    wait_until(lambda: shop.get("/health").status == 200, 10,
               "Basket's /health back to 200 (no restart)")
    buy(shop, cons, "afterwards")
    check_eq(len(orders_named(cons, "held")), 1, "still exactly one order for 'held'")
    check_eq(len(orders_named(cons, "nnguser")), 1, "still exactly one order for 'nnguser'")
    check(shop.alive(), "Basket was never restarted")

    step("5. SIGTERM both -> exit 0, databases intact")
    shop.stop()
    cons.stop()
    integrity_check(shop.data_dir)
    integrity_check(cons.data_dir)


def three_processes(exe):
    dport = free_port()
    ipc = os.path.join(tempdir("monoshop-nng-ipc-"), "ordering.ipc")
    disc = Server(exe, name="discount", extra=[
        "node.modules=discount", "nng.listen=tcp://127.0.0.1:%d" % dport])
    orde = Server(exe, name="ordering", extra=[
        "node.modules=ordering", "nng.listen=ipc://" + ipc])
    shop = Server(exe, name="basket", extra=[
        "node.modules=basket", "remote.discount=nng+tcp://127.0.0.1:%d" % dport,
        "events.broker=nng+ipc://" + ipc])

    step("6. three processes: Discount on TCP, Ordering on IPC, Basket calling both")
    disc.start()
    nng_listening(disc)
    orde.start()
    check_eq(nng_listening(orde), "ipc://" + ipc, "Ordering's nng listener")
    shop.start()
    for name in ("discount", "broker"):
        st, overall, e = health_entry(shop, name)
        check(isinstance(e, dict) and e.get("status") == "Healthy",
              "Basket's /health has a Healthy %r entry: %r" % (name, e))
    buy(shop, orde, "threeway")
    for srv, absent in ((disc, ("basket", "ordering")), (orde, ("basket", "discount")),
                        (shop, ("discount", "ordering"))):
        check(not any(os.path.exists(srv.db(d)) for d in absent),
              "%s's data dir has none of %s" % (srv.name, absent))

    step("7. SIGTERM all three -> exit 0, databases intact")
    shop.stop()
    orde.stop()
    disc.stop()
    for srv in (shop, orde, disc):
        integrity_check(srv.data_dir)


def main():
    exe = exe_from_argv()
    two_processes(exe)
    three_processes(exe)


if __name__ == "__main__":
    run(main)
