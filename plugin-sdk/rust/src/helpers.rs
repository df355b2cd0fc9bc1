//! Convenience methods on the generated WIT types.

use crate::{
    Address, CheckoutSession, CouponData, Decision, Discount, Duration, Money, PolicyRequest,
    Status, MAX_COUPON_NAME_CHARS,
};

/// Looks `key` up in a WIT `list<tuple<string, string>>`.
fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A non-empty, trimmed string, or `None`.
fn non_empty(s: Option<&String>) -> Option<&str> {
    s.map(|s| s.trim()).filter(|s| !s.is_empty())
}

impl CheckoutSession {
    /// The session's currency (lowercase ISO code), if Stripe gave one.
    pub fn currency(&self) -> Option<&str> {
        non_empty(self.currency.as_ref())
    }

    /// `amount_subtotal` (before discounts and taxes) in the session currency.
    ///
    /// Falls back to the sum of the line items' subtotals when Stripe gave no
    /// `amount_subtotal`; `None` when the currency is missing or no amount is known.
    pub fn subtotal(&self) -> Option<Money> {
        let currency = self.currency()?;
        let amount = match self.amount_subtotal {
            Some(a) => a,
            None if !self.line_items.is_empty() => self
                .line_items
                .iter()
                .try_fold(0i64, |acc, li| acc.checked_add(li.amount_subtotal))?,
            None => return None,
        };
        Some(Money::new(amount, currency))
    }

    /// `amount_total` (after discounts and taxes) in the session currency.
    pub fn total(&self) -> Option<Money> {
        Some(Money::new(self.amount_total?, self.currency()?))
    }

    /// The amount already discounted (`total_details.amount_discount`), 0 if unknown.
    pub fn discount_amount(&self) -> i64 {
        self.total_details.as_ref().map_or(0, |t| t.amount_discount)
    }

    /// Whether a discount is already applied to the session.
    pub fn has_discount(&self) -> bool {
        !self.discounts.is_empty()
    }

    /// The session's own metadata value for `key`.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        lookup(&self.metadata, key)
    }

    /// Metadata value `key` of the expanded customer; `None` without an expanded customer.
    pub fn customer_metadata(&self, key: &str) -> Option<&str> {
        lookup(&self.customer.as_ref()?.metadata, key)
    }

    /// The customer's email: from `customer_details`, else `customer_email`, else the customer.
    pub fn email(&self) -> Option<&str> {
        non_empty(
            self.customer_details
                .as_ref()
                .and_then(|d| d.email.as_ref()),
        )
        .or_else(|| non_empty(self.customer_email.as_ref()))
        .or_else(|| non_empty(self.customer.as_ref().and_then(|c| c.email.as_ref())))
    }

    /// The shipping address (`collected_information.shipping_details.address`).
    pub fn shipping_address(&self) -> Option<&Address> {
        self.shipping_details.as_ref()?.address.as_ref()
    }

    /// The billing address the customer entered (`customer_details.address`).
    pub fn billing_address(&self) -> Option<&Address> {
        self.customer_details.as_ref()?.address.as_ref()
    }

    /// Two-letter country code of the shipping address.
    pub fn shipping_country(&self) -> Option<&str> {
        non_empty(self.shipping_address()?.country.as_ref())
    }

    /// Postal code of the shipping address.
    pub fn shipping_postal_code(&self) -> Option<&str> {
        non_empty(self.shipping_address()?.postal_code.as_ref())
    }

    /// Two-letter country code of the billing address.
    pub fn billing_country(&self) -> Option<&str> {
        non_empty(self.billing_address()?.country.as_ref())
    }

    /// Postal code of the billing address.
    pub fn billing_postal_code(&self) -> Option<&str> {
        non_empty(self.billing_address()?.postal_code.as_ref())
    }

    /// Total quantity over all line items (saturating).
    pub fn item_count(&self) -> u64 {
        self.line_items
            .iter()
            .fold(0u64, |acc, li| acc.saturating_add(li.quantity))
    }

    /// Whether the session is still open (or its status is unknown).
    pub fn is_open(&self) -> bool {
        matches!(self.status, None | Some(Status::Open))
    }
}

impl PolicyRequest {
    /// Top-level field `key` of the storefront's JSON body (strings as-is, others as JSON).
    ///
    /// The customer controls this value: validate it before trusting it.
    pub fn input_value(&self, key: &str) -> Option<&str> {
        lookup(&self.input, key)
    }

