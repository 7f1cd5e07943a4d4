/* SPDX-License-Identifier: MIT */
/*
 * The Basket module's private interface, shared by its three files and by
 * nothing else: basket.c (module ops, health checks, the two domain
 * operations that span a bus call or an outbox event: storing a cart with
 * its coupons, and checking out), basket_store.c (the SQL) and
 * basket_http.c (REST routes: JSON in, validation, JSON out).
 *
 * Threads: one struct basket per process, set up in init and read-only
 * afterwards; handlers run on many HTTP worker threads at once and reach
 * the database only through the store's lock.
 */
#ifndef MS_MODULES_BASKET_PRIV_H
#define MS_MODULES_BASKET_PRIV_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "core/util.h"
#include "http/http.h"
#include "store/store.h"

struct ms_config;

/* Bounds of a cart: every one is checked at the REST edge, so the fixed
 * arrays below can never overflow. */
#define BASKET_MAX_ITEMS        100
#define BASKET_USER_MAX         100 /* bytes of userName */
#define BASKET_PRODUCT_NAME_MAX 100 /* bytes of productName */
#define BASKET_COLOR_MAX        50  /* bytes of color */
#define BASKET_QUANTITY_MAX     10000

struct basket {
	struct bus *bus;             /* borrowed from the module context */
	const struct ms_config *cfg; /* borrowed */
	struct store *st;            /* owned: closed in fini */
	atomic_bool stopping;        /* set by stop, read by health */
};

struct basket_item {
	char product_id[MS_UUID_STRLEN];
	char product_name[BASKET_PRODUCT_NAME_MAX + 1];
	char color[BASKET_COLOR_MAX + 1];
	int64_t quantity;
	int64_t list_price_cents; /* what the client asked, before the coupon */
	int64_t price_cents;      /* the discounted unit price */
};

/* About 22 KiB: callers allocate it on the heap, not on a worker stack. */
struct basket_cart {
	char user_name[BASKET_USER_MAX + 1];
	size_t nitems;
	struct basket_item items[BASKET_MAX_ITEMS];
};

/* The checkout request, validated: every string points into the request's
 * JSON (borrowed for the duration of the call); optional ones are "". */
struct basket_checkout {
	const char *user_name;
	char customer_id[MS_UUID_STRLEN];
	const char *first_name;
	const char *last_name;
	const char *email_address;
	const char *address_line;
	const char *country;
	const char *state;
	const char *zip_code;
	const char *card_name;
	const char *card_number;
	const char *expiration;
	const char *cvv;
	int32_t payment_method;
};

/* ---- basket.c: domain operations -------------------------------------- */

/*
 * basket_store_cart applies coupons to |cart| (whose items carry the
 * client's prices in price_cents) and stores it, replacing any previous
 * cart of that user. On return the items hold the list and discounted
 * prices that were stored. Returns 0; MS_EUNAVAIL (Discount failed, detail
 * in |resp|; nothing stored); MS_EINVAL (Discount rejected a product name);
 * MS_EDB / MS_EBUSY / MS_EIO / MS_ENOMEM.
 */
int basket_store_cart(struct basket *b, struct basket_cart *cart,
                      struct http_resp *resp);

/*
 * basket_checkout deletes |co->user_name|'s cart and records a
 * BasketCheckoutEvent in the outbox, in one transaction, then wakes the
 * relay. The event carries a child of |traceparent| (the request's trace;
 * NULL: the thread's current one; none valid: a new trace), so that the
 * processes it reaches log under the trace the request started.
 * |event_id| and |total| (MS_MONEY_STRLEN bytes) receive the event's
 * id and the server's total. Returns 0, MS_ENOTFOUND (no such basket; detail
 * in |resp|), MS_EVALIDATION (an item Ordering could not take, named in
 * |resp|; nothing written), MS_ENOMEM, or a store error.
 */
int basket_checkout(struct basket *b, const struct basket_checkout *co,
                    const char *traceparent, char event_id[MS_UUID_STRLEN],
                    char *total, struct http_resp *resp);

/* basket_cart_total computes Σ price × quantity; MS_EINVAL on overflow. */
int basket_cart_total(const struct basket_cart *cart, int64_t *total);

/* ---- basket_store.c: SQL (every function expects the lock held) ------- */

extern const struct store_migration basket_migrations[];
extern const size_t basket_nmigrations;

/* basket_db_load fills |cart| with |user|'s cart, items in stored order.
 * Returns 0, MS_ENOTFOUND or a store error. */
int basket_db_load(struct store *st, const char *user,
                   struct basket_cart *cart);

/* basket_db_save replaces |cart|'s row and items (inside a transaction). */
int basket_db_save(struct store *st, const struct basket_cart *cart,
                   int64_t now_ms);

/* basket_db_delete deletes |user|'s cart and its items (inside a
 * transaction). *deleted tells whether there was one. */
int basket_db_delete(struct store *st, const char *user, int *deleted);

/* basket_db_ping runs a trivial query: the database health check. */
int basket_db_ping(struct store *st, char *desc, size_t desclen);

/* ---- basket_http.c: REST ---------------------------------------------- */

/* basket_http_register adds the four routes. Returns 0 or the router's
 * error. */
int basket_http_register(struct basket *b, struct http_router *router);

#endif
