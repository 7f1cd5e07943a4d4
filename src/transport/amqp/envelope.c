/* SPDX-License-Identifier: MIT */
/*
 * The MassTransit JSON envelope (envelope.h): our BasketCheckoutEvent
 * protobuf to MassTransit's application/vnd.masstransit+json body and back,
 * as a .NET service on the original BuildingBlocks.Messaging writes and
 * reads it (reference/wire.md §3.3, reference/aspnetrun.md §4).
 *
 * Both directions walk one table of the payload's fields (event_fields,
 * item_fields), so that what we publish is exactly what we accept: a
 * string is text (valid UTF-8, no control characters but tab, CR and LF,
 * at most MAX_STR bytes), a GUID is the 36-character "D" form, money is an
 * exact decimal of at most 2 decimals and 18 digits - written as a string
 * with two decimals ("1400.00"), as MassTransit writes a .NET decimal, and
 * read from a string or a number, never through a double - and an int32 is
 * a JSON integer (or a string holding one, as System.Text.Json reads
 * numbers under MassTransit's options).
 *
 * Reading follows System.Text.Json under MassTransit's options: names
 * match case-insensitively (two members that match one name are refused as
 * ambiguous rather than resolved by order), trailing commas are accepted,
 * unknown members are ignored, a null member is an absent one. The .NET
 * base class's members id, occurredOn and eventType are recomputed on
 * every read there (aspnetrun.md §4.1), so the envelope's messageId, not
 * message.id, is the event's id and idempotency key; occurredOn is taken
 * when it is a valid time (else sentTime), never refused, as .NET ignores
 * it. A traceparent that is not valid W3C is dropped, as the W3C rule says.
 *
 * Reasons for MS_EINVAL name the field by its canonical JSON path
 * ("message.items[2].price: more than 2 decimals") and never quote a
 * value: a card number or CVV must not reach a log.
 *
 * Pure functions over buffers; thread safe (no shared state).
 */
#include "transport/amqp/envelope.h"

#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "core/err.h"
#include "core/json_exact.h"
#include "core/money.h"
#include "core/util.h"
#include "events.pb-c.h"

/* Our protobuf type and its .NET twin (namespace, URNs, exchange). */
#define EVENT_TYPE     "monoshop.events.BasketCheckoutEvent"
#define NET_NS         "BuildingBlocks.Messaging.Events"
#define EVENT_URN      "urn:message:" NET_NS ":BasketCheckoutEvent"
#define BASE_URN       "urn:message:" NET_NS ":IntegrationEvent"
#define EVENT_EXCHANGE NET_NS ":BasketCheckoutEvent"

/* Bounds. MAX_ITEMS is Ordering's own (ORDERING_MAX_ITEMS): a transport
 * must not include a module's header, so it is repeated here. */
#define MAX_ITEMS 1000
#define MAX_STR   4096 /* bytes of one string member */
/* A W3C traceparent of version 00 is 55 characters; later versions may
 * append fields. */
#define TRACEPARENT_MIN 55
#define TRACEPARENT_MAX 256

#define STR_(x) #x
#define STR(x)  STR_(x)

/* ---- the payload's fields ------------------------------------------------ */

enum kind {
	K_STR,   /* char *: text */
	K_GUID,  /* char *: GUID, lower case */
	K_MONEY, /* char *: exact decimal, two decimals */
	K_INT,   /* int32_t */
};

struct field {
	const char *name; /* camelCase, as MassTransit writes it */
	size_t off;       /* of the member in the protobuf struct */
	enum kind kind;
};

#define EV(m) offsetof(Monoshop__Events__BasketCheckoutEvent, m)
#define IT(m) offsetof(Monoshop__Events__BasketCheckoutItem, m)

/* In the original's property order (what MassTransit writes). Each table
 * has at most one K_GUID and one K_MONEY: struct slot holds their text. */
static const struct field event_fields[] = {
    {"userName", EV(username), K_STR},
    {"customerId", EV(customerid), K_GUID},
    {"totalPrice", EV(totalprice), K_MONEY},
    {"firstName", EV(firstname), K_STR},
    {"lastName", EV(lastname), K_STR},
    {"emailAddress", EV(emailaddress), K_STR},
    {"addressLine", EV(addressline), K_STR},
    {"country", EV(country), K_STR},
    {"state", EV(state), K_STR},
    {"zipCode", EV(zipcode), K_STR},
    {"cardName", EV(cardname), K_STR},
    {"cardNumber", EV(cardnumber), K_STR},
    {"expiration", EV(expiration), K_STR},
    {"cvv", EV(cvv), K_STR},
    {"paymentMethod", EV(paymentmethod), K_INT},
};

