//! Per-request tracing: every request gets an id (the caller's `X-Request-Id`
//! when it is sane, else a fresh one) and a span carrying the id, the route and,
//! once known, the Checkout Session id. The id is echoed in the response.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// A request's id, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The middleware: id, span, response header.
pub async fn request_context(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map(str::to_string)
        .unwrap_or_else(stripe_checkout::client::random_idempotency_key);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        route = %request.uri().path(),
        session = tracing::field::Empty,
    );
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}
