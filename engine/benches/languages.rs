//! One policy per language in one run: component size, cold compile, load from the
//! compile cache, and per-evaluation cost (fresh instance + call), on the same session
//! (as each policy's `expand` leaves it).
//!
//! Needs `scripts/build-policies.sh` and `scripts/build-lang-policies.sh`.
//! Run: `cargo bench -p policy-engine --bench languages`
//! (`BENCH_POLICY_DIR` picks another dir of built policies). Prints a Markdown table.

use policy_engine::{mapping, Clock, Decision, EngineConfig, PolicyEngine, PolicySettings};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// (language, built policy, evaluations to time).
const POLICIES: &[(&str, &str, usize)] = &[
    ("Rust", "cart-threshold", 2_000),
    ("C", "c-cart-threshold", 2_000),
    ("JavaScript (componentize-js)", "js-time-limited", 200),
    ("Python (componentize-py)", "py-location", 200),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn policy_dir() -> PathBuf {
    std::env::var_os("BENCH_POLICY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/policies"))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument, if any, selects policies by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // A 150.00 USD session shipping to Paris: every policy here applies a discount to it.
    let fixture = root().join("plugins/py-location/cases/fixtures/ship-paris-bill-sf.json");
    let json = std::fs::read(&fixture).expect("the Paris fixture");
    let stripe: stripe_checkout::CheckoutSession =
        serde_json::from_slice(&json).expect("the fixture parses");
    // Inside the time-limited offer's window (2026-11-27 .. 2026-12-01).
    let clock = Clock::Fixed(1_795_824_000);
    let cache = std::env::temp_dir().join(format!("policy-bench-cache-{}", std::process::id()));

    let mut rows = Vec::new();
    for &(language, name, runs) in POLICIES {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let dir = policy_dir();
        let Ok(wasm) = std::fs::read(dir.join(format!("{name}.wasm"))) else {
            eprintln!("skipping {name}: not built in {}", dir.display());
            continue;
        };
        let toml = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap_or_default();
        let settings = PolicySettings::from_toml(&toml).expect("policy settings");
        let request = mapping::policy_request(&settings.routes[0], &Default::default());
        // What the host hands the policy: the session as its `expand` leaves it.
        let session = mapping::checkout_session(&mapping::expanded_copy(&stripe, &settings.expand));
        let engine = |c: bool| {
            PolicyEngine::new(EngineConfig {
                cache_dir: c.then(|| cache.clone()),
                ..EngineConfig::default()
            })
            .expect("engine")
        };

        // Cold: compile (and write the artifact into an empty cache).
        let cold = engine(true)
            .load(name, &wasm, settings.clone())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!cold.from_cache);
        // Warm: a new engine (as a restarted host) loads the artifact.
        let started = Instant::now();
        let policy = engine(true)
            .load(name, &wasm, settings.clone())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let cached = started.elapsed();
        assert!(policy.from_cache, "{name} did not come from the cache");

        for _ in 0..5 {
            policy.evaluate(&session, &request, clock);
        }
        let mut times = Vec::with_capacity(runs);
        let mut last = None;
        for _ in 0..runs {
            let started = Instant::now();
            let e = policy.evaluate(&session, &request, clock);
            times.push(started.elapsed());
            last = Some(e);
        }
        let last = last.expect("at least one run");
        let decision = match &last.result {
            Ok(Decision::Apply(_)) => "apply",
            Ok(Decision::Clear) => "clear",
            Ok(Decision::Keep) => "keep",
            Ok(Decision::Reject(_)) => "reject",
            Err(e) => panic!("{name}: {e}"),
        };
        times.sort();
        let median = times[times.len() / 2];
        let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
        rows.push(format!(
            "| {language} | `{name}` | {:.1} KB | {} | {} | {:.3} ms | {:.3} ms | {} | {:.1} MB | {decision} |",
            wasm.len() as f64 / 1024.0,
            ms(cold.compile_time),
            ms(cached),
            median.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            last.cost.fuel_used,
            last.cost.peak_memory_bytes as f64 / (1024.0 * 1024.0),
        ));
    }
    std::fs::remove_dir_all(&cache).ok();
    println!(
        "| language | policy | component | cold compile | cached load | evaluation (median) | p99 | fuel | peak memory | decision |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
