//! Step 6, Stripe update: the guarded decision applied to the session.

use crate::metrics::StripeCall;
use crate::response::FlowError;
use policy_engine::GuardedDecision;
use stripe_checkout::{client::idempotency_key, CheckoutSession, StripeClient};
use tokio::time::Instant;

/// Expansions of the update's response: none, the answer carries session totals only.
const EXPAND: &[&str] = &[];

/// Applies the decision: an update for apply/clear, nothing for keep, an error for reject.
/// `nonce` is unique per storefront request, so Stripe never replays an older update.
/// Returns the session and the update's `Request-Id` (none when nothing was sent).
pub async fn apply(
    stripe: &StripeClient,
    session: CheckoutSession,
    decision: &GuardedDecision,
    nonce: &str,
    deadline: Instant,
) -> Result<(CheckoutSession, Option<String>), FlowError> {
    match decision {
        GuardedDecision::Keep => Ok((session, None)),
        GuardedDecision::Reject(message) => Err(FlowError::Rejected(message.clone())),
        GuardedDecision::Update(update) => {
            let key = idempotency_key(&session.id, update, nonce);
            let call = StripeCall::start("update_session");
            let result = stripe
                .update_checkout_session_discounts(
                    &session.id,
                    update,
                    &key,
                    EXPAND,
                    Some(deadline),
                )
                .await;
            call.finish(&result);
            let response =
                result.map_err(|e| FlowError::from_stripe("update_session", &session.id, e))?;
            tracing::info!(session = %session.id, request_id = ?response.request_id, attempts = response.attempts, "discounts updated");
            Ok((response.body, response.request_id))
        }
    }
}
