//! Step 2, Stripe retrieve: the session as Stripe has it, with what the policy reads
//! expanded, and every line item when it reads them (an expansion returns the first
//! page only).

use crate::metrics::StripeCall;
use crate::response::FlowError;
use policy_engine::Expand;
use stripe_checkout::{CheckoutSession, StripeClient};
use tokio::time::Instant;

/// Retrieves an open session with `expand` expanded; unknown and closed sessions are the
/// storefront's error.
pub async fn open_session(
    stripe: &StripeClient,
    id: &str,
    expand: &Expand,
    deadline: Instant,
) -> Result<CheckoutSession, FlowError> {
    let call = StripeCall::start("retrieve_session");
    let result = stripe
        .retrieve_checkout_session_full(id, &expand.paths(), Some(deadline))
        .await;
    call.finish(&result);
    let session = result
        .map_err(|e| FlowError::from_stripe("retrieve_session", id, e))?
        .body;
    if session.status.as_deref() != Some("open") {
        return Err(FlowError::SessionNotOpen);
    }
    Ok(session)
}
