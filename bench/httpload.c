/* SPDX-License-Identifier: MIT */
/*
 * A small HTTP/1.1 load generator for scenario 4 (the checkout pipeline),
 * where every request must name a different user: store the baskets of
 * users PREFIX0..PREFIX(N-1), then check them out, each exactly once. wrk
 * cannot do that (its requests do not know their responses), hence this.
 *
 *   httpload --port P --mode store|checkout|get --prefix U --count N
 *            [--conc C] [--items K] [--seconds S]
 *
 * --conc connections, one thread each, keep-alive, one request in flight
 * per connection; requests are handed out from a shared counter, so the
 * whole batch finishes together. Every request is bounded (10 s socket
 * timeouts) and so is the batch (--seconds: no new request after it). One
 * JSON line on stdout: successes (2xx), failures by kind, requests per
 * second, latency p50/p99, and the wall-clock start and end (ms since the
 * epoch, to line up with the servers' own timestamps).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONC  256
#define MAX_COUNT (1 << 20)
#define BUF_LEN   65536
#define REQ_LEN   8192

enum mode { M_STORE, M_CHECKOUT, M_GET };

static struct {
	int port;
	enum mode mode;
	const char *prefix;
	long count;
	int conc;
	int items;
	double seconds;
} opt = {0, M_STORE, "u", 1000, 16, 2, 60};

static atomic_long next_index;
static int64_t stop_at_ns;
static int64_t *lat_ns; /* by request index */
static atomic_long n_ok, n_4xx, n_5xx, n_io;
static atomic_int errors_shown;

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
connect_to(void)
{
	struct sockaddr_in sa;
	struct timeval tv = {10, 0};
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0) {
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)opt.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* build writes request |i| into |out|; returns its length or -1. */
static int
build(long i, char *out, size_t cap)
{
	char body[REQ_LEN / 2];
	int n = 0, len;

	if (opt.mode == M_GET) {
		return snprintf(out, cap,
		                "GET /basket/%s%ld HTTP/1.1\r\n"
		                "Host: 127.0.0.1\r\n\r\n",
		                opt.prefix, i);
	}
	if (opt.mode == M_STORE) {
		static const char *const names[] = {"IPhone X", "Samsung 10",
		                                    "Huawei Plus"};

		n = snprintf(body, sizeof(body),
		             "{\"cart\":{\"userName\":\"%s%ld\",\"items\":[",
		             opt.prefix, i);
		for (int k = 0; k < opt.items && n < (int)sizeof(body) - 256;
		     k++) {
			n += snprintf(
			    body + n, sizeof(body) - (size_t)n,
			    "%s{\"quantity\":%d,\"color\":\"Red\","
			    "\"price\":%d,\"productId\":"
			    "\"5334c996-8457-4cf0-815c-ed2b77c4ff%02d\","
			    "\"productName\":\"%s\"}",
			    k ? "," : "", 1 + k % 3, 500 + 100 * k, k % 100,
			    names[k % 3]);
		}
		n += snprintf(body + n, sizeof(body) - (size_t)n, "]}}");
	} else {
		n = snprintf(
		    body, sizeof(body),
		    "{\"basketCheckoutDto\":{\"userName\":\"%s%ld\","
		    "\"customerId\":\"58c49479-ec65-4de2-86e7-033c546291aa\","
		    "\"firstName\":\"mehmet\",\"lastName\":\"ozkaya\","
		    "\"emailAddress\":\"mehmet@gmail.com\","
		    "\"addressLine\":\"Bahcelievler No:4\","
		    "\"country\":\"Turkey\",\"state\":\"Istanbul\","
		    "\"zipCode\":\"38050\",\"cardName\":\"mehmet\","
		    "\"cardNumber\":\"5555555555554444\","
		    "\"expiration\":\"12/28\",\"cvv\":\"355\","
		    "\"paymentMethod\":1}}",
		    opt.prefix, i);
	}
	len = snprintf(out, cap,
	               "POST /basket%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	               "Content-Type: application/json\r\n"
	               "Content-Length: %d\r\n\r\n%s",
	               opt.mode == M_CHECKOUT ? "/checkout" : "", n, body);
	return len < (int)cap ? len : -1;
}

/*
 * exchange sends |req| on *fd and reads one response; returns its status,
 * 0 when the connection closed before any byte (retry on a new one), or
 * -1 on an I/O error.
 */
static int
exchange(int fd, const char *req, int len, char *buf)
{
	size_t have = 0, need = 0;
	int status = -1;
	char *hdr_end = NULL;

	for (int off = 0; off < len;) {
		ssize_t w =
		    send(fd, req + off, (size_t)(len - off), MSG_NOSIGNAL);

		if (w <= 0) {
			return 0;
		}
		off += (int)w;
	}
	for (;;) {
		ssize_t r;

		if (have == BUF_LEN) {
			return -1;
		}
		r = recv(fd, buf + have, BUF_LEN - have, 0);
		if (r <= 0) {
			return have == 0 ? 0 : -1;
		}
		have += (size_t)r;
		if (hdr_end == NULL) {
			char *cl;

			buf[have < BUF_LEN ? have : BUF_LEN - 1] = '\0';
			hdr_end = strstr(buf, "\r\n\r\n");
			if (hdr_end == NULL) {
				continue;
			}
			if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
				return -1;
			}
			cl = strcasestr(buf, "\r\nContent-Length:");
			if (cl == NULL || cl > hdr_end) {
				return -1;
			}
			need = (size_t)(hdr_end + 4 - buf) +
			       (size_t)strtoul(cl + 17, NULL, 10);
		}
		if (have >= need) {
			if (status >= 400 &&
			    atomic_fetch_add(&errors_shown, 1) < 3) {
				fprintf(stderr, "httpload: %d: %.*s\n", status,
				        (int)(have < 400 ? have : 400), buf);
			}
			return status;
		}
	}
}

