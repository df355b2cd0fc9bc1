//! Stripe failures, injected in the emulator, seen through the real host binary:
//! retries under one `Idempotency-Key`, `Stripe-Should-Retry`, exhausted retries,
//! the per-request deadline, dropped connections, per-session serialization,
//! rate limits and the `Request-Id` in the host's logs.

mod common;

use common::{policy_dir, Host, Stripe};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Fast backoff so retries do not slow the suite; the deadline is generous.
const FAST_RETRIES: &str =
    "request_deadline_ms = 8000\n[stripe]\ninitial_retry_delay_ms = 10\nmax_retry_delay_ms = 50\n";

/// The customer-facing message of every upstream failure.
const GENERIC: &str = "We could not update your discounts. Please try again.";

/// The cart-threshold route: 10 % off a cart over 100.00, capped at 20.00.
const ROUTE: &str = "/apply-cart-discount";

async fn setup(config: &str) -> (Stripe, Host, common::tempdir::TempDir) {
    let stripe = Stripe::start().await;
    let dir = policy_dir(&["cart-threshold"]);
    let host = Host::start(&stripe.url(), dir.path(), config);
    (stripe, host, dir)
}

/// A 120.00 USD session: the policy applies 12.00 off.
async fn discountable(stripe: &Stripe) -> String {
    stripe.session("usd", &[(6_000, 2)], None).await
}

fn session_path(id: &str) -> String {
    format!("/v1/checkout/sessions/{id}")
}

/// Requests the emulator saw for this session's own path with this method.
async fn logged(stripe: &Stripe, method: &str, id: &str) -> Vec<Value> {
    let path = session_path(id);
    stripe
        .requests()
        .await
        .into_iter()
        .filter(|r| r["method"] == method && r["path"] == path.as_str())
        .collect()
}

/// Waits until every armed fault has been taken, i.e. the faulted request reached the emulator.
async fn wait_until_faults_taken(stripe: &Stripe) {
    let url = format!("{}/_emulator/faults", stripe.url());
    for _ in 0..400 {
        let faults: Value = stripe
            .http
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if faults.as_array().is_some_and(Vec::is_empty) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the faulted request never reached the emulator");
}

/// Asserts the session has no discount at all.
async fn assert_unchanged(stripe: &Stripe, id: &str) {
    let s = stripe.get_session(id).await;
    assert_eq!(s["total_details"]["amount_discount"], 0, "{s}");
    assert!(
        s["discounts"].as_array().is_none_or(Vec::is_empty),
        "{}",
        s["discounts"]
    );
    assert_eq!(s["amount_total"], s["amount_subtotal"]);
}

/// Asserts the storefront got the generic upstream-failure answer, with nothing leaked.
fn assert_generic_error(a: &common::Answer) {
    assert_eq!(a.body["type"], "error", "{:?}", a.body);
    let message = a.body["message"].as_str().unwrap_or_default();
    assert_eq!(message, GENERIC);
    for leak in [
        "req_",
        "api_error",
        "Stripe",
        "sk_test",
        "lock_timeout",
        "rate_limit",
    ] {
        assert!(!a.body.to_string().contains(leak), "{leak} in {:?}", a.body);
    }
}

#[tokio::test]
async fn transient_update_failures_are_retried_under_one_key_and_apply_once() {
    let (stripe, host, _dir) = setup(FAST_RETRIES).await;
    let cases = [
        json!({"status": 500, "count": 1}),
        json!({"status": 503, "count": 2}),
        json!({"status": 409, "error_type": "invalid_request_error", "count": 1}),
        json!({"status": 429, "error_type": "invalid_request_error", "error_code": "lock_timeout", "count": 2}),
    ];
    for case in cases {
        let id = discountable(&stripe).await;
        let failures = case["count"].as_u64().unwrap() as usize;
        let mut fault = case.clone();
        fault["method"] = json!("POST");
        fault["path"] = json!(session_path(&id));
        stripe.fault(fault).await;

        let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
        assert_eq!(a.status, 200, "{case}: {:?}", a.body);
        assert_eq!(
            a.body["value"]["session"]["amount_discount"], 1_200,
            "{case}"
        );

        let updates = stripe.updates_of(&id).await;
        assert_eq!(updates.len(), failures + 1, "{case}: {updates:?}");
        for failed in &updates[..failures] {
            assert_eq!(failed["faulted"], true, "{case}");
            assert_eq!(failed["status"], case["status"], "{case}");
        }
        let last = &updates[failures];
        assert_eq!(last["status"], 200, "{case}");
        assert_eq!(last["faulted"], false, "{case}");
        let key = updates[0]["idempotency_key"].as_str().expect("a key");
        assert!(key.len() <= 255);
        for u in &updates {
            assert_eq!(
                u["idempotency_key"], key,
                "{case}: same key on every attempt"
            );
        }

        let s = stripe.get_session(&id).await;
        let discounts = s["discounts"].as_array().unwrap();
        assert_eq!(discounts.len(), 1, "{case}: exactly one discount");
        assert_eq!(discounts[0]["coupon"]["amount_off"], 1_200);
        assert_eq!(s["total_details"]["amount_discount"], 1_200);
        assert_eq!(s["amount_total"], 10_800);
    }
}

#[tokio::test]
async fn stripe_should_retry_false_stops_retrying_a_500() {
    let (stripe, host, _dir) = setup(FAST_RETRIES).await;
    let id = discountable(&stripe).await;
    stripe
        .fault(json!({"method": "POST", "path": session_path(&id), "status": 500, "should_retry": false, "count": 3}))
        .await;
    let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
    assert_eq!(a.status, 502, "{:?}", a.body);
    assert_generic_error(&a);
    assert_eq!(stripe.updates_of(&id).await.len(), 1, "exactly one attempt");
    assert_unchanged(&stripe, &id).await;
}

#[tokio::test]
async fn stripe_should_retry_true_forces_a_retry_of_a_400() {
    let (stripe, host, _dir) = setup(FAST_RETRIES).await;
    let id = discountable(&stripe).await;
    stripe
        .fault(json!({"method": "POST", "path": session_path(&id), "status": 400, "error_type": "invalid_request_error", "should_retry": true, "count": 1}))
        .await;
    let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let updates = stripe.updates_of(&id).await;
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[0]["status"], 400);
    assert_eq!(updates[1]["status"], 200);
    assert_eq!(updates[0]["idempotency_key"], updates[1]["idempotency_key"]);
    assert_eq!(
        stripe.get_session(&id).await["total_details"]["amount_discount"],
        1_200
    );
}

