"""Drives a running Stripe emulator with the official `stripe` Python SDK.

STRIPE_API_BASE (default http://127.0.0.1:12111) points at the emulator.
Prints one line per test and `sdk: N passed, M failed`; exits 1 on any failure.
"""

import json
import os
import sys
import traceback
import urllib.request
import uuid

import stripe

BASE = os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111").rstrip("/")
BETA = "2025-03-31.basil; checkout_server_update_beta=v1;"

stripe.api_key = "sk_test_sdk_emulator"
stripe.api_base = BASE
stripe.api_version = BETA
stripe.max_network_retries = 0


def control(method, path, body=None):
    """Calls the emulator's control API (JSON, no auth)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def new_session(customer=None, lines=((2000, 1), (1000, 3))):
    params = dict(
        mode="payment",
        ui_mode="custom",
        return_url="https://example.com/return?session_id={CHECKOUT_SESSION_ID}",
        permissions={"update_discounts": "server_only"},
        line_items=[
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": amount,
                    "product_data": {"name": f"Item {i}"},
                },
                "quantity": qty,
            }
            for i, (amount, qty) in enumerate(lines)
        ],
        metadata={"cart": "sdk"},
    )
    if customer:
        params["customer"] = customer
    return stripe.checkout.Session.create(**params)


def line_discounts(session):
    return [li.amount_discount for li in session.line_items.data]


def test_customer_roundtrip():
    c = stripe.Customer.create(email="sdk@example.com", name="SDK", metadata={"tier": "gold"})
    assert c.id.startswith("cus_"), c.id
    got = stripe.Customer.retrieve(c.id)
    assert got.email == "sdk@example.com"
    assert got.metadata["tier"] == "gold"


def test_session_create_and_expand():
    c = stripe.Customer.create(email="x@example.com", metadata={"tier": "silver"})
    s = new_session(customer=c.id)
    assert s.id.startswith("cs_test_")
    assert s.status == "open" and s.payment_status == "unpaid"
    assert s.amount_subtotal == 5000 and s.amount_total == 5000
    assert "line_items" not in s, "line_items only when expanded"
    r = stripe.checkout.Session.retrieve(s.id, expand=["line_items", "customer", "discounts.coupon"])
    assert r.customer.metadata["tier"] == "silver"
    assert len(r.line_items.data) == 2
    assert r.line_items.data[1].quantity == 3
    assert r.line_items.data[1].amount_subtotal == 3000
    items = stripe.checkout.Session.list_line_items(s.id, limit=1)
    assert len(items.data) == 1 and items.has_more


def test_update_percent_discount_then_clear():
    s = new_session()
    u = stripe.checkout.Session.modify(
        s.id,
        discounts=[{"coupon_data": {"name": "Loyalty 10%", "percent_off": 10}}],
        expand=["line_items", "discounts.coupon", "total_details.breakdown"],
    )
    assert u.total_details.amount_discount == 500, u.total_details
    assert u.amount_total == 4500
    assert line_discounts(u) == [200, 300]
    coupon = u.discounts[0].coupon
    assert coupon.percent_off == 10 and coupon.name == "Loyalty 10%" and coupon.duration == "once"
    assert stripe.Coupon.retrieve(coupon.id).percent_off == 10
    assert u.total_details.breakdown.discounts[0].amount == 500

    back = stripe.checkout.Session.retrieve(s.id)
    assert back.amount_total == 4500
    assert back.discounts[0].coupon == coupon.id

    cleared = stripe.checkout.Session.modify(s.id, discounts="", expand=["line_items"])
    assert cleared.amount_total == 5000
    assert cleared.total_details.amount_discount == 0
    assert cleared.discounts == []
    assert line_discounts(cleared) == [0, 0]


def test_update_amount_off_is_capped_and_per_request_version():
    s = new_session(lines=((1500, 1),))
    u = stripe.checkout.Session.modify(
        s.id,
        discounts=[{"coupon_data": {"amount_off": 9999, "currency": "usd"}}],
        stripe_version=BETA,
    )
    assert u.total_details.amount_discount == 1500
    assert u.amount_total == 0


def test_existing_coupon_by_id():
    stripe.Coupon.create(id="SDK5-" + uuid.uuid4().hex[:6], amount_off=500, currency="usd")
    code = stripe.Coupon.create(amount_off=700, currency="usd").id
    s = new_session()
    u = stripe.checkout.Session.modify(s.id, discounts=[{"coupon": code}])
    assert u.amount_total == 4300


def test_errors_map_to_sdk_exceptions():
    s = new_session()
    try:
        stripe.checkout.Session.modify(
            s.id,
            discounts=[{"coupon_data": {"percent_off": 10}}],
            stripe_version="2025-03-31.basil",
        )
        raise AssertionError("expected InvalidRequestError without the beta")
    except stripe.InvalidRequestError as e:
        assert e.param == "discounts", e.param
        assert e.code == "parameter_unknown"
        assert e.http_status == 400
        assert e.request_id and e.request_id.startswith("req_")
    try:
        stripe.checkout.Session.modify(s.id, discounts=[{"coupon_data": {"percent_off": 150}}])
        raise AssertionError("expected InvalidRequestError for percent_off=150")
    except stripe.InvalidRequestError as e:
        assert e.param == "discounts[0][coupon_data][percent_off]", e.param
    try:
        stripe.checkout.Session.retrieve("cs_test_missing")
        raise AssertionError("expected 404")
    except stripe.InvalidRequestError as e:
        assert e.http_status == 404 and e.code == "resource_missing"
    try:
        stripe.Customer.create(api_key="sk_test_")
        raise AssertionError("expected AuthenticationError")
    except stripe.AuthenticationError as e:
        assert e.http_status == 401


def test_idempotent_replay():
    key = str(uuid.uuid4())
    a = stripe.Customer.create(email="idem@example.com", idempotency_key=key)
    b = stripe.Customer.create(email="idem@example.com", idempotency_key=key)
    assert a.id == b.id
    try:
        stripe.Customer.create(email="other@example.com", idempotency_key=key)
        raise AssertionError("expected IdempotencyError")
    except stripe.IdempotencyError as e:
        assert e.http_status == 400


def test_sdk_retries_injected_500_with_same_key():
    s = new_session()
    path = f"/v1/checkout/sessions/{s.id}"
    control("DELETE", "/_emulator/requests")
    control("POST", "/_emulator/faults", {"method": "POST", "path": path, "count": 1,
                                           "status": 500, "should_retry": True})
    client_retries = stripe.max_network_retries
    stripe.max_network_retries = 2
    try:
        u = stripe.checkout.Session.modify(s.id, discounts=[{"coupon_data": {"percent_off": 20}}])
    finally:
        stripe.max_network_retries = client_retries
    assert u.amount_total == 4000
    posts = [r for r in control("GET", "/_emulator/requests") if r["method"] == "POST" and r["path"] == path]
    assert [r["status"] for r in posts] == [500, 200], posts
    assert posts[0]["idempotency_key"] and posts[0]["idempotency_key"] == posts[1]["idempotency_key"]


def test_dropped_connection_is_connection_error():
    s = new_session()
    control("POST", "/_emulator/faults", {"path": f"/v1/checkout/sessions/{s.id}", "drop_connection": True})
    try:
        stripe.checkout.Session.modify(s.id, discounts=[{"coupon_data": {"percent_off": 5}}])
        raise AssertionError("expected APIConnectionError")
    except stripe.APIConnectionError:
        pass
    assert stripe.checkout.Session.retrieve(s.id).amount_total == 5000


def test_expire():
    s = new_session()
    e = stripe.checkout.Session.expire(s.id)
    assert e.status == "expired"
    try:
        stripe.checkout.Session.modify(s.id, discounts="")
        raise AssertionError("expected refusal on an expired session")
    except stripe.InvalidRequestError as err:
        assert "open" in str(err.user_message or err)


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]


def main():
    passed = failed = 0
    print(f"stripe-python {stripe.VERSION} against {BASE}")
    for t in TESTS:
        try:
            t()
            passed += 1
            print(f"ok   {t.__name__}")
        except Exception:  # noqa: BLE001 - report every failure
            failed += 1
            print(f"FAIL {t.__name__}")
            traceback.print_exc()
    print(f"sdk: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
