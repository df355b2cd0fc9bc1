//! Injected faults over real HTTP: error statuses, retry headers, delays, dropped connections.

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn error_fault_with_count_and_no_state_change() {
    let api = start().await;
    let s = api.session(&[(1000, 1)], "").await;
    let id = s["id"].as_str().unwrap();
    let path = format!("/v1/checkout/sessions/{id}");
    let f = api
        .control(
            "/_emulator/faults",
            json!({"method": "POST", "path": path, "count": 2, "status": 429,
                   "error_type": "invalid_request_error", "error_code": "lock_timeout",
                   "message": "This object cannot be accessed right now because another API request or Stripe process is currently accessing it.",
                   "should_retry": true}),
        )
        .await;
    assert_eq!(f.status, 200, "{}", f.body);
    assert!(f.body["id"].as_str().unwrap().starts_with("fault_"));

    // GET does not match a POST fault.
    assert_eq!(api.get(&path).await.status, 200);
    for _ in 0..2 {
        let r = api
            .discount(id, "discounts[0][coupon_data][percent_off]=10")
            .await;
        assert_eq!(r.status, 429);
        assert_eq!(r.code(), Some("lock_timeout"));
        assert_eq!(r.err_type(), Some("invalid_request_error"));
        assert_eq!(r.header("stripe-should-retry"), Some("true"));
        assert!(r.header("request-id").is_some());
    }
    // The faulted requests did not change the session.
    assert_eq!(api.get(&path).await.body["amount_total"], 1000);
    // The third goes through.
    let ok = api
        .discount(id, "discounts[0][coupon_data][percent_off]=10")
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["amount_total"], 900);

    let log = api.get("/_emulator/requests").await.body;
    let entries = log.as_array().unwrap();
    let faulted: Vec<_> = entries.iter().filter(|e| e["faulted"] == true).collect();
    assert_eq!(faulted.len(), 2);
    assert_eq!(faulted[0]["status"], 429);
    assert_eq!(faulted[0]["stripe_version"], BETA);
    assert_eq!(
        faulted[0]["params"]["discounts"][0]["coupon_data"]["percent_off"],
        "10"
    );
    assert!(faulted[0]["request_id"]
        .as_str()
        .unwrap()
        .starts_with("req_"));
}

#[tokio::test]
async fn server_error_prefix_match_and_should_retry_false() {
    let api = start().await;
    api.control(
        "/_emulator/faults",
        json!({"path": "/v1/customers*", "status": 500, "should_retry": false}),
    )
    .await;
    let r = api.post("/v1/customers", "email=x%40y.co").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.err_type(), Some("api_error"));
    assert_eq!(r.header("stripe-should-retry"), Some("false"));
    assert_eq!(api.running.emulator().with(|i| i.store.customers.len()), 0);
    // count defaults to 1.
    assert_eq!(api.post("/v1/customers", "").await.status, 200);
}

#[tokio::test]
async fn delay_only_is_a_slow_success_and_delay_with_error() {
    let api = start().await;
    api.control(
        "/_emulator/faults",
        json!({"path": "/v1/coupons", "delay_ms": 300}),
    )
    .await;
    let t = Instant::now();
    let r = api.post("/v1/coupons", "percent_off=5").await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status, 200, "slow but successful");

    api.control(
        "/_emulator/faults",
        json!({"path": "/v1/coupons", "delay_ms": 200, "status": 503}),
    )
    .await;
    let t = Instant::now();
    let r = api.post("/v1/coupons", "percent_off=5").await;
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(r.status, 503);
    assert_eq!(api.running.emulator().with(|i| i.store.coupons.len()), 1);
}

#[tokio::test]
async fn dropped_connection_is_a_client_error() {
    let api = start().await;
    let s = api.session(&[(1000, 1)], "").await;
    let id = s["id"].as_str().unwrap();
    let path = format!("/v1/checkout/sessions/{id}");
    api.control(
        "/_emulator/faults",
        json!({"path": path, "drop_connection": true}),
    )
    .await;
    let err = api
        .http
        .post(api.url(&path))
        .bearer_auth(KEY)
        .header("Stripe-Version", BETA)
        .form(&[("discounts[0][coupon_data][percent_off]", "10")])
        .send()
        .await;
    let err = err.expect_err("a dropped connection must fail the request");
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    // No state change, and the next request works.
    let after = api.get(&path).await;
    assert_eq!(after.body["amount_total"], 1000);
    let log = api.running.emulator().requests();
    let dropped = log
        .iter()
        .find(|r| r.faulted && r.method == "POST")
        .unwrap();
    assert_eq!(dropped.status, 0);
}

#[tokio::test]
async fn fault_management() {
    let api = start().await;
    let bad = api
        .control("/_emulator/faults", json!({"path": "/v1/x", "count": 0}))
        .await;
    assert_eq!(bad.status, 400);
    let unknown_field = api
        .control("/_emulator/faults", json!({"path": "/v1/x", "sttus": 500}))
        .await;
    assert_eq!(unknown_field.status, 400);
    api.control(
        "/_emulator/faults",
        json!({"path": "/v1/customers", "status": 500}),
    )
    .await;
    api.control(
        "/_emulator/faults",
        json!({"path": "/v1/coupons", "status": 500}),
    )
    .await;
    let list = api.get("/_emulator/faults").await;
    assert_eq!(list.body.as_array().unwrap().len(), 2);
    let cleared = api
        .http
        .delete(api.url("/_emulator/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        cleared.json::<serde_json::Value>().await.unwrap()["deleted"],
        2
    );
    assert_eq!(api.post("/v1/customers", "").await.status, 200);

    // Request log clearing.
    assert!(!api.running.emulator().requests().is_empty());
    api.http
        .delete(api.url("/_emulator/requests"))
        .send()
        .await
        .unwrap();
    assert!(api
        .get("/_emulator/requests")
        .await
        .body
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn dropped_connection_sends_no_bytes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = start().await;
    api.control(
        "/_emulator/faults",
        json!({"path": "/v1/customers", "drop_connection": true}),
    )
    .await;
    let mut sock = tokio::net::TcpStream::connect(api.running.addr())
        .await
        .unwrap();
    let req = format!(
        "POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n"
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut buf))
        .await
        .expect("the emulator closes the socket")
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "no response bytes: {:?}",
        String::from_utf8_lossy(&buf)
    );
}

#[tokio::test]
async fn dropped_connection_under_plain_axum_serve() {
    let em = stripe_emulator::Emulator::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = em.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    em.add_fault(stripe_emulator::faults::FaultSpec {
        path: "/v1/customers".into(),
        drop_connection: Some(true),
        ..Default::default()
    })
    .unwrap();
    let http = reqwest::Client::new();
    let outcome = match http
        .post(format!("http://{addr}/v1/customers"))
        .bearer_auth(KEY)
        .send()
        .await
    {
        Err(e) => Err(e),
        Ok(r) => r.text().await.map(|_| ()),
    };
    assert!(outcome.is_err(), "the client must see a connection error");
    let ok = http
        .post(format!("http://{addr}/v1/customers"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().get("request-id").is_some());
}
