/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: an nng request as a peer's message brings it: the
 * header (tp_nng_wire_decode, src/transport/nng/wire.h), then what the
 * listener (nng.c: serve) does with it, with the real modules behind the
 * bus (fuzz_env.h): a CALL's payload to bus_dispatch, an EVENT's to
 * bus_deliver.
 *
 * Oracles, beyond the sanitizers: the answer is 0, MS_ENOTSUP or MS_EPROTO;
 * a decoded header is no longer than the message, its strings fit their
 * bounds, and encoding it again gives a header that decodes to the same
 * fields (a round trip through tp_nng_wire_encode); no call or event is a
 * server error (500); an event type the peer made up never becomes a
 * metric label.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "fuzz_env.h"
#include "transport/nng/wire.h"
#include "transport/transport.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_quiet();
	fz_env_tick();
	return 0;
}

/* nng.c's serve(), without the socket: the request's payload to the bus. */
static void
serve(const struct tp_nng_hdr *h, const uint8_t *body, size_t len)
{
	static const char *const types[] = {
	    "monoshop.events.BasketCheckoutEvent",
	    "unknown",
	    NULL,
	};
	struct fz_env *e = fz_env_tick();
	char detail[256];
	uint8_t *reply = NULL;
	size_t reply_len = 0;

	if (h->kind == TP_NNG_CALL) {
		fz_check_rc(
		    bus_dispatch(e->bus, h->service, h->method, body, len, 0,
		                 h->traceparent[0] ? h->traceparent : NULL,
		                 &reply, &reply_len, detail, sizeof(detail)),
		    "an nng call");
		free(reply);
	} else if (h->kind == TP_NNG_EVENT) {
		struct bus_event ev;

		memset(&ev, 0, sizeof(ev));
		memcpy(ev.id, h->id, sizeof(ev.id) - 1);
		ev.type = h->type;
		ev.payload = body;
		ev.len = len;
		ev.traceparent = h->traceparent[0] ? h->traceparent : NULL;
		ev.occurred_ms = h->occurred_ms;
		ev.attempt = h->attempt;
		fz_check_rc(bus_deliver(e->bus, &ev), "an nng event");
		fz_check_metric_label("monoshop_events_consumed_total", "type",
		                      types);
	}
}

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
	serve(&h, data + hlen, size - hlen);
	return 0;
}
