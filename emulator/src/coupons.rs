//! `/v1/coupons` and the validation shared with `discounts[][coupon_data]`.

use crate::api::Ctx;
use crate::errors::{ApiError, ApiResult};
use crate::expand::Expand;
use crate::params::{self, Params};
use crate::store::{new_id, Coupon, Store};
use axum::http::StatusCode;
use serde_json::{json, Value};

/// Coupon durations Stripe accepts.
pub const DURATIONS: &[&str] = &["forever", "once", "repeating", "service_period"];
/// Longest coupon `name` accepted at creation.
pub const NAME_MAX: usize = 40;

/// `POST /v1/coupons`.
pub fn create(store: &mut Store, ctx: &Ctx, p: &Params) -> ApiResult<Value> {
    p.only(&[
        "id",
        "amount_off",
        "currency",
        "percent_off",
        "duration",
        "duration_in_months",
        "name",
        "metadata",
        "max_redemptions",
        "redeem_by",
        "expand",
    ])?;
    Expand::parse(&p.list_of_strings("expand")?)?.only(&[], "")?;
    let id = match p.str_max("id", 5000)? {
        Some(id) => {
            if store.coupons.get(&id).is_some_and(|c| !c.deleted) {
                return Err(ApiError::param("id", "Coupon already exists.")
                    .with_code("resource_already_exists"));
            }
            id
        }
        None => new_id("", 8),
    };
    let mut coupon = build(p, ctx, id)?;
    if let Some(m) = p.int_min("duration_in_months", 1)? {
        if coupon.duration != "repeating" {
            return Err(ApiError::param(
                "duration_in_months",
                "You may only specify duration_in_months when duration is 'repeating'.",
            ));
        }
        coupon.duration_in_months = Some(m);
    } else if coupon.duration == "repeating" {
        return Err(ApiError::missing("duration_in_months"));
    }
    coupon.max_redemptions = p.int_min("max_redemptions", 1)?;
    if let Some(t) = p.int("redeem_by")? {
        if t <= ctx.now {
            return Err(ApiError::param(
                "redeem_by",
                "Invalid redeem_by: must be in the future",
            ));
        }
        coupon.redeem_by = Some(t);
    }
    let out = render(&coupon, ctx.now);
    store.coupons.insert(coupon.id.clone(), coupon);
    Ok(out)
}

/// Validates the shared coupon fields (`amount_off`/`currency`/`percent_off`, `duration`,
/// `name`, `metadata`) of `p` and builds an unsaved coupon with this id.
pub fn build(p: &Params, ctx: &Ctx, id: String) -> ApiResult<Coupon> {
    let amount_off = p.int("amount_off")?;
    let percent_off = p.decimal("percent_off")?;
    let currency = match p.str("currency")? {
        Some(c) => Some(params::currency(&p.name("currency"), &c)?),
        None => None,
    };
    match (amount_off, percent_off) {
        (Some(_), Some(_)) => {
            return Err(ApiError::exclusive(
                &p.name("amount_off"),
                &["amount_off", "percent_off"],
            ))
        }
        (None, None) => {
            return Err(ApiError::param(
                p.name("percent_off"),
                "Must provide either `amount_off` or `percent_off`.",
            )
            .with_code("parameter_missing"))
        }
        (Some(a), None) => {
            if a < 1 {
                return Err(ApiError::param(
                    p.name("amount_off"),
                    "This value must be greater than or equal to 1.",
                ));
            }
            if currency.is_none() {
                return Err(ApiError::missing(&p.name("currency")));
            }
        }
        (None, Some(pct)) => {
            if !(pct > 0.0 && pct <= 100.0) {
                return Err(ApiError::param(
                    p.name("percent_off"),
                    "Invalid percent_off: must be greater than 0 and less than or equal to 100.",
                ));
            }
        }
    }
    let duration = p
        .enumeration("duration", DURATIONS)?
        .unwrap_or_else(|| "once".to_string());
    let name = p.str_or_empty("name")?.filter(|s| !s.is_empty());
    if let Some(n) = &name {
        params::check_len(&p.name("name"), n, NAME_MAX)?;
    }
    let metadata = p
        .metadata("metadata")?
        .map(|m| m.into_new())
        .unwrap_or_default();
    Ok(Coupon {
        id,
        created: ctx.now,
        amount_off,
        // Stripe keeps `currency` only on amount-off coupons.
        currency: if amount_off.is_some() { currency } else { None },
        percent_off,
        duration,
        duration_in_months: None,
        name,
        metadata,
        max_redemptions: None,
        redeem_by: None,
        times_redeemed: 0,
        deleted: false,
    })
}

/// `GET /v1/coupons/{id}`.
pub fn retrieve(store: &Store, ctx: &Ctx, id: &str, p: &Params) -> ApiResult<Value> {
    p.only(&["expand"])?;
    Expand::parse(&p.list_of_strings("expand")?)?.only(&[], "")?;
    match store.coupons.get(id) {
        Some(c) if !c.deleted => Ok(render(c, ctx.now)),
        _ => Err(no_such(id)),
    }
}

/// `DELETE /v1/coupons/{id}`.
pub fn delete(store: &mut Store, id: &str) -> ApiResult<Value> {
    match store.coupons.get_mut(id) {
        Some(c) if !c.deleted => {
            c.deleted = true;
            Ok(json!({"id": c.id, "object": "coupon", "deleted": true}))
        }
        _ => Err(no_such(id)),
    }
}

fn no_such(id: &str) -> ApiError {
    ApiError::no_such("coupon", id, "id", StatusCode::NOT_FOUND)
}

/// The `coupon` object.
pub fn render(c: &Coupon, now: i64) -> Value {
    json!({
        "id": c.id,
        "object": "coupon",
        "amount_off": c.amount_off,
        "created": c.created,
        "currency": c.currency,
        "duration": c.duration,
        "duration_in_months": c.duration_in_months,
        "livemode": false,
        "max_redemptions": c.max_redemptions,
        "metadata": c.metadata,
        "name": c.name,
        "percent_off": c.percent_off,
        "redeem_by": c.redeem_by,
        "times_redeemed": c.times_redeemed,
        "valid": c.valid(now)
    })
}
