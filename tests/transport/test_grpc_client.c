/* SPDX-License-Identifier: MIT */
/*
 * Protocol-edge tests of the gRPC client (src/transport/grpc/client.c)
 * against a small scripted HTTP/2 gRPC server written here: an nghttp2
 * server session per connection on a listening socket on 127.0.0.1, run by
 * one thread with blocking sockets and poll. Each test picks a script (OK
 * with a message, Trailers-Only UNAVAILABLE the first N times with or
 * without grpc-retry-pushback-ms, REFUSED_STREAM, GOAWAY(0) on the first
 * connection, silence, NOT_FOUND with a percent-encoded message, an
 * oversize or doubled reply, a connection closed mid-call) and checks what
 * the client returns and what the server saw: the exact request headers,
 * how many attempts came and when, RST_STREAM(CANCEL) on a deadline, PINGs,
 * accepts (a breaker that is open must not connect) and reconnects.
 *
 * Threads: the server thread owns the sockets and sessions and updates the
 * observations under srv->mu, broadcasting srv->cv after every turn; test
 * threads read them under srv->mu and wait on srv->cv with deadlines. Call
 * completions arrive on the client's loop thread and are handed over
 * through each tcall's own mutex and condvar.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "transport/grpc/client.h"
#include "transport/grpc/wire.h"
#include "transport/transport.h"

#define WAIT_MS     10000 /* the longest any condition may take */
#define MAX_CONNS   16
#define MAX_HDRS    32
#define MAX_BODY    65536
#define MAX_REQS    16
#define TRACEPARENT "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

/* ---- time helpers ------------------------------------------------------- */

static void
abs_ts(int64_t due_ms, struct timespec *ts)
{
	ts->tv_sec = (time_t)(due_ms / 1000);
	ts->tv_nsec = (long)(due_ms % 1000) * 1000000L;
}

/* wait_until_ms blocks until the monotonic clock reads |due_ms| (ms_now_ms
 * clock): waiting for a point in time, e.g. a breaker's open period. */
static void
wait_until_ms(int64_t due_ms)
{
	struct timespec ts;

	abs_ts(due_ms, &ts);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR) {
	}
}

static void
cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
}

/* ---- the scripted server ------------------------------------------------ */

enum mode {
	M_OK,        /* one message "pong:<request>", then grpc-status 0 */
	M_UNAVAIL,   /* Trailers-Only UNAVAILABLE the first fail_n times */
	M_REFUSE,    /* RST_STREAM(REFUSED_STREAM) the first fail_n times */
	M_GOAWAY,    /* GOAWAY(last 0) on the first connection */
	M_SILENT,    /* never answer */
	M_NOT_FOUND, /* Trailers-Only NOT_FOUND, percent-encoded message */
	M_BIG,       /* a reply of big_len bytes */
	M_TWO,       /* two messages: not unary */
	M_CLOSE,     /* close the connection once the request is in */
};

struct hdr {
	char name[64];
	char value[256];
};

struct sstream {
	int32_t id;
	struct sstream *prev, *next; /* sconn->streams */
	struct hdr hdrs[MAX_HDRS];
	int nhdrs;
	uint8_t body[MAX_BODY];
	size_t body_len;
	uint8_t *resp; /* response body (malloc'd), sent by s_read */
	size_t resp_len;
	size_t resp_off;
};

struct sconn {
	int fd;
	int idx; /* accept order, from 0 */
	nghttp2_session *h2;
	struct tsrv *srv;
	bool close_now;
	bool shut; /* we shut our side down: wait for the peer's EOF */
	struct sstream *streams; /* owned: freed at close or with the conn */
};

struct tsrv {
	int lfd;
	uint16_t port;
	int wake[2];
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	nghttp2_session_callbacks *cbs;
	struct sconn *conns[MAX_CONNS];
	/* script (set before the calls) */
	enum mode mode;
	int fail_n;
	const char *pushback; /* grpc-retry-pushback-ms value or NULL */
	size_t big_len;
	/* commands */
	bool stop;
	bool kick; /* shut every connection down */
	/* observations */
	int accepts;
	int requests;
	int64_t req_ms[MAX_REQS];
	struct hdr last_hdrs[MAX_HDRS];
	int last_nhdrs;
	uint8_t last_body[MAX_BODY];
	size_t last_body_len;
	int rsts;
	uint32_t last_rst;
	int pings;
	int peer_closed;
};

