//! The log of every `/v1` request, for tests (`GET /_emulator/requests`).

use serde::Serialize;
use serde_json::Value;

/// One request as the emulator saw and answered it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedRequest {
    /// Position in the log, from 1.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path, without the query string.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// `Stripe-Version` header.
    pub stripe_version: Option<String>,
    /// Parsed form parameters (query for GET/DELETE, body for POST); null if malformed.
    pub params: Value,
    /// Response status (0 when the connection was dropped).
    pub status: u16,
    /// `Request-Id` of the response.
    pub request_id: String,
    /// Whether the response was an idempotent replay.
    pub replayed: bool,
    /// Whether an injected fault decided the outcome.
    pub faulted: bool,
    /// The fault's id, if any.
    pub fault_id: Option<String>,
    /// Emulated Unix time of the request.
    pub time: i64,
}

/// The request log.
#[derive(Debug, Default)]
pub struct RequestLog {
    entries: Vec<LoggedRequest>,
    seq: u64,
}

impl RequestLog {
    /// Appends an entry, numbering it.
    pub fn push(&mut self, mut entry: LoggedRequest) {
        self.seq += 1;
        entry.seq = self.seq;
        self.entries.push(entry);
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> Vec<LoggedRequest> {
        self.entries.clone()
    }

    /// Clears the log and returns how many entries it had.
    pub fn clear(&mut self) -> usize {
        let n = self.entries.len();
        self.entries.clear();
        n
    }
}
