/* SPDX-License-Identifier: MIT */
/*
 * Health checks: a registry of named checks (one per hosted module, its
 * database, each remote module, the broker) that /health runs and reports
 * in the AspNetCore.HealthChecks UI shape.
 *
 * Threads: register before serving; ms_health_run may be called from any
 * thread and calls each check on the calling thread.
 */
#ifndef MS_CORE_HEALTH_H
#define MS_CORE_HEALTH_H

#include <stddef.h>

#define MS_HEALTH_MAX_CHECKS 32

/*
 * A check returns 0 when healthy, or a negative MS_E* code with a short
 * reason in |desc| (|desclen| bytes) when not. It must not block for long
 * (it is called on a request thread): report the last known state.
 */
typedef int (*ms_health_fn)(void *arg, char *desc, size_t desclen);

struct ms_health_result {
	const char *name;  /* the registered name */
	const char *tags;  /* e.g. "module", "database", "remote" */
	int rc;            /* 0 healthy or MS_E* */
	char desc[160];    /* reason when unhealthy, or a short note */
	double duration_s; /* time the check took */
};

/* ms_health_register adds a check; |name| and |tags| must outlive it.
 * Returns 0 or MS_EFULL. */
int ms_health_register(const char *name, const char *tags, ms_health_fn fn,
                       void *arg);

/* ms_health_unregister removes every check registered with |arg|. */
void ms_health_unregister(void *arg);

/*
 * ms_health_run runs every check into |out| (|max| entries) and returns the
 * number written; *healthy is set to 1 when every check passed.
 */
size_t ms_health_run(struct ms_health_result *out, size_t max, int *healthy);

#endif
