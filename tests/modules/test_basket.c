/* SPDX-License-Identifier: MIT */
/*
 * Tests of the Basket module through its REST handlers, with no sockets: a
 * real bus and router, the real Discount module for coupons (or, where a
 * test needs to count calls or make them fail, a DiscountProtoService
 * served by the test itself), each route reached through http_router_match
 * and called with a hand-built struct http_req.
 *
 * Covered: coupons applied once and never twice, the floor at 0, one
 * Discount call per distinct product, validation (every error reported, with
 * its JSON path), 404s, DELETE, checkout (atomic: the basket is gone and
 * exactly one outbox row holds the event, with the server's total), and a
 * Discount that is down, times out or rejects a request.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus/bus_core.h"
#include "bus/relay.h"
#include "core/config.h"
#include "core/err.h"
#include "core/health.h"
#include "core/trace.h"
#include "core/util.h"
#include "discount.pb-c.h"
#include "events.pb-c.h"
#include "http/http.h"
#include "http/json.h"
#include "modules/module.h"
#include "store/store.h"
#include "support/tmpdir.h"

#define IPHONE_ID   "5334c996-8457-4cf0-815c-ed2b77c4ff61"
#define PIXEL_ID    "c67d6323-e8b1-4bdf-9a75-b0d0d2e7e914"
#define SAMSUNG_ID  "4f136e9f-ff8c-4c1f-9a33-d12f689bdab8"
#define CUSTOMER    "58c49479-ec65-4de2-86e7-033c546291aa"
#define TRACEPARENT "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

/* ---- the environment each test runs in -------------------------------- */

enum discount_kind {
	DISCOUNT_REAL, /* the Discount module, seeded */
	DISCOUNT_NONE, /* nothing serves DiscountProtoService */
	DISCOUNT_FAKE, /* the test's own service (counts, fails on demand) */
};

static struct {
	char dir[256];
	struct ms_config *cfg;
	struct bus *bus;
	struct http_router *router;
	struct module_ctx ctx;
	void *discount;
	void *basket;
	void *ordering;          /* only with setup_ordering */
	struct bus_relay *relay; /* only with setup_ordering */
} E;

static struct http_resp R; /* the last response; its body is ours */

/* The fake Discount: coupons for two products, a negative one to check it
 * is ignored, a call counter, and an error to return on demand. */
static atomic_int fake_calls;
static int fake_rc;

static int
fake_get(void *ctx, struct bus_rpc *rpc, const ProtobufCMessage *req,
         ProtobufCMessage *reply)
{
	const Discount__GetDiscountRequest *r =
	    (const Discount__GetDiscountRequest *)req;
	Discount__CouponModel *c = (Discount__CouponModel *)reply;

	(void)ctx;
	atomic_fetch_add(&fake_calls, 1);
	if (fake_rc != 0) {
		return bus_rpc_error(rpc, fake_rc, "fake discount says %s",
		                     ms_errname(fake_rc));
	}
	c->productname = r->productname;
	if (strcmp(r->productname, "IPhone X") == 0) {
		c->id = 1;
		c->amount = 150;
	} else if (strcmp(r->productname, "Samsung 10") == 0) {
		c->id = 2;
		c->amount = 100;
	} else if (strcmp(r->productname, "Cursed") == 0) {
		c->id = 3;
		c->amount = -20;
	} else {
		c->description = "No Discount";
	}
	return 0;
}

static const bus_handler_fn fake_handlers[4] = {fake_get, NULL, NULL, NULL};

static void
env_up(enum discount_kind kind, bool ordering)
{
	char err[256] = "";

	memset(&E, 0, sizeof(E));
	memset(&R, 0, sizeof(R));
	atomic_store(&fake_calls, 0);
	fake_rc = 0;
	ck_assert_int_eq(test_tmpdir(E.dir, sizeof(E.dir)), 0);
	ck_assert_int_eq(ms_config_create(&E.cfg), 0);
	/* Serving Discount opens grpc.listen: not the default port, which
	 * another program may hold. */
	ck_assert_int_eq(
	    ms_config_set(E.cfg, "grpc.listen=127.0.0.1:0", "test", NULL, 0),
	    0);
	ck_assert_int_eq(bus_create(&E.bus, E.cfg), 0);
	ck_assert_int_eq(http_router_create(&E.router), 0);
	E.ctx.bus = E.bus;
	E.ctx.cfg = E.cfg;
	E.ctx.router = E.router;
	E.ctx.data_dir = E.dir;
	if (kind == DISCOUNT_REAL) {
		ck_assert_int_eq(discount_module.init(&E.ctx, &E.discount), 0);
	} else if (kind == DISCOUNT_FAKE) {
		ck_assert_int_eq(
		    bus_serve(E.bus,
		              &discount__discount_proto_service__descriptor,
		              fake_handlers, NULL),
		    0);
	}
	if (ordering) {
		ck_assert_int_eq(ordering_module.init(&E.ctx, &E.ordering), 0);
	}
	ck_assert_int_eq(basket_module.init(&E.ctx, &E.basket), 0);
	ck_assert_ptr_nonnull(E.basket);
	ck_assert_ptr_nonnull(E.ctx.outbox_store);
	/*
	 * main.c declares every module's calls with bus_require, and then
	 * bus_start refuses a Discount that is neither hosted nor remote.
	 * DISCOUNT_NONE skips the declaration on purpose, to start a bus on
	 * which every GetDiscount fails (MS_EUNAVAIL, "no route").
	 */
	if (kind != DISCOUNT_NONE) {
		for (const char *const(*c)[2] = basket_module.calls; (*c)[0];
		     c++) {
			ck_assert_int_eq(bus_require(E.bus, (*c)[0], (*c)[1]),
			                 0);
		}
	}
	ck_assert_msg(bus_start(E.bus, err, sizeof(err)) == 0, "%s", err);
	if (ordering) {
		struct bus_relay_opts opts = {.batch = 8, .poll_ms = 50};

		ck_assert_int_eq(
		    bus_relay_start(&E.relay, E.bus, E.ctx.outbox_store, &opts),
		    0);
	}
}

