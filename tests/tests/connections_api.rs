//! Connections through the portal API, as an admin and a requester use them: CRUD, authorization status
//! transitions, ticket search, ticket-binding checks, and that no secret ever leaves in a body or a log line.

mod support;

use axum::http::StatusCode;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use wiremock::matchers::{header, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use support::{
    ADMIN, ALICE, BOB, TestApp, basic, cloud_issue, cloud_user, quick_policy, spawn_app,
};
use ticketbound::domain::GrantStatus;
use ticketbound::domain::connection::ConnectionKind;
use ticketbound::ports::{GrantFilter, GrantStore};

const TOKEN: &str = "atl-token-0123456789";

fn cloud_body(server: &MockServer, token: &str) -> Value {
    json!({
        "id": "jira-main", "kind": "jira_cloud", "base_url": server.uri(),
        "email": "bot@acme.com", "api_token": token, "closed_statuses": ["Won't Do"]
    })
}

async fn create_cloud(app: &TestApp, server: &MockServer, token: &str) -> Value {
    let created = app
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(cloud_body(server, token)),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.json
}

async fn mount_myself(server: &MockServer, token: &str, status: u16) {
    let template = if status == 200 {
        ResponseTemplate::new(200).set_body_json(cloud_user("acc-bot", Some("bot@acme.com")))
    } else {
        ResponseTemplate::new(status).set_body_json(json!({"errorMessages": ["Unauthorized"]}))
    };
    Mock::given(path("/rest/api/3/myself"))
        .and(header(
            "authorization",
            basic("bot@acme.com", token).as_str(),
        ))
        .respond_with(template)
        .mount(server)
        .await;
    Mock::given(path("/rest/api/3/project/search"))
        .and(header(
            "authorization",
            basic("bot@acme.com", token).as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"values": [{"key": "SEC", "name": "Security"}]})),
        )
        .mount(server)
        .await;
}

