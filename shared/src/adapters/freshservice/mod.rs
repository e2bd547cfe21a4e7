//! The Freshservice client (protocol-facts §4): API v2, Basic auth with the API key as user name and `X` as
//! password.
//!
//! - verify: `GET /api/v2/agents/me` (the agent the API key belongs to);
//! - one ticket: `GET /api/v2/tickets/{id}`; the assignee is `responder_id` (an agent id);
//! - person by e-mail: `GET /api/v2/agents?email=`;
//! - open tickets: `GET /api/v2/tickets/filter?query="agent_id:N AND (status:2 OR status:3)"&page=N`, 30 a page;
//!   `GET /v1/tickets` walks them one page per call (its cursor carries the page number). The filter language
//!   has no field for a ticket's subject, so a search text is matched here against each page's subjects, and a
//!   text that is a ticket id reads that ticket directly.
//!
//! A 403 on a write names what the API key's agent lacks (an admin's key to skip the fields mandatory on closing
//! with `bypass_mandatory`, or the permission to create or edit tickets); it never needs re-authorization.
//!
//! A ticket is closed when its status is in the connection's closed set (default 4 Resolved, 5 Closed) or it is
//! deleted or marked spam (DESIGN §1 rule 9). Its key is its numeric id as text.

use async_trait::async_trait;
use serde::Deserialize;
use std::time::Duration;

pub mod events;
mod settings;

pub use settings::{Freshservice, WEBHOOK_SOURCE};

use super::ticket_http::{Probed, TicketHttp, Written};
use crate::domain::connection::{
    ClosedStatuses, Person, PersonLookup, Ticket, TicketPage, TicketQuery, TicketState,
    TicketSummary, Verification, visible_email,
};
use crate::domain::ticket_writes::{
    CloseOutcome, CreatedTicket, NewTicket, TicketDestination, html, one_line,
};
use crate::ports::{ReconcileBatch, TicketStates, TicketSystem, TicketSystemError};

/// The filter API's page size, and pages read at most by [`TicketSystem::open_tickets_for`].
const PAGE_SIZE: usize = 30;
const MAX_PAGES: usize = 10;
/// The highest filter page a cursor may ask for (Freshservice advises against pages past 500).
const MAX_PAGE: u32 = 500;
/// Reconciliation reads tickets one by one (the filter API cannot name a list of ids), at most this many per
/// run: under half of the smallest plan's 50 "view ticket" calls a minute (protocol-facts §4), so webhook
/// confirmations and people's ticket searches keep the rest.
const READS_PER_RUN: usize = 20;
/// How long to leave Freshservice alone after a 429 without `Retry-After`.
const DEFAULT_PAUSE: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct Agent {
    id: u64,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    active: Option<bool>,
}

impl Agent {
    fn person(self) -> Person {
        let name = [self.first_name, self.last_name]
            .into_iter()
            .flatten()
            .filter(|n| !n.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Person {
            id: self.id.to_string(),
            email: visible_email(self.email),
            display_name: (!name.is_empty()).then_some(name),
        }
    }
}

#[derive(Deserialize)]
struct AgentBody {
    agent: Agent,
}

#[derive(Deserialize)]
struct AgentList {
    #[serde(default)]
    agents: Vec<Agent>,
}

#[derive(Deserialize)]
struct FsTicket {
    id: u64,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    status: Option<u64>,
    #[serde(default)]
    responder_id: Option<u64>,
    #[serde(default)]
    deleted: Option<bool>,
    #[serde(default)]
    spam: Option<bool>,
}

#[derive(Deserialize)]
struct TicketBody {
    ticket: FsTicket,
}

#[derive(Deserialize)]
struct TicketList {
    #[serde(default)]
    tickets: Vec<FsTicket>,
    #[serde(default)]
    total: Option<usize>,
}

/// The built-in status names; custom statuses show as their number.
fn status_name(status: Option<u64>) -> String {
    match status {
        Some(2) => "Open".into(),
        Some(3) => "Pending".into(),
        Some(4) => "Resolved".into(),
        Some(5) => "Closed".into(),
        Some(n) => format!("Status {n}"),
        None => "Unknown".into(),
    }
}

/// Freshservice over API v2.
#[derive(Clone)]
pub struct FreshserviceClient {
    http: TicketHttp,
    closed: ClosedStatuses,
}

impl FreshserviceClient {
    pub(crate) fn new(http: TicketHttp, closed: ClosedStatuses) -> Self {
        Self { http, closed }
    }

