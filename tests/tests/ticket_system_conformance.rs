//! One conformance suite every ticket-system plug-in passes against its fake (`wiremock` answering as the
//! vendor documents): verify (ok, refused credentials, unreachable), reading an open, a closed and a deleted
//! ticket, the batch states reconciliation reads, and the retries (429 with `Retry-After` in seconds or as an
//! HTTP-date, 5xx, and every other answer the shared retry table calls retryable, such as 408). Each plug-in
//! supplies a [`Fake`] that knows its vendor's paths and shapes; the checks are the same for all.
//!
//! Deliveries go through the real router and the generic webhook route: a forged one changes nothing, a signed
//! one ends the bound grant and removes its access, and a reopened ticket never restores access (nor does a
//! replayed closing end a grant bound after the reopening). Audit tickets are opened where the kind's destination
//! says and closed once (a kind that writes none refuses without a call). Search with paging and `q` is still
//! covered per vendor (`connections_api.rs`, `connections_clients.rs`, `linear.rs`, and the ServiceNow case here).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use time::OffsetDateTime;
use wiremock::matchers::{body_partial_json, body_string_contains, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use support::{cloud_issue, cloud_user, quick_policy};
use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::servicenow::events::servicenow_signature;
use ticketbound::adapters::ticket_systems::HttpTicketSystems;
use ticketbound::adapters::ticket_systems::linear::{LINEAR, linear_signature};
use ticketbound::domain::connection::{
    AuthMethod, ConnectionKind, ConnectionSecrets, ConnectionSettings, Credentials, TicketQuery,
    TicketState,
};
use ticketbound::domain::secret::Secret;
use ticketbound::domain::ticket_writes::{CloseOutcome, NewTicket, TicketDestination};
use ticketbound::domain::webhook_auth::hub_signature;
use ticketbound::domain::{EndReason, GrantStatus, TicketRef};
use ticketbound::ports::{Clock, GrantStore, SystemClock};
use ticketbound::ports::{TicketSystem, TicketSystemError, TicketSystems};
use ticketbound::service::{Settings, Ticketbound};
use ticketbound_tests::{
    ADMIN, call, define_webhook_resource, provisioner_actions, provisioner_ok,
    seed_bound_active_grants,
};

/// How a ticket is held by the fake.
#[derive(Clone, Copy)]
enum Held {
    Open,
    Closed,
    /// Gone: answered as the vendor answers a ticket that does not exist.
    Gone,
}

/// A plug-in's fake: its connection settings and credentials, and how its vendor answers.
#[async_trait]
trait Fake: Send + Sync {
    fn kind(&self) -> ConnectionKind;
    /// The path under the server that is the connection's base URL (Data Center has a context path).
    fn context(&self) -> &'static str {
        ""
    }
    fn credentials(&self) -> Credentials;
    /// Three ticket keys as users type them, in the vendor's key form.
    fn keys(&self) -> [&'static str; 3];
    /// Mounts what `verify` reads, answering `status` on the account endpoint.
    async fn mount_account(&self, server: &MockServer, status: u16);
    /// The path of one ticket's read.
    fn ticket_path(&self, key: &str) -> String;
    /// `POST /v1/connections` for a connection `conformance` to the fake at `root`.
    fn connection_body(&self, root: &str) -> Value;
    /// A delivery as the vendor's webhook sends it, proven with `secret`: the ticket `key` closed (or, when
    /// `closed` is false, reopened); `delivery` is the sender's delivery id where it has one.
    fn delivery(&self, key: &str, secret: &str, delivery: &str, closed: bool) -> Sent;
    /// The body of one ticket in `held` (not `Gone`).
    fn ticket_body(&self, key: &str, held: Held) -> Value;
    /// Mounts the batched read reconciliation makes, for a system that batches (the default reads one by one).
    async fn mount_batch(&self, server: &MockServer, tickets: &[(&str, Held)]) {
        let _ = (server, tickets);
    }
    /// How the vendor answers a ticket that does not exist.
    fn gone(&self) -> ResponseTemplate {
        ResponseTemplate::new(404)
    }
    /// Where an audit ticket goes, as the kind's `destination` checks it; `None` for a kind that writes none.
    fn destination(&self) -> Option<TicketDestination> {
        None
    }
    /// Mounts the vendor's answers to opening a ticket (which answers `key`) and to closing it, the close
    /// expected once; the read of `key` is mounted by the caller.
    async fn mount_writes(&self, server: &MockServer, key: &str) {
        let _ = (server, key);
    }

    fn settings(&self, root: &str) -> ConnectionSettings {
        let credentials = self.credentials();
        ConnectionSettings {
            id: "conformance".into(),
            kind: self.kind(),
            base_url: format!("{root}{}", self.context()),
            auth_method: credentials.method(),
            closed_statuses: ticketbound::adapters::ticket_systems::rules(self.kind())
                .default_closed_statuses(),
            webhook_secrets_active: 1,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            audit: None,
            people: Default::default(),
            fields: json!({"email": "bot@acme.com", "username": "svc"})
                .as_object()
                .cloned()
                .unwrap(),
        }
    }

    fn client(&self, server: &MockServer) -> Arc<dyn TicketSystem> {
        self.client_at(&server.uri())
    }

    fn client_at(&self, root: &str) -> Arc<dyn TicketSystem> {
        HttpTicketSystems::new(quick_policy())
            .unwrap()
            .connect(
                &self.settings(root),
                &ConnectionSecrets {
                    credentials: self.credentials(),
                    webhook_secrets: vec![Secret::new("0123456789abcdef")],
                },
            )
            .unwrap()
    }

    async fn mount_ticket(&self, server: &MockServer, key: &str, held: Held) {
        let answer = match held {
            Held::Gone => self.gone(),
            _ => ResponseTemplate::new(200).set_body_json(self.ticket_body(key, held)),
        };
        Mock::given(method("GET"))
            .and(path(self.ticket_path(key)))
            .respond_with(answer)
            .mount(server)
            .await;
    }
}

struct JiraCloudFake;

#[async_trait]
impl Fake for JiraCloudFake {
    fn connection_body(&self, root: &str) -> Value {
        json!({"id": "conformance", "kind": "jira_cloud", "base_url": root, "email": "bot@acme.com", "api_token": "cloud-token"})
    }
    fn delivery(&self, key: &str, secret: &str, delivery: &str, closed: bool) -> Sent {
        jira_delivery(key, secret, delivery, closed)
    }
    fn kind(&self) -> ConnectionKind {
        ConnectionKind::JiraCloud
    }
    fn credentials(&self) -> Credentials {
        Credentials::new(AuthMethod::ApiToken, Secret::new("cloud-token"))
    }
    fn keys(&self) -> [&'static str; 3] {
        ["SEC-1", "SEC-2", "SEC-3"]
    }
    fn destination(&self) -> Option<TicketDestination> {
        jira_destination("SEC")
    }
    async fn mount_writes(&self, server: &MockServer, key: &str) {
        mount_jira_writes(server, "/rest/api/3", key).await;
    }
    async fn mount_account(&self, server: &MockServer, status: u16) {
        let answer = match status {
            200 => ResponseTemplate::new(200).set_body_json(cloud_user("acc-bot", Some("bot@acme.com"))),
            _ => ResponseTemplate::new(status).set_body_json(json!({"errorMessages": ["Client must be authenticated to access this resource."], "errors": {}})),
        };
        Mock::given(path("/rest/api/3/myself"))
            .respond_with(answer)
            .mount(server)
            .await;
        Mock::given(path("/rest/api/3/project/search"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"values": [{"key": "SEC", "name": "Security"}], "isLast": true}),
            ))
            .mount(server)
            .await;
    }
    fn ticket_path(&self, key: &str) -> String {
        format!("/rest/api/3/issue/{key}")
    }
    fn ticket_body(&self, key: &str, held: Held) -> Value {
        match held {
            Held::Closed => cloud_issue(key, "Done", "done", None),
            _ => cloud_issue(key, "In Progress", "indeterminate", None),
        }
    }
    fn gone(&self) -> ResponseTemplate {
        ResponseTemplate::new(404).set_body_json(json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}))
    }
    /// `GET /rest/api/3/search/jql?jql=key in (...)`: the issues it finds (a deleted one is left out).
    async fn mount_batch(&self, server: &MockServer, tickets: &[(&str, Held)]) {
        let issues: Vec<Value> = tickets
            .iter()
            .map(|(k, h)| self.ticket_body(k, *h))
            .collect();
        Mock::given(path("/rest/api/3/search/jql"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"issues": issues, "isLast": true})),
            )
            .mount(server)
            .await;
    }
}

