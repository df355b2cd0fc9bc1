//! The adversarial suite: purpose-built hostile policies (`testing/policies`, built into
//! `target/test-policies` by `scripts/build-test-policies.sh`) run through the real host.
//!
//! For each: the storefront gets a generic error, no Stripe update is made, a healthy
//! policy (cart-threshold) served at the same time keeps answering correctly, and the
//! event is logged with the policy's name and version. Components the host must refuse
//! are refused at load time, with a status message naming the problem.

mod common;

use common::{copy_policy, test_policies, Answer, Host, Stripe};
use serde_json::{json, Value};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

/// What the storefront sees when a policy fails or the guard refuses its decision.
const GENERIC: &str = "We could not update your discounts. Please try again.";
/// Words of internal detail the storefront must never see.
const INTERNAL: &[&str] = &[
    "fuel",
    "trap",
    "memory",
    "deadline",
    "guard",
    "policy",
    "wasm",
    "percent",
    "currency",
    "metadata",
    "unreachable",
    "stack",
];
/// A deadline no scheduling delay reaches, where a test expects another limit to hit first.
const SLOW_OK: &str = "timeout_ms = 10_000";
/// The healthy policy's route.
const HEALTHY: &str = "/apply-cart-discount";

/// Installs the hostile component as policy `name` in `mode`, serving `/<name>`,
/// with extra `[limits]` lines.
fn install_hostile(dir: &Path, name: &str, mode: &str, limits: &str) {
    common::install_policy(
        dir,
        name,
        &std::fs::read(test_policies().join("hostile.wasm")).unwrap(),
        &format!("routes = [\"/{name}\"]\n[config]\nmode = \"{mode}\"\n[limits]\n{limits}\n"),
    );
}

/// Installs a component the host must refuse (`file` in target/test-policies) as `name`.
fn install_refused(dir: &Path, name: &str, file: &str) {
    common::install_policy(
        dir,
        name,
        &std::fs::read(test_policies().join(format!("{file}.wasm"))).unwrap(),
        &format!("routes = [\"/{name}\"]\n"),
    );
}

/// A host serving cart-threshold and the hostile policy `mode` (named after it).
async fn setup(mode: &str, limits: &str) -> (Stripe, Host, common::tempdir::TempDir) {
    let stripe = Stripe::start().await;
    let dir = common::tempdir::TempDir::new();
    copy_policy("cart-threshold", dir.path());
    install_hostile(dir.path(), mode, mode, limits);
    let host = Host::start(&stripe.url(), dir.path(), "");
    (stripe, host, dir)
}

/// The serving (or last attempted) version of a policy, shortened as the logs print it.
async fn short_version(host: &Host, name: &str) -> String {
    let status = policy_status(host, name).await;
    let version = status["version"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            status["history"]
                .as_array()
                .and_then(|h| h.last())
                .and_then(|e| e["version"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no version for {name}: {status}"));
    version[..12].to_string()
}

/// One policy's entry of `GET /admin/policies`.
async fn policy_status(host: &Host, name: &str) -> Value {
    let all = host.get_json("/admin/policies").await;
    all.as_array()
        .unwrap_or_else(|| panic!("/admin/policies is not a list: {all}"))
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} missing from /admin/policies: {all}"))
}

/// Asserts a generic 500 that leaks nothing.
fn assert_generic_error(a: &Answer, what: &str) {
    assert_eq!(a.status, 500, "{what}: {:?}", a.body);
    assert_eq!(a.body["type"], "error", "{what}: {:?}", a.body);
    assert_eq!(a.body["message"], GENERIC, "{what}: {:?}", a.body);
    let text = a.body.to_string().to_ascii_lowercase();
    for word in INTERNAL {
        assert!(!text.contains(word), "{what}: leaks {word:?}: {text}");
    }
}

/// Healthy requests on fresh sessions while `hostile` runs; each must get cart-threshold's
/// 10 % (12.00 off 120.00) applied, exactly once.
async fn with_healthy_traffic<F: Future>(stripe: &Stripe, host: &Host, hostile: F) -> F::Output {
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(stripe.session("usd", &[(6_000, 2)], None).await);
    }
    let healthy = futures_join_all(
        sessions
            .iter()
            .map(|id| async move { host.post(HEALTHY, json!({"checkout_session_id": id})).await }),
    );
    let (out, answers) = tokio::join!(hostile, healthy);
    for (id, a) in sessions.iter().zip(answers) {
        assert_eq!(a.status, 200, "healthy request failed: {:?}", a.body);
        assert_eq!(a.body["value"]["session"]["amount_discount"], 1_200);
        assert_eq!(stripe.updates_of(id).await.len(), 1);
        assert_eq!(
            stripe.get_session(id).await["total_details"]["amount_discount"],
            1_200
        );
    }
    out
}

/// Joins futures concurrently; results in order (no extra dependency).
async fn futures_join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (f, result) in pending.iter_mut().zip(results.iter_mut()) {
            if result.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *result = Some(v),
                    Poll::Pending => done = false,
                }
            }
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    results.into_iter().map(Option::unwrap).collect()
}

