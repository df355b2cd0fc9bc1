//! Minimal WIT sessions for tests and benchmarks that call policies or the guard
//! directly; real sessions come from Stripe through [`crate::mapping`].

use crate::bindings::{
    Address, CheckoutSession, Customer, CustomerDetails, LineItem, Mode, ShippingDetails, Status,
    TotalDetails,
};
use crate::settings::{Expand, Expansion};

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

/// The synthetic sessions of a warm-up (see [`crate::preinit`]), in order: one with
/// every part filled in, a bare one, and the first again; each as `expand` leaves it.
pub fn warm_up_sessions(expand: &Expand) -> [CheckoutSession; 3] {
    let full = warm_up_session(expand);
    [
        full.clone(),
        open_session("cs_test_warm_up_bare", "eur", 900),
        full,
    ]
}

/// A session with every part filled in, then left out as `expand` leaves it out.
fn warm_up_session(expand: &Expand) -> CheckoutSession {
    let address = Address {
        line1: Some("354 Oyster Point Blvd".into()),
        line2: None,
        city: Some("South San Francisco".into()),
        state: Some("CA".into()),
        postal_code: Some("94080".into()),
        country: Some("US".into()),
    };
    let line_items = (1..=3)
        .map(|i| LineItem {
            id: format!("li_warm_up_{i}"),
            price_id: Some(format!("price_warm_up_{i}")),
            product_id: Some(format!("prod_warm_up_{i}")),
            description: Some(format!("Warm-up product {i}")),
            quantity: i,
            unit_amount: Some(2500),
            amount_subtotal: 2500 * i as i64,
            amount_total: 2500 * i as i64,
            amount_discount: 0,
            currency: "usd".into(),
        })
        .collect();
    let customer = Customer {
        email: Some("warm-up@example.com".into()),
        name: Some("Warm Up".into()),
        ..customer_with_tier(Some("gold"))
    };
    CheckoutSession {
        total_details: Some(TotalDetails {
            amount_discount: 0,
            amount_shipping: 0,
            amount_tax: 0,
        }),
        customer_id: Some(customer.id.clone()),
        customer_email: customer.email.clone(),
        customer_details: Some(CustomerDetails {
            name: customer.name.clone(),
            email: customer.email.clone(),
            phone: None,
            address: Some(address.clone()),
        }),
        customer: expand.contains(Expansion::Customer).then_some(customer),
        metadata: vec![("cart_id".into(), "cart_warm_up".into())],
        line_items: if expand.contains(Expansion::LineItems) {
            line_items
        } else {
            vec![]
        },
        shipping_details: Some(ShippingDetails {
            name: Some("Warm Up".into()),
            address: Some(address),
        }),
        created: 1_767_225_600,
        expires_at: 1_767_312_000,
        ..open_session("cs_test_warm_up", "usd", 15_000)
    }
}
