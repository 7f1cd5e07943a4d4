/* SPDX-License-Identifier: MIT */
/*
 * The DiscountProtoService handlers (proto/discount.proto), served on the
 * bus: in process they are function calls from Basket; from outside they
 * are reached through whichever transport listens here (gRPC, nng). They
 * follow the original Discount.Grpc (reference/aspnetrun.md §2.3) with the
 * differences written where they happen: coupons are validated, product
 * names are unique, and UpdateDiscount of an unknown id is NOT_FOUND
 * rather than the original's UNKNOWN.
 *
 * Threads: the bus's calling or worker threads, many at once; the handlers
 * keep no state of their own beyond the store.
 */
#include <assert.h>
#include <ctype.h>
#include <time.h>
#include <string.h>

#include "bus/bus.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "discount.h"
#include "discount.pb-c.h"

/* is_blank tells whether |s| is empty or only ASCII white space, as .NET's
 * string.IsNullOrWhiteSpace would for the names we accept. */
static bool
is_blank(const char *s)
{
	for (; *s; s++)
		if (!isspace((unsigned char)*s))
			return false;
	return true;
}

/* has_control tells whether |s| holds a control character; a product name
 * needs none (ms_utf8_valid lets tab, CR and LF through), and names are
 * logged: a newline in one would forge log lines. */
static bool
has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/*
 * check_coupon validates the coupon of a Create/Update request into |out|,
 * or answers INVALID_ARGUMENT naming the field at fault. The original
 * validated nothing but the coupon's presence; a negative amount or a
 * blank product name would have been stored as sent.
 */
static int
check_coupon(struct bus_rpc *rpc, const Discount__CouponModel *m,
             struct discount_coupon *out)
{
	const char *name, *desc;
	size_t nlen, dlen;

	if (!m)
		return bus_rpc_error(rpc, MS_EINVAL, "Invalid request object.");
	name = m->productname ? m->productname : "";
	desc = m->description ? m->description : "";
	nlen = strlen(name);
	dlen = strlen(desc);
	if (!ms_utf8_valid(name, nlen) || has_control(name))
		return bus_rpc_error(rpc, MS_EINVAL,
		                     "Invalid request object: productName must "
		                     "be text without control characters.");
	if (is_blank(name))
		return bus_rpc_error(rpc, MS_EINVAL,
		                     "Invalid request object: productName is "
		                     "required.");
	if (nlen > DISCOUNT_NAME_MAX)
		return bus_rpc_error(rpc, MS_EINVAL,
		                     "Invalid request object: productName must "
		                     "be at most %d bytes.",
		                     DISCOUNT_NAME_MAX);
	if (!ms_utf8_valid(desc, dlen))
		return bus_rpc_error(rpc, MS_EINVAL,
		                     "Invalid request object: description must "
		                     "be text without control characters.");
	if (dlen > DISCOUNT_DESC_MAX)
		return bus_rpc_error(rpc, MS_EINVAL,
		                     "Invalid request object: description must "
		                     "be at most %d bytes.",
		                     DISCOUNT_DESC_MAX);
	if (m->amount < 0)
		return bus_rpc_error(rpc, MS_EINVAL,
		                     "Invalid request object: amount must not "
		                     "be negative.");
	out->id = m->id;
	memcpy(out->product_name, name, nlen + 1);
	memcpy(out->description, desc, dlen + 1);
	out->amount = m->amount;
	return 0;
}

/*
 * hold implements the debug.discount_delay_ms test hook: the handler waits
 * before answering, so that callers' deadlines can expire on purpose. Off
 * (0) unless configured.
 */
