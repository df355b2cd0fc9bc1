//! Checkout Session behaviour over real HTTP: creation rules, discounts, totals, expansion.

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn create_shape_and_defaults() {
    let api = start().await;
    let cus = api.post("/v1/customers", "email=a%40b.co").await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = api
        .session(
            &[(2000, 1)],
            &format!("customer={cus}&client_reference_id=order-7&metadata[cart]=c1"),
        )
        .await;
    let id = s["id"].as_str().unwrap();
    assert!(id.starts_with("cs_test_") && id.len() == 66, "{id}");
    assert_eq!(s["object"], "checkout.session");
    assert_eq!(s["status"], "open");
    assert_eq!(s["payment_status"], "unpaid");
    assert_eq!(s["mode"], "payment");
    assert_eq!(s["ui_mode"], "custom");
    assert_eq!(s["livemode"], false);
    assert_eq!(s["currency"], "usd");
    assert_eq!(s["customer"], cus.as_str());
    assert_eq!(s["client_reference_id"], "order-7");
    assert_eq!(s["metadata"], json!({"cart":"c1"}));
    assert_eq!(s["amount_subtotal"], 2000);
    assert_eq!(s["amount_total"], 2000);
    assert_eq!(
        s["total_details"],
        json!({"amount_discount":0,"amount_shipping":0,"amount_tax":0})
    );
    assert_eq!(s["discounts"], json!([]));
    assert_eq!(
        s["expires_at"].as_i64().unwrap() - s["created"].as_i64().unwrap(),
        86400
    );
    assert!(s["client_secret"].as_str().unwrap().starts_with(id));
    assert!(s["url"].is_null(), "custom sessions have no hosted url");
    assert!(
        s.get("line_items").is_none(),
        "line_items only when expanded"
    );
    // permissions.update_discounts is not echoed.
    assert_eq!(s["permissions"], json!({"update_shipping_details": null}));
    // The other permissions are, as created; a locale too.
    let s = api
        .session(
            &[(2000, 1)],
            "locale=fr-CA&permissions[update_shipping_details]=server_only\
             &permissions[update_line_items]=client_only&permissions[update][line_items]=server_only",
        )
        .await;
    assert_eq!(s["locale"], "fr-CA");
    assert_eq!(
        s["permissions"],
        json!({
            "update_shipping_details": "server_only",
            "update_line_items": "client_only",
            "update": {"line_items": "server_only", "shipping_details": null}
        })
    );

    let hosted = api
        .post(
            "/v1/checkout/sessions",
            "mode=payment&success_url=https%3A%2F%2Fx.co&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=100&line_items[0][price_data][product_data][name]=A&line_items[0][quantity]=1",
        )
        .await;
    assert_eq!(hosted.body["ui_mode"], "hosted");
    assert!(hosted.body["url"]
        .as_str()
        .unwrap()
        .starts_with("https://checkout.stripe.com/"));
}

