//! `fetch` against the Stripe emulator over loopback, `run` on what it saved, and
//! `replay` of a decision-log record on the fixture `fetch --from-log` saved.

mod common;

use common::*;
use policy_engine::audit::{self, Amounts, AuditRecord, Fuel, GuardVerdict, Timing};
use policy_engine::decision::{CouponDataView, DecisionView};
use serde_json::{json, Value};
use stripe_checkout::client::SESSION_EXPAND;
use stripe_checkout::{ClientConfig, StripeClient};
use stripe_emulator::Emulator;

/// Runs the runner off the async runtime (the emulator serves on it).
async fn runner_async(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        runner(&args)
    })
    .await
    .unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_saves_a_fixture_that_run_and_replay_accept() {
    let emulator = Emulator::new().start("127.0.0.1:0").await.unwrap();
    let url = emulator.base_url();
    let mut config = ClientConfig::new("sk_test_runner");
    config.api_base = url.clone();
    let client = StripeClient::new(config).unwrap();
    let customer = client
        .create_customer(
            &json!({"email": "ada@example.com", "metadata": {"tier": "gold"}}),
            None,
            None,
        )
        .await
        .unwrap()
        .body
        .id;
    // 12 line items: more than the 10 an expansion returns, so fetch must page.
    let line_items: Vec<Value> = (1..=12)
        .map(|i| json!({"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 1000 * i, "product_data": {"name": format!("Item {i}")}}}))
        .collect();
    let session_id = client
        .create_checkout_session(
            &json!({
                "mode": "payment", "ui_mode": "custom", "return_url": "https://example.com/r",
                "permissions": {"update_discounts": "server_only"},
                "customer": customer, "line_items": line_items,
            }),
            None,
            None,
        )
        .await
        .unwrap()
        .body
        .id;
    let subtotal: i64 = (1..=12).map(|i| 1000 * i).sum();

    // fetch
    let dir = TempDir::new("fetch");
    let fixture = dir.join("session.json");
    let out = runner_async(args(&[
        "fetch",
        &session_id,
        "--api-base",
        &url,
        "-o",
        &fixture,
    ]))
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("12 line items"), "{stdout}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    assert_eq!(saved["object"], "checkout.session");
    assert_eq!(saved["line_items"]["data"].as_array().unwrap().len(), 12);
    assert_eq!(saved["line_items"]["has_more"], false);
    assert_eq!(saved["customer"]["metadata"]["tier"], "gold");
    assert_eq!(saved["amount_subtotal"], subtotal);

    // run accepts it
    let wasm = component("loyalty-tier");
    let out = runner_async(args(&["run", &s(&wasm), "--fixture", &fixture, "--json"])).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["decision"]["coupon_data"]["percent_off"], 15.0);
    assert_eq!(v["totals"]["before"]["subtotal"], subtotal);
    assert_eq!(v["totals"]["after"]["discount"], subtotal * 15 / 100);

    // A decision-log record, as the host writes it, for this session.
    let session = client
        .retrieve_checkout_session_full(&session_id, SESSION_EXPAND, None)
        .await
        .unwrap()
        .body;
    // The host's retrieve and fetch share one function: every line item, typed.
    assert_eq!(session.line_items.as_ref().unwrap().data.len(), 12);
    // The host retrieves what the policy's `expand` lists, and digests that; replay
    // digests the fetched (fully expanded) fixture as the policy sees it: the same.
    let toml = std::fs::read_to_string(wasm.with_extension("toml")).unwrap();
    let expand = policy_engine::PolicySettings::from_toml(&toml)
        .unwrap()
        .expand;
    assert_eq!(expand.paths(), ["customer"]);
    let host_view = client
        .retrieve_checkout_session_full(&session_id, &expand.paths(), None)
        .await
        .unwrap()
        .body;
    assert!(host_view.line_items.is_none());
    let route = "/apply-loyalty-discount";
    let input = serde_json::Map::new();
    let request = policy_engine::mapping::policy_request(route, &input);
    let decision = DecisionView::Apply {
        coupon_data: Some(CouponDataView {
            name: Some("Gold member discount".into()),
            amount_off: None,
            currency: None,
            percent_off: Some(15.0),
            duration: None,
            metadata: [("loyalty_tier".to_string(), "gold".to_string())].into(),
        }),
        coupon: None,
    };
    let amounts = Amounts::from(&session);
    let record = AuditRecord {
        time: "2026-11-27T09:00:00.123Z".into(),
        request_id: "req_host_1".into(),
        route: route.into(),
        session_id: Some(session_id.clone()),
        livemode: Some(false),
        policy: Some("loyalty-tier".into()),
        version: Some(policy_engine::engine::content_hash(
            &std::fs::read(&wasm).unwrap(),
        )),
        settings_digest: Some(
            policy_engine::PolicySettings::from_toml(
                &std::fs::read_to_string(wasm.with_extension("toml")).unwrap(),
            )
            .unwrap()
            .digest(),
        ),
        input_digest: Some(audit::input_digest(&host_view, &request)),
        input: Some(input),
        customer: None,
        decision: Some(decision),
        guard: GuardVerdict::passed(),
        stripe_request_id: Some("req_update_1".into()),
        amounts_before: Some(amounts.clone()),
        amounts_after: Some(amounts),
        timing: Timing::default(),
        fuel: Some(Fuel {
            used: 30_000,
            budget: 11_000_000,
        }),
        outcome: "applied".into(),
        error: None,
    };
    let mut other = record.clone();
    other.session_id = Some("cs_test_someone_else".into());
    let log = dir.join("decisions.jsonl");
    std::fs::write(
        &log,
        format!(
            "{}\n{}\n",
            serde_json::to_string(&record).unwrap(),
            serde_json::to_string(&other).unwrap()
        ),
    )
    .unwrap();

    // fetch --from-log saves the session and the record side by side.
    let replay_dir = dir.join("replay");
    let out = runner_async(args(&[
        "fetch",
        &session_id,
        "--from-log",
        &log,
        "--out-dir",
        &replay_dir,
        "--api-base",
        &url,
    ]))
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let record_path = format!("{replay_dir}/{session_id}.record.json");
    assert!(std::path::Path::new(&format!("{replay_dir}/{session_id}.json")).exists());
    assert!(stdout.contains("log line 1"), "{stdout}");

    // replay: same component, same input, same decision.
    let out = runner_async(args(&["replay", &s(&wasm), "--record", &record_path])).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("version   same"), "{stdout}");
    assert!(stdout.contains("input     same"), "{stdout}");
    assert!(stdout.contains("decision  SAME as logged"), "{stdout}");
    assert!(!stdout.contains("replaying settings"), "{stdout}");
    // Other settings than the logged ones (a settings-only promotion) are named.
    let other_settings = [
        "replay",
        &s(&wasm),
        "--record",
        &record_path,
        "--config",
        "tier.gold=16",
    ];
    let out = runner_async(args(&other_settings)).await;
    let (stdout, _) = text(&out);
    assert!(stdout.contains("note: replaying settings "), "{stdout}");
    assert!(
        stdout.contains("now       2026-11-27T09:00:00Z"),
        "{stdout}"
    );

    // A logged decision the policy no longer makes: non-zero, with the difference.
    let mut changed = record.clone();
    if let Some(DecisionView::Apply {
        coupon_data: Some(c),
        ..
    }) = changed.decision.as_mut()
    {
        c.percent_off = Some(10.0);
    }
    let changed_path = dir.join("changed.record.json");
    std::fs::write(
        &changed_path,
        serde_json::to_string_pretty(&changed).unwrap(),
    )
    .unwrap();
    let fixture_path = format!("{replay_dir}/{session_id}.json");
    let out = runner_async(args(&[
        "replay",
        &s(&wasm),
        "--record",
        &changed_path,
        "--fixture",
        &fixture_path,
        "--json",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["same_decision"], false);
    assert_eq!(
        v["decision_diff"],
        json!(["coupon_data.percent_off: expected 10.0, got 15.0"])
    );

    // Without a key or an emulator, fetch says what to do.
    let out = runner_async(args(&["fetch", &session_id])).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("STRIPE_SECRET_KEY"), "{stderr}");

    emulator.shutdown().await;
}
