/* SPDX-License-Identifier: MIT */
/*
 * Tests of exact money (money.h / money.c): a table of parse cases, good
 * and bad, formatting in both forms with a parse/format round trip, and
 * overflow of ms_money_mul_add.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/money.h"

struct parse_case {
	const char *s;
	int rc;
	int64_t cents;
};

static const struct parse_case parse_cases[] = {
    /* plain forms */
    {"0", 0, 0},
    {"1", 0, 100},
    {"350", 0, 35000},
    {"350.5", 0, 35050},
    {"350.25", 0, 35025},
    {"0.01", 0, 1},
    {"0.1", 0, 10},
    {"-0.05", 0, -5},
    {"-0", 0, 0},
    {"-0.00", 0, 0},
    {"007", 0, 700},
    {"0.50", 0, 50},
    {"1.500", 0, 150},
    {"1.5000000000000000000000", 0, 150},
    {"00000000000000000000000000012.34", 0, 1234},
    {"9999999999999999.99", 0, MS_MONEY_MAX_CENTS},
    {"-9999999999999999.99", 0, -MS_MONEY_MAX_CENTS},
    {"9999999999999999", 0, 999999999999999900LL},
    /* exponent forms, as JSON may write numbers */
    {"1.5e2", 0, 15000},
    {"1.5E2", 0, 15000},
    {"15e-1", 0, 150},
    {"1e-2", 0, 1},
    {"1E+2", 0, 10000},
    {"100e-4", 0, 1},
    {"1.23e1", 0, 1230},
    {"0e999999999999999999999", 0, 0},
    {"0.000e-99999", 0, 0},
    {"1e15", 0, 100000000000000000LL},
    /* rejected: grammar */
    {"", MS_EINVAL, 0},
    {"-", MS_EINVAL, 0},
    {".", MS_EINVAL, 0},
    {"1.", MS_EINVAL, 0},
    {".5", MS_EINVAL, 0},
    {"-.5", MS_EINVAL, 0},
    {"+1", MS_EINVAL, 0},
    {" 1", MS_EINVAL, 0},
    {"1 ", MS_EINVAL, 0},
    {"1 000", MS_EINVAL, 0},
    {"0x10", MS_EINVAL, 0},
    {"NaN", MS_EINVAL, 0},
    {"Infinity", MS_EINVAL, 0},
    {"-Infinity", MS_EINVAL, 0},
    {"1e", MS_EINVAL, 0},
    {"1e+", MS_EINVAL, 0},
    {"1e-", MS_EINVAL, 0},
    {"e5", MS_EINVAL, 0},
    {"--1", MS_EINVAL, 0},
    {"1.2.3", MS_EINVAL, 0},
    {"1,5", MS_EINVAL, 0},
    {"1.5e2.0", MS_EINVAL, 0},
    /* rejected: more than 2 significant decimals */
    {"1.005", MS_EINVAL, 0},
    {"0.001", MS_EINVAL, 0},
    {"1e-3", MS_EINVAL, 0},
    {"1.5e-2", MS_EINVAL, 0},
    {"123456e-3", MS_EINVAL, 0},
    {"0.0000000000000000000001", MS_EINVAL, 0},
    /* rejected: more than 18 digits / overflow */
    {"10000000000000000", MS_EINVAL, 0},
    {"99999999999999999", MS_EINVAL, 0},
    {"9999999999999999.999", MS_EINVAL, 0},
    {"99999999999999999999999999999", MS_EINVAL, 0},
    {"1e16", MS_EINVAL, 0},
    {"1e999999999999999999999999", MS_EINVAL, 0},
    {"-1e308", MS_EINVAL, 0},
    {"1e-999999999999999999999999", MS_EINVAL, 0},
};

START_TEST(parse_table)
{
	const struct parse_case *c = &parse_cases[_i];
	int64_t cents = 424242;
	int rc = ms_money_parse(c->s, strlen(c->s), &cents);

	ck_assert_msg(rc == c->rc, "'%s': rc %d, want %d", c->s, rc, c->rc);
	if (c->rc == 0) {
		ck_assert_msg(cents == c->cents, "'%s': %lld, want %lld", c->s,
		              (long long)cents, (long long)c->cents);
	}
}
END_TEST

START_TEST(parse_respects_len)
{
	int64_t cents;

	/* Only |len| bytes count: JSON hands us numbers inside a buffer. */
	ck_assert_int_eq(ms_money_parse("12.34,", 5, &cents), 0);
	ck_assert_int_eq(cents, 1234);
	ck_assert_int_eq(ms_money_parse("12.345", 5, &cents), 0);
	ck_assert_int_eq(cents, 1234);
	ck_assert_int_eq(ms_money_parse("1.", 2, &cents), MS_EINVAL);
	ck_assert_int_eq(ms_money_parse("1\0"
	                                "5",
	                                3, &cents),
	                 MS_EINVAL);
	ck_assert_int_eq(ms_money_parse(NULL, 0, &cents), MS_EINVAL);
}
END_TEST

