//! What a webhook delivery costs before it is trusted, through the router: an unknown connection (404) and a
//! sender without a valid header proof (401) are refused before a byte of the body is read, a body declared
//! over 2 MiB is refused 413 before it is read, and a signed delivery (whose proof is in the bytes) is still
//! read and judged. Each body records whether anything read it.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::ServiceExt;
use wiremock::MockServer;

use support::{ADMIN, TestApp, basic, quick_policy, spawn_app};

struct Sent {
    status: StatusCode,
    json: Value,
    body_read: bool,
}

/// Posts `bytes` to `path` with `headers`; the body notes when any of it is read.
async fn deliver(app: &TestApp, path: &str, headers: &[(&str, String)], bytes: Vec<u8>) -> Sent {
    let read = Arc::new(AtomicBool::new(false));
    let noted = Arc::clone(&read);
    let body = Full::new(Bytes::from(bytes)).map_frame(move |frame| {
        noted.store(true, Ordering::SeqCst);
        frame
    });
    let mut request = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = app
        .router
        .clone()
        .oneshot(request.body(Body::new(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Sent {
        status,
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        body_read: read.load(Ordering::SeqCst),
    }
}

/// An app with a Jira Data Center connection `jira-dc` and a Freshservice connection `fs` (their APIs on a
/// wiremock that answers nothing: no call is expected), and the webhook secret of each.
async fn with_connections(vendor: &MockServer) -> (TestApp, String, String) {
    let app = spawn_app(quick_policy()).await;
    let mut secrets = Vec::new();
    for body in [
        json!({"id": "jira-dc", "kind": "jira_data_center", "base_url": vendor.uri(),
            "personal_access_token": "pat-0123456789abcdef"}),
        json!({"id": "fs", "kind": "freshservice", "base_url": vendor.uri(), "api_key": "fs-key-123"}),
    ] {
        let created = app.call("POST", "/v1/connections", ADMIN, Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        secrets.push(created.json["webhook_secret"].as_str().unwrap().to_owned());
    }
    let fs = secrets.pop().unwrap();
    (app, secrets.pop().unwrap(), fs)
}

fn delivery() -> Vec<u8> {
    json!({"webhookEvent": "jira:issue_updated", "issue": {"key": "SEC-42"}})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn an_unknown_connection_is_refused_before_its_body_is_read() {
    let app = spawn_app(quick_policy()).await;
    for path in ["/webhooks/jira/nobody", "/webhooks/freshservice/nobody"] {
        let sent = deliver(&app, path, &[], vec![b' '; 1024 * 1024]).await;

        assert_eq!(sent.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(sent.json["error"]["code"], "unknown_connection");
        assert!(!sent.body_read, "{path}: the body was read");
    }
}

#[tokio::test]
async fn a_sender_without_a_valid_header_proof_is_refused_before_its_body_is_read() {
    let vendor = MockServer::start().await;
    let (app, _, _) = with_connections(&vendor).await;
    let cases: [(&str, Vec<(&str, String)>); 5] = [
        ("/webhooks/jira/jira-dc", vec![]),
        (
            "/webhooks/jira/jira-dc",
            vec![("x-ticketbound-secret", "not-the-secret-0123".into())],
        ),
        (
            "/webhooks/jira/jira-dc",
            vec![("authorization", basic("jira", "not-the-secret-0123"))],
        ),
        ("/webhooks/freshservice/fs", vec![]),
        (
            "/webhooks/freshservice/fs",
            vec![("x-ticketbound-secret", "not-the-secret-0123".into())],
        ),
    ];
    for (path, headers) in cases {
        let sent = deliver(&app, path, &headers, delivery()).await;

        assert_eq!(sent.status, StatusCode::UNAUTHORIZED, "{path} {headers:?}");
        assert_eq!(sent.json["error"]["code"], "invalid_signature");
        assert!(!sent.body_read, "{path} {headers:?}: the body was read");
    }
}

#[tokio::test]
async fn a_body_declared_over_the_limit_is_refused_before_it_is_read() {
    let vendor = MockServer::start().await;
    let (app, jira_secret, _) = with_connections(&vendor).await;
    let big = vec![b' '; 2 * 1024 * 1024 + 1];
    let signature = ticketbound::domain::webhook_auth::hub_signature(&jira_secret, &big);

    for headers in [
        vec![("x-ticketbound-secret", jira_secret.clone())],
        vec![("x-hub-signature", signature)],
    ] {
        let mut headers = headers;
        headers.push(("content-length", big.len().to_string()));
        let sent = deliver(&app, "/webhooks/jira/jira-dc", &headers, big.clone()).await;

        assert_eq!(sent.status, StatusCode::PAYLOAD_TOO_LARGE, "{headers:?}");
        assert_eq!(sent.json["error"]["code"], "body_too_large");
        assert!(!sent.body_read, "{headers:?}: the body was read");
    }
}

#[tokio::test]
async fn a_signed_delivery_is_still_read_and_judged_on_its_bytes() {
    let vendor = MockServer::start().await;
    let (app, jira_secret, _) = with_connections(&vendor).await;
    let body = delivery();

    let forged = deliver(
        &app,
        "/webhooks/jira/jira-dc",
        &[("x-hub-signature", "sha256=00".into())],
        body.clone(),
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert!(forged.body_read, "a signature is judged on the bytes");

    let signature = ticketbound::domain::webhook_auth::hub_signature(&jira_secret, &body);
    let signed = deliver(
        &app,
        "/webhooks/jira/jira-dc",
        &[("x-hub-signature", signature)],
        body,
    )
    .await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.json);
}
