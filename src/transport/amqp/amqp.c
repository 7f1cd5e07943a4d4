/* SPDX-License-Identifier: MIT */
/*
 * The AMQP transport (scheme "amqp"): events through RabbitMQ in
 * MassTransit's topology and JSON envelope (reference/wire.md §3-4), so
 * that a .NET service built on BuildingBlocks.Messaging can sit on either
 * end. Publishing serves the outbox relay; consuming, where a subscriber of
 * a mapped event type is hosted here, feeds bus_deliver.
 *
 * Shape. librabbitmq connections are not thread safe, so one thread (the
 * "AMQP thread") owns the one connection and does every library call.
 * The connection has two channels:
 *   1  publishing, in confirm mode: the relay's events and the consumer's
 *      moves (copies to _error / _skipped, retries to the endpoint);
 *   2  consuming, manual acks, basic.qos(prefetch).
 * Two channels because delivery tags and the publish sequence are counted
 * per channel (keeping them apart keeps both simple) and because a channel
 * error on one side names that side in the logs. One connection, not two,
 * because a process in the split deployment either publishes (Basket) or
 * consumes (Ordering), and one thread servicing one socket gets heartbeats
 * right without cross-thread handshakes. (RabbitMQ advises separate
 * connections when one process publishes *heavily* while consuming, since
 * flow control blocks a whole connection; we handle connection.blocked by
 * failing publishes fast instead.)
 *
 * Publishing is pipelined: ops->publish only puts the event on a bounded
 * queue (2 x events.relay_batch) and wakes the thread, which publishes
 * everything queued, then collects confirms (ack/nack, |multiple|) and
 * maps their sequence numbers back to events through a ring of records.
 * Each event's done runs exactly once: 0 on its ack, MS_EUNAVAIL on nack,
 * basic.return (mandatory: unroutable means nobody would get it), confirm
 * timeout or a lost connection, MS_EINVAL when the event can never be
 * encoded (no MassTransit mapping, undecodable payload), MS_ECLOSED at stop.
 * librabbitmq 0.11 has no confirm-wait helper and no recovery (§4.8): the
 * loop below dispatches the confirm frames itself and reconnects itself.
 *
 * Consuming: for each delivery the body is decoded (envelope.c) and handed
 * to bus_deliver on this thread; the ack is sent only after the verdict,
 * i.e. after the order and its inbox row are committed. Deliveries already
 * received (in librabbitmq's buffer or the socket's: we never wait for
 * more) are handled in one batch when the subscriber batches
 * (bus_subscribe_batch): bus_batch_begin on the first, bus_deliver for
 * each, bus_batch_commit once no frame is left to read (or at
 * BATCH_MAX(prefetch), so that the broker keeps sending the other half),
 * then the events whose verdict was 0 are acked: one basic.ack
 * multiple=true when every unacked tag up to the last is one of them,
 * else one by one. A multiple ack must never cover a delivery that is
 * being moved (its copy awaits its confirm; the original is acked or
 * requeued then) nor one left unacked for the broker to requeue (stopping):
 * batch_acks checks both. A failed commit acks none: they are requeued
 * (basic.nack requeue), and the next 2 x prefetch deliveries are handled one
 * by one, so that a lasting failure meets the redelivery count below rather
 * than loop. A lost connection rolls the batch back (the broker requeues).
 * Verdicts:
 *   0                        ack
 *   no consumer (ENOTSUP from the envelope, ENOTFOUND from the bus)
 *                            move to <queue>_skipped (MT-Reason dead-letter)
 *   poison (EINVAL from the envelope or the bus, EVALIDATION)
 *                            move to <queue>_error with MT-Fault-* headers
 *   anything else            transient: after a short delay, republish a
 *                            copy to the endpoint with MT-Redelivery-Count
 *                            + 1; past events.max_redeliveries redeliveries
 *                            (so 1 + max deliveries) move it to _error.
 * A move is a publish on channel 1 with confirms: the original is acked
 * only once its copy is confirmed, and requeued (nack) if the copy fails,
 * so nothing is lost; nothing loops forever either, since the count
 * travels with the message. A body larger than events.max_message is
 * rejected without requeue (it cannot be copied without holding it).
 *
 * Connection life: connect lazily on the AMQP thread; on any error close,
 * fail what was in flight (the relay republishes; the broker requeues our
 * unacked deliveries), back off exponentially with jitter up to
 * events.reconnect_max_ms, reconnect, re-declare, resume. Events queued
 * while disconnected wait for the next attempt, at most HOLD_MS, and fail
 * if it fails. Heartbeats are serviced by the library inside
 * amqp_simple_wait_frame_noblock, which the loop calls at least once a
 * second. State changes are logged once.
 *
 * Shutdown: quiesce (bus_quiesce) makes the AMQP thread cancel its
 * consumers (basic.cancel) while publishing goes on; stop then fails what
 * was never published, waits a bounded time for confirms, closes.
 *
 * Threads: init/start/quiesce/stop/fini on the main thread. publish and
 * health on any thread: they touch only the "shared" part of struct broker,
 * under |mtx| (and |quiesce|, an atomic). Everything else - the connection,
 * the publish ring, held moves, content being assembled - belongs to the
 * AMQP thread alone. ev->done and bus_deliver are called on the AMQP thread,
 * never with |mtx| held.
 *
 * Memory: struct broker lives in the bus's transport block; its arrays are
 * malloc'd by init and freed by fini. Encoded envelopes live only across one
 * amqp_basic_publish call. A delivery's body is malloc'd when its header
 * frame arrives and is freed after the verdict, or handed to a move (struct
 * fwd), which frees it once published. Properties of a message kept across
 * frames are cloned into amqp pools owned by the holder.
 *
 * This file's only export is tp_amqp_ops.
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/trace.h"
#include "core/util.h"
#include "transport/amqp/envelope.h"
#include "transport/transport.h"

#define CH_PUB 1
#define CH_CON 2

#define TICK_MS          1000 /* longest sleep: heartbeats need calls */
#define FRAMES_PER_ROUND 256  /* then publish again: no starvation */
/* A batch of deliveries ends at half the prefetch window, so the broker can
 * send the other half while we commit and ack this one. */
#define BATCH_MAX(prefetch) ((prefetch) > 1 ? (size_t)(prefetch) / 2 : 1)
#define BACKOFF_MIN_MS      100
#define HOLD_MS             1000 /* longest a queued event waits, disconnected */
#define RETRY_BASE_MS       250  /* delay before a transient retry ... */
#define RETRY_MAX_MS        10000 /* ... doubling up to this */
#define MAX_EXCHANGES       8     /* event exchanges declared per connection */
#define MAX_ENDPOINTS       4
#define NAME_MAX_           200 /* exchange and queue names we build */
#define PROCESS_NAME        "monoshop"

/* The receive endpoints MassTransit's ConfigureEndpoints would give the
 * original consumers (kebab-case, wire.md §3.2). */
static const struct {
	const char *type;     /* our protobuf type */
	const char *queue;    /* the endpoint: queue and exchange */
	const char *consumer; /* the original consumer, for MT-Fault-* */
} endpoint_defs[] = {
    {"monoshop.events.BasketCheckoutEvent", "basket-checkout-event-handler",
     "Ordering.Application.Orders.EventHandlers.Integration."
     "BasketCheckoutEventHandler"},
};
_Static_assert(sizeof(endpoint_defs) / sizeof(endpoint_defs[0]) <=
                   MAX_ENDPOINTS,
               "MAX_ENDPOINTS is too small for endpoint_defs");

/* One consumed endpoint, resolved at init. */
struct endpoint {
	const char *type;
	const char *exchange; /* the event's exchange: the binding's source */
	const char *queue;
	const char *consumer;
	char error[NAME_MAX_];   /* <queue>_error */
	char skipped[NAME_MAX_]; /* <queue>_skipped */
	char input[400];         /* rabbitmq://host/<queue> */
};

/* One publish on channel 1 waiting for its confirm. */
enum rec_kind { REC_FREE, REC_EVENT, REC_MOVE };

struct rec {
	enum rec_kind kind;
	bool returned;        /* basic.return came: not routed */
	bool has_id;          /* message_id property present */
	uint8_t idlen;        /* a shortstr: at most 255 */
	char id[256];         /* message_id: matches basic.return */
	int64_t deadline_ms;  /* confirm timeout */
	struct bus_event *ev; /* REC_EVENT: completed with ev->done */
	uint64_t orig_tag;    /* REC_MOVE: the delivery acked on confirm */
	const char *result;   /* REC_MOVE: consumed_total label */
};

/* A copy of a delivery waiting to be published on channel 1 (a move). It
 * exists while the original is unacked, so there are at most prefetch. */
struct fwd {
	bool used;
	amqp_pool_t pool; /* props and headers (owned) */
	amqp_basic_properties_t props;
	char *body; /* owned, malloc'd (NULL when empty) */
	size_t len;
	const char
	    *exchange; /* an endpoint's name (lives with struct broker) */
	uint64_t orig_tag;
	const char *result; /* "retry" | "error" | "skipped" */
	int64_t due_ms;     /* not before (retries wait a little) */
};

/* A message arriving as method + header + body frames on one channel. */
struct content {
	bool active;      /* method seen, body not complete */
	bool header;      /* header frame seen */
	bool discard;     /* read and drop the body */
	bool oversized;   /* body_size > max_message */
	uint64_t size;    /* body size announced by the header */
	uint64_t got;     /* bytes received */
	char *body;       /* owned, malloc'd */
	amqp_pool_t pool; /* cloned properties (recycled per message) */
	amqp_basic_properties_t props;
	/* basic.deliver */
	uint64_t tag;
	int ep; /* index in eps, or -1 */
	/* basic.return */
	uint16_t reply_code;
	char reply_text[128];
};

struct broker {
	struct bus_transport *t;

	/* ---- immutable after init ---- */
	char *urlbuf; /* amqp_parse_url's buffer; |ci| points into it */
	struct amqp_connection_info ci;
	const char *vhost;
	char where[300]; /* "amqp://host:port", no credentials */
	char base[320];  /* "rabbitmq://host[:port]/[vhost/]" */
	char machine[128];
	char source[320 + 128 + 16]; /* base + machine + "_monoshop_bus" */
	char conn_name[200];
	int pid;
	int prefetch;
	int heartbeat_s;
	int confirm_timeout_ms;
	int connect_timeout_ms;
	int reconnect_max_ms;
	unsigned max_redeliveries;
	uint64_t max_message;
	struct endpoint eps[MAX_ENDPOINTS];
	size_t neps;

