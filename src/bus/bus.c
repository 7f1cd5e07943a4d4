/* SPDX-License-Identifier: MIT */
/*
 * The bus core: the registry of served services and event subscribers, the
 * routing of calls and events to transports, and the thin wrappers through
 * which every transport op is called (so asserts, metrics and, later, fault
 * injection live here and nowhere else).
 *
 * Routing: a call to a service served in this process goes to the local
 * transport (a direct function call); otherwise to the transport instance
 * created for remote.<module>. Events go to the transport of events.broker,
 * or to the local transport's in-process queue when it is unset.
 *
 * Tracing: bus_call sends a child of the caller's current trace context
 * with the call; bus_dispatch runs a handler, and bus_deliver a subscriber,
 * with the call's / event's context current on that thread (core/trace.h),
 * and put the thread's own back after.
 *
 * Threads: the tables are written only before bus_start (main thread) and
 * read without locks afterwards. bus_call / bus_publish / bus_dispatch /
 * bus_deliver run on any thread. The in-flight counter and the stopping flag
 * are atomics.
 */
#include "bus/bus_core.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/err.h"
#include "core/health.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/trace.h"
#include "core/util.h"
#include "transport/transport.h"

#define MAX_SERVICES   16
#define MAX_SUBS       16
#define MAX_REQUIRES   16
#define MAX_TRANSPORTS 8
#define MAX_EXPECTS    8

struct served {
	const ProtobufCServiceDescriptor *svc;
	const bus_handler_fn *handlers;
	void *ctx;
	uint64_t restricted; /* bit i: svc->methods[i] needs the access key
	                        from outside (bus_restrict) */
	uint64_t inlined;    /* bit i: svc->methods[i] may run on a
	                        listener's I/O thread (bus_inline) */
};

struct sub {
	const ProtobufCMessageDescriptor *desc;
	bus_event_fn fn;
	const struct bus_batch_ops *batch; /* or NULL: no batches */
	void *ctx;
	/* Events of the open batch the subscriber accepted (verdict 0):
	 * counted as consumed once the batch commits. The delivery thread's
	 * only (bus_batch_begin .. commit / rollback). */
	size_t batch_ok;
};

struct route {
	const char *module;
	const char *service;
	struct bus_transport *tp; /* resolved by bus_start */
};

struct bus {
	const struct ms_config *cfg;
	struct served served[MAX_SERVICES];
	size_t nserved;
	struct sub subs[MAX_SUBS];
	size_t nsubs;
	struct route routes[MAX_REQUIRES];
	size_t nroutes;
	const char *expects[MAX_EXPECTS];
	size_t nexpects;
	struct bus_transport *tps[MAX_TRANSPORTS];
	size_t ntps;
	struct bus_transport *local;  /* always present */
	struct bus_transport *events; /* local or events.broker's */
	int call_timeout_ms;
	atomic_bool started;
	atomic_bool stopping;
};

/* ---- transports -------------------------------------------------------- */

extern const struct bus_transport_ops tp_local_ops;

static int
tp_create(struct bus *bus, const struct bus_transport_ops *ops, const char *url,
          const char *role, struct bus_transport **out)
{
	struct bus_transport *t;
	int rc;

	/* In debug builds, the ops must match the declared caps. */
	assert(ops->init && ops->start && ops->stop && ops->fini);
	assert(!(ops->caps & BUS_CAP_CALL) || ops->call);
	assert(!(ops->caps & BUS_CAP_EVENTS) || ops->publish);
	if (bus->ntps == MAX_TRANSPORTS) {
		return MS_EFULL;
	}
	/* One block: the header, then the private state (max_align_t). */
	t = calloc(1, sizeof(*t) + ops->priv_size + sizeof(max_align_t));
	if (t == NULL) {
		return MS_ENOMEM;
	}
	t->ops = ops;
	t->bus = bus;
	t->url = url;
	t->role = role;
	if ((rc = ops->init(t, url, bus->cfg)) != 0) {
		free(t);
		return rc;
	}
	bus->tps[bus->ntps++] = t;
	*out = t;
	return 0;
}

