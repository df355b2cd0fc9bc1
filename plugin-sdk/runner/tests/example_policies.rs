//! End-to-end: the example policies, built by `scripts/build-policies.sh`, evaluated by the
//! policy engine. Exercises the SDK's host-backed `Context` (config, now, log) inside wasm.
//!
//! Needs the components from `scripts/build-policies.sh` (scripts/test.sh builds them first).

use std::path::PathBuf;

use policy_engine::bindings::{Discount, LineItem};
use policy_engine::{fixtures, mapping};
use policy_engine::{
    CheckoutSession, Clock, Decision, PolicyEngine, PolicyRequest, PolicySettings,
};

fn policies_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("policies")
}

fn load(name: &str) -> policy_engine::Policy {
    let dir = policies_dir();
    let wasm = std::fs::read(dir.join(format!("{name}.wasm"))).unwrap_or_else(|e| {
        panic!(
            "{name}.wasm in {}: {e}; run scripts/build-policies.sh",
            dir.display()
        )
    });
    let settings = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
    let settings = PolicySettings::from_toml(&settings).unwrap();
    let engine = PolicyEngine::new(Default::default()).unwrap();
    engine
        .load(name, &wasm, settings)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn session(subtotal: i64, tier: Option<&str>) -> CheckoutSession {
    CheckoutSession {
        customer_id: Some("cus_1".into()),
        customer: Some(fixtures::customer_with_tier(tier)),
        line_items: vec![LineItem {
            id: "li_1".into(),
            price_id: None,
            product_id: None,
            description: Some("Thing".into()),
            quantity: 1,
            unit_amount: Some(subtotal),
            amount_subtotal: subtotal,
            amount_total: subtotal,
            amount_discount: 0,
            currency: "usd".into(),
        }],
        created: 1_700_000_000,
        expires_at: 1_700_086_400,
        ..fixtures::open_session("cs_test_e2e", "usd", subtotal)
    }
}

fn request(action: &str) -> PolicyRequest {
    mapping::policy_request(action, &Default::default())
}

#[test]
fn cart_threshold_component() {
    let policy = load("cart-threshold");
    let eval = policy.evaluate(
        &session(15_000, None),
        &request("apply-cart-discount"),
        Clock::Fixed(1),
    );
    let decision = eval.result.expect("a decision");
    let Decision::Apply(Discount::CouponData(data)) = decision else {
        panic!("expected coupon data, got {decision:?}");
    };
    assert_eq!(data.amount_off, Some(1_500));
    assert_eq!(data.currency.as_deref(), Some("usd"));
    assert_eq!(data.name.as_deref(), Some("Cart discount"));
    assert!(
        eval.logs
            .iter()
            .any(|l| l.message.contains("over threshold")),
        "{:?}",
        eval.logs
    );
    let fields = &eval.logs[0].fields;
    assert!(
        fields.contains(&("discount".into(), "15.00 USD".into())),
        "{fields:?}"
    );

    let eval = policy.evaluate(
        &session(50_000, None),
        &request("apply-cart-discount"),
        Clock::Fixed(1),
    );
    assert!(
        matches!(eval.result, Ok(Decision::Apply(Discount::CouponData(ref d))) if d.amount_off == Some(2_000))
    );
    let eval = policy.evaluate(
        &session(10_000, None),
        &request("apply-cart-discount"),
        Clock::Fixed(1),
    );
    assert!(
        matches!(eval.result, Ok(Decision::Clear)),
        "{:?}",
        eval.result
    );
    println!("cart-threshold cost: {:?}", eval.cost);
}

#[test]
fn loyalty_tier_component() {
    let policy = load("loyalty-tier");
    let eval = policy.evaluate(
        &session(5_000, Some("gold")),
        &request("apply-loyalty-discount"),
        Clock::Fixed(1),
    );
    let decision = eval.result.expect("a decision");
    let Decision::Apply(Discount::CouponData(data)) = decision else {
        panic!("expected coupon data, got {decision:?}");
    };
    assert_eq!(data.percent_off, Some(15.0));
    assert_eq!(data.name.as_deref(), Some("Gold member discount"));
    let eval = policy.evaluate(
        &session(5_000, None),
        &request("apply-loyalty-discount"),
        Clock::Fixed(1),
    );
    assert!(
        matches!(eval.result, Ok(Decision::Clear)),
        "{:?}",
        eval.result
    );
    println!("loyalty-tier cost: {:?}", eval.cost);
}
