/* SPDX-License-Identifier: MIT */
/*
 * Tests of the gRPC wire helpers (src/transport/grpc/wire.c): the
 * length-prefixed message reader fed in every shape DATA frames can take
 * (byte by byte, packed, split prefixes, empty messages, the size limit on
 * both sides, the compressed flag, a stream cut mid-message), grpc-timeout
 * parsing and formatting, grpc-message percent-encoding, status parsing
 * and the HTTP and RST_STREAM mappings, content-type, :path and
 * grpc-retry-pushback-ms. Feeds come from exact-size heap copies so that
 * valgrind and ASan catch any read past |len|.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "transport/grpc/wire.h"

/* ---- helpers ------------------------------------------------------------ */

/* A growable byte string for building streams of framed messages. */
struct bytes {
	uint8_t *p;
	size_t n, cap;
};

static void
bytes_add(struct bytes *b, const void *data, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 64;

		while (cap < b->n + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		ck_assert_ptr_nonnull(b->p);
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->n, data, n);
	b->n += n;
}

/* frame appends a framed message whose body is |n| bytes of a pattern
 * derived from |seed|, so each message of a stream is recognisable. */
static void
frame(struct bytes *b, size_t n, unsigned seed)
{
	uint8_t hdr[TP_GRPC_PREFIX_LEN];

	tp_grpc_frame_header(hdr, (uint32_t)n);
	bytes_add(b, hdr, sizeof(hdr));
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)(seed * 31 + i * 7 + (i >> 8));

		bytes_add(b, &c, 1);
	}
}

static void
check_body(const uint8_t *msg, size_t len, size_t want, unsigned seed)
{
	ck_assert_uint_eq(len, want);
	for (size_t i = 0; i < len; i++)
		ck_assert_msg(msg[i] == (uint8_t)(seed * 31 + i * 7 + (i >> 8)),
		              "message %u byte %zu", seed, i);
}

/*
 * feed_copy feeds |n| bytes through an exact-size heap copy (so reading
 * past the end is a memory error under valgrind/ASan) and checks that the
 * reader never claims more than it was given.
 */
static int
feed_copy(struct tp_grpc_reader *r, const uint8_t *data, size_t n, size_t *used,
          uint8_t **msg, size_t *msglen)
{
	uint8_t *copy = malloc(n > 0 ? n : 1);
	int rc;

	ck_assert_ptr_nonnull(copy);
	if (n > 0)
		memcpy(copy, data, n);
	*used = SIZE_MAX;
	rc = tp_grpc_reader_feed(r, n > 0 ? copy : NULL, n, used, msg, msglen);
	free(copy);
	ck_assert_uint_le(*used, n);
	if (rc != 1)
		ck_assert_ptr_null(*msg);
	return rc;
}

/*
 * drain feeds |all| in chunks whose sizes cycle through |chunks| and
 * collects the messages; checks them against |sizes| (seed = index).
 */
static void
drain(size_t max, const struct bytes *all, const size_t *chunks, size_t nchunks,
      const size_t *sizes, size_t nsizes)
{
	struct tp_grpc_reader r;
	size_t off = 0, got = 0, ci = 0;

	tp_grpc_reader_init(&r, max);
	while (off < all->n) {
		size_t n = chunks[ci++ % nchunks];
		size_t pos = 0;

		if (n > all->n - off)
			n = all->n - off;
		for (;;) {
			uint8_t *msg;
			size_t used, len;
			int rc = feed_copy(&r, all->p + off + pos, n - pos,
			                   &used, &msg, &len);

			pos += used;
			if (rc == 0) {
				ck_assert_uint_eq(pos, n);
				break;
			}
			ck_assert_int_eq(rc, 1);
			ck_assert_uint_lt(got, nsizes);
			check_body(msg, len, sizes[got], (unsigned)got);
			free(msg);
			got++;
			ck_assert_uint_eq(r.nmsgs, got);
			if (pos == n)
				break;
		}
		off += n;
	}
	ck_assert_uint_eq(got, nsizes);
	ck_assert(!tp_grpc_reader_partial(&r));
	tp_grpc_reader_fini(&r);
}

/* ---- framing ------------------------------------------------------------ */

START_TEST(frame_header_bytes)
{
	uint8_t h[TP_GRPC_PREFIX_LEN];

	tp_grpc_frame_header(h, 0);
	ck_assert_mem_eq(h, "\0\0\0\0\0", 5);
	tp_grpc_frame_header(h, 0x01020304);
	ck_assert_mem_eq(h, "\0\x01\x02\x03\x04", 5);
	tp_grpc_frame_header(h, 300);
	ck_assert_mem_eq(h, "\0\0\0\x01\x2c", 5);
	tp_grpc_frame_header(h, UINT32_MAX);
	ck_assert_mem_eq(h, "\0\xff\xff\xff\xff", 5);
}
END_TEST

