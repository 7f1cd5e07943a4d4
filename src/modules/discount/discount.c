/* SPDX-License-Identifier: MIT */
/*
 * The Discount module (the original Discount.Grpc): its life cycle. init
 * opens <data_dir>/discount.db (schema and seed on a new file), registers
 * the health checks "discount" (the module) and "discountdb" (its
 * database), and serves DiscountProtoService on the bus. There is no REST
 * route and no event: Discount only answers calls.
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
#include "discount.h"
#include "modules/module.h"

static int
health_module(void *arg, char *desc, size_t desclen)
{
	struct discount *d = arg;

	if (!atomic_load(&d->ready)) {
		snprintf(desc, desclen, "stopped");
		return MS_EUNAVAIL;
	}
	return 0;
}

static int
health_db(void *arg, char *desc, size_t desclen)
{
	struct discount *d = arg;
	int rc = discount_store_ping(d->st);

	if (rc != 0)
		snprintf(desc, desclen, "discount.db: %s", ms_strerror(rc));
	return rc;
}

static void
discount_fini(void *state)
{
	struct discount *d = state;

	if (!d)
		return;
	ms_health_unregister(d);
	store_close(d->rd);
	store_close(d->st);
	free(d);
}

static int
discount_init(struct module_ctx *ctx, void **state)
{
	struct store_opts opts = {0};
	struct discount *d;
	const char *sync;
	int rc;

	assert(ctx && ctx->bus && ctx->cfg && ctx->data_dir && state);
	d = calloc(1, sizeof(*d)); /* the module state: freed by fini */
	if (!d)
		return MS_ENOMEM;
	atomic_init(&d->ready, false);
	d->delay_ms = (int)ms_config_int(ctx->cfg, "debug.discount_delay_ms");

	opts.busy_timeout_ms =
	    (int)ms_config_int(ctx->cfg, "store.busy_timeout_ms");
	sync = ms_config_str(ctx->cfg, "store.synchronous");
	opts.sync_full = sync && strcmp(sync, "full") == 0;
	rc = store_open(&d->st, ctx->data_dir, "discount", discount_migrations,
	                discount_nmigrations, &opts);
	if (rc != 0) {
		MS_ERROR("discount", "cannot open the database in %s: %s",
		         ctx->data_dir, ms_strerror(rc));
		free(d);
		return rc;
	}
	/* After the migrations, so this one finds the schema current. */
	rc = store_open(&d->rd, ctx->data_dir, "discount", discount_migrations,
	                discount_nmigrations, &opts);
	if (rc != 0) {
		MS_ERROR("discount", "cannot open the database in %s: %s",
		         ctx->data_dir, ms_strerror(rc));
		goto fail;
	}
	rc = ms_health_register("discount", "module", health_module, d);
	if (rc == 0)
		rc = ms_health_register("discountdb", "database", health_db, d);
	if (rc != 0) {
		MS_ERROR("discount", "cannot register health checks: %s",
		         ms_strerror(rc));
		goto fail;
	}
	rc = discount_rpc_serve(ctx->bus, d);
	if (rc != 0) {
		MS_ERROR("discount", "cannot serve DiscountProtoService: %s",
		         ms_strerror(rc));
		goto fail;
	}
	atomic_store(&d->ready, true);
	*state = d;
	return 0;
fail:
	discount_fini(d);
	return rc;
}

static void
discount_stop(void *state)
{
	struct discount *d = state;

	if (d)
		atomic_store(&d->ready, false);
}

const struct ms_module discount_module = {
    .name = "discount",
    .calls = NULL,
    .init = discount_init,
    .stop = discount_stop,
    .fini = discount_fini,
};
