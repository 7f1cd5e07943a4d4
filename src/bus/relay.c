/* SPDX-License-Identifier: MIT */
/*
 * The outbox relay (see relay.h). One thread per store. Each round reads up
 * to |batch| pending rows, publishes them all (pipelined: the transport
 * confirms them in any order), waits for every confirm, then marks the
 * confirmed rows sent. A row whose publish failed stays pending and the
 * relay backs off exponentially (100 ms doubling to 5 s) before the next
 * round; a row the consumer rejected as poison is marked dead (kept, never
 * deleted). Sent rows are pruned after an hour.
 *
 * Metrics: monoshop_events_published_total{type} per confirmed event;
 * monoshop_events_retried_total{type} per event left pending for another
 * round; monoshop_events_failed_total{type} per failed publish (refused,
 * not confirmed, or rejected as poison and kept as dead); the gauges
 * monoshop_outbox_pending{store} and monoshop_outbox_oldest_age_seconds.
 *
 * Threads: the relay thread does everything except ev->done, which the
 * transport calls on its own thread; done only records the result and
 * signals. Stop is called from the main thread.
 */
#include "bus/relay.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/trace.h"
#include "core/util.h"
#include "store/store.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define PRUNE_EVERY_MS 60000
#define KEEP_SENT_MS   3600000

struct pending {
	struct bus_event ev;
	struct store_outbox_row row;
	struct bus_relay *relay;
	int rc;
};

struct bus_relay {
	struct bus *bus;
	struct store *st;
	struct bus_relay_opts opts;
	pthread_t thread;
	atomic_bool stopping;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	size_t outstanding;            /* publishes not yet confirmed */
	struct pending *slots;         /* one per row in flight */
	struct store_outbox_row *rows; /* fetch buffer, moved into slots */
	char gauge_labels[64];
};

static void
published(struct bus_event *ev, int rc)
{
	struct pending *p = ev->arg;
	struct bus_relay *r = p->relay;

	pthread_mutex_lock(&r->mtx);
	p->rc = rc;
	r->outstanding--;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mtx);
}

static void
count(const char *name, const char *type)
{
	char labels[128];

	snprintf(labels, sizeof(labels), "type=\"%s\"", type);
	ms_metrics_count(name, labels, 1);
}

/* One round. Returns the number of rows handled, or a negative MS_E* when
 * a publish failed (the caller backs off). */
