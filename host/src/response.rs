//! The storefront's answer, in the shape stripe.js `runServerUpdate` callers expect:
//! `{"type":"object","value":{"succeeded":true,...}}` or `{"type":"error","message":"..."}`.
//! Messages are fit for a customer: no internal detail, never a key.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use policy_engine::decision::DecisionView;
use policy_engine::{EvalError, GuardViolation};
use serde::Serialize;
use stripe_checkout::{CheckoutSession, StripeError};

/// Why a storefront request failed.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The request body is not what the endpoint takes.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The body is over the size limit.
    #[error("request body too large")]
    TooLarge,
    /// The body did not arrive within `body_read_timeout_ms`, or the client broke it off.
    #[error("the request body did not arrive")]
    BodyNotReceived,
    /// No policy serves this route.
    #[error("no policy serves this route")]
    RouteNotFound,
    /// Stripe knows no such session.
    #[error("unknown checkout session")]
    UnknownSession,
    /// The session is complete or expired.
    #[error("the checkout session is no longer open")]
    SessionNotOpen,
    /// The policy declined the customer's request.
    #[error("rejected by the policy: {0}")]
    Rejected(String),
    /// The policy failed: trap, budget, deadline, oversized output.
    #[error("policy {policy}@{version} failed: {error}")]
    PolicyFailed {
        /// Policy name.
        policy: String,
        /// Policy version.
        version: String,
        /// What went wrong.
        error: EvalError,
    },
    /// The decision broke Stripe's rules or the merchant's caps: a policy bug.
    #[error("policy {policy}@{version} made a decision the guard refused: {violation}")]
    GuardRefused {
        /// Policy name.
        policy: String,
        /// Policy version.
        version: String,
        /// The rule it broke.
        violation: GuardViolation,
    },
    /// Stripe failed or refused (boxed: Stripe's error is large and this one is returned often).
    #[error("stripe: {0}")]
    Stripe(Box<StripeError>),
    /// Something in the host itself failed.
    #[error("internal: {0}")]
    Internal(String),
}

impl FlowError {
    /// A stable name for logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            FlowError::BadRequest(_) => "bad_request",
            FlowError::TooLarge => "too_large",
            FlowError::BodyNotReceived => "body_not_received",
            FlowError::RouteNotFound => "route_not_found",
            FlowError::UnknownSession => "unknown_session",
            FlowError::SessionNotOpen => "session_not_open",
            FlowError::Rejected(_) => "rejected",
            FlowError::PolicyFailed { .. } => "policy_failed",
            FlowError::GuardRefused { .. } => "guard_refused",
            FlowError::Stripe(_) => "stripe_error",
            FlowError::Internal(_) => "internal_error",
        }
    }

    /// Maps a failed Stripe call on a session, logging Stripe's `type`, `code`, `param` and
    /// `Request-Id`: 404 is an unknown session, an update refused because the session is
    /// complete or expired is [`FlowError::SessionNotOpen`], anything else stays a Stripe error.
    pub fn from_stripe(operation: &'static str, session_id: &str, error: StripeError) -> Self {
        if let StripeError::Api {
            status,
            kind,
            code,
            param,
            request_id,
            ..
        } = &error
        {
            tracing::warn!(operation, session = session_id, status, r#type = %kind, code = code.as_deref(), param = param.as_deref(), request_id = request_id.as_deref(), "Stripe refused the request");
        } else {
            tracing::warn!(operation, session = session_id, error = %error, "Stripe request failed");
        }
        match error {
            StripeError::Api { status: 404, .. } => FlowError::UnknownSession,
            StripeError::Api {
                status: 400,
                ref message,
                ..
            } if message.contains("status in [\"open\"]") => FlowError::SessionNotOpen,
            other => FlowError::from(other),
        }
    }

    /// The HTTP status and the customer-facing message.
    pub fn status_and_message(&self) -> (StatusCode, String) {
        let generic = "We could not update your discounts. Please try again.";
        match self {
            FlowError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            FlowError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request is too large.".into(),
            ),
            FlowError::BodyNotReceived => (
                StatusCode::REQUEST_TIMEOUT,
                "The request did not arrive in time.".into(),
            ),
            FlowError::RouteNotFound => (
                StatusCode::NOT_FOUND,
                "This discount is not available.".into(),
            ),
            FlowError::UnknownSession => (
                StatusCode::NOT_FOUND,
                "We could not find your checkout session. Please refresh the page.".into(),
            ),
            FlowError::SessionNotOpen => (
                StatusCode::CONFLICT,
                "This checkout session is no longer open.".into(),
            ),
            FlowError::Rejected(m) => (StatusCode::UNPROCESSABLE_ENTITY, m.clone()),
            FlowError::PolicyFailed { .. }
            | FlowError::GuardRefused { .. }
            | FlowError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, generic.into()),
            FlowError::Stripe(e) => match e.as_ref() {
                StripeError::DeadlineExceeded | StripeError::Timeout => {
                    (StatusCode::GATEWAY_TIMEOUT, generic.into())
                }
                StripeError::Api { status: 429, .. } | StripeError::Connection(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, generic.into())
                }
                _ => (StatusCode::BAD_GATEWAY, generic.into()),
            },
        }
    }
}

