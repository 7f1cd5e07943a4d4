/* SPDX-License-Identifier: MIT */
/*
 * The transport conformance suite: one body of tests that holds every
 * transport of this build to the same contract (nng's per-transport test
 * macros, libinput's ranged tests). main() walks bus_transport_list() and
 * adds, for each transport, a Check test case named after its scheme that
 * runs every test below over it (tcase_add_loop_test with that transport's
 * index). A test that the transport's caps rule out (calls over an
 * events-only transport, events over a calls-only one) or that has no
 * meaning in one process (a peer going down) returns at once and says so.
 *
 * How each transport is stood up is data, not code: a row of |rows| gives
 * its address kind, its listener key and value and its URL pattern, the
 * config key of its message size limit, whether it needs a certificate,
 * and settings that keep its timeouts short. From the row and the
 * transport's caps the fixture builds a serving bus (the test handlers on
 * the Discount service and a subscriber of BasketCheckoutEvent; it listens
 * on the row's listener, or joins the broker) and a client bus whose
 * remote.discount and events.broker go through the fault-injecting wrapper
 * ("faulty+URL", tests/support/tp_faulty.h). An in-process transport
 * (local) is one bus playing both parts. Adding a transport means adding a
 * row; a built transport without one fails the suite.
 *
 * The wrapper is transparent until a test arms it, and counts every op it
 * passes on: each test ends by checking that everything the client started
 * completed exactly once. AMQP runs when the build has it and
 * TEST_AMQP_URL names a broker (meson starts a private one with
 * tests/support/run_with_broker.py when rabbitmq-server is installed).
 *
 * The handlers here are test doubles on the Discount descriptor, not
 * Discount's rules; the consumer records an "effect" row and the event id
 * in its inbox in one transaction, as Ordering does.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus_core.h"
#include "bus/relay.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "discount.pb-c.h"
#include "events.pb-c.h"
#include "store/store.h"
#include "support/tmpdir.h"
#include "support/tp_faulty.h"
#include "transport/transport.h"

/* ---- fixture rows: how to stand up each transport ---------------------- */

enum addr_kind {
	ADDR_NONE, /* in process: one bus is both sides */
	ADDR_TCP,  /* "127.0.0.1:PORT", a port that was free a moment ago */
	ADDR_IPC,  /* a socket path in the test's directory */
	ADDR_ENV,  /* the URL of a broker, from the environment */
};

struct row {
	const char *scheme;     /* the registry's scheme */
	enum addr_kind addr;    /* what the address is */
	const char *listen_key; /* the serving side's listener key, or NULL
	                           (events through a broker both join) */
	const char *listen;     /* its value; "%s" = the address */
	const char *url;        /* the URL of the peer; "%s" = the address */
	const char *env;        /* ADDR_ENV: the variable holding the URL */
	const char *max_key;    /* config key limiting a call message */
	int too_big;            /* what a call over it fails with, if not
	                           MS_ETOOBIG */
	bool cert;              /* make cert.pem / key.pem (127.0.0.1) */
	/* More settings, for both buses / the server / the client;
	 * "%s" = the test's directory. */
	const char *sets[6];
	const char *server_sets[4];
	const char *client_sets[4];
};

/* A size limit small enough to build messages at and just above it. */
#define MAX_MESSAGE 4096

/*
 * gRPC says "too large" as RESOURCE_EXHAUSTED, which our one mapping
 * (core/err.c) reads back as MS_EFULL: the client sends the request and
 * the server refuses it. Pinned here so that a change is seen.
 */
#define GRPC_TOO_BIG MS_EFULL

/* A dead gRPC peer must be found out fast, and come back fast. */
#define GRPC_FAST                                                              \
	"grpc.connect_timeout_ms=500", "grpc.retry_backoff_ms=10",             \
	    "grpc.retry_backoff_max_ms=50", "grpc.breaker_open_ms=100"

static const struct row rows[] = {
    {.scheme = "local", .addr = ADDR_NONE, .url = "local://"},
    {.scheme = "grpc",
     .addr = ADDR_TCP,
     .listen_key = "grpc.listen",
     .listen = "%s",
     .url = "grpc://%s",
     .max_key = "grpc.max_message",
     .too_big = GRPC_TOO_BIG,
     .sets = {GRPC_FAST}},
    {.scheme = "grpcs",
     .addr = ADDR_TCP,
     .listen_key = "grpc.listen",
     .listen = "%s",
     .url = "grpcs://%s",
     .max_key = "grpc.max_message",
     .too_big = GRPC_TOO_BIG,
     .cert = true,
     .sets = {GRPC_FAST},
     .server_sets = {"grpc.tls_cert=%s/cert.pem", "grpc.tls_key=%s/key.pem"},
     .client_sets = {"grpc.tls_ca=%s/cert.pem"}},
    {.scheme = "nng+tcp",
     .addr = ADDR_TCP,
     .listen_key = "nng.listen",
     .listen = "tcp://%s",
     .url = "nng+tcp://%s",
     .max_key = "nng.max_message"},
    {.scheme = "nng+ipc",
     .addr = ADDR_IPC,
     .listen_key = "nng.listen",
     .listen = "ipc://%s",
     .url = "nng+ipc://%s",
     .max_key = "nng.max_message"},
    {.scheme = "amqp",
     .addr = ADDR_ENV,
     .env = "TEST_AMQP_URL",
     .url = "%s",
     .sets = {"events.reconnect_max_ms=300", "events.connect_timeout_ms=2000",
              "events.confirm_timeout_ms=3000"}},
};

/*
 * Settings of every bus: grpc.listen has a default, so a bus serving the
 * test service over another transport would also open a gRPC listener
 * there; port 0 keeps it out of the way. Servers stop quickly.
 */
static const char *const base_sets[] = {
    "grpc.listen=127.0.0.1:0",
    "node.shutdown_timeout_ms=2000",
    "log.level=error",
};

/* The transports this run covers, from bus_transport_list(). */
struct subject {
	const struct bus_transport_ops *ops;
	const struct row *row; /* NULL: no row (the suite fails) */
};

#define MAX_SUBJECTS 16
static struct subject subjects[MAX_SUBJECTS];
static int nsubjects;

/* ---- the world the handlers and the subscriber share ------------------ */

#define GATE_MAX_MS 10000 /* a gate never holds anyone longer */

struct world {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	/* the gate that "wait" calls and held deliveries wait at */
	bool open;
	int calls_entered; /* "wait" handlers that reached the gate */
	int calls_left;    /* and left it */
	/* the consumer */
	char tag[48];         /* this test's events carry it as userName */
	int deliveries;       /* of this test's events */
	int foreign;          /* events of earlier tests (a broker's queue) */
	int committed;        /* effects committed (new event ids) */
	int hold;             /* hold this many deliveries at the gate */
	int held_now;         /* deliveries waiting at the gate */
	bool crash;           /* a held delivery then fails (MS_ECLOSED) */
	struct store *st;     /* the consumer's store, or NULL */
	char last_id[40];     /* the last delivery, as the subscriber saw it */
	char last_type[128];  /*   its type */
	char last_cust[40];   /*   its customerId */
	char last_total[16];  /*   its totalPrice */
	char last_trace[128]; /*   its traceparent */
};

