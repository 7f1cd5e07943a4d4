/* SPDX-License-Identifier: MIT */
/*
 * Tests of the Discount module through the bus, as Basket or a gRPC client
 * reaches it: a real bus (in-process transport), the module initialised on
 * a temporary data directory, and the four DiscountProtoService RPCs called
 * with bus_call.
 *
 * Covered: the seed; Get of an unknown or differently cased product (the
 * zero coupon); Create (new id, the request's ignored), Update and Delete,
 * with NOT_FOUND, INVALID_ARGUMENT (each field named) and ALREADY_EXISTS;
 * persistence across a reopen, the seed running once; health checks.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_core.h"
#include "core/config.h"
#include "core/err.h"
#include "core/health.h"
#include "discount.pb-c.h"
#include "modules/module.h"
#include "store/store.h"
#include "support/tmpdir.h"

static struct {
	char dir[256];
	struct ms_config *cfg;
	struct bus *bus;
	struct module_ctx ctx;
	void *discount;
} E;

/* up creates a bus and the module on E.dir (which must exist). */
static void
up(void)
{
	char err[256] = "";

	ck_assert_int_eq(ms_config_create(&E.cfg), 0);
	/* Serving Discount opens grpc.listen: not the default port, which
	 * another program may hold. */
	ck_assert_int_eq(
	    ms_config_set(E.cfg, "grpc.listen=127.0.0.1:0", "test", NULL, 0),
	    0);
	ck_assert_int_eq(bus_create(&E.bus, E.cfg), 0);
	memset(&E.ctx, 0, sizeof(E.ctx));
	E.ctx.bus = E.bus;
	E.ctx.cfg = E.cfg;
	E.ctx.router = NULL; /* Discount has no REST */
	E.ctx.data_dir = E.dir;
	ck_assert_int_eq(discount_module.init(&E.ctx, &E.discount), 0);
	ck_assert_ptr_nonnull(E.discount);
	ck_assert_ptr_null(E.ctx.outbox_store); /* Discount publishes nothing */
	ck_assert_msg(bus_start(E.bus, err, sizeof(err)) == 0, "%s", err);
}

static void
down(void)
{
	bus_stop(E.bus);
	discount_module.stop(E.discount);
	discount_module.fini(E.discount);
	E.discount = NULL;
	bus_destroy(E.bus);
	E.bus = NULL;
	ms_config_destroy(E.cfg);
	E.cfg = NULL;
}

static void
setup(void)
{
	memset(&E, 0, sizeof(E));
	ck_assert_int_eq(test_tmpdir(E.dir, sizeof(E.dir)), 0);
	up();
}

static void
teardown(void)
{
	down();
	test_rmdir(E.dir);
}

/* ---- calling the RPCs ------------------------------------------------- */

static struct bus_status S; /* the last call's status */

static const ProtobufCServiceDescriptor *const SVC =
    &discount__discount_proto_service__descriptor;

/* get returns the coupon of |name| (the caller frees it). */
static Discount__CouponModel *
get(const char *name)
{
	Discount__GetDiscountRequest req = DISCOUNT__GET_DISCOUNT_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;

	req.productname = (char *)name;
	ck_assert_int_eq(
	    bus_call(E.bus, SVC, "GetDiscount", &req.base, &reply, 0, &S), 0);
	ck_assert_ptr_nonnull(reply);
	return (Discount__CouponModel *)reply;
}

/* write calls Create or Update with |c| (NULL: no coupon) and returns the
 * code; on success *out (may be NULL) receives the reply. */
static int
put_coupon(const char *method, Discount__CouponModel *c,
           Discount__CouponModel **out)
{
	Discount__CreateDiscountRequest creq =
	    DISCOUNT__CREATE_DISCOUNT_REQUEST__INIT;
	Discount__UpdateDiscountRequest ureq =
	    DISCOUNT__UPDATE_DISCOUNT_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	const ProtobufCMessage *req;
	int rc;

	if (strcmp(method, "CreateDiscount") == 0) {
		creq.coupon = c;
		req = &creq.base;
	} else {
		ureq.coupon = c;
		req = &ureq.base;
	}
	rc = bus_call(E.bus, SVC, method, req, &reply, 0, &S);
	ck_assert_int_eq(S.rc, rc);
	if (rc != 0) {
		ck_assert_ptr_null(reply);
		return rc;
	}
	if (out)
		*out = (Discount__CouponModel *)reply;
	else
		protobuf_c_message_free_unpacked(reply, NULL);
	return 0;
}

