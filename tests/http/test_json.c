/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the JSON mapping (src/http/json.c): exact money through
 * the real-number rewrite, typed getters and their validation messages
 * with JSON paths, case-insensitive lookup, and every way a body is
 * refused (malformed, duplicate keys, depth bomb, invalid UTF-8, forged
 * money tags), then the serializer's money round trip.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/money.h"
#include "http/http.h"
#include "http/json.h"

static struct http_resp resp;
static json_t *root;

static void
setup(void)
{
	memset(&resp, 0, sizeof(resp));
	root = NULL;
}

static void
teardown(void)
{
	json_decref(root);
	root = NULL;
}

/* parse_ok parses |body| into the global root, which must succeed. */
static void
parse_ok(const char *body)
{
	json_decref(root);
	root = NULL;
	memset(&resp, 0, sizeof(resp));
	ck_assert_msg(http_json_parse(body, strlen(body), &root, &resp) == 0,
	              "body %s refused: %s", body,
	              resp.nverrs ? resp.verrs[0].message : "?");
	ck_assert_ptr_nonnull(root);
	ck_assert_uint_eq(resp.nverrs, 0);
}

/* parse_bad checks that |len| bytes of |body| are refused with one "$"
 * error whose message holds |needle|. */
static void
parse_bad_n(const char *body, size_t len, const char *needle)
{
	json_t *v = (json_t *)1;

	memset(&resp, 0, sizeof(resp));
	ck_assert_int_eq(http_json_parse(body, len, &v, &resp), MS_EJSON);
	ck_assert_ptr_null(v);
	ck_assert_uint_eq(resp.nverrs, 1);
	ck_assert_str_eq(resp.verrs[0].property, "$");
	ck_assert_msg(strstr(resp.verrs[0].message, needle) != NULL,
	              "message \"%s\" lacks \"%s\"", resp.verrs[0].message,
	              needle);
}

static void
parse_bad(const char *body, const char *needle)
{
	parse_bad_n(body, strlen(body), needle);
}

/* money parses {"p": <text>} and returns the getter's result. */
static int
money(const char *text, int64_t min, int64_t *cents)
{
	char body[256];

	snprintf(body, sizeof(body), "{\"p\": %s}", text);
	parse_ok(body);
	return http_json_money(root, "cart.items[0]", "p", true, min, cents,
	                       &resp);
}

static void
money_ok(const char *text, int64_t want)
{
	int64_t cents = -1;

	ck_assert_msg(money(text, 0, &cents) == 0, "%s refused: %s", text,
	              resp.nverrs ? resp.verrs[0].message : "?");
	ck_assert_msg(cents == want, "%s gave %lld, want %lld", text,
	              (long long)cents, (long long)want);
}

static void
money_bad(const char *text)
{
	int64_t cents = 42;

	ck_assert_msg(money(text, 0, &cents) == MS_EVALIDATION, "%s accepted",
	              text);
	ck_assert_int_eq(cents, 42);
	ck_assert_uint_eq(resp.nverrs, 1);
	ck_assert_str_eq(resp.verrs[0].property, "cart.items[0].p");
	ck_assert_msg(strstr(resp.verrs[0].message,
	                     "'p' must be a number "
	                     "with at most 2 decimals") != NULL,
	              "%s", resp.verrs[0].message);
}

START_TEST(test_money)
{
	money_ok("500", 50000);
	money_ok("500.5", 50050);
	money_ok("500.25", 50025);
	money_ok("\"500.25\"", 50025);
	money_ok("\"500\"", 50000);
	money_ok("1e2", 10000);
	money_ok("1.5E1", 1500);
	money_ok("0.1", 10);
	money_ok("1.500", 150);
	money_ok("0", 0);
	money_ok("9999999999999999.99", MS_MONEY_MAX_CENTS);
	money_ok("9999999999999999", MS_MONEY_MAX_CENTS - 99);
	money_bad("1.005");
	money_bad("0.001");
	money_bad("1234567890123456789");  /* 19 digits, an int64 */
	money_bad("12345678901234567.89"); /* 19 digits, real */
	money_bad("10000000000000000");    /* 17 digits before the point */
	money_bad("\"abc\"");
	money_bad("\"\"");
	money_bad("\" 5\"");
	money_bad("true");
	money_bad("[1]");
	money_bad("{}");
	money_bad("1e400");
}
END_TEST

