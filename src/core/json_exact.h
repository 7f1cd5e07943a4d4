/* SPDX-License-Identifier: MIT */
/*
 * Exact numbers in JSON, over jansson. jansson reads every real number into
 * a double, which cannot hold 0.1 or 1400.35, and money must stay exact.
 * ms_json_loads_exact therefore rewrites every real-number token (one with
 * '.', 'e' or 'E') into a tagged string before jansson sees the text, and
 * ms_json_exact_number reads the number's own text back. Integers stay
 * jansson integers. Nobody can forge the tag: text whose strings hold the
 * tag's control characters, raw or escaped, is rejected. On output,
 * ms_json_number_new makes a value that ms_json_dumps_exact writes as a bare
 * number.
 *
 * The same pre-pass bounds the nesting depth before jansson recurses, and
 * can accept the trailing commas that MassTransit's System.Text.Json
 * readers accept. Used by the REST edge (src/http/json.c) and the
 * MassTransit envelope (src/transport/amqp/envelope.c).
 *
 * Pure functions over buffers; thread safe (no shared state).
 */
#ifndef MS_CORE_JSON_EXACT_H
#define MS_CORE_JSON_EXACT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Deepest nesting of objects and arrays ms_json_loads_exact accepts
 * (ms_json_loads_exact_depth takes another bound, up to
 * MS_JSON_DEPTH_LIMIT: the pre-pass keeps one bit per open container, and
 * jansson's own parser stops at 2048). */
#define MS_JSON_MAX_DEPTH   32
#define MS_JSON_DEPTH_LIMIT 1024

/* Longest number text kept exact: a real token longer than this is left to
 * jansson (a double, which ms_json_exact_number refuses). With the NUL. */
#define MS_JSON_NUM_MAX    64
#define MS_JSON_NUM_STRLEN (MS_JSON_NUM_MAX + 1)

/* Flags of ms_json_loads_exact. */
enum {
	/* Accept one comma directly before '}' or ']' ("[1, 2,]"), as
	 * System.Text.Json with AllowTrailingCommas does. Not for REST. */
	MS_JSON_TRAILING_COMMAS = 1u << 0,
};

/*
 * ms_json_loads_exact parses |len| bytes of |buf| (NULL is empty) into
 * *out, a new reference to an object or an array (jansson refuses other
 * values at the top; the caller checks which it wants), with
 * real numbers kept exact and duplicate keys rejected. |flags| is 0 or
 * MS_JSON_TRAILING_COMMAS.
 *
 * Returns 0; MS_EJSON when the text is not JSON we accept (malformed,
 * invalid UTF-8, raw control characters in strings, the escapes \u0001 or
 * \u0002, nesting deeper than MS_JSON_MAX_DEPTH, duplicate keys); or
 * MS_ENOMEM. On MS_EJSON, |err| (may be NULL) says why: err->text, and
 * err->line / err->column (from 1, characters) in the caller's own text,
 * or line -1 when there is no position to give. *out is NULL on failure.
 */
int ms_json_loads_exact(const char *buf, size_t len, unsigned flags,
                        json_t **out, json_error_t *err);

/* ms_json_loads_exact_depth is ms_json_loads_exact with nesting deeper
 * than |max_depth| (1..MS_JSON_DEPTH_LIMIT; asserted) rejected instead
 * of deeper than MS_JSON_MAX_DEPTH (http.max_json_depth). */
int ms_json_loads_exact_depth(const char *buf, size_t len, unsigned flags,
                              unsigned max_depth, json_t **out,
                              json_error_t *err);

/*
 * ms_json_real_text returns the number text of a real that
 * ms_json_loads_exact rewrote (or ms_json_number_new made), with its
 * length in *len; NULL for any other value. The text points into |v|.
 */
const char *ms_json_real_text(const json_t *v, size_t *len);

/*
 * ms_json_exact_number tells whether |v| is a number held exactly: an
 * integer, or a rewritten real. Then *text (not NUL-terminated) and *len
 * are its JSON text: pointing into |v| for a real, into |scratch| for an
 * integer. A plain string, a double (a real token longer than
 * MS_JSON_NUM_MAX) or anything else gives false.
 */
bool ms_json_exact_number(const json_t *v, char scratch[MS_JSON_NUM_STRLEN],
                          const char **text, size_t *len);

/*
 * ms_json_number_new returns a new value that ms_json_dumps_exact writes as
 * the bare JSON number |text| (e.g. "350.25"). NULL when |text| is not a
 * JSON number of at most MS_JSON_NUM_MAX bytes, or on ENOMEM.
 */
json_t *ms_json_number_new(const char *text);

/*
 * ms_json_dumps_exact serializes |v| like json_dumps(v, flags) and writes
 * the values of ms_json_number_new / rewritten reals back as bare numbers.
 * Returns a malloc'd string (owned by the caller; length in *len when
 * |len| is not NULL), or NULL (ENOMEM, or what json_dumps refuses).
 */
char *ms_json_dumps_exact(const json_t *v, size_t flags, size_t *len);

#endif
