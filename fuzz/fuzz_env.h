/* SPDX-License-Identifier: MIT */
/*
 * What the libFuzzer targets share: the whole application without its
 * listeners (a real bus with the three modules, each with its SQLite
 * database in a temporary directory, and the REST router they registered),
 * a way to run one REST request through the router and its handler as the
 * HTTP edge would (src/http/server.c: finish), and the oracles every target
 * applies on top of the sanitizers.
 *
 * The oracle: "bad input gets a clear error and never crashes" (issue 8),
 * so an answer that says the server itself failed (HTTP 500: MS_EINTERNAL,
 * MS_EDB, MS_EIO, MS_ECORRUPT, or a code that is not ours), a handler
 * status outside 100..599, or a body that cannot be written is a finding:
 * fz_fail() aborts, and libFuzzer saves the input.
 *
 * Threads: one, libFuzzer's (the bus's own threads aside). The databases
 * grow with every input that writes; fz_env_tick() starts a fresh
 * environment in a new directory every FZ_RECYCLE inputs to bound them.
 */
#ifndef MS_FUZZ_FUZZ_ENV_H
#define MS_FUZZ_FUZZ_ENV_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

struct bus;
struct http_router;
struct ms_config;

#define FZ_RECYCLE  5000
#define FZ_NMODULES 3

struct fz_env {
	char dir[256]; /* node.data_dir: $TMPDIR/monoshop-fuzz.XXXXXX */
	struct ms_config *cfg;
	struct bus *bus;
	struct http_router *router;
	void *states[FZ_NMODULES]; /* discount, ordering, basket */
	unsigned long uses;        /* inputs since it was made */
};

/* fz_quiet sets the log level to error: the modules log a line per order
 * otherwise. With FUZZ_VERBOSE set in the environment: debug, and the
 * metrics (what the inputs did) are printed at exit. */
void fz_quiet(void);

/* fz_env returns the environment, making it on first use and remaking it
 * every FZ_RECYCLE calls (a fresh directory; the old one is removed).
 * Aborts when it cannot be made: nothing can be fuzzed then. */
struct fz_env *fz_env_tick(void);

/* fz_fail prints "fuzz oracle: ..." and aborts. */
void fz_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* fz_check_rc fails when |rc| is an error that means the server broke
 * (its HTTP status is 500), naming |what|. */
void fz_check_rc(int rc, const char *what);

/*
 * fz_check_metric_label fails when a series of a metric whose name starts
 * with |prefix| has a |label| whose value is not one of |allowed|
 * (NULL-terminated): what a peer sends must never become a series of its
 * own (the table is bounded) nor reach the exposition text unchecked.
 */
void fz_check_metric_label(const char *prefix, const char *label,
                           const char *const *allowed);

/*
 * fz_rest runs |method| |path| (decoded, as the edge passes it) with
 * |query| (raw, may be NULL) and |len| bytes of |body| (may be NULL)
 * through the router and the route's handler, builds the JSON or
 * problem+json the edge would write, and applies the oracle. Returns the
 * HTTP status (404/405 when no route matched). With |out| non-NULL and a
 * 2xx answer, *out receives the response body (a new reference, or NULL).
 */
int fz_rest(enum http_method method, const char *path, const char *query,
            const char *body, size_t len, json_t **out);

/* fz_tmpdir makes $TMPDIR/monoshop-fuzz.XXXXXX into |out|; 0 or -errno.
 * fz_rmdir removes a directory tree. */
int fz_tmpdir(char *out, size_t len);
void fz_rmdir(const char *dir);

#endif
