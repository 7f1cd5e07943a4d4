/* SPDX-License-Identifier: MIT */
/*
 * The Basket module: a shopping cart per user name, stored in its own
 * SQLite database, priced with Discount's coupons (a bus call), and checked
 * out into a BasketCheckoutEvent that Ordering consumes (an outbox row,
 * relayed by the bus).
 *
 * This file holds the module's ops (init / stop / fini), its health checks,
 * and the two operations that go beyond one SQL statement: storing a cart
 * (coupons, then one transaction) and checking out (one transaction that
 * deletes the cart and records the event, so that neither can happen
 * without the other — the original publishes, then deletes, and can lose or
 * duplicate a checkout in between).
 *
 * Threads: init/fini on the main thread; basket_store_cart and
 * basket_checkout on HTTP worker threads, many at once. The database is
 * reached only under the store's lock, and never across a bus call.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "basket_priv.h"
#include "core/config.h"
#include "core/err.h"
#include "core/health.h"
#include "core/log.h"
#include "core/money.h"
#include "core/trace.h"
#include "discount.pb-c.h"
#include "events.pb-c.h"
#include "modules/module.h"

#define EVENT_TYPE "monoshop.events.BasketCheckoutEvent"

int
basket_cart_total(const struct basket_cart *cart, int64_t *total)
{
	int64_t t = 0;

	for (size_t i = 0; i < cart->nitems; i++) {
		int rc = ms_money_mul_add(&t, cart->items[i].price_cents,
		                          cart->items[i].quantity);

		if (rc != 0) {
			return rc;
		}
	}
	*total = t;
	return 0;
}

/* ---- storing a cart: coupons ------------------------------------------ */

/* The coupons looked up during one store request, by product name, so
 * that a product listed twice costs one call. Bounded by the cart. */
struct coupon_cache {
	size_t n;
	struct {
		const char *name; /* points into the cart being stored */
		int64_t amount_cents;
	} e[BASKET_MAX_ITEMS];
};

/*
 * coupon_lookup asks Discount for |name|'s coupon. Every failure of the
 * call is a 503 "Discount service is unavailable" — including a deadline,
 * which the bus reports as MS_ETIMEDOUT (504 in general): to a REST client
 * of Basket it is a dependency that is down, not a gateway timeout. The one
 * exception is MS_EINVAL, Discount saying the request itself is bad.
 */
static int
coupon_lookup(struct basket *b, const char *name, int64_t *amount_cents,
              struct http_resp *resp)
{
	Discount__GetDiscountRequest req = DISCOUNT__GET_DISCOUNT_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	struct bus_status st = {0};
	const Discount__CouponModel *coupon;
	int64_t amount;
	int rc;

	req.productname = (char *)name;
	rc = bus_call(b->bus, &discount__discount_proto_service__descriptor,
	              "GetDiscount", &req.base, &reply, 0, &st);
	if (rc == MS_EINVAL) {
		MS_WARN("basket", "GetDiscount(\"%s\") rejected: %s", name,
		        st.detail);
		return http_resp_fail(resp, MS_EINVAL,
		                      "Discount service rejected product "
		                      "name \"%s\": %s",
		                      name, st.detail[0] ? st.detail : "");
	}
	if (rc != 0) {
		const char *why = st.detail[0] ? st.detail : ms_strerror(rc);

		MS_WARN("basket", "GetDiscount(\"%s\") failed: %s (%s)", name,
		        why, ms_errname(rc));
		return http_resp_fail(resp, MS_EUNAVAIL,
		                      "Discount service is unavailable: %s",
		                      why);
	}
	coupon = (const Discount__CouponModel *)reply;
	amount = coupon->amount;
	protobuf_c_message_free_unpacked(reply, NULL);
	/* A coupon takes money off; a negative one would raise the price,
	 * which no coupon is for: treat it as no coupon. */
	*amount_cents = amount > 0 ? amount * 100 : 0;
	return 0;
}

static int
coupon_get(struct basket *b, struct coupon_cache *cache, const char *name,
           int64_t *amount_cents, struct http_resp *resp)
{
	int rc;

	for (size_t i = 0; i < cache->n; i++) {
		if (strcmp(cache->e[i].name, name) == 0) {
			*amount_cents = cache->e[i].amount_cents;
			return 0;
		}
	}
	if ((rc = coupon_lookup(b, name, amount_cents, resp)) != 0) {
		return rc;
	}
	/* The cache holds one entry per distinct name of at most
	 * BASKET_MAX_ITEMS items, so it cannot be full here. */
	cache->e[cache->n].name = name;
	cache->e[cache->n].amount_cents = *amount_cents;
	cache->n++;
	return 0;
}