/// Jira's transitions of an open issue: one into the `done` category.
fn jira_transitions() -> Value {
    json!({"transitions": [
        {"id": "21", "name": "Start", "to": {"id": "3", "name": "In Progress", "statusCategory": {"key": "indeterminate"}}, "hasScreen": false, "isAvailable": true},
        {"id": "31", "name": "Finish", "to": {"id": "10001", "name": "Done", "statusCategory": {"key": "done"}}, "hasScreen": false, "isAvailable": true}
    ]})
}

/// Jira's create (`POST {api}/issue` answering `key`) and close (the transition into `done`, once).
async fn mount_jira_writes(server: &MockServer, api: &str, key: &str) {
    Mock::given(method("POST"))
        .and(path(format!("{api}/issue")))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"id": support::issue_id(key), "key": key, "self": format!("https://jira.example{api}/issue/1")}),
        ))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{api}/issue/{key}/transitions")))
        .respond_with(ResponseTemplate::new(200).set_body_json(jira_transitions()))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{api}/issue/{key}/transitions")))
        .and(body_partial_json(json!({"transition": {"id": "31"}})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(server)
        .await;
}

fn jira_destination(project: &str) -> Option<TicketDestination> {
    Some(TicketDestination {
        project: Some(project.into()),
        issue_type: Some("Task".into()),
        ..TicketDestination::default()
    })
}

struct JiraDataCenterFake;

#[async_trait]
impl Fake for JiraDataCenterFake {
    fn connection_body(&self, root: &str) -> Value {
        json!({"id": "conformance", "kind": "jira_data_center", "base_url": format!("{root}/jira"), "personal_access_token": "dc-pat"})
    }
    fn delivery(&self, key: &str, secret: &str, delivery: &str, closed: bool) -> Sent {
        jira_delivery(key, secret, delivery, closed)
    }
    fn kind(&self) -> ConnectionKind {
        ConnectionKind::JiraDataCenter
    }
    fn context(&self) -> &'static str {
        "/jira"
    }
    fn credentials(&self) -> Credentials {
        Credentials::new(AuthMethod::PersonalAccessToken, Secret::new("dc-pat"))
    }
    fn keys(&self) -> [&'static str; 3] {
        ["OPS-1", "OPS-2", "OPS-3"]
    }
    fn destination(&self) -> Option<TicketDestination> {
        jira_destination("OPS")
    }
    async fn mount_writes(&self, server: &MockServer, key: &str) {
        mount_jira_writes(server, "/jira/rest/api/2", key).await;
    }
    async fn mount_account(&self, server: &MockServer, status: u16) {
        let answer = match status {
            200 => ResponseTemplate::new(200).set_body_json(json!({"name": "svc", "key": "JIRAUSER1", "emailAddress": "svc@corp.example", "displayName": "Service"})),
            _ => ResponseTemplate::new(status).set_body_json(json!({"errorMessages": ["You are not authenticated."], "errors": {}})),
        };
        Mock::given(path("/jira/rest/api/2/myself"))
            .respond_with(answer)
            .mount(server)
            .await;
        Mock::given(path("/jira/rest/api/2/project"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!([{"key": "OPS", "name": "Operations"}])),
            )
            .mount(server)
            .await;
    }
    fn ticket_path(&self, key: &str) -> String {
        format!("/jira/rest/api/2/issue/{key}")
    }
    /// `GET /rest/api/2/search?jql=key in (...)&startAt=0`: the issues it finds, with the total.
    async fn mount_batch(&self, server: &MockServer, tickets: &[(&str, Held)]) {
        let issues: Vec<Value> = tickets
            .iter()
            .map(|(k, h)| self.ticket_body(k, *h))
            .collect();
        let total = issues.len();
        Mock::given(path("/jira/rest/api/2/search"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"issues": issues, "startAt": 0, "maxResults": 50, "total": total}),
            ))
            .mount(server)
            .await;
    }
    fn ticket_body(&self, key: &str, held: Held) -> Value {
        let (name, category) = match held {
            Held::Closed => ("Closed", "done"),
            _ => ("In Progress", "indeterminate"),
        };
        json!({
            "id": support::issue_id(key), "key": key, "self": "https://jira.corp/jira/rest/api/2/issue/1",
            "fields": {
                "summary": format!("DC {key}"),
                "assignee": null,
                "status": {"name": name, "statusCategory": {"id": 3, "key": category, "name": "Localised"}}
            }
        })
    }
}

