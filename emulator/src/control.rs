//! The emulator's own control API under `/_emulator` (not Stripe's; no auth).

use crate::api::Ctx;
use crate::checkout;
use crate::errors::{ApiError, ErrorType};
use crate::expand::Expand;
use crate::faults::FaultSpec;
use crate::Emulator;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

/// The `/_emulator` routes.
pub fn routes() -> Router<Emulator> {
    Router::new()
        .route(
            "/_emulator/faults",
            post(add_fault).get(list_faults).delete(clear_faults),
        )
        .route("/_emulator/faults/{id}", delete(remove_fault))
        .route(
            "/_emulator/requests",
            get(list_requests).delete(clear_requests),
        )
        .route(
            "/_emulator/sessions/{id}/customer_details",
            post(customer_details),
        )
        .route(
            "/_emulator/sessions/{id}/shipping_details",
            post(shipping_details),
        )
        .route("/_emulator/sessions/{id}/complete", post(complete))
        .route("/_emulator/clock", get(clock).post(advance_clock))
        .route("/_emulator/reset", post(reset))
        .route("/_emulator/health", get(health))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let e = ApiError::new(status, ErrorType::InvalidRequest, message);
    (status, Json(e.body(""))).into_response()
}

fn api_error(e: ApiError) -> Response {
    (e.status, Json(e.body(""))).into_response()
}

fn json_object(body: &Bytes) -> Result<Map<String, Value>, Box<Response>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "The body must be a JSON object.",
        ))),
        Err(e) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("Invalid JSON body: {e}"),
        ))),
    }
}

async fn add_fault(State(em): State<Emulator>, body: Bytes) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("Invalid fault: {e}")),
    };
    match em.add_fault(spec) {
        Ok(f) => (StatusCode::OK, Json(json!(f))).into_response(),
        Err(m) => error(StatusCode::BAD_REQUEST, m),
    }
}

async fn list_faults(State(em): State<Emulator>) -> Response {
    Json(json!(em.faults())).into_response()
}

async fn clear_faults(State(em): State<Emulator>) -> Response {
    Json(json!({"deleted": em.clear_faults()})).into_response()
}

async fn remove_fault(State(em): State<Emulator>, Path(id): Path<String>) -> Response {
    if em.with(|i| i.faults.remove(&id)) {
        Json(json!({"id": id, "deleted": true})).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("No such fault: '{id}'"))
    }
}

async fn list_requests(State(em): State<Emulator>) -> Response {
    Json(json!(em.requests())).into_response()
}

async fn clear_requests(State(em): State<Emulator>) -> Response {
    Json(json!({"deleted": em.with(|i| i.log.clear())})).into_response()
}

fn session_json(em: &Emulator, id: &str) -> Response {
    em.with(|i| {
        let ctx = Ctx::new(i.store.now());
        match i.store.sessions.get(id) {
            Some(s) => match checkout::render(&i.store, &ctx, s, &Expand::none()) {
                Ok(v) => Json(v).into_response(),
                Err(e) => api_error(e),
            },
            None => api_error(ApiError::no_such(
                "checkout.session",
                id,
                "id",
                StatusCode::NOT_FOUND,
            )),
        }
    })
}

async fn customer_details(em: State<Emulator>, id: Path<String>, body: Bytes) -> Response {
    set_details(em, id, body, checkout::set_customer_details)
}

async fn shipping_details(em: State<Emulator>, id: Path<String>, body: Bytes) -> Response {
    set_details(em, id, body, checkout::set_shipping_details)
}

/// Applies what the customer typed (a JSON object) to a session with `setter`.
fn set_details(
    State(em): State<Emulator>,
    Path(id): Path<String>,
    body: Bytes,
    setter: fn(&mut crate::store::Store, &str, &Map<String, Value>) -> crate::errors::ApiResult<()>,
) -> Response {
    let body = match json_object(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match em.with(|i| setter(&mut i.store, &id, &body)) {
        Ok(()) => session_json(&em, &id),
        Err(e) => api_error(e),
    }
}

async fn complete(State(em): State<Emulator>, Path(id): Path<String>) -> Response {
    let r = em.with(|i| {
        i.store.expire_due();
        checkout::complete(&mut i.store, &id)
    });
    match r {
        Ok(()) => session_json(&em, &id),
        Err(e) => api_error(e),
    }
}

async fn clock(State(em): State<Emulator>) -> Response {
    Json(json!({"now": em.now(), "offset": em.with(|i| i.store.clock_offset)})).into_response()
}

async fn advance_clock(State(em): State<Emulator>, body: Bytes) -> Response {
    let body = match json_object(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(secs) = body.get("advance_seconds").and_then(Value::as_i64) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Expected {\"advance_seconds\": <integer>}.",
        );
    };
    em.advance_clock(secs);
    clock(State(em)).await
}

async fn reset(State(em): State<Emulator>) -> Response {
    em.reset();
    Json(json!({"reset": true})).into_response()
}

async fn health() -> Response {
    Json(json!({"ok": true})).into_response()
}
