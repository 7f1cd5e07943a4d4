/* SPDX-License-Identifier: MIT */
/*
 * The REST router: a fixed table of routes ("GET /basket/{userName}") and
 * the matcher that picks one for a method and a decoded path, with
 * ASP.NET's rules: literal segments compare case-insensitively, a literal
 * beats a parameter at the same depth, a trailing slash is ignored, and a
 * path that exists only with other methods is a 405 that lists them. Also
 * the query-string reader (http_query_get) and the method parser.
 *
 * Pure code, no sockets. Threads: routes are added during start-up (module
 * init) from one thread; after that the table is only read, by any number of
 * request threads at once, without locking.
 */
#include "http/http.h"

#include <assert.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/util.h"

/* Bounds: the whole REST surface of the three modules is about 15 routes. */
#define MAX_ROUTES      64
#define MAX_SEGMENTS    16
#define MAX_PATTERN_LEN 128

struct segment {
	const char *text; /* into route->pattern storage: literal or name */
	size_t len;
	bool param;
};

struct route {
	enum http_method method;
	char pattern[MAX_PATTERN_LEN]; /* as registered, for metrics */
	char names[MAX_PATTERN_LEN];   /* NUL-separated segment texts */
	struct segment segs[MAX_SEGMENTS];
	size_t nsegs;
	size_t nparams;
	http_handler_fn fn;
	void *ctx;
};

/* Owned by the caller of http_router_create; one allocation. */
struct http_router {
	struct route routes[MAX_ROUTES];
	size_t nroutes;
};

int
http_router_create(struct http_router **out)
{
	struct http_router *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		return MS_ENOMEM;
	}
	*out = r;
	return 0;
}

void
http_router_destroy(struct http_router *r)
{
	free(r);
}

enum http_method
http_method_parse(const char *s)
{
	static const struct {
		const char *name;
		enum http_method m;
	} tab[] = {
	    {"GET", HTTP_GET},         {"POST", HTTP_POST},
	    {"PUT", HTTP_PUT},         {"DELETE", HTTP_DELETE},
	    {"HEAD", HTTP_HEAD},       {"PATCH", HTTP_PATCH},
	    {"OPTIONS", HTTP_OPTIONS},
	};

	if (s == NULL) {
		return HTTP_OTHER;
	}
	/* Methods are case-sensitive tokens (RFC 9110 §9.1). */
	for (size_t i = 0; i < MS_ARRAY_SIZE(tab); i++) {
		if (strcmp(s, tab[i].name) == 0) {
			return tab[i].m;
		}
	}
	return HTTP_OTHER;
}

static const char *
method_name(enum http_method m)
{
	switch (m) {
	case HTTP_GET:
		return "GET";
	case HTTP_POST:
		return "POST";
	case HTTP_PUT:
		return "PUT";
	case HTTP_DELETE:
		return "DELETE";
	case HTTP_HEAD:
		return "HEAD";
	case HTTP_PATCH:
		return "PATCH";
	case HTTP_OPTIONS:
		return "OPTIONS";
	default:
		return NULL;
	}
}

const char *
http_method_name(enum http_method m)
{
	const char *s = method_name(m);

	return s != NULL ? s : "OTHER";
}

static bool
name_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/*
 * parse_pattern splits |pattern| into |rt|'s segments. A pattern is "/" or
 * a sequence of "/segment", each a literal without braces or "{name}".
 * One trailing slash is tolerated, as it is on paths.
 */
static int
parse_pattern(struct route *rt, const char *pattern)
{
	size_t plen = strlen(pattern);
	char *w = rt->names;
	const char *p = pattern;

	if (plen == 0 || plen >= MAX_PATTERN_LEN || pattern[0] != '/') {
		return MS_EINVAL;
	}
	memcpy(rt->pattern, pattern, plen + 1);
	if (plen > 1 && pattern[plen - 1] == '/') {
		plen--;
	}
	rt->nsegs = 0;
	rt->nparams = 0;
	if (plen == 1) {
		return 0; /* "/" */
	}
	while ((size_t)(p - pattern) < plen) {
		const char *s = p + 1; /* skip '/' */
		const char *e = s;
		struct segment *seg;

		while ((size_t)(e - pattern) < plen && *e != '/') {
			e++;
		}
		if (e == s || rt->nsegs == MAX_SEGMENTS) {
			return MS_EINVAL; /* "//" or too deep */
		}
		seg = &rt->segs[rt->nsegs++];
		if (*s == '{') {
			if (e - s < 3 || e[-1] != '}') {
				return MS_EINVAL;
			}
			for (const char *c = s + 1; c < e - 1; c++) {
				if (!name_char(*c)) {
					return MS_EINVAL;
				}
			}
			if (rt->nparams == HTTP_MAX_PARAMS) {
				return MS_EINVAL;
			}
			seg->param = true;
			seg->len = (size_t)(e - s) - 2;
			memcpy(w, s + 1, seg->len);
			rt->nparams++;
		} else {
			for (const char *c = s; c < e; c++) {
				if (*c == '{' || *c == '}') {
					return MS_EINVAL;
				}
			}
			seg->param = false;
			seg->len = (size_t)(e - s);
			memcpy(w, s, seg->len);
		}
		seg->text = w;
		w[seg->len] = '\0';
		w += seg->len + 1;
		p = e;
	}
	return 0;
}

