/* SPDX-License-Identifier: MIT */
/*
 * Tests of the outbox relay's sliding window (src/bus/relay.c), through a
 * transport of this file whose confirms the test gives (events.broker =
 * "faulty+local://", the scheme prefix the config leaves to tests): the
 * window slides past an early event still unconfirmed; never more than
 * |batch| events are in flight, nor one row twice at once, whether the
 * confirms come back out of order from another thread or inline, inside
 * bus_publish on the relay's own thread; a failed publish is retried after
 * the backoff (which new rows do not cut short) and ends sent exactly
 * once; stop waits for the publishes in flight, publishes nothing more,
 * marks the confirmed rows sent and leaves the others pending.
 *
 * The transport checks as it goes: every event it is handed is recorded by
 * id (publishes of that id, publishes while it was already in flight),
 * with the largest number in flight at once.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus/bus_core.h"
#include "bus/relay.h"
#include "core/config.h"
#include "core/err.h"
#include "core/util.h"
#include "events.pb-c.h"
#include "store/store.h"
#include "support/tmpdir.h"
#include "transport/transport.h"

#define MAX_EVENTS 256
#define TYPE       "monoshop.events.BasketCheckoutEvent"

enum mode {
	HOLD,   /* keep every event until the test confirms it */
	INLINE, /* confirm inside publish, on the caller's (relay's) thread */
	THREAD, /* a thread of this file confirms them, out of order */
};

/* One event id seen by the transport. */
struct seen {
	char id[37];
	int publishes; /* times handed to us */
	int ok;        /* times confirmed with 0 */
	int64_t last_ms;
};

static struct {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	enum mode mode;
	struct bus_event *held[MAX_EVENTS]; /* in flight, in publish order */
	int nheld;
	int max_held;  /* most in flight at once */
	int twice;     /* publishes of an id already in flight */
	int published; /* publishes in all */
	int fail_next; /* confirm the next publish with this code (HOLD) */
	struct seen seen[MAX_EVENTS];
	int nseen;
	bool stop_thread;
	pthread_t thread;
} tp;

static struct seen *
seen_of(const char *id)
{
	for (int i = 0; i < tp.nseen; i++) {
		if (strcmp(tp.seen[i].id, id) == 0) {
			return &tp.seen[i];
		}
	}
	ck_assert_int_lt(tp.nseen, MAX_EVENTS);
	ms_strlcpy(tp.seen[tp.nseen].id, id, sizeof(tp.seen[0].id));
	return &tp.seen[tp.nseen++];
}

/* Takes held event |i| out of flight (under the lock). */
static struct bus_event *
take(int i)
{
	struct bus_event *ev = tp.held[i];

	memmove(&tp.held[i], &tp.held[i + 1],
	        (size_t)(tp.nheld - i - 1) * sizeof(tp.held[0]));
	tp.nheld--;
	return ev;
}

/* Completes |ev| with |rc| (without the lock: done may publish again). */
static void
complete(struct bus_event *ev, int rc)
{
	if (rc == 0) {
		pthread_mutex_lock(&tp.mtx);
		seen_of(ev->id)->ok++;
		pthread_mutex_unlock(&tp.mtx);
	}
	ev->done(ev, rc);
}

static int
t_init(struct bus_transport *t, const char *url, const struct ms_config *cfg)
{
	(void)t;
	(void)url;
	(void)cfg;
	return 0;
}

static int
t_start(struct bus_transport *t)
{
	(void)t;
	return 0;
}

/* Completes what is still in flight with MS_ECLOSED, as transports do. */
static void
t_stop(struct bus_transport *t)
{
	(void)t;
	for (;;) {
		struct bus_event *ev = NULL;

		pthread_mutex_lock(&tp.mtx);
		if (tp.nheld > 0) {
			ev = take(0);
		}
		pthread_mutex_unlock(&tp.mtx);
		if (ev == NULL) {
			break;
		}
		complete(ev, MS_ECLOSED);
	}
}

static void
t_fini(struct bus_transport *t)
{
	(void)t;
}