    fn ticket(&self, t: FsTicket) -> Ticket {
        let deleted = t.deleted == Some(true) || t.spam == Some(true);
        let key = t.id.to_string();
        Ticket {
            id: None,
            url: self.http.site_url(&["a", "tickets", &key]),
            summary: t.subject.unwrap_or_default(),
            status: status_name(t.status),
            closed: deleted || t.status.is_some_and(|s| self.closed.has_number(s)),
            deleted,
            assignee: t.responder_id.map(|id| Person {
                id: id.to_string(),
                email: None,
                display_name: None,
            }),
            key,
        }
    }
}

/// Status 2 (Open) for new tickets, 5 (Closed) to close.
const STATUS_OPEN: u64 = 2;
const STATUS_CLOSED: u64 = 5;

/// The longest Freshservice ticket id: ids are positive 64-bit signed integers, whose maximum
/// (9223372036854775807) has 19 digits.
pub const MAX_TICKET_ID_DIGITS: usize = 19;

/// A ticket id as Freshservice answers it: the number without leading zeros (`053263` is ticket `53263`, as
/// every read of it answers). Anything that is not a number is left as given; no read accepts it.
pub(crate) fn canonical_ticket_id(key: &str) -> String {
    let key = key.trim();
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
        return key.to_owned();
    }
    match key.trim_start_matches('0') {
        "" => "0".to_owned(),
        significant => significant.to_owned(),
    }
}

/// Whether `key` can be a Freshservice ticket id (anything else cannot name a ticket, or a URL segment). The one
/// rule, used by reads, writes and deliveries.
pub(crate) fn is_ticket_id(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_TICKET_ID_DIGITS && key.bytes().all(|b| b.is_ascii_digit())
}

/// Writes (DESIGN §7–8, protocol-facts §4): create (`POST /api/v2/tickets`, tagged with the marker), find by
/// tag (`/api/v2/tickets/filter`), a private note (`POST /api/v2/tickets/{id}/notes`) and close
/// (`PUT /api/v2/tickets/{id}` with status 5, again with `?bypass_mandatory=true` when fields are mandatory on
/// closing).
impl FreshserviceClient {
    fn ticket_ref(&self, id: u64) -> CreatedTicket {
        let key = id.to_string();
        CreatedTicket {
            url: self.http.site_url(&["a", "tickets", &key]),
            key,
        }
    }

    async fn create(&self, t: &NewTicket) -> Result<CreatedTicket, TicketSystemError> {
        let TicketDestination {
            group_id,
            priority: Some(priority),
            ..
        } = &t.destination
        else {
            return Err(TicketSystemError::Unexpected(
                "a Freshservice ticket needs a priority".into(),
            ));
        };
        let mut body = serde_json::json!({
            "subject": one_line(&t.summary),
            "description": html(&t.description),
            "email": t.requester_email,
            "status": STATUS_OPEN,
            "priority": priority,
            "tags": ["ticketbound", t.marker],
        });
        if let Some(group) = group_id {
            body["group_id"] = (*group).into();
        }
        let url = self.http.url(&["api", "v2", "tickets"]);
        let written = self
            .http
            .send_json(reqwest::Method::POST, url, Some(&body))
            .await
            .map_err(|e| match e {
                TicketSystemError::NotPermitted(m) => TicketSystemError::NotPermitted(format!(
                    "Freshservice: the API key's agent may not create tickets{}; give its role the permission to create tickets (and membership of that group): {m}",
                    group_id.map(|g| format!(" in group {g}")).unwrap_or_default()
                )),
                e => e,
            })?;
        match written {
            Written::Done(bytes) => {
                let created: TicketBody = serde_json::from_slice(&bytes).map_err(|e| {
                    TicketSystemError::Unexpected(format!(
                        "creating a ticket answered JSON of an unexpected shape: {e}"
                    ))
                })?;
                Ok(self.ticket_ref(created.ticket.id))
            }
            Written::NotFound => Err(TicketSystemError::Unexpected(
                "/api/v2/tickets answered 404; is the domain right?".into(),
            )),
            Written::Rejected(m) => Err(TicketSystemError::Unexpected(format!(
                "Freshservice refused to create the ticket: {m}"
            ))),
        }
    }

