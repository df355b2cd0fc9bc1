//! One evaluation as the runner reports it: the decision, the guard's verdict, the
//! session's totals after the discount, the logs and the cost against the limits.
//!
//! Everything is computed by the host's own code: the engine evaluates, the guard
//! checks, `stripe_checkout::totals` previews the totals.

use std::fmt::Write as _;

use policy_engine::audit::GuardVerdict;
use policy_engine::decision::DecisionView;
use policy_engine::{guard, mapping, Caps, Clock, Cost, EvalError, Limits, LogRecord, Policy};
use serde::Serialize;
use serde_json::{Map, Value};
use stripe_checkout::totals::SessionTotals;
use stripe_checkout::{CheckoutSession, DiscountsUpdate};

use crate::clock::format_time;

/// Share of a limit from which a value is flagged as near it.
pub const NEAR_LIMIT: f64 = 0.8;

/// What one evaluation runs on.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The Checkout Session, as Stripe returned it.
    pub session: CheckoutSession,
    /// The route called (the WIT `action`), such as `/apply-cart-discount`.
    pub action: String,
    /// The storefront's JSON body without `checkout_session_id`.
    pub input: Map<String, Value>,
    /// The fixed "now", Unix seconds.
    pub now: i64,
    /// The merchant's caps the guard enforces.
    pub caps: Caps,
}

/// The policy evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    /// Its name.
    pub name: String,
    /// Content hash of the component.
    pub version: String,
    /// Content hash of the settings it ran with, overrides included.
    pub settings_digest: String,
    /// The limits it ran under.
    pub limits: Limits,
}

/// Why the policy gave no decision.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    /// `fuel_exhausted`, `timeout`, `memory_limit`, `trap`, `output_too_large` or `instantiate`.
    pub kind: String,
    /// The engine's message.
    pub message: String,
}

impl From<&EvalError> for ErrorView {
    fn from(e: &EvalError) -> Self {
        let kind = serde_json::to_value(e)
            .ok()
            .and_then(|v| v.get("kind").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| "error".to_string());
        ErrorView {
            kind,
            message: e.to_string(),
        }
    }
}

/// A session's amounts, in the smallest currency unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Amounts {
    /// `amount_subtotal`.
    pub subtotal: i64,
    /// `total_details.amount_discount`.
    pub discount: i64,
    /// `total_details.amount_shipping`.
    #[serde(default)]
    pub shipping: i64,
    /// `amount_total`.
    pub total: i64,
}

impl From<&SessionTotals> for Amounts {
    fn from(t: &SessionTotals) -> Self {
        Amounts {
            subtotal: t.amount_subtotal,
            discount: t.amount_discount,
            shipping: t.amount_shipping,
            total: t.amount_total,
        }
    }
}

/// The session's totals before and after the decision.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// The session's currency.
    pub currency: Option<String>,
    /// As retrieved.
    pub before: Amounts,
    /// After the decision's Stripe update; `None` when it cannot be known.
    pub after: Option<Amounts>,
    /// How `after` was obtained, or why it is unknown.
    pub note: String,
}

/// The cost of the evaluation, with the limits it came near or went over.
#[derive(Debug, Clone, Serialize)]
pub struct CostView {
    /// The engine's measurements.
    #[serde(flatten)]
    pub cost: Cost,
    /// `fuel`, `memory`, `wall_time`, `logs`: at or over the limit.
    pub over_limit: Vec<&'static str>,
    /// Past [`NEAR_LIMIT`] of a limit but not over it.
    pub near_limit: Vec<&'static str>,
}

/// Everything the runner reports about one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The policy.
    pub policy: PolicyInfo,
    /// The session's id.
    pub session_id: String,
    /// The route called.
    pub action: String,
    /// The storefront input.
    pub input: Map<String, Value>,
    /// "now", Unix seconds.
    pub now: i64,
    /// "now", RFC 3339.
    pub now_rfc3339: String,
    /// A decision was made and the guard passed it (a `reject` counts as passed).
    pub ok: bool,
    /// The decision, if the policy made one.
    pub decision: Option<DecisionView>,
    /// Why there is no decision.
    pub error: Option<ErrorView>,
    /// The guard's verdict.
    pub guard: GuardVerdict,
    /// The Stripe call the host would make: form parameters of the session update.
    pub stripe_update: Option<Vec<String>>,
    /// Totals before and after.
    pub totals: Totals,
    /// What the policy logged.
    pub logs: Vec<LogRecord>,
    /// What it cost.
    pub cost: CostView,
}