static void
env_down(void)
{
	json_decref(R.body);
	R.body = NULL;
	bus_relay_stop(E.relay);
	bus_stop(E.bus);
	basket_module.stop(E.basket);
	basket_module.fini(E.basket);
	if (E.discount != NULL) {
		discount_module.stop(E.discount);
		discount_module.fini(E.discount);
	}
	if (E.ordering != NULL) {
		ordering_module.stop(E.ordering);
		ordering_module.fini(E.ordering);
	}
	bus_destroy(E.bus);
	http_router_destroy(E.router);
	ms_config_destroy(E.cfg);
	test_rmdir(E.dir);
}

static void
setup_real(void)
{
	env_up(DISCOUNT_REAL, false);
}

static void
setup_ordering(void)
{
	env_up(DISCOUNT_REAL, true);
}

static void
setup_none(void)
{
	env_up(DISCOUNT_NONE, false);
}

static void
setup_fake(void)
{
	env_up(DISCOUNT_FAKE, false);
}

/* ---- calling routes --------------------------------------------------- */

/* What the edge hands handlers as the request's trace (the REST server
 * always sets one; NULL here tests the handler's fallback). */
static const char *req_traceparent = TRACEPARENT;

/*
 * call_into runs |method| |path| with |body| (may be NULL) through the
 * router and the handler, as the HTTP edge would, leaving the response in
 * |resp| (whose previous body it releases). Returns the HTTP status the
 * edge would answer. Thread safe, as handlers are.
 */
static int
call_into(struct http_resp *resp, enum http_method method, const char *path,
          const char *body)
{
	char params[HTTP_MAX_PARAMS][256];
	struct http_match m;
	struct http_req req = {0};
	int rc;

	json_decref(resp->body);
	memset(resp, 0, sizeof(*resp));
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
	req.traceparent = req_traceparent;
	req.trace_id = "test";
	rc = m.fn(m.ctx, &req, resp);
	if (rc != 0) {
		ck_assert_ptr_null(resp->body);
		return ms_err_http(rc);
	}
	ck_assert_ptr_nonnull(resp->body);
	return resp->status;
}

/* call is call_into with the test's own response, R. */
static int
call(enum http_method method, const char *path, const char *body)
{
	return call_into(&R, method, path, body);
}

/* has_verr tells whether R has a validation error on |prop| whose message
 * contains |msg| (any message when NULL). */
static bool
has_verr(const char *prop, const char *msg)
{
	for (size_t i = 0; i < R.nverrs; i++) {
		if (strcmp(R.verrs[i].property, prop) == 0 &&
		    (msg == NULL || strstr(R.verrs[i].message, msg) != NULL)) {
			return true;
		}
	}
	return false;
}

static void
dump_verrs(void)
{
	for (size_t i = 0; i < R.nverrs; i++) {
		fprintf(stderr, "  %s: %s\n", R.verrs[i].property,
		        R.verrs[i].message);
	}
}

#define ck_assert_verr(prop, msg)                                              \
	do {                                                                   \
		if (!has_verr(prop, msg)) {                                    \
			dump_verrs();                                          \
		}                                                              \
		ck_assert_msg(has_verr(prop, msg),                             \
		              "no validation error on %s (%s)", prop,          \
		              msg ? msg : "any");                              \
	} while (0)

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

static const json_t *
cart_of_response(void)
{
	const json_t *cart = json_object_get(R.body, "cart");

	ck_assert_ptr_nonnull(cart);
	return cart;
}

static const json_t *
item_of_response(size_t i)
{
	const json_t *items = json_object_get(cart_of_response(), "items");

	ck_assert(json_is_array(items));
	ck_assert_uint_gt(json_array_size(items), i);
	return json_array_get(items, i);
}

static const char *
str_of(const json_t *obj, const char *name)
{
	const json_t *v = json_object_get(obj, name);

	ck_assert_msg(json_is_string(v), "%s is not a string", name);
	return json_string_value(v);
}

/* pending_events returns how many events wait in the basket's outbox. */
static size_t
pending_events(void)
{
	struct store_outbox_row rows[4];
	size_t n = 0;

	ck_assert_int_eq(store_outbox_fetch(E.ctx.outbox_store, 0, rows,
	                                    MS_ARRAY_SIZE(rows), &n),
	                 0);
	for (size_t i = 0; i < n; i++) {
		store_outbox_row_fini(&rows[i]);
	}
	return n;
}

/* The members of a good checkout DTO other than userName and totalPrice.
 * Tests that change one write their own body: a member given twice would
 * be a duplicate key. */
#define CHECKOUT_FIELDS                                                        \
	"\"customerId\":\"" CUSTOMER "\","                                     \
	"\"firstName\":\"John\",\"lastName\":\"Doe\","                         \
	"\"emailAddress\":\"john@example.com\","                               \
	"\"addressLine\":\"Bahcelievler\",\"country\":\"Turkey\","             \
	"\"state\":\"Istanbul\",\"zipCode\":\"34000\","                        \
	"\"cardName\":\"John Doe\",\"cardNumber\":\"5555555555554444\","       \
	"\"expiration\":\"12/28\",\"cvv\":\"123\",\"paymentMethod\":1"

/* ---- storing and reading ---------------------------------------------- */