static ssize_t
s_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len,
       uint32_t *flags, nghttp2_data_source *src, void *user)
{
	struct sstream *st = src->ptr;
	size_t n = st->resp_len - st->resp_off;
	nghttp2_nv tr[] = {{(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1,
	                    NGHTTP2_NV_FLAG_NONE}};

	(void)user;
	if (n > len) {
		n = len;
	}
	memcpy(buf, st->resp + st->resp_off, n);
	st->resp_off += n;
	if (st->resp_off == st->resp_len) {
		*flags |=
		    NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		nghttp2_submit_trailer(h2, id, tr, 1);
	}
	return (ssize_t)n;
}

/* s_respond sends Response-Headers, |nmsg| copies of |msg|, trailers. */
static void
s_respond(struct sconn *sc, struct sstream *st, const uint8_t *msg, size_t len,
          int nmsg)
{
	nghttp2_nv h[] = {
	    {(uint8_t *)":status", (uint8_t *)"200", 7, 3,
	     NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
	     NGHTTP2_NV_FLAG_NONE},
	};
	nghttp2_data_provider dp;

	st->resp_len = (size_t)nmsg * (TP_GRPC_PREFIX_LEN + len);
	st->resp = malloc(st->resp_len);
	ck_assert_ptr_nonnull(st->resp);
	for (int i = 0; i < nmsg; i++) {
		uint8_t *p = st->resp + (size_t)i * (TP_GRPC_PREFIX_LEN + len);

		tp_grpc_frame_header(p, (uint32_t)len);
		memcpy(p + TP_GRPC_PREFIX_LEN, msg, len);
	}
	dp.source.ptr = st;
	dp.read_callback = s_read;
	nghttp2_submit_response(sc->h2, st->id, h, 2, &dp);
}

/* s_trailers_only answers with one HEADERS+END_STREAM frame. */
static void
s_trailers_only(struct sconn *sc, struct sstream *st, const char *status,
                const char *msg, const char *pushback)
{
	nghttp2_nv h[5];
	size_t n = 0;

#define SNV(N, V)                                                              \
	h[n++] = (nghttp2_nv){(uint8_t *)(N), (uint8_t *)(V), strlen(N),       \
	                      strlen(V), NGHTTP2_NV_FLAG_NONE}
	SNV(":status", "200");
	SNV("content-type", "application/grpc");
	SNV("grpc-status", status);
	if (msg) {
		SNV("grpc-message", msg);
	}
	if (pushback) {
		SNV("grpc-retry-pushback-ms", pushback);
	}
#undef SNV
	nghttp2_submit_response(sc->h2, st->id, h, n, NULL);
}

/* s_request runs the script for a complete request (srv->mu held). */
static void
s_request(struct sconn *sc, struct sstream *st)
{
	struct tsrv *srv = sc->srv;
	int nth;
	uint8_t reply[MAX_BODY + 8];
	size_t rlen;
	uint8_t *big;

	if (srv->requests < MAX_REQS) {
		srv->req_ms[srv->requests] = ms_now_ms();
	}
	nth = ++srv->requests;
	memcpy(srv->last_hdrs, st->hdrs, sizeof(st->hdrs));
	srv->last_nhdrs = st->nhdrs;
	memcpy(srv->last_body, st->body, st->body_len);
	srv->last_body_len = st->body_len;
	/* "pong:" + the request message (after its 5-byte prefix) */
	memcpy(reply, "pong:", 5);
	rlen = 5;
	if (st->body_len >= TP_GRPC_PREFIX_LEN) {
		memcpy(reply + 5, st->body + TP_GRPC_PREFIX_LEN,
		       st->body_len - TP_GRPC_PREFIX_LEN);
		rlen += st->body_len - TP_GRPC_PREFIX_LEN;
	}
	switch (srv->mode) {
	case M_OK:
		s_respond(sc, st, reply, rlen, 1);
		break;
	case M_UNAVAIL:
		if (nth <= srv->fail_n) {
			s_trailers_only(sc, st, "14", "try%20later",
			                srv->pushback);
		} else {
			s_respond(sc, st, reply, rlen, 1);
		}
		break;
	case M_REFUSE:
		if (nth <= srv->fail_n) {
			nghttp2_submit_rst_stream(sc->h2, NGHTTP2_FLAG_NONE,
			                          st->id,
			                          NGHTTP2_REFUSED_STREAM);
		} else {
			s_respond(sc, st, reply, rlen, 1);
		}
		break;
	case M_GOAWAY:
		if (sc->idx == 0) {
			nghttp2_submit_goaway(sc->h2, NGHTTP2_FLAG_NONE, 0,
			                      NGHTTP2_NO_ERROR, NULL, 0);
		} else {
			s_respond(sc, st, reply, rlen, 1);
		}
		break;
	case M_SILENT:
		break;
	case M_NOT_FOUND:
		s_trailers_only(sc, st, "5",
		                "no coupon for %22x%22 %E2%9C%93 50%25", NULL);
		break;
	case M_BIG:
		big = calloc(1, srv->big_len);
		ck_assert_ptr_nonnull(big);
		s_respond(sc, st, big, srv->big_len, 1);
		free(big);
		break;
	case M_TWO:
		s_respond(sc, st, reply, rlen, 2);
		break;
	case M_CLOSE:
		sc->close_now = true;
		break;
	}
}

static int
s_on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct sconn *sc = user;
	struct sstream *st;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
		return 0;
	}
	st = calloc(1, sizeof(*st));
	ck_assert_ptr_nonnull(st);
	st->id = frame->hd.stream_id;
	st->next = sc->streams;
	if (sc->streams) {
		sc->streams->prev = st;
	}
	sc->streams = st;
	nghttp2_session_set_stream_user_data(h2, st->id, st);
	return 0;
}

static int
s_on_header(nghttp2_session *h2, const nghttp2_frame *frame,
            const uint8_t *name, size_t namelen, const uint8_t *value,
            size_t valuelen, uint8_t flags, void *user)
{
	struct sstream *st =
	    nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);

	(void)flags;
	(void)user;
	if (st == NULL || st->nhdrs == MAX_HDRS) {
		return 0;
	}
	snprintf(st->hdrs[st->nhdrs].name, sizeof(st->hdrs[0].name), "%.*s",
	         (int)namelen, name);
	snprintf(st->hdrs[st->nhdrs].value, sizeof(st->hdrs[0].value), "%.*s",
	         (int)valuelen, value);
	st->nhdrs++;
	return 0;
}

static int
s_on_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
          size_t len, void *user)
{
	struct sstream *st = nghttp2_session_get_stream_user_data(h2, id);

	(void)flags;
	(void)user;
	if (st != NULL && st->body_len + len <= MAX_BODY) {
		memcpy(st->body + st->body_len, data, len);
		st->body_len += len;
	}
	return 0;
}