#[tokio::test]
async fn create_validation_like_stripe() {
    let api = start().await;
    let li = |i: usize, cur: &str, amount: &str, qty: &str| {
        format!("line_items[{i}][price_data][currency]={cur}&line_items[{i}][price_data][unit_amount]={amount}&line_items[{i}][price_data][product_data][name]=X&line_items[{i}][quantity]={qty}")
    };
    let base = "success_url=https%3A%2F%2Fx.co";
    let cases: Vec<(String, &str)> = vec![
        (format!("{base}&{}", li(0, "usd", "100", "1")), "mode"),
        (format!("mode=payment&{base}"), "line_items"),
        (format!("mode=payment&{base}&{}&{}", li(0, "usd", "100", "1"), li(1, "eur", "100", "1")), "line_items[1][price_data][currency]"),
        (format!("mode=payment&{base}&{}", li(0, "usd", "100", "0")), "line_items[0][quantity]"),
        (format!("mode=payment&{base}&{}", li(0, "usd", "100", "-2")), "line_items[0][quantity]"),
        (format!("mode=payment&{base}&{}", li(0, "usd", "abc", "1")), "line_items[0][price_data][unit_amount]"),
        (format!("mode=payment&{base}&{}", li(0, "xyz", "100", "1")), "line_items[0][price_data][currency]"),
        (format!("mode=payment&{base}&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=100&line_items[0][quantity]=1"), "line_items[0][price_data][product]"),
        (format!("mode=payment&{base}&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=100&line_items[0][price_data][product_data][name]=X"), "line_items[0][quantity]"),
        (format!("mode=bogus&{base}&{}", li(0, "usd", "100", "1")), "mode"),
        (format!("mode=payment&{base}&customer=cus_missing&{}", li(0, "usd", "100", "1")), "customer"),
        (format!("mode=payment&{base}&permissions[update_discounts]=server_only&{}", li(0, "usd", "100", "1")), "permissions"),
        (format!("mode=payment&ui_mode=custom&{}", li(0, "usd", "100", "1")), "return_url"),
        (format!("mode=payment&ui_mode=custom&return_url=https%3A%2F%2Fx.co&permissions[update_discounts]=sometimes&{}", li(0, "usd", "100", "1")), "permissions[update_discounts]"),
        (format!("mode=payment&{base}&discounts[0][coupon]=NOPE&{}", li(0, "usd", "100", "1")), "discounts[0][coupon]"),
        (format!("mode=subscription&{base}&{}", li(0, "usd", "100", "1")), "line_items"),
        (format!("mode=payment&{base}&line_items[0][price_data][recurring][interval]=month&{}", li(0, "usd", "100", "1")), "line_items[0][price]"),
        (format!("mode=payment&{base}&expires_at=1&{}", li(0, "usd", "100", "1")), "expires_at"),
        (format!("mode=payment&{base}&locale=klingon&{}", li(0, "usd", "100", "1")), "locale"),
    ];
    for (form, param) in cases {
        let r = api.post("/v1/checkout/sessions", &form).await;
        assert_eq!(r.status, 400, "{form}: {}", r.body);
        assert_eq!(r.param(), Some(param), "{form}: {}", r.body);
    }
    // A failed create leaves nothing behind.
    assert!(api.running.emulator().with(|i| i.store.sessions.is_empty()));
    // Minimum charge amount.
    let small = api
        .post(
            "/v1/checkout/sessions",
            &format!("mode=payment&{base}&{}", li(0, "usd", "10", "1")),
        )
        .await;
    assert_eq!(small.status, 400);
    assert_eq!(small.code(), Some("amount_too_small"));
}

#[tokio::test]
async fn permission_rule_and_beta_rule() {
    let api = start().await;
    // Created without permissions[update_discounts]=server_only.
    let r = api
        .post(
            "/v1/checkout/sessions",
            "mode=payment&ui_mode=custom&return_url=https%3A%2F%2Fx.co&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=1000&line_items[0][price_data][product_data][name]=A&line_items[0][quantity]=1",
        )
        .await;
    let id = r.body["id"].as_str().unwrap();
    let refused = api
        .post_beta(
            &format!("/v1/checkout/sessions/{id}"),
            "discounts[0][coupon_data][percent_off]=10",
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.param(), Some("discounts"));
    assert!(refused.message().contains("server_only"));
    assert_eq!(
        api.get(&format!("/v1/checkout/sessions/{id}")).await.body["amount_total"],
        1000
    );

    let s = api.session(&[(1000, 1)], "").await;
    let id = s["id"].as_str().unwrap();
    // Without the beta version, `discounts` is an unknown parameter.
    let no_beta = api
        .post(
            &format!("/v1/checkout/sessions/{id}"),
            "discounts[0][coupon_data][percent_off]=10",
        )
        .await;
    assert_eq!(no_beta.status, 400);
    assert_eq!(no_beta.code(), Some("parameter_unknown"));
    assert_eq!(no_beta.param(), Some("discounts"));
    let basil_only = api
        .post_with(
            &format!("/v1/checkout/sessions/{id}"),
            "discounts[0][coupon_data][percent_off]=10",
            &[("Stripe-Version", "2025-03-31.basil")],
        )
        .await;
    assert_eq!(basil_only.code(), Some("parameter_unknown"));
    // Metadata needs no beta.
    let md = api
        .post(&format!("/v1/checkout/sessions/{id}"), "metadata[k]=v")
        .await;
    assert_eq!(md.status, 200);
    assert_eq!(md.body["metadata"]["k"], "v");
    // With the beta it works.
    let ok = api
        .discount(id, "discounts[0][coupon_data][percent_off]=10")
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["amount_total"], 900);
}

