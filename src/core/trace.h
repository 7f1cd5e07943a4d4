/* SPDX-License-Identifier: MIT */
/*
 * The current trace context (W3C Trace Context, `traceparent`) of the
 * calling thread, so that one checkout's trace id can be followed through
 * every process it touched: each edge (the REST server for a request, the
 * gRPC server for a call, the bus for an event it delivers) makes the
 * context of the work it runs current, and clears it after; the bus sends a
 * child of it with every call; Basket records a child of it with every
 * event; the logger prefixes every line written while one is current with
 * `trace=<trace id>`.
 *
 * The form is version 00: "00-<32 hex trace id>-<16 hex parent id>-<2 hex
 * flags>", lower case, neither id all zeros. A later version is accepted
 * as the W3C rule says (its first 55 characters read as version 00, then
 * '-' or the end) and made version 00 here; version ff is invalid.
 *
 * Threads: the current context is thread local: a thread sees only what it
 * set itself. Every other function is pure.
 */
#ifndef MS_CORE_TRACE_H
#define MS_CORE_TRACE_H

#include <stdbool.h>
#include <stddef.h>

#define MS_TRACEPARENT_LEN  55 /* "00-" 32 "-" 16 "-" 2 */
#define MS_TRACEPARENT_SIZE (MS_TRACEPARENT_LEN + 1)
#define MS_TRACE_ID_LEN     32
#define MS_TRACE_ID_SIZE    (MS_TRACE_ID_LEN + 1)

/*
 * ms_trace_parse validates |s| and writes its version 00 form to |out|.
 * Returns 0, or MS_EINVAL (NULL, malformed, upper-case hex, an all-zero
 * id, version ff); |out| is then "".
 */
int ms_trace_parse(const char *s, char out[MS_TRACEPARENT_SIZE]);

/* ms_trace_new_root writes a new trace (random ids, flags 01) to |out| and
 * returns |out|. */
char *ms_trace_new_root(char out[MS_TRACEPARENT_SIZE]);

/*
 * ms_trace_new_child writes to |out| a child of |parent|: the same trace id
 * and flags, a new parent id (the span of the work about to start). With
 * |parent| NULL, a child of the current context. When there is no valid
 * parent, a new root. Returns |out|.
 */
char *ms_trace_new_child(const char *parent, char out[MS_TRACEPARENT_SIZE]);

/*
 * ms_trace_set makes |traceparent| the calling thread's current context.
 * Returns 0, or MS_EINVAL when it is not valid: then the current context
 * is cleared (work must not be logged under a trace it is not part of).
 */
int ms_trace_set(const char *traceparent);

/*
 * ms_trace_begin is what an edge calls for the work it is about to run:
 * |traceparent| (from the wire) becomes current when valid, a new root
 * otherwise. Returns the current context (thread-local storage, valid until
 * the next set/begin/clear on this thread).
 */
const char *ms_trace_begin(const char *traceparent);

/* ms_trace_get returns the current context, or NULL when there is none.
 * The string lives in thread-local storage until the next set/clear. */
const char *ms_trace_get(void);

/* ms_trace_id returns the current trace id (32 hex), or NULL. Same
 * storage and lifetime as ms_trace_get's. */
const char *ms_trace_id(void);

/* ms_trace_clear forgets the current context. */
void ms_trace_clear(void);

/*
 * ms_trace_save copies the current context to |saved| ("" when none), for
 * code that sets one for a nested piece of work (the bus, running a local
 * call on its caller's thread) and must put the caller's back after with
 * ms_trace_restore(saved).
 */
void ms_trace_save(char saved[MS_TRACEPARENT_SIZE]);
void ms_trace_restore(const char saved[MS_TRACEPARENT_SIZE]);

#endif
