//! The ServiceNow client: the Table API over `task`, the parent table of incidents, requested items, catalog
//! tasks, change requests and problems, so one query covers them all. Basic auth with a web-service user, a
//! bearer token from OAuth client credentials (fetched once at `POST /oauth_token.do`, kept until it expires,
//! and fetched once again when the Table API answers 401 to it), or an API key sent as is in `x-sn-apikey`
//! (a refused key stays refused, as a password does).
//!
//! - verify: `GET /api/now/table/sys_user?sysparm_query=user_name=<the connection's user>` (the account the
//!   credentials act as); with client credentials or an API key `sys_id=javascript:gs.getUserID()`, the user
//!   the OAuth application or the key acts as, whose name the connection does not know;
//! - one ticket: `GET /api/now/table/task?sysparm_query=number=<key>`: the key is the user-facing number
//!   (`INC0010001`, `RITM0010001`, `CHG0030001`), and its `sys_id` and `sys_class_name` come with it;
//! - person by e-mail: `GET /api/now/table/sys_user?sysparm_query=email=<e-mail>^active=true` (at most two, so an
//!   address two accounts share is not taken as either);
//! - open tickets: `assigned_to=<sys_id>^active=true^ORDERBYDESCsys_updated_on`, paged with `sysparm_offset`
//!   (the page token), a search text matched on ServiceNow's side against the number and short description;
//! - reconciliation: `numberIN<k1>,<k2>,…`, up to [`KEYS_PER_CALL`] numbers a call.
//!
//! Writes (audit tickets and the `ticket` provisioner, DESIGN §7/§8):
//! - open: `POST /api/now/table/incident` (or `sc_req_item` when the destination's `issue_type` says so) with
//!   `correlation_id` set to the ticket's marker, which is also the description's last line;
//! - found again: `GET /api/now/table/task?sysparm_query=correlation_id=<marker>`;
//! - a note: `PATCH /api/now/table/<class>/<sys_id>` with `work_notes` (seen by agents, not by the caller);
//! - closed: the same `PATCH` with the table's closing state: an incident Resolved (`state` 6) with the
//!   `close_code` and `close_notes` its data policy requires, any other task Closed Complete (`state` 3).
//!
//! A ticket is closed when `active` is false (ServiceNow's own "Active State Management" sets it from the
//! state, whose values differ per table and per instance), or when its numeric `state` is one the operator
//! listed in `closed_statuses`. A number the query finds no longer is deleted. Reads ask for raw values
//! (`sysparm_display_value=false`), so `state` is a number and `active` `"true"`/`"false"`.

use async_trait::async_trait;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::time::Duration;

pub mod events;
mod settings;

pub use settings::{API_KEY_HEADER, CLIENT_SECRET, ServiceNow, WEBHOOK_SOURCE};

use super::ticket_http::{Probed, TicketHttp, Written};
use super::ticket_systems::client_credentials::ClientCredentials;
use crate::domain::connection::{
    ClosedStatuses, Person, PersonLookup, Ticket, TicketPage, TicketQuery, TicketState,
    TicketSummary, Verification, visible_email,
};
use crate::domain::ticket_writes::{CloseOutcome, CreatedTicket, MAX_SUMMARY, NewTicket};
use crate::ports::{ReconcileBatch, TicketStates, TicketSystem, TicketSystemError};

/// Numbers per reconciliation query: an encoded query with fifty numbers stays far below URL limits.
const KEYS_PER_CALL: usize = 50;
/// Queries per reconciliation run: ServiceNow counts rate limits per hour, so a run stays small.
const CALLS_PER_RUN: usize = 10;
/// Open tickets read per page, and pages read at most.
const PAGE_SIZE: usize = 50;
const MAX_PAGES: usize = 4;
/// How long to leave ServiceNow alone after a 429 without `Retry-After`.
const DEFAULT_PAUSE: Duration = Duration::from_secs(60);
/// The fields every task read asks for.
const TASK_FIELDS: &str = "sys_id,number,short_description,state,active,sys_class_name,assigned_to";

