//! Shared helpers of the connection tests: an app over an in-memory store and a temporary secret file, HTTP
//! calls through the router as a client makes them, quick HTTP policies, and the moto guard.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::provisioner::{DEFAULT_TIMEOUT, HttpProvisioners};
use ticketbound::adapters::secrets::LocalSecretStore;
use ticketbound::adapters::ticket_http::HttpPolicy;
use ticketbound::adapters::ticket_systems::HttpTicketSystems;
use ticketbound::domain::identity::RoleGroups;
use ticketbound::domain::{Provisioner, Resource};
use ticketbound::http::{AppState, IdentitySource, local_router};
use ticketbound::ports::{Clock, GrantStore, SystemClock, TicketVerifier};
use ticketbound::service::{Connections, Settings, Ticketbound};

pub const ADMIN: (&str, &str) = ("admin@example.com", "ticketbound-admins");
pub const ALICE: (&str, &str) = ("alice@example.com", "");
pub const BOB: (&str, &str) = ("bob@example.com", "ticketbound-approvers");

/// Short limits, so timeouts and retries take milliseconds.
pub fn quick_policy() -> HttpPolicy {
    HttpPolicy {
        timeout: Duration::from_millis(400),
        max_retries: 2,
        max_wait: Duration::from_secs(2),
        backoff_base: Duration::from_millis(10),
        budget: Duration::from_secs(5),
    }
}

/// One test's application.
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
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let connections = Connections::new(
        Arc::new(store.clone()),
        Arc::new(secrets),
        Arc::new(HttpTicketSystems::new(policy).expect("http client")),
        Arc::new(store.clone()),
        clock.clone(),
    );
    let app = Ticketbound {
        store: Arc::new(store.clone()),
        scheduler: Arc::new(LocalScheduler::new(store.clone())),
        provisioners: Arc::new(
            HttpProvisioners::new(clock.clone(), DEFAULT_TIMEOUT).expect("provisioners"),
        ),
        tickets: Some(Arc::new(connections.clone()) as Arc<dyn TicketVerifier>),
        connections: Some(connections),
        clock,
        settings: Settings::default(),
    };
    store
        .put_resource(&Resource {
            id: "prod-db".into(),
            name: "Production database".into(),
            description: String::new(),
            max_duration: None,
            require_ticket: false,
            provisioner: Provisioner::None,
        })
        .await
        .expect("resource");
    // Everything the local server serves: the portal API and the webhook routes.
    let router = local_router(AppState {
        app: app.clone(),
        identity: IdentitySource::TrustedHeaders,
        roles: RoleGroups::default(),
    });
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
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
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

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A Jira Cloud issue as `/rest/api/3/issue/{key}` answers it.
/// A stable numeric issue id per key, as Jira gives every issue one (distinct keys, distinct ids).
pub fn issue_id(key: &str) -> String {
    let hash = key
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    (10_000 + hash % 900_000).to_string()
}

pub fn cloud_issue(key: &str, status: &str, category: &str, assignee: Option<Value>) -> Value {
    let id = issue_id(key);
    serde_json::json!({
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

pub fn cloud_user(account: &str, email: Option<&str>) -> Value {
    let mut user = serde_json::json!({
        "accountId": account, "accountType": "atlassian", "displayName": format!("User {account}"), "active": true
    });
    if let Some(e) = email {
        user["emailAddress"] = Value::String(e.to_owned());
    }
    user
}
