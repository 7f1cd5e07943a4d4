/* SPDX-License-Identifier: MIT */
/*
 * The thread's current W3C trace context (trace.h): parsing and validating
 * `traceparent`, making roots and children, and the thread-local slot the
 * edges set and the logger reads.
 *
 * New ids come from ms_uuid_v4 (getrandom): a GUID's 32 hex digits make a
 * trace id and its first 16 a parent id. Neither can be all zeros (the
 * GUID's version digit is 4), which the W3C form forbids.
 *
 * Threads: |cur| is _Thread_local, so no locking; everything else is pure.
 */
#include "core/trace.h"

#include <string.h>

#include "core/err.h"
#include "core/util.h"

#define ID_OFF     3  /* trace id: after "00-" */
#define PARENT_OFF 36 /* parent id: after the trace id and '-' */
#define FLAGS_OFF  53 /* flags: after the parent id and '-' */
#define PARENT_LEN 16

static _Thread_local struct {
	char tp[MS_TRACEPARENT_SIZE]; /* "" when none */
	char id[MS_TRACE_ID_SIZE];
} cur;

static bool
hex_lower(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f'))) {
			return false;
		}
	}
	return true;
}

static bool
all_zero(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '0') {
			return false;
		}
	}
	return true;
}

int
ms_trace_parse(const char *s, char out[MS_TRACEPARENT_SIZE])
{
	size_t n;

	out[0] = '\0';
	if (s == NULL) {
		return MS_EINVAL;
	}
	/* Bounded: only the first 56 characters are ever looked at. */
	n = strnlen(s, MS_TRACEPARENT_SIZE);
	if (n < MS_TRACEPARENT_LEN || s[2] != '-' || s[35] != '-' ||
	    s[52] != '-' || !hex_lower(s, 2) || strncmp(s, "ff", 2) == 0 ||
	    !hex_lower(s + ID_OFF, MS_TRACE_ID_LEN) ||
	    all_zero(s + ID_OFF, MS_TRACE_ID_LEN) ||
	    !hex_lower(s + PARENT_OFF, PARENT_LEN) ||
	    all_zero(s + PARENT_OFF, PARENT_LEN) ||
	    !hex_lower(s + FLAGS_OFF, 2)) {
		return MS_EINVAL;
	}
	/* Version 00 is exactly 55 characters; a later version may go on,
	 * after a '-', with fields we do not know (and drop). */
	if (n > MS_TRACEPARENT_LEN &&
	    (strncmp(s, "00", 2) == 0 || s[MS_TRACEPARENT_LEN] != '-')) {
		return MS_EINVAL;
	}
	memcpy(out, s, MS_TRACEPARENT_LEN);
	out[0] = '0';
	out[1] = '0';
	out[MS_TRACEPARENT_LEN] = '\0';
	return 0;
}

/* hex_random writes |n| (at most 32) random lower-case hex digits. */
static void
hex_random(char *out, size_t n)
{
	char uuid[MS_UUID_STRLEN];
	size_t o = 0;

	ms_uuid_v4(uuid);
	for (size_t i = 0; uuid[i] != '\0' && o < n; i++) {
		if (uuid[i] != '-') {
			out[o++] = uuid[i];
		}
	}
}

char *
ms_trace_new_root(char out[MS_TRACEPARENT_SIZE])
{
	memcpy(out, "00-", 3);
	hex_random(out + ID_OFF, MS_TRACE_ID_LEN);
	out[PARENT_OFF - 1] = '-';
	hex_random(out + PARENT_OFF, PARENT_LEN);
	out[FLAGS_OFF - 1] = '-';
	/* Sampled: our logs record it. */
	memcpy(out + FLAGS_OFF, "01", 3);
	return out;
}

char *
ms_trace_new_child(const char *parent, char out[MS_TRACEPARENT_SIZE])
{
	char p[MS_TRACEPARENT_SIZE];

	if (parent == NULL) {
		parent = ms_trace_get();
	}
	if (ms_trace_parse(parent, p) != 0) {
		return ms_trace_new_root(out);
	}
	memcpy(out, p, MS_TRACEPARENT_SIZE);
	hex_random(out + PARENT_OFF, PARENT_LEN);
	return out;
}

int
ms_trace_set(const char *traceparent)
{
	char tp[MS_TRACEPARENT_SIZE];

	/* Through a copy: |traceparent| may be ms_trace_get()'s string. */
	if (ms_trace_parse(traceparent, tp) != 0) {
		ms_trace_clear();
		return MS_EINVAL;
	}
	memcpy(cur.tp, tp, MS_TRACEPARENT_SIZE);
	memcpy(cur.id, tp + ID_OFF, MS_TRACE_ID_LEN);
	cur.id[MS_TRACE_ID_LEN] = '\0';
	return 0;
}

const char *
ms_trace_begin(const char *traceparent)
{
	char tp[MS_TRACEPARENT_SIZE];

	if (ms_trace_set(traceparent) != 0) {
		(void)ms_trace_set(ms_trace_new_root(tp));
	}
	return cur.tp;
}

const char *
ms_trace_get(void)
{
	return cur.tp[0] != '\0' ? cur.tp : NULL;
}

const char *
ms_trace_id(void)
{
	return cur.tp[0] != '\0' ? cur.id : NULL;
}

void
ms_trace_clear(void)
{
	cur.tp[0] = '\0';
	cur.id[0] = '\0';
}

void
ms_trace_save(char saved[MS_TRACEPARENT_SIZE])
{
	memcpy(saved, cur.tp, MS_TRACEPARENT_SIZE);
}

void
ms_trace_restore(const char saved[MS_TRACEPARENT_SIZE])
{
	if (saved[0] == '\0') {
		ms_trace_clear();
	} else {
		(void)ms_trace_set(saved);
	}
}
