/* SPDX-License-Identifier: MIT */
/*
 * Configuration (config.h): one static table of every key the program
 * knows — its type, default, bounds and help — and three sources that set
 * them: an INI file, the MONOSHOP_* environment and --set assignments.
 *
 * Every value, whatever its source, goes through the validator of its
 * key's type and is stored in a normal form (sizes as bytes, booleans as
 * "true"/"false", module lists space separated), so the rest of the program
 * reads one spelling. Each stored value remembers the rank of its source
 * (default < file < environment < --set) and a source never replaces a
 * value of a higher rank: the documented precedence holds whatever order
 * main() loads the sources in. A value is validated even when a higher
 * source overrides it, so a typo in the file is reported, not hidden.
 *
 * Errors name where the value came from and the key:
 *   dev.ini:12: http.listen: expected HOST:PORT, got 'abc'
 *   MONOSHOP_HTTP_LISTEN: http.listen: expected HOST:PORT, got 'abc'
 *   --set: http.listen: expected HOST:PORT, got 'abc'
 *
 * Threads: built by main() before other threads start, then read only.
 * Memory: struct ms_config owns every value string; ms_config_str hands out
 * pointers into it that live until ms_config_destroy.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config.h"
#include "core/err.h"
#include "core/util.h"

/* Bounds on input: a line of the file, a value, a quoted value in an error
 * message. */
#define LINE_MAX_ 4096
#define VALUE_MAX 1024
#define QUOTE_MAX 80

enum ktype {
	KT_STRING,     /* any non-empty text */
	KT_INT,        /* integer in [min, max] */
	KT_SIZE,       /* byte count with optional K/M/G suffix, [min, max] */
	KT_BOOL,       /* true/false/yes/no/on/off/1/0 */
	KT_ENUM,       /* one of |words| */
	KT_HOSTPORT,   /* HOST:PORT or [IPv6]:PORT, port 0..65535 */
	KT_MODULES,    /* list of module names */
	KT_URL_REMOTE, /* grpc://, nng+tcp://, nng+ipc://; empty = unset */
	KT_URL_BROKER, /* amqp://, nng+tcp://, nng+ipc://; empty = unset */
	KT_URL_NNG,    /* tcp://, ipc://; empty = unset */
	KT_SECRET,     /* an access key: never echoed in messages */
};

struct keydef {
	const char *name; /* "section.key" */
	enum ktype type;
	const char *def;   /* default text, NULL = unset */
	int64_t min, max;  /* KT_INT, KT_SIZE */
	const char *words; /* KT_ENUM: '|'-separated allowed words */
	const char *help;
};

/* One-line constructors for the table below (clang-format would spread
 * each over four lines). */
/* clang-format off */
#define K_STR(n, d, h) {n, KT_STRING, d, 0, 0, NULL, h}
#define K_INT(n, d, lo, hi, h) {n, KT_INT, d, lo, hi, NULL, h}
#define K_SIZE(n, d, lo, hi, h) {n, KT_SIZE, d, lo, hi, NULL, h}
#define K_BOOL(n, d, h) {n, KT_BOOL, d, 0, 0, NULL, h}
#define K_ENUM(n, d, w, h) {n, KT_ENUM, d, 0, 0, w, h}
#define K_TYPE(n, t, d, h) {n, t, d, 0, 0, NULL, h}
#define K_SECRET(n, h) {n, KT_SECRET, NULL, 0, 0, NULL, h}
/* clang-format on */

/* Access keys: long enough not to be guessed, printable ASCII so that they
 * fit an HTTP header and gRPC metadata unchanged. */
#define SECRET_MIN 16
#define SECRET_MAX 256