#[tokio::test]
async fn a_400_without_the_header_is_not_retried() {
    let (stripe, host, _dir) = setup(FAST_RETRIES).await;
    let id = discountable(&stripe).await;
    stripe
        .fault(json!({"method": "POST", "path": session_path(&id), "status": 400, "error_type": "invalid_request_error", "count": 3}))
        .await;
    let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
    assert_eq!(a.status, 502, "{:?}", a.body);
    assert_generic_error(&a);
    assert_eq!(stripe.updates_of(&id).await.len(), 1);
    assert_unchanged(&stripe, &id).await;
}

#[tokio::test]
async fn exhausted_retries_give_a_clear_error_and_leave_the_session_unchanged() {
    let (stripe, host, _dir) = setup(FAST_RETRIES).await;

    // Update: 1 attempt + 2 retries, all 500.
    let id = discountable(&stripe).await;
    stripe
        .fault(json!({"method": "POST", "path": session_path(&id), "status": 500, "count": 3}))
        .await;
    let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
    assert_eq!(a.status, 502, "{:?}", a.body);
    assert_generic_error(&a);
    let updates = stripe.updates_of(&id).await;
    assert_eq!(updates.len(), 3, "{updates:?}");
    assert!(updates.iter().all(|u| u["faulted"] == true));
    assert!(updates
        .iter()
        .all(|u| u["idempotency_key"] == updates[0]["idempotency_key"]));
    assert_unchanged(&stripe, &id).await;

    // Retrieve: every attempt loses its connection; nothing is updated.
    let id = discountable(&stripe).await;
    stripe
        .fault(json!({"method": "GET", "path": session_path(&id), "drop_connection": true, "count": 3}))
        .await;
    let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
    assert_eq!(a.status, 503, "{:?}", a.body);
    assert_generic_error(&a);
    assert_eq!(logged(&stripe, "GET", &id).await.len(), 3);
    assert!(stripe.updates_of(&id).await.is_empty());
    assert_unchanged(&stripe, &id).await;

    // Lock timeouts that never clear: retried, then 503.
    let id = discountable(&stripe).await;
    stripe
        .fault(json!({"method": "POST", "path": session_path(&id), "status": 429, "error_type": "invalid_request_error", "error_code": "lock_timeout", "count": 3}))
        .await;
    let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
    assert_eq!(a.status, 503, "{:?}", a.body);
    assert_generic_error(&a);
    assert_eq!(stripe.updates_of(&id).await.len(), 3);
    assert_unchanged(&stripe, &id).await;
}