/*
 * find_discounted returns the stored item that |it| is a copy of, or NULL.
 *
 * "Never twice": the original takes the coupon off whatever price the
 * client sends, and its web client POSTs back the whole cart it got from
 * GET, so every store discounts the earlier items again (aspnetrun.md §1.4,
 * §6). We keep each item's list price next to its discounted price. An
 * incoming item whose product id and name match a stored item, and whose
 * price equals that item's stored *discounted* price, is that item coming
 * back as GET showed it: it keeps its stored list and discounted prices and
 * costs no Discount call. Any other price is a list price, and is
 * discounted.
 *
 * The one edge case: a client that really means a list price equal to the
 * discounted price it was shown earlier for the same product (500 shown as
 * 350, then 350 sent as the new list price) is charged 350, not 200.
 * Nothing in the request can tell the two apart; a price that GET showed
 * coming back is by far the likelier meaning, and this way no price is ever
 * discounted twice.
 *
 * A stored item keeps the coupon it was priced with even if Discount's
 * coupon has changed since: the price the customer saw stays the price.
 */
static const struct basket_item *
find_discounted(const struct basket_cart *stored, const struct basket_item *it)
{
	for (size_t i = 0; i < stored->nitems; i++) {
		const struct basket_item *s = &stored->items[i];

		if (s->price_cents == it->price_cents &&
		    strcmp(s->product_id, it->product_id) == 0 &&
		    strcmp(s->product_name, it->product_name) == 0) {
			return s;
		}
	}
	return NULL;
}

int
basket_store_cart(struct basket *b, struct basket_cart *cart,
                  struct http_resp *resp)
{
	/* Owned here, freed on every path below. */
	struct basket_cart *old = malloc(sizeof(*old));
	struct coupon_cache *cache = calloc(1, sizeof(*cache));
	int rc;

	if (old == NULL || cache == NULL) {
		rc = MS_ENOMEM;
		goto out;
	}
	/*
	 * Read the stored cart first, then make the Discount calls with no
	 * lock held (they may wait up to the call timeout), then write in one
	 * transaction. Two stores of the same cart racing each other end as
	 * last-writer-wins, as in the original; each one's prices are
	 * consistent with the cart it read.
	 */
	store_lock(b->st);
	rc = basket_db_load(b->st, cart->user_name, old);
	store_unlock(b->st);
	if (rc == MS_ENOTFOUND) {
		old->nitems = 0;
		rc = 0;
	}
	if (rc != 0) {
		http_resp_fail(resp, rc, "Cannot read the basket of %s: %s",
		               cart->user_name, ms_strerror(rc));
		goto out;
	}

	for (size_t i = 0; i < cart->nitems; i++) {
		struct basket_item *it = &cart->items[i];
		const struct basket_item *prev = find_discounted(old, it);
		int64_t amount;

		if (prev != NULL) {
			it->list_price_cents = prev->list_price_cents;
			it->price_cents = prev->price_cents;
			continue;
		}
		it->list_price_cents = it->price_cents;
		rc = coupon_get(b, cache, it->product_name, &amount, resp);
		if (rc != 0) {
			goto out; /* nothing stored */
		}
		/* Never below 0 (the original lets it go negative). */
		it->price_cents = it->list_price_cents > amount
		                      ? it->list_price_cents - amount
		                      : 0;
	}

	if ((rc = store_begin(b->st)) != 0) {
		http_resp_fail(resp, rc, "Cannot store the basket: %s",
		               ms_strerror(rc));
		goto out;
	}
	if ((rc = basket_db_save(b->st, cart, ms_wall_ms())) != 0) {
		store_rollback(b->st);
		http_resp_fail(resp, rc, "Cannot store the basket: %s",
		               ms_strerror(rc));
		goto out;
	}
	if ((rc = store_commit(b->st)) != 0) {
		http_resp_fail(resp, rc, "Cannot store the basket: %s",
		               ms_strerror(rc));
		goto out;
	}
	MS_DEBUG("basket", "stored the basket of %s: %zu items",
	         cart->user_name, cart->nitems);
out:
	free(cache);
	free(old);
	return rc;
}

