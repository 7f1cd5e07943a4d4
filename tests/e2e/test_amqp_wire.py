# SPDX-License-Identifier: MIT
"""MassTransit wire compatibility through a real RabbitMQ (SPEC §4, issue 4,
reference/wire.md §3), checked with an independent AMQP client (pika).

One private broker (tests/support/rabbitmq.py); two monoshop processes on it:
Ordering alone (node.modules=ordering) and Basket+Discount.

(a) What monoshop declares and publishes:
    * Ordering's topology, as MassTransit declares it: exchange
      BuildingBlocks.Messaging.Events:BasketCheckoutEvent and exchange +
      queue basket-checkout-event-handler, fanout/durable/not auto-delete/no
      arguments, bound exchange-to-exchange and exchange-to-queue; declaring
      them again with MassTransit's flags succeeds (no PRECONDITION_FAILED);
    * a checkout read from our own queue bound to the event exchange carries
      every envelope field and AMQP property of wire.md §3.3.
(b) What monoshop's Ordering consumes (envelopes published by pika):
    * the .NET fixture (no items) becomes exactly one order (total 1400,
      no items);
    * the same message (same messageId) published twice is one order;
    * a poison message (cvv "12345") goes to basket-checkout-event-handler_error
      with MT-Reason and MT-Fault-Message, and is no order;
    * a body that is not JSON goes to _error;
    * an unknown messageType goes to basket-checkout-event-handler_skipped;
    * nothing is redelivered forever: the queue drains to 0.

Needs Debian's rabbitmq-server and python3-pika.

Usage: /usr/bin/python3 test_amqp_wire.py PATH/TO/monoshop
"""

import copy
import datetime
import json
import os
import re
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (MT_BASE_URN, MT_CONTENT_TYPE, MT_ENDPOINT,  # noqa: E402
                     MT_ERROR, MT_EVENT_EXCHANGE, MT_EVENT_URN, MT_SKIPPED,
                     Decimal, Server, TestFailure, amqp_connect, amqp_exists,
                     check, check_eq, exe_from_argv, expect_status,
                     integrity_check, mt_publish, new_guid,
                     rabbit_list, run_with_broker, say, sql, start_broker, step,
                     wait_broker_health, wait_queue_drained, wait_until)
from test_story import (ADDRESS, CART, IPHONE, MEHMET, PAYMENT,  # noqa: E402
                        STORED_PAYMENT,
                        SAMSUNG, check_cart, check_order_items, checkout_dto,
                        get_cart, orders_by_name)

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "fixtures", "masstransit", "basket-checkout-from-dotnet.json")
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                     r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
EVENT_FIELDS = ("userName", "customerId", "totalPrice", "firstName", "lastName",
                "emailAddress", "addressLine", "country", "state", "zipCode",
                "cardName", "cardNumber", "expiration", "cvv", "paymentMethod")
HOST_FIELDS = ("machineName", "processName", "processId", "assembly",
               "assemblyVersion", "frameworkVersion", "massTransitVersion",
               "operatingSystemVersion")


def orders_named(srv, name):
    return [o for o in orders_by_name(srv, name) if o.get("orderName") == name]


