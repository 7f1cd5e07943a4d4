/* SPDX-License-Identifier: MIT */
/*
 * The Ordering module's domain rules and storage (<data_dir>/ordering.db).
 *
 * The rules of the original's domain model and schema (reference/
 * aspnetrun.md §3.2-3.3: required fields, column sizes, CVV at most 3
 * characters, quantity > 0, price > 0, non-empty GUIDs) are checked here,
 * once, for every way an order comes in: POST /orders, PUT /orders and the
 * checkout event. Where the original threw (500) or let the database
 * reject a value, every violation is collected with the JSON path of its
 * field and answered as a validation error.
 *
 * No customer or product foreign keys: the original required rows in its
 * Customers and Products tables, filled only by its seed, so an order for
 * any other customer or product failed with a 500. We have no Catalog to
 * fill such tables from, and the ids come from Basket, which trusts its
 * client as the original does; they are kept as given (validated GUIDs).
 *
 * Money is stored in integer cents; the status as its number (the original
 * stored the enum's name).
 *
 * The CVV is checked (required, at most 3 characters, as the original's
 * rules say) and then dropped: the payment_cvv column stays NULL for every
 * order, created or updated, and reads answer "cvv": null. A card's
 * security code must not be kept once the order exists (PCI DSS 3.2); the
 * original stored it. The seed orders have none either.
 *
 * Threads: any; every access holds the store's mutex.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "core/money.h"
#include "core/util.h"
#include "http/http.h"
#include "http/json.h"
#include "ordering.h"

/* ---- schema and seed -------------------------------------------------- */

/*
 * order_name uses NOCASE, so that sorting and the name index follow SQL
 * Server's default case-insensitive collation as the original's did (for
 * ASCII letters; SQLite folds no others). LIKE is case-insensitive for
 * ASCII anyway.
 */
static const char schema_sql[] =
    "CREATE TABLE orders ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " customer_id TEXT NOT NULL,"
    " order_name TEXT NOT NULL COLLATE NOCASE,"
    " shipping_first_name TEXT NOT NULL,"
    " shipping_last_name TEXT NOT NULL,"
    " shipping_email_address TEXT NOT NULL,"
    " shipping_address_line TEXT NOT NULL,"
    " shipping_country TEXT,"
    " shipping_state TEXT,"
    " shipping_zip_code TEXT NOT NULL,"
    " billing_first_name TEXT NOT NULL,"
    " billing_last_name TEXT NOT NULL,"
    " billing_email_address TEXT NOT NULL,"
    " billing_address_line TEXT NOT NULL,"
    " billing_country TEXT,"
    " billing_state TEXT,"
    " billing_zip_code TEXT NOT NULL,"
    " payment_card_name TEXT NOT NULL,"
    " payment_card_number TEXT NOT NULL,"
    " payment_expiration TEXT,"
    " payment_cvv TEXT," /* always NULL: the CVV is never stored */
    " payment_method INTEGER NOT NULL,"
    " status INTEGER NOT NULL CHECK (status BETWEEN 1 AND 4),"
    " total_cents INTEGER NOT NULL CHECK (total_cents >= 0),"
    " created_ms INTEGER NOT NULL,"
    " modified_ms INTEGER NOT NULL);"
    "CREATE INDEX orders_order_name ON orders (order_name);"
    "CREATE INDEX orders_customer_id ON orders (customer_id);"
    "CREATE TABLE order_items ("
    " id INTEGER PRIMARY KEY,"
    " order_id TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,"
    " product_id TEXT NOT NULL,"
    " quantity INTEGER NOT NULL CHECK (quantity > 0),"
    " price_cents INTEGER NOT NULL CHECK (price_cents >= 0));"
    "CREATE INDEX order_items_order_id ON order_items (order_id);";

/*
 * The original's InitialData (§3.4): ORD_1 for mehmet, ORD_2 for john, with
 * their items and totals (1400 and 1550). The original drew the order ids
 * from Guid.NewGuid(); ours are fixed GUIDs, so that every fresh database
 * holds the same two orders and tests and docs can name them. A migration
 * runs once, in a new database: deleted seed orders stay deleted. Their
 * CVVs (355, 222 in the original) are not kept, like any order's.
 */
