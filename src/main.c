/* SPDX-License-Identifier: MIT */
/*
 * monoshop: the command line, the configuration, the module table and the
 * start/stop order.
 *
 * Start: config (file < environment < --set) → bus → each hosted module's
 * init (store, bus handlers, subscriptions, routes) → bus_start (routes
 * resolved: a call to a module neither hosted nor remote is a start-up
 * error, exit 2) → outbox relays → HTTP listener → "ready".
 *
 * Stop (SIGINT/SIGTERM), all of it within node.shutdown_timeout_ms (T)
 * counted from the signal:
 *  1. stop accepting, everywhere at once: the REST listener closes (and
 *     answers from then on close their connections); bus_quiesce closes
 *     the gRPC listener and sends GOAWAY, and cancels the AMQP consumer
 *     (basic.cancel: no new deliveries; the one being handled finishes and
 *     is acked only after its commit). Our own calls and publishes still
 *     work: the requests in flight and the relays need them.
 *  2. finish the REST requests in flight (until the deadline);
 *  3. stop the outbox relays: publishes in flight are confirmed or stay
 *     pending; undelivered events stay in the outbox for the next start;
 *  4. stop the bus: gRPC calls in flight finish (until the same
 *     deadline), the AMQP connection closes (unacked deliveries go back to
 *     the broker), the in-process queue stops;
 *  5. modules' stop and fini → exit 0.
 * A watchdog bounds the whole: if a step is still running at T plus
 * SHUTDOWN_MARGIN_MS, it logs what it abandons and exits 0 at once. That is
 * safe by construction: every commit is atomic (SQLite WAL), an event
 * not confirmed stays in the outbox, a delivery not acked is redelivered
 * and deduplicated by the inbox.
 *
 * Threads: signals are blocked before any thread starts, and the main thread
 * waits for them with sigwait, so no handler runs in an arbitrary thread.
 * The watchdog thread only reads the current step (an atomic) and waits on
 * its own condition variable.
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus_core.h"
#include "bus/relay.h"
#include "config.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "http/server.h"
#include "modules/module.h"
#include "transport/transport.h"

extern char **environ;

#define EXIT_CONFIG 2

/* How far past node.shutdown_timeout_ms the watchdog lets a shutdown run:
 * room for the steps after the deadline (closing connections, joining
 * threads) that take milliseconds when nothing is stuck. */
#define SHUTDOWN_MARGIN_MS 2000

static const struct ms_module *const modules[] = {
    /* Providers first, so that their services exist when consumers'
     * init runs (it does not call them, but their seed data is ready). */
    &discount_module,
    &ordering_module,
    &basket_module,
};

struct hosted {
	const struct ms_module *mod;
	void *state;
	struct bus_relay *relay;
	struct store *outbox;
};

/*
 * The shutdown watchdog: started when a stop signal arrives, it waits until
 * the deadline plus SHUTDOWN_MARGIN_MS, or until main says the shutdown is
 * over. Main thread: watchdog_start, the steps, watchdog_stop. The
 * watchdog thread: the wait, then possibly the log line and _exit(0).
 */
struct watchdog {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC, like ms_now_ms */
	bool done;         /* under mu */
	bool running;      /* main thread only */
	int64_t deadline_ms;
	int timeout_ms;
	_Atomic(const char *) step; /* what main is doing now */
};

static void *
watchdog_main(void *arg)
{
	struct watchdog *w = arg;
	int64_t until = w->deadline_ms + SHUTDOWN_MARGIN_MS;

	pthread_mutex_lock(&w->mu);
	while (!w->done && ms_now_ms() < until) {
		int64_t left = until - ms_now_ms();
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += left / 1000;
		ts.tv_nsec += (long)(left % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&w->cv, &w->mu, &ts);
	}
	if (w->done) {
		pthread_mutex_unlock(&w->mu);
		return NULL;
	}
	pthread_mutex_unlock(&w->mu);
	MS_ERROR("main",
	         "shutdown still busy %d ms after the signal "
	         "(node.shutdown_timeout_ms = %d): abandoning %s and exiting "
	         "now; committed work is kept, undelivered events stay in "
	         "the outbox, unacknowledged deliveries return to the broker",
	         w->timeout_ms + SHUTDOWN_MARGIN_MS, w->timeout_ms,
	         atomic_load(&w->step));
	_exit(0);
}

