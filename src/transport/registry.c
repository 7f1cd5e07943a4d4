/* SPDX-License-Identifier: MIT */
/*
 * The list of transports this build has, chosen at compile time
 * (HAVE_TRANSPORT_* from config.h), and lookup by URL scheme. The local
 * transport is always built: it is how a process talks to itself.
 */
#include <string.h>

#include "config.h"
#include "transport/transport.h"

extern const struct bus_transport_ops tp_local_ops;
#if HAVE_TRANSPORT_GRPC
extern const struct bus_transport_ops tp_grpc_ops;
#endif
#if HAVE_TRANSPORT_AMQP
extern const struct bus_transport_ops tp_amqp_ops;
#endif

static const struct bus_transport_ops *const transports[] = {
    &tp_local_ops,
#if HAVE_TRANSPORT_GRPC
    &tp_grpc_ops,
#endif
#if HAVE_TRANSPORT_AMQP
    &tp_amqp_ops,
#endif
    NULL,
};

const struct bus_transport_ops *const *
bus_transport_list(void)
{
	return transports;
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
		if (strlen(transports[i]->scheme) == n &&
		    strncmp(transports[i]->scheme, url, n) == 0) {
			return transports[i];
		}
	}
	return NULL;
}
