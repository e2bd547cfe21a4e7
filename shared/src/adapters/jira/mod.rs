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
//!
//! Cloud calls go to the site or to Atlassian's API gateway, by the kind of API token ([`rest`]); browse links
//! always point at the site. A person named by a token's claim is taken as given (Cloud: the account id) or
//! looked up exactly (Data Center: `/rest/api/2/user?username=`). A 403 on a write is a permission the
//! connection's account lacks for that write, named in the error, never a reason to re-authorize.

use async_trait::async_trait;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

pub mod events;
mod rest;
mod settings;

pub(crate) use rest::{Plan, Rest};
pub use settings::{
    JIRA_CLOUD, JIRA_DATA_CENTER, JiraCloud, JiraCloudSettings, JiraDataCenter, TokenType,
    WEBHOOK_SOURCE, is_cloud_id,
};

use super::ticket_http::{Probed, Written};
use crate::domain::connection::{
    ClosedStatuses, Person, PersonLookup, ProjectSummary, Ticket, TicketPage, TicketQuery,
    TicketState, TicketSummary, Verification, visible_email,
};
use crate::domain::identity::ClaimedIdentity;
use crate::domain::ticket_writes::{
    CloseOutcome, CreatedTicket, NewTicket, TicketDestination, adf, one_line,
};
use crate::ports::{ReconcileBatch, TicketStates, TicketSystem, TicketSystemError};

/// Tickets fetched per page of "my open tickets" (`GET /v1/tickets` pages on with its `next` cursor), and pages
/// read at most by one reconciliation search.
const PAGE_SIZE: usize = 50;
const MAX_PAGES: usize = 10;
/// The longest page token accepted back from a cursor (Cloud's `nextPageToken` is an opaque string).
const MAX_PAGE_TOKEN: usize = 2048;
/// The highest Data Center `startAt` a cursor may carry.
const MAX_START_AT: usize = 1_000_000;
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

/// What both flavours share: where REST calls go, the closed statuses and the REST version.
#[derive(Clone)]
struct Jira {
    rest: Rest,
    closed: ClosedStatuses,
    cloud: bool,
}