static struct world W;

static void
timedwait_ms(int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (long)ms * 1000000L;
	while (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&W.cv, &W.mtx, &ts);
}

/* Waits, at most |ms|, until |cond| (read under W.mtx) holds; fails the
 * test naming the condition otherwise. */
#define WAIT_UNTIL(cond, ms)                                                   \
	do {                                                                   \
		int64_t dl_ = ms_now_ms() + (ms);                              \
		bool ok_;                                                      \
		pthread_mutex_lock(&W.mtx);                                    \
		while (!(ok_ = (cond)) && ms_now_ms() < dl_) {                 \
			timedwait_ms(20);                                      \
		}                                                              \
		pthread_mutex_unlock(&W.mtx);                                  \
		ck_assert_msg(ok_, "%s: not within %d ms: %s", fx.scheme,      \
		              (int)(ms), #cond);                               \
	} while (0)

/* Waits at the gate until a test opens it, or GATE_MAX_MS. W.mtx held. */
static void
gate_wait(void)
{
	int64_t dl = ms_now_ms() + GATE_MAX_MS;

	while (!W.open && ms_now_ms() < dl) {
		timedwait_ms(50);
	}
}

static void
gate_open(void)
{
	pthread_mutex_lock(&W.mtx);
	W.open = true;
	pthread_cond_broadcast(&W.cv);
	pthread_mutex_unlock(&W.mtx);
}

static int
world_int(const int *field)
{
	int v;

	pthread_mutex_lock(&W.mtx);
	v = *field;
	pthread_mutex_unlock(&W.mtx);
	return v;
}

/* ---- the served side --------------------------------------------------- */

static const ProtobufCServiceDescriptor *svc =
    &discount__discount_proto_service__descriptor;

#define EVENT_TYPE "monoshop.events.BasketCheckoutEvent"

/*
 * GetDiscount, by product name: "boom" and "exists" fail with a code and a
 * detail; "wait" waits at the gate; a long name (the size tests) answers
 * "big" with the name's length; anything else is echoed with its length.
 */
static int
h_get(void *ctx, struct bus_rpc *rpc, const ProtobufCMessage *req,
      ProtobufCMessage *reply)
{
	const Discount__GetDiscountRequest *in = (const void *)req;
	Discount__CouponModel *out = (void *)reply;
	size_t n = strlen(in->productname);

	(void)ctx;
	if (strcmp(in->productname, "boom") == 0) {
		return bus_rpc_error(rpc, MS_ENOTFOUND, "no coupon for boom");
	}
	if (strcmp(in->productname, "exists") == 0) {
		return bus_rpc_error(rpc, MS_EEXIST, "a coupon for %s exists",
		                     in->productname);
	}
	if (strcmp(in->productname, "wait") == 0) {
		pthread_mutex_lock(&W.mtx);
		W.calls_entered++;
		pthread_cond_broadcast(&W.cv);
		gate_wait();
		W.calls_left++;
		pthread_cond_broadcast(&W.cv);
		pthread_mutex_unlock(&W.mtx);
	}
	out->productname =
	    n > 64 ? "big" : bus_rpc_strdup(rpc, in->productname);
	out->description = "conformance";
	out->amount = (int32_t)n;
	return 0;
}

static const bus_handler_fn handlers[4] = {h_get, NULL, NULL, NULL};

/*
 * The consumer: events of this test (userName = W.tag) are counted and,
 * with a store, applied once: the effect row and the inbox claim commit
 * together. A held delivery waits at the gate after committing, i.e.
 * before it is acknowledged, and then fails if the test "crashed" it.
 */
static int
on_event(void *ctx, const struct bus_event *ev, const ProtobufCMessage *msg)
{
	const Monoshop__Events__BasketCheckoutEvent *e = (const void *)msg;
	struct store *st;
	bool hold = false;
	int rc = 0;

	(void)ctx;
	pthread_mutex_lock(&W.mtx);
	if (strcmp(e->username, W.tag) != 0) {
		W.foreign++;
		pthread_mutex_unlock(&W.mtx);
		return 0;
	}
	W.deliveries++;
	ms_strlcpy(W.last_id, ev->id, sizeof(W.last_id));
	ms_strlcpy(W.last_type, ev->type, sizeof(W.last_type));
	ms_strlcpy(W.last_cust, e->customerid, sizeof(W.last_cust));
	ms_strlcpy(W.last_total, e->totalprice, sizeof(W.last_total));
	ms_strlcpy(W.last_trace, ev->traceparent ? ev->traceparent : "",
	           sizeof(W.last_trace));
	if (W.hold > 0) {
		W.hold--;
		hold = true;
	}
	st = W.st;
	pthread_cond_broadcast(&W.cv);
	pthread_mutex_unlock(&W.mtx);

	if (st != NULL) {
		if ((rc = store_begin(st)) != 0) {
			return rc;
		}
		rc = store_inbox_claim(st, ev->id, ev->type);
		if (rc == 0) {
			sqlite3_stmt *s = store_prepare(
			    st, "INSERT INTO effects(id) VALUES(?1)");

			sqlite3_bind_text(s, 1, ev->id, -1, SQLITE_STATIC);
			rc = sqlite3_step(s) == SQLITE_DONE ? 0 : MS_EDB;
		}
		if (rc == 0) {
			if ((rc = store_commit(st)) == 0) {
				pthread_mutex_lock(&W.mtx);
				W.committed++;
				pthread_cond_broadcast(&W.cv);
				pthread_mutex_unlock(&W.mtx);
			}
		} else {
			store_rollback(st);
			rc = rc == MS_EEXIST ? 0 : rc; /* a duplicate: done */
		}
	}
	if (hold) {
		pthread_mutex_lock(&W.mtx);
		W.held_now++;
		pthread_cond_broadcast(&W.cv);
		gate_wait();
		W.held_now--;
		if (W.crash) {
			rc = MS_ECLOSED; /* gone before it could acknowledge */
		}
		pthread_mutex_unlock(&W.mtx);
	}
	return rc;
}

/* ---- the fixture: a serving bus and a client bus over one transport ---- */

struct fixture {
	const char *scheme;
	const struct bus_transport_ops *ops;
	const struct row *row;
	bool in_process; /* one bus is both sides */
	bool calls;      /* the transport carries calls */
	bool events;     /* the transport carries events */
	bool broker;     /* events go through a broker both sides join */
	char dir[256];
	char addr[300];
	char url[400];  /* the peer, as the client reaches it */
	char furl[420]; /* the same through the fault wrapper */
	struct ms_config *scfg;
	struct ms_config *ccfg;
	struct bus *server;
	struct bus *client; /* == server when in_process */
	struct store *pub;  /* the publisher's outbox, when a test wants it */
	struct bus_relay *relay;
};

static struct fixture fx;

static void set(struct ms_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
set(struct ms_config *cfg, const char *fmt, ...)
{
	char line[600];
	char err[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	ck_assert_msg(ms_config_set(cfg, line, "test", err, sizeof(err)) == 0,
	              "%s: %s", line, err);
}

static void
free_port_addr(char *out, size_t len)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(out, len, "127.0.0.1:%d", ntohs(sa.sin_port));
	close(fd);
}

/* Writes |pat| to |out| with its "%s" (at most one) replaced by |val|:
 * the rows' patterns are data, not printf formats. */
static void
subst(char *out, size_t len, const char *pat, const char *val)
{
	const char *p = strstr(pat, "%s");
	int n;

	if (p == NULL) {
		n = snprintf(out, len, "%s", pat);
	} else {
		n = snprintf(out, len, "%.*s%s%s", (int)(p - pat), pat, val,
		             p + 2);
	}
	ck_assert_msg(n >= 0 && (size_t)n < len, "%s: too long", pat);
}

/* Applies |n| settings of a row, "%s" standing for the test directory. */
static void
set_all(struct ms_config *cfg, const char *const *sets, size_t n)
{
	for (size_t i = 0; i < n && sets[i] != NULL; i++) {
		char line[600];

		subst(line, sizeof(line), sets[i], fx.dir);
		set(cfg, "%s", line);
	}
}

#define SET_ALL(cfg, arr) set_all(cfg, arr, sizeof(arr) / sizeof(*(arr)))

static struct ms_config *
make_config(bool server_side)
{
	struct ms_config *cfg;
	const struct row *r = fx.row;

	ck_assert_int_eq(ms_config_create(&cfg), 0);
	SET_ALL(cfg, base_sets);
	SET_ALL(cfg, r->sets);
	if (r->max_key != NULL) {
		set(cfg, "%s=%d", r->max_key, MAX_MESSAGE);
	}
	if (fx.in_process) {
		/* Both parts: events through the wrapper around an in-process
		 * transport of this same bus. */
		set(cfg, "events.broker=%s", fx.furl);
		return cfg;
	}
	if (server_side) {
		SET_ALL(cfg, r->server_sets);
		if (r->listen_key != NULL) {
			char v[300];

			subst(v, sizeof(v), r->listen, fx.addr);
			set(cfg, "%s=%s", r->listen_key, v);
		}
		if (fx.broker) {
			set(cfg, "events.broker=%s", fx.url);
		}
		return cfg;
	}
	SET_ALL(cfg, r->client_sets);
	if (fx.calls) {
		set(cfg, "remote.discount=%s", fx.furl);
	}
	if (fx.events) {
		set(cfg, "events.broker=%s", fx.furl);
	}
	return cfg;
}

/* A throw-away self-signed certificate for 127.0.0.1 in the test's
 * directory, made with the openssl command. */
static void
make_cert(void)
{
	char cmd[1200];

	snprintf(cmd, sizeof(cmd),
	         "openssl req -x509 -newkey ec -pkeyopt "
	         "ec_paramgen_curve:prime256v1 -nodes -days 1 -subj "
	         "/CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
	         "-keyout '%s/key.pem' -out '%s/cert.pem' >/dev/null 2>&1",
	         fx.dir, fx.dir);
	ck_assert_msg(system(cmd) == 0, "%s: cannot make a certificate: %s",
	              fx.scheme, cmd);
}

static void
start_server(void)
{
	char err[256];

	ck_assert_ptr_null(fx.server);
	ck_assert_int_eq(bus_create(&fx.server, fx.scfg), 0);
	if (fx.calls) {
		ck_assert_int_eq(bus_serve(fx.server, svc, handlers, NULL), 0);
	}
	if (fx.events) {
		ck_assert_int_eq(
		    bus_subscribe(
		        fx.server,
		        &monoshop__events__basket_checkout_event__descriptor,
		        on_event, NULL),
		    0);
	}
	if (fx.in_process) {
		ck_assert_int_eq(bus_require(fx.server, "discount", svc->name),
		                 0);
	}
	ck_assert_msg(bus_start(fx.server, err, sizeof(err)) == 0,
	              "%s: server: %s", fx.scheme, err);
	if (fx.in_process) {
		fx.client = fx.server;
	}
}

static void
start_client(void)
{
	char err[256];

	if (fx.in_process) {
		return;
	}
	ck_assert_ptr_null(fx.client);
	ck_assert_int_eq(bus_create(&fx.client, fx.ccfg), 0);
	if (fx.calls) {
		ck_assert_int_eq(bus_require(fx.client, "discount", svc->name),
		                 0);
	}
	ck_assert_msg(bus_start(fx.client, err, sizeof(err)) == 0,
	              "%s: client: %s", fx.scheme, err);
}

/* Stops and frees the serving bus (and, in process, the client with it). */
static void
stop_server(void)
{
	bus_destroy(fx.server);
	if (fx.in_process) {
		fx.client = NULL;
	}
	fx.server = NULL;
}

static struct bus_transport *
wrapper(void)
{
	struct bus_transport *t = tp_faulty_of(fx.client, fx.furl);

	ck_assert_msg(t != NULL, "%s: no wrapper for %s", fx.scheme, fx.furl);
	return t;
}

/* Every op the client's wrapper accepted completed exactly once (call it
 * after bus_stop of the client: nothing is in flight then). */
static void
check_exactly_once(void)
{
	struct bus_transport *t = wrapper();

	for (int op = TP_FAULTY_CALL; op <= TP_FAULTY_PUBLISH; op++) {
		struct tp_faulty_stats s;

		tp_faulty_stats(t, (enum tp_faulty_op)op, &s);
		ck_assert_msg(s.twice == 0, "%s: %u %s completed twice",
		              fx.scheme, s.twice, op ? "publishes" : "calls");
		ck_assert_msg(s.completed == s.started,
		              "%s: %u %s started, %u completed", fx.scheme,
		              s.started, op ? "publishes" : "calls",
		              s.completed);
	}
}

/* Fills in what the test needs to know of transport |i|, before anything
 * is started (so a test can skip without starting anything). */
static void
describe(int i)
{
	const struct subject *sj = &subjects[i];
	const struct row *r = sj->row;

	memset(&fx, 0, sizeof(fx));
	ck_assert_ptr_nonnull(r);
	fx.scheme = sj->ops->scheme;
	fx.ops = sj->ops;
	fx.row = r;
	fx.in_process = r->addr == ADDR_NONE;
	fx.calls = (sj->ops->caps & BUS_CAP_CALL) != 0;
	fx.events = (sj->ops->caps & BUS_CAP_EVENTS) != 0;
	/* Events with no listener to carry them here travel through a
	 * broker that both sides join (and that confirms publishes). */
	fx.broker = fx.events && !fx.in_process && r->listen_key == NULL;
}

/* Starts the serving and the client bus of the transport described. */
static void
setup(void)
{
	const struct row *r = fx.row;

	pthread_mutex_lock(&W.mtx);
	W.open = false;
	W.calls_entered = W.calls_left = 0;
	W.deliveries = W.foreign = W.committed = 0;
	W.hold = W.held_now = 0;
	W.crash = false;
	W.st = NULL;
	/* A fresh tag: events left in a broker's queue by an earlier test
	 * are someone else's. */
	snprintf(W.tag, sizeof(W.tag), "conf-");
	ms_uuid_v4(W.tag + 5);
	pthread_mutex_unlock(&W.mtx);

	ck_assert_int_eq(test_tmpdir(fx.dir, sizeof(fx.dir)), 0);
	switch (r->addr) {
	case ADDR_NONE:
		break;
	case ADDR_TCP:
		free_port_addr(fx.addr, sizeof(fx.addr));
		break;
	case ADDR_IPC:
		snprintf(fx.addr, sizeof(fx.addr), "%s/conformance.ipc",
		         fx.dir);
		break;
	case ADDR_ENV:
		ck_assert_ptr_nonnull(getenv(r->env));
		ms_strlcpy(fx.addr, getenv(r->env), sizeof(fx.addr));
		break;
	}
	if (r->cert) {
		make_cert();
	}
	subst(fx.url, sizeof(fx.url), r->url, fx.addr);
	snprintf(fx.furl, sizeof(fx.furl), TP_FAULTY_PREFIX "%s", fx.url);
	fx.scfg = make_config(true);
	fx.ccfg = fx.in_process ? NULL : make_config(false);
	start_server();
	start_client();
}

static void
teardown(void)
{
	/* Nobody stays at the gate: stopping would wait for them. */
	gate_open();
	bus_relay_stop(fx.relay);
	if (fx.client != NULL) {
		bus_stop(fx.client);
		check_exactly_once();
	}
	if (!fx.in_process) {
		bus_destroy(fx.client);
	}
	bus_destroy(fx.server);
	store_close(fx.pub);
	pthread_mutex_lock(&W.mtx);
	store_close(W.st);
	W.st = NULL;
	pthread_mutex_unlock(&W.mtx);
	ms_config_destroy(fx.scfg);
	ms_config_destroy(fx.ccfg);
	test_rmdir(fx.dir);
	memset(&fx, 0, sizeof(fx));
}

/* Returns from a test that the transport cannot take part in. */
#define SKIP_UNLESS(cond, why)                                                 \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "conformance: %s: %s skipped: %s\n",   \
			        fx.scheme, __func__, why);                     \
			return;                                                \
		}                                                              \
	} while (0)