static const struct keydef keys[] = {
    K_TYPE("node.modules", KT_MODULES, "basket discount ordering",
           "modules this process hosts (basket, discount, ordering), "
           "space or comma separated"),
    K_STR("node.data_dir", "data", "directory of this process's SQLite files"),
    K_INT("node.shutdown_timeout_ms", "10000", 0, 600000,
          "SIGTERM: how long the graceful shutdown may take, from the "
          "signal (work still running 2 s later is abandoned; exit 0)"),
    K_ENUM("log.level", "info", "debug|info|warn|error",
           "lowest level written to stderr"),
    K_TYPE("http.listen", KT_HOSTPORT, "127.0.0.1:8080",
           "REST listener (port 0 = pick a free one and log it)"),
    K_SIZE("http.max_body", "1M", 1024, 64 << 20,
           "largest request body accepted (413 above)"),
    K_INT("http.threads", "4", 1, 256, "REST worker threads"),
    K_INT("http.max_connections", "1024", 1, 100000,
          "concurrent REST connections"),
    K_INT("http.connection_timeout_s", "30", 1, 3600,
          "idle REST connection timeout"),
    K_SIZE("http.max_header_size", "32K", 4096, 1 << 20,
           "largest request line plus headers a REST connection may send "
           "(libmicrohttpd's per-connection memory; larger: 431)"),
    K_INT("http.max_json_depth", "32", 1, 1024,
          "deepest nesting of objects and arrays in a REST request body "
          "(deeper: 400)"),
    K_SECRET("http.api_key",
             "when set, REST writes (POST, PUT, DELETE) need the header "
             "X-Api-Key with this value (401 otherwise); reads, /health and "
             "/metrics stay open; 16 to 256 printable ASCII characters"),
    K_TYPE("grpc.listen", KT_HOSTPORT, "127.0.0.1:8081",
           "gRPC (HTTP/2, h2c) listener for the hosted modules"),
    K_SIZE("grpc.max_message", "4M", 1024, 64 << 20,
           "largest gRPC message sent or received"),
    K_INT("grpc.threads", "4", 1, 256, "gRPC handler worker threads"),
    K_INT("grpc.max_concurrent_streams", "100", 1, 100000,
          "concurrent gRPC calls per connection"),
    K_INT("grpc.max_connections", "1024", 1, 100000,
          "concurrent gRPC connections"),
    K_INT("grpc.idle_timeout_s", "300", 0, 86400,
          "server: close (GOAWAY) a connection that has no call and sent "
          "no frame for this long (0 = never)"),
    K_INT("grpc.request_timeout_s", "30", 1, 3600,
          "server: longest time a connection may take to send its preface "
          "and a call its request (headers and message); slower: "
          "closed / CANCELLED"),
    K_SECRET("grpc.api_key",
             "when set, the admin RPCs a module marks as such (Discount's "
             "Create, Update, DeleteDiscount) need the metadata x-api-key "
             "with this value (UNAUTHENTICATED otherwise); 16 to 256 "
             "printable ASCII characters"),
    K_STR("grpc.tls_cert", NULL,
          "server: PEM certificate chain; with grpc.tls_key, the gRPC "
          "listener speaks TLS (ALPN h2) instead of h2c"),
    K_STR("grpc.tls_key", NULL, "server: PEM private key of grpc.tls_cert"),
    K_STR("grpc.tls_ca", NULL,
          "client: PEM file of the CAs trusted for grpcs:// remotes "
          "(unset: the system's trust store)"),
    K_INT("grpc.keepalive_permit_ms", "300000", 0, 86400000,
          "shortest client ping interval tolerated (more often: GOAWAY "
          "too_many_pings)"),
    K_INT("grpc.keepalive_ms", "0", 0, 86400000,
          "client: ping an idle connection with calls in flight after "
          "this long (0 = off)"),
    K_INT("grpc.busy_poll_us", "0", 0, 1000,
          "server and client loops: after handling I/O, poll this long "
          "without sleeping before blocking again (lower latency at a "
          "few calls in flight, for CPU; 0 = off)"),
    K_INT("grpc.connect_timeout_ms", "1000", 1, 600000,
          "client: how long a connect may take"),
    K_INT("grpc.retry_max_attempts", "3", 1, 5,
          "client: attempts per call, the first included, where the "
          "call was not processed"),
    K_INT("grpc.retry_backoff_ms", "50", 1, 60000,
          "client: initial retry backoff (full jitter, doubling)"),
    K_INT("grpc.retry_backoff_max_ms", "1000", 1, 600000,
          "client: largest retry backoff"),
    K_INT("grpc.breaker_failures", "5", 1, 1000,
          "client: consecutive failures that open the circuit"),
    K_INT("grpc.breaker_open_ms", "2000", 1, 600000,
          "client: how long an open circuit fails fast before a probe"),
    K_TYPE("remote.discount", KT_URL_REMOTE, NULL,
           "where Discount lives when not hosted here "
           "(grpc://HOST:PORT, grpcs://HOST:PORT for TLS, "
           "nng+tcp://HOST:PORT, nng+ipc:///path)"),
    K_TYPE("remote.basket", KT_URL_REMOTE, NULL,
           "where Basket lives when not hosted here"),
    K_TYPE("remote.ordering", KT_URL_REMOTE, NULL,
           "where Ordering lives when not hosted here"),
    K_TYPE("events.broker", KT_URL_BROKER, NULL,
           "where events go: unset = in-process; amqp://user:pass@host:"
           "port/vhost = RabbitMQ; nng+tcp:// or nng+ipc:// = straight to "
           "the consumer's nng listener"),
    K_INT("events.relay_batch", "64", 1, 1024,
          "outbox events the relay has in flight at once"),
    K_INT("events.relay_poll_ms", "1000", 10, 60000,
          "outbox relay poll interval when idle"),
    K_INT("events.max_redeliveries", "5", 0, 100,
          "redeliveries of a failing event (after its first delivery) "
          "before it goes to the error queue"),
    K_INT("events.prefetch", "16", 1, 65535,
          "amqp: deliveries the broker may have unacknowledged with "
          "this consumer (basic.qos); those in hand are handled in "
          "batches of up to half of it, one transaction each"),
    K_INT("events.heartbeat_s", "10", 0, 600,
          "amqp: heartbeat interval asked of the broker (0 = off; two "
          "missed beats drop the connection)"),
    K_INT("events.confirm_timeout_ms", "5000", 100, 600000,
          "amqp: how long a publish may wait for the broker's confirm "
          "(and a broker reply to a command) before it counts as failed"),
    K_INT("events.connect_timeout_ms", "5000", 100, 600000,
          "amqp: how long connecting and logging in may take"),
    K_INT("events.reconnect_max_ms", "5000", 100, 600000,
          "amqp: longest wait between two connection attempts "
          "(exponential backoff with jitter)"),
    K_SIZE("events.max_message", "4M", 1024, 128 << 20,
           "amqp: largest message body consumed (larger ones are "
           "rejected without requeue)"),
    K_TYPE("nng.listen", KT_URL_NNG, NULL,
           "nng listener for RPC and incoming events (tcp://HOST:PORT, "
           "ipc:///path)"),
    K_SIZE("nng.max_message", "4M", 1024, 64 << 20,
           "largest call, reply or event payload sent or received over "
           "nng"),
    K_INT("nng.threads", "4", 1, 256,
          "nng listener: worker threads running handlers and consumers"),
    K_INT("nng.connect_timeout_ms", "1000", 1, 600000,
          "nng client: how long a call or event waits for a connection "
          "before it fails as unavailable"),
    K_INT("bus.call_timeout_ms", "5000", 1, 600000,
          "default deadline of a bus call"),
    K_ENUM("store.synchronous", "normal", "normal|full",
           "SQLite synchronous mode: normal survives a process crash, "
           "full also a power loss"),
    K_INT("store.busy_timeout_ms", "5000", 0, 600000,
          "how long SQLite waits on a locked database"),
    K_BOOL("debug.hold_events", "false",
           "test hook: the outbox relay delivers nothing while true "
           "(events stay pending)"),
    K_INT("debug.discount_delay_ms", "0", 0, 60000,
          "test hook: Discount's handlers wait this long before "
          "answering (to make deadlines expire on purpose)"),
};