#[tokio::test]
async fn percent_off_totals_and_rounding() {
    let api = start().await;
    // 3 × 333 = 999; 10% = 99.9 → 100, allocated 33.3 each → 34, 33, 33.
    let s = api.session(&[(333, 1), (333, 1), (333, 1)], "").await;
    let id = s["id"].as_str().unwrap();
    let r = api
        .discount(
            id,
            "discounts[0][coupon_data][percent_off]=10&discounts[0][coupon_data][name]=Loyalty",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = &r.body;
    assert_eq!(b["amount_subtotal"], 999);
    assert_eq!(b["total_details"]["amount_discount"], 100);
    assert_eq!(b["amount_total"], 899);
    assert_eq!(line_discounts(b), vec![34, 33, 33]);
    for li in b["line_items"]["data"].as_array().unwrap() {
        assert_eq!(
            li["amount_total"].as_i64().unwrap(),
            li["amount_subtotal"].as_i64().unwrap() - li["amount_discount"].as_i64().unwrap()
        );
    }
    let coupon = &b["discounts"][0]["coupon"];
    assert_eq!(coupon["object"], "coupon");
    assert_eq!(coupon["percent_off"], 10.0);
    assert_eq!(coupon["name"], "Loyalty");
    assert_eq!(coupon["duration"], "once");
    // The coupon_data coupon is a real, retrievable coupon.
    let cid = coupon["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/v1/coupons/{cid}")).await.body["percent_off"],
        10.0
    );
    // Without expand, discounts[].coupon is the id.
    let plain = api.get(&format!("/v1/checkout/sessions/{id}")).await;
    assert_eq!(plain.body["discounts"][0]["coupon"], cid);
    assert!(plain.body["discounts"][0]["promotion_code"].is_null());

    // Uneven allocation: 1000 and 3000 with 12.5% of 4000 = 500 → 125 / 375.
    let s2 = api.session(&[(1000, 1), (1500, 2)], "").await;
    let r2 = api
        .discount(
            s2["id"].as_str().unwrap(),
            "discounts[0][coupon_data][percent_off]=12.5",
        )
        .await;
    assert_eq!(line_discounts(&r2.body), vec![125, 375]);
    assert_eq!(r2.body["amount_total"], 3500);
}

#[tokio::test]
async fn amount_off_totals_cap_and_allocation() {
    let api = start().await;
    let s = api.session(&[(1000, 1), (2000, 1)], "").await;
    let id = s["id"].as_str().unwrap();
    let r = api
        .discount(
            id,
            "discounts[0][coupon_data][amount_off]=1000&discounts[0][coupon_data][currency]=usd",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["total_details"]["amount_discount"], 1000);
    assert_eq!(r.body["amount_total"], 2000);
    // 1000 × 1/3 = 333.33, × 2/3 = 666.67 → 333 and 667.
    assert_eq!(line_discounts(&r.body), vec![333, 667]);

    // Capped at the subtotal, and shipping is never discounted.
    let s = api
        .session(
            &[(1500, 1)],
            "shipping_options[0][shipping_rate_data][display_name]=Ground&shipping_options[0][shipping_rate_data][type]=fixed_amount&shipping_options[0][shipping_rate_data][fixed_amount][amount]=500&shipping_options[0][shipping_rate_data][fixed_amount][currency]=usd",
        )
        .await;
    assert_eq!(s["amount_total"], 2000);
    assert_eq!(s["shipping_cost"]["amount_total"], 500);
    assert_eq!(s["total_details"]["amount_shipping"], 500);
    assert!(s["shipping_cost"]["shipping_rate"]
        .as_str()
        .unwrap()
        .starts_with("shr_"));
    let id = s["id"].as_str().unwrap();
    let r = api
        .discount(
            id,
            "discounts[0][coupon_data][amount_off]=5000&discounts[0][coupon_data][currency]=usd",
        )
        .await;
    assert_eq!(r.body["total_details"]["amount_discount"], 1500);
    assert_eq!(r.body["amount_total"], 500);
    assert_eq!(line_discounts(&r.body), vec![1500]);
}

