/* SPDX-License-Identifier: MIT */
/*
 * SQLite storage shared by every module: open + pragmas + migrations, a
 * per-store statement cache, transactions under the store mutex, and the
 * outbox and inbox tables every store carries.
 *
 * Threads: each store has one connection and one mutex. Every access to the
 * connection happens with the mutex held: store_begin..commit/rollback, or
 * store_lock..unlock. The outbox condition variable uses its own small mutex
 * so that the relay can sleep without holding the store.
 */
#include "store/store.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/err.h"
#include "core/log.h"
#include "core/util.h"

#define STMT_CACHE 48

struct stmt_slot {
	const char *sql; /* the caller's literal: the cache key */
	sqlite3_stmt *stmt;
};

struct store {
	sqlite3 *db;
	pthread_mutex_t mtx;
	char *name;
	char *path;
	struct stmt_slot cache[STMT_CACHE];
	size_t ncache;
	/* relay wake-up */
	pthread_mutex_t wmtx;
	pthread_cond_t wcv;
	unsigned wake;
};

/*
 * The outbox and inbox: part of every store, created before the module's
 * own migrations (they are not versioned with them; CREATE IF NOT EXISTS
 * keeps it idempotent).
 */
static const char base_schema[] =
    "CREATE TABLE IF NOT EXISTS outbox ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT NOT NULL UNIQUE,"
    " type TEXT NOT NULL,"
    " payload BLOB NOT NULL,"
    " traceparent TEXT,"
    " occurred_ms INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " sent_ms INTEGER,"
    " dead_reason TEXT);"
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(sent_ms, seq);"
    "CREATE TABLE IF NOT EXISTS inbox ("
    " id TEXT PRIMARY KEY,"
    " type TEXT NOT NULL,"
    " handled_ms INTEGER NOT NULL) WITHOUT ROWID;";

int
store_err(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return MS_EBUSY;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return MS_ECORRUPT;
	case SQLITE_CONSTRAINT:
		return MS_EEXIST;
	case SQLITE_FULL:
	case SQLITE_IOERR:
	case SQLITE_CANTOPEN:
	case SQLITE_READONLY:
		return MS_EIO;
	case SQLITE_NOMEM:
		return MS_ENOMEM;
	default:
		return MS_EDB;
	}
}

static int
mkdir_p(const char *dir)
{
	char buf[4096];
	size_t n = ms_strlcpy(buf, dir, sizeof(buf));

	if (n >= sizeof(buf)) {
		return MS_EINVAL;
	}
	for (char *p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
				return -errno;
			}
			*p = '/';
		}
	}
	if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
		return -errno;
	}
	return 0;
}

static int
exec_locked(struct store *st, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		MS_ERROR("store", "%s: %s", st->name,
		         msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return store_err(rc) ? store_err(rc) : MS_EDB;
	}
	return 0;
}

static int
user_version(struct store *st, int *out)
{
	sqlite3_stmt *s;
	int rc =
	    sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL);

	if (rc != SQLITE_OK) {
		return store_err(rc);
	}
	rc = sqlite3_step(s);
	*out = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : store_err(rc);
}

static int
migrate(struct store *st, const struct store_migration *migs, size_t n)
{
	int have;
	int rc = user_version(st, &have);

	if (rc != 0) {
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		char pragma[64];

		assert(migs[i].version == (int)i + 1);
		if (migs[i].version <= have) {
			continue;
		}
		if ((rc = exec_locked(st, "BEGIN IMMEDIATE")) != 0) {
			return rc;
		}
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d",
		         migs[i].version);
		if ((rc = exec_locked(st, migs[i].sql)) != 0 ||
		    (rc = exec_locked(st, pragma)) != 0) {
			MS_ERROR("store", "%s: migration to version %d failed",
			         st->name, migs[i].version);
			exec_locked(st, "ROLLBACK");
			return MS_EDB;
		}
		if ((rc = exec_locked(st, "COMMIT")) != 0) {
			exec_locked(st, "ROLLBACK");
			return rc;
		}
		MS_INFO("store", "%s: migrated to schema version %d", st->name,
		        migs[i].version);
	}
	if (have > (int)n) {
		MS_ERROR("store",
		         "%s: database schema version %d is newer than this "
		         "build knows (%zu)",
		         st->name, have, n);
		return MS_EDB;
	}
	return 0;
}

