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