START_TEST(one_message_one_feed)
{
	static const size_t sizes[] = {100};
	static const size_t whole[] = {SIZE_MAX};
	struct bytes b = {0};

	frame(&b, 100, 0);
	drain(4096, &b, whole, 1, sizes, 1);
	free(b.p);
}
END_TEST

START_TEST(byte_by_byte)
{
	/* Empty messages between others, fed one byte at a time: every
	 * prefix and every body is split at every possible point. */
	static const size_t sizes[] = {3, 0, 1, 0, 0, 300, 7};
	static const size_t one[] = {1};
	struct bytes b = {0};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		frame(&b, sizes[i], (unsigned)i);
	drain(1000, &b, one, 1, sizes, sizeof(sizes) / sizeof(sizes[0]));
	free(b.p);
}
END_TEST

START_TEST(many_in_one_feed)
{
	static const size_t sizes[] = {5, 0, 17, 1, 0, 64};
	static const size_t whole[] = {SIZE_MAX};
	struct bytes b = {0};
	struct tp_grpc_reader r;
	size_t off = 0;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		frame(&b, sizes[i], (unsigned)i);
	drain(64, &b, whole, 1, sizes, sizeof(sizes) / sizeof(sizes[0]));

	/* The reader stops right after each message: |used| lands exactly
	 * on the next prefix. */
	tp_grpc_reader_init(&r, 64);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *msg;
		size_t used, len;

		ck_assert_int_eq(
		    feed_copy(&r, b.p + off, b.n - off, &used, &msg, &len), 1);
		ck_assert_uint_eq(used, TP_GRPC_PREFIX_LEN + sizes[i]);
		check_body(msg, len, sizes[i], (unsigned)i);
		free(msg);
		off += used;
	}
	ck_assert_uint_eq(off, b.n);
	ck_assert_uint_eq(r.nmsgs, sizeof(sizes) / sizeof(sizes[0]));
	tp_grpc_reader_fini(&r);
	free(b.p);
}
END_TEST

START_TEST(odd_chunks_large)
{
	/* Frame-sized and odd-sized chunks over messages up to 1 MiB. */
	static const size_t sizes[] = {1 << 20, 0, 16384, 5, 16385, 99999};
	static const size_t chunks[] = {16384, 3, 1, 4, 5, 6, 65535, 2, 9000};
	struct bytes b = {0};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		frame(&b, sizes[i], (unsigned)i);
	drain(1 << 20, &b, chunks, sizeof(chunks) / sizeof(chunks[0]), sizes,
	      sizeof(sizes) / sizeof(sizes[0]));
	free(b.p);
}
END_TEST

START_TEST(zero_length_message)
{
	static const uint8_t z[TP_GRPC_PREFIX_LEN] = {0};
	struct tp_grpc_reader r;
	uint8_t *msg;
	size_t used, len = 99;

	/* Even with max_message 0, an empty message is fine, and it comes
	 * out as a real (non-NULL) buffer the caller frees. */
	tp_grpc_reader_init(&r, 0);
	ck_assert_int_eq(feed_copy(&r, z, sizeof(z), &used, &msg, &len), 1);
	ck_assert_uint_eq(used, TP_GRPC_PREFIX_LEN);
	ck_assert_ptr_nonnull(msg);
	ck_assert_uint_eq(len, 0);
	ck_assert(!tp_grpc_reader_partial(&r));
	free(msg);
	tp_grpc_reader_fini(&r);
}
END_TEST

START_TEST(prefix_split)
{
	struct bytes b = {0};
	struct tp_grpc_reader r;
	uint8_t *msg;
	size_t used, len;

	frame(&b, 10, 4);
	tp_grpc_reader_init(&r, 100);
	ck_assert_int_eq(feed_copy(&r, b.p, 2, &used, &msg, &len), 0);
	ck_assert_uint_eq(used, 2);
	ck_assert(tp_grpc_reader_partial(&r));
	ck_assert_ptr_null(r.buf); /* nothing allocated before the length */
	ck_assert_int_eq(feed_copy(&r, b.p + 2, 0, &used, &msg, &len), 0);
	ck_assert_uint_eq(used, 0);
	ck_assert_int_eq(feed_copy(&r, b.p + 2, 3, &used, &msg, &len), 0);
	ck_assert_uint_eq(used, 3);
	ck_assert(tp_grpc_reader_partial(&r));
	ck_assert_int_eq(feed_copy(&r, b.p + 5, 10, &used, &msg, &len), 1);
	check_body(msg, len, 10, 4);
	free(msg);
	ck_assert(!tp_grpc_reader_partial(&r));
	tp_grpc_reader_fini(&r);
	free(b.p);
}
END_TEST

