//! Protocol-level behaviour over real HTTP: auth, errors, form parsing, request ids.

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn auth_missing_invalid_live_and_basic() {
    let api = start().await;
    let r = api
        .http
        .get(api.url("/v1/customers/cus_x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("request-id").is_some());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("You did not provide an API key"));

    let r = api
        .http
        .get(api.url("/v1/customers/cus_x"))
        .bearer_auth("nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Invalid API Key provided"));

    let r = api
        .http
        .post(api.url("/v1/customers"))
        .bearer_auth("sk_live_0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "live keys are refused");

    // curl -u sk_test_...: sends HTTP basic with the key as user name.
    let r = api
        .http
        .post(api.url("/v1/customers"))
        .basic_auth(KEY, Some(""))
        .form(&[("email", "basic@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["email"], "basic@example.com");
}

#[tokio::test]
async fn customers_create_retrieve_and_missing() {
    let api = start().await;
    let r = api
        .post(
            "/v1/customers",
            "email=ada%40example.com&name=Ada+Lovelace&metadata[tier]=gold&metadata[since]=2020",
        )
        .await;
    assert_eq!(r.status, 200);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("cus_"));
    assert_eq!(r.body["object"], "customer");
    assert_eq!(r.body["livemode"], false);

    let g = api.get(&format!("/v1/customers/{id}")).await;
    assert_eq!(g.body["name"], "Ada Lovelace");
    assert_eq!(g.body["metadata"], json!({"tier":"gold","since":"2020"}));

    let u = api
        .post(
            &format!("/v1/customers/{id}"),
            "metadata[tier]=&metadata[x]=1",
        )
        .await;
    assert_eq!(u.body["metadata"], json!({"since":"2020","x":"1"}));

    let m = api.get("/v1/customers/cus_nope").await;
    assert_eq!(m.status, 404);
    assert_eq!(m.code(), Some("resource_missing"));
    assert_eq!(m.param(), Some("id"));
    assert_eq!(m.message(), "No such customer: 'cus_nope'");

    let bad = api.post("/v1/customers", "email=not-an-email").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.param(), Some("email"));
}

#[tokio::test]
async fn coupons_create_validate_retrieve() {
    let api = start().await;
    let r = api
        .post(
            "/v1/coupons",
            "id=SUMMER10&percent_off=10&duration=once&name=Summer",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["object"], "coupon");
    assert_eq!(r.body["percent_off"], 10.0);
    assert_eq!(r.body["valid"], true);
    assert_eq!(api.get("/v1/coupons/SUMMER10").await.body["name"], "Summer");

    let dup = api.post("/v1/coupons", "id=SUMMER10&percent_off=5").await;
    assert_eq!(dup.code(), Some("resource_already_exists"));

    let auto = api.post("/v1/coupons", "amount_off=500&currency=USD").await;
    assert_eq!(auto.status, 200);
    assert_eq!(auto.body["currency"], "usd");
    assert_eq!(auto.body["duration"], "once");
    assert_eq!(auto.body["id"].as_str().unwrap().len(), 8);

    let cases = [
        ("amount_off=500", "currency"),
        ("amount_off=500&currency=usd&percent_off=5", "amount_off"),
        ("percent_off=0", "percent_off"),
        ("percent_off=100.5", "percent_off"),
        ("amount_off=-3&currency=usd", "amount_off"),
        ("percent_off=5&duration=weekly", "duration"),
        ("percent_off=5&duration=repeating", "duration_in_months"),
        (
            "percent_off=5&name=01234567890123456789012345678901234567890",
            "name",
        ),
        ("percent_off=abc", "percent_off"),
    ];
    for (form, param) in cases {
        let r = api.post("/v1/coupons", form).await;
        assert_eq!(r.status, 400, "{form}: {}", r.body);
        assert_eq!(r.param(), Some(param), "{form}: {}", r.body);
        assert_eq!(r.err_type(), Some("invalid_request_error"));
    }
    let m = api.get("/v1/coupons/NOPE").await;
    assert_eq!((m.status, m.message()), (404, "No such coupon: 'NOPE'"));
}

#[tokio::test]
async fn unknown_route_and_request_id_everywhere() {
    let api = start().await;
    let r = api.get("/v1/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.err_type(), Some("invalid_request_error"));
    assert!(r
        .message()
        .starts_with("Unrecognized request URL (GET: /v1/nope)"));
    let r2 = api.get("/elsewhere").await;
    assert_eq!(r2.status, 404);
    // Wrong method on a known path.
    let r3 = api
        .http
        .delete(api.url("/v1/checkout/sessions/cs_x"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r3.status(), 404);

    let mut ids = std::collections::HashSet::new();
    for resp in [
        r,
        r2,
        api.post("/v1/customers", "").await,
        api.post("/v1/coupons", "bogus=1").await,
        api.control("/_emulator/faults", json!({"path": ""})).await,
        api.get("/_emulator/requests").await,
    ] {
        let id = resp
            .header("request-id")
            .expect("Request-Id on every response");
        assert!(id.starts_with("req_"), "{id}");
        ids.insert(id.to_string());
    }
    assert_eq!(ids.len(), 6, "request ids are unique");
}

#[tokio::test]
async fn form_nesting_and_malformed_params() {
    let api = start().await;
    let c = api
        .post("/v1/customers", "email=n%40example.com&metadata[a%5Bb]=x")
        .await;
    // `metadata[a[b]` is a malformed name: 400 with the param named.
    assert_eq!(c.status, 400);
    assert_eq!(c.param(), Some("metadata[a[b]"));

    let conflict = api.post("/v1/customers", "metadata=x&metadata[a]=1").await;
    assert_eq!(conflict.status, 400);
    assert!(conflict.param().is_some());

    let not_hash = api.post("/v1/customers", "metadata=notahash").await;
    assert_eq!(not_hash.status, 400);
    assert_eq!(not_hash.param(), Some("metadata"));
    assert_eq!(not_hash.message(), "Invalid hash");

    let unknown = api.post("/v1/customers", "emial=x%40y.co").await;
    assert_eq!(unknown.code(), Some("parameter_unknown"));
    assert_eq!(unknown.message(), "Received unknown parameter: emial");

    // Deep nesting with numeric indices, out of order.
    let s = api
        .post(
            "/v1/checkout/sessions",
            "mode=payment&success_url=https%3A%2F%2Fx.co\
             &line_items[1][price_data][currency]=usd&line_items[1][price_data][unit_amount]=300&line_items[1][price_data][product_data][name]=Second&line_items[1][quantity]=1\
             &line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=200&line_items[0][price_data][product_data][name]=First&line_items[0][quantity]=2\
             &expand[0]=line_items",
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.body);
    let data = s.body["line_items"]["data"].as_array().unwrap();
    assert_eq!(data[0]["description"], "First");
    assert_eq!(data[0]["amount_subtotal"], 400);
    assert_eq!(data[1]["description"], "Second");
    assert_eq!(s.body["amount_subtotal"], 700);

    let bad_index = api
        .post(
            "/v1/checkout/sessions",
            "mode=payment&line_items[0][quantity]=x&line_items[0][price]=price_x",
        )
        .await;
    assert_eq!(bad_index.status, 400);
    assert!(bad_index.param().unwrap().starts_with("line_items[0]"));

    // GET query with expand[] and a bad expansion.
    let bad_expand = api
        .get(&format!(
            "/v1/checkout/sessions/{}?expand[]=nope",
            s.body["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(bad_expand.status, 400);
    assert_eq!(
        bad_expand.message(),
        "This property cannot be expanded (nope)."
    );
}

#[tokio::test]
async fn stripe_version_header_is_validated_and_echoed() {
    let api = start().await;
    let r = api
        .post_with("/v1/customers", "", &[("Stripe-Version", "garbage")])
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("Invalid Stripe API version"));
    let ok = api
        .post_with("/v1/customers", "", &[("Stripe-Version", BETA)])
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("stripe-version"), Some("2025-03-31.basil"));
}

#[tokio::test]
async fn prices_and_products_store() {
    let api = start().await;
    let prod = api.post("/v1/products", "name=T-shirt").await;
    let prod_id = prod.body["id"].as_str().unwrap();
    let price = api
        .post(
            "/v1/prices",
            &format!("currency=eur&unit_amount=1500&product={prod_id}"),
        )
        .await;
    assert_eq!(price.status, 200, "{}", price.body);
    let price_id = price.body["id"].as_str().unwrap();
    assert_eq!(price.body["type"], "one_time");
    let got = api
        .get(&format!("/v1/prices/{price_id}?expand[]=product"))
        .await;
    assert_eq!(got.body["product"]["name"], "T-shirt");
    let s = api
        .post(
            "/v1/checkout/sessions",
            &format!("mode=payment&success_url=https%3A%2F%2Fx.co&line_items[0][price]={price_id}&line_items[0][quantity]=3&expand[]=line_items.data.price.product"),
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(s.body["currency"], "eur");
    assert_eq!(s.body["amount_total"], 4500);
    assert_eq!(s.body["line_items"]["data"][0]["price"]["id"], price_id);
    assert_eq!(
        s.body["line_items"]["data"][0]["price"]["product"]["name"],
        "T-shirt"
    );
    let missing = api
        .post(
            "/v1/checkout/sessions",
            "mode=payment&success_url=https%3A%2F%2Fx.co&line_items[0][price]=price_nope&line_items[0][quantity]=1",
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.code(), Some("resource_missing"));
    assert_eq!(missing.param(), Some("line_items[0][price]"));
}