static int
s_on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user)
{
	struct sconn *sc = user;
	struct sstream *st;

	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
	case NGHTTP2_DATA:
		st = nghttp2_session_get_stream_user_data(h2,
		                                          frame->hd.stream_id);
		if (st != NULL && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
			s_request(sc, st);
		}
		break;
	case NGHTTP2_RST_STREAM:
		sc->srv->rsts++;
		sc->srv->last_rst = frame->rst_stream.error_code;
		break;
	case NGHTTP2_PING:
		if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
			sc->srv->pings++;
		}
		break;
	default:
		break;
	}
	return 0;
}

static void
s_stream_free(struct sconn *sc, struct sstream *st)
{
	if (st->prev) {
		st->prev->next = st->next;
	} else {
		sc->streams = st->next;
	}
	if (st->next) {
		st->next->prev = st->prev;
	}
	free(st->resp);
	free(st);
}

static int
s_on_stream_close(nghttp2_session *h2, int32_t id, uint32_t code, void *user)
{
	struct sstream *st = nghttp2_session_get_stream_user_data(h2, id);

	(void)code;
	if (st != NULL) {
		nghttp2_session_set_stream_user_data(h2, id, NULL);
		s_stream_free(user, st);
	}
	return 0;
}

static void
s_conn_free(struct tsrv *srv, int i)
{
	struct sconn *sc = srv->conns[i];

	nghttp2_session_del(sc->h2);
	while (sc->streams) {
		s_stream_free(sc, sc->streams);
	}
	close(sc->fd);
	free(sc);
	srv->conns[i] = NULL;
}

/* s_flush writes everything nghttp2 has (blocking: the client reads). */
static void
s_flush(struct sconn *sc)
{
	const uint8_t *data;
	ssize_t n;

	if (sc->shut) {
		return;
	}
	while ((n = nghttp2_session_mem_send(sc->h2, &data)) > 0) {
		ssize_t off = 0;

		while (off < n) {
			ssize_t w = send(sc->fd, data + off, (size_t)(n - off),
			                 MSG_NOSIGNAL);

			if (w < 0 && errno == EINTR) {
				continue;
			}
			if (w <= 0) {
				return;
			}
			off += w;
		}
	}
}

static void
s_accept(struct tsrv *srv)
{
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
	struct sconn *sc;
	int fd = accept(srv->lfd, NULL, NULL);
	int i;

	if (fd < 0) {
		return;
	}
	for (i = 0; i < MAX_CONNS && srv->conns[i]; i++) {
	}
	ck_assert_int_lt(i, MAX_CONNS);
	sc = calloc(1, sizeof(*sc));
	ck_assert_ptr_nonnull(sc);
	sc->fd = fd;
	sc->srv = srv;
	sc->idx = srv->accepts++;
	ck_assert_int_eq(nghttp2_session_server_new(&sc->h2, srv->cbs, sc), 0);
	nghttp2_submit_settings(sc->h2, NGHTTP2_FLAG_NONE, iv, 1);
	srv->conns[i] = sc;
	s_flush(sc);
}

static void *
s_main(void *arg)
{
	struct tsrv *srv = arg;

	pthread_mutex_lock(&srv->mu);
	while (!srv->stop) {
		struct pollfd pfd[MAX_CONNS + 2];
		int map[MAX_CONNS + 2];
		int n = 0;

		pfd[n] = (struct pollfd){.fd = srv->wake[0], .events = POLLIN};
		map[n++] = -1;
		pfd[n] = (struct pollfd){.fd = srv->lfd, .events = POLLIN};
		map[n++] = -2;
		for (int i = 0; i < MAX_CONNS; i++) {
			if (srv->conns[i]) {
				pfd[n] = (struct pollfd){
				    .fd = srv->conns[i]->fd, .events = POLLIN};
				map[n++] = i;
			}
		}
		pthread_mutex_unlock(&srv->mu);
		/* Every command rings wake[]: no timeout is needed. */
		if (poll(pfd, (nfds_t)n, -1) < 0 && errno != EINTR) {
			ck_abort_msg("poll: %s", strerror(errno));
		}
		pthread_mutex_lock(&srv->mu);
		for (int j = 0; j < n; j++) {
			struct sconn *sc;
			uint8_t buf[16384];
			ssize_t r;

			if (!(pfd[j].revents & (POLLIN | POLLHUP | POLLERR))) {
				continue;
			}
			if (map[j] == -1) {
				char c;

				r = read(srv->wake[0], &c, 1);
				(void)r;
				continue;
			}
			if (map[j] == -2) {
				s_accept(srv);
				continue;
			}
			sc = srv->conns[map[j]];
			r = recv(sc->fd, buf, sizeof(buf), 0);
			if (r <= 0) {
				srv->peer_closed++;
				s_conn_free(srv, map[j]);
				continue;
			}
			if (sc->shut) {
				continue; /* draining until the peer's EOF */
			}
			if (nghttp2_session_mem_recv(sc->h2, buf, (size_t)r) <
			    0) {
				s_conn_free(srv, map[j]);
				continue;
			}
			s_flush(sc);
			if (sc->close_now) {
				s_conn_free(srv, map[j]);
			}
		}
		if (srv->kick) {
			srv->kick = false;
			for (int i = 0; i < MAX_CONNS; i++) {
				if (srv->conns[i] && !srv->conns[i]->shut) {
					shutdown(srv->conns[i]->fd, SHUT_WR);
					srv->conns[i]->shut = true;
				}
			}
		}
		pthread_cond_broadcast(&srv->cv);
	}
	pthread_mutex_unlock(&srv->mu);
	return NULL;
}

static void
s_ring(struct tsrv *srv)
{
	ssize_t r = write(srv->wake[1], "x", 1);

	(void)r;
}

