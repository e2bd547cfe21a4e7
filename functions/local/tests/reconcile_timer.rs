//! The local server's reconciliation timer (`--reconcile-every`), run against the real `ticketbound-local`
//! binary and a fake Jira Cloud: a bound ticket that closes with no webhook delivery ends its grant within a
//! few intervals, and an open one stays active.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

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

/// SEC-7 as Jira Cloud answers it: assigned to alice, open until `closed` is set.
struct Issue(Arc<AtomicBool>);

impl Issue {
    fn body(&self) -> Value {
        let (name, category) = if self.0.load(Ordering::SeqCst) {
            ("Done", "done")
        } else {
            ("In Progress", "indeterminate")
        };
        json!({"id": "10007", "key": "SEC-7", "fields": {
            "summary": "Database is slow",
            "assignee": {"accountId": "acc-alice", "accountType": "atlassian", "emailAddress": "alice@example.com", "active": true},
            "status": {"name": name, "statusCategory": {"key": category}}
        }})
    }
}

impl Respond for Issue {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.url.path().ends_with("/search/jql") {
            ResponseTemplate::new(200)
                .set_body_json(json!({"issues": [self.body()], "isLast": true}))
        } else {
            ResponseTemplate::new(200).set_body_json(self.body())
        }
    }
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    who: (&str, &str),
    body: Option<Value>,
) -> Value {
    let mut request = client
        .request(method, &url)
        .header("x-ticketbound-user", who.0)
        .header("x-ticketbound-groups", who.1);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the local server answers");
    let status = response.status();
    let json: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {json}");
    json
}

#[tokio::test]
async fn the_local_timer_ends_a_grant_whose_ticket_closed_without_a_webhook() {
    let closed = Arc::new(AtomicBool::new(false));
    let jira = MockServer::start().await;
    for p in ["/rest/api/3/issue/SEC-7", "/rest/api/3/search/jql"] {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(Issue(closed.clone()))
            .mount(&jira)
            .await;
    }
    let port = free_port();
    let data_dir = std::env::temp_dir().join(format!("tb-reconcile-timer-{port}"));
    let _ = std::fs::remove_dir_all(&data_dir);
    let child = Command::new(env!("CARGO_BIN_EXE_ticketbound-local"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--reconcile-every",
            "PT1S",
            "--data-dir",
        ])
        .arg(&data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ticketbound-local");
    let _server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the local server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let base = format!("http://127.0.0.1:{port}");
    let admin = ("admin@example.com", "ticketbound-admins");
    let client = reqwest::Client::new();
    use reqwest::Method;
    send(&client, Method::POST, format!("{base}/v1/connections"), admin, Some(json!({
        "id": "jira-main", "kind": "jira_cloud", "base_url": jira.uri(), "email": "bot@acme.com", "api_token": "jira-token-1"
    }))).await;
    send(
        &client,
        Method::PUT,
        format!("{base}/v1/resources/prod-db"),
        admin,
        Some(json!({
            "name": "Production database", "provisioner": {"kind": "none"}
        })),
    )
    .await;
    let requested = send(&client, Method::POST, format!("{base}/v1/grants"), ("alice@example.com", ""), Some(json!({
        "resource": "prod-db", "reason": "SEC-7", "duration": "indefinite", "ticket": {"connection": "jira-main", "key": "SEC-7"}
    }))).await;
    let id = requested["id"].as_str().unwrap().to_owned();
    send(
        &client,
        Method::POST,
        format!("{base}/v1/grants/{id}/approve"),
        ("bob@example.com", "ticketbound-approvers"),
        None,
    )
    .await;
    let grant_url = format!("{base}/v1/grants/{id}");
    let alice = ("alice@example.com", "");

    // While the ticket is open, runs come and go and the grant stays.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let grant = send(&client, Method::GET, grant_url.clone(), alice, None).await;
    assert_eq!(grant["status"], "active", "{grant}");
    let searched = jira
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/rest/api/3/search/jql")
        .count();
    assert!(searched >= 1, "the timer ran a reconciliation");

    // The ticket closes; no webhook is sent.
    closed.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    let ended = loop {
        let grant = send(&client, Method::GET, grant_url.clone(), alice, None).await;
        if grant["status"] == "ended" || Instant::now() > deadline {
            break grant;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ended["status"], "ended", "{ended}");
    assert_eq!(ended["end_reason"], "ticket_closed");
    let events = send(
        &client,
        Method::GET,
        format!("{grant_url}/events"),
        alice,
        None,
    )
    .await;
    let ending = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "ended")
        .cloned()
        .unwrap_or_default();
    assert_eq!(ending["detail"]["found_by"], "reconciliation", "{events}");
    let connection = send(
        &client,
        Method::GET,
        format!("{base}/v1/connections/jira-main"),
        admin,
        None,
    )
    .await;
    assert_eq!(connection["webhook_health"], "warning", "{connection}");
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[test]
fn a_bad_reconcile_interval_is_refused_with_the_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_ticketbound-local"))
        .args(["--reconcile-every", "sometimes"])
        .output()
        .expect("run ticketbound-local");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--reconcile-every"), "{stderr}");
}
