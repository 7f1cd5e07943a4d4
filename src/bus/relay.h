/* SPDX-License-Identifier: MIT */
/*
 * The outbox relay: one thread per store that has an outbox with events to
 * deliver. It reads pending rows in order, publishes them through the bus
 * with up to |batch| in flight at once (a sliding window: it refills as
 * confirms come back, never waiting for the slowest one, and never has one
 * row in flight twice), and marks each row sent only once the transport
 * confirms it (consumed in process, or confirmed by the broker). Rows are
 * published in seq order, but a row whose publish failed goes out again
 * after later ones (as it always did): consumers get no order guarantee.
 * A failed publish leaves the row pending; it is retried after a backoff,
 * once the rows in flight have come back. Rows left pending by a crash, or
 * confirmed but not yet marked when it came, are delivered after the next
 * start. Delivery is at least once: subscribers dedupe with the inbox.
 */
#ifndef MS_BUS_RELAY_H
#define MS_BUS_RELAY_H

#include <stdbool.h>

struct bus;
struct store;
struct bus_relay;

struct bus_relay_opts {
	int batch;   /* rows in flight at once, the window (default 64) */
	int poll_ms; /* re-scan interval when idle (default 1000) */
	bool hold;   /* test hook: deliver nothing (debug.hold_events) */
};

/* bus_relay_start starts the relay of |st| on |bus|. Returns 0 or MS_E*. */
int bus_relay_start(struct bus_relay **out, struct bus *bus, struct store *st,
                    const struct bus_relay_opts *opts);

/* bus_relay_stop stops publishing, waits for publishes in flight (their rows
 * stay pending unless confirmed; the confirmed ones are marked sent), joins
 * and frees. It waits as long as the transport takes to complete them
 * (transports bound it: confirm timeouts). NULL is a no-op. */
void bus_relay_stop(struct bus_relay *r);

#endif
