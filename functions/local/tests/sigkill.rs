//! SIGKILL during a closing (issue 9): the real `ticketbound-local` binary is killed while the revokes of a
//! 200-grant closing are in flight, restarted on the same data directory, and the ticket system retries its
//! delivery. Every grant must end and have its access removed, and only the calls that were in flight at the
//! kill may reach the end system twice (they carry the same idempotency key).

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{Value, json};
use ticketbound::domain::webhook_auth::hub_signature;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

const GRANTS: usize = 200;
const ALICE: &str = "alice@example.com";
const BOB: (&str, &str) = ("bob@example.com", "ticketbound-approvers");
const ADMIN: (&str, &str) = ("admin@example.com", "ticketbound-admins");
/// How long the end system takes to answer a revoke: long enough that calls are in flight at the kill.
const REVOKE_TAKES: Duration = Duration::from_millis(300);

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(port: u16, data_dir: &std::path::Path) -> Server {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.with_extension("log"))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ticketbound-local"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start ticketbound-local");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the local server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child)
}

/// The end system: counts the calls it starts and answers per idempotency key, answers revokes slowly, and
/// can be frozen so that the calls it has started are never answered (they are in flight when the server dies).
#[derive(Clone, Default)]
struct EndSystem {
    started: Arc<Mutex<BTreeMap<String, usize>>>,
    answered: Arc<Mutex<BTreeMap<String, usize>>>,
    frozen: Arc<AtomicBool>,
}