START_TEST(test_money_min_and_optional)
{
	int64_t cents = 7;

	ck_assert_int_eq(money("-1.5", 0, &cents), MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[0].message, "'p' must be at least 0");
	ck_assert_int_eq(money("0", 1, &cents), MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[0].message, "'p' must be at least 0.01");
	ck_assert_int_eq(money("-1.5", -1000, &cents), 0);
	ck_assert_int_eq(cents, -150);

	cents = 7;
	parse_ok("{\"q\": 1}");
	ck_assert_int_eq(
	    http_json_money(root, "", "p", false, 0, &cents, &resp), 0);
	ck_assert_int_eq(cents, 7);
	ck_assert_int_eq(http_json_money(root, "", "p", true, 0, &cents, &resp),
	                 MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[0].property, "p");
	ck_assert_str_eq(resp.verrs[0].message, "'p' is required");
}
END_TEST

START_TEST(test_ints)
{
	int64_t v = 9;

	parse_ok("{\"quantity\": 3, \"s\": \"3\", \"neg\": -2, \"real\": 3.0,"
	         " \"sreal\": \"3.5\", \"big\": 2147483648, \"b\": true,"
	         " \"sp\": \" 3\", \"n\": null, \"huge\": "
	         "\"99999999999999999999\"}");
	ck_assert_int_eq(http_json_int(root, "cart.items[1]", "quantity", true,
	                               1, 2147483647, &v, &resp),
	                 0);
	ck_assert_int_eq(v, 3);
	ck_assert_int_eq(http_json_int(root, "", "s", true, 1, 10, &v, &resp),
	                 0);
	ck_assert_int_eq(v, 3);
	ck_assert_int_eq(
	    http_json_int(root, "", "neg", true, -5, 10, &v, &resp), 0);
	ck_assert_int_eq(v, -2);
	ck_assert_uint_eq(resp.nverrs, 0);

	v = 9;
	ck_assert_int_eq(http_json_int(root, "cart.items[1]", "neg", true, 1,
	                               2147483647, &v, &resp),
	                 MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[0].property, "cart.items[1].neg");
	ck_assert_str_eq(resp.verrs[0].message,
	                 "'neg' must be an integer between 1 and 2147483647");
	ck_assert_int_eq(
	    http_json_int(root, "", "real", true, 0, 10, &v, &resp),
	    MS_EVALIDATION);
	ck_assert_int_eq(
	    http_json_int(root, "", "sreal", true, 0, 10, &v, &resp),
	    MS_EVALIDATION);
	ck_assert_int_eq(
	    http_json_int(root, "", "big", true, 0, 2147483647, &v, &resp),
	    MS_EVALIDATION);
	ck_assert_int_eq(http_json_int(root, "", "b", true, 0, 10, &v, &resp),
	                 MS_EVALIDATION);
	ck_assert_int_eq(http_json_int(root, "", "sp", true, 0, 10, &v, &resp),
	                 MS_EVALIDATION);
	ck_assert_int_eq(
	    http_json_int(root, "", "huge", true, 0, 10, &v, &resp),
	    MS_EVALIDATION);
	ck_assert_int_eq(http_json_int(root, "", "n", true, 0, 10, &v, &resp),
	                 MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[7].message, "'n' is required");
	ck_assert_uint_eq(resp.nverrs, 8);
	ck_assert_int_eq(v, 9);
	/* null or missing, not required: untouched, no error */
	ck_assert_int_eq(http_json_int(root, "", "n", false, 0, 10, &v, &resp),
	                 0);
	ck_assert_int_eq(
	    http_json_int(root, "", "absent", false, 0, 10, &v, &resp), 0);
	ck_assert_int_eq(v, 9);
	ck_assert_uint_eq(resp.nverrs, 8);
}
END_TEST

START_TEST(test_guids)
{
	char g[37] = "unchanged";

	parse_ok("{\"productId\": \"5334C996-8457-4CF0-815C-ED2B77C4FF61\","
	         " \"nil\": \"00000000-0000-0000-0000-000000000000\","
	         " \"bad\": \"5334c996-8457-4cf0-815c-ed2b77c4ff6\","
	         " \"braces\": \"{5334c996-8457-4cf0-815c-ed2b77c4ff61}\","
	         " \"num\": 5}");
	ck_assert_int_eq(http_json_guid(root, "cart.items[0]", "productId",
	                                true, true, g, &resp),
	                 0);
	ck_assert_str_eq(g, "5334c996-8457-4cf0-815c-ed2b77c4ff61");
	ck_assert_int_eq(http_json_guid(root, "", "nil", true, false, g, &resp),
	                 0);
	ck_assert_str_eq(g, "00000000-0000-0000-0000-000000000000");
	ck_assert_int_eq(http_json_guid(root, "", "nil", true, true, g, &resp),
	                 MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[0].message,
	                 "'nil' must not be the empty GUID");
	ck_assert_int_eq(http_json_guid(root, "o", "bad", true, true, g, &resp),
	                 MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[1].property, "o.bad");
	ck_assert_str_eq(resp.verrs[1].message, "'bad' must be a GUID");
	ck_assert_int_eq(
	    http_json_guid(root, "", "braces", true, true, g, &resp),
	    MS_EVALIDATION);
	ck_assert_int_eq(http_json_guid(root, "", "num", true, true, g, &resp),
	                 MS_EVALIDATION);
	ck_assert_int_eq(
	    http_json_guid(root, "", "missing", true, true, g, &resp),
	    MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[4].message, "'missing' is required");
	ck_assert_str_eq(g, "00000000-0000-0000-0000-000000000000");
}
END_TEST

