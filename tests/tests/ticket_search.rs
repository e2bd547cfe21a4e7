//! `GET /v1/tickets` through the portal API against local servers answering as Jira Cloud, Jira Data Center and
//! Freshservice document: results past ten pages reached by following `next`, `q` turned into the ticket
//! system's own query language with its escaping (the exact query sent is asserted), and cursors that are not
//! this search's refused with 400.

mod support;

use axum::http::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use support::{ALICE, TestApp, cloud_issue, cloud_user, quick_policy, spawn_app};

const PAGES: usize = 13;

/// `value` percent-encoded for a query string.
fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

async fn connect(app: &TestApp, id: &str, body: Value) {
    let mut body = body;
    body["id"] = json!(id);
    let created = app
        .call("POST", "/v1/connections", support::ADMIN, Some(body))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
}

async fn jira_cloud(app: &TestApp, server: &MockServer) {
    connect(
        app,
        "jira",
        json!({"kind": "jira_cloud", "base_url": server.uri(), "email": "bot@acme.com",
            "api_token": "tok-0123456789", "token_type": "classic"}),
    )
    .await;
    Mock::given(path("/rest/api/3/user/search"))
        .and(query_param("query", "alice@example.com"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([cloud_user("acc-alice", Some("alice@example.com"))])),
        )
        .mount(server)
        .await;
}

/// Every page of a search, following `next`; the answers' bodies in order.
async fn walk(app: &TestApp, first: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut uri = first.to_owned();
    loop {
        let answer = app.call("GET", &uri, ALICE, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.text);
        let next = answer.json["next"].as_str().map(str::to_owned);
        pages.push(answer.json);
        match next {
            Some(cursor) => uri = format!("{first}&cursor={}", enc(&cursor)),
            None => return pages,
        }
        assert!(pages.len() <= 2 * PAGES, "the walk ends");
    }
}

fn keys(pages: &[Value]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap().clone())
        .map(|t| t["key"].as_str().unwrap().to_owned())
        .collect()
}

const OPEN_JQL: &str = r#"assignee = "acc-alice" AND statusCategory != Done ORDER BY updated DESC"#;

#[tokio::test]
async fn jira_cloud_results_past_ten_pages_are_reached_through_next() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    jira_cloud(&app, &server).await;
    for page in 1..=PAGES {
        let mut mock = Mock::given(method("GET"))
            .and(path("/rest/api/3/search/jql"))
            .and(query_param("jql", OPEN_JQL))
            .and(query_param("maxResults", "50"));
        mock = if page == 1 {
            mock.and(query_param_is_missing("nextPageToken"))
        } else {
            mock.and(query_param("nextPageToken", format!("tok-{}", page - 1)))
        };
        let last = page == PAGES;
        let mut body = json!({
            "issues": [cloud_issue(&format!("SEC-{page}"), "In Progress", "indeterminate", None)],
            "isLast": last
        });
        if !last {
            body["nextPageToken"] = json!(format!("tok-{page}"));
        }
        mock.respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
    }

    let pages = walk(&app, "/v1/tickets?connection=jira").await;

    assert_eq!(pages.len(), PAGES);
    let expected: Vec<String> = (1..=PAGES).map(|n| format!("SEC-{n}")).collect();
    assert_eq!(keys(&pages), expected);
    assert_eq!(pages[PAGES - 1]["next"], Value::Null);
    let cursor = pages[0]["next"].as_str().unwrap();
    assert!(!cursor.contains("tok-1"), "the cursor is opaque: {cursor}");
}

#[tokio::test]
async fn jira_data_center_results_past_ten_pages_are_reached_through_next() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    connect(
        &app,
        "dc",
        json!({"kind": "jira_data_center", "base_url": server.uri(), "personal_access_token": "pat-0123456789"}),
    )
    .await;
    Mock::given(path("/rest/api/2/user/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"name": "alice", "key": "JIRAUSER1", "emailAddress": "alice@example.com", "active": true}
        ])))
        .mount(&server)
        .await;
    for start in 0..PAGES {
        Mock::given(method("GET"))
            .and(path("/rest/api/2/search"))
            .and(query_param(
                "jql",
                r#"assignee = "alice" AND statusCategory != Done ORDER BY updated DESC"#,
            ))
            .and(query_param("startAt", start.to_string()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "startAt": start, "maxResults": 50, "total": PAGES,
                "issues": [cloud_issue(&format!("OPS-{start}"), "Open", "new", None)]
            })))
            .expect(1)
            .mount(&server)
            .await;
    }

    let pages = walk(&app, "/v1/tickets?connection=dc").await;

    assert_eq!(pages.len(), PAGES);
    assert_eq!(keys(&pages).last().unwrap(), &format!("OPS-{}", PAGES - 1));
}

