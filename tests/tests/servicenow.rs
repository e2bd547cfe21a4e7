//! ServiceNow beyond the conformance suite, through the router against a `wiremock` instance answering as
//! ServiceNow documents: signing in with OAuth client credentials (`POST /oauth_token.do`, one token reused,
//! fetched once again after a 401, a refused client needing re-authorization without showing its secret) or with
//! an API key (`x-sn-apikey` on every call and never `Authorization`, masked, a refused key needing
//! re-authorization), the
//! connection's settings refused when they mix the two sign-ins, an audit incident opened on request (after a 429
//! with `Retry-After`), noted on approval and resolved when access ends (after a 5xx, by the pipeline), and
//! requested items (`issue_type: sc_req_item`) for the `ticket` provisioner and audit, found again by their
//! `correlation_id` after a 5xx that hid a created item, and closed complete.

mod support;

use axum::http::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{
    body_partial_json, body_string_contains, header, method, path, query_param,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

use support::{ADMIN, quick_policy, spawn_app};
use ticketbound::ports::{Job, JobKind};
use ticketbound_tests::{ALICE, APPROVER, TestApp};

const CLIENT_ID: &str = "4f8b5c2e9d1a4b7c8e3f6a0b1c2d3e4f";
const CLIENT_SECRET: &str = "snow-client-s3cr3t-value";
/// The OAuth application's user, as `sys_user` answers it.
const APP_USER: &str = "6816f79cc0a8016401c5a33be04be441";
/// The incident Ticketbound opens, and its `sys_id`.
const INCIDENT: &str = "INC0012345";
const INCIDENT_ID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";

/// `oauth_token.do` granting `token` to the connection's client credentials (the form RFC 6749 §4.4 sends).
async fn mount_token(server: &MockServer, token: &str, times: u64) {
    Mock::given(method("POST"))
        .and(path("/oauth_token.do"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains(format!("client_id={CLIENT_ID}").as_str()))
        .and(body_string_contains(format!("client_secret={CLIENT_SECRET}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": token, "scope": "useraccount", "token_type": "Bearer", "expires_in": 1799
        })))
        .up_to_n_times(times)
        .expect(times)
        .mount(server)
        .await;
}

/// `sys_user` answering the current user (the OAuth Application User) to `token`.
async fn mount_me(server: &MockServer, token: &str) {
    Mock::given(method("GET"))
        .and(path("/api/now/table/sys_user"))
        .and(query_param("sysparm_query", "sys_id=javascript:gs.getUserID()"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [
            {"sys_id": APP_USER, "user_name": "ticketbound.integration", "email": "tb@acme.com", "name": "Ticketbound"}
        ]})))
        .mount(server)
        .await;
}

/// The Table API refusing a token it no longer accepts.
fn not_authenticated() -> ResponseTemplate {
    ResponseTemplate::new(401).set_body_json(json!({
        "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
        "status": "failure"
    }))
}

async fn connect(app: &TestApp, server: &MockServer) -> Value {
    let created = app
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(json!({
                "id": "snow", "kind": "servicenow", "base_url": server.uri(),
                "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET
            })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(!created.text.contains(CLIENT_SECRET));
    created.json
}

async fn verify(app: &TestApp) -> Value {
    let verified = app
        .call("POST", "/v1/connections/snow/verify", ADMIN, None)
        .await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text);
    assert!(!verified.text.contains(CLIENT_SECRET));
    verified.json
}

