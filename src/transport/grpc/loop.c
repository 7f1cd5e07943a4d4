/* SPDX-License-Identifier: MIT */
/*
 * The gRPC transport's event loop (see loop.h): the only file of the
 * transport that touches sockets. One thread waits in epoll_wait on the
 * listeners, the connections and an eventfd that other threads ring after
 * queueing a post; timers are a due-ordered list whose head sets the
 * epoll timeout.
 *
 * Lifetimes: a connection that is aborted (by us, by its owner or by the
 * peer) is closed at once and put on a reap list; its on_close runs at the
 * end of the loop turn and the memory is freed right after. Until then the
 * pointer stays valid, so a callback may abort any connection, its own
 * included, without use-after-free.
 *
 * TLS (tp_grpc_loop_set_tls): a layer under each connection's read and
 * write, with OpenSSL on the socket itself. The handshake runs
 * non-blocking in the loop (bounded: the connect timeout for a connect,
 * TLS_HANDSHAKE_MS for an accept) and on_open comes only after it, with
 * ALPN agreed on "h2"; from then on recv/send become SSL_read/SSL_write,
 * so the owners above (server.c, client.c) see plaintext and never know.
 * OpenSSL's read-ahead stays off, so every byte OpenSSL has not taken
 * stays in the kernel and epoll (level-triggered) still reports it.
 *
 * Threads: the loop thread owns every field except the post queue and the
 * |closed| flag, which |mtx| guards. A TLS context is only read once it
 * is set (OpenSSL's SSL_CTX is safe to share); each SSL object belongs to
 * its connection, on the loop thread.
 */
#include "transport/grpc/loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#if HAVE_GRPC_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#endif

#include "core/err.h"
#include "core/log.h"
#include "core/util.h"

#define SUB            "grpc"
#define MAX_EVENTS     64
#define READ_CHUNK     65536
#define READS_PER_TURN 16 /* fairness: at most 1 MiB per connection a turn */
#define CLOSE_FLUSH_MS 5000
/* An accepted TLS connection must finish its handshake within this long
 * (the owner's own bounds start only at on_open). */
#define TLS_HANDSHAKE_MS 10000

/* The TLS context of a loop: one SSL_CTX, server or client. */
struct tp_grpc_tls {
#if HAVE_GRPC_TLS
	SSL_CTX *ctx;
#endif
	bool server;
};

enum src_kind { SRC_WAKE, SRC_LISTENER, SRC_CONN };

struct src {
	enum src_kind kind;
};

struct listener {
	struct src src; /* first: epoll data points here */
	int fd;
	void (*on_accept)(void *arg, struct tp_grpc_conn *c);
	void *arg;
	struct listener *next;
};

struct tp_grpc_conn {
	struct src src; /* first */
	struct tp_grpc_loop *loop;
	int fd;
	const struct tp_grpc_conn_ops *ops;
	void *arg;
	uint8_t *out;   /* write buffer (malloc'd, owned) */
	size_t out_off; /* first unsent byte */
	size_t out_len; /* end of buffered bytes */
	size_t out_cap;
	bool connecting; /* non-blocking connect in progress */
	bool closing;    /* graceful close requested: flush, then close */
	bool dead;       /* fd closed; on_close pending on the reap list */
	bool epollout;   /* EPOLLOUT is registered */
	bool above_high; /* pending crossed HIGH_WATER: on_writable due */
	bool mem;        /* test hook: no socket, output dropped */
	bool corked;     /* tp_grpc_conn_cork: writes only buffer */
	bool outbound;   /* made by tp_grpc_connect (on_open reports) */
#if HAVE_GRPC_TLS
	SSL *ssl; /* TLS, or NULL: plain TCP; freed in reap */
#endif
	bool handshaking;  /* TLS handshake in progress: output waits */
	bool tls_want_out; /* OpenSSL (handshake, read) waits to write */
	int close_rc;
	char peer[64];
	struct tp_grpc_timer timer; /* connect timeout or close flush bound */
	struct tp_grpc_conn *next;  /* all live connections */
	struct tp_grpc_conn *reap_next;
};

struct post {
	void (*fn)(void *arg);
	void *arg;
	struct post *next;
};

struct tp_grpc_loop {
	char name[32];
	int epfd;
	int evfd;
	struct src wake;
	pthread_t thread;
	bool running;
	atomic_bool stopping;
	atomic_ulong tid_set; /* 1 once |tid| is valid */
	pthread_t tid;

	pthread_mutex_t mtx; /* guards posts, closed */
	struct post *posts;
	struct post *posts_tail;
	bool closed;
	void (*on_posts)(void *arg); /* tp_grpc_loop_on_posts */
	void *on_posts_arg;
	int64_t busy_poll_us; /* tp_grpc_loop_busy_poll; 0: off */

	struct tp_grpc_tls *tls;      /* owned; NULL: plain TCP */
	struct tp_grpc_timer *timers; /* due order */
	struct tp_grpc_conn *conns;
	struct tp_grpc_conn *reap;
	struct listener *listeners;
};

/* ---- loop --------------------------------------------------------------- */