START_TEST(body_allocated_once)
{
	/* The body buffer is allocated once from the prefix and filled in
	 * place: it never moves while the message trickles in, and it is the
	 * buffer handed out (no final copy). */
	struct bytes b = {0};
	struct tp_grpc_reader r;
	uint8_t *first = NULL, *msg;
	size_t used, len;

	frame(&b, 5000, 9);
	tp_grpc_reader_init(&r, 5000);
	for (size_t i = 0; i < b.n; i++) {
		int rc = feed_copy(&r, b.p + i, 1, &used, &msg, &len);

		ck_assert_uint_eq(used, 1);
		if (i + 1 < TP_GRPC_PREFIX_LEN) {
			ck_assert_ptr_null(r.buf);
		} else if (i + 1 < b.n) {
			ck_assert_int_eq(rc, 0);
			if (first == NULL)
				first = r.buf;
			ck_assert_ptr_eq(r.buf, first);
			ck_assert_uint_eq(r.need, 5000);
			ck_assert_uint_eq(r.have, i + 1 - TP_GRPC_PREFIX_LEN);
		} else {
			ck_assert_int_eq(rc, 1);
			ck_assert_ptr_eq(msg, first);
			check_body(msg, len, 5000, 9);
			free(msg);
		}
	}
	tp_grpc_reader_fini(&r);
	free(b.p);
}
END_TEST

START_TEST(exactly_max_ok)
{
	static const size_t sizes[] = {256, 256};
	static const size_t chunks[] = {7};
	struct bytes b = {0};

	frame(&b, 256, 0);
	frame(&b, 256, 1);
	drain(256, &b, chunks, 1, sizes, 2);
	free(b.p);
}
END_TEST

START_TEST(over_max_from_prefix)
{
	uint8_t h[TP_GRPC_PREFIX_LEN];
	struct tp_grpc_reader r;
	uint8_t *msg;
	size_t used, len;

	/* Only the prefix is fed: the verdict cannot need the body. */
	tp_grpc_reader_init(&r, 256);
	tp_grpc_frame_header(h, 257);
	ck_assert_int_eq(feed_copy(&r, h, 3, &used, &msg, &len), 0);
	ck_assert_int_eq(feed_copy(&r, h + 3, 2, &used, &msg, &len),
	                 MS_ETOOBIG);
	ck_assert_uint_eq(used, 2);
	ck_assert_ptr_null(r.buf); /* nothing reserved for it */
	/* The stream is dead: the error sticks. */
	ck_assert_int_eq(
	    feed_copy(&r, (const uint8_t *)"abc", 3, &used, &msg, &len),
	    MS_ETOOBIG);
	ck_assert_uint_eq(used, 0);
	tp_grpc_reader_fini(&r);

	/* 4 GiB - 1 announced, 4 MiB allowed. */
	tp_grpc_reader_init(&r, 4u << 20);
	tp_grpc_frame_header(h, UINT32_MAX);
	ck_assert_int_eq(feed_copy(&r, h, sizeof(h), &used, &msg, &len),
	                 MS_ETOOBIG);
	ck_assert_uint_eq(used, TP_GRPC_PREFIX_LEN);
	ck_assert_ptr_null(r.buf);
	tp_grpc_reader_fini(&r);

	/* A good message, then an oversized one in the same feed: the good
	 * one comes out first, the error on the next call. */
	{
		struct bytes b = {0};

		frame(&b, 4, 2);
		frame(&b, 5, 3);
		tp_grpc_reader_init(&r, 4);
		ck_assert_int_eq(feed_copy(&r, b.p, b.n, &used, &msg, &len), 1);
		check_body(msg, len, 4, 2);
		free(msg);
		ck_assert_int_eq(
		    feed_copy(&r, b.p + used, b.n - used, &used, &msg, &len),
		    MS_ETOOBIG);
		ck_assert_uint_eq(used, TP_GRPC_PREFIX_LEN);
		tp_grpc_reader_fini(&r);
		free(b.p);
	}
}
END_TEST

START_TEST(compressed_flag)
{
	static const uint8_t comp[] = {1, 0, 0, 0, 2, 'h', 'i'};
	static const uint8_t bad[] = {2, 0, 0, 0, 2, 'h', 'i'};
	struct tp_grpc_reader r;
	uint8_t *msg;
	size_t used, len;

	tp_grpc_reader_init(&r, 100);
	ck_assert_int_eq(feed_copy(&r, comp, sizeof(comp), &used, &msg, &len),
	                 MS_ENOTSUP);
	ck_assert_uint_eq(used, TP_GRPC_PREFIX_LEN);
	ck_assert(r.compressed);
	tp_grpc_reader_fini(&r);

	/* Split: the flag arrives alone, the verdict with the length. */
	tp_grpc_reader_init(&r, 100);
	ck_assert_int_eq(feed_copy(&r, comp, 1, &used, &msg, &len), 0);
	ck_assert_int_eq(feed_copy(&r, comp + 1, 6, &used, &msg, &len),
	                 MS_ENOTSUP);
	ck_assert_uint_eq(used, 4);
	tp_grpc_reader_fini(&r);

	/* A flag byte other than 0 or 1 is not gRPC at all. */
	tp_grpc_reader_init(&r, 100);
	ck_assert_int_eq(feed_copy(&r, bad, sizeof(bad), &used, &msg, &len),
	                 MS_EPROTO);
	tp_grpc_reader_fini(&r);
}
END_TEST

