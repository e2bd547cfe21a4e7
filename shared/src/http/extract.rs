//! Extractors that turn bad input into the §5 error body: identity, JSON bodies with a size limit, queries.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::domain::Caller;
use crate::domain::identity::{ClaimedIdentity, Email, missing_email_hint, parse_groups};
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
    /// The same, with every claim name configured (what `ticketbound-api` reads, `Config::claim_names`):
    /// `JwtClaims` is this with no identity claims.
    Jwt(JwtClaimNames),
    /// `X-Ticketbound-User` / `X-Ticketbound-Groups`, trusted as sent: the local server only.
    TrustedHeaders,
}

/// The claims the caller is read from (DESIGN §4, docs/identity.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JwtClaimNames {
    /// `EMAIL_CLAIM`.
    pub email: String,
    /// `GROUPS_CLAIM`.
    pub groups: String,
    /// `ATLASSIAN_ACCOUNT_ID_CLAIM`: the caller's Atlassian account id, exact on Jira Cloud.
    pub atlassian_account_id: Option<String>,
    /// `USERNAME_CLAIM`: the caller's directory user name, looked up exactly on Jira Data Center.
    pub username: Option<String>,
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
        let mut claimed = ClaimedIdentity::default();
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
            IdentitySource::JwtClaims { .. } | IdentitySource::Jwt(_) => {
                let shorthand;
                let names = match &state.identity {
                    IdentitySource::Jwt(names) => names,
                    IdentitySource::JwtClaims {
                        email_claim,
                        groups_claim,
                    } => {
                        shorthand = JwtClaimNames {
                            email: email_claim.clone(),
                            groups: groups_claim.clone(),
                            ..JwtClaimNames::default()
                        };
                        &shorthand
                    }
                    IdentitySource::TrustedHeaders => unreachable!("matched above"),
                };
                let (email_claim, groups_claim) = (&names.email, &names.groups);
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
                    unauthenticated(&missing_email_hint(
                        email_claim,
                        claims.get("iss").map(String::as_str),
                        claims.get("token_use").map(String::as_str),
                    ))
                })?;
                let claim = |name: &Option<String>| {
                    name.as_deref()
                        .and_then(|n| claims.get(n))
                        .map(String::as_str)
                };
                let (found, dropped) = ClaimedIdentity::from_claims(
                    claim(&names.atlassian_account_id),
                    claim(&names.username),
                );
                if !dropped.is_empty() {
                    tracing::warn!(
                        ?dropped,
                        "ignored identity claims that are not of their expected form"
                    );
                }
                claimed = found;
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
        Ok(Caller::new(&email, groups, &state.roles).with_claimed(claimed))
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

/// A JSON body: 413 past the limit, 400 when it is not the expected JSON object (with serde's reason).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req.into_body(), API_BODY_LIMIT).await?;
        // Every body of the API is an object; serde would also fill a struct from an array of its fields in
        // order (`[null, null]`), reading a malformed body as a valid one.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                "malformed_request",
                "the body is not the expected JSON: it must be a JSON object",
            ));
        }
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
