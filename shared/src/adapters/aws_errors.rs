//! What a failed AWS call means for the caller, in the engine's one classification
//! ([`FailureClass`], `domain/side_effect.rs`): try again later, the other side is busy with a concurrent change,
//! or stop.
//!
//! Read from the SDK's typed error, never from its message: the `SdkError` variant (a timeout, a failed dispatch,
//! an unreadable response), the error code (`ProvideErrorMetadata::code()`) and the raw HTTP status.
//!
//! - **Retryable**: throttling (whatever status it came with: DynamoDB and Secrets Manager answer 400 with a code,
//!   Scheduler and IAM Identity Center 429), a failure on the service's side (5xx or its code), a timeout, a
//!   connection that failed, an answer cut short. The webhook answers 503 so the sender retries, the expiry
//!   function returns a retryable error, a side effect is tried again at the engine's backoff.
//! - **Conflict**: `ConflictException` (IAM Identity Center while another operation changes the same permission
//!   set or assignment) and DynamoDB's `TransactionConflictException`: retried like a retryable fault. Callers
//!   that know what a conflict means for their call (an assignment that already exists, a conditional write that
//!   lost) read it first.
//! - **Permanent**: validation, access denied, a missing resource, bad credentials, a request that could not be
//!   built: a misconfiguration or a bug, which retrying would only repeat.
//!
//! Any other code is classified by its HTTP status through [`classify_http_status`], the same table the
//! provisioner and notification calls use, so an AWS answer and an HTTP answer with one status mean one thing.
//!
//! The SDK's standard retry (three attempts with backoff) has already run when one of these reaches an adapter,
//! so a retryable fault here means "later", not "at once".

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::domain::side_effect::{FailureClass, classify_http_status};

/// Error codes that mean "too many requests, slow down", across DynamoDB, EventBridge Scheduler, Secrets
/// Manager and IAM Identity Center (the list the SDK's own retry classifier uses, with DynamoDB's
/// transaction-specific ones).
const THROTTLING_CODES: [&str; 10] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionInProgressException",
    "LimitExceededException",
    "RequestThrottled",
];

