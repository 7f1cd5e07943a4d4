/* SPDX-License-Identifier: MIT */
/*
 * The gRPC server (server.h): one nghttp2 server session per accepted
 * connection, driven without I/O (nghttp2_session_mem_recv on the bytes
 * loop.c hands us, nghttp2_session_mem_send into tp_grpc_conn_write), and
 * a pool of worker threads that run bus_dispatch, because handlers may
 * block on SQLite and the loop must not (methods their module marked quick
 * with bus_inline run on the loop thread itself, see dispatch_inline). Beside
 * the bus's services it answers grpc.health.v1.Health (Check, Watch) and server
 * reflection (v1 and v1alpha, one handler) itself, on the loop thread: both are
 * lookups in memory built at start.
 *
 * A call's life: HEADERS → on_request_headers checks :method, content-type
 * and :path and picks the handler; DATA → the tp_grpc_reader reassembles
 * length-prefixed messages; END_STREAM → the call runs (bus calls go to the
 * worker queue; the result comes back with tp_grpc_loop_post). Response
 * headers wait for the first message (gRFC A6), so every failure before it
 * is Trailers-Only. After our END_STREAM, a client still sending gets
 * RST_STREAM (wire.md §1.4), sent from on_frame_send once the trailers are
 * really out.
 *
 * Limits against slow and idle clients: the connection preface must come
 * within grpc.request_timeout_s of the accept, and each call's request
 * within as long of its first HEADERS byte (else CANCELLED; a header block
 * still incomplete costs the connection); a connection with no call that
 * sends no frame for grpc.idle_timeout_s gets GOAWAY and is closed.
 * Access: with grpc.api_key set, a method the module marked with
 * bus_restrict needs the metadata x-api-key (one value, compared in
 * constant time), else UNAUTHENTICATED, decided from the headers.
 *
 * Threads:
 *  - main thread: tp_grpc_server_start / _quiesce / _stop;
 *  - loop thread: connections, nghttp2 sessions, streams, timers, the
 *    health and reflection handlers; every struct conn / struct stream
 *    field, and job->st;
 *  - worker threads: bus_dispatch on a job's request, then post it back;
 *  - any thread: tp_grpc_server_health.
 * |mu| guards the job queue, |workers_stop| and |nconns|; |stopping| is
 * atomic. The served-service names and the reflection index are written
 * at start and only read afterwards.
 *
 * Ownership: a struct conn is owned by its loop connection (freed in
 * on_close); a struct stream by its nghttp2 stream (freed in
 * on_stream_close, or in on_close when the session goes); a struct job is
 * reference counted between the stream that submitted it and the worker
 * side (queue, handler, post back), so that either may go first.
 */
#include "transport/grpc/server.h"

#include <assert.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/trace.h"
#include "core/util.h"
#include "descriptors.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "transport/grpc/loop.h"
#include "transport/grpc/wire.h"
#include "transport/transport.h"

#define SUB "grpc"

#define MAX_SERVED       32  /* bus services we list (the bus holds 16) */
#define SERVICE_LEN      128 /* "package.Service" */
#define METHOD_LEN       64  /* "Method" */
#define PATH_LEN         (SERVICE_LEN + METHOD_LEN + 2)
#define TRACEPARENT_LEN  64 /* W3C traceparent is 55 characters */
#define GMSG_LEN         (3 * BUS_DETAIL_LEN + 1) /* percent-encoded detail */
#define QUEUE_PER_WORKER 64         /* calls waiting for a worker, per worker */
#define STREAM_WINDOW    (1 << 20)  /* per-stream receive window */
#define CONN_WINDOW      (16 << 20) /* per-connection receive window */
#define MAX_HEADER_LIST  16384      /* SETTINGS_MAX_HEADER_LIST_SIZE */
#define MAX_PING_STRIKES 2          /* gRFC A8: GOAWAY after more */
#define MAX_NESTING      32 /* descriptor nesting the reflection index walks */
#define SYMBOL_LEN       512
#define REFUSE_LOG_MS    10000 /* at most one "refused" line per 10 s */
#define API_KEY_MAX      256   /* grpc.api_key: the config's bound */
/* Response bytes a stream may hold that nghttp2 has not taken yet (the
 * client is slow to read): one message of the largest size, plus slack for
 * the small ones of a streaming call. */
#define OUT_SLACK (64 * 1024)

#define HEALTH_SERVICE "grpc.health.v1.Health"
#define REFLECT_V1     "grpc.reflection.v1.ServerReflection"
#define REFLECT_V1A    "grpc.reflection.v1alpha.ServerReflection"

/* protoc-c's names for the oneof cases and the serving status, cut
 * short. */
#define REQ_(x)                                                                \
	GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##x
#define RESP_(x)                                                               \
	GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x
#define HEALTH_(x) GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__##x

#define DURATION_METRIC "monoshop_grpc_server_duration_seconds"
#define REQUESTS_METRIC "monoshop_grpc_server_requests_total"

enum kind {
	K_NONE = 0,     /* not classified (yet): the request was refused */
	K_BUS,          /* a service served on the bus: runs on a worker */
	K_HEALTH_CHECK, /* unary, on the loop */
	K_HEALTH_WATCH, /* server streaming, on the loop */
	K_REFLECT,      /* bidi streaming, on the loop */
};

struct tp_grpc_server;
struct conn;
struct stream;

/*
 * One bus call handed to the workers. Two references: the stream's link
 * (dropped when the stream goes or the result comes back) and the worker
 * side's (dropped after the result was posted and handled, or when the post
 * fails because the loop is stopping).
 */
struct job {
	atomic_int refs;
	atomic_bool cancelled; /* the stream is gone: skip the handler */
	struct stream *st;     /* loop thread only; NULL once detached */
	char service[SERVICE_LEN];
	char method[METHOD_LEN];
	char traceparent[TRACEPARENT_LEN]; /* "" when none came */
	uint8_t *req;                      /* owned */
	size_t req_len;
	int64_t deadline_ms; /* 0: none */
	/* result, written by the worker before the post */
	int rc;
	uint8_t *reply; /* owned, malloc'd by bus_dispatch */
	size_t reply_len;
	char detail[BUS_DETAIL_LEN];
};

/* One gRPC call: one HTTP/2 stream. Loop thread only. */
struct stream {
	struct conn *conn;
	int32_t id;
	struct stream *prev, *next; /* conn->streams */
	enum kind kind;
	int64_t t0_us;

	/* request headers, as they come */
	bool is_post;
	bool ctype_ok;
	bool path_bad; /* longer than we keep */
	char path[PATH_LEN];
	char traceparent[TRACEPARENT_LEN];
	bool has_timeout;
	int64_t timeout_ms;
	bool encoded; /* grpc-encoding names a coding other than identity */
	char service[SERVICE_LEN];
	char method[METHOD_LEN];
	bool headers_done; /* the request's header block is complete */
	int keys;          /* x-api-key values received */
	bool key_ok;       /* exactly one, and it is grpc.api_key */
	/* grpc.request_timeout_s: from the first HEADERS byte to the
	 * request's END_STREAM (not for bidi reflection) */
	struct tp_grpc_timer rx_timer;

	/* request messages */
	struct tp_grpc_reader reader;
	uint8_t *req; /* the single request of a unary/server-streaming call */
	size_t req_len;
	size_t nreq;

	int64_t deadline_ms; /* 0: none */
	struct tp_grpc_timer timer;
	struct job *job; /* out on a worker, or NULL */
	bool watching;   /* Health/Watch waiting for changes */

	/* response */
	bool headers_sent; /* response HEADERS submitted, with a provider */
	bool finished;     /* the status is decided (submitted or due) */
	bool trailers_due; /* send the trailers once |out| drains */
	bool accept_enc;   /* add grpc-accept-encoding: identity */
	int status;
	char gmsg[GMSG_LEN]; /* grpc-message, already percent-encoded */
	uint32_t rst_code;   /* RST after our END_STREAM if still sending */
	uint8_t *out;        /* messages not yet taken by nghttp2 (owned) */
	size_t out_off, out_len, out_cap;
};

/* One accepted connection. Loop thread only. */
struct conn {
	struct tp_grpc_server *srv;
	struct tp_grpc_conn *c;
	nghttp2_session *ses;
	struct conn *prev, *next; /* srv->conns */
	struct stream *streams;
	int64_t last_ping_ms; /* 0: no ping since we last sent HEADERS/DATA */
	int strikes;
	bool calm;      /* GOAWAY(ENHANCE_YOUR_CALM) submitted */
	bool calm_sent; /* ... and sent: close now */
	bool closing;   /* tp_grpc_conn_close called */
	/* slow and idle clients (grpc.request_timeout_s, idle_timeout_s) */
	struct tp_grpc_timer timer;
	int64_t accepted_ms;
	int64_t last_rx_ms; /* a frame (or a header block) began */
	bool got_preface;   /* the client's first SETTINGS arrived */
	bool idled;         /* GOAWAY for idleness submitted */

	/* answered calls not flushed yet: on srv->flush_list */
	bool flush_due;
	struct conn *flush_next;
};

/* The reflection index over the embedded FileDescriptorSet. */
struct refl_file {
	const uint8_t *p; /* the FileDescriptorProto bytes (static) */
	size_t len;
	char *name;        /* owned */
	size_t dep0, ndep; /* range in refl.deps */
};

struct refl_sym {
	char *name; /* owned, full name without a leading dot */
	size_t file;
};

struct refl {
	struct refl_file *files;
	size_t nfiles, capfiles;
	char **deps; /* owned strings: dependency file names */
	size_t ndeps, capdeps;
	struct refl_sym *syms;
	size_t nsyms, capsyms;
};

struct tp_grpc_server {
	struct bus *bus;
	struct tp_grpc_server_opts opts; /* opts.listen is not kept */
	char bound[300]; /* "HOST:PORT" with the port bound, for logs */
	struct tp_grpc_loop *loop;
	nghttp2_session_callbacks *cbs;
	const char *served[MAX_SERVED];
	size_t nserved;
	struct refl refl;

	char api_key[API_KEY_MAX + 1]; /* grpc.api_key, or "" */
	size_t api_key_len;
	struct conn *conns; /* loop thread */
	/* loop thread: connections with answers not flushed yet */
	struct conn *flush_list;
	uint64_t refused;       /* loop thread: connections refused */
	int64_t refused_log_ms; /* loop thread: last "refused" log line */
	atomic_bool stopping;
	/* main thread only: the quiesce (begin_shutdown posted or not) */
	bool quiesced;
	bool shutdown_posted;
	int64_t quiesce_ms; /* ms_now_ms at the quiesce */

