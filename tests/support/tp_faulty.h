/* SPDX-License-Identifier: MIT */
/*
 * A fault-injecting transport for tests (SQLite's test VFS, nghttp2's
 * failmalloc): it wraps another transport and forwards every op to it,
 * except where a test asked it to fail one, delay one or drop the
 * connection. The bus creates it for URLs "faulty+<inner URL>":
 * "faulty+grpc://127.0.0.1:5000", "faulty+nng+tcp://…", "faulty+amqp://…",
 * "faulty+local://" (the in-process transport of the same bus). It serves
 * nothing (no listener): it sits on the calling / publishing side.
 *
 * It also checks the callback rule on the wrapped transport: each op it
 * forwards is given to the inner transport as a shadow with its own
 * completion, so an inner transport that completes an op twice is counted
 * (|twice|) instead of corrupting the caller, and a test can assert after
 * bus_stop that every accepted op completed exactly once.
 *
 * Not part of monoshop: it lives in tests/support and is registered with
 * bus_transport_register() by the tests that use it.
 *
 * Threads: the control functions may be called from any thread; they take
 * effect for ops that start afterwards. Delayed ops run on the wrapper's
 * own timer thread.
 */
#ifndef MS_TESTS_SUPPORT_TP_FAULTY_H
#define MS_TESTS_SUPPORT_TP_FAULTY_H

#include <stdbool.h>

struct bus;
struct bus_transport;

#define TP_FAULTY_PREFIX "faulty+"

/* The two kinds of op a test can steer. */
enum tp_faulty_op {
	TP_FAULTY_CALL,
	TP_FAULTY_PUBLISH,
};

/* How an injected failure surfaces (both are allowed by the callback
 * rule): returned by the op, which then never completes, or returned as 0
 * and completed (inline) with the code. */
enum tp_faulty_how {
	TP_FAULTY_RETURN,
	TP_FAULTY_COMPLETE,
};

struct tp_faulty_stats {
	unsigned started;   /* ops accepted (returned 0): each must complete */
	unsigned forwarded; /* of those, handed to the inner transport */
	unsigned injected;  /* ops failed on purpose, either way */
	unsigned completed; /* completions passed up to the caller */
	unsigned twice;     /* inner completions of an op already completed */
};

/* tp_faulty_register adds the wrapper to the transport registry; call it
 * before creating a bus. Returns 0 (also when already registered) or
 * MS_EFULL. */
int tp_faulty_register(void);

/* tp_faulty_of returns the wrapper instance |bus| made for |url| (the
 * "faulty+…" value as configured), or NULL when there is none or it is not
 * a wrapper. After bus_start; valid until bus_destroy. */
struct bus_transport *tp_faulty_of(struct bus *bus, const char *url);

/*
 * tp_faulty_fail makes the |nth| op of kind |op| from now (1 = the next
 * one) fail with |rc| (a negative MS_E* code), surfacing as |how|. Once:
 * the ops after it are forwarded again. |nth| 0 disarms.
 */
void tp_faulty_fail(struct bus_transport *t, enum tp_faulty_op op, unsigned nth,
                    int rc, enum tp_faulty_how how);

/*
 * tp_faulty_delay holds every op of kind |op| |forward_ms| before handing
 * it to the inner transport (so a deadline can pass in transit), and its
 * completion |complete_ms| before passing it up. 0, 0 clears. A held op
 * whose wrapper stops is completed with MS_ECLOSED, never forwarded.
 */
void tp_faulty_delay(struct bus_transport *t, enum tp_faulty_op op,
                     int forward_ms, int complete_ms);

/*
 * tp_faulty_drop drops the connection: it stops the inner transport, which
 * completes what it had in flight (with MS_ECLOSED) and closes its
 * connections, and from then on every op completes with |rc| (e.g.
 * MS_EUNAVAIL) without reaching it, until tp_faulty_restore. Blocks while
 * an op is being handed to the inner transport.
 */
void tp_faulty_drop(struct bus_transport *t, int rc);

/* tp_faulty_restore starts a fresh inner transport (init + start: it
 * reconnects) and forwards again. Returns 0 or the inner's init / start
 * error (then ops still fail with the drop's code). */
int tp_faulty_restore(struct bus_transport *t);

/* tp_faulty_stats copies the counters of kind |op|. */
void tp_faulty_stats(struct bus_transport *t, enum tp_faulty_op op,
                     struct tp_faulty_stats *out);

#endif
