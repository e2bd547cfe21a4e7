//! `POST /webhooks/jira/{connection}` and `POST /webhooks/freshservice/{connection}` (DESIGN §9).
//!
//! In order: the body is read up to 2 MiB (413 beyond); the connection is looked up (404); authenticity is
//! checked on the raw bytes in constant time (401, nothing changes); only then is the body parsed (400). A Jira
//! delivery already handled (same `X-Atlassian-Webhook-Identifier`) answers 200 at once. The answer comes once
//! every bound grant is durably ended and says how many; a failure answers 503 so the sender retries (endings
//! are idempotent: a retry finds them closed). A reopened ticket never restores access: nothing here opens a
//! grant.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use time::Duration;

use super::error::ApiError;
use super::extract::read_body;
use crate::domain::EndReason;
use crate::domain::TicketRef;
use crate::domain::ids::is_slug;
use crate::domain::ticket_events::{Closing, interpret_freshservice, interpret_jira};
use crate::domain::webhook_auth::{
    basic_auth_password, hub_signature_matches, shared_secret_matches,
};
use crate::ports::{TicketFamily, WebhookConnection, WebhookConnections};
use crate::service::{ErrorKind, Ticketbound};

/// The largest delivery read.
pub const WEBHOOK_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// How long a Jira delivery id is remembered: Jira retries for well under a day.
const DEDUPE_FOR: Duration = Duration::hours(48);

pub const JIRA_ROUTE: &str = "/webhooks/jira/{connection}";
pub const FRESHSERVICE_ROUTE: &str = "/webhooks/freshservice/{connection}";

#[derive(Clone)]
pub struct WebhookState {
    pub app: Ticketbound,
    pub connections: Arc<dyn WebhookConnections>,
}

/// The Jira webhook route alone (`ticketbound-jira-webhook`).
pub fn jira_router(state: WebhookState) -> Router {
    Router::new()
        .route(JIRA_ROUTE, post(jira))
        .fallback(super::api::no_route)
        .with_state(state)
}

/// The Freshservice webhook route alone (`ticketbound-freshservice-webhook`).
pub fn freshservice_router(state: WebhookState) -> Router {
    Router::new()
        .route(FRESHSERVICE_ROUTE, post(freshservice))
        .fallback(super::api::no_route)
        .with_state(state)
}

fn unauthorized() -> ApiError {
    ApiError::new(
        ErrorKind::Unauthenticated,
        "invalid_signature",
        "the delivery is not signed with, and does not carry, an active webhook secret of this connection",
    )
}

async fn connection_for(
    state: &WebhookState,
    id: &str,
    family: TicketFamily,
) -> Result<WebhookConnection, ApiError> {
    let unknown = || {
        ApiError::new(
            ErrorKind::NotFound,
            "unknown_connection",
            format!(
                "there is no {} connection `{id}`",
                if family == TicketFamily::Jira {
                    "Jira"
                } else {
                    "Freshservice"
                }
            ),
        )
    };
    if !is_slug(id) {
        return Err(unknown());
    }
    match state.connections.webhook_connection(id).await? {
        Some(c) if c.family == family => Ok(c),
        _ => Err(unknown()),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn parse(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            ErrorKind::BadRequest,
            "malformed_json",
            format!("the body is not JSON: {e}"),
        )
    })
}

fn ignored(reason: &str) -> Response {
    (
        StatusCode::OK,
        Json(serde_json::json!({"ignored": true, "reason": reason})),
    )
        .into_response()
}

async fn close(
    state: &WebhookState,
    connection: &str,
    key: &str,
    closing: Closing,
) -> Result<Response, ApiError> {
    let reason = match closing {
        Closing::Closed => EndReason::TicketClosed,
        Closing::Deleted => EndReason::TicketDeleted,
    };
    let ticket = TicketRef {
        connection: connection.to_owned(),
        key: key.to_owned(),
    };
    let outcome = state.app.close_ticket(&ticket, reason).await?;
    Ok((StatusCode::OK, Json(serde_json::json!({"ticket": key, "end_reason": reason, "ended": outcome.ended, "cancelled": outcome.cancelled, "already_closed": outcome.already_closed}))).into_response())
}

async fn jira(
    State(state): State<WebhookState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, WEBHOOK_BODY_LIMIT).await?;
    let connection = connection_for(&state, &id, TicketFamily::Jira).await?;
    let authentic = match (
        header(&headers, "x-hub-signature"),
        header(&headers, "x-ticketbound-secret"),
    ) {
        (Some(signature), _) if hub_signature_matches(&connection.secrets, signature, &bytes) => {
            true
        }
        (_, Some(secret)) => shared_secret_matches(&connection.secrets, secret),
        _ => false,
    };
    if !authentic {
        tracing::warn!(connection = %id, "Jira delivery refused: bad or missing signature");
        return Err(unauthorized());
    }
    let delivery = header(&headers, "x-atlassian-webhook-identifier")
        .filter(|d| !d.is_empty() && d.len() <= 200)
        .map(|d| format!("jira:{id}:{d}"));
    if let Some(key) = &delivery
        && state
            .app
            .store
            .delivery_seen(key, state.app.clock.now())
            .await
            .map_err(crate::service::ServiceError::from)?
    {
        return Ok(ignored("duplicate delivery"));
    }
    let json = parse(&bytes)?;
    let change = interpret_jira(&json, &connection.closed_statuses).map_err(|e| {
        ApiError::new(
            ErrorKind::BadRequest,
            "unrecognized_delivery",
            format!("{e}; send a Jira webhook or an Automation body naming the issue key"),
        )
    })?;
    let response = match change.closing {
        None => ignored(&format!(
            "{} for {} closes nothing",
            change.source,
            if change.key.is_empty() {
                "no issue"
            } else {
                &change.key
            }
        )),
        Some(closing) => close(&state, &id, &change.key, closing).await?,
    };
    if let Some(key) = delivery {
        // Remembered only once handled, so a delivery that failed half-way is processed again on retry.
        if let Err(e) = state
            .app
            .store
            .remember_delivery(&key, state.app.clock.now() + DEDUPE_FOR)
            .await
        {
            tracing::warn!(error = %e, "could not record the delivery id; a retry will be handled again (harmless)");
        }
    }
    Ok(response)
}

async fn freshservice(
    State(state): State<WebhookState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, WEBHOOK_BODY_LIMIT).await?;
    let connection = connection_for(&state, &id, TicketFamily::Freshservice).await?;
    let presented = header(&headers, "x-ticketbound-secret")
        .map(str::to_owned)
        .or_else(|| header(&headers, "authorization").and_then(basic_auth_password));
    if !presented.is_some_and(|p| shared_secret_matches(&connection.secrets, &p)) {
        tracing::warn!(connection = %id, "Freshservice delivery refused: bad or missing secret");
        return Err(unauthorized());
    }
    let json = parse(&bytes)?;
    let ticket_id = interpret_freshservice(&json).map_err(|e| {
        ApiError::new(
            ErrorKind::BadRequest,
            "unrecognized_delivery",
            format!("{e}; use the body template in the README"),
        )
    })?;
    // The body only says "ticket N changed": the ticket system says whether it is closed.
    match state.connections.ticket_closing(&id, &ticket_id).await? {
        None => Ok(ignored(&format!("ticket {ticket_id} is open"))),
        Some(closing) => close(&state, &id, &ticket_id, closing).await,
    }
}
