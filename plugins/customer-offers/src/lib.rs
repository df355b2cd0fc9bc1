//! Customer-specific offers: a percentage off keyed on the customer id, a metadata segment
//! of the customer, or the customer's email domain.
//!
//! | key                     | meaning                                                   |
//! |-------------------------|-----------------------------------------------------------|
//! | `customer.<cus_id>`     | percent off for that customer                             |
//! | `segment_key`           | customer metadata key holding the segment (`segment`)     |
//! | `segment.<value>`       | percent off for that segment (value trimmed, lowercased)  |
//! | `domain.<domain>`       | percent off for emails at that domain or its subdomains   |
//! | `email_source`          | `customer` (default) or `checkout`                        |
//! | `name`                  | coupon name (default `Customer offer`)                    |
//!
//! The most specific match wins: customer id, then segment, then email domain. Everything
//! comes from the session Stripe returned, never from the storefront's request. The email
//! is the Customer object's by default: the checkout email (`customer_details.email`) is
//! whatever the customer typed, so keying an offer on its domain hands the offer to anyone
//! who types such an address; `email_source = "checkout"` accepts that risk. No match clears
//! the session's discounts. A bad rate is a deployment error: an `error` log naming the key
//! and a `reject` with a neutral message.

use discount_policy_sdk::prelude::*;

/// Default coupon name.
pub const DEFAULT_NAME: &str = "Customer offer";
/// Default customer metadata key of the segment.
pub const DEFAULT_SEGMENT_KEY: &str = "segment";
/// What the customer sees when the policy is misconfigured.
pub const UNAVAILABLE: &str = "This discount is unavailable right now";

/// The email the policy keys domains on, per `email_source`.
pub fn email<'a>(
    ctx: &Context,
    session: &'a CheckoutSession,
) -> Result<Option<&'a str>, ConfigError> {
    match ctx.config_or("email_source", "customer").trim() {
        "customer" => Ok(session
            .customer
            .as_ref()
            .and_then(|c| c.email.as_deref())
            .map(str::trim)
            .filter(|e| !e.is_empty())),
        "checkout" => Ok(session.email()),
        other => Err(ConfigError::new(
            "email_source",
            other,
            "must be customer or checkout",
        )),
    }
}

/// The configuration keys that could match, most specific first.
pub fn candidate_keys(
    ctx: &Context,
    session: &CheckoutSession,
) -> Result<Vec<String>, ConfigError> {
    let mut keys = Vec::new();
    if let Some(id) = session.customer_id.as_deref().filter(|id| !id.is_empty()) {
        keys.push(format!("customer.{id}"));
    }
    let segment_key = ctx.config_or("segment_key", DEFAULT_SEGMENT_KEY);
    if let Some(segment) = session.customer_metadata(&segment_key) {
        let segment = segment.trim().to_ascii_lowercase();
        if !segment.is_empty() {
            keys.push(format!("segment.{segment}"));
        }
    }
    if let Some((_, domain)) = email(ctx, session)?.and_then(|e| e.rsplit_once('@')) {
        // `mail.example.com` matches domain.mail.example.com, then domain.example.com.
        let domain = domain.trim().to_ascii_lowercase();
        let mut rest = domain.as_str();
        while rest.contains('.') {
            keys.push(format!("domain.{rest}"));
            rest = rest.split_once('.').map_or("", |(_, r)| r);
        }
    }
    Ok(keys)
}

/// The customer-offers policy.
pub struct CustomerOffers;

impl Policy for CustomerOffers {
    fn evaluate(ctx: &Context, session: &CheckoutSession, _request: &PolicyRequest) -> Decision {
        let fail = |e: ConfigError| {
            ctx.error(
                "invalid customer-offers configuration",
                &[("key", e.key()), ("error", &e.to_string())],
            );
            Decision::reject(UNAVAILABLE)
        };
        let keys = match candidate_keys(ctx, session) {
            Ok(k) => k,
            Err(e) => return fail(e),
        };
        for key in &keys {
            match ctx.config_percent(key) {
                Ok(Some(percent)) => {
                    ctx.info("applying customer offer", &[("rule", key)]);
                    let kind = key.split('.').next().unwrap_or_default();
                    return Decision::percent_off(ctx.config_or("name", DEFAULT_NAME), percent)
                        .with_metadata("offer_rule", kind);
                }
                Ok(None) => {}
                Err(e) => return fail(e),
            }
        }
        ctx.info(
            "no offer for this customer; clearing discounts",
            &[("checked", &keys.len().to_string())],
        );
        Decision::clear()
    }
}

