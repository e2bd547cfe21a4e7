//! `POST /slack/interactions`: where Slack sends a press of a button on one of the Slack app's messages, or the
//! deny dialog's submission. No JWT (Slack cannot send one): the request is proven by the app's signature,
//! which the service has the chat app check on the raw bytes before anything else reads them.
//!
//! The body is read up to [`INTERACTION_BODY_LIMIT`] (413 `body_too_large`, on the declared length first).
//! Every refusal is the §5 error body: 401 `invalid_signature`, `stale_request` or `replayed_request`, 400
//! `malformed_interaction`, 404 `chat_app_not_configured`. A verified interaction answers 200 with an empty
//! body, which is what Slack expects (and what closes the deny dialog); what the person needs to know is told
//! to them privately in Slack.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use super::error::ApiError;
use super::extract::read_body;
use super::{AppState, refuse_declared_oversize};

/// The route, as the template and the API description name it.
pub const INTERACTIONS_ROUTE: &str = "/slack/interactions";
/// The largest interaction read. Slack's payloads are a few kilobytes; a dialog's state stays far below this.
pub const INTERACTION_BODY_LIMIT: usize = 64 * 1024;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route(INTERACTIONS_ROUTE, post(interactions))
}

async fn interactions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    refuse_declared_oversize(&headers, INTERACTION_BODY_LIMIT)?;
    let bytes = read_body(body, INTERACTION_BODY_LIMIT).await?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    state
        .app
        .chat_interaction(
            &state.roles,
            header("x-slack-request-timestamp"),
            header("x-slack-signature"),
            &bytes,
        )
        .await?;
    Ok(StatusCode::OK)
}