#[tokio::test]
async fn client_credentials_get_one_token_reused_until_a_401_then_fetched_once_again() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    let created = connect(&app, &server).await;
    assert_eq!(created["client_id"], CLIENT_ID);
    assert_eq!(created["client_secret"], "********");
    assert!(created.get("username").is_none() && created.get("password").is_none());

    // The wizard offers the second sign-in from the plug-in's description.
    let kinds = app
        .call("GET", "/v1/connection-kinds", ADMIN, None)
        .await
        .json;
    let servicenow = kinds["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "servicenow")
        .unwrap();
    let field = |name: &str| {
        servicenow["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no field {name}"))
    };
    assert_eq!(
        (
            field("client_id")["group"].clone(),
            field("client_id")["secret"].clone()
        ),
        (json!("oauth"), json!(false))
    );
    assert_eq!(
        (
            field("client_secret")["group"].clone(),
            field("client_secret")["secret"].clone()
        ),
        (json!("oauth"), json!(true))
    );
    assert_eq!(field("password")["group"], "basic");

    // One token for both verifications: a client is built per use, the token outlives it.
    mount_token(&server, "snow-token-1", 1).await;
    mount_me(&server, "snow-token-1").await;
    for _ in 0..2 {
        let verified = verify(&app).await;
        assert_eq!(verified["verified"], true, "{verified}");
        assert_eq!(verified["status"], "connected");
        assert_eq!(verified["account"]["id"], APP_USER);
    }
    server.verify().await;

    // The instance revokes the token before it expires: the 401 fetches one new token, and the call succeeds.
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/sys_user"))
        .and(header("authorization", "Bearer snow-token-1"))
        .respond_with(not_authenticated())
        .expect(1)
        .mount(&server)
        .await;
    mount_token(&server, "snow-token-2", 1).await;
    mount_me(&server, "snow-token-2").await;
    let verified = verify(&app).await;
    assert_eq!(verified["verified"], true, "{verified}");
    assert_eq!(verified["status"], "connected");
}

