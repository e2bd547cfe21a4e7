//! Identity from the tokens people send, through real API Gateway v2 events as `ticketbound-api` receives them:
//! an Atlassian account id claim matches a Jira Cloud requester exactly where a search by a hidden address
//! cannot (and the approval's re-check matches the same way), a user-name claim is looked up exactly on Jira
//! Data Center where addresses are masked, a claim of the wrong form is never used, and a token without the
//! e-mail claim is told, for its issuer, how to carry one.

mod support;

use axum::Router;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use support::{ADMIN, TestApp, cloud_issue, cloud_user, quick_policy, spawn_app};
use ticketbound::domain::identity::RoleGroups;
use ticketbound::http::{AppState, IdentitySource, JwtClaimNames, api_router};

const ACCOUNT_CLAIM: &str = "custom:atlassian_account_id";
const USERNAME_CLAIM: &str = "samaccountname";

/// The portal API reading JWT claims, with the identity claims configured.
fn jwt_router(t: &TestApp) -> Router {
    api_router(AppState {
        app: t.app.clone(),
        identity: IdentitySource::Jwt(JwtClaimNames {
            email: "email".into(),
            groups: "cognito:groups".into(),
            atlassian_account_id: Some(ACCOUNT_CLAIM.into()),
            username: Some(USERNAME_CLAIM.into()),
        }),
        roles: RoleGroups::default(),
    })
}

