/* SPDX-License-Identifier: MIT */
/*
 * Tests of the circuit breaker and the backoff (src/transport/grpc/
 * breaker.c), driven by a fake clock: the time is a variable the test
 * moves, so the whole closed → open → half-open → closed/open cycle runs in
 * microseconds and never sleeps.
 */
#include <check.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "transport/grpc/breaker.h"

/* ---- breaker ------------------------------------------------------------ */

START_TEST(starts_closed)
{
	struct tp_grpc_breaker b;

	tp_grpc_breaker_init(&b, 3, 1000);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_CLOSED);
	for (int64_t now = 0; now < 10; now++)
		ck_assert(tp_grpc_breaker_allow(&b, now));
	ck_assert_int_eq(b.failures, 0);
}
END_TEST

START_TEST(full_cycle)
{
	struct tp_grpc_breaker b;
	int64_t now = 1000;

	tp_grpc_breaker_init(&b, 3, 500);

	/* Failures below the threshold keep it closed... */
	tp_grpc_breaker_failure(&b, now);
	tp_grpc_breaker_failure(&b, ++now);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_CLOSED);
	ck_assert_int_eq(b.failures, 2);
	ck_assert(tp_grpc_breaker_allow(&b, now));

	/* ...and a success resets the count: they must be consecutive. */
	tp_grpc_breaker_success(&b);
	ck_assert_int_eq(b.failures, 0);
	tp_grpc_breaker_failure(&b, ++now);
	tp_grpc_breaker_failure(&b, ++now);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_CLOSED);
	ck_assert(tp_grpc_breaker_allow(&b, now));

	/* The threshold-th consecutive failure opens it for open_ms. */
	tp_grpc_breaker_failure(&b, ++now);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_OPEN);
	ck_assert_int_eq(b.open_until, now + 500);
	for (int64_t t = now; t < now + 500; t += 7)
		ck_assert_msg(!tp_grpc_breaker_allow(&b, t), "t %lld",
		              (long long)t);
	ck_assert(!tp_grpc_breaker_allow(&b, now + 499));
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_OPEN);

	/* At open_until exactly one probe goes out; others are refused. */
	now += 500;
	ck_assert(tp_grpc_breaker_allow(&b, now));
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_HALF_OPEN);
	ck_assert(b.probe_out);
	for (int i = 0; i < 5; i++)
		ck_assert(!tp_grpc_breaker_allow(&b, now + i));

	/* Probe failure: open again, for a fresh open_ms from now. */
	now += 30;
	tp_grpc_breaker_failure(&b, now);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_OPEN);
	ck_assert_int_eq(b.open_until, now + 500);
	ck_assert(!b.probe_out);
	ck_assert(!tp_grpc_breaker_allow(&b, now + 499));

	/* Next probe succeeds: closed, count reset, everyone flows. */
	now += 500;
	ck_assert(tp_grpc_breaker_allow(&b, now));
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_HALF_OPEN);
	ck_assert(!tp_grpc_breaker_allow(&b, now));
	tp_grpc_breaker_success(&b);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_CLOSED);
	ck_assert_int_eq(b.failures, 0);
	ck_assert(!b.probe_out);
	for (int i = 0; i < 5; i++)
		ck_assert(tp_grpc_breaker_allow(&b, now));

	/* And it takes a full threshold again to re-open. */
	tp_grpc_breaker_failure(&b, now);
	tp_grpc_breaker_failure(&b, now);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_CLOSED);
	tp_grpc_breaker_failure(&b, now);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_OPEN);
}
END_TEST

START_TEST(threshold_one)
{
	struct tp_grpc_breaker b;

	tp_grpc_breaker_init(&b, 1, 100);
	tp_grpc_breaker_failure(&b, 0);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_OPEN);
	ck_assert(!tp_grpc_breaker_allow(&b, 99));
	ck_assert(tp_grpc_breaker_allow(&b, 100));
}
END_TEST

START_TEST(stragglers_while_open)
{
	/* Failures of calls sent before the breaker opened do not push the
	 * probe further away. */
	struct tp_grpc_breaker b;

	tp_grpc_breaker_init(&b, 2, 1000);
	tp_grpc_breaker_failure(&b, 0);
	tp_grpc_breaker_failure(&b, 10);
	ck_assert_int_eq(b.open_until, 1010);
	tp_grpc_breaker_failure(&b, 500);
	tp_grpc_breaker_failure(&b, 900);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_OPEN);
	ck_assert_int_eq(b.open_until, 1010);
	ck_assert(tp_grpc_breaker_allow(&b, 1010));

	/* A late success (the server answered after all) closes it. */
	tp_grpc_breaker_init(&b, 2, 1000);
	tp_grpc_breaker_failure(&b, 0);
	tp_grpc_breaker_failure(&b, 0);
	ck_assert(!tp_grpc_breaker_allow(&b, 1));
	tp_grpc_breaker_success(&b);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_CLOSED);
	ck_assert(tp_grpc_breaker_allow(&b, 2));
}
END_TEST

