//! The Linear client: one GraphQL endpoint (`POST {base}/graphql`), signed in with a personal API key sent as is,
//! or with an access token from an OAuth application's client credentials ([`auth`]).
//!
//! - verify: `viewer { id name email }` (the account the credentials act as);
//! - one ticket, and reconciliation's batch: `issues(filter: {or: [{team: {key}, number}, …]},
//!   includeArchived: true)`. The key is the issue identifier people see (`ENG-123`): its team key and number;
//!   an identifier the query does not return is deleted. Reconciliation asks for up to [`KEYS_PER_CALL`]
//!   identifiers in one query, so a run costs a few requests of Linear's hourly budget;
//! - person by e-mail: `users(filter: {email: {eqIgnoreCase}})` (at most two, so an address two accounts share
//!   is not taken as either);
//! - open tickets: `issues` assigned to the person's id whose state type is not closed, most recently updated
//!   first, paged with Linear's cursors (the page token is `endCursor`), `q` matched by Linear against the title
//!   (and, when it reads as an identifier, against the team key and number).
//!
//! - writes (audit tickets and the `ticket` provisioner): `issueCreate` in the team whose key is the
//!   destination's `project`, with the marker on the description's last line (`findByMarker` is an `issues`
//!   query on it); `commentCreate`; closing moves the issue into its team's first `completed` workflow state
//!   with `issueUpdate`.
//!
//! An issue is closed when its workflow state's type is `completed`, `canceled` or `duplicate`, when it is
//! archived, or when its state's name is one the operator listed in `closed_statuses`; a trashed issue is
//! deleted. Linear answers a rate limit with HTTP 400 and `RATELIMITED` in its errors, not 429: the wait is read
//! from the `X-RateLimit-*` reset headers ([`rate_limited`]).

use async_trait::async_trait;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::Duration;

mod auth;
pub mod events;
mod settings;

pub use auth::CLIENT_SECRET;
pub use events::linear_signature;
pub use settings::{LINEAR, LINEAR_API, Linear, WEBHOOK_SOURCE};

use crate::adapters::ticket_http::{Probed, TicketHttp, Written};
use crate::adapters::ticket_systems::client_credentials::ClientCredentials;
use crate::domain::connection::{
    ClosedStatuses, Person, PersonLookup, Ticket, TicketPage, TicketQuery, TicketState,
    TicketSummary, Verification, visible_email,
};
use crate::domain::ticket_writes::{CloseOutcome, CreatedTicket, NewTicket, one_line};
use crate::ports::{ReconcileBatch, TicketStates, TicketSystem, TicketSystemError};

/// The workflow state types that are closed.
pub const CLOSED_STATE_TYPES: [&str; 3] = ["completed", "canceled", "duplicate"];
/// Identifiers per reconciliation query.
const KEYS_PER_CALL: usize = 50;
/// Queries per reconciliation run: Linear counts requests per hour and discourages polling.
const CALLS_PER_RUN: usize = 10;
/// Open tickets read per page, and pages read at most.
const PAGE_SIZE: usize = 50;
const MAX_PAGES: usize = 4;
/// How long to leave Linear alone after a rate limit that names no reset.
const DEFAULT_PAUSE: Duration = Duration::from_secs(60);
/// The longest page token accepted (Linear's cursors are short ids).
const MAX_CURSOR: usize = 200;

/// The fields every issue read asks for.
const ISSUE_FIELDS: &str = "id identifier title url trashed archivedAt state { name type } assignee { id email name } team { id }";

/// What precedes the marker on the last line of an issue Ticketbound opened.
const MARKER_PREFIX: &str = "Ticketbound marker: ";

/// An issue identifier as Linear shows it (`ENG-123`): its team key (a letter, then letters, digits or `_`, at
/// most 20) upper-cased, and its number. Anything else names no issue and is never sent.
pub fn parse_identifier(key: &str) -> Option<(String, u64)> {
    let (team, number) = key.trim().rsplit_once('-')?;
    let team_ok = (1..=20).contains(&team.len())
        && team.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && team.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let number_ok = (1..=10).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit());
    if !(team_ok && number_ok) {
        return None;
    }
    Some((team.to_ascii_uppercase(), number.parse().ok()?))
}