struct FreshserviceFake;

#[async_trait]
impl Fake for FreshserviceFake {
    fn connection_body(&self, root: &str) -> Value {
        json!({"id": "conformance", "kind": "freshservice", "base_url": root, "api_key": "fs-key"})
    }
    /// The README's Workflow Automator body; Freshservice does not sign, so the secret is a header.
    fn delivery(&self, key: &str, secret: &str, _delivery: &str, closed: bool) -> Sent {
        let status = if closed { "Closed" } else { "Open" };
        let body = json!({"event": "ticket_updated", "ticket_id": key, "ticket_display_id": format!("#SR-{key}"), "status": status});
        (
            vec![("x-ticketbound-secret", secret.to_owned())],
            body.to_string().into_bytes(),
        )
    }
    fn kind(&self) -> ConnectionKind {
        ConnectionKind::Freshservice
    }
    fn credentials(&self) -> Credentials {
        Credentials::new(AuthMethod::ApiKey, Secret::new("fs-key"))
    }
    fn keys(&self) -> [&'static str; 3] {
        ["101", "102", "103"]
    }
    fn destination(&self) -> Option<TicketDestination> {
        Some(TicketDestination {
            priority: Some(2),
            ..TicketDestination::default()
        })
    }
    /// `POST /api/v2/tickets` answering the ticket, and closing as `PUT /api/v2/tickets/{id}` with status 5.
    async fn mount_writes(&self, server: &MockServer, key: &str) {
        let mut created: Value = serde_json::from_str(include_str!(
            "../fixtures/freshservice-api-ticket-create-response.doc.json"
        ))
        .unwrap();
        created["ticket"]["id"] = key.parse::<u64>().unwrap().into();
        Mock::given(method("POST"))
            .and(path("/api/v2/tickets"))
            .respond_with(ResponseTemplate::new(201).set_body_json(created))
            .mount(server)
            .await;
        Mock::given(method("PUT"))
            .and(path(format!("/api/v2/tickets/{key}")))
            .and(body_partial_json(json!({"status": 5})))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(self.ticket_body(key, Held::Closed)),
            )
            .expect(1)
            .mount(server)
            .await;
    }
    async fn mount_account(&self, server: &MockServer, status: u16) {
        let answer = match status {
            200 => ResponseTemplate::new(200).set_body_json(json!({"agent": {"id": 9, "email": "ethan@yourcompany.com", "first_name": "Ethan", "last_name": "Hunt", "active": true}})),
            _ => ResponseTemplate::new(status).set_body_json(json!({"code": "invalid_credentials", "message": "You have to be logged in to perform this action."})),
        };
        Mock::given(path("/api/v2/agents/me"))
            .respond_with(answer)
            .mount(server)
            .await;
    }
    fn ticket_path(&self, key: &str) -> String {
        format!("/api/v2/tickets/{key}")
    }
    fn ticket_body(&self, key: &str, held: Held) -> Value {
        let status = match held {
            Held::Closed => 5,
            _ => 2,
        };
        json!({"ticket": {
            "id": key.parse::<u64>().unwrap(), "subject": format!("Ticket {key}"), "status": status, "priority": 3,
            "requester_id": 1000000678, "responder_id": 9, "spam": false, "deleted": false,
            "type": "Incident", "workspace_id": 3
        }})
    }
    fn gone(&self) -> ResponseTemplate {
        ResponseTemplate::new(404)
            .set_body_json(json!({"code": "access_denied", "message": "not found"}))
    }
}

// ----- the checks --------------------------------------------------------------------------------------------

async fn verify_ok(fake: &dyn Fake) {
    let server = MockServer::start().await;
    fake.mount_account(&server, 200).await;
    let seen = fake.client(&server).verify().await.unwrap();
    assert!(!seen.account.id.is_empty(), "{:?}", fake.kind());
}

async fn verify_refused(fake: &dyn Fake) {
    let server = MockServer::start().await;
    fake.mount_account(&server, 401).await;
    let err = fake.client(&server).verify().await.unwrap_err();
    // The service records this as `needs_reauthorization`.
    assert!(
        matches!(err, TicketSystemError::Unauthorized { status: 401, .. }),
        "{:?}: {err:?}",
        fake.kind()
    );
}

async fn verify_unreachable(fake: &dyn Fake) {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = fake.client_at(&format!("http://127.0.0.1:{port}"));
    let err = client.verify().await.unwrap_err();
    assert!(
        matches!(err, TicketSystemError::Unavailable(_)),
        "{:?}: {err:?}",
        fake.kind()
    );
}