/* Returns an existing instance for |url| so that two roles share one
 * connection (remote.discount and events.broker on the same nng peer). */
static struct bus_transport *
tp_find_url(struct bus *bus, const char *url)
{
	for (size_t i = 0; i < bus->ntps; i++) {
		if (bus->tps[i]->url && strcmp(bus->tps[i]->url, url) == 0) {
			return bus->tps[i];
		}
	}
	return NULL;
}

struct bus_transport *
bus_transport_for(struct bus *bus, const char *url)
{
	return tp_find_url(bus, url);
}

static int
tp_health(void *arg, char *desc, size_t desclen)
{
	struct bus_transport *t = arg;

	if (t->ops->health == NULL) {
		return 0;
	}
	return t->ops->health(t, desc, desclen);
}

/* ---- lifecycle --------------------------------------------------------- */

int
bus_create(struct bus **out, const struct ms_config *cfg)
{
	struct bus *bus = calloc(1, sizeof(*bus));
	int rc;

	*out = NULL;
	if (bus == NULL) {
		return MS_ENOMEM;
	}
	bus->cfg = cfg;
	bus->call_timeout_ms = (int)ms_config_int(cfg, "bus.call_timeout_ms");
	if (bus->call_timeout_ms <= 0) {
		bus->call_timeout_ms = 5000;
	}
	rc = tp_create(bus, &tp_local_ops, NULL, "local", &bus->local);
	if (rc != 0) {
		free(bus);
		return rc;
	}
	*out = bus;
	return 0;
}

int
bus_require(struct bus *bus, const char *module, const char *service)
{
	assert(!bus->started);
	for (size_t i = 0; i < bus->nroutes; i++) {
		if (strcmp(bus->routes[i].service, service) == 0) {
			return 0;
		}
	}
	if (bus->nroutes == MAX_REQUIRES) {
		return MS_EFULL;
	}
	bus->routes[bus->nroutes].module = module;
	bus->routes[bus->nroutes].service = service;
	bus->nroutes++;
	return 0;
}

int
bus_expect_subscriber(struct bus *bus, const char *type)
{
	assert(!bus->started);
	if (bus->nexpects == MAX_EXPECTS) {
		return MS_EFULL;
	}
	bus->expects[bus->nexpects++] = type;
	return 0;
}

static const struct served *
find_served(const struct bus *bus, const char *service)
{
	for (size_t i = 0; i < bus->nserved; i++) {
		if (strcmp(bus->served[i].svc->name, service) == 0) {
			return &bus->served[i];
		}
	}
	return NULL;
}

static const struct sub *
find_sub(const struct bus *bus, const char *type)
{
	for (size_t i = 0; i < bus->nsubs; i++) {
		if (strcmp(bus->subs[i].desc->name, type) == 0) {
			return &bus->subs[i];
		}
	}
	return NULL;
}

bool
bus_has_subscriber(struct bus *bus, const char *type)
{
	return find_sub(bus, type) != NULL;
}

/* Resolves one remote route; |key| is "remote.<module>". */
static int
resolve_remote(struct bus *bus, struct route *r, char *err, size_t errlen)
{
	char key[64];
	const char *url;
	const struct bus_transport_ops *ops;
	int rc;

	snprintf(key, sizeof(key), "remote.%s", r->module);
	url = ms_config_is_set(bus->cfg, key) ? ms_config_str(bus->cfg, key)
	                                      : NULL;
	if (url == NULL || *url == '\0') {
		snprintf(err, errlen,
		         "module %s is not hosted here (node.modules) and %s "
		         "is not set: a hosted module calls %s",
		         r->module, key, r->service);
		return MS_ECONFIG;
	}
	if ((r->tp = tp_find_url(bus, url)) != NULL) {
		return 0;
	}
	ops = bus_transport_find(url);
	if (ops == NULL || !(ops->caps & BUS_CAP_CALL)) {
		snprintf(err, errlen,
		         "%s = %s: no transport for this scheme in this build",
		         key, url);
		return MS_ECONFIG;
	}
	rc = tp_create(bus, ops, url, r->module, &r->tp);
	if (rc != 0) {
		snprintf(err, errlen, "%s = %s: %s", key, url, ms_strerror(rc));
		return rc == MS_EINVAL ? MS_ECONFIG : rc;
	}
	ms_health_register(r->module, "remote", tp_health, r->tp);
	return 0;
}