/// The one spelling of an identifier: `eng-007` is `ENG-7`; anything else is left as it is.
pub fn canonical_identifier(key: &str) -> String {
    parse_identifier(key).map_or_else(|| key.to_owned(), |(team, n)| format!("{team}-{n}"))
}

/// The `IssueFilter` of one identifier.
fn identifier_filter(team: &str, number: u64) -> Value {
    json!({"team": {"key": {"eq": team}}, "number": {"eq": number}})
}

/// A GraphQL answer: `data`, and `errors` when something went wrong.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default = "Option::default")]
    data: Option<T>,
    #[serde(default = "Vec::new")]
    errors: Vec<GraphQlError>,
}

#[derive(Deserialize)]
struct GraphQlError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    extensions: Option<Extensions>,
}

#[derive(Deserialize)]
struct Extensions {
    #[serde(default)]
    code: Option<String>,
}

impl GraphQlError {
    fn code(&self) -> &str {
        self.extensions
            .as_ref()
            .and_then(|e| e.code.as_deref())
            .unwrap_or("")
    }
}

#[derive(Deserialize)]
struct Nodes<T> {
    #[serde(default = "Vec::new")]
    nodes: Vec<T>,
    #[serde(default, rename = "pageInfo")]
    page_info: Option<PageInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    #[serde(default)]
    has_next_page: bool,
    #[serde(default)]
    end_cursor: Option<String>,
}

#[derive(Deserialize)]
struct IssuesData {
    issues: Nodes<Issue>,
}

#[derive(Deserialize)]
struct UsersData {
    users: Nodes<User>,
}