static int
t_publish(struct bus_transport *t, struct bus_event *ev)
{
	struct seen *s;
	bool now;

	(void)t;
	pthread_mutex_lock(&tp.mtx);
	s = seen_of(ev->id);
	for (int i = 0; i < tp.nheld; i++) {
		if (strcmp(tp.held[i]->id, ev->id) == 0) {
			tp.twice++;
		}
	}
	s->publishes++;
	s->last_ms = ms_now_ms();
	tp.published++;
	ck_assert_int_lt(tp.nheld, MAX_EVENTS);
	tp.held[tp.nheld++] = ev;
	if (tp.nheld > tp.max_held) {
		tp.max_held = tp.nheld;
	}
	now = tp.mode == INLINE;
	if (now) {
		take(tp.nheld - 1);
	}
	pthread_cond_broadcast(&tp.cv);
	pthread_mutex_unlock(&tp.mtx);
	if (now) {
		complete(ev, 0);
	}
	return 0;
}

static const struct bus_transport_ops test_ops = {
    .scheme = "faulty+",
    .caps = BUS_CAP_EVENTS,
    .init = t_init,
    .start = t_start,
    .stop = t_stop,
    .fini = t_fini,
    .publish = t_publish,
};

/* THREAD mode: confirms a random event in flight, then another, ... */
static void *
confirmer(void *arg)
{
	unsigned seed = 7;

	(void)arg;
	pthread_mutex_lock(&tp.mtx);
	while (!tp.stop_thread) {
		struct bus_event *ev;

		if (tp.nheld == 0) {
			pthread_cond_wait(&tp.cv, &tp.mtx);
			continue;
		}
		ev = take((int)(rand_r(&seed) % (unsigned)tp.nheld));
		pthread_mutex_unlock(&tp.mtx);
		complete(ev, 0);
		pthread_mutex_lock(&tp.mtx);
	}
	pthread_mutex_unlock(&tp.mtx);
	return NULL;
}

/* Waits until |cond| holds (under the lock) or 10 s pass. */
#define WAIT_UNTIL(cond)                                                       \
	do {                                                                   \
		int64_t deadline_ = ms_now_ms() + 10000;                       \
		pthread_mutex_lock(&tp.mtx);                                   \
		while (!(cond) && ms_now_ms() < deadline_) {                   \
			struct timespec ts_;                                   \
			clock_gettime(CLOCK_REALTIME, &ts_);                   \
			ts_.tv_nsec += 10 * 1000000L;                          \
			if (ts_.tv_nsec >= 1000000000L) {                      \
				ts_.tv_sec++;                                  \
				ts_.tv_nsec -= 1000000000L;                    \
			}                                                      \
			pthread_cond_timedwait(&tp.cv, &tp.mtx, &ts_);         \
		}                                                              \
		ck_assert_msg((cond), "timed out waiting for %s", #cond);      \
		pthread_mutex_unlock(&tp.mtx);                                 \
	} while (0)

/* Confirms the held event of id |id| with |rc|. */
static void
confirm_id(const char *id, int rc)
{
	struct bus_event *ev = NULL;

	pthread_mutex_lock(&tp.mtx);
	for (int i = 0; i < tp.nheld; i++) {
		if (strcmp(tp.held[i]->id, id) == 0) {
			ev = take(i);
			break;
		}
	}
	pthread_mutex_unlock(&tp.mtx);
	ck_assert_msg(ev != NULL, "event %s is not in flight", id);
	complete(ev, rc);
}

/* Copies the id of held event |i| into |out| (36 chars + NUL). */
static void
held_id(int i, char *out)
{
	pthread_mutex_lock(&tp.mtx);
	ck_assert_int_lt(i, tp.nheld);
	ms_strlcpy(out, tp.held[i]->id, 37);
	pthread_mutex_unlock(&tp.mtx);
}

/* ---- fixture ------------------------------------------------------------ */

static char dir[256];
static struct ms_config *cfg;
static struct bus *bus;
static struct store *st;
static char ids[MAX_EVENTS][MS_UUID_STRLEN]; /* in recording order */
static int nids;

static void
setup(void)
{
	char err[256];

	pthread_mutex_lock(&tp.mtx);
	memset(tp.held, 0, sizeof(tp.held));
	tp.nheld = tp.max_held = tp.twice = tp.published = tp.nseen = 0;
	tp.fail_next = 0;
	tp.mode = HOLD;
	tp.stop_thread = false;
	pthread_mutex_unlock(&tp.mtx);
	nids = 0;
	ck_assert_int_eq(test_tmpdir(dir, sizeof(dir)), 0);
	ck_assert_int_eq(ms_config_create(&cfg), 0);
	ck_assert_int_eq(ms_config_set(cfg, "events.broker=faulty+local://",
	                               "test", err, sizeof(err)),
	                 0);
	ck_assert_int_eq(store_open(&st, dir, "relay", NULL, 0, NULL), 0);
	ck_assert_int_eq(bus_create(&bus, cfg), 0);
	ck_assert_msg(bus_start(bus, err, sizeof(err)) == 0, "%s", err);
}

static void
teardown(void)
{
	bus_stop(bus);
	bus_destroy(bus);
	store_close(st);
	ms_config_destroy(cfg);
	test_rmdir(dir);
}

static void
record(int n)
{
	Monoshop__Events__BasketCheckoutEvent e =
	    MONOSHOP__EVENTS__BASKET_CHECKOUT_EVENT__INIT;
	uint8_t buf[256];
	size_t len;

	e.username = "relay-user";
	e.totalprice = "10.00";
	len = protobuf_c_message_pack(&e.base, buf);
	ck_assert_int_le(nids + n, MAX_EVENTS);
	ck_assert_int_eq(store_begin(st), 0);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(store_outbox_add(st, ms_uuid_v4(ids[nids++]),
		                                  TYPE, buf, len, NULL,
		                                  ms_wall_ms()),
		                 0);
	}
	ck_assert_int_eq(store_commit(st), 0);
	store_outbox_notify(st);
}