static void
hold(const struct discount *d)
{
	struct timespec ts;

	if (d->delay_ms <= 0)
		return;
	/* Logged so that a test can wait for a call to be in the handler. */
	MS_INFO("discount", "holding the call %d ms (debug.discount_delay_ms)",
	        d->delay_ms);
	ts.tv_sec = d->delay_ms / 1000;
	ts.tv_nsec = (long)(d->delay_ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* fill_reply copies |c| into the reply, its strings into the call's memory
 * (the reply is packed after the handler returns). */
static int
fill_reply(struct bus_rpc *rpc, const struct discount_coupon *c,
           Discount__CouponModel *out)
{
	out->id = c->id;
	out->amount = c->amount;
	out->productname = bus_rpc_strdup(rpc, c->product_name);
	out->description = bus_rpc_strdup(rpc, c->description);
	if (!out->productname || !out->description)
		return MS_ENOMEM;
	return 0;
}

static int
get_discount(void *ctx, struct bus_rpc *rpc, const ProtobufCMessage *req,
             ProtobufCMessage *reply)
{
	struct discount *d = ctx;
	const Discount__GetDiscountRequest *in =
	    (const Discount__GetDiscountRequest *)req;
	Discount__CouponModel *out = (Discount__CouponModel *)reply;
	struct discount_coupon c;
	int rc;

	hold(d);

	rc = discount_store_get(d->rd, in->productname ? in->productname : "",
	                        &c);
	if (rc == MS_ENOTFOUND) {
		/* Not an error in the original: a zero coupon, so that a
		 * basket without a discount prices at full price. The
		 * strings are static, which the packer only reads. */
		out->id = 0;
		out->productname = (char *)"No Discount";
		out->description = (char *)"No Discount Desc";
		out->amount = 0;
	} else if (rc == 0) {
		rc = fill_reply(rpc, &c, out);
		if (rc != 0)
			return rc;
	} else {
		return rc;
	}
	/* Debug, not the original's info: Basket asks once per item of
	 * every stored cart, which would flood the log under load. */
	MS_DEBUG("discount",
	         "Discount is retrieved for ProductName: %s, "
	         "Amount: %d",
	         out->productname, (int)out->amount);
	return 0;
}

static int
create_discount(void *ctx, struct bus_rpc *rpc, const ProtobufCMessage *req,
                ProtobufCMessage *reply)
{
	struct discount *d = ctx;
	const Discount__CreateDiscountRequest *in =
	    (const Discount__CreateDiscountRequest *)req;
	struct discount_coupon c;
	int rc;

	hold(d);

	rc = check_coupon(rpc, in->coupon, &c);
	if (rc != 0)
		return rc;
	/* The request's id is ignored: the row gets a new one. */
	rc = discount_store_create(d->st, &c);
	if (rc == MS_EEXIST)
		return bus_rpc_error(rpc, rc,
		                     "Discount with ProductName=%s already "
		                     "exists.",
		                     c.product_name);
	if (rc != 0)
		return rc;
	MS_INFO("discount",
	        "Discount is successfully created. ProductName: "
	        "%s, Id: %d",
	        c.product_name, (int)c.id);
	return fill_reply(rpc, &c, (Discount__CouponModel *)reply);
}

static int
update_discount(void *ctx, struct bus_rpc *rpc, const ProtobufCMessage *req,
                ProtobufCMessage *reply)
{
	struct discount *d = ctx;
	const Discount__UpdateDiscountRequest *in =
	    (const Discount__UpdateDiscountRequest *)req;
	struct discount_coupon c;
	int rc;

	hold(d);

	rc = check_coupon(rpc, in->coupon, &c);
	if (rc != 0)
		return rc;
	rc = discount_store_update(d->st, &c);
	if (rc == MS_ENOTFOUND)
		return bus_rpc_error(
		    rpc, rc, "Discount with Id=%d is not found.", (int)c.id);
	if (rc == MS_EEXIST)
		return bus_rpc_error(rpc, rc,
		                     "Discount with ProductName=%s already "
		                     "exists.",
		                     c.product_name);
	if (rc != 0)
		return rc;
	MS_INFO("discount",
	        "Discount is successfully updated. ProductName: "
	        "%s, Id: %d",
	        c.product_name, (int)c.id);
	return fill_reply(rpc, &c, (Discount__CouponModel *)reply);
}

static int
delete_discount(void *ctx, struct bus_rpc *rpc, const ProtobufCMessage *req,
                ProtobufCMessage *reply)
{
	struct discount *d = ctx;
	const Discount__DeleteDiscountRequest *in =
	    (const Discount__DeleteDiscountRequest *)req;
	const char *name = in->productname ? in->productname : "";
	int rc;

	hold(d);

	rc = discount_store_delete(d->st, name);
	if (rc == MS_ENOTFOUND)
		return bus_rpc_error(rpc, rc,
		                     "Discount with ProductName=%s is not "
		                     "found.",
		                     name);
	if (rc != 0)
		return rc;
	MS_INFO("discount", "Discount is successfully deleted. ProductName: %s",
	        name);
	((Discount__DeleteDiscountResponse *)reply)->success = 1;
	return 0;
}

/* In the order of the service's methods in the .proto, which is the order
 * of discount__discount_proto_service__descriptor.methods[]. */
static const bus_handler_fn handlers[] = {
    get_discount,
    create_discount,
    update_discount,
    delete_discount,
};
static const char *const handler_names[] = {
    "GetDiscount",
    "CreateDiscount",
    "UpdateDiscount",
    "DeleteDiscount",
};

static const char *const admin_methods[] = {
    "CreateDiscount",
    "UpdateDiscount",
    "DeleteDiscount",
};

int
discount_rpc_serve(struct bus *bus, struct discount *d)
{
	const ProtobufCServiceDescriptor *svc =
	    &discount__discount_proto_service__descriptor;
	int rc;

	/* A reordered or extended .proto is a programmer error: the table
	 * above must follow it. */
	assert(svc->n_methods == MS_ARRAY_SIZE(handlers));
	for (size_t i = 0; i < MS_ARRAY_SIZE(handlers); i++)
		assert(strcmp(svc->methods[i].name, handler_names[i]) == 0);
	(void)handler_names;
	rc = bus_serve(bus, svc, handlers, d);
	/* The admin RPCs: with grpc.api_key set, a caller from outside must
	 * present the key (the listener checks, bus_restrict). GetDiscount
	 * stays open: Basket calls it. */
	for (size_t i = 0; rc == 0 && i < MS_ARRAY_SIZE(admin_methods); i++)
		rc = bus_restrict(bus, svc, admin_methods[i]);
	/* GetDiscount is a point read on its own connection (discount.h):
	 * quick, so a listener may run it on its I/O thread. Not with the
	 * test hook, which makes it wait. */
	if (rc == 0 && d->delay_ms <= 0)
		rc = bus_inline(bus, svc, "GetDiscount");
	return rc;
}
