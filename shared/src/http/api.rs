//! `/v1` routes: grants, their events, bound tickets and CSV export, the connection directory, and the
//! resource catalog.
//!
//! Every grant in an answer carries `actions`: what the caller may do with it now (`service::allowed_actions`).
//!
//! Resources are versioned: `GET`, `PUT` and `PATCH` answer an `ETag`, and each item of `GET /v1/resources`
//! carries the same tag as `version` (so a list can delete under `If-Match`); `PUT`, `PATCH` and `DELETE` take
//! `If-Match` (412 `version_conflict` with the resource as it now is when it moved) and `PUT` takes
//! `If-None-Match: *` (create only); `GET` takes `If-None-Match` (304 when unchanged). Without a conditional
//! header a write applies to whatever is stored, as it did before versions existed.
//!
//! Grant reads (`GET /v1/grants`, `GET /v1/grants/{id}`) answer a strong `ETag` over the JSON they answer and
//! 304 to an `If-None-Match` naming it, so a page that keeps a list on screen can ask "anything new?" cheaply.
//! The tag covers the caller's `actions` too, since they are part of what is answered.

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use super::extract::{API_BODY_LIMIT, JsonBody, QueryParams, read_body};
use crate::domain::{Caller, GrantStatus, TicketRef};
use crate::ports::{GrantFilter, Page};
use crate::service::{
    Decision, EntityTag, ErrorKind, GrantRequest, ListGrants, Precondition, ResourceInput,
    ResourceWriteError, SavedResource, ServiceError,
};

/// Every route of the API function, as `(method, path)`: the `/v1` routes and Slack's interactions
/// (`http::slack`, which carries no JWT). The template and the OpenAPI description are checked against it.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", super::slack::INTERACTIONS_ROUTE),
    ("POST", "/v1/grants"),
    ("GET", "/v1/grants"),
    ("GET", "/v1/grants/{id}"),
    ("POST", "/v1/grants/{id}/approve"),
    ("POST", "/v1/grants/{id}/deny"),
    ("POST", "/v1/grants/{id}/revoke"),
    ("GET", "/v1/grants/{id}/events"),
    ("GET", "/v1/grants/{id}/ticket"),
    ("GET", "/v1/grants/export.csv"),
    ("GET", "/v1/connection-directory"),
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
        .route("/v1/grants/{id}/ticket", get(grant_ticket))
        .route("/v1/grants/export.csv", get(export_grants))
        .route("/v1/connection-directory", get(connection_directory))
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
    Ok((
        StatusCode::CREATED,
        Json(state.app.view(&caller, grant).await?),
    ))
}

async fn list_grants(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = grants_query(query.as_deref().unwrap_or_default(), true)?;
    let page = state.app.list_grants(&caller, query).await?;
    let view = state.app.page_view(&caller, page).await?;
    json_tagged(&headers, &view)
}

/// `GET /v1/grants/export.csv`: the list's filters, every page, as CSV.
async fn export_grants(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = grants_query(query.as_deref().unwrap_or_default(), false)?;
    let csv = state.app.export_grants(&caller, query).await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/csv; charset=utf-8; header=present",
            ),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"ticketbound-grants.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}

/// The filters of `GET /v1/grants` (and its export, which has no paging: `paged` false): `requester`,
/// `resource`, `ticket` (`<connection>:<key>`), `status` (repeatable, or a comma list), `from` and `to` (RFC
/// 3339, on `requested_at`), `limit` and `cursor`. An unknown or repeated single-valued parameter is a 400.
fn grants_query(raw: &str, paged: bool) -> Result<ListGrants, ApiError> {
    let bad =
        |code: &'static str, message: String| ApiError::new(ErrorKind::BadRequest, code, message);
    let mut single: std::collections::BTreeMap<String, String> = Default::default();
    let mut statuses = Vec::new();
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        let name = name.into_owned();
        if name == "status" {
            for s in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let status = GrantStatus::parse(s).ok_or_else(|| {
                    bad(
                        "invalid_status",
                        "`status` is one or more of pending, active, ended, denied, cancelled"
                            .into(),
                    )
                })?;
                if !statuses.contains(&status) {
                    statuses.push(status);
                }
            }
            continue;
        }
        let known = ["requester", "resource", "ticket", "from", "to"].contains(&name.as_str())
            || (paged && ["limit", "cursor"].contains(&name.as_str()));
        if !known {
            return Err(bad(
                "malformed_query",
                format!("the query string is not valid: unknown parameter `{name}`"),
            ));
        }
        if single.insert(name.clone(), value.into_owned()).is_some() {
            return Err(bad(
                "malformed_query",
                format!("the query string is not valid: `{name}` is given twice"),
            ));
        }
    }
    let ticket = single
        .get("ticket")
        .map(|t| match t.split_once(':') {
            Some((connection, key)) if !connection.is_empty() && !key.is_empty() => Ok(TicketRef {
                connection: connection.to_owned(),
                key: key.to_owned(),
            }),
            _ => Err(bad(
                "invalid_ticket",
                "`ticket` is `<connection>:<key>`, e.g. jira-main:SEC-42".into(),
            )),
        })
        .transpose()?;
    let time = |name: &str| {
        single
            .get(name)
            .map(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| {
                        bad(
                            "invalid_time",
                            format!("`{name}` is an RFC 3339 time, e.g. 2026-11-01T00:00:00Z"),
                        )
                    })
            })
            .transpose()
    };
    let (from, to) = (time("from")?, time("to")?);
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        // Both are well-formed times: the range, not the query, is wrong (422, as for a body breaking a rule).
        return Err(ApiError::new(
            ErrorKind::Unprocessable,
            "invalid_time",
            "`from` is after `to`; the range is empty",
        ));
    }
    Ok(ListGrants {
        filter: GrantFilter {
            requester: single
                .get("requester")
                .map(|r| crate::domain::identity::normalize_email(r)),
            status: None,
            ticket,
        },
        resource: single.get("resource").cloned(),
        statuses,
        from,
        to,
        limit: page_size(single.get("limit").map(String::as_str))?,
        cursor: single.get("cursor").cloned(),
    })
}

