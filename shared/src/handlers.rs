//! Lambda event handlers that are not HTTP: the expiry function's scheduled jobs.

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;

use crate::ports::Job;
use crate::service::{CANONICAL_KEYS_JOB, ErrorKind, JobOutcome, RECONCILE_JOB, Ticketbound};

/// An error the runtime reports, so Lambda's asynchronous retries (and then the on-failure destination) apply.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RetryableJobError(pub String);

impl From<RetryableJobError> for Diagnostic {
    fn from(e: RetryableJobError) -> Self {
        Diagnostic {
            error_type: "RetryableJobError".into(),
            error_message: e.0,
        }
    }
}

/// Handles one EventBridge Scheduler invocation. The event is exactly the schedule's `Input`
/// (`{"job": "expire"|"provision"|"deprovision", "grant_id": "...", ...}`, or the recurring schedule's
/// `{"job": "reconcile"}`).
///
/// Returns `Err` only when trying again can help (the store or scheduler was unreachable, or the grant kept
/// changing); a malformed event or a grant that is gone is logged and acknowledged, since a retry cannot help.
pub async fn handle_scheduled_job(
    app: &Ticketbound,
    event: LambdaEvent<Value>,
) -> Result<Value, RetryableJobError> {
    // Not a grant job, and never created through the Scheduler port: recognised first.
    if event.payload.get("job").and_then(Value::as_str) == Some(RECONCILE_JOB) {
        return handle_reconcile(app, &event).await;
    }
    // Run once by hand after an upgrade (docs/operator-guide.md): bound keys stored in another spelling.
    if event.payload.get("job").and_then(Value::as_str) == Some(CANONICAL_KEYS_JOB) {
        return match app.canonicalise_ticket_keys().await {
            Ok(moved) => Ok(serde_json::json!({"outcome": "done", "moved": moved})),
            Err(e) => {
                tracing::warn!(error = %e, "moving bound ticket keys failed; Lambda will retry");
                Err(RetryableJobError(e.to_string()))
            }
        };
    }
    let job: Job = match serde_json::from_value(event.payload.clone()) {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(error = %e, request_id = %event.context.request_id, "scheduled event is not a Ticketbound job; ignored");
            return Ok(
                serde_json::json!({"outcome": "ignored", "reason": "not a Ticketbound job"}),
            );
        }
    };
    let attempt = event
        .payload
        .get("attempt")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    tracing::info!(job = ?job.job, grant = %job.grant_id, %attempt, "scheduled job");
    match app.run_job(&job).await {
        Ok(outcome) => Ok(serde_json::json!({"outcome": match outcome {
            JobOutcome::Done => "done",
            JobOutcome::Rearmed => "rearmed",
            JobOutcome::Nothing => "nothing",
        }})),
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::Unavailable | ErrorKind::Conflict | ErrorKind::Internal
            ) =>
        {
            tracing::warn!(grant = %job.grant_id, error = %e, "scheduled job failed; Lambda will retry");
            Err(RetryableJobError(e.to_string()))
        }
        Err(e) => {
            tracing::warn!(grant = %job.grant_id, error = %e, "scheduled job refused; not retried");
            Ok(serde_json::json!({"outcome": "refused", "reason": e.code}))
        }
    }
}

/// Runs one reconciliation for the recurring schedule. The event must be exactly `{"job": "reconcile"}`:
/// anything more is logged and acknowledged without a run (a retry could not make it valid). A run that could
/// not reach the store is retryable; ticket-system errors are part of its report, never an error here.
async fn handle_reconcile(
    app: &Ticketbound,
    event: &LambdaEvent<Value>,
) -> Result<Value, RetryableJobError> {
    let exact = event
        .payload
        .as_object()
        .is_some_and(|fields| fields.len() == 1);
    if !exact {
        tracing::error!(request_id = %event.context.request_id, "reconcile job with unexpected fields; ignored (the schedule's Input must be {{\"job\": \"reconcile\"}})");
        return Ok(serde_json::json!({"outcome": "ignored", "reason": "malformed reconcile job"}));
    }
    if app.settings.reconcile.every.is_none() {
        tracing::info!("reconcile job while RECONCILE_EVERY is off; nothing done");
        return Ok(serde_json::json!({"outcome": "off"}));
    }
    match app.reconcile().await {
        Ok(report) => Ok(serde_json::json!({"outcome": "done", "report": report})),
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::Unavailable | ErrorKind::Conflict | ErrorKind::Internal
            ) =>
        {
            tracing::warn!(error = %e, "reconciliation failed; Lambda will retry");
            Err(RetryableJobError(e.to_string()))
        }
        Err(e) => {
            tracing::warn!(error = %e, "reconciliation refused; not retried");
            Ok(serde_json::json!({"outcome": "refused", "reason": e.code}))
        }
    }
}