def parse_iso(s):
    """An ISO-8601 UTC/offset timestamp (up to 7 fraction digits, as .NET
    writes them) as an aware datetime."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        raise TestFailure("not an ISO-8601 timestamp with a zone: %r" % s)
    frac = (m.group(2) or ".0")[1:7].ljust(6, "0")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.datetime.fromisoformat(m.group(1) + "." + frac + zone)


# -- (a) topology ---------------------------------------------------------

def check_topology(broker, endpoint, event_binding):
    """Exchange and queue |endpoint| (and the event exchange) exist with
    MassTransit's flags and bindings, and re-declaring them with those flags
    succeeds."""
    import pika
    exchanges = {e["name"]: e for e in rabbit_list(
        broker, "exchanges", "name", "type", "durable", "auto_delete", "internal",
        "arguments")}
    queues = {q["name"]: q for q in rabbit_list(
        broker, "queues", "name", "durable", "auto_delete", "exclusive", "arguments")}
    bindings = rabbit_list(broker, "bindings", "source_name", "source_kind",
                           "destination_name", "destination_kind", "routing_key",
                           "arguments")
    names = [endpoint] + ([MT_EVENT_EXCHANGE] if event_binding else [])
    for x in names:
        e = exchanges.get(x)
        check(e is not None, "exchange %r exists (exchanges: %s)"
              % (x, sorted(exchanges)))
        check_eq({k: e[k] for k in ("type", "durable", "auto_delete", "internal",
                                    "arguments")},
                 {"type": "fanout", "durable": True, "auto_delete": False,
                  "internal": False, "arguments": []},
                 "exchange %r flags" % x)
    q = queues.get(endpoint)
    check(q is not None, "queue %r exists (queues: %s)" % (endpoint, sorted(queues)))
    check_eq({k: q[k] for k in ("durable", "auto_delete", "exclusive", "arguments")},
             {"durable": True, "auto_delete": False, "exclusive": False,
              "arguments": []}, "queue %r flags" % endpoint)
    check(any(b["source_name"] == endpoint and b["source_kind"] == "exchange"
              and b["destination_name"] == endpoint
              and b["destination_kind"] == "queue" for b in bindings),
          "exchange %s is bound to queue %s" % (endpoint, endpoint))
    if event_binding:
        check(any(b["source_name"] == MT_EVENT_EXCHANGE
                  and b["destination_name"] == endpoint
                  and b["destination_kind"] == "exchange" for b in bindings),
              "exchange-to-exchange binding %s -> %s (bindings: %r)"
              % (MT_EVENT_EXCHANGE, endpoint,
                 [(b["source_name"], b["destination_name"], b["destination_kind"])
                  for b in bindings]))

    # What MassTransit itself does on start: declare (not passive) with its
    # flags, bind. A mismatch would close the channel with 406.
    c = amqp_connect(broker)
    try:
        ch = c.channel()
        try:
            for x in names:
                ch.exchange_declare(x, "fanout", passive=False, durable=True,
                                    auto_delete=False, internal=False,
                                    arguments=None)
            ch.queue_declare(endpoint, passive=False, durable=True,
                             exclusive=False, auto_delete=False, arguments=None)
            ch.queue_bind(endpoint, endpoint, routing_key="")
            if event_binding:
                ch.exchange_bind(destination=endpoint, source=MT_EVENT_EXCHANGE,
                                 routing_key="")
        except pika.exceptions.ChannelClosedByBroker as e:
            raise TestFailure("re-declaring %s with MassTransit's flags failed: %s %s"
                              % (endpoint, e.reply_code, e.reply_text))
        say("   ok: re-declared %s with MassTransit's flags (no PRECONDITION_FAILED)"
            % ", ".join(names + ["queue " + endpoint]))
    finally:
        if c.is_open:
            c.close()


# -- (a) envelope ---------------------------------------------------------

def check_envelope(props, body, broker, user, server_total):
    check_eq(props.content_type, MT_CONTENT_TYPE, "AMQP content_type")
    check_eq(props.delivery_mode, 2, "AMQP delivery_mode (persistent)")
    try:
        env = json.loads(body.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, ValueError) as e:
        raise TestFailure("the body is not UTF-8 JSON (%s): %r" % (e, body[:300]))
    check(isinstance(env, dict), "the body is a JSON object")
    say("   envelope: %s" % json.dumps(env, default=str)[:1500])

    mid = env.get("messageId")
    check(isinstance(mid, str) and GUID_RE.match(mid),
          "messageId is a GUID string: %r" % (mid,))
    check(isinstance(props.message_id, str) and props.message_id.lower() == mid.lower(),
          "AMQP message_id %r == envelope messageId %r" % (props.message_id, mid))
    conv = env.get("conversationId")
    check(conv is None or (isinstance(conv, str) and GUID_RE.match(conv)),
          "conversationId is a GUID or null: %r" % (conv,))

    mt = env.get("messageType")
    check(isinstance(mt, list) and all(isinstance(x, str) for x in mt),
          "messageType is an array of strings: %r" % (mt,))
    check(MT_EVENT_URN in mt, "messageType lists %s: %r" % (MT_EVENT_URN, mt))
    check(MT_BASE_URN in mt, "messageType lists %s: %r" % (MT_BASE_URN, mt))

    src = env.get("sourceAddress")
    check(isinstance(src, str) and src.startswith("rabbitmq://"),
          "sourceAddress is a rabbitmq:// URI: %r" % (src,))
    dst = env.get("destinationAddress")
    want_dst = "rabbitmq://127.0.0.1:%d/%s" % (broker.port, MT_EVENT_EXCHANGE)
    check_eq(dst, want_dst, "destinationAddress (host:port of the broker, vhost / "
             "omitted, the event's exchange)")

    sent = env.get("sentTime")
    check(isinstance(sent, str), "sentTime is a string: %r" % (sent,))
    t = parse_iso(sent)
    now = datetime.datetime.now(datetime.timezone.utc)
    check(abs((now - t).total_seconds()) < 120,
          "sentTime %s is within 2 minutes of now (%s)" % (sent, now.isoformat()))
    check("headers" not in env or isinstance(env["headers"], dict),
          "headers is an object when present: %r" % (env.get("headers"),))

    host = env.get("host")
    check(isinstance(host, dict), "host is an object: %r" % (host,))
    missing = [k for k in HOST_FIELDS if k not in host]
    check(not missing, "host has %s (missing: %s)" % (", ".join(HOST_FIELDS), missing))
    wrong = [k for k in HOST_FIELDS if k != "processId"
             and host[k] is not None and not isinstance(host[k], str)]
    check(not wrong, "host's fields other than processId are strings or null (not: %s)"
          % wrong)
    nulls = [k for k in HOST_FIELDS if host[k] is None]
    if nulls:
        say("   note: host fields written as null: %s" % ", ".join(nulls))
    check(isinstance(host["processId"], int) and host["processId"] > 0,
          "host.processId is a positive integer: %r" % (host["processId"],))
    check(isinstance(host["machineName"], str) and host["machineName"],
          "host.machineName is a non-empty string")
    check(isinstance(host["processName"], str) and host["processName"],
          "host.processName is a non-empty string")

    msg = env.get("message")
    check(isinstance(msg, dict), "message is an object")
    missing = [k for k in EVENT_FIELDS + ("items",) if k not in msg]
    check(not missing, "message has every field of the event and items, camelCase"
          " (missing: %s; keys: %s)" % (missing, sorted(msg)))
    check(not any(k[:1].isupper() for k in msg),
          "no PascalCase keys in message: %s" % sorted(msg))
    check(isinstance(msg["totalPrice"], str),
          "message.totalPrice is a JSON string (a .NET decimal): %r" % (msg["totalPrice"],))
    check_eq(Decimal(msg["totalPrice"]), Decimal(server_total),
             "message.totalPrice (the server's total, not the client's 1)")
    check_eq(msg["userName"], user, "message.userName")
    check_eq(str(msg["customerId"]).lower(), MEHMET, "message.customerId")
    for k, v in list(ADDRESS.items()) + list(PAYMENT.items()):
        check_eq(msg[k], v, "message.%s" % k)
    items = msg["items"]
    check(isinstance(items, list) and len(items) == 2, "message.items has 2 entries")
    got = {}
    for it in items:
        for k in ("productId", "productName", "quantity", "price"):
            check(k in it, "items[].%s is present: %r" % (k, it))
        check(isinstance(it["price"], str), "items[].price is a JSON string: %r"
              % (it["price"],))
        got[str(it["productId"]).lower()] = (it["quantity"], Decimal(it["price"]),
                                             it["productName"])
    check_eq(got, {IPHONE: (2, Decimal(350), "IPhone X"),
                   SAMSUNG: (1, Decimal(300), "Samsung 10")},
             "message.items (product, quantity, discounted price, name)")
    return env


def tap_queue(broker):
    """An exclusive queue of ours bound to the event exchange (declared
    passively first: it must be monoshop's); returns (connection, channel,
    queue name)."""
    c = amqp_connect(broker)
    ch = c.channel()
    ch.exchange_declare(MT_EVENT_EXCHANGE, passive=True)
    q = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
    ch.queue_bind(q, MT_EVENT_EXCHANGE, routing_key="")
    say("   ok: queue %s bound to %s" % (q, MT_EVENT_EXCHANGE))
    return c, ch, q


def get_one(ch, q, timeout, what):
    def pred():
        m, props, body = ch.basic_get(q, auto_ack=True)
        return (m, props, body) if m else None
    return wait_until(pred, timeout, what, interval=0.1)


# -- (b) consuming --------------------------------------------------------

def fixture_envelope(**message_over):
    """The .NET fixture with a fresh messageId and event id (and |message_over|)."""
    with open(FIXTURE) as f:
        env = json.load(f)
    env = copy.deepcopy(env)
    env["messageId"] = new_guid()
    env["message"]["id"] = new_guid()
    env["message"].update(message_over)
    return env


def collect(broker, queue, ids, timeout):
    """Take messages off |queue| (ack) until every message id in |ids| was
    seen; returns {message_id: (properties, body)} (others kept too)."""
    seen = {}
    c = amqp_connect(broker)
    try:
        ch = c.channel()

        def pred():
            if not amqp_exists(broker, "queue", queue):
                return None
            while True:
                m, props, body = ch.basic_get(queue, auto_ack=True)
                if not m:
                    break
                seen[(props.message_id or "").lower()] = (props, body)
            return all(i.lower() in seen for i in ids) and seen
        wait_until(pred, timeout, "message(s) %s in %s" % (", ".join(ids), queue),
                   interval=0.3)
    finally:
        if c.is_open:
            c.close()
    return seen


def header(props, name):
    h = props.headers or {}
    for k, v in h.items():
        if k.lower() == name.lower():
            return v.decode() if isinstance(v, bytes) else v
    return None


def main():
    exe = exe_from_argv()
    broker = start_broker()
    url = broker.url

    step("1. Ordering alone on the broker: MassTransit's topology")
    ordering = Server(exe, name="ordering", extra=[
        "node.modules=ordering", "events.broker=" + url])
    ordering.start(timeout=20)
    e = wait_broker_health(ordering, True, 15)
    say("   broker entry: %r" % e)
    wait_until(lambda: amqp_exists(broker, "queue", MT_ENDPOINT), 15,
               "queue %s declared by Ordering" % MT_ENDPOINT, interval=0.2)
    check_topology(broker, MT_ENDPOINT, event_binding=True)

    step("2. Basket+Discount on the broker; our own queue on the event exchange")
    basket = Server(exe, name="basket-discount", extra=[
        "node.modules=basket discount", "events.broker=" + url])
    basket.start(timeout=20)
    wait_broker_health(basket, True, 15)
    conn, ch, tap = tap_queue(broker)

    step("3. store a basket and check out -> the envelope on the wire")
    user = "wireuser"
    expect_status(basket.post("/basket", {"cart": dict(CART["cart"], userName=user)}),
                  201, "POST /basket for %s (IPhone X 500 x2, Samsung 10 400)" % user)
    check_cart(get_cart(basket, user), user, {IPHONE: (2, 350), SAMSUNG: (1, 300)}, 1000)
    r = expect_status(basket.post("/basket/checkout", checkout_dto(user)), 200,
                      "POST /basket/checkout (client totalPrice 1)")
    check_eq(r.json, {"isSuccess": True}, "checkout body")
    m, props, body = get_one(ch, tap, 15, "the checkout event in our queue")
    env = check_envelope(props, body, broker, user, 1000)
    ids = [r[0].lower() for r in sql(basket.db("basket"), "SELECT id FROM outbox")]
    check(env["messageId"].lower() in ids,
          "messageId is the event's stable id, the outbox row's (a republish carries"
          " the same messageId): %s in %s" % (env["messageId"], ids))
    orders = wait_until(lambda: orders_named(ordering, user), 15,
                        "the order of %s in the Ordering process" % user)
    check_eq(len(orders), 1, "orders of %s" % user)
    check_order_items(orders[0], {IPHONE: (2, 350), SAMSUNG: (1, 300)})
    check_eq(Decimal(orders[0]["totalPrice"]), Decimal(1000), "order.totalPrice")
    m, _, extra = ch.basic_get(tap, auto_ack=True)
    check(m is None, "the checkout was published once (calm run): %r"
          % (extra[:200] if extra else None,))
    conn.close()
    check_topology(broker, MT_ENDPOINT, event_binding=True)

    step("4. the .NET fixture (no items) published by pika -> one order")
    check(not orders_named(ordering, "swn"), "no order named swn yet")
    fx = fixture_envelope()
    mt_publish(broker, fx, fx["messageId"])
    orders = wait_until(lambda: orders_named(ordering, "swn"), 15,
                        "the order of swn (from the .NET envelope)")
    check_eq(len(orders), 1, "orders named swn")
    o = orders[0]
    check_eq(Decimal(o["totalPrice"]), Decimal(1400), "order.totalPrice (the event's)")
    check_eq(o.get("orderItems"), [], "order.orderItems (the .NET event has none)")
    check_eq(str(o.get("customerId")).lower(), MEHMET, "order.customerId")
    check_eq(o.get("shippingAddress"), ADDRESS, "order.shippingAddress")
    check_eq(o.get("payment"), STORED_PAYMENT, "order.payment (no CVV kept)")
    wait_queue_drained(broker, MT_ENDPOINT, 15)

    step("4b. what MassTransit's reader also accepts: any case, trailing commas,"
         " decimals as numbers")
    pc = fixture_envelope(userName="pascaluser")
    pc["message"] = {k[0].upper() + k[1:]: v for k, v in pc["message"].items()}
    pc = {k[0].upper() + k[1:]: v for k, v in pc.items()}
    text = json.dumps(pc, indent=2).rstrip()
    text = text[:-1].rstrip() + ",\n}"  # a trailing comma after the last member
    mt_publish(broker, text, pc["MessageId"])
    num = fixture_envelope(userName="numberuser")
    text = json.dumps(num, indent=2).replace('"totalPrice": "1400.00"',
                                             '"totalPrice": 1400.50')
    check('"totalPrice": 1400.50' in text, "the envelope has a numeric totalPrice")
    mt_publish(broker, text, num["messageId"])
    o = wait_until(lambda: orders_named(ordering, "pascaluser"), 15,
                   "the order of an envelope with PascalCase names and a trailing comma")[0]
    check_eq(Decimal(o["totalPrice"]), Decimal(1400), "PascalCase envelope: order.totalPrice")
    check_eq(o.get("payment"), STORED_PAYMENT, "PascalCase envelope: order.payment")
    o = wait_until(lambda: orders_named(ordering, "numberuser"), 15,
                   "the order of an envelope whose totalPrice is a JSON number")[0]
    check_eq(Decimal(o["totalPrice"]), Decimal("1400.50"), "numeric totalPrice kept exactly")
    wait_queue_drained(broker, MT_ENDPOINT, 15)

    step("5. the same message (same messageId) published twice -> one order")
    dup = fixture_envelope(userName="dupuser")
    mt_publish(broker, dup, dup["messageId"])
    mt_publish(broker, dup, dup["messageId"])
    wait_until(lambda: orders_named(ordering, "dupuser"), 15, "the order of dupuser")
    wait_queue_drained(broker, MT_ENDPOINT, 15, "both copies consumed and acked")
    check_eq(len(orders_named(ordering, "dupuser")), 1, "orders of dupuser")
    # and once more later, after the first copy was committed long ago
    mt_publish(broker, dup, dup["messageId"])
    wait_queue_drained(broker, MT_ENDPOINT, 15, "a third, late copy consumed and acked")
    check_eq(len(orders_named(ordering, "dupuser")), 1, "orders of dupuser after a late copy")

    step("6. poison (cvv 12345), not JSON, unknown messageType")
    poison = fixture_envelope(userName="poisonuser", cvv="12345")
    poison_body = mt_publish(broker, poison, poison["messageId"])
    junk_id = new_guid()
    junk_body = mt_publish(broker, b"this is not JSON {\x00\xff", junk_id)
    skip = fixture_envelope(userName="skippeduser")
    skip["messageType"] = ["urn:message:Foo:Bar"]
    skip_body = mt_publish(broker, skip, skip["messageId"])
    t0 = time.monotonic()
    errors = collect(broker, MT_ERROR, [poison["messageId"], junk_id], 45)
    say("   both in %s after %.1fs" % (MT_ERROR, time.monotonic() - t0))
    skipped = collect(broker, MT_SKIPPED, [skip["messageId"]], 30)

    props, body = errors[poison["messageId"].lower()]
    say("   poison headers: %r" % (props.headers,))
    check_eq(header(props, "MT-Reason"), "fault", "poison: MT-Reason")
    fm = header(props, "MT-Fault-Message")
    check(isinstance(fm, str) and fm.strip(), "poison: MT-Fault-Message is set: %r" % (fm,))
    for h in ("MT-Fault-ExceptionType", "MT-Fault-InputAddress", "MT-Fault-Timestamp"):
        say("   poison %s: %r" % (h, header(props, h)))
    check(body == poison_body, "poison: the original body was moved unchanged")
    check_eq(props.content_type, MT_CONTENT_TYPE, "poison: content_type kept")
    check_eq(props.delivery_mode, 2, "poison: still persistent")

    props, body = errors[junk_id.lower()]
    say("   non-JSON headers: %r" % (props.headers,))
    check(header(props, "MT-Reason") is not None, "non-JSON: MT-Reason is set: %r"
          % (header(props, "MT-Reason"),))
    check(header(props, "MT-Fault-Message") is not None,
          "non-JSON: MT-Fault-Message is set: %r" % (header(props, "MT-Fault-Message"),))
    check(body == junk_body, "non-JSON: the original body was moved unchanged")

    props, body = skipped[skip["messageId"].lower()]
    say("   skipped headers: %r" % (props.headers,))
    check_eq(header(props, "MT-Reason"), "dead-letter", "unknown type: MT-Reason")
    check(body == skip_body, "unknown type: the original body was moved unchanged")

    wait_queue_drained(broker, MT_ENDPOINT, 30, "%s drained: nothing redelivered forever"
                       % MT_ENDPOINT)
    for q in (MT_ERROR, MT_SKIPPED):
        check_topology(broker, q, event_binding=False)
    check_eq(orders_named(ordering, "poisonuser"), [], "no order for the poison message")
    check_eq(orders_named(ordering, "skippeduser"), [], "no order for the skipped message")
    check_eq(len(orders_named(ordering, "swn")), 1, "still one order named swn")
    check(ordering.alive() and basket.alive(), "both processes still run")
    wait_broker_health(ordering, True, 5)
    # the poison moved, nothing keeps failing: a fresh good message still works
    good = fixture_envelope(userName="afterpoison")
    mt_publish(broker, good, good["messageId"])
    wait_until(lambda: orders_named(ordering, "afterpoison"), 15,
               "an order for a good message after the bad ones")

    step("7. SIGTERM both -> exit 0, databases intact")
    basket.stop()
    ordering.stop()
    integrity_check(basket.data_dir)
    integrity_check(ordering.data_dir)
    broker.close()


if __name__ == "__main__":
    run_with_broker(main)