#[tokio::test]
async fn clear_restores_totals_and_existing_coupon_by_id() {
    let api = start().await;
    api.post("/v1/coupons", "id=TAKE5&amount_off=500&currency=usd")
        .await;
    api.post("/v1/coupons", "id=EURO5&amount_off=500&currency=eur")
        .await;
    let s = api.session(&[(4000, 1)], "").await;
    let id = s["id"].as_str().unwrap();
    let r = api.discount(id, "discounts[0][coupon]=TAKE5").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["amount_total"], 3500);
    assert_eq!(r.body["discounts"][0]["coupon"]["id"], "TAKE5");

    // Replacing the discount: only one at a time.
    let r = api
        .discount(id, "discounts[0][coupon_data][percent_off]=50")
        .await;
    assert_eq!(r.body["amount_total"], 2000);
    assert_eq!(r.body["discounts"].as_array().unwrap().len(), 1);

    let cleared = api.discount(id, "discounts=").await;
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert_eq!(cleared.body["amount_total"], 4000);
    assert_eq!(cleared.body["total_details"]["amount_discount"], 0);
    assert_eq!(cleared.body["discounts"], json!([]));
    assert_eq!(line_discounts(&cleared.body), vec![0]);

    let wrong_currency = api.discount(id, "discounts[0][coupon]=EURO5").await;
    assert_eq!(wrong_currency.status, 400);
    assert_eq!(wrong_currency.param(), Some("discounts[0][coupon]"));
    let missing = api.discount(id, "discounts[0][coupon]=NOPE").await;
    assert_eq!(missing.code(), Some("resource_missing"));
    assert_eq!(missing.message(), "No such coupon: 'NOPE'");

    // Discount at creation.
    let s2 = api
        .session(&[(4000, 1)], "discounts[0][coupon]=TAKE5")
        .await;
    assert_eq!(s2["amount_total"], 3500);
    assert_eq!(s2["discounts"][0]["coupon"], "TAKE5");
}

#[tokio::test]
async fn coupon_data_validation_params() {
    let api = start().await;
    let s = api.session(&[(4000, 1)], "").await;
    let id = s["id"].as_str().unwrap();
    let p = "discounts[0][coupon_data]";
    let cases = [
        (
            format!("{p}[amount_off]=100&{p}[percent_off]=5&{p}[currency]=usd"),
            format!("{p}[amount_off]"),
        ),
        (format!("{p}[name]=x"), format!("{p}[percent_off]")),
        (
            format!("{p}[amount_off]=0&{p}[currency]=usd"),
            format!("{p}[amount_off]"),
        ),
        (
            format!("{p}[amount_off]=1.5&{p}[currency]=usd"),
            format!("{p}[amount_off]"),
        ),
        (format!("{p}[amount_off]=100"), format!("{p}[currency]")),
        (
            format!("{p}[amount_off]=100&{p}[currency]=eur"),
            format!("{p}[currency]"),
        ),
        (format!("{p}[percent_off]=0"), format!("{p}[percent_off]")),
        (format!("{p}[percent_off]=101"), format!("{p}[percent_off]")),
        (
            format!("{p}[percent_off]=10&{p}[name]=ABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJK"),
            format!("{p}[name]"),
        ),
        (
            format!("{p}[percent_off]=10&{p}[duration]=weekly"),
            format!("{p}[duration]"),
        ),
        (
            format!("{p}[percent_off]=10&{p}[max_redemptions]=3"),
            format!("{p}[max_redemptions]"),
        ),
        (
            format!("{p}[percent_off]=10&discounts[1][coupon_data][percent_off]=5"),
            "discounts".to_string(),
        ),
        (
            "discounts[0][coupon]=X&discounts[0][coupon_data][percent_off]=5".to_string(),
            "discounts[0][coupon]".to_string(),
        ),
        (
            "discounts[0][promotion_code]=promo_1".to_string(),
            "discounts[0][promotion_code]".to_string(),
        ),
        ("discounts=oops".to_string(), "discounts".to_string()),
    ];
    for (form, param) in cases {
        let r = api.discount(id, &form).await;
        assert_eq!(r.status, 400, "{form}: {}", r.body);
        assert_eq!(r.param(), Some(param.as_str()), "{form}: {}", r.body);
        assert_eq!(r.err_type(), Some("invalid_request_error"));
    }
    // Nothing changed, and a 40-character name plus every duration is fine.
    assert_eq!(
        api.get(&format!("/v1/checkout/sessions/{id}")).await.body["amount_total"],
        4000
    );
    for d in ["forever", "once", "repeating", "service_period"] {
        let r = api
            .discount(id, &format!("{p}[percent_off]=25.5&{p}[duration]={d}&{p}[name]=ABCDEFGHIJABCDEFGHIJABCDEFGHIJABCDEFGHIJ&{p}[metadata][src]=policy"))
            .await;
        assert_eq!(r.status, 200, "{d}: {}", r.body);
        assert_eq!(r.body["discounts"][0]["coupon"]["duration"], d);
        assert_eq!(
            r.body["discounts"][0]["coupon"]["metadata"]["src"],
            "policy"
        );
        assert_eq!(r.body["amount_total"], 4000 - 1020);
    }
}

