# SPDX-License-Identifier: MIT
"""Interop: the stock gRPC client (Debian's python3-grpcio, gRPC core 1.51)
against monoshop's own gRPC server (SPEC §3, issue 3).

A monoshop hosting only Discount (node.modules=discount, grpc.listen port 0)
is called with stubs protoc generates at test time from the repository's
proto/ files: the four Discount RPCs and their status codes, messages and
percent-encoding; unknown service/method; large and oversized messages;
health Check/Watch; reflection v1 and v1alpha; many concurrent calls on one
channel and on several; metadata. A second process with
debug.discount_delay_ms=1000 and grpc.max_message=64K makes deadlines expire
on purpose, checks a configured message limit and a graceful shutdown with a
call in flight.

Usage: /usr/bin/python3 test_grpc_interop.py PATH/TO/monoshop PATH/TO/proto
"""

import os
import signal
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (Server, TestFailure, check, check_eq,  # noqa: E402
                     exe_and_proto_from_argv, expect_rpc_error, grpc_stubs,
                     run, say, step, timed, wait_until)

try:
    import grpc  # noqa: E402
except ImportError:
    print("needs Debian's python3-grpcio for /usr/bin/python3", file=sys.stderr)
    sys.exit(1)

SVC = "discount.DiscountProtoService"
MiB = 1024 * 1024


def coupon_eq(got, want, what):
    """|want| = (id, productName, description, amount)."""
    check_eq((got.id, got.productName, got.description, got.amount), want, what)


def start_discount(exe, name, extra=()):
    srv = Server(exe, name=name, extra=["node.modules=discount"] + list(extra))
    srv.start(want_grpc=True)
    return srv


def channel(srv, options=()):
    ch = grpc.insecure_channel("127.0.0.1:%d" % srv.grpc_port,
                               options=list(options))
    try:
        grpc.channel_ready_future(ch).result(timeout=10)
    except grpc.FutureTimeoutError:
        raise TestFailure("could not connect a grpc channel to 127.0.0.1:%d"
                          % srv.grpc_port)
    return ch


