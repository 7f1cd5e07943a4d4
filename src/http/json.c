/* SPDX-License-Identifier: MIT */
/*
 * JSON mapping for the REST edge: parsing request bodies with exact money,
 * the typed, case-insensitive getters that turn every bad field into a
 * validation error naming its JSON path, and the serializer that writes
 * money back as bare numbers.
 *
 * Exact money (see json.h): jansson reads every real number into a double,
 * which cannot hold 0.1 or 1400.35. So before jansson sees a body, a small
 * lexer (scan() below) rewrites each real-number token, one with '.', 'e' or
 * 'E', into the string "\u0001\u0002N:<token>" - a value a client cannot
 * send, because a body whose strings hold those two control characters
 * (raw or escaped) is rejected. Integers stay numbers. The same pass bounds
 * the nesting depth before jansson recurses. On output, strings carrying the
 * tag are written back as the bare number they hold.
 *
 * Pure code over buffers; every function is thread safe (no shared state).
 */
#include "http/json.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/money.h"
#include "core/util.h"
#include "http/http.h"

/* The tag, as jansson holds it once decoded ... */
#define TAG_RAW     "\001\002N:"
#define TAG_RAW_LEN 4
/* ... and as it is written in JSON text (input rewrite and jansson output). */
#define TAG_ESC     "\"\\u0001\\u0002N:"
#define TAG_ESC_LEN 15
/* Bytes a rewrite adds around a real token: TAG_ESC and the closing quote. */
#define TAG_EXTRA (TAG_ESC_LEN + 1)

#define STR_(x) #x
#define STR(x)  STR_(x)

static const char too_deep[] =
    "nesting is deeper than " STR(HTTP_JSON_MAX_DEPTH) " levels";

/* Longest number token the lexer rewrites; a longer one is left for
 * jansson to judge (and is no valid price anyway). */
#define MAX_NUM_TOKEN 64

/* ---- the pre-pass ------------------------------------------------------ */

struct scan {
	const char *in;
	size_t len;
	char *out;    /* NULL on the counting pass */
	size_t olen;  /* bytes written (or that would be) */
	size_t nreal; /* real tokens rewritten */
	int line;     /* position of the byte being read, as jansson counts */
	int col;
	const char *err; /* NULL, or why the body is rejected */
	int err_line;
	int err_col;
};

static void
emit(struct scan *s, const char *p, size_t n)
{
	if (s->out != NULL) {
		memcpy(s->out + s->olen, p, n);
	}
	s->olen += n;
}

/* advance accounts for |n| input bytes at |p| in the line/column counters:
 * columns count characters (UTF-8 lead bytes), from 1, like jansson's. */
static void
advance(struct scan *s, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\n') {
			s->line++;
			s->col = 0;
		} else if ((c & 0xC0) != 0x80) {
			s->col++;
		}
	}
}

static void
fail(struct scan *s, const char *why)
{
	s->err = why;
	s->err_line = s->line;
	s->err_col = s->col;
}

/*
 * num_token tells whether |n| bytes at |p| are one JSON number
 * (-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?) and whether it is a real one.
 */
static bool
num_token(const char *p, size_t n, bool *real)
{
	size_t i = 0;

	*real = false;
	if (i < n && p[i] == '-') {
		i++;
	}
	if (i >= n || !isdigit((unsigned char)p[i])) {
		return false;
	}
	if (p[i] == '0') {
		i++;
	} else {
		while (i < n && isdigit((unsigned char)p[i])) {
			i++;
		}
	}
	if (i < n && p[i] == '.') {
		*real = true;
		i++;
		if (i >= n || !isdigit((unsigned char)p[i])) {
			return false;
		}
		while (i < n && isdigit((unsigned char)p[i])) {
			i++;
		}
	}
	if (i < n && (p[i] == 'e' || p[i] == 'E')) {
		*real = true;
		i++;
		if (i < n && (p[i] == '+' || p[i] == '-')) {
			i++;
		}
		if (i >= n || !isdigit((unsigned char)p[i])) {
			return false;
		}
		while (i < n && isdigit((unsigned char)p[i])) {
			i++;
		}
	}
	return i == n;
}

static int
hex4(const char *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9') {
			v |= c - '0';
		} else if (c >= 'a' && c <= 'f') {
			v |= c - 'a' + 10;
		} else if (c >= 'A' && c <= 'F') {
			v |= c - 'A' + 10;
		} else {
			return -1;
		}
	}
	return v;
}

