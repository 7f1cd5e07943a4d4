/* SPDX-License-Identifier: MIT */
/*
 * Discount module internals, shared by its three files and nothing else:
 * discount.c (the module's life cycle and health checks), discount_store.c
 * (the coupons table in <data_dir>/discount.db) and discount_rpc.c (the four
 * DiscountProtoService handlers served on the bus). No REST routes: the
 * original Discount.Grpc has none either.
 *
 * Threads: the handlers run on whichever thread delivers the call (the
 * caller's for in-process calls, a transport worker for remote ones, or a
 * listener's I/O thread for GetDiscount: see |rd|), many at once; every
 * store access goes through its store's mutex.
 */
#ifndef MS_MODULES_DISCOUNT_DISCOUNT_H
#define MS_MODULES_DISCOUNT_DISCOUNT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

struct bus;

/* Bounds of a coupon's strings, in bytes. The original has none (TEXT
 * columns); ours keep a request from storing megabytes in a product name,
 * and 100 matches the product name column of Ordering's original schema. */
#define DISCOUNT_NAME_MAX 100
#define DISCOUNT_DESC_MAX 500

/* The module's state, created by init and freed by fini. */
struct discount {
	struct store *st; /* owned: opened in init, closed in fini */
	/* A second connection to the same file, for GetDiscount only: a
	 * point read under its own mutex, never behind a write's commit (WAL
	 * readers do not wait for writers). So GetDiscount is quick enough
	 * to be marked bus_inline and run on the gRPC loop thread. */
	struct store *rd;  /* owned, as |st| */
	atomic_bool ready; /* true from the end of init until stop */
	int delay_ms;      /* debug.discount_delay_ms: test hook, else 0 */
};

/* One coupon row; the strings are copies (bounded above). */
struct discount_coupon {
	int32_t id;
	char product_name[DISCOUNT_NAME_MAX + 1];
	char description[DISCOUNT_DESC_MAX + 1];
	int32_t amount;
};

/* ---- discount_store.c ------------------------------------------------- */

/* The schema and seed migrations handed to store_open. */
extern const struct store_migration discount_migrations[];
extern const size_t discount_nmigrations;

/*
 * discount_store_get reads the coupon of |product_name| (exact,
 * case-sensitive) into |out|. Returns 0, MS_ENOTFOUND or MS_EDB/MS_EBUSY.
 */
int discount_store_get(struct store *st, const char *product_name,
                       struct discount_coupon *out);

/*
 * discount_store_create inserts |c| (its id is ignored) and sets c->id to
 * the new row's. Returns 0, MS_EEXIST (the product already has a coupon) or
 * MS_EDB/MS_EBUSY.
 */
int discount_store_create(struct store *st, struct discount_coupon *c);

/*
 * discount_store_update replaces the row c->id with |c|. Returns 0,
 * MS_ENOTFOUND (no such id), MS_EEXIST (another row has that product name)
 * or MS_EDB/MS_EBUSY.
 */
int discount_store_update(struct store *st, const struct discount_coupon *c);

/* discount_store_delete deletes the coupon of |product_name|. Returns 0,
 * MS_ENOTFOUND or MS_EDB/MS_EBUSY. */
int discount_store_delete(struct store *st, const char *product_name);

/* discount_store_ping runs a trivial query under the lock: the health
 * check. Returns 0 or MS_E*. */
int discount_store_ping(struct store *st);

/* ---- discount_rpc.c --------------------------------------------------- */

/* discount_rpc_serve registers the DiscountProtoService handlers on |bus|
 * with |d| as their context. Returns bus_serve's code. */
int discount_rpc_serve(struct bus *bus, struct discount *d);

#endif
