# SPDX-License-Identifier: MIT
"""Access (issue 8, part 6): optional API keys and TLS for gRPC.

1. http.api_key: REST writes (POST, PUT, DELETE) without X-Api-Key, or with
   a wrong one, are 401 problem+json {"title":"Unauthorized",...} (no
   WWW-Authenticate header) and change nothing; with the key they go
   through; GET, /health and /metrics stay open.
2. grpc.api_key (stock grpcio): Discount's Create/Update/DeleteDiscount
   without the metadata x-api-key, with a wrong one or with two values are
   UNAUTHENTICATED and change nothing; with the key they work; GetDiscount,
   health and reflection stay open.
3. A key that is too short is a start-up error (exit 2) that does not echo
   the value; the key never reaches the log.
4. TLS for gRPC with a throwaway certificate made here with openssl(1)
   (EC P-256, 1 day, CN=localhost, SAN localhost and 127.0.0.1):
   grpcio's secure_channel with that CA calls GetDiscount; a plaintext
   client against the TLS port fails cleanly (UNAVAILABLE) and the server
   goes on serving; a second monoshop (Basket+Ordering) with
   remote.discount=grpcs://127.0.0.1:PORT and grpc.tls_ca gets the coupon;
   without the CA (the system's trust store) the certificate is refused and
   storing a basket is a 503, as with grpcs:// against an h2c port.

Needs python3-grpcio/protobuf, protoc (stubs) and openssl(1).

Usage: /usr/bin/python3 test_access.py PATH/TO/monoshop PATH/TO/proto
"""

import os
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (Server, TestFailure, check, check_eq,  # noqa: E402
                     clean_env, exe_and_proto_from_argv, expect_problem,
                     expect_rpc_error, expect_status, free_port, grpc_stubs,
                     integrity_check, run, say, sql, step, tempdir, wait_until)
from test_story import CART, IPHONE, checkout_dto, new_order  # noqa: E402

HTTP_KEY = "rest-key-0123456789abcdef"
GRPC_KEY = "grpc-key-fedcba9876543210"


def rest_keys(srv):
    step("1. http.api_key: writes need X-Api-Key")
    base_carts = sql(srv.db("basket"), "SELECT COUNT(*) FROM carts")
    writes = (("POST", "/basket", CART),
              ("POST", "/basket/checkout", checkout_dto("swn")),
              ("DELETE", "/basket/swn", None),
              ("POST", "/orders", new_order()),
              ("PUT", "/orders", new_order()),
              ("DELETE", "/orders/a2537de3-889a-42d2-a3dc-e32503cb1f54", None))
    for method, path, body in writes:
        for what, hdrs in (("no key", {}), ("a wrong key", {"X-Api-Key": HTTP_KEY + "x"}),
                           ("the key's prefix", {"X-Api-Key": HTTP_KEY[:-1]}),
                           ("the grpc key", {"X-Api-Key": GRPC_KEY})):
            r = srv.request(method, path, body=body, headers=hdrs)
            p = expect_problem(r, 401, "%s %s with %s" % (method, path, what),
                               instance=path)
            check_eq(p["title"], "Unauthorized", "title")
            check(r.header("WWW-Authenticate") is None, "no WWW-Authenticate header")
    check_eq(sql(srv.db("basket"), "SELECT COUNT(*) FROM carts"), base_carts,
             "no cart written by the refused requests")
    check_eq(sql(srv.db("ordering"), "SELECT COUNT(*) FROM orders"), [(2,)],
             "the seed orders only, both still there")
    r = expect_status(srv.post("/basket", CART, headers={"X-Api-Key": HTTP_KEY}), 201,
                      "POST /basket with the key")
    r = expect_status(srv.post("/basket", CART, headers={"x-api-key": HTTP_KEY}), 201,
                      "POST /basket with the key (header name in lower case)")
    for path in ("/basket/swn", "/orders", "/health", "/metrics"):
        expect_status(srv.get(path), 200, "GET %s without a key" % path)
    expect_status(srv.delete("/basket/swn", headers={"X-Api-Key": HTTP_KEY}), 200,
                  "DELETE /basket/swn with the key")


