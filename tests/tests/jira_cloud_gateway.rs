//! Jira Cloud API tokens with scopes (and service accounts' tokens) through Atlassian's API gateway, end to end
//! through the portal API: two local servers answer as the vendor documents, the site (`<site>.atlassian.net`:
//! 401 for a scoped token, public tenant info) and the gateway (`api.atlassian.com/ex/jira/{cloudId}`).

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use support::{ADMIN, ALICE, TestApp, basic, cloud_issue, cloud_user, quick_policy, temp_dir};
use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::provisioner::DEFAULT_TIMEOUT;
use ticketbound::adapters::secrets::LocalSecretStore;
use ticketbound::adapters::ticket_systems::HttpTicketSystems;
use ticketbound::domain::{Provisioner, Resource};
use ticketbound::ports::SystemClock;
use ticketbound::service::{Ports, Settings, Ticketbound};

const TOKEN: &str = "scoped-token-0123456789";
const CLOUD_ID: &str = "a436116f-02ce-4520-8fbb-7301462a1674";

/// The portal API over the embedded store, with real ticket-system clients whose API gateway is `gateway`.
async fn app_with_gateway(gateway: &MockServer) -> TestApp {
    let store = EmbeddedStore::in_memory().expect("store");
    let dir = temp_dir("gateway");
    let systems = HttpTicketSystems::new(quick_policy())
        .unwrap()
        .with_atlassian_gateway(&gateway.uri())
        .unwrap();
    let ports = Ports {
        secrets: Arc::new(LocalSecretStore::open(&dir.join("secrets.json")).unwrap()),
        ticket_systems: Arc::new(systems),
        ..ticketbound_tests::test_ports(
            Arc::new(store.clone()),
            Arc::new(LocalScheduler::new(store.clone())),
            Arc::new(SystemClock),
            DEFAULT_TIMEOUT,
        )
    };
    let app = Ticketbound::build(ports, Settings::default());
    ticketbound::ports::GrantStore::put_resource(
        &store,
        &Resource {
            id: "prod-db".into(),
            name: "Production database".into(),
            description: String::new(),
            max_duration: None,
            require_ticket: false,
            provisioner: Provisioner::None,
            policy: Default::default(),
        },
    )
    .await
    .unwrap();
    TestApp {
        router: ticketbound_tests::local_router(app.clone()),
        store,
        dir,
        app,
    }
}

fn auth() -> String {
    basic("svc@acme.com", TOKEN)
}

/// The site as Jira Cloud answers a scoped token: 401 on every REST call, and its public tenant info.
async fn site_refusing_scoped_tokens(site: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/_edge/tenant_info"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"cloudId": CLOUD_ID})))
        .mount(site)
        .await;
    Mock::given(path_prefix("/rest/"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"errorMessages": ["Client must be authenticated to access this resource."]}),
        ))
        .mount(site)
        .await;
}

fn path_prefix(prefix: &'static str) -> impl wiremock::Match {
    move |r: &wiremock::Request| r.url.path().starts_with(prefix)
}

fn gw(rest: &str) -> String {
    format!("/ex/jira/{CLOUD_ID}{rest}")
}

/// The gateway answering the scoped token for the site's cloud id.
async fn gateway_accepting(gateway: &MockServer) {
    Mock::given(method("GET"))
        .and(path(gw("/rest/api/3/myself")))
        .and(header("authorization", auth().as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(cloud_user("acc-svc", Some("svc@acme.com"))),
        )
        .mount(gateway)
        .await;
    Mock::given(method("GET"))
        .and(path(gw("/rest/api/3/project/search")))
        .and(header("authorization", auth().as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "values": [{"key": "SEC", "name": "Security"}], "isLast": true
        })))
        .mount(gateway)
        .await;
}