def discount_rpcs(pb, stub):
    step("1. GetDiscount: seed coupons and an unknown product")
    coupon_eq(stub.GetDiscount(pb.GetDiscountRequest(productName="IPhone X"),
                               timeout=5),
              (1, "IPhone X", "IPhone Discount", 150), "GetDiscount(IPhone X)")
    coupon_eq(stub.GetDiscount(pb.GetDiscountRequest(productName="Samsung 10"),
                               timeout=5),
              (2, "Samsung 10", "Samsung Discount", 100), "GetDiscount(Samsung 10)")
    coupon_eq(stub.GetDiscount(pb.GetDiscountRequest(productName="E2E Nothing"),
                               timeout=5),
              (0, "No Discount", "No Discount Desc", 0), "GetDiscount(unknown)")
    coupon_eq(stub.GetDiscount(pb.GetDiscountRequest(), timeout=5),
              (0, "No Discount", "No Discount Desc", 0),
              "GetDiscount with an empty request (all defaults)")

    step("2. CreateDiscount: new id, found by Get; duplicates and bad coupons")
    c = stub.CreateDiscount(pb.CreateDiscountRequest(coupon=pb.CouponModel(
        id=777, productName="E2E Phone", description="E2E Desc", amount=25)),
        timeout=5)
    check(c.id not in (0, 1, 2, 777),
          "CreateDiscount gave a new id (%d; the request's 777 is ignored)" % c.id)
    new_id = c.id
    coupon_eq(c, (new_id, "E2E Phone", "E2E Desc", 25), "CreateDiscount reply")
    coupon_eq(stub.GetDiscount(pb.GetDiscountRequest(productName="E2E Phone"),
                               timeout=5),
              (new_id, "E2E Phone", "E2E Desc", 25), "GetDiscount(E2E Phone)")
    expect_rpc_error(lambda: stub.CreateDiscount(pb.CreateDiscountRequest(
        coupon=pb.CouponModel(productName="E2E Phone", description="again",
                              amount=1)), timeout=5),
        grpc.StatusCode.ALREADY_EXISTS, "CreateDiscount with an existing name",
        details_contains="E2E Phone")
    expect_rpc_error(lambda: stub.CreateDiscount(pb.CreateDiscountRequest(
        coupon=pb.CouponModel(productName="IPhone X", amount=1)), timeout=5),
        grpc.StatusCode.ALREADY_EXISTS, "CreateDiscount(IPhone X) (a seed name)")
    expect_rpc_error(lambda: stub.CreateDiscount(pb.CreateDiscountRequest(),
                                                 timeout=5),
                     grpc.StatusCode.INVALID_ARGUMENT,
                     "CreateDiscount without a coupon")
    expect_rpc_error(lambda: stub.CreateDiscount(pb.CreateDiscountRequest(
        coupon=pb.CouponModel(productName="  ", amount=1)), timeout=5),
        grpc.StatusCode.INVALID_ARGUMENT, "CreateDiscount with a blank productName",
        details_contains="productName")
    expect_rpc_error(lambda: stub.CreateDiscount(pb.CreateDiscountRequest(
        coupon=pb.CouponModel(productName="E2E Negative", amount=-5)), timeout=5),
        grpc.StatusCode.INVALID_ARGUMENT, "CreateDiscount with a negative amount",
        details_contains="amount")

    step("3. UpdateDiscount: unknown id, no coupon, a good one")
    expect_rpc_error(lambda: stub.UpdateDiscount(pb.UpdateDiscountRequest(
        coupon=pb.CouponModel(id=99999, productName="E2E Ghost", amount=1)),
        timeout=5), grpc.StatusCode.NOT_FOUND, "UpdateDiscount of an unknown id",
        details_contains="99999")
    expect_rpc_error(lambda: stub.UpdateDiscount(pb.UpdateDiscountRequest(),
                                                 timeout=5),
                     grpc.StatusCode.INVALID_ARGUMENT,
                     "UpdateDiscount without a coupon")
    c = stub.UpdateDiscount(pb.UpdateDiscountRequest(coupon=pb.CouponModel(
        id=new_id, productName="E2E Phone", description="E2E Desc 2", amount=30)),
        timeout=5)
    coupon_eq(c, (new_id, "E2E Phone", "E2E Desc 2", 30), "UpdateDiscount reply")
    coupon_eq(stub.GetDiscount(pb.GetDiscountRequest(productName="E2E Phone"),
                               timeout=5),
              (new_id, "E2E Phone", "E2E Desc 2", 30),
              "GetDiscount(E2E Phone) after the update")

    step("4. DeleteDiscount: unknown (NOT_FOUND, the original's message), good")
    expect_rpc_error(lambda: stub.DeleteDiscount(pb.DeleteDiscountRequest(
        productName="E2E Nothing"), timeout=5),
        grpc.StatusCode.NOT_FOUND, "DeleteDiscount of an unknown product",
        details="Discount with ProductName=E2E Nothing is not found.")
    # grpc-message is percent-encoded UTF-8 on the wire: non-ASCII and '%'
    # must come back exactly.
    odd = "Çay ☕ 100% \"quoted\""
    expect_rpc_error(lambda: stub.DeleteDiscount(pb.DeleteDiscountRequest(
        productName=odd), timeout=5),
        grpc.StatusCode.NOT_FOUND, "DeleteDiscount of a non-ASCII unknown name",
        details="Discount with ProductName=%s is not found." % odd)
    r = stub.DeleteDiscount(pb.DeleteDiscountRequest(productName="E2E Phone"),
                            timeout=5)
    check_eq(r.success, True, "DeleteDiscount(E2E Phone).success")
    coupon_eq(stub.GetDiscount(pb.GetDiscountRequest(productName="E2E Phone"),
                               timeout=5),
              (0, "No Discount", "No Discount Desc", 0),
              "GetDiscount(E2E Phone) after the delete")
    expect_rpc_error(lambda: stub.DeleteDiscount(pb.DeleteDiscountRequest(
        productName="E2E Phone"), timeout=5),
        grpc.StatusCode.NOT_FOUND, "DeleteDiscount(E2E Phone) a second time")

    step("4b. with_call: OK trailers and response metadata")
    reply, call = stub.GetDiscount.with_call(
        pb.GetDiscountRequest(productName="IPhone X"), timeout=5)
    check_eq(call.code(), grpc.StatusCode.OK, "call.code() of a good Get")
    check_eq(reply.amount, 150, "with_call reply amount")


