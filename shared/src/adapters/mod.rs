//! Adapters: one module per technology, each implementing ports from [`crate::ports`].
//!
//! The AWS adapters are compiled with the crate feature `aws` (the Lambda functions), the embedded ones with
//! `embedded` (the local server): a Lambda build then compiles no SQLite, and the local binary links no AWS
//! SDK. The HTTP adapters and the local secret file are always there.

#[cfg(feature = "aws")]
pub mod aws_errors;
#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod freshservice;
#[cfg(feature = "aws")]
pub mod identity_center;
pub mod jira;
pub(crate) mod lenient_json;
#[cfg(feature = "embedded")]
pub mod local_scheduler;
pub mod no_ticket_systems;
pub mod notify;
pub mod provisioner;
#[cfg(feature = "aws")]
pub mod scheduler;
pub mod secrets;
pub mod servicenow;
pub mod ticket_http;
pub mod ticket_systems;
pub mod tls;

#[cfg(any(feature = "aws", feature = "embedded"))]
use base64::Engine;
#[cfg(any(feature = "aws", feature = "embedded"))]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[cfg(any(feature = "aws", feature = "embedded"))]
use crate::ports::StoreError;

/// Opaque pagination cursors: URL-safe base64 of a small JSON value, so clients cannot read or forge them
/// into anything but "not a cursor". Only the stores page (DynamoDB with `aws`, SQLite with `embedded`).
#[cfg(any(feature = "aws", feature = "embedded"))]
pub(crate) fn encode_cursor<T: serde::Serialize>(value: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("cursor values serialize"))
}

#[cfg(any(feature = "aws", feature = "embedded"))]
pub(crate) fn decode_cursor<T: serde::de::DeserializeOwned>(cursor: &str) -> Result<T, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::InvalidCursor)?;
    serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)
}