static void
watchdog_start(struct watchdog *w, int timeout_ms)
{
	pthread_condattr_t ca;

	w->timeout_ms = timeout_ms;
	w->deadline_ms = ms_now_ms() + timeout_ms;
	w->done = false;
	atomic_init(&w->step, "stopping to accept");
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* Without a watchdog the steps are still bounded, only less
	 * strictly: each one waits at most until the deadline. */
	w->running = pthread_create(&w->thread, NULL, watchdog_main, w) == 0;
	if (!w->running) {
		MS_WARN("main", "no shutdown watchdog: cannot start a thread");
	}
}

/* remaining_ms is what is left of the shutdown's time, at least 0. */
static int
remaining_ms(const struct watchdog *w)
{
	int64_t left = w->deadline_ms - ms_now_ms();

	return left > 0 ? (int)left : 0;
}

static void
watchdog_stop(struct watchdog *w)
{
	pthread_mutex_lock(&w->mu);
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (w->running) {
		pthread_join(w->thread, NULL);
		w->running = false;
	}
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
}

static void
usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: monoshop [--config FILE] [--set SECTION.KEY=VALUE]...\n"
	    "\n"
	    "The AspNetRun e-shop's Basket, Discount and Ordering services in "
	    "one\nexecutable. With no arguments, dev mode: all three modules "
	    "in this\nprocess, in-process bus, SQLite under ./data.\n"
	    "\n"
	    "Options:\n"
	    "  -c, --config FILE        read an INI configuration file\n"
	    "  -s, --set KEY=VALUE      override one key (repeatable), e.g.\n"
	    "                           --set http.listen=127.0.0.1:0\n"
	    "  -h, --help               show this help and every key\n"
	    "  -V, --version            print the version\n"
	    "\n"
	    "Precedence: --set > MONOSHOP_SECTION_KEY environment > file > "
	    "default.\n"
	    "Transports in this build:");
	for (const struct bus_transport_ops *const *t = bus_transport_list();
	     *t; t++) {
		fprintf(out, " %s", (*t)->scheme);
	}
	fprintf(out, "\n\nConfiguration keys:\n");
	ms_config_help(out);
}

static int
load_config(int argc, char **argv, struct ms_config **out)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"set", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	struct ms_config *cfg;
	const char *file = NULL;
	char err[512];
	int c;

	*out = NULL;
	while ((c = getopt_long(argc, argv, "c:s:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			file = optarg;
			break;
		case 's':
			break; /* applied below, after the file and env */
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("monoshop %s\n", MONOSHOP_VERSION);
			exit(0);
		default:
			fprintf(stderr, "Try 'monoshop --help'.\n");
			return EXIT_CONFIG;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "monoshop: unexpected argument '%s'\n",
		        argv[optind]);
		return EXIT_CONFIG;
	}
	if (ms_config_create(&cfg) != 0) {
		fprintf(stderr, "monoshop: out of memory\n");
		return 1;
	}
	if (file && ms_config_load_file(cfg, file, err, sizeof(err)) != 0) {
		goto fail;
	}
	if (ms_config_load_env(cfg, environ, err, sizeof(err)) != 0) {
		goto fail;
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:s:hV", longopts, NULL)) != -1) {
		if (c == 's' && ms_config_set(cfg, optarg, "--set", err,
		                              sizeof(err)) != 0) {
			goto fail;
		}
	}
	*out = cfg;
	return 0;
fail:
	fprintf(stderr, "monoshop: configuration error: %s\n", err);
	ms_config_destroy(cfg);
	return EXIT_CONFIG;
}