int
store_open(struct store **out, const char *dir, const char *name,
           const struct store_migration *migs, size_t nmigs,
           const struct store_opts *opts)
{
	struct store *st;
	char sql[128];
	int rc;
	int busy =
	    opts && opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 5000;

	*out = NULL;
	if ((rc = mkdir_p(dir)) != 0) {
		MS_ERROR("store", "cannot create data directory %s: %s", dir,
		         ms_strerror(rc));
		return MS_EIO;
	}
	if ((st = calloc(1, sizeof(*st))) == NULL) {
		return MS_ENOMEM;
	}
	pthread_mutex_init(&st->mtx, NULL);
	pthread_mutex_init(&st->wmtx, NULL);
	pthread_cond_init(&st->wcv, NULL);
	st->name = strdup(name);
	if (st->name == NULL ||
	    asprintf(&st->path, "%s/%s.db", dir, name) < 0) {
		st->path = NULL;
		store_close(st);
		return MS_ENOMEM;
	}
	rc = sqlite3_open_v2(st->path, &st->db,
	                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	                         SQLITE_OPEN_NOMUTEX,
	                     NULL);
	if (rc != SQLITE_OK) {
		MS_ERROR("store", "cannot open %s: %s", st->path,
		         st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		store_close(st);
		return MS_EIO;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, busy);
	/*
	 * wal_autocheckpoint 4000 pages (16 MiB of WAL) rather than 1000:
	 * the checkpoint runs inside whichever commit crosses the mark, with
	 * the store locked, and under checkout load it took ~20% of the CPU
	 * (page writes and two fdatasyncs each time). Checkpointing 4x less
	 * often writes each hot page (outbox, carts, indexes) once for many
	 * commits; dev-mode orders/s went up ~40% (bench/README.md, 4).
	 */
	snprintf(sql, sizeof(sql),
	         "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;"
	         " PRAGMA foreign_keys=ON; PRAGMA wal_autocheckpoint=4000;",
	         opts && opts->sync_full ? "FULL" : "NORMAL");
	if ((rc = exec_locked(st, sql)) != 0 ||
	    (rc = exec_locked(st, base_schema)) != 0 ||
	    (rc = migrate(st, migs, nmigs)) != 0) {
		MS_ERROR("store", "cannot prepare %s: %s", st->path,
		         ms_strerror(rc));
		store_close(st);
		return rc == MS_ECORRUPT ? MS_ECORRUPT
		       : rc == MS_EIO    ? MS_EIO
		                         : MS_EDB;
	}
	MS_INFO("store", "%s: opened %s", name, st->path);
	*out = st;
	return 0;
}

void
store_close(struct store *st)
{
	if (st == NULL) {
		return;
	}
	for (size_t i = 0; i < st->ncache; i++) {
		sqlite3_finalize(st->cache[i].stmt);
	}
	if (st->db) {
		sqlite3_close_v2(st->db);
	}
	pthread_cond_destroy(&st->wcv);
	pthread_mutex_destroy(&st->wmtx);
	pthread_mutex_destroy(&st->mtx);
	free(st->name);
	free(st->path);
	free(st);
}

const char *
store_name(const struct store *st)
{
	return st->name;
}

const char *
store_path(const struct store *st)
{
	return st->path;
}

sqlite3 *
store_db(struct store *st)
{
	return st->db;
}

void
store_lock(struct store *st)
{
	pthread_mutex_lock(&st->mtx);
}

void
store_unlock(struct store *st)
{
	pthread_mutex_unlock(&st->mtx);
}

int
store_begin(struct store *st)
{
	int rc;

	pthread_mutex_lock(&st->mtx);
	if ((rc = exec_locked(st, "BEGIN IMMEDIATE")) != 0) {
		pthread_mutex_unlock(&st->mtx);
	}
	return rc;
}

int
store_commit(struct store *st)
{
	int rc = exec_locked(st, "COMMIT");

	if (rc != 0 && !sqlite3_get_autocommit(st->db)) {
		exec_locked(st, "ROLLBACK");
	}
	pthread_mutex_unlock(&st->mtx);
	return rc;
}

void
store_rollback(struct store *st)
{
	if (!sqlite3_get_autocommit(st->db)) {
		exec_locked(st, "ROLLBACK");
	}
	pthread_mutex_unlock(&st->mtx);
}

/* One cached statement each: a batch takes a step per event. */
static const char savepoint_sql[] = "SAVEPOINT ms_step";
static const char release_sql[] = "RELEASE ms_step";
static const char rollback_to_sql[] = "ROLLBACK TO ms_step";

static int
step_stmt(struct store *st, const char *sql)
{
	sqlite3_stmt *s = store_prepare(st, sql);
	int rc;

	if (s == NULL) {
		return MS_EDB;
	}
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		MS_ERROR("store", "%s: %s: %s", st->name, sql,
		         sqlite3_errmsg(st->db));
		return store_err(rc) ? store_err(rc) : MS_EDB;
	}
	return 0;
}

