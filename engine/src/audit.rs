//! The decision audit record: one JSON line per evaluation, written by the host
//! and read back by the runner's `replay`. One definition for both.

use crate::bindings::PolicyRequest;
use crate::decision::DecisionView;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stripe_checkout::CheckoutSession;

/// One evaluation, as finance and the runner see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the request arrived, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The host's id of the storefront request.
    #[serde(default)]
    pub request_id: String,
    /// The storefront route (the WIT `action`).
    pub route: String,
    /// The Checkout Session id, when the request named one.
    pub session_id: Option<String>,
    /// The session's `livemode`, once retrieved.
    pub livemode: Option<bool>,
    /// Policy name, when a policy serves the route.
    pub policy: Option<String>,
    /// Policy version: content hash of its component.
    pub version: Option<String>,
    /// Content hash of the settings it ran with (a settings-only promotion changes it).
    #[serde(default)]
    pub settings_digest: Option<String>,
    /// [`input_digest`] of what the policy was given.
    pub input_digest: Option<String>,
    /// The storefront's input (the body without `checkout_session_id`), for replay.
    #[serde(default)]
    pub input: Option<serde_json::Map<String, serde_json::Value>>,
    /// The customer, masked unless configured otherwise.
    #[serde(default)]
    pub customer: Option<AuditCustomer>,
    /// The policy's decision, when it made one.
    pub decision: Option<DecisionView>,
    /// The guard's verdict.
    pub guard: GuardVerdict,
    /// `Request-Id` of the Stripe update, when one was made.
    pub stripe_request_id: Option<String>,
    /// The session's amounts as retrieved.
    pub amounts_before: Option<Amounts>,
    /// The session's amounts after the update (equal to before for keep).
    pub amounts_after: Option<Amounts>,
    /// Where the time went.
    pub timing: Timing,
    /// Fuel used by the evaluation, when it ran.
    pub fuel: Option<Fuel>,
    /// `applied`, `cleared`, `kept`, `rejected`, or the failure's outcome name.
    pub outcome: String,
    /// The failure, for the operator (never shown to the customer).
    #[serde(default)]
    pub error: Option<String>,
}

/// The guard's verdict on a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardVerdict {
    /// `passed`, `refused`, or `not_run` when there was no decision.
    pub verdict: String,
    /// The rule broken, for `refused`.
    #[serde(default)]
    pub rule: Option<String>,
    /// What was wrong, for `refused`.
    #[serde(default)]
    pub detail: Option<String>,
}

impl GuardVerdict {
    /// The guard did not run.
    pub fn not_run() -> Self {
        GuardVerdict {
            verdict: "not_run".into(),
            rule: None,
            detail: None,
        }
    }

    /// The decision passed.
    pub fn passed() -> Self {
        GuardVerdict {
            verdict: "passed".into(),
            rule: None,
            detail: None,
        }
    }

    /// The decision broke a rule.
    pub fn refused(violation: &crate::GuardViolation) -> Self {
        GuardVerdict {
            verdict: "refused".into(),
            rule: Some(violation.rule.to_string()),
            detail: Some(violation.detail.clone()),
        }
    }

    /// The verdict for a guard result.
    pub fn of<T>(result: &Result<T, crate::GuardViolation>) -> Self {
        match result {
            Ok(_) => GuardVerdict::passed(),
            Err(v) => GuardVerdict::refused(v),
        }
    }
}

/// A session's amounts, in the smallest currency unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amounts {
    /// Currency.
    pub currency: Option<String>,
    /// `amount_subtotal`.
    pub amount_subtotal: Option<i64>,
    /// `total_details.amount_discount`.
    pub amount_discount: i64,
    /// `amount_total`.
    pub amount_total: Option<i64>,
}

impl From<&CheckoutSession> for Amounts {
    fn from(s: &CheckoutSession) -> Self {
        Amounts {
            currency: s.currency.clone(),
            amount_subtotal: s.amount_subtotal,
            amount_discount: s.total_details.as_ref().map_or(0, |t| t.amount_discount),
            amount_total: s.amount_total,
        }
    }
}

/// Time spent per step, in microseconds; zero for a step that did not run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// The whole request.
    pub total_us: u64,
    /// Stripe retrieve (with line item pages).
    pub retrieve_us: u64,
    /// Policy evaluation (instantiate and call).
    pub evaluate_us: u64,
    /// Stripe update.
    pub update_us: u64,
}

/// Fuel of one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fuel {
    /// Instructions consumed.
    pub used: u64,
    /// The budget.
    pub budget: u64,
}

