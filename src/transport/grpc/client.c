/* SPDX-License-Identifier: MIT */
/*
 * The gRPC client (see client.h): unary calls to one remote endpoint over
 * one multiplexed h2c connection, with a deadline on every call, retries
 * only where the call was certainly not processed, grpc-retry-pushback-ms,
 * a circuit breaker and optional keepalive PINGs.
 *
 * The HTTP/2 work is an nghttp2 client session fed with mem_recv and
 * drained with mem_send; bytes and timers come from loop.h, so this file
 * does no I/O of its own. The gRPC rules it applies are
 * ../shared/reference/wire.md §1 (framing §1.3, response shapes §1.4,
 * status mapping §1.6, deadlines §1.7, retries §1.12, keepalive §1.13).
 *
 * Objects and owners:
 *   struct call  one bus_call from tp_grpc_client_call to its completion,
 *                across every attempt. Owned by the client (cl->calls)
 *                once the loop picked it up; freed by call_finish.
 *   struct strm  one attempt = one HTTP/2 stream. Owned by its connection
 *                (cn->strms) and registered as the nghttp2 stream user
 *                data; freed when nghttp2 closes the stream or when the
 *                connection goes. A call and its current strm point at
 *                each other; strm_detach cuts the link, so a strm can
 *                outlive its call (RST_STREAM still to be sent) and a call
 *                can outlive a strm (waiting to retry).
 *   struct conn  one TCP connection + nghttp2 session. Owned by the client
 *                (cl->conns); freed in on_close, the loop's last word.
 *
 * Threads: tp_grpc_client_create/destroy run on the main thread;
 * tp_grpc_client_call and tp_grpc_client_health on any thread. Everything
 * else runs on the client's loop thread, which alone touches calls,
 * streams, connections, the breaker and the random state. The health
 * snapshot (|hmtx|) and |closing| (atomic) are the only shared state.
 *
 * Rule that keeps nghttp2 sane: functions reached from nghttp2 callbacks
 * never call nghttp2_session_mem_send (no re-entry) and never start a new
 * attempt synchronously (retries go through a timer, even with no wait).
 * Only the loop's entry points (posts, timers, on_open, on_read,
 * on_writable) flush a session.
 */
#include "transport/grpc/client.h"

#include <assert.h>
#include <inttypes.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "transport/grpc/breaker.h"
#include "transport/grpc/loop.h"
#include "transport/grpc/wire.h"
#include "transport/transport.h"

#define SUB "grpc-client"

#define USER_AGENT "grpc-c-monoshop/0.1"
/* Keepalive: how long a PING may go unanswered (A8 default). */
#define KEEPALIVE_TIMEOUT_MS 20000
/* Response header and trailer blocks are capped at 8 KiB each (wire.md
 * §1.2), counted like SETTINGS_MAX_HEADER_LIST_SIZE. */
#define MAX_HEADER_BLOCK 8192
/* Before the server's SETTINGS arrive, assume what RFC 9113 recommends
 * as the minimum rather than "unlimited". */
#define PEER_MAX_STREAMS 100
/* A6 caps maxAttempts at 5; a larger configured value is honoured up to
 * this bound so the retry loop stays short whatever the config says. */
#define MAX_ATTEMPTS_CAP 10
/* Error texts kept for health; details cut a long target to 96 bytes. */
#define ERRLEN 160
/* Health probes (probe_start): at most one per this many ms. */
#define PROBE_EVERY_MS 1000
#define PROBE_SERVICE  "grpc.health.v1.Health"

struct tp_grpc_client;
struct conn;

/* What an attempt's end means for the breaker. */
enum verdict {
	V_NEUTRAL, /* tells nothing about the endpoint */
	V_SUCCESS, /* the server answered with a grpc-status */
	V_FAILURE, /* cannot connect, UNAVAILABLE, deadline with no answer */
};

/* Whether an attempt may be retried: never when the server may have
 * processed it. */
enum retry {
	R_NO,
	R_BACKOFF, /* after the backoff (or the server's pushback) */
	R_NOW,     /* transparent: refused by GOAWAY, try the new connection */
};

struct outcome {
	int rc;     /* MS_E* or 0 */
	int status; /* gRPC status, for the metric */
	enum verdict verdict;
	enum retry retry;
	bool pushback; /* pushback_ms came from the server */
	int64_t pushback_ms;
	uint8_t *reply; /* rc 0: malloc'd, handed to the bus */
	size_t reply_len;
	char detail[BUS_DETAIL_LEN];
};

struct call {
	struct tp_grpc_client *cl;
	struct bus_call *bc;      /* borrowed until completion */
	struct call *prev, *next; /* cl->calls */
	struct strm *strm;        /* current attempt, or NULL */
	int attempts;             /* attempts started */
	bool linked;              /* on cl->calls */
	bool probe;               /* holds the breaker's half-open probe */
	bool transparent;         /* used its one transparent retry */
	struct tp_grpc_timer deadline;
	struct tp_grpc_timer retry;
};

struct strm {
	struct conn *cn;
	struct call *call;        /* NULL once detached */
	struct strm *prev, *next; /* cn->strms */
	int32_t id;               /* nghttp2 stream id */
	uint8_t prefix[TP_GRPC_PREFIX_LEN];
	size_t off;  /* request bytes handed to nghttp2 */
	bool sent;   /* request HEADERS went out */
	bool closed; /* nghttp2 closed the stream */
	bool ended;  /* the server's END_STREAM arrived (strm_end) */
	/* the response */
	int blk_status;   /* :status of the current block */
	size_t blk_bytes; /* size of the current block */
	int http_status;  /* final :status */
	bool got_headers; /* Response-Headers (not Trailers-Only) */
	bool ct_bad;      /* content-type is not gRPC's */
	bool have_status;
	int grpc_status;
	bool have_pushback;
	int pushback_rc;
	int64_t pushback_ms;
	char msg[BUS_DETAIL_LEN]; /* grpc-message, decoded */
	struct tp_grpc_reader rd;
	uint8_t *reply; /* first message (malloc'd, owned) */
	size_t reply_len;
	size_t nmsgs;
};

struct conn {
	struct tp_grpc_client *cl;
	struct tp_grpc_conn *tc;  /* NULL once closed */
	nghttp2_session *h2;      /* owned */
	struct conn *prev, *next; /* cl->conns */
	struct strm *strms;       /* streams nghttp2 still knows */
	bool opened;              /* TCP connect succeeded */
	bool dead;                /* on_close runs: no more nghttp2 */
	bool retired;             /* no new streams (GOAWAY, ids out) */
	bool goaway;
	int32_t goaway_last; /* GOAWAY's last-stream-id */
	int open_rc;         /* connect outcome when it failed */
	/* keepalive */
	struct tp_grpc_timer ka;
	int64_t last_read_ms;
	int64_t ka_base_ms; /* quiet since max(last read, this) */
	bool ping_out;
	int64_t ping_sent_ms;
};

/* What tp_grpc_client_health reads from other threads. */
struct snapshot {
	enum tp_grpc_breaker_state state;
	bool connecting;
	bool connected;   /* new streams have an open connection */
	bool ever;        /* a connection was open once */
	bool failed;      /* the last attempt failed */
	char err[ERRLEN]; /* why */
};

