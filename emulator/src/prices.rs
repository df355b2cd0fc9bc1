//! `/v1/products`, `/v1/prices` and `/v1/shipping_rates`, and their inline `*_data` forms.

use crate::api::Ctx;
use crate::errors::{ApiError, ApiResult};
use crate::expand::Expand;
use crate::params::{self, Params};
use crate::store::{new_id, Price, Product, Recurring, ShippingRate, Store};
use axum::http::StatusCode;
use serde_json::{json, Value};

/// Largest `unit_amount` Stripe accepts (8 digits).
pub const MAX_UNIT_AMOUNT: i64 = 99_999_999;
/// Recurring intervals.
pub const INTERVALS: &[&str] = &["day", "week", "month", "year"];

/// `POST /v1/products`.
pub fn create_product(store: &mut Store, ctx: &Ctx, p: &Params) -> ApiResult<Value> {
    p.only(&["id", "name", "description", "metadata", "active", "expand"])?;
    Expand::parse(&p.list_of_strings("expand")?)?.only(&[], "")?;
    let id = match p.str_max("id", 5000)? {
        Some(id) if store.products.contains_key(&id) => {
            return Err(ApiError::param("id", "Product already exists.")
                .with_code("resource_already_exists"))
        }
        Some(id) => id,
        None => new_id("prod_", 14),
    };
    let mut product = product_from(p, ctx, id)?;
    product.active = p.bool("active")?.unwrap_or(true);
    let out = render_product(&product);
    store.products.insert(product.id.clone(), product);
    Ok(out)
}

fn product_from(p: &Params, ctx: &Ctx, id: String) -> ApiResult<Product> {
    let name = p
        .str_max("name", 5000)?
        .ok_or_else(|| ApiError::missing(&p.name("name")))?;
    Ok(Product {
        id,
        created: ctx.now,
        name,
        description: p.str_max("description", 40000)?,
        metadata: p
            .metadata("metadata")?
            .map(|m| m.into_new())
            .unwrap_or_default(),
        active: true,
    })
}

/// `GET /v1/products/{id}`.
pub fn retrieve_product(store: &Store, id: &str, p: &Params) -> ApiResult<Value> {
    p.only(&["expand"])?;
    Expand::parse(&p.list_of_strings("expand")?)?.only(&[], "")?;
    store
        .products
        .get(id)
        .map(render_product)
        .ok_or_else(|| ApiError::no_such("product", id, "id", StatusCode::NOT_FOUND))
}

/// `POST /v1/prices`.
pub fn create_price(store: &mut Store, ctx: &Ctx, p: &Params) -> ApiResult<Value> {
    p.only(&[
        "currency",
        "unit_amount",
        "product",
        "product_data",
        "recurring",
        "nickname",
        "metadata",
        "active",
        "expand",
    ])?;
    let expand = Expand::parse(&p.list_of_strings("expand")?)?;
    expand.only(&["product"], "")?;
    let mut price = price_from(store, ctx, p, true)?;
    price.active = p.bool("active")?.unwrap_or(true);
    price.nickname = p.str_max("nickname", 5000)?;
    price.metadata = p
        .metadata("metadata")?
        .map(|m| m.into_new())
        .unwrap_or_default();
    if let Some(prod) = store.products.get_mut(&price.product) {
        prod.active = true;
    }
    let out = render_price(store, &price, &expand);
    store.prices.insert(price.id.clone(), price);
    Ok(out)
}