#define NKEYS MS_ARRAY_SIZE(keys)

/* Source ranks, lowest first: a value is only replaced by an equal or
 * higher rank. */
enum rank {
	RANK_DEFAULT,
	RANK_FILE,
	RANK_ENV,
	RANK_SET,
};

struct value {
	char *text;     /* normal form, owned; NULL when unset */
	int64_t num;    /* KT_INT, KT_SIZE: the value; KT_BOOL: 0 or 1 */
	enum rank rank; /* of the source that set it */
};

struct ms_config {
	struct value v[NKEYS];
};

static const char *const module_names[] = {"basket", "discount", "ordering"};

/* ---- small helpers ---- */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		(void)vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return MS_ECONFIG;
}

static int
find_key(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++) {
		if (strcmp(keys[i].name, name) == 0) {
			return (int)i;
		}
	}
	return -1;
}

static bool
known_section(const char *sec, size_t len)
{
	for (size_t i = 0; i < NKEYS; i++) {
		if (strncmp(keys[i].name, sec, len) == 0 &&
		    keys[i].name[len] == '.') {
			return true;
		}
	}
	return false;
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' ||
	       c == '\v';
}

/* trim strips leading and trailing white space in place. */
static char *
trim(char *s)
{
	size_t n;

	while (is_space(*s)) {
		s++;
	}
	n = strlen(s);
	while (n > 0 && is_space(s[n - 1])) {
		s[--n] = '\0';
	}
	return s;
}

static bool
has_ctl_or_space(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s <= 0x20 || *s == 0x7f) {
			return true;
		}
	}
	return false;
}

/* parse_i64 reads an optionally negative decimal integer at the start of
 * |s|, setting *end past it; false when there is none or it overflows. */
static bool
parse_i64(const char *s, int64_t *out, const char **end)
{
	bool neg = *s == '-';
	uint64_t v = 0;
	const char *p = s + neg;

	if (*p < '0' || *p > '9') {
		return false;
	}
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > ((uint64_t)INT64_MAX - (uint64_t)(*p - '0')) / 10) {
			return false;
		}
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*out = neg ? -(int64_t)v : (int64_t)v;
	*end = p;
	return true;
}

/* size_text writes |n| bytes with the largest exact suffix ("64M"). */
static void
size_text(int64_t n, char *buf, size_t len)
{
	if (n != 0 && n % (1 << 30) == 0) {
		(void)snprintf(buf, len, "%" PRId64 "G", n >> 30);
	} else if (n != 0 && n % (1 << 20) == 0) {
		(void)snprintf(buf, len, "%" PRId64 "M", n >> 20);
	} else if (n != 0 && n % (1 << 10) == 0) {
		(void)snprintf(buf, len, "%" PRId64 "K", n >> 10);
	} else {
		(void)snprintf(buf, len, "%" PRId64, n);
	}
}

