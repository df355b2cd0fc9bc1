//! Time-limited offer: a discount active between `starts_at` and `ends_at`.
//!
//! The time is the host's (`Context::now`), which the runner fixes for reproducible tests.
//! Inside the window the policy applies a one-off coupon (`percent` or `amount_off`);
//! outside it — not started yet, or over — it clears the session's discounts, so an
//! offer that ended while the customer was still in checkout is removed on the next call.
//!
//! Configuration (strings):
//!
//! | key            | meaning                                                      |
//! |----------------|--------------------------------------------------------------|
//! | `starts_at`    | start, inclusive: RFC 3339 (`2026-11-27T00:00:00Z`) or Unix s |
//! | `ends_at`      | end, exclusive, after `starts_at`                            |
//! | `percent`      | percentage off; or                                           |
//! | `amount_off`   | amount off in the session currency's smallest unit           |
//! | `min_subtotal` | smallest subtotal that gets the offer (default 0)            |
//! | `name`         | coupon name (default `Limited-time offer`)                   |
//!
//! Exactly one of `percent` and `amount_off`. A bad value is a deployment error: an
//! `error` log naming the key and a `reject` with a neutral message.

use discount_policy_sdk::prelude::*;

/// Default coupon name.
pub const DEFAULT_NAME: &str = "Limited-time offer";
/// What the customer sees when the policy is misconfigured.
pub const UNAVAILABLE: &str = "This discount is unavailable right now";

/// What the offer gives.
#[derive(Clone, Debug, PartialEq)]
pub enum Offer {
    /// A percentage off.
    Percent(f64),
    /// An amount off, in the smallest currency unit.
    Amount(i64),
}

/// The offer's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Start, Unix seconds, inclusive.
    pub starts_at: i64,
    /// End, Unix seconds, exclusive.
    pub ends_at: i64,
    /// What it gives.
    pub offer: Offer,
    /// Smallest subtotal that gets the offer.
    pub min_subtotal: i64,
    /// Coupon name.
    pub name: String,
}

impl Settings {
    /// Reads and validates the settings; the error names the offending key.
    pub fn from_context(ctx: &Context) -> Result<Settings, ConfigError> {
        let time = |key: &str| -> Result<i64, ConfigError> {
            let raw = ctx
                .config(key)
                .ok_or_else(|| ConfigError::new(key, "", "is required"))?;
            parse_time(&raw).map_err(|reason| ConfigError::new(key, raw.as_str(), reason))
        };
        let starts_at = time("starts_at")?;
        let ends_at = time("ends_at")?;
        if ends_at <= starts_at {
            return Err(ConfigError::new(
                "ends_at",
                ctx.config_or("ends_at", ""),
                "must be after starts_at",
            ));
        }
        let percent = ctx.config_percent("percent")?;
        let amount = ctx.config_parse::<i64>("amount_off")?;
        let offer = match (percent, amount) {
            (Some(p), None) => Offer::Percent(p),
            (None, Some(a)) if a > 0 => Offer::Amount(a),
            (None, Some(a)) => {
                return Err(ConfigError::new(
                    "amount_off",
                    a.to_string(),
                    "must be positive",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "amount_off",
                    ctx.config_or("amount_off", ""),
                    "set either percent or amount_off, not both",
                ))
            }
            (None, None) => {
                return Err(ConfigError::new("percent", "", "set percent or amount_off"))
            }
        };
        let min_subtotal = ctx.config_parse_or("min_subtotal", 0i64)?;
        Ok(Settings {
            starts_at,
            ends_at,
            offer,
            min_subtotal,
            name: ctx.config_or("name", DEFAULT_NAME),
        })
    }
}

/// Parses Unix seconds, or RFC 3339 (`2026-11-27T00:00:00Z`, `...T01:00:00+01:00`).
pub fn parse_time(text: &str) -> Result<i64, &'static str> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<i64>() {
        return Ok(secs);
    }
    const EXPECTED: &str = "expected Unix seconds or RFC 3339 like 2026-11-27T00:00:00Z";
    let b = t.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(EXPECTED);
    }
    let num = |from: usize, to: usize| -> Result<i64, &'static str> {
        let s = &t[from..to];
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().map_err(|_| EXPECTED)
        } else {
            Err(EXPECTED)
        }
    };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m)
        || d < 1
        || d > month_days[(m - 1) as usize]
        || hh > 23
        || mm > 59
        || ss > 59
    {
        return Err("no such date or time");
    }
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let local = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    match rest.as_bytes() {
        [b'Z'] | [b'z'] => Ok(local),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return Err(EXPECTED);
            }
            let offset = i64::from((h1 - b'0') * 10 + (h2 - b'0')) * 3600
                + i64::from((m1 - b'0') * 10 + (m2 - b'0')) * 60;
            Ok(if *sign == b'+' {
                local - offset
            } else {
                local + offset
            })
        }
        _ => Err(EXPECTED),
    }
}

/// The time-limited offer policy.
pub struct TimeLimited;

