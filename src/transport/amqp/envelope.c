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
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/*
 * The encoder writes the envelope's text straight into one growing buffer,
 * member by member in the order MassTransit writes them, and builds no
 * tree (a jansson tree then json_dumps cost most of an encode: a malloc
 * per value, a hash table per object, a second walk to print). The text
 * is byte for byte what json_dumps(tree, JSON_COMPACT) made of the tree
 * this encoder built before (jansson 2.14): no whitespace, members in the
 * order they were added, integers in decimal, and strings escaped as
 * jansson escapes them without JSON_ENSURE_ASCII and JSON_ESCAPE_SLASH -
 * '"', '\\' and the C0 controls only (\b \f \n \r \t by name, the others
 * as \u00XX in upper-case hex; a string we carry holds only tab, CR and
 * LF of them), while '/', DEL and all of UTF-8 (U+2028 and U+2029
 * included) go out as they are. It refuses what that encoder refused, with
 * the same codes: a string that is no text we carry (text_ok), a GUID
 * that is none, an amount that is none, more than MAX_ITEMS items.
 */

/* The text being written. A failed grow sets |oom|: the text is then cut
 * short and the encode fails with MS_ENOMEM, so no write needs checking. */
struct ebuf {
	char *p; /* malloc'd */
	size_t len;
	size_t cap;
	bool oom;
};

/* grow makes room for |n| more bytes; false (and |oom|) when it cannot. */
static bool
grow(struct ebuf *b, size_t n)
{
	size_t cap = b->cap > 0 ? b->cap : 1024;
	char *p;

	if (b->oom) {
		return false;
	}
	while (cap - b->len < n) {
		cap *= 2;
	}
	p = realloc(b->p, cap);
	if (p == NULL) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void
put_raw(struct ebuf *b, const char *s, size_t n)
{
	if (b->cap - b->len >= n || grow(b, n)) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	}
}

/* put_lit writes the literal |s| (JSON text as it is). */
#define put_lit(b, s) put_raw((b), "" s, sizeof(s) - 1)

/* put_escape writes the escape of the byte |c|, as jansson's dump_string
 * writes it. */
static void
put_escape(struct ebuf *b, unsigned char c)
{
	static const char hex[] = "0123456789ABCDEF";
	char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};

	switch (c) {
	case '"':
		put_lit(b, "\\\"");
		break;
	case '\\':
		put_lit(b, "\\\\");
		break;
	case '\b':
		put_lit(b, "\\b");
		break;
	case '\f':
		put_lit(b, "\\f");
		break;
	case '\n':
		put_lit(b, "\\n");
		break;
	case '\r':
		put_lit(b, "\\r");
		break;
	case '\t':
		put_lit(b, "\\t");
		break;
	default:
		put_raw(b, e, sizeof(e));
		break;
	}
}

/* put_quoted writes |n| bytes of |s| (valid UTF-8) as a JSON string: the
 * runs that need no escape are copied whole. */
static void
put_quoted(struct ebuf *b, const char *s, size_t n)
{
	size_t run = 0;

	put_lit(b, "\"");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c != '"' && c != '\\') {
			continue;
		}
		put_raw(b, s + run, i - run);
		put_escape(b, c);
		run = i + 1;
	}
	put_raw(b, s + run, n - run);
	put_lit(b, "\"");
}

/* put_str writes the text |s|: MS_EINVAL when it is not text we carry. */
static int
put_str(struct ebuf *b, const char *s)
{
	size_t n = strlen(s);

	if (!text_ok(s, n)) {
		return MS_EINVAL;
	}
	put_quoted(b, s, n);
	return 0;
}

/* put_opt writes |s|, or null when |s| is NULL. */
static int
put_opt(struct ebuf *b, const char *s)
{
	if (s == NULL) {
		put_lit(b, "null");
		return 0;
	}
	return put_str(b, s);
}

/* put_guid writes the GUID |s| in lower case; MS_EINVAL if it is none. */
static int
put_guid(struct ebuf *b, const char *s)
{
	char g[MS_UUID_STRLEN];

	if (s == NULL || !ms_uuid_valid(s)) {
		return MS_EINVAL;
	}
	memcpy(g, s, sizeof(g));
	ms_uuid_normalize(g);
	put_quoted(b, g, MS_UUID_STRLEN - 1);
	return 0;
}

