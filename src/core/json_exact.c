/* SPDX-License-Identifier: MIT */
/*
 * Exact JSON numbers (json_exact.h): the pre-pass that hides real numbers
 * from jansson's doubles, and its inverse on output.
 *
 * Before jansson sees a text, a small lexer (scan() below) rewrites each
 * real-number token, one with '.', 'e' or 'E', into the string
 * "\u0001\u0002N:<token>" - a value no sender can write, because a text
 * whose strings hold those two control characters (raw or escaped) is
 * rejected. Integers stay numbers. The same pass bounds the nesting depth
 * before jansson recurses and, on request, blanks a trailing comma (one
 * directly before '}' or ']'). On output, strings carrying the tag are
 * written back as the bare number they hold.
 *
 * Error positions are the sender's: a trailing comma is replaced by a
 * space rather than dropped, so it shifts nothing, and when the rewritten
 * text fails, jansson is asked again about the text without tags, which
 * fails at the same place.
 *
 * Pure code over buffers; every function is thread safe.
 */
#include "core/json_exact.h"

#include <assert.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"

/* The tag, as jansson holds it once decoded ... */
#define TAG_RAW     "\001\002N:"
#define TAG_RAW_LEN 4
/* ... and as it is written in JSON text (input rewrite and jansson output). */
#define TAG_ESC     "\"\\u0001\\u0002N:"
#define TAG_ESC_LEN 15
/* Bytes a rewrite adds around a real token: TAG_ESC and the closing quote. */
#define TAG_EXTRA (TAG_ESC_LEN + 1)

/* ---- the pre-pass ------------------------------------------------------ */

