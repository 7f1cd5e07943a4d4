/* SPDX-License-Identifier: MIT */
/*
 * Tests of the Ordering module with no sockets: a real bus (in-process
 * transport) and router, the module initialised on a temporary data
 * directory; each REST route reached through http_router_match and called
 * with a hand-built struct http_req, and the checkout consumer reached by
 * publishing a BasketCheckoutEvent on the bus and waiting for its verdict.
 *
 * Covered: the seed (ORD_1, ORD_2); paging and its validation; search by
 * name (substring, case-insensitive, wildcards taken literally) and by
 * customer; POST (201, Location, a new id, Pending whatever is sent, the
 * total) and every domain rule, all errors reported at once with their
 * JSON paths; PUT (200, 404, items untouched); DELETE (400, 404, 200, items
 * cascaded); the consumer (one order per event id however often it comes,
 * poison events refused, events without items, duplicates racing each
 * other); health; seed once.
 */
#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus/bus_core.h"
#include "core/config.h"
#include "core/err.h"
#include "core/health.h"
#include "core/util.h"
#include "events.pb-c.h"
#include "http/http.h"
#include "http/json.h"
#include "modules/module.h"
#include "store/store.h"
#include "support/tmpdir.h"
#include "transport/transport.h"

#define MEHMET     "58c49479-ec65-4de2-86e7-033c546291aa"
#define JOHN       "189dc8dc-990f-48e0-a37b-e6f2b60b9d7d"
#define ORD_1_ID   "a2537de3-889a-42d2-a3dc-e32503cb1f54"
#define IPHONE_ID  "5334c996-8457-4cf0-815c-ed2b77c4ff61"
#define SAMSUNG_ID "c67d6323-e8b1-4bdf-9a75-b0d0d2e7e914"
#define CUSTOMER   "0f8fad5b-d9cb-469f-a165-70867728950e"
#define NIL_GUID   "00000000-0000-0000-0000-000000000000"

static struct {
	char dir[256];
	struct ms_config *cfg;
	struct bus *bus;
	struct http_router *router;
	struct module_ctx ctx;
	void *ordering;
} E;

static struct http_resp R; /* the last response; its body is ours */

static void
up(void)
{
	char err[256] = "";

	ck_assert_int_eq(ms_config_create(&E.cfg), 0);
	ck_assert_int_eq(bus_create(&E.bus, E.cfg), 0);
	ck_assert_int_eq(http_router_create(&E.router), 0);
	memset(&E.ctx, 0, sizeof(E.ctx));
	E.ctx.bus = E.bus;
	E.ctx.cfg = E.cfg;
	E.ctx.router = E.router;
	E.ctx.data_dir = E.dir;
	ck_assert_int_eq(ordering_module.init(&E.ctx, &E.ordering), 0);
	ck_assert_ptr_nonnull(E.ordering);
	ck_assert_msg(bus_start(E.bus, err, sizeof(err)) == 0, "%s", err);
}

static void
down(void)
{
	json_decref(R.body);
	memset(&R, 0, sizeof(R));
	bus_stop(E.bus);
	ordering_module.stop(E.ordering);
	ordering_module.fini(E.ordering);
	E.ordering = NULL;
	bus_destroy(E.bus);
	http_router_destroy(E.router);
	ms_config_destroy(E.cfg);
}

static void
setup(void)
{
	memset(&E, 0, sizeof(E));
	memset(&R, 0, sizeof(R));
	ck_assert_int_eq(test_tmpdir(E.dir, sizeof(E.dir)), 0);
	up();
}

static void
teardown(void)
{
	down();
	test_rmdir(E.dir);
}

/* ---- calling routes --------------------------------------------------- */

/*
 * call runs |method| |target| (a path, optionally with "?query") with
 * |body| through the router and the handler, as the HTTP edge would,
 * leaving the response in R. Returns the status the edge would answer.
 */
static int
call(enum http_method method, const char *target, const char *body)
{
	char path[512], params[HTTP_MAX_PARAMS][256];
	const char *q = strchr(target, '?');
	struct http_match m;
	struct http_req req = {0};
	int rc;

	json_decref(R.body);
	memset(&R, 0, sizeof(R));
	ck_assert_uint_lt(strlen(target), sizeof(path));
	strcpy(path, target);
	if (q) {
		path[q - target] = '\0';
		req.query = q + 1;
	}
	rc = http_router_match(E.router, method, path, &m);
	ck_assert_msg(rc == 0, "no route for %s: %s", path, ms_strerror(rc));
	for (size_t i = 0; i < m.nparams; i++) {
		ck_assert_uint_lt(m.param_len[i], sizeof(params[i]));
		memcpy(params[i], path + m.param_off[i], m.param_len[i]);
		params[i][m.param_len[i]] = '\0';
		req.params[i] = params[i];
		req.param_names[i] = m.param_names[i];
	}
	req.nparams = m.nparams;
	req.method = method;
	req.path = path;
	req.body = body;
	req.body_len = body ? strlen(body) : 0;
	req.trace_id = "test";
	rc = m.fn(m.ctx, &req, &R);
	if (rc != 0) {
		ck_assert_ptr_null(R.body);
		return ms_err_http(rc);
	}
	ck_assert_ptr_nonnull(R.body);
	return R.status;
}

static bool
has_verr(const char *prop, const char *msg)
{
	for (size_t i = 0; i < R.nverrs; i++)
		if (strcmp(R.verrs[i].property, prop) == 0 &&
		    (!msg || strstr(R.verrs[i].message, msg)))
			return true;
	return false;
}

static void
dump_verrs(void)
{
	for (size_t i = 0; i < R.nverrs; i++)
		fprintf(stderr, "  %s: %s\n", R.verrs[i].property,
		        R.verrs[i].message);
}

#define ck_assert_verr(prop, msg)                                              \
	do {                                                                   \
		if (!has_verr(prop, msg))                                      \
			dump_verrs();                                          \
		ck_assert_msg(has_verr(prop, msg),                             \
		              "no validation error on %s (%s)", prop,          \
		              msg ? msg : "any");                              \
	} while (0)

/* money reads an exact money member of |obj| in cents. */
static int64_t
money(const json_t *obj, const char *name)
{
	struct http_resp scratch = {0};
	int64_t cents = -1;

	ck_assert_int_eq(
	    http_json_money(obj, "", name, true, INT64_MIN, &cents, &scratch),
	    0);
	return cents;
}

static const char *
str(const json_t *obj, const char *name)
{
	const json_t *v = json_object_get(obj, name);

	ck_assert_msg(json_is_string(v), "%s is not a string", name);
	return json_string_value(v);
}

