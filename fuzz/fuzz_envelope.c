/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the MassTransit envelope as a RabbitMQ delivery's body
 * brings it (tp_amqp_envelope_decode), then what the AMQP consumer does
 * with a decoded one: bus_deliver to the real Ordering module
 * (fuzz_env.h), with the envelope's messageId as the event id.
 *
 * Oracles, beyond the sanitizers: the answer is 0, MS_ENOTSUP or MS_EINVAL
 * (with a reason) and nothing else but MS_ENOMEM; the decoder refuses the
 * body as "not JSON" exactly when ms_json_loads_exact (with
 * MS_JSON_TRAILING_COMMAS: the texts its one-pass parser is to accept)
 * refuses it; a decoded envelope has a GUID messageId and a payload that
 * unpacks as its type; when it is complete enough to be encoded again
 * (tp_amqp_envelope_encode), that envelope decodes to the same payload;
 * the delivery is no server error (500). And the other way round: a
 * checkout built from the input's bytes (encode_round_trip) is encoded
 * exactly when its strings are text we carry, and decodes back to itself.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/json_exact.h"
#include "core/money.h"
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

/*
 * The decoder's JSON reader accepts exactly what ms_json_loads_exact with
 * MS_JSON_TRAILING_COMMAS accepts: it says "not JSON" (MS_EINVAL, the
 * reason's prefix; an empty body is "the body is empty") for those texts
 * and only those. Any other answer - 0, MS_ENOTSUP, a schema reason - means
 * it read the text as JSON.
 */
static void
check_json_verdict(const uint8_t *data, size_t size, int rc, const char *why)
{
	json_t *root = NULL;
	bool refused;
	int jrc;

	if (rc == MS_ENOMEM || size > TP_AMQP_ENVELOPE_MAX) {
		return;
	}
	refused = rc == MS_EINVAL && (strncmp(why, "not JSON", 8) == 0 ||
	                              (size == 0 && strcmp(why, "the body is "
	                                                        "empty") == 0));
	jrc = ms_json_loads_exact((const char *)data, size,
	                          MS_JSON_TRAILING_COMMAS, &root, NULL);
	json_decref(root);
	if (jrc == MS_ENOMEM) {
		return;
	}
	if (refused != (jrc == MS_EJSON)) {
		fz_fail("the decoder says \"%s\" (%s), ms_json_loads_exact %s",
		        why, ms_errname(rc), jrc == 0 ? "accepts" : "refuses");
	}
}

/* mix returns the next number of splitmix64 from the state *h (seeded
 * with an FNV-1a hash of the input): the numbers of
 * encode_round_trip's checkout. */
static uint64_t
mix(uint64_t *h)
{
	uint64_t z = (*h += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* guid_of writes a lower-case GUID made of |h|'s next numbers. */
static char *
guid_of(uint64_t *h, char g[MS_UUID_STRLEN])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t a = mix(h), b = mix(h);

	for (int i = 0; i < 36; i++) {
		uint64_t *v = i < 18 ? &a : &b;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			g[i] = '-';
		} else {
			g[i] = hex[*v & 0xf];
			*v >>= 4;
		}
	}
	g[36] = '\0';
	return g;
}

/* A checkout's text fields come from the runs of the input between its
 * '"' (for a JSON body: its keys and strings as written, escapes and
 * all), one after the other and round again; at most this many runs. */
#define RT_PIECES 64
#define RT_ITEMS  3

struct rt_text {
	char *s[RT_PIECES]; /* malloc'd, NUL-terminated (cut at a NUL) */
	size_t n;
	size_t next;
	bool ok; /* every run handed out is text the encoder carries */
};

static char *
rt_take(struct rt_text *t)
{
	char *s = t->s[t->next++ % t->n];
	size_t len = strlen(s);

	t->ok &= len <= 4096 && ms_utf8_valid(s, len);
	return s;
}

/*
 * encode_round_trip builds a checkout from |data|: its strings are runs of
 * the input (rt_text); its GUIDs, amounts, integers and times come from a
 * hash of it, in the canonical form the decoder gives them back in (GUIDs
 * in lower case, money with two decimals, occurredOn as ms_time_rfc3339
 * writes sentTime, the id the messageId). The encoder must take it exactly
 * when every string is text (valid UTF-8, no control characters but tab,
 * CR and LF, at most 4096 bytes), and the decoder must give back the same
 * packed event and envelope facts.
 */
