/* SPDX-License-Identifier: MIT */
/*
 * The nng transport: calls and events between monoshop processes with no
 * broker in between, over nng's req/rep (scalability protocols) on TCP or
 * Unix sockets. Every message is wire.h's header plus the payload.
 *
 * Two ops tables, one implementation. The registry matches a URL's scheme
 * exactly, so "nng+tcp://h:p" and "nng+ipc:///path" need a table each;
 * they share every function here and differ only in the scheme and in
 * listen_key, which only the tcp table has: the bus then creates exactly
 * one serving instance per process, which listens on nng.listen whatever
 * its form (tcp:// or ipc://).
 *
 * An instance is either
 *  - a client of one peer (url "nng+tcp://HOST:PORT" → nng dials
 *    "tcp://HOST:PORT"; "nng+ipc:///path" → "ipc:///path"): a req socket
 *    whose dialer reconnects by itself, and one nng context + aio per call
 *    or publish in flight (a pool of "ops", reused), so calls run
 *    concurrently over the one connection. The bus shares one instance
 *    between remote.discount and events.broker when both name the same URL.
 *  - a server (url NULL): a rep socket listening on nng.listen, and
 *    nng.threads workers, each a thread with its own rep context that
 *    receives a request, runs bus_dispatch (a call; handlers may block on
 *    SQLite, which is why these are our threads and not nng's callbacks)
 *    or bus_deliver (an event), and sends the reply.
 *
 * Events are not sent with nng's pub/sub, which drops messages when a
 * subscriber's queue is full (nng #788): an event is a request to the
 * consumer's rep listener, answered only after bus_deliver returned, so
 * ev->done gets the consumer's verdict - 0 once the order is committed;
 * MS_ENOTFOUND (no subscriber there) and MS_EINVAL (poison) as such; a
 * timeout or a peer that is down as a failure. The outbox relay republishes
 * whatever did not complete with 0 (at least once; the inbox dedupes).
 *
 * Deadlines. A call's deadline bounds its aio (send, then receive), and
 * the time left travels in the header so the server refuses work whose
 * caller has given up. An event gets bus.call_timeout_ms. nng's req
 * protocol resends a request on its own after NNG_OPT_REQ_RESENDTIME; we
 * turn that off (infinite): TCP and IPC do not lose messages, every
 * request is bounded by its deadline anyway, and a periodic resend would
 * run a slow handler twice. (nng still resends a request whose connection
 * dropped, to the next connection; we cut that short, below.)
 *
 * Peer down. A req send waits until a connection exists, so an op started
 * while disconnected gets at most nng.connect_timeout_ms (counted from
 * when the connection went away, or from start) to see one, then fails
 * with MS_EUNAVAIL; once that much time has passed, ops fail at once
 * (like an open circuit) while the dialer keeps reconnecting in the
 * background (every 100 ms to 1 s). When the last connection drops, ops
 * waiting for a reply fail with MS_EUNAVAIL at once instead of waiting
 * for the deadline: their request may or may not have been processed,
 * which the relay and the inbox are built for.
 *
 * Sizes. A payload over nng.max_message is refused before it is sent: a
 * call with MS_ETOOBIG, an event with MS_EINVAL (it can never be
 * delivered: the relay keeps it as dead rather than retry it forever). A
 * server whose reply would be over the limit answers MS_ETOOBIG. Both
 * sockets refuse to receive more than the limit plus a header (nng drops
 * such a connection).
 *
 * Shutdown. quiesce makes a server answer new requests MS_EUNAVAIL at
 * once (the caller fails fast; the relay tries again later) while its
 * workers finish what they hold; stop then joins them. A client's stop
 * completes its ops in flight with MS_ECLOSED. Either closes its socket on
 * a helper thread and waits for it at most CLOSE_WAIT_MS: nng 1.5.2 can
 * hang in nng_close (see close_socket).
 *
 * nng has no access key of its own: while grpc.api_key protects the admin
 * methods (bus_restrict), the server answers them MS_EUNAUTH instead of
 * being a way around the key.
 *
 * Threads: init/start/stop/fini on the main thread. call, publish and
 * health on any thread. op_done and pipe_event run on nng's threads; they
 * never block and complete calls and events there (bus_call_complete and
 * ev->done only signal). Server workers are our threads. |mtx| guards the
 * op pool, the connection state and each op's phase; nng operations that
 * must not race with stop's cancellation are started under it (nng never
 * runs a completion callback inside the call that starts an operation).
 *
 * Memory: the ops and the workers are malloc'd by start and freed by stop
 * (ops are kept for reuse until then). A request's nng_msg belongs to nng
 * from the send until it completes; a reply's payload is copied into a
 * malloc'd buffer that the bus owns after completion.
 *
 * This file's only exports are tp_nng_tcp_ops and tp_nng_ipc_ops.
 */
#include <assert.h>
#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "transport/nng/wire.h"
#include "transport/transport.h"

#define URL_MAX       300
#define OPS_MAX       4096 /* calls + publishes in flight per peer */
#define PIPES_MAX     4    /* a dialer has one connection at a time */
#define RECONN_MIN_MS 100
#define RECONN_MAX_MS 1000
#define REPLY_SEND_MS 1000 /* how long a server's reply may wait to go out */
#define CLOSE_WAIT_MS 3000 /* longest a socket close may take (see below) */
#define STATE_MAX     160

enum phase {
	PH_FREE, /* in the pool */
	PH_SEND, /* the request is waiting for a connection or going out */
	PH_RECV, /* waiting for the reply */
	PH_DONE, /* completing (outside the lock) */
};

/* One call or publish in flight: an nng context of the req socket and the
 * aio that carries its send and then its receive. */
struct op {
	struct tpn *n;
	nng_ctx ctx;
	nng_aio *aio;
	enum phase phase;      /* guarded by n->mtx */
	bool lost;             /* the connection dropped while in PH_RECV */
	struct bus_call *call; /* exactly one of call / ev */
	struct bus_event *ev;
	int64_t deadline_ms;
	struct op *next; /* the free list */
};

