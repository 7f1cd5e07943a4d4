/* SPDX-License-Identifier: MIT */
/*
 * Tests of the REST listener's access key and limits (issue 8), on the real
 * server (127.0.0.1:0) with a small router: http.api_key (writes need
 * X-Api-Key, compared in constant time; reads, /health and /metrics stay
 * open; the 401 is problem+json "Unauthorized" decided before the body),
 * http.max_json_depth reaching the handlers through http_json_parse_body,
 * and http.max_header_size (libmicrohttpd's 431).
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "http/http.h"
#include "http/json.h"
#include "http/server.h"

#define DEADLINE_MS 5000
#define KEY         "k3y-0123456789-abcdef"

static struct ms_config *cfg;
static struct http_router *router;
static struct http_server *srv;
static uint16_t port;
static int writes; /* handler runs of POST /items */

static int
h_post(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	json_t *root;
	int rc = http_json_parse_body(req, &root, resp);

	if (rc != 0) {
		return rc;
	}
	writes++;
	json_decref(root);
	return http_resp_json(resp, 201, json_pack("{s:b}", "ok", 1));
}

static int
h_get(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	return http_resp_json(resp, 200, json_pack("{s:b}", "ok", 1));
}

/* start runs the server with "key=value" settings |sets| (NULL ended). */
static void
start(const char *const *sets)
{
	char err[256];

	ms_log_set_level(MS_LOG_ERROR);
	ck_assert_int_eq(ms_config_create(&cfg), 0);
	ck_assert_int_eq(ms_config_set(cfg, "http.listen=127.0.0.1:0", "test",
	                               err, sizeof(err)),
	                 0);
	for (; *sets != NULL; sets++) {
		ck_assert_msg(
		    ms_config_set(cfg, *sets, "test", err, sizeof(err)) == 0,
		    "%s", err);
	}
	ck_assert_int_eq(http_router_create(&router), 0);
	ck_assert_int_eq(
	    http_route_add(router, HTTP_POST, "/items", h_post, NULL), 0);
	ck_assert_int_eq(
	    http_route_add(router, HTTP_DELETE, "/items/{id}", h_get, NULL), 0);
	ck_assert_int_eq(
	    http_route_add(router, HTTP_GET, "/items/{id}", h_get, NULL), 0);
	ck_assert_int_eq(http_server_start(&srv, router, cfg), 0);
	port = http_server_port(srv);
	writes = 0;
}

static void
teardown(void)
{
	http_server_stop(srv, 500);
	srv = NULL;
	http_router_destroy(router);
	ms_config_destroy(cfg);
}

/* ---- a tiny client: one request per connection, read until closed or a
 * whole answer (Content-Length) is in ---- */

struct reply {
	char raw[16384];
	size_t len;
	int status;
	json_t *json; /* the body, when JSON */
};

static void
call(const char *req, size_t len, struct reply *r)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int64_t end = ms_now_ms() + DEADLINE_MS;
	const char *h;

	memset(r, 0, sizeof(*r));
	ck_assert_int_ge(fd, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	while (len > 0) {
		ssize_t w = send(fd, req, len, MSG_NOSIGNAL);

		if (w <= 0) {
			break; /* the server answered early and closed */
		}
		req += w;
		len -= (size_t)w;
	}
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		const char *cl;
		ssize_t n;

		r->raw[r->len] = '\0';
		h = strstr(r->raw, "\r\n\r\n");
		cl = strcasestr(r->raw, "\r\nContent-Length:");
		if (h != NULL && cl != NULL &&
		    r->len >=
		        (size_t)(h + 4 - r->raw) + strtoul(cl + 17, NULL, 10)) {
			break;
		}
		ck_assert_msg(ms_now_ms() < end, "no answer in time");
		if (poll(&p, 1, DEADLINE_MS) <= 0) {
			continue;
		}
		n = recv(fd, r->raw + r->len, sizeof(r->raw) - 1 - r->len, 0);
		if (n <= 0) {
			break;
		}
		r->len += (size_t)n;
		ck_assert_uint_lt(r->len, sizeof(r->raw) - 1);
	}
	close(fd);
	r->raw[r->len] = '\0';
	if (sscanf(r->raw, "HTTP/1.%*d %d", &r->status) != 1) {
		r->status = 0;
	}
	h = strstr(r->raw, "\r\n\r\n");
	r->json = h ? json_loads(h + 4, 0, NULL) : NULL;
}

static void
post(const char *key_header, const char *body, struct reply *r)
{
	char req[4096];
	int n = snprintf(req, sizeof(req),
	                 "POST /items HTTP/1.1\r\nHost: t\r\n%s"
	                 "Content-Type: application/json\r\n"
	                 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
	                 key_header, strlen(body), body);

	ck_assert_int_lt(n, (int)sizeof(req));
	call(req, (size_t)n, r);
}

static void
simple(const char *method, const char *path, const char *key_header,
       struct reply *r)
{
	char req[1024];
	int n = snprintf(req, sizeof(req),
	                 "%s %s HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n"
	                 "\r\n",
	                 method, path, key_header);

	call(req, (size_t)n, r);
}

