//! Writes through a connection (DESIGN §7 `ticket` provisioner, §8 audit tickets): open a ticket (or find the
//! one an earlier attempt opened, by its marker), comment on it, close it. Every call goes through
//! [`Connections::observe`], so a 401 on a write moves the connection to `needs_reauthorization` exactly as a
//! read does; a 403 on a write is a permission that one write lacks ([`TicketWriteError::NotPermitted`], named
//! on the grant's side effect), and leaves the status alone. Errors are plain words for the durable retry's
//! `last_error`; they never hold a credential.

use super::{Connections, OpenError, unprocessable};
use crate::domain::connection::ConnectionSettings;
use crate::domain::side_effect::Failure;
use crate::domain::ticket_writes::{
    AuditSettings, CloseOutcome, CreatedTicket, DestinationFields, NewTicket, TicketDestination,
};
use crate::domain::{Grant, TicketRef};
use crate::ports::{TicketSystemError, TicketSystemKind};
use crate::service::ServiceError;

/// Connections scanned at most when looking for the one with audit settings.
const MAX_AUDIT_SCAN_PAGES: usize = 10;

/// Why a write through a connection did not happen. The message never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketWriteError {
    /// The connection was deleted (or never existed).
    #[error("there is no connection `{0}`")]
    UnknownConnection(String),
    /// The connection's credentials were refused: an admin must update them.
    #[error("connection `{0}`: {1}; an admin must update the credentials")]
    Unauthorized(String, String),
    /// The credentials work, but their account may not make this write (403): the message names what to grant
    /// it. The connection's status is left alone.
    #[error("connection `{0}`: {1}")]
    NotPermitted(String, String),
    /// The stores or the ticket system could not be reached, or the ticket system refused the content.
    #[error("connection `{0}`: {1}")]
    Failed(String, String),
    /// The ticket system asked to wait (a 429, Linear's `RATELIMITED`) longer than one call may: the write is
    /// retried after `retry_after` when it says how long.
    #[error("connection `{connection}`: {message}")]
    RateLimited {
        connection: String,
        message: String,
        retry_after: Option<std::time::Duration>,
    },
}

impl TicketWriteError {
    fn of(connection: &str, e: TicketSystemError) -> Self {
        match e {
            TicketSystemError::Unauthorized { .. } => {
                Self::Unauthorized(connection.to_owned(), e.to_string())
            }
            TicketSystemError::NotPermitted(m) => Self::NotPermitted(connection.to_owned(), m),
            TicketSystemError::RateLimited { retry_after, .. } => Self::RateLimited {
                connection: connection.to_owned(),
                message: e.to_string(),
                retry_after,
            },
            other => Self::Failed(connection.to_owned(), other.to_string()),
        }
    }

    /// The failed attempt as the engine retries it: every write failure may cure later (an admin mends the
    /// credentials, the ticket system comes back), and a rate limit is retried no sooner than it asked.
    pub fn as_failure(&self) -> Failure {
        let mut failure = Failure::retryable(self.to_string());
        if let Self::RateLimited { retry_after, .. } = self {
            failure.retry_after = *retry_after;
        }
        failure
    }
}

/// Checks audit settings against the connection's kind and fills in the defaults (a 422 when they do not fit).
pub(super) fn check_audit(
    system: &dyn TicketSystemKind,
    audit: Option<AuditSettings>,
) -> Result<Option<AuditSettings>, ServiceError> {
    let Some(audit) = audit else {
        return Ok(None);
    };
    let destination = system
        .destination(&audit.fields())
        .map_err(|m| unprocessable("invalid_audit", format!("audit: {m}")))?;
    let TicketDestination {
        project,
        issue_type,
        group_id,
        priority,
    } = destination;
    Ok(Some(AuditSettings {
        project,
        issue_type,
        group_id,
        priority,
    }))
}

impl Connections {
    /// Where a new ticket of a `ticket` provisioner goes in the connection's ticket system, with the defaults
    /// filled in; the error says which field is wrong and why.
    pub fn destination(
        &self,
        settings: &ConnectionSettings,
        fields: &DestinationFields<'_>,
    ) -> Result<TicketDestination, String> {
        self.systems.kind(settings.kind).destination(fields)
    }

