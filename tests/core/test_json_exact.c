/* SPDX-License-Identifier: MIT */
/*
 * Tests of the exact-number JSON pre-pass (src/core/json_exact.c): reals
 * kept as their own text, integers as integers, the tag unforgeable, the
 * nesting bound, trailing commas only on request and only after a value,
 * error positions in the sender's own text (tags and blanked commas
 * shift nothing), and the output side that writes numbers back bare.
 * tests/http/test_json.c covers the same pass as the REST edge uses it.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/json_exact.h"

static json_t *
load_ok(const char *text, unsigned flags)
{
	json_error_t je;
	json_t *v = NULL;
	int rc = ms_json_loads_exact(text, strlen(text), flags, &v, &je);

	ck_assert_msg(rc == 0, "%s refused: %d:%d %s", text, je.line, je.column,
	              je.text);
	ck_assert_ptr_nonnull(v);
	return v;
}

/* load_bad checks that |text| is refused; the error holds |needle| and,
 * when |line| > 0, is placed at |line|:|col|. */
static void
load_bad(const char *text, unsigned flags, const char *needle, int line,
         int col)
{
	json_error_t je;
	json_t *v = (json_t *)1;

	ck_assert_int_eq(
	    ms_json_loads_exact(text, strlen(text), flags, &v, &je), MS_EJSON);
	ck_assert_ptr_null(v);
	ck_assert_msg(strstr(je.text, needle) != NULL,
	              "%s: \"%s\" lacks \"%s\"", text, je.text, needle);
	if (line > 0) {
		ck_assert_msg(je.line == line && je.column == col,
		              "%s: at %d:%d, want %d:%d", text, je.line,
		              je.column, line, col);
	}
}

/* number_is checks that member |k| of |o| is the exact number |want|. */
static void
number_is(const json_t *o, const char *k, const char *want)
{
	char scratch[MS_JSON_NUM_STRLEN];
	const char *t;
	size_t n;

	ck_assert_msg(
	    ms_json_exact_number(json_object_get(o, k), scratch, &t, &n),
	    "%s is not exact", k);
	ck_assert_uint_eq(n, strlen(want));
	ck_assert_msg(memcmp(t, want, n) == 0, "%s: %.*s, want %s", k, (int)n,
	              t, want);
}

START_TEST(reals_stay_exact)
{
	json_t *v = load_ok("{\"a\": 1400.35, \"b\": 0.1, \"c\": -1.5e-3, "
	                    "\"d\": 42, \"e\": -7, \"f\": \"1.5\"}",
	                    0);
	char scratch[MS_JSON_NUM_STRLEN];
	const char *t;
	size_t n;

	number_is(v, "a", "1400.35");
	number_is(v, "b", "0.1");
	number_is(v, "c", "-1.5e-3");
	number_is(v, "d", "42");
	number_is(v, "e", "-7");
	ck_assert(json_is_integer(json_object_get(v, "d")));
	/* A string holding a number is a string, not a number. */
	ck_assert(
	    !ms_json_exact_number(json_object_get(v, "f"), scratch, &t, &n));
	ck_assert_ptr_null(ms_json_real_text(json_object_get(v, "f"), &n));
	ck_assert_ptr_null(ms_json_real_text(json_object_get(v, "d"), &n));
	ck_assert(!ms_json_exact_number(NULL, scratch, &t, &n));
	json_decref(v);
}
END_TEST

START_TEST(long_real_is_a_double)
{
	char text[128] = "[1.";
	json_t *v;
	char scratch[MS_JSON_NUM_STRLEN];
	const char *t;
	size_t n;

	/* 64 characters: exact; 65: jansson's double, not exact. */
	memset(text + 3, '5', 62);
	strcpy(text + 65, "]");
	v = load_ok(text, 0);
	ck_assert(ms_json_exact_number(json_array_get(v, 0), scratch, &t, &n));
	ck_assert_uint_eq(n, 64);
	json_decref(v);
	memset(text + 3, '5', 63);
	strcpy(text + 66, "]");
	v = load_ok(text, 0);
	ck_assert(json_is_real(json_array_get(v, 0)));
	ck_assert(!ms_json_exact_number(json_array_get(v, 0), scratch, &t, &n));
	json_decref(v);
}
END_TEST