async fn create(t: &TestApp, site: &MockServer, extra: Value) -> Value {
    let mut body = json!({
        "id": "jira-main", "kind": "jira_cloud", "base_url": site.uri(),
        "email": "svc@acme.com", "api_token": TOKEN
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let created = t.call("POST", "/v1/connections", ADMIN, Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.json
}

async fn requests_to(server: &MockServer, prefix: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().starts_with(prefix))
        .count()
}

#[tokio::test]
async fn a_scoped_token_is_detected_verified_through_the_gateway_and_remembered() {
    let (site, gateway) = (MockServer::start().await, MockServer::start().await);
    site_refusing_scoped_tokens(&site).await;
    gateway_accepting(&gateway).await;
    let t = app_with_gateway(&gateway).await;
    let created = create(&t, &site, json!({})).await;
    assert!(
        created.get("token_type").is_none(),
        "no token type given: detected"
    );

    let verified = t
        .call("POST", "/v1/connections/jira-main/verify", ADMIN, None)
        .await;

    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text);
    let v = &verified.json;
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["api"], "gateway");
    assert_eq!(v["detected_token_type"], "scoped");
    assert_eq!(v["cloud_id"], CLOUD_ID);
    assert_eq!(v["account"]["id"], "acc-svc");
    assert_eq!(v["projects"][0]["key"], "SEC");
    assert_eq!(v["status"], "connected");
    // Tried on the site once (401), then the tenant info, then the gateway.
    assert_eq!(requests_to(&site, "/rest/api/3/myself").await, 1);
    assert_eq!(requests_to(&site, "/_edge/tenant_info").await, 1);
    let shown = t
        .call("GET", "/v1/connections/jira-main", ADMIN, None)
        .await;
    assert_eq!(shown.json["detected_token_type"], "scoped");
    assert_eq!(shown.json["cloud_id"], CLOUD_ID);

    // Remembered: the next verify goes straight to the gateway, with no tenant-info lookup.
    let again = t
        .call("POST", "/v1/connections/jira-main/verify", ADMIN, None)
        .await;
    assert_eq!(again.json["api"], "gateway", "{}", again.text);
    assert_eq!(requests_to(&site, "/rest/").await, 1);
    assert_eq!(requests_to(&site, "/_edge/tenant_info").await, 1);
}

#[tokio::test]
async fn through_the_gateway_tickets_are_read_and_listed_but_browse_links_stay_on_the_site() {
    let (site, gateway) = (MockServer::start().await, MockServer::start().await);
    site_refusing_scoped_tokens(&site).await;
    gateway_accepting(&gateway).await;
    let alice = cloud_user("acc-alice", Some("alice@example.com"));
    Mock::given(method("GET"))
        .and(path(gw("/rest/api/3/issue/SEC-42")))
        .respond_with(ResponseTemplate::new(200).set_body_json(cloud_issue(
            "SEC-42",
            "In Progress",
            "indeterminate",
            Some(alice.clone()),
        )))
        .mount(&gateway)
        .await;
    Mock::given(method("GET"))
        .and(path(gw("/rest/api/3/user/search")))
        .and(query_param("query", "alice@example.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([alice])))
        .mount(&gateway)
        .await;
    Mock::given(method("GET"))
        .and(path(gw("/rest/api/3/search/jql")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issues": [cloud_issue("SEC-42", "In Progress", "indeterminate", None)], "isLast": true
        })))
        .mount(&gateway)
        .await;
    let t = app_with_gateway(&gateway).await;
    create(&t, &site, json!({"token_type": "scoped"})).await;

    let listed = t
        .call("GET", "/v1/tickets?connection=jira-main", ALICE, None)
        .await;
    let requested = t
        .call(
            "POST",
            "/v1/grants",
            ALICE,
            Some(
                json!({"resource": "prod-db", "reason": "INC-7", "duration": "PT1H",
                "ticket": {"connection": "jira-main", "key": "SEC-42"}}),
            ),
        )
        .await;

    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.json["items"][0]["key"], "SEC-42");
    assert_eq!(
        listed.json["items"][0]["url"],
        format!("{}/browse/SEC-42", site.uri()),
        "browse links point at the site, never the gateway"
    );
    assert_eq!(requested.status, StatusCode::CREATED, "{}", requested.text);
    // `token_type: scoped` never calls the site's REST API.
    assert_eq!(requests_to(&site, "/rest/").await, 0);
}