START_TEST(test_store_applies_coupon)
{
	char *text;

	ck_assert_int_eq(call(HTTP_POST, "/basket",
	                      "{\"cart\":{\"userName\":\"swn\",\"items\":["
	                      "{\"quantity\":2,\"color\":\"Red\",\"price\":500,"
	                      "\"productId\":\"" IPHONE_ID "\","
	                      "\"productName\":\"IPhone X\"}]}}"),
	                 201);
	ck_assert_str_eq(R.location, "/basket/swn");
	ck_assert_str_eq(str_of(R.body, "userName"), "swn");

	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 200);
	ck_assert_str_eq(str_of(cart_of_response(), "userName"), "swn");
	ck_assert_int_eq(money(item_of_response(0), "price"), 35000);
	ck_assert_int_eq(json_integer_value(
	                     json_object_get(item_of_response(0), "quantity")),
	                 2);
	ck_assert_str_eq(str_of(item_of_response(0), "color"), "Red");
	ck_assert_str_eq(str_of(item_of_response(0), "productId"), IPHONE_ID);
	ck_assert_str_eq(str_of(item_of_response(0), "productName"),
	                 "IPhone X");
	ck_assert_int_eq(money(cart_of_response(), "totalPrice"), 70000);

	/* Money goes out as bare exact numbers. */
	text = http_json_dump(R.body, NULL);
	ck_assert_ptr_nonnull(text);
	ck_assert_ptr_nonnull(strstr(text, "\"price\":350"));
	ck_assert_ptr_nonnull(strstr(text, "\"totalPrice\":700"));
	free(text);
}
END_TEST

START_TEST(test_store_get_result_again_is_not_discounted_twice)
{
	char *again;
	json_t *req;

	ck_assert_int_eq(call(HTTP_POST, "/basket",
	                      "{\"cart\":{\"userName\":\"swn\",\"items\":["
	                      "{\"quantity\":2,\"color\":\"Red\",\"price\":500,"
	                      "\"productId\":\"" IPHONE_ID "\","
	                      "\"productName\":\"IPhone X\"}]}}"),
	                 201);
	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 200);

	/* What a web client does: take the cart GET returned, append an
	 * item, POST it all back. */
	req = json_deep_copy(R.body);
	ck_assert_ptr_nonnull(req);
	ck_assert_int_eq(
	    json_array_append_new(
	        json_object_get(json_object_get(req, "cart"), "items"),
	        json_pack("{s:i,s:s,s:o,s:s,s:s}", "quantity", 3, "color",
	                  "Black", "price", http_json_money_new(1999),
	                  "productId", PIXEL_ID, "productName", "Pixel 8")),
	    0);
	again = http_json_dump(req, NULL);
	json_decref(req);
	ck_assert_ptr_nonnull(again);
	ck_assert_int_eq(call(HTTP_POST, "/basket", again), 201);
	free(again);

	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 200);
	ck_assert_int_eq(money(item_of_response(0), "price"), 35000);
	/* No coupon for this product: its price is kept. */
	ck_assert_int_eq(money(item_of_response(1), "price"), 1999);
	ck_assert_str_eq(str_of(item_of_response(1), "productName"), "Pixel 8");
	ck_assert_int_eq(money(cart_of_response(), "totalPrice"),
	                 2 * 35000 + 3 * 1999);

	/* And a third time, unchanged. */
	again = http_json_dump(R.body, NULL);
	ck_assert_int_eq(call(HTTP_POST, "/basket", again), 201);
	free(again);
	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 200);
	ck_assert_int_eq(money(item_of_response(0), "price"), 35000);
	ck_assert_int_eq(money(cart_of_response(), "totalPrice"),
	                 2 * 35000 + 3 * 1999);

	/* A new list price for the product is discounted again. */
	ck_assert_int_eq(call(HTTP_POST, "/basket",
	                      "{\"cart\":{\"userName\":\"swn\",\"items\":["
	                      "{\"quantity\":1,\"price\":600,"
	                      "\"productId\":\"" IPHONE_ID "\","
	                      "\"productName\":\"IPhone X\"}]}}"),
	                 201);
	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 200);
	ck_assert_int_eq(money(item_of_response(0), "price"), 45000);
	/* color was left out: it reads back as "". */
	ck_assert_str_eq(str_of(item_of_response(0), "color"), "");
}
END_TEST

START_TEST(test_coupon_never_below_zero)
{
	ck_assert_int_eq(call(HTTP_POST, "/basket",
	                      "{\"cart\":{\"userName\":\"swn\",\"items\":["
	                      "{\"quantity\":4,\"color\":null,\"price\":50,"
	                      "\"productId\":\"" SAMSUNG_ID "\","
	                      "\"productName\":\"Samsung 10\"}]}}"),
	                 201);
	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 200);
	ck_assert_int_eq(money(item_of_response(0), "price"), 0);
	ck_assert_int_eq(money(cart_of_response(), "totalPrice"), 0);

	/* A free item still checks out: Ordering accepts items at 0 from
	 * checkout events, so the committed checkout becomes an order. */
	ck_assert_int_eq(
	    call(HTTP_POST, "/basket/checkout",
	         "{\"basketCheckoutDto\":{\"userName\":\"swn\"," CHECKOUT_FIELDS
	         "}}"),
	    200);
	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 404);
	ck_assert_uint_eq(pending_events(), 1);
}
END_TEST

START_TEST(test_empty_cart_and_names)
{
	/* Items may be absent; member names match case-insensitively; a
	 * name with a space is percent-encoded in Location. */
	ck_assert_int_eq(call(HTTP_POST, "/basket",
	                      "{\"Cart\":{\"USERNAME\":\"john doe\"}}"),
	                 201);
	ck_assert_str_eq(R.location, "/basket/john%20doe");
	ck_assert_int_eq(call(HTTP_GET, "/basket/john doe", NULL), 200);
	ck_assert_uint_eq(
	    json_array_size(json_object_get(cart_of_response(), "items")), 0);
	ck_assert_int_eq(money(cart_of_response(), "totalPrice"), 0);
}
END_TEST

START_TEST(test_get_unknown_is_404)
{
	ck_assert_int_eq(call(HTTP_GET, "/basket/nobody", NULL), 404);
	ck_assert_str_eq(R.detail, "Entity \"Basket\" (nobody) was not found.");
	ck_assert_str_eq(R.title, "BasketNotFoundException");
}
END_TEST

START_TEST(test_delete_is_200_twice)
{
	ck_assert_int_eq(call(HTTP_POST, "/basket",
	                      "{\"cart\":{\"userName\":\"swn\",\"items\":["
	                      "{\"quantity\":1,\"price\":10,"
	                      "\"productId\":\"" PIXEL_ID "\","
	                      "\"productName\":\"Pixel 8\"}]}}"),
	                 201);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(call(HTTP_DELETE, "/basket/swn", NULL), 200);
		ck_assert(json_is_true(json_object_get(R.body, "isSuccess")));
	}
	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 404);
}
END_TEST

