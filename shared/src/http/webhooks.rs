//! `POST /webhooks/jira/{connection}` and `POST /webhooks/freshservice/{connection}` (DESIGN §9).
//!
//! One extractor per source ([`VerifiedJiraDelivery`], [`VerifiedFreshserviceDelivery`]) does, in order: look
//! the connection up (404); check authenticity (401, nothing changes) in constant time, before reading the
//! body when the proof is in the headers alone (a shared secret, a Basic password, Freshservice's header), so
//! an unknown connection or an unauthenticated sender costs no memory; refuse a declared `Content-Length` over
//! 2 MiB (413) and read the body up to 2 MiB (413 beyond); a signature (`X-Hub-Signature`) is checked on the
//! raw bytes once read; only then parse (400). The handler receives a verified, typed
//! [`Delivery`] and hands it to the service ([`Ticketbound::handle_delivery`]), which owns dedupe (a Jira
//! delivery already handled, same `X-Atlassian-Webhook-Identifier`, answers 200 at once), confirmation through
//! the ticket system and the end reasons. The answer comes once every bound grant is durably ended and says how
//! many; a failure answers 503 so the sender retries (endings are idempotent: a retry finds them closed).
//! This layer never reaches the store.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::error::ApiError;
use super::extract::read_body;
use crate::adapters::freshservice::events::interpret_freshservice;
use crate::adapters::jira::events::{
    JiraDeliveryProof, authenticate_jira_delivery, interpret_jira,
};
use crate::domain::connection::{
    ClosedStatuses, ConnectionKind, ConnectionSettings, WebhookSecrets,
};
use crate::domain::ticket_events::{Delivery, DeliveryOutcome};
use crate::domain::webhook_auth::basic_auth_password;
use crate::ports::WebhookSource;
use crate::service::{ErrorKind, Ticketbound};

/// The largest delivery read.
pub const WEBHOOK_BODY_LIMIT: usize = 2 * 1024 * 1024;

pub const JIRA_ROUTE: &str = "/webhooks/jira/{connection}";
pub const FRESHSERVICE_ROUTE: &str = "/webhooks/freshservice/{connection}";
/// Every kind's deliveries: `{kind}` is a connection kind (`jira_cloud`, `freshservice`, …) or the name of
/// its webhook source (`jira`), so the two routes above are this one under their own names.
pub const GENERIC_ROUTE: &str = "/webhooks/{kind}/{connection}";

/// The Jira webhook route alone, with JSON 404/405 answers (`ticketbound-jira-webhook`).
pub fn jira_router(app: Ticketbound) -> Router {
    super::with_security_headers(with_fallbacks(
        Router::new().route(JIRA_ROUTE, post(jira)).with_state(app),
    ))
}

/// The Freshservice webhook route alone, with JSON 404/405 answers (`ticketbound-freshservice-webhook`).
pub fn freshservice_router(app: Ticketbound) -> Router {
    super::with_security_headers(with_fallbacks(
        Router::new()
            .route(FRESHSERVICE_ROUTE, post(freshservice))
            .with_state(app),
    ))
}

/// Every webhook route (the generic one and the two named ones) without fallbacks, to merge into the local
/// server's router.
pub fn routes(app: Ticketbound) -> Router {
    Router::new()
        .route(JIRA_ROUTE, post(jira))
        .route(FRESHSERVICE_ROUTE, post(freshservice))
        .route(GENERIC_ROUTE, post(any_kind))
        .with_state(app)
}

/// The generic route alone, with JSON 404/405 answers: one function can serve every kind.
pub fn generic_router(app: Ticketbound) -> Router {
    super::with_security_headers(with_fallbacks(routes(app)))
}

fn with_fallbacks(router: Router) -> Router {
    router
        .fallback(super::api::no_route)
        .method_not_allowed_fallback(super::api::wrong_method)
}

/// Why a delivery is not authentic: a short reason for the log, and the message of the 401.
struct Refusal {
    reason: &'static str,
    message: &'static str,
}

const NO_SECRET: &str = "the delivery is not signed with, and does not carry, an active webhook secret of this connection";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header that is there at all, readable or not: an unreadable (non-ASCII) value is presented as `""`, which
/// verifies against nothing, so a garbled signature is a wrong signature rather than an absent one.
fn present<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or_default())
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

/// The part every source shares: the connection of this source (404), its authenticity (401), the body read up
/// to the limit (413).
struct Received {
    id: String,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
    settings: ConnectionSettings,
}

