/* SPDX-License-Identifier: MIT */
/*
 * Tests of the real HTTP listener (src/http/server.c): each test starts the
 * server on 127.0.0.1:0 with a small test router and talks plain HTTP/1.1
 * to it over a socket with the tiny client below (connect, send, read until
 * the server closes, under a poll deadline). Covers JSON answers, 404, 405
 * with Allow, 413, 415, malformed JSON, the raw query string, trace ids
 * (and the trace context current in the handler),
 * /health (200 and 503), /metrics, hostile input, keep-alive, and a stop
 * that waits for a request in flight.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/config.h"
#include "core/err.h"
#include "core/health.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/trace.h"
#include "core/util.h"
#include "http/http.h"
#include "http/json.h"
#include "http/server.h"

#define DEADLINE_MS 5000
#define MAX_BODY    1024 /* http.max_body: the config's smallest */

static struct ms_config *cfg;
static struct http_router *router;
static struct http_server *srv;
static uint16_t port;
static int probe_down;

/* /slow: the handler waits, under |mu|, until the test releases it. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool slow_entered;
static bool slow_release;

/* ---- the test routes ---------------------------------------------------- */

static int
h_get_item(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	ck_assert_uint_eq(req->nparams, 1);
	ck_assert_str_eq(req->param_names[0], "id");
	return http_resp_json(resp, 200,
	                      json_pack("{s:s, s:o}", "id", req->params[0],
	                                "price", http_json_money_new(35050)));
}

static int
h_post_item(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	json_t *root;
	int64_t cents = 0;
	int rc = http_json_parse(req->body, req->body_len, &root, resp);

	if (rc != 0) {
		return rc;
	}
	rc = http_json_money(root, "", "price", true, 0, &cents, resp);
	json_decref(root);
	if (rc != 0) {
		return rc;
	}
	snprintf(resp->location, sizeof(resp->location), "/items/new item");
	return http_resp_json(
	    resp, 201, json_pack("{s:o}", "price", http_json_money_new(cents)));
}

static int
h_del_item(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	return http_resp_json(resp, 200, json_pack("{s:b}", "isSuccess", 1));
}

static int
h_fail(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	return http_resp_fail(resp, MS_EUNAVAIL, "the %s is down", "thing");
}

static int
h_bug(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	return -22; /* -EINVAL: not one of ours */
}

static int
h_query(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	char buf[32] = "";
	int rc = http_query_get(req->query, "pageIndex", buf, sizeof(buf));

	return http_resp_json(resp, 200,
	                      json_pack("{s:s, s:i, s:s}", "pageIndex", buf,
	                                "rc", rc, "raw",
	                                req->query ? req->query : "(null)"));
}

/* Answers what the handler sees of its trace: the request's ids and the
 * thread's current context. */
static int
h_trace(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	const char *cur = ms_trace_get();

	return http_resp_json(
	    resp, 200,
	    json_pack("{s:s, s:s, s:s}", "traceId", req->trace_id,
	              "traceparent", req->traceparent ? req->traceparent : "",
	              "current", cur ? cur : ""));
}

static int
h_slow(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	pthread_mutex_lock(&mu);
	slow_entered = true;
	pthread_cond_broadcast(&cv);
	while (!slow_release) {
		pthread_cond_wait(&cv, &mu);
	}
	pthread_mutex_unlock(&mu);
	return http_resp_json(resp, 200, json_pack("{s:s}", "slow", "done"));
}

static int
probe(void *arg, char *desc, size_t len)
{
	if (*(int *)arg) {
		snprintf(desc, len, "probe is down");
		return MS_EUNAVAIL;
	}
	return 0;
}

