//! Cart-value promotion: 10 % off carts over 100.00, at most 20.00 off.
//!
//! This is the example of Stripe's "Dynamically update discounts" guide. When the cart's
//! subtotal is strictly greater than `threshold`, the policy applies a one-off coupon
//! (`coupon_data`) taking `percent` % of the subtotal off, capped at `cap`, in the session's
//! currency. Otherwise it clears the session's discounts.
//!
//! The policy compares `amount_subtotal` (before discounts), **not** `amount_total`: the total
//! already includes the discount this policy applied, so a cart of 105.00 would drop to
//! 94.50, fall under the threshold, lose the discount, rise again, and so on — the decision
//! would oscillate between calls. The subtotal does not move when a discount is applied.
//!
//! Configuration (all strings, amounts in the currency's smallest unit):
//!
//! | key         | default          | meaning                                      |
//! |-------------|------------------|----------------------------------------------|
//! | `threshold` | `10000`          | subtotal must be strictly greater than this  |
//! | `percent`   | `10`             | percentage taken off (0 < percent ≤ 100)      |
//! | `cap`       | `2000`           | largest discount                             |
//! | `name`      | `Cart discount`  | coupon name (trimmed to 40 characters)       |
//!
//! The amounts are applied to whatever currency the session uses; configure one deployment
//! per currency if that matters. An invalid value is a deployment error: the policy fails
//! loudly — an `error` log naming the key, and a `reject` with a neutral message for the
//! customer — rather than silently falling back to defaults and giving away the wrong
//! discount. A session without a currency (or subtotal) is left as it is (`keep`).

use discount_policy_sdk::prelude::*;

/// Default `threshold`: 100.00 in a two-decimal currency.
pub const DEFAULT_THRESHOLD: i64 = 10_000;
/// Default `percent`.
pub const DEFAULT_PERCENT: f64 = 10.0;
/// Default `cap`: 20.00 in a two-decimal currency.
pub const DEFAULT_CAP: i64 = 2_000;
/// Default coupon name.
pub const DEFAULT_NAME: &str = "Cart discount";
/// What the customer sees when the policy is misconfigured.
pub const UNAVAILABLE: &str = "This discount is unavailable right now";

/// The policy's settings, parsed from its configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The subtotal must be strictly greater than this, in the smallest currency unit.
    pub threshold: i64,
    /// Percentage of the subtotal taken off.
    pub percent: f64,
    /// Largest discount, in the smallest currency unit.
    pub cap: i64,
    /// Coupon name.
    pub name: String,
}

impl Settings {
    /// Reads and validates the settings; the error names the offending key.
    pub fn from_context(ctx: &Context) -> Result<Settings, ConfigError> {
        let threshold = ctx.config_parse_or("threshold", DEFAULT_THRESHOLD)?;
        let percent = ctx.config_percent("percent")?.unwrap_or(DEFAULT_PERCENT);
        let cap = ctx.config_parse_or("cap", DEFAULT_CAP)?;
        let name = ctx.config_or("name", DEFAULT_NAME);
        if threshold < 0 {
            return Err(ConfigError::new(
                "threshold",
                threshold.to_string(),
                "must not be negative",
            ));
        }
        if cap <= 0 {
            return Err(ConfigError::new("cap", cap.to_string(), "must be positive"));
        }
        Ok(Settings {
            threshold,
            percent,
            cap,
            name,
        })
    }
}

/// The cart-threshold policy.
pub struct CartThreshold;

impl Policy for CartThreshold {
    fn evaluate(ctx: &Context, session: &CheckoutSession, _request: &PolicyRequest) -> Decision {
        let settings = match Settings::from_context(ctx) {
            Ok(s) => s,
            Err(e) => {
                ctx.error(
                    "invalid cart-threshold configuration",
                    &[("key", e.key()), ("error", &e.to_string())],
                );
                return Decision::reject(UNAVAILABLE);
            }
        };
        let Some(subtotal) = session.subtotal() else {
            ctx.warn(
                "session has no currency or subtotal; leaving it as it is",
                &[("session", &session.id)],
            );
            return Decision::keep();
        };
        if subtotal.amount <= settings.threshold {
            ctx.info(
                "cart under threshold; clearing discounts",
                &[
                    ("subtotal", &subtotal.to_string()),
                    (
                        "threshold",
                        &subtotal.with_amount(settings.threshold).to_string(),
                    ),
                ],
            );
            return Decision::clear();
        }
        let discount = subtotal.percent(settings.percent).capped_at(settings.cap);
        ctx.info(
            "cart over threshold; applying discount",
            &[
                ("subtotal", &subtotal.to_string()),
                ("discount", &discount.to_string()),
            ],
        );
        Decision::amount_off(settings.name, discount)
    }
}