/// The customer as recorded: email and address masked by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCustomer {
    /// Customer id (`cus_...`), not personal data by itself.
    pub id: Option<String>,
    /// Email, masked as `a***@example.com` unless masking is off.
    pub email: Option<String>,
    /// Address: the country only unless masking is off.
    pub address: Option<String>,
}

impl AuditCustomer {
    /// The session's customer details; `mask` hides the email's local part and all
    /// of the address but its country.
    pub fn from_session(s: &CheckoutSession, mask: bool) -> Option<Self> {
        let details = s.customer_details.as_ref();
        let customer_id = s.customer.as_ref().map(|c| c.id().to_string());
        let email = details
            .and_then(|d| d.email.clone())
            .or_else(|| s.customer_email.clone())
            .or_else(|| {
                s.customer
                    .as_ref()
                    .and_then(|c| c.object())
                    .and_then(|c| c.email.clone())
            });
        let address = details.and_then(|d| d.address.as_ref());
        if customer_id.is_none() && email.is_none() && address.is_none() {
            return None;
        }
        let address = address.map(|a| {
            if mask {
                a.country.clone().unwrap_or_default()
            } else {
                [
                    &a.line1,
                    &a.line2,
                    &a.postal_code,
                    &a.city,
                    &a.state,
                    &a.country,
                ]
                .iter()
                .filter_map(|p| p.as_deref())
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
            }
        });
        Some(AuditCustomer {
            id: customer_id,
            email: email.map(|e| if mask { mask_email(&e) } else { e }),
            address,
        })
    }
}

/// `ada@example.com` → `a***@example.com`; anything without an `@` → `***`.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// Hex sha-256 of what a policy evaluates: the retrieved session (as the
/// Stripe types serialize it), the action and the storefront input JSON. The
/// runner recomputes it from a fetched fixture to check it replays the same input.
pub fn input_digest(session: &CheckoutSession, request: &PolicyRequest) -> String {
    /// Feeds serialized JSON straight into the hash, without buffering it.
    struct Hashing<'a>(&'a mut Sha256);
    impl std::io::Write for Hashing<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Sha256::new();
    serde_json::to_writer(Hashing(&mut h), session).ok();
    h.update(b"\n");
    h.update(request.action.as_bytes());
    h.update(b"\n");
    h.update(request.input_json.as_bytes());
    hex::encode(h.finalize())
}

/// RFC 3339 UTC with milliseconds for a Unix time in milliseconds.
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let ms = unix_ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut out = String::with_capacity(24);
    if y > 9999 {
        out.push_str(&y.to_string());
    } else {
        push_digits(&mut out, y as u64, 4);
    }
    for (separator, value, width) in [
        ('-', u64::from(m), 2),
        ('-', u64::from(d), 2),
        ('T', rem / 3600, 2),
        (':', (rem % 3600) / 60, 2),
        (':', rem % 60, 2),
        ('.', ms, 3),
    ] {
        out.push(separator);
        push_digits(&mut out, value, width);
    }
    out.push('Z');
    out
}

/// Appends the last `width` decimal digits of `value`, zero-padded.
fn push_digits(out: &mut String, value: u64, width: u32) {
    for place in (0..width).rev() {
        out.push(char::from(b'0' + (value / 10u64.pow(place) % 10) as u8));
    }
}

/// Howard Hinnant's days-to-civil conversion.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_time() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_709_251_199_123),
            "2024-02-29T23:59:59.123Z"
        );
        assert_eq!(
            rfc3339_millis(1_795_824_000_007),
            "2026-11-28T00:00:00.007Z"
        );
        assert_eq!(
            rfc3339_millis(253_402_300_799_999),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_millis(253_402_300_800_000),
            "10000-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn masks_email() {
        assert_eq!(mask_email("ada@example.com"), "a***@example.com");
        assert_eq!(mask_email("nope"), "***");
    }

    #[test]
    fn record_round_trips() {
        let r = AuditRecord {
            time: rfc3339_millis(1),
            request_id: "r1".into(),
            route: "/x".into(),
            session_id: Some("cs_1".into()),
            livemode: Some(false),
            policy: Some("p".into()),
            version: Some("v".into()),
            settings_digest: Some("s".into()),
            input_digest: Some("d".into()),
            input: None,
            customer: None,
            decision: Some(DecisionView::Clear),
            guard: GuardVerdict::passed(),
            stripe_request_id: Some("req_1".into()),
            amounts_before: None,
            amounts_after: None,
            timing: Timing::default(),
            fuel: Some(Fuel { used: 1, budget: 2 }),
            outcome: "cleared".into(),
            error: None,
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<AuditRecord>(&line).unwrap(), r);
    }
}
