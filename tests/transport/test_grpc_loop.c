/* SPDX-License-Identifier: MIT */
/*
 * Tests of the gRPC transport's event loop: posts from many threads run in
 * order on the loop thread, timers fire in due order and can be stopped,
 * a listener accepts and a connection echoes bytes both ways (a large
 * write drains through the write buffer), a refused connect is reported,
 * a callback may abort its own connection, and stop closes everything with
 * MS_ECLOSED.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "transport/grpc/loop.h"

/* ---- a tiny synchronisation helper -------------------------------------- */

static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void
signal_all(void)
{
	pthread_mutex_lock(&mtx);
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mtx);
}

/* Waits until *v >= want (10 s at most); returns the last value seen. */
static long
wait_ge(atomic_long *v, long want)
{
	int64_t deadline = ms_now_ms() + 10000;
	long got;

	pthread_mutex_lock(&mtx);
	while ((got = atomic_load(v)) < want && ms_now_ms() < deadline) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&cv, &mtx, &ts);
	}
	pthread_mutex_unlock(&mtx);
	return got;
}

/* The busy poll of the loops the tests make (tp_grpc_loop_busy_poll): 0,
 * or set by the "busy poll" case's fixture, which runs the same tests on
 * loops that poll without sleeping between events. */
static int busy_us;

static int
make_loop(struct tp_grpc_loop **out, const char *name)
{
	int rc = tp_grpc_loop_create(out, name);

	if (rc == 0) {
		tp_grpc_loop_busy_poll(*out, busy_us);
	}
	return rc;
}

static void
busy_on(void)
{
	busy_us = 500;
}

/* ---- posts -------------------------------------------------------------- */

#define POSTERS    4
#define PER_POSTER 500

static struct tp_grpc_loop *L;
static atomic_long posted;
static long last_seen[POSTERS];
static atomic_int out_of_order;
static atomic_int off_thread;

static void
on_post(void *arg)
{
	long v = (long)(intptr_t)arg;
	int who = (int)(v / PER_POSTER);

	if (!tp_grpc_loop_on_thread(L)) {
		atomic_fetch_add(&off_thread, 1);
	}
	/* Per poster, posts run in the order they were made. */
	if (v % PER_POSTER != last_seen[who] + 1) {
		atomic_fetch_add(&out_of_order, 1);
	}
	last_seen[who] = v % PER_POSTER;
	atomic_fetch_add(&posted, 1);
	signal_all();
}

static void *
poster(void *arg)
{
	long who = (long)(intptr_t)arg;

	for (long i = 0; i < PER_POSTER; i++) {
		ck_assert_int_eq(
		    tp_grpc_loop_post(L, on_post,
		                      (void *)(intptr_t)(who * PER_POSTER + i)),
		    0);
	}
	return NULL;
}

START_TEST(test_posts_in_order)
{
	pthread_t th[POSTERS];

	atomic_store(&posted, 0);
	for (int i = 0; i < POSTERS; i++) {
		last_seen[i] = -1;
	}
	ck_assert_int_eq(make_loop(&L, "test"), 0);
	ck_assert_int_eq(tp_grpc_loop_start(L), 0);
	ck_assert(!tp_grpc_loop_on_thread(L));
	for (long i = 0; i < POSTERS; i++) {
		pthread_create(&th[i], NULL, poster, (void *)(intptr_t)i);
	}
	for (int i = 0; i < POSTERS; i++) {
		pthread_join(th[i], NULL);
	}
	ck_assert_int_eq(wait_ge(&posted, POSTERS * PER_POSTER),
	                 POSTERS * PER_POSTER);
	ck_assert_int_eq(atomic_load(&out_of_order), 0);
	ck_assert_int_eq(atomic_load(&off_thread), 0);
	tp_grpc_loop_stop(L);
	/* After stop, a post is refused and never runs. */
	ck_assert_int_eq(tp_grpc_loop_post(L, on_post, NULL), MS_ECLOSED);
	tp_grpc_loop_destroy(L);
}
END_TEST

/* ---- timers ------------------------------------------------------------- */

static struct tp_grpc_timer timers[3];
static atomic_long fired;
static int order[3];

static void
on_timer(void *arg)
{
	long i = atomic_fetch_add(&fired, 1);

	order[i] = (int)(intptr_t)arg;
	signal_all();
}

static void
arm_timers(void *arg)
{
	int64_t now = ms_now_ms();

	(void)arg;
	memset(timers, 0, sizeof(timers));
	/* Armed out of order; the one due in between is stopped. */
	tp_grpc_timer_start(L, &timers[0], now + 60, on_timer, (void *)2);
	tp_grpc_timer_start(L, &timers[1], now + 20, on_timer, (void *)1);
	tp_grpc_timer_start(L, &timers[2], now + 40, on_timer, (void *)3);
	tp_grpc_timer_stop(L, &timers[2]);
	tp_grpc_timer_stop(L, &timers[2]); /* idempotent */
	/* A past due time fires on the next turn. */
	tp_grpc_timer_start(L, &timers[2], now - 5, on_timer, (void *)0);
}