discount_policy_sdk::export_policy!(CartThreshold);

#[cfg(test)]
mod tests {
    use super::*;
    use discount_policy_sdk::testing::{request, SessionBuilder};

    fn run(ctx: &Context, session: &CheckoutSession) -> Decision {
        CartThreshold::evaluate(ctx, session, &request("apply-cart-discount").build())
    }

    fn defaults() -> Context {
        Context::for_test().build()
    }

    #[test]
    fn over_threshold_gets_ten_percent() {
        let s = SessionBuilder::new().item("Shoes", 15_000, 1).build();
        let d = run(&defaults(), &s);
        assert_eq!(
            d,
            Decision::amount_off("Cart discount", Money::new(1_500, "usd"))
        );
    }

    #[test]
    fn discount_is_capped_at_twenty() {
        let s = SessionBuilder::new().item("TV", 50_000, 1).build();
        assert_eq!(
            run(&defaults(), &s).amount_off_money(),
            Some(Money::new(2_000, "usd"))
        );
    }

    #[test]
    fn threshold_is_strict() {
        let s = SessionBuilder::new().item("Mug", 2_500, 4).build(); // exactly 100.00
        assert_eq!(run(&defaults(), &s), Decision::Clear);
        let s = SessionBuilder::new().subtotal(10_001).build();
        assert_eq!(
            run(&defaults(), &s).amount_off_money(),
            Some(Money::new(1_000, "usd"))
        );
    }

    #[test]
    fn rounds_half_up() {
        // 10 % of 100.05 is 10.005 -> 10.01
        let s = SessionBuilder::new().subtotal(10_005).build();
        assert_eq!(
            run(&defaults(), &s).amount_off_money(),
            Some(Money::new(1_001, "usd"))
        );
    }

    #[test]
    fn uses_subtotal_not_total() {
        // A discount already applied lowers amount_total under the threshold; the
        // decision must not change, or it would oscillate.
        let s = SessionBuilder::new()
            .item("Shoes", 10_500, 1)
            .amount_discount(1_050)
            .build();
        assert_eq!(s.amount_total, Some(9_450));
        assert_eq!(
            run(&defaults(), &s).amount_off_money(),
            Some(Money::new(1_050, "usd"))
        );
    }

    #[test]
    fn uses_session_currency() {
        let s = SessionBuilder::new()
            .currency("EUR")
            .subtotal(20_000)
            .build();
        assert_eq!(
            run(&defaults(), &s).amount_off_money(),
            Some(Money::new(2_000, "eur"))
        );
    }

    #[test]
    fn configurable() {
        let ctx = Context::for_test()
            .config("threshold", "5000")
            .config("percent", "12.5")
            .config("cap", "1000")
            .config("name", "Big basket bonus")
            .build();
        let s = SessionBuilder::new().subtotal(6_000).build();
        let d = run(&ctx, &s);
        assert_eq!(
            d,
            Decision::amount_off("Big basket bonus", Money::new(750, "usd"))
        );
        let s = SessionBuilder::new().subtotal(20_000).build();
        assert_eq!(
            run(&ctx, &s).amount_off_money(),
            Some(Money::new(1_000, "usd"))
        );
    }

    #[test]
    fn bad_config_fails_loudly() {
        for (key, value) in [
            ("threshold", "100 USD"),
            ("threshold", "-1"),
            ("percent", "ten"),
            ("percent", "0"),
            ("percent", "150"),
            ("cap", "0"),
        ] {
            let ctx = Context::for_test().config(key, value).build();
            let s = SessionBuilder::new().subtotal(50_000).build();
            assert_eq!(
                run(&ctx, &s),
                Decision::reject(UNAVAILABLE),
                "{key}={value}"
            );
            let logs = ctx.logs();
            let err = logs
                .iter()
                .find(|r| r.level == LogLevel::Error)
                .expect("an error log");
            assert_eq!(err.field("key"), Some(key));
        }
    }

    #[test]
    fn missing_currency_keeps() {
        let s = SessionBuilder::new().no_currency().subtotal(50_000).build();
        let ctx = defaults();
        assert_eq!(run(&ctx, &s), Decision::Keep);
        assert!(ctx.logged(LogLevel::Warn, "no currency"));
    }

    #[test]
    fn zero_decimal_currency() {
        let ctx = Context::for_test()
            .config("threshold", "10000")
            .config("cap", "2000")
            .build();
        let s = SessionBuilder::new()
            .currency("jpy")
            .subtotal(15_000)
            .build();
        let d = run(&ctx, &s);
        assert_eq!(d.amount_off_money(), Some(Money::new(1_500, "jpy")));
        assert!(ctx.logged(LogLevel::Info, "over threshold"));
        assert!(ctx.logs()[0].field("discount") == Some("1500 JPY"));
    }
}