static const struct field item_fields[] = {
    {"productId", IT(productid), K_GUID},
    {"productName", IT(productname), K_STR},
    {"quantity", IT(quantity), K_INT},
    {"price", IT(price), K_MONEY},
    {"color", IT(color), K_STR},
};

/* Text a decoded GUID or money member is rewritten into; one per message
 * (event or item), alive until the message is packed. */
struct slot {
	char guid[MS_UUID_STRLEN];
	char money[MS_MONEY_STRLEN];
};

/* The member at |off| of a protobuf message, to write and to read. */
static char **
str_at(void *msg, size_t off)
{
	return (char **)(void *)((char *)msg + off);
}

static int32_t *
int_at(void *msg, size_t off)
{
	return (int32_t *)(void *)((char *)msg + off);
}

static const char *
str_of(const void *msg, size_t off)
{
	return *(char *const *)(const void *)((const char *)msg + off);
}

static int32_t
int_of(const void *msg, size_t off)
{
	return *(const int32_t *)(const void *)((const char *)msg + off);
}

/* text_ok tells whether |n| bytes of |s| are a string member we carry. */
static bool
text_ok(const char *s, size_t n)
{
	return n <= MAX_STR && ms_utf8_valid(s, n);
}

const char *
tp_amqp_exchange_for(const char *type)
{
	if (type != NULL && strcmp(type, EVENT_TYPE) == 0) {
		return EVENT_EXCHANGE;
	}
	return NULL;
}

/* ---- encode ------------------------------------------------------------- */

/* put adds |v| (a new reference, or NULL after a failed constructor) to
 * |obj| as |key|; jansson takes |v| even when it fails. */
static int
put(json_t *obj, const char *key, json_t *v)
{
	if (v == NULL) {
		return MS_ENOMEM;
	}
	return json_object_set_new(obj, key, v) == 0 ? 0 : MS_ENOMEM;
}

/* put_str adds the text |s|: MS_EINVAL when it is not text we carry. */
static int
put_str(json_t *obj, const char *key, const char *s)
{
	size_t n = strlen(s);

	if (!text_ok(s, n)) {
		return MS_EINVAL;
	}
	return put(obj, key, json_stringn(s, n));
}

/* put_opt adds |s|, or null when |s| is NULL. */
static int
put_opt(json_t *obj, const char *key, const char *s)
{
	return s != NULL ? put_str(obj, key, s) : put(obj, key, json_null());
}

/* put_guid adds the GUID |s| in lower case; MS_EINVAL if it is none. */
static int
put_guid(json_t *obj, const char *key, const char *s)
{
	char g[MS_UUID_STRLEN];

	if (s == NULL || !ms_uuid_valid(s)) {
		return MS_EINVAL;
	}
	memcpy(g, s, sizeof(g));
	ms_uuid_normalize(g);
	return put(obj, key, json_string(g));
}

static int
encode_fields(json_t *obj, const struct field *fields, size_t n,
              const void *msg)
{
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct field *f = &fields[i];
		char buf[MS_MONEY_STRLEN];
		const char *s;
		int64_t cents;

		switch (f->kind) {
		case K_STR:
			rc = put_str(obj, f->name, str_of(msg, f->off));
			break;
		case K_GUID:
			rc = put_guid(obj, f->name, str_of(msg, f->off));
			break;
		case K_MONEY:
			/* Re-formatted so that "1400.5" goes out as
			 * "1400.50"; an invalid amount is not published. */
			s = str_of(msg, f->off);
			if (ms_money_parse(s, strlen(s), &cents) != 0) {
				return MS_EINVAL;
			}
			rc =
			    put(obj, f->name,
			        json_string(ms_money_format_fixed(cents, buf)));
			break;
		case K_INT:
			rc = put(obj, f->name,
			         json_integer(int_of(msg, f->off)));
			break;
		}
	}
	return rc;
}

