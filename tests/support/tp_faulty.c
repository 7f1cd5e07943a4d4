/* SPDX-License-Identifier: MIT */
/*
 * The fault-injecting transport (see tp_faulty.h). An instance owns an
 * inner transport instance, allocated and driven here exactly as the bus
 * drives its own (header + private block, init / start / stop / fini), for
 * the URL after "faulty+".
 *
 * Each op the wrapper accepts takes one slot of a fixed table. The slot
 * holds a shadow of the op (a struct bus_call or bus_event with the
 * caller's inputs and the wrapper's own completion): the inner transport
 * only ever sees the shadow, and the wrapper completes the caller's op once
 * the shadow completes. That is how completions can be held back, and how a
 * second completion of the same op by the inner transport is caught and
 * counted instead of reaching a caller that has already gone. Slots are
 * handed out round robin, so a late duplicate completion finds its slot
 * still marked done rather than reused.
 *
 * Threads: ops run on the caller's thread; delayed forwards and held
 * completions run on the timer thread; inner completions arrive on the
 * inner transport's threads (or inline). |mtx| guards the slots, the rules
 * and the counters and is never held while calling out. |rw| is held for
 * reading while an op is handed to the inner transport and for writing
 * while the inner transport is stopped or restarted (drop, restore, stop),
 * so no op is ever inside an inner transport that is being torn down.
 */
#include "support/tp_faulty.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus/bus_core.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "transport/transport.h"

/* Ops in flight through one wrapper; more are refused with MS_EFULL. */
#define SLOTS 256

enum slot_state {
	SLOT_FREE,
	SLOT_HELD,      /* accepted, waiting out the forward delay */
	SLOT_INNER,     /* with the inner transport */
	SLOT_DONE_HELD, /* the inner completed it; completion held back */
};

struct faulty;

struct slot {
	struct faulty *f;
	enum tp_faulty_op kind;
	enum slot_state state;
	int64_t due_ms;              /* HELD / DONE_HELD: when to act */
	struct bus_call *call;       /* the caller's op (CALL) */
	struct bus_event *ev;        /* the caller's op (PUBLISH) */
	int ev_rc;                   /* the shadow event's result */
	struct bus_call shadow_call; /* what the inner transport sees */
	struct bus_event shadow_ev;
};

struct rule {
	unsigned nth;           /* fail the nth op from now; 0 = none */
	int rc;                 /* with this code */
	enum tp_faulty_how how; /* surfacing this way */
	int forward_ms;         /* hold before forwarding */
	int complete_ms;        /* hold the completion */
	struct tp_faulty_stats stats;
};

struct faulty {
	const struct ms_config *cfg;
	struct bus_transport *inner; /* header + private block, ours */
	bool inner_init;             /* init done, fini pending */
	bool inner_started;          /* start done, stop pending */
	pthread_rwlock_t rw;

	pthread_mutex_t mtx;
	pthread_cond_t cv; /* wakes the timer thread */
	struct rule rules[2];
	int drop_rc;  /* non-zero: the connection is dropped */
	bool closing; /* stop began: refuse, flush */
	bool timer_quit;
	bool timer_running;
	pthread_t timer;
	size_t next_slot;
	struct slot slots[SLOTS];
};

/* The ops table is defined at the end; tp_faulty_of compares against it. */
static const struct bus_transport_ops faulty_ops;

/* ---- completing the caller's op ---------------------------------------- */

/* Completes the caller's op of |s| with what is recorded for it (calls:
 * in the caller's struct already; events: s->ev_rc) and frees the slot.
 * No lock held. */
static void
pass_up(struct faulty *f, struct slot *s)
{
	struct bus_call *c;
	struct bus_event *ev;
	enum tp_faulty_op kind;
	int rc;

	pthread_mutex_lock(&f->mtx);
	c = s->call;
	ev = s->ev;
	kind = s->kind;
	rc = s->ev_rc;
	f->rules[kind].stats.completed++;
	s->state = SLOT_FREE;
	s->call = NULL;
	s->ev = NULL;
	pthread_mutex_unlock(&f->mtx);
	if (kind == TP_FAULTY_CALL) {
		bus_call_complete(c);
	} else {
		ev->done(ev, rc);
	}
}

/* Records |rc| as the outcome of |s| (which never reached, or was refused
 * by, the inner transport) and completes the caller. */
static void
fail_slot(struct faulty *f, struct slot *s, int rc, const char *why)
{
	if (s->kind == TP_FAULTY_CALL) {
		s->call->rc = rc;
		s->call->reply = NULL;
		s->call->reply_len = 0;
		snprintf(s->call->detail, sizeof(s->call->detail), "%s: %s",
		         why, ms_strerror(rc));
	} else {
		s->ev_rc = rc;
	}
	pass_up(f, s);
}

