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
	const char *listen;          /* grpc.listen, "HOST:PORT" */
	size_t max_message;          /* grpc.max_message: larger → RESOURCE_EXHAUSTED */
	int threads;                 /* grpc.threads: handler workers */
	uint32_t max_streams;        /* grpc.max_concurrent_streams per connection */
	int keepalive_permit_ms;     /* grpc.keepalive_permit_ms: min ping interval */
	int max_connections;         /* grpc.max_connections */
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
 * tp_grpc_server_stop stops accepting, sends GOAWAY on every connection,
 * lets calls in flight finish (at most |timeout_ms|), then closes
 * everything, joins the threads and frees. NULL is a no-op. Main thread.
 */
void tp_grpc_server_stop(struct tp_grpc_server *srv, int timeout_ms);

/* tp_grpc_server_health reports whether the server is serving (0) or why
 * not. Any thread. */
int tp_grpc_server_health(struct tp_grpc_server *srv, char *desc,
			  size_t desclen);

#endif
