//! The side-effect engine: every scheduled job (an expiry, a provisioning, a deprovisioning, a notification, a
//! status check of a call a provisioner accepted) runs here, under one lease, one attempt record, one retry
//! policy and one way to re-arm.
//!
//! - **Lease and attempts.** A job claims what it works on with [`Tracked::claim`] inside a conditional write of
//!   the grant: the attempt is counted and a lease of [`RetryPolicy::lease`] taken, so the same job delivered
//!   twice, or a retry firing mid-attempt, does not call the end system twice. A job that finds a live lease
//!   re-arms for just after it, in case that worker died.
//! - **Classification.** A failure is a [`Failure`]: `retryable`, `conflict` or `permanent`
//!   (`domain/side_effect.rs`, with the one HTTP status table).
//! - **Retry.** [`RetryPolicy::retry_at`] decides: a permanent failure, or the last attempt of the budget, makes
//!   the side effect `failed` (logged at error level, counted as its `…Failed` metric); otherwise the next attempt
//!   is at the jittered exponential backoff, or later when the other side asked for longer (`Retry-After`, at
//!   most a day). A call a provisioner accepted (HTTP 202) is checked again at the same backoff, never waited for
//!   inside a request.
//! - **Armings.** A retry is armed before its outcome is written, under a fresh schedule name (the next arming
//!   number, [`next_arming`]; "Armings" in `service/lifecycle.rs`), then the outcome and the live arming are
//!   written, then the armings it replaced are deleted ([`Ticketbound::remove_armings`]).
//! - **Tracing.** Each job runs inside a `job` span carrying the grant id, the job kind, the arming and, once
//!   claimed, the attempt.

use time::{Duration, OffsetDateTime};
use tracing::Instrument;

use super::{ErrorKind, RetryPolicy, ServiceError, Ticketbound};
use crate::domain::side_effect::Failure;
use crate::ports::{Job, JobKind, JobRunner};

/// The longest `Retry-After` honoured; a side effect asking for more is retried after this.
const MAX_RETRY_AFTER: Duration = Duration::days(1);

/// What a scheduled job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// It did its work (ended a grant, finished or retried a side effect).
    Done,
    /// It was early, or another worker held the grant: it scheduled itself again.
    Rearmed,
    /// There was nothing to do (the grant had already moved on).
    Nothing,
}

impl RetryPolicy {
    /// When to try again after the `attempts`-th attempt failed with `failure`; `None` when the side effect is
    /// `failed` for good (a permanent failure, or the budget spent).
    pub fn retry_at(
        &self,
        attempts: u32,
        failure: &Failure,
        now: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        if !failure.is_retried() || attempts >= self.max_attempts {
            return None;
        }
        let asked = failure
            .retry_after
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER);
        Some(now + self.delay_after(attempts).max(asked))
    }

    /// When to check again on a call accepted at the `attempts`-th attempt; `None` once the budget is spent.
    pub fn check_again_at(&self, attempts: u32, now: OffsetDateTime) -> Option<OffsetDateTime> {
        (attempts < self.max_attempts).then(|| now + self.delay_after(attempts))
    }
}

/// The arming a job re-arms under: above the one firing and above the one the grant records as live, so it
/// never updates a schedule that is about to be deleted after it fires.
pub(crate) fn next_arming(fired: u32, live: u32) -> u32 {
    fired.max(live).saturating_add(1)
}

/// Records the attempt number on the running job's span, once the job has claimed its lease.
pub(crate) fn record_attempt_on_span(attempt: u32) {
    tracing::Span::current().record("attempt", attempt);
}

impl Ticketbound {
    /// Handles a scheduled job (the expiry function's event, or an in-process timer locally), inside its span.
    pub async fn run_job(&self, job: &Job) -> Result<JobOutcome, ServiceError> {
        let span = tracing::info_span!(
            "job",
            grant = %job.grant_id,
            job = ?job.job,
            event = job.event.map(|e| e.as_str()),
            arming = job.arming,
            attempt = tracing::field::Empty,
        );
        self.dispatch(job).instrument(span).await
    }