/* put_int writes |v| in decimal, as jansson's "%lld". */
static void
put_int(struct ebuf *b, int64_t v)
{
	char d[24];
	size_t i = sizeof(d);
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	do {
		d[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0) {
		d[--i] = '-';
	}
	put_raw(b, d + i, sizeof(d) - i);
}

/* put_key writes |name| as the key of a member that follows another one
 * (|comma|) or opens its object. */
static void
put_key(struct ebuf *b, const char *name, bool comma)
{
	if (comma) {
		put_lit(b, ",");
	}
	put_quoted(b, name, strlen(name));
	put_lit(b, ":");
}

/* encode_fields writes the members |fields| (|n|) of |msg|, the first
 * one after a comma when |comma|. */
static int
encode_fields(struct ebuf *b, const struct field *fields, size_t n,
              const void *msg, bool comma)
{
	for (size_t i = 0; i < n; i++) {
		const struct field *f = &fields[i];
		char buf[MS_MONEY_STRLEN];
		const char *s = NULL;
		int64_t cents;
		int rc = 0;

		put_key(b, f->name, comma || i > 0);
		switch (f->kind) {
		case K_STR:
			rc = put_str(b, str_of(msg, f->off));
			break;
		case K_GUID:
			rc = put_guid(b, str_of(msg, f->off));
			break;
		case K_MONEY:
			/* Re-formatted so that "1400.5" goes out as
			 * "1400.50"; an invalid amount is not published. */
			s = str_of(msg, f->off);
			if (ms_money_parse(s, strlen(s), &cents) != 0) {
				return MS_EINVAL;
			}
			s = ms_money_format_fixed(cents, buf);
			put_quoted(b, s, strlen(s));
			break;
		case K_INT:
			put_int(b, int_of(msg, f->off));
			break;
		}
		if (rc != 0) {
			return rc;
		}
	}
	return 0;
}

/* encode_message writes the envelope's "message" for |ev|. */
static int
encode_message(struct ebuf *b, const Monoshop__Events__BasketCheckoutEvent *ev)
{
	int rc;

	put_lit(b, "{");
	rc = encode_fields(b, event_fields, MS_ARRAY_SIZE(event_fields), ev,
	                   false);
	if (rc != 0) {
		return rc;
	}
	if (ev->n_items > MAX_ITEMS) {
		return MS_EINVAL;
	}
	put_lit(b, ",\"items\":[");
	for (size_t i = 0; i < ev->n_items; i++) {
		if (i > 0) {
			put_lit(b, ",");
		}
		put_lit(b, "{");
		rc = encode_fields(b, item_fields, MS_ARRAY_SIZE(item_fields),
		                   ev->items[i], false);
		if (rc != 0) {
			return rc;
		}
		put_lit(b, "}");
	}
	put_lit(b, "],\"id\":");
	rc = put_str(b, ev->id);
	if (rc == 0) {
		put_lit(b, ",\"occurredOn\":");
		rc = put_str(b, ev->occurredon);
	}
	put_lit(b, "}");
	return rc;
}

static int
encode_host(struct ebuf *b, const struct tp_amqp_env_meta *meta)
{
	int rc;

	/* What a C process can truthfully say: no .NET framework, no
	 * MassTransit, so those stay null (HostInfo's members are strings,
	 * null is what MassTransit itself writes for the unknown). */
	put_lit(b, "{\"machineName\":");
	rc = put_opt(b, meta->machine_name);
	if (rc == 0) {
		put_lit(b, ",\"processName\":");
		rc = put_str(b, meta->process_name ? meta->process_name
		                                   : "monoshop");
	}
	if (rc == 0) {
		put_lit(b, ",\"processId\":");
		put_int(b, meta->process_id);
		put_lit(b, ",\"assembly\":\"monoshop\",\"assemblyVersion\":");
		rc = put_str(b, MONOSHOP_VERSION);
	}
	put_lit(b, ",\"frameworkVersion\":null,\"massTransitVersion\":null,"
	           "\"operatingSystemVersion\":null}");
	return rc;
}

/* encode_envelope writes the whole envelope for |ev|, in the order
 * MassTransit writes its members. */
static int
encode_envelope(struct ebuf *b, const Monoshop__Events__BasketCheckoutEvent *ev,
                const struct tp_amqp_env_meta *meta)
{
	const char *mid = meta->message_id ? meta->message_id : ev->id;
	char sent[MS_TIME_STRLEN];
	int rc;

	put_lit(b, "{\"messageId\":");
	if ((rc = put_guid(b, mid)) != 0) {
		return rc;
	}
	put_lit(b, ",\"requestId\":null,\"correlationId\":null,"
	           "\"conversationId\":");
	rc = put_guid(b, meta->conversation_id ? meta->conversation_id : mid);
	if (rc != 0) {
		return rc;
	}
	put_lit(b, ",\"initiatorId\":null,\"sourceAddress\":");
	if ((rc = put_opt(b, meta->source_address)) != 0) {
		return rc;
	}
	put_lit(b, ",\"destinationAddress\":");
	if ((rc = put_opt(b, meta->destination_address)) != 0) {
		return rc;
	}
	put_lit(b, ",\"responseAddress\":null,\"faultAddress\":null,"
	           "\"messageType\":[\"" EVENT_URN "\",\"" BASE_URN "\"],"
	           "\"message\":");
	if ((rc = encode_message(b, ev)) != 0) {
		return rc;
	}
	put_lit(b, ",\"expirationTime\":null,\"sentTime\":");
	if ((rc = put_str(b, ms_time_rfc3339(meta->sent_ms, sent))) != 0) {
		return rc;
	}
	put_lit(b, ",\"headers\":{");
	if (meta->traceparent != NULL) {
		put_lit(b, "\"traceparent\":");
		if ((rc = put_str(b, meta->traceparent)) != 0) {
			return rc;
		}
	}
	put_lit(b, "},\"host\":");
	if ((rc = encode_host(b, meta)) != 0) {
		return rc;
	}
	put_lit(b, "}");
	return 0;
}

/* opt_len is strlen(|s|), or 0 for NULL. */
static size_t
opt_len(const char *s)
{
	return s != NULL ? strlen(s) : 0;
}

int
tp_amqp_envelope_encode(const char *type, const uint8_t *payload, size_t len,
                        const struct tp_amqp_env_meta *meta, char **out,
                        size_t *outlen)
{
	Monoshop__Events__BasketCheckoutEvent *ev;
	struct ebuf b = {0};
	size_t items;
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
	/* One allocation for the usual envelope: ~1 KiB of names and nulls,
	 * the payload's strings (an escape at most doubles one), the
	 * addresses, and what an item adds to its strings. */
	items = ev->n_items < MAX_ITEMS ? ev->n_items : MAX_ITEMS;
	grow(&b,
	     1024 + 2 * len + 128 * items +
	         2 * (opt_len(meta->source_address) +
	              opt_len(meta->destination_address) +
	              opt_len(meta->traceparent) + opt_len(meta->machine_name) +
	              opt_len(meta->process_name)));
	rc = encode_envelope(&b, ev, meta);
	monoshop__events__basket_checkout_event__free_unpacked(ev, NULL);
	if (rc == 0) {
		/* NUL-terminated, as json_dumps wrote it. */
		put_raw(&b, "", 1);
		rc = b.oom ? MS_ENOMEM : 0;
	}
	if (rc != 0) {
		free(b.p);
		return rc;
	}
	/* malloc'd: the caller frees it. */
	*out = b.p;
	*outlen = b.len - 1;
	return 0;
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

/* Where a member is: spelled out only in a reason, when there is one. */
struct at {
	const char *obj;  /* its object's path: "", "headers" or "message" */
	long item;        /* or, when >= 0, message.items[item]'s */
	const char *name; /* its canonical name */
};

#define AT(obj, name) (&(const struct at){(obj), -1, (name)})

/* bad writes the reason "<path>: |what|" for the member |at|; returns
 * MS_EINVAL. */
static int
bad(struct dec *d, const struct at *at, const char *what)
{
	if (at->item >= 0) {
		return reason(d, MS_EINVAL, "message.items[%ld].%s: %s",
		              at->item, at->name, what);
	}
	return reason(d, MS_EINVAL, "%s%s%s: %s", at->obj, *at->obj ? "." : "",
	              at->name, what);
}

/* ---- decode: reading the text, once ------------------------------------- */

/*
 * The decoder reads the body once and builds no tree (a jansson tree, a
 * malloc per value and a hash table per object, cost most of a decode).
 * Its JSON parser accepts exactly the texts that ms_json_loads_exact
 * accepts with MS_JSON_TRAILING_COMMAS: jansson's grammar (an object or an
 * array at the top, integers that fit an int64, no \u0000, valid UTF-8, no
 * duplicate keys), nesting up to MS_JSON_MAX_DEPTH, no \u0001 or \u0002,
 * one trailing comma per container. While it checks the whole text, it
 * notes where the members we read are - in the envelope, its headers, its
 * message and the message's items: the first member of each name, in any
 * case, and how many matched; strings are decoded later, and only those
 * the event keeps. The members are then judged in a fixed order
 * (decode_root): messageType, messageId, sentTime, headers, then the
 * message member by member, its items, occurredOn. So the fault reported
 * is the first in that order, wherever it is in the text.
 */

/* What a JSON value is, as far as the judges of members care. */
enum vtype {
	V_NONE, /* no value: the member is absent */
	V_NULL,
	V_BOOL,
	V_INT,    /* fits an int64 (jansson refuses more) */
	V_REAL,   /* of at most MS_JSON_NUM_MAX bytes: its text is exact */
	V_DOUBLE, /* a longer one: a double in jansson, not exact */
	V_STR,
	V_OBJ,
	V_ARR,
};

/* Where a value is in the body. */
struct val {
	enum vtype type;
	bool esc;   /* a string with escapes: decoded before use */
	size_t off; /* its text; a string's without the quotes */
	size_t len;
};

/* A member we read: how many members have its name (in any case), and the
 * first one's value. */
struct member {
	unsigned seen;
	struct val v;
};

/* Where in the envelope a value is: what of it is noted. */
enum ctx {
	C_ANY,     /* nowhere we read */
	C_ROOT,    /* the envelope */
	C_TYPES,   /* its messageType */
	C_HEADERS, /* its headers */
	C_MESSAGE, /* its message */
	C_ITEMS,   /* the message's items */
	C_ITEM,    /* one of the items */
};

enum { R_TYPE, R_ID, R_SENT, R_HEADERS, R_MESSAGE, R_N };
static const char *const root_names[R_N] = {
    "messageType", "messageId", "sentTime", "headers", "message",
};

enum { H_TRACEPARENT, H_N };
static const char *const header_names[H_N] = {"traceparent"};

/* The message's members: event_fields, then these. */
enum { M_ITEMS = MS_ARRAY_SIZE(event_fields), M_OCCURRED, M_N };
static const char *const message_names[M_N - M_ITEMS] = {"items", "occurredOn"};

/* An object's key, decoded, for the duplicate check. */
struct key {
	const char *s; /* in the body, or in the arena when it had escapes */
	size_t n;
	uint32_t hash;
};

/* One of message.items: its members as read, then its event item. */
struct item {
	struct val self;
	struct member f[MS_ARRAY_SIZE(item_fields)];
	Monoshop__Events__BasketCheckoutItem pb;
	struct slot slot;
};

/*
 * One decode: the body and the read position; the arena that the strings
 * in use are decoded into, NUL-terminated (|len| bytes are enough: no
 * string decodes to more than its quoted text, and each is decoded at most
 * once); the keys of the objects open; what was noted of the members; then
 * the event built from them, whose strings point into the arena and the
 * slots.
 */
struct work {
	const char *s;
	size_t len;
	size_t i;
	unsigned depth;
	char *arena; /* malloc'd, |len| bytes */
	size_t used;
	struct key *keys; /* realloc'd */
	size_t nkeys;
	size_t kcap;
	enum vtype top;
	struct member root[R_N];
	struct member headers[H_N];
	struct member msg[M_N];
	bool types_ours;    /* messageType lists our URN */
	bool types_strange; /* messageType holds a non-string */
	struct item *items; /* realloc'd: the first MAX_ITEMS of items */
	size_t nitems;      /* how many elements items has */
	size_t icap;
	Monoshop__Events__BasketCheckoutEvent ev;
	struct slot slot;
	char occurred[MS_TIME_STRLEN];
	Monoshop__Events__BasketCheckoutItem **pits; /* n_items, calloc'd */
};

static void
work_fini(struct work *w)
{
	free(w->arena);
	free(w->keys);
	free(w->items);
	free(w->pits);
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* next skips whitespace and returns the byte there, or -1 at the end. */
static int
next(struct work *w)
{
	while (w->i < w->len && is_space(w->s[w->i])) {
		w->i++;
	}
	return w->i < w->len ? (unsigned char)w->s[w->i] : -1;
}

/*
 * escape_len returns the length of the escape at s[0] (a '\\') of the |n|
 * bytes there, or 0 when it is refused: by jansson (an unknown escape,
 * \u0000, a surrogate out of its pair) or by ms_json_loads_exact (\u0001
 * and \u0002, its number tag's characters).
 */
static size_t
escape_len(const char *s, size_t n)
{
	int u;

	if (n < 2) {
		return 0;
	}
	switch (s[1]) {
	case '"':
	case '\\':
	case '/':
	case 'b':
	case 'f':
	case 'n':
	case 'r':
	case 't':
		return 2;
	case 'u':
		break;
	default:
		return 0;
	}
	if (n < 6 || (u = ms_hex4(s + 2)) <= 2 ||
	    (u >= 0xdc00 && u <= 0xdfff)) {
		return 0;
	}
	if (u < 0xd800 || u > 0xdbff) {
		return 6;
	}
	if (n < 12 || s[6] != '\\' || s[7] != 'u') {
		return 0;
	}
	u = ms_hex4(s + 8);
	return u >= 0xdc00 && u <= 0xdfff ? 12 : 0;
}

/* utf8_len returns the length of the UTF-8 sequence at s[0] (a byte of
 * 0x80 or more) of the |n| bytes there, or 0 when it is not valid (the
 * rules of ms_utf8_valid are jansson's). */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	size_t k = s[0] >= 0xc2 && s[0] <= 0xdf   ? 2
	           : s[0] >= 0xe0 && s[0] <= 0xef ? 3
	           : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
	                                          : 0;

	return k > 0 && k <= n && ms_utf8_valid((const char *)s, k) ? k : 0;
}

/* scan_string reads the string at w->i (a '"') into *v. */
static int
scan_string(struct work *w, struct val *v)
{
	const unsigned char *s = (const unsigned char *)w->s;
	size_t i = w->i + 1;

	v->type = V_STR;
	v->esc = false;
	v->off = i;
	while (i < w->len) {
		unsigned c = s[i];
		size_t k;

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			i++;
			continue;
		}
		if (c == '"') {
			v->len = i - v->off;
			w->i = i + 1;
			return 0;
		}
		if (c == '\\') {
			k = escape_len(w->s + i, w->len - i);
			v->esc = true;
		} else {
			k = c < 0x20 ? 0 : utf8_len(s + i, w->len - i);
		}
		if (k == 0) {
			return MS_EJSON;
		}
		i += k;
	}
	return MS_EJSON;
}

/* put_utf8 writes code point |cp| in UTF-8 at |out|; returns the length. */
static size_t
put_utf8(unsigned long cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* escaped returns the character that the escape \|c| stands for (|c| is
 * none of 'u'). */
static char
escaped(char c)
{
	switch (c) {
	case 'b':
		return '\b';
	case 'f':
		return '\f';
	case 'n':
		return '\n';
	case 'r':
		return '\r';
	case 't':
		return '\t';
	default:
		return c; /* '"', '\\', '/' */
	}
}

/* unescape decodes the |n| bytes of a string's text |s| (checked by
 * scan_string) into |out|; returns the decoded length. */
static size_t
unescape(const char *s, size_t n, char *out)
{
	size_t o = 0;
	size_t i = 0;

	while (i < n) {
		unsigned long cp;

		if (s[i] != '\\') {
			out[o++] = s[i++];
		} else if (s[i + 1] != 'u') {
			out[o++] = escaped(s[i + 1]);
			i += 2;
		} else {
			cp = (unsigned long)ms_hex4(s + i + 2);
			i += 6;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     ((unsigned long)ms_hex4(s + i + 2) -
				      0xdc00);
				i += 6;
			}
			o += put_utf8(cp, out + o);
		}
	}
	return o;
}

/* text_of decodes the string |v| into the arena: a NUL-terminated string
 * of *n bytes, alive until work_fini. */
static const char *
text_of(struct work *w, const struct val *v, size_t *n)
{
	char *out = w->arena + w->used;

	assert(v->type == V_STR);
	if (v->esc) {
		*n = unescape(w->s + v->off, v->len, out);
	} else {
		memcpy(out, w->s + v->off, v->len);
		*n = v->len;
	}
	out[*n] = '\0';
	w->used += *n + 1;
	assert(w->used <= w->len);
	return out;
}

/* skip_digits moves *i past the decimal digits there; false if none. */
static bool
skip_digits(const char *s, size_t n, size_t *i)
{
	size_t b = *i;

	while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
		(*i)++;
	}
	return *i > b;
}

