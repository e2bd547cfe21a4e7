//! What a failed AWS call means for the caller: try again, or stop (DESIGN §2 "retried durably"; issue 9 item 6).
//!
//! Read from the SDK's typed error, never from its message: the `SdkError` variant (a timeout, a failed dispatch,
//! an unreadable response), the error code (`ProvideErrorMetadata::code()`) and the raw HTTP status. Throttling,
//! 5xx and timeouts are [`Fault::Retryable`]: the webhook answers 503 so the sender retries, and the expiry
//! function returns a retryable error. Client errors (validation, access denied, a missing table or schedule
//! group) are [`Fault::Permanent`]: a misconfiguration or a bug, which retrying would only repeat. Conditional
//! failures are not faults at all; each adapter reads them first, as conflicts.
//!
//! The SDK's standard retry (three attempts with backoff) has already run when one of these reaches an adapter,
//! so a retryable fault here means "later", not "at once".

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Whether trying the call again later can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Throttled, a server error, a timeout or a connection that failed: the same call can succeed later.
    Retryable,
    /// The service refused the call for what it is (or it could not be built): the same call fails again.
    Permanent,
}

/// Error codes that mean "too many requests, slow down", across DynamoDB, EventBridge Scheduler and Secrets
/// Manager (the list the SDK's own retry classifier uses, with DynamoDB's transaction-specific ones).
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

/// Classifies a failed call of any of the AWS SDK clients (they share the smithy runtime's `SdkError`).
pub fn classify<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> Fault {
    match error {
        // The attempt (or the whole operation) outlived its timeout: a stalled endpoint.
        SdkError::TimeoutError(_) => Fault::Retryable,
        // Could not connect or the connection broke; "user" means our own configuration is wrong.
        SdkError::DispatchFailure(failure) if failure.is_user() => Fault::Permanent,
        SdkError::DispatchFailure(_) => Fault::Retryable,
        // An answer arrived but could not be read (cut short, not the protocol): a proxy or the service hiccuped.
        SdkError::ResponseError(_) => Fault::Retryable,
        SdkError::ServiceError(e) => service_fault(e.err().code(), e.raw().status().as_u16()),
        // Building the request failed: the same request fails the same way.
        _ => Fault::Permanent,
    }
}

/// Classifies a service's answer by its error code and HTTP status.
pub fn service_fault(code: Option<&str>, status: u16) -> Fault {
    let by_code =
        code.is_some_and(|c| THROTTLING_CODES.contains(&c) || TRANSIENT_CODES.contains(&c));
    if by_code || status == 429 || status >= 500 {
        Fault::Retryable
    } else {
        Fault::Permanent
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
                Fault::Retryable,
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
        assert_eq!(classify(&throttled), Fault::Retryable);
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
        assert_eq!(classify(&invalid), Fault::Permanent);
        let busy = SdkError::service_error(
            PutItemError::ProvisionedThroughputExceededException(
                aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException::builder()
                    .meta(meta("ProvisionedThroughputExceededException"))
                    .build(),
            ),
            raw(400),
        );
        assert_eq!(classify(&busy), Fault::Retryable);
        let failing = SdkError::service_error(
            GetSecretValueError::InternalServiceError(
                aws_sdk_secretsmanager::types::error::InternalServiceError::builder()
                    .meta(meta("InternalServiceError"))
                    .build(),
            ),
            raw(500),
        );
        assert_eq!(classify(&failing), Fault::Retryable);
        let denied = SdkError::service_error(
            GetSecretValueError::DecryptionFailure(
                aws_sdk_secretsmanager::types::error::DecryptionFailure::builder()
                    .meta(meta("DecryptionFailure"))
                    .build(),
            ),
            raw(400),
        );
        assert_eq!(classify(&denied), Fault::Permanent);
    }

    #[test]
    fn server_errors_are_retryable_whatever_their_code() {
        assert_eq!(
            classify(&service("InternalServerError", 500)),
            Fault::Retryable
        );
        assert_eq!(classify(&service("Whatever", 503)), Fault::Retryable);
        for code in ["InternalFailure", "InternalServiceError"] {
            assert_eq!(service_fault(Some(code), 400), Fault::Retryable, "{code}");
        }
        assert_eq!(service_fault(None, 502), Fault::Retryable);
    }

    #[test]
    fn client_errors_are_permanent() {
        for code in [
            "ValidationException",
            "AccessDeniedException",
            "ResourceNotFoundException",
            "UnrecognizedClientException",
        ] {
            assert_eq!(classify(&service(code, 400)), Fault::Permanent, "{code}");
        }
        assert_eq!(service_fault(None, 403), Fault::Permanent);
    }

    #[test]
    fn timeouts_and_broken_connections_are_retryable_but_a_bad_configuration_is_not() {
        let timeout: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::timeout_error("attempt timeout");
        assert_eq!(classify(&timeout), Fault::Retryable);
        let io: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io("connection reset".into()));
        assert_eq!(classify(&io), Fault::Retryable);
        let stalled: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::timeout("connect timeout".into()));
        assert_eq!(classify(&stalled), Fault::Retryable);
        let user: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::user("bad endpoint URL".into()));
        assert_eq!(classify(&user), Fault::Permanent);
    }

    #[test]
    fn an_unreadable_answer_is_retryable_and_an_unbuildable_request_is_not() {
        let cut: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::response_error("body cut short", raw(200));
        assert_eq!(classify(&cut), Fault::Retryable);
        let unbuilt: SdkError<ErrorMetadata, HttpResponse> =
            SdkError::construction_failure("missing table name");
        assert_eq!(classify(&unbuilt), Fault::Permanent);
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
        assert_eq!(classify(&error), Fault::Permanent);
    }
}
