/* SPDX-License-Identifier: MIT */
/*
 * Scenario 1 of bench/README.md: the cost of one Discount lookup
 * (GetDiscount) through the bus, side by side: a direct call of the handler,
 * the in-process bus (local transport), gRPC on loopback (a serving bus and
 * a client bus in this process, our nghttp2 transport in between) and nng
 * when this build has it. Each mode is measured with one call in flight
 * (per-call p50/p99, and the mean over timed batches, which takes the clock
 * out of the sub-microsecond figures) and with --threads calls in flight
 * (calls per second). The modes are interleaved, round after round, so
 * that a noisy neighbour hurts them all alike; one JSON object per line
 * goes to stdout for bench/bench.py to aggregate.
 *
 * The handler is an in-memory table holding Discount's two seed coupons,
 * the same data bench/ref_grpc_server.cc serves, so that the figures are
 * the bus's and the transports'. The "-db" modes add the real Discount
 * module (SQLite in a temporary directory) for comparison.
 *
 * With --serve ADDR [--set KEY=VALUE]... the program only serves the
 * in-memory handler on a gRPC listener, configured with those settings
 * (scenario 2's server of ours, without SQLite) until SIGTERM/SIGINT, then
 * prints the monoshop_grpc_server_requests_total series (the gRPC status of
 * every call it answered) and exits.
 *
 * Every phase is bounded in time (--seconds), and so is each call
 * (bus.call_timeout_ms).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus_core.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "discount.pb-c.h"
#include "modules/module.h"
#include "transport/transport.h"

#define MAX_LAT_SAMPLES (4u << 20) /* per-call samples kept per phase */
#define BATCH           1000       /* calls per timed batch */
#define MAX_THREADS     256
#define PRODUCT         "IPhone X"

static const ProtobufCServiceDescriptor *svc =
    &discount__discount_proto_service__descriptor;

/* ---- the in-memory handler --------------------------------------------- */

struct coupon {
	int32_t id;
	const char *name;
	const char *desc;
	int32_t amount;
};

/* Discount's seed (src/modules/discount/discount_store.c). */
static const struct coupon coupons[] = {
    {1, "IPhone X", "IPhone Discount", 150},
    {2, "Samsung 10", "Samsung Discount", 100},
};

/*
 * mem_get answers GetDiscount from |coupons|, as Discount does from its
 * table: the coupon, or the original's zero coupon when there is none. Its
 * strings are static, so it needs nothing from |rpc| and can be called
 * directly with rpc NULL.
 */
static int
mem_get(void *ctx, struct bus_rpc *rpc, const ProtobufCMessage *req,
        ProtobufCMessage *reply)
{
	const Discount__GetDiscountRequest *in = (const void *)req;
	Discount__CouponModel *out = (void *)reply;
	const char *name = in->productname ? in->productname : "";

	(void)ctx;
	(void)rpc;
	for (size_t i = 0; i < sizeof(coupons) / sizeof(coupons[0]); i++) {
		if (strcmp(coupons[i].name, name) == 0) {
			out->id = coupons[i].id;
			out->productname = (char *)coupons[i].name;
			out->description = (char *)coupons[i].desc;
			out->amount = coupons[i].amount;
			return 0;
		}
	}
	out->id = 0;
	out->productname = (char *)"No Discount";
	out->description = (char *)"No Discount Desc";
	out->amount = 0;
	return 0;
}

static const bus_handler_fn mem_handlers[4] = {mem_get, NULL, NULL, NULL};

/* ---- modes ------------------------------------------------------------- */

enum kind {
	K_DIRECT, /* mem_get called as a function */
	K_BUS,    /* bus_call on |bus| */
};

struct mode {
	const char *name;
	enum kind kind;
	struct bus *bus; /* K_BUS: the calling bus */
	bool on;
};

static atomic_int errors_shown;

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* one_call performs one lookup in |m|'s way; 0 when it succeeded with the
 * expected coupon. */