/* same_shape tells whether two routes match exactly the same paths. */
static bool
same_shape(const struct route *a, const struct route *b)
{
	if (a->nsegs != b->nsegs) {
		return false;
	}
	for (size_t i = 0; i < a->nsegs; i++) {
		if (a->segs[i].param != b->segs[i].param) {
			return false;
		}
		if (!a->segs[i].param &&
		    (a->segs[i].len != b->segs[i].len ||
		     strncasecmp(a->segs[i].text, b->segs[i].text,
		                 a->segs[i].len) != 0)) {
			return false;
		}
	}
	return true;
}

int
http_route_add(struct http_router *r, enum http_method method,
               const char *pattern, http_handler_fn fn, void *ctx)
{
	struct route *rt;
	int rc;

	assert(r != NULL && pattern != NULL && fn != NULL);
	if (method_name(method) == NULL) {
		return MS_EINVAL;
	}
	if (r->nroutes == MAX_ROUTES) {
		return MS_ENOMEM;
	}
	rt = &r->routes[r->nroutes];
	memset(rt, 0, sizeof(*rt));
	rc = parse_pattern(rt, pattern);
	if (rc != 0) {
		return rc;
	}
	/* Two routes for one method that match the same paths would make
	 * the winner depend on registration order: refuse. */
	for (size_t i = 0; i < r->nroutes; i++) {
		if (r->routes[i].method == method &&
		    same_shape(&r->routes[i], rt)) {
			return MS_EEXIST;
		}
	}
	rt->method = method;
	rt->fn = fn;
	rt->ctx = ctx;
	r->nroutes++;
	return 0;
}

/* A path split into segments (offsets into the path). */
struct split {
	size_t off[MAX_SEGMENTS];
	size_t len[MAX_SEGMENTS];
	size_t n;
};

/* split_path returns false for a path no route can match (no leading
 * slash, or deeper than any pattern can be). */
static bool
split_path(const char *path, struct split *sp)
{
	size_t plen = strlen(path);
	size_t i = 1;

	sp->n = 0;
	if (plen == 0 || path[0] != '/') {
		return false;
	}
	/* "/basket/" is "/basket"; "/" has no segments. */
	if (plen > 1 && path[plen - 1] == '/') {
		plen--;
	}
	if (plen == 1) {
		return true;
	}
	for (;;) {
		size_t start = i;

		while (i < plen && path[i] != '/') {
			i++;
		}
		if (sp->n == MAX_SEGMENTS) {
			return false;
		}
		sp->off[sp->n] = start;
		sp->len[sp->n] = i - start;
		sp->n++;
		if (i >= plen) {
			return true;
		}
		i++; /* skip '/' */
	}
}

static bool
route_matches(const struct route *rt, const char *path, const struct split *sp)
{
	if (rt->nsegs != sp->n) {
		return false;
	}
	for (size_t i = 0; i < sp->n; i++) {
		const struct segment *seg = &rt->segs[i];

		if (seg->param) {
			/* An empty segment ("//") never binds a parameter. */
			if (sp->len[i] == 0) {
				return false;
			}
		} else if (seg->len != sp->len[i] ||
		           strncasecmp(seg->text, path + sp->off[i],
		                       seg->len) != 0) {
			return false;
		}
	}
	return true;
}

/* better tells whether |a| takes precedence over |b|: at the first depth
 * where they differ, the literal wins. Both match the same path. */
