//! Linear beyond the conformance suite, against a `wiremock` GraphQL endpoint answering as Linear documents:
//! connecting (no URL, a masked key, OAuth client credentials), its rate limit (HTTP 400 with `RATELIMITED`,
//! the wait read from `X-RateLimit-*`, on reads and on writes), "assigned to me" paged with Linear's cursors and
//! narrowed by `q`, and audit issues created in a team, found again by their marker, commented on and closed.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use wiremock::matchers::{body_partial_json, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use support::{ADMIN, quick_policy, spawn_app};
use ticketbound::adapters::ticket_systems::HttpTicketSystems;
use ticketbound::adapters::ticket_systems::linear::{CLIENT_SECRET, LINEAR};
use ticketbound::domain::connection::{
    AuthMethod, ConnectionSecrets, ConnectionSettings, Credentials, PersonLookup, TicketQuery,
    TicketState,
};
use ticketbound::domain::secret::Secret;
use ticketbound::domain::ticket_writes::{CloseOutcome, NewTicket, TicketDestination};
use ticketbound::ports::{TicketSystem, TicketSystemError, TicketSystems};

fn client(
    server: &MockServer,
    credentials: Credentials,
    client_id: Option<&str>,
) -> Arc<dyn TicketSystem> {
    let mut fields = serde_json::Map::new();
    if let Some(id) = client_id {
        fields.insert("client_id".into(), json!(id));
    }
    let settings = ConnectionSettings {
        id: "lin".into(),
        kind: LINEAR,
        base_url: server.uri(),
        auth_method: credentials.method(),
        closed_statuses: ticketbound::adapters::ticket_systems::rules(LINEAR)
            .default_closed_statuses(),
        webhook_secrets_active: 1,
        created_at: OffsetDateTime::UNIX_EPOCH,
        updated_at: OffsetDateTime::UNIX_EPOCH,
        audit: None,
        people: Default::default(),
        fields,
    };
    HttpTicketSystems::new(quick_policy())
        .unwrap()
        .connect(
            &settings,
            &ConnectionSecrets {
                credentials,
                webhook_secrets: vec![Secret::new("0123456789abcdef")],
            },
        )
        .unwrap()
}

fn api_key_client(server: &MockServer) -> Arc<dyn TicketSystem> {
    client(
        server,
        Credentials::new(AuthMethod::API_KEY, Secret::new("lin_api_key")),
        None,
    )
}

fn issue(identifier: &str, state_type: &str) -> Value {
    json!({
        "id": format!("id-{identifier}"), "identifier": identifier, "title": format!("Ticket {identifier}"),
        "url": format!("https://linear.app/acme/issue/{identifier}"), "trashed": null, "archivedAt": null,
        "state": {"name": state_type, "type": state_type}, "assignee": {"id": "u-alice", "email": "alice@example.com", "name": "Alice"}
    })
}

fn issues(nodes: Vec<Value>, next: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"data": {"issues": {
        "nodes": nodes,
        "pageInfo": {"hasNextPage": next.is_some(), "endCursor": next}
    }}}))
}