int
tp_grpc_loop_create(struct tp_grpc_loop **out, const char *name)
{
	struct tp_grpc_loop *l = calloc(1, sizeof(*l));
	struct epoll_event ev = {.events = EPOLLIN};

	*out = NULL;
	if (l == NULL) {
		return MS_ENOMEM;
	}
	ms_strlcpy(l->name, name, sizeof(l->name));
	l->wake.kind = SRC_WAKE;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->epfd < 0 || l->evfd < 0) {
		int rc = -errno;

		if (l->epfd >= 0) {
			close(l->epfd);
		}
		if (l->evfd >= 0) {
			close(l->evfd);
		}
		free(l);
		return rc;
	}
	ev.data.ptr = &l->wake;
	epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev);
	pthread_mutex_init(&l->mtx, NULL);
	*out = l;
	return 0;
}

bool
tp_grpc_loop_on_thread(const struct tp_grpc_loop *loop)
{
	return atomic_load(&loop->tid_set) &&
	       pthread_equal(loop->tid, pthread_self());
}

static void
ring(struct tp_grpc_loop *l)
{
	uint64_t one = 1;
	ssize_t n = write(l->evfd, &one, sizeof(one));

	(void)n; /* EAGAIN: the counter is already non-zero, it will wake */
}

int
tp_grpc_loop_post(struct tp_grpc_loop *loop, void (*fn)(void *arg), void *arg)
{
	struct post *p = malloc(sizeof(*p));
	bool was_empty;

	if (p == NULL) {
		return MS_ENOMEM;
	}
	p->fn = fn;
	p->arg = arg;
	p->next = NULL;
	pthread_mutex_lock(&loop->mtx);
	if (loop->closed) {
		pthread_mutex_unlock(&loop->mtx);
		free(p);
		return MS_ECLOSED;
	}
	/* Only the post that finds the list empty rings: run_posts takes
	 * the whole list, so later ones ride on that wake-up (one write(2)
	 * per batch instead of one per post). */
	was_empty = loop->posts == NULL;
	if (loop->posts_tail) {
		loop->posts_tail->next = p;
	} else {
		loop->posts = p;
	}
	loop->posts_tail = p;
	pthread_mutex_unlock(&loop->mtx);
	if (was_empty) {
		ring(loop);
	}
	return 0;
}

static void
run_posts(struct tp_grpc_loop *l)
{
	struct post *p;

	pthread_mutex_lock(&l->mtx);
	p = l->posts;
	l->posts = l->posts_tail = NULL;
	pthread_mutex_unlock(&l->mtx);
	while (p) {
		struct post *next = p->next;

		p->fn(p->arg);
		free(p);
		p = next;
	}
	if (l->on_posts) {
		l->on_posts(l->on_posts_arg);
	}
}

void
tp_grpc_loop_on_posts(struct tp_grpc_loop *loop, void (*fn)(void *arg),
                      void *arg)
{
	loop->on_posts = fn;
	loop->on_posts_arg = arg;
}

/* ---- timers ------------------------------------------------------------- */

void
tp_grpc_timer_stop(struct tp_grpc_loop *loop, struct tp_grpc_timer *t)
{
	struct tp_grpc_timer **pp;

	if (!t->armed) {
		return;
	}
	for (pp = &loop->timers; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	t->armed = false;
	t->next = NULL;
}

void
tp_grpc_timer_start(struct tp_grpc_loop *loop, struct tp_grpc_timer *t,
                    int64_t due_ms, void (*fn)(void *arg), void *arg)
{
	struct tp_grpc_timer **pp;

	tp_grpc_timer_stop(loop, t);
	t->due_ms = due_ms;
	t->fn = fn;
	t->arg = arg;
	for (pp = &loop->timers; *pp && (*pp)->due_ms <= due_ms;
	     pp = &(*pp)->next) {
	}
	t->next = *pp;
	*pp = t;
	t->armed = true;
}

static void
run_timers(struct tp_grpc_loop *l)
{
	int64_t now = ms_now_ms();

	/* A callback may start or stop timers: always take the head anew. */
	while (l->timers && l->timers->due_ms <= now) {
		struct tp_grpc_timer *t = l->timers;

		l->timers = t->next;
		t->next = NULL;
		t->armed = false;
		t->fn(t->arg);
	}
}

static int
next_timeout(const struct tp_grpc_loop *l)
{
	int64_t d;

	if (l->timers == NULL) {
		return 1000; /* wake now and then to notice a stop */
	}
	d = l->timers->due_ms - ms_now_ms();
	return d < 0 ? 0 : d > 1000 ? 1000 : (int)d;
}

/* ---- connections -------------------------------------------------------- */

static void
conn_epoll(struct tp_grpc_conn *c)
{
	struct epoll_event ev = {0};
	/* While a TLS handshake runs, buffered output waits for it: only
	 * OpenSSL's own wish to write counts. */
	bool want_out = c->connecting || c->tls_want_out ||
	                (!c->handshaking && c->out_len > c->out_off);

	if (c->mem || want_out == c->epollout) {
		return;
	}
	ev.events = EPOLLIN | EPOLLRDHUP | (want_out ? EPOLLOUT : 0);
	ev.data.ptr = &c->src;
	epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &ev);
	c->epollout = want_out;
}