/*
 * scan_string copies the string literal starting at s->in[i] (a '"') and
 * returns the index past it (or the end of the body, for jansson to call
 * unterminated). It refuses raw control characters and the escapes of the
 * tag's two characters, so that no client string can pose as money.
 */
static size_t
scan_string(struct scan *s, size_t i)
{
	size_t j = i + 1;

	advance(s, s->in + i, 1);
	while (j < s->len && s->in[j] != '"') {
		unsigned char b = (unsigned char)s->in[j];

		advance(s, s->in + j, 1);
		if (b < 0x20) {
			fail(s, "control characters must be escaped in "
			        "strings");
			return j;
		}
		if (b == '\\' && j + 1 < s->len) {
			if (s->in[j + 1] == 'u' && j + 5 < s->len) {
				int v = hex4(s->in + j + 2);

				if (v == 1 || v == 2) {
					fail(s, "the escapes \\u0001 and "
					        "\\u0002 are not allowed");
					return j;
				}
			}
			/* Skip the escaped character: it may be a '"'. */
			advance(s, s->in + j + 1, 1);
			j++;
		}
		j++;
	}
	if (j < s->len) {
		advance(s, s->in + j, 1);
		j++;
	}
	emit(s, s->in + i, j - i);
	return j;
}

/*
 * scan_number copies the number-like token at s->in[i], tagging it when it
 * is a valid real number and not in key position, and returns the index
 * past it. An invalid token is copied as is: jansson rejects it.
 */
static size_t
scan_number(struct scan *s, size_t i, bool want_key)
{
	const char *p = s->in + i;
	size_t j = i;
	bool real;

	while (j < s->len &&
	       (isdigit((unsigned char)s->in[j]) ||
	        (s->in[j] != '\0' && strchr(".eE+-", s->in[j]) != NULL))) {
		j++;
	}
	advance(s, p, j - i);
	if (!want_key && j - i <= MAX_NUM_TOKEN && num_token(p, j - i, &real) &&
	    real) {
		emit(s, TAG_ESC, TAG_ESC_LEN);
		emit(s, p, j - i);
		emit(s, "\"", 1);
		s->nreal++;
	} else {
		emit(s, p, j - i);
	}
	return j;
}

/*
 * scan runs the pre-pass over s->in: copies it to s->out (or only counts,
 * when s->out is NULL) with real numbers tagged; stops at the first
 * rejected construct (s->err). It does not validate JSON: what it leaves
 * alone, jansson judges. It only needs to know enough structure to keep
 * object keys untouched: a real in key position is invalid JSON, and must
 * stay so rather than become a valid string key.
 */
static void
scan(struct scan *s)
{
	char stack[HTTP_JSON_MAX_DEPTH]; /* '{' or '[' per open container */
	size_t depth = 0;
	bool want_key = false;
	size_t i = 0;

	s->line = 1;
	s->col = 0;
	while (i < s->len && s->err == NULL) {
		char c = s->in[i];

		if (c == '"') {
			i = scan_string(s, i);
			want_key = false;
			continue;
		}
		if (c == '-' || (c >= '0' && c <= '9')) {
			i = scan_number(s, i, want_key);
			want_key = false;
			continue;
		}
		advance(s, s->in + i, 1);
		switch (c) {
		case '{':
		case '[':
			if (depth == HTTP_JSON_MAX_DEPTH) {
				fail(s, too_deep);
				return;
			}
			stack[depth++] = c;
			want_key = c == '{';
			break;
		case '}':
		case ']':
			if (depth > 0) {
				depth--;
			}
			want_key = false;
			break;
		case ',':
			want_key = depth > 0 && stack[depth - 1] == '{';
			break;
		case ' ':
		case '\t':
		case '\r':
		case '\n':
			break;
		default:
			want_key = false;
			break;
		}
		emit(s, s->in + i, 1);
		i++;
	}
}

static void
json_error(struct http_resp *resp, int line, int col, const char *what)
{
	http_verr_add(resp, "$", "Invalid JSON at line %d, column %d: %s", line,
	              col, what);
}

/* load_error reports why jansson rejects |len| bytes of |text|, which the
 * pre-pass has bounded in depth. Returns false if it does not. */
static bool
load_error(const char *text, size_t len, struct http_resp *resp)
{
	json_error_t je;
	json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);

	if (v != NULL) {
		json_decref(v);
		return false;
	}
	json_error(resp, je.line, je.column, je.text);
	return true;
}

