//! Minimal WIT sessions for tests and benchmarks that call policies or the guard
//! directly; real sessions come from Stripe through [`crate::mapping`].

use crate::bindings::{CheckoutSession, Customer, Mode, Status};

/// An open payment session `id` in `currency`, subtotal and total `subtotal`, with
/// no customer, line items or discounts; extend it with struct update syntax.
pub fn open_session(id: &str, currency: &str, subtotal: i64) -> CheckoutSession {
    CheckoutSession {
        id: id.into(),
        livemode: false,
        mode: Mode::Payment,
        status: Some(Status::Open),
        currency: Some(currency.into()),
        amount_subtotal: Some(subtotal),
        amount_total: Some(subtotal),
        total_details: None,
        customer_id: None,
        customer_email: None,
        customer_details: None,
        customer: None,
        client_reference_id: None,
        metadata: vec![],
        line_items: vec![],
        discounts: vec![],
        shipping_details: None,
        shipping_cost: None,
        created: 0,
        expires_at: 0,
    }
}

/// The expanded customer `cus_1`, with `tier` in its metadata when given.
pub fn customer_with_tier(tier: Option<&str>) -> Customer {
    Customer {
        id: "cus_1".into(),
        email: None,
        name: None,
        metadata: tier
            .map(|t| vec![("tier".into(), t.into())])
            .unwrap_or_default(),
    }
}