/* encode_message builds the envelope's "message" from |ev|. */
static int
encode_message(const Monoshop__Events__BasketCheckoutEvent *ev, json_t **out)
{
	json_t *msg = json_object();
	json_t *items = json_array();
	int rc;

	*out = NULL;
	if (msg == NULL || items == NULL) {
		json_decref(msg);
		json_decref(items);
		return MS_ENOMEM;
	}
	rc = encode_fields(msg, event_fields, MS_ARRAY_SIZE(event_fields), ev);
	if (ev->n_items > MAX_ITEMS) {
		rc = rc ? rc : MS_EINVAL;
	}
	for (size_t i = 0; i < ev->n_items && rc == 0; i++) {
		json_t *it = json_object();

		if (it == NULL || json_array_append_new(items, it) != 0) {
			rc = MS_ENOMEM;
			break;
		}
		rc = encode_fields(it, item_fields, MS_ARRAY_SIZE(item_fields),
		                   ev->items[i]);
	}
	if (rc != 0) {
		json_decref(items);
	} else {
		rc = put(msg, "items", items); /* takes |items| */
	}
	if (rc == 0) {
		rc = put_str(msg, "id", ev->id);
	}
	if (rc == 0) {
		rc = put_str(msg, "occurredOn", ev->occurredon);
	}
	if (rc != 0) {
		json_decref(msg);
		return rc;
	}
	*out = msg;
	return 0;
}

static int
encode_host(const struct tp_amqp_env_meta *meta, json_t **out)
{
	json_t *h = json_object();
	int rc;

	*out = NULL;
	if (h == NULL) {
		return MS_ENOMEM;
	}
	/* What a C process can truthfully say: no .NET framework, no
	 * MassTransit, so those stay null (HostInfo's members are strings,
	 * null is what MassTransit itself writes for the unknown). */
	rc = put_opt(h, "machineName", meta->machine_name);
	if (rc == 0) {
		rc = put_str(h, "processName",
		             meta->process_name ? meta->process_name
		                                : "monoshop");
	}
	if (rc == 0) {
		rc = put(h, "processId", json_integer(meta->process_id));
	}
	if (rc == 0) {
		rc = put_str(h, "assembly", "monoshop");
	}
	if (rc == 0) {
		rc = put_str(h, "assemblyVersion", MONOSHOP_VERSION);
	}
	if (rc == 0) {
		rc = put(h, "frameworkVersion", json_null());
	}
	if (rc == 0) {
		rc = put(h, "massTransitVersion", json_null());
	}
	if (rc == 0) {
		rc = put(h, "operatingSystemVersion", json_null());
	}
	if (rc != 0) {
		json_decref(h);
		return rc;
	}
	*out = h;
	return 0;
}

/* encode_envelope builds the whole envelope for |ev| into |env|, in the
 * order MassTransit writes its members. */
static int
encode_envelope(json_t *env, const Monoshop__Events__BasketCheckoutEvent *ev,
                const struct tp_amqp_env_meta *meta)
{
	const char *mid = meta->message_id ? meta->message_id : ev->id;
	char sent[MS_TIME_STRLEN];
	json_t *types = json_array();
	json_t *v;
	int rc;

	if (types == NULL) {
		return MS_ENOMEM;
	}
	if (json_array_append_new(types, json_string(EVENT_URN)) != 0 ||
	    json_array_append_new(types, json_string(BASE_URN)) != 0) {
		json_decref(types);
		return MS_ENOMEM;
	}
	rc = put_guid(env, "messageId", mid);
	if (rc == 0) {
		rc = put(env, "requestId", json_null());
	}
	if (rc == 0) {
		rc = put(env, "correlationId", json_null());
	}
	if (rc == 0) {
		rc = put_guid(env, "conversationId",
		              meta->conversation_id ? meta->conversation_id
		                                    : mid);
	}
	if (rc == 0) {
		rc = put(env, "initiatorId", json_null());
	}
	if (rc == 0) {
		rc = put_opt(env, "sourceAddress", meta->source_address);
	}
	if (rc == 0) {
		rc = put_opt(env, "destinationAddress",
		             meta->destination_address);
	}
	if (rc == 0) {
		rc = put(env, "responseAddress", json_null());
	}
	if (rc == 0) {
		rc = put(env, "faultAddress", json_null());
	}
	if (rc != 0) {
		json_decref(types);
		return rc;
	}
	rc = put(env, "messageType", types); /* takes |types| */
	if (rc == 0 && (rc = encode_message(ev, &v)) == 0) {
		rc = put(env, "message", v);
	}
	if (rc == 0) {
		rc = put(env, "expirationTime", json_null());
	}
	if (rc == 0) {
		rc = put_str(env, "sentTime",
		             ms_time_rfc3339(meta->sent_ms, sent));
	}
	if (rc == 0) {
		v = json_object();
		rc = put(env, "headers", v);
		if (rc == 0 && meta->traceparent != NULL) {
			rc = put_str(v, "traceparent", meta->traceparent);
		}
	}
	if (rc == 0 && (rc = encode_host(meta, &v)) == 0) {
		rc = put(env, "host", v);
	}
	return rc;
}

