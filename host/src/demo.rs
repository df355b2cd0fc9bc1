//! Demo data for the embedded emulator: customers, open sessions and a coupon that the
//! example policies act on, created through the Stripe API like a merchant would.

use serde_json::json;
use stripe_checkout::StripeClient;

/// A seeded session and what it shows.
#[derive(Debug, Clone)]
pub struct DemoSession {
    /// Session id.
    pub id: String,
    /// What to try with it.
    pub note: &'static str,
}

/// The existing coupon the promo-code example applies for `VIP`.
pub const VIP_COUPON: &str = "vip-coupon";

/// Creates demo customers, sessions, and the coupon the promo-code example names.
pub async fn seed(stripe: &StripeClient) -> anyhow::Result<Vec<DemoSession>> {
    let vip = json!({"id": VIP_COUPON, "name": "VIP", "percent_off": 25, "duration": "once"});
    stripe.create_coupon(&vip, None, None).await?;
    let gold = stripe
        .create_customer(
            &json!({"email": "ada@example.com", "name": "Ada Lovelace", "metadata": {"tier": "gold"}}),
            None,
            None,
        )
        .await?
        .body;
    let mut out = Vec::new();
    let carts = [
        (
            12_000,
            1,
            Some(gold.id.as_str()),
            "cart over 100.00, gold customer",
        ),
        (2_500, 2, None, "cart under 100.00, guest"),
    ];
    for (unit_amount, quantity, customer, note) in carts {
        let mut params = json!({
            "mode": "payment",
            "ui_mode": "custom",
            "return_url": "https://example.com/return",
            "permissions": {"update_discounts": "server_only"},
            "line_items": [{
                "quantity": quantity,
                "price_data": {"currency": "usd", "unit_amount": unit_amount, "product_data": {"name": "Demo T-shirt"}},
            }],
        });
        if let Some(customer) = customer {
            params["customer"] = json!(customer);
        }
        let session = stripe
            .create_checkout_session(&params, None, None)
            .await?
            .body;
        out.push(DemoSession {
            id: session.id,
            note,
        });
    }
    Ok(out)
}
