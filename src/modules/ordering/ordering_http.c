/* SPDX-License-Identifier: MIT */
/*
 * The Ordering REST routes (SPEC §2, the original's Carter endpoints):
 *
 *   GET    /orders?pageIndex=&pageSize=   one page, ordered by name
 *   GET    /orders/{orderName}            orders whose name contains it
 *   GET    /orders/customer/{customerId}  orders of one customer
 *   POST   /orders                        create: 201 + Location + {"id"}
 *   PUT    /orders                        update name/addresses/payment/status
 *   DELETE /orders/{id}                   delete with its items
 *
 * This file maps JSON to struct ordering_order and back; the rules are the
 * store's (ordering_store.c). Field names are matched case-insensitively
 * (the http_json_* getters), and a getter that fails (wrong type, bad GUID,
 * a price with 3 decimals) records its own error, which the store's
 * validation then does not repeat. Strings are read with a byte bound of
 * 4 bytes per allowed character; the store counts the characters.
 *
 * Threads: HTTP worker threads, many at once; no state but the store.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "http/http.h"
#include "http/json.h"
#include "ordering.h"

/* ---- request mapping -------------------------------------------------- */

static void
read_address(const json_t *order, const char *member,
             struct ordering_address *a, struct http_resp *resp)
{
	json_t *obj = NULL;
	char path[48];

	snprintf(path, sizeof(path), "order.%s", member);
	/* Not required here: the store reports a missing address, once. */
	if (http_json_object(order, "order", member, false, &obj, resp) != 0 ||
	    !obj)
		return;
	a->present = true;
	http_json_str(obj, path, "firstName", false,
	              ORDERING_BYTES(ORDERING_PERSON_MAX), &a->first_name,
	              resp);
	http_json_str(obj, path, "lastName", false,
	              ORDERING_BYTES(ORDERING_PERSON_MAX), &a->last_name, resp);
	http_json_str(obj, path, "emailAddress", false,
	              ORDERING_BYTES(ORDERING_PERSON_MAX), &a->email_address,
	              resp);
	http_json_str(obj, path, "addressLine", false,
	              ORDERING_BYTES(ORDERING_LINE_MAX), &a->address_line,
	              resp);
	http_json_str(obj, path, "country", false,
	              ORDERING_BYTES(ORDERING_REGION_MAX), &a->country, resp);
	http_json_str(obj, path, "state", false,
	              ORDERING_BYTES(ORDERING_REGION_MAX), &a->state, resp);
	http_json_str(obj, path, "zipCode", false,
	              ORDERING_BYTES(ORDERING_ZIP_MAX), &a->zip_code, resp);
}

static void
read_payment(const json_t *order, struct ordering_payment *p,
             struct http_resp *resp)
{
	const char *path = "order.payment";
	json_t *obj = NULL;

	if (http_json_object(order, "order", "payment", false, &obj, resp) !=
	        0 ||
	    !obj)
		return;
	p->present = true;
	http_json_str(obj, path, "cardName", false,
	              ORDERING_BYTES(ORDERING_CARDNAME_MAX), &p->card_name,
	              resp);
	http_json_str(obj, path, "cardNumber", false,
	              ORDERING_BYTES(ORDERING_CARDNUM_MAX), &p->card_number,
	              resp);
	http_json_str(obj, path, "expiration", false,
	              ORDERING_BYTES(ORDERING_EXPIRY_MAX), &p->expiration,
	              resp);
	http_json_str(obj, path, "cvv", false, ORDERING_BYTES(ORDERING_CVV_MAX),
	              &p->cvv, resp);
	http_json_int(obj, path, "paymentMethod", false, INT32_MIN, INT32_MAX,
	              &p->method, resp);
}

/*
 * read_items reads "orderItems" into a new array *items (owned by the
 * caller: free it). Each item's orderId is ignored: items belong to the
 * order they are posted with.
 */
static int
read_items(const json_t *order, struct ordering_order *o,
           struct ordering_item **items, struct http_resp *resp)
{
	json_t *arr = NULL;
	size_t n;

	*items = NULL;
	if (http_json_array(order, "order", "orderItems", false, &arr, resp) !=
	        0 ||
	    !arr)
		return 0;
	n = json_array_size(arr);
	if (n > ORDERING_MAX_ITEMS) {
		/* Not read: the store reports the count. */
		o->nitems = n;
		return 0;
	}
	if (n == 0)
		return 0;
	*items = calloc(n, sizeof(**items));
	if (!*items)
		return MS_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const json_t *it = json_array_get(arr, i);
		struct ordering_item *dst = &(*items)[i];
		char path[40];

