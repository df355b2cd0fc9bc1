//! Policy evaluation cost: a Rust policy on a 20-line-item session with customer
//! metadata, fresh isolated instance + call + decision guard, against the naive
//! approach (new Store, `Linker::instantiate` without `InstancePre`, call, drop,
//! default allocator) in the same run. Prints median and p99 from its own
//! measurement loop after criterion's report (criterion gives no p99).
//!
//! Needs `scripts/build-policies.sh`. Run: `cargo bench --release -p policy-engine --bench evaluate`
//! (`BENCH_POLICY=cart-threshold` picks the other example; `BENCH_POLICY_DIR` another dir;
//! `BENCH_BASELINE_POLICY_DIR` adds a row for the same policy from another build).
//!
//! Rows marked "full" hand the policy the whole session (line items, customer, coupons);
//! rows marked "expand" hand it what its settings' `expand` asks for, as the host does.

use criterion::Criterion;
use policy_engine::bindings::{self, stripe_discount::policy::host, DiscountPolicy};
use policy_engine::{
    guard, mapping, CheckoutSession, Clock, EngineConfig, Policy, PolicyEngine, PolicyRequest,
    PolicySettings, PoolSettings, Teardown,
};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store};

/// A Stripe Checkout Session as `GET /v1/checkout/sessions/:id?expand[]=line_items&expand[]=customer` returns it.
fn session_json(items: usize) -> Vec<u8> {
    let data: Vec<serde_json::Value> = (0..items)
        .map(|i| {
            serde_json::json!({
                "id": format!("li_{i:024}"), "object": "item",
                "amount_subtotal": 1500, "amount_total": 1500, "amount_discount": 0, "amount_tax": 0,
                "currency": "usd", "description": format!("Product {i}"), "quantity": 1,
                "price": {"id": format!("price_{i:024}"), "object": "price", "unit_amount": 1500,
                          "currency": "usd", "product": format!("prod_{i:024}")}
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "id": "cs_test_bench000000000000000000000000000000000000000000000000",
        "object": "checkout.session", "livemode": false, "mode": "payment", "status": "open",
        "currency": "usd", "amount_subtotal": 1500 * items, "amount_total": 1500 * items,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "customer": {"id": "cus_bench", "object": "customer", "email": "jenny@example.com",
                     "name": "Jenny Rosen",
                     "metadata": {"tier": "gold", "since": "2021-04-01", "segment": "vip"}},
        "customer_email": "jenny@example.com",
        "metadata": {"cart_id": "cart_123", "channel": "web"},
        "line_items": {"object": "list", "has_more": false, "url": "/v1/checkout/sessions/cs/line_items", "data": data},
        "discounts": [],
        "created": 1_764_000_000, "expires_at": 1_764_086_400
    }))
    .expect("session json")
}

fn policy_dir() -> PathBuf {
    std::env::var_os("BENCH_POLICY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/policies"))
}

struct Fixture {
    name: String,
    wasm: Vec<u8>,
    settings: PolicySettings,
    /// The retrieve's JSON with every expansion.
    json: Vec<u8>,
    /// The retrieve's JSON with the policy's expansions only.
    expand_json: Vec<u8>,
    /// The whole session.
    session: CheckoutSession,
    /// The session as the policy's `expand` leaves it.
    expanded: CheckoutSession,
    request: PolicyRequest,
}

fn fixture(name: &str) -> Option<Fixture> {
    let dir = policy_dir();
    let wasm = std::fs::read(dir.join(format!("{name}.wasm"))).ok()?;
    let toml = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap_or_default();
    let settings = PolicySettings::from_toml(&toml).expect("policy settings");
    let json = session_json(20);
    let stripe: stripe_checkout::CheckoutSession =
        serde_json::from_slice(&json).expect("session parses");
    let lean = mapping::expanded_copy(&stripe, &settings.expand);
    let body = serde_json::json!({"promo_code": "SPRING"});
    Some(Fixture {
        name: name.to_string(),
        wasm,
        session: mapping::checkout_session(&stripe),
        expanded: mapping::checkout_session(&lean),
        expand_json: serde_json::to_vec(&lean).expect("session json"),
        settings,
        request: mapping::policy_request("/apply", body.as_object().expect("object")),
        json,
    })
}

