/* SPDX-License-Identifier: MIT */
/*
 * The gRPC transport's ops table: the one symbol this folder exports to the
 * registry. An instance is either a server (url NULL: listen on grpc.listen
 * and answer every call with bus_dispatch, see server.h) or a client of one
 * remote endpoint (url "grpc://HOST:PORT", see client.h). The protocol work
 * is in server.c / client.c, the sockets in loop.c. A second table,
 * tp_grpcs_ops, is the same client over TLS ("grpcs://HOST:PORT", CAs from
 * grpc.tls_ca); the server speaks TLS when grpc.tls_cert/tls_key are set.
 *
 * Threads: init/start/quiesce/stop/fini on the main thread; call and
 * health on any thread (they go straight to the client, which is thread
 * safe).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "transport/grpc/client.h"
#include "transport/grpc/server.h"
#include "transport/transport.h"

struct grpc {
	bool is_server;
	/* server */
	struct tp_grpc_server_opts sopts;
	struct tp_grpc_server *srv;
	int stop_timeout_ms;
	/* client */
	struct tp_grpc_client_opts copts;
	struct tp_grpc_client *cl;
	char host[256];
	char listen[300];
};

/*
 * parse_url splits "grpc://HOST:PORT" or "grpcs://HOST:PORT"
 * ("grpc://[::1]:PORT" for IPv6) into |host|, *port and *tls. Returns 0 or
 * MS_EINVAL.
 */
static int
parse_url(const char *url, char *host, size_t hostlen, uint16_t *port,
          bool *tls)
{
	const char *p;
	const char *colon;
	size_t n;
	char *end;
	long v;

	*tls = strncmp(url, "grpcs://", 8) == 0;
	if (!*tls && strncmp(url, "grpc://", 7) != 0) {
		return MS_EINVAL;
	}
	p = url + (*tls ? 8 : 7);
	if (*p == '\0') {
		return MS_EINVAL;
	}
	if (*p == '[') {
		const char *close = strchr(p, ']');

		if (close == NULL || close[1] != ':') {
			return MS_EINVAL;
		}
		n = (size_t)(close - p - 1);
		p++;
		colon = close + 1;
	} else {
		colon = strrchr(p, ':');
		if (colon == NULL) {
			return MS_EINVAL;
		}
		n = (size_t)(colon - p);
	}
	if (n == 0 || n >= hostlen) {
		return MS_EINVAL;
	}
	memcpy(host, p, n);
	host[n] = '\0';
	v = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || (*end != '\0' && *end != '/') || v < 1 ||
	    v > 65535) {
		return MS_EINVAL;
	}
	*port = (uint16_t)v;
	return 0;
}

static int
grpc_init(struct bus_transport *t, const char *url, const struct ms_config *cfg)
{
	struct grpc *g = tp_priv(t);

	memset(g, 0, sizeof(*g));
	if (url == NULL) {
		g->is_server = true;
		snprintf(g->listen, sizeof(g->listen), "%s",
		         ms_config_str(cfg, "grpc.listen"));
		g->sopts.listen = g->listen;
		g->sopts.max_message =
		    (size_t)ms_config_int(cfg, "grpc.max_message");
		g->sopts.threads = (int)ms_config_int(cfg, "grpc.threads");
		g->sopts.max_streams =
		    (uint32_t)ms_config_int(cfg, "grpc.max_concurrent_streams");
		g->sopts.keepalive_permit_ms =
		    (int)ms_config_int(cfg, "grpc.keepalive_permit_ms");
		g->sopts.max_connections =
		    (int)ms_config_int(cfg, "grpc.max_connections");
		g->sopts.idle_timeout_ms =
		    (int)ms_config_int(cfg, "grpc.idle_timeout_s") * 1000;
		g->sopts.request_timeout_ms =
		    (int)ms_config_int(cfg, "grpc.request_timeout_s") * 1000;
		/* Borrowed from the config, which outlives the transport;
		 * the server copies the key and reads the files at start. */
		g->sopts.api_key = ms_config_str(cfg, "grpc.api_key");
		g->sopts.tls_cert = ms_config_str(cfg, "grpc.tls_cert");
		g->sopts.tls_key = ms_config_str(cfg, "grpc.tls_key");
		g->sopts.busy_poll_us =
		    (int)ms_config_int(cfg, "grpc.busy_poll_us");
		if ((g->sopts.tls_cert == NULL) != (g->sopts.tls_key == NULL)) {
			MS_ERROR("grpc", "grpc.tls_cert and grpc.tls_key go "
			                 "together: set both, or neither");
			return MS_ECONFIG;
		}
		g->stop_timeout_ms =
		    (int)ms_config_int(cfg, "node.shutdown_timeout_ms");
		return 0;
	}
	if (parse_url(url, g->host, sizeof(g->host), &g->copts.port,
	              &g->copts.tls) != 0) {
		MS_ERROR("grpc",
		         "%s: expected grpc://HOST:PORT or "
		         "grpcs://HOST:PORT",
		         url);
		return MS_EINVAL;
	}
	g->copts.tls_ca = ms_config_str(cfg, "grpc.tls_ca");
	g->copts.host = g->host;
	g->copts.max_message = (size_t)ms_config_int(cfg, "grpc.max_message");
	g->copts.connect_timeout_ms =
	    (int)ms_config_int(cfg, "grpc.connect_timeout_ms");
	g->copts.retry_max_attempts =
	    (int)ms_config_int(cfg, "grpc.retry_max_attempts");
	g->copts.retry_backoff_ms =
	    (int)ms_config_int(cfg, "grpc.retry_backoff_ms");
	g->copts.retry_backoff_max_ms =
	    (int)ms_config_int(cfg, "grpc.retry_backoff_max_ms");
	g->copts.breaker_failures =
	    (int)ms_config_int(cfg, "grpc.breaker_failures");
	g->copts.breaker_open_ms =
	    (int)ms_config_int(cfg, "grpc.breaker_open_ms");
	g->copts.keepalive_ms = (int)ms_config_int(cfg, "grpc.keepalive_ms");
	g->copts.busy_poll_us = (int)ms_config_int(cfg, "grpc.busy_poll_us");
	return 0;
}

