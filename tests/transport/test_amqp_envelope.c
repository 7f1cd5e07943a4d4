/* SPDX-License-Identifier: MIT */
/*
 * Tests of the MassTransit envelope (src/transport/amqp/envelope.c) against
 * golden fixtures in tests/fixtures/masstransit/: the body the original
 * .NET Basket publishes (basket-checkout-from-dotnet.json, no items), the
 * body we publish for a fixed event (monoshop-basket-checkout.json,
 * compared as JSON values: key order aside, every member must match; and
 * byte for byte as the compact text jansson's json_dumps wrote, the
 * encoder's string escapes against literal JSON text), and bad envelopes.
 * Around them: round trips of every field, decimals as strings and
 * numbers, names in any case, trailing commas, unknown members, unknown
 * types, and malformed input of every kind - each prefix of a real body
 * and single-byte corruptions must be refused without a crash. Bodies are
 * handed over in exact-size heap copies, so valgrind and ASan catch any read
 * past |len|.
 */
#include <check.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"
#include "core/err.h"
#include "events.pb-c.h"
#include "transport/amqp/envelope.h"

#ifndef MS_FIXTURES
#error "MS_FIXTURES must name tests/fixtures"
#endif

#define EVENT_TYPE "monoshop.events.BasketCheckoutEvent"
#define EVENT_URN                                                              \
	"urn:message:BuildingBlocks.Messaging.Events:BasketCheckoutEvent"
#define DOTNET_FIXTURE "basket-checkout-from-dotnet.json"
#define GOLDEN         "monoshop-basket-checkout.json"
#define DOTNET_MSGID   "0e4a0000-5d3c-0015-5b9a-08dcfa1b2c3d"

/* 2026-11-29T05:40:01.456Z and 2026-11-29T10:15:30.234Z */
#define FIXED_SENT_MS  1795930801456LL
#define DOTNET_SENT_MS 1795947330234LL

/* ---- helpers ------------------------------------------------------------ */

/* slurp reads fixture |name| into a NUL-terminated malloc'd buffer. */
static char *
slurp(const char *name, size_t *len)
{
	char path[512];
	FILE *f;
	long n;
	char *buf;

	snprintf(path, sizeof(path), "%s/masstransit/%s", MS_FIXTURES, name);
	f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	buf[n] = '\0';
	if (len != NULL) {
		*len = (size_t)n;
	}
	return buf;
}

/* replace returns a malloc'd copy of |s| with the first |from| replaced by
 * |to|; |from| must occur. */
static char *
replace(const char *s, const char *from, const char *to)
{
	const char *p = strstr(s, from);
	size_t a, b, c;
	char *r;

	ck_assert_msg(p != NULL, "\"%s\" not found", from);
	a = (size_t)(p - s);
	b = strlen(to);
	c = strlen(p + strlen(from));
	r = malloc(a + b + c + 1);
	ck_assert_ptr_nonnull(r);
	memcpy(r, s, a);
	memcpy(r + a, to, b);
	memcpy(r + a + b, p + strlen(from), c + 1);
	return r;
}

/* fixture_with returns the .NET fixture with |from| replaced by |to|. */
static char *
fixture_with(const char *from, const char *to)
{
	char *f = slurp(DOTNET_FIXTURE, NULL);
	char *r = replace(f, from, to);

	free(f);
	return r;
}

/* decode runs the decoder on an exact-size heap copy of |len| bytes. */
static int
decode(const char *body, size_t len, struct tp_amqp_decoded *d, char *why,
       size_t whylen)
{
	char *copy = malloc(len > 0 ? len : 1);
	int rc;

	ck_assert_ptr_nonnull(copy);
	if (len > 0) {
		memcpy(copy, body, len);
	}
	rc = tp_amqp_envelope_decode(copy, len, d, why, whylen);
	free(copy);
	return rc;
}

/* decode_ok decodes |body| and unpacks the event (free it with
 * monoshop__events__basket_checkout_event__free_unpacked). */
static Monoshop__Events__BasketCheckoutEvent *
decode_ok(const char *body, struct tp_amqp_decoded *d)
{
	char why[256] = "";
	Monoshop__Events__BasketCheckoutEvent *ev;
	int rc = decode(body, strlen(body), d, why, sizeof(why));

	ck_assert_msg(rc == 0, "decode: %s (%s)", ms_strerror(rc), why);
	ck_assert_str_eq(d->type, EVENT_TYPE);
	ck_assert_ptr_nonnull(d->payload);
	ev = monoshop__events__basket_checkout_event__unpack(NULL, d->len,
	                                                     d->payload);
	ck_assert_ptr_nonnull(ev);
	return ev;
}

/* decode_bad checks that |len| bytes of |body| are refused with |want|
 * and a reason holding |needle|, and that nothing is left allocated. */
static void
decode_bad_n(const char *body, size_t len, int want, const char *needle)
{
	struct tp_amqp_decoded d;
	char why[256] = "unset";
	int rc = decode(body, len, &d, why, sizeof(why));

	ck_assert_msg(rc == want, "got %s, want %s (%s)", ms_errname(rc),
	              ms_errname(want), why);
	ck_assert_msg(strstr(why, needle) != NULL, "reason \"%s\" lacks \"%s\"",
	              why, needle);
	ck_assert_ptr_null(d.payload);
	ck_assert_ptr_null(d.traceparent);
	ck_assert_ptr_null(d.type);
	tp_amqp_decoded_fini(&d);
}

static void
decode_bad(const char *body, int want, const char *needle)
{
	decode_bad_n(body, strlen(body), want, needle);
}

static void
fixture_bad(const char *name, int want, const char *needle)
{
	char *body = slurp(name, NULL);

	decode_bad(body, want, needle);
	free(body);
}

/* with_bad checks the .NET fixture with |from| replaced by |to|. */
static void
with_bad(const char *from, const char *to, int want, const char *needle)
{
	char *body = fixture_with(from, to);

	decode_bad(body, want, needle);
	free(body);
}

/* with_event decodes the .NET fixture with |from| replaced by |to|. */
static Monoshop__Events__BasketCheckoutEvent *
with_event(const char *from, const char *to, struct tp_amqp_decoded *d)
{
	char *body = fixture_with(from, to);
	Monoshop__Events__BasketCheckoutEvent *ev = decode_ok(body, d);

	free(body);
	return ev;
}

static void
free_event(Monoshop__Events__BasketCheckoutEvent *ev)
{
	monoshop__events__basket_checkout_event__free_unpacked(ev, NULL);
}

/* The fixed event of the golden file, packed into *out (malloc'd). */
static void
fixed_event(const char *total, const char *price0, uint8_t **out, size_t *len)
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
	ev.totalprice = (char *)total;
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
	it[0].price = (char *)price0;
	it[0].color = "Black";
	it[1].productid = "c67d6323-e8b1-4bdf-9a75-b0d0d2e7e914";
	it[1].productname = "Samsung 10";
	it[1].quantity = 2;
	it[1].price = "225.25";
	it[1].color = "Red";
	ev.n_items = 2;
	ev.items = pit;
	*len = protobuf_c_message_get_packed_size(&ev.base);
	*out = malloc(*len);
	ck_assert_ptr_nonnull(*out);
	ck_assert_uint_eq(protobuf_c_message_pack(&ev.base, *out), *len);
}

static const struct tp_amqp_env_meta fixed_meta = {
    .message_id = "5a3e2f10-7c4b-4d1e-9f2a-0b6c8d7e1f23",
    .conversation_id = NULL,
    .source_address = "rabbitmq://localhost/monoshop_basket",
    .destination_address = "rabbitmq://localhost/"
                           "BuildingBlocks.Messaging.Events:"
                           "BasketCheckoutEvent",
    .sent_ms = FIXED_SENT_MS,
    .traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    .machine_name = "shop-1",
    .process_name = "monoshop",
    .process_id = 4242,
};

/* encode_fixed encodes the fixed event with |meta|. */
static char *
encode_fixed(const struct tp_amqp_env_meta *meta, size_t *len)
{
	uint8_t *pb;
	size_t pblen;
	char *out = NULL;
	int rc;

	fixed_event("1400.50", "950.00", &pb, &pblen);
	rc = tp_amqp_envelope_encode(EVENT_TYPE, pb, pblen, meta, &out, len);
	free(pb);
	ck_assert_msg(rc == 0, "encode: %s", ms_strerror(rc));
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(*len, strlen(out));
	return out;
}

/* json_of parses JSON text with jansson itself (the fixtures hold no real
 * numbers, so nothing is lost). */
static json_t *
json_of(const char *text)
{
	json_error_t je;
	json_t *v = json_loads(text, 0, &je);

	ck_assert_msg(v != NULL, "bad JSON at %d:%d: %s", je.line, je.column,
	              je.text);
	return v;
}

/* assert_same_json checks that two JSON texts are equal values. */
static void
assert_same_json(const char *got, const char *want)
{
	json_t *a = json_of(got);
	json_t *b = json_of(want);

	ck_assert_msg(json_equal(a, b), "JSON differs:\ngot  %s\nwant %s", got,
	              want);
	json_decref(a);
	json_decref(b);
}

/* ---- the .NET fixture --------------------------------------------------- */