/*
 * Each test starts with describe(_i) (Check hands a loop test its index,
 * not its fixtures), skips what the transport rules out, then brackets its
 * body with setup() and teardown().
 */

/* ---- calls ------------------------------------------------------------- */

/* One call; *amount receives the reply's amount, |name| its name. */
static int
call(const char *product, int timeout_ms, struct bus_status *st,
     int32_t *amount, char *name, size_t namelen)
{
	Discount__GetDiscountRequest req = DISCOUNT__GET_DISCOUNT_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	int rc;

	req.productname = (char *)product;
	rc = bus_call(fx.client, svc, "GetDiscount", &req.base, &reply,
	              timeout_ms, st);
	if (rc == 0) {
		const Discount__CouponModel *c = (const void *)reply;

		if (amount != NULL) {
			*amount = c->amount;
		}
		if (name != NULL) {
			ms_strlcpy(name, c->productname, namelen);
		}
		protobuf_c_message_free_unpacked(reply, NULL);
	} else {
		ck_assert_ptr_null(reply);
	}
	return rc;
}

/* A call on a thread of its own, for calls that must be in flight while
 * the test does something else. */
struct caller {
	pthread_t thread;
	const char *product;
	int timeout_ms;
	int rc;
	int returns; /* how many times bus_call returned: must be 1 */
	char name[128];
	int32_t amount;
};