static int
round_once(struct bus_relay *r)
{
	size_t n = 0;
	size_t started = 0;
	int64_t *sent = NULL; /* seq of each confirmed row */
	size_t nsent = 0;
	int failed = 0;
	int rc;

	rc = store_outbox_fetch(r->st, 0, r->rows, (size_t)r->opts.batch, &n);
	if (rc != 0) {
		MS_ERROR("relay", "%s: cannot read the outbox: %s",
		         store_name(r->st), ms_strerror(rc));
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		r->slots[i].row = r->rows[i];
	}
	if (n == 0) {
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		struct pending *p = &r->slots[i];

		memset(&p->ev, 0, sizeof(p->ev));
		memcpy(p->ev.id, p->row.id, sizeof(p->ev.id));
		p->ev.type = p->row.type;
		p->ev.payload = p->row.payload;
		p->ev.len = p->row.len;
		p->ev.traceparent = p->row.traceparent;
		p->ev.occurred_ms = p->row.occurred_ms;
		p->ev.attempt = p->row.attempts + 1;
		p->ev.done = published;
		p->ev.arg = p;
		p->relay = r;
		p->rc = MS_ECANCELED;
		pthread_mutex_lock(&r->mtx);
		r->outstanding++;
		pthread_mutex_unlock(&r->mtx);
		rc = bus_publish(r->bus, &p->ev);
		if (rc != 0) {
			/* done will not run for this one. */
			pthread_mutex_lock(&r->mtx);
			r->outstanding--;
			pthread_mutex_unlock(&r->mtx);
			p->rc = rc;
			break;
		}
		started++;
	}
	/* Wait for every confirm: transports complete each publish. */
	pthread_mutex_lock(&r->mtx);
	while (r->outstanding > 0) {
		pthread_cond_wait(&r->cv, &r->mtx);
	}
	pthread_mutex_unlock(&r->mtx);

	/*
	 * The confirmed rows are marked sent in one transaction: one commit
	 * per round instead of one per event, which halved the write
	 * transactions on the outbox's database under load (bench/README.md,
	 * scenario 4). Without the memory for the list, row by row below.
	 */
	sent = malloc(n * sizeof(*sent));
	for (size_t i = 0; sent && i < n && i <= started; i++) {
		if (r->slots[i].rc == 0) {
			sent[nsent++] = r->slots[i].row.seq;
		}
	}
	if (sent &&
	    (rc = store_outbox_mark_sent_many(r->st, sent, nsent)) != 0) {
		MS_ERROR("relay",
		         "%s: %zu events delivered but not marked sent (%s): "
		         "they will be delivered again",
		         store_name(r->st), nsent, ms_strerror(rc));
	}

	for (size_t i = 0; i < n; i++) {
		struct pending *p = &r->slots[i];

		/* What is logged about an event belongs to its trace. */
		(void)ms_trace_set(p->row.traceparent);
		if (i > started) {
			/* Never published this round. */
		} else if (p->rc == 0) {
			if (sent == NULL && (rc = store_outbox_mark_sent(
			                         r->st, p->row.seq)) != 0) {
				MS_ERROR("relay",
				         "%s: event %s delivered but not "
				         "marked sent (%s): it will be "
				         "delivered again",
				         store_name(r->st), p->row.id,
				         ms_strerror(rc));
			}
			count("monoshop_events_published_total", p->row.type);
		} else if (p->rc == MS_EINVAL || p->rc == MS_EVALIDATION) {
			MS_ERROR(
			    "relay",
			    "%s: event %s (%s) rejected by its consumer as "
			    "invalid; kept in the outbox as dead",
			    store_name(r->st), p->row.id, p->row.type);
			store_outbox_mark_dead(r->st, p->row.seq,
			                       ms_strerror(p->rc));
			count("monoshop_events_failed_total", p->row.type);
		} else {
			if (p->rc != MS_ECLOSED) {
				MS_WARN(
				    "relay",
				    "%s: event %s not delivered (%s, attempt "
				    "%u): will retry",
				    store_name(r->st), p->row.id,
				    ms_strerror(p->rc), p->ev.attempt);
			}
			store_outbox_mark_failed(r->st, p->row.seq);
			count("monoshop_events_retried_total", p->row.type);
			if (p->rc != MS_ECLOSED) {
				/* Stopping is not a failure of the event. */
				count("monoshop_events_failed_total",
				      p->row.type);
			}
			failed = 1;
		}
		ms_trace_clear();
		store_outbox_row_fini(&p->row);
	}
	free(sent);
	return failed ? MS_EUNAVAIL : (int)n;
}

static void *
relay_loop(void *arg)
{
	struct bus_relay *r = arg;
	int backoff = 0;
	int64_t last_prune = 0;

	while (!atomic_load(&r->stopping)) {
		int rc;

		if (r->opts.hold) {
			store_outbox_wait(r->st, r->opts.poll_ms);
			continue;
		}
		rc = round_once(r);
		if (atomic_load(&r->stopping)) {
			break;
		}
		if (rc < 0) {
			int64_t until;

			backoff = backoff ? backoff * 2 : BACKOFF_MIN_MS;
			if (backoff > BACKOFF_MAX_MS) {
				backoff = BACKOFF_MAX_MS;
			}
			/* New outbox rows must not cut the backoff short:
			 * while the transport is down, every checkout would
			 * otherwise start a round that fails at once. Only a
			 * stop ends the wait early. */
			until = ms_now_ms() + backoff;
			while (!atomic_load(&r->stopping) &&
			       ms_now_ms() < until) {
				store_outbox_wait(r->st,
				                  (int)(until - ms_now_ms()));
			}
			continue;
		}
		backoff = 0;
		if (rc == r->opts.batch) {
			continue; /* more may be waiting */
		}
		if (ms_now_ms() - last_prune > PRUNE_EVERY_MS) {
			last_prune = ms_now_ms();
			store_outbox_prune(r->st, ms_wall_ms() - KEEP_SENT_MS);
		}
		store_outbox_wait(r->st, r->opts.poll_ms);
	}
	return NULL;
}