static void
setup(void)
{
	char err[256];

	ms_log_set_level(MS_LOG_WARN);
	ck_assert_int_eq(ms_config_create(&cfg), 0);
	ck_assert_int_eq(ms_config_set(cfg, "http.listen=127.0.0.1:0", "test",
	                               err, sizeof(err)),
	                 0);
	ck_assert_int_eq(
	    ms_config_set(cfg, "http.max_body=1024", "test", err, sizeof(err)),
	    0);
	ck_assert_int_eq(
	    ms_config_set(cfg, "http.threads=2", "test", err, sizeof(err)), 0);
	ck_assert_int_eq(http_router_create(&router), 0);
	ck_assert_int_eq(
	    http_route_add(router, HTTP_GET, "/items/{id}", h_get_item, NULL),
	    0);
	ck_assert_int_eq(http_route_add(router, HTTP_DELETE, "/items/{id}",
	                                h_del_item, NULL),
	                 0);
	ck_assert_int_eq(
	    http_route_add(router, HTTP_POST, "/items", h_post_item, NULL), 0);
	ck_assert_int_eq(
	    http_route_add(router, HTTP_GET, "/fail", h_fail, NULL), 0);
	ck_assert_int_eq(http_route_add(router, HTTP_GET, "/bug", h_bug, NULL),
	                 0);
	ck_assert_int_eq(
	    http_route_add(router, HTTP_GET, "/query", h_query, NULL), 0);
	ck_assert_int_eq(
	    http_route_add(router, HTTP_GET, "/trace", h_trace, NULL), 0);
	ck_assert_int_eq(
	    http_route_add(router, HTTP_GET, "/slow", h_slow, NULL), 0);
	probe_down = 0;
	ms_metrics_reset();
	ck_assert_int_eq(
	    ms_health_register("probe", "module,test", probe, &probe_down), 0);
	ck_assert_int_eq(http_server_start(&srv, router, cfg), 0);
	port = http_server_port(srv);
	ck_assert_uint_ne(port, 0);
}

static void
teardown(void)
{
	/* Nothing is in flight by now but a client that left mid-body. */
	http_server_stop(srv, 500);
	srv = NULL;
	ms_health_unregister(&probe_down);
	http_router_destroy(router);
	ms_config_destroy(cfg);
}

/* ---- a tiny HTTP/1.1 client ---------------------------------------------- */

struct reply {
	char raw[65536];
	size_t len;
	int status;       /* 0 when no status line came back */
	const char *body; /* into raw */
	json_t *json;     /* parsed body when it is JSON, or NULL */
};

static int
dial(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static void
send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w <= 0) {
			return; /* the server may close early: read tells */
		}
		p += w;
		n -= (size_t)w;
	}
}

/* recv_until reads into |r| until the server closes, |r| holds a complete
 * response (when |one| is set: by Content-Length), or the deadline. */
static void
recv_until(int fd, struct reply *r, bool one)
{
	int64_t end = ms_now_ms() + DEADLINE_MS;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int64_t left = end - ms_now_ms();
		ssize_t n;

		if (one && r->len > 0) {
			char *h;
			const char *cl;

			r->raw[r->len] = '\0';
			h = strstr(r->raw, "\r\n\r\n");
			cl = strcasestr(r->raw, "\r\nContent-Length:");
			if (h != NULL && cl != NULL &&
			    r->len >= (size_t)(h + 4 - r->raw) +
			                  strtoul(cl + 17, NULL, 10)) {
				return;
			}
		}
		ck_assert_msg(left > 0, "no answer within %d ms", DEADLINE_MS);
		if (poll(&p, 1, (int)left) <= 0) {
			continue;
		}
		n = recv(fd, r->raw + r->len, sizeof(r->raw) - 1 - r->len, 0);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return; /* closed (or reset) */
		}
		r->len += (size_t)n;
		ck_assert_uint_lt(r->len, sizeof(r->raw) - 1);
	}
}

static void
parse_reply(struct reply *r)
{
	const char *h;

	r->raw[r->len] = '\0';
	r->status = 0;
	r->body = NULL;
	r->json = NULL;
	if (sscanf(r->raw, "HTTP/1.%*d %d", &r->status) != 1) {
		r->status = 0;
	}
	h = strstr(r->raw, "\r\n\r\n");
	if (h != NULL) {
		r->body = h + 4;
		r->json = json_loads(r->body, 0, NULL);
	}
}

/* call_hc sends |req| on a new connection and reads the whole answer;
 * with |half_close|, it then shuts its side, as a client that sends
 * garbage and leaves would, so that a server waiting for more sees EOF. */
static void
call_hc(const char *req, size_t len, bool half_close, struct reply *r)
{
	int fd = dial();

	memset(r, 0, sizeof(*r));
	send_all(fd, req, len);
	if (half_close) {
		shutdown(fd, SHUT_WR);
	}
	recv_until(fd, r, true);
	close(fd);
	parse_reply(r);
}

