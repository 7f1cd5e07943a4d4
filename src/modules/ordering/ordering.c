/* SPDX-License-Identifier: MIT */
/*
 * The Ordering module (the original Ordering.API/Application/Domain/
 * Infrastructure): its life cycle. init opens <data_dir>/ordering.db
 * (schema and the two seed orders on a new file), registers the health
 * checks "ordering" (the module) and "orderingdb" (its database), the
 * /orders routes when this process has REST, and the BasketCheckoutEvent
 * subscription. Ordering calls no other module and publishes no event (the
 * original's OrderFullfilment publication is off by default and consumed
 * by nothing).
 *
 * Threads: init, stop and fini run on the main thread; the health checks on
 * HTTP worker threads.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/err.h"
#include "core/health.h"
#include "core/log.h"
#include "modules/module.h"
#include "ordering.h"

static int
health_module(void *arg, char *desc, size_t desclen)
{
	struct ordering *o = arg;

	if (!atomic_load(&o->ready)) {
		snprintf(desc, desclen, "stopped");
		return MS_EUNAVAIL;
	}
	return 0;
}

static int
health_db(void *arg, char *desc, size_t desclen)
{
	struct ordering *o = arg;
	int rc = ordering_store_ping(o->st);

	if (rc != 0)
		snprintf(desc, desclen, "ordering.db: %s", ms_strerror(rc));
	return rc;
}

static void
ordering_fini(void *state)
{
	struct ordering *o = state;

	if (!o)
		return;
	ms_health_unregister(o);
	store_close(o->st);
	free(o);
}

static int
ordering_init(struct module_ctx *ctx, void **state)
{
	struct store_opts opts = {0};
	struct ordering *o;
	const char *sync;
	int rc;

	assert(ctx && ctx->bus && ctx->cfg && ctx->data_dir && state);
	o = calloc(1, sizeof(*o)); /* the module state: freed by fini */
	if (!o)
		return MS_ENOMEM;
	atomic_init(&o->ready, false);

	opts.busy_timeout_ms =
	    (int)ms_config_int(ctx->cfg, "store.busy_timeout_ms");
	sync = ms_config_str(ctx->cfg, "store.synchronous");
	opts.sync_full = sync && strcmp(sync, "full") == 0;
	rc = store_open(&o->st, ctx->data_dir, "ordering", ordering_migrations,
	                ordering_nmigrations, &opts);
	if (rc != 0) {
		MS_ERROR("ordering", "cannot open the database in %s: %s",
		         ctx->data_dir, ms_strerror(rc));
		free(o);
		return rc;
	}
	rc = ms_health_register("ordering", "module", health_module, o);
	if (rc == 0)
		rc = ms_health_register("orderingdb", "database", health_db, o);
	if (rc != 0) {
		MS_ERROR("ordering", "cannot register health checks: %s",
		         ms_strerror(rc));
		goto fail;
	}
	/* A process without REST (an Ordering that only consumes events)
	 * has no router. */
	if (ctx->router) {
		rc = ordering_http_routes(ctx->router, o);
		if (rc != 0)
			goto fail;
	}
	rc = ordering_events_subscribe(ctx->bus, o);
	if (rc != 0) {
		MS_ERROR("ordering", "cannot subscribe to checkout events: %s",
		         ms_strerror(rc));
		goto fail;
	}
	atomic_store(&o->ready, true);
	*state = o;
	return 0;
fail:
	/* Routes already added stay in the router, which has no removal;
	 * init failing fails start-up, so the router goes with it. */
	ordering_fini(o);
	return rc;
}

static void
ordering_stop(void *state)
{
	struct ordering *o = state;

	if (o)
		atomic_store(&o->ready, false);
}

const struct ms_module ordering_module = {
    .name = "ordering",
    .calls = NULL,
    .init = ordering_init,
    .stop = ordering_stop,
    .fini = ordering_fini,
};