int
tp_amqp_envelope_encode(const char *type, const uint8_t *payload, size_t len,
                        const struct tp_amqp_env_meta *meta, char **out,
                        size_t *outlen)
{
	Monoshop__Events__BasketCheckoutEvent *ev;
	json_t *env;
	int rc;

	assert(meta != NULL && out != NULL && outlen != NULL);
	assert(payload != NULL || len == 0);
	*out = NULL;
	*outlen = 0;
	if (tp_amqp_exchange_for(type) == NULL) {
		return MS_ENOTSUP;
	}
	/* protobuf-c reports no reason: a NULL is a malformed payload, or
	 * ENOMEM, which it cannot tell apart; the payload is ours (the
	 * outbox), so malformed is the one to report. */
	ev =
	    monoshop__events__basket_checkout_event__unpack(NULL, len, payload);
	if (ev == NULL) {
		return MS_EINVAL;
	}
	env = json_object();
	rc = env != NULL ? encode_envelope(env, ev, meta) : MS_ENOMEM;
	monoshop__events__basket_checkout_event__free_unpacked(ev, NULL);
	if (rc == 0) {
		/* Compact: whitespace means nothing to MassTransit's reader.
		 * json_dumps allocates with malloc (no custom jansson
		 * allocator in this program), so the caller frees it. */
		*out = json_dumps(env, JSON_COMPACT);
		rc = *out != NULL ? 0 : MS_ENOMEM;
	}
	json_decref(env);
	if (rc == 0) {
		*outlen = strlen(*out);
	}
	return rc;
}

/* ---- decode ------------------------------------------------------------- */

/* The decoder's error sink: the reason for MS_EINVAL / MS_ENOTSUP. */
struct dec {
	char *why;
	size_t whylen;
};