static json_int_t
num(const json_t *obj, const char *name)
{
	const json_t *v = json_object_get(obj, name);

	ck_assert_msg(json_is_integer(v), "%s is not an integer", name);
	return json_integer_value(v);
}

/* orders returns R's "orders" array (by-name and by-customer answers). */
static json_t *
orders(void)
{
	json_t *a = json_object_get(R.body, "orders");

	ck_assert(json_is_array(a));
	return a;
}

/* ---- request bodies ---------------------------------------------------- */

/*
 * A valid order to start from; tests break one thing at a time. Numbers
 * that must reach the server as written (1.005) are put in as strings
 * "@@<text>" and unquoted by dump().
 */
static json_t *
valid_order(const char *name)
{
	json_t *order = json_pack(
	    "{s:s, s:s, s:s, s:o, s:o, s:o, s:i, s:["
	    "{s:s, s:s, s:i, s:s}, {s:s, s:s, s:i, s:s}]}",
	    "id", "11111111-2222-4333-8444-555555555555", "customerId",
	    CUSTOMER, "orderName", name, "shippingAddress",
	    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "firstName", "Ada",
	              "lastName", "Lovelace", "emailAddress", "ada@example.com",
	              "addressLine", "12 St James's Sq", "country", "England",
	              "state", "London", "zipCode", "SW1Y4"),
	    "billingAddress",
	    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "firstName", "Ada",
	              "lastName", "Lovelace", "emailAddress", "ada@example.com",
	              "addressLine", "12 St James's Sq", "country", "England",
	              "state", "London", "zipCode", "SW1Y4"),
	    "payment",
	    json_pack("{s:s, s:s, s:s, s:s, s:i}", "cardName", "Ada L",
	              "cardNumber", "4111111111111111", "expiration", "01/30",
	              "cvv", "123", "paymentMethod", 1),
	    "status", 4, "orderItems", "productId", IPHONE_ID, "orderId",
	    NIL_GUID, "quantity", 3, "price", "@@19.99", "productId",
	    SAMSUNG_ID, "orderId", NIL_GUID, "quantity", 1, "price", "@@400");

	ck_assert_ptr_nonnull(order);
	return order;
}

/* dump writes {"order": |order|} (taking it), unquoting "@@" numbers. The
 * string is the caller's (free). */
