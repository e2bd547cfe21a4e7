//! `/v1` routes: grants, their events, and the resource catalog.
//!
//! Resources are versioned: `GET`, `PUT` and `PATCH` answer an `ETag`; `PUT`, `PATCH` and `DELETE` take
//! `If-Match` (412 `version_conflict` with the resource as it now is when it moved) and `PUT` takes
//! `If-None-Match: *` (create only); `GET` takes `If-None-Match` (304 when unchanged). Without a conditional
//! header a write applies to whatever is stored, as it did before versions existed.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::extract::{API_BODY_LIMIT, JsonBody, QueryParams, read_body};
use crate::domain::{Caller, GrantStatus, TicketRef};
use crate::ports::GrantFilter;
use crate::service::{
    EntityTag, ErrorKind, GrantRequest, ListGrants, Precondition, ResourceInput,
    ResourceWriteError, SavedResource,
};

/// Every `/v1` route, as `(method, path)`: the template and the OpenAPI description are checked against it.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/grants"),
    ("GET", "/v1/grants"),
    ("GET", "/v1/grants/{id}"),
    ("POST", "/v1/grants/{id}/approve"),
    ("POST", "/v1/grants/{id}/deny"),
    ("POST", "/v1/grants/{id}/revoke"),
    ("GET", "/v1/grants/{id}/events"),
    ("GET", "/v1/resources"),
    ("GET", "/v1/resources/{id}"),
    ("PUT", "/v1/resources/{id}"),
    ("PATCH", "/v1/resources/{id}"),
    ("DELETE", "/v1/resources/{id}"),
    ("GET", "/v1/connection-kinds"),
    ("GET", "/v1/connections"),
    ("POST", "/v1/connections"),
    ("GET", "/v1/connections/{id}"),
    ("PATCH", "/v1/connections/{id}"),
    ("DELETE", "/v1/connections/{id}"),
    ("POST", "/v1/connections/{id}/verify"),
    ("GET", "/v1/tickets"),
];

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/grants", post(request_grant).get(list_grants))
        .route("/v1/grants/{id}", get(get_grant))
        .route("/v1/grants/{id}/approve", post(approve))
        .route("/v1/grants/{id}/deny", post(deny))
        .route("/v1/grants/{id}/revoke", post(revoke))
        .route("/v1/grants/{id}/events", get(grant_events))
        .route("/v1/resources", get(list_resources))
        .route(
            "/v1/resources/{id}",
            get(get_resource)
                .put(put_resource)
                .patch(patch_resource)
                .delete(delete_resource),
        )
}

pub(super) async fn no_route() -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "no_such_route",
        "there is no such route; see the API description in docs/openapi.yaml",
    )
}

pub(super) async fn wrong_method() -> impl IntoResponse {
    let body = serde_json::json!({"error": {"code": "method_not_allowed", "message": "this route does not take that method"}});
    (StatusCode::METHOD_NOT_ALLOWED, Json(body))
}

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 200;

pub(super) fn page_size(limit: Option<&str>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(ApiError::new(
                ErrorKind::BadRequest,
                "invalid_limit",
                format!("`limit` must be a whole number from 1 to {MAX_PAGE}"),
            )),
        },
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsQuery {
    status: Option<String>,
    requester: Option<String>,
    /// `<connection>:<key>`, e.g. `jira-main:SEC-42`.
    ticket: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

async fn request_grant(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<GrantRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let grant = state.app.request_grant(&caller, body).await?;
    Ok((StatusCode::CREATED, Json(grant)))
}

async fn list_grants(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<GrantsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            GrantStatus::parse(s).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::BadRequest,
                    "invalid_status",
                    "`status` is one of pending, active, ended, denied, cancelled",
                )
            })
        })
        .transpose()?;
    let ticket = q
        .ticket
        .as_deref()
        .map(|t| match t.split_once(':') {
            Some((connection, key)) if !connection.is_empty() && !key.is_empty() => Ok(TicketRef {
                connection: connection.to_owned(),
                key: key.to_owned(),
            }),
            _ => Err(ApiError::new(
                ErrorKind::BadRequest,
                "invalid_ticket",
                "`ticket` is `<connection>:<key>`, e.g. jira-main:SEC-42",
            )),
        })
        .transpose()?;
    let requester = q
        .requester
        .map(|r| crate::domain::identity::normalize_email(&r));
    let query = ListGrants {
        filter: GrantFilter {
            requester,
            status,
            ticket,
        },
        limit: page_size(q.limit.as_deref())?,
        cursor: q.cursor,
    };
    Ok(Json(state.app.list_grants(&caller, query).await?))
}

async fn get_grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.app.get_grant(&caller, &id).await?))
}

async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.app.approve_grant(&caller, &id).await?))
}

async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.app.deny_grant(&caller, &id).await?))
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.app.revoke_grant(&caller, &id).await?))
}

async fn grant_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let page = state
        .app
        .grant_events(
            &caller,
            &id,
            page_size(q.limit.as_deref())?,
            q.cursor.as_deref(),
        )
        .await?;
    Ok(Json(page))
}

async fn list_resources(
    State(state): State<AppState>,
    _caller: Caller,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        state
            .app
            .list_resources(page_size(q.limit.as_deref())?, q.cursor.as_deref())
            .await?,
    ))
}

