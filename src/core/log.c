/* SPDX-License-Identifier: MIT */
/*
 * Leveled logging to stderr (log.h). Each call formats its whole line —
 * timestamp, level, subsystem, message, newline — into a stack buffer and
 * hands it to the kernel with one write(2), so lines from different
 * threads never interleave (a write of at most PIPE_BUF bytes to a pipe is
 * atomic, and MS_LOG_LINE_MAX stays below it). Messages are made single
 * line: a log line is a record, and a newline inside a message (often from
 * a client's input) would forge a second one. A line written while the
 * thread has a trace context (trace.h) carries its trace id first,
 * "trace=<32 hex> ", so one request can be found in every process's log.
 *
 * Threads: any thread may log; the level is an atomic read with relaxed
 * order (a level change need not be seen at once).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "core/trace.h"
#include "core/util.h"

/* The longest line written, newline included; longer messages are cut and
 * end in "...". */
#define MS_LOG_LINE_MAX 2048

static atomic_int log_level = MS_LOG_INFO;

static const char *const level_names[] = {
    [MS_LOG_DEBUG] = "debug",
    [MS_LOG_INFO] = "info",
    [MS_LOG_WARN] = "warn",
    [MS_LOG_ERROR] = "error",
};

/* Padded to one width so messages line up. */
static const char *const level_tags[] = {
    [MS_LOG_DEBUG] = "DEBUG",
    [MS_LOG_INFO] = "INFO ",
    [MS_LOG_WARN] = "WARN ",
    [MS_LOG_ERROR] = "ERROR",
};

void
ms_log_set_level(enum ms_log_level level)
{
	if (level < MS_LOG_DEBUG) {
		level = MS_LOG_DEBUG;
	}
	if (level > MS_LOG_ERROR) {
		level = MS_LOG_ERROR;
	}
	atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

int
ms_log_parse_level(const char *s, enum ms_log_level *out)
{
	for (size_t i = 0; i < MS_ARRAY_SIZE(level_names); i++) {
		if (s != NULL && strcmp(s, level_names[i]) == 0) {
			*out = (enum ms_log_level)i;
			return 0;
		}
	}
	return MS_EINVAL;
}

/* sanitize turns the message part of a line into a single line: trailing
 * newlines go, inner CR/LF become spaces, other control bytes '?'. */
static size_t
sanitize(char *s, size_t len)
{
	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r')) {
		len--;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n' || c == '\r') {
			s[i] = ' ';
		} else if ((c < 0x20 && c != '\t') || c == 0x7f) {
			s[i] = '?';
		}
	}
	return len;
}

static void
write_all(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, buf, len);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return; /* nowhere left to report a logging failure */
		}
		buf += n;
		len -= (size_t)n;
	}
}

void
ms_log(enum ms_log_level level, const char *subsys, const char *fmt, ...)
{
	char line[MS_LOG_LINE_MAX];
	char ts[MS_TIME_STRLEN];
	const char *trace;
	int saved_errno = errno;       /* callers may log, then read errno */
	size_t cap = sizeof(line) - 1; /* room kept for the newline */
	size_t head, len;
	va_list ap;
	int n;

	if (level < MS_LOG_DEBUG || level > MS_LOG_ERROR ||
	    (int)level <
	        atomic_load_explicit(&log_level, memory_order_relaxed)) {
		return;
	}
	trace = ms_trace_id();
	n = snprintf(line, cap + 1, "%s %s %s: %s%s%s",
	             ms_time_rfc3339(ms_wall_ms(), ts), level_tags[level],
	             subsys != NULL ? subsys : "-", trace ? "trace=" : "",
	             trace ? trace : "", trace ? " " : "");
	if (n < 0) {
		goto out;
	}
	/* A subsystem name can not reasonably fill the line; if one does,
	 * the message still gets its share. */
	head = (size_t)n < cap / 2 ? (size_t)n : cap / 2;

	va_start(ap, fmt);
	n = vsnprintf(line + head, cap + 1 - head, fmt, ap);
	va_end(ap);
	if (n < 0) {
		n = 0;
	}
	len = (size_t)n;
	if (len > cap - head) {
		/* vsnprintf cut it: say so, at a UTF-8 character boundary so
		 * the line stays valid text. */
		len = cap - head - 3;
		while (len > 0 &&
		       ((unsigned char)line[head + len] & 0xc0) == 0x80) {
			len--;
		}
		memcpy(line + head + len, "...", 3);
		len += 3;
	}
	len = head + sanitize(line + head, len);
	line[len++] = '\n';
	write_all(line, len);
out:
	errno = saved_errno;
}