	pthread_mutex_t mu;
	pthread_cond_t work_cv; /* a job was queued, or stop */
	pthread_cond_t idle_cv; /* nconns dropped */
	struct job **queue;     /* ring of qcap */
	size_t qcap, qhead, qlen;
	bool workers_stop;
	int nconns;
	pthread_t *workers;
	int nworkers;
};

static void conn_flush(struct conn *cn);
static void finish(struct stream *st, int status, const char *msg);

/* ---- small helpers ------------------------------------------------------ */

/* nghttp2 copies names and values on submit (no NO_COPY flags here), so
 * they may live on the caller's stack. */
static nghttp2_nv
mknv(const char *name, const char *value)
{
	nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, strlen(name),
	                 strlen(value), NGHTTP2_NV_FLAG_NONE};

	return nv;
}

static bool
is_served(const struct tp_grpc_server *srv, const char *service)
{
	for (size_t i = 0; i < srv->nserved; i++) {
		if (strcmp(srv->served[i], service) == 0) {
			return true;
		}
	}
	return false;
}

/* A metric label must not carry what a client typed into :path unchecked:
 * only names made of [A-Za-z0-9_.] are used as they are. */
static bool
label_safe(const char *s)
{
	if (*s == '\0') {
		return false;
	}
	for (; *s; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '.')) {
			return false;
		}
	}
	return true;
}

/* Counts one finished call and its duration. */
static void
record(const struct stream *st, int status)
{
	char method[PATH_LEN + 8];
	char labels[PATH_LEN + 64];

	/* Unknown services and methods would make one series per name a
	 * client invents: they share one. */
	if (st->kind == K_NONE || status == TP_GRPC_UNIMPLEMENTED ||
	    !label_safe(st->service) || !label_safe(st->method)) {
		snprintf(method, sizeof(method), "unknown");
	} else {
		snprintf(method, sizeof(method), "/%s/%s", st->service,
		         st->method);
	}
	snprintf(labels, sizeof(labels), "method=\"%s\",code=\"%s\"", method,
	         tp_grpc_status_name(status));
	ms_metrics_count(REQUESTS_METRIC, labels, 1);
	snprintf(labels, sizeof(labels), "method=\"%s\"", method);
	ms_metrics_observe(DURATION_METRIC, labels,
	                   (double)(ms_now_us() - st->t0_us) / 1e6);
}

/* ---- responses ---------------------------------------------------------- */

/* The status part of the trailers (or of a Trailers-Only response). Fills
 * |nv| from index |n| on; returns the new count. |code| holds the digits. */
static size_t
status_nv(const struct stream *st, nghttp2_nv *nv, size_t n, char code[8])
{
	snprintf(code, 8, "%d", st->status);
	nv[n++] = mknv("grpc-status", code);
	if (st->gmsg[0] != '\0') {
		nv[n++] = mknv("grpc-message", st->gmsg);
	}
	if (st->accept_enc) {
		nv[n++] = mknv("grpc-accept-encoding", "identity");
	}
	return n;
}

static int
submit_trailers(struct stream *st)
{
	nghttp2_nv nv[3];
	char code[8];
	size_t n = status_nv(st, nv, 0, code);

	return nghttp2_submit_trailer(st->conn->ses, st->id, nv, n);
}

/*
 * nghttp2 pulls the response body from here. The messages wait in
 * st->out; with none left, the stream sleeps (DEFERRED) until the next
 * message or the status resumes it. The end is EOF without END_STREAM,
 * followed by the trailers, which nghttp2 lets us submit from inside this
 * callback.
 */
static ssize_t
read_cb(nghttp2_session *ses, int32_t id, uint8_t *buf, size_t length,
        uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct stream *st = src->ptr;
	size_t n = st->out_len - st->out_off;

	if (n > length) {
		n = length;
	}
	if (n > 0) {
		memcpy(buf, st->out + st->out_off, n);
		st->out_off += n;
	}
	if (st->out_off < st->out_len) {
		return (ssize_t)n;
	}
	st->out_off = st->out_len = 0;
	if (st->trailers_due) {
		*flags |=
		    NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (submit_trailers(st) != 0) {
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		}
		return (ssize_t)n;
	}
	return n > 0 ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
}

/*
 * out_reserve makes room for one message of |len| bytes at the end of
 * st->out and writes its prefix. Returns where the body goes, or NULL
 * after finishing the stream with RESOURCE_EXHAUSTED (message over
 * grpc.max_message, a client that does not read, no memory).
 */
static uint8_t *
out_reserve(struct stream *st, size_t len)
{
	const struct tp_grpc_server *srv = st->conn->srv;
	size_t pending = st->out_len - st->out_off;
	size_t need = TP_GRPC_PREFIX_LEN + len;
	uint8_t *p;

	if (len > srv->opts.max_message || len > UINT32_MAX) {
		finish(st, TP_GRPC_RESOURCE_EXHAUSTED,
		       "response larger than grpc.max_message");
		return NULL;
	}
	if (pending + need > srv->opts.max_message + OUT_SLACK) {
		finish(st, TP_GRPC_RESOURCE_EXHAUSTED,
		       "too many responses waiting: the client does not read");
		return NULL;
	}
	if (st->out_len + need > st->out_cap) {
		if (st->out_off > 0) {
			memmove(st->out, st->out + st->out_off, pending);
			st->out_off = 0;
			st->out_len = pending;
		}
		if (pending + need > st->out_cap) {
			size_t cap = st->out_cap ? st->out_cap * 2 : 256;

			if (cap < pending + need) {
				cap = pending + need;
			}
			if ((p = realloc(st->out, cap)) == NULL) {
				finish(st, TP_GRPC_RESOURCE_EXHAUSTED,
				       "out of memory");
				return NULL;
			}
			st->out = p;
			st->out_cap = cap;
		}
	}
	p = st->out + st->out_len;
	tp_grpc_frame_header(p, (uint32_t)len);
	st->out_len += need;
	return p + TP_GRPC_PREFIX_LEN;
}

/* out_commit gets a message just reserved on its way: the response
 * headers go with the first one (gRFC A6: not before), later ones wake the
 * data provider. */
static int
out_commit(struct stream *st)
{
	nghttp2_nv nv[2] = {mknv(":status", "200"),
	                    mknv("content-type", "application/grpc")};
	nghttp2_data_provider prd;

	if (st->headers_sent) {
		/* Fails only when the provider is not deferred: then it
		 * runs anyway. */
		nghttp2_session_resume_data(st->conn->ses, st->id);
		return 0;
	}
	prd.source.ptr = st;
	prd.read_callback = read_cb;
	if (nghttp2_submit_response(st->conn->ses, st->id, nv, 2, &prd) != 0) {
		st->finished = true;
		nghttp2_submit_rst_stream(st->conn->ses, NGHTTP2_FLAG_NONE,
		                          st->id, NGHTTP2_INTERNAL_ERROR);
		return MS_ENOMEM;
	}
	st->headers_sent = true;
	return 0;
}

/* send_bytes / send_pb queue one response message. Return 0, or an error
 * after the stream was finished (or reset) here. */
static int
send_bytes(struct stream *st, const uint8_t *msg, size_t len)
{
	uint8_t *p = out_reserve(st, len);

	if (p == NULL) {
		return MS_ETOOBIG;
	}
	if (len > 0) {
		memcpy(p, msg, len);
	}
	return out_commit(st);
}

static int
send_pb(struct stream *st, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *p = out_reserve(st, len);

	if (p == NULL) {
		return MS_ETOOBIG;
	}
	protobuf_c_message_pack(m, p);
	return out_commit(st);
}

static void detach_job(struct stream *st);

/*
 * finish decides the call's status. Before any message it is one HEADERS
 * frame with END_STREAM (Trailers-Only); after, the trailers follow the
 * messages still queued. Idempotent: the first status wins.
 */
static void
finish(struct stream *st, int status, const char *msg)
{
	struct conn *cn = st->conn;
	nghttp2_nv nv[5];
	char code[8];
	size_t n = 0;

	if (st->finished) {
		return;
	}
	st->finished = true;
	st->watching = false;
	tp_grpc_timer_stop(cn->srv->loop, &st->timer);
	detach_job(st);
	st->status = status;
	tp_grpc_percent_encode(msg ? msg : "", st->gmsg, sizeof(st->gmsg));
	record(st, status);
	if (st->headers_sent) {
		st->trailers_due = true;
		nghttp2_session_resume_data(cn->ses, st->id);
		return;
	}
	nv[n++] = mknv(":status", "200");
	nv[n++] = mknv("content-type", "application/grpc");
	n = status_nv(st, nv, n, code);
	if (nghttp2_submit_response(cn->ses, st->id, nv, n, NULL) != 0) {
		nghttp2_submit_rst_stream(cn->ses, NGHTTP2_FLAG_NONE, st->id,
		                          NGHTTP2_INTERNAL_ERROR);
	}
}

/* respond_http answers a request that is not gRPC at all with a bare HTTP
 * status (405, 415): no grpc-status, the client maps the HTTP code. */
static void
respond_http(struct stream *st, const char *code)
{
	nghttp2_nv nv[2] = {mknv(":status", code), mknv("allow", "POST")};

	st->finished = true;
	MS_DEBUG(SUB, "%s: stream %d: HTTP %s", tp_grpc_conn_peer(st->conn->c),
	         st->id, code);
	if (nghttp2_submit_response(st->conn->ses, st->id, nv,
	                            strcmp(code, "405") == 0 ? 2 : 1,
	                            NULL) != 0) {
		nghttp2_submit_rst_stream(st->conn->ses, NGHTTP2_FLAG_NONE,
		                          st->id, NGHTTP2_INTERNAL_ERROR);
	}
}

/* ---- bus calls: jobs and workers ---------------------------------------- */

static void
job_unref(struct job *job)
{
	if (atomic_fetch_sub(&job->refs, 1) == 1) {
		free(job->req);
		free(job->reply);
		free(job);
	}
}

/* detach_job cuts the link between |st| and its job: the result, when it
 * comes, is dropped, and a job still queued is skipped. */