/// Linear's rate-limit answer: HTTP 400, `RATELIMITED`, and the request budget used up until `reset_ms`.
fn rate_limited(reset_ms: i64) -> ResponseTemplate {
    ResponseTemplate::new(400)
        .insert_header("x-ratelimit-requests-limit", "1500")
        .insert_header("x-ratelimit-requests-remaining", "0")
        .insert_header("x-ratelimit-requests-reset", reset_ms.to_string().as_str())
        .set_body_json(json!({"errors": [{"message": "Rate limit exceeded", "extensions": {"code": "RATELIMITED", "type": "ratelimited", "userPresentableMessage": "Too many requests"}}]}))
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[tokio::test]
async fn a_linear_connection_needs_no_url_masks_its_credentials_and_refuses_what_does_not_fit() {
    let app = spawn_app(quick_policy()).await;
    let created = app
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(json!({"id": "lin", "kind": "linear", "api_key": "lin_api_secret_value"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.json["base_url"], "https://api.linear.app");
    assert_eq!(created.json["api_key"], "********");
    assert!(created.json.get("client_id").is_none());
    assert!(!created.text.contains("lin_api_secret_value"));
    let before = app
        .call("GET", "/v1/connections/lin", ADMIN, None)
        .await
        .json;

    for (body, status, code) in [
        (
            json!({"api_token": "t"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "field_not_applicable",
        ),
        (
            json!({"api_key": "k", "client_id": "app"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ambiguous_credentials",
        ),
        (
            json!({"client_id": "app"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_credentials",
        ),
        (
            json!({"client_id": 5}),
            StatusCode::BAD_REQUEST,
            "malformed_request",
        ),
        (
            json!({"closed_statuses": [3]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_closed_statuses",
        ),
        (
            json!({"audit": {"project": "eng", "priority": 2}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_audit",
        ),
    ] {
        let refused = app
            .call("PATCH", "/v1/connections/lin", ADMIN, Some(body.clone()))
            .await;
        assert_eq!(refused.status, status, "{body}: {}", refused.text);
        assert_eq!(refused.json["error"]["code"], code, "{body}");
    }
    assert_eq!(
        app.call("GET", "/v1/connections/lin", ADMIN, None)
            .await
            .json,
        before,
        "refused changes change nothing"
    );

    // Switching to OAuth client credentials: the client id is a setting, the secret masked.
    let switched = app
        .call(
            "PATCH",
            "/v1/connections/lin",
            ADMIN,
            Some(json!({"client_id": "app-1", "client_secret": "oauth-secret-value"})),
        )
        .await;
    assert_eq!(switched.status, StatusCode::OK, "{}", switched.text);
    assert_eq!(switched.json["client_id"], "app-1");
    assert_eq!(switched.json["client_secret"], "********");
    assert!(switched.json.get("api_key").is_none());
    assert!(!switched.text.contains("oauth-secret-value"));
    // The masked secret sent back keeps it; a new client id alone changes only the id.
    let kept = app
        .call(
            "PATCH",
            "/v1/connections/lin",
            ADMIN,
            Some(json!({"client_id": "app-2", "client_secret": "********"})),
        )
        .await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.text);
    assert_eq!(kept.json["client_id"], "app-2");
    assert_eq!(kept.json["client_secret"], "********");
}

#[tokio::test]
async fn an_api_key_is_sent_as_is_and_client_credentials_get_one_bearer_token() {
    let server = MockServer::start().await;
    let viewer = ResponseTemplate::new(200).set_body_json(
        json!({"data": {"viewer": {"id": "u-bot", "name": "Bot", "email": "bot@acme.com"}}}),
    );
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(header("authorization", "lin_api_key"))
        .respond_with(viewer.clone())
        .expect(1)
        .mount(&server)
        .await;
    let seen = api_key_client(&server).verify().await.unwrap();
    assert_eq!(seen.account.id, "u-bot");

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("client_id=app-1"))
        .and(body_string_contains("client_secret=oauth-secret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "lin_oauth_tok", "token_type": "Bearer", "expires_in": 2591999, "scope": "read"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(header("authorization", "Bearer lin_oauth_tok"))
        .respond_with(viewer)
        .expect(2)
        .mount(&server)
        .await;
    // A client is built for every use of a connection: the token outlives it.
    for _ in 0..2 {
        client(
            &server,
            Credentials::new(CLIENT_SECRET, Secret::new("oauth-secret")),
            Some("app-1"),
        )
        .verify()
        .await
        .unwrap();
    }

    // Client credentials Linear refuses need re-authorization, and their secret is never in the message.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": "invalid_client", "error_description": "Invalid client credentials"}),
        ))
        .mount(&server)
        .await;
    let err = client(
        &server,
        Credentials::new(CLIENT_SECRET, Secret::new("oauth-secret")),
        Some("app-1"),
    )
    .verify()
    .await
    .unwrap_err();
    assert!(
        matches!(err, TicketSystemError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("oauth-secret"), "{err}");
}

#[tokio::test]
async fn a_rate_limit_is_a_400_saying_ratelimited_waited_for_when_short_and_reported_when_long() {
    // Reset in a second: waited for, then the read succeeds.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(rate_limited(now_ms() + 1000))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(issues(vec![issue("ENG-1", "started")], None))
        .mount(&server)
        .await;
    let started = Instant::now();
    let read = api_key_client(&server).get_ticket("ENG-1").await.unwrap();
    assert!(read.is_some_and(|t| !t.closed));
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the reset header was not honoured"
    );

    // Reset in an hour: no waiting, a rate limit that says how long.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(rate_limited(now_ms() + 3_600_000))
        .mount(&server)
        .await;
    let client = api_key_client(&server);
    let err = client.get_ticket("ENG-1").await.unwrap_err();
    let TicketSystemError::RateLimited { retry_after, .. } = err else {
        panic!("expected a rate limit, got {err:?}");
    };
    assert!(retry_after.is_some_and(|w| w > Duration::from_secs(3500)));
    // Reconciliation stops for the run rather than wait, and says for how long.
    let states = client
        .ticket_states(&["ENG-1".into(), "ENG-2".into()])
        .await
        .unwrap();
    assert!(states.states.is_empty());
    assert!(
        states
            .rate_limited
            .is_some_and(|w| w > Duration::from_secs(3500))
    );
}

#[tokio::test]
async fn assigned_to_me_is_found_by_e_mail_paged_with_cursors_and_narrowed_by_q() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_partial_json(
            json!({"variables": {"email": "alice@example.com"}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"data": {"users": {"nodes": [
                {"id": "u-alice", "name": "Alice", "email": "Alice@Example.com", "active": true}
            ]}}}),
        ))
        .mount(&server)
        .await;
    let mine = json!({"assignee": {"id": {"eq": "u-alice"}}});
    let open = json!({"state": {"type": {"nin": ["completed", "canceled", "duplicate"]}}});
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_partial_json(
            json!({"variables": {"after": null, "filter": {"and": [mine, open]}}}),
        ))
        .respond_with(issues(
            (1..=50)
                .map(|n| issue(&format!("ENG-{n}"), "started"))
                .collect(),
            Some("cursor-50"),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_partial_json(
            json!({"variables": {"after": "cursor-50"}}),
        ))
        .respond_with(issues(
            vec![issue("ENG-51", "started"), issue("ENG-52", "completed")],
            None,
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_partial_json(
            json!({"variables": {"filter": {"and": [mine, open, {"or": [
                {"title": {"containsIgnoreCase": "ENG-7"}},
                {"team": {"key": {"eq": "ENG"}}, "number": {"eq": 7}}
            ]}]}}}),
        ))
        .respond_with(issues(vec![issue("ENG-7", "started")], None))
        // Partial matching would also take this narrowed query for the unnarrowed one: this mock goes first.
        .with_priority(1)
        .mount(&server)
        .await;
    let client = api_key_client(&server);
    let PersonLookup::Found(alice) = client.find_person("alice@example.com").await.unwrap() else {
        panic!("the exact address identifies Alice");
    };
    assert_eq!(alice.id, "u-alice");
    let first = client
        .open_tickets_page(&alice, &TicketQuery::default())
        .await
        .unwrap();
    assert_eq!(first.items.len(), 50);
    assert_eq!(first.next.as_deref(), Some("cursor-50"));
    let second = client
        .open_tickets_page(
            &alice,
            &TicketQuery {
                text: None,
                page: first.next.clone(),
            },
        )
        .await
        .unwrap();
    let keys: Vec<&str> = second.items.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["ENG-51"], "the completed issue is left out");
    assert_eq!(second.next, None);
    let found = client
        .open_tickets_page(
            &alice,
            &TicketQuery {
                text: Some(" ENG-7 ".into()),
                page: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].key, "ENG-7");
    let bad = client
        .open_tickets_page(
            &alice,
            &TicketQuery {
                text: None,
                page: Some("not a cursor\n".into()),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(bad, TicketSystemError::InvalidPageToken(_)),
        "{bad:?}"
    );
    let all = client.open_tickets_for(&alice).await.unwrap();
    assert_eq!(all.len(), 51);
}

#[tokio::test]
async fn archived_and_trashed_issues_are_closed_and_a_missing_one_is_deleted() {
    let server = MockServer::start().await;
    let mut archived = issue("ENG-1", "started");
    archived["archivedAt"] = json!("2026-05-01T12:00:00.000Z");
    let mut trashed = issue("ENG-2", "unstarted");
    trashed["trashed"] = json!(true);
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(issues(
            vec![archived, trashed, issue("ENG-3", "duplicate")],
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let keys: Vec<String> = ["ENG-1", "eng-2", "ENG-3", "ENG-4"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    let answer = api_key_client(&server).ticket_states(&keys).await.unwrap();
    assert_eq!(answer.calls, 1, "one query for the whole batch");
    assert_eq!(
        answer.states,
        vec![
            ("ENG-1".into(), TicketState::Closed),
            ("eng-2".into(), TicketState::Deleted),
            ("ENG-3".into(), TicketState::Closed),
            ("ENG-4".into(), TicketState::Deleted),
        ]
    );
}

fn graphql_data(data: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"data": data}))
}

#[tokio::test]
async fn audit_issues_are_created_in_the_team_found_by_their_marker_and_closed_once() {
    let app = spawn_app(quick_policy()).await;
    let audited = app
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(json!({"id": "lin", "kind": "linear", "api_key": "k", "audit": {"project": "ENG", "priority": 2}})),
        )
        .await;
    assert_eq!(audited.status, StatusCode::CREATED, "{}", audited.text);
    assert_eq!(
        audited.json["audit"],
        json!({"project": "ENG", "priority": 2})
    );

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("teams("))
        .and(body_partial_json(json!({"variables": {"key": "ENG"}})))
        .respond_with(graphql_data(
            json!({"teams": {"nodes": [{"id": "team-eng"}]}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("issueCreate"))
        .and(body_partial_json(json!({"variables": {"input": {"teamId": "team-eng", "priority": 2, "title": "Access to prod-db for alice@example.com"}}})))
        .respond_with(graphql_data(json!({"issueCreate": {"success": true, "issue": {"identifier": "ENG-77", "url": "https://linear.app/acme/issue/ENG-77"}}})))
        .expect(1)
        .mount(&server)
        .await;
    let client = api_key_client(&server);
    let created = client
        .create_ticket(&NewTicket {
            destination: TicketDestination {
                project: Some("ENG".into()),
                priority: Some(2),
                ..TicketDestination::default()
            },
            summary: "Access to prod-db for alice@example.com".into(),
            description: "Requester: alice@example.com".into(),
            requester_email: "alice@example.com".into(),
            marker: "tb-01jd3-audit".into(),
        })
        .await
        .unwrap();
    assert_eq!(created.key, "ENG-77");
    assert_eq!(created.url, "https://linear.app/acme/issue/ENG-77");
    let sent: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let description = sent
        .iter()
        .find_map(|b| b["variables"]["input"]["description"].as_str())
        .unwrap();
    assert!(
        description.ends_with("Ticketbound marker: tb-01jd3-audit"),
        "{description}"
    );

    // Found again by its marker (an attempt whose answer was lost is not repeated).
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_partial_json(json!({"variables": {"filter": {"description": {"contains": "Ticketbound marker: tb-01jd3-audit"}}}})))
        .respond_with(graphql_data(json!({"issues": {"nodes": [issue("ENG-77", "started")]}})))
        .mount(&server)
        .await;
    let found = client.find_by_marker("tb-01jd3-audit").await.unwrap();
    assert_eq!(found.map(|t| t.key).as_deref(), Some("ENG-77"));

    // Closing moves it into its team's completed state, once.
    let mut open = issue("ENG-77", "started");
    open["team"] = json!({"id": "team-eng"});
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_partial_json(json!({"variables": {"first": 1, "filter": {"or": [{"team": {"key": {"eq": "ENG"}}, "number": {"eq": 77}}]}}})))
        .respond_with(graphql_data(json!({"issues": {"nodes": [open]}})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("workflowStates"))
        .and(body_partial_json(
            json!({"variables": {"team": "team-eng"}}),
        ))
        .respond_with(graphql_data(
            json!({"workflowStates": {"nodes": [{"id": "state-done"}]}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("issueUpdate"))
        .and(body_partial_json(
            json!({"variables": {"id": "id-ENG-77", "input": {"stateId": "state-done"}}}),
        ))
        .respond_with(graphql_data(json!({"issueUpdate": {"success": true}})))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        client.close_ticket("ENG-77").await.unwrap(),
        CloseOutcome::Closed
    );
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("commentCreate"))
        .and(body_partial_json(
            json!({"variables": {"input": {"issueId": "id-ENG-77", "body": "Access ended."}}}),
        ))
        .respond_with(graphql_data(json!({"commentCreate": {"success": true}})))
        .expect(1)
        .mount(&server)
        .await;
    assert!(client.add_comment("ENG-77", "Access ended.").await.unwrap());

    // Already completed, or gone: nothing is written.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_partial_json(json!({"variables": {"filter": {"or": [{"team": {"key": {"eq": "ENG"}}, "number": {"eq": 1}}]}}})))
        .respond_with(graphql_data(json!({"issues": {"nodes": [issue("ENG-1", "completed")]}})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_partial_json(json!({"variables": {"filter": {"or": [{"team": {"key": {"eq": "ENG"}}, "number": {"eq": 2}}]}}})))
        .respond_with(graphql_data(json!({"issues": {"nodes": []}})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("issueUpdate"))
        .respond_with(graphql_data(json!({"issueUpdate": {"success": true}})))
        .expect(0)
        .mount(&server)
        .await;
    let client = api_key_client(&server);
    assert_eq!(
        client.close_ticket("ENG-1").await.unwrap(),
        CloseOutcome::AlreadyClosed
    );
    assert_eq!(
        client.close_ticket("ENG-2").await.unwrap(),
        CloseOutcome::NotFound
    );
    assert!(!client.add_comment("ENG-2", "x").await.unwrap());

    // A team the account may not write to: not permitted, named.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("teams("))
        .respond_with(graphql_data(
            json!({"teams": {"nodes": [{"id": "team-eng"}]}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("issueCreate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": null, "errors": [{"message": "You don't have access to this team", "extensions": {"code": "FORBIDDEN", "type": "forbidden"}}]})))
        .mount(&server)
        .await;
    let err = api_key_client(&server)
        .create_ticket(&NewTicket {
            destination: TicketDestination {
                project: Some("ENG".into()),
                priority: Some(0),
                ..TicketDestination::default()
            },
            summary: "s".into(),
            description: "d".into(),
            requester_email: "alice@example.com".into(),
            marker: "tb-x-audit".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, TicketSystemError::NotPermitted(ref m) if m.contains("team ENG")),
        "{err:?}"
    );
}

/// A write Linear refuses with its rate limit (HTTP 400, `RATELIMITED`) changed nothing: it is a rate limit
/// that says when to come back (the reset header, at most an hour away), never an unexpected refusal, and the
/// later attempt of the durable retry opens the issue once. A reset due within the call's patience is waited
/// out and the write sent again.
#[tokio::test]
async fn a_rate_limited_write_is_retryable_after_the_reset_and_a_later_attempt_writes_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("teams("))
        .respond_with(graphql_data(
            json!({"teams": {"nodes": [{"id": "team-eng"}]}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("issueCreate"))
        .respond_with(rate_limited(now_ms() + 600_000))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("issueCreate"))
        .respond_with(graphql_data(json!({"issueCreate": {"success": true, "issue": {"identifier": "ENG-78", "url": "https://linear.app/acme/issue/ENG-78"}}})))
        .expect(1)
        .mount(&server)
        .await;
    let ticket = NewTicket {
        destination: TicketDestination {
            project: Some("ENG".into()),
            ..TicketDestination::default()
        },
        summary: "Grant access to prod-db for alice@example.com".into(),
        description: "Requester: alice@example.com".into(),
        requester_email: "alice@example.com".into(),
        marker: "tb-01jd4-grant".into(),
    };
    let client = api_key_client(&server);

    let err = client.create_ticket(&ticket).await.unwrap_err();
    let TicketSystemError::RateLimited { retry_after, .. } = &err else {
        panic!("a rate-limited write is a rate limit, not a refusal: {err:?}");
    };
    let wait = retry_after.expect("the wait until the reset");
    assert!(
        wait > Duration::from_secs(590) && wait <= Duration::from_secs(600),
        "{wait:?}"
    );
    assert!(!err.to_string().contains("lin_api_key"), "{err}");

    // The durable retry's next attempt, after the reset: created once.
    let created = client.create_ticket(&ticket).await.unwrap();
    assert_eq!(created.key, "ENG-78");

    // A reset months away (a clock or unit gone wrong) is waited for an hour at most.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("commentCreate"))
        .respond_with(rate_limited(now_ms() + 90 * 24 * 3_600_000))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(issues(vec![issue("ENG-78", "started")], None))
        .mount(&server)
        .await;
    let err = api_key_client(&server)
        .add_comment("ENG-78", "Access ended.")
        .await
        .unwrap_err();
    assert!(
        matches!(err, TicketSystemError::RateLimited { retry_after: Some(w), .. } if w == Duration::from_secs(3600)),
        "{err:?}"
    );

    // A reset within the call's patience: waited out, and the comment written once.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("commentCreate"))
        .respond_with(rate_limited(now_ms() + 1000))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("commentCreate"))
        .respond_with(graphql_data(json!({"commentCreate": {"success": true}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(issues(vec![issue("ENG-78", "started")], None))
        .mount(&server)
        .await;
    let started = Instant::now();
    assert!(
        api_key_client(&server)
            .add_comment("ENG-78", "Access ended.")
            .await
            .unwrap()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the reset header was not honoured"
    );
}
