//! `POST /webhooks/{kind}/{connection}`, and under their own names `POST /webhooks/jira/{connection}` and
//! `POST /webhooks/freshservice/{connection}` (DESIGN §9).
//!
//! One extractor ([`VerifiedDelivery`]) serves every route and kind, and asks the kind's plug-in
//! ([`crate::ports::DeliveryRules`]) whatever is vendor-specific; it keeps the order that protects the service:
//! look the kind and the connection up (404); check authenticity (401, nothing changes) in constant time,
//! before reading the body when the plug-in says the proof is in the headers alone (a shared secret, a Basic
//! password, Freshservice's header), so an unknown connection or an unauthenticated sender costs no memory;
//! refuse a declared `Content-Length` over 2 MiB (413) and read the body up to 2 MiB (413 beyond); a signature
//! (`X-Hub-Signature`) is checked on the raw bytes once read; only then parse (400). The handler receives a
//! verified, typed
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
use crate::domain::ticket_events::{Delivery, DeliveryOutcome};
use crate::ports::{DeliveryHeaders, DeliveryRefusal};
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
        Router::new()
            .route(JIRA_ROUTE, post(deliver))
            .with_state(app),
    ))
}

/// The Freshservice webhook route alone, with JSON 404/405 answers (`ticketbound-freshservice-webhook`).
pub fn freshservice_router(app: Ticketbound) -> Router {
    super::with_security_headers(with_fallbacks(
        Router::new()
            .route(FRESHSERVICE_ROUTE, post(deliver))
            .with_state(app),
    ))
}

/// Every webhook route (the generic one and the two named ones) without fallbacks, to merge into the local
/// server's router.
pub fn routes(app: Ticketbound) -> Router {
    Router::new()
        .route(JIRA_ROUTE, post(deliver))
        .route(FRESHSERVICE_ROUTE, post(deliver))
        .route(GENERIC_ROUTE, post(deliver))
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

/// A delivery's headers as plug-ins read them.
struct Headers<'a>(&'a HeaderMap);

impl DeliveryHeaders for Headers<'_> {
    fn present(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.to_str().unwrap_or_default())
    }
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

/// A path parameter by name.
fn path_param(params: &RawPathParams, name: &str) -> Option<String> {
    params
        .iter()
        .find(|(param, _)| *param == name)
        .map(|(_, value)| value.to_owned())
}

/// A delivery whose kind's plug-in ([`DeliveryRules`]) found it authentic, interpreted. The same extractor
/// serves every route: the kind is the `{kind}` of the generic route, or the source named by a route of its own
/// (`/webhooks/jira/…`). In order: the kind is known (404 `unknown_kind`); the connection exists and its
/// deliveries arrive here (404); when the plug-in says the proof is in the headers alone it is judged before
/// the body is read, so an unknown connection or an unauthenticated sender costs no memory (401, nothing
/// changes); a declared `Content-Length` over 2 MiB is refused (413) and the body read up to 2 MiB (413
/// beyond); a proof on the raw bytes (a signature) is judged once they are read; only then is the body parsed
/// (400) and interpreted by the plug-in (400 `unrecognized_delivery`).
pub struct VerifiedDelivery(pub Delivery);

impl FromRequest<Ticketbound> for VerifiedDelivery {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Ticketbound) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let params = RawPathParams::from_request_parts(&mut parts, app)
            .await
            .ok();
        // The generic route names the kind; a named route is its source's own path (`/webhooks/jira/…`, the
        // path the router matched).
        let segment = params
            .as_ref()
            .and_then(|p| path_param(p, "kind"))
            .or_else(|| parts.uri.path().split('/').nth(2).map(str::to_owned))
            .unwrap_or_default();
        let connections = app.connections();
        let source = connections.webhook_source_named(&segment).ok_or_else(|| {
            ApiError::new(
                ErrorKind::NotFound,
                "unknown_kind",
                "no kind of ticket system sends deliveries here: use a kind of `GET /v1/connection-kinds`",
            )
        })?;
        // A kind named by the generic route: a connection of another kind is not found there.
        let named = connections.kind_named(&segment);
        let unknown = |id: &str| {
            ApiError::new(
                ErrorKind::NotFound,
                "unknown_connection",
                format!("there is no {} connection `{id}`", source.name()),
            )
        };
        let id = params
            .as_ref()
            .and_then(|p| path_param(p, "connection"))
            .ok_or_else(|| unknown(""))?;
        let (settings, secrets) = connections
            .webhook_target(&id, source)
            .await?
            .filter(|(settings, _)| named.is_none_or(|kind| settings.kind == kind))
            .ok_or_else(|| unknown(&id))?;
        let rules = connections.delivery_rules(settings.kind);
        let refused = |refusal: DeliveryRefusal| {
            tracing::warn!(connection = %id, source = source.name(), reason = refusal.reason, "delivery refused: bad or missing signature or secret");
            ApiError::new(
                ErrorKind::Unauthenticated,
                "invalid_signature",
                refusal.message,
            )
        };
        let headers = Headers(&parts.headers);
        let bytes = if rules.proof_needs_body(&headers) {
            super::refuse_declared_oversize(&parts.headers, WEBHOOK_BODY_LIMIT)?;
            let bytes = read_body(axum::body::Body::new(body), WEBHOOK_BODY_LIMIT).await?;
            rules
                .authenticate(&settings, &headers, &bytes, &secrets)
                .map_err(refused)?;
            bytes
        } else {
            rules
                .authenticate(&settings, &headers, &[], &secrets)
                .map_err(refused)?;
            super::refuse_declared_oversize(&parts.headers, WEBHOOK_BODY_LIMIT)?;
            read_body(axum::body::Body::new(body), WEBHOOK_BODY_LIMIT).await?
        };
        note_delivery(app, &id);
        let json = parse(&bytes)?;
        let delivery = rules
            .interpret(&settings, &headers, &json)
            .map_err(|message| {
                ApiError::new(ErrorKind::BadRequest, "unrecognized_delivery", message)
            })?;
        Ok(Self(delivery))
    }
}

/// Webhook health: an authentic delivery arrived. Recorded beside the work, never in its way (a failure is
/// logged; the write is skipped when this container recorded one in the last minute).
fn note_delivery(app: &Ticketbound, connection: &str) {
    let connections = app.connections().clone();
    let connection = connection.to_owned();
    tokio::spawn(async move { connections.note_delivery(&connection).await });
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

async fn deliver(
    axum::extract::State(app): axum::extract::State<Ticketbound>,
    VerifiedDelivery(delivery): VerifiedDelivery,
) -> Result<Response, ApiError> {
    Ok(answer(app.handle_delivery(delivery).await?))
}