static void
detach_job(struct stream *st)
{
	struct job *job = st->job;

	if (job == NULL) {
		return;
	}
	st->job = NULL;
	job->st = NULL;
	atomic_store(&job->cancelled, true);
	job_unref(job);
}

/* answer sends |job|'s result on |st|: its reply and OK, or its error. */
static void
answer(struct stream *st, const struct job *job)
{
	if (job->rc != 0) {
		finish(st, ms_err_grpc(job->rc), job->detail);
	} else if (send_bytes(st, job->reply, job->reply_len) == 0) {
		finish(st, TP_GRPC_OK, NULL);
	}
}

/* Loop thread: a worker is done with |arg|. The stream may be gone (client
 * reset, deadline, connection lost): then the result is dropped. */
static void
job_done(void *arg)
{
	struct job *job = arg;
	struct stream *st = job->st;

	if (st != NULL) {
		struct conn *cn = st->conn;

		st->job = NULL;
		job->st = NULL;
		job_unref(job); /* the stream's link; ours is still held */
		answer(st, job);
		/* Not flushed here: flush_answered does it once for all the
		 * answers of this batch of posts (one send(2) for many,
		 * where there used to be one per answer). */
		if (!cn->flush_due) {
			cn->flush_due = true;
			cn->flush_next = cn->srv->flush_list;
			cn->srv->flush_list = cn;
		}
	}
	job_unref(job);
}

/* Loop thread, after each batch of posts (tp_grpc_loop_on_posts). */
static void
flush_answered(void *arg)
{
	struct tp_grpc_server *srv = arg;

	while (srv->flush_list) {
		struct conn *cn = srv->flush_list;

		srv->flush_list = cn->flush_next;
		cn->flush_due = false;
		conn_flush(cn);
	}
}

/* job_run runs |job|'s handler, unless its stream is already gone. Any
 * thread (a worker's; the caller's in the test hook). */
static void
job_run(struct tp_grpc_server *srv, struct job *job)
{
	char saved[MS_TRACEPARENT_SIZE];
	int64_t t0;

	if (atomic_load(&job->cancelled)) {
		job->rc = MS_ECANCELED;
		return;
	}
	/* The call runs under the caller's trace (its traceparent metadata),
	 * or a new one when it sent none; one INFO line per served call, so
	 * that a trace can be followed through this process's log too. */
	ms_trace_save(saved);
	ms_trace_begin(job->traceparent[0] ? job->traceparent : NULL);
	t0 = ms_now_us();
	job->rc = bus_dispatch(
	    srv->bus, job->service, job->method, job->req, job->req_len,
	    job->deadline_ms, job->traceparent[0] ? job->traceparent : NULL,
	    &job->reply, &job->reply_len, job->detail, sizeof(job->detail));
	MS_INFO(SUB, "served /%s/%s: %s in %.3f ms", job->service, job->method,
	        tp_grpc_status_name(ms_err_grpc(job->rc)),
	        (double)(ms_now_us() - t0) / 1e3);
	ms_trace_restore(saved);
}

static void *
worker_main(void *arg)
{
	struct tp_grpc_server *srv = arg;

	for (;;) {
		struct job *job;

		pthread_mutex_lock(&srv->mu);
		while (srv->qlen == 0 && !srv->workers_stop) {
			pthread_cond_wait(&srv->work_cv, &srv->mu);
		}
		if (srv->workers_stop) {
			/* Jobs still queued belong to streams that are gone
			 * (the loop stopped first): stop frees them. */
			pthread_mutex_unlock(&srv->mu);
			return NULL;
		}
		job = srv->queue[srv->qhead];
		srv->qhead = (srv->qhead + 1) % srv->qcap;
		srv->qlen--;
		pthread_mutex_unlock(&srv->mu);

		job_run(srv, job);
		/* The post fails only once the loop has stopped: then no
		 * stream waits for the answer. */
		if (tp_grpc_loop_post(srv->loop, job_done, job) != 0) {
			job_unref(job);
		}
	}
}

/* job_take fills |job| (zeroed) with |st|'s call; the request moves to
 * the job. */
static void
job_take(struct job *job, struct stream *st)
{
	atomic_init(&job->cancelled, false);
	ms_strlcpy(job->service, st->service, sizeof(job->service));
	ms_strlcpy(job->method, st->method, sizeof(job->method));
	ms_strlcpy(job->traceparent, st->traceparent, sizeof(job->traceparent));
	job->req = st->req;
	job->req_len = st->req_len;
	job->deadline_ms = st->deadline_ms;
	st->req = NULL;
}

/* dispatch_inline runs a call marked quick (bus_inline) right here on the
 * loop thread, inside nghttp2's callback: the answer goes out with the
 * conn_flush that follows mem_recv, with no worker hand-off and no post
 * back (two thread wake-ups fewer per call). */
static void
dispatch_inline(struct stream *st)
{
	struct job job;

	memset(&job, 0, sizeof(job));
	job_take(&job, st);
	job_run(st->conn->srv, &job);
	answer(st, &job);
	free(job.req);
	free(job.reply);
}

/* dispatch hands a complete unary bus call to the workers (or runs it here
 * when its module marked it quick); a full queue is answered at once with
 * RESOURCE_EXHAUSTED (Trailers-Only, retryable by a client policy). */
static void
dispatch(struct stream *st)
{
	struct tp_grpc_server *srv = st->conn->srv;
	struct job *job;
	size_t waiting;

	if (bus_runs_inline(srv->bus, st->service, st->method)) {
		dispatch_inline(st);
		return;
	}
	job = calloc(1, sizeof(*job));
	if (job == NULL) {
		finish(st, TP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	atomic_init(&job->refs, 2);
	job->st = st;
	job_take(job, st);

	pthread_mutex_lock(&srv->mu);
	if (srv->workers_stop || srv->qlen == srv->qcap) {
		char msg[96];

		waiting = srv->qlen;
		pthread_mutex_unlock(&srv->mu);
		free(job->req);
		free(job);
		snprintf(msg, sizeof(msg), "server busy: %zu calls waiting",
		         waiting);
		finish(st, TP_GRPC_RESOURCE_EXHAUSTED, msg);
		return;
	}
	srv->queue[(srv->qhead + srv->qlen) % srv->qcap] = job;
	srv->qlen++;
	pthread_cond_signal(&srv->work_cv);
	pthread_mutex_unlock(&srv->mu);
	/* job_done runs on this (the loop) thread, so not before this. */
	st->job = job;
}

/* ---- grpc.health.v1.Health ---------------------------------------------- */

/* The status of |name|: "" is the server; then every bus service. */
static Grpc__Health__V1__HealthCheckResponse__ServingStatus
health_status(const struct tp_grpc_server *srv, const char *name, bool *known)
{
	*known = name[0] == '\0' || is_served(srv, name);
	if (!*known) {
		return HEALTH_(SERVICE_UNKNOWN);
	}
	return atomic_load(&srv->stopping) ? HEALTH_(NOT_SERVING)
	                                   : HEALTH_(SERVING);
}

/* Check (unary) and Watch (server streaming): Watch sends the current
 * status and stays open; stop sends NOT_SERVING and ends it with OK. */
static void
health(struct stream *st, bool watch)
{
	Grpc__Health__V1__HealthCheckRequest *req;
	Grpc__Health__V1__HealthCheckResponse resp =
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	bool known;

	req = grpc__health__v1__health_check_request__unpack(NULL, st->req_len,
	                                                     st->req);
	if (req == NULL) {
		finish(st, TP_GRPC_INTERNAL,
		       "cannot decode HealthCheckRequest");
		return;
	}
	resp.status = health_status(st->conn->srv, req->service, &known);
	if (!watch && !known) {
		char msg[SERVICE_LEN + 32];

		snprintf(msg, sizeof(msg), "unknown service %.*s", SERVICE_LEN,
		         req->service);
		finish(st, TP_GRPC_NOT_FOUND, msg);
	} else if (send_pb(st, &resp.base) == 0) {
		if (watch) {
			st->watching = true;
		} else {
			finish(st, TP_GRPC_OK, NULL);
		}
	}
	grpc__health__v1__health_check_request__free_unpacked(req, NULL);
}

/* ---- reflection: the descriptor index ----------------------------------- */

/*
 * A tiny protobuf reader, enough to walk FileDescriptorSet and the parts of
 * FileDescriptorProto that name things. pb_field reads the next field of
 * the message in [*p, end): its number, and for length-delimited fields the
 * bytes (other wire types are skipped, *val NULL). Returns 1, 0 at the end,
 * or MS_EPROTO.
 */
static int
pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;

	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return MS_EPROTO;
}

static int
pb_field(const uint8_t **p, const uint8_t *end, uint32_t *num,
         const uint8_t **val, size_t *len)
{
	uint64_t key, v;

	if (*p == end) {
		return 0;
	}
	if (pb_varint(p, end, &key) != 0) {
		return MS_EPROTO;
	}
	*num = (uint32_t)(key >> 3);
	*val = NULL;
	*len = 0;
	switch (key & 7) {
	case 0:
		return pb_varint(p, end, &v) == 0 ? 1 : MS_EPROTO;
	case 1:
		if (end - *p < 8) {
			return MS_EPROTO;
		}
		*p += 8;
		return 1;
	case 5:
		if (end - *p < 4) {
			return MS_EPROTO;
		}
		*p += 4;
		return 1;
	case 2:
		if (pb_varint(p, end, &v) != 0 || v > (uint64_t)(end - *p)) {
			return MS_EPROTO;
		}
		*val = *p;
		*len = (size_t)v;
		*p += v;
		return 1;
	default:
		return MS_EPROTO; /* groups: protoc never writes them here */
	}
}

/* pb_string finds the first length-delimited field |want| in a message. */
static int
pb_string(const uint8_t *p, size_t len, uint32_t want, const uint8_t **val,
          size_t *vlen)
{
	const uint8_t *end = p + len;
	uint32_t num;
	int rc;

	while ((rc = pb_field(&p, end, &num, val, vlen)) == 1) {
		if (num == want && *val != NULL) {
			return 0;
		}
	}
	*val = NULL;
	*vlen = 0;
	return rc == 0 ? MS_ENOTFOUND : rc;
}

static int
grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	void *p;
	size_t c;

	if (n < *cap) {
		return 0;
	}
	c = *cap ? *cap * 2 : 16;
	if ((p = realloc(*arr, c * elem)) == NULL) {
		return MS_ENOMEM;
	}
	*arr = p;
	*cap = c;
	return 0;
}