/* A server worker: one thread, one rep context, one aio it waits on. */
struct worker {
	struct tpn *n;
	pthread_t thread;
	nng_ctx ctx;
	nng_aio *aio;
	bool receiving; /* waiting in a receive: stop cancels it */
	bool running;   /* the thread exists */
};

struct tpn {
	struct bus_transport *t;
	bool is_server;
	char url[URL_MAX];   /* what nng dials or listens on */
	char where[URL_MAX]; /* for messages: the configured URL */
	size_t max_message;
	nng_socket sock;
	bool sock_open;

	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool running; /* started and not stopping */
	bool closing; /* stop has begun: no new ops */

	/* server */
	nng_listener listener;
	struct worker *workers;
	int nworkers;
	bool guard_admin;     /* grpc.api_key is set: refuse admin methods */
	atomic_bool draining; /* quiesce: answer new requests "unavailable" */

	/* client */
	nng_dialer dialer;
	int connect_ms;       /* how long an op waits for a connection */
	int event_timeout_ms; /* a publish's deadline */
	struct op **ops;      /* every op created (up to OPS_MAX) */
	size_t nops;
	struct op *free;
	size_t inflight; /* ops not in the pool (stop waits for 0) */
	uint32_t pipes[PIPES_MAX];
	int npipes;
	int64_t down_since; /* when npipes last became 0 (or start) */
	/* An answer came since the connection was last lost: nng tells of a
	 * new connection (NNG_PIPE_EV_ADD_POST) only after it already
	 * carries requests, so this says "connected" a moment earlier. */
	bool reached;
	int last_rc; /* the last op that failed to reach the peer */
	char last_err[STATE_MAX];
};

/* ---- helpers ----------------------------------------------------------- */

/* describe formats a message into |buf|, cut at its end on purpose (the
 * URL in it may be long): snprintf without gcc's truncation warning. */
static void __attribute__((format(printf, 3, 4)))
describe(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* The MS_E* code for an nng error that is not specific to one phase. */
static int
from_nng(int rv)
{
	switch (rv) {
	case 0:
		return 0;
	case NNG_ENOMEM:
		return MS_ENOMEM;
	case NNG_ETIMEDOUT:
		return MS_ETIMEDOUT;
	case NNG_ECLOSED:
		return MS_ECLOSED;
	case NNG_ECANCELED:
		return MS_ECANCELED;
	case NNG_EADDRINUSE:
		return -EADDRINUSE;
	case NNG_EADDRINVAL:
	case NNG_EINVAL:
		return MS_EINVAL;
	case NNG_EPERM:
		return -EACCES;
	default:
		return MS_EUNAVAIL;
	}
}

static int
tpn_init(struct bus_transport *t, const char *url, const struct ms_config *cfg)
{
	struct tpn *n = tp_priv(t);
	const char *rest;

	memset(n, 0, sizeof(*n));
	atomic_init(&n->draining, false);
	n->t = t;
	n->max_message = (size_t)ms_config_int(cfg, "nng.max_message");
	if (url == NULL) {
		const char *l = ms_config_str(cfg, "nng.listen");

		n->is_server = true;
		if (l == NULL || strlen(l) >= sizeof(n->url)) {
			return MS_EINVAL;
		}
		describe(n->url, sizeof(n->url), "%s", l);
		describe(n->where, sizeof(n->where), "%s", l);
		n->nworkers = (int)ms_config_int(cfg, "nng.threads");
		/* nng has no access key of its own: while one protects the
		 * admin methods on gRPC, this listener must not be a way
		 * around it. */
		n->guard_admin = ms_config_is_set(cfg, "grpc.api_key");
	} else {
		/* "nng+tcp://h:p" → "tcp://h:p", "nng+ipc:///p" → "ipc:///p" */
		if (strncmp(url, "nng+tcp://", 10) == 0) {
			rest = url + 10;
			if (strchr(rest, ':') == NULL) {
				MS_ERROR("nng",
				         "%s: expected nng+tcp://HOST:PORT",
				         url);
				return MS_EINVAL;
			}
		} else if (strncmp(url, "nng+ipc://", 10) == 0) {
			rest = url + 10;
			if (rest[0] != '/' || rest[1] == '\0') {
				MS_ERROR("nng", "%s: expected nng+ipc:///path",
				         url);
				return MS_EINVAL;
			}
		} else {
			return MS_EINVAL;
		}
		if (strlen(url) >= sizeof(n->where)) {
			return MS_EINVAL;
		}
		describe(n->url, sizeof(n->url), "%.3s://%s", url + 4, rest);
		describe(n->where, sizeof(n->where), "%s", url);
		n->connect_ms =
		    (int)ms_config_int(cfg, "nng.connect_timeout_ms");
		n->event_timeout_ms =
		    (int)ms_config_int(cfg, "bus.call_timeout_ms");
		if (n->event_timeout_ms <= 0) {
			n->event_timeout_ms = 5000;
		}
	}
	pthread_mutex_init(&n->mtx, NULL);
	pthread_cond_init(&n->cv, NULL);
	return 0;
}

static void
tpn_fini(struct bus_transport *t)
{
	struct tpn *n = tp_priv(t);

	pthread_cond_destroy(&n->cv);
	pthread_mutex_destroy(&n->mtx);
}

/* build_msg returns a new nng message: |h|'s header then |len| bytes of
 * |payload|. Returns 0, MS_EINVAL (a header field over its bound) or
 * MS_ENOMEM. */
static int
build_msg(const struct tp_nng_hdr *h, const uint8_t *payload, size_t len,
          nng_msg **out)
{
	uint8_t hdr[TP_NNG_WIRE_HDR_MAX];
	size_t hlen;
	nng_msg *m;
	int rc;

	*out = NULL;
	if ((rc = tp_nng_wire_encode(h, hdr, sizeof(hdr), &hlen)) != 0) {
		return rc;
	}
	/* One allocation of the final size: a payload may be megabytes. */
	if (nng_msg_alloc(&m, hlen + len) != 0) {
		return MS_ENOMEM;
	}
	memcpy(nng_msg_body(m), hdr, hlen);
	if (len > 0) {
		memcpy((uint8_t *)nng_msg_body(m) + hlen, payload, len);
	}
	*out = m;
	return 0;
}

/*
 * A socket close, bounded. nng 1.5 can hang in nng_close when a message is
 * arriving on a connection while it is being closed: its reaper thread
 * waits forever for a receive that is never finished (nanomsg/nng#1543,
 * #1813; fixed in 1.8 by #1824 and #1636, after the 1.5.2 that Debian 12
 * ships). A process must still shut down, so the close runs on a helper
 * thread and stop waits at most CLOSE_WAIT_MS for it; past that the socket
 * is left behind (nng's internals never point into our memory: the pipe
 * callbacks are removed first, every op is complete) and the process
 * exits without it. Whichever of the two threads finishes last frees the
 * record. nng's reaper is one thread for the whole process: once a close
 * hung, every later one would too, so they are not waited for.
 */
static atomic_bool close_hung;

struct closer {
	nng_socket sock;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool done;
	bool abandoned;
};

static void
closer_free(struct closer *c)
{
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mtx);
	free(c);
}

