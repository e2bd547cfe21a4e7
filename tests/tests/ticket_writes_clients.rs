//! Ticket-system writes against local servers answering like Jira Cloud, Jira Data Center and Freshservice
//! (protocol-facts §3.3–3.4, §4): create (ADF on Cloud, a string on Data Center), find by marker, comment,
//! close (Jira's transition lookup, Freshservice's bypass retry), 401s, and which failures are retried.

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use time::OffsetDateTime;
use wiremock::matchers::query_param_is_missing;
use wiremock::matchers::{body_json, body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use support::{basic, cloud_issue, quick_policy};
use ticketbound::adapters::ticket_systems::HttpTicketSystems;
use ticketbound::domain::connection::{
    AuthMethod, ConnectionKind, ConnectionSecrets, ConnectionSettings, Credentials,
};
use ticketbound::domain::secret::Secret;
use ticketbound::domain::ticket_writes::{CloseOutcome, NewTicket, TicketDestination};
use ticketbound::ports::{TicketSystem, TicketSystemError, TicketSystems};

fn fixture(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap(),
    )
    .unwrap()
}

fn client(kind: ConnectionKind, server: &MockServer) -> Arc<dyn TicketSystem> {
    let (method, credentials) = match kind {
        ConnectionKind::JiraCloud => (
            AuthMethod::ApiToken,
            Credentials::new(AuthMethod::ApiToken, Secret::new("cloud-token")),
        ),
        ConnectionKind::JiraDataCenter => (
            AuthMethod::PersonalAccessToken,
            Credentials::new(AuthMethod::PersonalAccessToken, Secret::new("dc-pat")),
        ),
        ConnectionKind::Freshservice => (
            AuthMethod::ApiKey,
            Credentials::new(AuthMethod::ApiKey, Secret::new("fs-key")),
        ),
        ConnectionKind::ServiceNow => (
            AuthMethod::Password,
            Credentials::new(AuthMethod::Password, Secret::new("snow-pass")),
        ),
        other => panic!("no writes client for {other:?}"),
    };
    let settings = ConnectionSettings {
        id: "conn".into(),
        kind,
        base_url: server.uri(),
        auth_method: method,
        closed_statuses: ticketbound::adapters::ticket_systems::rules(kind)
            .default_closed_statuses(),
        webhook_secrets_active: 1,
        created_at: OffsetDateTime::UNIX_EPOCH,
        updated_at: OffsetDateTime::UNIX_EPOCH,
        audit: None,
        people: Default::default(),
        fields: json!({"email": "bot@acme.com"})
            .as_object()
            .cloned()
            .unwrap(),
    };
    HttpTicketSystems::new(quick_policy())
        .unwrap()
        .connect(
            &settings,
            &ConnectionSecrets {
                credentials,
                webhook_secrets: vec![],
            },
        )
        .unwrap()
}

fn jira_ticket() -> NewTicket {
    NewTicket {
        destination: TicketDestination {
            project: Some("OPS".into()),
            issue_type: Some("Task".into()),
            ..TicketDestination::default()
        },
        summary: "Grant access to Production DB for alice@example.com".into(),
        description: "Requester: alice@example.com\nGrant: 01JD3".into(),
        requester_email: "alice@example.com".into(),
        marker: "tb-01jd3-grant".into(),
    }
}

fn fs_ticket() -> NewTicket {
    NewTicket {
        destination: TicketDestination {
            group_id: Some(42),
            priority: Some(3),
            ..TicketDestination::default()
        },
        ..jira_ticket()
    }
}

#[tokio::test]
async fn jira_cloud_creates_issues_with_an_adf_description_and_the_marker_label() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .and(header("authorization", basic("bot@acme.com", "cloud-token").as_str()))
        .and(body_json(json!({"fields": {
            "project": {"key": "OPS"},
            "issuetype": {"name": "Task"},
            "summary": "Grant access to Production DB for alice@example.com",
            "description": {"type": "doc", "version": 1, "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "Requester: alice@example.com"}]},
                {"type": "paragraph", "content": [{"type": "text", "text": "Grant: 01JD3"}]}
            ]},
            "labels": ["ticketbound", "tb-01jd3-grant"]
        }})))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"id": "10000", "key": "OPS-24", "self": "https://acme.atlassian.net/rest/api/3/issue/10000"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let created = client(ConnectionKind::JiraCloud, &server)
        .create_ticket(&jira_ticket())
        .await
        .unwrap();
    assert_eq!(created.key, "OPS-24");
    assert_eq!(created.url, format!("{}/browse/OPS-24", server.uri()));
}

#[tokio::test]
async fn jira_data_center_creates_issues_with_a_string_description() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/api/2/issue"))
        .and(header("authorization", "Bearer dc-pat"))
        .and(body_partial_json(json!({"fields": {
            "project": {"key": "OPS"},
            "description": "Requester: alice@example.com\nGrant: 01JD3",
            "labels": ["ticketbound", "tb-01jd3-grant"]
        }})))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": "20000", "key": "OPS-7"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let created = client(ConnectionKind::JiraDataCenter, &server)
        .create_ticket(&jira_ticket())
        .await
        .unwrap();
    assert_eq!(created.key, "OPS-7");
}

