/* SPDX-License-Identifier: MIT */
/*
 * The Basket module's REST routes (SPEC §2, the original's routes and
 * shapes):
 *
 *   GET    /basket/{userName}   the cart, with the server's total
 *   POST   /basket              store (replace) a cart, coupons applied
 *   DELETE /basket/{userName}   delete it (200 whether or not it existed)
 *   POST   /basket/checkout     turn it into a BasketCheckoutEvent
 *
 * Each handler validates the whole request first and reports every problem
 * at once, as a validationErrors list naming JSON paths
 * ("cart.items[1].price"); nothing is read from or written to the database
 * before the request is known to be good. The original declares these
 * validators but never runs them (aspnetrun.md §1.3), so a null cart is a
 * 500 there and a 400 here.
 *
 * Threads: handlers run on HTTP worker threads, many at once; they share
 * only the struct basket, which is read-only after init.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basket_priv.h"
#include "core/err.h"
#include "core/money.h"
#include "http/json.h"

/* ---- small helpers ---------------------------------------------------- */

static const char *
param(const struct http_req *req, const char *name)
{
	for (size_t i = 0; i < req->nparams; i++) {
		if (req->param_names[i] &&
		    strcmp(req->param_names[i], name) == 0) {
			return req->params[i];
		}
	}
	return NULL;
}

static bool
blank(const char *s)
{
	for (; *s; s++) {
		if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') {
			return false;
		}
	}
	return true;
}

/* has_control tells whether |s| holds a control character. http_json_str
 * lets tab, CR and LF through; Ordering refuses them in every field of an
 * order, so a checkout must too. */
static bool
has_control(const char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f) {
			return true;
		}
	}
	return false;
}

/* verr records a validation error on member |name| of the object at JSON
 * path |path| ("" for the body itself). */
static void __attribute__((format(printf, 4, 5)))
verr(struct http_resp *resp, const char *path, const char *name,
     const char *fmt, ...)
{
	char prop[sizeof(resp->verrs[0].property)];
	char msg[sizeof(resp->verrs[0].message)];
	va_list ap;

	if (path[0] != '\0') {
		snprintf(prop, sizeof(prop), "%s.%s", path, name);
	} else {
		snprintf(prop, sizeof(prop), "%s", name);
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	http_verr_add(resp, prop, "%s", msg);
}

/* missing tells whether member |name| of |obj| is absent, null, or a blank
 * string: what the original's NotEmpty / NotNull rules reject. */
static bool
missing(const json_t *obj, const char *name)
{
	const json_t *v = http_json_get(obj, name);

	return v == NULL || json_is_null(v) ||
	       (json_is_string(v) && blank(json_string_value(v)));
}

/*
 * parse_body parses the request body into a JSON object (*root, a new
 * reference). No body at all reads as {}, so that it is answered like the
 * original's null DTO ("Cart can not be null"), field by field.
 */
static int
parse_body(const struct http_req *req, json_t **root, struct http_resp *resp)
{
	if (req->body == NULL || req->body_len == 0) {
		*root = json_object();
		return *root ? 0 : MS_ENOMEM;
	}
	return http_json_parse_body(req, root, resp);
}

/*
 * The user name rule. A user name becomes a URL path segment
 * (GET /basket/{userName}, the Location header) and, at checkout, the
 * order's name. So on top of what http_json_str checks (non-blank valid
 * UTF-8, no NUL, at most BASKET_USER_MAX bytes) it must not contain:
 *  - '/', '?', '#': they would split the path or start a query or fragment;
 *  - '%': the router decodes percent-escapes, so "%2F" would come back as
 *    another name than the one stored;
 *  - any control character (tab, CR, LF and DEL included): they do not
 *    belong in a URL, a header or an order name;
 * and it must not be "." or "..", which clients collapse as dot-segments.
 * Returns NULL when |s| is acceptable, or why not.
 */
static const char *
user_name_problem(const char *s)
{
	if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
		return "UserName cannot be \".\" or \"..\"";
	}
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '/' || *p == '?' || *p == '#' || *p == '%') {
			return "UserName cannot contain '/', '?', '#' or '%'";
		}
		if (*p < 0x20 || *p == 0x7f) {
			return "UserName cannot contain control characters";
		}
	}
	return NULL;
}

/* location_of writes "/basket/<userName percent-encoded>" to |out|: every
 * byte outside RFC 3986's unreserved set is escaped, so the header is
 * plain ASCII whatever the name. */