/// Runs the hostile policy `mode` three times on one session while healthy traffic
/// flows; checks the storefront's error, that Stripe saw no update for the session,
/// and that the host logged one line with every one of `markers` and the policy's name
/// and version.
async fn assert_contained(mode: &str, limits: &str, markers: &[&str]) {
    let (stripe, host, _dir) = setup(mode, limits).await;
    let id = stripe.session("usd", &[(6_000, 2)], None).await;
    let route = format!("/{mode}");
    let answers = with_healthy_traffic(&stripe, &host, async {
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(host.post(&route, json!({"checkout_session_id": id})).await);
        }
        answers
    })
    .await;
    for a in &answers {
        assert_generic_error(a, mode);
    }
    assert!(
        stripe.updates_of(&id).await.is_empty(),
        "{mode}: an update reached Stripe"
    );
    let s = stripe.get_session(&id).await;
    assert_eq!(s["total_details"]["amount_discount"], 0, "{mode}: {s}");

    let version = short_version(&host, mode).await;
    let logs = host.wait_for_log(markers[markers.len() - 1]).await;
    assert!(
        logs.lines().any(|l| markers.iter().all(|m| l.contains(m))
            && l.contains(&format!("policy={mode}"))
            && l.contains(&format!("version={version}"))),
        "{mode}: no log line with {markers:?}, policy={mode} and version={version}"
    );

    // And the host still serves, after the hostile requests.
    with_healthy_traffic(&stripe, &host, async {}).await;
}

/// The policy failed in the sandbox.
const EVAL_FAILED: &str = "policy evaluation failed";
/// The guard refused the decision.
const GUARD_REFUSED: &str = "guard refused the decision";

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel() {
    assert_contained("infinite-loop", SLOW_OK, &[EVAL_FAILED, "ran out of fuel"]).await;
}

#[tokio::test]
async fn infinite_loop_without_fuel_limit_hits_the_deadline() {
    assert_contained(
        "infinite-loop",
        "fuel = 1_000_000_000_000_000\ntimeout_ms = 30",
        &[EVAL_FAILED, "exceeded its deadline of 30 ms"],
    )
    .await;
}

#[tokio::test]
async fn memory_growth_stops_at_the_cap() {
    assert_contained(
        "memory-growth",
        SLOW_OK,
        &[EVAL_FAILED, "memory cap of 10485760 bytes"],
    )
    .await;
}

#[tokio::test]
async fn deep_recursion_traps() {
    assert_contained("deep-recursion", "", &[EVAL_FAILED]).await;
}

#[tokio::test]
async fn panic_traps() {
    assert_contained("panic", "", &[EVAL_FAILED, "the policy trapped"]).await;
}

#[tokio::test]
async fn unreachable_traps() {
    assert_contained("unreachable", "", &[EVAL_FAILED, "the policy trapped"]).await;
}

#[tokio::test]
async fn huge_reject_message_is_refused() {
    assert_contained(
        "huge-message",
        SLOW_OK,
        &[EVAL_FAILED, "reject message of 100000 bytes"],
    )
    .await;
}

#[tokio::test]
async fn too_many_metadata_entries_are_refused() {
    assert_contained(
        "metadata-flood",
        SLOW_OK,
        &[EVAL_FAILED, "1000 coupon metadata entries"],
    )
    .await;
}

#[tokio::test]
async fn huge_coupon_name_is_refused_by_the_guard() {
    assert_contained(
        "huge-coupon-name",
        "",
        &[GUARD_REFUSED, "rule=\"invalid_name\""],
    )
    .await;
}

#[tokio::test]
async fn huge_coupon_id_is_refused_by_the_guard() {
    assert_contained(
        "huge-coupon-id",
        "",
        &[GUARD_REFUSED, "rule=\"invalid_coupon_id\""],
    )
    .await;
}

