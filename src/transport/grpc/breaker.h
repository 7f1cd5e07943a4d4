/* SPDX-License-Identifier: MIT */
/*
 * Client resilience as pure state machines (no clock of their own: the
 * caller passes now, so tests drive time): a circuit breaker per endpoint
 * and exponential backoff with full jitter.
 */
#ifndef MS_TRANSPORT_GRPC_BREAKER_H
#define MS_TRANSPORT_GRPC_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

enum tp_grpc_breaker_state {
	TP_GRPC_BREAKER_CLOSED = 0,   /* calls flow */
	TP_GRPC_BREAKER_OPEN = 1,     /* calls fail fast until open_until */
	TP_GRPC_BREAKER_HALF_OPEN = 2 /* one probe call in flight */
};

struct tp_grpc_breaker {
	int threshold; /* consecutive failures to open */
	int open_ms;   /* how long it stays open */
	enum tp_grpc_breaker_state state;
	int failures;       /* consecutive failures */
	int64_t open_until; /* ms, when OPEN */
	bool probe_out;     /* HALF_OPEN: the probe is in flight */
};

void tp_grpc_breaker_init(struct tp_grpc_breaker *b, int threshold,
                          int open_ms);

/*
 * tp_grpc_breaker_allow asks whether a call may go out at |now_ms|. CLOSED:
 * yes. OPEN: no until open_until; then it turns HALF_OPEN and lets exactly
 * one probe through (this call). HALF_OPEN with the probe out: no.
 * The probe holds a lease of open_ms (open_until is moved to now + open_ms
 * when it goes out): if neither success, failure nor release has been
 * recorded when the lease ends, the probe counts as lost and the next
 * allow() sends a new one, so a dropped probe cannot wedge the breaker.
 */
bool tp_grpc_breaker_allow(struct tp_grpc_breaker *b, int64_t now_ms);

/* tp_grpc_breaker_success records a call that reached the server and got an
 * answer (any gRPC status the server chose is a success for the breaker:
 * NOT_FOUND is the service working). Closes the breaker. */
void tp_grpc_breaker_success(struct tp_grpc_breaker *b);

/* tp_grpc_breaker_failure records a transport failure (cannot connect,
 * UNAVAILABLE, deadline with no answer). Opens after |threshold|
 * consecutive ones; a failed probe re-opens at once. */
void tp_grpc_breaker_failure(struct tp_grpc_breaker *b, int64_t now_ms);

/* tp_grpc_breaker_release records that a call allow() let through ended
 * without telling anything about the endpoint (cancelled by its caller
 * before an answer, or never sent). In HALF_OPEN it frees the probe slot,
 * so the next allow() probes at once; otherwise it does nothing. */
void tp_grpc_breaker_release(struct tp_grpc_breaker *b);

/* tp_grpc_breaker_state_name returns "closed", "open" or "half-open". */
const char *tp_grpc_breaker_state_name(enum tp_grpc_breaker_state s);

/*
 * tp_grpc_backoff_ms returns the wait before retry |attempt| (1 = the
 * first retry): random in [0, min(base * 2^(attempt-1), max)] ("full
 * jitter"), with |rnd| a uniform random 32-bit value from the caller
 * (rnd 0 gives 0, UINT32_MAX gives the cap). attempt >= 1, base_ms >= 0
 * and max_ms >= 0 are the caller's to ensure (asserted); any attempt, even
 * INT_MAX, is safe from overflow.
 */
int64_t tp_grpc_backoff_ms(int attempt, int base_ms, int max_ms, uint32_t rnd);

#endif
