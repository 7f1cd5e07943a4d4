/* SPDX-License-Identifier: MIT */
/*
 * Tests of the bus core and the local transport: calls to a served service
 * (reply, handler errors with their detail, unknown method / service),
 * start-up routing errors (a required service neither hosted nor remote, a
 * remote scheme this build lacks, events with no consumer), events through
 * the in-process queue (delivery, transient failure, poison, undecodable
 * payload) and the outbox relay end to end (delivered and marked sent,
 * retried after transient failures, poison kept as dead); the trace context
 * carried by calls and events (core/trace.h), and bus_quiesce.
 *
 * The discount service descriptor is used as a convenient real protobuf-c
 * service; the handlers here are test doubles, not Discount's rules.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_core.h"
#include "bus/relay.h"
#include "core/config.h"
#include "core/err.h"
#include "core/trace.h"
#include "core/util.h"
#include "discount.pb-c.h"
#include "events.pb-c.h"
#include "store/store.h"
#include "support/tmpdir.h"
#include "transport/transport.h"

static const ProtobufCServiceDescriptor *svc =
    &discount__discount_proto_service__descriptor;

/* GetDiscount echoes the name back with amount = its length. */
static int
h_get(void *ctx, struct bus_rpc *rpc, const ProtobufCMessage *req,
      ProtobufCMessage *reply)
{
	const Discount__GetDiscountRequest *in = (const void *)req;
	Discount__CouponModel *out = (void *)reply;

	(void)ctx;
	if (strcmp(in->productname, "boom") == 0) {
		return bus_rpc_error(rpc, MS_ENOTFOUND, "no coupon for %s",
		                     in->productname);
	}
	out->productname = bus_rpc_strdup(rpc, in->productname);
	out->description = "echo";
	out->amount = (int32_t)strlen(in->productname);
	return 0;
}

static const bus_handler_fn handlers[4] = {h_get, NULL, NULL, NULL};

static struct ms_config *
config(const char *const *sets)
{
	struct ms_config *cfg;
	char err[256];

	ck_assert_int_eq(ms_config_create(&cfg), 0);
	/* A process serving a service listens on grpc.listen: never on the
	 * default port, which another program may hold. */
	ck_assert_int_eq(ms_config_set(cfg, "grpc.listen=127.0.0.1:0", "test",
	                               err, sizeof(err)),
	                 0);
	for (; sets && *sets; sets++) {
		ck_assert_msg(
		    ms_config_set(cfg, *sets, "test", err, sizeof(err)) == 0,
		    "%s", err);
	}
	return cfg;
}

START_TEST(test_local_call)
{
	struct ms_config *cfg = config(NULL);
	struct bus *bus;
	Discount__GetDiscountRequest req = DISCOUNT__GET_DISCOUNT_REQUEST__INIT;
	ProtobufCMessage *reply;
	struct bus_status st;
	char err[256];

	ck_assert_int_eq(bus_create(&bus, cfg), 0);
	ck_assert_int_eq(bus_serve(bus, svc, handlers, NULL), 0);
	ck_assert_int_eq(bus_serve(bus, svc, handlers, NULL), MS_EEXIST);
	ck_assert_int_eq(bus_require(bus, "discount", svc->name), 0);
	ck_assert_int_eq(bus_start(bus, err, sizeof(err)), 0);

	req.productname = "IPhone X";
	ck_assert_int_eq(
	    bus_call(bus, svc, "GetDiscount", &req.base, &reply, 0, &st), 0);
	ck_assert_int_eq(st.rc, 0);
	{
		Discount__CouponModel *c = (void *)reply;

		ck_assert_str_eq(c->productname, "IPhone X");
		ck_assert_str_eq(c->description, "echo");
		ck_assert_int_eq(c->amount, 8);
	}
	protobuf_c_message_free_unpacked(reply, NULL);

	/* A handler's error arrives with its code and detail. */
	req.productname = "boom";
	ck_assert_int_eq(
	    bus_call(bus, svc, "GetDiscount", &req.base, &reply, 0, &st),
	    MS_ENOTFOUND);
	ck_assert_ptr_null(reply);
	ck_assert_str_eq(st.detail, "no coupon for boom");

	/* A method with no handler, and one the service does not have. */
	{
		Discount__DeleteDiscountRequest d =
		    DISCOUNT__DELETE_DISCOUNT_REQUEST__INIT;

		ck_assert_int_eq(bus_call(bus, svc, "DeleteDiscount", &d.base,
		                          &reply, 0, &st),
		                 MS_ENOTSUP);
		ck_assert_int_eq(
		    bus_call(bus, svc, "Nope", &d.base, &reply, 0, &st),
		    MS_ENOTSUP);
	}
	bus_stop(bus);
	/* After stop, calls are refused, not hung. */
	req.productname = "late";
	ck_assert_int_eq(
	    bus_call(bus, svc, "GetDiscount", &req.base, &reply, 0, &st),
	    MS_ECLOSED);
	bus_destroy(bus);
	ms_config_destroy(cfg);
}
END_TEST