/// Finds, authenticates and reads a delivery: `authentic` judges the raw bytes against the connection's active
/// webhook secrets (in constant time, through [`WebhookSecrets`]). When `signed` says the headers carry no
/// proof that depends on the body, it is judged before the body is read (with an empty body, which it then
/// does not look at). Nothing is parsed before it says yes; a refusal answers 401 `invalid_signature` with its
/// message.
async fn receive(
    req: Request,
    app: &Ticketbound,
    source: WebhookSource,
    signed: impl FnOnce(&HeaderMap) -> bool,
    authentic: impl FnOnce(
        &ConnectionSettings,
        &HeaderMap,
        &[u8],
        &WebhookSecrets,
    ) -> Result<(), Refusal>,
) -> Result<Received, ApiError> {
    let (mut parts, body) = req.into_parts();
    let unknown = |id: &str| {
        ApiError::new(
            ErrorKind::NotFound,
            "unknown_connection",
            format!("there is no {} connection `{id}`", source.name()),
        )
    };
    // By name: the generic route has a `{kind}` segment before it.
    let id = RawPathParams::from_request_parts(&mut parts, app)
        .await
        .ok()
        .and_then(|params| {
            params
                .iter()
                .find(|(name, _)| *name == "connection")
                .map(|(_, value)| value.to_owned())
        })
        .ok_or_else(|| unknown(""))?;
    // The generic route named a kind: a connection of another kind is not found there.
    let named = parts.extensions.get::<NamedKind>().map(|named| named.0);
    let (settings, secrets) = app
        .connections()
        .webhook_target(&id, source)
        .await?
        .filter(|(settings, _)| named.is_none_or(|kind| settings.kind == kind))
        .ok_or_else(|| unknown(&id))?;
    let refused = |refusal: Refusal| {
        tracing::warn!(connection = %id, source = source.name(), reason = refusal.reason, "delivery refused: bad or missing signature or secret");
        ApiError::new(
            ErrorKind::Unauthenticated,
            "invalid_signature",
            refusal.message,
        )
    };
    let bytes = if signed(&parts.headers) {
        super::refuse_declared_oversize(&parts.headers, WEBHOOK_BODY_LIMIT)?;
        let bytes = read_body(axum::body::Body::new(body), WEBHOOK_BODY_LIMIT).await?;
        authentic(&settings, &parts.headers, &bytes, &secrets).map_err(refused)?;
        bytes
    } else {
        authentic(&settings, &parts.headers, &[], &secrets).map_err(refused)?;
        super::refuse_declared_oversize(&parts.headers, WEBHOOK_BODY_LIMIT)?;
        read_body(axum::body::Body::new(body), WEBHOOK_BODY_LIMIT).await?
    };
    note_delivery(app, &id);
    Ok(Received {
        id,
        headers: parts.headers,
        bytes,
        settings,
    })
}

/// Webhook health: an authentic delivery arrived. Recorded beside the work, never in its way (a failure is
/// logged; the write is skipped when this container recorded one in the last minute).
fn note_delivery(app: &Ticketbound, connection: &str) {
    let connections = app.connections().clone();
    let connection = connection.to_owned();
    tokio::spawn(async move { connections.note_delivery(&connection).await });
}

/// A Jira delivery whose `X-Hub-Signature`, shared secret or (Data Center only) Basic password matched an
/// active webhook secret (the rules are the Jira module's: [`authenticate_jira_delivery`]), parsed.
pub struct VerifiedJiraDelivery(pub Delivery);

impl FromRequest<Ticketbound> for VerifiedJiraDelivery {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Ticketbound) -> Result<Self, Self::Rejection> {
        let Received {
            id,
            headers,
            bytes,
            settings,
        } = receive(
            req,
            app,
            WebhookSource::Jira,
            // Only a signature is judged on the bytes: a signed delivery is judged by its signature alone.
            |headers| headers.contains_key("x-hub-signature"),
            |settings, headers, bytes, secrets| {
                let proof = JiraDeliveryProof {
                    hub_signature: present(headers, "x-hub-signature"),
                    shared_secret: present(headers, "x-ticketbound-secret"),
                    authorization: present(headers, "authorization"),
                };
                authenticate_jira_delivery(settings.kind, &proof, bytes, secrets)
                    .map(|_| ())
                    .map_err(|refusal| Refusal {
                        reason: refusal.as_str(),
                        message: refusal.message(),
                    })
            },
        )
        .await?;
        let delivery_id = header(&headers, "x-atlassian-webhook-identifier")
            .filter(|d| !d.is_empty() && d.len() <= 200)
            .map(|d| format!("jira:{id}:{d}"));
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
        Ok(Self(Delivery::Told {
            connection: id,
            delivery_id,
            change,
        }))
    }
}

