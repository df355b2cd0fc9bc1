//! `/v1/checkout/sessions`: create, retrieve, update (metadata, discounts), expire, line items.

use crate::api::Ctx;
use crate::errors::{ApiError, ApiResult};
use crate::expand::Expand;
use crate::params::{self, Params};
use crate::store::{new_id, AppliedDiscount, LineItem, Session, ShippingOption, Store};
use crate::{coupons, currency, customers, prices};
use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use stripe_checkout::totals::SessionTotals;

/// The beta that unlocks `discounts` on the update endpoint.
pub const UPDATE_BETA: &str = "checkout_server_update_beta=v1";
/// Session lifetime when `expires_at` is not given (24 hours).
pub const DEFAULT_LIFETIME: i64 = 24 * 3600;
/// Shortest `expires_at` allowed (30 minutes).
pub const MIN_LIFETIME: i64 = 30 * 60;
/// Most line items in payment mode.
pub const MAX_LINE_ITEMS: usize = 100;
/// Most shipping options.
pub const MAX_SHIPPING_OPTIONS: usize = 5;
/// Largest session total accepted (8 digits).
pub const MAX_AMOUNT: i64 = 99_999_999;
/// Page size of an expanded `line_items` list.
pub const EXPANDED_LIST_LIMIT: usize = 10;
/// `ui_mode` values accepted (older and newer names).
pub const UI_MODES: &[&str] = &[
    "hosted",
    "embedded",
    "custom",
    "elements",
    "embedded_page",
    "form",
    "hosted_page",
];
/// Fields of a session that `expand[]` accepts.
const EXPANDABLE: &[&str] = &[
    "customer",
    "line_items",
    "discounts",
    "total_details",
    "payment_intent",
    "setup_intent",
    "subscription",
    "invoice",
    "payment_link",
    "shipping_cost",
    "shipping_options",
];
/// Update parameters Stripe has but the emulator does not implement.
const UPDATE_UNSUPPORTED: &[&str] = &[
    "automatic_tax",
    "collected_information",
    "invoice_creation",
    "line_items",
    "payment_intent_data",
    "shipping_options",
    "subscription_data",
];

fn is_hosted(ui_mode: &str) -> bool {
    ui_mode == "hosted" || ui_mode == "hosted_page"
}

fn no_such(id: &str) -> ApiError {
    ApiError::no_such("checkout.session", id, "id", StatusCode::NOT_FOUND)
}

fn session<'a>(store: &'a Store, id: &str) -> ApiResult<&'a Session> {
    store.sessions.get(id).ok_or_else(|| no_such(id))
}

/// The values `locale` takes (`checkout.session.locale` in the API reference).
const LOCALES: &[&str] = &[
    "auto", "bg", "cs", "da", "de", "el", "en", "en-GB", "es", "es-419", "et", "fi", "fil", "fr",
    "fr-CA", "hr", "hu", "id", "it", "ja", "ko", "lt", "lv", "ms", "mt", "nb", "nl", "pl", "pt",
    "pt-BR", "ro", "ru", "sk", "sl", "sv", "th", "tr", "vi", "zh", "zh-HK", "zh-TW",
];