static int
del(const char *name)
{
	Discount__DeleteDiscountRequest req =
	    DISCOUNT__DELETE_DISCOUNT_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	int rc;

	req.productname = (char *)name;
	rc = bus_call(E.bus, SVC, "DeleteDiscount", &req.base, &reply, 0, &S);
	if (rc == 0) {
		ck_assert(((Discount__DeleteDiscountResponse *)reply)->success);
		protobuf_c_message_free_unpacked(reply, NULL);
	}
	return rc;
}

static void
coupon(Discount__CouponModel *c, int id, const char *name, const char *desc,
       int amount)
{
	discount__coupon_model__init(c);
	c->id = id;
	c->productname = (char *)name;
	c->description = (char *)desc;
	c->amount = amount;
}

#define ck_assert_coupon(c, id_, name_, desc_, amount_)                        \
	do {                                                                   \
		ck_assert_int_eq((c)->id, id_);                                \
		ck_assert_str_eq((c)->productname, name_);                     \
		ck_assert_str_eq((c)->description, desc_);                     \
		ck_assert_int_eq((c)->amount, amount_);                        \
	} while (0)

/* has_coupon tells whether Get finds a real coupon for |name| with
 * |amount|. */
static bool
has_coupon(const char *name, int amount)
{
	Discount__CouponModel *c = get(name);
	bool found = c->id != 0 && c->amount == amount;

	protobuf_c_message_free_unpacked(&c->base, NULL);
	return found;
}

/* ---- tests ------------------------------------------------------------ */

START_TEST(test_get_seed)
{
	Discount__CouponModel *c = get("IPhone X");

	ck_assert_coupon(c, 1, "IPhone X", "IPhone Discount", 150);
	protobuf_c_message_free_unpacked(&c->base, NULL);
	c = get("Samsung 10");
	ck_assert_coupon(c, 2, "Samsung 10", "Samsung Discount", 100);
	protobuf_c_message_free_unpacked(&c->base, NULL);
}
END_TEST

START_TEST(test_get_unknown)
{
	/* Unknown, differently cased (the match is exact), and empty: all
	 * answer OK with the zero coupon, not NOT_FOUND. */
	const char *names[] = {"Nokia 3310", "iphone x", "IPhone X ", ""};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		Discount__CouponModel *c = get(names[i]);

		ck_assert_coupon(c, 0, "No Discount", "No Discount Desc", 0);
		protobuf_c_message_free_unpacked(&c->base, NULL);
	}
}
END_TEST

START_TEST(test_create)
{
	Discount__CouponModel in, *out = NULL, *c;

	coupon(&in, 99, "Pixel 8", "Pixel Discount", 75);
	ck_assert_int_eq(put_coupon("CreateDiscount", &in, &out), 0);
	/* A new id (after the seed's 1 and 2); the sent 99 is ignored. */
	ck_assert_coupon(out, 3, "Pixel 8", "Pixel Discount", 75);
	protobuf_c_message_free_unpacked(&out->base, NULL);
	c = get("Pixel 8");
	ck_assert_coupon(c, 3, "Pixel 8", "Pixel Discount", 75);
	protobuf_c_message_free_unpacked(&c->base, NULL);

	/* Zero is a valid amount, an empty description a valid one. */
	coupon(&in, 0, "Free", "", 0);
	ck_assert_int_eq(put_coupon("CreateDiscount", &in, &out), 0);
	ck_assert_coupon(out, 4, "Free", "", 0);
	protobuf_c_message_free_unpacked(&out->base, NULL);
}
END_TEST