/* The inner transport finished a shadow: copy its outcome to the caller's
 * op, then complete it now or hold it. Any thread. */
static void
shadow_finished(struct faulty *f, struct slot *s)
{
	struct rule *r;

	pthread_mutex_lock(&f->mtx);
	if (s->state != SLOT_INNER) {
		/* The callback rule broken: completed twice. Count it, and
		 * keep it from a caller that has already gone. */
		f->rules[s->kind].stats.twice++;
		pthread_mutex_unlock(&f->mtx);
		MS_ERROR("faulty",
		         "%s: the inner transport completed a %s twice",
		         f->inner->url,
		         s->kind == TP_FAULTY_CALL ? "call" : "publish");
		return;
	}
	r = &f->rules[s->kind];
	if (s->kind == TP_FAULTY_CALL) {
		struct bus_call *c = s->call;

		c->rc = s->shadow_call.rc;
		c->reply = s->shadow_call.reply;
		c->reply_len = s->shadow_call.reply_len;
		memcpy(c->detail, s->shadow_call.detail, sizeof(c->detail));
		s->shadow_call.reply = NULL;
	}
	if (r->complete_ms > 0 && !f->closing) {
		s->state = SLOT_DONE_HELD;
		s->due_ms = ms_now_ms() + r->complete_ms;
		pthread_cond_signal(&f->cv);
		pthread_mutex_unlock(&f->mtx);
		return;
	}
	pthread_mutex_unlock(&f->mtx);
	pass_up(f, s);
}

static void
shadow_call_done(struct bus_call *sc)
{
	struct slot *s = sc->arg;

	shadow_finished(s->f, s);
}

static void
shadow_ev_done(struct bus_event *sev, int rc)
{
	struct slot *s = sev->arg;

	/* Written before the state check, but only read by the completion
	 * that found the slot with the inner transport. */
	pthread_mutex_lock(&s->f->mtx);
	if (s->state == SLOT_INNER) {
		s->ev_rc = rc;
	}
	pthread_mutex_unlock(&s->f->mtx);
	shadow_finished(s->f, s);
}

/* ---- forwarding ------------------------------------------------------- */

/*
 * Hands |s| (state SLOT_INNER) to the inner transport. Returns the inner
 * op's result: 0 (the shadow will complete) or its error (it will not;
 * |s| is left for the caller to dispose of). A dropped or closing wrapper
 * returns its code without calling the inner transport.
 */
static int
hand_over(struct faulty *f, struct slot *s)
{
	struct bus_transport *in = f->inner;
	int rc;

	pthread_rwlock_rdlock(&f->rw);
	pthread_mutex_lock(&f->mtx);
	rc = f->closing ? MS_ECLOSED : f->drop_rc;
	if (rc == 0 && !f->inner_started) {
		rc = MS_EUNAVAIL;
	}
	if (rc == 0) {
		f->rules[s->kind].stats.forwarded++;
	}
	pthread_mutex_unlock(&f->mtx);
	if (rc == 0) {
		if (s->kind == TP_FAULTY_CALL) {
			rc = in->ops->call ? in->ops->call(in, &s->shadow_call)
			                   : MS_ENOTSUP;
		} else {
			rc = in->ops->publish
			         ? in->ops->publish(in, &s->shadow_ev)
			         : MS_ENOTSUP;
		}
		if (rc != 0) {
			pthread_mutex_lock(&f->mtx);
			f->rules[s->kind].stats.forwarded--;
			pthread_mutex_unlock(&f->mtx);
		}
	}
	pthread_rwlock_unlock(&f->rw);
	return rc;
}

/* ---- the timer thread -------------------------------------------------- */