async fn get_resource(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (resource, tag) = state.app.get_tagged_resource(&id).await?;
    let unchanged = match header_text(&headers, header::IF_NONE_MATCH)? {
        None => false,
        Some(listed) => {
            listed.trim() == "*"
                || entity_tags(listed)
                    .iter()
                    // The weak comparison (RFC 9110 §13.1.2): a `W/` prefix does not matter for a GET.
                    .any(|t| t.trim_start_matches("W/") == tag.as_str())
        }
    };
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, tagged(&tag)).into_response());
    }
    Ok((tagged(&tag), Json(resource)).into_response())
}

async fn put_resource(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ResourceInput>,
) -> Result<Response, ApiError> {
    let precondition = write_precondition(&headers, true)?;
    saved(
        state
            .app
            .put_resource_if(&caller, &id, body, &precondition)
            .await,
    )
}

/// The media type of a JSON Merge Patch (RFC 7396).
const MERGE_PATCH: &str = "application/merge-patch+json";

async fn patch_resource(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let media_type = header_text(&headers, header::CONTENT_TYPE)?
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    if !matches!(
        media_type.as_deref(),
        Some(MERGE_PATCH | "application/json")
    ) {
        let body = serde_json::json!({"error": {
            "code": "unsupported_media_type",
            "message": format!("a PATCH body is a JSON Merge Patch: send it as `Content-Type: {MERGE_PATCH}` (or application/json)"),
        }});
        return Ok((StatusCode::UNSUPPORTED_MEDIA_TYPE, Json(body)).into_response());
    }
    let precondition = write_precondition(&headers, false)?;
    let bytes = read_body(request.into_body(), API_BODY_LIMIT).await?;
    let patch: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorKind::BadRequest,
            "malformed_request",
            format!("the body is not JSON: {e}"),
        )
    })?;
    saved(
        state
            .app
            .patch_resource(&caller, &id, &patch, &precondition)
            .await,
    )
}

async fn delete_resource(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let precondition = write_precondition(&headers, false)?;
    match state.app.delete_resource(&caller, &id, &precondition).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => write_error(e),
    }
}

/// 200 (201 when created) with the resource and its new `ETag`.
fn saved(result: Result<SavedResource, ResourceWriteError>) -> Result<Response, ApiError> {
    match result {
        Ok(saved) => {
            let status = if saved.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, tagged(&saved.tag), Json(saved.resource)).into_response())
        }
        Err(e) => write_error(e),
    }
}

/// A refused write: the §5 error, or 412 `version_conflict` whose body also carries the stored resource
/// (`current`, `null` when there is none) and its tag (`current_version`, also the `ETag` header), so a client
/// can show what changed and make its edit again on top of it without another read.
fn write_error(e: ResourceWriteError) -> Result<Response, ApiError> {
    match e {
        ResourceWriteError::Service(e) => Err(e.into()),
        ResourceWriteError::VersionConflict { current } => {
            let (message, tag, resource) = match current.as_deref() {
                Some((resource, tag)) => (
                    format!(
                        "the resource changed since you read it: it is now at version {}; apply your change to `current` and send it again with `If-Match: {}`",
                        tag.as_str(),
                        tag.as_str()
                    ),
                    Some(tag),
                    serde_json::to_value(resource).ok(),
                ),
                None => (
                    "the resource does not exist (any more, or yet): read the catalog again"
                        .to_owned(),
                    None,
                    None,
                ),
            };
            let body = serde_json::json!({"error": {
                "code": "version_conflict",
                "message": message,
                "current_version": tag.map(EntityTag::as_str),
                "current": resource,
            }});
            let mut response = (StatusCode::PRECONDITION_FAILED, Json(body)).into_response();
            if let Some(tag) = tag.and_then(|t| HeaderValue::from_str(t.as_str()).ok()) {
                response.headers_mut().insert(header::ETAG, tag);
            }
            Ok(response)
        }
    }
}

fn tagged(tag: &EntityTag) -> [(header::HeaderName, String); 1] {
    [(header::ETAG, tag.as_str().to_owned())]
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Result<Option<&str>, ApiError> {
    headers
        .get(&name)
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::new(
                    ErrorKind::BadRequest,
                    "malformed_header",
                    format!("the `{name}` header is not readable text"),
                )
            })
        })
        .transpose()
}

/// The entity tags of an `If-Match` or `If-None-Match` list, as sent (quotes and any `W/` included).
fn entity_tags(listed: &str) -> Vec<String> {
    listed
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The precondition of a write: `If-Match` (`*` or tags), or, where `creates` (a `PUT`), `If-None-Match: *`.
fn write_precondition(headers: &HeaderMap, creates: bool) -> Result<Precondition, ApiError> {
    if let Some(listed) = header_text(headers, header::IF_MATCH)? {
        return Ok(if listed.trim() == "*" {
            Precondition::Exists
        } else {
            Precondition::Matches(entity_tags(listed))
        });
    }
    match header_text(headers, header::IF_NONE_MATCH)? {
        None => Ok(Precondition::None),
        Some(listed) if creates && listed.trim() == "*" => Ok(Precondition::Absent),
        Some(_) => Err(ApiError::new(
            ErrorKind::BadRequest,
            "unsupported_precondition",
            "a write takes `If-Match` with the resource's ETag, or `If-None-Match: *` on a PUT that must create",
        )),
    }
}