START_TEST(partial_detection)
{
	struct bytes b = {0};
	struct tp_grpc_reader r;
	uint8_t *msg;
	size_t used, len;

	frame(&b, 8, 1);
	tp_grpc_reader_init(&r, 100);
	ck_assert(!tp_grpc_reader_partial(&r));
	for (size_t cut = 1; cut < b.n; cut++) {
		/* A stream ending after |cut| bytes is cut mid-message. */
		ck_assert_int_eq(
		    feed_copy(&r, b.p + cut - 1, 1, &used, &msg, &len), 0);
		ck_assert_msg(tp_grpc_reader_partial(&r), "cut %zu", cut);
	}
	ck_assert_int_eq(feed_copy(&r, b.p + b.n - 1, 1, &used, &msg, &len), 1);
	free(msg);
	ck_assert(!tp_grpc_reader_partial(&r));
	/* fini frees a half-assembled body (valgrind checks the leak). */
	ck_assert_int_eq(feed_copy(&r, b.p, 7, &used, &msg, &len), 0);
	ck_assert(tp_grpc_reader_partial(&r));
	tp_grpc_reader_fini(&r);
	ck_assert(!tp_grpc_reader_partial(&r));
	ck_assert_ptr_null(r.buf);
	free(b.p);
}
END_TEST

/* ---- grpc-timeout ------------------------------------------------------- */

START_TEST(timeout_parse_ok)
{
	static const struct {
		const char *s;
		int64_t ms;
	} tab[] = {
	    {"100m", 100},
	    {"0m", 0},
	    {"0H", 0},
	    {"0n", 0},
	    {"5S", 5000},
	    {"2M", 120000},
	    {"1H", 3600000},
	    {"1u", 1},
	    {"999u", 1},
	    {"1000u", 1},
	    {"1001u", 2},
	    {"1n", 1},
	    {"1000000n", 1},
	    {"1000001n", 2},
	    {"99999999n", 100},
	    {"00000007m", 7},
	    {"12345678m", 12345678},
	    {"99999999S", 99999999000LL},
	    {"99999999M", 5999999940000LL},
	    /* The largest input: 3.6e14 ms, exact, no overflow. */
	    {"99999999H", 359999996400000LL},
	};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		int64_t ms = -1;

		ck_assert_msg(
		    tp_grpc_timeout_parse(tab[i].s, strlen(tab[i].s), &ms) == 0,
		    "%s", tab[i].s);
		ck_assert_msg(ms == tab[i].ms, "%s -> %lld", tab[i].s,
		              (long long)ms);
	}
}
END_TEST

START_TEST(timeout_parse_bad)
{
	static const char *const tab[] = {
	    "",           "m",     "100", "100x", "100h",   "100s",
	    "123456789m", "+1m",   "-1m", " 1m",  "1 m",    "1m ",
	    "1.5S",       "0x10m", "mm",  "1mm",  "\0011m",
	};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		int64_t ms = 42;

		ck_assert_msg(tp_grpc_timeout_parse(tab[i], strlen(tab[i]),
		                                    &ms) == MS_EINVAL,
		              "'%s'", tab[i]);
		ck_assert_int_eq(ms, 42);
	}
	/* |len| bounds the read: "100m" cut to "100" has no unit. */
	{
		int64_t ms;

		ck_assert_int_eq(tp_grpc_timeout_parse("100m", 3, &ms),
		                 MS_EINVAL);
		ck_assert_int_eq(tp_grpc_timeout_parse("5S", 0, &ms),
		                 MS_EINVAL);
		ck_assert_int_eq(tp_grpc_timeout_parse(NULL, 0, &ms),
		                 MS_EINVAL);
	}
}
END_TEST

