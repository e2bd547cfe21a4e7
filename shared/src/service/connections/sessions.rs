//! Sessions and authorization status: a connection opened for calls with its credentials, and
//! [`Connections::observe`], which every call to a ticket system goes through to keep the connection's status
//! (`connected`, `needs_reauthorization`, then `failed`; anything else only records `last_error`).

use super::*;

/// A connection ready for calls.
pub(super) struct Session {
    pub(super) connection: Connection,
    pub(super) system: Arc<dyn TicketSystem>,
}

/// Why a session could not open.
pub(super) enum OpenError {
    Unknown,
    Unavailable(String),
}

impl Connections {
    pub(super) async fn load(&self, id: &str) -> Result<Connection, ServiceError> {
        if !is_slug(id) {
            return Err(connection_not_found(id));
        }
        self.store
            .get_connection(id)
            .await?
            .ok_or_else(|| connection_not_found(id))
    }

    pub(super) async fn open(&self, id: &str) -> Result<Session, OpenError> {
        if !is_slug(id) {
            return Err(OpenError::Unknown);
        }
        let connection = self
            .store
            .get_connection(id)
            .await
            .map_err(|e| OpenError::Unavailable(e.to_string()))?
            .ok_or(OpenError::Unknown)?;
        let secrets = self
            .secrets
            .get(id)
            .await
            .map_err(|e| OpenError::Unavailable(e.to_string()))?
            .ok_or_else(|| {
                OpenError::Unavailable(format!(
                    "connection `{id}` has no stored credentials; an admin must set them again with PATCH"
                ))
            })?;
        let system = self
            .systems
            .connect(&connection.settings, &secrets)
            .map_err(|e| OpenError::Unavailable(e.to_string()))?;
        Ok(Session { connection, system })
    }

    pub(super) async fn open_for_api(&self, id: &str) -> Result<Session, ServiceError> {
        self.open(id).await.map_err(|e| match e {
            OpenError::Unknown => connection_not_found(id),
            OpenError::Unavailable(m) => ServiceError::unavailable("ticket_system_unavailable", m),
        })
    }

    pub(super) async fn open_for_check(&self, id: &str) -> Result<Session, TicketCheckError> {
        self.open(id).await.map_err(|e| match e {
            OpenError::Unknown => TicketCheckError::UnknownConnection(id.to_owned()),
            OpenError::Unavailable(m) => TicketCheckError::Unavailable(m),
        })
    }

    /// Records what a call said about the credentials, then hands its result on. A failure to record is
    /// logged, never allowed to change the caller's answer.
    pub(super) async fn observe<T>(
        &self,
        connection: &mut Connection,
        result: Result<T, TicketSystemError>,
        always: bool,
    ) -> Result<T, TicketSystemError> {
        let now = self.clock.now();
        let auth = &connection.auth;
        let next = match &result {
            Ok(_) => {
                let fresh = auth.status == AuthStatus::Connected
                    && auth.last_error.is_none()
                    && auth
                        .last_verified_at
                        .is_some_and(|at| now - at < VERIFIED_REFRESH);
                (always || !fresh).then(|| auth.succeeded(now))
            }
            Err(e @ TicketSystemError::Unauthorized { .. }) => {
                Some(auth.auth_failed(&e.to_string()))
            }
            // A cursor the caller sent back wrong says nothing about the connection.
            Err(TicketSystemError::InvalidPageToken(_)) => None,
            // A permission one write lacks (403) is that write's problem: the credentials work, the status stays.
            Err(e) => Some(auth.unreachable(&e.to_string())),
        };
        if let Some(next) = next {
            if next.status != connection.auth.status {
                tracing::warn!(connection = %connection.settings.id, from = ?connection.auth.status, to = ?next.status, "connection status changed");
            }
            match self.store.update_auth(&connection.settings.id, &next).await {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(connection = %connection.settings.id, error = %e, "could not record the connection's status")
                }
            }
            connection.auth = next;
        }
        result
    }
}

pub(super) fn connection_not_found(id: &str) -> ServiceError {
    ServiceError::not_found(
        "connection_not_found",
        format!("there is no connection `{id}`"),
    )
}

pub(super) fn secret_store_error(e: SecretStoreError) -> ServiceError {
    match e {
        SecretStoreError::Unavailable(m) => ServiceError::unavailable(
            "secret_store_unavailable",
            format!("the secret store could not be reached ({m}); nothing was changed, try again"),
        ),
        SecretStoreError::Corrupt(m) | SecretStoreError::Rejected(m) => ServiceError::internal(m),
    }
}

/// A ticket-system failure as the portal API answers it: always 503, since it is not the caller's doing.
pub(super) fn system_error(id: &str, e: TicketSystemError) -> ServiceError {
    match e {
        TicketSystemError::Unauthorized { .. } => ServiceError::unavailable(
            "connection_needs_reauthorization",
            format!(
                "the ticket system refused the credentials of connection `{id}`; an admin must update them (PATCH /v1/connections/{id}) and verify"
            ),
        ),
        other => ServiceError::unavailable(
            "ticket_system_unavailable",
            format!("connection `{id}`: {other}"),
        ),
    }
}

pub(super) fn unavailable_check(id: &str, e: TicketSystemError) -> TicketCheckError {
    match e {
        TicketSystemError::Unauthorized { .. } => TicketCheckError::Unavailable(format!(
            "the ticket system refused the credentials of connection `{id}`; an admin must update them"
        )),
        TicketSystemError::RateLimited {
            message,
            retry_after,
        } => TicketCheckError::RateLimited(message, retry_after),
        other => TicketCheckError::Unavailable(other.to_string()),
    }
}

pub(super) fn unprocessable(code: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::unprocessable(code, message)
}