int
main(int argc, char **argv)
{
	struct hosted hosted[MS_ARRAY_SIZE(modules)];
	size_t nhosted = 0;
	struct ms_config *cfg;
	struct bus *bus = NULL;
	struct http_router *router = NULL;
	struct http_server *http = NULL;
	struct watchdog wd = {0};
	bool stopping = false;
	enum ms_log_level level;
	sigset_t sigs;
	char err[512] = "";
	int status = 1;
	int rc;
	int sig;

	if ((rc = load_config(argc, argv, &cfg)) != 0) {
		return rc;
	}
	if (ms_log_parse_level(ms_config_str(cfg, "log.level"), &level) == 0) {
		ms_log_set_level(level);
	}

	/* Block the stop signals in every thread; main waits for them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (bus_create(&bus, cfg) != 0 || http_router_create(&router) != 0) {
		MS_ERROR("main", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < MS_ARRAY_SIZE(modules); i++) {
		const struct ms_module *m = modules[i];
		struct module_ctx ctx = {
		    .bus = bus,
		    .cfg = cfg,
		    .router = router,
		    .data_dir = ms_config_str(cfg, "node.data_dir"),
		};
		struct hosted *h = &hosted[nhosted];

		if (!ms_config_has_module(cfg, m->name)) {
			continue;
		}
		memset(h, 0, sizeof(*h));
		h->mod = m;
		if ((rc = m->init(&ctx, &h->state)) != 0) {
			MS_ERROR("main", "module %s failed to start: %s",
			         m->name, ms_strerror(rc));
			goto out;
		}
		nhosted++;
		h->outbox = ctx.outbox_store;
		for (const char *const(*c)[2] = m->calls; c && (*c)[0]; c++) {
			bus_require(bus, (*c)[0], (*c)[1]);
		}
		for (const char *const *p = m->publishes; p && *p; p++) {
			bus_expect_subscriber(bus, *p);
		}
	}
	if ((rc = bus_start(bus, err, sizeof(err))) != 0) {
		if (rc == MS_ECONFIG) {
			fprintf(stderr, "monoshop: configuration error: %s\n",
			        err);
			status = EXIT_CONFIG;
		} else {
			MS_ERROR("main", "cannot start the bus: %s", err);
		}
		goto out;
	}
	for (size_t i = 0; i < nhosted; i++) {
		struct bus_relay_opts ro = {
		    .batch = (int)ms_config_int(cfg, "events.relay_batch"),
		    .poll_ms = (int)ms_config_int(cfg, "events.relay_poll_ms"),
		    .hold = ms_config_bool(cfg, "debug.hold_events"),
		};

		if (hosted[i].outbox == NULL) {
			continue;
		}
		rc = bus_relay_start(&hosted[i].relay, bus, hosted[i].outbox,
		                     &ro);
		if (rc != 0) {
			MS_ERROR("main", "cannot start the outbox relay: %s",
			         ms_strerror(rc));
			goto out;
		}
	}
	if ((rc = http_server_start(&http, router, cfg)) != 0) {
		MS_ERROR("main", "cannot start the HTTP listener: %s",
		         ms_strerror(rc));
		goto out;
	}
	MS_INFO("main", "monoshop %s ready: modules [%s], events %s",
	        MONOSHOP_VERSION, ms_config_str(cfg, "node.modules"),
	        ms_config_is_set(cfg, "events.broker") ? "via broker"
	                                               : "in process");

	do {
		if (sigwait(&sigs, &sig) != 0) {
			sig = 0;
		}
	} while (sig != SIGINT && sig != SIGTERM);
	MS_INFO("main", "%s received: shutting down (at most %lld ms)",
	        sig == SIGINT ? "SIGINT" : "SIGTERM",
	        (long long)ms_config_int(cfg, "node.shutdown_timeout_ms"));
	status = 0;
	stopping = true;
	watchdog_start(&wd,
	               (int)ms_config_int(cfg, "node.shutdown_timeout_ms"));

out:
	/* 1. Stop accepting everywhere at once. */
	http_server_quiesce(http);
	bus_quiesce(bus);
	/* 2. REST requests in flight. */
	if (http) {
		if (stopping) {
			atomic_store(&wd.step, "REST requests in flight");
		}
		http_server_stop(
		    http, stopping ? remaining_ms(&wd)
		                   : (int)ms_config_int(
		                         cfg, "node.shutdown_timeout_ms"));
	}
	/* 3. The relays: what is not confirmed stays in the outbox. */
	if (stopping) {
		atomic_store(&wd.step,
		             "the outbox relays' publishes in flight");
	}
	for (size_t i = 0; i < nhosted; i++) {
		bus_relay_stop(hosted[i].relay);
	}
	/* 4. The bus: gRPC calls and event deliveries in flight. */
	if (stopping) {
		atomic_store(&wd.step, "gRPC calls and event deliveries in "
		                       "flight");
	}
	bus_stop(bus);
	/* 5. The modules. */
	if (stopping) {
		atomic_store(&wd.step, "closing the modules' databases");
	}
	for (size_t i = nhosted; i-- > 0;) {
		if (hosted[i].mod->stop) {
			hosted[i].mod->stop(hosted[i].state);
		}
	}
	for (size_t i = nhosted; i-- > 0;) {
		hosted[i].mod->fini(hosted[i].state);
	}
	bus_destroy(bus);
	http_router_destroy(router);
	if (stopping) {
		watchdog_stop(&wd);
	}
	if (status == 0) {
		MS_INFO("main", "stopped cleanly");
	}
	ms_config_destroy(cfg);
	return status;
}
