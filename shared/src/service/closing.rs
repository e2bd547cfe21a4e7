//! A bound ticket closing or being deleted (DESIGN §1 rules 5, 7): every open grant bound to it ends; and the
//! use case of a verified webhook delivery that announces it (DESIGN §9).

use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Confirmation, EndOutcome, ServiceError, Ticketbound};
use crate::domain::connection::TicketState;
use crate::domain::ticket_events::{Closing, Delivery, DeliveryOutcome};
use crate::domain::{EndReason, GrantStatus, TicketRef};
use crate::ports::TicketCheckError;

/// What a closing did, as the webhook answers it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TicketClosing {
    /// Active grants that this closing ended.
    pub ended: usize,
    /// Pending requests that this closing cancelled.
    pub cancelled: usize,
    /// Bound grants that were already closed (by time, a person, or an earlier delivery).
    pub already_closed: usize,
}

/// How far the sender's clock and ours may disagree. A grant requested this soon after the event a closing
/// reports still ends: ending is the safe side, and a binding check made after a real closing would have found
/// the ticket closed. Only a grant bound later than this was bound after the ticket was reopened.
const CLOCK_SKEW: time::Duration = time::Duration::seconds(30);

/// How many grants of one ticket end at once: enough that 500 end well within a webhook timeout, few enough
/// not to flood the store or the end system.
const PARALLEL_ENDINGS: usize = 16;

impl Ticketbound {
    /// Ends every open grant bound to `ticket` (by its canonical key, the form grants are stored under whatever
    /// spelling the sender used, or by its stable `ticket_id` when the sender gives one, so a Jira issue moved
    /// to another project still ends the grants bound under its old key): active → ended, pending → cancelled,
    /// with `reason` (`ticket_closed` or `ticket_deleted`). Returns once every ending is durable and its side
    /// effects have had their first attempt; an `Err` means some grant could not be ended now and the sender
    /// should retry (grants already ended stay ended; a retry finds them closed).
    pub async fn close_ticket(
        &self,
        ticket: &TicketRef,
        ticket_id: Option<&str>,
        reason: EndReason,
    ) -> Result<TicketClosing, ServiceError> {
        self.close_ticket_found_by(ticket, ticket_id, reason, None, None)
            .await
    }