/// An engine with the runner's compile cache, so JS and Python components (and their
/// warm-up snapshots) compile once across runs.
fn engine_with(pool: PoolSettings) -> PolicyEngine {
    PolicyEngine::new(EngineConfig {
        pool,
        cache_dir: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/policy-cache")),
        ..EngineConfig::default()
    })
    .expect("engine")
}

/// The policies' clock: `BENCH_NOW` (Unix seconds), else 2025-11-24 (before the JS
/// example's offer window; `BENCH_NOW=1795824000` falls inside it).
fn now() -> i64 {
    static NOW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *NOW.get_or_init(|| {
        std::env::var("BENCH_NOW")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_764_000_000)
    })
}

/// The host's path: fresh instance from the pool, call, guard.
fn evaluate_and_guard(
    policy: &Policy,
    session: &CheckoutSession,
    f: &Fixture,
    caps: &policy_engine::Caps,
) -> bool {
    // The teardown drops with the rest of the tuple, at the end of this statement.
    evaluate_deferring_and_guard(policy, session, f, caps).0
}

/// [`evaluate_and_guard`] as the host runs it: the instance's teardown (its pool slot's
/// reset) is returned to be done after the decision.
fn evaluate_deferring_and_guard(
    policy: &Policy,
    session: &CheckoutSession,
    f: &Fixture,
    caps: &policy_engine::Caps,
) -> (bool, Teardown) {
    let (eval, teardown) =
        policy.evaluate_deferring_teardown(session, &f.request, Clock::Fixed(now()));
    let decision = eval.result.expect("decision");
    (guard::check(&decision, session, caps).is_ok(), teardown)
}

/// What a policy sees of the host in the naive approach.
struct NaiveState {
    config: BTreeMap<String, String>,
}

impl host::Host for NaiveState {
    fn log(&mut self, _: host::LogLevel, message: String, _: Vec<(String, String)>) {
        black_box(message);
    }
    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
    fn config_entries(&mut self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    fn now(&mut self) -> i64 {
        now()
    }
}

impl bindings::stripe_discount::policy::types::Host for NaiveState {}

/// The naive approach: default allocator, no `InstancePre`, same sandbox (fuel, epoch).
struct Naive {
    engine: Engine,
    linker: Linker<NaiveState>,
    component: Component,
    config: BTreeMap<String, String>,
}

impl Naive {
    fn new(f: &Fixture) -> Self {
        Self::with_config(f, Config::new())
    }

    fn with_config(f: &Fixture, mut config: Config) -> Self {
        config.consume_fuel(true).epoch_interruption(true);
        let engine = Engine::new(&config).unwrap_or_else(|e| panic!("engine: {e:#}"));
        let mut linker = Linker::new(&engine);
        DiscountPolicy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).expect("linker");
        let component = Component::new(&engine, &f.wasm).expect("compiles");
        Naive {
            engine,
            linker,
            component,
            config: f.settings.config_text(),
        }
    }

    fn store(&self) -> Store<NaiveState> {
        let mut store = Store::new(
            &self.engine,
            NaiveState {
                config: self.config.clone(),
            },
        );
        store.set_fuel(11_000_000).expect("fuel");
        store.set_epoch_deadline(1_000);
        store
    }

    fn evaluate_and_guard(
        &self,
        session: &CheckoutSession,
        f: &Fixture,
        caps: &policy_engine::Caps,
    ) -> bool {
        let mut store = self.store();
        let instance = self
            .linker
            .instantiate(&mut store, &self.component)
            .expect("instantiates");
        let policy = DiscountPolicy::new(&mut store, &instance).expect("world");
        let decision = policy
            .call_evaluate(&mut store, session, &f.request)
            .expect("decision");
        guard::check(&decision, session, caps).is_ok()
    }
}