void
tp_grpc_conn_abort(struct tp_grpc_conn *c, int rc)
{
	struct tp_grpc_loop *l = c->loop;

	if (c->dead) {
		return;
	}
	c->dead = true;
	c->close_rc = rc;
	tp_grpc_timer_stop(l, &c->timer);
#if HAVE_GRPC_TLS
	/* A graceful close says so (close_notify), best effort: the socket
	 * is non-blocking and about to close. */
	if (c->ssl != NULL && rc == 0 && !c->handshaking) {
		(void)SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
#endif
	if (!c->mem) {
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->reap_next = l->reap;
	l->reap = c;
}

static void
reap(struct tp_grpc_loop *l)
{
	while (l->reap) {
		struct tp_grpc_conn *c = l->reap;
		struct tp_grpc_conn **pp;

		l->reap = c->reap_next;
		for (pp = &l->conns; *pp; pp = &(*pp)->next) {
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		}
		if (c->ops && c->ops->on_close) {
			c->ops->on_close(c, c->arg, c->close_rc);
		}
#if HAVE_GRPC_TLS
		SSL_free(c->ssl);
#endif
		free(c->out);
		free(c);
	}
}

static struct tp_grpc_conn *
conn_new(struct tp_grpc_loop *l, int fd)
{
	struct tp_grpc_conn *c = calloc(1, sizeof(*c));
	int one = 1;

	if (c == NULL) {
		return NULL;
	}
	c->src.kind = SRC_CONN;
	c->loop = l;
	c->fd = fd;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->next = l->conns;
	l->conns = c;
	return c;
}

static void
format_peer(const struct sockaddr *sa, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(out, len, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(out, len, "[%s]:%u", host, port);
	} else {
		snprintf(out, len, "?");
	}
}

void
tp_grpc_conn_set_ops(struct tp_grpc_conn *c, const struct tp_grpc_conn_ops *ops,
                     void *arg)
{
	c->ops = ops;
	c->arg = arg;
}

size_t
tp_grpc_conn_pending(const struct tp_grpc_conn *c)
{
	return c->out_len - c->out_off;
}

const char *
tp_grpc_conn_peer(const struct tp_grpc_conn *c)
{
	return c->peer;
}

struct tp_grpc_loop *
tp_grpc_conn_loop(const struct tp_grpc_conn *c)
{
	return c->loop;
}

#if HAVE_GRPC_TLS
/* tls_reason writes why OpenSSL failed (its error queue, or the
 * certificate check) to |buf|, and empties the queue. */
static void
tls_reason(struct tp_grpc_conn *c, int err, char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	long vr = SSL_get_verify_result(c->ssl);

	if (vr != X509_V_OK) {
		snprintf(buf, len, "certificate verify failed: %s",
		         X509_verify_cert_error_string(vr));
	} else if (e != 0) {
		ERR_error_string_n(e, buf, len);
	} else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN) {
		snprintf(buf, len, "connection closed by the peer");
	} else {
		snprintf(buf, len, "TLS error %d", err);
	}
	ERR_clear_error();
}

/*
 * tls_write hands the unsent output to SSL_write (partial writes on, so a
 * record at a time; the buffer may move between retries). Returns 1 when
 * some went out, 0 when OpenSSL waits for the socket, or MS_ECLOSED after
 * aborting the connection.
 */
static int
tls_write(struct tp_grpc_conn *c)
{
	size_t left = c->out_len - c->out_off;
	int n;
	int err;

	ERR_clear_error();
	n = SSL_write(c->ssl, c->out + c->out_off,
	              left > INT32_MAX ? INT32_MAX : (int)left);
	if (n > 0) {
		c->out_off += (size_t)n;
		return 1;
	}
	err = SSL_get_error(c->ssl, n);
	if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
		/* WANT_WRITE: the output is pending, EPOLLOUT is asked for;
		 * WANT_READ: the next readable event flushes again. */
		return 0;
	}
	ERR_clear_error();
	tp_grpc_conn_abort(c, MS_ECLOSED);
	return MS_ECLOSED;
}
#endif

/* Sends what the socket takes. Returns 0 or a negative code (aborted). */
static int
flush(struct tp_grpc_conn *c)
{
	if (c->mem) {
		c->out_off = c->out_len = 0; /* "sent" */
		return 0;
	}
	if (c->handshaking) {
		return 0; /* sent once the handshake is done */
	}
	while (c->out_off < c->out_len) {
		ssize_t n;

#if HAVE_GRPC_TLS
		if (c->ssl != NULL) {
			int rc = tls_write(c);

			if (rc < 0) {
				return rc;
			}
			if (rc == 0) {
				break; /* OpenSSL waits for the socket */
			}
			continue;
		}
#endif
		n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
		         MSG_NOSIGNAL);

		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			break;
		}
		tp_grpc_conn_abort(c, MS_ECLOSED);
		return MS_ECLOSED;
	}
	if (c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
	}
	conn_epoll(c);
	return 0;
}

int
tp_grpc_conn_write(struct tp_grpc_conn *c, const uint8_t *buf, size_t len)
{
	if (c->dead || c->closing) {
		return MS_ECLOSED;
	}
	if (len == 0) {
		return 0;
	}
	if (c->out_len + len > c->out_cap) {
		size_t pending = c->out_len - c->out_off;
		size_t cap;
		uint8_t *p;

		/* Compact first; grow only if that is not enough. */
		if (c->out_off > 0) {
			memmove(c->out, c->out + c->out_off, pending);
			c->out_off = 0;
			c->out_len = pending;
		}
		if (pending + len > c->out_cap) {
			cap = c->out_cap ? c->out_cap : 16384;
			while (cap < pending + len) {
				cap *= 2;
			}
			if ((p = realloc(c->out, cap)) == NULL) {
				tp_grpc_conn_abort(c, MS_ENOMEM);
				return MS_ENOMEM;
			}
			c->out = p;
			c->out_cap = cap;
		}
	}
	memcpy(c->out + c->out_len, buf, len);
	c->out_len += len;
	if (c->connecting || c->corked || c->handshaking) {
		/* sent once connected (TLS: after the handshake), or
		 * uncorked */
		return 0;
	}
	if (flush(c) != 0) {
		return MS_ECLOSED;
	}
	if (tp_grpc_conn_pending(c) >= TP_GRPC_CONN_HIGH_WATER) {
		c->above_high = true;
	}
	return 0;
}