static void *
closer_main(void *arg)
{
	struct closer *c = arg;
	bool abandoned;

	nng_close(c->sock);
	pthread_mutex_lock(&c->mtx);
	c->done = true;
	abandoned = c->abandoned;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mtx);
	if (abandoned) {
		closer_free(c);
	}
	return NULL;
}

/* close_socket closes |n|'s socket within CLOSE_WAIT_MS, or leaves it. */
static void
close_socket(struct tpn *n)
{
	struct closer *c;
	pthread_condattr_t ca;
	pthread_t th;
	struct timespec ts;
	bool done;

	if (!n->sock_open) {
		return;
	}
	n->sock_open = false;
	/* No callback into |n| from here on, even from a close that
	 * outlives it. */
	(void)nng_pipe_notify(n->sock, NNG_PIPE_EV_ADD_POST, NULL, NULL);
	(void)nng_pipe_notify(n->sock, NNG_PIPE_EV_REM_POST, NULL, NULL);
	if (atomic_load(&close_hung)) {
		MS_WARN("nng", "%s: socket left open (an earlier close hung)",
		        n->where);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		nng_close(n->sock); /* no memory for the watchdog: just wait */
		return;
	}
	c->sock = n->sock;
	pthread_mutex_init(&c->mtx, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&th, NULL, closer_main, c) != 0) {
		nng_close(n->sock);
		closer_free(c);
		return;
	}
	pthread_detach(th);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += CLOSE_WAIT_MS / 1000;
	ts.tv_nsec += (long)(CLOSE_WAIT_MS % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mtx);
	while (!c->done && pthread_cond_timedwait(&c->cv, &c->mtx, &ts) == 0) {
	}
	done = c->done;
	c->abandoned = !done;
	pthread_mutex_unlock(&c->mtx);
	if (done) {
		closer_free(c);
	} else {
		atomic_store(&close_hung, true);
		MS_ERROR("nng",
		         "%s: closing the socket did not finish within %d ms "
		         "(a known hang of nng before 1.8, nanomsg/nng#1813); "
		         "left behind",
		         n->where, CLOSE_WAIT_MS);
	}
}

/* ---- server ------------------------------------------------------------ */

/*
 * serve_one answers one request: |msg| arrives holding it and leaves
 * holding the reply (the rep context keeps the routing in the message
 * header, which we leave alone). Runs on a worker thread; may block in a
 * handler.
 */
