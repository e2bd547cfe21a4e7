//! Test support: stores and apps wired to real adapters (SQLite, DynamoDB and EventBridge Scheduler on moto,
//! HTTP provisioners against wiremock), a clock tests can move, and a small HTTP client for the router.
//!
//! Every answer a test receives through that client ([`call`], [`send`], [`TestApp::call`]) is checked against
//! `docs/openapi.yaml` ([`openapi::conform`]): the description is what the tests hold the API to.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use time::OffsetDateTime;
use tower::ServiceExt;

use ticketbound::adapters::dynamodb::DynamoStore;
use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::no_ticket_systems::NoTicketSystems;
use ticketbound::adapters::provisioner::{DEFAULT_TIMEOUT, HttpProvisioners};
use ticketbound::adapters::secrets::LocalSecretStore;
use ticketbound::adapters::ticket_http::HttpPolicy;
use ticketbound::adapters::ticket_systems::HttpTicketSystems;
use ticketbound::domain::identity::RoleGroups;
use ticketbound::domain::{Provisioner, Resource};
use ticketbound::http::local_router as full_local_router;
use ticketbound::http::{AppState, IdentitySource, api_router};
use ticketbound::ports::{Clock, ConnectionStore, GrantStore, Scheduler, SystemClock};
use ticketbound::service::{Ports, RetryPolicy, Settings, Ticketbound};

pub const ADMIN: (&str, &str) = ("admin@example.com", "ticketbound-admins");
pub const APPROVER: (&str, &str) = ("bob@example.com", "ticketbound-approvers");
pub const APPROVER2: (&str, &str) = ("carol@example.com", "ticketbound-approvers");
pub const ALICE: (&str, &str) = ("alice@example.com", "");
pub const MALLORY: (&str, &str) = ("mallory@example.com", "");
pub const AUDITOR: (&str, &str) = ("ada@example.com", "ticketbound-auditors");

/// The SDK configuration for the moto server started by `infra/test.sh`.
///
/// # Panics
/// When the tests were not started through `bash infra/test.sh`: an AWS adapter test must never pass without
/// having talked to the wire protocol.
pub async fn moto_config() -> aws_config::SdkConfig {
    assert!(
        std::env::var("TICKETBOUND_MOTO").is_ok() && std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "this test needs the moto server: run the tests with `bash infra/test.sh`"
    );
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        ticketbound::domain::ids::new_ulid(OffsetDateTime::now_utc()).to_ascii_lowercase()
    )
}

/// A fresh DynamoDB table on moto, with the production layout.
pub async fn dynamo_store() -> DynamoStore {
    let config = moto_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = unique("grants");
    DynamoStore::create_table(&client, &table)
        .await
        .expect("create table on moto");
    DynamoStore::new(client, table)
}

/// A fresh in-memory embedded store.
pub fn embedded_store() -> EmbeddedStore {
    EmbeddedStore::in_memory().expect("in-memory SQLite")
}

/// A clock that stands still until moved.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    pub fn at(now: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(now)))
    }
    pub fn now_system() -> Self {
        Self::at(SystemClock.now())
    }
    pub fn set(&self, now: OffsetDateTime) {
        *self.0.lock().unwrap() = now;
    }
    pub fn advance(&self, by: time::Duration) {
        *self.0.lock().unwrap() += by;
    }
    /// The time now (without importing the `Clock` trait).
    pub fn now_offset(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

/// Retries fast enough for tests.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        base: time::Duration::milliseconds(50),
        cap: time::Duration::milliseconds(200),
        max_attempts,
        lease: time::Duration::seconds(5),
    }
}

/// What an app is built from: the store (grants and connections), the scheduler and the clock a test picks;
/// the other ports come from [`test_ports`].
pub struct AppParts<S> {
    pub store: Arc<S>,
    pub scheduler: Arc<dyn Scheduler>,
    pub clock: Arc<dyn Clock>,
    pub retry: RetryPolicy,
    pub provisioner_timeout: StdDuration,
}