async fn reads_open_closed_and_deleted(fake: &dyn Fake) {
    let server = MockServer::start().await;
    let [open, closed, gone] = fake.keys();
    fake.mount_ticket(&server, open, Held::Open).await;
    fake.mount_ticket(&server, closed, Held::Closed).await;
    fake.mount_ticket(&server, gone, Held::Gone).await;
    let client = fake.client(&server);
    let read = client.get_ticket(open).await.unwrap().unwrap();
    assert!(!read.closed && !read.deleted, "{:?}", fake.kind());
    assert_eq!(read.key, open);
    let read = client.get_ticket(closed).await.unwrap().unwrap();
    assert!(read.closed, "{:?}", fake.kind());
    assert_eq!(
        client.get_ticket(gone).await.unwrap(),
        None,
        "{:?}",
        fake.kind()
    );
}

async fn batch_states_for_reconciliation(fake: &dyn Fake) {
    let server = MockServer::start().await;
    let [open, closed, gone] = fake.keys();
    fake.mount_ticket(&server, open, Held::Open).await;
    fake.mount_ticket(&server, closed, Held::Closed).await;
    fake.mount_ticket(&server, gone, Held::Gone).await;
    fake.mount_batch(&server, &[(open, Held::Open), (closed, Held::Closed)])
        .await;
    let client = fake.client(&server);
    let keys: Vec<String> = fake.keys().iter().map(|k| k.to_string()).collect();
    let batch = client.reconcile_batch();
    assert!(batch.keys_per_call >= 1 && batch.calls_per_run >= 1);
    let mut states = Vec::new();
    for chunk in keys.chunks(batch.keys_per_call) {
        let answer = client.ticket_states(chunk).await.unwrap();
        assert_eq!(answer.rate_limited, None);
        states.extend(answer.states);
    }
    assert_eq!(
        states,
        vec![
            (open.to_owned(), TicketState::Open),
            (closed.to_owned(), TicketState::Closed),
            (gone.to_owned(), TicketState::Deleted),
        ],
        "{:?}",
        fake.kind()
    );
}

async fn rate_limits_and_server_errors_are_retried(fake: &dyn Fake) {
    let [open, ..] = fake.keys();
    for (first, waits) in [
        (
            ResponseTemplate::new(429).insert_header("retry-after", "1"),
            true,
        ),
        (ResponseTemplate::new(503), false),
        (ResponseTemplate::new(500), false),
    ] {
        let server = MockServer::start().await;
        Mock::given(path(fake.ticket_path(open)))
            .respond_with(first)
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        fake.mount_ticket(&server, open, Held::Open).await;
        let started = Instant::now();
        let read = fake.client(&server).get_ticket(open).await.unwrap();
        assert!(read.is_some(), "{:?}", fake.kind());
        if waits {
            assert!(
                started.elapsed() >= Duration::from_secs(1),
                "{:?}: Retry-After was not honoured",
                fake.kind()
            );
        }
    }
}

/// Reads judge an answer by the one table every outbound call uses: 408 and 425 are worth another attempt (a
/// read used to give up on them at once, as an unexpected answer), and a `Retry-After` given as an HTTP-date is
/// waited out like one given in seconds.
async fn answers_are_judged_by_the_shared_table(fake: &dyn Fake) {
    let [open, ..] = fake.keys();
    for status in [408, 425] {
        let server = MockServer::start().await;
        Mock::given(path(fake.ticket_path(open)))
            .respond_with(ResponseTemplate::new(status))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        fake.mount_ticket(&server, open, Held::Open).await;
        let read = fake.client(&server).get_ticket(open).await;
        assert!(
            matches!(read, Ok(Some(_))),
            "{:?}: HTTP {status} is retryable: {read:?}",
            fake.kind()
        );
    }

    let server = MockServer::start().await;
    let in_two_seconds = httpdate(OffsetDateTime::now_utc() + time::Duration::seconds(2));
    Mock::given(path(fake.ticket_path(open)))
        .respond_with(
            ResponseTemplate::new(429).insert_header("retry-after", in_two_seconds.as_str()),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    fake.mount_ticket(&server, open, Held::Open).await;
    let started = Instant::now();
    let read = fake.client(&server).get_ticket(open).await.unwrap();
    assert!(read.is_some(), "{:?}", fake.kind());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}: a Retry-After HTTP-date was not honoured",
        fake.kind()
    );

    // A permanent answer of the table is not retried: one call, an unexpected answer.
    let server = MockServer::start().await;
    Mock::given(path(fake.ticket_path(open)))
        .respond_with(ResponseTemplate::new(418))
        .expect(1)
        .mount(&server)
        .await;
    let read = fake.client(&server).get_ticket(open).await;
    assert!(
        matches!(read, Err(TicketSystemError::Unexpected(_))),
        "{:?}: {read:?}",
        fake.kind()
    );
}

/// `at` as an HTTP-date (IMF-fixdate), the form a `Retry-After` date takes.
fn httpdate(at: OffsetDateTime) -> String {
    at.format(time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    ))
    .unwrap()
}

struct ServiceNowFake;

/// A stable `sys_id` per number.
fn sys_id(number: &str) -> String {
    format!("{:0>32}", support::issue_id(number))
}

