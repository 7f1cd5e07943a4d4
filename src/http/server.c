/* SPDX-License-Identifier: MIT */
/*
 * The HTTP/1.1 listener on libmicrohttpd (MHD): the only file that knows
 * MHD. For each request it reads the headers, decides early what can be
 * decided without the body (404, 405, 415, 413 from Content-Length) and
 * answers those at once without reading the body; otherwise it collects
 * the body up to http.max_body, runs the route's handler and writes
 * application/json, or application/problem+json for every error. It also
 * serves GET /health and GET /metrics itself, and records per-route
 * request counts and latencies. With http.api_key set, every write (any
 * method but GET and HEAD) must carry it in X-Api-Key, or is answered 401
 * from the headers alone. Each request runs under its W3C trace context
 * (core/trace.h): the client's traceparent when valid, else a new trace,
 * whose id is also the problem details' traceId.
 *
 * Threads: MHD's internal thread pool (http.threads, epoll) calls every
 * callback here; one request is only ever touched by one thread at a time.
 * The server struct is written by the starting thread before MHD starts,
 * then only read, except the in-flight counter (under srv->mu) and the
 * quiesce state (main thread only).
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
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

#define SUB "http"

/* http.api_key: the config allows at most 256 characters. */
#define API_KEY_MAX 256

struct http_server {
	struct MHD_Daemon *daemon;
	struct http_router *router; /* borrowed */
	size_t max_body;
	unsigned max_json_depth;       /* http.max_json_depth */
	char api_key[API_KEY_MAX + 1]; /* http.api_key, or "" (open) */
	size_t api_key_len;
	char addr[80]; /* "127.0.0.1:8080", for logs */
	uint16_t port;
	atomic_bool started; /* MHD's start-up messages are warnings, later
	                        ones debug: clients cause them */
	bool quiesced;
	atomic_bool draining; /* quiesced: answers close their connection */
	MHD_socket listen_fd; /* ours to close after a quiesce */
	pthread_mutex_t mu;
	pthread_cond_t idle;
	unsigned inflight; /* requests between URI and completion */
};

/* One request; created by the URI callback, freed by the completion
 * callback (req_free), which MHD calls for every request it reported. */
struct request {
	struct http_server *srv;
	char *uri; /* raw request target incl. query; owned, may be NULL */
	int64_t t0_us;
	bool started;  /* headers seen by the access handler */
	bool answered; /* a response is queued */
	enum http_method method;
	int early_rc; /* error decided from the headers, or 0 */
	struct http_match match;
	char *body; /* owned; NUL-terminated */
	size_t body_len;
	size_t body_cap;
	/* The request's trace context: its valid traceparent header, or a
	 * new trace; current on the thread while MHD runs our callbacks for
	 * this request, so every log line they write carries its id. */
	char traceparent[MS_TRACEPARENT_SIZE];
	char trace_id[MS_TRACE_ID_SIZE]; /* for problem details */
	char detail[128];                /* for early_rc */
};

/* ---- helpers ------------------------------------------------------------ */

/* The format is libmicrohttpd's own (clang's -Wformat-nonliteral wants to
 * be told). */
static void mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct http_server *srv = cls;
	char buf[256];
	size_t n;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
		buf[--n] = '\0';
	}
	if (srv->started) {
		MS_DEBUG(SUB, "libmicrohttpd: %s", buf);
	} else {
		MS_WARN(SUB, "libmicrohttpd: %s", buf);
	}
}

/* label_escape writes |s| as a Prometheus label value body. */
static void
label_escape(const char *s, char *buf, size_t cap)
{
	size_t o = 0;

	for (; *s != '\0' && o + 3 < cap; s++) {
		if (*s == '"' || *s == '\\') {
			buf[o++] = '\\';
			buf[o++] = *s;
		} else if (*s == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else {
			buf[o++] = *s;
		}
	}
	buf[o] = '\0';
}

static void
record(const struct request *rq, const char *path, int status)
{
	char route[160];
	char labels[256];
	const char *method = http_method_name(rq->method);
	double secs = (double)(ms_now_us() - rq->t0_us) / 1e6;

	label_escape(rq->match.pattern ? rq->match.pattern : "unmatched", route,
	             sizeof(route));
	snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\"", method,
	         route);
	ms_metrics_observe("monoshop_http_request_duration_seconds", labels,
	                   secs);
	snprintf(labels, sizeof(labels),
	         "method=\"%s\",route=\"%s\",code=\"%d\"", method, route,
	         status);
	ms_metrics_count("monoshop_http_requests_total", labels, 1);
	MS_DEBUG(SUB, "%s %s -> %d (%.3f ms) trace %s", method, path, status,
	         secs * 1e3, rq->trace_id);
}