struct tp_grpc_client {
	struct tp_grpc_client_opts opts; /* host points at |host| */
	char host[256];
	char target[300];               /* "host:port" (":authority", logs) */
	char labels[320];               /* target="host:port" */
	struct tp_grpc_loop *loop;      /* owned */
	nghttp2_session_callbacks *cbs; /* owned, shared by the sessions */
	nghttp2_option *h2opt;          /* owned */
	atomic_bool closing;
	/* loop thread only */
	struct conn *cur; /* where new streams go, or NULL */
	struct conn *conns;
	struct call *calls;
	struct tp_grpc_breaker br;
	uint32_t rnd;     /* xorshift32 state, never 0 */
	int keepalive_ms; /* doubled on too_many_pings */
	bool failed;
	char err[ERRLEN]; /* the last failure */
	bool ever;        /* a connection was open once */
	/* shared */
	pthread_mutex_t hmtx;
	struct snapshot snap;
	bool gauge;                   /* breaker gauge registered */
	atomic_bool probing;          /* a health probe is in flight */
	atomic_int_fast64_t probe_ms; /* when the last one started */
};

static void attempt_start(struct call *k);
static void conn_flush(struct conn *cn);

/* ---- small helpers ------------------------------------------------------ */

static uint32_t
rnd_next(struct tp_grpc_client *cl)
{
	uint32_t x = cl->rnd;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	cl->rnd = x;
	return x;
}

static bool
hdr_is(const uint8_t *name, size_t len, const char *lit)
{
	return len == strlen(lit) && memcmp(name, lit, len) == 0;
}

static void
health_update(struct tp_grpc_client *cl)
{
	pthread_mutex_lock(&cl->hmtx);
	cl->snap.state = cl->br.state;
	cl->snap.connecting = cl->cur != NULL && !cl->cur->opened;
	cl->snap.connected = cl->cur != NULL && cl->cur->opened;
	cl->snap.ever = cl->ever;
	cl->snap.failed = cl->failed;
	ms_strlcpy(cl->snap.err, cl->err, sizeof(cl->snap.err));
	pthread_mutex_unlock(&cl->hmtx);
}

static double
breaker_gauge(void *arg)
{
	struct tp_grpc_client *cl = arg;
	double v;

	pthread_mutex_lock(&cl->hmtx);
	v = (double)cl->snap.state;
	pthread_mutex_unlock(&cl->hmtx);
	return v;
}

static void
count_attempt(struct tp_grpc_client *cl, int status)
{
	char labels[400];

	snprintf(labels, sizeof(labels), "%s,code=\"%s\"", cl->labels,
	         tp_grpc_status_name(status));
	ms_metrics_count("monoshop_grpc_client_attempts_total", labels, 1);
}

/* ---- breaker bookkeeping ------------------------------------------------ */

static void
note_failure(struct tp_grpc_client *cl, const char *why)
{
	enum tp_grpc_breaker_state before = cl->br.state;

	tp_grpc_breaker_failure(&cl->br, ms_now_ms());
	cl->failed = true;
	ms_strlcpy(cl->err, why, sizeof(cl->err));
	if (before != TP_GRPC_BREAKER_OPEN &&
	    cl->br.state == TP_GRPC_BREAKER_OPEN) {
		MS_WARN(SUB, "%s: circuit open for %d ms after %d failures: %s",
		        cl->target, cl->br.open_ms, cl->br.failures, why);
	}
}

static void
note_success(struct tp_grpc_client *cl)
{
	if (cl->br.state != TP_GRPC_BREAKER_CLOSED) {
		MS_INFO(SUB, "%s: circuit closed, the server answers again",
		        cl->target);
	}
	tp_grpc_breaker_success(&cl->br);
	cl->failed = false;
	cl->err[0] = '\0';
}

/* ---- calls -------------------------------------------------------------- */

static void
strm_free(struct strm *s)
{
	tp_grpc_reader_fini(&s->rd);
	free(s->reply);
	free(s);
}

/*
 * strm_detach cuts the call from its stream. If nghttp2 still has the
 * stream open on our side, it is reset: CANCEL when we give up on it,
 * NO_ERROR when the server already ended its side (wire.md §1.4: the
 * client follows an early end with RST_STREAM). A stream whose HEADERS
 * are still queued is cancelled before it goes out.
 */
static void
strm_detach(struct strm *s)
{
	struct conn *cn = s->cn;

	if (s->call) {
		s->call->strm = NULL;
		s->call = NULL;
	}
	if (!cn->dead && !s->closed && s->id > 0) {
		/* 1 closed, 0 open, -1 not open yet (HEADERS queued). */
		int local =
		    nghttp2_session_get_stream_local_close(cn->h2, s->id);
		/*
		 * strm_end runs inside nghttp2's on_frame_recv, before
		 * nghttp2 itself half-closes the remote side, so it would
		 * still say "open" here: without |ended| every call that
		 * ended normally was followed by a RST_STREAM(CANCEL), and
		 * a server with nghttp2's stream-reset rate limit (>= 1.57,
		 * Debian's 1.52 too) answered GOAWAY(INTERNAL_ERROR) after
		 * 1000 calls (found by bench/bus_bench).
		 */
		int remote = s->ended ? 1
		                      : nghttp2_session_get_stream_remote_close(
		                            cn->h2, s->id);

		if (local != 1 || remote != 1) {
			nghttp2_submit_rst_stream(
			    cn->h2, NGHTTP2_FLAG_NONE, s->id,
			    remote == 1 ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL);
		}
	}
}

/*
 * call_finish completes the call with |rc| and frees it; |reply| (rc 0)
 * goes to the bus. The bus_call must not be touched afterwards: it may
 * live on the caller's stack.
 */
static void
call_finish(struct call *k, int rc, const char *detail, uint8_t *reply,
            size_t reply_len)
{
	struct tp_grpc_client *cl = k->cl;
	struct bus_call *bc = k->bc;

	tp_grpc_timer_stop(cl->loop, &k->deadline);
	tp_grpc_timer_stop(cl->loop, &k->retry);
	if (k->strm) {
		strm_detach(k->strm);
	}
	if (k->linked) {
		if (k->prev) {
			k->prev->next = k->next;
		} else {
			cl->calls = k->next;
		}
		if (k->next) {
			k->next->prev = k->prev;
		}
	}
	/* A probe that ended without a verdict frees the slot at once. */
	if (k->probe && cl->br.state == TP_GRPC_BREAKER_HALF_OPEN) {
		tp_grpc_breaker_release(&cl->br);
	}
	free(k);
	bc->rc = rc;
	bc->reply = rc == 0 ? reply : NULL;
	bc->reply_len = rc == 0 ? reply_len : 0;
	if (rc != 0) {
		free(reply);
		ms_strlcpy(bc->detail,
		           detail && detail[0] ? detail : ms_strerror(rc),
		           sizeof(bc->detail));
	} else {
		bc->detail[0] = '\0';
	}
	bus_call_complete(bc);
}

static void
retry_fire(void *arg)
{
	attempt_start(arg);
}