discount_policy_sdk::export_policy!(CustomerOffers);

#[cfg(test)]
mod tests {
    use super::*;
    use discount_policy_sdk::testing::{request, SessionBuilder};
    use discount_policy_sdk::ContextBuilder;

    fn ctx() -> ContextBuilder {
        Context::for_test()
            .config("customer.cus_vip1", "25")
            .config("segment.vip", "15")
            .config("domain.example.com", "10")
    }

    fn run(ctx: &Context, s: &CheckoutSession) -> Decision {
        CustomerOffers::evaluate(ctx, s, &request("apply-customer-discount").build())
    }

    fn with_email(b: SessionBuilder, email: &str) -> CheckoutSession {
        let mut s = b.build();
        if let Some(c) = s.customer.as_mut() {
            c.email = Some(email.to_string());
        }
        s
    }

    #[test]
    fn customer_id_beats_segment_and_domain() {
        let s = with_email(
            SessionBuilder::new()
                .customer("cus_vip1")
                .customer_metadata("segment", "vip"),
            "a@example.com",
        );
        let d = run(&ctx().build(), &s);
        assert_eq!(
            d,
            Decision::percent_off(DEFAULT_NAME, 25.0).with_metadata("offer_rule", "customer")
        );
    }

    #[test]
    fn segment_beats_domain() {
        let s = with_email(
            SessionBuilder::new()
                .customer("cus_2")
                .customer_metadata("segment", " VIP "),
            "a@example.com",
        );
        assert_eq!(run(&ctx().build(), &s).percent_off_value(), Some(15.0));
    }

    #[test]
    fn domain_and_subdomains() {
        let c = ctx().build();
        let s = with_email(
            SessionBuilder::new().customer("cus_3"),
            "Ada@Mail.Example.com",
        );
        assert_eq!(run(&c, &s).percent_off_value(), Some(10.0));
        let s = with_email(
            SessionBuilder::new().customer("cus_3"),
            "ada@notexample.com",
        );
        assert_eq!(run(&c, &s), Decision::Clear);
    }

    #[test]
    fn checkout_email_only_when_allowed() {
        let s = SessionBuilder::new()
            .customer("cus_4")
            .customer_email("ada@example.com")
            .build();
        assert_eq!(
            run(&ctx().build(), &s),
            Decision::Clear,
            "typed emails are not trusted by default"
        );
        let c = ctx().config("email_source", "checkout").build();
        assert_eq!(run(&c, &s).percent_off_value(), Some(10.0));
    }

    #[test]
    fn segment_key_is_configurable() {
        let s = SessionBuilder::new()
            .customer_metadata("cohort", "vip")
            .build();
        assert_eq!(run(&ctx().build(), &s), Decision::Clear);
        assert_eq!(
            run(&ctx().config("segment_key", "cohort").build(), &s).percent_off_value(),
            Some(15.0)
        );
    }

    #[test]
    fn nobody_gets_nothing() {
        let c = ctx().build();
        assert_eq!(run(&c, &SessionBuilder::new().build()), Decision::Clear);
        assert!(c.logged(LogLevel::Info, "no offer"));
    }

    #[test]
    fn bad_config_fails_loudly() {
        for (k, v) in [("segment.vip", "lots"), ("email_source", "anywhere")] {
            let c = ctx().config(k, v).build();
            let s = with_email(
                SessionBuilder::new()
                    .customer("cus_5")
                    .customer_metadata("segment", "vip"),
                "a@example.com",
            );
            assert_eq!(run(&c, &s), Decision::reject(UNAVAILABLE), "{k}");
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
