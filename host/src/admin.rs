//! The admin API under `/admin`: policy status and an on-demand reload. Kept in
//! one router so it can be wrapped (authentication) as a whole.

use crate::app::AppState;
use crate::registry::Trigger;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

/// The admin routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/policies", get(policies))
        .route("/admin/reload", post(reload))
}

/// `GET /admin/policies`: per policy, the serving version, routes, last error and history.
async fn policies(State(state): State<AppState>) -> Response {
    Json(state.registry.status()).into_response()
}

/// `POST /admin/reload`: rescans the policy directory now and answers what the
/// pass did (200 even when some policy failed: see `failed`).
async fn reload(State(state): State<AppState>) -> Response {
    let registry = state.registry.clone();
    match tokio::task::spawn_blocking(move || registry.reload(Trigger::Admin)).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(
                serde_json::json!({"type": "error", "message": format!("reload pass failed: {e}")}),
            ),
        )
            .into_response(),
    }
}