/*
 * answer takes |body| (malloc'd, or NULL for an empty body; ownership passes
 * to MHD) and queues it. Returns MHD_NO when MHD cannot take it (the
 * connection is then closed).
 */
static enum MHD_Result
answer(struct MHD_Connection *c, struct request *rq, const char *path,
       int status, const char *ctype, char *body, size_t len, const char *allow,
       const char *location, bool close)
{
	struct MHD_Response *r;
	enum MHD_Result ok;

	if (body != NULL) {
		r = MHD_create_response_from_buffer(len, body,
		                                    MHD_RESPMEM_MUST_FREE);
	} else {
		r = MHD_create_response_from_buffer(0, (void *)"",
		                                    MHD_RESPMEM_PERSISTENT);
	}
	if (r == NULL) {
		free(body);
		return MHD_NO;
	}
	if (ctype != NULL) {
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	}
	if (allow != NULL && allow[0] != '\0') {
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	}
	if (location != NULL && location[0] != '\0') {
		MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, location);
	}
	/* Once quiesced, a keep-alive connection carries no further request:
	 * otherwise a busy client would keep the drain from ever ending. */
	if (close || atomic_load(&rq->srv->draining)) {
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	}
	ok = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	if (ok == MHD_YES) {
		rq->answered = true;
		record(rq, path, status);
	}
	return ok;
}

/* A last-resort body when even building the problem failed (ENOMEM). */
static char *
fallback_problem(int status, size_t *len)
{
	char *s = malloc(96);

	if (s == NULL) {
		return NULL;
	}
	*len = (size_t)snprintf(s, 96, "{\"title\":\"%s\",\"status\":%d}",
	                        http_status_reason(status), status);
	return s;
}

static enum MHD_Result
send_problem(struct MHD_Connection *c, struct request *rq, const char *path,
             int rc, const struct http_resp *resp, bool close)
{
	int status = ms_err_http(rc);
	json_t *p = http_problem_json(rc, resp, path, rq->trace_id);
	size_t len = 0;
	char *body = p ? http_json_dump(p, &len) : NULL;

	json_decref(p);
	if (body == NULL) {
		body = fallback_problem(status, &len);
	}
	return answer(c, rq, path, status, "application/problem+json", body,
	              len, rc == MS_EMETHOD ? rq->match.allow : NULL, NULL,
	              close);
}

static bool
is_ms_code(int rc)
{
	/* Asked of err.c rather than the enum's layout. */
	return strcmp(ms_errname(rc), "UNKNOWN") != 0;
}

/* json_media tells whether a Content-Type is application/json or
 * application/<x>+json, parameters allowed, case-insensitively. */
static bool
json_media(const char *ct)
{
	const char *e;
	size_t n;

	while (*ct == ' ' || *ct == '\t') {
		ct++;
	}
	e = ct;
	while (*e != '\0' && *e != ';' && *e != ' ' && *e != '\t') {
		e++;
	}
	n = (size_t)(e - ct);
	if (n == 16 && strncasecmp(ct, "application/json", 16) == 0) {
		return true;
	}
	return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
	       strncasecmp(e - 5, "+json", 5) == 0;
}

/* has_nul_escape tells whether the raw path holds "%00", which MHD would
 * decode into a NUL and so silently cut the path short. */
static bool
has_nul_escape(const char *uri)
{
	for (const char *p = uri; *p != '\0' && *p != '?'; p++) {
		if (p[0] == '%' && p[1] == '0' && p[2] == '0') {
			return true;
		}
	}
	return false;
}

/*
 * key_ok tells whether a write may go ahead: no http.api_key configured,
 * or |given| (the X-Api-Key header, NULL when absent) is the key, compared
 * in constant time. Reads (GET, HEAD), /health and /metrics never ask.
 */