/// Validates a price (`POST /v1/prices` or `line_items[][price_data]`) and stores its product if inline.
pub fn price_from(store: &mut Store, ctx: &Ctx, p: &Params, standalone: bool) -> ApiResult<Price> {
    if !standalone {
        p.only(&[
            "currency",
            "unit_amount",
            "unit_amount_decimal",
            "product",
            "product_data",
            "recurring",
            "tax_behavior",
        ])?;
        p.enumeration("tax_behavior", &["exclusive", "inclusive", "unspecified"])?;
    }
    let currency = p
        .str("currency")?
        .ok_or_else(|| ApiError::missing(&p.name("currency")))?;
    let currency = params::currency(&p.name("currency"), &currency)?;
    let unit_amount = match (p.int("unit_amount")?, p.str("unit_amount_decimal")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::exclusive(
                &p.name("unit_amount"),
                &["unit_amount", "unit_amount_decimal"],
            ))
        }
        (Some(a), None) => a,
        (None, Some(d)) => {
            // Only whole units are emulated.
            match d.parse::<i64>() {
                Ok(a) => a,
                Err(_) => {
                    return Err(ApiError::param(
                        p.name("unit_amount_decimal"),
                        format!("Invalid decimal: {d} (the emulator only supports whole units)"),
                    ))
                }
            }
        }
        (None, None) => return Err(ApiError::missing(&p.name("unit_amount"))),
    };
    if !(0..=MAX_UNIT_AMOUNT).contains(&unit_amount) {
        return Err(ApiError::param(
            p.name("unit_amount"),
            format!("Invalid integer: {unit_amount}; must be between 0 and {MAX_UNIT_AMOUNT}"),
        ));
    }
    let recurring = match p.hash("recurring")? {
        Some(r) => {
            r.only(&["interval", "interval_count"])?;
            let interval = r
                .enumeration("interval", INTERVALS)?
                .ok_or_else(|| ApiError::missing(&r.name("interval")))?;
            let interval_count = r.int_min("interval_count", 1)?.unwrap_or(1);
            Some(Recurring {
                interval,
                interval_count,
            })
        }
        None => None,
    };
    let product = match (p.str("product")?, p.hash("product_data")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::exclusive(
                &p.name("product"),
                &["product", "product_data"],
            ))
        }
        (Some(id), None) => {
            if !store.products.contains_key(&id) {
                return Err(ApiError::no_such(
                    "product",
                    &id,
                    &p.name("product"),
                    StatusCode::BAD_REQUEST,
                ));
            }
            id
        }
        (None, Some(pd)) => {
            pd.only(&[
                "name",
                "description",
                "metadata",
                "images",
                "tax_code",
                "unit_label",
            ])?;
            let mut prod = product_from(&pd, ctx, new_id("prod_", 14))?;
            prod.active = standalone;
            let id = prod.id.clone();
            store.products.insert(id.clone(), prod);
            id
        }
        (None, None) => {
            return Err(ApiError::param(
                p.name("product"),
                "You must specify either `product` or `product_data`.",
            )
            .with_code("parameter_missing"))
        }
    };
    Ok(Price {
        id: new_id("price_", 24),
        created: ctx.now,
        product,
        currency,
        unit_amount,
        recurring,
        active: standalone,
        nickname: None,
        metadata: Default::default(),
    })
}

/// `GET /v1/prices/{id}`.
pub fn retrieve_price(store: &Store, id: &str, p: &Params) -> ApiResult<Value> {
    p.only(&["expand"])?;
    let expand = Expand::parse(&p.list_of_strings("expand")?)?;
    expand.only(&["product"], "")?;
    let price = store
        .prices
        .get(id)
        .ok_or_else(|| ApiError::no_such("price", id, "id", StatusCode::NOT_FOUND))?;
    Ok(render_price(store, price, &expand))
}

/// The `product` object.
pub fn render_product(p: &Product) -> Value {
    json!({
        "id": p.id,
        "object": "product",
        "active": p.active,
        "created": p.created,
        "default_price": null,
        "description": p.description,
        "images": [],
        "livemode": false,
        "marketing_features": [],
        "metadata": p.metadata,
        "name": p.name,
        "package_dimensions": null,
        "shippable": null,
        "statement_descriptor": null,
        "tax_code": null,
        "type": "service",
        "unit_label": null,
        "updated": p.created,
        "url": null
    })
}

/// The `price` object, expanding `product` when `expand` (the price's expansions) asks for it.
pub fn render_price(store: &Store, p: &Price, expand: &Expand) -> Value {
    render_price_with(store, p, expand.has("product"))
}

