/* SPDX-License-Identifier: MIT */
/*
 * The nng transport (src/transport/nng/nng.c) between two buses in this
 * process, exactly as two monoshop processes use it: a server bus serving
 * discount.DiscountProtoService with the test handlers below and
 * subscribing to BasketCheckoutEvent, listening on nng.listen; a client
 * bus whose remote.discount and events.broker both name that listener (one
 * shared instance). Every test runs twice (a ranged test): over
 * tcp://127.0.0.1:<free port> and over ipc:///tmp/<unique path>.
 *
 * Covered: call and reply, many calls at once, a handler's error and its
 * detail, an unknown method, a deadline expiring while the handler waits
 * on a condition, the size limit on the request and on the reply, the peer
 * down (fails within the deadline, then at once) and up again, health,
 * publish with the consumer's verdicts (committed, transient, poison, no
 * subscriber), an event over the limit, publish while the consumer is
 * down, stopping the client while a call is in flight, and a server that
 * is shutting down refusing new work while it finishes what it holds.
 *
 * Never a fixed sleep: every wait is for a condition, with a deadline.
 *
 * Threads: the test thread drives the buses; handlers and the subscriber
 * run on the server's workers; completions on nng's threads. |mu|/|cv|
 * guard everything the handlers, the subscriber and the completions share
 * with the test.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus.h"
#include "bus/bus_core.h"
#include "core/config.h"
#include "core/err.h"
#include "core/health.h"
#include "core/util.h"
#include "discount.pb-c.h"
#include "events.pb-c.h"

#define SERVICE     "discount.DiscountProtoService"
#define EVENT_TYPE  "monoshop.events.BasketCheckoutEvent"
#define MAX_MESSAGE 16384
#define CONNECT_MS  300
#define CALL_MS     2000 /* bus.call_timeout_ms: also the events' */
#define WAIT_MS     10000
#define TRACEPARENT "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
#define FAIL_DETAIL "no coupon for \xc2\xabIPhone\xc2\xbb at 100% off"

static char listen_url[128]; /* tcp://127.0.0.1:P or ipc:///tmp/... */
static char remote_url[140]; /* nng+tcp://... or nng+ipc://... */
static char ipc_path[96];
static struct ms_config *scfg, *ccfg;
static struct bus *sbus, *cbus;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
/* the blocking handler (CreateDiscount) */
static int entered;
static bool release_all;
/* the subscriber */
static int delivered;
static char last_id[40];
static char last_user[64];
static char last_trace[64];
static unsigned last_attempt;

/* ---- waiting ------------------------------------------------------------ */

/* Waits on |cv| (|mu| held) for at most 10 ms. */
static void
cv_wait_a_little(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 10 * 1000000;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&cv, &mu, &ts);
}

static bool
wait_int(const int *v, int n)
{
	int64_t deadline = ms_now_ms() + WAIT_MS;
	bool ok;

	pthread_mutex_lock(&mu);
	while (*v < n && ms_now_ms() < deadline) {
		cv_wait_a_little();
	}
	ok = *v >= n;
	pthread_mutex_unlock(&mu);
	return ok;
}