/// The AWS documentation's payload-2.0 example, as a request for `method path?query` with `claims`.
async fn send(
    router: &Router,
    method: &str,
    path_and_query: &str,
    claims: Value,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/apigw-v2-post-jwt.json")).unwrap();
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    event["rawPath"] = path.into();
    event["rawQueryString"] = query.into();
    let params: serde_json::Map<String, Value> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    event["queryStringParameters"] = Value::Object(params);
    event.as_object_mut().unwrap().remove("pathParameters");
    event["routeKey"] = format!("{method} {path}").into();
    event["requestContext"]["routeKey"] = event["routeKey"].clone();
    event["requestContext"]["http"]["method"] = method.into();
    event["requestContext"]["http"]["path"] = path.into();
    event["headers"] = json!({"content-type": "application/json", "host": "api.example.com"});
    event["requestContext"]["authorizer"]["jwt"]["claims"] = claims;
    match body {
        Some(b) => event["body"] = b.to_string().into(),
        None => {
            event.as_object_mut().unwrap().remove("body");
        }
    }
    let request = lambda_http::request::from_str(&event.to_string()).expect("an API Gateway event");
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn alice(extra: Value) -> Value {
    let mut claims =
        json!({"email": "alice@corp.co", "sub": "0b5e…", "iss": "https://idp.example.com"});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn approver() -> Value {
    json!({"email": "bob@corp.co", "cognito:groups": "[ticketbound-approvers]"})
}

fn bound_request(connection: &str, key: &str) -> Value {
    json!({"resource": "prod-db", "reason": "INC-7", "duration": "PT1H",
        "ticket": {"connection": connection, "key": key}})
}

async fn requests_to(server: &MockServer, wanted: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == wanted)
        .count()
}

async fn jira_cloud(t: &TestApp, server: &MockServer) {
    let created = t
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(
                json!({"id": "jira", "kind": "jira_cloud", "base_url": server.uri(),
                "email": "bot@acme.com", "api_token": "tok-0123456789", "token_type": "classic"}),
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    // SEC-42 is Alice's; her address is hidden by her profile's visibility.
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/SEC-42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(cloud_issue(
            "SEC-42",
            "In Progress",
            "indeterminate",
            Some(cloud_user("acc-alice", None)),
        )))
        .mount(server)
        .await;
    // The user search for `alice@corp.co` finds, by prefix, one account with a hidden address: a stranger
    // whose address may be `alice@corp.com`.
    Mock::given(method("GET"))
        .and(path("/rest/api/3/user/search"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([cloud_user("acc-stranger", None)])),
        )
        .mount(server)
        .await;
}

#[tokio::test]
async fn an_atlassian_account_id_claim_binds_exactly_where_a_hidden_address_cannot() {
    let t = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    jira_cloud(&t, &server).await;
    let router = jwt_router(&t);

    let (status, refused) = send(
        &router,
        "POST",
        "/v1/grants",
        alice(json!({})),
        Some(bound_request("jira", "SEC-42")),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "requester_not_verifiable");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("ATLASSIAN_ACCOUNT_ID_CLAIM") && message.contains("\"people\""),
        "the message names both exact ways: {message}"
    );
    let searches = requests_to(&server, "/rest/api/3/user/search").await;

    let (status, grant) = send(
        &router,
        "POST",
        "/v1/grants",
        alice(json!({ACCOUNT_CLAIM: "acc-alice"})),
        Some(bound_request("jira", "SEC-42")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    assert_eq!(
        grant["requester_claims"],
        json!({"atlassian_account_id": "acc-alice"})
    );
    let id = grant["id"].as_str().unwrap();
    // The approver's token carries no claim of Alice's: the re-check uses what her request recorded.
    let (status, approved) = send(
        &router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        approver(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"], "active");
    assert_eq!(
        requests_to(&server, "/rest/api/3/user/search").await,
        searches,
        "a claimed account id is never searched for"
    );

    let (status, other) = send(
        &router,
        "POST",
        "/v1/grants",
        alice(json!({ACCOUNT_CLAIM: "acc-mallory"})),
        Some(bound_request("jira", "SEC-42")),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{other}");
    assert_eq!(other["error"]["code"], "ticket_not_assigned_to_requester");
}

#[tokio::test]
async fn the_account_id_claim_lists_the_callers_tickets_without_a_search() {
    let t = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    jira_cloud(&t, &server).await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/search/jql"))
        .and(query_param(
            "jql",
            r#"assignee = "712020:cf20d007-987c-41f6-a858-a378543f8c96" AND statusCategory != Done ORDER BY updated DESC"#,
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issues": [cloud_issue("SEC-42", "In Progress", "indeterminate", None)], "isLast": true
        })))
        .expect(1)
        .mount(&server)
        .await;
    let router = jwt_router(&t);

    let (status, listed) = send(
        &router,
        "GET",
        "/v1/tickets?connection=jira",
        alice(json!({ACCOUNT_CLAIM: "712020:cf20d007-987c-41f6-a858-a378543f8c96"})),
        None,
    )
    .await;
    let (status_without, without) = send(
        &router,
        "GET",
        "/v1/tickets?connection=jira",
        alice(json!({})),
        None,
    )
    .await;

    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["items"][0]["key"], "SEC-42");
    assert_eq!(
        status_without,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{without}"
    );
    assert_eq!(without["error"]["code"], "requester_not_verifiable");
    assert_eq!(requests_to(&server, "/rest/api/3/user/search").await, 1);
}

#[tokio::test]
async fn a_claim_of_the_wrong_form_is_never_taken_as_an_account() {
    let t = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    jira_cloud(&t, &server).await;
    let router = jwt_router(&t);

    let (status, refused) = send(
        &router,
        "POST",
        "/v1/grants",
        alice(json!({ACCOUNT_CLAIM: "acc-alice\" OR assignee is not EMPTY"})),
        Some(bound_request("jira", "SEC-42")),
    )
    .await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "requester_not_verifiable");
}

async fn data_center(t: &TestApp, server: &MockServer) {
    let created = t
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(
                json!({"id": "dc", "kind": "jira_data_center", "base_url": server.uri(),
                "personal_access_token": "pat-0123456789"}),
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    // An instance whose e-mail visibility is "masked".
    let alice = json!({"name": "alice", "key": "JIRAUSER10100", "displayName": "Alice",
        "emailAddress": "alice at corp dot co", "active": true});
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/OPS-7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "10007", "key": "OPS-7",
            "fields": {"summary": "Disk full", "assignee": alice,
                "status": {"name": "Open", "statusCategory": {"key": "new"}}}
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/user/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([alice])))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/user"))
        .and(query_param("username", "alice"))
        .respond_with(ResponseTemplate::new(200).set_body_json(alice))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/user"))
        .and(query_param("username", "bob"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "name": "bob", "key": "JIRAUSER10200", "emailAddress": "bob at corp dot co", "active": true
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/user"))
        .and(query_param("username", "ghost"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "errorMessages": ["The user named 'ghost' does not exist"], "errors": {}
        })))
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_data_center_user_name_claim_is_looked_up_exactly_where_a_masked_address_is_refused() {
    let t = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    data_center(&t, &server).await;
    let router = jwt_router(&t);
    let post = |claims| {
        let router = router.clone();
        async move {
            send(
                &router,
                "POST",
                "/v1/grants",
                claims,
                Some(bound_request("dc", "OPS-7")),
            )
            .await
        }
    };

    let (masked_status, masked) = post(alice(json!({}))).await;
    let (status, grant) = post(alice(json!({USERNAME_CLAIM: "alice"}))).await;
    let (bob_status, bob) = post(alice(json!({USERNAME_CLAIM: "bob"}))).await;
    let (ghost_status, ghost) = post(alice(json!({USERNAME_CLAIM: "ghost"}))).await;

    assert_eq!(masked_status, StatusCode::UNPROCESSABLE_ENTITY, "{masked}");
    assert_eq!(masked["error"]["code"], "requester_not_verifiable");
    assert!(
        masked["error"]["message"]
            .as_str()
            .unwrap()
            .contains("USERNAME_CLAIM"),
        "{masked}"
    );
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    assert_eq!(grant["requester_claims"], json!({"username": "alice"}));
    assert_eq!(bob_status, StatusCode::UNPROCESSABLE_ENTITY, "{bob}");
    assert_eq!(bob["error"]["code"], "ticket_not_assigned_to_requester");
    assert_eq!(ghost_status, StatusCode::UNPROCESSABLE_ENTITY, "{ghost}");
    assert_eq!(ghost["error"]["code"], "ticket_not_assigned_to_requester");
    let lookups: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/rest/api/2/user")
        .map(|r| r.url.query().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        lookups,
        vec!["username=alice", "username=bob", "username=ghost"],
        "exact look-ups by user name, never the prefix search"
    );
}

#[tokio::test]
async fn a_token_without_the_email_claim_is_told_how_its_issuer_carries_one() {
    let t = spawn_app(quick_policy()).await;
    let router = jwt_router(&t);
    let cognito_access_token = json!({
        "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123",
        "token_use": "access", "client_id": "portal", "sub": "0b5e", "cognito:groups": "[dev]",
        "scope": "openid email"
    });

    let (status, answer) = send(&router, "GET", "/v1/grants", cognito_access_token, None).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthenticated");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Amazon Cognito access token") && message.contains("send the ID token"),
        "{message}"
    );
}