static void
serve_one(struct tpn *n, nng_msg *msg)
{
	const uint8_t *body = nng_msg_body(msg);
	size_t len = nng_msg_len(msg);
	struct tp_nng_hdr in;
	struct tp_nng_hdr out;
	uint8_t hdr[TP_NNG_WIRE_HDR_MAX];
	uint8_t *reply = NULL;
	size_t reply_len = 0;
	size_t hl;
	int rc;

	memset(&out, 0, sizeof(out));
	out.kind = TP_NNG_REPLY;
	rc = tp_nng_wire_decode(body, len, &in, &hl);
	if (rc == 0 && atomic_load(&n->draining)) {
		/* Shutting down: new work is refused at once, so the caller
		 * fails fast (the relay publishes the event again later)
		 * instead of waiting for its deadline. */
		out.kind = in.kind == TP_NNG_EVENT ? TP_NNG_ACK : TP_NNG_REPLY;
		out.status = MS_EUNAVAIL;
		describe(out.detail, sizeof(out.detail), "%s is shutting down",
		         n->where);
	} else if (rc != 0) {
		out.status = rc;
		describe(out.detail, sizeof(out.detail), "%s",
		         rc == MS_ENOTSUP ? "unsupported nng wire version"
		                          : "undecodable nng message header");
		MS_WARN("nng", "%s: a request of %zu bytes: %s", n->where, len,
		        out.detail);
	} else if (in.kind == TP_NNG_CALL && n->guard_admin &&
	           bus_restricted(n->t->bus, in.service, in.method)) {
		out.status = MS_EUNAUTH;
		describe(out.detail, sizeof(out.detail),
		         "%s/%s is an admin method: call it over gRPC with "
		         "the access key",
		         in.service, in.method);
	} else if (in.kind == TP_NNG_CALL) {
		int64_t deadline =
		    in.timeout_ms ? ms_now_ms() + (int64_t)in.timeout_ms : 0;

		out.status = bus_dispatch(
		    n->t->bus, in.service, in.method, body + hl, len - hl,
		    deadline, in.traceparent[0] ? in.traceparent : NULL, &reply,
		    &reply_len, out.detail, sizeof(out.detail));
		if (out.status == 0 && reply_len > n->max_message) {
			out.status = MS_ETOOBIG;
			describe(
			    out.detail, sizeof(out.detail),
			    "the reply of %zu bytes is over nng.max_message "
			    "(%zu)",
			    reply_len, n->max_message);
		}
	} else if (in.kind == TP_NNG_EVENT) {
		struct bus_event ev;

		memset(&ev, 0, sizeof(ev));
		out.kind = TP_NNG_ACK;
		memcpy(ev.id, in.id, sizeof(ev.id) - 1);
		ev.type = in.type;
		ev.payload = body + hl;
		ev.len = len - hl;
		ev.traceparent = in.traceparent[0] ? in.traceparent : NULL;
		ev.occurred_ms = in.occurred_ms;
		ev.attempt = in.attempt;
		out.status = bus_deliver(n->t->bus, &ev);
		if (out.status != 0) {
			describe(out.detail, sizeof(out.detail),
			         "event %s (%s): %s", in.id, in.type,
			         out.status == MS_ENOTFOUND
			             ? "no subscriber here"
			             : ms_strerror(out.status));
		}
	} else {
		out.status = MS_EPROTO;
		describe(out.detail, sizeof(out.detail),
		         "a %s is not a request",
		         tp_nng_kind_name((int)in.kind));
	}
	if (out.status != 0) {
		free(reply);
		reply = NULL;
		reply_len = 0;
	}
	/* The request's message becomes the reply: sized once, filled. */
	rc = tp_nng_wire_encode(&out, hdr, sizeof(hdr), &hl);
	if (rc == 0 && nng_msg_realloc(msg, hl + reply_len) == 0) {
		memcpy(nng_msg_body(msg), hdr, hl);
		if (reply_len > 0) {
			memcpy((uint8_t *)nng_msg_body(msg) + hl, reply,
			       reply_len);
		}
	} else {
		/* Out of memory: a bare reply needs no allocation beyond
		 * what the message already has. */
		enum tp_nng_kind kind = out.kind;

		memset(&out, 0, sizeof(out));
		out.kind = kind;
		out.status = MS_ENOMEM;
		nng_msg_clear(msg);
		if (tp_nng_wire_encode(&out, hdr, sizeof(hdr), &hl) == 0) {
			(void)nng_msg_append(msg, hdr, hl);
		}
	}
	free(reply);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct tpn *n = w->n;

	for (;;) {
		nng_msg *msg;
		int rv;

		pthread_mutex_lock(&n->mtx);
		if (n->closing) {
			pthread_mutex_unlock(&n->mtx);
			break;
		}
		nng_aio_set_timeout(w->aio, NNG_DURATION_INFINITE);
		nng_ctx_recv(w->ctx, w->aio);
		w->receiving = true;
		pthread_mutex_unlock(&n->mtx);

		nng_aio_wait(w->aio);
		pthread_mutex_lock(&n->mtx);
		w->receiving = false;
		pthread_mutex_unlock(&n->mtx);
		if ((rv = nng_aio_result(w->aio)) != 0) {
			if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
				break; /* stop */
			}
			MS_WARN("nng", "%s: receive: %s", n->where,
			        nng_strerror(rv));
			continue;
		}
		/* A request we took is answered even when stop has begun:
		 * what is in flight finishes. */
		msg = nng_aio_get_msg(w->aio);
		nng_aio_set_msg(w->aio, NULL);
		serve_one(n, msg);
		nng_aio_set_msg(w->aio, msg);
		nng_aio_set_timeout(w->aio, REPLY_SEND_MS);
		nng_ctx_send(w->ctx, w->aio);
		nng_aio_wait(w->aio);
		if ((rv = nng_aio_result(w->aio)) != 0) {
			/* On failure the message is still ours. */
			nng_msg_free(nng_aio_get_msg(w->aio));
			nng_aio_set_msg(w->aio, NULL);
			MS_DEBUG("nng", "%s: reply not sent: %s", n->where,
			         nng_strerror(rv));
		}
	}
	return NULL;
}

/* Frees the server's workers (threads already joined) and closes the
 * socket, which closes the listener and the contexts. */
static void
server_free(struct tpn *n)
{
	close_socket(n);
	for (int i = 0; n->workers && i < n->nworkers; i++) {
		if (n->workers[i].aio) {
			nng_aio_free(n->workers[i].aio);
		}
	}
	free(n->workers);
	n->workers = NULL;
}

static void
server_stop(struct tpn *n)
{
	pthread_mutex_lock(&n->mtx);
	n->closing = true;
	n->running = false;
	for (int i = 0; n->workers && i < n->nworkers; i++) {
		if (n->workers[i].receiving) {
			nng_aio_cancel(n->workers[i].aio);
		}
	}
	pthread_mutex_unlock(&n->mtx);
	for (int i = 0; n->workers && i < n->nworkers; i++) {
		if (n->workers[i].running) {
			pthread_join(n->workers[i].thread, NULL);
			n->workers[i].running = false;
		}
	}
	server_free(n);
}

/* The address we actually listen on, with the port nng picked for
 * "tcp://HOST:0", for the log line tests and operators read. */
static void
bound_url(struct tpn *n, char *out, size_t outlen)
{
	int port = 0;
	const char *colon = strrchr(n->url, ':');

	if (strncmp(n->url, "tcp", 3) == 0 && colon != NULL &&
	    nng_listener_get_int(n->listener, NNG_OPT_TCP_BOUND_PORT, &port) ==
	        0 &&
	    port > 0) {
		describe(out, outlen, "%.*s:%d", (int)(colon - n->url), n->url,
		         port);
		return;
	}
	describe(out, outlen, "%s", n->url);
}