static char *
dump(json_t *order)
{
	json_t *root = json_pack("{s:o}", "order", order);
	char *s, *r, *w;

	ck_assert_ptr_nonnull(root);
	s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	ck_assert_ptr_nonnull(s);
	for (r = w = s; *r;) {
		if (r[0] == '"' && r[1] == '@' && r[2] == '@') {
			for (r += 3; *r != '"'; r++)
				*w++ = *r;
			r++;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
	return s;
}

/* post sends |order| (taking it) and returns the status; on 201 |id| (may
 * be NULL) receives the new id. */
static int
post(json_t *order, char id[MS_UUID_STRLEN])
{
	char *body = dump(order);
	int status = call(HTTP_POST, "/orders", body);

	free(body);
	if (status == 201 && id)
		ms_strlcpy(id, str(R.body, "id"), MS_UUID_STRLEN);
	return status;
}

/* set replaces member |name| of the object at |path| ("" is the order,
 * "payment", "shippingAddress", "orderItems[0]") with |v| (taken). */
static void
set(json_t *order, const char *path, const char *name, json_t *v)
{
	json_t *obj = order;

	if (strncmp(path, "orderItems[", 11) == 0)
		obj = json_array_get(json_object_get(order, "orderItems"),
		                     (size_t)atoi(path + 11));
	else if (*path)
		obj = json_object_get(order, path);
	ck_assert_ptr_nonnull(obj);
	if (v)
		ck_assert_int_eq(json_object_set_new(obj, name, v), 0);
	else
		json_object_del(obj, name);
}

static int64_t
order_count(void)
{
	ck_assert_int_eq(call(HTTP_GET, "/orders", NULL), 200);
	return num(json_object_get(R.body, "orders"), "count");
}

/* find_by_name returns the one order named exactly |name| (a copy). */
static json_t *
find_by_name(const char *name)
{
	char path[256];
	json_t *a, *o;
	size_t i;

	snprintf(path, sizeof(path), "/orders/%s", name);
	ck_assert_int_eq(call(HTTP_GET, path, NULL), 200);
	a = orders();
	json_array_foreach (a, i, o) {
		if (strcmp(str(o, "orderName"), name) == 0)
			return json_deep_copy(o);
	}
	ck_abort_msg("order %s not found", name);
	return NULL;
}

/* ---- seed and reads --------------------------------------------------- */

/* cvv_rows counts the orders whose payment_cvv is not NULL, with a
 * connection of its own: there must never be any. */
static int
cvv_rows(void)
{
	char path[300];
	sqlite3 *db;
	sqlite3_stmt *s;
	int n = -1;

	snprintf(path, sizeof(path), "%s/ordering.db", E.dir);
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db,
	                                    "SELECT COUNT(*) FROM orders WHERE "
	                                    "payment_cvv IS NOT NULL",
	                                    -1, &s, NULL),
	                 SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return n;
}

START_TEST(test_seed)
{
	json_t *page, *data, *o1, *o2, *item, *a;

	ck_assert_int_eq(call(HTTP_GET, "/orders", NULL), 200);
	page = json_object_get(R.body, "orders");
	ck_assert_int_eq(num(page, "pageIndex"), 0);
	ck_assert_int_eq(num(page, "pageSize"), 10);
	ck_assert_int_eq(num(page, "count"), 2);
	data = json_object_get(page, "data");
	ck_assert_int_eq(json_array_size(data), 2);
	o1 = json_array_get(data, 0);
	o2 = json_array_get(data, 1);

	ck_assert_str_eq(str(o1, "id"), ORD_1_ID);
	ck_assert_str_eq(str(o1, "orderName"), "ORD_1");
	ck_assert_str_eq(str(o1, "customerId"), MEHMET);
	ck_assert_int_eq(num(o1, "status"), 2);
	ck_assert_int_eq(money(o1, "totalPrice"), 140000);
	a = json_object_get(o1, "shippingAddress");
	ck_assert_str_eq(str(a, "firstName"), "mehmet");
	ck_assert_str_eq(str(a, "lastName"), "ozkaya");
	ck_assert_str_eq(str(a, "emailAddress"), "mehmet@gmail.com");
	ck_assert_str_eq(str(a, "addressLine"), "Bahcelievler No:4");
	ck_assert_str_eq(str(a, "country"), "Turkey");
	ck_assert_str_eq(str(a, "state"), "Istanbul");
	ck_assert_str_eq(str(a, "zipCode"), "38050");
	ck_assert(json_equal(a, json_object_get(o1, "billingAddress")));
	a = json_object_get(o1, "payment");
	ck_assert_str_eq(str(a, "cardName"), "mehmet");
	ck_assert_str_eq(str(a, "cardNumber"), "5555555555554444");
	ck_assert_str_eq(str(a, "expiration"), "12/28");
	/* The CVV is never kept, the seed's included. */
	ck_assert(json_is_null(json_object_get(a, "cvv")));
	ck_assert_int_eq(cvv_rows(), 0);
	ck_assert_int_eq(num(a, "paymentMethod"), 1);
	ck_assert_int_eq(json_array_size(json_object_get(o1, "orderItems")), 2);
	item = json_array_get(json_object_get(o1, "orderItems"), 0);
	ck_assert_str_eq(str(item, "orderId"), ORD_1_ID);
	ck_assert_str_eq(str(item, "productId"), IPHONE_ID);
	ck_assert_int_eq(num(item, "quantity"), 2);
	ck_assert_int_eq(money(item, "price"), 50000);

	ck_assert_str_eq(str(o2, "orderName"), "ORD_2");
	ck_assert_str_eq(str(o2, "customerId"), JOHN);
	ck_assert_int_eq(money(o2, "totalPrice"), 155000);
	ck_assert_str_eq(str(json_object_get(o2, "shippingAddress"), "zipCode"),
	                 "08050");
	ck_assert_int_eq(num(json_object_get(o2, "payment"), "paymentMethod"),
	                 2);
}
END_TEST

START_TEST(test_paging)
{
	const char *names[] = {"c-3", "A-1", "b-2", "d-4", "e-5"};
	json_t *page, *data;

	for (size_t i = 0; i < 5; i++)
		ck_assert_int_eq(post(valid_order(names[i]), NULL), 201);
	ck_assert_int_eq(order_count(), 7);

	/* By name, case-insensitively: A-1 b-2 c-3 d-4 e-5 ORD_1 ORD_2. */
	ck_assert_int_eq(call(HTTP_GET, "/orders?pageIndex=1&pageSize=2", NULL),
	                 200);
	page = json_object_get(R.body, "orders");
	ck_assert_int_eq(num(page, "pageIndex"), 1);
	ck_assert_int_eq(num(page, "pageSize"), 2);
	ck_assert_int_eq(num(page, "count"), 7);
	data = json_object_get(page, "data");
	ck_assert_int_eq(json_array_size(data), 2);
	ck_assert_str_eq(str(json_array_get(data, 0), "orderName"), "c-3");
	ck_assert_str_eq(str(json_array_get(data, 1), "orderName"), "d-4");

	ck_assert_int_eq(call(HTTP_GET, "/orders?PageIndex=3&PageSize=2", NULL),
	                 200);
	data = json_object_get(json_object_get(R.body, "orders"), "data");
	ck_assert_int_eq(json_array_size(data), 1);
	ck_assert_str_eq(str(json_array_get(data, 0), "orderName"), "ORD_2");

	/* Past the end: an empty page, still the full count. */
	ck_assert_int_eq(call(HTTP_GET, "/orders?pageIndex=9", NULL), 200);
	page = json_object_get(R.body, "orders");
	ck_assert_int_eq(json_array_size(json_object_get(page, "data")), 0);
	ck_assert_int_eq(num(page, "count"), 7);

	ck_assert_int_eq(call(HTTP_GET, "/orders?pageSize=1000", NULL), 200);
}
END_TEST

START_TEST(test_paging_invalid)
{
	ck_assert_int_eq(call(HTTP_GET, "/orders?pageSize=0", NULL), 400);
	ck_assert_verr("pageSize", NULL);
	ck_assert_int_eq(call(HTTP_GET, "/orders?pageSize=1001", NULL), 400);
	ck_assert_verr("pageSize", NULL);
	ck_assert_int_eq(call(HTTP_GET, "/orders?pageIndex=-1", NULL), 400);
	ck_assert_verr("pageIndex", NULL);
	ck_assert_int_eq(
	    call(HTTP_GET, "/orders?pageIndex=x&pageSize=2.5", NULL), 400);
	ck_assert_verr("pageIndex", "integer");
	ck_assert_verr("pageSize", "integer");
	ck_assert_int_eq(call(HTTP_GET, "/orders?pageIndex=+1", NULL), 400);
	ck_assert_int_eq(call(HTTP_GET, "/orders?pageIndex=", NULL), 400);
	ck_assert_int_eq(
	    call(HTTP_GET, "/orders?pageIndex=99999999999999999999", NULL),
	    400);
}
END_TEST

START_TEST(test_by_name)
{
	ck_assert_int_eq(call(HTTP_GET, "/orders/ORD", NULL), 200);
	ck_assert_int_eq(json_array_size(orders()), 2);
	ck_assert_str_eq(str(json_array_get(orders(), 0), "orderName"),
	                 "ORD_1");
	ck_assert_str_eq(str(json_array_get(orders(), 1), "orderName"),
	                 "ORD_2");

	/* Substring, case-insensitive. */
	ck_assert_int_eq(call(HTTP_GET, "/orders/rd_2", NULL), 200);
	ck_assert_int_eq(json_array_size(orders()), 1);
	ck_assert_str_eq(str(json_array_get(orders(), 0), "orderName"),
	                 "ORD_2");

	ck_assert_int_eq(call(HTTP_GET, "/orders/nothing-like-it", NULL), 200);
	ck_assert_int_eq(json_array_size(orders()), 0);

	/* LIKE's wildcards are plain characters here. */
	ck_assert_int_eq(post(valid_order("50%off"), NULL), 201);
	ck_assert_int_eq(post(valid_order("back\\slash"), NULL), 201);
	ck_assert_int_eq(call(HTTP_GET, "/orders/%", NULL), 200);
	ck_assert_int_eq(json_array_size(orders()), 1);
	ck_assert_str_eq(str(json_array_get(orders(), 0), "orderName"),
	                 "50%off");
	ck_assert_int_eq(call(HTTP_GET, "/orders/_", NULL), 200);
	ck_assert_int_eq(json_array_size(orders()), 2); /* ORD_1, ORD_2 */
	ck_assert_int_eq(call(HTTP_GET, "/orders/D_", NULL), 200);
	ck_assert_int_eq(json_array_size(orders()), 2);
	ck_assert_int_eq(call(HTTP_GET, "/orders/O_D", NULL), 200);
	ck_assert_int_eq(json_array_size(orders()), 0);
	ck_assert_int_eq(call(HTTP_GET, "/orders/k\\s", NULL), 200);
	ck_assert_int_eq(json_array_size(orders()), 1);
}
END_TEST

START_TEST(test_by_customer)
{
	ck_assert_int_eq(call(HTTP_GET, "/orders/customer/" MEHMET, NULL), 200);
	ck_assert_int_eq(json_array_size(orders()), 1);
	ck_assert_str_eq(str(json_array_get(orders(), 0), "orderName"),
	                 "ORD_1");
	/* Any case of the GUID. */
	ck_assert_int_eq(call(HTTP_GET,
	                      "/orders/customer/"
	                      "189DC8DC-990F-48E0-A37B-E6F2B60B9D7D",
	                      NULL),
	                 200);
	ck_assert_int_eq(json_array_size(orders()), 1);
	ck_assert_str_eq(str(json_array_get(orders(), 0), "orderName"),
	                 "ORD_2");

	ck_assert_int_eq(post(valid_order("zz"), NULL), 201);
	ck_assert_int_eq(post(valid_order("aa"), NULL), 201);
	ck_assert_int_eq(call(HTTP_GET, "/orders/customer/" CUSTOMER, NULL),
	                 200);
	ck_assert_int_eq(json_array_size(orders()), 2);
	ck_assert_str_eq(str(json_array_get(orders(), 0), "orderName"), "aa");

	ck_assert_int_eq(call(HTTP_GET, "/orders/customer/" NIL_GUID, NULL),
	                 200);
	ck_assert_int_eq(json_array_size(orders()), 0);

	ck_assert_int_eq(call(HTTP_GET, "/orders/customer/not-a-guid", NULL),
	                 400);
	ck_assert_verr("customerId", "GUID");
}
END_TEST

/* ---- POST ------------------------------------------------------------- */

START_TEST(test_post)
{
	char id[MS_UUID_STRLEN], loc[64];
	json_t *o, *items;
	size_t i;
	json_t *it;

	ck_assert_int_eq(post(valid_order("ada-1"), id), 201);
	ck_assert(ms_uuid_valid(id));
	/* A new id: the sent one is ignored. */
	ck_assert_str_ne(id, "11111111-2222-4333-8444-555555555555");
	snprintf(loc, sizeof(loc), "/orders/%s", id);
	ck_assert_str_eq(R.location, loc);

	o = find_by_name("ada-1");
	ck_assert_str_eq(str(o, "id"), id);
	ck_assert_str_eq(str(o, "customerId"), CUSTOMER);
	ck_assert_int_eq(num(o, "status"), 2); /* Pending, not the sent 4 */
	/* 3 × 19.99 + 1 × 400, exactly. */
	ck_assert_int_eq(money(o, "totalPrice"), 45997);
	items = json_object_get(o, "orderItems");
	ck_assert_int_eq(json_array_size(items), 2);
	json_array_foreach (items, i, it) {
		ck_assert_str_eq(str(it, "orderId"), id);
	}
	ck_assert_int_eq(money(json_array_get(items, 0), "price"), 1999);
	ck_assert_int_eq(num(json_array_get(items, 0), "quantity"), 3);
	/* Checked (test_post_rules), answered null, stored nowhere. */
	ck_assert(json_is_null(
	    json_object_get(json_object_get(o, "payment"), "cvv")));
	json_decref(o);
	ck_assert_int_eq(order_count(), 3);
	ck_assert_int_eq(cvv_rows(), 0);
}
END_TEST

START_TEST(test_post_case_insensitive_and_optional)
{
	const char *body =
	    "{\"ORDER\":{\"CustomerID\":\"" CUSTOMER "\","
	    "\"ordername\":\"upper\","
	    "\"ShippingAddress\":{\"FIRSTNAME\":\"A\",\"lastname\":\"B\","
	    "\"EmailAddress\":\"a@b.c\",\"AddressLine\":\"x\","
	    "\"ZipCode\":\"1\"},"
	    "\"BillingAddress\":{\"FirstName\":\"A\",\"LastName\":\"B\","
	    "\"EmailAddress\":\"a@b.c\",\"AddressLine\":\"x\","
	    "\"Country\":null,\"ZipCode\":\"1\"},"
	    "\"Payment\":{\"CardName\":\"A\",\"CardNumber\":\"1\","
	    "\"CVV\":\"1\"},"
	    "\"OrderItems\":[{\"ProductId\":\"" IPHONE_ID "\","
	    "\"Quantity\":\"2\",\"Price\":\"0.5\"}]}}";
	json_t *o, *a;

	ck_assert_int_eq(call(HTTP_POST, "/orders", body), 201);
	o = find_by_name("upper");
	a = json_object_get(o, "shippingAddress");
	/* Optional members absent: null, as the original's nullable
	 * columns would answer. */
	ck_assert(json_is_null(json_object_get(a, "country")));
	ck_assert(json_is_null(json_object_get(a, "state")));
	ck_assert(json_is_null(
	    json_object_get(json_object_get(o, "payment"), "expiration")));
	ck_assert_int_eq(num(json_object_get(o, "payment"), "paymentMethod"),
	                 0);
	ck_assert_int_eq(money(o, "totalPrice"), 100);
	json_decref(o);
}
END_TEST

/* post_bad posts |order| and checks a 400 with an error on |prop| and
 * that no order was stored. */
static void
post_bad(json_t *order, const char *prop, const char *msg)
{
	int64_t before = order_count();

	ck_assert_int_eq(post(order, NULL), 400);
	ck_assert_verr(prop, msg);
	ck_assert_int_eq(order_count(), before);
}

START_TEST(test_post_rules)
{
	json_t *o;
	char name[64];

	o = valid_order("x");
	set(o, "", "orderName", json_string("   "));
	post_bad(o, "order.orderName", "required");

	o = valid_order("x");
	set(o, "", "orderName", NULL);
	post_bad(o, "order.orderName", "required");

	o = valid_order("x");
	set(o, "payment", "cvv", json_string("1234"));
	post_bad(o, "order.payment.cvv", "3");

	o = valid_order("x");
	set(o, "payment", "cardNumber", json_string(""));
	post_bad(o, "order.payment.cardNumber", "required");

	o = valid_order("x");
	set(o, "shippingAddress", "zipCode", json_string("123456"));
	post_bad(o, "order.shippingAddress.zipCode", "5");

	o = valid_order("x");
	set(o, "billingAddress", "addressLine", NULL);
	post_bad(o, "order.billingAddress.addressLine", "required");

	o = valid_order("x");
	set(o, "", "billingAddress", NULL);
	post_bad(o, "order.billingAddress", "required");

	o = valid_order("x");
	set(o, "", "payment", json_string("cash"));
	post_bad(o, "order.payment", "object");

	o = valid_order("x");
	set(o, "orderItems[0]", "quantity", json_integer(0));
	post_bad(o, "order.orderItems[0].quantity", "greater than 0");

	o = valid_order("x");
	set(o, "orderItems[1]", "quantity", json_integer(-2));
	post_bad(o, "order.orderItems[1].quantity", "greater than 0");

	o = valid_order("x");
	set(o, "orderItems[0]", "price", json_integer(0));
	post_bad(o, "order.orderItems[0].price", "greater than 0");

	o = valid_order("x");
	set(o, "orderItems[0]", "price", json_string("@@1.005"));
	post_bad(o, "order.orderItems[0].price", "decimals");

	o = valid_order("x");
	set(o, "orderItems[0]", "price", json_string("@@-1"));
	post_bad(o, "order.orderItems[0].price", NULL);

	o = valid_order("x");
	set(o, "orderItems[0]", "productId", json_string("nope"));
	post_bad(o, "order.orderItems[0].productId", "GUID");

	o = valid_order("x");
	set(o, "orderItems[0]", "productId", json_string(NIL_GUID));
	post_bad(o, "order.orderItems[0].productId", "empty");

	o = valid_order("x");
	set(o, "", "customerId", json_string("not-a-guid"));
	post_bad(o, "order.customerId", "GUID");

	o = valid_order("x");
	set(o, "", "customerId", json_string(NIL_GUID));
	post_bad(o, "order.customerId", "empty");

	o = valid_order("x");
	set(o, "", "customerId", NULL);
	post_bad(o, "order.customerId", "required");

	o = valid_order("x");
	set(o, "", "orderItems", json_array());
	post_bad(o, "order.orderItems", "OrderItems should not be empty");

	o = valid_order("x");
	set(o, "", "orderItems", NULL);
	post_bad(o, "order.orderItems", "OrderItems should not be empty");

	o = valid_order("x");
	set(o, "", "orderItems", json_pack("[i]", 1));
	post_bad(o, "order.orderItems[0]", "object");

	o = valid_order("x");
	memset(name, 'n', 51);
	name[51] = '\0';
	set(o, "shippingAddress", "firstName", json_string(name));
	post_bad(o, "order.shippingAddress.firstName", "50");

	/* More items than an order may hold. */
	o = valid_order("x");
	{
		json_t *items = json_array();

		for (int i = 0; i < 1001; i++)
			json_array_append_new(
			    items,
			    json_pack("{s:s, s:i, s:i}", "productId", IPHONE_ID,
			              "quantity", 1, "price", 1));
		set(o, "", "orderItems", items);
	}
	post_bad(o, "order.orderItems", "at most 1000");

	/* Total past 18 digits: 2 × 9999999999999999.99. */
	o = valid_order("x");
	set(o, "orderItems[0]", "price", json_string("@@9999999999999999.99"));
	set(o, "orderItems[0]", "quantity", json_integer(2));
	post_bad(o, "order.orderItems", "digits");
}
END_TEST

START_TEST(test_post_all_errors)
{
	json_t *o = valid_order(" ");

	/* Every error at once, not only the first. */
	set(o, "payment", "cvv", json_string("12345"));
	set(o, "shippingAddress", "zipCode", json_string("1234567"));
	set(o, "billingAddress", "emailAddress", json_string(""));
	set(o, "orderItems[0]", "quantity", json_integer(0));
	set(o, "orderItems[1]", "price", json_string("@@1.005"));
	set(o, "", "customerId", json_string("x"));
	ck_assert_int_eq(post(o, NULL), 400);
	ck_assert_verr("order.orderName", NULL);
	ck_assert_verr("order.payment.cvv", NULL);
	ck_assert_verr("order.shippingAddress.zipCode", NULL);
	ck_assert_verr("order.billingAddress.emailAddress", NULL);
	ck_assert_verr("order.orderItems[0].quantity", NULL);
	ck_assert_verr("order.orderItems[1].price", NULL);
	ck_assert_verr("order.customerId", NULL);
	/* And each only once. */
	ck_assert_uint_eq(R.nverrs, 7);
}
END_TEST

START_TEST(test_post_characters)
{
	/* Bounds count characters, not bytes: 50 two-byte letters fit. */
	char name[128] = "";
	json_t *o = valid_order("unicode");

	for (int i = 0; i < 50; i++)
		strcat(name, "\xc3\xa9"); /* é */
	set(o, "shippingAddress", "firstName", json_string(name));
	set(o, "shippingAddress", "zipCode",
	    json_string("\xc3\xa9"
	                "1234"));
	ck_assert_int_eq(post(o, NULL), 201);

	o = valid_order("unicode");
	strcat(name, "\xc3\xa9");
	set(o, "shippingAddress", "firstName", json_string(name));
	post_bad(o, "order.shippingAddress.firstName", "50");
}
END_TEST

START_TEST(test_post_malformed)
{
	ck_assert_int_eq(call(HTTP_POST, "/orders", "{\"order\": {"), 400);
	ck_assert_uint_ge(R.nverrs, 1);
	ck_assert_int_eq(call(HTTP_POST, "/orders", NULL), 400);
	ck_assert_int_eq(call(HTTP_POST, "/orders", "{}"), 400);
	ck_assert_verr("order", "required");
	ck_assert_int_eq(call(HTTP_POST, "/orders", "{\"order\": []}"), 400);
	ck_assert_verr("order", "object");
	ck_assert_int_eq(order_count(), 2);
}
END_TEST

/* ---- PUT and DELETE --------------------------------------------------- */

START_TEST(test_put)
{
	json_t *o = valid_order("ORD_1-renamed"), *got, *a;
	char *body;

	set(o, "", "id", json_string(ORD_1_ID));
	set(o, "", "status", json_integer(3));
	set(o, "", "orderItems", json_array()); /* items are not updated */
	set(o, "", "customerId", json_string(CUSTOMER)); /* nor the customer */
	body = dump(o);
	ck_assert_int_eq(call(HTTP_PUT, "/orders", body), 200);
	free(body);
	ck_assert(json_is_true(json_object_get(R.body, "isSuccess")));

	got = find_by_name("ORD_1-renamed");
	ck_assert_str_eq(str(got, "id"), ORD_1_ID);
	ck_assert_str_eq(str(got, "customerId"), MEHMET);
	ck_assert_int_eq(num(got, "status"), 3);
	a = json_object_get(got, "shippingAddress");
	ck_assert_str_eq(str(a, "firstName"), "Ada");
	ck_assert_str_eq(str(a, "zipCode"), "SW1Y4");
	ck_assert(json_is_null(
	    json_object_get(json_object_get(got, "payment"), "cvv")));
	ck_assert_int_eq(cvv_rows(), 0);
	ck_assert_int_eq(json_array_size(json_object_get(got, "orderItems")),
	                 2);
	ck_assert_int_eq(money(got, "totalPrice"), 140000);
	json_decref(got);
	ck_assert_int_eq(order_count(), 2);
}
END_TEST

START_TEST(test_put_errors)
{
	const char *unknown = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
	json_t *o;
	char *body;

	o = valid_order("ghost");
	set(o, "", "id", json_string(unknown));
	body = dump(o);
	ck_assert_int_eq(call(HTTP_PUT, "/orders", body), 404);
	free(body);
	ck_assert_str_eq(R.title, "OrderNotFoundException");
	ck_assert_str_eq(R.detail, "Entity \"Order\" "
	                           "(3f2504e0-4f89-41d3-9a0c-0305e82c3301) "
	                           "was not found.");

	o = valid_order("ORD_1");
	set(o, "", "id", json_string(ORD_1_ID));
	set(o, "", "status", json_integer(7));
	set(o, "payment", "cvv", json_string("9999"));
	body = dump(o);
	ck_assert_int_eq(call(HTTP_PUT, "/orders", body), 400);
	free(body);
	ck_assert_verr("order.status", NULL);
	ck_assert_verr("order.payment.cvv", NULL);

	o = valid_order("ORD_1");
	set(o, "", "id", NULL);
	body = dump(o);
	ck_assert_int_eq(call(HTTP_PUT, "/orders", body), 400);
	free(body);
	ck_assert_verr("order.id", "required");

	/* Nothing changed. */
	o = find_by_name("ORD_1");
	ck_assert_int_eq(num(o, "status"), 2);
	ck_assert(json_is_null(
	    json_object_get(json_object_get(o, "payment"), "cvv")));
	json_decref(o);
}
END_TEST

/* item_rows counts ORD_1's rows in order_items with a connection of its
 * own (WAL lets it read beside the module's). */
static int
item_rows(const char *order_id)
{
	char path[300];
	sqlite3 *db;
	sqlite3_stmt *s;
	int n = -1;

	snprintf(path, sizeof(path), "%s/ordering.db", E.dir);
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(
	    sqlite3_prepare_v2(
	        db, "SELECT COUNT(*) FROM order_items WHERE order_id = ?", -1,
	        &s, NULL),
	    SQLITE_OK);
	sqlite3_bind_text(s, 1, order_id, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return n;
}

START_TEST(test_delete)
{
	ck_assert_int_eq(call(HTTP_DELETE, "/orders/not-a-guid", NULL), 400);
	ck_assert_verr("id", "GUID");
	ck_assert_int_eq(call(HTTP_DELETE,
	                      "/orders/3f2504e0-4f89-41d3-9a0c-0305e82c3301",
	                      NULL),
	                 404);
	ck_assert_str_eq(R.title, "OrderNotFoundException");
	ck_assert_int_eq(order_count(), 2);

	ck_assert_int_eq(item_rows(ORD_1_ID), 2);
	ck_assert_int_eq(call(HTTP_DELETE, "/orders/" ORD_1_ID, NULL), 200);
	ck_assert(json_is_true(json_object_get(R.body, "isSuccess")));
	ck_assert_int_eq(order_count(), 1);
	ck_assert_int_eq(item_rows(ORD_1_ID), 0); /* ON DELETE CASCADE */
	ck_assert_int_eq(call(HTTP_DELETE, "/orders/" ORD_1_ID, NULL), 404);
	/* Upper case is the same order. */
	ck_assert_int_eq(call(HTTP_DELETE,
	                      "/orders/955E3896-8714-4D5B-B0B4-A21E0B857D02",
	                      NULL),
	                 200);
	ck_assert_int_eq(order_count(), 0);
}
END_TEST

START_TEST(test_seed_once)
{
	ck_assert_int_eq(call(HTTP_DELETE, "/orders/" ORD_1_ID, NULL), 200);
	ck_assert_int_eq(post(valid_order("kept"), NULL), 201);
	down();
	up();
	/* Reopened: ORD_1 stays deleted, the new order is there. */
	ck_assert_int_eq(order_count(), 2);
	ck_assert_int_eq(call(HTTP_GET, "/orders/ORD_1", NULL), 200);
	ck_assert_int_eq(json_array_size(orders()), 0);
	json_decref(find_by_name("kept"));
}
END_TEST

/* ---- the checkout consumer -------------------------------------------- */

struct waiter {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool done;
	int rc;
};

static void
published(struct bus_event *ev, int rc)
{
	struct waiter *w = ev->arg;

	pthread_mutex_lock(&w->mtx);
	w->rc = rc;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mtx);
}

/* publish sends |e| as event |id| through the bus and waits (10 s at
 * most) for the consumer's verdict, which it returns. */
static int
publish(const Monoshop__Events__BasketCheckoutEvent *e, const char *id)
{
	struct waiter w = {.done = false};
	struct bus_event ev = {0};
	pthread_condattr_t ca;
	struct timespec deadline;
	size_t len =
	    monoshop__events__basket_checkout_event__get_packed_size(e);
	uint8_t *buf = malloc(len ? len : 1);

	ck_assert_ptr_nonnull(buf);
	monoshop__events__basket_checkout_event__pack(e, buf);
	pthread_mutex_init(&w.mtx, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w.cv, &ca);
	pthread_condattr_destroy(&ca);

	ms_strlcpy(ev.id, id, sizeof(ev.id));
	ev.type = monoshop__events__basket_checkout_event__descriptor.name;
	ev.payload = buf;
	ev.len = len;
	ev.occurred_ms = ms_wall_ms();
	ev.attempt = 1;
	ev.done = published;
	ev.arg = &w;
	ck_assert_int_eq(bus_publish(E.bus, &ev), 0);

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += 10;
	pthread_mutex_lock(&w.mtx);
	while (!w.done && pthread_cond_timedwait(&w.cv, &w.mtx, &deadline) == 0)
		;
	pthread_mutex_unlock(&w.mtx);
	ck_assert_msg(w.done, "event %s: no verdict within 10 s", id);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mtx);
	free(buf);
	return w.rc;
}