static bool
key_ok(const struct http_server *srv, enum http_method m, const char *given)
{
	if (srv->api_key_len == 0 || m == HTTP_GET || m == HTTP_HEAD) {
		return true;
	}
	return ms_ct_equal(srv->api_key, srv->api_key_len, given,
	                   given ? strlen(given) : 0);
}

/* ---- built-in routes ----------------------------------------------------- */

/* timespan formats seconds as .NET's TimeSpan "c": "00:00:00.0012345". */
static void
timespan(double secs, char *buf, size_t cap)
{
	long long ticks = (long long)(secs * 1e7 + 0.5);
	long long s = ticks / 10000000;
	long long frac = ticks % 10000000;
	long long d = s / 86400;

	if (ticks < 0) {
		ticks = 0;
		s = frac = d = 0;
	}
	if (d > 0) {
		snprintf(buf, cap, "%lld.%02lld:%02lld:%02lld.%07lld", d,
		         (s / 3600) % 24, (s / 60) % 60, s % 60, frac);
	} else {
		snprintf(buf, cap, "%02lld:%02lld:%02lld.%07lld", s / 3600,
		         (s / 60) % 60, s % 60, frac);
	}
}

static json_t *
tags_array(const char *tags)
{
	json_t *a = json_array();
	const char *p = tags ? tags : "";

	while (a != NULL && *p != '\0') {
		size_t n = strcspn(p, ", ");

		if (n > 0) {
			json_array_append_new(a, json_stringn(p, n));
		}
		p += n;
		p += strspn(p, ", ");
	}
	return a;
}

/* GET /health: the AspNetCore.HealthChecks UI shape. */
static int
health_handler(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	struct ms_health_result res[MS_HEALTH_MAX_CHECKS];
	int64_t t0 = ms_now_us();
	int healthy = 0;
	size_t n = ms_health_run(res, MS_HEALTH_MAX_CHECKS, &healthy);
	double total = (double)(ms_now_us() - t0) / 1e6;
	json_t *root = json_object();
	json_t *entries = json_object();
	char dur[40];
	int bad = 0;

	if (root == NULL || entries == NULL) {
		json_decref(root);
		json_decref(entries);
		return MS_ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_object();

		if (e == NULL) {
			bad = -1;
			break;
		}
		bad |= json_object_set_new(e, "data", json_object());
		if (res[i].desc[0] != '\0') {
			bad |= json_object_set_new(
			    e, "description",
			    http_json_string_lossy(res[i].desc,
			                           sizeof(res[i].desc)));
		}
		timespan(res[i].duration_s, dur, sizeof(dur));
		bad |= json_object_set_new(e, "duration", json_string(dur));
		bad |= json_object_set_new(
		    e, "status",
		    json_string(res[i].rc == 0 ? "Healthy" : "Unhealthy"));
		bad |= json_object_set_new(e, "tags", tags_array(res[i].tags));
		bad |= json_object_set_new(
		    entries, res[i].name ? res[i].name : "unnamed", e);
	}
	timespan(total, dur, sizeof(dur));
	bad |= json_object_set_new(
	    root, "status", json_string(healthy ? "Healthy" : "Unhealthy"));
	bad |= json_object_set_new(root, "totalDuration", json_string(dur));
	bad |= json_object_set_new(root, "entries", entries);
	if (bad) {
		json_decref(root);
		return MS_ENOMEM;
	}
	return http_resp_json(resp, healthy ? 200 : 503, root);
}

/* GET /metrics: answered as text by the server (see finish()); this
 * function only marks the route. */
static int
metrics_handler(void *ctx, const struct http_req *req, struct http_resp *resp)
{
	return MS_EINTERNAL;
}

/* ---- request life cycle -------------------------------------------------- */

static struct request *
req_new(struct http_server *srv, const char *uri)
{
	struct request *rq = calloc(1, sizeof(*rq));

	if (rq == NULL) {
		return NULL;
	}
	rq->srv = srv;
	rq->t0_us = ms_now_us();
	if (uri != NULL) {
		rq->uri = strdup(uri); /* NULL on ENOMEM: no query then */
	}
	pthread_mutex_lock(&srv->mu);
	srv->inflight++;
	pthread_mutex_unlock(&srv->mu);
	return rq;
}