static char *
dup_bytes(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s != NULL) {
		memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

/* refl_sym_add indexes "|prefix|.|name|" (or |name| with no prefix) as
 * defined in |file|, and leaves the full name in |full|. */
static int
refl_sym_add(struct refl *r, size_t file, const char *prefix,
             const uint8_t *name, size_t nlen, char full[SYMBOL_LEN])
{
	int n;

	if (prefix[0] != '\0') {
		n = snprintf(full, SYMBOL_LEN, "%s.%.*s", prefix, (int)nlen,
		             (const char *)name);
	} else {
		n = snprintf(full, SYMBOL_LEN, "%.*s", (int)nlen,
		             (const char *)name);
	}
	if (n < 0 || n >= SYMBOL_LEN) {
		return MS_EPROTO;
	}
	if (grow((void **)&r->syms, &r->capsyms, r->nsyms, sizeof(*r->syms))) {
		return MS_ENOMEM;
	}
	if ((r->syms[r->nsyms].name = strdup(full)) == NULL) {
		return MS_ENOMEM;
	}
	r->syms[r->nsyms++].file = file;
	return 0;
}

/* An EnumDescriptorProto: name = 1. */
static int
refl_enum(struct refl *r, size_t file, const char *prefix, const uint8_t *p,
          size_t len)
{
	const uint8_t *name;
	size_t nlen;
	char full[SYMBOL_LEN];

	if (pb_string(p, len, 1, &name, &nlen) != 0) {
		return MS_EPROTO;
	}
	return refl_sym_add(r, file, prefix, name, nlen, full);
}

/* A DescriptorProto: name = 1, nested_type = 3 (recursively), enum_type =
 * 4. */
static int
refl_message(struct refl *r, size_t file, const char *prefix, const uint8_t *p,
             size_t len, int depth)
{
	const uint8_t *end = p + len;
	const uint8_t *val;
	size_t vlen;
	uint32_t num;
	char full[SYMBOL_LEN];
	int rc;

	if (depth > MAX_NESTING || pb_string(p, len, 1, &val, &vlen) != 0) {
		return MS_EPROTO;
	}
	if ((rc = refl_sym_add(r, file, prefix, val, vlen, full)) != 0) {
		return rc;
	}
	while ((rc = pb_field(&p, end, &num, &val, &vlen)) == 1) {
		if (val == NULL) {
			continue;
		}
		int sub = 0;

		if (num == 3) {
			sub = refl_message(r, file, full, val, vlen, depth + 1);
		} else if (num == 4) {
			sub = refl_enum(r, file, full, val, vlen);
		}
		if (sub != 0) {
			return sub;
		}
	}
	return rc;
}

/* A ServiceDescriptorProto: name = 1, method = 2 (MethodDescriptorProto,
 * name = 1), indexed as "pkg.Service" and "pkg.Service.Method". */
static int
refl_service(struct refl *r, size_t file, const char *prefix, const uint8_t *p,
             size_t len)
{
	const uint8_t *end = p + len;
	const uint8_t *val, *name;
	size_t vlen, nlen;
	uint32_t num;
	char full[SYMBOL_LEN];
	char mfull[SYMBOL_LEN];
	int rc;

	if (pb_string(p, len, 1, &val, &vlen) != 0) {
		return MS_EPROTO;
	}
	if ((rc = refl_sym_add(r, file, prefix, val, vlen, full)) != 0) {
		return rc;
	}
	while ((rc = pb_field(&p, end, &num, &val, &vlen)) == 1) {
		if (num != 2 || val == NULL) {
			continue;
		}
		if (pb_string(val, vlen, 1, &name, &nlen) != 0) {
			return MS_EPROTO;
		}
		if ((rc = refl_sym_add(r, file, full, name, nlen, mfull)) !=
		    0) {
			return rc;
		}
	}
	return rc;
}

/* A FileDescriptorProto: name = 1, package = 2, dependency = 3,
 * message_type = 4, enum_type = 5, service = 6. */
static int
refl_file(struct refl *r, const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	const uint8_t *fp = p;
	const uint8_t *val;
	size_t vlen;
	uint32_t num;
	char pkg[SYMBOL_LEN] = "";
	struct refl_file *f;
	size_t idx = r->nfiles;
	int rc;

	if (grow((void **)&r->files, &r->capfiles, r->nfiles,
	         sizeof(*r->files))) {
		return MS_ENOMEM;
	}
	f = &r->files[idx];
	memset(f, 0, sizeof(*f));
	if (pb_string(p, len, 1, &val, &vlen) != 0) {
		return MS_EPROTO;
	}
	if ((f->name = dup_bytes(val, vlen)) == NULL) {
		return MS_ENOMEM;
	}
	f->p = fp;
	f->len = len;
	f->dep0 = r->ndeps;
	r->nfiles++;
	if (pb_string(p, len, 2, &val, &vlen) == 0) {
		if (vlen >= sizeof(pkg)) {
			return MS_EPROTO;
		}
		memcpy(pkg, val, vlen);
		pkg[vlen] = '\0';
	}
	while ((rc = pb_field(&p, end, &num, &val, &vlen)) == 1) {
		int sub = 0;

		if (val == NULL) {
			continue;
		}
		switch (num) {
		case 3:
			if (grow((void **)&r->deps, &r->capdeps, r->ndeps,
			         sizeof(*r->deps)) ||
			    (r->deps[r->ndeps] = dup_bytes(val, vlen)) ==
			        NULL) {
				return MS_ENOMEM;
			}
			r->ndeps++;
			r->files[idx].ndep++;
			break;
		case 4:
			sub = refl_message(r, idx, pkg, val, vlen, 0);
			break;
		case 5:
			sub = refl_enum(r, idx, pkg, val, vlen);
			break;
		case 6:
			sub = refl_service(r, idx, pkg, val, vlen);
			break;
		default:
			break;
		}
		if (sub != 0) {
			return sub;
		}
	}
	return rc;
}

static void
refl_free(struct refl *r)
{
	for (size_t i = 0; i < r->nfiles; i++) {
		free(r->files[i].name);
	}
	for (size_t i = 0; i < r->ndeps; i++) {
		free(r->deps[i]);
	}
	for (size_t i = 0; i < r->nsyms; i++) {
		free(r->syms[i].name);
	}
	free(r->files);
	free(r->deps);
	free(r->syms);
	memset(r, 0, sizeof(*r));
}

/* refl_build indexes a FileDescriptorSet (file = 1, repeated bytes). The
 * bytes must outlive the index: they are the embedded, static set. */
static int
refl_build(struct refl *r, const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	const uint8_t *val;
	size_t vlen;
	uint32_t num;
	int rc;

	while ((rc = pb_field(&p, end, &num, &val, &vlen)) == 1) {
		if (num == 1 && val != NULL &&
		    (rc = refl_file(r, val, vlen)) != 0) {
			return rc;
		}
	}
	return rc;
}

static long
refl_find_file(const struct refl *r, const char *name)
{
	for (size_t i = 0; i < r->nfiles; i++) {
		if (strcmp(r->files[i].name, name) == 0) {
			return (long)i;
		}
	}
	return -1;
}

static long
refl_find_symbol(const struct refl *r, const char *name)
{
	if (name[0] == '.') {
		name++; /* ".pkg.Msg", as descriptors spell type references */
	}
	for (size_t i = 0; i < r->nsyms; i++) {
		if (strcmp(r->syms[i].name, name) == 0) {
			return (long)r->syms[i].file;
		}
	}
	return -1;
}

/* refl_closure appends |f| and, after it, every file it depends on,
 * transitively, each once. Returns the new count in |order|. */
static size_t
refl_closure(const struct refl *r, size_t f, bool *seen, size_t *order,
             size_t n)
{
	if (seen[f]) {
		return n;
	}
	seen[f] = true;
	order[n++] = f;
	for (size_t i = 0; i < r->files[f].ndep; i++) {
		long d = refl_find_file(r, r->deps[r->files[f].dep0 + i]);

		if (d >= 0) {
			n = refl_closure(r, (size_t)d, seen, order, n);
		}
	}
	return n;
}

/* ---- reflection: the service -------------------------------------------- */

/*
 * One ServerReflectionRequest → one ServerReflectionResponse. v1 and
 * v1alpha have the same messages field for field, so the v1 code reads and
 * writes both. Files are sent whole each time (the protocol allows skipping
 * ones already sent on the stream; the set is a few KiB).
 */
static void
reflect(struct stream *st, const uint8_t *msg, size_t len)
{
	const struct tp_grpc_server *srv = st->conn->srv;
	const struct refl *r = &srv->refl;
	Grpc__Reflection__V1__ServerReflectionRequest *req;
	Grpc__Reflection__V1__ServerReflectionResponse resp =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
	Grpc__Reflection__V1__ErrorResponse err =
	    GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
	Grpc__Reflection__V1__ListServiceResponse list =
	    GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
	Grpc__Reflection__V1__ServiceResponse svcs[MAX_SERVED + 3];
	Grpc__Reflection__V1__ServiceResponse *psvcs[MAX_SERVED + 3];
	Grpc__Reflection__V1__FileDescriptorResponse fdr =
	    GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
	ProtobufCBinaryData *blobs = NULL;
	bool *seen = NULL;
	size_t *order = NULL;
	char errmsg[SYMBOL_LEN + 64];
	const char *what = NULL;
	long f = -1;

	req = grpc__reflection__v1__server_reflection_request__unpack(NULL, len,
	                                                              msg);
	if (req == NULL) {
		finish(st, TP_GRPC_INTERNAL,
		       "cannot decode ServerReflectionRequest");
		return;
	}
	resp.valid_host = req->host;
	resp.original_request = req;
	err.error_message = errmsg;
	errmsg[0] = '\0';
	switch (req->message_request_case) {
	case REQ_(LIST_SERVICES): {
		const char *names[MAX_SERVED + 3];
		size_t n = 0;

		for (size_t i = 0; i < srv->nserved; i++) {
			names[n++] = srv->served[i];
		}
		names[n++] = HEALTH_SERVICE;
		names[n++] = REFLECT_V1;
		names[n++] = REFLECT_V1A;
		for (size_t i = 0; i < n; i++) {
			grpc__reflection__v1__service_response__init(&svcs[i]);
			svcs[i].name = (char *)names[i];
			psvcs[i] = &svcs[i];
		}
		list.n_service = n;
		list.service = psvcs;
		resp.message_response_case = RESP_(LIST_SERVICES_RESPONSE);
		resp.list_services_response = &list;
		break;
	}
	case REQ_(FILE_BY_FILENAME):
		what = req->file_by_filename;
		f = refl_find_file(r, what);
		break;
	case REQ_(FILE_CONTAINING_SYMBOL):
		what = req->file_containing_symbol;
		f = refl_find_symbol(r, what);
		break;
	case REQ_(FILE_CONTAINING_EXTENSION):
	case REQ_(ALL_EXTENSION_NUMBERS_OF_TYPE):
		/* proto3 has no extensions; nothing we serve defines any. */
		err.error_code = TP_GRPC_UNIMPLEMENTED;
		snprintf(errmsg, sizeof(errmsg),
		         "extensions are not supported");
		break;
	default:
		err.error_code = TP_GRPC_INVALID_ARGUMENT;
		snprintf(errmsg, sizeof(errmsg), "empty reflection request");
		break;
	}
	if (what != NULL && f < 0) {
		err.error_code = TP_GRPC_NOT_FOUND;
		snprintf(errmsg, sizeof(errmsg), "%s not found: %.*s",
		         req->message_request_case == REQ_(FILE_BY_FILENAME)
		             ? "file"
		             : "symbol",
		         SYMBOL_LEN, what);
	} else if (what != NULL) {
		size_t n;

		seen = calloc(r->nfiles, sizeof(*seen));
		order = calloc(r->nfiles, sizeof(*order));
		blobs = calloc(r->nfiles, sizeof(*blobs));
		if (seen == NULL || order == NULL || blobs == NULL) {
			finish(st, TP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		n = refl_closure(r, (size_t)f, seen, order, 0);
		for (size_t i = 0; i < n; i++) {
			blobs[i].data = (uint8_t *)r->files[order[i]].p;
			blobs[i].len = r->files[order[i]].len;
		}
		fdr.n_file_descriptor_proto = n;
		fdr.file_descriptor_proto = blobs;
		resp.message_response_case = RESP_(FILE_DESCRIPTOR_RESPONSE);
		resp.file_descriptor_response = &fdr;
	}
	if (errmsg[0] != '\0') {
		resp.message_response_case = RESP_(ERROR_RESPONSE);
		resp.error_response = &err;
	}
	send_pb(st, &resp.base);
out:
	free(seen);
	free(order);
	free(blobs);
	grpc__reflection__v1__server_reflection_request__free_unpacked(req,
	                                                               NULL);
}

/* ---- streams ------------------------------------------------------------ */

static void
deadline_expired(void *arg)
{
	struct stream *st = arg;
	struct conn *cn = st->conn;

	/* The handler may still run on its worker; its result is dropped
	 * (finish detaches it). A client still sending gets CANCEL. */
	st->rst_code = NGHTTP2_CANCEL;
	finish(st, TP_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
	conn_flush(cn);
}

/*
 * grpc.request_timeout_s passed and the request is still not all here: a
 * slow (or slowloris) client must not hold a stream, its buffers and a
 * connection slot for ever. A header block still incomplete cannot be
 * answered on its stream: the connection goes (GOAWAY, then closed).
 */
static void
request_expired(void *arg)
{
	struct stream *st = arg;
	struct conn *cn = st->conn;
	char msg[96];

	if (!st->headers_done) {
		MS_DEBUG(SUB,
		         "%s: stream %d: headers not complete within %d ms: "
		         "closing the connection",
		         tp_grpc_conn_peer(cn->c), st->id,
		         cn->srv->opts.request_timeout_ms);
		nghttp2_session_terminate_session(cn->ses,
		                                  NGHTTP2_ENHANCE_YOUR_CALM);
		conn_flush(cn);
		return;
	}
	snprintf(msg, sizeof(msg),
	         "request not received within %d ms (grpc.request_timeout_s)",
	         cn->srv->opts.request_timeout_ms);
	st->rst_code = NGHTTP2_CANCEL;
	finish(st, TP_GRPC_CANCELLED, msg);
	conn_flush(cn);
}

static void
stream_free(struct stream *st)
{
	struct conn *cn = st->conn;

	tp_grpc_timer_stop(cn->srv->loop, &st->timer);
	tp_grpc_timer_stop(cn->srv->loop, &st->rx_timer);
	cn->last_rx_ms = ms_now_ms(); /* the idle time counts from here */
	detach_job(st);
	if (!st->finished && st->kind != K_NONE) {
		record(st, TP_GRPC_CANCELLED); /* reset by the client */
	}
	if (st->prev) {
		st->prev->next = st->next;
	} else {
		cn->streams = st->next;
	}
	if (st->next) {
		st->next->prev = st->prev;
	}
	tp_grpc_reader_fini(&st->reader);
	free(st->req);
	free(st->out);
	free(st);
}

/* Which handler serves service/method; K_NONE when nobody does. */
static enum kind
classify(const struct tp_grpc_server *srv, const char *service,
         const char *method, bool *known_service)
{
	*known_service = true;
	if (strcmp(service, HEALTH_SERVICE) == 0) {
		return strcmp(method, "Check") == 0   ? K_HEALTH_CHECK
		       : strcmp(method, "Watch") == 0 ? K_HEALTH_WATCH
		                                      : K_NONE;
	}
	if (strcmp(service, REFLECT_V1) == 0 ||
	    strcmp(service, REFLECT_V1A) == 0) {
		return strcmp(method, "ServerReflectionInfo") == 0 ? K_REFLECT
		                                                   : K_NONE;
	}
	/* An unknown method is refused here, from the headers, rather than
	 * by bus_dispatch after the body: a call that ended before (reset,
	 * deadline, bad message) would otherwise be counted in the metrics
	 * under the name the client made up (found by fuzz_grpc_server). */
	if (is_served(srv, service)) {
		return bus_serves(srv->bus, service, method) ? K_BUS : K_NONE;
	}
	*known_service = false;
	return K_NONE;
}

/* The request headers are complete: refuse what is not a gRPC call we
 * serve, at once, before the body (if any) is read. */
static void
on_request_headers(struct stream *st)
{
	struct tp_grpc_server *srv = st->conn->srv;
	char msg[PATH_LEN + 32];
	bool known;

	st->headers_done = true;
	if (!st->is_post) {
		respond_http(st, "405");
		return;
	}
	if (!st->ctype_ok) {
		respond_http(st, "415");
		return;
	}
	if (st->path_bad ||
	    tp_grpc_path_split(st->path, strlen(st->path), st->service,
	                       sizeof(st->service), st->method,
	                       sizeof(st->method)) != 0) {
		finish(st, TP_GRPC_UNIMPLEMENTED, "malformed :path");
		return;
	}
	st->kind = classify(srv, st->service, st->method, &known);
	if (st->kind == K_NONE) {
		if (known) {
			snprintf(msg, sizeof(msg), "unknown method %s/%s",
			         st->service, st->method);
		} else {
			snprintf(msg, sizeof(msg), "unknown service %s",
			         st->service);
		}
		finish(st, TP_GRPC_UNIMPLEMENTED, msg);
		return;
	}
	if (st->kind == K_REFLECT) {
		/* Bidi: the client may keep its side open between queries. */
		tp_grpc_timer_stop(srv->loop, &st->rx_timer);
	}
	/* Admin methods (bus_restrict) with grpc.api_key set: decided from
	 * the headers, before the body is read. */
	if (st->kind == K_BUS && srv->api_key_len > 0 && !st->key_ok &&
	    bus_restricted(srv->bus, st->service, st->method)) {
		finish(st, TP_GRPC_UNAUTHENTICATED,
		       st->keys == 0
		           ? "this method needs the metadata x-api-key"
		           : "wrong x-api-key");
		return;
	}
	if (st->has_timeout) {
		st->deadline_ms = ms_now_ms() + st->timeout_ms;
		tp_grpc_timer_start(srv->loop, &st->timer, st->deadline_ms,
		                    deadline_expired, st);
	}
}

/* One whole request message arrived (|msg| is ours to free). */
static void
on_message(struct stream *st, uint8_t *msg, size_t len)
{
	if (st->kind == K_REFLECT) {
		reflect(st, msg, len);
		free(msg);
		return;
	}
	if (st->nreq++ > 0) {
		free(msg);
		finish(st, TP_GRPC_UNIMPLEMENTED,
		       "expected one request message, got more");
		return;
	}
	st->req = msg;
	st->req_len = len;
}

/* The client finished sending (END_STREAM): run the call. */
static void
on_request_end(struct stream *st)
{
	tp_grpc_timer_stop(st->conn->srv->loop, &st->rx_timer);
	if (st->finished || st->kind == K_NONE) {
		return;
	}
	if (tp_grpc_reader_partial(&st->reader)) {
		finish(st, TP_GRPC_INTERNAL, "request ended inside a message");
		return;
	}
	if (st->kind == K_REFLECT) {
		finish(st, TP_GRPC_OK, NULL);
		return;
	}
	if (st->nreq != 1) {
		finish(st, TP_GRPC_UNIMPLEMENTED,
		       "expected one request message, got none");
		return;
	}
	switch (st->kind) {
	case K_HEALTH_CHECK:
		health(st, false);
		break;
	case K_HEALTH_WATCH:
		health(st, true);
		break;
	case K_BUS:
		dispatch(st);
		break;
	default:
		break;
	}
}

static void
reader_error(struct stream *st, int rc)
{
	char msg[96];

	switch (rc) {
	case MS_ETOOBIG:
		snprintf(msg, sizeof(msg),
		         "request message larger than %zu bytes",
		         st->conn->srv->opts.max_message);
		finish(st, TP_GRPC_RESOURCE_EXHAUSTED, msg);
		break;
	case MS_ENOTSUP:
		/* doc/compression.md: a coding we do not support is
		 * UNIMPLEMENTED (and we say what we accept); the flag set
		 * with no coding declared is the client's error: INTERNAL. */
		if (st->encoded) {
			st->accept_enc = true;
			finish(st, TP_GRPC_UNIMPLEMENTED,
			       "compressed messages are not supported");
		} else {
			finish(st, TP_GRPC_INTERNAL,
			       "compressed flag set without grpc-encoding");
		}
		break;
	case MS_ENOMEM:
		finish(st, TP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		break;
	default:
		finish(st, TP_GRPC_INTERNAL, "malformed message prefix");
		break;
	}
}

/* ---- nghttp2 callbacks (loop thread, inside mem_recv / mem_send) -------- */

static int
on_begin_headers(nghttp2_session *ses, const nghttp2_frame *frame, void *ud)
{
	struct conn *cn = ud;
	struct stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
		return 0;
	}
	if ((st = calloc(1, sizeof(*st))) == NULL) {
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST */
	}
	st->conn = cn;
	st->id = frame->hd.stream_id;
	st->t0_us = ms_now_us();
	st->rst_code = NGHTTP2_NO_ERROR;
	tp_grpc_reader_init(&st->reader, cn->srv->opts.max_message);
	cn->last_rx_ms = ms_now_ms();
	if (cn->srv->opts.request_timeout_ms > 0) {
		tp_grpc_timer_start(cn->srv->loop, &st->rx_timer,
		                    cn->last_rx_ms +
		                        cn->srv->opts.request_timeout_ms,
		                    request_expired, st);
	}
	st->next = cn->streams;
	if (cn->streams) {
		cn->streams->prev = st;
	}
	cn->streams = st;
	nghttp2_session_set_stream_user_data(ses, st->id, st);
	return 0;
}

static bool
name_is(const uint8_t *name, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(name, want, len) == 0;
}

/* Keeps what the call needs from the request headers; nghttp2 already
 * checked their syntax (HTTP messaging is on). Client trailers carry
 * nothing we use. */
static int
on_header(nghttp2_session *ses, const nghttp2_frame *frame, const uint8_t *name,
          size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
          void *ud)
{
	struct stream *st =
	    nghttp2_session_get_stream_user_data(ses, frame->hd.stream_id);
	const char *v = (const char *)value;

	if (st == NULL || frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
		return 0;
	}
	if (name_is(name, namelen, ":method")) {
		st->is_post = valuelen == 4 && memcmp(v, "POST", 4) == 0;
	} else if (name_is(name, namelen, ":path")) {
		if (valuelen < sizeof(st->path)) {
			memcpy(st->path, v, valuelen);
			st->path[valuelen] = '\0';
		} else {
			st->path_bad = true;
		}
	} else if (name_is(name, namelen, "content-type")) {
		st->ctype_ok = tp_grpc_content_type_ok(v, valuelen);
	} else if (name_is(name, namelen, "grpc-timeout")) {
		/* grpc-core ignores a timeout it cannot read; so do we. */
		st->has_timeout =
		    tp_grpc_timeout_parse(v, valuelen, &st->timeout_ms) == 0;
		if (!st->has_timeout) {
			MS_DEBUG(SUB, "stream %d: ignoring grpc-timeout %.*s",
			         st->id, (int)valuelen, v);
		}
	} else if (name_is(name, namelen, "grpc-encoding")) {
		st->encoded = !(valuelen == 8 && memcmp(v, "identity", 8) == 0);
	} else if (name_is(name, namelen, "x-api-key")) {
		const struct tp_grpc_server *srv = st->conn->srv;

		/* One value only: a request must not try several keys. The
		 * value is never logged. */
		st->keys++;
		st->key_ok =
		    st->keys == 1 && srv->api_key_len > 0 &&
		    ms_ct_equal(srv->api_key, srv->api_key_len, v, valuelen);
	} else if (name_is(name, namelen, "traceparent")) {
		if (valuelen < sizeof(st->traceparent)) {
			memcpy(st->traceparent, v, valuelen);
			st->traceparent[valuelen] = '\0';
		}
	}
	return 0;
}

static int
on_data_chunk_recv(nghttp2_session *ses, uint8_t flags, int32_t id,
                   const uint8_t *data, size_t len, void *ud)
{
	struct stream *st = nghttp2_session_get_stream_user_data(ses, id);

	if (st == NULL) {
		return 0;
	}
	/* After the answer, the rest of the body is dropped unread (RST
	 * follows our END_STREAM). */
	while (len > 0 && !st->finished && st->kind != K_NONE) {
		uint8_t *msg;
		size_t used, msglen;
		int rc = tp_grpc_reader_feed(&st->reader, data, len, &used,
		                             &msg, &msglen);

		data += used;
		len -= used;
		if (rc < 0) {
			reader_error(st, rc);
			break;
		}
		if (rc == 0) {
			break;
		}
		on_message(st, msg, msglen);
	}
	return 0;
}

/* gRFC A8: a client pinging more often than keepalive_permit_ms earns a
 * strike; more than MAX_PING_STRIKES → GOAWAY(ENHANCE_YOUR_CALM,
 * "too_many_pings") and the connection closes once that is sent. Sending
 * HEADERS or DATA forgives (on_frame_send). */
static void
on_ping(struct conn *cn)
{
	int64_t now = ms_now_ms();
	static const char debug[] = "too_many_pings";

	if (cn->last_ping_ms != 0 &&
	    now - cn->last_ping_ms < cn->srv->opts.keepalive_permit_ms) {
		cn->strikes++;
	}
	cn->last_ping_ms = now;
	if (cn->strikes > MAX_PING_STRIKES && !cn->calm) {
		cn->calm = true;
		MS_WARN(SUB, "%s: too many pings, sending GOAWAY",
		        tp_grpc_conn_peer(cn->c));
		nghttp2_submit_goaway(
		    cn->ses, NGHTTP2_FLAG_NONE,
		    nghttp2_session_get_last_proc_stream_id(cn->ses),
		    NGHTTP2_ENHANCE_YOUR_CALM, (const uint8_t *)debug,
		    sizeof(debug) - 1);
	}
}

static int
on_frame_recv(nghttp2_session *ses, const nghttp2_frame *frame, void *ud)
{
	struct conn *cn = ud;
	struct stream *st;

	cn->last_rx_ms = ms_now_ms();
	switch (frame->hd.type) {
	case NGHTTP2_SETTINGS:
		/* The first one ends the client's connection preface. */
		cn->got_preface = true;
		break;
	case NGHTTP2_HEADERS:
		st = nghttp2_session_get_stream_user_data(ses,
		                                          frame->hd.stream_id);
		if (st == NULL) {
			break;
		}
		if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
			on_request_headers(st);
		}
		if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
			on_request_end(st);
		}
		break;
	case NGHTTP2_DATA:
		st = nghttp2_session_get_stream_user_data(ses,
		                                          frame->hd.stream_id);
		if (st != NULL && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
			on_request_end(st);
		}
		break;
	case NGHTTP2_PING:
		if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
			on_ping(cn);
		}
		break;
	default:
		break;
	}
	return 0;
}

static int
on_frame_send(nghttp2_session *ses, const nghttp2_frame *frame, void *ud)
{
	struct conn *cn = ud;
	struct stream *st;

	if (frame->hd.type == NGHTTP2_GOAWAY &&
	    frame->goaway.error_code == NGHTTP2_ENHANCE_YOUR_CALM) {
		cn->calm_sent = true;
	}
	if (frame->hd.type != NGHTTP2_HEADERS &&
	    frame->hd.type != NGHTTP2_DATA) {
		return 0;
	}
	cn->strikes = 0;
	cn->last_ping_ms = 0;
	if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		return 0;
	}
	/*
	 * Our side is done. A client still sending is told to stop: the
	 * status is out, the rest of its body would be read for nothing
	 * (wire.md §1.4; nghttp2 does not do this itself). Only while the
	 * client's half is open: a RST on a closed stream is a protocol
	 * error, so a deadline answered after the client's END_STREAM ends
	 * with the trailers alone.
	 */
	st = nghttp2_session_get_stream_user_data(ses, frame->hd.stream_id);
	if (st != NULL &&
	    nghttp2_session_get_stream_remote_close(ses, st->id) == 0) {
		nghttp2_submit_rst_stream(ses, NGHTTP2_FLAG_NONE, st->id,
		                          st->rst_code);
	}
	return 0;
}

