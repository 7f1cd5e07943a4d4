# SPDX-License-Identifier: MIT
"""The gRPC server at the HTTP/2 frame level (reference/wire.md §1), with
Debian's python3-h2 as a bare HTTP/2 client: what a stock gRPC library hides
or never sends. Response headers and trailers, Trailers-Only errors,
percent-encoded grpc-message, 415 for a non-gRPC content type, a message
split into 1-byte DATA frames and two calls' messages interleaved,
cardinality violations, truncated messages, compression, grpc-timeout,
SETTINGS_MAX_CONCURRENT_STREAMS, a client RST_STREAM, and keepalive
enforcement (GOAWAY ENHANCE_YOUR_CALM "too_many_pings").

Exits 77 (meson: skipped) when python3-h2 is not installed.

Usage: /usr/bin/python3 test_grpc_h2.py PATH/TO/monoshop PATH/TO/proto
"""

import os
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (Server, TestFailure, check, check_eq,  # noqa: E402
                     exe_and_proto_from_argv, grpc_stubs, run, say, step)

try:
    import h2.config  # noqa: E402
    import h2.connection  # noqa: E402
    import h2.errors  # noqa: E402
    import h2.events  # noqa: E402
    import h2.settings  # noqa: E402
except ImportError:
    print("SKIP: needs Debian's python3-h2 for /usr/bin/python3", flush=True)
    sys.exit(77)

GET = "/discount.DiscountProtoService/GetDiscount"
DELETE = "/discount.DiscountProtoService/DeleteDiscount"


def frame(msg, flag=0):
    return bytes([flag]) + struct.pack(">I", len(msg)) + msg


