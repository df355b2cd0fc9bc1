//! A deliberately hostile or broken discount policy, for the adversarial tests (and
//! `describe-session`, which reports what the host handed it).
//!
//! The `mode` configuration value picks the misbehaviour, so one component covers every
//! runtime attack; the tests copy it under one name per mode with its own settings.
//!
//! | `mode`                  | what it does                                            |
//! |-------------------------|---------------------------------------------------------|
//! | `count-calls`           | rejects with `call N`, N counted in a static (spins     |
//! |                         | forever after counting when the input has `spin`)       |
//! | `infinite-loop`         | spins forever                                           |
//! | `host-call-loop`        | calls the host forever                                  |
//! | `memory-growth`         | allocates 1 MiB blocks forever                          |
//! | `deep-recursion`        | recurses without end                                    |
//! | `panic`                 | panics                                                  |
//! | `unreachable`           | executes `unreachable`                                  |
//! | `huge-message`          | rejects with a 100 KB message                           |
//! | `huge-coupon-name`      | applies a coupon named with 100,000 characters          |
//! | `huge-coupon-id`        | applies an existing coupon with a 100,000-character id  |
//! | `nan-percent`           | applies `percent_off` NaN                               |
//! | `negative-percent`      | applies `percent_off` -10                               |
//! | `amount-above-subtotal` | applies `amount_off` one unit above the subtotal        |
//! | `wrong-currency`        | applies `amount_off` in a currency the session is not in |
//! | `metadata-flood`        | applies a coupon with 1,000 metadata entries            |
//! | `log-flood`             | writes 5,000 log records, then keeps the session        |
//! | `describe-session`      | rejects with what it sees: line items, customer, coupons |
//! | `spin-when-asked`       | spins forever when the input has `spin`, else keeps     |
//!
//! Any other mode keeps the session.

use discount_policy_sdk::prelude::*;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

/// Calls seen by this instance; a fresh instance per evaluation always sees 1.
static CALLS: AtomicU32 = AtomicU32::new(0);

/// The hostile policy.
pub struct Hostile;

impl Policy for Hostile {
    fn evaluate(ctx: &Context, session: &CheckoutSession, request: &PolicyRequest) -> Decision {
        let mode = ctx.config_or("mode", "keep");
        let currency = session.currency.clone().unwrap_or_else(|| "usd".into());
        let subtotal = session.amount_subtotal.unwrap_or(0);
        match mode.as_str() {
            "count-calls" => {
                let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
                if request.input_value("spin").is_some() {
                    spin();
                }
                Decision::reject(format!("call {n}"))
            }
            "spin-when-asked" if request.input_value("spin").is_none() => Decision::keep(),
            "infinite-loop" | "spin-when-asked" => spin(),
            "host-call-loop" => loop {
                black_box(ctx.config("mode"));
            },
            "memory-growth" => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    blocks.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            // Allocation patterns the SDK's single-use allocator must serve in place.
            "alloc-churn" => {
                // 256 MiB allocated in all, 1 MiB at a time, each freed before the next.
                let mut sum = 0u64;
                for i in 0..256u32 {
                    let block = black_box(vec![(i % 251) as u8; 1 << 20]);
                    sum += u64::from(block[block.len() - 1]);
                }
                Decision::reject(format!("churned {sum}"))
            }
            "vec-growth" => {
                // A 6 MiB Vec grown by pushing: doubling by copy would need about 12 MiB.
                let mut v: Vec<u8> = Vec::new();
                for i in 0..(6u32 << 20) {
                    v.push(i as u8);
                }
                Decision::reject(format!("grew {}", black_box(v).len()))
            }
            "deep-recursion" => {
                let depth = recurse(black_box(u64::MAX));
                Decision::reject(format!("depth {depth}"))
            }
            "panic" => panic!("a policy bug"),
            "unreachable" => trap(),
            "huge-message" => Decision::reject("x".repeat(100_000)),
            "huge-coupon-name" => Decision::coupon_data_of(CouponData {
                name: Some("n".repeat(100_000)),
                percent_off: Some(10.0),
                ..CouponData::empty()
            }),
            "huge-coupon-id" => Decision::Apply(Discount::Coupon("c".repeat(100_000))),
            "nan-percent" => percent(f64::NAN),
            "negative-percent" => percent(-10.0),
            "amount-above-subtotal" => amount(subtotal + 1, currency),
            "wrong-currency" => {
                let other = if currency == "eur" { "usd" } else { "eur" };
                amount(100, other.to_string())
            }
            "metadata-flood" => Decision::coupon_data_of(CouponData {
                percent_off: Some(5.0),
                metadata: (0..1_000).map(|i| (format!("k{i}"), "v".into())).collect(),
                ..CouponData::empty()
            }),
            "log-flood" => {
                let line = "l".repeat(100);
                for i in 0..5_000 {
                    ctx.info(&line, &[("i", &i.to_string())]);
                }
                Decision::keep()
            }
            "describe-session" => Decision::reject(format!(
                "line_items={} customer={} customer_id={} coupons={}",
                session.line_items.len(),
                session.customer.as_ref().map_or("none", |c| c.id.as_str()),
                session.customer_id.as_deref().unwrap_or("none"),
                session
                    .discounts
                    .iter()
                    .filter(|d| d.coupon.is_some())
                    .count(),
            )),
            _ => Decision::keep(),
        }
    }
}

/// Coupon data with this raw percent_off, bypassing the SDK's checks.
fn percent(pct: f64) -> Decision {
    Decision::coupon_data_of(CouponData {
        name: Some("Hostile".into()),
        percent_off: Some(pct),
        ..CouponData::empty()
    })
}

/// Coupon data with this raw amount_off and currency, bypassing the SDK's checks.
fn amount(amount_off: i64, currency: String) -> Decision {
    Decision::coupon_data_of(CouponData {
        name: Some("Hostile".into()),
        amount_off: Some(amount_off),
        currency: Some(currency),
        ..CouponData::empty()
    })
}

/// Recursion the optimizer cannot turn into a loop.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    black_box(recurse(black_box(n - 1))) + 1
}

/// Executes the `unreachable` instruction.
fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

discount_policy_sdk::export_policy!(Hostile);

/// Spins until the host stops the policy.
fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use discount_policy_sdk::testing::{request, SessionBuilder};

    fn run(mode: &str) -> Decision {
        let ctx = Context::for_test().config("mode", mode).build();
        let s = SessionBuilder::new().subtotal(10_000).build();
        Hostile::evaluate(&ctx, &s, &request("hostile").build())
    }

    #[test]
    fn output_modes_build_what_they_claim() {
        assert_eq!(run("huge-message").rejection().map(str::len), Some(100_000));
        assert!(run("nan-percent").percent_off_value().unwrap().is_nan());
        assert_eq!(run("negative-percent").percent_off_value(), Some(-10.0));
        assert_eq!(
            run("amount-above-subtotal")
                .amount_off_money()
                .unwrap()
                .amount,
            10_001
        );
        assert_eq!(
            run("metadata-flood").coupon_data().unwrap().metadata.len(),
            1_000
        );
        assert_eq!(run("anything-else"), Decision::Keep);
    }
}