/* ---- validation ------------------------------------------------------- */

START_TEST(test_validation_cart_required)
{
	ck_assert_int_eq(call(HTTP_POST, "/basket", "{}"), 400);
	ck_assert_verr("cart", "Cart can not be null");
	ck_assert_int_eq(call(HTTP_POST, "/basket", NULL), 400);
	ck_assert_verr("cart", "Cart can not be null");
	ck_assert_int_eq(call(HTTP_POST, "/basket", "{\"cart\":null}"), 400);
	ck_assert_verr("cart", "Cart can not be null");
	ck_assert_int_eq(call(HTTP_POST, "/basket", "{\"cart\":[]}"), 400);
	ck_assert_verr("cart", NULL);
	/* Malformed JSON is a 400 too. */
	ck_assert_int_eq(call(HTTP_POST, "/basket", "{\"cart\":"), 400);
	ck_assert_uint_gt(R.nverrs, 0);
}
END_TEST

START_TEST(test_validation_user_name)
{
	static const char *const bad[] = {
	    "{\"cart\":{\"userName\":\"   \"}}",
	    "{\"cart\":{}}",
	    "{\"cart\":{\"userName\":null}}",
	};

	for (size_t i = 0; i < MS_ARRAY_SIZE(bad); i++) {
		ck_assert_int_eq(call(HTTP_POST, "/basket", bad[i]), 400);
		ck_assert_verr("cart.userName", "UserName is required");
	}
	ck_assert_int_eq(
	    call(HTTP_POST, "/basket", "{\"cart\":{\"userName\":\"a/b\"}}"),
	    400);
	ck_assert_verr("cart.userName", "'/'");
	ck_assert_int_eq(
	    call(HTTP_POST, "/basket", "{\"cart\":{\"userName\":\"a%2F\"}}"),
	    400);
	ck_assert_verr("cart.userName", NULL);
	ck_assert_int_eq(
	    call(HTTP_POST, "/basket", "{\"cart\":{\"userName\":\"..\"}}"),
	    400);
	ck_assert_verr("cart.userName", NULL);
	ck_assert_int_eq(
	    call(HTTP_POST, "/basket", "{\"cart\":{\"userName\":\"a\\tb\"}}"),
	    400);
	ck_assert_verr("cart.userName", NULL);
	ck_assert_int_eq(
	    call(HTTP_POST, "/basket", "{\"cart\":{\"userName\":42}}"), 400);
	ck_assert_verr("cart.userName", NULL);
}
END_TEST

START_TEST(test_validation_user_name_length)
{
	char body[400];
	char name[102];

	memset(name, 'x', 101);
	name[101] = '\0';
	snprintf(body, sizeof(body), "{\"cart\":{\"userName\":\"%s\"}}", name);
	ck_assert_int_eq(call(HTTP_POST, "/basket", body), 400);
	ck_assert_verr("cart.userName", NULL);
	name[100] = '\0';
	snprintf(body, sizeof(body), "{\"cart\":{\"userName\":\"%s\"}}", name);
	ck_assert_int_eq(call(HTTP_POST, "/basket", body), 201);
}
END_TEST

START_TEST(test_validation_items_all_reported)
{
	/* One request, many problems: all are reported, and nothing is
	 * stored. */
	ck_assert_int_eq(
	    call(HTTP_POST, "/basket",
	         "{\"cart\":{\"userName\":\"swn\",\"items\":["
	         "{\"quantity\":1,\"price\":10,\"productId\":\"" PIXEL_ID
	         "\",\"productName\":\"Pixel 8\"},"
	         "{\"quantity\":0,\"price\":1.005,"
	         "\"productId\":\"not-a-guid\",\"productName\":\"\"},"
	         "{\"quantity\":true,\"price\":\"x\",\"productId\":7,"
	         "\"productName\":5,\"color\":[]},"
	         "{\"quantity\":10001,\"price\":-1,"
	         "\"productId\":\"00000000-0000-0000-0000-000000000000\","
	         "\"productName\":\"P\"},"
	         "\"an item\"]}}"),
	    400);
	ck_assert_verr("cart.items[1].quantity", NULL);
	ck_assert_verr("cart.items[1].price", NULL);
	ck_assert_verr("cart.items[1].productId", NULL);
	ck_assert_verr("cart.items[1].productName", NULL);
	ck_assert_verr("cart.items[2].quantity", NULL);
	ck_assert_verr("cart.items[2].price", NULL);
	ck_assert_verr("cart.items[2].productId", NULL);
	ck_assert_verr("cart.items[2].productName", NULL);
	ck_assert_verr("cart.items[2].color", NULL);
	ck_assert_verr("cart.items[3].quantity", NULL);
	ck_assert_verr("cart.items[3].price", NULL);
	ck_assert_verr("cart.items[3].productId", NULL);
	ck_assert_verr("cart.items[4]", NULL);
	ck_assert(!has_verr("cart.items[0].price", NULL));
	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 404);

	ck_assert_int_eq(call(HTTP_POST, "/basket",
	                      "{\"cart\":{\"userName\":\"swn\",\"items\":{}}}"),
	                 400);
	ck_assert_verr("cart.items", NULL);
}
END_TEST

