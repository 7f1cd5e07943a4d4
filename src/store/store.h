/* SPDX-License-Identifier: MIT */
/*
 * SQLite storage shared by every module: each module owns one database file
 * under node.data_dir (<data_dir>/<name>.db), opened in WAL mode with a busy
 * timeout and migrated to the newest schema version on open. The outbox and
 * the inbox tables are created in every store (migration 0), so any module
 * can record events in its business transaction and dedupe the ones it
 * consumes.
 *
 * Threads: one connection per store, guarded by the store's mutex.
 * store_begin() takes the mutex and store_commit()/store_rollback() release
 * it; store_lock()/store_unlock() guard reads outside a transaction. Never
 * call one store function from inside another's locked region of a different
 * store while holding this one (no lock ordering is defined between stores).
 */
#ifndef MS_STORE_STORE_H
#define MS_STORE_STORE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* One schema step: |sql| (several statements allowed) moves the schema from
 * version |version|-1 to |version|. Versions start at 1 and are contiguous. */
struct store_migration {
	int version;
	const char *sql;
};

struct store_opts {
	int busy_timeout_ms; /* default 5000 */
	bool sync_full;      /* synchronous=FULL instead of NORMAL */
};

/*
 * store_open opens (creating it and |dir| when missing) <dir>/<name>.db,
 * sets WAL, synchronous, busy_timeout and foreign_keys, creates the outbox
 * and inbox, then runs each migration newer than the file's user_version in
 * its own transaction. Returns 0, MS_EIO (cannot create dir / open file),
 * MS_ECORRUPT (not a database), MS_EDB (a migration failed: the error is
 * logged) or MS_ENOMEM. |opts| may be NULL.
 */
int store_open(struct store **out, const char *dir, const char *name,
               const struct store_migration *migs, size_t nmigs,
               const struct store_opts *opts);

/* store_close finalizes cached statements and closes; NULL is a no-op. */
void store_close(struct store *st);

/* store_name returns the name given to store_open ("basket"). */
const char *store_name(const struct store *st);

/* store_path returns the database file path. */
const char *store_path(const struct store *st);

/* store_db returns the connection; use it only while holding the lock. */
sqlite3 *store_db(struct store *st);

void store_lock(struct store *st);
void store_unlock(struct store *st);

/*
 * store_begin locks the store and starts an IMMEDIATE transaction;
 * store_commit commits and unlocks; store_rollback rolls back and unlocks.
 * Returns 0 or MS_EDB / MS_EBUSY (then the store is NOT locked for begin,
 * and IS unlocked after a failed commit, which rolled back).
 */
int store_begin(struct store *st);
int store_commit(struct store *st);
void store_rollback(struct store *st);

/*
 * A nested step inside the transaction of store_begin (lock held), e.g.
 * one event of a batch: store_savepoint opens it, store_release keeps its
 * writes in the transaction, store_rollback_to undoes them (the step is
 * then closed too) and leaves the rest of the transaction as it was. Steps
 * do not nest. store_savepoint returns 0, or MS_EDB when no transaction is
 * open any more (SQLite rolls one back by itself on some errors, e.g. a
 * full disk: nothing of it will commit) or the step cannot start;
 * store_release returns 0 or MS_EDB / MS_EBUSY.
 */
int store_savepoint(struct store *st);
int store_release(struct store *st);
void store_rollback_to(struct store *st);

/*
 * store_prepare returns a cached prepared statement for |sql| (keyed by the
 * pointer, so pass string literals), reset and with bindings cleared, or
 * NULL (the error is logged). Lock held. Do not finalize it.
 */
sqlite3_stmt *store_prepare(struct store *st, const char *sql);

/* store_exec runs |sql| (no results). Lock held. Returns 0 or MS_EDB. */
int store_exec(struct store *st, const char *sql);

