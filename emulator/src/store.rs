//! The emulator's in-memory Stripe account: objects, ids and the clock.

use rand::distr::{Alphanumeric, SampleString};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

/// Metadata as stored.
pub type Metadata = BTreeMap<String, String>;

/// Unix seconds from the system clock.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A random id with Stripe's prefix, such as `cus_` + 14 characters.
pub fn new_id(prefix: &str, len: usize) -> String {
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::rng(), len)
    )
}

/// A Stripe-style request id (`req_` + 14 characters).
pub fn new_request_id() -> String {
    new_id("req_", 14)
}

/// A stored customer.
#[derive(Debug, Clone)]
pub struct Customer {
    /// `cus_...`.
    pub id: String,
    /// Creation time.
    pub created: i64,
    /// Email.
    pub email: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Metadata.
    pub metadata: Metadata,
    /// Deleted through `DELETE /v1/customers/{id}`.
    pub deleted: bool,
}

/// A stored coupon.
#[derive(Debug, Clone)]
pub struct Coupon {
    /// Id (given or 8 random characters).
    pub id: String,
    /// Creation time.
    pub created: i64,
    /// Amount off.
    pub amount_off: Option<i64>,
    /// Currency of `amount_off`.
    pub currency: Option<String>,
    /// Percent off.
    pub percent_off: Option<f64>,
    /// `forever`, `once`, `repeating` or `service_period`.
    pub duration: String,
    /// Months, for `repeating`.
    pub duration_in_months: Option<i64>,
    /// Name.
    pub name: Option<String>,
    /// Metadata.
    pub metadata: Metadata,
    /// Redemption limit.
    pub max_redemptions: Option<i64>,
    /// Last redemption time.
    pub redeem_by: Option<i64>,
    /// Completed sessions that used it.
    pub times_redeemed: i64,
    /// Deleted through `DELETE /v1/coupons/{id}`.
    pub deleted: bool,
}

impl Coupon {
    /// Whether it can still be redeemed at `now`.
    pub fn valid(&self, now: i64) -> bool {
        !self.deleted
            && self.redeem_by.is_none_or(|t| now < t)
            && self.max_redemptions.is_none_or(|m| self.times_redeemed < m)
    }

    /// The terms for the totals arithmetic.
    pub fn terms(&self) -> stripe_checkout::totals::Terms {
        stripe_checkout::totals::Terms {
            amount_off: self.amount_off,
            percent_off: self.percent_off,
        }
    }
}

/// A stored product.
#[derive(Debug, Clone)]
pub struct Product {
    /// `prod_...`.
    pub id: String,
    /// Creation time.
    pub created: i64,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Metadata.
    pub metadata: Metadata,
    /// Whether it is active (inline `product_data` products are not).
    pub active: bool,
}

/// `recurring` of a price.
#[derive(Debug, Clone, PartialEq)]
pub struct Recurring {
    /// `day`, `week`, `month` or `year`.
    pub interval: String,
    /// Intervals between charges.
    pub interval_count: i64,
}

/// A stored price.
#[derive(Debug, Clone)]
pub struct Price {
    /// `price_...`.
    pub id: String,
    /// Creation time.
    pub created: i64,
    /// Product id.
    pub product: String,
    /// Currency.
    pub currency: String,
    /// Unit amount.
    pub unit_amount: i64,
    /// Recurring terms, for subscriptions.
    pub recurring: Option<Recurring>,
    /// Whether it is active (inline `price_data` prices are not).
    pub active: bool,
    /// Nickname.
    pub nickname: Option<String>,
    /// Metadata.
    pub metadata: Metadata,
}

/// A stored shipping rate (only `fixed_amount`).
#[derive(Debug, Clone)]
pub struct ShippingRate {
    /// `shr_...`.
    pub id: String,
    /// Creation time.
    pub created: i64,
    /// Name shown to the customer.
    pub display_name: String,
    /// Fixed amount.
    pub amount: i64,
    /// Currency of the amount.
    pub currency: String,
    /// Metadata.
    pub metadata: Metadata,
    /// Whether it is active.
    pub active: bool,
}

/// A line item of a session.
#[derive(Debug, Clone)]
pub struct LineItem {
    /// `li_...`.
    pub id: String,
    /// The price id.
    pub price: String,
    /// Quantity, at least 1.
    pub quantity: i64,
}

