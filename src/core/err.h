/* SPDX-License-Identifier: MIT */
/*
 * One error space for the whole project. Every function that can fail
 * returns 0 or a negative MS_E* code (or a pointer / NULL). The codes live in
 * the reserved range [-999, -500] so they never collide with -errno, which
 * ms_strerror() also understands. The list below is the single source: the
 * enum, ms_strerror(), ms_errname() and the HTTP / gRPC status mapping are
 * all generated from it, so adding a code is one line.
 */
#ifndef MS_CORE_ERR_H
#define MS_CORE_ERR_H

/* X(name, message, http status, grpc status code) */
#define MS_ERR_MAP(X)                                                          \
	X(EINVAL, "invalid argument", 400, 3 /* INVALID_ARGUMENT */)           \
	X(EVALIDATION, "validation failed", 400, 3 /* INVALID_ARGUMENT */)     \
	X(EJSON, "malformed JSON", 400, 3 /* INVALID_ARGUMENT */)              \
	X(EDECODE, "cannot decode message", 400, 13 /* INTERNAL */)            \
	X(ENOTFOUND, "not found", 404, 5 /* NOT_FOUND */)                      \
	X(EMETHOD, "method not allowed", 405, 12 /* UNIMPLEMENTED */)          \
	X(EEXIST, "already exists", 409, 6 /* ALREADY_EXISTS */)               \
	X(ETOOBIG, "too large", 413, 8 /* RESOURCE_EXHAUSTED */)               \
	X(EMEDIATYPE, "unsupported media type", 415, 3 /* INVALID_ARG */)      \
	X(EUNAUTH, "unauthenticated", 401, 16 /* UNAUTHENTICATED */)           \
	X(ENOMEM, "out of memory", 503, 8 /* RESOURCE_EXHAUSTED */)            \
	X(EFULL, "queue full", 503, 8 /* RESOURCE_EXHAUSTED */)                \
	X(ETIMEDOUT, "deadline exceeded", 504, 4 /* DEADLINE_EXCEEDED */)      \
	X(ECANCELED, "canceled", 503, 1 /* CANCELLED */)                       \
	X(ECLOSED, "closed", 503, 14 /* UNAVAILABLE */)                        \
	X(EUNAVAIL, "service unavailable", 503, 14 /* UNAVAILABLE */)          \
	X(ECONNREFUSED, "connection refused", 503, 14 /* UNAVAILABLE */)       \
	X(EBUSY, "busy", 503, 14 /* UNAVAILABLE */)                            \
	X(ENOTSUP, "not implemented", 501, 12 /* UNIMPLEMENTED */)             \
	X(EPROTO, "protocol error", 502, 13 /* INTERNAL */)                    \
	X(EIO, "I/O error", 500, 13 /* INTERNAL */)                            \
	X(EDB, "database error", 500, 13 /* INTERNAL */)                       \
	X(ECORRUPT, "database corrupt", 500, 15 /* DATA_LOSS */)               \
	X(ECONFIG, "configuration error", 500, 9 /* FAILED_PRECONDITION */)    \
	X(EINTERNAL, "internal error", 500, 13 /* INTERNAL */)

/*
 * The codes count down from -501 (MS_EINVAL) in list order. An enum only
 * counts up, so a private index enum numbers the list first.
 */
/* clang-format cannot indent an X-macro list inside an enum. */
/* clang-format off */
enum ms_err_index_ {
#define MS_ERR_INDEX_(name, msg, http, grpc) MS_ERRIDX_##name,
	MS_ERR_MAP(MS_ERR_INDEX_)
#undef MS_ERR_INDEX_
	MS_ERR_COUNT_
};

enum ms_err {
	MS_OK = 0,
	MS_ERR_BASE_ = -500, /* the first code is MS_ERR_BASE_ - 1 */
#define MS_ERR_ENUM_(name, msg, http, grpc) \
	MS_##name = MS_ERR_BASE_ - 1 - MS_ERRIDX_##name,
	MS_ERR_MAP(MS_ERR_ENUM_)
#undef MS_ERR_ENUM_
	MS_ERR_END_ = MS_ERR_BASE_ - 1 - MS_ERR_COUNT_ /* one past the last */
};
/* clang-format on */

_Static_assert(MS_ERR_END_ >= -999, "error codes outside [-999, -500]");

/*
 * ms_strerror returns a static, human readable message for |rc|: one of the
 * codes above, a -errno value, or "unknown error" for anything else. Never
 * returns NULL.
 */
const char *ms_strerror(int rc);

/* ms_errname returns the code's name ("EINVAL") or "UNKNOWN"; never NULL. */
const char *ms_errname(int rc);

/*
 * ms_err_http returns the HTTP status for |rc| (200 for 0, 500 for anything
 * unknown, including -errno values: those are bugs or local failures).
 */
int ms_err_http(int rc);

/* ms_err_grpc returns the gRPC status code for |rc| (0 OK, 2 UNKNOWN). */
int ms_err_grpc(int rc);

/*
 * ms_err_from_grpc maps a gRPC status received from a peer back to our code
 * (UNAVAILABLE → MS_EUNAVAIL, NOT_FOUND → MS_ENOTFOUND, ...), so that a remote
 * failure looks the same to a module as a local one.
 */
int ms_err_from_grpc(int grpc_status);

#endif
