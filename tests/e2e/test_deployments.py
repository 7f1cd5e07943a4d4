# SPDX-License-Identifier: MIT
"""One story, two deployments (SPEC §5 "Dev mode and split mode give the same
REST answers for the same requests"; issue 5).

story(ep) walks the REST story with Basket's base URL, Ordering's base URL
and Discount's gRPC address, and the same assertions every time:

* /health of each listener is Healthy with the entries of its modules;
* Discount over gRPC (stock grpcio): the seed coupon of IPhone X is 150;
* IPhone X 500 x2 + Samsung 10 400 are stored at 350/300, total 1000;
  storing the GET result again changes nothing (no double discount);
  a coupon created over gRPC applies to the next store;
* checkout → the basket is gone and the order appears in Ordering with the
  items and the server's total; pages, by name, by customer;
  POST/PUT/DELETE /orders; the main error cases as problem+json;
* /metrics of each listener names the issue-5 metrics, with counts that
  moved.

It runs once against dev mode (one process: both URLs the same) and once
against the three processes of config/split/*.ini (every fixed port and
the broker overridden with --set, a private RabbitMQ from
tests/support/rabbitmq.py), started in the "wrong" order (Basket first,
which reports Discount as not ready in /health and catches up when it
arrives). The two transcripts of answers (status and body, minus ids,
trace ids and durations) must be identical.

Needs Debian's python3-grpcio, python3-protobuf, protobuf-compiler,
protobuf-compiler-grpc, rabbitmq-server and python3-pika.

Usage: /usr/bin/python3 test_deployments.py PATH/TO/monoshop PATH/TO/proto
"""

import copy
import os
import re
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (SPLIT_DIR, Decimal, Endpoint, Server, SplitDeployment,  # noqa: E402
                     TestFailure, check, check_eq, exe_and_proto_from_argv,
                     expect_problem, expect_status, grpc_stubs, integrity_check,
                     metric_samples, metric_sum, new_guid, read_ini,
                     run_with_broker, say, start_broker, step, wait_until)
from test_story import (ADDRESS, CART, HUAWEI, IPHONE, JOHN, JOHN_ADDR,  # noqa: E402
                        JOHN_BILL, JOHN_PAY, MEHMET, PAYMENT, SAMSUNG, UNKNOWN,
                        XIAOMI, by_product, check_cart, check_order_items,
                        checkout_dto, new_order)
import test_story  # noqa: E402

# What an order keeps of the payment: test_story's expectation (issue 8
# keeps no CVV), so that both tests agree.
STORED_PAYMENT = getattr(test_story, "STORED_PAYMENT", PAYMENT)
JOHN_STORED_PAY = getattr(test_story, "JOHN_STORED_PAY", JOHN_PAY)

GADGET = "E2E Gadget"   # no coupon at first; one is created over gRPC
PHONE = "E2E Phone"     # a coupon created, used and deleted over gRPC
PHONE_ID = "7d5a0bb3-3b6b-4f7e-9d0e-1e2f3a4b5c6d"
GUID_RE = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
ORDER_WAIT = 30          # seconds for an event to become an order


def normalize(v):
    """|v| without what legitimately differs between two runs: generated
    ids, trace ids, durations."""
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in v.items()
                if k not in ("id", "orderId", "traceId", "totalDuration")}
    if isinstance(v, list):
        return [normalize(x) for x in v]
    if isinstance(v, str):  # e.g. a generated order id in a 404's detail
        return GUID_RE.sub("<guid>", v)
    return v