/// The table a new ticket goes to when the destination names none.
pub(crate) const INCIDENT: &str = "incident";
/// Requested items, the other table a destination may name.
pub(crate) const REQUESTED_ITEM: &str = "sc_req_item";
/// What closing an incident says (a `close_code` of the base system's choices since Utah; the incident data
/// policy requires one, and `close_notes`, to resolve).
const CLOSE_CODE: &str = "Solution provided";
const CLOSE_NOTES: &str = "Closed by Ticketbound: the access this ticket records has ended.";
/// The length of `short_description` in the base system (longer text is cut by ServiceNow, or refused).
const SHORT_DESCRIPTION_MAX: usize = 160;
/// The line of a description that carries the marker (also in `correlation_id`).
const MARKER_PREFIX: &str = "Ticketbound marker: ";

/// A ticket number as ServiceNow shows it: letters then digits, at most 40 characters. Anything else (an
/// encoded-query operator such as `^` above all) names no ticket and is never sent.
pub(crate) fn is_number(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 40
        && key.bytes().all(|b| b.is_ascii_alphanumeric())
        && key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
}

/// The one spelling of a number: trimmed and upper-case (`inc0010001` is `INC0010001`).
pub(crate) fn canonical_number(key: &str) -> String {
    let trimmed = key.trim();
    if is_number(trimmed) {
        trimmed.to_ascii_uppercase()
    } else {
        key.to_owned()
    }
}

#[derive(Deserialize)]
struct Results<T> {
    #[serde(default = "Vec::new")]
    result: Vec<T>,
}

/// A `task` row with raw values; every field is text in the Table API's JSON.
#[derive(Deserialize)]
struct Task {
    #[serde(default)]
    sys_id: String,
    #[serde(default)]
    number: String,
    #[serde(default)]
    short_description: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    active: Option<String>,
    #[serde(default)]
    sys_class_name: Option<String>,
    /// With `sysparm_exclude_reference_link=true`, the assignee's `sys_id` (empty when none).
    #[serde(default)]
    assigned_to: Option<String>,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    sys_id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    user_name: Option<String>,
}

impl User {
    fn person(self) -> Person {
        Person {
            id: self.sys_id,
            email: visible_email(self.email),
            display_name: self.name.or(self.user_name).filter(|n| !n.is_empty()),
        }
    }
}

/// ServiceNow over the Table API.
pub struct ServiceNowClient {
    http: TicketHttp,
    closed: ClosedStatuses,
    /// The web-service user the connection signs in as (what `verify` looks up); `None` when it signs in as
    /// whoever its OAuth application or API key acts as.
    username: Option<String>,
    /// Set when the connection signs in with OAuth client credentials.
    oauth: Option<ClientCredentials>,
}

/// The answer to a `POST`: the created row as the Table API returns it.
#[derive(Deserialize)]
struct Saved {
    result: Task,
}

impl ServiceNowClient {
    pub(crate) fn new(
        http: TicketHttp,
        closed: ClosedStatuses,
        username: Option<String>,
        oauth: Option<ClientCredentials>,
    ) -> Self {
        Self {
            http,
            closed,
            username,
            oauth,
        }
    }

    /// The HTTP client signed in as the connection: Basic as built, or the kept (else a new) access token.
    async fn signed(&self) -> Result<TicketHttp, TicketSystemError> {
        match &self.oauth {
            Some(oauth) => oauth.signed_in(&self.http).await,
            None => Ok(self.http.clone()),
        }
    }

    /// Whether `answer` is a 401 to an access token, which is then forgotten: it expired early or was revoked,
    /// so the call is worth once more with a new one. Basic credentials refused stay refused.
    fn stale<T>(&self, answer: &Result<T, TicketSystemError>) -> bool {
        match (&self.oauth, answer) {
            (Some(oauth), Err(TicketSystemError::Unauthorized { status: 401, .. })) => {
                oauth.forget(&self.http);
                true
            }
            _ => false,
        }
    }

    /// `GET url` as JSON, signed in; `None` on 404.
    async fn get_json<T: DeserializeOwned>(
        &self,
        url: url::Url,
    ) -> Result<Option<T>, TicketSystemError> {
        let answer = self.signed().await?.get_json(url.clone()).await;
        if self.stale(&answer) {
            return self.signed().await?.get_json(url).await;
        }
        answer
    }