START_TEST(test_validation_bounds)
{
	/* 101 items. */
	size_t cap = 200 * 101 + 100;
	char *body = malloc(cap);
	size_t n;

	ck_assert_ptr_nonnull(body);
	n = (size_t)snprintf(body, cap,
	                     "{\"cart\":{\"userName\":\"swn\",\"items\":[");
	for (int i = 0; i < 101; i++) {
		n += (size_t)snprintf(body + n, cap - n,
		                      "%s{\"quantity\":1,\"price\":1,"
		                      "\"productId\":\"" PIXEL_ID "\","
		                      "\"productName\":\"P\"}",
		                      i ? "," : "");
	}
	snprintf(body + n, cap - n, "]}}");
	ck_assert_int_eq(call(HTTP_POST, "/basket", body), 400);
	ck_assert_verr("cart.items", "at most 100");
	free(body);

	/* A total that no amount can hold. */
	ck_assert_int_eq(
	    call(HTTP_POST, "/basket",
	         "{\"cart\":{\"userName\":\"swn\",\"items\":["
	         "{\"quantity\":10000,\"price\":9999999999999999.99,"
	         "\"productId\":\"" PIXEL_ID "\",\"productName\":\"P\"}]}}"),
	    400);
	ck_assert_verr("cart.items", NULL);
}
END_TEST

/* ---- checkout --------------------------------------------------------- */

START_TEST(test_checkout_unknown_is_404)
{
	ck_assert_int_eq(call(HTTP_POST, "/basket/checkout",
	                      "{\"basketCheckoutDto\":{\"userName\":\"nobody\","
	                      "\"totalPrice\":1," CHECKOUT_FIELDS "}}"),
	                 404);
	ck_assert_str_eq(R.detail, "Entity \"Basket\" (nobody) was not found.");
	ck_assert_uint_eq(pending_events(), 0);
}
END_TEST

START_TEST(test_checkout_validation)
{
	ck_assert_int_eq(call(HTTP_POST, "/basket",
	                      "{\"cart\":{\"userName\":"
	                      "\"swn\"}}"),
	                 201);

	ck_assert_int_eq(call(HTTP_POST, "/basket/checkout", "{}"), 400);
	ck_assert_verr("basketCheckoutDto", "BasketCheckoutDto can't be null");

	ck_assert_int_eq(
	    call(HTTP_POST, "/basket/checkout",
	         "{\"basketCheckoutDto\":{\"userName\":\"\","
	         "\"customerId\":\"00000000-0000-0000-0000-000000000000\","
	         "\"firstName\":\"John\",\"lastName\":\"Doe\","
	         "\"emailAddress\":\"john@example.com\","
	         "\"addressLine\":\"Bahcelievler\",\"zipCode\":\"123456\","
	         "\"cardName\":\"John Doe\",\"cardNumber\":\"5555\","
	         "\"cvv\":\"1234\",\"paymentMethod\":\"card\","
	         "\"totalPrice\":1.001}}"),
	    400);
	ck_assert_verr("basketCheckoutDto.userName", "UserName is required");
	ck_assert_verr("basketCheckoutDto.customerId", NULL);
	ck_assert_verr("basketCheckoutDto.zipCode", NULL);
	ck_assert_verr("basketCheckoutDto.cvv", NULL);
	ck_assert_verr("basketCheckoutDto.paymentMethod", NULL);
	ck_assert_verr("basketCheckoutDto.totalPrice", NULL);
	ck_assert(!has_verr("basketCheckoutDto.firstName", NULL));

	/* Required order fields left out. */
	ck_assert_int_eq(call(HTTP_POST, "/basket/checkout",
	                      "{\"basketCheckoutDto\":{\"userName\":\"swn\"}}"),
	                 400);
	ck_assert_verr("basketCheckoutDto.customerId", NULL);
	ck_assert_verr("basketCheckoutDto.firstName", NULL);
	ck_assert_verr("basketCheckoutDto.lastName", NULL);
	ck_assert_verr("basketCheckoutDto.emailAddress", NULL);
	ck_assert_verr("basketCheckoutDto.addressLine", NULL);
	ck_assert_verr("basketCheckoutDto.zipCode", NULL);
	ck_assert_verr("basketCheckoutDto.cardName", NULL);
	ck_assert_verr("basketCheckoutDto.cardNumber", NULL);
	ck_assert_verr("basketCheckoutDto.cvv", NULL);
	ck_assert(!has_verr("basketCheckoutDto.country", NULL));
	ck_assert(!has_verr("basketCheckoutDto.expiration", NULL));

	/* Control characters, which Ordering refuses in an order. */
	ck_assert_int_eq(
	    call(HTTP_POST, "/basket/checkout",
	         "{\"basketCheckoutDto\":{\"userName\":\"swn\","
	         "\"customerId\":\"" CUSTOMER "\","
	         "\"firstName\":\"John\",\"lastName\":\"Doe\","
	         "\"emailAddress\":\"john@example.com\","
	         "\"addressLine\":\"Line 1\\nLine 2\",\"zipCode\":\"34000\","
	         "\"cardName\":\"John\\tDoe\",\"cardNumber\":\"5555\","
	         "\"cvv\":\"123\"}}"),
	    400);
	ck_assert_verr("basketCheckoutDto.addressLine", "control");
	ck_assert_verr("basketCheckoutDto.cardName", "control");
	ck_assert_uint_eq(R.nverrs, 2);

	/* Nothing happened: the basket is still there, no event. */
	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 200);
	ck_assert_uint_eq(pending_events(), 0);
}
END_TEST