/*
 * attempt_end applies an attempt's outcome: breaker, metrics, then either
 * a retry (timer; never synchronous, see the file comment) or the call's
 * completion. The call must already be detached from its stream.
 */
static void
attempt_end(struct call *k, struct outcome *o)
{
	struct tp_grpc_client *cl = k->cl;
	int64_t now = ms_now_ms();
	int64_t wait;

	assert(k->strm == NULL);
	count_attempt(cl, o->status);
	if (o->verdict == V_FAILURE) {
		note_failure(cl, o->detail);
	} else if (o->verdict == V_SUCCESS) {
		note_success(cl);
	}
	health_update(cl);
	if (o->retry == R_NO || atomic_load(&cl->closing)) {
		goto done;
	}
	/* A6: a call refused by GOAWAY never reached the application, so
	 * it gets one retry beyond the policy (even with retries off). */
	if (o->retry == R_NOW && !k->transparent) {
		k->transparent = true;
	} else if (k->attempts >= cl->opts.retry_max_attempts) {
		goto done;
	}
	if (o->pushback) {
		wait = o->pushback_ms; /* exactly what the server asked */
	} else if (o->retry == R_NOW) {
		wait = 0;
	} else {
		wait = tp_grpc_backoff_ms(
		    k->attempts, cl->opts.retry_backoff_ms,
		    cl->opts.retry_backoff_max_ms, rnd_next(cl));
	}
	/* The deadline spans every attempt: a retry that could only start
	 * after it is no retry; the call fails with this attempt's error. */
	if (k->bc->deadline_ms > 0 && now + wait >= k->bc->deadline_ms) {
		goto done;
	}
	MS_DEBUG(SUB, "%s: retrying /%s/%s in %" PRId64 " ms (attempt %d): %s",
	         cl->target, k->bc->service, k->bc->method, wait,
	         k->attempts + 1, o->detail);
	ms_metrics_count("monoshop_grpc_client_retries_total", cl->labels, 1);
	free(o->reply);
	tp_grpc_timer_start(cl->loop, &k->retry, now + wait, retry_fire, k);
	return;
done:
	call_finish(k, o->rc, o->detail, o->reply, o->reply_len);
}

static void
outcome_init(struct outcome *o, int rc, int status, enum verdict v,
             enum retry r)
{
	memset(o, 0, sizeof(*o));
	o->rc = rc;
	o->status = status;
	o->verdict = v;
	o->retry = r;
}

/* strm_fail ends the attempt on |s| at once with our own finding (reply
 * too large, malformed response): not retried, no breaker verdict. */
static void
strm_fail(struct strm *s, int rc, int status, const char *detail)
{
	struct call *k = s->call;
	struct outcome o;

	outcome_init(&o, rc, status, V_NEUTRAL, R_NO);
	ms_strlcpy(o.detail, detail, sizeof(o.detail));
	strm_detach(s);
	attempt_end(k, &o);
}

/*
 * strm_end runs when the server ended the stream (END_STREAM on trailers,
 * on Trailers-Only, or on DATA) and turns what came into the call's
 * result (wire.md §1.4-§1.6).
 */
static void
strm_end(struct strm *s)
{
	struct call *k = s->call;
	struct outcome o;

	s->ended = true;
	/* Not a gRPC answer (a proxy's error page, say): its grpc-status,
	 * if any, means nothing; the HTTP status decides (wire.md §1.6). */
	if (s->have_status && !s->ct_bad) {
		int st = s->grpc_status;

		outcome_init(&o, 0, st,
		             st == TP_GRPC_UNAVAILABLE ? V_FAILURE : V_SUCCESS,
		             R_NO);
		if (st == TP_GRPC_OK) {
			if (s->nmsgs == 1 && !tp_grpc_reader_partial(&s->rd)) {
				o.reply = s->reply;
				o.reply_len = s->reply_len;
				s->reply = NULL;
			} else {
				/* A unary call has exactly one reply. */
				o.rc = MS_EPROTO;
				o.status = TP_GRPC_UNIMPLEMENTED;
				snprintf(o.detail, sizeof(o.detail),
				         "OK status with %zu%s reply messages",
				         s->nmsgs,
				         tp_grpc_reader_partial(&s->rd)
				             ? " and a truncated"
				             : "");
			}
		} else {
			o.rc = ms_err_from_grpc(st);
			snprintf(o.detail, sizeof(o.detail), "%s",
			         s->msg[0] ? s->msg : tp_grpc_status_name(st));
		}
		/*
		 * UNAVAILABLE as Trailers-Only means the server refused the
		 * call before any handler wrote a response (gRFC A6): safe to
		 * retry. Response-Headers first means it was committed.
		 */
		if (st == TP_GRPC_UNAVAILABLE && !s->got_headers) {
			o.retry = R_BACKOFF;
			if (s->have_pushback) {
				if (s->pushback_rc == 0) {
					o.pushback = true;
					o.pushback_ms = s->pushback_ms;
				} else {
					o.retry = R_NO; /* "do not retry" */
				}
			}
		}
	} else {
		int st = tp_grpc_status_from_http(s->http_status);

		outcome_init(&o, ms_err_from_grpc(st), st,
		             st == TP_GRPC_UNAVAILABLE ? V_FAILURE : V_NEUTRAL,
		             R_NO);
		if (o.rc == 0) {
			o.rc = MS_EPROTO;
		}
		snprintf(o.detail, sizeof(o.detail), "HTTP %d response %s",
		         s->http_status,
		         s->ct_bad ? "with a non-gRPC content-type"
		                   : "without grpc-status");
	}
	strm_detach(s);
	attempt_end(k, &o);
}

/* ---- nghttp2 callbacks (loop thread, inside mem_recv / mem_send) -------- */

static struct strm *
strm_of(nghttp2_session *h2, int32_t id)
{
	struct strm *s = nghttp2_session_get_stream_user_data(h2, id);

	return s != NULL && s->call != NULL ? s : NULL;
}

static ssize_t
req_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
         uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct strm *s = src->ptr;
	const struct bus_call *bc;
	size_t total, n = 0;

	(void)h2;
	(void)id;
	(void)user;
	/* Detached: the request bytes belong to a completed call. The
	 * stream is being reset; make sure nothing more goes out. */
	if (s->call == NULL) {
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	bc = s->call->bc;
	total = TP_GRPC_PREFIX_LEN + bc->req_len;
	while (n < len && s->off < total) {
		size_t k;

		if (s->off < TP_GRPC_PREFIX_LEN) {
			k = TP_GRPC_PREFIX_LEN - s->off;
			if (k > len - n) {
				k = len - n;
			}
			memcpy(buf + n, s->prefix + s->off, k);
		} else {
			size_t at = s->off - TP_GRPC_PREFIX_LEN;

			k = bc->req_len - at;
			if (k > len - n) {
				k = len - n;
			}
			memcpy(buf + n, bc->req + at, k);
		}
		n += k;
		s->off += k;
	}
	if (s->off == total) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	}
	return (ssize_t)n;
}

