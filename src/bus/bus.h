/* SPDX-License-Identifier: MIT */
/*
 * The bus: the only way modules talk to each other, and the only header of
 * this layer a module includes.
 *
 *  - Sync calls (request/reply) on protobuf-c services: a module serves a
 *    service with bus_serve() and another calls it with bus_call(). Where the
 *    service is hosted in this process the call is a function call; where it
 *    is not, it goes to the transport named by remote.<module>. The caller
 *    cannot tell which.
 *  - Async events (publish/subscribe): a module records an event in its
 *    outbox (store.h) inside its business transaction; the relay (relay.h)
 *    publishes it with bus_publish(); the transport named by events.broker
 *    (in-process queue when unset) delivers it to every bus_subscribe()r of
 *    its type, at least once. Subscribers dedupe with the inbox.
 *
 * The bus carries protobuf bytes plus full type names; it packs and unpacks
 * at its edges, so transports only move bytes.
 *
 * Callback rule (libuv's): if a function that takes a callback returns an
 * error, the callback never runs; otherwise it runs exactly once, on
 * success, failure, deadline (MS_ETIMEDOUT), cancel (MS_ECANCELED) or
 * shutdown (MS_ECLOSED).
 *
 * Threads: bus_serve/bus_subscribe are called during module init, before
 * bus_start(). Everything else may be called from any thread once started.
 */
#ifndef MS_BUS_BUS_H
#define MS_BUS_BUS_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bus;
struct ms_config;

#define BUS_DETAIL_LEN 256

/* ------------------------------------------------------------------------ */
/* Serving calls                                                            */

/*
 * One server-side call in progress. Handlers use it to allocate memory that
 * must live until the reply is packed (bus_rpc_alloc / bus_rpc_strdup), and
 * to attach a detail message to an error (bus_rpc_error).
 */
struct bus_rpc;

/*
 * A handler gets the unpacked request and a reply message already
 * initialised (protobuf-c init) to the method's output type, and fills the
 * reply. The reply is packed after the handler returns, so its strings and
 * sub-messages must point into |req|, static storage or bus_rpc_alloc'd
 * memory, never into the handler's stack.
 * Returns 0, or a negative MS_E* code (the caller sees the same code and the
 * detail set with bus_rpc_error). Runs on the caller's thread for local
 * calls, on a transport worker thread for remote ones; may block on its
 * database.
 */
typedef int (*bus_handler_fn)(void *ctx, struct bus_rpc *rpc,
                              const ProtobufCMessage *req,
                              ProtobufCMessage *reply);

/* bus_rpc_alloc returns zeroed memory freed after the reply is sent, or NULL
 * (then return MS_ENOMEM). */
void *bus_rpc_alloc(struct bus_rpc *rpc, size_t size);

/* bus_rpc_strdup copies |s| into the call's memory; NULL on ENOMEM. */
char *bus_rpc_strdup(struct bus_rpc *rpc, const char *s);

