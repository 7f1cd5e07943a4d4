/* SPDX-License-Identifier: MIT */
/*
 * The MassTransit JSON envelope (application/vnd.masstransit+json), as pure
 * functions over buffers: encode one of our events into the envelope a
 * MassTransit consumer accepts, and decode an envelope (ours, or one a .NET
 * service on BuildingBlocks.Messaging published) into our event.
 * See ../shared/reference/wire.md §3.3 and ../shared/fixtures/masstransit/.
 *
 * Naming: our protobuf type "monoshop.events.BasketCheckoutEvent" is the
 * .NET type BuildingBlocks.Messaging.Events.BasketCheckoutEvent, whose
 * MassTransit URN is urn:message:BuildingBlocks.Messaging.Events:
 * BasketCheckoutEvent and whose exchange is
 * BuildingBlocks.Messaging.Events:BasketCheckoutEvent.
 */
#ifndef MS_TRANSPORT_AMQP_ENVELOPE_H
#define MS_TRANSPORT_AMQP_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#define TP_AMQP_CONTENT_TYPE "application/vnd.masstransit+json"

/* The largest body tp_amqp_envelope_decode reads (a checkout of 1000 items
 * is about 300 KiB); a larger one is MS_EINVAL. */
#define TP_AMQP_ENVELOPE_MAX (1024 * 1024)

/* What the envelope says about where and by whom it was sent. */
struct tp_amqp_env_meta {
	const char *message_id;          /* GUID: our event id */
	const char *conversation_id;     /* GUID or NULL (then = message_id) */
	const char *source_address;      /* rabbitmq://host/... or NULL */
	const char *destination_address; /* rabbitmq://host/<exchange> */
	int64_t sent_ms;                 /* wall clock */
	const char *traceparent;  /* W3C, carried in "headers", or NULL */
	const char *machine_name; /* host.machineName */
	const char *process_name; /* host.processName ("monoshop") */
	int process_id;
};

/*
 * tp_amqp_exchange_for returns the MassTransit exchange (= message type
 * name) for our protobuf type |type|, or NULL when the type has no
 * MassTransit mapping. Static string.
 */
const char *tp_amqp_exchange_for(const char *type);

/*
 * tp_amqp_envelope_encode turns the packed event |payload| of protobuf
 * |type| into the MassTransit envelope: messageId, conversationId,
 * sourceAddress, destinationAddress, messageType (the event's URN and the
 * IntegrationEvent URN), message (camelCase fields; decimals as strings;
 * items included), sentTime (ISO 8601 UTC), headers (traceparent when
 * set), host {machineName, processName, processId, assembly,
 * assemblyVersion, frameworkVersion, massTransitVersion,
 * operatingSystemVersion}. *out is malloc'd JSON, owned by the caller.
 * Returns 0, MS_ENOTSUP (no mapping for |type|), MS_EINVAL (undecodable
 * payload) or MS_ENOMEM.
 */
int tp_amqp_envelope_encode(const char *type, const uint8_t *payload,
                            size_t len, const struct tp_amqp_env_meta *meta,
                            char **out, size_t *outlen);

/* What decoding found. Strings are malloc'd, owned by the struct: release
 * with tp_amqp_decoded_fini. */
struct tp_amqp_decoded {
	const char *type; /* our protobuf type (static) */
	uint8_t *payload; /* packed protobuf event */
	size_t len;
	char message_id[37]; /* envelope messageId, lower case */
	char *traceparent;   /* from headers, or NULL */
	int64_t sent_ms;     /* 0 when absent */
};

void tp_amqp_decoded_fini(struct tp_amqp_decoded *d);

/*
 * tp_amqp_envelope_decode parses |len| bytes of |body|: field names are
 * matched case-insensitively, trailing commas are tolerated, unknown fields
 * ignored; decimals are read from strings or numbers (exactly, never via
 * binary floating point); a GUID messageId is required (it is the
 * idempotency key: the event's id becomes messageId). An envelope without
 * items (as the original .NET Basket sends) decodes to an event with no
 * items and the envelope's totalPrice. Returns 0, MS_ENOTSUP (no
 * messageType we consume: the caller moves it to ..._skipped), MS_EINVAL
 * (not JSON, not an envelope, missing or wrong-typed fields: ..._error; a
 * reason is written to |why|), or MS_ENOMEM.
 */
int tp_amqp_envelope_decode(const char *body, size_t len,
                            struct tp_amqp_decoded *out, char *why,
                            size_t whylen);

#endif
