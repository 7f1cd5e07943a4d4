# SPDX-License-Identifier: MIT
"""End-to-end: the whole REST story of SPEC §2 through HTTP against dev mode
(basket, discount and ordering in one process), then a restart on the same
data directory to check that the data persisted.

Usage: /usr/bin/python3 test_story.py PATH/TO/monoshop
"""

import copy
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (Decimal, Server, check, check_eq, exe_from_argv,  # noqa: E402
                     expect_problem, expect_status, integrity_check, new_guid,
                     run, step, wait_until, TestFailure)

IPHONE = "5334c996-8457-4cf0-815c-ed2b77c4ff61"
SAMSUNG = "c67d6323-e8b1-4bdf-9a75-b0d0d2e7e914"
HUAWEI = "4f136e9f-ff8c-4c1f-9a33-d12f689bdab8"
XIAOMI = "6ec1297b-ec0a-4aa1-be25-6726e3b51a27"
UNKNOWN = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
MEHMET = "58c49479-ec65-4de2-86e7-033c546291aa"
JOHN = "189dc8dc-990f-48e0-a37b-e6f2b60b9d7d"

CART = {"cart": {"userName": "swn", "items": [
    {"quantity": 2, "color": "Red", "price": 500, "productId": IPHONE,
     "productName": "IPhone X"},
    {"quantity": 1, "color": "Blue", "price": 400, "productId": SAMSUNG,
     "productName": "Samsung 10"},
]}}

ADDRESS = {"firstName": "mehmet", "lastName": "ozkaya",
           "emailAddress": "mehmet@gmail.com", "addressLine": "Bahcelievler No:4",
           "country": "Turkey", "state": "Istanbul", "zipCode": "38050"}
PAYMENT = {"cardName": "mehmet", "cardNumber": "5555555555554444",
           "expiration": "12/28", "cvv": "355", "paymentMethod": 1}
# An order keeps the payment without its CVV (issue 8: checked, never
# stored; the order answers "cvv": null).
STORED_PAYMENT = dict(PAYMENT, cvv=None)


def checkout_dto(user="swn", **over):
    d = {"userName": user, "customerId": MEHMET, "totalPrice": 1}
    d.update(ADDRESS)
    d.update(PAYMENT)
    d.update(over)
    return {"basketCheckoutDto": d}


JOHN_ADDR = {"firstName": "john", "lastName": "doe",
             "emailAddress": "john@gmail.com", "addressLine": "Broadway No:1",
             "country": "England", "state": "Nottingham", "zipCode": "08050"}
JOHN_BILL = dict(JOHN_ADDR, addressLine="Broadway No:2")
JOHN_PAY = {"cardName": "john", "cardNumber": "8885555555554444",
            "expiration": "06/30", "cvv": "222", "paymentMethod": 2}
JOHN_STORED_PAY = dict(JOHN_PAY, cvv=None)


def new_order(name="E2E_ORDER", oid=None, items=None, **over):
    oid = oid or new_guid()
    if items is None:
        items = [{"orderId": oid, "productId": HUAWEI, "quantity": 1, "price": 650},
                 {"orderId": oid, "productId": XIAOMI, "quantity": 2, "price": 450}]
    o = {"id": oid, "customerId": JOHN, "orderName": name,
         "shippingAddress": JOHN_ADDR, "billingAddress": JOHN_BILL,
         "payment": JOHN_PAY, "status": 1, "orderItems": items}
    o.update(over)
    return {"order": o}


def by_product(items):
    return {i["productId"].lower(): i for i in items}


def get_cart(srv, user):
    r = expect_status(srv.get("/basket/" + user), 200, "GET /basket/" + user)
    check(isinstance(r.json, dict) and isinstance(r.json.get("cart"), dict),
          "GET /basket/%s body is {\"cart\":{...}}" % user)
    return r.json["cart"]


def check_cart(cart, user, want, total):
    """|want|: productId -> (quantity, price)."""
    check_eq(cart.get("userName"), user, "cart.userName")
    items = by_product(cart.get("items", []))
    check_eq(sorted(items), sorted(want), "cart product ids")
    for pid, (qty, price) in want.items():
        check_eq(items[pid]["quantity"], qty, "quantity of %s" % items[pid]["productName"])
        check_eq(Decimal(items[pid]["price"]), Decimal(price),
                 "price of %s" % items[pid]["productName"])
    check_eq(Decimal(cart.get("totalPrice")), Decimal(total), "cart.totalPrice")