void
tp_grpc_conn_cork(struct tp_grpc_conn *c)
{
	c->corked = true;
}

void
tp_grpc_conn_uncork(struct tp_grpc_conn *c)
{
	c->corked = false;
	if (c->dead || c->connecting || tp_grpc_conn_pending(c) == 0) {
		return;
	}
	if (flush(c) == 0 &&
	    tp_grpc_conn_pending(c) >= TP_GRPC_CONN_HIGH_WATER) {
		c->above_high = true;
	}
}

static void
close_flush_expired(void *arg)
{
	struct tp_grpc_conn *c = arg;

	tp_grpc_conn_abort(c, MS_ETIMEDOUT);
}

void
tp_grpc_conn_close(struct tp_grpc_conn *c)
{
	if (c->dead || c->closing) {
		return;
	}
	c->closing = true;
	if (tp_grpc_conn_pending(c) == 0 || c->connecting || c->handshaking) {
		tp_grpc_conn_abort(c, 0);
		return;
	}
	tp_grpc_timer_start(c->loop, &c->timer, ms_now_ms() + CLOSE_FLUSH_MS,
	                    close_flush_expired, c);
}

#if HAVE_GRPC_TLS
/* The handshake failed (|err| from SSL_get_error): a connect reports it
 * through on_open; either way the connection goes. Outbound failures are
 * this process's configuration (CAs, names): warn with OpenSSL's reason;
 * inbound ones are any client's doing: debug. */
static void
tls_failed(struct tp_grpc_conn *c, int err)
{
	char why[256];

	tls_reason(c, err, why, sizeof(why));
	if (c->outbound) {
		MS_WARN(SUB, "%s: TLS handshake failed: %s", c->peer, why);
		c->handshaking = false;
		if (c->ops && c->ops->on_open) {
			c->ops->on_open(c, c->arg, MS_EPROTO);
		}
	} else {
		MS_DEBUG(SUB, "%s: TLS handshake failed: %s", c->peer, why);
	}
	tp_grpc_conn_abort(c, MS_EPROTO);
}

/*
 * tls_handshake moves the handshake on. Once done, ALPN must have agreed
 * on "h2" (RFC 7540 §3.3; gRPC needs HTTP/2); then on_open runs and the
 * output buffered meanwhile goes.
 */
static void
tls_handshake(struct tp_grpc_conn *c)
{
	const unsigned char *proto = NULL;
	unsigned plen = 0;
	int r;
	int err;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r != 1) {
		err = SSL_get_error(c->ssl, r);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
			c->tls_want_out = err == SSL_ERROR_WANT_WRITE;
			conn_epoll(c);
			return;
		}
		tls_failed(c, err);
		return;
	}
	SSL_get0_alpn_selected(c->ssl, &proto, &plen);
	if (plen != 2 || memcmp(proto, "h2", 2) != 0) {
		if (c->outbound) {
			MS_WARN(SUB,
			        "%s: TLS: the server did not agree on "
			        "ALPN h2",
			        c->peer);
			c->handshaking = false;
			if (c->ops && c->ops->on_open) {
				c->ops->on_open(c, c->arg, MS_EPROTO);
			}
		} else {
			MS_DEBUG(SUB, "%s: TLS: the client offered no ALPN h2",
			         c->peer);
		}
		tp_grpc_conn_abort(c, MS_EPROTO);
		return;
	}
	c->handshaking = false;
	c->tls_want_out = false;
	tp_grpc_timer_stop(c->loop, &c->timer);
	if (c->ops && c->ops->on_open) {
		c->ops->on_open(c, c->arg, 0);
	}
	if (!c->dead) {
		flush(c);
	}
}

static void
handshake_expired(void *arg)
{
	struct tp_grpc_conn *c = arg;

	MS_DEBUG(SUB, "%s: TLS handshake not done within %d ms", c->peer,
	         TLS_HANDSHAKE_MS);
	tp_grpc_conn_abort(c, MS_ETIMEDOUT);
}

/* tls_attach gives |c| its SSL object: server side, or client side
 * checking the certificate against |host| (a name: SNI too; an IP
 * literal: the address). Returns 0 or MS_ENOMEM. */
static int
tls_attach(struct tp_grpc_conn *c, struct tp_grpc_tls *tls, const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	c->ssl = SSL_new(tls->ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		ERR_clear_error();
		return MS_ENOMEM;
	}
	if (tls->server) {
		SSL_set_accept_state(c->ssl);
		return 0;
	}
	SSL_set_connect_state(c->ssl);
	if (inet_pton(AF_INET, host, &a4) == 1 ||
	    inet_pton(AF_INET6, host, &a6) == 1) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl),
		                                  host) != 1) {
			ERR_clear_error();
			return MS_ENOMEM;
		}
		return 0;
	}
	if (SSL_set_tlsext_host_name(c->ssl, host) != 1 ||
	    SSL_set1_host(c->ssl, host) != 1) {
		ERR_clear_error();
		return MS_ENOMEM;
	}
	return 0;
}
#endif