class Story:
    """The transcript of one run: (what, status, normalized body)."""

    def __init__(self, ep, stubs):
        self.basket = ep["basket"]
        self.ordering = ep["ordering"]
        self.discount_grpc = ep["discount_grpc"]
        # grpc.api_key of the split files: the admin RPCs need it
        self.admin_md = ep.get("discount_grpc_metadata", ())
        self.stubs = stubs
        self.t = []

    def rec(self, what, r):
        self.t.append((what, r.status,
                       normalize(r.json if r.json is not None else r.text)))
        return r

    def get_cart(self, user):
        r = self.rec("GET /basket/" + user, expect_status(
            self.basket.get("/basket/" + user), 200, "GET /basket/" + user))
        check(isinstance(r.json, dict) and isinstance(r.json.get("cart"), dict),
              "GET /basket/%s body is {\"cart\":{...}}" % user)
        return r.json["cart"]

    def orders_by_name(self, name, record=True):
        r = expect_status(self.ordering.get("/orders/" + name), 200,
                          "GET /orders/" + name)
        check(isinstance(r.json, dict) and isinstance(r.json.get("orders"), list),
              "GET /orders/%s body is {\"orders\":[...]}" % name)
        if record:
            self.rec("GET /orders/" + name, r)
        return r.json["orders"]

    def health(self, srv, want_entries):
        r = self.rec("GET /health", expect_status(srv.get("/health"), 200,
                                                  "GET /health of %r" % srv))
        h = r.json
        check(isinstance(h, dict), "health body is a JSON object: %r" % r)
        check_eq(h.get("status"), "Healthy", "health.status")
        check("totalDuration" in h, "health has totalDuration")
        entries = h.get("entries")
        check(isinstance(entries, dict), "health.entries is an object")
        for name in want_entries:
            check(name in entries, "health entry %r exists (entries: %s)"
                  % (name, sorted(entries)))
        for name, e in entries.items():
            check_eq(e.get("status"), "Healthy", "health entry %s status" % name)
        # the entries differ by deployment (a broker entry in the split):
        # only the ones named here go into the transcript
        self.t[-1] = (self.t[-1][0], self.t[-1][1],
                      {"status": h.get("status"),
                       "entries": {n: entries[n].get("status") for n in want_entries}})

    def grpc_discount(self):
        import grpc
        pb, rpc = self.stubs.discount_pb2, self.stubs.discount_pb2_grpc
        return grpc, pb, rpc