START_TEST(test_strings)
{
	const char *s = "untouched";

	parse_ok("{\"userName\": \"swn\", \"blank\": \"  \\t \","
	         " \"long\": \"abcdefghijk\", \"ctl\": \"a\\u001bb\","
	         " \"nl\": \"a\\nb\", \"num\": 1.5, \"int\": 1, \"n\": null,"
	         " \"utf\": \"\xc3\xa9t\xc3\xa9\"}");
	ck_assert_int_eq(
	    http_json_str(root, "cart", "userName", true, 100, &s, &resp), 0);
	ck_assert_str_eq(s, "swn");
	ck_assert_int_eq(http_json_str(root, "", "utf", true, 5, &s, &resp), 0);
	ck_assert_str_eq(s, "\xc3\xa9t\xc3\xa9");
	ck_assert_int_eq(http_json_str(root, "", "nl", true, 5, &s, &resp), 0);
	ck_assert_uint_eq(resp.nverrs, 0);

	ck_assert_int_eq(
	    http_json_str(root, "cart", "blank", true, 100, &s, &resp),
	    MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[0].property, "cart.blank");
	ck_assert_str_eq(resp.verrs[0].message, "'blank' is required");
	/* not required: blank is a value */
	ck_assert_int_eq(
	    http_json_str(root, "cart", "blank", false, 100, &s, &resp), 0);
	ck_assert_int_eq(http_json_str(root, "", "long", true, 10, &s, &resp),
	                 MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[1].message,
	                 "'long' must be at most 10 bytes long");
	ck_assert_int_eq(http_json_str(root, "", "ctl", true, 10, &s, &resp),
	                 MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[2].message,
	                 "'ctl' must not contain control characters");
	ck_assert_int_eq(http_json_str(root, "", "num", true, 10, &s, &resp),
	                 MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[3].message, "'num' must be a string");
	ck_assert_int_eq(http_json_str(root, "", "int", true, 10, &s, &resp),
	                 MS_EVALIDATION);
	ck_assert_int_eq(http_json_str(root, "", "n", true, 10, &s, &resp),
	                 MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[5].message, "'n' is required");
	s = "kept";
	ck_assert_int_eq(http_json_str(root, "", "n", false, 10, &s, &resp), 0);
	ck_assert_str_eq(s, "kept");
}
END_TEST

START_TEST(test_containers)
{
	json_t *o = (json_t *)1;

	parse_ok("{\"cart\": {\"items\": [1]}, \"arr\": [], \"n\": null}");
	ck_assert_int_eq(http_json_object(root, "", "cart", true, &o, &resp),
	                 0);
	ck_assert_ptr_eq(o, json_object_get(root, "cart"));
	ck_assert_int_eq(http_json_array(o, "cart", "items", true, &o, &resp),
	                 0);
	ck_assert_int_eq(json_array_size(o), 1);
	ck_assert_int_eq(http_json_object(root, "", "arr", true, &o, &resp),
	                 MS_EVALIDATION);
	ck_assert_ptr_null(o);
	ck_assert_str_eq(resp.verrs[0].message, "'arr' must be an object");
	ck_assert_int_eq(http_json_array(root, "x", "cart", true, &o, &resp),
	                 MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[1].property, "x.cart");
	ck_assert_str_eq(resp.verrs[1].message, "'cart' must be an array");
	o = (json_t *)1;
	ck_assert_int_eq(http_json_object(root, "", "n", false, &o, &resp), 0);
	ck_assert_ptr_null(o);
	ck_assert_int_eq(http_json_object(root, "", "n", true, &o, &resp),
	                 MS_EVALIDATION);
	/* A NULL parent (missing enclosing object) means missing members. */
	ck_assert_int_eq(http_json_object(NULL, "a", "b", true, &o, &resp),
	                 MS_EVALIDATION);
	ck_assert_str_eq(resp.verrs[3].property, "a.b");
}
END_TEST