/// Where the time of one pooled evaluation goes: Store::new, instantiate, call, drop
/// (of the component as built, without `warm_up`).
fn breakdown(f: &Fixture, session: &CheckoutSession, label: &str, pool: &PoolSettings, n: usize) {
    let mut config = Config::new();
    let reset = pool.apply(&mut config);
    if std::env::var_os("BENCH_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let raw = Naive::with_config(f, config);
    let pre = raw.linker.instantiate_pre(&raw.component).expect("pre");
    let mut pre =
        bindings::CheckedPolicyPre::new(bindings::DiscountPolicyPre::new(pre).expect("world"));
    pre.check(raw.store()).expect("checks");
    let mut t = [Duration::ZERO; 4];
    let run = |t: &mut [Duration; 4]| {
        let t0 = Instant::now();
        let mut store = raw.store();
        let t1 = Instant::now();
        let policy = pre.instantiate(&mut store).expect("instantiates");
        let t2 = Instant::now();
        black_box(
            policy
                .call_evaluate(&mut store, session, &f.request)
                .expect("decision"),
        );
        let t3 = Instant::now();
        drop(store);
        let t4 = Instant::now();
        t[0] += t1 - t0;
        t[1] += t2 - t1;
        t[2] += t3 - t2;
        t[3] += t4 - t3;
    };
    for _ in 0..n / 10 {
        run(&mut [Duration::ZERO; 4]);
    }
    for _ in 0..n {
        run(&mut t);
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "pooled breakdown, {label} (mean µs): Store::new {:.2}, instantiate {:.2}, call {:.2}, drop {:.2}; memory reset: {}",
        us(t[0]),
        us(t[1]),
        us(t[2]),
        us(t[3]),
        reset.map_or("none".to_string(), |r| r.to_string())
    );
}

fn bench(c: &mut Criterion, f: &Fixture, pooled: &Policy, on_demand: &Policy, naive: &Naive) {
    let caps = policy_engine::Caps::default();
    let mut g = c.benchmark_group(format!("evaluate/{}", f.name));
    g.bench_function("pooled_fresh_instance+guard", |b| {
        b.iter(|| evaluate_and_guard(pooled, &f.session, f, &caps))
    });
    g.bench_function("pooled_fresh_instance+guard/expand", |b| {
        b.iter(|| evaluate_and_guard(pooled, &f.expanded, f, &caps))
    });
    // Each teardown right after its sample: one held back per iteration would exhaust the
    // pool's slots (which is why criterion's `iter_with_large_drop` cannot be used).
    g.bench_function("pooled_fresh_instance+guard/expand/teardown_after", |b| {
        b.iter_custom(|iterations| {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                let t = Instant::now();
                let out = evaluate_deferring_and_guard(pooled, &f.expanded, f, &caps);
                spent += t.elapsed();
                drop(black_box(out));
            }
            spent
        })
    });
    g.bench_function("on_demand_fresh_instance+guard", |b| {
        b.iter(|| evaluate_and_guard(on_demand, &f.session, f, &caps))
    });
    g.bench_function("naive_baseline", |b| {
        b.iter(|| naive.evaluate_and_guard(&f.session, f, &caps))
    });
    g.finish();
    let mut g = c.benchmark_group("mapping");
    g.bench_function("stripe_json_parse+map_20_items", |b| {
        b.iter(|| {
            let s: stripe_checkout::CheckoutSession =
                serde_json::from_slice(black_box(&f.json)).expect("parses");
            mapping::checkout_session(&s)
        })
    });
    g.bench_function("stripe_json_parse+map/expand", |b| {
        b.iter(|| {
            let s: stripe_checkout::CheckoutSession =
                serde_json::from_slice(black_box(&f.expand_json)).expect("parses");
            mapping::checkout_session(&s)
        })
    });
    let parsed: stripe_checkout::CheckoutSession = serde_json::from_slice(&f.json).expect("parses");
    g.bench_function("map_only_20_items", |b| {
        b.iter(|| mapping::checkout_session(black_box(&parsed)))
    });
    g.finish();
}