static int
on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct strm *s = strm_of(h2, frame->hd.stream_id);

	(void)user;
	if (s != NULL) {
		s->blk_status = 0;
		s->blk_bytes = 0;
	}
	return 0;
}

static int
on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
          size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
          void *user)
{
	struct strm *s = strm_of(h2, frame->hd.stream_id);

	(void)flags;
	(void)user;
	if (s == NULL || frame->hd.type != NGHTTP2_HEADERS) {
		return 0;
	}
	s->blk_bytes += namelen + valuelen + 32;
	if (s->blk_bytes > MAX_HEADER_BLOCK) {
		strm_fail(s, MS_EPROTO, TP_GRPC_INTERNAL,
		          "response header block over 8 KiB");
		return 0;
	}
	if (hdr_is(name, namelen, ":status")) {
		/* nghttp2 checked it is three digits. */
		s->blk_status = (value[0] - '0') * 100 + (value[1] - '0') * 10 +
		                (value[2] - '0');
	} else if (hdr_is(name, namelen, "content-type")) {
		s->ct_bad =
		    !tp_grpc_content_type_ok((const char *)value, valuelen);
	} else if (hdr_is(name, namelen, "grpc-status")) {
		int st;

		/* An unparsable status is UNKNOWN (statuscodes.md). */
		s->have_status = true;
		s->grpc_status = tp_grpc_status_parse((const char *)value,
		                                      valuelen, &st) == 0
		                     ? st
		                     : TP_GRPC_UNKNOWN;
	} else if (hdr_is(name, namelen, "grpc-message")) {
		tp_grpc_percent_decode((const char *)value, valuelen, s->msg,
		                       sizeof(s->msg));
	} else if (hdr_is(name, namelen, "grpc-retry-pushback-ms")) {
		s->have_pushback = true;
		s->pushback_rc = tp_grpc_pushback_parse(
		    (const char *)value, valuelen, &s->pushback_ms);
	}
	return 0;
}

static void
on_goaway(struct conn *cn, const nghttp2_goaway *ga)
{
	struct tp_grpc_client *cl = cn->cl;

	cn->goaway = true;
	cn->goaway_last = ga->last_stream_id;
	cn->retired = true;
	if (cl->cur == cn) {
		cl->cur = NULL;
	}
	/* A8: a client told off for pinging too often pings half as often
	 * on its next connections. */
	if (ga->error_code == NGHTTP2_ENHANCE_YOUR_CALM &&
	    ga->opaque_data_len == strlen("too_many_pings") &&
	    memcmp(ga->opaque_data, "too_many_pings", ga->opaque_data_len) ==
	        0 &&
	    cl->keepalive_ms > 0 && cl->keepalive_ms < INT32_MAX / 2) {
		cl->keepalive_ms *= 2;
		MS_WARN(SUB, "%s: too_many_pings, keepalive now %d ms",
		        cl->target, cl->keepalive_ms);
	}
	MS_DEBUG(SUB, "%s: GOAWAY (%s, last stream %d)", cl->target,
	         nghttp2_http2_strerror(ga->error_code), ga->last_stream_id);
}

static int
on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct conn *cn = user;
	struct strm *s;

	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		if ((s = strm_of(h2, frame->hd.stream_id)) == NULL) {
			return 0;
		}
		if (s->blk_status >= 100 && s->blk_status < 200) {
			return 0; /* informational: skip (wire.md §1.6) */
		}
		if (s->blk_status != 0) {
			s->http_status = s->blk_status;
			/* Response-Headers, unless this very block ends the
			 * stream (Trailers-Only). */
			if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
				s->got_headers = true;
			}
		}
		if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
			strm_end(s);
		}
		break;
	case NGHTTP2_DATA:
		if ((s = strm_of(h2, frame->hd.stream_id)) != NULL &&
		    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
			strm_end(s);
		}
		break;
	case NGHTTP2_GOAWAY:
		on_goaway(cn, &frame->goaway);
		break;
	default:
		break;
	}
	return 0;
}

static int
on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id,
              const uint8_t *data, size_t len, void *user)
{
	struct strm *s = strm_of(h2, id);

	(void)flags;
	(void)user;
	if (s == NULL) {
		return 0;
	}
	while (len > 0) {
		uint8_t *msg;
		size_t msglen, used;
		int rc = tp_grpc_reader_feed(&s->rd, data, len, &used, &msg,
		                             &msglen);
		char why[96];

		if (rc < 0) {
			if (rc == MS_ETOOBIG) {
				snprintf(why, sizeof(why),
				         "reply larger than %zu bytes",
				         s->rd.max_message);
				strm_fail(s, MS_ETOOBIG,
				          TP_GRPC_RESOURCE_EXHAUSTED, why);
			} else if (rc == MS_ENOMEM) {
				strm_fail(s, MS_ENOMEM,
				          TP_GRPC_RESOURCE_EXHAUSTED,
				          "out of memory reading the reply");
			} else {
				/* We never send grpc-accept-encoding, so a
				 * compressed reply is the server's error. */
				strm_fail(s, MS_EPROTO, TP_GRPC_INTERNAL,
				          rc == MS_ENOTSUP
				              ? "compressed reply without "
				                "grpc-encoding"
				              : "malformed reply framing");
			}
			return 0;
		}
		data += used;
		len -= used;
		if (rc == 0) {
			break;
		}
		s->nmsgs++;
		if (s->reply == NULL) {
			s->reply = msg;
			s->reply_len = msglen;
		} else {
			free(msg); /* counted: strm_end rejects 2+ */
		}
	}
	return 0;
}

static int
on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct strm *s;

	(void)user;
	if (frame->hd.type == NGHTTP2_HEADERS &&
	    (s = nghttp2_session_get_stream_user_data(h2,
	                                              frame->hd.stream_id))) {
		/* From here on the server may process the call: a broken
		 * connection no longer allows a retry. */
		s->sent = true;
	}
	return 0;
}

static int
on_stream_close(nghttp2_session *h2, int32_t id, uint32_t code, void *user)
{
	struct conn *cn = user;
	struct strm *s = nghttp2_session_get_stream_user_data(h2, id);

	if (cn->dead || s == NULL) {
		return 0;
	}
	s->closed = true;
	if (s->call) {
		/* Closed without the server ending it: reset by the server,
		 * refused, or beyond a GOAWAY's last stream. */
		struct call *k = s->call;
		struct outcome o;

		if (code == NGHTTP2_REFUSED_STREAM && cn->goaway &&
		    id > cn->goaway_last) {
			outcome_init(&o, MS_EUNAVAIL, TP_GRPC_UNAVAILABLE,
			             V_NEUTRAL, R_NOW);
			snprintf(o.detail, sizeof(o.detail),
			         "%.96s is going away (GOAWAY)",
			         cn->cl->target);
		} else if (code == NGHTTP2_REFUSED_STREAM) {
			outcome_init(&o, MS_EUNAVAIL, TP_GRPC_UNAVAILABLE,
			             V_FAILURE, R_BACKOFF);
			snprintf(o.detail, sizeof(o.detail),
			         "%.96s refused the stream", cn->cl->target);
		} else {
			int st = tp_grpc_status_from_rst(code);

			outcome_init(&o, ms_err_from_grpc(st), st, V_NEUTRAL,
			             R_NO);
			/* wire.md §1.7: CANCELLED past our deadline is our
			 * DEADLINE_EXCEEDED. */
			if (st == TP_GRPC_CANCELLED && k->bc->deadline_ms > 0 &&
			    ms_now_ms() >= k->bc->deadline_ms) {
				o.rc = MS_ETIMEDOUT;
				o.status = TP_GRPC_DEADLINE_EXCEEDED;
			}
			snprintf(o.detail, sizeof(o.detail),
			         "stream reset by the server (%s)",
			         nghttp2_http2_strerror(code));
		}
		strm_detach(s);
		attempt_end(k, &o);
	}
	if (s->prev) {
		s->prev->next = s->next;
	} else {
		cn->strms = s->next;
	}
	if (s->next) {
		s->next->prev = s->prev;
	}
	strm_free(s);
	return 0;
}