/* The test's poll interval while it waits for a condition. Not
 * store_outbox_wait: that would take the relay's wake-ups. */
static void
nap(void)
{
	struct timespec ts = {0, 2 * 1000000L};

	nanosleep(&ts, NULL);
}

static int64_t
depth(void)
{
	int64_t n;
	int64_t oldest;

	ck_assert_int_eq(store_outbox_depth(st, &n, &oldest), 0);
	return n;
}

static void
wait_depth(int64_t want)
{
	int64_t deadline = ms_now_ms() + 10000;

	while (depth() != want && ms_now_ms() < deadline) {
		nap();
	}
	ck_assert_int_eq(depth(), want);
}

/* One SQL integer of the outbox row of event |id|. */
static int64_t
row_int(const char *id, const char *col)
{
	sqlite3_stmt *s;
	char sql[128];
	int64_t v;

	snprintf(sql, sizeof(sql), "SELECT %s FROM outbox WHERE id = ?1", col);
	store_lock(st);
	ck_assert_int_eq(sqlite3_prepare_v2(store_db(st), sql, -1, &s, NULL),
	                 SQLITE_OK);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
	v = sqlite3_column_type(s, 0) == SQLITE_NULL
	        ? -1
	        : sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	store_unlock(st);
	return v;
}

/* Every event recorded was published exactly once and confirmed once,
 * never twice at once, never more than |batch| at once. */
static void
check_once(int batch)
{
	pthread_mutex_lock(&tp.mtx);
	ck_assert_int_eq(tp.twice, 0);
	ck_assert_int_le(tp.max_held, batch);
	ck_assert_int_eq(tp.nseen, nids);
	for (int i = 0; i < tp.nseen; i++) {
		ck_assert_int_eq(tp.seen[i].publishes, 1);
		ck_assert_int_eq(tp.seen[i].ok, 1);
	}
	pthread_mutex_unlock(&tp.mtx);
	for (int i = 0; i < nids; i++) {
		ck_assert_int_gt(row_int(ids[i], "sent_ms"), 0);
	}
}

/* ---- tests ------------------------------------------------------------- */

/* The window slides: with the first event unconfirmed, the confirms of the
 * others make room for new rows, and the first stays in flight alone. */
