/* SPDX-License-Identifier: MIT */
/*
 * The transport interface, for transport authors (modules never include
 * this). A transport moves call bytes and event bytes between processes;
 * it knows wire formats and sockets, never domain rules. Each transport file
 * keeps everything static and exports one `const struct bus_transport_ops`;
 * registry.c lists them; the bus finds one by URL scheme, allocates a
 * `struct bus_transport` header followed by |priv_size| bytes for it, and
 * calls it only through the bus_tp_* wrappers in the bus core, so asserts,
 * metrics and fault injection live in one place.
 *
 * Callback rule: an op that takes a completion (call, publish) and returns an
 * error never completes it; when it returns 0, it completes it exactly once.
 */
#ifndef MS_TRANSPORT_TRANSPORT_H
#define MS_TRANSPORT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"

struct ms_config;

enum {
	BUS_CAP_CALL = 1u << 0,   /* can carry calls to a remote service */
	BUS_CAP_EVENTS = 1u << 1, /* can carry events */
	BUS_CAP_SERVE = 1u << 2,  /* can listen and serve calls/events here */
};

/*
 * One call in flight on a transport. The bus fills the inputs, the transport
 * fills the outputs and calls bus_call_complete(). The request bytes are
 * borrowed (valid until completion); the reply buffer is malloc'd by the
 * transport and owned by the bus after completion.
 */
struct bus_call {
	/* inputs */
	const char *service;     /* "discount.DiscountProtoService" */
	const char *method;      /* "GetDiscount" */
	const uint8_t *req;      /* packed request */
	size_t req_len;          /* its length */
	int64_t deadline_ms;     /* absolute, ms_now_ms() clock */
	const char *traceparent; /* or NULL */
	/* outputs */
	int rc;                      /* 0 or MS_E* */
	uint8_t *reply;              /* malloc'd packed reply, or NULL */
	size_t reply_len;            /* its length */
	char detail[BUS_DETAIL_LEN]; /* error detail from the peer */
	/* completion */
	void (*done)(struct bus_call *c);
	void *arg;
};

struct bus_transport;

struct bus_transport_ops {
	const char *scheme; /* "local", "grpc", "amqp", "nng+tcp", ... */
	unsigned caps;      /* BUS_CAP_* */
	size_t priv_size;   /* bytes the bus allocates after the header */
	/*
	 * With BUS_CAP_SERVE: the config key of the listener ("grpc.listen").
	 * When it is set and this process serves at least one service (or,
	 * for a transport with BUS_CAP_EVENTS, subscribes to an event), the
	 * bus creates a serving instance (init with url NULL) that listens
	 * there and answers with bus_dispatch / bus_deliver. NULL for none.
	 */
	const char *listen_key;

	/*
	 * init prepares the transport for |url| (the remote.* / events.broker
	 * value), or, with |url| NULL, a serving instance for listen_key.
	 * Main thread, before start; may not block on the network (connect
	 * lazily). Returns 0, MS_EINVAL (bad URL) or MS_ENOMEM.
	 */
	int (*init)(struct bus_transport *t, const char *url,
	            const struct ms_config *cfg);

	/* start spawns threads / listeners. Main thread. Returns 0 or MS_E*. */
	int (*start)(struct bus_transport *t);

	/*
	 * quiesce, the first step of a graceful shutdown: stop accepting new
	 * work from outside (a listener stops accepting and tells its peers,
	 * e.g. gRPC GOAWAY; a consumer asks the broker for no more deliveries,
	 * e.g. basic.cancel) while work already accepted goes on, and calls
	 * and publishes made from this process still work (the relay and
	 * REST requests in flight need them until stop). Main thread; must
	 * not block (hand it to the transport's thread); idempotent; stop
	 * still follows. May be NULL: nothing comes in uninvited (local).
	 */
	void (*quiesce)(struct bus_transport *t);

	/*
	 * stop stops accepting work, completes every call and publish still
	 * in flight (with MS_ECLOSED if it cannot finish them) and joins its
	 * threads. Main thread; blocks. After stop no callback runs.
	 */
	void (*stop)(struct bus_transport *t);

	/* fini frees what init allocated. Main thread, after stop. */
	void (*fini)(struct bus_transport *t);

	/*
	 * call sends |c| to the peer and completes it later (or inline) with
	 * bus_call_complete(). Any thread; must not block past c->deadline_ms.
	 * Returns 0 (completion will run) or MS_ECLOSED / MS_ENOMEM (it won't).
	 * NULL unless caps has BUS_CAP_CALL.
	 */
	int (*call)(struct bus_transport *t, struct bus_call *c);

	/*
	 * publish sends |ev| and later calls ev->done(ev, rc): rc 0 once the
	 * event is safely handed over (delivered in process, broker confirm).
	 * Any thread; must not block on the network. Returns 0 or MS_ECLOSED /
	 * MS_EFULL / MS_ENOMEM (done never runs). NULL unless BUS_CAP_EVENTS.
	 */
	int (*publish)(struct bus_transport *t, struct bus_event *ev);

	/*
	 * health reports the transport's connection state: 0 when usable, or
	 * MS_E* with a reason in |desc|. Any thread; must not block. May be
	 * NULL (always healthy).
	 */
	int (*health)(struct bus_transport *t, char *desc, size_t desclen);
};