#[tokio::test]
async fn a_token_endpoint_refusing_the_client_needs_reauthorization_and_never_shows_the_secret() {
    for (status, body) in [
        (
            401,
            json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
        ),
        (
            400,
            json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
        ),
    ] {
        let app = spawn_app(quick_policy()).await;
        let server = MockServer::start().await;
        connect(&app, &server).await;
        Mock::given(method("POST"))
            .and(path("/oauth_token.do"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&server)
            .await;
        Mock::given(path("/api/now/table/sys_user"))
            .respond_with(not_authenticated())
            .expect(0)
            .mount(&server)
            .await;
        let verified = verify(&app).await;
        assert_eq!(verified["verified"], false, "{verified}");
        assert_eq!(verified["status"], "needs_reauthorization", "{status}");
        let shown = app.call("GET", "/v1/connections/snow", ADMIN, None).await;
        assert!(!shown.text.contains(CLIENT_SECRET));
        let error = shown.json["last_error"].as_str().unwrap();
        assert!(
            error.contains("ServiceNow refused the OAuth client credentials")
                && error.contains("Client authentication failed"),
            "{error}"
        );
        // A person's ticket list says so too, as the §5 error.
        let tickets = app
            .call("GET", "/v1/tickets?connection=snow", ALICE, None)
            .await;
        assert_eq!(tickets.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            tickets.json["error"]["code"],
            "connection_needs_reauthorization"
        );
        assert!(!tickets.text.contains(CLIENT_SECRET));
    }
}

#[tokio::test]
async fn settings_that_mix_sign_ins_or_name_no_servicenow_destination_are_refused_and_change_nothing()
 {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    let mixed = app
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(json!({
                "id": "snow", "kind": "servicenow", "base_url": server.uri(),
                "username": "svc", "password": "p", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET
            })),
        )
        .await;
    assert_eq!(mixed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(mixed.json["error"]["code"], "ambiguous_credentials");
    assert!(!mixed.text.contains(CLIENT_SECRET));

    let created = app
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(json!({"id": "snow", "kind": "servicenow", "base_url": server.uri(), "username": "svc", "password": "snow-pass"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let before = app
        .call("GET", "/v1/connections/snow", ADMIN, None)
        .await
        .json;
    for (body, code) in [
        (
            json!({"client_secret": "new-secret"}),
            "missing_credentials",
        ),
        (json!({"client_id": CLIENT_ID}), "missing_credentials"),
        (
            json!({"password": "p2", "client_id": CLIENT_ID}),
            "ambiguous_credentials",
        ),
        (json!({"audit": {"group_id": 5}}), "invalid_audit"),
        (
            json!({"audit": {"issue_type": "change_request"}}),
            "invalid_audit",
        ),
        (
            json!({"audit": {"project": "Service Desk"}}),
            "invalid_audit",
        ),
        (json!({"audit": {"priority": 4}}), "invalid_audit"),
    ] {
        let refused = app
            .call("PATCH", "/v1/connections/snow", ADMIN, Some(body.clone()))
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            refused.text
        );
        assert_eq!(refused.json["error"]["code"], code, "{body}");
    }
    assert_eq!(
        app.call("GET", "/v1/connections/snow", ADMIN, None)
            .await
            .json,
        before,
        "refused changes change nothing"
    );

    // Switching to client credentials takes both fields; the user name goes with the password.
    let switched = app
        .call(
            "PATCH",
            "/v1/connections/snow",
            ADMIN,
            Some(json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})),
        )
        .await;
    assert_eq!(switched.status, StatusCode::OK, "{}", switched.text);
    assert_eq!(switched.json["client_id"], CLIENT_ID);
    assert_eq!(switched.json["client_secret"], "********");
    assert!(switched.json.get("username").is_none() && switched.json.get("password").is_none());
    assert!(!switched.text.contains(CLIENT_SECRET));
}

/// The incident as the Table API answers it (raw values).
fn incident(state: &str) -> Value {
    json!({
        "sys_id": INCIDENT_ID, "number": INCIDENT, "short_description": "Access request",
        "state": state, "active": "true", "sys_class_name": "incident", "assigned_to": ""
    })
}

#[tokio::test]
async fn an_audit_incident_is_opened_on_request_noted_on_approval_and_resolved_when_access_ends() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    connect(&app, &server).await;
    let group = "d625dccec0a8016700a222a0f7900d06";
    let audit = app
        .call(
            "PATCH",
            "/v1/connections/snow",
            ADMIN,
            Some(json!({"audit": {"project": group, "priority": 2}})),
        )
        .await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.text);
    let resource = app
        .call(
            "PUT",
            "/v1/resources/prod-db",
            ADMIN,
            Some(json!({"name": "Production DB", "provisioner": {"kind": "none"}})),
        )
        .await;
    assert!(resource.status.is_success(), "{}", resource.text);

    // The first token is revoked after the incident is opened: the approval's note fetches a second.
    mount_token(&server, "snow-token-1", 1).await;
    mount_token(&server, "snow-token-2", 1).await;
    Mock::given(method("PATCH"))
        .and(header("authorization", "Bearer snow-token-1"))
        .respond_with(not_authenticated())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/task"))
        .and(query_param(
            "sysparm_query",
            format!("number={INCIDENT}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [incident("1")]})))
        .mount(&server)
        .await;
    // Any other query (the marker's `correlation_id`) finds nothing yet.
    Mock::given(method("GET"))
        .and(path("/api/now/table/task"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []})))
        .mount(&server)
        .await;
    // Rate limited once (Retry-After in seconds), then created.
    Mock::given(method("POST"))
        .and(path("/api/now/table/incident"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/now/table/incident"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"result": incident("1")})))
        .mount(&server)
        .await;
    // Work notes are accepted; the first resolution fails with a 500.
    Mock::given(method("PATCH"))
        .and(path(format!("/api/now/table/incident/{INCIDENT_ID}")))
        .and(body_partial_json(json!({"state": "6"})))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("/api/now/table/incident/{INCIDENT_ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": incident("6")})))
        .mount(&server)
        .await;

    let requested = app
        .call(
            "POST",
            "/v1/grants",
            ALICE,
            Some(json!({"resource": "prod-db", "reason": "INC-7 debugging", "duration": "PT1H"})),
        )
        .await;
    assert_eq!(requested.status, StatusCode::CREATED, "{}", requested.text);
    let id = requested.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        requested.json["audit_ticket"],
        json!({"connection": "snow", "key": INCIDENT}),
        "{}",
        requested.text
    );
    let sent = |m: &'static str, p: String| {
        let server = &server;
        async move {
            server
                .received_requests()
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.method.as_str() == m && r.url.path() == p)
                .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null))
                .collect::<Vec<_>>()
        }
    };
    let opened = sent("POST", "/api/now/table/incident".into()).await;
    assert_eq!(opened.len(), 2, "the 429 was waited out and sent again");
    let marker = format!("tb-{}-audit", id.to_ascii_lowercase());
    assert_eq!(opened[1]["correlation_id"], marker);
    assert!(
        opened[1]["description"]
            .as_str()
            .unwrap()
            .ends_with(&marker)
    );
    assert_eq!(opened[1]["assignment_group"], group);
    assert_eq!(
        (&opened[1]["urgency"], &opened[1]["impact"]),
        (&json!("2"), &json!("2"))
    );

    let approved = app
        .call("POST", &format!("/v1/grants/{id}/approve"), APPROVER, None)
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    let patches = sent("PATCH", format!("/api/now/table/incident/{INCIDENT_ID}")).await;
    let notes: Vec<&Value> = patches
        .iter()
        .filter(|p| p.get("work_notes").is_some())
        .collect();
    assert_eq!(
        notes.len(),
        2,
        "sent with the revoked token, then with the new one"
    );
    assert!(
        notes[1]["work_notes"]
            .as_str()
            .unwrap()
            .contains("Approved by bob@example.com")
    );

    let ended = app
        .call("POST", &format!("/v1/grants/{id}/revoke"), APPROVER, None)
        .await;
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.text);
    assert_eq!(ended.json["status"], "ended");
    assert_eq!(
        ended.json["deprovisioning"]["state"], "pending",
        "{}",
        ended.text
    );
    let outcome = app
        .app
        .run_job(&Job::new(JobKind::Deprovision, &id))
        .await
        .unwrap();
    assert_eq!(outcome, ticketbound::service::JobOutcome::Done);
    let grant = app
        .call("GET", &format!("/v1/grants/{id}"), ADMIN, None)
        .await
        .json;
    assert_eq!(grant["deprovisioning"]["state"], "done", "{grant}");
    let resolutions: Vec<Value> = sent("PATCH", format!("/api/now/table/incident/{INCIDENT_ID}"))
        .await
        .into_iter()
        .filter(|p| p["state"] == "6")
        .collect();
    assert_eq!(resolutions.len(), 2, "the 500 was retried by the pipeline");
    assert_eq!(resolutions[1]["close_code"], "Solution provided");
    assert!(!resolutions[1]["close_notes"].as_str().unwrap().is_empty());
    assert_eq!(
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/oauth_token.do")
            .count(),
        2
    );
}