/* ---- validators: each returns true with the normal form in |out| (or
 * NULL for "unset"), or false with the expectation in |why| ---- */

struct parsed {
	char text[VALUE_MAX + 1];
	bool unset;
	int64_t num;
};

static bool
check_int(const struct keydef *k, const char *s, struct parsed *p, char *why,
          size_t wl)
{
	const char *end;
	int64_t v;

	if (!parse_i64(s, &v, &end) || *end != '\0' || v < k->min ||
	    v > k->max) {
		(void)snprintf(
		    why, wl, "expected an integer from %" PRId64 " to %" PRId64,
		    k->min, k->max);
		return false;
	}
	p->num = v;
	(void)snprintf(p->text, sizeof(p->text), "%" PRId64, v);
	return true;
}

static bool
check_size(const struct keydef *k, const char *s, struct parsed *p, char *why,
           size_t wl)
{
	char lo[32], hi[32];
	const char *end;
	int64_t v, mult = 1;

	if (*s == '-' || !parse_i64(s, &v, &end)) {
		goto bad;
	}
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mult = (int64_t)1 << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mult = (int64_t)1 << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mult = (int64_t)1 << 30;
		end++;
		break;
	default:
		goto bad;
	}
	if (*end != '\0' || v > INT64_MAX / mult) {
		goto bad;
	}
	v *= mult;
	if (v < k->min || v > k->max) {
		goto bad;
	}
	p->num = v;
	(void)snprintf(p->text, sizeof(p->text), "%" PRId64, v);
	return true;
bad:
	size_text(k->min, lo, sizeof(lo));
	size_text(k->max, hi, sizeof(hi));
	(void)snprintf(why, wl,
	               "expected a size from %s to %s (bytes, or with a K, M "
	               "or G suffix)",
	               lo, hi);
	return false;
}

static bool
check_bool(const char *s, struct parsed *p, char *why, size_t wl)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	for (size_t i = 0; i < MS_ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
			p->num = strcasecmp(s, yes[i]) == 0;
			ms_strlcpy(p->text, p->num ? "true" : "false",
			           sizeof(p->text));
			return true;
		}
	}
	(void)snprintf(why, wl, "expected true/false, yes/no, on/off or 1/0");
	return false;
}

static bool
check_enum(const struct keydef *k, const char *s, struct parsed *p, char *why,
           size_t wl)
{
	const char *w = k->words;
	size_t n = strlen(s);
	size_t o;

	while (*w != '\0') {
		size_t wlen = strcspn(w, "|");
		if (wlen == n && strncasecmp(w, s, n) == 0) {
			memcpy(p->text, w, n);
			p->text[n] = '\0';
			return true;
		}
		w += wlen + (w[wlen] == '|');
	}
	o = (size_t)snprintf(why, wl, "expected one of ");
	for (w = k->words; *w != '\0' && o + 3 < wl; w++) {
		if (*w == '|') {
			why[o++] = ',';
			why[o++] = ' ';
		} else {
			why[o++] = *w;
		}
	}
	why[o] = '\0';
	return false;
}

/* hostport_ok checks "HOST:PORT" or "[v6]:PORT"; port 0 allowed only when
 * |allow_zero| (a listener may ask for any free port, a peer may not). */
static bool
hostport_ok(const char *s, bool allow_zero)
{
	const char *colon, *port;
	const char *end;
	int64_t v;

	if (has_ctl_or_space(s)) {
		return false;
	}
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb == s + 1 || rb[1] != ':' ||
		    memchr(s + 1, '[', (size_t)(rb - s - 1)) != NULL) {
			return false;
		}
		port = rb + 2;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || colon == s ||
		    memchr(s, ':', (size_t)(colon - s)) != NULL) {
			/* No port, no host, or a bare IPv6 address: the
			 * latter must be bracketed to be unambiguous. */
			return false;
		}
		for (const char *h = s; h < colon; h++) {
			if (*h == '[' || *h == ']' || *h == '/' || *h == '@') {
				return false;
			}
		}
		port = colon + 1;
	}
	if (*port == '-' || strlen(port) > 5 || !parse_i64(port, &v, &end) ||
	    *end != '\0' || v > 65535 || (v == 0 && !allow_zero)) {
		return false;
	}
	return true;
}

static bool
check_hostport(const char *s, struct parsed *p, char *why, size_t wl)
{
	if (!hostport_ok(s, true)) {
		(void)snprintf(why, wl, "expected HOST:PORT (port 0-65535)");
		return false;
	}
	ms_strlcpy(p->text, s, sizeof(p->text));
	return true;
}