#[tokio::test]
async fn a_slow_stripe_is_cut_off_at_the_deadline() {
    // 1.5 s per storefront request; Stripe stalls for 30 s.
    let config = "request_deadline_ms = 1500\n[stripe]\ninitial_retry_delay_ms = 10\nmax_retry_delay_ms = 50\n";
    let (stripe, host, _dir) = setup(config).await;
    let stall = 30_000;

    let id = discountable(&stripe).await;
    stripe
        .fault(json!({"method": "GET", "path": session_path(&id), "delay_ms": stall}))
        .await;
    let started = Instant::now();
    let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
    let took = started.elapsed();
    assert_eq!(a.status, 504, "{:?}", a.body);
    assert_generic_error(&a);
    // Correctness bound, not a performance figure: the answer came from the deadline,
    // not from the stalled response.
    assert!(took < Duration::from_millis(stall / 2), "took {took:?}");
    assert!(stripe.updates_of(&id).await.is_empty());

    let id = discountable(&stripe).await;
    stripe
        .fault(json!({"method": "POST", "path": session_path(&id), "delay_ms": stall}))
        .await;
    let started = Instant::now();
    let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
    let took = started.elapsed();
    assert_eq!(a.status, 504, "{:?}", a.body);
    assert_generic_error(&a);
    assert!(took < Duration::from_millis(stall / 2), "took {took:?}");
}

#[tokio::test]
async fn a_dropped_connection_on_retrieve_is_retried() {
    let (stripe, host, _dir) = setup(FAST_RETRIES).await;
    let id = discountable(&stripe).await;
    stripe
        .fault(json!({"method": "GET", "path": session_path(&id), "drop_connection": true, "count": 1}))
        .await;
    let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let gets = logged(&stripe, "GET", &id).await;
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(
        gets[0]["status"], 0,
        "the first attempt lost its connection"
    );
    assert_eq!(gets[0]["faulted"], true);
    assert_eq!(gets[1]["status"], 200);
    assert_eq!(stripe.updates_of(&id).await.len(), 1);
    assert_eq!(
        stripe.get_session(&id).await["total_details"]["amount_discount"],
        1_200
    );
}

#[tokio::test]
async fn an_attempt_that_times_out_is_retried() {
    // One attempt may take 300 ms; the storefront request as a whole 8 s.
    let config = "request_deadline_ms = 8000\n[stripe]\ninitial_retry_delay_ms = 10\nmax_retry_delay_ms = 50\nrequest_timeout_ms = 300\n";
    let (stripe, host, _dir) = setup(config).await;
    let id = discountable(&stripe).await;
    stripe
        .fault(json!({"method": "GET", "path": session_path(&id), "delay_ms": 2_000}))
        .await;
    let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["value"]["session"]["amount_discount"], 1_200);
    // The stalled attempt reached the emulator (its fault is taken) and was abandoned
    // (the emulator logs a request only when it answers it); the retry succeeded.
    wait_until_faults_taken(&stripe).await;
    let gets = logged(&stripe, "GET", &id).await;
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0]["faulted"], false);
    let logs = host.wait_for_log("request to Stripe timed out").await;
    assert!(
        logs.lines().any(|l| l.contains("retrying Stripe request")
            && l.contains("attempt=1")
            && l.contains("timed out")
            && l.contains(&id)),
        "no retry after a timeout in the host's logs:\n{logs}"
    );
    assert_eq!(stripe.updates_of(&id).await.len(), 1);
}

