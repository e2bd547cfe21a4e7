//! The notification port: the channels a deployment sends messages through (Slack, Microsoft Teams, a signed
//! event webhook, e-mail through SES), one call per message and channel. Retries, leases and the record on the
//! grant belong to the service (`service/notifications.rs`); an adapter sends once and says whether trying again
//! can help.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::Grant;
use crate::domain::notification::{ChatMessageRef, NotifyEvent};

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
    /// The chat messages already posted about this grant (by a Slack app channel), which a channel that can
    /// edit its messages brings up to date with this event.
    #[serde(skip)]
    pub posted: Vec<ChatMessageRef>,
    /// The Ticketbound groups that decide an approval request (empty for other events): the groups the
    /// resource lists in its `approvers`, or the deployment's approver group when it lists none. A chat app
    /// that maps its own user groups to Ticketbound groups messages their members directly.
    #[serde(skip)]
    pub approver_groups: Vec<String>,
}

/// What a send did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// The channel accepted the message.
    Sent,
    /// The channel accepted the message and posted it where it can be edited later: where (remembered on the
    /// grant's delivery record, so a later event can update it in place).
    Posted(Vec<ChatMessageRef>),
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
    /// The two-way chat app people decide from, when one is configured (a Slack app channel).
    fn chat_app(&self) -> Option<Arc<dyn ChatApp>> {
        None
    }
}

/// What a person asked for by pressing a button (or submitting a dialog) in a chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatAction {
    /// *Approve* on an approval request.
    Approve,
    /// *Deny* on an approval request: opens the dialog asking for an optional comment.
    AskDenyComment { trigger_id: String },
    /// The deny dialog submitted, with its comment (empty: none).
    Deny { comment: Option<String> },
    /// *I'm done* on the requester's "granted" message: ends their own grant.
    Done,
    /// *Extend* on the requester's "granted" message: files an extension through the request use case.
    Extend,
}

/// One verified interaction: who (the chat app's user id), what, on which grant, and where to answer them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatInteraction {
    /// The chat app's own user id (Slack's `U...`), resolved to a person by [`ChatApp::person`].
    pub user: String,
    pub action: ChatAction,
    /// The grant id the button carried. Not trusted beyond "which grant": the use case checks everything.
    pub grant_id: String,
    /// The conversation the button was pressed in, where a private answer goes.
    pub channel: Option<String>,
}

/// Why an interaction is refused before anything is read from it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChatRefusal {
    /// No signature, or not the app's: forged, or signed with another secret.
    #[error("the request is not signed by the chat app")]
    BadSignature,
    /// Signed, but its timestamp is outside the accepted window (a captured request replayed later).
    #[error("the request's timestamp is not within five minutes of now")]
    Stale,
    /// Signed and fresh, but not an interaction this app sent (its shape, or an action it does not know).
    #[error("{0}")]
    Malformed(String),
}

/// A person as the chat app knows them: their confirmed e-mail address and the Ticketbound groups their chat
/// user groups map to (the admin-kept mapping in the configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatPerson {
    pub email: String,
    pub groups: Vec<String>,
}

/// The interactive side of a chat app (Slack): verifying its requests, knowing who pressed, and answering them.
#[async_trait]
pub trait ChatApp: Send + Sync {
    /// Checks the request's signature against the raw body (constant time, timestamp within five minutes of
    /// `now`) and only then reads the body. `signature_id` is a value unique to the signed request, for
    /// refusing a replay.
    fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: time::OffsetDateTime,
    ) -> Result<(ChatInteraction, String), ChatRefusal>;
    /// Who `user` is; `None` when the chat app has no confirmed e-mail address for them.
    async fn person(&self, user: &str) -> Result<Option<ChatPerson>, SendError>;
    /// Opens the dialog asking an approver for an optional comment before denying the interaction's grant (an
    /// [`ChatAction::AskDenyComment`]).
    async fn ask_deny_comment(&self, interaction: &ChatInteraction) -> Result<(), SendError>;
    /// Tells the person of `interaction`, and only them, `text` (Slack: an ephemeral message).
    async fn tell(&self, interaction: &ChatInteraction, text: &str) -> Result<(), SendError>;
    /// Brings every message already posted about a request still pending (`message.posted`) up to date with
    /// the approvals recorded so far, its decision buttons kept.
    async fn show_progress(&self, message: &Message) -> Result<(), SendError>;
}