/// The ports of a test app with no ticket systems: `store` for grants and connections, HTTP provisioners,
/// [`NoTicketSystems`], and a secret file of its own in the temporary directory (no connection can be made
/// without a ticket system; the file and its 0700 folder are created when a webhook provisioner's secret is
/// first kept). A test swaps a field with struct-update syntax.
pub fn test_ports<S>(
    store: Arc<S>,
    scheduler: Arc<dyn Scheduler>,
    clock: Arc<dyn Clock>,
    provisioner_timeout: StdDuration,
) -> Ports
where
    S: GrantStore + ConnectionStore + 'static,
{
    let provisioners =
        HttpProvisioners::new(clock.clone(), provisioner_timeout).expect("http client");
    let unused = std::env::temp_dir()
        .join(unique("tb-no-secrets"))
        .join("secrets.json");
    Ports {
        grants: store.clone(),
        connections: store,
        scheduler,
        secrets: Arc::new(LocalSecretStore::open(&unused).expect("secret file path")),
        ticket_systems: Arc::new(NoTicketSystems),
        provisioners: Arc::new(provisioners),
        clock,
        // No channels: a deployment that sends no notification (tests/tests/notifications*.rs swap it).
        notifier: Arc::new(ticketbound::adapters::notify::NotifyChannels::none()),
    }
}

/// The application through the production composition root ([`Ticketbound::build`]).
pub fn build_app<S>(parts: AppParts<S>) -> Ticketbound
where
    S: GrantStore + ConnectionStore + 'static,
{
    Ticketbound::build(
        test_ports(
            parts.store,
            parts.scheduler,
            parts.clock,
            parts.provisioner_timeout,
        ),
        Settings {
            retry: parts.retry,
            ..Settings::default()
        },
    )
}

/// The usual test app: in-memory SQLite, the local scheduler (not started: schedules are stored, not fired),
/// the system clock.
pub fn local_test_app() -> (Ticketbound, EmbeddedStore, LocalScheduler) {
    let store = embedded_store();
    let scheduler = LocalScheduler::new(store.clone());
    let app = build_app(AppParts {
        store: Arc::new(store.clone()),
        scheduler: Arc::new(scheduler.clone()),
        clock: Arc::new(SystemClock),
        retry: fast_retry(4),
        provisioner_timeout: StdDuration::from_secs(2),
    });
    (app, store, scheduler)
}

/// Everything the local server serves (portal API and webhooks), trusting identity headers as it does.
pub fn local_router(app: Ticketbound) -> Router {
    full_local_router(AppState {
        app,
        identity: IdentitySource::TrustedHeaders,
        roles: RoleGroups::default(),
    })
}

/// The portal router reading JWT claims, as `ticketbound-api` does on Lambda.
pub fn lambda_router(app: Ticketbound) -> Router {
    api_router(AppState {
        app,
        identity: IdentitySource::JwtClaims {
            email_claim: "email".into(),
            groups_claim: "groups".into(),
        },
        roles: RoleGroups::default(),
    })
}

/// Sends one request through the router as `who` (`(email, groups)`; an empty email sends no identity).
pub async fn call(
    router: &Router,
    method: &str,
    path: &str,
    who: (&str, &str),
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if !who.0.is_empty() {
        request = request.header("x-ticketbound-user", who.0);
    }
    if !who.1.is_empty() {
        request = request.header("x-ticketbound-groups", who.1);
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Body::from(body.unwrap_or_default().to_owned()))
        .expect("request");
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("router is infallible");
    let status = response.status();
    let content_type = content_type_of(&response);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    openapi::conform(method, path, status, content_type.as_deref(), &bytes);
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, json)
}

