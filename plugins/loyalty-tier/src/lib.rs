//! Loyalty discount: a percentage off by the customer's loyalty tier.
//!
//! The tier is read from the expanded customer's metadata (key `metadata_key`, default
//! `tier`; the value is trimmed and ASCII-lowercased). The percentage for tier `gold` is the
//! configuration value `tier.gold`, and so on. A customer with a configured tier gets a
//! one-off coupon (`coupon_data`) with that `percent_off`, named after the tier
//! ("Gold member discount"). No expanded customer, no tier, or a tier without a percentage
//! clears the session's discounts.
//!
//! The tier comes from Stripe's customer object, never from the storefront's request, which
//! the customer controls.
//!
//! An invalid percentage (not a number, or outside 0 < p ≤ 100) is a deployment error: an
//! `error` log naming the key and a `reject` with a neutral message for the customer.

use discount_policy_sdk::prelude::*;

/// Default customer metadata key holding the tier.
pub const DEFAULT_METADATA_KEY: &str = "tier";
/// Prefix of the per-tier configuration keys (`tier.gold`).
pub const TIER_PREFIX: &str = "tier.";
/// What the customer sees when the policy is misconfigured.
pub const UNAVAILABLE: &str = "This discount is unavailable right now";

/// The loyalty-tier policy.
pub struct LoyaltyTier;

/// "gold" → "Gold member discount" (at most 40 characters, as Stripe requires).
pub fn coupon_name(tier: &str) -> String {
    let mut chars = tier.chars();
    let title: String = match chars.next() {
        Some(first) => std::iter::once(first.to_ascii_uppercase())
            .chain(chars)
            .collect(),
        None => String::new(),
    };
    let suffix = " member discount";
    let max_title = 40usize.saturating_sub(suffix.len());
    let title: String = title.chars().take(max_title).collect();
    format!("{title}{suffix}")
}

impl Policy for LoyaltyTier {
    fn evaluate(ctx: &Context, session: &CheckoutSession, _request: &PolicyRequest) -> Decision {
        let key = ctx.config_or("metadata_key", DEFAULT_METADATA_KEY);
        if session.customer.is_none() {
            ctx.info(
                "no expanded customer; clearing discounts",
                &[("session", &session.id)],
            );
            return Decision::clear();
        }
        let tier = session
            .customer_metadata(&key)
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty());
        let Some(tier) = tier else {
            ctx.info(
                "customer has no tier; clearing discounts",
                &[("metadata_key", &key)],
            );
            return Decision::clear();
        };
        let config_key = format!("{TIER_PREFIX}{tier}");
        let percent = match ctx.config_percent(&config_key) {
            Ok(Some(p)) => p,
            Ok(None) => {
                ctx.info(
                    "tier has no discount; clearing discounts",
                    &[("tier", &tier)],
                );
                return Decision::clear();
            }
            Err(e) => {
                ctx.error(
                    "invalid loyalty-tier configuration",
                    &[("key", e.key()), ("error", &e.to_string())],
                );
                return Decision::reject(UNAVAILABLE);
            }
        };
        ctx.info(
            "applying loyalty discount",
            &[("tier", &tier), ("config_key", &config_key)],
        );
        Decision::percent_off(coupon_name(&tier), percent).with_metadata("loyalty_tier", tier)
    }
}

discount_policy_sdk::export_policy!(LoyaltyTier);

#[cfg(test)]
mod tests {
    use super::*;
    use discount_policy_sdk::testing::{request, SessionBuilder};

    fn ctx() -> Context {
        Context::for_test()
            .config("tier.gold", "15")
            .config("tier.silver", "10")
            .build()
    }

    fn run(ctx: &Context, session: &CheckoutSession) -> Decision {
        LoyaltyTier::evaluate(ctx, session, &request("apply-loyalty-discount").build())
    }

    #[test]
    fn gold_gets_fifteen_percent() {
        let s = SessionBuilder::new()
            .item("Coat", 20_000, 1)
            .customer_metadata("tier", "gold")
            .build();
        let d = run(&ctx(), &s);
        assert_eq!(
            d,
            Decision::percent_off("Gold member discount", 15.0)
                .with_metadata("loyalty_tier", "gold")
        );
    }

    #[test]
    fn tier_is_case_insensitive() {
        let s = SessionBuilder::new()
            .customer_metadata("tier", " Silver ")
            .build();
        let d = run(&ctx(), &s);
        assert_eq!(d.percent_off_value(), Some(10.0));
        assert_eq!(
            d.coupon_data().unwrap().name.as_deref(),
            Some("Silver member discount")
        );
    }

    #[test]
    fn unknown_or_missing_tier_clears() {
        let s = SessionBuilder::new()
            .customer_metadata("tier", "platinum")
            .build();
        assert_eq!(run(&ctx(), &s), Decision::Clear);
        let s = SessionBuilder::new().customer("cus_1").build();
        assert_eq!(run(&ctx(), &s), Decision::Clear);
        let s = SessionBuilder::new()
            .customer_metadata("tier", "  ")
            .build();
        assert_eq!(run(&ctx(), &s), Decision::Clear);
    }

    #[test]
    fn no_expanded_customer_clears() {
        let s = SessionBuilder::new().customer_id_only("cus_1").build();
        let c = ctx();
        assert_eq!(run(&c, &s), Decision::Clear);
        assert!(c.logged(LogLevel::Info, "no expanded customer"));
        let s = SessionBuilder::new().build();
        assert_eq!(run(&c, &s), Decision::Clear);
    }

    #[test]
    fn metadata_key_is_configurable() {
        let c = Context::for_test()
            .config("metadata_key", "loyalty")
            .config("tier.gold", "20")
            .build();
        let s = SessionBuilder::new()
            .customer_metadata("tier", "silver")
            .customer_metadata("loyalty", "gold")
            .build();
        assert_eq!(run(&c, &s).percent_off_value(), Some(20.0));
    }

    #[test]
    fn bad_percentage_fails_loudly() {
        for bad in ["fifteen", "0", "-5", "101"] {
            let c = Context::for_test().config("tier.gold", bad).build();
            let s = SessionBuilder::new()
                .customer_metadata("tier", "gold")
                .build();
            assert_eq!(run(&c, &s), Decision::reject(UNAVAILABLE), "{bad}");
            let logs = c.logs();
            let err = logs.iter().find(|r| r.level == LogLevel::Error).unwrap();
            assert_eq!(err.field("key"), Some("tier.gold"));
        }
    }

    #[test]
    fn long_tier_names_fit_stripe() {
        let name = coupon_name(&"x".repeat(100));
        assert_eq!(name.chars().count(), 40);
        assert!(name.ends_with(" member discount"));
        assert_eq!(coupon_name("gold"), "Gold member discount");
    }
}