START_TEST(test_checkout_records_one_event)
{
	struct store_outbox_row rows[4];
	Monoshop__Events__BasketCheckoutEvent *ev;
	char tp[MS_TRACEPARENT_SIZE];
	size_t n;

	ck_assert_int_eq(call(HTTP_POST, "/basket",
	                      "{\"cart\":{\"userName\":\"swn\",\"items\":["
	                      "{\"quantity\":2,\"color\":\"Red\",\"price\":500,"
	                      "\"productId\":\"" IPHONE_ID "\","
	                      "\"productName\":\"IPhone X\"},"
	                      "{\"quantity\":3,\"color\":\"Black\","
	                      "\"price\":19.99,\"productId\":\"" PIXEL_ID "\","
	                      "\"productName\":\"Pixel 8\"}]}}"),
	                 201);
	/* The client claims a total of 1; the server's is 759.97. */
	ck_assert_int_eq(call(HTTP_POST, "/basket/checkout",
	                      "{\"basketCheckoutDto\":{\"userName\":\"swn\","
	                      "\"totalPrice\":1," CHECKOUT_FIELDS "}}"),
	                 200);
	ck_assert(json_is_true(json_object_get(R.body, "isSuccess")));
	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 404);

	ck_assert_int_eq(store_outbox_fetch(E.ctx.outbox_store, 0, rows,
	                                    MS_ARRAY_SIZE(rows), &n),
	                 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(rows[0].type, "monoshop.events.BasketCheckoutEvent");
	/* A new span of the request's trace. */
	ck_assert_int_eq(ms_trace_parse(rows[0].traceparent, tp), 0);
	ck_assert_int_eq(strncmp(rows[0].traceparent, TRACEPARENT, 36), 0);
	ck_assert_str_ne(rows[0].traceparent, TRACEPARENT);
	ck_assert(ms_uuid_valid(rows[0].id));
	ck_assert_int_gt(rows[0].occurred_ms, 0);
	ev = monoshop__events__basket_checkout_event__unpack(NULL, rows[0].len,
	                                                     rows[0].payload);
	ck_assert_ptr_nonnull(ev);
	ck_assert_str_eq(ev->id, rows[0].id);
	ck_assert_uint_eq(strlen(ev->occurredon), 24);
	ck_assert_int_eq(ev->occurredon[23], 'Z');
	ck_assert_str_eq(ev->username, "swn");
	ck_assert_str_eq(ev->customerid, CUSTOMER);
	ck_assert_str_eq(ev->totalprice, "759.97");
	ck_assert_str_eq(ev->firstname, "John");
	ck_assert_str_eq(ev->lastname, "Doe");
	ck_assert_str_eq(ev->emailaddress, "john@example.com");
	ck_assert_str_eq(ev->addressline, "Bahcelievler");
	ck_assert_str_eq(ev->country, "Turkey");
	ck_assert_str_eq(ev->state, "Istanbul");
	ck_assert_str_eq(ev->zipcode, "34000");
	ck_assert_str_eq(ev->cardname, "John Doe");
	ck_assert_str_eq(ev->cardnumber, "5555555555554444");
	ck_assert_str_eq(ev->expiration, "12/28");
	ck_assert_str_eq(ev->cvv, "123");
	ck_assert_int_eq(ev->paymentmethod, 1);
	ck_assert_uint_eq(ev->n_items, 2);
	ck_assert_str_eq(ev->items[0]->productid, IPHONE_ID);
	ck_assert_str_eq(ev->items[0]->productname, "IPhone X");
	ck_assert_int_eq(ev->items[0]->quantity, 2);
	ck_assert_str_eq(ev->items[0]->price, "350.00");
	ck_assert_str_eq(ev->items[0]->color, "Red");
	ck_assert_str_eq(ev->items[1]->productid, PIXEL_ID);
	ck_assert_str_eq(ev->items[1]->productname, "Pixel 8");
	ck_assert_int_eq(ev->items[1]->quantity, 3);
	ck_assert_str_eq(ev->items[1]->price, "19.99");
	ck_assert_str_eq(ev->items[1]->color, "Black");
	monoshop__events__basket_checkout_event__free_unpacked(ev, NULL);
	store_outbox_row_fini(&rows[0]);

	/* A second checkout finds no basket, and records nothing. */
	ck_assert_int_eq(
	    call(HTTP_POST, "/basket/checkout",
	         "{\"basketCheckoutDto\":{\"userName\":\"swn\"," CHECKOUT_FIELDS
	         "}}"),
	    404);
	ck_assert_uint_eq(pending_events(), 1);
}
END_TEST

/* checkout_trace checks |user| out and returns the traceparent its event
 * was recorded with (malloc'd). */
static char *
checkout_trace(const char *user)
{
	struct store_outbox_row rows[8];
	char body[512];
	char *tp = NULL;
	size_t n;

	snprintf(body, sizeof(body),
	         "{\"cart\":{\"userName\":\"%s\",\"items\":["
	         "{\"quantity\":1,\"color\":\"Red\",\"price\":5,"
	         "\"productId\":\"" PIXEL_ID "\","
	         "\"productName\":\"Pixel 8\"}]}}",
	         user);
	ck_assert_int_eq(call(HTTP_POST, "/basket", body), 201);
	snprintf(body, sizeof(body),
	         "{\"basketCheckoutDto\":{\"userName\":\"%s\","
	         "\"totalPrice\":5," CHECKOUT_FIELDS "}}",
	         user);
	ck_assert_int_eq(call(HTTP_POST, "/basket/checkout", body), 200);
	ck_assert_int_eq(store_outbox_fetch(E.ctx.outbox_store, 0, rows,
	                                    MS_ARRAY_SIZE(rows), &n),
	                 0);
	ck_assert_uint_ge(n, 1);
	ck_assert_ptr_nonnull(rows[n - 1].traceparent);
	tp = strdup(rows[n - 1].traceparent);
	for (size_t i = 0; i < n; i++) {
		store_outbox_row_fini(&rows[i]);
	}
	ck_assert_ptr_nonnull(tp);
	return tp;
}

/* Without a trace from the edge, the event continues the thread's current
 * one; with none current either, it starts a new one: an event always
 * carries a trace for the processes it reaches to log under. */
START_TEST(test_checkout_event_trace)
{
	static const char cur[] =
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	char out[MS_TRACEPARENT_SIZE];
	char *tp;

	req_traceparent = NULL;
	ck_assert_int_eq(ms_trace_set(cur), 0);
	tp = checkout_trace("traced");
	ck_assert_int_eq(ms_trace_parse(tp, out), 0);
	ck_assert_int_eq(strncmp(tp, cur, 36), 0);
	ck_assert_str_ne(tp, cur);
	free(tp);

	ms_trace_clear();
	tp = checkout_trace("untraced");
	ck_assert_int_eq(ms_trace_parse(tp, out), 0);
	ck_assert_int_ne(strncmp(tp, cur, 36), 0);
	free(tp);
	req_traceparent = TRACEPARENT;
}
END_TEST

