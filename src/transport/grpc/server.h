/* SPDX-License-Identifier: MIT */
/*
 * The gRPC server: serves every service registered on the bus
 * (bus_dispatch) plus grpc.health.v1.Health (Check, Watch) and server
 * reflection (grpc.reflection.v1 and v1alpha), over h2c with prior
 * knowledge, on one event loop (loop.h) and a pool of worker threads that
 * run the handlers (they may block on SQLite).
 *
 * The HTTP/2 handling (nghttp2 server sessions fed with mem_recv, drained
 * with mem_send) is I/O-free: connections come from loop.h.
 */
#ifndef MS_TRANSPORT_GRPC_SERVER_H
#define MS_TRANSPORT_GRPC_SERVER_H

#include <stddef.h>
#include <stdint.h>

struct bus;
struct tp_grpc_server;

struct tp_grpc_server_opts {
	const char *listen; /* grpc.listen, "HOST:PORT" */
	size_t max_message; /* grpc.max_message: larger → RESOURCE_EXHAUSTED */
	int threads;        /* grpc.threads: handler workers */
	uint32_t max_streams; /* grpc.max_concurrent_streams per connection */
	int keepalive_permit_ms; /* grpc.keepalive_permit_ms: min ping interval
	                          */
	int max_connections;     /* grpc.max_connections */
	/* grpc.idle_timeout_s: a connection with no call that sent no frame
	 * for this long gets GOAWAY and is closed. 0 = never. */
	int idle_timeout_ms;
	/* grpc.request_timeout_s: the preface must arrive this long after
	 * the accept (else the connection is closed), and each call's
	 * request (headers, messages, END_STREAM) this long after its first
	 * HEADERS byte (else CANCELLED; a header block still incomplete
	 * closes the connection). 0 = no bound. */
	int request_timeout_ms;
	/* grpc.api_key: with a key (copied at start), a method marked with
	 * bus_restrict needs the metadata x-api-key equal to it (constant-time
	 * compare), else UNAUTHENTICATED. NULL = every method open. */
	const char *api_key;
	/* grpc.tls_cert / grpc.tls_key: PEM paths; both set = TLS (ALPN h2
	 * required) instead of h2c. Read at start only. */
	const char *tls_cert;
	const char *tls_key;
	/* grpc.busy_poll_us: the loop polls this long before it sleeps
	 * (tp_grpc_loop_busy_poll). 0 = off. */
	int busy_poll_us;
};

/*
 * tp_grpc_server_start listens and serves. Logs "grpc: listening on
 * HOST:PORT"; *port receives the bound port. Returns 0, MS_EINVAL (bad
 * address), MS_EIO (cannot bind) or MS_ENOMEM. Main thread.
 */
int tp_grpc_server_start(struct tp_grpc_server **out, struct bus *bus,
                         const struct tp_grpc_server_opts *opts,
                         uint16_t *port);

/*
 * tp_grpc_server_quiesce starts a graceful shutdown without waiting: the
 * listener closes, every connection gets GOAWAY (calls already received
 * are still answered; streams the client opens later are refused, safe to
 * retry elsewhere), Watch streams end. NULL is a no-op; idempotent. Main
 * thread.
 */
void tp_grpc_server_quiesce(struct tp_grpc_server *srv);

/*
 * tp_grpc_server_stop quiesces (if not done yet), lets calls in flight
 * finish until |timeout_ms| after the quiesce, then closes everything,
 * joins the threads and frees. NULL is a no-op. Main thread.
 */
void tp_grpc_server_stop(struct tp_grpc_server *srv, int timeout_ms);

/* tp_grpc_server_health reports whether the server is serving (0) or why
 * not. Any thread. */
int tp_grpc_server_health(struct tp_grpc_server *srv, char *desc,
                          size_t desclen);

/*
 * Test hook (fuzz/fuzz_grpc_server.c): the same server with no socket and
 * no thread, driven with bytes on the caller's thread, which plays the
 * loop thread and the workers (loop.h's socketless connections). Not for
 * production use.
 *
 * tp_grpc_server_test_create prepares a server that neither listens nor
 * starts threads (|opts|: listen unused, threads sizes the call queue);
 * returns 0 or MS_ENOMEM. tp_grpc_server_test_feed hands |len| bytes to
 * the current connection's nghttp2 session as if the client sent them (a
 * new connection is opened first when there is none), runs every call
 * they complete (bus_dispatch) and sends its answer (to nowhere), then ends
 * the loop turn (timers due, closes). Returns 1 while the connection is
 * open, 0 once the server closed it (the next feed opens another), or
 * MS_ENOMEM. tp_grpc_server_test_close drops the connection, as a peer
 * that goes away. tp_grpc_server_test_destroy closes and frees (NULL is a
 * no-op).
 */
int tp_grpc_server_test_create(struct tp_grpc_server **out, struct bus *bus,
                               const struct tp_grpc_server_opts *opts);
int tp_grpc_server_test_feed(struct tp_grpc_server *srv, const uint8_t *buf,
                             size_t len);
void tp_grpc_server_test_close(struct tp_grpc_server *srv);
void tp_grpc_server_test_destroy(struct tp_grpc_server *srv);

#endif