#[tokio::test]
async fn open_only_updates_and_expire() {
    let api = start().await;
    let s = api.session(&[(1000, 1)], "").await;
    let id = s["id"].as_str().unwrap().to_string();
    let e = api
        .post(&format!("/v1/checkout/sessions/{id}/expire"), "")
        .await;
    assert_eq!(e.status, 200);
    assert_eq!(e.body["status"], "expired");
    let again = api
        .post(&format!("/v1/checkout/sessions/{id}/expire"), "")
        .await;
    assert_eq!(again.status, 400);
    assert!(
        again.message().contains("status of `expired`"),
        "{}",
        again.message()
    );
    let upd = api
        .discount(&id, "discounts[0][coupon_data][percent_off]=10")
        .await;
    assert_eq!(upd.status, 400);
    assert_eq!(upd.err_type(), Some("invalid_request_error"));
    assert!(upd.message().contains("status in [\"open\"]"));

    let s = api.session(&[(1000, 1)], "").await;
    let id2 = s["id"].as_str().unwrap().to_string();
    let done = api
        .control(&format!("/_emulator/sessions/{id2}/complete"), json!({}))
        .await;
    assert_eq!(done.body["status"], "complete");
    assert_eq!(done.body["payment_status"], "paid");
    let upd = api.discount(&id2, "discounts=").await;
    assert_eq!(upd.status, 400);
    assert!(upd.message().contains("`complete`"));

    // Sessions expire by themselves at expires_at.
    let s = api.session(&[(1000, 1)], "").await;
    let id3 = s["id"].as_str().unwrap().to_string();
    api.control("/_emulator/clock", json!({"advance_seconds": 86400}))
        .await;
    assert_eq!(
        api.get(&format!("/v1/checkout/sessions/{id3}")).await.body["status"],
        "expired"
    );

    let missing = api
        .post("/v1/checkout/sessions/cs_test_nope/expire", "")
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.message(),
        "No such checkout.session: 'cs_test_nope'"
    );
    assert_eq!(missing.param(), Some("id"));
}