/* ---- trace context ----------------------------------------------------- */

#define TP  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TID "4bf92f3577b34da6a3ce929d0e0e4736"

/* What a handler saw of its trace: the call's traceparent and the
 * thread's current context (written on the caller's thread: local). */
static char seen_rpc_tp[MS_TRACEPARENT_SIZE];
static char seen_cur_tp[MS_TRACEPARENT_SIZE];

static int
h_trace(void *ctx, struct bus_rpc *rpc, const ProtobufCMessage *req,
        ProtobufCMessage *reply)
{
	const char *tp = bus_rpc_traceparent(rpc);
	const char *cur = ms_trace_get();

	(void)ctx;
	(void)req;
	(void)reply;
	ms_strlcpy(seen_rpc_tp, tp ? tp : "", sizeof(seen_rpc_tp));
	ms_strlcpy(seen_cur_tp, cur ? cur : "", sizeof(seen_cur_tp));
	return 0;
}

static const bus_handler_fn trace_handlers[4] = {h_trace, NULL, NULL, NULL};

/* bus_call sends a child of the caller's trace; the handler runs under it;
 * the caller's context is its own again afterwards. Without one, the call
 * carries none. */
START_TEST(test_call_trace)
{
	struct ms_config *cfg = config(NULL);
	struct bus *bus;
	Discount__GetDiscountRequest req = DISCOUNT__GET_DISCOUNT_REQUEST__INIT;
	ProtobufCMessage *reply;
	char out[MS_TRACEPARENT_SIZE];
	char err[256];

	ck_assert_int_eq(bus_create(&bus, cfg), 0);
	ck_assert_int_eq(bus_serve(bus, svc, trace_handlers, NULL), 0);
	ck_assert_int_eq(bus_start(bus, err, sizeof(err)), 0);
	req.productname = "x";

	ck_assert_int_eq(ms_trace_set(TP), 0);
	ck_assert_int_eq(
	    bus_call(bus, svc, "GetDiscount", &req.base, &reply, 0, NULL), 0);
	protobuf_c_message_free_unpacked(reply, NULL);
	ck_assert_int_eq(ms_trace_parse(seen_rpc_tp, out), 0);
	ck_assert_int_eq(strncmp(seen_rpc_tp, TP, 36), 0); /* same trace */
	ck_assert_str_ne(seen_rpc_tp, TP);                 /* new span */
	ck_assert_str_eq(seen_cur_tp, seen_rpc_tp);
	ck_assert_str_eq(ms_trace_get(), TP);

	ms_trace_clear();
	ck_assert_int_eq(
	    bus_call(bus, svc, "GetDiscount", &req.base, &reply, 0, NULL), 0);
	protobuf_c_message_free_unpacked(reply, NULL);
	ck_assert_str_eq(seen_rpc_tp, "");
	ck_assert_str_eq(seen_cur_tp, "");
	ck_assert_ptr_null(ms_trace_get());

	/* From outside (a transport's edge): the call's context, valid or
	 * not, never leaks into the dispatching thread's own. */
	{
		uint8_t buf[64];
		size_t n = protobuf_c_message_pack(&req.base, buf);
		uint8_t *rep = NULL;
		size_t rlen = 0;
		char detail[64];

		ck_assert_int_eq(ms_trace_set(TP), 0);
		ck_assert_int_eq(
		    bus_dispatch(bus, svc->name, "GetDiscount", buf, n, 0,
		                 "00-0af7651916cd43dd8448eb211c80319c-"
		                 "b7ad6b7169203331-01",
		                 &rep, &rlen, detail, sizeof(detail)),
		    0);
		free(rep);
		ck_assert_str_eq(
		    seen_cur_tp,
		    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
		ck_assert_str_eq(ms_trace_get(), TP);
		ck_assert_int_eq(bus_dispatch(bus, svc->name, "GetDiscount",
		                              buf, n, 0, "garbage", &rep, &rlen,
		                              detail, sizeof(detail)),
		                 0);
		free(rep);
		ck_assert_str_eq(seen_cur_tp, TP); /* invalid: the thread's */
		ck_assert_str_eq(ms_trace_get(), TP);
		ms_trace_clear();
	}
	bus_destroy(bus);
	ms_config_destroy(cfg);
}
END_TEST

/* A transport with a quiesce op, to see bus_quiesce reach it. */
static atomic_int quiesced;

static int
quiet_init(struct bus_transport *t, const char *url, const struct ms_config *c)
{
	(void)t;
	(void)url;
	(void)c;
	return 0;
}

static int
quiet_start(struct bus_transport *t)
{
	(void)t;
	return 0;
}

static void
quiet_nop(struct bus_transport *t)
{
	(void)t;
}

static void
quiet_quiesce(struct bus_transport *t)
{
	(void)t;
	atomic_fetch_add(&quiesced, 1);
}

static int
quiet_call(struct bus_transport *t, struct bus_call *c)
{
	(void)t;
	c->rc = MS_EUNAVAIL;
	bus_call_complete(c);
	return 0;
}

/* Under the scheme prefix the config lets tests use for transports they
 * register (config.c: "faulty+URL"); this one wraps nothing. */
static const struct bus_transport_ops quiet_ops = {
    .scheme = "faulty+",
    .caps = BUS_CAP_CALL,
    .init = quiet_init,
    .start = quiet_start,
    .quiesce = quiet_quiesce,
    .stop = quiet_nop,
    .fini = quiet_nop,
    .call = quiet_call,
};

/* bus_quiesce reaches every transport that has the op (the local one has
 * none), once started and before stop only; the process's own calls still
 * work after it. */
START_TEST(test_quiesce)
{
	static const char *const sets[] = {"remote.ordering=faulty+local://",
	                                   NULL};
	struct ms_config *cfg = config(sets);
	Discount__GetDiscountRequest req = DISCOUNT__GET_DISCOUNT_REQUEST__INIT;
	ProtobufCMessage *reply;
	struct bus *bus;
	char err[256];

	atomic_store(&quiesced, 0);
	ck_assert_int_eq(bus_create(&bus, cfg), 0);
	ck_assert_int_eq(bus_serve(bus, svc, handlers, NULL), 0);
	ck_assert_int_eq(bus_require(bus, "ordering", "some.Service"), 0);
	bus_quiesce(bus); /* not started: nothing */
	ck_assert_int_eq(atomic_load(&quiesced), 0);
	ck_assert_msg(bus_start(bus, err, sizeof(err)) == 0, "%s", err);
	bus_quiesce(bus);
	ck_assert_int_eq(atomic_load(&quiesced), 1);
	req.productname = "still";
	ck_assert_int_eq(
	    bus_call(bus, svc, "GetDiscount", &req.base, &reply, 0, NULL), 0);
	protobuf_c_message_free_unpacked(reply, NULL);
	bus_stop(bus);
	bus_quiesce(bus); /* stopped: nothing */
	ck_assert_int_eq(atomic_load(&quiesced), 1);
	bus_destroy(bus);
	ms_config_destroy(cfg);
}
END_TEST

START_TEST(test_dispatch_bad_bytes)
{
	struct ms_config *cfg = config(NULL);
	struct bus *bus;
	uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
	uint8_t *reply;
	size_t len;
	char detail[128];
	char err[256];

	ck_assert_int_eq(bus_create(&bus, cfg), 0);
	ck_assert_int_eq(bus_serve(bus, svc, handlers, NULL), 0);
	ck_assert_int_eq(bus_start(bus, err, sizeof(err)), 0);
	ck_assert_int_eq(bus_dispatch(bus, svc->name, "GetDiscount", junk,
	                              sizeof(junk), 0, NULL, &reply, &len,
	                              detail, sizeof(detail)),
	                 MS_EDECODE);
	ck_assert_int_eq(bus_dispatch(bus, "nope.Service", "GetDiscount", junk,
	                              0, 0, NULL, &reply, &len, detail,
	                              sizeof(detail)),
	                 MS_ENOTFOUND);
	/* A deadline already passed: the handler does not run. */
	ck_assert_int_eq(bus_dispatch(bus, svc->name, "GetDiscount", junk, 0,
	                              ms_now_ms() - 1, NULL, &reply, &len,
	                              detail, sizeof(detail)),
	                 MS_ETIMEDOUT);
	bus_destroy(bus);
	ms_config_destroy(cfg);
}
END_TEST

/* bus_restrict: a module marks admin methods; listeners ask
 * bus_restricted (issue 8); in-process calls are never asked. bus_inline
 * marks quick methods in a mask of its own (bus_runs_inline). */
START_TEST(test_restrict)
{
	struct ms_config *cfg = config(NULL);
	struct bus *bus;
	Discount__GetDiscountRequest req = DISCOUNT__GET_DISCOUNT_REQUEST__INIT;
	ProtobufCMessage *reply;
	struct bus_status st;
	char err[256];

	ck_assert_int_eq(bus_create(&bus, cfg), 0);
	ck_assert_int_eq(bus_restrict(bus, svc, "DeleteDiscount"),
	                 MS_ENOTFOUND); /* not served yet */
	ck_assert_int_eq(bus_inline(bus, svc, "GetDiscount"), MS_ENOTFOUND);
	ck_assert_int_eq(bus_serve(bus, svc, handlers, NULL), 0);
	ck_assert_int_eq(bus_restrict(bus, svc, "Nope"), MS_ENOTFOUND);
	ck_assert_int_eq(bus_inline(bus, svc, "Nope"), MS_ENOTFOUND);
	ck_assert_int_eq(bus_inline(bus, svc, "UpdateDiscount"), 0);
	ck_assert_int_eq(bus_restrict(bus, svc, "DeleteDiscount"), 0);
	ck_assert_int_eq(bus_restrict(bus, svc, "GetDiscount"), 0);
	ck_assert_int_eq(bus_require(bus, "discount", svc->name), 0);
	ck_assert_int_eq(bus_start(bus, err, sizeof(err)), 0);
	ck_assert(bus_restricted(bus, svc->name, "DeleteDiscount"));
	ck_assert(bus_restricted(bus, svc->name, "GetDiscount"));
	ck_assert(!bus_restricted(bus, svc->name, "CreateDiscount"));
	ck_assert(!bus_restricted(bus, svc->name, "Nope"));
	ck_assert(!bus_restricted(bus, "nope.Service", "DeleteDiscount"));
	ck_assert(bus_runs_inline(bus, svc->name, "UpdateDiscount"));
	ck_assert(!bus_restricted(bus, svc->name, "UpdateDiscount"));
	ck_assert(!bus_runs_inline(bus, svc->name, "GetDiscount"));
	ck_assert(!bus_runs_inline(bus, svc->name, "DeleteDiscount"));
	ck_assert(!bus_runs_inline(bus, svc->name, "Nope"));
	ck_assert(!bus_runs_inline(bus, "nope.Service", "UpdateDiscount"));
	/* A local call to a restricted method needs nothing. */
	req.productname = "IPhone X";
	ck_assert_int_eq(
	    bus_call(bus, svc, "GetDiscount", &req.base, &reply, 0, &st), 0);
	protobuf_c_message_free_unpacked(reply, NULL);
	bus_stop(bus);
	bus_destroy(bus);
	ms_config_destroy(cfg);
}
END_TEST

START_TEST(test_start_errors)
{
	static const char *const grpc[] = {"remote.discount=grpc://127.0.0.1:1",
	                                   NULL};
	struct ms_config *cfg = config(NULL);
	struct bus *bus;
	char err[256];

	/* Required, not hosted, no remote.* entry. */
	ck_assert_int_eq(bus_create(&bus, cfg), 0);
	ck_assert_int_eq(bus_require(bus, "discount", svc->name), 0);
	ck_assert_int_eq(bus_start(bus, err, sizeof(err)), MS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "remote.discount"));
	bus_destroy(bus);

	/* Events recorded with nobody to consume them in process. */
	ck_assert_int_eq(bus_create(&bus, cfg), 0);
	ck_assert_int_eq(bus_expect_subscriber(bus, "monoshop.events."
	                                            "BasketCheckoutEvent"),
	                 0);
	ck_assert_int_eq(bus_start(bus, err, sizeof(err)), MS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "events.broker"));
	bus_destroy(bus);
	ms_config_destroy(cfg);

	/* A scheme this build has no transport for, when that is so. */
	cfg = config(grpc);
	ck_assert_int_eq(bus_create(&bus, cfg), 0);
	ck_assert_int_eq(bus_require(bus, "discount", svc->name), 0);
	if (bus_transport_find("grpc://x") == NULL) {
		ck_assert_int_eq(bus_start(bus, err, sizeof(err)), MS_ECONFIG);
		ck_assert_ptr_nonnull(strstr(err, "remote.discount"));
	}
	bus_destroy(bus);
	ms_config_destroy(cfg);
}
END_TEST