/// A requested item as the Table API answers it.
fn requested_item(number: &str, state: &str) -> Value {
    json!({
        "sys_id": format!("{:0>32}", number.trim_start_matches("RITM")), "number": number,
        "short_description": "Access", "state": state, "active": "true",
        "sys_class_name": "sc_req_item", "assigned_to": ""
    })
}

/// `POST /api/now/table/sc_req_item` for the ticket whose marker ends with `purpose`, answering `answer`.
async fn mount_create(server: &MockServer, purpose: &str, answer: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/api/now/table/sc_req_item"))
        .and(body_string_contains(format!("-{purpose}\"").as_str()))
        .respond_with(answer)
        .mount(server)
        .await;
}

#[tokio::test]
async fn requested_items_ask_for_access_are_found_again_by_their_marker_and_close_complete() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    let created = app
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(json!({
                "id": "snow", "kind": "servicenow", "base_url": server.uri(), "username": "svc",
                "password": "snow-pass", "audit": {"issue_type": "sc_req_item"}
            })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.json["audit"]["issue_type"], "sc_req_item");
    let resource = app
        .call(
            "PUT",
            "/v1/resources/prod-db",
            ADMIN,
            Some(json!({"name": "Production DB", "provisioner": {"kind": "ticket", "connection": "snow", "issue_type": "sc_req_item"}})),
        )
        .await;
    assert!(resource.status.is_success(), "{}", resource.text);

    Mock::given(method("GET"))
        .and(path("/api/now/table/task"))
        .and(query_param("sysparm_query", "number=RITM0010001"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"result": [requested_item("RITM0010001", "1")]})),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/task"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": []})))
        .mount(&server)
        .await;
    let created = |number: &str| {
        ResponseTemplate::new(201).set_body_json(json!({"result": requested_item(number, "1")}))
    };
    mount_create(&server, "audit", created("RITM0010001")).await;
    // Provisioning's create answers 500: ServiceNow may have created the item all the same.
    mount_create(&server, "grant", ResponseTemplate::new(500)).await;
    mount_create(&server, "revoke", created("RITM0010003")).await;
    Mock::given(method("PATCH"))
        .and(path(format!(
            "/api/now/table/sc_req_item/{:0>32}",
            "0010001"
        )))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"result": requested_item("RITM0010001", "3")})),
        )
        .mount(&server)
        .await;

    let requested = app
        .call(
            "POST",
            "/v1/grants",
            ALICE,
            Some(json!({"resource": "prod-db", "reason": "INC-7 debugging", "duration": "PT1H"})),
        )
        .await;
    assert_eq!(requested.status, StatusCode::CREATED, "{}", requested.text);
    let id = requested.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        requested.json["audit_ticket"],
        json!({"connection": "snow", "key": "RITM0010001"})
    );

    let approved = app
        .call("POST", &format!("/v1/grants/{id}/approve"), APPROVER, None)
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    assert_eq!(
        approved.json["provisioning"]["state"], "pending",
        "{}",
        approved.text
    );
    // It did create it: the retry finds the item by its `correlation_id` and opens no second one.
    let marker = format!("tb-{}-grant", id.to_ascii_lowercase());
    Mock::given(method("GET"))
        .and(path("/api/now/table/task"))
        .and(query_param(
            "sysparm_query",
            format!("correlation_id={marker}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"result": [requested_item("RITM0010002", "1")]})),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    let outcome = app
        .app
        .run_job(&Job::new(JobKind::Provision, &id))
        .await
        .unwrap();
    assert_eq!(outcome, ticketbound::service::JobOutcome::Done);
    let grant = app
        .call("GET", &format!("/v1/grants/{id}"), ADMIN, None)
        .await
        .json;
    assert_eq!(grant["provisioning"]["state"], "done", "{grant}");

    let ended = app
        .call("POST", &format!("/v1/grants/{id}/revoke"), APPROVER, None)
        .await;
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.text);
    assert_eq!(
        ended.json["deprovisioning"]["state"], "done",
        "{}",
        ended.text
    );

    let requests = server.received_requests().await.unwrap();
    let bodies = |m: &str, p: &str| -> Vec<Value> {
        requests
            .iter()
            .filter(|r| r.method.as_str() == m && r.url.path() == p)
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    };
    let opened = bodies("POST", "/api/now/table/sc_req_item");
    let markers: Vec<&str> = opened
        .iter()
        .map(|b| b["correlation_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        markers,
        [
            format!("tb-{}-audit", id.to_ascii_lowercase()),
            marker.clone(),
            format!("tb-{}-revoke", id.to_ascii_lowercase()),
        ],
        "one create per marker"
    );
    assert!(
        opened[2]["short_description"]
            .as_str()
            .unwrap()
            .starts_with("Remove access to Production DB for alice@example.com")
    );
    let closes: Vec<Value> = bodies(
        "PATCH",
        &format!("/api/now/table/sc_req_item/{:0>32}", "0010001"),
    )
    .into_iter()
    .filter(|b| b.get("state").is_some())
    .collect();
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert_eq!(closes[0]["state"], "3", "Closed Complete");
    assert!(closes[0].get("close_code").is_none());
}

const API_KEY: &str = "now_apikey-9f3c1e7a5b2d4c6e8a0b";

/// Whether any request `server` received carried an `Authorization` header.
async fn any_authorization(server: &MockServer) -> bool {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .any(|r| r.headers.contains_key("authorization"))
}

/// A client of a connection signing in with [`API_KEY`], as the router builds one.
fn api_key_client(server: &MockServer) -> std::sync::Arc<dyn ticketbound::ports::TicketSystem> {
    use ticketbound::adapters::servicenow::ServiceNow;
    use ticketbound::domain::connection::{
        AuthMethod, ConnectionSecrets, ConnectionSettings, Credentials,
    };
    use ticketbound::domain::secret::Secret;
    use ticketbound::ports::{TicketSystemKind, TicketSystems};
    let settings = ConnectionSettings {
        id: "snow".into(),
        kind: ServiceNow.kind(),
        base_url: server.uri(),
        auth_method: AuthMethod::API_KEY,
        closed_statuses: ServiceNow.default_closed_statuses(),
        webhook_secrets_active: 1,
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        updated_at: time::OffsetDateTime::UNIX_EPOCH,
        audit: None,
        people: Default::default(),
        fields: Default::default(),
    };
    ticketbound::adapters::ticket_systems::HttpTicketSystems::new(quick_policy())
        .unwrap()
        .connect(
            &settings,
            &ConnectionSecrets {
                credentials: Credentials::new(AuthMethod::API_KEY, Secret::new(API_KEY)),
                webhook_secrets: vec![],
            },
        )
        .unwrap()
}

/// An API key (Washington DC and later) is the third way to sign in: sent as is in `x-sn-apikey` on verify,
/// search, read and write, never with an `Authorization` header; masked in every answer.
#[tokio::test]
async fn an_api_key_is_sent_in_its_own_header_on_every_call_and_masked_in_every_answer() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    let created = app
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(json!({"id": "snow", "kind": "servicenow", "base_url": server.uri(), "api_key": API_KEY})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.json["api_key"], "********");
    assert!(!created.text.contains(API_KEY));

    // Verify: the user the key acts as.
    Mock::given(method("GET"))
        .and(path("/api/now/table/sys_user"))
        .and(query_param("sysparm_query", "sys_id=javascript:gs.getUserID()"))
        .and(header("x-sn-apikey", API_KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [
            {"sys_id": APP_USER, "user_name": "ticketbound.integration", "email": "tb@acme.com", "name": "Ticketbound"}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    let verified = app
        .call("POST", "/v1/connections/snow/verify", ADMIN, None)
        .await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text);
    assert_eq!(verified.json["verified"], true, "{}", verified.text);
    assert_eq!(verified.json["status"], "connected");
    assert!(!verified.text.contains(API_KEY));

    // Search: the person by e-mail, then the tasks assigned to them.
    let alice = "62826bf03710200044e0bfc8bcbe5df1";
    Mock::given(method("GET"))
        .and(path("/api/now/table/sys_user"))
        .and(query_param(
            "sysparm_query",
            format!("email={}^active=true", ALICE.0).as_str(),
        ))
        .and(header("x-sn-apikey", API_KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [
            {"sys_id": alice, "user_name": "alice", "email": ALICE.0, "name": "Alice"}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/task"))
        .and(header("x-sn-apikey", API_KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [incident("2")]})))
        .mount(&server)
        .await;
    let tickets = app
        .call("GET", "/v1/tickets?connection=snow", ALICE, None)
        .await;
    assert_eq!(tickets.status, StatusCode::OK, "{}", tickets.text);
    assert_eq!(
        tickets.json["items"][0]["key"], INCIDENT,
        "{}",
        tickets.text
    );

    // Read and write through the client the router builds.
    Mock::given(method("PATCH"))
        .and(path(format!("/api/now/table/incident/{INCIDENT_ID}")))
        .and(header("x-sn-apikey", API_KEY))
        .and(body_partial_json(json!({"work_notes": "Access ended."})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": incident("2")})))
        .expect(1)
        .mount(&server)
        .await;
    let client = api_key_client(&server);
    let read = client.get_ticket(INCIDENT).await.unwrap();
    assert!(read.is_some_and(|t| !t.closed));
    assert!(client.add_comment(INCIDENT, "Access ended.").await.unwrap());

    assert!(
        !any_authorization(&server).await,
        "an API key goes without an Authorization header"
    );
    let shown = app.call("GET", "/v1/connections/snow", ADMIN, None).await;
    assert_eq!(shown.json["api_key"], "********");
    assert!(shown.json.get("password").is_none() && shown.json.get("client_secret").is_none());
    assert!(!shown.text.contains(API_KEY));
    let listed = app.call("GET", "/v1/connections", ADMIN, None).await;
    assert!(!listed.text.contains(API_KEY));
}

/// A key ServiceNow refuses (401) needs re-authorization, as a refused password or client secret does, and the
/// key is never echoed; a new key alone (the only field of this way) fixes it, and mixing it with another way is
/// refused without a change.
#[tokio::test]
async fn a_refused_api_key_needs_reauthorization_and_is_never_shown() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    let created = app
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(json!({"id": "snow", "kind": "servicenow", "base_url": server.uri(), "api_key": API_KEY})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    Mock::given(path("/api/now/table/sys_user"))
        .and(header("x-sn-apikey", API_KEY))
        .respond_with(not_authenticated())
        .mount(&server)
        .await;
    let verified = app
        .call("POST", "/v1/connections/snow/verify", ADMIN, None)
        .await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text);
    assert_eq!(verified.json["verified"], false, "{}", verified.text);
    assert_eq!(verified.json["status"], "needs_reauthorization");
    assert!(!verified.text.contains(API_KEY));
    let shown = app.call("GET", "/v1/connections/snow", ADMIN, None).await;
    assert_eq!(shown.json["status"], "needs_reauthorization");
    assert!(
        shown.json["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("User Not Authenticated")),
        "{}",
        shown.text
    );
    assert!(!shown.text.contains(API_KEY));
    let tickets = app
        .call("GET", "/v1/tickets?connection=snow", ALICE, None)
        .await;
    assert_eq!(tickets.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        tickets.json["error"]["code"],
        "connection_needs_reauthorization"
    );
    assert!(!tickets.text.contains(API_KEY));

    let before = app
        .call("GET", "/v1/connections/snow", ADMIN, None)
        .await
        .json;
    for body in [
        json!({"api_key": "another-key", "username": "svc"}),
        json!({"api_key": "another-key", "client_secret": CLIENT_SECRET}),
    ] {
        let mixed = app
            .call("PATCH", "/v1/connections/snow", ADMIN, Some(body.clone()))
            .await;
        assert_eq!(mixed.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(mixed.json["error"]["code"], "ambiguous_credentials");
        assert!(!mixed.text.contains("another-key") && !mixed.text.contains(CLIENT_SECRET));
    }
    assert_eq!(
        app.call("GET", "/v1/connections/snow", ADMIN, None)
            .await
            .json,
        before,
        "refused changes change nothing"
    );
    let rotated = app
        .call(
            "PATCH",
            "/v1/connections/snow",
            ADMIN,
            Some(json!({"api_key": "now_apikey-rotated"})),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    assert_eq!(rotated.json["api_key"], "********");
    assert!(!rotated.text.contains("now_apikey-rotated"));
}