static int
on_stream_close(nghttp2_session *ses, int32_t id, uint32_t error_code, void *ud)
{
	struct stream *st = nghttp2_session_get_stream_user_data(ses, id);

	if (st != NULL) {
		stream_free(st);
	}
	return 0;
}

/* ---- connections -------------------------------------------------------- */

/*
 * conn_flush moves what nghttp2 has to send into the connection's write
 * buffer, stopping above the high-water mark (on_writable resumes), and
 * closes the connection once nghttp2 neither wants to read nor to write
 * (after a GOAWAY, with no stream left) or the calm-down GOAWAY is out.
 * Never called from inside an nghttp2 callback.
 */
static void
conn_flush(struct conn *cn)
{
	const uint8_t *data;
	ssize_t n;

	/* Every frame nghttp2 has ready goes out in one send(2) (loop.h). */
	tp_grpc_conn_cork(cn->c);
	while (!cn->closing) {
		if (!cn->calm &&
		    tp_grpc_conn_pending(cn->c) >= TP_GRPC_CONN_HIGH_WATER) {
			tp_grpc_conn_uncork(cn->c);
			return;
		}
		n = nghttp2_session_mem_send(cn->ses, &data);
		if (n < 0) {
			MS_WARN(SUB, "%s: %s", tp_grpc_conn_peer(cn->c),
			        nghttp2_strerror((int)n));
			cn->closing = true;
			tp_grpc_conn_abort(cn->c, MS_EPROTO);
			return;
		}
		if (n == 0) {
			break;
		}
		if (tp_grpc_conn_write(cn->c, data, (size_t)n) != 0) {
			cn->closing = true; /* the connection is going */
			tp_grpc_conn_uncork(cn->c);
			return;
		}
		if (cn->calm_sent) {
			break;
		}
	}
	tp_grpc_conn_uncork(cn->c);
	if (!cn->closing &&
	    (cn->calm_sent || (!nghttp2_session_want_read(cn->ses) &&
	                       !nghttp2_session_want_write(cn->ses)))) {
		cn->closing = true;
		tp_grpc_conn_close(cn->c); /* after the buffer is flushed */
	}
}