    /// `GET url` as JSON, signed in, a 429 answered rather than waited for (reconciliation).
    async fn probe_json<T: DeserializeOwned>(
        &self,
        url: url::Url,
    ) -> Result<Probed<T>, TicketSystemError> {
        let answer = self.signed().await?.probe_json(url.clone()).await;
        if self.stale(&answer) {
            return self.signed().await?.probe_json(url).await;
        }
        answer
    }

    /// A write, signed in. A 401 certainly changed nothing, so it is sent once more with a new token.
    async fn send_json(
        &self,
        method: reqwest::Method,
        url: url::Url,
        body: &serde_json::Value,
    ) -> Result<Written, TicketSystemError> {
        let answer = self
            .signed()
            .await?
            .send_json(method.clone(), url.clone(), Some(body))
            .await;
        if self.stale(&answer) {
            return self
                .signed()
                .await?
                .send_json(method, url, Some(body))
                .await;
        }
        answer
    }

    /// The `task` row numbered `key`, if any.
    async fn task(&self, key: &str) -> Result<Option<Task>, TicketSystemError> {
        if !is_number(key) {
            return Ok(None);
        }
        let url = self.tasks_url(&format!("number={key}"), 1, 0);
        let found: Option<Results<Task>> = self.get_json(url).await?;
        Ok(found.and_then(|r| r.result.into_iter().next()))
    }

    /// `PATCH` of the row `task` in its own table (`incident`, `sc_req_item`, …): `false` when it is gone.
    async fn update(
        &self,
        task: &Task,
        body: &serde_json::Value,
        what: &str,
    ) -> Result<bool, TicketSystemError> {
        let class = task
            .sys_class_name
            .as_deref()
            .filter(|c| is_table(c))
            .unwrap_or("task");
        let url = self
            .http
            .url(&["api", "now", "table", class, task.sys_id.as_str()]);
        match self.send_json(reqwest::Method::PATCH, url, body).await? {
            Written::Done(_) => Ok(true),
            Written::NotFound => Ok(false),
            Written::Rejected(detail) => Err(TicketSystemError::Unexpected(format!(
                "ServiceNow refused to {what} {}: {detail}",
                task.number
            ))),
        }
    }

    fn ticket(&self, t: Task) -> Ticket {
        let state = t
            .state
            .as_deref()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let inactive = t.active.as_deref() == Some("false");
        let class = t.sys_class_name.unwrap_or_else(|| "task".into());
        Ticket {
            key: t.number,
            id: (!t.sys_id.is_empty()).then(|| format!("{class}:{}", t.sys_id)),
            summary: t.short_description.unwrap_or_default(),
            status: match (&t.state, inactive) {
                (Some(s), true) => format!("State {s} (inactive)"),
                (Some(s), false) => format!("State {s}"),
                (None, _) => "Unknown".into(),
            },
            closed: inactive || state.is_some_and(|s| self.closed.has_number(s)),
            deleted: false,
            assignee: t.assigned_to.filter(|id| !id.is_empty()).map(|id| Person {
                id,
                email: None,
                display_name: None,
            }),
            url: format!(
                "{}?sys_id={}",
                self.http.site_url(&[&format!("{class}.do")]),
                t.sys_id
            ),
        }
    }

    fn tasks_url(&self, query: &str, limit: usize, offset: usize) -> url::Url {
        let limit = limit.to_string();
        let offset = offset.to_string();
        self.http.url_with(
            &["api", "now", "table", "task"],
            &[
                ("sysparm_query", query),
                ("sysparm_fields", TASK_FIELDS),
                ("sysparm_limit", limit.as_str()),
                ("sysparm_offset", offset.as_str()),
                ("sysparm_display_value", "false"),
                ("sysparm_exclude_reference_link", "true"),
            ],
        )
    }