static bool
check_modules(const char *s, struct parsed *p, char *why, size_t wl)
{
	bool seen[MS_ARRAY_SIZE(module_names)] = {false};
	size_t o = 0, count = 0;

	while (*s != '\0') {
		size_t n;
		size_t m;

		s += strspn(s, " \t,");
		n = strcspn(s, " \t,");
		if (n == 0) {
			break;
		}
		for (m = 0; m < MS_ARRAY_SIZE(module_names); m++) {
			if (strlen(module_names[m]) == n &&
			    strncmp(module_names[m], s, n) == 0) {
				break;
			}
		}
		if (m == MS_ARRAY_SIZE(module_names)) {
			(void)snprintf(why, wl,
			               "unknown module '%.*s' (expected "
			               "basket, discount or ordering)",
			               (int)(n < QUOTE_MAX ? n : QUOTE_MAX), s);
			return false;
		}
		if (seen[m]) {
			(void)snprintf(why, wl, "module '%s' listed twice",
			               module_names[m]);
			return false;
		}
		seen[m] = true;
		if (count++ > 0) {
			p->text[o++] = ' ';
		}
		memcpy(p->text + o, module_names[m], n);
		o += n;
		s += n;
	}
	if (count == 0) {
		(void)snprintf(why, wl,
		               "expected at least one of basket, discount, "
		               "ordering");
		return false;
	}
	p->text[o] = '\0';
	return true;
}

struct scheme {
	const char *prefix;
	enum { REST_HOSTPORT, REST_PATH, REST_ANY } rest;
};

static const struct scheme remote_schemes[] = {
    {"grpc://", REST_HOSTPORT},
    {"grpcs://", REST_HOSTPORT},
    {"nng+tcp://", REST_HOSTPORT},
    {"nng+ipc://", REST_PATH},
};
static const struct scheme broker_schemes[] = {
    {"amqp://", REST_ANY},
    {"nng+tcp://", REST_HOSTPORT},
    {"nng+ipc://", REST_PATH},
};
static const struct scheme nng_schemes[] = {
    {"tcp://", REST_HOSTPORT},
    {"ipc://", REST_PATH},
};

static bool
check_url(const struct keydef *k, const char *s, struct parsed *p, char *why,
          size_t wl)
{
	const struct scheme *tab;
	size_t n;
	bool listen = k->type == KT_URL_NNG;

	switch (k->type) {
	case KT_URL_REMOTE:
		tab = remote_schemes;
		n = MS_ARRAY_SIZE(remote_schemes);
		break;
	case KT_URL_BROKER:
		tab = broker_schemes;
		n = MS_ARRAY_SIZE(broker_schemes);
		break;
	default:
		tab = nng_schemes;
		n = MS_ARRAY_SIZE(nng_schemes);
		break;
	}
	if (*s == '\0') {
		p->unset = true; /* empty = unset: lets --set undo a file */
		return true;
	}
	/*
	 * Test hook: "faulty+URL" is the fault-injecting wrapper of the tests
	 * (tests/support/tp_faulty.c) around URL, checked as usual; after it,
	 * "local://" names the in-process transport. monoshop itself has no
	 * such transport: bus_start refuses the scheme as any it lacks.
	 */
	if (!listen && strncmp(s, "faulty+", 7) == 0 && s[7] != '\0') {
		if (strcmp(s + 7, "local://") != 0 &&
		    !check_url(k, s + 7, p, why, wl)) {
			return false;
		}
		ms_strlcpy(p->text, s, sizeof(p->text));
		return true;
	}
	for (size_t i = 0; i < n && !has_ctl_or_space(s); i++) {
		size_t plen = strlen(tab[i].prefix);
		const char *rest = s + plen;
		bool ok;

		if (strncmp(s, tab[i].prefix, plen) != 0) {
			continue;
		}
		switch (tab[i].rest) {
		case REST_HOSTPORT:
			ok = hostport_ok(rest, listen);
			break;
		case REST_PATH:
			ok = rest[0] == '/' && rest[1] != '\0';
			break;
		default:
			ok = rest[0] != '\0';
			break;
		}
		if (!ok) {
			break;
		}
		ms_strlcpy(p->text, s, sizeof(p->text));
		return true;
	}
	switch (k->type) {
	case KT_URL_REMOTE:
		(void)snprintf(why, wl,
		               "expected grpc://HOST:PORT, grpcs://HOST:PORT, "
		               "nng+tcp://HOST:PORT or nng+ipc:///path (or "
		               "empty for unset)");
		break;
	case KT_URL_BROKER:
		(void)snprintf(why, wl,
		               "expected amqp://user:pass@host:port/vhost, "
		               "nng+tcp://HOST:PORT or nng+ipc:///path (or "
		               "empty for unset)");
		break;
	default:
		(void)snprintf(why, wl,
		               "expected tcp://HOST:PORT or ipc:///path (or "
		               "empty for unset)");
		break;
	}
	return false;
}

/* check_secret takes an access key: SECRET_MIN..SECRET_MAX printable
 * ASCII characters, no space (an HTTP header and gRPC metadata carry it
 * unchanged). The reason given never quotes the value. */
