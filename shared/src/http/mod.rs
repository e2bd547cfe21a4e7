//! The HTTP routers: the portal API (`/v1`, DESIGN §5) for `ticketbound-api` and the local server, and the
//! portal page that uses it (DESIGN §12).
//!
//! Every router answers with `X-Content-Type-Options: nosniff` and, unless the answer set its own (the portal
//! page's), `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'`: a JSON answer is never run,
//! styled or framed as a page. A body whose declared `Content-Length` is over the route's limit is refused 413
//! before any of it is read.

pub mod api;
pub mod connection_json;
pub mod connections;
pub mod error;
pub mod extract;
pub mod portal;
pub mod slack;
pub mod webhooks;

use axum::Router;
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

pub use error::ApiError;
pub use extract::{IdentitySource, JwtClaimNames};
pub use portal::Portal;

use crate::domain::identity::RoleGroups;
use crate::service::{ErrorKind, Ticketbound};

/// The policy of an answer that is data, not a page.
pub const JSON_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Adds the headers of a JSON answer (this module's documentation) where the answer has not set its own.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers
        .entry(CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(JSON_CSP));
    response
}

/// Wraps a whole router with [`security_headers`], its fallbacks included.
pub(crate) fn with_security_headers(router: Router) -> Router {
    router.layer(middleware::from_fn(security_headers))
}

/// 413 `body_too_large` when the request declares a body over `limit` bytes: refused on its `Content-Length`,
/// before a byte of it is read. (A body without one is cut at the limit as it is read.)
pub(crate) fn refuse_declared_oversize(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => Err(ApiError::new(
            ErrorKind::TooLarge,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )),
        _ => Ok(()),
    }
}

async fn api_declared_length(request: Request, next: Next) -> Response {
    match refuse_declared_oversize(request.headers(), extract::API_BODY_LIMIT) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// The portal API's routes and Slack's interactions, refusing a declared body over their limit.
fn api_routes() -> Router<AppState> {
    api::routes()
        .merge(connections::routes())
        .merge(slack::routes())
        .route_layer(middleware::from_fn(api_declared_length))
}

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub app: Ticketbound,
    pub identity: IdentitySource,
    pub roles: RoleGroups,
}

/// The portal API router, with JSON 404 and 405 answers.
pub fn api_router(state: AppState) -> Router {
    with_security_headers(
        api_routes()
            .fallback(api::no_route)
            .method_not_allowed_fallback(api::wrong_method)
            .with_state(state),
    )
}

/// What the API function serves on AWS: the portal API and the portal page (same origin, so no CORS).
pub fn api_router_with_portal(state: AppState, portal: Portal) -> Router {
    with_security_headers(
        api_routes()
            .with_state(state)
            .merge(portal::routes(portal))
            .fallback(api::no_route)
            .method_not_allowed_fallback(api::wrong_method),
    )
}

/// Everything the local server serves: the portal API, both webhook routes, and the portal page at `/`.
pub fn local_router(state: AppState) -> Router {
    let webhooks = webhooks::routes(state.app.clone());
    let portal = portal::routes(Portal::local(&state.roles));
    with_security_headers(
        api_routes()
            .with_state(state)
            .merge(webhooks)
            .merge(portal)
            .fallback(api::no_route)
            .method_not_allowed_fallback(api::wrong_method),
    )
}