static void
connect_expired(void *arg)
{
	struct tp_grpc_conn *c = arg;

	if (c->connecting || c->handshaking) {
		c->connecting = false;
		c->handshaking = false;
		if (c->ops && c->ops->on_open) {
			c->ops->on_open(c, c->arg, MS_ETIMEDOUT);
		}
		tp_grpc_conn_abort(c, MS_ETIMEDOUT);
	}
}

static int
errno_code(int e)
{
	switch (e) {
	case ECONNREFUSED:
		return MS_ECONNREFUSED;
	case ETIMEDOUT:
		return MS_ETIMEDOUT;
	case ENETUNREACH:
	case EHOSTUNREACH:
	case ECONNRESET:
	case EPIPE:
		return MS_EUNAVAIL;
	default:
		return -e;
	}
}

int
tp_grpc_connect(struct tp_grpc_loop *loop, const char *host, uint16_t port,
                int timeout_ms, const struct tp_grpc_conn_ops *ops, void *arg,
                struct tp_grpc_conn **out)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	struct tp_grpc_conn *c;
	struct epoll_event ev = {0};
	char portstr[8];
	int fd;
	int rc;

	*out = NULL;
	snprintf(portstr, sizeof(portstr), "%u", port);
	if (getaddrinfo(host, portstr, &hints, &ai) != 0 || ai == NULL) {
		return MS_EINVAL;
	}
	fd = socket(ai->ai_family,
	            ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
	            ai->ai_protocol);
	if (fd < 0) {
		rc = -errno;
		freeaddrinfo(ai);
		return rc;
	}
	rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
	if (rc != 0 && errno != EINPROGRESS) {
		rc = errno_code(errno);
		close(fd);
		freeaddrinfo(ai);
		return rc;
	}
	if ((c = conn_new(loop, fd)) == NULL) {
		close(fd);
		freeaddrinfo(ai);
		return MS_ENOMEM;
	}
	format_peer(ai->ai_addr, c->peer, sizeof(c->peer));
	freeaddrinfo(ai);
	c->outbound = true;
#if HAVE_GRPC_TLS
	if (loop->tls != NULL && tls_attach(c, loop->tls, host) != 0) {
		tp_grpc_conn_abort(c, MS_ENOMEM); /* no ops: no callbacks */
		return MS_ENOMEM;
	}
#endif
	c->ops = ops;
	c->arg = arg;
	c->connecting = true;
	ev.events = EPOLLIN | EPOLLRDHUP | EPOLLOUT;
	ev.data.ptr = &c->src;
	c->epollout = true;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		rc = -errno;
		c->ops = NULL; /* no callbacks: we return the error */
		tp_grpc_conn_abort(c, rc);
		return rc;
	}
	tp_grpc_timer_start(loop, &c->timer, ms_now_ms() + timeout_ms,
	                    connect_expired, c);
	*out = c;
	return 0;
}

static void
conn_connected(struct tp_grpc_conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
	c->connecting = false;
#if HAVE_GRPC_TLS
	if (err == 0 && c->ssl != NULL) {
		/* on_open waits for the handshake, still under the connect
		 * timeout (the timer runs on). */
		c->handshaking = true;
		tls_handshake(c);
		return;
	}
#endif
	tp_grpc_timer_stop(c->loop, &c->timer);
	if (err != 0) {
		int rc = errno_code(err);

		if (c->ops && c->ops->on_open) {
			c->ops->on_open(c, c->arg, rc);
		}
		tp_grpc_conn_abort(c, rc);
		return;
	}
	if (c->ops && c->ops->on_open) {
		c->ops->on_open(c, c->arg, 0);
	}
	if (!c->dead) {
		flush(c);
	}
}

#if HAVE_GRPC_TLS
/* tls_readable is conn_readable through SSL_read: one record (at most
 * 16 KiB) per call, so it reads on until OpenSSL wants the socket. */
static void
tls_readable(struct tp_grpc_conn *c)
{
	uint8_t buf[READ_CHUNK];

	for (int i = 0; i < READS_PER_TURN * 4 && !c->dead; i++) {
		int n;
		int err;

		ERR_clear_error();
		n = SSL_read(c->ssl, buf, sizeof(buf));
		if (n > 0) {
			int rc =
			    c->ops && c->ops->on_read
			        ? c->ops->on_read(c, c->arg, buf, (size_t)n)
			        : 0;

			c->tls_want_out = false;
			if (rc < 0) {
				tp_grpc_conn_abort(c, rc);
			}
			continue;
		}
		err = SSL_get_error(c->ssl, n);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
			c->tls_want_out = err == SSL_ERROR_WANT_WRITE;
			conn_epoll(c);
			return;
		}
		if (err == SSL_ERROR_ZERO_RETURN ||
		    (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
			ERR_clear_error();
			tp_grpc_conn_abort(c, MS_ECLOSED);
			return;
		}
		{
			char why[256];

			tls_reason(c, err, why, sizeof(why));
			MS_DEBUG(SUB, "%s: TLS: %s", c->peer, why);
		}
		tp_grpc_conn_abort(c, MS_EPROTO);
		return;
	}
}
#endif

