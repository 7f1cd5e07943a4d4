# SPDX-License-Identifier: MIT
"""Ordering's AMQP consumer in batches (issue 7, scenario 4): the
deliveries it has in hand are handled in one SQLite transaction, each
event a savepoint of it, and acknowledged only after the commit.

Ordering alone on a private broker (tests/support/rabbitmq.py), stopped
while envelopes are queued with pika, then started, so that it gets a full
prefetch window at once:

1. many events, a poison one and duplicates among them: every good event
   is exactly one order; the poison one (a 5-digit CVV) goes to
   basket-checkout-event-handler_error alone and makes no order; a
   duplicate within the queue and one of an event handled before make
   none; the queue ends drained (nothing unacked), and some of the acks
   were multiple ones (monoshop_amqp_acks_total{result="multiple"}): the
   batch path ran;
2. a batch whose COMMIT fails (a deferred foreign key the test adds to
   ordering.db, violated by a trigger for one event id only: the failure
   comes at COMMIT, after every event of the batch was handled): none of
   the batch is acknowledged, they are delivered again (logged "was not
   committed"), every good event becomes exactly one order, and the
   event that breaks the commit ends in the error queue (handled alone,
   with events.max_redeliveries=1), with no order and no inbox row.

Needs Debian's rabbitmq-server and python3-pika.

Usage: /usr/bin/python3 test_amqp_batch.py PATH/TO/monoshop
"""

import collections
import copy
import json
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (MT_CONTENT_TYPE, MT_ENDPOINT, MT_ERROR,  # noqa: E402
                     MT_EVENT_EXCHANGE, Server, amqp_connect, amqp_exists,
                     amqp_queue_count, check, check_eq, exe_from_argv,
                     integrity_check, new_guid, run_with_broker, say, sql,
                     start_broker, step, wait_queue_drained, wait_until)

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "fixtures", "masstransit", "basket-checkout-from-dotnet.json")
PREFETCH = 64
DEADLINE = 60


def envelope(user, **over):
    with open(FIXTURE) as f:
        env = json.load(f)
    env = copy.deepcopy(env)
    env["messageId"] = new_guid()
    env["message"]["id"] = new_guid()
    env["message"]["userName"] = user
    env["message"].update(over)
    return env


def publish_all(broker, envs):
    """Publish |envs| in order on one confirmed channel, as MassTransit
    would (persistent, message_id)."""
    import pika
    c = amqp_connect(broker)
    try:
        ch = c.channel()
        ch.confirm_delivery()
        for e in envs:
            ch.basic_publish(MT_EVENT_EXCHANGE, "", json.dumps(e, indent=2).encode(),
                             pika.BasicProperties(content_type=MT_CONTENT_TYPE,
                                                  delivery_mode=2,
                                                  message_id=e["messageId"]))
    finally:
        if c.is_open:
            c.close()


def orders_by_name(srv, prefix):
    rows = sql(srv.db("ordering"),
               "SELECT order_name, count(*) FROM orders WHERE order_name LIKE ? "
               "GROUP BY order_name", (prefix + "%",))
    return collections.Counter({n: c for n, c in rows})


def error_ids(broker):
    """Message ids in the error queue (taken off it)."""
    ids = []
    c = amqp_connect(broker)
    try:
        ch = c.channel()
        while True:
            m, props, _ = ch.basic_get(MT_ERROR, auto_ack=True)
            if not m:
                break
            ids.append((props.message_id or "").lower())
    finally:
        if c.is_open:
            c.close()
    return ids


def metric(srv, name, labels):
    total = 0.0
    for line in srv.get("/metrics").text.splitlines():
        if line.startswith(name + "{") and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_orders(srv, want, prefix):
    def pred():
        got = orders_by_name(srv, prefix)
        return got if set(got) >= set(want) else None
    return wait_until(pred, DEADLINE, "orders of %d events named %s*" % (len(want), prefix),
                      interval=0.1)


