/* SPDX-License-Identifier: MIT */
/*
 * The outbox relay (see relay.h). One thread per store, publishing through
 * a sliding window: up to |batch| events are in flight at any time, and as
 * their confirms come back (in any order) the window is refilled with the
 * next pending rows, so the pipe never empties while rows are waiting. The
 * former shape (publish a round of |batch|, wait for every confirm, mark,
 * fetch again) left it empty while the slowest confirm of each round came
 * back: 0.6-0.7x a raw publisher keeping 64 unconfirmed (bench/README.md,
 * scenario 4, relay drain).
 *
 * The window. Rows are fetched in seq order with seq > |cursor|, the
 * highest seq published since the window was last empty, so a row in
 * flight is never fetched (nor published) again. The cursor goes back to 0
 * only when nothing is in flight and every confirmed row is marked. A row
 * below the cursor can only become pending again by failing (its publish
 * failed, or its mark did): then |rewind| stops the refills until the
 * window has drained, and the next fetch starts from the beginning. The
 * window is refilled once at least a quarter of it is free (|low|), which
 * keeps it between 3/4 and full under load at one fetch per |low| events.
 *
 * Marking. A confirmed row's seq waits in |marks| and the rows there are
 * marked sent in one transaction (a WAL commit each: one per event cost
 * dev mode ~30% of its orders/s) once |batch| of them are there, the
 * window is empty, MARK_DELAY_MS passed since the first, the window must be
 * rewound, or the relay stops. Until then a confirmed row still counts as
 * pending (gauges), and a crash has it published again: at least once, as
 * ever, deduped by the consumer's inbox.
 *
 * Failures. A failed publish (refused, not confirmed) leaves the row
 * pending (attempts + 1) and the relay backs off exponentially (100 ms
 * doubling to 5 s; new rows do not cut it short) before it publishes
 * again, rows in flight meanwhile still being collected and marked; the
 * failed row is published again after the backoff, once the window has
 * drained. The backoff doubles per failed "epoch" (the publishes made
 * since the last backoff began), so the failures of one outage that come
 * back one by one count once; a confirm of a publish made after the last
 * backoff resets it. A row the consumer rejected as poison is marked dead
 * (kept, never deleted), with no backoff. Sent rows are pruned after an
 * hour.
 *
 * Metrics: monoshop_events_published_total{type} per confirmed event;
 * monoshop_events_retried_total{type} per event left pending for another
 * try; monoshop_events_failed_total{type} per failed publish (refused,
 * not confirmed, or rejected as poison and kept as dead); the gauges
 * monoshop_outbox_pending{store} and monoshop_outbox_oldest_age_seconds.
 *
 * Threads: the relay thread does everything except ev->done (published),
 * which the transport calls on its own thread, or on the relay thread
 * itself inside bus_publish (a transport may complete a publish inline):
 * it only queues the slot under |mtx| and wakes the relay through the
 * store's wake-up (store_outbox_notify), the same one a committed row
 * rings. The relay never holds |mtx| while it calls bus_publish or the
 * store. Stop is called from the main thread.
 */
#include "bus/relay.h"

#include <assert.h>
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
#define MARK_DELAY_MS  20 /* longest a confirmed row waits to be marked */

/* One slot of the window: an event in flight and the row it came from. */
struct pending {
	struct bus_event ev;
	struct store_outbox_row row; /* owned; freed when the slot is reaped */
	struct bus_relay *relay;
	unsigned epoch; /* the backoff epoch it was published in */
	int rc;         /* the transport's verdict, set by published() */
};

struct bus_relay {
	struct bus *bus;
	struct store *st;
	struct bus_relay_opts opts;
	size_t low;  /* refill once this many slots are free */
	size_t high; /* batch - low: in flight when published() wakes us */
	pthread_t thread;
	atomic_bool stopping;

	/* Shared with published(), under |mtx|. */
	pthread_mutex_t mtx;
	size_t inflight; /* published and not yet reaped (done or not) */
	size_t ndone;    /* of those, completed: their slots in |done| */
	size_t *done;    /* |batch| slot indices */

