//! Promo-code validation: the code the customer typed, checked against the policy's
//! configuration; a wrong code is refused with a friendly message.
//!
//! The storefront sends the code in its body (`{"checkout_session_id": "...",
//! "promo_code": "SPRING15"}`). The customer controls that value: it is only ever looked
//! up, trimmed and uppercased, never trusted for an amount.
//!
//! | key                      | meaning                                                  |
//! |--------------------------|----------------------------------------------------------|
//! | `input_key`              | the body field holding the code (default `promo_code`)   |
//! | `code.<CODE>`            | `15%` (percent off), `1000` (amount off, smallest unit), |
//! |                          | or `coupon:<id>` (an existing Stripe coupon)             |
//! | `min_subtotal`           | smallest subtotal for any code (default 0)               |
//! | `min_subtotal.<CODE>`    | smallest subtotal for one code                           |
//! | `invalid_message`        | what a wrong code gets (a friendly default)              |
//!
//! No code (or an empty one) clears the session's discounts: the customer removed it.
//! An unknown or malformed code is rejected with `invalid_message`; a code on too small
//! a cart is rejected with the amount still needed. A bad configuration value is a
//! deployment error: an `error` log naming the key and a `reject` with a neutral message.

use discount_policy_sdk::parse_percent;
use discount_policy_sdk::prelude::*;

/// Default body field of the code.
pub const DEFAULT_INPUT_KEY: &str = "promo_code";
/// Default message for a wrong code.
pub const DEFAULT_INVALID: &str = "Sorry, that promo code isn't valid. Check it and try again.";
/// What the customer sees when the policy is misconfigured.
pub const UNAVAILABLE: &str = "This discount is unavailable right now";
/// Longest code accepted.
pub const MAX_CODE_LEN: usize = 32;

/// What a code gives.
#[derive(Clone, Debug, PartialEq)]
pub enum Reward {
    /// Percent off.
    Percent(f64),
    /// Amount off, in the smallest currency unit.
    Amount(i64),
    /// An existing Stripe coupon.
    Coupon(String),
}

/// Parses `15%`, `1000` or `coupon:<id>`.
pub fn parse_reward(key: &str, raw: &str) -> Result<Reward, ConfigError> {
    let v = raw.trim();
    if let Some(id) = v.strip_prefix("coupon:") {
        let id = id.trim();
        if id.is_empty() {
            return Err(ConfigError::new(key, raw, "coupon: needs a coupon id"));
        }
        return Ok(Reward::Coupon(id.to_string()));
    }
    if v.ends_with('%') {
        return match parse_percent(v) {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(Reward::Percent(p)),
            Ok(_) => Err(ConfigError::new(
                key,
                raw,
                "must be greater than 0% and at most 100%",
            )),
            Err(reason) => Err(ConfigError::new(key, raw, reason)),
        };
    }
    match v.parse::<i64>() {
        Ok(a) if a > 0 => Ok(Reward::Amount(a)),
        Ok(_) => Err(ConfigError::new(key, raw, "an amount off must be positive")),
        Err(_) => Err(ConfigError::new(
            key,
            raw,
            "expected 15% (percent), 1000 (amount, smallest unit) or coupon:<id>",
        )),
    }
}

/// The code as typed, normalized: trimmed and uppercased; `None` when empty.
/// `Err(())` when it cannot be a code (too long, or characters other than A-Z 0-9 - _).
#[allow(clippy::result_unit_err)]
pub fn normalize_code(typed: &str) -> Result<Option<String>, ()> {
    let code = typed.trim().to_ascii_uppercase();
    if code.is_empty() {
        return Ok(None);
    }
    if code.len() > MAX_CODE_LEN
        || !code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(());
    }
    Ok(Some(code))
}

/// The promo-code policy.
pub struct PromoCode;

impl Policy for PromoCode {
    fn evaluate(ctx: &Context, session: &CheckoutSession, request: &PolicyRequest) -> Decision {
        let fail = |e: ConfigError| {
            ctx.error(
                "invalid promo-code configuration",
                &[("key", e.key()), ("error", &e.to_string())],
            );
            Decision::reject(UNAVAILABLE)
        };
        let invalid = ctx.config_or("invalid_message", DEFAULT_INVALID);
        let input_key = ctx.config_or("input_key", DEFAULT_INPUT_KEY);
        let typed = request.input_value(&input_key).unwrap_or("");
        let code = match normalize_code(typed) {
            Ok(Some(code)) => code,
            Ok(None) => {
                ctx.info("no promo code; clearing discounts", &[]);
                return Decision::clear();
            }
            Err(()) => {
                let shown: String = typed.chars().take(MAX_CODE_LEN).collect();
                ctx.warn("malformed promo code", &[("typed", &shown)]);
                return Decision::reject(invalid);
            }
        };
        // Codes are looked up case-insensitively: configuration keys are uppercased too.
        let entry = ctx.config_entries().into_iter().find(|(k, _)| {
            k.strip_prefix("code.")
                .is_some_and(|c| c.trim().eq_ignore_ascii_case(&code))
        });
        let Some((key, raw)) = entry else {
            ctx.warn("unknown promo code", &[("code", &code)]);
            return Decision::reject(invalid);
        };
        let reward = match parse_reward(&key, &raw) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let min_key = format!("min_subtotal.{}", &key["code.".len()..]);
        let min = match ctx.config_parse::<i64>(&min_key) {
            Ok(Some(m)) => m,
            Ok(None) => match ctx.config_parse_or("min_subtotal", 0i64) {
                Ok(m) => m,
                Err(e) => return fail(e),
            },
            Err(e) => return fail(e),
        };
        let Some(subtotal) = session.subtotal() else {
            ctx.warn(
                "session has no currency or subtotal; leaving it as it is",
                &[],
            );
            return Decision::keep();
        };
        if subtotal.amount < min {
            ctx.info(
                "cart under the code's minimum",
                &[("code", &code), ("subtotal", &subtotal.to_string())],
            );
            return Decision::reject(format!(
                "The code {code} needs a subtotal of at least {}.",
                subtotal.with_amount(min)
            ));
        }
        ctx.info("applying promo code", &[("code", &code)]);
        let name = format!("Promo code {code}");
        let decision = match reward {
            Reward::Percent(p) => Decision::percent_off(name, p),
            Reward::Amount(a) => {
                Decision::amount_off(name, subtotal.with_amount(a).capped_at(subtotal.amount))
            }
            Reward::Coupon(id) => return Decision::coupon(id),
        };
        decision.with_metadata("promo_code", code)
    }
}

