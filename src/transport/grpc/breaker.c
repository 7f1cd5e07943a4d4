/* SPDX-License-Identifier: MIT */
/*
 * The client's resilience arithmetic: a circuit breaker per endpoint and
 * exponential backoff with full jitter. Both are pure: no clock, no random
 * source and no locks of their own. The caller passes the time and the
 * random value, so tests drive them step by step, and keeps each breaker on
 * one thread (the client's loop thread) or under its own lock.
 */
#include "transport/grpc/breaker.h"

#include <assert.h>
#include <limits.h>
#include <stddef.h>

void
tp_grpc_breaker_init(struct tp_grpc_breaker *b, int threshold, int open_ms)
{
	assert(b != NULL);
	assert(threshold >= 1 && open_ms >= 0);
	b->threshold = threshold;
	b->open_ms = open_ms;
	b->state = TP_GRPC_BREAKER_CLOSED;
	b->failures = 0;
	b->open_until = 0;
	b->probe_out = false;
}

/* trip opens the breaker for a fresh open_ms from |now_ms|. */
static void
trip(struct tp_grpc_breaker *b, int64_t now_ms)
{
	b->state = TP_GRPC_BREAKER_OPEN;
	b->open_until = now_ms + b->open_ms;
	b->probe_out = false;
}

/* probe lets one call through as the probe. */
static bool
probe(struct tp_grpc_breaker *b, int64_t now_ms)
{
	b->state = TP_GRPC_BREAKER_HALF_OPEN;
	b->probe_out = true;
	/* The probe's lease: see tp_grpc_breaker_allow in breaker.h. */
	b->open_until = now_ms + b->open_ms;
	return true;
}

bool
tp_grpc_breaker_allow(struct tp_grpc_breaker *b, int64_t now_ms)
{
	assert(b != NULL);
	switch (b->state) {
	case TP_GRPC_BREAKER_CLOSED:
		return true;
	case TP_GRPC_BREAKER_OPEN:
		if (now_ms < b->open_until)
			return false;
		return probe(b, now_ms);
	case TP_GRPC_BREAKER_HALF_OPEN:
		/*
		 * A probe whose outcome never comes back (the caller dropped
		 * the call, a bug lost it) must not wedge the breaker
		 * half-open forever: once its lease ran out, another call may
		 * probe. While the lease runs, everyone else fails fast.
		 */
		if (b->probe_out && now_ms < b->open_until)
			return false;
		return probe(b, now_ms);
	}
	assert(!"bad breaker state");
	return false;
}

void
tp_grpc_breaker_success(struct tp_grpc_breaker *b)
{
	assert(b != NULL);
	/* Any answer proves the endpoint works, even a late one from a call
	 * that went out before the breaker opened. */
	b->state = TP_GRPC_BREAKER_CLOSED;
	b->failures = 0;
	b->open_until = 0;
	b->probe_out = false;
}

void
tp_grpc_breaker_failure(struct tp_grpc_breaker *b, int64_t now_ms)
{
	assert(b != NULL);
	if (b->failures < INT_MAX)
		b->failures++;
	switch (b->state) {
	case TP_GRPC_BREAKER_CLOSED:
		if (b->failures >= b->threshold)
			trip(b, now_ms);
		break;
	case TP_GRPC_BREAKER_OPEN:
		/* Stragglers sent before the breaker opened: they tell us
		 * nothing new, and must not push the probe further away. */
		break;
	case TP_GRPC_BREAKER_HALF_OPEN:
		/* We cannot tell the probe from a straggler; either way the
		 * endpoint just failed, so re-open (the cautious choice). */
		trip(b, now_ms);
		break;
	}
}

void
tp_grpc_breaker_release(struct tp_grpc_breaker *b)
{
	assert(b != NULL);
	if (b->state == TP_GRPC_BREAKER_HALF_OPEN)
		b->probe_out = false;
}

const char *
tp_grpc_breaker_state_name(enum tp_grpc_breaker_state s)
{
	switch (s) {
	case TP_GRPC_BREAKER_CLOSED:
		return "closed";
	case TP_GRPC_BREAKER_OPEN:
		return "open";
	case TP_GRPC_BREAKER_HALF_OPEN:
		return "half-open";
	}
	return "unknown";
}

int64_t
tp_grpc_backoff_ms(int attempt, int base_ms, int max_ms, uint32_t rnd)
{
	int64_t cap = base_ms;

	assert(attempt >= 1 && base_ms >= 0 && max_ms >= 0);
	/*
	 * base * 2^(attempt-1), doubling in int64 and stopping at max: with
	 * base >= 1 the loop ends after at most 32 rounds (2^31 > INT_MAX >=
	 * max), whatever |attempt| is; with base 0 it stops at the bound.
	 */
	for (int i = 1; i < attempt && i <= 32 && cap < max_ms; i++)
		cap *= 2;
	if (cap > max_ms)
		cap = max_ms;
	/*
	 * Uniform in [0, cap], both ends included: multiply-shift maps rnd 0
	 * to 0 and UINT32_MAX to cap exactly (cap + 1 <= 2^31), without the
	 * bias of a modulo. The product stays below 2^63.
	 */
	return (int64_t)(((uint64_t)rnd * (uint64_t)(cap + 1)) >> 32);
}
