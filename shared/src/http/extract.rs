//! Extractors that turn bad input into the §5 error body: identity, JSON bodies with a size limit, queries.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::domain::Caller;
use crate::domain::identity::{Email, parse_groups};
use crate::service::ErrorKind;

/// Where the caller's identity comes from.
#[derive(Clone, Debug)]
pub enum IdentitySource {
    /// API Gateway's JWT authorizer claims (`requestContext.authorizer.jwt.claims`), as the Lambda functions read
    /// them. Identity headers are ignored.
    JwtClaims {
        email_claim: String,
        groups_claim: String,
    },
    /// `X-Ticketbound-User` / `X-Ticketbound-Groups`, trusted as sent: the local server only.
    TrustedHeaders,
}

pub const USER_HEADER: &str = "x-ticketbound-user";
pub const GROUPS_HEADER: &str = "x-ticketbound-groups";

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(ErrorKind::Unauthenticated, "unauthenticated", message)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (email, groups) = match &state.identity {
            IdentitySource::TrustedHeaders => {
                let header = |name: &str| {
                    parts
                        .headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let email = header(USER_HEADER).ok_or_else(|| {
                    unauthenticated(
                        "send your e-mail in the X-Ticketbound-User header (local mode)",
                    )
                })?;
                (
                    email,
                    header(GROUPS_HEADER)
                        .map(|g| parse_groups(&g))
                        .unwrap_or_default(),
                )
            }
            IdentitySource::JwtClaims {
                email_claim,
                groups_claim,
            } => {
                use lambda_http::request::RequestContext;
                let claims = match parts.extensions.get::<RequestContext>() {
                    Some(RequestContext::ApiGatewayV2(ctx)) => ctx
                        .authorizer
                        .as_ref()
                        .and_then(|a| a.jwt.as_ref())
                        .map(|jwt| &jwt.claims),
                    _ => None,
                };
                let claims = claims.ok_or_else(|| {
                    unauthenticated(
                        "the request carries no verified identity (JWT authorizer claims)",
                    )
                })?;
                let email = claims.get(email_claim).cloned().ok_or_else(|| {
                    unauthenticated(
                        "the token has no e-mail claim; ask your administrator to add it",
                    )
                })?;
                (
                    email,
                    claims
                        .get(groups_claim)
                        .map(|g| parse_groups(g))
                        .unwrap_or_default(),
                )
            }
        };
        if Email::parse(email.trim()).is_err() {
            return Err(unauthenticated(
                "the caller's identity is not an e-mail address",
            ));
        }
        Ok(Caller::new(&email, groups, &state.roles))
    }
}

/// The largest JSON body the portal API reads.
pub const API_BODY_LIMIT: usize = 64 * 1024;

/// Reads the whole body up to `limit` bytes: 413 beyond it.
pub async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            ErrorKind::TooLarge,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    })
}

/// A JSON body: 413 past the limit, 400 when it is not the expected JSON (with serde's reason).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req.into_body(), API_BODY_LIMIT).await?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::new(
                ErrorKind::BadRequest,
                "malformed_request",
                format!("the body is not the expected JSON: {e}"),
            )
        })
    }
}

/// A query string: 400 with the reason when it does not parse.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded_from_str(query)
            .map(QueryParams)
            .map_err(|e| {
                ApiError::new(
                    ErrorKind::BadRequest,
                    "malformed_query",
                    format!("the query string is not valid: {e}"),
                )
            })
    }
}

fn serde_urlencoded_from_str<T: DeserializeOwned>(query: &str) -> Result<T, String> {
    let uri: axum::http::Uri = format!("/?{query}")
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| e.to_string())?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|e| e.body_text())
}
