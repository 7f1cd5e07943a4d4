/* SPDX-License-Identifier: MIT */
/*
 * The cost of decoding one MassTransit envelope (tp_amqp_envelope_decode),
 * the bulk of what Ordering's AMQP consumer thread does per message besides
 * the broker round trip (scenario 4's consumer drain), and of encoding one
 * (tp_amqp_envelope_encode), what Basket's relay does per event before the
 * publish. It decodes, N times each: the golden fixtures of
 * tests/fixtures/masstransit/ (the .NET Basket's envelope, without items,
 * and ours), and the envelope our own encoder writes for a 2-item
 * BasketCheckoutEvent (~1956 bytes, the body the pipeline carries); then
 * it encodes that event N times. Each is timed over several rounds and the
 * fastest round is kept: the machines are shared, and a round slowed by a
 * neighbour says nothing about the code.
 *
 * Output: one JSON object per body on stdout, {"bench":
 * "envelope_decode", "body", "bytes", "ns_per_decode"}, then {"bench":
 * "envelope_encode", "body", "bytes", "ns_per_encode"}.
 *
 *   envelope_bench [--iterations N] [--rounds R] [--fixtures DIR]
 */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "events.pb-c.h"
#include "transport/amqp/envelope.h"

#ifndef MS_FIXTURES
#error "MS_FIXTURES must name tests/fixtures"
#endif

/* slurp reads |dir|/masstransit/|name| into a malloc'd buffer, or exits. */
static char *
slurp(const char *dir, const char *name, size_t *len)
{
	char path[1024];
	FILE *f;
	long n;
	char *buf;

	snprintf(path, sizeof(path), "%s/masstransit/%s", dir, name);
	f = fopen(path, "rb");
	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0) {
		fprintf(stderr, "envelope_bench: cannot read %s\n", path);
		exit(1);
	}
	rewind(f);
	buf = malloc((size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "envelope_bench: cannot read %s\n", path);
		exit(1);
	}
	fclose(f);
	*len = (size_t)n;
	return buf;
}

#define EVENT_TYPE "monoshop.events.BasketCheckoutEvent"

/* What the relay hands the encoder for the golden fixture's event. */
static const struct tp_amqp_env_meta meta = {
    .message_id = "5a3e2f10-7c4b-4d1e-9f2a-0b6c8d7e1f23",
    .source_address = "rabbitmq://localhost/monoshop_basket",
    .destination_address = "rabbitmq://localhost/"
                           "BuildingBlocks.Messaging.Events:"
                           "BasketCheckoutEvent",
    .sent_ms = 1795930801456LL,
    .traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    .machine_name = "shop-1",
    .process_name = "monoshop",
    .process_id = 4242,
};

/* packed_event packs a 2-item checkout (the event of the golden fixture)
 * into |pb|; returns its length. */
static size_t
packed_event(uint8_t pb[1024])
{
	Monoshop__Events__BasketCheckoutEvent ev =
	    MONOSHOP__EVENTS__BASKET_CHECKOUT_EVENT__INIT;
	Monoshop__Events__BasketCheckoutItem it[2] = {
	    MONOSHOP__EVENTS__BASKET_CHECKOUT_ITEM__INIT,
	    MONOSHOP__EVENTS__BASKET_CHECKOUT_ITEM__INIT};
	Monoshop__Events__BasketCheckoutItem *pit[2] = {&it[0], &it[1]};

	ev.id = "5a3e2f10-7c4b-4d1e-9f2a-0b6c8d7e1f23";
	ev.occurredon = "2026-11-29T05:40:01.123Z";
	ev.username = "swn";
	ev.customerid = "58c49479-ec65-4de2-86e7-033c546291aa";
	ev.totalprice = "1400.50";
	ev.firstname = "mehmet";
	ev.lastname = "ozkaya";
	ev.emailaddress = "mehmet@gmail.com";
	ev.addressline = "Bahcelievler No:4";
	ev.country = "Turkey";
	ev.state = "Istanbul";
	ev.zipcode = "38050";
	ev.cardname = "mehmet";
	ev.cardnumber = "5555555555554444";
	ev.expiration = "12/28";
	ev.cvv = "355";
	ev.paymentmethod = 1;
	it[0].productid = "5334c996-8457-4cf0-815c-ed2b77c4ff61";
	it[0].productname = "IPhone X";
	it[0].quantity = 1;
	it[0].price = "950.00";
	it[0].color = "Black";
	it[1].productid = "c67d6323-e8b1-4bdf-9a75-b0d0d2e7e914";
	it[1].productname = "Samsung 10";
	it[1].quantity = 2;
	it[1].price = "225.25";
	it[1].color = "Red";
	ev.n_items = 2;
	ev.items = pit;
	assert(protobuf_c_message_get_packed_size(&ev.base) <= 1024);
	return protobuf_c_message_pack(&ev.base, pb);
}

