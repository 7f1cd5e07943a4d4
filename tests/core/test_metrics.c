/* SPDX-License-Identifier: MIT */
/*
 * Tests of the metrics registry (metrics.h / metrics.c): counters,
 * cumulative histogram buckets, gauges, grouping under one # TYPE line,
 * the series bound, kind conflicts, concurrent updates, and a structural
 * check that every rendered line is valid text format 0.0.4.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/metrics.h"

static void
reset(void)
{
	ms_metrics_reset();
}

static char *
render(void)
{
	char *out = NULL;
	size_t len = 0;

	ck_assert_int_eq(ms_metrics_render(&out, &len), 0);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(strlen(out), len);
	return out;
}

static void
assert_has(const char *text, const char *line)
{
	char want[512];

	/* Match whole lines only. */
	snprintf(want, sizeof(want), "\n%s\n", line);
	ck_assert_msg(strstr(text, want) != NULL ||
	                  strncmp(text, want + 1, strlen(want + 1)) == 0,
	              "missing line '%s' in:\n%s", line, text);
}

static size_t
count_substr(const char *text, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(text, needle); p != NULL;
	     p = strstr(p + 1, needle)) {
		n++;
	}
	return n;
}

/*
 * check_exposition verifies the structure of the text: each family starts
 * with one # TYPE line (optionally after # HELP), names its family once,
 * and every sample line belongs to the family above it with a value that
 * parses as a number.
 */
static void
check_exposition(const char *text)
{
	char family[256] = "", type[32] = "";
	char seen[64][128];
	size_t nseen = 0;
	const char *p = text;

	ck_assert(text[0] == '\0' || text[strlen(text) - 1] == '\n');
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		char line[1024];
		size_t n;

		ck_assert_ptr_nonnull(nl);
		n = (size_t)(nl - p);
		ck_assert_uint_lt(n, sizeof(line));
		memcpy(line, p, n);
		line[n] = '\0';
		p = nl + 1;

		if (strncmp(line, "# HELP ", 7) == 0) {
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			ck_assert_int_eq(
			    sscanf(line, "# TYPE %255s %31s", family, type), 2);
			ck_assert(strcmp(type, "counter") == 0 ||
			          strcmp(type, "gauge") == 0 ||
			          strcmp(type, "histogram") == 0);
			for (size_t i = 0; i < nseen; i++) {
				ck_assert_msg(strcmp(seen[i], family) != 0,
				              "family %s twice", family);
			}
			ck_assert_uint_lt(nseen, 64);
			snprintf(seen[nseen++], sizeof(seen[0]), "%s", family);
			continue;
		}
		ck_assert_msg(line[0] != '#', "stray comment '%s'", line);
		{
			size_t fl = strlen(family);
			const char *rest = line + fl;
			const char *sp = strrchr(line, ' ');
			char *end;

			ck_assert_msg(fl > 0 && strncmp(line, family, fl) == 0,
			              "sample '%s' outside family %s", line,
			              family);
			if (strcmp(type, "histogram") == 0) {
				ck_assert(strncmp(rest, "_bucket{", 8) == 0 ||
				          strncmp(rest, "_sum", 4) == 0 ||
				          strncmp(rest, "_count", 6) == 0);
			} else {
				ck_assert(*rest == '{' || *rest == ' ');
			}
			ck_assert_ptr_nonnull(sp);
			(void)strtod(sp + 1, &end);
			ck_assert_msg(*end == '\0' && end != sp + 1,
			              "bad value in '%s'", line);
		}
	}
}

/* sample_value returns the value of the sample line starting |prefix|. */
static double
sample_value(const char *text, const char *prefix)
{
	char want[512];
	const char *p;

	snprintf(want, sizeof(want), "\n%s ", prefix);
	p = strstr(text, want);
	ck_assert_msg(p != NULL, "no sample '%s'", prefix);
	return strtod(p + strlen(want), NULL);
}

START_TEST(counters)
{
	char *out;

	ms_metrics_count("monoshop_http_requests_total",
	                 "route=\"/basket\",code=\"200\"", 2);
	ms_metrics_count("monoshop_http_requests_total",
	                 "route=\"/basket\",code=\"200\"", 3);
	ms_metrics_count("monoshop_http_requests_total",
	                 "route=\"/basket\",code=\"404\"", 1);
	ms_metrics_count("monoshop_events_published_total", "", 7);
	ms_metrics_count("monoshop_events_consumed_total", NULL, 1);
	out = render();
	check_exposition(out);
	assert_has(out, "# TYPE monoshop_http_requests_total counter");
	assert_has(out, "monoshop_http_requests_total{route=\"/basket\","
	                "code=\"200\"} 5");
	assert_has(out, "monoshop_http_requests_total{route=\"/basket\","
	                "code=\"404\"} 1");
	assert_has(out, "# TYPE monoshop_events_published_total counter");
	assert_has(out, "monoshop_events_published_total 7");
	assert_has(out, "monoshop_events_consumed_total 1");
	assert_has(out, "monoshop_metrics_dropped_total 0");
	free(out);
}
END_TEST