START_TEST(dotnet_fixture)
{
	char *body = slurp(DOTNET_FIXTURE, NULL);
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev = decode_ok(body, &d);

	ck_assert_str_eq(d.message_id, DOTNET_MSGID);
	ck_assert_int_eq(d.sent_ms, DOTNET_SENT_MS);
	ck_assert_ptr_null(d.traceparent);
	/* The event's id is the messageId, not the recomputed message.id. */
	ck_assert_str_eq(ev->id, DOTNET_MSGID);
	ck_assert_str_eq(ev->occurredon, "2026-11-29T10:15:30.123Z");
	ck_assert_uint_eq(ev->n_items, 0);
	ck_assert_str_eq(ev->totalprice, "1400.00");
	ck_assert_str_eq(ev->username, "swn");
	ck_assert_str_eq(ev->customerid,
	                 "58c49479-ec65-4de2-86e7-033c546291aa");
	ck_assert_str_eq(ev->firstname, "mehmet");
	ck_assert_str_eq(ev->lastname, "ozkaya");
	ck_assert_str_eq(ev->emailaddress, "mehmet@gmail.com");
	ck_assert_str_eq(ev->addressline, "Bahcelievler No:4");
	ck_assert_str_eq(ev->country, "Turkey");
	ck_assert_str_eq(ev->state, "Istanbul");
	ck_assert_str_eq(ev->zipcode, "38050");
	ck_assert_str_eq(ev->cardname, "mehmet");
	ck_assert_str_eq(ev->cardnumber, "5555555555554444");
	ck_assert_str_eq(ev->expiration, "12/28");
	ck_assert_str_eq(ev->cvv, "355");
	ck_assert_int_eq(ev->paymentmethod, 1);
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	ck_assert_ptr_null(d.payload);
	tp_amqp_decoded_fini(&d); /* twice is harmless */
	tp_amqp_decoded_fini(NULL);
	free(body);
}
END_TEST

START_TEST(dotnet_times)
{
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev;

	/* An offset is applied; a fraction of any length is truncated. */
	ev = with_event("\"2026-11-29T10:15:30.2345678Z\"",
	                "\"2026-11-29T10:15:30+02:00\"", &d);
	ck_assert_int_eq(d.sent_ms, 1795940130000LL);
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	ev = with_event("\"2026-11-29T10:15:30.1234567+00:00\"",
	                "\"2026-11-29T12:15:30.9-01:30\"", &d);
	ck_assert_str_eq(ev->occurredon, "2026-11-29T13:45:30.900Z");
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	/* A bad occurredOn is ignored, as .NET ignores it: sentTime. */
	ev = with_event("\"2026-11-29T10:15:30.1234567+00:00\"", "42", &d);
	ck_assert_str_eq(ev->occurredon, "2026-11-29T10:15:30.234Z");
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	ev = with_event("\"2026-11-29T10:15:30.1234567+00:00\"",
	                "\"2026-02-30T00:00:00Z\"", &d);
	ck_assert_str_eq(ev->occurredon, "2026-11-29T10:15:30.234Z");
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	/* Without either, no time: sent_ms 0. */
	ev = with_event("\"sentTime\": \"2026-11-29T10:15:30.2345678Z\"",
	                "\"sentTime\": null", &d);
	ck_assert_int_eq(d.sent_ms, 0);
	ck_assert_str_eq(ev->occurredon, "2026-11-29T10:15:30.123Z");
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	/* A date alone is midnight UTC. */
	ev = with_event("\"2026-11-29T10:15:30.2345678Z\"", "\"1970-01-02\"",
	                &d);
	ck_assert_int_eq(d.sent_ms, 86400000LL);
	free_event(ev);
	tp_amqp_decoded_fini(&d);

	/* sentTime is the envelope's own: a bad one is refused. */
	with_bad("\"2026-11-29T10:15:30.2345678Z\"", "\"yesterday\"", MS_EINVAL,
	         "sentTime: must be an ISO 8601 time");
	with_bad("\"2026-11-29T10:15:30.2345678Z\"", "\"2026-13-01T00:00Z\"",
	         MS_EINVAL, "sentTime");
	with_bad("\"2026-11-29T10:15:30.2345678Z\"", "\"2026-11-29T24:00Z\"",
	         MS_EINVAL, "sentTime");
	with_bad("\"2026-11-29T10:15:30.2345678Z\"",
	         "\"2026-11-29T10:15:30Z \"", MS_EINVAL, "sentTime");
	with_bad("\"2026-11-29T10:15:30.2345678Z\"",
	         "\"2026-11-29T10:15:30.Z\"", MS_EINVAL, "sentTime");
	with_bad("\"2026-11-29T10:15:30.2345678Z\"", "\"2025-02-29\"",
	         MS_EINVAL, "sentTime");
	with_bad("\"2026-11-29T10:15:30.2345678Z\"", "1795947330234", MS_EINVAL,
	         "sentTime");
}
END_TEST

START_TEST(dotnet_without_occurred_on)
{
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev;

	/* occurredOn absent: the envelope's sentTime, in our form. */
	ev = with_event("\"occurredOn\"", "\"somethingElse\"", &d);
	ck_assert_str_eq(ev->occurredon, "2026-11-29T10:15:30.234Z");
	free_event(ev);
	tp_amqp_decoded_fini(&d);
}
END_TEST

/* ---- what we publish ---------------------------------------------------- */

START_TEST(encode_golden)
{
	size_t len;
	char *out = encode_fixed(&fixed_meta, &len);
	char *golden = slurp(GOLDEN, NULL);
	char *want = replace(golden, "@MONOSHOP_VERSION@", MONOSHOP_VERSION);

	assert_same_json(out, want);
	free(out);
	free(want);
	free(golden);
}
END_TEST

START_TEST(encode_defaults)
{
	struct tp_amqp_env_meta meta = {.sent_ms = FIXED_SENT_MS};
	size_t len;
	char *out = encode_fixed(&meta, &len);
	json_t *v = json_of(out);
	json_t *host = json_object_get(v, "host");

	/* No message_id: the event's id; no conversation: the message id;
	 * addresses and unknown host facts are null; no trace: {}. */
	ck_assert_str_eq(json_string_value(json_object_get(v, "messageId")),
	                 "5a3e2f10-7c4b-4d1e-9f2a-0b6c8d7e1f23");
	ck_assert_str_eq(
	    json_string_value(json_object_get(v, "conversationId")),
	    "5a3e2f10-7c4b-4d1e-9f2a-0b6c8d7e1f23");
	ck_assert(json_is_null(json_object_get(v, "sourceAddress")));
	ck_assert(json_is_null(json_object_get(v, "destinationAddress")));
	ck_assert_uint_eq(json_object_size(json_object_get(v, "headers")), 0);
	ck_assert(json_is_null(json_object_get(host, "machineName")));
	ck_assert_str_eq(
	    json_string_value(json_object_get(host, "processName")),
	    "monoshop");
	ck_assert_int_eq(json_integer_value(json_object_get(host, "processId")),
	                 0);
	json_decref(v);
	free(out);

	/* A message id of our own, upper case: written in lower case. */
	meta.message_id = "0E4A0000-5D3C-0015-5B9A-08DCFA1B2C3D";
	meta.conversation_id = "0e4a0000-5d3c-0015-7e11-08dcfa1b2c3e";
	out = encode_fixed(&meta, &len);
	v = json_of(out);
	ck_assert_str_eq(json_string_value(json_object_get(v, "messageId")),
	                 DOTNET_MSGID);
	ck_assert_str_eq(
	    json_string_value(json_object_get(v, "conversationId")),
	    "0e4a0000-5d3c-0015-7e11-08dcfa1b2c3e");
	/* message.id stays the event's own id. */
	ck_assert_str_eq(json_string_value(json_object_get(
	                     json_object_get(v, "message"), "id")),
	                 "5a3e2f10-7c4b-4d1e-9f2a-0b6c8d7e1f23");
	json_decref(v);
	free(out);
}
END_TEST

START_TEST(encode_money_fixed)
{
	uint8_t *pb;
	size_t pblen, len;
	char *out;
	json_t *v, *msg;

	/* Decimals go out as strings with two decimals, whatever the
	 * event's spelling. */
	fixed_event("1400.5", "950", &pb, &pblen);
	ck_assert_int_eq(tp_amqp_envelope_encode(EVENT_TYPE, pb, pblen,
	                                         &fixed_meta, &out, &len),
	                 0);
	v = json_of(out);
	msg = json_object_get(v, "message");
	ck_assert_str_eq(json_string_value(json_object_get(msg, "totalPrice")),
	                 "1400.50");
	ck_assert_str_eq(
	    json_string_value(json_object_get(
	        json_array_get(json_object_get(msg, "items"), 0), "price")),
	    "950.00");
	json_decref(v);
	free(out);
	free(pb);
}
END_TEST

