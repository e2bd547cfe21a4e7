//! A data directory written by an older version keeps a bound ticket's key as the requester typed it (`sec-42`).
//! The real `ticketbound-local` binary, started on it, moves the open grant to the key Jira answers with
//! (`SEC-42`) before it serves, so the signed closing delivery for `SEC-42` ends it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::domain::webhook_auth::hub_signature;
use ticketbound::domain::{AuditEvent, AuditKind, Grant, GrantDuration, TicketRef};
use ticketbound::ports::GrantStore;
use wiremock::MockServer;

const ADMIN: (&str, &str) = ("admin@example.com", "ticketbound-admins");
const ALICE: (&str, &str) = ("alice@example.com", "");

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
    let child = Command::new(env!("CARGO_BIN_EXE_ticketbound-local"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ticketbound-local");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the local server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child)
}

async fn call(
    base: &str,
    method: &str,
    path: &str,
    who: (&str, &str),
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{base}{path}"))
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

#[tokio::test]
async fn a_key_stored_as_typed_is_moved_to_jiras_spelling_at_start_and_ends_by_its_webhook() {
    let jira = MockServer::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let data_dir = std::env::temp_dir().join(format!("tb-canonical-keys-{port}"));
    let _ = std::fs::remove_dir_all(&data_dir);

    // A server creates the connection and a resource, and stops.
    let server = start(port, &data_dir);
    let connection = json!({"id": "jira-main", "kind": "jira_cloud", "base_url": jira.uri(), "email": "bot@acme.com", "api_token": "jira-token-1"});
    let (status, created) = call(&base, "POST", "/v1/connections", ADMIN, Some(connection)).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["webhook_secret"].as_str().unwrap().to_owned();
    let resource = json!({"name": "Production database", "provisioner": {"kind": "none"}});
    let (status, answer) = call(&base, "PUT", "/v1/resources/prod-db", ADMIN, Some(resource)).await;
    assert_eq!(status, 201, "{answer}");
    drop(server);

    // An active grant bound to `sec-42`, as an older version stored it.
    let id = {
        let store = EmbeddedStore::open(&data_dir.join("ticketbound.db")).unwrap();
        let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
        let grant = Grant::request(
            ticketbound::domain::ids::new_ulid(now),
            ALICE.0.into(),
            "prod-db".into(),
            "bound".into(),
            GrantDuration::Indefinite,
            Some(TicketRef {
                connection: "jira-main".into(),
                key: "sec-42".into(),
            }),
            now,
        );
        let requested = AuditEvent::of(
            &grant,
            AuditKind::Requested,
            Some(ALICE.0),
            now,
            Value::Null,
        );
        store.insert_grant(&grant, &requested).await.unwrap();
        let active = grant.approve("bob@example.com", now).unwrap();
        store
            .update_grant(&active, grant.expected(), None)
            .await
            .unwrap();
        grant.id
    };

    let _server = start(port, &data_dir);
    let (status, shown) = call(&base, "GET", &format!("/v1/grants/{id}"), ALICE, None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["ticket"]["key"], "SEC-42", "{shown}");

    let body = json!({
        "timestamp": time::OffsetDateTime::now_utc().unix_timestamp() * 1000,
        "webhookEvent": "jira:issue_updated",
        "issue": {"id": "10042", "key": "SEC-42", "fields": {"status": {"name": "Done", "statusCategory": {"id": 3, "key": "done"}}}}
    })
    .to_string();
    let response = reqwest::Client::new()
        .post(format!("{base}/webhooks/jira/jira-main"))
        .header("content-type", "application/json")
        .header("x-hub-signature", hub_signature(&secret, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["ended"], 1, "{answer}");
    let (_, shown) = call(&base, "GET", &format!("/v1/grants/{id}"), ALICE, None).await;
    assert_eq!(
        (shown["status"].as_str(), shown["end_reason"].as_str()),
        (Some("ended"), Some("ticket_closed")),
        "{shown}"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}
