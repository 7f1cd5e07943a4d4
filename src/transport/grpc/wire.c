/* SPDX-License-Identifier: MIT */
/*
 * gRPC protocol facts as pure functions over buffers: the length-prefixed
 * message reader, grpc-timeout parsing and formatting, grpc-message
 * percent-encoding, status parsing and mapping, content-type and :path
 * checks, grpc-retry-pushback-ms. No sockets, no nghttp2, no globals: every
 * function is thread safe and only touches the memory it is given, so the
 * server and the client call them from the loop thread and the tests call
 * them directly. The rules are ../shared/reference/wire.md §1.
 */
#include "transport/grpc/wire.h"

#include <assert.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* ---- message framing ---------------------------------------------------- */

void
tp_grpc_frame_header(uint8_t out[TP_GRPC_PREFIX_LEN], uint32_t len)
{
	out[0] = 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

void
tp_grpc_reader_init(struct tp_grpc_reader *r, size_t max_message)
{
	assert(r != NULL);
	memset(r, 0, sizeof(*r));
	r->max_message = max_message;
}

/* reset forgets the current message (its buffer was handed out or freed). */
static void
reset(struct tp_grpc_reader *r)
{
	r->hdr_have = 0;
	r->buf = NULL;
	r->need = 0;
	r->have = 0;
	r->compressed = false;
}

void
tp_grpc_reader_fini(struct tp_grpc_reader *r)
{
	if (r == NULL)
		return;
	free(r->buf);
	reset(r);
}

/*
 * start_body checks a complete prefix and allocates the body once, at its
 * final size, so a message trickling in byte by byte costs one malloc and
 * one copy per byte, never a realloc chain. The checks come before the
 * allocation: a peer announcing 4 GiB gets MS_ETOOBIG without us reserving
 * anything. On error the prefix stays in place, so every later feed returns
 * the same error (the stream is dead; the caller resets it).
 */
static int
start_body(struct tp_grpc_reader *r)
{
	uint32_t n = (uint32_t)r->hdr[1] << 24 | (uint32_t)r->hdr[2] << 16 |
	             (uint32_t)r->hdr[3] << 8 | (uint32_t)r->hdr[4];

	if (r->hdr[0] == 1) {
		r->compressed = true;
		return MS_ENOTSUP;
	}
	/* The flag is one bit in a byte; anything else is not gRPC. */
	if (r->hdr[0] != 0)
		return MS_EPROTO;
	if ((uint64_t)n > (uint64_t)r->max_message)
		return MS_ETOOBIG;
	/* A zero-length message still gets a buffer, so that a NULL *msg
	 * always means "no message". */
	r->buf = malloc(n > 0 ? n : 1);
	if (r->buf == NULL)
		return MS_ENOMEM;
	r->need = n;
	r->have = 0;
	return 0;
}

/* take copies up to |want| bytes from data[*off..len) to |dst| and
 * advances *off; returns the count. Touches nothing when there is nothing
 * to copy (data may then be NULL). */
static size_t
take(uint8_t *dst, size_t want, const uint8_t *data, size_t len, size_t *off)
{
	size_t k = len - *off < want ? len - *off : want;

	if (k > 0) {
		memcpy(dst, data + *off, k);
		*off += k;
	}
	return k;
}

int
tp_grpc_reader_feed(struct tp_grpc_reader *r, const uint8_t *data, size_t len,
                    size_t *used, uint8_t **msg, size_t *msglen)
{
	size_t off = 0;
	int rc;

	assert(r != NULL && used != NULL && msg != NULL && msglen != NULL);
	assert(data != NULL || len == 0);
	*msg = NULL;
	*msglen = 0;

	/* One message per call at most: the caller loops on *used. */
	r->hdr_have += take(r->hdr + r->hdr_have,
	                    TP_GRPC_PREFIX_LEN - r->hdr_have, data, len, &off);
	if (r->hdr_have < TP_GRPC_PREFIX_LEN) {
		*used = off; /* all of data went into the prefix */
		return 0;
	}
	if (r->buf == NULL) {
		rc = start_body(r);
		if (rc < 0) {
			*used = off;
			return rc;
		}
	}
	r->have += take(r->buf + r->have, r->need - r->have, data, len, &off);
	*used = off;
	if (r->have < r->need)
		return 0; /* data exhausted mid-body */
	*msg = r->buf;
	*msglen = r->need;
	r->nmsgs++;
	reset(r);
	return 1;
}

bool
tp_grpc_reader_partial(const struct tp_grpc_reader *r)
{
	/* hdr_have drops back to 0 only when a message is handed out. */
	return r->hdr_have > 0;
}

/* ---- grpc-timeout ------------------------------------------------------- */

#define TIMEOUT_DIGITS 8
#define TIMEOUT_MAX    99999999LL /* the largest 8-digit value */
#define MS_PER_HOUR    3600000LL

/*
 * The largest value, 99999999H, is 3.6e14 ms: converting straight to
 * milliseconds cannot overflow int64 (going through nanoseconds would), so
 * no saturation is needed. The assertion keeps it that way.
 */
_Static_assert(TIMEOUT_MAX *MS_PER_HOUR < INT64_MAX / 1024,
               "grpc-timeout in ms fits int64 with room for now + timeout");

int
tp_grpc_timeout_parse(const char *s, size_t len, int64_t *ms)
{
	int64_t v = 0;
	size_t nd;

	assert(ms != NULL);
	/* 1..8 digits and one unit; no sign, no space, nothing else. */
	if (s == NULL || len < 2 || len - 1 > TIMEOUT_DIGITS)
		return MS_EINVAL;
	nd = len - 1;
	for (size_t i = 0; i < nd; i++) {
		if (s[i] < '0' || s[i] > '9')
			return MS_EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	switch (s[nd]) {
	case 'H':
		*ms = v * MS_PER_HOUR;
		break;
	case 'M':
		*ms = v * 60000;
		break;
	case 'S':
		*ms = v * 1000;
		break;
	case 'm':
		*ms = v;
		break;
	/* Sub-millisecond units round up: a 1 ns deadline is a real (if
	 * hopeless) deadline, not "already expired" and not "none". Only
	 * a zero value is zero. */
	case 'u':
		*ms = (v + 999) / 1000;
		break;
	case 'n':
		*ms = (v + 999999) / 1000000;
		break;
	default:
		return MS_EINVAL;
	}
	return 0;
}

/* ceil_div for non-negative a, positive b. */
static int64_t
ceil_div(int64_t a, int64_t b)
{
	return a / b + (a % b != 0);
}

char *
tp_grpc_timeout_format(int64_t ms, char out[16])
{
	/*
	 * Finest unit first, so the value is exact while it fits in 8 digits
	 * (up to ~27.7 hours in ms). Coarser units round up, never down: the
	 * peer's deadline then ends at most one unit after ours, so our own
	 * deadline (which the caller still enforces) always fires first and
	 * the server never gives up on a call we still wait for. Rounding
	 * down would make the server fail calls that had time left.
	 */
	static const struct {
		int64_t ms;
		char unit;
	} units[] = {{1, 'm'}, {1000, 'S'}, {60000, 'M'}, {MS_PER_HOUR, 'H'}};
	int64_t v = 0;
	char unit = 'H';

	assert(out != NULL);
	/* A deadline that has already passed: the caller should fail the
	 * call itself, but "0m" is the honest encoding if it asks. */
	if (ms <= 0) {
		memcpy(out, "0m", 3);
		return out;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		v = ceil_div(ms, units[i].ms);
		unit = units[i].unit;
		if (v <= TIMEOUT_MAX)
			break;
	}
	/* Beyond 11,000 years: saturate at the largest encodable value. */
	if (v > TIMEOUT_MAX)
		v = TIMEOUT_MAX;
	/* v is in [1, 99999999]: through uint32_t the compiler can see that
	 * it fits the 16 bytes. */
	snprintf(out, 16, "%" PRIu32 "%c", (uint32_t)v, unit);
	return out;
}

/* ---- grpc-message ------------------------------------------------------- */

static const char hexdig[] = "0123456789ABCDEF";

size_t
tp_grpc_percent_encode(const char *s, char *out, size_t outlen)
{
	size_t o = 0;

	assert(s != NULL && out != NULL);
	if (outlen == 0)
		return 0;
	/* Works on bytes: a UTF-8 character becomes one %XX per byte, which
	 * is what the grammar asks for (UTF-8 first, then percent). */
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p >= 0x20 && *p <= 0x7E && *p != '%') {
			if (o + 1 > outlen - 1)
				break;
			out[o++] = (char)*p;
		} else {
			if (o + 3 > outlen - 1)
				break; /* never half an escape */
			out[o++] = '%';
			out[o++] = hexdig[*p >> 4];
			out[o++] = hexdig[*p & 0xF];
		}
	}
	out[o] = '\0';
	return o;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

size_t
tp_grpc_percent_decode(const char *s, size_t len, char *out, size_t outlen)
{
	size_t o = 0;
	size_t i = 0;

	assert(s != NULL || len == 0);
	assert(out != NULL);
	if (outlen == 0)
		return 0;
	while (i < len && o < outlen - 1) {
		int hi, lo;

		/* A well-formed escape is '%' and two hex digits (either
		 * case); anything else, including "%4" at the end, is copied
		 * as it stands: decoders must never fail. */
		if (s[i] == '%' && len - i >= 3 &&
		    (hi = hexval(s[i + 1])) >= 0 &&
		    (lo = hexval(s[i + 2])) >= 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 3;
		} else {
			out[o++] = s[i++];
		}
	}
	out[o] = '\0';
	return o;
}

/* ---- status mapping ----------------------------------------------------- */

int
tp_grpc_status_parse(const char *s, size_t len, int *status)
{
	uint64_t v = 0;

	assert(status != NULL);
	/* Digits only (no sign, no space), at most 10 of them, so that the
	 * value fits 64 bits without checks. Leading zeros are tolerated:
	 * the grammar forbids sending them, but "05" has only one meaning. */
	if (s == NULL || len == 0 || len > 10)
		return MS_EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return MS_EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	/* A code from a newer gRPC than ours: statuscodes.md says UNKNOWN. */
	*status = v <= TP_GRPC_UNAUTHENTICATED ? (int)v : TP_GRPC_UNKNOWN;
	return 0;
}

int
tp_grpc_status_from_http(int http_status)
{
	/* doc/http-grpc-status-mapping.md. 1xx is not a final answer: the
	 * caller skips those header blocks and never asks; if it does, it
	 * gets UNKNOWN like any other unlisted code (200 included). */
	switch (http_status) {
	case 400:
		return TP_GRPC_INTERNAL;
	case 401:
		return TP_GRPC_UNAUTHENTICATED;
	case 403:
		return TP_GRPC_PERMISSION_DENIED;
	case 404:
		return TP_GRPC_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504:
		return TP_GRPC_UNAVAILABLE;
	case 431:
		return TP_GRPC_INTERNAL;
	default:
		return TP_GRPC_UNKNOWN;
	}
}

/* HTTP/2 error codes (RFC 9113 §7). */
enum {
	H2_NO_ERROR = 0x0,
	H2_PROTOCOL_ERROR = 0x1,
	H2_INTERNAL_ERROR = 0x2,
	H2_FLOW_CONTROL_ERROR = 0x3,
	H2_SETTINGS_TIMEOUT = 0x4,
	H2_STREAM_CLOSED = 0x5,
	H2_FRAME_SIZE_ERROR = 0x6,
	H2_REFUSED_STREAM = 0x7,
	H2_CANCEL = 0x8,
	H2_COMPRESSION_ERROR = 0x9,
	H2_CONNECT_ERROR = 0xa,
	H2_ENHANCE_YOUR_CALM = 0xb,
	H2_INADEQUATE_SECURITY = 0xc,
	H2_HTTP_1_1_REQUIRED = 0xd,
};

int
tp_grpc_status_from_rst(uint32_t error_code)
{
	switch (error_code) {
	case H2_REFUSED_STREAM:
		/* Not processed: the one code that is safe to retry. */
		return TP_GRPC_UNAVAILABLE;
	case H2_CANCEL:
		/* The client checks its own deadline first and reports
		 * DEADLINE_EXCEEDED if it passed (wire.md §1.7). */
		return TP_GRPC_CANCELLED;
	case H2_ENHANCE_YOUR_CALM:
		return TP_GRPC_RESOURCE_EXHAUSTED;
	case H2_INADEQUATE_SECURITY:
		return TP_GRPC_PERMISSION_DENIED;
	/*
	 * STREAM_CLOSED has no mapping in PROTOCOL-HTTP2.md ("log it"), but
	 * the call is over all the same and needs a status: INTERNAL, as for
	 * every other code the table does not name (HTTP_1_1_REQUIRED and
	 * codes from future RFCs included), which is what grpc-core does.
	 */
	case H2_NO_ERROR:
	case H2_PROTOCOL_ERROR:
	case H2_INTERNAL_ERROR:
	case H2_FLOW_CONTROL_ERROR:
	case H2_SETTINGS_TIMEOUT:
	case H2_STREAM_CLOSED:
	case H2_FRAME_SIZE_ERROR:
	case H2_COMPRESSION_ERROR:
	case H2_CONNECT_ERROR:
	case H2_HTTP_1_1_REQUIRED:
	default:
		return TP_GRPC_INTERNAL;
	}
}

static const char *const status_names[] = {
    [TP_GRPC_OK] = "OK",
    [TP_GRPC_CANCELLED] = "CANCELLED",
    [TP_GRPC_UNKNOWN] = "UNKNOWN",
    [TP_GRPC_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
    [TP_GRPC_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
    [TP_GRPC_NOT_FOUND] = "NOT_FOUND",
    [TP_GRPC_ALREADY_EXISTS] = "ALREADY_EXISTS",
    [TP_GRPC_PERMISSION_DENIED] = "PERMISSION_DENIED",
    [TP_GRPC_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
    [TP_GRPC_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
    [TP_GRPC_ABORTED] = "ABORTED",
    [TP_GRPC_OUT_OF_RANGE] = "OUT_OF_RANGE",
    [TP_GRPC_UNIMPLEMENTED] = "UNIMPLEMENTED",
    [TP_GRPC_INTERNAL] = "INTERNAL",
    [TP_GRPC_UNAVAILABLE] = "UNAVAILABLE",
    [TP_GRPC_DATA_LOSS] = "DATA_LOSS",
    [TP_GRPC_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

const char *
tp_grpc_status_name(int status)
{
	if (status < 0 ||
	    (size_t)status >= sizeof(status_names) / sizeof(status_names[0]))
		return "UNKNOWN";
	return status_names[status];
}

/* ---- requests ----------------------------------------------------------- */

bool
tp_grpc_content_type_ok(const char *s, size_t len)
{
	static const char want[] = "application/grpc";
	const size_t n = sizeof(want) - 1;

	if (s == NULL || len < n)
		return false;
	/* Media type names are case-insensitive (RFC 9110 §8.3.1), so
	 * "Application/gRPC" is gRPC too; the suffix after '+' or ';' is not
	 * ours to judge here. */
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != want[i])
			return false;
	}
	return len == n || s[n] == '+' || s[n] == ';';
}

int
tp_grpc_path_split(const char *path, size_t len, char *service,
                   size_t service_len, char *method, size_t method_len)
{
	const char *slash;
	size_t slen, mlen;

	assert(service != NULL && method != NULL);
	if (path == NULL || len < 4 || path[0] != '/')
		return MS_EINVAL;
	slash = memchr(path + 1, '/', len - 1);
	if (slash == NULL)
		return MS_EINVAL;
	slen = (size_t)(slash - (path + 1));
	mlen = len - slen - 2;
	if (slen == 0 || mlen == 0)
		return MS_EINVAL;
	/* "/a/b/c" is not a gRPC path, and a NUL would cut the names short. */
	if (memchr(slash + 1, '/', mlen) != NULL ||
	    memchr(path, '\0', len) != NULL)
		return MS_EINVAL;
	if (slen >= service_len || mlen >= method_len)
		return MS_EINVAL;
	memcpy(service, path + 1, slen);
	service[slen] = '\0';
	memcpy(method, slash + 1, mlen);
	method[mlen] = '\0';
	return 0;
}

int
tp_grpc_pushback_parse(const char *s, size_t len, int64_t *ms)
{
	int64_t v = 0;

	assert(ms != NULL);
	/* A.6: ASCII decimal int32, no leading zeros; negative means "do not
	 * retry", and so does anything we cannot read. At most 10 digits
	 * keeps v far from int64 overflow before the range check. */
	if (s == NULL || len == 0 || len > 10)
		return MS_EINVAL;
	if (s[0] == '0' && len > 1)
		return MS_EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return MS_EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	if (v > INT32_MAX)
		return MS_EINVAL;
	*ms = v;
	return 0;
}