/* store_err maps a SQLite result code to MS_E* (BUSY/LOCKED → MS_EBUSY,
 * CORRUPT/NOTADB → MS_ECORRUPT, CONSTRAINT → MS_EEXIST, FULL/IOERR → MS_EIO,
 * NOMEM → MS_ENOMEM, others → MS_EDB). */
int store_err(int sqlite_rc);

/* store_integrity_check runs PRAGMA integrity_check; 0 when "ok". */
int store_integrity_check(struct store *st);

/* ---- outbox ----------------------------------------------------------- */

/*
 * store_outbox_add records an event inside the current transaction (call
 * between store_begin and store_commit). |payload| is copied. Returns 0 or
 * MS_EDB. After commit, call store_outbox_notify() to wake the relay.
 */
int store_outbox_add(struct store *st, const char *id, const char *type,
                     const void *payload, size_t len, const char *traceparent,
                     int64_t occurred_ms);

struct store_outbox_row {
	int64_t seq;      /* outbox row id, delivery order */
	char id[37];      /* event id */
	char *type;       /* malloc'd */
	uint8_t *payload; /* malloc'd */
	size_t len;
	char *traceparent; /* malloc'd or NULL */
	int64_t occurred_ms;
	unsigned attempts; /* publishes tried before this one */
};

/*
 * store_outbox_fetch reads up to |max| pending rows with seq > |after| in seq
 * order into |rows|; *n receives the count. Each row's buffers belong to the
 * caller: release them with store_outbox_row_fini. Takes the lock itself.
 * Returns 0 or MS_EDB.
 */
int store_outbox_fetch(struct store *st, int64_t after,
                       struct store_outbox_row *rows, size_t max, size_t *n);
void store_outbox_row_fini(struct store_outbox_row *row);

/* store_outbox_mark_sent marks row |seq| delivered (takes the lock) and
 * empties its payload (card data must not outlive the hand-over). */
int store_outbox_mark_sent(struct store *st, int64_t seq);

/*
 * store_outbox_mark_sent_many marks the |n| rows |seqs| delivered in one
 * transaction (takes the lock): one commit for a relay round instead of
 * one per event. All or none. Returns 0 or MS_EDB/MS_EBUSY.
 */
int store_outbox_mark_sent_many(struct store *st, const int64_t *seqs,
                                size_t n);

/* store_outbox_mark_failed counts one failed publish of row |seq|. */
int store_outbox_mark_failed(struct store *st, int64_t seq);

/*
 * store_outbox_mark_dead takes row |seq| out of delivery because the consumer
 * rejected it as poison: the row stays in the outbox (sent_ms set, |reason|
 * in dead_reason) for an operator to inspect; nothing is deleted.
 */
int store_outbox_mark_dead(struct store *st, int64_t seq, const char *reason);

/* store_outbox_depth returns the pending count and the wall-clock ms of the
 * oldest pending event (0 when none). Takes the lock. */
int store_outbox_depth(struct store *st, int64_t *count, int64_t *oldest_ms);

/* store_outbox_prune deletes sent rows older than |older_than_ms| (wall). */
int store_outbox_prune(struct store *st, int64_t older_than_ms);

/*
 * store_outbox_wait blocks until store_outbox_notify() is called or
 * |timeout_ms| passes; the relay's sleep. store_outbox_notify may be called
 * from any thread, with or without the lock.
 */
void store_outbox_wait(struct store *st, int timeout_ms);
void store_outbox_notify(struct store *st);

/* ---- inbox ------------------------------------------------------------ */

/*
 * store_inbox_claim records event |id| as handled inside the current
 * transaction. Returns 0 when it is new (go on and apply it), MS_EEXIST when
 * it was already handled (commit nothing else: a duplicate), or MS_EDB.
 */
int store_inbox_claim(struct store *st, const char *id, const char *type);

/* store_inbox_seen tells whether |id| was handled (takes the lock). */
bool store_inbox_seen(struct store *st, const char *id);

#endif
