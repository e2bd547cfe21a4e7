//! What a requester reads when an end system fails: the grant and its audit trail say that something failed, in
//! a plain sentence, never the provisioner's address or what its host answered. The deployment-wide roles
//! (admins, the approver group, auditors) read the detail as recorded, to fix it.

use axum::http::StatusCode;
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use ticketbound::service::END_SYSTEM_ERROR;
use ticketbound_tests::{
    ADMIN, ALICE, APPROVER, AUDITOR, call, define_webhook_resource, local_router, local_test_app,
    request_grant,
};

/// Alice's grant of `prod-db`, approved, whose provisioner at `server` answers 500: its first call failed and
/// a retry is scheduled (the scheduler is not running, so the grant stays so).
async fn failing_grant(server: &MockServer) -> (axum::Router, String) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(server)
        .await;
    let router = local_router(local_test_app().0);
    define_webhook_resource(
        &router,
        "prod-db",
        &format!("{}/internal/grant", server.uri()),
    )
    .await;
    let id = request_grant(&router, ALICE, "prod-db", "PT1H").await;
    let (status, approved) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    (router, id)
}

async fn read(router: &axum::Router, who: (&str, &str), path: &str) -> Value {
    let (status, json) = call(router, "GET", path, who, None).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json
}

#[tokio::test]
async fn a_requester_reads_a_plain_sentence_where_the_provisioner_failed() {
    let server = MockServer::start().await;
    let (router, id) = failing_grant(&server).await;
    let address = server.uri();

    let grant = read(&router, ALICE, &format!("/v1/grants/{id}")).await;
    let listed = read(&router, ALICE, "/v1/grants").await;
    let events = read(&router, ALICE, &format!("/v1/grants/{id}/events")).await;

    assert_eq!(grant["provisioning"]["state"], "pending", "{grant}");
    assert_eq!(grant["provisioning"]["attempts"], 1, "{grant}");
    assert_eq!(grant["provisioning"]["last_error"], END_SYSTEM_ERROR);
    let mine = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == id.as_str())
        .expect("the grant is listed");
    assert_eq!(mine["provisioning"]["last_error"], END_SYSTEM_ERROR);
    let failed = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["detail"]["error"].is_string())
        .expect("the trail records the failed attempt");
    assert_eq!(failed["detail"]["error"], END_SYSTEM_ERROR);
    for answer in [&grant, &listed, &events] {
        let text = answer.to_string();
        assert!(
            !text.contains(&address)
                && !text.contains("/internal/grant")
                && !text.contains("HTTP 500"),
            "a requester never reads the provisioner's address or answer: {text}"
        );
    }
}

#[tokio::test]
async fn admins_approvers_and_auditors_read_the_detail() {
    let server = MockServer::start().await;
    let (router, id) = failing_grant(&server).await;

    for who in [ADMIN, APPROVER, AUDITOR] {
        let grant = read(&router, who, &format!("/v1/grants/{id}")).await;
        let error = grant["provisioning"]["last_error"].as_str().unwrap();
        assert!(
            error.contains("HTTP 500") && error.contains(&server.uri()),
            "{who:?}: {error}"
        );
        let events = read(&router, who, &format!("/v1/grants/{id}/events")).await;
        assert!(events.to_string().contains("HTTP 500"), "{who:?}: {events}");
    }
}