START_TEST(test_window_slides)
{
	struct bus_relay_opts ro = {.batch = 4, .poll_ms = 5000};
	struct bus_relay *relay;

	record(10);
	ck_assert_int_eq(bus_relay_start(&relay, bus, st, &ro), 0);
	char id[37];

	WAIT_UNTIL(tp.nheld == 4);
	held_id(0, id);
	ck_assert_str_eq(id, ids[0]);
	/* Confirm 2, 3, 4 but not 1: 5, 6, 7 go out while 1 is in flight. */
	for (int i = 1; i < 4; i++) {
		confirm_id(ids[i], 0);
	}
	WAIT_UNTIL(tp.published == 7 && tp.nheld == 4);
	held_id(0, id);
	ck_assert_str_eq(id, ids[0]);
	for (int i = 1; i < 4; i++) {
		held_id(i, id);
		ck_assert_str_eq(id, ids[i + 3]);
	}
	/* The confirmed ones are marked sent without waiting for the first
	 * (within MARK_DELAY_MS): 10 - 3. */
	wait_depth(7);
	/* Then the others, the newest first, the first still waiting. */
	for (int k = 4; k < 10; k++) {
		WAIT_UNTIL(tp.nheld > 1);
		held_id(tp.nheld - 1, id);
		confirm_id(id, 0);
	}
	WAIT_UNTIL(tp.published == 10 && tp.nheld == 1);
	confirm_id(ids[0], 0);
	wait_depth(0);
	bus_relay_stop(relay);
	check_once(4);
}
END_TEST

/* Confirms from another thread in random order, with rows recorded while
 * the relay runs: at most |batch| in flight, each row once. */
START_TEST(test_window_bound_out_of_order)
{
	struct bus_relay_opts ro = {.batch = 8, .poll_ms = 5000};
	struct bus_relay *relay;

	tp.mode = THREAD;
	ck_assert_int_eq(pthread_create(&tp.thread, NULL, confirmer, NULL), 0);
	ck_assert_int_eq(bus_relay_start(&relay, bus, st, &ro), 0);
	for (int i = 0; i < 20; i++) {
		record(10);
	}
	wait_depth(0);
	bus_relay_stop(relay);
	pthread_mutex_lock(&tp.mtx);
	tp.stop_thread = true;
	pthread_cond_broadcast(&tp.cv);
	pthread_mutex_unlock(&tp.mtx);
	pthread_join(tp.thread, NULL);
	check_once(8);
}
END_TEST

/* A transport that completes inside bus_publish, on the relay's thread:
 * no deadlock, each row once, all sent. */
START_TEST(test_inline_confirms)
{
	struct bus_relay_opts ro = {.batch = 4, .poll_ms = 5000};
	struct bus_relay *relay;

	tp.mode = INLINE;
	record(30);
	ck_assert_int_eq(bus_relay_start(&relay, bus, st, &ro), 0);
	wait_depth(0);
	record(30); /* and the wake-up on a new row */
	wait_depth(0);
	bus_relay_stop(relay);
	check_once(4);
}
END_TEST

/* A failed publish: nothing goes out before the backoff has passed, even
 * with new rows recorded meanwhile; then the failed row is published
 * again and ends sent exactly once, its attempts counted. */
START_TEST(test_failed_retried_after_backoff)
{
	struct bus_relay_opts ro = {.batch = 4, .poll_ms = 5000};
	struct bus_relay *relay;
	int64_t failed_at;

	record(6);
	ck_assert_int_eq(bus_relay_start(&relay, bus, st, &ro), 0);
	char id[37];

	WAIT_UNTIL(tp.nheld == 4);
	failed_at = ms_now_ms();
	confirm_id(ids[0], MS_EUNAVAIL);
	record(2); /* does not cut the backoff short */
	/* The others are confirmed and marked during the backoff. */
	for (int i = 1; i < 4; i++) {
		confirm_id(ids[i], 0);
	}
	wait_depth(8 - 3);
	/* The next publish is the failed row, after the backoff (100 ms),
	 * and nothing went out before it. */
	WAIT_UNTIL(tp.published >= 5);
	held_id(0, id);
	ck_assert_str_eq(id, ids[0]);
	pthread_mutex_lock(&tp.mtx);
	ck_assert_int_eq(tp.held[0]->attempt, 2);
	ck_assert_int_eq(seen_of(ids[0])->publishes, 2);
	for (int i = 0; i < tp.nheld; i++) {
		ck_assert_int_ge(seen_of(tp.held[i]->id)->last_ms - failed_at,
		                 100);
	}
	tp.mode = INLINE; /* from now on */
	pthread_mutex_unlock(&tp.mtx);
	ck_assert_int_eq(row_int(ids[0], "attempts"), 1);
	/* Then all of them. */
	confirm_id(ids[0], 0);
	for (;;) {
		struct bus_event *ev = NULL;

		pthread_mutex_lock(&tp.mtx);
		if (tp.nheld > 0) {
			ev = take(0);
		}
		pthread_mutex_unlock(&tp.mtx);
		if (ev == NULL) {
			break;
		}
		complete(ev, 0);
	}
	wait_depth(0);
	bus_relay_stop(relay);
	pthread_mutex_lock(&tp.mtx);
	ck_assert_int_eq(tp.twice, 0);
	ck_assert_int_le(tp.max_held, 4);
	ck_assert_int_eq(seen_of(ids[0])->publishes, 2);
	for (int i = 0; i < nids; i++) {
		ck_assert_int_eq(seen_of(ids[i])->ok, 1);
		ck_assert_int_eq(seen_of(ids[i])->publishes, i == 0 ? 2 : 1);
	}
	pthread_mutex_unlock(&tp.mtx);
	ck_assert_int_gt(row_int(ids[0], "sent_ms"), 0);
}
END_TEST