struct scan {
	const char *in;
	size_t len;
	unsigned flags;     /* MS_JSON_* */
	unsigned max_depth; /* 1..MS_JSON_DEPTH_LIMIT */
	bool tag;      /* rewrite reals (off: only blank trailing commas) */
	char *out;     /* NULL on the counting pass */
	size_t olen;   /* bytes written (or that would be) */
	size_t nreal;  /* real tokens rewritten */
	size_t ncomma; /* trailing commas blanked */
	int line;      /* position of the byte being read, as jansson counts */
	int col;
	const char *err;   /* NULL, or why the text is rejected */
	char too_deep[64]; /* the message for a nesting too deep */
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

/*
 * scan_string copies the string literal starting at s->in[i] (a '"') and
 * returns the index past it (or the end of the text, for jansson to call
 * unterminated). It refuses raw control characters and the escapes of the
 * tag's two characters, so that no sender's string can pose as a number.
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
				int v = ms_hex4(s->in + j + 2);

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
	if (s->tag && !want_key && j - i <= MS_JSON_NUM_MAX &&
	    num_token(p, j - i, &real) && real) {
		emit(s, TAG_ESC, TAG_ESC_LEN);
		emit(s, p, j - i);
		emit(s, "\"", 1);
		s->nreal++;
	} else {
		emit(s, p, j - i);
	}
	return j;
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* trailing_comma tells whether the ',' at s->in[i] is followed, after
 * whitespace only, by the '}' or ']' closing its container. */
static bool
trailing_comma(const struct scan *s, size_t i)
{
	size_t j = i + 1;

	while (j < s->len && is_space(s->in[j])) {
		j++;
	}
	return j < s->len && (s->in[j] == '}' || s->in[j] == ']');
}

/*
 * scan runs the pre-pass over s->in: copies it to s->out (or only counts,
 * when s->out is NULL) with real numbers tagged and trailing commas
 * blanked; stops at the first rejected construct (s->err). It does not
 * validate JSON: what it leaves alone, jansson judges. It only needs to
 * know enough structure to keep object keys untouched (a real in key
 * position is invalid JSON, and must stay so rather than become a valid
 * string key) and to tell a trailing comma, one that follows a value, from
 * a stray one ("[,]" stays invalid).
 */
static void
scan(struct scan *s)
{
	/* One bit per open container: set for '{', clear for '['. */
	unsigned char stack[MS_JSON_DEPTH_LIMIT / 8] = {0};
	size_t depth = 0;
	bool want_key = false;
	bool after_value = false; /* the last token ended a value */
	size_t i = 0;

	s->line = 1;
	s->col = 0;
	s->olen = 0;
	s->nreal = 0;
	s->ncomma = 0;
	s->err = NULL;
	while (i < s->len && s->err == NULL) {
		char c = s->in[i];

		if (c == '"') {
			i = scan_string(s, i);
			want_key = false;
			after_value = true;
			continue;
		}
		if (c == '-' || (c >= '0' && c <= '9')) {
			i = scan_number(s, i, want_key);
			want_key = false;
			after_value = true;
			continue;
		}
		advance(s, s->in + i, 1);
		switch (c) {
		case '{':
		case '[':
			if (depth == s->max_depth) {
				snprintf(s->too_deep, sizeof(s->too_deep),
				         "nesting is deeper than %u levels",
				         s->max_depth);
				fail(s, s->too_deep);
				return;
			}
			if (c == '{') {
				stack[depth / 8] |=
				    (unsigned char)(1u << (depth % 8));
			} else {
				stack[depth / 8] &=
				    (unsigned char)~(1u << (depth % 8));
			}
			depth++;
			want_key = c == '{';
			after_value = false;
			break;
		case '}':
		case ']':
			if (depth > 0) {
				depth--;
			}
			want_key = false;
			after_value = true;
			break;
		case ',':
			want_key =
			    depth > 0 &&
			    (stack[(depth - 1) / 8] >> ((depth - 1) % 8) & 1u);
			if ((s->flags & MS_JSON_TRAILING_COMMAS) &&
			    after_value && depth > 0 && trailing_comma(s, i)) {
				/* A space, not nothing: positions stay. */
				emit(s, " ", 1);
				s->ncomma++;
				after_value = false;
				i++;
				continue;
			}
			after_value = false;
			break;
		case ':':
			after_value = false;
			break;
		case ' ':
		case '\t':
		case '\r':
		case '\n':
			break;
		default:
			/* true, false, null, or junk for jansson. */
			want_key = false;
			after_value = true;
			break;
		}
		emit(s, s->in + i, 1);
		i++;
	}
}

static void
set_error(json_error_t *err, int line, int col, const char *text)
{
	if (err == NULL) {
		return;
	}
	memset(err, 0, sizeof(*err));
	err->line = line;
	err->column = col;
	err->position = -1;
	snprintf(err->source, sizeof(err->source), "<buffer>");
	snprintf(err->text, sizeof(err->text), "%s", text);
}

/*
 * plain_error asks jansson why it rejects the sender's text with only the
 * trailing commas blanked: the text whose positions are the sender's.
 * Returns 1 with |err| filled, 0 when jansson accepts that text, or
 * MS_ENOMEM.
 */
static int
plain_error(const struct scan *pre, json_error_t *err)
{
	struct scan s = {.in = pre->in,
	                 .len = pre->len,
	                 .flags = pre->flags,
	                 .max_depth = pre->max_depth};
	json_error_t je;
	json_t *v;
	char *buf = NULL; /* owned here */
	const char *text = pre->in;

	if (pre->ncomma > 0) {
		buf = malloc(pre->len);
		if (buf == NULL) {
			return MS_ENOMEM;
		}
		s.out = buf;
		scan(&s);
		assert(s.err == NULL && s.olen == pre->len);
		text = buf;
	}
	v = json_loadb(text, pre->len, JSON_REJECT_DUPLICATES, &je);
	free(buf);
	if (v != NULL) {
		json_decref(v);
		return 0;
	}
	if (json_error_code(&je) == json_error_out_of_memory) {
		return MS_ENOMEM;
	}
	if (err != NULL) {
		*err = je;
	}
	return 1;
}

int
ms_json_loads_exact(const char *buf, size_t len, unsigned flags, json_t **out,
                    json_error_t *err)
{
	return ms_json_loads_exact_depth(buf, len, flags, MS_JSON_MAX_DEPTH,
	                                 out, err);
}

int
ms_json_loads_exact_depth(const char *buf, size_t len, unsigned flags,
                          unsigned max_depth, json_t **out, json_error_t *err)
{
	struct scan s = {.in = buf ? buf : "",
	                 .len = buf ? len : 0,
	                 .flags = flags,
	                 .max_depth = max_depth,
	                 .tag = true};
	json_error_t je;
	json_t *root;
	char *text = NULL; /* the rewritten text, owned here */
	int rc;

	assert(out != NULL);
	assert((flags & ~(unsigned)MS_JSON_TRAILING_COMMAS) == 0);
	assert(max_depth >= 1 && max_depth <= MS_JSON_DEPTH_LIMIT);
	*out = NULL;
	scan(&s);
	if (s.err != NULL) {
		set_error(err, s.err_line, s.err_col, s.err);
		return MS_EJSON;
	}
	if (!ms_utf8_valid(s.in, s.len)) {
		/* Let jansson say where; it checks UTF-8 too. */
		rc = plain_error(&s, err);
		if (rc == 0) {
			set_error(err, -1, -1,
			          "the body is not valid UTF-8 text");
		}
		return rc < 0 ? rc : MS_EJSON;
	}
	if (s.nreal == 0 && s.ncomma == 0) {
		root = json_loadb(s.in, s.len, JSON_REJECT_DUPLICATES, &je);
	} else {
		/* Second pass, now that the size is known. */
		size_t cap = s.olen;

		text = malloc(cap);
		if (text == NULL) {
			return MS_ENOMEM;
		}
		s.out = text;
		scan(&s);
		assert(s.err == NULL && s.olen == cap);
		root = json_loadb(text, s.olen, JSON_REJECT_DUPLICATES, &je);
	}
	free(text);
	if (root != NULL) {
		*out = root;
		return 0;
	}
	if (json_error_code(&je) == json_error_out_of_memory) {
		return MS_ENOMEM;
	}
	/*
	 * Positions in the rewritten text are shifted by the tags: report
	 * the error as jansson sees it in the sender's own text, which fails
	 * at the same place.
	 */
	if (s.nreal > 0) {
		rc = plain_error(&s, err);
		if (rc < 0) {
			return rc;
		}
		if (rc == 1) {
			return MS_EJSON;
		}
	}
	if (err != NULL) {
		*err = je;
	}
	return MS_EJSON;
}

/* ---- reading numbers back ---------------------------------------------- */

const char *
ms_json_real_text(const json_t *v, size_t *len)
{
	const char *s;
	size_t n;

	assert(len != NULL);
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

bool
ms_json_exact_number(const json_t *v, char scratch[MS_JSON_NUM_STRLEN],
                     const char **text, size_t *len)
{
	const char *t;
	size_t n;
	int w;

	assert(scratch != NULL && text != NULL && len != NULL);
	if (json_is_integer(v)) {
		w = snprintf(scratch, MS_JSON_NUM_STRLEN,
		             "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		assert(w > 0 && w < MS_JSON_NUM_STRLEN);
		*text = scratch;
		*len = (size_t)w;
		return true;
	}
	t = ms_json_real_text(v, &n);
	if (t == NULL) {
		return false;
	}
	*text = t;
	*len = n;
	return true;
}

/* ---- output ------------------------------------------------------------- */

json_t *
ms_json_number_new(const char *text)
{
	char buf[TAG_RAW_LEN + MS_JSON_NUM_STRLEN];
	size_t n = text ? strnlen(text, MS_JSON_NUM_STRLEN) : 0;
	bool real;

	if (n == 0 || n > MS_JSON_NUM_MAX || !num_token(text, n, &real)) {
		return NULL;
	}
	memcpy(buf, TAG_RAW, TAG_RAW_LEN);
	memcpy(buf + TAG_RAW_LEN, text, n);
	return json_stringn(buf, TAG_RAW_LEN + n);
}

/*
 * untag rewrites, in place, every string value of JSON text that is
 * exactly a tag followed by a valid number into that bare number. Strings
 * are tracked with their escapes, so only a real opening quote starts a
 * match; a tagged object key (followed by ':', as jansson writes keys in
 * every format) stays a string, and so does a tag whose payload is not a
 * number, so no value from elsewhere can inject JSON text. Returns the new
 * length.
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
ms_json_dumps_exact(const json_t *v, size_t flags, size_t *len)
{
	char *s;
	size_t n;

	if (v == NULL) {
		return NULL;
	}
	s = json_dumps(v, flags);
	if (s == NULL) {
		return NULL;
	}
	n = untag(s, strlen(s));
	if (len != NULL) {
		*len = n;
	}
	return s;
}
