/* SPDX-License-Identifier: MIT */
/*
 * The gRPC client used by the bus when a called module is remote
 * (remote.<module> = grpc://HOST:PORT): one multiplexed HTTP/2 connection
 * per endpoint (h2c, prior knowledge; or TLS with ALPN h2 for grpcs://,
 * the server's certificate checked against grpc.tls_ca and the host
 * name), reconnected after failures, a
 * deadline on every call, retries with exponential backoff and jitter only
 * where the call was certainly not processed (UNAVAILABLE before any
 * response, REFUSED_STREAM, a stream beyond GOAWAY's last id, connect
 * failure), honouring grpc-retry-pushback-ms, and a circuit breaker (open
 * after consecutive failures, fast-fail while open, one half-open probe).
 *
 * The HTTP/2 handling is I/O-free (nghttp2 client session with
 * mem_recv/mem_send); sockets and timers come from loop.h.
 */
#ifndef MS_TRANSPORT_GRPC_CLIENT_H
#define MS_TRANSPORT_GRPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bus_call;
struct tp_grpc_client;

struct tp_grpc_client_opts {
	const char *host; /* numeric or name */
	uint16_t port;
	size_t max_message;       /* grpc.max_message (replies) */
	int connect_timeout_ms;   /* grpc.connect_timeout_ms */
	int retry_max_attempts;   /* grpc.retry_max_attempts (incl. first) */
	int retry_backoff_ms;     /* grpc.retry_backoff_ms: initial */
	int retry_backoff_max_ms; /* grpc.retry_backoff_max_ms */
	int breaker_failures;     /* grpc.breaker_failures: to open */
	int breaker_open_ms;      /* grpc.breaker_open_ms: before probe */
	int keepalive_ms;         /* grpc.keepalive_ms: 0 = off */
	bool tls;                 /* grpcs://: TLS, ALPN h2, server verified */
	const char *tls_ca;       /* grpc.tls_ca (PEM), NULL = system store;
	                             read at create only */
	int busy_poll_us;         /* grpc.busy_poll_us (loop.h), 0 = off */
};

/* tp_grpc_client_create prepares a client (no connection yet) and starts
 * its loop thread. Returns 0, MS_ENOMEM or -errno. Main thread. */
int tp_grpc_client_create(struct tp_grpc_client **out,
                          const struct tp_grpc_client_opts *opts);

/*
 * tp_grpc_client_call sends |c| (service, method, request bytes, deadline,
 * traceparent) and completes it with bus_call_complete exactly once, on the
 * client's loop thread: rc 0 with c->reply (malloc'd) or an MS_E* code with
 * c->detail (the server's grpc-message, percent-decoded, or ours). Codes:
 * the server's status mapped with ms_err_from_grpc, MS_ETIMEDOUT (deadline),
 * MS_EUNAVAIL (cannot connect, circuit open: fast), MS_EPROTO (malformed
 * response), MS_ETOOBIG (reply over max_message). c->deadline_ms spans
 * every attempt (<= 0: none, and no grpc-timeout is sent; the bus always
 * sets one). Attempts: at most retry_max_attempts, plus one transparent
 * retry for a stream refused by GOAWAY (gRFC A6); each attempt's outcome
 * feeds the breaker. Any thread; do not call tp_grpc_client_destroy from
 * the completion. Returns 0, or MS_ECLOSED (client stopping) / MS_ENOMEM /
 * MS_ETOOBIG (request over 4 GiB), and then never completes |c|.
 */
int tp_grpc_client_call(struct tp_grpc_client *cl, struct bus_call *c);

/*
 * tp_grpc_client_health reports the endpoint with its circuit-breaker state:
 * 0 with "circuit closed: connected to HOST:PORT" (or "circuit closed:
 * idle, ..." when it answered before and the connection has gone since);
 * MS_EUNAVAIL with "circuit open: <last error>", "circuit half-open,
 * probing: <last error>", "circuit closed: <last error>" (", connecting:"
 * while a connect is under way) or "circuit closed: not connected to
 * HOST:PORT yet". Unless closed and connected, it also starts
 * a probe (grpc.health.v1.Health/Check through the call path, so it feeds
 * the breaker; at most one per second) whose outcome a later report shows:
 * that is how a process sees a peer that is not there yet, or is back,
 * without a module calling it. Any thread; does not block (reads a locked
 * snapshot).
 */
int tp_grpc_client_health(struct tp_grpc_client *cl, char *desc,
                          size_t desclen);

/* tp_grpc_client_destroy completes every call in flight with MS_ECLOSED,
 * closes the connection, joins the loop thread, frees. NULL ok. Main
 * thread. */
void tp_grpc_client_destroy(struct tp_grpc_client *cl);

#endif