static int
grpc_start(struct bus_transport *t)
{
	struct grpc *g = tp_priv(t);
	uint16_t port;

	if (g->is_server) {
		return tp_grpc_server_start(&g->srv, t->bus, &g->sopts, &port);
	}
	return tp_grpc_client_create(&g->cl, &g->copts);
}

/* Only a server has anything to stop accepting; a client's calls are this
 * process's own and go on until stop. */
static void
grpc_quiesce(struct bus_transport *t)
{
	struct grpc *g = tp_priv(t);

	if (g->is_server) {
		tp_grpc_server_quiesce(g->srv);
	}
}

static void
grpc_stop(struct bus_transport *t)
{
	struct grpc *g = tp_priv(t);

	if (g->is_server) {
		tp_grpc_server_stop(g->srv, g->stop_timeout_ms);
		g->srv = NULL;
	} else {
		tp_grpc_client_destroy(g->cl);
		g->cl = NULL;
	}
}

static void
grpc_fini(struct bus_transport *t)
{
	(void)t;
}

static int
grpc_call(struct bus_transport *t, struct bus_call *c)
{
	struct grpc *g = tp_priv(t);

	if (g->cl == NULL) {
		return MS_ECLOSED;
	}
	return tp_grpc_client_call(g->cl, c);
}

static int
grpc_health(struct bus_transport *t, char *desc, size_t desclen)
{
	struct grpc *g = tp_priv(t);

	if (g->is_server) {
		return g->srv ? tp_grpc_server_health(g->srv, desc, desclen)
		              : MS_ECLOSED;
	}
	if (g->cl == NULL) {
		snprintf(desc, desclen, "not started");
		return MS_ECLOSED;
	}
	return tp_grpc_client_health(g->cl, desc, desclen);
}

const struct bus_transport_ops tp_grpc_ops = {
    .scheme = "grpc",
    .caps = BUS_CAP_CALL | BUS_CAP_SERVE,
    .priv_size = sizeof(struct grpc),
    .listen_key = "grpc.listen",
    .init = grpc_init,
    .start = grpc_start,
    .quiesce = grpc_quiesce,
    .stop = grpc_stop,
    .fini = grpc_fini,
    .call = grpc_call,
    .health = grpc_health,
};

/* grpcs://: the same client over TLS (grpc.tls_ca). No listen_key: the one
 * server instance (tp_grpc_ops, grpc.listen) speaks TLS or h2c as
 * grpc.tls_cert says. */
const struct bus_transport_ops tp_grpcs_ops = {
    .scheme = "grpcs",
    .caps = BUS_CAP_CALL,
    .priv_size = sizeof(struct grpc),
    .init = grpc_init,
    .start = grpc_start,
    .quiesce = grpc_quiesce,
    .stop = grpc_stop,
    .fini = grpc_fini,
    .call = grpc_call,
    .health = grpc_health,
};