static void
conn_on_open(struct tp_grpc_conn *c, void *arg, int rc)
{
	conn_flush(arg); /* our SETTINGS */
}

static int
conn_on_read(struct tp_grpc_conn *c, void *arg, const uint8_t *buf, size_t len)
{
	struct conn *cn = arg;
	ssize_t n;

	if (cn->closing) {
		return 0;
	}
	n = nghttp2_session_mem_recv(cn->ses, buf, len);
	if (n < 0) {
		/* Bad preface, flood, a failed callback: nghttp2 may have
		 * queued a GOAWAY saying why; send it, then close. */
		MS_DEBUG(SUB, "%s: %s", tp_grpc_conn_peer(c),
		         nghttp2_strerror((int)n));
		conn_flush(cn);
		if (!cn->closing) {
			cn->closing = true;
			tp_grpc_conn_close(c);
		}
		return 0;
	}
	conn_flush(cn);
	return 0;
}

static void
conn_on_writable(struct tp_grpc_conn *c, void *arg)
{
	conn_flush(arg);
}

static void
conn_on_close(struct tp_grpc_conn *c, void *arg, int rc)
{
	struct conn *cn = arg;
	struct tp_grpc_server *srv = cn->srv;

	MS_DEBUG(SUB, "%s: closed (%s)", tp_grpc_conn_peer(c),
	         rc == 0 ? "done" : ms_strerror(rc));
	tp_grpc_timer_stop(srv->loop, &cn->timer);
	/* Normally flushed before any reap; never leave a dangling entry. */
	for (struct conn **pp = &srv->flush_list; cn->flush_due && *pp;
	     pp = &(*pp)->flush_next) {
		if (*pp == cn) {
			*pp = cn->flush_next;
			break;
		}
	}
	while (cn->streams) {
		stream_free(cn->streams);
	}
	nghttp2_session_del(cn->ses);
	if (cn->prev) {
		cn->prev->next = cn->next;
	} else {
		srv->conns = cn->next;
	}
	if (cn->next) {
		cn->next->prev = cn->prev;
	}
	pthread_mutex_lock(&srv->mu);
	srv->nconns--;
	pthread_cond_broadcast(&srv->idle_cv);
	pthread_mutex_unlock(&srv->mu);
	free(cn);
}