static int
one_call(const struct mode *m)
{
	Discount__GetDiscountRequest req = DISCOUNT__GET_DISCOUNT_REQUEST__INIT;
	int rc;

	req.productname = (char *)PRODUCT;
	if (m->kind == K_DIRECT) {
		Discount__CouponModel out = DISCOUNT__COUPON_MODEL__INIT;

		rc = mem_get(NULL, NULL, &req.base, &out.base);
		/* Keep the compiler from dropping the call. */
		__asm__ volatile("" : : "r"(&out) : "memory");
		return rc == 0 && out.amount == 150 ? 0 : -1;
	} else {
		ProtobufCMessage *reply = NULL;
		struct bus_status st;
		int ok;

		rc = bus_call(m->bus, svc, "GetDiscount", &req.base, &reply, 0,
		              &st);
		if (rc != 0) {
			/* The first few failures are shown: a benchmark
			 * that fails quietly measures nothing. */
			if (atomic_fetch_add(&errors_shown, 1) < 5) {
				fprintf(stderr, "bus_bench: %s: %s: %s\n",
				        m->name, ms_errname(rc), st.detail);
			}
			return rc;
		}
		ok = ((Discount__CouponModel *)reply)->amount == 150;
		protobuf_c_message_free_unpacked(reply, NULL);
		return ok ? 0 : -1;
	}
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* One call in flight for |seconds|: per-call samples, then batch means. */
static void
run_latency(const struct mode *m, double seconds, int round)
{
	static int64_t samples[MAX_LAT_SAMPLES];
	size_t n = 0, errors = 0, batches = 0;
	int64_t half = (int64_t)(seconds * 0.5e9);
	int64_t t0, end, batch_ns = 0;
	double best_batch = 1e18;

	for (int i = 0; i < 200; i++) { /* warm up: connection, caches */
		(void)one_call(m);
	}
	t0 = now_ns();
	end = t0 + half;
	while (n < MAX_LAT_SAMPLES) {
		int64_t a = now_ns(), b;

		if (a >= end) {
			break;
		}
		if (one_call(m) != 0) {
			errors++;
		}
		b = now_ns();
		samples[n++] = b - a;
	}
	/* Batches: the clock read once per BATCH calls. */
	end = now_ns() + half;
	while (now_ns() < end) {
		int64_t a = now_ns(), d;

		for (int i = 0; i < BATCH; i++) {
			if (one_call(m) != 0) {
				errors++;
			}
		}
		d = now_ns() - a;
		batch_ns += d;
		batches++;
		if ((double)d / BATCH < best_batch) {
			best_batch = (double)d / BATCH;
		}
	}
	qsort(samples, n, sizeof(samples[0]), cmp_i64);
	printf(
	    "{\"scenario\":\"bus\",\"metric\":\"latency\",\"mode\":\"%s\","
	    "\"round\":%d,\"calls\":%zu,\"errors\":%zu,\"p50_us\":%.3f,"
	    "\"p99_us\":%.3f,\"mean_us\":%.4f,\"best_batch_us\":%.4f}\n",
	    m->name, round, n, errors, n ? (double)samples[n / 2] / 1e3 : 0.0,
	    n ? (double)samples[(size_t)((double)n * 0.99)] / 1e3 : 0.0,
	    batches ? (double)batch_ns / (double)(batches * BATCH) / 1e3 : 0.0,
	    batches ? best_batch / 1e3 : 0.0);
	fflush(stdout);
}

struct worker {
	pthread_t th;
	const struct mode *m;
	atomic_bool *stop;
	uint64_t calls;
	uint64_t errors;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		if (one_call(w->m) != 0) {
			w->errors++;
		}
		w->calls++;
	}
	return NULL;
}