    /// Whether the called action is `name` (leading `/` ignored on both sides).
    pub fn action_is(&self, name: &str) -> bool {
        self.action.trim_start_matches('/') == name.trim_start_matches('/')
    }
}

/// Trims `name` to Stripe's 40-character limit; `None` when it is empty.
fn coupon_name(name: String) -> Option<String> {
    let name = name.trim();
    if name.is_empty() {
        None
    } else {
        Some(name.chars().take(MAX_COUPON_NAME_CHARS).collect())
    }
}

impl CouponData {
    /// Empty coupon data: no name, no amount, no metadata.
    pub fn empty() -> Self {
        CouponData {
            name: None,
            amount_off: None,
            currency: None,
            percent_off: None,
            duration: None,
            metadata: Vec::new(),
        }
    }
}

impl Decision {
    /// Applies a one-off coupon of `pct` percent named `name` (trimmed to 40 characters).
    ///
    /// A percentage above 100 is capped at 100; zero, negative or NaN means no discount
    /// ([`Decision::Clear`]).
    pub fn percent_off(name: impl Into<String>, pct: f64) -> Decision {
        if pct.is_nan() || pct <= 0.0 {
            return Decision::Clear;
        }
        Decision::Apply(Discount::CouponData(CouponData {
            name: coupon_name(name.into()),
            percent_off: Some(pct.min(100.0)),
            ..CouponData::empty()
        }))
    }

    /// Applies a one-off coupon taking `amount` off, named `name` (trimmed to 40 characters).
    ///
    /// A zero or negative amount means no discount ([`Decision::Clear`]). An empty currency is
    /// passed as `None`, which the host refuses: Stripe needs one for `amount_off`.
    pub fn amount_off(name: impl Into<String>, amount: Money) -> Decision {
        if amount.amount <= 0 {
            return Decision::Clear;
        }
        let currency = Some(amount.currency).filter(|c| !c.is_empty());
        Decision::Apply(Discount::CouponData(CouponData {
            name: coupon_name(name.into()),
            amount_off: Some(amount.amount),
            currency,
            ..CouponData::empty()
        }))
    }

    /// Applies the existing Stripe coupon `id`.
    pub fn coupon(id: impl Into<String>) -> Decision {
        Decision::Apply(Discount::Coupon(id.into().trim().to_string()))
    }

    /// Applies arbitrary coupon data.
    pub fn coupon_data_of(data: CouponData) -> Decision {
        Decision::Apply(Discount::CouponData(data))
    }

    /// Removes every discount from the session.
    pub fn clear() -> Decision {
        Decision::Clear
    }

    /// Leaves the session as it is; Stripe is not called.
    pub fn keep() -> Decision {
        Decision::Keep
    }

    /// Refuses the request with `message`, shown to the customer.
    pub fn reject(message: impl Into<String>) -> Decision {
        Decision::Reject(message.into())
    }