/* ---- connections -------------------------------------------------------- */

static void
ka_fire(void *arg)
{
	struct conn *cn = arg;
	struct tp_grpc_client *cl = cn->cl;
	int64_t now = ms_now_ms();
	int64_t due;

	if (cn->dead || cn->tc == NULL) {
		return;
	}
	if (cn->ping_out) {
		if (now >= cn->ping_sent_ms + KEEPALIVE_TIMEOUT_MS) {
			MS_WARN(SUB, "%s: no PING ACK within %d ms, closing",
			        cl->target, KEEPALIVE_TIMEOUT_MS);
			tp_grpc_conn_abort(cn->tc, MS_ETIMEDOUT);
			return;
		}
		tp_grpc_timer_start(cl->loop, &cn->ka,
		                    cn->ping_sent_ms + KEEPALIVE_TIMEOUT_MS,
		                    ka_fire, cn);
		return;
	}
	if (cn->strms == NULL) {
		return; /* idle: armed again by the next stream (A8) */
	}
	due = (cn->last_read_ms > cn->ka_base_ms ? cn->last_read_ms
	                                         : cn->ka_base_ms) +
	      cl->keepalive_ms;
	if (now < due) {
		tp_grpc_timer_start(cl->loop, &cn->ka, due, ka_fire, cn);
		return;
	}
	if (nghttp2_submit_ping(cn->h2, NGHTTP2_FLAG_NONE, NULL) != 0) {
		return;
	}
	cn->ping_out = true;
	cn->ping_sent_ms = now;
	tp_grpc_timer_start(cl->loop, &cn->ka, now + KEEPALIVE_TIMEOUT_MS,
	                    ka_fire, cn);
	conn_flush(cn);
}

static void
ka_arm(struct conn *cn)
{
	struct tp_grpc_client *cl = cn->cl;

	if (cl->keepalive_ms <= 0 || !cn->opened || cn->ka.armed) {
		return;
	}
	cn->ka_base_ms = ms_now_ms();
	tp_grpc_timer_start(cl->loop, &cn->ka,
	                    cn->ka_base_ms + cl->keepalive_ms, ka_fire, cn);
}

/*
 * conn_flush hands nghttp2's output to the connection until nghttp2 has
 * nothing more or the write buffer is above the high-water mark (then
 * on_writable calls again), and closes a connection that is done: nghttp2
 * wants neither to read nor to write (after GOAWAY), or retired and idle.
 */
static void
conn_flush(struct conn *cn)
{
	if (cn->dead || cn->tc == NULL || !cn->opened) {
		return;
	}
	/* Every frame nghttp2 has ready goes out in one send(2) (loop.h). */
	tp_grpc_conn_cork(cn->tc);
	while (tp_grpc_conn_pending(cn->tc) < TP_GRPC_CONN_HIGH_WATER) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(cn->h2, &data);

		if (n < 0) {
			MS_WARN(SUB, "%s: nghttp2: %s", cn->cl->target,
			        nghttp2_strerror((int)n));
			tp_grpc_conn_abort(cn->tc, MS_EPROTO);
			return;
		}
		if (n == 0) {
			break;
		}
		if (tp_grpc_conn_write(cn->tc, data, (size_t)n) != 0) {
			tp_grpc_conn_uncork(cn->tc);
			return; /* closing: on_close follows */
		}
	}
	tp_grpc_conn_uncork(cn->tc);
	if ((!nghttp2_session_want_read(cn->h2) &&
	     !nghttp2_session_want_write(cn->h2)) ||
	    (cn->retired && cn->strms == NULL)) {
		tp_grpc_conn_close(cn->tc);
	}
}

static void
conn_on_open(struct tp_grpc_conn *tc, void *arg, int rc)
{
	struct conn *cn = arg;

	cn->tc = tc;
	if (rc != 0) {
		cn->open_rc = rc; /* on_close follows and fails the streams */
		return;
	}
	cn->opened = true;
	cn->cl->ever = true;
	cn->last_read_ms = ms_now_ms();
	MS_DEBUG(SUB, "%s: connected", cn->cl->target);
	health_update(cn->cl);
	if (cn->strms) {
		ka_arm(cn);
	}
	conn_flush(cn);
}

static int
conn_on_read(struct tp_grpc_conn *tc, void *arg, const uint8_t *buf, size_t len)
{
	struct conn *cn = arg;
	ssize_t n;

	(void)tc;
	cn->last_read_ms = ms_now_ms();
	if (cn->ping_out) {
		/* Any bytes prove the peer alive (A8), not only the ACK. */
		cn->ping_out = false;
		if (cn->strms) {
			tp_grpc_timer_start(cn->cl->loop, &cn->ka,
			                    cn->last_read_ms +
			                        cn->cl->keepalive_ms,
			                    ka_fire, cn);
		} else {
			tp_grpc_timer_stop(cn->cl->loop, &cn->ka);
		}
	}
	n = nghttp2_session_mem_recv(cn->h2, buf, len);
	if (n < 0) {
		MS_WARN(SUB, "%s: bad HTTP/2 from the server: %s",
		        cn->cl->target, nghttp2_strerror((int)n));
		return MS_EPROTO;
	}
	conn_flush(cn);
	return 0;
}

static void
conn_on_writable(struct tp_grpc_conn *tc, void *arg)
{
	(void)tc;
	conn_flush(arg);
}

/*
 * conn_on_close is the connection's end: every call still on it ends per
 * the retry rules. Never sent (connect failed, or the HEADERS were still
 * queued): not processed, retried. Sent: the server may have processed
 * it, so UNAVAILABLE without retry (wire.md §1.5).
 */