static void
req_free(struct request *rq)
{
	struct http_server *srv = rq->srv;

	free(rq->uri);
	free(rq->body);
	free(rq);
	pthread_mutex_lock(&srv->mu);
	if (--srv->inflight == 0) {
		pthread_cond_broadcast(&srv->idle);
	}
	pthread_mutex_unlock(&srv->mu);
}

static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	return req_new(cls, uri);
}

static void
on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
	if (*con_cls != NULL) {
		req_free(*con_cls);
		*con_cls = NULL;
	}
}

/*
 * begin looks at the headers: trace id, route, Content-Type, the declared
 * length. Sets rq->early_rc for an answer that needs no body.
 */
static void
begin(struct request *rq, struct MHD_Connection *c, const char *url,
      const char *method, bool *has_body)
{
	struct http_server *srv = rq->srv;
	const char *cl =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
	const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	                                             "Transfer-Encoding");
	const char *ct =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	unsigned long long declared = 0;
	int rc;

	rq->started = true;
	rq->method = http_method_parse(method);
	/* The request's trace: the client's when valid, else a new one. */
	ms_strlcpy(rq->traceparent,
	           ms_trace_begin(MHD_lookup_connection_value(
	               c, MHD_HEADER_KIND, "traceparent")),
	           sizeof(rq->traceparent));
	ms_strlcpy(rq->trace_id, ms_trace_id(), sizeof(rq->trace_id));
	if (cl != NULL) {
		char *end;

		errno = 0;
		declared = strtoull(cl, &end, 10);
		if (errno != 0 || end == cl) {
			declared = ULLONG_MAX;
		}
	}
	*has_body = declared > 0 || te != NULL;

	/* Modules store and echo path parameters: keep them text. */
	if (rq->uri != NULL && has_nul_escape(rq->uri)) {
		rq->early_rc = MS_EINVAL;
		snprintf(rq->detail, sizeof(rq->detail),
		         "The request path must not contain %%00");
		return;
	}
	if (!ms_utf8_valid(url, strlen(url))) {
		rq->early_rc = MS_EINVAL;
		snprintf(rq->detail, sizeof(rq->detail),
		         "The request path is not valid UTF-8 text");
		return;
	}
	rc = http_router_match(srv->router, rq->method, url, &rq->match);
	if (rc != 0) {
		rq->early_rc = rc;
		if (rc == MS_EMETHOD) {
			snprintf(rq->detail, sizeof(rq->detail),
			         "Method %s is not allowed here; allowed: %s",
			         http_method_name(rq->method), rq->match.allow);
		} else {
			snprintf(rq->detail, sizeof(rq->detail),
			         "No route matches the request path");
		}
		return;
	}
	/* Before the body is looked at: a client without the key learns
	 * nothing from validation. The key itself is never logged. */
	if (!key_ok(
	        srv, rq->method,
	        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Api-Key"))) {
		rq->early_rc = MS_EUNAUTH;
		snprintf(rq->detail, sizeof(rq->detail),
		         "This request needs the header X-Api-Key with the "
		         "API key (http.api_key)");
		return;
	}
	if (*has_body && ct != NULL && !json_media(ct)) {
		rq->early_rc = MS_EMEDIATYPE;
		snprintf(rq->detail, sizeof(rq->detail),
		         "Content-Type must be application/json");
		return;
	}
	if (declared > srv->max_body) {
		rq->early_rc = MS_ETOOBIG;
		snprintf(rq->detail, sizeof(rq->detail),
		         "The request body is larger than %zu bytes",
		         srv->max_body);
		return;
	}
	if (declared > 0) {
		/* Owned by rq; the length is bounded by max_body above. */
		rq->body = malloc((size_t)declared + 1);
		if (rq->body != NULL) {
			rq->body_cap = (size_t)declared + 1;
		}
	}
}

/* append adds upload data to the body. Returns 0, MS_ETOOBIG past
 * http.max_body, or MS_ENOMEM. */
