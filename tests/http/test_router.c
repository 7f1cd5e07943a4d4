/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the REST router (src/http/router.c): pattern validation,
 * matching with ASP.NET's rules (case-insensitive literals, literal before
 * parameter, trailing slash, no empty parameter), 404 against 405 with the
 * Allow list, the method parser, and query-string decoding.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "http/http.h"

/* Handlers are only compared by address here; each marks which one. */
static int
h_get(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	return 1;
}

static int
h_post(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	return 2;
}

static int
h_del(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	return 3;
}

static int
h_checkout(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	return 4;
}

static struct http_router *r;

static void
setup(void)
{
	ck_assert_int_eq(http_router_create(&r), 0);
}

static void
teardown(void)
{
	http_router_destroy(r);
	r = NULL;
}

/* basket_routes registers the Basket module's table. */
static void
basket_routes(bool literal_first)
{
	if (literal_first) {
		ck_assert_int_eq(http_route_add(r, HTTP_POST,
		                                "/basket/checkout", h_checkout,
		                                NULL),
		                 0);
	}
	ck_assert_int_eq(
	    http_route_add(r, HTTP_GET, "/basket/{userName}", h_get, NULL), 0);
	ck_assert_int_eq(
	    http_route_add(r, HTTP_DELETE, "/basket/{userName}", h_del, NULL),
	    0);
	ck_assert_int_eq(http_route_add(r, HTTP_POST, "/basket", h_post, NULL),
	                 0);
	if (!literal_first) {
		ck_assert_int_eq(http_route_add(r, HTTP_POST,
		                                "/basket/checkout", h_checkout,
		                                NULL),
		                 0);
	}
}

/* param copies parameter |i| of |m| out of |path|. */
static const char *
param(const struct http_match *m, const char *path, size_t i)
{
	static char buf[128];

	ck_assert_uint_lt(i, m->nparams);
	ck_assert_uint_lt(m->param_len[i], sizeof(buf));
	memcpy(buf, path + m->param_off[i], m->param_len[i]);
	buf[m->param_len[i]] = '\0';
	return buf;
}

START_TEST(test_add_validation)
{
	ck_assert_int_eq(http_route_add(r, HTTP_GET, "", h_get, NULL),
	                 MS_EINVAL);
	ck_assert_int_eq(http_route_add(r, HTTP_GET, "basket", h_get, NULL),
	                 MS_EINVAL);
	ck_assert_int_eq(http_route_add(r, HTTP_GET, "/a//b", h_get, NULL),
	                 MS_EINVAL);
	ck_assert_int_eq(http_route_add(r, HTTP_GET, "/a/{", h_get, NULL),
	                 MS_EINVAL);
	ck_assert_int_eq(http_route_add(r, HTTP_GET, "/a/{}", h_get, NULL),
	                 MS_EINVAL);
	ck_assert_int_eq(http_route_add(r, HTTP_GET, "/a/x{b}", h_get, NULL),
	                 MS_EINVAL);
	ck_assert_int_eq(http_route_add(r, HTTP_GET, "/a/{b-c}", h_get, NULL),
	                 MS_EINVAL);
	ck_assert_int_eq(
	    http_route_add(r, HTTP_GET, "/{a}/{b}/{c}/{d}/{e}", h_get, NULL),
	    MS_EINVAL);
	ck_assert_int_eq(http_route_add(r, HTTP_OTHER, "/x", h_get, NULL),
	                 MS_EINVAL);
	ck_assert_int_eq(
	    http_route_add(r, HTTP_GET, "/{a}/{b}/{c}/{d}", h_get, NULL), 0);
	ck_assert_int_eq(http_route_add(r, HTTP_GET, "/", h_get, NULL), 0);
}
END_TEST

