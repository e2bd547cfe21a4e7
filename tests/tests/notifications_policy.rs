//! Notifications under each resource's approval policy (issue 13, both parts together): who hears of a waiting
//! request, what an auto-approved request announces, and what a request nobody decided in time tells its
//! requester. The real application over the embedded store and the started local scheduler; the signed event
//! webhook (which carries the e-mail recipients) and Jira Cloud are local wiremock servers.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::notify::{ChannelOptions, NotifyChannels, NotifyConfig};
use ticketbound::adapters::secrets::LocalSecretStore;
use ticketbound::adapters::ticket_systems::HttpTicketSystems;
use ticketbound::domain::IsoDuration;
use ticketbound::ports::SystemClock;
use ticketbound::service::{Ports, Settings, Ticketbound};
use ticketbound_tests::*;

const HOOK_SECRET: &str = "HOOKSECRETxxxx0123456789";

/// The application with one event-webhook channel (every event) and the deployment's approver address, a
/// request deadline of `pending_for`, and a resource `prod-db` decided by the approver group.
async fn stack(pending_for: &str) -> (axum::Router, MockServer, LocalScheduler) {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&hook)
        .await;
    let config = NotifyConfig::parse(
        &json!({
            "channels": [{"id": "bot", "kind": "webhook", "url": format!("{}/hook", hook.uri()), "secret": HOOK_SECRET}],
            "approver_emails": ["access-approvers@example.com"],
        })
        .to_string(),
    )
    .expect("a valid configuration");
    let clock = Arc::new(SystemClock);
    let store = embedded_store();
    let scheduler = LocalScheduler::new(store.clone());
    let secrets = temp_dir("notify-policy").join("secrets.json");
    let ports = Ports {
        secrets: Arc::new(LocalSecretStore::open(&secrets).expect("secret file")),
        ticket_systems: Arc::new(HttpTicketSystems::new(quick_policy()).expect("http client")),
        notifier: Arc::new(
            NotifyChannels::build(&config, &ChannelOptions::new(clock.clone())).expect("channels"),
        ),
        ..test_ports(
            Arc::new(store.clone()),
            Arc::new(scheduler.clone()),
            clock,
            StdDuration::from_secs(2),
        )
    };
    let app = Ticketbound::build(
        ports,
        Settings {
            retry: fast_retry(3),
            notifications: config
                .settings(Some("https://tb.example.com"))
                .expect("settings"),
            pending_for: IsoDuration::parse(pending_for).expect("a duration"),
            ..Settings::default()
        },
    );
    scheduler
        .start(Arc::new(app.clone()))
        .await
        .expect("scheduler");
    let router = local_router(app);
    put_resource(
        &router,
        "prod-db",
        json!({"name": "Production database", "provisioner": {"kind": "none"}}),
    )
    .await;
    (router, hook, scheduler)
}

