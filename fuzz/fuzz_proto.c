/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: protobuf decoding of every message that arrives from
 * outside, and what the bus does with it. Byte 0 picks the type (its low 7
 * bits, modulo 9); the rest is the packed message:
 *
 *   0..3  discount.{Get,Create,Update,Delete}DiscountRequest: unpacked
 *         (discount__*_request__unpack), then bus_dispatch'ed to the real
 *         Discount module (its handlers and database), as the gRPC server
 *         and the nng transport do with a request's bytes;
 *   4     monoshop.events.BasketCheckoutEvent
 *         (monoshop__events__basket_checkout_event__unpack), then
 *         bus_deliver'ed to the real Ordering module, as a transport does
 *         with an event's bytes (bit 7 of byte 0 set: without a transport
 *         event id, so that the message's own id is the key);
 *   5, 6  discount.CouponModel, discount.DeleteDiscountResponse: the
 *         replies a remote Discount sends to our client;
 *   7, 8  grpc.health.v1.HealthCheckRequest and
 *         grpc.reflection.v1.ServerReflectionRequest.
 *
 * Oracles, beyond the sanitizers: what unpacks packs again, to the size
 * protobuf-c announced; bus_dispatch answers MS_EDECODE
 * exactly when the request does not unpack, and otherwise a reply that
 * unpacks as the method's output; no answer is a server error (500).
 */
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "discount.pb-c.h"
#include "events.pb-c.h"
#include "fuzz_env.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "transport/transport.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SERVICE "discount.DiscountProtoService"

static const struct {
	const ProtobufCMessageDescriptor *desc;
	const char *method; /* DiscountProtoService method, or NULL */
} types[] = {
    {&discount__get_discount_request__descriptor, "GetDiscount"},
    {&discount__create_discount_request__descriptor, "CreateDiscount"},
    {&discount__update_discount_request__descriptor, "UpdateDiscount"},
    {&discount__delete_discount_request__descriptor, "DeleteDiscount"},
    {&monoshop__events__basket_checkout_event__descriptor, NULL},
    {&discount__coupon_model__descriptor, NULL},
    {&discount__delete_discount_response__descriptor, NULL},
    {&grpc__health__v1__health_check_request__descriptor, NULL},
    {&grpc__reflection__v1__server_reflection_request__descriptor, NULL},
};

#define N_TYPES (sizeof(types) / sizeof(types[0]))
#define EVENT   4

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_quiet();
	fz_env_tick();
	return 0;
}

/* pack returns |m| packed into a malloc'd buffer (*len bytes). */
static uint8_t *
pack(const ProtobufCMessage *m, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(n ? n : 1);

	if (buf == NULL) {
		fz_fail("out of memory");
	}
	*len = protobuf_c_message_pack(m, buf);
	if (*len != n) {
		fz_fail("packed %zu bytes of %zu", *len, n);
	}
	return buf;
}

/* unpack with the generated function's body: the typed
 * discount__*__unpack() are protobuf_c_message_unpack on their
 * descriptor. */
static ProtobufCMessage *
unpack(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n)
{
	return protobuf_c_message_unpack(d, NULL, n, p);
}

/*
 * What unpacks must pack again (the bus packs replies, the envelope
 * re-reads payloads). Not a byte-exact round trip: protobuf-c keeps unknown
 * fields as they came, even malformed ones (field number 0), and cuts a
 * string at an embedded NUL, so its re-packed bytes need not unpack again.
 */
static void
repack(const ProtobufCMessage *m)
{
	size_t n;

	free(pack(m, &n));
}

static void
dispatch(struct fz_env *e, unsigned t, const uint8_t *p, size_t n, bool ok)
{
	const ProtobufCMethodDescriptor *md =
	    protobuf_c_service_descriptor_get_method_by_name(
	        &discount__discount_proto_service__descriptor, types[t].method);
	uint8_t *reply = NULL;
	size_t rlen = 0;
	char detail[256];
	int rc;

	rc = bus_dispatch(e->bus, SERVICE, types[t].method, p, n, 0, NULL,
	                  &reply, &rlen, detail, sizeof(detail));
	fz_check_rc(rc, types[t].method);
	if ((rc == MS_EDECODE) != !ok) {
		fz_fail("%s: request %s, but bus_dispatch said %s",
		        types[t].method, ok ? "unpacks" : "does not unpack",
		        ms_errname(rc));
	}
	if (rc == 0) {
		ProtobufCMessage *out = unpack(md->output, reply, rlen);

		if (out == NULL) {
			fz_fail("%s: the reply does not unpack",
			        types[t].method);
		}
		protobuf_c_message_free_unpacked(out, NULL);
	}
	free(reply);
}

static void
deliver(struct fz_env *e, const uint8_t *p, size_t n, bool ok, bool with_id)
{
	static unsigned long seq;
	struct bus_event ev = {0};
	int rc;

	if (with_id) {
		snprintf(ev.id, sizeof(ev.id), "00000000-0000-4000-8000-%012lx",
		         ++seq);
	}
	ev.type = monoshop__events__basket_checkout_event__descriptor.name;
	ev.payload = p;
	ev.len = n;
	ev.attempt = 1;
	rc = bus_deliver(e->bus, &ev);
	fz_check_rc(rc, "BasketCheckoutEvent");
	if (!ok && rc != MS_EINVAL) {
		fz_fail("an event that does not unpack was answered %s",
		        ms_errname(rc));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_env *e;
	ProtobufCMessage *m;
	unsigned t;

	if (size < 1) {
		return 0;
	}
	e = fz_env_tick();
	t = (data[0] & 0x7fu) % N_TYPES;
	m = unpack(types[t].desc, data + 1, size - 1);
	if (m != NULL) {
		repack(m);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	if (types[t].method != NULL) {
		dispatch(e, t, data + 1, size - 1, m != NULL);
	} else if (t == EVENT) {
		deliver(e, data + 1, size - 1, m != NULL, !(data[0] & 0x80u));
	}
	return 0;
}