    async fn find(&self, marker: &str) -> Result<Option<CreatedTicket>, TicketSystemError> {
        // Markers are `[a-z0-9-]`, so they need no escaping inside the single quotes.
        if !marker
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Ok(None);
        }
        let query = format!("\"tag:'{marker}'\"");
        let url = self.http.url_with(
            &["api", "v2", "tickets", "filter"],
            &[("query", query.as_str())],
        );
        let list: Option<TicketList> = self.http.get_json(url).await?;
        Ok(list
            .and_then(|l| l.tickets.into_iter().map(|t| t.id).min())
            .map(|id| self.ticket_ref(id)))
    }

    async fn note(&self, key: &str, text: &str) -> Result<bool, TicketSystemError> {
        if !is_ticket_id(key) {
            return Ok(false);
        }
        let url = self.http.url(&["api", "v2", "tickets", key, "notes"]);
        let body = serde_json::json!({"body": html(text), "private": true});
        let written = self
            .http
            .send_json(reqwest::Method::POST, url, Some(&body))
            .await
            .map_err(|e| match e {
                TicketSystemError::NotPermitted(m) => TicketSystemError::NotPermitted(format!(
                    "Freshservice: the API key's agent may not add notes to ticket {key}; give its role the permission to reply and add notes to tickets of that group: {m}"
                )),
                e => e,
            })?;
        match written {
            Written::Done(_) => Ok(true),
            Written::NotFound => Ok(false),
            Written::Rejected(m) => Err(TicketSystemError::Unexpected(format!(
                "Freshservice refused the note on ticket {key}: {m}"
            ))),
        }
    }

    async fn close(&self, key: &str) -> Result<CloseOutcome, TicketSystemError> {
        if !is_ticket_id(key) {
            return Ok(CloseOutcome::NotFound);
        }
        let body = serde_json::json!({"status": STATUS_CLOSED});
        let url = self.http.url(&["api", "v2", "tickets", key]);
        let first = self
            .http
            .send_json(reqwest::Method::PUT, url, Some(&body))
            .await
            .map_err(|e| match e {
                TicketSystemError::NotPermitted(m) => TicketSystemError::NotPermitted(format!(
                    "Freshservice: the API key's agent may not close ticket {key}; give its role the permission to edit and close tickets of that ticket's group: {m}"
                )),
                e => e,
            })?;
        let mut rejected = match first {
            Written::Done(_) => return Ok(CloseOutcome::Closed),
            Written::NotFound => return Ok(CloseOutcome::NotFound),
            Written::Rejected(m) => m,
        };
        // Fields that are mandatory on closing (protocol-facts §4): an admin's key may bypass them.
        let bypass = self.http.url_with(
            &["api", "v2", "tickets", key],
            &[("bypass_mandatory", "true")],
        );
        let second = self
            .http
            .send_json(reqwest::Method::PUT, bypass, Some(&body))
            .await
            .map_err(|e| match e {
                TicketSystemError::NotPermitted(m) => TicketSystemError::NotPermitted(format!(
                    "Freshservice: closing ticket {key} needs fields that are mandatory on closing ({rejected}), and only an admin's API key may skip them with bypass_mandatory; make the connection's agent an admin, or make those fields optional on closing: {m}"
                )),
                e => e,
            })?;
        match second {
            Written::Done(_) => return Ok(CloseOutcome::Closed),
            Written::NotFound => return Ok(CloseOutcome::NotFound),
            Written::Rejected(m) => rejected = format!("{rejected}; with bypass_mandatory: {m}"),
        }
        Err(TicketSystemError::Unexpected(format!(
            "Freshservice refused to close ticket {key}: {rejected}"
        )))
    }
}

#[async_trait]
impl TicketSystem for FreshserviceClient {
    fn reconcile_batch(&self) -> ReconcileBatch {
        ReconcileBatch {
            keys_per_call: 1,
            calls_per_run: READS_PER_RUN,
        }
    }

    /// Single reads; the first 429 stops them (the rest of the run leaves this connection alone, and the next
    /// run waits out `Retry-After`), because a rate limit is account-wide and webhook confirmations need it.
    async fn ticket_states(&self, keys: &[String]) -> Result<TicketStates, TicketSystemError> {
        let mut out = TicketStates::default();
        for key in keys {
            if !is_ticket_id(key) {
                out.states.push((key.clone(), TicketState::Deleted));
                continue;
            }
            out.calls += 1;
            let url = self.http.url(&["api", "v2", "tickets", key]);
            let ticket = match self.http.probe_json::<TicketBody>(url).await? {
                Probed::Found(body) => Some(self.ticket(body.ticket)),
                Probed::NotFound => None,
                Probed::Busy(wait) => {
                    out.rate_limited = Some(wait.unwrap_or(DEFAULT_PAUSE));
                    return Ok(out);
                }
                Probed::Refused(detail) => {
                    return Err(TicketSystemError::Unexpected(format!(
                        "/api/v2/tickets/{key} answered HTTP 400: {detail}"
                    )));
                }
            };
            out.states
                .push((key.clone(), TicketState::of(ticket.as_ref())));
        }
        Ok(out)
    }

    async fn create_ticket(&self, ticket: &NewTicket) -> Result<CreatedTicket, TicketSystemError> {
        self.create(ticket).await
    }

    async fn find_by_marker(
        &self,
        marker: &str,
    ) -> Result<Option<CreatedTicket>, TicketSystemError> {
        self.find(marker).await
    }

    async fn add_comment(&self, key: &str, text: &str) -> Result<bool, TicketSystemError> {
        self.note(key, text).await
    }