/* ---- checkout --------------------------------------------------------- */

/* Everything a checkout builds, in one allocation owned by
 * basket_checkout: the cart read in the transaction and the event's items,
 * which point into it. */
struct checkout_buf {
	struct basket_cart cart;
	Monoshop__Events__BasketCheckoutItem items[BASKET_MAX_ITEMS];
	Monoshop__Events__BasketCheckoutItem *pitems[BASKET_MAX_ITEMS];
	char prices[BASKET_MAX_ITEMS][MS_MONEY_STRLEN];
};

/*
 * pack_event builds the event from |co| and |cart| and packs it into a
 * malloc'd buffer (*out, owned by the caller). The event's strings borrow
 * from |co|, |cart| and |buf|; only the packed bytes outlive this call.
 */
static int
pack_event(const struct basket_checkout *co, struct checkout_buf *buf,
           const char *id, const char *occurred, const char *total,
           uint8_t **out, size_t *len)
{
	Monoshop__Events__BasketCheckoutEvent ev =
	    MONOSHOP__EVENTS__BASKET_CHECKOUT_EVENT__INIT;
	const struct basket_cart *cart = &buf->cart;

	/* protobuf-c's string members are `char *`; nothing writes them. */
	ev.id = (char *)id;
	ev.occurredon = (char *)occurred;
	ev.username = (char *)co->user_name;
	ev.customerid = (char *)co->customer_id;
	ev.totalprice = (char *)total;
	ev.firstname = (char *)co->first_name;
	ev.lastname = (char *)co->last_name;
	ev.emailaddress = (char *)co->email_address;
	ev.addressline = (char *)co->address_line;
	ev.country = (char *)co->country;
	ev.state = (char *)co->state;
	ev.zipcode = (char *)co->zip_code;
	ev.cardname = (char *)co->card_name;
	ev.cardnumber = (char *)co->card_number;
	ev.expiration = (char *)co->expiration;
	ev.cvv = (char *)co->cvv;
	ev.paymentmethod = co->payment_method;
	for (size_t i = 0; i < cart->nitems; i++) {
		const struct basket_item *it = &cart->items[i];
		Monoshop__Events__BasketCheckoutItem *e = &buf->items[i];

		monoshop__events__basket_checkout_item__init(e);
		e->productid = (char *)it->product_id;
		e->productname = (char *)it->product_name;
		/* Bounded by BASKET_QUANTITY_MAX at the edge. */
		e->quantity = (int32_t)it->quantity;
		e->price =
		    ms_money_format_fixed(it->price_cents, buf->prices[i]);
		e->color = (char *)it->color;
		buf->pitems[i] = e;
	}
	ev.n_items = cart->nitems;
	ev.items = buf->pitems;

	*len = protobuf_c_message_get_packed_size(&ev.base);
	if ((*out = malloc(*len ? *len : 1)) == NULL) {
		return MS_ENOMEM;
	}
	protobuf_c_message_pack(&ev.base, *out);
	return 0;
}

int
basket_checkout(struct basket *b, const struct basket_checkout *co,
                const char *traceparent, char event_id[MS_UUID_STRLEN],
                char *total, struct http_resp *resp)
{
	struct checkout_buf *buf = malloc(sizeof(*buf)); /* owned here */
	uint8_t *payload = NULL;                         /* owned here */
	char event_trace[MS_TRACEPARENT_SIZE];
	char occurred[MS_TIME_STRLEN];
	int64_t wall = ms_wall_ms();
	int64_t total_cents;
	size_t len = 0;
	int deleted;
	int rc;

	if (buf == NULL) {
		return MS_ENOMEM;
	}
	ms_uuid_v4(event_id);
	ms_time_rfc3339(wall, occurred);
	/* The event is a new span of the request's trace. */
	ms_trace_new_child(traceparent, event_trace);

	if ((rc = store_begin(b->st)) != 0) {
		http_resp_fail(resp, rc, "Cannot check out: %s",
		               ms_strerror(rc));
		goto out;
	}
	rc = basket_db_load(b->st, co->user_name, &buf->cart);
	if (rc == MS_ENOTFOUND) {
		store_rollback(b->st);
		ms_strlcpy(resp->title, "BasketNotFoundException",
		           sizeof(resp->title));
		http_resp_fail(resp, rc,
		               "Entity \"Basket\" (%s) was not found.",
		               co->user_name);
		goto out;
	}
	if (rc == 0 &&
	    (rc = basket_cart_total(&buf->cart, &total_cents)) != 0) {
		/* Every stored cart's total was checked when it was stored. */
		rc = MS_ECORRUPT;
	}
	if (rc == 0) {
		ms_money_format_fixed(total_cents, total);
		rc = pack_event(co, buf, event_id, occurred, total, &payload,
		                &len);
	}
	if (rc == 0) {
		rc = store_outbox_add(b->st, event_id, EVENT_TYPE, payload, len,
		                      event_trace, wall);
	}
	if (rc == 0) {
		rc = basket_db_delete(b->st, co->user_name, &deleted);
	}
	if (rc != 0) {
		store_rollback(b->st);
		http_resp_fail(resp, rc, "Cannot check out: %s",
		               ms_strerror(rc));
		goto out;
	}
	if ((rc = store_commit(b->st)) != 0) {
		http_resp_fail(resp, rc, "Cannot check out: %s",
		               ms_strerror(rc));
		goto out;
	}
	store_outbox_notify(b->st);
	/* Never log the card number or the CVV. */
	MS_INFO("basket", "basket %s checked out: event %s, total %s",
	        co->user_name, event_id, total);
out:
	free(payload);
	free(buf);
	return rc;
}