def story(ep, stubs):
    """The REST story against Basket's and Ordering's listeners (the same
    process in dev mode) and Discount's gRPC address |ep['discount_grpc']|.
    Returns the transcript."""
    s = Story(ep, stubs)
    basket, ordering = s.basket, s.ordering

    step("1. GET /health of Basket's and Ordering's listeners")
    s.health(basket, ("basket", "basketdb", "discount"))
    s.health(ordering, ("ordering", "orderingdb"))

    step("2. Discount over gRPC at %s: the seed coupons" % s.discount_grpc)
    grpc, pb, rpc = s.grpc_discount()
    with grpc.insecure_channel(s.discount_grpc) as ch:
        stub = rpc.DiscountProtoServiceStub(ch)
        c = stub.GetDiscount(pb.GetDiscountRequest(productName="IPhone X"), timeout=10)
        check_eq((c.id, c.productName, c.description, c.amount),
                 (1, "IPhone X", "IPhone Discount", 150), "GetDiscount(IPhone X)")
        c = stub.GetDiscount(pb.GetDiscountRequest(productName=GADGET), timeout=10)
        check_eq((c.id, c.productName, c.amount), (0, "No Discount", 0),
                 "GetDiscount(%s) before any coupon" % GADGET)
        s.t.append(("GetDiscount", 0, None))

    step("3. POST /basket stores swn's cart; GET shows the discounted prices")
    r = s.rec("POST /basket", expect_status(basket.post("/basket", CART), 201,
                                            "POST /basket"))
    check_eq(r.header("Location"), "/basket/swn", "Location header")
    check_eq(r.json, {"userName": "swn"}, "POST /basket body")
    want = {IPHONE: (2, 350), SAMSUNG: (1, 300)}
    cart = s.get_cart("swn")
    check_cart(cart, "swn", want, 1000)
    check_eq(by_product(cart["items"])[IPHONE].get("color"), "Red", "IPhone X color")
    check_eq(by_product(cart["items"])[IPHONE].get("productName"), "IPhone X",
             "IPhone X productName")

    step("4. storing the cart GET returned does not discount it twice")
    s.rec("POST /basket (round trip)", expect_status(
        basket.post("/basket", {"cart": cart}), 201, "POST /basket (round trip)"))
    cart = s.get_cart("swn")
    check_cart(cart, "swn", want, 1000)

    step("5. an unknown product at 10.50 keeps its price")
    cart2 = copy.deepcopy(cart)
    cart2["items"].append({"quantity": 1, "color": "Black", "price": Decimal("10.50"),
                           "productId": UNKNOWN, "productName": GADGET})
    s.rec("POST /basket (3 items)", expect_status(
        basket.post("/basket", {"cart": cart2}), 201, "POST /basket (3 items)"))
    want3 = {IPHONE: (2, 350), SAMSUNG: (1, 300), UNKNOWN: (1, "10.50")}
    cart = s.get_cart("swn")
    check_cart(cart, "swn", want3, "1010.5")

    step("6. a coupon created over gRPC applies to the next store (Basket"
         " calls the Discount at that address), then is deleted")
    with grpc.insecure_channel(s.discount_grpc) as ch:
        stub = rpc.DiscountProtoServiceStub(ch)
        c = stub.CreateDiscount(pb.CreateDiscountRequest(coupon=pb.CouponModel(
            productName=PHONE, description="E2E coupon", amount=25)),
            metadata=s.admin_md, timeout=10)
        check_eq((c.productName, c.amount), (PHONE, 25), "CreateDiscount(%s, 25)" % PHONE)
        phone = {"cart": {"userName": "phoneuser", "items": [
            {"quantity": 2, "color": "Gray", "price": 100, "productId": PHONE_ID,
             "productName": PHONE}]}}
        s.rec("POST /basket (gRPC coupon)", expect_status(
            basket.post("/basket", phone), 201, "POST /basket with %s at 100" % PHONE))
        check_cart(s.get_cart("phoneuser"), "phoneuser", {PHONE_ID: (2, 75)}, 150)
        d = stub.DeleteDiscount(pb.DeleteDiscountRequest(productName=PHONE),
                                metadata=s.admin_md, timeout=10)
        check_eq(d.success, True, "DeleteDiscount(%s)" % PHONE)
    s.rec("DELETE /basket/phoneuser", expect_status(
        basket.delete("/basket/phoneuser"), 200, "DELETE /basket/phoneuser"))

    step("7. checkout (client totalPrice 1 is a lie)")
    r = s.rec("POST /basket/checkout", expect_status(
        basket.post("/basket/checkout", checkout_dto()), 200, "POST /basket/checkout"))
    check_eq(r.json, {"isSuccess": True}, "checkout body")
    r = s.rec("GET /basket/swn after checkout", basket.get("/basket/swn"))
    expect_problem(r, 404, "GET /basket/swn after checkout", instance="/basket/swn")

    step("8. the order appears in Ordering")
    orders = wait_until(lambda: s.orders_by_name("swn", record=False), ORDER_WAIT,
                        "GET /orders/swn to return the checked-out order", interval=0.1)
    orders = s.orders_by_name("swn")
    check_eq(len(orders), 1, "number of orders named like swn")
    o = orders[0]
    check_eq(o.get("orderName"), "swn", "order.orderName")
    check_eq(str(o.get("customerId")).lower(), MEHMET, "order.customerId")
    check_eq(o.get("status"), 2, "order.status (Pending)")
    check_eq(o.get("shippingAddress"), ADDRESS, "order.shippingAddress")
    check_eq(o.get("billingAddress"), ADDRESS, "order.billingAddress")
    check_eq(o.get("payment"), STORED_PAYMENT, "order.payment")
    check_order_items(o, want3)
    check_eq(Decimal(o.get("totalPrice")), Decimal("1010.5"),
             "order.totalPrice (the server's, not the client's 1)")

    step("9. order queries: pages, by name, by customer")
    r = s.rec("GET /orders page 0", expect_status(
        ordering.get("/orders?pageIndex=0&pageSize=10"), 200, "GET /orders page 0"))
    page = r.json.get("orders") if isinstance(r.json, dict) else None
    check(isinstance(page, dict), "GET /orders body is {\"orders\":{...}}: %r" % r)
    check_eq(page.get("count"), 3, "orders.count (ORD_1, ORD_2, swn)")
    check_eq((page.get("pageIndex"), page.get("pageSize")), (0, 10),
             "orders (pageIndex, pageSize)")
    check_eq([x["orderName"] for x in page["data"]], ["ORD_1", "ORD_2", "swn"],
             "page 0 order names, sorted")
    ord1 = page["data"][0]
    check_eq(str(ord1.get("customerId")).lower(), MEHMET, "ORD_1 customer")
    check_order_items(ord1, {IPHONE: (2, 500), SAMSUNG: (1, 400)})
    check_eq(Decimal(ord1.get("totalPrice")), Decimal(1400), "ORD_1 totalPrice")
    r = s.rec("GET /orders page 1 size 1", expect_status(
        ordering.get("/orders?pageIndex=1&pageSize=1"), 200, "GET /orders page 1 size 1"))
    page = r.json["orders"]
    check_eq([x["orderName"] for x in page["data"]], ["ORD_2"], "page 1 of size 1")
    check_eq((page.get("pageIndex"), page.get("pageSize"), page.get("count")), (1, 1, 3),
             "page 1 (pageIndex, pageSize, count)")
    check_eq([x["orderName"] for x in s.orders_by_name("ORD")], ["ORD_1", "ORD_2"],
             "GET /orders/ORD (substring)")
    check_eq(s.orders_by_name("nothing-like-this"), [], "GET /orders/<no match>")
    r = s.rec("GET /orders/customer", expect_status(
        ordering.get("/orders/customer/" + MEHMET), 200, "GET /orders/customer/mehmet"))
    check_eq(sorted(x["orderName"] for x in r.json["orders"]), ["ORD_1", "swn"],
             "mehmet's orders")
    r = s.rec("GET /orders/customer (none)", expect_status(
        ordering.get("/orders/customer/" + new_guid()), 200,
        "GET /orders/customer/<unknown>"))
    check_eq(r.json, {"orders": []}, "an unknown customer has no orders")

    step("10. POST / PUT / DELETE /orders")
    r = s.rec("POST /orders", expect_status(ordering.post("/orders", new_order()), 201,
                                            "POST /orders"))
    check(isinstance(r.json, dict) and isinstance(r.json.get("id"), str),
          "POST /orders body is {\"id\": guid}: %r" % r)
    oid = r.json["id"]
    check_eq(r.header("Location"), "/orders/" + oid, "Location header")
    got = s.orders_by_name("E2E_ORDER")
    check_eq([x["id"] for x in got], [oid], "GET /orders/E2E_ORDER ids")
    o = got[0]
    check_eq(o.get("status"), 2, "new order status (Pending, DTO status ignored)")
    check_eq(str(o.get("customerId")).lower(), JOHN, "new order customerId")
    check_eq(o.get("shippingAddress"), JOHN_ADDR, "new order shippingAddress")
    check_eq(o.get("billingAddress"), JOHN_BILL, "new order billingAddress")
    check_eq(o.get("payment"), JOHN_STORED_PAY, "new order payment")
    check_order_items(o, {HUAWEI: (1, 650), XIAOMI: (2, 450)})
    check_eq(Decimal(o.get("totalPrice")), Decimal(1550), "new order totalPrice")
    r = s.rec("PUT /orders", expect_status(
        ordering.put("/orders", new_order("E2E_RENAMED", oid=oid, status=3)), 200,
        "PUT /orders"))
    check_eq(r.json, {"isSuccess": True}, "PUT /orders body")
    got = s.orders_by_name("E2E_RENAMED")
    check_eq([x["id"] for x in got], [oid], "GET /orders/E2E_RENAMED ids")
    check_eq(got[0].get("status"), 3, "updated order status (Completed)")
    check_eq(s.orders_by_name("E2E_ORDER"), [], "old name no longer matches")
    r = s.rec("DELETE /orders/{id}", expect_status(
        ordering.delete("/orders/" + oid), 200, "DELETE /orders/{id}"))
    check_eq(r.json, {"isSuccess": True}, "DELETE /orders body")
    r = s.rec("DELETE /orders/{id} again", ordering.delete("/orders/" + oid))
    expect_problem(r, 404, "DELETE /orders/{id} again", instance="/orders/" + oid)
    check_eq(s.orders_by_name("E2E_RENAMED"), [], "deleted order is gone")
    r = ordering.put("/orders", new_order("GHOST", oid=new_guid()))
    s.rec("PUT /orders unknown", r)
    expect_problem(r, 404, "PUT /orders with an unknown id", instance="/orders")

    step("11. errors are problem+json (same answers in both deployments)")
    item = dict(CART["cart"]["items"][0])

    def err(what, resp, status, **kw):
        s.rec(what, resp)
        return expect_problem(resp, status, what, **kw)

    err("malformed JSON body",
        basket.request("POST", "/basket", data='{"cart": {"userName": "swn", '),
        400, instance="/basket")
    err("quantity of the wrong type", basket.post("/basket", {"cart": {
        "userName": "bad", "items": [dict(item, quantity="x")]}}), 400,
        instance="/basket", fields=["quantity"])
    err("price with 3 decimals", basket.post("/basket", {"cart": {
        "userName": "bad", "items": [dict(item, price=Decimal("500.123"))]}}), 400,
        instance="/basket", fields=["price"])
    err("bad GUID productId", basket.post("/basket", {"cart": {
        "userName": "bad", "items": [dict(item, productId="not-a-guid")]}}), 400,
        instance="/basket", fields=["productId"])
    err("missing cart", basket.post("/basket", {}), 400, instance="/basket",
        fields=["cart"])
    err("empty userName", basket.post("/basket", {"cart": {"userName": "", "items": []}}),
        400, instance="/basket", fields=["userName"])
    err("checkout without basketCheckoutDto", basket.post("/basket/checkout", {}), 400,
        instance="/basket/checkout", fields=["basketCheckoutDto"])
    s.rec("POST /basket cvvuser", expect_status(basket.post("/basket", {"cart": {
        "userName": "cvvuser", "items": [item]}}), 201, "POST /basket for cvvuser"))
    err("checkout with cvv 1234", basket.post("/basket/checkout",
                                              checkout_dto("cvvuser", cvv="1234")),
        400, instance="/basket/checkout", fields=["cvv"])
    s.get_cart("cvvuser")
    err("checkout of a basket that does not exist",
        basket.post("/basket/checkout", checkout_dto("ghost")), 404,
        instance="/basket/checkout")
    err("GET /basket/nobody", basket.get("/basket/nobody"), 404,
        instance="/basket/nobody", detail_contains="nobody")
    err("DELETE /basket (wrong method)", basket.delete("/basket"), 405,
        instance="/basket")
    allow = basket.delete("/basket").header("Allow")
    check(allow is not None and "POST" in allow.upper(),
          "405 has an Allow header listing POST (got %r)" % allow)
    err("POST /orders with empty orderItems",
        ordering.post("/orders", new_order("E2E_EMPTY", items=[])), 400,
        instance="/orders", fields=["orderItems"])
    oid0 = new_guid()
    err("POST /orders with quantity 0", ordering.post("/orders", new_order(
        "E2E_QTY0", oid=oid0, items=[{"orderId": oid0, "productId": HUAWEI,
                                      "quantity": 0, "price": 650}])), 400,
        instance="/orders", fields=["quantity"])
    err("DELETE /orders/not-a-guid", ordering.delete("/orders/not-a-guid"), 400,
        instance="/orders/not-a-guid")
    check_eq(s.orders_by_name("E2E_"), [], "no order was created by the bad POSTs")
    err("unknown route on Basket", basket.get("/nope"), 404, instance="/nope")
    err("unknown route on Ordering", ordering.get("/nope"), 404, instance="/nope")

    step("12. /metrics of both listeners (Prometheus text)")
    r = expect_status(basket.get("/metrics"), 200, "GET /metrics (Basket)")
    check((r.header("Content-Type") or "").startswith("text/plain"),
          "metrics Content-Type is text/plain: %r" % r.header("Content-Type"))
    bt = r.text
    for name in ("monoshop_http_requests_total", "monoshop_bus_calls_total",
                 "monoshop_events_published_total", "monoshop_outbox_pending",
                 "monoshop_outbox_oldest_age_seconds",
                 "monoshop_http_request_duration_seconds_bucket",
                 "monoshop_bus_call_duration_seconds_bucket"):
        check(name in bt, "Basket's metrics name %s" % name)
    check((metric_sum(bt, "monoshop_http_requests_total") or 0) >= 10,
          "Basket counted its requests (%s)" % metric_sum(bt, "monoshop_http_requests_total"))
    check((metric_sum(bt, "monoshop_bus_calls_total") or 0) >= 3,
          "Basket counted its bus calls to Discount (%s)"
          % metric_sum(bt, "monoshop_bus_calls_total"))
    check((metric_sum(bt, "monoshop_events_published_total") or 0) >= 1,
          "Basket counted the published checkout event (%s)"
          % metric_sum(bt, "monoshop_events_published_total"))
    wait_until(lambda: metric_sum(basket.get("/metrics").text,
                                  "monoshop_outbox_pending") == 0,
               10, "monoshop_outbox_pending 0 (the event was delivered)")
    ot = expect_status(ordering.get("/metrics"), 200, "GET /metrics (Ordering)").text
    for name in ("monoshop_http_requests_total", "monoshop_events_consumed_total"):
        check(name in ot, "Ordering's metrics name %s" % name)
    check((metric_sum(ot, "monoshop_events_consumed_total") or 0) >= 1,
          "Ordering counted the consumed checkout event (%s)"
          % metric_sum(ot, "monoshop_events_consumed_total"))
    return s.t