#[tokio::test]
async fn nan_percent_off_is_refused_by_the_guard() {
    assert_contained(
        "nan-percent",
        "",
        &[GUARD_REFUSED, "rule=\"percent_out_of_range\""],
    )
    .await;
}

#[tokio::test]
async fn negative_percent_off_is_refused_by_the_guard() {
    assert_contained(
        "negative-percent",
        "",
        &[GUARD_REFUSED, "rule=\"percent_out_of_range\""],
    )
    .await;
}

#[tokio::test]
async fn amount_off_above_subtotal_is_refused_by_the_guard() {
    assert_contained(
        "amount-above-subtotal",
        "",
        &[GUARD_REFUSED, "rule=\"amount_above_subtotal\""],
    )
    .await;
}

#[tokio::test]
async fn amount_off_in_the_wrong_currency_is_refused_by_the_guard() {
    assert_contained(
        "wrong-currency",
        "",
        &[GUARD_REFUSED, "rule=\"currency_mismatch\""],
    )
    .await;
}

#[tokio::test]
async fn merchant_caps_hold() {
    // cart-threshold's 12.00 off 120.00 is over an 11.00 cap (written in upper case):
    // refused. 10.50 off 105.00 is under it: applied.
    let stripe = Stripe::start().await;
    let dir = common::tempdir::TempDir::new();
    copy_policy("cart-threshold", dir.path());
    let host = Host::start(
        &stripe.url(),
        dir.path(),
        "[caps]\nmax_percent_off = 50.0\nmax_amount_off = { USD = 1100 }\n",
    );
    let big = stripe.session("usd", &[(6_000, 2)], None).await;
    let a = host
        .post(HEALTHY, json!({"checkout_session_id": big}))
        .await;
    assert_generic_error(&a, "above the merchant cap");
    assert!(stripe.updates_of(&big).await.is_empty());
    host.wait_for_log("rule=\"above_merchant_cap\"").await;
    assert!(host.logs().contains("rule=\"above_merchant_cap\""));

    let small = stripe.session("usd", &[(5_250, 2)], None).await;
    let a = host
        .post(HEALTHY, json!({"checkout_session_id": small}))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["value"]["session"]["amount_discount"], 1_050);
}

#[tokio::test]
async fn log_flood_is_bounded() {
    let (stripe, host, _dir) = setup("log-flood", SLOW_OK).await;
    let id = stripe.session("usd", &[(6_000, 2)], None).await;
    let a = with_healthy_traffic(&stripe, &host, async {
        host.post("/log-flood", json!({"checkout_session_id": id}))
            .await
    })
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["value"]["decision"]["type"], "keep");
    assert!(stripe.updates_of(&id).await.is_empty());
    host.wait_for_log("policy=log-flood").await;
    let records = host
        .logs()
        .lines()
        .filter(|l| l.contains("policy log:") && l.contains("policy=log-flood"))
        .count();
    assert!(
        (1..=100).contains(&records),
        "{records} log records forwarded; the limit is 100"
    );
}

#[tokio::test]
async fn every_request_gets_a_fresh_instance() {
    let (stripe, host, _dir) = setup("count-calls", "").await;
    let id = stripe.session("usd", &[(6_000, 2)], None).await;
    for _ in 0..5 {
        let a = host
            .post("/count-calls", json!({"checkout_session_id": id}))
            .await;
        assert_eq!(a.status, 422, "{:?}", a.body);
        assert_eq!(a.body["message"], "call 1");
    }
    assert!(stripe.updates_of(&id).await.is_empty());
}

/// The refused components, their policy names and what `last_error` must say.
const REFUSED: &[(&str, &str, &str)] = &[
    ("ungranted-import", "ungranted-import", "evil:net/socket"),
    (
        "wrong-world",
        "wrong-world",
        "not a stripe-discount:policy/discount-policy world",
    ),
    (
        "not-a-component",
        "not-a-component",
        "a core WebAssembly module, not a component",
    ),
];