#[tokio::test]
async fn a_classic_token_stays_on_the_site_and_a_401_there_needs_reauthorization() {
    let (site, gateway) = (MockServer::start().await, MockServer::start().await);
    site_refusing_scoped_tokens(&site).await;
    gateway_accepting(&gateway).await;
    let t = app_with_gateway(&gateway).await;
    let created = create(&t, &site, json!({"token_type": "classic"})).await;
    assert_eq!(created["token_type"], "classic");

    let verified = t
        .call("POST", "/v1/connections/jira-main/verify", ADMIN, None)
        .await;

    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text);
    assert_eq!(verified.json["verified"], false);
    assert_eq!(verified.json["status"], "needs_reauthorization");
    assert!(verified.json.get("api").is_none());
    assert!(
        gateway.received_requests().await.unwrap().is_empty(),
        "a classic token is never sent to the gateway"
    );
    assert_eq!(requests_to(&site, "/_edge/tenant_info").await, 0);
}

#[tokio::test]
async fn a_classic_token_is_detected_on_the_site_without_the_gateway() {
    let (site, gateway) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("GET"))
        .and(path("/rest/api/3/myself"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(cloud_user("acc-svc", Some("svc@acme.com"))),
        )
        .mount(&site)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/project/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"values": []})))
        .mount(&site)
        .await;
    let t = app_with_gateway(&gateway).await;
    create(&t, &site, json!({})).await;

    let verified = t
        .call("POST", "/v1/connections/jira-main/verify", ADMIN, None)
        .await;

    assert_eq!(verified.json["api"], "site", "{}", verified.text);
    assert_eq!(verified.json["detected_token_type"], "classic");
    assert!(verified.json.get("cloud_id").is_none());
    assert!(gateway.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_token_refused_on_the_site_and_the_gateway_needs_reauthorization() {
    let (site, gateway) = (MockServer::start().await, MockServer::start().await);
    site_refusing_scoped_tokens(&site).await;
    Mock::given(path_prefix("/ex/jira/"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(
                json!({"code": 401, "message": "Unauthorized; scope does not match"}),
            ),
        )
        .mount(&gateway)
        .await;
    let t = app_with_gateway(&gateway).await;
    create(&t, &site, json!({})).await;

    let verified = t
        .call("POST", "/v1/connections/jira-main/verify", ADMIN, None)
        .await;

    assert_eq!(verified.json["verified"], false, "{}", verified.text);
    assert_eq!(verified.json["status"], "needs_reauthorization");
    let error = verified.json["last_error"].as_str().unwrap();
    assert!(
        error.contains("also refused through the API gateway"),
        "{error}"
    );
    assert!(!verified.text.contains(TOKEN));
}

#[tokio::test]
async fn token_type_is_checked_and_applies_to_jira_cloud_only() {
    let site = MockServer::start().await;
    let gateway = MockServer::start().await;
    let t = app_with_gateway(&gateway).await;

    let unknown = t
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(
                json!({"id": "j", "kind": "jira_cloud", "base_url": site.uri(),
                "email": "svc@acme.com", "api_token": TOKEN, "token_type": "oauth"}),
            ),
        )
        .await;
    let freshservice = t
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(
                json!({"id": "f", "kind": "freshservice", "base_url": site.uri(),
                "api_key": "k", "token_type": "scoped"}),
            ),
        )
        .await;
    create(&t, &site, json!({"token_type": "scoped"})).await;
    let back_to_detect = t
        .call(
            "PATCH",
            "/v1/connections/jira-main",
            ADMIN,
            Some(json!({"token_type": null})),
        )
        .await;

    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text);
    assert_eq!(unknown.json["error"]["code"], "malformed_request");
    assert_eq!(freshservice.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(freshservice.json["error"]["code"], "field_not_applicable");
    let listed = t.call("GET", "/v1/connections", ADMIN, None).await;
    assert_eq!(
        listed.json["items"].as_array().unwrap().len(),
        1,
        "refused connections are not stored"
    );
    assert_eq!(
        back_to_detect.status,
        StatusCode::OK,
        "{}",
        back_to_detect.text
    );
    assert!(back_to_detect.json.get("token_type").is_none());
    assert!(site.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_gateway_url_obeys_the_outbound_url_policy() {
    let systems = HttpTicketSystems::new(quick_policy()).unwrap();
    assert!(
        systems
            .clone()
            .with_atlassian_gateway("http://api.atlassian.com")
            .is_err()
    );
    assert!(
        systems
            .clone()
            .with_atlassian_gateway("https://169.254.169.254")
            .is_err()
    );
    assert!(
        systems
            .with_atlassian_gateway("https://api.atlassian.com")
            .is_ok()
    );
}