static int
resolve_events(struct bus *bus, char *err, size_t errlen)
{
	const char *url = ms_config_is_set(bus->cfg, "events.broker")
	                      ? ms_config_str(bus->cfg, "events.broker")
	                      : NULL;
	const struct bus_transport_ops *ops;
	int rc;

	if (url == NULL || *url == '\0') {
		bus->events = bus->local;
		for (size_t i = 0; i < bus->nexpects; i++) {
			if (find_sub(bus, bus->expects[i]) == NULL) {
				snprintf(err, errlen,
				         "events of type %s would have no "
				         "consumer: host the module that "
				         "consumes them (node.modules) or set "
				         "events.broker",
				         bus->expects[i]);
				return MS_ECONFIG;
			}
		}
		return 0;
	}
	if ((bus->events = tp_find_url(bus, url)) != NULL) {
		return 0;
	}
	ops = bus_transport_find(url);
	if (ops == NULL || !(ops->caps & BUS_CAP_EVENTS)) {
		snprintf(err, errlen,
		         "events.broker = %s: no transport for this scheme in "
		         "this build",
		         url);
		return MS_ECONFIG;
	}
	rc = tp_create(bus, ops, url, "events", &bus->events);
	if (rc != 0) {
		snprintf(err, errlen, "events.broker = %s: %s", url,
		         ms_strerror(rc));
		return rc == MS_EINVAL ? MS_ECONFIG : rc;
	}
	ms_health_register("broker", "broker", tp_health, bus->events);
	return 0;
}

/* Creates a serving instance of every transport that has a listener
 * configured, when this process serves a service, or consumes events and
 * the transport can carry them. */
static int
resolve_servers(struct bus *bus, char *err, size_t errlen)
{
	const struct bus_transport_ops *const *ops = bus_transport_list();
	struct bus_transport *t;
	int rc;

	if (bus->nserved == 0 && bus->nsubs == 0) {
		return 0;
	}
	for (; *ops; ops++) {
		const char *key = (*ops)->listen_key;

		/* A process that only consumes events listens only on
		 * transports that can bring it events. */
		if (bus->nserved == 0 && !((*ops)->caps & BUS_CAP_EVENTS)) {
			continue;
		}
		if (!((*ops)->caps & BUS_CAP_SERVE) || key == NULL ||
		    !ms_config_is_set(bus->cfg, key) ||
		    *ms_config_str(bus->cfg, key) == '\0') {
			continue;
		}
		rc = tp_create(bus, *ops, NULL, key, &t);
		if (rc != 0) {
			snprintf(err, errlen, "%s = %s: %s", key,
			         ms_config_str(bus->cfg, key), ms_strerror(rc));
			return rc == MS_EINVAL ? MS_ECONFIG : rc;
		}
		ms_health_register((*ops)->scheme, "listener", tp_health, t);
	}
	return 0;
}