static void *
caller_main(void *arg)
{
	struct caller *c = arg;
	struct bus_status st;
	int rc = call(c->product, c->timeout_ms, &st, &c->amount, c->name,
	              sizeof(c->name));

	pthread_mutex_lock(&W.mtx);
	c->rc = rc;
	c->returns++;
	pthread_cond_broadcast(&W.cv);
	pthread_mutex_unlock(&W.mtx);
	return NULL;
}

static void
caller_start(struct caller *c, const char *product, int timeout_ms)
{
	memset(c, 0, sizeof(*c));
	c->product = product;
	c->timeout_ms = timeout_ms;
	ck_assert_int_eq(pthread_create(&c->thread, NULL, caller_main, c), 0);
}

START_TEST(test_call_reply)
{
	struct bus_status st;
	int32_t amount = 0;
	char name[128];
	struct caller cs[8];
	char products[8][32];

	describe(_i);
	SKIP_UNLESS(fx.calls, "carries no calls");
	setup();
	ck_assert_int_eq(
	    call("IPhone X", 5000, &st, &amount, name, sizeof(name)), 0);
	ck_assert_int_eq(st.rc, 0);
	ck_assert_str_eq(name, "IPhone X");
	ck_assert_int_eq(amount, 8);
	/* Concurrent calls each get their own reply. */
	for (int i = 0; i < 8; i++) {
		snprintf(products[i], sizeof(products[i]), "product-%d%*s", i,
		         i, "");
		caller_start(&cs[i], products[i], 5000);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(cs[i].thread, NULL);
		ck_assert_int_eq(cs[i].rc, 0);
		ck_assert_int_eq(cs[i].returns, 1);
		ck_assert_str_eq(cs[i].name, products[i]);
		ck_assert_int_eq(cs[i].amount, (int32_t)strlen(products[i]));
	}
	teardown();
}
END_TEST

START_TEST(test_call_error)
{
	struct bus_status st;

	describe(_i);
	SKIP_UNLESS(fx.calls, "carries no calls");
	setup();
	/* The handler's code and detail arrive as they were. */
	ck_assert_int_eq(call("boom", 5000, &st, NULL, NULL, 0), MS_ENOTFOUND);
	ck_assert_int_eq(st.rc, MS_ENOTFOUND);
	ck_assert_str_eq(st.detail, "no coupon for boom");
	ck_assert_int_eq(call("exists", 5000, &st, NULL, NULL, 0), MS_EEXIST);
	ck_assert_str_eq(st.detail, "a coupon for exists exists");
	/* And the connection is still good. */
	ck_assert_int_eq(call("fine", 5000, &st, NULL, NULL, 0), 0);
	teardown();
}
END_TEST

