/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the body of one REST route, through the router and the
 * route's handler with the real modules behind it (fuzz_env.h). Built once
 * per route that reads a body (fuzz/meson.build passes the route):
 *
 *   fuzz_rest_basket        POST /basket            (store a cart)
 *   fuzz_rest_checkout      POST /basket/checkout   (user "swn" always has
 *                                                    a basket to check out)
 *   fuzz_rest_orders_post   POST /orders
 *   fuzz_rest_orders_put    PUT  /orders            (the seed orders exist)
 *
 * The input is the body, as the edge hands it over: |len| bytes followed by
 * a NUL that the handler must not need. Beyond the sanitizers, the oracle
 * is fuzz_env.h's: no 500, a status in range, an answer that can be
 * written.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_env.h"

#ifndef FUZZ_REST_METHOD
#error "FUZZ_REST_METHOD and FUZZ_REST_PATH name the route"
#endif

/* The cart checkout needs: one of the README's. */
static const char swn_cart[] =
    "{\"cart\":{\"userName\":\"swn\",\"items\":[{\"quantity\":2,"
    "\"color\":\"Red\",\"price\":500,\"productId\":"
    "\"5334c996-8457-4cf0-815c-ed2b77c4ff61\",\"productName\":"
    "\"IPhone X\"}]}}";

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_quiet();
	fz_env_tick();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_env *e = fz_env_tick();
	char *body = malloc(size + 1);
	int status;

	if (body == NULL) {
		return 0;
	}
	memcpy(body, data, size);
	body[size] = '\0';
#ifdef FUZZ_REST_CHECKOUT
	{
		static bool have_cart;

		/* After a checkout took it, or in a new environment. */
		if (!have_cart || e->uses == 1) {
			status = fz_rest(HTTP_POST, "/basket", NULL, swn_cart,
			                 strlen(swn_cart), NULL);
			if (status != 200 && status != 201) {
				fz_fail("cannot store swn's cart: %d", status);
			}
			have_cart = true;
		}
		status = fz_rest(FUZZ_REST_METHOD, FUZZ_REST_PATH, NULL, body,
		                 size, NULL);
		if (status / 100 == 2) {
			have_cart = false;
		}
	}
#else
	(void)e;
	(void)swn_cart;
	status =
	    fz_rest(FUZZ_REST_METHOD, FUZZ_REST_PATH, NULL, body, size, NULL);
#endif
	(void)status;
	free(body);
	return 0;
}