int
bus_start(struct bus *bus, char *err, size_t errlen)
{
	int rc;

	assert(!bus->started);
	if ((rc = resolve_servers(bus, err, errlen)) != 0) {
		return rc;
	}
	for (size_t i = 0; i < bus->nroutes; i++) {
		struct route *r = &bus->routes[i];

		if (find_served(bus, r->service)) {
			r->tp = bus->local;
		} else if ((rc = resolve_remote(bus, r, err, errlen)) != 0) {
			return rc;
		}
	}
	if ((rc = resolve_events(bus, err, errlen)) != 0) {
		return rc;
	}
	for (size_t i = 0; i < bus->ntps; i++) {
		struct bus_transport *t = bus->tps[i];

		if ((rc = t->ops->start(t)) != 0) {
			snprintf(err, errlen, "transport %s (%s): %s",
			         t->ops->scheme, t->role, ms_strerror(rc));
			while (i-- > 0) {
				bus->tps[i]->ops->stop(bus->tps[i]);
			}
			return rc;
		}
	}
	atomic_store(&bus->started, true);
	return 0;
}

void
bus_quiesce(struct bus *bus)
{
	if (bus == NULL || !atomic_load(&bus->started) ||
	    atomic_load(&bus->stopping)) {
		return;
	}
	for (size_t i = 0; i < bus->ntps; i++) {
		struct bus_transport *t = bus->tps[i];

		if (t->ops->quiesce != NULL) {
			t->ops->quiesce(t);
		}
	}
}

void
bus_stop(struct bus *bus)
{
	if (bus == NULL || !atomic_load(&bus->started) ||
	    atomic_exchange(&bus->stopping, true)) {
		return;
	}
	/* Reverse order: the local transport (index 0) goes last, so remote
	 * transports can still deliver into it while they drain. */
	for (size_t i = bus->ntps; i-- > 0;) {
		bus->tps[i]->ops->stop(bus->tps[i]);
	}
}

void
bus_destroy(struct bus *bus)
{
	if (bus == NULL) {
		return;
	}
	bus_stop(bus);
	for (size_t i = bus->ntps; i-- > 0;) {
		ms_health_unregister(bus->tps[i]);
		bus->tps[i]->ops->fini(bus->tps[i]);
		free(bus->tps[i]);
	}
	free(bus);
}

/* ---- serving ----------------------------------------------------------- */

struct arena_block {
	struct arena_block *next;
	max_align_t align[];
};

struct bus_rpc {
	struct arena_block *blocks;
	const char *traceparent;
	char *detail;
	size_t detail_len;
};

void *
bus_rpc_alloc(struct bus_rpc *rpc, size_t size)
{
	struct arena_block *b = calloc(1, sizeof(*b) + size);

	if (b == NULL) {
		return NULL;
	}
	b->next = rpc->blocks;
	rpc->blocks = b;
	return b->align;
}

char *
bus_rpc_strdup(struct bus_rpc *rpc, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = bus_rpc_alloc(rpc, n);

	if (p != NULL) {
		memcpy(p, s, n);
	}
	return p;
}

int
bus_rpc_error(struct bus_rpc *rpc, int rc, const char *fmt, ...)
{
	va_list ap;

	if (rpc->detail != NULL && rpc->detail_len > 0) {
		va_start(ap, fmt);
		vsnprintf(rpc->detail, rpc->detail_len, fmt, ap);
		va_end(ap);
	}
	return rc;
}

const char *
bus_rpc_traceparent(const struct bus_rpc *rpc)
{
	return rpc->traceparent;
}

int
bus_serve(struct bus *bus, const ProtobufCServiceDescriptor *svc,
          const bus_handler_fn *handlers, void *ctx)
{
	assert(!bus->started);
	if (find_served(bus, svc->name)) {
		return MS_EEXIST;
	}
	if (bus->nserved == MAX_SERVICES) {
		return MS_EFULL;
	}
	bus->served[bus->nserved].svc = svc;
	bus->served[bus->nserved].handlers = handlers;
	bus->served[bus->nserved].ctx = ctx;
	bus->nserved++;
	MS_DEBUG("bus", "serving %s", svc->name);
	return 0;
}

/* mark_method sets |method|'s bit of |svc| in the mask at |off| of its
 * struct served (bus_restrict, bus_inline). */