static Monoshop__Events__BasketCheckoutItem ITEMS[2];
static Monoshop__Events__BasketCheckoutItem *ITEMP[2] = {&ITEMS[0], &ITEMS[1]};

/* checkout fills a valid event for user |user| with two items. */
static void
checkout(Monoshop__Events__BasketCheckoutEvent *e, const char *id,
         const char *user)
{
	monoshop__events__basket_checkout_event__init(e);
	for (int i = 0; i < 2; i++)
		monoshop__events__basket_checkout_item__init(&ITEMS[i]);
	ITEMS[0].productid = (char *)IPHONE_ID;
	ITEMS[0].productname = (char *)"IPhone X";
	ITEMS[0].quantity = 2;
	ITEMS[0].price = (char *)"350.00";
	ITEMS[1].productid = (char *)"C67D6323-E8B1-4BDF-9A75-B0D0D2E7E914";
	ITEMS[1].productname = (char *)"Samsung 10";
	ITEMS[1].quantity = 1;
	ITEMS[1].price = (char *)"300.5";
	e->id = (char *)id;
	e->occurredon = (char *)"2026-11-29T05:40:01.123Z";
	e->username = (char *)user;
	e->customerid = (char *)CUSTOMER;
	e->totalprice = (char *)"1000.50";
	e->firstname = (char *)"swn";
	e->lastname = (char *)"doe";
	e->emailaddress = (char *)"swn@example.com";
	e->addressline = (char *)"Bahcelievler";
	e->country = (char *)"Turkey";
	e->state = (char *)"Istanbul";
	e->zipcode = (char *)"34000";
	e->cardname = (char *)"swn";
	e->cardnumber = (char *)"5555555555554444";
	e->expiration = (char *)"12/28";
	e->cvv = (char *)"123";
	e->paymentmethod = 1;
	e->n_items = 2;
	e->items = ITEMP;
}

