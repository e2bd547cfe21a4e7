//! Ticket-system connections (DESIGN §6), one file per use case:
//! - `admin`: admins create, change, verify and delete them;
//! - `sessions`: a connection opened for calls, and the authorization status every call keeps
//!   ([`Connections::observe`]);
//! - `binding`: grant requests and approvals check ticket bindings (rule 3); everyone lists their open tickets;
//! - `webhooks`: what the verified-delivery extractors and the delivery use case ask;
//! - `directory`: what anyone signed in may know of the connections (id, name, kind, site);
//! - `writes`: tickets Ticketbound opens, comments on and closes; `health`: webhook health and reconciliation;
//! - `changes`: what the admin use cases take and give, free of any wire format (the JSON shapes are
//!   `http/connections.rs`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use time::OffsetDateTime;

use super::ServiceError;
use crate::domain::connection::{
    ApiRoute, AuthState, AuthStatus, ClosedStatuses, Connection, ConnectionKind, ConnectionSecrets,
    ConnectionSettings, KindFields, MAX_TICKET_QUERY, Person, PersonLookup, ProjectSummary, Ticket,
    TicketQuery, TicketState, TicketSummary, WebhookActivity, WebhookSecrets,
};
use crate::domain::identity::{ClaimedIdentity, looks_like_email, normalize_email};
use crate::domain::ids::{is_slug, new_secret};
use crate::domain::secret::Secret;
use crate::domain::ticket_writes::AuditSettings;
use crate::domain::{Caller, TicketRef};

use crate::ports::WebhookSource;
use crate::ports::{
    Clock, ConnectionStore, GrantStore, Page, SecretStore, SecretStoreError, SettingsError,
    StoreError, TicketCheckError, TicketSystem, TicketSystemError, TicketSystemKind, TicketSystems,
    TicketVerifier,
};
mod admin;
mod binding;
mod changes;
mod directory;
mod health;
mod sessions;
mod webhooks;
mod writes;

use binding::*;
use sessions::*;

pub use admin::ConnectionWriteError;
pub use changes::{ConnectionChanges, ConnectionShown, Verification};
pub use directory::DirectoryEntry;
pub(crate) use health::ReconcileSession;
pub use writes::TicketWriteError;

/// Webhook secrets active at once (enough for a rotation, few enough to try them all).
pub const MAX_WEBHOOK_SECRETS: usize = 5;
/// The shortest webhook secret an admin may choose.
pub const MIN_WEBHOOK_SECRET: usize = 16;
const MAX_CLOSED_STATUSES: usize = 50;
/// A success does not rewrite `last_verified_at` more often than this (one store write per call is wasteful).
const VERIFIED_REFRESH: time::Duration = time::Duration::minutes(1);

/// The connection use cases, over their own ports. Cloning shares them.
#[derive(Clone)]
pub struct Connections {
    store: Arc<dyn ConnectionStore>,
    secrets: Arc<dyn SecretStore>,
    systems: Arc<dyn TicketSystems>,
    grants: Arc<dyn GrantStore>,
    clock: Arc<dyn Clock>,
    /// When this container last recorded a delivery per connection (webhook health, [`health`]).
    deliveries_noted: Arc<std::sync::Mutex<std::collections::HashMap<String, OffsetDateTime>>>,
}

impl Connections {
    pub fn new(
        store: Arc<dyn ConnectionStore>,
        secrets: Arc<dyn SecretStore>,
        systems: Arc<dyn TicketSystems>,
        grants: Arc<dyn GrantStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            secrets,
            systems,
            grants,
            clock,
            deliveries_noted: Arc::default(),
        }
    }
}
