/* SPDX-License-Identifier: MIT */
/*
 * JSON mapping for the REST edge: parsing request bodies with exact money,
 * the typed, case-insensitive getters that turn every bad field into a
 * validation error naming its JSON path, and the serializer that writes
 * money back as bare numbers.
 *
 * Exact money (see json.h): jansson reads every real number into a double,
 * which cannot hold 0.1 or 1400.35. The core's exact pre-pass
 * (core/json_exact.h) hides real numbers from jansson as tagged strings;
 * the getters read their text back, refuse them where a string is wanted,
 * and the serializer writes them back as bare numbers. REST is strict JSON:
 * no trailing commas.
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
#include "core/json_exact.h"
#include "core/money.h"
#include "core/util.h"
#include "http/http.h"

static void
json_error(struct http_resp *resp, int line, int col, const char *what)
{
	http_verr_add(resp, "$", "Invalid JSON at line %d, column %d: %s", line,
	              col, what);
}

static int
parse(const char *body, size_t len, unsigned max_depth, json_t **out,
      struct http_resp *resp)
{
	json_error_t je;
	json_t *root;
	int rc;

	assert(out != NULL && resp != NULL);
	*out = NULL;
	if (max_depth == 0 || max_depth > MS_JSON_DEPTH_LIMIT) {
		max_depth = HTTP_JSON_MAX_DEPTH;
	}
	rc = ms_json_loads_exact_depth(body, len, 0, max_depth, &root, &je);
	if (rc == MS_EJSON) {
		if (je.line < 0) {
			http_verr_add(resp, "$", "Invalid JSON: %s", je.text);
		} else {
			json_error(resp, je.line, je.column, je.text);
		}
		return MS_EJSON;
	}
	if (rc != 0) {
		return rc;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		http_verr_add(resp, "$",
		              "The request body must be a JSON object");
		return MS_EJSON;
	}
	*out = root;
	return 0;
}

int
http_json_parse(const char *body, size_t len, json_t **out,
                struct http_resp *resp)
{
	return parse(body, len, HTTP_JSON_MAX_DEPTH, out, resp);
}

int
http_json_parse_body(const struct http_req *req, json_t **out,
                     struct http_resp *resp)
{
	return parse(req->body ? req->body : "", req->body ? req->body_len : 0,
	             req->max_json_depth, out, resp);
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
	if (!json_is_string(v) || ms_json_real_text(v, &n) != NULL) {
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
	} else if (!json_is_string(v) || ms_json_real_text(v, &n) != NULL ||
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
		text = ms_json_real_text(v, &n);
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
	if (!json_is_string(v) || ms_json_real_text(v, &n) != NULL) {
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
	char buf[MS_MONEY_STRLEN];

	return ms_json_number_new(ms_money_format(cents, buf));
}

char *
http_json_dump(const json_t *v, size_t *len)
{
	return ms_json_dumps_exact(v, JSON_COMPACT | JSON_ENCODE_ANY, len);
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