#[derive(Deserialize)]
struct ViewerData {
    viewer: User,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Issue {
    #[serde(default)]
    id: String,
    #[serde(default)]
    identifier: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    trashed: Option<bool>,
    #[serde(default)]
    archived_at: Option<String>,
    #[serde(default)]
    state: Option<State>,
    #[serde(default)]
    assignee: Option<User>,
    #[serde(default)]
    team: Option<Id>,
}

/// Something named by its id (`team { id }`).
#[derive(Deserialize)]
struct Id {
    #[serde(default)]
    id: String,
}

#[derive(Deserialize)]
struct TeamsData {
    teams: Nodes<Id>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkflowStatesData {
    workflow_states: Nodes<Id>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IssueCreateData {
    issue_create: Payload<Created>,
}

#[derive(Deserialize)]
struct Created {
    #[serde(default)]
    identifier: String,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommentCreateData {
    comment_create: Payload<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IssueUpdateData {
    issue_update: Payload<Value>,
}

/// A mutation's answer: whether it succeeded, and what it made.
#[derive(Deserialize)]
struct Payload<T> {
    #[serde(default)]
    success: bool,
    #[serde(default = "Option::default")]
    issue: Option<T>,
}

#[derive(Deserialize)]
struct State {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    active: Option<bool>,
}

impl User {
    fn person(self) -> Person {
        Person {
            id: self.id,
            email: visible_email(self.email),
            display_name: self.name.filter(|n| !n.is_empty()),
        }
    }
}

/// The longest wait a rate limit's reset header is taken at: Linear's budgets refill within the hour, so a
/// later reset (a skewed clock, a header in other units) is not waited for longer than that.
pub(crate) const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);

/// Whether an answer to a GraphQL call is Linear's rate limit (HTTP 400 with `RATELIMITED` in its errors), and
/// how long it asks to wait: until the reset of whichever budget (`X-RateLimit-Requests-*` or
/// `X-RateLimit-Complexity-*`) is used up, in epoch milliseconds, at most [`MAX_RATE_LIMIT_WAIT`].
pub(crate) fn rate_limited(
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> Option<Option<Duration>> {
    let answer: Envelope<Value> = serde_json::from_slice(body).ok()?;
    if !answer.errors.iter().any(|e| e.code() == "RATELIMITED") {
        return None;
    }
    let read = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let resets: Vec<i64> = ["requests", "complexity"]
        .iter()
        .filter(|budget| read(&format!("x-ratelimit-{budget}-remaining")).is_none_or(|r| r <= 0))
        .filter_map(|budget| read(&format!("x-ratelimit-{budget}-reset")))
        .collect();
    let Some(reset) = resets.into_iter().max() else {
        return Some(None);
    };
    // Some captures give seconds rather than milliseconds.
    let reset_ms = if reset < 100_000_000_000 {
        i128::from(reset) * 1000
    } else {
        i128::from(reset)
    };
    Some(Some(
        Duration::from_millis(u64::try_from((reset_ms - now_ms).max(0)).unwrap_or(u64::MAX))
            .min(MAX_RATE_LIMIT_WAIT),
    ))
}

/// What a GraphQL call came to, besides data.
enum Answer<T> {
    Data(T),
    /// HTTP 400 that is not a rate limit: Linear refused the query (an unknown cursor, say).
    Refused(String),
    /// Rate limited, for a caller that stops rather than waits (reconciliation).
    Busy(Option<Duration>),
}

/// Linear over GraphQL.
pub struct LinearClient {
    http: TicketHttp,
    closed: ClosedStatuses,
    /// Set when the connection signs in with OAuth client credentials.
    oauth: Option<ClientCredentials>,
}

impl LinearClient {
    pub(crate) fn new(
        http: TicketHttp,
        closed: ClosedStatuses,
        oauth: Option<ClientCredentials>,
    ) -> Self {
        Self {
            http,
            closed,
            oauth,
        }
    }

    /// One GraphQL call. Credentials Linear refuses (HTTP 401, or `AUTHENTICATION_ERROR` in the errors) are
    /// [`TicketSystemError::Unauthorized`]; a rate limit is waited out within bounds, or [`Answer::Busy`] when
    /// `stop_when_busy`.
    async fn graphql<T: DeserializeOwned>(
        &self,
        query: &str,
        variables: Value,
        stop_when_busy: bool,
    ) -> Result<Answer<T>, TicketSystemError> {
        let http = match &self.oauth {
            Some(oauth) => oauth.signed_in(&self.http).await?,
            None => self.http.clone(),
        };
        let body = json!({"query": query, "variables": variables});
        let answer = http
            .query_json::<Envelope<T>>(http.url(&["graphql"]), &body, rate_limited, stop_when_busy)
            .await;
        if let (Err(TicketSystemError::Unauthorized { .. }), Some(oauth)) = (&answer, &self.oauth) {
            oauth.forget(&self.http);
        }
        match answer? {
            Probed::Found(envelope) => {
                if let Some(error) = envelope.errors.first() {
                    match error.code() {
                        "AUTHENTICATION_ERROR" => {
                            if let Some(oauth) = &self.oauth {
                                oauth.forget(&self.http);
                            }
                            return Err(TicketSystemError::Unauthorized {
                                status: 401,
                                message: format!(
                                    "Linear refused the credentials: {}",
                                    error.message
                                ),
                            });
                        }
                        "RATELIMITED" if stop_when_busy => return Ok(Answer::Busy(None)),
                        "RATELIMITED" => {
                            return Err(TicketSystemError::RateLimited {
                                message: "Linear is rate limiting the connection".into(),
                                retry_after: None,
                            });
                        }
                        _ if envelope.data.is_none() => {
                            return Err(TicketSystemError::Unexpected(format!(
                                "Linear answered: {}",
                                error.message
                            )));
                        }
                        _ => {}
                    }
                }
                envelope.data.map(Answer::Data).ok_or_else(|| {
                    TicketSystemError::Unexpected("Linear answered without data".into())
                })
            }
            Probed::Refused(detail) => Ok(Answer::Refused(detail)),
            Probed::Busy(wait) => Ok(Answer::Busy(wait)),
            Probed::NotFound => Err(TicketSystemError::Unexpected(
                "there is no Linear GraphQL API at this base URL (HTTP 404)".into(),
            )),
        }
    }

    /// A call that waits out rate limits: its data, or an error for a refused query.
    async fn data<T: DeserializeOwned>(
        &self,
        query: &str,
        variables: Value,
    ) -> Result<T, TicketSystemError> {
        match self.graphql(query, variables, false).await? {
            Answer::Data(data) => Ok(data),
            Answer::Refused(detail) => Err(TicketSystemError::Unexpected(format!(
                "Linear refused the query: {detail}"
            ))),
            Answer::Busy(wait) => Err(TicketSystemError::RateLimited {
                message: "Linear is rate limiting the connection".into(),
                retry_after: wait,
            }),
        }
    }

    fn ticket(&self, issue: Issue) -> Ticket {
        let (state_name, state_type) = issue.state.map(|s| (s.name, s.kind)).unwrap_or_default();
        let trashed = issue.trashed == Some(true);
        let archived = issue.archived_at.as_deref().is_some_and(|a| !a.is_empty());
        let closed = CLOSED_STATE_TYPES.contains(&state_type.as_str())
            || archived
            || trashed
            || self.closed.has_name(&state_name);
        let status = match (state_name.is_empty(), trashed, archived) {
            (true, _, _) => "Unknown".to_owned(),
            (false, true, _) => format!("{state_name} (trashed)"),
            (false, false, true) => format!("{state_name} (archived)"),
            (false, false, false) => state_name,
        };
        Ticket {
            key: canonical_identifier(&issue.identifier),
            id: (!issue.id.is_empty()).then_some(issue.id),
            summary: issue.title.unwrap_or_default(),
            status,
            closed,
            deleted: trashed,
            assignee: issue
                .assignee
                .filter(|a| !a.id.is_empty())
                .map(User::person),
            url: issue.url.unwrap_or_default(),
        }
    }

    /// One GraphQL write, sent once (a mutation is not retried after an answer that may hide a change; the
    /// caller's durable retry looks for the marker first). Refused credentials are
    /// [`TicketSystemError::Unauthorized`]; `FORBIDDEN` is [`TicketSystemError::NotPermitted`], naming `what`.
    /// Linear's rate limit changed nothing, so it is waited out when its reset is near, and otherwise is
    /// [`TicketSystemError::RateLimited`] with the wait until the reset ([`rate_limited`]): retryable, at the
    /// time Linear named, never an unexpected refusal.
    async fn mutate<T: DeserializeOwned>(
        &self,
        query: &str,
        variables: Value,
        what: &str,
    ) -> Result<T, TicketSystemError> {
        let http = match &self.oauth {
            Some(oauth) => oauth.signed_in(&self.http).await?,
            None => self.http.clone(),
        };
        let body = json!({"query": query, "variables": variables});
        let written = http
            .send_json_or_busy(
                reqwest::Method::POST,
                http.url(&["graphql"]),
                Some(&body),
                rate_limited,
            )
            .await;
        if let (Err(TicketSystemError::Unauthorized { .. }), Some(oauth)) = (&written, &self.oauth)
        {
            oauth.forget(&self.http);
        }
        let bytes = match written? {
            Written::Done(bytes) => bytes,
            Written::NotFound => {
                return Err(TicketSystemError::Unexpected(
                    "there is no Linear GraphQL API at this base URL (HTTP 404)".into(),
                ));
            }
            Written::Rejected(detail) => {
                return Err(TicketSystemError::Unexpected(format!(
                    "Linear refused to {what}: {detail}"
                )));
            }
        };
        let envelope: Envelope<T> = Written::shaped(&bytes, "Linear's GraphQL API")?;
        if let Some(error) = envelope.errors.first() {
            return Err(match error.code() {
                "AUTHENTICATION_ERROR" => TicketSystemError::Unauthorized {
                    status: 401,
                    message: format!("Linear refused the credentials: {}", error.message),
                },
                // Rate limited without the 400 (and so without its reset headers): nothing was written, and
                // the caller's durable retry comes back after its own backoff.
                "RATELIMITED" => TicketSystemError::RateLimited {
                    message: format!("Linear is rate limiting the connection; could not {what}"),
                    retry_after: None,
                },
                "FORBIDDEN" => TicketSystemError::NotPermitted(format!(
                    "Linear: the connection's account may not {what}; give it access to the team: {}",
                    error.message
                )),
                _ => TicketSystemError::Unexpected(format!(
                    "Linear refused to {what}: {}",
                    error.message
                )),
            });
        }
        envelope
            .data
            .ok_or_else(|| TicketSystemError::Unexpected("Linear answered without data".into()))
    }

    /// The issue `key` as Linear answers it (with its team), `None` when there is none.
    async fn issue(&self, key: &str) -> Result<Option<Issue>, TicketSystemError> {
        let Some((team, number)) = parse_identifier(key) else {
            return Ok(None);
        };
        let wanted = format!("{team}-{number}");
        let query = format!(
            "query Issues($filter: IssueFilter, $first: Int) {{ issues(filter: $filter, first: $first, includeArchived: true) {{ nodes {{ {ISSUE_FIELDS} }} }} }}"
        );
        let data: IssuesData = self
            .data(
                &query,
                json!({"filter": {"or": [identifier_filter(&team, number)]}, "first": 1}),
            )
            .await?;
        Ok(data
            .issues
            .nodes
            .into_iter()
            .find(|issue| canonical_identifier(&issue.identifier) == wanted))
    }

    /// The issues with `identifiers` (at most [`KEYS_PER_CALL`]), archived ones included.
    async fn issues_named(
        &self,
        identifiers: &[(String, u64)],
        stop_when_busy: bool,
    ) -> Result<Answer<Vec<Ticket>>, TicketSystemError> {
        let filter = json!({
            "or": identifiers.iter().map(|(team, n)| identifier_filter(team, *n)).collect::<Vec<_>>()
        });
        let query = format!(
            "query Issues($filter: IssueFilter, $first: Int) {{ issues(filter: $filter, first: $first, includeArchived: true) {{ nodes {{ {ISSUE_FIELDS} }} }} }}"
        );
        let answer = self
            .graphql::<IssuesData>(
                &query,
                json!({"filter": filter, "first": identifiers.len()}),
                stop_when_busy,
            )
            .await?;
        Ok(match answer {
            Answer::Data(data) => Answer::Data(
                data.issues
                    .nodes
                    .into_iter()
                    .map(|issue| self.ticket(issue))
                    .collect(),
            ),
            Answer::Refused(detail) => Answer::Refused(detail),
            Answer::Busy(wait) => Answer::Busy(wait),
        })
    }

    /// One page of the open issues assigned to `person`, narrowed to `text`, after `cursor`.
    async fn assigned_page(
        &self,
        person: &Person,
        text: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Answer<TicketPage>, TicketSystemError> {
        let mut conditions = vec![
            json!({"assignee": {"id": {"eq": person.id}}}),
            json!({"state": {"type": {"nin": CLOSED_STATE_TYPES}}}),
        ];
        if let Some(text) = text {
            let mut any = vec![json!({"title": {"containsIgnoreCase": text}})];
            if let Some((team, n)) = parse_identifier(text) {
                any.push(identifier_filter(&team, n));
            }
            conditions.push(json!({"or": any}));
        }
        let query = format!(
            "query Assigned($filter: IssueFilter, $first: Int, $after: String) {{ issues(filter: $filter, first: $first, after: $after, orderBy: updatedAt) {{ nodes {{ {ISSUE_FIELDS} }} pageInfo {{ hasNextPage endCursor }} }} }}"
        );
        let answer = self
            .graphql::<IssuesData>(
                &query,
                json!({"filter": {"and": conditions}, "first": PAGE_SIZE, "after": cursor}),
                false,
            )
            .await?;
        Ok(match answer {
            Answer::Data(data) => {
                let next = data
                    .issues
                    .page_info
                    .filter(|p| p.has_next_page)
                    .and_then(|p| p.end_cursor)
                    .filter(|c| !c.is_empty());
                Answer::Data(TicketPage {
                    items: data
                        .issues
                        .nodes
                        .into_iter()
                        .map(|issue| self.ticket(issue))
                        .filter(|t| !t.closed)
                        .map(|t| TicketSummary::from(&t))
                        .collect(),
                    next,
                })
            }
            Answer::Refused(detail) => Answer::Refused(detail),
            Answer::Busy(wait) => Answer::Busy(wait),
        })
    }
}

#[async_trait]
impl TicketSystem for LinearClient {
    async fn verify(&self) -> Result<Verification, TicketSystemError> {
        let data: ViewerData = self
            .data("query Viewer { viewer { id name email } }", json!({}))
            .await?;
        Ok(Verification::of(data.viewer.person(), None))
    }

    async fn get_ticket(&self, key: &str) -> Result<Option<Ticket>, TicketSystemError> {
        let Some(identifier) = parse_identifier(key) else {
            return Ok(None);
        };
        let wanted = format!("{}-{}", identifier.0, identifier.1);
        match self.issues_named(&[identifier], false).await? {
            Answer::Data(tickets) => Ok(tickets.into_iter().find(|t| t.key == wanted)),
            Answer::Refused(detail) => Err(TicketSystemError::Unexpected(format!(
                "Linear refused the query: {detail}"
            ))),
            Answer::Busy(wait) => Err(TicketSystemError::RateLimited {
                message: "Linear is rate limiting the connection".into(),
                retry_after: wait,
            }),
        }
    }

    async fn find_person(&self, email: &str) -> Result<PersonLookup, TicketSystemError> {
        let email = email.trim();
        if email.is_empty() {
            return Ok(PersonLookup::NotFound);
        }
        let data: UsersData = self
            .data(
                "query Users($email: String!) { users(filter: {email: {eqIgnoreCase: $email}}, first: 2) { nodes { id name email active } } }",
                json!({"email": email}),
            )
            .await?;
        let users: Vec<User> = data
            .users
            .nodes
            .into_iter()
            .filter(|u| u.active != Some(false))
            .collect();
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
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = match self.assigned_page(person, None, cursor.as_deref()).await? {
                Answer::Data(page) => page,
                Answer::Refused(detail) => {
                    return Err(TicketSystemError::Unexpected(format!(
                        "Linear refused the query: {detail}"
                    )));
                }
                Answer::Busy(wait) => {
                    return Err(TicketSystemError::RateLimited {
                        message: "Linear is rate limiting the connection".into(),
                        retry_after: wait,
                    });
                }
            };
            out.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    /// One page of [`Self::open_tickets_for`]: the token is Linear's `endCursor`, and `q` is matched by Linear,
    /// so paging and narrowing happen on its side.
    async fn open_tickets_page(
        &self,
        person: &Person,
        query: &TicketQuery,
    ) -> Result<TicketPage, TicketSystemError> {
        let cursor = match query.page.as_deref() {
            None => None,
            Some(token)
                if !token.is_empty()
                    && token.len() <= MAX_CURSOR
                    && token.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Some(token)
            }
            Some(_) => {
                return Err(TicketSystemError::InvalidPageToken(
                    "not a Linear cursor".into(),
                ));
            }
        };
        let text = query
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match self.assigned_page(person, text, cursor).await? {
            Answer::Data(page) => Ok(page),
            Answer::Refused(detail) if cursor.is_some() => Err(
                TicketSystemError::InvalidPageToken(format!("Linear refused the cursor: {detail}")),
            ),
            Answer::Refused(detail) => Err(TicketSystemError::Unexpected(format!(
                "Linear refused the query: {detail}"
            ))),
            Answer::Busy(wait) => Err(TicketSystemError::RateLimited {
                message: "Linear is rate limiting the connection".into(),
                retry_after: wait,
            }),
        }
    }

    fn reconcile_batch(&self) -> ReconcileBatch {
        ReconcileBatch {
            keys_per_call: KEYS_PER_CALL,
            calls_per_run: CALLS_PER_RUN,
        }
    }

    /// `issueCreate` in the destination's team (`project` is its key), the marker on the description's last
    /// line, the destination's priority (0 none, 1 urgent … 4 low).
    async fn create_ticket(&self, t: &NewTicket) -> Result<CreatedTicket, TicketSystemError> {
        let Some(team) = t.destination.project.as_deref() else {
            return Err(TicketSystemError::Unexpected(
                "a Linear issue needs a team key (`project`)".into(),
            ));
        };
        let teams: TeamsData = self
            .data(
                "query Team($key: String!) { teams(filter: {key: {eq: $key}}, first: 1) { nodes { id } } }",
                json!({"key": team}),
            )
            .await?;
        let team_id = teams
            .teams
            .nodes
            .into_iter()
            .map(|t| t.id)
            .find(|id| !id.is_empty())
            .ok_or_else(|| {
                TicketSystemError::NotPermitted(format!(
                    "Linear: the connection's account sees no team {team}; add it to the team (or check the key)"
                ))
            })?;
        let description = format!("{}\n\n{MARKER_PREFIX}{}", t.description, t.marker);
        let data: IssueCreateData = self
            .mutate(
                "mutation Create($input: IssueCreateInput!) { issueCreate(input: $input) { success issue { identifier url } } }",
                json!({"input": {
                    "teamId": team_id,
                    "title": one_line(&t.summary),
                    "description": description,
                    "priority": t.destination.priority.unwrap_or(0),
                }}),
                &format!("create issues in team {team}"),
            )
            .await?;
        let created = data
            .issue_create
            .issue
            .filter(|issue| {
                data.issue_create.success && parse_identifier(&issue.identifier).is_some()
            })
            .ok_or_else(|| {
                TicketSystemError::Unexpected("Linear did not say which issue it created".into())
            })?;
        Ok(CreatedTicket {
            key: canonical_identifier(&created.identifier),
            url: created.url.unwrap_or_default(),
        })
    }

    /// The issue whose description carries `marker`, archived ones included.
    async fn find_by_marker(
        &self,
        marker: &str,
    ) -> Result<Option<CreatedTicket>, TicketSystemError> {
        let query = format!(
            "query Marked($filter: IssueFilter, $first: Int) {{ issues(filter: $filter, first: $first, includeArchived: true) {{ nodes {{ {ISSUE_FIELDS} }} }} }}"
        );
        let data: IssuesData = self
            .data(
                &query,
                json!({"filter": {"description": {"contains": format!("{MARKER_PREFIX}{marker}")}}, "first": 1}),
            )
            .await?;
        Ok(data
            .issues
            .nodes
            .into_iter()
            .find(|issue| parse_identifier(&issue.identifier).is_some())
            .map(|issue| CreatedTicket {
                key: canonical_identifier(&issue.identifier),
                url: issue.url.unwrap_or_default(),
            }))
    }

    /// `commentCreate` on the issue; `Ok(false)` when Linear has no such issue.
    async fn add_comment(&self, key: &str, text: &str) -> Result<bool, TicketSystemError> {
        let Some(issue) = self.issue(key).await? else {
            return Ok(false);
        };
        let data: CommentCreateData = self
            .mutate(
                "mutation Comment($input: CommentCreateInput!) { commentCreate(input: $input) { success } }",
                json!({"input": {"issueId": issue.id, "body": text}}),
                "comment on issues",
            )
            .await?;
        if !data.comment_create.success {
            return Err(TicketSystemError::Unexpected(
                "Linear did not add the comment".into(),
            ));
        }
        Ok(true)
    }

    /// Moves the issue into its team's first `completed` workflow state.
    async fn close_ticket(&self, key: &str) -> Result<CloseOutcome, TicketSystemError> {
        let Some(issue) = self.issue(key).await? else {
            return Ok(CloseOutcome::NotFound);
        };
        let id = issue.id.clone();
        let team = issue
            .team
            .as_ref()
            .map(|t| t.id.clone())
            .unwrap_or_default();
        if self.ticket(issue).closed {
            return Ok(CloseOutcome::AlreadyClosed);
        }
        let states: WorkflowStatesData = self
            .data(
                "query Done($team: ID!) { workflowStates(filter: {team: {id: {eq: $team}}, type: {eq: \"completed\"}}, first: 1) { nodes { id } } }",
                json!({"team": team}),
            )
            .await?;
        let state = states
            .workflow_states
            .nodes
            .into_iter()
            .map(|s| s.id)
            .find(|id| !id.is_empty())
            .ok_or_else(|| {
                TicketSystemError::Unexpected(format!(
                    "Linear: the team of {key} has no completed workflow state"
                ))
            })?;
        let data: IssueUpdateData = self
            .mutate(
                "mutation Close($id: String!, $input: IssueUpdateInput!) { issueUpdate(id: $id, input: $input) { success } }",
                json!({"id": id, "input": {"stateId": state}}),
                &format!("close {key}"),
            )
            .await?;
        if !data.issue_update.success {
            return Err(TicketSystemError::Unexpected(format!(
                "Linear did not close {key}"
            )));
        }
        Ok(CloseOutcome::Closed)
    }

    /// One `issues(filter: {or: …})` query for the batch; an identifier it does not return is deleted.
    async fn ticket_states(&self, keys: &[String]) -> Result<TicketStates, TicketSystemError> {
        let mut out = TicketStates::default();
        let identifiers: Vec<(String, u64)> =
            keys.iter().filter_map(|k| parse_identifier(k)).collect();
        let mut found = std::collections::HashMap::new();
        if !identifiers.is_empty() {
            out.calls += 1;
            match self.issues_named(&identifiers, true).await? {
                Answer::Data(tickets) => {
                    for ticket in tickets {
                        found.insert(ticket.key.clone(), TicketState::of(Some(&ticket)));
                    }
                }
                Answer::Busy(wait) => {
                    out.rate_limited = Some(wait.unwrap_or(DEFAULT_PAUSE));
                    return Ok(out);
                }
                Answer::Refused(detail) => {
                    return Err(TicketSystemError::Unexpected(format!(
                        "Linear refused the reconciliation query: {detail}"
                    )));
                }
            }
        }
        for key in keys {
            let state = found
                .get(&canonical_identifier(key))
                .copied()
                .unwrap_or(TicketState::Deleted);
            out.states.push((key.clone(), state));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn identifiers_are_a_team_key_and_a_number() {
        assert_eq!(parse_identifier("ENG-123"), Some(("ENG".into(), 123)));
        assert_eq!(parse_identifier(" eng-007 "), Some(("ENG".into(), 7)));
        assert_eq!(canonical_identifier("eng-007"), "ENG-7");
        for bad in [
            "ENG",
            "ENG-",
            "-1",
            "1ENG-2",
            "ENG-1x",
            "E\"NG-1",
            "ENG-12345678901",
        ] {
            assert_eq!(parse_identifier(bad), None, "{bad}");
            assert_eq!(canonical_identifier(bad), bad);
        }
    }

    #[test]
    fn a_rate_limit_is_a_400_saying_ratelimited_and_waits_for_the_used_up_budget() {
        let body = br#"{"errors":[{"message":"Rate limit exceeded","extensions":{"code":"RATELIMITED"}}]}"#;
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-ratelimit-requests-remaining",
            HeaderValue::from_static("0"),
        );
        headers.insert(
            "x-ratelimit-requests-reset",
            HeaderValue::from_str(&(now_ms + 30_000).to_string()).unwrap(),
        );
        headers.insert(
            "x-ratelimit-complexity-remaining",
            HeaderValue::from_static("5000"),
        );
        headers.insert(
            "x-ratelimit-complexity-reset",
            HeaderValue::from_str(&(now_ms + 3_600_000).to_string()).unwrap(),
        );
        let wait = rate_limited(&headers, body).unwrap().unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "the requests budget is the used-up one: {wait:?}"
        );
        assert_eq!(rate_limited(&HeaderMap::new(), body), Some(None));
        headers.insert(
            "x-ratelimit-requests-reset",
            HeaderValue::from_str(&(now_ms + 90 * 24 * 3_600_000).to_string()).unwrap(),
        );
        assert_eq!(
            rate_limited(&headers, body),
            Some(Some(MAX_RATE_LIMIT_WAIT)),
            "a reset months away is waited for an hour at most"
        );
        let refused = br#"{"errors":[{"message":"Argument Validation Error","extensions":{"code":"INVALID_INPUT"}}]}"#;
        assert_eq!(rate_limited(&headers, refused), None);
        assert_eq!(rate_limited(&headers, b"not json"), None);
    }
}
