//! `POST /admin/dry-run`: evaluates a loaded policy on a session retrieved from
//! Stripe, or on a posted session fixture, and reports the decision, the guard's
//! verdict, the totals it would give, the policy's logs and the cost. It never
//! updates the session: the only Stripe calls are reads.
//!
//! Body: `{"policy": "<name>"}` or `{"route": "/path"}` (optional when one policy
//! is loaded), plus `{"checkout_session_id": "cs_..."}` or `{"session": {...}}`
//! (a Checkout Session as Stripe returns it, e.g. saved by `policy-runner fetch`),
//! and optionally `{"input": {...}}`, the storefront's input.

use crate::app::AppState;
use crate::response::FlowError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use policy_engine::audit::{input_digest, Amounts, GuardVerdict};
use policy_engine::decision::DecisionView;
use policy_engine::{guard, mapping, Clock, Cost, GuardedDecision, LogRecord, Policy};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use stripe_checkout::client::SESSION_EXPAND;
use stripe_checkout::totals::SessionTotals;
use stripe_checkout::{CheckoutSession, Coupon, DiscountsUpdate};
use tokio::time::Instant;

/// What a dry run is asked to do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// Policy name.
    #[serde(default)]
    pub policy: Option<String>,
    /// Route whose policy to run; also the WIT `action`.
    #[serde(default)]
    pub route: Option<String>,
    /// A session to retrieve from Stripe.
    #[serde(default)]
    pub checkout_session_id: Option<String>,
    /// A session fixture instead.
    #[serde(default)]
    pub session: Option<Value>,
    /// The storefront's input.
    #[serde(default)]
    pub input: Map<String, Value>,
}

/// Totals in the shape Stripe reports them.
#[derive(Debug, Clone, Serialize)]
pub struct TotalsView {
    /// Currency.
    pub currency: Option<String>,
    /// `amount_subtotal`.
    pub amount_subtotal: i64,
    /// `total_details.amount_discount`.
    pub amount_discount: i64,
    /// `total_details.amount_shipping`.
    pub amount_shipping: i64,
    /// `amount_total`.
    pub amount_total: i64,
    /// Per-line discount shares, in line order.
    pub line_discounts: Vec<i64>,
}

impl TotalsView {
    fn new(t: &SessionTotals, currency: Option<String>) -> Self {
        TotalsView {
            currency,
            amount_subtotal: t.amount_subtotal,
            amount_discount: t.amount_discount,
            amount_shipping: t.amount_shipping,
            amount_total: t.amount_total,
            line_discounts: t.lines.iter().map(|l| l.amount_discount).collect(),
        }
    }
}

/// What a dry run found.
#[derive(Debug, Serialize)]
pub struct DryRunResult {
    /// Policy name.
    pub policy: String,
    /// Policy version.
    pub version: String,
    /// The WIT `action` used.
    pub route: String,
    /// `stripe` (retrieved) or `fixture` (posted).
    pub source: &'static str,
    /// The session id.
    pub session_id: String,
    /// Digest of the policy's input, as in the audit log.
    pub input_digest: String,
    /// The decision, if the policy made one.
    pub decision: Option<DecisionView>,
    /// Why the policy made none.
    pub error: Option<String>,
    /// The guard's verdict.
    pub guard: GuardVerdict,
    /// The session's amounts now.
    pub amounts_before: Amounts,
    /// The totals the decision would give (none for reject, failure, or an unknown coupon).
    pub totals: Option<TotalsView>,
    /// Why there are no totals.
    pub totals_note: Option<String>,
    /// The policy's logs.
    pub logs: Vec<LogRecord>,
    /// What the evaluation cost.
    pub cost: Cost,
    /// Always false: a dry run never updates Stripe.
    pub updated: bool,
}

/// Why a dry run could not run: a status and a message for the operator.
#[derive(Debug)]
pub struct DryRunError(StatusCode, String);

impl IntoResponse for DryRunError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(serde_json::json!({"type": "error", "message": self.1})),
        )
            .into_response()
    }
}

fn bad(status: StatusCode, message: impl Into<String>) -> DryRunError {
    DryRunError(status, message.into())
}

/// The handler.
pub async fn dry_run(
    State(state): State<AppState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return bad(rejection.status(), rejection.body_text()).into_response(),
    };
    let request: DryRunRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad(
                StatusCode::BAD_REQUEST,
                format!("invalid dry-run body: {e}"),
            )
            .into_response()
        }
    };
    match run(&state, request).await {
        Ok(result) => Json(result).into_response(),
        Err(error) => error.into_response(),
    }
}

fn pick_policy(state: &AppState, r: &DryRunRequest) -> Result<(Arc<Policy>, String), DryRunError> {
    let snapshot = state.registry.snapshot();
    let policy = match (&r.policy, &r.route) {
        (Some(name), _) => snapshot.policies.get(name).cloned(),
        (None, Some(route)) => snapshot.routes.get(route).cloned(),
        (None, None) if snapshot.policies.len() == 1 => snapshot.policies.values().next().cloned(),
        (None, None) => {
            return Err(bad(
                StatusCode::BAD_REQUEST,
                "name a policy or a route: more than one policy is loaded",
            ))
        }
    };
    let policy = policy.ok_or_else(|| bad(StatusCode::NOT_FOUND, "no such loaded policy"))?;
    let route = r
        .route
        .clone()
        .or_else(|| policy.settings.routes.first().cloned())
        .unwrap_or_default();
    Ok((policy, route))
}

