//! Builders for short policy unit tests: sessions and requests without Stripe.
//!
//! ```
//! use discount_policy_sdk::testing::{request, SessionBuilder};
//!
//! let session = SessionBuilder::new()
//!     .currency("usd")
//!     .item("T-shirt", 2_500, 4) // 25.00 × 4
//!     .customer_metadata("tier", "gold")
//!     .build();
//! assert_eq!(session.amount_subtotal, Some(10_000));
//! let req = request("apply-cart-discount").input("promo_code", "SPRING").build();
//! assert_eq!(req.input_value("promo_code"), Some("SPRING"));
//! ```

use crate::{
    Address, AppliedDiscount, CheckoutSession, Customer, CustomerDetails, LineItem, Mode,
    PolicyRequest, ShippingDetails, Status, TotalDetails,
};

/// Builds a [`CheckoutSession`]: an open `payment` session in `usd` unless told otherwise.
///
/// `amount_subtotal` and `amount_total` are the sum of the line items (unit amount ×
/// quantity) unless [`SessionBuilder::subtotal`] sets them.
#[derive(Clone, Debug)]
pub struct SessionBuilder {
    session: CheckoutSession,
    subtotal: Option<Option<i64>>,
}

impl Default for SessionBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn empty_address() -> Address {
    Address {
        line1: None,
        line2: None,
        city: None,
        state: None,
        postal_code: None,
        country: None,
    }
}

impl SessionBuilder {
    /// An open payment session in USD, with no items, customer or metadata.
    pub fn new() -> Self {
        Self {
            session: CheckoutSession {
                id: "cs_test_sdk".to_string(),
                livemode: false,
                mode: Mode::Payment,
                status: Some(Status::Open),
                currency: Some("usd".to_string()),
                amount_subtotal: None,
                amount_total: None,
                total_details: None,
                customer_id: None,
                customer_email: None,
                customer_details: None,
                customer: None,
                client_reference_id: None,
                metadata: Vec::new(),
                line_items: Vec::new(),
                discounts: Vec::new(),
                shipping_details: None,
                shipping_cost: None,
                created: 1_700_000_000,
                expires_at: 1_700_086_400,
            },
            subtotal: None,
        }
    }

    /// Sets the session id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.session.id = id.into();
        self
    }

    /// Sets the currency (stored lowercase, as Stripe does).
    pub fn currency(mut self, currency: &str) -> Self {
        self.session.currency = Some(currency.to_ascii_lowercase());
        self
    }

    /// Removes the currency, as on a session Stripe returned without one.
    pub fn no_currency(mut self) -> Self {
        self.session.currency = None;
        self
    }

    /// Adds a line item of `quantity` × `unit_amount` (smallest currency unit).
    pub fn item(mut self, description: &str, unit_amount: i64, quantity: u64) -> Self {
        let n = self.session.line_items.len() + 1;
        let subtotal = unit_amount.saturating_mul(i64::try_from(quantity).unwrap_or(i64::MAX));
        self.session.line_items.push(LineItem {
            id: format!("li_test_{n}"),
            price_id: Some(format!("price_test_{n}")),
            product_id: Some(format!("prod_test_{n}")),
            description: Some(description.to_string()),
            quantity,
            unit_amount: Some(unit_amount),
            amount_subtotal: subtotal,
            amount_total: subtotal,
            amount_discount: 0,
            currency: String::new(),
        });
        self
    }

    /// Adds a line item as given (its `currency` is replaced by the session's when empty).
    pub fn line_item(mut self, item: LineItem) -> Self {
        self.session.line_items.push(item);
        self
    }

    /// Sets `amount_subtotal` and `amount_total` directly instead of summing the items.
    pub fn subtotal(mut self, amount: i64) -> Self {
        self.subtotal = Some(Some(amount));
        self
    }

    /// Leaves `amount_subtotal` and `amount_total` unset.
    pub fn no_subtotal(mut self) -> Self {
        self.subtotal = Some(None);
        self
    }

    fn customer_mut(&mut self) -> &mut Customer {
        let id = self
            .session
            .customer_id
            .get_or_insert_with(|| "cus_test".to_string())
            .clone();
        self.session.customer.get_or_insert_with(|| Customer {
            id,
            email: None,
            name: None,
            metadata: Vec::new(),
        })
    }

    /// Attaches an expanded customer with id `id` (and no metadata yet).
    pub fn customer(mut self, id: &str) -> Self {
        self.session.customer_id = Some(id.to_string());
        self.customer_mut().id = id.to_string();
        self
    }

    /// Sets metadata `key` on the expanded customer (created as `cus_test` if needed).
    pub fn customer_metadata(mut self, key: &str, value: &str) -> Self {
        let customer = self.customer_mut();
        customer.metadata.retain(|(k, _)| k != key);
        customer.metadata.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets only the customer id, as when the customer is not expanded.
    pub fn customer_id_only(mut self, id: &str) -> Self {
        self.session.customer_id = Some(id.to_string());
        self.session.customer = None;
        self
    }

    fn details_mut(&mut self) -> &mut CustomerDetails {
        self.session
            .customer_details
            .get_or_insert(CustomerDetails {
                name: None,
                email: None,
                phone: None,
                address: None,
            })
    }

    /// Sets the customer's email (`customer_email` and `customer_details.email`).
    pub fn customer_email(mut self, email: &str) -> Self {
        self.session.customer_email = Some(email.to_string());
        self.details_mut().email = Some(email.to_string());
        self
    }

    /// Sets the shipping address's country and postal code.
    pub fn shipping(mut self, country: &str, postal_code: &str) -> Self {
        let details = self
            .session
            .shipping_details
            .get_or_insert(ShippingDetails {
                name: None,
                address: None,
            });
        let address = details.address.get_or_insert_with(empty_address);
        address.country = Some(country.to_string());
        address.postal_code = Some(postal_code.to_string());
        self
    }

    /// Sets the billing address's (`customer_details.address`) country and postal code.
    pub fn billing(mut self, country: &str, postal_code: &str) -> Self {
        let address = self.details_mut().address.get_or_insert_with(empty_address);
        address.country = Some(country.to_string());
        address.postal_code = Some(postal_code.to_string());
        self
    }

    /// Sets session metadata `key`.
    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        self.session.metadata.retain(|(k, _)| k != key);
        self.session
            .metadata
            .push((key.to_string(), value.to_string()));
        self
    }

    /// Sets the session status.
    pub fn status(mut self, status: Status) -> Self {
        self.session.status = Some(status);
        self
    }

    /// Sets the session mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.session.mode = mode;
        self
    }

    /// Records an existing coupon `id` as already applied to the session.
    pub fn applied_coupon(mut self, id: &str) -> Self {
        self.session.discounts.push(AppliedDiscount {
            coupon_id: Some(id.to_string()),
            coupon: None,
            promotion_code: None,
        });
        self
    }

    /// Sets `total_details.amount_discount` (and lowers `amount_total` by it).
    pub fn amount_discount(mut self, amount: i64) -> Self {
        self.session
            .total_details
            .get_or_insert(TotalDetails {
                amount_discount: 0,
                amount_shipping: 0,
                amount_tax: 0,
            })
            .amount_discount = amount;
        self
    }

    /// Finishes the session.
    pub fn build(self) -> CheckoutSession {
        let mut s = self.session;
        let currency = s.currency.clone().unwrap_or_default();
        for li in &mut s.line_items {
            if li.currency.is_empty() {
                li.currency = currency.clone();
            }
        }
        let subtotal = match self.subtotal {
            Some(explicit) => explicit,
            None => Some(
                s.line_items
                    .iter()
                    .fold(0i64, |acc, li| acc.saturating_add(li.amount_subtotal)),
            ),
        };
        let discount = s.total_details.as_ref().map_or(0, |t| t.amount_discount);
        s.amount_subtotal = subtotal;
        s.amount_total = subtotal.map(|a| a.saturating_sub(discount));
        s
    }
}

