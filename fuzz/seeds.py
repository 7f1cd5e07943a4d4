#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/:
a handful of valid inputs (what a real client sends) and invalid ones (the
edge cases the code is known to care about), so that libFuzzer starts deep
instead of rediscovering JSON, HTTP/2 and protobuf. Deterministic; run it
again after changing it (the seeds are committed, this script is how they
were made). Needs Debian's python3-h2 (for the gRPC sessions), for
/usr/bin/python3.

Files whose name starts with "crash-" or "regress-" are not written here:
they are inputs that once broke a target, kept as regression tests.
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")

IPHONE = "5334c996-8457-4cf0-815c-ed2b77c4ff61"
SAMSUNG = "4f136e9f-ff8c-4c1f-9a33-d12f689bdab8"
CUSTOMER = "58c49479-ec65-4de2-86e7-033c546291aa"
ORD_1 = "a2537de3-889a-42d2-a3dc-e32503cb1f54"


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, bytes):
        data = json.dumps(data, separators=(",", ":")).encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- REST bodies -------------------------------------------------------------

def cart(user="swn", items=None):
    if items is None:
        items = [{"quantity": 2, "color": "Red", "price": 500,
                  "productId": IPHONE, "productName": "IPhone X"},
                 {"quantity": 1, "color": "Blue", "price": 400.25,
                  "productId": SAMSUNG, "productName": "Samsung 10"}]
    return {"cart": {"userName": user, "items": items}}


ADDRESS = {"firstName": "mehmet", "lastName": "ozkaya",
           "emailAddress": "mehmet@gmail.com",
           "addressLine": "Bahcelievler No:4", "country": "Turkey",
           "state": "Istanbul", "zipCode": "38050"}
PAYMENT = {"cardName": "mehmet", "cardNumber": "5555555555554444",
           "expiration": "12/28", "cvv": "355", "paymentMethod": 1}


def checkout(**over):
    d = {"userName": "swn", "customerId": CUSTOMER, "totalPrice": 1}
    d.update(ADDRESS)
    d.update(PAYMENT)
    d.update(over)
    return {"basketCheckoutDto": d}


def order(oid=None, **over):
    o = {"customerId": CUSTOMER, "orderName": "FUZZ_ORDER",
         "shippingAddress": ADDRESS, "billingAddress": ADDRESS,
         "payment": PAYMENT, "status": 1,
         "orderItems": [{"productId": IPHONE, "quantity": 1, "price": 650},
                        {"productId": SAMSUNG, "quantity": 2,
                         "price": "450.50"}]}
    if oid:
        o["id"] = oid
    o.update(over)
    return {"order": o}


COMMON_BAD = {
    "empty": b"",
    "not-json": b"{\"cart\": ",
    "array": b"[1,2,3]",
    "deep": b"[" * 200 + b"]" * 200,
    "bad-utf8": b"{\"cart\":{\"userName\":\"\xc3\x28\"}}",
    "nul-escape": b"{\"cart\":{\"userName\":\"a\\u0000b\"}}",
    "dup-keys": b"{\"cart\":{},\"cart\":{}}",
    "huge-number": b"{\"order\":{\"status\":1e999999}}",
}


