//! The test kit's judge ([`ticketbound_tests::openapi::conform`]) refuses what docs/openapi.yaml does not
//! describe: without these, a judge that accepted everything would pass every test.

use axum::http::StatusCode;
use serde_json::json;
use ticketbound_tests::openapi::conform;

fn refused(method: &str, path: &str, status: StatusCode, body: &serde_json::Value) -> String {
    let bytes = body.to_string().into_bytes();
    let caught = std::panic::catch_unwind(|| {
        conform(method, path, status, Some("application/json"), &bytes);
    });
    let payload = caught.expect_err("the answer should have been refused");
    payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn an_answer_missing_a_required_field_is_refused_naming_the_route_and_status() {
    let message = refused(
        "GET",
        "/v1/grants/01JD3AAAAAAAAAAAAAAAAAAAAA/ticket",
        StatusCode::OK,
        &json!({"key": "SEC-42", "summary": "s", "status": "Open", "url": "u"}),
    );
    assert!(
        message.contains("GET /v1/grants/01JD3AAAAAAAAAAAAAAAAAAAAA/ticket answered 200 OK"),
        "{message}"
    );
    assert!(message.contains("closed"), "{message}");
}

#[test]
fn a_field_of_the_wrong_type_or_value_is_refused() {
    refused(
        "GET",
        "/v1/connection-directory",
        StatusCode::OK,
        &json!({"items": [{"id": "jira-main", "name": "n", "kind": "jira_server", "site": "s"}], "next": null}),
    );
    refused(
        "GET",
        "/v1/connection-directory",
        StatusCode::OK,
        &json!({"items": [{"id": "jira-main", "name": "n", "kind": "jira_cloud", "site": "s", "api_token": "x"}], "next": null}),
    );
}

#[test]
fn an_error_body_is_held_to_the_error_shape() {
    refused(
        "GET",
        "/v1/grants/01JD3AAAAAAAAAAAAAAAAAAAAA",
        StatusCode::NOT_FOUND,
        &json!({"message": "not found"}),
    );
}

#[test]
fn described_answers_pass_and_undescribed_routes_are_left_to_the_route_check() {
    let ok = json!({"items": [{"id": "jira-main", "name": "Jira Cloud (acme.atlassian.net)", "kind": "jira_cloud", "site": "acme.atlassian.net"}], "next": null});
    conform(
        "GET",
        "/v1/connection-directory?limit=5",
        StatusCode::OK,
        Some("application/json"),
        ok.to_string().as_bytes(),
    );
    conform(
        "POST",
        "/webhooks/jira/x",
        StatusCode::OK,
        None,
        b"anything",
    );
}