START_TEST(grouped_under_one_type)
{
	char *out;
	const char *a, *b, *c;

	ms_metrics_count("fam_a_total", "x=\"1\"", 1);
	ms_metrics_count("fam_b_total", "", 1);
	ms_metrics_count("fam_a_total", "x=\"2\"", 1);
	ms_metrics_observe("fam_h_seconds", "m=\"1\"", 0.1);
	ms_metrics_count("fam_a_total", "x=\"3\"", 1);
	ms_metrics_observe("fam_h_seconds", "m=\"2\"", 0.1);
	out = render();
	check_exposition(out);
	ck_assert_uint_eq(count_substr(out, "# TYPE fam_a_total counter"), 1);
	ck_assert_uint_eq(count_substr(out, "# TYPE fam_h_seconds histogram"),
	                  1);
	/* The three fam_a series sit together, in creation order. */
	a = strstr(out, "fam_a_total{x=\"1\"} 1\n");
	b = strstr(out, "fam_a_total{x=\"2\"} 1\n");
	c = strstr(out, "fam_a_total{x=\"3\"} 1\n");
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_eq(b, a + strlen("fam_a_total{x=\"1\"} 1\n"));
	ck_assert_ptr_eq(c, b + strlen("fam_a_total{x=\"2\"} 1\n"));
	free(out);
}
END_TEST

START_TEST(histogram_cumulative)
{
	static const char *const les[] = {
	    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
	    "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
	    "1",      "2.5",     "5",      "10",    "+Inf",
	};
	/* Observations: 0.00005, 0.0001 (on a bound: le is inclusive),
	 * 0.003 twice, 7, 20. */
	static const double want[] = {2, 2, 2, 2, 2, 4, 4, 4, 4,
	                              4, 4, 4, 4, 4, 4, 5, 6};
	char *out;
	double prev = 0;

	ms_metrics_observe("lat_seconds", "op=\"get\"", 0.00005);
	ms_metrics_observe("lat_seconds", "op=\"get\"", 0.0001);
	ms_metrics_observe("lat_seconds", "op=\"get\"", 0.003);
	ms_metrics_observe("lat_seconds", "op=\"get\"", 0.003);
	ms_metrics_observe("lat_seconds", "op=\"get\"", 7);
	ms_metrics_observe("lat_seconds", "op=\"get\"", 20);
	ms_metrics_observe("lat_seconds", "op=\"get\"", NAN); /* ignored */
	ms_metrics_observe("plain_seconds", "", -1);          /* clamped to 0 */
	out = render();
	check_exposition(out);
	assert_has(out, "# TYPE lat_seconds histogram");
	for (size_t i = 0; i < sizeof(les) / sizeof(les[0]); i++) {
		char prefix[128];
		double v;

		snprintf(prefix, sizeof(prefix),
		         "lat_seconds_bucket{op=\"get\",le=\"%s\"}", les[i]);
		v = sample_value(out, prefix);
		ck_assert_msg(v == want[i], "%s = %g, want %g", prefix, v,
		              want[i]);
		ck_assert(v >= prev);
		prev = v;
	}
	ck_assert(sample_value(out, "lat_seconds_count{op=\"get\"}") == 6);
	ck_assert(fabs(sample_value(out, "lat_seconds_sum{op=\"get\"}") -
	               27.00615) < 1e-9);
	assert_has(out, "plain_seconds_bucket{le=\"0.0001\"} 1");
	assert_has(out, "plain_seconds_bucket{le=\"+Inf\"} 1");
	assert_has(out, "plain_seconds_sum 0");
	assert_has(out, "plain_seconds_count 1");
	free(out);
}
END_TEST

static double
gauge_value(void *arg)
{
	return *(double *)arg;
}

START_TEST(gauges)
{
	static double depth = 42, other = 3.5, absent = -1;
	char *out;

	ck_assert_int_eq(ms_metrics_gauge_fn("monoshop_outbox_depth",
	                                     "module=\"basket\"",
	                                     "Events waiting in the outbox",
	                                     gauge_value, &depth),
	                 0);
	ck_assert_int_eq(ms_metrics_gauge_fn("monoshop_outbox_depth",
	                                     "module=\"ordering\"", NULL,
	                                     gauge_value, &other),
	                 0);
	ck_assert_int_eq(ms_metrics_gauge_fn("monoshop_nothing", "", NULL,
	                                     gauge_value, &absent),
	                 0);
	out = render();
	check_exposition(out);
	assert_has(out, "# HELP monoshop_outbox_depth Events waiting in the "
	                "outbox");
	assert_has(out, "# TYPE monoshop_outbox_depth gauge");
	assert_has(out, "monoshop_outbox_depth{module=\"basket\"} 42");
	assert_has(out, "monoshop_outbox_depth{module=\"ordering\"} 3.5");
	ck_assert_ptr_null(strstr(out, "monoshop_nothing"));
	ck_assert_uint_eq(count_substr(out, "# TYPE monoshop_outbox_depth"), 1);
	free(out);

	depth = 7;
	out = render();
	assert_has(out, "monoshop_outbox_depth{module=\"basket\"} 7");
	free(out);

	ms_metrics_gauge_remove(&depth);
	out = render();
	ck_assert_ptr_null(strstr(out, "module=\"basket\""));
	assert_has(out, "monoshop_outbox_depth{module=\"ordering\"} 3.5");
	free(out);
}
END_TEST

