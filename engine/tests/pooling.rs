//! Loading and instance allocation against the example policies built by
//! `scripts/build-policies.sh`: the pooling allocator, the on-demand fallback, a small
//! pool under concurrency, pre-initialised (warm) instances that never show one
//! evaluation's state to another, and the compilation cache's size cap.

use policy_engine::bindings::LineItem;
use policy_engine::{fixtures, mapping};
use policy_engine::{
    CheckoutSession, Clock, Decision, EngineConfig, PolicyEngine, PolicyRequest, PolicySettings,
    PoolSettings,
};
use std::path::PathBuf;

fn built(name: &str) -> (Vec<u8>, PolicySettings) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/policies");
    let wasm = std::fs::read(dir.join(format!("{name}.wasm")))
        .unwrap_or_else(|e| panic!("{name}.wasm: {e}; run scripts/build-policies.sh"));
    let toml = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
    (wasm, PolicySettings::from_toml(&toml).unwrap())
}

fn engine(pool: PoolSettings) -> PolicyEngine {
    PolicyEngine::new(EngineConfig {
        pool,
        ..EngineConfig::default()
    })
    .unwrap()
}

/// The compiled artifacts (`.cwasm`) in a cache directory, by the policy version they start with.
fn artifacts(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cwasm"))
        .map(|n| n[..64].to_string())
        .collect();
    names.sort();
    names
}

fn session(tier: Option<&str>) -> CheckoutSession {
    CheckoutSession {
        customer_id: Some("cus_1".into()),
        customer: Some(fixtures::customer_with_tier(tier)),
        line_items: vec![LineItem {
            id: "li_1".into(),
            price_id: Some("price_1".into()),
            product_id: Some("prod_1".into()),
            description: None,
            quantity: 1,
            unit_amount: Some(20000),
            amount_subtotal: 20000,
            amount_total: 20000,
            amount_discount: 0,
            currency: "usd".into(),
        }],
        ..fixtures::open_session("cs_test_pool", "usd", 20000)
    }
}

fn request() -> PolicyRequest {
    mapping::policy_request("/apply-loyalty-discount", &Default::default())
}

fn percent_off(d: &Decision) -> Option<f64> {
    match d {
        Decision::Apply(policy_engine::bindings::Discount::CouponData(c)) => c.percent_off,
        _ => None,
    }
}

#[test]
fn pooled_and_on_demand_decide_alike() {
    let (wasm, settings) = built("loyalty-tier");
    let pooled = engine(PoolSettings::default())
        .load("loyalty-tier", &wasm, settings.clone())
        .unwrap();
    assert!(pooled.pooled);
    let on_demand = engine(PoolSettings {
        enabled: false,
        ..PoolSettings::default()
    })
    .load("loyalty-tier", &wasm, settings)
    .unwrap();
    assert!(!on_demand.pooled);
    for policy in [&pooled, &on_demand] {
        let eval = policy.evaluate(&session(Some("gold")), &request(), Clock::Fixed(0));
        assert_eq!(percent_off(&eval.result.unwrap()), Some(15.0));
    }
}

#[test]
fn a_policy_allowed_more_memory_than_a_slot_loads_on_demand() {
    let (wasm, mut settings) = built("loyalty-tier");
    settings.limits.memory_bytes = Some(64 << 20);
    let policy = engine(PoolSettings {
        max_memory_bytes: 32 << 20,
        ..PoolSettings::default()
    })
    .load("loyalty-tier", &wasm, settings)
    .unwrap();
    assert!(!policy.pooled);
    let eval = policy.evaluate(&session(Some("silver")), &request(), Clock::Fixed(0));
    assert_eq!(percent_off(&eval.result.unwrap()), Some(10.0));
}

#[test]
fn a_small_pool_makes_a_burst_wait_not_fail() {
    let (wasm, settings) = built("loyalty-tier");
    let policy = engine(PoolSettings {
        instances: 2,
        ..PoolSettings::default()
    })
    .load("loyalty-tier", &wasm, settings)
    .unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..20)
                        .filter(|_| {
                            let eval = policy.evaluate(
                                &session(Some("gold")),
                                &request(),
                                Clock::Fixed(0),
                            );
                            eval.result.is_ok()
                        })
                        .count()
                })
            })
            .collect();
        let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(ok, 160, "every evaluation got a slot");
    });
}

#[test]
fn warm_instances_show_nothing_of_the_warm_up_or_of_each_other() {
    let (wasm, mut settings) = built("loyalty-tier");
    settings.limits.warm_instances = Some(2);
    let policy = engine(PoolSettings::default())
        .load("loyalty-tier", &wasm, settings)
        .unwrap();
    // Give the refill thread time to warm its instances.
    std::thread::sleep(std::time::Duration::from_millis(300));
    for (tier, percent) in [("gold", 15.0), ("bronze", 5.0), ("silver", 10.0)] {
        let eval = policy.evaluate(&session(Some(tier)), &request(), Clock::Fixed(7));
        assert_eq!(percent_off(eval.result.as_ref().unwrap()), Some(percent));
        assert!(
            eval.logs.iter().all(|l| !l.message.contains("no tier")),
            "the warm-up's logs leaked: {:?}",
            eval.logs
        );
        assert!(eval.cost.fuel_used < eval.cost.fuel_budget);
    }
    let eval = policy.evaluate(&session(None), &request(), Clock::Fixed(7));
    assert!(matches!(eval.result, Ok(Decision::Clear)));
}

#[test]
fn the_cache_keeps_to_its_cap_but_never_drops_a_loaded_policy() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/test-cache-cap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let engine = PolicyEngine::new(EngineConfig {
        cache_dir: Some(dir.clone()),
        cache_max_bytes: 1,
        ..EngineConfig::default()
    })
    .unwrap();
    let load = |name: &str| {
        let (wasm, settings) = built(name);
        engine.load(name, &wasm, settings).unwrap()
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };

    // Every artifact is over a one-byte cap, but a loaded policy's stays.
    let cart = load("cart-threshold");
    assert!(!cart.from_cache);
    assert_eq!(artifacts(&dir), std::slice::from_ref(&cart.version));
    let loyalty = load("loyalty-tier");
    assert_eq!(
        artifacts(&dir),
        sorted(vec![cart.version.clone(), loyalty.version.clone()])
    );

    // Once a policy is gone, the next compilation prunes its artifact.
    let cart_version = cart.version.clone();
    drop(cart);
    let location = load("location-based");
    assert_eq!(
        artifacts(&dir),
        sorted(vec![loyalty.version.clone(), location.version.clone()])
    );
    assert!(
        std::fs::read_dir(dir.join("functions"))
            .unwrap()
            .next()
            .is_none(),
        "compiled functions are not held by any policy"
    );

    // What stayed still loads from the cache; what went is compiled again, and works.
    assert!(load("loyalty-tier").from_cache);
    let cart = load("cart-threshold");
    assert!(!cart.from_cache);
    assert_eq!(cart.version, cart_version);
    let evaluation = cart.evaluate(&session(None), &request(), Clock::System);
    assert!(evaluation.result.is_ok(), "{:?}", evaluation.result);
    std::fs::remove_dir_all(&dir).unwrap();
}