struct stopper {
	struct bus_relay *relay;
	atomic_bool started;
	atomic_bool done;
};

static void *
stop_relay(void *arg)
{
	struct stopper *s = arg;

	atomic_store(&s->started, true);
	bus_relay_stop(s->relay);
	atomic_store(&s->done, true);
	return NULL;
}

/* Stop with events in flight waits for them, publishes nothing more (even
 * as slots free up), marks the confirmed ones sent and leaves the others
 * (failed at stop, or never published) pending for the next start. */
START_TEST(test_stop_in_flight)
{
	struct bus_relay_opts ro = {.batch = 4, .poll_ms = 5000};
	struct stopper s = {0};
	pthread_t th;
	int64_t deadline;

	record(6);
	ck_assert_int_eq(bus_relay_start(&s.relay, bus, st, &ro), 0);
	WAIT_UNTIL(tp.nheld == 4);
	ck_assert_int_eq(pthread_create(&th, NULL, stop_relay, &s), 0);
	deadline = ms_now_ms() + 10000;
	while (!atomic_load(&s.started) && ms_now_ms() < deadline) {
		nap();
	}
	ck_assert(atomic_load(&s.started));
	/* Stop does not return while events are in flight (a wait for
	 * something that must not happen: bounded, 300 ms). */
	deadline = ms_now_ms() + 300;
	while (ms_now_ms() < deadline) {
		ck_assert(!atomic_load(&s.done));
		nap();
	}
	confirm_id(ids[0], 0);
	confirm_id(ids[1], 0);
	confirm_id(ids[2], MS_ECLOSED);
	ck_assert(!atomic_load(&s.done));
	confirm_id(ids[3], 0);
	pthread_join(th, NULL);
	ck_assert_int_eq(tp.published, 4); /* nothing after the stop */
	ck_assert_int_gt(row_int(ids[0], "sent_ms"), 0);
	ck_assert_int_gt(row_int(ids[1], "sent_ms"), 0);
	ck_assert_int_gt(row_int(ids[3], "sent_ms"), 0);
	ck_assert_int_eq(row_int(ids[2], "sent_ms"), -1);
	ck_assert_int_eq(row_int(ids[2], "attempts"), 1);
	ck_assert_int_eq(row_int(ids[4], "sent_ms"), -1);
	ck_assert_int_eq(row_int(ids[5], "sent_ms"), -1);
	ck_assert_int_eq(depth(), 3);
}
END_TEST

static Suite *
relay_suite(void)
{
	Suite *s = suite_create("relay");
	TCase *tc = tcase_create("window");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_window_slides);
	tcase_add_test(tc, test_window_bound_out_of_order);
	tcase_add_test(tc, test_inline_confirms);
	tcase_add_test(tc, test_failed_retried_after_backoff);
	tcase_add_test(tc, test_stop_in_flight);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	pthread_mutex_init(&tp.mtx, NULL);
	pthread_cond_init(&tp.cv, NULL);
	/* Before any bus exists, as the registry requires. */
	if (bus_transport_register(&test_ops) != 0) {
		return EXIT_FAILURE;
	}
	sr = srunner_create(relay_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
