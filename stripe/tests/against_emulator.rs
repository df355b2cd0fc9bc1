//! The client against the embedded Stripe emulator (real HTTP over loopback), using its fault API.

use serde_json::{json, Value};
use std::time::Duration;
use stripe_checkout::{
    idempotency_key, ClientConfig, CouponData, DiscountsUpdate, StripeClient, StripeError,
    STRIPE_VERSION,
};
use stripe_emulator::Emulator;
use tokio::net::TcpListener;

const KEY: &str = "sk_test_emulatorKey0123456789";

/// A running emulator plus a client configured for it.
struct Env {
    base: String,
    client: StripeClient,
    http: reqwest::Client,
}

impl Env {
    async fn start() -> Env {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let em = Emulator::new();
        tokio::spawn(async move {
            let _ = em.serve(listener).await;
        });
        let client = StripeClient::new(ClientConfig {
            api_base: base.clone(),
            initial_network_retry_delay: Duration::from_millis(2),
            max_network_retry_delay: Duration::from_millis(10),
            request_timeout: Duration::from_secs(5),
            ..ClientConfig::new(KEY)
        })
        .unwrap();
        Env {
            base,
            client,
            http: reqwest::Client::new(),
        }
    }

    /// Registers a fault through `POST /_emulator/faults`.
    async fn fault(&self, spec: Value) {
        let r = self
            .http
            .post(format!("{}/_emulator/faults", self.base))
            .json(&spec)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "fault rejected: {}",
            r.text().await.unwrap()
        );
    }

    /// The emulator's request log (`GET /_emulator/requests`), `/v1` requests only.
    async fn requests(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/_emulator/requests", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let list = match v {
            Value::Array(a) => a,
            Value::Object(mut o) => match o.remove("data") {
                Some(Value::Array(a)) => a,
                _ => panic!("unexpected request log shape"),
            },
            _ => panic!("unexpected request log shape"),
        };
        list.into_iter()
            .filter(|r| r["path"].as_str().is_some_and(|p| p.starts_with("/v1/")))
            .collect()
    }

    /// Creates a Checkout Session that allows server-side discount updates.
    async fn session(&self) -> String {
        let r = self
            .client
            .create_checkout_session(
                &json!({
                    "mode": "payment",
                    "ui_mode": "custom",
                    "return_url": "https://example.com/return",
                    "permissions": {"update_discounts": "server_only"},
                    "line_items": [{
                        "price_data": {"currency": "usd", "unit_amount": 2500,
                                       "product_data": {"name": "Tee"}},
                        "quantity": 2
                    }],
                }),
                None,
                None,
            )
            .await
            .unwrap();
        assert_eq!(r.body.amount_subtotal, Some(5000));
        r.body.id
    }
}

fn percent(p: f64) -> DiscountsUpdate {
    DiscountsUpdate::CouponData(CouponData {
        name: Some(format!("{p}% off")),
        percent_off: Some(p),
        ..Default::default()
    })
}

#[tokio::test]
async fn update_applies_a_discount_and_sends_the_beta_version() {
    let env = Env::start().await;
    let id = env.session().await;
    let key = idempotency_key(&id, &percent(10.0), "req-1");
    let r = env
        .client
        .update_checkout_session_discounts(&id, &percent(10.0), &key, &["line_items"], None)
        .await
        .unwrap();
    assert_eq!(r.attempts, 1);
    assert!(r.request_id.is_some());
    assert_eq!(r.body.amount_total, Some(4500));
    assert_eq!(
        r.body.total_details.as_ref().map(|t| t.amount_discount),
        Some(500)
    );
    let got = env
        .client
        .retrieve_checkout_session(&id, &["line_items"], None)
        .await
        .unwrap();
    assert_eq!(got.body.amount_total, Some(4500));
    assert_eq!(got.body.line_items.map(|l| l.data.len()), Some(1));

    let log = env.requests().await;
    let update = log
        .iter()
        .find(|r| r["method"] == "POST" && r["path"] == format!("/v1/checkout/sessions/{id}"))
        .unwrap();
    assert_eq!(update["idempotency_key"], key.as_str());
    assert_eq!(update["stripe_version"], STRIPE_VERSION);
}

