/* SPDX-License-Identifier: MIT */
/*
 * Tests of the nng transport's message header (src/transport/nng/wire.c):
 * round trips of every kind with empty and maximal fields, the exact bytes
 * of one header, the bounds of the encoder, and a decoder fed every
 * truncation, lying lengths, NULs in strings, wrong magic, another version
 * and unknown kinds. Inputs are exact-size heap copies so that valgrind and
 * ASan catch any read past |len|.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "transport/nng/wire.h"

/* ---- helpers ------------------------------------------------------------ */

/* decode_copy decodes |len| bytes of |buf| from an exact-size heap copy. */
static int
decode_copy(const uint8_t *buf, size_t len, struct tp_nng_hdr *h, size_t *hl)
{
	uint8_t *copy = malloc(len ? len : 1);
	int rc;

	ck_assert_ptr_nonnull(copy);
	if (len > 0) {
		memcpy(copy, buf, len);
	}
	rc = tp_nng_wire_decode(copy, len, h, hl);
	free(copy);
	return rc;
}

static void
fill(char *s, size_t n, char c)
{
	memset(s, c, n);
	s[n] = '\0';
}

static struct tp_nng_hdr
call_hdr(void)
{
	struct tp_nng_hdr h;

	memset(&h, 0, sizeof(h));
	h.kind = TP_NNG_CALL;
	h.timeout_ms = 1500;
	strcpy(h.service, "discount.DiscountProtoService");
	strcpy(h.method, "GetDiscount");
	strcpy(h.traceparent,
	       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
	return h;
}

static struct tp_nng_hdr
event_hdr(void)
{
	struct tp_nng_hdr h;

	memset(&h, 0, sizeof(h));
	h.kind = TP_NNG_EVENT;
	h.timeout_ms = 5000;
	strcpy(h.id, "6f1c1f86-6ad3-4c57-9a3e-6f0f5c1e2a11");
	strcpy(h.type, "monoshop.events.BasketCheckoutEvent");
	h.occurred_ms = 1700000000123LL;
	h.attempt = 3;
	return h;
}

/* encode_ok encodes |h| followed by |payload| into |buf| and returns the
 * whole length; *hl gets the header's. */
static size_t
encode_ok(const struct tp_nng_hdr *h, const char *payload, uint8_t *buf,
          size_t cap, size_t *hl)
{
	size_t plen = payload ? strlen(payload) : 0;

	ck_assert_int_eq(tp_nng_wire_encode(h, buf, cap, hl), 0);
	ck_assert_uint_gt(*hl, 0);
	ck_assert_uint_le(*hl, TP_NNG_WIRE_HDR_MAX);
	ck_assert_uint_le(*hl + plen, cap);
	if (plen > 0) {
		memcpy(buf + *hl, payload, plen);
	}
	return *hl + plen;
}

static void
assert_same(const struct tp_nng_hdr *a, const struct tp_nng_hdr *b)
{
	ck_assert_int_eq(a->kind, b->kind);
	ck_assert_uint_eq(a->timeout_ms, b->timeout_ms);
	ck_assert_str_eq(a->service, b->service);
	ck_assert_str_eq(a->method, b->method);
	ck_assert_str_eq(a->id, b->id);
	ck_assert_str_eq(a->type, b->type);
	ck_assert_str_eq(a->traceparent, b->traceparent);
	ck_assert(a->occurred_ms == b->occurred_ms);
	ck_assert_uint_eq(a->attempt, b->attempt);
	ck_assert_int_eq(a->status, b->status);
	ck_assert_str_eq(a->detail, b->detail);
}

/* ---- round trips -------------------------------------------------------- */

START_TEST(call_round_trip)
{
	struct tp_nng_hdr h = call_hdr(), d;
	uint8_t buf[2048];
	size_t hl, dl;
	size_t n = encode_ok(&h, "\x0a\x08IPhone X", buf, sizeof(buf), &hl);

	ck_assert_int_eq(decode_copy(buf, n, &d, &dl), 0);
	ck_assert_uint_eq(dl, hl);
	assert_same(&h, &d);
	ck_assert_uint_eq(n - dl, 10);
	ck_assert_mem_eq(buf + dl, "\x0a\x08IPhone X", 10);
}
END_TEST

START_TEST(call_without_trace_or_payload)
{
	struct tp_nng_hdr h = call_hdr(), d;
	uint8_t buf[2048];
	size_t hl, dl, n;

	h.traceparent[0] = '\0';
	h.timeout_ms = 0;
	n = encode_ok(&h, NULL, buf, sizeof(buf), &hl);
	ck_assert_int_eq(decode_copy(buf, n, &d, &dl), 0);
	assert_same(&h, &d);
	ck_assert_uint_eq(dl, n); /* an empty request message is fine */
}
END_TEST

START_TEST(event_round_trip)
{
	struct tp_nng_hdr h = event_hdr(), d;
	uint8_t buf[2048];
	size_t hl, dl, n;

	n = encode_ok(&h, "payload", buf, sizeof(buf), &hl);
	ck_assert_int_eq(decode_copy(buf, n, &d, &dl), 0);
	assert_same(&h, &d);
	ck_assert_uint_eq(n - dl, 7);

	/* Negative and extreme integers survive too. */
	h.occurred_ms = -1;
	h.attempt = UINT32_MAX;
	h.timeout_ms = UINT32_MAX;
	n = encode_ok(&h, NULL, buf, sizeof(buf), &hl);
	ck_assert_int_eq(decode_copy(buf, n, &d, &dl), 0);
	assert_same(&h, &d);
}
END_TEST

START_TEST(reply_and_ack_round_trip)
{
	static const int codes[] = {
	    0,          MS_EINVAL,   MS_ENOTFOUND, MS_ETIMEDOUT,
	    MS_ETOOBIG, MS_EUNAVAIL, MS_EINTERNAL};
	uint8_t buf[2048];

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		for (int k = TP_NNG_REPLY; k <= TP_NNG_ACK; k += 2) {
			struct tp_nng_hdr h, d;
			size_t hl, dl, n;

			memset(&h, 0, sizeof(h));
			h.kind = (enum tp_nng_kind)k;
			h.status = codes[i];
			if (codes[i] != 0) {
				snprintf(h.detail, sizeof(h.detail),
				         "failed: %s \xc2\xab%%\xc2\xbb\n",
				         ms_strerror(codes[i]));
			}
			n = encode_ok(&h, "r", buf, sizeof(buf), &hl);
			ck_assert_int_eq(decode_copy(buf, n, &d, &dl), 0);
			assert_same(&h, &d);
			ck_assert_uint_eq(n - dl, 1);
		}
	}
}
END_TEST

