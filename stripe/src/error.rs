//! Errors of the Stripe client, Stripe's `{"error": {...}}` body parsing and the retry classification.

use serde_json::Value;
use std::fmt;

/// Stripe's `error.type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// `api_error`: a problem on Stripe's side.
    ApiError,
    /// `card_error`: the card cannot be charged.
    CardError,
    /// `idempotency_error`: an `Idempotency-Key` was reused with other parameters.
    IdempotencyError,
    /// `invalid_request_error`: the request has invalid parameters.
    InvalidRequestError,
    /// Any other type string (including an absent type, as the empty string).
    Other(String),
}

impl ErrorType {
    /// Parses Stripe's `error.type` string.
    pub fn parse(s: &str) -> Self {
        match s {
            "api_error" => ErrorType::ApiError,
            "card_error" => ErrorType::CardError,
            "idempotency_error" => ErrorType::IdempotencyError,
            "invalid_request_error" => ErrorType::InvalidRequestError,
            other => ErrorType::Other(other.to_string()),
        }
    }

    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorType::ApiError => "api_error",
            ErrorType::CardError => "card_error",
            ErrorType::IdempotencyError => "idempotency_error",
            ErrorType::InvalidRequestError => "invalid_request_error",
            ErrorType::Other(s) => s,
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Formats an optional request id as ` (request req_...)` for error messages.
struct ReqId<'a>(&'a Option<String>);

impl fmt::Display for ReqId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, " (request {id})"),
            None => Ok(()),
        }
    }
}

/// Formats an optional error code as `/code`.
struct Code<'a>(&'a Option<String>);

impl fmt::Display for Code<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(c) => write!(f, "/{c}"),
            None => Ok(()),
        }
    }
}

