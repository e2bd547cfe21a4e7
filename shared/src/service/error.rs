//! The use cases' error: what went wrong in the user's terms, with the §5 code and the HTTP class it maps to.

use crate::domain::text::{self, UnsafeText};
use crate::ports::{SchedulerError, StoreError, TicketCheckError};

/// The HTTP class of an error (DESIGN §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed.
    BadRequest,
    /// 401: no identity.
    Unauthenticated,
    /// 403: not allowed.
    Forbidden,
    /// 404
    NotFound,
    /// 409: the grant (or item) is in the wrong state.
    Conflict,
    /// 413
    TooLarge,
    /// 422: valid JSON that breaks a rule.
    Unprocessable,
    /// 503: a dependency (ticket system, scheduler, store) could not be reached; nothing changed.
    Unavailable,
    /// 500: a bug or an unreadable item; logged, never described to the client.
    Internal,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
}

impl ServiceError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unprocessable, code, message)
    }
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, code, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal_error", message)
    }

    pub fn grant_not_found(id: &str) -> Self {
        Self::not_found(
            "grant_not_found",
            format!("there is no grant `{id}` that you can see"),
        )
    }
}

/// Text that could read differently from what it holds: a 422 naming the field.
impl From<UnsafeText> for ServiceError {
    fn from(e: UnsafeText) -> Self {
        Self::unprocessable(text::CODE, e.to_string())
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidCursor => Self::bad_request(
                "invalid_cursor",
                "the `cursor` is not one this list gave out; start again without it",
            ),
            StoreError::Unavailable(m) => Self::unavailable(
                "store_unavailable",
                format!("the store could not be reached ({m}); nothing was changed, try again"),
            ),
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<SchedulerError> for ServiceError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::Unavailable(m) => Self::unavailable(
                "scheduler_unavailable",
                format!("the scheduler could not be reached ({m}); nothing was changed, try again"),
            ),
            // A misconfiguration: logged in full, never described to the client.
            SchedulerError::Rejected(_) => Self::internal(e.to_string()),
        }
    }
}

impl From<TicketCheckError> for ServiceError {
    fn from(e: TicketCheckError) -> Self {
        let code = match &e {
            TicketCheckError::UnknownConnection(_) => "unknown_connection",
            TicketCheckError::NotFound(..) => "ticket_not_found",
            TicketCheckError::Closed(_) => "ticket_closed",
            TicketCheckError::NotAssigned(..) | TicketCheckError::Unassigned(_) => {
                "ticket_not_assigned_to_requester"
            }
            TicketCheckError::RequesterNotVerifiable(..) => "requester_not_verifiable",
            TicketCheckError::Unavailable(_) | TicketCheckError::RateLimited(..) => {
                return Self::unavailable(
                    "ticket_system_unavailable",
                    format!("{e}; nothing was changed, try again"),
                );
            }
        };
        Self::unprocessable(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retryable_dependency_failure_is_a_503_and_a_refused_call_is_a_500() {
        let cases = [
            (
                ServiceError::from(StoreError::Unavailable("ThrottlingException".into())),
                ErrorKind::Unavailable,
                "store_unavailable",
            ),
            (
                ServiceError::from(SchedulerError::Unavailable("ThrottlingException".into())),
                ErrorKind::Unavailable,
                "scheduler_unavailable",
            ),
            (
                ServiceError::from(StoreError::Rejected("AccessDeniedException".into())),
                ErrorKind::Internal,
                "internal_error",
            ),
            (
                ServiceError::from(SchedulerError::Rejected("ValidationException".into())),
                ErrorKind::Internal,
                "internal_error",
            ),
        ];
        for (error, kind, code) in cases {
            assert_eq!((error.kind, error.code), (kind, code), "{error}");
        }
    }

    #[test]
    fn the_old_scheduler_error_constructor_is_retryable() {
        assert!(matches!(
            crate::ports::SchedulerError::Unavailable("database is locked".into()),
            SchedulerError::Unavailable(_)
        ));
    }
}