START_TEST(encode_refuses)
{
	uint8_t *pb;
	size_t pblen, len = 7;
	char *out = (char *)1;
	static const uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};

	fixed_event("1400.50", "950.00", &pb, &pblen);
	/* A type with no MassTransit mapping. */
	ck_assert_int_eq(tp_amqp_envelope_encode("monoshop.discount.Coupon", pb,
	                                         pblen, &fixed_meta, &out,
	                                         &len),
	                 MS_ENOTSUP);
	ck_assert_ptr_null(out);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(
	    tp_amqp_envelope_encode(NULL, pb, pblen, &fixed_meta, &out, &len),
	    MS_ENOTSUP);
	free(pb);

	/* A payload that is no event. */
	ck_assert_int_eq(tp_amqp_envelope_encode(EVENT_TYPE, garbage,
	                                         sizeof(garbage), &fixed_meta,
	                                         &out, &len),
	                 MS_EINVAL);
	ck_assert_ptr_null(out);

	/* What a .NET reader would refuse is never published. */
	fixed_event("1400.505", "950.00", &pb, &pblen);
	ck_assert_int_eq(tp_amqp_envelope_encode(EVENT_TYPE, pb, pblen,
	                                         &fixed_meta, &out, &len),
	                 MS_EINVAL);
	free(pb);
	fixed_event("1400.50", "", &pb, &pblen);
	ck_assert_int_eq(tp_amqp_envelope_encode(EVENT_TYPE, pb, pblen,
	                                         &fixed_meta, &out, &len),
	                 MS_EINVAL);
	free(pb);

	fixed_event("1400.50", "950.00", &pb, &pblen);
	{
		struct tp_amqp_env_meta m = fixed_meta;

		m.message_id = "not-a-guid";
		ck_assert_int_eq(tp_amqp_envelope_encode(EVENT_TYPE, pb, pblen,
		                                         &m, &out, &len),
		                 MS_EINVAL);
		m = fixed_meta;
		m.source_address = "rabbitmq://\xff/x"; /* not UTF-8 */
		ck_assert_int_eq(tp_amqp_envelope_encode(EVENT_TYPE, pb, pblen,
		                                         &m, &out, &len),
		                 MS_EINVAL);
		ck_assert_ptr_null(out);
	}
	free(pb);
}
END_TEST

/* encode_texts encodes the fixed event with userName |user| (|n| bytes,
 * may hold a NUL) and sourceAddress |source|; returns the encoder's code,
 * with the envelope in *out (NULL on failure). */
static int
encode_texts(const char *user, size_t n, const char *source, char **out,
             size_t *len)
{
	struct tp_amqp_env_meta meta = fixed_meta;
	Monoshop__Events__BasketCheckoutEvent *ev;
	uint8_t *pb, *pb2;
	size_t pblen, pb2len;
	char *own;
	char *saved;
	int rc;

	fixed_event("1400.50", "950.00", &pb, &pblen);
	ev = monoshop__events__basket_checkout_event__unpack(NULL, pblen, pb);
	ck_assert_ptr_nonnull(ev);
	own = malloc(n + 1);
	ck_assert_ptr_nonnull(own);
	memcpy(own, user, n);
	own[n] = '\0';
	saved = ev->username;
	ev->username = own;
	/* A protobuf string is its bytes: the length is the whole |n|. */
	pb2len = protobuf_c_message_get_packed_size(&ev->base);
	pb2 = malloc(pb2len);
	ck_assert_ptr_nonnull(pb2);
	protobuf_c_message_pack(&ev->base, pb2);
	ev->username = saved;
	free_event(ev);
	free(own);
	meta.source_address = source;
	*out = (char *)1;
	*len = 7;
	rc = tp_amqp_envelope_encode(EVENT_TYPE, pb2, pb2len, &meta, out, len);
	if (rc != 0) {
		ck_assert_ptr_null(*out);
		ck_assert_uint_eq(*len, 0);
	} else {
		ck_assert_uint_eq(*len, strlen(*out));
	}
	free(pb);
	free(pb2);
	return rc;
}

/* encode_has checks that the envelope for userName |user| and
 * sourceAddress |source| holds the JSON text |want|, and that decoding it
 * gives |user| back. */
static void
encode_has(const char *user, const char *source, const char *want)
{
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev;
	size_t len;
	char *out;
	int rc = encode_texts(user, strlen(user), source, &out, &len);

	ck_assert_msg(rc == 0, "encode: %s", ms_strerror(rc));
	ck_assert_msg(strstr(out, want) != NULL, "%s\nlacks %s", out, want);
	ev = decode_ok(out, &d);
	ck_assert_str_eq(ev->username, user);
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	free(out);
}

START_TEST(encode_escapes)
{
	/* As jansson's json_dumps(JSON_COMPACT) wrote them: '"' and '\\'
	 * and the controls we carry (tab, CR, LF) escaped, nothing else;
	 * '/' as it is (no JSON_ESCAPE_SLASH). */
	encode_has("a\"b\\c/d\te\r\nf", "rabbitmq://h/x",
	           "\"userName\":\"a\\\"b\\\\c/d\\te\\r\\nf\",");
	encode_has("\"", "rabbitmq://h/x", "\"userName\":\"\\\"\",");
	encode_has("\\", "rabbitmq://h/x", "\"userName\":\"\\\\\",");
	encode_has("\\\"\\\"", "rabbitmq://h/x",
	           "\"userName\":\"\\\\\\\"\\\\\\\"\",");
	encode_has("</script>\\u0041", "rabbitmq://h/x",
	           "\"userName\":\"</script>\\\\u0041\",");
	encode_has("\r\n\t", "rabbitmq://h/x", "\"userName\":\"\\r\\n\\t\",");
	encode_has("", "rabbitmq://h/x", "\"userName\":\"\",");
	/* Non-ASCII is written as UTF-8 (no JSON_ENSURE_ASCII): 2, 3 and 4
	 * bytes, U+2028 and U+2029 (JSON allows them raw), DEL, U+FFFF,
	 * U+10FFFF, a BOM. */
	encode_has(
	    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "rabbitmq://h/x",
	    "\"userName\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\",");
	encode_has("\xe2\x80\xa8|\xe2\x80\xa9|\x7f", "rabbitmq://h/x",
	           "\"userName\":\"\xe2\x80\xa8|\xe2\x80\xa9|\x7f\",");
	encode_has(
	    "\xef\xbf\xbf\xf4\x8f\xbf\xbf\xef\xbb\xbf", "rabbitmq://h/x",
	    "\"userName\":\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\xef\xbb\xbf\",");
	/* The envelope's own strings are escaped the same way. */
	encode_has("swn", "rabbitmq://h/a\"b\\c/\xc3\xa9",
	           "\"sourceAddress\":\"rabbitmq://h/a\\\"b\\\\c/\xc3\xa9\",");
}
END_TEST

START_TEST(encode_refuses_text)
{
	/* Control characters other than tab, CR and LF, and what is not
	 * UTF-8, are never published: MS_EINVAL, in the event or in the
	 * envelope's own strings. */
	static const char *const bad[] = {
	    "\x01",
	    "a\x02",
	    "\x1f",
	    "\b",
	    "\f",
	    "\x1b[0m",
	    "\xc3",             /* truncated */
	    "\x80",             /* stray continuation byte */
	    "\xc0\xaf",         /* overlong '/' */
	    "\xed\xa0\x80",     /* a surrogate */
	    "\xf4\x90\x80\x80", /* beyond U+10FFFF */
	    "\xff",
	};
	char long_str[4098];
	size_t len;
	char *out;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(encode_texts(bad[i], strlen(bad[i]),
		                              "rabbitmq://h/x", &out, &len),
		                 MS_EINVAL);
		ck_assert_int_eq(encode_texts("swn", 3, bad[i], &out, &len),
		                 MS_EINVAL);
	}
	/* A NUL ends the string, as it always did (strlen). */
	ck_assert_int_eq(
	    encode_texts("ab\0\x01", 4, "rabbitmq://h/x", &out, &len), 0);
	ck_assert_ptr_nonnull(strstr(out, "\"userName\":\"ab\","));
	free(out);
	/* At most 4096 bytes. */
	memset(long_str, '"', sizeof(long_str));
	ck_assert_int_eq(
	    encode_texts(long_str, 4096, "rabbitmq://h/x", &out, &len), 0);
	ck_assert_uint_eq(len, strlen(out));
	free(out);
	ck_assert_int_eq(
	    encode_texts(long_str, 4097, "rabbitmq://h/x", &out, &len),
	    MS_EINVAL);
}
END_TEST

