//! The whole path through the real host: storefront request → Stripe emulator →
//! real compiled policy → guard → Stripe update → storefront answer.

mod common;

use common::{policy_dir, Host, Stripe};
use serde_json::{json, Value};

async fn setup(policies: &[&str]) -> (Stripe, Host, common::tempdir::TempDir) {
    let stripe = Stripe::start().await;
    let dir = policy_dir(policies);
    let host = Host::start(&stripe.url(), dir.path(), "");
    (stripe, host, dir)
}

#[tokio::test]
async fn cart_over_threshold_gets_the_coupon() {
    let (stripe, host, _dir) = setup(&["cart-threshold"]).await;
    let id = stripe.session("usd", &[(6_000, 2)], None).await;
    let a = host
        .post("/apply-cart-discount", json!({"checkout_session_id": id}))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["type"], "object");
    assert_eq!(a.body["value"]["succeeded"], true);
    assert_eq!(a.body["value"]["decision"]["type"], "apply");
    // 10% of 120.00 is 12.00, under the 20.00 cap.
    assert_eq!(a.body["value"]["session"]["amount_discount"], 1_200);
    assert_eq!(a.body["value"]["session"]["amount_total"], 10_800);

    let s = stripe.get_session(&id).await;
    assert_eq!(s["amount_subtotal"], 12_000);
    assert_eq!(s["total_details"]["amount_discount"], 1_200);
    assert_eq!(s["amount_total"], 10_800);
    assert_eq!(s["discounts"].as_array().unwrap().len(), 1);
    assert_eq!(s["discounts"][0]["coupon"]["amount_off"], 1_200);
    assert_eq!(s["discounts"][0]["coupon"]["currency"], "usd");

    let updates = stripe.updates_of(&id).await;
    assert_eq!(updates.len(), 1);
    assert_eq!(
        updates[0]["stripe_version"],
        "2025-03-31.basil; checkout_server_update_beta=v1;"
    );
    assert!(updates[0]["idempotency_key"]
        .as_str()
        .is_some_and(|k| !k.is_empty()));
}

#[tokio::test]
async fn big_cart_is_capped_at_twenty() {
    let (stripe, host, _dir) = setup(&["cart-threshold"]).await;
    let id = stripe.session("eur", &[(50_000, 1)], None).await;
    let a = host
        .post("/apply-cart-discount", json!({"checkout_session_id": id}))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let s = stripe.get_session(&id).await;
    assert_eq!(s["total_details"]["amount_discount"], 2_000);
    assert_eq!(s["amount_total"], 48_000);
    assert_eq!(s["discounts"][0]["coupon"]["currency"], "eur");
}

#[tokio::test]
async fn cart_under_threshold_gets_its_discount_cleared() {
    let (stripe, host, _dir) = setup(&["cart-threshold"]).await;
    let id = stripe.session("usd", &[(12_000, 1)], None).await;
    let a = host
        .post("/apply-cart-discount", json!({"checkout_session_id": id}))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(
        stripe.get_session(&id).await["total_details"]["amount_discount"],
        1_200
    );

    // The same cart, now under the threshold: a second session built the same way
    // but with a discount applied directly, then evaluated by the policy.
    let small = stripe.session("usd", &[(4_000, 2)], None).await;
    stripe
        .client
        .post_form(
            &format!("/v1/checkout/sessions/{small}"),
            &[
                ("discounts[0][coupon_data][percent_off]".into(), "5".into()),
                ("discounts[0][coupon_data][name]".into(), "Old promo".into()),
            ],
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        stripe.get_session(&small).await["total_details"]["amount_discount"],
        400
    );

    let a = host
        .post(
            "/apply-cart-discount",
            json!({"checkout_session_id": small}),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["value"]["decision"]["type"], "clear");
    let s = stripe.get_session(&small).await;
    assert_eq!(s["total_details"]["amount_discount"], 0);
    assert_eq!(s["amount_total"], 8_000);
    assert!(
        s["discounts"].as_array().is_none_or(|d| d.is_empty()),
        "{s}"
    );
}