/* ---- module ops ------------------------------------------------------- */

static int
health_module(void *arg, char *desc, size_t desclen)
{
	struct basket *b = arg;

	if (atomic_load(&b->stopping)) {
		snprintf(desc, desclen, "basket module is stopping");
		return MS_ECLOSED;
	}
	return 0;
}

static int
health_db(void *arg, char *desc, size_t desclen)
{
	struct basket *b = arg;

	return basket_db_ping(b->st, desc, desclen);
}

static void basket_fini(void *state);

static int
basket_init(struct module_ctx *ctx, void **state)
{
	struct basket *b = calloc(1, sizeof(*b)); /* owned by the module */
	struct store_opts opts = {0};
	int64_t busy = ms_config_int(ctx->cfg, "store.busy_timeout_ms");
	const char *sync = ms_config_str(ctx->cfg, "store.synchronous");
	int rc;

	*state = NULL;
	if (b == NULL) {
		return MS_ENOMEM;
	}
	b->bus = ctx->bus;
	b->cfg = ctx->cfg;
	opts.busy_timeout_ms = busy > 0 && busy < INT_MAX ? (int)busy : 0;
	opts.sync_full = sync != NULL && strcasecmp(sync, "full") == 0;
	rc = store_open(&b->st, ctx->data_dir, "basket", basket_migrations,
	                basket_nmigrations, &opts);
	if (rc != 0) {
		MS_ERROR("basket", "cannot open the basket database in %s: %s",
		         ctx->data_dir, ms_strerror(rc));
		goto fail;
	}
	if ((rc = ms_health_register("basket", "module", health_module, b)) !=
	        0 ||
	    (rc = ms_health_register("basketdb", "database", health_db, b)) !=
	        0) {
		MS_ERROR("basket", "cannot register health checks: %s",
		         ms_strerror(rc));
		goto fail;
	}
	if (ctx->router != NULL &&
	    (rc = basket_http_register(b, ctx->router)) != 0) {
		MS_ERROR("basket", "cannot register routes: %s",
		         ms_strerror(rc));
		goto fail;
	}
	ctx->outbox_store = b->st;
	*state = b;
	return 0;
fail:
	basket_fini(b);
	return rc;
}

/* stop: the module has no background work of its own (the relay is
 * main's); it only reports itself as stopping from now on. */
static void
basket_stop(void *state)
{
	struct basket *b = state;

	if (b != NULL) {
		atomic_store(&b->stopping, true);
	}
}

static void
basket_fini(void *state)
{
	struct basket *b = state;

	if (b == NULL) {
		return;
	}
	ms_health_unregister(b);
	store_close(b->st);
	free(b);
}

static const char *const basket_calls[][2] = {
    {"discount", "discount.DiscountProtoService"},
    {NULL, NULL},
};

static const char *const basket_publishes[] = {
    "monoshop.events.BasketCheckoutEvent",
    NULL,
};

const struct ms_module basket_module = {
    .name = "basket",
    .calls = basket_calls,
    .publishes = basket_publishes,
    .init = basket_init,
    .stop = basket_stop,
    .fini = basket_fini,
};
