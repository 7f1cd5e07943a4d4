# SPDX-License-Identifier: MIT
"""Split over RabbitMQ (SPEC §1, §4, §5; issue 4): Basket+Discount and
Ordering in two processes, events through a private broker
(tests/support/rabbitmq.py).

* Basket started first: a checkout made before Ordering ever declared its
  queue is not lost (the publish is mandatory; the returned event stays in
  the outbox until the queue exists);
* the REST story: IPhone X at 500 is stored at 350 (coupon), the checkout
  becomes an order in the Ordering process with the items and the total;
* /health of both processes has a Healthy 'broker' entry;
* broker stopped: both /health answer 503 with the broker entry Unhealthy,
  a checkout still answers 200 (the event waits in the outbox);
* broker started again (same port and data): the order appears, /health
  is 200 again, without restarting monoshop.

Needs Debian's rabbitmq-server and python3-pika.

Usage: /usr/bin/python3 test_amqp_split.py PATH/TO/monoshop
"""

import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (MT_ENDPOINT, Decimal, Server, check, check_eq,  # noqa: E402
                     exe_from_argv, expect_status, integrity_check,
                     run_with_broker, say, sql, start_broker, step,
                     wait_broker_health, wait_queue_drained, wait_until)
from test_story import (ADDRESS, CART, IPHONE, MEHMET, PAYMENT,  # noqa: E402
                        STORED_PAYMENT,
                        SAMSUNG, check_cart, check_order_items, checkout_dto,
                        get_cart, orders_by_name)


def orders_named(srv, name):
    return [o for o in orders_by_name(srv, name) if o.get("orderName") == name]


def pending_outbox(srv):
    """Events of |srv| not yet confirmed by the broker (outbox rows without
    sent_ms), read straight from its basket.db."""
    return sql(srv.db("basket"), "SELECT count(*) FROM outbox WHERE sent_ms IS NULL")[0][0]


def returned_publishes(srv):
    """monoshop_amqp_confirms_total{result="returned"} of |srv|'s /metrics."""
    for line in srv.get("/metrics").text.splitlines():
        if line.startswith('monoshop_amqp_confirms_total{result="returned"}'):
            return int(float(line.split()[-1]))
    return 0


