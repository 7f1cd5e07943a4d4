/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the gRPC protocol helpers of src/transport/grpc/wire.c
 * that read what a peer sends: the length-prefixed message reader
 * (tp_grpc_reader_feed), fed in chunks, checked against a reference reading
 * of the same bytes; and the header parsers (grpc-timeout, grpc-message,
 * grpc-status, content-type, :path, grpc-retry-pushback-ms, and the W3C
 * traceparent every edge reads) on the same bytes as a header value, with round-trip checks where there is an
 * inverse.
 *
 * Input: byte 0 sets max_message (x 16 bytes), byte 1 the chunk size
 * (0 = everything at once); the rest is the DATA payload of one stream.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/trace.h"
#include "fuzz_env.h"
#include "transport/grpc/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the reader must produce: the messages, then the error or not. */
struct expect {
	size_t nmsgs;
	int err;      /* 0 or the error the bad prefix gives */
	bool partial; /* bytes left over that start a message */
};

static struct expect
reference(const uint8_t *p, size_t n, size_t max)
{
	struct expect x = {0};
	size_t pos = 0;

	while (pos < n) {
		uint32_t len;

		if (n - pos < TP_GRPC_PREFIX_LEN) {
			x.partial = true;
			return x;
		}
		len = (uint32_t)p[pos + 1] << 24 | (uint32_t)p[pos + 2] << 16 |
		      (uint32_t)p[pos + 3] << 8 | (uint32_t)p[pos + 4];
		if (p[pos] == 1) {
			x.err = MS_ENOTSUP;
		} else if (p[pos] != 0) {
			x.err = MS_EPROTO;
		} else if (len > max) {
			x.err = MS_ETOOBIG;
		}
		if (x.err != 0) {
			return x;
		}
		if (n - pos - TP_GRPC_PREFIX_LEN < len) {
			x.partial = true;
			return x;
		}
		pos += TP_GRPC_PREFIX_LEN + len;
		x.nmsgs++;
	}
	return x;
}

static void
framing(const uint8_t *p, size_t n, size_t max, size_t chunk)
{
	struct tp_grpc_reader r;
	struct expect x = reference(p, n, max);
	size_t off = 0, got = 0;
	size_t pos = 0; /* where the next message starts, in |p| */
	int err = 0;

	tp_grpc_reader_init(&r, max);
	while (off < n && err == 0) {
		size_t k = chunk == 0 || n - off < chunk ? n - off : chunk;
		const uint8_t *c = p + off;

		off += k;
		while (err == 0) {
			uint8_t *msg;
			size_t used, len;
			int rc =
			    tp_grpc_reader_feed(&r, c, k, &used, &msg, &len);

			if (used > k) {
				fz_fail("reader used more than it was given");
			}
			c += used;
			k -= used;
			if (rc < 0) {
				err = rc;
				break;
			}
			if (rc == 0) {
				if (k != 0) {
					fz_fail("reader left bytes unread");
				}
				break;
			}
			/* The message is the bytes after its prefix. */
			pos += TP_GRPC_PREFIX_LEN;
			if (msg == NULL || pos + len > n ||
			    memcmp(msg, p + pos, len) != 0) {
				fz_fail("reader message %zu differs", got);
			}
			pos += len;
			got++;
			free(msg);
			if (k == 0) {
				break;
			}
		}
	}
	if (got != x.nmsgs || err != x.err ||
	    (err == 0 && tp_grpc_reader_partial(&r) != x.partial)) {
		fz_fail("reader: %zu messages, %s; reference: %zu, %s", got,
		        ms_errname(err), x.nmsgs, ms_errname(x.err));
	}
	if (err != 0) {
		/* A dead stream stays dead. */
		uint8_t *msg;
		size_t used, len;
		uint8_t zero[TP_GRPC_PREFIX_LEN] = {0};

		if (tp_grpc_reader_feed(&r, zero, sizeof(zero), &used, &msg,
		                        &len) != err) {
			fz_fail("reader recovered from %s", ms_errname(err));
		}
	}
	tp_grpc_reader_fini(&r);
}

/* traceparent (REST header, gRPC metadata, nng header, envelope header),
 * read by core/trace.c: what parses is version 00 in canonical form, and
 * stays so through parse and a child. */
static void
traceparent(const char *s)
{
	char tp[MS_TRACEPARENT_SIZE], again[MS_TRACEPARENT_SIZE];
	char child[MS_TRACEPARENT_SIZE];

	if (ms_trace_parse(s, tp) != 0) {
		if (tp[0] != '\0') {
			fz_fail("traceparent refused but written");
		}
		return;
	}
	if (strlen(tp) != MS_TRACEPARENT_SIZE - 1 ||
	    ms_trace_parse(tp, again) != 0 || strcmp(tp, again) != 0) {
		fz_fail("traceparent %s is not canonical", tp);
	}
	ms_trace_new_child(tp, child);
	if (ms_trace_parse(child, again) != 0 ||
	    memcmp(child, tp, 35) != 0) {
		fz_fail("the child of %s is %s", tp, child);
	}
}

static void
headers(const char *s, size_t n)
{
	int64_t ms, ms2;
	int status;
	char fmt[16];
	char service[128], method[64];
	char *enc = malloc(3 * n + 1);
	char *dec = malloc(n + 1);

	if (enc == NULL || dec == NULL) {
		free(enc);
		free(dec);
		return;
	}
	if (tp_grpc_timeout_parse(s, n, &ms) == 0) {
		tp_grpc_timeout_format(ms, fmt);
		if (ms < 0 ||
		    tp_grpc_timeout_parse(fmt, strlen(fmt), &ms2) != 0 ||
		    ms2 < ms) {
			fz_fail("grpc-timeout %lld ms does not round-trip",
			        (long long)ms);
		}
	}
	/* percent-encoding is for text: up to the first NUL. */
	tp_grpc_percent_encode(s, enc, 3 * n + 1);
	tp_grpc_percent_decode(enc, strlen(enc), dec, n + 1);
	if (strcmp(dec, s) != 0) {
		fz_fail("grpc-message does not round-trip");
	}
	tp_grpc_percent_decode(s, n, dec, n + 1);
	if (tp_grpc_status_parse(s, n, &status) == 0 && status < 0) {
		fz_fail("negative grpc-status");
	}
	(void)tp_grpc_content_type_ok(s, n);
	if (tp_grpc_path_split(s, n, service, sizeof(service), method,
	                       sizeof(method)) == 0 &&
	    (service[0] == '\0' || method[0] == '\0')) {
		fz_fail(":path split into an empty part");
	}
	if (tp_grpc_pushback_parse(s, n, &ms) == 0 && ms < 0) {
		fz_fail("negative pushback");
	}
	traceparent(s);
	free(enc);
	free(dec);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 2) {
		return 0;
	}
	framing(data + 2, size - 2, (size_t)data[0] * 16, data[1]);
	/* The header parsers get the bytes as a NUL-terminated value. */
	if ((s = malloc(size - 2 + 1)) == NULL) {
		return 0;
	}
	memcpy(s, data + 2, size - 2);
	s[size - 2] = '\0';
	headers(s, size - 2);
	free(s);
	return 0;
}