def bus_transport(srv, transport):
    """Basket's GetDiscount calls went through |transport| (the label of
    monoshop_bus_calls_total): in process in dev mode, gRPC in the split."""
    text = srv.get("/metrics").text
    calls = [(lb, v) for lb, v in metric_samples(text, "monoshop_bus_calls_total")
             if "GetDiscount" in lb]
    check(calls and all('transport="%s"' % transport in lb for lb, _ in calls),
          "%s's GetDiscount calls are counted with transport=\"%s\": %r"
          % (srv.name, transport, calls))


def compare(dev_t, split_t):
    for i, ((w1, s1, b1), (w2, s2, b2)) in enumerate(zip(dev_t, split_t)):
        if w1 != w2:
            raise TestFailure("transcripts diverge at #%d: %r vs %r" % (i, w1, w2))
        if (s1, b1) != (s2, b2):
            raise TestFailure("%s differs: dev mode %d %r, split %d %r"
                              % (w1, s1, b1, s2, b2))
    check_eq(len(split_t), len(dev_t), "transcript length")
    say("   ok: %d answers identical in both deployments" % len(split_t))


def check_split_files():
    """The shipped split files say what SPEC §1 says (only read here; the
    deployment below overrides every one of these addresses)."""
    ini = {r: read_ini(os.path.join(SPLIT_DIR, r + ".ini"))
           for r in ("basket", "discount", "ordering")}

    def val(role, key):
        return ini[role].get(key, (None, 0))[0]

    def hosts(role):
        v = val(role, "node.modules") or ""
        return sorted(x for x in v.replace(",", " ").split() if x)
    check_eq(hosts("basket"), ["basket"], "basket.ini node.modules")
    check_eq(hosts("discount"), ["discount"], "discount.ini node.modules")
    check_eq(hosts("ordering"), ["ordering"], "ordering.ini node.modules")
    check_eq(val("basket", "http.listen"), "127.0.0.1:6001", "basket.ini http.listen")
    check_eq(val("discount", "grpc.listen"), "127.0.0.1:6002", "discount.ini grpc.listen")
    check_eq(val("ordering", "http.listen"), "127.0.0.1:6003", "ordering.ini http.listen")
    check_eq(val("basket", "remote.discount"), "grpc://127.0.0.1:6002",
             "basket.ini remote.discount")
    for r in ("basket", "ordering"):
        check_eq(val(r, "events.broker"), "amqp://guest:guest@127.0.0.1:5672/",
                 "%s.ini events.broker" % r)
    dirs = {val(r, "node.data_dir") for r in ini}
    check(len(dirs) == 3 and None not in dirs,
          "each split file names its own node.data_dir (%s)" % sorted(map(str, dirs)))


