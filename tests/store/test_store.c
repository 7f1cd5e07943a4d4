/* SPDX-License-Identifier: MIT */
/*
 * Tests of the store: open and pragmas, versioned migrations, the outbox
 * (atomic with the business transaction, survives a reopen, sent / failed /
 * dead marks, depth, prune, the relay's wake-up) and the inbox (claim once).
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "store/store.h"
#include "support/tmpdir.h"

static const struct store_migration migs[] = {
    {1, "CREATE TABLE t(x INTEGER NOT NULL);"
        "INSERT INTO t VALUES(1);"},
    {2, "ALTER TABLE t ADD COLUMN y TEXT;"
        "INSERT INTO t VALUES(2, 'two');"},
};

static char dir[256];

static void
setup(void)
{
	ck_assert_int_eq(test_tmpdir(dir, sizeof(dir)), 0);
}

static void
teardown(void)
{
	test_rmdir(dir);
}

static int64_t
query_int(struct store *st, const char *sql)
{
	sqlite3_stmt *s;
	int64_t v = -1;

	store_lock(st);
	ck_assert_int_eq(sqlite3_prepare_v2(store_db(st), sql, -1, &s, NULL),
	                 SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW) {
		v = sqlite3_column_int64(s, 0);
	}
	sqlite3_finalize(s);
	store_unlock(st);
	return v;
}

START_TEST(test_open_migrate_once)
{
	struct store *st;
	char sub[300];
	sqlite3_stmt *s;

	/* A data dir that does not exist yet is created. */
	snprintf(sub, sizeof(sub), "%s/a/b", dir);
	ck_assert_int_eq(store_open(&st, sub, "m", migs, 2, NULL), 0);
	ck_assert_str_eq(store_name(st), "m");
	ck_assert_int_eq(query_int(st, "PRAGMA user_version"), 2);
	ck_assert_int_eq(query_int(st, "SELECT count(*) FROM t"), 2);
	store_lock(st);
	sqlite3_prepare_v2(store_db(st), "PRAGMA journal_mode", -1, &s, NULL);
	ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	store_unlock(st);
	ck_assert_int_eq(store_integrity_check(st), 0);
	store_close(st);

	/* Reopening runs nothing again: the seed rows are not doubled. */
	ck_assert_int_eq(store_open(&st, sub, "m", migs, 2, NULL), 0);
	ck_assert_int_eq(query_int(st, "SELECT count(*) FROM t"), 2);
	store_close(st);

	/* Opening with only the first migration: the file is newer. */
	ck_assert_int_eq(store_open(&st, sub, "m", migs, 1, NULL), MS_EDB);
	ck_assert_ptr_null(st);
}
END_TEST

START_TEST(test_failed_migration_rolls_back)
{
	static const struct store_migration bad[] = {
	    {1, "CREATE TABLE ok(x);"},
	    {2, "CREATE TABLE half(x); INSERT INTO nowhere VALUES(1);"},
	};
	struct store *st;

	ck_assert_int_eq(store_open(&st, dir, "bad", bad, 2, NULL), MS_EDB);
	/* Version 1 committed; version 2 left nothing behind. */
	ck_assert_int_eq(store_open(&st, dir, "bad", bad, 1, NULL), 0);
	ck_assert_int_eq(query_int(st, "PRAGMA user_version"), 1);
	ck_assert_int_eq(query_int(st, "SELECT count(*) FROM sqlite_master"
	                               " WHERE name = 'half'"),
	                 0);
	store_close(st);
}
END_TEST

START_TEST(test_not_a_database)
{
	char path[300];
	FILE *f;
	struct store *st;

	snprintf(path, sizeof(path), "%s/junk.db", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 512; i++) {
		fputs("this is not sqlite ", f);
	}
	fclose(f);
	ck_assert_int_lt(store_open(&st, dir, "junk", migs, 2, NULL), 0);
	ck_assert_ptr_null(st);
}
END_TEST