START_TEST(timeout_format)
{
	static const struct {
		int64_t ms;
		const char *s;
	} tab[] = {
	    {1, "1m"},
	    {250, "250m"},
	    {100000, "100000m"},
	    {99999999, "99999999m"},
	    {100000000, "100000S"},
	    {100000001, "100001S"}, /* rounded up, never down */
	    {1000000000, "1000000S"},
	    {99999999000LL, "99999999S"},
	    {99999999001LL, "1666667M"},
	    {5999999940000LL, "99999999M"},
	    {5999999940001LL, "1666667H"},
	    {359999996400000LL, "99999999H"},
	    {INT64_MAX, "99999999H"}, /* saturates */
	    {0, "0m"},
	    {-5, "0m"},
	};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		char out[16];

		ck_assert_ptr_eq(tp_grpc_timeout_format(tab[i].ms, out), out);
		ck_assert_msg(strcmp(out, tab[i].s) == 0, "%lld -> %s",
		              (long long)tab[i].ms, out);
	}
}
END_TEST

START_TEST(timeout_round_trip)
{
	/* Formatting never shortens a deadline and adds less than one unit
	 * of the chosen unit; every output parses back. */
	int64_t ms = 1;

	for (int i = 0; i < 2000 && ms < 359999996400000LL; i++) {
		char out[16];
		int64_t back = -1, unit;

		tp_grpc_timeout_format(ms, out);
		ck_assert_uint_le(strlen(out), 9);
		ck_assert_int_eq(tp_grpc_timeout_parse(out, strlen(out), &back),
		                 0);
		switch (out[strlen(out) - 1]) {
		case 'm':
			unit = 1;
			break;
		case 'S':
			unit = 1000;
			break;
		case 'M':
			unit = 60000;
			break;
		default:
			ck_assert_int_eq(out[strlen(out) - 1], 'H');
			unit = 3600000;
		}
		ck_assert_msg(back >= ms && back - ms < unit, "%lld -> %s",
		              (long long)ms, out);
		ms = ms + ms / 37 + 1 + (int64_t)i * 13;
	}
}
END_TEST

/* ---- grpc-message ------------------------------------------------------- */

START_TEST(percent_encode)
{
	static const struct {
		const char *in, *out;
	} tab[] = {
	    {"", ""},
	    {"plain text ~!", "plain text ~!"},
	    {"100%", "100%25"},
	    {"a\nb\tc\r", "a%0Ab%09c%0D"},
	    {"\x7f", "%7F"},
	    /* UTF-8: one escape per byte, upper-case hex. */
	    {"caf\xc3\xa9", "caf%C3%A9"},
	    {"\xe2\x82\xac", "%E2%82%AC"},
	    {"\xf0\x9f\x98\x80", "%F0%9F%98%80"},
	};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		char out[64];
		size_t n = tp_grpc_percent_encode(tab[i].in, out, sizeof(out));

		ck_assert_str_eq(out, tab[i].out);
		ck_assert_uint_eq(n, strlen(tab[i].out));
	}
}
END_TEST

START_TEST(percent_encode_truncates_whole)
{
	char out[8];

	/* 7 bytes of room: "ab%25" fits (5), "%25" no more (8). */
	ck_assert_uint_eq(tp_grpc_percent_encode("ab%%cd", out, sizeof(out)),
	                  5);
	ck_assert_str_eq(out, "ab%25");
	ck_assert_uint_eq(tp_grpc_percent_encode("abcdefghij", out, 8), 7);
	ck_assert_str_eq(out, "abcdefg");
	/* An escape that would be split is dropped whole. */
	ck_assert_uint_eq(tp_grpc_percent_encode("abcde\n", out, 8), 5);
	ck_assert_str_eq(out, "abcde");
	ck_assert_uint_eq(tp_grpc_percent_encode("abcd\n", out, 8), 7);
	ck_assert_str_eq(out, "abcd%0A");
	ck_assert_uint_eq(tp_grpc_percent_encode("\n", out, 3), 0);
	ck_assert_str_eq(out, "");
	ck_assert_uint_eq(tp_grpc_percent_encode("x", out, 1), 0);
	ck_assert_str_eq(out, "");
	out[0] = 'Z';
	ck_assert_uint_eq(tp_grpc_percent_encode("x", out, 0), 0);
	ck_assert_int_eq(out[0], 'Z'); /* nothing written */
}
END_TEST

START_TEST(percent_decode)
{
	static const struct {
		const char *in, *out;
	} tab[] = {
	    {"", ""},
	    {"plain", "plain"},
	    {"100%25", "100%"},
	    {"caf%C3%A9", "caf\xc3\xa9"},
	    {"caf%c3%a9", "caf\xc3\xa9"}, /* lower case accepted */
	    {"%0a%0D", "\n\r"},
	    /* Broken escapes pass through as they stand. */
	    {"%4", "%4"},
	    {"50%", "50%"},
	    {"%zz", "%zz"},
	    {"%4g!", "%4g!"},
	    {"%g4", "%g4"},
	    {"%%41", "%A"},
	    {"a%2", "a%2"},
	    {"%%", "%%"},
	};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		char out[64];
		size_t n = tp_grpc_percent_decode(tab[i].in, strlen(tab[i].in),
		                                  out, sizeof(out));

		ck_assert_msg(strcmp(out, tab[i].out) == 0, "%s -> %s",
		              tab[i].in, out);
		ck_assert_uint_eq(n, strlen(tab[i].out));
	}
}
END_TEST