START_TEST(test_call_deadline)
{
	struct bus_status st;
	int64_t t0;
	int64_t took;

	describe(_i);
	SKIP_UNLESS(fx.calls, "carries no calls");
	SKIP_UNLESS(!fx.in_process,
	            "an in-process call runs on the caller's thread");
	setup();
	t0 = ms_now_ms();
	ck_assert_int_eq(call("wait", 300, &st, NULL, NULL, 0), MS_ETIMEDOUT);
	took = ms_now_ms() - t0;
	ck_assert_msg(took >= 290 && took < 300 + 1500,
	              "%s: a 300 ms deadline expired after %lld ms", fx.scheme,
	              (long long)took);
	ck_assert_int_eq(world_int(&W.calls_entered), 1);
	/* The handler finishes after its caller gave up; the transport
	 * drops the late reply and carries on. */
	gate_open();
	WAIT_UNTIL(W.calls_left == 1, 5000);
	ck_assert_int_eq(call("after", 5000, &st, NULL, NULL, 0), 0);
	teardown();
}
END_TEST

START_TEST(test_call_close_in_flight)
{
	struct caller c;
	struct bus_status st;

	describe(_i);
	SKIP_UNLESS(fx.calls, "carries no calls");
	SKIP_UNLESS(!fx.in_process,
	            "an in-process call runs on the caller's thread");
	setup();
	caller_start(&c, "wait", 10000);
	WAIT_UNTIL(W.calls_entered == 1, 5000);
	/* Closing the client completes the call at once, once. */
	bus_stop(fx.client);
	WAIT_UNTIL(c.returns == 1, 3000);
	ck_assert_int_eq(c.rc, MS_ECLOSED);
	ck_assert_int_eq(call("late", 1000, &st, NULL, NULL, 0), MS_ECLOSED);
	gate_open();
	pthread_join(c.thread, NULL);
	ck_assert_int_eq(c.returns, 1);
	check_exactly_once();
	teardown();
}
END_TEST

START_TEST(test_peer_down_up)
{
	struct bus_status st;
	int64_t t0;
	int64_t took;
	int rc;

	describe(_i);
	SKIP_UNLESS(fx.calls, "carries no calls");
	SKIP_UNLESS(!fx.in_process, "no peer: one process");
	setup();
	ck_assert_int_eq(call("up", 5000, &st, NULL, NULL, 0), 0);
	stop_server();
	t0 = ms_now_ms();
	rc = call("down", 1000, &st, NULL, NULL, 0);
	took = ms_now_ms() - t0;
	ck_assert_msg(rc == MS_EUNAVAIL || rc == MS_ETIMEDOUT,
	              "%s: peer down: %s (%s)", fx.scheme, ms_errname(rc),
	              st.detail);
	ck_assert_msg(took < 1000 + 1500, "%s: peer down took %lld ms",
	              fx.scheme, (long long)took);
	/* Back on the same address: the same client works again. */
	start_server();
	t0 = ms_now_ms();
	while ((rc = call("up-again", 500, &st, NULL, NULL, 0)) != 0 &&
	       ms_now_ms() - t0 < 10000) {
		/* The client reconnects, its breaker probes: each call is
		 * one attempt; the loop is the deadline. */
	}
	ck_assert_msg(rc == 0, "%s: peer back, calls still fail: %s (%s)",
	              fx.scheme, ms_errname(rc), st.detail);
	teardown();
}
END_TEST

/* A request of GetDiscount whose packed size is exactly |size|. */
static char *
name_of_packed_size(size_t size)
{
	Discount__GetDiscountRequest req = DISCOUNT__GET_DISCOUNT_REQUEST__INIT;
	char *name = malloc(size + 1);
	size_t n = size;

	ck_assert_ptr_nonnull(name);
	/* Tag and length take a few bytes: shrink until it fits. */
	for (;;) {
		memset(name, 'x', n);
		name[n] = '\0';
		req.productname = name;
		if (protobuf_c_message_get_packed_size(&req.base) <= size) {
			break;
		}
		n--;
	}
	ck_assert_uint_eq(protobuf_c_message_get_packed_size(&req.base), size);
	return name;
}

START_TEST(test_size_limit)
{
	struct bus_status st;
	int32_t amount = 0;
	char *at;
	char *above;

	describe(_i);
	SKIP_UNLESS(fx.calls, "carries no calls");
	SKIP_UNLESS(fx.row->max_key != NULL, "has no message size limit");
	setup();
	at = name_of_packed_size(MAX_MESSAGE);
	above = name_of_packed_size(MAX_MESSAGE + 1);
	ck_assert_int_eq(call(at, 5000, &st, &amount, NULL, 0), 0);
	ck_assert_int_eq(amount, (int32_t)strlen(at));
	ck_assert_int_eq(call(above, 5000, &st, NULL, NULL, 0),
	                 fx.row->too_big ? fx.row->too_big : MS_ETOOBIG);
	/* Refusing one message does not break the connection. */
	ck_assert_int_eq(call(at, 5000, &st, &amount, NULL, 0), 0);
	free(at);
	free(above);
	teardown();
}
END_TEST

/* ---- events ------------------------------------------------------------ */

/* One event of this test, with its publish completion. */
struct tevent {
	struct bus_event ev;
	uint8_t buf[512];
	char cust[MS_UUID_STRLEN];
	int done_calls; /* must end at 1 per publish */
	int rc;
};

static void
tevent_done(struct bus_event *ev, int rc)
{
	struct tevent *te = ev->arg;

	pthread_mutex_lock(&W.mtx);
	te->done_calls++;
	te->rc = rc;
	pthread_cond_broadcast(&W.cv);
	pthread_mutex_unlock(&W.mtx);
}

static const char traceparent[] =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

static size_t
pack_event(const char *id, const char *cust, uint8_t *buf)
{
	Monoshop__Events__BasketCheckoutEvent e =
	    MONOSHOP__EVENTS__BASKET_CHECKOUT_EVENT__INIT;

	e.id = (char *)id;
	e.occurredon = "2024-01-01T00:00:00Z";
	e.username = W.tag;
	e.customerid = (char *)cust;
	e.totalprice = "10.50";
	e.firstname = "Conformance";
	e.lastname = "Suite";
	e.emailaddress = "conformance@example.com";
	e.addressline = "1 Test Street";
	e.country = "Nowhere";
	e.state = "None";
	e.zipcode = "12345";
	e.cardname = "Conformance";
	e.cardnumber = "5555555555554444";
	e.expiration = "12/30";
	e.cvv = "123";
	e.paymentmethod = 1;
	ck_assert_uint_le(protobuf_c_message_get_packed_size(&e.base), 512);
	return protobuf_c_message_pack(&e.base, buf);
}

