//! Bound tickets as the ticket system answers them (DESIGN §1 rule 3, §9): a binding typed in another spelling
//! (`sec-42`, `053263`) is stored under the canonical key and ends by the closing delivery for `SEC-42` /
//! `53263` on Jira Cloud, Jira Data Center and Freshservice, with no false "missed webhook" from reconciliation;
//! keys stored in another spelling before are moved to the canonical one; a captured closing replayed after the
//! ticket was reopened and bound again ends nothing new; a binding refusal names nobody. Every request goes
//! through the router, every ticket system is a wiremock server answering as protocol-facts §1–4 say.

mod support;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use tower::ServiceExt;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::domain::TicketRef;
use ticketbound::domain::webhook_auth::hub_signature;
use ticketbound::handlers::handle_scheduled_job;
use ticketbound::ports::GrantStore;
use ticketbound::service::{Settings, Ticketbound};
use ticketbound_tests::{
    ADMIN, ALICE, APPROVER, ManualClock, call, define_webhook_resource, provisioner_actions,
    provisioner_ok, seed_bound_active_grants,
};

/// An app on a clock that stands still, with three connections whose APIs are wiremock servers: `jira-cloud`,
/// `jira-dc` and `fs`; and the resource `prod-db`, provisioned through a webhook on wiremock.
struct World {
    app: Ticketbound,
    router: Router,
    store: EmbeddedStore,
    clock: ManualClock,
    cloud: MockServer,
    dc: MockServer,
    fs: MockServer,
    provisioner: MockServer,
    secrets: std::collections::HashMap<&'static str, String>,
}