/* int_value reads the JSON integer of |n| bytes at |s| into *out; false
 * when it does not fit an int64 (as jansson's strtoll). */
static bool
int_value(const char *s, size_t n, int64_t *out)
{
	bool neg = s[0] == '-';
	uint64_t max = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	uint64_t v = 0;

	for (size_t i = neg; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (v > (max - d) / 10) {
			return false;
		}
		v = v * 10 + d;
	}
	*out = !neg ? (int64_t)v : v == max ? INT64_MIN : -(int64_t)v;
	return true;
}

/* real_ok tells (0 or MS_EJSON) whether jansson reads the real of |n|
 * bytes at |s|: whether strtod does not overflow it; or MS_ENOMEM. */
static int
real_ok(const char *s, size_t n)
{
	char *t = malloc(n + 1);
	double v;
	int err;

	if (t == NULL) {
		return MS_ENOMEM;
	}
	memcpy(t, s, n);
	t[n] = '\0';
	errno = 0;
	v = strtod(t, NULL);
	err = errno;
	free(t);
	return (v == HUGE_VAL || v == -HUGE_VAL) && err == ERANGE ? MS_EJSON
	                                                          : 0;
}

/* scan_number reads the number at w->i into *v: JSON's grammar, and what
 * jansson and ms_json_loads_exact make of it. */