static bool
check_secret(const char *s, struct parsed *p, char *why, size_t wl)
{
	size_t n = strlen(s);

	for (const char *c = s; *c != '\0'; c++) {
		if (*c <= 0x20 || *c >= 0x7f) {
			n = 0;
			break;
		}
	}
	if (n < SECRET_MIN || n > SECRET_MAX) {
		(void)snprintf(why, wl,
		               "expected %d to %d printable ASCII characters "
		               "without spaces",
		               SECRET_MIN, SECRET_MAX);
		return false;
	}
	ms_strlcpy(p->text, s, sizeof(p->text));
	return true;
}

/* validate runs |k|'s validator over |s|. */
static bool
validate(const struct keydef *k, const char *s, struct parsed *p, char *why,
         size_t wl)
{
	memset(p, 0, sizeof(*p));
	if (strlen(s) > VALUE_MAX) {
		(void)snprintf(why, wl, "value longer than %d bytes",
		               VALUE_MAX);
		return false;
	}
	switch (k->type) {
	case KT_STRING:
		for (const char *c = s; *c != '\0'; c++) {
			if ((unsigned char)*c < 0x20 || *c == 0x7f) {
				(void)snprintf(why, wl,
				               "control character in value");
				return false;
			}
		}
		if (*s == '\0') {
			(void)snprintf(why, wl, "expected a non-empty value");
			return false;
		}
		ms_strlcpy(p->text, s, sizeof(p->text));
		return true;
	case KT_INT:
		return check_int(k, s, p, why, wl);
	case KT_SIZE:
		return check_size(k, s, p, why, wl);
	case KT_BOOL:
		return check_bool(s, p, why, wl);
	case KT_ENUM:
		return check_enum(k, s, p, why, wl);
	case KT_HOSTPORT:
		return check_hostport(s, p, why, wl);
	case KT_MODULES:
		return check_modules(s, p, why, wl);
	case KT_URL_REMOTE:
	case KT_URL_BROKER:
	case KT_URL_NNG:
		return check_url(k, s, p, why, wl);
	case KT_SECRET:
		return check_secret(s, p, why, wl);
	}
	return false;
}

/* store replaces |v| with the parsed value |p| from a source of |rank|.
 * Returns 0 or MS_ENOMEM (|v| unchanged). */
static int
store(struct value *v, const struct parsed *p, enum rank rank)
{
	char *text = NULL;

	if (!p->unset) {
		text = strdup(p->text);
		if (text == NULL) {
			return MS_ENOMEM;
		}
	}
	free(v->text);
	v->text = text;
	v->num = p->num;
	v->rank = rank;
	return 0;
}

/*
 * apply validates |raw| for key |idx| and stores it unless a source of a
 * higher rank already set the key. |where| names the source for errors.
 * Returns 0, MS_ECONFIG or MS_ENOMEM.
 */
static int
apply(struct ms_config *cfg, int idx, const char *raw, enum rank rank,
      const char *where, char *err, size_t errlen)
{
	const struct keydef *k = &keys[idx];
	struct value *v = &cfg->v[idx];
	struct parsed p;
	char why[160];
	int rc;

	if (!validate(k, raw, &p, why, sizeof(why))) {
		if (k->type == KT_SECRET) {
			/* A key that is almost right is still a secret. */
			return fail(err, errlen, "%s: %s: %s", where, k->name,
			            why);
		}
		return fail(err, errlen, "%s: %s: %s, got '%.*s%s'", where,
		            k->name, why, QUOTE_MAX, raw,
		            strlen(raw) > QUOTE_MAX ? "..." : "");
	}
	if (rank < v->rank) {
		return 0;
	}
	rc = store(v, &p, rank);
	if (rc != 0) {
		(void)fail(err, errlen, "%s: %s: %s", where, k->name,
		           ms_strerror(rc));
	}
	return rc;
}

/* ---- public API ---- */

int
ms_config_create(struct ms_config **out)
{
	struct ms_config *cfg = calloc(1, sizeof(*cfg));
	struct parsed p;
	char why[160];

	if (cfg == NULL) {
		return MS_ENOMEM;
	}
	for (size_t i = 0; i < NKEYS; i++) {
		if (keys[i].def == NULL) {
			continue;
		}
		if (!validate(&keys[i], keys[i].def, &p, why, sizeof(why))) {
			assert(!"built-in default fails its own validator");
			continue;
		}
		if (store(&cfg->v[i], &p, RANK_DEFAULT) != 0) {
			ms_config_destroy(cfg);
			return MS_ENOMEM;
		}
	}
	*out = cfg;
	return 0;
}

void
ms_config_destroy(struct ms_config *cfg)
{
	if (cfg == NULL) {
		return;
	}
	for (size_t i = 0; i < NKEYS; i++) {
		free(cfg->v[i].text);
	}
	free(cfg);
}