static void
tevent_init(struct tevent *te, const char *id)
{
	memset(te, 0, sizeof(*te));
	if (id != NULL) {
		ms_strlcpy(te->ev.id, id, sizeof(te->ev.id));
	} else {
		ms_uuid_v4(te->ev.id);
	}
	ms_uuid_v4(te->cust);
	te->ev.type = EVENT_TYPE;
	te->ev.payload = te->buf;
	te->ev.len = pack_event(te->ev.id, te->cust, te->buf);
	te->ev.traceparent = traceparent;
	te->ev.occurred_ms = ms_wall_ms();
	te->ev.attempt = 1;
	te->ev.done = tevent_done;
	te->ev.arg = te;
}

/*
 * Publishes |te| until the transport reports it handed over (rc 0), as the
 * relay would, within 10 s: a broker may refuse the first publishes until
 * the consumer's queue is bound, a connection may still be coming up.
 * Each publish completes exactly once before the next starts.
 */
static void
publish_until_ok(struct tevent *te)
{
	int64_t dl = ms_now_ms() + 10000;
	int rc;

	for (;;) {
		int before = world_int(&te->done_calls);

		rc = bus_publish(fx.client, &te->ev);
		if (rc == 0) {
			WAIT_UNTIL(te->done_calls == before + 1, 10000);
			rc = world_int(&te->rc);
		}
		if (rc == 0 || ms_now_ms() >= dl) {
			break;
		}
		/* Not handed over: the next attempt is the retry. Wait a
		 * little for the cause to pass (bounded by the loop). */
		pthread_mutex_lock(&W.mtx);
		timedwait_ms(50);
		pthread_mutex_unlock(&W.mtx);
	}
	ck_assert_msg(rc == 0, "%s: publish never handed over: %s", fx.scheme,
	              ms_errname(rc));
}

static const struct store_migration consumer_migs[] = {
    {1, "CREATE TABLE effects(id TEXT NOT NULL)"},
};

/* Gives the consumer a store: effects are recorded from now on. */
static void
consumer_store(void)
{
	struct store *st;

	ck_assert_int_eq(
	    store_open(&st, fx.dir, "consumer", consumer_migs, 1, NULL), 0);
	pthread_mutex_lock(&W.mtx);
	W.st = st;
	pthread_mutex_unlock(&W.mtx);
}

/* How many effects the consumer's store has (for |id|, or in all). */
static int
effects(const char *id)
{
	sqlite3_stmt *s;
	int n;

	store_lock(W.st);
	s = store_prepare(W.st,
	                  id ? "SELECT count(*) FROM effects WHERE id = ?1"
	                     : "SELECT count(*) FROM effects");
	if (id != NULL) {
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	}
	ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
	n = sqlite3_column_int(s, 0);
	sqlite3_reset(s);
	store_unlock(W.st);
	return n;
}

START_TEST(test_publish_consume)
{
	static struct tevent tes[20];
	struct tevent te;

	describe(_i);
	SKIP_UNLESS(fx.events, "carries no events");
	setup();
	consumer_store();
	tevent_init(&te, NULL);
	publish_until_ok(&te);
	WAIT_UNTIL(W.committed == 1, 10000);
	pthread_mutex_lock(&W.mtx);
	ck_assert_str_eq(W.last_id, te.ev.id);
	ck_assert_str_eq(W.last_type, EVENT_TYPE);
	ck_assert_str_eq(W.last_cust, te.cust);
	ck_assert_str_eq(W.last_total, "10.50");
	ck_assert_str_eq(W.last_trace, traceparent);
	pthread_mutex_unlock(&W.mtx);
	/* Many in flight at once: each handed over once, none lost. */
	for (int i = 0; i < 20; i++) {
		tevent_init(&tes[i], NULL);
		ck_assert_int_eq(bus_publish(fx.client, &tes[i].ev), 0);
	}
	for (int i = 0; i < 20; i++) {
		WAIT_UNTIL(tes[i].done_calls == 1, 10000);
		ck_assert_msg(tes[i].rc == 0, "%s: publish %d: %s", fx.scheme,
		              i, ms_errname(tes[i].rc));
	}
	WAIT_UNTIL(W.committed == 21, 10000);
	ck_assert_int_eq(effects(NULL), 21);
	teardown();
}
END_TEST

START_TEST(test_duplicate_suppressed)
{
	struct tevent a;
	struct tevent b;

	describe(_i);
	SKIP_UNLESS(fx.events, "carries no events");
	setup();
	consumer_store();
	/* The same event id published twice, as a relay does after a lost
	 * confirm: the consumer sees it twice, applies it once. */
	tevent_init(&a, NULL);
	tevent_init(&b, a.ev.id);
	publish_until_ok(&a);
	publish_until_ok(&b);
	WAIT_UNTIL(W.deliveries >= 2, 10000);
	ck_assert_int_eq(world_int(&W.committed), 1);
	ck_assert_int_eq(effects(a.ev.id), 1);
	ck_assert(store_inbox_seen(W.st, a.ev.id));
	teardown();
}
END_TEST

/* Records one event in the publisher's outbox and wakes its relay. */
static void
record_event(char id[MS_UUID_STRLEN])
{
	uint8_t buf[512];
	char cust[MS_UUID_STRLEN];
	size_t len;

	ms_uuid_v4(id);
	ms_uuid_v4(cust);
	len = pack_event(id, cust, buf);
	ck_assert_int_eq(store_begin(fx.pub), 0);
	ck_assert_int_eq(store_outbox_add(fx.pub, id, EVENT_TYPE, buf, len,
	                                  traceparent, ms_wall_ms()),
	                 0);
	ck_assert_int_eq(store_commit(fx.pub), 0);
	store_outbox_notify(fx.pub);
}

static void
relay_start(void)
{
	struct bus_relay_opts ro = {.batch = 8, .poll_ms = 50};

	ck_assert_int_eq(bus_relay_start(&fx.relay, fx.client, fx.pub, &ro), 0);
}

static void
publisher_store(void)
{
	ck_assert_int_eq(
	    store_open(&fx.pub, fx.dir, "publisher", NULL, 0, NULL), 0);
	relay_start();
}

/* Waits until the outbox has nothing pending, at most |ms|. */
static void
wait_outbox_empty(int ms)
{
	int64_t dl = ms_now_ms() + ms;
	int64_t n = -1;
	int64_t oldest;

	while (ms_now_ms() < dl) {
		ck_assert_int_eq(store_outbox_depth(fx.pub, &n, &oldest), 0);
		if (n == 0) {
			return;
		}
		store_outbox_wait(fx.pub, 20);
	}
	ck_abort_msg("%s: %lld events still pending after %d ms", fx.scheme,
	             (long long)n, ms);
}