START_TEST(encode_exact_text)
{
	/* Byte for byte what json_dumps(JSON_COMPACT) wrote: the golden
	 * file's members in its order, no whitespace. */
	struct tp_amqp_env_meta meta = {.sent_ms = FIXED_SENT_MS};
	char *golden = slurp(GOLDEN, NULL);
	char *want = replace(golden, "@MONOSHOP_VERSION@", MONOSHOP_VERSION);
	json_t *v = json_of(want);
	char *compact = json_dumps(v, JSON_COMPACT);
	size_t len;
	char *out = encode_fixed(&fixed_meta, &len);

	ck_assert_str_eq(out, compact);
	free(out);
	free(compact);
	json_decref(v);
	free(want);
	free(golden);

	/* The defaults, as literal text. */
	out = encode_fixed(&meta, &len);
	ck_assert_str_eq(
	    out,
	    "{\"messageId\":\"5a3e2f10-7c4b-4d1e-9f2a-0b6c8d7e1f23\","
	    "\"requestId\":null,\"correlationId\":null,"
	    "\"conversationId\":\"5a3e2f10-7c4b-4d1e-9f2a-0b6c8d7e1f23\","
	    "\"initiatorId\":null,\"sourceAddress\":null,"
	    "\"destinationAddress\":null,\"responseAddress\":null,"
	    "\"faultAddress\":null,\"messageType\":["
	    "\"urn:message:BuildingBlocks.Messaging.Events:"
	    "BasketCheckoutEvent\","
	    "\"urn:message:BuildingBlocks.Messaging.Events:IntegrationEvent\"],"
	    "\"message\":{\"userName\":\"swn\","
	    "\"customerId\":\"58c49479-ec65-4de2-86e7-033c546291aa\","
	    "\"totalPrice\":\"1400.50\",\"firstName\":\"mehmet\","
	    "\"lastName\":\"ozkaya\",\"emailAddress\":\"mehmet@gmail.com\","
	    "\"addressLine\":\"Bahcelievler No:4\",\"country\":\"Turkey\","
	    "\"state\":\"Istanbul\",\"zipCode\":\"38050\","
	    "\"cardName\":\"mehmet\",\"cardNumber\":\"5555555555554444\","
	    "\"expiration\":\"12/28\",\"cvv\":\"355\",\"paymentMethod\":1,"
	    "\"items\":[{\"productId\":\"5334c996-8457-4cf0-815c-"
	    "ed2b77c4ff61\","
	    "\"productName\":\"IPhone X\",\"quantity\":1,\"price\":\"950.00\","
	    "\"color\":\"Black\"},"
	    "{\"productId\":\"c67d6323-e8b1-4bdf-9a75-b0d0d2e7e914\","
	    "\"productName\":\"Samsung 10\",\"quantity\":2,"
	    "\"price\":\"225.25\",\"color\":\"Red\"}],"
	    "\"id\":\"5a3e2f10-7c4b-4d1e-9f2a-0b6c8d7e1f23\","
	    "\"occurredOn\":\"2026-11-29T05:40:01.123Z\"},"
	    "\"expirationTime\":null,\"sentTime\":\"2026-11-29T05:40:01.456Z\","
	    "\"headers\":{},\"host\":{\"machineName\":null,"
	    "\"processName\":\"monoshop\",\"processId\":0,"
	    "\"assembly\":\"monoshop\",\"assemblyVersion\":\"" MONOSHOP_VERSION
	    "\",\"frameworkVersion\":null,\"massTransitVersion\":null,"
	    "\"operatingSystemVersion\":null}}");
	ck_assert_uint_eq(len, strlen(out));
	free(out);

	/* Integers at their limits, as "%lld" writes them. */
	meta.process_id = INT32_MIN;
	out = encode_fixed(&meta, &len);
	ck_assert_ptr_nonnull(strstr(out, "\"processId\":-2147483648,"));
	free(out);
	meta.process_id = INT32_MAX;
	out = encode_fixed(&meta, &len);
	ck_assert_ptr_nonnull(strstr(out, "\"processId\":2147483647,"));
	free(out);
}
END_TEST

START_TEST(exchange_names)
{
	ck_assert_str_eq(tp_amqp_exchange_for(EVENT_TYPE),
	                 "BuildingBlocks.Messaging.Events:BasketCheckoutEvent");
	ck_assert_ptr_null(tp_amqp_exchange_for("monoshop.events.Other"));
	ck_assert_ptr_null(tp_amqp_exchange_for(NULL));
	ck_assert_str_eq(TP_AMQP_CONTENT_TYPE,
	                 "application/vnd.masstransit+json");
}
END_TEST

/* ---- round trips ----------------------------------------------------------
 */

START_TEST(round_trip)
{
	uint8_t *pb;
	size_t pblen, len;
	char *out = encode_fixed(&fixed_meta, &len);
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev = decode_ok(out, &d);

	/* Every field comes back: the packed events are the same bytes
	 * (protobuf-c packs fields in number order, deterministically). */
	fixed_event("1400.50", "950.00", &pb, &pblen);
	ck_assert_uint_eq(d.len, pblen);
	ck_assert_mem_eq(d.payload, pb, pblen);
	ck_assert_str_eq(d.message_id, fixed_meta.message_id);
	ck_assert_str_eq(d.traceparent, fixed_meta.traceparent);
	ck_assert_int_eq(d.sent_ms, FIXED_SENT_MS);
	/* And by name, so that a failure says which. */
	ck_assert_uint_eq(ev->n_items, 2);
	ck_assert_str_eq(ev->items[1]->productname, "Samsung 10");
	ck_assert_int_eq(ev->items[1]->quantity, 2);
	ck_assert_str_eq(ev->items[1]->price, "225.25");
	ck_assert_str_eq(ev->items[1]->color, "Red");
	ck_assert_str_eq(ev->totalprice, "1400.50");
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	free(pb);
	free(out);
}
END_TEST

START_TEST(golden_decodes)
{
	/* The golden file itself reads back as the fixed event. */
	char *golden = slurp(GOLDEN, NULL);
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev = decode_ok(golden, &d);
	uint8_t *pb;
	size_t pblen;

	fixed_event("1400.50", "950.00", &pb, &pblen);
	ck_assert_uint_eq(d.len, pblen);
	ck_assert_mem_eq(d.payload, pb, pblen);
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	free(pb);
	free(golden);
}
END_TEST

/* ---- decimals ------------------------------------------------------------ */

/* total_of decodes the .NET fixture with totalPrice |json| and returns the
 * event's total (malloc'd). */
static char *
total_of(const char *json)
{
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev;
	char to[128];
	char *r;

	snprintf(to, sizeof(to), "\"totalPrice\": %s", json);
	ev = with_event("\"totalPrice\": \"1400.00\"", to, &d);
	r = strdup(ev->totalprice);
	ck_assert_ptr_nonnull(r);
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	return r;
}

static void
total_is(const char *json, const char *want)
{
	char *got = total_of(json);

	ck_assert_msg(strcmp(got, want) == 0, "%s gave %s, want %s", json, got,
	              want);
	free(got);
}

static void
total_bad(const char *json, const char *needle)
{
	char to[128];

	snprintf(to, sizeof(to), "\"totalPrice\": %s", json);
	with_bad("\"totalPrice\": \"1400.00\"", to, MS_EINVAL, needle);
}

START_TEST(money_forms)
{
	total_is("1400.5", "1400.50");
	total_is("\"1400.5\"", "1400.50");
	total_is("1400", "1400.00");
	total_is("\"1400\"", "1400.00");
	total_is("0.1", "0.10");
	total_is("1400.500", "1400.50");
	total_is("14005e-1", "1400.50");
	total_is("\"1.4005E3\"", "1400.50");
	total_is("9999999999999999.99", "9999999999999999.99");
	total_is("null", ""); /* null is absent: Ordering reports it */

	total_bad("1400.005", "message.totalPrice: more than 2 decimals");
	total_bad("\"1400.005\"", "message.totalPrice: more than 2 decimals");
	total_bad("\"10000000000000000\"",
	          "message.totalPrice: more than 18 digits");
	total_bad("1e-3", "message.totalPrice: must be a decimal");
	total_bad("1e400", "message.totalPrice: must be a decimal");
	total_bad("\" 1400\"", "message.totalPrice: must be a decimal");
	total_bad("\"1,400.00\"", "message.totalPrice");
	total_bad("\"NaN\"", "message.totalPrice");
	total_bad("\"\"", "message.totalPrice");
	total_bad("true", "message.totalPrice: must be a decimal number or");
	total_bad("[1]", "message.totalPrice");
	total_bad("{}", "message.totalPrice");
	/* A real longer than the exact pre-pass keeps: a double, refused. */
	total_bad("1.000000000000000000000000000000000000000000000000000000000"
	          "0000000001",
	          "message.totalPrice");
	/* An integer beyond int64 is not JSON jansson reads. */
	total_bad("123456789012345678901234567890", "not JSON");
}
END_TEST

START_TEST(item_prices)
{
	fixture_bad("bad-price-three-decimals.json", MS_EINVAL,
	            "message.items[0].price: more than 2 decimals");
	fixture_bad("bad-quantity-not-integer.json", MS_EINVAL,
	            "message.items[0].quantity: must be an integer");
}
END_TEST

/* ---- names, commas, unknowns --------------------------------------------- */

/* rekey returns a deep copy of |v| with every object key rewritten: mode 0
 * upper-cases the first letter (PascalCase), mode 1 every letter. */
static json_t *
rekey(json_t *v, int mode)
{
	if (json_is_object(v)) {
		json_t *o = json_object();
		const char *k;
		json_t *m;

		json_object_foreach (v, k, m) {
			char key[128];

			snprintf(key, sizeof(key), "%s", k);
			for (char *c = key; *c; c++) {
				*c = (char)toupper((unsigned char)*c);
				if (mode == 0) {
					break;
				}
			}
			json_object_set_new(o, key, rekey(m, mode));
		}
		return o;
	}
	if (json_is_array(v)) {
		json_t *a = json_array();
		size_t i;
		json_t *m;

		json_array_foreach (v, i, m) {
			json_array_append_new(a, rekey(m, mode));
		}
		return a;
	}
	return json_incref(v);
}

