/* SPDX-License-Identifier: MIT */
/*
 * The BasketCheckoutEvent consumer: a checkout becomes an order
 * (reference/aspnetrun.md §3.5), exactly once however often the event is
 * delivered.
 *
 * Mapping as in the original: the order's name is the user name, shipping
 * and billing are both the event's address, the payment is the event's;
 * unlike the original, the items are the event's own (the original
 * hard-coded two placeholder items), and an event without items (one from
 * the original .NET Basket) becomes an order without items whose total is
 * the event's totalPrice.
 *
 * Verdicts (bus.h): 0 once the order and the inbox claim are committed, or
 * when the event was already handled (a duplicate: acknowledged, nothing
 * written); MS_EINVAL when the event can never become an order (poison:
 * dead-lettered, logged at warn with the reasons, never with the card
 * number or CVV); any other error is transient (redelivered).
 *
 * Batches: a transport that has several events in hand (AMQP) delivers
 * them in one transaction (batch_begin .. batch_commit), each event a
 * savepoint of it, so a refused event leaves nothing and the others stay;
 * a duplicate inside the batch finds the claim made earlier in it. The
 * "order created" line of an event in a batch is logged before the batch
 * commits, and says so; a failed commit is logged by the transport, and
 * the events are delivered again.
 *
 * Threads: a transport delivery thread, possibly several at once; the
 * store's mutex serialises the writes (a batch holds it from begin to
 * commit) and the inbox makes duplicates delivered concurrently safe (one
 * claim commits, the other finds it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "core/err.h"
#include "core/log.h"
#include "core/money.h"
#include "core/util.h"
#include "events.pb-c.h"
#include "http/http.h"
#include "ordering.h"

/* guid_field copies a GUID of the event into |out|, normalized; "" stays
 * "" (the store reports it missing); a malformed one is reported here. */
static void
guid_field(const char *v, const char *path, const char *label,
           char out[MS_UUID_STRLEN], struct http_resp *errs)
{
	out[0] = '\0';
	if (!v || !*v)
		return;
	if (!ms_uuid_valid(v)) {
		http_verr_add(errs, path, "'%s' must be a GUID", label);
		return;
	}
	ms_strlcpy(out, v, MS_UUID_STRLEN);
	ms_uuid_normalize(out);
}

/* money_field parses an exact decimal of the event; "" is 0 (the store
 * then reports it as not positive). */
static void
money_field(const char *v, const char *path, const char *label, int64_t *out,
            struct http_resp *errs)
{
	*out = 0;
	if (!v || !*v)
		return;
	if (ms_money_parse(v, strlen(v), out) != 0)
		http_verr_add(errs, path,
		              "'%s' must be a number with at most 2 decimals "
		              "and at most %d digits",
		              label, MS_MONEY_MAX_DIGITS);
}

/*
 * map_event fills |o| from |e|; strings are borrowed from |e|. Items go to
 * a new array *items (owned by the caller). Mapping errors go to |errs|.
 */
static int
map_event(const Monoshop__Events__BasketCheckoutEvent *e,
          struct ordering_order *o, struct ordering_item **items,
          struct http_resp *errs)
{
	struct ordering_address addr = {
	    .present = true,
	    .first_name = e->firstname,
	    .last_name = e->lastname,
	    .email_address = e->emailaddress,
	    .address_line = e->addressline,
	    .country = e->country,
	    .state = e->state,
	    .zip_code = e->zipcode,
	};

	memset(o, 0, sizeof(*o));
	*items = NULL;
	o->name = e->username;
	o->shipping = addr;
	o->billing = addr;
	o->payment.present = true;
	o->payment.card_name = e->cardname;
	o->payment.card_number = e->cardnumber;
	o->payment.expiration = e->expiration;
	o->payment.cvv = e->cvv;
	o->payment.method = e->paymentmethod;
	guid_field(e->customerid, "order.customerId", "customerId",
	           o->customer_id, errs);

	o->nitems = e->n_items;
	if (e->n_items == 0) {
		money_field(e->totalprice, "order.totalPrice", "totalPrice",
		            &o->total_cents, errs);
		return 0;
	}
	if (e->n_items > ORDERING_MAX_ITEMS)
		return 0; /* the store reports the count */
	*items = calloc(e->n_items, sizeof(**items));
	if (!*items)
		return MS_ENOMEM;
	o->items = *items;
	for (size_t i = 0; i < e->n_items; i++) {
		const Monoshop__Events__BasketCheckoutItem *it = e->items[i];
		char path[64];

		snprintf(path, sizeof(path), "order.orderItems[%zu].productId",
		         i);
		guid_field(it->productid, path, "productId",
		           (*items)[i].product_id, errs);
		(*items)[i].quantity = it->quantity;
		snprintf(path, sizeof(path), "order.orderItems[%zu].price", i);
		money_field(it->price, path, "price", &(*items)[i].price_cents,
		            errs);
	}
	return 0;
}

