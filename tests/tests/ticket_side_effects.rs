//! The `ticket` provisioner (DESIGN §7) and audit tickets (DESIGN §8), end to end through the router, the
//! service and the real ticket-system clients against wiremock: tickets asking to grant and remove access,
//! failures retried through the durable pipeline, idempotency by marker, audit tickets opened on request,
//! commented on decisions, closed when access ends (closing retried), closed for denied and cancelled
//! requests, failures that never block a request, every ticket and note linking to the grant in the portal,
//! and no secret in any answer or log line.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use wiremock::matchers::{body_partial_json, method, path, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::ports::{Clock, Job, JobKind, SystemClock};
use ticketbound::service::{Settings, Ticketbound};
use ticketbound_tests::{ADMIN, ALICE, APPROVER, call, fast_retry};

const JIRA_TOKEN: &str = "jira-token-s3cr3t-value";
const FS_KEY: &str = "fs-key-s3cr3t-value";
/// The portal's public URL (`PORTAL_URL`), which tickets link to.
const PORTAL: &str = "https://tb.example.com";

/// The grant's page in the portal, as tickets link to it.
fn grant_link(id: &str) -> String {
    format!("{PORTAL}/#/grant/{id}")
}

/// Log lines written while a test runs.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

struct World {
    app: Ticketbound,
    router: Router,
    jira: MockServer,
    fs: MockServer,
    fs_webhook_secret: String,
    logs: Logs,
    answers: Mutex<Vec<String>>,
    _log_guard: tracing::subscriber::DefaultGuard,
    _dir: std::path::PathBuf,
}