/// Error codes of a failure on the service's side, whatever status they came with.
const TRANSIENT_CODES: [&str; 8] = [
    "InternalServerError",
    "InternalServerException",
    "InternalServiceError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Error codes of a concurrent change to the same thing, whatever status they came with.
const CONFLICT_CODES: [&str; 2] = ["ConflictException", "TransactionConflictException"];

/// Error codes the request itself earns, whatever status they came with (services answer them with 400, 403 or
/// 404; named so that none is ever read as "try again").
const PERMANENT_CODES: [&str; 8] = [
    "ValidationException",
    "AccessDeniedException",
    "AccessDenied",
    "ResourceNotFoundException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ServiceQuotaExceededException",
    "SerializationException",
];

/// Classifies a failed call of any of the AWS SDK clients (they share the smithy runtime's `SdkError`).
pub fn classify<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> FailureClass {
    match error {
        // The attempt (or the whole operation) outlived its timeout: a stalled endpoint.
        SdkError::TimeoutError(_) => FailureClass::Retryable,
        // Could not connect or the connection broke; "user" means our own configuration is wrong.
        SdkError::DispatchFailure(failure) if failure.is_user() => FailureClass::Permanent,
        SdkError::DispatchFailure(_) => FailureClass::Retryable,
        // An answer arrived but could not be read (cut short, not the protocol): a proxy or the service hiccuped.
        SdkError::ResponseError(_) => FailureClass::Retryable,
        SdkError::ServiceError(e) => service_fault(e.err().code(), e.raw().status().as_u16()),
        // Building the request failed: the same request fails the same way.
        _ => FailureClass::Permanent,
    }
}

/// Classifies a service's answer by its error code, then by its HTTP status.
pub fn service_fault(code: Option<&str>, status: u16) -> FailureClass {
    match code {
        Some(c) if THROTTLING_CODES.contains(&c) || TRANSIENT_CODES.contains(&c) => {
            FailureClass::Retryable
        }
        Some(c) if CONFLICT_CODES.contains(&c) => FailureClass::Conflict,
        Some(c) if PERMANENT_CODES.contains(&c) => FailureClass::Permanent,
        // An error answer with a 2xx status is a protocol bug: the same call gets the same answer.
        _ => classify_http_status(status).unwrap_or(FailureClass::Permanent),
    }
}

/// `code: message` of a failed call for logs and error details (never a secret: AWS messages name resources and
/// reasons, not values).
pub fn describe<E: ProvideErrorMetadata + std::fmt::Display>(e: &E) -> String {
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::{ConnectorError, ErrorMetadata};
    use aws_smithy_types::body::SdkBody;

    /// A raw HTTP answer with `status` (what the SDK keeps beside a parsed error).
    pub(crate) fn raw(status: u16) -> HttpResponse {
        HttpResponse::new(
            axum::http::StatusCode::from_u16(status)
                .expect("valid status")
                .into(),
            SdkBody::empty(),
        )
    }

    /// A service error with `code`, as the SDK parses an unmodelled one.
    pub(crate) fn service(code: &str, status: u16) -> SdkError<ErrorMetadata, HttpResponse> {
        SdkError::service_error(ErrorMetadata::builder().code(code).build(), raw(status))
    }

    #[test]
    fn throttling_in_every_services_wire_format_is_retryable() {
        // DynamoDB and Secrets Manager answer 400 with a code; Scheduler answers 429.
        for (code, status) in [
            ("ThrottlingException", 400),
            ("ProvisionedThroughputExceededException", 400),
            ("RequestLimitExceeded", 400),
            ("ThrottlingException", 429),
        ] {
            assert_eq!(
                classify(&service(code, status)),
                FailureClass::Retryable,
                "{code} {status}"
            );
        }
    }

    #[test]
    fn each_sdks_modelled_errors_classify_the_same_way() {
        // Built as each SDK's deserializer builds them: the modelled error, with the wire's code in its metadata.
        let meta = |code: &str| ErrorMetadata::builder().code(code).build();
        use aws_sdk_dynamodb::operation::put_item::PutItemError;
        use aws_sdk_scheduler::operation::create_schedule::CreateScheduleError;
        use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
        let throttled = SdkError::service_error(
            CreateScheduleError::ThrottlingException(
                aws_sdk_scheduler::types::error::ThrottlingException::builder()
                    .message("Rate exceeded")
                    .meta(meta("ThrottlingException"))
                    .build()
                    .expect("message set"),
            ),
            raw(429),
        );
        assert_eq!(classify(&throttled), FailureClass::Retryable);
        let invalid = SdkError::service_error(
            CreateScheduleError::ValidationException(
                aws_sdk_scheduler::types::error::ValidationException::builder()
                    .message("bad expression")
                    .meta(meta("ValidationException"))
                    .build()
                    .expect("message set"),
            ),
            raw(400),
        );
        assert_eq!(classify(&invalid), FailureClass::Permanent);
        let busy = SdkError::service_error(
            PutItemError::ProvisionedThroughputExceededException(
                aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException::builder()
                    .meta(meta("ProvisionedThroughputExceededException"))
                    .build(),
            ),
            raw(400),
        );
        assert_eq!(classify(&busy), FailureClass::Retryable);
        let failing = SdkError::service_error(
            GetSecretValueError::InternalServiceError(
                aws_sdk_secretsmanager::types::error::InternalServiceError::builder()
                    .meta(meta("InternalServiceError"))
                    .build(),
            ),
            raw(500),
        );
        assert_eq!(classify(&failing), FailureClass::Retryable);
        let denied = SdkError::service_error(
            GetSecretValueError::DecryptionFailure(
                aws_sdk_secretsmanager::types::error::DecryptionFailure::builder()
                    .meta(meta("DecryptionFailure"))
                    .build(),
            ),
            raw(400),
        );
        assert_eq!(classify(&denied), FailureClass::Permanent);
    }

    #[test]
    fn server_errors_are_retryable_whatever_their_code() {
        assert_eq!(
            classify(&service("InternalServerError", 500)),
            FailureClass::Retryable
        );
        assert_eq!(classify(&service("Whatever", 503)), FailureClass::Retryable);
        for code in ["InternalFailure", "InternalServiceError"] {
            assert_eq!(
                service_fault(Some(code), 400),
                FailureClass::Retryable,
                "{code}"
            );
        }
        assert_eq!(service_fault(None, 502), FailureClass::Retryable);
    }

    #[test]
    fn client_errors_are_permanent() {
        for code in [
            "ValidationException",
            "AccessDeniedException",
            "ResourceNotFoundException",
            "UnrecognizedClientException",
        ] {
            assert_eq!(
                classify(&service(code, 400)),
                FailureClass::Permanent,
                "{code}"
            );
        }
        assert_eq!(service_fault(None, 403), FailureClass::Permanent);
        // IAM Identity Center answers a missing permission set 404 and a refused call 403.
        assert_eq!(
            classify(&service("ResourceNotFoundException", 404)),
            FailureClass::Permanent
        );
        assert_eq!(
            classify(&service("AccessDeniedException", 403)),
            FailureClass::Permanent
        );
    }

    #[test]
    fn a_concurrent_change_to_the_same_thing_is_a_conflict_the_engine_retries() {
        // IAM Identity Center: another operation on the permission set is in progress.
        let busy = SdkError::service_error(
            aws_sdk_ssoadmin::operation::provision_permission_set::ProvisionPermissionSetError::ConflictException(
                aws_sdk_ssoadmin::types::error::ConflictException::builder()
                    .message("another operation is in progress")
                    .meta(ErrorMetadata::builder().code("ConflictException").build())
                    .build(),
            ),
            raw(409),
        );
        assert_eq!(classify(&busy), FailureClass::Conflict);
        assert_eq!(
            classify(&service("TransactionConflictException", 400)),
            FailureClass::Conflict
        );
        // An unknown code with 409 is a conflict by the HTTP table.
        assert_eq!(service_fault(None, 409), FailureClass::Conflict);
        assert!(
            crate::domain::side_effect::Failure {
                class: FailureClass::Conflict,
                ..crate::domain::side_effect::Failure::retryable("busy")
            }
            .is_retried()
        );
    }

    #[test]
    fn identity_center_throttling_and_server_errors_are_retryable() {
        for (code, status) in [
            ("ThrottlingException", 429),
            ("InternalServerException", 500),
        ] {
            assert_eq!(
                classify(&service(code, status)),
                FailureClass::Retryable,
                "{code} {status}"
            );
        }
        // Unknown codes fall back to the one HTTP table: 408 and 429 are retryable, other 4xx permanent.
        assert_eq!(service_fault(Some("Odd"), 408), FailureClass::Retryable);
        assert_eq!(service_fault(Some("Odd"), 429), FailureClass::Retryable);
        assert_eq!(service_fault(Some("Odd"), 400), FailureClass::Permanent);
    }

    #[test]
    fn timeouts_and_broken_connections_are_retryable_but_a_bad_configuration_is_not() {
        let timeout: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::timeout_error("attempt timeout");
        assert_eq!(classify(&timeout), FailureClass::Retryable);
        let io: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io("connection reset".into()));
        assert_eq!(classify(&io), FailureClass::Retryable);
        let stalled: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::timeout("connect timeout".into()));
        assert_eq!(classify(&stalled), FailureClass::Retryable);
        let user: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::user("bad endpoint URL".into()));
        assert_eq!(classify(&user), FailureClass::Permanent);
    }

    #[test]
    fn an_unreadable_answer_is_retryable_and_an_unbuildable_request_is_not() {
        let cut: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::response_error("body cut short", raw(200));
        assert_eq!(classify(&cut), FailureClass::Retryable);
        let unbuilt: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::construction_failure("missing table name");
        assert_eq!(classify(&unbuilt), FailureClass::Permanent);
    }

    #[test]
    fn the_message_never_decides() {
        let error = SdkError::service_error(
            ErrorMetadata::builder()
                .code("ValidationException")
                .message("Rate exceeded; throttling; try again")
                .build(),
            raw(400),
        );
        assert_eq!(classify(&error), FailureClass::Permanent);
    }
}
