/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the nng transport's message header as a peer's message
 * brings it (tp_nng_wire_decode, src/transport/nng/wire.h).
 *
 * Oracles, beyond the sanitizers: the answer is 0, MS_ENOTSUP or MS_EPROTO;
 * a decoded header is no longer than the message, its strings fit their
 * bounds, and encoding it again gives a header that decodes to the same
 * fields (a round trip through tp_nng_wire_encode).
 */
#include <stdint.h>
#include <string.h>

#include "core/err.h"
#include "fuzz_env.h"
#include "transport/nng/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_str(const char *s, size_t max, const char *what)
{
	if (memchr(s, '\0', max + 1) == NULL) {
		fz_fail("decoded %s is not terminated", what);
	}
}

static void
same(const struct tp_nng_hdr *a, const struct tp_nng_hdr *b)
{
	if (a->kind != b->kind || a->timeout_ms != b->timeout_ms ||
	    strcmp(a->service, b->service) != 0 ||
	    strcmp(a->method, b->method) != 0 || strcmp(a->id, b->id) != 0 ||
	    strcmp(a->type, b->type) != 0 ||
	    strcmp(a->traceparent, b->traceparent) != 0 ||
	    a->occurred_ms != b->occurred_ms || a->attempt != b->attempt ||
	    a->status != b->status || strcmp(a->detail, b->detail) != 0) {
		fz_fail("a %s header does not survive encode/decode",
		        tp_nng_kind_name(a->kind));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tp_nng_hdr h, h2;
	uint8_t buf[TP_NNG_WIRE_HDR_MAX];
	size_t hlen, len, hlen2;
	int rc;

	rc = tp_nng_wire_decode(data, size, &h, &hlen);
	if (rc == MS_ENOTSUP || rc == MS_EPROTO) {
		return 0;
	}
	if (rc != 0) {
		fz_fail("tp_nng_wire_decode: unexpected %s", ms_errname(rc));
	}
	if (hlen > size || hlen > TP_NNG_WIRE_HDR_MAX) {
		fz_fail("header of %zu bytes in a message of %zu", hlen, size);
	}
	check_str(h.service, TP_NNG_NAME_MAX, "service");
	check_str(h.method, TP_NNG_NAME_MAX, "method");
	check_str(h.id, TP_NNG_ID_MAX, "id");
	check_str(h.type, TP_NNG_NAME_MAX, "type");
	check_str(h.traceparent, TP_NNG_TRACE_MAX, "traceparent");
	check_str(h.detail, TP_NNG_DETAIL_MAX, "detail");
	rc = tp_nng_wire_encode(&h, buf, sizeof(buf), &len);
	if (rc != 0) {
		fz_fail("a decoded %s header does not encode: %s",
		        tp_nng_kind_name(h.kind), ms_errname(rc));
	}
	rc = tp_nng_wire_decode(buf, len, &h2, &hlen2);
	if (rc != 0 || hlen2 != len) {
		fz_fail("our own %s header does not decode: %s",
		        tp_nng_kind_name(h.kind), ms_errname(rc));
	}
	same(&h, &h2);
	return 0;
}