	/* The relay thread's alone. */
	struct pending *slots;         /* the window: |batch| slots */
	size_t *free;                  /* indices of free slots (a stack) */
	size_t nfree;                  /* == batch - inflight after a reap */
	size_t *reaped;                /* |batch|: the done slots taken */
	struct store_outbox_row *rows; /* fetch buffer, moved into slots */
	int64_t *marks; /* 2 x |batch| seqs confirmed, unmarked */
	size_t nmarks;
	int64_t mark_by; /* ms_now_ms() by which |marks| are marked */
	int64_t cursor;  /* highest seq published since the window was empty */
	bool rewind;     /* a row below the cursor is pending again */
	unsigned epoch;  /* backoffs begun */
	int backoff;     /* ms of the last backoff; 0 after a success */
	int64_t backoff_until;
	int64_t last_prune;
	char gauge_labels[64];
};

/* ev->done of every publish: any thread, possibly inside bus_publish on the
 * relay's own. Wakes the relay only when it has something to do: a quarter
 * of the window just became free, the window drained, a failure, or a
 * stop (confirms that do not wake it are taken within MARK_DELAY_MS). */
static void
published(struct bus_event *ev, int rc)
{
	struct pending *p = ev->arg;
	struct bus_relay *r = p->relay;

	pthread_mutex_lock(&r->mtx);
	p->rc = rc;
	assert(r->ndone < r->inflight);
	r->done[r->ndone++] = (size_t)(p - r->slots);
	if (r->inflight - r->ndone == r->high || r->ndone == r->inflight ||
	    rc != 0 || atomic_load(&r->stopping)) {
		/* Under |mtx|: once it is released the relay may be gone. */
		store_outbox_notify(r->st);
	}
	pthread_mutex_unlock(&r->mtx);
}

static void
count(const char *name, const char *type)
{
	char labels[128];

	snprintf(labels, sizeof(labels), "type=\"%s\"", type);
	ms_metrics_count(name, labels, 1);
}

/* Stops publishing for the next backoff (100 ms doubling to 5 s) and has
 * the window drained and rescanned from the start afterwards. */
static void
back_off(struct bus_relay *r)
{
	r->backoff = r->backoff ? r->backoff * 2 : BACKOFF_MIN_MS;
	if (r->backoff > BACKOFF_MAX_MS) {
		r->backoff = BACKOFF_MAX_MS;
	}
	r->backoff_until = ms_now_ms() + r->backoff;
	r->epoch++;
	r->rewind = true;
}

/* Marks the confirmed rows in |marks| sent, in one transaction. */
static void
flush_marks(struct bus_relay *r)
{
	int rc;

	if (r->nmarks == 0) {
		return;
	}
	rc = store_outbox_mark_sent_many(r->st, r->marks, r->nmarks);
	if (rc != 0) {
		MS_ERROR("relay",
		         "%s: %zu events delivered but not marked sent (%s): "
		         "they will be delivered again",
		         store_name(r->st), r->nmarks, ms_strerror(rc));
		r->rewind = true; /* pending again, below the cursor */
	}
	r->nmarks = 0;
}

/* Settles one finished publish: confirmed (to be marked), poison (dead)
 * or failed (pending again). Frees the slot. Returns its verdict. */