static void
conn_on_close(struct tp_grpc_conn *tc, void *arg, int rc)
{
	struct conn *cn = arg;
	struct tp_grpc_client *cl = cn->cl;
	int why = cn->opened ? rc : cn->open_rc ? cn->open_rc : rc;

	(void)tc;
	cn->dead = true;
	cn->tc = NULL;
	tp_grpc_timer_stop(cl->loop, &cn->ka);
	if (cl->cur == cn) {
		cl->cur = NULL;
	}
	for (struct strm *s = cn->strms; s; s = s->next) {
		struct call *k = s->call;
		struct outcome o;

		if (k == NULL) {
			continue;
		}
		if (atomic_load(&cl->closing)) {
			outcome_init(&o, MS_ECLOSED, TP_GRPC_UNAVAILABLE,
			             V_NEUTRAL, R_NO);
			snprintf(o.detail, sizeof(o.detail), "client closed");
		} else if (!cn->opened) {
			outcome_init(&o, MS_EUNAVAIL, TP_GRPC_UNAVAILABLE,
			             V_FAILURE, R_BACKOFF);
			snprintf(o.detail, sizeof(o.detail),
			         "cannot connect to %.96s: %s", cl->target,
			         ms_strerror(why));
		} else if (!s->sent) {
			outcome_init(&o, MS_EUNAVAIL, TP_GRPC_UNAVAILABLE,
			             V_FAILURE, R_BACKOFF);
			snprintf(o.detail, sizeof(o.detail),
			         "connection to %.96s lost before the call was "
			         "sent: %s",
			         cl->target, ms_strerror(why));
		} else {
			outcome_init(&o, MS_EUNAVAIL, TP_GRPC_UNAVAILABLE,
			             V_FAILURE, R_NO);
			snprintf(o.detail, sizeof(o.detail),
			         "connection to %.96s lost: %s", cl->target,
			         why == 0 ? "closed" : ms_strerror(why));
		}
		strm_detach(s);
		attempt_end(k, &o);
	}
	nghttp2_session_del(cn->h2);
	while (cn->strms) {
		struct strm *s = cn->strms;

		cn->strms = s->next;
		strm_free(s);
	}
	if (cn->prev) {
		cn->prev->next = cn->next;
	} else {
		cl->conns = cn->next;
	}
	if (cn->next) {
		cn->next->prev = cn->prev;
	}
	MS_DEBUG(SUB, "%s: connection closed (%s)", cl->target,
	         why == 0 ? "done" : ms_strerror(why));
	free(cn);
	health_update(cl);
}

static const struct tp_grpc_conn_ops conn_ops = {
    .on_open = conn_on_open,
    .on_read = conn_on_read,
    .on_writable = conn_on_writable,
    .on_close = conn_on_close,
};

/* conn_new makes the connection new streams go to and starts the connect.
 * Returns 0 (cl->cur set) or a negative code from tp_grpc_connect. */
static int
conn_new(struct tp_grpc_client *cl, struct conn **out)
{
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_BLOCK},
	};
	struct conn *cn = calloc(1, sizeof(*cn));
	int rc;

	if (cn == NULL) {
		return MS_ENOMEM;
	}
	cn->cl = cl;
	if (nghttp2_session_client_new2(&cn->h2, cl->cbs, cn, cl->h2opt) != 0) {
		free(cn);
		return MS_ENOMEM;
	}
	/* The connection preface goes out with this first SETTINGS. */
	if (nghttp2_submit_settings(cn->h2, NGHTTP2_FLAG_NONE, iv,
	                            MS_ARRAY_SIZE(iv)) != 0) {
		nghttp2_session_del(cn->h2);
		free(cn);
		return MS_ENOMEM;
	}
	rc = tp_grpc_connect(cl->loop, cl->host, cl->opts.port,
	                     cl->opts.connect_timeout_ms, &conn_ops, cn,
	                     &cn->tc);
	if (rc != 0) {
		nghttp2_session_del(cn->h2);
		free(cn);
		return rc;
	}
	cn->next = cl->conns;
	if (cl->conns) {
		cl->conns->prev = cn;
	}
	cl->conns = cn;
	cl->cur = cn;
	*out = cn;
	return 0;
}

/* conn_retire stops new streams on |cn|; it closes once idle. */
static void
conn_retire(struct conn *cn)
{
	cn->retired = true;
	if (cn->cl->cur == cn) {
		cn->cl->cur = NULL;
	}
}

/* ---- attempts ----------------------------------------------------------- */

/*
 * strm_submit opens a stream for |k| on |cn|: the request headers in the
 * order of wire.md §1.2 (pseudo-headers, then te, grpc-timeout,
 * content-type, user-agent, then metadata) and the length-prefixed body.
 * Returns 0 or a negative nghttp2 / MS_E* code.
 */
static int
strm_submit(struct conn *cn, struct call *k, int64_t remaining)
{
	struct tp_grpc_client *cl = cn->cl;
	struct bus_call *bc = k->bc;
	char path[512];
	char timeout[16];
	char prev[16];
	nghttp2_nv nv[11];
	size_t n = 0;
	nghttp2_data_provider dp;
	struct strm *s;
	int32_t id;
	int plen;

#define NV(N, V)                                                               \
	nv[n++] = (nghttp2_nv){(uint8_t *)(N), (uint8_t *)(V), strlen(N),      \
	                       strlen(V), NGHTTP2_NV_FLAG_NONE}

	plen = snprintf(path, sizeof(path), "/%s/%s", bc->service, bc->method);
	if (plen < 0 || (size_t)plen >= sizeof(path)) {
		return MS_EINVAL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		return MS_ENOMEM;
	}
	s->cn = cn;
	tp_grpc_reader_init(&s->rd, cl->opts.max_message);
	tp_grpc_frame_header(s->prefix, (uint32_t)bc->req_len);
	NV(":method", "POST");
	NV(":scheme", cl->opts.tls ? "https" : "http");
	NV(":path", path);
	NV(":authority", cl->target);
	NV("te", "trailers");
	if (remaining > 0) {
		NV("grpc-timeout", tp_grpc_timeout_format(remaining, timeout));
	}
	NV("content-type", "application/grpc");
	NV("user-agent", USER_AGENT);
	if (k->attempts > 1) {
		snprintf(prev, sizeof(prev), "%d", k->attempts - 1);
		NV("grpc-previous-rpc-attempts", prev);
	}
	if (bc->traceparent && bc->traceparent[0]) {
		NV("traceparent", bc->traceparent);
	}
#undef NV
	dp.source.ptr = s;
	dp.read_callback = req_read;
	id = nghttp2_submit_request(cn->h2, NULL, nv, n, &dp, s);
	if (id < 0) {
		strm_free(s);
		return id;
	}
	s->id = id;
	s->call = k;
	k->strm = s;
	s->next = cn->strms;
	if (cn->strms) {
		cn->strms->prev = s;
	}
	cn->strms = s;
	return 0;
}

/*
 * attempt_start makes one attempt of |k|: closing and deadline checks,
 * the breaker (refusal is immediate: no connect), a connection (new or
 * shared), a stream. Runs from a post or a timer, never inside nghttp2.
 */