/* ---- events ------------------------------------------------------------ */

struct sink {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	int delivered;  /* handler calls */
	int fail_first; /* answer MS_EBUSY this many times */
	int poison;     /* answer MS_EINVAL */
	char last_user[64];
	char last_trace[MS_TRACEPARENT_SIZE]; /* current in the subscriber */
	int done_rc;
	int done_calls;
};

static struct sink sink;

static void
sink_reset(void)
{
	memset(&sink, 0, sizeof(sink));
	pthread_mutex_init(&sink.mtx, NULL);
	pthread_cond_init(&sink.cv, NULL);
}

static int
on_event(void *ctx, const struct bus_event *ev, const ProtobufCMessage *msg)
{
	const Monoshop__Events__BasketCheckoutEvent *e = (const void *)msg;
	int rc = 0;

	(void)ctx;
	(void)ev;
	pthread_mutex_lock(&sink.mtx);
	sink.delivered++;
	ms_strlcpy(sink.last_user, e->username, sizeof(sink.last_user));
	ms_strlcpy(sink.last_trace, ms_trace_get() ? ms_trace_get() : "",
	           sizeof(sink.last_trace));
	if (sink.poison) {
		rc = MS_EINVAL;
	} else if (sink.fail_first > 0) {
		sink.fail_first--;
		rc = MS_EBUSY;
	}
	pthread_cond_broadcast(&sink.cv);
	pthread_mutex_unlock(&sink.mtx);
	return rc;
}

