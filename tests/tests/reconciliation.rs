//! Reconciliation (DESIGN §2, issue 9): a closing whose webhook was lost still ends its grants within one run;
//! Jira is asked in batches of 100 keys, falling back to single reads when a key no longer exists; Freshservice
//! is read one ticket at a time and left alone after a 429; ticket-system errors never end a grant nor flood
//! the connection's status; a run is bounded and the next one resumes where it stopped; the connection shows
//! its webhook health. Ticket systems are wiremock servers answering as protocol-facts §3–4 say.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::Router;
use axum::http::StatusCode;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::domain::{AuditEvent, AuditKind, Grant, GrantDuration, GrantStatus, TicketRef};
use ticketbound::handlers::handle_scheduled_job;
use ticketbound::ports::{Clock, ConnectionStore, GrantStore};
use ticketbound::service::{ReconcileSettings, Settings, Ticketbound};
use ticketbound::telemetry::metric_total;
use ticketbound_tests::{
    ADMIN, ManualClock, call, define_webhook_resource, provisioner_actions, provisioner_ok,
    seed_bound_active_grants,
};

const METRIC: &str = "ClosingsFoundByReconciliation";

/// Tests that count the process-wide metric run one at a time.
static METRIC_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the fake Jira holds: key → (status name, status category key). A key not there does not exist.
#[derive(Clone, Default)]
struct Issues(Arc<Mutex<BTreeMap<String, (String, String)>>>);

impl Issues {
    fn open(&self, key: &str) {
        self.set(key, "In Progress", "indeterminate");
    }
    fn close(&self, key: &str) {
        self.set(key, "Done", "done");
    }
    fn delete(&self, key: &str) {
        self.0.lock().unwrap().remove(key);
    }
    fn set(&self, key: &str, name: &str, category: &str) {
        self.0
            .lock()
            .unwrap()
            .insert(key.to_owned(), (name.to_owned(), category.to_owned()));
    }
    fn issue(&self, key: &str) -> Option<Value> {
        let issues = self.0.lock().unwrap();
        // Jira keeps a moved issue's old key as an alias: asking for it answers the issue under its new key.
        let key = issues
            .get(&format!("moved:{key}"))
            .map_or(key.to_owned(), |(new_key, _)| new_key.clone());
        let (name, category) = issues.get(&key)?;
        Some(support::cloud_issue(&key, name, category, None))
    }

    /// Moves `old` to another project as `new`, keeping its status (its id in a real Jira stays the same).
    fn move_to(&self, old: &str, new: &str) {
        let mut issues = self.0.lock().unwrap();
        let status = issues.remove(old).expect("the issue exists");
        issues.insert(new.to_owned(), status);
        issues.insert(format!("moved:{old}"), (new.to_owned(), String::new()));
    }
}

/// `GET /rest/api/3/search/jql?jql=key in ("A", "B")`: the issues, or Jira's 400 when a key does not exist.
struct Search(Issues);

impl Respond for Search {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let jql = query(request, "jql").unwrap_or_default();
        let keys = jql_keys(&jql);
        let mut issues = Vec::new();
        for key in &keys {
            match self.0.issue(key) {
                Some(issue) => issues.push(issue),
                None => {
                    return ResponseTemplate::new(400).set_body_json(json!({
                        "errorMessages": [format!("An issue with key '{key}' does not exist for field 'key'.")],
                        "errors": {}
                    }));
                }
            }
        }
        ResponseTemplate::new(200).set_body_json(json!({"issues": issues, "isLast": true}))
    }
}

/// `GET /rest/api/3/issue/{key}`: the issue, or 404.
struct Single(Issues);

impl Respond for Single {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = request.url.path().rsplit('/').next().unwrap_or_default();
        match self.0.issue(key) {
            Some(issue) => ResponseTemplate::new(200).set_body_json(issue),
            None => ResponseTemplate::new(404).set_body_json(
                json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}),
            ),
        }
    }
}