START_TEST(gauges_bounded)
{
	static double v = 1;
	int i;

	for (i = 0; i < MS_METRICS_MAX_GAUGES; i++) {
		ck_assert_int_eq(
		    ms_metrics_gauge_fn("g", "", NULL, gauge_value, &v), 0);
	}
	ck_assert_int_eq(ms_metrics_gauge_fn("g", "", NULL, gauge_value, &v),
	                 MS_EFULL);
	ms_metrics_gauge_remove(&v);
	ck_assert_int_eq(ms_metrics_gauge_fn("g", "", NULL, gauge_value, &v),
	                 0);
}
END_TEST

START_TEST(series_bounded)
{
	char labels[64];
	char *out;

	for (int i = 0; i < MS_METRICS_MAX_SERIES + 10; i++) {
		snprintf(labels, sizeof(labels), "i=\"%d\"", i);
		ms_metrics_count("many_total", labels, 1);
	}
	/* Existing series keep counting once the table is full. */
	ms_metrics_count("many_total", "i=\"0\"", 1);
	out = render();
	check_exposition(out);
	assert_has(out, "many_total{i=\"0\"} 2");
	snprintf(labels, sizeof(labels), "many_total{i=\"%d\"} 1",
	         MS_METRICS_MAX_SERIES - 1);
	assert_has(out, labels);
	snprintf(labels, sizeof(labels), "many_total{i=\"%d\"}",
	         MS_METRICS_MAX_SERIES);
	ck_assert_ptr_null(strstr(out, labels));
	assert_has(out, "monoshop_metrics_dropped_total 10");
	free(out);

	/* reset forgets everything. */
	ms_metrics_reset();
	out = render();
	ck_assert_ptr_null(strstr(out, "many_total"));
	assert_has(out, "monoshop_metrics_dropped_total 0");
	free(out);
}
END_TEST

START_TEST(bad_series_dropped)
{
	char *out;

	ms_metrics_count("mixed", "", 1);
	ms_metrics_observe("mixed", "", 0.1);          /* kind conflict */
	ms_metrics_observe("mixed", "a=\"b\"", 0.1);   /* same, other labels */
	ms_metrics_count("9starts_with_digit", "", 1); /* invalid name */
	ms_metrics_count("has space", "", 1);
	ms_metrics_count("", "", 1);
	out = render();
	check_exposition(out);
	assert_has(out, "# TYPE mixed counter");
	assert_has(out, "mixed 1");
	ck_assert_ptr_null(strstr(out, "mixed_bucket"));
	ck_assert_ptr_null(strstr(out, "starts_with_digit"));
	ck_assert_ptr_null(strstr(out, "has space"));
	assert_has(out, "monoshop_metrics_dropped_total 5");
	free(out);
}
END_TEST

#define NTHREADS 4
#define NITER    20000

static void *
hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < NITER; i++) {
		ms_metrics_count("hammer_total", "", 1);
		ms_metrics_observe("hammer_seconds", "", 0.001);
	}
	return NULL;
}

START_TEST(concurrent_updates)
{
	pthread_t th[NTHREADS];
	char *out;

	for (int i = 0; i < NTHREADS; i++) {
		ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, NULL), 0);
	}
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
	}
	out = render();
	ck_assert(sample_value(out, "hammer_total") == NTHREADS * NITER);
	ck_assert(sample_value(out, "hammer_seconds_count") ==
	          NTHREADS * NITER);
	ck_assert(sample_value(out, "hammer_seconds_bucket{le=\"0.001\"}") ==
	          NTHREADS * NITER);
	ck_assert(sample_value(out, "hammer_seconds_bucket{le=\"0.0005\"}") ==
	          0);
	free(out);
}
END_TEST

static Suite *
metrics_suite(void)
{
	Suite *s = suite_create("core_metrics");
	TCase *tc = tcase_create("metrics");

	tcase_add_checked_fixture(tc, reset, reset);
	tcase_add_test(tc, counters);
	tcase_add_test(tc, grouped_under_one_type);
	tcase_add_test(tc, histogram_cumulative);
	tcase_add_test(tc, gauges);
	tcase_add_test(tc, gauges_bounded);
	tcase_add_test(tc, series_bounded);
	tcase_add_test(tc, bad_series_dropped);
	tcase_add_test(tc, concurrent_updates);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(metrics_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