/* orders_of returns how many orders are named |user| exactly. */
static size_t
orders_of(const char *user)
{
	char path[256];
	json_t *o;
	size_t i, n = 0;

	snprintf(path, sizeof(path), "/orders/%s", user);
	ck_assert_int_eq(call(HTTP_GET, path, NULL), 200);
	json_array_foreach (orders(), i, o) {
		if (strcmp(str(o, "orderName"), user) == 0)
			n++;
	}
	return n;
}

START_TEST(test_event_creates_order_once)
{
	const char *id = "6f9619ff-8b86-4d01-b42d-00cf4fc964ff";
	Monoshop__Events__BasketCheckoutEvent e;
	json_t *o, *items, *a;

	checkout(&e, id, "swn");
	ck_assert_int_eq(publish(&e, id), 0);
	ck_assert_uint_eq(orders_of("swn"), 1);

	o = find_by_name("swn");
	ck_assert_str_eq(str(o, "customerId"), CUSTOMER);
	ck_assert_int_eq(num(o, "status"), 2);
	/* The items' total (2 × 350 + 300.50), not the event's. */
	ck_assert_int_eq(money(o, "totalPrice"), 100050);
	a = json_object_get(o, "shippingAddress");
	ck_assert_str_eq(str(a, "firstName"), "swn");
	ck_assert_str_eq(str(a, "zipCode"), "34000");
	ck_assert(json_equal(a, json_object_get(o, "billingAddress")));
	ck_assert_str_eq(str(json_object_get(o, "payment"), "cardNumber"),
	                 "5555555555554444");
	/* The event's CVV made it through the rules, not into the table. */
	ck_assert(json_is_null(
	    json_object_get(json_object_get(o, "payment"), "cvv")));
	ck_assert_int_eq(cvv_rows(), 0);
	items = json_object_get(o, "orderItems");
	ck_assert_int_eq(json_array_size(items), 2);
	ck_assert_str_eq(str(json_array_get(items, 1), "productId"),
	                 SAMSUNG_ID); /* normalized */
	ck_assert_int_eq(money(json_array_get(items, 1), "price"), 30050);
	json_decref(o);

	/* Delivered again (a redelivery, a duplicate publish): acknowledged,
	 * and still one order. */
	ck_assert_int_eq(publish(&e, id), 0);
	ck_assert_int_eq(publish(&e, id), 0);
	ck_assert_uint_eq(orders_of("swn"), 1);

	/* Another checkout of the same user is another order. */
	ck_assert_int_eq(publish(&e, "7a1c3a51-1d4e-4c65-9d39-3a3b1c0e6e01"),
	                 0);
	ck_assert_uint_eq(orders_of("swn"), 2);
}
END_TEST