async fn grants_stored(app: &TestApp) -> usize {
    app.store
        .list_grants(&GrantFilter::default(), 100, None)
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test]
async fn admins_create_read_change_and_delete_connections() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;

    let created = create_cloud(&app, &server, TOKEN).await;
    assert_eq!(created["id"], "jira-main");
    assert_eq!(created["api_token"], "********");
    assert_eq!(created["status"], "connected");
    assert_eq!(created["last_verified_at"], Value::Null);
    let webhook_secret = created["webhook_secret"].as_str().unwrap().to_owned();
    assert_eq!(webhook_secret.len(), 64, "generated and shown once");
    assert_eq!(created["webhook_secrets_active"], 1);

    let read = app
        .call("GET", "/v1/connections/jira-main", ADMIN, None)
        .await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json["webhook_secret"], "********");
    assert_eq!(read.json["closed_statuses"], json!(["Won't Do"]));
    assert!(!read.text.contains(&webhook_secret) && !read.text.contains(TOKEN));

    // Freshservice by domain, Data Center with a PAT.
    let fs = app
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(json!({
                "id": "fs", "kind": "freshservice", "domain": "acme", "api_key": "fs-key-123",
                "webhook_secret": "a-chosen-webhook-secret"
            })),
        )
        .await;
    assert_eq!(fs.status, StatusCode::CREATED, "{}", fs.text);
    assert_eq!(fs.json["base_url"], "https://acme.freshservice.com");
    assert_eq!(fs.json["closed_statuses"], json!([4, 5]));
    assert_eq!(
        fs.json["webhook_secret"], "********",
        "a chosen secret is not echoed"
    );
    let dc = app
        .call("POST", "/v1/connections", ADMIN, Some(json!({
            "id": "jira-dc", "kind": "jira_data_center", "base_url": "https://jira.corp.example/jira/",
            "personal_access_token": "dc-pat"
        })))
        .await;
    assert_eq!(dc.status, StatusCode::CREATED, "{}", dc.text);
    assert_eq!(dc.json["personal_access_token"], "********");
    assert_eq!(dc.json["base_url"], "https://jira.corp.example/jira");

    let list = app
        .call("GET", "/v1/connections?limit=2", ADMIN, None)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json["items"].as_array().unwrap().len(), 2);
    let cursor = list.json["next"].as_str().unwrap().to_owned();
    let rest = app
        .call(
            "GET",
            &format!("/v1/connections?cursor={cursor}"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(rest.json["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest.json["next"], Value::Null);

    // Rotation of the webhook secret: add a new one (shown once), then retire the old.
    let rotated = app
        .call(
            "PATCH",
            "/v1/connections/jira-main",
            ADMIN,
            Some(json!({"new_webhook_secret": true})),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    assert_eq!(rotated.json["webhook_secrets_active"], 2);
    assert_ne!(rotated.json["webhook_secret"], "********");
    let retired = app
        .call(
            "PATCH",
            "/v1/connections/jira-main",
            ADMIN,
            Some(json!({"retire_old_webhook_secrets": true, "closed_statuses": []})),
        )
        .await;
    assert_eq!(retired.json["webhook_secrets_active"], 1);
    assert_eq!(retired.json["closed_statuses"], json!([]));

    let deleted = app.call("DELETE", "/v1/connections/fs", ADMIN, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = app.call("GET", "/v1/connections/fs", ADMIN, None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.json["error"]["code"], "connection_not_found");
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    create_cloud(&app, &server, TOKEN).await;
    let before = app
        .call("GET", "/v1/connections/jira-main", ADMIN, None)
        .await
        .json;

    let cases: Vec<(&str, &str, Value, StatusCode, &str)> = vec![
        (
            "POST",
            "/v1/connections",
            cloud_body(&server, TOKEN),
            StatusCode::CONFLICT,
            "connection_exists",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"id": "x", "kind": "jira_cloud", "base_url": "http://acme.example", "email": "a@b.c", "api_token": "t"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_base_url",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"id": "x", "kind": "jira_data_center", "base_url": "https://169.254.169.254", "personal_access_token": "t"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_base_url",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"id": "x", "kind": "jira_cloud", "site": "acme", "api_token": "t"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_credentials",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"id": "x", "kind": "freshservice", "domain": "acme", "api_key": "k", "api_token": "t"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "field_not_applicable",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"id": "X Y", "kind": "freshservice", "domain": "acme", "api_key": "k"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_id",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"id": "x", "kind": "freshservice", "domain": "acme", "api_key": "k", "webhook_secret": "short"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_webhook_secret",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"id": "x", "kind": "freshservice", "domain": "acme", "api_key": "k", "closed_statuses": ["Closed"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_closed_statuses",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"id": "x", "kind": "zendesk"}),
            StatusCode::BAD_REQUEST,
            "malformed_request",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"id": "x", "kind": "freshservice", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "malformed_request",
        ),
        (
            "PATCH",
            "/v1/connections/jira-main",
            json!({"kind": "freshservice"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "kind_mismatch",
        ),
        (
            "PATCH",
            "/v1/connections/jira-main",
            json!({"base_url": "ftp://x", "api_token": "new"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_base_url",
        ),
        (
            "PATCH",
            "/v1/connections/jira-main",
            json!({"email": "not-an-email", "api_token": "new"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_email",
        ),
        (
            "PATCH",
            "/v1/connections/nope",
            json!({}),
            StatusCode::NOT_FOUND,
            "connection_not_found",
        ),
    ];
    for (method, route, body, status, code) in cases {
        let answer = app.call(method, route, ADMIN, Some(body.clone())).await;
        assert_eq!(
            answer.status, status,
            "{method} {route} {body}: {}",
            answer.text
        );
        assert_eq!(answer.json["error"]["code"], code, "{body}");
    }
    let after = app
        .call("GET", "/v1/connections/jira-main", ADMIN, None)
        .await
        .json;
    assert_eq!(before, after);
    let list = app.call("GET", "/v1/connections", ADMIN, None).await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 1);
}

/// The settings form of each kind as its plug-in describes it is exactly what the API takes for that kind: the
/// credential fields it parses (secret where they are secrets), the way it names its site, and where its
/// deliveries arrive.
#[tokio::test]
async fn every_kind_describes_its_settings_form_and_webhook_registration() {
    let app = spawn_app(quick_policy()).await;
    let answer = app.call("GET", "/v1/connection-kinds", ADMIN, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let items = answer.json["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|k| k["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "jira_cloud",
            "jira_data_center",
            "freshservice",
            "servicenow",
            "linear"
        ]
    );
    for (item, kind) in items
        .iter()
        .zip(ticketbound::adapters::ticket_systems::kinds())
    {
        let rules = ticketbound::adapters::ticket_systems::rules(kind);
        assert!(!item["label"].as_str().unwrap().is_empty());
        let fields = item["fields"].as_array().unwrap();
        let named = |name: &str| fields.iter().find(|f| f["name"] == name);
        for credential in rules.credential_fields() {
            let field = named(credential).unwrap_or_else(|| panic!("{kind:?} {credential}"));
            let secret = !matches!(
                *credential,
                "email" | "username" | "token_type" | "client_id"
            );
            assert_eq!(field["secret"], secret, "{kind:?} {credential}");
            assert!(!field["label"].as_str().unwrap().is_empty());
        }
        let site = rules.host_form().map_or("base_url", |h| h.field);
        // A kind with one API for everybody (Linear) asks for no URL at all.
        if rules.default_base_url().is_none() {
            assert_eq!(named(site).unwrap()["required"], true, "{kind:?}");
        }
        assert_eq!(
            named("token_type").is_some(),
            rules.credential_fields().contains(&"token_type"),
            "{kind:?}"
        );
        // Nothing is described that the API would refuse.
        for field in fields {
            let name = field["name"].as_str().unwrap();
            assert!(
                rules.credential_fields().contains(&name) || name == site || name == "token_type",
                "{kind:?} describes `{name}`"
            );
        }
        let path = item["webhook"]["path"].as_str().unwrap();
        let source = match kind {
            ConnectionKind::JiraCloud | ConnectionKind::JiraDataCenter => "jira",
            other => other.as_str(),
        };
        assert_eq!(path, format!("/webhooks/{source}/{{connection}}"));
        let steps = item["webhook"]["steps"].as_array().unwrap();
        assert!(steps.iter().any(|s| s.as_str().unwrap().contains("{url}")));
        assert_eq!(
            item["closed_statuses"]["default"],
            serde_json::to_value(rules.default_closed_statuses()).unwrap()
        );
    }
    assert_eq!(items[2]["closed_statuses"]["default"], json!([4, 5]));
    let dc = &items[1]["fields"];
    assert_eq!(dc[1]["group"], "token");
    assert_eq!(dc[2]["group"], "password");
}

#[tokio::test]
async fn only_admins_manage_connections() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    create_cloud(&app, &server, TOKEN).await;
    for (method, route, body) in [
        ("GET", "/v1/connection-kinds", None),
        ("GET", "/v1/connections", None),
        ("GET", "/v1/connections/jira-main", None),
        ("POST", "/v1/connections", Some(cloud_body(&server, TOKEN))),
        (
            "PATCH",
            "/v1/connections/jira-main",
            Some(json!({"api_token": "x"})),
        ),
        ("DELETE", "/v1/connections/jira-main", None),
        ("POST", "/v1/connections/jira-main/verify", None),
    ] {
        for who in [ALICE, BOB] {
            let answer = app.call(method, route, who, body.clone()).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {route}");
            assert_eq!(answer.json["error"]["code"], "not_an_admin");
        }
    }
}

#[tokio::test]
async fn a_revoked_token_needs_reauthorization_until_rotated_and_verified() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    mount_myself(&server, TOKEN, 200).await;
    create_cloud(&app, &server, TOKEN).await;

    let verified = app
        .call("POST", "/v1/connections/jira-main/verify", ADMIN, None)
        .await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text);
    assert_eq!(verified.json["verified"], true);
    assert_eq!(verified.json["status"], "connected");
    assert_eq!(verified.json["account"]["id"], "acc-bot");
    assert_eq!(verified.json["projects"][0]["key"], "SEC");
    assert!(verified.json["last_verified_at"].is_string());

    // The token is revoked in Jira: every call with it now answers 401.
    server.reset().await;
    Mock::given(path("/rest/api/3/user/search"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_string("Client must be authenticated to access this resource."),
        )
        .mount(&server)
        .await;
    let tickets = app
        .call("GET", "/v1/tickets?connection=jira-main", ALICE, None)
        .await;
    assert_eq!(tickets.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        tickets.json["error"]["code"],
        "connection_needs_reauthorization"
    );
    let shown = app
        .call("GET", "/v1/connections/jira-main", ADMIN, None)
        .await
        .json;
    assert_eq!(shown["status"], "needs_reauthorization");
    assert!(shown["last_error"].as_str().unwrap().contains("401"));
    assert_eq!(shown["last_verified_at"], verified.json["last_verified_at"]);

    // More refusals in a row: failed.
    mount_myself(&server, TOKEN, 401).await;
    for _ in 0..2 {
        let again = app
            .call("POST", "/v1/connections/jira-main/verify", ADMIN, None)
            .await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.json["verified"], false);
    }
    let failed = app
        .call("GET", "/v1/connections/jira-main", ADMIN, None)
        .await
        .json;
    assert_eq!(failed["status"], "failed");

    // The admin rotates the token; the status says what was last seen until it is verified.
    let new_token = "atl-token-rotated-9876";
    mount_myself(&server, new_token, 200).await;
    let patched = app
        .call(
            "PATCH",
            "/v1/connections/jira-main",
            ADMIN,
            Some(json!({"api_token": new_token})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.json["status"], "failed");
    let verified = app
        .call("POST", "/v1/connections/jira-main/verify", ADMIN, None)
        .await;
    assert_eq!(verified.json["verified"], true);
    assert_eq!(verified.json["status"], "connected");
    assert_eq!(verified.json["last_error"], Value::Null);
    let shown = app
        .call("GET", "/v1/connections/jira-main", ADMIN, None)
        .await
        .json;
    assert_eq!(shown["status"], "connected");
}

#[tokio::test]
async fn requesters_list_their_open_tickets() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    let fs = app
        .call("POST", "/v1/connections", ADMIN, Some(json!({
            "id": "fs", "kind": "freshservice", "base_url": server.uri(), "api_key": "fs-key-123"
        })))
        .await;
    assert_eq!(fs.status, StatusCode::CREATED, "{}", fs.text);
    Mock::given(path("/api/v2/agents"))
        .and(query_param("email", "alice@example.com"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"agents": [{"id": 9, "email": "alice@example.com"}]})),
        )
        .mount(&server)
        .await;
    Mock::given(path("/api/v2/tickets/filter"))
        .and(query_param(
            "query",
            "\"agent_id:9 AND (status:2 OR status:3)\"",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"tickets": [
            {"id": 266, "subject": "Database is slow", "status": 2, "responder_id": 9},
            {"id": 267, "subject": "Printer", "status": 3, "responder_id": 9}
        ], "total": 2})))
        .mount(&server)
        .await;
    let all = app
        .call("GET", "/v1/tickets?connection=fs", ALICE, None)
        .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(all.json["next"], Value::Null);
    assert_eq!(
        all.json["items"][0],
        json!({
            "key": "266", "summary": "Database is slow", "status": "Open",
            "url": format!("{}/a/tickets/266", server.uri())
        })
    );
    let filtered = app
        .call("GET", "/v1/tickets?connection=fs&q=database", ALICE, None)
        .await;
    assert_eq!(filtered.json["items"].as_array().unwrap().len(), 1);
    let nobody = app
        .call("GET", "/v1/tickets?connection=fs", BOB, None)
        .await;
    assert_eq!(
        nobody.json["items"],
        json!([]),
        "an unknown e-mail has no tickets"
    );
    let missing = app.call("GET", "/v1/tickets", ALICE, None).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let unknown = app
        .call("GET", "/v1/tickets?connection=nope", ALICE, None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

async fn mount_issue(server: &MockServer, key: &str, template: ResponseTemplate) {
    Mock::given(path(format!("/rest/api/3/issue/{key}")))
        .respond_with(template)
        .mount(server)
        .await;
}

fn request(key: &str) -> Value {
    json!({"resource": "prod-db", "reason": "debugging", "duration": "PT1H",
           "ticket": {"connection": "jira-main", "key": key}})
}

#[tokio::test]
async fn ticket_bindings_are_checked_before_anything_is_stored() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    create_cloud(&app, &server, TOKEN).await;
    let ok = |v: Value| ResponseTemplate::new(200).set_body_json(v);
    mount_issue(
        &server,
        "SEC-1",
        ok(cloud_issue(
            "SEC-1",
            "In Progress",
            "indeterminate",
            Some(cloud_user("acc-alice", None)),
        )),
    )
    .await;
    mount_issue(
        &server,
        "SEC-2",
        ok(cloud_issue(
            "SEC-2",
            "In Progress",
            "indeterminate",
            Some(cloud_user("acc-carol", Some("carol@example.com"))),
        )),
    )
    .await;
    mount_issue(
        &server,
        "SEC-3",
        ok(cloud_issue(
            "SEC-3",
            "Done",
            "done",
            Some(cloud_user("acc-alice", None)),
        )),
    )
    .await;
    mount_issue(
        &server,
        "SEC-4",
        ok(cloud_issue(
            "SEC-4",
            "Won't Do",
            "indeterminate",
            Some(cloud_user("acc-alice", None)),
        )),
    )
    .await;
    mount_issue(
        &server,
        "SEC-5",
        ok(cloud_issue("SEC-5", "To Do", "new", None)),
    )
    .await;
    mount_issue(&server, "SEC-404", ResponseTemplate::new(404)).await;
    mount_issue(&server, "SEC-500", ResponseTemplate::new(500)).await;
    mount_issue(
        &server,
        "SEC-HANG",
        ok(json!({})).set_delay(std::time::Duration::from_secs(30)),
    )
    .await;
    Mock::given(path("/rest/api/3/user/search"))
        .and(query_param("query", "alice@example.com"))
        .respond_with(ok(json!([cloud_user("acc-alice", None)])))
        .mount(&server)
        .await;

    let cases = [
        (
            "SEC-2",
            StatusCode::UNPROCESSABLE_ENTITY,
            "ticket_not_assigned_to_requester",
        ),
        ("SEC-3", StatusCode::UNPROCESSABLE_ENTITY, "ticket_closed"),
        ("SEC-4", StatusCode::UNPROCESSABLE_ENTITY, "ticket_closed"),
        (
            "SEC-5",
            StatusCode::UNPROCESSABLE_ENTITY,
            "ticket_not_assigned_to_requester",
        ),
        (
            "SEC-404",
            StatusCode::UNPROCESSABLE_ENTITY,
            "ticket_not_found",
        ),
        (
            "SEC-500",
            StatusCode::SERVICE_UNAVAILABLE,
            "ticket_system_unavailable",
        ),
        (
            "SEC-HANG",
            StatusCode::SERVICE_UNAVAILABLE,
            "ticket_system_unavailable",
        ),
    ];
    for (key, status, code) in cases {
        let answer = app
            .call("POST", "/v1/grants", ALICE, Some(request(key)))
            .await;
        assert_eq!(answer.status, status, "{key}: {}", answer.text);
        assert_eq!(answer.json["error"]["code"], code, "{key}");
    }
    let not_assigned = app
        .call("POST", "/v1/grants", ALICE, Some(request("SEC-2")))
        .await;
    assert!(
        not_assigned.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SEC-2")
    );
    let unknown = app
        .call(
            "POST",
            "/v1/grants",
            ALICE,
            Some(
                json!({"resource": "prod-db", "reason": "r", "duration": "PT1H",
            "ticket": {"connection": "other", "key": "SEC-1"}}),
            ),
        )
        .await;
    assert_eq!(unknown.json["error"]["code"], "unknown_connection");
    assert_eq!(
        grants_stored(&app).await,
        0,
        "no refused request stored anything"
    );

    // Assigned to Alice, whose e-mail Jira hides: her search result cannot prove it is her (the search matches
    // prefixes), so the request is refused with the way to fix it, and nothing is stored.
    let unverifiable = app
        .call("POST", "/v1/grants", ALICE, Some(request("SEC-1")))
        .await;
    assert_eq!(
        unverifiable.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unverifiable.text
    );
    assert_eq!(
        unverifiable.json["error"]["code"],
        "requester_not_verifiable"
    );
    let message = unverifiable.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("PATCH /v1/connections/jira-main") && message.contains("\"people\""),
        "{message}"
    );
    assert_eq!(grants_stored(&app).await, 0);

    // An admin maps her address to her account: exact, so the same request now binds.
    let mapped = app
        .call(
            "PATCH",
            "/v1/connections/jira-main",
            ADMIN,
            Some(json!({"people": {"Alice@Example.com": "acc-alice"}})),
        )
        .await;
    assert_eq!(mapped.status, StatusCode::OK, "{}", mapped.text);
    assert_eq!(
        mapped.json["people"],
        json!({"alice@example.com": "acc-alice"})
    );
    let granted = app
        .call("POST", "/v1/grants", ALICE, Some(request("SEC-1")))
        .await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text);
    assert_eq!(grants_stored(&app).await, 1);

    // The binding keeps the connection from being deleted.
    let refused = app
        .call("DELETE", "/v1/connections/jira-main", ADMIN, None)
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.json["error"]["code"], "connection_in_use");

    // Checked again at approval: the ticket was closed meanwhile.
    server.reset().await;
    mount_issue(
        &server,
        "SEC-1",
        ok(cloud_issue(
            "SEC-1",
            "Done",
            "done",
            Some(cloud_user("acc-alice", None)),
        )),
    )
    .await;
    let id = granted.json["id"].as_str().unwrap();
    let approve = app
        .call("POST", &format!("/v1/grants/{id}/approve"), BOB, None)
        .await;
    assert_eq!(
        approve.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        approve.text
    );
    assert_eq!(approve.json["error"]["code"], "ticket_closed");
    let still = app.store.get_grant(id).await.unwrap().unwrap();
    assert_eq!(still.status, GrantStatus::Pending);

    // `force` does not leave the request bound to a deleted connection; `end_grants` cancels it and deletes.
    let forced = app
        .call(
            "DELETE",
            "/v1/connections/jira-main?force=true",
            ADMIN,
            None,
        )
        .await;
    assert_eq!(forced.status, StatusCode::CONFLICT, "{}", forced.text);
    assert_eq!(forced.json["error"]["code"], "connection_in_use");
    let ended = app
        .call(
            "DELETE",
            "/v1/connections/jira-main?end_grants=true",
            ADMIN,
            None,
        )
        .await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT, "{}", ended.text);
    let cancelled = app.store.get_grant(id).await.unwrap().unwrap();
    assert_eq!(
        (cancelled.status, cancelled.end_reason),
        (
            GrantStatus::Cancelled,
            Some(ticketbound::domain::EndReason::ConnectionRemoved)
        )
    );
}