#[tokio::test]
async fn freshservice_results_past_ten_pages_are_reached_through_next() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    connect(
        &app,
        "fs",
        json!({"kind": "freshservice", "base_url": server.uri(), "api_key": "fs-key-0123456789"}),
    )
    .await;
    Mock::given(path("/api/v2/agents"))
        .and(query_param("email", "alice@example.com"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"agents": [{"id": 9, "email": "alice@example.com"}]})),
        )
        .mount(&server)
        .await;
    let total = (PAGES - 1) * 30 + 4;
    for page in 1..=PAGES {
        let count = if page == PAGES { 4 } else { 30 };
        let tickets: Vec<Value> = (0..count)
            .map(|i| json!({"id": page * 1000 + i, "subject": format!("Ticket {page}/{i}"), "status": 2, "responder_id": 9}))
            .collect();
        Mock::given(method("GET"))
            .and(path("/api/v2/tickets/filter"))
            .and(query_param(
                "query",
                "\"agent_id:9 AND (status:2 OR status:3)\"",
            ))
            .and(query_param("page", page.to_string()))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"tickets": tickets, "total": total})),
            )
            .expect(1)
            .mount(&server)
            .await;
    }

    let pages = walk(&app, "/v1/tickets?connection=fs").await;

    assert_eq!(pages.len(), PAGES);
    assert_eq!(keys(&pages).len(), total);
}

#[tokio::test]
async fn q_becomes_jql_escaped_for_quotes_backslashes_operators_and_unicode() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    jira_cloud(&app, &server).await;
    let narrowed = |clause: &str| {
        format!(
            r#"assignee = "acc-alice" AND statusCategory != Done AND {clause} ORDER BY updated DESC"#
        )
    };
    let cases = [
        (r#"say "hi""#, narrowed(r#"summary ~ "say \\\"hi\\\"""#)),
        (r"C:\temp", narrowed(r#"summary ~ "c\\:\\\\temp""#)),
        (
            "Disk OR Network",
            narrowed(r#"summary ~ "disk or network""#),
        ),
        (
            r#"x" OR assignee != "y"#,
            narrowed(r#"summary ~ "x\\\" or assignee \\!= \\\"y""#),
        ),
        (
            "Zugriff für Ünïcode ✓",
            narrowed(r#"summary ~ "zugriff für ünïcode ✓""#),
        ),
        ("[db] *", narrowed(r#"summary ~ "\\[db\\] \\*""#)),
        ("sec-42", narrowed(r#"key = "SEC-42""#)),
    ];
    for (i, (_, jql)) in cases.iter().enumerate() {
        Mock::given(method("GET"))
            .and(path("/rest/api/3/search/jql"))
            .and(query_param("jql", jql.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issues": [cloud_issue(&format!("HIT-{i}"), "Open", "new", None)], "isLast": true
            })))
            .expect(1)
            .mount(&server)
            .await;
    }

    for (i, (q, jql)) in cases.iter().enumerate() {
        let answer = app
            .call(
                "GET",
                &format!("/v1/tickets?connection=jira&q={}", enc(q)),
                ALICE,
                None,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{q}: {}", answer.text);
        assert_eq!(
            answer.json["items"][0]["key"],
            format!("HIT-{i}"),
            "q {q:?} must send exactly {jql}"
        );
    }
}

#[tokio::test]
async fn a_key_jira_does_not_know_finds_nothing_rather_than_failing() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    jira_cloud(&app, &server).await;
    Mock::given(path("/rest/api/3/search/jql"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "errorMessages": ["An issue with key 'NOPE-1' does not exist for field 'key'."], "errors": {}
        })))
        .mount(&server)
        .await;

    let answer = app
        .call("GET", "/v1/tickets?connection=jira&q=NOPE-1", ALICE, None)
        .await;

    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json, json!({"items": [], "next": null}));
}

#[tokio::test]
async fn freshservice_q_reads_a_ticket_id_directly_and_matches_subjects_on_each_page() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    connect(
        &app,
        "fs",
        json!({"kind": "freshservice", "base_url": server.uri(), "api_key": "fs-key-0123456789"}),
    )
    .await;
    Mock::given(path("/api/v2/agents"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"agents": [{"id": 9, "email": "alice@example.com"}]})),
        )
        .mount(&server)
        .await;
    Mock::given(path("/api/v2/tickets/266"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket":
            {"id": 266, "subject": "Database is slow", "status": 2, "responder_id": 9}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v2/tickets/267"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket":
            {"id": 267, "subject": "Someone else's", "status": 2, "responder_id": 10}})))
        .mount(&server)
        .await;
    Mock::given(path("/api/v2/tickets/filter"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"tickets": [
            {"id": 300, "subject": "VPN 'quoted' \"down\"", "status": 2, "responder_id": 9},
            {"id": 301, "subject": "Printer", "status": 2, "responder_id": 9}
        ], "total": 2})))
        .mount(&server)
        .await;

    let by_id = app
        .call("GET", "/v1/tickets?connection=fs&q=266", ALICE, None)
        .await;
    let not_mine = app
        .call("GET", "/v1/tickets?connection=fs&q=267", ALICE, None)
        .await;
    let by_text = app
        .call(
            "GET",
            &format!("/v1/tickets?connection=fs&q={}", enc("'QUOTED' \"down")),
            ALICE,
            None,
        )
        .await;

    assert_eq!(keys(&[by_id.json]), vec!["266"]);
    assert_eq!(not_mine.json["items"], json!([]), "{}", not_mine.text);
    assert_eq!(keys(&[by_text.json]), vec!["300"]);
    let filters = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/api/v2/tickets/filter")
        .collect::<Vec<_>>();
    assert_eq!(filters.len(), 1, "a ticket id is read, not searched");
    assert_eq!(
        filters[0]
            .url
            .query_pairs()
            .find(|(k, _)| k == "query")
            .unwrap()
            .1,
        "\"agent_id:9 AND (status:2 OR status:3)\"",
        "no text of q reaches the filter query"
    );
}