/// Evaluates `policy` on the scenario, checks the decision with the guard and previews totals.
pub fn evaluate(policy: &Policy, scenario: &Scenario) -> Outcome {
    let view = mapping::expanded_copy(&scenario.session, &policy.settings.expand);
    let wit_session = mapping::checkout_session(&view);
    let wit_request = mapping::policy_request(&scenario.action, &scenario.input);
    let eval = policy.evaluate(&wit_session, &wit_request, Clock::Fixed(scenario.now));
    let before = amounts_before(&scenario.session);
    let (decision, error, guard_verdict, update, after, note) = match &eval.result {
        Err(e) => (
            None,
            Some(ErrorView::from(e)),
            GuardVerdict::not_run(),
            None,
            None,
            "the policy gave no decision".to_string(),
        ),
        Ok(decision) => {
            let checked = guard::check(decision, &wit_session, &scenario.caps);
            let verdict = GuardVerdict::of(&checked);
            let (update, after, note) = match &checked {
                Err(_) => (
                    None,
                    None,
                    "the guard refused the decision: the host would not call Stripe".to_string(),
                ),
                Ok(guard::GuardedDecision::Keep) => (
                    None,
                    Some(before),
                    "keep: unchanged, no Stripe call".to_string(),
                ),
                Ok(guard::GuardedDecision::Reject(_)) => (
                    None,
                    Some(before),
                    "reject: unchanged, no Stripe call".to_string(),
                ),
                Ok(guard::GuardedDecision::Update(u)) => {
                    let (after, note) = preview(&scenario.session, u);
                    (Some(update_params(u)), after, note)
                }
            };
            (
                Some(DecisionView::from(decision)),
                None,
                verdict,
                update,
                after,
                note,
            )
        }
    };
    let ok = decision.is_some() && guard_verdict.verdict == "passed";
    Outcome {
        policy: PolicyInfo {
            name: policy.name.clone(),
            version: policy.version.clone(),
            settings_digest: policy.settings_digest.clone(),
            limits: policy.limits.clone(),
        },
        session_id: scenario.session.id.clone(),
        action: scenario.action.clone(),
        input: scenario.input.clone(),
        now: scenario.now,
        now_rfc3339: format_time(scenario.now),
        ok,
        decision,
        error,
        guard: guard_verdict,
        stripe_update: update,
        totals: Totals {
            currency: scenario.session.currency.clone(),
            before,
            after,
            note,
        },
        logs: eval.logs,
        cost: cost_view(eval.cost, eval.result.as_ref().err()),
    }
}

/// The session's amounts as Stripe reported them.
pub fn amounts_before(s: &CheckoutSession) -> Amounts {
    let details = s.total_details.as_ref();
    let computed = SessionTotals::preview::<stripe_checkout::totals::Terms>(s, None);
    let subtotal = s.amount_subtotal.unwrap_or(computed.amount_subtotal);
    let discount = details.map_or(0, |t| t.amount_discount);
    let shipping = details
        .and_then(|t| t.amount_shipping)
        .unwrap_or(computed.amount_shipping);
    Amounts {
        subtotal,
        discount,
        shipping,
        total: s.amount_total.unwrap_or(subtotal - discount + shipping),
    }
}