impl EndSystem {
    async fn serve(self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |body: Bytes| {
                let this = self.clone();
                async move { this.call(&body).await }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    async fn call(&self, body: &[u8]) -> StatusCode {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if body["action"] != "revoke" {
            return StatusCode::NO_CONTENT;
        }
        let key = body["idempotency_key"].as_str().unwrap_or("?").to_owned();
        *self.started.lock().unwrap().entry(key.clone()).or_default() += 1;
        tokio::time::sleep(REVOKE_TAKES).await;
        if self.frozen.load(Ordering::SeqCst) {
            // Never answered: the caller dies waiting.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        *self.answered.lock().unwrap().entry(key).or_default() += 1;
        StatusCode::NO_CONTENT
    }

    fn started(&self) -> BTreeMap<String, usize> {
        self.started.lock().unwrap().clone()
    }

    fn answered(&self) -> BTreeMap<String, usize> {
        self.answered.lock().unwrap().clone()
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        who: (&str, &str),
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("x-ticketbound-user", who.0)
            .header("x-ticketbound-groups", who.1);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The closing delivery as Jira sends it: signed with the connection's secret, with its delivery id.
    async fn deliver(&self, secret: &str, body: &[u8]) -> Result<u16, reqwest::Error> {
        self.http
            .post(format!("{}/webhooks/jira/jira-main", self.base))
            .header("content-type", "application/json")
            .header("x-hub-signature", hub_signature(secret, body))
            .header("x-atlassian-webhook-identifier", "delivery-sigkill-1")
            .body(body.to_vec())
            .send()
            .await
            .map(|r| r.status().as_u16())
    }
}

/// A Jira Cloud issue assigned to Alice, in progress, as `/rest/api/3/issue/{key}` answers it.
async fn jira() -> MockServer {
    let jira = MockServer::start().await;
    let alice = json!({"accountId": "acc-alice", "accountType": "atlassian", "displayName": "Alice", "active": true, "emailAddress": ALICE});
    let issue = json!({
        "id": "10005", "key": "SEC-42", "self": "https://acme.atlassian.net/rest/api/3/issue/10005",
        "fields": {
            "summary": "Database is slow", "assignee": alice,
            "status": {"name": "In Progress", "id": "3", "statusCategory": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"}}
        }
    });
    Mock::given(path("/rest/api/3/issue/SEC-42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(issue))
        .mount(&jira)
        .await;
    Mock::given(path("/rest/api/3/user/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([alice])))
        .mount(&jira)
        .await;
    jira
}

/// The real Cloud capture of an issue update, moved to Done.
fn closing_delivery() -> Vec<u8> {
    let mut body: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/jira-cloud-issue-updated-status-inprogress.json"
    ))
    .unwrap();
    body["issue"]["key"] = "SEC-42".into();
    // The event follows the grants bound before it (a closing never ends a grant bound after its event).
    body["timestamp"] = ((time::OffsetDateTime::now_utc().unix_timestamp() + 1) * 1000).into();
    body["issue"]["fields"]["status"] = json!({"name": "Done", "id": "10001", "statusCategory": {"id": 3, "key": "done", "colorName": "green", "name": "Done"}});
    body["changelog"]["items"] = json!([
        {"field": "status", "fieldtype": "jira", "fieldId": "status", "from": "3", "fromString": "In Progress", "to": "10001", "toString": "Done"}
    ]);
    body.to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_closing_ends_every_grant_after_a_restart_and_repeats_only_calls_in_flight()
 {
    // Arrange: the server, a Jira connection on a fake Jira, 200 resources and 200 active grants on SEC-42.
    let jira = jira().await;
    let end_system = EndSystem::default();
    let provisioner_url = end_system.clone().serve().await;
    let port = free_port();
    let data_dir = std::env::temp_dir().join(format!("tb-sigkill-{port}"));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut server = start(port, &data_dir);
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let connection = json!({"id": "jira-main", "kind": "jira_cloud", "base_url": jira.uri(), "email": "bot@acme.com", "api_token": "jira-token-1"});
    let (status, created) = client
        .call("POST", "/v1/connections", ADMIN, Some(connection))
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["webhook_secret"].as_str().unwrap().to_owned();
    let mut ids = Vec::with_capacity(GRANTS);
    for i in 0..GRANTS {
        // One resource per grant, so rule 8 (overlapping grants) skips no revoke.
        let resource = format!("db-{i:03}");
        let body = json!({"name": resource, "provisioner": {"kind": "webhook", "url": provisioner_url, "secret": "provisioner-secret-0123456789"}});
        let (status, answer) = client
            .call(
                "PUT",
                &format!("/v1/resources/{resource}"),
                ADMIN,
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{answer}");
        let body = json!({"resource": resource, "reason": "INC-7", "duration": "indefinite", "ticket": {"connection": "jira-main", "key": "SEC-42"}});
        let (status, grant) = client
            .call("POST", "/v1/grants", (ALICE, ""), Some(body))
            .await;
        assert_eq!(status, 201, "{grant}");
        let id = grant["id"].as_str().unwrap().to_owned();
        let (status, grant) = client
            .call("POST", &format!("/v1/grants/{id}/approve"), BOB, None)
            .await;
        assert_eq!(
            (status, &grant["status"]),
            (200, &json!("active")),
            "{grant}"
        );
        ids.push(id);
    }
    let delivery = closing_delivery();

    // Act: the closing arrives; the server dies while revokes are in flight.
    let first = {
        let (client, secret, delivery) = (
            Client {
                http: client.http.clone(),
                base: client.base.clone(),
            },
            secret.clone(),
            delivery.clone(),
        );
        tokio::spawn(async move { client.deliver(&secret, &delivery).await })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while end_system.answered().len() < 40 {
        assert!(Instant::now() < deadline, "revokes did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // No answer leaves the end system from here on; what it did answer gets recorded, then the kill.
    end_system.frozen.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(REVOKE_TAKES.as_millis() as u64 + 500)).await;
    server.0.kill().expect("SIGKILL");
    server.0.wait().unwrap();
    let answered_before: BTreeSet<String> = end_system.answered().into_keys().collect();
    let in_flight: BTreeSet<String> = end_system
        .started()
        .into_keys()
        .filter(|k| !answered_before.contains(k))
        .collect();
    assert!(!in_flight.is_empty(), "calls were in flight at the kill");
    assert!(
        answered_before.len() + in_flight.len() < GRANTS,
        "the kill came before the closing finished"
    );
    let first = first.await.unwrap();
    assert!(
        !matches!(first, Ok(200)),
        "the killed server never acknowledged the delivery: {first:?}"
    );
    end_system.frozen.store(false, Ordering::SeqCst);

    let restarted = Instant::now();
    let _server = start(port, &data_dir);
    // The sender retries its delivery until it is acknowledged.
    let mut acknowledged = false;
    for _ in 0..20 {
        if matches!(client.deliver(&secret, &delivery).await, Ok(200)) {
            acknowledged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(acknowledged, "the retried delivery is acknowledged");
    let mut unfinished = ids.clone();
    while !unfinished.is_empty() && restarted.elapsed() < Duration::from_secs(40) {
        let mut still = Vec::new();
        for id in unfinished {
            let (_, grant) = client
                .call("GET", &format!("/v1/grants/{id}"), BOB, None)
                .await;
            if grant["status"] != "ended" || grant["deprovisioning"]["state"] != "done" {
                still.push(id);
            }
        }
        unfinished = still;
        if !unfinished.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let recovery = restarted.elapsed();

    // Assert: every grant ended and its access was removed; only the calls in flight were made twice.
    assert!(
        unfinished.is_empty(),
        "{} grants unfinished after {recovery:?}, e.g. {:?}",
        unfinished.len(),
        client
            .call("GET", &format!("/v1/grants/{}", unfinished[0]), BOB, None)
            .await
    );
    let answered = end_system.answered();
    for id in &ids {
        let key = format!("{id}-revoke");
        assert!(
            answered.get(&key).is_some_and(|n| *n >= 1),
            "{key} was never removed"
        );
    }
    let repeated: BTreeSet<String> = end_system
        .started()
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        repeated, in_flight,
        "only the calls in flight at the kill are repeated"
    );
    assert!(
        end_system.started().values().all(|n| *n <= 2),
        "{:?}",
        end_system.started()
    );
    assert!(
        recovery < Duration::from_secs(20),
        "recovered in {recovery:?}, well under a lease and a minute"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
    let _ = std::fs::remove_file(data_dir.with_extension("log"));
}