impl From<StripeError> for FlowError {
    fn from(e: StripeError) -> Self {
        FlowError::Stripe(Box::new(e))
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    r#type: &'static str,
    message: &'a str,
}

impl IntoResponse for FlowError {
    fn into_response(self) -> Response {
        let (status, message) = self.status_and_message();
        (
            status,
            Json(ErrorBody {
                r#type: "error",
                message: &message,
            }),
        )
            .into_response()
    }
}

/// The session's amounts after the decision.
#[derive(Debug, Clone, Serialize)]
pub struct SessionAmounts {
    /// Session id.
    pub id: String,
    /// Currency.
    pub currency: Option<String>,
    /// Before discounts.
    pub amount_subtotal: Option<i64>,
    /// `total_details.amount_discount`.
    pub amount_discount: i64,
    /// After discounts, shipping and taxes.
    pub amount_total: Option<i64>,
}

impl From<&CheckoutSession> for SessionAmounts {
    fn from(s: &CheckoutSession) -> Self {
        SessionAmounts {
            id: s.id.clone(),
            currency: s.currency.clone(),
            amount_subtotal: s.amount_subtotal,
            amount_discount: s.total_details.as_ref().map_or(0, |t| t.amount_discount),
            amount_total: s.amount_total,
        }
    }
}

/// A successful update (or a kept session).
#[derive(Debug, Clone, Serialize)]
pub struct Succeeded {
    /// Always true.
    pub succeeded: bool,
    /// What the policy decided.
    pub decision: DecisionView,
    /// The session after the decision.
    pub session: SessionAmounts,
}

/// The success envelope.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectBody {
    /// Always `object`.
    pub r#type: &'static str,
    /// The payload.
    pub value: Succeeded,
}

impl IntoResponse for Succeeded {
    fn into_response(self) -> Response {
        Json(ObjectBody {
            r#type: "object",
            value: self,
        })
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stripe_checkout::ErrorType;

    fn api(status: u16, kind: ErrorType, code: Option<&str>, message: &str) -> StripeError {
        StripeError::Api {
            status,
            kind,
            code: code.map(str::to_string),
            param: None,
            message: message.into(),
            request_id: Some("req_123".into()),
            should_retry: None,
        }
    }

    #[test]
    fn stripe_errors_map_to_storefront_statuses() {
        let invalid = ErrorType::InvalidRequestError;
        let cases = [
            (
                api(
                    404,
                    invalid.clone(),
                    Some("resource_missing"),
                    "No such checkout.session",
                ),
                404,
            ),
            (
                api(
                    400,
                    invalid.clone(),
                    None,
                    "Only Checkout Sessions with a status in [\"open\"] can be updated.",
                ),
                409,
            ),
            (api(400, invalid.clone(), None, "Invalid integer"), 502),
            (
                api(
                    400,
                    ErrorType::IdempotencyError,
                    None,
                    "Keys for idempotent requests can only be used with the same parameters",
                ),
                502,
            ),
            (
                api(
                    429,
                    invalid.clone(),
                    Some("rate_limit"),
                    "Too many requests",
                ),
                503,
            ),
            (api(429, invalid, Some("lock_timeout"), "locked"), 503),
            (api(500, ErrorType::ApiError, None, "boom"), 502),
            (StripeError::Connection("reset".into()), 503),
            (StripeError::Timeout, 504),
            (StripeError::DeadlineExceeded, 504),
        ];
        for (error, status) in cases {
            let text = error.to_string();
            let flow = FlowError::from_stripe("update_session", "cs_test_1", error);
            let (got, message) = flow.status_and_message();
            assert_eq!(got.as_u16(), status, "{text}");
            assert!(!message.contains("req_123"), "{message}");
            assert!(!message.contains("Stripe"), "{message}");
        }
    }
}