/// Asserts every refused component is reported, logged and serves nothing.
async fn assert_refused(host: &Host, extra: &[(&str, &str)]) {
    for (name, expected) in REFUSED
        .iter()
        .map(|(n, _, e)| (*n, *e))
        .chain(extra.iter().copied())
    {
        let status = policy_status(host, name).await;
        assert!(status["version"].is_null(), "{name} serves: {status}");
        let error = status["last_error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{name}: last_error {error:?}");
        let version = short_version(host, name).await;
        let logs = host.wait_for_log(&format!("policy={name}")).await;
        assert!(
            logs.lines().any(|l| l.contains("policy failed to load")
                && l.contains(&format!("policy={name}"))
                && l.contains(&version)),
            "{name}: no load failure logged with its name and version {version}"
        );
        let a = host
            .post(
                &format!("/{name}"),
                json!({"checkout_session_id": "cs_test_x"}),
            )
            .await;
        assert_eq!(a.status, 404, "{name} is routed: {:?}", a.body);
    }
}

#[tokio::test]
async fn refused_at_start() {
    let stripe = Stripe::start().await;
    let dir = common::tempdir::TempDir::new();
    copy_policy("cart-threshold", dir.path());
    for (name, file, _) in REFUSED {
        install_refused(dir.path(), name, file);
    }
    common::install_policy(
        dir.path(),
        "not-wasm",
        b"console.log('hi')",
        "routes = [\"/not-wasm\"]\n",
    );
    let host = Host::start(&stripe.url(), dir.path(), "");
    assert_refused(&host, &[("not-wasm", "not a WebAssembly component")]).await;
    let ungranted = policy_status(&host, "ungranted-import").await;
    assert!(ungranted["last_error"]
        .as_str()
        .unwrap()
        .contains("imports what the host does not grant"));
    with_healthy_traffic(&stripe, &host, async {}).await;
}

#[tokio::test]
async fn refused_on_reload_while_serving() {
    let stripe = Stripe::start().await;
    let dir = common::tempdir::TempDir::new();
    copy_policy("cart-threshold", dir.path());
    let host = Host::start(&stripe.url(), dir.path(), "");
    let report = with_healthy_traffic(&stripe, &host, async {
        for (name, file, _) in REFUSED {
            install_refused(dir.path(), name, file);
        }
        host.reload().await
    })
    .await;
    let failed = report["failed"].to_string();
    for (name, _, _) in REFUSED {
        assert!(failed.contains(name), "{name} not in failed: {report}");
    }
    assert_refused(&host, &[]).await;
    // A good version that turns bad keeps serving the good one.
    let good = policy_status(&host, "cart-threshold").await["version"].clone();
    std::fs::copy(
        test_policies().join("ungranted-import.wasm"),
        dir.path().join("cart-threshold.wasm"),
    )
    .unwrap();
    host.reload().await;
    let status = policy_status(&host, "cart-threshold").await;
    assert_eq!(status["version"], good);
    assert!(status["last_error"]
        .as_str()
        .unwrap_or_default()
        .contains("evil:net/socket"));
    with_healthy_traffic(&stripe, &host, async {}).await;
}

#[tokio::test]
async fn host_limits_are_defaults_and_policies_override_them() {
    let stripe = Stripe::start().await;
    let dir = common::tempdir::TempDir::new();
    copy_policy("cart-threshold", dir.path());
    install_hostile(dir.path(), "grow-default", "memory-growth", SLOW_OK);
    install_hostile(
        dir.path(),
        "grow-own",
        "memory-growth",
        "memory_bytes = 6_291_456\ntimeout_ms = 10_000",
    );
    let host = Host::start(
        &stripe.url(),
        dir.path(),
        "[limits]\nmemory_bytes = 4_194_304\n",
    );
    let id = stripe.session("usd", &[(6_000, 2)], None).await;
    for (name, cap) in [("grow-default", 4_194_304), ("grow-own", 6_291_456)] {
        let a = host
            .post(&format!("/{name}"), json!({"checkout_session_id": id}))
            .await;
        assert_generic_error(&a, name);
        let needle = format!("memory cap of {cap} bytes");
        let logs = host.wait_for_log(&needle).await;
        assert!(
            logs.lines()
                .any(|l| l.contains(&needle) && l.contains(&format!("policy={name}"))),
            "{name}: no {needle:?} log"
        );
    }
    assert!(stripe.updates_of(&id).await.is_empty());
    with_healthy_traffic(&stripe, &host, async {}).await;
}

