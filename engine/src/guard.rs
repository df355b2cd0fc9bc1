//! The decision guard: nothing reaches Stripe unless it keeps Stripe's rules for
//! `discounts` and the merchant's caps. A violation is a policy bug.

use crate::bindings::{self as wit, Decision, Discount};
use crate::decision::duration_name;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use stripe_checkout::{CouponData, DiscountsUpdate};

/// Stripe's limit on a coupon name, in characters.
pub const MAX_NAME_CHARS: usize = 40;
/// Stripe's limits on metadata: keys, key length and value length.
pub const MAX_METADATA_KEYS: usize = 50;
/// Longest metadata key Stripe accepts.
pub const MAX_METADATA_KEY_CHARS: usize = 40;
/// Longest metadata value Stripe accepts.
pub const MAX_METADATA_VALUE_CHARS: usize = 500;

/// Merchant-wide caps, from the host configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Caps {
    /// Highest percent_off any policy may give.
    pub max_percent_off: Option<f64>,
    /// Highest amount_off per currency (lowercase ISO code), in the smallest unit.
    pub max_amount_off: BTreeMap<String, i64>,
    /// When set, the only coupon ids a policy may apply.
    pub allowed_coupons: Option<Vec<String>>,
}

/// What a decision becomes once it passed the guard.
#[derive(Debug, Clone, PartialEq)]
pub enum GuardedDecision {
    /// Update the session's discounts.
    Update(DiscountsUpdate),
    /// Make no Stripe call.
    Keep,
    /// Answer the storefront with this message; make no Stripe call.
    Reject(String),
}

/// A rule the decision broke.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize)]
#[error("{rule}: {detail}")]
pub struct GuardViolation {
    /// A stable code for the rule, for logs and metrics.
    pub rule: &'static str,
    /// What was wrong, for the policy's author.
    pub detail: String,
}

fn violation(rule: &'static str, detail: impl Into<String>) -> GuardViolation {
    GuardViolation {
        rule,
        detail: detail.into(),
    }
}

/// Checks a decision against Stripe's rules for this session and the merchant's caps.
pub fn check(
    decision: &Decision,
    session: &wit::CheckoutSession,
    caps: &Caps,
) -> Result<GuardedDecision, GuardViolation> {
    match decision {
        Decision::Keep => Ok(GuardedDecision::Keep),
        Decision::Clear => Ok(GuardedDecision::Update(DiscountsUpdate::Clear)),
        Decision::Reject(message) => {
            if message.trim().is_empty() {
                return Err(violation("empty_message", "a reject needs a message"));
            }
            Ok(GuardedDecision::Reject(message.clone()))
        }
        Decision::Apply(Discount::Coupon(id)) => {
            if id.is_empty() || id.len() > 5000 {
                return Err(violation(
                    "invalid_coupon_id",
                    "a coupon id must be 1 to 5000 characters",
                ));
            }
            if let Some(allowed) = &caps.allowed_coupons {
                if !allowed.iter().any(|a| a == id) {
                    return Err(violation(
                        "coupon_not_allowed",
                        format!("coupon {id:?} is not in the merchant's allowed list"),
                    ));
                }
            }
            Ok(GuardedDecision::Update(DiscountsUpdate::Coupon(id.clone())))
        }
        Decision::Apply(Discount::CouponData(data)) => {
            check_coupon_data(data, session, caps).map(GuardedDecision::Update)
        }
    }
}

fn check_coupon_data(
    data: &wit::CouponData,
    session: &wit::CheckoutSession,
    caps: &Caps,
) -> Result<DiscountsUpdate, GuardViolation> {
    match (data.amount_off, data.percent_off) {
        (Some(_), Some(_)) => {
            return Err(violation(
                "amount_and_percent",
                "coupon_data needs exactly one of amount_off or percent_off, not both",
            ))
        }
        (None, None) => {
            return Err(violation(
                "no_amount",
                "coupon_data needs exactly one of amount_off or percent_off",
            ))
        }
        (Some(amount), None) => check_amount_off(amount, data.currency.as_deref(), session, caps)?,
        (None, Some(percent)) => {
            if data.currency.is_some() {
                return Err(violation(
                    "currency_without_amount",
                    "currency goes with amount_off only",
                ));
            }
            check_percent_off(percent, caps)?
        }
    }
    if let Some(name) = &data.name {
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(violation(
                "invalid_name",
                format!("name must be 1 to {MAX_NAME_CHARS} characters, got {chars}"),
            ));
        }
    }
    match data.duration {
        Some(wit::Duration::Repeating) => {
            return Err(violation(
                "invalid_duration",
                "repeating needs duration_in_months, which coupon_data cannot carry",
            ))
        }
        Some(wit::Duration::ServicePeriod) if session.mode != wit::Mode::Subscription => {
            return Err(violation(
                "invalid_duration",
                "service_period applies to subscription sessions only",
            ))
        }
        _ => {}
    }
    check_metadata(&data.metadata)?;
    Ok(DiscountsUpdate::CouponData(CouponData {
        name: data.name.clone(),
        amount_off: data.amount_off,
        currency: data.currency.as_ref().map(|c| c.to_ascii_lowercase()),
        percent_off: data.percent_off,
        duration: data.duration.map(|d| duration_name(d).to_string()),
        metadata: data.metadata.iter().cloned().collect(),
    }))
}

