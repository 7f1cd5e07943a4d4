/* SPDX-License-Identifier: MIT */
/*
 * The gRPC transport's event loop: the one file of this transport that
 * touches sockets (loop.c). One thread runs epoll over non-blocking TCP
 * sockets, an eventfd for cross-thread posts, and a list of timers.
 * Everything above it (server.c, client.c) is I/O-free: it receives bytes
 * through on_read, hands bytes to tp_grpc_conn_write, and never blocks.
 * TLS (OpenSSL), when a loop has a context, is a layer inside each
 * connection here: the layers above still see plaintext bytes only.
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

/*
 * tp_grpc_loop_busy_poll makes the loop, after it handled events, poll
 * without sleeping for |us| microseconds before it blocks in epoll_wait
 * again (0: off, the default). At a few calls in flight the next request
 * or reply usually comes within tens of microseconds, and a thread that
 * went to sleep pays the wake-up of an idle CPU (~20-30 µs on the VMs we
 * measure on): busy polling trades up to |us| of CPU per wake-up for that
 * latency. Main thread, before tp_grpc_loop_start.
 */
void tp_grpc_loop_busy_poll(struct tp_grpc_loop *loop, int us);

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
/*
 * tp_grpc_loop_on_posts makes the loop thread call fn(arg) after every
 * batch of posts it runs (and on tp_grpc_loop_test_turn), before any
 * connection is reaped: work a post leaves for "once per batch" (the
 * server sends the answers of many calls to one connection with one
 * flush). Main thread, before start.
 */
void tp_grpc_loop_on_posts(struct tp_grpc_loop *loop, void (*fn)(void *arg),
                           void *arg);

int tp_grpc_loop_post(struct tp_grpc_loop *loop, void (*fn)(void *arg),
                      void *arg);

/* tp_grpc_loop_on_thread tells whether the caller is the loop thread. */
bool tp_grpc_loop_on_thread(const struct tp_grpc_loop *loop);

/* ---- timers ------------------------------------------------------------- */

/* A timer lives in its owner's memory (libuv style). Zero it once, then
 * start/stop it any number of times, on the loop thread only. */
struct tp_grpc_timer {
	int64_t due_ms; /* ms_now_ms() clock */
	void (*fn)(void *arg);
	void *arg;
	struct tp_grpc_timer *next; /* loop's private list */
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
#define TP_GRPC_CONN_LOW_WATER  (64 * 1024)

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
int tp_grpc_connect(struct tp_grpc_loop *loop, const char *host, uint16_t port,
                    int timeout_ms, const struct tp_grpc_conn_ops *ops,
                    void *arg, struct tp_grpc_conn **out);

/* tp_grpc_conn_set_ops sets the owner of an accepted connection. */
void tp_grpc_conn_set_ops(struct tp_grpc_conn *c,
                          const struct tp_grpc_conn_ops *ops, void *arg);

/*
 * tp_grpc_conn_write copies |len| bytes into the connection's write buffer
 * and sends what the socket takes now. Returns 0, or MS_ECLOSED when the
 * connection is closing. Check tp_grpc_conn_pending against
 * TP_GRPC_CONN_HIGH_WATER to apply backpressure.
 */
int tp_grpc_conn_write(struct tp_grpc_conn *c, const uint8_t *buf, size_t len);

/* tp_grpc_conn_pending returns the bytes buffered and not yet sent. */
size_t tp_grpc_conn_pending(const struct tp_grpc_conn *c);

/*
 * tp_grpc_conn_cork makes tp_grpc_conn_write only buffer, until
 * tp_grpc_conn_uncork sends everything written meanwhile with one send(2).
 * nghttp2 hands its output over frame by frame (a unary response is three
 * frames): corked around that, a response costs one syscall and one TCP
 * segment instead of three. Loop thread; never leave a connection corked
 * across a return to the loop.
 */
void tp_grpc_conn_cork(struct tp_grpc_conn *c);
void tp_grpc_conn_uncork(struct tp_grpc_conn *c);

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

/* ---- TLS ---------------------------------------------------------------- */

/*
 * A TLS context (OpenSSL): a server's certificate and key, or a client's
 * trusted CAs. Given to a loop with tp_grpc_loop_set_tls, it makes every
 * connection the loop accepts or opens afterwards a TLS connection: the
 * handshake runs non-blocking in the loop before on_open (an accept gives
 * up after 10 s; a connect within its connect timeout); ALPN must agree
 * on "h2", or the connection fails (on_open with MS_EPROTO for a connect;
 * closed for an accept); then on_read and tp_grpc_conn_write carry the
 * plaintext, the owners never see TLS. A client checks the server's
 * certificate against its CAs and the host given to tp_grpc_connect (a
 * name, also sent as SNI, or an IP address). TLS 1.2 or later. OpenSSL
 * writes with write(2): the process must ignore SIGPIPE (main does).
 *
 * tp_grpc_tls_server_new reads the PEM certificate chain |cert_file| and
 * its key |key_file|; tp_grpc_tls_client_new reads the PEM CAs |ca_file|
 * (NULL: the system's trust store). Both return 0, MS_EIO (a file cannot
 * be read, or key and certificate do not match: logged with OpenSSL's
 * reason), MS_ENOTSUP (built without OpenSSL) or MS_ENOMEM.
 * tp_grpc_tls_free frees a context no loop owns (NULL is a no-op).
 */
struct tp_grpc_tls;

int tp_grpc_tls_server_new(struct tp_grpc_tls **out, const char *cert_file,
                           const char *key_file);
int tp_grpc_tls_client_new(struct tp_grpc_tls **out, const char *ca_file);
void tp_grpc_tls_free(struct tp_grpc_tls *tls);

/* tp_grpc_loop_set_tls gives |tls| to |loop|, which frees it in
 * tp_grpc_loop_destroy. Main thread, before tp_grpc_loop_start, before
 * tp_grpc_listen and tp_grpc_connect. */
void tp_grpc_loop_set_tls(struct tp_grpc_loop *loop, struct tp_grpc_tls *tls);

/* tp_grpc_conn_tls tells whether |c| speaks TLS. */
bool tp_grpc_conn_tls(const struct tp_grpc_conn *c);

/* ---- test hooks (fuzz/, tests/) ----------------------------------------- */

/*
 * Socketless connections, so that a connection's owner (server.c) can be
 * driven with bytes without I/O, on the caller's thread, on a loop that is
 * never started: the caller plays the loop thread. Not for production use.
 *
 * tp_grpc_conn_test_accept makes a connection with no socket (peer "test"),
 * hands it to on_accept as an accepted one (which must set its ops), then
 * calls on_open(c, arg, 0). What the owner writes to it is dropped. Returns
 * NULL on ENOMEM. tp_grpc_conn_test_read hands |len| bytes to on_read
 * (an error from it aborts the connection, as a socket read would) and
 * returns on_read's code, or MS_ECLOSED when the connection is closed.
 * tp_grpc_loop_test_turn does what the end of a loop turn does: runs the
 * posts, the timers that are due, and the on_close of every connection
 * closed or aborted since (after which it is freed). Abort what is left
 * with tp_grpc_conn_abort and turn once more before destroying the loop.
 */
struct tp_grpc_conn *
tp_grpc_conn_test_accept(struct tp_grpc_loop *loop,
                         void (*on_accept)(void *arg, struct tp_grpc_conn *c),
                         void *arg);
int tp_grpc_conn_test_read(struct tp_grpc_conn *c, const uint8_t *buf,
                           size_t len);
void tp_grpc_loop_test_turn(struct tp_grpc_loop *loop);

#endif