#[tokio::test]
async fn concurrent_requests_for_one_session_do_not_interleave() {
    let (stripe, host, _dir) = setup(FAST_RETRIES).await;
    let id = discountable(&stripe).await;
    // The first update stalls; a second request arrives while it does.
    stripe
        .fault(json!({"method": "POST", "path": session_path(&id), "delay_ms": 3_000}))
        .await;
    let host = std::sync::Arc::new(host);
    let first = {
        let (host, id) = (host.clone(), id.clone());
        tokio::spawn(async move { host.post(ROUTE, json!({"checkout_session_id": id})).await })
    };
    // The fault is taken once the first request's update reached the emulator.
    wait_until_faults_taken(&stripe).await;
    let second = host.post(ROUTE, json!({"checkout_session_id": id})).await;
    let first = first.await.unwrap();
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(second.status, 200, "{:?}", second.body);

    // The emulator logs a request when it answers it. Serialized, the second request's
    // retrieve comes after the stalled update; interleaved, it would come before.
    let path = session_path(&id);
    let log: Vec<Value> = stripe
        .requests()
        .await
        .into_iter()
        .filter(|r| r["path"] == path.as_str())
        .collect();
    let methods: Vec<&str> = log.iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["GET", "POST", "GET", "POST"], "{log:?}");
    assert_eq!(
        log[1]["faulted"], true,
        "the stalled update is the first one"
    );
    assert_ne!(
        log[1]["idempotency_key"], log[3]["idempotency_key"],
        "two storefront requests are two logical updates"
    );
    let s = stripe.get_session(&id).await;
    assert_eq!(s["discounts"].as_array().unwrap().len(), 1);
    assert_eq!(s["total_details"]["amount_discount"], 1_200);
}

#[tokio::test]
async fn a_rate_limit_429_is_not_retried_and_maps_to_503() {
    let (stripe, host, _dir) = setup(FAST_RETRIES).await;
    let id = discountable(&stripe).await;
    stripe
        .fault(json!({"method": "POST", "path": session_path(&id), "status": 429, "error_type": "invalid_request_error", "error_code": "rate_limit", "message": "Too many requests hit the API too quickly.", "count": 3}))
        .await;
    let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
    assert_eq!(a.status, 503, "{:?}", a.body);
    assert_generic_error(&a);
    assert_eq!(stripe.updates_of(&id).await.len(), 1, "not retried");
    assert_unchanged(&stripe, &id).await;
}

#[tokio::test]
async fn a_session_closed_between_retrieve_and_update_is_409() {
    let (stripe, host, _dir) = setup(FAST_RETRIES).await;
    let id = discountable(&stripe).await;
    // The update stalls; meanwhile the session expires, so Stripe refuses the update.
    stripe
        .fault(json!({"method": "POST", "path": session_path(&id), "delay_ms": 3_000}))
        .await;
    let request = {
        let id = id.clone();
        let host = std::sync::Arc::new(host);
        tokio::spawn(async move { host.post(ROUTE, json!({"checkout_session_id": id})).await })
    };
    wait_until_faults_taken(&stripe).await;
    stripe
        .client
        .expire_checkout_session(&id, None, None)
        .await
        .unwrap();
    let a = request.await.unwrap();
    assert_eq!(a.status, 409, "{:?}", a.body);
    assert_eq!(
        a.body["message"],
        "This checkout session is no longer open."
    );
    let updates = stripe.updates_of(&id).await;
    assert_eq!(updates.len(), 1, "a closed session is not retried");
    assert_eq!(updates[0]["status"], 400);
}

#[tokio::test]
async fn stripe_errors_are_logged_with_their_request_id() {
    let (stripe, host, _dir) = setup(FAST_RETRIES).await;
    let id = discountable(&stripe).await;
    stripe
        .fault(json!({"method": "POST", "path": session_path(&id), "status": 500, "should_retry": false}))
        .await;
    let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
    assert_eq!(a.status, 502, "{:?}", a.body);
    let updates = stripe.updates_of(&id).await;
    let request_id = updates[0]["request_id"].as_str().unwrap().to_string();
    assert!(request_id.starts_with("req_"), "{request_id}");
    assert!(
        !a.body.to_string().contains(&request_id),
        "the storefront never sees it"
    );
    let logs = host.wait_for_log(&request_id).await;
    let line = logs
        .lines()
        .find(|l| l.contains(&request_id) && l.contains("Stripe refused the request"))
        .unwrap_or_else(|| panic!("{request_id} not in the host's logs:\n{logs}"));
    for field in ["status=500", "type=api_error", "update_session"] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(line.contains(&id), "the log line names the session: {line}");
}
