/* SPDX-License-Identifier: MIT */
/*
 * The nng transport's message header (see wire.h for the layout): a
 * bounded writer and a reader that checks every length against what is
 * left of the buffer before it reads.
 *
 * Threads: pure functions; callable from any thread.
 */
#include "transport/nng/wire.h"

#include <stdbool.h>
#include <string.h>

#include "core/err.h"

static const uint8_t magic[2] = {'m', 's'};

/* The longest header: a CALL with every string at its bound. */
_Static_assert(4 + 4 + 2 * (2 + TP_NNG_NAME_MAX) + 2 + TP_NNG_TRACE_MAX <=
                   TP_NNG_WIRE_HDR_MAX,
               "TP_NNG_WIRE_HDR_MAX is too small for a CALL header");

/* ---- writing ----------------------------------------------------------- */

struct writer {
	uint8_t *p;
	size_t cap;
	size_t n;
	int rc; /* first error: later puts do nothing */
};

static void
put(struct writer *w, const void *data, size_t n)
{
	if (w->rc != 0) {
		return;
	}
	if (n > w->cap - w->n) {
		w->rc = MS_ETOOBIG;
		return;
	}
	if (n > 0) {
		memcpy(w->p + w->n, data, n);
	}
	w->n += n;
}

static void
put_u8(struct writer *w, uint8_t v)
{
	put(w, &v, 1);
}

static void
put_u16(struct writer *w, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};

	put(w, b, sizeof(b));
}

static void
put_u32(struct writer *w, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16),
	                (uint8_t)(v >> 8), (uint8_t)v};

	put(w, b, sizeof(b));
}

static void
put_u64(struct writer *w, uint64_t v)
{
	put_u32(w, (uint32_t)(v >> 32));
	put_u32(w, (uint32_t)v);
}

/* put_str writes |s| as u16 length + bytes. A string over |max| (or empty
 * when |required|) is the caller's mistake in a field it filled: EINVAL. */
static void
put_str(struct writer *w, const char *s, size_t max, bool required)
{
	size_t n = strnlen(s, max + 1);

	if (w->rc != 0) {
		return;
	}
	if (n > max || (required && n == 0)) {
		w->rc = MS_EINVAL;
		return;
	}
	put_u16(w, (uint16_t)n);
	put(w, s, n);
}

/* The wire name of |status|: "" for success, the code's name, or EINTERNAL
 * for anything that is not one of our codes (a -errno from deep down). */
static const char *
status_name(int status)
{
	if (status == 0) {
		return "";
	}
	if (status >= MS_ERR_BASE_ || status <= MS_ERR_END_) {
		return ms_errname(MS_EINTERNAL);
	}
	return ms_errname(status);
}

int
tp_nng_wire_encode(const struct tp_nng_hdr *h, uint8_t *buf, size_t cap,
                   size_t *len)
{
	struct writer w = {buf, cap, 0, 0};

	*len = 0;
	put(&w, magic, sizeof(magic));
	put_u8(&w, TP_NNG_WIRE_VERSION);
	put_u8(&w, (uint8_t)h->kind);
	switch (h->kind) {
	case TP_NNG_CALL:
		put_u32(&w, h->timeout_ms);
		put_str(&w, h->service, TP_NNG_NAME_MAX, true);
		put_str(&w, h->method, TP_NNG_NAME_MAX, true);
		put_str(&w, h->traceparent, TP_NNG_TRACE_MAX, false);
		break;
	case TP_NNG_EVENT:
		put_u32(&w, h->timeout_ms);
		put_str(&w, h->id, TP_NNG_ID_MAX, true);
		put_str(&w, h->type, TP_NNG_NAME_MAX, true);
		put_str(&w, h->traceparent, TP_NNG_TRACE_MAX, false);
		put_u64(&w, (uint64_t)h->occurred_ms);
		put_u32(&w, h->attempt);
		break;
	case TP_NNG_REPLY:
	case TP_NNG_ACK:
		put_str(&w, status_name(h->status), TP_NNG_STATUS_MAX, false);
		put_str(&w, h->detail, TP_NNG_DETAIL_MAX, false);
		break;
	default:
		return MS_EINVAL;
	}
	if (w.rc == 0) {
		*len = w.n;
	}
	return w.rc;
}

/* ---- reading ----------------------------------------------------------- */

struct reader {
	const uint8_t *p;
	size_t len;
	size_t off;
	int rc; /* first error: later gets return zeros */
};