/// Totals after a Stripe update, by `stripe_checkout::totals` (what Stripe and the emulator compute).
fn preview(session: &CheckoutSession, update: &DiscountsUpdate) -> (Option<Amounts>, String) {
    match update {
        DiscountsUpdate::Clear => (
            Some(Amounts::from(&SessionTotals::preview::<
                stripe_checkout::CouponData,
            >(session, None))),
            "discounts cleared".to_string(),
        ),
        DiscountsUpdate::CouponData(data) => (
            Some(Amounts::from(&SessionTotals::preview(session, Some(data)))),
            "coupon_data applied".to_string(),
        ),
        DiscountsUpdate::Coupon(id) => {
            let known = session
                .discounts
                .iter()
                .flatten()
                .filter_map(|d| d.coupon.as_ref()?.object())
                .find(|c| &c.id == id);
            match known {
                Some(coupon) => (
                    Some(Amounts::from(&SessionTotals::preview(session, Some(coupon)))),
                    format!("coupon {id} applied (terms from the fixture's discounts)"),
                ),
                None => (
                    None,
                    format!(
                        "coupon {id} applied; its terms are not in the fixture, so the totals are unknown"
                    ),
                ),
            }
        }
    }
}

/// `discounts[0][coupon_data][amount_off]=1500`, one string per form parameter.
fn update_params(update: &DiscountsUpdate) -> Vec<String> {
    stripe_checkout::form::encode_discounts_update(update)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

fn share(used: f64, limit: f64) -> f64 {
    if limit <= 0.0 {
        0.0
    } else {
        used / limit
    }
}

/// Flags the limits the evaluation reached or came near.
fn cost_view(cost: Cost, error: Option<&EvalError>) -> CostView {
    let mut over = Vec::new();
    let mut near = Vec::new();
    let checks: [(&'static str, f64, bool); 3] = [
        (
            "fuel",
            share(cost.fuel_used as f64, cost.fuel_budget as f64),
            matches!(error, Some(EvalError::FuelExhausted(_))),
        ),
        (
            "memory",
            share(cost.peak_memory_bytes as f64, cost.memory_cap_bytes as f64),
            matches!(error, Some(EvalError::MemoryLimit(_))),
        ),
        (
            "wall_time",
            share(cost.wall_time_us as f64, cost.timeout_ms as f64 * 1000.0),
            matches!(error, Some(EvalError::Timeout(_))),
        ),
    ];
    for (name, ratio, failed) in checks {
        if failed || ratio >= 1.0 {
            over.push(name);
        } else if ratio >= NEAR_LIMIT {
            near.push(name);
        }
    }
    if cost.logs_dropped > 0 {
        over.push("logs");
    }
    CostView {
        cost,
        over_limit: over,
        near_limit: near,
    }
}

/// A short form of a decision: `apply {"coupon_data":{...}}`, `clear`, `reject "msg"`.
pub fn decision_line(d: &DecisionView) -> String {
    match d {
        DecisionView::Apply { .. } => {
            let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.remove("type");
            }
            format!("apply {v}")
        }
        DecisionView::Reject { message } => format!("reject {message:?}"),
        other => other.kind().to_string(),
    }
}

fn flag(name: &str, cost: &CostView) -> &'static str {
    if cost.over_limit.contains(&name) {
        "  << OVER LIMIT"
    } else if cost.near_limit.contains(&name) {
        "  < near limit"
    } else {
        ""
    }
}

fn pct(used: f64, limit: f64) -> String {
    format!("{:.1}%", share(used, limit) * 100.0)
}

