//! The notification port: the channels a deployment sends messages through (Slack, Microsoft Teams, a signed
//! event webhook, e-mail through SES), one call per message and channel. Retries, leases and the record on the
//! grant belong to the service (`service/notifications.rs`); an adapter sends once and says whether trying again
//! can help.

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::Grant;
use crate::domain::notification::NotifyEvent;

/// One event's message, the same for every channel; each adapter renders it in its own format.
#[derive(Clone, Debug, Serialize)]
pub struct Message {
    /// Stable per (grant, event): `<grant id>.<event>`, the same on every attempt, so a receiver can drop a
    /// message it already has (a send in flight when a process died is sent again).
    pub id: String,
    pub event: NotifyEvent,
    /// One line: a chat message's notification text and an e-mail's subject.
    pub subject: String,
    /// A few sentences of plain text saying what happened and what to do.
    pub text: String,
    /// Label and value pairs (requester, resource, duration, reason, ticket, ...).
    pub facts: Vec<(String, String)>,
    /// The grant's page in the portal.
    pub link: String,
    /// E-mail recipients (the requester, or the approvers, or the admins); chat channels post to their room.
    pub to: Vec<String>,
    /// The grant as the API shows it.
    pub grant: Grant,
}

/// What a send did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// The channel accepted the message.
    Sent,
    /// Nothing to send through this channel (an e-mail without recipients): not an error.
    NoRecipients,
}

/// Why a channel did not take a message. Messages never hold a webhook URL, a signing secret or a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Throttled (429, with the wait it asked for), a 5xx, a timeout or a connection that failed: later can work.
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// Refused for what it is (a revoked webhook, a channel that no longer exists, an unverified sender): the
    /// same message fails the same way, so it is not retried.
    #[error("{0}")]
    Permanent(String),
}

/// The deployment's notification channels. A deployment without any is a legitimate configuration: it takes no
/// event and sends nothing.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// The ids of the channels that take `event`, in configuration order.
    fn channels_for(&self, event: NotifyEvent) -> Vec<String>;
    /// Sends `message` through `channel` once (no retries here).
    async fn send(&self, channel: &str, message: &Message) -> Result<SendOutcome, SendError>;
}