START_TEST(test_timers)
{
	atomic_store(&fired, 0);
	ck_assert_int_eq(make_loop(&L, "test"), 0);
	ck_assert_int_eq(tp_grpc_loop_start(L), 0);
	ck_assert_int_eq(tp_grpc_loop_post(L, arm_timers, NULL), 0);
	ck_assert_int_eq(wait_ge(&fired, 3), 3);
	ck_assert_int_eq(order[0], 0);
	ck_assert_int_eq(order[1], 1);
	ck_assert_int_eq(order[2], 2);
	tp_grpc_loop_stop(L);
	tp_grpc_loop_destroy(L);
}
END_TEST

/* ---- connections -------------------------------------------------------- */

#define BIG (3 * 1024 * 1024)

struct side {
	struct tp_grpc_conn *conn;
	atomic_long opened;
	atomic_long open_rc;
	atomic_long received;
	atomic_long closed;
	atomic_long close_rc;
	uint8_t *got; /* BIG bytes */
	bool echo;    /* send back what arrives */
	bool abort_on_read;
};

static struct side server_side;
static struct side client_side;
static uint16_t port;

static void
s_open(struct tp_grpc_conn *c, void *arg, int rc)
{
	struct side *s = arg;

	s->conn = c;
	atomic_store(&s->open_rc, rc);
	atomic_fetch_add(&s->opened, 1);
	signal_all();
}

static int
s_read(struct tp_grpc_conn *c, void *arg, const uint8_t *buf, size_t len)
{
	struct side *s = arg;
	long have = atomic_load(&s->received);

	if (s->abort_on_read) {
		return MS_EPROTO;
	}
	if (s->got && have + (long)len <= BIG) {
		memcpy(s->got + have, buf, len);
	}
	atomic_fetch_add(&s->received, (long)len);
	if (s->echo) {
		ck_assert_int_eq(tp_grpc_conn_write(c, buf, len), 0);
	}
	signal_all();
	return 0;
}

static void
s_close(struct tp_grpc_conn *c, void *arg, int rc)
{
	struct side *s = arg;

	(void)c;
	s->conn = NULL;
	atomic_store(&s->close_rc, rc);
	atomic_fetch_add(&s->closed, 1);
	signal_all();
}

static const struct tp_grpc_conn_ops side_ops = {
    .on_open = s_open,
    .on_read = s_read,
    .on_close = s_close,
};

static void
on_accept(void *arg, struct tp_grpc_conn *c)
{
	(void)arg;
	tp_grpc_conn_set_ops(c, &side_ops, &server_side);
}

static uint8_t *payload;

static void
do_connect(void *arg)
{
	struct tp_grpc_conn *c;

	(void)arg;
	ck_assert_int_eq(tp_grpc_connect(L, "127.0.0.1", port, 2000, &side_ops,
	                                 &client_side, &c),
	                 0);
	/* Written before the connect completes: sent once it does. */
	ck_assert_int_eq(tp_grpc_conn_write(c, payload, BIG), 0);
}

static void
do_close_client(void *arg)
{
	(void)arg;
	if (client_side.conn) {
		tp_grpc_conn_close(client_side.conn);
	}
}

static void
reset_sides(void)
{
	memset(&server_side, 0, sizeof(server_side));
	memset(&client_side, 0, sizeof(client_side));
}

START_TEST(test_echo_big)
{
	reset_sides();
	payload = malloc(BIG);
	for (size_t i = 0; i < BIG; i++) {
		payload[i] = (uint8_t)(i * 7 + (i >> 9));
	}
	server_side.echo = true;
	client_side.got = malloc(BIG);
	ck_assert_int_eq(make_loop(&L, "test"), 0);
	/* Listening before start (main thread), on a free port. */
	ck_assert_int_eq(
	    tp_grpc_listen(L, "127.0.0.1:0", on_accept, NULL, &port), 0);
	ck_assert_int_gt(port, 0);
	ck_assert_int_eq(tp_grpc_loop_start(L), 0);
	ck_assert_int_eq(tp_grpc_loop_post(L, do_connect, NULL), 0);
	ck_assert_int_eq(wait_ge(&client_side.received, BIG), BIG);
	ck_assert_int_eq(atomic_load(&client_side.open_rc), 0);
	ck_assert_int_eq(atomic_load(&server_side.opened), 1);
	ck_assert_int_eq(memcmp(client_side.got, payload, BIG), 0);

	/* A graceful close from the client: both sides see on_close. */
	ck_assert_int_eq(tp_grpc_loop_post(L, do_close_client, NULL), 0);
	ck_assert_int_eq(wait_ge(&client_side.closed, 1), 1);
	ck_assert_int_eq(atomic_load(&client_side.close_rc), 0);
	ck_assert_int_eq(wait_ge(&server_side.closed, 1), 1);
	ck_assert_int_eq(atomic_load(&server_side.close_rc), MS_ECLOSED);
	tp_grpc_loop_stop(L);
	tp_grpc_loop_destroy(L);
	free(payload);
	free(client_side.got);
}
END_TEST