static int
scan_number(struct work *w, struct val *v)
{
	const char *s = w->s;
	size_t n = w->len;
	size_t i = w->i;
	bool real = false;
	int64_t ignored;

	v->off = i;
	if (i < n && s[i] == '-') {
		i++;
	}
	if (i < n && s[i] == '0') {
		i++;
	} else if (!skip_digits(s, n, &i)) {
		return MS_EJSON;
	}
	if (i < n && s[i] == '.') {
		i++;
		real = true;
		if (!skip_digits(s, n, &i)) {
			return MS_EJSON;
		}
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-')) {
			i++;
		}
		real = true;
		if (!skip_digits(s, n, &i)) {
			return MS_EJSON;
		}
	}
	v->len = i - v->off;
	w->i = i;
	if (!real) {
		v->type = V_INT;
		return int_value(s + v->off, v->len, &ignored) ? 0 : MS_EJSON;
	}
	/* ms_json_loads_exact hid a short real from jansson; a longer one
	 * jansson read with strtod. */
	if (v->len <= MS_JSON_NUM_MAX) {
		v->type = V_REAL;
		return 0;
	}
	v->type = V_DOUBLE;
	return real_ok(s + v->off, v->len);
}

static int
scan_literal(struct work *w, struct val *v, const char *word, enum vtype type)
{
	size_t n = strlen(word);

	if (w->len - w->i < n || memcmp(w->s + w->i, word, n) != 0) {
		return MS_EJSON;
	}
	v->type = type;
	v->len = n;
	w->i += n;
	return 0;
}