def rest_seeds():
    for t in ("rest_basket", "rest_checkout", "rest_orders_post",
              "rest_orders_put"):
        for name, data in COMMON_BAD.items():
            write(t, "bad-" + name, data)
    t = "rest_basket"
    write(t, "ok-readme", cart())
    write(t, "ok-empty-items", cart(items=[]))
    write(t, "ok-strings", cart(items=[{"quantity": "3", "price": "19.99",
                                        "productId": IPHONE.upper(),
                                        "productName": "IPhone X",
                                        "color": "\u00e9\u4e2d"}]))
    write(t, "bad-three-decimals", cart(items=[{"quantity": 1,
                                                "price": 1.005,
                                                "productId": IPHONE,
                                                "productName": "x"}]))
    write(t, "bad-negative", cart(items=[{"quantity": -1, "price": -5,
                                          "productId": "not-a-guid",
                                          "productName": ""}]))
    write(t, "bad-user", cart(user="../a%2F?b"))
    write(t, "bad-types", {"cart": {"userName": 5, "items": {"a": 1}}})
    write(t, "bad-many-items", cart(items=[{"quantity": 1, "price": 1,
                                            "productId": IPHONE,
                                            "productName": "p"}] * 101))
    t = "rest_checkout"
    write(t, "ok-readme", checkout())
    write(t, "ok-numbers-as-strings", checkout(paymentMethod="2",
                                               totalPrice="350.50"))
    write(t, "bad-cvv-zip", checkout(cvv="12345", zipCode="1234567"))
    write(t, "bad-no-basket", checkout(userName="nobody"))
    write(t, "bad-missing", {"basketCheckoutDto": {"userName": "swn"}})
    write(t, "bad-guid", checkout(customerId="58c49479-ec65-4de2-86e7"))
    t = "rest_orders_post"
    write(t, "ok-order", order())
    write(t, "bad-no-items", order(orderItems=[]))
    write(t, "bad-price-zero", order(orderItems=[{"productId": IPHONE,
                                                  "quantity": 1,
                                                  "price": 0}]))
    write(t, "bad-types", order(status="x", payment=[], orderItems={}))
    t = "rest_orders_put"
    write(t, "ok-ord1", order(oid=ORD_1, orderName="ORD_1"))
    write(t, "bad-unknown-id", order(oid="00000000-0000-0000-0000-000000000001"))
    write(t, "bad-no-id", order())


# ---- router --------------------------------------------------------------------

def router_seeds():
    get, post, put, delete = 0, 1, 2, 3  # HTTP_GET + n
    def r(name, method, text, qname=b""):
        write("router", name, bytes([method, 63]) + text + b"\0" + qname)
    r("get-basket", get, b"/basket/swn")
    r("get-basket-slash", get, b"/Basket/swn/")
    r("get-orders-page", get, b"/orders?pageIndex=0&pageSize=10", b"x")
    r("get-orders-bad-page", get, b"/orders?pageIndex=-1&pageSize=100000")
    r("get-orders-escapes", get, b"/orders?page%49ndex=%31&pageSize=+2%", b"pageIndex")
    r("get-orders-name", get, b"/orders/ORD")
    r("get-orders-customer", get, b"/orders/customer/" + CUSTOMER.encode())
    r("delete-order", delete, b"/orders/" + ORD_1.encode())
    r("delete-basket", delete, b"/basket/nobody")
    r("post-checkout", post, b"/basket/checkout")
    r("put-basket-405", put, b"/basket")
    r("deep", get, b"/a" * 20)
    r("empty-segments", get, b"//basket//x")
    r("utf8", get, "/basket/\u00e9\u4e2d".encode())
    r("bad-utf8", get, b"/basket/\xff\xfe")
    r("query-only", get, b"/orders?&&=&a=b&pageSize", b"a")


# ---- config ----------------------------------------------------------------------

def config_seeds():
    with open(os.path.join(ROOT, "config", "dev.ini"), "rb") as f:
        write("config", "ok-dev-ini", f.read())
    split = os.path.join(ROOT, "config", "split")
    if os.path.isdir(split):
        for n in sorted(os.listdir(split)):
            with open(os.path.join(split, n), "rb") as f:
                write("config", "ok-split-" + n, f.read())
    write("config", "ok-small", "[node]\nmodules = basket, ordering\n"
          "data_dir = \"/tmp/x y\"\n; comment\n# comment\n[http]\n"
          "listen = [::1]:0\nmax_body = 64K\n[events]\n"
          "broker = amqp://guest:guest@127.0.0.1:5672/\n")
    write("config", "bad-unknown-key", "[node]\nnope = 1\n")
    write("config", "bad-no-section", "modules = basket\n")
    write("config", "bad-value", "[http]\nmax_body = -1Q\nlisten = nohost\n")
    write("config", "bad-quotes", "[node]\ndata_dir = \"unterminated\n[x\n")
    write("config", "bad-binary", b"\x00\xff[node]\x00\n=\n")