static int
mark_method(struct bus *bus, const ProtobufCServiceDescriptor *svc,
            const char *method, size_t off)
{
	struct served *sv = (struct served *)find_served(bus, svc->name);
	const ProtobufCMethodDescriptor *md;
	unsigned idx;

	assert(!bus->started);
	if (sv == NULL) {
		return MS_ENOTFOUND;
	}
	md = protobuf_c_service_descriptor_get_method_by_name(svc, method);
	if (md == NULL) {
		return MS_ENOTFOUND;
	}
	idx = (unsigned)(md - svc->methods);
	if (idx >= 64) {
		return MS_EINVAL; /* more methods than the mask holds */
	}
	*(uint64_t *)((char *)sv + off) |= (uint64_t)1 << idx;
	return 0;
}

/* method_marked tells whether |method| of |service| has its bit set in the
 * mask at |off|; false for unknown services and methods. */
static bool
method_marked(struct bus *bus, const char *service, const char *method,
              size_t off)
{
	const struct served *sv = find_served(bus, service);
	const ProtobufCMethodDescriptor *md;
	uint64_t mask;
	unsigned idx;

	if (sv == NULL) {
		return false;
	}
	mask = *(const uint64_t *)((const char *)sv + off);
	if (mask == 0) {
		return false;
	}
	md = protobuf_c_service_descriptor_get_method_by_name(sv->svc, method);
	if (md == NULL) {
		return false;
	}
	idx = (unsigned)(md - sv->svc->methods);
	return idx < 64 && (mask >> idx & 1u);
}

int
bus_restrict(struct bus *bus, const ProtobufCServiceDescriptor *svc,
             const char *method)
{
	return mark_method(bus, svc, method,
	                   offsetof(struct served, restricted));
}

bool
bus_restricted(struct bus *bus, const char *service, const char *method)
{
	return method_marked(bus, service, method,
	                     offsetof(struct served, restricted));
}

int
bus_inline(struct bus *bus, const ProtobufCServiceDescriptor *svc,
           const char *method)
{
	return mark_method(bus, svc, method, offsetof(struct served, inlined));
}

bool
bus_runs_inline(struct bus *bus, const char *service, const char *method)
{
	return method_marked(bus, service, method,
	                     offsetof(struct served, inlined));
}

bool
bus_serves(struct bus *bus, const char *service, const char *method)
{
	const struct served *sv = find_served(bus, service);

	return sv != NULL && protobuf_c_service_descriptor_get_method_by_name(
	                         sv->svc, method) != NULL;
}

size_t
bus_served_services(struct bus *bus, const char **names, size_t max)
{
	for (size_t i = 0; i < bus->nserved && i < max; i++) {
		names[i] = bus->served[i].svc->name;
	}
	return bus->nserved;
}

