/* SPDX-License-Identifier: MIT */
/*
 * Process-wide metrics (metrics.h), rendered in the Prometheus text format
 * 0.0.4 for GET /metrics.
 *
 * Counters and histograms live in one fixed table of MS_METRICS_MAX_SERIES
 * series, found through an open-addressing hash of name + labels, so the
 * hot path (ms_metrics_count / ms_metrics_observe on every request) is a
 * hash, one short critical section and no allocation once a series exists.
 * Gauges are callbacks registered by their owners and read at scrape time.
 *
 * Threads: any thread. |reg.mu| guards the series table; |gauges.lock| (a
 * rwlock) guards the gauge list and is held for reading while the gauge
 * callbacks run, so ms_metrics_gauge_remove waits for a scrape in progress
 * and the owner may free |arg| as soon as it returns. The two locks are
 * never held together, so a gauge callback may itself count or observe
 * (but must not register or remove gauges).
 * Memory: series names and labels are copied and owned by the table until
 * ms_metrics_reset; gauge strings belong to the caller.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>

#include "core/err.h"
#include "core/metrics.h"
#include "core/util.h"

#define NBUCKETS   16
#define NAME_MAX_  128
#define LABELS_MAX 512
/* A power of two at least twice the series bound: probes stay short. */
#define HASH_SLOTS   (2 * MS_METRICS_MAX_SERIES)
#define DROPPED_NAME "monoshop_metrics_dropped_total"

_Static_assert((HASH_SLOTS & (HASH_SLOTS - 1)) == 0, "HASH_SLOTS not 2^n");

/* Upper bounds (le) in seconds; the text is what the exposition shows. */
static const double bucket_le[NBUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10,
};
static const char *const bucket_text[NBUCKETS] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
    "0.05",   "0.1",     "0.25",   "0.5",   "1",      "2.5",   "5",    "10",
};

enum kind {
	KIND_COUNTER,
	KIND_HISTOGRAM,
};

struct series {
	char *name;   /* owned */
	char *labels; /* owned, "" for none */
	uint64_t hash;
	enum kind kind;
	uint64_t count;                 /* counter value / observations */
	uint64_t buckets[NBUCKETS + 1]; /* per bucket, not cumulative; the
	                                   last one is (10 s, +Inf) */
	double sum;                     /* histogram: sum of observations */
};

static struct {
	pthread_mutex_t mu;
	struct series series[MS_METRICS_MAX_SERIES];
	size_t nseries;
	uint16_t slots[HASH_SLOTS]; /* 1 + index into series; 0 = empty */
	uint64_t dropped;
} reg = {.mu = PTHREAD_MUTEX_INITIALIZER};

struct gauge {
	const char *name;
	const char *labels;
	const char *help;
	double (*fn)(void *arg);
	void *arg;
};

static struct {
	pthread_rwlock_t lock;
	struct gauge g[MS_METRICS_MAX_GAUGES];
	size_t n;
} gauges = {.lock = PTHREAD_RWLOCK_INITIALIZER};

static uint64_t
hash_key(const char *name, const char *labels)
{
	/* FNV-1a over name, a separator no name contains, and labels. */
	uint64_t h = 0xcbf29ce484222325ULL;
	const unsigned char *p;

	for (p = (const unsigned char *)name; *p != '\0'; p++) {
		h = (h ^ *p) * 0x100000001b3ULL;
	}
	h = (h ^ 0xff) * 0x100000001b3ULL;
	for (p = (const unsigned char *)labels; *p != '\0'; p++) {
		h = (h ^ *p) * 0x100000001b3ULL;
	}
	return h;
}

static bool
valid_name(const char *s)
{
	size_t n = 0;

	if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
	      *s == '_' || *s == ':')) {
		return false;
	}
	for (; *s != '\0'; s++, n++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == ':')) {
			return false;
		}
	}
	return n <= NAME_MAX_;
}

/*
 * lookup finds or adds the series |name|{|labels|} of |kind|. Called with
 * reg.mu held. Returns NULL (and counts a drop) when the table is full,
 * the name is not a valid metric name, or the name is already used by a
 * series of another kind (that would render as invalid exposition).
 */