    async fn users(&self, query: &str, limit: &str) -> Result<Vec<User>, TicketSystemError> {
        let url = self.http.url_with(
            &["api", "now", "table", "sys_user"],
            &[
                ("sysparm_query", query),
                ("sysparm_fields", "sys_id,user_name,email,name"),
                ("sysparm_limit", limit),
            ],
        );
        let found: Option<Results<User>> = self.get_json(url).await?;
        Ok(found.map(|r| r.result).unwrap_or_default())
    }
}

/// A table name as ServiceNow spells them (`incident`, `sc_req_item`, `u_custom`): it becomes a path segment.
fn is_table(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 80
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether a row of `class` in `state` is past what Ticketbound's close would set: an incident Resolved (6),
/// Closed (7) or Canceled (8); any other task Closed Complete (3), Closed Incomplete (4) or Closed Skipped (7).
fn past_closing(class: &str, state: Option<u64>) -> bool {
    match (class, state) {
        (INCIDENT, Some(s)) => s >= 6,
        (_, Some(s)) => matches!(s, 3 | 4 | 7),
        (_, None) => false,
    }
}

/// An e-mail address or user name that can stand in an encoded query: no operator characters.
fn queryable(text: &str) -> bool {
    !text.is_empty() && !text.contains(['^', '=', ',', '\n', '\r'])
}

#[async_trait]
impl TicketSystem for ServiceNowClient {
    async fn verify(&self) -> Result<Verification, TicketSystemError> {
        if self.oauth.is_some() || self.username.is_none() {
            let whose = if self.oauth.is_some() {
                "the OAuth application's user; set its OAuth Application User"
            } else {
                "the user the API key acts as; check the REST API key's user"
            };
            let user = self
                .users("sys_id=javascript:gs.getUserID()", "1")
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    TicketSystemError::Unexpected(format!(
                        "ServiceNow does not show {whose} and give that user the `itil` role"
                    ))
                })?;
            return Ok(Verification::of(user.person(), None));
        }
        let username = self
            .username
            .as_deref()
            .filter(|u| queryable(u))
            .ok_or_else(|| {
                TicketSystemError::Unexpected("the connection has no usable `username`".into())
            })?;
        let user = self
            .users(&format!("user_name={username}"), "1")
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                TicketSystemError::Unexpected(format!(
                    "ServiceNow has no user `{username}` visible to it; give the user the `itil` role (read access to sys_user)"
                ))
            })?;
        Ok(Verification::of(user.person(), None))
    }

    async fn get_ticket(&self, key: &str) -> Result<Option<Ticket>, TicketSystemError> {
        Ok(self.task(key).await?.map(|t| self.ticket(t)))
    }

    async fn find_person(&self, email: &str) -> Result<PersonLookup, TicketSystemError> {
        if !queryable(email) {
            return Ok(PersonLookup::NotFound);
        }
        let users = self
            .users(&format!("email={email}^active=true"), "2")
            .await?;
        if users.len() > 1 {
            // Two active accounts share the address: neither can be taken as this person.
            return Ok(PersonLookup::Unverifiable);
        }
        Ok(PersonLookup::among(
            users.into_iter().map(User::person).collect(),
            email,
        ))
    }

    async fn open_tickets_for(
        &self,
        person: &Person,
    ) -> Result<Vec<TicketSummary>, TicketSystemError> {
        if !queryable(&person.id) {
            return Ok(Vec::new());
        }
        let query = format!(
            "assigned_to={}^active=true^ORDERBYDESCsys_updated_on",
            person.id
        );
        let mut out = Vec::new();
        for page in 0..MAX_PAGES {
            let url = self.tasks_url(&query, PAGE_SIZE, page * PAGE_SIZE);
            let found: Option<Results<Task>> = self.get_json(url).await?;
            let rows = found.map(|r| r.result).unwrap_or_default();
            let got = rows.len();
            out.extend(
                rows.into_iter()
                    .map(|t| self.ticket(t))
                    .filter(|t| !t.closed)
                    .map(|t| TicketSummary::from(&t)),
            );
            if got < PAGE_SIZE {
                break;
            }
        }
        Ok(out)
    }

    /// One page of [`Self::open_tickets_for`]: the token is the next `sysparm_offset`, and `q` is matched by
    /// ServiceNow against the number and the short description (`LIKE`, case-insensitive), so paging and
    /// narrowing happen on its side.
    async fn open_tickets_page(
        &self,
        person: &Person,
        query: &TicketQuery,
    ) -> Result<TicketPage, TicketSystemError> {
        let offset = match query.page.as_deref() {
            None => 0,
            Some(token) => token
                .parse::<usize>()
                .ok()
                .filter(|o| *o % PAGE_SIZE == 0 && *o < PAGE_SIZE * 200)
                .ok_or_else(|| {
                    TicketSystemError::InvalidPageToken("not a ServiceNow offset".into())
                })?,
        };
        if !queryable(&person.id) {
            return Ok(TicketPage::default());
        }
        let mut encoded = format!("assigned_to={}^active=true", person.id);
        // An encoded query has no escaping: the operator characters are dropped from the text.
        let text: Option<String> = query
            .text
            .as_deref()
            .map(|t| t.replace(['^', '\n', '\r'], " ").trim().to_owned())
            .filter(|t| !t.is_empty());
        if let Some(text) = &text {
            encoded.push_str(&format!("^numberLIKE{text}^ORshort_descriptionLIKE{text}"));
        }
        encoded.push_str("^ORDERBYDESCsys_updated_on");
        let url = self.tasks_url(&encoded, PAGE_SIZE, offset);
        let found: Option<Results<Task>> = self.get_json(url).await?;
        let rows = found.map(|r| r.result).unwrap_or_default();
        let full = rows.len() == PAGE_SIZE;
        Ok(TicketPage {
            items: rows
                .into_iter()
                .map(|t| self.ticket(t))
                .filter(|t| !t.closed)
                .map(|t| TicketSummary::from(&t))
                .collect(),
            next: full.then(|| (offset + PAGE_SIZE).to_string()),
        })
    }

    /// `POST /api/now/table/<incident|sc_req_item>`: the summary as `short_description`, the description with
    /// the marker as its last line, the marker as `correlation_id`, and the destination's assignment group and
    /// urgency/impact when it names them.
    async fn create_ticket(&self, t: &NewTicket) -> Result<CreatedTicket, TicketSystemError> {
        let table = t.destination.issue_type.as_deref().unwrap_or(INCIDENT);
        if table != INCIDENT && table != REQUESTED_ITEM {
            return Err(TicketSystemError::Unexpected(format!(
                "a ServiceNow ticket goes to `{INCIDENT}` or `{REQUESTED_ITEM}`, not `{table}`"
            )));
        }
        let summary: String = t
            .summary
            .replace(['\r', '\n'], " ")
            .chars()
            .take(MAX_SUMMARY.min(SHORT_DESCRIPTION_MAX))
            .collect();
        let mut body = json!({
            "short_description": summary,
            "description": format!("{}\n\n{MARKER_PREFIX}{}", t.description, t.marker),
            "correlation_id": t.marker,
            "correlation_display": "Ticketbound",
        });
        if let Some(group) = t.destination.project.as_deref() {
            body["assignment_group"] = json!(group);
        }
        if let Some(priority) = t.destination.priority {
            // Priority is computed from impact and urgency (1 high, 2 medium, 3 low).
            body["urgency"] = json!(priority.to_string());
            body["impact"] = json!(priority.to_string());
        }
        let url = self.http.url_with(
            &["api", "now", "table", table],
            &[
                ("sysparm_fields", TASK_FIELDS),
                ("sysparm_exclude_reference_link", "true"),
            ],
        );
        let created = match self.send_json(reqwest::Method::POST, url, &body).await? {
            Written::Done(bytes) => Written::shaped::<Saved>(&bytes, "ServiceNow's Table API")?,
            Written::NotFound => {
                return Err(TicketSystemError::Unexpected(format!(
                    "ServiceNow has no table `{table}` visible to the connection (HTTP 404)"
                )));
            }
            Written::Rejected(detail) => {
                return Err(TicketSystemError::Unexpected(format!(
                    "ServiceNow refused to create the {table}: {detail}"
                )));
            }
        };
        let mut task = created.result;
        if !is_number(&task.number) {
            return Err(TicketSystemError::Unexpected(
                "ServiceNow did not say which record it created".into(),
            ));
        }
        task.sys_class_name.get_or_insert_with(|| table.to_owned());
        let ticket = self.ticket(task);
        Ok(CreatedTicket {
            key: ticket.key,
            url: ticket.url,
        })
    }

    /// The task whose `correlation_id` is `marker`, closed ones included.
    async fn find_by_marker(
        &self,
        marker: &str,
    ) -> Result<Option<CreatedTicket>, TicketSystemError> {
        if !queryable(marker) {
            return Ok(None);
        }
        let url = self.tasks_url(&format!("correlation_id={marker}"), 1, 0);
        let found: Option<Results<Task>> = self.get_json(url).await?;
        Ok(found
            .and_then(|r| r.result.into_iter().find(|t| is_number(&t.number)))
            .map(|t| {
                let ticket = self.ticket(t);
                CreatedTicket {
                    key: ticket.key,
                    url: ticket.url,
                }
            }))
    }

    /// A work note on the record; `Ok(false)` when ServiceNow has no such number.
    async fn add_comment(&self, key: &str, text: &str) -> Result<bool, TicketSystemError> {
        let Some(task) = self.task(key).await? else {
            return Ok(false);
        };
        self.update(&task, &json!({"work_notes": text}), "add a work note to")
            .await
    }

    /// An incident Resolved (`state` 6, with `close_code` and `close_notes`), any other task Closed Complete
    /// (`state` 3). A record no longer active, or already at or past that state, is left alone.
    async fn close_ticket(&self, key: &str) -> Result<CloseOutcome, TicketSystemError> {
        let Some(task) = self.task(key).await? else {
            return Ok(CloseOutcome::NotFound);
        };
        let class = task.sys_class_name.clone().unwrap_or_default();
        let state = task
            .state
            .as_deref()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if task.active.as_deref() == Some("false") || past_closing(&class, state) {
            return Ok(CloseOutcome::AlreadyClosed);
        }
        let body = if class == INCIDENT {
            json!({"state": "6", "close_code": CLOSE_CODE, "close_notes": CLOSE_NOTES})
        } else {
            json!({"state": "3", "close_notes": CLOSE_NOTES})
        };
        Ok(if self.update(&task, &body, "close").await? {
            CloseOutcome::Closed
        } else {
            CloseOutcome::NotFound
        })
    }

    fn reconcile_batch(&self) -> ReconcileBatch {
        ReconcileBatch {
            keys_per_call: KEYS_PER_CALL,
            calls_per_run: CALLS_PER_RUN,
        }
    }

    /// One `numberIN…` query for the batch; a number it does not return is deleted.
    async fn ticket_states(&self, keys: &[String]) -> Result<TicketStates, TicketSystemError> {
        let mut out = TicketStates::default();
        let numbers: Vec<&str> = keys
            .iter()
            .map(String::as_str)
            .filter(|k| is_number(k))
            .collect();
        let mut found = std::collections::HashMap::new();
        if !numbers.is_empty() {
            out.calls += 1;
            let url = self.tasks_url(&format!("numberIN{}", numbers.join(",")), numbers.len(), 0);
            match self.probe_json::<Results<Task>>(url).await? {
                Probed::Found(rows) => {
                    for task in rows.result {
                        let ticket = self.ticket(task);
                        found.insert(
                            ticket.key.to_ascii_uppercase(),
                            TicketState::of(Some(&ticket)),
                        );
                    }
                }
                Probed::Busy(wait) => {
                    out.rate_limited = Some(wait.unwrap_or(DEFAULT_PAUSE));
                    return Ok(out);
                }
                Probed::NotFound | Probed::Refused(_) => {
                    return Err(TicketSystemError::Unexpected(
                        "the Table API refused the reconciliation query; is the base URL right?"
                            .into(),
                    ));
                }
            }
        }
        for key in keys {
            let state = found
                .get(&key.to_ascii_uppercase())
                .copied()
                .unwrap_or(TicketState::Deleted);
            out.states.push((key.clone(), state));
        }
        Ok(out)
    }
}
