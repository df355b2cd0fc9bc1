//! `/v1/customers`: create, retrieve, update and delete.

use crate::api::Ctx;
use crate::errors::{ApiError, ApiResult};
use crate::expand::Expand;
use crate::params::Params;
use crate::store::{new_id, Customer, Store};
use axum::http::StatusCode;
use serde_json::{json, Value};

/// Longest `email`, `name` or `description` accepted.
const MAX_STR: usize = 5000;

/// `POST /v1/customers`.
pub fn create(store: &mut Store, ctx: &Ctx, p: &Params) -> ApiResult<Value> {
    p.only(&[
        "email",
        "name",
        "phone",
        "description",
        "metadata",
        "expand",
    ])?;
    let expand = Expand::parse(&p.list_of_strings("expand")?)?;
    expand.only(&[], "")?;
    let email = p.str_or_empty("email")?.filter(|s| !s.is_empty());
    if let Some(e) = &email {
        check_email("email", e)?;
    }
    let c = Customer {
        id: new_id("cus_", 14),
        created: ctx.now,
        email,
        name: p.str_or_empty("name")?.filter(|s| !s.is_empty()),
        phone: p.str_or_empty("phone")?.filter(|s| !s.is_empty()),
        description: p.str_or_empty("description")?.filter(|s| !s.is_empty()),
        metadata: p
            .metadata("metadata")?
            .map(|m| m.into_new())
            .unwrap_or_default(),
        deleted: false,
    };
    for (k, v) in [("name", &c.name), ("description", &c.description)] {
        if let Some(v) = v {
            crate::params::check_len(k, v, MAX_STR)?;
        }
    }
    let out = render(&c);
    store.customers.insert(c.id.clone(), c);
    Ok(out)
}

/// `GET /v1/customers/{id}` (a deleted customer is returned as `deleted_customer`).
pub fn retrieve(store: &Store, id: &str, p: &Params) -> ApiResult<Value> {
    p.only(&["expand"])?;
    Expand::parse(&p.list_of_strings("expand")?)?.only(&[], "")?;
    let c = get(store, id)?;
    Ok(if c.deleted {
        render_deleted(c)
    } else {
        render(c)
    })
}

/// `POST /v1/customers/{id}`.
pub fn update(store: &mut Store, id: &str, p: &Params) -> ApiResult<Value> {
    p.only(&[
        "email",
        "name",
        "phone",
        "description",
        "metadata",
        "expand",
    ])?;
    Expand::parse(&p.list_of_strings("expand")?)?.only(&[], "")?;
    let email = p.str_or_empty("email")?;
    if let Some(e) = email.as_deref().filter(|e| !e.is_empty()) {
        check_email("email", e)?;
    }
    let name = p.str_or_empty("name")?;
    let phone = p.str_or_empty("phone")?;
    let description = p.str_or_empty("description")?;
    let metadata = p.metadata("metadata")?;
    let c = get_mut(store, id)?;
    if c.deleted {
        return Err(ApiError::invalid("You cannot update a deleted customer."));
    }
    let set = |field: &mut Option<String>, v: Option<String>| {
        if let Some(v) = v {
            *field = if v.is_empty() { None } else { Some(v) };
        }
    };
    set(&mut c.email, email);
    set(&mut c.name, name);
    set(&mut c.phone, phone);
    set(&mut c.description, description);
    if let Some(m) = metadata {
        m.apply(&mut c.metadata)?;
    }
    Ok(render(c))
}

/// `DELETE /v1/customers/{id}`.
pub fn delete(store: &mut Store, id: &str) -> ApiResult<Value> {
    let c = get_mut(store, id)?;
    if c.deleted {
        return Err(no_such(id));
    }
    c.deleted = true;
    Ok(render_deleted(c))
}

/// The customer, or 404 `resource_missing`.
fn get<'a>(store: &'a Store, id: &str) -> ApiResult<&'a Customer> {
    store.customers.get(id).ok_or_else(|| no_such(id))
}

fn get_mut<'a>(store: &'a mut Store, id: &str) -> ApiResult<&'a mut Customer> {
    store.customers.get_mut(id).ok_or_else(|| no_such(id))
}

fn no_such(id: &str) -> ApiError {
    ApiError::no_such("customer", id, "id", StatusCode::NOT_FOUND)
}

/// A rough email check, like Stripe's `Invalid email address: x`.
pub fn check_email(param: &str, email: &str) -> ApiResult<()> {
    let ok = email.len() <= 512
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !email.chars().any(char::is_whitespace)
            }
            None => false,
        };
    if ok {
        Ok(())
    } else {
        Err(
            ApiError::param(param, format!("Invalid email address: {email}"))
                .with_code("email_invalid"),
        )
    }
}

/// The `customer` object.
pub fn render(c: &Customer) -> Value {
    json!({
        "id": c.id,
        "object": "customer",
        "address": null,
        "balance": 0,
        "created": c.created,
        "currency": null,
        "default_source": null,
        "delinquent": false,
        "description": c.description,
        "discount": null,
        "email": c.email,
        "invoice_prefix": c.id.trim_start_matches("cus_").chars().take(8).collect::<String>().to_uppercase(),
        "invoice_settings": {
            "custom_fields": null,
            "default_payment_method": null,
            "footer": null,
            "rendering_options": null
        },
        "livemode": false,
        "metadata": c.metadata,
        "name": c.name,
        "next_invoice_sequence": 1,
        "phone": c.phone,
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": null
    })
}

/// The `deleted_customer` object.
pub fn render_deleted(c: &Customer) -> Value {
    json!({"id": c.id, "object": "customer", "deleted": true})
}