def main():
    exe = exe_from_argv()
    broker = start_broker()
    url = broker.url
    ordering = Server(exe, name="ordering", extra=[
        "node.modules=ordering", "events.broker=" + url])
    basket = Server(exe, name="basket-discount", extra=[
        "node.modules=basket discount", "events.broker=" + url])

    step("1. Basket+Discount first: a checkout before any consumer queue exists"
         " waits in the outbox (mandatory publish returned), then Ordering starts")
    basket.start(timeout=20)
    wait_broker_health(basket, True, 15)
    expect_status(basket.post("/basket", {"cart": dict(CART["cart"], userName="early")}),
                  201, "POST /basket for 'early'")
    expect_status(basket.post("/basket/checkout", checkout_dto("early")), 200,
                  "POST /basket/checkout for 'early' (no queue bound to the exchange yet)")
    # Wait for the broker to have returned the publish (no queue bound),
    # rather than for a fixed time: then the row must still be pending.
    wait_until(lambda: returned_publishes(basket) >= 1, 15,
               "the broker returned the unroutable publish")
    check_eq(pending_outbox(basket), 1, "events still in Basket's outbox after"
             " the broker returned them (an unroutable publish is not 'sent')")
    ordering.start(timeout=20)
    orders = wait_until(lambda: orders_named(ordering, "early"), 30,
                        "the order of 'early' once Ordering declared its queue",
                        interval=0.2)
    check_eq(len(orders), 1, "orders of 'early'")
    wait_until(lambda: pending_outbox(basket) == 0, 10, "Basket's outbox empty")
    for s in (ordering, basket):
        e = wait_broker_health(s, True, 15)
        say("   %s broker entry: %r" % (s.name, e))
    check(not os.path.exists(basket.db("ordering")), "Basket's data dir has no ordering.db")
    check(not os.path.exists(ordering.db("basket")), "Ordering's data dir has no basket.db")
    r = basket.get("/orders/swn")
    check(r.status == 404, "GET /orders on Basket+Discount is not served (%d)" % r.status)

    step("2. the REST story through the broker")
    expect_status(basket.post("/basket", CART), 201, "POST /basket (IPhone X 500 x2, Samsung 10 400)")
    want = {IPHONE: (2, 350), SAMSUNG: (1, 300)}
    check_cart(get_cart(basket, "swn"), "swn", want, 1000)
    r = expect_status(basket.post("/basket/checkout", checkout_dto("swn")), 200,
                      "POST /basket/checkout")
    check_eq(r.json, {"isSuccess": True}, "checkout body")
    orders = wait_until(lambda: orders_named(ordering, "swn"), 15,
                        "the order of swn in the Ordering process")
    check_eq(len(orders), 1, "orders of swn")
    o = orders[0]
    check_order_items(o, want)
    check_eq(Decimal(o["totalPrice"]), Decimal(1000), "order.totalPrice")
    check_eq(str(o.get("customerId")).lower(), MEHMET, "order.customerId")
    check_eq(o.get("shippingAddress"), ADDRESS, "order.shippingAddress")
    check_eq(o.get("payment"), STORED_PAYMENT, "order.payment (no CVV kept)")
    check_eq(o.get("status"), 2, "order.status (Pending)")
    wait_until(lambda: pending_outbox(basket) == 0, 10, "Basket's outbox empty (confirmed)")

    step("3. stop the broker -> /health 503 (broker Unhealthy), checkout still 200")
    expect_status(basket.post("/basket", {"cart": dict(CART["cart"], userName="offline")}),
                  201, "POST /basket for 'offline' (before the broker stops)")
    broker.stop()
    for s in (basket, ordering):
        e = wait_broker_health(s, False, 30)
        say("   %s broker entry: %r" % (s.name, e))
        check(isinstance(e.get("description"), str) and e["description"],
              "%s: the Unhealthy broker entry says why: %r" % (s.name, e.get("description")))
    r = expect_status(basket.post("/basket/checkout", checkout_dto("offline")), 200,
                      "POST /basket/checkout with the broker down")
    check_eq(r.json, {"isSuccess": True}, "checkout body")
    check(pending_outbox(basket) >= 1, "the event waits in Basket's outbox (%d pending)"
          % pending_outbox(basket))
    expect_status(basket.get("/basket/swn"), 404, "Basket answers its own queries (404: "
                  "swn checked out)")
    check_eq(orders_named(ordering, "offline"), [], "no order of 'offline' yet")
    check(basket.alive() and ordering.alive(), "both processes still run")

    step("4. restart the broker (same port, same data) -> the order appears")
    broker.start()
    orders = wait_until(lambda: orders_named(ordering, "offline"), 60,
                        "the order of 'offline' (monoshop not restarted)", interval=0.25)
    check_eq(len(orders), 1, "orders of 'offline'")
    check_order_items(orders[0], want)
    check_eq(Decimal(orders[0]["totalPrice"]), Decimal(1000), "order.totalPrice")
    for s in (basket, ordering):
        wait_broker_health(s, True, 30)
        check_eq(s.get("/health").status, 200, "%s's /health" % s.name)
    wait_until(lambda: pending_outbox(basket) == 0, 15, "Basket's outbox empty again")
    wait_queue_drained(broker, MT_ENDPOINT, 15)
    check_eq(len(orders_named(ordering, "offline")), 1, "still one order of 'offline'")
    check_eq(len(orders_named(ordering, "swn")), 1, "still one order of swn")

    step("5. SIGTERM both -> exit 0, databases intact")
    basket.stop()
    ordering.stop()
    integrity_check(basket.data_dir)
    integrity_check(ordering.data_dir)
    broker.close()


if __name__ == "__main__":
    run_with_broker(main)