/* encoded returns the envelope our encoder writes for the event of
 * packed_event, malloc'd, or exits. */
static char *
encoded(size_t *len)
{
	uint8_t pb[1024];
	size_t n = packed_event(pb);
	char *out = NULL;
	int rc;

	rc = tp_amqp_envelope_encode(EVENT_TYPE, pb, n, &meta, &out, len);
	if (rc != 0) {
		fprintf(stderr, "envelope_bench: encode: %s\n",
		        ms_strerror(rc));
		exit(1);
	}
	return out;
}

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* bench prints the fastest round's ns per decode of |body|; exits if the
 * body does not decode. */
static void
bench(const char *name, const char *body, size_t len, long iterations,
      int rounds)
{
	double best = 0;

	for (int r = 0; r < rounds; r++) {
		double t0 = now_ns();
		double ns;

		for (long i = 0; i < iterations; i++) {
			struct tp_amqp_decoded d;
			char why[256];
			int rc = tp_amqp_envelope_decode(body, len, &d, why,
			                                 sizeof(why));

			if (rc != 0) {
				fprintf(stderr, "envelope_bench: %s: %s (%s)\n",
				        name, ms_strerror(rc), why);
				exit(1);
			}
			tp_amqp_decoded_fini(&d);
		}
		ns = (now_ns() - t0) / (double)iterations;
		if (r == 0 || ns < best) {
			best = ns;
		}
	}
	printf("{\"bench\": \"envelope_decode\", \"body\": \"%s\", "
	       "\"bytes\": %zu, \"ns_per_decode\": %.0f}\n",
	       name, len, best);
}

/* bench_encode prints the fastest round's ns per encode of the event of
 * packed_event (unpacking the payload included: the relay hands the
 * encoder the outbox's bytes); exits if it does not encode. */
static void
bench_encode(long iterations, int rounds)
{
	uint8_t pb[1024];
	size_t n = packed_event(pb);
	size_t len = 0;
	double best = 0;

	for (int r = 0; r < rounds; r++) {
		double t0 = now_ns();
		double ns;

		for (long i = 0; i < iterations; i++) {
			char *out = NULL;
			int rc = tp_amqp_envelope_encode(EVENT_TYPE, pb, n,
			                                 &meta, &out, &len);

			if (rc != 0) {
				fprintf(stderr, "envelope_bench: encode: %s\n",
				        ms_strerror(rc));
				exit(1);
			}
			free(out);
		}
		ns = (now_ns() - t0) / (double)iterations;
		if (r == 0 || ns < best) {
			best = ns;
		}
	}
	printf("{\"bench\": \"envelope_encode\", \"body\": "
	       "\"encoded-2-items\", \"bytes\": %zu, \"ns_per_encode\": "
	       "%.0f}\n",
	       len, best);
}

int
main(int argc, char **argv)
{
	static const char *const fixtures[] = {
	    "basket-checkout-from-dotnet.json",
	    "monoshop-basket-checkout.json",
	};
	const char *dir = MS_FIXTURES;
	long iterations = 100000;
	int rounds = 5;
	char *body;
	size_t len;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
			iterations = atol(argv[++i]);
		} else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
			rounds = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--fixtures") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else {
			fprintf(stderr,
			        "usage: envelope_bench [--iterations N] "
			        "[--rounds R] [--fixtures DIR]\n");
			return 2;
		}
	}
	if (iterations < 1 || rounds < 1) {
		fprintf(stderr, "envelope_bench: N and R must be positive\n");
		return 2;
	}
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		body = slurp(dir, fixtures[i], &len);
		bench(fixtures[i], body, len, iterations, rounds);
		free(body);
	}
	body = encoded(&len);
	bench("encoded-2-items", body, len, iterations, rounds);
	free(body);
	bench_encode(iterations, rounds);
	return 0;
}