static void
add_event(struct store *st, const char *id, bool commit)
{
	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_exec(st, "INSERT INTO t(x) VALUES(42)"), 0);
	ck_assert_int_eq(store_outbox_add(st, id, "test.Event", "abc", 3,
	                                  "00-0123456789abcdef0123456789abcdef-"
	                                  "0123456789abcdef-01",
	                                  ms_wall_ms()),
	                 0);
	if (commit) {
		ck_assert_int_eq(store_commit(st), 0);
	} else {
		store_rollback(st);
	}
}

START_TEST(test_outbox_atomic_and_durable)
{
	struct store *st;
	struct store_outbox_row rows[4];
	size_t n;
	int64_t count;
	int64_t oldest;

	ck_assert_int_eq(store_open(&st, dir, "o", migs, 2, NULL), 0);
	/* Rolled back: neither the business row nor the event exists. */
	add_event(st, "11111111-1111-4111-8111-111111111111", false);
	ck_assert_int_eq(query_int(st, "SELECT count(*) FROM t WHERE x = 42"),
	                 0);
	ck_assert_int_eq(store_outbox_fetch(st, 0, rows, 4, &n), 0);
	ck_assert_uint_eq(n, 0);

	add_event(st, "11111111-1111-4111-8111-111111111111", true);
	add_event(st, "22222222-2222-4222-8222-222222222222", true);
	store_close(st);

	/* Pending events survive a restart. */
	ck_assert_int_eq(store_open(&st, dir, "o", migs, 2, NULL), 0);
	ck_assert_int_eq(store_outbox_depth(st, &count, &oldest), 0);
	ck_assert_int_eq(count, 2);
	ck_assert_int_gt(oldest, 0);
	ck_assert_int_eq(store_outbox_fetch(st, 0, rows, 4, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(rows[0].id, "11111111-1111-4111-8111-111111111111");
	ck_assert_str_eq(rows[0].type, "test.Event");
	ck_assert_uint_eq(rows[0].len, 3);
	ck_assert_int_eq(memcmp(rows[0].payload, "abc", 3), 0);
	ck_assert_ptr_nonnull(rows[0].traceparent);
	ck_assert_uint_eq(rows[0].attempts, 0);
	ck_assert_int_lt(rows[0].seq, rows[1].seq);

	/* The same id twice is refused (an event is recorded once). */
	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_outbox_add(st, rows[0].id, "x", "", 0, NULL, 1),
	                 MS_EEXIST);
	store_rollback(st);

	ck_assert_int_eq(store_outbox_mark_failed(st, rows[0].seq), 0);
	ck_assert_int_eq(store_outbox_mark_sent(st, rows[1].seq), 0);
	store_outbox_row_fini(&rows[0]);
	store_outbox_row_fini(&rows[1]);
	ck_assert_int_eq(store_outbox_fetch(st, 0, rows, 4, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(rows[0].attempts, 1);
	ck_assert_int_eq(store_outbox_mark_dead(st, rows[0].seq, "poison"), 0);
	store_outbox_row_fini(&rows[0]);
	ck_assert_int_eq(store_outbox_fetch(st, 0, rows, 4, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(store_outbox_depth(st, &count, &oldest), 0);
	ck_assert_int_eq(count, 0);

	/* Prune drops delivered rows only; the dead one is kept. */
	ck_assert_int_eq(store_outbox_prune(st, ms_wall_ms() + 1000), 0);
	ck_assert_int_eq(query_int(st, "SELECT count(*) FROM outbox"), 1);
	ck_assert_int_eq(
	    query_int(st, "SELECT count(*) FROM outbox WHERE dead_reason"
	                  " = 'poison'"),
	    1);
	store_close(st);
}
END_TEST

START_TEST(test_inbox_claims_once)
{
	struct store *st;
	const char *id = "33333333-3333-4333-8333-333333333333";

	ck_assert_int_eq(store_open(&st, dir, "i", migs, 2, NULL), 0);
	ck_assert(!store_inbox_seen(st, id));
	/* A claim that is rolled back did not happen. */
	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_inbox_claim(st, id, "test.Event"), 0);
	store_rollback(st);
	ck_assert(!store_inbox_seen(st, id));

	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_inbox_claim(st, id, "test.Event"), 0);
	ck_assert_int_eq(store_commit(st), 0);
	ck_assert(store_inbox_seen(st, id));

	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_inbox_claim(st, id, "test.Event"), MS_EEXIST);
	store_rollback(st);
	store_close(st);

	/* And it is remembered across a restart. */
	ck_assert_int_eq(store_open(&st, dir, "i", migs, 2, NULL), 0);
	ck_assert(store_inbox_seen(st, id));
	store_close(st);
}
END_TEST

/* A batch: one transaction, a savepoint per event. A step undone leaves
 * the others; a claim earlier in the batch is seen by a later one; a
 * rolled-back batch leaves nothing; outside a transaction there is no
 * step. */
START_TEST(test_batch_steps)
{
	struct store *st;
	const char *a = "44444444-4444-4444-8444-444444444444";
	const char *b = "55555555-5555-4555-8555-555555555555";
	const char *c = "66666666-6666-4666-8666-666666666666";

	ck_assert_int_eq(store_open(&st, dir, "s", migs, 2, NULL), 0);
	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_savepoint(st), 0);
	ck_assert_int_eq(store_inbox_claim(st, a, "test.Event"), 0);
	ck_assert_int_eq(store_release(st), 0);
	ck_assert_int_eq(store_savepoint(st), 0);
	ck_assert_int_eq(store_inbox_claim(st, b, "test.Event"), 0);
	store_rollback_to(st); /* b refused: undone */
	ck_assert_int_eq(store_savepoint(st), 0);
	ck_assert_int_eq(store_inbox_claim(st, a, "test.Event"), MS_EEXIST);
	store_rollback_to(st);
	ck_assert_int_eq(store_commit(st), 0);
	ck_assert(store_inbox_seen(st, a));
	ck_assert(!store_inbox_seen(st, b));

	ck_assert_int_eq(store_begin(st), 0);
	ck_assert_int_eq(store_savepoint(st), 0);
	ck_assert_int_eq(store_inbox_claim(st, c, "test.Event"), 0);
	ck_assert_int_eq(store_release(st), 0);
	store_rollback(st);
	ck_assert(!store_inbox_seen(st, c));

	store_lock(st);
	ck_assert_int_eq(store_savepoint(st), MS_EDB);
	store_unlock(st);
	store_close(st);
}
END_TEST

static void *
notifier(void *arg)
{
	store_outbox_notify(arg);
	return NULL;
}

START_TEST(test_outbox_wait_wakes)
{
	struct store *st;
	pthread_t th;
	int64_t t0;

	ck_assert_int_eq(store_open(&st, dir, "w", migs, 2, NULL), 0);
	t0 = ms_now_ms();
	ck_assert_int_eq(pthread_create(&th, NULL, notifier, st), 0);
	/* A long timeout: only the notify can end the wait early. */
	store_outbox_wait(st, 20000);
	ck_assert_int_lt(ms_now_ms() - t0, 10000);
	pthread_join(th, NULL);
	/* A short timeout with no notify returns too. */
	store_outbox_wait(st, 20);
	store_close(st);
}
END_TEST

static Suite *
store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_open_migrate_once);
	tcase_add_test(tc, test_failed_migration_rolls_back);
	tcase_add_test(tc, test_not_a_database);
	tcase_add_test(tc, test_outbox_atomic_and_durable);
	tcase_add_test(tc, test_inbox_claims_once);
	tcase_add_test(tc, test_batch_steps);
	tcase_add_test(tc, test_outbox_wait_wakes);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(store_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