/// `POST /v1/checkout/sessions`.
pub fn create(store: &mut Store, ctx: &Ctx, p: &Params) -> ApiResult<Value> {
    p.only(&[
        "mode",
        "line_items",
        "customer",
        "customer_email",
        "client_reference_id",
        "metadata",
        "ui_mode",
        "success_url",
        "cancel_url",
        "return_url",
        "redirect_on_completion",
        "permissions",
        "discounts",
        "shipping_options",
        "expires_at",
        "currency",
        "locale",
        "allow_promotion_codes",
        "submit_type",
        "billing_address_collection",
        "shipping_address_collection",
        "payment_method_types",
        "expand",
    ])?;
    let expand = Expand::parse(&p.list_of_strings("expand")?)?;
    check_session_expand(&expand, ctx)?;
    let mode = p
        .enumeration("mode", &["payment", "setup", "subscription"])?
        .ok_or_else(|| ApiError::missing("mode"))?;
    let ui_mode = p
        .enumeration("ui_mode", UI_MODES)?
        .unwrap_or_else(|| "hosted".into());
    let hosted = is_hosted(&ui_mode);

    // URLs.
    let success_url = p.str_max("success_url", 5000)?;
    let cancel_url = p.str_max("cancel_url", 5000)?;
    let return_url = p.str_max("return_url", 5000)?;
    let redirect_on_completion = p.enumeration(
        "redirect_on_completion",
        &["always", "if_required", "never"],
    )?;
    if hosted {
        if return_url.is_some() {
            return Err(ApiError::param(
                "return_url",
                format!("`return_url` cannot be used with `ui_mode={ui_mode}`. Use `success_url` instead."),
            ));
        }
        if redirect_on_completion.is_some() {
            return Err(ApiError::param(
                "redirect_on_completion",
                format!("`redirect_on_completion` cannot be used with `ui_mode={ui_mode}`."),
            ));
        }
    } else {
        for (name, v) in [("success_url", &success_url), ("cancel_url", &cancel_url)] {
            if v.is_some() {
                return Err(ApiError::param(
                    name,
                    format!("`{name}` cannot be used with `ui_mode={ui_mode}`. Use `return_url` instead."),
                ));
            }
        }
        if return_url.is_none() && redirect_on_completion.as_deref() != Some("never") {
            return Err(ApiError::missing("return_url"));
        }
        if return_url.is_some() && redirect_on_completion.as_deref() == Some("never") {
            return Err(ApiError::param(
                "return_url",
                "`return_url` cannot be used when `redirect_on_completion` is `never`.",
            ));
        }
    }

    // Customer.
    let customer = p.str("customer")?;
    let customer_email = p.str_max("customer_email", 800)?;
    if customer.is_some() && customer_email.is_some() {
        return Err(ApiError::exclusive(
            "customer",
            &["customer", "customer_email"],
        ));
    }
    if let Some(c) = &customer {
        if store.customers.get(c).is_none_or(|c| c.deleted) {
            return Err(ApiError::no_such(
                "customer",
                c,
                "customer",
                StatusCode::BAD_REQUEST,
            ));
        }
    }
    if let Some(e) = &customer_email {
        customers::check_email("customer_email", e)?;
    }
    let client_reference_id = p.str_max("client_reference_id", 200)?;
    let metadata = p
        .metadata("metadata")?
        .map(|m| m.into_new())
        .unwrap_or_default();

    // Permissions.
    let mut update_discounts = None;
    // What the session shows: `update_shipping_details` always, the others when set.
    let mut permissions = json!({"update_shipping_details": null});
    if let Some(perm) = p.hash("permissions")? {
        if hosted {
            return Err(ApiError::param(
                "permissions",
                "`permissions` can only be set when creating `embedded` or `custom` sessions.",
            ));
        }
        perm.only(&[
            "update_discounts",
            "update_line_items",
            "update_shipping_details",
            "update",
        ])?;
        let choices = &["client_only", "server_only"];
        update_discounts = perm.enumeration("update_discounts", choices)?;
        if let Some(v) = perm.enumeration("update_line_items", choices)? {
            permissions["update_line_items"] = json!(v);
        }
        permissions["update_shipping_details"] =
            json!(perm.enumeration("update_shipping_details", choices)?);
        if let Some(u) = perm.hash("update")? {
            u.only(&["line_items", "shipping_details"])?;
            let line_items = u.enumeration("line_items", choices)?;
            let shipping_details = u.enumeration("shipping_details", choices)?;
            permissions["update"] =
                json!({"line_items": line_items, "shipping_details": shipping_details});
        }
    }

    let expires_at = match p.int("expires_at")? {
        Some(t) => {
            if t < ctx.now + MIN_LIFETIME {
                return Err(ApiError::param(
                    "expires_at",
                    "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.",
                ));
            }
            if t > ctx.now + DEFAULT_LIFETIME {
                return Err(ApiError::param(
                    "expires_at",
                    "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
                ));
            }
            t
        }
        None => ctx.now + DEFAULT_LIFETIME,
    };

    let locale = p.enumeration("locale", LOCALES)?;
    let allow_promotion_codes = p.bool("allow_promotion_codes")?;
    let submit_type = p.enumeration(
        "submit_type",
        &["auto", "book", "donate", "pay", "subscribe"],
    )?;
    let billing_address_collection =
        p.enumeration("billing_address_collection", &["auto", "required"])?;
    let shipping_allowed_countries = match p.hash("shipping_address_collection")? {
        Some(h) => {
            h.only(&["allowed_countries"])?;
            let list = h.list_of_strings("allowed_countries")?;
            if list.is_empty() {
                return Err(ApiError::missing(&h.name("allowed_countries")));
            }
            Some(list)
        }
        None => None,
    };
    let mut payment_method_types = p.list_of_strings("payment_method_types")?;
    if payment_method_types.is_empty() {
        payment_method_types.push("card".into());
    }
    let currency_param = match p.str("currency")? {
        Some(c) => Some(params::currency("currency", &c)?),
        None => None,
    };

    // Line items (prices are validated into a scratch copy of the catalogue first,
    // so that a failed request leaves no inline prices behind).
    let line_params = p.list_of_hashes("line_items")?.unwrap_or_default();
    if mode == "setup" && !line_params.is_empty() {
        return Err(ApiError::param(
            "line_items",
            "You cannot pass `line_items` in `setup` mode.",
        ));
    }
    if mode != "setup" && line_params.is_empty() {
        return Err(ApiError::missing("line_items"));
    }
    if line_params.len() > MAX_LINE_ITEMS {
        return Err(ApiError::param(
            "line_items",
            format!("You can only have up to {MAX_LINE_ITEMS} line items."),
        ));
    }
    let mut scratch_products = store.products.clone();
    let mut new_prices = Vec::new();
    let mut items = Vec::new();
    let mut session_currency: Option<String> = None;
    for li in &line_params {
        li.only(&["price", "price_data", "quantity"])?;
        let price = match (li.str("price")?, li.hash("price_data")?) {
            (Some(_), Some(_)) => {
                return Err(ApiError::exclusive(
                    &li.name("price"),
                    &["price", "price_data"],
                ))
            }
            (Some(id), None) => match store.prices.get(&id) {
                Some(pr) if pr.active => pr.clone(),
                Some(_) => {
                    return Err(ApiError::param(
                        li.name("price"),
                        format!("The price specified is inactive. This field only accepts active prices. Price: {id}"),
                    ))
                }
                None => {
                    return Err(ApiError::no_such(
                        "price",
                        &id,
                        &li.name("price"),
                        StatusCode::BAD_REQUEST,
                    ))
                }
            },
            (None, Some(pd)) => {
                let mut tmp = Store {
                    products: std::mem::take(&mut scratch_products),
                    ..Store::default()
                };
                let r = prices::price_from(&mut tmp, ctx, &pd, false);
                scratch_products = tmp.products;
                r?
            }
            (None, None) => {
                return Err(ApiError::param(
                    li.name("price"),
                    "You must specify either `price` or `price_data` in each `line_items` entry.",
                )
                .with_code("parameter_missing"))
            }
        };
        let quantity = li
            .int_min("quantity", 1)?
            .ok_or_else(|| ApiError::missing(&li.name("quantity")))?;
        if quantity > 999_999 {
            return Err(ApiError::param(
                li.name("quantity"),
                "This value must be less than or equal to 999999.",
            ));
        }
        match &session_currency {
            None => session_currency = Some(price.currency.clone()),
            Some(c) if *c != price.currency => {
                let which = if li.has("price") {
                    li.name("price")
                } else {
                    format!("{}[currency]", li.name("price_data"))
                };
                return Err(ApiError::param(
                    which,
                    format!(
                        "All prices on a Checkout Session must have the same currency; this line item is in `{}` but an earlier one is in `{c}`.",
                        price.currency
                    ),
                ));
            }
            Some(_) => {}
        }
        if mode == "payment" && price.recurring.is_some() {
            return Err(ApiError::param(
                li.name("price"),
                "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.",
            ));
        }
        items.push(LineItem {
            id: new_id("li_", 24),
            price: price.id.clone(),
            quantity,
        });
        if !store.prices.contains_key(&price.id) {
            new_prices.push(price);
        }
    }
    if mode == "subscription" {
        let all: Vec<_> = items
            .iter()
            .filter_map(|li| {
                store
                    .prices
                    .get(&li.price)
                    .or_else(|| new_prices.iter().find(|p| p.id == li.price))
            })
            .collect();
        if !all.iter().any(|p| p.recurring.is_some()) {
            return Err(ApiError::param(
                "line_items",
                "You must provide at least one recurring price in `subscription` mode when using prices.",
            ));
        }
        let intervals: Vec<_> = all.iter().filter_map(|p| p.recurring.as_ref()).collect();
        if intervals.windows(2).any(|w| w[0] != w[1]) {
            return Err(ApiError::param(
                "line_items",
                "Checkout does not support multiple prices with different billing intervals.",
            ));
        }
        if items.len() > 20 {
            return Err(ApiError::param(
                "line_items",
                "You can only have up to 20 line items in `subscription` mode.",
            ));
        }
    }
    let currency = match (session_currency, currency_param) {
        (Some(c), Some(pc)) if c != pc => {
            return Err(ApiError::param(
                "currency",
                format!(
                    "The `currency` ({pc}) does not match the currency of the line items ({c})."
                ),
            ))
        }
        (Some(c), _) => Some(c),
        (None, pc) => pc,
    };

    // Shipping options.
    let shipping_params = p.list_of_hashes("shipping_options")?.unwrap_or_default();
    if !shipping_params.is_empty() && mode != "payment" {
        return Err(ApiError::param(
            "shipping_options",
            "`shipping_options` can only be used in `payment` mode.",
        ));
    }
    if shipping_params.len() > MAX_SHIPPING_OPTIONS {
        return Err(ApiError::param(
            "shipping_options",
            format!("You can only have up to {MAX_SHIPPING_OPTIONS} shipping options."),
        ));
    }

    // Discounts.
    let discount_params = p.list_of_hashes("discounts")?.unwrap_or_default();
    if !discount_params.is_empty() && allow_promotion_codes == Some(true) {
        return Err(ApiError::exclusive(
            "discounts",
            &["allow_promotion_codes", "discounts"],
        ));
    }
    if discount_params.len() > 1 {
        return Err(ApiError::param(
            "discounts",
            "Only one discount may be applied to a Checkout Session.",
        ));
    }
    if !discount_params.is_empty() && mode == "setup" {
        return Err(ApiError::param(
            "discounts",
            "`discounts` cannot be used in `setup` mode.",
        ));
    }
    let mut coupon_id = None;
    if let Some(d) = discount_params.first() {
        d.only(&["coupon", "promotion_code"])?;
        match (d.str("coupon")?, d.str("promotion_code")?) {
            (Some(_), Some(_)) => {
                return Err(ApiError::exclusive(
                    &d.name("coupon"),
                    &["coupon", "promotion_code"],
                ))
            }
            (Some(c), None) => {
                check_coupon(store, ctx, &c, currency.as_deref(), &d.name("coupon"))?;
                coupon_id = Some(c);
            }
            (None, Some(pc)) => {
                return Err(ApiError::no_such(
                    "promotion code",
                    &pc,
                    &d.name("promotion_code"),
                    StatusCode::BAD_REQUEST,
                ))
            }
            (None, None) => {
                return Err(ApiError::param(
                    d.name("coupon"),
                    "You must specify either `coupon` or `promotion_code`.",
                )
                .with_code("parameter_missing"))
            }
        }
    }

    // Amount checks on the would-be totals.
    let unit = |id: &str| {
        store
            .prices
            .get(id)
            .or_else(|| new_prices.iter().find(|p| p.id == id))
            .map_or(0, |p| p.unit_amount)
    };
    let subtotals: Vec<i64> = items
        .iter()
        .map(|li| unit(&li.price).saturating_mul(li.quantity))
        .collect();
    let subtotal: i64 = subtotals.iter().fold(0, |a, b| a.saturating_add(*b));
    if subtotal > MAX_AMOUNT {
        return Err(ApiError::param(
            "line_items",
            format!("The Checkout Session's total amount must be no more than {MAX_AMOUNT} (in the smallest currency unit)."),
        )
        .with_code("amount_too_large"));
    }

    // Everything is valid: commit.
    let mut shipping_options = Vec::new();
    for so in &shipping_params {
        so.only(&["shipping_rate", "shipping_rate_data"])?;
        let rate = match (so.str("shipping_rate")?, so.hash("shipping_rate_data")?) {
            (Some(_), Some(_)) => {
                return Err(ApiError::exclusive(
                    &so.name("shipping_rate"),
                    &["shipping_rate", "shipping_rate_data"],
                ))
            }
            (Some(id), None) => store.shipping_rates.get(&id).cloned().ok_or_else(|| {
                ApiError::no_such(
                    "shipping rate",
                    &id,
                    &so.name("shipping_rate"),
                    StatusCode::BAD_REQUEST,
                )
            })?,
            (None, Some(data)) => {
                // Validate without storing first.
                let mut tmp = Store::default();
                prices::shipping_rate_from(&mut tmp, ctx, &data, false)?
            }
            (None, None) => {
                return Err(ApiError::missing(&so.name("shipping_rate")));
            }
        };
        if Some(&rate.currency) != currency.as_ref() {
            return Err(ApiError::param(
                so.name("shipping_rate_data"),
                format!(
                    "The shipping rate's currency ({}) must match the currency of the Checkout Session ({}).",
                    rate.currency,
                    currency.as_deref().unwrap_or("none")
                ),
            ));
        }
        shipping_options.push(rate);
    }
    let shipping_amount = shipping_options.first().map_or(0, |r| r.amount);
    let coupon_terms = coupon_id
        .as_ref()
        .and_then(|c| store.coupons.get(c))
        .map(|c| c.terms());
    let totals = SessionTotals::compute(&subtotals, coupon_terms.as_ref(), shipping_amount);
    if mode == "payment" {
        if let Some(min) = currency.as_deref().and_then(currency::minimum_charge) {
            if totals.amount_total > 0 && totals.amount_total < min {
                return Err(ApiError::invalid(format!(
                    "The Checkout Session's total amount due must add up to at least {min} {} (in the smallest currency unit).",
                    currency.as_deref().unwrap_or_default()
                ))
                .with_code("amount_too_small"));
            }
        }
    }

    store.products = scratch_products;
    for pr in new_prices {
        store.prices.insert(pr.id.clone(), pr);
    }
    for r in &shipping_options {
        store.shipping_rates.insert(r.id.clone(), r.clone());
    }
    let id = format!("cs_test_a1{}", new_id("", 56));
    let s = Session {
        client_secret: (!hosted).then(|| format!("{id}_secret_{}", new_id("", 24))),
        id: id.clone(),
        created: ctx.now,
        expires_at,
        payment_status: if mode == "setup" {
            "no_payment_required".into()
        } else {
            "unpaid".into()
        },
        mode,
        ui_mode,
        status: "open".into(),
        currency,
        customer,
        customer_email,
        client_reference_id,
        metadata,
        success_url,
        cancel_url,
        return_url,
        redirect_on_completion,
        locale,
        allow_promotion_codes,
        submit_type,
        billing_address_collection,
        shipping_allowed_countries,
        payment_method_types,
        line_items: items,
        discount: coupon_id.map(|coupon| AppliedDiscount {
            id: new_id("di_", 24),
            coupon,
            start: ctx.now,
        }),
        shipping_options: shipping_options
            .iter()
            .map(|r| ShippingOption {
                shipping_rate: r.id.clone(),
                shipping_amount: r.amount,
            })
            .collect(),
        update_discounts,
        permissions,
        customer_details: None,
        shipping_details: None,
        payment_intent: None,
    };
    store.sessions.insert(id.clone(), s);
    store.session_order.push(id.clone());
    render(store, ctx, session(store, &id)?, &expand)
}