/* name_is tells whether the |n| bytes at |k| are |name| in any ASCII
 * case: strcasecmp's equality in the C locale. */
static bool
name_is(const char *name, const char *k, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char a = name[i];
		char b = k[i];

		if (a == '\0') {
			return false;
		}
		a = a >= 'A' && a <= 'Z' ? (char)(a - 'A' + 'a') : a;
		b = b >= 'A' && b <= 'Z' ? (char)(b - 'A' + 'a') : b;
		if (a != b) {
			return false;
		}
	}
	return name[n] == '\0';
}

static int
find_name(const char *const *names, size_t count, const char *k, size_t n)
{
	for (size_t i = 0; i < count; i++) {
		if (name_is(names[i], k, n)) {
			return (int)i;
		}
	}
	return -1;
}

static int
find_field(const struct field *f, size_t count, const char *k, size_t n)
{
	for (size_t i = 0; i < count; i++) {
		if (name_is(f[i].name, k, n)) {
			return (int)i;
		}
	}
	return -1;
}

/* known returns the index of the member that key |k| (|n| bytes) names in
 * an object at |ctx|, or -1 when it is none we read. */
static int
known(enum ctx ctx, const char *k, size_t n)
{
	int i;

	switch (ctx) {
	case C_ROOT:
		return find_name(root_names, R_N, k, n);
	case C_HEADERS:
		return find_name(header_names, H_N, k, n);
	case C_ITEM:
		return find_field(item_fields, MS_ARRAY_SIZE(item_fields), k,
		                  n);
	case C_MESSAGE:
		i = find_field(event_fields, M_ITEMS, k, n);
		if (i < 0) {
			i = find_name(message_names, M_N - M_ITEMS, k, n);
			i = i < 0 ? -1 : M_ITEMS + i;
		}
		return i;
	default:
		return -1;
	}
}

/* inner returns where the value of member |i| of an object at |ctx| is,
 * and in *m where its own members are noted (NULL: nowhere). */
static enum ctx
inner(struct work *w, enum ctx ctx, int i, struct member **m)
{
	*m = NULL;
	if (ctx == C_ROOT && i == R_TYPE) {
		return C_TYPES;
	}
	if (ctx == C_ROOT && i == R_HEADERS) {
		*m = w->headers;
		return C_HEADERS;
	}
	if (ctx == C_ROOT && i == R_MESSAGE) {
		*m = w->msg;
		return C_MESSAGE;
	}
	return ctx == C_MESSAGE && i == M_ITEMS ? C_ITEMS : C_ANY;
}

/* FNV-1a: cheap, and a collision only costs a memcmp. */
static uint32_t
hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++) {
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	}
	return h;
}

static int
key_cmp(const void *a, const void *b)
{
	const struct key *x = a;
	const struct key *y = b;

	if (x->hash != y->hash) {
		return x->hash < y->hash ? -1 : 1;
	}
	if (x->n != y->n) {
		return x->n < y->n ? -1 : 1;
	}
	return memcmp(x->s, y->s, x->n);
}

/* has_duplicate tells whether the |n| keys of one object at |k| hold one
 * twice, as jansson's JSON_REJECT_DUPLICATES refuses. Many keys are
 * sorted first: a peer must not make the check quadratic. */
static bool
has_duplicate(struct key *k, size_t n)
{
	if (n > 32) {
		qsort(k, n, sizeof(*k), key_cmp);
		for (size_t i = 1; i < n; i++) {
			if (key_cmp(&k[i - 1], &k[i]) == 0) {
				return true;
			}
		}
		return false;
	}
	for (size_t i = 1; i < n; i++) {
		for (size_t j = 0; j < i; j++) {
			if (k[i].hash == k[j].hash &&
			    key_cmp(&k[i], &k[j]) == 0) {
				return true;
			}
		}
	}
	return false;
}

/* scan_key reads the key at w->i, decoded into *k, and keeps it for the
 * duplicate check of its object. */
static int
scan_key(struct work *w, struct key *k)
{
	struct val v;
	int rc = scan_string(w, &v);

	if (rc != 0) {
		return rc;
	}
	if (v.esc) {
		k->s = text_of(w, &v, &k->n);
	} else {
		k->s = w->s + v.off;
		k->n = v.len;
	}
	k->hash = hash(k->s, k->n);
	if (w->nkeys == w->kcap) {
		size_t cap = w->kcap ? 2 * w->kcap : 64;
		struct key *keys = realloc(w->keys, cap * sizeof(*keys));

		if (keys == NULL) {
			return MS_ENOMEM;
		}
		w->keys = keys;
		w->kcap = cap;
	}
	w->keys[w->nkeys++] = *k;
	return 0;
}

/* enter steps into the container at w->i: MS_EJSON when it is nested
 * deeper than MS_JSON_MAX_DEPTH. */
static int
enter(struct work *w)
{
	if (w->depth == MS_JSON_MAX_DEPTH) {
		return MS_EJSON;
	}
	w->depth++;
	w->i++;
	return 0;
}

/* more reads what follows a value in a container that |close| ends: true
 * after a ',' that a value follows. A trailing comma is passed over. */
static bool
more(struct work *w, char close)
{
	if (next(w) != ',') {
		return false;
	}
	w->i++;
	return next(w) != close;
}

/* leave steps out of the container at w->i, which |close| must end. */
static int
leave(struct work *w, char close)
{
	if (next(w) != close) {
		return MS_EJSON;
	}
	w->depth--;
	w->i++;
	return 0;
}