static void
on_done(struct bus_event *ev, int rc)
{
	(void)ev;
	pthread_mutex_lock(&sink.mtx);
	sink.done_rc = rc;
	sink.done_calls++;
	pthread_cond_broadcast(&sink.cv);
	pthread_mutex_unlock(&sink.mtx);
}

/* Waits until *|field| >= |want| or 10 s pass; returns the last value. */
static int
wait_for(const int *field, int want)
{
	int64_t deadline = ms_now_ms() + 10000;
	int v;

	pthread_mutex_lock(&sink.mtx);
	while ((v = *field) < want && ms_now_ms() < deadline) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&sink.cv, &sink.mtx, &ts);
	}
	pthread_mutex_unlock(&sink.mtx);
	return v;
}

static size_t
pack_event(const char *user, uint8_t *buf)
{
	Monoshop__Events__BasketCheckoutEvent e =
	    MONOSHOP__EVENTS__BASKET_CHECKOUT_EVENT__INIT;

	e.username = (char *)user;
	e.totalprice = "10.00";
	return protobuf_c_message_pack(&e.base, buf);
}

/* The subscriber runs under the event's trace. */
START_TEST(test_deliver_trace)
{
	struct ms_config *cfg = config(NULL);
	struct bus *bus;
	struct bus_event ev;
	uint8_t buf[256];
	char err[256];

	sink_reset();
	ck_assert_int_eq(bus_create(&bus, cfg), 0);
	ck_assert_int_eq(
	    bus_subscribe(bus,
	                  &monoshop__events__basket_checkout_event__descriptor,
	                  on_event, NULL),
	    0);
	ck_assert_int_eq(bus_start(bus, err, sizeof(err)), 0);
	memset(&ev, 0, sizeof(ev));
	ms_uuid_v4(ev.id);
	ev.type = "monoshop.events.BasketCheckoutEvent";
	ev.payload = buf;
	ev.len = pack_event("traced", buf);
	ev.traceparent = TP;
	ev.done = on_done;
	ck_assert_int_eq(bus_publish(bus, &ev), 0);
	ck_assert_int_eq(wait_for(&sink.done_calls, 1), 1);
	ck_assert_int_eq(sink.done_rc, 0);
	ck_assert_str_eq(sink.last_trace, TP);
	bus_destroy(bus);
	ms_config_destroy(cfg);
}
END_TEST