static const uint8_t *
get(struct reader *r, size_t n)
{
	const uint8_t *p;

	if (r->rc != 0) {
		return NULL;
	}
	if (n > r->len - r->off) {
		r->rc = MS_EPROTO; /* truncated, or a length that lies */
		return NULL;
	}
	p = r->p + r->off;
	r->off += n;
	return p;
}

static uint8_t
get_u8(struct reader *r)
{
	const uint8_t *p = get(r, 1);

	return p ? p[0] : 0;
}

static uint16_t
get_u16(struct reader *r)
{
	const uint8_t *p = get(r, 2);

	return p ? (uint16_t)((p[0] << 8) | p[1]) : 0;
}

static uint32_t
get_u32(struct reader *r)
{
	const uint8_t *p = get(r, 4);

	return p ? ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	               ((uint32_t)p[2] << 8) | p[3]
	         : 0;
}

static uint64_t
get_u64(struct reader *r)
{
	uint64_t hi = get_u32(r);

	return (hi << 32) | get_u32(r);
}

/* get_str copies a u16-length string into |out| (|max| + 1 bytes). The
 * length is checked against |max| before anything is read, so a lying
 * length can neither overrun |out| nor make us read past the buffer. */
static void
get_str(struct reader *r, char *out, size_t max, bool required)
{
	uint16_t n = get_u16(r);
	const uint8_t *p;

	out[0] = '\0';
	if (r->rc != 0) {
		return;
	}
	if (n > max || (required && n == 0)) {
		r->rc = MS_EPROTO;
		return;
	}
	if ((p = get(r, n)) == NULL) {
		return;
	}
	if (memchr(p, '\0', n) != NULL) {
		r->rc = MS_EPROTO;
		return;
	}
	memcpy(out, p, n);
	out[n] = '\0';
}

/* The code named |name| ("" = success); a name we do not know (a newer
 * peer's code) is MS_EINTERNAL: the operation failed, whatever it was. */
static int
status_code(const char *name)
{
	if (name[0] == '\0') {
		return 0;
	}
	for (int rc = MS_ERR_BASE_ - 1; rc > MS_ERR_END_; rc--) {
		if (strcmp(ms_errname(rc), name) == 0) {
			return rc;
		}
	}
	return MS_EINTERNAL;
}

int
tp_nng_wire_decode(const uint8_t *buf, size_t len, struct tp_nng_hdr *h,
                   size_t *hdr_len)
{
	struct reader r = {buf, len, 0, 0};
	const uint8_t *m;
	char status[TP_NNG_STATUS_MAX + 1];
	uint8_t version;

	memset(h, 0, sizeof(*h));
	*hdr_len = 0;
	m = get(&r, sizeof(magic));
	if (m == NULL || memcmp(m, magic, sizeof(magic)) != 0) {
		return MS_EPROTO;
	}
	version = get_u8(&r);
	h->kind = (enum tp_nng_kind)get_u8(&r);
	if (r.rc != 0) {
		h->kind = 0;
		return r.rc;
	}
	if (version != TP_NNG_WIRE_VERSION) {
		h->kind = 0;
		return MS_ENOTSUP;
	}
	switch (h->kind) {
	case TP_NNG_CALL:
		h->timeout_ms = get_u32(&r);
		get_str(&r, h->service, TP_NNG_NAME_MAX, true);
		get_str(&r, h->method, TP_NNG_NAME_MAX, true);
		get_str(&r, h->traceparent, TP_NNG_TRACE_MAX, false);
		break;
	case TP_NNG_EVENT:
		h->timeout_ms = get_u32(&r);
		get_str(&r, h->id, TP_NNG_ID_MAX, true);
		get_str(&r, h->type, TP_NNG_NAME_MAX, true);
		get_str(&r, h->traceparent, TP_NNG_TRACE_MAX, false);
		h->occurred_ms = (int64_t)get_u64(&r);
		h->attempt = get_u32(&r);
		break;
	case TP_NNG_REPLY:
	case TP_NNG_ACK:
		get_str(&r, status, TP_NNG_STATUS_MAX, false);
		get_str(&r, h->detail, TP_NNG_DETAIL_MAX, false);
		if (r.rc == 0) {
			h->status = status_code(status);
		}
		break;
	default:
		r.rc = MS_EPROTO;
		break;
	}
	if (r.rc != 0) {
		memset(h, 0, sizeof(*h));
		return r.rc;
	}
	*hdr_len = r.off;
	return 0;
}

const char *
tp_nng_kind_name(int kind)
{
	switch (kind) {
	case TP_NNG_CALL:
		return "call";
	case TP_NNG_REPLY:
		return "reply";
	case TP_NNG_EVENT:
		return "event";
	case TP_NNG_ACK:
		return "ack";
	default:
		return "unknown";
	}
}