START_TEST(probe_lease_and_release)
{
	struct tp_grpc_breaker b;

	tp_grpc_breaker_init(&b, 1, 200);
	tp_grpc_breaker_failure(&b, 0);
	ck_assert(tp_grpc_breaker_allow(&b, 200)); /* the probe */

	/* The probe is lost (no outcome ever recorded): refused until its
	 * lease of open_ms runs out, then a new probe goes out. */
	ck_assert(!tp_grpc_breaker_allow(&b, 399));
	ck_assert(tp_grpc_breaker_allow(&b, 400));
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_HALF_OPEN);
	ck_assert(!tp_grpc_breaker_allow(&b, 401));

	/* Released (caller cancelled it): the next call probes at once. */
	tp_grpc_breaker_release(&b);
	ck_assert(!b.probe_out);
	ck_assert(tp_grpc_breaker_allow(&b, 402));
	ck_assert(!tp_grpc_breaker_allow(&b, 403));
	tp_grpc_breaker_success(&b);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_CLOSED);

	/* Release outside HALF_OPEN changes nothing. */
	tp_grpc_breaker_release(&b);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_CLOSED);
	ck_assert(tp_grpc_breaker_allow(&b, 404));
	tp_grpc_breaker_failure(&b, 500);
	tp_grpc_breaker_release(&b);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_OPEN);
	ck_assert(!tp_grpc_breaker_allow(&b, 699));
}
END_TEST

START_TEST(failure_count_saturates)
{
	struct tp_grpc_breaker b;

	tp_grpc_breaker_init(&b, INT_MAX, 10);
	b.failures = INT_MAX - 1;
	tp_grpc_breaker_failure(&b, 0);
	ck_assert_int_eq(b.failures, INT_MAX);
	ck_assert_int_eq(b.state, TP_GRPC_BREAKER_OPEN);
	tp_grpc_breaker_failure(&b, 1);
	ck_assert_int_eq(b.failures, INT_MAX);
}
END_TEST

START_TEST(state_names)
{
	ck_assert_str_eq(tp_grpc_breaker_state_name(TP_GRPC_BREAKER_CLOSED),
	                 "closed");
	ck_assert_str_eq(tp_grpc_breaker_state_name(TP_GRPC_BREAKER_OPEN),
	                 "open");
	ck_assert_str_eq(tp_grpc_breaker_state_name(TP_GRPC_BREAKER_HALF_OPEN),
	                 "half-open");
}
END_TEST

/* ---- backoff ------------------------------------------------------------ */

START_TEST(backoff_bounds)
{
	/* base 100, max 10000: caps 100, 200, ... 6400, then 10000. */
	for (int a = 1; a <= 10; a++) {
		int64_t cap = 100LL << (a - 1);

		if (cap > 10000)
			cap = 10000;
		ck_assert_int_eq(tp_grpc_backoff_ms(a, 100, 10000, 0), 0);
		ck_assert_msg(tp_grpc_backoff_ms(a, 100, 10000, UINT32_MAX) ==
		                  cap,
		              "attempt %d", a);
		/* The middle of the range is the middle of the cap. */
		ck_assert_int_eq(tp_grpc_backoff_ms(a, 100, 10000, 1u << 31),
		                 (cap + 1) / 2);
	}
}
END_TEST

START_TEST(backoff_in_range)
{
	/* Any rnd lands in [0, cap] and larger rnd never waits less. */
	uint32_t x = 12345;

	for (int a = 1; a <= 12; a++) {
		int64_t cap = 50LL << (a - 1), prev = -1;

		if (cap > 3000)
			cap = 3000;
		for (int i = 0; i < 1000; i++) {
			int64_t v;

			x = x * 1664525u + 1013904223u;
			v = tp_grpc_backoff_ms(a, 50, 3000, x);
			ck_assert_int_ge(v, 0);
			ck_assert_int_le(v, cap);
		}
		for (uint64_t r = 0; r <= UINT32_MAX; r += 0x01000001u) {
			int64_t v =
			    tp_grpc_backoff_ms(a, 50, 3000, (uint32_t)r);

			ck_assert_int_ge(v, prev);
			prev = v;
		}
	}
}
END_TEST

START_TEST(backoff_no_overflow)
{
	/* attempt 60 would be 2^59 * base: capped, not wrapped. */
	ck_assert_int_eq(tp_grpc_backoff_ms(60, 100, 30000, UINT32_MAX), 30000);
	ck_assert_int_eq(tp_grpc_backoff_ms(60, 100, 30000, 0), 0);
	ck_assert_int_eq(tp_grpc_backoff_ms(INT_MAX, 100, 30000, UINT32_MAX),
	                 30000);
	ck_assert_int_eq(tp_grpc_backoff_ms(60, INT_MAX, INT_MAX, UINT32_MAX),
	                 INT_MAX);
	ck_assert_int_eq(tp_grpc_backoff_ms(33, 1, INT_MAX, UINT32_MAX),
	                 INT_MAX);
	ck_assert_int_eq(tp_grpc_backoff_ms(31, 1, INT_MAX, UINT32_MAX),
	                 1LL << 30);
	/* base above max: the cap is max from the first attempt. */
	ck_assert_int_eq(tp_grpc_backoff_ms(1, 5000, 1000, UINT32_MAX), 1000);
	/* Zero base or zero max: never wait. */
	ck_assert_int_eq(tp_grpc_backoff_ms(INT_MAX, 0, 1000, UINT32_MAX), 0);
	ck_assert_int_eq(tp_grpc_backoff_ms(5, 100, 0, UINT32_MAX), 0);
}
END_TEST

static Suite *
breaker_suite(void)
{
	Suite *s = suite_create("grpc_breaker");
	TCase *br = tcase_create("breaker");
	TCase *bo = tcase_create("backoff");

	tcase_add_test(br, starts_closed);
	tcase_add_test(br, full_cycle);
	tcase_add_test(br, threshold_one);
	tcase_add_test(br, stragglers_while_open);
	tcase_add_test(br, probe_lease_and_release);
	tcase_add_test(br, failure_count_saturates);
	tcase_add_test(br, state_names);
	suite_add_tcase(s, br);

	tcase_add_test(bo, backoff_bounds);
	tcase_add_test(bo, backoff_in_range);
	tcase_add_test(bo, backoff_no_overflow);
	suite_add_tcase(s, bo);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(breaker_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