/// An app with a Jira Cloud connection `jira-main` and a Freshservice connection `fs-main` on wiremock, the
/// ticket provisioners wired as in production, quick retries, and logs captured.
async fn world() -> World {
    let logs = Logs::default();
    let writer = logs.clone();
    let guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let jira = MockServer::start().await;
    let fs = MockServer::start().await;
    let store = EmbeddedStore::in_memory().unwrap();
    let dir = support::temp_dir("ticket-effects");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = Ticketbound::build(
        ticketbound_tests::ticket_ports(
            Arc::new(store.clone()),
            Arc::new(LocalScheduler::new(store.clone())),
            clock.clone(),
            &dir.join("secrets.json"),
            support::quick_policy(),
        ),
        Settings {
            retry: fast_retry(4),
            notifications: ticketbound::service::NotifySettings {
                portal_url: Some(format!("{PORTAL}/")),
                ..Default::default()
            },
            ..Settings::default()
        },
    );
    let router = ticketbound_tests::local_router(app.clone());
    let mut w = World {
        app,
        router,
        jira,
        fs,
        fs_webhook_secret: String::new(),
        logs,
        answers: Mutex::new(Vec::new()),
        _log_guard: guard,
        _dir: dir,
    };
    let (status, _) = w
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            json!({"id": "jira-main", "kind": "jira_cloud", "base_url": w.jira.uri(), "email": "bot@acme.com", "api_token": JIRA_TOKEN}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, created) = w
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            json!({"id": "fs-main", "kind": "freshservice", "base_url": w.fs.uri(), "api_key": FS_KEY}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    w.fs_webhook_secret = created["webhook_secret"].as_str().unwrap().to_owned();
    // The generated webhook secret is in that one answer by design; keep it out of the secret scan.
    w.answers.lock().unwrap().clear();
    w
}

impl World {
    async fn call(
        &self,
        method: &str,
        path: &str,
        who: (&str, &str),
        body: Value,
    ) -> (StatusCode, Value) {
        let body = (!body.is_null()).then(|| body.to_string());
        let (status, json) = call(&self.router, method, path, who, body.as_deref()).await;
        self.answers.lock().unwrap().push(json.to_string());
        (status, json)
    }

    async fn resource(&self, provisioner: Value) -> (StatusCode, Value) {
        self.call(
            "PUT",
            "/v1/resources/prod-db",
            ADMIN,
            json!({"name": "Production DB", "provisioner": provisioner}),
        )
        .await
    }

    async fn request(&self) -> Value {
        let (status, grant) = self
            .call(
                "POST",
                "/v1/grants",
                ALICE,
                json!({"resource": "prod-db", "reason": "INC-7 <debugging>", "duration": "PT1H"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{grant}");
        grant
    }

    async fn act(&self, id: &str, action: &str, who: (&str, &str)) -> Value {
        let (status, grant) = self
            .call(
                "POST",
                &format!("/v1/grants/{id}/{action}"),
                who,
                Value::Null,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{action}: {grant}");
        grant
    }

    async fn grant(&self, id: &str) -> Value {
        self.call("GET", &format!("/v1/grants/{id}"), ADMIN, Value::Null)
            .await
            .1
    }

    async fn event_kinds(&self, id: &str) -> Vec<String> {
        let (_, events) = self
            .call(
                "GET",
                &format!("/v1/grants/{id}/events"),
                ADMIN,
                Value::Null,
            )
            .await;
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The JSON bodies of the requests a server received for `method` and `path`.
    async fn sent(server: &MockServer, method: &str, path: &str) -> Vec<Value> {
        server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.method.as_str() == method && r.url.path() == path)
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    /// No credential in any answer, event or log line of the test.
    fn assert_no_secret(&self) {
        let logs = self.logs.text();
        assert!(!logs.is_empty(), "the log capture works");
        let answers = self.answers.lock().unwrap().join("\n");
        for secret in [JIRA_TOKEN, FS_KEY, self.fs_webhook_secret.as_str()] {
            assert!(!logs.contains(secret), "a secret was logged");
            assert!(!answers.contains(secret), "a secret was in an answer");
        }
        // Nor the Basic header values built from them.
        for header in [
            support::basic("bot@acme.com", JIRA_TOKEN),
            support::basic(FS_KEY, "X"),
        ] {
            let encoded = header.trim_start_matches("Basic ");
            assert!(!logs.contains(encoded) && !answers.contains(encoded));
        }
    }
}

/// Text of an ADF document.
fn adf_text(doc: &Value) -> String {
    doc["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["content"][0]["text"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn jira_search_finds_nothing(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"issues": [], "isLast": true})),
        )
        .mount(server)
        .await;
}

async fn fs_filter_finds_nothing(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/filter"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"tickets": [], "total": 0})))
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_ticket_provisioner_must_name_a_connection_and_fit_its_kind() {
    let w = world().await;
    for (provisioner, code) in [
        (
            json!({"kind": "ticket", "connection": "nope", "project": "OPS"}),
            "unknown_connection",
        ),
        (
            json!({"kind": "ticket", "connection": "jira-main"}),
            "invalid_provisioner",
        ),
        (
            json!({"kind": "ticket", "connection": "jira-main", "project": "ops"}),
            "invalid_provisioner",
        ),
        (
            json!({"kind": "ticket", "connection": "jira-main", "project": "OPS", "group_id": 4}),
            "invalid_provisioner",
        ),
        (
            json!({"kind": "ticket", "connection": "fs-main", "project": "OPS"}),
            "invalid_provisioner",
        ),
        (
            json!({"kind": "ticket", "connection": "fs-main", "priority": 9}),
            "invalid_provisioner",
        ),
    ] {
        let (status, answer) = w.resource(provisioner.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{provisioner}: {answer}"
        );
        assert_eq!(answer["error"]["code"], code, "{provisioner}");
        let (status, _) = w
            .call("GET", "/v1/resources/prod-db", ADMIN, Value::Null)
            .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "a refused PUT stores nothing"
        );
    }
    let (status, answer) = w
        .resource(json!({"kind": "ticket", "connection": "jira-main", "project": "OPS"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(
        answer["provisioner"],
        json!({"kind": "ticket", "connection": "jira-main", "project": "OPS", "issue_type": "Task"})
    );
    let (status, answer) = w
        .resource(json!({"kind": "ticket", "connection": "fs-main", "group_id": 42}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["provisioner"],
        json!({"kind": "ticket", "connection": "fs-main", "group_id": 42, "priority": 2})
    );
    assert!(
        w.jira.received_requests().await.unwrap().is_empty()
            && w.fs.received_requests().await.unwrap().is_empty()
    );
    w.assert_no_secret();
}

#[tokio::test]
async fn approval_opens_a_jira_ticket_asking_to_grant_and_the_end_one_asking_to_remove() {
    let w = world().await;
    let (status, _) = w
        .resource(json!({"kind": "ticket", "connection": "jira-main", "project": "OPS", "issue_type": "Service Request"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let grant = w.request().await;
    let id = grant["id"].as_str().unwrap();
    jira_search_finds_nothing(&w.jira).await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1", "key": "OPS-1"})))
        .mount(&w.jira)
        .await;

    let approved = w.act(id, "approve", APPROVER).await;
    assert_eq!(approved["provisioning"]["state"], "done", "{approved}");
    let created = World::sent(&w.jira, "POST", "/rest/api/3/issue").await;
    assert_eq!(created.len(), 1);
    let fields = &created[0]["fields"];
    assert_eq!(fields["project"]["key"], "OPS");
    assert_eq!(fields["issuetype"]["name"], "Service Request");
    assert_eq!(
        fields["summary"],
        "Grant access to Production DB for alice@example.com (Ticketbound)"
    );
    let text = adf_text(&fields["description"]);
    for needle in [
        "GRANT alice@example.com access to Production DB",
        &format!("Grant: {id}"),
        "Approved by: bob@example.com",
        "Reason: INC-7 <debugging>",
        approved["expires_at"].as_str().unwrap(),
        &grant_link(id),
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
    let marker = format!("tb-{}-grant", id.to_ascii_lowercase());
    assert_eq!(fields["labels"], json!(["ticketbound", marker]));

    let ended = w.act(id, "revoke", APPROVER).await;
    assert_eq!(ended["deprovisioning"]["state"], "done", "{ended}");
    let created = World::sent(&w.jira, "POST", "/rest/api/3/issue").await;
    assert_eq!(created.len(), 2);
    let fields = &created[1]["fields"];
    assert_eq!(
        fields["summary"],
        "Remove access to Production DB for alice@example.com (Ticketbound)"
    );
    let text = adf_text(&fields["description"]);
    assert!(
        text.contains("REMOVE the access of alice@example.com"),
        "{text}"
    );
    assert!(text.contains("End reason: revoked"), "{text}");
    assert!(text.contains(&grant_link(id)), "{text}");
    assert_eq!(
        fields["labels"][1],
        format!("tb-{}-revoke", id.to_ascii_lowercase())
    );
    w.assert_no_secret();
}

#[tokio::test]
async fn a_failed_provisioning_ticket_is_retried_by_the_pipeline_and_a_found_marker_is_not_opened_twice()
 {
    let w = world().await;
    w.resource(json!({"kind": "ticket", "connection": "fs-main", "group_id": 42, "priority": 3}))
        .await;
    let grant = w.request().await;
    let id = grant["id"].as_str().unwrap();
    fs_filter_finds_nothing(&w.fs).await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&w.fs)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ticket": {"id": 900}})))
        .mount(&w.fs)
        .await;

    let approved = w.act(id, "approve", APPROVER).await;
    assert_eq!(approved["status"], "active");
    assert_eq!(approved["provisioning"]["state"], "pending", "{approved}");
    assert!(
        approved["provisioning"]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{approved}"
    );
    let outcome = w
        .app
        .run_job(&Job::new(JobKind::Provision, id))
        .await
        .unwrap();
    assert_eq!(outcome, ticketbound::service::JobOutcome::Done);
    let grant = w.grant(id).await;
    assert_eq!(grant["provisioning"]["state"], "done", "{grant}");
    assert_eq!(grant["provisioning"]["attempts"], 2);
    let created = World::sent(&w.fs, "POST", "/api/v2/tickets").await;
    assert_eq!(created.len(), 2, "one failed attempt, one ticket");
    assert_eq!(created[1]["group_id"], 42);
    assert_eq!(created[1]["priority"], 3);
    assert_eq!(created[1]["email"], "alice@example.com");
    assert!(
        created[1]["description"]
            .as_str()
            .unwrap()
            .contains("INC-7 &lt;debugging&gt;"),
        "the reason is escaped in HTML"
    );

    // The revoke ticket was opened by an attempt whose answer was lost: its marker finds it.
    w.fs.reset().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/filter"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"tickets": [{"id": 901}], "total": 1})),
        )
        .mount(&w.fs)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&w.fs)
        .await;
    let ended = w.act(id, "revoke", APPROVER).await;
    assert_eq!(ended["deprovisioning"]["state"], "done", "{ended}");
    let searched = w.fs.received_requests().await.unwrap();
    let query = searched[0].url.query().unwrap_or_default().to_owned();
    assert!(
        query.contains(&format!("tb-{}-revoke", id.to_ascii_lowercase())),
        "{query}"
    );
    w.assert_no_secret();
}

/// A ticket system that asks to wait longer than one call may (429 with `Retry-After`) is not asked again before
/// then: the provisioning ticket's next attempt is no sooner than the wait it named, not the engine's own short
/// backoff.
#[tokio::test]
async fn a_rate_limited_provisioning_ticket_is_retried_no_sooner_than_the_ticket_system_asked() {
    let w = world().await;
    w.resource(json!({"kind": "ticket", "connection": "fs-main", "group_id": 42}))
        .await;
    let grant = w.request().await;
    let id = grant["id"].as_str().unwrap();
    fs_filter_finds_nothing(&w.fs).await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "600"))
        .mount(&w.fs)
        .await;

    let before = time::OffsetDateTime::now_utc();
    let approved = w.act(id, "approve", APPROVER).await;
    assert_eq!(approved["status"], "active");
    assert_eq!(approved["provisioning"]["state"], "pending", "{approved}");
    let next = time::OffsetDateTime::parse(
        approved["provisioning"]["next_attempt_at"]
            .as_str()
            .unwrap_or_else(|| panic!("a retry is scheduled: {approved}")),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        next >= before + time::Duration::seconds(595),
        "retried at {next}, before the 600 s Freshservice asked for: {approved}"
    );
    assert_eq!(
        World::sent(&w.fs, "POST", "/api/v2/tickets").await.len(),
        1,
        "one attempt, not retried inside the call"
    );
}

/// Freshservice answers an audit ticket's calls: search, create (id `audit_id`), notes, close.
async fn fs_audit_mocks(server: &MockServer, audit_id: u64) {
    fs_filter_finds_nothing(server).await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ticket": {"id": audit_id}})))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/api/v2/tickets/{audit_id}/notes")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"conversation": {"id": 1}})))
        .mount(server)
        .await;
}

#[tokio::test]
async fn an_audit_ticket_is_opened_on_request_commented_on_approval_and_closed_at_the_end_with_retries()
 {
    let w = world().await;
    let (status, conn) = w
        .call(
            "PATCH",
            "/v1/connections/fs-main",
            ADMIN,
            json!({"audit": {"group_id": 5, "priority": 3}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{conn}");
    assert_eq!(conn["audit"], json!({"group_id": 5, "priority": 3}));
    w.resource(json!({"kind": "none"})).await;
    fs_audit_mocks(&w.fs, 77).await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/77"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&w.fs)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/77"))
        .and(query_param_is_missing("bypass_mandatory"))
        .and(body_partial_json(json!({"status": 5})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ticket": {"id": 77, "status": 5}})),
        )
        .mount(&w.fs)
        .await;
    // Someone closes the audit ticket by hand; Freshservice confirms it is closed.
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/77"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ticket": {"id": 77, "status": 5, "subject": "audit"}})),
        )
        .mount(&w.fs)
        .await;

    let grant = w.request().await;
    let id = grant["id"].as_str().unwrap().to_owned();
    assert_eq!(
        grant["audit_ticket"],
        json!({"connection": "fs-main", "key": "77"}),
        "{grant}"
    );
    let opened = World::sent(&w.fs, "POST", "/api/v2/tickets").await;
    assert_eq!(opened.len(), 1);
    assert_eq!(
        opened[0]["subject"],
        "Access request: alice@example.com to prod-db (Ticketbound)"
    );
    assert_eq!(
        (
            opened[0]["group_id"].as_u64(),
            opened[0]["priority"].as_u64()
        ),
        (Some(5), Some(3))
    );
    assert_eq!(
        opened[0]["tags"][1],
        format!("tb-{}-audit", id.to_ascii_lowercase())
    );

    w.act(&id, "approve", APPROVER).await;
    let notes = World::sent(&w.fs, "POST", "/api/v2/tickets/77/notes").await;
    assert_eq!(notes.len(), 1);
    let note = notes[0]["body"].as_str().unwrap();
    assert!(note.contains("Approved by bob@example.com"), "{note}");
    assert_eq!(notes[0]["private"], true);

    // Closing the audit ticket by hand changes nothing: only bound tickets end grants.
    let hook = Request::builder()
        .method("POST")
        .uri("/webhooks/freshservice/fs-main")
        .header("content-type", "application/json")
        .header("x-ticketbound-secret", &w.fs_webhook_secret)
        .body(Body::from(
            json!({"event": "ticket_updated", "ticket_id": "77", "status": "Closed"}).to_string(),
        ))
        .unwrap();
    let answer = w.router.clone().oneshot(hook).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(w.grant(&id).await["status"], "active");

    let ended = w.act(&id, "revoke", APPROVER).await;
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["deprovisioning"]["state"], "pending", "{ended}");
    let error = ended["deprovisioning"]["last_error"].as_str().unwrap();
    assert!(error.contains("closing audit ticket 77"), "{error}");
    let notes = World::sent(&w.fs, "POST", "/api/v2/tickets/77/notes").await;
    assert!(
        notes[1]["body"]
            .as_str()
            .unwrap()
            .contains("Access ended at"),
        "{notes:?}"
    );

    let outcome = w
        .app
        .run_job(&Job::new(JobKind::Deprovision, &id))
        .await
        .unwrap();
    assert_eq!(outcome, ticketbound::service::JobOutcome::Done);
    let grant = w.grant(&id).await;
    assert_eq!(grant["deprovisioning"]["state"], "done", "{grant}");
    assert_eq!(grant["deprovisioning"]["attempts"], 2);
    assert_eq!(
        World::sent(&w.fs, "PUT", "/api/v2/tickets/77").await.len(),
        2
    );
    let kinds = w.event_kinds(&id).await;
    for kind in [
        "requested",
        "audit_ticket_opened",
        "approved",
        "ended",
        "deprovisioning_retry",
        "deprovisioned",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    w.assert_no_secret();
}

#[tokio::test]
async fn a_jira_audit_ticket_is_closed_through_its_done_transition() {
    let w = world().await;
    let (status, conn) = w
        .call(
            "PATCH",
            "/v1/connections/jira-main",
            ADMIN,
            json!({"audit": {"project": "AUD"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{conn}");
    assert_eq!(
        conn["audit"],
        json!({"project": "AUD", "issue_type": "Task"})
    );
    let (status, refused) = w
        .call(
            "PATCH",
            "/v1/connections/jira-main",
            ADMIN,
            json!({"audit": {"group_id": 3}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused["error"]["code"], "invalid_audit");
    w.resource(json!({"kind": "none"})).await;
    jira_search_finds_nothing(&w.jira).await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "9", "key": "AUD-9"})))
        .mount(&w.jira)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue/AUD-9/comment"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1"})))
        .mount(&w.jira)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/AUD-9"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(support::cloud_issue("AUD-9", "To Do", "new", None)),
        )
        .mount(&w.jira)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/AUD-9/transitions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"transitions": [
            {"id": "11", "name": "Back", "to": {"name": "To Do", "statusCategory": {"key": "new"}}},
            {"id": "41", "name": "Close", "to": {"name": "Closed", "statusCategory": {"key": "done"}}}
        ]})))
        .mount(&w.jira)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue/AUD-9/transitions"))
        .and(body_partial_json(json!({"transition": {"id": "41"}})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&w.jira)
        .await;

    let grant = w.request().await;
    let id = grant["id"].as_str().unwrap().to_owned();
    assert_eq!(grant["audit_ticket"]["key"], "AUD-9");
    let opened = World::sent(&w.jira, "POST", "/rest/api/3/issue").await;
    assert_eq!(opened[0]["fields"]["project"]["key"], "AUD");
    let description = adf_text(&opened[0]["fields"]["description"]);
    assert!(description.contains("closing it by hand does not end the access"));
    assert!(
        description.contains(&format!("Open in Ticketbound: {}", grant_link(&id))),
        "{description}"
    );
    w.act(&id, "approve", APPROVER).await;
    let ended = w.act(&id, "revoke", ALICE).await;
    assert_eq!(ended["deprovisioning"]["state"], "done", "{ended}");
    let comments = World::sent(&w.jira, "POST", "/rest/api/3/issue/AUD-9/comment").await;
    assert_eq!(comments.len(), 2);
    assert!(adf_text(&comments[0]["body"]).starts_with("Approved by bob@example.com"));
    assert!(adf_text(&comments[1]["body"]).contains("by alice@example.com: revoked"));
    for comment in &comments {
        let text = adf_text(&comment["body"]);
        assert!(text.contains(&grant_link(&id)), "{text}");
    }
    w.assert_no_secret();
}