#[async_trait]
impl Fake for ServiceNowFake {
    fn connection_body(&self, root: &str) -> Value {
        json!({"id": "conformance", "kind": "servicenow", "base_url": root, "username": "svc", "password": "snow-pass"})
    }
    /// The Business Rule of docs/connections.md: the record's table, sys_id, number, state and active, signed.
    fn delivery(&self, key: &str, secret: &str, _delivery: &str, closed: bool) -> Sent {
        let (state, active) = if closed {
            ("7", "false")
        } else {
            ("2", "true")
        };
        let body = json!({"table": "incident", "sys_id": sys_id(key), "number": key, "state": state, "active": active})
            .to_string()
            .into_bytes();
        (
            vec![(
                "x-ticketbound-signature",
                servicenow_signature(secret, &body),
            )],
            body,
        )
    }
    fn kind(&self) -> ConnectionKind {
        ConnectionKind::ServiceNow
    }
    fn credentials(&self) -> Credentials {
        Credentials::new(AuthMethod::Password, Secret::new("snow-pass"))
    }
    fn keys(&self) -> [&'static str; 3] {
        ["INC0010001", "RITM0010002", "CHG0030003"]
    }
    /// An incident (the default table) of urgency and impact 2.
    fn destination(&self) -> Option<TicketDestination> {
        Some(TicketDestination {
            issue_type: Some("incident".into()),
            priority: Some(2),
            ..TicketDestination::default()
        })
    }
    /// `POST /api/now/table/incident` answering 201 with the record (marker in `correlation_id`) after a 429 with
    /// `Retry-After`, and closing as `PATCH /api/now/table/incident/{sys_id}` to Resolved (state 6) with the close
    /// code and notes after a 503: ServiceNow certainly did not act on either, so both are sent again in the call.
    async fn mount_writes(&self, server: &MockServer, key: &str) {
        let mut created = self.ticket_body(key, Held::Open);
        created["state"] = json!("1");
        Mock::given(method("POST"))
            .and(path("/api/now/table/incident"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
            .up_to_n_times(1)
            .expect(1)
            .mount(server)
            .await;
        Mock::given(method("PATCH"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .expect(1)
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/now/table/incident"))
            .and(body_partial_json(json!({
                "correlation_id": "tb-01jd3-audit",
                "short_description": "Access request: alice@example.com to prod-db",
                "urgency": "2", "impact": "2",
            })))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"result": created})))
            .expect(1)
            .mount(server)
            .await;
        Mock::given(method("PATCH"))
            .and(path(format!("/api/now/table/incident/{}", sys_id(key))))
            .and(body_partial_json(
                json!({"state": "6", "close_code": "Solution provided"}),
            ))
            .and(body_string_contains("close_notes"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": {
                "sys_id": sys_id(key), "number": key, "state": "6", "active": "true", "sys_class_name": "incident"
            }})))
            .expect(1)
            .mount(server)
            .await;
    }
    async fn mount_account(&self, server: &MockServer, status: u16) {
        let answer = match status {
            200 => ResponseTemplate::new(200).set_body_json(json!({"result": [
                {"sys_id": "6816f79cc0a8016401c5a33be04be441", "user_name": "svc", "email": "svc@acme.com", "name": "Service"}
            ]})),
            _ => ResponseTemplate::new(status).set_body_json(json!({"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"})),
        };
        Mock::given(path("/api/now/table/sys_user"))
            .and(query_param("sysparm_query", "user_name=svc"))
            .respond_with(answer)
            .mount(server)
            .await;
    }
    fn ticket_path(&self, _key: &str) -> String {
        "/api/now/table/task".into()
    }
    fn ticket_body(&self, key: &str, held: Held) -> Value {
        let (state, active) = match held {
            Held::Closed => ("7", "false"),
            _ => ("2", "true"),
        };
        json!({
            "sys_id": sys_id(key), "number": key, "short_description": format!("Ticket {key}"),
            "state": state, "active": active, "sys_class_name": "incident", "assigned_to": ""
        })
    }
    /// The Table API answers a query that matches nothing with an empty `result`.
    async fn mount_ticket(&self, server: &MockServer, key: &str, held: Held) {
        let result = match held {
            Held::Gone => json!([]),
            _ => json!([self.ticket_body(key, held)]),
        };
        Mock::given(method("GET"))
            .and(path("/api/now/table/task"))
            .and(query_param(
                "sysparm_query",
                format!("number={key}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": result})))
            .mount(server)
            .await;
    }
    /// `numberIN<k1>,<k2>,…` on `task`: the rows it finds (a deleted number is left out).
    async fn mount_batch(&self, server: &MockServer, tickets: &[(&str, Held)]) {
        let rows: Vec<Value> = tickets
            .iter()
            .map(|(k, h)| self.ticket_body(k, *h))
            .collect();
        Mock::given(path("/api/now/table/task"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": rows})))
            .mount(server)
            .await;
    }
}

struct LinearFake;

/// A stable issue id (a UUID in Linear) per identifier.
fn linear_id(identifier: &str) -> String {
    format!(
        "00000000-0000-4000-8000-{:0>12}",
        support::issue_id(identifier)
    )
}

/// The `IssueFilter` the plug-in sends for one identifier.
fn linear_filter(identifier: &str) -> Value {
    let (team, number) = identifier.split_once('-').unwrap();
    json!({"team": {"key": {"eq": team}}, "number": {"eq": number.parse::<u64>().unwrap()}})
}

/// Milliseconds since the epoch, a second ahead: the event follows every grant bound before it.
fn linear_now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp() + 1) * 1000
}