int
bus_dispatch(struct bus *bus, const char *service, const char *method,
             const uint8_t *req, size_t req_len, int64_t deadline_ms,
             const char *traceparent, uint8_t **reply, size_t *reply_len,
             char *detail, size_t detail_len)
{
	const struct served *sv = find_served(bus, service);
	const ProtobufCMethodDescriptor *md;
	ProtobufCMessage *in;
	ProtobufCMessage *out;
	struct bus_rpc rpc = {NULL, traceparent, detail, detail_len};
	char saved_trace[MS_TRACEPARENT_SIZE];
	unsigned idx;
	int rc;

	*reply = NULL;
	*reply_len = 0;
	if (detail_len > 0) {
		detail[0] = '\0';
	}
	if (sv == NULL) {
		snprintf(detail, detail_len, "unknown service %s", service);
		return MS_ENOTFOUND;
	}
	md = protobuf_c_service_descriptor_get_method_by_name(sv->svc, method);
	if (md == NULL) {
		snprintf(detail, detail_len, "unknown method %s/%s", service,
		         method);
		return MS_ENOTSUP;
	}
	idx = (unsigned)(md - sv->svc->methods);
	if (sv->handlers[idx] == NULL) {
		snprintf(detail, detail_len, "method %s/%s is not implemented",
		         service, method);
		return MS_ENOTSUP;
	}
	if (deadline_ms > 0 && ms_now_ms() >= deadline_ms) {
		snprintf(detail, detail_len, "deadline exceeded before %s ran",
		         method);
		return MS_ETIMEDOUT;
	}
	in = protobuf_c_message_unpack(md->input, NULL, req_len, req);
	if (in == NULL) {
		snprintf(detail, detail_len, "cannot decode %s",
		         md->input->name);
		return MS_EDECODE; /* statuscodes.md: INTERNAL */
	}
	out = calloc(1, md->output->sizeof_message);
	if (out == NULL) {
		protobuf_c_message_free_unpacked(in, NULL);
		return MS_ENOMEM;
	}
	md->output->message_init(out);
	/* The handler's log lines carry the caller's trace (a local call
	 * runs on its caller's thread: its context is put back after). */
	ms_trace_save(saved_trace);
	if (traceparent != NULL && ms_trace_set(traceparent) != 0) {
		/* Not valid: the thread's own stays. */
		ms_trace_restore(saved_trace);
	}
	rc = sv->handlers[idx](sv->ctx, &rpc, in, out);
	ms_trace_restore(saved_trace);
	if (rc == 0) {
		size_t n = protobuf_c_message_get_packed_size(out);

		*reply = malloc(n ? n : 1);
		if (*reply == NULL) {
			rc = MS_ENOMEM;
		} else {
			*reply_len = protobuf_c_message_pack(out, *reply);
		}
	} else if (detail_len > 0 && detail[0] == '\0') {
		snprintf(detail, detail_len, "%s", ms_strerror(rc));
	}
	free(out);
	protobuf_c_message_free_unpacked(in, NULL);
	while (rpc.blocks) {
		struct arena_block *b = rpc.blocks;

		rpc.blocks = b->next;
		free(b);
	}
	return rc;
}

/* ---- calling ----------------------------------------------------------- */

void
bus_call_complete(struct bus_call *c)
{
	c->done(c);
}

struct waiter {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	atomic_bool done;
};

static void
call_done(struct bus_call *c)
{
	struct waiter *w = c->arg;

	pthread_mutex_lock(&w->mtx);
	atomic_store(&w->done, true);
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mtx);
}

static struct bus_transport *
route_for(struct bus *bus, const char *service)
{
	for (size_t i = 0; i < bus->nroutes; i++) {
		if (strcmp(bus->routes[i].service, service) == 0) {
			return bus->routes[i].tp;
		}
	}
	/* Not declared with bus_require: only local services are callable. */
	return find_served(bus, service) ? bus->local : NULL;
}