#[tokio::test]
async fn denied_and_cancelled_requests_close_their_audit_tickets() {
    let w = world().await;
    w.call(
        "PATCH",
        "/v1/connections/fs-main",
        ADMIN,
        json!({"audit": {}}),
    )
    .await;
    w.resource(json!({"kind": "none"})).await;
    fs_filter_finds_nothing(&w.fs).await;
    for (n, id) in [(1u32, 80u64), (2, 81)] {
        Mock::given(method("POST"))
            .and(path("/api/v2/tickets"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ticket": {"id": id}})))
            .up_to_n_times(1)
            .with_priority(n as u8)
            .mount(&w.fs)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets/80/notes"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&w.fs)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets/81/notes"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&w.fs)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket": {"status": 5}})))
        .mount(&w.fs)
        .await;

    let denied_id = w.request().await["id"].as_str().unwrap().to_owned();
    let cancelled_id = w.request().await["id"].as_str().unwrap().to_owned();
    let denied = w.act(&denied_id, "deny", APPROVER).await;
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["audit_ticket"]["key"], "80");
    assert_eq!(denied["deprovisioning"]["state"], "done", "{denied}");
    let cancelled = w.act(&cancelled_id, "revoke", ALICE).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["audit_ticket"]["key"], "81");
    assert_eq!(cancelled["deprovisioning"]["state"], "done", "{cancelled}");
    assert_eq!(
        World::sent(&w.fs, "PUT", "/api/v2/tickets/80").await.len(),
        1
    );
    assert_eq!(
        World::sent(&w.fs, "PUT", "/api/v2/tickets/81").await.len(),
        1
    );
    let opened = World::sent(&w.fs, "POST", "/api/v2/tickets").await;
    assert!(
        opened[0]["description"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "<p>Open in Ticketbound: {}</p>",
                grant_link(&denied_id)
            )),
        "{}",
        opened[0]["description"]
    );
    let note = World::sent(&w.fs, "POST", "/api/v2/tickets/80/notes").await;
    assert!(
        note[0]["body"]
            .as_str()
            .unwrap()
            .contains("Denied by bob@example.com")
    );
    assert!(
        note[0]["body"]
            .as_str()
            .unwrap()
            .contains(&grant_link(&denied_id)),
        "{}",
        note[0]["body"]
    );
    let note = World::sent(&w.fs, "POST", "/api/v2/tickets/81/notes").await;
    assert!(
        note[0]["body"]
            .as_str()
            .unwrap()
            .contains("Request cancelled at")
    );
    assert!(note[0]["body"].as_str().unwrap().contains("withdrawn"));
    w.assert_no_secret();
}