static void
attempt_start(struct call *k)
{
	struct tp_grpc_client *cl = k->cl;
	int64_t now = ms_now_ms();
	int64_t remaining = 0;
	struct conn *cn;
	struct outcome o;
	char detail[BUS_DETAIL_LEN];
	int rc;

	if (atomic_load(&cl->closing)) {
		call_finish(k, MS_ECLOSED, "client closed", NULL, 0);
		return;
	}
	if (k->bc->deadline_ms > 0) {
		remaining = k->bc->deadline_ms - now;
		if (remaining <= 0) {
			call_finish(k, MS_ETIMEDOUT, "deadline exceeded", NULL,
			            0);
			return;
		}
	}
	/* A call holding the half-open probe keeps it across its retries. */
	if (!(k->probe && cl->br.state == TP_GRPC_BREAKER_HALF_OPEN)) {
		k->probe = false;
		if (!tp_grpc_breaker_allow(&cl->br, now)) {
			snprintf(detail, sizeof(detail), "circuit open: %s",
			         cl->err[0] ? cl->err : "too many failures");
			ms_metrics_count("monoshop_grpc_client_rejected_total",
			                 cl->labels, 1);
			call_finish(k, MS_EUNAVAIL, detail, NULL, 0);
			return;
		}
		k->probe = cl->br.state == TP_GRPC_BREAKER_HALF_OPEN;
		if (k->probe) {
			MS_INFO(SUB, "%s: circuit half-open, probing",
			        cl->target);
			health_update(cl);
		}
	}
	k->attempts++;
	for (int tries = 0;; tries++) {
		cn = cl->cur;
		if (cn == NULL && (rc = conn_new(cl, &cn)) != 0) {
			outcome_init(&o, MS_EUNAVAIL, TP_GRPC_UNAVAILABLE,
			             V_FAILURE, R_BACKOFF);
			snprintf(o.detail, sizeof(o.detail),
			         "cannot connect to %.96s: %s", cl->target,
			         ms_strerror(rc));
			attempt_end(k, &o);
			return;
		}
		rc = strm_submit(cn, k, remaining);
		/* A long-lived connection can run out of stream ids (2^30
		 * requests): retire it and go on with a new one. */
		if (rc == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE && tries == 0) {
			conn_retire(cn);
			conn_flush(cn);
			continue;
		}
		break;
	}
	if (rc != 0) {
		call_finish(k, rc == MS_EINVAL ? MS_EINVAL : MS_ENOMEM,
		            rc == MS_EINVAL ? "service or method name too long"
		                            : "cannot open a stream",
		            NULL, 0);
		return;
	}
	health_update(cl);
	ka_arm(cn);
	conn_flush(cn);
}

static void
deadline_fire(void *arg)
{
	struct call *k = arg;
	struct tp_grpc_client *cl = k->cl;
	struct strm *s = k->strm;
	struct conn *cn = s ? s->cn : NULL;

	/* An attempt that got no Response-Headers in time says the endpoint
	 * is not working; one waiting to retry was already counted. */
	if (s != NULL) {
		count_attempt(cl, TP_GRPC_DEADLINE_EXCEEDED);
		if (!s->got_headers) {
			char why[ERRLEN];

			snprintf(why, sizeof(why),
			         "deadline exceeded waiting for %.96s",
			         cl->target);
			note_failure(cl, why);
			health_update(cl);
		}
	}
	call_finish(k, MS_ETIMEDOUT, "deadline exceeded", NULL, 0);
	if (cn != NULL) {
		conn_flush(cn); /* the RST_STREAM(CANCEL) */
	}
}

static void
call_start(void *arg)
{
	struct call *k = arg;
	struct tp_grpc_client *cl = k->cl;

	k->next = cl->calls;
	if (cl->calls) {
		cl->calls->prev = k;
	}
	cl->calls = k;
	k->linked = true;
	if (k->bc->deadline_ms > 0) {
		tp_grpc_timer_start(cl->loop, &k->deadline, k->bc->deadline_ms,
		                    deadline_fire, k);
	}
	attempt_start(k);
}

/* shutdown (posted by destroy) completes every call and drops the
 * connections; the loop's stop then runs what was posted after it. */
static void
shutdown_cb(void *arg)
{
	struct tp_grpc_client *cl = arg;

	while (cl->calls) {
		call_finish(cl->calls, MS_ECLOSED, "client closed", NULL, 0);
	}
	for (struct conn *cn = cl->conns; cn; cn = cn->next) {
		if (cn->tc) {
			tp_grpc_conn_abort(cn->tc, MS_ECLOSED);
		}
	}
	cl->cur = NULL;
}

/* ---- public API --------------------------------------------------------- */

static int
setup_nghttp2(struct tp_grpc_client *cl)
{
	if (nghttp2_session_callbacks_new(&cl->cbs) != 0 ||
	    nghttp2_option_new(&cl->h2opt) != 0) {
		return MS_ENOMEM;
	}
	nghttp2_session_callbacks_set_on_begin_headers_callback(
	    cl->cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cl->cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cl->cbs,
	                                                     on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
	    cl->cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_send_callback(cl->cbs,
	                                                     on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(cl->cbs,
	                                                       on_stream_close);
	nghttp2_option_set_peer_max_concurrent_streams(cl->h2opt,
	                                               PEER_MAX_STREAMS);
	return 0;
}

static void
client_free(struct tp_grpc_client *cl)
{
	if (cl->gauge) {
		ms_metrics_gauge_remove(cl);
	}
	tp_grpc_loop_destroy(cl->loop);
	nghttp2_session_callbacks_del(cl->cbs);
	nghttp2_option_del(cl->h2opt);
	pthread_mutex_destroy(&cl->hmtx);
	free(cl);
}

/* client_tls makes every connection of |cl| speak TLS (grpcs://): the
 * loop owns the context from here on. Main thread, before the loop
 * starts. Returns 0 or the error of tp_grpc_tls_client_new (logged). */
static int
client_tls(struct tp_grpc_client *cl, const char *ca_file)
{
	struct tp_grpc_tls *tls;
	int rc = tp_grpc_tls_client_new(&tls, ca_file);

	if (rc == 0) {
		tp_grpc_loop_set_tls(cl->loop, tls);
	}
	return rc;
}

int
tp_grpc_client_create(struct tp_grpc_client **out,
                      const struct tp_grpc_client_opts *opts)
{
	struct tp_grpc_client *cl;
	uint32_t seed = 0;
	int rc;

	assert(out != NULL && opts != NULL && opts->host != NULL);
	*out = NULL;
	if ((cl = calloc(1, sizeof(*cl))) == NULL) {
		return MS_ENOMEM;
	}
	pthread_mutex_init(&cl->hmtx, NULL);
	cl->opts = *opts;
	ms_strlcpy(cl->host, opts->host, sizeof(cl->host));
	cl->opts.host = cl->host;
	/* Config values are validated upstream; these floors only keep the
	 * arithmetic meaningful. */
	if (cl->opts.retry_max_attempts < 1) {
		cl->opts.retry_max_attempts = 1;
	}
	if (cl->opts.retry_max_attempts > MAX_ATTEMPTS_CAP) {
		cl->opts.retry_max_attempts = MAX_ATTEMPTS_CAP;
	}
	if (cl->opts.retry_backoff_ms < 0) {
		cl->opts.retry_backoff_ms = 0;
	}
	if (cl->opts.retry_backoff_max_ms < cl->opts.retry_backoff_ms) {
		cl->opts.retry_backoff_max_ms = cl->opts.retry_backoff_ms;
	}
	if (cl->opts.connect_timeout_ms <= 0) {
		cl->opts.connect_timeout_ms = 5000;
	}
	if (cl->opts.max_message == 0) {
		cl->opts.max_message = 4 * 1024 * 1024;
	}
	tp_grpc_breaker_init(
	    &cl->br, opts->breaker_failures > 0 ? opts->breaker_failures : 1,
	    opts->breaker_open_ms > 0 ? opts->breaker_open_ms : 0);
	cl->keepalive_ms = opts->keepalive_ms > 0 ? opts->keepalive_ms : 0;
	/* An IPv6 literal needs brackets in :authority. */
	snprintf(cl->target, sizeof(cl->target),
	         strchr(cl->host, ':') ? "[%s]:%u" : "%s:%u", cl->host,
	         (unsigned)opts->port);
	snprintf(cl->labels, sizeof(cl->labels), "target=\"%s\"", cl->target);
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed)) {
		seed = (uint32_t)ms_now_us() ^ (uint32_t)(uintptr_t)cl;
	}
	cl->rnd = seed ? seed : 0x9e3779b9u;
	if ((rc = setup_nghttp2(cl)) != 0 ||
	    (rc = tp_grpc_loop_create(&cl->loop, "grpc-client")) != 0 ||
	    (opts->tls && (rc = client_tls(cl, opts->tls_ca)) != 0)) {
		client_free(cl);
		return rc;
	}
	tp_grpc_loop_busy_poll(cl->loop, opts->busy_poll_us);
	if ((rc = tp_grpc_loop_start(cl->loop)) != 0) {
		client_free(cl);
		return rc;
	}
	cl->opts.tls_ca = NULL; /* read: not kept */
	health_update(cl);
	cl->gauge = ms_metrics_gauge_fn(
	                "monoshop_grpc_client_breaker_state", cl->labels,
	                "gRPC client circuit breaker: 0 closed, "
	                "1 open, 2 half-open",
	                breaker_gauge, cl) == 0;
	*out = cl;
	return 0;
}

