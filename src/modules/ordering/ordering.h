/* SPDX-License-Identifier: MIT */
/*
 * Ordering module internals, shared by its four files and nothing else:
 * ordering.c (life cycle, health checks), ordering_store.c (the domain
 * rules and <data_dir>/ordering.db), ordering_http.c (the REST routes and
 * their JSON mapping) and ordering_events.c (the BasketCheckoutEvent
 * consumer).
 *
 * The domain rules live in one place, ordering_store.c: POST /orders, PUT
 * /orders and the checkout event all fill a struct ordering_order from
 * their input and hand it to the store, which validates it against the
 * original's rules (reference/aspnetrun.md §3.2-3.3) before writing it.
 * Validation errors are collected, all of them, in a struct http_resp
 * (the project's record of validation errors, with the JSON path of each
 * field), which the REST edge returns as "validationErrors" and the event
 * consumer logs.
 *
 * Threads: REST handlers on HTTP worker threads and the consumer on a
 * transport delivery thread, many at once; the store's mutex serialises
 * every database access.
 */
#ifndef MS_MODULES_ORDERING_ORDERING_H
#define MS_MODULES_ORDERING_ORDERING_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct bus;
struct http_resp;
struct http_router;

/* Bounds in characters (Unicode code points), from the original's column
 * sizes (nvarchar(N) counts characters, not bytes). */
#define ORDERING_NAME_MAX     100
#define ORDERING_PERSON_MAX   50  /* firstName, lastName, emailAddress */
#define ORDERING_LINE_MAX     180 /* addressLine */
#define ORDERING_REGION_MAX   50  /* country, state */
#define ORDERING_ZIP_MAX      5
#define ORDERING_CARDNAME_MAX 50
#define ORDERING_CARDNUM_MAX  24
#define ORDERING_EXPIRY_MAX   10
#define ORDERING_CVV_MAX      3
/* At most this many bytes are read for a string of N characters: UTF-8
 * takes up to 4 bytes per character. */
#define ORDERING_BYTES(chars) ((size_t)(chars)*4)

/* Items per order: the original has no limit; ours bounds the memory one
 * request or one event may take. */
#define ORDERING_MAX_ITEMS 1000
/* GET /orders?pageSize=: at most this many per page. */
#define ORDERING_PAGE_MAX 1000
/* GET /orders/{orderName} and /orders/customer/{id} answer at most this
 * many orders (the first ones by name); the original answers them all. */
#define ORDERING_QUERY_MAX 1000

enum ordering_status {
	ORDERING_DRAFT = 1,
	ORDERING_PENDING = 2,
	ORDERING_COMPLETED = 3,
	ORDERING_CANCELLED = 4,
};

/* The module's state, created by init and freed by fini. */
struct ordering {
	struct store *st;  /* owned: opened in init, closed in fini */
	atomic_bool ready; /* true from the end of init until stop */
};

/*
 * An order as its producers hand it to the store. Strings are borrowed
 * from the input (the parsed JSON body or the unpacked event) and are only
 * read until the store call returns. NULL means "absent".
 */
struct ordering_address {
	bool present; /* the object was there (otherwise: required error) */
	const char *first_name;
	const char *last_name;
	const char *email_address;
	const char *address_line;
	const char *country;
	const char *state;
	const char *zip_code;
};

struct ordering_payment {
	bool present;
	const char *card_name;
	const char *card_number;
	const char *expiration;
	const char *cvv;
	int64_t method;
};

struct ordering_item {
	char product_id[37]; /* "" when absent */
	int64_t quantity;
	int64_t price_cents;
};

struct ordering_order {
	char id[37];          /* set by create; the key for update */
	char customer_id[37]; /* "" when absent */
	const char *name;
	struct ordering_address shipping;
	struct ordering_address billing;
	struct ordering_payment payment;
	int64_t status;              /* update only; create sets Pending */
	struct ordering_item *items; /* borrowed array of |nitems| */
	size_t nitems;
	int64_t total_cents; /* create computes it from the items; with no
	                        items (an event from the original Basket) it
	                        is the event's total, given here */
};