/// Checks that a coupon exists, is valid and fits the session currency.
fn check_coupon(
    store: &Store,
    ctx: &Ctx,
    id: &str,
    session_currency: Option<&str>,
    param: &str,
) -> ApiResult<()> {
    let c = match store.coupons.get(id) {
        Some(c) if !c.deleted => c,
        _ => {
            return Err(ApiError::no_such(
                "coupon",
                id,
                param,
                StatusCode::BAD_REQUEST,
            ))
        }
    };
    if !c.valid(ctx.now) {
        return Err(
            ApiError::param(param, format!("This coupon is no longer valid: {id}"))
                .with_code("coupon_expired"),
        );
    }
    if let (Some(cc), Some(sc)) = (&c.currency, session_currency) {
        if c.amount_off.is_some() && cc != sc {
            return Err(ApiError::param(
                param,
                format!(
                    "The coupon's currency ({cc}) must match the currency of the Checkout Session ({sc})."
                ),
            ));
        }
    }
    Ok(())
}

/// `GET /v1/checkout/sessions/{id}`.
pub fn retrieve(store: &Store, ctx: &Ctx, id: &str, p: &Params) -> ApiResult<Value> {
    p.only(&["expand"])?;
    let expand = Expand::parse(&p.list_of_strings("expand")?)?;
    check_session_expand(&expand, ctx)?;
    render(store, ctx, session(store, id)?, &expand)
}

