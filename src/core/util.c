/* SPDX-License-Identifier: MIT */
/*
 * Small shared helpers (util.h): monotonic and wall clocks, random v4
 * GUIDs from getrandom(2), GUID validation, RFC 3339 timestamps, a bounded
 * string copy, a strict UTF-8 validator for text that reaches JSON,
 * logs and the database, and a constant-time comparison for access keys.
 *
 * Threads: every function is reentrant; the only shared state is the
 * fallback counter used when the kernel cannot give random bytes (and the
 * random pool's fork generation); the random pool itself is per thread.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

static int64_t
clock_ns(clockid_t id)
{
	struct timespec ts;

	/* clock_gettime cannot fail for these clocks on a valid timespec. */
	(void)clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
ms_now_ms(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000000;
}

int64_t
ms_now_us(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000;
}

int64_t
ms_wall_ms(void)
{
	return clock_ns(CLOCK_REALTIME) / 1000000;
}

/* splitmix64: a good 64-bit mixer for the last-resort fallback below. */
static uint64_t
mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/*
 * fill_random_raw fills |buf| with random bytes. getrandom(2) only fails on
 * kernels older than 3.17 or under a seccomp filter; then /dev/urandom, and
 * if even that is closed to us, a mix of the clocks, the pid and a process
 * counter: not secret, but still unique, which is what GUIDs are used for
 * here (event ids, order ids).
 */
static void
fill_random_raw(unsigned char *buf, size_t len)
{
	static atomic_uint_fast64_t counter;
	size_t got = 0;
	ssize_t n;
	int fd;

	while (got < len) {
		n = getrandom(buf + got, len - got, 0);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			break;
		}
		got += (size_t)n;
	}
	if (got == len) {
		return;
	}
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		while (got < len) {
			n = read(fd, buf + got, len - got);
			if (n < 0 && errno == EINTR) {
				continue;
			}
			if (n <= 0) {
				break;
			}
			got += (size_t)n;
		}
		close(fd);
	}
	while (got < len) {
		uint64_t r = mix64((uint64_t)clock_ns(CLOCK_REALTIME) ^
		                   mix64((uint64_t)getpid() << 32 ^
		                         atomic_fetch_add(&counter, 1)));
		for (int i = 0; i < 8 && got < len; i++) {
			buf[got++] = (unsigned char)(r >> (8 * i));
		}
	}
}

/*
 * A per-thread pool of random bytes for the small requests (GUIDs, trace
 * and span ids: several per HTTP request since tracing). Refilled 256
 * bytes at a time, it makes one getrandom(2) per ~16 ids instead of one per
 * id (bench/README.md: two syscalls per GET /basket were getrandom). The
 * bytes are the kernel's either way. A fork (not something monoshop does)
 * bumps |pool_gen|, so a child never reuses its parent's bytes.
 */
#define POOL_LEN 256

static _Thread_local struct {
	unsigned char b[POOL_LEN];
	size_t left;
	unsigned gen;
} pool;
static atomic_uint pool_gen = 1;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void
pool_forked(void)
{
	atomic_fetch_add(&pool_gen, 1);
}

static void
pool_init(void)
{
	(void)pthread_atfork(NULL, NULL, pool_forked);
}

static void
fill_random(unsigned char *buf, size_t len)
{
	unsigned gen;

	if (len > POOL_LEN / 4) {
		fill_random_raw(buf, len);
		return;
	}
	(void)pthread_once(&pool_once, pool_init);
	gen = atomic_load(&pool_gen);
	if (pool.left < len || pool.gen != gen) {
		fill_random_raw(pool.b, POOL_LEN);
		pool.left = POOL_LEN;
		pool.gen = gen;
	}
	memcpy(buf, pool.b + (POOL_LEN - pool.left), len);
	/* Used bytes are not kept around. */
	memset(pool.b + (POOL_LEN - pool.left), 0, len);
	pool.left -= len;
}

char *
ms_uuid_v4(char out[MS_UUID_STRLEN])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];
	size_t o = 0;

	fill_random(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	for (size_t i = 0; i < sizeof(b); i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10) {
			out[o++] = '-';
		}
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 0x0f];
	}
	out[o] = '\0';
	return out;
}