    /// A connection's settings (never its secrets); `None` when there is no such connection.
    pub async fn settings(&self, id: &str) -> Result<Option<ConnectionSettings>, ServiceError> {
        if !crate::domain::ids::is_slug(id) {
            return Ok(None);
        }
        Ok(self.store.get_connection(id).await?.map(|c| c.settings))
    }

    /// The connection whose audit settings apply to `grant` (DESIGN §8), and where its audit ticket goes:
    /// the connection of the grant's bound ticket when that one has audit settings, otherwise the first
    /// connection (by id) that has them; `None` when no connection opens audit tickets.
    pub async fn audit_destination_for(
        &self,
        grant: &Grant,
    ) -> Result<Option<(ConnectionSettings, TicketDestination)>, TicketWriteError> {
        let unavailable =
            |e: crate::ports::StoreError| TicketWriteError::Failed("*".into(), e.to_string());
        let with_destination = |s: ConnectionSettings| {
            let destination = self
                .systems
                .kind(s.kind)
                .destination(&s.audit.as_ref()?.fields())
                .ok()?;
            Some((s, destination))
        };
        if let Some(bound) = &grant.ticket
            && let Some(found) = self
                .store
                .get_connection(&bound.connection)
                .await
                .map_err(unavailable)?
                .and_then(|c| with_destination(c.settings))
        {
            return Ok(Some(found));
        }
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_AUDIT_SCAN_PAGES {
            let page = self
                .store
                .list_connections(100, cursor.as_deref())
                .await
                .map_err(unavailable)?;
            if let Some(found) = page
                .items
                .into_iter()
                .find_map(|c| with_destination(c.settings))
            {
                return Ok(Some(found));
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(None)
    }

    /// Opens `ticket` in `connection`, unless a ticket carrying its marker exists already (an earlier attempt
    /// whose answer was lost): then that one is returned and nothing is created.
    pub async fn open_ticket(
        &self,
        connection: &str,
        ticket: &NewTicket,
    ) -> Result<CreatedTicket, TicketWriteError> {
        let mut session = self.open_for_write(connection).await?;
        let found = session.system.find_by_marker(&ticket.marker).await;
        let found = self
            .observe(&mut session.connection, found, false)
            .await
            .map_err(|e| TicketWriteError::of(connection, e))?;
        if let Some(existing) = found {
            tracing::info!(connection = %connection, key = %existing.key, marker = %ticket.marker, "ticket already opened by an earlier attempt");
            return Ok(existing);
        }
        let created = session.system.create_ticket(ticket).await;
        let created = self
            .observe(&mut session.connection, created, false)
            .await
            .map_err(|e| TicketWriteError::of(connection, e))?;
        tracing::info!(connection = %connection, key = %created.key, marker = %ticket.marker, "ticket opened");
        Ok(created)
    }

    /// Comments on a ticket; `Ok(false)` when the ticket is gone.
    pub async fn comment(&self, ticket: &TicketRef, text: &str) -> Result<bool, TicketWriteError> {
        let mut session = self.open_for_write(&ticket.connection).await?;
        let done = session.system.add_comment(&ticket.key, text).await;
        self.observe(&mut session.connection, done, false)
            .await
            .map_err(|e| TicketWriteError::of(&ticket.connection, e))
    }

    /// Closes a ticket; closing one that is closed or gone succeeds (the outcome says which).
    pub async fn close(&self, ticket: &TicketRef) -> Result<CloseOutcome, TicketWriteError> {
        let mut session = self.open_for_write(&ticket.connection).await?;
        let done = session.system.close_ticket(&ticket.key).await;
        self.observe(&mut session.connection, done, false)
            .await
            .map_err(|e| TicketWriteError::of(&ticket.connection, e))
    }

    async fn open_for_write(&self, id: &str) -> Result<super::Session, TicketWriteError> {
        self.open(id).await.map_err(|e| match e {
            OpenError::Unknown => TicketWriteError::UnknownConnection(id.to_owned()),
            OpenError::Unavailable(m) => TicketWriteError::Failed(id.to_owned(), m),
        })
    }
}