START_TEST(test_case_insensitive)
{
	const char *s = NULL;

	parse_ok("{\"USERNAME\": \"upper\", \"Cart\": {\"x\": 1}}");
	ck_assert_int_eq(
	    http_json_str(root, "", "userName", true, 100, &s, &resp), 0);
	ck_assert_str_eq(s, "upper");
	ck_assert_ptr_nonnull(http_json_get(root, "cart"));
	ck_assert_ptr_null(http_json_get(root, "cartx"));
	ck_assert_ptr_null(http_json_get(NULL, "cart"));
	/* the exact spelling wins over an earlier case-insensitive match */
	parse_ok("{\"username\": \"lower\", \"userName\": \"exact\"}");
	ck_assert_int_eq(
	    http_json_str(root, "", "userName", true, 100, &s, &resp), 0);
	ck_assert_str_eq(s, "exact");
}
END_TEST

START_TEST(test_malformed)
{
	parse_bad("{\"a\": 1", "line 1, column");
	parse_bad("", "Invalid JSON at line");
	parse_bad("{} x", "Invalid JSON");
	parse_bad("{\"a\": 01}", "Invalid JSON");
	parse_bad("{\"a\": 1.}", "Invalid JSON");
	parse_bad("{\"a\": -}", "Invalid JSON");
	parse_bad("{\"a\": 1.5.5}", "Invalid JSON");
	parse_bad("[1, 2]", "must be a JSON object");
	parse_bad("\"1.5\"", "Invalid JSON");
	parse_bad("{\"a\": 1, \"a\": 2}", "duplicate");
	/* A real in key position stays invalid rather than becoming a key. */
	parse_bad("{1.5: 2}", "Invalid JSON");
	parse_bad("{\"a\": 1, 2.5: 2}", "Invalid JSON");
	/* Errors after a rewritten real are placed in the client's text. */
	parse_bad("{\n  \"price\": 1.25,\n  \"b\": 1.25 x\n}",
	          "line 3, column");
	parse_bad("{\"a\": 1.25, \"b\": 1.25 x}", "line 1, column 23");
	parse_bad("{\"a\": 1, \"b\": 1 x}", "line 1, column 17");
	parse_bad_n("{\"a\": 1}\0 ", 10, "Invalid JSON");
}
END_TEST

START_TEST(test_depth)
{
	size_t n = 10000;
	char *bomb = malloc(n + 8);
	char ok[128] = "{\"a\":";
	char deep[128];

	/* 10000 '[' must be refused before any recursion. */
	ck_assert_ptr_nonnull(bomb);
	strcpy(bomb, "{\"a\":");
	memset(bomb + 5, '[', n);
	bomb[n + 5] = '\0';
	parse_bad(bomb, "nesting is deeper than 32 levels");
	free(bomb);

	/* HTTP_JSON_MAX_DEPTH levels pass, one more does not. */
	for (int i = 1; i < HTTP_JSON_MAX_DEPTH; i++) {
		strcat(ok, "[");
	}
	strcpy(deep, ok);
	for (int i = 1; i < HTTP_JSON_MAX_DEPTH; i++) {
		strcat(ok, "]");
	}
	strcat(ok, "}");
	parse_ok(ok);
	strcat(deep, "[]");
	for (int i = 1; i < HTTP_JSON_MAX_DEPTH; i++) {
		strcat(deep, "]");
	}
	strcat(deep, "}");
	parse_bad(deep, "nesting");
	/* Brackets inside strings are not nesting. */
	strcpy(deep, "{\"a\":\"");
	memset(deep + 6, '[', 60);
	strcpy(deep + 66, "\"}");
	parse_ok(deep);
}
END_TEST

START_TEST(test_utf8)
{
	parse_bad("{\"a\": \"\xff\"}", "line 1");
	parse_bad("{\"a\": \"\xc3\"}", "Invalid JSON");
	parse_bad("{\"a\": \"\xed\xa0\x80\"}", "Invalid JSON"); /* surrogate */
	parse_bad("{\"a\": \"x\x01\"}", "control characters");
	parse_bad("{\"a\": \"x\ty\"}", "control characters");
	/* Escapes of control characters are JSON; the string getter judges. */
	parse_ok("{\"a\": \"\\n\\t\\u0003\", \"b\": \"\xe2\x82\xac\"}");
}
END_TEST

