/* SPDX-License-Identifier: MIT */
/*
 * The project's error space, generated from MS_ERR_MAP (err.h): messages,
 * names and the HTTP / gRPC status of every MS_E* code, plus the reverse
 * mapping of a gRPC status received from a peer. Codes outside our range
 * that look like -errno are described by the C library's own table.
 *
 * Threads: everything here is pure or reads static tables; callable from
 * any thread.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "core/err.h"

struct errdesc {
	const char *name;
	const char *msg;
	int http;
	int grpc;
};

/* Indexed by (MS_ERR_BASE_ - 1 - rc): MS_EINVAL (-501) is entry 0. */
static const struct errdesc errtab[] = {
#define ERRDESC_(name, msg, http, grpc) {#name, msg, http, grpc},
    MS_ERR_MAP(ERRDESC_)
#undef ERRDESC_
};

_Static_assert(sizeof(errtab) / sizeof(errtab[0]) == MS_ERR_COUNT_,
               "error table out of step with enum ms_err");

/* -errno values lie above our reserved range [-999, -500]; Linux errno
 * values stay far below 500. */
#define ERRNO_MAX 499

static const struct errdesc *
lookup(int rc)
{
	if (rc >= MS_ERR_BASE_ || rc <= MS_ERR_END_) {
		return NULL;
	}
	return &errtab[MS_ERR_BASE_ - 1 - rc];
}

#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
/* strerrordesc_np returns a static string and never touches the locale,
 * so it is thread safe without a buffer. */
static const char *
errno_text(int errnum)
{
	return strerrordesc_np(errnum);
}
#else
/* Elsewhere, strerror_r into a per-thread buffer: the result stays valid
 * until the same thread describes another errno value. */
static const char *
errno_text(int errnum)
{
	static _Thread_local char buf[128];
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
	return strerror_r(errnum, buf, sizeof(buf));
#else
	if (strerror_r(errnum, buf, sizeof(buf)) != 0) {
		return NULL;
	}
	return buf;
#endif
}
#endif

const char *
ms_strerror(int rc)
{
	const struct errdesc *d = lookup(rc);
	const char *s;

	if (rc == 0) {
		return "success";
	}
	if (d != NULL) {
		return d->msg;
	}
	if (rc < 0 && rc >= -ERRNO_MAX) {
		s = errno_text(-rc);
		if (s != NULL && s[0] != '\0') {
			return s;
		}
	}
	return "unknown error";
}

const char *
ms_errname(int rc)
{
	const struct errdesc *d = lookup(rc);

	if (rc == 0) {
		return "OK";
	}
	return d != NULL ? d->name : "UNKNOWN";
}

int
ms_err_http(int rc)
{
	const struct errdesc *d = lookup(rc);

	if (rc == 0) {
		return 200;
	}
	return d != NULL ? d->http : 500;
}

int
ms_err_grpc(int rc)
{
	const struct errdesc *d = lookup(rc);

	if (rc == 0) {
		return 0;
	}
	return d != NULL ? d->grpc : 2 /* UNKNOWN */;
}

int
ms_err_from_grpc(int grpc_status)
{
	/* Several of our codes share one gRPC status; the reverse picks the
	 * one a module would have raised itself, so a remote failure is
	 * handled by the same branch as a local one. */
	switch (grpc_status) {
	case 0: /* OK */
		return 0;
	case 1: /* CANCELLED */
		return MS_ECANCELED;
	case 3: /* INVALID_ARGUMENT */
		return MS_EINVAL;
	case 4: /* DEADLINE_EXCEEDED */
		return MS_ETIMEDOUT;
	case 5: /* NOT_FOUND */
		return MS_ENOTFOUND;
	case 6: /* ALREADY_EXISTS */
		return MS_EEXIST;
	case 8: /* RESOURCE_EXHAUSTED */
		return MS_EFULL;
	case 9: /* FAILED_PRECONDITION */
		return MS_ECONFIG;
	case 12: /* UNIMPLEMENTED */
		return MS_ENOTSUP;
	case 14: /* UNAVAILABLE */
		return MS_EUNAVAIL;
	case 15: /* DATA_LOSS */
		return MS_ECORRUPT;
	case 16: /* UNAUTHENTICATED */
		return MS_EUNAUTH;
	default: /* UNKNOWN, PERMISSION_DENIED, ABORTED, OUT_OF_RANGE, ... */
		return MS_EINTERNAL;
	}
}