fn query(request: &Request, name: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The keys of `key in ("A", "B")`.
fn jql_keys(jql: &str) -> Vec<String> {
    let inner = jql
        .split_once('(')
        .and_then(|(_, rest)| rest.rsplit_once(')'))
        .map(|(inside, _)| inside)
        .unwrap_or_default();
    inner
        .split(',')
        .map(|k| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty())
        .collect()
}

fn quoted(keys: &[String]) -> String {
    let list: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!("key in ({})", list.join(", "))
}

/// A directory removed when the test ends.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `POST path` with `headers` and a JSON body, through the router; the status.
async fn post_with_headers(
    router: &Router,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> StatusCode {
    use tower::ServiceExt;
    let mut request = axum::http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    router
        .clone()
        .oneshot(
            request
                .body(axum::body::Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
        .unwrap()
        .status()
}

struct World {
    app: Ticketbound,
    router: Router,
    store: EmbeddedStore,
    clock: ManualClock,
    jira: MockServer,
    issues: Issues,
    provisioner: MockServer,
    _dir: TempDir,
}

/// An app with the Jira Cloud connection `jira-main` (a wiremock fake holding `issues`) and the resource
/// `prod-db` (a webhook provisioner on wiremock), on a clock the test moves.
async fn world(reconcile: ReconcileSettings) -> World {
    let jira = MockServer::start().await;
    let issues = Issues::default();
    Mock::given(method("GET"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(Search(issues.clone()))
        .mount(&jira)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/rest/api/3/issue/[^/]+$"))
        .respond_with(Single(issues.clone()))
        .mount(&jira)
        .await;
    let store = EmbeddedStore::in_memory().unwrap();
    let dir = TempDir(support::temp_dir("reconcile"));
    let clock = ManualClock::now_system();
    let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let app = Ticketbound::build(
        ticketbound_tests::ticket_ports(
            Arc::new(store.clone()),
            Arc::new(LocalScheduler::new(store.clone())),
            shared_clock.clone(),
            &dir.0.join("secrets.json"),
            support::quick_policy(),
        ),
        Settings {
            reconcile,
            ..Settings::default()
        },
    );
    let router = ticketbound_tests::local_router(app.clone());
    let body = json!({"id": "jira-main", "kind": "jira_cloud", "base_url": jira.uri(), "email": "bot@acme.com", "api_token": "jira-token-1"});
    let (status, created) = call(
        &router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let provisioner = provisioner_ok().await;
    define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;
    World {
        app,
        router,
        store,
        clock,
        jira,
        issues,
        provisioner,
        _dir: dir,
    }
}

fn ticket(connection: &str, key: &str) -> TicketRef {
    TicketRef {
        connection: connection.into(),
        key: key.into(),
    }
}

/// A pending request bound to `ticket`.
async fn seed_pending(app: &Ticketbound, ticket: &TicketRef) -> String {
    let now = app.clock().now();
    let grant = Grant::request(
        ticketbound::domain::ids::new_ulid(now),
        "pat@example.com".into(),
        "prod-db".into(),
        "waiting".into(),
        GrantDuration::Indefinite,
        Some(ticket.clone()),
        now,
    );
    let event = AuditEvent::of(
        &grant,
        AuditKind::Requested,
        Some("pat@example.com"),
        now,
        Value::Null,
    );
    app.store().insert_grant(&grant, &event).await.unwrap();
    grant.id
}

async fn grant(app: &Ticketbound, id: &str) -> Grant {
    app.store().get_grant(id).await.unwrap().unwrap()
}

/// The JQL of every search the fake Jira received, in order.
async fn searches(jira: &MockServer) -> Vec<String> {
    jira.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/rest/api/3/search/jql")
        .filter_map(|r| query(r, "jql"))
        .collect()
}

async fn single_reads(jira: &MockServer) -> usize {
    jira.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().starts_with("/rest/api/3/issue/"))
        .count()
}

async fn connection_json(router: &Router, id: &str) -> Value {
    let (status, json) = call(router, "GET", &format!("/v1/connections/{id}"), ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json
}

#[tokio::test]
async fn a_ticket_closed_without_a_delivery_ends_its_grants_in_one_run_and_the_next_run_does_nothing()
 {
    let _serial = METRIC_LOCK.lock().await;
    let w = world(ReconcileSettings::default()).await;
    w.issues.open("SEC-1");
    w.issues.open("SEC-2");
    // On another resource, so rule 8 does not skip the revocation asserted below.
    let untouched = seed_bound_active_grants(&w.app, &ticket("jira-main", "SEC-1"), "other-db", 1)
        .await
        .remove(0);
    let active = seed_bound_active_grants(&w.app, &ticket("jira-main", "SEC-2"), "prod-db", 1)
        .await
        .remove(0);
    let pending = seed_pending(&w.app, &ticket("jira-main", "SEC-2")).await;
    let report = w.app.reconcile().await.unwrap();
    assert_eq!(
        (report.tickets_checked, report.closings_found),
        (2, 0),
        "open tickets end nothing: {report:?}"
    );

    // Arrange: the ticket closes in Jira and its webhook is lost.
    w.issues.close("SEC-2");
    let metric_before = metric_total(METRIC);

    // Act
    let report = w.app.reconcile().await.unwrap();

    // Assert
    assert_eq!(
        (report.closings_found, report.grants_ended),
        (1, 2),
        "{report:?}"
    );
    let ended = grant(&w.app, &active).await;
    assert_eq!(ended.status, GrantStatus::Ended);
    assert_eq!(
        serde_json::to_value(ended.end_reason).unwrap(),
        "ticket_closed"
    );
    assert_eq!(grant(&w.app, &pending).await.status, GrantStatus::Cancelled);
    assert_eq!(grant(&w.app, &untouched).await.status, GrantStatus::Active);
    let events = w.store.list_events(&active, 50, None).await.unwrap().items;
    let ending = events
        .iter()
        .find(|e| e.kind == "ended")
        .expect("an ended event");
    assert_eq!(ending.detail["found_by"], "reconciliation");
    assert_eq!(ending.detail["end_reason"], "ticket_closed");
    let events = w.store.list_events(&pending, 50, None).await.unwrap().items;
    let cancelling = events
        .iter()
        .find(|e| e.kind == "cancelled")
        .expect("a cancelled event");
    assert_eq!(cancelling.detail["found_by"], "reconciliation");
    assert_eq!(
        metric_total(METRIC) - metric_before,
        1.0,
        "one metric per closing found"
    );
    assert_eq!(provisioner_actions(&w.provisioner).await, ["revoke"]);
    let connection = connection_json(&w.router, "jira-main").await;
    assert_eq!(connection["webhook_health"], "warning", "{connection}");
    assert_eq!(connection["last_missed_closing"]["ticket"], "SEC-2");

    // A second run finds nothing more to do.
    let event_count = w
        .store
        .list_events(&active, 50, None)
        .await
        .unwrap()
        .items
        .len();
    let report = w.app.reconcile().await.unwrap();
    assert_eq!(
        (
            report.closings_found,
            report.grants_ended,
            report.tickets_checked
        ),
        (0, 0, 1),
        "{report:?}"
    );
    assert_eq!(
        w.store
            .list_events(&active, 50, None)
            .await
            .unwrap()
            .items
            .len(),
        event_count
    );
    assert_eq!(metric_total(METRIC) - metric_before, 1.0);
    assert_eq!(provisioner_actions(&w.provisioner).await, ["revoke"]);
}

#[tokio::test]
async fn two_hundred_fifty_tickets_take_exactly_three_searches_naming_each_key_once() {
    let w = world(ReconcileSettings::default()).await;
    let keys: Vec<String> = (1..=250).map(|i| format!("T-{i:03}")).collect();
    for key in &keys {
        w.issues.open(key);
        seed_bound_active_grants(&w.app, &ticket("jira-main", key), "prod-db", 1).await;
    }

    let report = w.app.reconcile().await.unwrap();

    let jqls = searches(&w.jira).await;
    assert_eq!(jqls.len(), 3, "{jqls:?}");
    assert_eq!(jqls[0], quoted(&keys[..100]));
    assert_eq!(jqls[1], quoted(&keys[100..200]));
    assert_eq!(jqls[2], quoted(&keys[200..]));
    assert_eq!(single_reads(&w.jira).await, 0);
    assert_eq!(report.ticket_system_calls, 3);
    assert_eq!(report.tickets_checked, 250);
    assert_eq!(report.closings_found, 0);
    let asked = w.jira.received_requests().await.unwrap();
    assert!(
        asked
            .iter()
            .all(|r| query(r, "maxResults").as_deref() == Some("100")
                && query(r, "fields").as_deref() == Some("status"))
    );
}

#[tokio::test]
async fn an_unknown_key_makes_jira_refuse_the_search_and_single_reads_end_only_the_deleted_ticket()
{
    let _serial = METRIC_LOCK.lock().await;
    let w = world(ReconcileSettings::default()).await;
    let mut ids = BTreeMap::new();
    for key in ["A-1", "A-2", "A-3", "A-4"] {
        w.issues.open(key);
        let id = seed_bound_active_grants(&w.app, &ticket("jira-main", key), "prod-db", 1)
            .await
            .remove(0);
        ids.insert(key, id);
    }
    w.issues.delete("A-3");

    let report = w.app.reconcile().await.unwrap();

    assert_eq!(searches(&w.jira).await.len(), 1, "one search, refused");
    assert_eq!(single_reads(&w.jira).await, 4, "then one read per key");
    assert_eq!(report.ticket_system_calls, 5);
    assert_eq!(report.closings_found, 1);
    let deleted = grant(&w.app, &ids["A-3"]).await;
    assert_eq!(deleted.status, GrantStatus::Ended);
    assert_eq!(
        serde_json::to_value(deleted.end_reason).unwrap(),
        "ticket_deleted"
    );
    for key in ["A-1", "A-2", "A-4"] {
        assert_eq!(
            grant(&w.app, &ids[key]).await.status,
            GrantStatus::Active,
            "{key}"
        );
    }
}

/// An issue moved to another project answers the search under its new key; the old key is then missing from
/// the answer and read alone, which Jira resolves to the moved issue: a moved issue that closed still ends its
/// grants, and a moved issue that is open is never taken for deleted.
#[tokio::test]
async fn an_issue_moved_to_another_project_is_followed_never_taken_for_deleted() {
    let _serial = METRIC_LOCK.lock().await;
    let w = world(ReconcileSettings::default()).await;
    let mut ids = BTreeMap::new();
    for key in ["SEC-1", "SEC-2", "SEC-3"] {
        w.issues.open(key);
        let id = seed_bound_active_grants(&w.app, &ticket("jira-main", key), "prod-db", 1)
            .await
            .remove(0);
        ids.insert(key, id);
    }
    w.issues.move_to("SEC-1", "OPS-11");
    w.issues.move_to("SEC-2", "OPS-12");
    w.issues.close("OPS-12");

    let report = w.app.reconcile().await.unwrap();

    assert_eq!(searches(&w.jira).await.len(), 1);
    assert_eq!(
        single_reads(&w.jira).await,
        2,
        "the two moved keys, read alone"
    );
    assert_eq!(report.closings_found, 1);
    assert_eq!(
        grant(&w.app, &ids["SEC-1"]).await.status,
        GrantStatus::Active,
        "moved and open: not deleted"
    );
    let closed = grant(&w.app, &ids["SEC-2"]).await;
    assert_eq!(closed.status, GrantStatus::Ended);
    assert_eq!(
        serde_json::to_value(closed.end_reason).unwrap(),
        "ticket_closed"
    );
    assert_eq!(
        grant(&w.app, &ids["SEC-3"]).await.status,
        GrantStatus::Active
    );
}

/// A Freshservice connection `fs-main` on its own fake; returns the fake.
async fn add_freshservice(w: &World) -> MockServer {
    let fs = MockServer::start().await;
    let body = json!({"id": "fs-main", "kind": "freshservice", "base_url": fs.uri(), "api_key": "fs-key-123"});
    let (status, created) = call(
        &w.router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    fs
}

fn fs_ticket(id: u64, status: u64) -> Value {
    json!({"ticket": {"id": id, "subject": "Disk full", "status": status, "responder_id": 7, "deleted": false, "spam": false}})
}

fn fs_reads(requests: &[Request]) -> Vec<String> {
    requests.iter().map(|r| r.url.path().to_owned()).collect()
}

#[tokio::test]
async fn freshservice_is_read_one_ticket_at_a_time_and_ends_a_resolved_ticket() {
    let _serial = METRIC_LOCK.lock().await;
    let w = world(ReconcileSettings::default()).await;
    let fs = add_freshservice(&w).await;
    Mock::given(path("/api/v2/tickets/101"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fs_ticket(101, 2)))
        .mount(&fs)
        .await;
    Mock::given(path("/api/v2/tickets/102"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fs_ticket(102, 4)))
        .mount(&fs)
        .await;
    let open = seed_bound_active_grants(&w.app, &ticket("fs-main", "101"), "prod-db", 1)
        .await
        .remove(0);
    let resolved = seed_bound_active_grants(&w.app, &ticket("fs-main", "102"), "prod-db", 1)
        .await
        .remove(0);

    let report = w.app.reconcile().await.unwrap();

    assert_eq!(
        fs_reads(&fs.received_requests().await.unwrap()),
        ["/api/v2/tickets/101", "/api/v2/tickets/102"]
    );
    assert_eq!(report.closings_found, 1);
    assert_eq!(grant(&w.app, &open).await.status, GrantStatus::Active);
    assert_eq!(grant(&w.app, &resolved).await.status, GrantStatus::Ended);
}

#[tokio::test]
async fn a_freshservice_429_pauses_that_connection_until_retry_after_without_ending_anything() {
    let _serial = METRIC_LOCK.lock().await;
    let w = world(ReconcileSettings::default()).await;
    let fs = add_freshservice(&w).await;
    Mock::given(path("/api/v2/tickets/103"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "120")
                .set_body_json(
                    json!({"message": "You have exceeded the limit of requests per minute"}),
                ),
        )
        .up_to_n_times(1)
        .mount(&fs)
        .await;
    Mock::given(path("/api/v2/tickets/103"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fs_ticket(103, 5)))
        .mount(&fs)
        .await;
    let closed = seed_bound_active_grants(&w.app, &ticket("fs-main", "103"), "prod-db", 1)
        .await
        .remove(0);
    // Jira, the other connection, is not held back by Freshservice's limit.
    w.issues.close("SEC-9");
    let jira_grant = seed_bound_active_grants(&w.app, &ticket("jira-main", "SEC-9"), "prod-db", 1)
        .await
        .remove(0);

    let first = w.app.reconcile().await.unwrap();
    assert_eq!(
        fs.received_requests().await.unwrap().len(),
        1,
        "stopped at the 429"
    );
    assert_eq!(
        grant(&w.app, &closed).await.status,
        GrantStatus::Active,
        "a 429 ends nothing"
    );
    assert_eq!(grant(&w.app, &jira_grant).await.status, GrantStatus::Ended);
    assert_eq!(first.closings_found, 1, "{first:?}");
    let connection = connection_json(&w.router, "fs-main").await;
    assert_eq!(connection["status"], "connected", "{connection}");
    assert_eq!(
        connection["last_error"],
        Value::Null,
        "a rate limit is not an error of the connection"
    );

    // Within Retry-After: not asked at all.
    w.clock.advance(time::Duration::seconds(60));
    let second = w.app.reconcile().await.unwrap();
    assert_eq!(second.connections_paused, 1);
    assert_eq!(fs.received_requests().await.unwrap().len(), 1);
    assert_eq!(grant(&w.app, &closed).await.status, GrantStatus::Active);

    // After it: asked again, and the closed ticket's grant ends.
    w.clock.advance(time::Duration::seconds(61));
    let third = w.app.reconcile().await.unwrap();
    assert_eq!(fs.received_requests().await.unwrap().len(), 2);
    assert_eq!(third.closings_found, 1, "{third:?}");
    assert_eq!(grant(&w.app, &closed).await.status, GrantStatus::Ended);
}

#[tokio::test]
async fn ticket_system_errors_never_end_a_grant_and_write_the_status_at_most_once() {
    // (answer, whether it is a credential problem the connection must show)
    let cases: Vec<(&str, ResponseTemplate, bool)> = vec![
        (
            "401",
            ResponseTemplate::new(401).set_body_json(json!({"errorMessages": ["Client must be authenticated to access this resource."], "errors": {}})),
            true,
        ),
        ("503", ResponseTemplate::new(503), false),
        ("500", ResponseTemplate::new(500), false),
        (
            "timeout",
            ResponseTemplate::new(200)
                .set_body_json(json!({"issues": [], "isLast": true}))
                .set_delay(StdDuration::from_millis(900)),
            false,
        ),
    ];
    for (name, answer, credentials) in cases {
        let jira = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(answer)
            .mount(&jira)
            .await;
        let w = world(ReconcileSettings::default()).await;
        let body = json!({"base_url": jira.uri()});
        let (status, json) = call(
            &w.router,
            "PATCH",
            "/v1/connections/jira-main",
            ADMIN,
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        let id =
            seed_bound_active_grants(&w.app, &ticket("jira-main", "SEC-5"), "prod-db", 2).await;

        for _ in 0..3 {
            let report = w.app.reconcile().await.unwrap();
            assert_eq!(report.errors, 1, "{name}: {report:?}");
            assert_eq!(report.closings_found, 0, "{name}");
        }

        for g in &id {
            assert_eq!(grant(&w.app, g).await.status, GrantStatus::Active, "{name}");
        }
        let stored = w.store.get_connection("jira-main").await.unwrap().unwrap();
        let connection = connection_json(&w.router, "jira-main").await;
        if credentials {
            assert_eq!(
                connection["status"], "needs_reauthorization",
                "{name}: {connection}"
            );
            assert_eq!(
                stored.auth.consecutive_auth_failures, 1,
                "{name}: three runs, one status write"
            );
            assert!(connection["last_error"].as_str().unwrap().contains("401"));
        } else {
            assert_eq!(connection["status"], "connected", "{name}: {connection}");
            assert_eq!(
                connection["last_error"],
                Value::Null,
                "{name}: transient errors are not written"
            );
        }
        assert!(
            !connection.to_string().contains("jira-token-1"),
            "no secret in the answer"
        );
    }
}

#[tokio::test]
async fn a_small_budget_spreads_a_sweep_over_runs_that_check_each_ticket_once() {
    let w = world(ReconcileSettings {
        tickets_per_run: 10,
        ..ReconcileSettings::default()
    })
    .await;
    let keys: Vec<String> = (1..=25).map(|i| format!("B-{i:02}")).collect();
    for key in &keys {
        w.issues.open(key);
        seed_bound_active_grants(&w.app, &ticket("jira-main", key), "prod-db", 1).await;
    }

    let mut per_run: Vec<Vec<String>> = Vec::new();
    let mut reports = Vec::new();
    for _ in 0..4 {
        let before = searches(&w.jira).await.len();
        reports.push(w.app.reconcile().await.unwrap());
        per_run.push(
            searches(&w.jira).await[before..]
                .iter()
                .flat_map(|jql| jql_keys(jql))
                .collect(),
        );
    }

    assert_eq!(
        per_run.iter().map(Vec::len).collect::<Vec<_>>(),
        [10, 10, 5, 10]
    );
    assert_eq!(reports[0].stopped_by, Some("ticket_budget"));
    assert_eq!(reports[2].sweeps_completed, 1);
    let sweep: Vec<String> = per_run[..3].concat();
    assert_eq!(
        sweep, keys,
        "the first sweep checks every ticket once, in order"
    );
    assert_eq!(
        per_run[3],
        keys[..10],
        "the next sweep starts again from the first"
    );
    let distinct: BTreeSet<&String> = sweep.iter().collect();
    assert_eq!(distinct.len(), 25);

    // A run out of time starts nothing and keeps the position.
    let mut settings = w.app.settings().clone();
    settings.reconcile.time_budget = StdDuration::ZERO;
    let out_of_time = w.app.clone().with_settings(settings);
    let before = searches(&w.jira).await.len();
    let report = out_of_time.reconcile().await.unwrap();
    assert_eq!(report.stopped_by, Some("time_budget"));
    assert_eq!(searches(&w.jira).await.len(), before);
    w.app.reconcile().await.unwrap();
    let next: Vec<String> = searches(&w.jira).await[before..]
        .iter()
        .flat_map(|jql| jql_keys(jql))
        .collect();
    assert_eq!(next, keys[10..20], "resumed after the last ticket checked");
}

#[tokio::test]
async fn an_authentic_delivery_sets_last_delivery_at_and_a_forged_one_does_not() {
    let w = world(ReconcileSettings::default()).await;
    let before = connection_json(&w.router, "jira-main").await;
    assert_eq!(before["webhook_health"], "unknown", "{before}");
    assert_eq!(before["last_delivery_at"], Value::Null);
    assert_eq!(before["last_missed_closing"], Value::Null);
    w.issues.open("SEC-3");
    let delivery = json!({"webhookEvent": "jira:issue_updated", "issue": {"id": "10003", "key": "SEC-3", "fields": {"status": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}}}}});

    let forged = post_with_headers(
        &w.router,
        "/webhooks/jira/jira-main",
        &[("x-ticketbound-secret", "not-the-secret-0123456789")],
        &delivery.to_string(),
    )
    .await;
    assert_eq!(forged, StatusCode::UNAUTHORIZED);
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(
        connection_json(&w.router, "jira-main").await["last_delivery_at"],
        Value::Null,
        "a forged delivery says nothing about the webhook"
    );

    let secret = webhook_secret(&w).await;
    let status = post_with_headers(
        &w.router,
        "/webhooks/jira/jira-main",
        &[("x-ticketbound-secret", &secret)],
        &delivery.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let seen = ticketbound_tests::eventually(StdDuration::from_secs(5), || async {
        connection_json(&w.router, "jira-main").await["last_delivery_at"].is_string()
    })
    .await;
    assert!(seen, "last_delivery_at is set");
    assert_eq!(
        connection_json(&w.router, "jira-main").await["webhook_health"],
        "ok"
    );
}

/// Rotates in a known webhook secret for `jira-main`.
async fn webhook_secret(w: &World) -> String {
    let secret = "a-known-webhook-secret-0123456789";
    let body = json!({"webhook_secret": secret});
    let (status, json) = call(
        &w.router,
        "PATCH",
        "/v1/connections/jira-main",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    secret.to_owned()
}

#[tokio::test]
async fn the_expiry_handler_runs_a_reconciliation_for_the_reconcile_job_and_acknowledges_junk() {
    let _serial = METRIC_LOCK.lock().await;
    let w = world(ReconcileSettings::default()).await;
    w.issues.close("SEC-8");
    let id = seed_bound_active_grants(&w.app, &ticket("jira-main", "SEC-8"), "prod-db", 1)
        .await
        .remove(0);

    for junk in [
        json!({"job": "reconcile", "cursor": 123}),
        json!({"job": "reconcile", "grant_id": "01JD3ZZZZZZZZZZZZZZZZZZZZZ"}),
    ] {
        let answer =
            handle_scheduled_job(&w.app, LambdaEvent::new(junk.clone(), Context::default()))
                .await
                .expect("junk is acknowledged, never retried");
        assert_eq!(answer["outcome"], "ignored", "{junk}");
    }
    assert!(
        w.jira.received_requests().await.unwrap().is_empty(),
        "junk runs nothing"
    );
    assert_eq!(grant(&w.app, &id).await.status, GrantStatus::Active);

    // The recurring schedule's Input, exactly as the template sets it.
    let event: Value = serde_json::from_str(r#"{"job": "reconcile"}"#).unwrap();
    let answer = handle_scheduled_job(&w.app, LambdaEvent::new(event, Context::default()))
        .await
        .expect("a run");
    assert_eq!(answer["outcome"], "done", "{answer}");
    assert_eq!(answer["report"]["closings_found"], 1, "{answer}");
    assert_eq!(grant(&w.app, &id).await.status, GrantStatus::Ended);

    // Turned off: acknowledged, nothing asked.
    let mut settings = w.app.settings().clone();
    settings.reconcile.every = None;
    let off = w.app.clone().with_settings(settings);
    let before = w.jira.received_requests().await.unwrap().len();
    let answer = handle_scheduled_job(
        &off,
        LambdaEvent::new(json!({"job": "reconcile"}), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(answer["outcome"], "off");
    assert_eq!(w.jira.received_requests().await.unwrap().len(), before);
}

#[tokio::test]
async fn jira_data_center_is_asked_through_rest_api_2_search_with_the_same_batches() {
    let _serial = METRIC_LOCK.lock().await;
    let w = world(ReconcileSettings::default()).await;
    let dc = MockServer::start().await;
    let issues = Issues::default();
    for key in ["DC-1", "DC-2", "DC-3"] {
        issues.open(key);
    }
    issues.set("DC-2", "Closed", "done");
    let held = issues.clone();
    Mock::given(method("GET"))
        .and(path("/rest/api/2/search"))
        .respond_with(move |request: &Request| {
            let keys = jql_keys(&query(request, "jql").unwrap_or_default());
            let found: Vec<Value> = keys.iter().filter_map(|k| held.issue(k)).collect();
            ResponseTemplate::new(200).set_body_json(json!({
                "startAt": 0, "maxResults": 100, "total": found.len(), "issues": found
            }))
        })
        .mount(&dc)
        .await;
    let body = json!({"id": "jira-dc", "kind": "jira_data_center", "base_url": dc.uri(), "personal_access_token": "dc-pat-0123456789"});
    let (status, created) = call(
        &w.router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let mut ids = BTreeMap::new();
    for key in ["DC-1", "DC-2", "DC-3"] {
        let id = seed_bound_active_grants(&w.app, &ticket("jira-dc", key), "prod-db", 1)
            .await
            .remove(0);
        ids.insert(key, id);
    }

    let report = w.app.reconcile().await.unwrap();

    let asked = dc.received_requests().await.unwrap();
    assert_eq!(asked.len(), 1, "one search for three keys");
    assert_eq!(
        query(&asked[0], "jql").unwrap(),
        quoted(&["DC-1".into(), "DC-2".into(), "DC-3".into()])
    );
    assert_eq!(query(&asked[0], "startAt").as_deref(), Some("0"));
    assert_eq!(
        asked[0].headers.get("authorization").unwrap(),
        "Bearer dc-pat-0123456789"
    );
    assert_eq!(report.closings_found, 1);
    assert_eq!(grant(&w.app, &ids["DC-2"]).await.status, GrantStatus::Ended);
    assert_eq!(
        grant(&w.app, &ids["DC-1"]).await.status,
        GrantStatus::Active
    );
    assert_eq!(
        grant(&w.app, &ids["DC-3"]).await.status,
        GrantStatus::Active
    );
}

/// ServiceNow: one `numberIN…` query for every bound number; an inactive ticket's grants end, an active one's
/// stay, and a number the query no longer finds is deleted.
#[tokio::test]
async fn servicenow_reads_every_bound_number_in_one_query_and_ends_inactive_and_deleted_tickets() {
    let _serial = METRIC_LOCK.lock().await;
    let w = world(ReconcileSettings::default()).await;
    let snow = MockServer::start().await;
    let body = json!({"id": "snow", "kind": "servicenow", "base_url": snow.uri(), "username": "svc", "password": "snow-pass"});
    let (status, created) = call(
        &w.router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let row = |number: &str, active: &str| json!({"sys_id": format!("{number:0>32}"), "number": number, "short_description": "Access", "state": if active == "true" { "2" } else { "7" }, "active": active, "sys_class_name": "incident", "assigned_to": ""});
    Mock::given(method("GET"))
        .and(path("/api/now/table/task"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [
            row("INC0010001", "true"),
            row("RITM0010002", "false"),
        ]})))
        .mount(&snow)
        .await;
    let mut ids = Vec::new();
    for number in ["INC0010001", "RITM0010002", "CHG0030003"] {
        ids.push(
            seed_bound_active_grants(&w.app, &ticket("snow", number), "prod-db", 1)
                .await
                .remove(0),
        );
    }

    let report = w.app.reconcile().await.unwrap();

    let queries: Vec<String> = snow
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| query(r, "sysparm_query"))
        .collect();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert!(queries[0].starts_with("numberIN"), "{queries:?}");
    for number in ["INC0010001", "RITM0010002", "CHG0030003"] {
        assert!(queries[0].contains(number), "{queries:?}");
    }
    assert_eq!(report.closings_found, 2);
    assert_eq!(grant(&w.app, &ids[0]).await.status, GrantStatus::Active);
    assert_eq!(grant(&w.app, &ids[1]).await.status, GrantStatus::Ended);
    let deleted = grant(&w.app, &ids[2]).await;
    assert_eq!(deleted.status, GrantStatus::Ended);
}

/// Linear: one `issues(filter: {or: …})` GraphQL query for every bound identifier in a run; a completed issue's
/// grants end, an open one's stay, and an identifier the query no longer returns is deleted.
#[tokio::test]
async fn linear_reads_every_bound_issue_in_one_query_and_ends_closed_and_deleted_ones() {
    let _serial = METRIC_LOCK.lock().await;
    let w = world(ReconcileSettings::default()).await;
    let linear = MockServer::start().await;
    let body =
        json!({"id": "lin", "kind": "linear", "base_url": linear.uri(), "api_key": "lin_api_key"});
    let (status, created) = call(
        &w.router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let node = |identifier: &str, state_type: &str| json!({"id": format!("id-{identifier}"), "identifier": identifier, "title": "Access", "url": "", "trashed": null, "archivedAt": null, "state": {"name": state_type, "type": state_type}, "assignee": null});
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"data": {"issues": {"nodes": [
                node("ENG-1", "started"),
                node("ENG-2", "canceled"),
            ]}}}),
        ))
        .mount(&linear)
        .await;
    let mut ids = Vec::new();
    for key in ["ENG-1", "ENG-2", "OPS-3"] {
        ids.push(
            seed_bound_active_grants(&w.app, &ticket("lin", key), "prod-db", 1)
                .await
                .remove(0),
        );
    }

    let report = w.app.reconcile().await.unwrap();

    let requests = linear.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "one query for the whole run");
    let sent: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        sent["variables"]["filter"]["or"].as_array().map(Vec::len),
        Some(3),
        "{sent}"
    );
    assert_eq!(report.closings_found, 2);
    assert_eq!(grant(&w.app, &ids[0]).await.status, GrantStatus::Active);
    assert_eq!(grant(&w.app, &ids[1]).await.status, GrantStatus::Ended);
    assert_eq!(grant(&w.app, &ids[2]).await.status, GrantStatus::Ended);
}
