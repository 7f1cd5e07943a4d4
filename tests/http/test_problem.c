/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the response helpers and problem details
 * (src/http/problem.c): the exact problem+json shape with and without
 * validationErrors, the defaults (title from the status, detail from the
 * error code), the validation error cap, and text that is not UTF-8.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "http/http.h"
#include "http/json.h"

static struct http_resp resp;

static void
setup(void)
{
	memset(&resp, 0, sizeof(resp));
}

/* dump_eq checks the compact dump of |v| (consumed). */
static void
dump_eq(json_t *v, const char *want)
{
	char *s;

	ck_assert_ptr_nonnull(v);
	s = http_json_dump(v, NULL);
	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(s, want);
	free(s);
	json_decref(v);
}

START_TEST(test_not_found)
{
	ck_assert_int_eq(http_resp_fail(&resp, MS_ENOTFOUND,
	                                "Entity \"%s\" (%s) was not found.",
	                                "Basket", "swn"),
	                 MS_ENOTFOUND);
	dump_eq(http_problem_json(MS_ENOTFOUND, &resp, "/basket/swn",
	                          "0af7651916cd43dd8448eb211c80319c"),
	        "{\"title\":\"Not Found\",\"status\":404,"
	        "\"detail\":\"Entity \\\"Basket\\\" (swn) was not found.\","
	        "\"instance\":\"/basket/swn\","
	        "\"traceId\":\"0af7651916cd43dd8448eb211c80319c\"}");
}
END_TEST

START_TEST(test_defaults)
{
	/* No detail: the code's message; no title: the reason phrase. */
	dump_eq(http_problem_json(MS_EUNAVAIL, &resp, "/basket", "t"),
	        "{\"title\":\"Service Unavailable\",\"status\":503,"
	        "\"detail\":\"service unavailable\",\"instance\":\"/basket\","
	        "\"traceId\":\"t\"}");
	dump_eq(http_problem_json(MS_ETOOBIG, NULL, NULL, NULL),
	        "{\"title\":\"Payload Too Large\",\"status\":413,"
	        "\"detail\":\"too large\",\"instance\":\"\",\"traceId\":\"\"}");
	strcpy(resp.title, "BasketNotFoundException");
	dump_eq(http_problem_json(MS_ENOTFOUND, &resp, "/x", "t"),
	        "{\"title\":\"BasketNotFoundException\",\"status\":404,"
	        "\"detail\":\"not found\",\"instance\":\"/x\","
	        "\"traceId\":\"t\"}");
	/* Not one of ours (a -errno): a bug, 500. */
	memset(&resp, 0, sizeof(resp));
	{
		json_t *p = http_problem_json(-5, &resp, "/x", "t");

		ck_assert_int_eq(
		    json_integer_value(json_object_get(p, "status")), 500);
		ck_assert_str_eq(json_string_value(json_object_get(p, "title")),
		                 "Internal Server Error");
		json_decref(p);
	}
}
END_TEST

START_TEST(test_validation_errors)
{
	http_verr_add(&resp, "cart.userName", "'%s' is required", "userName");
	http_verr_add(&resp, "cart.items[0].price",
	              "'price' must be a number with at most 2 decimals");
	ck_assert_uint_eq(resp.nverrs, 2);
	dump_eq(http_problem_json(MS_EVALIDATION, &resp, "/basket", "t"),
	        "{\"title\":\"Bad Request\",\"status\":400,"
	        "\"detail\":\"validation failed\",\"instance\":\"/basket\","
	        "\"traceId\":\"t\",\"validationErrors\":["
	        "{\"propertyName\":\"cart.userName\","
	        "\"errorMessage\":\"'userName' is required\"},"
	        "{\"propertyName\":\"cart.items[0].price\","
	        "\"errorMessage\":\"'price' must be a number with at most 2 "
	        "decimals\"}]}");
}
END_TEST

START_TEST(test_verr_cap)
{
	json_t *p;

	for (int i = 0; i < HTTP_MAX_VERRS + 10; i++) {
		http_verr_add(&resp, "x", "error %d", i);
	}
	ck_assert_uint_eq(resp.nverrs, HTTP_MAX_VERRS);
	ck_assert_str_eq(resp.verrs[HTTP_MAX_VERRS - 1].message, "error 31");
	p = http_problem_json(MS_EVALIDATION, &resp, "/", "t");
	ck_assert_uint_eq(
	    json_array_size(json_object_get(p, "validationErrors")),
	    HTTP_MAX_VERRS);
	json_decref(p);
}
END_TEST

START_TEST(test_not_utf8)
{
	char longmsg[400];
	json_t *p;

	/* A path MHD decoded from %FF, and a message cut inside a
	 * character: the problem is still made. */
	memset(longmsg, 'a', sizeof(longmsg));
	memcpy(longmsg + 158, "\xc3\xa9", 2);
	longmsg[sizeof(longmsg) - 1] = '\0';
	http_verr_add(&resp, "p", "%s", longmsg);
	ck_assert_uint_eq(strlen(resp.verrs[0].message), 158);
	p = http_problem_json(MS_EVALIDATION, &resp, "/basket/\xff", "t");
	ck_assert_ptr_nonnull(p);
	ck_assert_str_eq(json_string_value(json_object_get(p, "instance")),
	                 "/basket/?");
	json_decref(p);
}
END_TEST

START_TEST(test_resp_json)
{
	json_t *a = json_object();
	json_t *b = json_object();

	ck_assert_int_eq(http_resp_json(&resp, 201, a), 0);
	ck_assert_int_eq(resp.status, 201);
	ck_assert_ptr_eq(resp.body, a);
	/* Replacing the body releases the first one (no leak under
	 * valgrind). */
	ck_assert_int_eq(http_resp_json(&resp, 200, b), 0);
	ck_assert_ptr_eq(resp.body, b);
	ck_assert_int_eq(http_resp_json(&resp, 200, NULL), MS_ENOMEM);
	ck_assert_ptr_null(resp.body);
}
END_TEST

START_TEST(test_reasons)
{
	ck_assert_str_eq(http_status_reason(400), "Bad Request");
	ck_assert_str_eq(http_status_reason(404), "Not Found");
	ck_assert_str_eq(http_status_reason(405), "Method Not Allowed");
	ck_assert_str_eq(http_status_reason(413), "Payload Too Large");
	ck_assert_str_eq(http_status_reason(415), "Unsupported Media Type");
	ck_assert_str_eq(http_status_reason(500), "Internal Server Error");
	ck_assert_str_eq(http_status_reason(503), "Service Unavailable");
	ck_assert_str_eq(http_status_reason(504), "Gateway Timeout");
	ck_assert_str_eq(http_status_reason(201), "Created");
}
END_TEST

static Suite *
problem_suite(void)
{
	Suite *s = suite_create("http_problem");
	TCase *tc = tcase_create("problem");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_not_found);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_validation_errors);
	tcase_add_test(tc, test_verr_cap);
	tcase_add_test(tc, test_not_utf8);
	tcase_add_test(tc, test_resp_json);
	tcase_add_test(tc, test_reasons);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(problem_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
