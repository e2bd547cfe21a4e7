//! The [`TicketSystems`] of a deployment without ticket systems: every connection is refused. The application
//! always has its connections port; where none are offered (a test of the grant lifecycle alone, say), this
//! real implementation says so instead of an optional port and a branch in every use case.

use std::sync::Arc;

use crate::domain::connection::{ConnectionKind, ConnectionSecrets, ConnectionSettings};
use crate::ports::{TicketSystem, TicketSystemError, TicketSystemKind, TicketSystems};

/// Refuses every connection: "no ticket systems here".
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTicketSystems;

impl TicketSystems for NoTicketSystems {
    fn connect(
        &self,
        settings: &ConnectionSettings,
        _secrets: &ConnectionSecrets,
    ) -> Result<Arc<dyn TicketSystem>, TicketSystemError> {
        Err(TicketSystemError::Unavailable(format!(
            "no ticket systems here: this deployment cannot reach connection `{}`",
            settings.id
        )))
    }

    /// What each kind of system means (its settings and rules) holds without a client.
    fn kind(&self, kind: ConnectionKind) -> &'static dyn TicketSystemKind {
        super::ticket_systems::system(kind)
    }

    fn kinds(&self) -> Vec<ConnectionKind> {
        super::ticket_systems::kinds()
    }
}
