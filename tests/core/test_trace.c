/* SPDX-License-Identifier: MIT */
/*
 * Tests of the W3C trace context (trace.h / trace.c): parsing and
 * validation of traceparent (version 00, later versions, the forbidden
 * forms), new roots and children, the thread's current context with
 * begin/set/clear/save/restore, and that the current context is per
 * thread.
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/trace.h"

#define TP  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TID "4bf92f3577b34da6a3ce929d0e0e4736"

/* assert_valid checks the shape of what we produce: version 00, lower-case
 * hex, no all-zero id. */
static void
assert_valid(const char *tp)
{
	char out[MS_TRACEPARENT_SIZE];

	ck_assert_ptr_nonnull(tp);
	ck_assert_uint_eq(strlen(tp), MS_TRACEPARENT_LEN);
	ck_assert_msg(ms_trace_parse(tp, out) == 0, "invalid: %s", tp);
	ck_assert_str_eq(out, tp);
	ck_assert_msg(strncmp(tp, "00-", 3) == 0, "%s", tp);
}

START_TEST(parse_valid)
{
	char out[MS_TRACEPARENT_SIZE];

	ck_assert_int_eq(ms_trace_parse(TP, out), 0);
	ck_assert_str_eq(out, TP);
	/* Flags other than 01 are kept as they are. */
	ck_assert_int_eq(
	    ms_trace_parse(
	        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", out),
	    0);
	ck_assert_str_eq(
	    out, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
	/* A later version: the first 55 characters, then '-' and fields we
	 * do not know; read as (and made) version 00. */
	ck_assert_int_eq(
	    ms_trace_parse(
	        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what",
	        out),
	    0);
	ck_assert_str_eq(out, TP);
	ck_assert_int_eq(
	    ms_trace_parse(
	        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", out),
	    0);
	ck_assert_str_eq(out, TP);
}
END_TEST

static const char *const invalid[] = {
    "",
    "00",
    "garbage",
    /* upper-case hex */
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
    /* all-zero ids */
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    /* version ff */
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    /* version 00 is exactly 55 characters */
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
    /* a later version goes on only after a '-' */
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
    /* short, or the dashes elsewhere */
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
    "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
    /* non-hex */
    "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",
    "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
};

START_TEST(parse_invalid)
{
	char out[MS_TRACEPARENT_SIZE];

	strcpy(out, "untouched");
	ck_assert_int_eq(ms_trace_parse(invalid[_i], out), MS_EINVAL);
	ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(parse_null)
{
	char out[MS_TRACEPARENT_SIZE];

	ck_assert_int_eq(ms_trace_parse(NULL, out), MS_EINVAL);
	ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(new_root)
{
	char a[MS_TRACEPARENT_SIZE];
	char b[MS_TRACEPARENT_SIZE];

	ck_assert_ptr_eq(ms_trace_new_root(a), a);
	ms_trace_new_root(b);
	assert_valid(a);
	assert_valid(b);
	ck_assert_str_eq(a + 53, "01");
	/* Random: two roots share neither id. */
	ck_assert_int_ne(memcmp(a + 3, b + 3, 32), 0);
	ck_assert_int_ne(memcmp(a + 36, b + 36, 16), 0);
}
END_TEST

START_TEST(new_child)
{
	char c1[MS_TRACEPARENT_SIZE];
	char c2[MS_TRACEPARENT_SIZE];
	char r[MS_TRACEPARENT_SIZE];

	ms_trace_clear();
	ck_assert_ptr_eq(ms_trace_new_child(TP, c1), c1);
	assert_valid(c1);
	/* Same trace and flags, a new parent id. */
	ck_assert_int_eq(memcmp(c1, TP, 36), 0);
	ck_assert_str_eq(c1 + 52, "-01");
	ck_assert_int_ne(memcmp(c1 + 36, TP + 36, 16), 0);
	ms_trace_new_child(TP, c2);
	ck_assert_int_ne(memcmp(c1 + 36, c2 + 36, 16), 0);

	/* NULL: a child of the current context. */
	ck_assert_int_eq(ms_trace_set(TP), 0);
	ms_trace_new_child(NULL, c2);
	ck_assert_int_eq(memcmp(c2, TP, 36), 0);
	ck_assert_str_ne(c2, TP);
	/* The current context is not changed by making a child. */
	ck_assert_str_eq(ms_trace_get(), TP);

	/* No valid parent, none current: a new root. */
	ms_trace_clear();
	ms_trace_new_child(NULL, r);
	assert_valid(r);
	ck_assert_int_ne(memcmp(r + 3, TID, 32), 0);
	ms_trace_new_child("bogus", r);
	assert_valid(r);
	ck_assert_int_ne(memcmp(r + 3, TID, 32), 0);
}
END_TEST

START_TEST(current_set_get_clear)
{
	ms_trace_clear();
	ck_assert_ptr_null(ms_trace_get());
	ck_assert_ptr_null(ms_trace_id());

	ck_assert_int_eq(ms_trace_set(TP), 0);
	ck_assert_str_eq(ms_trace_get(), TP);
	ck_assert_str_eq(ms_trace_id(), TID);
	/* Setting from the current string itself works. */
	ck_assert_int_eq(ms_trace_set(ms_trace_get()), 0);
	ck_assert_str_eq(ms_trace_get(), TP);

	/* An invalid one clears: no work is logged under a trace it is not
	 * part of. */
	ck_assert_int_eq(ms_trace_set(invalid[3]), MS_EINVAL);
	ck_assert_ptr_null(ms_trace_get());
	ck_assert_int_eq(ms_trace_set(TP), 0);
	ck_assert_int_eq(ms_trace_set(NULL), MS_EINVAL);
	ck_assert_ptr_null(ms_trace_id());

	/* A later version is stored as version 00. */
	ck_assert_int_eq(
	    ms_trace_set(
	        "7a-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"),
	    0);
	ck_assert_str_eq(ms_trace_get(), TP);

	ms_trace_clear();
	ck_assert_ptr_null(ms_trace_get());
	ck_assert_ptr_null(ms_trace_id());
}
END_TEST

START_TEST(begin)
{
	const char *cur;
	char first[MS_TRACEPARENT_SIZE];

	/* Valid: that one. */
	ck_assert_str_eq(ms_trace_begin(TP), TP);
	ck_assert_str_eq(ms_trace_get(), TP);
	/* Absent or invalid: a fresh valid one, new each time. */
	cur = ms_trace_begin(NULL);
	assert_valid(cur);
	ck_assert_int_ne(memcmp(cur + 3, TID, 32), 0);
	strcpy(first, cur);
	cur = ms_trace_begin(invalid[5]);
	assert_valid(cur);
	ck_assert_str_ne(cur, first);
	ck_assert_str_eq(ms_trace_get(), cur);
	ck_assert_int_eq(memcmp(ms_trace_id(), cur + 3, 32), 0);
	ms_trace_clear();
}
END_TEST

START_TEST(save_restore)
{
	char saved[MS_TRACEPARENT_SIZE];
	char inner[MS_TRACEPARENT_SIZE];

	/* Nothing current: restore clears what the nested work set. */
	ms_trace_clear();
	ms_trace_save(saved);
	ck_assert_str_eq(saved, "");
	ms_trace_begin(NULL);
	ms_trace_restore(saved);
	ck_assert_ptr_null(ms_trace_get());

	/* A caller's context survives a nested one. */
	ck_assert_int_eq(ms_trace_set(TP), 0);
	ms_trace_save(saved);
	ms_trace_begin(ms_trace_new_root(inner));
	ck_assert_str_eq(ms_trace_get(), inner);
	ms_trace_restore(saved);
	ck_assert_str_eq(ms_trace_get(), TP);
	ck_assert_str_eq(ms_trace_id(), TID);
	ms_trace_clear();
}
END_TEST

struct peer {
	const char *seen_first; /* what the new thread saw at start */
	char own[MS_TRACEPARENT_SIZE];
};

static void *
peer_main(void *arg)
{
	struct peer *p = arg;

	p->seen_first = ms_trace_get();
	ms_trace_begin(NULL);
	strcpy(p->own, ms_trace_get());
	return NULL;
}

START_TEST(thread_local)
{
	struct peer p = {0};
	pthread_t th;

	ck_assert_int_eq(ms_trace_set(TP), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, peer_main, &p), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	/* The new thread started with nothing, and what it set stayed its
	 * own. */
	ck_assert_ptr_null(p.seen_first);
	assert_valid(p.own);
	ck_assert_str_ne(p.own, TP);
	ck_assert_str_eq(ms_trace_get(), TP);
	ms_trace_clear();
}
END_TEST

static Suite *
trace_suite(void)
{
	Suite *s = suite_create("core_trace");
	TCase *tc = tcase_create("trace");

	tcase_add_test(tc, parse_valid);
	tcase_add_loop_test(tc, parse_invalid, 0,
	                    sizeof(invalid) / sizeof(invalid[0]));
	tcase_add_test(tc, parse_null);
	tcase_add_test(tc, new_root);
	tcase_add_test(tc, new_child);
	tcase_add_test(tc, current_set_get_clear);
	tcase_add_test(tc, begin);
	tcase_add_test(tc, save_restore);
	tcase_add_test(tc, thread_local);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(trace_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
