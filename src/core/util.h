/* SPDX-License-Identifier: MIT */
/*
 * Small shared helpers: clocks, GUIDs, timestamps, bounded string copies.
 * Every function here is thread safe.
 */
#ifndef MS_CORE_UTIL_H
#define MS_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MS_UUID_STRLEN 37 /* 36 characters + NUL */
#define MS_TIME_STRLEN 32

#define MS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ms_now_ms returns CLOCK_MONOTONIC in milliseconds (for deadlines). */
int64_t ms_now_ms(void);

/* ms_now_us returns CLOCK_MONOTONIC in microseconds (for latencies). */
int64_t ms_now_us(void);

/* ms_wall_ms returns the wall clock (Unix epoch) in milliseconds. */
int64_t ms_wall_ms(void);

/* ms_uuid_v4 writes a random (version 4) GUID in lower case to |out|, from
 * getrandom(2). Returns |out|. */
char *ms_uuid_v4(char out[MS_UUID_STRLEN]);

/*
 * ms_uuid_valid tells whether |s| is the 36-character GUID form
 * (8-4-4-4-12 hex digits, any case). ms_uuid_is_nil tells whether it is
 * the all-zero GUID.
 */
bool ms_uuid_valid(const char *s);
bool ms_uuid_is_nil(const char *s);

/* ms_uuid_normalize lower-cases a valid GUID in place. */
void ms_uuid_normalize(char *s);

/* ms_time_rfc3339 writes |wall_ms| as "2026-11-29T05:40:01.123Z". */
char *ms_time_rfc3339(int64_t wall_ms, char out[MS_TIME_STRLEN]);

/* ms_strlcpy copies at most |n|-1 bytes and always terminates; returns
 * strlen(src) (truncation when >= n). */
size_t ms_strlcpy(char *dst, const char *src, size_t n);

/* ms_utf8_valid tells whether |len| bytes of |s| are valid UTF-8 with no
 * NUL and no C0 control characters other than tab, CR and LF. */
bool ms_utf8_valid(const char *s, size_t len);

/* ms_hex4 returns the value of the 4 hex digits (any case) at |p| (4 bytes
 * are read), or -1 when one is not a hex digit: JSON's \uXXXX. */
int ms_hex4(const char *p);

/*
 * ms_ct_equal tells whether |given| (|given_len| bytes; NULL is empty)
 * equals |secret| (|secret_len| bytes), in a time that depends on
 * |secret_len| only: every byte of the secret is compared whatever
 * |given| holds, so the time does not tell how much of a guess was right.
 * For access keys (http.api_key, grpc.api_key).
 */
bool ms_ct_equal(const char *secret, size_t secret_len, const char *given,
                 size_t given_len);

#endif