/// A totals row: its label and how to read it.
type AmountRow = (&'static str, fn(&Amounts) -> i64);

/// The human-readable report.
pub fn render_text(o: &Outcome) -> String {
    let mut s = String::new();
    let short = o.policy.version.get(..12).unwrap_or(&o.policy.version);
    let _ = writeln!(s, "policy    {} ({short})", o.policy.name);
    let _ = writeln!(
        s,
        "session   {}  currency {}",
        o.session_id,
        o.totals.currency.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        s,
        "request   {} {}",
        o.action,
        Value::Object(o.input.clone())
    );
    let _ = writeln!(s, "now       {} ({})", o.now_rfc3339, o.now);
    let _ = writeln!(s);
    match (&o.decision, &o.error) {
        (Some(d), _) => {
            let _ = writeln!(s, "decision  {}", decision_line(d));
        }
        (None, Some(e)) => {
            let _ = writeln!(
                s,
                "decision  NONE: policy failed ({}): {}",
                e.kind, e.message
            );
        }
        (None, None) => {
            let _ = writeln!(s, "decision  NONE");
        }
    }
    match o.guard.verdict.as_str() {
        "refused" => {
            let _ = writeln!(
                s,
                "guard     REFUSED {}: {}",
                o.guard.rule.as_deref().unwrap_or("?"),
                o.guard.detail.as_deref().unwrap_or("")
            );
        }
        v => {
            let _ = writeln!(s, "guard     {v}");
        }
    }
    if let Some(update) = &o.stripe_update {
        let params = if update.is_empty() {
            "discounts=".to_string()
        } else {
            update.join(" ")
        };
        let _ = writeln!(
            s,
            "stripe    POST /v1/checkout/sessions/{}  {params}",
            o.session_id
        );
    }
    let _ = writeln!(s);
    let t = &o.totals;
    let _ = writeln!(
        s,
        "totals    {:>12} {:>12}   ({})",
        "before", "after", t.note
    );
    let rows: [AmountRow; 4] = [
        ("subtotal", |a| a.subtotal),
        ("discount", |a| a.discount),
        ("shipping", |a| a.shipping),
        ("total", |a| a.total),
    ];
    for (label, get) in rows {
        let after = t
            .after
            .as_ref()
            .map_or_else(|| "?".to_string(), |a| get(a).to_string());
        let _ = writeln!(s, "  {label:<8}{:>12} {after:>12}", get(&t.before));
    }
    let _ = writeln!(s);
    if o.logs.is_empty() {
        let _ = writeln!(s, "logs      (none)");
    } else {
        let _ = writeln!(s, "logs");
        for l in &o.logs {
            let fields: Vec<String> = l.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(s, "  {:<5} {}  {}", l.level, l.message, fields.join(" "));
        }
    }
    let c = &o.cost;
    let _ = writeln!(s);
    let _ = writeln!(s, "cost");
    let _ = writeln!(
        s,
        "  fuel       {:>12} / {:<12} {:>7}{}",
        c.cost.fuel_used,
        c.cost.fuel_budget,
        pct(c.cost.fuel_used as f64, c.cost.fuel_budget as f64),
        flag("fuel", c)
    );
    let _ = writeln!(
        s,
        "  memory     {:>12} / {:<12} {:>7}{}  (bytes, peak linear memory)",
        c.cost.peak_memory_bytes,
        c.cost.memory_cap_bytes,
        pct(
            c.cost.peak_memory_bytes as f64,
            c.cost.memory_cap_bytes as f64
        ),
        flag("memory", c)
    );
    let _ = writeln!(
        s,
        "  wall time  {:>12} / {:<12} {:>7}{}  (µs, instantiate + call)",
        c.cost.wall_time_us,
        c.cost.timeout_ms * 1000,
        pct(
            c.cost.wall_time_us as f64,
            c.cost.timeout_ms as f64 * 1000.0
        ),
        flag("wall_time", c)
    );
    if c.cost.logs_dropped > 0 {
        let _ = writeln!(
            s,
            "  logs       {} records dropped past the log limits{}",
            c.cost.logs_dropped,
            flag("logs", c)
        );
    }
    let _ = writeln!(s);
    let verdict = if o.ok {
        "OK"
    } else if o.error.is_some() {
        "FAILED: the policy gave no decision"
    } else {
        "FAILED: the guard refused the decision"
    };
    let _ = writeln!(s, "result    {verdict}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_limits() {
        let cost = Cost {
            fuel_used: 1000,
            fuel_budget: 1000,
            peak_memory_bytes: 900,
            memory_cap_bytes: 1000,
            wall_time_us: 10,
            timeout_ms: 50,
            logs_dropped: 2,
        };
        let v = cost_view(cost, Some(&EvalError::FuelExhausted(1000)));
        assert_eq!(v.over_limit, vec!["fuel", "logs"]);
        assert_eq!(v.near_limit, vec!["memory"]);
    }

    #[test]
    fn decision_lines() {
        assert_eq!(decision_line(&DecisionView::Clear), "clear");
        assert_eq!(
            decision_line(&DecisionView::Reject {
                message: "no".into()
            }),
            "reject \"no\""
        );
        let d = DecisionView::Apply {
            coupon_data: None,
            coupon: Some("co_1".into()),
        };
        assert_eq!(decision_line(&d), "apply {\"coupon\":\"co_1\"}");
    }
}