int
http_json_parse(const char *body, size_t len, json_t **out,
                struct http_resp *resp)
{
	struct scan s = {.in = body ? body : "", .len = body ? len : 0};
	json_error_t je;
	json_t *root;
	char *buf = NULL;

	assert(out != NULL && resp != NULL);
	*out = NULL;
	scan(&s);
	if (s.err != NULL) {
		json_error(resp, s.err_line, s.err_col, s.err);
		return MS_EJSON;
	}
	if (!ms_utf8_valid(s.in, s.len)) {
		/* Let jansson say where; it checks UTF-8 too. */
		if (!load_error(s.in, s.len, resp)) {
			http_verr_add(resp, "$",
			              "Invalid JSON: the body is not valid "
			              "UTF-8 text");
		}
		return MS_EJSON;
	}
	if (s.nreal == 0) {
		root = json_loadb(s.in, s.len, JSON_REJECT_DUPLICATES, &je);
	} else {
		/* Second pass, now that the size is known. Owned here. */
		size_t cap = s.len + s.nreal * TAG_EXTRA;

		buf = malloc(cap);
		if (buf == NULL) {
			return MS_ENOMEM;
		}
		s.out = buf;
		s.olen = 0;
		s.nreal = 0;
		scan(&s);
		assert(s.err == NULL && s.olen == cap);
		root = json_loadb(buf, s.olen, JSON_REJECT_DUPLICATES, &je);
	}
	if (root == NULL) {
		/*
		 * Positions in the rewritten text are shifted by the tags:
		 * report the error as jansson sees it in the client's own
		 * text, which fails at the same place.
		 */
		if (buf == NULL || !load_error(s.in, s.len, resp)) {
			json_error(resp, je.line, je.column, je.text);
		}
		free(buf);
		return MS_EJSON;
	}
	free(buf);
	if (!json_is_object(root)) {
		json_decref(root);
		http_verr_add(resp, "$",
		              "The request body must be a JSON object");
		return MS_EJSON;
	}
	*out = root;
	return 0;
}

/* ---- getters ------------------------------------------------------------ */

json_t *
http_json_get(const json_t *obj, const char *name)
{
	json_t *o = (json_t *)obj; /* jansson's iterator API is not const */
	const char *key;
	json_t *v;

	if (!json_is_object(obj) || name == NULL) {
		return NULL;
	}
	v = json_object_get(obj, name);
	if (v != NULL) {
		return v;
	}
	json_object_foreach (o, key, v) {
		if (strcasecmp(key, name) == 0) {
			return v;
		}
	}
	return NULL;
}

/* tagged returns the number text of a tagged real, or NULL. */
static const char *
tagged(const json_t *v, size_t *len)
{
	const char *s;
	size_t n;

	if (!json_is_string(v)) {
		return NULL;
	}
	s = json_string_value(v);
	n = json_string_length(v);
	if (n <= TAG_RAW_LEN || memcmp(s, TAG_RAW, TAG_RAW_LEN) != 0) {
		return NULL;
	}
	*len = n - TAG_RAW_LEN;
	return s + TAG_RAW_LEN;
}

