//! Location-based discount: a percentage off keyed on the shipping or billing country,
//! or on a postal-code prefix within a country.
//!
//! The address comes from the retrieved session — `collected_information.shipping_details`
//! or `customer_details.address` — never from the storefront's request. Rates:
//!
//! | key                        | meaning                                          |
//! |----------------------------|--------------------------------------------------|
//! | `country.<CC>`             | percent off for country `CC` (`country.FR`)      |
//! | `postal.<CC>.<prefix>`     | percent off for postal codes starting `prefix`   |
//! | `address`                  | `shipping`, `billing` or `shipping_then_billing`  |
//! | `name`                     | coupon name (default `Regional discount`)        |
//!
//! The longest matching postal prefix wins over the country rate. Country codes are
//! compared uppercase; postal codes uppercase without spaces or dashes. No address yet, or
//! no rate for it, clears the session's discounts (a customer who changes the address to
//! one without a rate loses the discount). A bad rate is a deployment error: an `error`
//! log naming the key and a `reject` with a neutral message.

use discount_policy_sdk::prelude::*;

/// Default coupon name.
pub const DEFAULT_NAME: &str = "Regional discount";
/// What the customer sees when the policy is misconfigured.
pub const UNAVAILABLE: &str = "This discount is unavailable right now";

/// Which of the session's addresses decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressSource {
    /// The shipping address only.
    Shipping,
    /// The billing address only.
    Billing,
    /// The shipping address, else the billing address.
    ShippingThenBilling,
}

impl AddressSource {
    /// Reads `address` from the configuration.
    pub fn from_context(ctx: &Context) -> Result<Self, ConfigError> {
        match ctx.config_or("address", "shipping_then_billing").trim() {
            "shipping" => Ok(Self::Shipping),
            "billing" => Ok(Self::Billing),
            "shipping_then_billing" => Ok(Self::ShippingThenBilling),
            other => Err(ConfigError::new(
                "address",
                other,
                "must be shipping, billing or shipping_then_billing",
            )),
        }
    }
}

/// The country and postal code the policy keys on, and which address they came from.
pub fn location(
    session: &CheckoutSession,
    source: AddressSource,
) -> Option<(String, String, &'static str)> {
    let shipping = session
        .shipping_country()
        .map(|c| (c, session.shipping_postal_code().unwrap_or(""), "shipping"));
    let billing = session
        .billing_country()
        .map(|c| (c, session.billing_postal_code().unwrap_or(""), "billing"));
    let (country, postal, from) = match source {
        AddressSource::Shipping => shipping,
        AddressSource::Billing => billing,
        AddressSource::ShippingThenBilling => shipping.or(billing),
    }?;
    Some((
        country.trim().to_ascii_uppercase(),
        normalize_postal(postal),
        from,
    ))
}