static int reason(struct dec *d, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* reason writes the reason for |rc| and returns |rc|. */
static int
reason(struct dec *d, int rc, const char *fmt, ...)
{
	va_list ap;

	if (d->why != NULL && d->whylen > 0) {
		va_start(ap, fmt);
		vsnprintf(d->why, d->whylen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* join writes the path of member |name| of the object at |path|. */
static const char *
join(char *buf, size_t n, const char *path, const char *name)
{
	snprintf(buf, n, "%s%s%s", path, *path ? "." : "", name);
	return buf;
}

/*
 * member finds |name| in |obj| case-insensitively: 0 with *v set, or NULL
 * when absent or null; MS_EINVAL when two members match (System.Text.Json
 * would take the last; a sender that writes both is not to be guessed).
 */
static int
member(struct dec *d, const json_t *obj, const char *path, const char *name,
       json_t **v)
{
	json_t *o = (json_t *)obj; /* jansson's iterator API is not const */
	const char *key;
	json_t *m;
	char where[96];

	*v = NULL;
	json_object_foreach (o, key, m) {
		if (strcasecmp(key, name) != 0) {
			continue;
		}
		if (*v != NULL) {
			return reason(d, MS_EINVAL,
			              "%s: given more than once (names are "
			              "case-insensitive)",
			              join(where, sizeof(where), path, name));
		}
		*v = m;
	}
	if (json_is_null(*v)) {
		*v = NULL;
	}
	return 0;
}

/* parse_int parses "-?[0-9]+" exactly into an int32, as System.Text.Json
 * reads a number from a string: no spaces, no '+', no fraction. */
static bool
parse_int(const char *s, size_t n, int64_t *out)
{
	size_t i = s[0] == '-' ? 1 : 0;
	int64_t v = 0;

	if (n == i || n - i > 10) {
		return false; /* more digits than any int32 */
	}
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return false;
		}
		v = v * 10 + (s[i] - '0');
	}
	*out = s[0] == '-' ? -v : v;
	return true;
}

/* money_why tells why |n| bytes of |s|, refused by ms_money_parse, are no
 * amount - without quoting them. */
static const char *
money_why(const char *s, size_t n)
{
	size_t i = n > 0 && s[0] == '-' ? 1 : 0;
	size_t int_digits = 0;
	size_t frac = 0;

	while (i < n && s[i] >= '0' && s[i] <= '9') {
		i++;
		int_digits++;
	}
	if (int_digits > 0 && i < n && s[i] == '.') {
		size_t last = 0; /* fractional digits up to the last non-zero */

		for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
			frac++;
			if (s[i] != '0') {
				last = frac;
			}
		}
		if (i == n && frac > 0) {
			return last > 2 ? "more than 2 decimals"
			                : "more than 18 digits";
		}
	} else if (int_digits > 0 && i == n) {
		return "more than 18 digits";
	}
	return "must be a decimal number with at most 2 decimals and 18 "
	       "digits";
}

static int
decode_str(struct dec *d, const char *where, json_t *v, char **out)
{
	size_t n;

	if (!json_is_string(v) || ms_json_real_text(v, &n) != NULL) {
		return reason(d, MS_EINVAL, "%s: must be a string", where);
	}
	n = json_string_length(v);
	if (n > MAX_STR) {
		return reason(d, MS_EINVAL,
		              "%s: longer than " STR(MAX_STR) " bytes", where);
	}
	if (!ms_utf8_valid(json_string_value(v), n)) {
		return reason(d, MS_EINVAL,
		              "%s: must not contain control characters", where);
	}
	/* Borrowed from the tree, which outlives the packing. */
	*out = (char *)json_string_value(v);
	return 0;
}

static int
decode_guid(struct dec *d, const char *where, json_t *v, char g[MS_UUID_STRLEN])
{
	size_t n;

	if (!json_is_string(v) || ms_json_real_text(v, &n) != NULL ||
	    json_string_length(v) != MS_UUID_STRLEN - 1 ||
	    !ms_uuid_valid(json_string_value(v))) {
		return reason(d, MS_EINVAL, "%s: must be a GUID", where);
	}
	memcpy(g, json_string_value(v), MS_UUID_STRLEN);
	ms_uuid_normalize(g);
	return 0;
}

static int
decode_money(struct dec *d, const char *where, json_t *v,
             char buf[MS_MONEY_STRLEN])
{
	char scratch[MS_JSON_NUM_STRLEN];
	const char *t;
	size_t n;
	int64_t cents;

	if (!ms_json_exact_number(v, scratch, &t, &n)) {
		if (!json_is_string(v)) {
			return reason(d, MS_EINVAL,
			              "%s: must be a decimal number or a "
			              "string holding one",
			              where);
		}
		t = json_string_value(v);
		n = json_string_length(v);
	}
	if (ms_money_parse(t, n, &cents) != 0) {
		return reason(d, MS_EINVAL, "%s: %s", where, money_why(t, n));
	}
	ms_money_format_fixed(cents, buf);
	return 0;
}

static int
decode_int(struct dec *d, const char *where, json_t *v, int32_t *out)
{
	int64_t i;
	size_t n;

	if (json_is_integer(v)) {
		i = json_integer_value(v);
	} else if (!json_is_string(v) || ms_json_real_text(v, &n) != NULL ||
	           !parse_int(json_string_value(v), json_string_length(v),
	                      &i)) {
		return reason(d, MS_EINVAL,
		              "%s: must be an integer (or a string holding "
		              "one)",
		              where);
	}
	if (i < INT32_MIN || i > INT32_MAX) {
		return reason(d, MS_EINVAL, "%s: out of the range of int32",
		              where);
	}
	*out = (int32_t)i;
	return 0;
}

/* decode_fields fills |msg| from the object |obj| at |path|; a missing or
 * null member keeps the protobuf default. */
static int
decode_fields(struct dec *d, const json_t *obj, const char *path,
              const struct field *fields, size_t n, void *msg,
              struct slot *slot)
{
	for (size_t i = 0; i < n; i++) {
		const struct field *f = &fields[i];
		char where[96];
		json_t *v;
		int rc;

		rc = member(d, obj, path, f->name, &v);
		if (rc != 0 || v == NULL) {
			if (rc != 0) {
				return rc;
			}
			continue;
		}
		join(where, sizeof(where), path, f->name);
		switch (f->kind) {
		case K_STR:
			rc = decode_str(d, where, v, str_at(msg, f->off));
			break;
		case K_GUID:
			rc = decode_guid(d, where, v, slot->guid);
			if (rc == 0) {
				*str_at(msg, f->off) = slot->guid;
			}
			break;
		case K_MONEY:
			rc = decode_money(d, where, v, slot->money);
			if (rc == 0) {
				*str_at(msg, f->off) = slot->money;
			}
			break;
		case K_INT:
			rc = decode_int(d, where, v, int_at(msg, f->off));
			break;
		}
		if (rc != 0) {
			return rc;
		}
	}
	return 0;
}

/* ---- ISO 8601 times ------------------------------------------------------ */

/* days_from_civil returns the days since 1970-01-01 of a proleptic
 * Gregorian date (H. Hinnant's algorithm). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* digits reads exactly |w| decimal digits at s[*i]. */
static bool
digits(const char *s, size_t n, size_t *i, size_t w, unsigned *out)
{
	unsigned v = 0;

	if (n - *i < w) {
		return false;
	}
	for (size_t k = 0; k < w; k++) {
		char c = s[*i + k];

		if (c < '0' || c > '9') {
			return false;
		}
		v = v * 10 + (unsigned)(c - '0');
	}
	*i += w;
	*out = v;
	return true;
}

static bool
expect(const char *s, size_t n, size_t *i, char c)
{
	if (*i < n && s[*i] == c) {
		(*i)++;
		return true;
	}
	return false;
}

/*
 * parse_time reads |n| bytes of |s|, an ISO 8601 date-time as
 * System.Text.Json reads one: "YYYY-MM-DD", optionally followed by
 * "THH:MM", ":SS", a fraction of 1 to 16 digits, and "Z" or "+HH:MM" /
 * "-HH:MM" (no offset: UTC, as MassTransit writes UTC). *ms is the time
 * in milliseconds since the Unix epoch (the fraction truncated).
 */
static bool
parse_time(const char *s, size_t n, int64_t *ms)
{
	static const unsigned mdays[] = {31, 29, 31, 30, 31, 30,
	                                 31, 31, 30, 31, 30, 31};
	unsigned y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
	unsigned oh = 0, om = 0;
	int osign = 0;
	size_t i = 0;
	bool leap;

	if (!digits(s, n, &i, 4, &y) || !expect(s, n, &i, '-') ||
	    !digits(s, n, &i, 2, &mo) || !expect(s, n, &i, '-') ||
	    !digits(s, n, &i, 2, &d)) {
		return false;
	}
	if (expect(s, n, &i, 'T') || expect(s, n, &i, 't')) {
		if (!digits(s, n, &i, 2, &h) || !expect(s, n, &i, ':') ||
		    !digits(s, n, &i, 2, &mi)) {
			return false;
		}
		if (expect(s, n, &i, ':')) {
			if (!digits(s, n, &i, 2, &sec)) {
				return false;
			}
			if (expect(s, n, &i, '.')) {
				size_t k = 0;

				while (i < n && s[i] >= '0' && s[i] <= '9') {
					if (k < 3) {
						frac = frac * 10 +
						       (unsigned)(s[i] - '0');
					}
					k++;
					i++;
				}
				if (k == 0 || k > 16) {
					return false;
				}
				for (; k < 3; k++) {
					frac *= 10;
				}
			}
		}
		if (expect(s, n, &i, 'Z') || expect(s, n, &i, 'z')) {
			osign = 0;
		} else if (i < n && (s[i] == '+' || s[i] == '-')) {
			osign = s[i] == '+' ? 1 : -1;
			i++;
			if (!digits(s, n, &i, 2, &oh) ||
			    !expect(s, n, &i, ':') ||
			    !digits(s, n, &i, 2, &om) || oh > 14 || om > 59) {
				return false;
			}
		}
	}
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (i != n || y < 1 || mo < 1 || mo > 12 || d < 1 ||
	    d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) || h > 23 ||
	    mi > 59 || sec > 59) {
		return false;
	}
	*ms = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 + sec;
	*ms = *ms * 1000 + frac - osign * (int64_t)(oh * 60 + om) * 60000;
	return true;
}