START_TEST(percent_decode_bounds)
{
	char out[4];

	/* |len| bounds the read: "%41" cut to "%4" is a broken escape. */
	ck_assert_uint_eq(tp_grpc_percent_decode("%41", 2, out, sizeof(out)),
	                  2);
	ck_assert_str_eq(out, "%4");
	/* Truncated to outlen - 1, always terminated. */
	ck_assert_uint_eq(tp_grpc_percent_decode("%41%42%43%44", 12, out, 4),
	                  3);
	ck_assert_str_eq(out, "ABC");
	ck_assert_uint_eq(tp_grpc_percent_decode("abc", 3, out, 1), 0);
	ck_assert_str_eq(out, "");
	/* %00 decodes to a NUL byte; the length says so. */
	ck_assert_uint_eq(tp_grpc_percent_decode("a%00b", 5, out, 4), 3);
	ck_assert_mem_eq(out, "a\0b", 4);
}
END_TEST

START_TEST(percent_round_trip)
{
	/* Every non-NUL byte survives encode then decode. */
	char in[256], enc[3 * 256 + 1], dec[256];
	size_t n;

	for (int i = 1; i < 256; i++)
		in[i - 1] = (char)i;
	in[255] = '\0';
	n = tp_grpc_percent_encode(in, enc, sizeof(enc));
	ck_assert_uint_eq(n, strlen(enc));
	for (size_t i = 0; i < n; i++)
		ck_assert(enc[i] >= 0x20 && enc[i] <= 0x7e);
	n = tp_grpc_percent_decode(enc, n, dec, sizeof(dec));
	ck_assert_uint_eq(n, 255);
	ck_assert_mem_eq(dec, in, 256);
}
END_TEST

/* ---- status ------------------------------------------------------------- */

START_TEST(status_parse)
{
	static const struct {
		const char *s;
		int st;
	} ok[] = {
	    {"0", 0},
	    {"5", 5},
	    {"16", 16},
	    {"14", 14},
	    {"17", TP_GRPC_UNKNOWN},
	    {"99", TP_GRPC_UNKNOWN},
	    {"4294967295", TP_GRPC_UNKNOWN},
	    {"9999999999", TP_GRPC_UNKNOWN},
	    {"05", 5},
	};
	static const char *const bad[] = {
	    "", "-1", "+1", " 1", "1 ", "1a", "x", "12345678901", "0x1",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int st = -1;

		ck_assert_msg(
		    tp_grpc_status_parse(ok[i].s, strlen(ok[i].s), &st) == 0,
		    "%s", ok[i].s);
		ck_assert_msg(st == ok[i].st, "%s -> %d", ok[i].s, st);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int st = -1;

		ck_assert_msg(tp_grpc_status_parse(bad[i], strlen(bad[i]),
		                                   &st) == MS_EINVAL,
		              "'%s'", bad[i]);
		ck_assert_int_eq(st, -1);
	}
	{
		int st = -1;

		/* |len| bounds the read. */
		ck_assert_int_eq(tp_grpc_status_parse("123", 1, &st), 0);
		ck_assert_int_eq(st, 1);
	}
}
END_TEST

START_TEST(status_from_http)
{
	static const struct {
		int http, st;
	} tab[] = {
	    {400, TP_GRPC_INTERNAL},
	    {401, TP_GRPC_UNAUTHENTICATED},
	    {403, TP_GRPC_PERMISSION_DENIED},
	    {404, TP_GRPC_UNIMPLEMENTED},
	    {429, TP_GRPC_UNAVAILABLE},
	    {431, TP_GRPC_INTERNAL},
	    {502, TP_GRPC_UNAVAILABLE},
	    {503, TP_GRPC_UNAVAILABLE},
	    {504, TP_GRPC_UNAVAILABLE},
	    {200, TP_GRPC_UNKNOWN},
	    {500, TP_GRPC_UNKNOWN},
	    {405, TP_GRPC_UNKNOWN},
	    {415, TP_GRPC_UNKNOWN},
	    {301, TP_GRPC_UNKNOWN},
	    {0, TP_GRPC_UNKNOWN},
	    {-1, TP_GRPC_UNKNOWN},
	};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		ck_assert_msg(tp_grpc_status_from_http(tab[i].http) ==
		                  tab[i].st,
		              "http %d", tab[i].http);
}
END_TEST