static int
server_start(struct tpn *n)
{
	char bound[URL_MAX + 8];
	int rv;
	int rc;

	if ((rv = nng_rep0_open(&n->sock)) != 0) {
		MS_ERROR("nng", "rep socket: %s", nng_strerror(rv));
		return from_nng(rv);
	}
	n->sock_open = true;
	rv = nng_socket_set_size(n->sock, NNG_OPT_RECVMAXSZ,
	                         n->max_message + TP_NNG_WIRE_HDR_MAX);
	if (rv == 0) {
		rv = nng_listener_create(&n->listener, n->sock, n->url);
	}
	if (rv == 0) {
		rv = nng_listener_start(n->listener, 0);
	}
	if (rv != 0) {
		MS_ERROR("nng", "cannot listen on %s: %s", n->url,
		         nng_strerror(rv));
		server_free(n);
		return from_nng(rv);
	}
	/* Where we listen, with the port nng picked for port 0: set before
	 * any worker can read it. */
	bound_url(n, bound, sizeof(bound));
	describe(n->where, sizeof(n->where), "%s", bound);
	n->workers = calloc((size_t)n->nworkers, sizeof(*n->workers));
	if (n->workers == NULL) {
		server_free(n);
		return MS_ENOMEM;
	}
	pthread_mutex_lock(&n->mtx);
	n->running = true;
	pthread_mutex_unlock(&n->mtx);
	for (int i = 0; i < n->nworkers; i++) {
		struct worker *w = &n->workers[i];

		w->n = n;
		if ((rv = nng_aio_alloc(&w->aio, NULL, NULL)) != 0 ||
		    (rv = nng_ctx_open(&w->ctx, n->sock)) != 0) {
			rc = from_nng(rv);
			goto fail;
		}
		if ((rc = pthread_create(&w->thread, NULL, worker_main, w)) !=
		    0) {
			rc = -rc;
			goto fail;
		}
		w->running = true;
	}
	MS_INFO("nng", "listening on %s (%d workers)", bound, n->nworkers);
	return 0;
fail:
	server_stop(n);
	return rc;
}

/* ---- client: completions ----------------------------------------------- */

/* Records whether an op reached the peer, for health. Under n->mtx. */
static void
note_reach(struct tpn *n, int rc, const char *detail)
{
	if (rc == 0) {
		n->last_rc = 0;
		n->reached = true;
		n->last_err[0] = '\0';
	} else {
		n->last_rc = rc;
		n->reached = false;
		describe(n->last_err, sizeof(n->last_err), "%s", detail);
	}
}

/* Puts |op| back in the pool once its completion has run. */
static void
op_release(struct tpn *n, struct op *op)
{
	pthread_mutex_lock(&n->mtx);
	op->phase = PH_FREE;
	op->call = NULL;
	op->ev = NULL;
	op->lost = false;
	op->next = n->free;
	n->free = op;
	if (--n->inflight == 0) {
		pthread_cond_broadcast(&n->cv);
	}
	pthread_mutex_unlock(&n->mtx);
}

/* Completes |op|'s call or event with |rc| (the call's reply is already
 * set on success), then returns it to the pool. */
static void
op_finish(struct tpn *n, struct op *op, int rc, const char *detail)
{
	if (op->call != NULL) {
		struct bus_call *c = op->call;

		c->rc = rc;
		if (rc != 0 && c->detail[0] == '\0') {
			describe(c->detail, sizeof(c->detail), "%s",
			         detail && detail[0] ? detail
			                             : ms_strerror(rc));
		}
		bus_call_complete(c);
	} else {
		struct bus_event *ev = op->ev;

		if (rc != 0) {
			MS_DEBUG("nng", "%s: event %s: %s", n->where, ev->id,
			         detail && detail[0] ? detail
			                             : ms_strerror(rc));
		}
		ev->done(ev, rc);
	}
	op_release(n, op);
}

/* decode_reply reads the reply to |op| from |msg|. Returns the call's or
 * the event's outcome; *reached tells whether the peer answered at all. */
static int
decode_reply(struct tpn *n, struct op *op, nng_msg *msg, char *detail,
             size_t dlen, bool *reached)
{
	const uint8_t *body = nng_msg_body(msg);
	size_t len = nng_msg_len(msg);
	struct tp_nng_hdr h;
	size_t hl;
	int rc;

	*reached = false;
	rc = tp_nng_wire_decode(body, len, &h, &hl);
	if (rc != 0 ||
	    h.kind != (op->call != NULL ? TP_NNG_REPLY : TP_NNG_ACK) ||
	    (op->ev != NULL && len != hl)) {
		describe(detail, dlen, "%s: undecodable reply (%s)", n->where,
		         rc != 0 ? ms_strerror(rc)
		                 : tp_nng_kind_name((int)h.kind));
		return MS_EPROTO;
	}
	*reached = true;
	describe(detail, dlen, "%s", h.detail);
	if (h.status != 0 || op->call == NULL) {
		return h.status;
	}
	op->call->reply_len = len - hl;
	op->call->reply = malloc(len > hl ? len - hl : 1);
	if (op->call->reply == NULL) {
		op->call->reply_len = 0;
		return MS_ENOMEM;
	}
	memcpy(op->call->reply, body + hl, len - hl);
	return 0;
}

/*
 * op_done is every op's aio callback (nng's thread). After a send, it
 * starts the receive; after a receive (or any failure) it completes the
 * op. Must not block.
 */
