//! Session mapping: the retrieved Stripe Checkout Session and the storefront's
//! request, as the typed records of the WIT contract.

use crate::bindings as wit;
use crate::settings::{Expand, Expansion};
use stripe_checkout as stripe;

/// Leaves `session` as a retrieve that expands only `expand` returns it: line items
/// absent, the customer and coupons as ids. What a policy sees, and what the input
/// digest covers, is then the same whoever retrieved the session with more.
pub fn as_expanded(session: &mut stripe::CheckoutSession, expand: &Expand) {
    if !expand.contains(Expansion::LineItems) {
        session.line_items = None;
    }
    if !expand.contains(Expansion::Customer) {
        if let Some(customer) = session.customer.as_mut() {
            customer.collapse();
        }
    }
    if !expand.contains(Expansion::DiscountsCoupon) {
        for discount in session.discounts.iter_mut().flatten() {
            if let Some(coupon) = discount.coupon.as_mut() {
                coupon.collapse();
            }
        }
    }
}

/// A copy of `session` left as [`as_expanded`] leaves it (the caller keeps the whole one).
pub fn expanded_copy(
    session: &stripe::CheckoutSession,
    expand: &Expand,
) -> stripe::CheckoutSession {
    let mut copy = session.clone();
    as_expanded(&mut copy, expand);
    copy
}

/// Maps a retrieved Checkout Session to the WIT record; the policy sees what was expanded.
pub fn checkout_session(s: &stripe::CheckoutSession) -> wit::CheckoutSession {
    wit::CheckoutSession {
        id: s.id.clone(),
        livemode: s.livemode,
        mode: match s.mode.as_deref() {
            Some("setup") => wit::Mode::Setup,
            Some("subscription") => wit::Mode::Subscription,
            _ => wit::Mode::Payment,
        },
        status: s.status.as_deref().and_then(|st| match st {
            "open" => Some(wit::Status::Open),
            "complete" => Some(wit::Status::Complete),
            "expired" => Some(wit::Status::Expired),
            _ => None,
        }),
        currency: s.currency.clone(),
        amount_subtotal: s.amount_subtotal,
        amount_total: s.amount_total,
        total_details: s.total_details.as_ref().map(|t| wit::TotalDetails {
            amount_discount: t.amount_discount,
            amount_shipping: t.amount_shipping.unwrap_or(0),
            amount_tax: t.amount_tax,
        }),
        customer_id: s.customer.as_ref().map(|c| c.id().to_string()),
        customer_email: s.customer_email.clone(),
        customer_details: s.customer_details.as_ref().map(|d| wit::CustomerDetails {
            name: d.name.clone(),
            email: d.email.clone(),
            phone: d.phone.clone(),
            address: d.address.as_ref().map(address),
        }),
        customer: s.expanded_customer().map(|c| wit::Customer {
            id: c.id.clone(),
            email: c.email.clone(),
            name: c.name.clone(),
            metadata: pairs(&c.metadata),
        }),
        client_reference_id: s.client_reference_id.clone(),
        metadata: s.metadata.as_ref().map(pairs).unwrap_or_default(),
        line_items: s
            .line_items
            .as_ref()
            .map(|l| l.data.iter().map(line_item).collect())
            .unwrap_or_default(),
        discounts: s
            .discounts
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(applied_discount)
            .collect(),
        shipping_details: s.shipping().map(|d| wit::ShippingDetails {
            name: d.name.clone(),
            address: d.address.as_ref().map(address),
        }),
        shipping_cost: s.shipping_cost.as_ref().map(|c| wit::ShippingCost {
            amount_subtotal: c.amount_subtotal,
            amount_tax: c.amount_tax,
            amount_total: c.amount_total,
            shipping_rate: c.shipping_rate.as_ref().and_then(object_id),
        }),
        created: s.created,
        expires_at: s.expires_at,
    }
}

/// Builds the request record from the action and the storefront's JSON body,
/// without its `checkout_session_id`.
pub fn policy_request(
    action: &str,
    input: &serde_json::Map<String, serde_json::Value>,
) -> wit::PolicyRequest {
    let fields = input
        .iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect();
    wit::PolicyRequest {
        action: action.to_string(),
        input_json: serde_json::Value::Object(input.clone()).to_string(),
        input: fields,
    }
}

fn pairs(m: &stripe::Metadata) -> Vec<(String, String)> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn address(a: &stripe::Address) -> wit::Address {
    wit::Address {
        line1: a.line1.clone(),
        line2: a.line2.clone(),
        city: a.city.clone(),
        state: a.state.clone(),
        postal_code: a.postal_code.clone(),
        country: a.country.clone(),
    }
}

fn line_item(li: &stripe::LineItem) -> wit::LineItem {
    let price = li.price.as_ref();
    wit::LineItem {
        id: li.id.clone(),
        price_id: price.map(|p| p.id.clone()),
        product_id: price
            .and_then(|p| p.product.as_ref())
            .map(|p| p.id().to_string()),
        description: li.description.clone(),
        quantity: li.quantity.unwrap_or(1),
        unit_amount: price.and_then(|p| p.unit_amount),
        amount_subtotal: li.amount_subtotal,
        amount_total: li.amount_total,
        amount_discount: li.amount_discount,
        currency: li.currency.clone(),
    }
}