async fn get_grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let grant = state.app.get_grant(&caller, &id).await?;
    let view = state.app.view(&caller, grant).await?;
    json_tagged(&headers, &view)
}

/// `value` as JSON with a strong `ETag` over exactly those bytes, or 304 when `If-None-Match` names that tag
/// (or `*`): what was answered is what is compared, so any change a reader could see changes the tag.
fn json_tagged(headers: &HeaderMap, value: &impl serde::Serialize) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value)
        .map_err(|e| ServiceError::internal(format!("serializing an answer: {e}")))?;
    let tag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
    if not_modified(headers, &tag)? {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    Ok((
        [
            (header::ETAG, tag),
            (header::CONTENT_TYPE, "application/json".to_owned()),
        ],
        body,
    )
        .into_response())
}

/// The optional decision body: none, empty, or `{"comment": "..."}`.
async fn decision(request: Request) -> Result<Decision, ApiError> {
    let bytes = read_body(request.into_body(), API_BODY_LIMIT).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Decision::default());
    }
    // An object only: serde would otherwise read `["why"]` as the struct's fields in order.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            ErrorKind::BadRequest,
            "malformed_request",
            "the body is a JSON object such as {\"comment\": \"...\"}, or empty",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorKind::BadRequest,
            "malformed_request",
            format!("the body is not the expected JSON: {e}"),
        )
    })
}

async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let decision = decision(request).await?;
    let grant = state.app.approve_grant(&caller, &id, &decision).await?;
    Ok(Json(state.app.view(&caller, grant).await?))
}

async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let decision = decision(request).await?;
    let grant = state.app.deny_grant(&caller, &id, &decision).await?;
    Ok(Json(state.app.view(&caller, grant).await?))
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let decision = decision(request).await?;
    let grant = state.app.revoke_grant(&caller, &id, &decision).await?;
    Ok(Json(state.app.view(&caller, grant).await?))
}

async fn grant_ticket(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.app.grant_ticket(&caller, &id).await?))
}

async fn connection_directory(
    State(state): State<AppState>,
    _caller: Caller,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        state
            .app
            .connection_directory(page_size(q.limit.as_deref())?, q.cursor.as_deref())
            .await?,
    ))
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
    let page = state
        .app
        .list_tagged_resources(page_size(q.limit.as_deref())?, q.cursor.as_deref())
        .await?;
    Ok(Json(Page {
        items: page
            .items
            .into_iter()
            .map(|(resource, tag)| Listed::new(resource, &tag))
            .collect(),
        next: page.next,
    }))
}

/// An item of a list of versioned records (resources, connections): the record as a single `GET` shows it,
/// plus `version`, the entity tag that `GET` answers as its `ETag` (quotes included), to send as `If-Match`.
#[derive(serde::Serialize)]
pub(super) struct Listed<T> {
    #[serde(flatten)]
    item: T,
    version: String,
}

impl<T> Listed<T> {
    pub(super) fn new(item: T, tag: &EntityTag) -> Self {
        Self {
            item,
            version: tag.as_str().to_owned(),
        }
    }
}

async fn get_resource(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (resource, tag) = state.app.get_tagged_resource(&id).await?;
    if not_modified(&headers, tag.as_str())? {
        return Ok((StatusCode::NOT_MODIFIED, tagged(&tag)).into_response());
    }
    Ok((tagged(&tag), Json(resource)).into_response())
}

/// Whether a `GET`'s `If-None-Match` names the current representation, whose entity tag is `tag`: `*` (it
/// exists), or a list holding the tag. RFC 9110 §13.1.2 asks for the weak comparison here, so `W/"…"` of the
/// tag matches too (our tags are strong: a weak one only comes from a client or a cache rewriting it); an
/// unquoted entry matches nothing. Then the answer is `304` with the `ETag` and no body.
pub(super) fn not_modified(headers: &HeaderMap, tag: &str) -> Result<bool, ApiError> {
    Ok(
        header_text(headers, header::IF_NONE_MATCH)?.is_some_and(|listed| {
            listed.trim() == "*"
                || entity_tags(listed)
                    .iter()
                    .any(|t| t.strip_prefix("W/").unwrap_or(t) == tag)
        }),
    )
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

pub(super) fn tagged(tag: &EntityTag) -> [(header::HeaderName, String); 1] {
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

/// The precondition of a write (resources and connections): `If-Match` (`*` or tags), or, where `creates` (a
/// `PUT`), `If-None-Match: *`.
pub(super) fn write_precondition(
    headers: &HeaderMap,
    creates: bool,
) -> Result<Precondition, ApiError> {
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
            "a write takes `If-Match` with the ETag it was read with, or `If-None-Match: *` on a PUT that must create",
        )),
    }
}