    /// Adds metadata `key`=`value` to the coupon data; no effect on other decisions.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Decision {
        if let Decision::Apply(Discount::CouponData(data)) = &mut self {
            data.metadata.push((key.into(), value.into()));
        }
        self
    }

    /// Sets the coupon data's duration; no effect on other decisions.
    pub fn with_duration(mut self, duration: Duration) -> Decision {
        if let Decision::Apply(Discount::CouponData(data)) = &mut self {
            data.duration = Some(duration);
        }
        self
    }

    /// The coupon data this decision applies, if any.
    pub fn coupon_data(&self) -> Option<&CouponData> {
        match self {
            Decision::Apply(Discount::CouponData(data)) => Some(data),
            _ => None,
        }
    }

    /// The amount off this decision applies, as money, if it is an amount-off coupon.
    pub fn amount_off_money(&self) -> Option<Money> {
        let data = self.coupon_data()?;
        Some(Money::new(
            data.amount_off?,
            data.currency.as_deref().unwrap_or(""),
        ))
    }

    /// The percentage this decision applies, if it is a percent-off coupon.
    pub fn percent_off_value(&self) -> Option<f64> {
        self.coupon_data()?.percent_off
    }

    /// The message of a [`Decision::Reject`].
    pub fn rejection(&self) -> Option<&str> {
        match self {
            Decision::Reject(message) => Some(message),
            _ => None,
        }
    }

    /// Whether this decision applies a discount.
    pub fn is_apply(&self) -> bool {
        matches!(self, Decision::Apply(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{request, SessionBuilder};

    #[test]
    fn session_lookups() {
        let s = SessionBuilder::new()
            .currency("USD")
            .item("Mug", 1_250, 2)
            .item("Tee", 2_000, 1)
            .customer_metadata("tier", "gold")
            .metadata("campaign", "spring")
            .customer_email("a@example.com")
            .shipping("FR", "75001")
            .billing("US", "94110")
            .build();
        assert_eq!(s.currency(), Some("usd"));
        assert_eq!(s.subtotal(), Some(Money::new(4_500, "usd")));
        assert_eq!(s.customer_metadata("tier"), Some("gold"));
        assert_eq!(s.customer_metadata("nope"), None);
        assert_eq!(s.metadata_value("campaign"), Some("spring"));
        assert_eq!(s.email(), Some("a@example.com"));
        assert_eq!(s.shipping_country(), Some("FR"));
        assert_eq!(s.shipping_postal_code(), Some("75001"));
        assert_eq!(s.billing_country(), Some("US"));
        assert_eq!(s.billing_postal_code(), Some("94110"));
        assert_eq!(s.item_count(), 3);
        assert!(s.is_open());
        assert!(!s.has_discount());
    }

    #[test]
    fn odd_sessions_do_not_panic() {
        let s = SessionBuilder::new().no_currency().item("x", 5, 1).build();
        assert_eq!(s.currency(), None);
        assert_eq!(s.subtotal(), None);
        assert_eq!(s.total(), None);
        assert_eq!(s.customer_metadata("tier"), None);
        assert_eq!(s.email(), None);
        assert_eq!(s.shipping_country(), None);

        let mut s = SessionBuilder::new().item("a", 100, 2).build();
        s.amount_subtotal = None;
        assert_eq!(s.subtotal(), Some(Money::new(200, "usd")));
        s.line_items.clear();
        assert_eq!(s.subtotal(), None);
    }

    #[test]
    fn request_input() {
        let r = request("/apply-cart-discount")
            .input("promo_code", "SPRING")
            .build();
        assert_eq!(r.input_value("promo_code"), Some("SPRING"));
        assert_eq!(r.input_value("x"), None);
        assert!(r.action_is("apply-cart-discount"));
        assert!(r.action_is("/apply-cart-discount"));
    }

    #[test]
    fn decision_constructors() {
        let d = Decision::percent_off("Gold member discount", 15.0).with_metadata("tier", "gold");
        assert_eq!(d.percent_off_value(), Some(15.0));
        assert_eq!(
            d.coupon_data().unwrap().name.as_deref(),
            Some("Gold member discount")
        );
        assert_eq!(d.coupon_data().unwrap().metadata.len(), 1);
        assert_eq!(Decision::percent_off("x", 0.0), Decision::Clear);
        assert_eq!(Decision::percent_off("x", f64::NAN), Decision::Clear);
        assert_eq!(
            Decision::percent_off("x", 250.0).percent_off_value(),
            Some(100.0)
        );

        let d = Decision::amount_off("Cart discount", Money::new(2_000, "usd"))
            .with_duration(Duration::Once);
        assert_eq!(d.amount_off_money(), Some(Money::new(2_000, "usd")));
        assert_eq!(d.coupon_data().unwrap().duration, Some(Duration::Once));
        assert_eq!(
            Decision::amount_off("x", Money::new(0, "usd")),
            Decision::Clear
        );
        assert_eq!(
            Decision::amount_off("x", Money::new(5, ""))
                .coupon_data()
                .unwrap()
                .currency,
            None
        );

        let long = "x".repeat(60);
        let d = Decision::percent_off(long, 5.0);
        assert_eq!(
            d.coupon_data()
                .unwrap()
                .name
                .as_ref()
                .unwrap()
                .chars()
                .count(),
            40
        );
        assert_eq!(
            Decision::percent_off("  ", 5.0).coupon_data().unwrap().name,
            None
        );

        assert_eq!(
            Decision::coupon(" SPRING "),
            Decision::Apply(Discount::Coupon("SPRING".into()))
        );
        assert_eq!(Decision::clear(), Decision::Clear);
        assert_eq!(Decision::keep(), Decision::Keep);
        assert_eq!(Decision::reject("no").rejection(), Some("no"));
        assert_eq!(Decision::keep().with_metadata("a", "b"), Decision::Keep);
    }
}