#[tokio::test]
async fn an_audit_ticket_that_cannot_be_opened_never_blocks_the_request_and_is_opened_at_the_decision()
 {
    let w = world().await;
    w.call(
        "PATCH",
        "/v1/connections/jira-main",
        ADMIN,
        json!({"audit": {"project": "AUD"}}),
    )
    .await;
    w.resource(json!({"kind": "none"})).await;
    jira_search_finds_nothing(&w.jira).await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"errorMessages": ["Client must be authenticated"]})),
        )
        .up_to_n_times(1)
        .mount(&w.jira)
        .await;

    let grant = w.request().await;
    let id = grant["id"].as_str().unwrap().to_owned();
    assert_eq!(grant["status"], "pending");
    assert_eq!(grant["audit_ticket"], Value::Null);
    assert!(
        w.event_kinds(&id)
            .await
            .contains(&"audit_ticket_failed".to_owned())
    );
    let (_, conn) = w
        .call("GET", "/v1/connections/jira-main", ADMIN, Value::Null)
        .await;
    assert_eq!(conn["status"], "needs_reauthorization");

    // The credentials are fixed; the approval opens the audit ticket and records the decision on it.
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "3", "key": "AUD-3"})))
        .mount(&w.jira)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue/AUD-3/comment"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&w.jira)
        .await;
    let approved = w.act(&id, "approve", APPROVER).await;
    assert_eq!(approved["status"], "active");
    assert_eq!(approved["audit_ticket"]["key"], "AUD-3", "{approved}");
    let (_, conn) = w
        .call("GET", "/v1/connections/jira-main", ADMIN, Value::Null)
        .await;
    assert_eq!(conn["status"], "connected");
    w.assert_no_secret();
}

