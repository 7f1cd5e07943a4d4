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
 * Threads: the loop thread owns every field except the post queue and the
 * |closed| flag, which |mtx| guards.
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

#include "core/err.h"
#include "core/log.h"
#include "core/util.h"

#define SUB            "grpc"
#define MAX_EVENTS     64
#define READ_CHUNK     65536
#define READS_PER_TURN 16 /* fairness: at most 1 MiB per connection a turn */
#define CLOSE_FLUSH_MS 5000

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
	if (loop->posts_tail) {
		loop->posts_tail->next = p;
	} else {
		loop->posts = p;
	}
	loop->posts_tail = p;
	pthread_mutex_unlock(&loop->mtx);
	ring(loop);
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
	bool want_out = c->connecting || c->out_len > c->out_off;

	if (want_out == c->epollout) {
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
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
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

/* Sends what the socket takes. Returns 0 or a negative code (aborted). */
static int
flush(struct tp_grpc_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off,
		                 c->out_len - c->out_off, MSG_NOSIGNAL);

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
	if (c->connecting) {
		return 0; /* sent once connected */
	}
	if (flush(c) != 0) {
		return MS_ECLOSED;
	}
	if (tp_grpc_conn_pending(c) >= TP_GRPC_CONN_HIGH_WATER) {
		c->above_high = true;
	}
	return 0;
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
	if (tp_grpc_conn_pending(c) == 0 || c->connecting) {
		tp_grpc_conn_abort(c, 0);
		return;
	}
	tp_grpc_timer_start(c->loop, &c->timer, ms_now_ms() + CLOSE_FLUSH_MS,
	                    close_flush_expired, c);
}

static void
connect_expired(void *arg)
{
	struct tp_grpc_conn *c = arg;

	if (c->connecting) {
		c->connecting = false;
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

static void
conn_readable(struct tp_grpc_conn *c)
{
	uint8_t buf[READ_CHUNK];

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
	}
	if (!c->dead && (events & EPOLLOUT)) {
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
		li->on_accept(li->arg, c);
		if (!c->dead && c->ops && c->ops->on_open) {
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

	l->tid = pthread_self();
	atomic_store(&l->tid_set, 1);
	while (!atomic_load(&l->stopping)) {
		int n = epoll_wait(l->epfd, evs, MAX_EVENTS, next_timeout(l));

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
	free(loop);
}