static void
release(void)
{
	pthread_mutex_lock(&mu);
	release_all = true;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

/* ---- the server's handlers ---------------------------------------------- */

/* GetDiscount answers a coupon for the product; "big reply" makes a reply
 * over the limit; a long name is not echoed (its request tests the
 * limit, not the reply). */
static int
h_get(void *ctx, struct bus_rpc *rpc, const ProtobufCMessage *req,
      ProtobufCMessage *reply)
{
	const Discount__GetDiscountRequest *in = (const void *)req;
	Discount__CouponModel *out = (void *)reply;
	const char *tp = bus_rpc_traceparent(rpc);

	out->id = 42;
	out->amount = 150;
	out->productname =
	    strlen(in->productname) < 100 ? in->productname : "long";
	out->description = tp ? bus_rpc_strdup(rpc, tp) : "no trace";
	if (strcmp(in->productname, "big reply") == 0) {
		char *d = bus_rpc_alloc(rpc, MAX_MESSAGE + 1);

		if (d == NULL) {
			return MS_ENOMEM;
		}
		memset(d, 'd', MAX_MESSAGE);
		out->description = d;
	}
	return 0;
}

/* CreateDiscount blocks until the test releases it. */
static int
h_create(void *ctx, struct bus_rpc *rpc, const ProtobufCMessage *req,
         ProtobufCMessage *reply)
{
	Discount__CouponModel *out = (void *)reply;

	pthread_mutex_lock(&mu);
	entered++;
	pthread_cond_broadcast(&cv);
	while (!release_all) {
		pthread_cond_wait(&cv, &mu);
	}
	pthread_mutex_unlock(&mu);
	out->id = 7;
	return 0;
}

/* UpdateDiscount fails with NOT_FOUND and a detail. */
static int
h_update(void *ctx, struct bus_rpc *rpc, const ProtobufCMessage *req,
         ProtobufCMessage *reply)
{
	return bus_rpc_error(rpc, MS_ENOTFOUND, "%s", FAIL_DETAIL);
}

/* DeleteDiscount has no handler: MS_ENOTSUP. */
static const bus_handler_fn handlers[] = {h_get, h_create, h_update, NULL};

/* The subscriber records the event; its verdict depends on the user name:
 * "poison" MS_EINVAL, "flaky" MS_EDB, anything else 0 (committed). */
static int
on_event(void *ctx, const struct bus_event *ev, const ProtobufCMessage *msg)
{
	const Monoshop__Events__BasketCheckoutEvent *e = (const void *)msg;
	int rc = 0;

	if (strcmp(e->username, "poison") == 0) {
		rc = MS_EINVAL;
	} else if (strcmp(e->username, "flaky") == 0) {
		rc = MS_EDB;
	}
	pthread_mutex_lock(&mu);
	snprintf(last_id, sizeof(last_id), "%s", ev->id);
	snprintf(last_user, sizeof(last_user), "%s", e->username);
	snprintf(last_trace, sizeof(last_trace), "%s",
	         ev->traceparent ? ev->traceparent : "");
	last_attempt = ev->attempt;
	delivered++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	return rc;
}

/* ---- the two buses ------------------------------------------------------ */

/* set applies "|key|=|value|" to |cfg|. */
static void
set(struct ms_config *cfg, const char *key, const char *value)
{
	char assignment[256];
	char err[256];

	snprintf(assignment, sizeof(assignment), "%s=%s", key, value);
	ck_assert_msg(
	    ms_config_set(cfg, assignment, "test", err, sizeof(err)) == 0,
	    "%s: %s", assignment, err);
}

static void
server_up(void)
{
	char err[256] = "";

	ck_assert_int_eq(ms_config_create(&scfg), 0);
	set(scfg, "nng.listen", listen_url);
	/* The gRPC listener (when built) serves Discount too: any port. */
	set(scfg, "grpc.listen", "127.0.0.1:0");
	set(scfg, "nng.max_message", "16384");
	set(scfg, "nng.threads", "4");
	ck_assert_int_eq(bus_create(&sbus, scfg), 0);
	ck_assert_int_eq(
	    bus_serve(sbus, &discount__discount_proto_service__descriptor,
	              handlers, NULL),
	    0);
	ck_assert_int_eq(
	    bus_subscribe(sbus,
	                  &monoshop__events__basket_checkout_event__descriptor,
	                  on_event, NULL),
	    0);
	ck_assert_msg(bus_start(sbus, err, sizeof(err)) == 0, "server: %s",
	              err);
}

static void
server_down(void)
{
	release(); /* a blocked handler would hold up the stop */
	bus_destroy(sbus);
	sbus = NULL;
	ms_config_destroy(scfg);
	scfg = NULL;
}

static void
client_up(void)
{
	char err[256] = "";
	char v[16];

	ck_assert_int_eq(ms_config_create(&ccfg), 0);
	set(ccfg, "remote.discount", remote_url);
	set(ccfg, "events.broker", remote_url);
	set(ccfg, "nng.max_message", "16384");
	snprintf(v, sizeof(v), "%d", CONNECT_MS);
	set(ccfg, "nng.connect_timeout_ms", v);
	snprintf(v, sizeof(v), "%d", CALL_MS);
	set(ccfg, "bus.call_timeout_ms", v);
	ck_assert_int_eq(bus_create(&cbus, ccfg), 0);
	ck_assert_int_eq(bus_require(cbus, "discount", SERVICE), 0);
	ck_assert_msg(bus_start(cbus, err, sizeof(err)) == 0, "client: %s",
	              err);
}

/* A loopback port that was free a moment ago. */
static int
free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port;

	ck_assert_int_ge(fd, 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* _i: 0 = TCP, 1 = IPC. */
static void
setup_for(int kind)
{
	static int seq;

	entered = 0;
	release_all = false;
	delivered = 0;
	last_id[0] = last_user[0] = last_trace[0] = '\0';
	last_attempt = 0;
	if (kind == 0) {
		int port = free_port();

		snprintf(listen_url, sizeof(listen_url), "tcp://127.0.0.1:%d",
		         port);
		snprintf(remote_url, sizeof(remote_url),
		         "nng+tcp://127.0.0.1:%d", port);
		ipc_path[0] = '\0';
	} else {
		snprintf(ipc_path, sizeof(ipc_path),
		         "/tmp/monoshop-test-nng-%d-%d.sock", (int)getpid(),
		         seq++);
		unlink(ipc_path);
		snprintf(listen_url, sizeof(listen_url), "ipc://%s", ipc_path);
		snprintf(remote_url, sizeof(remote_url), "nng+ipc://%s",
		         ipc_path);
	}
	server_up();
	client_up();
}

/* The client goes first, while a blocked handler still holds its reply:
 * closing a socket while a message arrives on it can hang nng 1.5 (see
 * close_socket in nng.c), so no reply is let out towards a closing
 * client. */
static void
teardown_all(void)
{
	bus_destroy(cbus);
	cbus = NULL;
	ms_config_destroy(ccfg);
	ccfg = NULL;
	if (sbus != NULL) {
		server_down();
	}
	if (ipc_path[0]) {
		unlink(ipc_path);
	}
}

/* ---- calling ------------------------------------------------------------ */

/* get calls GetDiscount(|name|) on the client bus; *out gets the reply
 * (free it) when it is not NULL. */
static int
get(const char *name, int timeout_ms, struct bus_status *st,
    Discount__CouponModel **out)
{
	Discount__GetDiscountRequest req = DISCOUNT__GET_DISCOUNT_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	int rc;

	req.productname = (char *)name;
	rc = bus_call(cbus, &discount__discount_proto_service__descriptor,
	              "GetDiscount", &req.base, &reply, timeout_ms, st);
	if (out != NULL) {
		*out = (Discount__CouponModel *)reply;
	} else if (reply != NULL) {
		protobuf_c_message_free_unpacked(reply, NULL);
	}
	return rc;
}

static int
call_create(int timeout_ms, struct bus_status *st)
{
	Discount__CreateDiscountRequest req =
	    DISCOUNT__CREATE_DISCOUNT_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	int rc;

	rc = bus_call(cbus, &discount__discount_proto_service__descriptor,
	              "CreateDiscount", &req.base, &reply, timeout_ms, st);
	if (reply != NULL) {
		protobuf_c_message_free_unpacked(reply, NULL);
	}
	return rc;
}

/* The health entry |name| (rc, and its description in |desc|). */
static int
health_of(const char *name, char *desc, size_t desclen, bool *found)
{
	struct ms_health_result res[32];
	int healthy;
	size_t n = ms_health_run(res, 32, &healthy);

	*found = false;
	for (size_t i = 0; i < n && i < 32; i++) {
		if (strcmp(res[i].name, name) == 0) {
			*found = true;
			snprintf(desc, desclen, "%s", res[i].desc);
			return res[i].rc;
		}
	}
	return 0;
}

START_TEST(call_reply)
{
	Discount__CouponModel *m = NULL;
	struct bus_status st;
	char desc[160];
	bool found;

	setup_for(_i);
	ck_assert_int_eq(get("IPhone X", 0, &st, &m), 0);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->id, 42);
	ck_assert_int_eq(m->amount, 150);
	ck_assert_str_eq(m->productname, "IPhone X");
	protobuf_c_message_free_unpacked(&m->base, NULL);

	/* One instance for both roles: the remote entry, no broker one. */
	ck_assert_int_eq(health_of("discount", desc, sizeof(desc), &found), 0);
	ck_assert(found);
	ck_assert_msg(strstr(desc, "connected to nng+") != NULL, "%s", desc);
	(void)health_of("broker", desc, sizeof(desc), &found);
	ck_assert(!found);
	/* The listener's entry is healthy and says where. */
	ck_assert_int_eq(health_of("nng+tcp", desc, sizeof(desc), &found), 0);
	ck_assert(found);
	ck_assert_msg(strstr(desc, listen_url) != NULL, "%s", desc);
	teardown_all();
}
END_TEST

struct burst {
	int index;
	int ok;
	int calls;
};

static void *
burst_main(void *arg)
{
	struct burst *b = arg;

	for (int i = 0; i < b->calls; i++) {
		char name[32];
		Discount__CouponModel *m = NULL;

		snprintf(name, sizeof(name), "p-%d-%d", b->index, i);
		if (get(name, 0, NULL, &m) == 0 && m != NULL &&
		    strcmp(m->productname, name) == 0) {
			b->ok++;
		}
		if (m != NULL) {
			protobuf_c_message_free_unpacked(&m->base, NULL);
		}
	}
	return NULL;
}

START_TEST(concurrent_calls)
{
	enum { THREADS = 8, CALLS = 50 };
	pthread_t th[THREADS];
	struct burst b[THREADS];

	setup_for(_i);
	for (int i = 0; i < THREADS; i++) {
		b[i].index = i;
		b[i].ok = 0;
		b[i].calls = CALLS;
		ck_assert_int_eq(
		    pthread_create(&th[i], NULL, burst_main, &b[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(b[i].ok, CALLS);
	}
	teardown_all();
}
END_TEST

START_TEST(handler_error)
{
	Discount__UpdateDiscountRequest up =
	    DISCOUNT__UPDATE_DISCOUNT_REQUEST__INIT;
	Discount__DeleteDiscountRequest del =
	    DISCOUNT__DELETE_DISCOUNT_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	struct bus_status st;

	setup_for(_i);
	ck_assert_int_eq(bus_call(cbus,
	                          &discount__discount_proto_service__descriptor,
	                          "UpdateDiscount", &up.base, &reply, 0, &st),
	                 MS_ENOTFOUND);
	ck_assert_ptr_null(reply);
	ck_assert_int_eq(st.rc, MS_ENOTFOUND);
	ck_assert_str_eq(st.detail, FAIL_DETAIL);

	del.productname = "x";
	ck_assert_int_eq(bus_call(cbus,
	                          &discount__discount_proto_service__descriptor,
	                          "DeleteDiscount", &del.base, &reply, 0, &st),
	                 MS_ENOTSUP);
	ck_assert_ptr_null(reply);
	ck_assert_msg(strstr(st.detail, "DeleteDiscount") != NULL, "%s",
	              st.detail);
	teardown_all();
}
END_TEST

START_TEST(deadline)
{
	struct bus_status st;
	int64_t t0 = ms_now_ms();
	int64_t took;

	setup_for(_i);
	t0 = ms_now_ms();
	ck_assert_int_eq(call_create(300, &st), MS_ETIMEDOUT);
	took = ms_now_ms() - t0;
	ck_assert_msg(took >= 290 && took < 1500, "took %lld ms",
	              (long long)took);
	ck_assert(wait_int(&entered, 1)); /* it did reach the handler */
	/* The other workers still serve. */
	ck_assert_int_eq(get("IPhone X", 0, NULL, NULL), 0);
	teardown_all(); /* releases the handler once the client is gone */
}
END_TEST

START_TEST(size_limit)
{
	Discount__CouponModel *m = NULL;
	struct bus_status st;
	char *name = malloc(MAX_MESSAGE + 1);

	ck_assert_ptr_nonnull(name);
	setup_for(_i);
	/* A request of exactly MAX_MESSAGE bytes: tag (1) + length (2) +
	 * the name. */
	memset(name, 'n', MAX_MESSAGE - 3);
	name[MAX_MESSAGE - 3] = '\0';
	ck_assert_int_eq(get(name, 0, &st, &m), 0);
	ck_assert_str_eq(m->productname, "long");
	protobuf_c_message_free_unpacked(&m->base, NULL);

	/* One byte more: refused before it is sent. */
	memset(name, 'n', MAX_MESSAGE - 2);
	name[MAX_MESSAGE - 2] = '\0';
	ck_assert_int_eq(get(name, 0, &st, NULL), MS_ETOOBIG);
	ck_assert_msg(strstr(st.detail, "nng.max_message") != NULL, "%s",
	              st.detail);

	/* A reply over the limit: the server says so. */
	ck_assert_int_eq(get("big reply", 0, &st, NULL), MS_ETOOBIG);
	ck_assert_msg(strstr(st.detail, "reply") != NULL, "%s", st.detail);

	/* And the connection is still good. */
	ck_assert_int_eq(get("IPhone X", 0, NULL, NULL), 0);
	free(name);
	teardown_all();
}
END_TEST

START_TEST(peer_down_then_up)
{
	struct bus_status st;
	char desc[160];
	bool found;
	int64_t t0;
	int64_t took;
	int rc;

	setup_for(_i);
	ck_assert_int_eq(get("IPhone X", 0, NULL, NULL), 0);
	server_down();

	/* Within the deadline, as unavailable (or timed out). */
	t0 = ms_now_ms();
	rc = get("IPhone X", 1000, &st, NULL);
	took = ms_now_ms() - t0;
	ck_assert_msg(rc == MS_EUNAVAIL || rc == MS_ETIMEDOUT, "rc %s",
	              ms_errname(rc));
	ck_assert_msg(took < 1300, "took %lld ms", (long long)took);

	/* Past nng.connect_timeout_ms, at once, and saying why. */
	t0 = ms_now_ms();
	while (ms_now_ms() - t0 < 10 * CONNECT_MS &&
	       (rc = get("IPhone X", 1000, &st, NULL)) != MS_EUNAVAIL) {
	}
	ck_assert_int_eq(rc, MS_EUNAVAIL);
	t0 = ms_now_ms();
	ck_assert_int_eq(get("IPhone X", 1000, &st, NULL), MS_EUNAVAIL);
	took = ms_now_ms() - t0;
	ck_assert_msg(took < 100, "took %lld ms", (long long)took);
	ck_assert_msg(strstr(st.detail, "cannot reach nng+") != NULL, "%s",
	              st.detail);
	ck_assert_int_eq(health_of("discount", desc, sizeof(desc), &found),
	                 MS_EUNAVAIL);
	ck_assert(found);
	ck_assert_msg(strstr(desc, "cannot reach nng+") != NULL, "%s", desc);

	/* Up again on the same address: the client reconnects by itself. */
	server_up();
	t0 = ms_now_ms();
	while ((rc = get("IPhone X", 1000, &st, NULL)) != 0 &&
	       ms_now_ms() - t0 < WAIT_MS) {
		pthread_mutex_lock(&mu);
		cv_wait_a_little();
		pthread_mutex_unlock(&mu);
	}
	ck_assert_msg(rc == 0, "%s: %s", ms_errname(rc), st.detail);
	ck_assert_int_eq(health_of("discount", desc, sizeof(desc), &found), 0);
	teardown_all();
}
END_TEST

/* The client stops while a call waits in a handler: the call completes
 * (MS_ECLOSED) and the stop returns. */
struct bg_call {
	pthread_t th;
	int rc;
	struct bus_status st;
};

static void *
bg_create(void *arg)
{
	struct bg_call *b = arg;

	b->rc = call_create(WAIT_MS, &b->st);
	return NULL;
}

START_TEST(stop_while_busy)
{
	struct bg_call b;
	int64_t t0;

	setup_for(_i);
	ck_assert_int_eq(pthread_create(&b.th, NULL, bg_create, &b), 0);
	ck_assert(wait_int(&entered, 1));
	t0 = ms_now_ms();
	bus_stop(cbus);
	pthread_join(b.th, NULL);
	ck_assert_int_eq(b.rc, MS_ECLOSED);
	ck_assert_msg(ms_now_ms() - t0 < 2000, "stop took %lld ms",
	              (long long)(ms_now_ms() - t0));
	teardown_all();
}
END_TEST

/* A server that is shutting down (bus_quiesce) refuses new work at once
 * and finishes what its workers hold. */
START_TEST(quiesce_refuses_new_work)
{
	struct bg_call b;
	struct bus_status st;
	int64_t t0;

	setup_for(_i);
	ck_assert_int_eq(pthread_create(&b.th, NULL, bg_create, &b), 0);
	ck_assert(wait_int(&entered, 1));
	bus_quiesce(sbus);
	t0 = ms_now_ms();
	ck_assert_int_eq(get("IPhone X", 0, &st, NULL), MS_EUNAVAIL);
	ck_assert_msg(ms_now_ms() - t0 < 1000, "took %lld ms",
	              (long long)(ms_now_ms() - t0));
	ck_assert_msg(strstr(st.detail, "shutting down") != NULL, "%s",
	              st.detail);
	release();
	pthread_join(b.th, NULL);
	ck_assert_int_eq(b.rc, 0);
	teardown_all();
}
END_TEST

/* ---- events ------------------------------------------------------------- */

struct pub {
	struct bus_event ev;
	uint8_t *buf;
	int rc;
	int done;
};

static void
pub_done(struct bus_event *ev, int rc)
{
	struct pub *p = ev->arg;

	pthread_mutex_lock(&mu);
	p->rc = rc;
	p->done++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

/* publish sends a BasketCheckoutEvent for |user| (of type |type|, with
 * |pad| bytes of padding in the last name) and waits for its completion;
 * returns done's rc. */
static int
publish(const char *user, const char *type, size_t pad, int64_t *took)
{
	Monoshop__Events__BasketCheckoutEvent e =
	    MONOSHOP__EVENTS__BASKET_CHECKOUT_EVENT__INIT;
	struct pub p;
	char *padding = calloc(1, pad + 1);
	int64_t t0 = ms_now_ms();
	size_t n;
	int rc;

	ck_assert_ptr_nonnull(padding);
	memset(padding, 'p', pad);
	e.username = (char *)user;
	e.lastname = padding;
	memset(&p, 0, sizeof(p));
	n = protobuf_c_message_get_packed_size(&e.base);
	p.buf = malloc(n ? n : 1);
	ck_assert_ptr_nonnull(p.buf);
	protobuf_c_message_pack(&e.base, p.buf);
	ms_uuid_v4(p.ev.id);
	p.ev.type = type;
	p.ev.payload = p.buf;
	p.ev.len = n;
	p.ev.traceparent = TRACEPARENT;
	p.ev.occurred_ms = ms_wall_ms();
	p.ev.attempt = 2;
	p.ev.done = pub_done;
	p.ev.arg = &p;
	rc = bus_publish(cbus, &p.ev);
	ck_assert_msg(rc == 0, "bus_publish: %s", ms_errname(rc));
	ck_assert(wait_int(&p.done, 1));
	if (took != NULL) {
		*took = ms_now_ms() - t0;
	}
	pthread_mutex_lock(&mu);
	ck_assert_int_eq(p.done, 1);
	if (p.rc == 0 && strcmp(type, EVENT_TYPE) == 0) {
		ck_assert_str_eq(last_id, p.ev.id);
	}
	rc = p.rc;
	pthread_mutex_unlock(&mu);
	free(p.buf);
	free(padding);
	return rc;
}

START_TEST(publish_delivered)
{
	setup_for(_i);
	ck_assert_int_eq(publish("swn", EVENT_TYPE, 0, NULL), 0);
	pthread_mutex_lock(&mu);
	ck_assert_int_eq(delivered, 1);
	ck_assert_str_eq(last_user, "swn");
	ck_assert_str_eq(last_trace, TRACEPARENT);
	ck_assert_uint_eq(last_attempt, 2);
	pthread_mutex_unlock(&mu);
	/* Calls and events share the one instance and connection. */
	ck_assert_int_eq(get("IPhone X", 0, NULL, NULL), 0);
	ck_assert_int_eq(publish("swn2", EVENT_TYPE, 0, NULL), 0);
	teardown_all();
}
END_TEST

START_TEST(publish_verdicts)
{
	setup_for(_i);
	ck_assert_int_eq(publish("poison", EVENT_TYPE, 0, NULL), MS_EINVAL);
	ck_assert_int_eq(publish("flaky", EVENT_TYPE, 0, NULL), MS_EDB);
	ck_assert(wait_int(&delivered, 2));
	ck_assert_int_eq(publish("nobody", "monoshop.events.Unknown", 0, NULL),
	                 MS_ENOTFOUND);
	pthread_mutex_lock(&mu);
	ck_assert_int_eq(delivered, 2);
	pthread_mutex_unlock(&mu);
	teardown_all();
}
END_TEST

START_TEST(publish_size_limit)
{
	setup_for(_i);
	/* Well under the limit with padding: delivered. */
	ck_assert_int_eq(publish("padded", EVENT_TYPE, MAX_MESSAGE - 100, NULL),
	                 0);
	/* Over it: never deliverable (the relay keeps it as dead). */
	ck_assert_int_eq(publish("huge", EVENT_TYPE, MAX_MESSAGE, NULL),
	                 MS_EINVAL);
	pthread_mutex_lock(&mu);
	ck_assert_int_eq(delivered, 1);
	pthread_mutex_unlock(&mu);
	teardown_all();
}
END_TEST

START_TEST(publish_peer_down)
{
	int64_t took;
	int64_t t0;
	int rc;

	setup_for(_i);
	ck_assert_int_eq(publish("before", EVENT_TYPE, 0, NULL), 0);
	server_down();
	rc = publish("while-down", EVENT_TYPE, 0, &took);
	ck_assert_msg(rc == MS_EUNAVAIL || rc == MS_ETIMEDOUT, "rc %s",
	              ms_errname(rc));
	ck_assert_msg(took < CALL_MS + 300, "took %lld ms", (long long)took);
	server_up();
	t0 = ms_now_ms();
	while ((rc = publish("after", EVENT_TYPE, 0, NULL)) != 0 &&
	       ms_now_ms() - t0 < WAIT_MS) {
		pthread_mutex_lock(&mu);
		cv_wait_a_little();
		pthread_mutex_unlock(&mu);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_str_eq(last_user, "after");
	teardown_all();
}
END_TEST

static Suite *
nng_suite(void)
{
	Suite *s = suite_create("nng");
	TCase *calls = tcase_create("calls");
	TCase *events = tcase_create("events");

	/* Each test: _i = 0 over TCP, 1 over IPC. */
	tcase_set_timeout(calls, 60);
	tcase_add_loop_test(calls, call_reply, 0, 2);
	tcase_add_loop_test(calls, concurrent_calls, 0, 2);
	tcase_add_loop_test(calls, handler_error, 0, 2);
	tcase_add_loop_test(calls, deadline, 0, 2);
	tcase_add_loop_test(calls, size_limit, 0, 2);
	tcase_add_loop_test(calls, peer_down_then_up, 0, 2);
	tcase_add_loop_test(calls, stop_while_busy, 0, 2);
	tcase_add_loop_test(calls, quiesce_refuses_new_work, 0, 2);
	suite_add_tcase(s, calls);

	tcase_set_timeout(events, 60);
	tcase_add_loop_test(events, publish_delivered, 0, 2);
	tcase_add_loop_test(events, publish_verdicts, 0, 2);
	tcase_add_loop_test(events, publish_size_limit, 0, 2);
	tcase_add_loop_test(events, publish_peer_down, 0, 2);
	suite_add_tcase(s, events);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(nng_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