static void
conn_readable(struct tp_grpc_conn *c)
{
	uint8_t buf[READ_CHUNK];

#if HAVE_GRPC_TLS
	if (c->ssl != NULL) {
		if (c->handshaking) {
			tls_handshake(c);
		} else {
			tls_readable(c);
		}
		return;
	}
#endif
	for (int i = 0; i < READS_PER_TURN && !c->dead; i++) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

		if (n > 0) {
			int rc =
			    c->ops && c->ops->on_read
			        ? c->ops->on_read(c, c->arg, buf, (size_t)n)
			        : 0;

			if (rc < 0) {
				tp_grpc_conn_abort(c, rc);
			}
			if ((size_t)n < sizeof(buf)) {
				return;
			}
			continue;
		}
		if (n == 0) {
			tp_grpc_conn_abort(c, MS_ECLOSED);
			return;
		}
		if (errno == EINTR) {
			continue;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			tp_grpc_conn_abort(c, errno_code(errno));
		}
		return;
	}
}

static void
conn_event(struct tp_grpc_conn *c, uint32_t events)
{
	if (c->dead) {
		return;
	}
	if (c->connecting) {
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
			conn_connected(c);
		}
		return;
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		conn_readable(c);
	} else if (c->tls_want_out && (events & EPOLLOUT)) {
		/* OpenSSL wanted to write to go on handshaking or reading. */
		conn_readable(c);
	}
	/* TLS: a write that waited for a read (WANT_READ) goes on too. */
	if (!c->dead && (events & EPOLLOUT ||
	                 (c->out_len > c->out_off && events & EPOLLIN))) {
		flush(c);
	}
	if (c->dead) {
		return;
	}
	if (c->closing && tp_grpc_conn_pending(c) == 0) {
		tp_grpc_conn_abort(c, 0);
		return;
	}
	if (c->above_high && tp_grpc_conn_pending(c) < TP_GRPC_CONN_LOW_WATER) {
		c->above_high = false;
		if (c->ops && c->ops->on_writable) {
			c->ops->on_writable(c, c->arg);
		}
	}
}

/* ---- listeners ---------------------------------------------------------- */

static int
parse_hostport(const char *hostport, char *host, size_t hostlen, char *port,
               size_t portlen)
{
	const char *colon;
	size_t n;

	if (hostport[0] == '[') {
		const char *close = strchr(hostport, ']');

		if (close == NULL || close[1] != ':') {
			return MS_EINVAL;
		}
		n = (size_t)(close - hostport - 1);
		if (n == 0 || n >= hostlen) {
			return MS_EINVAL;
		}
		memcpy(host, hostport + 1, n);
		colon = close + 1;
	} else {
		colon = strrchr(hostport, ':');
		if (colon == NULL) {
			return MS_EINVAL;
		}
		n = (size_t)(colon - hostport);
		if (n == 0 || n >= hostlen) {
			return MS_EINVAL;
		}
		memcpy(host, hostport, n);
	}
	host[n] = '\0';
	if (ms_strlcpy(port, colon + 1, portlen) >= portlen || !port[0]) {
		return MS_EINVAL;
	}
	return 0;
}

int
tp_grpc_listen(struct tp_grpc_loop *loop, const char *hostport,
               void (*on_accept)(void *arg, struct tp_grpc_conn *c), void *arg,
               uint16_t *port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
	struct addrinfo *ai = NULL;
	struct listener *li;
	struct epoll_event ev = {.events = EPOLLIN};
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256];
	char portstr[16];
	int one = 1;
	int fd;

	if (parse_hostport(hostport, host, sizeof(host), portstr,
	                   sizeof(portstr)) != 0 ||
	    getaddrinfo(host, portstr, &hints, &ai) != 0 || ai == NULL) {
		MS_ERROR(SUB, "cannot listen on '%s': expected HOST:PORT",
		         hostport);
		return MS_EINVAL;
	}
	fd = socket(ai->ai_family,
	            ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
	            ai->ai_protocol);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
	    listen(fd, 1024) != 0) {
		MS_ERROR(SUB, "cannot listen on %s: %s", hostport,
		         strerror(errno));
		if (fd >= 0) {
			close(fd);
		}
		freeaddrinfo(ai);
		return MS_EIO;
	}
	freeaddrinfo(ai);
	if ((li = calloc(1, sizeof(*li))) == NULL) {
		close(fd);
		return MS_ENOMEM;
	}
	li->src.kind = SRC_LISTENER;
	li->fd = fd;
	li->on_accept = on_accept;
	li->arg = arg;
	ev.data.ptr = &li->src;
	epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev);
	li->next = loop->listeners;
	loop->listeners = li;
	if (port) {
		getsockname(fd, (struct sockaddr *)&ss, &sl);
		*port = ss.ss_family == AF_INET6
		            ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
		            : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	return 0;
}

void
tp_grpc_listen_close(struct tp_grpc_loop *loop)
{
	while (loop->listeners) {
		struct listener *li = loop->listeners;

		loop->listeners = li->next;
		epoll_ctl(loop->epfd, EPOLL_CTL_DEL, li->fd, NULL);
		close(li->fd);
		free(li);
	}
}