/* decode_time reads the optional time member |v| at |where|. Returns 1
 * with *ms set, 0 when |v| is absent, or MS_EINVAL. */
static int
decode_time(struct dec *d, const char *where, json_t *v, int64_t *ms)
{
	size_t n;

	if (v == NULL) {
		return 0;
	}
	if (!json_is_string(v) || ms_json_real_text(v, &n) != NULL ||
	    !parse_time(json_string_value(v), json_string_length(v), ms)) {
		return reason(d, MS_EINVAL, "%s: must be an ISO 8601 time",
		              where);
	}
	return 1;
}

/* traceparent_ok tells whether |n| bytes of |s| are a W3C traceparent:
 * version-traceid-parentid-flags, lower-case hex, ids not all zero,
 * version not ff, version 00 exactly 55 characters. */
static bool
traceparent_ok(const char *s, size_t n)
{
	static const size_t dash[] = {2, 35, 52};
	bool tid = false, pid = false;

	if (n < TRACEPARENT_MIN || n > TRACEPARENT_MAX ||
	    (n > TRACEPARENT_MIN &&
	     (memcmp(s, "00", 2) == 0 || s[TRACEPARENT_MIN] != '-'))) {
		return false;
	}
	for (size_t i = 0; i < TRACEPARENT_MIN; i++) {
		char c = s[i];

		if (i == dash[0] || i == dash[1] || i == dash[2]) {
			if (c != '-') {
				return false;
			}
			continue;
		}
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return false;
		}
		tid |= i > 2 && i < 35 && c != '0';
		pid |= i > 35 && i < 52 && c != '0';
	}
	return tid && pid && memcmp(s, "ff", 2) != 0;
}

