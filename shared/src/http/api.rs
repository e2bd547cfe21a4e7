//! `/v1` routes: grants, their events, and the resource catalog.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, QueryParams};
use crate::domain::{Caller, GrantStatus, TicketRef};
use crate::ports::GrantFilter;
use crate::service::{ErrorKind, GrantRequest, ListGrants, ResourceInput};

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
    ("DELETE", "/v1/resources/{id}"),
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
            get(get_resource).put(put_resource).delete(delete_resource),
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
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.app.get_resource(&id).await?))
}

async fn put_resource(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ResourceInput>,
) -> Result<impl IntoResponse, ApiError> {
    let (resource, created) = state.app.put_resource(&caller, &id, body).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(resource),
    ))
}

async fn delete_resource(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state.app.delete_resource(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
