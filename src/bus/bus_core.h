/* SPDX-License-Identifier: MIT */
/*
 * Bus lifecycle, for main.c and tests (modules use bus.h only).
 *
 * Order: bus_create → modules' init (bus_serve / bus_subscribe) →
 * bus_start (routes resolved, transports started) → ... → bus_stop
 * (transports drained and joined) → modules' fini → bus_destroy.
 */
#ifndef MS_BUS_BUS_CORE_H
#define MS_BUS_BUS_CORE_H

#include "bus/bus.h"

struct ms_config;

/* bus_create allocates a bus configured by |cfg| (which must outlive it).
 * Returns 0 or MS_ENOMEM. */
int bus_create(struct bus **out, const struct ms_config *cfg);

/*
 * bus_require declares that a hosted module calls |service| of module
 * |module|. bus_start fails with MS_ECONFIG when such a service is neither
 * served here nor reachable through remote.<module>.
 */
int bus_require(struct bus *bus, const char *module, const char *service);

/*
 * bus_expect_subscriber declares that a hosted module publishes events of
 * |type|: with in-process events (events.broker unset) bus_start fails with
 * MS_ECONFIG unless a hosted module subscribes to |type|, since the events
 * would otherwise have nowhere to go.
 */
int bus_expect_subscriber(struct bus *bus, const char *type);

/*
 * bus_start resolves every route (local, or the transport of remote.* /
 * events.broker), starts the transports and the in-process event queue.
 * Returns 0 or MS_ECONFIG (|err| names the key and why), or another MS_E*.
 */
int bus_start(struct bus *bus, char *err, size_t errlen);

/*
 * bus_quiesce is the first step of a graceful shutdown: every transport
 * stops accepting work from outside (listeners close and tell their peers,
 * consumers cancel), while work in flight goes on and this process's own
 * calls and publishes still work. Does not block. Main thread; before
 * bus_stop; idempotent; a no-op before bus_start.
 */
void bus_quiesce(struct bus *bus);

/* bus_stop refuses new work, drains in-flight calls and deliveries, joins
 * every thread. Idempotent. */
void bus_stop(struct bus *bus);

/* bus_destroy frees the bus; NULL is a no-op. */
void bus_destroy(struct bus *bus);

struct bus_transport;

/*
 * bus_transport_for returns the transport instance bus_start created for
 * |url| (a remote.* or events.broker value, as configured), or NULL. A test
 * hook, for tests that steer an instance (tests/support/tp_faulty.h); the
 * instance lives until bus_destroy. Any thread, after bus_start.
 */
struct bus_transport *bus_transport_for(struct bus *bus, const char *url);

#endif