static bool
better(const struct route *a, const struct route *b)
{
	for (size_t i = 0; i < a->nsegs; i++) {
		if (a->segs[i].param != b->segs[i].param) {
			return !a->segs[i].param;
		}
	}
	return false;
}

static void
allow_append(char *allow, size_t cap, const char *name)
{
	size_t used = strlen(allow);
	size_t need = strlen(name) + (used ? 2 : 0);

	if (used + need + 1 > cap) {
		return;
	}
	if (used) {
		memcpy(allow + used, ", ", 2);
		used += 2;
	}
	memcpy(allow + used, name, strlen(name) + 1);
}

int
http_router_match(const struct http_router *r, enum http_method method,
                  const char *path, struct http_match *m)
{
	struct split sp;
	const struct route *best = NULL;
	bool other = false;
	unsigned seen = 0; /* bit per method already in m->allow */

	assert(r != NULL && path != NULL && m != NULL);
	memset(m, 0, sizeof(*m));
	if (!split_path(path, &sp)) {
		return MS_ENOTFOUND;
	}
	for (size_t i = 0; i < r->nroutes; i++) {
		const struct route *rt = &r->routes[i];

		if (!route_matches(rt, path, &sp)) {
			continue;
		}
		if (rt->method == method) {
			if (best == NULL || better(rt, best)) {
				best = rt;
			}
		} else {
			other = true;
		}
	}
	if (best == NULL) {
		if (!other) {
			return MS_ENOTFOUND;
		}
		/* List the methods in a stable order: the enum's. */
		for (int mt = HTTP_GET; mt < HTTP_OTHER; mt++) {
			for (size_t i = 0; i < r->nroutes; i++) {
				const struct route *rt = &r->routes[i];

				if ((int)rt->method == mt &&
				    !(seen & (1u << mt)) &&
				    route_matches(rt, path, &sp)) {
					seen |= 1u << mt;
					allow_append(m->allow, sizeof(m->allow),
					             method_name(rt->method));
				}
			}
		}
		return MS_EMETHOD;
	}
	m->fn = best->fn;
	m->ctx = best->ctx;
	m->pattern = best->pattern;
	for (size_t i = 0; i < best->nsegs; i++) {
		if (best->segs[i].param) {
			m->param_names[m->nparams] = best->segs[i].text;
			m->param_off[m->nparams] = sp.off[i];
			m->param_len[m->nparams] = sp.len[i];
			m->nparams++;
		}
	}
	return 0;
}

/* ---- query strings --------------------------------------------------- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	return -1;
}

/*
 * decode percent-decodes |len| bytes of |s| ('+' is a space, as in form
 * encoding) into |buf| (|cap| bytes, NUL-terminated). A '%' not followed by
 * two hex digits is kept as is, as ASP.NET does; so is "%00", which would
 * otherwise cut the value short. Returns the decoded length, or -1 when it
 * does not fit.
 */
static long
decode(const char *s, size_t len, char *buf, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c == '+') {
			c = ' ';
		} else if (c == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 &&
		           hexval(s[i + 2]) >= 0) {
			int v = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);

			if (v != 0) {
				c = (char)v;
				i += 2;
			}
		}
		if (o + 1 >= cap) {
			return -1;
		}
		buf[o++] = c;
	}
	buf[o] = '\0';
	return (long)o;
}

int
http_query_get(const char *query, const char *name, char *buf, size_t buflen)
{
	const char *p = query;

	assert(name != NULL && buf != NULL && buflen > 0);
	if (p == NULL) {
		return MS_ENOTFOUND;
	}
	if (*p == '?') {
		p++;
	}
	while (*p != '\0') {
		const char *end = strchr(p, '&');
		const char *eq;
		size_t plen = end ? (size_t)(end - p) : strlen(p);
		size_t klen;
		char key[128];

		eq = memchr(p, '=', plen);
		klen = eq ? (size_t)(eq - p) : plen;
		/* A name longer than any we look up cannot match. */
		if (decode(p, klen, key, sizeof(key)) >= 0 &&
		    strcasecmp(key, name) == 0) {
			const char *v = eq ? eq + 1 : p + plen;
			size_t vlen = (size_t)(p + plen - v);

			if (decode(v, vlen, buf, buflen) < 0) {
				buf[0] = '\0';
				return MS_ETOOBIG;
			}
			return 0;
		}
		p += plen;
		if (*p == '&') {
			p++;
		}
	}
	return MS_ENOTFOUND;
}