static void
expect_401(struct reply *r)
{
	ck_assert_int_eq(r->status, 401);
	ck_assert_ptr_nonnull(strcasestr(r->raw, "application/problem+json"));
	ck_assert_ptr_null(strcasestr(r->raw, "WWW-Authenticate"));
	ck_assert_ptr_nonnull(r->json);
	ck_assert_str_eq(json_string_value(json_object_get(r->json, "title")),
	                 "Unauthorized");
	ck_assert_int_eq(json_integer_value(json_object_get(r->json, "status")),
	                 401);
	/* The key is never echoed. */
	ck_assert_ptr_null(strstr(r->raw, KEY));
	json_decref(r->json);
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(test_key_guards_writes)
{
	static const char *const sets[] = {"http.api_key=" KEY, NULL};
	struct reply r;

	start(sets);
	post("", "{}", &r);
	expect_401(&r);
	post("X-Api-Key: wrong\r\n", "{}", &r);
	expect_401(&r);
	post("X-Api-Key: " KEY "x\r\n", "{}", &r);
	expect_401(&r);
	post("X-Api-Key: k3y-0123456789-abcde\r\n", "{}", &r); /* prefix */
	expect_401(&r);
	post("X-Api-Key: \r\n", "{}", &r);
	expect_401(&r);
	/* Decided from the headers: a malformed body still gets 401. */
	post("", "{not json", &r);
	expect_401(&r);
	simple("DELETE", "/items/1", "", &r);
	expect_401(&r);
	ck_assert_int_eq(writes, 0);

	post("X-Api-Key: " KEY "\r\n", "{}", &r);
	ck_assert_int_eq(r.status, 201);
	json_decref(r.json);
	post("x-api-key: " KEY "\r\n", "{}", &r); /* names: any case */
	ck_assert_int_eq(r.status, 201);
	json_decref(r.json);
	ck_assert_int_eq(writes, 2);
	simple("DELETE", "/items/1", "X-Api-Key: " KEY "\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	json_decref(r.json);

	/* Reads and the built-ins stay open. */
	simple("GET", "/items/1", "", &r);
	ck_assert_int_eq(r.status, 200);
	json_decref(r.json);
	simple("GET", "/health", "", &r);
	ck_assert_int_eq(r.status, 200);
	json_decref(r.json);
	simple("GET", "/metrics", "", &r);
	ck_assert_int_eq(r.status, 200);
	/* An unknown route is still 404, a wrong method 405: no key asked
	 * where nothing would be written. */
	simple("POST", "/nope", "", &r);
	ck_assert_int_eq(r.status, 404);
	json_decref(r.json);
	simple("PUT", "/items", "", &r);
	ck_assert_int_eq(r.status, 405);
	json_decref(r.json);
	teardown();
}
END_TEST

START_TEST(test_no_key_is_open)
{
	static const char *const sets[] = {NULL};
	struct reply r;

	start(sets);
	post("", "{}", &r);
	ck_assert_int_eq(r.status, 201);
	json_decref(r.json);
	post("X-Api-Key: anything\r\n", "{}", &r);
	ck_assert_int_eq(r.status, 201);
	json_decref(r.json);
	teardown();
}
END_TEST

/* A body nested |depth| levels: {"a":{"a":...1...}}. */
static char *
nested(int depth)
{
	size_t cap = (size_t)depth * 6 + 8;
	char *s = malloc(cap);
	size_t o = 0;

	ck_assert_ptr_nonnull(s);
	for (int i = 0; i < depth; i++) {
		o += (size_t)snprintf(s + o, cap - o, "{\"a\":");
	}
	o += (size_t)snprintf(s + o, cap - o, "1");
	for (int i = 0; i < depth; i++) {
		s[o++] = '}';
	}
	s[o] = '\0';
	return s;
}

START_TEST(test_json_depth)
{
	static const char *const sets[] = {"http.max_json_depth=4", NULL};
	struct reply r;
	char *ok = nested(4);
	char *deep = nested(5);

	start(sets);
	post("", ok, &r);
	ck_assert_int_eq(r.status, 201);
	json_decref(r.json);
	post("", deep, &r);
	ck_assert_int_eq(r.status, 400);
	ck_assert_ptr_nonnull(strstr(r.raw, "deeper than 4 levels"));
	json_decref(r.json);
	teardown();
	free(ok);
	free(deep);

	/* The default (32) when the key is not set. */
	ok = nested(32);
	deep = nested(33);
	start((const char *const[]){NULL});
	post("", ok, &r);
	ck_assert_int_eq(r.status, 201);
	json_decref(r.json);
	post("", deep, &r);
	ck_assert_int_eq(r.status, 400);
	json_decref(r.json);
	teardown();
	free(ok);
	free(deep);
}
END_TEST

START_TEST(test_header_size)
{
	static const char *const sets[] = {"http.max_header_size=4K", NULL};
	char big[6000];
	char req[8192];
	struct reply r;
	int n;

	start(sets);
	memset(big, 'v', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	n = snprintf(req, sizeof(req),
	             "GET /items/1 HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n",
	             big);
	call(req, (size_t)n, &r);
	ck_assert_int_eq(r.status, 431);
	big[1000] = '\0';
	n = snprintf(req, sizeof(req),
	             "GET /items/1 HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n"
	             "Connection: close\r\n\r\n",
	             big);
	call(req, (size_t)n, &r);
	ck_assert_int_eq(r.status, 200);
	json_decref(r.json);
	teardown();
}
END_TEST

static Suite *
limits_suite(void)
{
	Suite *s = suite_create("http_limits");
	TCase *tc = tcase_create("limits");

	tcase_add_test(tc, test_key_guards_writes);
	tcase_add_test(tc, test_no_key_is_open);
	tcase_add_test(tc, test_json_depth);
	tcase_add_test(tc, test_header_size);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(limits_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
