/* SPDX-License-Identifier: MIT */
/*
 * The gRPC transport's event loop: the one file of this transport that
 * touches sockets (loop.c). One thread runs epoll over non-blocking TCP
 * sockets, an eventfd for cross-thread posts, and a list of timers.
 * Everything above it (server.c, client.c) is I/O-free: it receives bytes
 * through on_read, hands bytes to tp_grpc_conn_write, and never blocks.
 *
 * Why our own epoll loop rather than libuv/libevent: the transport needs
 * only accept, connect, read, buffered write, timers and a wake-up; that
 * is ~500 lines, adds no dependency, and keeps the threading rules in one
 * place. (nghttp2 is driven with mem_recv/mem_send, so it needs no loop
 * integration either.)
 *
 * Threads: every function runs on the loop thread (the callbacks too),
 * except tp_grpc_loop_create/start/stop/destroy (main thread) and
 * tp_grpc_loop_post (any thread).
 */
#ifndef MS_TRANSPORT_GRPC_LOOP_H
#define MS_TRANSPORT_GRPC_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tp_grpc_loop;
struct tp_grpc_conn;

/* ---- the loop ----------------------------------------------------------- */

/* tp_grpc_loop_create allocates a loop named |name| (for logs). Returns 0,
 * MS_ENOMEM or -errno (epoll/eventfd). */
int tp_grpc_loop_create(struct tp_grpc_loop **out, const char *name);

/* tp_grpc_loop_start spawns the loop thread. Returns 0 or -errno. */
int tp_grpc_loop_start(struct tp_grpc_loop *loop);

/*
 * tp_grpc_loop_stop runs the posts still queued, aborts every connection
 * (each gets on_close with MS_ECLOSED), closes the listeners, and joins the
 * thread. Timers still armed are dropped without running. Posts made after
 * stop fail with MS_ECLOSED. Main thread; idempotent.
 */
void tp_grpc_loop_stop(struct tp_grpc_loop *loop);

/* tp_grpc_loop_destroy frees a stopped (or never started) loop; NULL ok. */
void tp_grpc_loop_destroy(struct tp_grpc_loop *loop);

/*
 * tp_grpc_loop_post makes the loop thread call fn(arg) soon, in post order.
 * Any thread. Returns 0, MS_ECLOSED (loop stopping: fn will never run) or
 * MS_ENOMEM. Posting from the loop thread is allowed (runs on the next
 * turn, never inline).
 */
int tp_grpc_loop_post(struct tp_grpc_loop *loop, void (*fn)(void *arg),
		      void *arg);

/* tp_grpc_loop_on_thread tells whether the caller is the loop thread. */
bool tp_grpc_loop_on_thread(const struct tp_grpc_loop *loop);

/* ---- timers ------------------------------------------------------------- */

/* A timer lives in its owner's memory (libuv style). Zero it once, then
 * start/stop it any number of times, on the loop thread only. */
struct tp_grpc_timer {
	int64_t due_ms;              /* ms_now_ms() clock */
	void (*fn)(void *arg);
	void *arg;
	struct tp_grpc_timer *next;  /* loop's private list */
	bool armed;
};

/* tp_grpc_timer_start (re)arms |t| to call fn(arg) on the loop thread at
 * |due_ms| (ms_now_ms() clock; a past time fires on the next turn). */
void tp_grpc_timer_start(struct tp_grpc_loop *loop, struct tp_grpc_timer *t,
			 int64_t due_ms, void (*fn)(void *arg), void *arg);

/* tp_grpc_timer_stop disarms |t|; a no-op when it is not armed. */
void tp_grpc_timer_stop(struct tp_grpc_loop *loop, struct tp_grpc_timer *t);

/* ---- connections -------------------------------------------------------- */

/*
 * What the owner of a connection is told, always on the loop thread. After
 * on_close returns, the connection is freed: drop every pointer to it.
 */