static void
call(const char *req, size_t len, struct reply *r)
{
	call_hc(req, len, false, r);
}

static void
calls(const char *req, struct reply *r)
{
	call(req, strlen(req), r);
}

/* post sends |body| to |path| with a correct Content-Length. */
static void
post(const char *path, const char *ctype, const char *body, struct reply *r)
{
	char req[4096];
	int n;

	n = snprintf(req, sizeof(req),
	             "POST %s HTTP/1.1\r\nHost: x\r\n%s%s%sContent-Length: "
	             "%zu\r\nConnection: close\r\n\r\n%s",
	             path, ctype ? "Content-Type: " : "", ctype ? ctype : "",
	             ctype ? "\r\n" : "", strlen(body), body);
	ck_assert_int_lt(n, (int)sizeof(req));
	call(req, (size_t)n, r);
}

static void
reply_free(struct reply *r)
{
	json_decref(r->json);
	r->json = NULL;
}

/* header returns the value of |name| in |r| (static copy) or NULL. */
static const char *
header(const struct reply *r, const char *name)
{
	static char val[256];
	const char *p = r->raw;
	const char *end = r->body ? r->body : r->raw + r->len;
	size_t n = strlen(name);

	while ((p = strstr(p, "\r\n")) != NULL && p < end) {
		p += 2;
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1;
			size_t k;

			while (*v == ' ') {
				v++;
			}
			k = strcspn(v, "\r\n");
			if (k >= sizeof(val)) {
				k = sizeof(val) - 1;
			}
			memcpy(val, v, k);
			val[k] = '\0';
			return val;
		}
	}
	return NULL;
}

static const char *
jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	ck_assert_msg(s != NULL, "no string \"%s\"", key);
	return s;
}

/* check_problem checks a problem+json answer of |status|. */
static void
check_problem(const struct reply *r, int status, const char *instance)
{
	ck_assert_int_eq(r->status, status);
	ck_assert_str_eq(header(r, "Content-Type"), "application/problem+json");
	ck_assert_ptr_nonnull(r->json);
	ck_assert_int_eq(json_integer_value(json_object_get(r->json, "status")),
	                 status);
	ck_assert_str_eq(jstr(r->json, "title"), http_status_reason(status));
	ck_assert_str_eq(jstr(r->json, "instance"), instance);
	ck_assert_uint_eq(strlen(jstr(r->json, "traceId")), 32);
	ck_assert(strlen(jstr(r->json, "detail")) > 0);
}

/* ---- tests ----------------------------------------------------------------
 */

START_TEST(test_get_json)
{
	struct reply r;

	calls("GET /items/42 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	      &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(header(&r, "Content-Type"),
	                 "application/json; charset=utf-8");
	ck_assert_str_eq(r.body, "{\"id\":\"42\",\"price\":350.5}");
	reply_free(&r);

	/* Case-insensitive literal, trailing slash, an encoded parameter. */
	calls("GET /ITEMS/a%20b/ HTTP/1.1\r\nHost: x\r\nConnection: "
	      "close\r\n\r\n",
	      &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(r.json, "id"), "a b");
	reply_free(&r);
}
END_TEST