fn check_amount_off(
    amount: i64,
    currency: Option<&str>,
    session: &wit::CheckoutSession,
    caps: &Caps,
) -> Result<(), GuardViolation> {
    if amount <= 0 {
        return Err(violation(
            "amount_not_positive",
            format!("amount_off must be positive, got {amount}"),
        ));
    }
    let currency = currency
        .ok_or_else(|| violation("missing_currency", "amount_off needs a currency"))?
        .to_ascii_lowercase();
    let session_currency = session
        .currency
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if currency != session_currency {
        return Err(violation(
            "currency_mismatch",
            format!("amount_off is in {currency:?} but the session is in {session_currency:?}"),
        ));
    }
    let discountable = session
        .amount_subtotal
        .unwrap_or_else(|| session.line_items.iter().map(|l| l.amount_subtotal).sum());
    if amount > discountable {
        return Err(violation(
            "amount_above_subtotal",
            format!("amount_off {amount} is above the subtotal {discountable}"),
        ));
    }
    // Caps are keyed by ISO code in any case; a merchant writing `USD` still gets a cap.
    let cap = caps
        .max_amount_off
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(&currency))
        .map(|(_, cap)| cap);
    if let Some(cap) = cap {
        if amount > *cap {
            return Err(violation(
                "above_merchant_cap",
                format!("amount_off {amount} {currency} is above the merchant's cap of {cap}"),
            ));
        }
    }
    Ok(())
}

fn check_percent_off(percent: f64, caps: &Caps) -> Result<(), GuardViolation> {
    if !percent.is_finite() || percent <= 0.0 || percent > 100.0 {
        return Err(violation(
            "percent_out_of_range",
            format!("percent_off must be above 0 and at most 100, got {percent}"),
        ));
    }
    if let Some(cap) = caps.max_percent_off {
        // A NaN cap refuses everything rather than nothing.
        if cap.is_nan() || percent > cap {
            return Err(violation(
                "above_merchant_cap",
                format!("percent_off {percent} is above the merchant's cap of {cap}"),
            ));
        }
    }
    Ok(())
}