/// The connection's status as the admin API shows it.
async fn connection_status(w: &World, id: &str) -> Value {
    let (status, conn) = w
        .call("GET", &format!("/v1/connections/{id}"), ADMIN, Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{conn}");
    conn
}

#[tokio::test]
async fn a_jira_transition_the_account_may_not_make_is_reported_on_the_grant_not_as_reauthorization()
 {
    let w = world().await;
    w.call(
        "PATCH",
        "/v1/connections/jira-main",
        ADMIN,
        json!({"audit": {"project": "AUD"}}),
    )
    .await;
    w.resource(json!({"kind": "none"})).await;
    jira_search_finds_nothing(&w.jira).await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "9", "key": "AUD-9"})))
        .mount(&w.jira)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue/AUD-9/comment"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1"})))
        .mount(&w.jira)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/AUD-9"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(support::cloud_issue("AUD-9", "To Do", "new", None)),
        )
        .mount(&w.jira)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/AUD-9/transitions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"transitions": [
            {"id": "41", "name": "Close", "to": {"name": "Closed", "statusCategory": {"key": "done"}}}
        ]})))
        .mount(&w.jira)
        .await;
    // Jira Cloud's answer to a transition the account lacks the Transition Issues permission for.
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue/AUD-9/transitions"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "errorMessages": ["You do not have permission to transition this issue."], "errors": {}
        })))
        .mount(&w.jira)
        .await;

    let grant = w.request().await;
    let id = grant["id"].as_str().unwrap().to_owned();
    w.act(&id, "approve", APPROVER).await;
    let by_alice = w.act(&id, "revoke", ALICE).await;
    // Alice reads that it failed; what to grant the account is for the admin who reads the grant.
    assert_eq!(
        by_alice["deprovisioning"]["last_error"],
        ticketbound::service::END_SYSTEM_ERROR
    );
    let ended = w.grant(&id).await;

    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["deprovisioning"]["state"], "pending", "{ended}");
    let error = ended["deprovisioning"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("may not close AUD-9")
            && error.contains("Transition Issues permission in project AUD")
            && error.contains("You do not have permission to transition this issue."),
        "{error}"
    );
    let conn = connection_status(&w, "jira-main").await;
    assert_eq!(conn["status"], "connected", "{conn}");
    w.assert_no_secret();
}