START_TEST(test_event_poison)
{
	Monoshop__Events__BasketCheckoutEvent e;
	int64_t before = order_count();
	const char *id = "0c3f8e55-2a1b-4e6b-8f7a-5d1e2c3b4a01";
	int rc;

	checkout(&e, id, "bad-cvv");
	e.cvv = (char *)"1234";
	rc = publish(&e, id);
	ck_assert_int_eq(rc, MS_EINVAL);
	ck_assert_int_eq(order_count(), before);
	/* Not claimed: the same id with the CVV fixed goes through. */
	e.cvv = (char *)"123";
	ck_assert_int_eq(publish(&e, id), 0);
	ck_assert_uint_eq(orders_of("bad-cvv"), 1);
	before++;

	checkout(&e, "0c3f8e55-2a1b-4e6b-8f7a-5d1e2c3b4a02", "bad-price");
	ITEMS[0].price = (char *)"1.005";
	ck_assert_int_eq(publish(&e, "0c3f8e55-2a1b-4e6b-8f7a-5d1e2c3b4a02"),
	                 MS_EINVAL);

	checkout(&e, "0c3f8e55-2a1b-4e6b-8f7a-5d1e2c3b4a06", "neg-price");
	ITEMS[0].price = (char *)"-1.00";
	ck_assert_int_eq(publish(&e, "0c3f8e55-2a1b-4e6b-8f7a-5d1e2c3b4a06"),
	                 MS_EINVAL);

	checkout(&e, "0c3f8e55-2a1b-4e6b-8f7a-5d1e2c3b4a03", "bad-zip");
	e.zipcode = (char *)"340000";
	e.customerid = (char *)"not-a-guid";
	ITEMS[1].quantity = 0;
	ck_assert_int_eq(publish(&e, "0c3f8e55-2a1b-4e6b-8f7a-5d1e2c3b4a03"),
	                 MS_EINVAL);

	checkout(&e, "0c3f8e55-2a1b-4e6b-8f7a-5d1e2c3b4a04", "");
	ck_assert_int_eq(publish(&e, "0c3f8e55-2a1b-4e6b-8f7a-5d1e2c3b4a04"),
	                 MS_EINVAL);

	checkout(&e, "0c3f8e55-2a1b-4e6b-8f7a-5d1e2c3b4a05", "nil-customer");
	e.customerid = (char *)NIL_GUID;
	ck_assert_int_eq(publish(&e, "0c3f8e55-2a1b-4e6b-8f7a-5d1e2c3b4a05"),
	                 MS_EINVAL);

	ck_assert_int_eq(order_count(), before);
}
END_TEST