static void
accept_all(struct tp_grpc_loop *l, struct listener *li)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP};
		struct tp_grpc_conn *c;
		int fd = accept4(li->fd, (struct sockaddr *)&ss, &sl,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED) {
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				MS_WARN(SUB, "accept: %s", strerror(errno));
			}
			return;
		}
		if ((c = conn_new(l, fd)) == NULL) {
			close(fd);
			continue;
		}
		format_peer((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
		ev.data.ptr = &c->src;
		epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev);
#if HAVE_GRPC_TLS
		if (l->tls != NULL) {
			if (tls_attach(c, l->tls, NULL) != 0) {
				tp_grpc_conn_abort(c, MS_ENOMEM);
				continue;
			}
			/* on_open once the client's hello is answered and the
			 * handshake done (tls_handshake). */
			c->handshaking = true;
			tp_grpc_timer_start(l, &c->timer,
			                    ms_now_ms() + TLS_HANDSHAKE_MS,
			                    handshake_expired, c);
		}
#endif
		li->on_accept(li->arg, c);
		if (!c->dead && !c->handshaking && c->ops && c->ops->on_open) {
			c->ops->on_open(c, c->arg, 0);
		}
	}
}

/* ---- thread ------------------------------------------------------------- */

static void *
loop_main(void *arg)
{
	struct tp_grpc_loop *l = arg;
	struct epoll_event evs[MAX_EVENTS];

	int64_t spin_until = 0; /* busy poll: no sleep before this (µs) */

	l->tid = pthread_self();
	atomic_store(&l->tid_set, 1);
	while (!atomic_load(&l->stopping)) {
		int timeout = next_timeout(l);
		int n;

		if (timeout > 0 && l->busy_poll_us > 0 &&
		    ms_now_us() < spin_until) {
			timeout = 0; /* still hot: poll again, do not sleep */
		}
		n = epoll_wait(l->epfd, evs, MAX_EVENTS, timeout);
		if (n > 0 && l->busy_poll_us > 0) {
			spin_until = ms_now_us() + l->busy_poll_us;
		}

		for (int i = 0; i < n; i++) {
			struct src *s = evs[i].data.ptr;

			switch (s->kind) {
			case SRC_WAKE: {
				uint64_t v;
				ssize_t r = read(l->evfd, &v, sizeof(v));

				(void)r;
				run_posts(l);
				break;
			}
			case SRC_LISTENER:
				accept_all(l, (struct listener *)s);
				break;
			case SRC_CONN:
				conn_event((struct tp_grpc_conn *)s,
				           evs[i].events);
				break;
			}
		}
		run_timers(l);
		reap(l);
	}
	/* Stopping: what was posted before the stop still runs, then every
	 * connection goes. */
	pthread_mutex_lock(&l->mtx);
	l->closed = true;
	pthread_mutex_unlock(&l->mtx);
	run_posts(l);
	tp_grpc_listen_close(l);
	for (struct tp_grpc_conn *c = l->conns; c; c = c->next) {
		tp_grpc_conn_abort(c, MS_ECLOSED);
	}
	reap(l);
	l->timers = NULL;
	return NULL;
}

void
tp_grpc_loop_busy_poll(struct tp_grpc_loop *loop, int us)
{
	loop->busy_poll_us = us > 0 ? us : 0;
}

int
tp_grpc_loop_start(struct tp_grpc_loop *loop)
{
	int rc = pthread_create(&loop->thread, NULL, loop_main, loop);

	if (rc != 0) {
		return -rc;
	}
	loop->running = true;
	return 0;
}

void
tp_grpc_loop_stop(struct tp_grpc_loop *loop)
{
	if (loop == NULL) {
		return;
	}
	if (!loop->running) {
		pthread_mutex_lock(&loop->mtx);
		loop->closed = true;
		pthread_mutex_unlock(&loop->mtx);
		tp_grpc_listen_close(loop);
		return;
	}
	atomic_store(&loop->stopping, true);
	ring(loop);
	pthread_join(loop->thread, NULL);
	loop->running = false;
}

void
tp_grpc_loop_destroy(struct tp_grpc_loop *loop)
{
	if (loop == NULL) {
		return;
	}
	tp_grpc_loop_stop(loop);
	/* Posts never run (the loop never started) are dropped. */
	while (loop->posts) {
		struct post *p = loop->posts;

		loop->posts = p->next;
		free(p);
	}
	close(loop->evfd);
	close(loop->epfd);
	pthread_mutex_destroy(&loop->mtx);
	tp_grpc_tls_free(loop->tls);
	free(loop);
}

/* ---- TLS contexts (loop.h) ---------------------------------------------- */

#if HAVE_GRPC_TLS
static const unsigned char alpn_h2[] = {2, 'h', '2'};

/* The server's ALPN choice: h2 or nothing (a fatal no_application_protocol
 * alert for a client that offers only others). */