START_TEST(test_publish_local)
{
	struct ms_config *cfg = config(NULL);
	struct bus *bus;
	struct bus_event ev;
	uint8_t buf[256];
	char err[256];

	sink_reset();
	ck_assert_int_eq(bus_create(&bus, cfg), 0);
	ck_assert_int_eq(
	    bus_subscribe(bus,
	                  &monoshop__events__basket_checkout_event__descriptor,
	                  on_event, NULL),
	    0);
	ck_assert_int_eq(
	    bus_expect_subscriber(bus, "monoshop.events.BasketCheckoutEvent"),
	    0);
	ck_assert_int_eq(bus_start(bus, err, sizeof(err)), 0);
	ck_assert(
	    bus_has_subscriber(bus, "monoshop.events.BasketCheckoutEvent"));

	memset(&ev, 0, sizeof(ev));
	ms_uuid_v4(ev.id);
	ev.type = "monoshop.events.BasketCheckoutEvent";
	ev.payload = buf;
	ev.len = pack_event("swn", buf);
	ev.done = on_done;
	ck_assert_int_eq(bus_publish(bus, &ev), 0);
	ck_assert_int_eq(wait_for(&sink.done_calls, 1), 1);
	ck_assert_int_eq(sink.done_rc, 0);
	ck_assert_int_eq(sink.delivered, 1);
	ck_assert_str_eq(sink.last_user, "swn");
	{
		/* No trace came with it: the subscriber still runs under one,
		 * new. */
		char out[MS_TRACEPARENT_SIZE];

		ck_assert_int_eq(ms_trace_parse(sink.last_trace, out), 0);
	}

	/* A transient failure comes back as the publish result. */
	sink.fail_first = 1;
	ck_assert_int_eq(bus_publish(bus, &ev), 0);
	ck_assert_int_eq(wait_for(&sink.done_calls, 2), 2);
	ck_assert_int_eq(sink.done_rc, MS_EBUSY);

	/* Bytes that are not the event: undecodable, the handler never runs. */
	ev.payload = (const uint8_t *)"\xff\xff\xff";
	ev.len = 3;
	ck_assert_int_eq(bus_publish(bus, &ev), 0);
	ck_assert_int_eq(wait_for(&sink.done_calls, 3), 3);
	ck_assert_int_eq(sink.done_rc, MS_EINVAL);
	ck_assert_int_eq(sink.delivered, 2);

	/* An unknown type: nobody here consumes it. */
	ev.type = "monoshop.events.Nope";
	ck_assert_int_eq(bus_publish(bus, &ev), 0);
	ck_assert_int_eq(wait_for(&sink.done_calls, 4), 4);
	ck_assert_int_eq(sink.done_rc, MS_ENOTFOUND);

	bus_stop(bus);
	ck_assert_int_eq(bus_publish(bus, &ev), MS_ECLOSED);
	bus_destroy(bus);
	ms_config_destroy(cfg);
}
END_TEST