/// The discount applied to a session.
#[derive(Debug, Clone)]
pub struct AppliedDiscount {
    /// `di_...` (the `discount` object's id).
    pub id: String,
    /// The coupon id.
    pub coupon: String,
    /// When it was applied.
    pub start: i64,
}

/// One of the session's shipping options.
#[derive(Debug, Clone)]
pub struct ShippingOption {
    /// The shipping rate id.
    pub shipping_rate: String,
    /// Its amount.
    pub shipping_amount: i64,
}

/// A stored Checkout Session.
#[derive(Debug, Clone)]
pub struct Session {
    /// `cs_test_...`.
    pub id: String,
    /// Creation time.
    pub created: i64,
    /// Expiry time.
    pub expires_at: i64,
    /// `payment`, `subscription` or `setup`.
    pub mode: String,
    /// `hosted`, `embedded`, `custom`, ...
    pub ui_mode: String,
    /// `open`, `complete` or `expired`.
    pub status: String,
    /// `unpaid`, `paid` or `no_payment_required`.
    pub payment_status: String,
    /// Currency of the line items (or the `currency` parameter in setup mode).
    pub currency: Option<String>,
    /// Customer id.
    pub customer: Option<String>,
    /// `customer_email` parameter.
    pub customer_email: Option<String>,
    /// `client_reference_id`.
    pub client_reference_id: Option<String>,
    /// Metadata.
    pub metadata: Metadata,
    /// `success_url`.
    pub success_url: Option<String>,
    /// `cancel_url`.
    pub cancel_url: Option<String>,
    /// `return_url`.
    pub return_url: Option<String>,
    /// `redirect_on_completion`.
    pub redirect_on_completion: Option<String>,
    /// `locale`.
    pub locale: Option<String>,
    /// `allow_promotion_codes`.
    pub allow_promotion_codes: Option<bool>,
    /// `submit_type`.
    pub submit_type: Option<String>,
    /// `billing_address_collection`.
    pub billing_address_collection: Option<String>,
    /// `shipping_address_collection[allowed_countries]`.
    pub shipping_allowed_countries: Option<Vec<String>>,
    /// `payment_method_types`.
    pub payment_method_types: Vec<String>,
    /// Line items, in order.
    pub line_items: Vec<LineItem>,
    /// At most one discount.
    pub discount: Option<AppliedDiscount>,
    /// Shipping options; the first is selected.
    pub shipping_options: Vec<ShippingOption>,
    /// `permissions[update_discounts]` at creation (not echoed on the object).
    pub update_discounts: Option<String>,
    /// `permissions` as created, as the session shows it (`update_discounts` is not shown).
    pub permissions: serde_json::Value,
    /// What the customer entered (set through the control API).
    pub customer_details: Option<Value>,
    /// Collected shipping details (set through the control API).
    pub shipping_details: Option<Value>,
    /// `client_secret` for embedded and custom sessions.
    pub client_secret: Option<String>,
    /// Payment intent id, once completed.
    pub payment_intent: Option<String>,
}

impl Session {
    /// The selected shipping option's amount, if any.
    pub fn shipping_amount(&self) -> Option<i64> {
        self.shipping_options.first().map(|o| o.shipping_amount)
    }
}

/// Every object of the emulated account.
#[derive(Debug, Default)]
pub struct Store {
    /// Customers by id.
    pub customers: HashMap<String, Customer>,
    /// Coupons by id.
    pub coupons: HashMap<String, Coupon>,
    /// Products by id.
    pub products: HashMap<String, Product>,
    /// Prices by id.
    pub prices: HashMap<String, Price>,
    /// Shipping rates by id.
    pub shipping_rates: HashMap<String, ShippingRate>,
    /// Sessions by id.
    pub sessions: HashMap<String, Session>,
    /// Session ids in creation order.
    pub session_order: Vec<String>,
    /// Seconds added to the system clock (`POST /_emulator/clock`).
    pub clock_offset: i64,
}

impl Store {
    /// The emulated current time.
    pub fn now(&self) -> i64 {
        unix_now() + self.clock_offset
    }

    /// Expires open sessions whose `expires_at` has passed, as Stripe does.
    pub fn expire_due(&mut self) {
        let now = self.now();
        for s in self.sessions.values_mut() {
            if s.status == "open" && now >= s.expires_at {
                s.status = "expired".into();
            }
        }
    }
}