static struct series *
lookup(const char *name, const char *labels, uint64_t h, enum kind kind)
{
	size_t slot = (size_t)h & (HASH_SLOTS - 1);
	struct series *s;

	for (;;) {
		uint16_t ix = reg.slots[slot];
		if (ix == 0) {
			break;
		}
		s = &reg.series[ix - 1];
		if (s->hash == h && strcmp(s->name, name) == 0 &&
		    strcmp(s->labels, labels) == 0) {
			if (s->kind != kind) {
				reg.dropped++;
				return NULL;
			}
			return s;
		}
		slot = (slot + 1) & (HASH_SLOTS - 1);
	}

	/* A new series: rare, so the checks below may be slow. */
	if (reg.nseries == MS_METRICS_MAX_SERIES || !valid_name(name) ||
	    strlen(labels) > LABELS_MAX) {
		reg.dropped++;
		return NULL;
	}
	for (size_t i = 0; i < reg.nseries; i++) {
		if (reg.series[i].kind != kind &&
		    strcmp(reg.series[i].name, name) == 0) {
			reg.dropped++;
			return NULL;
		}
	}
	s = &reg.series[reg.nseries];
	memset(s, 0, sizeof(*s));
	s->name = strdup(name);
	s->labels = strdup(labels);
	if (s->name == NULL || s->labels == NULL) {
		free(s->name);
		free(s->labels);
		s->name = s->labels = NULL;
		reg.dropped++;
		return NULL;
	}
	s->hash = h;
	s->kind = kind;
	reg.slots[slot] = (uint16_t)(++reg.nseries);
	return s;
}

void
ms_metrics_count(const char *name, const char *labels, uint64_t delta)
{
	struct series *s;
	uint64_t h;

	if (labels == NULL) {
		labels = "";
	}
	h = hash_key(name, labels);
	pthread_mutex_lock(&reg.mu);
	s = lookup(name, labels, h, KIND_COUNTER);
	if (s != NULL) {
		s->count += delta;
	}
	pthread_mutex_unlock(&reg.mu);
}

void
ms_metrics_observe(const char *name, const char *labels, double seconds)
{
	struct series *s;
	size_t b = 0;
	uint64_t h;

	if (isnan(seconds)) {
		return; /* not an observation of anything */
	}
	if (seconds < 0) {
		seconds = 0; /* a clock step; count it as instant */
	}
	while (b < NBUCKETS && seconds > bucket_le[b]) {
		b++;
	}
	if (labels == NULL) {
		labels = "";
	}
	h = hash_key(name, labels);
	pthread_mutex_lock(&reg.mu);
	s = lookup(name, labels, h, KIND_HISTOGRAM);
	if (s != NULL) {
		s->buckets[b]++;
		s->count++;
		s->sum += seconds;
	}
	pthread_mutex_unlock(&reg.mu);
}

int
ms_metrics_gauge_fn(const char *name, const char *labels, const char *help,
                    double (*fn)(void *arg), void *arg)
{
	int rc = 0;

	pthread_rwlock_wrlock(&gauges.lock);
	if (gauges.n == MS_METRICS_MAX_GAUGES) {
		rc = MS_EFULL;
	} else {
		gauges.g[gauges.n++] = (struct gauge){
		    .name = name,
		    .labels = labels != NULL ? labels : "",
		    .help = help,
		    .fn = fn,
		    .arg = arg,
		};
	}
	pthread_rwlock_unlock(&gauges.lock);
	return rc;
}

void
ms_metrics_gauge_remove(void *arg)
{
	size_t o = 0;

	pthread_rwlock_wrlock(&gauges.lock);
	for (size_t i = 0; i < gauges.n; i++) {
		if (gauges.g[i].arg != arg) {
			gauges.g[o++] = gauges.g[i];
		}
	}
	gauges.n = o;
	pthread_rwlock_unlock(&gauges.lock);
}

/* ---- rendering ---- */

struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void bprintf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom) {
		return;
	}
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap * 2 + (size_t)n;
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

/* fmt_double writes a sample value as Prometheus parses it. */
static const char *
fmt_double(double v, char *buf, size_t len)
{
	if (isnan(v)) {
		return "NaN";
	}
	if (isinf(v)) {
		return v > 0 ? "+Inf" : "-Inf";
	}
	(void)snprintf(buf, len, "%.17g", v);
	return buf;
}

/* Order series by name, keeping the order of creation within a name. */
static int
cmp_series(const void *a, const void *b)
{
	size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
	int c = strcmp(reg.series[ia].name, reg.series[ib].name);

	if (c != 0) {
		return c;
	}
	return ia < ib ? -1 : ia > ib;
}

static int
cmp_gauge(const void *a, const void *b)
{
	size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
	int c = strcmp(gauges.g[ia].name, gauges.g[ib].name);

	if (c != 0) {
		return c;
	}
	return ia < ib ? -1 : ia > ib;
}