#[tokio::test]
async fn expand_variants() {
    let api = start().await;
    let cus = api
        .post("/v1/customers", "email=e%40x.co&metadata[tier]=gold")
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = api
        .session(&[(1000, 2), (500, 1)], &format!("customer={cus}"))
        .await;
    let id = s["id"].as_str().unwrap();
    api.discount(id, "discounts[0][coupon_data][percent_off]=20")
        .await;

    let r = api
        .get(&format!("/v1/checkout/sessions/{id}?expand[]=customer&expand[]=line_items&expand[]=discounts.coupon&expand[]=total_details.breakdown"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = &r.body;
    assert_eq!(b["customer"]["id"], cus.as_str());
    assert_eq!(b["customer"]["metadata"]["tier"], "gold");
    assert_eq!(b["line_items"]["object"], "list");
    assert_eq!(b["line_items"]["has_more"], false);
    assert_eq!(
        b["line_items"]["url"],
        format!("/v1/checkout/sessions/{id}/line_items")
    );
    let li = &b["line_items"]["data"][0];
    assert_eq!(li["object"], "item");
    assert!(li["id"].as_str().unwrap().starts_with("li_"));
    assert_eq!(li["price"]["object"], "price");
    assert_eq!(li["price"]["unit_amount"], 1000);
    assert!(li["price"]["product"]
        .as_str()
        .unwrap()
        .starts_with("prod_"));
    assert_eq!(li["quantity"], 2);
    assert_eq!(b["discounts"][0]["coupon"]["percent_off"], 20.0);
    let bd = &b["total_details"]["breakdown"];
    assert_eq!(bd["discounts"][0]["amount"], 500);
    assert_eq!(bd["discounts"][0]["discount"]["object"], "discount");
    assert_eq!(
        bd["discounts"][0]["discount"]["coupon"]["percent_off"],
        20.0
    );
    assert_eq!(bd["taxes"], json!([]));

    // expand[0]= form, and the line_items endpoint.
    let r = api
        .get(&format!("/v1/checkout/sessions/{id}?expand[0]=customer"))
        .await;
    assert_eq!(r.body["customer"]["email"], "e@x.co");
    assert!(r.body.get("line_items").is_none());
    let list = api
        .get(&format!("/v1/checkout/sessions/{id}/line_items?limit=1"))
        .await;
    assert_eq!(list.body["object"], "list");
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["has_more"], true);
    let first = list.body["data"][0]["id"].as_str().unwrap();
    let next = api
        .get(&format!("/v1/checkout/sessions/{id}/line_items?starting_after={first}&expand[]=data.price.product"))
        .await;
    assert_eq!(next.body["has_more"], false);
    assert_eq!(next.body["data"][0]["amount_discount"], 100);
    assert_eq!(next.body["data"][0]["price"]["product"]["name"], "Item 1");

    for bad in [
        "discounts",
        "total_details",
        "line_items.data.price",
        "metadata",
        "a.b.c.d.e",
    ] {
        let r = api
            .get(&format!("/v1/checkout/sessions/{id}?expand[]={bad}"))
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    // Newer API versions: discount.source.coupon instead of discount.coupon.
    let clover = api
        .http
        .get(api.url(&format!(
            "/v1/checkout/sessions/{id}?expand[]=total_details.breakdown"
        )))
        .bearer_auth(KEY)
        .header("Stripe-Version", "2025-09-30.clover")
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let d = &clover["total_details"]["breakdown"]["discounts"][0]["discount"];
    assert_eq!(d["source"]["type"], "coupon");
    assert!(d["source"]["coupon"].is_string());
    assert!(d.get("coupon").is_none());
}

#[tokio::test]
async fn expanded_line_items_page_at_ten() {
    let api = start().await;
    let lines: Vec<(i64, i64)> = (0..12).map(|_| (100, 1)).collect();
    let s = api.session(&lines, "expand[]=line_items").await;
    assert_eq!(s["line_items"]["data"].as_array().unwrap().len(), 10);
    assert_eq!(s["line_items"]["has_more"], true);
    assert_eq!(s["amount_subtotal"], 1200);
    let id = s["id"].as_str().unwrap();
    let all = api
        .get(&format!("/v1/checkout/sessions/{id}/line_items?limit=100"))
        .await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 12);
}

#[tokio::test]
async fn control_customer_and_shipping_details() {
    let api = start().await;
    let s = api.session(&[(1000, 1)], "").await;
    let id = s["id"].as_str().unwrap();
    let r = api
        .control(
            &format!("/_emulator/sessions/{id}/customer_details"),
            json!({"email": "c@x.co", "name": "C", "address": {"country": "FR", "postal_code": "75001"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api
        .control(
            &format!("/_emulator/sessions/{id}/shipping_details"),
            json!({"name": "C", "address": {"line1": "1 rue X", "country": "FR"}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let g = api.get(&format!("/v1/checkout/sessions/{id}")).await.body;
    assert_eq!(g["customer_details"]["address"]["country"], "FR");
    assert_eq!(g["customer_details"]["email"], "c@x.co");
    assert_eq!(
        g["collected_information"]["shipping_details"]["address"]["line1"],
        "1 rue X"
    );
    let bad = api
        .control(
            &format!("/_emulator/sessions/{id}/customer_details"),
            json!({"shoe_size": 42}),
        )
        .await;
    assert_eq!(bad.status, 400);
    let missing = api
        .control(
            "/_emulator/sessions/cs_test_none/shipping_details",
            json!({}),
        )
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn the_stripe_checkout_types_deserialize_emulator_output() {
    let api = start().await;
    let s = api.session(&[(1999, 3)], "").await;
    let id = s["id"].as_str().unwrap();
    let r = api
        .discount(id, "discounts[0][coupon_data][percent_off]=15")
        .await;
    let typed: stripe_checkout::CheckoutSession = serde_json::from_value(r.body.clone()).unwrap();
    assert_eq!(typed.amount_subtotal, Some(5997));
    assert_eq!(typed.amount_total, Some(5997 - 900)); // 899.55 → 900
    let items = typed.line_items.as_ref().unwrap();
    assert_eq!(items.data[0].amount_discount, 900);
    let coupon = typed.discounts.as_ref().unwrap()[0]
        .coupon
        .as_ref()
        .unwrap();
    assert_eq!(coupon.object().unwrap().percent_off, Some(15.0));
    // The runner's preview agrees with the emulator.
    let without: stripe_checkout::CheckoutSession =
        serde_json::from_value(api.discount(id, "discounts=").await.body).unwrap();
    let preview = stripe_checkout::totals::SessionTotals::preview(
        &without,
        Some(&stripe_checkout::totals::Terms {
            amount_off: None,
            percent_off: Some(15.0),
        }),
    );
    assert_eq!(Some(preview.amount_total), typed.amount_total);
}