def orders_by_name(srv, name):
    r = expect_status(srv.get("/orders/" + name), 200, "GET /orders/" + name)
    check(isinstance(r.json, dict) and isinstance(r.json.get("orders"), list),
          "GET /orders/%s body is {\"orders\":[...]}" % name)
    return r.json["orders"]


def check_order_items(order, want):
    items = order.get("orderItems")
    check(isinstance(items, list), "order.orderItems is a list")
    got = by_product(items)
    check_eq(sorted(got), sorted(want), "order product ids")
    for pid, (qty, price) in want.items():
        check_eq(got[pid]["quantity"], qty, "order item %s quantity" % pid)
        check_eq(Decimal(got[pid]["price"]), Decimal(price), "order item %s price" % pid)
        check_eq(str(got[pid].get("orderId")).lower(), order["id"].lower(),
                 "order item %s orderId" % pid)


def story(srv):
    step("1. GET /health: Healthy, one entry per module and database")
    r = expect_status(srv.get("/health"), 200, "GET /health")
    h = r.json
    check(isinstance(h, dict), "health body is a JSON object: %r" % r)
    check_eq(h.get("status"), "Healthy", "health.status")
    check("totalDuration" in h, "health has totalDuration")
    entries = h.get("entries")
    check(isinstance(entries, dict), "health.entries is an object")
    for name in ("basket", "basketdb", "discount", "discountdb", "ordering",
                 "orderingdb"):
        check(name in entries, "health entry %r exists (entries: %s)"
              % (name, sorted(entries)))
        check_eq(entries[name].get("status"), "Healthy", "health entry %s status" % name)

    step("2. POST /basket stores swn's cart")
    r = expect_status(srv.post("/basket", CART), 201, "POST /basket")
    check_eq(r.header("Location"), "/basket/swn", "Location header")
    check_eq(r.json, {"userName": "swn"}, "POST /basket body")

    step("3. GET /basket/swn: discounted prices, server total")
    want = {IPHONE: (2, 350), SAMSUNG: (1, 300)}
    cart = get_cart(srv, "swn")
    check_cart(cart, "swn", want, 1000)
    check_eq(by_product(cart["items"])[IPHONE].get("color"), "Red", "IPhone X color")
    check_eq(by_product(cart["items"])[IPHONE].get("productName"), "IPhone X",
             "IPhone X productName")

    step("4. storing the cart GET returned does not discount it twice")
    r = expect_status(srv.post("/basket", {"cart": cart}), 201, "POST /basket (round trip)")
    cart = get_cart(srv, "swn")
    check_cart(cart, "swn", want, 1000)

    step("5. appending an unknown product at 10.50 keeps its price")
    cart2 = copy.deepcopy(cart)
    cart2["items"].append({"quantity": 1, "color": "Black", "price": Decimal("10.50"),
                           "productId": UNKNOWN, "productName": "E2E Gadget"})
    expect_status(srv.post("/basket", {"cart": cart2}), 201, "POST /basket (3 items)")
    want3 = {IPHONE: (2, 350), SAMSUNG: (1, 300), UNKNOWN: (1, "10.50")}
    cart = get_cart(srv, "swn")
    check_cart(cart, "swn", want3, "1010.5")

    step("6. checkout (client totalPrice 1 is a lie)")
    r = expect_status(srv.post("/basket/checkout", checkout_dto()), 200,
                      "POST /basket/checkout")
    check_eq(r.json, {"isSuccess": True}, "checkout body")
    expect_problem(srv.get("/basket/swn"), 404, "GET /basket/swn after checkout",
                   instance="/basket/swn")

    step("7. the order appears (event delivered through the bus)")
    orders = wait_until(lambda: orders_by_name(srv, "swn"), 10,
                        "GET /orders/swn to return the checked-out order")
    check_eq(len(orders), 1, "number of orders named like swn")
    o = orders[0]
    check_eq(o.get("orderName"), "swn", "order.orderName")
    check_eq(str(o.get("customerId")).lower(), MEHMET, "order.customerId")
    check_eq(o.get("status"), 2, "order.status (Pending)")
    check_eq(o.get("shippingAddress"), ADDRESS, "order.shippingAddress")
    check_eq(o.get("billingAddress"), ADDRESS, "order.billingAddress")
    check_eq(o.get("payment"), STORED_PAYMENT, "order.payment (no CVV kept)")
    check_order_items(o, want3)
    check_eq(Decimal(o.get("totalPrice")), Decimal("1010.5"),
             "order.totalPrice (the server's, not the client's 1)")
    swn_id = o["id"]

    step("8. order queries: pages, by name, by customer")
    r = expect_status(srv.get("/orders?pageIndex=0&pageSize=10"), 200, "GET /orders page 0")
    page = r.json.get("orders") if isinstance(r.json, dict) else None
    check(isinstance(page, dict), "GET /orders body is {\"orders\":{...}}: %r" % r)
    check_eq(page.get("count"), 3, "orders.count (ORD_1, ORD_2, swn)")
    check_eq(page.get("pageIndex"), 0, "orders.pageIndex")
    check_eq(page.get("pageSize"), 10, "orders.pageSize")
    check_eq([x["orderName"] for x in page["data"]], ["ORD_1", "ORD_2", "swn"],
             "page 0 order names, sorted")
    ord1 = page["data"][0]
    check_eq(str(ord1.get("customerId")).lower(), MEHMET, "ORD_1 customer")
    check_order_items(ord1, {IPHONE: (2, 500), SAMSUNG: (1, 400)})
    check_eq(Decimal(ord1.get("totalPrice")), Decimal(1400), "ORD_1 totalPrice")
    r = expect_status(srv.get("/orders?pageIndex=1&pageSize=1"), 200, "GET /orders page 1 size 1")
    page = r.json["orders"]
    check_eq([x["orderName"] for x in page["data"]], ["ORD_2"], "page 1 of size 1")
    check_eq((page.get("pageIndex"), page.get("pageSize"), page.get("count")), (1, 1, 3),
             "page 1 (pageIndex, pageSize, count)")
    check_eq([x["orderName"] for x in orders_by_name(srv, "ORD")], ["ORD_1", "ORD_2"],
             "GET /orders/ORD (substring)")
    check_eq(orders_by_name(srv, "nothing-like-this"), [], "GET /orders/<no match>")
    r = expect_status(srv.get("/orders/customer/" + MEHMET), 200, "GET /orders/customer/mehmet")
    names = sorted(x["orderName"] for x in r.json["orders"])
    check_eq(names, ["ORD_1", "swn"], "mehmet's orders")

    step("9. POST / PUT / DELETE /orders")
    body = new_order()
    r = expect_status(srv.post("/orders", body), 201, "POST /orders")
    check(isinstance(r.json, dict) and isinstance(r.json.get("id"), str),
          "POST /orders body is {\"id\": guid}: %r" % r)
    oid = r.json["id"]
    check_eq(r.header("Location"), "/orders/" + oid, "Location header")
    got = orders_by_name(srv, "E2E_ORDER")
    check_eq([x["id"] for x in got], [oid], "GET /orders/E2E_ORDER ids")
    o = got[0]
    check_eq(o.get("status"), 2, "new order status (Pending, DTO status ignored)")
    check_eq(str(o.get("customerId")).lower(), JOHN, "new order customerId")
    check_eq(o.get("shippingAddress"), JOHN_ADDR, "new order shippingAddress")
    check_eq(o.get("billingAddress"), JOHN_BILL, "new order billingAddress")
    check_eq(o.get("payment"), JOHN_STORED_PAY, "new order payment (no CVV kept)")
    check_order_items(o, {HUAWEI: (1, 650), XIAOMI: (2, 450)})
    check_eq(Decimal(o.get("totalPrice")), Decimal(1550), "new order totalPrice")

    upd = new_order("E2E_RENAMED", oid=oid, status=3)
    r = expect_status(srv.put("/orders", upd), 200, "PUT /orders")
    check_eq(r.json, {"isSuccess": True}, "PUT /orders body")
    got = orders_by_name(srv, "E2E_RENAMED")
    check_eq([x["id"] for x in got], [oid], "GET /orders/E2E_RENAMED ids")
    check_eq(got[0].get("status"), 3, "updated order status (Completed)")
    check_order_items(got[0], {HUAWEI: (1, 650), XIAOMI: (2, 450)})
    check_eq(orders_by_name(srv, "E2E_ORDER"), [], "old name no longer matches")

    r = expect_status(srv.delete("/orders/" + oid), 200, "DELETE /orders/{id}")
    check_eq(r.json, {"isSuccess": True}, "DELETE /orders body")
    expect_problem(srv.delete("/orders/" + oid), 404, "DELETE /orders/{id} again",
                   instance="/orders/" + oid)
    check_eq(orders_by_name(srv, "E2E_RENAMED"), [], "deleted order is gone")
    expect_problem(srv.put("/orders", new_order("GHOST", oid=new_guid())), 404,
                   "PUT /orders with an unknown id", instance="/orders")

    step("9b. JSON names match case-insensitively; DELETE /basket/{user}")
    pascal = {"Cart": {"UserName": "CaseUser", "Items": [
        {"Quantity": 1, "Color": "Red", "Price": 500, "ProductId": IPHONE,
         "ProductName": "IPhone X"}]}}
    expect_status(srv.post("/basket", pascal), 201, "POST /basket with PascalCase names")
    check_cart(get_cart(srv, "CaseUser"), "CaseUser", {IPHONE: (1, 350)}, 350)
    r = expect_status(srv.delete("/basket/CaseUser"), 200, "DELETE /basket/CaseUser")
    check_eq(r.json, {"isSuccess": True}, "DELETE /basket body")
    expect_problem(srv.get("/basket/CaseUser"), 404, "GET deleted basket")

    step("10. errors are problem+json")
    item = dict(CART["cart"]["items"][0])
    expect_problem(srv.request("POST", "/basket", data='{"cart": {"userName": "swn", '),
                   400, "malformed JSON body", instance="/basket")
    expect_problem(srv.post("/basket", {"cart": {"userName": "bad", "items": [
        dict(item, quantity="x")]}}), 400, "quantity of the wrong type",
        instance="/basket", fields=["quantity"])
    expect_problem(srv.post("/basket", {"cart": {"userName": "bad", "items": [
        dict(item, price=Decimal("500.123"))]}}), 400, "price with 3 decimals",
        instance="/basket", fields=["price"])
    expect_problem(srv.post("/basket", {"cart": {"userName": "bad", "items": [
        dict(item, productId="not-a-guid")]}}), 400, "bad GUID productId",
        instance="/basket", fields=["productId"])
    expect_problem(srv.post("/basket", {}), 400, "missing cart",
                   instance="/basket", fields=["cart"])
    expect_problem(srv.post("/basket", {"cart": {"userName": "", "items": []}}), 400,
                   "empty userName", instance="/basket", fields=["userName"])
    expect_problem(srv.post("/basket", {"cart": {"userName": "   ", "items": []}}), 400,
                   "blank (whitespace) userName", instance="/basket", fields=["userName"])
    expect_problem(srv.post("/basket/checkout", {}), 400, "checkout without basketCheckoutDto",
                   instance="/basket/checkout", fields=["basketCheckoutDto"])
    # cvv too long: a basket exists, so only validation can refuse it, and it
    # must still be there afterwards.
    expect_status(srv.post("/basket", {"cart": {"userName": "cvvuser", "items": [item]}}),
                  201, "POST /basket for cvvuser")
    expect_problem(srv.post("/basket/checkout", checkout_dto("cvvuser", cvv="1234")), 400,
                   "checkout with cvv 1234", instance="/basket/checkout", fields=["cvv"])
    get_cart(srv, "cvvuser")
    expect_problem(srv.post("/orders", new_order("E2E_EMPTY", items=[])), 400,
                   "POST /orders with empty orderItems", instance="/orders",
                   fields=["orderItems"])
    oid0 = new_guid()
    expect_problem(srv.post("/orders", new_order("E2E_QTY0", oid=oid0, items=[
        {"orderId": oid0, "productId": HUAWEI, "quantity": 0, "price": 650}])), 400,
        "POST /orders with quantity 0", instance="/orders", fields=["quantity"])
    check_eq(orders_by_name(srv, "E2E_"), [], "no order was created by the bad POSTs")
    expect_problem(srv.delete("/orders/not-a-guid"), 400, "DELETE /orders/not-a-guid",
                   instance="/orders/not-a-guid")
    expect_problem(srv.get("/nope"), 404, "unknown route /nope", instance="/nope")
    r = expect_problem(srv.delete("/basket"), 405, "DELETE /basket (wrong method)",
                       instance="/basket")
    allow = srv.delete("/basket").header("Allow")
    check(allow is not None and "POST" in allow.upper(),
          "405 has an Allow header listing POST (got %r)" % allow)
    expect_problem(srv.get("/basket/nobody"), 404, "GET /basket/nobody",
                   instance="/basket/nobody", detail_contains="nobody")
    expect_problem(srv.post("/basket/checkout", checkout_dto("ghost")), 404,
                   "checkout of a basket that does not exist",
                   instance="/basket/checkout")

    step("11. GET /metrics")
    r = expect_status(srv.get("/metrics"), 200, "GET /metrics")
    for name in ("monoshop_http_requests_total", "monoshop_outbox_pending"):
        check(name in r.text, "metrics mention %s" % name)

    return swn_id