START_TEST(test_add_duplicates)
{
	ck_assert_int_eq(
	    http_route_add(r, HTTP_GET, "/basket/{userName}", h_get, NULL), 0);
	/* Same paths, same method: ambiguous whatever the names. */
	ck_assert_int_eq(
	    http_route_add(r, HTTP_GET, "/BASKET/{other}", h_get, NULL),
	    MS_EEXIST);
	ck_assert_int_eq(
	    http_route_add(r, HTTP_GET, "/basket/{userName}/", h_get, NULL),
	    MS_EEXIST);
	/* Other method, or a literal where the other has a parameter: fine. */
	ck_assert_int_eq(
	    http_route_add(r, HTTP_DELETE, "/basket/{userName}", h_del, NULL),
	    0);
	ck_assert_int_eq(
	    http_route_add(r, HTTP_GET, "/basket/checkout", h_get, NULL), 0);
}
END_TEST

START_TEST(test_table_bound)
{
	char pat[32];
	int rc = 0;
	int n;

	for (n = 0; n < 1000; n++) {
		snprintf(pat, sizeof(pat), "/r%d", n);
		rc = http_route_add(r, HTTP_GET, pat, h_get, NULL);
		if (rc != 0) {
			break;
		}
	}
	ck_assert_int_eq(rc, MS_ENOMEM);
	ck_assert_int_eq(n, 64);
}
END_TEST

static void
check_precedence(bool literal_first)
{
	struct http_match m;

	basket_routes(literal_first);
	ck_assert_int_eq(
	    http_router_match(r, HTTP_POST, "/basket/checkout", &m), 0);
	ck_assert_ptr_eq(m.fn, h_checkout);
	ck_assert_str_eq(m.pattern, "/basket/checkout");
	ck_assert_uint_eq(m.nparams, 0);

	/* A GET of the same path falls to the parameter route, as in
	 * ASP.NET: precedence applies among routes of the method. */
	ck_assert_int_eq(http_router_match(r, HTTP_GET, "/basket/checkout", &m),
	                 0);
	ck_assert_ptr_eq(m.fn, h_get);
	ck_assert_str_eq(param(&m, "/basket/checkout", 0), "checkout");

	ck_assert_int_eq(http_router_match(r, HTTP_GET, "/basket/swn", &m), 0);
	ck_assert_ptr_eq(m.fn, h_get);
	ck_assert_str_eq(m.pattern, "/basket/{userName}");
	ck_assert_uint_eq(m.nparams, 1);
	ck_assert_str_eq(m.param_names[0], "userName");
	ck_assert_str_eq(param(&m, "/basket/swn", 0), "swn");

	ck_assert_int_eq(http_router_match(r, HTTP_DELETE, "/basket/swn", &m),
	                 0);
	ck_assert_ptr_eq(m.fn, h_del);
	ck_assert_int_eq(http_router_match(r, HTTP_POST, "/basket", &m), 0);
	ck_assert_ptr_eq(m.fn, h_post);
}

START_TEST(test_precedence_literal_first)
{
	check_precedence(true);
}
END_TEST

START_TEST(test_precedence_param_first)
{
	check_precedence(false);
}
END_TEST

START_TEST(test_precedence_by_depth)
{
	struct http_match m;

	ck_assert_int_eq(http_route_add(r, HTTP_GET, "/a/{x}/c", h_get, NULL),
	                 0);
	ck_assert_int_eq(http_route_add(r, HTTP_GET, "/a/b/{y}", h_del, NULL),
	                 0);
	ck_assert_int_eq(http_route_add(r, HTTP_GET, "/{z}/b/c", h_post, NULL),
	                 0);
	/* The first depth where they differ decides: "a" beats {z}, then
	 * "b" beats {x}. */
	ck_assert_int_eq(http_router_match(r, HTTP_GET, "/a/b/c", &m), 0);
	ck_assert_ptr_eq(m.fn, h_del);
	ck_assert_str_eq(m.param_names[0], "y");
	ck_assert_str_eq(param(&m, "/a/b/c", 0), "c");
	ck_assert_int_eq(http_router_match(r, HTTP_GET, "/a/q/c", &m), 0);
	ck_assert_ptr_eq(m.fn, h_get);
	ck_assert_int_eq(http_router_match(r, HTTP_GET, "/q/b/c", &m), 0);
	ck_assert_ptr_eq(m.fn, h_post);
}
END_TEST

