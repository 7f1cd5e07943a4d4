/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the MassTransit envelope as a RabbitMQ delivery's body
 * brings it (tp_amqp_envelope_decode), then what the AMQP consumer does
 * with a decoded one: bus_deliver to the real Ordering module
 * (fuzz_env.h), with the envelope's messageId as the event id.
 *
 * Oracles, beyond the sanitizers: the answer is 0, MS_ENOTSUP or MS_EINVAL
 * (with a reason) and nothing else but MS_ENOMEM; a decoded envelope has a
 * GUID messageId and a payload that unpacks as its type; when it is
 * complete enough to be encoded again (tp_amqp_envelope_encode), that
 * envelope decodes to the same payload; the delivery is no server error
 * (500).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "events.pb-c.h"
#include "fuzz_env.h"
#include "transport/amqp/envelope.h"
#include "transport/transport.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_quiet();
	fz_env_tick();
	return 0;
}

static void
check_decoded(const struct tp_amqp_decoded *d)
{
	Monoshop__Events__BasketCheckoutEvent *ev;

	if (d->type == NULL ||
	    strcmp(d->type,
	           monoshop__events__basket_checkout_event__descriptor.name) !=
	        0) {
		fz_fail("decoded to type %s", d->type ? d->type : "(null)");
	}
	if (!ms_uuid_valid(d->message_id)) {
		fz_fail("decoded messageId '%s' is not a GUID", d->message_id);
	}
	ev = monoshop__events__basket_checkout_event__unpack(NULL, d->len,
	                                                     d->payload);
	if (ev == NULL) {
		fz_fail("decoded payload does not unpack");
	}
	monoshop__events__basket_checkout_event__free_unpacked(ev, NULL);
}

/* dated tells whether the decoded event has its occurredOn. */
static bool
dated(const struct tp_amqp_decoded *d)
{
	Monoshop__Events__BasketCheckoutEvent *ev =
	    monoshop__events__basket_checkout_event__unpack(NULL, d->len,
	                                                    d->payload);
	bool yes = ev != NULL && ev->occurredon[0] != '\0';

	monoshop__events__basket_checkout_event__free_unpacked(ev, NULL);
	return yes;
}

/*
 * encode(decode(x)) decodes to the same event. Except its date: an event
 * that came with neither occurredOn nor sentTime has none, and our
 * envelope always has a sentTime, which the decoder takes for it then.
 */
static void
round_trip(const struct tp_amqp_decoded *d)
{
	struct tp_amqp_env_meta meta = {
	    .message_id = d->message_id,
	    .destination_address = "rabbitmq://localhost/fuzz",
	    .sent_ms = d->sent_ms,
	    .traceparent = d->traceparent,
	    .machine_name = "fuzz",
	    .process_name = "monoshop",
	    .process_id = 1,
	};
	struct tp_amqp_decoded d2;
	char why[256] = "";
	char *out = NULL;
	size_t outlen = 0;
	int rc;

	rc = tp_amqp_envelope_encode(d->type, d->payload, d->len, &meta, &out,
	                             &outlen);
	/* The decoder keeps the protobuf default for a missing field (the
	 * consumer judges the event), the encoder publishes only complete
	 * events: MS_EINVAL is its answer to an incomplete one. */
	if (rc == MS_ENOMEM || rc == MS_EINVAL) {
		return;
	}
	if (rc != 0) {
		fz_fail("a decoded envelope does not encode: %s",
		        ms_errname(rc));
	}
	memset(&d2, 0, sizeof(d2));
	rc = tp_amqp_envelope_decode(out, outlen, &d2, why, sizeof(why));
	if (rc != 0 && rc != MS_ENOMEM) {
		fz_fail("our own envelope does not decode: %s (%s)",
		        ms_errname(rc), why);
	}
	if (rc == 0 &&
	    (strcmp(d2.message_id, d->message_id) != 0 ||
	     (dated(d) && (d2.len != d->len ||
	                   memcmp(d2.payload, d->payload, d->len) != 0)))) {
		fz_fail("encode/decode changed the event:\n%.*s", (int)outlen,
		        out);
	}
	tp_amqp_decoded_fini(&d2);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_env *e = fz_env_tick();
	struct tp_amqp_decoded d;
	struct bus_event ev = {0};
	char why[256] = "";
	int rc;

	memset(&d, 0, sizeof(d));
	rc = tp_amqp_envelope_decode((const char *)data, size, &d, why,
	                             sizeof(why));
	if (rc == MS_EINVAL && why[0] == '\0') {
		fz_fail("MS_EINVAL without a reason");
	}
	if (rc != 0 && rc != MS_EINVAL && rc != MS_ENOTSUP && rc != MS_ENOMEM) {
		fz_fail("tp_amqp_envelope_decode: unexpected %s",
		        ms_errname(rc));
	}
	if (rc != 0) {
		tp_amqp_decoded_fini(&d);
		return 0;
	}
	check_decoded(&d);
	round_trip(&d);
	ms_strlcpy(ev.id, d.message_id, sizeof(ev.id));
	ev.type = d.type;
	ev.payload = d.payload;
	ev.len = d.len;
	ev.traceparent = d.traceparent;
	ev.occurred_ms = d.sent_ms;
	ev.attempt = 1;
	fz_check_rc(bus_deliver(e->bus, &ev), "BasketCheckoutEvent delivery");
	tp_amqp_decoded_fini(&d);
	return 0;
}