#[tokio::test]
async fn freshservice_creates_tickets_with_requester_status_priority_group_and_tag() {
    let server = MockServer::start().await;
    let mut answer = fixture("freshservice-api-ticket-create-response.doc.json");
    answer["ticket"]["id"] = 264.into();
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets"))
        .and(header("authorization", basic("fs-key", "X").as_str()))
        .and(body_json(json!({
            "subject": "Grant access to Production DB for alice@example.com",
            "description": "<p>Requester: alice@example.com</p><p>Grant: 01JD3</p>",
            "email": "alice@example.com",
            "status": 2,
            "priority": 3,
            "group_id": 42,
            "tags": ["ticketbound", "tb-01jd3-grant"]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(answer))
        .expect(1)
        .mount(&server)
        .await;
    let created = client(ConnectionKind::Freshservice, &server)
        .create_ticket(&fs_ticket())
        .await
        .unwrap();
    assert_eq!(created.key, "264");
    assert_eq!(created.url, format!("{}/a/tickets/264", server.uri()));
}

#[tokio::test]
async fn a_destination_of_the_other_kind_is_refused_without_a_call() {
    let server = MockServer::start().await;
    let jira = client(ConnectionKind::JiraCloud, &server);
    assert!(matches!(
        jira.create_ticket(&fs_ticket()).await,
        Err(TicketSystemError::Unexpected(_))
    ));
    let fs = client(ConnectionKind::Freshservice, &server);
    assert!(fs.create_ticket(&jira_ticket()).await.is_err());
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn markers_are_found_by_label_and_by_tag() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/search/jql"))
        .and(query_param(
            "jql",
            "labels = \"tb-01jd3-grant\" ORDER BY created ASC",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issues": [{"id": "10000", "key": "OPS-24", "fields": {"summary": "x"}}], "isLast": true
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/search"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"startAt": 0, "maxResults": 1, "total": 0, "issues": []})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/filter"))
        .and(query_param("query", "\"tag:'tb-01jd3-grant'\""))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "tickets": [{"id": 270, "subject": "b"}, {"id": 264, "subject": "a"}], "total": 2
        })))
        .mount(&server)
        .await;
    let cloud = client(ConnectionKind::JiraCloud, &server)
        .find_by_marker("tb-01jd3-grant")
        .await
        .unwrap();
    assert_eq!(cloud.map(|t| t.key).as_deref(), Some("OPS-24"));
    let dc = client(ConnectionKind::JiraDataCenter, &server)
        .find_by_marker("tb-01jd3-grant")
        .await
        .unwrap();
    assert_eq!(dc, None);
    let fs = client(ConnectionKind::Freshservice, &server)
        .find_by_marker("tb-01jd3-grant")
        .await
        .unwrap();
    assert_eq!(
        fs.map(|t| t.key).as_deref(),
        Some("264"),
        "the oldest ticket wins"
    );
}

