# SPDX-License-Identifier: MIT
"""One trace across three processes (issue 5: W3C traceparent carried from
the REST request through gRPC metadata and the outbox into AMQP headers and
Ordering; every log line written while a trace is current is prefixed
`trace=<32 hex>`).

config/split/*.ini as three processes (every fixed port and the broker
overridden with --set; a private RabbitMQ), Discount and Ordering at the
default log level (INFO: what an operator sees), Basket at debug (for its
line about storing a basket, used in 2):

1. a store and a checkout sent with a known `traceparent`
   (00-<trace id>-<span>-01): once the order exists, the trace id is in
   the log of Basket (the requests), Discount (the GetDiscount call it
   served) and Ordering (the order made from the event); the event on the
   broker (read from a queue of our own bound to the event's exchange)
   carries a `traceparent` header with the same trace id;
2. without a client traceparent: the trace id Basket generated for the
   checkout (read from its log line for that checkout) is in Ordering's
   log, and the one of the store is in Discount's; the two requests have
   different ids, and neither is the first one;
3. every `trace=` in the three logs is followed by 32 lower-case hex digits.

Needs Debian's rabbitmq-server and python3-pika.

Usage: /usr/bin/python3 test_trace.py PATH/TO/monoshop
"""

import os
import re
import secrets
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (MT_EVENT_EXCHANGE, SplitDeployment, TRACE_RE,  # noqa: E402
                     TestFailure, amqp_connect, check, check_eq, exe_from_argv,
                     expect_status, lines_with, run_with_broker, say,
                     start_broker, step, trace_ids, wait_until)
from test_story import CART, checkout_dto, orders_by_name  # noqa: E402

TAP = "monoshop-e2e-trace-tap"


def new_trace():
    while True:
        t = secrets.token_hex(16)
        if int(t, 16):
            return t


def show(name, lines, n=6):
    for ln in lines[:n]:
        say("   %s| %s" % (name, ln))
    if len(lines) > n:
        say("   %s| ... %d more" % (name, len(lines) - n))


def order_of(ordering, user):
    return [o for o in orders_by_name(ordering, user) if o.get("orderName") == user]


def wait_in_log(proc, trace, what, timeout=10):
    """Wait until 'trace=<trace>' is in |proc|'s log; returns those lines."""
    needle = "trace=" + trace

    def pred():
        return lines_with(proc.log(), needle)
    try:
        lines = wait_until(pred, timeout, "%s in %s's log (%s)" % (needle, proc.name, what),
                           interval=0.1)
    except TestFailure:
        say("   %s's log has these trace ids: %s" % (proc.name, sorted(trace_ids(proc.log()))))
        show(proc.name, proc.log().splitlines()[-15:], 15)
        raise
    show(proc.name, lines)
    return lines


def tap_open(broker):
    """A queue of our own bound to the event's exchange: it gets a copy of
    every checkout event Basket publishes."""
    c = amqp_connect(broker)
    try:
        ch = c.channel()
        ch.queue_declare(TAP, durable=False, auto_delete=False)
        ch.queue_bind(TAP, MT_EVENT_EXCHANGE)
        ch.queue_purge(TAP)
    finally:
        c.close()


def tap_events(broker):
    """[(AMQP headers, envelope headers)] of the events in the tap queue."""
    import json
    out = []
    c = amqp_connect(broker)
    try:
        ch = c.channel()
        while True:
            method, props, body = ch.basic_get(TAP, auto_ack=True)
            if method is None:
                break
            try:
                env = json.loads(body)
            except ValueError:
                env = {}
            out.append((props.headers or {}, (env.get("headers") or {})
                        if isinstance(env, dict) else {}))
    finally:
        c.close()
    return out