/// What an update does to the session's discounts.
enum DiscountChange {
    Clear,
    Coupon(String),
    New(crate::store::Coupon),
}

/// `POST /v1/checkout/sessions/{id}`: `metadata`, and `discounts` under the beta.
pub fn update(store: &mut Store, ctx: &Ctx, id: &str, p: &Params) -> ApiResult<Value> {
    if p.has("discounts") && !ctx.has_beta(UPDATE_BETA) {
        return Err(ApiError::unknown("discounts"));
    }
    let mut allowed = vec!["metadata", "expand", "discounts"];
    allowed.extend_from_slice(UPDATE_UNSUPPORTED);
    p.only(&allowed)?;
    if let Some(k) = UPDATE_UNSUPPORTED.iter().find(|k| p.has(k)) {
        return Err(ApiError::param(
            *k,
            format!("The Stripe emulator does not implement updating `{k}` on a Checkout Session."),
        ));
    }
    let expand = Expand::parse(&p.list_of_strings("expand")?)?;
    check_session_expand(&expand, ctx)?;
    let s = session(store, id)?;
    if s.status != "open" {
        return Err(not_open("updated", &s.status));
    }
    let metadata = p.metadata("metadata")?;
    let change = if p.has("discounts") {
        Some(parse_discounts(store, ctx, s, p)?)
    } else {
        None
    };
    let mut new_metadata = s.metadata.clone();
    if let Some(m) = metadata {
        m.apply(&mut new_metadata)?;
    }
    let discount = match change {
        None => s.discount.clone(),
        Some(DiscountChange::Clear) => None,
        Some(DiscountChange::Coupon(c)) => Some(AppliedDiscount {
            id: new_id("di_", 24),
            coupon: c,
            start: ctx.now,
        }),
        Some(DiscountChange::New(coupon)) => {
            let cid = coupon.id.clone();
            store.coupons.insert(cid.clone(), coupon);
            Some(AppliedDiscount {
                id: new_id("di_", 24),
                coupon: cid,
                start: ctx.now,
            })
        }
    };
    let s = store.sessions.get_mut(id).ok_or_else(|| no_such(id))?;
    s.metadata = new_metadata;
    s.discount = discount;
    render(store, ctx, session(store, id)?, &expand)
}