/// Per-iteration samples: median, p99 and mean, in microseconds. What `run` returns is
/// dropped after its sample is taken.
fn percentiles<T>(mut run: impl FnMut() -> T, iterations: usize) -> (f64, f64, f64) {
    for _ in 0..iterations / 10 {
        run();
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let out = run();
        samples.push(t.elapsed());
        drop(out);
    }
    samples.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64;
    (
        us(samples[samples.len() / 2]),
        us(samples[samples.len() * 99 / 100]),
        mean,
    )
}

fn report(f: &Fixture, pooled: &Policy, on_demand: &Policy, naive: &Naive) {
    let caps = policy_engine::Caps::default();
    let n: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let base = percentiles(
        || {
            black_box(naive.evaluate_and_guard(&f.session, f, &caps));
        },
        n,
    );
    let pooled_row = |session: &CheckoutSession| {
        percentiles(
            || {
                black_box(evaluate_and_guard(pooled, session, f, &caps));
            },
            n,
        )
    };
    let naive_expand = percentiles(
        || {
            black_box(naive.evaluate_and_guard(&f.expanded, f, &caps));
        },
        n,
    );
    let pooled_expand = pooled_row(&f.expanded);
    let mut rows = vec![
        ("naive baseline, full", base),
        (
            "on-demand + InstancePre, full",
            percentiles(
                || {
                    black_box(evaluate_and_guard(on_demand, &f.session, f, &caps));
                },
                n,
            ),
        ),
        ("pooled + CoW + InstancePre, full", pooled_row(&f.session)),
        ("naive baseline, expand", naive_expand),
        ("pooled + CoW + InstancePre, expand", pooled_expand),
        (
            "pooled, expand, teardown after",
            percentiles(
                || evaluate_deferring_and_guard(pooled, &f.expanded, f, &caps),
                n,
            ),
        ),
    ];
    // The same with `warm_up` toggled: what the snapshot of a warm-up evaluation saves.
    let toggled = PolicySettings {
        warm_up: !f.settings.warm_up,
        ..f.settings.clone()
    };
    let other = engine_with(PoolSettings::default())
        .load(&f.name, &f.wasm, toggled)
        .expect("loads with warm_up toggled");
    rows.push((
        if f.settings.warm_up {
            "pooled, expand, warm_up off"
        } else {
            "pooled, expand, warm_up on"
        },
        percentiles(
            || {
                black_box(evaluate_and_guard(&other, &f.expanded, f, &caps));
            },
            n,
        ),
    ));
    // BENCH_BASELINE_POLICY_DIR: the same policy built another way (say, by an older SDK),
    // loaded into the same pooled engine and measured in this run.
    if let Some(dir) = std::env::var_os("BENCH_BASELINE_POLICY_DIR") {
        let path = PathBuf::from(dir).join(format!("{}.wasm", f.name));
        let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let baseline = engine_with(PoolSettings::default())
            .load(&f.name, &wasm, f.settings.clone())
            .expect("loads the baseline build");
        rows.push((
            "pooled, baseline build, full",
            percentiles(
                || {
                    black_box(evaluate_and_guard(&baseline, &f.session, f, &caps));
                },
                n,
            ),
        ));
    }
    println!(
        "\n{} on a 20-line-item session, fresh instance + call + guard, {n} iterations each:",
        f.name
    );
    println!(
        "{:<36} {:>10} {:>10} {:>10} {:>14}",
        "approach, session", "median µs", "p99 µs", "mean µs", "median/naive"
    );
    for (name, (median, p99, mean)) in rows {
        println!(
            "{name:<36} {median:>10.1} {p99:>10.1} {mean:>10.1} {:>14.3}",
            median / base.0
        );
    }
    println!(
        "full: every expansion; expand: `expand = {:?}` from the policy's settings \
         (pooled/naive, both expand: {:.3}); warm_up = {} as in its settings unless the row says",
        f.settings.expand.paths(),
        pooled_expand.0 / naive_expand.0,
        f.settings.warm_up
    );
    for (label, json) in [("full", &f.json), ("expand", &f.expand_json)] {
        let parsed = percentiles(
            || {
                let s: stripe_checkout::CheckoutSession =
                    serde_json::from_slice(black_box(json)).expect("parses");
                black_box(mapping::checkout_session(&s));
            },
            n,
        );
        println!(
            "stripe JSON parse + map, {label} ({} bytes): median {:.1} µs, p99 {:.1} µs",
            json.len(),
            parsed.0,
            parsed.1
        );
        let session: stripe_checkout::CheckoutSession =
            serde_json::from_slice(json).expect("parses");
        let request = mapping::policy_request("/apply", &Default::default());
        let digest = percentiles(
            || {
                black_box(policy_engine::audit::input_digest(
                    black_box(&session),
                    &request,
                ));
            },
            n,
        );
        println!(
            "audit input digest, {label}: median {:.1} µs, p99 {:.1} µs",
            digest.0, digest.1
        );
    }
    // Instances instantiated ahead (`warm_instances`): the request path only does the call. Measured
    // with a pause between evaluations so the background refill keeps up.
    let mut settings = f.settings.clone();
    settings.limits.warm_instances = Some(2);
    let warm = engine_with(PoolSettings::default())
        .load(&f.name, &f.wasm, settings)
        .expect("loads warm");
    let pause = Duration::from_micros(
        std::env::var("BENCH_WARM_PAUSE_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3_000),
    );
    for deferred in [false, true] {
        let mut samples = Vec::new();
        for i in 0..(n / 20).max(50) {
            std::thread::sleep(pause);
            let t = Instant::now();
            let (passed, teardown) = evaluate_deferring_and_guard(&warm, &f.expanded, f, &caps);
            // Not deferred: `then_some` drops the teardown here, inside the sample.
            let after = deferred.then_some(teardown);
            let elapsed = t.elapsed();
            drop(after);
            black_box(passed);
            if i >= 5 {
                samples.push(elapsed);
            }
        }
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "instantiated ahead (warm_instances = 2) + call + guard{}, expand: median {:.1} µs, p99 {:.1} µs ({} samples, {:?} apart); median/naive {:.3}",
            if deferred { ", teardown after" } else { "" },
            us(samples[samples.len() / 2]),
            us(samples[samples.len() * 99 / 100]),
            samples.len(),
            pause,
            us(samples[samples.len() / 2]) / base.0
        );
    }
    breakdown(f, &f.session, "full", &PoolSettings::default(), n);
    breakdown(f, &f.expanded, "expand", &PoolSettings::default(), n);
}