START_TEST(test_create_invalid)
{
	Discount__CouponModel in;
	char name[102];

	ck_assert_int_eq(put_coupon("CreateDiscount", NULL, NULL), MS_EINVAL);
	ck_assert_str_eq(S.detail, "Invalid request object.");

	coupon(&in, 0, "  ", "blank", 10);
	ck_assert_int_eq(put_coupon("CreateDiscount", &in, NULL), MS_EINVAL);
	ck_assert_ptr_nonnull(strstr(S.detail, "productName"));

	coupon(&in, 0, "", "empty", 10);
	ck_assert_int_eq(put_coupon("CreateDiscount", &in, NULL), MS_EINVAL);
	ck_assert_ptr_nonnull(strstr(S.detail, "productName"));

	memset(name, 'x', 101);
	name[101] = '\0';
	coupon(&in, 0, name, "too long", 10);
	ck_assert_int_eq(put_coupon("CreateDiscount", &in, NULL), MS_EINVAL);
	ck_assert_ptr_nonnull(strstr(S.detail, "productName"));
	name[100] = '\0'; /* exactly 100 bytes is fine */
	ck_assert_int_eq(put_coupon("CreateDiscount", &in, NULL), 0);

	coupon(&in, 0, "Negative", "below zero", -1);
	ck_assert_int_eq(put_coupon("CreateDiscount", &in, NULL), MS_EINVAL);
	ck_assert_ptr_nonnull(strstr(S.detail, "amount"));

	coupon(&in, 0, "Tab\tbed", "control", 1);
	ck_assert_int_eq(put_coupon("CreateDiscount", &in, NULL), MS_EINVAL);
	ck_assert_ptr_nonnull(strstr(S.detail, "productName"));

	ck_assert(!has_coupon("Negative", -1));
	ck_assert(!has_coupon("  ", 10));
}
END_TEST

START_TEST(test_create_duplicate)
{
	Discount__CouponModel in;

	/* The original would store a second "IPhone X"; we refuse it. */
	coupon(&in, 0, "IPhone X", "Another IPhone Discount", 10);
	ck_assert_int_eq(put_coupon("CreateDiscount", &in, NULL), MS_EEXIST);
	ck_assert_ptr_nonnull(strstr(S.detail, "IPhone X"));
	ck_assert(has_coupon("IPhone X", 150));
}
END_TEST

START_TEST(test_update)
{
	Discount__CouponModel in, *out = NULL, *c;

	coupon(&in, 1, "IPhone X", "Bigger IPhone Discount", 200);
	ck_assert_int_eq(put_coupon("UpdateDiscount", &in, &out), 0);
	ck_assert_coupon(out, 1, "IPhone X", "Bigger IPhone Discount", 200);
	protobuf_c_message_free_unpacked(&out->base, NULL);
	c = get("IPhone X");
	ck_assert_coupon(c, 1, "IPhone X", "Bigger IPhone Discount", 200);
	protobuf_c_message_free_unpacked(&c->base, NULL);

	/* A rename: the old name is gone. */
	coupon(&in, 2, "Samsung 11", "Samsung Discount", 90);
	ck_assert_int_eq(put_coupon("UpdateDiscount", &in, NULL), 0);
	ck_assert(has_coupon("Samsung 11", 90));
	ck_assert(!has_coupon("Samsung 10", 100));
}
END_TEST

START_TEST(test_update_errors)
{
	Discount__CouponModel in;

	coupon(&in, 42, "Nokia", "Nokia Discount", 5);
	ck_assert_int_eq(put_coupon("UpdateDiscount", &in, NULL), MS_ENOTFOUND);
	ck_assert_str_eq(S.detail, "Discount with Id=42 is not found.");
	ck_assert(!has_coupon("Nokia", 5));

	/* Renaming Samsung's coupon to IPhone's name would make two. */
	coupon(&in, 2, "IPhone X", "clash", 5);
	ck_assert_int_eq(put_coupon("UpdateDiscount", &in, NULL), MS_EEXIST);
	ck_assert(has_coupon("IPhone X", 150));
	ck_assert(has_coupon("Samsung 10", 100));

	ck_assert_int_eq(put_coupon("UpdateDiscount", NULL, NULL), MS_EINVAL);
	ck_assert_str_eq(S.detail, "Invalid request object.");
	coupon(&in, 1, "IPhone X", "negative", -5);
	ck_assert_int_eq(put_coupon("UpdateDiscount", &in, NULL), MS_EINVAL);
	ck_assert_ptr_nonnull(strstr(S.detail, "amount"));
	coupon(&in, 1, " ", "blank", 5);
	ck_assert_int_eq(put_coupon("UpdateDiscount", &in, NULL), MS_EINVAL);
	ck_assert_ptr_nonnull(strstr(S.detail, "productName"));
	ck_assert(has_coupon("IPhone X", 150));
}
END_TEST

