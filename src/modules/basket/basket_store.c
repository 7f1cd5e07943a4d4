/* SPDX-License-Identifier: MIT */
/*
 * The Basket module's SQL: its schema (one migration), and loading, saving
 * and deleting a cart. A cart is one row of `carts` plus its items in
 * `cart_items`, kept in the order the client sent them (`pos`), because GET
 * must give them back in that order.
 *
 * Money is stored as integer cents: `list_price_cents` is the unit price the
 * client asked for before any coupon, `price_cents` the discounted unit
 * price that GET returns. Keeping both is what lets a later store recognise
 * an item that was already discounted (see basket.c).
 *
 * Threads: every function except basket_db_ping expects the caller to hold
 * the store's lock (store_lock or store_begin); statements come from the
 * store's cache, keyed by the address of the literals below.
 */
#include <stdio.h>
#include <string.h>

#include "basket_priv.h"
#include "core/err.h"
#include "core/log.h"

static const char schema_v1[] =
    "CREATE TABLE carts ("
    " user_name TEXT PRIMARY KEY,"
    " updated_ms INTEGER NOT NULL);"
    "CREATE TABLE cart_items ("
    " user_name TEXT NOT NULL REFERENCES carts(user_name)"
    "  ON DELETE CASCADE,"
    " pos INTEGER NOT NULL,"
    " product_id TEXT NOT NULL,"
    " product_name TEXT NOT NULL,"
    " color TEXT NOT NULL,"
    " quantity INTEGER NOT NULL,"
    " list_price_cents INTEGER NOT NULL,"
    " price_cents INTEGER NOT NULL,"
    " PRIMARY KEY(user_name, pos)) WITHOUT ROWID;";

const struct store_migration basket_migrations[] = {
    {1, schema_v1},
};
const size_t basket_nmigrations = MS_ARRAY_SIZE(basket_migrations);

static const char sql_cart_get[] = "SELECT 1 FROM carts WHERE user_name = ?1";
static const char sql_items_get[] =
    "SELECT product_id, product_name, color, quantity, list_price_cents,"
    " price_cents FROM cart_items WHERE user_name = ?1 ORDER BY pos"
    " LIMIT ?2";
static const char sql_cart_put[] =
    "INSERT INTO carts(user_name, updated_ms) VALUES(?1, ?2)"
    " ON CONFLICT(user_name) DO UPDATE SET updated_ms = excluded.updated_ms";
static const char sql_items_del[] =
    "DELETE FROM cart_items WHERE user_name = ?1";
static const char sql_item_put[] =
    "INSERT INTO cart_items(user_name, pos, product_id, product_name,"
    " color, quantity, list_price_cents, price_cents)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char sql_cart_del[] = "DELETE FROM carts WHERE user_name = ?1";
static const char sql_ping[] = "SELECT count(*) FROM (SELECT 1 FROM carts"
                               " LIMIT 1)";

/*
 * col_copy copies a text column into a fixed buffer. A value longer than
 * the buffer cannot have been written by this module (the REST edge bounds
 * every field), so it means the file was changed behind our back.
 */
static int
col_copy(sqlite3_stmt *s, int col, char *dst, size_t size)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	size_t n = (size_t)sqlite3_column_bytes(s, col);

	if (t == NULL || n >= size) {
		return MS_ECORRUPT;
	}
	memcpy(dst, t, n);
	dst[n] = '\0';
	return 0;
}

