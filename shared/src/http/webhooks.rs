//! `POST /webhooks/jira/{connection}` and `POST /webhooks/freshservice/{connection}` (DESIGN §9).
//!
//! In order: the body is read up to 2 MiB (413 beyond); the connection is looked up (404); authenticity is
//! checked on the raw bytes in constant time (401, nothing changes); only then is the body parsed (400). A Jira
//! delivery already handled (same `X-Atlassian-Webhook-Identifier`) answers 200 at once. The answer comes once
//! every bound grant is durably ended and says how many; a failure answers 503 so the sender retries (endings
//! are idempotent: a retry finds them closed). A reopened ticket never restores access: nothing here opens a
//! grant.

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
use crate::adapters::freshservice::events::interpret_freshservice;
use crate::adapters::jira::events::interpret_jira;
use crate::domain::connection::{
    ClosedStatuses, ConnectionKind, ConnectionSettings, TicketState, WebhookSecrets,
};
use crate::domain::ticket_events::Closing;
use crate::domain::webhook_auth::basic_auth_password;
use crate::domain::{EndReason, TicketRef};
use crate::service::{ErrorKind, ServiceError, Ticketbound};

/// The largest delivery read.
pub const WEBHOOK_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// How long a Jira delivery id is remembered: Jira retries for well under a day.
const DEDUPE_FOR: Duration = Duration::hours(48);

pub const JIRA_ROUTE: &str = "/webhooks/jira/{connection}";
pub const FRESHSERVICE_ROUTE: &str = "/webhooks/freshservice/{connection}";

/// The Jira webhook route alone, with JSON 404/405 answers (`ticketbound-jira-webhook`).
pub fn jira_router(app: Ticketbound) -> Router {
    with_fallbacks(Router::new().route(JIRA_ROUTE, post(jira)).with_state(app))
}

/// The Freshservice webhook route alone, with JSON 404/405 answers (`ticketbound-freshservice-webhook`).
pub fn freshservice_router(app: Ticketbound) -> Router {
    with_fallbacks(
        Router::new()
            .route(FRESHSERVICE_ROUTE, post(freshservice))
            .with_state(app),
    )
}

/// Both webhook routes without fallbacks, to merge into the local server's router.
pub fn routes(app: Ticketbound) -> Router {
    Router::new()
        .route(JIRA_ROUTE, post(jira))
        .route(FRESHSERVICE_ROUTE, post(freshservice))
        .with_state(app)
}

fn with_fallbacks(router: Router) -> Router {
    router
        .fallback(super::api::no_route)
        .method_not_allowed_fallback(super::api::wrong_method)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Jira,
    Freshservice,
}

fn unauthorized() -> ApiError {
    ApiError::new(
        ErrorKind::Unauthenticated,
        "invalid_signature",
        "the delivery is not signed with, and does not carry, an active webhook secret of this connection",
    )
}