/// The `price` object, with the product expanded or not.
pub fn render_price_with(store: &Store, p: &Price, expand_product: bool) -> Value {
    let product = match (expand_product, store.products.get(&p.product)) {
        (true, Some(prod)) => render_product(prod),
        _ => json!(p.product),
    };
    json!({
        "id": p.id,
        "object": "price",
        "active": p.active,
        "billing_scheme": "per_unit",
        "created": p.created,
        "currency": p.currency,
        "custom_unit_amount": null,
        "livemode": false,
        "lookup_key": null,
        "metadata": p.metadata,
        "nickname": p.nickname,
        "product": product,
        "recurring": p.recurring.as_ref().map(|r| json!({
            "interval": r.interval,
            "interval_count": r.interval_count,
            "meter": null,
            "trial_period_days": null,
            "usage_type": "licensed"
        })),
        "tax_behavior": "unspecified",
        "tiers_mode": null,
        "transform_quantity": null,
        "type": if p.recurring.is_some() { "recurring" } else { "one_time" },
        "unit_amount": p.unit_amount,
        "unit_amount_decimal": p.unit_amount.to_string()
    })
}

/// Validates `shipping_rate_data` (fixed amounts only) and stores the rate.
pub fn shipping_rate_from(
    store: &mut Store,
    ctx: &Ctx,
    p: &Params,
    standalone: bool,
) -> ApiResult<ShippingRate> {
    let allowed: &[&str] = &[
        "display_name",
        "fixed_amount",
        "type",
        "metadata",
        "tax_behavior",
        "tax_code",
        "delivery_estimate",
        "expand",
    ];
    p.only(if standalone {
        allowed
    } else {
        &allowed[..allowed.len() - 1]
    })?;
    if standalone {
        Expand::parse(&p.list_of_strings("expand")?)?.only(&[], "")?;
    }
    p.enumeration("type", &["fixed_amount"])?;
    let display_name = p
        .str_max("display_name", 100)?
        .ok_or_else(|| ApiError::missing(&p.name("display_name")))?;
    let fixed = p
        .hash("fixed_amount")?
        .ok_or_else(|| ApiError::missing(&p.name("fixed_amount")))?;
    fixed.only(&["amount", "currency"])?;
    let amount = fixed
        .int_min("amount", 0)?
        .ok_or_else(|| ApiError::missing(&fixed.name("amount")))?;
    let currency = fixed
        .str("currency")?
        .ok_or_else(|| ApiError::missing(&fixed.name("currency")))?;
    let currency = params::currency(&fixed.name("currency"), &currency)?;
    let rate = ShippingRate {
        id: new_id("shr_", 24),
        created: ctx.now,
        display_name,
        amount,
        currency,
        metadata: p
            .metadata("metadata")?
            .map(|m| m.into_new())
            .unwrap_or_default(),
        active: true,
    };
    store.shipping_rates.insert(rate.id.clone(), rate.clone());
    Ok(rate)
}

/// `POST /v1/shipping_rates`.
pub fn create_shipping_rate(store: &mut Store, ctx: &Ctx, p: &Params) -> ApiResult<Value> {
    let rate = shipping_rate_from(store, ctx, p, true)?;
    Ok(render_shipping_rate(&rate))
}

/// `GET /v1/shipping_rates/{id}`.
pub fn retrieve_shipping_rate(store: &Store, id: &str, p: &Params) -> ApiResult<Value> {
    p.only(&["expand"])?;
    store
        .shipping_rates
        .get(id)
        .map(render_shipping_rate)
        .ok_or_else(|| ApiError::no_such("shipping rate", id, "id", StatusCode::NOT_FOUND))
}

/// The `shipping_rate` object.
pub fn render_shipping_rate(r: &ShippingRate) -> Value {
    json!({
        "id": r.id,
        "object": "shipping_rate",
        "active": r.active,
        "created": r.created,
        "delivery_estimate": null,
        "display_name": r.display_name,
        "fixed_amount": {"amount": r.amount, "currency": r.currency},
        "livemode": false,
        "metadata": r.metadata,
        "tax_behavior": "unspecified",
        "tax_code": null,
        "type": "fixed_amount"
    })
}