static int
append(struct request *rq, const char *data, size_t n)
{
	size_t max = rq->srv->max_body;

	if (rq->body_len > max || n > max - rq->body_len) {
		return MS_ETOOBIG;
	}
	if (rq->body_len + n + 1 > rq->body_cap) {
		size_t cap = rq->body_cap ? rq->body_cap : 1024;
		char *nb;

		while (cap < rq->body_len + n + 1) {
			cap *= 2;
		}
		if (cap > max + 1) {
			cap = max + 1;
		}
		nb = realloc(rq->body, cap);
		if (nb == NULL) {
			return MS_ENOMEM;
		}
		rq->body = nb;
		rq->body_cap = cap;
	}
	memcpy(rq->body + rq->body_len, data, n);
	rq->body_len += n;
	rq->body[rq->body_len] = '\0';
	return 0;
}

/* safe_location percent-encodes what may not stand in a header value. */
static void
safe_location(const char *in, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		if (*p <= 0x20 || *p >= 0x7f || *p == '"') {
			if (o + 4 > cap) {
				break;
			}
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		} else {
			if (o + 2 > cap) {
				break;
			}
			out[o++] = (char)*p;
		}
	}
	out[o] = '\0';
}

static enum MHD_Result
send_metrics(struct MHD_Connection *c, struct request *rq, const char *url)
{
	char *text = NULL;
	size_t len = 0;
	int rc = ms_metrics_render(&text, &len);

	if (rc != 0) {
		struct http_resp resp = {0};

		return send_problem(c, rq, url, rc, &resp, false);
	}
	return answer(c, rq, url, 200,
	              "text/plain; version=0.0.4; charset=utf-8", text, len,
	              NULL, NULL, false);
}

/* finish runs the handler on the complete request and queues the answer. */
static enum MHD_Result
finish(struct request *rq, struct MHD_Connection *c, const char *url)
{
	const struct http_match *m = &rq->match;
	struct http_req req = {0};
	struct http_resp *resp;
	char *pbuf = NULL; /* NUL-terminated parameter copies; owned here */
	const char *q = rq->uri ? strchr(rq->uri, '?') : NULL;
	enum MHD_Result ret;
	int rc;

	if (rq->early_rc != 0) {
		struct http_resp er = {0};

		ms_strlcpy(er.detail, rq->detail, sizeof(er.detail));
		return send_problem(c, rq, url, rq->early_rc, &er, false);
	}
	if (m->fn == metrics_handler) {
		return send_metrics(c, rq, url);
	}
	/* ~10 KiB with the validation errors: off the MHD thread's stack. */
	resp = calloc(1, sizeof(*resp));
	if (resp == NULL) {
		return send_problem(c, rq, url, MS_ENOMEM, NULL, false);
	}
	if (m->nparams > 0) {
		size_t need = 0;
		size_t off = 0;

		for (size_t i = 0; i < m->nparams; i++) {
			need += m->param_len[i] + 1;
		}
		pbuf = malloc(need);
		if (pbuf == NULL) {
			free(resp);
			return send_problem(c, rq, url, MS_ENOMEM, NULL, false);
		}
		for (size_t i = 0; i < m->nparams; i++) {
			memcpy(pbuf + off, url + m->param_off[i],
			       m->param_len[i]);
			pbuf[off + m->param_len[i]] = '\0';
			req.param_names[i] = m->param_names[i];
			req.params[i] = pbuf + off;
			off += m->param_len[i] + 1;
		}
		req.nparams = m->nparams;
	}
	req.method = rq->method;
	req.path = url;
	req.query = q ? q + 1 : NULL;
	req.body = rq->body;
	req.body_len = rq->body_len;
	req.traceparent = rq->traceparent;
	req.trace_id = rq->trace_id;
	req.max_json_depth = rq->srv->max_json_depth;

	rc = m->fn(m->ctx, &req, resp);
	if (rc == 0 && (resp->status < 100 || resp->status > 599)) {
		MS_ERROR(SUB, "%s %s: handler answered status %d",
		         http_method_name(rq->method), m->pattern,
		         resp->status);
		rc = MS_EINTERNAL;
	}
	if (rc == 0) {
		size_t len = 0;
		char *body = NULL;
		char loc[3 * sizeof(resp->location)];

		if (resp->body != NULL) {
			body = http_json_dump(resp->body, &len);
			if (body == NULL) {
				rc = MS_ENOMEM;
				goto fail;
			}
		}
		safe_location(resp->location, loc, sizeof(loc));
		ret = answer(c, rq, url, resp->status,
		             body ? "application/json; charset=utf-8" : NULL,
		             body, len, NULL, loc, false);
		goto out;
	}
fail:
	if (ms_err_http(rc) >= 500) {
		if (!is_ms_code(rc)) {
			MS_ERROR(SUB, "%s %s: handler failed with %d (%s)",
			         http_method_name(rq->method), m->pattern, rc,
			         ms_strerror(rc));
		} else if (ms_err_http(rc) == 500) {
			MS_ERROR(SUB, "%s %s: %s: %s",
			         http_method_name(rq->method), m->pattern,
			         ms_errname(rc), resp->detail);
		} else {
			MS_WARN(SUB, "%s %s: %s: %s",
			        http_method_name(rq->method), m->pattern,
			        ms_errname(rc), resp->detail);
		}
	}
	ret = send_problem(c, rq, url, rc, resp, false);
out:
	json_decref(resp->body);
	free(resp);
	free(pbuf);
	return ret;
}