#[async_trait]
impl Fake for LinearFake {
    fn connection_body(&self, root: &str) -> Value {
        json!({"id": "conformance", "kind": "linear", "base_url": root, "api_key": "lin_api_conformance"})
    }
    /// Linear's `Issue` update, signed in `Linear-Signature` (hex HMAC-SHA256 of the body) with its delivery id.
    fn delivery(&self, key: &str, secret: &str, delivery: &str, closed: bool) -> Sent {
        let (name, kind) = if closed {
            ("Done", "completed")
        } else {
            ("In Progress", "started")
        };
        let body = json!({
            "action": "update", "type": "Issue", "createdAt": "2026-05-01T12:00:00.000Z",
            "organizationId": "org-1", "webhookId": "wh-1", "webhookTimestamp": linear_now_ms(),
            "url": format!("https://linear.app/acme/issue/{key}"),
            "data": {
                "id": linear_id(key), "identifier": key, "title": format!("Ticket {key}"),
                "trashed": null, "archivedAt": null,
                "state": {"id": "s-1", "name": name, "type": kind}
            },
            "updatedFrom": {"stateId": "s-0"}
        })
        .to_string()
        .into_bytes();
        (
            vec![
                ("linear-signature", linear_signature(secret, &body)),
                ("linear-delivery", delivery.to_owned()),
                ("linear-event", "Issue".to_owned()),
            ],
            body,
        )
    }
    fn kind(&self) -> ConnectionKind {
        LINEAR
    }
    fn credentials(&self) -> Credentials {
        Credentials::new(AuthMethod::API_KEY, Secret::new("lin_api_conformance"))
    }
    fn keys(&self) -> [&'static str; 3] {
        ["ENG-1", "ENG-2", "OPS-3"]
    }
    fn destination(&self) -> Option<TicketDestination> {
        Some(TicketDestination {
            project: Some("ENG".into()),
            priority: Some(0),
            ..TicketDestination::default()
        })
    }
    /// `teams` by key, `issueCreate` answering the identifier, and closing as the team's `completed` state
    /// through `issueUpdate`, once.
    async fn mount_writes(&self, server: &MockServer, key: &str) {
        let data = |data: Value| ResponseTemplate::new(200).set_body_json(json!({"data": data}));
        Mock::given(method("POST"))
            .and(path("/graphql"))
            .and(body_string_contains("teams("))
            .respond_with(data(json!({"teams": {"nodes": [{"id": "team-eng"}]}})))
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path("/graphql"))
            .and(body_string_contains("issueCreate"))
            .respond_with(data(json!({"issueCreate": {"success": true, "issue": {"identifier": key, "url": format!("https://linear.app/acme/issue/{key}")}}})))
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path("/graphql"))
            .and(body_string_contains("workflowStates"))
            .and(body_partial_json(
                json!({"variables": {"team": "team-eng"}}),
            ))
            .respond_with(data(
                json!({"workflowStates": {"nodes": [{"id": "state-done"}]}}),
            ))
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path("/graphql"))
            .and(body_string_contains("issueUpdate"))
            .and(body_partial_json(
                json!({"variables": {"id": linear_id(key), "input": {"stateId": "state-done"}}}),
            ))
            .respond_with(data(json!({"issueUpdate": {"success": true}})))
            .expect(1)
            .mount(server)
            .await;
    }
    async fn mount_account(&self, server: &MockServer, status: u16) {
        let answer = match status {
            200 => ResponseTemplate::new(200).set_body_json(json!({"data": {"viewer": {"id": "u-bot", "name": "Ticketbound", "email": "bot@acme.com"}}})),
            _ => ResponseTemplate::new(status).set_body_json(json!({"errors": [{"message": "Authentication required, not authenticated", "extensions": {"type": "authentication error", "code": "AUTHENTICATION_ERROR", "statusCode": 401, "userPresentableMessage": "You need to authenticate to access this operation."}}]})),
        };
        Mock::given(method("POST"))
            .and(path("/graphql"))
            .and(body_string_contains("viewer"))
            .respond_with(answer)
            .mount(server)
            .await;
    }
    fn ticket_path(&self, _key: &str) -> String {
        "/graphql".into()
    }
    fn ticket_body(&self, key: &str, held: Held) -> Value {
        let (name, kind) = match held {
            Held::Closed => ("Done", "completed"),
            _ => ("In Progress", "started"),
        };
        json!({
            "id": linear_id(key), "identifier": key, "title": format!("Ticket {key}"),
            "url": format!("https://linear.app/acme/issue/{key}"), "trashed": null, "archivedAt": null,
            "state": {"name": name, "type": kind}, "assignee": null, "team": {"id": "team-eng"}
        })
    }
    /// One identifier's `issues` query: its node, or no node for an issue Linear does not have.
    async fn mount_ticket(&self, server: &MockServer, key: &str, held: Held) {
        let nodes = match held {
            Held::Gone => json!([]),
            _ => json!([self.ticket_body(key, held)]),
        };
        Mock::given(method("POST"))
            .and(path("/graphql"))
            .and(body_partial_json(
                json!({"variables": {"first": 1, "filter": {"or": [linear_filter(key)]}}}),
            ))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"data": {"issues": {"nodes": nodes}}})),
            )
            .mount(server)
            .await;
    }
    /// Every bound identifier in one `issues(filter: {or: […]})` query; a deleted one is not among the nodes.
    async fn mount_batch(&self, server: &MockServer, tickets: &[(&str, Held)]) {
        let nodes: Vec<Value> = tickets
            .iter()
            .map(|(k, h)| self.ticket_body(k, *h))
            .collect();
        let filter: Vec<Value> = self.keys().iter().map(|k| linear_filter(k)).collect();
        Mock::given(method("POST"))
            .and(path("/graphql"))
            .and(body_partial_json(
                json!({"variables": {"first": filter.len(), "filter": {"or": filter}}}),
            ))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"data": {"issues": {"nodes": nodes}}})),
            )
            .expect(1)
            .mount(server)
            .await;
    }
}