static void
location_of(const char *user, char *out, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = (size_t)snprintf(out, size, "/basket/");

	for (const unsigned char *p = (const unsigned char *)user;
	     *p && n + 4 <= size; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
		    *p == '_' || *p == '~') {
			out[n++] = (char)*p;
		} else {
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	out[n] = '\0';
}

static int
not_found(struct http_resp *resp, const char *user)
{
	/* The original's title is the exception's type name. */
	snprintf(resp->title, sizeof(resp->title), "BasketNotFoundException");
	return http_resp_fail(resp, MS_ENOTFOUND,
	                      "Entity \"Basket\" (%s) was not found.", user);
}

/* ---- GET /basket/{userName} ------------------------------------------- */

/* cart_json builds {"cart":{...}}; returns a new reference or NULL. */
static json_t *
cart_json(const struct basket_cart *cart, int64_t total)
{
	json_t *root = json_object();
	json_t *c = json_object();
	json_t *items = json_array();
	int bad = 0;

	/* Each *_set_new / append_new takes the value even when it fails (a
	 * NULL value or container): errors are collected, not leaked. */
	for (size_t i = 0; i < cart->nitems; i++) {
		const struct basket_item *it = &cart->items[i];
		json_t *o = json_object();

		bad |= json_object_set_new(o, "quantity",
		                           json_integer(it->quantity));
		bad |= json_object_set_new(o, "color", json_string(it->color));
		bad |= json_object_set_new(
		    o, "price", http_json_money_new(it->price_cents));
		bad |= json_object_set_new(o, "productId",
		                           json_string(it->product_id));
		bad |= json_object_set_new(o, "productName",
		                           json_string(it->product_name));
		bad |= json_array_append_new(items, o);
	}
	bad |= json_object_set_new(c, "userName", json_string(cart->user_name));
	bad |= json_object_set_new(c, "items", items);
	bad |= json_object_set_new(c, "totalPrice", http_json_money_new(total));
	bad |= json_object_set_new(root, "cart", c);
	if (bad) {
		json_decref(root);
		return NULL;
	}
	return root;
}

static int
get_basket(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	struct basket *b = ctx;
	const char *user = param(req, "userName");
	struct basket_cart *cart;
	int64_t total;
	json_t *body;
	int rc;

	if (user == NULL || user[0] == '\0') {
		return not_found(resp, user ? user : "");
	}
	if ((cart = malloc(sizeof(*cart))) == NULL) { /* owned here */
		return MS_ENOMEM;
	}
	store_lock(b->st);
	rc = basket_db_load(b->st, user, cart);
	store_unlock(b->st);
	if (rc == MS_ENOTFOUND) {
		rc = not_found(resp, user);
	} else if (rc != 0) {
		http_resp_fail(resp, rc, "Cannot read the basket: %s",
		               ms_strerror(rc));
	} else if (basket_cart_total(cart, &total) != 0) {
		/* Totals are checked when a cart is stored. */
		rc = http_resp_fail(resp, MS_ECORRUPT,
		                    "Stored basket has an impossible total");
	} else if ((body = cart_json(cart, total)) == NULL) {
		rc = MS_ENOMEM;
	} else {
		rc = http_resp_json(resp, 200, body);
	}
	free(cart);
	return rc;
}

/* ---- POST /basket ----------------------------------------------------- */

static void
read_item(const json_t *v, size_t i, struct basket_item *it,
          struct http_resp *resp)
{
	char path[48];
	const char *name = NULL;
	const char *color = "";

	snprintf(path, sizeof(path), "cart.items[%zu]", i);
	if (!json_is_object(v)) {
		http_verr_add(resp, path, "An item must be an object");
		return;
	}
	http_json_int(v, path, "quantity", true, 1, BASKET_QUANTITY_MAX,
	              &it->quantity, resp);
	http_json_money(v, path, "price", true, 0, &it->price_cents, resp);
	/* The nil GUID is refused: Ordering cannot take it as a product. */
	http_json_guid(v, path, "productId", true, true, it->product_id, resp);
	if (http_json_str(v, path, "productName", true, BASKET_PRODUCT_NAME_MAX,
	                  &name, resp) == 0 &&
	    name != NULL) {
		ms_strlcpy(it->product_name, name, sizeof(it->product_name));
	}
	/* Optional; null or absent reads as "". */
	if (http_json_str(v, path, "color", false, BASKET_COLOR_MAX, &color,
	                  resp) == 0 &&
	    color != NULL) {
		ms_strlcpy(it->color, color, sizeof(it->color));
	}
}

/* read_cart validates {"cart":{...}} into |cart| (prices as sent, in
 * price_cents); problems are recorded in |resp|. */
static void
read_cart(const json_t *root, struct basket_cart *cart, struct http_resp *resp)
{
	const json_t *c = http_json_get(root, "cart");
	json_t *items = NULL;
	const char *user = NULL;
	const char *why;
	int64_t total = 0;

	if (c == NULL || json_is_null(c)) {
		http_verr_add(resp, "cart", "Cart can not be null");
		return;
	}
	if (!json_is_object(c)) {
		http_verr_add(resp, "cart", "Cart must be an object");
		return;
	}
	if (missing(c, "userName")) {
		verr(resp, "cart", "userName", "UserName is required");
	} else if (http_json_str(c, "cart", "userName", true, BASKET_USER_MAX,
	                         &user, resp) == 0) {
		if ((why = user_name_problem(user)) != NULL) {
			verr(resp, "cart", "userName", "%s", why);
		} else {
			ms_strlcpy(cart->user_name, user,
			           sizeof(cart->user_name));
		}
	}

	/* Absent or null items: an empty cart, as the original allows. */
	if (http_json_array(c, "cart", "items", false, &items, resp) != 0 ||
	    items == NULL) {
		return;
	}
	if (json_array_size(items) > BASKET_MAX_ITEMS) {
		verr(resp, "cart", "items", "A cart holds at most %d items",
		     BASKET_MAX_ITEMS);
		return;
	}
	cart->nitems = json_array_size(items);
	for (size_t i = 0; i < cart->nitems; i++) {
		read_item(json_array_get(items, i), i, &cart->items[i], resp);
	}
	/* Prices only go down from here (coupons), so a total that fits now
	 * fits after discounting, and GET can always compute it. */
	if (resp->nverrs == 0 && basket_cart_total(cart, &total) != 0) {
		verr(resp, "cart", "items",
		     "The total price is larger than the largest amount");
	}
}

static int
store_basket(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	struct basket *b = ctx;
	struct basket_cart *cart = NULL; /* owned here */
	json_t *root = NULL;             /* owned here */
	json_t *body;
	int rc;

	if ((rc = parse_body(req, &root, resp)) != 0) {
		return rc;
	}
	if ((cart = calloc(1, sizeof(*cart))) == NULL) {
		rc = MS_ENOMEM;
		goto out;
	}
	read_cart(root, cart, resp);
	if (resp->nverrs > 0) {
		rc = MS_EVALIDATION;
		goto out;
	}
	if ((rc = basket_store_cart(b, cart, resp)) != 0) {
		goto out;
	}
	location_of(cart->user_name, resp->location, sizeof(resp->location));
	body = json_pack("{s:s}", "userName", cart->user_name);
	rc = body ? http_resp_json(resp, 201, body) : MS_ENOMEM;
out:
	free(cart);
	json_decref(root);
	return rc;
}

/* ---- DELETE /basket/{userName} ---------------------------------------- */

static int
success(struct http_resp *resp)
{
	json_t *body = json_pack("{s:b}", "isSuccess", 1);

	return body ? http_resp_json(resp, 200, body) : MS_ENOMEM;
}

static int
delete_basket(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	struct basket *b = ctx;
	const char *user = param(req, "userName");
	int deleted;
	int rc;

	if (user == NULL || user[0] == '\0') {
		http_verr_add(resp, "userName", "UserName is required");
		return MS_EVALIDATION;
	}
	if ((rc = store_begin(b->st)) != 0) {
		return http_resp_fail(resp, rc, "Cannot delete the basket: %s",
		                      ms_strerror(rc));
	}
	if ((rc = basket_db_delete(b->st, user, &deleted)) != 0) {
		store_rollback(b->st);
		return http_resp_fail(resp, rc, "Cannot delete the basket: %s",
		                      ms_strerror(rc));
	}
	if ((rc = store_commit(b->st)) != 0) {
		return http_resp_fail(resp, rc, "Cannot delete the basket: %s",
		                      ms_strerror(rc));
	}
	/* As the original: success whether or not there was a basket. */
	return success(resp);
}

/* ---- POST /basket/checkout -------------------------------------------- */

/*
 * The DTO's string fields and their rules. The original only requires the
 * DTO and its userName; we also apply the order's rules (Ordering's
 * required fields and column sizes, CVV at most 3), because a checkout that
 * commits becomes an event Ordering must turn into an order: an event that
 * breaks its rules could never be consumed (a poison message), and the
 * basket would be gone. Lengths are in bytes, which is never more lenient
 * than Ordering's limits in characters; control characters (tab, CR, LF
 * included) are refused everywhere, as Ordering refuses them.
 */
static const struct dto_str {
	const char *name;
	size_t off; /* of a `const char *` in struct basket_checkout */
	size_t maxlen;
	bool required;
} dto_strs[] = {
    {"firstName", offsetof(struct basket_checkout, first_name), 50, true},
    {"lastName", offsetof(struct basket_checkout, last_name), 50, true},
    {"emailAddress", offsetof(struct basket_checkout, email_address), 50, true},
    {"addressLine", offsetof(struct basket_checkout, address_line), 180, true},
    {"country", offsetof(struct basket_checkout, country), 50, false},
    {"state", offsetof(struct basket_checkout, state), 50, false},
    {"zipCode", offsetof(struct basket_checkout, zip_code), 5, true},
    {"cardName", offsetof(struct basket_checkout, card_name), 50, true},
    {"cardNumber", offsetof(struct basket_checkout, card_number), 24, true},
    {"expiration", offsetof(struct basket_checkout, expiration), 10, false},
    {"cvv", offsetof(struct basket_checkout, cvv), 3, true},
};

#define DTO "basketCheckoutDto"

static void
read_checkout(const json_t *root, struct basket_checkout *co,
              struct http_resp *resp)
{
	const json_t *dto = http_json_get(root, DTO);
	int64_t pm = 0;
	int64_t ignored;

	for (size_t i = 0; i < MS_ARRAY_SIZE(dto_strs); i++) {
		*(const char **)((char *)co + dto_strs[i].off) = "";
	}
	co->user_name = "";
	if (dto == NULL || json_is_null(dto)) {
		http_verr_add(resp, DTO, "BasketCheckoutDto can't be null");
		return;
	}
	if (!json_is_object(dto)) {
		http_verr_add(resp, DTO, "BasketCheckoutDto must be an object");
		return;
	}
	if (missing(dto, "userName")) {
		verr(resp, DTO, "userName", "UserName is required");
	} else {
		http_json_str(dto, DTO, "userName", true, BASKET_USER_MAX,
		              &co->user_name, resp);
	}
	http_json_guid(dto, DTO, "customerId", true, true, co->customer_id,
	               resp);
	for (size_t i = 0; i < MS_ARRAY_SIZE(dto_strs); i++) {
		const struct dto_str *f = &dto_strs[i];

		const char **dst = (const char **)((char *)co + f->off);

		if (http_json_str(dto, DTO, f->name, f->required, f->maxlen,
		                  dst, resp) == 0 &&
		    has_control(*dst)) {
			verr(resp, DTO, f->name,
			     "'%s' must not contain control characters",
			     f->name);
		}
	}
	if (http_json_int(dto, DTO, "paymentMethod", false, INT32_MIN,
	                  INT32_MAX, &pm, resp) == 0) {
		co->payment_method = (int32_t)pm;
	}
	/* The client's total is ignored (the server's is used, as in the
	 * original), but a malformed one is still a malformed request. */
	http_json_money(dto, DTO, "totalPrice", false, 0, &ignored, resp);
}

static int
checkout_basket(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	struct basket *b = ctx;
	struct basket_checkout co = {0};
	char event_id[MS_UUID_STRLEN];
	char total[MS_MONEY_STRLEN];
	json_t *root = NULL; /* owned here; co's strings point into it */
	int rc;

	if ((rc = parse_body(req, &root, resp)) != 0) {
		return rc;
	}
	read_checkout(root, &co, resp);
	if (resp->nverrs > 0) {
		rc = MS_EVALIDATION;
	} else if ((rc = basket_checkout(b, &co, req->traceparent, event_id,
	                                 total, resp)) == 0) {
		rc = success(resp);
	}
	json_decref(root);
	return rc;
}

/* ---- registration ----------------------------------------------------- */

int
basket_http_register(struct basket *b, struct http_router *router)
{
	int rc;

	if ((rc = http_route_add(router, HTTP_GET, "/basket/{userName}",
	                         get_basket, b)) != 0 ||
	    (rc = http_route_add(router, HTTP_POST, "/basket", store_basket,
	                         b)) != 0 ||
	    (rc = http_route_add(router, HTTP_DELETE, "/basket/{userName}",
	                         delete_basket, b)) != 0 ||
	    (rc = http_route_add(router, HTTP_POST, "/basket/checkout",
	                         checkout_basket, b)) != 0) {
		return rc;
	}
	return 0;
}
