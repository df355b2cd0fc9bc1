//! Prometheus metrics, served at `GET /metrics`. Counters and histograms are
//! atomics behind one process-wide registry, so recording costs no lock.

use crate::registry::{ReloadReport, Snapshot};
use crate::response::FlowError;
use policy_engine::audit::AuditRecord;
use policy_engine::EvalError;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::OnceLock;
use std::time::Instant;
use stripe_checkout::{client::Response, StripeError};

/// Every metric the host exports.
pub struct Metrics {
    registry: Registry,
    /// Storefront requests by route and outcome.
    pub requests: IntCounterVec,
    /// Decisions made, by policy and decision type.
    pub decisions: IntCounterVec,
    /// Policy evaluation wall time, seconds, by policy.
    pub eval_seconds: HistogramVec,
    /// Fuel used per evaluation, by policy.
    pub eval_fuel: HistogramVec,
    /// Decisions the guard refused, by policy and rule.
    pub guard_rejections: IntCounterVec,
    /// Evaluations that failed, by policy and kind (`trap`, `timeout`, `fuel_exhausted`, ...).
    pub policy_failures: IntCounterVec,
    /// Stripe call latency (all attempts), seconds, by operation.
    pub stripe_seconds: HistogramVec,
    /// Stripe retries made, by operation.
    pub stripe_retries: IntCounterVec,
    /// Stripe calls that failed, by operation and error kind.
    pub stripe_errors: IntCounterVec,
    /// Reload passes, by outcome (`changed`, `unchanged` or `failed`).
    pub reloads: IntCounterVec,
    /// Policy load failures, by policy.
    pub load_failures: IntCounterVec,
    /// Loaded policies.
    pub loaded_policies: IntGauge,
    /// 1 for each loaded policy and version.
    pub policy_info: IntGaugeVec,
    /// Audit records dropped because the writer fell behind.
    pub audit_dropped: IntCounterVec,
    /// Evaluations by where they ran (`inline` or `blocking`).
    pub evaluations: IntCounterVec,
    /// Storefront connections accepted, by the serving thread they were handed to
    /// (counted as they are handed over).
    pub connections: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric")
}