/* render_series writes the counters and histograms; reg.mu held. */
static void
render_series(struct buf *b, size_t *order)
{
	const char *prev = NULL;
	char num[40];

	for (size_t i = 0; i < reg.nseries; i++) {
		order[i] = i;
	}
	qsort(order, reg.nseries, sizeof(*order), cmp_series);
	for (size_t i = 0; i < reg.nseries; i++) {
		const struct series *s = &reg.series[order[i]];
		const char *sep = s->labels[0] != '\0' ? "," : "";
		uint64_t cum = 0;

		if (prev == NULL || strcmp(prev, s->name) != 0) {
			bprintf(b, "# TYPE %s %s\n", s->name,
			        s->kind == KIND_COUNTER ? "counter"
			                                : "histogram");
			prev = s->name;
		}
		if (s->kind == KIND_COUNTER) {
			if (s->labels[0] != '\0') {
				bprintf(b, "%s{%s} %" PRIu64 "\n", s->name,
				        s->labels, s->count);
			} else {
				bprintf(b, "%s %" PRIu64 "\n", s->name,
				        s->count);
			}
			continue;
		}
		for (size_t k = 0; k <= NBUCKETS; k++) {
			cum += s->buckets[k];
			bprintf(b, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n",
			        s->name, s->labels, sep,
			        k < NBUCKETS ? bucket_text[k] : "+Inf", cum);
		}
		if (s->labels[0] != '\0') {
			bprintf(b, "%s_sum{%s} %s\n", s->name, s->labels,
			        fmt_double(s->sum, num, sizeof(num)));
			bprintf(b, "%s_count{%s} %" PRIu64 "\n", s->name,
			        s->labels, s->count);
		} else {
			bprintf(b, "%s_sum %s\n", s->name,
			        fmt_double(s->sum, num, sizeof(num)));
			bprintf(b, "%s_count %" PRIu64 "\n", s->name, s->count);
		}
	}
	bprintf(b,
	        "# TYPE " DROPPED_NAME " counter\n" DROPPED_NAME " %" PRIu64
	        "\n",
	        reg.dropped);
}

/* help_text writes |help| escaped as the format asks (\\ and \n). */
static void
help_text(struct buf *b, const char *name, const char *help)
{
	bprintf(b, "# HELP %s ", name);
	for (const char *c = help; *c != '\0'; c++) {
		if (*c == '\\') {
			bprintf(b, "\\\\");
		} else if (*c == '\n') {
			bprintf(b, "\\n");
		} else {
			bprintf(b, "%c", *c);
		}
	}
	bprintf(b, "\n");
}

/* render_gauges runs the gauge callbacks; gauges.lock held for reading. */
static void
render_gauges(struct buf *b)
{
	size_t order[MS_METRICS_MAX_GAUGES];
	const char *prev = NULL;
	char num[40];

	for (size_t i = 0; i < gauges.n; i++) {
		order[i] = i;
	}
	qsort(order, gauges.n, sizeof(*order), cmp_gauge);
	for (size_t i = 0; i < gauges.n; i++) {
		const struct gauge *g = &gauges.g[order[i]];
		double v = g->fn(g->arg);

		if (v < 0) {
			continue; /* the owner has no value to give now */
		}
		if (prev == NULL || strcmp(prev, g->name) != 0) {
			if (g->help != NULL && g->help[0] != '\0') {
				help_text(b, g->name, g->help);
			}
			bprintf(b, "# TYPE %s gauge\n", g->name);
			prev = g->name;
		}
		if (g->labels[0] != '\0') {
			bprintf(b, "%s{%s} %s\n", g->name, g->labels,
			        fmt_double(v, num, sizeof(num)));
		} else {
			bprintf(b, "%s %s\n", g->name,
			        fmt_double(v, num, sizeof(num)));
		}
	}
}

int
ms_metrics_render(char **out, size_t *len)
{
	struct buf b = {.cap = 4096};
	size_t *order;

	b.p = malloc(b.cap);
	order = malloc(sizeof(*order) * MS_METRICS_MAX_SERIES);
	if (b.p == NULL || order == NULL) {
		free(b.p);
		free(order);
		return MS_ENOMEM;
	}
	b.p[0] = '\0';

	pthread_mutex_lock(&reg.mu);
	render_series(&b, order);
	pthread_mutex_unlock(&reg.mu);
	free(order);

	pthread_rwlock_rdlock(&gauges.lock);
	render_gauges(&b);
	pthread_rwlock_unlock(&gauges.lock);

	if (b.oom) {
		free(b.p);
		return MS_ENOMEM;
	}
	*out = b.p;
	if (len != NULL) {
		*len = b.len;
	}
	return 0;
}

void
ms_metrics_reset(void)
{
	pthread_mutex_lock(&reg.mu);
	for (size_t i = 0; i < reg.nseries; i++) {
		free(reg.series[i].name);
		free(reg.series[i].labels);
	}
	memset(reg.series, 0, sizeof(reg.series));
	memset(reg.slots, 0, sizeof(reg.slots));
	reg.nseries = 0;
	reg.dropped = 0;
	pthread_mutex_unlock(&reg.mu);

	pthread_rwlock_wrlock(&gauges.lock);
	gauges.n = 0;
	pthread_rwlock_unlock(&gauges.lock);
}