#[tokio::test]
async fn comments_and_notes_go_to_each_kind_in_its_format() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue/OPS-24/comment"))
        .and(body_json(
            json!({"body": {"type": "doc", "version": 1, "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "Approved by bob"}]}
            ]}}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/2/issue/OPS-7/comment"))
        .and(body_json(json!({"body": "Approved by bob"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "2"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets/264/notes"))
        .and(body_json(
            json!({"body": "<p>Approved by bob</p>", "private": true}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"conversation": {"id": 3}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue/OPS-404/comment"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."]}),
        ))
        .mount(&server)
        .await;
    let cloud = client(ConnectionKind::JiraCloud, &server);
    assert!(
        cloud
            .add_comment("OPS-24", "Approved by bob")
            .await
            .unwrap()
    );
    assert!(!cloud.add_comment("OPS-404", "x").await.unwrap());
    assert!(
        client(ConnectionKind::JiraDataCenter, &server)
            .add_comment("OPS-7", "Approved by bob")
            .await
            .unwrap()
    );
    let fs = client(ConnectionKind::Freshservice, &server);
    assert!(fs.add_comment("264", "Approved by bob").await.unwrap());
    assert!(
        !fs.add_comment("../agents", "x").await.unwrap(),
        "a key that is not an id names no ticket"
    );
}

fn transitions() -> Value {
    json!({"transitions": [
        {"id": "21", "name": "Start", "to": {"id": "3", "name": "In Progress", "statusCategory": {"key": "indeterminate"}}, "hasScreen": false, "isAvailable": true},
        {"id": "31", "name": "Finish", "to": {"id": "10001", "name": "Erledigt", "statusCategory": {"key": "done"}}, "hasScreen": false, "isAvailable": true}
    ]})
}

#[tokio::test]
async fn jira_closes_through_the_transition_into_the_done_category() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/OPS-24"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(cloud_issue("OPS-24", "To Do", "new", None)),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/OPS-24/transitions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(transitions()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue/OPS-24/transitions"))
        .and(body_json(json!({"transition": {"id": "31"}})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let outcome = client(ConnectionKind::JiraCloud, &server)
        .close_ticket("OPS-24")
        .await
        .unwrap();
    assert_eq!(outcome, CloseOutcome::Closed);
}

#[tokio::test]
async fn jira_closing_a_done_or_deleted_issue_needs_no_transition() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/OPS-1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(cloud_issue("OPS-1", "Done", "done", None)),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/2/issue/OPS-2"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .expect(0)
        .mount(&server)
        .await;
    let dc = client(ConnectionKind::JiraDataCenter, &server);
    assert_eq!(
        dc.close_ticket("OPS-1").await.unwrap(),
        CloseOutcome::AlreadyClosed
    );
    assert_eq!(
        dc.close_ticket("OPS-2").await.unwrap(),
        CloseOutcome::NotFound
    );
}

#[tokio::test]
async fn jira_without_a_done_transition_or_refusing_it_is_an_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/OPS-24"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(cloud_issue("OPS-24", "To Do", "new", None)),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/OPS-24/transitions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"transitions": [
            {"id": "21", "name": "Start", "to": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}}}
        ]})))
        .mount(&server)
        .await;
    let err = client(ConnectionKind::JiraCloud, &server)
        .close_ticket("OPS-24")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no transition into a done status"),
        "{err}"
    );

    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/OPS-24"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(cloud_issue("OPS-24", "To Do", "new", None)),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/OPS-24/transitions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(transitions()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue/OPS-24/transitions"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"errorMessages": [], "errors": {"resolution": "Resolution is required."}}),
        ))
        .mount(&server)
        .await;
    let err = client(ConnectionKind::JiraCloud, &server)
        .close_ticket("OPS-24")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("resolution: Resolution is required."),
        "{err}"
    );
}

#[tokio::test]
async fn freshservice_closes_with_status_5_and_retries_with_bypass_when_fields_are_mandatory() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/264"))
        .and(query_param_is_missing("bypass_mandatory"))
        .and(body_json(json!({"status": 5})))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(fixture("freshservice-api-error-400.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/264"))
        .and(query_param("bypass_mandatory", "true"))
        .and(body_json(json!({"status": 5})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("freshservice-api-ticket-update-response.doc.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/265"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket": {"id": 265}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/v2/tickets/266"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let fs = client(ConnectionKind::Freshservice, &server);
    assert_eq!(fs.close_ticket("264").await.unwrap(), CloseOutcome::Closed);
    assert_eq!(fs.close_ticket("265").await.unwrap(), CloseOutcome::Closed);
    assert_eq!(
        fs.close_ticket("266").await.unwrap(),
        CloseOutcome::NotFound
    );
}

#[tokio::test]
async fn refused_credentials_on_writes_are_unauthorized_for_every_kind_and_a_403_is_that_writes_permission()
 {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"errorMessages": ["Client must be authenticated to access this resource."]}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(
                json!({"code": "access_denied", "message": "You are not authorized"}),
            ),
        )
        .mount(&server)
        .await;
    for kind in [
        ConnectionKind::JiraCloud,
        ConnectionKind::JiraDataCenter,
        ConnectionKind::Freshservice,
    ] {
        let c = client(kind, &server);
        let ticket = if kind != ConnectionKind::Freshservice {
            jira_ticket()
        } else {
            fs_ticket()
        };
        let err = c.create_ticket(&ticket).await.unwrap_err();
        assert!(
            matches!(err, TicketSystemError::Unauthorized { status: 401, .. }),
            "{kind:?}: {err}"
        );
        assert!(!err.to_string().contains("cloud-token") && !err.to_string().contains("fs-key"));
        let err = c.add_comment("264", "x").await.unwrap_err();
        assert!(
            matches!(err, TicketSystemError::Unauthorized { .. }),
            "{kind:?}: {err}"
        );
    }
    // A 403 on a write is not refused credentials: the account lacks a permission for this write.
    let err = client(ConnectionKind::Freshservice, &server)
        .close_ticket("264")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TicketSystemError::NotPermitted(m)
            if m.contains("may not close ticket 264") && m.contains("You are not authorized")),
        "{err:?}"
    );
}

#[tokio::test]
async fn writes_retry_a_busy_answer_but_never_a_server_error_that_may_have_created_a_ticket() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"key": "OPS-25"})))
        .mount(&server)
        .await;
    let cloud = client(ConnectionKind::JiraCloud, &server);
    assert_eq!(
        cloud.create_ticket(&jira_ticket()).await.unwrap().key,
        "OPS-25"
    );

    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tickets"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(ConnectionKind::Freshservice, &server)
        .create_ticket(&fs_ticket())
        .await
        .unwrap_err();
    assert!(matches!(err, TicketSystemError::Unavailable(_)), "{err}");
}