def main():
    exe = exe_from_argv()
    broker = start_broker()
    ordering = Server(exe, name="ordering", extra=[
        "node.modules=ordering", "events.broker=" + broker.url,
        "events.prefetch=%d" % PREFETCH, "events.max_redeliveries=1"])

    step("0. Ordering declares its topology, then stops")
    ordering.start(timeout=20)
    wait_until(lambda: amqp_exists(broker, "queue", MT_ENDPOINT), 15,
               "queue %s declared by Ordering" % MT_ENDPOINT, interval=0.2)
    ordering.stop()

    step("1. 160 events queued: a poison one and duplicates among them")
    good = [envelope("batch-%03d" % i) for i in range(160)]
    poison = envelope("batch-poison", cvv="12345")
    queued = good[:80] + [poison] + good[80:]
    queued.insert(11, good[10])          # a duplicate right behind its twin
    queued.insert(120, good[40])         # and one further on
    publish_all(broker, queued)
    check_eq(amqp_queue_count(broker, MT_ENDPOINT), len(queued), "messages queued")
    ordering.start(timeout=20)
    want = {e["message"]["userName"] for e in good}
    got = wait_orders(ordering, want, "batch-")
    wait_queue_drained(broker, MT_ENDPOINT, DEADLINE)
    got = orders_by_name(ordering, "batch-")
    check_eq(sorted(n for n, c in got.items() if c != 1), [],
             "names with other than one order")
    check_eq(sorted(want - set(got)), [], "good events without an order")
    check_eq(sorted(set(got) - want), [], "orders of other events (the poison one)")
    errs = wait_until(lambda: error_ids(broker) or None, DEADLINE,
                      "the poison event in %s" % MT_ERROR, interval=0.2)
    check_eq(errs, [poison["messageId"].lower()], "the error queue holds the poison event alone")
    multi = metric(ordering, "monoshop_amqp_acks_total", 'result="multiple"')
    say("   acks: multiple %d, single %d" % (
        multi, metric(ordering, "monoshop_amqp_acks_total", 'result="single"')))
    check(multi >= 1, "some batches were acked with one multiple ack")
    check_eq(metric(ordering, "monoshop_events_consumed_total", 'result="ok"'),
             float(len(queued) - 1), "events delivered with verdict ok (duplicates included)")

    step("2. duplicates of events handled before: no new order")
    ordering.stop()
    again = [good[0], good[99], envelope("batch-late")]
    publish_all(broker, again)
    ordering.start(timeout=20)
    wait_orders(ordering, want | {"batch-late"}, "batch-")
    wait_queue_drained(broker, MT_ENDPOINT, DEADLINE)
    got = orders_by_name(ordering, "batch-")
    check_eq(sorted(n for n, c in got.items() if c != 1), [],
             "names with other than one order after redelivered duplicates")
    check_eq(len(got), len(want) + 1, "orders")

    step("3. a batch whose COMMIT fails: nothing acked, all delivered again")
    ordering.stop()
    breaker = envelope("commit-breaker")
    bid = breaker["messageId"].lower()
    # A deferred foreign key is checked at COMMIT: the event's own step
    # succeeds, the batch's commit fails.
    sql(ordering.db("ordering"),
        "CREATE TABLE test_parent(id INTEGER PRIMARY KEY)")
    sql(ordering.db("ordering"),
        "CREATE TABLE test_child(pid INTEGER REFERENCES test_parent(id) "
        "DEFERRABLE INITIALLY DEFERRED)")
    sql(ordering.db("ordering"),
        "CREATE TRIGGER test_break AFTER INSERT ON inbox "
        "WHEN lower(NEW.id) = '%s' BEGIN INSERT INTO test_child VALUES (42); END" % bid)
    more = [envelope("commit-%03d" % i) for i in range(60)]
    publish_all(broker, more[:30] + [breaker] + more[30:])
    ordering.start(timeout=20)
    want2 = {e["message"]["userName"] for e in more}
    wait_orders(ordering, want2, "commit-")
    errs = wait_until(lambda: error_ids(broker) or None, DEADLINE,
                      "the commit-breaking event in %s" % MT_ERROR, interval=0.2)
    check_eq(errs, [bid], "the error queue holds the commit-breaking event alone")
    wait_queue_drained(broker, MT_ENDPOINT, DEADLINE)
    got = orders_by_name(ordering, "commit-")
    check_eq(sorted(n for n, c in got.items() if c != 1), [],
             "names with other than one order")
    check_eq(sorted(want2 - set(got)), [], "good events without an order")
    check_eq(sorted(set(got) - want2), [], "orders of other events (the breaker)")
    check_eq(sql(ordering.db("ordering"), "SELECT count(*) FROM inbox WHERE lower(id) = ?",
                 (bid,))[0][0], 0, "inbox rows of the commit-breaking event")
    check("was not committed" in ordering.log(),
          "the failed batch commit was logged (the batch path ran)")
    # An event counts as consumed when its batch commits: the good events
    # of the batch that failed count once, when they are committed later.
    check_eq(metric(ordering, "monoshop_events_consumed_total", 'result="ok"'),
             float(len(more)), "events consumed ok (each committed once)")
    ordering.stop()
    integrity_check(ordering.data_dir)
    say("ok: batches commit before they ack; poison and commit failures stay alone")


if __name__ == "__main__":
    run_with_broker(main)