fn content_type_of(response: &axum::response::Response) -> Option<String> {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Defines a resource whose provisioner is a signed webhook to `url`.
pub async fn define_webhook_resource(router: &Router, id: &str, url: &str) {
    let body = serde_json::json!({
        "name": format!("Resource {id}"),
        "provisioner": {"kind": "webhook", "url": url, "secret": "provisioner-secret-0123456789"},
    });
    let (status, json) = call(
        router,
        "PUT",
        &format!("/v1/resources/{id}"),
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
}

/// Requests `resource` as `who` for `duration`; returns the grant id.
pub async fn request_grant(
    router: &Router,
    who: (&str, &str),
    resource: &str,
    duration: &str,
) -> String {
    let body = serde_json::json!({"resource": resource, "reason": "INC-7 debugging", "duration": duration});
    let (status, json) = call(router, "POST", "/v1/grants", who, Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    json["id"].as_str().expect("id").to_owned()
}

/// A provisioner endpoint: a wiremock server that answers 200 to every POST.
pub async fn provisioner_ok() -> wiremock::MockServer {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

/// The `action`s ("grant"/"revoke") a provisioner endpoint received, in order.
pub async fn provisioner_actions(server: &wiremock::MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter_map(|v| v["action"].as_str().map(str::to_owned))
        .collect()
}

/// Waits (bounded) until `check` holds, polling every 20 ms; returns whether it did.
pub async fn eventually<F, Fut>(timeout: StdDuration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

/// An EventBridge Scheduler adapter on moto with its own schedule group; also returns the raw client and the
/// group name so tests can read schedules back.
pub async fn eventbridge_scheduler() -> (
    ticketbound::adapters::scheduler::EventBridgeScheduler,
    aws_sdk_scheduler::Client,
    String,
) {
    use ticketbound::adapters::scheduler::{EventBridgeScheduler, EventBridgeSettings};
    let config = moto_config().await;
    let client = aws_sdk_scheduler::Client::new(&config);
    let group = unique("tb");
    client
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .expect("create schedule group on moto");
    let settings = EventBridgeSettings {
        group: group.clone(),
        target_arn: EXPIRY_ARN.into(),
        role_arn: SCHEDULER_ROLE_ARN.into(),
        dlq_arn: DLQ_ARN.into(),
    };
    (
        EventBridgeScheduler::new(client.clone(), settings),
        client,
        group,
    )
}

pub const EXPIRY_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:ticketbound-expiry";
pub const SCHEDULER_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/ticketbound-scheduler";
pub const DLQ_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:ticketbound-schedule-dlq";

/// The names of the schedules in a group.
pub async fn schedule_names(client: &aws_sdk_scheduler::Client, group: &str) -> Vec<String> {
    let out = client
        .list_schedules()
        .group_name(group)
        .send()
        .await
        .expect("list schedules");
    let mut names: Vec<String> = out
        .schedules()
        .iter()
        .filter_map(|s| s.name().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// The app as the Lambda functions build it: DynamoDB and EventBridge Scheduler on moto, with `clock`.
pub async fn aws_test_app(
    clock: ManualClock,
    retry: RetryPolicy,
) -> (Ticketbound, aws_sdk_scheduler::Client, String) {
    let (scheduler, client, group) = eventbridge_scheduler().await;
    let app = build_app(AppParts {
        store: Arc::new(dynamo_store().await),
        scheduler: Arc::new(scheduler),
        clock: Arc::new(clock),
        retry,
        provisioner_timeout: StdDuration::from_secs(2),
    });
    (app, client, group)
}

/// Stores `n` active grants bound to `ticket` directly (as if requested with a checked ticket and approved), one
/// requester each so rule 8 skips no revocation. Returns their ids.
pub async fn seed_bound_active_grants(
    app: &Ticketbound,
    ticket: &ticketbound::domain::TicketRef,
    resource: &str,
    n: usize,
) -> Vec<String> {
    use ticketbound::domain::{AuditEvent, AuditKind, Grant, GrantDuration};
    let now = app.clock().now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let grant = Grant::request(
            ticketbound::domain::ids::new_ulid(now),
            format!("engineer{i}@example.com"),
            resource.to_owned(),
            "bound to a ticket".into(),
            GrantDuration::Indefinite,
            Some(ticket.clone()),
            now,
        );
        app.store()
            .insert_grant(
                &grant,
                &AuditEvent::of(
                    &grant,
                    AuditKind::Requested,
                    Some(&grant.requester),
                    now,
                    Value::Null,
                ),
            )
            .await
            .unwrap();
        let active = grant.approve(APPROVER.0, now).unwrap();
        let event = AuditEvent::of(
            &active,
            AuditKind::Approved,
            Some(APPROVER.0),
            now,
            Value::Null,
        );
        app.store()
            .update_grant(&active, grant.expected(), Some(&event))
            .await
            .unwrap();
        ids.push(grant.id);
    }
    ids
}

/// Short limits, so timeouts and retries take milliseconds.
pub fn quick_policy() -> HttpPolicy {
    HttpPolicy {
        timeout: StdDuration::from_millis(400),
        max_retries: 2,
        max_wait: StdDuration::from_secs(2),
        backoff_base: StdDuration::from_millis(10),
        budget: StdDuration::from_secs(5),
    }
}

/// One test's application over the embedded store, a secret file of its own and real ticket-system clients
/// with `policy` (the connection tests' `spawn_app`), served as the local server serves it (the portal API and
/// the webhook routes).
pub struct TestApp {
    pub router: Router,
    pub store: EmbeddedStore,
    pub dir: PathBuf,
    /// The application behind the router, for what does not come through HTTP (scheduled jobs).
    pub app: Ticketbound,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tb-{label}-{}",
        ticketbound::domain::ids::new_secret()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub async fn spawn_app(policy: HttpPolicy) -> TestApp {
    let store = EmbeddedStore::in_memory().expect("in-memory store");
    spawn_app_with(store, temp_dir("conn"), policy).await
}

/// The same application with its store in a file under its temporary directory, as the local server keeps it.
pub async fn spawn_app_on_disk(policy: HttpPolicy) -> TestApp {
    let dir = temp_dir("disk");
    let store = EmbeddedStore::open(&dir.join("ticketbound.db")).expect("store file");
    spawn_app_with(store, dir, policy).await
}

async fn spawn_app_with(store: EmbeddedStore, dir: PathBuf, policy: HttpPolicy) -> TestApp {
    let secrets = LocalSecretStore::open(&dir.join("secrets.json")).expect("secret file");
    let store_arc = Arc::new(store.clone());
    let ports = Ports {
        secrets: Arc::new(secrets),
        ticket_systems: Arc::new(HttpTicketSystems::new(policy).expect("http client")),
        ..test_ports(
            store_arc,
            Arc::new(LocalScheduler::new(store.clone())),
            Arc::new(SystemClock),
            DEFAULT_TIMEOUT,
        )
    };
    let app = Ticketbound::build(ports, Settings::default());
    store
        .put_resource(&Resource {
            id: "prod-db".into(),
            name: "Production database".into(),
            description: String::new(),
            max_duration: None,
            require_ticket: false,
            provisioner: Provisioner::None,
            policy: Default::default(),
        })
        .await
        .expect("resource");
    let router = local_router(app.clone());
    TestApp {
        router,
        store,
        dir,
        app,
    }
}

/// An answer: status, JSON body (Null when empty) and the raw text.
pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
    pub text: String,
}

impl TestApp {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        who: (&str, &str),
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("x-ticketbound-user", who.0)
            .header("x-ticketbound-groups", who.1);
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("infallible router");
        let status = response.status();
        let content_type = content_type_of(&response);
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        openapi::conform(method, path, status, content_type.as_deref(), &bytes);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, json, text }
    }
}

/// Tests that need moto fail loudly without it: a test that silently passes proves nothing.
pub fn require_moto() {
    if std::env::var("TICKETBOUND_MOTO").is_err() || std::env::var("AWS_ENDPOINT_URL").is_err() {
        panic!(
            "this test needs the moto server: run the suite with `bash infra/test.sh` (it starts moto and sets AWS_ENDPOINT_URL and TICKETBOUND_MOTO)"
        );
    }
}

pub async fn aws() -> aws_config::SdkConfig {
    require_moto();
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The ports of an app with real ticket-system clients (`policy`) and connection secrets in the file
/// `secrets`, over `store` for grants and connections.
pub fn ticket_ports<S>(
    store: Arc<S>,
    scheduler: Arc<dyn Scheduler>,
    clock: Arc<dyn Clock>,
    secrets: &std::path::Path,
    policy: HttpPolicy,
) -> Ports
where
    S: GrantStore + ConnectionStore + 'static,
{
    Ports {
        secrets: Arc::new(LocalSecretStore::open(secrets).expect("secret file")),
        ticket_systems: Arc::new(HttpTicketSystems::new(policy).expect("http client")),
        ..test_ports(store, scheduler, clock, StdDuration::from_secs(2))
    }
}

/// Jira Cloud's answers, shaped as its REST API gives them, for the fakes of the tests.
pub mod jira_cloud {
    use serde_json::{Value, json};

    /// A stable numeric issue id per key, as Jira gives every issue one (distinct keys, distinct ids).
    pub fn issue_id(key: &str) -> String {
        let hash = key
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        (10_000 + hash % 900_000).to_string()
    }

    /// An issue as `/rest/api/3/issue/{key}` answers it.
    pub fn issue(key: &str, status: &str, category: &str, assignee: Option<Value>) -> Value {
        let id = issue_id(key);
        json!({
            "id": id,
            "key": key,
            "self": format!("https://acme.atlassian.net/rest/api/3/issue/{id}"),
            "fields": {
                "summary": format!("Summary of {key}"),
                "assignee": assignee,
                "status": {
                    "name": status, "id": "3",
                    "statusCategory": {"id": 4, "key": category, "colorName": "yellow", "name": "Localised name"}
                }
            }
        })
    }

    /// A user as `/rest/api/3/user/search` lists them (the e-mail only when it is visible).
    pub fn user(account: &str, email: Option<&str>) -> Value {
        let mut user = json!({
            "accountId": account, "accountType": "atlassian", "displayName": format!("User {account}"), "active": true
        });
        if let Some(e) = email {
            user["emailAddress"] = Value::String(e.to_owned());
        }
        user
    }
}

/// An app whose requests bind to a Jira Cloud on wiremock: SEC-42 and SEC-43 open and assigned to Alice (found
/// by her e-mail), the resource `prod-db` provisioned by a webhook on wiremock, connection secrets in a file of
/// its own, over the embedded store. The deletion and webhook tests start from it and add their connections.
pub struct JiraStack {
    pub app: Ticketbound,
    pub router: Router,
    pub store: EmbeddedStore,
    /// The Jira Cloud API.
    pub jira: wiremock::MockServer,
    pub provisioner: wiremock::MockServer,
}

impl JiraStack {
    /// Starts the fakes and the app; `label` names its temporary folder.
    pub async fn start(label: &str) -> Self {
        use wiremock::matchers::path;
        use wiremock::{Mock, MockServer, ResponseTemplate};

        let jira = MockServer::start().await;
        for key in ["SEC-42", "SEC-43"] {
            let assignee = jira_cloud::user("acc-alice", Some(ALICE.0));
            let issue = jira_cloud::issue(key, "In Progress", "indeterminate", Some(assignee));
            Mock::given(path(format!("/rest/api/3/issue/{key}")))
                .respond_with(ResponseTemplate::new(200).set_body_json(issue))
                .mount(&jira)
                .await;
        }
        Mock::given(path("/rest/api/3/user/search"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
                jira_cloud::user("acc-alice", Some(ALICE.0))
            ])))
            .mount(&jira)
            .await;
        let store = EmbeddedStore::in_memory().expect("in-memory store");
        let app = Ticketbound::build(
            ticket_ports(
                Arc::new(store.clone()),
                Arc::new(LocalScheduler::new(store.clone())),
                Arc::new(SystemClock),
                &temp_dir(label).join("secrets.json"),
                quick_policy(),
            ),
            Settings::default(),
        );
        let router = local_router(app.clone());
        let provisioner = provisioner_ok().await;
        define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;
        Self {
            app,
            router,
            store,
            jira,
            provisioner,
        }
    }

    /// Creates the Jira Cloud connection `jira-main` on the fake, with `extra` settings on top of its
    /// credentials; its webhook secret.
    pub async fn create_jira_main(&self, extra: Value) -> String {
        let mut body = serde_json::json!({"id": "jira-main", "kind": "jira_cloud", "base_url": self.jira.uri(), "email": "bot@acme.com", "api_token": "jira-token-1"});
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        let (status, created) = call(
            &self.router,
            "POST",
            "/v1/connections",
            ADMIN,
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["webhook_secret"]
            .as_str()
            .expect("a new connection's webhook secret, shown once")
            .to_owned()
    }

    /// Alice requests `prod-db` for good, bound to `key` in jira-main (checked against the fake); approved by
    /// the approver unless `pending`. Its id.
    pub async fn bound_grant(&self, key: &str, pending: bool) -> String {
        let body = serde_json::json!({"resource": "prod-db", "reason": "bound", "duration": "indefinite", "ticket": {"connection": "jira-main", "key": key}});
        let (status, grant) = call(
            &self.router,
            "POST",
            "/v1/grants",
            ALICE,
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{grant}");
        let id = grant["id"].as_str().expect("a grant id").to_owned();
        if !pending {
            let (status, approved) = call(
                &self.router,
                "POST",
                &format!("/v1/grants/{id}/approve"),
                APPROVER,
                None,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{approved}");
        }
        id
    }

    /// The grant as stored.
    pub async fn grant(&self, id: &str) -> Value {
        let grant = self.store.get_grant(id).await.unwrap().expect("the grant");
        serde_json::to_value(grant).expect("a grant is JSON")
    }
}

/// An answer with the entity tag it carried (the resource catalog's conditional requests).
pub struct Reply {
    pub status: StatusCode,
    /// The `ETag` header.
    pub etag: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The JSON body; `Null` when empty (or not JSON).
    pub json: Value,
    /// The body as text.
    pub text: String,
}

/// Sends one request through the router as `who` with extra `headers`, the body sent as it is given.
pub async fn send(
    router: &Router,
    method: &str,
    path: &str,
    who: (&str, &str),
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("x-ticketbound-user", who.0)
        .header("x-ticketbound-groups", who.1);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .clone()
        .oneshot(
            request
                .body(Body::from(body.unwrap_or_default().to_owned()))
                .expect("request"),
        )
        .await
        .expect("router is infallible");
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = content_type_of(&response);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    openapi::conform(method, path, status, content_type.as_deref(), &bytes);
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Reply {
        status,
        etag,
        content_type,
        json,
        text,
    }
}

/// Typed calls of `/v1/resources/{id}` with their conditional headers.
pub mod resources {
    use super::{ADMIN, Reply, Router, send};
    use serde_json::Value;

    /// `GET`, with `If-None-Match` when given.
    pub async fn get(router: &Router, id: &str, if_none_match: Option<&str>) -> Reply {
        let headers: Vec<_> = if_none_match
            .map(|t| ("if-none-match", t))
            .into_iter()
            .collect();
        send(router, "GET", &path(id), ADMIN, &headers, None).await
    }

    /// `GET /v1/resources` (the first page).
    pub async fn list(router: &Router) -> Reply {
        send(router, "GET", "/v1/resources", ADMIN, &[], None).await
    }

    /// `PUT` as the admin, with `If-Match` when given.
    pub async fn put(router: &Router, id: &str, body: &Value, if_match: Option<&str>) -> Reply {
        write(router, "PUT", id, "application/json", body, if_match).await
    }

    /// `PATCH` as the admin with a JSON Merge Patch, with `If-Match` when given.
    pub async fn patch(router: &Router, id: &str, patch: &Value, if_match: Option<&str>) -> Reply {
        write(
            router,
            "PATCH",
            id,
            "application/merge-patch+json",
            patch,
            if_match,
        )
        .await
    }

    /// `DELETE` as the admin, with `If-Match` when given.
    pub async fn delete(router: &Router, id: &str, if_match: Option<&str>) -> Reply {
        let headers: Vec<_> = if_match.map(|t| ("if-match", t)).into_iter().collect();
        send(router, "DELETE", &path(id), ADMIN, &headers, None).await
    }

    async fn write(
        router: &Router,
        method: &str,
        id: &str,
        media_type: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Reply {
        let mut headers = vec![("content-type", media_type)];
        if let Some(tag) = if_match {
            headers.push(("if-match", tag));
        }
        send(
            router,
            method,
            &path(id),
            ADMIN,
            &headers,
            Some(&body.to_string()),
        )
        .await
    }

    fn path(id: &str) -> String {
        format!("/v1/resources/{id}")
    }
}

/// Typed calls of `/v1/connections` with their conditional headers, as the admin.
pub mod connections {
    use super::{ADMIN, Reply, Router, send};
    use serde_json::Value;

    /// `POST /v1/connections`.
    pub async fn create(router: &Router, body: &Value) -> Reply {
        let headers = [("content-type", "application/json")];
        send(
            router,
            "POST",
            "/v1/connections",
            ADMIN,
            &headers,
            Some(&body.to_string()),
        )
        .await
    }

    /// `GET /v1/connections/{id}`.
    pub async fn get(router: &Router, id: &str) -> Reply {
        send(router, "GET", &path(id), ADMIN, &[], None).await
    }

    /// `GET /v1/connections/{id}` with `If-None-Match` as given (a tag, a list, `*`).
    pub async fn get_if_none_match(router: &Router, id: &str, if_none_match: &str) -> Reply {
        let headers = [("if-none-match", if_none_match)];
        send(router, "GET", &path(id), ADMIN, &headers, None).await
    }

    /// `GET /v1/connections` (the first page).
    pub async fn list(router: &Router) -> Reply {
        send(router, "GET", "/v1/connections", ADMIN, &[], None).await
    }

    /// `PATCH`, with `If-Match` when given.
    pub async fn patch(router: &Router, id: &str, body: &Value, if_match: Option<&str>) -> Reply {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(tag) = if_match {
            headers.push(("if-match", tag));
        }
        send(
            router,
            "PATCH",
            &path(id),
            ADMIN,
            &headers,
            Some(&body.to_string()),
        )
        .await
    }

    /// `DELETE`, with `If-Match` when given.
    pub async fn delete(router: &Router, id: &str, if_match: Option<&str>) -> Reply {
        let headers: Vec<_> = if_match.map(|t| ("if-match", t)).into_iter().collect();
        send(router, "DELETE", &path(id), ADMIN, &headers, None).await
    }

    fn path(id: &str) -> String {
        format!("/v1/connections/{id}")
    }
}

/// Typed calls of the grant routes that take more than an id: decisions with a comment, the list's filters,
/// the CSV export, the bound ticket, and the connection directory.
pub mod grants {
    use super::{Reply, Router, send};
    use serde_json::Value;

    /// `POST /v1/grants` as `who` with `body` as given.
    pub async fn request(router: &Router, who: (&str, &str), body: &Value) -> Reply {
        json_post(router, "/v1/grants", who, Some(body)).await
    }

    /// `POST /v1/grants/{id}/{verb}` (`approve`, `deny`, `revoke`) as `who`, with `{"comment": ...}` when given.
    pub async fn decide(
        router: &Router,
        who: (&str, &str),
        id: &str,
        verb: &str,
        comment: Option<&str>,
    ) -> Reply {
        let body = comment.map(|c| serde_json::json!({"comment": c}));
        json_post(
            router,
            &format!("/v1/grants/{id}/{verb}"),
            who,
            body.as_ref(),
        )
        .await
    }

    /// `GET /v1/grants/{id}` as `who`.
    pub async fn get(router: &Router, who: (&str, &str), id: &str) -> Reply {
        send(router, "GET", &format!("/v1/grants/{id}"), who, &[], None).await
    }

    /// `GET /v1/grants?<query>` as `who` (`query` already URL-encoded, without `?`).
    pub async fn list(router: &Router, who: (&str, &str), query: &str) -> Reply {
        send(
            router,
            "GET",
            &format!("/v1/grants?{query}"),
            who,
            &[],
            None,
        )
        .await
    }

    /// `GET /v1/grants/export.csv?<query>` as `who`.
    pub async fn export(router: &Router, who: (&str, &str), query: &str) -> Reply {
        let path = format!("/v1/grants/export.csv?{query}");
        send(router, "GET", &path, who, &[], None).await
    }

    /// `GET /v1/grants/{id}/ticket` as `who`.
    pub async fn ticket(router: &Router, who: (&str, &str), id: &str) -> Reply {
        send(
            router,
            "GET",
            &format!("/v1/grants/{id}/ticket"),
            who,
            &[],
            None,
        )
        .await
    }

    /// `GET /v1/grants/{id}/events` as `who`.
    pub async fn events(router: &Router, who: (&str, &str), id: &str) -> Reply {
        send(
            router,
            "GET",
            &format!("/v1/grants/{id}/events"),
            who,
            &[],
            None,
        )
        .await
    }

    /// `GET /v1/connection-directory` as `who`.
    pub async fn directory(router: &Router, who: (&str, &str)) -> Reply {
        send(router, "GET", "/v1/connection-directory", who, &[], None).await
    }

    async fn json_post(
        router: &Router,
        path: &str,
        who: (&str, &str),
        body: Option<&Value>,
    ) -> Reply {
        let text = body.map(Value::to_string);
        let headers: &[(&str, &str)] = if text.is_some() {
            &[("content-type", "application/json")]
        } else {
            &[]
        };
        send(router, "POST", path, who, headers, text.as_deref()).await
    }
}

/// `docs/openapi.yaml` as the judge of every answer the test client receives.
/// Slack's side of the Slack app: its interactions as Slack posts them (`tests/tests/slack.rs`).
pub mod slack {
    use super::{Body, BodyExt, Reply, Request, Router, ServiceExt, content_type_of, openapi};

    /// `POST /slack/interactions` as Slack sends it: a form body, Slack's signature headers (when given), no
    /// identity header of ours.
    pub async fn interact(
        router: &Router,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &str,
    ) -> Reply {
        let path = ticketbound::http::slack::INTERACTIONS_ROUTE;
        let mut request = Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(ts) = timestamp {
            request = request.header("x-slack-request-timestamp", ts);
        }
        if let Some(sig) = signature {
            request = request.header("x-slack-signature", sig);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::from(body.to_owned())).expect("request"))
            .await
            .expect("router is infallible");
        let status = response.status();
        let content_type = content_type_of(&response);
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        openapi::conform("POST", path, status, content_type.as_deref(), &bytes);
        Reply {
            status,
            etag: None,
            json: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            text: String::from_utf8_lossy(&bytes).into_owned(),
            content_type,
        }
    }
}

pub mod openapi {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};

    use axum::http::StatusCode;
    use serde_json::Value;

    /// The description, as JSON.
    pub fn spec() -> &'static Value {
        static SPEC: OnceLock<Value> = OnceLock::new();
        SPEC.get_or_init(|| {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
            let text = std::fs::read_to_string(path).expect("docs/openapi.yaml");
            serde_yaml::from_str(&text).expect("docs/openapi.yaml is YAML")
        })
    }

    /// Panics, naming the route, the status and what is wrong, unless the answer `method path → status` with
    /// `body` is one the description allows: the operation (matched by method and path template) lists the
    /// status (or a `default`), and a JSON body validates against that response's schema (its `$ref`s resolved
    /// in `components`). Paths and methods the description does not have (the webhooks, the portal page, a
    /// test's deliberately unknown route) are not checked here; `tests/tests/openapi_consistency.rs` compares
    /// the routes themselves.
    pub fn conform(
        method: &str,
        path: &str,
        status: StatusCode,
        content_type: Option<&str>,
        body: &[u8],
    ) {
        if let Err(why) = check(method, path, status, content_type, body) {
            panic!(
                "{method} {path} answered {status}, which docs/openapi.yaml does not describe: {why}\nbody: {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    fn check(
        method: &str,
        path: &str,
        status: StatusCode,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), String> {
        let spec = spec();
        let path = path.split('?').next().unwrap_or_default();
        let Some(template) = template_of(spec, path) else {
            return Ok(());
        };
        let method = method.to_ascii_lowercase();
        let operation = format!("/paths/{}/{method}", escape(&template));
        if spec.pointer(&operation).is_none() {
            return Ok(());
        }
        let code = status.as_u16().to_string();
        let mut response = format!("{operation}/responses/{code}");
        if spec.pointer(&response).is_none() {
            response = format!("{operation}/responses/default");
        }
        let mut found = spec
            .pointer(&response)
            .ok_or_else(|| format!("{template} {method} lists no {code} and no default"))?;
        while let Some(target) = found.get("$ref").and_then(Value::as_str) {
            response = target.trim_start_matches('#').to_owned();
            found = spec
                .pointer(&response)
                .ok_or_else(|| format!("unresolved $ref {target}"))?;
        }
        let Some(content) = found.get("content").and_then(Value::as_object) else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!("{response} describes no body, yet one came"))
            };
        };
        let media = content_type
            .and_then(|t| t.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        if media != "application/json" {
            return if content.contains_key(media) {
                Ok(())
            } else {
                Err(format!(
                    "{response} has no `{media}` content (it has {:?})",
                    content.keys().collect::<Vec<_>>()
                ))
            };
        }
        let pointer = format!("{response}/content/application~1json/schema");
        if spec.pointer(&pointer).is_none() {
            return Err(format!("{response} has no application/json schema"));
        }
        let instance: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON ({e})"))?;
        let validator = validator(&pointer)?;
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("at `{}`: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("against {pointer}: {}", errors.join("; ")))
        }
    }

    /// The description's path template for `path` (`/v1/grants/{id}` for `/v1/grants/01J...`); literal
    /// segments win over parameters (`/v1/grants/export.csv`).
    fn template_of(spec: &Value, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        spec["paths"]
            .as_object()?
            .keys()
            .filter_map(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                if parts.len() != segments.len() {
                    return None;
                }
                let mut literal = 0;
                for (part, segment) in parts.iter().zip(&segments) {
                    if part.starts_with('{') && part.ends_with('}') {
                        if segment.is_empty() {
                            return None;
                        }
                    } else if part == segment {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, template.clone()))
            })
            .max()
            .map(|(_, template)| template)
    }

    /// A JSON Pointer token (RFC 6901).
    fn escape(token: &str) -> String {
        token.replace('~', "~0").replace('/', "~1")
    }

    /// A validator of the schema at `pointer`: the whole description as the root document, so every `$ref`
    /// into `components` resolves, with a `$ref` to that schema (OpenAPI's own keywords are unknown to JSON
    /// Schema and ignored).
    fn validator(pointer: &str) -> Result<Arc<jsonschema::Validator>, String> {
        static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> =
            OnceLock::new();
        let cache = CACHE.get_or_init(Mutex::default);
        if let Some(found) = cache.lock().unwrap().get(pointer) {
            return Ok(found.clone());
        }
        let mut root = spec().clone();
        // A pointer in a URI fragment is percent-encoded (RFC 6901 §6): the braces of path templates are not
        // URI characters.
        let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
        root["$ref"] = Value::String(format!("#{fragment}"));
        let built = Arc::new(
            jsonschema::validator_for(&root)
                .map_err(|e| format!("the schema at {pointer} does not compile: {e}"))?,
        );
        cache
            .lock()
            .unwrap()
            .insert(pointer.to_owned(), built.clone());
        Ok(built)
    }
}
