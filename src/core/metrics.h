/* SPDX-License-Identifier: MIT */
/*
 * Process-wide metrics in the Prometheus text format: counters and latency
 * histograms keyed by a metric name plus a label string, and gauges read
 * through callbacks at scrape time (outbox depth, ...).
 *
 * Threads: every function may be called from any thread; series are found
 * in a small locked table (one mutex, held for a lookup and an add). The set
 * of series is bounded (MS_METRICS_MAX_SERIES); past it, new series are
 * dropped and counted in monoshop_metrics_dropped_total.
 */
#ifndef MS_CORE_METRICS_H
#define MS_CORE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define MS_METRICS_MAX_SERIES 512
/* Gauges are registered by their owners (one per outbox, ...), not made
 * on the fly, so a small bound is plenty; past it, ms_metrics_gauge_fn
 * returns MS_EFULL. */
#define MS_METRICS_MAX_GAUGES 64

/*
 * ms_metrics_count adds |delta| to the counter |name| with |labels|, a
 * Prometheus label body without braces (`route="/basket",code="200"`) or
 * "" for none. |name| and |labels| are copied.
 */
void ms_metrics_count(const char *name, const char *labels, uint64_t delta);

/*
 * ms_metrics_observe records one observation of |seconds| in the histogram
 * |name| (buckets from 100 µs to 10 s) with |labels|.
 */
void ms_metrics_observe(const char *name, const char *labels, double seconds);

/*
 * ms_metrics_gauge_fn registers a gauge read at scrape time: |fn| returns the
 * value, or a negative number to skip it. |name|/|labels| must be static or
 * outlive the registration. Returns 0 or MS_EFULL.
 */
int ms_metrics_gauge_fn(const char *name, const char *labels, const char *help,
                        double (*fn)(void *arg), void *arg);

/* ms_metrics_gauge_remove drops every gauge registered with |arg|. */
void ms_metrics_gauge_remove(void *arg);

/*
 * ms_metrics_render writes all series to a malloc'd NUL-terminated string
 * (*out, owned by the caller) in text format 0.0.4. Returns 0 or MS_ENOMEM.
 */
int ms_metrics_render(char **out, size_t *len);

/* ms_metrics_reset forgets every series (tests only). */
void ms_metrics_reset(void);

#endif