		snprintf(path, sizeof(path), "order.orderItems[%zu]", i);
		if (!json_is_object(it)) {
			http_verr_add(resp, path,
			              "'orderItems[%zu]' must be an object", i);
			continue;
		}
		http_json_guid(it, path, "productId", false, false,
		               dst->product_id, resp);
		http_json_int(it, path, "quantity", false, INT32_MIN, INT32_MAX,
		              &dst->quantity, resp);
		http_json_money(it, path, "price", false, 0, &dst->price_cents,
		                resp);
	}
	o->items = *items;
	o->nitems = n;
	return 0;
}

/*
 * read_order parses the body's "order" into |o|. Strings point into *root
 * (a new reference for the caller to release, also on error) and items
 * into *items (the caller frees them). Returns 0 with the mapping errors,
 * if any, in |resp| (the store adds its own and decides), or MS_EJSON /
 * MS_EVALIDATION (no "order" object) / MS_ENOMEM.
 */
static int
read_order(const struct http_req *req, enum ordering_check kind,
           struct ordering_order *o, json_t **root,
           struct ordering_item **items, struct http_resp *resp)
{
	json_t *order = NULL;
	int rc;

	memset(o, 0, sizeof(*o));
	*root = NULL;
	*items = NULL;
	rc = http_json_parse_body(req, root, resp);
	if (rc != 0)
		return rc;
	rc = http_json_object(*root, "", "order", true, &order, resp);
	if (rc != 0)
		return rc;
	if (kind == ORDERING_CHECK_UPDATE) {
		http_json_guid(order, "order", "id", false, false, o->id, resp);
		http_json_int(order, "order", "status", false, INT64_MIN,
		              INT64_MAX, &o->status, resp);
	} else {
		/* The original ignores the sent id and status of a new
		 * order; so do we (they are not even read). */
		http_json_guid(order, "order", "customerId", false, false,
		               o->customer_id, resp);
	}
	http_json_str(order, "order", "orderName", false,
	              ORDERING_BYTES(ORDERING_NAME_MAX), &o->name, resp);
	read_address(order, "shippingAddress", &o->shipping, resp);
	read_address(order, "billingAddress", &o->billing, resp);
	read_payment(order, &o->payment, resp);
	if (kind != ORDERING_CHECK_UPDATE)
		return read_items(order, o, items, resp);
	return 0;
}

/* ---- helpers ---------------------------------------------------------- */

/* guid_param copies route parameter 0 into |out| as a normalized GUID, or
 * records a validation error on |name|. */
static int
guid_param(const struct http_req *req, const char *name,
           char out[MS_UUID_STRLEN], struct http_resp *resp)
{
	const char *v = req->nparams > 0 ? req->params[0] : NULL;

	if (!v || !ms_uuid_valid(v)) {
		http_verr_add(resp, name, "'%s' must be a GUID", name);
		return MS_EVALIDATION;
	}
	ms_strlcpy(out, v, MS_UUID_STRLEN);
	ms_uuid_normalize(out);
	return 0;
}

/* not_found answers the original's NotFoundException for an order. */
static int
not_found(struct http_resp *resp, const char *id)
{
	ms_strlcpy(resp->title, "OrderNotFoundException", sizeof(resp->title));
	return http_resp_fail(resp, MS_ENOTFOUND,
	                      "Entity \"Order\" (%s) was not found.", id);
}

static int
is_success(struct http_resp *resp)
{
	json_t *body = json_pack("{s:b}", "isSuccess", 1);

	if (!body)
		return MS_ENOMEM;
	return http_resp_json(resp, 200, body);
}

/* orders_body answers {"orders": |list|}, taking |list|. */
static int
orders_body(struct http_resp *resp, json_t *list)
{
	json_t *body = json_pack("{s:o}", "orders", list);

	if (!body)
		return MS_ENOMEM; /* json_pack released |list| */
	return http_resp_json(resp, 200, body);
}

/*
 * query_int reads the integer query parameter |name| in [min, max], or
 * leaves *out (the default) when absent. Errors name the parameter, as
 * ASP.NET's binder would.
 */
static int
query_int(const struct http_req *req, const char *name, int64_t min,
          int64_t max, int64_t *out, struct http_resp *resp)
{
	char buf[32], *end;
	long long v;
	int rc;

	rc = req->query ? http_query_get(req->query, name, buf, sizeof(buf))
	                : MS_ENOTFOUND;
	if (rc == MS_ENOTFOUND)
		return 0;
	if (rc != 0) {
		http_verr_add(resp, name, "'%s' must be an integer", name);
		return MS_EVALIDATION;
	}
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (buf[0] == '\0' || *end != '\0' || errno != 0 ||
	    !(buf[0] == '-' || (buf[0] >= '0' && buf[0] <= '9'))) {
		http_verr_add(resp, name, "'%s' must be an integer", name);
		return MS_EVALIDATION;
	}
	if (v < min || v > max) {
		http_verr_add(resp, name, "'%s' must be between %lld and %lld",
		              name, (long long)min, (long long)max);
		return MS_EVALIDATION;
	}
	*out = v;
	return 0;
}

