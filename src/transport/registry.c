/* SPDX-License-Identifier: MIT */
/*
 * The list of transports this build has, chosen at compile time
 * (HAVE_TRANSPORT_* from config.h), and lookup by URL scheme. The local
 * transport is always built: it is how a process talks to itself. A few
 * slots after the built ones take transports registered at run time by
 * tests (bus_transport_register: the fault-injecting wrapper).
 *
 * Threads: the list is read without locks; bus_transport_register may only
 * be called before any bus exists (a test's main).
 */
#include <assert.h>
#include <string.h>

#include "config.h"
#include "core/err.h"
#include "transport/transport.h"

/* The built transports plus room for the ones tests register. */
#define MAX_REGISTERED 16

extern const struct bus_transport_ops tp_local_ops;
#if HAVE_TRANSPORT_GRPC
extern const struct bus_transport_ops tp_grpc_ops;
extern const struct bus_transport_ops tp_grpcs_ops;
#endif
#if HAVE_TRANSPORT_AMQP
extern const struct bus_transport_ops tp_amqp_ops;
#endif
#if HAVE_TRANSPORT_NNG
/* Two tables, one transport: schemes match exactly (nng/nng.c). */
extern const struct bus_transport_ops tp_nng_tcp_ops;
extern const struct bus_transport_ops tp_nng_ipc_ops;
#endif

/* NULL-terminated: the slots after the built entries are NULL until
 * bus_transport_register fills them. */
static const struct bus_transport_ops *transports[MAX_REGISTERED + 1] = {
    &tp_local_ops,
#if HAVE_TRANSPORT_GRPC
    &tp_grpc_ops,
    &tp_grpcs_ops,
#endif
#if HAVE_TRANSPORT_AMQP
    &tp_amqp_ops,
#endif
#if HAVE_TRANSPORT_NNG
    &tp_nng_tcp_ops,
    &tp_nng_ipc_ops,
#endif
};

const struct bus_transport_ops *const *
bus_transport_list(void)
{
	return transports;
}

/* Whether |scheme| names the transport of a URL whose scheme is the |n|
 * bytes at |url|: equal, or, for a wrapper scheme ending in '+' ("faulty+"),
 * a prefix of a longer scheme ("faulty+grpc"). */
static int
scheme_matches(const char *scheme, const char *url, size_t n)
{
	size_t len = strlen(scheme);

	if (len > 0 && scheme[len - 1] == '+') {
		return n > len && strncmp(scheme, url, len) == 0;
	}
	return len == n && strncmp(scheme, url, n) == 0;
}

int
bus_transport_register(const struct bus_transport_ops *ops)
{
	size_t i;

	/* Mandatory ops, as the bus asserts when it creates an instance. */
	assert(ops->scheme && ops->init && ops->start && ops->stop &&
	       ops->fini);
	assert(!(ops->caps & BUS_CAP_CALL) || ops->call);
	assert(!(ops->caps & BUS_CAP_EVENTS) || ops->publish);
	for (i = 0; transports[i] != NULL; i++) {
		if (strcmp(transports[i]->scheme, ops->scheme) == 0) {
			return MS_EEXIST;
		}
	}
	if (i == MAX_REGISTERED) {
		return MS_EFULL;
	}
	transports[i] = ops;
	return 0;
}

const struct bus_transport_ops *
bus_transport_find(const char *url)
{
	const char *sep = url ? strstr(url, "://") : NULL;
	size_t n;

	if (sep == NULL) {
		return NULL;
	}
	n = (size_t)(sep - url);
	for (size_t i = 0; transports[i] != NULL; i++) {
		if (scheme_matches(transports[i]->scheme, url, n)) {
			return transports[i];
		}
	}
	return NULL;
}
