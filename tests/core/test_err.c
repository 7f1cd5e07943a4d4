/* SPDX-License-Identifier: MIT */
/*
 * Tests of the error space (err.h / err.c): every code has its own name
 * and message, the HTTP and gRPC mappings of representative codes, the
 * reverse gRPC mapping, -errno fallback and unknown values.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

static const int all_codes[] = {
#define CODE_(name, msg, http, grpc) MS_##name,
    MS_ERR_MAP(CODE_)
#undef CODE_
};
#define NCODES (sizeof(all_codes) / sizeof(all_codes[0]))

START_TEST(codes_in_reserved_range)
{
	for (size_t i = 0; i < NCODES; i++) {
		ck_assert_int_le(all_codes[i], -500);
		ck_assert_int_ge(all_codes[i], -999);
	}
	ck_assert_int_eq(MS_EINVAL, -501);
}
END_TEST

START_TEST(distinct_names_and_messages)
{
	for (size_t i = 0; i < NCODES; i++) {
		const char *n = ms_errname(all_codes[i]);
		const char *m = ms_strerror(all_codes[i]);

		ck_assert_ptr_nonnull(n);
		ck_assert_ptr_nonnull(m);
		ck_assert_str_ne(n, "UNKNOWN");
		ck_assert_str_ne(m, "unknown error");
		ck_assert_int_eq(n[0], 'E');
		for (size_t j = 0; j < i; j++) {
			ck_assert_int_ne(all_codes[i], all_codes[j]);
			ck_assert_str_ne(n, ms_errname(all_codes[j]));
			ck_assert_str_ne(m, ms_strerror(all_codes[j]));
		}
	}
}
END_TEST

START_TEST(names_match_enum)
{
	ck_assert_str_eq(ms_errname(MS_EINVAL), "EINVAL");
	ck_assert_str_eq(ms_errname(MS_ENOTFOUND), "ENOTFOUND");
	ck_assert_str_eq(ms_errname(MS_EINTERNAL), "EINTERNAL");
	ck_assert_str_eq(ms_strerror(MS_ETIMEDOUT), "deadline exceeded");
	ck_assert_str_eq(ms_errname(0), "OK");
}
END_TEST

START_TEST(http_mapping)
{
	ck_assert_int_eq(ms_err_http(0), 200);
	ck_assert_int_eq(ms_err_http(MS_EINVAL), 400);
	ck_assert_int_eq(ms_err_http(MS_EVALIDATION), 400);
	ck_assert_int_eq(ms_err_http(MS_ENOTFOUND), 404);
	ck_assert_int_eq(ms_err_http(MS_EMETHOD), 405);
	ck_assert_int_eq(ms_err_http(MS_ETOOBIG), 413);
	ck_assert_int_eq(ms_err_http(MS_EUNAVAIL), 503);
	ck_assert_int_eq(ms_err_http(MS_ETIMEDOUT), 504);
	ck_assert_int_eq(ms_err_http(MS_EDB), 500);
	/* -errno values and strangers are local failures: 500. */
	ck_assert_int_eq(ms_err_http(-ENOENT), 500);
	ck_assert_int_eq(ms_err_http(-12345), 500);
	ck_assert_int_eq(ms_err_http(7), 500);
}
END_TEST

START_TEST(grpc_mapping)
{
	ck_assert_int_eq(ms_err_grpc(0), 0);
	ck_assert_int_eq(ms_err_grpc(MS_EINVAL), 3);
	ck_assert_int_eq(ms_err_grpc(MS_ENOTFOUND), 5);
	ck_assert_int_eq(ms_err_grpc(MS_EEXIST), 6);
	ck_assert_int_eq(ms_err_grpc(MS_ETIMEDOUT), 4);
	ck_assert_int_eq(ms_err_grpc(MS_EUNAVAIL), 14);
	ck_assert_int_eq(ms_err_grpc(MS_ENOTSUP), 12);
	ck_assert_int_eq(ms_err_grpc(MS_ECORRUPT), 15);
	ck_assert_int_eq(ms_err_grpc(-EIO), 2);
	ck_assert_int_eq(ms_err_grpc(-999), 2);
}
END_TEST

START_TEST(grpc_reverse_mapping)
{
	static const struct {
		int grpc, ms;
	} tab[] = {
	    {0, 0},
	    {1, MS_ECANCELED},
	    {2, MS_EINTERNAL},
	    {3, MS_EINVAL},
	    {4, MS_ETIMEDOUT},
	    {5, MS_ENOTFOUND},
	    {6, MS_EEXIST},
	    {7, MS_EINTERNAL},
	    {8, MS_EFULL},
	    {9, MS_ECONFIG},
	    {10, MS_EINTERNAL},
	    {12, MS_ENOTSUP},
	    {13, MS_EINTERNAL},
	    {14, MS_EUNAVAIL},
	    {15, MS_ECORRUPT},
	    {16, MS_EUNAUTH},
	    {17, MS_EINTERNAL},
	    {-1, MS_EINTERNAL},
	};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		ck_assert_msg(ms_err_from_grpc(tab[i].grpc) == tab[i].ms,
		              "grpc %d", tab[i].grpc);
	}
	/* Round trip: a code that owns its gRPC status comes back. */
	ck_assert_int_eq(ms_err_from_grpc(ms_err_grpc(MS_ENOTFOUND)),
	                 MS_ENOTFOUND);
	ck_assert_int_eq(ms_err_from_grpc(ms_err_grpc(MS_EUNAVAIL)),
	                 MS_EUNAVAIL);
}
END_TEST

START_TEST(errno_fallback)
{
	ck_assert_str_eq(ms_strerror(-ENOENT), "No such file or directory");
	ck_assert_str_eq(ms_strerror(-EACCES), "Permission denied");
	ck_assert_str_eq(ms_errname(-ENOENT), "UNKNOWN");
}
END_TEST

START_TEST(unknown_codes)
{
	ck_assert_str_eq(ms_strerror(-998), "unknown error");
	ck_assert_str_eq(ms_strerror(-500), "unknown error");
	ck_assert_str_eq(ms_strerror(-100000), "unknown error");
	ck_assert_str_eq(ms_strerror(42), "unknown error");
	ck_assert_str_eq(ms_errname(-998), "UNKNOWN");
	ck_assert_str_eq(ms_errname(42), "UNKNOWN");
	ck_assert_str_eq(ms_strerror(0), "success");
}
END_TEST

static Suite *
err_suite(void)
{
	Suite *s = suite_create("core_err");
	TCase *tc = tcase_create("err");

	tcase_add_test(tc, codes_in_reserved_range);
	tcase_add_test(tc, distinct_names_and_messages);
	tcase_add_test(tc, names_match_enum);
	tcase_add_test(tc, http_mapping);
	tcase_add_test(tc, grpc_mapping);
	tcase_add_test(tc, grpc_reverse_mapping);
	tcase_add_test(tc, errno_fallback);
	tcase_add_test(tc, unknown_codes);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(err_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