START_TEST(tag_unforgeable)
{
	load_bad("{\"a\": \"\\u0001\\u0002N:5\"}", 0, "not allowed", 0, 0);
	load_bad("{\"a\": \"\\u0002\"}", 0, "not allowed", 0, 0);
	load_bad("{\"a\": \"\x01\x02N:5\"}", 0, "control characters", 0, 0);
	load_bad("[\"\\u0001\"]", MS_JSON_TRAILING_COMMAS, "not allowed", 0, 0);
}
END_TEST

START_TEST(trailing_commas_only_after_values)
{
	const unsigned tc = MS_JSON_TRAILING_COMMAS;
	json_t *v;

	v = load_ok("{\"a\": [1, 2.5, {\"b\": null,},], \"c\": \"x,]\",}", tc);
	ck_assert_uint_eq(json_array_size(json_object_get(v, "a")), 3);
	ck_assert_str_eq(json_string_value(json_object_get(v, "c")), "x,]");
	json_decref(v);
	v = load_ok("[true ,\n ]", tc);
	ck_assert_uint_eq(json_array_size(v), 1);
	json_decref(v);

	/* Without the flag, strict JSON. */
	load_bad("[1,]", 0, "", 1, 4);
	load_bad("{\"a\": 1,}", 0, "", 1, 9);
	/* With it, still no comma without a value before it, and one only. */
	load_bad("[,]", tc, "", 0, 0);
	load_bad("{,}", tc, "", 0, 0);
	load_bad("[1,,]", tc, "", 0, 0);
	load_bad("{\"a\":,}", tc, "", 0, 0);
	load_bad("{\"a\",}", tc, "", 0, 0);
	load_bad("[1],", tc, "", 0, 0);
}
END_TEST

START_TEST(positions_are_the_senders)
{
	const unsigned tc = MS_JSON_TRAILING_COMMAS;

	/* Neither a tag nor a blanked comma moves the error. */
	load_bad("{\"a\": 1.25, \"b\": 1.25 x}", 0, "", 1, 23);
	load_bad("{\"a\": [1,], \"b\": 1 x}", tc, "", 1, 20);
	load_bad("{\"a\": [1.5,], \"b\": 2.5 x}", tc, "", 1, 24);
	load_bad("{\n  \"a\": [1.5,],\n  \"b\": 2.5 x\n}", tc, "", 3, 12);
}
END_TEST

START_TEST(depth)
{
	char text[2 * MS_JSON_MAX_DEPTH + 3];

	memset(text, '[', MS_JSON_MAX_DEPTH);
	memset(text + MS_JSON_MAX_DEPTH, ']', MS_JSON_MAX_DEPTH);
	text[2 * MS_JSON_MAX_DEPTH] = '\0';
	json_decref(load_ok(text, 0));
	memset(text, '[', MS_JSON_MAX_DEPTH + 1);
	memset(text + MS_JSON_MAX_DEPTH + 1, ']', MS_JSON_MAX_DEPTH + 1);
	text[2 * MS_JSON_MAX_DEPTH + 2] = '\0';
	load_bad(text, 0, "nesting is deeper than 32 levels", 1,
	         MS_JSON_MAX_DEPTH + 1);
}
END_TEST

/* ms_json_loads_exact_depth: any bound up to MS_JSON_DEPTH_LIMIT (the
 * pre-pass keeps one bit per level), objects and arrays mixed, so that
 * keys are still told from values at every level. */