async fn put_resource(router: &axum::Router, id: &str, body: Value) {
    let (status, answer) = call(
        router,
        "PUT",
        &format!("/v1/resources/{id}"),
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

/// The event-webhook bodies received so far for grant `id`, in order.
async fn messages(hook: &MockServer, id: &str) -> Vec<Value> {
    hook.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|b| b["grant"]["id"] == id)
        .collect()
}

/// Waits until grant `id` has had `n` messages; returns them.
async fn wait_messages(hook: &MockServer, id: &str, n: usize) -> Vec<Value> {
    let arrived = eventually(StdDuration::from_secs(15), || async {
        messages(hook, id).await.len() >= n
    })
    .await;
    let seen = messages(hook, id).await;
    assert!(arrived, "expected {n} messages for {id}, got {seen:?}");
    seen
}

#[tokio::test]
async fn a_resource_with_its_own_approvers_emails_them_not_the_deployments_approvers() {
    let (router, hook, _scheduler) = stack("P1D").await;
    put_resource(
        &router,
        "payroll",
        json!({
            "name": "Payroll", "provisioner": {"kind": "none"},
            // The requester is listed too: nobody is asked to decide their own request.
            "approvers": {"groups": ["payroll-leads"], "users": ["dave@example.com", "alice@example.com"]},
        }),
    )
    .await;

    let own = request_grant(&router, ALICE, "payroll", "PT4H").await;
    let group = request_grant(&router, ALICE, "prod-db", "PT4H").await;

    let own_msgs = wait_messages(&hook, &own, 1).await;
    assert_eq!(
        own_msgs[0]["event"], "approval_requested",
        "{}",
        own_msgs[0]
    );
    assert_eq!(own_msgs[0]["recipients"], json!(["dave@example.com"]));
    let group_msgs = wait_messages(&hook, &group, 1).await;
    assert_eq!(group_msgs[0]["event"], "approval_requested");
    assert_eq!(
        group_msgs[0]["recipients"],
        json!(["access-approvers@example.com"])
    );
}

fn issue(key: &str) -> Value {
    json!({
        "id": "10001",
        "key": key,
        "fields": {
            "summary": "Rotate the vault keys",
            "assignee": {"accountId": "acc-alice", "emailAddress": ALICE.0, "displayName": "Alice", "active": true},
            "status": {"name": "In Progress", "id": "3",
                       "statusCategory": {"id": 4, "key": "indeterminate", "name": "In Progress"}}
        }
    })
}

#[tokio::test]
async fn an_auto_approved_request_announces_its_approval_and_asks_nobody() {
    let (router, hook, _scheduler) = stack("P1D").await;
    let jira = MockServer::start().await;
    Mock::given(path("/rest/api/3/issue/SEC-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(issue("SEC-1")))
        .mount(&jira)
        .await;
    let (status, body) = call(
        &router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(
            &json!({"id": "jira-main", "kind": "jira_cloud", "base_url": jira.uri(),
                    "email": "bot@acme.com", "api_token": "atl-token-0123456789"})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    put_resource(
        &router,
        "vault",
        json!({"name": "Vault", "provisioner": {"kind": "none"}, "auto_approve": {"max_duration": "PT2H"}}),
    )
    .await;

    let (status, grant) = call(
        &router,
        "POST",
        "/v1/grants",
        ALICE,
        Some(
            &json!({"resource": "vault", "reason": "INC-7", "duration": "PT1H",
                    "ticket": {"connection": "jira-main", "key": "SEC-1"}})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    assert_eq!(grant["status"], "active", "{grant}");
    let id = grant["id"].as_str().unwrap();

    let seen = wait_messages(&hook, id, 1).await;
    // Nothing else follows (no "approval requested" for a request nobody has to decide).
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    let seen_later = messages(&hook, id).await;
    assert_eq!(seen_later.len(), 1, "{seen_later:?}");
    assert_eq!(seen[0]["event"], "approved", "{}", seen[0]);
    assert_eq!(seen[0]["recipients"], json!([ALICE.0]));
    let text = seen[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("The resource's auto-approve rule approved your request for vault."),
        "{text}"
    );
}

#[tokio::test]
async fn a_request_nobody_decided_in_time_tells_its_requester_why_it_was_cancelled() {
    let (router, hook, _scheduler) = stack("PT1S").await;
    let id = request_grant(&router, ALICE, "prod-db", "PT4H").await;

    let seen = wait_messages(&hook, &id, 2).await;
    assert_eq!(seen[0]["event"], "approval_requested", "{}", seen[0]);
    assert_eq!(seen[1]["event"], "ended", "{}", seen[1]);
    assert_eq!(seen[1]["recipients"], json!([ALICE.0]));
    assert_eq!(
        seen[1]["subject"],
        "Your request for prod-db was cancelled: nobody decided it in time"
    );
    let (status, grant) = call(&router, "GET", &format!("/v1/grants/{id}"), ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    assert_eq!(grant["status"], "cancelled");
    assert_eq!(grant["end_reason"], "approval_timed_out");
}