class Conn:
    """One HTTP/2 connection (prior knowledge) to the gRPC port."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False,
            normalize_outbound_headers=False))
        self.h2.initiate_connection()
        self.flush()
        self.streams = {}  # id -> dict(headers, data, trailers, ended, reset)
        self.goaway = None
        self.pings = 0
        self.eof = False

    def flush(self):
        d = self.h2.data_to_send()
        if d:
            self.sock.sendall(d)

    def start(self, path, body=None, headers=(), ctype="application/grpc", end=True,
              chunk=None):
        sid = self.h2.get_next_available_stream_id()
        hd = [(":method", "POST"), (":scheme", "http"), (":path", path),
              (":authority", "127.0.0.1"), ("te", "trailers")]
        if ctype is not None:
            hd.append(("content-type", ctype))
        hd += list(headers)
        self.streams[sid] = {"headers": None, "data": b"", "trailers": None,
                             "ended": False, "reset": None}
        self.h2.send_headers(sid, hd, end_stream=(body is None and end))
        if body is not None:
            if chunk:
                for i in range(0, len(body), chunk):
                    last = i + chunk >= len(body)
                    self.h2.send_data(sid, body[i:i + chunk], end_stream=(last and end))
                    self.flush()
            else:
                self.h2.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def pump(self, until, timeout=5):
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                return False
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                self.eof = True
                return until()
            if not d:
                self.eof = True
                return until()
            for ev in self.h2.receive_data(d):
                st = self.streams.get(getattr(ev, "stream_id", None))
                if isinstance(ev, h2.events.ResponseReceived):
                    st["headers"] = [(k.decode(), v.decode()) for k, v in ev.headers]
                elif isinstance(ev, h2.events.TrailersReceived):
                    st["trailers"] = [(k.decode(), v.decode()) for k, v in ev.headers]
                elif isinstance(ev, h2.events.DataReceived):
                    st["data"] += ev.data
                    self.h2.acknowledge_received_data(ev.flow_controlled_length,
                                                      ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    st["ended"] = True
                elif isinstance(ev, h2.events.StreamReset):
                    if st is not None:
                        st["reset"] = ev.error_code
                elif isinstance(ev, h2.events.PingAckReceived):
                    self.pings += 1
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.goaway = (ev.error_code, ev.additional_data)
                    return until()
            try:
                self.flush()
            except OSError:
                self.eof = True
        return True

    def finish(self, sid, timeout=5):
        st = self.streams[sid]
        if not self.pump(lambda: st["ended"] or st["reset"] is not None, timeout):
            raise TestFailure("stream %d did not end within %ss: %r" % (sid, timeout, st))
        return st

    def close(self):
        self.sock.close()


def hdr(pairs, name):
    if pairs is None:
        return None
    vals = [v for k, v in pairs if k == name]
    return vals[0] if vals else None


def expect_trailers_only(st, code, what, message=None):
    """|st| must be a Trailers-Only answer: one HEADERS block with :status 200,
    content-type application/grpc, grpc-status |code|, no DATA, no trailers."""
    h = st["headers"]
    check(h is not None, "%s: a response HEADERS block came (%r)" % (what, st))
    check_eq((hdr(h, ":status"), hdr(h, "grpc-status"), st["trailers"], st["data"]),
             ("200", str(code), None, b""),
             "%s: (:status, grpc-status, trailers, data) of a Trailers-Only answer" % what)
    ct = hdr(h, "content-type") or ""
    check(ct.startswith("application/grpc"), "%s: content-type %r" % (what, ct))
    if message is not None:
        check_eq(hdr(h, "grpc-message"), message, "%s: grpc-message" % what)
    say("   ok: %s -> Trailers-Only grpc-status %d (%r)"
        % (what, code, hdr(h, "grpc-message")))


def expect_ok(st, pb_type, what):
    h, t = st["headers"], st["trailers"]
    check(h is not None and hdr(h, ":status") == "200" and hdr(h, "grpc-status") is None,
          "%s: response headers with :status 200 and no grpc-status (%r)" % (what, h))
    check((hdr(h, "content-type") or "").startswith("application/grpc"),
          "%s: content-type application/grpc" % what)
    check(t is not None and hdr(t, "grpc-status") == "0",
          "%s: trailers with grpc-status 0 (%r)" % (what, t))
    d = st["data"]
    check(len(d) >= 5 and d[0] == 0 and struct.unpack(">I", d[1:5])[0] == len(d) - 5,
          "%s: exactly one uncompressed length-prefixed message (%d bytes)"
          % (what, len(d)))
    return pb_type.FromString(d[5:])


def main():
    exe, proto = exe_and_proto_from_argv()
    st_ = grpc_stubs(proto, ("discount.proto",))
    pb = st_.discount_pb2
    srv = Server(exe, name="discount", extra=["node.modules=discount"])
    srv.start(want_grpc=True)
    get_iphone = frame(pb.GetDiscountRequest(productName="IPhone X").SerializeToString())

    step("1. a normal call: headers, one message, trailers; server SETTINGS")
    c = Conn(srv.grpc_port)
    st = c.finish(c.start(GET, get_iphone))
    m = expect_ok(st, pb.CouponModel, "GetDiscount(IPhone X)")
    check_eq((m.id, m.productName, m.amount), (1, "IPhone X", 150), "the reply")
    mcs = c.h2.remote_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
    check_eq(mcs, 100, "SETTINGS_MAX_CONCURRENT_STREAMS (grpc.max_concurrent_streams)")

    step("2. framing: a message in 1-byte DATA frames; two calls interleaved")
    st = c.finish(c.start(GET, get_iphone, chunk=1))
    check_eq(expect_ok(st, pb.CouponModel, "1-byte DATA frames").amount, 150, "amount")
    body2 = frame(pb.GetDiscountRequest(productName="Samsung 10").SerializeToString())
    a = c.start(GET, None, end=False)
    b = c.start(GET, None, end=False)
    for i in range(len(get_iphone)):
        c.h2.send_data(a, get_iphone[i:i + 1])
        if i < len(body2):
            c.h2.send_data(b, body2[i:i + 1])
    c.h2.send_data(b, body2[len(get_iphone):] if len(body2) > len(get_iphone) else b"",
                   end_stream=True)
    c.h2.send_data(a, b"", end_stream=True)
    c.flush()
    check_eq(expect_ok(c.finish(a), pb.CouponModel, "interleaved call A").amount, 150,
             "call A amount")
    check_eq(expect_ok(c.finish(b), pb.CouponModel, "interleaved call B").amount, 100,
             "call B amount")

    step("3. Trailers-Only errors and percent-encoded grpc-message")
    expect_trailers_only(c.finish(c.start("/discount.DiscountProtoService/Nope",
                                          frame(b""))), 12, "unknown method")
    expect_trailers_only(c.finish(c.start("/nope.Nope/X", frame(b""))), 12,
                         "unknown service")
    name = "\u00c7ay 100% \u2615"
    st = c.finish(c.start(DELETE, frame(pb.DeleteDiscountRequest(
        productName=name).SerializeToString())))
    expect_trailers_only(st, 5, "DeleteDiscount of an unknown non-ASCII name",
                         message="Discount with ProductName=%C3%87ay 100%25 %E2%98%95"
                                 " is not found.")

    step("4. content type: not gRPC -> HTTP 415")
    for ct in ("text/plain", "application/json", None):
        st = c.finish(c.start(GET, get_iphone, ctype=ct))
        check_eq(hdr(st["headers"], ":status"), "415",
                 "HTTP status for content-type %r" % ct)
    st = c.finish(c.start(GET, get_iphone, ctype="application/grpc+proto"))
    check_eq(expect_ok(st, pb.CouponModel, "content-type application/grpc+proto").amount,
             150, "amount")

    step("5. cardinality, truncation, compression")
    expect_trailers_only(c.finish(c.start(GET, get_iphone + get_iphone)), 12,
                         "two request messages on a unary method")
    expect_trailers_only(c.finish(c.start(GET, b"")), 12, "no request message")
    expect_trailers_only(c.finish(c.start(GET, get_iphone[:3])), 13,
                         "a truncated length prefix")
    expect_trailers_only(c.finish(c.start(GET, get_iphone[:-2])), 13,
                         "a message shorter than its prefix says")
    st = c.finish(c.start(GET, frame(b"\x1f\x8b\x08\x00", flag=1),
                          headers=[("grpc-encoding", "gzip")]))
    expect_trailers_only(st, 12, "grpc-encoding gzip (not supported)")
    acc = hdr(st["headers"], "grpc-accept-encoding") or ""
    check("gzip" not in acc, "grpc-accept-encoding %r does not offer gzip" % acc)

    step("6. grpc-timeout")
    expect_trailers_only(c.finish(c.start(GET, get_iphone,
                                          headers=[("grpc-timeout", "0m")])), 4,
                         "grpc-timeout 0m")
    st = c.finish(c.start(GET, get_iphone, headers=[("grpc-timeout", "99999999S")]))
    check_eq(expect_ok(st, pb.CouponModel, "grpc-timeout 99999999S").amount, 150, "amount")
    # A request whose end never comes: the deadline must still end it.
    t0 = time.monotonic()
    st = c.finish(c.start(GET, get_iphone, headers=[("grpc-timeout", "300m")], end=False))
    secs = time.monotonic() - t0
    code = hdr(st["trailers"] or st["headers"] or [], "grpc-status")
    check(code == "4" or st["reset"] is not None,
          "a half-open call ends with DEADLINE_EXCEEDED or a reset (%r)" % st)
    check(secs < 2, "... after about 300 ms (%.2fs)" % secs)

    step("7. a client RST_STREAM(CANCEL) mid-call; the connection goes on")
    sid = c.start(GET, None, end=False)
    c.h2.send_data(sid, get_iphone[:4])
    c.h2.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    c.flush()
    st = c.finish(c.start(GET, get_iphone))
    check_eq(expect_ok(st, pb.CouponModel, "a call after the cancelled one").amount, 150,
             "amount")
    c.close()

    step("8. keepalive enforcement: PINGs without calls -> GOAWAY too_many_pings")
    k = Conn(srv.grpc_port)
    for i in range(10):
        try:
            k.h2.ping(b"%08d" % i)
            k.flush()
        except Exception:
            break
        k.pump(lambda: k.goaway is not None, 0.1)
        if k.goaway is not None or k.eof:
            break
    check(k.goaway is not None,
          "GOAWAY after %d acked PINGs (goaway %r, eof %r)" % (k.pings, k.goaway, k.eof))
    check_eq((k.goaway[0], k.goaway[1]), (h2.errors.ErrorCodes.ENHANCE_YOUR_CALM,
                                          b"too_many_pings"), "GOAWAY code and debug data")
    k.close()

    check(srv.alive(), "the server is still running")
    c = Conn(srv.grpc_port)
    check_eq(expect_ok(c.finish(c.start(GET, get_iphone)), pb.CouponModel,
                       "a call on a new connection").amount, 150, "amount")

    step("9. Compressed-Flag 1 without grpc-encoding -> INTERNAL")
    # grpc doc/compression.md, test case 6: "MUST fail with INTERNAL".
    expect_trailers_only(c.finish(c.start(GET, frame(get_iphone[5:], flag=1))), 13,
                         "Compressed-Flag 1 without grpc-encoding (wire.md 1.8: INTERNAL)")
    c.close()
    srv.stop()


if __name__ == "__main__":
    run(main)