static int parse_value(struct work *w, enum ctx ctx, struct member *m,
                       struct val *v);

/* parse_member reads one member of an object at |ctx|, whose members we
 * read are noted in |m|. */
static int
parse_member(struct work *w, enum ctx ctx, struct member *m)
{
	struct member *sub;
	struct key k;
	int i;
	int rc;

	if (next(w) != '"') {
		return MS_EJSON;
	}
	if ((rc = scan_key(w, &k)) != 0) {
		return rc;
	}
	if (next(w) != ':') {
		return MS_EJSON;
	}
	w->i++;
	i = known(ctx, k.s, k.n);
	if (i < 0 || m[i].seen++ > 0) {
		return parse_value(w, C_ANY, NULL, NULL);
	}
	ctx = inner(w, ctx, i, &sub);
	return parse_value(w, ctx, sub, &m[i].v);
}

static int
parse_object(struct work *w, enum ctx ctx, struct member *m)
{
	size_t base = w->nkeys;
	int rc = enter(w);

	if (rc == 0 && next(w) != '}') {
		do {
			rc = parse_member(w, ctx, m);
		} while (rc == 0 && more(w, '}'));
	}
	if (rc == 0) {
		rc = leave(w, '}');
	}
	if (rc == 0 && w->nkeys > base &&
	    has_duplicate(w->keys + base, w->nkeys - base)) {
		rc = MS_EJSON;
	}
	w->nkeys = base;
	return rc;
}

/*
 * note_type notes an element of messageType. A real of at most
 * MS_JSON_NUM_MAX bytes counts as a string (never our URN): it is one in
 * ms_json_loads_exact's tree (its exact-number tag), this decoder read
 * that tree before, and the envelopes it accepted stay accepted.
 */
static void
note_type(struct work *w, const struct val *v)
{
	const char *s = w->s + v->off;
	size_t n = v->len;

	if (v->type == V_STR) {
		if (v->esc) {
			s = text_of(w, v, &n);
		}
		/* MassTransit compares URNs case-insensitively. */
		w->types_ours |= name_is(EVENT_URN, s, n);
	} else if (v->type != V_REAL) {
		w->types_strange = true;
	}
}

/* parse_element reads one element of an array at |ctx|. */
static int
parse_element(struct work *w, enum ctx ctx)
{
	struct item *it;
	struct val v;
	int rc;

	/* Items past MAX_ITEMS are only counted: there are too many. */
	if (ctx == C_ITEMS && ++w->nitems <= MAX_ITEMS) {
		if (w->nitems > w->icap) {
			size_t cap = w->icap ? 2 * w->icap : 4;

			it = realloc(w->items, cap * sizeof(*it));
			if (it == NULL) {
				return MS_ENOMEM;
			}
			w->items = it;
			w->icap = cap;
		}
		it = &w->items[w->nitems - 1];
		memset(it, 0, sizeof(*it));
		return parse_value(w, C_ITEM, it->f, &it->self);
	}
	rc = parse_value(w, C_ANY, NULL, &v);
	if (rc == 0 && ctx == C_TYPES) {
		note_type(w, &v);
	}
	return rc;
}

static int
parse_array(struct work *w, enum ctx ctx)
{
	int rc = enter(w);

	if (rc == 0 && next(w) != ']') {
		do {
			rc = parse_element(w, ctx);
		} while (rc == 0 && more(w, ']'));
	}
	return rc == 0 ? leave(w, ']') : rc;
}

/* parse_value reads the value at w->i into *v (may be NULL); an object's
 * members at |ctx| are noted in |m|. */
static int
parse_value(struct work *w, enum ctx ctx, struct member *m, struct val *v)
{
	struct val ignored;
	int c = next(w);

	if (v == NULL) {
		v = &ignored;
	}
	v->esc = false;
	v->off = w->i;
	switch (c) {
	case '{':
		v->type = V_OBJ;
		return parse_object(w, ctx, m);
	case '[':
		v->type = V_ARR;
		return parse_array(w, ctx);
	case '"':
		return scan_string(w, v);
	case 't':
		return scan_literal(w, v, "true", V_BOOL);
	case 'f':
		return scan_literal(w, v, "false", V_BOOL);
	case 'n':
		return scan_literal(w, v, "null", V_NULL);
	default:
		return scan_number(w, v);
	}
}

/* parse reads the whole body: 0, MS_EJSON (not JSON that
 * ms_json_loads_exact accepts) or MS_ENOMEM. */
static int
parse(struct work *w)
{
	struct val top;
	int c = next(w);
	int rc;

	/* jansson wants an object or an array at the top. */
	if (c != '{' && c != '[') {
		return MS_EJSON;
	}
	rc = parse_value(w, C_ROOT, w->root, &top);
	if (rc == 0 && next(w) != -1) {
		rc = MS_EJSON;
	}
	w->top = top.type;
	return rc;
}
/* ---- decode: judging the members ---------------------------------------- */

/*
 * pick returns in *v the member |f| (the one |at| names): NULL when absent
 * or null; MS_EINVAL when two members match its name (System.Text.Json
 * would take the last; a sender that writes both is not to be guessed).
 */