/// Starts a [`PolicyRequest`] for `action` (such as `apply-cart-discount`).
pub fn request(action: &str) -> RequestBuilder {
    RequestBuilder {
        action: action.trim_start_matches('/').to_string(),
        input: Vec::new(),
    }
}

/// Builds a [`PolicyRequest`]; `input_json` is derived from the inputs.
#[derive(Clone, Debug)]
pub struct RequestBuilder {
    action: String,
    /// (key, value, value is raw JSON)
    input: Vec<(String, String, bool)>,
}

impl RequestBuilder {
    /// Adds a string field to the storefront's body.
    pub fn input(mut self, key: &str, value: &str) -> Self {
        self.input.push((key.to_string(), value.to_string(), false));
        self
    }

    /// Adds a non-string field, given as JSON text (`42`, `true`, `["a"]`).
    pub fn input_json(mut self, key: &str, json: &str) -> Self {
        self.input.push((key.to_string(), json.to_string(), true));
        self
    }

    /// Finishes the request.
    pub fn build(self) -> PolicyRequest {
        let mut json = String::from("{");
        for (i, (k, v, raw)) in self.input.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&json_string(k));
            json.push(':');
            if *raw {
                json.push_str(v);
            } else {
                json.push_str(&json_string(v));
            }
        }
        json.push('}');
        PolicyRequest {
            action: self.action,
            input_json: json,
            input: self.input.into_iter().map(|(k, v, _)| (k, v)).collect(),
        }
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtotals_and_totals() {
        let s = SessionBuilder::new()
            .item("a", 2_500, 4)
            .amount_discount(500)
            .build();
        assert_eq!(s.amount_subtotal, Some(10_000));
        assert_eq!(s.amount_total, Some(9_500));
        assert_eq!(s.line_items[0].currency, "usd");
        let s = SessionBuilder::new().subtotal(123).build();
        assert_eq!(s.amount_subtotal, Some(123));
        let s = SessionBuilder::new().no_subtotal().build();
        assert_eq!(s.amount_subtotal, None);
    }

    #[test]
    fn customers() {
        let s = SessionBuilder::new()
            .customer("cus_1")
            .customer_metadata("tier", "silver")
            .customer_metadata("tier", "gold")
            .build();
        assert_eq!(s.customer_id.as_deref(), Some("cus_1"));
        assert_eq!(s.customer.as_ref().unwrap().metadata.len(), 1);
        assert_eq!(s.customer_metadata("tier"), Some("gold"));
        let s = SessionBuilder::new().customer_id_only("cus_2").build();
        assert!(s.customer.is_none());
    }

    #[test]
    fn request_json() {
        let r = request("x")
            .input("code", "a\"b")
            .input_json("n", "42")
            .build();
        assert_eq!(r.input_json, r#"{"code":"a\"b","n":42}"#);
        assert_eq!(r.input_value("n"), Some("42"));
    }
}