int
store_savepoint(struct store *st)
{
	/* Outside a transaction SAVEPOINT would begin one of its own. */
	if (sqlite3_get_autocommit(st->db)) {
		return MS_EDB;
	}
	return step_stmt(st, savepoint_sql);
}

int
store_release(struct store *st)
{
	return step_stmt(st, release_sql);
}

void
store_rollback_to(struct store *st)
{
	/* ROLLBACK TO keeps the savepoint open: release it too. Both fail
	 * harmlessly when SQLite already rolled the transaction back. */
	if (sqlite3_get_autocommit(st->db)) {
		return;
	}
	if (step_stmt(st, rollback_to_sql) == 0) {
		step_stmt(st, release_sql);
	}
}

sqlite3_stmt *
store_prepare(struct store *st, const char *sql)
{
	sqlite3_stmt *s;
	int rc;

	for (size_t i = 0; i < st->ncache; i++) {
		if (st->cache[i].sql == sql) {
			s = st->cache[i].stmt;
			sqlite3_reset(s);
			sqlite3_clear_bindings(s);
			return s;
		}
	}
	rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s,
	                        NULL);
	if (rc != SQLITE_OK) {
		MS_ERROR("store", "%s: cannot prepare \"%s\": %s", st->name,
		         sql, sqlite3_errmsg(st->db));
		return NULL;
	}
	if (st->ncache < STMT_CACHE) {
		st->cache[st->ncache].sql = sql;
		st->cache[st->ncache].stmt = s;
		st->ncache++;
	} else {
		/* Programmer error: raise STMT_CACHE. */
		assert(!"statement cache full");
		sqlite3_finalize(s);
		return NULL;
	}
	return s;
}

int
store_exec(struct store *st, const char *sql)
{
	return exec_locked(st, sql);
}

int
store_integrity_check(struct store *st)
{
	sqlite3_stmt *s;
	int rc;
	int ok = 0;

	store_lock(st);
	rc = sqlite3_prepare_v2(st->db, "PRAGMA integrity_check", -1, &s, NULL);
	if (rc == SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW) {
			const unsigned char *t = sqlite3_column_text(s, 0);
			ok = t && strcmp((const char *)t, "ok") == 0;
		}
		sqlite3_finalize(s);
	}
	store_unlock(st);
	return ok ? 0 : MS_ECORRUPT;
}

/* ---- outbox ----------------------------------------------------------- */

int
store_outbox_add(struct store *st, const char *id, const char *type,
                 const void *payload, size_t len, const char *traceparent,
                 int64_t occurred_ms)
{
	sqlite3_stmt *s = store_prepare(
	    st, "INSERT INTO outbox(id, type, payload, traceparent,"
	        " occurred_ms) VALUES(?1, ?2, ?3, ?4, ?5)");
	int rc;

	if (s == NULL) {
		return MS_EDB;
	}
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, type, -1, SQLITE_STATIC);
	/* A zero-length blob must still be non-NULL for the NOT NULL. */
	sqlite3_bind_blob64(s, 3, len ? payload : "", len, SQLITE_STATIC);
	if (traceparent) {
		sqlite3_bind_text(s, 4, traceparent, -1, SQLITE_STATIC);
	}
	sqlite3_bind_int64(s, 5, occurred_ms);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : store_err(rc);
}

