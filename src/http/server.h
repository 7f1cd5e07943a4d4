/* SPDX-License-Identifier: MIT */
/*
 * The HTTP/1.1 listener (libmicrohttpd glue; the only file that includes
 * microhttpd.h is server.c). It reads a request (bounded: http.max_body,
 * headers by libmicrohttpd's memory limit), routes it, runs the handler, and
 * writes JSON or problem+json. It also serves GET /health and GET /metrics
 * itself, and records per-route request counts and latencies.
 *
 * Threads: libmicrohttpd's internal thread pool (http.threads) runs the
 * handlers; start/stop are called from the main thread.
 */
#ifndef MS_HTTP_SERVER_H
#define MS_HTTP_SERVER_H

#include <stdint.h>

struct http_router;
struct http_server;
struct ms_config;

/*
 * http_server_start listens on http.listen from |cfg| (port 0 picks a free
 * port) and serves |router| (borrowed; must outlive the server). Logs one
 * line "http: listening on HOST:PORT". Returns 0, MS_EINVAL (bad address),
 * MS_EIO (cannot bind: the log says why) or MS_ENOMEM.
 */
int http_server_start(struct http_server **out, struct http_router *router,
                      const struct ms_config *cfg);

/* http_server_port returns the bound port (useful with port 0). */
uint16_t http_server_port(const struct http_server *srv);

/*
 * http_server_quiesce stops accepting new connections; requests in flight go
 * on, and every answer from then on closes its connection (a keep-alive
 * client moves on instead of feeding the drain). Non-blocking.
 */
void http_server_quiesce(struct http_server *srv);

/*
 * http_server_stop waits (at most |timeout_ms|) for requests in flight, then
 * closes every connection, joins the threads and frees. NULL is a no-op.
 */
void http_server_stop(struct http_server *srv, int timeout_ms);

#endif