fn parse_discounts(store: &Store, ctx: &Ctx, s: &Session, p: &Params) -> ApiResult<DiscountChange> {
    if s.update_discounts.as_deref() != Some("server_only") {
        return Err(ApiError::param(
            "discounts",
            "Discounts on this Checkout Session cannot be updated from your server: it was not created with `permissions[update_discounts]=server_only`.",
        ));
    }
    if s.mode == "setup" {
        return Err(ApiError::param(
            "discounts",
            "`discounts` cannot be used in `setup` mode.",
        ));
    }
    let list = p
        .list_of_hashes("discounts")?
        .ok_or_else(|| ApiError::param("discounts", "Invalid array"))?;
    if list.len() > 1 {
        return Err(ApiError::param(
            "discounts",
            "Only one discount may be applied to a Checkout Session.",
        ));
    }
    let Some(d) = list.first() else {
        return Ok(DiscountChange::Clear);
    };
    d.only(&["coupon", "coupon_data"])?;
    match (d.str("coupon")?, d.hash("coupon_data")?) {
        (Some(_), Some(_)) => Err(ApiError::exclusive(
            &d.name("coupon"),
            &["coupon", "coupon_data"],
        )),
        (None, None) => Err(ApiError::param(
            d.name("coupon"),
            "One of `coupon` or `coupon_data` is required when updating discounts.",
        )
        .with_code("parameter_missing")),
        (Some(c), None) => {
            check_coupon(store, ctx, &c, s.currency.as_deref(), &d.name("coupon"))?;
            Ok(DiscountChange::Coupon(c))
        }
        (None, Some(cd)) => {
            cd.only(&[
                "amount_off",
                "currency",
                "duration",
                "metadata",
                "name",
                "percent_off",
            ])?;
            let mut id = new_id("", 8);
            while store.coupons.contains_key(&id) {
                id = new_id("", 8);
            }
            let coupon = coupons::build(&cd, ctx, id)?;
            if let (Some(_), Some(cc)) = (coupon.amount_off, &coupon.currency) {
                if Some(cc.as_str()) != s.currency.as_deref() {
                    return Err(ApiError::param(
                        cd.name("currency"),
                        format!(
                            "The coupon's currency ({cc}) must match the currency of the Checkout Session ({}).",
                            s.currency.as_deref().unwrap_or("none")
                        ),
                    ));
                }
            }
            Ok(DiscountChange::New(coupon))
        }
    }
}

fn not_open(action: &str, status: &str) -> ApiError {
    ApiError::invalid(format!(
        "Only Checkout Sessions with a status in [\"open\"] can be {action}. This Checkout Session has a status of `{status}`."
    ))
}

/// `POST /v1/checkout/sessions/{id}/expire`.
pub fn expire(store: &mut Store, ctx: &Ctx, id: &str, p: &Params) -> ApiResult<Value> {
    p.only(&["expand"])?;
    let expand = Expand::parse(&p.list_of_strings("expand")?)?;
    check_session_expand(&expand, ctx)?;
    let s = store.sessions.get_mut(id).ok_or_else(|| no_such(id))?;
    if s.status != "open" {
        return Err(not_open("expired", &s.status));
    }
    s.status = "expired".into();
    render(store, ctx, session(store, id)?, &expand)
}

/// `GET /v1/checkout/sessions/{id}/line_items` (with `limit`, `starting_after`, `ending_before`).
pub fn list_line_items(store: &Store, ctx: &Ctx, id: &str, p: &Params) -> ApiResult<Value> {
    p.only(&["expand", "limit", "starting_after", "ending_before"])?;
    let expand = Expand::parse(&p.list_of_strings("expand")?)?;
    expand.only(&["data"], "")?;
    let item_expand = expand.child("data");
    check_item_expand(&item_expand, "data", ctx)?;
    let s = session(store, id)?;
    let limit = p.int("limit")?.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::param(
            "limit",
            "Invalid limit: must be between 1 and 100",
        ));
    }
    let ids: Vec<&str> = s.line_items.iter().map(|l| l.id.as_str()).collect();
    let pos = |param: &str, v: &str| -> ApiResult<usize> {
        ids.iter().position(|i| *i == v).ok_or_else(|| {
            ApiError::param(
                param,
                format!("Invalid {param}: no line item {v} on this session"),
            )
        })
    };
    let (start, end) = match (p.str("starting_after")?, p.str("ending_before")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::exclusive(
                "starting_after",
                &["starting_after", "ending_before"],
            ))
        }
        (Some(a), None) => {
            let i = pos("starting_after", &a)? + 1;
            (i, (i + limit as usize).min(ids.len()))
        }
        (None, Some(b)) => {
            let j = pos("ending_before", &b)?;
            (j.saturating_sub(limit as usize), j)
        }
        (None, None) => (0, (limit as usize).min(ids.len())),
    };
    let has_more = if p.has("ending_before") {
        start > 0
    } else {
        end < ids.len()
    };
    line_items_list(store, ctx, s, &item_expand, start, end, has_more)
}