void
store_outbox_row_fini(struct store_outbox_row *row)
{
	free(row->type);
	free(row->payload);
	free(row->traceparent);
	memset(row, 0, sizeof(*row));
}

static char *
col_strdup(sqlite3_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s, col);

	return t ? strdup((const char *)t) : NULL;
}

int
store_outbox_fetch(struct store *st, int64_t after,
                   struct store_outbox_row *rows, size_t max, size_t *n)
{
	sqlite3_stmt *s;
	int rc = 0;
	int step;

	*n = 0;
	store_lock(st);
	s = store_prepare(st, "SELECT seq, id, type, payload, traceparent,"
	                      " occurred_ms, attempts FROM outbox"
	                      " WHERE sent_ms IS NULL AND seq > ?1"
	                      " ORDER BY seq LIMIT ?2");
	if (s == NULL) {
		store_unlock(st);
		return MS_EDB;
	}
	sqlite3_bind_int64(s, 1, after);
	sqlite3_bind_int64(s, 2, (int64_t)max);
	while (*n < max && (step = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_outbox_row *r = &rows[*n];
		const void *blob = sqlite3_column_blob(s, 3);
		size_t len = (size_t)sqlite3_column_bytes(s, 3);

		memset(r, 0, sizeof(*r));
		r->seq = sqlite3_column_int64(s, 0);
		ms_strlcpy(r->id, (const char *)sqlite3_column_text(s, 1),
		           sizeof(r->id));
		r->type = col_strdup(s, 2);
		r->payload = malloc(len ? len : 1);
		if (r->payload && len) {
			memcpy(r->payload, blob, len);
		}
		r->len = len;
		r->traceparent = col_strdup(s, 4);
		r->occurred_ms = sqlite3_column_int64(s, 5);
		r->attempts = (unsigned)sqlite3_column_int(s, 6);
		if (r->type == NULL || r->payload == NULL) {
			store_outbox_row_fini(r);
			rc = MS_ENOMEM;
			break;
		}
		(*n)++;
	}
	if (rc == 0 && *n < max && step != SQLITE_DONE) {
		rc = store_err(step);
	}
	sqlite3_reset(s);
	store_unlock(st);
	if (rc != 0) {
		for (size_t i = 0; i < *n; i++) {
			store_outbox_row_fini(&rows[i]);
		}
		*n = 0;
	}
	return rc;
}

static int
outbox_update(struct store *st, const char *sql, int64_t seq, int64_t now)
{
	sqlite3_stmt *s;
	int rc;

	store_lock(st);
	if ((s = store_prepare(st, sql)) == NULL) {
		store_unlock(st);
		return MS_EDB;
	}
	sqlite3_bind_int64(s, 1, seq);
	if (now) {
		sqlite3_bind_int64(s, 2, now);
	}
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	store_unlock(st);
	return rc == SQLITE_DONE ? 0 : store_err(rc);
}

/* One text for both, so that both use one cached statement. A sent
 * event's payload is emptied: nothing reads it again, and a checkout
 * event's holds card data (number, CVV) that must not outlive the hand-over
 * (issue 8); the row itself (id, type, times) stays until pruned. */
static const char mark_sent_sql[] =
    "UPDATE outbox SET sent_ms = ?2, payload = x'' WHERE seq = ?1";

int
store_outbox_mark_sent(struct store *st, int64_t seq)
{
	return outbox_update(st, mark_sent_sql, seq, ms_wall_ms());
}

int
store_outbox_mark_sent_many(struct store *st, const int64_t *seqs, size_t n)
{
	sqlite3_stmt *s;
	int64_t now = ms_wall_ms();
	int rc;

	if (n == 0) {
		return 0;
	}
	if ((rc = store_begin(st)) != 0) {
		return rc;
	}
	if ((s = store_prepare(st, mark_sent_sql)) == NULL) {
		store_rollback(st);
		return MS_EDB;
	}
	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_int64(s, 1, seqs[i]);
		sqlite3_bind_int64(s, 2, now);
		rc = sqlite3_step(s);
		sqlite3_reset(s);
		if (rc != SQLITE_DONE) {
			store_rollback(st);
			return store_err(rc);
		}
	}
	return store_commit(st);
}