int
tp_grpc_client_call(struct tp_grpc_client *cl, struct bus_call *c)
{
	struct call *k;
	int rc;

	assert(cl != NULL && c != NULL && c->done != NULL);
	assert(c->service != NULL && c->method != NULL);
	assert(c->req != NULL || c->req_len == 0);
	if (atomic_load(&cl->closing)) {
		return MS_ECLOSED;
	}
	if (c->req_len > UINT32_MAX) {
		return MS_ETOOBIG; /* cannot be framed; programmer-ish */
	}
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		return MS_ENOMEM;
	}
	k->cl = cl;
	k->bc = c;
	c->reply = NULL;
	c->reply_len = 0;
	c->detail[0] = '\0';
	if ((rc = tp_grpc_loop_post(cl->loop, call_start, k)) != 0) {
		free(k);
		return rc;
	}
	return 0;
}

/* Loop thread (as every completion): the probe is over, whatever it
 * said; the breaker and the health snapshot already know. */
static void
probe_done(struct bus_call *c)
{
	struct tp_grpc_client *cl = c->arg;

	free(c->reply);
	free(c);
	atomic_store(&cl->probing, false);
}

/*
 * probe_start asks the server grpc.health.v1.Health/Check("") through the
 * normal call path, so that the breaker and the health snapshot learn
 * whether the endpoint answers even when no module calls it: a process
 * started before its peer reports it not ready, and sees it arrive. Any
 * gRPC answer counts (a server without the health service answers
 * UNIMPLEMENTED: it is there). At most one in flight and one every
 * PROBE_EVERY_MS; an open circuit refuses it without a connect, as it
 * refuses calls, until its probe is due. Any thread.
 */
static void
probe_start(struct tp_grpc_client *cl)
{
	static const uint8_t empty[1]; /* HealthCheckRequest{""} packs to 0 */
	int64_t now = ms_now_ms();
	struct bus_call *c;

	if (atomic_load(&cl->closing) ||
	    now - atomic_load(&cl->probe_ms) < PROBE_EVERY_MS ||
	    atomic_exchange(&cl->probing, true)) {
		return;
	}
	atomic_store(&cl->probe_ms, now);
	if ((c = calloc(1, sizeof(*c))) == NULL) { /* freed by probe_done */
		atomic_store(&cl->probing, false);
		return;
	}
	c->service = PROBE_SERVICE;
	c->method = "Check";
	c->req = empty;
	c->req_len = 0;
	c->deadline_ms = now + cl->opts.connect_timeout_ms + PROBE_EVERY_MS;
	c->done = probe_done;
	c->arg = cl;
	if (tp_grpc_client_call(cl, c) != 0) {
		free(c);
		atomic_store(&cl->probing, false);
	}
}

int
tp_grpc_client_health(struct tp_grpc_client *cl, char *desc, size_t desclen)
{
	struct snapshot s;

	pthread_mutex_lock(&cl->hmtx);
	s = cl->snap;
	pthread_mutex_unlock(&cl->hmtx);
	/* Anything short of "closed and connected" is worth a look; what
	 * the look finds shows in a later answer (this one must not wait). */
	if (s.state != TP_GRPC_BREAKER_CLOSED || s.failed || !s.connected) {
		probe_start(cl);
	}
	if (s.state == TP_GRPC_BREAKER_OPEN) {
		snprintf(desc, desclen, "circuit open: %s",
		         s.err[0] ? s.err : "too many failures");
		return MS_EUNAVAIL;
	}
	if (s.state == TP_GRPC_BREAKER_HALF_OPEN) {
		snprintf(desc, desclen, "circuit half-open, probing: %s",
		         s.err[0] ? s.err : "too many failures");
		return MS_EUNAVAIL;
	}
	if (s.failed) {
		snprintf(desc, desclen, "circuit closed%s %s",
		         s.connecting ? ", connecting:" : ":", s.err);
		return MS_EUNAVAIL;
	}
	if (s.connected) {
		snprintf(desc, desclen, "circuit closed: connected to %s",
		         cl->target);
		return 0;
	}
	if (s.ever) {
		/* It answered before; the next call (or probe) reconnects. */
		snprintf(desc, desclen,
		         "circuit closed: idle, %s answered last", cl->target);
		return 0;
	}
	snprintf(desc, desclen, "circuit closed: not connected to %s yet",
	         cl->target);
	return MS_EUNAVAIL;
}

void
tp_grpc_client_destroy(struct tp_grpc_client *cl)
{
	if (cl == NULL) {
		return;
	}
	atomic_store(&cl->closing, true);
	/* If the post cannot be made (out of memory), the loop's stop still
	 * aborts the connections; the calls left are completed below. */
	(void)tp_grpc_loop_post(cl->loop, shutdown_cb, cl);
	tp_grpc_loop_stop(cl->loop);
	/* The loop thread is gone: this thread owns everything now. */
	while (cl->calls) {
		call_finish(cl->calls, MS_ECLOSED, "client closed", NULL, 0);
	}
	while (cl->conns) {
		struct conn *cn = cl->conns;

		cl->conns = cn->next;
		cn->dead = true;
		nghttp2_session_del(cn->h2);
		while (cn->strms) {
			struct strm *s = cn->strms;

			cn->strms = s->next;
			strm_free(s);
		}
		free(cn);
	}
	client_free(cl);
}