def after_restart(srv, swn_id):
    step("13. after a restart on the same data dir the data persisted")
    r = expect_status(srv.get("/orders?pageIndex=0&pageSize=10"), 200, "GET /orders")
    page = r.json["orders"]
    check_eq(page.get("count"), 3, "orders.count after restart (seed not duplicated)")
    check_eq([x["orderName"] for x in page["data"]], ["ORD_1", "ORD_2", "swn"],
             "order names after restart")
    check_eq(page["data"][2]["id"], swn_id, "swn's order kept its id")
    check_eq(len(page["data"][2]["orderItems"]), 3, "swn's order kept its items")
    expect_problem(srv.get("/basket/swn"), 404, "swn's basket is still gone")
    get_cart(srv, "cvvuser")

    step("14. request body limit (http.max_body=4096): 413 above it")
    small = '{"cart":{"userName":"pad","items":[]}}'
    ok_body = small + " " * (3000 - len(small))
    big_body = small + " " * (5000 - len(small))
    expect_status(srv.request("POST", "/basket", data=ok_body), 201,
                  "POST /basket with a 3000-byte body")
    expect_problem(srv.request("POST", "/basket", data=big_body), 413,
                   "POST /basket with a 5000-byte body", instance="/basket")
    expect_status(srv.get("/health"), 200, "server still healthy after the 413")