START_TEST(test_tag_forgery)
{
	parse_bad("{\"a\": \"\\u0001\\u0002N:5\"}", "not allowed");
	parse_bad("{\"a\": \"x\\u0002\"}", "not allowed");
	parse_bad("{\"\\u0001\": 1}", "not allowed");
	parse_bad("{\"a\": \"\x01\x02N:5\"}", "control characters");
	/* An escaped backslash followed by "u0001" is plain text. */
	parse_ok("{\"a\": \"\\\\u0001\\\\u0002N:5\"}");
	ck_assert_str_eq(json_string_value(json_object_get(root, "a")),
	                 "\\u0001\\u0002N:5");
}
END_TEST

/* dump_eq checks the compact dump of |v| (consumed). */
static void
dump_eq(json_t *v, const char *want)
{
	size_t len = 0;
	char *s = http_json_dump(v, &len);

	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(s, want);
	ck_assert_uint_eq(len, strlen(want));
	free(s);
	json_decref(v);
}

START_TEST(test_dump_money)
{
	json_t *o = json_object();

	json_object_set_new(o, "a", http_json_money_new(35000));
	json_object_set_new(o, "b", http_json_money_new(35050));
	json_object_set_new(o, "c", http_json_money_new(5));
	json_object_set_new(o, "d", http_json_money_new(MS_MONEY_MAX_CENTS));
	json_object_set_new(o, "e", json_string("plain"));
	json_object_set_new(o, "f",
	                    json_pack("[o,o]", http_json_money_new(1),
	                              http_json_money_new(-35025)));
	dump_eq(o, "{\"a\":350,\"b\":350.5,\"c\":0.05,"
	           "\"d\":9999999999999999.99,\"e\":\"plain\","
	           "\"f\":[0.01,-350.25]}");
	dump_eq(http_json_money_new(12345), "123.45");

	/* Round trip: parsed reals come back as the client wrote them. */
	parse_ok("{\"p\":350.50,\"q\":1e2,\"r\":[0.05],\"i\":7}");
	dump_eq(json_incref(root), "{\"p\":350.50,\"q\":1e2,\"r\":[0.05],"
	                           "\"i\":7}");
}
END_TEST

START_TEST(test_dump_never_injects)
{
	json_t *o = json_object();

	/* A tag whose payload is not a number stays a string. */
	json_object_set_new(o, "x", json_string("\x01\x02N:1,\"admin\":true"));
	dump_eq(o, "{\"x\":\"\\u0001\\u0002N:1,\\\"admin\\\":true\"}");
	/* A tagged key stays a key. */
	o = json_object();
	json_object_set_new(o, "\x01\x02N:5", json_integer(1));
	dump_eq(o, "{\"\\u0001\\u0002N:5\":1}");
	/* Text that only looks like the escaped tag is not one. */
	o = json_object();
	json_object_set_new(o, "y", json_string("\"\\u0001\\u0002N:5\""));
	dump_eq(o, "{\"y\":\"\\\"\\\\u0001\\\\u0002N:5\\\"\"}");
	o = json_object();
	json_object_set_new(o, "z", json_string("\x01\x02N:"));
	dump_eq(o, "{\"z\":\"\\u0001\\u0002N:\"}");
	ck_assert_ptr_null(http_json_dump(NULL, NULL));
}
END_TEST

START_TEST(test_string_lossy)
{
	json_t *v = http_json_string_lossy("a\xff"
	                                   "b\xc3\xa9",
	                                   100);

	ck_assert_str_eq(json_string_value(v), "a?b\xc3\xa9");
	json_decref(v);
	/* A cut never splits a character. */
	v = http_json_string_lossy("ab\xc3\xa9", 3);
	ck_assert_str_eq(json_string_value(v), "ab");
	json_decref(v);
	v = http_json_string_lossy(NULL, 3);
	ck_assert_str_eq(json_string_value(v), "");
	json_decref(v);
}
END_TEST

static Suite *
json_suite(void)
{
	Suite *s = suite_create("http_json");
	TCase *tc = tcase_create("json");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_money);
	tcase_add_test(tc, test_money_min_and_optional);
	tcase_add_test(tc, test_ints);
	tcase_add_test(tc, test_guids);
	tcase_add_test(tc, test_strings);
	tcase_add_test(tc, test_containers);
	tcase_add_test(tc, test_case_insensitive);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_depth);
	tcase_add_test(tc, test_utf8);
	tcase_add_test(tc, test_tag_forgery);
	tcase_add_test(tc, test_dump_money);
	tcase_add_test(tc, test_dump_never_injects);
	tcase_add_test(tc, test_string_lossy);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(json_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