START_TEST(maximal_fields)
{
	struct tp_nng_hdr h = call_hdr(), d;
	uint8_t buf[TP_NNG_WIRE_HDR_MAX];
	size_t hl, dl;

	fill(h.service, TP_NNG_NAME_MAX, 's');
	fill(h.method, TP_NNG_NAME_MAX, 'm');
	fill(h.traceparent, TP_NNG_TRACE_MAX, 't');
	/* TP_NNG_WIRE_HDR_MAX is enough for the longest header. */
	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &hl), 0);
	ck_assert_int_eq(decode_copy(buf, hl, &d, &dl), 0);
	assert_same(&h, &d);

	h = event_hdr();
	fill(h.type, TP_NNG_NAME_MAX, 'e');
	fill(h.traceparent, TP_NNG_TRACE_MAX, 't');
	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &hl), 0);
	ck_assert_int_eq(decode_copy(buf, hl, &d, &dl), 0);
	assert_same(&h, &d);

	memset(&h, 0, sizeof(h));
	h.kind = TP_NNG_REPLY;
	h.status = MS_EVALIDATION;
	fill(h.detail, TP_NNG_DETAIL_MAX, 'd');
	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &hl), 0);
	ck_assert_int_eq(decode_copy(buf, hl, &d, &dl), 0);
	assert_same(&h, &d);
}
END_TEST

/* The layout of wire.h, byte for byte, for one small reply. */
START_TEST(exact_bytes)
{
	static const uint8_t want[] = {
	    'm', 's', 1,   2, /* v1 REPLY */
	    0,   9,   'E', 'N', 'O', 'T', 'F', 'O', 'U', 'N', 'D', /* status */
	    0,   2,   'n', 'o',                                    /* detail */
	};
	struct tp_nng_hdr h;
	uint8_t buf[64];
	size_t hl;

	memset(&h, 0, sizeof(h));
	h.kind = TP_NNG_REPLY;
	h.status = MS_ENOTFOUND;
	strcpy(h.detail, "no");
	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &hl), 0);
	ck_assert_uint_eq(hl, sizeof(want));
	ck_assert_mem_eq(buf, want, sizeof(want));
}
END_TEST

/* A status that is not one of ours goes out as EINTERNAL; a name we do
 * not know (a newer peer's) comes in as MS_EINTERNAL. */