    async fn dispatch(&self, job: &Job) -> Result<JobOutcome, ServiceError> {
        match job.job {
            JobKind::Expire => self.expire(&job.grant_id, job.arming).await,
            JobKind::Provision | JobKind::Deprovision => {
                self.side_effect_job(job.job, &job.grant_id, job.arming)
                    .await
            }
            JobKind::Confirm => self.confirm_ticket(job).await,
            JobKind::Notify => self.run_notification(job).await,
            JobKind::PendingExpiry => self.pending_expired(&job.grant_id, job.arming).await,
            JobKind::EndSessionCut => self.end_session_cut(job).await,
        }
    }

    /// Deletes the given (stale) armings of `job`. A failure is only logged: such a schedule fires once, finds
    /// the work done or due, and EventBridge deletes it after it fires.
    pub(super) async fn remove_armings(&self, job: &Job, mut armings: Vec<u32>) {
        armings.sort_unstable();
        armings.dedup();
        for arming in armings {
            if let Err(e) = self.scheduler.cancel(&job.with_arming(arming)).await {
                tracing::warn!(grant = %job.grant_id, job = ?job.job, arming, error = %e, "could not delete a stale schedule");
            }
        }
    }
}

/// The in-process scheduler's view of the engine (locally, where no Lambda retries a failed job).
#[async_trait::async_trait]
impl JobRunner for Ticketbound {
    async fn run_job(&self, job: &Job) -> Result<(), String> {
        match Ticketbound::run_job(self, job).await {
            Ok(outcome) => {
                tracing::debug!(?job, ?outcome, "job ran");
                Ok(())
            }
            // The store or scheduler was unreachable, or the grant kept changing: trying again can help.
            Err(e) if matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Conflict) => {
                Err(e.to_string())
            }
            // An unreadable item does not heal by retrying, and locally there is no dead-letter queue to end the
            // loop: say so loudly once (on Lambda the same error goes through two retries to the DLQ alarm).
            Err(e) if e.kind == ErrorKind::Internal => {
                tracing::error!(?job, error = %e, "job failed on an internal error; not retried, look at the grant by hand");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(?job, error = %e, "job failed and will not be retried");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::seconds(30),
            cap: Duration::hours(1),
            max_attempts: 3,
            lease: Duration::seconds(60),
        }
    }

    #[test]
    fn a_retryable_failure_backs_off_within_the_budget_and_honours_retry_after() {
        let now = datetime!(2026-01-01 10:00 UTC);
        let failure = Failure::retryable("HTTP 503");
        let at = policy().retry_at(1, &failure, now).unwrap();
        assert!(at >= now + Duration::seconds(15) && at <= now + Duration::seconds(30));
        assert_eq!(policy().retry_at(3, &failure, now), None);

        let asked = Failure {
            retry_after: Some(std::time::Duration::from_secs(600)),
            ..failure.clone()
        };
        assert_eq!(
            policy().retry_at(1, &asked, now),
            Some(now + Duration::seconds(600))
        );
        let too_long = Failure {
            retry_after: Some(std::time::Duration::from_secs(30 * 86_400)),
            ..failure
        };
        assert_eq!(
            policy().retry_at(1, &too_long, now),
            Some(now + MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn a_permanent_failure_is_not_retried_and_a_conflict_is() {
        let now = datetime!(2026-01-01 10:00 UTC);
        assert_eq!(
            policy().retry_at(1, &Failure::permanent("refused"), now),
            None
        );
        let conflict = Failure {
            class: crate::domain::side_effect::FailureClass::Conflict,
            ..Failure::retryable("HTTP 409")
        };
        assert!(policy().retry_at(1, &conflict, now).is_some());
    }

    #[test]
    fn a_re_arm_takes_a_number_above_the_fired_and_the_live_arming() {
        assert_eq!(next_arming(0, 0), 1);
        assert_eq!(next_arming(3, 1), 4);
        assert_eq!(next_arming(1, 5), 6);
    }
}
