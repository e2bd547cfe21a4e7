//! `/v1/connections` (admins) and `/v1/tickets` (everyone): ticket-system connections (DESIGN §5–6). Their
//! routes are listed in [`super::api::ROUTES`] with the others.
//!
//! Connections are versioned as resources are: `GET`, `POST` and `PATCH` answer an `ETag`, and each item of
//! `GET /v1/connections` carries the same tag as `version`; `PATCH` and `DELETE` take `If-Match` (412
//! `version_conflict` with the connection as it now is when its settings moved; a `DELETE` is refused by the
//! store's own conditional delete, so an edit landing just before it is never lost) and `GET` takes
//! `If-None-Match` (304 when unchanged). Without `If-Match` a change applies to whatever is stored, as it did
//! before versions existed.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::AppState;
use super::api::{Listed, not_modified, page_size, tagged, write_precondition};
use super::connection_json::{ConnectionBody, ConnectionView};
use super::error::ApiError;
use super::extract::{JsonBody, QueryParams};
use crate::domain::Caller;
use crate::ports::Page;
use crate::service::{ConnectionWriteError, Connections, EntityTag, ErrorKind};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/connection-kinds", get(list_kinds))
        .route(
            "/v1/connections",
            get(list_connections).post(create_connection),
        )
        .route(
            "/v1/connections/{id}",
            get(get_connection)
                .patch(update_connection)
                .delete(delete_connection),
        )
        .route("/v1/connections/{id}/verify", post(verify_connection))
        .route("/v1/tickets", get(list_tickets))
}

fn connections(state: &AppState) -> Result<&Connections, ApiError> {
    Ok(state.app.connections())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    /// Accepted as before; it no longer leaves grants bound to a deleted connection (`end_grants` ends them).
    force: Option<String>,
    /// End the grants bound to the connection's tickets (as `connection_removed`) and delete it.
    end_grants: Option<String>,
}

/// A `true`/`false` query flag; absent is `false`.
fn flag(name: &'static str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::new(
            ErrorKind::BadRequest,
            match name {
                "force" => "invalid_force",
                _ => "invalid_end_grants",
            },
            format!("`{name}` is `true` or `false`"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketsQuery {
    connection: Option<String>,
    q: Option<String>,
    /// The `next` of the previous page.
    cursor: Option<String>,
}

/// Every kind of ticket system with its settings form and webhook registration, in one page (the list is short
/// and fixed by the deployment).
async fn list_kinds(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    let items = connections(&state)?.kinds(&caller)?;
    Ok(Json(serde_json::json!({ "items": items })))
}

async fn list_connections(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = page_size(q.limit.as_deref())?;
    let page = connections(&state)?
        .list_tagged(&caller, limit, q.cursor.as_deref())
        .await?;
    Ok(Json(Page {
        items: page
            .items
            .into_iter()
            .map(|(shown, tag)| Listed::new(ConnectionView::from(shown), &tag))
            .collect(),
        next: page.next,
    }))
}

async fn create_connection(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<ConnectionBody>,
) -> Result<impl IntoResponse, ApiError> {
    let connections = connections(&state)?;
    let changes = body.into_changes(connections)?;
    let (shown, tag) = connections.create_tagged(&caller, changes).await?;
    Ok((
        StatusCode::CREATED,
        tagged(&tag),
        Json(ConnectionView::from(shown)),
    ))
}

/// One connection with its `ETag`, or `304` (the `ETag`, no body) when `If-None-Match` names it.
async fn get_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (shown, tag) = connections(&state)?.get_tagged(&caller, &id).await?;
    if not_modified(&headers, tag.as_str())? {
        return Ok((StatusCode::NOT_MODIFIED, tagged(&tag)).into_response());
    }
    Ok((tagged(&tag), Json(ConnectionView::from(shown))).into_response())
}

async fn update_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ConnectionBody>,
) -> Result<Response, ApiError> {
    let precondition = write_precondition(&headers, false)?;
    let connections = connections(&state)?;
    let changes = body.into_changes(connections)?;
    match connections
        .update_if(&caller, &id, changes, &precondition)
        .await
    {
        Ok((shown, tag)) => Ok((tagged(&tag), Json(ConnectionView::from(shown))).into_response()),
        Err(e) => write_error(e),
    }
}

async fn delete_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<DeleteQuery>,
) -> Result<Response, ApiError> {
    flag("force", q.force.as_deref())?;
    let end_grants = flag("end_grants", q.end_grants.as_deref())?;
    let precondition = write_precondition(&headers, false)?;
    match state
        .app
        .delete_connection_if(&caller, &id, end_grants, &precondition)
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => write_error(e),
    }
}

/// A refused change: the §5 error, or 412 `version_conflict` whose body also carries the connection as now
/// stored (`current`, masked as `GET` shows it; `null` when it is gone) and its tag (`current_version`, also the
/// `ETag` header), so a client can show what changed and make its edit again on top of it.
fn write_error(e: ConnectionWriteError) -> Result<Response, ApiError> {
    let current = match e {
        ConnectionWriteError::Service(e) => return Err(e.into()),
        ConnectionWriteError::VersionConflict { current } => current,
    };
    let (message, tag, connection): (String, Option<EntityTag>, Option<ConnectionView>) =
        match current.map(|c| *c) {
            Some((shown, tag)) => (
                format!(
                    "the connection changed since you read it: it is now at version {}; apply your change to `current` and send it again with `If-Match: {}`",
                    tag.as_str(),
                    tag.as_str()
                ),
                Some(tag),
                Some(ConnectionView::from(shown)),
            ),
            None => (
                "the connection does not exist any more: read the list of connections again"
                    .to_owned(),
                None,
                None,
            ),
        };
    let body = serde_json::json!({"error": {
        "code": "version_conflict",
        "message": message,
        "current_version": tag.as_ref().map(EntityTag::as_str),
        "current": connection,
    }});
    let mut response = (StatusCode::PRECONDITION_FAILED, Json(body)).into_response();
    if let Some(tag) = tag.and_then(|t| HeaderValue::from_str(t.as_str()).ok()) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Ok(response)
}

async fn verify_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let shown = connections(&state)?.verify(&caller, &id).await?;
    Ok(Json(ConnectionView::from(shown)))
}

async fn list_tickets(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<TicketsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let connection = q.connection.filter(|c| !c.is_empty()).ok_or_else(|| {
        ApiError::new(
            ErrorKind::BadRequest,
            "missing_connection",
            "`connection` is required: the id of the ticket-system connection to search",
        )
    })?;
    let page = connections(&state)?
        .my_tickets(&caller, &connection, q.q.as_deref(), q.cursor.as_deref())
        .await?;
    Ok(Json(page))
}