START_TEST(test_case_and_trailing_slash)
{
	struct http_match m;

	basket_routes(true);
	ck_assert_int_eq(
	    http_router_match(r, HTTP_POST, "/BASKET/CheckOut", &m), 0);
	ck_assert_ptr_eq(m.fn, h_checkout);
	ck_assert_int_eq(http_router_match(r, HTTP_POST, "/basket/", &m), 0);
	ck_assert_ptr_eq(m.fn, h_post);
	/* Parameter values keep their case; the slash is not part of it. */
	ck_assert_int_eq(http_router_match(r, HTTP_GET, "/Basket/SwN/", &m), 0);
	ck_assert_ptr_eq(m.fn, h_get);
	ck_assert_str_eq(param(&m, "/Basket/SwN/", 0), "SwN");
}
END_TEST

START_TEST(test_empty_segments)
{
	struct http_match m;

	basket_routes(true);
	/* "/basket//" is "/basket/" + "" : an empty segment binds nothing. */
	ck_assert_int_eq(http_router_match(r, HTTP_GET, "/basket//", &m),
	                 MS_ENOTFOUND);
	ck_assert_int_eq(http_router_match(r, HTTP_GET, "//basket", &m),
	                 MS_ENOTFOUND);
	ck_assert_int_eq(http_router_match(r, HTTP_GET, "/basket//x", &m),
	                 MS_ENOTFOUND);
	ck_assert_int_eq(http_router_match(r, HTTP_GET, "basket/x", &m),
	                 MS_ENOTFOUND);
	ck_assert_int_eq(http_router_match(r, HTTP_GET, "", &m), MS_ENOTFOUND);
}
END_TEST

START_TEST(test_root_and_deep)
{
	struct http_match m;
	char deep[256] = "";

	ck_assert_int_eq(http_route_add(r, HTTP_GET, "/", h_get, NULL), 0);
	ck_assert_int_eq(http_router_match(r, HTTP_GET, "/", &m), 0);
	ck_assert_ptr_eq(m.fn, h_get);
	ck_assert_int_eq(http_router_match(r, HTTP_GET, "/x", &m),
	                 MS_ENOTFOUND);
	for (int i = 0; i < 40; i++) {
		strcat(deep, "/a");
	}
	ck_assert_int_eq(http_router_match(r, HTTP_GET, deep, &m),
	                 MS_ENOTFOUND);
}
END_TEST

START_TEST(test_405_allow)
{
	struct http_match m;

	basket_routes(true);
	ck_assert_int_eq(http_router_match(r, HTTP_GET, "/basket", &m),
	                 MS_EMETHOD);
	ck_assert_str_eq(m.allow, "POST");
	ck_assert_int_eq(http_router_match(r, HTTP_PUT, "/basket/swn", &m),
	                 MS_EMETHOD);
	ck_assert_str_eq(m.allow, "GET, DELETE");
	/* The literal route's method and the parameter route's both allow
	 * this path. */
	ck_assert_int_eq(
	    http_router_match(r, HTTP_PATCH, "/basket/checkout", &m),
	    MS_EMETHOD);
	ck_assert_str_eq(m.allow, "GET, POST, DELETE");
	ck_assert_int_eq(
	    http_router_match(r, HTTP_OTHER, "/basket/checkout", &m),
	    MS_EMETHOD);
	ck_assert_int_eq(http_router_match(r, HTTP_GET, "/orders", &m),
	                 MS_ENOTFOUND);
	ck_assert_str_eq(m.allow, "");
}
END_TEST