impl Jira {
    fn api(&self) -> &'static str {
        if self.cloud { "3" } else { "2" }
    }

    /// Where a person opens an issue: always the site, whichever way the API is called.
    fn browse(&self, key: &str) -> String {
        self.rest.site().site_url(&["browse", key])
    }

    fn search_path(&self) -> &'static [&'static str] {
        if self.cloud {
            &["rest", "api", "3", "search", "jql"]
        } else {
            &["rest", "api", "2", "search"]
        }
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
            url: self.browse(&issue.key),
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
        let user: User = self
            .rest
            .get_json(&["rest", "api", self.api(), "myself"], &[])
            .await?
            .ok_or_else(|| {
                TicketSystemError::Unexpected("/myself answered 404; is the base URL right?".into())
            })?;
        user.person(self.cloud).ok_or_else(|| {
            TicketSystemError::Unexpected(
                "/myself did not say who the credentials belong to".into(),
            )
        })
    }

    async fn get_ticket(&self, key: &str) -> Result<Option<Ticket>, TicketSystemError> {
        let issue: Option<Issue> = self
            .rest
            .get_json(
                &["rest", "api", self.api(), "issue", key],
                &[("fields", "summary,status,assignee")],
            )
            .await?;
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

    /// The JQL of the caller's open tickets, narrowed to `text`: an issue key (`SEC-42`) by `key =`, anything
    /// else by a text search of the summary ([`summary_search`]).
    fn open_jql(&self, person: &Person, text: Option<&str>) -> String {
        let narrow = match text {
            None => String::new(),
            Some(text) => match issue_key(text) {
                Some(key) => format!(" AND key = {}", jql_string(&key)),
                None => format!(" AND summary ~ {}", jql_string(&summary_search(text))),
            },
        };
        format!(
            "assignee = {} AND statusCategory != Done{narrow} ORDER BY updated DESC",
            jql_string(&person.id)
        )
    }

    /// One page of the caller's open tickets (`GET /v1/tickets`): Cloud pages by `nextPageToken`, Data Center
    /// by `startAt`; the token of the next page is the ticket system's own, carried in the API's cursor.
    async fn open_page(
        &self,
        person: &Person,
        query: &TicketQuery,
    ) -> Result<TicketPage, TicketSystemError> {
        let text = query.text.as_deref();
        let jql = self.open_jql(person, text);
        let max = PAGE_SIZE.to_string();
        let mut params = vec![
            ("jql", jql.as_str()),
            ("fields", "summary,status"),
            ("maxResults", max.as_str()),
        ];
        let start = match (&query.page, self.cloud) {
            (Some(token), true) => {
                if token.is_empty()
                    || token.len() > MAX_PAGE_TOKEN
                    || !token.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(TicketSystemError::InvalidPageToken(
                        "not a Jira page token".into(),
                    ));
                }
                params.push(("nextPageToken", token.as_str()));
                0
            }
            (Some(token), false) => match token.parse::<usize>() {
                Ok(n) if n > 0 && n <= MAX_START_AT => n,
                _ => {
                    return Err(TicketSystemError::InvalidPageToken(
                        "not a Jira Data Center start index".into(),
                    ));
                }
            },
            (None, _) => 0,
        };
        let start_text = start.to_string();
        if !self.cloud {
            params.push(("startAt", start_text.as_str()));
        }
        let page: StatesPage = match self.rest.search_json(self.search_path(), &params).await? {
            Probed::Found(page) => page,
            // Jira refuses a search naming an issue key that does not exist (or is not visible): no match.
            Probed::Refused(_) if query.page.is_none() && text.and_then(issue_key).is_some() => {
                return Ok(TicketPage::default());
            }
            Probed::Refused(detail) if query.page.is_some() => {
                return Err(TicketSystemError::InvalidPageToken(detail));
            }
            Probed::Refused(detail) => {
                return Err(TicketSystemError::Unexpected(format!(
                    "Jira refused the search for open tickets: {detail}"
                )));
            }
            Probed::NotFound => return Err(missing(&format!("/{}", self.search_path().join("/")))),
            Probed::Busy(wait) => {
                return Err(TicketSystemError::RateLimited {
                    message: "Jira is rate limiting the search".into(),
                    retry_after: wait,
                });
            }
        };
        let got = page.issues.len();
        let next = if self.cloud {
            page.next_page_token
                .filter(|t| page.is_last != Some(true) && !t.is_empty())
        } else {
            let after = page.start_at.max(start) + got;
            (got > 0 && page.total.is_some_and(|total| after < total)).then(|| after.to_string())
        };
        let mut items = Vec::new();
        self.keep_open(page.issues, &mut items);
        Ok(TicketPage { items, next })
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
    let quoted: Vec<String> = keys.iter().map(|k| jql_string(k)).collect();
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
        let segments = self.search_path();
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
            out.calls += 1;
            let page: StatesPage = match self.rest.probe_json(segments, &query).await? {
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
        let TicketDestination {
            project: Some(project),
            issue_type: Some(issue_type),
            ..
        } = &t.destination
        else {
            return Err(TicketSystemError::Unexpected(
                "a Jira ticket needs a project and an issue type".into(),
            ));
        };
        let body = serde_json::json!({"fields": {
            "project": {"key": project},
            "issuetype": {"name": issue_type},
            "summary": one_line(&t.summary),
            "description": self.rich(&t.description),
            "labels": ["ticketbound", t.marker],
        }});
        let written = self
            .rest
            .send_json(
                reqwest::Method::POST,
                &["rest", "api", self.api(), "issue"],
                Some(&body),
            )
            .await
            .map_err(|e| match e {
                TicketSystemError::NotPermitted(m) => TicketSystemError::NotPermitted(format!(
                    "Jira: the connection's account may not create issues in project {project}; grant it the Browse Projects and Create Issues permissions there{}: {m}",
                    self.scope_hint("write:jira-work")
                )),
                e => e,
            })?;
        match written {
            Written::Done(bytes) => {
                let created: CreatedIssue = Written::shaped(&bytes, "creating an issue")?;
                Ok(CreatedTicket {
                    url: self.browse(&created.key),
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
        let jql = format!("labels = {} ORDER BY created ASC", jql_string(marker));
        let segments = self.search_path();
        let page: OffsetPage = self
            .rest
            .get_json(
                segments,
                &[
                    ("jql", jql.as_str()),
                    ("fields", "summary"),
                    ("maxResults", "1"),
                ],
            )
            .await?
            .ok_or_else(|| missing(&format!("/{}", segments.join("/"))))?;
        Ok(page.issues.into_iter().next().map(|i| CreatedTicket {
            url: self.browse(&i.key),
            key: i.key,
        }))
    }

    async fn add_comment(&self, key: &str, text: &str) -> Result<bool, TicketSystemError> {
        let body = serde_json::json!({"body": self.rich(text)});
        let written = self
            .rest
            .send_json(
                reqwest::Method::POST,
                &["rest", "api", self.api(), "issue", key, "comment"],
                Some(&body),
            )
            .await
            .map_err(|e| match e {
                TicketSystemError::NotPermitted(m) => TicketSystemError::NotPermitted(format!(
                    "Jira: the connection's account may not comment on {key}; grant it the Add Comments permission in project {}{}: {m}",
                    project_of(key),
                    self.scope_hint("write:jira-work")
                )),
                e => e,
            })?;
        match written {
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
        let transitions: &[&str] = &["rest", "api", self.api(), "issue", key, "transitions"];
        let Some(available): Option<Transitions> = self.rest.get_json(transitions, &[]).await?
        else {
            return Ok(CloseOutcome::NotFound);
        };
        let done = available.transitions.into_iter().find(|t| {
            t.to.as_ref()
                .and_then(|s| s.status_category.as_ref())
                .is_some_and(StatusCategory::is_done)
        });
        let Some(done) = done else {
            // Jira lists only the transitions the account may make: none into done is a permission (or
            // workflow) matter of this issue, not of the credentials.
            return Err(TicketSystemError::NotPermitted(format!(
                "Jira: {key} (status {}) has no transition into a done status that the connection's account may make; grant it the Transition Issues permission in project {}, or add such a transition to the workflow",
                ticket.status,
                project_of(key)
            )));
        };
        let body = serde_json::json!({"transition": {"id": done.id}});
        let written = self
            .rest
            .send_json(reqwest::Method::POST, transitions, Some(&body))
            .await
            .map_err(|e| match e {
                TicketSystemError::NotPermitted(m) => TicketSystemError::NotPermitted(format!(
                    "Jira: the connection's account may not close {key}; it lacks the Transition Issues permission in project {} (or the workflow's conditions refuse it){}: {m}",
                    project_of(key),
                    self.scope_hint("write:jira-work")
                )),
                e => e,
            })?;
        match written {
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

impl Jira {
    /// For a permission error on Cloud: the classic scope a scoped API token needs besides the permission.
    fn scope_hint(&self, scope: &str) -> String {
        if self.cloud {
            format!(" (and, for an API token with scopes, the scope {scope})")
        } else {
            String::new()
        }
    }
}

/// An issue key as Jira answers it: project keys are upper case (`sec-42` is `SEC-42`; Jira finds the issue by
/// either spelling and answers with this one).
pub(crate) fn canonical_issue_key(key: &str) -> String {
    key.trim().to_ascii_uppercase()
}

/// The project key of an issue key (`SEC` of `SEC-42`).
fn project_of(key: &str) -> &str {
    key.rsplit_once('-').map_or(key, |(project, _)| project)
}

/// A JQL string literal: `value` in double quotes, with `\` and `"` escaped and line breaks (which a JQL string
/// cannot hold) turned into spaces. Inside quotes, JQL's reserved words and characters are plain text.
pub(crate) fn jql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The characters Jira's text search (Lucene) gives a meaning; each is escaped with a backslash to be searched
/// for as itself (Atlassian: "escape them with `\\\\`" in JQL, one backslash for JQL and one for the search).
const TEXT_SEARCH_SPECIAL: &[char] = &[
    '+', '-', '&', '|', '!', '(', ')', '{', '}', '[', ']', '^', '"', '~', '*', '?', ':', '\\', '/',
];

/// The text-search term (before [`jql_string`]) that finds `text` as typed: lower-cased, so `AND`, `OR` and
/// `NOT` are words rather than operators (the search ignores case anyway), and every special character escaped.
pub(crate) fn summary_search(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.trim().to_lowercase().chars() {
        if TEXT_SEARCH_SPECIAL.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `text` as an issue key (`sec-42` → `SEC-42`) when it is one.
pub(crate) fn issue_key(text: &str) -> Option<String> {
    let text = text.trim();
    let (project, number) = text.rsplit_once('-')?;
    let valid = project.len() <= 20
        && project.starts_with(|c: char| c.is_ascii_alphabetic())
        && project
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !number.is_empty()
        && number.len() <= 12
        && number.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| text.to_ascii_uppercase())
}

/// Jira Cloud over REST v3, on the site or through Atlassian's API gateway ([`Rest`]).
#[derive(Clone)]
pub struct JiraCloudClient(Jira);

impl JiraCloudClient {
    pub(crate) fn new(rest: Rest, closed: ClosedStatuses) -> Self {
        Self(Jira {
            rest,
            closed,
            cloud: true,
        })
    }
}

#[derive(Deserialize)]
struct ProjectPage {
    #[serde(default)]
    values: Vec<Project>,
}

fn sample(projects: Vec<Project>) -> Option<Vec<ProjectSummary>> {
    Some(
        projects
            .into_iter()
            .take(SAMPLE_PROJECTS)
            .map(|p| ProjectSummary {
                key: p.key,
                name: p.name,
            })
            .collect(),
    )
}

/// Every page of "my open tickets", for [`TicketSystem::open_tickets_for`] (at most [`MAX_PAGES`]).
async fn all_open(jira: &Jira, person: &Person) -> Result<Vec<TicketSummary>, TicketSystemError> {
    let mut out = Vec::new();
    let mut query = TicketQuery::default();
    for _ in 0..MAX_PAGES {
        let page = jira.open_page(person, &query).await?;
        out.extend(page.items);
        match page.next {
            Some(next) => query.page = Some(next),
            None => break,
        }
    }
    Ok(out)
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

    /// `/myself` and a sample of projects, and where they worked: the site (a classic API token) or the API
    /// gateway (a token with scopes), with the site's cloud id.
    async fn verify(&self) -> Result<Verification, TicketSystemError> {
        let account = self.0.myself().await?;
        let max = SAMPLE_PROJECTS.to_string();
        let page: ProjectPage = self
            .0
            .rest
            .get_json(
                &["rest", "api", "3", "project", "search"],
                &[("maxResults", max.as_str())],
            )
            .await?
            .ok_or_else(|| missing("/rest/api/3/project/search"))?;
        let (api, cloud_id) = self.0.rest.route();
        Ok(Verification {
            account,
            projects: sample(page.values),
            api: Some(api),
            learned: settings::JiraCloudSettings::learned(api, cloud_id),
        })
    }

    async fn get_ticket(&self, key: &str) -> Result<Option<Ticket>, TicketSystemError> {
        self.0.get_ticket(key).await
    }

    async fn find_person(&self, email: &str) -> Result<PersonLookup, TicketSystemError> {
        let users: Vec<User> = self
            .0
            .rest
            .get_json(&["rest", "api", "3", "user", "search"], &[("query", email)])
            .await?
            .unwrap_or_default();
        Ok(self.0.pick(users, email))
    }

    /// An Atlassian account id from the caller's token is exact: taken as the person, with no search.
    async fn find_claimed_person(
        &self,
        claimed: &ClaimedIdentity,
    ) -> Result<Option<PersonLookup>, TicketSystemError> {
        Ok(claimed.atlassian_account_id.as_ref().map(|id| {
            PersonLookup::Found(Person {
                id: id.clone(),
                email: None,
                display_name: None,
            })
        }))
    }

    async fn open_tickets_for(
        &self,
        person: &Person,
    ) -> Result<Vec<TicketSummary>, TicketSystemError> {
        all_open(&self.0, person).await
    }

    async fn open_tickets_page(
        &self,
        person: &Person,
        query: &TicketQuery,
    ) -> Result<TicketPage, TicketSystemError> {
        self.0.open_page(person, query).await
    }
}

/// Jira Data Center (and Server) over REST v2, on the site.
#[derive(Clone)]
pub struct JiraDataCenterClient(Jira);

impl JiraDataCenterClient {
    pub(crate) fn new(rest: Rest, closed: ClosedStatuses) -> Self {
        Self(Jira {
            rest,
            closed,
            cloud: false,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OffsetPage {
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
        let projects: Vec<Project> = self
            .0
            .rest
            .get_json(&["rest", "api", "2", "project"], &[])
            .await?
            .ok_or_else(|| missing("/rest/api/2/project"))?;
        Ok(Verification::of(account, sample(projects)))
    }

    async fn get_ticket(&self, key: &str) -> Result<Option<Ticket>, TicketSystemError> {
        self.0.get_ticket(key).await
    }

    async fn find_person(&self, email: &str) -> Result<PersonLookup, TicketSystemError> {
        let users: Vec<User> = self
            .0
            .rest
            .get_json(
                &["rest", "api", "2", "user", "search"],
                &[("username", email)],
            )
            .await?
            .unwrap_or_default();
        Ok(self.0.pick(users, email))
    }

    /// A user name from the caller's token is looked up exactly (`/rest/api/2/user?username=`, never the
    /// prefix-matching search); the answer must name that very user.
    async fn find_claimed_person(
        &self,
        claimed: &ClaimedIdentity,
    ) -> Result<Option<PersonLookup>, TicketSystemError> {
        let Some(username) = &claimed.username else {
            return Ok(None);
        };
        let user: Option<User> = self
            .0
            .rest
            .get_json(&["rest", "api", "2", "user"], &[("username", username)])
            .await?;
        let Some(user) = user.filter(|u| u.active != Some(false)) else {
            return Ok(Some(PersonLookup::NotFound));
        };
        // Data Center user names compare without regard to case.
        let same = user
            .name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(username));
        Ok(Some(match user.person(false) {
            Some(person) if same => PersonLookup::Found(person),
            _ => PersonLookup::NotFound,
        }))
    }

    async fn open_tickets_for(
        &self,
        person: &Person,
    ) -> Result<Vec<TicketSummary>, TicketSystemError> {
        all_open(&self.0, person).await
    }

    async fn open_tickets_page(
        &self,
        person: &Person,
        query: &TicketQuery,
    ) -> Result<TicketPage, TicketSystemError> {
        self.0.open_page(person, query).await
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
    fn jql_strings_escape_quotes_and_backslashes_and_never_span_lines() {
        assert_eq!(jql_string("SEC-1"), r#""SEC-1""#);
        assert_eq!(jql_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(jql_string("a\nb"), r#""a b""#);
    }

    #[test]
    fn summary_searches_find_the_text_as_typed() {
        // Lower-cased, so OR/AND/NOT are words, not operators.
        assert_eq!(summary_search("Disk OR Network"), "disk or network");
        // Each text-search operator is escaped with one backslash, which the JQL string doubles.
        assert_eq!(summary_search("[db] *x?"), r"\[db\] \*x\?");
        assert_eq!(
            jql_string(&summary_search(r#"say "hi" \o/"#)),
            r#""say \\\"hi\\\" \\\\o\\/""#
        );
        assert_eq!(summary_search("Ünïcödé"), "ünïcödé");
    }

    #[test]
    fn issue_keys_are_recognised_and_upper_cased() {
        assert_eq!(issue_key(" sec-42 ").as_deref(), Some("SEC-42"));
        assert_eq!(issue_key("OPS_2-7").as_deref(), Some("OPS_2-7"));
        assert_eq!(issue_key("42"), None);
        assert_eq!(issue_key("SEC-"), None);
        assert_eq!(issue_key("disk full"), None);
        assert_eq!(issue_key("SEC-1 OR 1=1"), None);
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
