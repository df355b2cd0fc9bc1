//! The client against a purpose-built scripted HTTP server on loopback (real HTTP, real sockets).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response as AxumResponse};
use serde_json::json;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stripe_checkout::{
    idempotency_key, ClientConfig, CouponData, DiscountsUpdate, ErrorType, StripeClient,
    StripeError, STRIPE_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

const KEY: &str = "sk_test_51TopSecretKeyValue0123456789abcdef";
const SESSION: &str = r#"{"id":"cs_test_1","object":"checkout.session","status":"open","currency":"usd","amount_subtotal":5000,"amount_total":4500,"discounts":[]}"#;

/// One scripted answer.
#[derive(Clone)]
struct Step {
    status: u16,
    body: String,
    headers: Vec<(&'static str, String)>,
    delay: Duration,
}

impl Step {
    fn ok() -> Self {
        Step {
            status: 200,
            body: SESSION.to_string(),
            headers: vec![],
            delay: Duration::ZERO,
        }
    }
    fn error(status: u16, kind: &str, code: Option<&str>) -> Self {
        let mut err = json!({"type": kind, "message": format!("scripted {status}")});
        if let Some(c) = code {
            err["code"] = json!(c);
        }
        Step {
            status,
            body: json!({ "error": err }).to_string(),
            headers: vec![],
            delay: Duration::ZERO,
        }
    }
    fn raw(status: u16, body: &str) -> Self {
        Step {
            status,
            body: body.to_string(),
            headers: vec![],
            delay: Duration::ZERO,
        }
    }
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
    fn delay_ms(mut self, ms: u64) -> Self {
        self.delay = Duration::from_millis(ms);
        self
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    body: String,
    idempotency_key: Option<String>,
    stripe_version: Option<String>,
    authorization: Option<String>,
    content_type: Option<String>,
    at: std::time::Instant,
}

#[derive(Default)]
struct ServerState {
    script: VecDeque<Step>,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<ServerState>>;

async fn handler(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> AxumResponse {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (step, n) = {
        let mut s = state.lock().unwrap();
        s.seen.push(Seen {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            body: String::from_utf8_lossy(&body).into_owned(),
            idempotency_key: h("idempotency-key"),
            stripe_version: h("stripe-version"),
            authorization: h("authorization"),
            content_type: h("content-type"),
            at: std::time::Instant::now(),
        });
        (s.script.pop_front().unwrap_or_else(Step::ok), s.seen.len())
    };
    if !step.delay.is_zero() {
        tokio::time::sleep(step.delay).await;
    }
    let mut response = (
        StatusCode::from_u16(step.status).unwrap(),
        [("content-type", "application/json")],
        step.body,
    )
        .into_response();
    response
        .headers_mut()
        .insert("request-id", format!("req_{n}").parse().unwrap());
    for (name, value) in step.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// A running scripted server.
struct Server {
    addr: SocketAddr,
    state: Shared,
}

impl Server {
    async fn start(script: Vec<Step>) -> Server {
        let state: Shared = Arc::new(Mutex::new(ServerState {
            script: script.into(),
            seen: vec![],
        }));
        let app = axum::Router::new()
            .fallback(handler)
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { addr, state }
    }
    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
    fn config(&self) -> ClientConfig {
        fast_config(&format!("http://{}", self.addr))
    }
    fn client(&self) -> StripeClient {
        StripeClient::new(self.config()).unwrap()
    }
}

fn fast_config(base: &str) -> ClientConfig {
    ClientConfig {
        api_base: base.to_string(),
        initial_network_retry_delay: Duration::from_millis(2),
        max_network_retry_delay: Duration::from_millis(10),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::new(KEY)
    }
}

fn ten_percent() -> DiscountsUpdate {
    DiscountsUpdate::CouponData(CouponData {
        name: Some("Loyalty 10%".into()),
        percent_off: Some(10.0),
        metadata: [("policy".to_string(), "gold".to_string())].into(),
        ..Default::default()
    })
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(KEY), "secret key leaked: {text}");
    assert!(
        !text.contains("TopSecretKeyValue"),
        "secret key leaked: {text}"
    );
}

#[tokio::test]
async fn update_sends_stripe_form_and_headers() {
    let server = Server::start(vec![]).await;
    let client = server.client();
    let key = idempotency_key("cs_test_1", &ten_percent(), "storefront-req-1");
    let r = client
        .update_checkout_session_discounts(
            "cs_test_1",
            &ten_percent(),
            &key,
            &["line_items", "discounts.coupon"],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.body.id, "cs_test_1");
    assert_eq!(r.body.amount_total, Some(4500));
    assert_eq!(r.request_id.as_deref(), Some("req_1"));
    assert_eq!(r.attempts, 1);
    assert_eq!(r.status, 200);
    assert_eq!(r.idempotency_key.as_deref(), Some(key.as_str()));

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, "POST");
    assert_eq!(s.path, "/v1/checkout/sessions/cs_test_1");
    assert_eq!(s.query, None);
    assert_eq!(
        s.body,
        "discounts[0][coupon_data][name]=Loyalty+10%25\
         &discounts[0][coupon_data][percent_off]=10\
         &discounts[0][coupon_data][metadata][policy]=gold\
         &expand[]=line_items&expand[]=discounts.coupon"
    );
    assert_eq!(
        s.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(s.stripe_version.as_deref(), Some(STRIPE_VERSION));
    assert_eq!(
        s.stripe_version.as_deref(),
        Some("2025-03-31.basil; checkout_server_update_beta=v1;")
    );
    assert_eq!(
        s.authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(s.idempotency_key.as_deref(), Some(key.as_str()));
}

#[tokio::test]
async fn clear_and_coupon_bodies() {
    let server = Server::start(vec![]).await;
    let client = server.client();
    client
        .update_checkout_session_discounts("cs_test_1", &DiscountsUpdate::Clear, "k1", &[], None)
        .await
        .unwrap();
    client
        .update_checkout_session_discounts(
            "cs_test_1",
            &DiscountsUpdate::Coupon("SPRING".into()),
            "k2",
            &[],
            None,
        )
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].body, "discounts=");
    assert_eq!(seen[1].body, "discounts[0][coupon]=SPRING");
}

#[tokio::test]
async fn retrieve_uses_get_with_expand_and_no_idempotency_key() {
    let server = Server::start(vec![]).await;
    let client = server.client();
    let r = client
        .retrieve_checkout_session("cs_test_1", &["line_items", "customer"], None)
        .await
        .unwrap();
    assert_eq!(r.body.status.as_deref(), Some("open"));
    assert_eq!(r.idempotency_key, None);
    let s = &server.seen()[0];
    assert_eq!(s.method, "GET");
    assert_eq!(s.path, "/v1/checkout/sessions/cs_test_1");
    assert_eq!(
        s.query.as_deref(),
        Some("expand[]=line_items&expand[]=customer")
    );
    assert_eq!(s.idempotency_key, None);
    assert_eq!(s.body, "");
    assert_eq!(s.stripe_version.as_deref(), Some(STRIPE_VERSION));
}

#[tokio::test]
async fn invalid_ids_never_reach_the_server() {
    let server = Server::start(vec![]).await;
    let client = server.client();
    for id in ["", "cs/../x", "cs?x=1", &"c".repeat(67), "cs test"] {
        let e = client
            .retrieve_checkout_session(id, &[], None)
            .await
            .unwrap_err();
        assert!(matches!(e, StripeError::InvalidRequest(_)), "{id}: {e}");
        let e = client
            .update_checkout_session_discounts(id, &DiscountsUpdate::Clear, "k", &[], None)
            .await
            .unwrap_err();
        assert!(matches!(e, StripeError::InvalidRequest(_)), "{id}: {e}");
    }
    // Invalid discounts, idempotency keys and paths are rejected client-side too.
    let bad = DiscountsUpdate::CouponData(CouponData {
        percent_off: Some(150.0),
        ..Default::default()
    });
    let e = client
        .update_checkout_session_discounts("cs_test_1", &bad, "k", &[], None)
        .await
        .unwrap_err();
    assert!(matches!(e, StripeError::InvalidRequest(_)));
    let e = client
        .update_checkout_session_discounts(
            "cs_test_1",
            &DiscountsUpdate::Clear,
            &"k".repeat(256),
            &[],
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StripeError::InvalidRequest(_)));
    let e = client.get("/v1/../admin", &[], None).await.unwrap_err();
    assert!(matches!(e, StripeError::InvalidRequest(_)));
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn retries_5xx_with_the_same_idempotency_key() {
    let server = Server::start(vec![
        Step::error(500, "api_error", None),
        Step::error(503, "api_error", None),
    ])
    .await;
    let r = server
        .client()
        .update_checkout_session_discounts("cs_test_1", &ten_percent(), "idem-1", &[], None)
        .await
        .unwrap();
    assert_eq!(r.attempts, 3);
    assert_eq!(r.request_id.as_deref(), Some("req_3"));
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.idempotency_key.as_deref(), Some("idem-1"));
        assert_eq!(s.body, seen[0].body);
    }
}

#[tokio::test]
async fn retries_409_and_429_lock_timeout() {
    let server = Server::start(vec![
        Step::error(409, "invalid_request_error", None),
        Step::error(429, "invalid_request_error", Some("lock_timeout")),
    ])
    .await;
    let r = server
        .client()
        .update_checkout_session_discounts("cs_test_1", &ten_percent(), "idem-2", &[], None)
        .await
        .unwrap();
    assert_eq!(r.attempts, 3);
    assert!(server
        .seen()
        .iter()
        .all(|s| s.idempotency_key.as_deref() == Some("idem-2")));
}

#[tokio::test]
async fn does_not_retry_client_errors_or_rate_limits() {
    for (status, kind, code) in [
        (
            400,
            "invalid_request_error",
            Some("parameter_invalid_integer"),
        ),
        (402, "card_error", Some("card_declined")),
        (429, "invalid_request_error", Some("rate_limit")),
        (429, "invalid_request_error", None),
        (404, "invalid_request_error", Some("resource_missing")),
        (400, "idempotency_error", None),
    ] {
        let mut step = Step::error(status, kind, code);
        step.body = json!({"error": {"type": kind, "code": code, "param": "discounts",
                          "message": "nope", "doc_url": "https://stripe.com/docs"}})
        .to_string();
        let server = Server::start(vec![step]).await;
        let e = server
            .client()
            .update_checkout_session_discounts("cs_test_1", &ten_percent(), "k", &[], None)
            .await
            .unwrap_err();
        assert_eq!(server.seen().len(), 1, "{status} {code:?} was retried");
        assert_eq!(
            e,
            StripeError::Api {
                status,
                kind: ErrorType::parse(kind),
                code: code.map(str::to_string),
                param: Some("discounts".into()),
                message: "nope".into(),
                request_id: Some("req_1".into()),
                should_retry: None,
            }
        );
        assert_eq!(e.status(), Some(status));
        assert_eq!(e.request_id(), Some("req_1"));
        assert_eq!(e.code(), code);
        assert!(!e.is_retryable());
    }
}

#[tokio::test]
async fn stripe_should_retry_header_overrides() {
    // `false` stops a 500 from being retried.
    let server = Server::start(vec![
        Step::error(500, "api_error", None).header("stripe-should-retry", "false")
    ])
    .await;
    let e = server
        .client()
        .update_checkout_session_discounts("cs_test_1", &ten_percent(), "k", &[], None)
        .await
        .unwrap_err();
    assert_eq!(server.seen().len(), 1);
    assert_eq!(e.status(), Some(500));
    assert!(matches!(
        e,
        StripeError::Api {
            should_retry: Some(false),
            ..
        }
    ));

    // `true` forces a retry of a 400 and of a 429 without lock_timeout.
    let server = Server::start(vec![
        Step::error(400, "invalid_request_error", None).header("stripe-should-retry", "true"),
        Step::error(429, "invalid_request_error", Some("rate_limit"))
            .header("stripe-should-retry", "true"),
    ])
    .await;
    let r = server
        .client()
        .update_checkout_session_discounts("cs_test_1", &ten_percent(), "k", &[], None)
        .await
        .unwrap();
    assert_eq!(r.attempts, 3);
    assert_eq!(server.seen().len(), 3);

    // `false` also stops a 409.
    let server = Server::start(vec![
        Step::error(409, "invalid_request_error", None).header("stripe-should-retry", "false")
    ])
    .await;
    assert!(server
        .client()
        .retrieve_checkout_session("cs_test_1", &[], None)
        .await
        .is_err());
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn max_retries_is_honoured() {
    let always_500 = || {
        (0..10)
            .map(|_| Step::error(500, "api_error", None))
            .collect()
    };
    for max_retries in [0u32, 1, 2, 4] {
        let server = Server::start(always_500()).await;
        let client = StripeClient::new(ClientConfig {
            max_retries,
            ..server.config()
        })
        .unwrap();
        let e = client
            .update_checkout_session_discounts("cs_test_1", &ten_percent(), "k", &[], None)
            .await
            .unwrap_err();
        let n = max_retries as usize + 1;
        assert_eq!(server.seen().len(), n);
        // The error is the last attempt's, with its request id.
        assert_eq!(e.request_id(), Some(format!("req_{n}").as_str()));
        assert_eq!(e.status(), Some(500));
    }
}

#[tokio::test]
async fn backoff_is_exponential_jittered_and_bounded() {
    let server = Server::start(
        (0..4)
            .map(|_| Step::error(503, "api_error", None))
            .collect(),
    )
    .await;
    let client = StripeClient::new(ClientConfig {
        max_retries: 3,
        initial_network_retry_delay: Duration::from_millis(40),
        max_network_retry_delay: Duration::from_millis(80),
        ..server.config()
    })
    .unwrap();
    let start = Instant::now();
    let e = client
        .retrieve_checkout_session("cs_test_1", &[], None)
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(e.status(), Some(503));
    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    // Retry 1: min(40, 80) × [0.5, 1) floored at 40 → 40 ms.
    // Retry 2: min(80, 80) × [0.5, 1) → [40, 80) ms. Retry 3: min(160, 80) × … → [40, 80) ms.
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (i, gap) in gaps.iter().enumerate() {
        assert!(
            *gap >= Duration::from_millis(39),
            "gap {i} too short: {gap:?}"
        );
        assert!(
            *gap < Duration::from_millis(80 + 500),
            "gap {i} too long: {gap:?}"
        );
    }
    assert!(elapsed >= Duration::from_millis(119), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn deadline_cuts_a_slow_server() {
    let server = Server::start(vec![Step::ok().delay_ms(5_000)]).await;
    let start = Instant::now();
    let e = server
        .client()
        .retrieve_checkout_session(
            "cs_test_1",
            &[],
            Some(Instant::now() + Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert_eq!(e, StripeError::DeadlineExceeded);
    assert!(
        start.elapsed() < Duration::from_millis(1_000),
        "{:?}",
        start.elapsed()
    );
    assert!(start.elapsed() >= Duration::from_millis(190));
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn deadline_forbids_a_backoff_sleep_past_it() {
    let server = Server::start(vec![Step::error(500, "api_error", None)]).await;
    let client = StripeClient::new(ClientConfig {
        initial_network_retry_delay: Duration::from_secs(2),
        max_network_retry_delay: Duration::from_secs(5),
        ..server.config()
    })
    .unwrap();
    let start = Instant::now();
    let e = client
        .update_checkout_session_discounts(
            "cs_test_1",
            &ten_percent(),
            "k",
            &[],
            Some(Instant::now() + Duration::from_millis(500)),
        )
        .await
        .unwrap_err();
    assert_eq!(e, StripeError::DeadlineExceeded);
    // Gave up at once instead of sleeping 2 s.
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.seen().len(), 1);

    // A deadline already in the past sends nothing.
    let e = client
        .retrieve_checkout_session("cs_test_1", &[], Some(Instant::now()))
        .await
        .unwrap_err();
    assert_eq!(e, StripeError::DeadlineExceeded);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn deadline_bounds_attempts_and_sleeps_together() {
    // Each attempt is slow-ish and fails; the deadline lands somewhere in the middle.
    let server = Server::start(
        (0..10)
            .map(|_| Step::error(500, "api_error", None).delay_ms(120))
            .collect(),
    )
    .await;
    let client = StripeClient::new(ClientConfig {
        max_retries: 10,
        initial_network_retry_delay: Duration::from_millis(20),
        max_network_retry_delay: Duration::from_millis(40),
        ..server.config()
    })
    .unwrap();
    let start = Instant::now();
    let e = client
        .retrieve_checkout_session(
            "cs_test_1",
            &[],
            Some(Instant::now() + Duration::from_millis(400)),
        )
        .await
        .unwrap_err();
    assert_eq!(e, StripeError::DeadlineExceeded);
    let elapsed = start.elapsed();
    // The deadline (400 ms) holds, give or take timer and scheduling slack.
    assert!(elapsed <= Duration::from_millis(800), "{elapsed:?}");
    assert!((1..=4).contains(&server.seen().len()));
}

#[tokio::test]
async fn per_attempt_timeout_is_retried_with_the_same_key() {
    let server = Server::start(vec![Step::ok().delay_ms(2_000), Step::ok()]).await;
    let client = StripeClient::new(ClientConfig {
        request_timeout: Duration::from_millis(150),
        ..server.config()
    })
    .unwrap();
    let r = client
        .update_checkout_session_discounts("cs_test_1", &ten_percent(), "idem-t", &[], None)
        .await
        .unwrap();
    assert_eq!(r.attempts, 2);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].idempotency_key, seen[1].idempotency_key);

    // Every attempt times out: the error is Timeout after 1 + max_retries attempts.
    let server = Server::start((0..5).map(|_| Step::ok().delay_ms(2_000)).collect()).await;
    let client = StripeClient::new(ClientConfig {
        request_timeout: Duration::from_millis(100),
        max_retries: 1,
        ..server.config()
    })
    .unwrap();
    let e = client
        .retrieve_checkout_session("cs_test_1", &[], None)
        .await
        .unwrap_err();
    assert_eq!(e, StripeError::Timeout);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn garbage_bodies_do_not_panic() {
    // A proxy's HTML 502: retried (5xx), then reported with status and request id.
    let html = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
    let server = Server::start((0..3).map(|_| Step::raw(502, html)).collect()).await;
    let e = server
        .client()
        .retrieve_checkout_session("cs_test_1", &[], None)
        .await
        .unwrap_err();
    assert_eq!(server.seen().len(), 3);
    match &e {
        StripeError::InvalidResponse {
            status,
            request_id,
            detail,
            ..
        } => {
            assert_eq!(*status, 502);
            assert_eq!(request_id.as_deref(), Some("req_3"));
            assert!(detail.contains("not JSON"), "{detail}");
        }
        other => panic!("unexpected {other:?}"),
    }

    // A 200 with a body that is not a session: not retried, InvalidResponse.
    for body in ["not json at all", "{\"id\": 5}", "", "[1,2,3]"] {
        let server = Server::start(vec![Step::raw(200, body)]).await;
        let e = server
            .client()
            .retrieve_checkout_session("cs_test_1", &[], None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, StripeError::InvalidResponse { status: 200, .. }),
            "{e:?}"
        );
        assert_eq!(e.request_id(), Some("req_1"));
        assert_eq!(server.seen().len(), 1);
    }

    // A 400 with an empty body is not retried and does not panic.
    let server = Server::start(vec![Step::raw(400, "")]).await;
    let e = server
        .client()
        .retrieve_checkout_session("cs_test_1", &[], None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert_eq!(server.seen().len(), 1);
}

/// A raw TCP server that closes the first `drops` connections after reading the request,
/// then answers with a session.
async fn dropping_server(drops: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = Vec::new();
                // Read headers and the body announced by Content-Length.
                loop {
                    let Ok(k) = socket.read(&mut buf).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..k]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                let l = l.to_ascii_lowercase();
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                if n < drops {
                    drop(socket);
                    return;
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nrequest-id: req_raw\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    SESSION.len(),
                    SESSION
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr, count)
}

#[tokio::test]
async fn dropped_connections_are_retried() {
    let (addr, count) = dropping_server(2).await;
    let client = StripeClient::new(fast_config(&format!("http://{addr}"))).unwrap();
    let r = client
        .update_checkout_session_discounts("cs_test_1", &ten_percent(), "k-drop", &[], None)
        .await
        .unwrap();
    assert_eq!(r.attempts, 3);
    assert_eq!(r.request_id.as_deref(), Some("req_raw"));
    assert_eq!(count.load(Ordering::SeqCst), 3);

    // More drops than retries: a Connection error, without the secret key.
    let (addr, count) = dropping_server(10).await;
    let client = StripeClient::new(fast_config(&format!("http://{addr}"))).unwrap();
    let e = client
        .retrieve_checkout_session("cs_test_1", &[], None)
        .await
        .unwrap_err();
    assert!(matches!(e, StripeError::Connection(_)), "{e:?}");
    assert!(e.is_retryable());
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert_no_secret(&e.to_string());
    assert_no_secret(&format!("{e:?}"));
}

#[tokio::test]
async fn connection_refused_is_a_connection_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = StripeClient::new(fast_config(&format!("http://{addr}"))).unwrap();
    let e = client
        .create_coupon(&json!({"percent_off": 10, "duration": "once"}), None, None)
        .await
        .unwrap_err();
    assert!(matches!(e, StripeError::Connection(_)), "{e:?}");
    assert_no_secret(&e.to_string());
}

#[tokio::test]
async fn secret_key_never_printed() {
    let body = json!({"error": {"type": "invalid_request_error",
        "message": format!("Invalid API Key provided: {KEY}")}})
    .to_string();
    let server = Server::start(vec![
        Step::raw(401, &body),
        Step::raw(500, &format!("<html>{KEY}</html>")),
    ])
    .await;
    let client = server.client();
    assert_no_secret(&format!("{client:?}"));
    assert_no_secret(&format!("{:?}", client.config()));
    let e = client
        .retrieve_checkout_session("cs_test_1", &[], None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert_no_secret(&e.to_string());
    assert_no_secret(&format!("{e:?}"));
    let client = StripeClient::new(ClientConfig {
        max_retries: 0,
        ..server.config()
    })
    .unwrap();
    let e = client
        .retrieve_checkout_session("cs_test_1", &[], None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(500));
    assert_no_secret(&e.to_string());
    assert_no_secret(&format!("{e:?}"));
}

#[tokio::test]
async fn generic_posts_get_one_random_key_per_logical_request() {
    let server = Server::start(vec![
        Step::error(500, "api_error", None),
        Step::raw(200, r#"{"id":"cus_1","object":"customer"}"#),
        Step::raw(200, r#"{"id":"cus_2","object":"customer"}"#),
    ])
    .await;
    let client = server.client();
    let params = vec![
        ("email".to_string(), "a@example.com".to_string()),
        ("metadata[tier]".to_string(), "gold".to_string()),
    ];
    let r1 = client
        .post_form("/v1/customers", &params, None, None)
        .await
        .unwrap();
    assert_eq!(r1.attempts, 2);
    assert_eq!(r1.body["id"], "cus_1");
    let r2 = client
        .post_form("/v1/customers", &params, None, None)
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].body, "email=a%40example.com&metadata[tier]=gold");
    let k0 = seen[0].idempotency_key.clone().unwrap();
    assert_eq!(k0.len(), 36);
    assert_eq!(seen[1].idempotency_key.as_deref(), Some(k0.as_str()));
    assert_eq!(r1.idempotency_key.as_deref(), Some(k0.as_str()));
    assert_ne!(seen[2].idempotency_key.as_deref(), Some(k0.as_str()));
    assert_eq!(r2.idempotency_key, seen[2].idempotency_key);

    // A caller key is used as given.
    client
        .post_form("/v1/customers", &params, Some("my-key"), None)
        .await
        .unwrap();
    assert_eq!(server.seen()[3].idempotency_key.as_deref(), Some("my-key"));

    // Generic GET with a query.
    let r = client
        .get(
            "/v1/checkout/sessions",
            &[("limit".to_string(), "3".to_string())],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.attempts, 1);
    let s = &server.seen()[4];
    assert_eq!(s.method, "GET");
    assert_eq!(s.query.as_deref(), Some("limit=3"));
    assert_eq!(s.idempotency_key, None);
}

#[tokio::test]
async fn typed_create_expire_and_list() {
    let server = Server::start(vec![
        Step::raw(200, r#"{"id":"cus_9","email":"x@example.com","metadata":{"tier":"gold"}}"#),
        Step::raw(200, r#"{"id":"Z4OV52SU","percent_off":12.5,"duration":"once"}"#),
        Step::ok(),
        Step::ok(),
        Step::raw(
            200,
            r#"{"object":"list","data":[{"id":"li_1","amount_subtotal":5000,"amount_total":5000,"currency":"usd","quantity":2}],"has_more":false,"url":"/v1/checkout/sessions/cs_test_1/line_items"}"#,
        ),
    ])
    .await;
    let client = server.client();
    let c = client
        .create_customer(
            &json!({"email": "x@example.com", "metadata": {"tier": "gold"}}),
            Some("seed-cus"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(c.body.metadata["tier"], "gold");
    let coupon = client
        .create_coupon(
            &json!({"percent_off": 12.5, "duration": "once"}),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(coupon.body.percent_off, Some(12.5));
    let s = client
        .create_checkout_session(
            &json!({
                "mode": "payment",
                "ui_mode": "custom",
                "permissions": {"update_discounts": "server_only"},
                "line_items": [{"price": "price_1", "quantity": 2}],
            }),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(s.body.id, "cs_test_1");
    client
        .expire_checkout_session("cs_test_1", None, None)
        .await
        .unwrap();
    let items = client
        .list_line_items("cs_test_1", None, None)
        .await
        .unwrap();
    assert_eq!(items.body.data.len(), 1);
    assert_eq!(items.body.data[0].quantity, Some(2));

    let seen = server.seen();
    assert_eq!(seen[0].path, "/v1/customers");
    assert_eq!(seen[0].body, "email=x%40example.com&metadata[tier]=gold");
    assert_eq!(seen[0].idempotency_key.as_deref(), Some("seed-cus"));
    assert_eq!(seen[1].path, "/v1/coupons");
    assert_eq!(seen[1].body, "duration=once&percent_off=12.5");
    assert_eq!(seen[2].path, "/v1/checkout/sessions");
    let mut parts: Vec<&str> = seen[2].body.split('&').collect();
    parts.sort();
    assert_eq!(
        parts,
        [
            "line_items[0][price]=price_1",
            "line_items[0][quantity]=2",
            "mode=payment",
            "permissions[update_discounts]=server_only",
            "ui_mode=custom"
        ]
    );
    assert_eq!(seen[3].method, "POST");
    assert_eq!(seen[3].path, "/v1/checkout/sessions/cs_test_1/expire");
    assert!(seen[3].idempotency_key.is_some());
    assert_eq!(seen[4].method, "GET");
    assert_eq!(seen[4].path, "/v1/checkout/sessions/cs_test_1/line_items");
    assert_eq!(seen[4].query.as_deref(), Some("limit=100"));
}

#[tokio::test]
async fn concurrent_clones_share_one_client() {
    let server = Server::start(vec![]).await;
    let client = server.client();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                c.update_checkout_session_discounts(
                    "cs_test_1",
                    &DiscountsUpdate::Clear,
                    &format!("k{i}"),
                    &[],
                    None,
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().attempts, 1);
    }
    assert_eq!(server.seen().len(), 16);
}

#[tokio::test]
async fn extreme_config_values_do_not_panic() {
    let server = Server::start(vec![Step::error(500, "api_error", None)]).await;
    let client = StripeClient::new(ClientConfig {
        request_timeout: Duration::MAX,
        initial_network_retry_delay: Duration::MAX,
        max_network_retry_delay: Duration::MAX,
        max_retries: u32::MAX,
        ..server.config()
    })
    .unwrap();
    // The retry sleep would be unrepresentably long: the deadline stops it at once.
    let e = client
        .retrieve_checkout_session(
            "cs_test_1",
            &[],
            Some(Instant::now() + Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
    assert_eq!(e, StripeError::DeadlineExceeded);
    let r = client
        .retrieve_checkout_session("cs_test_1", &[], None)
        .await
        .unwrap();
    assert_eq!(r.attempts, 1);
}

/// A TLS server on loopback with a self-signed certificate for `localhost`; it records
/// whether each handshake completed.
async fn self_signed_tls_server() -> (SocketAddr, Arc<Mutex<Vec<bool>>>) {
    use tokio_rustls::rustls;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let log = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let done = acceptor.accept(tcp).await.is_ok();
            log.lock().unwrap().push(done);
        }
    });
    (addr, handshakes)
}

#[tokio::test]
async fn https_bases_speak_tls_and_refuse_an_untrusted_certificate() {
    let (addr, handshakes) = self_signed_tls_server().await;
    let client = StripeClient::new(ClientConfig {
        max_retries: 0,
        ..fast_config(&format!("https://localhost:{}", addr.port()))
    })
    .unwrap();
    let e = client
        .retrieve_checkout_session("cs_test_1", &[], None)
        .await
        .unwrap_err();
    match &e {
        StripeError::Connection(message) => {
            assert!(message.contains("certificate"), "{message}");
            assert!(!message.contains(KEY));
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
    // The client got as far as the server's certificate, and sent nothing after it.
    for _ in 0..100 {
        if !handshakes.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*handshakes.lock().unwrap(), vec![false]);

    // A plain-HTTP server behind an https base: the TLS handshake fails, nothing is sent.
    let server = Server::start(vec![Step::ok()]).await;
    let client = StripeClient::new(ClientConfig {
        max_retries: 0,
        ..fast_config(&format!("https://{}", server.addr))
    })
    .unwrap();
    let e = client
        .retrieve_checkout_session("cs_test_1", &[], None)
        .await
        .unwrap_err();
    assert!(matches!(e, StripeError::Connection(_)), "{e:?}");
    assert!(server.seen().is_empty());
}
