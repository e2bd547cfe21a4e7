//! The API as `ticketbound-api` serves it on Lambda: real API Gateway HTTP API (payload 2.0) events, parsed by
//! `lambda_http`, identity from the JWT authorizer's claims.

use axum::http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use ticketbound::ports::{GrantFilter, GrantStore};
use ticketbound_tests::*;

/// The AWS documentation's payload-2.0 example (`fixtures/apigw-v2-post-jwt.json`), turned into a request for
/// `method path` with `claims` (or no authorizer at all), extra `headers` and `body`.
fn event(
    method: &str,
    path: &str,
    claims: Option<Value>,
    headers: Value,
    body: Option<&str>,
    base64: bool,
) -> String {
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/apigw-v2-post-jwt.json")).unwrap();
    event["rawPath"] = path.into();
    event["rawQueryString"] = "".into();
    event
        .as_object_mut()
        .unwrap()
        .remove("queryStringParameters");
    event.as_object_mut().unwrap().remove("pathParameters");
    event["routeKey"] = format!("{method} {path}").into();
    event["requestContext"]["routeKey"] = event["routeKey"].clone();
    event["requestContext"]["http"]["method"] = method.into();
    event["requestContext"]["http"]["path"] = path.into();
    let mut all_headers = json!({"content-type": "application/json", "host": "api.example.com"});
    for (k, v) in headers.as_object().unwrap() {
        all_headers[k] = v.clone();
    }
    event["headers"] = all_headers;
    match claims {
        Some(claims) => event["requestContext"]["authorizer"]["jwt"]["claims"] = claims,
        None => {
            event["requestContext"]
                .as_object_mut()
                .unwrap()
                .remove("authorizer");
        }
    }
    match body {
        Some(b) if base64 => {
            use base64::Engine;
            event["body"] = base64::engine::general_purpose::STANDARD.encode(b).into();
            event["isBase64Encoded"] = true.into();
        }
        Some(b) => event["body"] = b.into(),
        None => {
            event.as_object_mut().unwrap().remove("body");
        }
    }
    event.to_string()
}

async fn send(router: &axum::Router, event: String) -> (StatusCode, Value) {
    let request = lambda_http::request::from_str(&event).expect("a valid API Gateway v2 event");
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const GRANT_BODY: &str = r#"{"resource":"prod-db","reason":"INC-7","duration":"PT1H"}"#;

async fn app_with_resource() -> (axum::Router, ticketbound::adapters::embedded::EmbeddedStore) {
    let (app, store, _) = local_test_app();
    define_webhook_resource(
        &local_router(app.clone()),
        "prod-db",
        "https://hooks.example.com/p",
    )
    .await;
    (lambda_router(app), store)
}

#[tokio::test]
async fn the_requester_is_the_jwt_email_claim() {
    let (router, _) = app_with_resource().await;
    let claims = json!({"email": "Alice@Example.com", "sub": "abc"});
    let (status, grant) = send(
        &router,
        event(
            "POST",
            "/v1/grants",
            Some(claims),
            json!({}),
            Some(GRANT_BODY),
            false,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    assert_eq!(grant["requester"], "alice@example.com");
}

#[tokio::test]
async fn a_base64_encoded_body_is_read() {
    let (router, _) = app_with_resource().await;
    let claims = json!({"email": "alice@example.com"});
    let (status, grant) = send(
        &router,
        event(
            "POST",
            "/v1/grants",
            Some(claims),
            json!({}),
            Some(GRANT_BODY),
            true,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
}

#[tokio::test]
async fn groups_rendered_by_api_gateway_as_bracketed_text_give_roles() {
    let (router, _) = app_with_resource().await;
    let (_, grant) = send(
        &router,
        event(
            "POST",
            "/v1/grants",
            Some(json!({"email": "alice@example.com"})),
            json!({}),
            Some(GRANT_BODY),
            false,
        ),
    )
    .await;
    let id = grant["id"].as_str().unwrap();
    let approver =
        json!({"email": "bob@example.com", "groups": "[engineering ticketbound-approvers]"});
    let (status, approved) = send(
        &router,
        event(
            "POST",
            &format!("/v1/grants/{id}/approve"),
            Some(approver),
            json!({}),
            None,
            false,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"], "active");
}

#[tokio::test]
async fn groups_as_a_json_array_give_roles() {
    let (router, _) = app_with_resource().await;
    let admin = json!({"email": "root@example.com", "groups": "[\"ticketbound-admins\"]"});
    let body = r#"{"name":"Staging","provisioner":{"kind":"none"}}"#;
    let (status, json) = send(
        &router,
        event(
            "PUT",
            "/v1/resources/staging-db",
            Some(admin),
            json!({}),
            Some(body),
            false,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
}

#[tokio::test]
async fn without_authorizer_claims_the_request_is_unauthenticated() {
    let (router, store) = app_with_resource().await;
    let (status, body) = send(
        &router,
        event(
            "POST",
            "/v1/grants",
            None,
            json!({}),
            Some(GRANT_BODY),
            false,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthenticated");
    let (status, _) = send(
        &router,
        event(
            "POST",
            "/v1/grants",
            Some(json!({"sub": "no-email"})),
            json!({}),
            Some(GRANT_BODY),
            false,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        store
            .list_grants(&GrantFilter::default(), 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn the_lambda_api_never_trusts_identity_headers() {
    let (router, _) = app_with_resource().await;
    let spoof = json!({"x-ticketbound-user": "admin@example.com", "x-ticketbound-groups": "ticketbound-admins"});
    let (status, _) = send(
        &router,
        event(
            "POST",
            "/v1/grants",
            None,
            spoof.clone(),
            Some(GRANT_BODY),
            false,
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "headers alone must not authenticate"
    );
    let body = r#"{"name":"Evil","provisioner":{"kind":"none"}}"#;
    let (status, json) = send(
        &router,
        event(
            "PUT",
            "/v1/resources/evil",
            Some(json!({"email": "alice@example.com"})),
            spoof,
            Some(body),
            false,
        ),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "headers must not add groups: {json}"
    );
}
