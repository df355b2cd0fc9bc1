//! Decisions as data: a serializable view for logs, audit and the runner, and
//! the Stripe update a guarded decision becomes.

use crate::bindings::{self as wit, Decision, Discount};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A decision in JSON form: `{"type":"apply","coupon_data":{...}}`, `{"type":"clear"}`, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DecisionView {
    /// Apply one discount.
    Apply {
        /// A coupon made for this session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        coupon_data: Option<CouponDataView>,
        /// An existing coupon's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        coupon: Option<String>,
    },
    /// Remove every discount.
    Clear,
    /// Change nothing.
    Keep,
    /// Refuse, with a message for the customer.
    Reject {
        /// The customer-facing message.
        message: String,
    },
}

/// `coupon_data` in JSON form, with Stripe's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CouponDataView {
    /// Name shown to the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Amount off in the smallest currency unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_off: Option<i64>,
    /// Currency of `amount_off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Percent off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_off: Option<f64>,
    /// `once`, `forever`, `repeating` or `service_period`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Coupon metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// Stripe's name of a duration.
pub fn duration_name(d: wit::Duration) -> &'static str {
    match d {
        wit::Duration::Once => "once",
        wit::Duration::Forever => "forever",
        wit::Duration::Repeating => "repeating",
        wit::Duration::ServicePeriod => "service_period",
    }
}

impl From<&Decision> for DecisionView {
    fn from(d: &Decision) -> Self {
        match d {
            Decision::Apply(Discount::CouponData(c)) => DecisionView::Apply {
                coupon_data: Some(CouponDataView {
                    name: c.name.clone(),
                    amount_off: c.amount_off,
                    currency: c.currency.clone(),
                    percent_off: c.percent_off,
                    duration: c.duration.map(|d| duration_name(d).to_string()),
                    metadata: c.metadata.iter().cloned().collect(),
                }),
                coupon: None,
            },
            Decision::Apply(Discount::Coupon(id)) => DecisionView::Apply {
                coupon_data: None,
                coupon: Some(id.clone()),
            },
            Decision::Clear => DecisionView::Clear,
            Decision::Keep => DecisionView::Keep,
            Decision::Reject(message) => DecisionView::Reject {
                message: message.clone(),
            },
        }
    }
}

impl DecisionView {
    /// `apply`, `clear`, `keep` or `reject`.
    pub fn kind(&self) -> &'static str {
        match self {
            DecisionView::Apply { .. } => "apply",
            DecisionView::Clear => "clear",
            DecisionView::Keep => "keep",
            DecisionView::Reject { .. } => "reject",
        }
    }
}