/// `"sw1a 1aa"` → `"SW1A1AA"`.
pub fn normalize_postal(postal: &str) -> String {
    postal
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The rate that applies: the longest matching postal prefix, else the country's.
/// Returns the configuration key and the percentage.
pub fn rate(
    ctx: &Context,
    country: &str,
    postal: &str,
) -> Result<Option<(String, f64)>, ConfigError> {
    let prefix = format!("postal.{country}.");
    let mut best: Option<(usize, String)> = None;
    for (key, _) in ctx.config_entries() {
        if let Some(p) = key.strip_prefix(&prefix) {
            let p = normalize_postal(p);
            if !p.is_empty()
                && postal.starts_with(&p)
                && best.as_ref().is_none_or(|(len, _)| p.len() > *len)
            {
                best = Some((p.len(), key.clone()));
            }
        }
    }
    let key = match best {
        Some((_, key)) => key,
        None => format!("country.{country}"),
    };
    Ok(ctx.config_percent(&key)?.map(|p| (key, p)))
}

/// The location-based policy.
pub struct LocationBased;

impl Policy for LocationBased {
    fn evaluate(ctx: &Context, session: &CheckoutSession, _request: &PolicyRequest) -> Decision {
        let fail = |e: ConfigError| {
            ctx.error(
                "invalid location-based configuration",
                &[("key", e.key()), ("error", &e.to_string())],
            );
            Decision::reject(UNAVAILABLE)
        };
        let source = match AddressSource::from_context(ctx) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let Some((country, postal, from)) = location(session, source) else {
            ctx.info("no address yet; clearing discounts", &[]);
            return Decision::clear();
        };
        let (key, percent) = match rate(ctx, &country, &postal) {
            Ok(Some(r)) => r,
            Ok(None) => {
                ctx.info(
                    "no discount for this location; clearing discounts",
                    &[("country", &country), ("address", from)],
                );
                return Decision::clear();
            }
            Err(e) => return fail(e),
        };
        ctx.info(
            "applying location discount",
            &[("country", &country), ("address", from), ("rule", &key)],
        );
        Decision::percent_off(ctx.config_or("name", DEFAULT_NAME), percent)
            .with_metadata("region", country)
            .with_metadata("region_rule", key)
    }
}

discount_policy_sdk::export_policy!(LocationBased);

#[cfg(test)]
mod tests {
    use super::*;
    use discount_policy_sdk::testing::{request, SessionBuilder};
    use discount_policy_sdk::ContextBuilder;

    fn ctx() -> ContextBuilder {
        Context::for_test()
            .config("country.FR", "10")
            .config("country.US", "5")
            .config("postal.US.941", "15")
            .config("postal.US.9411", "20")
            .config("postal.GB.SW1", "8")
    }

    fn run(ctx: &Context, s: &CheckoutSession) -> Decision {
        LocationBased::evaluate(ctx, s, &request("apply-location-discount").build())
    }

    fn base() -> SessionBuilder {
        SessionBuilder::new().item("Lamp", 8_000, 1)
    }

    #[test]
    fn country_rate() {
        let c = ctx().build();
        let d = run(&c, &base().shipping("fr", "69001").build());
        assert_eq!(
            d,
            Decision::percent_off(DEFAULT_NAME, 10.0)
                .with_metadata("region", "FR")
                .with_metadata("region_rule", "country.FR")
        );
    }

    #[test]
    fn longest_postal_prefix_wins() {
        let c = ctx().build();
        assert_eq!(
            run(&c, &base().shipping("US", "94110").build()).percent_off_value(),
            Some(20.0)
        );
        assert_eq!(
            run(&c, &base().shipping("US", "94103").build()).percent_off_value(),
            Some(15.0)
        );
        assert_eq!(
            run(&c, &base().shipping("US", "10001").build()).percent_off_value(),
            Some(5.0)
        );
        assert_eq!(
            run(&c, &base().shipping("GB", "sw1a 1aa").build()).percent_off_value(),
            Some(8.0)
        );
    }

    #[test]
    fn shipping_then_billing() {
        let c = ctx().build();
        let s = base().billing("FR", "75001").build();
        assert_eq!(run(&c, &s).percent_off_value(), Some(10.0));
        let s = base()
            .shipping("DE", "10115")
            .billing("FR", "75001")
            .build();
        assert_eq!(
            run(&c, &s),
            Decision::Clear,
            "shipping decides when present"
        );
        let c = ctx().config("address", "billing").build();
        assert_eq!(run(&c, &s).percent_off_value(), Some(10.0));
        let c = ctx().config("address", "shipping").build();
        assert_eq!(
            run(&c, &base().billing("FR", "75001").build()),
            Decision::Clear
        );
    }

    #[test]
    fn no_address_or_no_rate_clears() {
        let c = ctx().build();
        assert_eq!(run(&c, &base().build()), Decision::Clear);
        assert!(c.logged(LogLevel::Info, "no address"));
        assert_eq!(
            run(&c, &base().shipping("JP", "100-0001").build()),
            Decision::Clear
        );
    }

    #[test]
    fn bad_config_fails_loudly() {
        for (k, v) in [
            ("country.FR", "ten"),
            ("country.FR", "0"),
            ("address", "home"),
        ] {
            let c = ctx().config(k, v).build();
            assert_eq!(
                run(&c, &base().shipping("FR", "1").build()),
                Decision::reject(UNAVAILABLE),
                "{k}={v}"
            );
            let logs = c.logs();
            let err = logs.iter().find(|r| r.level == LogLevel::Error).unwrap();
            assert_eq!(err.field("key"), Some(k));
        }
    }
}
