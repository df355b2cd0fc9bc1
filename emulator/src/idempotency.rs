//! `Idempotency-Key`: replay of the first result, and refusal of reuse with other parameters.

use crate::errors::{ApiError, ErrorType};
use axum::http::StatusCode;
use serde_json::Value;
use std::collections::HashMap;

/// Longest key Stripe accepts.
pub const MAX_KEY_LEN: usize = 255;
/// How long Stripe keeps a result (24 hours).
pub const RETENTION_SECS: i64 = 24 * 3600;

/// A saved result.
#[derive(Debug, Clone)]
pub struct Saved {
    /// Method of the first request.
    pub method: String,
    /// Path of the first request.
    pub path: String,
    /// Parameters of the first request.
    pub params: Value,
    /// Status of the first response.
    pub status: StatusCode,
    /// Body of the first response.
    pub body: Value,
    /// Request id of the first request (`Original-Request`).
    pub request_id: String,
    /// When it was saved.
    pub saved_at: i64,
}

/// What to do with a keyed request.
#[derive(Debug)]
pub enum Lookup {
    /// First use of the key: execute.
    Fresh,
    /// Same request as before: replay this.
    Replay(Saved),
}

/// Saved results by key.
#[derive(Debug, Default)]
pub struct Idempotency {
    saved: HashMap<String, Saved>,
}

/// Refuses keys longer than 255 characters.
pub fn check_key(key: &str) -> Result<(), ApiError> {
    if key.chars().count() > MAX_KEY_LEN {
        return Err(ApiError::invalid(format!(
            "Invalid Idempotency-Key: keys must be at most {MAX_KEY_LEN} characters long, but the key you sent is {} characters.",
            key.chars().count()
        )));
    }
    Ok(())
}

impl Idempotency {
    /// Looks a key up for this request; reuse on another endpoint or with other parameters is an error.
    pub fn lookup(
        &mut self,
        key: &str,
        method: &str,
        path: &str,
        params: &Value,
        now: i64,
    ) -> Result<Lookup, ApiError> {
        self.saved.retain(|_, s| now - s.saved_at < RETENTION_SECS);
        let Some(s) = self.saved.get(key) else {
            return Ok(Lookup::Fresh);
        };
        if s.method != method || s.path != path {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorType::Idempotency,
                format!(
                    "Keys for idempotent requests can only be used for the same endpoint they were first used for ('{} {}' vs '{method} {path}'). Try using a key other than '{key}' if you meant to execute a different request.",
                    s.method, s.path
                ),
            ));
        }
        if s.params != *params {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorType::Idempotency,
                format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                ),
            ));
        }
        Ok(Lookup::Replay(s.clone()))
    }

    /// Saves a result. Stripe saves only requests whose endpoint began executing:
    /// successes and server errors, not parameter validation failures (4xx).
    pub fn save(&mut self, key: &str, saved: Saved) {
        if saved.status.is_success() || saved.status.is_server_error() {
            self.saved.insert(key.to_string(), saved);
        }
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.saved.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn saved(status: StatusCode) -> Saved {
        Saved {
            method: "POST".into(),
            path: "/v1/customers".into(),
            params: json!({"email":"a@b.co"}),
            status,
            body: json!({"id":"cus_1"}),
            request_id: "req_1".into(),
            saved_at: 0,
        }
    }

    #[test]
    fn replay_and_conflicts() {
        let mut i = Idempotency::default();
        i.save("k", saved(StatusCode::OK));
        let p = json!({"email":"a@b.co"});
        assert!(matches!(
            i.lookup("k", "POST", "/v1/customers", &p, 1),
            Ok(Lookup::Replay(_))
        ));
        let e = i
            .lookup("k", "POST", "/v1/customers", &json!({}), 1)
            .unwrap_err();
        assert_eq!(e.kind, "idempotency_error");
        assert!(i.lookup("k", "POST", "/v1/coupons", &p, 1).is_err());
        assert!(matches!(
            i.lookup("other", "POST", "/v1/customers", &p, 1),
            Ok(Lookup::Fresh)
        ));
        // Expired after 24 hours.
        assert!(matches!(
            i.lookup("k", "POST", "/v1/customers", &p, RETENTION_SECS),
            Ok(Lookup::Fresh)
        ));
        // Validation errors are not saved.
        i.save("bad", saved(StatusCode::BAD_REQUEST));
        assert!(matches!(
            i.lookup("bad", "POST", "/v1/customers", &p, 1),
            Ok(Lookup::Fresh)
        ));
        assert!(check_key(&"x".repeat(256)).is_err());
        assert!(check_key(&"x".repeat(255)).is_ok());
    }
}