/// Refuses expansions a session does not have.
fn check_session_expand(e: &Expand, ctx: &Ctx) -> ApiResult<()> {
    e.only(EXPANDABLE, "")?;
    e.require_children("discounts", "")?;
    e.require_children("total_details", "")?;
    e.child("discounts")
        .only(&["coupon", "promotion_code"], "discounts")?;
    e.child("total_details")
        .only(&["breakdown"], "total_details")?;
    let bd = e.child("total_details").child("breakdown");
    bd.only(&["discounts"], "total_details.breakdown")?;
    bd.require_children("discounts", "total_details.breakdown")?;
    check_discount_expand(
        &bd.child("discounts").child("discount"),
        "total_details.breakdown.discounts.discount",
        ctx,
    )?;
    bd.child("discounts")
        .only(&["discount"], "total_details.breakdown.discounts")?;
    let li = e.child("line_items");
    li.only(&["data"], "line_items")?;
    li.require_children("data", "line_items")?;
    check_item_expand(&li.child("data"), "line_items.data", ctx)?;
    e.child("shipping_cost")
        .only(&["shipping_rate"], "shipping_cost")?;
    e.require_children("shipping_cost", "")?;
    e.child("shipping_options")
        .only(&["shipping_rate"], "shipping_options")?;
    e.require_children("shipping_options", "")?;
    for leaf in [
        "customer",
        "payment_intent",
        "setup_intent",
        "subscription",
        "invoice",
        "payment_link",
    ] {
        e.child(leaf).only(&[], leaf)?;
    }
    for (parent, child) in [
        ("discounts", "coupon"),
        ("discounts", "promotion_code"),
        ("shipping_cost", "shipping_rate"),
        ("shipping_options", "shipping_rate"),
    ] {
        e.child(parent)
            .child(child)
            .only(&[], &format!("{parent}.{child}"))?;
    }
    Ok(())
}

fn check_item_expand(e: &Expand, path: &str, ctx: &Ctx) -> ApiResult<()> {
    e.only(&["price", "discounts", "taxes"], path)?;
    let price = e.child("price");
    price.only(&["product"], &format!("{path}.price"))?;
    price
        .child("product")
        .only(&[], &format!("{path}.price.product"))?;
    e.require_children("price", path)?;
    let d = e.child("discounts");
    d.only(&["discount"], &format!("{path}.discounts"))?;
    check_discount_expand(
        &d.child("discount"),
        &format!("{path}.discounts.discount"),
        ctx,
    )?;
    e.child("taxes").only(&[], &format!("{path}.taxes"))
}

fn check_discount_expand(e: &Expand, path: &str, ctx: &Ctx) -> ApiResult<()> {
    if ctx.is_clover() {
        e.only(&["source", "customer", "promotion_code"], path)?;
        e.require_children("source", path)?;
        e.child("source")
            .only(&["coupon"], &format!("{path}.source"))
    } else {
        e.only(&["customer", "promotion_code"], path)
    }
}

/// The session's current totals, from its line items, discount and shipping.
pub fn totals(store: &Store, s: &Session) -> SessionTotals {
    let subtotals: Vec<i64> = s
        .line_items
        .iter()
        .map(|li| {
            store
                .prices
                .get(&li.price)
                .map_or(0, |p| p.unit_amount.saturating_mul(li.quantity))
        })
        .collect();
    let terms = s
        .discount
        .as_ref()
        .and_then(|d| store.coupons.get(&d.coupon))
        .map(|c| c.terms());
    SessionTotals::compute(&subtotals, terms.as_ref(), s.shipping_amount().unwrap_or(0))
}

fn render_discount_object(
    store: &Store,
    ctx: &Ctx,
    s: &Session,
    d: &AppliedDiscount,
    e: &Expand,
) -> Value {
    let coupon_obj = store
        .coupons
        .get(&d.coupon)
        .map(|c| coupons::render(c, ctx.now))
        .unwrap_or_else(|| json!(d.coupon));
    let mut o = json!({
        "id": d.id,
        "object": "discount",
        "checkout_session": s.id,
        "customer": s.customer,
        "end": null,
        "invoice": null,
        "invoice_item": null,
        "promotion_code": null,
        "start": d.start,
        "subscription": null,
        "subscription_item": null
    });
    if ctx.is_clover() {
        let coupon = if e.child("source").has("coupon") {
            coupon_obj
        } else {
            json!(d.coupon)
        };
        o["source"] = json!({"coupon": coupon, "type": "coupon"});
    } else {
        o["coupon"] = coupon_obj;
    }
    if e.has("customer") {
        if let Some(c) = s.customer.as_ref().and_then(|c| store.customers.get(c)) {
            o["customer"] = customers::render(c);
        }
    }
    o
}

fn render_item(
    store: &Store,
    ctx: &Ctx,
    s: &Session,
    li: &LineItem,
    t: &stripe_checkout::totals::LineTotals,
    e: &Expand,
) -> Value {
    let price = store.prices.get(&li.price);
    let description = price
        .and_then(|p| store.products.get(&p.product))
        .map(|p| p.name.clone());
    let mut o = json!({
        "id": li.id,
        "object": "item",
        "amount_discount": t.amount_discount,
        "amount_subtotal": t.amount_subtotal,
        "amount_tax": t.amount_tax,
        "amount_total": t.amount_total,
        "currency": price.map(|p| p.currency.clone()),
        "description": description,
        "price": price.map(|p| prices::render_price(store, p, &e.child("price"))),
        "quantity": li.quantity
    });
    if e.has("discounts") {
        o["discounts"] = match &s.discount {
            Some(d) if t.amount_discount > 0 => json!([{
                "amount": t.amount_discount,
                "discount": render_discount_object(store, ctx, s, d, &e.child("discounts").child("discount"))
            }]),
            _ => json!([]),
        };
    }
    if e.has("taxes") {
        o["taxes"] = json!([]);
    }
    o
}