fn check_metadata(metadata: &[(String, String)]) -> Result<(), GuardViolation> {
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(violation(
            "invalid_metadata",
            format!(
                "{} metadata keys, Stripe allows {MAX_METADATA_KEYS}",
                metadata.len()
            ),
        ));
    }
    for (k, v) in metadata {
        let key_chars = k.chars().count();
        if key_chars == 0 || key_chars > MAX_METADATA_KEY_CHARS || k.contains(['[', ']']) {
            return Err(violation(
                "invalid_metadata",
                format!("metadata key {k:?} must be 1 to {MAX_METADATA_KEY_CHARS} characters, without brackets"),
            ));
        }
        if v.chars().count() > MAX_METADATA_VALUE_CHARS {
            return Err(violation(
                "invalid_metadata",
                format!("metadata value of {k:?} is over {MAX_METADATA_VALUE_CHARS} characters"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(currency: &str, subtotal: i64) -> wit::CheckoutSession {
        crate::fixtures::open_session("cs_test", currency, subtotal)
    }

    fn data() -> wit::CouponData {
        wit::CouponData {
            name: Some("Cart discount".into()),
            amount_off: None,
            currency: None,
            percent_off: None,
            duration: None,
            metadata: vec![],
        }
    }

    fn apply(d: wit::CouponData) -> Decision {
        Decision::Apply(Discount::CouponData(d))
    }

    fn rule(d: Decision, caps: &Caps) -> &'static str {
        check(&d, &session("usd", 10_000), caps).unwrap_err().rule
    }

    #[test]
    fn accepts_valid_amount_and_percent() {
        let ok = check(
            &apply(wit::CouponData {
                amount_off: Some(2000),
                currency: Some("USD".into()),
                ..data()
            }),
            &session("usd", 10_000),
            &Caps::default(),
        )
        .unwrap();
        match ok {
            GuardedDecision::Update(DiscountsUpdate::CouponData(c)) => {
                assert_eq!(c.currency.as_deref(), Some("usd"));
                assert_eq!(c.amount_off, Some(2000));
            }
            other => panic!("{other:?}"),
        }
        let pct = apply(wit::CouponData {
            percent_off: Some(100.0),
            ..data()
        });
        assert!(check(&pct, &session("usd", 1), &Caps::default()).is_ok());
    }

    #[test]
    fn stripe_rules() {
        let caps = Caps::default();
        assert_eq!(rule(apply(data()), &caps), "no_amount");
        assert_eq!(
            rule(
                apply(wit::CouponData {
                    amount_off: Some(1),
                    currency: Some("usd".into()),
                    percent_off: Some(5.0),
                    ..data()
                }),
                &caps
            ),
            "amount_and_percent"
        );
        for bad in [f64::NAN, f64::INFINITY, -5.0, 0.0, 100.01] {
            assert_eq!(
                rule(
                    apply(wit::CouponData {
                        percent_off: Some(bad),
                        ..data()
                    }),
                    &caps
                ),
                "percent_out_of_range"
            );
        }
        assert_eq!(
            rule(
                apply(wit::CouponData {
                    amount_off: Some(0),
                    currency: Some("usd".into()),
                    ..data()
                }),
                &caps
            ),
            "amount_not_positive"
        );
        assert_eq!(
            rule(
                apply(wit::CouponData {
                    amount_off: Some(-5),
                    currency: Some("usd".into()),
                    ..data()
                }),
                &caps
            ),
            "amount_not_positive"
        );
        assert_eq!(
            rule(
                apply(wit::CouponData {
                    amount_off: Some(5),
                    currency: Some("eur".into()),
                    ..data()
                }),
                &caps
            ),
            "currency_mismatch"
        );
        assert_eq!(
            rule(
                apply(wit::CouponData {
                    amount_off: Some(5),
                    ..data()
                }),
                &caps
            ),
            "missing_currency"
        );
        assert_eq!(
            rule(
                apply(wit::CouponData {
                    amount_off: Some(10_001),
                    currency: Some("usd".into()),
                    ..data()
                }),
                &caps
            ),
            "amount_above_subtotal"
        );
        assert_eq!(
            rule(
                apply(wit::CouponData {
                    percent_off: Some(5.0),
                    name: Some("x".repeat(41)),
                    ..data()
                }),
                &caps
            ),
            "invalid_name"
        );
        assert_eq!(
            rule(
                apply(wit::CouponData {
                    percent_off: Some(5.0),
                    duration: Some(wit::Duration::Repeating),
                    ..data()
                }),
                &caps
            ),
            "invalid_duration"
        );
        assert_eq!(
            rule(
                apply(wit::CouponData {
                    percent_off: Some(5.0),
                    duration: Some(wit::Duration::ServicePeriod),
                    ..data()
                }),
                &caps
            ),
            "invalid_duration"
        );
        assert_eq!(
            rule(
                apply(wit::CouponData {
                    percent_off: Some(5.0),
                    metadata: vec![("a[b]".into(), "v".into())],
                    ..data()
                }),
                &caps
            ),
            "invalid_metadata"
        );
        assert_eq!(rule(Decision::Reject("  ".into()), &caps), "empty_message");
    }

    #[test]
    fn merchant_caps() {
        let caps = Caps {
            max_percent_off: Some(30.0),
            max_amount_off: BTreeMap::from([("usd".to_string(), 2500)]),
            allowed_coupons: Some(vec!["SUMMER".into()]),
        };
        assert_eq!(
            rule(
                apply(wit::CouponData {
                    percent_off: Some(30.5),
                    ..data()
                }),
                &caps
            ),
            "above_merchant_cap"
        );
        assert_eq!(
            rule(
                apply(wit::CouponData {
                    amount_off: Some(2501),
                    currency: Some("usd".into()),
                    ..data()
                }),
                &caps
            ),
            "above_merchant_cap"
        );
        assert_eq!(
            rule(Decision::Apply(Discount::Coupon("WINTER".into())), &caps),
            "coupon_not_allowed"
        );
        assert!(check(
            &Decision::Apply(Discount::Coupon("SUMMER".into())),
            &session("usd", 1),
            &caps
        )
        .is_ok());
    }

    #[test]
    fn caps_fail_closed() {
        // A cap keyed in upper case still applies.
        let upper = Caps {
            max_amount_off: BTreeMap::from([("USD".to_string(), 100)]),
            ..Caps::default()
        };
        let over = apply(wit::CouponData {
            amount_off: Some(101),
            currency: Some("usd".into()),
            ..data()
        });
        assert_eq!(rule(over, &upper), "above_merchant_cap");
        // A NaN percent cap (TOML allows `nan`) refuses every percent_off.
        let nan = Caps {
            max_percent_off: Some(f64::NAN),
            ..Caps::default()
        };
        let pct = apply(wit::CouponData {
            percent_off: Some(1.0),
            ..data()
        });
        assert_eq!(rule(pct, &nan), "above_merchant_cap");
    }

    #[test]
    fn keep_clear_reject() {
        let s = session("usd", 1);
        let caps = Caps::default();
        assert_eq!(
            check(&Decision::Keep, &s, &caps).unwrap(),
            GuardedDecision::Keep
        );
        assert_eq!(
            check(&Decision::Clear, &s, &caps).unwrap(),
            GuardedDecision::Update(DiscountsUpdate::Clear)
        );
        assert_eq!(
            check(&Decision::Reject("No".into()), &s, &caps).unwrap(),
            GuardedDecision::Reject("No".into())
        );
    }
}
