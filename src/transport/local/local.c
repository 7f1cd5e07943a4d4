/* SPDX-License-Identifier: MIT */
/*
 * The local transport: how a process talks to itself. A call is a function
 * call (the handler runs on the caller's thread, no copy beyond the
 * protobuf pack the bus does anyway). An event goes through a bounded
 * in-process queue to one delivery thread, which hands it to the hosted
 * subscriber and completes the publish with the subscriber's verdict, so the
 * outbox row is marked sent only once the consumer has committed.
 *
 * Threads: call runs on the caller's thread. publish runs on the relay's
 * thread and only enqueues. The delivery thread runs subscribers and
 * ev->done. The queue is guarded by one mutex.
 *
 * This file's only export is tp_local_ops.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "transport/transport.h"

#define QUEUE_CAP 4096

struct local {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	struct bus_event *queue[QUEUE_CAP];
	size_t head;
	size_t count;
	bool closing;
	bool running;
	pthread_t thread;
};

static int
local_init(struct bus_transport *t, const char *url,
           const struct ms_config *cfg)
{
	struct local *l = tp_priv(t);

	(void)url;
	(void)cfg;
	pthread_mutex_init(&l->mtx, NULL);
	pthread_cond_init(&l->cv, NULL);
	return 0;
}

static void *
deliver_loop(void *arg)
{
	struct bus_transport *t = arg;
	struct local *l = tp_priv(t);

	pthread_mutex_lock(&l->mtx);
	for (;;) {
		struct bus_event *ev;
		int rc;

		while (l->count == 0 && !l->closing) {
			pthread_cond_wait(&l->cv, &l->mtx);
		}
		if (l->count == 0) {
			break;
		}
		ev = l->queue[l->head];
		l->head = (l->head + 1) % QUEUE_CAP;
		l->count--;
		if (l->closing) {
			/* Not delivered: the publisher keeps it pending. */
			pthread_mutex_unlock(&l->mtx);
			ev->done(ev, MS_ECLOSED);
			pthread_mutex_lock(&l->mtx);
			continue;
		}
		pthread_mutex_unlock(&l->mtx);
		rc = bus_deliver(t->bus, ev);
		ev->done(ev, rc);
		pthread_mutex_lock(&l->mtx);
	}
	pthread_mutex_unlock(&l->mtx);
	return NULL;
}

static int
local_start(struct bus_transport *t)
{
	struct local *l = tp_priv(t);
	int rc = pthread_create(&l->thread, NULL, deliver_loop, t);

	if (rc != 0) {
		return -rc;
	}
	l->running = true;
	return 0;
}

static void
local_stop(struct bus_transport *t)
{
	struct local *l = tp_priv(t);

	pthread_mutex_lock(&l->mtx);
	l->closing = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mtx);
	if (l->running) {
		pthread_join(l->thread, NULL);
		l->running = false;
	}
}

static void
local_fini(struct bus_transport *t)
{
	struct local *l = tp_priv(t);

	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mtx);
}

static int
local_call(struct bus_transport *t, struct bus_call *c)
{
	c->rc = bus_dispatch(t->bus, c->service, c->method, c->req, c->req_len,
	                     c->deadline_ms, c->traceparent, &c->reply,
	                     &c->reply_len, c->detail, sizeof(c->detail));
	bus_call_complete(c);
	return 0;
}

static int
local_publish(struct bus_transport *t, struct bus_event *ev)
{
	struct local *l = tp_priv(t);
	int rc = 0;

	pthread_mutex_lock(&l->mtx);
	if (l->closing || !l->running) {
		rc = MS_ECLOSED;
	} else if (l->count == QUEUE_CAP) {
		rc = MS_EFULL;
	} else {
		l->queue[(l->head + l->count) % QUEUE_CAP] = ev;
		l->count++;
		pthread_cond_signal(&l->cv);
	}
	pthread_mutex_unlock(&l->mtx);
	return rc;
}

const struct bus_transport_ops tp_local_ops = {
    .scheme = "local",
    .caps = BUS_CAP_CALL | BUS_CAP_EVENTS | BUS_CAP_SERVE,
    .priv_size = sizeof(struct local),
    .init = local_init,
    .start = local_start,
    .stop = local_stop,
    .fini = local_fini,
    .call = local_call,
    .publish = local_publish,
    .health = NULL,
};