#define SEED_NOW "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
static const char seed_sql[] =
    "INSERT INTO orders VALUES ("
    " 'a2537de3-889a-42d2-a3dc-e32503cb1f54',"
    " '58c49479-ec65-4de2-86e7-033c546291aa', 'ORD_1',"
    " 'mehmet', 'ozkaya', 'mehmet@gmail.com', 'Bahcelievler No:4',"
    " 'Turkey', 'Istanbul', '38050',"
    " 'mehmet', 'ozkaya', 'mehmet@gmail.com', 'Bahcelievler No:4',"
    " 'Turkey', 'Istanbul', '38050',"
    " 'mehmet', '5555555555554444', '12/28', NULL, 1,"
    " 2, 140000, " SEED_NOW ", " SEED_NOW "),"
    " ("
    " '955e3896-8714-4d5b-b0b4-a21e0b857d02',"
    " '189dc8dc-990f-48e0-a37b-e6f2b60b9d7d', 'ORD_2',"
    " 'john', 'doe', 'john@gmail.com', 'Broadway No:1',"
    " 'England', 'Nottingham', '08050',"
    " 'john', 'doe', 'john@gmail.com', 'Broadway No:1',"
    " 'England', 'Nottingham', '08050',"
    " 'john', '8885555555554444', '06/30', NULL, 2,"
    " 2, 155000, " SEED_NOW ", " SEED_NOW ");"
    "INSERT INTO order_items (order_id, product_id, quantity, price_cents)"
    " VALUES"
    " ('a2537de3-889a-42d2-a3dc-e32503cb1f54',"
    "  '5334c996-8457-4cf0-815c-ed2b77c4ff61', 2, 50000),"
    " ('a2537de3-889a-42d2-a3dc-e32503cb1f54',"
    "  'c67d6323-e8b1-4bdf-9a75-b0d0d2e7e914', 1, 40000),"
    " ('955e3896-8714-4d5b-b0b4-a21e0b857d02',"
    "  '4f136e9f-ff8c-4c1f-9a33-d12f689bdab8', 1, 65000),"
    " ('955e3896-8714-4d5b-b0b4-a21e0b857d02',"
    "  '6ec1297b-ec0a-4aa1-be25-6726e3b51a27', 2, 45000);";

const struct store_migration ordering_migrations[] = {
    {1, schema_sql},
    {2, seed_sql},
};
const size_t ordering_nmigrations = MS_ARRAY_SIZE(ordering_migrations);

/* ---- statements ------------------------------------------------------- */

#define ORDER_COLUMNS                                                          \
	"id, customer_id, order_name,"                                         \
	" shipping_first_name, shipping_last_name, shipping_email_address,"    \
	" shipping_address_line, shipping_country, shipping_state,"            \
	" shipping_zip_code,"                                                  \
	" billing_first_name, billing_last_name, billing_email_address,"       \
	" billing_address_line, billing_country, billing_state,"               \
	" billing_zip_code,"                                                   \
	" payment_card_name, payment_card_number, payment_expiration,"         \
	" payment_cvv, payment_method, status, total_cents"

/* Column numbers of ORDER_COLUMNS in a SELECT. */
enum {
	COL_ID = 0,
	COL_CUSTOMER = 1,
	COL_NAME = 2,
	COL_SHIPPING = 3, /* 7 columns */
	COL_BILLING = 10, /* 7 columns */
	COL_PAYMENT = 17, /* card name, number, expiration, cvv, method */
	COL_STATUS = 22,
	COL_TOTAL = 23,
};

static const char insert_order_sql[] =
    "INSERT INTO orders (" ORDER_COLUMNS ", created_ms, modified_ms)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,"
    " ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?25)";
static const char insert_item_sql[] =
    "INSERT INTO order_items (order_id, product_id, quantity, price_cents)"
    " VALUES (?1, ?2, ?3, ?4)";
static const char update_order_sql[] =
    "UPDATE orders SET order_name = ?3,"
    " shipping_first_name = ?4, shipping_last_name = ?5,"
    " shipping_email_address = ?6, shipping_address_line = ?7,"
    " shipping_country = ?8, shipping_state = ?9, shipping_zip_code = ?10,"
    " billing_first_name = ?11, billing_last_name = ?12,"
    " billing_email_address = ?13, billing_address_line = ?14,"
    " billing_country = ?15, billing_state = ?16, billing_zip_code = ?17,"
    " payment_card_name = ?18, payment_card_number = ?19,"
    " payment_expiration = ?20, payment_cvv = ?21, payment_method = ?22,"
    " status = ?23, modified_ms = ?25"
    " WHERE id = ?1";