/// A Freshservice delivery that carried an active webhook secret (header or Basic auth), naming a ticket.
pub struct VerifiedFreshserviceDelivery(pub Delivery);

impl FromRequest<Ticketbound> for VerifiedFreshserviceDelivery {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Ticketbound) -> Result<Self, Self::Rejection> {
        let Received { id, bytes, .. } = receive(
            req,
            app,
            WebhookSource::Freshservice,
            // Freshservice does not sign: its proof is a header.
            |_| false,
            |_, headers, _, secrets| {
                header(headers, "x-ticketbound-secret")
                    .map(str::to_owned)
                    .or_else(|| header(headers, "authorization").and_then(basic_auth_password))
                    .is_some_and(|presented| secrets.accepts_shared_secret(&presented))
                    .then_some(())
                    .ok_or(Refusal {
                        reason: "wrong_or_missing_secret",
                        message: NO_SECRET,
                    })
            },
        )
        .await?;
        let json = parse(&bytes)?;
        let key = interpret_freshservice(&json).map_err(|e| {
            ApiError::new(
                ErrorKind::BadRequest,
                "unrecognized_delivery",
                format!("{e}; use the body template in the README"),
            )
        })?;
        Ok(Self(Delivery::Named {
            connection: id,
            key,
        }))
    }
}

/// A delivery at `/webhooks/{kind}/{connection}`: the kind names the plug-in whose webhook source authenticates
/// and interprets it, with the same guarantees as its own route (the connection looked up and header-only
/// proofs checked before the body is read). An unknown kind answers 404 before anything is looked up; a
/// connection of another source answers 404 as on the named routes.
pub struct VerifiedDelivery(pub Delivery);

/// The connection kind a generic route's `{kind}` named, when it named one rather than a source.
#[derive(Clone, Copy)]
struct NamedKind(ConnectionKind);

impl FromRequest<Ticketbound> for VerifiedDelivery {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Ticketbound) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let segment = RawPathParams::from_request_parts(&mut parts, app)
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(name, _)| *name == "kind")
                    .map(|(_, value)| value.to_owned())
            })
            .unwrap_or_default();
        let source = app
            .connections()
            .webhook_source_named(&segment)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::NotFound,
                    "unknown_kind",
                    "no kind of ticket system sends deliveries here: use a kind of `GET /v1/connection-kinds`",
                )
            })?;
        if let Some(kind) = ConnectionKind::parse(&segment) {
            parts.extensions.insert(NamedKind(kind));
        }
        let req = Request::from_parts(parts, body);
        let delivery = match source {
            WebhookSource::Jira => VerifiedJiraDelivery::from_request(req, app).await?.0,
            WebhookSource::Freshservice => {
                VerifiedFreshserviceDelivery::from_request(req, app)
                    .await?
                    .0
            }
        };
        Ok(Self(delivery))
    }
}

fn answer(outcome: DeliveryOutcome) -> Response {
    let body = match outcome {
        DeliveryOutcome::Ignored(reason) => serde_json::json!({"ignored": true, "reason": reason}),
        DeliveryOutcome::Closed {
            key,
            reason,
            ended,
            cancelled,
            already_closed,
        } => serde_json::json!({
            "ticket": key,
            "end_reason": reason,
            "ended": ended,
            "cancelled": cancelled,
            "already_closed": already_closed,
        }),
        DeliveryOutcome::Deferred { key, confirm_at } => {
            let at = confirm_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let body = serde_json::json!({"ticket": key, "deferred": true, "confirm_at": at});
            return (StatusCode::ACCEPTED, Json(body)).into_response();
        }
    };
    (StatusCode::OK, Json(body)).into_response()
}

async fn jira(
    axum::extract::State(app): axum::extract::State<Ticketbound>,
    VerifiedJiraDelivery(delivery): VerifiedJiraDelivery,
) -> Result<Response, ApiError> {
    Ok(answer(app.handle_delivery(delivery).await?))
}

async fn freshservice(
    axum::extract::State(app): axum::extract::State<Ticketbound>,
    VerifiedFreshserviceDelivery(delivery): VerifiedFreshserviceDelivery,
) -> Result<Response, ApiError> {
    Ok(answer(app.handle_delivery(delivery).await?))
}

async fn any_kind(
    axum::extract::State(app): axum::extract::State<Ticketbound>,
    VerifiedDelivery(delivery): VerifiedDelivery,
) -> Result<Response, ApiError> {
    Ok(answer(app.handle_delivery(delivery).await?))
}
