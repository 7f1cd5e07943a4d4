/* SPDX-License-Identifier: MIT */
/*
 * The nng transport's message header, as pure functions over buffers (no
 * sockets, no nng): every nng message monoshop sends is this header
 * followed by the payload (packed protobuf), so one req/rep exchange
 * carries either a call and its reply or an event and its acknowledgement.
 *
 * Layout (integers big-endian, strings as a u16 length then the bytes,
 * never NUL-terminated on the wire):
 *
 *   'm' 's'  version(u8)  kind(u8)
 *   CALL   timeout_ms(u32) service method traceparent
 *   EVENT  timeout_ms(u32) id type traceparent occurred_ms(i64) attempt(u32)
 *   REPLY  status detail
 *   ACK    status detail
 *
 * then the payload, to the end of the message (a REPLY's payload is the
 * packed reply when status is 0, empty otherwise; an ACK has none).
 *
 * timeout_ms is what is left of the sender's deadline when it sends (0 =
 * none): a relative time needs no shared clock. status travels as the
 * code's name ("ETIMEDOUT", "" for success) rather than its number, so
 * renumbering err.h never changes the meaning of a message between two
 * builds; a name this build does not know decodes as MS_EINTERNAL (the
 * call failed; the detail still says why).
 *
 * The decoder trusts nothing: every length is checked against what is
 * left of the buffer and against the field's own bound, strings may not
 * hold a NUL, and an unknown kind is an error. An unknown version is
 * MS_ENOTSUP so the receiver can say so instead of guessing.
 */
#ifndef MS_TRANSPORT_NNG_WIRE_H
#define MS_TRANSPORT_NNG_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"

#define TP_NNG_WIRE_VERSION 1

/* Field bounds, in bytes without the NUL. */
#define TP_NNG_NAME_MAX   255 /* service, method, event type */
#define TP_NNG_TRACE_MAX  127 /* traceparent (55 today; room for more) */
#define TP_NNG_ID_MAX     36  /* event id: a GUID */
#define TP_NNG_DETAIL_MAX (BUS_DETAIL_LEN - 1)
#define TP_NNG_STATUS_MAX 31 /* an error code's name */

/* No header is longer than this (the receive limit adds it to the
 * payload limit). */
#define TP_NNG_WIRE_HDR_MAX 1024

enum tp_nng_kind {
	TP_NNG_CALL = 1,  /* a call: service, method, deadline */
	TP_NNG_REPLY = 2, /* its reply: status, detail, packed reply */
	TP_NNG_EVENT = 3, /* an event: id, type, deadline */
	TP_NNG_ACK = 4,   /* the consumer's verdict: status, detail */
};

/* A decoded header; which fields matter depends on |kind|, the others are
 * zero / empty after decode and ignored by encode. */
struct tp_nng_hdr {
	enum tp_nng_kind kind;
	uint32_t timeout_ms;                    /* CALL, EVENT; 0 = none */
	char service[TP_NNG_NAME_MAX + 1];      /* CALL, non-empty */
	char method[TP_NNG_NAME_MAX + 1];       /* CALL, non-empty */
	char id[TP_NNG_ID_MAX + 1];             /* EVENT, non-empty */
	char type[TP_NNG_NAME_MAX + 1];         /* EVENT, non-empty */
	char traceparent[TP_NNG_TRACE_MAX + 1]; /* CALL, EVENT; "" = none */
	int64_t occurred_ms;                    /* EVENT: wall clock */
	uint32_t attempt;                       /* EVENT: 1, 2, ... */
	int status;                             /* REPLY, ACK: 0 or MS_E* */
	char detail[TP_NNG_DETAIL_MAX + 1];     /* REPLY, ACK */
};

/*
 * tp_nng_wire_encode writes |h| into |buf| (|cap| bytes) and stores the
 * header's length in *len; the payload goes right after it. A status that
 * is not one of our codes is sent as EINTERNAL. Returns 0, MS_EINVAL
 * (unknown kind, a string over its bound, a required string empty) or
 * MS_ETOOBIG (|cap| too small; TP_NNG_WIRE_HDR_MAX always suffices).
 */
int tp_nng_wire_encode(const struct tp_nng_hdr *h, uint8_t *buf, size_t cap,
                       size_t *len);

/*
 * tp_nng_wire_decode reads the header at the start of |buf| (|len| bytes)
 * into *h and stores its length in *hdr_len: the payload is the remaining
 * len - *hdr_len bytes. Returns 0, MS_ENOTSUP (another wire version: *h
 * has only |kind| zero) or MS_EPROTO (not ours, truncated, a length that
 * runs past the end or over its field's bound, a NUL in a string, an
 * unknown kind, a required string empty).
 */
int tp_nng_wire_decode(const uint8_t *buf, size_t len, struct tp_nng_hdr *h,
                       size_t *hdr_len);

/* tp_nng_kind_name returns "call", "reply", "event", "ack" or "unknown". */
const char *tp_nng_kind_name(int kind);

#endif