def grpc_keys(srv, st):
    import grpc
    step("2. grpc.api_key: Discount's admin RPCs need x-api-key")
    pb = st.discount_pb2
    ch = grpc.insecure_channel("127.0.0.1:%d" % srv.grpc_port)
    stub = st.discount_pb2_grpc.DiscountProtoServiceStub(ch)
    coupon = pb.CouponModel(productName="Pixel 9", description="Pixel Discount", amount=70)
    calls = (("CreateDiscount", lambda md: stub.CreateDiscount(
                 pb.CreateDiscountRequest(coupon=coupon), metadata=md, timeout=10)),
             ("UpdateDiscount", lambda md: stub.UpdateDiscount(
                 pb.UpdateDiscountRequest(coupon=pb.CouponModel(
                     id=1, productName="IPhone X", description="hacked", amount=999)),
                 metadata=md, timeout=10)),
             ("DeleteDiscount", lambda md: stub.DeleteDiscount(
                 pb.DeleteDiscountRequest(productName="Samsung 10"), metadata=md,
                 timeout=10)))
    before = sql(srv.db("discount"), "SELECT * FROM coupons ORDER BY id")
    for name, fn in calls:
        for what, md in (("no key", ()), ("a wrong key", (("x-api-key", "nope"),)),
                         ("the REST key", (("x-api-key", HTTP_KEY),)),
                         ("two values", (("x-api-key", "nope"), ("x-api-key", GRPC_KEY)))):
            expect_rpc_error(lambda: fn(md), grpc.StatusCode.UNAUTHENTICATED,
                             "%s with %s" % (name, what))
    check_eq(sql(srv.db("discount"), "SELECT * FROM coupons ORDER BY id"), before,
             "coupons unchanged by the refused calls")
    m = stub.GetDiscount(pb.GetDiscountRequest(productName="IPhone X"), timeout=10)
    check_eq(m.amount, 150, "GetDiscount needs no key")
    md = (("x-api-key", GRPC_KEY),)
    m = stub.CreateDiscount(pb.CreateDiscountRequest(coupon=coupon), metadata=md, timeout=10)
    check(m.id > 2 and m.amount == 70, "CreateDiscount with the key: %r" % (m,))
    m = stub.UpdateDiscount(pb.UpdateDiscountRequest(coupon=pb.CouponModel(
        id=m.id, productName="Pixel 9", description="Pixel Discount", amount=80)),
        metadata=md, timeout=10)
    check_eq(m.amount, 80, "UpdateDiscount with the key")
    r = stub.DeleteDiscount(pb.DeleteDiscountRequest(productName="Pixel 9"), metadata=md,
                            timeout=10)
    check(r.success, "DeleteDiscount with the key")
    check_eq(sql(srv.db("discount"), "SELECT * FROM coupons ORDER BY id"), before,
             "coupons as before after create, update, delete")
    ch.close()


def keys_not_logged(exe, srv):
    step("3. key errors do not echo the value; the keys never reach the log")
    p = subprocess.run([exe, "--set", "node.data_dir=" + tempdir(),
                        "--set", "http.api_key=sh0rt s3cret"],
                       capture_output=True, env=clean_env(), timeout=20)
    err = (p.stdout + p.stderr).decode("utf-8", "replace")
    check_eq(p.returncode, 2, "a key with a space is a configuration error (%r)"
             % err.strip())
    check("http.api_key" in err and "s3cret" not in err,
          "the error names the key, not its value: %r" % err.strip())
    log = srv.log()
    check(HTTP_KEY not in log and GRPC_KEY not in log, "neither key in the log")


def make_cert(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", key, "-out", cert],
                       capture_output=True, timeout=30)
    if p.returncode != 0:
        raise TestFailure("openssl req failed: %s" % p.stderr.decode())
    say("   ok: a throwaway certificate in %s" % d)
    return cert, key