static int
settle(struct bus_relay *r, size_t slot)
{
	struct pending *p = &r->slots[slot];
	int rc = p->rc;

	/* What is logged about an event belongs to its trace. */
	(void)ms_trace_set(p->row.traceparent);
	if (rc == 0) {
		assert(r->nmarks < 2 * (size_t)r->opts.batch);
		if (r->nmarks == 0) {
			r->mark_by = ms_now_ms() + MARK_DELAY_MS;
		}
		r->marks[r->nmarks++] = p->row.seq;
		count("monoshop_events_published_total", p->row.type);
	} else if (rc == MS_EINVAL || rc == MS_EVALIDATION) {
		MS_ERROR("relay",
		         "%s: event %s (%s) rejected by its consumer as "
		         "invalid; kept in the outbox as dead",
		         store_name(r->st), p->row.id, p->row.type);
		store_outbox_mark_dead(r->st, p->row.seq, ms_strerror(rc));
		count("monoshop_events_failed_total", p->row.type);
	} else {
		if (rc != MS_ECLOSED) {
			MS_WARN("relay",
			        "%s: event %s not delivered (%s, attempt %u): "
			        "will retry",
			        store_name(r->st), p->row.id, ms_strerror(rc),
			        p->ev.attempt);
		}
		store_outbox_mark_failed(r->st, p->row.seq);
		count("monoshop_events_retried_total", p->row.type);
		if (rc != MS_ECLOSED) {
			/* Stopping is not a failure of the event. */
			count("monoshop_events_failed_total", p->row.type);
		}
		r->rewind = true; /* pending again, below the cursor */
	}
	ms_trace_clear();
	store_outbox_row_fini(&p->row);
	r->free[r->nfree++] = slot;
	return rc;
}

/* Takes every finished publish and settles it; returns how many are still
 * in flight. A failure of the current epoch begins a backoff; a confirm
 * of the current epoch ends the doubling. */
static size_t
reap(struct bus_relay *r)
{
	size_t n;
	size_t left;
	bool failed = false;
	bool confirmed = false;

	pthread_mutex_lock(&r->mtx);
	n = r->ndone;
	memcpy(r->reaped, r->done, n * sizeof(*r->reaped));
	r->ndone = 0;
	r->inflight -= n;
	left = r->inflight;
	pthread_mutex_unlock(&r->mtx);
	for (size_t i = 0; i < n; i++) {
		unsigned epoch = r->slots[r->reaped[i]].epoch;
		int rc = settle(r, r->reaped[i]);

		if (epoch != r->epoch) {
			/* Published before the last backoff began: its
			 * failure is the same outage, counted once. */
		} else if (rc == 0) {
			confirmed = true;
		} else if (rc != MS_EINVAL && rc != MS_EVALIDATION) {
			failed = true;
		}
	}
	if (failed) {
		back_off(r);
	} else if (confirmed) {
		r->backoff = 0;
	}
	return left;
}

/* Fetches up to |room| pending rows after the cursor and publishes them.
 * Returns whether it filled the room (more rows may be waiting). */
static bool
refill(struct bus_relay *r, size_t room)
{
	size_t n = 0;
	int rc;

	rc = store_outbox_fetch(r->st, r->cursor, r->rows, room, &n);
	if (rc != 0) {
		MS_ERROR("relay", "%s: cannot read the outbox: %s",
		         store_name(r->st), ms_strerror(rc));
		back_off(r);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		struct pending *p;
		size_t slot;

		if (r->rewind) {
			/* A publish below was refused: these stay pending. */
			store_outbox_row_fini(&r->rows[i]);
			continue;
		}
		assert(r->nfree > 0);
		slot = r->free[--r->nfree];
		p = &r->slots[slot];
		p->row = r->rows[i];
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
		p->epoch = r->epoch;
		p->rc = MS_ECANCELED;
		pthread_mutex_lock(&r->mtx);
		r->inflight++;
		pthread_mutex_unlock(&r->mtx);
		rc = bus_publish(r->bus, &p->ev);
		if (rc == 0) {
			r->cursor = p->row.seq;
			continue;
		}
		/* Refused: done will not run for this one. */
		pthread_mutex_lock(&r->mtx);
		r->inflight--;
		pthread_mutex_unlock(&r->mtx);
		p->rc = rc;
		settle(r, slot);
		if (rc != MS_EINVAL && rc != MS_EVALIDATION) {
			back_off(r);
		}
	}
	return n == room;
}

/* How long the relay may sleep: until the backoff ends, the marks are
 * due, or (with publishes in flight) MARK_DELAY_MS, so that confirms that
 * did not wake it are still marked soon; else the idle poll. */
