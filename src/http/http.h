/* SPDX-License-Identifier: MIT */
/*
 * The REST edge, as modules see it: a router of routes ("GET /basket/{name}")
 * to handlers that take a parsed request and fill a response. No
 * libmicrohttpd here: server.c is the only file that knows it, and the
 * router, the JSON mapping and the problem details are pure code.
 *
 * A handler returns 0 with resp->status and resp->body set, or a negative
 * MS_E* code; the edge then answers application/problem+json with the
 * status of ms_err_http(), resp->detail / resp->title when set, and
 * resp->verrs as "validationErrors" (for MS_EVALIDATION and MS_EJSON).
 *
 * Threads: handlers run on libmicrohttpd's worker threads, many at once.
 */
#ifndef MS_HTTP_HTTP_H
#define MS_HTTP_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_PARAMS 4
#define HTTP_MAX_VERRS  32

enum http_method {
	HTTP_GET = 1,
	HTTP_POST,
	HTTP_PUT,
	HTTP_DELETE,
	HTTP_HEAD,
	HTTP_PATCH,
	HTTP_OPTIONS,
	HTTP_OTHER,
};

struct http_req {
	enum http_method method;
	const char *path;  /* decoded path, no query */
	const char *query; /* raw query string or NULL */
	const char *param_names[HTTP_MAX_PARAMS];
	const char *params[HTTP_MAX_PARAMS]; /* decoded {segments} */
	size_t nparams;
	const char *body; /* NUL-terminated, or NULL */
	size_t body_len;
	/* The request's W3C trace context, also current on the handler's
	 * thread (core/trace.h): the client's valid traceparent header, or a
	 * new trace. Never NULL from the server. */
	const char *traceparent;
	const char *trace_id;    /* its trace id, for problem details */
	unsigned max_json_depth; /* http.max_json_depth; 0: the default */
};

struct http_verr {
	char property[96]; /* JSON path: "cart.items[0].price" */
	char message[160]; /* "Price must have at most 2 decimals" */
};

struct http_resp {
	int status;         /* on success */
	json_t *body;       /* on success; owned by the response */
	char location[512]; /* Location header, or "" */
	/* on error: */
	char title[64];   /* defaults to the status reason */
	char detail[256]; /* defaults to ms_strerror(rc) */
	struct http_verr verrs[HTTP_MAX_VERRS];
	size_t nverrs;
};

typedef int (*http_handler_fn)(void *ctx, const struct http_req *req,
                               struct http_resp *resp);

struct http_router;

/* http_router_create / destroy (NULL is a no-op). */
int http_router_create(struct http_router **out);
void http_router_destroy(struct http_router *r);

/*
 * http_route_add registers |fn| for |method| on |pattern|: literal segments
 * and "{name}" segments that match one non-empty segment. Literal segments
 * match case-insensitively (ASP.NET routing does). A literal beats a
 * parameter at the same depth ("/basket/checkout" wins over
 * "/basket/{userName}"). Returns 0, MS_EEXIST, MS_EINVAL or MS_ENOMEM.
 */
int http_route_add(struct http_router *r, enum http_method method,
                   const char *pattern, http_handler_fn fn, void *ctx);

/* The result of matching a path. */
struct http_match {
	http_handler_fn fn;
	void *ctx;
	const char *pattern; /* the route's pattern, for metrics */
	size_t nparams;
	const char *param_names[HTTP_MAX_PARAMS];
	/* offsets into the matched path of each parameter */
	size_t param_off[HTTP_MAX_PARAMS];
	size_t param_len[HTTP_MAX_PARAMS];
	char allow[64]; /* "GET, DELETE" for 405 answers */
};

/*
 * http_router_match matches |method| and |path| (already percent-decoded,
 * no query). Returns 0 (|m| filled), MS_ENOTFOUND (no route has this path)
 * or MS_EMETHOD (the path exists with other methods: m->allow lists them).
 * Pure; thread safe after the routes are added.
 */
int http_router_match(const struct http_router *r, enum http_method method,
                      const char *path, struct http_match *m);

/* http_method_parse maps "GET" etc. to the enum (HTTP_OTHER if unknown). */
enum http_method http_method_parse(const char *s);

/* http_method_name maps the enum back to "GET" etc.; "OTHER" for
 * HTTP_OTHER or anything unknown. Never NULL. */
const char *http_method_name(enum http_method m);

/* ---- responses -------------------------------------------------------- */

/* http_resp_json sets |status| and takes ownership of |body| (releasing a
 * body set before); returns 0, or MS_ENOMEM when |body| is NULL (the
 * caller's json_pack() etc. failed), so `return http_resp_json(...)` is
 * always right. */
int http_resp_json(struct http_resp *resp, int status, json_t *body);

/* http_resp_fail records |detail| (printf) and returns |rc|, for
 * `return http_resp_fail(resp, MS_ENOTFOUND, "Entity \"Basket\" ...")`. */
int http_resp_fail(struct http_resp *resp, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* http_verr_add appends a validation error (silently capped at
 * HTTP_MAX_VERRS). |property| and |message| are copied. */
void http_verr_add(struct http_resp *resp, const char *property,
                   const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * http_problem_json builds the problem+json body for |rc| and |resp|'s
 * error fields: {"title","status","detail","instance","traceId"} plus
 * "validationErrors" when there are any. Returns a new reference or NULL.
 */
json_t *http_problem_json(int rc, const struct http_resp *resp,
                          const char *instance, const char *trace_id);

/* http_status_reason returns "Not Found" etc. */
const char *http_status_reason(int status);

/* http_query_get copies the decoded value of |name| from |query| (names
 * matched case-insensitively) to |buf|. Returns 0, MS_ENOTFOUND, or
 * MS_ETOOBIG. */
int http_query_get(const char *query, const char *name, char *buf,
                   size_t buflen);

#endif