struct tp_grpc_conn_ops {
	/* The connection is usable: accepted (rc 0), or the outcome of a
	 * connect: 0, or MS_ECONNREFUSED / MS_ETIMEDOUT / -errno (then
	 * on_close follows at once). */
	void (*on_open)(struct tp_grpc_conn *c, void *arg, int rc);
	/* Bytes arrived. Return 0, or a negative code to abort the
	 * connection (on_close follows with that code). */
	int (*on_read)(struct tp_grpc_conn *c, void *arg, const uint8_t *buf,
		       size_t len);
	/* The write buffer drained below TP_GRPC_CONN_LOW_WATER: produce more
	 * output if there is some (may be NULL). */
	void (*on_writable)(struct tp_grpc_conn *c, void *arg);
	/* The connection is gone: 0 after a graceful close, MS_ECLOSED when
	 * the peer closed, or an error. Last callback. */
	void (*on_close)(struct tp_grpc_conn *c, void *arg, int rc);
};

/* Output above this many buffered bytes: stop producing until
 * on_writable. */
#define TP_GRPC_CONN_HIGH_WATER (256 * 1024)
#define TP_GRPC_CONN_LOW_WATER (64 * 1024)

/*
 * tp_grpc_listen listens on |hostport| ("127.0.0.1:8081", "[::1]:0"; port 0
 * picks one, returned in *port). For each accepted connection the loop
 * calls on_accept(arg, c); it must call tp_grpc_conn_set_ops before
 * returning, then on_open(c, arg, 0) follows. May be called before
 * tp_grpc_loop_start (from the main thread) or on the loop thread. Returns
 * 0, MS_EINVAL (bad address) or MS_EIO (bind/listen failed; logged).
 */
int tp_grpc_listen(struct tp_grpc_loop *loop, const char *hostport,
		   void (*on_accept)(void *arg, struct tp_grpc_conn *c),
		   void *arg, uint16_t *port);

/* tp_grpc_listen_close stops accepting (closes every listener). Loop thread
 * or, when the loop is not running, main thread. */
void tp_grpc_listen_close(struct tp_grpc_loop *loop);

/*
 * tp_grpc_connect starts a non-blocking connect to |host|:|port| (a name is
 * resolved with getaddrinfo, which may block briefly: use numeric hosts in
 * hot paths). on_open reports the outcome; a connect not done within
 * |timeout_ms| fails with MS_ETIMEDOUT. Loop thread. Returns 0 (callbacks
 * will run) or MS_EINVAL / MS_ENOMEM / -errno (they will not).
 */
int tp_grpc_connect(struct tp_grpc_loop *loop, const char *host,
		    uint16_t port, int timeout_ms,
		    const struct tp_grpc_conn_ops *ops, void *arg,
		    struct tp_grpc_conn **out);

/* tp_grpc_conn_set_ops sets the owner of an accepted connection. */
void tp_grpc_conn_set_ops(struct tp_grpc_conn *c,
			  const struct tp_grpc_conn_ops *ops, void *arg);

/*
 * tp_grpc_conn_write copies |len| bytes into the connection's write buffer
 * and sends what the socket takes now. Returns 0, or MS_ECLOSED when the
 * connection is closing. Check tp_grpc_conn_pending against
 * TP_GRPC_CONN_HIGH_WATER to apply backpressure.
 */
int tp_grpc_conn_write(struct tp_grpc_conn *c, const uint8_t *buf,
		       size_t len);

/* tp_grpc_conn_pending returns the bytes buffered and not yet sent. */
size_t tp_grpc_conn_pending(const struct tp_grpc_conn *c);

/* tp_grpc_conn_close closes after the write buffer is flushed (bounded by
 * 5 s); on_close(…, 0) follows. Idempotent. */
void tp_grpc_conn_close(struct tp_grpc_conn *c);

/* tp_grpc_conn_abort closes now, dropping buffered output; on_close(…, rc)
 * follows on the next turn. Idempotent. */
void tp_grpc_conn_abort(struct tp_grpc_conn *c, int rc);

/* tp_grpc_conn_peer returns "127.0.0.1:54321" (for logs). */
const char *tp_grpc_conn_peer(const struct tp_grpc_conn *c);

/* tp_grpc_conn_loop returns the loop the connection belongs to. */
struct tp_grpc_loop *tp_grpc_conn_loop(const struct tp_grpc_conn *c);

#endif