/* What is being checked: the rules differ slightly. */
enum ordering_check {
	ORDERING_CHECK_CREATE, /* POST /orders: at least one item */
	ORDERING_CHECK_EVENT,  /* checkout event: items may be absent */
	ORDERING_CHECK_UPDATE, /* PUT /orders: id and status; no items */
};

/* ---- ordering_store.c ------------------------------------------------- */

extern const struct store_migration ordering_migrations[];
extern const size_t ordering_nmigrations;

/*
 * ordering_store_create validates |o| (rules of |kind|, CREATE or EVENT)
 * and inserts it with a new id (written to o->id), status Pending and its
 * items, in one transaction. With |event_id|, the event is claimed in the
 * inbox in that same transaction, so the order and the claim commit
 * together. Errors already in |errs| (from the caller's mapping) count as
 * validation failures too. With |in_batch|, the order and the claim are
 * one step (a savepoint) of the batch transaction opened with
 * ordering_store_batch_begin instead: on error the step is undone and the
 * batch goes on; on 0 they commit with the batch.
 * Returns 0, MS_EVALIDATION (|errs| lists every reason), MS_EEXIST with
 * *duplicate set (the event was already handled, or claimed earlier in the
 * batch: nothing written), MS_EBUSY / MS_EDB / MS_EIO / MS_ENOMEM (nothing
 * written).
 */
int ordering_store_create(struct store *st, struct ordering_order *o,
                          enum ordering_check kind, const char *event_id,
                          const char *event_type, bool in_batch,
                          bool *duplicate, struct http_resp *errs);

/*
 * A batch of checkout events in one transaction (bus_subscribe_batch):
 * begin locks the store and opens it (0 or MS_EDB / MS_EBUSY: not
 * locked), commit commits and unlocks (0, or MS_E*: rolled back and
 * unlocked), rollback rolls back and unlocks.
 */
int ordering_store_batch_begin(struct store *st);
int ordering_store_batch_commit(struct store *st);
void ordering_store_batch_rollback(struct store *st);

/*
 * ordering_store_update validates |o| (UPDATE rules) and replaces the name,
 * addresses, payment and status of order o->id; its customer and items
 * stay as they are (as in the original). Returns 0, MS_EVALIDATION,
 * MS_ENOTFOUND or a store error.
 */
int ordering_store_update(struct store *st, struct ordering_order *o,
                          struct http_resp *errs);

/* ordering_store_delete deletes order |id| (a normalized GUID) and its
 * items. Returns 0, MS_ENOTFOUND or a store error. */
int ordering_store_delete(struct store *st, const char *id);

/*
 * The reads answer the API's Order JSON shape directly: *out is a new
 * array owned by the caller. Strings come from the database, where only
 * validated input is ever written.
 *
 * ordering_store_page: page |index| (from 0) of |size| orders by name then
 * id, and the count of all orders. ordering_store_by_name: orders whose
 * name contains |name| (case-insensitively for ASCII, as SQL Server's
 * default collation), by name. ordering_store_by_customer: orders of
 * |customer_id| (normalized GUID), by name.
 * Return 0, MS_ENOMEM or a store error.
 */
int ordering_store_page(struct store *st, int64_t index, int64_t size,
                        json_t **out, int64_t *count);
int ordering_store_by_name(struct store *st, const char *name, json_t **out);
int ordering_store_by_customer(struct store *st, const char *customer_id,
                               json_t **out);

/* ordering_store_ping runs a trivial query under the lock (health). */
int ordering_store_ping(struct store *st);

/* ---- ordering_http.c -------------------------------------------------- */

/* ordering_http_routes registers the /orders routes on |router|. Returns
 * 0 or http_route_add's code. */
int ordering_http_routes(struct http_router *router, struct ordering *o);

/* ---- ordering_events.c ------------------------------------------------ */

/* ordering_events_subscribe subscribes to BasketCheckoutEvent on |bus|.
 * Returns bus_subscribe's code. */
int ordering_events_subscribe(struct bus *bus, struct ordering *o);

#endif