#[tokio::test]
async fn retries_injected_500s_with_one_idempotency_key() {
    let env = Env::start().await;
    let id = env.session().await;
    let path = format!("/v1/checkout/sessions/{id}");
    env.fault(
        json!({"method": "POST", "path": path, "count": 2, "status": 500,
                     "error_type": "api_error"}),
    )
    .await;
    let r = env
        .client
        .update_checkout_session_discounts(&id, &percent(20.0), "idem-500", &[], None)
        .await
        .unwrap();
    assert_eq!(r.attempts, 3);
    assert_eq!(r.body.amount_total, Some(4000));
    let posts: Vec<Value> = env
        .requests()
        .await
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"] == path.as_str())
        .collect();
    assert_eq!(posts.len(), 3);
    assert!(posts.iter().all(|r| r["idempotency_key"] == "idem-500"));
}

#[tokio::test]
async fn lock_timeout_is_retried_but_rate_limit_is_not() {
    let env = Env::start().await;
    let id = env.session().await;
    let path = format!("/v1/checkout/sessions/{id}");
    env.fault(
        json!({"method": "POST", "path": path, "count": 1, "status": 429,
                     "error_type": "invalid_request_error", "error_code": "lock_timeout"}),
    )
    .await;
    let r = env
        .client
        .update_checkout_session_discounts(&id, &percent(10.0), "idem-lock", &[], None)
        .await
        .unwrap();
    assert_eq!(r.attempts, 2);

    env.fault(
        json!({"method": "POST", "path": path, "count": 1, "status": 429,
                     "error_type": "invalid_request_error", "error_code": "rate_limit"}),
    )
    .await;
    let e = env
        .client
        .update_checkout_session_discounts(&id, &DiscountsUpdate::Clear, "idem-rate", &[], None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(429));
    assert_eq!(e.code(), Some("rate_limit"));
    assert!(e.request_id().is_some());
}

#[tokio::test]
async fn should_retry_false_and_dropped_connections() {
    let env = Env::start().await;
    let id = env.session().await;
    let path = format!("/v1/checkout/sessions/{id}");
    env.fault(
        json!({"method": "POST", "path": path, "count": 1, "status": 500,
                     "should_retry": false}),
    )
    .await;
    let e = env
        .client
        .update_checkout_session_discounts(&id, &percent(10.0), "idem-sr", &[], None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(500));
    assert!(!e.is_retryable());

    env.fault(json!({"method": "POST", "path": path, "count": 2, "drop_connection": true}))
        .await;
    let r = env
        .client
        .update_checkout_session_discounts(&id, &percent(10.0), "idem-drop", &[], None)
        .await
        .unwrap();
    assert_eq!(r.attempts, 3);
}

#[tokio::test]
async fn deadline_cuts_an_injected_delay() {
    let env = Env::start().await;
    let id = env.session().await;
    env.fault(
        json!({"method": "GET", "path": format!("/v1/checkout/sessions/{id}"),
                     "count": 1, "delay_ms": 5000}),
    )
    .await;
    let start = tokio::time::Instant::now();
    let e = env
        .client
        .retrieve_checkout_session(
            &id,
            &[],
            Some(tokio::time::Instant::now() + Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert_eq!(e, StripeError::DeadlineExceeded);
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn reapplying_after_a_clear_is_not_swallowed_by_idempotent_replay() {
    let env = Env::start().await;
    let id = env.session().await;
    // Storefront request 1 applies 10 %, request 2 clears, request 3 applies 10 % again.
    for (nonce, update, total) in [
        ("sf-1", percent(10.0), 4500),
        ("sf-2", DiscountsUpdate::Clear, 5000),
        ("sf-3", percent(10.0), 4500),
    ] {
        let key = idempotency_key(&id, &update, nonce);
        let r = env
            .client
            .update_checkout_session_discounts(&id, &update, &key, &[], None)
            .await
            .unwrap();
        assert_eq!(r.body.amount_total, Some(total), "{nonce}");
    }
    let posts: Vec<Value> = env
        .requests()
        .await
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"] == format!("/v1/checkout/sessions/{id}"))
        .collect();
    assert_eq!(posts.len(), 3);
    assert!(posts.iter().all(|r| r["replayed"] == false));

    // The same key again is replayed by the emulator, as Stripe would.
    let key = idempotency_key(&id, &percent(10.0), "sf-3");
    env.client
        .update_checkout_session_discounts(&id, &percent(10.0), &key, &[], None)
        .await
        .unwrap();
    let last = env.requests().await.pop().unwrap();
    assert_eq!(last["replayed"], true);
}