impl Policy for TimeLimited {
    fn evaluate(ctx: &Context, session: &CheckoutSession, _request: &PolicyRequest) -> Decision {
        let settings = match Settings::from_context(ctx) {
            Ok(s) => s,
            Err(e) => {
                ctx.error(
                    "invalid time-limited configuration",
                    &[("key", e.key()), ("error", &e.to_string())],
                );
                return Decision::reject(UNAVAILABLE);
            }
        };
        let now = ctx.now();
        let now_text = now.to_string();
        if now < settings.starts_at {
            ctx.info(
                "offer not started yet; clearing discounts",
                &[
                    ("now", &now_text),
                    ("starts_at", &settings.starts_at.to_string()),
                ],
            );
            return Decision::clear();
        }
        if now >= settings.ends_at {
            ctx.info(
                "offer has ended; clearing discounts",
                &[
                    ("now", &now_text),
                    ("ends_at", &settings.ends_at.to_string()),
                ],
            );
            return Decision::clear();
        }
        let Some(subtotal) = session.subtotal() else {
            ctx.warn(
                "session has no currency or subtotal; leaving it as it is",
                &[],
            );
            return Decision::keep();
        };
        if subtotal.amount < settings.min_subtotal {
            ctx.info(
                "cart under the offer's minimum; clearing discounts",
                &[("subtotal", &subtotal.to_string())],
            );
            return Decision::clear();
        }
        let decision = match settings.offer {
            Offer::Percent(p) => Decision::percent_off(&settings.name, p),
            // Never more than the cart: Stripe refuses an amount_off above the subtotal.
            Offer::Amount(a) => Decision::amount_off(
                &settings.name,
                subtotal.with_amount(a).capped_at(subtotal.amount),
            ),
        };
        ctx.info(
            "offer active; applying discount",
            &[
                ("now", &now_text),
                ("ends_at", &settings.ends_at.to_string()),
            ],
        );
        decision.with_metadata("offer_ends_at", settings.ends_at.to_string())
    }
}

discount_policy_sdk::export_policy!(TimeLimited);

#[cfg(test)]
mod tests {
    use super::*;
    use discount_policy_sdk::testing::{request, SessionBuilder};

    const START: i64 = 1_795_737_600; // 2026-11-27T00:00:00Z
    const END: i64 = 1_796_083_200; // 2026-12-01T00:00:00Z

    fn ctx(now: i64) -> Context {
        Context::for_test()
            .config("starts_at", "2026-11-27T00:00:00Z")
            .config("ends_at", "2026-12-01T00:00:00Z")
            .config("percent", "20")
            .now(now)
            .build()
    }

    fn run(ctx: &Context) -> Decision {
        let s = SessionBuilder::new().item("Coat", 10_000, 1).build();
        TimeLimited::evaluate(ctx, &s, &request("apply-limited-time-offer").build())
    }

    #[test]
    fn parses_times() {
        assert_eq!(parse_time("2026-11-27T00:00:00Z"), Ok(START));
        assert_eq!(parse_time("2026-11-27T01:00:00+01:00"), Ok(START));
        assert_eq!(parse_time("2026-11-26T19:00:00.5-05:00"), Ok(START));
        assert_eq!(parse_time(" 1795737600 "), Ok(START));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Ok(1_709_164_800));
        for bad in [
            "",
            "soon",
            "2026-02-30T00:00:00Z",
            "2026-11-27T00:00:00",
            "2026-11-27T00:00:00+1:00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn active_inside_the_window() {
        let d = run(&ctx(START));
        assert_eq!(
            d,
            Decision::percent_off(DEFAULT_NAME, 20.0)
                .with_metadata("offer_ends_at", END.to_string())
        );
        assert!(run(&ctx(END - 1)).is_apply());
    }

    #[test]
    fn cleared_outside_the_window() {
        let c = ctx(START - 1);
        assert_eq!(run(&c), Decision::Clear);
        assert!(c.logged(LogLevel::Info, "not started"));
        let c = ctx(END);
        assert_eq!(run(&c), Decision::Clear);
        assert!(c.logged(LogLevel::Info, "ended"));
    }

    #[test]
    fn amount_off_is_capped_at_the_cart() {
        let c = Context::for_test()
            .config("starts_at", "0")
            .config("ends_at", "2000000000")
            .config("amount_off", "50000")
            .config("name", "Flash sale")
            .now(START)
            .build();
        assert_eq!(
            run(&c),
            Decision::amount_off("Flash sale", Money::new(10_000, "usd"))
                .with_metadata("offer_ends_at", "2000000000")
        );
    }

    #[test]
    fn minimum_subtotal() {
        let c = Context::for_test()
            .config("starts_at", "0")
            .config("ends_at", "2000000000")
            .config("percent", "10")
            .config("min_subtotal", "20000")
            .now(START)
            .build();
        assert_eq!(run(&c), Decision::Clear);
    }

    #[test]
    fn bad_config_fails_loudly() {
        let base = [
            ("starts_at", "2026-11-27T00:00:00Z"),
            ("ends_at", "2026-12-01T00:00:00Z"),
            ("percent", "20"),
        ];
        let cases: [(&str, Option<&str>); 6] = [
            ("starts_at", None),
            ("ends_at", Some("next week")),
            ("ends_at", Some("2026-11-01T00:00:00Z")),
            ("percent", Some("0")),
            ("amount_off", Some("500")),
            ("percent", None),
        ];
        for (key, value) in cases {
            let mut b = Context::for_test().now(START);
            for (k, v) in base {
                if k != key || value.is_some() {
                    b = b.config(k, v);
                }
            }
            if let Some(v) = value {
                b = b.config(key, v);
            }
            let c = b.build();
            assert_eq!(run(&c), Decision::reject(UNAVAILABLE), "{key}={value:?}");
            let logs = c.logs();
            let err = logs
                .iter()
                .find(|r| r.level == LogLevel::Error)
                .expect("an error log");
            assert!(err.field("key").is_some(), "{key}");
        }
    }
}