async fn load_session(
    state: &AppState,
    r: &DryRunRequest,
) -> Result<(CheckoutSession, &'static str), DryRunError> {
    match (&r.checkout_session_id, &r.session) {
        (Some(id), None) => {
            let deadline = Instant::now() + state.config.request_deadline();
            let call = crate::metrics::StripeCall::start("retrieve_session");
            let result = state
                .stripe
                .retrieve_checkout_session_full(id, SESSION_EXPAND, Some(deadline))
                .await;
            call.finish(&result);
            match result {
                Ok(r) => Ok((r.body, "stripe")),
                Err(stripe_checkout::StripeError::Api { status: 404, .. }) => Err(bad(
                    StatusCode::NOT_FOUND,
                    "Stripe knows no such checkout session",
                )),
                // Refused before anything was sent: the id is malformed.
                Err(stripe_checkout::StripeError::InvalidRequest(why)) => Err(bad(
                    StatusCode::BAD_REQUEST,
                    format!("checkout_session_id: {why}"),
                )),
                Err(e) => {
                    let message = format!("retrieving the session: {e}");
                    let (status, _) = FlowError::from(e).status_and_message();
                    Err(bad(status, message))
                }
            }
        }
        (None, Some(fixture)) => {
            // `policy-runner fetch` may wrap the session; accept both shapes.
            let value = fixture
                .get("session")
                .filter(|v| v.is_object())
                .unwrap_or(fixture);
            serde_json::from_value(value.clone())
                .map(|s| (s, "fixture"))
                .map_err(|e| bad(StatusCode::BAD_REQUEST, format!("session fixture: {e}")))
        }
        _ => Err(bad(
            StatusCode::BAD_REQUEST,
            "send exactly one of checkout_session_id and session",
        )),
    }
}

/// Runs a dry run.
pub async fn run(state: &AppState, r: DryRunRequest) -> Result<DryRunResult, DryRunError> {
    let (policy, route) = pick_policy(state, &r)?;
    // Totals are previewed on the whole session; the policy sees what it expands.
    let (session, source) = load_session(state, &r).await?;
    let view = mapping::expanded_copy(&session, &policy.settings.expand);
    let wit_session = Arc::new(mapping::checkout_session(&view));
    let wit_request = mapping::policy_request(&route, &r.input);
    let digest = input_digest(&view, &wit_request);
    let evaluation = crate::evaluate::evaluation(
        &state.inline,
        &policy,
        wit_session.clone(),
        wit_request,
        Clock::System,
    )
    .await
    .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let mut result = DryRunResult {
        policy: policy.name.clone(),
        version: policy.version.clone(),
        route,
        source,
        session_id: session.id.clone(),
        input_digest: digest,
        decision: None,
        error: None,
        guard: GuardVerdict::not_run(),
        amounts_before: Amounts::from(&session),
        totals: None,
        totals_note: None,
        logs: evaluation.logs,
        cost: evaluation.cost,
        updated: false,
    };
    let decision = match evaluation.result {
        Ok(d) => d,
        Err(e) => {
            result.error = Some(e.to_string());
            result.totals_note = Some("the policy made no decision".into());
            return Ok(result);
        }
    };
    result.decision = Some(DecisionView::from(&decision));
    let guarded = guard::check(&decision, &wit_session, &state.config.caps);
    result.guard = GuardVerdict::of(&guarded);
    let currency = session.currency.clone();
    let totals = match guarded {
        Err(_) => Err("the guard refused the decision".to_string()),
        Ok(GuardedDecision::Reject(_)) => Err("a reject changes nothing".to_string()),
        Ok(GuardedDecision::Keep) => Ok(SessionTotals::preview(&session, current_coupon(&session))),
        Ok(GuardedDecision::Update(DiscountsUpdate::Clear)) => {
            Ok(SessionTotals::preview::<Coupon>(&session, None))
        }
        Ok(GuardedDecision::Update(DiscountsUpdate::CouponData(c))) => {
            Ok(SessionTotals::preview(&session, Some(&c)))
        }
        Ok(GuardedDecision::Update(DiscountsUpdate::Coupon(id))) => retrieve_coupon(state, &id)
            .await
            .map(|c| SessionTotals::preview(&session, Some(&c))),
    };
    match totals {
        Ok(t) => result.totals = Some(TotalsView::new(&t, currency)),
        Err(note) => result.totals_note = Some(note),
    }
    Ok(result)
}

/// The coupon of the session's current discount, when expanded.
fn current_coupon(session: &CheckoutSession) -> Option<&Coupon> {
    session
        .discounts
        .as_ref()?
        .first()?
        .coupon
        .as_ref()?
        .object()
}

/// `GET /v1/coupons/{id}`: a read, for the preview of an existing coupon.
async fn retrieve_coupon(state: &AppState, id: &str) -> Result<Coupon, String> {
    let segment: String =
        percent_encoding_free(id).ok_or_else(|| format!("coupon id {id:?} is not retrievable"))?;
    let call = crate::metrics::StripeCall::start("retrieve_coupon");
    let result = state
        .stripe
        .get(&format!("/v1/coupons/{segment}"), &[], None)
        .await;
    call.finish(&result);
    let response = result.map_err(|e| format!("retrieving coupon {id}: {e}"))?;
    serde_json::from_value(response.body).map_err(|e| format!("coupon {id}: {e}"))
}

/// The id as a path segment, when it needs no escaping.
fn percent_encoding_free(id: &str) -> Option<String> {
    let ok = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then(|| id.to_string())
}