START_TEST(depth_configured)
{
	size_t cap = 6 * MS_JSON_DEPTH_LIMIT + 16;
	char *text = malloc(cap);
	json_error_t je;
	json_t *v;
	size_t o = 0;

	ck_assert_ptr_nonnull(text);
	for (int i = 0; i < MS_JSON_DEPTH_LIMIT; i++) {
		o += (size_t)snprintf(text + o, cap - o,
		                      i % 2 ? "[" : "{\"k\":");
	}
	o += (size_t)snprintf(text + o, cap - o, "1.25");
	for (int i = MS_JSON_DEPTH_LIMIT - 1; i >= 0; i--) {
		text[o++] = i % 2 ? ']' : '}';
	}
	text[o] = '\0';
	ck_assert_int_eq(
	    ms_json_loads_exact_depth(text, o, 0, MS_JSON_DEPTH_LIMIT, &v, &je),
	    0);
	json_decref(v);
	ck_assert_int_eq(ms_json_loads_exact_depth(
	                     text, o, 0, MS_JSON_DEPTH_LIMIT - 1, &v, &je),
	                 MS_EJSON);
	ck_assert_ptr_nonnull(strstr(je.text, "deeper than 1023 levels"));
	ck_assert_int_eq(ms_json_loads_exact(text, o, 0, &v, &je), MS_EJSON);
	ck_assert_ptr_nonnull(strstr(je.text, "deeper than 32 levels"));
	ck_assert_int_eq(ms_json_loads_exact_depth("[[1]]", 5, 0, 1, &v, &je),
	                 MS_EJSON);
	ck_assert_int_eq(ms_json_loads_exact_depth("[[1]]", 5, 0, 2, &v, &je),
	                 0);
	json_decref(v);
	/* A key at the deepest allowed level is still a key. */
	ck_assert_int_eq(
	    ms_json_loads_exact_depth("{\"a\":{\"b\":2.5}}", 15, 0, 2, &v, &je),
	    0);
	json_decref(v);
	free(text);
}
END_TEST

START_TEST(bad_input)
{
	json_t *v = (json_t *)1;

	load_bad("", 0, "", 0, 0);
	load_bad("{\"a\": \"\xff\"}", 0, "0xff", 1, 7);
	load_bad("42", 0, "", 0, 0);
	/* NULL is an empty text; the error is optional. */
	ck_assert_int_eq(ms_json_loads_exact(NULL, 5, 0, &v, NULL), MS_EJSON);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(ms_json_loads_exact("[1.5 x", 6, 0, &v, NULL),
	                 MS_EJSON);
}
END_TEST

START_TEST(output)
{
	json_t *o = json_object();
	json_t *v;
	char *s;
	size_t n;

	json_object_set_new(o, "a", ms_json_number_new("350.25"));
	json_object_set_new(o, "b", ms_json_number_new("-1e-3"));
	json_object_set_new(o, "c", ms_json_number_new("7"));
	json_object_set_new(o, "d", json_string("\001\002N:x")); /* no number */
	s = ms_json_dumps_exact(o, JSON_COMPACT, &n);
	ck_assert_str_eq(s, "{\"a\":350.25,\"b\":-1e-3,\"c\":7,"
	                    "\"d\":\"\\u0001\\u0002N:x\"}");
	ck_assert_uint_eq(n, strlen(s));
	free(s);
	s = ms_json_dumps_exact(o, JSON_INDENT(2), NULL);
	ck_assert_ptr_nonnull(strstr(s, "\"a\": 350.25,"));
	free(s);
	json_decref(o);

	ck_assert_ptr_null(ms_json_number_new("1."));
	ck_assert_ptr_null(ms_json_number_new(""));
	ck_assert_ptr_null(ms_json_number_new(NULL));
	ck_assert_ptr_null(ms_json_number_new("1 "));
	ck_assert_ptr_null(ms_json_number_new(
	    "1.00000000000000000000000000000000000000000000000000000000000000"
	    "1"));
	ck_assert_ptr_null(ms_json_dumps_exact(NULL, 0, NULL));

	/* A load and a dump give the sender's numbers back. */
	v = load_ok("{\"p\":0.1,\"q\":[1E+2,-0.0],\"r\":12}", 0);
	s = ms_json_dumps_exact(v, JSON_COMPACT, NULL);
	ck_assert_str_eq(s, "{\"p\":0.1,\"q\":[1E+2,-0.0],\"r\":12}");
	free(s);
	json_decref(v);
}
END_TEST

static Suite *
json_exact_suite(void)
{
	Suite *s = suite_create("json_exact");
	TCase *tc = tcase_create("json_exact");

	tcase_add_test(tc, reals_stay_exact);
	tcase_add_test(tc, long_real_is_a_double);
	tcase_add_test(tc, tag_unforgeable);
	tcase_add_test(tc, trailing_commas_only_after_values);
	tcase_add_test(tc, positions_are_the_senders);
	tcase_add_test(tc, depth);
	tcase_add_test(tc, depth_configured);
	tcase_add_test(tc, bad_input);
	tcase_add_test(tc, output);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(json_exact_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