/// A delivery: its headers and body.
type Sent = (Vec<(&'static str, String)>, Vec<u8>);

/// A Jira admin webhook's `jira:issue_updated` for `key`, moved to Done (or back to In Progress), signed with
/// `X-Hub-Signature`.
fn jira_delivery(key: &str, secret: &str, delivery: &str, closed: bool) -> Sent {
    let (status, category, id) = if closed {
        ("Done", "done", 3)
    } else {
        ("In Progress", "indeterminate", 4)
    };
    // A second ahead: the event follows every grant bound before it.
    let timestamp = (OffsetDateTime::now_utc().unix_timestamp() + 1) * 1000;
    let body = json!({
        "timestamp": timestamp,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "issue": {
            "id": support::issue_id(key), "key": key,
            "fields": {"status": {"name": status, "id": "10001", "statusCategory": {"id": id, "key": category, "name": "Localised"}}}
        },
        "changelog": {"id": "1", "items": [
            {"field": "status", "fieldtype": "jira", "fieldId": "status", "from": "3", "fromString": "Before", "to": "10001", "toString": status}
        ]}
    })
    .to_string()
    .into_bytes();
    let headers = vec![
        ("x-hub-signature", hub_signature(secret, &body)),
        ("x-atlassian-webhook-identifier", delivery.to_owned()),
    ];
    (headers, body)
}

/// Through the real router and the generic webhook route: a forged delivery changes nothing; a signed one ends
/// the bound grant and removes its access; a reopened ticket never restores access, and neither the reopening
/// nor a replay of the closing ends a grant bound after the ticket was reopened.
async fn deliveries_end_access_once_and_only_when_authentic(fake: &dyn Fake) {
    let server = MockServer::start().await;
    let store = EmbeddedStore::in_memory().unwrap();
    let dir = support::temp_dir("conformance");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = Ticketbound::build(
        ticketbound_tests::ticket_ports(
            Arc::new(store.clone()),
            Arc::new(LocalScheduler::new(store.clone())),
            clock,
            &dir.join("secrets.json"),
            quick_policy(),
        ),
        Settings::default(),
    );
    let router = ticketbound_tests::local_router(app.clone());
    let body = fake.connection_body(&server.uri()).to_string();
    let (status, created) = call(&router, "POST", "/v1/connections", ADMIN, Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["webhook_secret"].as_str().unwrap().to_owned();
    let provisioner = provisioner_ok().await;
    define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;
    let [key, ..] = fake.keys();
    let ticket = TicketRef {
        connection: "conformance".into(),
        key: key.into(),
    };
    let first = seed_bound_active_grants(&app, &ticket, "prod-db", 1).await;
    let status_of = |id: String| {
        let store = store.clone();
        async move { store.get_grant(&id).await.unwrap().unwrap() }
    };
    let uri = format!("/webhooks/{}/conformance", fake.kind().as_str());
    let post = |(headers, body): Sent| {
        let router = router.clone();
        let uri = uri.clone();
        async move {
            let mut request = Request::builder()
                .method("POST")
                .uri(uri)
                .header("content-type", "application/json");
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = router
                .oneshot(request.body(Body::from(body)).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };

    // The ticket is closed in the ticket system; a forged closing changes nothing.
    fake.mount_ticket(&server, key, Held::Closed).await;
    let (status, answer) = post(fake.delivery(key, "not-the-secret-0123456789", "d-0", true)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "{:?}: {answer}",
        fake.kind()
    );
    assert_eq!(answer["error"]["code"], "invalid_signature");
    assert_eq!(
        status_of(first[0].clone()).await.status,
        GrantStatus::Active
    );
    assert!(provisioner_actions(&provisioner).await.is_empty());

    // The signed closing ends the bound grant and removes the access.
    let closing = fake.delivery(key, &secret, "d-1", true);
    let (status, answer) = post(closing.clone()).await;
    assert_eq!(status, StatusCode::OK, "{:?}: {answer}", fake.kind());
    assert_eq!(answer["ended"], 1, "{:?}: {answer}", fake.kind());
    let ended = status_of(first[0].clone()).await;
    assert_eq!(ended.status, GrantStatus::Ended);
    assert_eq!(ended.end_reason, Some(EndReason::TicketClosed));
    assert_eq!(provisioner_actions(&provisioner).await, ["revoke"]);

    // Reopened and bound again: neither the reopening nor a replayed closing ends the new grant, and the ended
    // one stays ended.
    server.reset().await;
    fake.mount_ticket(&server, key, Held::Open).await;
    let second = seed_bound_active_grants(&app, &ticket, "prod-db", 1).await;
    let (status, answer) = post(fake.delivery(key, &secret, "d-2", false)).await;
    assert_eq!(status, StatusCode::OK, "{:?}: {answer}", fake.kind());
    // The very same closing, byte for byte, sent again.
    let (status, answer) = post(closing).await;
    assert_eq!(status, StatusCode::OK, "{:?}: {answer}", fake.kind());
    assert_eq!(
        status_of(second[0].clone()).await.status,
        GrantStatus::Active,
        "{:?}",
        fake.kind()
    );
    assert_eq!(status_of(first[0].clone()).await.status, GrantStatus::Ended);
    assert_eq!(provisioner_actions(&provisioner).await, ["revoke"]);
}

/// Audit tickets (and the `ticket` provisioner): a kind that writes opens a ticket where its destination says,
/// answering the key its vendor gave, and closes it once; a kind that writes none refuses without a call.
async fn audit_tickets_are_opened_and_closed(fake: &dyn Fake) {
    let server = MockServer::start().await;
    let ticket = |destination: TicketDestination| NewTicket {
        destination,
        summary: "Access request: alice@example.com to prod-db".into(),
        description: "Reason: incident".into(),
        requester_email: "alice@example.com".into(),
        marker: "tb-01jd3-audit".into(),
    };
    let Some(destination) = fake.destination() else {
        let refused = fake
            .client(&server)
            .create_ticket(&ticket(TicketDestination::default()))
            .await;
        assert!(refused.is_err(), "{:?}", fake.kind());
        assert!(server.received_requests().await.unwrap().is_empty());
        return;
    };
    let [key, ..] = fake.keys();
    fake.mount_ticket(&server, key, Held::Open).await;
    fake.mount_writes(&server, key).await;
    let client = fake.client(&server);
    let created = client.create_ticket(&ticket(destination)).await.unwrap();
    assert_eq!(created.key, key, "{:?}", fake.kind());
    assert_eq!(
        client.close_ticket(key).await.unwrap(),
        CloseOutcome::Closed,
        "{:?}",
        fake.kind()
    );
}

/// The suite for one plug-in's fake.
macro_rules! conformance {
    ($module:ident, $fake:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn verify_succeeds_with_working_credentials() {
                verify_ok(&$fake).await;
            }

            #[tokio::test]
            async fn verify_with_refused_credentials_needs_reauthorization() {
                verify_refused(&$fake).await;
            }

            #[tokio::test]
            async fn verify_of_an_unreachable_system_is_unavailable() {
                verify_unreachable(&$fake).await;
            }

            #[tokio::test]
            async fn reads_an_open_a_closed_and_a_deleted_ticket() {
                reads_open_closed_and_deleted(&$fake).await;
            }

            #[tokio::test]
            async fn answers_the_batch_states_reconciliation_reads() {
                batch_states_for_reconciliation(&$fake).await;
            }

            #[tokio::test]
            async fn deliveries_end_access_once_and_only_when_authentic() {
                super::deliveries_end_access_once_and_only_when_authentic(&$fake).await;
            }

            #[tokio::test]
            async fn retries_rate_limits_and_server_errors() {
                rate_limits_and_server_errors_are_retried(&$fake).await;
            }

            #[tokio::test]
            async fn judges_answers_by_the_shared_retry_table() {
                answers_are_judged_by_the_shared_table(&$fake).await;
            }

            #[tokio::test]
            async fn opens_and_closes_audit_tickets() {
                audit_tickets_are_opened_and_closed(&$fake).await;
            }
        }
    };
}

conformance!(jira_cloud, JiraCloudFake);
conformance!(jira_data_center, JiraDataCenterFake);
conformance!(freshservice, FreshserviceFake);
conformance!(servicenow, ServiceNowFake);
conformance!(linear, LinearFake);

/// A ServiceNow write refused answers as the Table API says why: 401 is refused credentials (re-authorization),
/// 403 a permission the account lacks (an ACL), 400 ServiceNow's own message (a data policy), and a 500 after a
/// write is not sent again in the call (it may have created the record; the durable retry looks for the marker).
#[tokio::test]
async fn servicenow_refused_writes_say_why_and_a_5xx_is_not_resent() {
    let fake = ServiceNowFake;
    let ticket = NewTicket {
        destination: fake.destination().unwrap(),
        summary: "Access request".into(),
        description: "Reason: incident".into(),
        requester_email: "alice@example.com".into(),
        marker: "tb-01jd3-audit".into(),
    };
    let error = |message: &str| json!({"error": {"message": message, "detail": "Operation against incident failed"}, "status": "failure"});
    for (status, body) in [
        (401, error("User Not Authenticated")),
        (403, error("Operation Failed: ACL restricts the record")),
        (400, error("Data Policy Exception: Category is mandatory")),
        (500, error("Internal error")),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/now/table/incident"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        let err = fake
            .client(&server)
            .create_ticket(&ticket)
            .await
            .unwrap_err();
        let text = err.to_string();
        match status {
            401 => assert!(
                matches!(err, TicketSystemError::Unauthorized { status: 401, .. }),
                "{err:?}"
            ),
            403 => assert!(
                matches!(&err, TicketSystemError::NotPermitted(m) if m.contains("ACL restricts")),
                "{err:?}"
            ),
            400 => assert!(
                matches!(&err, TicketSystemError::Unexpected(m) if m.contains("Category is mandatory")),
                "{err:?}"
            ),
            _ => assert!(matches!(err, TicketSystemError::Unavailable(_)), "{err:?}"),
        }
        assert!(!text.contains("snow-pass"), "{text}");
    }
}

/// ServiceNow pages on its side (`sysparm_offset` is the page token) and narrows by `q` with `LIKE` on the
/// number and short description; a closed row it still returns is left out, and an encoded-query operator in
/// `q` never reaches the query.
#[tokio::test]
async fn servicenow_search_pages_and_narrows_on_its_side() {
    let fake = ServiceNowFake;
    let server = MockServer::start().await;
    let me = "6816f79cc0a8016401c5a33be04be441";
    let base = format!("assigned_to={me}^active=true");
    let order = "^ORDERBYDESCsys_updated_on";
    let page: Vec<Value> = (0..50)
        .map(|i| fake.ticket_body(&format!("INC00{:05}", i), Held::Open))
        .collect();
    Mock::given(path("/api/now/table/task"))
        .and(query_param(
            "sysparm_query",
            format!("{base}{order}").as_str(),
        ))
        .and(query_param("sysparm_offset", "0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": page})))
        .mount(&server)
        .await;
    Mock::given(path("/api/now/table/task"))
        .and(query_param(
            "sysparm_query",
            format!("{base}{order}").as_str(),
        ))
        .and(query_param("sysparm_offset", "50"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [
            fake.ticket_body("RITM0010002", Held::Open),
            fake.ticket_body("CHG0030003", Held::Closed),
        ]})))
        .mount(&server)
        .await;
    Mock::given(path("/api/now/table/task"))
        .and(query_param(
            "sysparm_query",
            format!("{base}^numberLIKEdisk full^ORshort_descriptionLIKEdisk full{order}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [
            fake.ticket_body("INC0020001", Held::Open),
        ]})))
        .mount(&server)
        .await;
    let client = fake.client(&server);
    let person = ticketbound::domain::connection::Person {
        id: me.into(),
        email: None,
        display_name: None,
    };
    let first = client
        .open_tickets_page(&person, &TicketQuery::default())
        .await
        .unwrap();
    assert_eq!(first.items.len(), 50);
    assert_eq!(first.next.as_deref(), Some("50"));
    let second = client
        .open_tickets_page(
            &person,
            &TicketQuery {
                text: None,
                page: first.next.clone(),
            },
        )
        .await
        .unwrap();
    let keys: Vec<&str> = second.items.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["RITM0010002"], "the closed row is left out");
    assert_eq!(second.next, None);
    let found = client
        .open_tickets_page(
            &person,
            &TicketQuery {
                text: Some("^disk full^".into()),
                page: None,
            },
        )
        .await
        .unwrap();
    let keys: Vec<&str> = found.items.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["INC0020001"]);
    let refused = client
        .open_tickets_page(
            &person,
            &TicketQuery {
                text: None,
                page: Some("not-an-offset".into()),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, TicketSystemError::InvalidPageToken(_)));
}
