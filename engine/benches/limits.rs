//! What the sandbox limits cost: the same policy evaluated (fresh instance, call) on the
//! normal engine (fuel metering, epoch deadline) and on `PolicyEngine::unmetered`, in the
//! same run. After criterion's report it prints the medians of its own interleaved loop
//! and their ratio, limits on / off.
//!
//! Cases: cart-threshold (the host's typical policy, from `scripts/build-policies.sh`) and,
//! when `scripts/build-test-policies.sh` was run, a compute-bound one (the hostile policy
//! formatting 1,000 metadata entries), where fuel metering costs the most.
//!
//! Run: `cargo bench --release -p policy-engine --bench limits`

use criterion::Criterion;
use policy_engine::{mapping, CheckoutSession, Clock, EngineConfig, Policy, PolicyEngine};
use policy_engine::{PolicyRequest, PolicySettings};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn target() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// A session of 5 line items, 150.00 in total: over cart-threshold's threshold.
fn session() -> CheckoutSession {
    let items: Vec<serde_json::Value> = (0..5)
        .map(|i| {
            serde_json::json!({
                "id": format!("li_{i}"), "object": "item", "amount_subtotal": 3000,
                "amount_total": 3000, "amount_discount": 0, "amount_tax": 0, "currency": "usd",
                "description": format!("Product {i}"), "quantity": 1,
                "price": {"id": format!("price_{i}"), "object": "price", "unit_amount": 3000,
                          "currency": "usd", "product": format!("prod_{i}")}
            })
        })
        .collect();
    let json = serde_json::json!({
        "id": "cs_test_limits", "object": "checkout.session", "livemode": false,
        "mode": "payment", "status": "open", "currency": "usd",
        "amount_subtotal": 15000, "amount_total": 15000,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "line_items": {"object": "list", "has_more": false, "url": "/v1/x", "data": items},
        "discounts": [], "metadata": {}, "created": 1_764_000_000, "expires_at": 1_764_086_400
    });
    let stripe: stripe_checkout::CheckoutSession =
        serde_json::from_value(json).expect("session parses");
    mapping::checkout_session(&stripe)
}

/// One benchmark case: the policy on both engines.
struct Case {
    name: &'static str,
    on: Policy,
    off: Policy,
}

fn load(engine: &PolicyEngine, name: &str, wasm: &[u8], settings: &str) -> Policy {
    let settings = PolicySettings::from_toml(settings).expect("settings");
    engine.load(name, wasm, settings).expect("policy loads")
}

fn cases(on: &PolicyEngine, off: &PolicyEngine) -> Vec<Case> {
    let mut cases = Vec::new();
    let cart = target().join("policies/cart-threshold");
    let wasm = std::fs::read(cart.with_extension("wasm"))
        .expect("target/policies/cart-threshold.wasm: run scripts/build-policies.sh");
    let toml = std::fs::read_to_string(cart.with_extension("toml")).expect("settings");
    cases.push(Case {
        name: "cart-threshold",
        on: load(on, "cart-threshold", &wasm, &toml),
        off: load(off, "cart-threshold", &wasm, &toml),
    });
    if let Ok(wasm) = std::fs::read(target().join("test-policies/hostile.wasm")) {
        let toml = "routes = [\"/x\"]\n[config]\nmode = \"metadata-flood\"\n";
        cases.push(Case {
            name: "compute-bound",
            on: load(on, "compute-bound", &wasm, toml),
            off: load(off, "compute-bound", &wasm, toml),
        });
    }
    cases
}

fn evaluate(policy: &Policy, session: &CheckoutSession, request: &PolicyRequest) {
    // The compute-bound case ends in an output-size error by design: the work is the point.
    black_box(
        policy
            .evaluate(session, request, Clock::Fixed(1_764_000_000))
            .result,
    )
    .ok();
}

/// Median of `runs` timed evaluations, interleaving on and off so both see the same machine.
fn medians(case: &Case, s: &CheckoutSession, r: &PolicyRequest, runs: usize) -> (f64, f64) {
    let (mut on, mut off) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        let t = Instant::now();
        evaluate(&case.on, s, r);
        on.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        evaluate(&case.off, s, r);
        off.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut on), median(&mut off))
}

fn main() {
    let on = PolicyEngine::new(EngineConfig::default()).expect("engine");
    let off = PolicyEngine::unmetered(EngineConfig::default()).expect("unmetered engine");
    let cases = cases(&on, &off);
    let s = session();
    let r = mapping::policy_request("/apply-cart-discount", &serde_json::Map::new());

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();
    for case in &cases {
        let mut group = c.benchmark_group(format!("limits/{}", case.name));
        group.bench_function("on", |b| b.iter(|| evaluate(&case.on, &s, &r)));
        group.bench_function("off", |b| b.iter(|| evaluate(&case.off, &s, &r)));
        group.finish();
    }
    c.final_summary();

    println!("\nlimits on vs off (medians of 2,000 interleaved evaluations, fresh instance each):");
    for case in &cases {
        let (on_us, off_us) = medians(case, &s, &r, 2_000);
        println!(
            "  {:<15} on {on_us:8.1} µs   off {off_us:8.1} µs   ratio on/off {:.3}",
            case.name,
            on_us / off_us
        );
    }
}