START_TEST(test_delete)
{
	Discount__CouponModel *c;

	ck_assert_int_eq(del("Samsung 10"), 0);
	c = get("Samsung 10");
	ck_assert_coupon(c, 0, "No Discount", "No Discount Desc", 0);
	protobuf_c_message_free_unpacked(&c->base, NULL);

	ck_assert_int_eq(del("Samsung 10"), MS_ENOTFOUND);
	ck_assert_str_eq(S.detail,
	                 "Discount with ProductName=Samsung 10 is not found.");
	ck_assert_int_eq(del("iphone x"), MS_ENOTFOUND); /* exact match */
	ck_assert(has_coupon("IPhone X", 150));
}
END_TEST

/* count_rows reads the coupons table with a connection of its own. */
static int
count_rows(void)
{
	char path[300];
	sqlite3 *db;
	sqlite3_stmt *s;
	int n = -1;

	snprintf(path, sizeof(path), "%s/discount.db", E.dir);
	ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM coupons",
	                                    -1, &s, NULL),
	                 SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return n;
}

START_TEST(test_persistence)
{
	Discount__CouponModel in, *c;

	coupon(&in, 0, "Pixel 8", "Pixel Discount", 75);
	ck_assert_int_eq(put_coupon("CreateDiscount", &in, NULL), 0);
	ck_assert_int_eq(del("IPhone X"), 0);
	down();
	ck_assert_int_eq(count_rows(), 2);

	/* Reopened: the change is there, and the seed did not run again
	 * (the deleted seed coupon stays deleted). */
	up();
	c = get("Pixel 8");
	ck_assert_coupon(c, 3, "Pixel 8", "Pixel Discount", 75);
	protobuf_c_message_free_unpacked(&c->base, NULL);
	ck_assert(!has_coupon("IPhone X", 150));
	ck_assert(has_coupon("Samsung 10", 100));
	ck_assert_int_eq(count_rows(), 2);
}
END_TEST

/* health_of finds |name| in the health report; returns its rc, or 1 when
 * it is not registered. */
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

	ck_assert_int_eq(health_of("discount", &tags), 0);
	ck_assert_str_eq(tags, "module");
	ck_assert_int_eq(health_of("discountdb", &tags), 0);
	ck_assert_str_eq(tags, "database");
	discount_module.stop(E.discount);
	ck_assert_int_ne(health_of("discount", NULL), 0);
	ck_assert_int_eq(health_of("discountdb", NULL), 0);
	down();
	ck_assert_int_eq(health_of("discount", NULL), 1);
	ck_assert_int_eq(health_of("discountdb", NULL), 1);
	up();
	ck_assert_int_eq(health_of("discount", NULL), 0);
}
END_TEST

static Suite *
discount_suite(void)
{
	Suite *s = suite_create("discount");
	TCase *tc = tcase_create("rpc");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_get_seed);
	tcase_add_test(tc, test_get_unknown);
	tcase_add_test(tc, test_create);
	tcase_add_test(tc, test_create_invalid);
	tcase_add_test(tc, test_create_duplicate);
	tcase_add_test(tc, test_update);
	tcase_add_test(tc, test_update_errors);
	tcase_add_test(tc, test_delete);
	tcase_add_test(tc, test_persistence);
	tcase_add_test(tc, test_health);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(discount_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