/// The connection and its active webhook secrets; 404 when there is none of this family.
async fn connection_for(
    app: &Ticketbound,
    id: &str,
    family: Family,
) -> Result<(ConnectionSettings, WebhookSecrets), ApiError> {
    let name = if family == Family::Jira {
        "Jira"
    } else {
        "Freshservice"
    };
    let unknown = || {
        ApiError::new(
            ErrorKind::NotFound,
            "unknown_connection",
            format!("there is no {name} connection `{id}`"),
        )
    };
    let Some(connections) = &app.connections else {
        return Err(unknown());
    };
    match connections.webhook_secrets(id).await? {
        Some((settings, secrets)) => {
            let is_jira = matches!(
                settings.kind,
                ConnectionKind::JiraCloud | ConnectionKind::JiraDataCenter
            );
            if is_jira == (family == Family::Jira) {
                Ok((settings, secrets))
            } else {
                Err(unknown())
            }
        }
        None => Err(unknown()),
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

/// Webhook health: an authentic delivery arrived. Recorded beside the work, never in its way (a failure is
/// logged; the write is skipped when this container recorded one in the last minute).
fn note_delivery(app: &Ticketbound, connection: &str) {
    if let Some(connections) = app.connections.clone() {
        let connection = connection.to_owned();
        tokio::spawn(async move { connections.note_delivery(&connection).await });
    }
}

async fn close(
    app: &Ticketbound,
    connection: &str,
    key: &str,
    ticket_id: Option<&str>,
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
    let outcome = app.close_ticket(&ticket, ticket_id, reason).await?;
    let body = serde_json::json!({
        "ticket": key,
        "end_reason": reason,
        "ended": outcome.ended,
        "cancelled": outcome.cancelled,
        "already_closed": outcome.already_closed,
    });
    Ok((StatusCode::OK, Json(body)).into_response())
}

async fn jira(
    State(app): State<Ticketbound>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, WEBHOOK_BODY_LIMIT).await?;
    let (settings, secrets) = connection_for(&app, &id, Family::Jira).await?;
    let authentic = match (
        header(&headers, "x-hub-signature"),
        header(&headers, "x-ticketbound-secret"),
    ) {
        (Some(signature), _) if secrets.accepts_hub_signature(signature, &bytes) => true,
        (_, Some(secret)) => secrets.accepts_shared_secret(secret),
        _ => false,
    };
    if !authentic {
        tracing::warn!(connection = %id, "Jira delivery refused: bad or missing signature");
        return Err(unauthorized());
    }
    note_delivery(&app, &id);
    let delivery = header(&headers, "x-atlassian-webhook-identifier")
        .filter(|d| !d.is_empty() && d.len() <= 200)
        .map(|d| format!("jira:{id}:{d}"));
    if let Some(key) = &delivery
        && app
            .store
            .delivery_seen(key, app.clock.now())
            .await
            .map_err(ServiceError::from)?
    {
        return Ok(ignored("duplicate delivery"));
    }
    let json = parse(&bytes)?;
    let closed_names = match &settings.closed_statuses {
        ClosedStatuses::Names(names) => names.clone(),
        ClosedStatuses::Numbers(_) => Vec::new(),
    };
    let change = interpret_jira(&json, &closed_names).map_err(|e| {
        ApiError::new(
            ErrorKind::BadRequest,
            "unrecognized_delivery",
            format!("{e}; send a Jira webhook or an Automation body naming the issue key"),
        )
    })?;
    let response = match change.closing {
        None => {
            let issue = if change.key.is_empty() {
                "no issue"
            } else {
                change.key.as_str()
            };
            ignored(&format!("{} for {issue} closes nothing", change.source))
        }
        Some(closing) => close(&app, &id, &change.key, change.id.as_deref(), closing).await?,
    };
    if let Some(key) = delivery {
        // Remembered only once handled, so a delivery that failed half-way is processed again on retry.
        if let Err(e) = app
            .store
            .remember_delivery(&key, app.clock.now() + DEDUPE_FOR)
            .await
        {
            tracing::warn!(error = %e, "could not record the delivery id; a retry will be handled again (harmless)");
        }
    }
    Ok(response)
}

async fn freshservice(
    State(app): State<Ticketbound>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, WEBHOOK_BODY_LIMIT).await?;
    let (_, secrets) = connection_for(&app, &id, Family::Freshservice).await?;
    let presented = header(&headers, "x-ticketbound-secret")
        .map(str::to_owned)
        .or_else(|| header(&headers, "authorization").and_then(basic_auth_password));
    if !presented.is_some_and(|p| secrets.accepts_shared_secret(&p)) {
        tracing::warn!(connection = %id, "Freshservice delivery refused: bad or missing secret");
        return Err(unauthorized());
    }
    note_delivery(&app, &id);
    let json = parse(&bytes)?;
    let ticket_id = interpret_freshservice(&json).map_err(|e| {
        ApiError::new(
            ErrorKind::BadRequest,
            "unrecognized_delivery",
            format!("{e}; use the body template in the README"),
        )
    })?;
    // The body only says "ticket N changed": the ticket system says whether it is closed.
    let ticket = TicketRef {
        connection: id.clone(),
        key: ticket_id.clone(),
    };
    let Some(connections) = &app.connections else {
        return Err(unauthorized());
    };
    match connections
        .ticket_state(&ticket)
        .await
        .map_err(ServiceError::from)?
    {
        TicketState::Open => Ok(ignored(&format!("ticket {ticket_id} is open"))),
        TicketState::Closed => close(&app, &id, &ticket_id, None, Closing::Closed).await,
        TicketState::Deleted => close(&app, &id, &ticket_id, None, Closing::Deleted).await,
    }
}