/* same_event checks that |body| decodes to the bytes of |want|. */
static void
same_event(const char *body, const struct tp_amqp_decoded *want)
{
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev = decode_ok(body, &d);

	ck_assert_uint_eq(d.len, want->len);
	ck_assert_mem_eq(d.payload, want->payload, want->len);
	ck_assert_str_eq(d.message_id, want->message_id);
	ck_assert_int_eq(d.sent_ms, want->sent_ms);
	if (want->traceparent != NULL) {
		ck_assert_str_eq(d.traceparent, want->traceparent);
	} else {
		ck_assert_ptr_null(d.traceparent);
	}
	free_event(ev);
	tp_amqp_decoded_fini(&d);
}

START_TEST(case_insensitive)
{
	const char *files[] = {DOTNET_FIXTURE, GOLDEN};

	for (size_t f = 0; f < 2; f++) {
		char *body = slurp(files[f], NULL);
		struct tp_amqp_decoded want;
		Monoshop__Events__BasketCheckoutEvent *ev =
		    decode_ok(body, &want);

		free_event(ev);
		for (int mode = 0; mode < 2; mode++) {
			json_t *v = json_of(body);
			json_t *r = rekey(v, mode);
			char *text = json_dumps(r, JSON_INDENT(2));

			ck_assert_ptr_nonnull(text);
			/* The rewrite did rename: the test can fail. */
			ck_assert_ptr_nonnull(strstr(
			    text, mode ? "\"MESSAGEID\"" : "\"MessageId\""));
			same_event(text, &want);
			free(text);
			json_decref(r);
			json_decref(v);
		}
		tp_amqp_decoded_fini(&want);
		free(body);
	}
	/* URNs match case-insensitively too. */
	{
		char *body = slurp(DOTNET_FIXTURE, NULL);
		char *lower = replace(body, EVENT_URN,
		                      "URN:MESSAGE:BUILDINGBLOCKS.MESSAGING."
		                      "EVENTS:BASKETCHECKOUTEVENT");
		struct tp_amqp_decoded d;
		Monoshop__Events__BasketCheckoutEvent *ev =
		    decode_ok(lower, &d);

		free_event(ev);
		tp_amqp_decoded_fini(&d);
		free(lower);
		free(body);
	}
}
END_TEST

START_TEST(ambiguous_names)
{
	with_bad("\"userName\": \"swn\"",
	         "\"userName\": \"swn\", \"UserName\": \"other\"", MS_EINVAL,
	         "message.userName: given more than once");
	with_bad("\"messageId\"",
	         "\"MessageID\": \"" DOTNET_MSGID "\", "
	         "\"messageId\"",
	         MS_EINVAL, "messageId: given more than once");
	/* Exact duplicates are refused by the parser. */
	with_bad("\"userName\": \"swn\"",
	         "\"userName\": \"swn\", \"userName\": \"swn\"", MS_EINVAL,
	         "duplicate");
}
END_TEST

/* add_trailing_commas returns a copy of JSON text |s| with a comma
 * inserted before every '}' and ']' that closes a non-empty container. */
static char *
add_trailing_commas(const char *s)
{
	size_t n = strlen(s);
	char *r = malloc(2 * n + 1);
	size_t w = 0;
	bool in_str = false;
	int added = 0;

	ck_assert_ptr_nonnull(r);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (in_str) {
			if (c == '\\') {
				r[w++] = s[i++];
			} else if (c == '"') {
				in_str = false;
			}
			r[w++] = s[i];
			continue;
		}
		if (c == '"') {
			in_str = true;
		} else if (c == '}' || c == ']') {
			size_t k = w;

			while (k > 0 && isspace((unsigned char)r[k - 1])) {
				k--;
			}
			if (k > 0 && r[k - 1] != '{' && r[k - 1] != '[') {
				/* After the value, before the whitespace. */
				memmove(r + k + 1, r + k, w - k);
				r[k] = ',';
				w++;
				added++;
			}
		}
		r[w++] = c;
	}
	r[w] = '\0';
	ck_assert_int_gt(added, 3);
	return r;
}

START_TEST(trailing_commas)
{
	const char *files[] = {DOTNET_FIXTURE, GOLDEN};

	for (size_t f = 0; f < 2; f++) {
		char *body = slurp(files[f], NULL);
		char *commas = add_trailing_commas(body);
		struct tp_amqp_decoded want;
		Monoshop__Events__BasketCheckoutEvent *ev =
		    decode_ok(body, &want);

		free_event(ev);
		ck_assert_ptr_nonnull(strstr(commas, ",\n}"));
		same_event(commas, &want);
		tp_amqp_decoded_fini(&want);
		free(commas);
		free(body);
	}
	/* One trailing comma, not two, and no comma without a value. */
	with_bad("\"paymentMethod\": 1,", "\"paymentMethod\": 1,,", MS_EINVAL,
	         "not JSON");
	with_bad("\"headers\": {}", "\"headers\": {,}", MS_EINVAL, "not JSON");
	with_bad("\"headers\": {}", "\"headers\": [,]", MS_EINVAL, "not JSON");
	with_bad("\"paymentMethod\": 1,", "\"paymentMethod\": ,", MS_EINVAL,
	         "not JSON");
}
END_TEST

START_TEST(unknown_members)
{
	struct tp_amqp_decoded want, d;
	char *body = slurp(DOTNET_FIXTURE, NULL);
	Monoshop__Events__BasketCheckoutEvent *ev = decode_ok(body, &want);
	char *a, *b, *c;

	free_event(ev);
	a = replace(body, "\"messageId\"",
	            "\"unknownTop\": {\"deep\": [1, 2.5, null, {\"x\": "
	            "1e999}]}, \"messageId\"");
	b = replace(a, "\"userName\"",
	            "\"favouriteColour\": \"blue\", \"loyalty\": 3.25, "
	            "\"userName\"");
	c = replace(b, "\"headers\": {}",
	            "\"headers\": {\"MT-Activity-Id\": \"x\", \"n\": 1.5}");
	same_event(c, &want);
	free(c);
	free(b);
	free(a);

	/* Unknown members of an item, and an item with only some fields. */
	a = replace(body, "\"paymentMethod\": 1,",
	            "\"paymentMethod\": 1, \"items\": [{\"productId\": "
	            "\"5334C996-8457-4CF0-815C-ED2B77C4FF61\", \"quantity\": "
	            "\"3\", \"price\": 1.5, \"discount\": {\"a\": [true]}}],");
	ev = decode_ok(a, &d);
	ck_assert_uint_eq(ev->n_items, 1);
	ck_assert_str_eq(ev->items[0]->productid,
	                 "5334c996-8457-4cf0-815c-ed2b77c4ff61");
	ck_assert_int_eq(ev->items[0]->quantity, 3);
	ck_assert_str_eq(ev->items[0]->price, "1.50");
	ck_assert_str_eq(ev->items[0]->productname, "");
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	free(a);

	tp_amqp_decoded_fini(&want);
	free(body);
}
END_TEST

START_TEST(payment_method_forms)
{
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev;

	ev = with_event("\"paymentMethod\": 1", "\"paymentMethod\": \"2\"", &d);
	ck_assert_int_eq(ev->paymentmethod, 2);
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	ev = with_event("\"paymentMethod\": 1", "\"paymentMethod\": -7", &d);
	ck_assert_int_eq(ev->paymentmethod, -7);
	free_event(ev);
	tp_amqp_decoded_fini(&d);

	with_bad("\"paymentMethod\": 1", "\"paymentMethod\": 1.0", MS_EINVAL,
	         "message.paymentMethod: must be an integer");
	with_bad("\"paymentMethod\": 1", "\"paymentMethod\": \"1.0\"",
	         MS_EINVAL, "message.paymentMethod: must be an integer");
	with_bad("\"paymentMethod\": 1", "\"paymentMethod\": \" 1\"", MS_EINVAL,
	         "message.paymentMethod: must be an integer");
	with_bad("\"paymentMethod\": 1", "\"paymentMethod\": \"\"", MS_EINVAL,
	         "message.paymentMethod: must be an integer");
	with_bad("\"paymentMethod\": 1", "\"paymentMethod\": true", MS_EINVAL,
	         "message.paymentMethod: must be an integer");
	with_bad("\"paymentMethod\": 1", "\"paymentMethod\": 2147483648",
	         MS_EINVAL, "message.paymentMethod: out of the range");
	with_bad("\"paymentMethod\": 1", "\"paymentMethod\": \"-2147483649\"",
	         MS_EINVAL, "message.paymentMethod: out of the range");
	with_bad("\"paymentMethod\": 1",
	         "\"paymentMethod\": \"99999999999999999999\"", MS_EINVAL,
	         "message.paymentMethod: must be an integer");
}
END_TEST