START_TEST(test_method_parse)
{
	ck_assert_int_eq(http_method_parse("GET"), HTTP_GET);
	ck_assert_int_eq(http_method_parse("POST"), HTTP_POST);
	ck_assert_int_eq(http_method_parse("PUT"), HTTP_PUT);
	ck_assert_int_eq(http_method_parse("DELETE"), HTTP_DELETE);
	ck_assert_int_eq(http_method_parse("HEAD"), HTTP_HEAD);
	ck_assert_int_eq(http_method_parse("PATCH"), HTTP_PATCH);
	ck_assert_int_eq(http_method_parse("OPTIONS"), HTTP_OPTIONS);
	ck_assert_int_eq(http_method_parse("get"), HTTP_OTHER);
	ck_assert_int_eq(http_method_parse("BREW"), HTTP_OTHER);
	ck_assert_int_eq(http_method_parse(""), HTTP_OTHER);
	ck_assert_int_eq(http_method_parse(NULL), HTTP_OTHER);
	ck_assert_str_eq(http_method_name(HTTP_DELETE), "DELETE");
	ck_assert_str_eq(http_method_name(HTTP_OTHER), "OTHER");
}
END_TEST

START_TEST(test_query)
{
	char buf[32];

	ck_assert_int_eq(http_query_get("pageIndex=2&pageSize=10", "pageSize",
	                                buf, sizeof(buf)),
	                 0);
	ck_assert_str_eq(buf, "10");
	ck_assert_int_eq(http_query_get("pageIndex=2&pageSize=10", "PAGEINDEX",
	                                buf, sizeof(buf)),
	                 0);
	ck_assert_str_eq(buf, "2");
	ck_assert_int_eq(
	    http_query_get("q=a%20b+c%2B%zz%4", "q", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "a b c+%zz%4");
	/* An escaped name matches its decoded form. */
	ck_assert_int_eq(
	    http_query_get("page%49ndex=3", "pageIndex", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "3");
	/* The first occurrence wins. */
	ck_assert_int_eq(http_query_get("a=1&a=2", "a", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "1");
	/* "%00" cannot cut the value short. */
	ck_assert_int_eq(http_query_get("a=x%00y", "a", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "x%00y");
	ck_assert_int_eq(
	    http_query_get("&&flag&b=&c=3", "flag", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "");
	ck_assert_int_eq(http_query_get("&&flag&b=&c=3", "b", buf, sizeof(buf)),
	                 0);
	ck_assert_str_eq(buf, "");
	ck_assert_int_eq(http_query_get("?c=3", "c", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "3");
	ck_assert_int_eq(http_query_get("ab=1", "a", buf, sizeof(buf)),
	                 MS_ENOTFOUND);
	ck_assert_int_eq(http_query_get("", "a", buf, sizeof(buf)),
	                 MS_ENOTFOUND);
	ck_assert_int_eq(http_query_get(NULL, "a", buf, sizeof(buf)),
	                 MS_ENOTFOUND);
	ck_assert_int_eq(http_query_get("a=0123456789", "a", buf, 10),
	                 MS_ETOOBIG);
	ck_assert_int_eq(http_query_get("a=012345678", "a", buf, 10), 0);
	ck_assert_str_eq(buf, "012345678");
}
END_TEST

static Suite *
router_suite(void)
{
	Suite *s = suite_create("http_router");
	TCase *tc = tcase_create("router");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_add_validation);
	tcase_add_test(tc, test_add_duplicates);
	tcase_add_test(tc, test_table_bound);
	tcase_add_test(tc, test_precedence_literal_first);
	tcase_add_test(tc, test_precedence_param_first);
	tcase_add_test(tc, test_precedence_by_depth);
	tcase_add_test(tc, test_case_and_trailing_slash);
	tcase_add_test(tc, test_empty_segments);
	tcase_add_test(tc, test_root_and_deep);
	tcase_add_test(tc, test_405_allow);
	tcase_add_test(tc, test_method_parse);
	tcase_add_test(tc, test_query);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(router_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