def unknown_paths(ch):
    step("5. unknown method and unknown service -> UNIMPLEMENTED")
    ident = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
    expect_rpc_error(lambda: ch.unary_unary("/%s/Nope" % SVC, **ident)(b"", timeout=5),
                     grpc.StatusCode.UNIMPLEMENTED, "/%s/Nope" % SVC)
    expect_rpc_error(lambda: ch.unary_unary("/nope.Nope/GetDiscount", **ident)(
        b"", timeout=5), grpc.StatusCode.UNIMPLEMENTED, "/nope.Nope/GetDiscount")
    expect_rpc_error(lambda: ch.unary_unary("/discount.discountprotoservice/GetDiscount",
                                            **ident)(b"", timeout=5),
                     grpc.StatusCode.UNIMPLEMENTED,
                     "a path in the wrong case (paths are case-sensitive)")


def parse_error(ch):
    step("15. a request that does not parse -> INTERNAL")
    ident = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
    # Bytes that are not a GetDiscountRequest: a field 1 of wire type 2 whose
    # length runs past the end. "Error parsing request proto" is INTERNAL,
    # generated by the library (grpc doc/statuscodes.md), which never makes
    # INVALID_ARGUMENT.
    expect_rpc_error(lambda: ch.unary_unary("/%s/GetDiscount" % SVC, **ident)(
        b"\x0a\x7f", timeout=5), grpc.StatusCode.INTERNAL,
        "an unparsable GetDiscountRequest (statuscodes.md: INTERNAL)")


def messages(pb, srv):
    step("6. large messages: 3 MiB (under the 4 MiB limit) OK, 5 MiB refused")
    opts = [("grpc.max_send_message_length", 64 * MiB),
            ("grpc.max_receive_message_length", 64 * MiB)]
    ch = channel(srv, opts)
    stub = pb.DiscountProtoServiceStub(ch)
    big = "x" * (3 * MiB)
    c = stub.GetDiscount(pb.GetDiscountRequest(productName=big), timeout=20)
    coupon_eq(c, (0, "No Discount", "No Discount Desc", 0),
              "GetDiscount with a 3 MiB productName (many DATA frames)")
    huge = "y" * (5 * MiB)
    expect_rpc_error(lambda: stub.GetDiscount(pb.GetDiscountRequest(productName=huge),
                                              timeout=20),
                     grpc.StatusCode.RESOURCE_EXHAUSTED,
                     "GetDiscount with a 5 MiB productName")
    coupon_eq(stub.GetDiscount(pb.GetDiscountRequest(productName="IPhone X"),
                               timeout=5),
              (1, "IPhone X", "IPhone Discount", 150),
              "the same channel still works after the oversized message")
    ch.close()


