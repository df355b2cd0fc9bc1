//! Injected faults: the next N matching requests fail, stall or lose their connection.

use serde::{Deserialize, Serialize};

/// Longest delay a fault may ask for.
pub const MAX_DELAY_MS: u64 = 120_000;

/// What `POST /_emulator/faults` accepts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// HTTP method to match (any when absent).
    #[serde(default)]
    pub method: Option<String>,
    /// Path to match: exact, or a prefix when it ends with `*`.
    pub path: String,
    /// How many matching requests fail (default 1).
    #[serde(default)]
    pub count: Option<u32>,
    /// Status of the error response; none = the request succeeds (after `delay_ms`).
    #[serde(default)]
    pub status: Option<u16>,
    /// `error.type` (default `api_error`).
    #[serde(default)]
    pub error_type: Option<String>,
    /// `error.code`.
    #[serde(default)]
    pub error_code: Option<String>,
    /// `error.message`.
    #[serde(default)]
    pub message: Option<String>,
    /// Wait before answering (or dropping).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Value of the `Stripe-Should-Retry` header, if any.
    #[serde(default)]
    pub should_retry: Option<bool>,
    /// Close the connection without a response.
    #[serde(default)]
    pub drop_connection: Option<bool>,
}

/// A registered fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    /// `fault_N`.
    pub id: String,
    /// What it does.
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// Matching requests it will still affect.
    pub remaining: u32,
}

/// The registered faults, matched in registration order.
#[derive(Debug, Default)]
pub struct Faults {
    list: Vec<Fault>,
    next: u64,
}

impl FaultSpec {
    /// Checks the spec, returning a message for the client when it is unusable.
    pub fn validate(&self) -> Result<(), String> {
        if self.path.is_empty() {
            return Err("`path` must not be empty".into());
        }
        if self.count == Some(0) {
            return Err("`count` must be at least 1".into());
        }
        if let Some(s) = self.status {
            if !(100..=599).contains(&s) {
                return Err(format!("`status` {s} is not an HTTP status"));
            }
        }
        if self.delay_ms.unwrap_or(0) > MAX_DELAY_MS {
            return Err(format!("`delay_ms` must be at most {MAX_DELAY_MS}"));
        }
        if self.drop_connection == Some(true) && self.status.is_some() {
            return Err("`drop_connection` and `status` cannot be combined".into());
        }
        Ok(())
    }

    /// Whether it applies to this request.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        let method_ok = self
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method));
        let path_ok = match self.path.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == self.path,
        };
        method_ok && path_ok
    }
}

impl Faults {
    /// Registers a fault and returns it.
    pub fn add(&mut self, spec: FaultSpec) -> Result<Fault, String> {
        spec.validate()?;
        self.next += 1;
        let fault = Fault {
            id: format!("fault_{}", self.next),
            remaining: spec.count.unwrap_or(1),
            spec,
        };
        self.list.push(fault.clone());
        Ok(fault)
    }

    /// Consumes one use of the first fault matching the request.
    pub fn take(&mut self, method: &str, path: &str) -> Option<Fault> {
        let i = self
            .list
            .iter()
            .position(|f| f.spec.matches(method, path))?;
        let f = &mut self.list[i];
        f.remaining = f.remaining.saturating_sub(1);
        let taken = f.clone();
        if f.remaining == 0 {
            self.list.remove(i);
        }
        Some(taken)
    }

    /// The faults still armed.
    pub fn list(&self) -> Vec<Fault> {
        self.list.clone()
    }

    /// Removes one fault; whether it existed.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.list.len();
        self.list.retain(|f| f.id != id);
        before != self.list.len()
    }

    /// Removes every fault and returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.list.len();
        self.list.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_and_counting() {
        let mut f = Faults::default();
        let spec = FaultSpec {
            method: Some("post".into()),
            path: "/v1/checkout/sessions/*".into(),
            count: Some(2),
            status: Some(500),
            ..Default::default()
        };
        f.add(spec).unwrap();
        assert!(f.take("GET", "/v1/checkout/sessions/cs_1").is_none());
        assert!(f.take("POST", "/v1/customers").is_none());
        assert_eq!(
            f.take("POST", "/v1/checkout/sessions/cs_1")
                .unwrap()
                .remaining,
            1
        );
        assert!(f.take("POST", "/v1/checkout/sessions/cs_2").is_some());
        assert!(f.take("POST", "/v1/checkout/sessions/cs_2").is_none());
        assert!(f
            .add(FaultSpec {
                path: "/x".into(),
                count: Some(0),
                ..Default::default()
            })
            .is_err());
    }
}