static void
do_connect_refused(void *arg)
{
	struct tp_grpc_conn *c;
	int rc;

	(void)arg;
	rc = tp_grpc_connect(L, "127.0.0.1", port, 2000, &side_ops,
	                     &client_side, &c);
	if (rc != 0) {
		/* Refused at once: no callbacks; record it like on_open. */
		atomic_store(&client_side.open_rc, rc);
		atomic_fetch_add(&client_side.opened, 1);
		atomic_fetch_add(&client_side.closed, 1);
		signal_all();
	}
}

START_TEST(test_connect_refused)
{
	struct tp_grpc_loop *probe;

	reset_sides();
	/* A port that was free a moment ago and has no listener. */
	ck_assert_int_eq(tp_grpc_loop_create(&probe, "probe"), 0);
	ck_assert_int_eq(
	    tp_grpc_listen(probe, "127.0.0.1:0", on_accept, NULL, &port), 0);
	tp_grpc_loop_destroy(probe);

	ck_assert_int_eq(make_loop(&L, "test"), 0);
	ck_assert_int_eq(tp_grpc_loop_start(L), 0);
	ck_assert_int_eq(tp_grpc_loop_post(L, do_connect_refused, NULL), 0);
	ck_assert_int_eq(wait_ge(&client_side.opened, 1), 1);
	ck_assert_int_eq(atomic_load(&client_side.open_rc), MS_ECONNREFUSED);
	ck_assert_int_eq(wait_ge(&client_side.closed, 1), 1);
	tp_grpc_loop_stop(L);
	tp_grpc_loop_destroy(L);
}
END_TEST

static void
do_connect_small(void *arg)
{
	struct tp_grpc_conn *c;
	static const uint8_t hello[] = "hello";

	(void)arg;
	ck_assert_int_eq(tp_grpc_connect(L, "127.0.0.1", port, 2000, &side_ops,
	                                 &client_side, &c),
	                 0);
	ck_assert_int_eq(tp_grpc_conn_write(c, hello, 5), 0);
}

START_TEST(test_abort_from_read_and_stop)
{
	reset_sides();
	server_side.abort_on_read = true;
	ck_assert_int_eq(make_loop(&L, "test"), 0);
	ck_assert_int_eq(
	    tp_grpc_listen(L, "127.0.0.1:0", on_accept, NULL, &port), 0);
	ck_assert_int_eq(tp_grpc_loop_start(L), 0);
	ck_assert_int_eq(tp_grpc_loop_post(L, do_connect_small, NULL), 0);
	/* The server's on_read returns an error: its side closes with it,
	 * and the client sees the peer go away. */
	ck_assert_int_eq(wait_ge(&server_side.closed, 1), 1);
	ck_assert_int_eq(atomic_load(&server_side.close_rc), MS_EPROTO);
	ck_assert_int_eq(wait_ge(&client_side.closed, 1), 1);

	/* A second connection still open at stop is closed with ECLOSED. */
	reset_sides();
	ck_assert_int_eq(tp_grpc_loop_post(L, do_connect_small, NULL), 0);
	ck_assert_int_eq(wait_ge(&server_side.received, 5), 5);
	tp_grpc_loop_stop(L);
	ck_assert_int_eq(atomic_load(&server_side.closed), 1);
	ck_assert_int_eq(atomic_load(&server_side.close_rc), MS_ECLOSED);
	ck_assert_int_eq(atomic_load(&client_side.closed), 1);
	tp_grpc_loop_destroy(L);
}
END_TEST

START_TEST(test_bad_listen)
{
	ck_assert_int_eq(make_loop(&L, "test"), 0);
	ck_assert_int_eq(tp_grpc_listen(L, "nocolon", on_accept, NULL, &port),
	                 MS_EINVAL);
	ck_assert_int_eq(
	    tp_grpc_listen(L, "127.0.0.1:0", on_accept, NULL, &port), 0);
	{
		char taken[32];

		snprintf(taken, sizeof(taken), "127.0.0.1:%u", port);
		ck_assert_int_eq(
		    tp_grpc_listen(L, taken, on_accept, NULL, NULL), MS_EIO);
	}
	tp_grpc_loop_destroy(L);
}
END_TEST

static Suite *
loop_suite(void)
{
	Suite *s = suite_create("grpc_loop");
	TCase *tc = tcase_create("loop");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_posts_in_order);
	tcase_add_test(tc, test_timers);
	tcase_add_test(tc, test_echo_big);
	tcase_add_test(tc, test_connect_refused);
	tcase_add_test(tc, test_abort_from_read_and_stop);
	tcase_add_test(tc, test_bad_listen);
	suite_add_tcase(s, tc);
	/* Posts, timers (due while the loop spins), I/O and stop, again. */
	tc = tcase_create("busy poll");
	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, busy_on, NULL);
	tcase_add_test(tc, test_posts_in_order);
	tcase_add_test(tc, test_timers);
	tcase_add_test(tc, test_echo_big);
	tcase_add_test(tc, test_abort_from_read_and_stop);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(loop_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
