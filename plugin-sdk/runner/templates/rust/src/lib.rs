//! {{title}}: a percentage off carts of at least `min_subtotal`.
//!
//! Configuration (`policy.toml`, `[config]`):
//!
//! | key            | default  | meaning                                    |
//! |----------------|----------|--------------------------------------------|
//! | `percent`      | `10`     | percentage off (0 < percent ≤ 100)          |
//! | `min_subtotal` | `5000`   | smallest subtotal that gets the discount   |
//! | `name`         | `{{title}}` | coupon name shown to the customer       |

use discount_policy_sdk::prelude::*;

/// What the customer sees when the configuration is broken.
pub const UNAVAILABLE: &str = "This discount is unavailable right now";

/// The policy.
pub struct {{type}};

impl Policy for {{type}} {
    fn evaluate(ctx: &Context, session: &CheckoutSession, _request: &PolicyRequest) -> Decision {
        // Configuration errors are deployment errors: log them and refuse politely.
        let settings = ctx
            .config_percent("percent")
            .map(|p| p.unwrap_or(10.0))
            .and_then(|p| Ok((p, ctx.config_parse_or("min_subtotal", 5_000i64)?)));
        let (percent, min_subtotal) = match settings {
            Ok(s) => s,
            Err(e) => {
                ctx.error("invalid configuration", &[("key", e.key()), ("error", &e.to_string())]);
                return Decision::reject(UNAVAILABLE);
            }
        };
        // Always the subtotal (before discounts): the total moves when a discount applies.
        let Some(subtotal) = session.subtotal() else {
            ctx.warn("no currency or subtotal; leaving the session as it is", &[]);
            return Decision::keep();
        };
        if subtotal.amount < min_subtotal {
            ctx.info("cart too small; clearing discounts", &[("subtotal", &subtotal.to_string())]);
            return Decision::clear();
        }
        ctx.info("applying discount", &[("subtotal", &subtotal.to_string())]);
        Decision::percent_off(ctx.config_or("name", "{{title}}"), percent)
    }
}

discount_policy_sdk::export_policy!({{type}});

#[cfg(test)]
mod tests {
    use super::*;
    use discount_policy_sdk::testing::{request, SessionBuilder};

    fn run(ctx: &Context, session: &CheckoutSession) -> Decision {
        {{type}}::evaluate(ctx, session, &request("{{route}}").build())
    }

    #[test]
    fn big_carts_get_the_discount() {
        let session = SessionBuilder::new().item("Shoes", 7_500, 2).build();
        let ctx = Context::for_test().config("percent", "15").build();
        assert_eq!(run(&ctx, &session), Decision::percent_off("{{title}}", 15.0));
        assert!(ctx.logged(LogLevel::Info, "applying discount"));
    }

    #[test]
    fn small_carts_get_none() {
        let session = SessionBuilder::new().item("Socks", 900, 1).build();
        assert_eq!(run(&Context::for_test().build(), &session), Decision::Clear);
    }

    #[test]
    fn bad_configuration_is_refused() {
        let ctx = Context::for_test().config("percent", "lots").build();
        let session = SessionBuilder::new().item("Shoes", 7_500, 2).build();
        assert_eq!(run(&ctx, &session), Decision::reject(UNAVAILABLE));
    }
}