START_TEST(format_shortest)
{
	char buf[MS_MONEY_STRLEN];

	ck_assert_str_eq(ms_money_format(35000, buf), "350");
	ck_assert_str_eq(ms_money_format(35050, buf), "350.5");
	ck_assert_str_eq(ms_money_format(35025, buf), "350.25");
	ck_assert_str_eq(ms_money_format(-5, buf), "-0.05");
	ck_assert_str_eq(ms_money_format(-50, buf), "-0.5");
	ck_assert_str_eq(ms_money_format(0, buf), "0");
	ck_assert_str_eq(ms_money_format(1, buf), "0.01");
	ck_assert_str_eq(ms_money_format(100, buf), "1");
	ck_assert_str_eq(ms_money_format(-100, buf), "-1");
	ck_assert_str_eq(ms_money_format(MS_MONEY_MAX_CENTS, buf),
	                 "9999999999999999.99");
	ck_assert_str_eq(ms_money_format(-MS_MONEY_MAX_CENTS, buf),
	                 "-9999999999999999.99");
	/* Even values out of range must not overrun the buffer. */
	ck_assert_str_eq(ms_money_format(INT64_MIN, buf),
	                 "-92233720368547758.08");
	ck_assert_str_eq(ms_money_format(INT64_MAX, buf),
	                 "92233720368547758.07");
}
END_TEST

START_TEST(format_fixed)
{
	char buf[MS_MONEY_STRLEN];

	ck_assert_str_eq(ms_money_format_fixed(140000, buf), "1400.00");
	ck_assert_str_eq(ms_money_format_fixed(35050, buf), "350.50");
	ck_assert_str_eq(ms_money_format_fixed(35025, buf), "350.25");
	ck_assert_str_eq(ms_money_format_fixed(0, buf), "0.00");
	ck_assert_str_eq(ms_money_format_fixed(-5, buf), "-0.05");
	ck_assert_str_eq(ms_money_format_fixed(MS_MONEY_MAX_CENTS, buf),
	                 "9999999999999999.99");
	ck_assert_str_eq(ms_money_format_fixed(INT64_MIN, buf),
	                 "-92233720368547758.08");
}
END_TEST

START_TEST(round_trip)
{
	static const int64_t values[] = {
	    0,
	    1,
	    9,
	    10,
	    99,
	    100,
	    101,
	    110,
	    35025,
	    -1,
	    -10,
	    -101,
	    123456,
	    MS_MONEY_MAX_CENTS,
	    -MS_MONEY_MAX_CENTS,
	    100000000000000000LL,
	};
	char buf[MS_MONEY_STRLEN];
	int64_t back;

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		ms_money_format(values[i], buf);
		ck_assert_int_eq(ms_money_parse(buf, strlen(buf), &back), 0);
		ck_assert_int_eq(back, values[i]);
		ms_money_format_fixed(values[i], buf);
		ck_assert_int_eq(ms_money_parse(buf, strlen(buf), &back), 0);
		ck_assert_int_eq(back, values[i]);
	}
}
END_TEST

START_TEST(mul_add)
{
	int64_t acc = 0;

	ck_assert_int_eq(ms_money_mul_add(&acc, 35025, 2), 0);
	ck_assert_int_eq(acc, 70050);
	ck_assert_int_eq(ms_money_mul_add(&acc, 1, 0), 0);
	ck_assert_int_eq(acc, 70050);
	ck_assert_int_eq(ms_money_mul_add(&acc, 50, -1), 0);
	ck_assert_int_eq(acc, 70000);

	/* Exactly the maximum is fine; one cent more is not. */
	acc = 0;
	ck_assert_int_eq(ms_money_mul_add(&acc, MS_MONEY_MAX_CENTS, 1), 0);
	ck_assert_int_eq(acc, MS_MONEY_MAX_CENTS);
	ck_assert_int_eq(ms_money_mul_add(&acc, 1, 1), MS_EINVAL);
	ck_assert_int_eq(acc, MS_MONEY_MAX_CENTS); /* unchanged on error */

	acc = 0;
	ck_assert_int_eq(ms_money_mul_add(&acc, -MS_MONEY_MAX_CENTS, 1), 0);
	ck_assert_int_eq(ms_money_mul_add(&acc, -1, 1), MS_EINVAL);

	/* A product past int64 itself is caught, not wrapped. */
	acc = 0;
	ck_assert_int_eq(ms_money_mul_add(&acc, MS_MONEY_MAX_CENTS, 1000),
	                 MS_EINVAL);
	ck_assert_int_eq(ms_money_mul_add(&acc, INT64_MAX, INT64_MAX),
	                 MS_EINVAL);
	ck_assert_int_eq(ms_money_mul_add(&acc, INT64_MIN, -1), MS_EINVAL);
	ck_assert_int_eq(acc, 0);

	/* Many lines that each fit but together do not. */
	acc = 0;
	for (int i = 0; i < 9; i++) {
		ck_assert_int_eq(
		    ms_money_mul_add(&acc, 100000000000000000LL, 1), 0);
	}
	ck_assert_int_eq(ms_money_mul_add(&acc, 100000000000000000LL, 1),
	                 MS_EINVAL);
	ck_assert_int_eq(acc, 900000000000000000LL);
}
END_TEST

static Suite *
money_suite(void)
{
	Suite *s = suite_create("core_money");
	TCase *tc = tcase_create("money");

	tcase_add_loop_test(tc, parse_table, 0,
	                    sizeof(parse_cases) / sizeof(parse_cases[0]));
	tcase_add_test(tc, parse_respects_len);
	tcase_add_test(tc, format_shortest);
	tcase_add_test(tc, format_fixed);
	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, mul_add);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(money_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