int
bus_call(struct bus *bus, const ProtobufCServiceDescriptor *svc,
         const char *method, const ProtobufCMessage *req,
         ProtobufCMessage **reply, int timeout_ms, struct bus_status *st)
{
	const ProtobufCMethodDescriptor *md =
	    protobuf_c_service_descriptor_get_method_by_name(svc, method);
	struct bus_transport *tp = NULL;
	struct bus_call c;
	struct waiter w;
	uint8_t stackbuf[512];
	uint8_t *buf = stackbuf;
	char traceparent[MS_TRACEPARENT_SIZE];
	size_t n;
	int64_t t0 = ms_now_us();
	char labels[160];
	int rc;

	*reply = NULL;
	memset(&c, 0, sizeof(c));
	if (md == NULL) {
		c.rc = MS_ENOTSUP;
		snprintf(c.detail, sizeof(c.detail), "unknown method %s/%s",
		         svc->name, method);
		goto out;
	}
	assert(req->descriptor == md->input);
	tp = route_for(bus, svc->name);
	if (tp == NULL || atomic_load(&bus->stopping)) {
		c.rc = tp == NULL ? MS_EUNAVAIL : MS_ECLOSED;
		snprintf(c.detail, sizeof(c.detail), "%s is not reachable%s",
		         svc->name, tp == NULL ? " (no route)" : " (stopping)");
		goto out;
	}
	n = protobuf_c_message_get_packed_size(req);
	if (n > sizeof(stackbuf) && (buf = malloc(n)) == NULL) {
		c.rc = MS_ENOMEM;
		goto out;
	}
	protobuf_c_message_pack(req, buf);
	c.service = svc->name;
	c.method = method;
	c.req = buf;
	c.req_len = n;
	c.deadline_ms =
	    ms_now_ms() + (timeout_ms > 0 ? timeout_ms : bus->call_timeout_ms);
	/* The caller's trace goes with the call, as a child span (gRPC
	 * metadata, ...), so the callee logs under the same trace id. */
	if (ms_trace_get() != NULL) {
		c.traceparent = ms_trace_new_child(NULL, traceparent);
	}
	c.done = call_done;
	c.arg = &w;
	pthread_mutex_init(&w.mtx, NULL);
	pthread_cond_init(&w.cv, NULL);
	atomic_init(&w.done, false);
	rc = tp->ops->call(tp, &c);
	if (rc != 0) {
		c.rc = rc;
		snprintf(c.detail, sizeof(c.detail), "%s", ms_strerror(rc));
	} else {
		/* Transports complete every call by its deadline, so this wait
		 * is bounded; the call lives on this stack until then. Always
		 * through the mutex, even when done is already set: a
		 * completion on another thread may still be inside call_done
		 * (signal, unlock), and the mutex and condition must outlive
		 * that before they are destroyed below. */
		pthread_mutex_lock(&w.mtx);
		while (!atomic_load(&w.done)) {
			pthread_cond_wait(&w.cv, &w.mtx);
		}
		pthread_mutex_unlock(&w.mtx);
	}
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mtx);
	if (buf != stackbuf) {
		free(buf);
	}
	if (c.rc == 0) {
		*reply = protobuf_c_message_unpack(md->output, NULL,
		                                   c.reply_len, c.reply);
		if (*reply == NULL) {
			c.rc = MS_EPROTO;
			snprintf(c.detail, sizeof(c.detail),
			         "cannot decode %s reply", md->output->name);
		}
	}
	free(c.reply);
	snprintf(labels, sizeof(labels),
	         "method=\"%s/%s\",transport=\"%s\",code=\"%s\"", svc->name,
	         method, tp ? tp->ops->scheme : "none",
	         c.rc ? ms_errname(c.rc) : "OK");
	ms_metrics_count("monoshop_bus_calls_total", labels, 1);
	if (md != NULL && tp != NULL) {
		snprintf(labels, sizeof(labels),
		         "method=\"%s/%s\",transport=\"%s\"", svc->name, method,
		         tp->ops->scheme);
		ms_metrics_observe("monoshop_bus_call_duration_seconds", labels,
		                   (double)(ms_now_us() - t0) / 1e6);
	}
out:
	if (st != NULL) {
		st->rc = c.rc;
		snprintf(st->detail, sizeof(st->detail), "%s",
		         c.detail[0] ? c.detail : ms_strerror(c.rc));
	}
	return c.rc;
}

/* ---- events ------------------------------------------------------------ */

int
bus_subscribe(struct bus *bus, const ProtobufCMessageDescriptor *desc,
              bus_event_fn fn, void *ctx)
{
	return bus_subscribe_batch(bus, desc, fn, NULL, ctx);
}

int
bus_subscribe_batch(struct bus *bus, const ProtobufCMessageDescriptor *desc,
                    bus_event_fn fn, const struct bus_batch_ops *ops, void *ctx)
{
	assert(!bus->started);
	assert(ops == NULL || (ops->begin && ops->commit && ops->rollback));
	if (find_sub(bus, desc->name)) {
		return MS_EEXIST;
	}
	if (bus->nsubs == MAX_SUBS) {
		return MS_EFULL;
	}
	bus->subs[bus->nsubs].desc = desc;
	bus->subs[bus->nsubs].fn = fn;
	bus->subs[bus->nsubs].batch = ops;
	bus->subs[bus->nsubs].ctx = ctx;
	bus->nsubs++;
	return 0;
}