/* ---- handlers --------------------------------------------------------- */

static int
get_orders(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	struct ordering *o = ctx;
	int64_t index = 0, size = 10, count = 0;
	json_t *data = NULL, *body;
	int rc;

	query_int(req, "pageIndex", 0, INT32_MAX, &index, resp);
	query_int(req, "pageSize", 1, ORDERING_PAGE_MAX, &size, resp);
	if (resp->nverrs)
		return MS_EVALIDATION;
	rc = ordering_store_page(o->st, index, size, &data, &count);
	if (rc != 0)
		return rc;
	body = json_pack("{s:{s:I,s:I,s:I,s:o}}", "orders", "pageIndex",
	                 (json_int_t)index, "pageSize", (json_int_t)size,
	                 "count", (json_int_t)count, "data", data);
	if (!body)
		return MS_ENOMEM;
	return http_resp_json(resp, 200, body);
}

static int
get_orders_by_name(void *ctx, const struct http_req *req,
                   struct http_resp *resp)
{
	struct ordering *o = ctx;
	json_t *list = NULL;
	int rc;

	rc = ordering_store_by_name(
	    o->st, req->nparams > 0 ? req->params[0] : "", &list);
	if (rc != 0)
		return rc;
	return orders_body(resp, list);
}

static int
get_orders_by_customer(void *ctx, const struct http_req *req,
                       struct http_resp *resp)
{
	struct ordering *o = ctx;
	char id[MS_UUID_STRLEN];
	json_t *list = NULL;
	int rc;

	rc = guid_param(req, "customerId", id, resp);
	if (rc != 0)
		return rc;
	rc = ordering_store_by_customer(o->st, id, &list);
	if (rc != 0)
		return rc;
	return orders_body(resp, list);
}

static int
post_order(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	struct ordering *o = ctx;
	struct ordering_order ord;
	struct ordering_item *items;
	json_t *root, *body;
	int rc;

	rc = read_order(req, ORDERING_CHECK_CREATE, &ord, &root, &items, resp);
	if (rc == 0)
		rc = ordering_store_create(o->st, &ord, ORDERING_CHECK_CREATE,
		                           NULL, NULL, false, NULL, resp);
	json_decref(root);
	free(items);
	if (rc != 0)
		return rc;
	MS_INFO("ordering", "order %s created (customer %s, %zu items)", ord.id,
	        ord.customer_id, ord.nitems);
	snprintf(resp->location, sizeof(resp->location), "/orders/%s", ord.id);
	body = json_pack("{s:s}", "id", ord.id);
	if (!body)
		return MS_ENOMEM;
	return http_resp_json(resp, 201, body);
}

static int
put_order(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	struct ordering *o = ctx;
	struct ordering_order ord;
	struct ordering_item *items;
	json_t *root;
	int rc;

	rc = read_order(req, ORDERING_CHECK_UPDATE, &ord, &root, &items, resp);
	if (rc == 0)
		rc = ordering_store_update(o->st, &ord, resp);
	json_decref(root);
	free(items);
	if (rc == MS_ENOTFOUND)
		return not_found(resp, ord.id);
	if (rc != 0)
		return rc;
	return is_success(resp);
}

static int
delete_order(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	struct ordering *o = ctx;
	char id[MS_UUID_STRLEN];
	int rc;

	rc = guid_param(req, "id", id, resp);
	if (rc != 0)
		return rc;
	rc = ordering_store_delete(o->st, id);
	if (rc == MS_ENOTFOUND)
		return not_found(resp, id);
	if (rc != 0)
		return rc;
	MS_INFO("ordering", "order %s deleted", id);
	return is_success(resp);
}

int
ordering_http_routes(struct http_router *router, struct ordering *o)
{
	static const struct {
		enum http_method method;
		const char *pattern;
		http_handler_fn fn;
	} routes[] = {
	    {HTTP_GET, "/orders", get_orders},
	    {HTTP_GET, "/orders/{orderName}", get_orders_by_name},
	    {HTTP_GET, "/orders/customer/{customerId}", get_orders_by_customer},
	    {HTTP_POST, "/orders", post_order},
	    {HTTP_PUT, "/orders", put_order},
	    {HTTP_DELETE, "/orders/{id}", delete_order},
	};

	for (size_t i = 0; i < MS_ARRAY_SIZE(routes); i++) {
		int rc = http_route_add(router, routes[i].method,
		                        routes[i].pattern, routes[i].fn, o);

		if (rc != 0) {
			MS_ERROR("ordering", "cannot add route %s: %s",
			         routes[i].pattern, ms_strerror(rc));
			return rc;
		}
	}
	return 0;
}
