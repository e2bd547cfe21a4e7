//! A Freshservice closing is never lost to a rate limit (issue 9 item 8).
//!
//! A Freshservice delivery only says "ticket N changed", so its handler asks the API whether the ticket is
//! closed before ending anything. When that API rate limits us for longer than a webhook can wait, answering
//! 503 would leave the closing to a sender whose retries are undocumented. Instead the delivery is recorded
//! durably as a one-time schedule (a [`JobKind::Confirm`] job on one open grant of the ticket) at the time the
//! API named in `Retry-After`, and the sender gets 202. When it fires, the ticket is asked about again: closed
//! or deleted ends every grant bound to it through the normal pipeline; still rate limited re-arms under a new
//! name (never the one firing); open does nothing. After [`MAX_CONFIRMATIONS`] tries it gives up loudly and
//! leaves the ticket to reconciliation, which re-reads every bound ticket anyway.

use time::{Duration, OffsetDateTime};

use super::{JobOutcome, ServiceError, Ticketbound};
use crate::domain::connection::TicketState;
use crate::domain::{EndReason, TicketRef};
use crate::ports::{Job, JobKind, TicketCheckError};
use crate::telemetry;

/// Tries of one deferred confirmation before it is left to reconciliation.
pub const MAX_CONFIRMATIONS: u32 = 24;
/// The wait when the ticket system gave no `Retry-After`; and the bounds of any wait it gives.
const DEFAULT_WAIT: Duration = Duration::seconds(60);
const MIN_WAIT: Duration = Duration::seconds(5);
const MAX_WAIT: Duration = Duration::hours(1);

/// What a deferral did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// A confirmation is scheduled for `at`, on behalf of the open grants bound to the ticket.
    Deferred { at: OffsetDateTime },
    /// No open grant is bound to the ticket: there is nothing a closing could end.
    NothingBound,
}

impl Ticketbound {
    /// Records a closing that could not be confirmed now because the ticket system rate limits us: a
    /// one-time schedule asks again after `retry_after` (bounded to 5 s – 1 h; 60 s when not given).
    pub async fn defer_confirmation(
        &self,
        ticket: &TicketRef,
        retry_after: Option<std::time::Duration>,
    ) -> Result<Confirmation, ServiceError> {
        let grants = self.store.grants_for_ticket(ticket).await?;
        let Some(first) = grants.iter().find(|g| g.status.is_open()) else {
            return Ok(Confirmation::NothingBound);
        };
        let at = self.clock.now() + wait_for(retry_after);
        // Arming 0 for every delivery of this ticket: repeated deliveries while rate limited upsert one schedule.
        self.scheduler
            .schedule(&Job::new(JobKind::Confirm, &first.id), at)
            .await?;
        tracing::warn!(connection = %ticket.connection, ticket = %ticket.key, %at, "the ticket system is rate limiting; the closing will be confirmed later");
        Ok(Confirmation::Deferred { at })
    }

    /// The deferred confirmation firing: ask again, end the ticket's grants if it closed.
    pub(super) async fn confirm_ticket(&self, job: &Job) -> Result<JobOutcome, ServiceError> {
        let Some(grant) = self.store.get_grant(&job.grant_id).await? else {
            return Ok(JobOutcome::Nothing);
        };
        let Some(ticket) = grant.ticket.clone() else {
            return Ok(JobOutcome::Nothing);
        };
        let reason = match self.connections().ticket_state(&ticket).await {
            Ok(TicketState::Open) => {
                tracing::info!(ticket = %ticket.key, "deferred confirmation: the ticket is open; nothing ends");
                return Ok(JobOutcome::Nothing);
            }
            Ok(TicketState::Closed) => EndReason::TicketClosed,
            Ok(TicketState::Deleted) => EndReason::TicketDeleted,
            Err(TicketCheckError::RateLimited(message, retry_after))
                if job.arming + 1 < MAX_CONFIRMATIONS =>
            {
                let at = self.clock.now() + wait_for(retry_after);
                self.scheduler
                    .schedule(&job.with_arming(job.arming + 1), at)
                    .await?;
                tracing::warn!(ticket = %ticket.key, %message, %at, "deferred confirmation still rate limited; asking again later");
                return Ok(JobOutcome::Rearmed);
            }
            Err(TicketCheckError::RateLimited(message, _)) => {
                tracing::error!(connection = %ticket.connection, ticket = %ticket.key, %message, "deferred confirmation gave up after {MAX_CONFIRMATIONS} tries; reconciliation will re-read the ticket");
                telemetry::metric("ConfirmationsAbandoned", 1.0);
                return Ok(JobOutcome::Nothing);
            }
            // The connection is gone: nothing can confirm it (its grants keep their time bound).
            Err(TicketCheckError::UnknownConnection(_)) => return Ok(JobOutcome::Nothing),
            Err(e) => {
                return Err(ServiceError::unavailable(
                    "ticket_system_unavailable",
                    format!("deferred confirmation of {}: {e}", ticket.key),
                ));
            }
        };
        let outcome = self
            .close_ticket(&ticket, grant.ticket_id.as_deref(), reason)
            .await?;
        tracing::info!(ticket = %ticket.key, ended = outcome.ended, cancelled = outcome.cancelled, "deferred confirmation ended the ticket's grants");
        Ok(JobOutcome::Done)
    }
}

fn wait_for(retry_after: Option<std::time::Duration>) -> Duration {
    let asked = retry_after
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(DEFAULT_WAIT);
    asked.clamp(MIN_WAIT, MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_follows_retry_after_within_bounds() {
        assert_eq!(wait_for(None), DEFAULT_WAIT);
        assert_eq!(
            wait_for(Some(std::time::Duration::from_secs(120))),
            Duration::seconds(120)
        );
        assert_eq!(wait_for(Some(std::time::Duration::from_secs(1))), MIN_WAIT);
        assert_eq!(
            wait_for(Some(std::time::Duration::from_secs(86_400 * 365))),
            MAX_WAIT
        );
    }
}