/* verr records "'<name>' <message>" at path.name. */
static int verr(struct http_resp *resp, const char *path, const char *name,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int
verr(struct http_resp *resp, const char *path, const char *name,
     const char *fmt, ...)
{
	char prop[sizeof(((struct http_verr *)0)->property)];
	char msg[sizeof(((struct http_verr *)0)->message)];
	va_list ap;

	if (path != NULL && *path != '\0') {
		snprintf(prop, sizeof(prop), "%s.%s", path, name);
	} else {
		snprintf(prop, sizeof(prop), "%s", name);
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	http_verr_add(resp, prop, "'%s' %s", name, msg);
	return MS_EVALIDATION;
}

/*
 * lookup finds |name|; returns 1 with *v set when present and not null, 0
 * when absent or null (after recording "is required" if |required|: then
 * *rc is MS_EVALIDATION).
 */
static int
lookup(const json_t *obj, const char *path, const char *name, bool required,
       json_t **v, int *rc, struct http_resp *resp)
{
	assert(name != NULL && resp != NULL);
	*v = http_json_get(obj, name);
	*rc = 0;
	if (*v == NULL || json_is_null(*v)) {
		if (required) {
			*rc = verr(resp, path, name, "is required");
		}
		return 0;
	}
	return 1;
}

static bool
blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!isspace((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

int
http_json_str(const json_t *obj, const char *path, const char *name,
              bool required, size_t maxlen, const char **out,
              struct http_resp *resp)
{
	json_t *v;
	const char *s;
	size_t n;
	int rc;

	if (!lookup(obj, path, name, required, &v, &rc, resp)) {
		return rc;
	}
	if (!json_is_string(v) || tagged(v, &n) != NULL) {
		return verr(resp, path, name, "must be a string");
	}
	s = json_string_value(v);
	n = json_string_length(v);
	if (required && blank(s, n)) {
		return verr(resp, path, name, "is required");
	}
	if (n > maxlen) {
		return verr(resp, path, name, "must be at most %zu bytes long",
		            maxlen);
	}
	/* jansson guarantees UTF-8; this also refuses control characters
	 * other than tab, CR and LF that escapes can smuggle in. */
	if (!ms_utf8_valid(s, n)) {
		return verr(resp, path, name,
		            "must not contain control characters");
	}
	*out = s;
	return 0;
}

/* parse_int parses "-?[0-9]+" exactly, as System.Text.Json reads a number
 * from a string: no spaces, no sign '+', no fraction. */
static bool
parse_int(const char *s, size_t n, int64_t *out)
{
	char buf[24];
	char *end;
	long long v;
	size_t i = 0;

	if (n == 0 || n >= sizeof(buf)) {
		return false;
	}
	if (s[0] == '-') {
		i++;
	}
	if (i == n) {
		return false;
	}
	for (; i < n; i++) {
		if (!isdigit((unsigned char)s[i])) {
			return false;
		}
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno != 0 || *end != '\0') {
		return false;
	}
	*out = v;
	return true;
}

int
http_json_int(const json_t *obj, const char *path, const char *name,
              bool required, int64_t min, int64_t max, int64_t *out,
              struct http_resp *resp)
{
	json_t *v;
	int64_t i;
	size_t n;
	int rc;

	if (!lookup(obj, path, name, required, &v, &rc, resp)) {
		return rc;
	}
	if (json_is_integer(v)) {
		i = json_integer_value(v);
	} else if (!json_is_string(v) || tagged(v, &n) != NULL ||
	           !parse_int(json_string_value(v), json_string_length(v),
	                      &i)) {
		i = 0;
		goto bad;
	}
	if (i < min || i > max) {
		goto bad;
	}
	*out = i;
	return 0;
bad:
	return verr(resp, path, name,
	            "must be an integer between %lld and %lld", (long long)min,
	            (long long)max);
}

int
http_json_money(const json_t *obj, const char *path, const char *name,
                bool required, int64_t min_cents, int64_t *out,
                struct http_resp *resp)
{
	const int64_t max_units = MS_MONEY_MAX_CENTS / 100;
	json_t *v;
	int64_t cents;
	const char *text;
	size_t n;
	int rc;

	if (!lookup(obj, path, name, required, &v, &rc, resp)) {
		return rc;
	}
	if (json_is_integer(v)) {
		json_int_t units = json_integer_value(v);

		if (units > max_units || units < -max_units) {
			goto bad;
		}
		cents = (int64_t)units * 100;
	} else if (json_is_string(v)) {
		text = tagged(v, &n);
		if (text == NULL) {
			text = json_string_value(v);
			n = json_string_length(v);
		}
		if (ms_money_parse(text, n, &cents) != 0) {
			goto bad;
		}
	} else {
		goto bad;
	}
	if (cents < min_cents) {
		char buf[MS_MONEY_STRLEN];

		return verr(resp, path, name, "must be at least %s",
		            ms_money_format(min_cents, buf));
	}
	*out = cents;
	return 0;
bad:
	return verr(resp, path, name,
	            "must be a number with at most 2 decimals and at most "
	            "18 digits");
}

int
http_json_guid(const json_t *obj, const char *path, const char *name,
               bool required, bool nonzero, char out[37],
               struct http_resp *resp)
{
	json_t *v;
	const char *s;
	size_t n;
	int rc;

	if (!lookup(obj, path, name, required, &v, &rc, resp)) {
		return rc;
	}
	if (!json_is_string(v) || tagged(v, &n) != NULL) {
		return verr(resp, path, name, "must be a GUID");
	}
	s = json_string_value(v);
	if (json_string_length(v) != MS_UUID_STRLEN - 1 || !ms_uuid_valid(s)) {
		return verr(resp, path, name, "must be a GUID");
	}
	if (nonzero && ms_uuid_is_nil(s)) {
		return verr(resp, path, name, "must not be the empty GUID");
	}
	memcpy(out, s, MS_UUID_STRLEN);
	ms_uuid_normalize(out);
	return 0;
}

static int
container(const json_t *obj, const char *path, const char *name, bool required,
          bool array, json_t **out, struct http_resp *resp)
{
	json_t *v;
	int rc;

	*out = NULL;
	if (!lookup(obj, path, name, required, &v, &rc, resp)) {
		return rc;
	}
	if (array ? !json_is_array(v) : !json_is_object(v)) {
		return verr(resp, path, name, "must be %s",
		            array ? "an array" : "an object");
	}
	*out = v;
	return 0;
}

int
http_json_object(const json_t *obj, const char *path, const char *name,
                 bool required, json_t **out, struct http_resp *resp)
{
	return container(obj, path, name, required, false, out, resp);
}

int
http_json_array(const json_t *obj, const char *path, const char *name,
                bool required, json_t **out, struct http_resp *resp)
{
	return container(obj, path, name, required, true, out, resp);
}

/* ---- output ------------------------------------------------------------- */

json_t *
http_json_money_new(int64_t cents)
{
	char buf[TAG_RAW_LEN + MS_MONEY_STRLEN];

	memcpy(buf, TAG_RAW, TAG_RAW_LEN);
	ms_money_format(cents, buf + TAG_RAW_LEN);
	return json_string(buf);
}

/*
 * untag rewrites, in place, every string value of compact JSON text that
 * is exactly a tag followed by a valid number into that bare number.
 * Strings are tracked with their escapes, so only a real opening quote
 * starts a match; a tagged object key (followed by ':') stays a string,
 * and so does a tag whose payload is not a number, so no value from
 * elsewhere can inject JSON text. Returns the new length.
 */
static size_t
untag(char *s, size_t len)
{
	size_t r = 0;
	size_t w = 0;
	bool in_str = false;

	while (r < len) {
		char c = s[r];

		if (in_str) {
			if (c == '\\' && r + 1 < len) {
				s[w++] = s[r++];
			} else if (c == '"') {
				in_str = false;
			}
			s[w++] = s[r++];
			continue;
		}
		if (c == '"' && len - r > TAG_ESC_LEN &&
		    memcmp(s + r, TAG_ESC, TAG_ESC_LEN) == 0) {
			size_t b = r + TAG_ESC_LEN;
			size_t e = b;
			bool real;

			while (e < len && s[e] != '"' && s[e] != '\\') {
				e++;
			}
			if (e < len && s[e] == '"' &&
			    (e + 1 >= len || s[e + 1] != ':') &&
			    num_token(s + b, e - b, &real)) {
				memmove(s + w, s + b, e - b);
				w += e - b;
				r = e + 1;
				continue;
			}
		}
		if (c == '"') {
			in_str = true;
		}
		s[w++] = s[r++];
	}
	s[w] = '\0';
	return w;
}

char *
http_json_dump(const json_t *v, size_t *len)
{
	char *s;
	size_t n;

	if (v == NULL) {
		return NULL;
	}
	s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (s == NULL) {
		return NULL;
	}
	n = untag(s, strlen(s));
	if (len != NULL) {
		*len = n;
	}
	return s;
}

/* utf8_seq returns the length of the valid UTF-8 sequence at |p| (|n|
 * bytes available), or 0: RFC 3629, no overlongs, no surrogates. */
static size_t
utf8_seq(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t len;
	unsigned cp;

	if (c < 0x80) {
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		cp = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len > n) {
		return 0;
	}
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80) {
			return 0;
		}
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
		return 0;
	}
	return len;
}

json_t *
http_json_string_lossy(const char *s, size_t maxlen)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t n = strnlen((const char *)p, maxlen);
	size_t w = 0;
	char *buf = malloc(n + 1); /* owned here */
	json_t *v;

	if (buf == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(p + i, n - i);

		if (k == 0) {
			/* At the cut, a partial character is dropped, not
			 * replaced: it was cut, not invalid. */
			if (n == maxlen && utf8_seq(p + i, 4) != 0 &&
			    i + 4 > n) {
				break;
			}
			buf[w++] = '?';
			i++;
			continue;
		}
		memcpy(buf + w, p + i, k);
		w += k;
		i += k;
	}
	v = json_stringn(buf, w);
	free(buf);
	return v;
}