static const struct tp_grpc_conn_ops conn_ops = {
    .on_open = conn_on_open,
    .on_read = conn_on_read,
    .on_writable = conn_on_writable,
    .on_close = conn_on_close,
};

/*
 * The connection's timer: the preface bound (grpc.request_timeout_s from
 * the accept: a client that connects and dribbles, or sends nothing, is
 * closed) and the idle bound (grpc.idle_timeout_s without a frame while
 * no call is open: GOAWAY, then closed). It fires at the earliest due
 * time and re-arms from the last frame received, so traffic costs no
 * timer work.
 */
static void conn_timer_fired(void *arg);

static void
conn_timer_arm(struct conn *cn)
{
	const struct tp_grpc_server_opts *o = &cn->srv->opts;
	int64_t due = INT64_MAX;

	if (!cn->got_preface && o->request_timeout_ms > 0) {
		due = cn->accepted_ms + o->request_timeout_ms;
	}
	if (o->idle_timeout_ms > 0 && !cn->idled) {
		int64_t idle = cn->last_rx_ms + o->idle_timeout_ms;
		int64_t now = ms_now_ms();

		/* Calls open (a Watch may be quiet for hours): not idle;
		 * look again later rather than every turn. */
		if (cn->streams != NULL && idle <= now) {
			idle = now + o->idle_timeout_ms;
		}
		if (idle < due) {
			due = idle;
		}
	}
	if (due != INT64_MAX) {
		tp_grpc_timer_start(cn->srv->loop, &cn->timer, due,
		                    conn_timer_fired, cn);
	}
}

static void
conn_timer_fired(void *arg)
{
	struct conn *cn = arg;
	const struct tp_grpc_server_opts *o = &cn->srv->opts;
	int64_t now = ms_now_ms();

	if (cn->closing) {
		return;
	}
	if (!cn->got_preface &&
	    ((o->request_timeout_ms > 0 &&
	      now >= cn->accepted_ms + o->request_timeout_ms) ||
	     (o->idle_timeout_ms > 0 &&
	      now >= cn->last_rx_ms + o->idle_timeout_ms))) {
		/* Nothing HTTP/2 to say to it yet. */
		MS_DEBUG(SUB, "%s: no HTTP/2 preface in time: closing",
		         tp_grpc_conn_peer(cn->c));
		ms_metrics_count("monoshop_grpc_server_slow_closed_total", "",
		                 1);
		cn->closing = true;
		tp_grpc_conn_abort(cn->c, MS_ETIMEDOUT);
		return;
	}
	if (o->idle_timeout_ms > 0 && !cn->idled && cn->streams == NULL &&
	    now >= cn->last_rx_ms + o->idle_timeout_ms) {
		static const char debug[] = "idle";

		MS_DEBUG(SUB, "%s: idle for %d ms: GOAWAY",
		         tp_grpc_conn_peer(cn->c), o->idle_timeout_ms);
		cn->idled = true;
		nghttp2_submit_goaway(
		    cn->ses, NGHTTP2_FLAG_NONE,
		    nghttp2_session_get_last_proc_stream_id(cn->ses),
		    NGHTTP2_NO_ERROR, (const uint8_t *)debug,
		    sizeof(debug) - 1);
		conn_flush(cn); /* closes once the GOAWAY is out */
		return;
	}
	conn_timer_arm(cn);
}

/* A refused connection: closed at once, nothing to be told. */
static const struct tp_grpc_conn_ops refused_ops = {0};

static void
refuse(struct tp_grpc_server *srv, struct tp_grpc_conn *c, const char *why)
{
	int64_t now = ms_now_ms();

	/* A flood of connections must not become a flood of log lines: one
	 * line per REFUSE_LOG_MS, with the count since the last one. */
	srv->refused++;
	if (srv->refused_log_ms == 0 ||
	    now - srv->refused_log_ms >= REFUSE_LOG_MS) {
		MS_WARN(SUB, "%s: connection refused: %s (%llu refused)",
		        tp_grpc_conn_peer(c), why,
		        (unsigned long long)srv->refused);
		srv->refused_log_ms = now;
	}
	ms_metrics_count("monoshop_grpc_server_refused_total", "", 1);
	tp_grpc_conn_set_ops(c, &refused_ops, srv);
	tp_grpc_conn_close(c);
}

static void
on_accept(void *arg, struct tp_grpc_conn *c)
{
	struct tp_grpc_server *srv = arg;
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, srv->opts.max_streams},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST},
	};
	struct conn *cn;
	int n;

	pthread_mutex_lock(&srv->mu);
	n = srv->nconns;
	pthread_mutex_unlock(&srv->mu);
	if (atomic_load(&srv->stopping)) {
		refuse(srv, c, "stopping");
		return;
	}
	if (n >= srv->opts.max_connections) {
		refuse(srv, c, "grpc.max_connections reached");
		return;
	}
	if ((cn = calloc(1, sizeof(*cn))) == NULL) {
		refuse(srv, c, "out of memory");
		return;
	}
	cn->srv = srv;
	cn->c = c;
	/* The default session keeps nghttp2's HTTP messaging checks on. */
	if (nghttp2_session_server_new(&cn->ses, srv->cbs, cn) != 0 ||
	    nghttp2_submit_settings(cn->ses, NGHTTP2_FLAG_NONE, iv,
	                            MS_ARRAY_SIZE(iv)) != 0 ||
	    nghttp2_session_set_local_window_size(cn->ses, NGHTTP2_FLAG_NONE, 0,
	                                          CONN_WINDOW) != 0) {
		nghttp2_session_del(cn->ses);
		free(cn);
		refuse(srv, c, "out of memory");
		return;
	}
	cn->next = srv->conns;
	if (srv->conns) {
		srv->conns->prev = cn;
	}
	srv->conns = cn;
	pthread_mutex_lock(&srv->mu);
	srv->nconns++;
	pthread_mutex_unlock(&srv->mu);
	tp_grpc_conn_set_ops(c, &conn_ops, cn);
	cn->accepted_ms = cn->last_rx_ms = ms_now_ms();
	conn_timer_arm(cn);
	MS_DEBUG(SUB, "%s: connected", tp_grpc_conn_peer(c));
}

/* ---- start and stop ----------------------------------------------------- */

/* Loop thread, posted by stop: no more connections; every connection is
 * told (GOAWAY) which calls will still be answered, Watch streams end, and
 * each connection closes once its last call is done (conn_flush). */
static void
begin_shutdown(void *arg)
{
	struct tp_grpc_server *srv = arg;

	tp_grpc_listen_close(srv->loop);
	for (struct conn *cn = srv->conns; cn; cn = cn->next) {
		for (struct stream *st = cn->streams; st; st = st->next) {
			Grpc__Health__V1__HealthCheckResponse resp =
			    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

			if (!st->watching) {
				continue;
			}
			resp.status = HEALTH_(NOT_SERVING);
			if (send_pb(st, &resp.base) == 0) {
				finish(st, TP_GRPC_OK, NULL);
			}
		}
		/* The notice (last id 2^31-1) and then the real last id:
		 * streams the client opened in between are refused and
		 * safe for it to retry elsewhere. */
		nghttp2_submit_shutdown_notice(cn->ses);
		nghttp2_submit_goaway(
		    cn->ses, NGHTTP2_FLAG_NONE,
		    nghttp2_session_get_last_proc_stream_id(cn->ses),
		    NGHTTP2_NO_ERROR, NULL, 0);
		/* Closing is deferred to the end of this loop turn, so |cn|
		 * stays valid for the next iteration. */
		conn_flush(cn);
	}
}

/* srv_free releases what start made; the loop and the workers are
 * stopped. */
static void
srv_free(struct tp_grpc_server *srv)
{
	tp_grpc_loop_destroy(srv->loop);
	/* Jobs still queued: their streams are gone, only the worker's
	 * reference is left. */
	while (srv->qlen > 0) {
		job_unref(srv->queue[srv->qhead]);
		srv->qhead = (srv->qhead + 1) % srv->qcap;
		srv->qlen--;
	}
	free(srv->queue);
	free(srv->workers);
	if (srv->cbs) {
		nghttp2_session_callbacks_del(srv->cbs);
	}
	refl_free(&srv->refl);
	pthread_cond_destroy(&srv->work_cv);
	pthread_cond_destroy(&srv->idle_cv);
	pthread_mutex_destroy(&srv->mu);
	free(srv);
}