START_TEST(test_event_free_item)
{
	/* Basket's coupon can take an item to 0 (never below): that
	 * checkout is still an order, unlike a POST /orders item at 0. */
	const char *id = "5d0c8a9e-3b7f-4f21-9c55-7e0f1a2b3c4d";
	Monoshop__Events__BasketCheckoutEvent e;
	json_t *o;

	checkout(&e, id, "free-item");
	ITEMS[1].price = (char *)"0.00";
	ck_assert_int_eq(publish(&e, id), 0);
	ck_assert_uint_eq(orders_of("free-item"), 1);
	o = find_by_name("free-item");
	ck_assert_int_eq(money(o, "totalPrice"), 70000);
	ck_assert_int_eq(
	    money(json_array_get(json_object_get(o, "orderItems"), 1), "price"),
	    0);
	json_decref(o);
}
END_TEST

START_TEST(test_event_without_items)
{
	/* As the original .NET Basket sends it: no items. The order keeps
	 * the event's total. */
	const char *id = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
	Monoshop__Events__BasketCheckoutEvent e;
	json_t *o;

	checkout(&e, id, "dotnet-user");
	e.n_items = 0;
	e.items = NULL;
	e.totalprice = (char *)"1400.00";
	ck_assert_int_eq(publish(&e, id), 0);
	o = find_by_name("dotnet-user");
	ck_assert_int_eq(money(o, "totalPrice"), 140000);
	ck_assert_int_eq(json_array_size(json_object_get(o, "orderItems")), 0);
	json_decref(o);

	/* A total that is not money is poison. */
	checkout(&e, "1b4e28ba-2fa1-41d2-883f-0016d3cca428", "dotnet-bad");
	e.n_items = 0;
	e.items = NULL;
	e.totalprice = (char *)"14.001";
	ck_assert_int_eq(publish(&e, "1b4e28ba-2fa1-41d2-883f-0016d3cca428"),
	                 MS_EINVAL);
	e.totalprice = (char *)"-1";
	ck_assert_int_eq(publish(&e, "1b4e28ba-2fa1-41d2-883f-0016d3cca428"),
	                 MS_EINVAL);
	ck_assert_uint_eq(orders_of("dotnet-bad"), 0);
}
END_TEST