/// The reported attack: Jira Cloud hides e-mails and its user search matches prefixes, so
/// `mallory@example.com` finds only the account `mallory@example.com.evil` (address hidden). That account is
/// not Mallory, so neither a binding to its ticket nor a search of its tickets is allowed.
#[tokio::test]
async fn a_prefix_match_with_a_hidden_address_never_binds_or_lists_another_persons_tickets() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    create_cloud(&app, &server, TOKEN).await;
    mount_issue(
        &server,
        "SEC-7",
        ResponseTemplate::new(200).set_body_json(cloud_issue(
            "SEC-7",
            "In Progress",
            "indeterminate",
            Some(cloud_user("acc-evil", None)),
        )),
    )
    .await;
    Mock::given(path("/rest/api/3/user/search"))
        .and(query_param("query", "mallory@example.com"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([cloud_user("acc-evil", None)])),
        )
        .mount(&server)
        .await;
    Mock::given(path("/rest/api/3/search/jql"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issues": [cloud_issue("SEC-7", "In Progress", "indeterminate", None)], "isLast": true
        })))
        .mount(&server)
        .await;
    let mallory = ("mallory@example.com", "");

    let bind = app
        .call("POST", "/v1/grants", mallory, Some(request("SEC-7")))
        .await;
    assert_eq!(
        bind.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        bind.text
    );
    assert_eq!(bind.json["error"]["code"], "requester_not_verifiable");
    assert_eq!(grants_stored(&app).await, 0);

    let listed = app
        .call("GET", "/v1/tickets?connection=jira-main", mallory, None)
        .await;
    assert_eq!(
        listed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        listed.text
    );
    assert_eq!(listed.json["error"]["code"], "requester_not_verifiable");
    let searched = server.received_requests().await.unwrap();
    assert!(
        !searched
            .iter()
            .any(|r| r.url.path() == "/rest/api/3/search/jql"),
        "nobody's tickets were searched for Mallory"
    );

    // A mapping to another account is exact too: Mallory mapped to her own account still cannot bind SEC-7.
    let mapped = app
        .call(
            "PATCH",
            "/v1/connections/jira-main",
            ADMIN,
            Some(json!({"people": {"mallory@example.com": "acc-mallory"}})),
        )
        .await;
    assert_eq!(mapped.status, StatusCode::OK, "{}", mapped.text);
    let bind = app
        .call("POST", "/v1/grants", mallory, Some(request("SEC-7")))
        .await;
    assert_eq!(bind.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bind.json["error"]["code"],
        "ticket_not_assigned_to_requester"
    );
    assert_eq!(grants_stored(&app).await, 0);
}