START_TEST(foreign_status)
{
	static const uint8_t future[] = {'m', 's', 1,   4,   0, 6, 'E', 'F',
	                                 'U', 'T', 'U', 'R', 0, 1, 'x'};
	struct tp_nng_hdr h, d;
	uint8_t buf[64];
	size_t hl, dl;

	memset(&h, 0, sizeof(h));
	h.kind = TP_NNG_ACK;
	h.status = -22; /* -EINVAL, not an MS_E* code */
	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &hl), 0);
	ck_assert_int_eq(decode_copy(buf, hl, &d, &dl), 0);
	ck_assert_int_eq(d.status, MS_EINTERNAL);

	ck_assert_int_eq(decode_copy(future, sizeof(future), &d, &dl), 0);
	ck_assert_int_eq(d.kind, TP_NNG_ACK);
	ck_assert_int_eq(d.status, MS_EINTERNAL);
	ck_assert_str_eq(d.detail, "x");
}
END_TEST

/* ---- the encoder's bounds ------------------------------------------------ */

START_TEST(encode_rejects_bad_fields)
{
	struct tp_nng_hdr h;
	uint8_t buf[TP_NNG_WIRE_HDR_MAX];
	size_t hl = 99;

	h = call_hdr();
	h.service[0] = '\0';
	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &hl),
	                 MS_EINVAL);
	ck_assert_uint_eq(hl, 0);
	h = call_hdr();
	h.method[0] = '\0';
	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &hl),
	                 MS_EINVAL);
	h = event_hdr();
	h.id[0] = '\0';
	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &hl),
	                 MS_EINVAL);
	h = event_hdr();
	h.type[0] = '\0';
	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &hl),
	                 MS_EINVAL);
	h = call_hdr();
	h.kind = (enum tp_nng_kind)9;
	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &hl),
	                 MS_EINVAL);
	h = call_hdr();
	h.kind = (enum tp_nng_kind)0;
	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &hl),
	                 MS_EINVAL);
}
END_TEST

START_TEST(encode_too_small)
{
	struct tp_nng_hdr h = call_hdr();
	uint8_t buf[TP_NNG_WIRE_HDR_MAX];
	size_t full, hl;

	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &full), 0);
	for (size_t cap = 0; cap < full; cap++) {
		ck_assert_int_eq(tp_nng_wire_encode(&h, buf, cap, &hl),
		                 MS_ETOOBIG);
		ck_assert_uint_eq(hl, 0);
	}
	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, full, &hl), 0);
	ck_assert_uint_eq(hl, full);
}
END_TEST

/* ---- the decoder trusts nothing ------------------------------------------ */

/* Every proper prefix of a header is refused as MS_EPROTO. */
START_TEST(truncated)
{
	struct tp_nng_hdr hs[3] = {call_hdr(), event_hdr()};
	uint8_t buf[TP_NNG_WIRE_HDR_MAX];

	memset(&hs[2], 0, sizeof(hs[2]));
	hs[2].kind = TP_NNG_REPLY;
	hs[2].status = MS_EUNAVAIL;
	strcpy(hs[2].detail, "down");
	for (int i = 0; i < 3; i++) {
		struct tp_nng_hdr d;
		size_t hl, dl;

		ck_assert_int_eq(
		    tp_nng_wire_encode(&hs[i], buf, sizeof(buf), &hl), 0);
		for (size_t n = 0; n < hl; n++) {
			dl = 99;
			ck_assert_int_eq(decode_copy(buf, n, &d, &dl),
			                 MS_EPROTO);
			ck_assert_uint_eq(dl, 0);
			ck_assert_int_eq(d.kind, 0);
		}
		ck_assert_int_eq(decode_copy(buf, hl, &d, &dl), 0);
	}
}
END_TEST

/* A string length that runs past the end, or over its field's bound
 * while the bytes are there, is refused before anything is copied. */
START_TEST(lying_lengths)
{
	struct tp_nng_hdr h = call_hdr(), d;
	uint8_t buf[4096];
	size_t hl, dl;
	size_t svc_len_at = 8; /* magic, version, kind, timeout */

	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &hl), 0);

	/* Longer than the message. */
	buf[svc_len_at] = 0xff;
	buf[svc_len_at + 1] = 0xff;
	ck_assert_int_eq(decode_copy(buf, hl, &d, &dl), MS_EPROTO);

	/* Over the bound, with that many bytes really there. */
	memset(buf + svc_len_at + 2, 'x', 1000);
	buf[svc_len_at] = (TP_NNG_NAME_MAX + 1) >> 8;
	buf[svc_len_at + 1] = (TP_NNG_NAME_MAX + 1) & 0xff;
	ck_assert_int_eq(decode_copy(buf, svc_len_at + 2 + 1000, &d, &dl),
	                 MS_EPROTO);

	/* A required string of length 0. */
	buf[svc_len_at] = 0;
	buf[svc_len_at + 1] = 0;
	ck_assert_int_eq(decode_copy(buf, svc_len_at + 2 + 1000, &d, &dl),
	                 MS_EPROTO);
}
END_TEST