static void
op_done(void *arg)
{
	struct op *op = arg;
	struct tpn *n = op->n;
	int rv = nng_aio_result(op->aio);
	nng_msg *msg = NULL;
	char detail[BUS_DETAIL_LEN] = "";
	bool reached = true;
	int rc = 0;

	pthread_mutex_lock(&n->mtx);
	if (op->phase == PH_SEND) {
		if (rv != 0) {
			/* A failed send leaves the message with us. */
			nng_msg_free(nng_aio_get_msg(op->aio));
			nng_aio_set_msg(op->aio, NULL);
			reached = false;
			if (n->closing) {
				rc = MS_ECLOSED;
			} else if (rv == NNG_ETIMEDOUT && n->npipes == 0) {
				rc = MS_EUNAVAIL;
				describe(detail, sizeof(detail),
				         "cannot reach %s: not connected "
				         "(nobody listening there?)",
				         n->where);
			} else {
				rc = from_nng(rv);
				describe(detail, sizeof(detail),
				         "cannot send to %s: %s", n->where,
				         nng_strerror(rv));
			}
		} else if (n->closing) {
			rc = MS_ECLOSED;
		} else {
			int64_t left = op->deadline_ms - ms_now_ms();

			if (left > 0) {
				op->phase = PH_RECV;
				nng_aio_set_timeout(op->aio,
				                    (nng_duration)left);
				nng_ctx_recv(op->ctx, op->aio);
				pthread_mutex_unlock(&n->mtx);
				return;
			}
			rc = MS_ETIMEDOUT;
		}
	} else if (rv == 0) {
		msg = nng_aio_get_msg(op->aio);
		nng_aio_set_msg(op->aio, NULL);
	} else if (rv == NNG_ETIMEDOUT) {
		rc = MS_ETIMEDOUT;
		describe(detail, sizeof(detail),
		         "no answer from %s within the deadline", n->where);
	} else if (n->closing) {
		rc = MS_ECLOSED;
	} else if (op->lost || rv == NNG_ECONNRESET) {
		rc = MS_EUNAVAIL;
		reached = false;
		describe(detail, sizeof(detail),
		         "cannot reach %s: the connection was lost before "
		         "the answer",
		         n->where);
	} else {
		rc = from_nng(rv);
		describe(detail, sizeof(detail), "%s: %s", n->where,
		         nng_strerror(rv));
	}
	op->phase = PH_DONE;
	pthread_mutex_unlock(&n->mtx);

	if (msg != NULL) {
		rc = decode_reply(n, op, msg, detail, sizeof(detail), &reached);
		nng_msg_free(msg);
	}
	if (rc != MS_ECLOSED) {
		pthread_mutex_lock(&n->mtx);
		if (reached || rc == MS_EUNAVAIL) {
			note_reach(n, reached ? 0 : rc, detail);
		}
		pthread_mutex_unlock(&n->mtx);
	}
	op_finish(n, op, rc, detail);
}

/* pipe_event tracks the connections of a client's socket (nng's thread).
 * When the last one goes, ops waiting for a reply fail at once. */
static void
pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct tpn *n = arg;
	uint32_t id = (uint32_t)nng_pipe_id(p);
	bool up = false;
	bool down = false;
	bool closing;

	pthread_mutex_lock(&n->mtx);
	if (ev == NNG_PIPE_EV_ADD_POST) {
		if (n->npipes < PIPES_MAX) {
			n->pipes[n->npipes++] = id;
			up = n->npipes == 1;
		}
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		for (int i = 0; i < n->npipes; i++) {
			if (n->pipes[i] == id) {
				n->pipes[i] = n->pipes[--n->npipes];
				down = n->npipes == 0;
				break;
			}
		}
	}
	if (down) {
		n->down_since = ms_now_ms();
		n->reached = false;
		for (size_t i = 0; i < n->nops; i++) {
			if (n->ops[i]->phase == PH_RECV) {
				n->ops[i]->lost = true;
				nng_aio_cancel(n->ops[i]->aio);
			}
		}
	}
	closing = n->closing;
	pthread_mutex_unlock(&n->mtx);
	if (up) {
		MS_INFO("nng", "connected to %s", n->where);
	} else if (down && !closing) {
		MS_WARN("nng", "lost the connection to %s", n->where);
	}
}

/* ---- client: starting ops ---------------------------------------------- */

/* Takes an op from the pool, creating one when the pool is empty. Under
 * n->mtx. Returns 0, MS_EFULL (OPS_MAX in flight) or MS_ENOMEM. */
static int
op_get(struct tpn *n, struct op **out)
{
	struct op *op = n->free;

	if (op != NULL) {
		n->free = op->next;
		*out = op;
		return 0;
	}
	if (n->nops == OPS_MAX) {
		return MS_EFULL;
	}
	if ((op = calloc(1, sizeof(*op))) == NULL) {
		return MS_ENOMEM;
	}
	op->n = n;
	if (nng_aio_alloc(&op->aio, op_done, op) != 0) {
		free(op);
		return MS_ENOMEM;
	}
	if (nng_ctx_open(&op->ctx, n->sock) != 0) {
		nng_aio_free(op->aio);
		free(op);
		return MS_ENOMEM;
	}
	n->ops[n->nops++] = op;
	*out = op;
	return 0;
}

/*
 * op_send starts sending |msg| for a call (|c|) or an event (|ev|) whose
 * deadline is |deadline_ms|. Returns 0 (the op will complete), or an error
 * with *detail set when it failed before anything started (the caller
 * completes inline, or returns the code): MS_ECLOSED, MS_EFULL, MS_ENOMEM,
 * MS_EUNAVAIL (disconnected for longer than connect_timeout_ms).
 * Takes |msg| in every case.
 */