#[tokio::test]
async fn cursors_that_are_not_this_searchs_and_bad_queries_are_400() {
    let app = spawn_app(quick_policy()).await;
    let server = MockServer::start().await;
    jira_cloud(&app, &server).await;
    connect(
        &app,
        "dc",
        json!({"kind": "jira_data_center", "base_url": server.uri(), "personal_access_token": "pat-0123456789"}),
    )
    .await;
    Mock::given(path("/rest/api/2/user/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"name": "alice", "emailAddress": "alice@example.com", "active": true}
        ])))
        .mount(&server)
        .await;
    Mock::given(path("/rest/api/3/search/jql"))
        .and(query_param_is_missing("nextPageToken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issues": [cloud_issue("SEC-1", "Open", "new", None)], "isLast": false, "nextPageToken": "tok-1"
        })))
        .mount(&server)
        .await;
    // Jira refuses a page token it did not give out.
    Mock::given(path("/rest/api/3/search/jql"))
        .and(query_param("nextPageToken", "forged"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"errorMessages": ["Invalid nextPageToken"], "errors": {}})),
        )
        .mount(&server)
        .await;
    let first = app
        .call("GET", "/v1/tickets?connection=jira&q=disk", ALICE, None)
        .await;
    let cursor = first.json["next"].as_str().unwrap().to_owned();
    let envelope = |c: &str, p: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!({"c": c, "p": p}).to_string())
    };

    for (uri, code) in [
        (
            "/v1/tickets?connection=jira&cursor=%25%25garbage".to_owned(),
            "invalid_cursor",
        ),
        (
            format!("/v1/tickets?connection=jira&q=other&cursor={cursor}"),
            "invalid_cursor",
        ),
        (
            format!("/v1/tickets?connection=dc&q=disk&cursor={cursor}"),
            "invalid_cursor",
        ),
        (
            format!("/v1/tickets?connection=dc&cursor={}", envelope("dc", "ten")),
            "invalid_cursor",
        ),
        (
            format!(
                "/v1/tickets?connection=jira&cursor={}",
                envelope("jira", "forged")
            ),
            "invalid_cursor",
        ),
        (
            format!("/v1/tickets?connection=jira&q={}", "x".repeat(101)),
            "invalid_query",
        ),
        (
            "/v1/tickets?connection=jira&q=a%0Ab".to_owned(),
            "invalid_query",
        ),
    ] {
        let answer = app.call("GET", &uri, ALICE, None).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            answer.text
        );
        assert_eq!(answer.json["error"]["code"], code, "{uri}");
    }
    let conn = app
        .call("GET", "/v1/connections/jira", support::ADMIN, None)
        .await;
    assert_eq!(
        conn.json["status"], "connected",
        "a bad cursor says nothing about the connection"
    );
    assert_eq!(conn.json["last_error"], Value::Null);
}