/* The most publishes any outbox row needed before the last one. */
static int
outbox_max_attempts(void)
{
	sqlite3_stmt *s;
	int n;

	store_lock(fx.pub);
	s = store_prepare(fx.pub, "SELECT max(attempts) FROM outbox");
	ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
	n = sqlite3_column_int(s, 0);
	sqlite3_reset(s);
	store_unlock(fx.pub);
	return n;
}

START_TEST(test_redelivered_after_consumer_crash)
{
	char id[MS_UUID_STRLEN];

	describe(_i);
	SKIP_UNLESS(fx.events, "carries no events");
	setup();
	consumer_store();
	publisher_store();
	/* The consumer commits the effect, then dies before acknowledging. */
	pthread_mutex_lock(&W.mtx);
	W.hold = 1;
	pthread_mutex_unlock(&W.mtx);
	record_event(id);
	WAIT_UNTIL(W.held_now == 1 && W.committed == 1, 10000);
	pthread_mutex_lock(&W.mtx);
	W.crash = true;
	pthread_mutex_unlock(&W.mtx);
	if (fx.in_process) {
		/* Publisher and consumer are one process: it dies whole. */
		gate_open();
		bus_relay_stop(fx.relay);
		fx.relay = NULL;
	} else {
		gate_open();
	}
	stop_server();
	pthread_mutex_lock(&W.mtx);
	W.crash = false;
	W.open = false;
	pthread_mutex_unlock(&W.mtx);
	/* It comes back; the event is delivered again and changes nothing. */
	start_server();
	if (fx.relay == NULL) {
		relay_start();
	}
	wait_outbox_empty(15000);
	WAIT_UNTIL(W.deliveries >= 2, 15000);
	ck_assert_int_eq(effects(id), 1);
	ck_assert_int_eq(world_int(&W.committed), 1);
	if (!fx.broker) {
		/* Nobody else holds it: the publisher heard of the failure
		 * and published again. (A broker confirms publishes itself
		 * and redelivers what its consumer never acknowledged.) */
		ck_assert_int_ge(outbox_max_attempts(), 1);
	}
	teardown();
}
END_TEST

/* bus_stop on a thread of its own: in process, stopping waits for the
 * subscriber the test holds at the gate. */
struct stopper {
	pthread_t thread;
	struct bus *bus;
	int done;
};

static void *
stopper_main(void *arg)
{
	struct stopper *sp = arg;

	bus_stop(sp->bus);
	pthread_mutex_lock(&W.mtx);
	sp->done = 1;
	pthread_cond_broadcast(&W.cv);
	pthread_mutex_unlock(&W.mtx);
	return NULL;
}

START_TEST(test_close_while_busy)
{
	enum { NCALLS = 3, NEVENTS = 4 };
	struct caller cs[NCALLS];
	struct tevent tes[NEVENTS];
	bool calls;
	struct stopper stopper = {0};

	describe(_i);
	SKIP_UNLESS(fx.calls || fx.events, "carries nothing");
	setup();
	/* In process, a call is the caller running the handler: closing
	 * cannot cut it short. Deliveries there are still in flight. */
	calls = fx.calls && !fx.in_process;
	for (int i = 0; calls && i < NCALLS; i++) {
		caller_start(&cs[i], "wait", 10000);
	}
	if (calls) {
		WAIT_UNTIL(W.calls_entered == NCALLS, 5000);
	}
	if (fx.events) {
		pthread_mutex_lock(&W.mtx);
		W.hold = 1;
		pthread_mutex_unlock(&W.mtx);
		for (int i = 0; i < NEVENTS; i++) {
			tevent_init(&tes[i], NULL);
			ck_assert_int_eq(bus_publish(fx.client, &tes[i].ev), 0);
		}
		WAIT_UNTIL(W.held_now == 1, 10000);
	}
	/* Close the client while all that is in flight. */
	stopper.bus = fx.client;
	ck_assert_int_eq(
	    pthread_create(&stopper.thread, NULL, stopper_main, &stopper), 0);
	if (calls) {
		/* The peer is still busy; the calls end now, closed. */
		for (int i = 0; i < NCALLS; i++) {
			WAIT_UNTIL(cs[i].returns == 1, 3000);
			ck_assert_int_eq(cs[i].rc, MS_ECLOSED);
		}
	}
	if (!fx.in_process) {
		/* Closing does not wait for a busy peer. */
		WAIT_UNTIL(stopper.done, 5000);
	}
	gate_open();
	WAIT_UNTIL(stopper.done, 10000);
	pthread_join(stopper.thread, NULL);
	for (int i = 0; calls && i < NCALLS; i++) {
		pthread_join(cs[i].thread, NULL);
		ck_assert_int_eq(cs[i].returns, 1);
	}
	/* After stop every publish has completed, each exactly once. */
	for (int i = 0; fx.events && i < NEVENTS; i++) {
		ck_assert_msg(world_int(&tes[i].done_calls) == 1,
		              "%s: publish %d completed %d times", fx.scheme, i,
		              world_int(&tes[i].done_calls));
	}
	check_exactly_once();
	teardown();
}
END_TEST

/* ---- error paths, on purpose ------------------------------------------ */

START_TEST(test_fault_calls)
{
	struct bus_transport *w;
	struct bus_status st;
	struct tp_faulty_stats s;
	int64_t t0;
	int64_t took;

	describe(_i);
	SKIP_UNLESS(fx.calls, "carries no calls");
	SKIP_UNLESS(!fx.in_process, "in-process calls reach no transport URL");
	setup();
	w = wrapper();
	/* A call refused at once. */
	tp_faulty_fail(w, TP_FAULTY_CALL, 1, MS_EUNAVAIL, TP_FAULTY_RETURN);
	ck_assert_int_eq(call("a", 5000, &st, NULL, NULL, 0), MS_EUNAVAIL);
	ck_assert_int_eq(call("b", 5000, &st, NULL, NULL, 0), 0);
	/* The second call fails by completion. */
	tp_faulty_fail(w, TP_FAULTY_CALL, 2, MS_EBUSY, TP_FAULTY_COMPLETE);
	ck_assert_int_eq(call("c", 5000, &st, NULL, NULL, 0), 0);
	ck_assert_int_eq(call("d", 5000, &st, NULL, NULL, 0), MS_EBUSY);
	ck_assert_int_eq(call("e", 5000, &st, NULL, NULL, 0), 0);
	/* Held in transit past its deadline: the transport must see that
	 * the deadline has passed. */
	tp_faulty_delay(w, TP_FAULTY_CALL, 300, 0);
	t0 = ms_now_ms();
	ck_assert_int_eq(call("f", 150, &st, NULL, NULL, 0), MS_ETIMEDOUT);
	took = ms_now_ms() - t0;
	ck_assert_msg(took >= 290 && took < 300 + 1500, "%s: took %lld ms",
	              fx.scheme, (long long)took);
	/* A slow answer still arrives. */
	tp_faulty_delay(w, TP_FAULTY_CALL, 0, 200);
	t0 = ms_now_ms();
	ck_assert_int_eq(call("g", 5000, &st, NULL, NULL, 0), 0);
	ck_assert_int_ge(ms_now_ms() - t0, 190);
	tp_faulty_delay(w, TP_FAULTY_CALL, 0, 0);
	/* The connection dropped: calls fail until it is back. */
	tp_faulty_drop(w, MS_EUNAVAIL);
	ck_assert_int_eq(call("h", 5000, &st, NULL, NULL, 0), MS_EUNAVAIL);
	ck_assert_int_eq(tp_faulty_restore(w), 0);
	ck_assert_int_eq(call("i", 5000, &st, NULL, NULL, 0), 0);
	tp_faulty_stats(w, TP_FAULTY_CALL, &s);
	ck_assert_uint_eq(s.injected, 3);
	teardown();
}
END_TEST

