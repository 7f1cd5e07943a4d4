/* SPDX-License-Identifier: MIT */
/*
 * Scenario 4's ceiling: the fastest this broker takes persistent messages
 * from one librabbitmq publisher with confirms, i.e. what our relay could
 * reach at best. It publishes --size-byte persistent, mandatory messages
 * to a durable fanout exchange bound to one durable queue (our topology's
 * shape), keeping at most --window unconfirmed (our events.relay_batch),
 * for --count messages or --seconds, whichever comes first; then it purges
 * the queue so that the next round starts from the same state, and prints
 * one JSON line: messages confirmed per second and the publish→confirm
 * latency p50/p99.
 *
 * Nothing is consumed: the publisher alone is the ceiling (our pipeline
 * also consumes, acks and commits an order per message).
 *
 * With --consume P, the messages just confirmed are then consumed from the
 * queue on a second channel (basic.qos P, manual acks, one basic.ack per
 * message, nothing else done with them): the ceiling of a consumer, for
 * scenario 4's consumer-drain stage. The JSON line then also has the
 * messages consumed per second, first delivery to last, as ours is
 * measured (first inbox row to last).
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define EXCHANGE   "bench.raw"
#define QUEUE      "bench.raw"
#define MAX_WINDOW 4096
#define MAX_COUNT  (1u << 20)

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
die_rpc(amqp_connection_state_t c, const char *what)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(c);

	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		fprintf(stderr, "raw_amqp_confirms: %s failed (%d)\n", what,
		        (int)r.reply_type);
		exit(1);
	}
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
	char url[256] = "amqp://guest:guest@127.0.0.1:5672/";
	struct amqp_connection_info ci;
	amqp_connection_state_t c;
	amqp_socket_t *s;
	amqp_basic_properties_t props;
	static uint8_t body[1 << 16];
	static int64_t sent_at[MAX_COUNT + 1];
	static int64_t lat[MAX_COUNT];
	size_t size = 1024, window = 64, count = 20000, nlat = 0;
	size_t prefetch = 0, consumed = 0;
	int64_t c0 = 0, c1 = 0;
	double seconds = 5;
	uint64_t next = 1, acked = 0, nacked = 0;
	int64_t t0, end, t1;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--url") == 0) {
			snprintf(url, sizeof(url), "%s", argv[i + 1]);
		} else if (strcmp(argv[i], "--size") == 0) {
			size = (size_t)atol(argv[i + 1]);
		} else if (strcmp(argv[i], "--window") == 0) {
			window = (size_t)atol(argv[i + 1]);
		} else if (strcmp(argv[i], "--count") == 0) {
			count = (size_t)atol(argv[i + 1]);
		} else if (strcmp(argv[i], "--seconds") == 0) {
			seconds = atof(argv[i + 1]);
		} else if (strcmp(argv[i], "--consume") == 0) {
			prefetch = (size_t)atol(argv[i + 1]);
		}
	}
	if (size < 1 || size > sizeof(body) || window < 1 ||
	    window > MAX_WINDOW || count < 1 || count > MAX_COUNT ||
	    seconds <= 0 || seconds > 120 || prefetch > 65535 ||
	    amqp_parse_url(url, &ci) != AMQP_STATUS_OK) {
		fprintf(stderr, "usage: raw_amqp_confirms [--url amqp://...] "
		                "[--size B] [--window W] [--count N] "
		                "[--seconds S] [--consume PREFETCH]\n");
		return 2;
	}
	memset(body, 'x', size);
	/* "amqp://host:port/" parses to the vhost "", which RabbitMQ does not
	 * have: that is its default vhost, "/". */
	if (ci.vhost == NULL || ci.vhost[0] == '\0') {
		ci.vhost = (char *)"/";
	}

	c = amqp_new_connection();
	s = amqp_tcp_socket_new(c);
	if (s == NULL || amqp_socket_open(s, ci.host, ci.port) != 0) {
		fprintf(stderr, "raw_amqp_confirms: cannot connect to %s:%d\n",
		        ci.host, ci.port);
		return 1;
	}
	if (amqp_login(c, ci.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
	               ci.user, ci.password)
	        .reply_type != AMQP_RESPONSE_NORMAL) {
		fprintf(stderr, "raw_amqp_confirms: login failed\n");
		return 1;
	}
	amqp_channel_open(c, 1);
	die_rpc(c, "channel.open");
	amqp_exchange_declare(c, 1, amqp_cstring_bytes(EXCHANGE),
	                      amqp_cstring_bytes("fanout"), 0, 1, 0, 0,
	                      amqp_empty_table);
	die_rpc(c, "exchange.declare");
	amqp_queue_declare(c, 1, amqp_cstring_bytes(QUEUE), 0, 1, 0, 0,
	                   amqp_empty_table);
	die_rpc(c, "queue.declare");
	amqp_queue_bind(c, 1, amqp_cstring_bytes(QUEUE),
	                amqp_cstring_bytes(EXCHANGE), amqp_empty_bytes,
	                amqp_empty_table);
	die_rpc(c, "queue.bind");
	amqp_queue_purge(c, 1, amqp_cstring_bytes(QUEUE));
	die_rpc(c, "queue.purge");
	amqp_confirm_select(c, 1);
	die_rpc(c, "confirm.select");

	memset(&props, 0, sizeof(props));
	props._flags =
	    AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
	props.delivery_mode = 2; /* persistent */
	props.content_type = amqp_cstring_bytes("application/octet-stream");

	t0 = now_us();
	end = t0 + (int64_t)(seconds * 1e6);
	while (acked + nacked < count) {
		amqp_frame_t f;
		struct timeval tv = {1, 0};
		int st;

		/* Fill the window. */
		while (next - 1 - acked - nacked < window && next - 1 < count &&
		       now_us() < end) {
			amqp_bytes_t b = {size, body};

			if (amqp_basic_publish(c, 1,
			                       amqp_cstring_bytes(EXCHANGE),
			                       amqp_empty_bytes, 1, 0, &props,
			                       b) != AMQP_STATUS_OK) {
				fprintf(stderr, "raw_amqp_confirms: publish "
				                "failed\n");
				return 1;
			}
			sent_at[next++] = now_us();
		}
		if (next - 1 == acked + nacked) {
			break; /* time is up and everything is confirmed */
		}
		st = amqp_simple_wait_frame_noblock(c, &f, &tv);
		if (st == AMQP_STATUS_TIMEOUT) {
			if (now_us() > end + 10 * 1000000) {
				fprintf(stderr, "raw_amqp_confirms: confirms "
				                "stopped coming\n");
				return 1;
			}
			continue;
		}
		if (st != AMQP_STATUS_OK) {
			fprintf(stderr, "raw_amqp_confirms: %s\n",
			        amqp_error_string2(st));
			return 1;
		}
		if (f.frame_type == AMQP_FRAME_METHOD &&
		    (f.payload.method.id == AMQP_BASIC_ACK_METHOD ||
		     f.payload.method.id == AMQP_BASIC_NACK_METHOD)) {
			bool ack = f.payload.method.id == AMQP_BASIC_ACK_METHOD;
			uint64_t tag, first;
			bool multiple;
			int64_t now = now_us();

			if (ack) {
				amqp_basic_ack_t *k = f.payload.method.decoded;

				tag = k->delivery_tag;
				multiple = k->multiple;
			} else {
				amqp_basic_nack_t *k = f.payload.method.decoded;

				tag = k->delivery_tag;
				multiple = k->multiple;
			}
			first = multiple ? acked + nacked + 1 : tag;
			for (uint64_t t = first; t <= tag; t++) {
				if (nlat < MAX_COUNT) {
					lat[nlat++] = now - sent_at[t];
				}
				if (ack) {
					acked++;
				} else {
					nacked++;
				}
			}
		}
		amqp_maybe_release_buffers(c);
	}
	t1 = now_us();
	if (prefetch > 0) {
		int64_t cend = now_us() + (int64_t)(seconds * 1e6);

		amqp_channel_open(c, 2);
		die_rpc(c, "channel.open 2");
		amqp_basic_qos(c, 2, 0, (uint16_t)prefetch, 0);
		die_rpc(c, "basic.qos");
		amqp_basic_consume(c, 2, amqp_cstring_bytes(QUEUE),
		                   amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
		die_rpc(c, "basic.consume");
		while (consumed < acked && now_us() < cend) {
			amqp_envelope_t env;
			struct timeval tv = {1, 0};
			amqp_rpc_reply_t r;

			amqp_maybe_release_buffers(c);
			r = amqp_consume_message(c, &env, &tv, 0);
			if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
			    r.library_error == AMQP_STATUS_TIMEOUT) {
				continue;
			}
			if (r.reply_type != AMQP_RESPONSE_NORMAL) {
				fprintf(stderr, "raw_amqp_confirms: consume "
				                "failed\n");
				return 1;
			}
			if (amqp_basic_ack(c, 2, env.delivery_tag, 0) !=
			    AMQP_STATUS_OK) {
				fprintf(stderr, "raw_amqp_confirms: ack "
				                "failed\n");
				return 1;
			}
			amqp_destroy_envelope(&env);
			c1 = now_us();
			if (consumed++ == 0) {
				c0 = c1;
			}
		}
		amqp_channel_close(c, 2, AMQP_REPLY_SUCCESS);
	}
	amqp_queue_purge(c, 1, amqp_cstring_bytes(QUEUE));
	die_rpc(c, "queue.purge");
	amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
	qsort(lat, nlat, sizeof(lat[0]), cmp_i64);
	printf("{\"scenario\":\"raw_amqp\",\"size\":%zu,\"window\":%zu,"
	       "\"confirmed\":%llu,\"nacked\":%llu,\"seconds\":%.3f,"
	       "\"per_s\":%.1f,\"confirm_p50_ms\":%.3f,"
	       "\"confirm_p99_ms\":%.3f,\"prefetch\":%zu,\"consumed\":%zu,"
	       "\"consume_per_s\":%.1f}\n",
	       size, window, (unsigned long long)acked,
	       (unsigned long long)nacked, (double)(t1 - t0) / 1e6,
	       (double)acked * 1e6 / (double)(t1 - t0),
	       nlat ? (double)lat[nlat / 2] / 1e3 : 0.0,
	       nlat ? (double)lat[(size_t)((double)nlat * 0.99)] / 1e3 : 0.0,
	       prefetch, consumed,
	       consumed > 1 && c1 > c0
	           ? (double)(consumed - 1) * 1e6 / (double)(c1 - c0)
	           : 0.0);
	return 0;
}
