//! A resource's `auto_approve` rule (issue 13): a request bound to an open ticket assigned to the requester
//! (checked through a Jira Cloud answering as the vendor does, on wiremock), for a bounded duration within the
//! rule's limit, is active at once, decided by `policy`, and provisioned once; every other request waits for
//! an approver, and a binding the rules refuse is refused as always, with nothing stored.

use axum::http::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::ports::{GrantFilter, GrantStore};
use ticketbound_tests::{ADMIN, ALICE, APPROVER, TestApp, quick_policy, spawn_app};

fn issue(key: &str, category: &str, assignee: &str) -> Value {
    json!({
        "id": format!("1{}", key.trim_start_matches("SEC-")),
        "key": key,
        "fields": {
            "summary": format!("Summary of {key}"),
            "assignee": {"accountId": format!("acc-{assignee}"), "emailAddress": assignee, "displayName": assignee, "active": true},
            "status": {"name": if category == "done" { "Done" } else { "In Progress" }, "id": "3",
                       "statusCategory": {"id": 4, "key": category, "name": "Category"}}
        }
    })
}

struct Setup {
    app: TestApp,
    _jira: MockServer,
    provisioner: MockServer,
}

async fn setup() -> Setup {
    let app = spawn_app(quick_policy()).await;
    let jira = MockServer::start().await;
    for (key, category, assignee) in [
        ("SEC-1", "indeterminate", ALICE.0),
        ("SEC-2", "done", ALICE.0),
        ("SEC-3", "indeterminate", "carol@example.com"),
    ] {
        Mock::given(path(format!("/rest/api/3/issue/{key}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(issue(key, category, assignee)))
            .mount(&jira)
            .await;
    }
    let created = app
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(
                json!({"id": "jira-main", "kind": "jira_cloud", "base_url": jira.uri(),
                        "email": "bot@acme.com", "api_token": "atl-token-0123456789"}),
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&provisioner)
        .await;
    let resource = app
        .call(
            "PUT",
            "/v1/resources/vault",
            ADMIN,
            Some(json!({
                "name": "Vault", "max_duration": "PT8H",
                "provisioner": {"kind": "webhook", "url": provisioner.uri(), "secret": "provisioner-secret-0123456789"},
                "approvals_required": 2,
                "auto_approve": {"max_duration": "PT2H"},
            })),
        )
        .await;
    assert_eq!(resource.status, StatusCode::CREATED, "{}", resource.text);
    Setup {
        app,
        _jira: jira,
        provisioner,
    }
}

fn request(duration: &str, ticket: Option<&str>) -> Value {
    let mut body = json!({"resource": "vault", "reason": "INC-7", "duration": duration});
    if let Some(key) = ticket {
        body["ticket"] = json!({"connection": "jira-main", "key": key});
    }
    body
}

async fn grant_calls(provisioner: &MockServer, id: &str) -> usize {
    provisioner
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|b| b["grant"]["id"] == id && b["action"] == "grant")
        .count()
}

#[tokio::test]
async fn a_short_request_bound_to_the_requesters_open_ticket_is_active_at_once_decided_by_policy() {
    let s = setup().await;
    let answer = s
        .app
        .call(
            "POST",
            "/v1/grants",
            ALICE,
            Some(request("PT2H", Some("SEC-1"))),
        )
        .await;

    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let grant = &answer.json;
    let id = grant["id"].as_str().unwrap();
    assert_eq!(grant["status"], "active", "{grant}");
    assert_eq!(grant["decided_by"], "policy");
    assert_eq!(grant["approvals"], json!([]), "no person approved it");
    assert!(grant["expires_at"].is_string());
    assert_eq!(grant["provisioning"]["state"], "done");
    assert_eq!(grant_calls(&s.provisioner, id).await, 1);

    let events = s
        .app
        .call("GET", &format!("/v1/grants/{id}/events"), ALICE, None)
        .await
        .json;
    let approved = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "approved")
        .cloned()
        .expect("an approved event");
    assert_eq!(approved["actor"], "policy");
    assert_eq!(
        (
            &approved["detail"]["rule"],
            &approved["detail"]["max_duration"],
            &approved["detail"]["ticket"]
        ),
        (&json!("auto_approve"), &json!("PT2H"), &json!("SEC-1"))
    );

    // Its deadline is gone and its time bound is armed.
    let schedules: Vec<String> = LocalScheduler::new(s.app.store.clone())
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.contains(id))
        .collect();
    assert_eq!(schedules, [format!("tb-{id}-exp")]);

    // Nobody approves it again.
    let late = s
        .app
        .call("POST", &format!("/v1/grants/{id}/approve"), APPROVER, None)
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(late.json["error"]["code"], "grant_not_pending");
}

#[tokio::test]
async fn a_request_outside_the_rule_waits_for_its_approvers() {
    let s = setup().await;
    for (duration, ticket, why) in [
        ("PT3H", Some("SEC-1"), "longer than the rule's limit"),
        ("PT1H", None, "not bound to a ticket"),
        ("indefinite", Some("SEC-1"), "indefinite"),
    ] {
        let answer = s
            .app
            .call("POST", "/v1/grants", ALICE, Some(request(duration, ticket)))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{why}: {}", answer.text);
        assert_eq!(answer.json["status"], "pending", "{why}");
        assert_eq!(answer.json["decided_by"], Value::Null, "{why}");
        assert_eq!(answer.json["approvals_required"], 2, "{why}");
        let id = answer.json["id"].as_str().unwrap();
        assert_eq!(grant_calls(&s.provisioner, id).await, 0, "{why}");
    }
}

#[tokio::test]
async fn a_binding_the_rules_refuse_is_refused_before_the_rule_is_considered() {
    let s = setup().await;
    for (key, code) in [
        ("SEC-2", "ticket_closed"),
        ("SEC-3", "ticket_not_assigned_to_requester"),
    ] {
        let answer = s
            .app
            .call(
                "POST",
                "/v1/grants",
                ALICE,
                Some(request("PT1H", Some(key))),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            answer.text
        );
        assert_eq!(answer.json["error"]["code"], code);
    }
    let stored = s
        .app
        .store
        .list_grants(&GrantFilter::default(), 10, None)
        .await
        .unwrap();
    assert!(stored.items.is_empty(), "{:?}", stored.items);
    assert!(s.provisioner.received_requests().await.unwrap().is_empty());
}