static void *
worker(void *arg)
{
	char *req = malloc(REQ_LEN), *buf = malloc(BUF_LEN + 1);
	int fd = -1;

	(void)arg;
	if (req == NULL || buf == NULL) {
		free(req);
		free(buf);
		return NULL;
	}
	for (;;) {
		long i = atomic_fetch_add(&next_index, 1);
		int len, st = 0;
		int64_t t0;

		if (i >= opt.count || now_ns() >= stop_at_ns) {
			break;
		}
		len = build(i, req, REQ_LEN);
		t0 = now_ns();
		for (int attempt = 0; attempt < 2 && st == 0; attempt++) {
			if (fd < 0 && (fd = connect_to()) < 0) {
				break;
			}
			st = len > 0 ? exchange(fd, req, len, buf) : -1;
			if (st <= 0) {
				close(fd);
				fd = -1;
			}
		}
		lat_ns[i] = now_ns() - t0;
		if (st >= 200 && st < 300) {
			atomic_fetch_add(&n_ok, 1);
		} else if (st >= 400 && st < 500) {
			atomic_fetch_add(&n_4xx, 1);
		} else if (st >= 500) {
			atomic_fetch_add(&n_5xx, 1);
		} else {
			atomic_fetch_add(&n_io, 1);
		}
	}
	if (fd >= 0) {
		close(fd);
	}
	free(req);
	free(buf);
	return NULL;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	pthread_t th[MAX_CONC];
	int started = 0;
	int64_t t0, t1, w0, w1;
	long done;

	for (int i = 1; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];

		if (strcmp(a, "--port") == 0) {
			opt.port = atoi(v);
		} else if (strcmp(a, "--mode") == 0) {
			opt.mode = strcmp(v, "checkout") == 0 ? M_CHECKOUT
			           : strcmp(v, "get") == 0    ? M_GET
			                                      : M_STORE;
		} else if (strcmp(a, "--prefix") == 0) {
			opt.prefix = v;
		} else if (strcmp(a, "--count") == 0) {
			opt.count = atol(v);
		} else if (strcmp(a, "--conc") == 0) {
			opt.conc = atoi(v);
		} else if (strcmp(a, "--items") == 0) {
			opt.items = atoi(v);
		} else if (strcmp(a, "--seconds") == 0) {
			opt.seconds = atof(v);
		}
	}
	if (opt.port <= 0 || opt.port > 65535 || opt.count < 1 ||
	    opt.count > MAX_COUNT || opt.conc < 1 || opt.conc > MAX_CONC ||
	    opt.items < 1 || opt.items > 50 || opt.seconds <= 0 ||
	    strlen(opt.prefix) > 64) {
		fprintf(stderr,
		        "usage: httpload --port P --mode store|checkout|get "
		        "--prefix U --count N [--conc C] [--items K] "
		        "[--seconds S]\n");
		return 2;
	}
	lat_ns = calloc((size_t)opt.count, sizeof(*lat_ns));
	if (lat_ns == NULL) {
		return 1;
	}
	w0 = wall_ms();
	t0 = now_ns();
	stop_at_ns = t0 + (int64_t)(opt.seconds * 1e9);
	for (int i = 0; i < opt.conc; i++) {
		if (pthread_create(&th[i], NULL, worker, NULL) != 0) {
			break;
		}
		started++;
	}
	for (int i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
	}
	t1 = now_ns();
	w1 = wall_ms();
	done = atomic_load(&next_index);
	if (done > opt.count) {
		done = opt.count;
	}
	qsort(lat_ns, (size_t)done, sizeof(*lat_ns), cmp_i64);
	printf("{\"ok\":%ld,\"e4xx\":%ld,\"e5xx\":%ld,\"eio\":%ld,"
	       "\"seconds\":%.3f,\"per_s\":%.1f,\"p50_ms\":%.3f,"
	       "\"p99_ms\":%.3f,\"start_wall_ms\":%lld,\"end_wall_ms\":%lld}\n",
	       atomic_load(&n_ok), atomic_load(&n_4xx), atomic_load(&n_5xx),
	       atomic_load(&n_io), (double)(t1 - t0) / 1e9,
	       (double)atomic_load(&n_ok) * 1e9 / (double)(t1 - t0),
	       done ? (double)lat_ns[done / 2] / 1e6 : 0.0,
	       done ? (double)lat_ns[(size_t)((double)done * 0.99)] / 1e6 : 0.0,
	       (long long)w0, (long long)w1);
	free(lat_ns);
	return 0;
}
