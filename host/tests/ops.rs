//! Operating the host: the decision audit log, Prometheus metrics, the admin API
//! and its token, dry runs, health endpoints, request ids and JSON logs, and the
//! SIGTERM drain. All against the real host binary and the emulator.

mod common;

use common::{copy_policy, policy_dir, tempdir::TempDir, Host, Stripe, ADMIN_TOKEN};
use policy_engine::audit::AuditRecord;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use stripe_checkout::client::SESSION_EXPAND;

const ROUTE: &str = "/apply-cart-discount";

/// A copy of cart-threshold under another name and route, with its config changed.
fn variant(dir: &Path, name: &str, route: &str, config: &str, limits: &str) {
    common::install_policy(
        dir,
        name,
        &std::fs::read(common::built_policies().join("cart-threshold.wasm")).unwrap(),
        &format!("routes = [\"{route}\"]\n\n[config]\n{config}\n\n[limits]\n{limits}\n"),
    );
}

/// Reads the audit file until it holds `n` records.
async fn audit_records(path: &Path, n: usize) -> Vec<AuditRecord> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let records: Vec<AuditRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if records.len() >= n {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "audit log has fewer than {n} records: {}",
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

fn by_session<'a>(records: &'a [AuditRecord], id: &str) -> &'a AuditRecord {
    records
        .iter()
        .find(|r| r.session_id.as_deref() == Some(id))
        .unwrap_or_else(|| panic!("no audit record for {id}"))
}