static int
pick(struct dec *d, const struct member *f, const struct at *at,
     const struct val **v)
{
	*v = NULL;
	if (f->seen > 1) {
		return bad(d, at,
		           "given more than once (names are case-insensitive)");
	}
	if (f->seen == 1 && f->v.type != V_NULL) {
		*v = &f->v;
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
decode_str(struct dec *d, struct work *w, const struct at *at,
           const struct val *v, char **out)
{
	const char *s;
	size_t n;

	if (v->type != V_STR) {
		return bad(d, at, "must be a string");
	}
	s = text_of(w, v, &n);
	if (n > MAX_STR) {
		return bad(d, at, "longer than " STR(MAX_STR) " bytes");
	}
	if (!ms_utf8_valid(s, n)) {
		return bad(d, at, "must not contain control characters");
	}
	/* In the arena, which outlives the packing. */
	*out = (char *)s;
	return 0;
}

static int
decode_guid(struct dec *d, struct work *w, const struct at *at,
            const struct val *v, char g[MS_UUID_STRLEN])
{
	const char *s = NULL;
	size_t n = 0;

	if (v->type == V_STR) {
		s = text_of(w, v, &n);
	}
	if (n != MS_UUID_STRLEN - 1 || !ms_uuid_valid(s)) {
		return bad(d, at, "must be a GUID");
	}
	memcpy(g, s, MS_UUID_STRLEN);
	ms_uuid_normalize(g);
	return 0;
}

static int
decode_money(struct dec *d, struct work *w, const struct at *at,
             const struct val *v, char buf[MS_MONEY_STRLEN])
{
	const char *t = w->s + v->off;
	size_t n = v->len;
	int64_t cents;

	/* A number's own text is exact, and an integer's is its value's
	 * (JSON writes no leading zeros; "-0" is read as 0 anyway). */
	if (v->type == V_STR) {
		t = text_of(w, v, &n);
	} else if (v->type != V_INT && v->type != V_REAL) {
		return bad(d, at,
		           "must be a decimal number or a string holding one");
	}
	if (ms_money_parse(t, n, &cents) != 0) {
		return bad(d, at, money_why(t, n));
	}
	ms_money_format_fixed(cents, buf);
	return 0;
}

static int
decode_int(struct dec *d, struct work *w, const struct at *at,
           const struct val *v, int32_t *out)
{
	const char *s;
	size_t n;
	int64_t i;
	bool ok = false;

	if (v->type == V_INT) {
		ok = int_value(w->s + v->off, v->len, &i);
	} else if (v->type == V_STR) {
		s = text_of(w, v, &n);
		ok = parse_int(s, n, &i);
	}
	if (!ok) {
		return bad(d, at,
		           "must be an integer (or a string holding one)");
	}
	if (i < INT32_MIN || i > INT32_MAX) {
		return bad(d, at, "out of the range of int32");
	}
	*out = (int32_t)i;
	return 0;
}

/* decode_fields fills |msg| from the members |m| noted for |fields| in
 * the object at |obj| (or message.items[|item|] when |item| >= 0); a
 * missing or null member keeps the protobuf default. */
static int
decode_fields(struct dec *d, struct work *w, const struct member *m,
              const char *obj, long item, const struct field *fields, size_t n,
              void *msg, struct slot *slot)
{
	for (size_t i = 0; i < n; i++) {
		const struct field *f = &fields[i];
		const struct at at = {obj, item, f->name};
		const struct val *v;
		int rc;

		rc = pick(d, &m[i], &at, &v);
		if (rc != 0 || v == NULL) {
			if (rc != 0) {
				return rc;
			}
			continue;
		}
		switch (f->kind) {
		case K_STR:
			rc = decode_str(d, w, &at, v, str_at(msg, f->off));
			break;
		case K_GUID:
			rc = decode_guid(d, w, &at, v, slot->guid);
			if (rc == 0) {
				*str_at(msg, f->off) = slot->guid;
			}
			break;
		case K_MONEY:
			rc = decode_money(d, w, &at, v, slot->money);
			if (rc == 0) {
				*str_at(msg, f->off) = slot->money;
			}
			break;
		case K_INT:
			rc = decode_int(d, w, &at, v, int_at(msg, f->off));
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

/* decode_time reads the optional time member |v| (|at|). Returns 1
 * with *ms set, 0 when |v| is absent, or MS_EINVAL. */
static int
decode_time(struct dec *d, struct work *w, const struct at *at,
            const struct val *v, int64_t *ms)
{
	const char *s;
	size_t n;

	if (v == NULL) {
		return 0;
	}
	if (v->type == V_STR) {
		s = text_of(w, v, &n);
		if (parse_time(s, n, ms)) {
			return 1;
		}
	}
	return bad(d, at, "must be an ISO 8601 time");
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

/* check_type tells whether the envelope's messageType lists our URN. */
static int
check_type(struct dec *d, const struct work *w)
{
	const struct val *v;
	int rc;

	rc = pick(d, &w->root[R_TYPE], AT("", "messageType"), &v);
	if (rc != 0) {
		return rc;
	}
	if (v == NULL) {
		return reason(d, MS_EINVAL, "messageType: is required");
	}
	if (v->type != V_ARR || w->types_strange) {
		return reason(d, MS_EINVAL,
		              "messageType: must be an array of strings");
	}
	if (!w->types_ours) {
		return reason(d, MS_ENOTSUP,
		              "messageType: does not list " EVENT_URN);
	}
	return 0;
}

static int
decode_items(struct dec *d, struct work *w)
{
	const struct val *v;
	size_t n = w->nitems;
	int rc;

	rc = pick(d, &w->msg[M_ITEMS], AT("message", "items"), &v);
	if (rc != 0 || v == NULL) {
		return rc; /* the original .NET event has no items */
	}
	if (v->type != V_ARR) {
		return reason(d, MS_EINVAL, "message.items: must be an array");
	}
	if (n > MAX_ITEMS) {
		return reason(
		    d, MS_EINVAL,
		    "message.items: more than " STR(MAX_ITEMS) " items");
	}
	if (n == 0) {
		return 0;
	}
	w->pits = calloc(n, sizeof(*w->pits));
	if (w->pits == NULL) {
		return MS_ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct item *it = &w->items[i];

		if (it->self.type != V_OBJ) {
			return reason(d, MS_EINVAL,
			              "message.items[%zu]: must be an object",
			              i);
		}
		monoshop__events__basket_checkout_item__init(&it->pb);
		w->pits[i] = &it->pb;
		rc = decode_fields(d, w, it->f, "message", (long)i, item_fields,
		                   MS_ARRAY_SIZE(item_fields), &it->pb,
		                   &it->slot);
		if (rc != 0) {
			return rc;
		}
	}
	w->ev.n_items = n;
	w->ev.items = w->pits;
	return 0;
}

/* decode_headers takes the traceparent from the envelope's headers. */
static int
decode_headers(struct dec *d, struct work *w, struct tp_amqp_decoded *out)
{
	const struct val *v;
	const char *s;
	size_t n;
	int rc;

	if ((rc = pick(d, &w->root[R_HEADERS], AT("", "headers"), &v)) != 0) {
		return rc;
	}
	if (v != NULL && v->type != V_OBJ) {
		return reason(d, MS_EINVAL, "headers: must be an object");
	}
	if (v == NULL) {
		return 0;
	}
	rc = pick(d, &w->headers[H_TRACEPARENT], AT("headers", "traceparent"),
	          &v);
	if (rc != 0 || v == NULL || v->type != V_STR) {
		return rc;
	}
	s = text_of(w, v, &n);
	if (traceparent_ok(s, n)) {
		out->traceparent = strdup(s);
		if (out->traceparent == NULL) {
			return MS_ENOMEM;
		}
	}
	return 0;
}

/* decode_message reads the envelope's message into w->ev; |sent| tells
 * whether out->sent_ms came with the envelope. */
static int
decode_message(struct dec *d, struct work *w, struct tp_amqp_decoded *out,
               bool sent)
{
	const struct val *v;
	const char *s;
	size_t n;
	int64_t when;
	int rc;

	if ((rc = pick(d, &w->root[R_MESSAGE], AT("", "message"), &v)) != 0) {
		return rc;
	}
	if (v == NULL) {
		return reason(d, MS_EINVAL, "message: is required");
	}
	if (v->type != V_OBJ) {
		return reason(d, MS_EINVAL, "message: must be an object");
	}
	rc = decode_fields(d, w, w->msg, "message", -1, event_fields, M_ITEMS,
	                   &w->ev, &w->slot);
	if (rc == 0) {
		rc = decode_items(d, w);
	}
	if (rc != 0) {
		return rc;
	}
	w->ev.id = out->message_id;

	/* occurredOn is the .NET side's DateTime.Now at serialization: taken
	 * when valid, never refused (.NET ignores it on read). */
	rc = pick(d, &w->msg[M_OCCURRED], AT("message", "occurredOn"), &v);
	if (rc != 0) {
		return rc;
	}
	if (v != NULL && v->type == V_STR) {
		s = text_of(w, v, &n);
		if (parse_time(s, n, &when)) {
			w->ev.occurredon = ms_time_rfc3339(when, w->occurred);
			return 0;
		}
	}
	if (sent) {
		w->ev.occurredon = ms_time_rfc3339(out->sent_ms, w->occurred);
	}
	return 0;
}

/* decode_root judges what parse noted, into |w| and |out| (message_id,
 * traceparent, sent_ms), in the order the members were always judged. */
static int
decode_root(struct dec *d, struct work *w, struct tp_amqp_decoded *out)
{
	const struct val *v;
	int sent; /* 1 when sentTime is given */
	int rc;

	if (w->top != V_OBJ) {
		return reason(d, MS_EINVAL,
		              "the envelope must be a JSON object");
	}
	if ((rc = check_type(d, w)) != 0) {
		return rc;
	}

	if ((rc = pick(d, &w->root[R_ID], AT("", "messageId"), &v)) != 0) {
		return rc;
	}
	if (v == NULL) {
		return reason(d, MS_EINVAL, "messageId: is required");
	}
	if ((rc = decode_guid(d, w, AT("", "messageId"), v, out->message_id)) !=
	    0) {
		return rc;
	}

	if ((rc = pick(d, &w->root[R_SENT], AT("", "sentTime"), &v)) != 0) {
		return rc;
	}
	sent = decode_time(d, w, AT("", "sentTime"), v, &out->sent_ms);
	if (sent < 0) {
		return sent;
	}
	if ((rc = decode_headers(d, w, out)) != 0) {
		return rc;
	}
	return decode_message(d, w, out, sent == 1);
}

/*
 * not_json says why parse refused the text, in jansson's words and with
 * its position, as ms_json_loads_exact (which accepts the same texts)
 * tells: refused text is rare, and the second parse is worth a reason
 * that points at the fault.
 */
static int
not_json(struct dec *d, const char *body, size_t len)
{
	json_error_t je;
	json_t *root;
	char *near;
	int rc;

	rc =
	    ms_json_loads_exact(body, len, MS_JSON_TRAILING_COMMAS, &root, &je);
	if (rc == 0) {
		/* The parsers accept the same texts; should they ever
		 * disagree, the text stays refused. */
		json_decref(root);
		return reason(d, MS_EINVAL, "not JSON");
	}
	if (rc != MS_EJSON) {
		return rc;
	}
	/* jansson quotes the token it choked on (" near '...'", up to 20
	 * bytes): that may be a card number or a CVV, and the reason is
	 * logged. Position only. */
	near = strstr(je.text, " near ");
	if (near != NULL) {
		*near = '\0';
	}
	if (je.line < 0) {
		return reason(d, MS_EINVAL, "not JSON: %s", je.text);
	}
	return reason(d, MS_EINVAL, "not JSON: line %d, column %d: %s", je.line,
	              je.column, je.text);
}

/* pack packs the event into out->payload (owned by |out|). */
static int
pack(struct work *w, struct tp_amqp_decoded *out)
{
	out->len = protobuf_c_message_get_packed_size(&w->ev.base);
	out->payload = malloc(out->len > 0 ? out->len : 1);
	if (out->payload == NULL) {
		return MS_ENOMEM;
	}
	protobuf_c_message_pack(&w->ev.base, out->payload);
	out->type = EVENT_TYPE;
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
	struct work w = {.s = body,
	                 .len = len,
	                 .ev = MONOSHOP__EVENTS__BASKET_CHECKOUT_EVENT__INIT};
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
	w.arena = malloc(len);
	rc = w.arena != NULL ? parse(&w) : MS_ENOMEM;
	if (rc == MS_EJSON) {
		rc = not_json(&d, body, len);
	} else if (rc == 0) {
		rc = decode_root(&d, &w, out);
	}
	if (rc == 0) {
		rc = pack(&w, out);
	}
	work_fini(&w);
	if (rc != 0) {
		tp_amqp_decoded_fini(out);
	}
	return rc;
}
