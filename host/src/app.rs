//! The axum application: shared state and routes. Storefront routes are looked
//! up per request in the policy registry, so reloads change them without a restart.

use crate::audit::AuditLog;
use crate::auth::AdminToken;
use crate::config::HostConfig;
use crate::evaluate::InlineSlots;
use crate::locks::SessionLocks;
use crate::pipeline;
use crate::registry::Registry;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use stripe_checkout::StripeClient;

/// Everything a request handler needs, behind one `Arc`: axum clones the state
/// for every request, and one shared count is cheaper than one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Shares `shared` with every request.
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state every request handler reads.
pub struct Shared {
    /// Host configuration.
    pub config: Arc<HostConfig>,
    /// Loaded policies.
    pub registry: Arc<Registry>,
    /// The Stripe client.
    pub stripe: StripeClient,
    /// Per-session serialization.
    pub locks: Arc<SessionLocks>,
    /// The decision audit log and its recent records.
    pub audit: Arc<AuditLog>,
    /// The admin API's bearer token (none: admin API off).
    pub admin_token: AdminToken,
    /// Slots for evaluations on the runtime's own threads.
    pub inline: Arc<InlineSlots>,
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    // Bodies a little over the limit are read so the answer is a clear 413 from
    // the parser; much larger ones are cut off by the transport limit.
    let transport_limit = state.config.max_body_bytes.saturating_mul(2).max(1024);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/livez", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .merge(crate::dashboard::router())
        .merge(crate::admin::router())
        .fallback(storefront)
        .layer(DefaultBodyLimit::max(transport_limit))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.config.body_read_timeout(),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.admin_token.clone(),
            crate::auth::require_admin,
        ))
        .layer(axum::middleware::from_fn(crate::trace::request_context))
        .with_state(state)
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.registry.snapshot().policies.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "no policy loaded").into_response()
    } else {
        "ready".into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let m = crate::metrics::global();
    m.observe_snapshot(&state.registry.snapshot());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

async fn storefront(
    State(state): State<AppState>,
    request_id: Option<axum::Extension<crate::trace::RequestId>>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let route = uri.path().to_string();
    let served = state.registry.route(&route).is_some();
    if method != Method::POST {
        return if served {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                [(axum::http::header::ALLOW, "POST")],
                Json(serde_json::json!({"type": "error", "message": "Use POST."})),
            )
                .into_response()
        } else {
            crate::response::FlowError::RouteNotFound.into_response()
        };
    }
    let body = match body {
        Ok(body) => body,
        Err(_) if !served => return crate::response::FlowError::RouteNotFound.into_response(),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return crate::response::FlowError::TooLarge.into_response()
        }
        Err(_) => return crate::response::FlowError::BodyNotReceived.into_response(),
    };
    let started = std::time::Instant::now();
    let request_id = request_id.map(|r| r.0 .0).unwrap_or_default();
    let result = pipeline::run(&state, &route, &body, &request_id).await;
    let elapsed_us = started.elapsed().as_micros() as u64;
    match result {
        Ok(ok) => {
            tracing::info!(%route, decision = ok.decision.kind(), session = %ok.session.id, elapsed_us, "storefront request served");
            ok.into_response()
        }
        Err(error) => {
            tracing::warn!(%route, outcome = error.outcome(), %error, elapsed_us, "storefront request failed");
            error.into_response()
        }
    }
}