static enum MHD_Result
handle(struct http_server *srv, struct MHD_Connection *c, const char *url,
       const char *method, const char *upload_data, size_t *upload_size,
       void **con_cls)
{
	struct request *rq = *con_cls;
	int rc;

	if (rq == NULL) {
		/* The URI callback could not allocate; try once more. */
		rq = req_new(srv, NULL);
		if (rq == NULL) {
			return MHD_NO;
		}
		*con_cls = rq;
	}
	if (!rq->started) {
		bool has_body = false;

		begin(rq, c, url, method, &has_body); /* sets the trace */
		if (rq->early_rc != 0 && has_body) {
			/* Answer now: MHD will not read the body and closes
			 * the connection after the answer. */
			struct http_resp er = {0};

			ms_strlcpy(er.detail, rq->detail, sizeof(er.detail));
			return send_problem(c, rq, url, rq->early_rc, &er,
			                    true);
		}
		return MHD_YES;
	}
	(void)ms_trace_set(rq->traceparent);
	if (*upload_size != 0) {
		if (rq->answered || rq->early_rc != 0) {
			*upload_size = 0; /* discard */
			return MHD_YES;
		}
		rc = append(rq, upload_data, *upload_size);
		if (rc != 0) {
			struct http_resp er = {0};

			/* A chunked body past the limit (a declared length
			 * was judged at the headers), or no memory. MHD lets
			 * us answer only before or after the body: if it
			 * refuses now, dropping the connection is the
			 * bounded choice. */
			if (rc == MS_ETOOBIG) {
				snprintf(er.detail, sizeof(er.detail),
				         "The request body is larger than %zu "
				         "bytes",
				         srv->max_body);
			}
			if (send_problem(c, rq, url, rc, &er, true) !=
			    MHD_YES) {
				MS_DEBUG(SUB,
				         "%s %s: %s while reading the body, "
				         "connection dropped",
				         method, url, ms_strerror(rc));
				return MHD_NO;
			}
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (rq->answered) {
		return MHD_YES;
	}
	return finish(rq, c, url);
}

/* MHD's access handler: one request's work, with its trace context current
 * on this worker thread for exactly as long as it runs (a worker serves
 * many connections in turn). */
static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url,
           const char *method, const char *version, const char *upload_data,
           size_t *upload_size, void **con_cls)
{
	enum MHD_Result ret =
	    handle(cls, c, url, method, upload_data, upload_size, con_cls);

	ms_trace_clear();
	return ret;
}

/* ---- start / stop -------------------------------------------------------- */

/*
 * parse_listen parses "HOST:PORT" ("[v6]:PORT" for IPv6) into |ss|.
 * HOST is an IPv4 or IPv6 literal, "localhost", or "*" / "" for all IPv4
 * interfaces.
 */
static int
parse_listen(const char *s, struct sockaddr_storage *ss, bool *v6)
{
	char host[64];
	const char *colon;
	const char *port_s;
	char *end;
	unsigned long port;
	size_t hlen;

	memset(ss, 0, sizeof(*ss));
	*v6 = false;
	if (s == NULL) {
		return MS_EINVAL;
	}
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL || rb[1] != ':') {
			return MS_EINVAL;
		}
		hlen = (size_t)(rb - s - 1);
		if (hlen >= sizeof(host)) {
			return MS_EINVAL;
		}
		memcpy(host, s + 1, hlen);
		port_s = rb + 2;
		*v6 = true;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL) {
			return MS_EINVAL;
		}
		hlen = (size_t)(colon - s);
		if (hlen >= sizeof(host)) {
			return MS_EINVAL;
		}
		memcpy(host, s, hlen);
		port_s = colon + 1;
	}
	host[hlen] = '\0';
	if (*port_s == '\0' || *port_s == '-' || *port_s == '+') {
		return MS_EINVAL;
	}
	errno = 0;
	port = strtoul(port_s, &end, 10);
	if (errno != 0 || *end != '\0' || port > 65535) {
		return MS_EINVAL;
	}
	if (*v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
			return MS_EINVAL;
		}
		return 0;
	}
	struct sockaddr_in *a = (struct sockaddr_in *)ss;

	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	if (strcmp(host, "localhost") == 0) {
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else if (host[0] == '\0' || strcmp(host, "*") == 0) {
		a->sin_addr.s_addr = htonl(INADDR_ANY);
	} else if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
		return MS_EINVAL;
	}
	return 0;
}