/* Many request threads at once, as libmicrohttpd runs them: each stores,
 * reads and checks out its own user's basket, over and over. */
#define WORKERS 8
#define ROUNDS  20

/* total_of reads the cart total of a GET response without asserting
 * (Check's asserts belong to the test's own thread), -1 when absent. */
static int64_t
total_of(const struct http_resp *resp)
{
	struct http_resp scratch = {0};
	int64_t cents = -1;

	if (resp->body == NULL ||
	    http_json_money(json_object_get(resp->body, "cart"), "cart",
	                    "totalPrice", true, 0, &cents, &scratch) != 0) {
		return -1;
	}
	return cents;
}

static void *
worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	struct http_resp *resp = calloc(1, sizeof(*resp)); /* this thread's */
	char path[64];
	char body[1024];
	int bad = 0;

	snprintf(path, sizeof(path), "/basket/user%d", id);
	for (int i = 0; i < ROUNDS && !bad; i++) {
		snprintf(body, sizeof(body),
		         "{\"cart\":{\"userName\":\"user%d\",\"items\":["
		         "{\"quantity\":%d,\"price\":500,"
		         "\"productId\":\"" IPHONE_ID "\","
		         "\"productName\":\"IPhone X\"}]}}",
		         id, i + 1);
		bad |= call_into(resp, HTTP_POST, "/basket", body) != 201;
		bad |= call_into(resp, HTTP_GET, path, NULL) != 200;
		bad |= total_of(resp) != 35000 * (i + 1);
		snprintf(body, sizeof(body),
		         "{\"basketCheckoutDto\":{\"userName\":\"user%"
		         "d\"," CHECKOUT_FIELDS "}}",
		         id);
		bad |=
		    call_into(resp, HTTP_POST, "/basket/checkout", body) != 200;
	}
	json_decref(resp->body);
	free(resp);
	return (void *)(intptr_t)bad;
}

START_TEST(test_concurrent_requests)
{
	pthread_t th[WORKERS];
	int64_t count = 0;
	int64_t oldest = 0;

	for (int i = 0; i < WORKERS; i++) {
		ck_assert_int_eq(
		    pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i),
		    0);
	}
	for (int i = 0; i < WORKERS; i++) {
		void *bad;

		ck_assert_int_eq(pthread_join(th[i], &bad), 0);
		ck_assert_msg(bad == NULL, "worker %d failed", i);
	}
	ck_assert_int_eq(
	    store_outbox_depth(E.ctx.outbox_store, &count, &oldest), 0);
	ck_assert_int_eq(count, WORKERS * ROUNDS);
}
END_TEST

START_TEST(test_health_checks)
{
	struct ms_health_result res[MS_HEALTH_MAX_CHECKS];
	int healthy = 0;
	size_t n = ms_health_run(res, MS_ARRAY_SIZE(res), &healthy);
	int seen = 0;

	for (size_t i = 0; i < n; i++) {
		if (strcmp(res[i].name, "basket") == 0 ||
		    strcmp(res[i].name, "basketdb") == 0) {
			ck_assert_int_eq(res[i].rc, 0);
			seen++;
		}
	}
	ck_assert_int_eq(seen, 2);
	ck_assert_int_eq(healthy, 1);
}
END_TEST

/* ---- Discount failing or counted -------------------------------------- */

#define IPHONE_CART                                                            \
	"{\"cart\":{\"userName\":\"swn\",\"items\":["                          \
	"{\"quantity\":1,\"price\":500,\"productId\":\"" IPHONE_ID "\","       \
	"\"productName\":\"IPhone X\"}]}}"

START_TEST(test_discount_down_is_503)
{
	ck_assert_int_eq(call(HTTP_POST, "/basket", IPHONE_CART), 503);
	ck_assert_msg(
	    strncmp(R.detail, "Discount service is unavailable: ", 33) == 0,
	    "detail: %s", R.detail);
	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 404);
	/* A cart without items needs no coupon, so it can still be
	 * stored. */
	ck_assert_int_eq(call(HTTP_POST, "/basket",
	                      "{\"cart\":{\"userName\":\"swn\",\"items\":[]}}"),
	                 201);
}
END_TEST

START_TEST(test_discount_timeout_is_503)
{
	fake_rc = MS_ETIMEDOUT;
	ck_assert_int_eq(call(HTTP_POST, "/basket", IPHONE_CART), 503);
	ck_assert_ptr_nonnull(strstr(R.detail, "Discount service is "
	                                       "unavailable"));
	fake_rc = MS_EUNAVAIL;
	ck_assert_int_eq(call(HTTP_POST, "/basket", IPHONE_CART), 503);
	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 404);
}
END_TEST

START_TEST(test_discount_rejects_is_400)
{
	fake_rc = MS_EINVAL;
	ck_assert_int_eq(call(HTTP_POST, "/basket", IPHONE_CART), 400);
	ck_assert_ptr_nonnull(strstr(R.detail, "IPhone X"));
	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 404);
}
END_TEST

START_TEST(test_discount_calls_are_cached_and_skipped)
{
	char *again;

	ck_assert_int_eq(
	    call(HTTP_POST, "/basket",
	         "{\"cart\":{\"userName\":\"swn\",\"items\":["
	         "{\"quantity\":1,\"color\":\"Red\",\"price\":500,"
	         "\"productId\":\"" IPHONE_ID "\",\"productName\":"
	         "\"IPhone X\"},"
	         "{\"quantity\":1,\"color\":\"Blue\",\"price\":500,"
	         "\"productId\":\"" IPHONE_ID "\",\"productName\":"
	         "\"IPhone X\"},"
	         "{\"quantity\":1,\"price\":50,\"productId\":\"" SAMSUNG_ID
	         "\",\"productName\":\"Samsung 10\"},"
	         "{\"quantity\":1,\"price\":10,\"productId\":\"" PIXEL_ID
	         "\",\"productName\":\"Cursed\"}]}}"),
	    201);
	/* Three distinct names, three calls. */
	ck_assert_int_eq(atomic_load(&fake_calls), 3);

	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 200);
	ck_assert_int_eq(money(item_of_response(0), "price"), 35000);
	ck_assert_int_eq(money(item_of_response(1), "price"), 35000);
	ck_assert_int_eq(money(item_of_response(2), "price"), 0);
	/* A negative coupon never raises a price. */
	ck_assert_int_eq(money(item_of_response(3), "price"), 1000);

	/* Storing what GET showed asks Discount nothing. */
	again = http_json_dump(R.body, NULL);
	ck_assert_int_eq(call(HTTP_POST, "/basket", again), 201);
	free(again);
	ck_assert_int_eq(atomic_load(&fake_calls), 3);

	/* ... even while Discount is down. */
	fake_rc = MS_EUNAVAIL;
	ck_assert_int_eq(call(HTTP_GET, "/basket/swn", NULL), 200);
	again = http_json_dump(R.body, NULL);
	ck_assert_int_eq(call(HTTP_POST, "/basket", again), 201);
	free(again);
	ck_assert_int_eq(atomic_load(&fake_calls), 3);
}
END_TEST