fn applied_discount(d: &stripe::SessionDiscount) -> wit::AppliedDiscount {
    wit::AppliedDiscount {
        coupon_id: d.coupon.as_ref().map(|c| c.id().to_string()),
        coupon: d
            .coupon
            .as_ref()
            .and_then(stripe::Expandable::object)
            .map(coupon),
        promotion_code: d.promotion_code.as_ref().and_then(object_id),
    }
}

/// Maps a Stripe coupon to the WIT record.
pub fn coupon(c: &stripe::Coupon) -> wit::Coupon {
    wit::Coupon {
        id: c.id.clone(),
        name: c.name.clone(),
        amount_off: c.amount_off,
        currency: c.currency.clone(),
        percent_off: c.percent_off,
        duration: match c.duration.as_deref() {
            Some("forever") => wit::Duration::Forever,
            Some("repeating") => wit::Duration::Repeating,
            Some("service_period") => wit::Duration::ServicePeriod,
            _ => wit::Duration::Once,
        },
    }
}

/// The id of a field Stripe returns as an id string or an expanded object.
fn object_id(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("id").and_then(|id| id.as_str()).map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded_session() -> stripe::CheckoutSession {
        let json = serde_json::json!({
            "id": "cs_test_1", "object": "checkout.session", "livemode": false,
            "mode": "payment", "status": "open", "currency": "usd",
            "amount_subtotal": 12000, "amount_total": 12000,
            "total_details": {"amount_discount": 0, "amount_shipping": null, "amount_tax": 0},
            "customer": {"id": "cus_1", "object": "customer", "email": "a@b.c", "metadata": {"tier": "gold"}},
            "metadata": {"k": "v"},
            "line_items": {"object": "list", "has_more": false, "url": "/v1/x", "data": [
                {"id": "li_1", "object": "item", "amount_subtotal": 12000, "amount_total": 12000,
                 "amount_discount": 0, "amount_tax": 0, "currency": "usd", "description": "Shoe",
                 "quantity": 2, "price": {"id": "price_1", "unit_amount": 6000, "currency": "usd", "product": "prod_1"}}
            ]},
            "discounts": [{"coupon": {"id": "co_1", "object": "coupon", "percent_off": 10.0, "duration": "once"}, "promotion_code": null}],
            "collected_information": {"shipping_details": {"name": "A", "address": {"country": "FR", "postal_code": "75001"}}},
            "created": 1, "expires_at": 2
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn maps_expanded_session() {
        let mut s = expanded_session();
        as_expanded(&mut s, &Expand::default());
        let w = checkout_session(&s);
        assert_eq!(w.customer_id.as_deref(), Some("cus_1"));
        assert_eq!(
            w.customer.unwrap().metadata,
            vec![("tier".into(), "gold".into())]
        );
        assert_eq!(w.line_items.len(), 1);
        assert_eq!(w.line_items[0].product_id.as_deref(), Some("prod_1"));
        assert_eq!(w.line_items[0].unit_amount, Some(6000));
        assert_eq!(w.discounts[0].coupon_id.as_deref(), Some("co_1"));
        assert_eq!(
            w.discounts[0].coupon.as_ref().unwrap().percent_off,
            Some(10.0)
        );
        let ship = w.shipping_details.unwrap().address.unwrap();
        assert_eq!(ship.country.as_deref(), Some("FR"));
        assert!(matches!(w.status, Some(wit::Status::Open)));
    }

    #[test]
    fn leaves_out_what_the_policy_does_not_expand() {
        let mut s = expanded_session();
        as_expanded(&mut s, &Expand::only([Expansion::Customer]));
        let customer = checkout_session(&s);
        assert_eq!(customer.customer.unwrap().id, "cus_1");
        assert!(customer.line_items.is_empty());
        assert!(customer.discounts[0].coupon.is_none());
        as_expanded(&mut s, &Expand::only([]));
        let none = checkout_session(&s);
        assert!(none.line_items.is_empty());
        assert!(none.customer.is_none());
        assert_eq!(none.customer_id.as_deref(), Some("cus_1"), "the id stays");
        assert_eq!(none.discounts[0].coupon_id.as_deref(), Some("co_1"));
        assert!(none.discounts[0].coupon.is_none());
        assert_eq!(none.amount_subtotal, Some(12000), "session fields stay");
        let unexpanded: stripe::CheckoutSession = serde_json::from_value(serde_json::json!({
            "id": "cs_test_1", "object": "checkout.session", "livemode": false,
            "mode": "payment", "status": "open", "currency": "usd",
            "amount_subtotal": 12000, "amount_total": 12000,
            "total_details": {"amount_discount": 0, "amount_shipping": null, "amount_tax": 0},
            "customer": "cus_1", "metadata": {"k": "v"},
            "discounts": [{"coupon": "co_1", "promotion_code": null}],
            "collected_information": {"shipping_details": {"name": "A", "address": {"country": "FR", "postal_code": "75001"}}},
            "created": 1, "expires_at": 2
        }))
        .unwrap();
        assert_eq!(s, unexpanded, "the same as a retrieve without expansions");
    }

    #[test]
    fn request_fields_are_text() {
        let body = serde_json::json!({"promo_code": "SAVE10", "qty": 3, "nested": {"a": 1}});
        let r = policy_request("/apply", body.as_object().unwrap());
        assert_eq!(r.action, "/apply");
        assert!(r.input.contains(&("promo_code".into(), "SAVE10".into())));
        assert!(r.input.contains(&("qty".into(), "3".into())));
        assert!(r.input.contains(&("nested".into(), "{\"a\":1}".into())));
    }
}