START_TEST(nul_in_string)
{
	struct tp_nng_hdr h = call_hdr(), d;
	uint8_t buf[2048];
	size_t hl, dl;

	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &hl), 0);
	buf[8 + 2 + 3] = '\0'; /* inside the service name */
	ck_assert_int_eq(decode_copy(buf, hl, &d, &dl), MS_EPROTO);
	ck_assert_str_eq(d.service, "");
}
END_TEST

START_TEST(bad_magic_version_kind)
{
	struct tp_nng_hdr h = event_hdr(), d;
	uint8_t buf[2048];
	size_t hl, dl;

	ck_assert_int_eq(tp_nng_wire_encode(&h, buf, sizeof(buf), &hl), 0);

	buf[0] = 'M';
	ck_assert_int_eq(decode_copy(buf, hl, &d, &dl), MS_EPROTO);
	buf[0] = 'm';

	buf[2] = TP_NNG_WIRE_VERSION + 1;
	ck_assert_int_eq(decode_copy(buf, hl, &d, &dl), MS_ENOTSUP);
	ck_assert_int_eq(d.kind, 0);
	buf[2] = 0;
	ck_assert_int_eq(decode_copy(buf, hl, &d, &dl), MS_ENOTSUP);
	/* Another version is told apart even when nothing else follows. */
	buf[2] = 7;
	ck_assert_int_eq(decode_copy(buf, 4, &d, &dl), MS_ENOTSUP);
	buf[2] = TP_NNG_WIRE_VERSION;

	for (int k = 0; k < 256; k++) {
		int want = k >= TP_NNG_CALL && k <= TP_NNG_ACK ? 0 : MS_EPROTO;
		int rc;

		buf[3] = (uint8_t)k;
		rc = decode_copy(buf, hl, &d, &dl);
		if (want != 0) {
			ck_assert_int_eq(rc, want);
		}
	}
	buf[3] = TP_NNG_EVENT;
	ck_assert_int_eq(decode_copy(buf, hl, &d, &dl), 0);
	ck_assert_str_eq(tp_nng_kind_name(TP_NNG_EVENT), "event");
	ck_assert_str_eq(tp_nng_kind_name(42), "unknown");
}
END_TEST

/* Random bytes never crash the decoder, and what it accepts re-encodes to
 * the same header bytes. */
START_TEST(random_bytes)
{
	uint32_t x = 2463534242u;
	uint8_t buf[512];
	uint8_t again[TP_NNG_WIRE_HDR_MAX];

	for (int round = 0; round < 20000; round++) {
		struct tp_nng_hdr d;
		size_t n, dl, hl;

		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		n = x % sizeof(buf);
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			/* Mostly small bytes: lengths that fit happen. */
			buf[i] = (uint8_t)(x % 7 == 0 ? x >> 8 : x % 40);
		}
		if (n >= 4) {
			buf[0] = 'm';
			buf[1] = 's';
			buf[2] = TP_NNG_WIRE_VERSION;
			buf[3] = (uint8_t)(1 + x % 4);
		}
		if (decode_copy(buf, n, &d, &dl) != 0 ||
		    d.kind == TP_NNG_REPLY || d.kind == TP_NNG_ACK) {
			/* (a status name maps many names to EINTERNAL) */
			continue;
		}
		ck_assert_uint_le(dl, n);
		ck_assert_int_eq(
		    tp_nng_wire_encode(&d, again, sizeof(again), &hl), 0);
		ck_assert_uint_eq(hl, dl);
		ck_assert_mem_eq(again, buf, hl);
	}
}
END_TEST

static Suite *
wire_suite(void)
{
	Suite *s = suite_create("nng_wire");
	TCase *rt = tcase_create("round_trip");
	TCase *en = tcase_create("encode");
	TCase *de = tcase_create("decode");

	tcase_add_test(rt, call_round_trip);
	tcase_add_test(rt, call_without_trace_or_payload);
	tcase_add_test(rt, event_round_trip);
	tcase_add_test(rt, reply_and_ack_round_trip);
	tcase_add_test(rt, maximal_fields);
	tcase_add_test(rt, exact_bytes);
	tcase_add_test(rt, foreign_status);
	suite_add_tcase(s, rt);

	tcase_add_test(en, encode_rejects_bad_fields);
	tcase_add_test(en, encode_too_small);
	suite_add_tcase(s, en);

	tcase_add_test(de, truncated);
	tcase_add_test(de, lying_lengths);
	tcase_add_test(de, nul_in_string);
	tcase_add_test(de, bad_magic_version_kind);
	tcase_add_test(de, random_bytes);
	suite_add_tcase(s, de);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(wire_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