#[tokio::test]
async fn audit_records_apply_clear_reject_and_failures() {
    let stripe = Stripe::start().await;
    let dir = policy_dir(&["cart-threshold"]);
    variant(
        dir.path(),
        "cart-misconfigured",
        "/reject-cart",
        "cap = \"0\"",
        "",
    );
    variant(
        dir.path(),
        "cart-starved",
        "/starved-cart",
        "",
        "fuel = 2000",
    );
    let logs = TempDir::new();
    let audit = logs.path().join("audit.jsonl");
    let host = Host::start(
        &stripe.url(),
        dir.path(),
        &format!(
            "[audit]\nsink = \"file\"\npath = {:?}\n",
            audit.display().to_string()
        ),
    );
    let customer = stripe
        .client
        .create_customer(&json!({"email": "ada@example.com"}), None, None)
        .await
        .unwrap()
        .body
        .id;

    let applied = stripe.session("usd", &[(6_000, 2)], Some(&customer)).await;
    // cart-threshold expands nothing, so the audit's email is the one typed at checkout.
    stripe
        .http
        .post(format!(
            "{}/_emulator/sessions/{applied}/customer_details",
            stripe.url()
        ))
        .json(&json!({"email": "ada@example.com"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let cleared = stripe.session("usd", &[(4_000, 1)], None).await;
    let rejected = stripe.session("usd", &[(6_000, 2)], None).await;
    let stripe_failed = stripe.session("usd", &[(6_000, 2)], None).await;
    let starved = stripe.session("usd", &[(6_000, 2)], None).await;

    let a = host
        .post(
            ROUTE,
            json!({"checkout_session_id": applied, "promo": "SPRING"}),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a = host
        .post(ROUTE, json!({"checkout_session_id": cleared}))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let rejected_before = stripe
        .client
        .retrieve_checkout_session_full(&rejected, SESSION_EXPAND, None)
        .await
        .unwrap()
        .body;
    let a = host
        .post("/reject-cart", json!({"checkout_session_id": rejected}))
        .await;
    assert_eq!(a.status, 422, "{:?}", a.body);
    stripe
        .fault(json!({"method": "POST", "path": format!("/v1/checkout/sessions/{stripe_failed}"), "count": 10, "status": 400, "error_type": "invalid_request_error", "message": "No such coupon"}))
        .await;
    let a = host
        .post(ROUTE, json!({"checkout_session_id": stripe_failed}))
        .await;
    assert_eq!(a.status, 502, "{:?}", a.body);
    let a = host
        .post("/starved-cart", json!({"checkout_session_id": starved}))
        .await;
    assert_eq!(a.status, 500, "{:?}", a.body);
    // Not a storefront route: no audit record.
    host.post("/nope", json!({"checkout_session_id": applied}))
        .await;

    let records = audit_records(&audit, 5).await;
    assert_eq!(records.len(), 5, "{records:#?}");

    let r = by_session(&records, &applied);
    assert_eq!(r.route, ROUTE);
    assert_eq!(r.outcome, "applied");
    assert_eq!(r.livemode, Some(false));
    assert_eq!(r.policy.as_deref(), Some("cart-threshold"));
    assert_eq!(r.version.as_ref().map(String::len), Some(64));
    assert_eq!(
        r.settings_digest,
        Some(settings_digest_of(&host, "cart-threshold").await),
        "a settings-only promotion shows in the record"
    );
    assert_eq!(r.input_digest.as_ref().map(String::len), Some(64));
    assert_eq!(r.input.as_ref().unwrap()["promo"], "SPRING");
    assert_eq!(r.decision.as_ref().unwrap().kind(), "apply");
    assert_eq!(r.guard.verdict, "passed");
    assert!(r
        .stripe_request_id
        .as_deref()
        .is_some_and(|id| id.starts_with("req_")));
    let before = r.amounts_before.as_ref().unwrap();
    let after = r.amounts_after.as_ref().unwrap();
    assert_eq!(
        (before.amount_discount, before.amount_total),
        (0, Some(12_000))
    );
    assert_eq!(
        (after.amount_discount, after.amount_total),
        (1_200, Some(10_800))
    );
    assert!(r
        .fuel
        .as_ref()
        .is_some_and(|f| f.used > 0 && f.used < f.budget));
    assert!(r.timing.total_us >= r.timing.evaluate_us && r.timing.evaluate_us > 0);
    assert!(r.timing.retrieve_us > 0 && r.timing.update_us > 0);
    assert!(!r.request_id.is_empty());
    assert!(r.time.ends_with('Z') && r.time.len() == 24, "{}", r.time);
    let c = r.customer.as_ref().unwrap();
    assert_eq!(c.id.as_deref(), Some(customer.as_str()));
    assert_eq!(c.email.as_deref(), Some("a***@example.com"));
    // The raw line never holds the email.
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains("ada@example.com"));

    let r = by_session(&records, &cleared);
    assert_eq!(r.outcome, "cleared");
    assert_eq!(r.decision.as_ref().unwrap().kind(), "clear");
    assert_eq!(r.guard.verdict, "passed");
    assert!(r.stripe_request_id.is_some());
    assert_eq!(r.amounts_after.as_ref().unwrap().amount_total, Some(4_000));

    let r = by_session(&records, &rejected);
    assert_eq!(r.outcome, "rejected");
    assert_eq!(r.policy.as_deref(), Some("cart-misconfigured"));
    assert_eq!(r.decision.as_ref().unwrap().kind(), "reject");
    assert_eq!(r.guard.verdict, "passed");
    assert_eq!(r.stripe_request_id, None);
    assert_eq!(r.amounts_after, r.amounts_before);
    // The digest is reproducible from the session as Stripe returns it: what replay checks.
    let request = policy_engine::mapping::policy_request("/reject-cart", &Default::default());
    assert_eq!(
        r.input_digest.as_deref(),
        Some(policy_engine::audit::input_digest(&rejected_before, &request).as_str())
    );

    let r = by_session(&records, &stripe_failed);
    assert_eq!(r.outcome, "stripe_error");
    assert_eq!(r.decision.as_ref().unwrap().kind(), "apply");
    assert_eq!(r.guard.verdict, "passed");
    assert!(r.error.as_deref().unwrap().contains("No such coupon"));
    assert!(r.stripe_request_id.is_some());
    assert_eq!(r.amounts_after, None);

    let r = by_session(&records, &starved);
    assert_eq!(r.outcome, "policy_failed");
    assert_eq!(r.decision, None);
    assert_eq!(r.guard.verdict, "not_run");
    assert!(
        r.error.as_deref().unwrap().contains("fuel"),
        "{:?}",
        r.error
    );
    assert_eq!(r.fuel.as_ref().map(|f| f.used), Some(2_000));

    // The same records, newest last, for the dashboard.
    let recent = host.get_json("/admin/decisions").await;
    assert_eq!(recent.as_array().unwrap().len(), 5);
    assert_eq!(recent[0]["session_id"], applied.as_str());
}

/// The value of one sample in a Prometheus text exposition (0 when absent).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

/// The settings digest `GET /admin/policies` shows for `name`.
async fn settings_digest_of(host: &Host, name: &str) -> String {
    let status = host.get_json("/admin/policies").await;
    let policy = status
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name);
    let digest = policy.and_then(|p| p["settings_digest"].as_str());
    digest
        .unwrap_or_else(|| panic!("{name}: {status:#}"))
        .to_string()
}

async fn scrape(host: &Host) -> String {
    let r = reqwest::get(format!("{}/metrics", host.url)).await.unwrap();
    assert_eq!(r.status(), 200, "metrics need no token");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    r.text().await.unwrap()
}

#[tokio::test]
async fn metrics_are_exposed_and_count() {
    let stripe = Stripe::start().await;
    let dir = policy_dir(&["cart-threshold"]);
    variant(
        dir.path(),
        "cart-starved",
        "/starved-cart",
        "",
        "fuel = 2000",
    );
    let host = Host::start(
        &stripe.url(),
        dir.path(),
        "[caps.max_amount_off]\nusd = 1000\n[stripe]\ninitial_retry_delay_ms = 10\n",
    );
    let before = scrape(&host).await;
    assert_eq!(sample(&before, "discount_policies_loaded", &[]), 2.0);
    let settings = settings_digest_of(&host, "cart-threshold").await;
    assert_eq!(
        sample(
            &before,
            "discount_policy_info",
            &[("policy", "cart-threshold"), ("settings", &settings[..12])]
        ),
        1.0
    );
    assert!(
        sample(
            &before,
            "discount_policy_reloads_total",
            &[("outcome", "changed")]
        ) >= 1.0
    );
    let cleared = [("route", ROUTE), ("outcome", "cleared")];
    assert_eq!(sample(&before, "discount_requests_total", &cleared), 0.0);

    // Cleared, after one retried 500 on the update.
    let small = stripe.session("usd", &[(4_000, 1)], None).await;
    stripe
        .fault(json!({"method": "POST", "path": format!("/v1/checkout/sessions/{small}"), "count": 1, "status": 500}))
        .await;
    assert_eq!(
        host.post(ROUTE, json!({"checkout_session_id": small}))
            .await
            .status,
        200
    );
    // 10 % of 150.00 is 15.00, over the 10.00 cap: the guard refuses.
    let big = stripe.session("usd", &[(15_000, 1)], None).await;
    assert_eq!(
        host.post(ROUTE, json!({"checkout_session_id": big}))
            .await
            .status,
        500
    );
    let starved = stripe.session("usd", &[(15_000, 1)], None).await;
    assert_eq!(
        host.post("/starved-cart", json!({"checkout_session_id": starved}))
            .await
            .status,
        500
    );
    // Unknown session: a Stripe 404.
    host.post(ROUTE, json!({"checkout_session_id": "cs_test_missing"}))
        .await;

    let after = scrape(&host).await;
    let d = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    assert_eq!(d("discount_requests_total", &cleared), 1.0, "{after}");
    assert_eq!(
        d(
            "discount_requests_total",
            &[("route", ROUTE), ("outcome", "guard_refused")]
        ),
        1.0
    );
    assert_eq!(
        d(
            "discount_requests_total",
            &[("route", ROUTE), ("outcome", "unknown_session")]
        ),
        1.0
    );
    assert_eq!(
        d(
            "discount_guard_rejections_total",
            &[("policy", "cart-threshold")]
        ),
        1.0
    );
    assert_eq!(
        d(
            "discount_policy_failures_total",
            &[("policy", "cart-starved"), ("kind", "fuel_exhausted")]
        ),
        1.0
    );
    assert_eq!(
        d(
            "discount_decisions_total",
            &[("policy", "cart-threshold"), ("decision", "clear")]
        ),
        1.0
    );
    assert_eq!(
        d(
            "discount_policy_evaluation_seconds_count",
            &[("policy", "cart-threshold")]
        ),
        2.0
    );
    assert_eq!(
        d(
            "discount_policy_fuel_used_count",
            &[("policy", "cart-threshold")]
        ),
        2.0
    );
    assert!(
        d(
            "discount_policy_fuel_used_sum",
            &[("policy", "cart-threshold")]
        ) > 0.0
    );
    assert_eq!(
        d(
            "discount_stripe_request_seconds_count",
            &[("operation", "update_session")]
        ),
        1.0
    );
    assert_eq!(
        d(
            "discount_stripe_request_seconds_count",
            &[("operation", "retrieve_session")]
        ),
        4.0
    );
    assert_eq!(
        d(
            "discount_stripe_retries_total",
            &[("operation", "update_session")]
        ),
        1.0
    );
    assert_eq!(
        d(
            "discount_stripe_errors_total",
            &[("operation", "retrieve_session"), ("kind", "api_4xx")]
        ),
        1.0
    );

    // A reload that fails to load counts as a load failure.
    common::install_policy(
        dir.path(),
        "broken",
        b"not wasm",
        "routes = [\"/broken\"]\n",
    );
    host.reload().await;
    let after = scrape(&host).await;
    assert_eq!(
        sample(
            &after,
            "discount_policy_load_failures_total",
            &[("policy", "broken")]
        ),
        1.0
    );
    assert!(
        sample(
            &after,
            "discount_policy_reloads_total",
            &[("outcome", "failed")]
        ) >= 1.0
    );
}

#[tokio::test]
async fn admin_api_refuses_a_missing_or_wrong_token() {
    let stripe = Stripe::start().await;
    let dir = policy_dir(&["cart-threshold"]);
    let host = Host::start(&stripe.url(), dir.path(), "");
    let plain = reqwest::Client::new();
    let calls = [
        ("GET", "/admin/policies"),
        ("POST", "/admin/reload"),
        ("GET", "/admin/decisions"),
        ("POST", "/admin/dry-run"),
    ];
    for (method, path) in calls {
        let url = format!("{}{path}", host.url);
        let m: reqwest::Method = method.parse().unwrap();
        let none = plain.request(m.clone(), &url).send().await.unwrap();
        assert_eq!(none.status(), 401, "{method} {path} without a token");
        assert!(none.headers().contains_key("www-authenticate"));
        for wrong in [
            "Bearer nope",
            &format!("Bearer {ADMIN_TOKEN}x"),
            ADMIN_TOKEN,
            &format!("Basic {ADMIN_TOKEN}"),
        ] {
            let r = plain
                .request(m.clone(), &url)
                .header("authorization", wrong)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {wrong:?}");
        }
    }
    let ok = plain
        .get(format!("{}/admin/policies", host.url))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let status: Value = ok.json().await.unwrap();
    assert_eq!(status[0]["name"], "cart-threshold");
    // The page shell is public (it holds no data); health needs no token.
    for path in ["/dashboard", "/healthz", "/livez", "/readyz"] {
        let r = plain
            .get(format!("{}{path}", host.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }

    // Without a token configured the admin API is off, even for a client that sends one.
    let off = Host::start_env(
        &stripe.url(),
        dir.path(),
        "",
        &[("DISCOUNT_HOST_ADMIN_TOKEN", "")],
    );
    for path in ["/admin/policies", "/dashboard"] {
        let r = off
            .http
            .get(format!("{}{path}", off.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path} with the admin API off");
    }
    let r = off
        .http
        .get(format!("{}/readyz", off.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn readiness_needs_a_loaded_policy() {
    let stripe = Stripe::start().await;
    let dir = policy_dir(&[]);
    let host = Host::start(&stripe.url(), dir.path(), "");
    let get = |path: &'static str| {
        let url = format!("{}{path}", host.url);
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/livez").await, 200);
    assert_eq!(get("/healthz").await, 200);
    assert_eq!(get("/readyz").await, 503);
    copy_policy("cart-threshold", dir.path());
    let mut ready = false;
    for _ in 0..200 {
        if get("/readyz").await == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "ready once a policy is loaded");
}

/// The host logs how its instance pool resets memory, and serves with either reset.
#[tokio::test]
async fn the_pool_logs_how_it_resets_memory_and_serves_with_either() {
    let stripe = Stripe::start().await;
    let dir = policy_dir(&["cart-threshold"]);
    for (config, expected) in [
        (
            "[pool]\npagemap_scan = \"no\"\n",
            "memory_reset=decommit (pagemap_scan = \"no\")",
        ),
        ("", "memory_reset="),
    ] {
        let host = Host::start(&stripe.url(), dir.path(), config);
        let logs = host.wait_for_log("memory_reset=").await;
        assert!(logs.contains(expected), "{config:?}: {logs}");
        for _ in 0..3 {
            let id = stripe.session("usd", &[(6_000, 2)], None).await;
            let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
            assert_eq!(a.status, 200, "{config:?}: {}", a.body);
            assert_eq!(a.body["value"]["decision"]["type"], "apply", "{}", a.body);
            assert_eq!(a.body["value"]["session"]["amount_discount"], 1_200);
        }
    }
}

#[tokio::test]
async fn dry_run_evaluates_without_updating_stripe() {
    let stripe = Stripe::start().await;
    let dir = policy_dir(&["cart-threshold", "loyalty-tier"]);
    let host = Host::start(&stripe.url(), dir.path(), "");
    let id = stripe.session("usd", &[(6_000, 2)], None).await;
    let dry_run = |body: Value| {
        let http = host.http.clone();
        let url = format!("{}/admin/dry-run", host.url);
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    let (status, d) = dry_run(json!({"policy": "cart-threshold", "checkout_session_id": id})).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["source"], "stripe");
    assert_eq!(d["decision"]["type"], "apply");
    assert_eq!(d["decision"]["coupon_data"]["amount_off"], 1_200);
    assert_eq!(d["guard"]["verdict"], "passed");
    assert_eq!(d["amounts_before"]["amount_total"], 12_000);
    assert_eq!(d["totals"]["amount_discount"], 1_200);
    assert_eq!(d["totals"]["amount_total"], 10_800);
    assert_eq!(d["totals"]["line_discounts"], json!([1_200]));
    assert!(d["cost"]["fuel_used"].as_u64().unwrap() > 0);
    assert!(d["logs"].as_array().is_some_and(|l| !l.is_empty()), "{d}");
    assert_eq!(d["updated"], false);

    // The same session as a fixture, by route: the same decision and digest, no retrieve.
    let fixture = stripe
        .client
        .retrieve_checkout_session_full_json(&id, None)
        .await
        .unwrap()
        .body;
    let gets_before = stripe.requests().await.len();
    // Fixtures may be far larger than a storefront body (many line items).
    let mut fixture = fixture;
    fixture["padding"] = json!("x".repeat(100_000));
    let (status, f) = dry_run(json!({"route": ROUTE, "session": fixture})).await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["source"], "fixture");
    assert_eq!(f["decision"], d["decision"]);
    assert_eq!(f["input_digest"], d["input_digest"]);
    assert_eq!(
        stripe.requests().await.len(),
        gets_before,
        "a fixture dry run calls no Stripe"
    );

    // A policy that clears: the preview drops the discount.
    let (status, c) = dry_run(json!({"policy": "loyalty-tier", "checkout_session_id": id})).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["decision"]["type"], "clear");
    assert_eq!(c["totals"]["amount_total"], 12_000);

    let (status, e) = dry_run(json!({"policy": "nope", "checkout_session_id": id})).await;
    assert_eq!(status, 404, "{e}");
    let (status, _) = dry_run(json!({"checkout_session_id": id})).await;
    assert_eq!(status, 400, "two policies loaded: one must be named");
    // Every admin error is JSON, extractor failures too.
    let http = host.http.clone();
    let r = http
        .get(format!("{}/admin/decisions?limit=abc", host.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid query: "),
        "{e}"
    );
    let too_large = format!(
        "POST /admin/dry-run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 5242880\r\n\r\n"
    );
    let stream = slow_client(&host, too_large.as_bytes()).await;
    let (mut reader, mut writer) = stream.into_split();
    // The body goes on in the background; the host stops reading it at its limit.
    let writing = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..80 {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains(r#""}"#) {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok();
    writing.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""type":"error""#), "{answer}");
    for malformed in ["", "../customers", "cs_x?expand[]=customer"] {
        let body = json!({"policy": "cart-threshold", "checkout_session_id": malformed});
        let (status, e) = dry_run(body).await;
        assert_eq!(status, 400, "{malformed:?}: {e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("checkout_session_id: "),
            "{e}"
        );
    }

    // Nothing was written: no POST reached the session, its discount is untouched,
    // and no audit record was made.
    assert!(stripe.updates_of(&id).await.is_empty());
    let posts: Vec<Value> = stripe
        .requests()
        .await
        .into_iter()
        .filter(|r| {
            r["method"] == "POST"
                && r["path"] != "/v1/checkout/sessions"
                && r["path"] != "/v1/customers"
        })
        .collect();
    assert!(posts.is_empty(), "{posts:?}");
    assert_eq!(
        stripe.get_session(&id).await["total_details"]["amount_discount"],
        0
    );
    assert_eq!(host.get_json("/admin/decisions").await, json!([]));
}

#[tokio::test]
async fn connections_are_shared_out_across_the_serving_threads() {
    let stripe = Stripe::start().await;
    let dir = policy_dir(&["cart-threshold"]);
    let host = Host::start(&stripe.url(), dir.path(), "serving_threads = 3\n");
    let before = scrape(&host).await;
    let handed = |text: &str| -> Vec<f64> {
        ["0", "1", "2"]
            .iter()
            .map(|t| sample(text, "discount_connections_total", &[("thread", t)]))
            .collect()
    };
    // Six connections (a client each), two requests on each; one session per connection
    // and the same session from two connections at once.
    let shared = stripe.session("usd", &[(6_000, 2)], None).await;
    let mut calls = Vec::new();
    for i in 0..6 {
        let own = stripe.session("usd", &[(6_000 + i * 1_000, 2)], None).await;
        let url = format!("{}{ROUTE}", host.url);
        let shared = shared.clone();
        calls.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut answers = Vec::new();
            for id in [own, shared] {
                let r = client
                    .post(&url)
                    .json(&json!({"checkout_session_id": id}))
                    .send()
                    .await
                    .unwrap();
                answers.push((r.status().as_u16(), r.json::<Value>().await.unwrap()));
            }
            answers
        }));
    }
    for call in calls {
        for (status, body) in call.await.unwrap() {
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["value"]["decision"]["type"], "apply", "{body}");
        }
    }
    let after = scrape(&host).await;
    let per_thread: Vec<f64> = handed(&after)
        .iter()
        .zip(handed(&before))
        .map(|(a, b)| a - b)
        .collect();
    // The six clients and the scrape after them (a connection each).
    assert_eq!(per_thread.iter().sum::<f64>(), 7.0, "{after}");
    assert!(
        per_thread.iter().all(|n| (2.0..=3.0).contains(n)),
        "handed out in turn: {per_thread:?}"
    );
    // Twelve requests, one update each: the shared session was updated six times.
    assert_eq!(stripe.updates_of(&shared).await.len(), 6);
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let stripe = Stripe::start().await;
    let dir = policy_dir(&["cart-threshold"]);
    let mut host = Host::start(&stripe.url(), dir.path(), "");
    let id = stripe.session("usd", &[(6_000, 2)], None).await;
    // The retrieve stalls, so the request is in flight when SIGTERM arrives.
    stripe
        .fault(json!({"method": "GET", "path": format!("/v1/checkout/sessions/{id}"), "count": 1, "delay_ms": 1500}))
        .await;
    let url = format!("{}{ROUTE}", host.url);
    let in_flight = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(url)
            .json(&json!({"checkout_session_id": id}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    // Wait until the host's retrieve reached the emulator and is stalled there.
    wait_fault_taken(&stripe).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &host.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, body) = in_flight.await.unwrap();
    assert_eq!(code, 200, "the in-flight request finished: {body}");
    assert_eq!(body["value"]["decision"]["type"], "apply");
    let exit = host
        .wait_exit(Duration::from_secs(15))
        .expect("the host exits after draining");
    assert!(exit.success(), "{exit:?}");
    assert!(host.logs().contains("draining"));
}

/// Waits until every armed fault has been taken by a request.
async fn wait_fault_taken(stripe: &Stripe) {
    for _ in 0..500 {
        let faults: Value = stripe
            .http
            .get(format!("{}/_emulator/faults", stripe.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let armed = faults
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["remaining"].as_u64().unwrap_or(0) > 0);
        if !armed {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the host never reached the stalled Stripe call");
}

#[tokio::test]
async fn requests_carry_an_id_in_json_logs() {
    let stripe = Stripe::start().await;
    let dir = policy_dir(&["cart-threshold"]);
    let host = Host::start_env(
        &stripe.url(),
        dir.path(),
        "",
        &[("DISCOUNT_HOST_LOG_FORMAT", "json")],
    );
    let id = stripe.session("usd", &[(6_000, 2)], None).await;
    let r = host
        .http
        .post(format!("{}{ROUTE}", host.url))
        .header("x-request-id", "ops-test-req-1")
        .json(&json!({"checkout_session_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "ops-test-req-1");
    let generated = host
        .http
        .get(format!("{}/healthz", host.url))
        .send()
        .await
        .unwrap();
    assert!(generated.headers()["x-request-id"].len() >= 16);

    let logs = host.wait_for_log("storefront request served").await;
    let served: Value = logs
        .lines()
        .filter(|l| l.contains("storefront request served"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .next()
        .unwrap();
    assert_eq!(served["span"]["request_id"], "ops-test-req-1", "{served}");
    assert_eq!(served["span"]["session"], id.as_str(), "{served}");
    assert_eq!(served["span"]["route"], ROUTE, "{served}");
}

/// Opens a raw connection to the host and sends `bytes`, leaving it open.
async fn slow_client(host: &Host, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let addr = host.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// What the host sends on `stream` before it closes it, waiting at most `within`.
async fn answer_before_close(stream: &mut tokio::net::TcpStream, within: Duration) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut answer = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .expect("the host closes the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Clients that send their request slowly are cut off (headers) or answered 408 (body),
/// and a connection that never finishes cannot hold a shutdown past its grace.
#[tokio::test]
async fn slow_clients_are_cut_off_and_cannot_hold_a_shutdown() {
    let stripe = Stripe::start().await;
    let dir = policy_dir(&["cart-threshold"]);
    let config = "header_read_timeout_ms = 500\nbody_read_timeout_ms = 500\n";
    let host = Host::start(&stripe.url(), dir.path(), config);
    let request = format!("POST {ROUTE} HTTP/1.1\r\nHost: shop\r\n");
    let mut headers_only = slow_client(&host, request.as_bytes()).await;
    let body = format!("{request}Content-Length: 100\r\n\r\n{{\"checkout");
    let mut partial_body = slow_client(&host, body.as_bytes()).await;
    let answer = answer_before_close(&mut partial_body, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("The request did not arrive in time."),
        "{answer}"
    );
    let answer = answer_before_close(&mut headers_only, Duration::from_secs(5)).await;
    assert!(!answer.contains(" 200 "), "{answer}");
    // The host still serves.
    let id = stripe.session("usd", &[(6_000, 2)], None).await;
    assert_eq!(
        host.post(ROUTE, json!({"checkout_session_id": id}))
            .await
            .status,
        200
    );

    // With no read timeouts to speak of, a stuck client meets the shutdown grace.
    let config = "header_read_timeout_ms = 600000\nbody_read_timeout_ms = 600000\n\
                  shutdown_grace_ms = 1000\n";
    let mut host = Host::start(&stripe.url(), dir.path(), config);
    let _stuck = slow_client(&host, body.as_bytes()).await;
    let _idle = slow_client(&host, request.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &host.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = host
        .wait_exit(Duration::from_secs(10))
        .expect("the host exits once the grace is over");
    assert!(exit.success(), "{exit:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    host.wait_for_log("shutdown grace over").await;
}

/// The main job as `scripts/demo.sh` runs it: no Stripe key, so the embedded emulator
/// with demo data. The printed "Try it" command works, routes print in order, and every
/// promo code of the example (including the existing coupon `VIP` names) applies.
#[tokio::test]
async fn the_demo_runs_on_the_embedded_emulator() {
    let dir = policy_dir(&["cart-threshold", "c-cart-threshold", "promo-code"]);
    let config = "[emulator]\nlisten = \"127.0.0.1:0\"\n";
    let env = [("STRIPE_SECRET_KEY", ""), ("STRIPE_API_BASE", "")];
    let host = Host::start_env("", dir.path(), config, &env);
    let mut printed = host.stdout();
    for _ in 0..100 {
        if printed.contains("Try it:") && printed.contains("-d '") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        printed = host.stdout();
    }
    assert!(printed.contains("stripe=http://127.0.0.1:"), "{printed}");
    let routes: Vec<&str> = printed
        .lines()
        .filter_map(|l| l.trim().strip_prefix("route POST "))
        .collect();
    let mut sorted = routes.clone();
    sorted.sort();
    assert_eq!(routes, sorted, "{printed}");
    assert_eq!(routes.len(), 3, "{printed}");
    // The README's route is the one to try, with the first demo session.
    let try_it = printed
        .lines()
        .find(|l| l.contains("curl -s -X POST"))
        .unwrap_or_else(|| panic!("{printed}"));
    assert!(
        try_it.contains(&format!("{}/apply-cart-discount ", host.url)),
        "{try_it}"
    );
    let session = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("demo session "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{printed}"))
        .to_string();
    assert!(try_it.contains(&session), "{try_it}");
    let tried = host
        .post(
            "/apply-cart-discount",
            json!({"checkout_session_id": session}),
        )
        .await;
    assert_eq!(tried.status, 200, "{:?}", tried.body);
    for (code, discount) in [("SPRING15", 1_800), ("TENOFF", 1_000), ("VIP", 3_000)] {
        let body = json!({"checkout_session_id": session, "promo_code": code});
        let answer = host.post("/apply-promo-code", body).await;
        assert_eq!(answer.status, 200, "{code}: {:?}", answer.body);
        assert_eq!(
            answer.body["value"]["session"]["amount_discount"], discount,
            "{code}"
        );
    }
}
