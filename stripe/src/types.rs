//! Serde shapes of the Stripe objects the project reads, tolerant of fields it does not know.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Stripe `metadata`: string keys to string values.
pub type Metadata = BTreeMap<String, String>;

/// A field Stripe returns either as an id or, when expanded, as the object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Expandable<T> {
    /// Not expanded: the object's id.
    Id(String),
    /// Expanded: the object itself.
    Object(Box<T>),
}

/// Picks the variant by the JSON type (string or object) as it reads, without the
/// buffering of `#[serde(untagged)]`, which doubled the cost of parsing a session.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Expandable<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = Expandable<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an id string or an expanded object")
            }
            fn visit_str<E: serde::de::Error>(self, id: &str) -> Result<Self::Value, E> {
                Ok(Expandable::Id(id.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, id: String) -> Result<Self::Value, E> {
                Ok(Expandable::Id(id))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let object = T::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Expandable::Object(Box::new(object)))
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

impl<T: HasId> Expandable<T> {
    /// The id, expanded or not.
    pub fn id(&self) -> &str {
        match self {
            Expandable::Id(id) => id,
            Expandable::Object(obj) => obj.id(),
        }
    }

    /// The object, when expanded.
    pub fn object(&self) -> Option<&T> {
        match self {
            Expandable::Id(_) => None,
            Expandable::Object(obj) => Some(obj),
        }
    }

    /// Back to the id alone, as a retrieve that does not expand it returns it.
    pub fn collapse(&mut self) {
        if let Expandable::Object(obj) = self {
            *self = Expandable::Id(obj.id().to_string());
        }
    }
}

/// Objects that carry an `id`.
pub trait HasId {
    /// The object's id.
    fn id(&self) -> &str;
}

/// A Stripe list object (`{"object":"list","data":[...]}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct List<T> {
    /// The page of objects.
    pub data: Vec<T>,
    /// Whether more pages exist.
    #[serde(default)]
    pub has_more: bool,
    /// The list's URL.
    #[serde(default)]
    pub url: Option<String>,
}

/// `address`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Address {
    /// Street line 1.
    #[serde(default)]
    pub line1: Option<String>,
    /// Street line 2.
    #[serde(default)]
    pub line2: Option<String>,
    /// City.
    #[serde(default)]
    pub city: Option<String>,
    /// State or province.
    #[serde(default)]
    pub state: Option<String>,
    /// Postal code.
    #[serde(default)]
    pub postal_code: Option<String>,
    /// Two-letter ISO country code.
    #[serde(default)]
    pub country: Option<String>,
}

/// `customer_details` of a Checkout Session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerDetails {
    /// Customer's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Customer's email.
    #[serde(default)]
    pub email: Option<String>,
    /// Customer's phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// Billing address.
    #[serde(default)]
    pub address: Option<Address>,
}

/// A `customer`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// `cus_...`.
    pub id: String,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Metadata, such as a loyalty `tier`.
    #[serde(default)]
    pub metadata: Metadata,
    /// True on a deleted customer.
    #[serde(default)]
    pub deleted: bool,
}

impl HasId for Customer {
    fn id(&self) -> &str {
        &self.id
    }
}

/// A `coupon`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Coupon {
    /// Coupon id.
    pub id: String,
    /// Name shown to customers.
    #[serde(default)]
    pub name: Option<String>,
    /// Amount off, in the smallest unit of `currency`.
    #[serde(default)]
    pub amount_off: Option<i64>,
    /// Currency of `amount_off`.
    #[serde(default)]
    pub currency: Option<String>,
    /// Percent off, in (0, 100].
    #[serde(default)]
    pub percent_off: Option<f64>,
    /// `once`, `forever`, `repeating` or `service_period`.
    #[serde(default)]
    pub duration: Option<String>,
    /// Months, for `repeating`.
    #[serde(default)]
    pub duration_in_months: Option<i64>,
    /// Whether it can still be redeemed.
    #[serde(default)]
    pub valid: Option<bool>,
    /// Metadata.
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

impl HasId for Coupon {
    fn id(&self) -> &str {
        &self.id
    }
}

/// `price` of a line item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// `price_...`.
    pub id: String,
    /// Unit amount in the smallest currency unit.
    #[serde(default)]
    pub unit_amount: Option<i64>,
    /// Currency.
    #[serde(default)]
    pub currency: Option<String>,
    /// Product id, or the product when expanded.
    #[serde(default)]
    pub product: Option<Expandable<Product>>,
}

/// A `product`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// `prod_...`.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
}

impl HasId for Product {
    fn id(&self) -> &str {
        &self.id
    }
}

/// A line item (`item`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LineItem {
    /// `li_...`.
    pub id: String,
    /// Description, the product name by default.
    #[serde(default)]
    pub description: Option<String>,
    /// Quantity.
    #[serde(default)]
    pub quantity: Option<u64>,
    /// Before discounts and taxes.
    #[serde(default)]
    pub amount_subtotal: i64,
    /// After discounts and taxes.
    #[serde(default)]
    pub amount_total: i64,
    /// Discount on this item.
    #[serde(default)]
    pub amount_discount: i64,
    /// Tax on this item.
    #[serde(default)]
    pub amount_tax: i64,
    /// Currency.
    #[serde(default)]
    pub currency: String,
    /// The price.
    #[serde(default)]
    pub price: Option<Price>,
}

/// One entry of a session's `discounts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionDiscount {
    /// Coupon id, or the coupon when expanded.
    #[serde(default)]
    pub coupon: Option<Expandable<Coupon>>,
    /// Promotion code id, or the code when expanded.
    #[serde(default)]
    pub promotion_code: Option<serde_json::Value>,
}