fn main() {
    let name = std::env::var("BENCH_POLICY").unwrap_or_else(|_| "loyalty-tier".into());
    let Some(f) = fixture(&name) else {
        eprintln!(
            "{name}.wasm not found in {}: run scripts/build-policies.sh first",
            policy_dir().display()
        );
        return;
    };
    if let Some(n) = std::env::var("BENCH_BREAKDOWN_ONLY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        // BENCH_SMALL_POOL: a pool small enough for valgrind, which cannot reserve 256 GiB.
        let pool = match std::env::var_os("BENCH_SMALL_POOL") {
            Some(_) => PoolSettings {
                instances: 2,
                max_memory_bytes: 64 << 20,
                ..PoolSettings::default()
            },
            None => PoolSettings::default(),
        };
        // BENCH_SESSION=full or expand: one of the two (for callgrind); both by default.
        let only = std::env::var("BENCH_SESSION").ok();
        for (label, session) in [("full", &f.session), ("expand", &f.expanded)] {
            if only.as_deref().is_none_or(|o| o == label) {
                breakdown(&f, session, label, &pool, n);
            }
        }
        return;
    }
    let pooled = engine_with(PoolSettings::default())
        .load(&f.name, &f.wasm, f.settings.clone())
        .expect("loads pooled");
    assert!(pooled.pooled, "the policy fits the pool");
    let on_demand = engine_with(PoolSettings {
        enabled: false,
        ..PoolSettings::default()
    })
    .load(&f.name, &f.wasm, f.settings.clone())
    .expect("loads on demand");
    let naive = Naive::new(&f);
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &f, &pooled, &on_demand, &naive);
    c.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` does not: no timing loop then.
    if std::env::args().any(|a| a == "--bench") {
        report(&f, &pooled, &on_demand, &naive);
    }
}