static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
            const unsigned char *in, unsigned inlen, void *arg)
{
	unsigned char *sel;

	if (SSL_select_next_proto(&sel, outlen, alpn_h2, sizeof(alpn_h2), in,
	                          inlen) != OPENSSL_NPN_NEGOTIATED) {
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* tls_log logs |what| with OpenSSL's first queued reason and empties the
 * queue. */
static void
tls_log(const char *what, const char *path)
{
	char why[256] = "unknown reason";
	unsigned long e = ERR_get_error();

	if (e != 0) {
		ERR_error_string_n(e, why, sizeof(why));
	}
	ERR_clear_error();
	MS_ERROR(SUB, "%s %s: %s", what, path ? path : "", why);
}

/* tls_ctx_new: TLS 1.2 or later, partial writes with a moving buffer (the
 * connection's write buffer compacts and grows between retries), no
 * renegotiation, and for TLS 1.2 only the AEAD ECDHE suites HTTP/2
 * allows (RFC 7540 §9.2.2). */
static SSL_CTX *
tls_ctx_new(bool server)
{
	SSL_CTX *ctx =
	    SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	if (ctx == NULL) {
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(ctx,
	                    SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	return ctx;
}
#endif

int
tp_grpc_tls_server_new(struct tp_grpc_tls **out, const char *cert_file,
                       const char *key_file)
{
#if HAVE_GRPC_TLS
	struct tp_grpc_tls *t = calloc(1, sizeof(*t));

	*out = NULL;
	if (t == NULL || (t->ctx = tls_ctx_new(true)) == NULL) {
		free(t);
		ERR_clear_error();
		return MS_ENOMEM;
	}
	t->server = true;
	if (SSL_CTX_use_certificate_chain_file(t->ctx, cert_file) != 1) {
		tls_log("cannot use the certificate", cert_file);
		tp_grpc_tls_free(t);
		return MS_EIO;
	}
	if (SSL_CTX_use_PrivateKey_file(t->ctx, key_file, SSL_FILETYPE_PEM) !=
	        1 ||
	    SSL_CTX_check_private_key(t->ctx) != 1) {
		tls_log("cannot use the private key", key_file);
		tp_grpc_tls_free(t);
		return MS_EIO;
	}
	SSL_CTX_set_alpn_select_cb(t->ctx, alpn_select, NULL);
	*out = t;
	return 0;
#else
	(void)cert_file;
	(void)key_file;
	*out = NULL;
	MS_ERROR(SUB, "TLS: this build has no OpenSSL (libssl-dev)");
	return MS_ENOTSUP;
#endif
}

int
tp_grpc_tls_client_new(struct tp_grpc_tls **out, const char *ca_file)
{
#if HAVE_GRPC_TLS
	struct tp_grpc_tls *t = calloc(1, sizeof(*t));

	*out = NULL;
	if (t == NULL || (t->ctx = tls_ctx_new(false)) == NULL) {
		free(t);
		ERR_clear_error();
		return MS_ENOMEM;
	}
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	if ((ca_file != NULL
	         ? SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL)
	         : SSL_CTX_set_default_verify_paths(t->ctx)) != 1) {
		tls_log("cannot read the trusted CAs",
		        ca_file ? ca_file : "(system default)");
		tp_grpc_tls_free(t);
		return MS_EIO;
	}
	/* 0 is success here (OpenSSL's exception). */
	if (SSL_CTX_set_alpn_protos(t->ctx, alpn_h2, sizeof(alpn_h2)) != 0) {
		tp_grpc_tls_free(t);
		ERR_clear_error();
		return MS_ENOMEM;
	}
	*out = t;
	return 0;
#else
	(void)ca_file;
	*out = NULL;
	MS_ERROR(SUB, "TLS: this build has no OpenSSL (libssl-dev)");
	return MS_ENOTSUP;
#endif
}

void
tp_grpc_tls_free(struct tp_grpc_tls *tls)
{
	if (tls == NULL) {
		return;
	}
#if HAVE_GRPC_TLS
	SSL_CTX_free(tls->ctx);
#endif
	free(tls);
}

void
tp_grpc_loop_set_tls(struct tp_grpc_loop *loop, struct tp_grpc_tls *tls)
{
	tp_grpc_tls_free(loop->tls);
	loop->tls = tls;
}

bool
tp_grpc_conn_tls(const struct tp_grpc_conn *c)
{
#if HAVE_GRPC_TLS
	return c->ssl != NULL;
#else
	(void)c;
	return false;
#endif
}

/* ---- test hooks (loop.h) ------------------------------------------------ */

struct tp_grpc_conn *
tp_grpc_conn_test_accept(struct tp_grpc_loop *loop,
                         void (*on_accept)(void *arg, struct tp_grpc_conn *c),
                         void *arg)
{
	struct tp_grpc_conn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		return NULL;
	}
	c->src.kind = SRC_CONN;
	c->loop = loop;
	c->fd = -1;
	c->mem = true;
	ms_strlcpy(c->peer, "test", sizeof(c->peer));
	c->next = loop->conns;
	loop->conns = c;
	on_accept(arg, c);
	if (!c->dead && c->ops && c->ops->on_open) {
		c->ops->on_open(c, c->arg, 0);
	}
	return c;
}

int
tp_grpc_conn_test_read(struct tp_grpc_conn *c, const uint8_t *buf, size_t len)
{
	int rc = 0;

	if (c->dead) {
		return MS_ECLOSED;
	}
	if (c->ops && c->ops->on_read) {
		rc = c->ops->on_read(c, c->arg, buf, len);
	}
	if (rc < 0) {
		tp_grpc_conn_abort(c, rc);
	}
	return rc;
}

void
tp_grpc_loop_test_turn(struct tp_grpc_loop *loop)
{
	/* A memory connection's output is always out, so a graceful close
	 * has already become an abort: reaping finishes it. */
	run_posts(loop);
	run_timers(loop);
	reap(loop);
}