START_TEST(status_from_rst)
{
	static const struct {
		uint32_t code;
		int st;
	} tab[] = {
	    {0x0, TP_GRPC_INTERNAL},           /* NO_ERROR */
	    {0x1, TP_GRPC_INTERNAL},           /* PROTOCOL_ERROR */
	    {0x2, TP_GRPC_INTERNAL},           /* INTERNAL_ERROR */
	    {0x3, TP_GRPC_INTERNAL},           /* FLOW_CONTROL_ERROR */
	    {0x4, TP_GRPC_INTERNAL},           /* SETTINGS_TIMEOUT */
	    {0x5, TP_GRPC_INTERNAL},           /* STREAM_CLOSED */
	    {0x6, TP_GRPC_INTERNAL},           /* FRAME_SIZE_ERROR */
	    {0x7, TP_GRPC_UNAVAILABLE},        /* REFUSED_STREAM */
	    {0x8, TP_GRPC_CANCELLED},          /* CANCEL */
	    {0x9, TP_GRPC_INTERNAL},           /* COMPRESSION_ERROR */
	    {0xa, TP_GRPC_INTERNAL},           /* CONNECT_ERROR */
	    {0xb, TP_GRPC_RESOURCE_EXHAUSTED}, /* ENHANCE_YOUR_CALM */
	    {0xc, TP_GRPC_PERMISSION_DENIED},  /* INADEQUATE_SECURITY */
	    {0xd, TP_GRPC_INTERNAL},           /* HTTP_1_1_REQUIRED */
	    {0xe, TP_GRPC_INTERNAL},           /* unknown */
	    {UINT32_MAX, TP_GRPC_INTERNAL},
	};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		ck_assert_msg(tp_grpc_status_from_rst(tab[i].code) == tab[i].st,
		              "rst %u", tab[i].code);
}
END_TEST

START_TEST(status_names)
{
	static const char *const want[] = {
	    "OK",
	    "CANCELLED",
	    "UNKNOWN",
	    "INVALID_ARGUMENT",
	    "DEADLINE_EXCEEDED",
	    "NOT_FOUND",
	    "ALREADY_EXISTS",
	    "PERMISSION_DENIED",
	    "RESOURCE_EXHAUSTED",
	    "FAILED_PRECONDITION",
	    "ABORTED",
	    "OUT_OF_RANGE",
	    "UNIMPLEMENTED",
	    "INTERNAL",
	    "UNAVAILABLE",
	    "DATA_LOSS",
	    "UNAUTHENTICATED",
	};
	for (int i = 0; i < 17; i++)
		ck_assert_str_eq(tp_grpc_status_name(i), want[i]);
	ck_assert_str_eq(tp_grpc_status_name(17), "UNKNOWN");
	ck_assert_str_eq(tp_grpc_status_name(-1), "UNKNOWN");
	ck_assert_str_eq(tp_grpc_status_name(TP_GRPC_NOT_FOUND), "NOT_FOUND");
}
END_TEST

/* ---- requests ----------------------------------------------------------- */