static int
op_send(struct tpn *n, struct bus_call *c, struct bus_event *ev,
        int64_t deadline_ms, nng_msg *msg, char *detail, size_t dlen)
{
	int64_t now = ms_now_ms();
	int64_t until = deadline_ms;
	struct op *op;
	int rc;

	pthread_mutex_lock(&n->mtx);
	if (!n->running || n->closing) {
		rc = MS_ECLOSED;
		goto fail;
	}
	if (n->npipes == 0 && !n->reached) {
		int64_t grace = n->down_since + n->connect_ms;

		if (now >= grace) {
			rc = MS_EUNAVAIL;
			describe(detail, dlen,
			         "cannot reach %s: not connected for %lld ms",
			         n->where, (long long)(now - n->down_since));
			goto fail;
		}
		if (grace < until) {
			until = grace;
		}
	}
	if ((rc = op_get(n, &op)) != 0) {
		describe(detail, dlen, "%s: %s", n->where, ms_strerror(rc));
		goto fail;
	}
	op->call = c;
	op->ev = ev;
	op->deadline_ms = deadline_ms;
	op->lost = false;
	op->phase = PH_SEND;
	n->inflight++;
	nng_aio_set_msg(op->aio, msg);
	nng_aio_set_timeout(op->aio,
	                    (nng_duration)(until > now ? until - now : 1));
	nng_ctx_send(op->ctx, op->aio);
	pthread_mutex_unlock(&n->mtx);
	return 0;
fail:
	pthread_mutex_unlock(&n->mtx);
	nng_msg_free(msg);
	return rc;
}

static int
tpn_call(struct bus_transport *t, struct bus_call *c)
{
	struct tpn *n = tp_priv(t);
	struct tp_nng_hdr h;
	int64_t left = c->deadline_ms - ms_now_ms();
	nng_msg *msg;
	int rc;

	assert(!n->is_server);
	c->detail[0] = '\0';
	if (left <= 0) {
		rc = MS_ETIMEDOUT;
		describe(c->detail, sizeof(c->detail),
		         "deadline exceeded before the call to %s", n->where);
		goto inline_done;
	}
	if (c->req_len > n->max_message) {
		rc = MS_ETOOBIG;
		describe(c->detail, sizeof(c->detail),
		         "the request of %zu bytes is over nng.max_message "
		         "(%zu)",
		         c->req_len, n->max_message);
		goto inline_done;
	}
	memset(&h, 0, sizeof(h));
	h.kind = TP_NNG_CALL;
	h.timeout_ms = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
	/* A name over its bound is refused, never cut: build_msg fails. */
	if (ms_strlcpy(h.service, c->service, sizeof(h.service)) >=
	        sizeof(h.service) ||
	    ms_strlcpy(h.method, c->method, sizeof(h.method)) >=
	        sizeof(h.method) ||
	    (c->traceparent != NULL &&
	     ms_strlcpy(h.traceparent, c->traceparent, sizeof(h.traceparent)) >=
	         sizeof(h.traceparent))) {
		rc = MS_EINVAL;
	} else {
		rc = build_msg(&h, c->req, c->req_len, &msg);
	}
	if (rc != 0) {
		if (rc == MS_ENOMEM) {
			return rc;
		}
		describe(c->detail, sizeof(c->detail),
		         "%s/%s cannot be sent over nng", c->service,
		         c->method);
		goto inline_done;
	}
	rc = op_send(n, c, NULL, c->deadline_ms, msg, c->detail,
	             sizeof(c->detail));
	if (rc == 0) {
		return 0;
	}
	if (rc != MS_EUNAVAIL) {
		return rc; /* MS_ECLOSED, MS_EFULL, MS_ENOMEM: not completed */
	}
inline_done:
	c->rc = rc;
	bus_call_complete(c);
	return 0;
}

static int
tpn_publish(struct bus_transport *t, struct bus_event *ev)
{
	struct tpn *n = tp_priv(t);
	struct tp_nng_hdr h;
	char detail[BUS_DETAIL_LEN] = "";
	nng_msg *msg;
	int rc;

	assert(!n->is_server);
	if (ev->len > n->max_message) {
		MS_ERROR("nng",
		         "%s: event %s (%s) of %zu bytes is over "
		         "nng.max_message (%zu): it can never be delivered",
		         n->where, ev->id, ev->type, ev->len, n->max_message);
		ev->done(ev, MS_EINVAL);
		return 0;
	}
	memset(&h, 0, sizeof(h));
	h.kind = TP_NNG_EVENT;
	h.timeout_ms = (uint32_t)n->event_timeout_ms;
	h.occurred_ms = ev->occurred_ms;
	h.attempt = ev->attempt;
	if (ms_strlcpy(h.id, ev->id, sizeof(h.id)) >= sizeof(h.id) ||
	    ms_strlcpy(h.type, ev->type, sizeof(h.type)) >= sizeof(h.type) ||
	    (ev->traceparent != NULL &&
	     ms_strlcpy(h.traceparent, ev->traceparent,
	                sizeof(h.traceparent)) >= sizeof(h.traceparent))) {
		rc = MS_EINVAL;
	} else {
		rc = build_msg(&h, ev->payload, ev->len, &msg);
	}
	if (rc != 0) {
		if (rc == MS_ENOMEM) {
			return rc;
		}
		MS_ERROR("nng", "%s: event %s (%s) cannot be encoded", n->where,
		         ev->id, ev->type);
		ev->done(ev, MS_EINVAL);
		return 0;
	}
	rc = op_send(n, NULL, ev, ms_now_ms() + n->event_timeout_ms, msg,
	             detail, sizeof(detail));
	if (rc == MS_EUNAVAIL) {
		MS_DEBUG("nng", "event %s: %s", ev->id, detail);
		ev->done(ev, rc);
		return 0;
	}
	return rc;
}