/// An error from the Stripe client. Messages never contain the secret key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StripeError {
    /// Stripe answered with an error status and an `{"error": {...}}` body.
    #[error(
        "Stripe API error {status} {kind}{}: {message}{}",
        Code(code),
        ReqId(request_id)
    )]
    Api {
        /// HTTP status.
        status: u16,
        /// `error.type`.
        kind: ErrorType,
        /// `error.code`, e.g. `lock_timeout`, `resource_missing`.
        code: Option<String>,
        /// `error.param`, the offending parameter.
        param: Option<String>,
        /// `error.message` (secret keys redacted).
        message: String,
        /// `Request-Id` response header.
        request_id: Option<String>,
        /// `Stripe-Should-Retry` response header, when present.
        should_retry: Option<bool>,
    },
    /// The connection failed (refused, reset, closed before or during the response).
    #[error("connection to Stripe failed: {0}")]
    Connection(String),
    /// One attempt took longer than the configured per-attempt timeout (or the connect timeout).
    #[error("request to Stripe timed out")]
    Timeout,
    /// The caller's overall deadline passed (or left no time for another attempt).
    #[error("deadline for the Stripe request exceeded")]
    DeadlineExceeded,
    /// Stripe (or a proxy in front of it) answered with a body that is not what the API promises.
    #[error(
        "invalid response from Stripe (HTTP {status}){}: {detail}",
        ReqId(request_id)
    )]
    InvalidResponse {
        /// HTTP status.
        status: u16,
        /// `Request-Id` response header.
        request_id: Option<String>,
        /// What was wrong.
        detail: String,
        /// `Stripe-Should-Retry` response header, when present.
        should_retry: Option<bool>,
    },
    /// Client-side validation failed; nothing was sent to Stripe.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl StripeError {
    /// HTTP status, when Stripe (or a proxy) answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            StripeError::Api { status, .. } | StripeError::InvalidResponse { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The `Request-Id` of the failed response, when there was one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            StripeError::Api { request_id, .. }
            | StripeError::InvalidResponse { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// Stripe's `error.code`, e.g. `lock_timeout`.
    pub fn code(&self) -> Option<&str> {
        match self {
            StripeError::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Stripe's `error.type`, for API errors.
    pub fn kind(&self) -> Option<&ErrorType> {
        match self {
            StripeError::Api { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// Whether the official libraries (stripe-node, stripe-ruby) would retry this failure,
    /// retry budget aside.
    ///
    /// Connection errors and timeouts: yes. For HTTP answers, a `Stripe-Should-Retry: true|false`
    /// header decides; otherwise 409, 429 with code `lock_timeout`, and any 5xx are retried.
    /// Client-side validation errors and deadline expiry never are.
    pub fn is_retryable(&self) -> bool {
        match self {
            StripeError::Connection(_) | StripeError::Timeout => true,
            StripeError::Api {
                status,
                code,
                should_retry,
                ..
            } => status_is_retryable(*status, code.as_deref(), *should_retry),
            StripeError::InvalidResponse {
                status,
                should_retry,
                ..
            } => status_is_retryable(*status, None, *should_retry),
            StripeError::DeadlineExceeded | StripeError::InvalidRequest(_) => false,
        }
    }
}

/// Stripe's retry rule for an HTTP error answer.
fn status_is_retryable(status: u16, code: Option<&str>, should_retry: Option<bool>) -> bool {
    if let Some(decision) = should_retry {
        return decision;
    }
    status == 409 || (status == 429 && code == Some("lock_timeout")) || status >= 500
}

/// Replaces anything that looks like a full Stripe secret or restricted key, and the given key itself,
/// with `[redacted]`.
pub(crate) fn redact(text: &str, secret_key: &str) -> String {
    let mut s = if secret_key.len() >= 8 && text.contains(secret_key) {
        text.replace(secret_key, "[redacted]")
    } else {
        text.to_string()
    };
    for prefix in ["sk_live_", "sk_test_", "rk_live_", "rk_test_"] {
        let mut from = 0;
        while let Some(pos) = s[from..].find(prefix) {
            let start = from + pos;
            let tail_start = start + prefix.len();
            let tail_len = s[tail_start..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
            // Stripe's own messages already mask keys as `sk_test_****1234`; those stop at `*`
            // after zero characters. Real keys have long alphanumeric tails.
            if tail_len >= 10 {
                s.replace_range(start..tail_start + tail_len, "[redacted]");
                from = start + "[redacted]".len();
            } else {
                from = tail_start;
            }
        }
    }
    s
}

/// Truncates `text` to at most `max` characters, replacing control characters, for error details.
pub(crate) fn snippet(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// Builds the error for a non-2xx response from its body, tolerating any body.
pub(crate) fn error_from_response(
    status: u16,
    request_id: Option<String>,
    should_retry: Option<bool>,
    body: &[u8],
    secret_key: &str,
) -> StripeError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let str_field = |v: &Value, k: &str| -> Option<String> {
        v.get(k)
            .and_then(Value::as_str)
            .map(|s| snippet(&redact(s, secret_key), 2000))
    };
    match error {
        Some(obj @ Value::Object(_)) => StripeError::Api {
            status,
            kind: ErrorType::parse(&str_field(obj, "type").unwrap_or_default()),
            code: str_field(obj, "code"),
            param: str_field(obj, "param"),
            message: str_field(obj, "message").unwrap_or_else(|| "(no message)".to_string()),
            request_id,
            should_retry,
        },
        // OAuth-style `{"error": "invalid_grant", "error_description": "..."}`.
        Some(Value::String(kind)) => StripeError::Api {
            status,
            kind: ErrorType::parse(kind),
            code: None,
            param: None,
            message: parsed
                .as_ref()
                .and_then(|v| str_field(v, "error_description"))
                .unwrap_or_else(|| "(no message)".to_string()),
            request_id,
            should_retry,
        },
        _ => {
            let text = String::from_utf8_lossy(body);
            let detail = if text.trim().is_empty() {
                "empty error body".to_string()
            } else if parsed.is_some() {
                format!(
                    "error body without an `error` object: {}",
                    snippet(&redact(&text, secret_key), 200)
                )
            } else {
                format!(
                    "error body is not JSON: {}",
                    snippet(&redact(&text, secret_key), 200)
                )
            };
            StripeError::InvalidResponse {
                status,
                request_id,
                detail,
                should_retry,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stripe_error_body() {
        let body = br#"{"error":{"type":"invalid_request_error","code":"resource_missing","param":"id","message":"No such checkout.session: 'cs_x'","doc_url":"https://stripe.com/docs/error-codes/resource-missing"}}"#;
        let e = error_from_response(404, Some("req_1".into()), None, body, "sk_test_abc");
        assert_eq!(
            e,
            StripeError::Api {
                status: 404,
                kind: ErrorType::InvalidRequestError,
                code: Some("resource_missing".into()),
                param: Some("id".into()),
                message: "No such checkout.session: 'cs_x'".into(),
                request_id: Some("req_1".into()),
                should_retry: None,
            }
        );
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.request_id(), Some("req_1"));
        assert_eq!(e.code(), Some("resource_missing"));
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "Stripe API error 404 invalid_request_error/resource_missing: No such checkout.session: 'cs_x' (request req_1)"
        );
    }

    #[test]
    fn tolerates_garbage() {
        for body in [
            &b"<html><body>502 Bad Gateway</body></html>"[..],
            b"",
            b"\xff\xfe\x00",
            b"{\"error\": 5}",
            b"[]",
            b"{\"error\":{\"type\":7,\"message\":null}}",
        ] {
            let e = error_from_response(502, None, None, body, "sk_test_abc");
            assert_eq!(e.status(), Some(502));
            assert!(e.is_retryable(), "{e}");
            let _ = e.to_string();
        }
        let e = error_from_response(502, None, None, b"<html>bad</html>", "k");
        assert!(matches!(e, StripeError::InvalidResponse { .. }));
    }

    #[test]
    fn retry_classification() {
        let api = |status: u16, code: Option<&str>, should_retry: Option<bool>| StripeError::Api {
            status,
            kind: ErrorType::ApiError,
            code: code.map(str::to_string),
            param: None,
            message: String::new(),
            request_id: None,
            should_retry,
        };
        assert!(api(500, None, None).is_retryable());
        assert!(api(503, None, None).is_retryable());
        assert!(api(409, None, None).is_retryable());
        assert!(api(429, Some("lock_timeout"), None).is_retryable());
        assert!(!api(429, Some("rate_limit"), None).is_retryable());
        assert!(!api(429, None, None).is_retryable());
        assert!(!api(400, None, None).is_retryable());
        assert!(!api(402, None, None).is_retryable());
        assert!(!api(500, None, Some(false)).is_retryable());
        assert!(api(400, None, Some(true)).is_retryable());
        assert!(StripeError::Connection("x".into()).is_retryable());
        assert!(StripeError::Timeout.is_retryable());
        assert!(!StripeError::DeadlineExceeded.is_retryable());
        assert!(!StripeError::InvalidRequest("x".into()).is_retryable());
    }

    #[test]
    fn redacts_keys() {
        let key = "sk_test_51ABCDEFghijklmnopqrstuv";
        assert_eq!(
            redact(&format!("bad key {key}!"), key),
            "bad key [redacted]!"
        );
        assert_eq!(
            redact(
                "other sk_live_0123456789abcdefXYZ and rk_test_0123456789abcdef",
                "none"
            ),
            "other [redacted] and [redacted]"
        );
        let masked = "Invalid API Key provided: sk_test_********************1234";
        assert_eq!(redact(masked, "none"), masked);
        let body = format!(
            r#"{{"error":{{"type":"invalid_request_error","message":"Invalid API Key provided: {key}"}}}}"#
        );
        let e = error_from_response(401, None, None, body.as_bytes(), key);
        assert!(!e.to_string().contains(key));
        assert!(!format!("{e:?}").contains(key));
    }
}