static double
gauge_depth(void *arg)
{
	struct bus_relay *r = arg;
	int64_t n;
	int64_t oldest;

	return store_outbox_depth(r->st, &n, &oldest) == 0 ? (double)n : -1;
}

static double
gauge_age(void *arg)
{
	struct bus_relay *r = arg;
	int64_t n;
	int64_t oldest;

	if (store_outbox_depth(r->st, &n, &oldest) != 0) {
		return -1;
	}
	return n > 0 ? (double)(ms_wall_ms() - oldest) / 1000.0 : 0.0;
}

int
bus_relay_start(struct bus_relay **out, struct bus *bus, struct store *st,
                const struct bus_relay_opts *opts)
{
	struct bus_relay *r = calloc(1, sizeof(*r));
	int rc;

	*out = NULL;
	if (r == NULL) {
		return MS_ENOMEM;
	}
	r->bus = bus;
	r->st = st;
	r->opts.batch = opts && opts->batch > 0 ? opts->batch : 64;
	r->opts.poll_ms = opts && opts->poll_ms > 0 ? opts->poll_ms : 1000;
	r->opts.hold = opts && opts->hold;
	r->slots = calloc((size_t)r->opts.batch, sizeof(*r->slots));
	r->rows = calloc((size_t)r->opts.batch, sizeof(*r->rows));
	if (r->slots == NULL || r->rows == NULL) {
		free(r->slots);
		free(r->rows);
		free(r);
		return MS_ENOMEM;
	}
	pthread_mutex_init(&r->mtx, NULL);
	pthread_cond_init(&r->cv, NULL);
	snprintf(r->gauge_labels, sizeof(r->gauge_labels), "store=\"%s\"",
	         store_name(st));
	ms_metrics_gauge_fn("monoshop_outbox_pending", r->gauge_labels,
	                    "Events recorded but not yet delivered",
	                    gauge_depth, r);
	ms_metrics_gauge_fn(
	    "monoshop_outbox_oldest_age_seconds", r->gauge_labels,
	    "Age of the oldest undelivered event", gauge_age, r);
	if (r->opts.hold) {
		MS_WARN("relay",
		        "%s: debug.hold_events is on: events stay in "
		        "the outbox",
		        store_name(st));
	}
	if ((rc = pthread_create(&r->thread, NULL, relay_loop, r)) != 0) {
		ms_metrics_gauge_remove(r);
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mtx);
		free(r->slots);
		free(r->rows);
		free(r);
		return -rc;
	}
	*out = r;
	return 0;
}

void
bus_relay_stop(struct bus_relay *r)
{
	int64_t left;
	int64_t oldest;

	if (r == NULL) {
		return;
	}
	atomic_store(&r->stopping, true);
	store_outbox_notify(r->st);
	pthread_join(r->thread, NULL);
	if (store_outbox_depth(r->st, &left, &oldest) == 0 && left > 0) {
		/* Not lost: the next start delivers them. */
		MS_INFO("relay",
		        "%s: stopped with %lld event(s) still in the outbox",
		        store_name(r->st), (long long)left);
	}
	ms_metrics_gauge_remove(r);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mtx);
	free(r->slots);
	free(r->rows);
	free(r);
}
