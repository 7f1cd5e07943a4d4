/* SPDX-License-Identifier: MIT */
/*
 * JSON mapping helpers over jansson, for request bodies and responses.
 *
 * Exact money: jansson turns real numbers into doubles, which would corrupt
 * prices. http_json_parse therefore rewrites every real-number token of the
 * body (one with '.', 'e' or 'E') into a tagged string before jansson sees
 * it, and http_json_money reads the exact text back. Clients cannot forge
 * the tag: a body whose strings contain the tag's control characters is
 * rejected. On output, http_json_money_new creates a tagged string that
 * http_json_dump writes back as a bare JSON number.
 *
 * Field lookups are case-insensitive (System.Text.Json web defaults). Every
 * getter records a validation error naming the JSON path on a wrong type,
 * a missing required value or a bad form, and returns MS_EVALIDATION.
 */
#ifndef MS_HTTP_JSON_H
#define MS_HTTP_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/json_exact.h"

struct http_req;
struct http_resp;

#define HTTP_JSON_MAX_DEPTH MS_JSON_MAX_DEPTH

/*
 * http_json_parse parses |len| bytes of |body|. On success *out is a new
 * reference. On failure returns MS_EJSON and records one validation error
 * with property "$" (or the path where it can tell) and a message with the
 * line and column: malformed JSON, invalid UTF-8, nesting deeper than
 * HTTP_JSON_MAX_DEPTH, duplicate keys, a body that is not an object.
 */
int http_json_parse(const char *body, size_t len, json_t **out,
                    struct http_resp *resp);

/* http_json_parse_body is http_json_parse of req->body with the request's
 * nesting bound (req->max_json_depth, http.max_json_depth, set by the
 * server). What handlers use. */
int http_json_parse_body(const struct http_req *req, json_t **out,
                         struct http_resp *resp);

/* http_json_get returns the member of |obj| whose name equals |name|
 * case-insensitively (exact match preferred), or NULL. */
json_t *http_json_get(const json_t *obj, const char *name);

/*
 * The typed getters look up |name| in |obj| (which may be NULL: then the
 * member is missing). |path| is the JSON path of |obj| for messages ("cart",
 * "order.shippingAddress"). With |required|, a missing or null member is an
 * error; without it, *out is left untouched and 0 returned. All return 0 or
 * MS_EVALIDATION (error recorded in |resp|).
 *
 * http_json_str: a string, at most |maxlen| bytes, valid UTF-8 without
 * control characters; with |required| also non-blank. *out points into
 * |obj|'s storage.
 */
int http_json_str(const json_t *obj, const char *path, const char *name,
                  bool required, size_t maxlen, const char **out,
                  struct http_resp *resp);

/* http_json_int: an integer number (no fraction) in [min, max], or a string
 * holding one: System.Text.Json's web defaults read numbers from strings. */
int http_json_int(const json_t *obj, const char *path, const char *name,
                  bool required, int64_t min, int64_t max, int64_t *out,
                  struct http_resp *resp);

/* http_json_money: a number (or a string holding one, as for ints) with at
 * most 2 decimals and 18 digits in all, and >= |min_cents|. */
int http_json_money(const json_t *obj, const char *path, const char *name,
                    bool required, int64_t min_cents, int64_t *out,
                    struct http_resp *resp);

/* http_json_guid: a GUID string, normalized to lower case into |out|;
 * with |nonzero|, the all-zero GUID is an error. */
int http_json_guid(const json_t *obj, const char *path, const char *name,
                   bool required, bool nonzero, char out[37],
                   struct http_resp *resp);

/* http_json_object / http_json_array: the member must be an object / array
 * (or missing/null when not |required|: *out = NULL). */
int http_json_object(const json_t *obj, const char *path, const char *name,
                     bool required, json_t **out, struct http_resp *resp);
int http_json_array(const json_t *obj, const char *path, const char *name,
                    bool required, json_t **out, struct http_resp *resp);

/* http_json_money_new returns a JSON value that dumps as the exact number
 * |cents|/100 (e.g. 350, 350.5). */
json_t *http_json_money_new(int64_t cents);

/*
 * http_json_string_lossy returns a JSON string of at most |maxlen| bytes of
 * |s| (NULL is ""), with every byte that is not part of valid UTF-8
 * replaced by '?' and never a character cut in half: for text that did not
 * come from a client's JSON (paths, reasons, truncated messages), which
 * json_string() would refuse. Returns a new reference, or NULL on ENOMEM.
 */
json_t *http_json_string_lossy(const char *s, size_t maxlen);

/* http_json_dump serializes |v| (compact), turning money values back into
 * bare numbers. Returns a malloc'd string or NULL. */
char *http_json_dump(const json_t *v, size_t *len);

#endif