static int
client_start(struct tpn *n)
{
	int rv;

	n->ops = calloc(OPS_MAX, sizeof(*n->ops));
	if (n->ops == NULL) {
		return MS_ENOMEM;
	}
	if ((rv = nng_req0_open(&n->sock)) != 0) {
		MS_ERROR("nng", "req socket: %s", nng_strerror(rv));
		free(n->ops);
		n->ops = NULL;
		return from_nng(rv);
	}
	n->sock_open = true;
	if ((rv = nng_socket_set_ms(n->sock, NNG_OPT_REQ_RESENDTIME,
	                            NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_size(n->sock, NNG_OPT_RECVMAXSZ,
	                              n->max_message + TP_NNG_WIRE_HDR_MAX)) !=
	        0 ||
	    (rv = nng_pipe_notify(n->sock, NNG_PIPE_EV_ADD_POST, pipe_event,
	                          n)) != 0 ||
	    (rv = nng_pipe_notify(n->sock, NNG_PIPE_EV_REM_POST, pipe_event,
	                          n)) != 0 ||
	    (rv = nng_dialer_create(&n->dialer, n->sock, n->url)) != 0 ||
	    (rv = nng_dialer_set_ms(n->dialer, NNG_OPT_RECONNMINT,
	                            RECONN_MIN_MS)) != 0 ||
	    (rv = nng_dialer_set_ms(n->dialer, NNG_OPT_RECONNMAXT,
	                            RECONN_MAX_MS)) != 0) {
		MS_ERROR("nng", "%s: %s", n->where, nng_strerror(rv));
		goto fail;
	}
	pthread_mutex_lock(&n->mtx);
	n->down_since = ms_now_ms();
	n->running = true;
	pthread_mutex_unlock(&n->mtx);
	/* Non-blocking: the first attempt runs in the background and
	 * failures are retried there; ops wait for it (connect_timeout_ms). */
	if ((rv = nng_dialer_start(n->dialer, NNG_FLAG_NONBLOCK)) != 0) {
		MS_ERROR("nng", "%s: cannot dial: %s", n->where,
		         nng_strerror(rv));
		pthread_mutex_lock(&n->mtx);
		n->running = false;
		pthread_mutex_unlock(&n->mtx);
		goto fail;
	}
	return 0;
fail:
	nng_close(n->sock);
	n->sock_open = false;
	free(n->ops);
	n->ops = NULL;
	return from_nng(rv);
}

static void
client_stop(struct tpn *n)
{
	pthread_mutex_lock(&n->mtx);
	n->closing = true;
	n->running = false;
	for (size_t i = 0; i < n->nops; i++) {
		if (n->ops[i]->phase == PH_SEND ||
		    n->ops[i]->phase == PH_RECV) {
			nng_aio_cancel(n->ops[i]->aio);
		}
	}
	/* Every op completes promptly now (MS_ECLOSED), on nng's threads. */
	while (n->inflight > 0) {
		pthread_cond_wait(&n->cv, &n->mtx);
	}
	pthread_mutex_unlock(&n->mtx);
	close_socket(n); /* closes the dialer and the contexts too */
	for (size_t i = 0; i < n->nops; i++) {
		nng_aio_free(n->ops[i]->aio);
		free(n->ops[i]);
	}
	free(n->ops);
	n->ops = NULL;
	n->nops = 0;
	n->free = NULL;
}

/* ---- ops table --------------------------------------------------------- */

static int
tpn_start(struct bus_transport *t)
{
	struct tpn *n = tp_priv(t);

	return n->is_server ? server_start(n) : client_start(n);
}

/* quiesce: a server answers new requests MS_EUNAVAIL from now on, while
 * those its workers hold finish; a client has nothing coming in. */
static void
tpn_quiesce(struct bus_transport *t)
{
	struct tpn *n = tp_priv(t);

	if (n->is_server) {
		atomic_store(&n->draining, true);
	}
}

static void
tpn_stop(struct bus_transport *t)
{
	struct tpn *n = tp_priv(t);

	if (n->is_server) {
		server_stop(n);
	} else if (n->ops != NULL) {
		client_stop(n);
	}
}

static int
tpn_health(struct bus_transport *t, char *desc, size_t desclen)
{
	struct tpn *n = tp_priv(t);
	int64_t now = ms_now_ms();
	int rc = 0;

	pthread_mutex_lock(&n->mtx);
	if (!n->running) {
		describe(desc, desclen, "%s: not running", n->where);
		rc = MS_ECLOSED;
	} else if (n->is_server) {
		describe(desc, desclen, "listening on %s", n->where);
	} else if (n->npipes > 0 || n->reached) {
		describe(desc, desclen, "connected to %s", n->where);
	} else if (n->last_rc != 0) {
		describe(desc, desclen, "%s", n->last_err);
		rc = MS_EUNAVAIL;
	} else if (now - n->down_since < n->connect_ms) {
		describe(desc, desclen, "connecting to %s", n->where);
	} else {
		describe(desc, desclen,
		         "cannot reach %s: not connected for %lld ms", n->where,
		         (long long)(now - n->down_since));
		rc = MS_EUNAVAIL;
	}
	pthread_mutex_unlock(&n->mtx);
	return rc;
}

/* The tcp table alone names the listener, so one server instance exists
 * per process; it listens on nng.listen in either form. */
const struct bus_transport_ops tp_nng_tcp_ops = {
    .scheme = "nng+tcp",
    .caps = BUS_CAP_CALL | BUS_CAP_EVENTS | BUS_CAP_SERVE,
    .priv_size = sizeof(struct tpn),
    .listen_key = "nng.listen",
    .init = tpn_init,
    .start = tpn_start,
    .quiesce = tpn_quiesce,
    .stop = tpn_stop,
    .fini = tpn_fini,
    .call = tpn_call,
    .publish = tpn_publish,
    .health = tpn_health,
};

/* The same transport for "nng+ipc://" URLs (clients only: see above). */
const struct bus_transport_ops tp_nng_ipc_ops = {
    .scheme = "nng+ipc",
    .caps = BUS_CAP_CALL | BUS_CAP_EVENTS | BUS_CAP_SERVE,
    .priv_size = sizeof(struct tpn),
    .listen_key = NULL,
    .init = tpn_init,
    .start = tpn_start,
    .quiesce = tpn_quiesce,
    .stop = tpn_stop,
    .fini = tpn_fini,
    .call = tpn_call,
    .publish = tpn_publish,
    .health = tpn_health,
};