static int
sleep_ms(const struct bus_relay *r, int64_t now, size_t inflight)
{
	int64_t until = now + r->opts.poll_ms;

	if (r->backoff_until > now && r->backoff_until < until) {
		until = r->backoff_until;
	}
	if (r->nmarks > 0 && r->mark_by < until) {
		until = r->mark_by;
	}
	if (inflight > 0 && now + MARK_DELAY_MS < until) {
		until = now + MARK_DELAY_MS;
	}
	return until > now ? (int)(until - now) : 1;
}

static void *
relay_loop(void *arg)
{
	struct bus_relay *r = arg;

	for (;;) {
		bool stopping = atomic_load(&r->stopping);
		size_t inflight;
		int64_t now;

		if (r->opts.hold) {
			if (stopping) {
				break;
			}
			store_outbox_wait(r->st, r->opts.poll_ms);
			continue;
		}
		inflight = reap(r);
		now = ms_now_ms();
		if (r->nmarks >= (size_t)r->opts.batch || inflight == 0 ||
		    stopping || r->rewind || now >= r->mark_by) {
			flush_marks(r);
		}
		if (stopping) {
			/* Publish nothing more; wait for what is in flight
			 * (published() wakes us once stopping is set). */
			if (inflight == 0) {
				break;
			}
			store_outbox_wait(r->st, r->opts.poll_ms);
			continue;
		}
		if (inflight == 0) {
			/* Nothing in flight, nothing confirmed unmarked:
			 * rescan from the start (rows that failed, or whose
			 * mark failed, are found again there). */
			r->cursor = 0;
			r->rewind = false;
		}
		/* New outbox rows must not cut a backoff short: while the
		 * transport is down, every checkout would otherwise publish
		 * and fail at once. A rewind waits for the window to drain. */
		if (now >= r->backoff_until && !r->rewind &&
		    (r->nfree >= r->low || inflight == 0)) {
			if (refill(r, r->nfree)) {
				continue; /* more may be waiting: when room */
			}
			if (now - r->last_prune > PRUNE_EVERY_MS) {
				r->last_prune = now;
				store_outbox_prune(r->st,
				                   ms_wall_ms() - KEEP_SENT_MS);
			}
		}
		pthread_mutex_lock(&r->mtx);
		inflight = r->inflight;
		pthread_mutex_unlock(&r->mtx);
		store_outbox_wait(r->st, sleep_ms(r, ms_now_ms(), inflight));
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

static void
relay_free(struct bus_relay *r)
{
	free(r->slots);
	free(r->free);
	free(r->done);
	free(r->reaped);
	free(r->rows);
	free(r->marks);
	free(r);
}

int
bus_relay_start(struct bus_relay **out, struct bus *bus, struct store *st,
                const struct bus_relay_opts *opts)
{
	struct bus_relay *r = calloc(1, sizeof(*r));
	size_t batch;
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
	batch = (size_t)r->opts.batch;
	r->low = batch / 4 > 0 ? batch / 4 : 1;
	r->high = batch - r->low;
	r->slots = calloc(batch, sizeof(*r->slots));
	r->free = calloc(batch, sizeof(*r->free));
	r->done = calloc(batch, sizeof(*r->done));
	r->reaped = calloc(batch, sizeof(*r->reaped));
	r->rows = calloc(batch, sizeof(*r->rows));
	r->marks = calloc(2 * batch, sizeof(*r->marks));
	if (r->slots == NULL || r->free == NULL || r->done == NULL ||
	    r->reaped == NULL || r->rows == NULL || r->marks == NULL) {
		relay_free(r);
		return MS_ENOMEM;
	}
	for (size_t i = 0; i < batch; i++) {
		r->free[i] = batch - 1 - i; /* slot 0 first */
	}
	r->nfree = batch;
	pthread_mutex_init(&r->mtx, NULL);
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
		pthread_mutex_destroy(&r->mtx);
		relay_free(r);
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
	pthread_mutex_destroy(&r->mtx);
	relay_free(r);
}