/* One delivery racing its own duplicates, as a broker redelivering while
 * the first delivery is still being handled would: bus_deliver on several
 * threads at once, the way transports call it. */
struct racer {
	pthread_t thread;
	const struct bus_event *ev;
	int rc;
};

static void *
race(void *arg)
{
	struct racer *r = arg;

	r->rc = bus_deliver(E.bus, r->ev);
	return NULL;
}

START_TEST(test_event_concurrent_duplicates)
{
	const char *id = "2c1d7f4e-6a3b-4f8e-9d2c-7b6a5e4d3c21";
	Monoshop__Events__BasketCheckoutEvent e;
	struct racer racers[8];
	struct bus_event ev = {0};
	size_t len;
	uint8_t *buf;

	checkout(&e, id, "racer");
	len = monoshop__events__basket_checkout_event__get_packed_size(&e);
	buf = malloc(len);
	ck_assert_ptr_nonnull(buf);
	monoshop__events__basket_checkout_event__pack(&e, buf);
	ms_strlcpy(ev.id, id, sizeof(ev.id));
	ev.type = monoshop__events__basket_checkout_event__descriptor.name;
	ev.payload = buf;
	ev.len = len;
	ev.attempt = 1;
	for (size_t i = 0; i < 8; i++) {
		racers[i].ev = &ev;
		ck_assert_int_eq(
		    pthread_create(&racers[i].thread, NULL, race, &racers[i]),
		    0);
	}
	for (size_t i = 0; i < 8; i++) {
		pthread_join(racers[i].thread, NULL);
		ck_assert_int_eq(racers[i].rc, 0);
	}
	free(buf);
	ck_assert_uint_eq(orders_of("racer"), 1);
}
END_TEST

/* ---- health ----------------------------------------------------------- */

static int
health_of(const char *name, const char **tags)
{
	struct ms_health_result res[MS_HEALTH_MAX_CHECKS];
	int healthy = 0;
	size_t n = ms_health_run(res, MS_HEALTH_MAX_CHECKS, &healthy);

	for (size_t i = 0; i < n; i++) {
		if (strcmp(res[i].name, name) == 0) {
			if (tags)
				*tags = res[i].tags;
			return res[i].rc;
		}
	}
	return 1;
}

START_TEST(test_health)
{
	const char *tags = NULL;

	ck_assert_int_eq(health_of("ordering", &tags), 0);
	ck_assert_str_eq(tags, "module");
	ck_assert_int_eq(health_of("orderingdb", &tags), 0);
	ck_assert_str_eq(tags, "database");
	ordering_module.stop(E.ordering);
	ck_assert_int_ne(health_of("ordering", NULL), 0);
	down();
	ck_assert_int_eq(health_of("ordering", NULL), 1);
	ck_assert_int_eq(health_of("orderingdb", NULL), 1);
	up();
}
END_TEST

static Suite *
ordering_suite(void)
{
	Suite *s = suite_create("ordering");
	TCase *rest = tcase_create("rest");
	TCase *events = tcase_create("events");

	tcase_add_checked_fixture(rest, setup, teardown);
	tcase_add_test(rest, test_seed);
	tcase_add_test(rest, test_paging);
	tcase_add_test(rest, test_paging_invalid);
	tcase_add_test(rest, test_by_name);
	tcase_add_test(rest, test_by_customer);
	tcase_add_test(rest, test_post);
	tcase_add_test(rest, test_post_case_insensitive_and_optional);
	tcase_add_test(rest, test_post_rules);
	tcase_add_test(rest, test_post_all_errors);
	tcase_add_test(rest, test_post_characters);
	tcase_add_test(rest, test_post_malformed);
	tcase_add_test(rest, test_put);
	tcase_add_test(rest, test_put_errors);
	tcase_add_test(rest, test_delete);
	tcase_add_test(rest, test_seed_once);
	tcase_add_test(rest, test_health);
	suite_add_tcase(s, rest);

	tcase_add_checked_fixture(events, setup, teardown);
	tcase_add_test(events, test_event_creates_order_once);
	tcase_add_test(events, test_event_poison);
	tcase_add_test(events, test_event_free_item);
	tcase_add_test(events, test_event_without_items);
	tcase_add_test(events, test_event_concurrent_duplicates);
	suite_add_tcase(s, events);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(ordering_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