int
store_outbox_mark_failed(struct store *st, int64_t seq)
{
	return outbox_update(
	    st, "UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?1", seq,
	    0);
}

int
store_outbox_mark_dead(struct store *st, int64_t seq, const char *reason)
{
	sqlite3_stmt *s;
	int rc;

	store_lock(st);
	s = store_prepare(st,
	                  "UPDATE outbox SET sent_ms = ?2, dead_reason = ?3,"
	                  " attempts = attempts + 1 WHERE seq = ?1");
	if (s == NULL) {
		store_unlock(st);
		return MS_EDB;
	}
	sqlite3_bind_int64(s, 1, seq);
	sqlite3_bind_int64(s, 2, ms_wall_ms());
	sqlite3_bind_text(s, 3, reason, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	store_unlock(st);
	return rc == SQLITE_DONE ? 0 : store_err(rc);
}

int
store_outbox_depth(struct store *st, int64_t *count, int64_t *oldest_ms)
{
	sqlite3_stmt *s;
	int rc;

	*count = 0;
	*oldest_ms = 0;
	store_lock(st);
	s = store_prepare(st, "SELECT count(*), min(occurred_ms) FROM outbox"
	                      " WHERE sent_ms IS NULL");
	if (s == NULL) {
		store_unlock(st);
		return MS_EDB;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*count = sqlite3_column_int64(s, 0);
		*oldest_ms = sqlite3_column_int64(s, 1);
	}
	sqlite3_reset(s);
	store_unlock(st);
	return rc == SQLITE_ROW ? 0 : store_err(rc);
}

int
store_outbox_prune(struct store *st, int64_t older_than_ms)
{
	sqlite3_stmt *s;
	int rc;

	store_lock(st);
	/* Dead rows are kept for an operator; only delivered ones go. */
	s = store_prepare(st, "DELETE FROM outbox WHERE sent_ms IS NOT NULL"
	                      " AND dead_reason IS NULL AND sent_ms < ?1");
	if (s == NULL) {
		store_unlock(st);
		return MS_EDB;
	}
	sqlite3_bind_int64(s, 1, older_than_ms);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	store_unlock(st);
	return rc == SQLITE_DONE ? 0 : store_err(rc);
}

void
store_outbox_wait(struct store *st, int timeout_ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&st->wmtx);
	while (st->wake == 0) {
		if (pthread_cond_timedwait(&st->wcv, &st->wmtx, &ts) ==
		    ETIMEDOUT) {
			break;
		}
	}
	st->wake = 0;
	pthread_mutex_unlock(&st->wmtx);
}

void
store_outbox_notify(struct store *st)
{
	pthread_mutex_lock(&st->wmtx);
	st->wake++;
	pthread_cond_broadcast(&st->wcv);
	pthread_mutex_unlock(&st->wmtx);
}

/* ---- inbox ------------------------------------------------------------ */

int
store_inbox_claim(struct store *st, const char *id, const char *type)
{
	sqlite3_stmt *s = store_prepare(
	    st, "INSERT OR IGNORE INTO inbox(id, type, handled_ms)"
	        " VALUES(?1, ?2, ?3)");
	int rc;

	if (s == NULL) {
		return MS_EDB;
	}
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, type ? type : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, ms_wall_ms());
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		return store_err(rc);
	}
	return sqlite3_changes(st->db) == 1 ? 0 : MS_EEXIST;
}

bool
store_inbox_seen(struct store *st, const char *id)
{
	sqlite3_stmt *s;
	bool seen = false;

	store_lock(st);
	s = store_prepare(st, "SELECT 1 FROM inbox WHERE id = ?1");
	if (s != NULL) {
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		seen = sqlite3_step(s) == SQLITE_ROW;
		sqlite3_reset(s);
	}
	store_unlock(st);
	return seen;
}
