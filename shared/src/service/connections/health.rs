//! What reconciliation and the webhook handlers need from the connections: reading ticket states in batches
//! without flooding a connection's status, and keeping its webhook health (`last_delivery_at`, the last
//! closing that no delivery announced).
//!
//! The status rule for reconciliation (DESIGN §6 status, issue 9): a run writes a connection's status at most
//! once. A 401/403 moves a `connected` connection to `needs_reauthorization` (reconciliation is blind there
//! and an operator must know), but never counts towards `failed` and is not written again while the status
//! already says so; a success heals a connection that is not `connected`. Timeouts, 5xx and rate limits are
//! transient: they are logged and retried by the next run, and never written to the connection.

use std::sync::Arc;
use time::Duration;

use super::Connections;
use crate::domain::connection::{AuthStatus, Connection, MissedClosing};
use crate::ports::{ReconcileBatch, StoreError, TicketStates, TicketSystem, TicketSystemError};

/// A container records a connection's `last_delivery_at` at most this often: deliveries can come many a
/// second, and the health only needs the minute.
const DELIVERY_NOTE_EVERY: Duration = Duration::minutes(1);

/// One connection, open for one reconciliation run.
pub(crate) struct ReconcileSession {
    connection: Connection,
    system: Arc<dyn TicketSystem>,
    /// Whether this run already wrote the connection's status.
    reported: bool,
}

impl ReconcileSession {
    pub(crate) fn batch(&self) -> ReconcileBatch {
        self.system.reconcile_batch()
    }
}

impl Connections {
    /// The ids of every connection, in id order.
    pub(crate) async fn all_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.store.list_connections(100, cursor.as_deref()).await?;
            ids.extend(page.items.into_iter().map(|c| c.settings.id));
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(ids),
            }
        }
    }

    /// Opens `id` for a reconciliation run; `Ok(None)` when it no longer exists, `Err` with a message (never a
    /// secret) when its secrets cannot be read or its client built.
    pub(crate) async fn open_for_reconcile(
        &self,
        id: &str,
    ) -> Result<Option<ReconcileSession>, String> {
        match self.open(id).await {
            Ok(session) => Ok(Some(ReconcileSession {
                connection: session.connection,
                system: session.system,
                reported: false,
            })),
            Err(super::OpenError::Unknown) => Ok(None),
            Err(super::OpenError::Unavailable(m)) => Err(m),
        }
    }

    /// Asks the ticket system for the state of `keys`, keeping the status rule of this module.
    pub(crate) async fn reconcile_states(
        &self,
        session: &mut ReconcileSession,
        keys: &[String],
    ) -> Result<TicketStates, TicketSystemError> {
        let result = session.system.ticket_states(keys).await;
        if session.reported {
            return result;
        }
        let worth_writing = match &result {
            Ok(_) => session.connection.auth.status != AuthStatus::Connected,
            Err(TicketSystemError::Unauthorized { .. }) => {
                session.connection.auth.status == AuthStatus::Connected
            }
            Err(_) => false,
        };
        if worth_writing {
            session.reported = true;
            self.observe(&mut session.connection, result, true).await
        } else {
            result
        }
    }

    /// Records that reconciliation found `ticket` closed with no delivery announcing it.
    pub(crate) async fn note_missed_closing(&self, connection: &str, ticket: &str) {
        let missed = MissedClosing {
            at: self.clock.now(),
            ticket: ticket.to_owned(),
        };
        if let Err(e) = self.store.record_missed_closing(connection, &missed).await {
            tracing::warn!(%connection, error = %e, "could not record the missed closing on the connection");
        }
    }

    /// Records that an authentic delivery arrived for `connection` (at most once a minute per container).
    /// Never fails the delivery: an error is logged.
    pub async fn note_delivery(&self, connection: &str) {
        let now = self.clock.now();
        {
            let Ok(mut noted) = self.deliveries_noted.lock() else {
                return;
            };
            if noted
                .get(connection)
                .is_some_and(|at| now - *at < DELIVERY_NOTE_EVERY)
            {
                return;
            }
            noted.insert(connection.to_owned(), now);
        }
        if let Err(e) = self.store.record_delivery(connection, now).await {
            tracing::warn!(%connection, error = %e, "could not record the delivery time on the connection");
        }
    }
}