def health(hpb, hgrpc, ch):
    step("7. grpc.health.v1.Health: Check and Watch")
    hs = hgrpc.HealthStub(ch)
    SERVING = hpb.HealthCheckResponse.SERVING
    for name in ("", SVC):
        r = hs.Check(hpb.HealthCheckRequest(service=name), timeout=5)
        check_eq(r.status, SERVING, "Health.Check(%r).status" % name)
    expect_rpc_error(lambda: hs.Check(hpb.HealthCheckRequest(service="nope.Nope"),
                                      timeout=5),
                     grpc.StatusCode.NOT_FOUND, "Health.Check('nope.Nope')")
    for name in ("", SVC):
        stream = hs.Watch(hpb.HealthCheckRequest(service=name), timeout=10)
        first = next(stream)
        check_eq(first.status, SERVING, "first message of Health.Watch(%r)" % name)
        stream.cancel()
        try:
            next(stream)
            raise TestFailure("Watch stream gave a second message right away")
        except grpc.RpcError as e:
            check_eq(e.code(), grpc.StatusCode.CANCELLED,
                     "Watch(%r) ends CANCELLED after cancel()" % name)
    stream = hs.Watch(hpb.HealthCheckRequest(service="nope.Nope"), timeout=10)
    first = next(stream)
    check_eq(first.status, hpb.HealthCheckResponse.SERVICE_UNKNOWN,
             "first message of Health.Watch('nope.Nope') (health-checking.md)")
    stream.cancel()


def reflection(ch, rpb, version):
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    step("8. server reflection %s: list_services, file_containing_symbol,"
         " file_by_filename, an unknown symbol, on one stream" % version)
    call = ch.stream_stream(
        "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % version,
        request_serializer=rpb.ServerReflectionRequest.SerializeToString,
        response_deserializer=rpb.ServerReflectionResponse.FromString)
    reqs = [rpb.ServerReflectionRequest(list_services=""),
            rpb.ServerReflectionRequest(file_containing_symbol=SVC),
            rpb.ServerReflectionRequest(file_by_filename="discount.proto"),
            rpb.ServerReflectionRequest(file_containing_symbol="discount.CouponModel"),
            rpb.ServerReflectionRequest(file_containing_symbol="nope.Nope")]
    resps = list(call(iter(reqs), timeout=10))
    check_eq(len(resps), len(reqs), "one reflection response per request")

    r = resps[0]
    check_eq(r.WhichOneof("message_response"), "list_services_response",
             "response 1 kind")
    names = sorted(s.name for s in r.list_services_response.service)
    say("   services: %s" % names)
    for want in (SVC, "grpc.health.v1.Health"):
        check(want in names, "list_services lists %s" % want)

    def discount_fdp(resp, what):
        check_eq(resp.WhichOneof("message_response"), "file_descriptor_response",
                 "%s: response kind" % what)
        fdps = [descriptor_pb2.FileDescriptorProto.FromString(b)
                for b in resp.file_descriptor_response.file_descriptor_proto]
        byname = {f.name: f for f in fdps}
        check("discount.proto" in byname, "%s: a FileDescriptorProto named"
              " discount.proto among %s" % (what, sorted(byname)))
        return byname["discount.proto"]

    fdp = discount_fdp(resps[1], "file_containing_symbol(%s)" % SVC)
    check_eq(fdp.package, "discount", "descriptor package")
    check_eq([s.name for s in fdp.service], ["DiscountProtoService"],
             "descriptor services")
    methods = [(m.name, m.input_type, m.output_type) for m in fdp.service[0].method]
    check_eq(methods, [
        ("GetDiscount", ".discount.GetDiscountRequest", ".discount.CouponModel"),
        ("CreateDiscount", ".discount.CreateDiscountRequest", ".discount.CouponModel"),
        ("UpdateDiscount", ".discount.UpdateDiscountRequest", ".discount.CouponModel"),
        ("DeleteDiscount", ".discount.DeleteDiscountRequest",
         ".discount.DeleteDiscountResponse")], "the service's 4 methods")
    check(fdp == discount_fdp(resps[2], "file_by_filename(discount.proto)"),
          "file_by_filename gives the same descriptor")
    check(fdp == discount_fdp(resps[3], "file_containing_symbol(discount.CouponModel)"),
          "a message symbol gives the same descriptor")
    r = resps[4]
    check_eq(r.WhichOneof("message_response"), "error_response",
             "file_containing_symbol(nope.Nope): response kind")
    check_eq(r.error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0],
             "error_response.error_code for an unknown symbol (NOT_FOUND)")

    # What a reflection client (buf curl) does: build the messages from the
    # served descriptor alone and call the service with them.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    factory = message_factory.MessageFactory(pool)
    Req = factory.GetPrototype(pool.FindMessageTypeByName("discount.GetDiscountRequest"))
    Rep = factory.GetPrototype(pool.FindMessageTypeByName("discount.CouponModel"))
    m = ch.unary_unary("/%s/GetDiscount" % SVC,
                       request_serializer=Req.SerializeToString,
                       response_deserializer=Rep.FromString)
    rep = m(Req(productName="Samsung 10"), timeout=5)
    check_eq((rep.id, rep.productName, rep.amount), (2, "Samsung 10", 100),
             "GetDiscount through messages built from the reflected descriptor")


