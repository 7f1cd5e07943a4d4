/* SPDX-License-Identifier: MIT */
/*
 * gRPC protocol facts as pure functions over buffers (no sockets, no
 * nghttp2): message framing, grpc-timeout, grpc-message percent-encoding,
 * status mapping, path and content-type checks, pushback. Shared by the
 * server and the client, unit tested on their own.
 * See ../shared/reference/wire.md §1 for the rules they implement.
 */
#ifndef MS_TRANSPORT_GRPC_WIRE_H
#define MS_TRANSPORT_GRPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* gRPC status codes (include/grpc/status.h). */
enum tp_grpc_status {
	TP_GRPC_OK = 0,
	TP_GRPC_CANCELLED = 1,
	TP_GRPC_UNKNOWN = 2,
	TP_GRPC_INVALID_ARGUMENT = 3,
	TP_GRPC_DEADLINE_EXCEEDED = 4,
	TP_GRPC_NOT_FOUND = 5,
	TP_GRPC_ALREADY_EXISTS = 6,
	TP_GRPC_PERMISSION_DENIED = 7,
	TP_GRPC_RESOURCE_EXHAUSTED = 8,
	TP_GRPC_FAILED_PRECONDITION = 9,
	TP_GRPC_ABORTED = 10,
	TP_GRPC_OUT_OF_RANGE = 11,
	TP_GRPC_UNIMPLEMENTED = 12,
	TP_GRPC_INTERNAL = 13,
	TP_GRPC_UNAVAILABLE = 14,
	TP_GRPC_DATA_LOSS = 15,
	TP_GRPC_UNAUTHENTICATED = 16,
};

#define TP_GRPC_PREFIX_LEN 5 /* compressed flag + 4-byte big-endian length */

/* ---- message framing ---------------------------------------------------- */

/* tp_grpc_frame_header writes the 5-byte prefix for an uncompressed
 * message of |len| bytes into |out|. */
void tp_grpc_frame_header(uint8_t out[TP_GRPC_PREFIX_LEN], uint32_t len);

/*
 * An incremental reader of length-prefixed messages: feed it DATA payloads
 * as they come (a message may span frames, a frame may hold several
 * messages), take whole messages out. It owns one buffer per message,
 * allocated once at the size the prefix announces (bounded by
 * |max_message|), until the message is handed to the caller.
 */
struct tp_grpc_reader {
	size_t max_message;
	uint8_t hdr[TP_GRPC_PREFIX_LEN];
	size_t hdr_have; /* prefix bytes seen of the current message */
	uint8_t *buf;    /* message body being assembled (malloc'd) */
	size_t need;     /* body length from the prefix */
	size_t have;     /* body bytes assembled */
	size_t nmsgs;    /* whole messages completed so far */
	bool compressed; /* current message has the flag set */
};

/* tp_grpc_reader_init / fini (fini frees the buffer and any message not
 * taken). */
void tp_grpc_reader_init(struct tp_grpc_reader *r, size_t max_message);
void tp_grpc_reader_fini(struct tp_grpc_reader *r);

/*
 * tp_grpc_reader_feed consumes up to |len| bytes of |data|. When a whole
 * message is complete it stops and returns 1 with *msg (malloc'd, owned by
 * the caller; a zero-length message gives a non-NULL 1-byte buffer) and
 * *msglen set, and *used the bytes consumed; call again with the rest.
 * Returns 0 when everything was consumed without completing a message, or:
 * MS_ETOOBIG (the prefix announces more than max_message: the caller answers
 * RESOURCE_EXHAUSTED), MS_ENOTSUP (compressed flag set: we accept identity
 * only), MS_EPROTO (flag byte neither 0 nor 1), MS_ENOMEM. After an error
 * *used counts the bytes taken (the bad prefix included) and every later
 * feed returns the same error: the stream is dead.
 */
int tp_grpc_reader_feed(struct tp_grpc_reader *r, const uint8_t *data,
                        size_t len, size_t *used, uint8_t **msg,
                        size_t *msglen);

/* tp_grpc_reader_partial tells whether a message is half received (the
 * stream ended in the middle of one: a protocol error). */
bool tp_grpc_reader_partial(const struct tp_grpc_reader *r);

/* ---- grpc-timeout ------------------------------------------------------- */

/* tp_grpc_timeout_parse parses "100m", "5S", "1H" (1..8 digits and a unit
 * of H M S m u n) into milliseconds, rounding sub-millisecond values up to
 * 1 ms. "0m" (any zero) gives 0: already expired, the caller fails the
 * call with DEADLINE_EXCEEDED. Returns 0 or MS_EINVAL. */
int tp_grpc_timeout_parse(const char *s, size_t len, int64_t *ms);

/* tp_grpc_timeout_format writes |ms| (> 0) in the finest unit that fits in
 * 8 digits ("250m", "100000S", ...) into |out| (16 bytes), rounding up.
 * ms <= 0 writes "0m" (expired); beyond 99999999H it saturates there.
 * Returns out. */
char *tp_grpc_timeout_format(int64_t ms, char out[16]);

/* ---- grpc-message ------------------------------------------------------- */

/* tp_grpc_percent_encode encodes |s| for grpc-message: 0x20-0x7E except
 * '%' pass, everything else %XX. Writes at most |outlen|-1 bytes, never
 * splitting an escape. Returns the length written. */
size_t tp_grpc_percent_encode(const char *s, char *out, size_t outlen);

/* tp_grpc_percent_decode decodes |len| bytes; broken escapes are passed
 * through as they are (decoders must never fail). Returns length written
 * (NUL-terminated, truncated to |outlen|-1). */
size_t tp_grpc_percent_decode(const char *s, size_t len, char *out,
                              size_t outlen);

/* ---- status mapping ----------------------------------------------------- */

/* tp_grpc_status_parse parses a grpc-status value (decimal, 0..16 or
 * larger: unknown codes become UNKNOWN). Returns 0 or MS_EINVAL. */
int tp_grpc_status_parse(const char *s, size_t len, int *status);

/* tp_grpc_status_from_http maps an HTTP :status to a gRPC status when no
 * grpc-status came (doc/http-grpc-status-mapping.md). */
int tp_grpc_status_from_http(int http_status);

/* tp_grpc_status_from_rst maps an RST_STREAM error code received by a
 * client to a gRPC status (REFUSED_STREAM → UNAVAILABLE, CANCEL →
 * CANCELLED, ENHANCE_YOUR_CALM → RESOURCE_EXHAUSTED, ...). */
int tp_grpc_status_from_rst(uint32_t error_code);

/* tp_grpc_status_name returns "NOT_FOUND" etc.; "UNKNOWN" outside 0..16. */
const char *tp_grpc_status_name(int status);

/* ---- requests ----------------------------------------------------------- */

/* tp_grpc_content_type_ok tells whether a content-type is gRPC's
 * ("application/grpc" alone or followed by '+' or ';'). */
bool tp_grpc_content_type_ok(const char *s, size_t len);

/*
 * tp_grpc_path_split splits ":path" "/pkg.Service/Method" into service and
 * method (copied into |service| / |method|, NUL-terminated). Returns 0 or
 * MS_EINVAL (no leading '/', no second '/', empty parts, too long).
 */
int tp_grpc_path_split(const char *path, size_t len, char *service,
                       size_t service_len, char *method, size_t method_len);

/* tp_grpc_pushback_parse parses grpc-retry-pushback-ms: a non-negative
 * decimal int32 without leading zeros → *ms and 0; negative or malformed →
 * MS_EINVAL ("do not retry"). */
int tp_grpc_pushback_parse(const char *s, size_t len, int64_t *ms);

#endif