START_TEST(traceparent)
{
	static const char tp[] =
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
	static const char *dropped[] = {
	    "\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0\"",
	    "\"00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01\"",
	    "\"00-00000000000000000000000000000000-b7ad6b7169203331-01\"",
	    "\"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01\"",
	    "\"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\"",
	    "\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x\"",
	    "\"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\"",
	    "42",
	    "[\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\"]",
	};
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev;
	char to[160];

	snprintf(to, sizeof(to), "\"headers\": {\"TraceParent\": \"%s\"}", tp);
	ev = with_event("\"headers\": {}", to, &d);
	ck_assert_str_eq(d.traceparent, tp);
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	/* A later version may carry more fields. */
	snprintf(to, sizeof(to), "\"headers\": {\"traceparent\": \"01-%s-zz\"}",
	         tp + 3);
	ev = with_event("\"headers\": {}", to, &d);
	ck_assert_ptr_nonnull(d.traceparent);
	free_event(ev);
	tp_amqp_decoded_fini(&d);

	/* Invalid ones are dropped (W3C: restart the trace), not fatal. */
	for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++) {
		snprintf(to, sizeof(to), "\"headers\": {\"traceparent\": %s}",
		         dropped[i]);
		ev = with_event("\"headers\": {}", to, &d);
		ck_assert_msg(d.traceparent == NULL, "%s kept", dropped[i]);
		free_event(ev);
		tp_amqp_decoded_fini(&d);
	}
	ev = with_event("\"headers\": {}", "\"headers\": null", &d);
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	with_bad("\"headers\": {}", "\"headers\": []", MS_EINVAL,
	         "headers: must be an object");
}
END_TEST

/* ---- refusals ------------------------------------------------------------ */

START_TEST(unknown_type)
{
	fixture_bad("unknown-message-type.json", MS_ENOTSUP, "messageType");
	/* Only the IntegrationEvent URN: not ours. */
	with_bad("\"" EVENT_URN "\",", "", MS_ENOTSUP, "messageType");
	with_bad("\"" EVENT_URN "\"", "\"" EVENT_URN "Extra\"", MS_ENOTSUP,
	         "messageType");
	/* An empty list: a type we do not consume either. */
	with_bad("\"messageType\": [", "\"messageType\": [], \"x\": [",
	         MS_ENOTSUP, "messageType");
	/* Missing or malformed: not an envelope. */
	with_bad("\"messageType\"", "\"messageTypes\"", MS_EINVAL,
	         "messageType: is required");
	with_bad("\"messageType\": [", "\"messageType\": null, \"x\": [",
	         MS_EINVAL, "messageType: is required");
	with_bad("\"messageType\": [",
	         "\"messageType\": \"" EVENT_URN "\", \"x\": [", MS_EINVAL,
	         "messageType: must be an array of strings");
	with_bad("\"messageType\": [", "\"messageType\": [null, 1, ", MS_EINVAL,
	         "messageType: must be an array of strings");
}
END_TEST

START_TEST(bad_fixtures)
{
	fixture_bad("bad-missing-message-id.json", MS_EINVAL,
	            "messageId: is required");
	fixture_bad("bad-message-id-not-guid.json", MS_EINVAL,
	            "messageId: must be a GUID");
	fixture_bad("bad-message-not-object.json", MS_EINVAL,
	            "message: must be an object");
}
END_TEST

START_TEST(bad_members)
{
	with_bad("\"" DOTNET_MSGID "\"", "null", MS_EINVAL,
	         "messageId: is required");
	with_bad("\"" DOTNET_MSGID "\"", "\"{" DOTNET_MSGID "}\"", MS_EINVAL,
	         "messageId: must be a GUID");
	with_bad("\"" DOTNET_MSGID "\"", "\"0e4a00005d3c00155b9a08dcfa1b2c3d\"",
	         MS_EINVAL, "messageId: must be a GUID");
	with_bad("\"" DOTNET_MSGID "\"", "42", MS_EINVAL,
	         "messageId: must be a GUID");
	with_bad("\"message\": {", "\"message\": null, \"x\": {", MS_EINVAL,
	         "message: is required");
	with_bad("\"message\": {", "\"message\": [], \"x\": {", MS_EINVAL,
	         "message: must be an object");
	with_bad("\"message\": {", "\"msg\": {", MS_EINVAL,
	         "message: is required");
	with_bad("\"58c49479-ec65-4de2-86e7-033c546291aa\"", "\"customer-1\"",
	         MS_EINVAL, "message.customerId: must be a GUID");
	with_bad("\"userName\": \"swn\"", "\"userName\": 42", MS_EINVAL,
	         "message.userName: must be a string");
	with_bad("\"userName\": \"swn\"", "\"userName\": 4.2", MS_EINVAL,
	         "message.userName: must be a string");
	with_bad("\"cvv\": \"355\"", "\"cvv\": [\"355\"]", MS_EINVAL,
	         "message.cvv: must be a string");
	with_bad("\"cvv\": \"355\"", "\"cvv\": \"35\\u00075\"", MS_EINVAL,
	         "message.cvv: must not contain control characters");
	with_bad("\"country\": \"Turkey\"", "\"country\": \"Tur\xffkey\"",
	         MS_EINVAL, "not JSON");
	with_bad("\"country\": \"Turkey\"", "\"country\": \"Tur\\u0000key\"",
	         MS_EINVAL, "not JSON");
	with_bad("\"country\": \"Turkey\"", "\"country\": \"\\u0001N:5\"",
	         MS_EINVAL, "not allowed");
	with_bad("\"paymentMethod\": 1,", "\"paymentMethod\": 1, \"items\": 5,",
	         MS_EINVAL, "message.items: must be an array");
	with_bad("\"paymentMethod\": 1,",
	         "\"paymentMethod\": 1, \"items\": [{}, null],", MS_EINVAL,
	         "message.items[1]: must be an object");
	with_bad("\"paymentMethod\": 1,",
	         "\"paymentMethod\": 1, \"items\": [{\"productId\": \"p1\"}],",
	         MS_EINVAL, "message.items[0].productId: must be a GUID");
	with_bad("\"paymentMethod\": 1,",
	         "\"paymentMethod\": 1, \"items\": [{\"quantity\": 1e3}],",
	         MS_EINVAL, "message.items[0].quantity: must be an integer");
	with_bad("\"paymentMethod\": 1,",
	         "\"paymentMethod\": 1, \"items\": [{\"quantity\": "
	         "99999999999}],",
	         MS_EINVAL, "message.items[0].quantity: out of the range");
	with_bad("\"paymentMethod\": 1,",
	         "\"paymentMethod\": 1, \"items\": [{\"price\": \"1.001\"}],",
	         MS_EINVAL, "message.items[0].price: more than 2 decimals");
}
END_TEST

START_TEST(nulls_are_absent)
{
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev;

	ev = with_event("\"userName\": \"swn\"", "\"userName\": null", &d);
	ck_assert_str_eq(ev->username, "");
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	ev = with_event("\"paymentMethod\": 1,",
	                "\"paymentMethod\": 1, \"items\": null,", &d);
	ck_assert_uint_eq(ev->n_items, 0);
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	ev = with_event("\"paymentMethod\": 1,",
	                "\"paymentMethod\": 1, \"items\": [],", &d);
	ck_assert_uint_eq(ev->n_items, 0);
	free_event(ev);
	tp_amqp_decoded_fini(&d);
}
END_TEST

START_TEST(long_strings)
{
	size_t n = 4097;
	char *big = malloc(n + 32);
	char *body;
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev;

	ck_assert_ptr_nonnull(big);
	/* 4096 bytes pass, 4097 do not. */
	strcpy(big, "\"userName\": \"");
	memset(big + 13, 'a', 4096);
	strcpy(big + 13 + 4096, "\"");
	ev = with_event("\"userName\": \"swn\"", big, &d);
	ck_assert_uint_eq(strlen(ev->username), 4096);
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	memset(big + 13, 'a', n);
	strcpy(big + 13 + n, "\"");
	body = fixture_with("\"userName\": \"swn\"", big);
	decode_bad(body, MS_EINVAL, "message.userName: longer than 4096 bytes");
	free(body);
	free(big);
}
END_TEST

START_TEST(many_items)
{
	/* 1000 items pass, 1001 do not. */
	const char item[] = "{\"quantity\": 1},";
	size_t cap = 1002 * sizeof(item) + 64;
	char *items = malloc(cap);
	char *body;
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev;
	size_t w;

	ck_assert_ptr_nonnull(items);
	for (int n = 1000; n <= 1001; n++) {
		w = (size_t)snprintf(items, cap,
		                     "\"paymentMethod\": 1, \"items\": [");
		for (int i = 0; i < n; i++) {
			memcpy(items + w, item, sizeof(item) - 1);
			w += sizeof(item) - 1;
		}
		strcpy(items + w, "],"); /* a trailing comma, as allowed */
		body = fixture_with("\"paymentMethod\": 1,", items);
		if (n == 1000) {
			ev = decode_ok(body, &d);
			ck_assert_uint_eq(ev->n_items, 1000);
			free_event(ev);
			tp_amqp_decoded_fini(&d);
		} else {
			decode_bad(body, MS_EINVAL,
			           "message.items: more than 1000 items");
		}
		free(body);
	}
	free(items);
}
END_TEST

