/* SPDX-License-Identifier: MIT */
/*
 * The module plugin interface (the Redis module API's shape). Each module
 * exports one `const struct ms_module`; main.c keeps a static table of them
 * and runs, for every module listed in node.modules: init (register RPC
 * handlers, event subscriptions, REST routes and health checks through the
 * context; open the database), then start (background work), and at
 * shutdown stop, then fini.
 *
 * A module talks to other modules only through the bus (bus/bus.h); it never
 * includes a transport, libmicrohttpd, nghttp2, librabbitmq or nng header.
 */
#ifndef MS_MODULES_MODULE_H
#define MS_MODULES_MODULE_H

#include "bus/bus.h"
#include "http/http.h"

struct ms_config;
struct store;

/* Everything a module may use, handed to init. Borrowed: outlives the
 * module. */
struct module_ctx {
	struct bus *bus;
	const struct ms_config *cfg;
	struct http_router *router; /* NULL when the process has no REST */
	const char *data_dir;       /* node.data_dir */
	/*
	 * Set by the module in init when its store has an outbox whose events
	 * must be relayed; main starts one relay per such store.
	 */
	struct store *outbox_store;
};

struct ms_module {
	const char *name; /* "basket": also node.modules' word */
	/* services this module calls on other modules: {module, service}
	 * pairs, NULL-terminated; checked at start (bus_require). */
	const char *const (*calls)[2];
	/* event types this module records in its outbox (protobuf full
	 * names), NULL-terminated or NULL: with in-process events, bus_start
	 * fails unless a hosted module subscribes to each of them. */
	const char *const *publishes;
	/*
	 * init prepares the module: opens its store (migrations, seed data),
	 * registers with the bus and the router. Returns 0 or MS_E* (start-up
	 * fails, logged by the module with the reason). *state is the
	 * module's own, passed back to the other ops.
	 */
	int (*init)(struct module_ctx *ctx, void **state);
	/* stop: quiesce background work (may be NULL). */
	void (*stop)(void *state);
	/* fini: free everything, close the store (NULL state is a no-op). */
	void (*fini)(void *state);
};

extern const struct ms_module basket_module;
extern const struct ms_module discount_module;
extern const struct ms_module ordering_module;

#endif