/* The header the bus allocates for each transport instance. */
struct bus_transport {
	const struct bus_transport_ops *ops;
	struct bus *bus;  /* back-pointer: for bus_dispatch / bus_deliver */
	const char *url;  /* the configured URL (owned by the config) */
	const char *role; /* "remote.discount", "events", ... for logs */
	                  /* priv_size bytes follow, aligned for any type */
};

/* tp_priv returns the transport's private block. */
static inline void *
tp_priv(struct bus_transport *t)
{
	return (void *)(t + 1);
}

/* bus_transport_find returns the ops whose scheme matches |url|'s scheme
 * ("grpc://h:p" → "grpc"), or NULL. */
const struct bus_transport_ops *bus_transport_find(const char *url);

/* bus_transport_list returns the NULL-terminated list of built transports
 * (and of those registered with bus_transport_register). */
const struct bus_transport_ops *const *bus_transport_list(void);

/*
 * bus_transport_register adds |ops| (which must outlive every bus) to the
 * list, after the built transports. A test hook, for transports that live
 * in tests (tests/support/tp_faulty.c): call it before creating any bus.
 * A scheme ending in '+' ("faulty+") is a wrapper: it matches every URL
 * whose scheme starts with it ("faulty+grpc://h:p"), and the wrapper
 * finds the transport of the rest itself. Returns 0, MS_EEXIST (a
 * transport with this scheme is listed) or MS_EFULL (no slot left).
 */
int bus_transport_register(const struct bus_transport_ops *ops);

/* ---- services the bus offers to transports ---------------------------- */

/* bus_call_complete finishes |c| (rc, reply already set). Any thread. */
void bus_call_complete(struct bus_call *c);

/*
 * bus_dispatch runs a call that arrived from outside on a locally served
 * service, synchronously on the calling thread: unpacks |req|, runs the
 * handler, packs the reply into *reply (malloc'd, owned by the caller).
 * Returns 0, MS_ENOTFOUND (unknown service), MS_ENOTSUP (unknown method),
 * MS_EDECODE (undecodable request), MS_ETIMEDOUT (deadline already passed)
 * or the handler's code; |detail| receives a message.
 */
int bus_dispatch(struct bus *bus, const char *service, const char *method,
                 const uint8_t *req, size_t req_len, int64_t deadline_ms,
                 const char *traceparent, uint8_t **reply, size_t *reply_len,
                 char *detail, size_t detail_len);

/*
 * bus_deliver hands an event that arrived from a transport to the local
 * subscriber of ev->type, on the calling thread, and returns its verdict:
 * 0 (committed: ack), MS_ENOTFOUND (no subscriber for this type: skip),
 * MS_EINVAL (undecodable or poison: dead-letter), or another MS_E*
 * (transient: redeliver).
 */
int bus_deliver(struct bus *bus, const struct bus_event *ev);

/*
 * Batched delivery (bus_subscribe_batch in bus.h). bus_batch_begin opens a
 * batch with the subscriber of |type|: on 0, every bus_deliver of that type
 * until bus_batch_commit / bus_batch_rollback must have ev->in_batch set,
 * and an event whose verdict was 0 may be acknowledged only once
 * bus_batch_commit returned 0 (a failed commit: none of them; they must be
 * delivered again). Returns 0, MS_ENOTSUP (the subscriber does not batch,
 * or there is none: deliver one by one) or the begin hook's error (deliver
 * one by one). bus_batch_commit returns 0 or the hook's MS_E*. Calling
 * thread (the delivery thread), which must deliver nothing else to that
 * subscriber in between: the subscriber may hold a lock for the batch.
 */
int bus_batch_begin(struct bus *bus, const char *type);
int bus_batch_commit(struct bus *bus, const char *type);
void bus_batch_rollback(struct bus *bus, const char *type);

/*
 * bus_served_services stores in |names| the full names of up to |max|
 * services served in this process ("discount.DiscountProtoService"), in
 * bus_serve order, and returns how many there are (more than |max| means
 * the list was cut). The strings live as long as the bus. For a listener
 * that must tell known services from unknown ones (health checks,
 * reflection, UNIMPLEMENTED). Any thread, once bus_serve calls are over.
 */
size_t bus_served_services(struct bus *bus, const char **names, size_t max);

/*
 * bus_restricted tells whether |method| of |service| was marked an admin
 * method with bus_restrict: a listener with an access key configured must
 * check the caller's key before bus_dispatch (constant time:
 * ms_ct_equal), and answer MS_EUNAUTH without it. false for unknown
 * services and methods. Any thread, once started.
 */
bool bus_restricted(struct bus *bus, const char *service, const char *method);

/*
 * bus_runs_inline tells whether |method| of |service| was marked quick with
 * bus_inline: a listener may run bus_dispatch for it on its I/O thread.
 * false for unknown services and methods. Any thread, once started.
 */
bool bus_runs_inline(struct bus *bus, const char *service, const char *method);

/*
 * bus_serves tells whether |method| of |service| exists on a service served
 * here (its handler may still be NULL: bus_dispatch then answers
 * MS_ENOTSUP), so that a listener can refuse an unknown method from the
 * request's headers, and never count it under a name a client made up.
 * Any thread, once started.
 */
bool bus_serves(struct bus *bus, const char *service, const char *method);

#endif
