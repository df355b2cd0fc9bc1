//! One storefront request, in order: HTTP → Stripe retrieve → session mapping →
//! policy engine → decision guard → Stripe update → response.

use crate::app::AppState;
use crate::response::{FlowError, Succeeded};
use crate::{evaluate, http, retrieve, update};
use policy_engine::decision::DecisionView;
use policy_engine::{guard, mapping};
use std::sync::Arc;
use tokio::time::Instant;

/// Runs the policy bound to `route` for this request body.
pub async fn run(state: &AppState, route: &str, body: &[u8]) -> Result<Succeeded, FlowError> {
    let request = http::parse(body, state.config.max_body_bytes)?;
    let policy = state
        .registry
        .route(route)
        .ok_or(FlowError::RouteNotFound)?;
    let deadline = Instant::now() + state.config.request_deadline();
    let nonce = stripe_checkout::client::random_idempotency_key();
    let _serialized = state.locks.lock(&request.checkout_session_id).await;

    let session =
        retrieve::open_session(&state.stripe, &request.checkout_session_id, deadline).await?;

    let wit_session = Arc::new(mapping::checkout_session(&session));
    let wit_request = mapping::policy_request(route, &request.input);

    let (decision, _evaluation) =
        evaluate::run(policy.clone(), wit_session.clone(), wit_request).await?;

    let guarded = guard::check(&decision, &wit_session, &state.config.caps).map_err(|violation| {
        tracing::error!(policy = %policy.name, version = %&policy.version[..12], rule = violation.rule, detail = %violation.detail, "guard refused the decision: policy bug");
        FlowError::GuardRefused {
            policy: policy.name.clone(),
            version: policy.version.clone(),
            violation,
        }
    })?;

    let updated = update::apply(&state.stripe, session, &guarded, &nonce, deadline).await?;

    Ok(Succeeded {
        succeeded: true,
        decision: DecisionView::from(&decision),
        session: (&updated).into(),
    })
}