START_TEST(not_envelopes)
{
	struct tp_amqp_decoded d;
	char *big;

	decode_bad("", MS_EINVAL, "the body is empty");
	decode_bad_n(NULL, 0, MS_EINVAL, "the body is empty");
	decode_bad("   \n", MS_EINVAL, "not JSON: line");
	decode_bad("hello", MS_EINVAL, "not JSON: line 1");
	decode_bad("<xml/>", MS_EINVAL, "not JSON");
	decode_bad("[{\"messageId\": \"" DOTNET_MSGID "\"}]", MS_EINVAL,
	           "the envelope must be a JSON object");
	/* jansson reads only objects and arrays at the top. */
	decode_bad("\"" EVENT_URN "\"", MS_EINVAL, "not JSON");
	decode_bad("42", MS_EINVAL, "not JSON");
	decode_bad("null", MS_EINVAL, "not JSON");
	decode_bad("{}", MS_EINVAL, "messageType: is required");
	decode_bad("{\"messageType\": []} x", MS_EINVAL, "not JSON");
	decode_bad_n("{\"a\": 1}\0", 9, MS_EINVAL, "not JSON");
	decode_bad("\xef\xbb\xbf{}", MS_EINVAL, "not JSON"); /* a BOM */
	decode_bad("{\"a\": \"\xc3\"}", MS_EINVAL, "not JSON");
	decode_bad("{\"a\": \"\xed\xa0\x80\"}", MS_EINVAL, "not JSON");

	/* Deep nesting is refused before any recursion. */
	big = malloc(20001);
	ck_assert_ptr_nonnull(big);
	memset(big, '[', 10000);
	memset(big + 10000, ']', 10000);
	big[20000] = '\0';
	decode_bad(big, MS_EINVAL, "nesting is deeper than 32 levels");
	free(big);

	/* Bigger than TP_AMQP_ENVELOPE_MAX: refused unread. */
	big = malloc(TP_AMQP_ENVELOPE_MAX + 1);
	ck_assert_ptr_nonnull(big);
	memset(big, ' ', TP_AMQP_ENVELOPE_MAX + 1);
	decode_bad_n(big, TP_AMQP_ENVELOPE_MAX + 1, MS_EINVAL, "larger than");
	free(big);

	ck_assert_int_eq(tp_amqp_envelope_decode(NULL, 0, &d, NULL, 0),
	                 MS_EINVAL);
	/* No reason buffer is fine. */
	ck_assert_int_eq(tp_amqp_envelope_decode("x", 1, &d, NULL, 0),
	                 MS_EINVAL);
	/* A short one truncates. */
	{
		char why[8];

		ck_assert_int_eq(
		    tp_amqp_envelope_decode("{}", 2, &d, why, sizeof(why)),
		    MS_EINVAL);
		ck_assert_str_eq(why, "message");
	}
}
END_TEST

START_TEST(every_prefix)
{
	size_t len;
	char *body = slurp(DOTNET_FIXTURE, &len);
	const char *end = strrchr(body, '}');

	/* Every cut before the closing brace is malformed JSON. */
	for (size_t n = 0; n < (size_t)(end - body); n++) {
		decode_bad_n(body, n, MS_EINVAL, n == 0 ? "empty" : "not JSON");
	}
	free(body);
}
END_TEST

START_TEST(corruptions)
{
	static const char subst[] = {'"', '{', ']', ',', '0', '\\', '\x80'};
	size_t len;
	char *body = slurp(DOTNET_FIXTURE, &len);
	int ok = 0, refused = 0;

	/* Each byte replaced in turn: decoded or refused, never a crash, a
	 * leak or a read out of bounds. */
	for (size_t i = 0; i < len; i++) {
		char saved = body[i];

		for (size_t k = 0; k < sizeof(subst); k++) {
			struct tp_amqp_decoded d;
			char why[256];
			int rc;

			body[i] = subst[k];
			rc = decode(body, len, &d, why, sizeof(why));
			ck_assert_msg(
			    rc == 0 || rc == MS_EINVAL || rc == MS_ENOTSUP,
			    "byte %zu = %d: %s", i, subst[k], ms_errname(rc));
			if (rc == 0) {
				ck_assert_ptr_nonnull(d.payload);
				ok++;
			} else {
				ck_assert(why[0] != '\0');
				ck_assert_ptr_null(d.payload);
				refused++;
			}
			tp_amqp_decoded_fini(&d);
		}
		body[i] = saved;
	}
	/* Both outcomes happen: the loop exercises the decoder. */
	ck_assert_int_gt(ok, 0);
	ck_assert_int_gt(refused, 0);
	free(body);
}
END_TEST

/* ---- the reader's own edges --------------------------------------------- */

/* golden_same checks that the golden body with |from| replaced by |to|
 * decodes to the very event the golden body decodes to. */
static void
golden_same(const char *from, const char *to)
{
	char *body = slurp(GOLDEN, NULL);
	char *changed = replace(body, from, to);
	struct tp_amqp_decoded want;

	free_event(decode_ok(body, &want));
	same_event(changed, &want);
	tp_amqp_decoded_fini(&want);
	free(changed);
	free(body);
}

/* golden_bad checks that the golden body with |from| replaced by |to| is
 * refused with |want| and a reason holding |needle|. */
static void
golden_bad(const char *from, const char *to, int want, const char *needle)
{
	char *body = slurp(GOLDEN, NULL);
	char *changed = replace(body, from, to);

	decode_bad(changed, want, needle);
	free(changed);
	free(body);
}

/* golden_item decodes the golden body with |from| replaced by |to| and
 * returns the event (free_event; |d| with tp_amqp_decoded_fini). */
static Monoshop__Events__BasketCheckoutEvent *
golden_item(const char *from, const char *to, struct tp_amqp_decoded *d)
{
	char *body = slurp(GOLDEN, NULL);
	char *changed = replace(body, from, to);
	Monoshop__Events__BasketCheckoutEvent *ev = decode_ok(changed, d);

	ck_assert_uint_eq(ev->n_items, 2);
	free(changed);
	free(body);
	return ev;
}

START_TEST(escaped_names)
{
	/* A name is matched once decoded, in any case. */
	golden_same("\"userName\"", "\"user\\u004Eame\"");
	golden_same("\"messageId\"", "\"\\u006dessage\\u0049D\"");
	golden_same("\"price\": \"950.00\"", "\"PRI\\u0043E\": \"950.00\"");
	golden_same("\"traceparent\"", "\"TraceParent\"");
	golden_same("\"messageType\"", "\"message\\u0054ype\"");
	golden_same(EVENT_URN, "urn:message:\\u0042uildingBlocks.Messaging."
	                       "Events:BasketCheckoutEvent");
	/* Near names are other members. */
	golden_same("\"id\":", "\"userNameX\": 5, \"userNam\": 6, \"\": 7, "
	                       "\"items2\": 8, \"id\":");
	/* Two names equal once decoded are duplicates (not JSON); equal in
	 * another case, ambiguous. */
	golden_bad("\"cvv\": \"355\"",
	           "\"cvv\": \"355\", \"\\u0063vv\": \"355\"", MS_EINVAL,
	           "not JSON");
	golden_bad("\"cvv\": \"355\"",
	           "\"cvv\": \"355\", \"CV\\u0056\": \"355\"", MS_EINVAL,
	           "message.cvv: given more than once");
	golden_bad("\"color\": \"Red\"", "\"color\": \"Red\", \"COLOR\": null",
	           MS_EINVAL, "message.items[1].color: given more than once");
	golden_bad("\"traceparent\"", "\"TRACEPARENT\": 1, \"traceparent\"",
	           MS_EINVAL, "headers.traceparent: given more than once");
	/* The tag's characters are refused in names too. */
	golden_bad("\"cvv\"", "\"\\u0001cvv\"", MS_EINVAL, "not JSON");
}
END_TEST

START_TEST(escaped_values)
{
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev;

	ev = golden_item("\"IPhone X\"",
	                 "\"I\\u0050hone \\\"X\\\" \\ud83d\\ude00\\/\\t\\\\\"",
	                 &d);
	ck_assert_str_eq(ev->items[0]->productname,
	                 "IPhone \"X\" \xf0\x9f\x98\x80/\t\\");
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	ev = golden_item("\"950.00\"", "\"\\u0039\\u0035\\u0030.5\"", &d);
	ck_assert_str_eq(ev->items[0]->price, "950.50");
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	ev = golden_item("\"quantity\": 2", "\"quantity\": \"\\u0033\"", &d);
	ck_assert_int_eq(ev->items[1]->quantity, 3);
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	golden_same("\"5334c996-8457", "\"\\u0035334C996-8457");
	golden_same("\"2026-11-29T05:40:01.456Z\"",
	            "\"2026-11-29\\u005405:40:01.456Z\"");
	golden_same("\"00-0af7", "\"\\u0030\\u0030-0af7");

	/* Escapes jansson refuses, wherever they are. */
	golden_bad("\"host\": {", "\"host\": {\"x\": \"\\ud800\", ", MS_EINVAL,
	           "not JSON");
	golden_bad("\"host\": {", "\"host\": {\"x\": \"\\udc00\", ", MS_EINVAL,
	           "not JSON");
	golden_bad("\"host\": {", "\"host\": {\"x\": \"\\ud800\\u0041\", ",
	           MS_EINVAL, "not JSON");
	golden_bad("\"host\": {", "\"host\": {\"x\": \"\\u0000\", ", MS_EINVAL,
	           "not JSON");
	golden_bad("\"host\": {", "\"host\": {\"x\": \"\\x41\", ", MS_EINVAL,
	           "not JSON");
	golden_bad("\"host\": {", "\"host\": {\"x\": \"\\u00g1\", ", MS_EINVAL,
	           "not JSON");
	golden_bad("\"host\": {", "\"host\": {\"x\": \"\\u0002N:1\", ",
	           MS_EINVAL, "not JSON");
	/* Escaped control characters: text we do not carry. */
	golden_bad("\"IPhone X\"", "\"IPhone\\bX\"", MS_EINVAL,
	           "message.items[0].productName: must not contain control");
}
END_TEST