static unsigned
clamp_uint(int64_t v, unsigned lo, unsigned hi)
{
	if (v < (int64_t)lo) {
		return lo;
	}
	if (v > (int64_t)hi) {
		return hi;
	}
	return (unsigned)v;
}

static int
add_builtin(struct http_router *r, const char *pattern, http_handler_fn fn)
{
	int rc = http_route_add(r, HTTP_GET, pattern, fn, NULL);

	/* A router reused by a second server already has them. */
	return rc == MS_EEXIST ? 0 : rc;
}

int
http_server_start(struct http_server **out, struct http_router *router,
                  const struct ms_config *cfg)
{
	struct sockaddr_storage ss;
	struct http_server *srv;
	const char *listen = ms_config_str(cfg, "http.listen");
	unsigned threads =
	    clamp_uint(ms_config_int(cfg, "http.threads"), 1, 256);
	unsigned max_conn =
	    clamp_uint(ms_config_int(cfg, "http.max_connections"), 1, 1000000);
	unsigned timeout_s = clamp_uint(
	    ms_config_int(cfg, "http.connection_timeout_s"), 0, 86400);
	int64_t max_body = ms_config_int(cfg, "http.max_body");
	/* Bound on the request line and headers: MHD answers a request whose
	 * headers do not fit in its per-connection pool itself (431). */
	size_t max_header = clamp_uint(
	    ms_config_int(cfg, "http.max_header_size"), 4096, 1 << 20);
	unsigned flags =
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	struct MHD_OptionItem pool[2] = {{MHD_OPTION_END, 0, NULL},
	                                 {MHD_OPTION_END, 0, NULL}};
	const union MHD_DaemonInfo *info;
	char host[INET6_ADDRSTRLEN];
	bool v6;
	int rc;

	assert(out != NULL && router != NULL && cfg != NULL);
	*out = NULL;
	rc = parse_listen(listen, &ss, &v6);
	if (rc != 0) {
		MS_ERROR(SUB, "http.listen: expected HOST:PORT, got \"%s\"",
		         listen ? listen : "");
		return rc;
	}
	if (max_body < 0) {
		max_body = 0;
	}
	rc = add_builtin(router, "/health", health_handler);
	if (rc == 0) {
		rc = add_builtin(router, "/metrics", metrics_handler);
	}
	if (rc != 0) {
		return rc;
	}
	/* Owned by the caller until http_server_stop. */
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		return MS_ENOMEM;
	}
	srv->router = router;
	srv->max_body = (size_t)max_body;
	srv->max_json_depth = (unsigned)clamp_uint(
	    ms_config_int(cfg, "http.max_json_depth"), 1, 1024);
	if (ms_config_is_set(cfg, "http.api_key")) {
		srv->api_key_len =
		    ms_strlcpy(srv->api_key, ms_config_str(cfg, "http.api_key"),
		               sizeof(srv->api_key));
		if (srv->api_key_len >= sizeof(srv->api_key)) {
			srv->api_key_len = sizeof(srv->api_key) - 1;
		}
	}
	srv->listen_fd = MHD_INVALID_SOCKET;
	pthread_mutex_init(&srv->mu, NULL);
	{
		/* The stop deadline must not move with the wall clock. */
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&srv->idle, &ca);
		pthread_condattr_destroy(&ca);
	}
	/*
	 * poll(2), not epoll: libmicrohttpd 0.9.75 with epoll and a thread
	 * pool can abort in MHD_quiesce_daemon ("Failed to remove listen FD
	 * from epoll set") when a worker wakes while the listen socket is
	 * being taken out of its epoll set. Each worker polls its own share
	 * of http.max_connections, so poll costs little here.
	 */
	flags |= MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES
	             ? MHD_USE_POLL
	             : MHD_USE_AUTO;
	if (v6) {
		flags |= MHD_USE_IPv6;
	}
	/* A pool of one is no pool: then MHD wants no option at all. */
	pool[0].option =
	    threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END;
	pool[0].value = (intptr_t)threads;
	srv->daemon = MHD_start_daemon(
	    flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
	    mhd_log, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_ARRAY, pool, MHD_OPTION_CONNECTION_LIMIT, max_conn,
	    MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, max_header,
	    MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_END);
	if (srv->daemon == NULL) {
		MS_ERROR(SUB, "cannot listen on %s (see the message above)",
		         listen);
		pthread_cond_destroy(&srv->idle);
		pthread_mutex_destroy(&srv->mu);
		free(srv);
		return MS_EIO;
	}
	srv->started = true;
	info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
	srv->port = info ? info->port : 0;
	if (v6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
		          host, sizeof(host));
		snprintf(srv->addr, sizeof(srv->addr), "[%s]:%u", host,
		         srv->port);
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host,
		          sizeof(host));
		snprintf(srv->addr, sizeof(srv->addr), "%s:%u", host,
		         srv->port);
	}
	MS_INFO(SUB, "listening on %s", srv->addr);
	*out = srv;
	return 0;
}

