/* SPDX-License-Identifier: MIT */
/*
 * The Discount module's storage: the coupons table in
 * <data_dir>/discount.db, its schema and seed migrations, and the four
 * operations the RPC handlers need. Every function takes the store's lock
 * for its one statement (single-statement writes are atomic in SQLite, so
 * no explicit transaction is needed) and resets its cached statement before
 * unlocking, so that no read snapshot stays open between calls.
 *
 * Threads: any; the store's mutex serialises them.
 */
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "discount.h"

/*
 * product_name is UNIQUE: a deliberate difference from the original, which
 * allowed two coupons for one product, after which GetDiscount returned
 * whichever EF Core found first. Here CreateDiscount/UpdateDiscount answer
 * ALREADY_EXISTS instead, so a product has at most one discount.
 */
static const char schema_sql[] =
    "CREATE TABLE coupons ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " product_name TEXT NOT NULL UNIQUE,"
    " description TEXT NOT NULL,"
    " amount INTEGER NOT NULL CHECK (amount >= 0));";

/* The original's seed (Discount.Grpc migration InitialCreate). It runs once,
 * as migration 2 of a new database; a coupon a user deletes stays deleted. */
static const char seed_sql[] =
    "INSERT INTO coupons (id, product_name, description, amount) VALUES"
    " (1, 'IPhone X', 'IPhone Discount', 150),"
    " (2, 'Samsung 10', 'Samsung Discount', 100);";

const struct store_migration discount_migrations[] = {
    {1, schema_sql},
    {2, seed_sql},
};
const size_t discount_nmigrations = MS_ARRAY_SIZE(discount_migrations);

static const char get_sql[] =
    "SELECT id, product_name, description, amount FROM coupons"
    " WHERE product_name = ?1";
static const char insert_sql[] =
    "INSERT INTO coupons (product_name, description, amount)"
    " VALUES (?1, ?2, ?3)";
static const char update_sql[] =
    "UPDATE coupons SET product_name = ?2, description = ?3, amount = ?4"
    " WHERE id = ?1";
static const char delete_sql[] = "DELETE FROM coupons WHERE product_name = ?1";
static const char ping_sql[] = "SELECT 1";

/* step_error maps a failed sqlite3_step to MS_E* and logs it once, here,
 * where SQLite's message is still at hand. A UNIQUE violation is not an
 * error of the store but a duplicate product name: MS_EEXIST, not logged. */
static int
step_error(struct store *st, int src)
{
	sqlite3 *db = store_db(st);

	if (sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_UNIQUE)
		return MS_EEXIST;
	MS_ERROR("discount", "database: %s", sqlite3_errmsg(db));
	return store_err(src);
}

static int
bind_text(sqlite3_stmt *s, int idx, const char *v)
{
	return sqlite3_bind_text(s, idx, v, -1, SQLITE_STATIC) == SQLITE_OK
	           ? 0
	           : MS_ENOMEM;
}

static void
column_copy(sqlite3_stmt *s, int col, char *dst, size_t n)
{
	const unsigned char *v = sqlite3_column_text(s, col);

	ms_strlcpy(dst, v ? (const char *)v : "", n);
}

int
discount_store_get(struct store *st, const char *product_name,
                   struct discount_coupon *out)
{
	sqlite3_stmt *s;
	int rc;

	store_lock(st);
	s = store_prepare(st, get_sql);
	if (!s) {
		store_unlock(st);
		return MS_EDB;
	}
	rc = bind_text(s, 1, product_name);
	if (rc == 0) {
		int src = sqlite3_step(s);

		if (src == SQLITE_ROW) {
			out->id = sqlite3_column_int(s, 0);
			column_copy(s, 1, out->product_name,
			            sizeof(out->product_name));
			column_copy(s, 2, out->description,
			            sizeof(out->description));
			out->amount = sqlite3_column_int(s, 3);
		} else if (src == SQLITE_DONE) {
			rc = MS_ENOTFOUND;
		} else {
			rc = step_error(st, src);
		}
	}
	sqlite3_reset(s);
	store_unlock(st);
	return rc;
}

int
discount_store_create(struct store *st, struct discount_coupon *c)
{
	sqlite3_stmt *s;
	int rc;

	store_lock(st);
	s = store_prepare(st, insert_sql);
	if (!s) {
		store_unlock(st);
		return MS_EDB;
	}
	rc = bind_text(s, 1, c->product_name);
	if (rc == 0)
		rc = bind_text(s, 2, c->description);
	if (rc == 0 && sqlite3_bind_int(s, 3, c->amount) != SQLITE_OK)
		rc = MS_ENOMEM;
	if (rc == 0) {
		int src = sqlite3_step(s);

		if (src == SQLITE_DONE)
			c->id =
			    (int32_t)sqlite3_last_insert_rowid(store_db(st));
		else
			rc = step_error(st, src);
	}
	sqlite3_reset(s);
	store_unlock(st);
	return rc;
}

int
discount_store_update(struct store *st, const struct discount_coupon *c)
{
	sqlite3_stmt *s;
	int rc = 0;

	store_lock(st);
	s = store_prepare(st, update_sql);
	if (!s) {
		store_unlock(st);
		return MS_EDB;
	}
	if (sqlite3_bind_int(s, 1, c->id) != SQLITE_OK ||
	    sqlite3_bind_int(s, 4, c->amount) != SQLITE_OK)
		rc = MS_ENOMEM;
	if (rc == 0)
		rc = bind_text(s, 2, c->product_name);
	if (rc == 0)
		rc = bind_text(s, 3, c->description);
	if (rc == 0) {
		int src = sqlite3_step(s);

		if (src != SQLITE_DONE)
			rc = step_error(st, src);
		else if (sqlite3_changes(store_db(st)) == 0)
			rc = MS_ENOTFOUND;
	}
	sqlite3_reset(s);
	store_unlock(st);
	return rc;
}

int
discount_store_delete(struct store *st, const char *product_name)
{
	sqlite3_stmt *s;
	int rc;

	store_lock(st);
	s = store_prepare(st, delete_sql);
	if (!s) {
		store_unlock(st);
		return MS_EDB;
	}
	rc = bind_text(s, 1, product_name);
	if (rc == 0) {
		int src = sqlite3_step(s);

		if (src != SQLITE_DONE)
			rc = step_error(st, src);
		else if (sqlite3_changes(store_db(st)) == 0)
			rc = MS_ENOTFOUND;
	}
	sqlite3_reset(s);
	store_unlock(st);
	return rc;
}

int
discount_store_ping(struct store *st)
{
	sqlite3_stmt *s;
	int rc = 0;
	int src;

	store_lock(st);
	s = store_prepare(st, ping_sql);
	if (!s) {
		store_unlock(st);
		return MS_EDB;
	}
	src = sqlite3_step(s);
	if (src != SQLITE_ROW)
		rc = store_err(src);
	sqlite3_reset(s);
	store_unlock(st);
	return rc;
}