/* ---- the envelope -------------------------------------------------------- */

/* What one decode holds until the event is packed: the parsed tree (which
 * the event's strings borrow from) and the rewritten texts. */
struct work {
	json_t *root;
	Monoshop__Events__BasketCheckoutEvent ev;
	struct slot slot;
	char occurred[MS_TIME_STRLEN];
	Monoshop__Events__BasketCheckoutItem *items; /* n_items, calloc'd */
	Monoshop__Events__BasketCheckoutItem *
	    *pits; /* pointers to them, for protobuf-c */
	struct slot *islots;
};

static void
work_fini(struct work *w)
{
	json_decref(w->root);
	free(w->items);
	free(w->pits);
	free(w->islots);
}

/* check_type tells whether the envelope's messageType lists our URN. */
static int
check_type(struct dec *d, const json_t *root)
{
	json_t *types;
	json_t *t;
	size_t i;
	bool ours = false;
	int rc;

	rc = member(d, root, "", "messageType", &types);
	if (rc != 0) {
		return rc;
	}
	if (types == NULL) {
		return reason(d, MS_EINVAL, "messageType: is required");
	}
	if (!json_is_array(types)) {
		return reason(d, MS_EINVAL,
		              "messageType: must be an array of strings");
	}
	json_array_foreach (types, i, t) {
		if (!json_is_string(t)) {
			return reason(d, MS_EINVAL,
			              "messageType: must be an array of "
			              "strings");
		}
		/* MassTransit compares URNs case-insensitively. */
		ours |= strcasecmp(json_string_value(t), EVENT_URN) == 0;
	}
	if (!ours) {
		return reason(d, MS_ENOTSUP,
		              "messageType: does not list " EVENT_URN);
	}
	return 0;
}

static int
decode_items(struct dec *d, struct work *w, const json_t *msg)
{
	json_t *arr;
	json_t *it;
	size_t i, n;
	int rc;

	rc = member(d, msg, "message", "items", &arr);
	if (rc != 0 || arr == NULL) {
		return rc; /* the original .NET event has no items */
	}
	if (!json_is_array(arr)) {
		return reason(d, MS_EINVAL, "message.items: must be an array");
	}
	n = json_array_size(arr);
	if (n > MAX_ITEMS) {
		return reason(
		    d, MS_EINVAL,
		    "message.items: more than " STR(MAX_ITEMS) " items");
	}
	if (n == 0) {
		return 0;
	}
	w->items = calloc(n, sizeof(*w->items));
	w->pits = calloc(n, sizeof(*w->pits));
	w->islots = calloc(n, sizeof(*w->islots));
	if (w->items == NULL || w->pits == NULL || w->islots == NULL) {
		return MS_ENOMEM;
	}
	json_array_foreach (arr, i, it) {
		char path[40];

		snprintf(path, sizeof(path), "message.items[%zu]", i);
		if (!json_is_object(it)) {
			return reason(d, MS_EINVAL, "%s: must be an object",
			              path);
		}
		monoshop__events__basket_checkout_item__init(&w->items[i]);
		w->pits[i] = &w->items[i];
		rc = decode_fields(d, it, path, item_fields,
		                   MS_ARRAY_SIZE(item_fields), &w->items[i],
		                   &w->islots[i]);
		if (rc != 0) {
			return rc;
		}
	}
	w->ev.n_items = n;
	w->ev.items = w->pits;
	return 0;
}

/* decode_root reads the parsed envelope into |w| and |out| (message_id,
 * traceparent, sent_ms). */
