//! Step 2, Stripe retrieve: the session as Stripe has it, with what policies read
//! expanded, and every line item (an expansion returns the first page only).

use crate::response::FlowError;
use stripe_checkout::{CheckoutSession, StripeClient};
use tokio::time::Instant;

/// Expansions a policy's view of the session needs.
pub use stripe_checkout::client::SESSION_EXPAND as EXPAND;

/// Retrieves an open session with every line item; unknown and closed sessions are the
/// storefront's error.
pub async fn open_session(
    stripe: &StripeClient,
    id: &str,
    deadline: Instant,
) -> Result<CheckoutSession, FlowError> {
    let session = crate::metrics::stripe_call(
        "retrieve_session",
        stripe.retrieve_checkout_session_full(id, Some(deadline)),
    )
    .await
    .map_err(|e| FlowError::from_stripe("retrieve_session", id, e))?
    .body;
    if session.status.as_deref() != Some("open") {
        return Err(FlowError::SessionNotOpen);
    }
    Ok(session)
}
