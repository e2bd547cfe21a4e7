//! What a ticket-system delivery means for grants, in vendor-neutral terms (DESIGN §1 rule 9, §9). Each ticket
//! system interprets its own payloads in its module (`adapters::jira::events`, `adapters::freshservice::events`)
//! and answers in these types.

/// What the delivery means for grants bound to the ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Closing {
    /// The ticket is closed (resolved, done, or in a closed status).
    Closed,
    /// The ticket was deleted.
    Deleted,
}

/// Why a delivery body could not be interpreted (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error("the body names no ticket ({0})")]
    NoTicket(&'static str),
}

/// A delivery, interpreted: which ticket changed and what that means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketChange {
    /// The ticket key (`SEC-42`, or a Freshservice id).
    pub key: String,
    /// The ticket's stable id when the delivery carries one: it survives a move to another project, which
    /// changes a Jira key.
    pub id: Option<String>,
    /// `None`: the event closes nothing (ignored with 200).
    pub closing: Option<Closing>,
    /// What sent it, for the logs: the webhook event name, or `automation`.
    pub source: String,
    /// When the sender says the change happened (a Jira webhook's `timestamp`). A closing never ends a grant
    /// bound after it (a captured delivery replayed once the ticket was reopened and bound again); `None` when
    /// the body does not say (a Jira Automation body), and then the ticket's state is confirmed with the ticket
    /// system before anything ends, as for a delivery that only names the ticket.
    pub reported_at: Option<time::OffsetDateTime>,
}

/// An authentic delivery, as a verified extractor hands it to the handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The body says what happened (Jira): act on it.
    Told {
        connection: String,
        /// The sender's delivery id when it gives one (`X-Atlassian-Webhook-Identifier`), for dedupe.
        delivery_id: Option<String>,
        change: TicketChange,
    },
    /// The body only names the ticket (Freshservice): the ticket system must be asked before acting.
    Named { connection: String, key: String },
}

/// What handling a delivery did, as the webhook answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Nothing to do, and why (answered 200 `{"ignored": true, "reason": …}`).
    Ignored(String),
    /// The bound grants ended.
    Closed {
        key: String,
        reason: super::EndReason,
        ended: usize,
        cancelled: usize,
        already_closed: usize,
    },
    /// The ticket system rate limited the confirmation beyond what the sender can wait: the closing is
    /// recorded as a one-time schedule at `confirm_at` (answered 202 `{"deferred": true, …}`).
    Deferred {
        key: String,
        confirm_at: time::OffsetDateTime,
    },
}
