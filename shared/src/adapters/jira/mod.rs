//! Jira clients (protocol-facts §2–3): [`JiraCloudClient`] (REST v3, Basic `email:api_token`) and
//! [`JiraDataCenterClient`] (REST v2, Bearer PAT or Basic `username:password`).
//!
//! | | Cloud | Data Center |
//! |---|---|---|
//! | verify | `/rest/api/3/myself` + `/rest/api/3/project/search?maxResults=10` | `/rest/api/2/myself` + `/rest/api/2/project` |
//! | one ticket | `/rest/api/3/issue/{key}?fields=summary,status,assignee` | `/rest/api/2/issue/{key}?…` |
//! | person by e-mail | `/rest/api/3/user/search?query=` → `accountId` | `/rest/api/2/user/search?username=` → `name` |
//! | open tickets | `/rest/api/3/search/jql` paged by `nextPageToken` | `/rest/api/2/search` paged by `startAt` |
//!
//! Cloud never calls the removed `/rest/api/3/search` (it answers 410). A ticket is closed when its status
//! category key is `done` or its status name is one of the connection's `closed_statuses` (DESIGN §1 rule 9).

use async_trait::async_trait;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

pub mod events;
mod settings;

pub use settings::{JiraCloud, JiraDataCenter};

use super::ticket_http::{Probed, TicketHttp, Written};
use crate::domain::connection::{
    ClosedStatuses, Person, PersonLookup, ProjectSummary, Ticket, TicketState, TicketSummary,
    Verification, visible_email,
};
use crate::domain::ticket_writes::{
    CloseOutcome, CreatedTicket, NewTicket, TicketDestination, adf, one_line,
};
use crate::ports::{ReconcileBatch, TicketStates, TicketSystem, TicketSystemError};

/// Tickets fetched per page, and pages read at most, for "my open tickets" (500 tickets is plenty for a picker).
const PAGE_SIZE: usize = 50;
const MAX_PAGES: usize = 10;
/// Projects shown by `verify`.
const SAMPLE_PROJECTS: usize = 10;
/// Reconciliation: keys per JQL search (`key in (...)`, `maxResults=100`, the most `/search/jql` returns in
/// one page), and searches per run and connection (well inside the per-second burst limits when spread over a
/// run, protocol-facts §3.5).
const KEYS_PER_SEARCH: usize = 100;
const SEARCHES_PER_RUN: usize = 50;
/// How long to leave Jira alone after a 429 without `Retry-After`.
const DEFAULT_PAUSE: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    account_type: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    email_address: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    active: Option<bool>,
}

impl User {
    /// Cloud identifies people by `accountId`; Data Center by user name (`key` on very old servers).
    fn person(self, cloud: bool) -> Option<Person> {
        let id = if cloud {
            self.account_id
        } else {
            self.name.or(self.key)
        }?;
        Some(Person {
            id,
            email: visible_email(self.email_address),
            display_name: self.display_name,
        })
    }
}

#[derive(Deserialize)]
struct Issue {
    #[serde(default)]
    id: Option<String>,
    key: String,
    #[serde(default)]
    fields: Fields,
}

#[derive(Deserialize, Default)]
struct Fields {
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    assignee: Option<User>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    name: String,
    #[serde(default)]
    status_category: Option<StatusCategory>,
}

#[derive(Deserialize)]
struct StatusCategory {
    #[serde(default)]
    key: String,
    /// A number in REST answers (`3`), a string in some deliveries (`"3"`).
    #[serde(default)]
    id: Option<serde_json::Value>,
}

impl StatusCategory {
    fn is_done(&self) -> bool {
        category_is_done(Some(&self.key), self.id.as_ref())
    }
}

/// The one Jira rule for "this status category means closed" (DESIGN §1 rule 9, protocol-facts §3): the
/// category key `done`, or, when a body carries no key, the category id 3; never the (localised) category
/// name. The key decides when present because it is what Jira documents as stable. Webhook deliveries,
/// reads, reconciliation and the close-transition search all ask this function.
pub(crate) fn category_is_done(key: Option<&str>, id: Option<&serde_json::Value>) -> bool {
    match key.map(str::trim).filter(|k| !k.is_empty()) {
        // Automation "Custom data" may render the id in place of the key.
        Some(key) => key.eq_ignore_ascii_case("done") || key == "3",
        None => match id {
            Some(serde_json::Value::Number(n)) => n.as_u64() == Some(3),
            Some(serde_json::Value::String(s)) => s.trim() == "3",
            _ => false,
        },
    }
}