static void
encode_round_trip(const uint8_t *data, size_t size)
{
	Monoshop__Events__BasketCheckoutEvent ev =
	    MONOSHOP__EVENTS__BASKET_CHECKOUT_EVENT__INIT;
	Monoshop__Events__BasketCheckoutItem it[RT_ITEMS];
	Monoshop__Events__BasketCheckoutItem *pit[RT_ITEMS];
	char gid[MS_UUID_STRLEN], gcust[MS_UUID_STRLEN];
	char gprod[RT_ITEMS][MS_UUID_STRLEN];
	char total[MS_MONEY_STRLEN], price[RT_ITEMS][MS_MONEY_STRLEN];
	char when[MS_TIME_STRLEN];
	char tp[64];
	struct rt_text t = {.ok = true};
	struct tp_amqp_env_meta meta = {
	    .destination_address = "rabbitmq://localhost/fuzz",
	    .process_name = "monoshop",
	};
	struct tp_amqp_decoded d;
	uint64_t h = 14695981039346656037ULL;
	char why[256] = "";
	uint8_t *pb = NULL;
	size_t pblen, start = 0;
	char *out = NULL;
	size_t outlen = 0;
	int rc;

	for (size_t i = 0; i <= size && t.n < RT_PIECES; i++) {
		if (i == size || data[i] == '"') {
			t.s[t.n] =
			    strndup((const char *)data + start, i - start);
			if (t.s[t.n] == NULL) {
				goto done;
			}
			t.n++;
			start = i + 1;
		}
	}
	for (size_t i = 0; i < size; i++) {
		h = (h ^ data[i]) * 1099511628211ULL;
	}
	/* 1970 to 9999: the years an RFC 3339 time can have. */
	meta.sent_ms = (int64_t)(mix(&h) % 253402300800000ULL);
	meta.message_id = guid_of(&h, gid);
	meta.source_address = rt_take(&t);
	meta.machine_name = rt_take(&t);
	meta.process_id = (int32_t)(uint32_t)mix(&h);
	if (mix(&h) & 1) {
		snprintf(tp, sizeof(tp), "00-%016llx%016llx-%016llx-01",
		         (unsigned long long)(mix(&h) | 1),
		         (unsigned long long)mix(&h),
		         (unsigned long long)(mix(&h) | 1));
		meta.traceparent = tp;
	}
	ev.id = gid;
	ev.occurredon = ms_time_rfc3339(meta.sent_ms, when);
	ev.username = rt_take(&t);
	ev.customerid = guid_of(&h, gcust);
	ev.totalprice = ms_money_format_fixed(
	    (int64_t)(mix(&h) % (2 * (uint64_t)MS_MONEY_MAX_CENTS + 1)) -
	        MS_MONEY_MAX_CENTS,
	    total);
	ev.firstname = rt_take(&t);
	ev.lastname = rt_take(&t);
	ev.emailaddress = rt_take(&t);
	ev.addressline = rt_take(&t);
	ev.country = rt_take(&t);
	ev.state = rt_take(&t);
	ev.zipcode = rt_take(&t);
	ev.cardname = rt_take(&t);
	ev.cardnumber = rt_take(&t);
	ev.expiration = rt_take(&t);
	ev.cvv = rt_take(&t);
	ev.paymentmethod = (int32_t)(uint32_t)mix(&h);
	ev.n_items = size > 0 ? data[0] % (RT_ITEMS + 1) : 0;
	ev.items = pit;
	for (size_t i = 0; i < ev.n_items; i++) {
		monoshop__events__basket_checkout_item__init(&it[i]);
		it[i].productid = guid_of(&h, gprod[i]);
		it[i].productname = rt_take(&t);
		it[i].quantity = (int32_t)(uint32_t)mix(&h);
		it[i].price = ms_money_format_fixed(
		    (int64_t)(mix(&h) % 100000000000ULL), price[i]);
		it[i].color = rt_take(&t);
		pit[i] = &it[i];
	}
	pblen = protobuf_c_message_get_packed_size(&ev.base);
	pb = malloc(pblen > 0 ? pblen : 1);
	if (pb == NULL) {
		goto done;
	}
	protobuf_c_message_pack(&ev.base, pb);

	rc = tp_amqp_envelope_encode(ev.base.descriptor->name, pb, pblen, &meta,
	                             &out, &outlen);
	if (rc == MS_ENOMEM) {
		goto done;
	}
	if ((rc == 0) != t.ok || (rc != 0 && rc != MS_EINVAL)) {
		fz_fail("the encoder answers %s to a checkout whose strings "
		        "are %s",
		        ms_errname(rc), t.ok ? "text" : "not all text");
	}
	if (rc != 0) {
		goto done;
	}
	memset(&d, 0, sizeof(d));
	rc = tp_amqp_envelope_decode(out, outlen, &d, why, sizeof(why));
	if (rc == MS_ENOMEM) {
		goto done;
	}
	if (rc != 0) {
		fz_fail("our own envelope does not decode: %s (%s):\n%.*s",
		        ms_errname(rc), why, (int)outlen, out);
	}
	if (d.len != pblen || memcmp(d.payload, pb, pblen) != 0 ||
	    strcmp(d.message_id, gid) != 0 || d.sent_ms != meta.sent_ms ||
	    (d.traceparent == NULL) != (meta.traceparent == NULL) ||
	    (d.traceparent != NULL &&
	     strcmp(d.traceparent, meta.traceparent) != 0)) {
		fz_fail("decode(encode(checkout)) is another checkout:\n%.*s",
		        (int)outlen, out);
	}
	tp_amqp_decoded_fini(&d);
done:
	for (size_t i = 0; i < t.n; i++) {
		free(t.s[i]);
	}
	free(pb);
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
	check_json_verdict(data, size, rc, why);
	encode_round_trip(data, size);
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