def main():
    exe = exe_from_argv()
    broker = start_broker()
    # Discount and Ordering at the default level (what an operator sees);
    # Basket at debug for its line about storing a basket (step 2)
    dep = SplitDeployment(exe, broker.url, extra={"basket": ["log.level=debug"]})

    step("0. three processes from config/split/*.ini (Basket at log.level=debug)")
    dep.start()
    basket, discount, ordering = dep.basket, dep.discount, dep.ordering
    tap_open(broker)

    trace = new_trace()
    tp = "00-%s-%s-01" % (trace, secrets.token_hex(8))
    user = "traceuser"
    step("1. store and checkout with traceparent %s" % tp)
    hdr = {"traceparent": tp}
    expect_status(basket.post("/basket", {"cart": dict(CART["cart"], userName=user)},
                              headers=hdr), 201, "POST /basket with a traceparent")
    expect_status(basket.post("/basket/checkout", checkout_dto(user), headers=hdr), 200,
                  "POST /basket/checkout with the same traceparent")
    wait_until(lambda: order_of(ordering, user), 30, "the order of %s" % user, interval=0.1)
    wait_in_log(basket, trace, "the store and the checkout")
    wait_in_log(discount, trace, "the GetDiscount call of the store, over gRPC")
    olines = wait_in_log(ordering, trace, "the order made from the event, over AMQP")
    check(any(user in ln or "order" in ln.lower() for ln in olines),
          "one of Ordering's lines under the trace is about the order")

    step("1b. the event on the broker carries the trace in a traceparent header")
    evs = wait_until(lambda: tap_events(broker), 10, "the event in our tap queue")
    check_eq(len(evs), 1, "events published for one checkout")
    amqp_h, env_h = evs[0]
    say("   AMQP headers: %r; envelope headers: %r" % (amqp_h, env_h))
    got = amqp_h.get("traceparent")
    if isinstance(got, bytes):
        got = got.decode()
    check(isinstance(got, str) and re.fullmatch(
        r"00-%s-[0-9a-f]{16}-[0-9a-f]{2}" % trace, got or "") is not None,
        "AMQP header traceparent %r has the trace id %s" % (got, trace))

    step("2. without a client traceparent: the checkout's generated trace id"
         " reaches Ordering, the store's reaches Discount")
    user2 = "tracegen"
    expect_status(basket.post("/basket", {"cart": dict(CART["cart"], userName=user2)}),
                  201, "POST /basket without a traceparent")
    expect_status(basket.post("/basket/checkout", checkout_dto(user2)), 200,
                  "POST /basket/checkout without a traceparent")
    wait_until(lambda: order_of(ordering, user2), 30, "the order of %s" % user2,
               interval=0.1)

    def checkout_lines():
        return [ln for ln in lines_with(basket.log(), user2)
                if "checked out" in ln and TRACE_RE.search(ln)]
    cl = wait_until(checkout_lines, 10, "Basket's log line for the checkout of %s,"
                    " with a trace id" % user2)
    show("basket", cl)
    ids = {TRACE_RE.search(ln).group(1) for ln in cl}
    check_eq(len(ids), 1, "distinct trace ids on Basket's checkout lines of %s" % user2)
    gen = ids.pop()
    check(gen != trace, "the generated trace id %s is not the client's first one" % gen)
    wait_in_log(ordering, gen, "the order made from the checkout of %s" % user2)

    sl = [ln for ln in lines_with(basket.log(), user2)
          if "stored" in ln and TRACE_RE.search(ln)]
    if sl:
        store_trace = TRACE_RE.search(sl[-1]).group(1)
        check(store_trace != gen, "the store and the checkout have different traces")
        wait_in_log(discount, store_trace, "the GetDiscount call of %s's store" % user2)
    else:
        raise TestFailure("no line of Basket's log about storing %s's basket carries"
                          " a trace id (log.level=debug): %r"
                          % (user2, lines_with(basket.log(), user2)))

    step("3. every trace= prefix is 32 lower-case hex digits")
    bad_re = re.compile(r"trace=(?![0-9a-f]{32}\b)\S*")
    for p in (basket, discount, ordering):
        bad = [ln for ln in p.log().splitlines() if bad_re.search(ln)]
        check_eq(bad[:5], [], "malformed trace= prefixes in %s's log" % p.name)

    step("4. SIGTERM the three -> exit 0")
    dep.stop()
    dep.integrity_check()
    broker.close()


if __name__ == "__main__":
    run_with_broker(main)