/// `total_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TotalDetails {
    /// Sum of all discounts.
    #[serde(default)]
    pub amount_discount: i64,
    /// Shipping amount, if any.
    #[serde(default)]
    pub amount_shipping: Option<i64>,
    /// Sum of all taxes.
    #[serde(default)]
    pub amount_tax: i64,
}

/// `shipping_cost`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShippingCost {
    /// Before tax.
    #[serde(default)]
    pub amount_subtotal: i64,
    /// Tax.
    #[serde(default)]
    pub amount_tax: i64,
    /// After tax.
    #[serde(default)]
    pub amount_total: i64,
    /// Shipping rate id.
    #[serde(default)]
    pub shipping_rate: Option<serde_json::Value>,
}

/// `shipping_details` (inside `collected_information` on current API versions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShippingDetails {
    /// Recipient name.
    #[serde(default)]
    pub name: Option<String>,
    /// Shipping address.
    #[serde(default)]
    pub address: Option<Address>,
}

/// `collected_information`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectedInformation {
    /// Shipping details the customer entered.
    #[serde(default)]
    pub shipping_details: Option<ShippingDetails>,
}

/// A `checkout.session`, with the fields the project uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckoutSession {
    /// `cs_...`.
    pub id: String,
    /// Live or test mode.
    #[serde(default)]
    pub livemode: bool,
    /// `payment`, `setup` or `subscription`.
    #[serde(default)]
    pub mode: Option<String>,
    /// `open`, `complete` or `expired`.
    #[serde(default)]
    pub status: Option<String>,
    /// Three-letter currency code, lowercase.
    #[serde(default)]
    pub currency: Option<String>,
    /// Before discounts and taxes.
    #[serde(default)]
    pub amount_subtotal: Option<i64>,
    /// After discounts and taxes.
    #[serde(default)]
    pub amount_total: Option<i64>,
    /// Discount, shipping and tax.
    #[serde(default)]
    pub total_details: Option<TotalDetails>,
    /// Customer id, or the customer when expanded.
    #[serde(default)]
    pub customer: Option<Expandable<Customer>>,
    /// Email given at creation.
    #[serde(default)]
    pub customer_email: Option<String>,
    /// What the customer entered.
    #[serde(default)]
    pub customer_details: Option<CustomerDetails>,
    /// The merchant's reference.
    #[serde(default)]
    pub client_reference_id: Option<String>,
    /// Metadata.
    #[serde(default)]
    pub metadata: Option<Metadata>,
    /// Line items, when expanded.
    #[serde(default)]
    pub line_items: Option<List<LineItem>>,
    /// Applied discounts.
    #[serde(default)]
    pub discounts: Option<Vec<SessionDiscount>>,
    /// Collected shipping details (current API versions).
    #[serde(default)]
    pub collected_information: Option<CollectedInformation>,
    /// Shipping details (older API versions).
    #[serde(default)]
    pub shipping_details: Option<ShippingDetails>,
    /// Shipping cost.
    #[serde(default)]
    pub shipping_cost: Option<ShippingCost>,
    /// Creation time, Unix seconds.
    #[serde(default)]
    pub created: i64,
    /// Expiry time, Unix seconds.
    #[serde(default)]
    pub expires_at: i64,
}

impl CheckoutSession {
    /// The shipping details, wherever this API version put them.
    pub fn shipping(&self) -> Option<&ShippingDetails> {
        self.collected_information
            .as_ref()
            .and_then(|c| c.shipping_details.as_ref())
            .or(self.shipping_details.as_ref())
    }

    /// The expanded customer, if any.
    pub fn expanded_customer(&self) -> Option<&Customer> {
        self.customer.as_ref().and_then(Expandable::object)
    }
}

/// `coupon_data` of a discounts update.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CouponData {
    /// Name shown to customers, at most 40 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Positive amount in the smallest unit of `currency`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_off: Option<i64>,
    /// Currency of `amount_off`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Percent off, in (0, 100].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent_off: Option<f64>,
    /// `once` by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Metadata of the coupon.
    #[serde(skip_serializing_if = "Metadata::is_empty", default)]
    pub metadata: Metadata,
}

/// The `discounts` parameter of a Checkout Session update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DiscountsUpdate {
    /// `discounts[0][coupon_data][...]`.
    CouponData(CouponData),
    /// `discounts[0][coupon]=...`.
    Coupon(String),
    /// `discounts=` (clear).
    Clear,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expandable_reads_an_id_or_an_object() {
        let id: Expandable<Customer> = serde_json::from_str(r#""cus_1""#).unwrap();
        assert_eq!(id, Expandable::Id("cus_1".into()));
        assert_eq!(id.id(), "cus_1");
        assert!(id.object().is_none());
        let obj: Expandable<Customer> = serde_json::from_str(
            r#"{"id":"cus_2","object":"customer","metadata":{"tier":"gold"}}"#,
        )
        .unwrap();
        assert_eq!(obj.id(), "cus_2");
        assert_eq!(obj.object().unwrap().metadata["tier"], "gold");
        // What neither form allows is a clear error, not a panic.
        let err = serde_json::from_str::<Expandable<Customer>>("42").unwrap_err();
        assert!(
            err.to_string()
                .contains("an id string or an expanded object"),
            "{err}"
        );
        let err = serde_json::from_str::<Expandable<Customer>>(r#"{"id":7}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        // Round trip: an expanded object serializes as the object, an id as the string.
        assert_eq!(
            serde_json::to_value(&id).unwrap(),
            serde_json::json!("cus_1")
        );
        assert_eq!(serde_json::to_value(&obj).unwrap()["id"], "cus_2");
    }
}