/* ---- with Ordering: the event is one it takes ------------------------ */

#define NEW_CUSTOMER "2d4c7f0e-6a4b-4c55-9d2e-8f1a3b5c7d90"

START_TEST(test_checkout_becomes_an_order)
{
	int64_t deadline = ms_now_ms() + 10000;
	const json_t *orders = NULL;
	const json_t *order;
	const json_t *items;

	ck_assert_int_eq(call(HTTP_POST, "/basket",
	                      "{\"cart\":{\"userName\":\"swn\",\"items\":["
	                      "{\"quantity\":2,\"color\":\"Red\",\"price\":500,"
	                      "\"productId\":\"" IPHONE_ID "\","
	                      "\"productName\":\"IPhone X\"},"
	                      "{\"quantity\":3,\"price\":19.99,"
	                      "\"productId\":\"" PIXEL_ID "\","
	                      "\"productName\":\"Pixel 8\"}]}}"),
	                 201);
	ck_assert_int_eq(
	    call(HTTP_POST, "/basket/checkout",
	         "{\"basketCheckoutDto\":{\"userName\":\"swn\","
	         "\"customerId\":\"" NEW_CUSTOMER "\","
	         "\"firstName\":\"John\",\"lastName\":\"Doe\","
	         "\"emailAddress\":\"john@example.com\","
	         "\"addressLine\":\"Bahcelievler\",\"country\":\"Turkey\","
	         "\"state\":\"Istanbul\",\"zipCode\":\"34000\","
	         "\"cardName\":\"John Doe\","
	         "\"cardNumber\":\"5555555555554444\","
	         "\"expiration\":\"12/28\",\"cvv\":\"123\","
	         "\"paymentMethod\":1,\"totalPrice\":1}}"),
	    200);

	/* The relay delivers asynchronously: poll with a deadline. */
	for (;;) {
		ck_assert_int_eq(
		    call(HTTP_GET, "/orders/customer/" NEW_CUSTOMER, NULL),
		    200);
		orders = json_object_get(R.body, "orders");
		if (json_array_size(orders) > 0 || ms_now_ms() > deadline) {
			break;
		}
		nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
	}
	ck_assert_uint_eq(json_array_size(orders), 1);
	order = json_array_get(orders, 0);
	ck_assert_str_eq(str_of(order, "orderName"), "swn");
	ck_assert_int_eq(money(order, "totalPrice"), 75997);
	items = json_object_get(order, "orderItems");
	ck_assert_uint_eq(json_array_size(items), 2);
	ck_assert_int_eq(money(json_array_get(items, 0), "price"), 35000);
	ck_assert_int_eq(money(json_array_get(items, 1), "price"), 1999);
	/* The row is marked sent just after Ordering's commit, on the relay's
	 * thread: wait for it too. */
	while (pending_events() != 0 && ms_now_ms() <= deadline) {
		nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
	}
	ck_assert_uint_eq(pending_events(), 0);
}
END_TEST

static Suite *
basket_suite(void)
{
	Suite *s = suite_create("basket");
	TCase *tc = tcase_create("real discount");
	TCase *none = tcase_create("no discount");
	TCase *fake = tcase_create("fake discount");
	TCase *ord = tcase_create("with ordering");

	tcase_add_checked_fixture(tc, setup_real, env_down);
	tcase_add_test(tc, test_store_applies_coupon);
	tcase_add_test(tc, test_store_get_result_again_is_not_discounted_twice);
	tcase_add_test(tc, test_coupon_never_below_zero);
	tcase_add_test(tc, test_empty_cart_and_names);
	tcase_add_test(tc, test_get_unknown_is_404);
	tcase_add_test(tc, test_delete_is_200_twice);
	tcase_add_test(tc, test_validation_cart_required);
	tcase_add_test(tc, test_validation_user_name);
	tcase_add_test(tc, test_validation_user_name_length);
	tcase_add_test(tc, test_validation_items_all_reported);
	tcase_add_test(tc, test_validation_bounds);
	tcase_add_test(tc, test_checkout_unknown_is_404);
	tcase_add_test(tc, test_checkout_validation);
	tcase_add_test(tc, test_checkout_records_one_event);
	tcase_add_test(tc, test_checkout_event_trace);
	tcase_add_test(tc, test_concurrent_requests);
	tcase_add_test(tc, test_health_checks);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(none, setup_none, env_down);
	tcase_add_test(none, test_discount_down_is_503);
	suite_add_tcase(s, none);

	tcase_add_checked_fixture(fake, setup_fake, env_down);
	tcase_add_test(fake, test_discount_timeout_is_503);
	tcase_add_test(fake, test_discount_rejects_is_400);
	tcase_add_test(fake, test_discount_calls_are_cached_and_skipped);
	suite_add_tcase(s, fake);

	tcase_add_checked_fixture(ord, setup_ordering, env_down);
	tcase_add_test(ord, test_checkout_becomes_an_order);
	suite_add_tcase(s, ord);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(basket_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