/* ---- the relay, end to end --------------------------------------------- */

static char dir[256];

static void
setup(void)
{
	ck_assert_int_eq(test_tmpdir(dir, sizeof(dir)), 0);
	sink_reset();
}

static void
teardown(void)
{
	test_rmdir(dir);
}

static void
record(struct store *st, const char *user)
{
	uint8_t buf[256];
	size_t len = pack_event(user, buf);
	char id[MS_UUID_STRLEN];

	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_outbox_add(st, ms_uuid_v4(id),
	                                  "monoshop.events.BasketCheckoutEvent",
	                                  buf, len, NULL, ms_wall_ms()),
	                 0);
	ck_assert_int_eq(store_commit(st), 0);
	store_outbox_notify(st);
}

static int64_t
wait_depth(struct store *st, int64_t want)
{
	int64_t deadline = ms_now_ms() + 10000;
	int64_t n = -1;
	int64_t oldest;

	while (ms_now_ms() < deadline) {
		ck_assert_int_eq(store_outbox_depth(st, &n, &oldest), 0);
		if (n == want) {
			break;
		}
		store_outbox_wait(st, 10);
	}
	return n;
}

static void
relay_case(int fail_first, int poison, int nevents)
{
	struct ms_config *cfg = config(NULL);
	struct bus *bus;
	struct store *st;
	struct bus_relay *relay;
	struct bus_relay_opts ro = {.batch = 4, .poll_ms = 50};
	char err[256];

	sink.fail_first = fail_first;
	sink.poison = poison;
	ck_assert_int_eq(store_open(&st, dir, "relay", NULL, 0, NULL), 0);
	ck_assert_int_eq(bus_create(&bus, cfg), 0);
	ck_assert_int_eq(
	    bus_subscribe(bus,
	                  &monoshop__events__basket_checkout_event__descriptor,
	                  on_event, NULL),
	    0);
	ck_assert_int_eq(bus_start(bus, err, sizeof(err)), 0);
	ck_assert_int_eq(bus_relay_start(&relay, bus, st, &ro), 0);
	for (int i = 0; i < nevents; i++) {
		record(st, "relay-user");
	}
	ck_assert_int_eq(wait_depth(st, 0), 0);
	ck_assert_int_ge(wait_for(&sink.delivered, nevents + fail_first),
	                 nevents + fail_first);
	bus_relay_stop(relay);
	bus_stop(bus);
	bus_destroy(bus);
	store_lock(st);
	{
		sqlite3_stmt *s;

		sqlite3_prepare_v2(store_db(st),
		                   "SELECT count(*), sum(dead_reason IS NOT "
		                   "NULL), max(attempts) FROM outbox",
		                   -1, &s, NULL);
		ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
		ck_assert_int_eq(sqlite3_column_int(s, 0), nevents);
		ck_assert_int_eq(sqlite3_column_int(s, 1),
		                 poison ? nevents : 0);
		ck_assert_int_ge(sqlite3_column_int(s, 2),
		                 poison ? 1 : (fail_first ? 1 : 0));
		sqlite3_finalize(s);
	}
	store_unlock(st);
	store_close(st);
	ms_config_destroy(cfg);
}

