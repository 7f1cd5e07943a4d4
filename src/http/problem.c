/* SPDX-License-Identifier: MIT */
/*
 * Responses and RFC 9457 problem details: the helpers handlers use to fill
 * a struct http_resp (a JSON body on success; a detail and validation
 * errors on failure), and the builder of the application/problem+json body
 * the edge answers with on every error, in the shape of the original's
 * CustomExceptionHandler: {"title","status","detail","instance","traceId"}
 * plus "validationErrors":[{"propertyName","errorMessage"}].
 *
 * Pure code; a struct http_resp belongs to one request thread.
 */
#include "http/http.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "http/json.h"

/* trim_utf8 drops a character cut in half at the end of |s| (by a
 * bounded copy), so the text stays valid UTF-8. */
static void
trim_utf8(char *s)
{
	size_t n = strlen(s);
	size_t i = n;
	size_t need;
	unsigned char c;

	/* Back over at most 3 continuation bytes to the lead byte. */
	while (i > 0 && n - i < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
		i--;
	}
	if (i == 0) {
		return;
	}
	c = (unsigned char)s[i - 1];
	need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
	if (c >= 0x80 && n - (i - 1) < need) {
		s[i - 1] = '\0';
	}
}

int
http_resp_json(struct http_resp *resp, int status, json_t *body)
{
	assert(resp != NULL);
	if (resp->body != NULL && resp->body != body) {
		json_decref(resp->body);
	}
	resp->status = status;
	resp->body = body;
	/* A NULL body means the caller's json_object() etc. failed. */
	return body != NULL ? 0 : MS_ENOMEM;
}

int
http_resp_fail(struct http_resp *resp, int rc, const char *fmt, ...)
{
	va_list ap;

	assert(resp != NULL && fmt != NULL);
	va_start(ap, fmt);
	vsnprintf(resp->detail, sizeof(resp->detail), fmt, ap);
	va_end(ap);
	trim_utf8(resp->detail);
	return rc;
}

void
http_verr_add(struct http_resp *resp, const char *property, const char *fmt,
              ...)
{
	struct http_verr *e;
	va_list ap;

	assert(resp != NULL && property != NULL && fmt != NULL);
	if (resp->nverrs >= HTTP_MAX_VERRS) {
		return;
	}
	e = &resp->verrs[resp->nverrs++];
	ms_strlcpy(e->property, property, sizeof(e->property));
	trim_utf8(e->property);
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	trim_utf8(e->message);
}

const char *
http_status_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 411:
		return "Length Required";
	case 413:
		return "Payload Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Entity";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return status >= 500   ? "Internal Server Error"
		       : status >= 400 ? "Bad Request"
		                       : "OK";
	}
}

/* set_text adds |s| under |key| as a JSON string, tolerating text that is
 * not valid UTF-8 (a path from the wire, a truncated message). */
static int
set_text(json_t *obj, const char *key, const char *s, size_t max)
{
	json_t *v = http_json_string_lossy(s, max);

	return v != NULL ? json_object_set_new(obj, key, v) : -1;
}

json_t *
http_problem_json(int rc, const struct http_resp *resp, const char *instance,
                  const char *trace_id)
{
	int status = ms_err_http(rc);
	const char *title = http_status_reason(status);
	const char *detail = ms_strerror(rc);
	json_t *p = json_object();
	int bad = 0;

	if (p == NULL) {
		return NULL;
	}
	if (resp != NULL && resp->title[0] != '\0') {
		title = resp->title;
	}
	if (resp != NULL && resp->detail[0] != '\0') {
		detail = resp->detail;
	}
	bad |= set_text(p, "title", title, sizeof(resp->title));
	bad |= json_object_set_new(p, "status", json_integer(status));
	bad |= set_text(p, "detail", detail, sizeof(resp->detail));
	bad |= set_text(p, "instance", instance ? instance : "", 1024);
	bad |= set_text(p, "traceId", trace_id ? trace_id : "", 64);
	if (resp != NULL && resp->nverrs > 0) {
		json_t *arr = json_array();
		size_t n = resp->nverrs < HTTP_MAX_VERRS ? resp->nverrs
		                                         : HTTP_MAX_VERRS;

		bad |= json_object_set_new(p, "validationErrors", arr);
		for (size_t i = 0; arr != NULL && i < n; i++) {
			const struct http_verr *e = &resp->verrs[i];
			json_t *o = json_object();

			if (o == NULL) {
				bad = -1;
				break;
			}
			bad |= set_text(o, "propertyName", e->property,
			                sizeof(e->property));
			bad |= set_text(o, "errorMessage", e->message,
			                sizeof(e->message));
			bad |= json_array_append_new(arr, o);
		}
	}
	if (bad) {
		json_decref(p);
		return NULL;
	}
	return p;
}