#[tokio::test]
async fn loyalty_tier_comes_from_customer_metadata() {
    let (stripe, host, _dir) = setup(&["loyalty-tier"]).await;
    let gold = stripe.customer(json!({"tier": "gold"})).await;
    let plain = stripe.customer(json!({})).await;
    let gold_session = stripe.session("usd", &[(10_000, 1)], Some(&gold)).await;
    let plain_session = stripe.session("usd", &[(10_000, 1)], Some(&plain)).await;

    let a = host
        .post(
            "/apply-loyalty-discount",
            json!({"checkout_session_id": gold_session}),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let s = stripe.get_session(&gold_session).await;
    let percent = s["discounts"][0]["coupon"]["percent_off"].as_f64().unwrap();
    let expected = (10_000.0 * percent / 100.0).round() as i64;
    assert!(percent > 0.0);
    assert_eq!(s["total_details"]["amount_discount"], expected);

    let a = host
        .post(
            "/apply-loyalty-discount",
            json!({"checkout_session_id": plain_session}),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["value"]["decision"]["type"], "clear");
    assert_eq!(
        stripe.get_session(&plain_session).await["total_details"]["amount_discount"],
        0
    );
}

#[tokio::test]
async fn bad_requests_get_clear_4xx_and_change_nothing() {
    let (stripe, host, _dir) = setup(&["cart-threshold"]).await;
    let id = stripe.session("usd", &[(20_000, 1)], None).await;
    let route = "/apply-cart-discount";

    let unknown = host
        .post(
            route,
            json!({"checkout_session_id": "cs_test_doesnotexist"}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);
    assert_eq!(unknown.body["type"], "error");
    assert!(unknown.body["message"]
        .as_str()
        .unwrap()
        .contains("checkout session"));

    let malformed = host
        .post_raw(route, b"{\"checkout_session_id\": ".to_vec())
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.body["type"], "error");

    let empty = host.post_raw(route, Vec::new()).await;
    assert_eq!(empty.status, 400);
    assert!(empty.body["message"].as_str().unwrap().contains("empty"));

    let missing_id = host.post(route, json!({"promo": "x"})).await;
    assert_eq!(missing_id.status, 400);
    assert!(missing_id.body["message"]
        .as_str()
        .unwrap()
        .contains("checkout_session_id"));

    let mut big = json!({"checkout_session_id": id}).to_string().into_bytes();
    big.truncate(big.len() - 1);
    big.extend(format!(",\"pad\":\"{}\"}}", "x".repeat(40_000)).into_bytes());
    let too_large = host.post_raw(route, big).await;
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.body["type"], "error");

    let no_route = host
        .post("/no-such-discount", json!({"checkout_session_id": id}))
        .await;
    assert_eq!(no_route.status, 404);
    // A route no policy serves is a 404 whatever its body, leaves no audit record and
    // makes no metrics series of its own (any client can invent paths).
    for (path, body) in [
        ("/random-1", Vec::new()),
        ("/random-2", b"{\"checkout_session_id\": ".to_vec()),
        ("/admin/nope", b"[]".to_vec()),
    ] {
        let answer = host.post_raw(path, body).await;
        assert_eq!(answer.status, 404, "{path}: {:?}", answer.body);
    }
    let metrics = host.get_text("/metrics").await;
    assert!(!metrics.contains("random-"), "{metrics}");
    assert!(
        metrics
            .contains("discount_requests_total{outcome=\"route_not_found\",route=\"unmatched\"} 4"),
        "{metrics}"
    );
    // The paths settings may not claim are the host's own indeed.
    for own in policy_engine::settings::HOST_ROUTES {
        let path = if *own == "/admin" {
            "/admin/policies"
        } else {
            own
        };
        let answer = host
            .http
            .get(format!("{}{path}", host.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
    let get = reqwest::get(format!("{}{route}", host.url)).await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");

    assert!(
        stripe.updates_of(&id).await.is_empty(),
        "no update may reach Stripe"
    );
    assert_eq!(
        stripe.get_session(&id).await["total_details"]["amount_discount"],
        0
    );
    let recorded = host.get_json("/admin/decisions").await;
    let routes: Vec<&str> = recorded
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["route"].as_str())
        .collect();
    assert!(routes.iter().all(|r| *r == route), "{recorded:#}");
}

#[tokio::test]
async fn closed_sessions_get_409() {
    let (stripe, host, _dir) = setup(&["cart-threshold"]).await;
    let id = stripe.session("usd", &[(20_000, 1)], None).await;
    stripe
        .client
        .expire_checkout_session(&id, None, None)
        .await
        .unwrap();
    let a = host
        .post("/apply-cart-discount", json!({"checkout_session_id": id}))
        .await;
    assert_eq!(a.status, 409, "{:?}", a.body);
    assert!(stripe.updates_of(&id).await.is_empty());
}

#[tokio::test]
async fn error_messages_leak_nothing() {
    let (stripe, host, _dir) = setup(&["cart-threshold"]).await;
    let id = stripe.session("usd", &[(20_000, 1)], None).await;
    stripe
        .fault(json!({"method": "GET", "path": format!("/v1/checkout/sessions/{id}"), "count": 10, "status": 400, "error_type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_host"}))
        .await;
    let a = host
        .post("/apply-cart-discount", json!({"checkout_session_id": id}))
        .await;
    assert_eq!(a.status, 502, "{:?}", a.body);
    let text = a.body.to_string();
    assert!(!text.contains("sk_test"), "{text}");
    assert!(!text.contains("stripe"), "{text}");
}

#[tokio::test]
async fn reject_reaches_the_client_and_changes_nothing() {
    let (stripe, host, _dir) = setup(&["promo-code"]).await;
    let id = stripe.session("usd", &[(8_000, 1)], None).await;

    let a = host
        .post(
            "/apply-promo-code",
            json!({"checkout_session_id": id, "promo_code": "NOPE"}),
        )
        .await;
    assert_eq!(a.status, 422, "{:?}", a.body);
    assert_eq!(a.body["type"], "error");
    assert_eq!(
        a.body["message"],
        "Sorry, that promo code isn't valid. Check it and try again."
    );
    assert!(
        stripe.updates_of(&id).await.is_empty(),
        "a reject makes no Stripe update"
    );
    let s = stripe.get_session(&id).await;
    assert_eq!(s["amount_total"], 8_000);
    assert_eq!(s["total_details"]["amount_discount"], 0);

    // The storefront's input reaches the policy: a valid code applies.
    let a = host
        .post(
            "/apply-promo-code",
            json!({"checkout_session_id": id, "promo_code": "spring15"}),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(
        stripe.get_session(&id).await["total_details"]["amount_discount"],
        1_200
    );
}

#[tokio::test]
async fn policies_see_and_cost_only_what_they_expand() {
    let stripe = Stripe::start().await;
    let dir = common::tempdir::TempDir::new();
    let describe = std::fs::read(common::test_policies().join("hostile.wasm")).unwrap();
    for (name, expand) in [
        ("everything", ""),
        ("customer-only", "expand = [\"customer\"]"),
        ("nothing", "expand = []"),
    ] {
        common::install_policy(
            dir.path(),
            name,
            &describe,
            &format!("routes = [\"/{name}\"]\n{expand}\n[config]\nmode = \"describe-session\"\n"),
        );
    }
    let host = Host::start(&stripe.url(), dir.path(), "");
    let customer = stripe.customer(json!({"tier": "gold"})).await;
    let id = stripe
        .session(
            "usd",
            &[(1_000, 1), (2_000, 2), (3_000, 1)],
            Some(&customer),
        )
        .await;

    let mut seen = Vec::new();
    for name in ["everything", "customer-only", "nothing"] {
        let a = host
            .post(&format!("/{name}"), json!({"checkout_session_id": id}))
            .await;
        assert_eq!(a.status, 422, "{:?}", a.body);
        seen.push(a.body["message"].as_str().unwrap().to_string());
    }
    assert_eq!(
        seen,
        [
            format!("line_items=3 customer={customer} customer_id={customer} coupons=0"),
            format!("line_items=0 customer={customer} customer_id={customer} coupons=0"),
            format!("line_items=0 customer=none customer_id={customer} coupons=0"),
        ]
    );

    // Stripe was asked for exactly those expansions: a leaner retrieve, not a filtered one.
    let path = format!("/v1/checkout/sessions/{id}");
    let expands: Vec<Value> = stripe
        .requests()
        .await
        .into_iter()
        .filter(|r| r["method"] == "GET" && r["path"] == path.as_str())
        .map(|r| r["params"]["expand"].clone())
        .collect();
    assert_eq!(
        expands,
        [
            json!(["line_items", "customer", "discounts.coupon"]),
            json!(["customer"]),
            Value::Null,
        ]
    );
}

/// A forward HTTP proxy on loopback: relays each absolute-form request and keeps its
/// method and URL.
struct ForwardProxy {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ForwardProxy {
    async fn start() -> ForwardProxy {
        use axum::body::Body;
        use axum::extract::Request;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let relay = reqwest::Client::builder().no_proxy().build().unwrap();
        let app = axum::Router::new().fallback(move |request: Request| {
            let (log, relay) = (log.clone(), relay.clone());
            async move {
                let (parts, body) = request.into_parts();
                log.lock()
                    .unwrap()
                    .push(format!("{} {}", parts.method, parts.uri));
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                let mut headers = parts.headers.clone();
                for hop in ["host", "connection", "proxy-connection", "content-length"] {
                    headers.remove(hop);
                }
                let answer = relay
                    .request(parts.method, parts.uri.to_string())
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let mut response = axum::http::Response::builder().status(answer.status());
                for (name, value) in answer.headers() {
                    if !matches!(
                        name.as_str(),
                        "connection" | "transfer-encoding" | "content-length"
                    ) {
                        response = response.header(name, value);
                    }
                }
                response
                    .body(Body::from(answer.bytes().await.unwrap()))
                    .unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        ForwardProxy { url, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn stripe_calls_go_through_the_proxy_the_environment_names() {
    let stripe = Stripe::start().await;
    let proxy = ForwardProxy::start().await;
    let dir = policy_dir(&["cart-threshold"]);
    let id = stripe.session("usd", &[(6_000, 2)], None).await;

    // Without a proxy in the environment the host calls Stripe directly.
    let no_proxy: &[(&str, &str)] = &[
        ("HTTP_PROXY", ""),
        ("http_proxy", ""),
        ("HTTPS_PROXY", ""),
        ("https_proxy", ""),
        ("ALL_PROXY", ""),
        ("all_proxy", ""),
        ("NO_PROXY", ""),
        ("no_proxy", ""),
    ];
    let host = Host::start_env(&stripe.url(), dir.path(), "", no_proxy);
    let a = host
        .post("/apply-cart-discount", json!({"checkout_session_id": id}))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());
    drop(host);

    // With HTTP_PROXY set, both calls go through the proxy, and the flow is the same.
    let mut env = no_proxy.to_vec();
    env.push(("HTTP_PROXY", proxy.url.as_str()));
    let host = Host::start_env(&stripe.url(), dir.path(), "", &env);
    host.wait_for_log("Stripe calls go through the proxy").await;
    let a = host
        .post("/apply-cart-discount", json!({"checkout_session_id": id}))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["value"]["session"]["amount_discount"], 1_200);
    let seen = proxy.seen();
    let session = format!("{}/v1/checkout/sessions/{id}", stripe.url());
    assert!(
        seen.iter()
            .any(|s| s.starts_with(&format!("GET {session}"))),
        "{seen:?}"
    );
    assert!(seen.contains(&format!("POST {session}")), "{seen:?}");
    assert_eq!(stripe.updates_of(&id).await.len(), 2);

    // NO_PROXY naming Stripe's host takes it out of the proxy's hands again.
    env.push(("NO_PROXY", "127.0.0.1"));
    let host2 = Host::start_env(&stripe.url(), dir.path(), "", &env);
    let before = proxy.seen().len();
    let a = host2
        .post("/apply-cart-discount", json!({"checkout_session_id": id}))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(proxy.seen().len(), before);
    drop(host);
}