# ---- protobuf ----------------------------------------------------------------------

def varint(n):
    out = b""
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode("utf-8")
    return varint(num << 3 | 2) + varint(len(value)) + value


def coupon(cid=0, name="IPhone X", desc="IPhone Discount", amount=150):
    return (field(1, cid) if cid else b"") + field(2, name) + \
        field(3, desc) + field(4, amount)


def event(eid="6d9c0c43-0a3a-4a55-9f43-0a8f2d8b6f11", items=True):
    b = field(1, eid) + field(2, "2024-01-02T03:04:05Z") + field(3, "swn") + \
        field(4, CUSTOMER) + field(5, "1100.50")
    for i, k in enumerate(("firstName", "lastName", "emailAddress",
                           "addressLine", "country", "state", "zipCode")):
        b += field(6 + i, ADDRESS[k])
    for i, k in enumerate(("cardName", "cardNumber", "expiration", "cvv")):
        b += field(13 + i, PAYMENT[k])
    b += field(17, 1)
    if items:
        b += field(18, field(1, IPHONE) + field(2, "IPhone X") +
                   field(3, 2) + field(4, "350") + field(5, "Red"))
        b += field(18, field(1, SAMSUNG) + field(2, "Samsung 10") +
                   field(3, 1) + field(4, "400.50"))
    return b


def proto_seeds():
    def p(name, t, data):
        write("proto", name, bytes([t]) + data)
    p("get-iphone", 0, field(1, "IPhone X"))
    p("get-unknown", 0, field(1, "Nothing"))
    p("get-empty", 0, b"")
    p("create", 1, field(1, coupon(name="Fuzz Phone", amount=10)))
    p("create-dup", 1, field(1, coupon()))
    p("create-negative", 1, field(1, coupon(name="Neg", amount=-5)))
    p("update", 2, field(1, coupon(cid=1, amount=200)))
    p("update-missing", 2, field(1, coupon(cid=999)))
    p("delete", 3, field(1, "Samsung 10"))
    p("delete-missing", 3, field(1, "Nope"))
    p("event", 4, event())
    p("event-no-items", 4, event(items=False))
    p("event-own-id", 4 | 0x80, event(eid="9b0c5c43-0a3a-4a55-9f43-0a8f2d8b6f12"))
    p("event-bad-money", 4, field(5, "1.005") + field(3, "swn"))
    p("coupon-reply", 5, coupon(cid=1))
    p("delete-reply", 6, field(1, 1))
    p("health", 7, field(1, "discount.DiscountProtoService"))
    p("reflection-list", 8, field(1, "localhost") + field(7, ""))
    p("truncated", 0, b"\x0a\x10abc")
    p("bad-wire-type", 1, b"\x0f\x01")


# ---- MassTransit envelopes --------------------------------------------------------

def envelope_seeds():
    fx = os.path.join(ROOT, "tests", "fixtures", "masstransit")
    if os.path.isdir(fx):
        for n in sorted(os.listdir(fx)):
            if n.endswith(".json"):
                with open(os.path.join(fx, n), "rb") as f:
                    write("envelope", n[:-5], f.read())
    write("envelope", "bad-not-json", b"{\"messageId\":")
    write("envelope", "bad-empty", b"")
    write("envelope", "bad-array", b"[]")


# ---- gRPC wire ----------------------------------------------------------------------

def grpc_frame(msg, flag=0):
    return bytes([flag]) + struct.pack(">I", len(msg)) + msg


