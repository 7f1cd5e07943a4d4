/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the gRPC server as a client's bytes reach it, with no
 * socket and no thread (server.h's test hook): the HTTP/2 preface, frames,
 * HPACK headers, gRPC messages, into one connection's nghttp2 session;
 * the calls it completes run on the real bus (Discount with its database,
 * fuzz_env.h), health Check/Watch and reflection on the server itself.
 * Each input is one connection, dropped at the end. Beyond the sanitizers,
 * the oracle is check_metrics().
 *
 * Input: byte 0 is the size of the reads the bytes arrive in (0 = one
 * read), the rest is what the client sends. The seeds
 * (fuzz/corpus/grpc_server/, made by fuzz/seeds.py) are whole sessions:
 * unary calls of each method, health, reflection, deadlines, resets,
 * pings, GOAWAY.
 */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_env.h"
#include "transport/grpc/server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tp_grpc_server *srv;

static void
srv_down(void)
{
	tp_grpc_server_test_destroy(srv);
	srv = NULL;
}

/* The server borrows the environment's bus: a new environment needs a new
 * server. */
static void
srv_up(struct fz_env *e)
{
	static const struct tp_grpc_server_opts opts = {
	    .max_message = 64 * 1024,
	    .threads = 1,
	    .max_streams = 100,
	    .keepalive_permit_ms = 300000,
	    .max_connections = 16,
	};
	static bool registered;

	srv_down();
	if (tp_grpc_server_test_create(&srv, e->bus, &opts) != 0) {
		fz_fail("cannot create the gRPC server");
	}
	if (!registered) {
		/* Registered after fuzz_env's, so it runs before it. */
		atexit(srv_down);
		registered = true;
	}
}

/*
 * The server's own oracle: a method name a client invents never becomes a
 * metric series of its own (server.c: record), or a client could fill the
 * bounded series table with names and leave no room for real ones. Every
 * method label must be "unknown" or a method the server really has.
 */
static void
check_metrics(void)
{
	static const char *const known[] = {
	    "/discount.DiscountProtoService/GetDiscount",
	    "/discount.DiscountProtoService/CreateDiscount",
	    "/discount.DiscountProtoService/UpdateDiscount",
	    "/discount.DiscountProtoService/DeleteDiscount",
	    "/grpc.health.v1.Health/Check",
	    "/grpc.health.v1.Health/Watch",
	    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
	    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
	    "unknown",
	    NULL,
	};

	fz_check_metric_label("monoshop_grpc_server_", "method", known);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_quiet();
	srv_up(fz_env_tick());
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_env *e;
	size_t chunk;

	if (size < 1) {
		return 0;
	}
	e = fz_env_tick();
	if (e->uses == 1 || srv == NULL) {
		srv_up(e);
	}
	chunk = data[0] ? data[0] : size;
	data++;
	size--;
	while (size > 0) {
		size_t k = size < chunk ? size : chunk;

		if (tp_grpc_server_test_feed(srv, data, k) != 1) {
			break; /* closed by the server, or out of memory */
		}
		data += k;
		size -= k;
	}
	tp_grpc_server_test_close(srv);
	check_metrics();
	return 0;
}