static int
decode_root(struct dec *d, struct work *w, struct tp_amqp_decoded *out)
{
	json_t *v;
	json_t *msg;
	int64_t when;
	int sent; /* 1 when sentTime is given */
	int rc;

	if (!json_is_object(w->root)) {
		return reason(d, MS_EINVAL,
		              "the envelope must be a JSON object");
	}
	rc = check_type(d, w->root);
	if (rc != 0) {
		return rc;
	}

	if ((rc = member(d, w->root, "", "messageId", &v)) != 0) {
		return rc;
	}
	if (v == NULL) {
		return reason(d, MS_EINVAL, "messageId: is required");
	}
	if ((rc = decode_guid(d, "messageId", v, out->message_id)) != 0) {
		return rc;
	}

	if ((rc = member(d, w->root, "", "sentTime", &v)) != 0) {
		return rc;
	}
	sent = decode_time(d, "sentTime", v, &out->sent_ms);
	if (sent < 0) {
		return sent;
	}

	if ((rc = member(d, w->root, "", "headers", &v)) != 0) {
		return rc;
	}
	if (v != NULL && !json_is_object(v)) {
		return reason(d, MS_EINVAL, "headers: must be an object");
	}
	if (v != NULL) {
		if ((rc = member(d, v, "headers", "traceparent", &v)) != 0) {
			return rc;
		}
		if (json_is_string(v) &&
		    traceparent_ok(json_string_value(v),
		                   json_string_length(v))) {
			out->traceparent = strdup(json_string_value(v));
			if (out->traceparent == NULL) {
				return MS_ENOMEM;
			}
		}
	}

	if ((rc = member(d, w->root, "", "message", &msg)) != 0) {
		return rc;
	}
	if (msg == NULL) {
		return reason(d, MS_EINVAL, "message: is required");
	}
	if (!json_is_object(msg)) {
		return reason(d, MS_EINVAL, "message: must be an object");
	}
	rc = decode_fields(d, msg, "message", event_fields,
	                   MS_ARRAY_SIZE(event_fields), &w->ev, &w->slot);
	if (rc == 0) {
		rc = decode_items(d, w, msg);
	}
	if (rc != 0) {
		return rc;
	}
	w->ev.id = out->message_id;

	/* occurredOn is the .NET side's DateTime.Now at serialization: taken
	 * when valid, never refused (.NET ignores it on read). */
	if ((rc = member(d, msg, "message", "occurredOn", &v)) != 0) {
		return rc;
	}
	if (v != NULL && json_is_string(v) &&
	    parse_time(json_string_value(v), json_string_length(v), &when)) {
		w->ev.occurredon = ms_time_rfc3339(when, w->occurred);
	} else if (sent == 1) {
		w->ev.occurredon = ms_time_rfc3339(out->sent_ms, w->occurred);
	}
	return 0;
}

void
tp_amqp_decoded_fini(struct tp_amqp_decoded *d)
{
	if (d == NULL) {
		return;
	}
	free(d->payload);
	free(d->traceparent);
	memset(d, 0, sizeof(*d));
}

int
tp_amqp_envelope_decode(const char *body, size_t len,
                        struct tp_amqp_decoded *out, char *why, size_t whylen)
{
	struct dec d = {.why = why, .whylen = why != NULL ? whylen : 0};
	struct work w = {.ev = MONOSHOP__EVENTS__BASKET_CHECKOUT_EVENT__INIT};
	json_error_t je;
	int rc;

	assert(out != NULL);
	memset(out, 0, sizeof(*out));
	if (d.whylen > 0) {
		why[0] = '\0';
	}
	if (body == NULL || len == 0) {
		return reason(&d, MS_EINVAL, "the body is empty");
	}
	if (len > TP_AMQP_ENVELOPE_MAX) {
		return reason(&d, MS_EINVAL, "the body is larger than %d bytes",
		              TP_AMQP_ENVELOPE_MAX);
	}
	rc = ms_json_loads_exact(body, len, MS_JSON_TRAILING_COMMAS, &w.root,
	                         &je);
	if (rc == MS_EJSON) {
		/* jansson quotes the token it choked on (" near '...'", up
		 * to 20 bytes): that may be a card number or a CVV, and the
		 * reason is logged. Position only. */
		char *near = strstr(je.text, " near ");

		if (near != NULL) {
			*near = '\0';
		}
		if (je.line < 0) {
			return reason(&d, MS_EINVAL, "not JSON: %s", je.text);
		}
		return reason(&d, MS_EINVAL, "not JSON: line %d, column %d: %s",
		              je.line, je.column, je.text);
	}
	if (rc != 0) {
		return rc;
	}
	rc = decode_root(&d, &w, out);
	if (rc == 0) {
		out->len = protobuf_c_message_get_packed_size(&w.ev.base);
		/* Owned by |out| (tp_amqp_decoded_fini). */
		out->payload = malloc(out->len > 0 ? out->len : 1);
		if (out->payload == NULL) {
			rc = MS_ENOMEM;
		} else {
			protobuf_c_message_pack(&w.ev.base, out->payload);
			out->type = EVENT_TYPE;
		}
	}
	work_fini(&w);
	if (rc != 0) {
		tp_amqp_decoded_fini(out);
	}
	return rc;
}