fn line_items_list(
    store: &Store,
    ctx: &Ctx,
    s: &Session,
    item_expand: &Expand,
    start: usize,
    end: usize,
    has_more: bool,
) -> ApiResult<Value> {
    let t = totals(store, s);
    let data: Vec<Value> = s
        .line_items
        .iter()
        .zip(t.lines.iter())
        .skip(start)
        .take(end.saturating_sub(start))
        .map(|(li, lt)| render_item(store, ctx, s, li, lt, item_expand))
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "has_more": has_more,
        "url": format!("/v1/checkout/sessions/{}/line_items", s.id)
    }))
}

fn address(v: Option<&Value>) -> Value {
    let a = v.and_then(Value::as_object);
    let f = |k: &str| a.and_then(|a| a.get(k)).cloned().unwrap_or(Value::Null);
    json!({
        "city": f("city"),
        "country": f("country"),
        "line1": f("line1"),
        "line2": f("line2"),
        "postal_code": f("postal_code"),
        "state": f("state")
    })
}

/// The `checkout.session` object, with the requested expansions.
pub fn render(store: &Store, ctx: &Ctx, s: &Session, e: &Expand) -> ApiResult<Value> {
    let setup = s.mode == "setup";
    let t = totals(store, s);
    let hosted = is_hosted(&s.ui_mode);
    let customer = match (&s.customer, e.has("customer")) {
        (Some(id), true) => store
            .customers
            .get(id)
            .map(|c| {
                if c.deleted {
                    customers::render_deleted(c)
                } else {
                    customers::render(c)
                }
            })
            .unwrap_or_else(|| json!(id)),
        (Some(id), false) => json!(id),
        (None, _) => Value::Null,
    };
    let discounts: Vec<Value> = s
        .discount
        .iter()
        .map(|d| {
            let coupon = if e.child("discounts").has("coupon") {
                store
                    .coupons
                    .get(&d.coupon)
                    .map(|c| coupons::render(c, ctx.now))
                    .unwrap_or_else(|| json!(d.coupon))
            } else {
                json!(d.coupon)
            };
            json!({"coupon": coupon, "promotion_code": null})
        })
        .collect();
    let shipping_rate = |id: &str, expanded: bool| -> Value {
        match (expanded, store.shipping_rates.get(id)) {
            (true, Some(r)) => prices::render_shipping_rate(r),
            _ => json!(id),
        }
    };
    let shipping_cost = s.shipping_options.first().map(|o| {
        json!({
            "amount_subtotal": o.shipping_amount,
            "amount_tax": 0,
            "amount_total": o.shipping_amount,
            "shipping_rate": shipping_rate(&o.shipping_rate, e.child("shipping_cost").has("shipping_rate"))
        })
    });
    let shipping_options: Vec<Value> = s
        .shipping_options
        .iter()
        .map(|o| {
            json!({
                "shipping_amount": o.shipping_amount,
                "shipping_rate": shipping_rate(&o.shipping_rate, e.child("shipping_options").has("shipping_rate"))
            })
        })
        .collect();
    let total_details = if setup {
        Value::Null
    } else {
        let mut td = json!({
            "amount_discount": t.amount_discount,
            "amount_shipping": t.amount_shipping,
            "amount_tax": t.amount_tax
        });
        if e.child("total_details").has("breakdown") {
            let de = e
                .child("total_details")
                .child("breakdown")
                .child("discounts")
                .child("discount");
            let discounts: Vec<Value> = s
                .discount
                .iter()
                .filter(|_| t.amount_discount > 0)
                .map(|d| {
                    json!({
                        "amount": t.amount_discount,
                        "discount": render_discount_object(store, ctx, s, d, &de)
                    })
                })
                .collect();
            td["breakdown"] = json!({"discounts": discounts, "taxes": []});
        }
        td
    };
    let customer_details = s.customer_details.as_ref().map(|cd| {
        json!({
            "address": cd.get("address").map(|a| address(Some(a))).unwrap_or(Value::Null),
            "business_name": cd.get("business_name").cloned().unwrap_or(Value::Null),
            "email": cd.get("email").cloned().unwrap_or(Value::Null),
            "individual_name": cd.get("individual_name").cloned().unwrap_or(Value::Null),
            "name": cd.get("name").cloned().unwrap_or(Value::Null),
            "phone": cd.get("phone").cloned().unwrap_or(Value::Null),
            "tax_exempt": cd.get("tax_exempt").cloned().unwrap_or(json!("none")),
            "tax_ids": cd.get("tax_ids").cloned().unwrap_or(json!([]))
        })
    });
    let shipping_details = s.shipping_details.as_ref().map(|sd| {
        json!({
            "address": address(sd.get("address")),
            "name": sd.get("name").cloned().unwrap_or(Value::Null)
        })
    });
    let mut o = json!({
        "id": s.id,
        "object": "checkout.session",
        "adaptive_pricing": {"enabled": false},
        "after_expiration": null,
        "allow_promotion_codes": s.allow_promotion_codes,
        "amount_subtotal": if setup { Value::Null } else { json!(t.amount_subtotal) },
        "amount_total": if setup { Value::Null } else { json!(t.amount_total) },
        "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
        "billing_address_collection": s.billing_address_collection,
        "cancel_url": s.cancel_url,
        "client_reference_id": s.client_reference_id,
        "client_secret": s.client_secret,
        "collected_information": shipping_details.as_ref().map(|sd| json!({
            "business_name": null,
            "individual_name": null,
            "shipping_details": sd
        })),
        "consent": null,
        "consent_collection": null,
        "created": s.created,
        "currency": s.currency,
        "currency_conversion": null,
        "custom_fields": [],
        "custom_text": {
            "after_submit": null,
            "shipping_address": null,
            "submit": null,
            "terms_of_service_acceptance": null
        },
        "customer": customer,
        "customer_account": null,
        "customer_creation": if s.mode == "payment" && s.customer.is_none() { json!("if_required") } else { Value::Null },
        "customer_details": customer_details,
        "customer_email": s.customer_email,
        "discounts": discounts,
        "expires_at": s.expires_at,
        "invoice": null,
        "invoice_creation": if s.mode == "payment" {
            json!({"enabled": false, "invoice_data": {
                "account_tax_ids": null, "custom_fields": null, "description": null,
                "footer": null, "issuer": null, "metadata": {}, "rendering_options": null
            }})
        } else { Value::Null },
        "livemode": false,
        "locale": s.locale,
        "metadata": s.metadata,
        "mode": s.mode,
        "origin_context": null,
        "payment_intent": s.payment_intent,
        "payment_link": null,
        "payment_method_collection": if s.mode == "payment" { Value::Null } else { json!("always") },
        "payment_method_configuration_details": null,
        "payment_method_options": {},
        "payment_method_types": s.payment_method_types,
        "payment_status": s.payment_status,
        "permissions": if hosted { Value::Null } else { s.permissions.clone() },
        "phone_number_collection": {"enabled": false},
        "recovered_from": null,
        "saved_payment_method_options": null,
        "setup_intent": null,
        "shipping_address_collection": s.shipping_allowed_countries.as_ref().map(|c| json!({"allowed_countries": c})),
        "shipping_cost": shipping_cost,
        "shipping_options": shipping_options,
        "status": s.status,
        "submit_type": s.submit_type,
        "subscription": null,
        "success_url": s.success_url,
        "total_details": total_details,
        "ui_mode": s.ui_mode,
        "url": if hosted && s.status == "open" { json!(format!("https://checkout.stripe.com/c/pay/{}", s.id)) } else { Value::Null },
        "wallet_options": null
    });
    if let Some(map) = o.as_object_mut() {
        if !hosted {
            map.insert("return_url".into(), json!(s.return_url));
            map.insert(
                "redirect_on_completion".into(),
                json!(s.redirect_on_completion.as_deref().unwrap_or("always")),
            );
        }
        if ctx.before_basil() {
            map.insert("shipping_details".into(), json!(shipping_details));
        }
        if e.has("line_items") {
            let n = s.line_items.len();
            let end = n.min(EXPANDED_LIST_LIMIT);
            let list = line_items_list(
                store,
                ctx,
                s,
                &e.child("line_items").child("data"),
                0,
                end,
                end < n,
            )?;
            map.insert("line_items".into(), list);
        }
    }
    Ok(o)
}

