/* SPDX-License-Identifier: MIT */
/*
 * Health checks (health.h): a small fixed registry of named checks that
 * GET /health runs, timing each one.
 *
 * Threads: |reg.lock| is a rwlock. ms_health_run holds it for reading
 * while the checks run, so several scrapes may run at once and
 * ms_health_unregister (a writer) waits for any run in progress: once it
 * returns, no check will be called with its |arg| again and the owner may
 * free it. A check therefore must not register or unregister checks.
 * Memory: names and tags belong to the caller and must outlive the
 * registration.
 */
#include <pthread.h>
#include <string.h>

#include "core/err.h"
#include "core/health.h"
#include "core/util.h"

struct check {
	const char *name;
	const char *tags;
	ms_health_fn fn;
	void *arg;
};

static struct {
	pthread_rwlock_t lock;
	struct check c[MS_HEALTH_MAX_CHECKS];
	size_t n;
} reg = {.lock = PTHREAD_RWLOCK_INITIALIZER};

int
ms_health_register(const char *name, const char *tags, ms_health_fn fn,
                   void *arg)
{
	int rc = 0;

	pthread_rwlock_wrlock(&reg.lock);
	if (reg.n == MS_HEALTH_MAX_CHECKS) {
		rc = MS_EFULL;
	} else {
		reg.c[reg.n++] = (struct check){
		    .name = name,
		    .tags = tags != NULL ? tags : "",
		    .fn = fn,
		    .arg = arg,
		};
	}
	pthread_rwlock_unlock(&reg.lock);
	return rc;
}

void
ms_health_unregister(void *arg)
{
	size_t o = 0;

	pthread_rwlock_wrlock(&reg.lock);
	for (size_t i = 0; i < reg.n; i++) {
		if (reg.c[i].arg != arg) {
			reg.c[o++] = reg.c[i];
		}
	}
	reg.n = o;
	pthread_rwlock_unlock(&reg.lock);
}

size_t
ms_health_run(struct ms_health_result *out, size_t max, int *healthy)
{
	size_t written = 0;
	int all_ok = 1;

	pthread_rwlock_rdlock(&reg.lock);
	/* Every check runs, even past |max|, so *healthy speaks for all. */
	for (size_t i = 0; i < reg.n; i++) {
		const struct check *c = &reg.c[i];
		struct ms_health_result r = {.name = c->name, .tags = c->tags};
		int64_t t0 = ms_now_us();

		r.rc = c->fn(c->arg, r.desc, sizeof(r.desc));
		r.duration_s = (double)(ms_now_us() - t0) / 1e6;
		r.desc[sizeof(r.desc) - 1] = '\0';
		if (r.rc > 0) {
			/* Not a code a check may return: count it as a
			 * failure rather than report a broken check healthy. */
			r.rc = MS_EINTERNAL;
		}
		if (r.rc != 0) {
			all_ok = 0;
			if (r.desc[0] == '\0') {
				ms_strlcpy(r.desc, ms_strerror(r.rc),
				           sizeof(r.desc));
			}
		}
		if (written < max) {
			out[written++] = r;
		}
	}
	pthread_rwlock_unlock(&reg.lock);
	if (healthy != NULL) {
		*healthy = all_ok;
	}
	return written;
}