discount_policy_sdk::export_policy!(PromoCode);

#[cfg(test)]
mod tests {
    use super::*;
    use discount_policy_sdk::testing::{request, SessionBuilder};
    use discount_policy_sdk::ContextBuilder;

    fn ctx() -> ContextBuilder {
        Context::for_test()
            .config("code.SPRING15", "15%")
            .config("code.TENOFF", "1000")
            .config("code.VIP", "coupon:vip-coupon")
            .config("min_subtotal.TENOFF", "5000")
    }

    fn run(ctx: &Context, subtotal: i64, code: Option<&str>) -> Decision {
        let s = SessionBuilder::new().item("Mug", subtotal, 1).build();
        let mut r = request("apply-promo-code");
        if let Some(code) = code {
            r = r.input("promo_code", code);
        }
        PromoCode::evaluate(ctx, &s, &r.build())
    }

    #[test]
    fn valid_codes() {
        let c = ctx().build();
        assert_eq!(
            run(&c, 8_000, Some(" spring15 ")),
            Decision::percent_off("Promo code SPRING15", 15.0)
                .with_metadata("promo_code", "SPRING15")
        );
        assert_eq!(
            run(&c, 8_000, Some("TenOff")),
            Decision::amount_off("Promo code TENOFF", Money::new(1_000, "usd"))
                .with_metadata("promo_code", "TENOFF")
        );
        assert_eq!(run(&c, 100, Some("vip")), Decision::coupon("vip-coupon"));
    }

    #[test]
    fn wrong_codes_get_a_friendly_message() {
        let c = ctx().build();
        assert_eq!(
            run(&c, 8_000, Some("WINTER")),
            Decision::reject(DEFAULT_INVALID)
        );
        assert!(c.logged(LogLevel::Warn, "unknown promo code"));
        assert_eq!(
            run(&c, 8_000, Some("<script>")),
            Decision::reject(DEFAULT_INVALID)
        );
        assert_eq!(
            run(&c, 8_000, Some(&"A".repeat(33))),
            Decision::reject(DEFAULT_INVALID)
        );
        let c = ctx().config("invalid_message", "Nope!").build();
        assert_eq!(run(&c, 8_000, Some("WINTER")), Decision::reject("Nope!"));
    }

    #[test]
    fn no_code_clears() {
        let c = ctx().build();
        assert_eq!(run(&c, 8_000, None), Decision::Clear);
        assert_eq!(run(&c, 8_000, Some("   ")), Decision::Clear);
    }

    #[test]
    fn minimum_subtotal() {
        let c = ctx().build();
        assert_eq!(
            run(&c, 4_999, Some("TENOFF")),
            Decision::reject("The code TENOFF needs a subtotal of at least 50.00 USD.")
        );
        let c = ctx().config("min_subtotal", "10000").build();
        assert!(run(&c, 8_000, Some("SPRING15")).rejection().is_some());
    }

    #[test]
    fn amount_is_capped_at_the_cart() {
        let c = ctx().config("code.BIG", "50000").build();
        assert_eq!(
            run(&c, 8_000, Some("BIG")).amount_off_money(),
            Some(Money::new(8_000, "usd"))
        );
    }

    #[test]
    fn input_key_is_configurable() {
        let c = ctx().config("input_key", "code").build();
        let s = SessionBuilder::new().item("Mug", 8_000, 1).build();
        let r = request("apply-promo-code")
            .input("code", "SPRING15")
            .build();
        assert!(PromoCode::evaluate(&c, &s, &r).is_apply());
    }

    #[test]
    fn bad_config_fails_loudly() {
        for (k, v) in [
            ("code.SPRING15", "lots"),
            ("code.SPRING15", "0%"),
            ("code.SPRING15", "coupon:"),
            ("min_subtotal", "x"),
        ] {
            let c = ctx().config(k, v).build();
            assert_eq!(
                run(&c, 8_000, Some("SPRING15")),
                Decision::reject(UNAVAILABLE),
                "{k}={v}"
            );
            let logs = c.logs();
            assert_eq!(
                logs.iter()
                    .find(|r| r.level == LogLevel::Error)
                    .unwrap()
                    .field("key"),
                Some(k)
            );
        }
    }
}