/* |threads| calls in flight for |seconds|: calls per second. */
static void
run_throughput(const struct mode *m, int threads, double seconds, int round)
{
	static struct worker ws[MAX_THREADS];
	atomic_bool stop;
	struct timespec ts;
	uint64_t calls = 0, errors = 0;
	int64_t t0, t1;
	int started = 0;

	atomic_init(&stop, false);
	t0 = now_ns();
	for (int i = 0; i < threads; i++) {
		memset(&ws[i], 0, sizeof(ws[i]));
		ws[i].m = m;
		ws[i].stop = &stop;
		if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0) {
			break;
		}
		started++;
	}
	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
	atomic_store(&stop, true);
	for (int i = 0; i < started; i++) {
		pthread_join(ws[i].th, NULL);
		calls += ws[i].calls;
		errors += ws[i].errors;
	}
	t1 = now_ns();
	printf(
	    "{\"scenario\":\"bus\",\"metric\":\"throughput\",\"mode\":\"%s\","
	    "\"round\":%d,\"threads\":%d,\"calls\":%llu,\"errors\":%llu,"
	    "\"per_s\":%.1f}\n",
	    m->name, round, started, (unsigned long long)calls,
	    (unsigned long long)errors,
	    (double)calls * 1e9 / (double)(t1 - t0));
	fflush(stdout);
}

/* ---- setting up buses --------------------------------------------------- */

static struct ms_config *
config(const char *const *sets)
{
	struct ms_config *cfg;
	char err[256];

	if (ms_config_create(&cfg) != 0) {
		fprintf(stderr, "bus_bench: out of memory\n");
		exit(1);
	}
	for (; *sets; sets++) {
		if (ms_config_set(cfg, *sets, "bench", err, sizeof(err)) != 0) {
			fprintf(stderr, "bus_bench: %s: %s\n", *sets, err);
			exit(1);
		}
	}
	return cfg;
}

static void
start_or_die(struct bus *bus, const char *what)
{
	char err[256] = "";
	int rc = bus_start(bus, err, sizeof(err));

	if (rc != 0) {
		fprintf(stderr, "bus_bench: %s: %s (%s)\n", what,
		        ms_strerror(rc), err);
		exit(1);
	}
}

/* free_port returns a loopback TCP port that was free a moment ago. */
static int
free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
		port = ntohs(sa.sin_port);
	}
	if (fd >= 0) {
		close(fd);
	}
	if (port == 0) {
		fprintf(stderr, "bus_bench: no free port\n");
		exit(1);
	}
	return port;
}

/* A bus calling Discount at |url| (remote.discount). */
static struct bus *
client_bus(const char *url, struct ms_config **cfgp)
{
	char set[160];
	const char *sets[] = {set, "bus.call_timeout_ms=5000", NULL};
	struct bus *bus;

	snprintf(set, sizeof(set), "remote.discount=%s", url);
	*cfgp = config(sets);
	if (bus_create(&bus, *cfgp) != 0 ||
	    bus_require(bus, "discount", svc->name) != 0) {
		fprintf(stderr, "bus_bench: out of memory\n");
		exit(1);
	}
	start_or_die(bus, url);
	return bus;
}

/* ---- --serve ------------------------------------------------------------ */

static int
serve(const char *listen, char **extra, int nextra)
{
	char set[160];
	const char *sets[8] = {set};
	struct ms_config *cfg;
	struct bus *bus;
	sigset_t sigs;
	char *text = NULL;
	size_t len = 0;
	int sig;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	snprintf(set, sizeof(set), "grpc.listen=%s", listen);
	for (int i = 0; i < nextra && i + 2 < (int)MS_ARRAY_SIZE(sets); i++) {
		sets[i + 1] = extra[i];
	}
	cfg = config(sets);
	if (bus_create(&bus, cfg) != 0 ||
	    bus_serve(bus, svc, mem_handlers, NULL) != 0 ||
	    bus_inline(bus, svc, "GetDiscount") != 0) {
		fprintf(stderr, "bus_bench: out of memory\n");
		return 1;
	}
	start_or_die(bus, listen);
	printf("ready\n");
	fflush(stdout);
	do {
		if (sigwait(&sigs, &sig) != 0) {
			sig = SIGTERM;
		}
	} while (sig != SIGINT && sig != SIGTERM);
	bus_stop(bus);
	/* The gRPC status of every call answered, for the status check. */
	if (ms_metrics_render(&text, &len) == 0) {
		char *save = NULL;

		for (char *l = strtok_r(text, "\n", &save); l;
		     l = strtok_r(NULL, "\n", &save)) {
			if (strncmp(l, "monoshop_grpc_server_requests_total{",
			            36) == 0) {
				printf("%s\n", l);
			}
		}
		free(text);
	}
	bus_destroy(bus);
	ms_config_destroy(cfg);
	return 0;
}