/* bus_rpc_error records a detail message for |rc| and returns |rc|. */
int bus_rpc_error(struct bus_rpc *rpc, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* bus_rpc_traceparent returns the W3C traceparent of the call, or NULL. */
const char *bus_rpc_traceparent(const struct bus_rpc *rpc);

/*
 * bus_serve makes |svc| callable through the bus from this process and from
 * every transport listening here. |handlers| has svc->n_methods entries, in
 * the order of svc->methods (protoc-c sorts nothing: it is the .proto's
 * order); a NULL entry answers MS_ENOTSUP. |handlers| and |ctx| must outlive
 * the bus. Returns 0, MS_EEXIST (already served) or MS_ENOMEM.
 */
int bus_serve(struct bus *bus, const ProtobufCServiceDescriptor *svc,
              const bus_handler_fn *handlers, void *ctx);

/*
 * bus_restrict marks |method| of |svc| (served with bus_serve before) as an
 * admin method. The bus does not check anything itself: a listener that
 * has an access key configured (the gRPC server with grpc.api_key) asks a
 * caller from outside for it before it dispatches such a method, and
 * answers MS_EUNAUTH without it. Calls from this process are never asked.
 * So a module says which of its methods are sensitive without knowing
 * which transports exist or how they authenticate. Main thread, before
 * bus_start. Returns 0, MS_ENOTFOUND (service not served here, or no such
 * method) or MS_EINVAL (method index beyond 63).
 */
int bus_restrict(struct bus *bus, const ProtobufCServiceDescriptor *svc,
                 const char *method);

/*
 * bus_inline marks |method| of |svc| (served with bus_serve before) as
 * quick: its handler answers from memory in microseconds and never waits
 * (no disk or network I/O, no lock held across I/O, no bus_call). A
 * listener may then run it on its I/O thread instead of handing it to a
 * worker thread and back (the gRPC server does: two thread wake-ups fewer
 * per call). A handler that may wait must not be marked: it would stall
 * every connection of that thread. Main thread, before bus_start. Returns
 * 0, MS_ENOTFOUND or MS_EINVAL as bus_restrict.
 */
int bus_inline(struct bus *bus, const ProtobufCServiceDescriptor *svc,
               const char *method);

/* ------------------------------------------------------------------------ */
/* Calling                                                                  */

struct bus_status {
	int rc;                      /* 0 or MS_E* */
	char detail[BUS_DETAIL_LEN]; /* the server's message, or ours */
};

/*
 * bus_call calls |method| (e.g. "GetDiscount") of |svc| with |req| and waits
 * for the reply, at most |timeout_ms| (0 = bus.call_timeout_ms). On success
 * *reply is an unpacked message of the method's output type, owned by the
 * caller: free it with protobuf_c_message_free_unpacked(*reply, NULL).
 * Returns 0 or the call's error: the handler's code when it failed,
 * MS_ETIMEDOUT, MS_EUNAVAIL (peer down or circuit open), MS_ENOTFOUND
 * (unknown method), MS_EPROTO (undecodable reply), MS_ENOMEM. |st| (may be
 * NULL) receives the code and a detail message.
 */
int bus_call(struct bus *bus, const ProtobufCServiceDescriptor *svc,
             const char *method, const ProtobufCMessage *req,
             ProtobufCMessage **reply, int timeout_ms, struct bus_status *st);

/* ------------------------------------------------------------------------ */
/* Events                                                                   */

/*
 * One event as it travels: its stable id, its protobuf type's full name, and
 * the packed message. Owned by whoever created it; the bus and transports
 * only borrow it for the duration of a publish.
 */
struct bus_event {
	char id[37];             /* GUID, set once at creation */
	const char *type;        /* "monoshop.events.BasketCheckoutEvent" */
	const uint8_t *payload;  /* packed protobuf */
	size_t len;              /* payload length */
	const char *traceparent; /* W3C traceparent, or NULL */
	int64_t occurred_ms;     /* wall clock at creation */
	unsigned attempt;        /* 1 on first delivery, then redeliveries */
	bool in_batch;           /* delivery only: part of a batch opened with
	                            the subscriber's begin hook (bus_subscribe_batch):
	                            the subscriber must not commit on its own */

	/* Publish completion (set by the publisher, called by the transport):
	 * rc 0 means the event is safely handed over (consumed in process, or
	 * confirmed by the broker); anything else means "publish again". */
	void (*done)(struct bus_event *ev, int rc);
	void *arg;
};

/*
 * A subscriber gets the event (metadata) and its unpacked message. It
 * returns 0 once the event's effects are committed (acknowledge), or a
 * negative MS_E* code to have it redelivered; MS_EINVAL / MS_EVALIDATION mean
 * "this event can never succeed" (poison): it is dropped or dead-lettered
 * instead of retried forever. Called on a transport delivery thread.
 */
typedef int (*bus_event_fn)(void *ctx, const struct bus_event *ev,
                            const ProtobufCMessage *msg);

/*
 * bus_subscribe delivers every event of type |desc| to |fn|. One subscriber
 * per type per process. Returns 0, MS_EEXIST or MS_ENOMEM.
 */
int bus_subscribe(struct bus *bus, const ProtobufCMessageDescriptor *desc,
                  bus_event_fn fn, void *ctx);

/*
 * Batched delivery, for a subscriber whose effects are commits (one per
 * event costs a disk sync each). A transport that has several deliveries
 * in hand may open a batch with |begin|, deliver them one by one to the
 * subscriber's bus_event_fn with ev->in_batch set, then call |commit| and
 * acknowledge only the events whose verdict was 0, only once |commit|
 * returned 0. In a batch the subscriber:
 *  - keeps each event's effects apart (e.g. a SAVEPOINT per event), so that
 *    an event it refuses (poison or transient: any non-zero verdict) leaves
 *    nothing behind while the others of the batch stay;
 *  - returns 0 when the event's effects are part of the batch: they become
 *    durable with |commit|, and are lost with |rollback| or a failed commit
 *    (then none of the batch is acknowledged: all are delivered again, so
 *    the subscriber's dedup, e.g. the inbox, must see only committed ones).
 * Verdicts other than 0 are handled as bus_event_fn says, event by event.
 * |begin| returns 0 or MS_E* (then the events are delivered one by one,
 * in_batch unset); |commit| returns 0 or MS_E* (nothing of the batch is
 * durable); |rollback| undoes the batch. All three run on the delivery
 * thread, in the order begin, fn*, commit|rollback; the subscriber may
 * hold a lock from begin to commit/rollback, so nothing else of the
 * delivery thread waits on it in between. A transport that does not batch
 * never calls them: then each event commits on its own, as with
 * bus_subscribe.
 */
struct bus_batch_ops {
	int (*begin)(void *ctx);
	int (*commit)(void *ctx);
	void (*rollback)(void *ctx);
};

/*
 * bus_subscribe_batch is bus_subscribe with batch hooks (all three set;
 * |ops| must outlive the bus). Returns 0, MS_EEXIST or MS_EFULL.
 */
int bus_subscribe_batch(struct bus *bus, const ProtobufCMessageDescriptor *desc,
                        bus_event_fn fn, const struct bus_batch_ops *ops,
                        void *ctx);

/*
 * bus_publish hands |ev| to the events transport. On 0, ev->done runs
 * exactly once, on any thread; |ev| and its buffers must stay valid until
 * then. On error, done never runs (MS_ECLOSED when the bus is stopping,
 * MS_EFULL when the transport is saturated).
 */
int bus_publish(struct bus *bus, struct bus_event *ev);

/* bus_has_subscriber tells whether a subscriber for |type| is hosted here. */
bool bus_has_subscriber(struct bus *bus, const char *type);

#endif