/* unquote strips one pair of double quotes around |v|; false when only one
 * side has one. */
static bool
unquote(char **v)
{
	char *s = *v;
	size_t n = strlen(s);

	if (n == 0 || (s[0] != '"' && s[n - 1] != '"')) {
		return true;
	}
	if (n < 2 || s[0] != '"' || s[n - 1] != '"') {
		return false;
	}
	s[n - 1] = '\0';
	*v = s + 1;
	return true;
}

/* load_line handles one line of an INI file; |section| is the current one
 * (empty before the first header). */
static int
load_line(struct ms_config *cfg, char *line, char *section, size_t seclen,
          const char *where, char *err, size_t errlen)
{
	char *s = trim(line);
	char *eq, *key, *val;
	char full[LINE_MAX_ + 64];
	int idx;

	if (*s == '\0' || *s == '#' || *s == ';') {
		return 0;
	}
	if (*s == '[') {
		size_t n = strlen(s);
		char *name;

		if (s[n - 1] != ']') {
			return fail(err, errlen,
			            "%s: malformed section header (expected "
			            "[section])",
			            where);
		}
		s[n - 1] = '\0';
		name = trim(s + 1);
		if (*name == '\0') {
			return fail(err, errlen,
			            "%s: malformed section header (expected "
			            "[section])",
			            where);
		}
		if (!known_section(name, strlen(name)) ||
		    strlen(name) >= seclen) {
			return fail(err, errlen, "%s: unknown section [%.*s]",
			            where, QUOTE_MAX, name);
		}
		ms_strlcpy(section, name, seclen);
		return 0;
	}
	eq = strchr(s, '=');
	if (eq == NULL) {
		return fail(err, errlen,
		            "%s: malformed line (expected key = value): "
		            "'%.*s'",
		            where, QUOTE_MAX, s);
	}
	*eq = '\0';
	key = trim(s);
	val = trim(eq + 1);
	if (*key == '\0') {
		return fail(err, errlen,
		            "%s: malformed line (no key before '=')", where);
	}
	if (*section == '\0') {
		return fail(err, errlen, "%s: %.*s: key outside any [section]",
		            where, QUOTE_MAX, key);
	}
	(void)snprintf(full, sizeof(full), "%s.%s", section, key);
	idx = find_key(full);
	if (idx < 0) {
		return fail(err, errlen, "%s: unknown key %.*s", where,
		            QUOTE_MAX, full);
	}
	if (!unquote(&val)) {
		return fail(err, errlen, "%s: %s: unbalanced double quote",
		            where, full);
	}
	return apply(cfg, idx, val, RANK_FILE, where, err, errlen);
}

int
ms_config_load_file(struct ms_config *cfg, const char *path, char *err,
                    size_t errlen)
{
	char line[LINE_MAX_];
	char section[64] = "";
	char where[512];
	unsigned lineno = 0;
	FILE *f;
	int rc = 0;

	f = fopen(path, "re");
	if (f == NULL) {
		(void)fail(err, errlen, "%s: %s", path, strerror(errno));
		return MS_EIO;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t n = strlen(line);
		char *s = line;

		lineno++;
		(void)snprintf(where, sizeof(where), "%s:%u", path, lineno);
		if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
			/* Either the line goes on or the file ends here. */
			int c = getc(f);
			if (c != EOF) {
				rc = fail(err, errlen,
				          "%s: line longer than %d bytes",
				          where, LINE_MAX_ - 2);
				break;
			}
		}
		if (lineno == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0) {
			s += 3; /* a UTF-8 byte order mark some editors add */
		}
		rc = load_line(cfg, s, section, sizeof(section), where, err,
		               errlen);
		if (rc != 0) {
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		(void)fail(err, errlen, "%s: read error", path);
		rc = MS_EIO;
	}
	fclose(f);
	return rc;
}