/* tsrv_start listens on 127.0.0.1:|port| (0: any) and runs the thread. */
static struct tsrv *
tsrv_start(uint16_t port, enum mode mode)
{
	struct tsrv *srv = calloc(1, sizeof(*srv));
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(port)};
	socklen_t sl = sizeof(sa);
	int one = 1;

	ck_assert_ptr_nonnull(srv);
	srv->mode = mode;
	pthread_mutex_init(&srv->mu, NULL);
	cond_init_mono(&srv->cv);
	ck_assert_int_eq(pipe(srv->wake), 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	srv->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(srv->lfd, 0);
	setsockopt(srv->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ck_assert_int_eq(bind(srv->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(srv->lfd, 16), 0);
	getsockname(srv->lfd, (struct sockaddr *)&sa, &sl);
	srv->port = ntohs(sa.sin_port);
	nghttp2_session_callbacks_new(&srv->cbs);
	nghttp2_session_callbacks_set_on_begin_headers_callback(
	    srv->cbs, s_on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(srv->cbs, s_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(srv->cbs,
	                                                          s_on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(srv->cbs,
	                                                     s_on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(
	    srv->cbs, s_on_stream_close);
	ck_assert_int_eq(pthread_create(&srv->th, NULL, s_main, srv), 0);
	return srv;
}

static void
tsrv_stop(struct tsrv *srv)
{
	pthread_mutex_lock(&srv->mu);
	srv->stop = true;
	pthread_mutex_unlock(&srv->mu);
	s_ring(srv);
	pthread_join(srv->th, NULL);
	for (int i = 0; i < MAX_CONNS; i++) {
		if (srv->conns[i]) {
			s_conn_free(srv, i);
		}
	}
	nghttp2_session_callbacks_del(srv->cbs);
	close(srv->lfd);
	close(srv->wake[0]);
	close(srv->wake[1]);
	pthread_cond_destroy(&srv->cv);
	pthread_mutex_destroy(&srv->mu);
	free(srv);
}

static void
tsrv_kick(struct tsrv *srv)
{
	pthread_mutex_lock(&srv->mu);
	srv->kick = true;
	pthread_mutex_unlock(&srv->mu);
	s_ring(srv);
}

/* WAIT_SRV waits (under srv->mu, at most WAIT_MS) until |cond| holds and
 * fails the test otherwise. */
#define WAIT_SRV(srv, cond)                                                    \
	do {                                                                   \
		int64_t due_ = ms_now_ms() + WAIT_MS;                          \
		struct timespec ts_;                                           \
		bool ok_;                                                      \
		abs_ts(due_, &ts_);                                            \
		pthread_mutex_lock(&(srv)->mu);                                \
		while (!(cond) && ms_now_ms() < due_) {                        \
			pthread_cond_timedwait(&(srv)->cv, &(srv)->mu, &ts_);  \
		}                                                              \
		ok_ = (cond);                                                  \
		pthread_mutex_unlock(&(srv)->mu);                              \
		ck_assert_msg(ok_, "server never saw: %s", #cond);             \
	} while (0)

/* srv_get reads an observation under the lock. */
static int
srv_get(struct tsrv *srv, const int *field)
{
	int v;

	pthread_mutex_lock(&srv->mu);
	v = *field;
	pthread_mutex_unlock(&srv->mu);
	return v;
}

/* srv_hdr returns the value of |name| in the last request (or NULL) and
 * its position in *pos. The pointer stays valid while no other request
 * comes in: tests read it after their call completed. */
static const char *
srv_hdr(struct tsrv *srv, const char *name, int *pos)
{
	const char *v = NULL;

	pthread_mutex_lock(&srv->mu);
	for (int i = 0; i < srv->last_nhdrs; i++) {
		if (strcmp(srv->last_hdrs[i].name, name) == 0) {
			v = srv->last_hdrs[i].value;
			if (pos) {
				*pos = i;
			}
			break;
		}
	}
	pthread_mutex_unlock(&srv->mu);
	return v;
}

/* ---- calls -------------------------------------------------------------- */

struct tcall {
	struct bus_call bc;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int ndone; /* completions seen: must end at 1 */
	int64_t start_ms;
	int64_t done_ms;
	char req[64];
};

static void
t_done(struct bus_call *c)
{
	struct tcall *t = c->arg;

	pthread_mutex_lock(&t->mu);
	t->done = true;
	t->ndone++;
	t->done_ms = ms_now_ms();
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

static void
t_start(struct tp_grpc_client *cl, struct tcall *t, const char *req,
        int timeout_ms)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->mu, NULL);
	cond_init_mono(&t->cv);
	snprintf(t->req, sizeof(t->req), "%s", req);
	t->bc.service = "test.Echo";
	t->bc.method = "Ping";
	t->bc.req = (const uint8_t *)t->req;
	t->bc.req_len = strlen(t->req);
	t->start_ms = ms_now_ms();
	t->bc.deadline_ms = t->start_ms + timeout_ms;
	t->bc.traceparent = TRACEPARENT;
	t->bc.done = t_done;
	t->bc.arg = t;
	ck_assert_int_eq(tp_grpc_client_call(cl, &t->bc), 0);
}

/* t_wait waits for the completion; returns its rc. */
static int
t_wait(struct tcall *t)
{
	int64_t due = ms_now_ms() + WAIT_MS;
	struct timespec ts;
	bool done;

	abs_ts(due, &ts);
	pthread_mutex_lock(&t->mu);
	while (!t->done && ms_now_ms() < due) {
		pthread_cond_timedwait(&t->cv, &t->mu, &ts);
	}
	done = t->done;
	pthread_mutex_unlock(&t->mu);
	ck_assert_msg(done, "call never completed");
	ck_assert_int_eq(t->ndone, 1);
	return t->bc.rc;
}

static void
t_fini(struct tcall *t)
{
	free(t->bc.reply);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
}

/* t_call makes one call and waits for it; returns its rc. */
static int
t_call(struct tp_grpc_client *cl, struct tcall *t, const char *req,
       int timeout_ms)
{
	t_start(cl, t, req, timeout_ms);
	return t_wait(t);
}

static struct tp_grpc_client_opts
opts_for(uint16_t port)
{
	return (struct tp_grpc_client_opts){
	    .host = "127.0.0.1",
	    .port = port,
	    .max_message = 1 << 20,
	    .connect_timeout_ms = 2000,
	    .retry_max_attempts = 3,
	    .retry_backoff_ms = 5,
	    .retry_backoff_max_ms = 20,
	    .breaker_failures = 5,
	    .breaker_open_ms = 500,
	    .keepalive_ms = 0,
	};
}

static struct tp_grpc_client *
client_for(const struct tp_grpc_client_opts *o)
{
	struct tp_grpc_client *cl;

	ck_assert_int_eq(tp_grpc_client_create(&cl, o), 0);
	return cl;
}

/* metric_value finds `name{labels} value` in the rendered metrics. */
static long
metric_value(const char *name, const char *labels)
{
	char *text;
	size_t len;
	char key[512];
	const char *p;
	long v = -1;

	ck_assert_int_eq(ms_metrics_render(&text, &len), 0);
	snprintf(key, sizeof(key), "%s{%s} ", name, labels);
	if ((p = strstr(text, key)) != NULL) {
		v = strtol(p + strlen(key), NULL, 10);
	}
	free(text);
	return v;
}

/* unused_port returns a port nothing listens on (bound, then closed). */
static uint16_t
unused_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	close(fd);
	return ntohs(sa.sin_port);
}

static void
setup(void)
{
	ms_log_set_level(MS_LOG_ERROR);
	ms_metrics_reset();
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(test_ok_roundtrip)
{
	struct tsrv *srv = tsrv_start(0, M_OK);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl = client_for(&o);
	struct tcall t;
	char authority[64], labels[128], desc[256];
	int p_auth = -1, p_te = -1, p_to = -1, p_ct = -1, p_ua = -1;
	const char *v;
	int64_t ms;

	ck_assert_int_eq(t_call(cl, &t, "hello", 5000), 0);
	ck_assert_uint_eq(t.bc.reply_len, 10);
	ck_assert_mem_eq(t.bc.reply, "pong:hello", 10);

	/* What went over the wire, and in which order (wire.md §1.2). */
	ck_assert_str_eq(srv_hdr(srv, ":method", NULL), "POST");
	ck_assert_str_eq(srv_hdr(srv, ":scheme", NULL), "http");
	ck_assert_str_eq(srv_hdr(srv, ":path", NULL), "/test.Echo/Ping");
	snprintf(authority, sizeof(authority), "127.0.0.1:%u", srv->port);
	ck_assert_str_eq(srv_hdr(srv, ":authority", &p_auth), authority);
	ck_assert_str_eq(srv_hdr(srv, "te", &p_te), "trailers");
	ck_assert_str_eq(srv_hdr(srv, "content-type", &p_ct),
	                 "application/grpc");
	ck_assert_str_eq(srv_hdr(srv, "user-agent", &p_ua),
	                 "grpc-c-monoshop/0.1");
	ck_assert_str_eq(srv_hdr(srv, "traceparent", NULL), TRACEPARENT);
	ck_assert_ptr_null(srv_hdr(srv, "grpc-previous-rpc-attempts", NULL));
	v = srv_hdr(srv, "grpc-timeout", &p_to);
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(tp_grpc_timeout_parse(v, strlen(v), &ms), 0);
	ck_assert_int_gt(ms, 0);
	ck_assert_int_le(ms, 5000);
	ck_assert_int_lt(p_auth, p_te);
	ck_assert_int_lt(p_te, p_to);
	ck_assert_int_lt(p_to, p_ct);
	ck_assert_int_lt(p_ct, p_ua);
	/* The body: a 5-byte prefix and the request. */
	pthread_mutex_lock(&srv->mu);
	ck_assert_uint_eq(srv->last_body_len, 10);
	ck_assert_mem_eq(srv->last_body, "\0\0\0\0\5hello", 10);
	pthread_mutex_unlock(&srv->mu);

	ck_assert_int_eq(tp_grpc_client_health(cl, desc, sizeof(desc)), 0);
	snprintf(labels, sizeof(labels), "target=\"%s\",code=\"OK\"",
	         authority);
	ck_assert_int_eq(
	    metric_value("monoshop_grpc_client_attempts_total", labels), 1);
	t_fini(&t);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_multiplexed)
{
	enum { N = 24 };
	struct tsrv *srv = tsrv_start(0, M_OK);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl = client_for(&o);
	static struct tcall t[N];
	char req[16], want[32];

	for (int i = 0; i < N; i++) {
		snprintf(req, sizeof(req), "m%d", i);
		t_start(cl, &t[i], req, 5000);
	}
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(t_wait(&t[i]), 0);
		snprintf(want, sizeof(want), "pong:m%d", i);
		ck_assert_uint_eq(t[i].bc.reply_len, strlen(want));
		ck_assert_mem_eq(t[i].bc.reply, want, strlen(want));
		t_fini(&t[i]);
	}
	/* One connection carried them all. */
	ck_assert_int_eq(srv_get(srv, &srv->accepts), 1);
	ck_assert_int_eq(srv_get(srv, &srv->requests), N);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_unavailable_retried)
{
	struct tsrv *srv = tsrv_start(0, M_UNAVAIL);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl;
	struct tcall t;
	char labels[128];

	srv->fail_n = 2;
	cl = client_for(&o);
	ck_assert_int_eq(t_call(cl, &t, "x", 5000), 0);
	ck_assert_mem_eq(t.bc.reply, "pong:x", 6);
	ck_assert_int_eq(srv_get(srv, &srv->requests), 3);
	ck_assert_str_eq(srv_hdr(srv, "grpc-previous-rpc-attempts", NULL), "2");
	snprintf(labels, sizeof(labels), "target=\"127.0.0.1:%u\"", srv->port);
	ck_assert_int_eq(
	    metric_value("monoshop_grpc_client_retries_total", labels), 2);
	snprintf(labels, sizeof(labels),
	         "target=\"127.0.0.1:%u\",code=\"UNAVAILABLE\"", srv->port);
	ck_assert_int_eq(
	    metric_value("monoshop_grpc_client_attempts_total", labels), 2);
	t_fini(&t);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_retries_bounded)
{
	struct tsrv *srv = tsrv_start(0, M_UNAVAIL);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl;
	struct tcall t;

	srv->fail_n = 1000;
	o.breaker_failures = 100;
	cl = client_for(&o);
	ck_assert_int_eq(t_call(cl, &t, "x", 5000), MS_EUNAVAIL);
	ck_assert_str_eq(t.bc.detail, "try later");
	ck_assert_ptr_null(t.bc.reply);
	ck_assert_int_eq(srv_get(srv, &srv->requests), 3);
	t_fini(&t);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_pushback_honoured)
{
	struct tsrv *srv = tsrv_start(0, M_UNAVAIL);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl;
	struct tcall t;
	int64_t gap;

	srv->fail_n = 1;
	srv->pushback = "300";
	o.retry_backoff_ms = 1; /* the pushback, not the backoff, decides */
	o.retry_backoff_max_ms = 1;
	cl = client_for(&o);
	ck_assert_int_eq(t_call(cl, &t, "x", 5000), 0);
	ck_assert_int_eq(srv_get(srv, &srv->requests), 2);
	pthread_mutex_lock(&srv->mu);
	gap = srv->req_ms[1] - srv->req_ms[0];
	pthread_mutex_unlock(&srv->mu);
	ck_assert_msg(gap >= 300, "retried after %lld ms", (long long)gap);
	t_fini(&t);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_pushback_negative_stops)
{
	struct tsrv *srv = tsrv_start(0, M_UNAVAIL);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl;
	struct tcall t;

	srv->fail_n = 1;
	srv->pushback = "-1"; /* "do not retry" */
	cl = client_for(&o);
	ck_assert_int_eq(t_call(cl, &t, "x", 5000), MS_EUNAVAIL);
	ck_assert_int_eq(srv_get(srv, &srv->requests), 1);
	t_fini(&t);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_refused_stream_retried)
{
	struct tsrv *srv = tsrv_start(0, M_REFUSE);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl;
	struct tcall t;

	srv->fail_n = 2;
	cl = client_for(&o);
	ck_assert_int_eq(t_call(cl, &t, "r", 5000), 0);
	ck_assert_mem_eq(t.bc.reply, "pong:r", 6);
	ck_assert_int_eq(srv_get(srv, &srv->requests), 3);
	ck_assert_str_eq(srv_hdr(srv, "grpc-previous-rpc-attempts", NULL), "2");
	t_fini(&t);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_goaway_new_connection)
{
	struct tsrv *srv = tsrv_start(0, M_GOAWAY);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl;
	struct tcall t, t2;

	/* Retries off: the GOAWAY retry is transparent (A6), it still
	 * happens. */
	o.retry_max_attempts = 1;
	cl = client_for(&o);

	ck_assert_int_eq(t_call(cl, &t, "g", 5000), 0);
	ck_assert_mem_eq(t.bc.reply, "pong:g", 6);
	ck_assert_int_eq(srv_get(srv, &srv->accepts), 2);
	ck_assert_int_eq(srv_get(srv, &srv->requests), 2);
	/* The old connection, idle after GOAWAY, is closed by the client. */
	WAIT_SRV(srv, srv->peer_closed >= 1);
	/* And new calls keep using the new one. */
	ck_assert_int_eq(t_call(cl, &t2, "h", 5000), 0);
	ck_assert_int_eq(srv_get(srv, &srv->accepts), 2);
	t_fini(&t);
	t_fini(&t2);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_deadline_cancels)
{
	struct tsrv *srv = tsrv_start(0, M_SILENT);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl = client_for(&o);
	struct tcall t;

	ck_assert_int_eq(t_call(cl, &t, "s", 300), MS_ETIMEDOUT);
	ck_assert_str_eq(t.bc.detail, "deadline exceeded");
	ck_assert_int_ge(t.done_ms, t.bc.deadline_ms);
	ck_assert_int_eq(srv_get(srv, &srv->requests), 1);
	WAIT_SRV(srv, srv->rsts >= 1);
	pthread_mutex_lock(&srv->mu);
	ck_assert_uint_eq(srv->last_rst, NGHTTP2_CANCEL);
	pthread_mutex_unlock(&srv->mu);
	t_fini(&t);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_not_found_message)
{
	struct tsrv *srv = tsrv_start(0, M_NOT_FOUND);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl;
	struct tcall t;
	char desc[256];

	o.breaker_failures = 2;
	cl = client_for(&o);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(t_call(cl, &t, "x", 5000), MS_ENOTFOUND);
		ck_assert_str_eq(t.bc.detail,
		                 "no coupon for \"x\" \xE2\x9C\x93 50%");
		t_fini(&t);
	}
	/* NOT_FOUND is the service working: not retried, breaker closed. */
	ck_assert_int_eq(srv_get(srv, &srv->requests), 3);
	ck_assert_int_eq(tp_grpc_client_health(cl, desc, sizeof(desc)), 0);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_reply_too_big)
{
	struct tsrv *srv = tsrv_start(0, M_BIG);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl;
	struct tcall t;

	srv->big_len = 4096;
	o.max_message = 1024;
	cl = client_for(&o);
	ck_assert_int_eq(t_call(cl, &t, "x", 5000), MS_ETOOBIG);
	ck_assert_ptr_null(t.bc.reply);
	ck_assert_int_eq(srv_get(srv, &srv->requests), 1);
	t_fini(&t);
	/* The connection stays usable: exactly max_message fits. */
	pthread_mutex_lock(&srv->mu);
	srv->big_len = 1024;
	pthread_mutex_unlock(&srv->mu);
	ck_assert_int_eq(t_call(cl, &t, "x", 5000), 0);
	ck_assert_uint_eq(t.bc.reply_len, 1024);
	ck_assert_int_eq(srv_get(srv, &srv->accepts), 1);
	t_fini(&t);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_two_messages_rejected)
{
	struct tsrv *srv = tsrv_start(0, M_TWO);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl = client_for(&o);
	struct tcall t;

	ck_assert_int_eq(t_call(cl, &t, "x", 5000), MS_EPROTO);
	ck_assert_ptr_null(t.bc.reply);
	t_fini(&t);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_no_retry_after_break)
{
	struct tsrv *srv = tsrv_start(0, M_CLOSE);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl = client_for(&o);
	struct tcall t;

	/* The request reached the server: it may have been processed. */
	ck_assert_int_eq(t_call(cl, &t, "x", 5000), MS_EUNAVAIL);
	ck_assert_msg(strstr(t.bc.detail, "lost") != NULL, "detail: %s",
	              t.bc.detail);
	ck_assert_int_eq(srv_get(srv, &srv->requests), 1);
	ck_assert_int_eq(srv_get(srv, &srv->accepts), 1);
	t_fini(&t);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_breaker)
{
	uint16_t port = unused_port();
	struct tp_grpc_client_opts o = opts_for(port);
	struct tp_grpc_client *cl;
	struct tsrv *srv;
	struct tcall t;
	char desc[256];
	int64_t opened_ms;

	o.retry_max_attempts = 1;
	o.breaker_failures = 3;
	o.breaker_open_ms = 700;
	cl = client_for(&o);
	/* Nobody listens: three refused connects open the circuit. */
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(t_call(cl, &t, "x", 5000), MS_EUNAVAIL);
		ck_assert_msg(strstr(t.bc.detail, "cannot connect") != NULL,
		              "detail: %s", t.bc.detail);
		t_fini(&t);
	}
	opened_ms = ms_now_ms();
	ck_assert_int_eq(tp_grpc_client_health(cl, desc, sizeof(desc)),
	                 MS_EUNAVAIL);
	ck_assert_msg(strncmp(desc, "circuit open: cannot connect", 28) == 0,
	              "health: %s", desc);

	/* Open: the server is back, but calls fail fast without a connect. */
	srv = tsrv_start(port, M_OK);
	ck_assert_int_eq(t_call(cl, &t, "x", 5000), MS_EUNAVAIL);
	ck_assert_msg(strncmp(t.bc.detail, "circuit open: ", 14) == 0,
	              "detail: %s", t.bc.detail);
	ck_assert_int_lt(t.done_ms - t.start_ms, 200);
	t_fini(&t);
	ck_assert_int_lt(ms_now_ms(), opened_ms + o.breaker_open_ms);
	ck_assert_int_eq(srv_get(srv, &srv->accepts), 0);

	/* After open_ms one probe goes out; it succeeds and closes it. */
	wait_until_ms(opened_ms + o.breaker_open_ms);
	ck_assert_int_eq(t_call(cl, &t, "probe", 5000), 0);
	ck_assert_mem_eq(t.bc.reply, "pong:probe", 10);
	t_fini(&t);
	ck_assert_int_eq(srv_get(srv, &srv->accepts), 1);
	ck_assert_int_eq(tp_grpc_client_health(cl, desc, sizeof(desc)), 0);
	ck_assert_int_eq(t_call(cl, &t, "y", 5000), 0);
	t_fini(&t);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_breaker_probe_fails)
{
	uint16_t port = unused_port();
	struct tp_grpc_client_opts o = opts_for(port);
	struct tp_grpc_client *cl;
	struct tcall t;
	char desc[256];
	int64_t opened_ms;

	o.retry_max_attempts = 1;
	o.breaker_failures = 1;
	o.breaker_open_ms = 300;
	cl = client_for(&o);
	ck_assert_int_eq(t_call(cl, &t, "x", 5000), MS_EUNAVAIL);
	t_fini(&t);
	opened_ms = ms_now_ms();
	/* The half-open probe still finds nobody: open again at once. */
	wait_until_ms(opened_ms + o.breaker_open_ms);
	ck_assert_int_eq(t_call(cl, &t, "x", 5000), MS_EUNAVAIL);
	ck_assert_msg(strstr(t.bc.detail, "cannot connect") != NULL,
	              "detail: %s", t.bc.detail);
	t_fini(&t);
	ck_assert_int_eq(t_call(cl, &t, "x", 5000), MS_EUNAVAIL);
	ck_assert_msg(strncmp(t.bc.detail, "circuit open: ", 14) == 0,
	              "detail: %s", t.bc.detail);
	t_fini(&t);
	ck_assert_int_eq(tp_grpc_client_health(cl, desc, sizeof(desc)),
	                 MS_EUNAVAIL);
	tp_grpc_client_destroy(cl);
}
END_TEST

START_TEST(test_reconnect)
{
	struct tsrv *srv = tsrv_start(0, M_OK);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl = client_for(&o);
	struct tcall t;

	ck_assert_int_eq(t_call(cl, &t, "a", 5000), 0);
	t_fini(&t);
	/* The server drops the connection; the client notices and lets go. */
	tsrv_kick(srv);
	WAIT_SRV(srv, srv->peer_closed == 1);
	ck_assert_int_eq(t_call(cl, &t, "b", 5000), 0);
	ck_assert_mem_eq(t.bc.reply, "pong:b", 6);
	t_fini(&t);
	ck_assert_int_eq(srv_get(srv, &srv->accepts), 2);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_server_restart)
{
	struct tsrv *srv = tsrv_start(0, M_OK);
	uint16_t port = srv->port;
	struct tp_grpc_client_opts o = opts_for(port);
	struct tp_grpc_client *cl = client_for(&o);
	struct tcall t;

	ck_assert_int_eq(t_call(cl, &t, "a", 5000), 0);
	t_fini(&t);
	/* The whole server goes away and comes back on the same port. */
	tsrv_stop(srv);
	srv = tsrv_start(port, M_OK);
	/* The first call may find the dead connection (it was idle, so the
	 * client may learn of the close only now); the retries rules then
	 * decide. Within a few calls, it must work again. */
	for (int i = 0;; i++) {
		int rc = t_call(cl, &t, "b", 5000);

		t_fini(&t);
		if (rc == 0) {
			break;
		}
		ck_assert_int_eq(rc, MS_EUNAVAIL);
		ck_assert_int_lt(i, 3);
	}
	ck_assert_int_eq(srv_get(srv, &srv->accepts), 1);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_destroy_in_flight)
{
	struct tsrv *srv = tsrv_start(0, M_SILENT);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl = client_for(&o);
	struct tcall t;

	t_start(cl, &t, "x", 10000);
	WAIT_SRV(srv, srv->requests == 1);
	tp_grpc_client_destroy(cl);
	/* Completed before destroy returned. */
	pthread_mutex_lock(&t.mu);
	ck_assert(t.done);
	ck_assert_int_eq(t.ndone, 1);
	pthread_mutex_unlock(&t.mu);
	ck_assert_int_eq(t.bc.rc, MS_ECLOSED);
	t_fini(&t);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_call_after_destroy_started)
{
	/* Calls queued on a client that nobody serves all complete at
	 * destroy, whatever state they were in (connecting, backoff). */
	uint16_t port = unused_port();
	struct tp_grpc_client_opts o = opts_for(port);
	struct tp_grpc_client *cl;
	static struct tcall t[8];

	o.retry_max_attempts = 5;
	o.retry_backoff_ms = 1000;
	o.retry_backoff_max_ms = 1000;
	o.breaker_failures = 100;
	cl = client_for(&o);
	for (int i = 0; i < 8; i++) {
		t_start(cl, &t[i], "x", 10000);
	}
	tp_grpc_client_destroy(cl);
	for (int i = 0; i < 8; i++) {
		ck_assert(t[i].done);
		ck_assert_int_eq(t[i].ndone, 1);
		ck_assert_int_eq(t[i].bc.rc, MS_ECLOSED);
		t_fini(&t[i]);
	}
}
END_TEST

START_TEST(test_keepalive_ping)
{
	struct tsrv *srv = tsrv_start(0, M_SILENT);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl;
	struct tcall t;

	o.keepalive_ms = 100;
	cl = client_for(&o);
	t_start(cl, &t, "x", 8000);
	/* A call in flight on a quiet connection: the client pings. */
	WAIT_SRV(srv, srv->pings >= 1);
	tp_grpc_client_destroy(cl);
	ck_assert_int_eq(t_wait(&t), MS_ECLOSED);
	t_fini(&t);
	tsrv_stop(srv);
}
END_TEST

START_TEST(test_no_keepalive_by_default)
{
	struct tsrv *srv = tsrv_start(0, M_SILENT);
	struct tp_grpc_client_opts o = opts_for(srv->port);
	struct tp_grpc_client *cl = client_for(&o);
	struct tcall t;

	ck_assert_int_eq(t_call(cl, &t, "x", 400), MS_ETIMEDOUT);
	ck_assert_int_eq(srv_get(srv, &srv->pings), 0);
	t_fini(&t);
	tp_grpc_client_destroy(cl);
	tsrv_stop(srv);
}
END_TEST

static Suite *
client_suite(void)
{
	Suite *s = suite_create("grpc_client");
	TCase *tc = tcase_create("client");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_ok_roundtrip);
	tcase_add_test(tc, test_multiplexed);
	tcase_add_test(tc, test_unavailable_retried);
	tcase_add_test(tc, test_retries_bounded);
	tcase_add_test(tc, test_pushback_honoured);
	tcase_add_test(tc, test_pushback_negative_stops);
	tcase_add_test(tc, test_refused_stream_retried);
	tcase_add_test(tc, test_goaway_new_connection);
	tcase_add_test(tc, test_deadline_cancels);
	tcase_add_test(tc, test_not_found_message);
	tcase_add_test(tc, test_reply_too_big);
	tcase_add_test(tc, test_two_messages_rejected);
	tcase_add_test(tc, test_no_retry_after_break);
	tcase_add_test(tc, test_breaker);
	tcase_add_test(tc, test_breaker_probe_fails);
	tcase_add_test(tc, test_reconnect);
	tcase_add_test(tc, test_server_restart);
	tcase_add_test(tc, test_destroy_in_flight);
	tcase_add_test(tc, test_call_after_destroy_started);
	tcase_add_test(tc, test_keepalive_ping);
	tcase_add_test(tc, test_no_keepalive_by_default);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(client_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