/// `discount_policy_evaluations_total` for `placement`, from the host's metrics.
async fn evaluations(host: &Host, placement: &str) -> u64 {
    let text = host.get_text("/metrics").await;
    let series = format!("discount_policy_evaluations_total{{placement=\"{placement}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_reliably_quick_policy_runs_inline_and_one_turning_slow_is_moved_off_the_runtime() {
    const SPIN_MS: u64 = 2_000;
    let stripe = Stripe::start().await;
    let dir = common::tempdir::TempDir::new();
    copy_policy("cart-threshold", dir.path());
    install_hostile(
        dir.path(),
        "spin-when-asked",
        "spin-when-asked",
        &format!("fuel = 1_000_000_000_000_000\ntimeout_ms = {SPIN_MS}"),
    );
    // Two runtime workers, hence one inline slot, whatever the machine's cores.
    let host = Host::start_env(
        &stripe.url(),
        dir.path(),
        "",
        &[("TOKIO_WORKER_THREADS", "2")],
    );
    let id = stripe.session("usd", &[(6_000, 2)], None).await;
    let route = "/spin-when-asked";

    // A new version runs on the blocking pool until its quick streak is complete.
    let mut quick_runs = 0;
    while evaluations(&host, "inline").await == 0 {
        quick_runs += 1;
        assert!(
            quick_runs <= 320,
            "never ran inline after {quick_runs} runs"
        );
        let a = host.post(route, json!({"checkout_session_id": id})).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
    assert!(
        quick_runs > policy_engine::engine::QUICK_STREAK as usize,
        "inline after {quick_runs} runs"
    );

    // Now it spins: stopped inline at the budget, then run on the blocking pool to its
    // deadline, while healthy traffic is served.
    let (inline, blocking, cut) = (
        evaluations(&host, "inline").await,
        evaluations(&host, "blocking").await,
        evaluations(&host, "inline_cut").await,
    );
    let slow_started = std::time::Instant::now();
    let slow = host.post(route, json!({"checkout_session_id": id, "spin": true}));
    let healthy = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        with_healthy_traffic(&stripe, &host, async {}).await;
        slow_started.elapsed()
    };
    let (slow, healthy_done) = tokio::join!(slow, healthy);
    assert_generic_error(&slow, "spin-when-asked");
    // Healthy traffic's policy is a new version, so its 6 evaluations were on the pool.
    assert_eq!(evaluations(&host, "inline_cut").await, cut + 1);
    assert_eq!(evaluations(&host, "inline").await, inline);
    assert_eq!(evaluations(&host, "blocking").await, blocking + 1 + 6);
    assert!(
        slow_started.elapsed() >= Duration::from_millis(SPIN_MS),
        "the spin was cut short"
    );
    assert!(
        healthy_done < Duration::from_millis(SPIN_MS),
        "healthy traffic waited for the spinning policy: done after {healthy_done:?}"
    );

    // The slow run ended the streak: the next evaluation goes to the blocking pool.
    let (inline, blocking) = (
        evaluations(&host, "inline").await,
        evaluations(&host, "blocking").await,
    );
    let a = host.post(route, json!({"checkout_session_id": id})).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(evaluations(&host, "inline").await, inline);
    assert_eq!(evaluations(&host, "blocking").await, blocking + 1);
}

/// An instance's teardown runs after its decision is handed back: on the serving thread
/// (inline) or on the blocking pool. With a pool of two instances, concurrent requests on
/// both paths all get their discount, so every teardown gives its slot back.
#[tokio::test]
async fn teardowns_after_the_decision_give_every_pool_slot_back() {
    let stripe = Stripe::start().await;
    let dir = common::policy_dir(&["cart-threshold"]);
    let host = Host::start(&stripe.url(), dir.path(), "[pool]\ninstances = 2\n");
    let mut sessions = Vec::new();
    for _ in 0..8 {
        sessions.push(stripe.session("usd", &[(6_000, 2)], None).await);
    }
    let mut rounds = 0;
    while evaluations(&host, "inline").await < 16 {
        rounds += 1;
        assert!(rounds <= 100, "fewer than 16 inline after {rounds} rounds");
        let answers = futures_join_all(
            sessions
                .iter()
                .map(|id| host.post(HEALTHY, json!({"checkout_session_id": id}))),
        )
        .await;
        for a in answers {
            assert_eq!(a.status, 200, "{:?}", a.body);
            assert_eq!(a.body["value"]["session"]["amount_discount"], 1_200);
        }
    }
    assert!(evaluations(&host, "blocking").await >= policy_engine::engine::QUICK_STREAK as u64);
    for id in &sessions {
        assert_eq!(stripe.updates_of(id).await.len(), rounds);
    }
}