int
ms_config_load_env(struct ms_config *cfg, char *const *envp, char *err,
                   size_t errlen)
{
	static const char prefix[] = "MONOSHOP_";
	const size_t plen = sizeof(prefix) - 1;

	for (; envp != NULL && *envp != NULL; envp++) {
		const char *e = *envp;
		const char *eq = strchr(e, '=');
		char var[128], name[128];
		size_t n;
		char *us;
		int idx, rc;

		if (strncmp(e, prefix, plen) != 0 || eq == NULL) {
			continue;
		}
		n = (size_t)(eq - e);
		if (n >= sizeof(var)) {
			return fail(err, errlen, "%.*s...: unknown variable",
			            QUOTE_MAX, e);
		}
		memcpy(var, e, n);
		var[n] = '\0';
		/* MONOSHOP_NODE_DATA_DIR -> node.data_dir: the first word is
		 * the section, the rest the key. */
		for (size_t i = 0; i + plen <= n; i++) {
			char c = var[plen + i];
			name[i] =
			    (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
		}
		us = strchr(name, '_');
		idx = -1;
		if (us != NULL && us != name && us[1] != '\0') {
			*us = '.';
			idx = find_key(name);
		}
		if (idx < 0) {
			return fail(err, errlen,
			            "%s: unknown variable (no such key)", var);
		}
		rc = apply(cfg, idx, eq + 1, RANK_ENV, var, err, errlen);
		if (rc != 0) {
			return rc;
		}
	}
	return 0;
}

int
ms_config_set(struct ms_config *cfg, const char *assignment, const char *origin,
              char *err, size_t errlen)
{
	char buf[LINE_MAX_];
	char *eq, *key, *val;
	int idx;

	if (origin == NULL) {
		origin = "--set";
	}
	if (strlen(assignment) >= sizeof(buf)) {
		return fail(err, errlen, "%s: assignment longer than %d bytes",
		            origin, LINE_MAX_ - 1);
	}
	ms_strlcpy(buf, assignment, sizeof(buf));
	eq = strchr(buf, '=');
	if (eq == NULL) {
		return fail(err, errlen,
		            "%s: expected section.key=value, got '%.*s'",
		            origin, QUOTE_MAX, assignment);
	}
	*eq = '\0';
	key = trim(buf);
	val = trim(eq + 1);
	idx = find_key(key);
	if (idx < 0) {
		return fail(err, errlen, "%s: unknown key %.*s", origin,
		            QUOTE_MAX, key);
	}
	return apply(cfg, idx, val, RANK_SET, origin, err, errlen);
}

static int
must_find(const char *key)
{
	int idx = find_key(key);

	assert(idx >= 0 && "unknown configuration key");
	return idx;
}

const char *
ms_config_str(const struct ms_config *cfg, const char *key)
{
	return cfg->v[must_find(key)].text;
}

int64_t
ms_config_int(const struct ms_config *cfg, const char *key)
{
	int idx = must_find(key);

	assert(keys[idx].type == KT_INT || keys[idx].type == KT_SIZE);
	return cfg->v[idx].num;
}

bool
ms_config_bool(const struct ms_config *cfg, const char *key)
{
	int idx = must_find(key);

	assert(keys[idx].type == KT_BOOL);
	return cfg->v[idx].num != 0;
}

bool
ms_config_is_set(const struct ms_config *cfg, const char *key)
{
	return cfg->v[must_find(key)].text != NULL;
}

bool
ms_config_has_module(const struct ms_config *cfg, const char *name)
{
	/* The stored form is space separated and duplicate free. */
	const char *s = cfg->v[must_find("node.modules")].text;
	size_t n = strlen(name);

	while (s != NULL && *s != '\0') {
		size_t w = strcspn(s, " ");
		if (w == n && strncmp(s, name, n) == 0) {
			return true;
		}
		s += w + (s[w] == ' ');
	}
	return false;
}

static const char *
type_name(const struct keydef *k)
{
	switch (k->type) {
	case KT_STRING:
		return "string";
	case KT_INT:
		return "integer";
	case KT_SIZE:
		return "size";
	case KT_BOOL:
		return "bool";
	case KT_ENUM:
		return k->words;
	case KT_HOSTPORT:
		return "HOST:PORT";
	case KT_MODULES:
		return "modules";
	case KT_URL_REMOTE:
	case KT_URL_BROKER:
	case KT_URL_NNG:
		return "URL";
	case KT_SECRET:
		return "secret";
	}
	return "?";
}

/* wrap writes |text| indented by |indent|, broken at spaces before column
 * 79. */
static void
wrap(FILE *out, const char *text, int indent)
{
	const int width = 79 - indent;

	while (*text != '\0') {
		int n = (int)strlen(text);

		if (n > width) {
			n = width;
			while (n > 0 && text[n] != ' ') {
				n--;
			}
			if (n == 0) {
				n = (int)strcspn(text, " "); /* one long word */
			}
		}
		fprintf(out, "%*s%.*s\n", indent, "", n, text);
		text += n;
		while (*text == ' ') {
			text++;
		}
	}
}

void
ms_config_help(FILE *out)
{
	/* The caller (--help) prints the heading and the precedence. */
	for (size_t i = 0; i < NKEYS; i++) {
		const struct keydef *k = &keys[i];
		char range[96] = "";

		if (k->type == KT_INT) {
			(void)snprintf(range, sizeof(range),
			               ", %" PRId64 "..%" PRId64, k->min,
			               k->max);
		} else if (k->type == KT_SIZE) {
			char lo[32], hi[32];
			size_text(k->min, lo, sizeof(lo));
			size_text(k->max, hi, sizeof(hi));
			(void)snprintf(range, sizeof(range), ", %s..%s", lo,
			               hi);
		}
		fprintf(out, "  %-26s %s%s, default %s%s%s\n", k->name,
		        type_name(k), range, k->def ? "\"" : "",
		        k->def ? k->def : "unset", k->def ? "\"" : "");
		wrap(out, k->help, 6);
	}
}