static void
abs_deadline(struct timespec *ts, int64_t due_ms)
{
	int64_t wait = due_ms - ms_now_ms();

	clock_gettime(CLOCK_MONOTONIC, ts);
	if (wait < 0) {
		wait = 0;
	}
	ts->tv_sec += (time_t)(wait / 1000);
	ts->tv_nsec += (long)(wait % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Runs held ops when they are due; at quit, completes every held forward
 * with MS_ECLOSED and passes up every held completion. */
static void *
timer_loop(void *arg)
{
	struct faulty *f = arg;

	pthread_mutex_lock(&f->mtx);
	for (;;) {
		int64_t now = ms_now_ms();
		int64_t next = INT64_MAX;
		struct slot *due = NULL;

		for (size_t i = 0; i < SLOTS && due == NULL; i++) {
			struct slot *s = &f->slots[i];

			if (s->state != SLOT_HELD &&
			    s->state != SLOT_DONE_HELD) {
				continue;
			}
			if (f->timer_quit || s->due_ms <= now) {
				due = s;
			} else if (s->due_ms < next) {
				next = s->due_ms;
			}
		}
		if (due != NULL) {
			enum slot_state st = due->state;
			bool quit = f->timer_quit;
			int rc;

			due->state = SLOT_INNER;
			pthread_mutex_unlock(&f->mtx);
			if (st == SLOT_DONE_HELD) {
				pass_up(f, due);
			} else if (quit) {
				fail_slot(f, due, MS_ECLOSED,
				          "faulty: stopped while held");
			} else if ((rc = hand_over(f, due)) != 0) {
				/* Already accepted: complete with it. */
				fail_slot(f, due, rc, "faulty: not forwarded");
			}
			pthread_mutex_lock(&f->mtx);
			continue;
		}
		if (f->timer_quit) {
			break;
		}
		if (next == INT64_MAX) {
			pthread_cond_wait(&f->cv, &f->mtx);
		} else {
			struct timespec ts;

			abs_deadline(&ts, next);
			pthread_cond_timedwait(&f->cv, &f->mtx, &ts);
		}
	}
	pthread_mutex_unlock(&f->mtx);
	return NULL;
}

/* ---- ops --------------------------------------------------------------- */

static int
inner_create(struct faulty *f)
{
	struct bus_transport *in = f->inner;
	int rc;

	memset(tp_priv(in), 0, in->ops->priv_size);
	if ((rc = in->ops->init(in, in->url, f->cfg)) != 0) {
		return rc;
	}
	f->inner_init = true;
	if ((rc = in->ops->start(in)) != 0) {
		in->ops->fini(in);
		f->inner_init = false;
		return rc;
	}
	f->inner_started = true;
	return 0;
}

static void
inner_destroy(struct faulty *f)
{
	if (f->inner_started) {
		f->inner->ops->stop(f->inner);
		f->inner_started = false;
	}
	if (f->inner_init) {
		f->inner->ops->fini(f->inner);
		f->inner_init = false;
	}
}

static int
faulty_init(struct bus_transport *t, const char *url,
            const struct ms_config *cfg)
{
	struct faulty *f = tp_priv(t);
	const struct bus_transport_ops *ops;
	const char *inner_url;
	pthread_condattr_t ca;
	int rc;

	memset(f, 0, sizeof(*f));
	if (url == NULL ||
	    strncmp(url, TP_FAULTY_PREFIX, strlen(TP_FAULTY_PREFIX)) != 0) {
		return MS_EINVAL;
	}
	inner_url = url + strlen(TP_FAULTY_PREFIX);
	ops = bus_transport_find(inner_url);
	if (ops == NULL || ops == &faulty_ops ||
	    !(ops->caps & (BUS_CAP_CALL | BUS_CAP_EVENTS))) {
		MS_ERROR("faulty", "%s: no transport to wrap", url);
		return MS_EINVAL;
	}
	f->cfg = cfg;
	f->inner =
	    calloc(1, sizeof(*f->inner) + ops->priv_size + sizeof(max_align_t));
	if (f->inner == NULL) {
		return MS_ENOMEM;
	}
	f->inner->ops = ops;
	f->inner->bus = t->bus;
	f->inner->url = inner_url;
	f->inner->role = t->role;
	/* The inner transport is initialised now, as the bus would, so a
	 * bad inner URL fails bus_start the same way. */
	if ((rc = ops->init(f->inner, inner_url, cfg)) != 0) {
		free(f->inner);
		f->inner = NULL;
		return rc;
	}
	f->inner_init = true;
	pthread_rwlock_init(&f->rw, NULL);
	pthread_mutex_init(&f->mtx, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cv, &ca);
	pthread_condattr_destroy(&ca);
	for (size_t i = 0; i < SLOTS; i++) {
		f->slots[i].f = f;
	}
	return 0;
}

static int
faulty_start(struct bus_transport *t)
{
	struct faulty *f = tp_priv(t);
	int rc;

	if ((rc = f->inner->ops->start(f->inner)) != 0) {
		return rc;
	}
	f->inner_started = true;
	if ((rc = pthread_create(&f->timer, NULL, timer_loop, f)) != 0) {
		f->inner->ops->stop(f->inner);
		f->inner_started = false;
		return -rc;
	}
	f->timer_running = true;
	return 0;
}

static void
faulty_quiesce(struct bus_transport *t)
{
	struct faulty *f = tp_priv(t);

	pthread_rwlock_rdlock(&f->rw);
	if (f->inner_started && f->inner->ops->quiesce != NULL) {
		f->inner->ops->quiesce(f->inner);
	}
	pthread_rwlock_unlock(&f->rw);
}

static void
faulty_stop(struct bus_transport *t)
{
	struct faulty *f = tp_priv(t);

	pthread_mutex_lock(&f->mtx);
	f->closing = true;
	pthread_mutex_unlock(&f->mtx);
	/* The inner transport completes what it has; completions are no
	 * longer held (closing). Then held forwards fail with MS_ECLOSED. */
	pthread_rwlock_wrlock(&f->rw);
	if (f->inner_started) {
		f->inner->ops->stop(f->inner);
		f->inner_started = false;
	}
	pthread_rwlock_unlock(&f->rw);
	if (f->timer_running) {
		pthread_mutex_lock(&f->mtx);
		f->timer_quit = true;
		pthread_cond_signal(&f->cv);
		pthread_mutex_unlock(&f->mtx);
		pthread_join(f->timer, NULL);
		f->timer_running = false;
	}
}

static void
faulty_fini(struct bus_transport *t)
{
	struct faulty *f = tp_priv(t);

	if (f->inner == NULL) {
		return;
	}
	inner_destroy(f);
	free(f->inner);
	f->inner = NULL;
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mtx);
	pthread_rwlock_destroy(&f->rw);
}

/*
 * What happens to a new op: refused (sync error), failed on purpose, or
 * accepted into a slot: *slot set, and *held when the timer thread now
 * owns it (state HELD), else it is the caller's to hand over (INNER).
 * Returns the sync error, or 0 with *slot NULL when the op was failed by
 * completion.
 */
static int
admit(struct faulty *f, enum tp_faulty_op kind, struct bus_call *c,
      struct bus_event *ev, struct slot **slot, bool *held)
{
	struct rule *r = &f->rules[kind];
	struct slot *s = NULL;
	int inject = 0;
	enum tp_faulty_how how = TP_FAULTY_COMPLETE;

	*slot = NULL;
	*held = false;
	pthread_mutex_lock(&f->mtx);
	if (f->closing) {
		pthread_mutex_unlock(&f->mtx);
		return MS_ECLOSED;
	}
	if (r->nth > 0 && --r->nth == 0) {
		inject = r->rc;
		how = r->how;
	} else if (f->drop_rc != 0) {
		inject = f->drop_rc;
	}
	if (inject != 0) {
		r->stats.injected++;
		if (how == TP_FAULTY_RETURN) {
			pthread_mutex_unlock(&f->mtx);
			return inject;
		}
	}
	for (size_t i = 0; i < SLOTS; i++) {
		struct slot *cand = &f->slots[(f->next_slot + i) % SLOTS];

		if (cand->state == SLOT_FREE) {
			s = cand;
			f->next_slot = (f->next_slot + i + 1) % SLOTS;
			break;
		}
	}
	if (s == NULL) {
		pthread_mutex_unlock(&f->mtx);
		return MS_EFULL;
	}
	r->stats.started++;
	s->kind = kind;
	s->call = c;
	s->ev = ev;
	s->ev_rc = 0;
	if (inject != 0) {
		s->state = SLOT_INNER;
		pthread_mutex_unlock(&f->mtx);
		fail_slot(f, s, inject, "faulty: injected");
		return 0;
	}
	if (kind == TP_FAULTY_CALL) {
		memset(&s->shadow_call, 0, sizeof(s->shadow_call));
		s->shadow_call.service = c->service;
		s->shadow_call.method = c->method;
		s->shadow_call.req = c->req;
		s->shadow_call.req_len = c->req_len;
		s->shadow_call.deadline_ms = c->deadline_ms;
		s->shadow_call.traceparent = c->traceparent;
		s->shadow_call.done = shadow_call_done;
		s->shadow_call.arg = s;
	} else {
		s->shadow_ev = *ev;
		s->shadow_ev.done = shadow_ev_done;
		s->shadow_ev.arg = s;
	}
	if (r->forward_ms > 0) {
		s->state = SLOT_HELD;
		s->due_ms = ms_now_ms() + r->forward_ms;
		*held = true;
		pthread_cond_signal(&f->cv);
	} else {
		s->state = SLOT_INNER;
	}
	*slot = s;
	pthread_mutex_unlock(&f->mtx);
	return 0;
}

/* The common path of call and publish. */
static int
faulty_op(struct bus_transport *t, enum tp_faulty_op kind, struct bus_call *c,
          struct bus_event *ev)
{
	struct faulty *f = tp_priv(t);
	struct slot *s;
	bool held;
	int rc = admit(f, kind, c, ev, &s, &held);

	if (rc != 0 || s == NULL || held) {
		return rc;
	}
	/* s is SLOT_INNER and only ours until the inner transport has it. */
	if ((rc = hand_over(f, s)) != 0) {
		/* Refused at once: so are we (the inner never completes). */
		pthread_mutex_lock(&f->mtx);
		f->rules[kind].stats.started--;
		s->state = SLOT_FREE;
		s->call = NULL;
		s->ev = NULL;
		pthread_mutex_unlock(&f->mtx);
	}
	return rc;
}

static int
faulty_call(struct bus_transport *t, struct bus_call *c)
{
	return faulty_op(t, TP_FAULTY_CALL, c, NULL);
}

static int
faulty_publish(struct bus_transport *t, struct bus_event *ev)
{
	return faulty_op(t, TP_FAULTY_PUBLISH, NULL, ev);
}

static int
faulty_health(struct bus_transport *t, char *desc, size_t desclen)
{
	struct faulty *f = tp_priv(t);
	int rc;

	pthread_mutex_lock(&f->mtx);
	rc = f->drop_rc;
	pthread_mutex_unlock(&f->mtx);
	if (rc != 0) {
		snprintf(desc, desclen, "connection dropped by the test");
		return rc;
	}
	pthread_rwlock_rdlock(&f->rw);
	if (f->inner_started && f->inner->ops->health != NULL) {
		rc = f->inner->ops->health(f->inner, desc, desclen);
	}
	pthread_rwlock_unlock(&f->rw);
	return rc;
}

static const struct bus_transport_ops faulty_ops = {
    .scheme = "faulty+",
    .caps = BUS_CAP_CALL | BUS_CAP_EVENTS,
    .priv_size = sizeof(struct faulty),
    .listen_key = NULL,
    .init = faulty_init,
    .start = faulty_start,
    .quiesce = faulty_quiesce,
    .stop = faulty_stop,
    .fini = faulty_fini,
    .call = faulty_call,
    .publish = faulty_publish,
    .health = faulty_health,
};

/* ---- control ----------------------------------------------------------- */

int
tp_faulty_register(void)
{
	int rc = bus_transport_register(&faulty_ops);

	return rc == MS_EEXIST ? 0 : rc;
}

struct bus_transport *
tp_faulty_of(struct bus *bus, const char *url)
{
	struct bus_transport *t = bus_transport_for(bus, url);

	return t != NULL && t->ops == &faulty_ops ? t : NULL;
}

void
tp_faulty_fail(struct bus_transport *t, enum tp_faulty_op op, unsigned nth,
               int rc, enum tp_faulty_how how)
{
	struct faulty *f = tp_priv(t);

	pthread_mutex_lock(&f->mtx);
	f->rules[op].nth = nth;
	f->rules[op].rc = rc;
	f->rules[op].how = how;
	pthread_mutex_unlock(&f->mtx);
}

void
tp_faulty_delay(struct bus_transport *t, enum tp_faulty_op op, int forward_ms,
                int complete_ms)
{
	struct faulty *f = tp_priv(t);

	pthread_mutex_lock(&f->mtx);
	f->rules[op].forward_ms = forward_ms;
	f->rules[op].complete_ms = complete_ms;
	pthread_mutex_unlock(&f->mtx);
}

void
tp_faulty_drop(struct bus_transport *t, int rc)
{
	struct faulty *f = tp_priv(t);

	pthread_mutex_lock(&f->mtx);
	f->drop_rc = rc;
	pthread_mutex_unlock(&f->mtx);
	pthread_rwlock_wrlock(&f->rw);
	inner_destroy(f);
	pthread_rwlock_unlock(&f->rw);
}

int
tp_faulty_restore(struct bus_transport *t)
{
	struct faulty *f = tp_priv(t);
	int rc = 0;

	pthread_rwlock_wrlock(&f->rw);
	if (!f->inner_started) {
		inner_destroy(f);
		rc = inner_create(f);
	}
	pthread_rwlock_unlock(&f->rw);
	if (rc == 0) {
		pthread_mutex_lock(&f->mtx);
		f->drop_rc = 0;
		pthread_mutex_unlock(&f->mtx);
	}
	return rc;
}

void
tp_faulty_stats(struct bus_transport *t, enum tp_faulty_op op,
                struct tp_faulty_stats *out)
{
	struct faulty *f = tp_priv(t);

	pthread_mutex_lock(&f->mtx);
	*out = f->rules[op].stats;
	pthread_mutex_unlock(&f->mtx);
}