static const char delete_order_sql[] = "DELETE FROM orders WHERE id = ?1";
static const char count_sql[] = "SELECT COUNT(*) FROM orders";
static const char page_sql[] = "SELECT " ORDER_COLUMNS " FROM orders"
                               " ORDER BY order_name, id LIMIT ?1 OFFSET ?2";
static const char by_name_sql[] = "SELECT " ORDER_COLUMNS " FROM orders"
                                  " WHERE order_name LIKE ?1 ESCAPE '\\'"
                                  " ORDER BY order_name, id LIMIT ?2";
static const char by_customer_sql[] = "SELECT " ORDER_COLUMNS " FROM orders"
                                      " WHERE customer_id = ?1"
                                      " ORDER BY order_name, id LIMIT ?2";
static const char items_sql[] =
    "SELECT order_id, product_id, quantity, price_cents FROM order_items"
    " WHERE order_id = ?1 ORDER BY id";
static const char ping_sql[] = "SELECT 1";

/* ---- validation ------------------------------------------------------- */

static bool
has_err(const struct http_resp *errs, const char *path)
{
	size_t n =
	    errs->nverrs < HTTP_MAX_VERRS ? errs->nverrs : HTTP_MAX_VERRS;

	for (size_t i = 0; i < n; i++)
		if (strcmp(errs->verrs[i].property, path) == 0)
			return true;
	return false;
}

static bool
is_blank(const char *s)
{
	for (; *s; s++)
		if (!isspace((unsigned char)*s))
			return false;
	return true;
}

/* has_control tells whether |s| holds a control character. ms_utf8_valid
 * lets tab, CR and LF through; no name, address or card field needs them,
 * and a newline in a user name would forge lines in our log. */
static bool
has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* chars counts the code points of valid UTF-8 |s|. */
static size_t
chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/*
 * verr records a domain rule's failure at |path| in the getters' form
 * ("'zipCode' must be ..."): the quoted name is the path's last member.
 */