START_TEST(content_type)
{
	static const char *const ok[] = {
	    "application/grpc",           "application/grpc+proto",
	    "application/grpc;charset=x", "application/grpc+json",
	    "Application/gRPC",           "APPLICATION/GRPC+proto",
	};
	static const char *const bad[] = {
	    "",
	    "application/grpcx",
	    "application/json",
	    "application/grp",
	    "application/grpc-web",
	    "application/grpc-web+proto",
	    "text/plain",
	    " application/grpc",
	    "application/grpc ",
	    "xapplication/grpc",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		ck_assert_msg(tp_grpc_content_type_ok(ok[i], strlen(ok[i])),
		              "%s", ok[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!tp_grpc_content_type_ok(bad[i], strlen(bad[i])),
		              "'%s'", bad[i]);
	/* |len| bounds the read either way. */
	ck_assert(tp_grpc_content_type_ok("application/grpcx", 16));
	ck_assert(!tp_grpc_content_type_ok("application/grpc", 15));
	ck_assert(!tp_grpc_content_type_ok(NULL, 0));
}
END_TEST

START_TEST(path_split)
{
	char svc[32], m[16];
	static const char p[] = "/discount.DiscountProtoService/GetDiscount";

	ck_assert_int_eq(tp_grpc_path_split("/pkg.Svc/Do", 11, svc, sizeof(svc),
	                                    m, sizeof(m)),
	                 0);
	ck_assert_str_eq(svc, "pkg.Svc");
	ck_assert_str_eq(m, "Do");
	ck_assert_int_eq(
	    tp_grpc_path_split("/a/b", 4, svc, sizeof(svc), m, sizeof(m)), 0);
	ck_assert_str_eq(svc, "a");
	ck_assert_str_eq(m, "b");

	/* Service exactly 31 + NUL fits 32; 32 does not. */
	ck_assert_int_eq(
	    tp_grpc_path_split(p, strlen(p), svc, sizeof(svc), m, sizeof(m)),
	    0);
	ck_assert_str_eq(svc, "discount.DiscountProtoService");
	ck_assert_str_eq(m, "GetDiscount");
	ck_assert_int_eq(
	    tp_grpc_path_split("/0123456789012345678901234567890/x", 34, svc,
	                       sizeof(svc), m, sizeof(m)),
	    0);
	ck_assert_int_eq(
	    tp_grpc_path_split("/01234567890123456789012345678901/x", 35, svc,
	                       sizeof(svc), m, sizeof(m)),
	    MS_EINVAL);
	ck_assert_int_eq(tp_grpc_path_split("/s/012345678901234", 18, svc,
	                                    sizeof(svc), m, sizeof(m)),
	                 0);
	ck_assert_str_eq(m, "012345678901234");
	ck_assert_int_eq(tp_grpc_path_split("/s/0123456789012345", 19, svc,
	                                    sizeof(svc), m, sizeof(m)),
	                 MS_EINVAL);

	/* |len| bounds the read: the tail after it is not part of it. */
	ck_assert_int_eq(
	    tp_grpc_path_split("/a/bc/junk", 5, svc, sizeof(svc), m, sizeof(m)),
	    0);
	ck_assert_str_eq(m, "bc");

	{
		static const char *const bad[] = {
		    "",    "/",     "//",     "/a",    "/a/",   "//b",
		    "a/b", "/a/b/", "/a/b/c", "a/b/c", "/a//b",
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			ck_assert_msg(tp_grpc_path_split(bad[i], strlen(bad[i]),
			                                 svc, sizeof(svc), m,
			                                 sizeof(m)) ==
			                  MS_EINVAL,
			              "'%s'", bad[i]);
		ck_assert_int_eq(tp_grpc_path_split("/a\0b/c", 6, svc,
		                                    sizeof(svc), m, sizeof(m)),
		                 MS_EINVAL);
	}
}
END_TEST

START_TEST(pushback)
{
	static const struct {
		const char *s;
		int64_t ms;
	} ok[] = {
	    {"0", 0},
	    {"1", 1},
	    {"100", 100},
	    {"2147483647", INT32_MAX},
	};
	static const char *const bad[] = {
	    "",           "-1",          "01",          "00",  "abc",
	    "+1",         " 1",          "1 ",          "1.5", "2147483648",
	    "4294967296", "99999999999", "-2147483648",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int64_t ms = -1;

		ck_assert_msg(
		    tp_grpc_pushback_parse(ok[i].s, strlen(ok[i].s), &ms) == 0,
		    "%s", ok[i].s);
		ck_assert_int_eq(ms, ok[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t ms = -7;

		ck_assert_msg(tp_grpc_pushback_parse(bad[i], strlen(bad[i]),
		                                     &ms) == MS_EINVAL,
		              "'%s'", bad[i]);
		ck_assert_int_eq(ms, -7);
	}
}
END_TEST

static Suite *
wire_suite(void)
{
	Suite *s = suite_create("grpc_wire");
	TCase *fr = tcase_create("framing");
	TCase *to = tcase_create("timeout");
	TCase *pc = tcase_create("percent");
	TCase *st = tcase_create("status");
	TCase *rq = tcase_create("request");

	tcase_add_test(fr, frame_header_bytes);
	tcase_add_test(fr, one_message_one_feed);
	tcase_add_test(fr, byte_by_byte);
	tcase_add_test(fr, many_in_one_feed);
	tcase_add_test(fr, odd_chunks_large);
	tcase_add_test(fr, zero_length_message);
	tcase_add_test(fr, prefix_split);
	tcase_add_test(fr, body_allocated_once);
	tcase_add_test(fr, exactly_max_ok);
	tcase_add_test(fr, over_max_from_prefix);
	tcase_add_test(fr, compressed_flag);
	tcase_add_test(fr, partial_detection);
	suite_add_tcase(s, fr);

	tcase_add_test(to, timeout_parse_ok);
	tcase_add_test(to, timeout_parse_bad);
	tcase_add_test(to, timeout_format);
	tcase_add_test(to, timeout_round_trip);
	suite_add_tcase(s, to);

	tcase_add_test(pc, percent_encode);
	tcase_add_test(pc, percent_encode_truncates_whole);
	tcase_add_test(pc, percent_decode);
	tcase_add_test(pc, percent_decode_bounds);
	tcase_add_test(pc, percent_round_trip);
	suite_add_tcase(s, pc);

	tcase_add_test(st, status_parse);
	tcase_add_test(st, status_from_http);
	tcase_add_test(st, status_from_rst);
	tcase_add_test(st, status_names);
	suite_add_tcase(s, st);

	tcase_add_test(rq, content_type);
	tcase_add_test(rq, path_split);
	tcase_add_test(rq, pushback);
	suite_add_tcase(s, rq);
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