	/* ---- shared: guarded by mtx ---- */
	pthread_mutex_t mtx;
	struct bus_event **queue; /* ring of qcap, owned */
	size_t qcap;
	size_t qhead;
	size_t qcount;
	int64_t qsince;  /* when the queue last went from empty to not */
	bool closing;    /* stop called: publish refuses */
	bool running;    /* the thread exists */
	bool ready;      /* connected, topology declared */
	bool blocked;    /* connection.blocked by the broker */
	char state[384]; /* why not ready, for health */
	int wakefd;      /* eventfd: publish / stop wake the thread */
	pthread_t thread;
	atomic_bool stopping;
	/* shutdown began: stop consuming (publishing goes on) */
	atomic_bool quiesce;

	/* ---- the AMQP thread only ---- */
	amqp_connection_state_t conn;
	bool consuming;       /* basic.consume active */
	bool cancelled;       /* stop: deliveries are dropped, not handled */
	bool is_blocked;      /* mirror of |blocked| */
	bool warned_unrouted; /* "no queue bound" said once per connection */
	bool graceful;        /* the failure left the socket usable */
	char why[256];        /* last failure */
	uint64_t next_seq;    /* sequence number of the next publish */
	uint64_t head_seq;    /* oldest unconfirmed publish */
	struct rec *recs;     /* ring of rcap, indexed by seq, owned */
	size_t rcap;
	struct fwd *fwds; /* prefetch slots, owned */
	size_t nfwd;
	struct content cret; /* basic.return on channel 1 */
	struct content cdel; /* basic.deliver on channel 2 */
	const char *declared[MAX_EXCHANGES];
	size_t ndeclared;
	uint64_t rnd; /* xorshift state for jitter */
	/* The open batch of deliveries (bus_batch_begin), if any. */
	bool batch_open;
	char batch_type[128]; /* its subscriber's event type */
	uint64_t *batch_tags; /* verdict 0: acked after the commit (prefetch) */
	size_t nbatch;
	size_t batch_max;     /* BATCH_MAX(prefetch) */
	uint64_t unacked_min; /* lowest tag left for the broker to requeue
	                         (UINT64_MAX: none), on this channel */
	unsigned solo;        /* deliveries to handle one by one (after a
	                         failed batch commit) */
};

/* ---- small helpers ----------------------------------------------------- */

static void
count(const char *name, const char *result)
{
	char labels[64];

	if (result == NULL) {
		ms_metrics_count(name, "", 1);
		return;
	}
	snprintf(labels, sizeof(labels), "result=\"%s\"", result);
	ms_metrics_count(name, labels, 1);
}

/* The transport-neutral event counters (named as the relay's): a
 * consumer-side retry or dead letter of an event of |type|. */
static void
count_event(const char *name, const char *type)
{
	char labels[160];

	snprintf(labels, sizeof(labels), "type=\"%s\"", type);
	ms_metrics_count(name, labels, 1);
}

static amqp_bytes_t
cbytes(const char *s)
{
	return amqp_cstring_bytes(s);
}

/* fail records why the connection must go; |graceful| tells whether a
 * connection.close may still be sent. Returns MS_EUNAVAIL. */
static int fail(struct broker *a, bool graceful, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(struct broker *a, bool graceful, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->why, sizeof(a->why), fmt, ap);
	va_end(ap);
	a->graceful = graceful;
	return MS_EUNAVAIL;
}

/* Describes a close method (connection.close / channel.close). */
static void
close_text(const amqp_method_t *m, char *buf, size_t len)
{
	if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
		const amqp_connection_close_t *c = m->decoded;

		snprintf(buf, len, "connection closed by the broker: %u %.*s",
		         c->reply_code, (int)c->reply_text.len,
		         (const char *)c->reply_text.bytes);
	} else if (m->id == AMQP_CHANNEL_CLOSE_METHOD) {
		const amqp_channel_close_t *c = m->decoded;

		snprintf(buf, len, "channel closed by the broker: %u %.*s",
		         c->reply_code, (int)c->reply_text.len,
		         (const char *)c->reply_text.bytes);
	} else {
		snprintf(buf, len, "unexpected method 0x%08x", m->id);
	}
}

/*
 * rpc_check looks at the reply of the synchronous call just made. A
 * connection.close gets its close-ok (the socket is then done); a
 * channel.close leaves the connection usable for a clean close.
 */
static int
rpc_check(struct broker *a, const char *what)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(a->conn);
	char text[200];

	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		return 0;
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		close_text(&r.reply, text, sizeof(text));
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
			amqp_connection_close_ok_t ok = {0};

			amqp_send_method(a->conn, 0,
			                 AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
			return fail(a, false, "%s: %s", what, text);
		}
		return fail(a, true, "%s: %s", what, text);
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		return fail(a, false, "%s: %s", what,
		            amqp_error_string2(r.library_error));
	default:
		return fail(a, false, "%s: no reply", what);
	}
}

static uint64_t
rnd_next(struct broker *a)
{
	a->rnd ^= a->rnd << 13;
	a->rnd ^= a->rnd >> 7;
	a->rnd ^= a->rnd << 17;
	return a->rnd;
}

static void
set_state(struct broker *a, bool ready, const char *why)
{
	pthread_mutex_lock(&a->mtx);
	a->ready = ready;
	if (why != NULL) {
		snprintf(a->state, sizeof(a->state), "%s", why);
	}
	pthread_mutex_unlock(&a->mtx);
}

/* ---- the publish queue (shared) ----------------------------------------- */

static struct bus_event *
queue_pop(struct broker *a)
{
	struct bus_event *ev = NULL;

	pthread_mutex_lock(&a->mtx);
	if (a->qcount > 0) {
		ev = a->queue[a->qhead];
		a->qhead = (a->qhead + 1) % a->qcap;
		a->qcount--;
	}
	pthread_mutex_unlock(&a->mtx);
	return ev;
}

/* How long the oldest queued event has waited (0 when none). */
static int64_t
queue_age(struct broker *a, int64_t now)
{
	int64_t age;

	pthread_mutex_lock(&a->mtx);
	age = a->qcount > 0 ? now - a->qsince : 0;
	pthread_mutex_unlock(&a->mtx);
	return age;
}

static bool
queue_empty(struct broker *a)
{
	bool empty;

	pthread_mutex_lock(&a->mtx);
	empty = a->qcount == 0;
	pthread_mutex_unlock(&a->mtx);
	return empty;
}

/* Completes every queued (never published) event with |rc|. */
static void
queue_fail(struct broker *a, int rc)
{
	struct bus_event *ev;

	while ((ev = queue_pop(a)) != NULL) {
		ev->done(ev, rc);
	}
}

static void
wake(struct broker *a)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is already non-zero: awake anyway. */
	(void)!write(a->wakefd, &one, sizeof(one));
}

static void
wake_drain(struct broker *a)
{
	uint64_t n;

	(void)!read(a->wakefd, &n, sizeof(n));
}

/* ---- properties and headers -------------------------------------------- */

static int
bytes_clone(amqp_pool_t *pool, amqp_bytes_t src, amqp_bytes_t *dst)
{
	if (src.len == 0) {
		*dst = amqp_empty_bytes;
		return 0;
	}
	amqp_pool_alloc_bytes(pool, src.len, dst);
	if (dst->bytes == NULL) {
		return MS_ENOMEM;
	}
	memcpy(dst->bytes, src.bytes, src.len);
	return 0;
}

/* props_clone deep-copies |src| into |dst| with memory from |pool| (the
 * library has the same function, but static). */
static int
props_clone(const amqp_basic_properties_t *src, amqp_basic_properties_t *dst,
            amqp_pool_t *pool)
{
	int rc = 0;

	*dst = *src;
#define CLONE(flag, field)                                                     \
	if (rc == 0 && (src->_flags & (flag))) {                               \
		rc = bytes_clone(pool, src->field, &dst->field);               \
	}
	CLONE(AMQP_BASIC_CONTENT_TYPE_FLAG, content_type)
	CLONE(AMQP_BASIC_CONTENT_ENCODING_FLAG, content_encoding)
	CLONE(AMQP_BASIC_CORRELATION_ID_FLAG, correlation_id)
	CLONE(AMQP_BASIC_REPLY_TO_FLAG, reply_to)
	CLONE(AMQP_BASIC_EXPIRATION_FLAG, expiration)
	CLONE(AMQP_BASIC_MESSAGE_ID_FLAG, message_id)
	CLONE(AMQP_BASIC_TYPE_FLAG, type)
	CLONE(AMQP_BASIC_USER_ID_FLAG, user_id)
	CLONE(AMQP_BASIC_APP_ID_FLAG, app_id)
	CLONE(AMQP_BASIC_CLUSTER_ID_FLAG, cluster_id)
#undef CLONE
	if (rc == 0 && (src->_flags & AMQP_BASIC_HEADERS_FLAG)) {
		if (amqp_table_clone(&src->headers, &dst->headers, pool) !=
		    AMQP_STATUS_OK) {
			rc = MS_ENOMEM;
		}
	}
	return rc;
}

/* One header we add to a moved message. */
struct hdr {
	const char *key;
	const char *s; /* a string value, or NULL for |i| */
	int32_t i;
};

/*
 * headers_set replaces |p|'s headers by the old ones (minus those named in
 * |add|) followed by |add|; keys and values are copied into |pool|.
 */
static int
headers_set(amqp_basic_properties_t *p, amqp_pool_t *pool,
            const struct hdr *add, size_t nadd)
{
	size_t nold = (p->_flags & AMQP_BASIC_HEADERS_FLAG)
	                  ? (size_t)p->headers.num_entries
	                  : 0;
	amqp_table_entry_t *e =
	    amqp_pool_alloc(pool, sizeof(*e) * (nold + nadd + 1));
	int n = 0;

	if (e == NULL) {
		return MS_ENOMEM;
	}
	for (size_t i = 0; i < nold; i++) {
		const amqp_table_entry_t *o = &p->headers.entries[i];
		bool replaced = false;

		for (size_t j = 0; j < nadd && !replaced; j++) {
			replaced = o->key.len == strlen(add[j].key) &&
			           strncasecmp(o->key.bytes, add[j].key,
			                       o->key.len) == 0;
		}
		if (!replaced) {
			e[n++] = *o;
		}
	}
	for (size_t j = 0; j < nadd; j++) {
		amqp_table_entry_t *x = &e[n++];

		if (bytes_clone(pool, cbytes(add[j].key), &x->key) != 0) {
			return MS_ENOMEM;
		}
		if (add[j].s != NULL) {
			x->value.kind = AMQP_FIELD_KIND_UTF8;
			if (bytes_clone(pool, cbytes(add[j].s),
			                &x->value.value.bytes) != 0) {
				return MS_ENOMEM;
			}
		} else {
			x->value.kind = AMQP_FIELD_KIND_I32;
			x->value.value.i32 = add[j].i;
		}
	}
	p->headers.entries = e;
	p->headers.num_entries = n;
	p->_flags |= AMQP_BASIC_HEADERS_FLAG;
	return 0;
}