static void verr(struct http_resp *errs, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
verr(struct http_resp *errs, const char *path, const char *fmt, ...)
{
	const char *name = strrchr(path, '.');
	char msg[sizeof(errs->verrs[0].message)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	http_verr_add(errs, path, "'%s' %s", name ? name + 1 : path, msg);
}

/*
 * check_text applies the rules of one string field: required (present and
 * not blank), text (UTF-8 without control characters) and at most |max|
 * characters. A field whose getter already failed is not reported twice.
 */
static void
check_text(struct http_resp *errs, const char *path, const char *v, size_t max,
           bool required)
{
	if (has_err(errs, path))
		return;
	if (!v || is_blank(v)) {
		if (required)
			verr(errs, path, "is required");
		return;
	}
	if (!ms_utf8_valid(v, strlen(v)) || has_control(v))
		verr(errs, path, "must not contain control characters");
	else if (chars(v) > max)
		verr(errs, path, "must be at most %zu characters long", max);
}

/* check_guid: a required, non-nil GUID (the original's X.Of(Guid) throws
 * "<X> cannot be empty." for the nil one). */
static void
check_guid(struct http_resp *errs, const char *path, const char *v)
{
	if (has_err(errs, path))
		return;
	if (!*v)
		verr(errs, path, "is required");
	else if (!ms_uuid_valid(v))
		verr(errs, path, "must be a GUID");
	else if (ms_uuid_is_nil(v))
		verr(errs, path, "must not be the empty GUID");
}

static void
check_address(struct http_resp *errs, const char *path,
              const struct ordering_address *a)
{
	char p[96];

	if (has_err(errs, path))
		return;
	if (!a->present) {
		verr(errs, path, "is required");
		return;
	}
#define FIELD(name) (snprintf(p, sizeof(p), "%s." name, path), p)
	check_text(errs, FIELD("firstName"), a->first_name, ORDERING_PERSON_MAX,
	           true);
	check_text(errs, FIELD("lastName"), a->last_name, ORDERING_PERSON_MAX,
	           true);
	check_text(errs, FIELD("emailAddress"), a->email_address,
	           ORDERING_PERSON_MAX, true);
	check_text(errs, FIELD("addressLine"), a->address_line,
	           ORDERING_LINE_MAX, true);
	check_text(errs, FIELD("country"), a->country, ORDERING_REGION_MAX,
	           false);
	check_text(errs, FIELD("state"), a->state, ORDERING_REGION_MAX, false);
	check_text(errs, FIELD("zipCode"), a->zip_code, ORDERING_ZIP_MAX, true);
#undef FIELD
}

static void
check_payment(struct http_resp *errs, const struct ordering_payment *pay)
{
	if (has_err(errs, "order.payment"))
		return;
	if (!pay->present) {
		verr(errs, "order.payment", "is required");
		return;
	}
	check_text(errs, "order.payment.cardName", pay->card_name,
	           ORDERING_CARDNAME_MAX, true);
	check_text(errs, "order.payment.cardNumber", pay->card_number,
	           ORDERING_CARDNUM_MAX, true);
	check_text(errs, "order.payment.expiration", pay->expiration,
	           ORDERING_EXPIRY_MAX, false);
	check_text(errs, "order.payment.cvv", pay->cvv, ORDERING_CVV_MAX, true);
	if (!has_err(errs, "order.payment.paymentMethod") &&
	    (pay->method < INT32_MIN || pay->method > INT32_MAX))
		verr(errs, "order.payment.paymentMethod",
		     "must be a 32-bit integer");
}

/* check_items validates the items and sets o->total_cents to Σ price ×
 * quantity (or checks the given total when there are none). */
static void
check_items(struct http_resp *errs, struct ordering_order *o,
            enum ordering_check kind)
{
	int64_t total = 0;
	bool overflow = false;
	char p[64], q[96];

	if (has_err(errs, "order.orderItems"))
		return;
	if (o->nitems > ORDERING_MAX_ITEMS) {
		verr(errs, "order.orderItems", "must hold at most %d items",
		     ORDERING_MAX_ITEMS);
		return;
	}
	if (o->nitems == 0) {
		if (kind == ORDERING_CHECK_CREATE) {
			/* The original validator's own message. */
			http_verr_add(errs, "order.orderItems",
			              "OrderItems should not be empty");
		} else if (!has_err(errs, "order.totalPrice") &&
		           (o->total_cents < 0 ||
		            o->total_cents > MS_MONEY_MAX_CENTS)) {
			verr(errs, "order.totalPrice",
			     "must be between 0 and 9999999999999999.99");
		}
		return;
	}
	for (size_t i = 0; i < o->nitems; i++) {
		const struct ordering_item *it = &o->items[i];
		bool ok = true;

		snprintf(p, sizeof(p), "order.orderItems[%zu]", i);
		if (has_err(errs, p))
			continue;
		snprintf(q, sizeof(q), "%s.productId", p);
		check_guid(errs, q, it->product_id);
		snprintf(q, sizeof(q), "%s.quantity", p);
		if (has_err(errs, q)) {
			ok = false;
		} else if (it->quantity <= 0) {
			verr(errs, q, "must be greater than 0");
			ok = false;
		} else if (it->quantity > INT32_MAX) {
			verr(errs, q, "must be at most %d", INT32_MAX);
			ok = false;
		}
		snprintf(q, sizeof(q), "%s.price", p);
		if (has_err(errs, q)) {
			ok = false;
		} else if (it->price_cents < 0 ||
		           (it->price_cents == 0 &&
		            kind != ORDERING_CHECK_EVENT)) {
			/* A checkout may carry an item at 0: Basket's coupon
			 * can take a price down to 0 (never below), and the
			 * committed checkout must still become an order. */
			verr(errs, q, "must be greater than 0");
			ok = false;
		} else if (it->price_cents > MS_MONEY_MAX_CENTS) {
			verr(errs, q, "is too large");
			ok = false;
		}
		if (ok && !overflow &&
		    ms_money_mul_add(&total, it->price_cents, it->quantity) !=
		        0)
			overflow = true;
	}
	if (overflow)
		verr(errs, "order.orderItems",
		     "add up to a total of more than %d digits",
		     MS_MONEY_MAX_DIGITS);
	o->total_cents = total;
}

/* validate applies every rule of |kind| to |o|; errors the caller already
 * recorded (its own mapping) count too. Returns 0 or MS_EVALIDATION. */
static int
validate(struct ordering_order *o, enum ordering_check kind,
         struct http_resp *errs)
{
	if (kind == ORDERING_CHECK_UPDATE)
		check_guid(errs, "order.id", o->id);
	else
		check_guid(errs, "order.customerId", o->customer_id);
	check_text(errs, "order.orderName", o->name, ORDERING_NAME_MAX, true);
	check_address(errs, "order.shippingAddress", &o->shipping);
	check_address(errs, "order.billingAddress", &o->billing);
	check_payment(errs, &o->payment);
	if (kind == ORDERING_CHECK_UPDATE) {
		if (!has_err(errs, "order.status") &&
		    (o->status < ORDERING_DRAFT ||
		     o->status > ORDERING_CANCELLED))
			verr(errs, "order.status",
			     "must be 1 (Draft), 2 (Pending), 3 (Completed) "
			     "or 4 (Cancelled)");
	} else {
		check_items(errs, o, kind);
	}
	return errs->nverrs ? MS_EVALIDATION : 0;
}

/* ---- writes ----------------------------------------------------------- */

/* step_error maps a failed step to MS_E* and logs it once, here, with
 * SQLite's message. A constraint failure means validation let something
 * through that the schema refuses: a bug, not the client's fault. */
static int
step_error(struct store *st, int src)
{
	sqlite3 *db = store_db(st);

	MS_ERROR("ordering", "database: %s", sqlite3_errmsg(db));
	if ((src & 0xff) == SQLITE_CONSTRAINT)
		return MS_EINTERNAL;
	return store_err(src);
}

static int
bind_str(sqlite3_stmt *s, int idx, const char *v)
{
	int src = v ? sqlite3_bind_text(s, idx, v, -1, SQLITE_STATIC)
	            : sqlite3_bind_null(s, idx);

	return src == SQLITE_OK ? 0 : MS_ENOMEM;
}

static int
bind_int(sqlite3_stmt *s, int idx, int64_t v)
{
	return sqlite3_bind_int64(s, idx, v) == SQLITE_OK ? 0 : MS_ENOMEM;
}

/*
 * bind_order binds the parameters shared by the insert and the update:
 * ?1 id, ?2 customer, ?3 name, ?4-?10 shipping, ?11-?17 billing, ?18-?22
 * payment, ?23 status, ?24 total, ?25 now.
 */
static int
bind_order(sqlite3_stmt *s, const struct ordering_order *o, int64_t now,
           bool with_customer)
{
	const struct ordering_address *a[2] = {&o->shipping, &o->billing};
	int rc = 0;

	rc |= bind_str(s, 1, o->id);
	if (with_customer) {
		rc |= bind_str(s, 2, o->customer_id);
		rc |= bind_int(s, 24, o->total_cents);
	}
	rc |= bind_str(s, 3, o->name);
	for (int i = 0; i < 2; i++) {
		int b = 4 + 7 * i;

		rc |= bind_str(s, b, a[i]->first_name);
		rc |= bind_str(s, b + 1, a[i]->last_name);
		rc |= bind_str(s, b + 2, a[i]->email_address);
		rc |= bind_str(s, b + 3, a[i]->address_line);
		rc |= bind_str(s, b + 4, a[i]->country);
		rc |= bind_str(s, b + 5, a[i]->state);
		rc |= bind_str(s, b + 6, a[i]->zip_code);
	}
	rc |= bind_str(s, 18, o->payment.card_name);
	rc |= bind_str(s, 19, o->payment.card_number);
	rc |= bind_str(s, 20, o->payment.expiration);
	rc |= bind_str(s, 21, NULL); /* checked, never stored */
	rc |= bind_int(s, 22, o->payment.method);
	rc |= bind_int(s, 23, o->status);
	rc |= bind_int(s, 25, now);
	/* bind_str/bind_int return 0 or MS_ENOMEM, so OR-ing keeps one. */
	return rc ? MS_ENOMEM : 0;
}

/* exec_stmt steps a write statement once and resets it. */
static int
exec_stmt(struct store *st, sqlite3_stmt *s)
{
	int src = sqlite3_step(s);
	int rc = src == SQLITE_DONE ? 0 : step_error(st, src);

	sqlite3_reset(s);
	return rc;
}

/* insert_order writes |o| and its items; the transaction is the
 * caller's. */
static int
insert_order(struct store *st, const struct ordering_order *o)
{
	sqlite3_stmt *s = store_prepare(st, insert_order_sql);
	int rc;

	if (!s)
		return MS_EDB;
	rc = bind_order(s, o, ms_wall_ms(), true);
	if (rc != 0) {
		sqlite3_reset(s);
		return rc;
	}
	rc = exec_stmt(st, s);
	for (size_t i = 0; rc == 0 && i < o->nitems; i++) {
		const struct ordering_item *it = &o->items[i];

		s = store_prepare(st, insert_item_sql);
		if (!s)
			return MS_EDB;
		if (bind_str(s, 1, o->id) || bind_str(s, 2, it->product_id) ||
		    bind_int(s, 3, it->quantity) ||
		    bind_int(s, 4, it->price_cents)) {
			sqlite3_reset(s);
			return MS_ENOMEM;
		}
		rc = exec_stmt(st, s);
	}
	return rc;
}

int
ordering_store_create(struct store *st, struct ordering_order *o,
                      enum ordering_check kind, const char *event_id,
                      const char *event_type, bool in_batch, bool *duplicate,
                      struct http_resp *errs)
{
	int rc;

	if (duplicate)
		*duplicate = false;
	/* Validation needs no lock: it reads only |o|. A duplicate of an
	 * invalid event is refused again the same way; of a valid one, it
	 * is found by the claim below. */
	rc = validate(o, kind, errs);
	if (rc != 0)
		return rc;
	/* A new order is Pending, whatever was sent (as in the original),
	 * and gets a new id: the sent one is ignored. */
	o->status = ORDERING_PENDING;
	ms_uuid_v4(o->id);

	rc = in_batch ? store_savepoint(st) : store_begin(st);
	if (rc != 0)
		return rc;
	if (event_id) {
		rc = store_inbox_claim(st, event_id, event_type);
		if (rc == MS_EEXIST && duplicate)
			*duplicate = true;
	}
	if (rc == 0)
		rc = insert_order(st, o);
	if (in_batch) {
		/* The batch's transaction goes on without this step. */
		if (rc != 0) {
			store_rollback_to(st);
			return rc;
		}
		rc = store_release(st);
		if (rc != 0)
			store_rollback_to(st);
		return rc;
	}
	if (rc != 0) {
		store_rollback(st);
		return rc;
	}
	return store_commit(st);
}

int
ordering_store_batch_begin(struct store *st)
{
	return store_begin(st);
}

int
ordering_store_batch_commit(struct store *st)
{
	return store_commit(st);
}

void
ordering_store_batch_rollback(struct store *st)
{
	store_rollback(st);
}

int
ordering_store_update(struct store *st, struct ordering_order *o,
                      struct http_resp *errs)
{
	sqlite3_stmt *s;
	int rc;

	rc = validate(o, ORDERING_CHECK_UPDATE, errs);
	if (rc != 0)
		return rc;
	/* One statement: atomic on its own, no explicit transaction. */
	store_lock(st);
	s = store_prepare(st, update_order_sql);
	if (!s) {
		store_unlock(st);
		return MS_EDB;
	}
	rc = bind_order(s, o, ms_wall_ms(), false);
	if (rc == 0)
		rc = exec_stmt(st, s);
	else
		sqlite3_reset(s);
	if (rc == 0 && sqlite3_changes(store_db(st)) == 0)
		rc = MS_ENOTFOUND;
	store_unlock(st);
	return rc;
}

int
ordering_store_delete(struct store *st, const char *id)
{
	sqlite3_stmt *s;
	int rc;

	store_lock(st);
	s = store_prepare(st, delete_order_sql);
	if (!s) {
		store_unlock(st);
		return MS_EDB;
	}
	rc = bind_str(s, 1, id);
	if (rc == 0)
		rc = exec_stmt(st, s); /* the items go by ON DELETE CASCADE */
	else
		sqlite3_reset(s);
	if (rc == 0 && sqlite3_changes(store_db(st)) == 0)
		rc = MS_ENOTFOUND;
	store_unlock(st);
	return rc;
}

/* ---- reads ------------------------------------------------------------ */

/* col_str returns column |c| as a JSON string, null for SQL NULL, or NULL
 * when out of memory. */
static json_t *
col_str(sqlite3_stmt *s, int c)
{
	const char *v;

	if (sqlite3_column_type(s, c) == SQLITE_NULL)
		return json_null();
	v = (const char *)sqlite3_column_text(s, c);
	if (!v)
		return NULL;
	return json_stringn(v, (size_t)sqlite3_column_bytes(s, c));
}

/* put adds |v| to |obj|, recording a failure (a NULL |v| included) in
 * *ok; json_object_set_new releases |v| even when it fails. */
static void
put(json_t *obj, const char *key, json_t *v, bool *ok)
{
	if (!v || json_object_set_new(obj, key, v) != 0)
		*ok = false;
}

static json_t *
address_json(sqlite3_stmt *s, int c)
{
	json_t *a = json_object();
	bool ok = a != NULL;

	if (!a)
		return NULL;
	put(a, "firstName", col_str(s, c), &ok);
	put(a, "lastName", col_str(s, c + 1), &ok);
	put(a, "emailAddress", col_str(s, c + 2), &ok);
	put(a, "addressLine", col_str(s, c + 3), &ok);
	put(a, "country", col_str(s, c + 4), &ok);
	put(a, "state", col_str(s, c + 5), &ok);
	put(a, "zipCode", col_str(s, c + 6), &ok);
	if (!ok) {
		json_decref(a);
		return NULL;
	}
	return a;
}

static json_t *
payment_json(sqlite3_stmt *s, int c)
{
	json_t *p = json_object();
	bool ok = p != NULL;

	if (!p)
		return NULL;
	put(p, "cardName", col_str(s, c), &ok);
	put(p, "cardNumber", col_str(s, c + 1), &ok);
	put(p, "expiration", col_str(s, c + 2), &ok);
	put(p, "cvv", col_str(s, c + 3), &ok);
	put(p, "paymentMethod", json_integer(sqlite3_column_int64(s, c + 4)),
	    &ok);
	if (!ok) {
		json_decref(p);
		return NULL;
	}
	return p;
}

/* items_json reads the items of order |id| (lock held). */
static int
items_json(struct store *st, const char *id, json_t **out)
{
	sqlite3_stmt *s = store_prepare(st, items_sql);
	json_t *arr;
	int rc = 0, src;

	if (!s)
		return MS_EDB;
	arr = json_array();
	if (!arr || bind_str(s, 1, id) != 0) {
		sqlite3_reset(s);
		json_decref(arr);
		return MS_ENOMEM;
	}
	while ((src = sqlite3_step(s)) == SQLITE_ROW) {
		json_t *it = json_object();
		bool ok = it != NULL;

		if (it) {
			put(it, "orderId", col_str(s, 0), &ok);
			put(it, "productId", col_str(s, 1), &ok);
			put(it, "quantity",
			    json_integer(sqlite3_column_int64(s, 2)), &ok);
			put(it, "price",
			    http_json_money_new(sqlite3_column_int64(s, 3)),
			    &ok);
		}
		if (!ok || json_array_append_new(arr, it) != 0) {
			if (!ok)
				json_decref(it);
			rc = MS_ENOMEM;
			break;
		}
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = step_error(st, src);
	sqlite3_reset(s);
	if (rc != 0) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return 0;
}

/* order_json builds one Order from the current row of |s| (ORDER_COLUMNS)
 * and its items (lock held). */
static int
order_json(struct store *st, sqlite3_stmt *s, json_t **out)
{
	json_t *o = json_object(), *items = NULL;
	const char *id = (const char *)sqlite3_column_text(s, COL_ID);
	bool ok = o != NULL;
	int rc;

	if (!o || !id) {
		json_decref(o);
		return MS_ENOMEM;
	}
	rc = items_json(st, id, &items);
	if (rc != 0) {
		json_decref(o);
		return rc;
	}
	put(o, "id", col_str(s, COL_ID), &ok);
	put(o, "customerId", col_str(s, COL_CUSTOMER), &ok);
	put(o, "orderName", col_str(s, COL_NAME), &ok);
	put(o, "shippingAddress", address_json(s, COL_SHIPPING), &ok);
	put(o, "billingAddress", address_json(s, COL_BILLING), &ok);
	put(o, "payment", payment_json(s, COL_PAYMENT), &ok);
	put(o, "status", json_integer(sqlite3_column_int64(s, COL_STATUS)),
	    &ok);
	put(o, "orderItems", items, &ok);
	put(o, "totalPrice",
	    http_json_money_new(sqlite3_column_int64(s, COL_TOTAL)), &ok);
	if (!ok) {
		json_decref(o);
		return MS_ENOMEM;
	}
	*out = o;
	return 0;
}

/* collect steps |s| (bound, lock held) into a new array *out, and resets
 * it. */
static int
collect(struct store *st, sqlite3_stmt *s, json_t **out)
{
	json_t *arr = json_array();
	int rc = 0, src;

	if (!arr) {
		sqlite3_reset(s);
		return MS_ENOMEM;
	}
	while ((src = sqlite3_step(s)) == SQLITE_ROW) {
		json_t *o;

		rc = order_json(st, s, &o);
		if (rc != 0)
			break;
		if (json_array_append_new(arr, o) != 0) {
			rc = MS_ENOMEM;
			break;
		}
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = step_error(st, src);
	sqlite3_reset(s);
	if (rc != 0) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return 0;
}

int
ordering_store_page(struct store *st, int64_t index, int64_t size, json_t **out,
                    int64_t *count)
{
	sqlite3_stmt *s;
	int rc = 0, src;

	/* The caller bounds both (index <= INT32_MAX, size <= PAGE_MAX), so
	 * the offset cannot overflow. The count and the page are read under
	 * one hold of the lock, so they agree. */
	store_lock(st);
	s = store_prepare(st, count_sql);
	if (!s) {
		store_unlock(st);
		return MS_EDB;
	}
	src = sqlite3_step(s);
	if (src == SQLITE_ROW)
		*count = sqlite3_column_int64(s, 0);
	else
		rc = step_error(st, src);
	sqlite3_reset(s);
	if (rc == 0) {
		s = store_prepare(st, page_sql);
		if (!s) {
			rc = MS_EDB;
		} else if (bind_int(s, 1, size) ||
		           bind_int(s, 2, index * size)) {
			sqlite3_reset(s);
			rc = MS_ENOMEM;
		} else {
			rc = collect(st, s, out);
		}
	}
	store_unlock(st);
	return rc;
}

int
ordering_store_by_name(struct store *st, const char *name, json_t **out)
{
	size_t len = strlen(name);
	sqlite3_stmt *s;
	char *pat, *w;
	int rc;

	/* A substring longer than any name matches nothing. */
	if (len > ORDERING_BYTES(ORDERING_NAME_MAX)) {
		*out = json_array();
		return *out ? 0 : MS_ENOMEM;
	}
	/* %name% with LIKE's own wildcards and the escape escaped, so the
	 * text matches literally, as the original's Contains(). */
	pat = malloc(2 * len + 3); /* owned here, freed below */
	if (!pat)
		return MS_ENOMEM;
	w = pat;
	*w++ = '%';
	for (const char *c = name; *c; c++) {
		if (*c == '%' || *c == '_' || *c == '\\')
			*w++ = '\\';
		*w++ = *c;
	}
	*w++ = '%';
	*w = '\0';

	store_lock(st);
	s = store_prepare(st, by_name_sql);
	if (!s)
		rc = MS_EDB;
	else if (bind_str(s, 1, pat) || bind_int(s, 2, ORDERING_QUERY_MAX)) {
		sqlite3_reset(s);
		rc = MS_ENOMEM;
	} else {
		rc = collect(st, s, out);
	}
	store_unlock(st);
	free(pat);
	return rc;
}

int
ordering_store_by_customer(struct store *st, const char *customer_id,
                           json_t **out)
{
	sqlite3_stmt *s;
	int rc;

	store_lock(st);
	s = store_prepare(st, by_customer_sql);
	if (!s)
		rc = MS_EDB;
	else if (bind_str(s, 1, customer_id) ||
	         bind_int(s, 2, ORDERING_QUERY_MAX)) {
		sqlite3_reset(s);
		rc = MS_ENOMEM;
	} else {
		rc = collect(st, s, out);
	}
	store_unlock(st);
	return rc;
}

int
ordering_store_ping(struct store *st)
{
	sqlite3_stmt *s;
	int rc = 0, src;

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
