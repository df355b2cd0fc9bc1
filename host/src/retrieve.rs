//! Step 2, Stripe retrieve: the session as Stripe has it, with what policies read
//! expanded, and every line item (an expansion returns the first page only).

use crate::response::FlowError;
use stripe_checkout::{CheckoutSession, LineItem, List, StripeClient, StripeError};
use tokio::time::Instant;

/// Expansions a policy's view of the session needs.
pub const EXPAND: &[&str] = &["line_items", "customer", "discounts.coupon"];

/// Most line items the host reads for one session.
const MAX_LINE_ITEMS: usize = 1_000;

/// Retrieves an open session; unknown and closed sessions are the storefront's error.
pub async fn open_session(
    stripe: &StripeClient,
    id: &str,
    deadline: Instant,
) -> Result<CheckoutSession, FlowError> {
    let mut session = stripe
        .retrieve_checkout_session(id, EXPAND, Some(deadline))
        .await
        .map_err(not_found_as_unknown)?
        .body;
    if session.status.as_deref() != Some("open") {
        return Err(FlowError::SessionNotOpen);
    }
    if let Some(items) = session.line_items.as_mut() {
        if items.has_more {
            *items = all_line_items(stripe, id, deadline).await?;
        }
    }
    Ok(session)
}

async fn all_line_items(
    stripe: &StripeClient,
    id: &str,
    deadline: Instant,
) -> Result<List<LineItem>, FlowError> {
    let mut all = stripe
        .list_line_items(id, Some(100), Some(deadline))
        .await
        .map_err(not_found_as_unknown)?
        .body;
    while all.has_more && all.data.len() < MAX_LINE_ITEMS {
        let Some(last) = all.data.last().map(|l| l.id.clone()) else {
            break;
        };
        let page = stripe
            .get(
                &format!("/v1/checkout/sessions/{id}/line_items"),
                &[
                    ("limit".into(), "100".into()),
                    ("starting_after".into(), last),
                ],
                Some(deadline),
            )
            .await
            .map_err(not_found_as_unknown)?
            .body;
        let page: List<LineItem> = serde_json::from_value(page)
            .map_err(|e| FlowError::Internal(format!("line items page: {e}")))?;
        all.has_more = page.has_more;
        all.data.extend(page.data);
    }
    Ok(all)
}

fn not_found_as_unknown(e: StripeError) -> FlowError {
    match e {
        StripeError::Api { status: 404, .. } => FlowError::UnknownSession,
        other => FlowError::Stripe(other),
    }
}
