/* SPDX-License-Identifier: MIT */
/*
 * Tests of the logger (log.h / log.c): the line format, level filtering,
 * newline stripping, the trace id prefix of a thread with a trace
 * context, truncation of long messages at a character boundary,
 * and whole lines under concurrent logging. stderr is redirected to a
 * temporary file for the duration of each capture.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "core/trace.h"
#include "core/util.h"

struct capture {
	int fd;
	int saved;
	char path[256];
};

static void
capture_begin(struct capture *c)
{
	const char *dir = getenv("TMPDIR");

	snprintf(c->path, sizeof(c->path), "%s/mslogXXXXXX",
	         dir != NULL ? dir : "/tmp");
	c->fd = mkstemp(c->path);
	ck_assert_int_ge(c->fd, 0);
	ck_assert_int_eq(fcntl(c->fd, F_SETFL, O_APPEND), 0);
	c->saved = dup(STDERR_FILENO);
	ck_assert_int_ge(c->saved, 0);
	ck_assert_int_eq(dup2(c->fd, STDERR_FILENO), STDERR_FILENO);
}

/* capture_end restores stderr and returns what was written (malloc'd). */
static char *
capture_end(struct capture *c, size_t *len)
{
	char *buf;
	off_t size;

	ck_assert_int_eq(dup2(c->saved, STDERR_FILENO), STDERR_FILENO);
	close(c->saved);
	size = lseek(c->fd, 0, SEEK_END);
	ck_assert_int_ge(size, 0);
	buf = malloc((size_t)size + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(pread(c->fd, buf, (size_t)size, 0), size);
	buf[size] = '\0';
	close(c->fd);
	unlink(c->path);
	*len = (size_t)size;
	return buf;
}

static void
assert_matches(const char *s, const char *re)
{
	regex_t rx;

	ck_assert_int_eq(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
	ck_assert_msg(regexec(&rx, s, 0, NULL, 0) == 0, "'%s' !~ /%s/", s, re);
	regfree(&rx);
}

#define TS "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

START_TEST(line_format)
{
	struct capture c;
	size_t len;
	char *out;

	ms_log_set_level(MS_LOG_DEBUG);
	capture_begin(&c);
	MS_INFO("http", "listening on %s:%d", "127.0.0.1", 8080);
	MS_ERROR("store", "boom");
	MS_DEBUG("bus", "d");
	MS_WARN(NULL, "w");
	out = capture_end(&c, &len);
	assert_matches(out,
	               "^" TS " INFO  http: listening on 127.0.0.1:8080\n" TS
	               " ERROR store: boom\n" TS " DEBUG bus: d\n" TS
	               " WARN  -: w\n$");
	free(out);
}
END_TEST

/* A line written while the thread has a trace context carries its trace
 * id, and only the thread that set it; clearing it ends the prefix. */
static void *
log_untraced(void *arg)
{
	(void)arg;
	MS_INFO("other", "no trace here");
	return NULL;
}

START_TEST(trace_prefix)
{
	static const char tp[] =
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	struct capture c;
	pthread_t th;
	size_t len;
	char *out;

	ms_log_set_level(MS_LOG_INFO);
	capture_begin(&c);
	ck_assert_int_eq(ms_trace_set(tp), 0);
	MS_INFO("basket", "basket %s checked out", "swn");
	ck_assert_int_eq(pthread_create(&th, NULL, log_untraced, NULL), 0);
	pthread_join(th, NULL);
	ms_trace_clear();
	MS_INFO("basket", "after");
	out = capture_end(&c, &len);
	assert_matches(out,
	               "^" TS " INFO  basket: trace="
	               "4bf92f3577b34da6a3ce929d0e0e4736 basket swn "
	               "checked out\n" TS " INFO  other: no trace here\n" TS
	               " INFO  basket: after\n$");
	free(out);
}
END_TEST

START_TEST(level_filter)
{
	struct capture c;
	size_t len;
	char *out;

	ms_log_set_level(MS_LOG_WARN);
	capture_begin(&c);
	MS_DEBUG("t", "no");
	MS_INFO("t", "no");
	MS_WARN("t", "yes1");
	MS_ERROR("t", "yes2");
	out = capture_end(&c, &len);
	ck_assert_ptr_null(strstr(out, "no"));
	ck_assert_ptr_nonnull(strstr(out, "yes1"));
	ck_assert_ptr_nonnull(strstr(out, "yes2"));
	free(out);
	ms_log_set_level(MS_LOG_INFO);
}
END_TEST

START_TEST(newlines_stripped)
{
	struct capture c;
	size_t len;
	char *out;

	ms_log_set_level(MS_LOG_INFO);
	capture_begin(&c);
	MS_INFO("t", "a\nINFO forged\r\nb\x1b[31m\n\n");
	out = capture_end(&c, &len);
	assert_matches(out, "^" TS " INFO  t: a INFO forged  b\\?\\[31m\n$");
	free(out);
}
END_TEST

START_TEST(long_message_truncated)
{
	struct capture c;
	size_t len;
	char *out;
	char *big = malloc(10001);
	/* 3000 two-byte characters: the cut must not split one. */
	char *wide = malloc(6001);

	ck_assert_ptr_nonnull(big);
	ck_assert_ptr_nonnull(wide);
	memset(big, 'x', 10000);
	big[10000] = '\0';
	for (int i = 0; i < 3000; i++) {
		wide[2 * i] = (char)0xc3;
		wide[2 * i + 1] = (char)0xa9;
	}
	wide[6000] = '\0';
	ms_log_set_level(MS_LOG_INFO);
	capture_begin(&c);
	MS_INFO("t", "%s", big);
	out = capture_end(&c, &len);
	ck_assert_uint_le(len, 2048);
	ck_assert_uint_gt(len, 1900);
	ck_assert_int_eq(out[len - 1], '\n');
	ck_assert_int_eq(memcmp(out + len - 4, "...\n", 4), 0);
	ck_assert_ptr_null(memchr(out, '\n', len - 1));
	free(out);

	for (int shift = 0; shift < 2; shift++) {
		capture_begin(&c);
		MS_INFO(shift ? "tt" : "t", "%s", wide);
		out = capture_end(&c, &len);
		ck_assert_uint_le(len, 2048);
		ck_assert_int_eq(memcmp(out + len - 4, "...\n", 4), 0);
		ck_assert(ms_utf8_valid(out, len));
		free(out);
	}
	free(big);
	free(wide);
}
END_TEST

START_TEST(errno_preserved)
{
	struct capture c;
	size_t len;

	capture_begin(&c);
	errno = EBADF;
	MS_ERROR("t", "x");
	ck_assert_int_eq(errno, EBADF);
	free(capture_end(&c, &len));
}
END_TEST

START_TEST(parse_level)
{
	enum ms_log_level l = MS_LOG_ERROR;

	ck_assert_int_eq(ms_log_parse_level("debug", &l), 0);
	ck_assert_int_eq(l, MS_LOG_DEBUG);
	ck_assert_int_eq(ms_log_parse_level("info", &l), 0);
	ck_assert_int_eq(l, MS_LOG_INFO);
	ck_assert_int_eq(ms_log_parse_level("warn", &l), 0);
	ck_assert_int_eq(l, MS_LOG_WARN);
	ck_assert_int_eq(ms_log_parse_level("error", &l), 0);
	ck_assert_int_eq(l, MS_LOG_ERROR);
	ck_assert_int_eq(ms_log_parse_level("verbose", &l), MS_EINVAL);
	ck_assert_int_eq(ms_log_parse_level("", &l), MS_EINVAL);
	ck_assert_int_eq(ms_log_parse_level(NULL, &l), MS_EINVAL);
	ck_assert_int_eq(l, MS_LOG_ERROR);
}
END_TEST

#define NTHREADS 4
#define NLINES   300

static void *
logger(void *arg)
{
	long id = (long)arg;

	for (int i = 0; i < NLINES; i++) {
		MS_INFO("thr", "thread %ld line %d %s", id, i,
		        "padding padding padding padding padding padding");
	}
	return NULL;
}

START_TEST(concurrent_lines_whole)
{
	pthread_t th[NTHREADS];
	struct capture c;
	regex_t rx;
	size_t len, lines = 0;
	char *out, *line, *save = NULL;

	ms_log_set_level(MS_LOG_INFO);
	capture_begin(&c);
	for (long i = 0; i < NTHREADS; i++) {
		ck_assert_int_eq(
		    pthread_create(&th[i], NULL, logger, (void *)i), 0);
	}
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
	}
	out = capture_end(&c, &len);
	ck_assert_int_eq(regcomp(&rx,
	                         "^" TS " INFO  thr: thread [0-9] line [0-9]+ "
	                         "padding( padding){5}$",
	                         REG_EXTENDED | REG_NOSUB),
	                 0);
	for (line = strtok_r(out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		ck_assert_msg(regexec(&rx, line, 0, NULL, 0) == 0,
		              "torn line '%s'", line);
		lines++;
	}
	ck_assert_uint_eq(lines, NTHREADS * NLINES);
	regfree(&rx);
	free(out);
}
END_TEST

static Suite *
log_suite(void)
{
	Suite *s = suite_create("core_log");
	TCase *tc = tcase_create("log");

	tcase_add_test(tc, line_format);
	tcase_add_test(tc, trace_prefix);
	tcase_add_test(tc, level_filter);
	tcase_add_test(tc, newlines_stripped);
	tcase_add_test(tc, long_message_truncated);
	tcase_add_test(tc, errno_preserved);
	tcase_add_test(tc, parse_level);
	tcase_add_test(tc, concurrent_lines_whole);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(log_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