/* big_object returns ", " joined members "k0": 0 ... "k<n-1>": 0, and
 * "k<dup>": 1 after them when |dup| < |n| (malloc'd). */
static char *
big_object(size_t n, size_t dup)
{
	char *s = malloc(32 * (n + 1) + 16);
	size_t o = 0;

	ck_assert_ptr_nonnull(s);
	o += (size_t)sprintf(s + o, "\"host\": {");
	for (size_t i = 0; i < n; i++) {
		o += (size_t)sprintf(s + o, "\"k%zu\": 0, ", i);
	}
	if (dup < n) {
		o += (size_t)sprintf(s + o, "\"k%zu\": 1, ", dup);
	}
	return s;
}

START_TEST(duplicate_keys)
{
	char *members;

	/* Names we do not read may differ in case only; exact duplicates are
	 * refused in any object, however deep. */
	golden_same("\"host\": {", "\"host\": {\"a\": 1, \"A\": 2, ");
	golden_same("\"host\": {",
	            "\"host\": {\"x\": [{\"k\": 1}, {\"k\": 2}], ");
	golden_bad("\"host\": {", "\"host\": {\"a\": 1, \"a\": 2, ", MS_EINVAL,
	           "not JSON");
	golden_bad("\"host\": {",
	           "\"host\": {\"x\": [[{\"k\": 1, \"k\": 1}]], ", MS_EINVAL,
	           "not JSON");
	/* A nested object's keys are its own. */
	golden_same("\"host\": {", "\"host\": {\"host\": {\"host\": 1}, ");
	/* Many keys: checked by sorting them, not pair by pair. */
	members = big_object(500, 500);
	golden_same("\"host\": {", members);
	free(members);
	members = big_object(500, 3);
	golden_bad("\"host\": {", members, MS_EINVAL, "not JSON");
	free(members);
}
END_TEST

START_TEST(number_limits)
{
	static const char *const not_numbers[] = {
	    "01",  "1.",   ".5",   "-",    "1e",     "1e+",
	    "+1",  "1.e5", "-01",  "0x10", "1_000",  "Infinity",
	    "NaN", "tru",  "True", "nul",  "falsey",
	};
	struct tp_amqp_decoded d;
	Monoshop__Events__BasketCheckoutEvent *ev;
	char to[128];

	ev = with_event("\"paymentMethod\": 1", "\"paymentMethod\": 2147483647",
	                &d);
	ck_assert_int_eq(ev->paymentmethod, INT32_MAX);
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	ev = with_event("\"paymentMethod\": 1",
	                "\"paymentMethod\": -2147483648", &d);
	ck_assert_int_eq(ev->paymentmethod, INT32_MIN);
	free_event(ev);
	tp_amqp_decoded_fini(&d);
	/* int64 is what JSON integers may hold; beyond is not JSON. */
	with_bad("\"paymentMethod\": 1",
	         "\"paymentMethod\": 9223372036854775807", MS_EINVAL,
	         "message.paymentMethod: out of the range of int32");
	with_bad("\"paymentMethod\": 1",
	         "\"paymentMethod\": -9223372036854775808", MS_EINVAL,
	         "message.paymentMethod: out of the range of int32");
	with_bad("\"paymentMethod\": 1",
	         "\"paymentMethod\": 9223372036854775808", MS_EINVAL,
	         "not JSON");
	with_bad("\"paymentMethod\": 1",
	         "\"paymentMethod\": -9223372036854775809", MS_EINVAL,
	         "not JSON");

	/* A real of 64 bytes is exact; of 65, a double; -0 is 0. */
	total_is("1400.50000000000000000000000000000000000"
	         "000000000000000000000000",
	         "1400.50");
	total_bad("1400.50000000000000000000000000000000000"
	          "0000000000000000000000000",
	          "message.totalPrice: must be a decimal number or a string");
	total_is("-0", "0.00");
	total_is("-0.0", "0.00");
	/* A real too big for a double is not JSON when jansson read it (a
	 * long one), and is read as text when it is short. */
	golden_bad("\"host\": {",
	           "\"host\": {\"x\": 1.00000000000000000000000000000000000000"
	           "000000000000000000000000000000e400, ",
	           MS_EINVAL, "not JSON");
	golden_same("\"host\": {",
	            "\"host\": {\"x\": 1.00000000000000000000000000000000000000"
	            "000000000000000000000000000000e300, ");
	golden_same("\"host\": {", "\"host\": {\"x\": -1e999, ");

	for (size_t i = 0; i < sizeof(not_numbers) / sizeof(not_numbers[0]);
	     i++) {
		snprintf(to, sizeof(to), "\"host\": {\"x\": %s, ",
		         not_numbers[i]);
		golden_bad("\"host\": {", to, MS_EINVAL, "not JSON");
	}
}
END_TEST

/* nested returns |n| '[' then |n| ']' (malloc'd). */
static char *
nested(size_t n)
{
	char *s = malloc(2 * n + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, '[', n);
	memset(s + n, ']', n);
	s[2 * n] = '\0';
	return s;
}

START_TEST(nesting_limit)
{
	char to[256];
	char *deep;

	/* The envelope is level 1, host level 2: 30 more arrays make 32. */
	deep = nested(30);
	snprintf(to, sizeof(to), "\"host\": {\"x\": %s, ", deep);
	golden_same("\"host\": {", to);
	free(deep);
	deep = nested(31);
	snprintf(to, sizeof(to), "\"host\": {\"x\": %s, ", deep);
	golden_bad("\"host\": {", to, MS_EINVAL,
	           "nesting is deeper than 32 levels");
	free(deep);
	/* Inside an item (level 4) too. */
	deep = nested(29);
	snprintf(to, sizeof(to), "\"color\": \"Red\", \"x\": %s", deep);
	golden_bad("\"color\": \"Red\"", to, MS_EINVAL,
	           "nesting is deeper than 32 levels");
	free(deep);
}
END_TEST

static Suite *
envelope_suite(void)
{
	Suite *s = suite_create("amqp_envelope");
	TCase *dn = tcase_create("dotnet");
	TCase *en = tcase_create("encode");
	TCase *rt = tcase_create("round_trip");
	TCase *fm = tcase_create("forms");
	TCase *bad = tcase_create("refusals");
	TCase *rd = tcase_create("reader");

	tcase_add_test(dn, dotnet_fixture);
	tcase_add_test(dn, dotnet_times);
	tcase_add_test(dn, dotnet_without_occurred_on);
	suite_add_tcase(s, dn);

	tcase_add_test(en, encode_golden);
	tcase_add_test(en, encode_defaults);
	tcase_add_test(en, encode_money_fixed);
	tcase_add_test(en, encode_refuses);
	tcase_add_test(en, encode_escapes);
	tcase_add_test(en, encode_refuses_text);
	tcase_add_test(en, encode_exact_text);
	tcase_add_test(en, exchange_names);
	suite_add_tcase(s, en);

	tcase_add_test(rt, round_trip);
	tcase_add_test(rt, golden_decodes);
	suite_add_tcase(s, rt);

	tcase_add_test(fm, money_forms);
	tcase_add_test(fm, item_prices);
	tcase_add_test(fm, case_insensitive);
	tcase_add_test(fm, ambiguous_names);
	tcase_add_test(fm, trailing_commas);
	tcase_add_test(fm, unknown_members);
	tcase_add_test(fm, payment_method_forms);
	tcase_add_test(fm, traceparent);
	tcase_add_test(fm, nulls_are_absent);
	suite_add_tcase(s, fm);

	tcase_add_test(bad, unknown_type);
	tcase_add_test(bad, bad_fixtures);
	tcase_add_test(bad, bad_members);
	tcase_add_test(bad, long_strings);
	tcase_add_test(bad, many_items);
	tcase_add_test(bad, not_envelopes);
	tcase_add_test(bad, every_prefix);
	tcase_add_test(bad, corruptions);
	/* The corruption loop decodes ~12000 bodies: room under valgrind. */
	tcase_set_timeout(bad, 120);
	suite_add_tcase(s, bad);

	tcase_add_test(rd, escaped_names);
	tcase_add_test(rd, escaped_values);
	tcase_add_test(rd, duplicate_keys);
	tcase_add_test(rd, number_limits);
	tcase_add_test(rd, nesting_limit);
	suite_add_tcase(s, rd);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(envelope_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