impl Metrics {
    fn new() -> Self {
        let latency = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let fuel = prometheus::exponential_buckets(1_000.0, 4.0, 12).expect("valid buckets");
        let m = Metrics {
            registry: Registry::new(),
            requests: counter(
                "discount_requests_total",
                "Storefront requests by route and outcome.",
                &["route", "outcome"],
            ),
            decisions: counter(
                "discount_decisions_total",
                "Policy decisions by policy and decision type.",
                &["policy", "decision"],
            ),
            eval_seconds: histogram(
                "discount_policy_evaluation_seconds",
                "Policy evaluation wall time.",
                &["policy"],
                latency.clone(),
            ),
            eval_fuel: histogram(
                "discount_policy_fuel_used",
                "Fuel (instructions) used per evaluation.",
                &["policy"],
                fuel,
            ),
            guard_rejections: counter(
                "discount_guard_rejections_total",
                "Decisions the guard refused.",
                &["policy", "rule"],
            ),
            policy_failures: counter(
                "discount_policy_failures_total",
                "Evaluations that produced no decision: traps, timeouts, budgets.",
                &["policy", "kind"],
            ),
            stripe_seconds: histogram(
                "discount_stripe_request_seconds",
                "Stripe call latency, retries included.",
                &["operation"],
                latency,
            ),
            stripe_retries: counter(
                "discount_stripe_retries_total",
                "Stripe retries made.",
                &["operation"],
            ),
            stripe_errors: counter(
                "discount_stripe_errors_total",
                "Stripe calls that failed.",
                &["operation", "kind"],
            ),
            reloads: counter(
                "discount_policy_reloads_total",
                "Policy reload passes by outcome (changed, unchanged, failed).",
                &["outcome"],
            ),
            load_failures: counter(
                "discount_policy_load_failures_total",
                "Policy versions that failed to load.",
                &["policy"],
            ),
            loaded_policies: IntGauge::new("discount_policies_loaded", "Loaded policies.")
                .expect("valid metric"),
            policy_info: IntGaugeVec::new(
                Opts::new("discount_policy_info", "1 per loaded policy version and settings."),
                &["policy", "version", "settings"],
            )
            .expect("valid metric"),
            audit_dropped: counter(
                "discount_audit_dropped_total",
                "Audit records dropped because the writer fell behind.",
                &["sink"],
            ),
            evaluations: counter(
                "discount_policy_evaluations_total",
                "Policy evaluations by where they ran: inline on the runtime or on the blocking pool.",
                &["placement"],
            ),
            connections: counter(
                "discount_connections_total",
                "Storefront connections accepted, by the serving thread they were handed to.",
                &["thread"],
            ),
        };
        let r = &m.registry;
        for c in [
            &m.requests,
            &m.decisions,
            &m.guard_rejections,
            &m.policy_failures,
            &m.stripe_retries,
            &m.stripe_errors,
            &m.reloads,
            &m.load_failures,
            &m.audit_dropped,
            &m.evaluations,
            &m.connections,
        ] {
            r.register(Box::new(c.clone())).expect("unique metric");
        }
        for h in [&m.eval_seconds, &m.eval_fuel, &m.stripe_seconds] {
            r.register(Box::new(h.clone())).expect("unique metric");
        }
        r.register(Box::new(m.loaded_policies.clone()))
            .expect("unique metric");
        r.register(Box::new(m.policy_info.clone()))
            .expect("unique metric");
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Sets the loaded-policy gauges from a registry snapshot.
    pub fn observe_snapshot(&self, snapshot: &Snapshot) {
        self.loaded_policies.set(snapshot.policies.len() as i64);
        self.policy_info.reset();
        for p in snapshot.policies.values() {
            self.policy_info
                .with_label_values(&[
                    p.name.as_str(),
                    crate::registry::short(&p.version),
                    crate::registry::short(&p.settings_digest),
                ])
                .set(1);
        }
    }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Counts one failed load of a policy version.
pub fn record_load_failure(policy: &str) {
    global().load_failures.with_label_values(&[policy]).inc();
}

/// Counts one reload pass, and a policy directory it could not read.
pub fn record_reload(report: &ReloadReport) {
    let m = global();
    let outcome = if !report.failed.is_empty() {
        "failed"
    } else if report.changed() {
        "changed"
    } else {
        "unchanged"
    };
    m.reloads.with_label_values(&[outcome]).inc();
    // Policy load failures are counted as they happen: a load may end after its pass.
    for failure in report.failed.iter().filter(|f| f.policy == "*") {
        m.load_failures
            .with_label_values(&[failure.policy.as_str()])
            .inc();
    }
}

/// Counts one evaluation by where it ran.
pub fn observe_placement(placement: crate::evaluate::Placement) {
    global()
        .evaluations
        .with_label_values(&[placement.as_str()])
        .inc();
}

/// Records a finished storefront request from its audit record.
pub fn observe_request(record: &AuditRecord, error: Option<&FlowError>) {
    let m = global();
    let route = match error {
        Some(FlowError::RouteNotFound) => "unmatched",
        _ => record.route.as_str(),
    };
    m.requests
        .with_label_values(&[route, record.outcome.as_str()])
        .inc();
    let Some(policy) = record.policy.as_deref() else {
        return;
    };
    if let Some(decision) = &record.decision {
        m.decisions
            .with_label_values(&[policy, decision.kind()])
            .inc();
    }
    if record.timing.evaluate_us > 0 {
        m.eval_seconds
            .with_label_values(&[policy])
            .observe(record.timing.evaluate_us as f64 / 1e6);
    }
    if let Some(fuel) = &record.fuel {
        m.eval_fuel
            .with_label_values(&[policy])
            .observe(fuel.used as f64);
    }
    match error {
        Some(FlowError::GuardRefused { violation, .. }) => m
            .guard_rejections
            .with_label_values(&[policy, violation.rule])
            .inc(),
        Some(FlowError::PolicyFailed { error, .. }) => m
            .policy_failures
            .with_label_values(&[policy, eval_error_kind(error)])
            .inc(),
        _ => {}
    }
}

/// A stable name for an evaluation failure: `trap`, `timeout`, ...
pub fn eval_error_kind(e: &EvalError) -> &'static str {
    match e {
        EvalError::FuelExhausted(_) => "fuel_exhausted",
        EvalError::Timeout(_) => "timeout",
        EvalError::MemoryLimit(_) => "memory_limit",
        EvalError::Trap(_) => "trap",
        EvalError::OutputTooLarge(_) => "output_too_large",
        EvalError::Instantiate(_) => "instantiate",
    }
}

/// A stable name for a Stripe error, for the `kind` label.
pub fn stripe_error_kind(e: &StripeError) -> &'static str {
    match e {
        StripeError::Api { status: 429, .. } => "rate_limited",
        StripeError::Api { status, .. } if *status >= 500 => "api_5xx",
        StripeError::Api { .. } => "api_4xx",
        StripeError::Connection(_) => "connection",
        StripeError::Timeout => "timeout",
        StripeError::DeadlineExceeded => "deadline_exceeded",
        StripeError::InvalidResponse { .. } => "invalid_response",
        StripeError::InvalidRequest(_) => "invalid_request",
    }
}

/// One Stripe call being timed: started before the call, finished with its result.
/// (A guard rather than a wrapping future, which would hold the call's future twice.)
pub struct StripeCall {
    operation: &'static str,
    started: Instant,
}

impl StripeCall {
    /// Starts timing `operation`.
    pub fn start(operation: &'static str) -> Self {
        StripeCall {
            operation,
            started: Instant::now(),
        }
    }

    /// Records the call's latency, retries and error.
    pub fn finish<T>(self, result: &Result<Response<T>, StripeError>) {
        let m = global();
        let operation = self.operation;
        m.stripe_seconds
            .with_label_values(&[operation])
            .observe(self.started.elapsed().as_secs_f64());
        match result {
            Ok(r) if r.attempts > 1 => m
                .stripe_retries
                .with_label_values(&[operation])
                .inc_by(u64::from(r.attempts - 1)),
            Ok(_) => {}
            Err(e) => m
                .stripe_errors
                .with_label_values(&[operation, stripe_error_kind(e)])
                .inc(),
        }
    }
}