async fn world() -> World {
    let (cloud, dc, fs) = (
        MockServer::start().await,
        MockServer::start().await,
        MockServer::start().await,
    );
    let store = EmbeddedStore::in_memory().unwrap();
    let clock = ManualClock::now_system();
    let dir = support::temp_dir("bound-tickets");
    let app = Ticketbound::build(
        ticketbound_tests::ticket_ports(
            Arc::new(store.clone()),
            Arc::new(LocalScheduler::new(store.clone())),
            Arc::new(clock.clone()),
            &dir.join("secrets.json"),
            support::quick_policy(),
        ),
        Settings::default(),
    );
    let router = ticketbound_tests::local_router(app.clone());
    let mut secrets = std::collections::HashMap::new();
    for (id, body) in [
        (
            "jira-cloud",
            json!({"id": "jira-cloud", "kind": "jira_cloud", "base_url": cloud.uri(), "email": "bot@acme.com", "api_token": "jira-token-1"}),
        ),
        (
            "jira-dc",
            json!({"id": "jira-dc", "kind": "jira_data_center", "base_url": dc.uri(), "personal_access_token": "dc-pat-0123456789"}),
        ),
        (
            "fs",
            json!({"id": "fs", "kind": "freshservice", "base_url": fs.uri(), "api_key": "fs-key-123"}),
        ),
    ] {
        let (status, created) = call(
            &router,
            "POST",
            "/v1/connections",
            ADMIN,
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        secrets.insert(id, created["webhook_secret"].as_str().unwrap().to_owned());
    }
    let provisioner = provisioner_ok().await;
    define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;
    World {
        app,
        router,
        store,
        clock,
        cloud,
        dc,
        fs,
        provisioner,
        secrets,
    }
}

const CLOUD_ID: &str = "10042";
const DC_ID: &str = "20042";

/// Jira answers `/rest/api/{version}/issue/{typed}` for every spelling in `typed` with the issue `SEC-42`, open
/// and assigned to Alice (Jira finds an issue by any case of its key and answers with its own).
async fn jira_issue(server: &MockServer, version: &str, typed: &[&str], cloud: bool) {
    let assignee = if cloud {
        support::cloud_user("acc-alice", Some("alice@example.com"))
    } else {
        json!({"name": "alice", "key": "alice", "emailAddress": "alice@example.com", "displayName": "Alice", "active": true})
    };
    let issue = json!({
        "id": if cloud { CLOUD_ID } else { DC_ID },
        "key": "SEC-42",
        "fields": {
            "summary": "Database is slow",
            "assignee": assignee,
            "status": {"name": "In Progress", "id": "3", "statusCategory": {"id": 4, "key": "indeterminate", "name": "In Progress"}}
        }
    });
    for key in typed {
        Mock::given(method("GET"))
            .and(path(format!("/rest/api/{version}/issue/{key}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(issue.clone()))
            .mount(server)
            .await;
    }
}

/// Freshservice answers `/api/v2/tickets/{typed}` for every spelling in `typed` with ticket 53263 in `status`,
/// assigned to agent 9, whose address is Alice's.
async fn freshservice_ticket(server: &MockServer, typed: &[&str], status: u64) {
    server.reset().await;
    for key in typed {
        Mock::given(method("GET"))
            .and(path(format!("/api/v2/tickets/{key}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket": {
                "id": 53263, "subject": "Database is slow", "status": status, "responder_id": 9
            }})))
            .mount(server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/api/v2/agents"))
        .and(query_param("email", "alice@example.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"agents": [{"id": 9, "email": "alice@example.com", "active": true}]}),
        ))
        .mount(server)
        .await;
}

/// A signed-or-authenticated `jira:issue_updated` closing `key` (issue `id`) at `at` (epoch milliseconds).
fn jira_closing(key: &str, id: &str, at: i128) -> Vec<u8> {
    json!({
        "timestamp": at as i64, "webhookEvent": "jira:issue_updated", "issue_event_type_name": "issue_generic",
        "user": {"accountId": "acc-bob", "displayName": "Bob"},
        "issue": {"id": id, "key": key, "fields": {"status": {"name": "Done", "id": "10001", "statusCategory": {"id": 3, "key": "done", "name": "Done"}}}},
        "changelog": {"id": "1", "items": [{"field": "status", "fieldtype": "jira", "fieldId": "status", "from": "3", "fromString": "In Progress", "to": "10001", "toString": "Done"}]}
    })
    .to_string()
    .into_bytes()
}

impl World {
    /// The clock's time in epoch milliseconds, `plus_minutes` from now.
    fn millis(&self, plus_minutes: i64) -> i128 {
        (self.clock.now_offset() + time::Duration::minutes(plus_minutes)).unix_timestamp_nanos()
            / 1_000_000
    }

    /// Alice requests `prod-db` bound to `key` as typed in `connection`; approved by Bob.
    async fn bound_grant(&self, connection: &str, key: &str) -> Value {
        let body = json!({"resource": "prod-db", "reason": "bound", "duration": "indefinite", "ticket": {"connection": connection, "key": key}});
        let (status, grant) = call(
            &self.router,
            "POST",
            "/v1/grants",
            ALICE,
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{grant}");
        let id = grant["id"].as_str().unwrap();
        let (status, approved) = call(
            &self.router,
            "POST",
            &format!("/v1/grants/{id}/approve"),
            APPROVER,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        approved
    }

    /// The grant as the store has it.
    async fn stored(&self, id: &str) -> Value {
        serde_json::to_value(self.store.get_grant(id).await.unwrap().unwrap()).unwrap()
    }

    async fn post(
        &self,
        uri: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A Jira Cloud delivery signed with `X-Hub-Signature`, with its delivery id when `delivery` is given.
    async fn cloud_delivery(&self, body: Vec<u8>, delivery: Option<&str>) -> (StatusCode, Value) {
        let mut headers = vec![(
            "x-hub-signature",
            hub_signature(&self.secrets["jira-cloud"], &body),
        )];
        if let Some(id) = delivery {
            headers.push(("x-atlassian-webhook-identifier", id.to_owned()));
        }
        self.post("/webhooks/jira/jira-cloud", &headers, body).await
    }

    /// Reconciliation found no closing that a webhook missed, and the connection shows none.
    async fn assert_no_missed_webhook(&self, connection: &str) {
        let report = self.app.reconcile().await.unwrap();
        assert_eq!(report.closings_found, 0, "{report:?}");
        let (status, shown) = call(
            &self.router,
            "GET",
            &format!("/v1/connections/{connection}"),
            ADMIN,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{shown}");
        assert_eq!(shown["last_missed_closing"], Value::Null, "{shown}");
        assert_ne!(shown["webhook_health"], "warning", "{shown}");
    }

    fn assert_ended(grant: &Value) {
        assert_eq!(
            (grant["status"].as_str(), grant["end_reason"].as_str()),
            (Some("ended"), Some("ticket_closed")),
            "{grant}"
        );
    }
}

#[tokio::test]
async fn a_jira_cloud_binding_typed_in_lower_case_ends_by_the_signed_closing_of_its_key() {
    let w = world().await;
    jira_issue(&w.cloud, "3", &["sec-42", "SEC-42"], true).await;

    let grant = w.bound_grant("jira-cloud", "sec-42").await;
    assert_eq!(grant["ticket"]["key"], "SEC-42", "kept as Jira answered it");
    assert_eq!(grant["ticket_id"], CLOUD_ID);
    let id = grant["id"].as_str().unwrap();
    // Listed by the ticket however it is spelled.
    for spelling in ["jira-cloud:sec-42", "jira-cloud:SEC-42"] {
        let (status, listed) = call(
            &w.router,
            "GET",
            &format!("/v1/grants?ticket={spelling}"),
            ALICE,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        assert_eq!(listed["items"][0]["id"], id, "{spelling}: {listed}");
    }

    let (status, answer) = w
        .cloud_delivery(jira_closing("SEC-42", CLOUD_ID, w.millis(1)), Some("d-1"))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1, "{answer}");
    World::assert_ended(&w.stored(id).await);
    w.assert_no_missed_webhook("jira-cloud").await;
}

#[tokio::test]
async fn a_jira_data_center_binding_typed_in_lower_case_ends_by_the_closing_of_its_key() {
    let w = world().await;
    jira_issue(&w.dc, "2", &["sec-42", "SEC-42"], false).await;

    let grant = w.bound_grant("jira-dc", "sec-42").await;
    assert_eq!(grant["ticket"]["key"], "SEC-42");
    assert_eq!(grant["ticket_id"], DC_ID);
    let id = grant["id"].as_str().unwrap();

    let basic = support::basic("ticketbound", &w.secrets["jira-dc"]);
    let (status, answer) = w
        .post(
            "/webhooks/jira/jira-dc",
            &[("authorization", basic)],
            jira_closing("SEC-42", DC_ID, w.millis(1)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1, "{answer}");
    World::assert_ended(&w.stored(id).await);
    w.assert_no_missed_webhook("jira-dc").await;
}

#[tokio::test]
async fn a_freshservice_binding_typed_with_leading_zeros_ends_by_the_confirmed_closing_of_its_id() {
    let w = world().await;
    freshservice_ticket(&w.fs, &["053263", "53263"], 2).await;

    let grant = w.bound_grant("fs", "053263").await;
    assert_eq!(
        grant["ticket"]["key"], "53263",
        "kept as Freshservice answered it"
    );
    let id = grant["id"].as_str().unwrap();

    freshservice_ticket(&w.fs, &["53263"], 5).await;
    let template = std::fs::read_to_string(format!(
        "{}/fixtures/freshservice-webhook-template.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .replace("{{ticket.id_numeric}}", "53263")
    .replace("{{ticket.status}}", "Closed");
    let (status, answer) = w
        .post(
            "/webhooks/freshservice/fs",
            &[("x-ticketbound-secret", w.secrets["fs"].clone())],
            template.into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1, "{answer}");
    World::assert_ended(&w.stored(id).await);
    w.assert_no_missed_webhook("fs").await;
}

#[tokio::test]
async fn keys_stored_in_another_spelling_are_moved_to_the_canonical_one_and_then_end_by_their_webhook()
 {
    let w = world().await;
    let typed = |connection: &str, key: &str| TicketRef {
        connection: connection.into(),
        key: key.into(),
    };
    // As an older version stored them: the spelling typed.
    let jira = seed_bound_active_grants(&w.app, &typed("jira-cloud", "sec-42"), "prod-db", 2).await;
    let fs = seed_bound_active_grants(&w.app, &typed("fs", "053263"), "prod-db", 1).await;
    let other =
        seed_bound_active_grants(&w.app, &typed("jira-cloud", "SEC-43"), "prod-db", 1).await;

    assert_eq!(w.app.canonicalise_ticket_keys().await.unwrap(), 2);
    assert_eq!(
        w.app.canonicalise_ticket_keys().await.unwrap(),
        0,
        "a second run finds nothing to move"
    );
    let stored = |t: TicketRef| {
        let store = w.store.clone();
        async move {
            let mut ids: Vec<String> = store
                .grants_for_ticket(&t)
                .await
                .unwrap()
                .into_iter()
                .map(|g| g.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let mut sorted = jira.clone();
    sorted.sort();
    assert_eq!(stored(typed("jira-cloud", "SEC-42")).await, sorted);
    assert!(stored(typed("jira-cloud", "sec-42")).await.is_empty());
    assert_eq!(stored(typed("fs", "53263")).await, fs);
    assert_eq!(stored(typed("jira-cloud", "SEC-43")).await, other);

    let (status, answer) = w
        .cloud_delivery(jira_closing("SEC-42", CLOUD_ID, w.millis(1)), Some("d-2"))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 2, "{answer}");
    for id in &jira {
        World::assert_ended(&w.stored(id).await);
    }
    assert_eq!(w.stored(&other[0]).await["status"], "active");
}

#[tokio::test]
async fn a_pending_request_stored_under_another_spelling_takes_the_canonical_key_when_approved() {
    use ticketbound::domain::{AuditEvent, AuditKind, Grant, GrantDuration};
    let w = world().await;
    jira_issue(&w.cloud, "3", &["sec-42"], true).await;
    // As an older version stored it: the spelling typed, still waiting for approval.
    let now = w.clock.now_offset();
    let pending = Grant::request(
        ticketbound::domain::ids::new_ulid(now),
        ALICE.0.into(),
        "prod-db".into(),
        "bound".into(),
        GrantDuration::Indefinite,
        Some(TicketRef {
            connection: "jira-cloud".into(),
            key: "sec-42".into(),
        }),
        now,
    );
    let event = AuditEvent::of(
        &pending,
        AuditKind::Requested,
        Some(ALICE.0),
        now,
        Value::Null,
    );
    w.store.insert_grant(&pending, &event).await.unwrap();

    let (status, approved) = call(
        &w.router,
        "POST",
        &format!("/v1/grants/{}/approve", pending.id),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"], "active");
    assert_eq!(w.stored(&pending.id).await["ticket"]["key"], "SEC-42");

    let (status, answer) = w
        .cloud_delivery(jira_closing("SEC-42", CLOUD_ID, w.millis(1)), Some("d-4"))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1, "{answer}");
    World::assert_ended(&w.stored(&pending.id).await);
}

#[tokio::test]
async fn the_expiry_function_moves_stored_keys_when_invoked_with_the_canonical_keys_job() {
    let w = world().await;
    let ids = seed_bound_active_grants(
        &w.app,
        &TicketRef {
            connection: "fs".into(),
            key: "00264".into(),
        },
        "prod-db",
        1,
    )
    .await;
    let event = LambdaEvent::new(json!({"job": "canonical_ticket_keys"}), Context::default());

    let answer = handle_scheduled_job(&w.app, event).await.unwrap();

    assert_eq!(answer, json!({"outcome": "done", "moved": 1}));
    assert_eq!(w.stored(&ids[0]).await["ticket"]["key"], "264");
}

#[tokio::test]
async fn reconciliation_moves_a_key_stored_in_another_spelling_before_reading_it() {
    let w = world().await;
    let ids = seed_bound_active_grants(
        &w.app,
        &TicketRef {
            connection: "jira-cloud".into(),
            key: "sec-42".into(),
        },
        "prod-db",
        1,
    )
    .await;
    // Still open: reconciliation ends nothing, and the grant now stands under the key Jira uses.
    Mock::given(method("GET"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issues": [support::cloud_issue("SEC-42", "In Progress", "indeterminate", None)],
            "isLast": true
        })))
        .mount(&w.cloud)
        .await;
    let report = w.app.reconcile().await.unwrap();
    assert_eq!(
        (report.tickets_checked, report.closings_found),
        (1, 0),
        "{report:?}"
    );
    assert_eq!(w.stored(&ids[0]).await["ticket"]["key"], "SEC-42");

    let (status, answer) = w
        .cloud_delivery(jira_closing("SEC-42", CLOUD_ID, w.millis(1)), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    World::assert_ended(&w.stored(&ids[0]).await);
}

#[tokio::test]
async fn a_captured_closing_replayed_after_the_ticket_was_bound_again_ends_nothing_new() {
    let w = world().await;
    jira_issue(&w.cloud, "3", &["SEC-42"], true).await;
    let first = w.bound_grant("jira-cloud", "SEC-42").await;
    let first = first["id"].as_str().unwrap().to_owned();

    // The closing, a minute later: it ends the grant bound before it. An attacker keeps the signed body.
    w.clock.advance(time::Duration::minutes(1));
    let captured = jira_closing("SEC-42", CLOUD_ID, w.millis(0));
    let (status, answer) = w.cloud_delivery(captured.clone(), Some("d-3")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1, "{answer}");
    World::assert_ended(&w.stored(&first).await);

    // The ticket is reopened and bound again; the captured body is replayed without its delivery id.
    w.clock.advance(time::Duration::minutes(1));
    let again = w.bound_grant("jira-cloud", "SEC-42").await;
    let again = again["id"].as_str().unwrap().to_owned();
    let calls = provisioner_actions(&w.provisioner).await;
    let (status, answer) = w.cloud_delivery(captured, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 0, "{answer}");

    let (status, shown) = call(
        &w.router,
        "GET",
        &format!("/v1/grants/{again}"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["status"], "active", "{shown}");
    let stored = w.stored(&again).await;
    assert_eq!(
        (stored["status"].as_str(), &stored["end_reason"]),
        (Some("active"), &Value::Null)
    );
    assert_eq!(
        provisioner_actions(&w.provisioner).await,
        calls,
        "nothing was revoked"
    );
}

#[tokio::test]
async fn a_closing_that_does_not_say_when_is_confirmed_with_jira_before_anything_ends() {
    let w = world().await;
    jira_issue(&w.cloud, "3", &["SEC-42"], true).await;
    let grant = w.bound_grant("jira-cloud", "SEC-42").await;
    let id = grant["id"].as_str().unwrap().to_owned();
    // A Jira Automation "Issue data" body: no timestamp, the status it claims is done.
    let automation = json!({"issue": {"key": "SEC-42", "id": CLOUD_ID, "fields": {"status": {"name": "Done", "statusCategory": {"key": "done"}}}}})
        .to_string()
        .into_bytes();
    let secret = [("x-ticketbound-secret", w.secrets["jira-cloud"].clone())];

    // Jira says the issue is open: the body's word is not enough.
    let (status, answer) = w
        .post("/webhooks/jira/jira-cloud", &secret, automation.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ignored"], true, "{answer}");
    assert_eq!(w.stored(&id).await["status"], "active");

    // Jira says it is done: the grant ends.
    w.cloud.reset().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/SEC-42"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(support::cloud_issue("SEC-42", "Done", "done", None)),
        )
        .mount(&w.cloud)
        .await;
    let (status, answer) = w
        .post("/webhooks/jira/jira-cloud", &secret, automation)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1, "{answer}");
    World::assert_ended(&w.stored(&id).await);
}

#[tokio::test]
async fn a_binding_refused_for_another_assignee_does_not_say_who_it_is() {
    let w = world().await;
    let issue = support::cloud_issue(
        "SEC-43",
        "In Progress",
        "indeterminate",
        Some(support::cloud_user("acc-bob", Some("bob@example.com"))),
    );
    Mock::given(path("/rest/api/3/issue/SEC-43"))
        .respond_with(ResponseTemplate::new(200).set_body_json(issue))
        .mount(&w.cloud)
        .await;
    let before = w
        .store
        .list_grants(&Default::default(), 50, None)
        .await
        .unwrap()
        .items
        .len();

    let body = json!({"resource": "prod-db", "reason": "bound", "duration": "PT1H", "ticket": {"connection": "jira-cloud", "key": "SEC-43"}});
    let (status, answer) = call(
        &w.router,
        "POST",
        "/v1/grants",
        ALICE,
        Some(&body.to_string()),
    )
    .await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(
        answer["error"]["code"], "ticket_not_assigned_to_requester",
        "{answer}"
    );
    let text = answer.to_string();
    for secret in ["acc-bob", "User acc-bob", "bob@example.com"] {
        assert!(
            !text.contains(secret),
            "the refusal names the assignee: {text}"
        );
    }
    assert_eq!(
        w.store
            .list_grants(&Default::default(), 50, None)
            .await
            .unwrap()
            .items
            .len(),
        before,
        "nothing was stored"
    );
}