    async fn close_ticket(&self, key: &str) -> Result<CloseOutcome, TicketSystemError> {
        self.close(key).await
    }

    async fn verify(&self) -> Result<Verification, TicketSystemError> {
        let url = self.http.url(&["api", "v2", "agents", "me"]);
        let body: AgentBody = self.http.get_json(url).await?.ok_or_else(|| {
            TicketSystemError::Unexpected(
                "/api/v2/agents/me answered 404; is the domain right?".into(),
            )
        })?;
        Ok(Verification::of(body.agent.person(), None))
    }

    async fn get_ticket(&self, key: &str) -> Result<Option<Ticket>, TicketSystemError> {
        // A Freshservice key is the numeric id; anything else cannot name a ticket.
        if !is_ticket_id(key) {
            return Ok(None);
        }
        let url = self.http.url(&["api", "v2", "tickets", key]);
        let body: Option<TicketBody> = self.http.get_json(url).await?;
        Ok(body.map(|b| self.ticket(b.ticket)))
    }

    async fn find_person(&self, email: &str) -> Result<PersonLookup, TicketSystemError> {
        let url = self
            .http
            .url_with(&["api", "v2", "agents"], &[("email", email)]);
        let list: AgentList = self
            .http
            .get_json(url)
            .await?
            .unwrap_or(AgentList { agents: Vec::new() });
        let agents = list
            .agents
            .into_iter()
            .filter(|a| a.active != Some(false))
            .map(Agent::person)
            .collect();
        Ok(PersonLookup::among(agents, email))
    }

    async fn open_tickets_for(
        &self,
        person: &Person,
    ) -> Result<Vec<TicketSummary>, TicketSystemError> {
        let mut out = Vec::new();
        let mut query = TicketQuery::default();
        for _ in 0..MAX_PAGES {
            let page = self.open_page(person, &query).await?;
            out.extend(page.items);
            match page.next {
                Some(next) => query.page = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    async fn open_tickets_page(
        &self,
        person: &Person,
        query: &TicketQuery,
    ) -> Result<TicketPage, TicketSystemError> {
        self.open_page(person, query).await
    }
}

impl FreshserviceClient {
    /// One filter page of the agent's open tickets (page numbers from 1); a search text keeps the tickets whose
    /// id or subject contains it, and a text that is a ticket id is read directly instead.
    async fn open_page(
        &self,
        person: &Person,
        query: &TicketQuery,
    ) -> Result<TicketPage, TicketSystemError> {
        let page: u32 = match query.page.as_deref() {
            None => 1,
            Some(token) => match token.parse::<u32>() {
                Ok(n) if (2..=MAX_PAGE).contains(&n) => n,
                _ => {
                    return Err(TicketSystemError::InvalidPageToken(
                        "not a Freshservice page number".into(),
                    ));
                }
            },
        };
        let Ok(agent_id) = person.id.parse::<u64>() else {
            return Ok(TicketPage::default());
        };
        let text = query
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if let Some(id) = text.filter(|t| is_ticket_id(t)) {
            if page != 1 {
                return Err(TicketSystemError::InvalidPageToken(
                    "a search by ticket id has one page".into(),
                ));
            }
            let mine = self
                .get_ticket(id)
                .await?
                .filter(|t| !t.closed && t.assignee.as_ref().is_some_and(|a| a.id == person.id));
            return Ok(TicketPage {
                items: mine.iter().map(TicketSummary::from).collect(),
                next: None,
            });
        }
        // The query is wrapped in double quotes and URL-encoded, as the API requires; it holds only numbers.
        let filter = format!("\"agent_id:{agent_id} AND (status:2 OR status:3)\"");
        let page_text = page.to_string();
        let url = self.http.url_with(
            &["api", "v2", "tickets", "filter"],
            &[("query", filter.as_str()), ("page", page_text.as_str())],
        );
        let list: TicketList = self.http.get_json(url).await?.ok_or_else(|| {
            TicketSystemError::Unexpected("/api/v2/tickets/filter answered 404".into())
        })?;
        let got = list.tickets.len();
        let seen = (page as usize - 1) * PAGE_SIZE + got;
        let last = match list.total {
            Some(total) => seen >= total,
            None => got < PAGE_SIZE,
        };
        let needle = text.map(str::to_lowercase);
        let items = list
            .tickets
            .into_iter()
            .map(|t| self.ticket(t))
            .filter(|t| !t.closed)
            .filter(|t| {
                needle
                    .as_deref()
                    .is_none_or(|n| t.key.contains(n) || t.summary.to_lowercase().contains(n))
            })
            .map(|t| TicketSummary::from(&t))
            .collect();
        let next = (got > 0 && !last && page < MAX_PAGE).then(|| (page + 1).to_string());
        Ok(TicketPage { items, next })
    }
}