#[tokio::test]
async fn the_people_mapping_is_validated_merged_and_removable() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    create_cloud(&app, &server, TOKEN).await;
    let patch = |body: Value| {
        let app = &app;
        async move {
            app.call("PATCH", "/v1/connections/jira-main", ADMIN, Some(body))
                .await
        }
    };
    let first =
        patch(json!({"people": {"a@example.com": "acc-a", "b@example.com": "acc-b"}})).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);

    let unprocessable = (StatusCode::UNPROCESSABLE_ENTITY, "invalid_people");
    for (bad, (status, code)) in [
        (
            json!({"people": {"not-an-address": "acc-x"}}),
            unprocessable,
        ),
        (json!({"people": {"c@example.com": ""}}), unprocessable),
        (
            json!({"people": {"c@example.com": "has space"}}),
            unprocessable,
        ),
        (
            json!({"people": {"c@example.com": 42}}),
            (StatusCode::BAD_REQUEST, "malformed_request"),
        ),
    ] {
        let refused = patch(bad.clone()).await;
        assert_eq!(refused.status, status, "{bad}: {}", refused.text);
        assert_eq!(refused.json["error"]["code"], code, "{bad}");
    }
    let shown = app
        .call("GET", "/v1/connections/jira-main", ADMIN, None)
        .await;
    assert_eq!(
        shown.json["people"],
        json!({"a@example.com": "acc-a", "b@example.com": "acc-b"}),
        "refused changes left the mapping as it was"
    );

    let merged = patch(json!({"people": {"a@example.com": null, "c@example.com": "acc-c"}})).await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.text);
    assert_eq!(
        merged.json["people"],
        json!({"b@example.com": "acc-b", "c@example.com": "acc-c"})
    );
}