START_TEST(test_fault_publishes_retried)
{
	struct bus_transport *w;
	struct tp_faulty_stats s;
	char ids[8][MS_UUID_STRLEN];

	describe(_i);
	SKIP_UNLESS(fx.events, "carries no events");
	setup();
	consumer_store();
	publisher_store();
	w = wrapper();
	/* The second publish fails by completion: the relay retries it. */
	tp_faulty_fail(w, TP_FAULTY_PUBLISH, 2, MS_EUNAVAIL,
	               TP_FAULTY_COMPLETE);
	for (int i = 0; i < 3; i++) {
		record_event(ids[i]);
	}
	wait_outbox_empty(15000);
	WAIT_UNTIL(W.committed == 3, 10000);
	ck_assert_int_ge(outbox_max_attempts(), 1);
	/* The next one is refused at once: retried too. */
	tp_faulty_fail(w, TP_FAULTY_PUBLISH, 1, MS_EUNAVAIL, TP_FAULTY_RETURN);
	for (int i = 3; i < 6; i++) {
		record_event(ids[i]);
	}
	wait_outbox_empty(15000);
	WAIT_UNTIL(W.committed == 6, 10000);
	tp_faulty_stats(w, TP_FAULTY_PUBLISH, &s);
	ck_assert_uint_eq(s.injected, 2);
	/* The connection dropped while events wait: they go once it is
	 * back. */
	tp_faulty_drop(w, MS_EUNAVAIL);
	for (int i = 6; i < 8; i++) {
		record_event(ids[i]);
	}
	for (int64_t dl = ms_now_ms() + 10000; ms_now_ms() < dl;) {
		tp_faulty_stats(w, TP_FAULTY_PUBLISH, &s);
		if (s.injected > 2) {
			break;
		}
		store_outbox_wait(fx.pub, 20);
	}
	ck_assert_uint_gt(s.injected, 2);
	ck_assert_int_eq(tp_faulty_restore(w), 0);
	wait_outbox_empty(15000);
	WAIT_UNTIL(W.committed == 8, 10000);
	for (int i = 0; i < 8; i++) {
		ck_assert_int_eq(effects(ids[i]), 1);
	}
	teardown();
}
END_TEST

/* ---- the suite --------------------------------------------------------- */

START_TEST(test_every_transport_has_a_row)
{
	ck_assert_int_gt(nsubjects, 0);
	for (int i = 0; i < nsubjects; i++) {
		ck_assert_msg(subjects[i].row != NULL,
		              "transport %s has no fixture row in "
		              "tests/transport/test_conformance.c: add one",
		              subjects[i].ops->scheme);
	}
}
END_TEST

static const struct row *
row_for(const char *scheme)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(*rows); i++) {
		if (strcmp(rows[i].scheme, scheme) == 0) {
			return &rows[i];
		}
	}
	return NULL;
}

static Suite *
conformance_suite(void)
{
	Suite *s = suite_create("conformance");
	TCase *reg = tcase_create("registry");

	tcase_add_test(reg, test_every_transport_has_a_row);
	suite_add_tcase(s, reg);
	for (int i = 0; i < nsubjects; i++) {
		const struct subject *sj = &subjects[i];
		TCase *tc;

		if (sj->row == NULL) {
			continue;
		}
		if (sj->row->addr == ADDR_ENV &&
		    (getenv(sj->row->env) == NULL ||
		     *getenv(sj->row->env) == '\0')) {
			fprintf(stderr,
			        "conformance: %s not covered: %s is not set "
			        "(meson sets it when rabbitmq-server is "
			        "installed)\n",
			        sj->ops->scheme, sj->row->env);
			continue;
		}
		tc = tcase_create(sj->ops->scheme);
		tcase_set_timeout(tc, 45);
		tcase_add_loop_test(tc, test_call_reply, i, i + 1);
		tcase_add_loop_test(tc, test_call_error, i, i + 1);
		tcase_add_loop_test(tc, test_call_deadline, i, i + 1);
		tcase_add_loop_test(tc, test_call_close_in_flight, i, i + 1);
		tcase_add_loop_test(tc, test_peer_down_up, i, i + 1);
		tcase_add_loop_test(tc, test_size_limit, i, i + 1);
		tcase_add_loop_test(tc, test_publish_consume, i, i + 1);
		tcase_add_loop_test(tc, test_duplicate_suppressed, i, i + 1);
		tcase_add_loop_test(tc, test_redelivered_after_consumer_crash,
		                    i, i + 1);
		tcase_add_loop_test(tc, test_close_while_busy, i, i + 1);
		tcase_add_loop_test(tc, test_fault_calls, i, i + 1);
		tcase_add_loop_test(tc, test_fault_publishes_retried, i, i + 1);
		suite_add_tcase(s, tc);
	}
	return s;
}

int
main(void)
{
	const struct bus_transport_ops *const *ops = bus_transport_list();
	SRunner *sr;
	int failed;

	pthread_mutex_init(&W.mtx, NULL);
	pthread_cond_init(&W.cv, NULL);
	/* As main.c does: a transport may write to a socket its peer has
	 * closed (TLS writes with write(2), see grpc/loop.h). */
	signal(SIGPIPE, SIG_IGN);
	/* The transports' own state changes are not what is tested here. */
	ms_log_set_level(getenv("TEST_VERBOSE") ? MS_LOG_DEBUG : MS_LOG_WARN);
	/* The subjects are the built transports, listed before the wrapper
	 * joins the registry. */
	for (; *ops != NULL && nsubjects < MAX_SUBJECTS; ops++) {
		subjects[nsubjects].ops = *ops;
		subjects[nsubjects].row = row_for((*ops)->scheme);
		nsubjects++;
	}
	if (tp_faulty_register() != 0) {
		fprintf(stderr, "cannot register the fault wrapper\n");
		return EXIT_FAILURE;
	}
	sr = srunner_create(conformance_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