static void
workers_stop(struct tp_grpc_server *srv)
{
	pthread_mutex_lock(&srv->mu);
	srv->workers_stop = true;
	pthread_cond_broadcast(&srv->work_cv);
	pthread_mutex_unlock(&srv->mu);
	for (int i = 0; i < srv->nworkers; i++) {
		pthread_join(srv->workers[i], NULL);
	}
	srv->nworkers = 0;
}

static int
srv_init(struct tp_grpc_server *srv, struct bus *bus,
         const struct tp_grpc_server_opts *opts)
{
	pthread_condattr_t ca;
	int rc;

	srv->bus = bus;
	srv->opts = *opts;
	srv->opts.listen = NULL;
	/* Copied: the key must not depend on the config's lifetime. */
	if (opts->api_key != NULL) {
		srv->api_key_len = ms_strlcpy(srv->api_key, opts->api_key,
		                              sizeof(srv->api_key));
		if (srv->api_key_len >= sizeof(srv->api_key)) {
			srv->api_key_len = sizeof(srv->api_key) - 1;
		}
	}
	srv->opts.api_key = NULL;
	srv->opts.tls_cert = srv->opts.tls_key = NULL;
	atomic_init(&srv->stopping, false);
	pthread_mutex_init(&srv->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* ms_now_ms */
	pthread_cond_init(&srv->idle_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&srv->work_cv, NULL);

	srv->nserved = bus_served_services(bus, srv->served, MAX_SERVED);
	if (srv->nserved > MAX_SERVED) {
		MS_WARN(SUB, "%zu services served: listing the first %d",
		        srv->nserved, MAX_SERVED);
		srv->nserved = MAX_SERVED;
	}
	rc = refl_build(&srv->refl, tp_grpc_descriptor_set,
	                tp_grpc_descriptor_set_len);
	if (rc == MS_ENOMEM) {
		return rc;
	}
	/* The set is made by our build: a parse error is a bug there. Serve
	 * anyway; reflection knows what was read before it. */
	assert(rc == 0);
	if (rc != 0) {
		MS_ERROR(SUB, "embedded descriptor set: %s", ms_strerror(rc));
	}

	if (nghttp2_session_callbacks_new(&srv->cbs) != 0) {
		return MS_ENOMEM;
	}
	nghttp2_session_callbacks_set_on_begin_headers_callback(
	    srv->cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(srv->cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(srv->cbs,
	                                                     on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
	    srv->cbs, on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(srv->cbs,
	                                                     on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(srv->cbs,
	                                                       on_stream_close);

	srv->qcap = (size_t)opts->threads * QUEUE_PER_WORKER;
	srv->queue = calloc(srv->qcap, sizeof(*srv->queue));
	srv->workers = calloc((size_t)opts->threads, sizeof(*srv->workers));
	if (srv->queue == NULL || srv->workers == NULL) {
		return MS_ENOMEM;
	}
	if ((rc = tp_grpc_loop_create(&srv->loop, "grpc-server")) == 0) {
		tp_grpc_loop_on_posts(srv->loop, flush_answered, srv);
		tp_grpc_loop_busy_poll(srv->loop, opts->busy_poll_us);
	}
	return rc;
}

int
tp_grpc_server_start(struct tp_grpc_server **out, struct bus *bus,
                     const struct tp_grpc_server_opts *opts, uint16_t *port)
{
	struct tp_grpc_server *srv;
	const char *colon;
	uint16_t bound = 0;
	int rc;

	assert(out != NULL && bus != NULL && opts != NULL);
	assert(opts->listen != NULL && opts->threads > 0);
	assert(opts->max_streams > 0 && opts->max_connections > 0);
	*out = NULL;
	if ((srv = calloc(1, sizeof(*srv))) == NULL) {
		return MS_ENOMEM;
	}
	if ((rc = srv_init(srv, bus, opts)) != 0) {
		srv_free(srv);
		return rc;
	}
	if (opts->tls_cert != NULL && opts->tls_key != NULL) {
		struct tp_grpc_tls *tls;

		/* The loop owns it: every accepted connection speaks TLS. */
		if ((rc = tp_grpc_tls_server_new(&tls, opts->tls_cert,
		                                 opts->tls_key)) != 0) {
			srv_free(srv);
			return rc;
		}
		tp_grpc_loop_set_tls(srv->loop, tls);
	}
	rc = tp_grpc_listen(srv->loop, opts->listen, on_accept, srv, &bound);
	if (rc != 0) {
		srv_free(srv);
		return rc;
	}
	for (; srv->nworkers < opts->threads; srv->nworkers++) {
		rc = pthread_create(&srv->workers[srv->nworkers], NULL,
		                    worker_main, srv);
		if (rc != 0) {
			workers_stop(srv);
			srv_free(srv);
			return rc == ENOMEM || rc == EAGAIN ? MS_ENOMEM : -rc;
		}
	}
	if ((rc = tp_grpc_loop_start(srv->loop)) != 0) {
		workers_stop(srv);
		srv_free(srv);
		return rc;
	}
	colon = strrchr(opts->listen, ':');
	snprintf(srv->bound, sizeof(srv->bound), "%.*s:%u",
	         (int)(colon - opts->listen), opts->listen, bound);
	MS_INFO(SUB, "listening on %s%s%s", srv->bound,
	        opts->tls_cert != NULL ? " (TLS, ALPN h2)" : " (h2c)",
	        srv->api_key_len > 0 ? ", admin methods need x-api-key" : "");
	if (port) {
		*port = bound;
	}
	*out = srv;
	return 0;
}

void
tp_grpc_server_quiesce(struct tp_grpc_server *srv)
{
	if (srv == NULL || srv->quiesced) {
		return;
	}
	srv->quiesced = true;
	srv->quiesce_ms = ms_now_ms();
	atomic_store(&srv->stopping, true);
	srv->shutdown_posted =
	    tp_grpc_loop_post(srv->loop, begin_shutdown, srv) == 0;
	MS_INFO(SUB, "%s: no longer accepting calls (GOAWAY sent)", srv->bound);
}

void
tp_grpc_server_stop(struct tp_grpc_server *server, int timeout_ms)
{
	struct tp_grpc_server *srv = server;
	int64_t deadline;
	int left = 0;

	if (srv == NULL) {
		return;
	}
	tp_grpc_server_quiesce(srv);
	/* The time allowed counts from the quiesce: the whole shutdown has
	 * one bound, not one per step. */
	deadline = srv->quiesce_ms + (timeout_ms > 0 ? timeout_ms : 0);
	if (srv->shutdown_posted) {
		pthread_mutex_lock(&srv->mu);
		while (srv->nconns > 0) {
			int64_t now = ms_now_ms();
			struct timespec ts;

			if (now >= deadline) {
				break;
			}
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += (deadline - now) / 1000;
			ts.tv_nsec += (long)((deadline - now) % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&srv->idle_cv, &srv->mu, &ts);
		}
		left = srv->nconns;
		pthread_mutex_unlock(&srv->mu);
	}
	if (left > 0) {
		MS_WARN(SUB,
		        "stop: %d connections still busy after %d ms: "
		        "closing them",
		        left, timeout_ms);
	}
	/* Aborts what is left (calls in flight there are dropped), then the
	 * workers: a handler still running is waited for, its answer
	 * discarded. */
	tp_grpc_loop_stop(srv->loop);
	workers_stop(srv);
	MS_INFO(SUB, "stopped listening on %s", srv->bound);
	srv_free(srv);
}

int
tp_grpc_server_health(struct tp_grpc_server *server, char *desc, size_t desclen)
{
	struct tp_grpc_server *srv = server;
	int n;

	if (srv == NULL || atomic_load(&srv->stopping)) {
		snprintf(desc, desclen, "stopping");
		return MS_ECLOSED;
	}
	pthread_mutex_lock(&srv->mu);
	n = srv->nconns;
	pthread_mutex_unlock(&srv->mu);
	snprintf(desc, desclen, "serving on %s, %d connections", srv->bound, n);
	return 0;
}

/* ---- test hook (server.h) ----------------------------------------------- */

int
tp_grpc_server_test_create(struct tp_grpc_server **out, struct bus *bus,
                           const struct tp_grpc_server_opts *opts)
{
	struct tp_grpc_server *srv;
	int rc;

	assert(out != NULL && bus != NULL && opts != NULL);
	assert(opts->threads > 0 && opts->max_streams > 0);
	*out = NULL;
	if ((srv = calloc(1, sizeof(*srv))) == NULL) {
		return MS_ENOMEM;
	}
	if ((rc = srv_init(srv, bus, opts)) != 0) {
		srv_free(srv);
		return rc;
	}
	*out = srv;
	return 0;
}

int
tp_grpc_server_test_feed(struct tp_grpc_server *srv, const uint8_t *buf,
                         size_t len)
{
	if (srv->conns == NULL) {
		if (tp_grpc_conn_test_accept(srv->loop, on_accept, srv) ==
		    NULL) {
			return MS_ENOMEM;
		}
		if (srv->conns == NULL) { /* refused: out of memory */
			tp_grpc_loop_test_turn(srv->loop);
			return MS_ENOMEM;
		}
	}
	tp_grpc_conn_test_read(srv->conns->c, buf, len);
	/* The workers' part, on this thread: each call queued by these
	 * bytes runs, and its answer goes out as job_done would send it
	 * once posted back. */
	while (srv->qlen > 0) {
		struct job *job = srv->queue[srv->qhead];

		srv->qhead = (srv->qhead + 1) % srv->qcap;
		srv->qlen--;
		job_run(srv, job);
		job_done(job);
	}
	tp_grpc_loop_test_turn(srv->loop);
	return srv->conns != NULL;
}

void
tp_grpc_server_test_close(struct tp_grpc_server *srv)
{
	for (struct conn *cn = srv->conns; cn; cn = cn->next) {
		tp_grpc_conn_abort(cn->c, MS_ECLOSED);
	}
	tp_grpc_loop_test_turn(srv->loop);
}

void
tp_grpc_server_test_destroy(struct tp_grpc_server *srv)
{
	if (srv == NULL) {
		return;
	}
	tp_grpc_server_test_close(srv);
	srv_free(srv);
}