def main():
    exe, proto = exe_and_proto_from_argv()
    stubs = grpc_stubs(proto, files=("discount.proto",))

    step("A. dev mode: one process, Basket's and Ordering's URLs the same")
    dev = Server(exe, name="dev")
    dev.start(want_grpc=True)
    check(dev.grpc_port is not None, "dev mode logged its gRPC port")
    ep = {"basket": Endpoint(dev.port, "dev"), "ordering": Endpoint(dev.port, "dev"),
          "discount_grpc": "127.0.0.1:%d" % dev.grpc_port}
    dev_t = story(ep, stubs)
    bus_transport(dev, "local")
    dev.stop()
    integrity_check(dev.data_dir)

    step("B. the split files (config/split/*.ini) say what SPEC §1 says")
    check_split_files()

    step("C. three processes from config/split/*.ini, ports and broker"
         " overridden, started Basket first")
    broker = start_broker()
    dep = SplitDeployment(exe, broker.url)
    dep.basket.start(timeout=20, health=None)

    def discount_not_ready():
        r = dep.basket.get("/health")
        e = ((r.json or {}).get("entries") or {}).get("discount") \
            if isinstance(r.json, dict) else None
        return r.status == 503 and isinstance(e, dict) and \
            e.get("status") == "Unhealthy" and e
    e = wait_until(discount_not_ready, 15, "Basket's /health 503 with the discount"
                   " entry Unhealthy while Discount is not started")
    say("   discount entry before Discount started: %r" % e)
    check("circuit" in str(e.get("description", "")).lower(),
          "the remote's entry states its circuit breaker: %r" % e.get("description"))
    dep.ordering.start(timeout=20, health=None)
    dep.discount.start(timeout=20, health=None, want_grpc=True)
    check_eq(dep.discount.grpc_port, dep.grpc_ports["discount"], "Discount's gRPC port")
    dep.wait_healthy(30)
    check(not os.path.exists(dep.basket.db("ordering"))
          and not os.path.exists(dep.basket.db("discount")),
          "Basket's data dir holds only basket.db")
    check(not os.path.exists(dep.ordering.db("basket")),
          "Ordering's data dir has no basket.db")
    check(dep.basket.port != dep.ordering.port, "Basket and Ordering are two listeners")
    for p in (dep.basket, dep.ordering):
        r = p.get("/health")
        b = ((r.json or {}).get("entries") or {}).get("broker")
        check(isinstance(b, dict) and b.get("status") == "Healthy",
              "%s's /health has a Healthy broker entry: %r" % (p.name, b))
    split_t = story(dep.endpoints(), stubs)
    bus_transport(dep.basket, "grpc")

    step("D. the same answers in both deployments")
    compare(dev_t, split_t)

    step("E. SIGTERM the three -> exit 0, databases intact")
    dep.stop()
    dep.integrity_check()
    broker.close()


if __name__ == "__main__":
    run_with_broker(main)