/* The MT-Redelivery-Count header of |p| (0 when absent or malformed). */
static unsigned
redelivery_count(const amqp_basic_properties_t *p)
{
	static const char key[] = "MT-Redelivery-Count";
	int64_t v = 0;

	if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) {
		return 0;
	}
	for (int i = 0; i < p->headers.num_entries; i++) {
		const amqp_table_entry_t *e = &p->headers.entries[i];
		const amqp_field_value_t *f = &e->value;

		if (e->key.len != sizeof(key) - 1 ||
		    strncasecmp(e->key.bytes, key, e->key.len) != 0) {
			continue;
		}
		switch (f->kind) {
		case AMQP_FIELD_KIND_I8:
			v = f->value.i8;
			break;
		case AMQP_FIELD_KIND_U8:
			v = f->value.u8;
			break;
		case AMQP_FIELD_KIND_I16:
			v = f->value.i16;
			break;
		case AMQP_FIELD_KIND_U16:
			v = f->value.u16;
			break;
		case AMQP_FIELD_KIND_I32:
			v = f->value.i32;
			break;
		case AMQP_FIELD_KIND_U32:
			v = f->value.u32;
			break;
		case AMQP_FIELD_KIND_I64:
			v = f->value.i64;
			break;
		case AMQP_FIELD_KIND_U64:
			v = f->value.u64 > 1000000 ? 1000000
			                           : (int64_t)f->value.u64;
			break;
		case AMQP_FIELD_KIND_UTF8:
		case AMQP_FIELD_KIND_BYTES: {
			char buf[24];
			size_t n = f->value.bytes.len < sizeof(buf) - 1
			               ? f->value.bytes.len
			               : sizeof(buf) - 1;

			memcpy(buf, f->value.bytes.bytes, n);
			buf[n] = '\0';
			v = strtoll(buf, NULL, 10);
			break;
		}
		default:
			v = 0;
			break;
		}
	}
	if (v < 0) {
		return 0;
	}
	return v > 1000000 ? 1000000u : (unsigned)v;
}

/* ---- the publish ring (AMQP thread) ------------------------------------- */

static struct rec *
rec_at(struct broker *a, uint64_t seq)
{
	return &a->recs[(seq - 1) % a->rcap];
}

static bool
ring_has_room(struct broker *a)
{
	return a->next_seq - a->head_seq < a->rcap;
}

static size_t
ring_pending(struct broker *a)
{
	size_t n = 0;

	for (uint64_t s = a->head_seq; s < a->next_seq; s++) {
		n += rec_at(a, s)->kind != REC_FREE;
	}
	return n;
}

static void
ring_advance(struct broker *a)
{
	while (a->head_seq < a->next_seq &&
	       rec_at(a, a->head_seq)->kind == REC_FREE) {
		a->head_seq++;
	}
}

