# SPDX-License-Identifier: MIT
"""Card data (issue 8, part 5): card numbers and CVVs never reach a log, and
the CVV is not kept once the order exists.

Every process runs at log.level=debug, with a card number and a CVV that
appear nowhere else, through:
  1. dev mode: a checkout through REST (and one whose JSON breaks right
     after the card number: a 400 whose answer may quote it, the log not);
  2. split over a private RabbitMQ (Basket+Discount, Ordering): a checkout
     through the broker, then pika publishing an envelope whose JSON breaks
     at the card number and a poison one (CVV of 5 characters) carrying it.
Then: no log line of any process holds the card number or the CVV; every
order answers "cvv": null and its payment_cvv column is NULL; a sent event
in Basket's outbox keeps no payload.

Needs rabbitmq-server and python3-pika for part 2.

Usage: /usr/bin/python3 test_card_data.py PATH/TO/monoshop
"""

import json
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (MT_ERROR, Server, check, check_eq,  # noqa: E402
                     exe_from_argv, expect_problem, expect_status,
                     integrity_check, mt_publish, new_guid, run_with_broker,
                     sql, start_broker, step, wait_broker_health, wait_until)
from test_amqp_wire import collect, fixture_envelope  # noqa: E402
from test_story import CART, checkout_dto, orders_by_name  # noqa: E402

CARD = "4000998877665544"  # recognisable, in no fixture
CVV = "Z9Q"                # 3 characters (the rule), no hex, no digit run


def checkout(srv, user, orders=None):
    """Store a cart and check it out with the card; the order as |orders|
    (default |srv|) answers it."""
    orders = orders or srv
    body = {"cart": dict(CART["cart"], userName=user)}
    expect_status(srv.post("/basket", body), 201, "POST /basket for %s" % user)
    expect_status(srv.post("/basket/checkout",
                           checkout_dto(user, cardNumber=CARD, cvv=CVV)),
                  200, "checkout of %s with the card" % user)
    return wait_until(lambda: [o for o in orders_by_name(orders, user)
                               if o["orderName"] == user], 30,
                      "the order of %s" % user)[0]


def check_order(srv, order, what):
    check_eq(order["payment"]["cardNumber"], CARD, "%s: the card number is kept" % what)
    check(order["payment"]["cvv"] is None, "%s: \"cvv\": null (%r)"
          % (what, order["payment"]["cvv"]))
    rows = sql(srv.db("ordering"), "SELECT COUNT(*) FROM orders WHERE payment_cvv IS NOT NULL")
    check_eq(rows, [(0,)], "%s: no order row keeps a CVV" % what)


def check_outbox(srv, what):
    """Basket's sent events keep no payload (card number, CVV)."""
    wait_until(lambda: sql(srv.db("basket"),
                           "SELECT COUNT(*) FROM outbox WHERE sent_ms IS NULL") == [(0,)],
               30, "%s: every event sent" % what)
    rows = sql(srv.db("basket"), "SELECT COUNT(*), SUM(LENGTH(payload)) FROM outbox")
    check(rows[0][0] > 0 and not rows[0][1], "%s: %d sent events, payload bytes kept: %r"
          % (what, rows[0][0], rows[0][1]))


def check_logs(servers, what):
    for s in servers:
        log = s.log()
        check(len(log) > 0 and "DEBUG" in log, "%s: %s logged at debug (%d bytes)"
              % (what, s.name, len(log)))
        for secret, name in ((CARD, "card number"), (CVV, "CVV")):
            bad = [ln for ln in log.splitlines() if secret in ln]
            check(not bad, "%s: no %s in %s's log (%r)" % (what, name, s.name, bad[:3]))


def dev_mode(exe):
    step("1. dev mode at log.level=debug")
    srv = Server(exe, name="dev", extra=["log.level=debug"])
    srv.start()
    order = checkout(srv, "carduser")
    check_order(srv, order, "dev mode")
    broken = ('{"basketCheckoutDto":{"userName":"carduser","cardNumber":"%s" "cvv":"%s"}}'
              % (CARD, CVV))
    expect_problem(srv.post("/basket/checkout", data=broken), 400,
                   "a checkout whose JSON breaks at the card number", fields=["$"])
    r = srv.get("/orders?pageIndex=0&pageSize=10")
    for o in r.json["orders"]["data"]:
        check(o["payment"]["cvv"] is None, "order %s: \"cvv\": null" % o["orderName"])
    check_outbox(srv, "dev mode")
    srv.stop()
    integrity_check(srv.data_dir)
    check_logs([srv], "dev mode")


def split_amqp(exe):
    step("2. split over RabbitMQ at log.level=debug")
    broker = start_broker()
    common = ["log.level=debug", "events.broker=" + broker.url]
    ordering = Server(exe, name="ordering", extra=["node.modules=ordering"] + common)
    ordering.start()
    wait_broker_health(ordering, True, 30)
    basket = Server(exe, name="basket", extra=["node.modules=basket discount"] + common)
    basket.start()
    wait_broker_health(basket, True, 30)
    order = checkout(basket, "amqpcard", ordering)
    check_order(ordering, order, "through the broker")
    check_outbox(basket, "through the broker")

    broken_id = new_guid()
    text = fixture_envelope(cardNumber=CARD, cvv=CVV)
    # jansson quotes the token it stops at: here the card number itself
    # ("invalid escape near '\"4000...\\q'")
    body = json.dumps(text, indent=2).replace('"%s",' % CARD, '"%s\\q",' % CARD)
    check(CARD + "\\q" in body, "the envelope breaks inside the card number's string")
    mt_publish(broker, body.encode(), broken_id)
    poison = fixture_envelope(userName="cardpoison", cardNumber=CARD, cvv=CVV + "45")
    mt_publish(broker, poison, poison["messageId"])
    got = collect(broker, MT_ERROR, [broken_id, poison["messageId"]], 60)
    check(len(got) >= 2, "both moved to %s" % MT_ERROR)
    check_eq([o for o in orders_by_name(ordering, "cardpoison")], [],
             "no order for the poison one")
    basket.stop()
    ordering.stop()
    for s in (basket, ordering):
        integrity_check(s.data_dir)
    check_logs([basket, ordering], "split over RabbitMQ")
    broker.close()


def main():
    exe = exe_from_argv()
    dev_mode(exe)
    split_amqp(exe)


if __name__ == "__main__":
    run_with_broker(main)