START_TEST(test_not_found)
{
	struct reply r;

	calls("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	check_problem(&r, 404, "/nope");
	reply_free(&r);
	/* With a body: answered without reading it. */
	calls("POST /nope HTTP/1.1\r\nHost: x\r\nContent-Type: "
	      "application/json\r\nContent-Length: 100000\r\n\r\n",
	      &r);
	check_problem(&r, 404, "/nope");
	reply_free(&r);
}
END_TEST

START_TEST(test_method_not_allowed)
{
	struct reply r;

	calls("PUT /items/42 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	      &r);
	check_problem(&r, 405, "/items/42");
	ck_assert_str_eq(header(&r, "Allow"), "GET, DELETE");
	reply_free(&r);
	calls("BREW /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	      &r);
	check_problem(&r, 405, "/health");
	ck_assert_str_eq(header(&r, "Allow"), "GET");
	reply_free(&r);
}
END_TEST

START_TEST(test_too_large)
{
	char req[4096];
	char body[MAX_BODY + 2];
	struct reply r;

	/* Declared too large: 413 at once, the body never sent. */
	calls("POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: "
	      "application/json\r\nContent-Length: 1025\r\n\r\n",
	      &r);
	check_problem(&r, 413, "/items");
	ck_assert_str_eq(header(&r, "Connection"), "close");
	reply_free(&r);

	/* Exactly the limit is read (and judged as JSON). */
	memset(body, ' ', MAX_BODY);
	memcpy(body, "{\"price\": 1}", 12);
	body[MAX_BODY] = '\0';
	snprintf(req, sizeof(req),
	         "POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: "
	         "application/json\r\nContent-Length: %d\r\nConnection: "
	         "close\r\n\r\n%s",
	         MAX_BODY, body);
	calls(req, &r);
	ck_assert_int_eq(r.status, 201);
	reply_free(&r);

	/* Chunked past the limit: never accepted; 413 or a dropped
	 * connection, and the server lives on. */
	snprintf(req, sizeof(req),
	         "POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: "
	         "application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
	         "%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n",
	         MAX_BODY, body, 2, "  ");
	calls(req, &r);
	ck_assert_msg(r.status == 413 || r.status == 0, "status %d", r.status);
	reply_free(&r);
	calls("GET /items/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	      &r);
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);
}
END_TEST

START_TEST(test_media_type)
{
	struct reply r;

	post("/items", "text/plain", "{\"price\": 1}", &r);
	check_problem(&r, 415, "/items");
	reply_free(&r);
	post("/items", "Application/JSON; charset=utf-8", "{\"price\": 1}", &r);
	ck_assert_int_eq(r.status, 201);
	reply_free(&r);
	post("/items", "application/merge-patch+json", "{\"price\": 1}", &r);
	ck_assert_int_eq(r.status, 201);
	reply_free(&r);
	/* No Content-Type at all is taken as JSON. */
	post("/items", NULL, "{\"price\": 1}", &r);
	ck_assert_int_eq(r.status, 201);
	reply_free(&r);
}
END_TEST

START_TEST(test_post_money_and_location)
{
	struct reply r;

	post("/items", "application/json", "{\"Price\": 0.10}", &r);
	ck_assert_int_eq(r.status, 201);
	ck_assert_str_eq(header(&r, "Location"), "/items/new%20item");
	ck_assert_str_eq(r.body, "{\"price\":0.1}");
	reply_free(&r);
}
END_TEST

START_TEST(test_bad_json)
{
	struct reply r;
	const json_t *e;

	post("/items", "application/json", "{\"price\": 1.5,", &r);
	check_problem(&r, 400, "/items");
	e = json_array_get(json_object_get(r.json, "validationErrors"), 0);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(jstr(e, "propertyName"), "$");
	ck_assert_msg(strstr(jstr(e, "errorMessage"), "line 1, column") != NULL,
	              "%s", jstr(e, "errorMessage"));
	reply_free(&r);

	/* Valid JSON, invalid value: the field is named. */
	post("/items", "application/json", "{\"price\": 1.005}", &r);
	check_problem(&r, 400, "/items");
	e = json_array_get(json_object_get(r.json, "validationErrors"), 0);
	ck_assert_str_eq(jstr(e, "propertyName"), "price");
	reply_free(&r);

	/* No body at all. */
	post("/items", "application/json", "", &r);
	check_problem(&r, 400, "/items");
	reply_free(&r);
}
END_TEST

START_TEST(test_handler_errors)
{
	struct reply r;

	calls("GET /fail HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	check_problem(&r, 503, "/fail");
	ck_assert_str_eq(jstr(r.json, "detail"), "the thing is down");
	reply_free(&r);
	calls("GET /bug HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	check_problem(&r, 500, "/bug");
	reply_free(&r);
}
END_TEST

START_TEST(test_query_raw)
{
	struct reply r;

	calls("GET /query?pageIndex=%33&x=a+b HTTP/1.1\r\nHost: "
	      "x\r\nConnection: close\r\n\r\n",
	      &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(r.json, "pageIndex"), "3");
	ck_assert_str_eq(jstr(r.json, "raw"), "pageIndex=%33&x=a+b");
	reply_free(&r);
	calls("GET /query HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	      &r);
	ck_assert_str_eq(jstr(r.json, "raw"), "(null)");
	ck_assert_int_eq(json_integer_value(json_object_get(r.json, "rc")),
	                 MS_ENOTFOUND);
	reply_free(&r);
}
END_TEST

START_TEST(test_trace_id)
{
	struct reply r;

	calls("GET /nope HTTP/1.1\r\nHost: x\r\ntraceparent: "
	      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
	      "Connection: close\r\n\r\n",
	      &r);
	check_problem(&r, 404, "/nope");
	ck_assert_str_eq(jstr(r.json, "traceId"),
	                 "0af7651916cd43dd8448eb211c80319c");
	reply_free(&r);
	/* Invalid (all-zero trace id): a fresh one instead. */
	calls("GET /trace HTTP/1.1\r\nHost: x\r\ntraceparent: "
	      "00-00000000000000000000000000000000-b7ad6b7169203331-01\r\n"
	      "Connection: close\r\n\r\n",
	      &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(strlen(jstr(r.json, "traceId")), 32);
	ck_assert_str_ne(jstr(r.json, "traceId"),
	                 "00000000000000000000000000000000");
	reply_free(&r);
}
END_TEST

/* The handler runs with the request's trace context current: the
 * client's traceparent when it sent a valid one, a fresh valid one
 * otherwise, and the same one it gets in req->traceparent. */
START_TEST(test_trace_current)
{
	static const char tp[] =
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
	char out[MS_TRACEPARENT_SIZE];
	char first[MS_TRACEPARENT_SIZE];
	struct reply r;

	calls("GET /trace HTTP/1.1\r\nHost: x\r\ntraceparent: "
	      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
	      "Connection: close\r\n\r\n",
	      &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(r.json, "current"), tp);
	ck_assert_str_eq(jstr(r.json, "traceparent"), tp);
	ck_assert_str_eq(jstr(r.json, "traceId"),
	                 "0af7651916cd43dd8448eb211c80319c");
	reply_free(&r);

	/* None sent: a new trace, valid, the handler's current one. */
	calls("GET /trace HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	      &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(ms_trace_parse(jstr(r.json, "current"), out), 0);
	ck_assert_str_eq(jstr(r.json, "traceparent"), jstr(r.json, "current"));
	ck_assert_int_eq(
	    strncmp(jstr(r.json, "traceId"), jstr(r.json, "current") + 3, 32),
	    0);
	ms_strlcpy(first, jstr(r.json, "current"), sizeof(first));
	reply_free(&r);

	/* A second request without one gets another trace, not the last
	 * request's left behind on the worker thread. */
	calls("GET /trace HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	      &r);
	ck_assert_int_eq(ms_trace_parse(jstr(r.json, "current"), out), 0);
	ck_assert_int_ne(strncmp(jstr(r.json, "current") + 3, first + 3, 32),
	                 0);
	reply_free(&r);

	/* An invalid one (upper case) is replaced, never made current. */
	calls("GET /trace HTTP/1.1\r\nHost: x\r\ntraceparent: "
	      "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01\r\n"
	      "Connection: close\r\n\r\n",
	      &r);
	ck_assert_int_eq(ms_trace_parse(jstr(r.json, "current"), out), 0);
	ck_assert_int_ne(strncmp(jstr(r.json, "current") + 3,
	                         "0af7651916cd43dd8448eb211c80319c", 32),
	                 0);
	reply_free(&r);
}
END_TEST

START_TEST(test_health)
{
	struct reply r;
	json_t *e;

	calls("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	      &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(r.json);
	ck_assert_str_eq(jstr(r.json, "status"), "Healthy");
	ck_assert_uint_eq(strlen(jstr(r.json, "totalDuration")), 16);
	e = json_object_get(json_object_get(r.json, "entries"), "probe");
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(jstr(e, "status"), "Healthy");
	ck_assert_uint_eq(strlen(jstr(e, "duration")), 16);
	ck_assert_int_eq(strncmp(jstr(e, "duration"), "00:00:0", 7), 0);
	ck_assert(json_is_object(json_object_get(e, "data")));
	ck_assert_str_eq(
	    json_string_value(json_array_get(json_object_get(e, "tags"), 1)),
	    "test");
	reply_free(&r);

	probe_down = 1;
	calls("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	      &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(jstr(r.json, "status"), "Unhealthy");
	e = json_object_get(json_object_get(r.json, "entries"), "probe");
	ck_assert_str_eq(jstr(e, "status"), "Unhealthy");
	ck_assert_str_eq(jstr(e, "description"), "probe is down");
	reply_free(&r);
}
END_TEST

START_TEST(test_metrics)
{
	struct reply r;

	calls("GET /items/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	      &r);
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);
	calls("GET /zzz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 404);
	reply_free(&r);
	calls("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	      &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(header(&r, "Content-Type"),
	                 "text/plain; version=0.0.4; charset=utf-8");
	ck_assert_ptr_nonnull(
	    strstr(r.body, "monoshop_http_requests_total{method=\"GET\","
	                   "route=\"/items/{id}\",code=\"200\"} 1\n"));
	ck_assert_ptr_nonnull(
	    strstr(r.body, "monoshop_http_requests_total{method=\"GET\","
	                   "route=\"unmatched\",code=\"404\"} 1\n"));
	ck_assert_ptr_nonnull(
	    strstr(r.body, "monoshop_http_request_duration_seconds_count{"
	                   "method=\"GET\",route=\"/items/{id}\"} 1\n"));
	reply_free(&r);
}
END_TEST

START_TEST(test_hostile_input)
{
	static const char binary[] = "\x00\x01\x02garbage\r\n\r\n";
	static const char *const bad[] = {
	    "GET\r\n\r\n",
	    "GET /items/%FF HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	    "GET /items/a%00b HTTP/1.1\r\nHost: x\r\nConnection: "
	    "close\r\n\r\n",
	    "POST /items HTTP/1.1\r\nHost: x\r\nContent-Length: "
	    "abc\r\n\r\n",
	    "POST /items HTTP/1.1\r\nHost: x\r\nContent-Length: "
	    "99999999999999999999999\r\n\r\n",
	    "GET /items/1 HTTP/1.1\r\nHost: x\r\nX-Bad\r\n\r\n",
	};
	char *flood = malloc(64 * 1024);
	struct reply r;
	size_t n;

	for (size_t i = 0; i < MS_ARRAY_SIZE(bad); i++) {
		call_hc(bad[i], strlen(bad[i]), true, &r);
		ck_assert_msg(r.status == 0 || r.status >= 400,
		              "case %zu answered %d", i, r.status);
		reply_free(&r);
	}
	/* A path that decodes to bytes that are not UTF-8, or to a NUL. */
	calls(bad[1], &r);
	check_problem(&r, 400, "/items/?");
	reply_free(&r);
	calls(bad[2], &r);
	ck_assert_int_eq(r.status, 400);
	reply_free(&r);

	/* Binary noise, and a client that leaves in the middle of its body:
	 * libmicrohttpd may only drop those at the connection timeout, so
	 * do not wait for an answer, only for the server to stay up. */
	{
		static const char part[] =
		    "POST /items HTTP/1.1\r\nHost: x\r\nContent-Length: "
		    "10\r\n\r\n{\"a\"";
		int fd = dial();

		send_all(fd, part, sizeof(part) - 1);
		close(fd);
		fd = dial();
		send_all(fd, binary, sizeof(binary) - 1);
		close(fd);
	}

	/* A header flood past MHD's memory limit. */
	n = (size_t)snprintf(flood, 64, "GET /items/1 HTTP/1.1\r\nX-Big: ");
	memset(flood + n, 'a', 40000);
	n += 40000;
	memcpy(flood + n, "\r\nHost: x\r\n\r\n", 14);
	n += 13;
	call(flood, n, &r);
	ck_assert_msg(r.status == 0 || r.status >= 400, "flood answered %d",
	              r.status);
	reply_free(&r);
	free(flood);

	/* Still serving. */
	calls("GET /items/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	      &r);
	ck_assert_int_eq(r.status, 200);
	reply_free(&r);
}
END_TEST

START_TEST(test_keep_alive)
{
	static const char get[] = "GET /items/1 HTTP/1.1\r\nHost: x\r\n\r\n";
	struct reply r;
	int fd = dial();

	/* Two answers on one connection: GETs are not closed. */
	for (int i = 0; i < 2; i++) {
		memset(&r, 0, sizeof(r));
		send_all(fd, get, strlen(get));
		recv_until(fd, &r, true);
		parse_reply(&r);
		ck_assert_int_eq(r.status, 200);
		ck_assert_str_eq(jstr(r.json, "id"), "1");
		reply_free(&r);
	}
	close(fd);
}
END_TEST

static void *
stopper(void *arg)
{
	http_server_stop(srv, DEADLINE_MS);
	return NULL;
}

START_TEST(test_stop_waits_for_in_flight)
{
	static const char get[] =
	    "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	struct reply r;
	pthread_t t;
	int fd = dial();

	memset(&r, 0, sizeof(r));
	send_all(fd, get, strlen(get));
	pthread_mutex_lock(&mu);
	while (!slow_entered) {
		pthread_cond_wait(&cv, &mu);
	}
	pthread_mutex_unlock(&mu);
	/* Stop while the handler runs; then let it finish: its answer
	 * must still reach the client whole. */
	ck_assert_int_eq(pthread_create(&t, NULL, stopper, NULL), 0);
	pthread_mutex_lock(&mu);
	slow_release = true;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	recv_until(fd, &r, false);
	close(fd);
	pthread_join(t, NULL);
	srv = NULL; /* stopped */
	parse_reply(&r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(r.json, "slow"), "done");
	reply_free(&r);
}
END_TEST

START_TEST(test_bad_listen)
{
	struct ms_config *c2;
	struct http_server *s2 = NULL;
	char err[256];
	char addr[64];

	ck_assert_int_eq(ms_config_create(&c2), 0);
	/* The port is taken by the fixture's server. */
	snprintf(addr, sizeof(addr), "http.listen=127.0.0.1:%u", port);
	ck_assert_int_eq(ms_config_set(c2, addr, "test", err, sizeof(err)), 0);
	ck_assert_int_eq(http_server_start(&s2, router, c2), MS_EIO);
	ck_assert_ptr_null(s2);
	/* IPv6 literal, ephemeral port (skipped where there is no ::1). */
	ck_assert_int_eq(
	    ms_config_set(c2, "http.listen=[::1]:0", "test", err, sizeof(err)),
	    0);
	if (http_server_start(&s2, router, c2) == 0) {
		ck_assert_uint_ne(http_server_port(s2), 0);
		http_server_stop(s2, 1000);
	}
	/* One thread (no pool) serves too. */
	ck_assert_int_eq(ms_config_set(c2, "http.listen=127.0.0.1:0", "test",
	                               err, sizeof(err)),
	                 0);
	ck_assert_int_eq(
	    ms_config_set(c2, "http.threads=1", "test", err, sizeof(err)), 0);
	ck_assert_int_eq(http_server_start(&s2, router, c2), 0);
	{
		uint16_t fixture_port = port;
		struct reply r;

		port = http_server_port(s2);
		calls("GET /items/9 HTTP/1.1\r\nHost: x\r\nConnection: "
		      "close\r\n\r\n",
		      &r);
		port = fixture_port;
		ck_assert_int_eq(r.status, 200);
		ck_assert_str_eq(jstr(r.json, "id"), "9");
		reply_free(&r);
	}
	http_server_stop(s2, 1000);
	ms_config_destroy(c2);
}
END_TEST

static Suite *
server_suite(void)
{
	Suite *s = suite_create("http_server");
	TCase *tc = tcase_create("server");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_get_json);
	tcase_add_test(tc, test_not_found);
	tcase_add_test(tc, test_method_not_allowed);
	tcase_add_test(tc, test_too_large);
	tcase_add_test(tc, test_media_type);
	tcase_add_test(tc, test_post_money_and_location);
	tcase_add_test(tc, test_bad_json);
	tcase_add_test(tc, test_handler_errors);
	tcase_add_test(tc, test_query_raw);
	tcase_add_test(tc, test_trace_id);
	tcase_add_test(tc, test_trace_current);
	tcase_add_test(tc, test_health);
	tcase_add_test(tc, test_metrics);
	tcase_add_test(tc, test_hostile_input);
	tcase_add_test(tc, test_keep_alive);
	tcase_add_test(tc, test_stop_waits_for_in_flight);
	tcase_add_test(tc, test_bad_listen);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(server_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
