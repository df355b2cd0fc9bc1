//! One storefront request, in order: HTTP → Stripe retrieve → session mapping →
//! policy engine → decision guard → Stripe update → response.

use crate::app::AppState;
use crate::response::{FlowError, Succeeded};
use crate::{audit, evaluate, http, metrics, retrieve, update};
use policy_engine::audit::{Amounts, GuardVerdict};
use policy_engine::decision::DecisionView;
use policy_engine::{guard, mapping};
use std::sync::Arc;
use tokio::time::Instant;

/// Runs the policy bound to `route` for this request body, and leaves one audit
/// record and the request's metrics behind.
pub async fn run(
    state: &AppState,
    route: &str,
    body: &[u8],
    request_id: &str,
) -> Result<Succeeded, FlowError> {
    let started = Instant::now();
    let mut draft = audit::Draft::new(request_id, route);
    // Boxed: the steps' future is large (two Stripe calls), and moving it with every
    // enclosing future (handler, middleware) costs more than one allocation.
    let result = Box::pin(steps(state, route, body, &mut draft)).await;
    draft.record.timing.total_us = started.elapsed().as_micros() as u64;
    let record = draft.finish(result.as_ref().map(|_| ()));
    metrics::observe_request(&record, result.as_ref().err());
    if !matches!(result, Err(FlowError::RouteNotFound)) {
        state.audit.record(record);
    }
    result
}

async fn steps(
    state: &AppState,
    route: &str,
    body: &[u8],
    draft: &mut audit::Draft,
) -> Result<Succeeded, FlowError> {
    // A route no policy serves is a 404 whatever the body: no audit record, and no
    // metrics series of its own.
    let policy = state
        .registry
        .route(route)
        .ok_or(FlowError::RouteNotFound)?;
    let request = http::parse(body, state.config.max_body_bytes)?;
    draft.record.session_id = Some(request.checkout_session_id.clone());
    draft.record.input = Some(request.input.clone());
    tracing::Span::current().record("session", request.checkout_session_id.as_str());
    draft.record.policy = Some(policy.name.clone());
    draft.record.version = Some(policy.version.clone());
    draft.record.settings_digest = Some(policy.settings_digest.clone());
    let deadline = Instant::now() + state.config.request_deadline();
    let nonce = stripe_checkout::client::random_idempotency_key();
    // Per-session serialization; waiting for it counts against the same deadline.
    let _serialized =
        tokio::time::timeout_at(deadline, state.locks.lock(&request.checkout_session_id))
            .await
            .map_err(|_| FlowError::from(stripe_checkout::StripeError::DeadlineExceeded))?;

    let step = Instant::now();
    let expand = &policy.settings.expand;
    let retrieved = retrieve::open_session(
        &state.stripe,
        &request.checkout_session_id,
        expand,
        deadline,
    )
    .await;
    draft.record.timing.retrieve_us = step.elapsed().as_micros() as u64;
    let mut session = retrieved?;
    mapping::as_expanded(&mut session, expand);
    draft.session(&session, state.audit.mask_customer());

    let wit_session = Arc::new(mapping::checkout_session(&session));
    let wit_request = mapping::policy_request(route, &request.input);
    draft.record.input_digest = Some(policy_engine::audit::input_digest(&session, &wit_request));

    let step = Instant::now();
    let clock = policy_engine::Clock::Fixed(draft.now);
    let evaluated = evaluate::run(
        &state.inline,
        policy.clone(),
        wit_session.clone(),
        wit_request,
        clock,
    )
    .await;
    draft.record.timing.evaluate_us = step.elapsed().as_micros() as u64;
    let (decision, evaluation) = evaluated?;
    draft.fuel(&evaluation.cost);
    draft.record.decision = Some(DecisionView::from(&decision));

    let guarded = guard::check(&decision, &wit_session, &state.config.caps);
    draft.record.guard = GuardVerdict::of(&guarded);
    let guarded = guarded.map_err(|violation| {
        tracing::error!(policy = %policy.name, version = %&policy.version[..12], rule = violation.rule, detail = %violation.detail, "guard refused the decision: policy bug");
        FlowError::GuardRefused {
            policy: policy.name.clone(),
            version: policy.version.clone(),
            violation,
        }
    })?;

    let step = Instant::now();
    let updated = update::apply(&state.stripe, session, &guarded, &nonce, deadline).await;
    draft.record.timing.update_us = step.elapsed().as_micros() as u64;
    let (updated, stripe_request_id) = updated?;
    draft.record.stripe_request_id = stripe_request_id;
    draft.record.amounts_after = Some(Amounts::from(&updated));

    Ok(Succeeded {
        succeeded: true,
        decision: draft.record.decision.clone().unwrap_or(DecisionView::Keep),
        session: (&updated).into(),
    })
}