def concurrency(pb, srv, ch):
    step("9. many concurrent calls multiplexed on one channel, and on several")
    stub = pb.DiscountProtoServiceStub(ch)
    names = ["IPhone X", "Samsung 10", "E2E Nothing"]
    want = {"IPhone X": 150, "Samsung 10": 100, "E2E Nothing": 0}
    errors = []

    def worker(i):
        for j in range(20):
            n = names[(i + j) % 3]
            try:
                c = stub.GetDiscount(pb.GetDiscountRequest(productName=n), timeout=10)
                if c.amount != want[n]:
                    errors.append("%s -> %d" % (n, c.amount))
            except grpc.RpcError as e:
                errors.append("%s -> %s %s" % (n, e.code().name, e.details()))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    _, secs = timed(lambda: ([t.start() for t in threads], [t.join() for t in threads]))
    check_eq(errors, [], "errors of 16 threads x 20 calls on one channel"
             " (%.2fs)" % secs)
    futs = [stub.GetDiscount.future(pb.GetDiscountRequest(productName=names[i % 3]),
                                    timeout=10) for i in range(100)]
    got = [f.result().amount for f in futs]
    check(got == [want[names[i % 3]] for i in range(100)],
          "100 calls in flight at once (futures) on one channel: %s"
          % (got if got != [want[names[i % 3]] for i in range(100)] else "all right"))

    chans = [channel(srv) for _ in range(8)]
    with ThreadPoolExecutor(8) as ex:
        res = list(ex.map(lambda c: [pb.DiscountProtoServiceStub(c).GetDiscount(
            pb.GetDiscountRequest(productName="IPhone X"), timeout=10).amount
            for _ in range(10)], chans))
    check(res == [[150] * 10] * 8, "8 channels (connections) x 10 calls: %s"
          % ("all 150" if res == [[150] * 10] * 8 else res))
    for c in chans:
        c.close()


def metadata(pb, stub):
    step("10. metadata: traceparent, a -bin header, custom ASCII are accepted")
    md = (("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
          ("x-e2e-note", "hello"),
          ("x-e2e-bin", b"\x00\x01\xfe\xff"))
    reply, call = stub.GetDiscount.with_call(
        pb.GetDiscountRequest(productName="IPhone X"), metadata=md, timeout=5)
    check_eq(reply.amount, 150, "GetDiscount with traceparent and other metadata")
    check_eq(call.code(), grpc.StatusCode.OK, "its status")


def junk_on_the_port(srv, pb, stub):
    step("11. HTTP/1.1 and garbage on the gRPC port do not hurt the server")
    for payload in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64,
                    b"\x00" * 32):
        s = socket.create_connection(("127.0.0.1", srv.grpc_port), timeout=5)
        try:
            s.sendall(payload)
            try:
                s.recv(4096)
            except (socket.timeout, ConnectionResetError):
                pass
        finally:
            s.close()
    check(srv.alive(), "the server process is still running")
    coupon_eq(stub.GetDiscount(pb.GetDiscountRequest(productName="IPhone X"),
                               timeout=5),
              (1, "IPhone X", "IPhone Discount", 150),
              "GetDiscount after the junk connections")