#[tokio::test]
async fn bypass_mandatory_refused_to_a_non_admin_key_is_reported_on_the_grant_not_as_reauthorization()
 {
    let w = world().await;
    w.call(
        "PATCH",
        "/v1/connections/fs-main",
        ADMIN,
        json!({"audit": {"group_id": 5}}),
    )
    .await;
    w.resource(json!({"kind": "none"})).await;
    fs_audit_mocks(&w.fs, 78).await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/78"))
        .and(query_param_is_missing("bypass_mandatory"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "description": "Validation failed",
            "errors": [{"field": "category", "message": "It should not be blank as this is a mandatory field", "code": "invalid_value"}]
        })))
        .expect(1)
        .mount(&w.fs)
        .await;
    // Freshservice lets only an admin's API key use bypass_mandatory.
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/78"))
        .and(wiremock::matchers::query_param("bypass_mandatory", "true"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "code": "access_denied", "message": "You are not authorized to perform this action."
        })))
        .expect(1)
        .mount(&w.fs)
        .await;

    let grant = w.request().await;
    let id = grant["id"].as_str().unwrap().to_owned();
    w.act(&id, "approve", APPROVER).await;
    let ended = w.act(&id, "revoke", APPROVER).await;

    assert_eq!(ended["deprovisioning"]["state"], "pending", "{ended}");
    let error = ended["deprovisioning"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("closing audit ticket 78")
            && error.contains("only an admin's API key may skip them with bypass_mandatory")
            && error.contains("It should not be blank"),
        "{error}"
    );
    let conn = connection_status(&w, "fs-main").await;
    assert_eq!(conn["status"], "connected", "{conn}");
    w.assert_no_secret();
}