START_TEST(test_relay_delivers)
{
	/* More events than one batch. */
	relay_case(0, 0, 10);
	ck_assert_int_eq(sink.delivered, 10);
}
END_TEST

START_TEST(test_relay_retries)
{
	relay_case(2, 0, 1);
	ck_assert_int_eq(sink.delivered, 3);
}
END_TEST

START_TEST(test_relay_poison_is_dead)
{
	relay_case(0, 1, 2);
	ck_assert_int_eq(sink.delivered, 2);
}
END_TEST

static Suite *
bus_suite(void)
{
	Suite *s = suite_create("bus");
	TCase *tc = tcase_create("calls");
	TCase *te = tcase_create("events");

	tcase_add_test(tc, test_local_call);
	tcase_add_test(tc, test_call_trace);
	tcase_add_test(tc, test_quiesce);
	tcase_add_test(tc, test_dispatch_bad_bytes);
	tcase_add_test(tc, test_start_errors);
	tcase_add_test(tc, test_restrict);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(te, setup, teardown);
	tcase_add_test(te, test_publish_local);
	tcase_add_test(te, test_deliver_trace);
	tcase_add_test(te, test_relay_delivers);
	tcase_add_test(te, test_relay_retries);
	tcase_add_test(te, test_relay_poison_is_dead);
	suite_add_tcase(s, te);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	/* Before any bus exists, as the registry requires. */
	if (bus_transport_register(&quiet_ops) != 0) {
		return EXIT_FAILURE;
	}
	sr = srunner_create(bus_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
