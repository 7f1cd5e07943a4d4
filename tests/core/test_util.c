/* SPDX-License-Identifier: MIT */
/*
 * Tests of the shared helpers (util.h / util.c): v4 GUID generation and
 * validation, RFC 3339 timestamps, clocks, ms_strlcpy and the strict UTF-8
 * validator.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

START_TEST(uuid_v4_shape)
{
	char a[MS_UUID_STRLEN], b[MS_UUID_STRLEN];

	for (int i = 0; i < 1000; i++) {
		ck_assert_ptr_eq(ms_uuid_v4(a), a);
		ck_assert_uint_eq(strlen(a), 36);
		ck_assert(ms_uuid_valid(a));
		ck_assert(!ms_uuid_is_nil(a));
		ck_assert_int_eq(a[14], '4');                 /* version */
		ck_assert_ptr_nonnull(strchr("89ab", a[19])); /* variant */
		for (int k = 0; k < 36; k++) {
			ck_assert(!(a[k] >= 'A' && a[k] <= 'F'));
		}
		ms_uuid_v4(b);
		ck_assert_str_ne(a, b);
	}
}
END_TEST

START_TEST(uuid_validation)
{
	static const char *const good[] = {
	    "00000000-0000-0000-0000-000000000000",
	    "5334c996-8457-4cf0-815c-ed2b77c4ff61",
	    "5334C996-8457-4CF0-815C-ED2B77C4FF61",
	    "abcdefAB-cdef-0123-4567-89abcdef0123",
	};
	static const char *const bad[] = {
	    "",
	    "5334c996-8457-4cf0-815c-ed2b77c4ff6",
	    "5334c996-8457-4cf0-815c-ed2b77c4ff612",
	    "5334c996-8457-4cf0-815c-ed2b77c4ff6g",
	    "5334c9968-457-4cf0-815c-ed2b77c4ff61",
	    "5334c996_8457_4cf0_815c_ed2b77c4ff61",
	    "{5334c996-8457-4cf0-815c-ed2b77c4ff61}",
	    "5334c99684574cf0815ced2b77c4ff61",
	    " 5334c996-8457-4cf0-815c-ed2b77c4ff61",
	    "5334c996-8457-4cf0-815c-ed2b77c4ff61 ",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ck_assert_msg(ms_uuid_valid(good[i]), "%s", good[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(!ms_uuid_valid(bad[i]), "%s", bad[i]);
	}
	ck_assert(!ms_uuid_valid(NULL));
	ck_assert(ms_uuid_is_nil(good[0]));
	ck_assert(!ms_uuid_is_nil(good[1]));
	ck_assert(!ms_uuid_is_nil("00000000-0000-0000-0000-00000000000"));
}
END_TEST

START_TEST(uuid_normalize)
{
	char s[] = "5334C996-8457-4CF0-815C-ED2B77C4FF61";

	ms_uuid_normalize(s);
	ck_assert_str_eq(s, "5334c996-8457-4cf0-815c-ed2b77c4ff61");
}
END_TEST

START_TEST(time_rfc3339)
{
	char out[MS_TIME_STRLEN];

	ck_assert_str_eq(ms_time_rfc3339(0, out), "1970-01-01T00:00:00.000Z");
	/* 2026-11-29T05:40:01.123Z */
	ck_assert_str_eq(ms_time_rfc3339(1795930801123LL, out),
	                 "2026-11-29T05:40:01.123Z");
	ck_assert_str_eq(ms_time_rfc3339(951782400999LL, out),
	                 "2000-02-29T00:00:00.999Z");
	ck_assert_str_eq(ms_time_rfc3339(-1, out), "1969-12-31T23:59:59.999Z");
	ck_assert_uint_eq(strlen(ms_time_rfc3339(ms_wall_ms(), out)), 24);
}
END_TEST

START_TEST(clocks)
{
	int64_t ms0 = ms_now_ms(), us0 = ms_now_us();
	int64_t wall = ms_wall_ms();
	int64_t before, us, after;

	ck_assert_int_ge(ms_now_ms(), ms0);
	ck_assert_int_ge(ms_now_us(), us0);
	/* Both read the same monotonic clock: a microsecond reading taken
	 * between two millisecond readings falls between them. */
	before = ms_now_ms();
	us = ms_now_us();
	after = ms_now_ms();
	ck_assert_int_le(before, us / 1000);
	ck_assert_int_le(us / 1000, after);
	/* The wall clock is after 2020-01-01. */
	ck_assert_int_gt(wall, 1577836800000LL);
}
END_TEST

START_TEST(strlcpy_bounds)
{
	char buf[8];

	memset(buf, 'z', sizeof(buf));
	ck_assert_uint_eq(ms_strlcpy(buf, "hello", sizeof(buf)), 5);
	ck_assert_str_eq(buf, "hello");
	ck_assert_uint_eq(ms_strlcpy(buf, "hello world", sizeof(buf)), 11);
	ck_assert_str_eq(buf, "hello w");
	ck_assert_uint_eq(ms_strlcpy(buf, "", sizeof(buf)), 0);
	ck_assert_str_eq(buf, "");
	buf[0] = 'q';
	ck_assert_uint_eq(ms_strlcpy(buf, "abc", 0), 3);
	ck_assert_int_eq(buf[0], 'q'); /* n == 0 writes nothing */
	ck_assert_uint_eq(ms_strlcpy(buf, "abc", 1), 3);
	ck_assert_str_eq(buf, "");
}
END_TEST

struct utf8_case {
	const char *s;
	size_t len;
	bool ok;
};

#define U(lit, ok)                                                             \
	{                                                                      \
		lit, sizeof(lit) - 1, ok                                       \
	}

START_TEST(hex4_digits)
{
	ck_assert_int_eq(ms_hex4("0000"), 0);
	ck_assert_int_eq(ms_hex4("00e9"), 0xe9);
	ck_assert_int_eq(ms_hex4("D83D"), 0xd83d);
	ck_assert_int_eq(ms_hex4("fFfF"), 0xffff);
	ck_assert_int_eq(ms_hex4("12g4"), -1);
	ck_assert_int_eq(ms_hex4("-123"), -1);
	ck_assert_int_eq(ms_hex4("1 23"), -1);
	ck_assert_int_eq(ms_hex4("123\0"), -1); /* a cut escape */
}
END_TEST

START_TEST(utf8_validation)
{
	static const struct utf8_case cases[] = {
	    U("", true),
	    U("plain ascii", true),
	    U("tab\tcr\rlf\n", true),
	    U("caf\xc3\xa9", true),      /* é */
	    U("\xe2\x82\xac", true),     /* € */
	    U("\xf0\x9f\x98\x80", true), /* 😀 */
	    U("\xf4\x8f\xbf\xbf", true), /* U+10FFFF */
	    U("\xed\x9f\xbf", true),     /* U+D7FF */
	    U("\xee\x80\x80", true),     /* U+E000 */
	    U("\xc2\x80", true),         /* U+0080 */
	    U("nul\0inside", false),
	    U("bell\x07", false),
	    U("esc\x1b", false),
	    U("\x7f", true),              /* DEL is not C0 */
	    U("\x80", false),             /* lone continuation */
	    U("\xc3", false),             /* truncated */
	    U("\xe2\x82", false),         /* truncated */
	    U("\xc0\xaf", false),         /* overlong '/' */
	    U("\xc1\xbf", false),         /* overlong */
	    U("\xe0\x80\xaf", false),     /* overlong */
	    U("\xe0\x9f\xbf", false),     /* overlong U+07FF */
	    U("\xf0\x80\x80\xaf", false), /* overlong */
	    U("\xf0\x8f\xbf\xbf", false), /* overlong U+FFFF */
	    U("\xed\xa0\x80", false),     /* surrogate D800 */
	    U("\xed\xbf\xbf", false),     /* surrogate DFFF */
	    U("\xf4\x90\x80\x80", false), /* U+110000 */
	    U("\xf5\x80\x80\x80", false),
	    U("\xff", false),
	    U("\xc3\x28", false), /* bad continuation */
	    U("\xe2\x28\xa1", false),
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_msg(ms_utf8_valid(cases[i].s, cases[i].len) ==
		                  cases[i].ok,
		              "case %zu", i);
	}
	/* Length is honoured: the bad byte past |len| is not read. */
	ck_assert(ms_utf8_valid("ok\xff", 2));
	ck_assert(!ms_utf8_valid("\xc3\xa9", 1));
}
END_TEST

/* ms_ct_equal: right answers for every shape of guess; the constant time
 * itself is by construction (every secret byte is compared) and not
 * measured here. */
START_TEST(ct_equal)
{
	static const char key[] = "0123456789abcdef";
	const size_t n = sizeof(key) - 1;

	ck_assert(ms_ct_equal(key, n, "0123456789abcdef", n));
	ck_assert(!ms_ct_equal(key, n, "0123456789abcdeF", n));
	ck_assert(!ms_ct_equal(key, n, "x123456789abcdef", n));
	ck_assert(!ms_ct_equal(key, n, "0123456789abcde", n - 1)); /* prefix */
	ck_assert(!ms_ct_equal(key, n, "0123456789abcdefg", n + 1));
	ck_assert(!ms_ct_equal(key, n, "", 0));
	ck_assert(!ms_ct_equal(key, n, NULL, 0));
	/* A guess longer than the key, equal on the key's length. */
	ck_assert(
	    !ms_ct_equal(key, n, "0123456789abcdef0123456789abcdef", 2 * n));
	/* Only |given_len| bytes count, NUL or not. */
	ck_assert(ms_ct_equal(key, n, "0123456789abcdefXYZ", n));
	ck_assert(!ms_ct_equal("a\0b", 3, "a\0c", 3));
	ck_assert(ms_ct_equal("a\0b", 3, "a\0b", 3));
	ck_assert(ms_ct_equal("", 0, "", 0));
	ck_assert(ms_ct_equal("", 0, NULL, 0));
	ck_assert(!ms_ct_equal("", 0, "a", 1));
}
END_TEST

static Suite *
util_suite(void)
{
	Suite *s = suite_create("core_util");
	TCase *tc = tcase_create("util");

	tcase_add_test(tc, uuid_v4_shape);
	tcase_add_test(tc, uuid_validation);
	tcase_add_test(tc, uuid_normalize);
	tcase_add_test(tc, time_rfc3339);
	tcase_add_test(tc, clocks);
	tcase_add_test(tc, strlcpy_bounds);
	tcase_add_test(tc, hex4_digits);
	tcase_add_test(tc, utf8_validation);
	tcase_add_test(tc, ct_equal);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(util_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