int
bus_publish(struct bus *bus, struct bus_event *ev)
{
	struct bus_transport *t = bus->events;

	assert(ev->done != NULL && ev->type != NULL);
	if (t == NULL || atomic_load(&bus->stopping)) {
		return MS_ECLOSED;
	}
	/* Refusals and failed confirms are counted by the publisher (the
	 * relay: monoshop_events_failed_total), which sees both. */
	return t->ops->publish(t, ev);
}

/* count_consumed adds |n| events of |s| (NULL: no subscriber) with the
 * verdict |rc| to monoshop_events_consumed_total. */
static void
count_consumed(const struct sub *s, int rc, size_t n)
{
	char labels[160];

	if (n == 0) {
		return;
	}
	/* The type is the peer's text until a subscriber vouches for it: as
	 * a label it could break the exposition format or add a series per
	 * name (found by fuzz_nng_wire). */
	snprintf(labels, sizeof(labels), "type=\"%s\",result=\"%s\"",
	         s != NULL ? s->desc->name : "unknown",
	         rc == 0 ? "ok" : ms_errname(rc));
	ms_metrics_count("monoshop_events_consumed_total", labels, (double)n);
}

int
bus_deliver(struct bus *bus, const struct bus_event *ev)
{
	const struct sub *s = find_sub(bus, ev->type);
	ProtobufCMessage *msg;
	char saved_trace[MS_TRACEPARENT_SIZE];
	int rc;

	if (s == NULL) {
		rc = MS_ENOTFOUND;
		goto out;
	}
	/* A transport opens a batch only with a subscriber that batches. */
	assert(!ev->in_batch || s->batch != NULL);
	msg = protobuf_c_message_unpack(s->desc, NULL, ev->len, ev->payload);
	if (msg == NULL) {
		MS_WARN("bus", "event %s of type %s cannot be decoded", ev->id,
		        ev->type);
		rc = MS_EINVAL;
		goto out;
	}
	/* The subscriber works under the event's trace (the one the request
	 * that recorded it started), or a new one when it came without. */
	ms_trace_save(saved_trace);
	ms_trace_begin(ev->traceparent);
	rc = s->fn(s->ctx, ev, msg);
	ms_trace_restore(saved_trace);
	protobuf_c_message_free_unpacked(msg, NULL);
	if (rc == 0 && ev->in_batch) {
		/* Not consumed yet: it commits (or not) with its batch. */
		((struct sub *)s)->batch_ok++;
		return 0;
	}
out:
	count_consumed(s, rc, 1);
	return rc;
}

int
bus_batch_begin(struct bus *bus, const char *type)
{
	struct sub *s = (struct sub *)find_sub(bus, type);

	if (s == NULL || s->batch == NULL) {
		return MS_ENOTSUP;
	}
	s->batch_ok = 0;
	return s->batch->begin(s->ctx);
}

int
bus_batch_commit(struct bus *bus, const char *type)
{
	struct sub *s = (struct sub *)find_sub(bus, type);
	int rc;

	assert(s != NULL && s->batch != NULL);
	rc = s->batch->commit(s->ctx);
	count_consumed(s, rc, s->batch_ok);
	s->batch_ok = 0;
	return rc;
}

void
bus_batch_rollback(struct bus *bus, const char *type)
{
	struct sub *s = (struct sub *)find_sub(bus, type);

	assert(s != NULL && s->batch != NULL);
	s->batch->rollback(s->ctx);
	count_consumed(s, MS_ECANCELED, s->batch_ok);
	s->batch_ok = 0;
}