def tls(exe, st):
    import grpc
    step("4. TLS for gRPC with a throwaway certificate")
    d = tempdir("monoshop-tls-")
    cert, key = make_cert(d)
    pb = st.discount_pb2
    port = free_port()
    disc = Server(exe, name="discount-tls", grpc_listen="127.0.0.1:%d" % port,
                  extra=["node.modules=discount", "grpc.tls_cert=" + cert,
                         "grpc.tls_key=" + key, "grpc.api_key=" + GRPC_KEY])
    disc.start(want_grpc=True)
    check("(TLS, ALPN h2)" in disc.log(), "the listener says it speaks TLS")
    with open(cert, "rb") as f:
        ca = f.read()
    creds = grpc.ssl_channel_credentials(root_certificates=ca)
    ch = grpc.secure_channel("localhost:%d" % port, creds)
    stub = st.discount_pb2_grpc.DiscountProtoServiceStub(ch)
    m = stub.GetDiscount(pb.GetDiscountRequest(productName="IPhone X"), timeout=10)
    check_eq((m.productName, m.amount), ("IPhone X", 150),
             "grpcio secure_channel with the CA: GetDiscount")
    expect_rpc_error(lambda: stub.DeleteDiscount(pb.DeleteDiscountRequest(
        productName="IPhone X"), timeout=10), grpc.StatusCode.UNAUTHENTICATED,
        "DeleteDiscount over TLS without the key")
    ch.close()
    ch = grpc.secure_channel("127.0.0.1:%d" % port, creds)
    m = st.discount_pb2_grpc.DiscountProtoServiceStub(ch).GetDiscount(
        pb.GetDiscountRequest(productName="Samsung 10"), timeout=10)
    check_eq(m.amount, 100, "grpcio to 127.0.0.1 (the IP address SAN)")
    ch.close()

    ch = grpc.insecure_channel("127.0.0.1:%d" % port)
    expect_rpc_error(lambda: st.discount_pb2_grpc.DiscountProtoServiceStub(ch).GetDiscount(
        pb.GetDiscountRequest(productName="IPhone X"), timeout=5),
        grpc.StatusCode.UNAVAILABLE, "a plaintext (h2c) client against the TLS port")
    ch.close()
    other = tempdir("monoshop-tls-other-")
    ocert, _ = make_cert(other)
    with open(ocert, "rb") as f:
        wrong = grpc.ssl_channel_credentials(root_certificates=f.read())
    ch = grpc.secure_channel("localhost:%d" % port, wrong)
    expect_rpc_error(lambda: st.discount_pb2_grpc.DiscountProtoServiceStub(ch).GetDiscount(
        pb.GetDiscountRequest(productName="IPhone X"), timeout=5),
        grpc.StatusCode.UNAVAILABLE, "a client that trusts another CA")
    ch.close()
    check(disc.alive(), "the TLS server still runs after the failed handshakes")

    step("4b. our own client: grpcs:// with grpc.tls_ca (two processes)")
    basket = Server(exe, name="basket-tls", extra=[
        "node.modules=basket ordering", "remote.discount=grpcs://127.0.0.1:%d" % port,
        "grpc.tls_ca=" + cert])
    basket.start()
    expect_status(basket.post("/basket", CART), 201, "POST /basket through grpcs://")
    items = {i["productId"]: i["price"] for i in
             basket.get("/basket/swn").json["cart"]["items"]}
    check_eq(items[IPHONE], 350, "IPhone X at 350: the coupon came over TLS")
    basket.stop()

    step("4c. our client refuses what it cannot trust")
    nocas = Server(exe, name="basket-noca", extra=[
        "node.modules=basket ordering", "remote.discount=grpcs://127.0.0.1:%d" % port,
        "grpc.connect_timeout_ms=2000"])
    nocas.start(health=None)
    expect_problem(nocas.post("/basket", CART), 503,
                   "POST /basket when the server's certificate is not trusted")
    wait_until(lambda: "certificate verify failed" in nocas.log(), 10,
               "the log says why: certificate verify failed")
    nocas.stop()
    h2c = Server(exe, name="discount-h2c", extra=["node.modules=discount"])
    h2c.start(want_grpc=True)
    mixed = Server(exe, name="basket-mixed", extra=[
        "node.modules=basket ordering",
        "remote.discount=grpcs://127.0.0.1:%d" % h2c.grpc_port, "grpc.tls_ca=" + cert,
        "grpc.connect_timeout_ms=2000"])
    mixed.start(health=None)
    expect_problem(mixed.post("/basket", CART), 503, "POST /basket: grpcs:// to an h2c port")
    mixed.stop()
    h2c.stop()
    check(GRPC_KEY not in disc.log(), "the gRPC key is not in the TLS server's log")
    disc.stop()
    integrity_check(disc.data_dir)

    step("4d. a certificate without its key is a start-up error")
    p = subprocess.run([exe, "--set", "node.data_dir=" + tempdir(),
                        "--set", "node.modules=discount",
                        "--set", "http.listen=127.0.0.1:0",
                        "--set", "grpc.listen=127.0.0.1:0",
                        "--set", "grpc.tls_cert=" + cert],
                       capture_output=True, env=clean_env(), timeout=20)
    err = (p.stdout + p.stderr).decode("utf-8", "replace")
    check(p.returncode != 0 and "grpc.tls_key" in err,
          "exit %d naming grpc.tls_key: %r" % (p.returncode, err.strip()[-200:]))


def main():
    exe, proto = exe_and_proto_from_argv()
    st = grpc_stubs(proto, ("discount.proto",))
    srv = Server(exe, name="dev-keys", extra=["http.api_key=" + HTTP_KEY,
                                              "grpc.api_key=" + GRPC_KEY])
    srv.start(want_grpc=True)
    rest_keys(srv)
    grpc_keys(srv, st)
    keys_not_logged(exe, srv)
    srv.stop()
    integrity_check(srv.data_dir)
    tls(exe, st)


if __name__ == "__main__":
    run(main)
