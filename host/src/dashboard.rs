//! The operator's dashboard: one self-contained page at `/dashboard` (no CDN, no
//! network) and the admin routes it reads. The page holds no data itself; it
//! asks for the admin token and sends it as a bearer token on every fetch.

use crate::app::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

/// Largest dry-run body: a session fixture with many line items is large.
const DRY_RUN_BODY: usize = 4 << 20;

/// The page, compiled in.
const PAGE: &str = include_str!("../assets/dashboard.html");

/// The dashboard page and its admin routes (`/admin/decisions`, `/admin/dry-run`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(page))
        .route("/admin/decisions", get(decisions))
        .route(
            "/admin/dry-run",
            post(crate::dryrun::dry_run).layer(DefaultBodyLimit::max(DRY_RUN_BODY)),
        )
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
            ),
        ],
        PAGE,
    )
        .into_response()
}

/// `?limit=N` on the decisions list.
#[derive(Debug, Deserialize)]
pub struct DecisionsQuery {
    /// Most records returned, newest ones (default all kept).
    pub limit: Option<usize>,
}

/// `GET /admin/decisions`: the recent audit records, oldest first.
async fn decisions(
    State(state): State<AppState>,
    query: Result<Query<DecisionsQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(rejection) => {
            let message = format!("invalid query: {}", rejection.body_text());
            let body = Json(serde_json::json!({"type": "error", "message": message}));
            return (StatusCode::BAD_REQUEST, body).into_response();
        }
    };
    let mut recent = state.audit.recent();
    if let Some(limit) = q.limit {
        let skip = recent.len().saturating_sub(limit);
        recent.drain(..skip);
    }
    let records: Vec<&policy_engine::audit::AuditRecord> = recent.iter().map(|r| &**r).collect();
    Json(records).into_response()
}
