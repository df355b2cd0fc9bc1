//! Idempotency-Key behaviour over real HTTP.

mod common;
use common::*;

#[tokio::test]
async fn replay_returns_first_response() {
    let api = start().await;
    let h = [("Idempotency-Key", "key-1")];
    let first = api.post_with("/v1/customers", "email=i%40x.co", &h).await;
    assert_eq!(first.status, 200);
    assert!(first.header("idempotent-replayed").is_none());
    let second = api.post_with("/v1/customers", "email=i%40x.co", &h).await;
    assert_eq!(second.status, 200);
    assert_eq!(
        second.body, first.body,
        "same object, not a second customer"
    );
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        second.header("original-request"),
        first.header("request-id")
    );
    assert_ne!(second.header("request-id"), first.header("request-id"));
    assert_eq!(api.running.emulator().with(|i| i.store.customers.len()), 1);

    // Replays of a discount update do not apply it twice (and keep the same coupon).
    let s = api.session(&[(1000, 1)], "").await;
    let id = s["id"].as_str().unwrap();
    let path = format!("/v1/checkout/sessions/{id}");
    let hdr = [("Stripe-Version", BETA), ("Idempotency-Key", "upd-1")];
    let a = api
        .post_with(&path, "discounts[0][coupon_data][percent_off]=10", &hdr)
        .await;
    let b = api
        .post_with(&path, "discounts[0][coupon_data][percent_off]=10", &hdr)
        .await;
    assert_eq!(a.body["discounts"], b.body["discounts"]);
    assert_eq!(b.header("idempotent-replayed"), Some("true"));

    let log = api.running.emulator().requests();
    assert!(log
        .iter()
        .any(|r| r.replayed && r.idempotency_key.as_deref() == Some("upd-1")));
}

#[tokio::test]
async fn reuse_with_other_params_or_path_is_an_idempotency_error() {
    let api = start().await;
    let h = [("Idempotency-Key", "key-2")];
    api.post_with("/v1/customers", "email=a%40x.co", &h).await;
    let other = api.post_with("/v1/customers", "email=b%40x.co", &h).await;
    assert_eq!(other.status, 400);
    assert_eq!(other.err_type(), Some("idempotency_error"));
    assert!(other.message().contains("same parameters"));
    let other_path = api.post_with("/v1/coupons", "percent_off=5", &h).await;
    assert_eq!(other_path.status, 400);
    assert_eq!(other_path.err_type(), Some("idempotency_error"));
    assert!(other_path.header("request-id").is_some());
}

#[tokio::test]
async fn long_keys_and_validation_errors() {
    let api = start().await;
    let long = "k".repeat(256);
    let r = api
        .post_with("/v1/customers", "", &[("Idempotency-Key", &long)])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.err_type(), Some("invalid_request_error"));
    assert!(r.message().contains("255"));
    let ok = api
        .post_with(
            "/v1/customers",
            "",
            &[("Idempotency-Key", &"k".repeat(255))],
        )
        .await;
    assert_eq!(ok.status, 200);

    // A parameter error is not saved: the corrected retry... with the same params fails again,
    // and the key stays usable (Stripe saves only requests that started executing).
    let h = [("Idempotency-Key", "key-3")];
    let bad = api.post_with("/v1/coupons", "percent_off=500", &h).await;
    assert_eq!(bad.status, 400);
    let again = api.post_with("/v1/coupons", "percent_off=500", &h).await;
    assert!(again.header("idempotent-replayed").is_none());
    let fixed = api.post_with("/v1/coupons", "percent_off=50", &h).await;
    assert_eq!(fixed.status, 200, "{}", fixed.body);

    // GET ignores keys.
    let g = api
        .http
        .get(api.url("/v1/coupons/nope"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "key-3")
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), 404);
}