def wire_seeds():
    def w(name, maxm, chunk, data):
        write("grpc_wire", name, bytes([maxm, chunk]) + data)
    w("one", 16, 0, grpc_frame(field(1, "IPhone X")))
    w("two-chunked", 16, 3, grpc_frame(b"ab") + grpc_frame(b""))
    w("partial", 16, 1, grpc_frame(b"abcdef")[:7])
    w("too-big", 1, 0, grpc_frame(b"x" * 40))
    w("compressed", 16, 0, grpc_frame(b"abc", flag=1))
    w("bad-flag", 16, 0, grpc_frame(b"abc", flag=7))
    w("timeout", 16, 0, b"100m")
    w("timeout-hours", 16, 0, b"99999999H")
    w("path", 16, 0, b"/discount.DiscountProtoService/GetDiscount")
    w("content-type", 16, 0, b"application/grpc+proto")
    w("message", 16, 0, "caf\u00e9 100% \x01".encode())
    w("status", 16, 0, b"16")
    w("pushback", 16, 0, b"2147483647")
    w("traceparent", 16, 0,
      b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    w("traceparent-future", 16, 0,
      b"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-ever")
    w("traceparent-zero", 16, 0,
      b"00-00000000000000000000000000000000-b7ad6b7169203331-01")


# ---- nng message headers ---------------------------------------------------------

def nng_seeds():
    def s16(x):
        x = x.encode() if isinstance(x, str) else x
        return struct.pack(">H", len(x)) + x

    def hdr(kind, body, version=1):
        return b"ms" + bytes([version, kind]) + body

    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    w = lambda name, data: write("nng_wire", name, data)
    w("call", hdr(1, struct.pack(">I", 5000) +
                  s16("discount.DiscountProtoService") + s16("GetDiscount") +
                  s16(tp)) + field(1, "IPhone X"))
    w("reply-ok", hdr(2, s16("") + s16("")) + coupon(cid=1))
    w("reply-error", hdr(2, s16("ENOTFOUND") + s16("Discount not found")))
    w("reply-unknown-status", hdr(2, s16("EWHATEVER") + s16("x")))
    w("event", hdr(3, struct.pack(">I", 0) +
                   s16("6d9c0c43-0a3a-4a55-9f43-0a8f2d8b6f11") +
                   s16("monoshop.events.BasketCheckoutEvent") + s16("") +
                   struct.pack(">qI", 1700000000000, 1)) + event())
    w("ack", hdr(4, s16("EINVAL") + s16("poison")))
    w("bad-version", hdr(1, b"", version=2))
    w("bad-kind", hdr(9, b""))
    w("bad-length", hdr(1, struct.pack(">I", 1) + b"\xff\xff" + b"abc"))
    w("bad-nul", hdr(1, struct.pack(">I", 1) + s16("a\0b") + s16("m") + s16("")))
    w("bad-magic", b"MS\x01\x01")


# ---- gRPC sessions ----------------------------------------------------------------------

def grpc_sessions():
    try:
        import h2.config
        import h2.connection
        import h2.settings
    except ImportError:
        print("seeds.py: python3-h2 missing: no grpc_server seeds",
              file=sys.stderr)
        return

    def conn():
        c = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True,
                                             header_encoding="utf-8"))
        c.initiate_connection()
        return c

    def call(c, sid, path, msgs, extra=(), end=True, ctype="application/grpc"):
        hdrs = [(":method", "POST"), (":scheme", "http"), (":path", path),
                (":authority", "localhost"), ("content-type", ctype),
                ("te", "trailers")] + list(extra)
        c.send_headers(sid, hdrs, end_stream=not msgs and end)
        for i, m in enumerate(msgs):
            c.send_data(sid, m, end_stream=end and i == len(msgs) - 1)

    def session(name, build, chunk=0):
        c = conn()
        build(c)
        write("grpc_server", name, bytes([chunk]) + c.data_to_send())

    svc = "/discount.DiscountProtoService/"
    session("get", lambda c: call(c, 1, svc + "GetDiscount",
                                  [grpc_frame(field(1, "IPhone X"))]))
    session("get-chunked", lambda c: call(c, 1, svc + "GetDiscount",
                                          [grpc_frame(field(1, "IPhone X"))]),
            chunk=7)
    session("create", lambda c: call(c, 1, svc + "CreateDiscount",
                                     [grpc_frame(field(1, coupon(name="G")))]))
    session("update", lambda c: call(c, 1, svc + "UpdateDiscount",
                                     [grpc_frame(field(1, coupon(cid=2)))]))
    session("delete", lambda c: call(c, 1, svc + "DeleteDiscount",
                                     [grpc_frame(field(1, "Nope"))]))
    session("timeout-trace", lambda c: call(
        c, 1, svc + "GetDiscount", [grpc_frame(field(1, "IPhone X"))],
        extra=[("grpc-timeout", "1n"),
               ("traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]))
    session("health-check", lambda c: call(
        c, 1, "/grpc.health.v1.Health/Check", [grpc_frame(field(1, ""))]))
    session("health-watch", lambda c: call(
        c, 1, "/grpc.health.v1.Health/Watch",
        [grpc_frame(field(1, "discount.DiscountProtoService"))]))
    refl = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
    session("reflection", lambda c: call(
        c, 1, refl,
        [grpc_frame(field(7, "")),
         grpc_frame(field(4, "discount.DiscountProtoService")),
         grpc_frame(field(3, "discount.proto")),
         grpc_frame(field(4, "discount.CouponModel")),
         grpc_frame(field(5, field(1, "discount.CouponModel") + field(2, 1))),
         grpc_frame(field(4, "no.such.Symbol"))]))
    session("reflection-v1alpha", lambda c: call(
        c, 1, refl.replace("v1.", "v1alpha."),
        [grpc_frame(field(3, "grpc/health/v1/health.proto"))]))
    session("unknown-method", lambda c: call(c, 1, svc + "Nope",
                                             [grpc_frame(b"")]))
    session("unknown-service", lambda c: call(c, 1, "/x.Y/Z",
                                              [grpc_frame(b"")]))
    session("bad-ctype", lambda c: call(c, 1, svc + "GetDiscount",
                                        [grpc_frame(b"")], ctype="text/plain"))
    session("compressed", lambda c: call(
        c, 1, svc + "GetDiscount", [grpc_frame(b"\x0a\x01x", flag=1)],
        extra=[("grpc-encoding", "gzip")]))
    session("oversize", lambda c: call(
        c, 1, svc + "GetDiscount",
        [bytes([0]) + struct.pack(">I", 1 << 30) + b"abc"]))
    session("two-messages", lambda c: call(
        c, 1, svc + "GetDiscount", [grpc_frame(field(1, "a")),
                                    grpc_frame(field(1, "b"))]))
    session("bad-message", lambda c: call(c, 1, svc + "GetDiscount",
                                          [grpc_frame(b"\x0a\x10ab")]))

    def reset(c):
        call(c, 1, svc + "GetDiscount", [grpc_frame(field(1, "x"))],
             end=False)
        c.reset_stream(1)

    session("reset", reset)

    def streams(c):
        for sid in (1, 3, 5):
            call(c, sid, svc + "GetDiscount", [grpc_frame(field(1, "P%d" % sid))])
        c.ping(b"12345678")
        c.increment_flow_control_window(1 << 20)
        c.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 10})

    session("streams-ping", streams)

    def goaway(c):
        call(c, 1, svc + "GetDiscount", [grpc_frame(field(1, "x"))])
        c.close_connection()

    session("goaway", goaway)

    def get_method(c):
        c.send_headers(1, [(":method", "GET"), (":scheme", "http"),
                           (":path", svc + "GetDiscount"),
                           (":authority", "localhost")], end_stream=True)

    session("get-http", get_method)
    write("grpc_server", "bad-preface", b"\0GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def main():
    rest_seeds()
    router_seeds()
    config_seeds()
    proto_seeds()
    envelope_seeds()
    wire_seeds()
    nng_seeds()
    grpc_sessions()


if __name__ == "__main__":
    main()