static bool
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	       (c >= 'A' && c <= 'F');
}

bool
ms_uuid_valid(const char *s)
{
	if (s == NULL) {
		return false;
	}
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-') {
				return false;
			}
		} else if (!is_hex(s[i])) {
			/* Also stops at the NUL of a short string. */
			return false;
		}
	}
	return s[36] == '\0';
}

bool
ms_uuid_is_nil(const char *s)
{
	if (!ms_uuid_valid(s)) {
		return false;
	}
	for (int i = 0; i < 36; i++) {
		if (s[i] != '0' && s[i] != '-') {
			return false;
		}
	}
	return true;
}

void
ms_uuid_normalize(char *s)
{
	assert(ms_uuid_valid(s));
	for (int i = 0; i < 36; i++) {
		if (s[i] >= 'A' && s[i] <= 'F') {
			s[i] = (char)(s[i] - 'A' + 'a');
		}
	}
}

/* put_digits writes the low |width| decimal digits of |v| (>= 0). */
static void
put_digits(char *p, int v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

char *
ms_time_rfc3339(int64_t wall_ms, char out[MS_TIME_STRLEN])
{
	/* Floor division so that times before 1970 still get a valid
	 * millisecond field. */
	int64_t sec = wall_ms / 1000;
	int64_t msec = wall_ms % 1000;
	time_t t;
	struct tm tm;

	if (msec < 0) {
		msec += 1000;
		sec -= 1;
	}
	t = (time_t)sec;
	if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999 ||
	    tm.tm_year + 1900 < 0) {
		/* Out of the 4-digit-year range RFC 3339 allows: clamp to the
		 * epoch rather than write something unparsable. */
		t = 0;
		msec = 0;
		(void)gmtime_r(&t, &tm);
	}
	put_digits(out, tm.tm_year + 1900, 4);
	out[4] = '-';
	put_digits(out + 5, tm.tm_mon + 1, 2);
	out[7] = '-';
	put_digits(out + 8, tm.tm_mday, 2);
	out[10] = 'T';
	put_digits(out + 11, tm.tm_hour, 2);
	out[13] = ':';
	put_digits(out + 14, tm.tm_min, 2);
	out[16] = ':';
	put_digits(out + 17, tm.tm_sec, 2);
	out[19] = '.';
	put_digits(out + 20, (int)msec, 3);
	out[23] = 'Z';
	out[24] = '\0';
	return out;
}

size_t
ms_strlcpy(char *dst, const char *src, size_t n)
{
	size_t len = strlen(src);

	if (n > 0) {
		size_t c = len < n - 1 ? len : n - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return len;
}

int
ms_hex4(const char *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9') {
			v |= c - '0';
		} else if (c >= 'a' && c <= 'f') {
			v |= c - 'a' + 10;
		} else if (c >= 'A' && c <= 'F') {
			v |= c - 'A' + 10;
		} else {
			return -1;
		}
	}
	return v;
}

bool
ms_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		unsigned c = p[i];
		unsigned cp;
		size_t n;

		if (c < 0x80) {
			if (c < 0x20 && c != '\t' && c != '\r' && c != '\n') {
				return false; /* NUL and other C0 controls */
			}
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			/* 0x80..0xc1: stray continuation or overlong 2-byte
			 * lead; 0xf5..0xff: beyond U+10FFFF or invalid. */
			return false;
		}
		if (len - i <= n) {
			return false; /* truncated sequence */
		}
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80) {
				return false;
			}
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
			return false; /* overlong, out of range, surrogate */
		}
		i += n + 1;
	}
	return true;
}

bool
ms_ct_equal(const char *secret, size_t secret_len, const char *given,
            size_t given_len)
{
	/* volatile: the compiler must not turn the loop into an early exit. */
	volatile unsigned char diff = secret_len != given_len;
	static const char none = '\0';

	if (given == NULL || given_len == 0) {
		given = &none;
		given_len = 1;
	}
	for (size_t i = 0; i < secret_len; i++) {
		/* Past the end of |given|: its first byte again, so every
		 * round reads and compares one byte either way. */
		size_t j = i < given_len ? i : 0;

		diff |= (unsigned char)(secret[i] ^ given[j]);
	}
	return diff == 0;
}
