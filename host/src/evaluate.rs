//! Step 4, policy engine: the evaluation, with the policy's logs forwarded to the
//! host's log attributed to the policy.
//!
//! Where it runs: a policy version that has been reliably quick
//! ([`Policy::is_reliably_quick`]) is evaluated on its serving thread, which saves two
//! thread hand-offs per request, and is stopped there after [`QUICK_EVALUATION`]. One
//! that ran past that is evaluated again on the blocking pool with its whole deadline
//! (an evaluation has no effect outside its instance), and its streak is over unless
//! its thread was preempted. So a policy that turns slow holds a serving thread for two
//! epoch ticks at most (about 2 ms), once. At most [`InlineSlots`] evaluations run
//! inline at once, one per serving thread ([`crate::serve`]). Everything else runs on
//! the blocking pool.
//!
//! Either way the instance's teardown, the reset of its pool slot, is off the request
//! path ([`policy_engine::Teardown`]): inline, it runs while the Stripe update is in
//! flight; on the blocking pool, after the evaluation has been handed back.

use crate::response::FlowError;
use policy_engine::engine::QUICK_EVALUATION;
use policy_engine::{Attempt, Clock, Decision, Evaluation, Policy};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Where evaluations ran: on the serving thread or on the blocking pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the serving thread.
    Inline,
    /// On tokio's blocking pool.
    Blocking,
    /// Inline, stopped at the inline budget, then run again on the blocking pool.
    InlineCut,
}

impl Placement {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Inline => "inline",
            Placement::Blocking => "blocking",
            Placement::InlineCut => "inline_cut",
        }
    }
}

/// Slots for evaluations on the serving threads themselves.
#[derive(Debug)]
pub struct InlineSlots {
    free: AtomicUsize,
}

/// One taken slot, given back on drop.
struct InlineSlot<'a>(&'a AtomicUsize);

impl Drop for InlineSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

impl InlineSlots {
    /// `n` slots (0: every evaluation goes to the blocking pool).
    pub fn new(n: usize) -> Self {
        InlineSlots {
            free: AtomicUsize::new(n),
        }
    }

    fn try_take(&self) -> Option<InlineSlot<'_>> {
        self.free
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| n.checked_sub(1))
            .ok()
            .map(|_| InlineSlot(&self.free))
    }
}

/// Evaluates `policy`: inline when it is reliably quick and a slot is free, for at
/// most [`QUICK_EVALUATION`]; otherwise, or when that was not enough, on the blocking
/// pool with its whole deadline. An engine panic is an error, as a panicked task's is.
pub async fn evaluation(
    slots: &InlineSlots,
    policy: &Arc<Policy>,
    session: Arc<policy_engine::CheckoutSession>,
    request: policy_engine::PolicyRequest,
    clock: Clock,
) -> Result<Evaluation, String> {
    if policy.is_reliably_quick() {
        if let Some(_slot) = slots.try_take() {
            let attempt = std::panic::catch_unwind(AssertUnwindSafe(|| {
                policy.try_evaluate_within(&session, &request, clock, QUICK_EVALUATION)
            }))
            .map_err(|_| "the evaluation panicked".to_string())?;
            match attempt {
                Attempt::Done(evaluation, teardown) => {
                    crate::metrics::observe_placement(Placement::Inline);
                    // A task on this serving thread. It yields once first: the tasks the
                    // Stripe update wakes (hyper's connection, which writes the request)
                    // run before it, so the update is on the wire during the reset.
                    tokio::spawn(async move {
                        tokio::task::yield_now().await;
                        drop(teardown)
                    });
                    return Ok(evaluation);
                }
                Attempt::OverBudget => crate::metrics::observe_placement(Placement::InlineCut),
                Attempt::Busy => {}
            }
        }
    }
    let p = policy.clone();
    let (sender, evaluated) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let (evaluation, teardown) = p.evaluate_deferring_teardown(&session, &request, clock);
        // The request goes on while this thread resets the instance's slot.
        let _ = sender.send(evaluation);
        drop(teardown);
    });
    let evaluation = evaluated
        .await
        .map_err(|_| "the evaluation panicked or was cancelled".to_string())?;
    crate::metrics::observe_placement(Placement::Blocking);
    Ok(evaluation)
}

/// Runs the policy and returns its decision and evaluation.
pub async fn run(
    slots: &InlineSlots,
    policy: Arc<Policy>,
    session: Arc<policy_engine::CheckoutSession>,
    request: policy_engine::PolicyRequest,
    clock: Clock,
) -> Result<(Decision, Evaluation), FlowError> {
    let evaluation = evaluation(slots, &policy, session, request, clock)
        .await
        .map_err(FlowError::Internal)?;
    for log in &evaluation.logs {
        tracing::info!(policy = %policy.name, version = %&policy.version[..12], level = log.level, fields = ?log.fields, "policy log: {}", log.message);
    }
    match &evaluation.result {
        Ok(decision) => Ok((decision.clone(), evaluation)),
        Err(error) => {
            tracing::error!(policy = %policy.name, version = %&policy.version[..12], %error, fuel_used = evaluation.cost.fuel_used, "policy evaluation failed");
            Err(FlowError::PolicyFailed {
                policy: policy.name.clone(),
                version: policy.version.clone(),
                error: error.clone(),
            })
        }
    }
}