/* Takes the record of the publish just made (seq next_seq). */
static struct rec *
ring_push(struct broker *a, enum rec_kind kind,
          const amqp_basic_properties_t *p)
{
	struct rec *r = rec_at(a, a->next_seq);

	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->has_id = (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0;
	if (r->has_id) {
		r->idlen = (uint8_t)(p->message_id.len < 255 ? p->message_id.len
		                                             : 255);
		memcpy(r->id, p->message_id.bytes, r->idlen);
	}
	r->deadline_ms = ms_now_ms() + a->confirm_timeout_ms;
	a->next_seq++;
	return r;
}

enum outcome { OUT_ACK, OUT_NACK, OUT_TIMEOUT, OUT_LOST };

/*
 * settle completes one record. Events get done(); a move acks its
 * original when the copy is safe, or requeues it (nack) so that nothing is
 * lost. With OUT_LOST the connection is gone: the broker requeues the
 * original by itself. Returns 0 or MS_EUNAVAIL (ack/nack not sent).
 */
static int
settle(struct broker *a, struct rec *r, enum outcome how, int lost_rc)
{
	bool ok = how == OUT_ACK && !r->returned;
	enum rec_kind kind = r->kind;
	struct bus_event *ev = r->ev;

	if (how != OUT_LOST) {
		count("monoshop_amqp_confirms_total", r->returned ? "returned"
		                                      : how == OUT_ACK ? "ack"
		                                      : how == OUT_NACK
		                                          ? "nack"
		                                          : "timeout");
	}
	r->kind = REC_FREE;
	if (kind == REC_EVENT) {
		if (how == OUT_TIMEOUT) {
			MS_WARN("amqp",
			        "event %s: no confirm from %s within %d ms: "
			        "it will be published again",
			        ev->id, a->where, a->confirm_timeout_ms);
		}
		ev->done(ev, ok ? 0 : how == OUT_LOST ? lost_rc : MS_EUNAVAIL);
		return 0;
	}
	if (how == OUT_LOST) {
		return 0;
	}
	if (ok) {
		if (amqp_basic_ack(a->conn, CH_CON, r->orig_tag, 0) !=
		    AMQP_STATUS_OK) {
			return fail(a, false, "basic.ack failed");
		}
		count("monoshop_amqp_consumed_total", r->result);
		return 0;
	}
	MS_WARN("amqp",
	        "moving a message (%s) failed (%s): it is requeued and "
	        "will be delivered again",
	        r->result,
	        r->returned       ? "not routed"
	        : how == OUT_NACK ? "nack"
	                          : "timeout");
	if (amqp_basic_nack(a->conn, CH_CON, r->orig_tag, 0, 1) !=
	    AMQP_STATUS_OK) {
		return fail(a, false, "basic.nack failed");
	}
	return 0;
}

/* A confirm (ack or nack) for |tag|, or every tag up to it. */
static int
on_confirm(struct broker *a, uint64_t tag, bool multiple, bool ack)
{
	uint64_t from = multiple ? a->head_seq : tag;
	int rc = 0;

	if (tag >= a->next_seq) {
		return fail(a, true, "confirm for unknown sequence %llu",
		            (unsigned long long)tag);
	}
	for (uint64_t s = from; s <= tag && rc == 0; s++) {
		struct rec *r;

		if (s < a->head_seq) {
			continue; /* timed out already, or a repeat */
		}
		r = rec_at(a, s);
		if (r->kind != REC_FREE) {
			rc = settle(a, r, ack ? OUT_ACK : OUT_NACK, 0);
		}
	}
	ring_advance(a);
	return rc;
}

/* Times out records whose confirm is overdue. Deadlines grow with the
 * sequence, so the scan stops at the first one still in time. */
static int
expire_confirms(struct broker *a, int64_t now)
{
	int rc = 0;

	for (uint64_t s = a->head_seq; s < a->next_seq && rc == 0; s++) {
		struct rec *r = rec_at(a, s);

		if (r->kind == REC_FREE) {
			continue;
		}
		if (r->deadline_ms > now) {
			break;
		}
		rc = settle(a, r, OUT_TIMEOUT, 0);
	}
	ring_advance(a);
	return rc;
}

/* Completes every record as lost (connection gone or stopping). */
static void
ring_fail(struct broker *a, int rc)
{
	for (uint64_t s = a->head_seq; s < a->next_seq; s++) {
		struct rec *r = rec_at(a, s);

		if (r->kind != REC_FREE) {
			settle(a, r, OUT_LOST, rc);
		}
	}
	a->head_seq = a->next_seq = 1;
}

/* ---- moves (copies of deliveries) --------------------------------------- */

static void
fwd_free(struct fwd *f)
{
	if (!f->used) {
		return;
	}
	empty_amqp_pool(&f->pool);
	free(f->body);
	memset(f, 0, sizeof(*f));
}

static void
fwds_drop(struct broker *a)
{
	for (size_t i = 0; i < a->nfwd; i++) {
		fwd_free(&a->fwds[i]);
	}
}

/* Publishes one move; its record carries the original's tag. */
static int
fwd_publish(struct broker *a, struct fwd *f)
{
	amqp_bytes_t body = {f->len, f->body};
	struct rec *r;
	int rc;

	rc = amqp_basic_publish(a->conn, CH_PUB, cbytes(f->exchange),
	                        amqp_empty_bytes, 1, 0, &f->props, body);
	if (rc != AMQP_STATUS_OK) {
		fwd_free(f);
		return fail(a, false, "publish to %s: %s", f->exchange,
		            amqp_error_string2(rc));
	}
	r = ring_push(a, REC_MOVE, &f->props);
	r->orig_tag = f->orig_tag;
	r->result = f->result;
	fwd_free(f);
	return 0;
}

/*
 * move copies the delivery in |c| to |exchange| with |add| headers, to be
 * published after |delay_ms|; the original is acked once the copy is
 * confirmed. Takes the body from |c|. Returns 0, or MS_EUNAVAIL when the
 * connection failed.
 */
static int
move(struct broker *a, struct content *c, const char *exchange,
     const char *result, const struct hdr *add, size_t nadd, bool error,
     int delay_ms)
{
	struct fwd *f = NULL;
	int rc;

	for (size_t i = 0; i < a->nfwd && f == NULL; i++) {
		if (!a->fwds[i].used) {
			f = &a->fwds[i];
		}
	}
	if (f != NULL) {
		f->used = true;
		init_amqp_pool(&f->pool, 1024);
		rc = props_clone(&c->props, &f->props, &f->pool);
		if (rc == 0) {
			rc = headers_set(&f->props, &f->pool, add, nadd);
		}
	} else {
		rc = MS_EFULL; /* more moves than prefetch: cannot happen */
	}
	if (rc != 0) {
		MS_WARN("amqp", "cannot move a message to %s: %s; requeued",
		        exchange, ms_strerror(rc));
		if (f != NULL) {
			fwd_free(f);
		}
		if (amqp_basic_nack(a->conn, CH_CON, c->tag, 0, 1) !=
		    AMQP_STATUS_OK) {
			return fail(a, false, "basic.nack failed");
		}
		return 0;
	}
	/* Another broker user's id would make the broker refuse the copy;
	 * a moved message also loses its time to live (as MassTransit's). */
	f->props._flags &= ~AMQP_BASIC_USER_ID_FLAG;
	if (error) {
		f->props._flags &= ~AMQP_BASIC_EXPIRATION_FLAG;
	}
	f->body = c->body;
	f->len = (size_t)c->size;
	c->body = NULL;
	f->exchange = exchange;
	f->orig_tag = c->tag;
	f->result = result;
	f->due_ms = ms_now_ms() + delay_ms;
	if (delay_ms == 0 && ring_has_room(a) && !a->is_blocked) {
		return fwd_publish(a, f);
	}
	return 0; /* published by pump() when due */
}

/* Host headers MassTransit adds to every moved message (§3.5). */
static size_t
host_headers(struct broker *a, struct hdr *h)
{
	h[0] = (struct hdr){"MT-Host-MachineName", a->machine, 0};
	h[1] = (struct hdr){"MT-Host-ProcessName", PROCESS_NAME, 0};
	h[2] = (struct hdr){"MT-Host-ProcessId", NULL, a->pid};
	h[3] = (struct hdr){"MT-Host-Assembly", PROCESS_NAME, 0};
	h[4] = (struct hdr){"MT-Host-AssemblyVersion", MONOSHOP_VERSION, 0};
	return 5;
}

static int
move_skipped(struct broker *a, struct content *c, const struct endpoint *ep,
             const char *why)
{
	struct hdr h[8];
	size_t n = host_headers(a, h);

	h[n++] = (struct hdr){"MT-Reason", "dead-letter", 0};
	MS_WARN("amqp", "%s: message %.*s skipped: %s", ep->queue,
	        (int)c->props.message_id.len,
	        (const char *)c->props.message_id.bytes, why);
	return move(a, c, ep->skipped, "skipped", h, n, false, 0);
}

static int
move_error(struct broker *a, struct content *c, const struct endpoint *ep,
           const char *exc_type, const char *why, unsigned retries)
{
	struct hdr h[20];
	size_t n = host_headers(a, h);
	char ts[MS_TIME_STRLEN];
	char stack[300];

	ms_time_rfc3339(ms_wall_ms(), ts);
	snprintf(stack, sizeof(stack),
	         "   at monoshop amqp consumer %s (%s)\n"
	         "   at monoshop bus_deliver",
	         ep->queue, exc_type);
	h[n++] = (struct hdr){"MT-Reason", "fault", 0};
	h[n++] = (struct hdr){"MT-Fault-ExceptionType", exc_type, 0};
	h[n++] = (struct hdr){"MT-Fault-InputAddress", ep->input, 0};
	h[n++] = (struct hdr){"MT-Fault-Message", why, 0};
	h[n++] = (struct hdr){"MT-Fault-Timestamp", ts, 0};
	h[n++] = (struct hdr){"MT-Fault-StackTrace", stack, 0};
	h[n++] = (struct hdr){"MT-Fault-ConsumerType", ep->consumer, 0};
	if (retries > 0) {
		h[n++] =
		    (struct hdr){"MT-Fault-RetryCount", NULL, (int32_t)retries};
	}
	MS_WARN("amqp", "%s: message %.*s moved to %s: %s", ep->queue,
	        (int)c->props.message_id.len,
	        (const char *)c->props.message_id.bytes, ep->error, why);
	count_event("monoshop_events_failed_total", ep->type);
	return move(a, c, ep->error, "error", h, n, true, 0);
}

static int
move_retry(struct broker *a, struct content *c, const struct endpoint *ep,
           unsigned redeliveries, int verdict)
{
	struct hdr h[1];
	int delay = RETRY_BASE_MS;

	for (unsigned i = 0; i < redeliveries && delay < RETRY_MAX_MS; i++) {
		delay *= 2;
	}
	if (delay > RETRY_MAX_MS) {
		delay = RETRY_MAX_MS;
	}
	h[0] = (struct hdr){"MT-Redelivery-Count", NULL,
	                    (int32_t)(redeliveries + 1)};
	MS_INFO("amqp",
	        "%s: message %.*s failed (%s), redelivery %u of %u in %d ms",
	        ep->queue, (int)c->props.message_id.len,
	        (const char *)c->props.message_id.bytes, ms_strerror(verdict),
	        redeliveries + 1, a->max_redeliveries, delay);
	count_event("monoshop_events_retried_total", ep->type);
	return move(a, c, ep->queue, "retry", h, 1, false, delay);
}

/* ---- consuming ----------------------------------------------------------- */

/*
 * batch_acks acknowledges the batch's deliveries (all committed). One
 * multiple ack covers every unacked tag up to the last of the batch on the
 * channel, so it is used only when none of those is anyone else's: no
 * move waiting to publish or for its confirm, nothing left for the broker
 * to requeue below it. Else one ack each. Returns 0 or MS_EUNAVAIL.
 */
static int
batch_acks(struct broker *a)
{
	uint64_t last = a->batch_tags[a->nbatch - 1];
	bool multiple = a->nbatch > 1 && a->unacked_min > last;

	for (size_t i = 0; i < a->nfwd && multiple; i++) {
		if (a->fwds[i].used && a->fwds[i].orig_tag < last) {
			multiple = false;
		}
	}
	for (uint64_t s = a->head_seq; s < a->next_seq && multiple; s++) {
		const struct rec *r = rec_at(a, s);

		if (r->kind == REC_MOVE && r->orig_tag < last) {
			multiple = false;
		}
	}
	if (multiple) {
		if (amqp_basic_ack(a->conn, CH_CON, last, 1) !=
		    AMQP_STATUS_OK) {
			return fail(a, false, "basic.ack failed");
		}
		count("monoshop_amqp_acks_total", "multiple");
	} else {
		for (size_t i = 0; i < a->nbatch; i++) {
			if (amqp_basic_ack(a->conn, CH_CON, a->batch_tags[i],
			                   0) != AMQP_STATUS_OK) {
				return fail(a, false, "basic.ack failed");
			}
		}
		count("monoshop_amqp_acks_total", "single");
	}
	ms_metrics_count("monoshop_amqp_consumed_total", "result=\"ok\"",
	                 (double)a->nbatch);
	return 0;
}

/*
 * batch_end closes the open batch, if any: with |commit|, commits it and
 * acks its deliveries, or, when the commit fails, requeues them all (none
 * of their effects is durable) and handles the next deliveries one by
 * one; without, rolls it back (the connection is gone: the broker
 * requeues). Returns 0 or MS_EUNAVAIL (the connection failed).
 */
static int
batch_end(struct broker *a, bool commit)
{
	int rc;

	if (!a->batch_open) {
		return 0;
	}
	a->batch_open = false;
	if (!commit) {
		bus_batch_rollback(a->t->bus, a->batch_type);
		a->nbatch = 0;
		return 0;
	}
	rc = bus_batch_commit(a->t->bus, a->batch_type);
	if (a->nbatch == 0) {
		return 0; /* nothing to ack: every event went another way */
	}
	if (rc == 0) {
		rc = batch_acks(a);
		a->nbatch = 0;
		return rc;
	}
	MS_WARN("amqp",
	        "%s: a batch of %zu events was not committed (%s): "
	        "requeued; the next %u deliveries are handled one by one",
	        a->eps[0].queue, a->nbatch, ms_strerror(rc),
	        (unsigned)(2 * a->prefetch));
	a->solo = 2 * (unsigned)a->prefetch;
	for (size_t i = 0; i < a->nbatch; i++) {
		count_event("monoshop_events_retried_total", a->batch_type);
		if (amqp_basic_nack(a->conn, CH_CON, a->batch_tags[i], 0, 1) !=
		    AMQP_STATUS_OK) {
			a->nbatch = 0;
			return fail(a, false, "basic.nack failed");
		}
	}
	a->nbatch = 0;
	return 0;
}

/* Handles one complete delivery on the AMQP thread. */
static int
consume_traced(struct broker *a, struct content *c)
{
	const struct endpoint *ep = &a->eps[c->ep];
	unsigned redeliveries = redelivery_count(&c->props);
	struct tp_amqp_decoded dec;
	struct bus_event ev;
	bool solo = a->solo > 0 && !a->batch_open;
	char why[256] = "";
	char exc[64];
	int rc;

	memset(&dec, 0, sizeof(dec));
	rc = tp_amqp_envelope_decode(c->body ? c->body : "", (size_t)c->size,
	                             &dec, why, sizeof(why));
	if (rc == MS_ENOTSUP) {
		return move_skipped(a, c, ep,
		                    "no consumer here for its message type");
	}
	if (rc == MS_EINVAL) {
		return move_error(
		    a, c, ep, "MassTransit.SerializationException",
		    why[0] ? why : "not a MassTransit envelope", redeliveries);
	}
	if (rc == 0 && a->batch_open && strcmp(a->batch_type, dec.type) != 0) {
		/* Another subscriber's event: this batch ends here. */
		if ((rc = batch_end(a, true)) != 0) {
			tp_amqp_decoded_fini(&dec);
			return rc;
		}
	}
	if (solo) {
		a->solo--;
	} else if (rc == 0 && !a->batch_open &&
	           strlen(dec.type) < sizeof(a->batch_type) &&
	           bus_batch_begin(a->t->bus, dec.type) == 0) {
		a->batch_open = true;
		a->nbatch = 0;
		ms_strlcpy(a->batch_type, dec.type, sizeof(a->batch_type));
	}
	if (rc == 0) {
		memset(&ev, 0, sizeof(ev));
		ms_strlcpy(ev.id, dec.message_id, sizeof(ev.id));
		ev.in_batch = a->batch_open;
		ev.type = dec.type;
		ev.payload = dec.payload;
		ev.len = dec.len;
		/* The event's trace (from the envelope's headers, or a new one)
		 * is current while it is handled and moved, so those log lines
		 * carry it; bus_deliver keeps it for the subscriber. */
		ev.traceparent = ms_trace_begin(dec.traceparent);
		ev.occurred_ms = dec.sent_ms;
		ev.attempt = redeliveries + 1;
		rc = bus_deliver(a->t->bus, &ev);
		tp_amqp_decoded_fini(&dec);
		if (rc == 0 && ev.in_batch) {
			/* Acked once the batch is committed. */
			a->batch_tags[a->nbatch++] = c->tag;
			return a->nbatch >= a->batch_max ? batch_end(a, true)
			                                 : 0;
		}
		if (rc == 0) {
			if (amqp_basic_ack(a->conn, CH_CON, c->tag, 0) !=
			    AMQP_STATUS_OK) {
				return fail(a, false, "basic.ack failed");
			}
			count("monoshop_amqp_consumed_total", "ok");
			return 0;
		}
		if (rc == MS_ENOTFOUND) {
			return move_skipped(a, c, ep,
			                    "no subscriber for its type here");
		}
		if (rc == MS_EINVAL || rc == MS_EVALIDATION) {
			snprintf(exc, sizeof(exc), "Monoshop.%s",
			         ms_errname(rc));
			snprintf(why, sizeof(why),
			         "the consumer rejected the event: %s",
			         ms_strerror(rc));
			return move_error(a, c, ep, exc, why, redeliveries);
		}
	}
	/* Transient (the consumer's error, or no memory to decode). */
	if (redeliveries >= a->max_redeliveries) {
		snprintf(exc, sizeof(exc), "Monoshop.%s", ms_errname(rc));
		snprintf(why, sizeof(why),
		         "still failing after %u redeliveries: %s",
		         redeliveries, ms_strerror(rc));
		return move_error(a, c, ep, exc, why, redeliveries);
	}
	return move_retry(a, c, ep, redeliveries, rc);
}

/* consume_traced with no trace context left behind on this thread. */
static int
consume(struct broker *a, struct content *c)
{
	int rc = consume_traced(a, c);

	ms_trace_clear();
	return rc;
}

/* ---- frames ------------------------------------------------------------ */

static void
content_reset(struct content *c)
{
	free(c->body);
	c->body = NULL;
	if (c->active || c->header) {
		recycle_amqp_pool(&c->pool);
	}
	c->active = c->header = c->discard = c->oversized = false;
	c->size = c->got = 0;
	memset(&c->props, 0, sizeof(c->props));
}

/* A basic.return: the publish it names was not routed. Returns come in
 * publish order, before the publish's ack, so the oldest unconfirmed
 * record with the same message id is the one. */
static void
on_returned(struct broker *a, struct content *c)
{
	const amqp_bytes_t *id = &c->props.message_id;
	bool has_id = (c->props._flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0;

	for (uint64_t s = a->head_seq; s < a->next_seq; s++) {
		struct rec *r = rec_at(a, s);

		if (r->kind == REC_FREE || r->returned || r->has_id != has_id) {
			continue;
		}
		if (has_id && (r->idlen != id->len ||
		               memcmp(r->id, id->bytes, r->idlen) != 0)) {
			continue;
		}
		r->returned = true;
		if (r->kind == REC_EVENT && !a->warned_unrouted) {
			a->warned_unrouted = true;
			MS_WARN("amqp",
			        "%s: event %s was not routed (%u %s): no queue "
			        "is bound yet; events stay in the outbox until "
			        "a consumer declares its queue",
			        a->where, r->ev->id, c->reply_code,
			        c->reply_text);
		}
		return;
	}
	MS_WARN("amqp", "a returned message matches no publish in flight");
}

static int
content_done(struct broker *a, struct content *c, int channel)
{
	int rc = 0;

	if (channel == CH_PUB) {
		on_returned(a, c);
	} else if (c->discard && !c->oversized) {
		/* Stopping (or not ours): left unacked, the broker requeues it
		 * when the connection closes. No multiple ack may cover it. */
		if (c->tag < a->unacked_min) {
			a->unacked_min = c->tag;
		}
	} else if (c->oversized) {
		MS_ERROR("amqp",
		         "%s: message %.*s of %llu bytes exceeds "
		         "events.max_message (%llu): rejected",
		         a->eps[c->ep].queue, (int)c->props.message_id.len,
		         (const char *)c->props.message_id.bytes,
		         (unsigned long long)c->size,
		         (unsigned long long)a->max_message);
		if (amqp_basic_reject(a->conn, CH_CON, c->tag, 0) !=
		    AMQP_STATUS_OK) {
			rc = fail(a, false, "basic.reject failed");
		}
		count("monoshop_amqp_consumed_total", "error");
	} else {
		rc = consume(a, c);
	}
	content_reset(c);
	return rc;
}

static int
on_header(struct broker *a, const amqp_frame_t *f)
{
	struct content *c = f->channel == CH_PUB   ? &a->cret
	                    : f->channel == CH_CON ? &a->cdel
	                                           : NULL;
	const amqp_basic_properties_t *p = f->payload.properties.decoded;

	if (c == NULL || !c->active || c->header) {
		return fail(a, true, "unexpected content header on channel %u",
		            f->channel);
	}
	c->header = true;
	c->size = f->payload.properties.body_size;
	if (props_clone(p, &c->props, &c->pool) != 0) {
		return fail(a, true, "out of memory reading a message");
	}
	if (f->channel == CH_PUB) {
		c->discard = true; /* a returned body is of no use */
	} else if (!c->discard && c->size > a->max_message) {
		c->discard = c->oversized = true;
	} else if (!c->discard && c->size > 0 &&
	           (c->body = malloc((size_t)c->size)) == NULL) {
		return fail(a, true, "out of memory reading a message");
	}
	return c->size == 0 ? content_done(a, c, f->channel) : 0;
}

static int
on_body(struct broker *a, const amqp_frame_t *f)
{
	struct content *c = f->channel == CH_PUB   ? &a->cret
	                    : f->channel == CH_CON ? &a->cdel
	                                           : NULL;
	const amqp_bytes_t *b = &f->payload.body_fragment;

	if (c == NULL || !c->header || c->got + b->len > c->size) {
		return fail(a, true, "unexpected content body on channel %u",
		            f->channel);
	}
	if (!c->discard) {
		memcpy(c->body + c->got, b->bytes, b->len);
	}
	c->got += b->len;
	return c->got == c->size ? content_done(a, c, f->channel) : 0;
}

static int
endpoint_by_tag(struct broker *a, amqp_bytes_t tag)
{
	for (size_t i = 0; i < a->neps; i++) {
		if (tag.len == strlen(a->eps[i].queue) &&
		    memcmp(tag.bytes, a->eps[i].queue, tag.len) == 0) {
			return (int)i;
		}
	}
	return -1;
}

static int
on_method(struct broker *a, amqp_channel_t ch, const amqp_method_t *m)
{
	char text[200];

	switch (m->id) {
	case AMQP_BASIC_ACK_METHOD: {
		const amqp_basic_ack_t *k = m->decoded;

		return ch == CH_PUB
		           ? on_confirm(a, k->delivery_tag, k->multiple, true)
		           : 0;
	}
	case AMQP_BASIC_NACK_METHOD: {
		const amqp_basic_nack_t *k = m->decoded;

		return ch == CH_PUB
		           ? on_confirm(a, k->delivery_tag, k->multiple, false)
		           : 0;
	}
	case AMQP_BASIC_RETURN_METHOD: {
		const amqp_basic_return_t *r = m->decoded;

		if (ch != CH_PUB || a->cret.active) {
			return fail(a, true, "unexpected basic.return");
		}
		a->cret.active = true;
		a->cret.reply_code = r->reply_code;
		snprintf(a->cret.reply_text, sizeof(a->cret.reply_text), "%.*s",
		         (int)r->reply_text.len,
		         (const char *)r->reply_text.bytes);
		return 0;
	}
	case AMQP_BASIC_DELIVER_METHOD: {
		const amqp_basic_deliver_t *d = m->decoded;

		if (ch != CH_CON || a->cdel.active) {
			return fail(a, true, "unexpected basic.deliver");
		}
		a->cdel.active = true;
		a->cdel.tag = d->delivery_tag;
		a->cdel.ep = endpoint_by_tag(a, d->consumer_tag);
		/* Once the shutdown began (quiesce asked, basic.cancel sent
		 * or about to be), deliveries already on the way are not
		 * handled: left unacked, the broker requeues them when we
		 * close. */
		a->cdel.discard =
		    a->cancelled || atomic_load(&a->quiesce) || a->cdel.ep < 0;
		return 0;
	}
	case AMQP_BASIC_CANCEL_METHOD:
		/* consumer_cancel_notify: the queue was deleted. */
		return fail(a, true,
		            "the broker cancelled our consumer "
		            "(queue deleted?)");
	case AMQP_CHANNEL_CLOSE_METHOD:
		close_text(m, text, sizeof(text));
		return fail(a, true, "channel %u: %s", ch, text);
	case AMQP_CONNECTION_CLOSE_METHOD: {
		amqp_connection_close_ok_t ok = {0};

		close_text(m, text, sizeof(text));
		amqp_send_method(a->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD,
		                 &ok);
		return fail(a, false, "%s", text);
	}
	case AMQP_CONNECTION_BLOCKED_METHOD: {
		const amqp_connection_blocked_t *b = m->decoded;

		snprintf(text, sizeof(text),
		         "the broker blocked publishing: %.*s",
		         (int)b->reason.len, (const char *)b->reason.bytes);
		MS_WARN("amqp", "%s: %s", a->where, text);
		a->is_blocked = true;
		pthread_mutex_lock(&a->mtx);
		a->blocked = true;
		snprintf(a->state, sizeof(a->state), "%s", text);
		pthread_mutex_unlock(&a->mtx);
		return 0;
	}
	case AMQP_CONNECTION_UNBLOCKED_METHOD:
		MS_INFO("amqp", "%s: the broker unblocked publishing",
		        a->where);
		a->is_blocked = false;
		pthread_mutex_lock(&a->mtx);
		a->blocked = false;
		pthread_mutex_unlock(&a->mtx);
		return 0;
	default:
		MS_DEBUG("amqp", "ignoring method 0x%08x on channel %u", m->id,
		         ch);
		return 0;
	}
}

static int
on_frame(struct broker *a, const amqp_frame_t *f)
{
	switch (f->frame_type) {
	case AMQP_FRAME_METHOD:
		return on_method(a, f->channel, &f->payload.method);
	case AMQP_FRAME_HEADER:
		return on_header(a, f);
	case AMQP_FRAME_BODY:
		return on_body(a, f);
	default:
		return 0; /* heartbeats: the library keeps the time */
	}
}

/* Reads and handles what has arrived, without waiting. */
static int
read_frames(struct broker *a)
{
	struct timeval zero = {0, 0};
	int rc = 0;

	for (int i = 0; i < FRAMES_PER_ROUND && rc == 0; i++) {
		amqp_frame_t f;
		int st = amqp_simple_wait_frame_noblock(a->conn, &f, &zero);

		if (st == AMQP_STATUS_TIMEOUT) {
			break;
		}
		if (st != AMQP_STATUS_OK) {
			return fail(a, false, "%s", amqp_error_string2(st));
		}
		rc = on_frame(a, &f);
	}
	/* What had arrived is handled: commit the batch and ack it (or, when
	 * the connection failed, roll it back: the broker requeues). */
	if (rc == 0) {
		rc = batch_end(a, true);
	} else {
		batch_end(a, false);
	}
	/* Frames and decoded methods live in the library's pools until
	 * released; everything we keep was copied out. */
	amqp_maybe_release_buffers(a->conn);
	return rc;
}

/* ---- publishing --------------------------------------------------------- */

static int
declare_exchange(struct broker *a, amqp_channel_t ch, const char *name)
{
	char what[NAME_MAX_ + 32];

	amqp_exchange_declare(a->conn, ch, cbytes(name), cbytes("fanout"), 0, 1,
	                      0, 0, amqp_empty_table);
	snprintf(what, sizeof(what), "declaring exchange %s", name);
	return rpc_check(a, what);
}

/* Declares the event's exchange once per connection before publishing to
 * it (a publish to a missing exchange closes the channel). */
static int
ensure_exchange(struct broker *a, const char *name)
{
	int rc;

	for (size_t i = 0; i < a->ndeclared; i++) {
		if (a->declared[i] == name ||
		    strcmp(a->declared[i], name) == 0) {
			return 0;
		}
	}
	if ((rc = declare_exchange(a, CH_PUB, name)) != 0) {
		return rc;
	}
	if (a->ndeclared < MAX_EXCHANGES) {
		a->declared[a->ndeclared++] = name;
	}
	return 0;
}

/* Publishes one event from the relay; completes it on failure to encode.
 * Returns MS_EUNAVAIL when the connection failed (the event is done). */
static int
publish_event(struct broker *a, struct bus_event *ev)
{
	const char *exchange = tp_amqp_exchange_for(ev->type);
	char dest[NAME_MAX_ + sizeof(a->base)];
	struct tp_amqp_env_meta meta;
	amqp_basic_properties_t p;
	amqp_table_entry_t tp;
	char *json = NULL;
	size_t len = 0;
	int rc;

	if (exchange == NULL) {
		MS_ERROR("amqp",
		         "event %s: type %s has no MassTransit mapping; it "
		         "can never be published",
		         ev->id, ev->type);
		ev->done(ev, MS_EINVAL);
		return 0;
	}
	snprintf(dest, sizeof(dest), "%s%s", a->base, exchange);
	memset(&meta, 0, sizeof(meta));
	meta.message_id = ev->id;
	meta.source_address = a->source;
	meta.destination_address = dest;
	meta.sent_ms = ms_wall_ms();
	meta.traceparent = ev->traceparent;
	meta.machine_name = a->machine;
	meta.process_name = PROCESS_NAME;
	meta.process_id = a->pid;
	rc = tp_amqp_envelope_encode(ev->type, ev->payload, ev->len, &meta,
	                             &json, &len);
	if (rc != 0) {
		MS_ERROR("amqp", "event %s (%s) cannot be encoded: %s", ev->id,
		         ev->type, ms_strerror(rc));
		/* Only a lack of memory may pass; the rest never will. */
		ev->done(ev, rc == MS_ENOMEM ? MS_ENOMEM : MS_EINVAL);
		return 0;
	}
	if ((rc = ensure_exchange(a, exchange)) != 0) {
		free(json);
		ev->done(ev, MS_EUNAVAIL);
		return rc;
	}
	memset(&p, 0, sizeof(p));
	p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG |
	           AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
	p.content_type = cbytes(TP_AMQP_CONTENT_TYPE);
	p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
	p.message_id = cbytes(ev->id);
	if (ev->traceparent != NULL && ev->traceparent[0] != '\0') {
		tp.key = cbytes("traceparent");
		tp.value.kind = AMQP_FIELD_KIND_UTF8;
		tp.value.value.bytes = cbytes(ev->traceparent);
		p.headers.num_entries = 1;
		p.headers.entries = &tp;
		p._flags |= AMQP_BASIC_HEADERS_FLAG;
	}
	rc = amqp_basic_publish(a->conn, CH_PUB, cbytes(exchange),
	                        amqp_empty_bytes, 1, 0, &p,
	                        (amqp_bytes_t){len, json});
	free(json);
	if (rc != AMQP_STATUS_OK) {
		ev->done(ev, MS_EUNAVAIL);
		return fail(a, false, "publish to %s: %s", exchange,
		            amqp_error_string2(rc));
	}
	ring_push(a, REC_EVENT, &p)->ev = ev;
	count("monoshop_amqp_published_total", NULL);
	return 0;
}

/* Publishes what is due: moves first (they hold deliveries), then the
 * relay's events, as long as the ring has room. Returns 0 or MS_EUNAVAIL. */
static int
pump(struct broker *a, int64_t now)
{
	struct bus_event *ev;
	int rc = 0;

	if (a->is_blocked) {
		/* Fail fast: the relay retries with backoff, and health says
		 * why. Moves wait (bounded by prefetch). */
		queue_fail(a, MS_EUNAVAIL);
		return 0;
	}
	for (size_t i = 0; i < a->nfwd && rc == 0; i++) {
		struct fwd *f = &a->fwds[i];

		if (f->used && f->due_ms <= now && ring_has_room(a)) {
			rc = fwd_publish(a, f);
		}
	}
	while (rc == 0 && ring_has_room(a) && (ev = queue_pop(a)) != NULL) {
		rc = publish_event(a, ev);
	}
	return rc;
}

/* ---- connection --------------------------------------------------------- */

static int
declare_endpoint(struct broker *a, const struct endpoint *ep)
{
	const char *side[2] = {ep->error, ep->skipped};
	char what[NAME_MAX_ * 2 + 64];
	int rc;

	/* As MassTransit declares them (§3.1): fanout durable exchanges, a
	 * durable queue without arguments, queue bound to the endpoint's
	 * exchange, the event's exchange bound to the endpoint's. */
	if ((rc = declare_exchange(a, CH_CON, ep->exchange)) != 0 ||
	    (rc = declare_exchange(a, CH_CON, ep->queue)) != 0) {
		return rc;
	}
	amqp_queue_declare(a->conn, CH_CON, cbytes(ep->queue), 0, 1, 0, 0,
	                   amqp_empty_table);
	snprintf(what, sizeof(what), "declaring queue %s", ep->queue);
	if ((rc = rpc_check(a, what)) != 0) {
		return rc;
	}
	amqp_queue_bind(a->conn, CH_CON, cbytes(ep->queue), cbytes(ep->queue),
	                amqp_empty_bytes, amqp_empty_table);
	snprintf(what, sizeof(what), "binding queue %s", ep->queue);
	if ((rc = rpc_check(a, what)) != 0) {
		return rc;
	}
	amqp_exchange_bind(a->conn, CH_CON, cbytes(ep->queue),
	                   cbytes(ep->exchange), amqp_empty_bytes,
	                   amqp_empty_table);
	snprintf(what, sizeof(what), "binding exchange %s to %s", ep->exchange,
	         ep->queue);
	if ((rc = rpc_check(a, what)) != 0) {
		return rc;
	}
	for (int i = 0; i < 2; i++) {
		if ((rc = declare_exchange(a, CH_CON, side[i])) != 0) {
			return rc;
		}
		amqp_queue_declare(a->conn, CH_CON, cbytes(side[i]), 0, 1, 0, 0,
		                   amqp_empty_table);
		snprintf(what, sizeof(what), "declaring queue %s", side[i]);
		if ((rc = rpc_check(a, what)) != 0) {
			return rc;
		}
		amqp_queue_bind(a->conn, CH_CON, cbytes(side[i]),
		                cbytes(side[i]), amqp_empty_bytes,
		                amqp_empty_table);
		snprintf(what, sizeof(what), "binding queue %s", side[i]);
		if ((rc = rpc_check(a, what)) != 0) {
			return rc;
		}
	}
	return 0;
}

static int
start_consuming(struct broker *a)
{
	int rc;

	amqp_channel_open(a->conn, CH_CON);
	if ((rc = rpc_check(a, "opening the consuming channel")) != 0) {
		return rc;
	}
	for (size_t i = 0; i < a->neps; i++) {
		if ((rc = declare_endpoint(a, &a->eps[i])) != 0) {
			return rc;
		}
	}
	amqp_basic_qos(a->conn, CH_CON, 0, (uint16_t)a->prefetch, 0);
	if ((rc = rpc_check(a, "basic.qos")) != 0) {
		return rc;
	}
	for (size_t i = 0; i < a->neps; i++) {
		/* The queue's name is the consumer tag: one per endpoint. */
		amqp_basic_consume(a->conn, CH_CON, cbytes(a->eps[i].queue),
		                   cbytes(a->eps[i].queue), 0, 0, 0,
		                   amqp_empty_table);
		if ((rc = rpc_check(a, "basic.consume")) != 0) {
			return rc;
		}
	}
	a->consuming = true;
	return 0;
}

/* Closes the connection (cleanly when it can) and completes everything
 * that depended on it: in-flight events with |rc|, moves dropped (the
 * broker requeues their unacked originals). */
static void
conn_close(struct broker *a, bool graceful, int rc)
{
	if (a->conn == NULL) {
		return;
	}
	if (graceful) {
		/* Bounded by the RPC timeout set at connect. */
		amqp_connection_close(a->conn, AMQP_REPLY_SUCCESS);
	}
	batch_end(a, false); /* closed by read_frames already, normally */
	amqp_destroy_connection(a->conn);
	a->conn = NULL;
	ring_fail(a, rc);
	fwds_drop(a);
	content_reset(&a->cret);
	content_reset(&a->cdel);
	a->ndeclared = 0;
	a->consuming = false;
	a->is_blocked = false;
	pthread_mutex_lock(&a->mtx);
	a->ready = false;
	a->blocked = false;
	pthread_mutex_unlock(&a->mtx);
}

static int
conn_open(struct broker *a)
{
	struct timeval tv;
	amqp_socket_t *sock;
	amqp_rpc_reply_t r;
	amqp_table_entry_t caps[4];
	amqp_table_entry_t props[2];
	amqp_table_t caps_table = {4, caps};
	amqp_table_t props_table = {2, props};
	int st;

	a->graceful = false;
	if ((a->conn = amqp_new_connection()) == NULL) {
		return fail(a, false, "out of memory");
	}
	if ((sock = amqp_tcp_socket_new(a->conn)) == NULL) {
		amqp_destroy_connection(a->conn);
		a->conn = NULL;
		return fail(a, false, "out of memory");
	}
	tv.tv_sec = a->connect_timeout_ms / 1000;
	tv.tv_usec = (a->connect_timeout_ms % 1000) * 1000;
	amqp_set_handshake_timeout(a->conn, &tv);
	tv.tv_sec = a->confirm_timeout_ms / 1000;
	tv.tv_usec = (a->confirm_timeout_ms % 1000) * 1000;
	amqp_set_rpc_timeout(a->conn, &tv);
	tv.tv_sec = a->connect_timeout_ms / 1000;
	tv.tv_usec = (a->connect_timeout_ms % 1000) * 1000;
	st = amqp_socket_open_noblock(sock, a->ci.host, a->ci.port, &tv);
	if (st != AMQP_STATUS_OK) {
		amqp_destroy_connection(a->conn);
		a->conn = NULL;
		return fail(a, false, "%s", amqp_error_string2(st));
	}
	/* librabbitmq waits without limit for a full socket buffer to drain
	 * in amqp_basic_publish, and checks heartbeats only when reading: let
	 * the kernel give up on data the broker has not acknowledged for
	 * twice the heartbeat (or the confirm timeout) instead. */
	{
		int hb = 2 * a->heartbeat_s * 1000;
		unsigned uto = (unsigned)(hb > a->confirm_timeout_ms
		                              ? hb
		                              : a->confirm_timeout_ms);

		(void)setsockopt(amqp_get_sockfd(a->conn), IPPROTO_TCP,
		                 TCP_USER_TIMEOUT, &uto, sizeof(uto));
	}
	/* Ask for connection.blocked and basic.cancel notifications; the
	 * library merges these with its own capabilities. */
	caps[0].key = cbytes("connection.blocked");
	caps[1].key = cbytes("consumer_cancel_notify");
	caps[2].key = cbytes("authentication_failure_close");
	caps[3].key = cbytes("exchange_exchange_bindings");
	for (int i = 0; i < 4; i++) {
		caps[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
		caps[i].value.value.boolean = 1;
	}
	props[0].key = cbytes("capabilities");
	props[0].value.kind = AMQP_FIELD_KIND_TABLE;
	props[0].value.value.table = caps_table;
	props[1].key = cbytes("connection_name");
	props[1].value.kind = AMQP_FIELD_KIND_UTF8;
	props[1].value.value.bytes = cbytes(a->conn_name);
	r = amqp_login_with_properties(
	    a->conn, a->vhost, 0, AMQP_DEFAULT_FRAME_SIZE, a->heartbeat_s,
	    &props_table, AMQP_SASL_METHOD_PLAIN, a->ci.user, a->ci.password);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		char text[200];

		if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
			close_text(&r.reply, text, sizeof(text));
		} else {
			snprintf(text, sizeof(text), "%s",
			         r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
			             ? amqp_error_string2(r.library_error)
			             : "no reply");
		}
		amqp_destroy_connection(a->conn);
		a->conn = NULL;
		return fail(a, false, "login: %s", text);
	}
	a->next_seq = a->head_seq = 1;
	a->ndeclared = 0;
	a->warned_unrouted = false;
	a->unacked_min = UINT64_MAX; /* delivery tags restart per channel */
	amqp_channel_open(a->conn, CH_PUB);
	if (rpc_check(a, "opening the publishing channel") != 0) {
		return MS_EUNAVAIL;
	}
	amqp_confirm_select(a->conn, CH_PUB);
	if (rpc_check(a, "confirm.select") != 0) {
		return MS_EUNAVAIL;
	}
	if (a->neps > 0 && !a->cancelled && start_consuming(a) != 0) {
		return MS_EUNAVAIL;
	}
	return 0;
}

/* ---- the AMQP thread ---------------------------------------------------- */

/* How long the loop may sleep: until the next confirm deadline or move,
 * at most TICK_MS (heartbeats are sent from inside library calls). */
static int
sleep_ms(struct broker *a, int64_t now)
{
	int64_t until = now + TICK_MS;

	if (amqp_frames_enqueued(a->conn) || amqp_data_in_buffer(a->conn)) {
		return 0;
	}
	if (!queue_empty(a) && ring_has_room(a) && !a->is_blocked) {
		return 0;
	}
	for (uint64_t s = a->head_seq; s < a->next_seq; s++) {
		struct rec *r = rec_at(a, s);

		if (r->kind != REC_FREE) {
			if (r->deadline_ms < until) {
				until = r->deadline_ms;
			}
			break;
		}
	}
	for (size_t i = 0; i < a->nfwd; i++) {
		if (a->fwds[i].used && a->fwds[i].due_ms < until) {
			until = a->fwds[i].due_ms;
		}
	}
	return until <= now ? 0 : (int)(until - now);
}

/* One round while connected: publish, wait, read, expire. */
static int
round_once(struct broker *a)
{
	struct pollfd pfd[2];
	int64_t now = ms_now_ms();
	int rc;

	if ((rc = pump(a, now)) != 0) {
		return rc;
	}
	pfd[0].fd = amqp_get_sockfd(a->conn);
	pfd[0].events = POLLIN;
	pfd[1].fd = a->wakefd;
	pfd[1].events = POLLIN;
	pfd[0].revents = pfd[1].revents = 0;
	if (poll(pfd, 2, sleep_ms(a, now)) < 0 && errno != EINTR) {
		return fail(a, false, "poll: %s", strerror(errno));
	}
	if (pfd[1].revents & POLLIN) {
		wake_drain(a);
	}
	/* Always: this is also where the library sends heartbeats and
	 * notices a silent broker. */
	if ((rc = read_frames(a)) != 0) {
		return rc;
	}
	return expire_confirms(a, ms_now_ms());
}

/* Sleeps up to |ms| or until woken (publish, stop). */
static void
idle(struct broker *a, int ms)
{
	struct pollfd pfd = {a->wakefd, POLLIN, 0};

	if (ms > 0 && poll(&pfd, 1, ms) > 0) {
		wake_drain(a);
	}
}

static int
backoff_ms(struct broker *a, int base)
{
	/* Half fixed, half random: spread reconnecting processes. */
	return base / 2 + (int)(rnd_next(a) % (uint64_t)(base / 2 + 1));
}

/*
 * stop_consuming asks the broker for no more deliveries (basic.cancel on
 * every endpoint) and makes this connection, and any later one, discard
 * what still arrives: left unacked, the broker requeues it when we close.
 * A delivery being handled is not cut short: handling runs on this thread,
 * so it was acked (after its commit) before we got here. Returns 0 or
 * MS_EUNAVAIL (the connection failed; a->why says why).
 */
static int
stop_consuming(struct broker *a)
{
	int rc;

	a->cancelled = true;
	for (size_t i = 0; a->conn != NULL && i < a->neps && a->consuming;
	     i++) {
		amqp_basic_cancel(a->conn, CH_CON, cbytes(a->eps[i].queue));
		if ((rc = rpc_check(a, "basic.cancel")) != 0) {
			return rc;
		}
	}
	a->consuming = false;
	return 0;
}

/* On the AMQP thread, once bus_quiesce asked: stop consuming, keep
 * publishing (the relay still needs us until stop). Returns 0 or
 * MS_EUNAVAIL (the connection failed). */
static int
quiesce_check(struct broker *a)
{
	bool was = a->consuming;
	int rc;

	if (!atomic_load(&a->quiesce) || a->cancelled) {
		return 0;
	}
	rc = stop_consuming(a);
	if (rc == 0 && was) {
		MS_INFO("amqp", "%s: stopped consuming %s (shutting down)",
		        a->where, a->eps[0].queue);
	}
	return rc;
}

/* The stop sequence, on the AMQP thread: stop consuming, fail what was
 * never published, give confirms in flight a bounded grace, close. */
static void
shutdown_conn(struct broker *a)
{
	int64_t deadline;

	a->cancelled = true;
	if (a->conn == NULL) {
		return;
	}
	if (stop_consuming(a) != 0) {
		conn_close(a, a->graceful, MS_ECLOSED);
		return;
	}
	queue_fail(a, MS_ECLOSED);
	/* Retries not yet sent: their originals go back to the queue when
	 * the connection closes. */
	fwds_drop(a);
	deadline = ms_now_ms() + a->confirm_timeout_ms;
	while (ring_pending(a) > 0 && ms_now_ms() < deadline) {
		if (round_once(a) != 0) {
			conn_close(a, a->graceful, MS_ECLOSED);
			return;
		}
	}
	conn_close(a, true, MS_ECLOSED);
}

static void *
run(void *arg)
{
	struct broker *a = arg;
	int backoff = 0;   /* 0: connected, or never failed */
	int attempts = 0;  /* failed attempts in this streak */
	bool ever = false; /* connected once: later ones are reconnects */
	int64_t next_try = 0;
	char msg[sizeof(a->why) + 64];

	while (!atomic_load(&a->stopping)) {
		int64_t now = ms_now_ms();

		if (a->conn == NULL && atomic_load(&a->quiesce)) {
			a->cancelled = true; /* a reconnect will not consume */
		}
		if (a->conn != NULL) {
			if (quiesce_check(a) == 0 && round_once(a) == 0) {
				continue;
			}
			MS_WARN("amqp",
			        "connection to %s lost: %s; reconnecting",
			        a->where, a->why);
			conn_close(a, a->graceful, MS_EUNAVAIL);
			snprintf(msg, sizeof(msg), "connection lost: %s",
			         a->why);
			set_state(a, false, msg);
			backoff = BACKOFF_MIN_MS;
			next_try = now + backoff_ms(a, backoff);
			continue;
		}
		if (now < next_try) {
			/* Queued events wait a little for the next attempt
			 * (at most HOLD_MS) rather than fail at once: the
			 * relay then goes round about once a second, not once
			 * per new outbox row, and a broker that is back soon
			 * gets them at once. Bounded, so that a shutdown in
			 * an outage is not held up by the relay's wait. */
			int64_t age = queue_age(a, now);
			int64_t wait = next_try - now;

			if (age >= HOLD_MS) {
				queue_fail(a, MS_EUNAVAIL);
			} else if (age > 0 && HOLD_MS - age < wait) {
				wait = HOLD_MS - age;
			}
			idle(a, (int)wait);
			continue;
		}
		if (conn_open(a) == 0) {
			if (attempts > 0 || ever) {
				count("monoshop_amqp_reconnects_total", NULL);
				MS_INFO("amqp", "reconnected to %s%s", a->where,
				        a->neps ? " (consuming again)" : "");
			} else {
				MS_INFO(
				    "amqp",
				    "connected to %s (vhost %s): publishing "
				    "with confirms%s%s",
				    a->where, a->vhost,
				    a->neps ? ", consuming " : "",
				    a->neps ? a->eps[0].queue : "");
			}
			ever = true;
			attempts = 0;
			backoff = 0;
			set_state(a, true, "");
			continue;
		}
		conn_close(a, a->graceful, MS_EUNAVAIL);
		if (attempts++ == 0) {
			MS_WARN(
			    "amqp",
			    "cannot connect to %s: %s; retrying (backoff up "
			    "to %d ms)",
			    a->where, a->why, a->reconnect_max_ms);
		} else {
			MS_DEBUG("amqp", "connect attempt %d to %s: %s",
			         attempts, a->where, a->why);
		}
		set_state(a, false, a->why);
		backoff = backoff ? backoff * 2 : BACKOFF_MIN_MS;
		if (backoff > a->reconnect_max_ms) {
			backoff = a->reconnect_max_ms;
		}
		next_try = ms_now_ms() + backoff_ms(a, backoff);
		queue_fail(a, MS_EUNAVAIL);
	}
	shutdown_conn(a);
	queue_fail(a, MS_ECLOSED);
	return NULL;
}

/* ---- ops ---------------------------------------------------------------- */

static void
priv_free(struct broker *a)
{
	free(a->urlbuf);
	free(a->queue);
	free(a->recs);
	free(a->fwds);
	free(a->batch_tags);
	a->batch_tags = NULL;
	a->urlbuf = NULL;
	a->queue = NULL;
	a->recs = NULL;
	a->fwds = NULL;
}

static int
broker_init(struct bus_transport *t, const char *url,
            const struct ms_config *cfg)
{
	struct broker *a = tp_priv(t);
	size_t batch;

	memset(a, 0, sizeof(*a));
	a->t = t;
	a->wakefd = -1;
	if (url == NULL) {
		return MS_EINVAL; /* no serving instance: we only connect */
	}
	/* amqp_parse_url cuts its argument into the pieces |ci| points to. */
	if ((a->urlbuf = strdup(url)) == NULL) {
		return MS_ENOMEM;
	}
	if (amqp_parse_url(a->urlbuf, &a->ci) != AMQP_STATUS_OK || a->ci.ssl) {
		MS_ERROR("amqp",
		         "events.broker: expected amqp://user:pass@host:port/"
		         "vhost");
		priv_free(a);
		return MS_EINVAL;
	}
	a->vhost = a->ci.vhost && a->ci.vhost[0] ? a->ci.vhost : "/";
	snprintf(a->where, sizeof(a->where), "amqp://%s:%d", a->ci.host,
	         a->ci.port);
	/* MassTransit's addresses omit port 5672 and vhost "/" (§3.1). */
	snprintf(a->base, sizeof(a->base), "rabbitmq://%s", a->ci.host);
	if (a->ci.port != 5672) {
		size_t n = strlen(a->base);

		snprintf(a->base + n, sizeof(a->base) - n, ":%d", a->ci.port);
	}
	strncat(a->base, "/", sizeof(a->base) - strlen(a->base) - 1);
	if (strcmp(a->vhost, "/") != 0) {
		size_t n = strlen(a->base);

		snprintf(a->base + n, sizeof(a->base) - n, "%s/", a->vhost);
	}
	if (gethostname(a->machine, sizeof(a->machine)) != 0) {
		snprintf(a->machine, sizeof(a->machine), "localhost");
	}
	a->machine[sizeof(a->machine) - 1] = '\0';
	a->pid = (int)getpid();
	snprintf(a->source, sizeof(a->source), "%s%s_%s_bus", a->base,
	         a->machine, PROCESS_NAME);
	snprintf(a->conn_name, sizeof(a->conn_name), "%s %s:%d", PROCESS_NAME,
	         a->machine, a->pid);

	a->prefetch = (int)ms_config_int(cfg, "events.prefetch");
	a->heartbeat_s = (int)ms_config_int(cfg, "events.heartbeat_s");
	a->confirm_timeout_ms =
	    (int)ms_config_int(cfg, "events.confirm_timeout_ms");
	a->connect_timeout_ms =
	    (int)ms_config_int(cfg, "events.connect_timeout_ms");
	a->reconnect_max_ms =
	    (int)ms_config_int(cfg, "events.reconnect_max_ms");
	if (a->reconnect_max_ms < BACKOFF_MIN_MS) {
		a->reconnect_max_ms = BACKOFF_MIN_MS;
	}
	a->max_redeliveries =
	    (unsigned)ms_config_int(cfg, "events.max_redeliveries");
	a->max_message = (uint64_t)ms_config_int(cfg, "events.max_message");

	for (size_t i = 0; i < MS_ARRAY_SIZE(endpoint_defs); i++) {
		struct endpoint *ep = &a->eps[a->neps];

		if (!bus_has_subscriber(t->bus, endpoint_defs[i].type) ||
		    tp_amqp_exchange_for(endpoint_defs[i].type) == NULL) {
			continue;
		}
		ep->type = endpoint_defs[i].type;
		ep->exchange = tp_amqp_exchange_for(ep->type);
		ep->queue = endpoint_defs[i].queue;
		ep->consumer = endpoint_defs[i].consumer;
		snprintf(ep->error, sizeof(ep->error), "%s_error", ep->queue);
		snprintf(ep->skipped, sizeof(ep->skipped), "%s_skipped",
		         ep->queue);
		snprintf(ep->input, sizeof(ep->input), "%s%s", a->base,
		         ep->queue);
		a->neps++;
	}

	/* Bounded: at least two relay rounds queued; the ring holds what
	 * can be unconfirmed at once (queue + moves, at most prefetch). */
	batch = (size_t)ms_config_int(cfg, "events.relay_batch");
	a->qcap = 2 * (batch > 0 ? batch : 64);
	a->nfwd = (size_t)a->prefetch;
	a->rcap = a->qcap + a->nfwd;
	a->queue = calloc(a->qcap, sizeof(*a->queue));
	a->recs = calloc(a->rcap, sizeof(*a->recs));
	a->fwds = calloc(a->nfwd, sizeof(*a->fwds));
	a->batch_tags = calloc(a->nfwd, sizeof(*a->batch_tags));
	a->batch_max = BATCH_MAX(a->prefetch);
	a->unacked_min = UINT64_MAX;
	if (a->queue == NULL || a->recs == NULL || a->fwds == NULL ||
	    a->batch_tags == NULL) {
		priv_free(a);
		return MS_ENOMEM;
	}
	a->next_seq = a->head_seq = 1;
	a->rnd = (uint64_t)ms_now_us() ^ ((uint64_t)a->pid << 32) ^ 1;
	init_amqp_pool(&a->cret.pool, 1024);
	init_amqp_pool(&a->cdel.pool, 4096);
	pthread_mutex_init(&a->mtx, NULL);
	snprintf(a->state, sizeof(a->state), "not connected yet");
	return 0;
}

static int
broker_start(struct bus_transport *t)
{
	struct broker *a = tp_priv(t);
	int rc;

	a->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (a->wakefd < 0) {
		return -errno;
	}
	if ((rc = pthread_create(&a->thread, NULL, run, a)) != 0) {
		close(a->wakefd);
		a->wakefd = -1;
		return -rc;
	}
	pthread_mutex_lock(&a->mtx);
	a->running = true;
	pthread_mutex_unlock(&a->mtx);
	return 0;
}

static void
broker_stop(struct bus_transport *t)
{
	struct broker *a = tp_priv(t);
	bool running;

	pthread_mutex_lock(&a->mtx);
	a->closing = true;
	running = a->running;
	a->running = false;
	pthread_mutex_unlock(&a->mtx);
	if (!running) {
		return;
	}
	atomic_store(&a->stopping, true);
	wake(a);
	pthread_join(a->thread, NULL);
	close(a->wakefd);
	a->wakefd = -1;
}

/* Consuming stops on the AMQP thread (librabbitmq is not thread safe):
 * ask, wake it, return. A publisher-only instance has nothing to stop. */
static void
broker_quiesce(struct bus_transport *t)
{
	struct broker *a = tp_priv(t);

	if (a->neps == 0 || atomic_exchange(&a->quiesce, true)) {
		return;
	}
	pthread_mutex_lock(&a->mtx);
	if (a->running) {
		wake(a); /* under the lock: see broker_publish */
	}
	pthread_mutex_unlock(&a->mtx);
}

static void
broker_fini(struct bus_transport *t)
{
	struct broker *a = tp_priv(t);

	if (a->queue == NULL) {
		return; /* init failed: nothing else exists */
	}
	empty_amqp_pool(&a->cret.pool);
	empty_amqp_pool(&a->cdel.pool);
	pthread_mutex_destroy(&a->mtx);
	priv_free(a);
}

static int
broker_publish(struct bus_transport *t, struct bus_event *ev)
{
	struct broker *a = tp_priv(t);
	int rc = 0;

	pthread_mutex_lock(&a->mtx);
	if (a->closing || !a->running) {
		rc = MS_ECLOSED;
	} else if (a->qcount == a->qcap) {
		rc = MS_EFULL;
	} else {
		if (a->qcount == 0) {
			a->qsince = ms_now_ms();
		}
		a->queue[(a->qhead + a->qcount) % a->qcap] = ev;
		a->qcount++;
	}
	if (rc == 0) {
		/* Under the lock: stop closes the eventfd only after it has
		 * seen running = false, so this never writes to a closed (or
		 * reused) descriptor. */
		wake(a);
	}
	pthread_mutex_unlock(&a->mtx);
	return rc;
}

static int
broker_health(struct bus_transport *t, char *desc, size_t desclen)
{
	struct broker *a = tp_priv(t);
	int rc = 0;

	pthread_mutex_lock(&a->mtx);
	if (a->ready && a->blocked) {
		snprintf(desc, desclen, "%s: %s", a->where, a->state);
		rc = MS_EBUSY;
	} else if (a->ready) {
		snprintf(desc, desclen, "connected to %s", a->where);
	} else {
		snprintf(desc, desclen, "connecting to %s: %s", a->where,
		         a->state);
		rc = MS_EUNAVAIL;
	}
	pthread_mutex_unlock(&a->mtx);
	return rc;
}

const struct bus_transport_ops tp_amqp_ops = {
    .scheme = "amqp",
    .caps = BUS_CAP_EVENTS,
    .priv_size = sizeof(struct broker),
    .listen_key = NULL,
    .init = broker_init,
    .start = broker_start,
    .quiesce = broker_quiesce,
    .stop = broker_stop,
    .fini = broker_fini,
    .call = NULL,
    .publish = broker_publish,
    .health = broker_health,
};
