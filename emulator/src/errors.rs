//! Stripe-shaped API errors: `{"error":{"type","code","message","param",...}}`.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

/// Stripe's `error.type` values the emulator produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// `invalid_request_error`.
    InvalidRequest,
    /// `api_error`.
    Api,
    /// `idempotency_error`.
    Idempotency,
    /// `card_error`.
    Card,
}

impl ErrorType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request_error",
            ErrorType::Api => "api_error",
            ErrorType::Idempotency => "idempotency_error",
            ErrorType::Card => "card_error",
        }
    }
}

/// An error response of the Stripe API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `error.type`, as sent (free text for injected faults).
    pub kind: String,
    /// `error.code`.
    pub code: Option<String>,
    /// `error.message`.
    pub message: String,
    /// `error.param`.
    pub param: Option<String>,
}

impl ApiError {
    /// A generic error.
    pub fn new(status: StatusCode, kind: ErrorType, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind: kind.as_str().to_string(),
            code: None,
            message: message.into(),
            param: None,
        }
    }

    /// A 400 `invalid_request_error`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorType::InvalidRequest, message)
    }

    /// A 400 `invalid_request_error` about `param`.
    pub fn param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(message).with_param(param)
    }

    /// Sets `error.code`.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets `error.param`.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets the HTTP status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// `parameter_missing`: "Missing required param: x."
    pub fn missing(param: &str) -> Self {
        Self::param(param, format!("Missing required param: {param}."))
            .with_code("parameter_missing")
    }

    /// `parameter_unknown`: "Received unknown parameter: x"
    pub fn unknown(param: &str) -> Self {
        Self::param(param, format!("Received unknown parameter: {param}"))
            .with_code("parameter_unknown")
    }

    /// `parameters_exclusive`: "You may only specify one of these parameters: a, b."
    pub fn exclusive(param: &str, names: &[&str]) -> Self {
        Self::param(
            param,
            format!(
                "You may only specify one of these parameters: {}.",
                names.join(", ")
            ),
        )
        .with_code("parameters_exclusive")
    }

    /// `resource_missing` about a referenced object (400 in a parameter, 404 in the URL).
    pub fn no_such(object: &str, id: &str, param: &str, status: StatusCode) -> Self {
        Self::param(param, format!("No such {object}: '{id}'"))
            .with_code("resource_missing")
            .with_status(status)
    }

    /// The 404 for a URL the API does not know.
    pub fn unrecognized_url(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequest,
            format!(
                "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
            ),
        )
    }

    /// The JSON body, with `doc_url` for coded errors and `request_log_url` for the request.
    pub fn body(&self, request_id: &str) -> Value {
        let mut e = Map::new();
        if let Some(code) = &self.code {
            e.insert("code".into(), json!(code));
            e.insert(
                "doc_url".into(),
                json!(format!(
                    "https://stripe.com/docs/error-codes/{}",
                    code.replace('_', "-")
                )),
            );
        }
        e.insert("message".into(), json!(self.message));
        if let Some(param) = &self.param {
            e.insert("param".into(), json!(param));
        }
        if !request_id.is_empty() && self.status != StatusCode::UNAUTHORIZED {
            e.insert(
                "request_log_url".into(),
                json!(format!(
                    "https://dashboard.stripe.com/test/logs/{request_id}?t={}",
                    crate::store::unix_now()
                )),
            );
        }
        e.insert("type".into(), json!(self.kind));
        json!({ "error": Value::Object(e) })
    }
}

/// Result of an API operation.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let e = ApiError::missing("mode");
        let b = e.body("req_1");
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert_eq!(b["error"]["code"], "parameter_missing");
        assert_eq!(b["error"]["param"], "mode");
        assert_eq!(b["error"]["message"], "Missing required param: mode.");
        assert!(b["error"]["doc_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("parameter-missing")));
    }
}