/// Merges what the customer "typed" (`name`, `email`, `phone`, `address`, ...) into `customer_details`.
pub fn set_customer_details(
    store: &mut Store,
    id: &str,
    body: &Map<String, Value>,
) -> ApiResult<()> {
    const KEYS: &[&str] = &[
        "name",
        "email",
        "phone",
        "address",
        "tax_exempt",
        "tax_ids",
        "business_name",
        "individual_name",
    ];
    check_control_body(body, KEYS)?;
    let s = store.sessions.get_mut(id).ok_or_else(|| no_such(id))?;
    let mut cd = s
        .customer_details
        .take()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    for (k, v) in body {
        cd.insert(k.clone(), v.clone());
    }
    s.customer_details = Some(Value::Object(cd));
    Ok(())
}

/// Sets the collected shipping details (`name`, `address`).
pub fn set_shipping_details(
    store: &mut Store,
    id: &str,
    body: &Map<String, Value>,
) -> ApiResult<()> {
    check_control_body(body, &["name", "address"])?;
    let s = store.sessions.get_mut(id).ok_or_else(|| no_such(id))?;
    s.shipping_details = Some(Value::Object(body.clone()));
    Ok(())
}

fn check_control_body(body: &Map<String, Value>, keys: &[&str]) -> ApiResult<()> {
    for (k, v) in body {
        if !keys.contains(&k.as_str()) {
            return Err(ApiError::unknown(k));
        }
        if k == "address" {
            let Some(a) = v.as_object() else {
                return Err(ApiError::param("address", "Invalid hash"));
            };
            for (ak, av) in a {
                if !["city", "country", "line1", "line2", "postal_code", "state"]
                    .contains(&ak.as_str())
                {
                    return Err(ApiError::unknown(&format!("address[{ak}]")));
                }
                if !(av.is_string() || av.is_null()) {
                    return Err(ApiError::param(format!("address[{ak}]"), "Invalid string"));
                }
            }
        } else if !(v.is_string() || v.is_null() || k == "tax_ids") {
            return Err(ApiError::param(k.as_str(), "Invalid string"));
        }
    }
    Ok(())
}

/// Completes an open session as if the customer paid (coupons count a redemption).
pub fn complete(store: &mut Store, id: &str) -> ApiResult<()> {
    let (total, coupon) = {
        let s = session(store, id)?;
        if s.status != "open" {
            return Err(not_open("completed", &s.status));
        }
        (
            totals(store, s).amount_total,
            s.discount.as_ref().map(|d| d.coupon.clone()),
        )
    };
    if let Some(c) = coupon.and_then(|c| store.coupons.get_mut(&c)) {
        c.times_redeemed += 1;
    }
    let s = store.sessions.get_mut(id).ok_or_else(|| no_such(id))?;
    s.status = "complete".into();
    s.payment_status = if s.mode == "setup" || total == 0 {
        "no_payment_required".into()
    } else {
        "paid".into()
    };
    if s.mode == "payment" && total > 0 {
        s.payment_intent = Some(new_id("pi_", 24));
    }
    Ok(())
}