    /// [`Self::close_ticket`], each audit event saying who found the closing (`"reconciliation"`) when it
    /// was not a delivery. With `reported_at` (when the sender says the ticket closed), a grant bound after
    /// that moment (beyond [`CLOCK_SKEW`]) is left alone: its binding check saw the ticket open after this
    /// closing (it was reopened), so the closing is not about it. A captured delivery replayed later therefore
    /// ends nothing new.
    pub(crate) async fn close_ticket_found_by(
        &self,
        ticket: &TicketRef,
        ticket_id: Option<&str>,
        reason: EndReason,
        found_by: Option<&'static str>,
        reported_at: Option<OffsetDateTime>,
    ) -> Result<TicketClosing, ServiceError> {
        let canonical = TicketRef {
            connection: ticket.connection.clone(),
            key: self
                .connections
                .canonical_key(&ticket.connection, &ticket.key)
                .await?,
        };
        let mut grants = self.store.grants_for_ticket(&canonical).await?;
        if let Some(id) = ticket_id {
            for grant in self
                .store
                .grants_for_ticket_id(&ticket.connection, id)
                .await?
            {
                if !grants.iter().any(|g| g.id == grant.id) {
                    grants.push(grant);
                }
            }
        }
        let mut outcome = TicketClosing::default();
        let permits = Arc::new(Semaphore::new(PARALLEL_ENDINGS));
        let mut tasks = JoinSet::new();
        let mut bound_after = 0usize;
        for grant in grants {
            if !grant.status.is_open() {
                outcome.already_closed += 1;
                continue;
            }
            if reported_at.is_some_and(|at| grant.requested_at > at + CLOCK_SKEW) {
                bound_after += 1;
                continue;
            }
            let (app, permits) = (self.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                app.end_grant_noting(&grant.id, reason, None, found_by)
                    .await
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            match joined
                .map_err(|e| ServiceError::internal(format!("ending task: {e}")))
                .and_then(|r| r)
            {
                Ok(EndOutcome::Ended(g)) if g.status == GrantStatus::Cancelled => {
                    outcome.cancelled += 1
                }
                Ok(EndOutcome::Ended(_)) => outcome.ended += 1,
                Ok(EndOutcome::AlreadyClosed(_)) => outcome.already_closed += 1,
                Err(e) => {
                    tracing::warn!(connection = %ticket.connection, ticket = %ticket.key, error = %e, "a bound grant could not be ended");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => {
                if bound_after > 0 {
                    tracing::info!(connection = %ticket.connection, ticket = %canonical.key, bound_after, "grants bound after the reported closing were left alone (the ticket was reopened since, or the delivery is a replay)");
                }
                tracing::info!(connection = %ticket.connection, ticket = %canonical.key, reason = reason.as_str(), ended = outcome.ended, cancelled = outcome.cancelled, "ticket closed");
                Ok(outcome)
            }
        }
    }
}

/// The ticket a delivery is about: its connection, its key as sent, and its stable id when the sender gives one.
#[derive(Clone, Copy)]
struct ChangedTicket<'a> {
    connection: &'a str,
    key: &'a str,
    id: Option<&'a str>,
}

/// How long a delivery id is remembered: Jira retries for well under a day.
const DEDUPE_FOR: time::Duration = time::Duration::hours(48);

impl Ticketbound {
    /// A verified delivery (DESIGN §9): dedupe by the sender's delivery id, confirm through the ticket system
    /// when the body only names the ticket, then end every grant bound to it with the matching reason. A
    /// reopened ticket never restores access: nothing here opens a grant. An `Err` asks the sender to retry.
    pub async fn handle_delivery(
        &self,
        delivery: Delivery,
    ) -> Result<DeliveryOutcome, ServiceError> {
        match delivery {
            Delivery::Told {
                connection,
                delivery_id,
                change,
            } => {
                if let Some(key) = &delivery_id
                    && self.store.delivery_seen(key, self.clock.now()).await?
                {
                    return Ok(DeliveryOutcome::Ignored("duplicate delivery".into()));
                }
                let outcome = match change.closing {
                    None => {
                        let ticket = if change.key.is_empty() {
                            "no issue"
                        } else {
                            change.key.as_str()
                        };
                        DeliveryOutcome::Ignored(format!(
                            "{} for {ticket} closes nothing",
                            change.source
                        ))
                    }
                    Some(closing) => match change.reported_at {
                        Some(at) => {
                            let found = ChangedTicket {
                                connection: &connection,
                                key: &change.key,
                                id: change.id.as_deref(),
                            };
                            self.end_bound(found, closing, Some(at)).await?
                        }
                        // The body does not say when (a Jira Automation body): its word alone cannot tell a
                        // replay from news, so only the ticket system's answer now ends anything.
                        None => {
                            self.confirm_and_end(&connection, &change.key, change.id.as_deref())
                                .await?
                        }
                    },
                };
                if let Some(key) = delivery_id {
                    // Remembered only once handled, so a delivery that failed half-way is handled again on retry.
                    if let Err(e) = self
                        .store
                        .remember_delivery(&key, self.clock.now() + DEDUPE_FOR)
                        .await
                    {
                        tracing::warn!(error = %e, "could not record the delivery id; a retry will be handled again (harmless)");
                    }
                }
                Ok(outcome)
            }
            // The body only says "ticket N changed": the ticket system says whether it is closed.
            Delivery::Named { connection, key } => {
                self.confirm_and_end(&connection, &key, None).await
            }
        }
    }

    /// Asks the ticket system whether the ticket a delivery names is closed now, and ends its grants if so.
    /// Rate limited beyond what the sender can wait, the closing is recorded as a one-time confirmation
    /// schedule instead (answered 202).
    async fn confirm_and_end(
        &self,
        connection: &str,
        key: &str,
        ticket_id: Option<&str>,
    ) -> Result<DeliveryOutcome, ServiceError> {
        let key = self.connections.canonical_key(connection, key).await?;
        let ticket = TicketRef {
            connection: connection.to_owned(),
            key: key.clone(),
        };
        let found = ChangedTicket {
            connection,
            key: &key,
            id: ticket_id,
        };
        let state = match self.connections().ticket_state(&ticket).await {
            Ok(state) => state,
            // Rate limited beyond what the sender can wait: record the closing durably and confirm it
            // later (a one-time schedule), rather than a 503 the sender may never retry.
            Err(TicketCheckError::RateLimited(_, retry_after)) => {
                return Ok(match self.defer_confirmation(&ticket, retry_after).await? {
                    Confirmation::Deferred { at } => DeliveryOutcome::Deferred {
                        key,
                        confirm_at: at,
                    },
                    Confirmation::NothingBound => {
                        DeliveryOutcome::Ignored(format!("no open grant is bound to ticket {key}"))
                    }
                });
            }
            Err(e) => return Err(e.into()),
        };
        match state {
            TicketState::Open => Ok(DeliveryOutcome::Ignored(format!("ticket {key} is open"))),
            // Closed now, by the ticket system's own word: whatever the grants' binding times.
            TicketState::Closed => self.end_bound(found, Closing::Closed, None).await,
            TicketState::Deleted => self.end_bound(found, Closing::Deleted, None).await,
        }
    }

    /// Ends the grants bound to a closed or deleted ticket, with the matching end reason; with `reported_at`,
    /// only those bound before it ([`Self::close_ticket_found_by`]).
    async fn end_bound(
        &self,
        found: ChangedTicket<'_>,
        closing: Closing,
        reported_at: Option<OffsetDateTime>,
    ) -> Result<DeliveryOutcome, ServiceError> {
        let reason = match closing {
            Closing::Closed => EndReason::TicketClosed,
            Closing::Deleted => EndReason::TicketDeleted,
        };
        let ticket = TicketRef {
            connection: found.connection.to_owned(),
            key: found.key.to_owned(),
        };
        let done = self
            .close_ticket_found_by(&ticket, found.id, reason, None, reported_at)
            .await?;
        Ok(DeliveryOutcome::Closed {
            key: found.key.to_owned(),
            reason,
            ended: done.ended,
            cancelled: done.cancelled,
            already_closed: done.already_closed,
        })
    }
}
