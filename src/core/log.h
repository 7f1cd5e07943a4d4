/* SPDX-License-Identifier: MIT */
/*
 * Leveled logging to stderr, one line per call:
 *   2026-11-29T05:40:01.123Z INFO  http: listening on 127.0.0.1:8080
 * and, while the thread has a current trace context (core/trace.h), with
 * its trace id first:
 *   ... INFO  basket: trace=4bf92f3577b34da6a3ce929d0e0e4736 basket swn ...
 * Thread safe (one write(2) per line). The level is set once at start-up
 * from the config (log.level) and may be read from any thread.
 */
#ifndef MS_CORE_LOG_H
#define MS_CORE_LOG_H

enum ms_log_level {
	MS_LOG_DEBUG = 0,
	MS_LOG_INFO = 1,
	MS_LOG_WARN = 2,
	MS_LOG_ERROR = 3,
};

/* ms_log_set_level sets the lowest level that is written. */
void ms_log_set_level(enum ms_log_level level);

/* ms_log_parse_level parses "debug|info|warn|error"; returns 0 or MS_EINVAL. */
int ms_log_parse_level(const char *s, enum ms_log_level *out);

/* ms_log writes one line tagged with |subsys| if |level| is enabled. */
void ms_log(enum ms_log_level level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define MS_DEBUG(sub, ...) ms_log(MS_LOG_DEBUG, sub, __VA_ARGS__)
#define MS_INFO(sub, ...)  ms_log(MS_LOG_INFO, sub, __VA_ARGS__)
#define MS_WARN(sub, ...)  ms_log(MS_LOG_WARN, sub, __VA_ARGS__)
#define MS_ERROR(sub, ...) ms_log(MS_LOG_ERROR, sub, __VA_ARGS__)

#endif