#[derive(Deserialize)]
struct Project {
    key: String,
    #[serde(default)]
    name: String,
}

/// What both flavours share: the HTTP client, the closed statuses and the REST version.
#[derive(Clone)]
struct Jira {
    http: TicketHttp,
    closed: ClosedStatuses,
    cloud: bool,
}

impl Jira {
    fn api(&self) -> &'static str {
        if self.cloud { "3" } else { "2" }
    }

    fn is_closed(&self, status: Option<&Status>) -> bool {
        status.is_some_and(|s| {
            // Match the category on its key, never its (localised) name.
            s.status_category
                .as_ref()
                .is_some_and(StatusCategory::is_done)
                || self.closed.has_name(&s.name)
        })
    }

    fn ticket(&self, issue: Issue) -> Ticket {
        let closed = self.is_closed(issue.fields.status.as_ref());
        Ticket {
            url: self.http.site_url(&["browse", &issue.key]),
            summary: issue.fields.summary.unwrap_or_default(),
            status: issue.fields.status.map(|s| s.name).unwrap_or_default(),
            closed,
            deleted: false,
            assignee: issue.fields.assignee.and_then(|u| u.person(self.cloud)),
            id: issue.id,
            key: issue.key,
        }
    }

    async fn myself(&self) -> Result<Person, TicketSystemError> {
        let url = self.http.url(&["rest", "api", self.api(), "myself"]);
        let user: User = self.http.get_json(url).await?.ok_or_else(|| {
            TicketSystemError::Unexpected("/myself answered 404; is the base URL right?".into())
        })?;
        user.person(self.cloud).ok_or_else(|| {
            TicketSystemError::Unexpected(
                "/myself did not say who the credentials belong to".into(),
            )
        })
    }

    async fn get_ticket(&self, key: &str) -> Result<Option<Ticket>, TicketSystemError> {
        let url = self.http.url_with(
            &["rest", "api", self.api(), "issue", key],
            &[("fields", "summary,status,assignee")],
        );
        let issue: Option<Issue> = self.http.get_json(url).await?;
        Ok(issue.map(|i| self.ticket(i)))
    }

    /// Among users a search returned (Cloud's `query` and Data Center's `username` both match prefixes), the
    /// active human account whose visible address is exactly `email`; accounts with a hidden or masked address
    /// make the answer [`PersonLookup::Unverifiable`], never a match.
    fn pick(&self, users: Vec<User>, email: &str) -> PersonLookup {
        let candidates = users
            .into_iter()
            .filter(|u| u.active != Some(false))
            .filter(|u| !self.cloud || u.account_type.as_deref().is_none_or(|t| t == "atlassian"))
            .filter_map(|u| u.person(self.cloud))
            .collect();
        PersonLookup::among(candidates, email)
    }

    fn open_jql(&self, person: &Person) -> String {
        let escaped = person.id.replace('\\', "\\\\").replace('"', "\\\"");
        format!("assignee = \"{escaped}\" AND statusCategory != Done ORDER BY updated DESC")
    }

    fn keep_open(&self, issues: Vec<Issue>, out: &mut Vec<TicketSummary>) {
        for issue in issues {
            let ticket = self.ticket(issue);
            if !ticket.closed {
                out.push(TicketSummary::from(&ticket));
            }
        }
    }
}

/// A page of a reconciliation search, Cloud (`nextPageToken`, `isLast`) or Data Center (`startAt`, `total`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatesPage {
    #[serde(default)]
    issues: Vec<Issue>,
    #[serde(default)]
    next_page_token: Option<String>,
    #[serde(default)]
    is_last: Option<bool>,
    #[serde(default)]
    start_at: usize,
    #[serde(default)]
    total: Option<usize>,
}

