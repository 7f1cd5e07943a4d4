/* SPDX-License-Identifier: MIT */
/*
 * Tests of the health registry (health.h / health.c): results in
 * registration order, overall state, durations, the reason of a failing
 * check, unregistering by argument, the bound, and a small |max|.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/health.h"
#include "core/util.h"

struct probe {
	int rc;
	const char *desc;
	int calls;
	long spin_us; /* busy time, so the duration is measurable */
};

static int
probe_fn(void *arg, char *desc, size_t desclen)
{
	struct probe *p = arg;
	int64_t until = ms_now_us() + p->spin_us;

	p->calls++;
	while (ms_now_us() < until) {
	}
	if (p->desc != NULL) {
		ms_strlcpy(desc, p->desc, desclen);
	}
	return p->rc;
}

START_TEST(all_healthy)
{
	struct probe a = {.rc = 0}, b = {.rc = 0, .spin_us = 2000};
	struct ms_health_result r[MS_HEALTH_MAX_CHECKS];
	int healthy = -1;
	size_t n;

	ck_assert_int_eq(ms_health_register("basket", "module", probe_fn, &a),
	                 0);
	ck_assert_int_eq(
	    ms_health_register("basket-db", "database", probe_fn, &b), 0);
	n = ms_health_run(r, MS_ARRAY_SIZE(r), &healthy);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(healthy, 1);
	ck_assert_str_eq(r[0].name, "basket");
	ck_assert_str_eq(r[0].tags, "module");
	ck_assert_int_eq(r[0].rc, 0);
	ck_assert_str_eq(r[1].name, "basket-db");
	ck_assert_str_eq(r[1].tags, "database");
	ck_assert(r[1].duration_s >= 0.002);
	ck_assert(r[0].duration_s >= 0);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_int_eq(b.calls, 1);
	ms_health_unregister(&a);
	ms_health_unregister(&b);
	n = ms_health_run(r, MS_ARRAY_SIZE(r), &healthy);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(healthy, 1);
}
END_TEST

START_TEST(one_down)
{
	struct probe ok = {.rc = 0, .desc = "fine"};
	struct probe down = {.rc = MS_EUNAVAIL, .desc = "broker unreachable"};
	struct probe mute = {.rc = MS_ETIMEDOUT};
	struct probe broken = {.rc = 1}; /* not a valid result */
	struct ms_health_result r[8];
	int healthy = -1;
	size_t n;

	ms_health_register("ok", "module", probe_fn, &ok);
	ms_health_register("broker", "broker", probe_fn, &down);
	ms_health_register("discount", "remote", probe_fn, &mute);
	ms_health_register("odd", NULL, probe_fn, &broken);
	n = ms_health_run(r, 8, &healthy);
	ck_assert_uint_eq(n, 4);
	ck_assert_int_eq(healthy, 0);
	ck_assert_int_eq(r[0].rc, 0);
	ck_assert_str_eq(r[0].desc, "fine");
	ck_assert_int_eq(r[1].rc, MS_EUNAVAIL);
	ck_assert_str_eq(r[1].desc, "broker unreachable");
	/* A failing check without a reason gets its code's message. */
	ck_assert_int_eq(r[2].rc, MS_ETIMEDOUT);
	ck_assert_str_eq(r[2].desc, ms_strerror(MS_ETIMEDOUT));
	ck_assert_int_eq(r[3].rc, MS_EINTERNAL);
	ck_assert_str_eq(r[3].tags, "");

	/* Recovering makes the whole healthy again. */
	ms_health_unregister(&broken);
	down.rc = 0;
	mute.rc = 0;
	n = ms_health_run(r, 8, &healthy);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(healthy, 1);
	ms_health_unregister(&ok);
	ms_health_unregister(&down);
	ms_health_unregister(&mute);
}
END_TEST

START_TEST(small_max_still_runs_all)
{
	struct probe ok = {.rc = 0}, down = {.rc = MS_EDB};
	struct ms_health_result r[1];
	int healthy = -1;

	ms_health_register("a", "module", probe_fn, &ok);
	ms_health_register("b", "database", probe_fn, &down);
	ck_assert_uint_eq(ms_health_run(r, 1, &healthy), 1);
	ck_assert_str_eq(r[0].name, "a");
	ck_assert_int_eq(healthy, 0);
	ck_assert_int_eq(down.calls, 1);
	ck_assert_uint_eq(ms_health_run(r, 0, NULL), 0);
	ms_health_unregister(&ok);
	ms_health_unregister(&down);
}
END_TEST

START_TEST(unregister_by_arg)
{
	struct probe a = {.rc = 0}, b = {.rc = 0};
	struct ms_health_result r[8];
	size_t n;

	ms_health_register("a1", "t", probe_fn, &a);
	ms_health_register("b1", "t", probe_fn, &b);
	ms_health_register("a2", "t", probe_fn, &a);
	ms_health_unregister(&a);
	n = ms_health_run(r, 8, NULL);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(r[0].name, "b1");
	ms_health_unregister(&b);
	ms_health_unregister(&b); /* nothing left: a no-op */
	ck_assert_uint_eq(ms_health_run(r, 8, NULL), 0);
}
END_TEST

START_TEST(bounded)
{
	struct probe p = {.rc = 0};
	struct ms_health_result r[MS_HEALTH_MAX_CHECKS + 1];
	int healthy;

	for (int i = 0; i < MS_HEALTH_MAX_CHECKS; i++) {
		ck_assert_int_eq(ms_health_register("c", "t", probe_fn, &p), 0);
	}
	ck_assert_int_eq(ms_health_register("c", "t", probe_fn, &p), MS_EFULL);
	ck_assert_uint_eq(ms_health_run(r, MS_ARRAY_SIZE(r), &healthy),
	                  MS_HEALTH_MAX_CHECKS);
	ms_health_unregister(&p);
	ck_assert_int_eq(ms_health_register("c", "t", probe_fn, &p), 0);
	ms_health_unregister(&p);
}
END_TEST

static Suite *
health_suite(void)
{
	Suite *s = suite_create("core_health");
	TCase *tc = tcase_create("health");

	tcase_add_test(tc, all_healthy);
	tcase_add_test(tc, one_down);
	tcase_add_test(tc, small_max_still_runs_all);
	tcase_add_test(tc, unregister_by_arg);
	tcase_add_test(tc, bounded);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(health_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