/* log_rejected writes one warn line with the reasons (field paths and
 * messages only: the messages never quote a value, so no card number or
 * CVV reaches the log). */
static void
log_rejected(const char *evid, const struct http_resp *errs)
{
	char why[512];
	size_t n =
	    errs->nverrs < HTTP_MAX_VERRS ? errs->nverrs : HTTP_MAX_VERRS;
	size_t off = 0;

	why[0] = '\0';
	for (size_t i = 0; i < n && off < sizeof(why); i++) {
		int w = snprintf(why + off, sizeof(why) - off, "%s%s: %s",
		                 i ? "; " : "", errs->verrs[i].property,
		                 errs->verrs[i].message);
		if (w < 0)
			break;
		off += (size_t)w;
	}
	MS_WARN("ordering", "checkout event %s rejected: %s", evid, why);
}

static int
on_checkout(void *ctx, const struct bus_event *ev, const ProtobufCMessage *msg)
{
	struct ordering *o = ctx;
	const Monoshop__Events__BasketCheckoutEvent *e =
	    (const Monoshop__Events__BasketCheckoutEvent *)msg;
	const char *type =
	    ev->type ? ev->type
	             : monoshop__events__basket_checkout_event__descriptor.name;
	struct ordering_item *items = NULL;
	struct ordering_order ord;
	struct http_resp *errs;
	bool duplicate = false;
	char evid[MS_UUID_STRLEN];
	int rc;

	/* The bus event's id is the idempotency key (set once, when Basket
	 * recorded the event; MassTransit's messageId for .NET publishers).
	 * Without one a redelivery could not be recognised, and a doubled
	 * order is worse than a dead-lettered event. */
	ms_strlcpy(evid, ev->id[0] ? ev->id : (e->id ? e->id : ""),
	           sizeof(evid));
	for (char *c = evid; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?'; /* it is logged: no forged lines */
	if (!evid[0]) {
		MS_WARN("ordering", "checkout event without an id rejected");
		return MS_EINVAL;
	}

	/* About 9 KiB: on the heap, not on a transport thread's stack. */
	errs = calloc(1, sizeof(*errs)); /* owned here, freed below */
	if (!errs)
		return MS_ENOMEM;
	rc = map_event(e, &ord, &items, errs);
	if (rc == 0)
		rc = ordering_store_create(o->st, &ord, ORDERING_CHECK_EVENT,
		                           evid, type, ev->in_batch, &duplicate,
		                           errs);
	if (rc == 0) {
		MS_INFO("ordering",
		        "order %s created from checkout event %s (user %s)%s",
		        ord.id, evid, ord.name,
		        ev->in_batch ? ", committed with its batch" : "");
	} else if (rc == MS_EEXIST && duplicate) {
		MS_DEBUG("ordering", "checkout event %s already handled", evid);
		rc = 0;
	} else if (rc == MS_EVALIDATION) {
		log_rejected(evid, errs);
		rc = MS_EINVAL;
	} else {
		MS_WARN("ordering",
		        "checkout event %s not handled, will be retried: %s",
		        evid, ms_strerror(rc));
	}
	free(items);
	free(errs);
	return rc;
}

/* Batches (bus.h): one transaction for the events a transport has in
 * hand, each event a savepoint of it; the store stays locked from begin
 * to commit, on the delivery thread. */
static int
batch_begin(void *ctx)
{
	struct ordering *o = ctx;

	return ordering_store_batch_begin(o->st);
}

static int
batch_commit(void *ctx)
{
	struct ordering *o = ctx;
	int rc = ordering_store_batch_commit(o->st);

	if (rc != 0)
		MS_WARN("ordering",
		        "a batch of checkout events was not committed (%s): "
		        "they will be delivered again",
		        ms_strerror(rc));
	return rc;
}

static void
batch_rollback(void *ctx)
{
	struct ordering *o = ctx;

	ordering_store_batch_rollback(o->st);
}

static const struct bus_batch_ops batch_ops = {
    .begin = batch_begin,
    .commit = batch_commit,
    .rollback = batch_rollback,
};

int
ordering_events_subscribe(struct bus *bus, struct ordering *o)
{
	return bus_subscribe_batch(
	    bus, &monoshop__events__basket_checkout_event__descriptor,
	    on_checkout, &batch_ops, o);
}
