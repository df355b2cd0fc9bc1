//! Step 4, policy engine: evaluation off the async runtime, with the policy's logs
//! forwarded to the host's log attributed to the policy.

use crate::response::FlowError;
use policy_engine::{Clock, Decision, Evaluation, Policy};
use std::sync::Arc;

/// Runs the policy on a blocking thread and returns its decision and evaluation.
pub async fn run(
    policy: Arc<Policy>,
    session: Arc<policy_engine::CheckoutSession>,
    request: policy_engine::PolicyRequest,
    clock: Clock,
) -> Result<(Decision, Evaluation), FlowError> {
    let p = policy.clone();
    let evaluation = tokio::task::spawn_blocking(move || p.evaluate(&session, &request, clock))
        .await
        .map_err(|e| FlowError::Internal(format!("evaluation task: {e}")))?;
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