def deadlines(exe, pb):
    step("12. deadlines: debug.discount_delay_ms=1000, grpc.max_message=64K")
    slow = start_discount(exe, "discount-slow",
                          ["debug.discount_delay_ms=1000", "grpc.max_message=64K"])
    ch = channel(slow, [("grpc.max_send_message_length", 64 * MiB)])
    stub = pb.DiscountProtoServiceStub(ch)
    _, secs = timed(lambda: expect_rpc_error(
        lambda: stub.GetDiscount(pb.GetDiscountRequest(productName="IPhone X"),
                                 timeout=0.2),
        grpc.StatusCode.DEADLINE_EXCEEDED, "GetDiscount with a 0.2 s deadline"))
    check(secs < 0.9, "the deadline expired in time (%.2fs)" % secs)
    for i in range(3):
        expect_rpc_error(lambda: stub.GetDiscount(
            pb.GetDiscountRequest(productName="IPhone X"), timeout=0.1),
            grpc.StatusCode.DEADLINE_EXCEEDED, "another 0.1 s deadline (%d)" % i)
    c, secs = timed(lambda: stub.GetDiscount(
        pb.GetDiscountRequest(productName="IPhone X"), timeout=10))
    coupon_eq(c, (1, "IPhone X", "IPhone Discount", 150),
              "the server still serves after expired deadlines")
    check(0.9 <= secs < 5, "that call waited for the delay (%.2fs)" % secs)

    step("13. a configured message limit (grpc.max_message=64K)")
    expect_rpc_error(lambda: stub.GetDiscount(
        pb.GetDiscountRequest(productName="z" * (100 * 1024)), timeout=10),
        grpc.StatusCode.RESOURCE_EXHAUSTED, "a 100 KiB request above 64K")
    c = stub.GetDiscount(pb.GetDiscountRequest(productName="z" * (32 * 1024)),
                         timeout=10)
    check_eq(c.amount, 0, "a 32 KiB request under 64K is served")

    step("14. SIGTERM with a call in flight: the call finishes, exit 0")
    held = slow.log().count("holding the call")
    fut = stub.GetDiscount.future(pb.GetDiscountRequest(productName="Samsung 10"),
                                  timeout=10)
    # Wait until the call is in the handler's 1 s delay (Discount logs it).
    wait_until(lambda: slow.log().count("holding the call") > held, 5,
               "the call to reach the handler")
    slow.proc.send_signal(signal.SIGTERM)
    try:
        c = fut.result()
    except grpc.RpcError as e:
        raise TestFailure("the in-flight call failed on graceful shutdown: %s %r"
                          % (e.code().name, e.details()))
    coupon_eq(c, (2, "Samsung 10", "Samsung Discount", 100),
              "the in-flight call completed during shutdown")
    rc = slow.proc.wait(10)
    check_eq(rc, 0, "exit status after SIGTERM")
    ch.close()


def main():
    exe, proto = exe_and_proto_from_argv()
    st = grpc_stubs(proto)
    srv = start_discount(exe, "discount")
    step("Discount alone: gRPC on 127.0.0.1:%d" % srv.grpc_port)
    ch = channel(srv)
    stub = st.discount_pb2_grpc.DiscountProtoServiceStub(ch)
    pb = st.discount_pb2
    pb.DiscountProtoServiceStub = st.discount_pb2_grpc.DiscountProtoServiceStub
    discount_rpcs(pb, stub)
    unknown_paths(ch)
    messages(pb, srv)
    health(st.health_pb2, st.health_pb2_grpc, ch)
    reflection(ch, st.reflection_pb2, "v1")
    reflection(ch, st.reflection_pb2, "v1alpha")
    concurrency(pb, srv, ch)
    metadata(pb, stub)
    junk_on_the_port(srv, pb, stub)
    check(srv.alive(), "the Discount process is still running")
    deadlines(exe, pb)
    # Last, so that a failure here does not hide the checks above.
    parse_error(ch)
    ch.close()
    srv.stop()


if __name__ == "__main__":
    run(main)