uint16_t
http_server_port(const struct http_server *srv)
{
	return srv->port;
}

void
http_server_quiesce(struct http_server *srv)
{
	if (srv == NULL || srv->quiesced) {
		return;
	}
	srv->quiesced = true;
	atomic_store(&srv->draining, true);
	srv->listen_fd = MHD_quiesce_daemon(srv->daemon);
	/* MHD no longer accepts, but the socket still listens: the kernel
	 * would go on completing handshakes that nobody serves. shutdown
	 * stops the listening (new connects are refused at once, and the
	 * backlog is reset), while the descriptor stays valid until
	 * MHD_stop_daemon, after which it may be closed. */
	if (srv->listen_fd != MHD_INVALID_SOCKET) {
		(void)shutdown(srv->listen_fd, SHUT_RDWR);
	}
	MS_INFO(SUB, "%s: no longer accepting connections", srv->addr);
}

void
http_server_stop(struct http_server *srv, int timeout_ms)
{
	struct timespec dl;

	if (srv == NULL) {
		return;
	}
	http_server_quiesce(srv);
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&srv->mu);
	while (srv->inflight > 0) {
		if (pthread_cond_timedwait(&srv->idle, &srv->mu, &dl) ==
		    ETIMEDOUT) {
			MS_WARN(SUB,
			        "%s: %u request(s) still in flight after "
			        "%d ms; closing",
			        srv->addr, srv->inflight, timeout_ms);
			break;
		}
	}
	pthread_mutex_unlock(&srv->mu);
	MHD_stop_daemon(srv->daemon);
	/* After MHD_stop_daemon, as MHD_quiesce_daemon requires. */
	if (srv->listen_fd != MHD_INVALID_SOCKET) {
		close(srv->listen_fd);
	}
	pthread_cond_destroy(&srv->idle);
	pthread_mutex_destroy(&srv->mu);
	free(srv);
}