/* ---- main --------------------------------------------------------------- */

static void
usage(void)
{
	fprintf(stderr,
	        "usage: bus_bench [--seconds S] [--rounds R] [--threads T] "
	        "[--modes a,b,...] [--db-dir DIR]\n"
	        "       bus_bench --serve HOST:PORT [--set KEY=VALUE]...\n"
	        "modes: direct local grpc nng local-db grpc-db "
	        "(nng when this build has it)\n");
	exit(2);
}

static bool
wanted(const char *modes, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = modes; p && *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		if (len == n && strncmp(p, name, n) == 0) {
			return true;
		}
		p = e ? e + 1 : NULL;
	}
	return false;
}

int
main(int argc, char **argv)
{
	double seconds = 1.0;
	int rounds = 3, threads = 64;
	const char *modes = "direct,local,grpc,nng,local-db,grpc-db";
	const char *db_dir = NULL;
	struct ms_config *cfg_mem, *cfg_db = NULL, *cfg_g, *cfg_n = NULL,
	                           *cfg_gdb = NULL;
	struct bus *mem, *db = NULL, *grpc, *nng = NULL, *grpc_db = NULL;
	void *dstate = NULL;
	bool have_nng = bus_transport_find("nng+tcp://x") != NULL;
	char l1[64], l2[64], l3[64], url[96];
	struct mode m[6];
	size_t nm = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--serve") == 0 && v) {
			/* Then --set KEY=VALUE pairs, e.g. grpc.busy_poll_us.
			 */
			char *extra[6];
			int nextra = 0;

			for (int j = i + 2; j + 1 < argc; j += 2) {
				if (strcmp(argv[j], "--set") != 0 ||
				    nextra == 6) {
					usage();
				}
				extra[nextra++] = argv[j + 1];
			}
			if ((argc - i - 2) % 2 != 0) {
				usage();
			}
			ms_log_set_level(MS_LOG_WARN);
			return serve(v, extra, nextra);
		} else if (strcmp(a, "--seconds") == 0 && v) {
			seconds = atof(v);
		} else if (strcmp(a, "--rounds") == 0 && v) {
			rounds = atoi(v);
		} else if (strcmp(a, "--threads") == 0 && v) {
			threads = atoi(v);
		} else if (strcmp(a, "--modes") == 0 && v) {
			modes = v;
		} else if (strcmp(a, "--db-dir") == 0 && v) {
			db_dir = v;
		} else {
			usage();
		}
		i++;
	}
	if (seconds <= 0 || seconds > 60 || rounds < 1 || rounds > 20 ||
	    threads < 1 || threads > MAX_THREADS) {
		usage();
	}
	ms_log_set_level(MS_LOG_WARN);
	if (getenv("BUS_BENCH_LOG") != NULL) {
		enum ms_log_level lv;

		if (ms_log_parse_level(getenv("BUS_BENCH_LOG"), &lv) == 0) {
			ms_log_set_level(lv);
		}
	}
	signal(SIGPIPE, SIG_IGN);

	/* The serving bus: the in-memory handler, on gRPC (and nng). */
	snprintf(l1, sizeof(l1), "grpc.listen=127.0.0.1:%d", free_port());
	snprintf(l2, sizeof(l2), "nng.listen=tcp://127.0.0.1:%d", free_port());
	{
		const char *sets[] = {l1, have_nng ? l2 : NULL, NULL};

		cfg_mem = config(sets);
	}
	if (bus_create(&mem, cfg_mem) != 0 ||
	    bus_serve(mem, svc, mem_handlers, NULL) != 0 ||
	    bus_inline(mem, svc, "GetDiscount") != 0 ||
	    bus_require(mem, "discount", svc->name) != 0) {
		fprintf(stderr, "bus_bench: out of memory\n");
		return 1;
	}
	start_or_die(mem, "serving bus");
	snprintf(url, sizeof(url), "grpc://%s", l1 + strlen("grpc.listen="));
	grpc = client_bus(url, &cfg_g);
	if (have_nng) {
		snprintf(url, sizeof(url), "nng+tcp://%s",
		         l2 + strlen("nng.listen=tcp://"));
		nng = client_bus(url, &cfg_n);
	}

	/* The real Discount module (SQLite), served on a second listener. */
	if (db_dir && (wanted(modes, "local-db") || wanted(modes, "grpc-db"))) {
		char dd[300];
		const char *sets[] = {l3, dd, NULL};
		struct module_ctx ctx;
		int rc;

		snprintf(l3, sizeof(l3), "grpc.listen=127.0.0.1:%d",
		         free_port());
		snprintf(dd, sizeof(dd), "node.data_dir=%s", db_dir);
		cfg_db = config(sets);
		memset(&ctx, 0, sizeof(ctx));
		if (bus_create(&db, cfg_db) != 0) {
			return 1;
		}
		ctx.bus = db;
		ctx.cfg = cfg_db;
		ctx.data_dir = db_dir;
		if ((rc = discount_module.init(&ctx, &dstate)) != 0) {
			fprintf(stderr, "bus_bench: discount init: %s\n",
			        ms_strerror(rc));
			return 1;
		}
		bus_require(db, "discount", svc->name);
		start_or_die(db, "discount bus");
		snprintf(url, sizeof(url), "grpc://%s",
		         l3 + strlen("grpc.listen="));
		grpc_db = client_bus(url, &cfg_gdb);
	}

	m[nm++] = (struct mode){"direct", K_DIRECT, NULL, true};
	m[nm++] = (struct mode){"local", K_BUS, mem, true};
	m[nm++] = (struct mode){"grpc", K_BUS, grpc, true};
	m[nm++] = (struct mode){"nng", K_BUS, nng, nng != NULL};
	m[nm++] = (struct mode){"local-db", K_BUS, db, db != NULL};
	m[nm++] = (struct mode){"grpc-db", K_BUS, grpc_db, grpc_db != NULL};
	for (size_t i = 0; i < nm; i++) {
		m[i].on = m[i].on && wanted(modes, m[i].name);
		/* A mode that cannot answer is left out, loudly. */
		if (m[i].on && one_call(&m[i]) != 0) {
			fprintf(stderr, "bus_bench: mode %s does not answer\n",
			        m[i].name);
			m[i].on = false;
		}
	}
	printf("{\"scenario\":\"bus\",\"metric\":\"modes\",\"nng_built\":%s}\n",
	       have_nng ? "true" : "false");
	for (int r = 1; r <= rounds; r++) {
		for (size_t i = 0; i < nm; i++) {
			if (m[i].on) {
				run_latency(&m[i], seconds, r);
			}
		}
		for (size_t i = 0; i < nm; i++) {
			if (m[i].on) {
				run_throughput(&m[i], threads, seconds, r);
			}
		}
	}

	bus_destroy(grpc);
	bus_destroy(nng);
	bus_destroy(grpc_db);
	bus_stop(db);
	if (dstate) {
		discount_module.stop(dstate);
		discount_module.fini(dstate);
	}
	bus_destroy(db);
	bus_destroy(mem);
	ms_config_destroy(cfg_g);
	ms_config_destroy(cfg_n);
	ms_config_destroy(cfg_gdb);
	ms_config_destroy(cfg_db);
	ms_config_destroy(cfg_mem);
	return 0;
}