/// The JQL naming `keys`, each quoted (keys are `[A-Za-z0-9_-]` by the time they are bound, but a quote keeps
/// a key that happens to be a JQL word from being read as one).
fn keys_jql(keys: &[String]) -> String {
    let quoted: Vec<String> = keys
        .iter()
        .map(|k| format!("\"{}\"", k.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("key in ({})", quoted.join(", "))
}

/// Reconciliation (DESIGN §2): one JQL search over up to [`KEYS_PER_SEARCH`] keys; when Jira refuses it
/// (400: it names a key that no longer exists), or leaves a key out of its answer (moved, no longer visible,
/// or not yet indexed), those keys are read one by one, where a 404 means deleted. "Closed" is decided by
/// [`Jira::is_closed`], as for every other read.
impl Jira {
    async fn ticket_states(&self, keys: &[String]) -> Result<TicketStates, TicketSystemError> {
        let mut out = TicketStates::default();
        if keys.is_empty() {
            return Ok(out);
        }
        let jql = keys_jql(keys);
        let max = KEYS_PER_SEARCH.to_string();
        let segments: &[&str] = if self.cloud {
            &["rest", "api", "3", "search", "jql"]
        } else {
            &["rest", "api", "2", "search"]
        };
        // Keyed by the upper-case key: JQL matches keys without regard to case.
        let mut found: HashMap<String, TicketState> = HashMap::new();
        let mut token: Option<String> = None;
        let mut start = 0usize;
        let mut refused = false;
        for _ in 0..MAX_PAGES {
            let start_text = start.to_string();
            let mut query = vec![
                ("jql", jql.as_str()),
                ("fields", "status"),
                ("maxResults", max.as_str()),
            ];
            match (&token, self.cloud) {
                (Some(t), true) => query.push(("nextPageToken", t.as_str())),
                (_, false) => query.push(("startAt", start_text.as_str())),
                _ => {}
            }
            let url = self.http.url_with(segments, &query);
            out.calls += 1;
            let page: StatesPage = match self.http.probe_json(url).await? {
                Probed::Found(page) => page,
                Probed::Refused(detail) => {
                    tracing::info!(%detail, keys = keys.len(), "Jira refused the reconciliation search; reading the tickets one by one");
                    refused = true;
                    break;
                }
                Probed::Busy(wait) => {
                    out.rate_limited = Some(wait.unwrap_or(DEFAULT_PAUSE));
                    return Ok(out);
                }
                Probed::NotFound => return Err(missing(&format!("/{}", segments.join("/")))),
            };
            let got = page.issues.len();
            for issue in page.issues {
                let ticket = self.ticket(issue);
                found.insert(
                    ticket.key.to_ascii_uppercase(),
                    TicketState::of(Some(&ticket)),
                );
            }
            start = page.start_at + got;
            let more = if self.cloud {
                match page.next_page_token {
                    Some(next) if page.is_last != Some(true) && !next.is_empty() => {
                        token = Some(next);
                        true
                    }
                    _ => false,
                }
            } else {
                got > 0 && page.total.is_some_and(|total| start < total)
            };
            if !more {
                break;
            }
        }
        for key in keys {
            let state = match found.get(&key.to_ascii_uppercase()) {
                Some(state) if !refused => *state,
                _ => {
                    out.calls += 1;
                    TicketState::of(self.get_ticket(key).await?.as_ref())
                }
            };
            out.states.push((key.clone(), state));
        }
        Ok(out)
    }
}

#[derive(Deserialize)]
struct CreatedIssue {
    key: String,
}

#[derive(Deserialize)]
struct Transitions {
    #[serde(default)]
    transitions: Vec<Transition>,
}

#[derive(Deserialize)]
struct Transition {
    id: String,
    #[serde(default)]
    to: Option<Status>,
}

/// Writes (DESIGN §7–8): create (`POST …/issue`, Cloud with an ADF description, Data Center with wiki text),
/// find by label, comment (`POST …/issue/{key}/comment`) and close (the transition whose target status is in
/// the `done` category, never a hard-coded id: protocol-facts §3.3–3.4).
impl Jira {
    /// A description or comment: ADF on Cloud (v3), plain text on Data Center (v2).
    fn rich(&self, text: &str) -> serde_json::Value {
        if self.cloud {
            adf(text)
        } else {
            serde_json::Value::String(text.to_owned())
        }
    }

    async fn create_ticket(&self, t: &NewTicket) -> Result<CreatedTicket, TicketSystemError> {
        let TicketDestination::Jira {
            project,
            issue_type,
        } = &t.destination
        else {
            return Err(TicketSystemError::Unexpected(
                "a Freshservice destination cannot be used with a Jira connection".into(),
            ));
        };
        let body = serde_json::json!({"fields": {
            "project": {"key": project},
            "issuetype": {"name": issue_type},
            "summary": one_line(&t.summary),
            "description": self.rich(&t.description),
            "labels": ["ticketbound", t.marker],
        }});
        let url = self.http.url(&["rest", "api", self.api(), "issue"]);
        match self
            .http
            .send_json(reqwest::Method::POST, url, Some(&body))
            .await?
        {
            Written::Done(bytes) => {
                let created: CreatedIssue = serde_json::from_slice(&bytes).map_err(|e| {
                    TicketSystemError::Unexpected(format!(
                        "creating an issue answered JSON of an unexpected shape: {e}"
                    ))
                })?;
                Ok(CreatedTicket {
                    url: self.http.site_url(&["browse", &created.key]),
                    key: created.key,
                })
            }
            Written::NotFound => Err(missing(&format!("/rest/api/{}/issue", self.api()))),
            Written::Rejected(m) => Err(TicketSystemError::Unexpected(format!(
                "Jira refused to create the issue in project {project} (type {issue_type}; the fields summary, description and labels must be on its create screen): {m}"
            ))),
        }
    }

    async fn find_by_marker(
        &self,
        marker: &str,
    ) -> Result<Option<CreatedTicket>, TicketSystemError> {
        let escaped = marker.replace('\\', "\\\\").replace('"', "\\\"");
        let jql = format!("labels = \"{escaped}\" ORDER BY created ASC");
        let segments: &[&str] = if self.cloud {
            &["rest", "api", "3", "search", "jql"]
        } else {
            &["rest", "api", "2", "search"]
        };
        let url = self.http.url_with(
            segments,
            &[
                ("jql", jql.as_str()),
                ("fields", "summary"),
                ("maxResults", "1"),
            ],
        );
        let page: OffsetPage = self
            .http
            .get_json(url)
            .await?
            .ok_or_else(|| missing(&format!("/{}", segments.join("/"))))?;
        Ok(page.issues.into_iter().next().map(|i| CreatedTicket {
            url: self.http.site_url(&["browse", &i.key]),
            key: i.key,
        }))
    }

    async fn add_comment(&self, key: &str, text: &str) -> Result<bool, TicketSystemError> {
        let url = self
            .http
            .url(&["rest", "api", self.api(), "issue", key, "comment"]);
        let body = serde_json::json!({"body": self.rich(text)});
        match self
            .http
            .send_json(reqwest::Method::POST, url, Some(&body))
            .await?
        {
            Written::Done(_) => Ok(true),
            Written::NotFound => Ok(false),
            Written::Rejected(m) => Err(TicketSystemError::Unexpected(format!(
                "Jira refused the comment on {key}: {m}"
            ))),
        }
    }

    async fn close_ticket(&self, key: &str) -> Result<CloseOutcome, TicketSystemError> {
        let Some(ticket) = self.get_ticket(key).await? else {
            return Ok(CloseOutcome::NotFound);
        };
        if ticket.closed {
            return Ok(CloseOutcome::AlreadyClosed);
        }
        let url = self
            .http
            .url(&["rest", "api", self.api(), "issue", key, "transitions"]);
        let Some(available): Option<Transitions> = self.http.get_json(url.clone()).await? else {
            return Ok(CloseOutcome::NotFound);
        };
        let done = available.transitions.into_iter().find(|t| {
            t.to.as_ref()
                .and_then(|s| s.status_category.as_ref())
                .is_some_and(StatusCategory::is_done)
        });
        let Some(done) = done else {
            return Err(TicketSystemError::Unexpected(format!(
                "{key} (status {}) has no transition into a done status that the connection's account may use",
                ticket.status
            )));
        };
        let body = serde_json::json!({"transition": {"id": done.id}});
        match self
            .http
            .send_json(reqwest::Method::POST, url, Some(&body))
            .await?
        {
            Written::Done(_) => Ok(CloseOutcome::Closed),
            Written::NotFound => Ok(CloseOutcome::NotFound),
            Written::Rejected(m) => Err(TicketSystemError::Unexpected(format!(
                "Jira refused to close {key} (a field required on the transition screen?): {m}"
            ))),
        }
    }
}

fn missing(path: &str) -> TicketSystemError {
    TicketSystemError::Unexpected(format!("{path} answered 404; is the base URL right?"))
}

/// Jira Cloud over REST v3.
#[derive(Clone)]
pub struct JiraCloudClient(Jira);

impl JiraCloudClient {
    pub(crate) fn new(http: TicketHttp, closed: ClosedStatuses) -> Self {
        Self(Jira {
            http,
            closed,
            cloud: true,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudPage {
    #[serde(default)]
    issues: Vec<Issue>,
    #[serde(default)]
    next_page_token: Option<String>,
    #[serde(default)]
    is_last: Option<bool>,
}

#[derive(Deserialize)]
struct ProjectPage {
    #[serde(default)]
    values: Vec<Project>,
}

#[async_trait]
impl TicketSystem for JiraCloudClient {
    fn reconcile_batch(&self) -> ReconcileBatch {
        ReconcileBatch {
            keys_per_call: KEYS_PER_SEARCH,
            calls_per_run: SEARCHES_PER_RUN,
        }
    }

    async fn ticket_states(&self, keys: &[String]) -> Result<TicketStates, TicketSystemError> {
        self.0.ticket_states(keys).await
    }

    async fn create_ticket(&self, ticket: &NewTicket) -> Result<CreatedTicket, TicketSystemError> {
        self.0.create_ticket(ticket).await
    }

    async fn find_by_marker(
        &self,
        marker: &str,
    ) -> Result<Option<CreatedTicket>, TicketSystemError> {
        self.0.find_by_marker(marker).await
    }

    async fn add_comment(&self, key: &str, text: &str) -> Result<bool, TicketSystemError> {
        self.0.add_comment(key, text).await
    }

    async fn close_ticket(&self, key: &str) -> Result<CloseOutcome, TicketSystemError> {
        self.0.close_ticket(key).await
    }

    async fn verify(&self) -> Result<Verification, TicketSystemError> {
        let account = self.0.myself().await?;
        let url = self.0.http.url_with(
            &["rest", "api", "3", "project", "search"],
            &[("maxResults", &SAMPLE_PROJECTS.to_string())],
        );
        let page: ProjectPage = self
            .0
            .http
            .get_json(url)
            .await?
            .ok_or_else(|| missing("/rest/api/3/project/search"))?;
        Ok(Verification {
            account,
            projects: Some(
                page.values
                    .into_iter()
                    .take(SAMPLE_PROJECTS)
                    .map(|p| ProjectSummary {
                        key: p.key,
                        name: p.name,
                    })
                    .collect(),
            ),
        })
    }

    async fn get_ticket(&self, key: &str) -> Result<Option<Ticket>, TicketSystemError> {
        self.0.get_ticket(key).await
    }

    async fn find_person(&self, email: &str) -> Result<PersonLookup, TicketSystemError> {
        let url = self
            .0
            .http
            .url_with(&["rest", "api", "3", "user", "search"], &[("query", email)]);
        let users: Vec<User> = self.0.http.get_json(url).await?.unwrap_or_default();
        Ok(self.0.pick(users, email))
    }

    async fn open_tickets_for(
        &self,
        person: &Person,
    ) -> Result<Vec<TicketSummary>, TicketSystemError> {
        let jql = self.0.open_jql(person);
        let max = PAGE_SIZE.to_string();
        let mut token: Option<String> = None;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let mut query = vec![
                ("jql", jql.as_str()),
                ("fields", "summary,status"),
                ("maxResults", max.as_str()),
            ];
            if let Some(t) = &token {
                query.push(("nextPageToken", t.as_str()));
            }
            let url = self
                .0
                .http
                .url_with(&["rest", "api", "3", "search", "jql"], &query);
            let page: CloudPage = self
                .0
                .http
                .get_json(url)
                .await?
                .ok_or_else(|| missing("/rest/api/3/search/jql"))?;
            self.0.keep_open(page.issues, &mut out);
            match page.next_page_token {
                Some(next) if page.is_last != Some(true) && !next.is_empty() => token = Some(next),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// Jira Data Center (and Server) over REST v2.
#[derive(Clone)]
pub struct JiraDataCenterClient(Jira);

impl JiraDataCenterClient {
    pub(crate) fn new(http: TicketHttp, closed: ClosedStatuses) -> Self {
        Self(Jira {
            http,
            closed,
            cloud: false,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OffsetPage {
    #[serde(default)]
    start_at: usize,
    #[serde(default)]
    total: Option<usize>,
    #[serde(default)]
    issues: Vec<Issue>,
}

#[async_trait]
impl TicketSystem for JiraDataCenterClient {
    fn reconcile_batch(&self) -> ReconcileBatch {
        ReconcileBatch {
            keys_per_call: KEYS_PER_SEARCH,
            calls_per_run: SEARCHES_PER_RUN,
        }
    }

    async fn ticket_states(&self, keys: &[String]) -> Result<TicketStates, TicketSystemError> {
        self.0.ticket_states(keys).await
    }

    async fn create_ticket(&self, ticket: &NewTicket) -> Result<CreatedTicket, TicketSystemError> {
        self.0.create_ticket(ticket).await
    }

    async fn find_by_marker(
        &self,
        marker: &str,
    ) -> Result<Option<CreatedTicket>, TicketSystemError> {
        self.0.find_by_marker(marker).await
    }

    async fn add_comment(&self, key: &str, text: &str) -> Result<bool, TicketSystemError> {
        self.0.add_comment(key, text).await
    }

    async fn close_ticket(&self, key: &str) -> Result<CloseOutcome, TicketSystemError> {
        self.0.close_ticket(key).await
    }

    async fn verify(&self) -> Result<Verification, TicketSystemError> {
        let account = self.0.myself().await?;
        let url = self.0.http.url(&["rest", "api", "2", "project"]);
        let projects: Vec<Project> = self
            .0
            .http
            .get_json(url)
            .await?
            .ok_or_else(|| missing("/rest/api/2/project"))?;
        Ok(Verification {
            account,
            projects: Some(
                projects
                    .into_iter()
                    .take(SAMPLE_PROJECTS)
                    .map(|p| ProjectSummary {
                        key: p.key,
                        name: p.name,
                    })
                    .collect(),
            ),
        })
    }

    async fn get_ticket(&self, key: &str) -> Result<Option<Ticket>, TicketSystemError> {
        self.0.get_ticket(key).await
    }

    async fn find_person(&self, email: &str) -> Result<PersonLookup, TicketSystemError> {
        let url = self.0.http.url_with(
            &["rest", "api", "2", "user", "search"],
            &[("username", email)],
        );
        let users: Vec<User> = self.0.http.get_json(url).await?.unwrap_or_default();
        Ok(self.0.pick(users, email))
    }

    async fn open_tickets_for(
        &self,
        person: &Person,
    ) -> Result<Vec<TicketSummary>, TicketSystemError> {
        let jql = self.0.open_jql(person);
        let max = PAGE_SIZE.to_string();
        let mut start = 0usize;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let start_text = start.to_string();
            let url = self.0.http.url_with(
                &["rest", "api", "2", "search"],
                &[
                    ("jql", jql.as_str()),
                    ("fields", "summary,status"),
                    ("startAt", start_text.as_str()),
                    ("maxResults", max.as_str()),
                ],
            );
            let page: OffsetPage = self
                .0
                .http
                .get_json(url)
                .await?
                .ok_or_else(|| missing("/rest/api/2/search"))?;
            let got = page.issues.len();
            self.0.keep_open(page.issues, &mut out);
            start = page.start_at + got;
            if got == 0 || page.total.is_none_or(|total| start >= total) {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: serde_json::Value) -> Status {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn reads_and_deliveries_agree_that_category_id_three_is_closed() {
        // A status whose category carries only its id (as some Data Center answers and deliveries do).
        let fields = serde_json::json!({"name": "Erledigt", "statusCategory": {"id": 3}});
        let read = status(fields.clone());
        let delivery = serde_json::json!({
            "webhookEvent": "jira:issue_updated",
            "issue": {"key": "SEC-1", "fields": {"status": fields}}
        });

        let read_closed = read
            .status_category
            .as_ref()
            .is_some_and(StatusCategory::is_done);
        let delivered = events::interpret_jira(&delivery, &[]).unwrap().closing;

        assert!(read_closed);
        assert_eq!(delivered, Some(events::Closing::Closed));
    }

    #[test]
    fn only_the_done_category_closes_never_its_name() {
        assert!(category_is_done(Some("done"), None));
        assert!(category_is_done(None, Some(&serde_json::json!("3"))));
        assert!(!category_is_done(
            Some("indeterminate"),
            Some(&serde_json::json!(4))
        ));
        // "Fertig" is the German name of the done category; the name alone decides nothing.
        assert!(!category_is_done(Some("Fertig"), None));
        // The key decides when present.
        assert!(!category_is_done(
            Some("indeterminate"),
            Some(&serde_json::json!(3))
        ));
    }
}
