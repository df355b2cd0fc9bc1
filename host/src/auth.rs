//! The admin API's bearer token, as a middleware over the whole router: every
//! `/admin/*` route needs `Authorization: Bearer <token>`, and with no token
//! configured the admin API and the dashboard are off (404).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// The admin token; `None` turns the admin API off.
#[derive(Clone, Default)]
pub struct AdminToken(Option<Arc<str>>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.0.is_some() { "set" } else { "unset" };
        f.debug_tuple("AdminToken").field(&state).finish()
    }
}

impl AdminToken {
    /// A token, without the whitespace around it (`kubectl create secret --from-file`
    /// keeps a file's last newline); an empty or missing one turns the admin API off.
    pub fn new(token: Option<String>) -> Self {
        let token = token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        AdminToken(token.map(Arc::from))
    }

    /// Whether the admin API is on.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Whether the request headers carry this token.
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.0 else {
            return false;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes()))
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a path is part of the admin API.
pub fn is_admin_path(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

/// Whether a path is the dashboard page (public shell; its data needs the token).
pub fn is_dashboard_path(path: &str) -> bool {
    path == "/dashboard" || path.starts_with("/dashboard/")
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"type": "error", "message": message})),
    )
        .into_response()
}

/// The middleware: guards `/admin/*` and hides the dashboard when the admin API is off.
pub async fn require_admin(
    State(token): State<AdminToken>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let admin = is_admin_path(path);
    if !admin && !is_dashboard_path(path) {
        return next.run(request).await;
    }
    if !token.enabled() {
        return error(
            StatusCode::NOT_FOUND,
            "The admin API is off: set DISCOUNT_HOST_ADMIN_TOKEN to turn it on.",
        );
    }
    if admin && !token.accepts(request.headers()) {
        tracing::warn!(path, "admin request without a valid bearer token");
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "A valid bearer token is required.",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"discount-host admin\""),
        );
        return response;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_token() {
        let t = AdminToken::new(Some("s3cret".into()));
        let mut h = HeaderMap::new();
        assert!(!t.accepts(&h));
        h.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!t.accepts(&h));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(t.accepts(&h));
        h.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!t.accepts(&h));
        assert!(!AdminToken::new(Some(" ".into())).enabled());
        let from_file = AdminToken::new(Some("s3cret\n".into()));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(from_file.accepts(&h));
        assert!(!AdminToken::new(None).accepts(&h));
        assert!(format!("{t:?}").contains("set") && !format!("{t:?}").contains("s3cret"));
    }
}