// ------------------------------------------------------------------ no secret in bodies or logs

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary, at every level, from every crate.
fn captured_logs() -> Buffer {
    static LOGS: OnceLock<Buffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        buffer
    })
    .clone()
}

#[tokio::test]
async fn no_secret_appears_in_any_body_or_log_line() {
    let logs = captured_logs();
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    let (token, rotated, fs_key, pat) = (
        "tok-SECRET-aaaa1111",
        "tok-SECRET-bbbb2222",
        "fskey-SECRET-cccc",
        "pat-SECRET-dddd",
    );
    let chosen_webhook = "webhook-SECRET-eeee-ffff";
    mount_myself(&server, token, 200).await;
    mount_issue(
        &server,
        "SEC-1",
        ResponseTemplate::new(200).set_body_json(cloud_issue(
            "SEC-1",
            "In Progress",
            "indeterminate",
            Some(cloud_user("acc-alice", Some("alice@example.com"))),
        )),
    )
    .await;
    Mock::given(path("/rest/api/3/user/search"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([cloud_user("acc-alice", Some("alice@example.com"))])),
        )
        .mount(&server)
        .await;
    Mock::given(path("/rest/api/3/search/jql"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"issues": [cloud_issue("SEC-1", "In Progress", "indeterminate", None)], "isLast": true})))
        .mount(&server)
        .await;

    let mut bodies = Vec::new();
    let created = app
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(cloud_body(&server, token)),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let generated = created.json["webhook_secret"].as_str().unwrap().to_owned();
    // The generated webhook secret is shown in this one answer, by design; every other secret never.
    bodies.push(created.text.replace(&generated, "<shown once>"));
    for (method, route, who, body) in [
        (
            "POST",
            "/v1/connections",
            ADMIN,
            Some(
                json!({"id": "dc", "kind": "jira_data_center", "base_url": server.uri(), "personal_access_token": pat, "webhook_secret": chosen_webhook}),
            ),
        ),
        (
            "POST",
            "/v1/connections",
            ADMIN,
            Some(
                json!({"id": "fs", "kind": "freshservice", "base_url": server.uri(), "api_key": fs_key}),
            ),
        ),
        ("POST", "/v1/connections/jira-main/verify", ADMIN, None),
        ("GET", "/v1/tickets?connection=jira-main", ALICE, None),
        ("POST", "/v1/grants", ALICE, Some(request("SEC-1"))),
        ("GET", "/v1/connections", ADMIN, None),
        ("GET", "/v1/connections/dc", ADMIN, None),
        (
            "PATCH",
            "/v1/connections/jira-main",
            ADMIN,
            Some(json!({"api_token": rotated, "add_webhook_secret": "added-SECRET-gggg-hhhh"})),
        ),
        ("POST", "/v1/connections/jira-main/verify", ADMIN, None),
        ("POST", "/v1/connections/fs/verify", ADMIN, None),
        (
            "POST",
            "/v1/connections",
            ADMIN,
            Some(
                json!({"id": "bad", "kind": "jira_cloud", "base_url": "http://x.example", "email": "a@b.c", "api_token": token}),
            ),
        ),
    ] {
        let answer = app.call(method, route, who, body).await;
        assert!(
            answer.status != StatusCode::INTERNAL_SERVER_ERROR,
            "{route}: {}",
            answer.text
        );
        bodies.push(answer.text);
    }
    let secret_file = std::fs::read_to_string(app.dir.join("secrets.json")).unwrap();
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("connection created"),
        "the logs were captured"
    );
    for secret in [
        token,
        rotated,
        fs_key,
        pat,
        chosen_webhook,
        "added-SECRET-gggg-hhhh",
        generated.as_str(),
    ] {
        // The first token was rotated away; every other value is what the secret store holds now.
        if secret != token {
            assert!(secret_file.contains(secret), "{secret} was stored");
        }
        for body in &bodies {
            assert!(!body.contains(secret), "{secret} in a body: {body}");
        }
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
    // Nor in the form that travels on the wire.
    for credential in [
        basic("bot@acme.com", token),
        basic("bot@acme.com", rotated),
        basic(fs_key, "X"),
    ] {
        let encoded = credential.trim_start_matches("Basic ");
        assert!(
            !logs.contains(encoded),
            "an Authorization header in the logs"
        );
    }
    assert!(
        !logs.contains("SECRET"),
        "no secret-marked value anywhere in the logs"
    );
}
