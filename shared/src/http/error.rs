//! The one error response of the API (DESIGN §5): `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::service::{ErrorKind, ServiceError};

/// An error as the client sees it. A 500 says nothing internal: the detail is logged instead.
#[derive(Debug)]
pub struct ApiError(pub ServiceError);

impl ApiError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self(ServiceError::new(kind, code, message))
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self(e)
    }
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = status_of(e.kind);
        let message = if e.kind == ErrorKind::Internal {
            tracing::error!(code = e.code, detail = %e.message, "internal error");
            "something went wrong on our side; it has been logged".to_owned()
        } else {
            if e.kind == ErrorKind::Unavailable {
                tracing::warn!(code = e.code, detail = %e.message, "dependency unavailable");
            }
            e.message
        };
        (
            status,
            Json(serde_json::json!({"error": {"code": e.code, "message": message}})),
        )
            .into_response()
    }
}