int
basket_db_load(struct store *st, const char *user, struct basket_cart *cart)
{
	sqlite3_stmt *s;
	int step;
	int rc = 0;

	memset(cart, 0, sizeof(*cart));
	if (ms_strlcpy(cart->user_name, user, sizeof(cart->user_name)) >=
	    sizeof(cart->user_name)) {
		/* Longer than any stored name: it cannot exist. */
		return MS_ENOTFOUND;
	}
	if ((s = store_prepare(st, sql_cart_get)) == NULL) {
		return MS_EDB;
	}
	sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
	step = sqlite3_step(s);
	sqlite3_reset(s);
	if (step == SQLITE_DONE) {
		return MS_ENOTFOUND;
	}
	if (step != SQLITE_ROW) {
		return store_err(step);
	}

	if ((s = store_prepare(st, sql_items_get)) == NULL) {
		return MS_EDB;
	}
	sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
	/* One more than fits, to tell a full cart from a corrupt one. */
	sqlite3_bind_int(s, 2, BASKET_MAX_ITEMS + 1);
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		struct basket_item *it;

		if (cart->nitems == BASKET_MAX_ITEMS) {
			rc = MS_ECORRUPT;
			break;
		}
		it = &cart->items[cart->nitems];
		if ((rc = col_copy(s, 0, it->product_id,
		                   sizeof(it->product_id))) != 0 ||
		    (rc = col_copy(s, 1, it->product_name,
		                   sizeof(it->product_name))) != 0 ||
		    (rc = col_copy(s, 2, it->color, sizeof(it->color))) != 0) {
			break;
		}
		it->quantity = sqlite3_column_int64(s, 3);
		it->list_price_cents = sqlite3_column_int64(s, 4);
		it->price_cents = sqlite3_column_int64(s, 5);
		cart->nitems++;
	}
	if (rc == 0 && step != SQLITE_DONE) {
		rc = store_err(step);
	}
	sqlite3_reset(s);
	if (rc == MS_ECORRUPT) {
		MS_ERROR("basket", "cart of %s: stored items out of bounds",
		         user);
	}
	return rc;
}

int
basket_db_save(struct store *st, const struct basket_cart *cart, int64_t now_ms)
{
	sqlite3_stmt *s;
	int step;

	if ((s = store_prepare(st, sql_cart_put)) == NULL) {
		return MS_EDB;
	}
	sqlite3_bind_text(s, 1, cart->user_name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, now_ms);
	step = sqlite3_step(s);
	sqlite3_reset(s);
	if (step != SQLITE_DONE) {
		return store_err(step);
	}

	if ((s = store_prepare(st, sql_items_del)) == NULL) {
		return MS_EDB;
	}
	sqlite3_bind_text(s, 1, cart->user_name, -1, SQLITE_STATIC);
	step = sqlite3_step(s);
	sqlite3_reset(s);
	if (step != SQLITE_DONE) {
		return store_err(step);
	}

	for (size_t i = 0; i < cart->nitems; i++) {
		const struct basket_item *it = &cart->items[i];

		if ((s = store_prepare(st, sql_item_put)) == NULL) {
			return MS_EDB;
		}
		sqlite3_bind_text(s, 1, cart->user_name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, (int64_t)i);
		sqlite3_bind_text(s, 3, it->product_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, it->product_name, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 5, it->color, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 6, it->quantity);
		sqlite3_bind_int64(s, 7, it->list_price_cents);
		sqlite3_bind_int64(s, 8, it->price_cents);
		step = sqlite3_step(s);
		sqlite3_reset(s);
		if (step != SQLITE_DONE) {
			return store_err(step);
		}
	}
	return 0;
}

int
basket_db_delete(struct store *st, const char *user, int *deleted)
{
	sqlite3_stmt *s;
	int step;

	*deleted = 0;
	/* The items go explicitly rather than through ON DELETE CASCADE, so
	 * a connection without foreign_keys=ON leaves no orphans either. */
	if ((s = store_prepare(st, sql_items_del)) == NULL) {
		return MS_EDB;
	}
	sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
	step = sqlite3_step(s);
	sqlite3_reset(s);
	if (step != SQLITE_DONE) {
		return store_err(step);
	}
	if ((s = store_prepare(st, sql_cart_del)) == NULL) {
		return MS_EDB;
	}
	sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
	step = sqlite3_step(s);
	sqlite3_reset(s);
	if (step != SQLITE_DONE) {
		return store_err(step);
	}
	*deleted = sqlite3_changes(store_db(st)) > 0;
	return 0;
}

int
basket_db_ping(struct store *st, char *desc, size_t desclen)
{
	sqlite3_stmt *s;
	int step;
	int rc;

	store_lock(st);
	if ((s = store_prepare(st, sql_ping)) == NULL) {
		store_unlock(st);
		snprintf(desc, desclen, "cannot prepare a query");
		return MS_EDB;
	}
	step = sqlite3_step(s);
	rc = step == SQLITE_ROW ? 0 : store_err(step);
	if (rc != 0) {
		snprintf(desc, desclen, "%s", sqlite3_errmsg(store_db(st)));
	}
	sqlite3_reset(s);
	store_unlock(st);
	return rc;
}