def edge_cases(srv):
    step("15. edge cases: no checkout is lost")
    # A coupon larger than the price: the stored price is 0 (never negative).
    r = expect_status(srv.post("/basket", {"cart": {"userName": "freebie", "items": [
        {"quantity": 1, "color": "Red", "price": 100, "productId": IPHONE,
         "productName": "IPhone X"}]}}), 201, "POST /basket with IPhone X at 100")
    check_cart(get_cart(srv, "freebie"), "freebie", {IPHONE: (1, 0)}, 0)
    # Its checkout must either be refused (basket kept) or become an order:
    # answering 200 and then dropping the event loses the checkout.
    r = srv.post("/basket/checkout", checkout_dto("freebie"))
    if r.status == 200:
        print("   checkout of a basket with a 0-priced item answered 200;"
              " its order must appear", flush=True)
        orders = wait_until(lambda: [o for o in orders_by_name(srv, "freebie")
                                     if o["orderName"] == "freebie"], 10,
                            "the order of freebie: its checkout answered 200, so"
                            " it must not be lost (SPEC §2 'delivered at least once',"
                            " §5 'no checkout is lost')")
        check_eq(len(orders), 1, "orders of freebie")
        check_eq(Decimal(orders[0]["totalPrice"]), Decimal(0), "freebie's totalPrice")
    else:
        check(400 <= r.status < 500,
              "checkout of a basket with a 0-priced item is refused with a 4xx (%r)" % r)
        get_cart(srv, "freebie")
    # An empty basket checks out to an order with no items.
    expect_status(srv.post("/basket", {"cart": {"userName": "emptycart", "items": []}}),
                  201, "POST /basket with no items")
    r = srv.post("/basket/checkout", checkout_dto("emptycart"))
    if r.status == 200:
        orders = wait_until(lambda: orders_by_name(srv, "emptycart"), 10,
                            "the order of emptycart (checkout answered 200)")
        check_eq(len(orders), 1, "orders of emptycart")
    else:
        check(400 <= r.status < 500, "empty checkout refused with a 4xx (%r)" % r)
        get_cart(srv, "emptycart")


def main():
    exe = exe_from_argv()
    srv = Server(exe, name="dev")
    step("starting dev mode in %s" % srv.data_dir)
    srv.start()
    swn_id = story(srv)
    step("12. SIGTERM -> exit 0")
    srv.stop()
    integrity_check(srv.data_dir)
    step("restarting on the same data dir with http.max_body=4096")
    srv.start(extra=["http.max_body=4096"])
    after_restart(srv, swn_id)
    edge_cases(srv)
    srv.stop()
    integrity_check(srv.data_dir)


if __name__ == "__main__":
    run(main)
