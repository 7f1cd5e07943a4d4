/* SPDX-License-Identifier: MIT */
/*
 * The serialized google.protobuf.FileDescriptorSet of every proto the gRPC
 * server offers (discount.proto, grpc/health/v1/health.proto and both
 * reflection protos, with their imports), made at build time by
 * protoc-c --descriptor_set_out --include_imports and compiled in by
 * embed.py. Server reflection answers from these bytes; nothing reads a
 * file at run time. Read-only, so any thread may read it.
 */
#ifndef MS_PROTO_DESCRIPTORS_H
#define MS_PROTO_DESCRIPTORS_H

#include <stddef.h>

extern const unsigned char tp_grpc_descriptor_set[];
extern const size_t tp_grpc_descriptor_set_len;

#endif
