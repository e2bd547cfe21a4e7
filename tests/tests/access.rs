//! Every role's daily work with grants, through the router: the `actions` each grant carries (and the routes
//! agreeing with them for every role and state), the read-only auditor, comments on decisions, extending a
//! grant without a gap or a second provisioning of the same access, the bound ticket read live, the connection
//! directory anyone may read, and the filtered list and its CSV export.

use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use ticketbound::domain::TicketRef;
use ticketbound_tests::{
    ADMIN, ALICE, APPROVER, APPROVER2, AUDITOR, MALLORY, call, eventually, grants, local_router,
    local_test_app, provisioner_actions, provisioner_ok, quick_policy, seed_bound_active_grants,
    spawn_app,
};

type Who = (&'static str, &'static str);

/// A resource without a provisioner.
async fn define_plain_resource(router: &Router, id: &str) {
    let body = json!({"name": format!("Resource {id}"), "provisioner": {"kind": "none"}});
    let (status, json) = call(
        router,
        "PUT",
        &format!("/v1/resources/{id}"),
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
}

async fn request(router: &Router, who: Who, resource: &str, duration: &str) -> String {
    let reply = grants::request(
        router,
        who,
        &json!({"resource": resource, "reason": "INC-7 debugging", "duration": duration}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
    reply.json["id"].as_str().unwrap().to_owned()
}

#[derive(Clone, Copy, Debug)]
enum State {
    Pending,
    Active,
    Ended,
}

/// A grant of ALICE's in `state` (approved by CAROL, ended by ALICE).
async fn grant_in(router: &Router, state: State) -> String {
    let id = request(router, ALICE, "prod-db", "PT1H").await;
    if matches!(state, State::Active | State::Ended) {
        let r = grants::decide(router, APPROVER2, &id, "approve", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }
    if matches!(state, State::Ended) {
        let r = grants::decide(router, ALICE, &id, "revoke", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }
    id
}

fn actions(grant: &Value) -> Vec<String> {
    grant["actions"]
        .as_array()
        .unwrap_or_else(|| panic!("no actions in {grant}"))
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// What `who` is offered on a grant, or none when they may not see it.
async fn offered(router: &Router, who: Who, id: &str) -> Vec<String> {
    let reply = grants::get(router, who, id).await;
    match reply.status {
        StatusCode::OK => actions(&reply.json),
        StatusCode::NOT_FOUND => {
            assert_eq!(reply.json["error"]["code"], "grant_not_found");
            Vec::new()
        }
        other => panic!("GET as {who:?}: {other} {}", reply.json),
    }
}

#[tokio::test]
async fn each_role_is_offered_exactly_what_the_routes_then_accept() {
    let (app, _store, _scheduler) = local_test_app();
    let router = local_router(app);
    define_plain_resource(&router, "prod-db").await;
    let expected: &[(Who, State, &[&str])] = &[
        (ALICE, State::Pending, &["withdraw"]),
        (ALICE, State::Active, &["done", "extend"]),
        (ALICE, State::Ended, &[]),
        (APPROVER, State::Pending, &["approve", "deny", "revoke"]),
        (APPROVER, State::Active, &["revoke"]),
        (APPROVER, State::Ended, &[]),
        (MALLORY, State::Pending, &[]),
        (MALLORY, State::Active, &[]),
        (MALLORY, State::Ended, &[]),
        (ADMIN, State::Pending, &["revoke"]),
        (ADMIN, State::Active, &["revoke"]),
        (ADMIN, State::Ended, &[]),
        (AUDITOR, State::Pending, &[]),
        (AUDITOR, State::Active, &[]),
        (AUDITOR, State::Ended, &[]),
    ];
    for &(who, state, want) in expected {
        let id = grant_in(&router, state).await;
        assert_eq!(
            offered(&router, who, &id).await,
            want,
            "{who:?} on {state:?}"
        );
        // Each route, on a fresh grant in the same state, succeeds exactly when its action was offered.
        for (verb, accepted_by) in [
            ("approve", &["approve"][..]),
            ("deny", &["deny"][..]),
            ("revoke", &["revoke", "withdraw", "done"][..]),
            ("extend", &["extend"][..]),
        ] {
            let id = grant_in(&router, state).await;
            let offered = offered(&router, who, &id).await;
            let reply = if verb == "extend" {
                grants::request(
                    &router,
                    who,
                    &json!({"resource": "prod-db", "reason": "more time", "duration": "PT2H", "extends": id}),
                )
                .await
            } else {
                grants::decide(&router, who, &id, verb, None).await
            };
            let allowed = offered.iter().any(|a| accepted_by.contains(&a.as_str()));
            assert_eq!(
                reply.status.is_success(),
                allowed,
                "{who:?} {verb} on {state:?}: offered {offered:?}, answered {} {}",
                reply.status,
                reply.json
            );
            if !allowed {
                assert!(reply.status.is_client_error(), "{}", reply.status);
                assert!(reply.json["error"]["code"].is_string(), "{}", reply.json);
            }
        }
    }
}

#[tokio::test]
async fn an_auditor_reads_every_grant_and_trail_and_changes_nothing() {
    let (app, _store, _scheduler) = local_test_app();
    let router = local_router(app);
    define_plain_resource(&router, "prod-db").await;
    let pending = grant_in(&router, State::Pending).await;
    let active = grant_in(&router, State::Active).await;

    let list = grants::list(&router, AUDITOR, "").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json["items"].as_array().unwrap().len(), 2);
    let trail = grants::events(&router, AUDITOR, &active).await;
    assert_eq!(trail.status, StatusCode::OK);
    assert!(!trail.json["items"].as_array().unwrap().is_empty());

    for (id, verb, code) in [
        (&pending, "approve", "not_an_approver"),
        (&pending, "deny", "not_an_approver"),
        (&active, "revoke", "not_allowed"),
    ] {
        let reply = grants::decide(&router, AUDITOR, id, verb, None).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{verb}: {}",
            reply.json
        );
        assert_eq!(reply.json["error"]["code"], code, "{verb}");
    }
    let (status, json) = call(
        &router,
        "PUT",
        "/v1/resources/other",
        AUDITOR,
        Some(r#"{"name":"x","provisioner":{"kind":"none"}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(json["error"]["code"], "not_an_admin");
    assert_eq!(
        grants::get(&router, ADMIN, &pending).await.json["status"],
        "pending"
    );
    assert_eq!(
        grants::get(&router, ADMIN, &active).await.json["status"],
        "active"
    );
}

#[tokio::test]
async fn a_decision_keeps_its_comment_in_the_trail_and_the_approval_and_bad_comments_change_nothing()
 {
    let (app, _store, _scheduler) = local_test_app();
    let router = local_router(app);
    define_plain_resource(&router, "prod-db").await;
    let id = request(&router, ALICE, "prod-db", "PT1H").await;

    for (comment, why) in [
        ("fine\u{0007}", "a control character"),
        (&"x".repeat(2_001)[..], "too long"),
    ] {
        let reply = grants::decide(&router, APPROVER, &id, "approve", Some(comment)).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{why}");
        assert_eq!(reply.json["error"]["code"], "invalid_comment", "{why}");
    }
    assert_eq!(
        grants::get(&router, ALICE, &id).await.json["status"],
        "pending"
    );

    let approved =
        grants::decide(&router, APPROVER, &id, "approve", Some("  ok for INC-7  ")).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.json);
    assert_eq!(approved.json["approvals"][0]["comment"], "ok for INC-7");
    let trail = grants::events(&router, ALICE, &id).await.json;
    let event = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "approved")
        .expect("approved event");
    assert_eq!(event["detail"]["comment"], "ok for INC-7");

    let other = request(&router, ALICE, "prod-db", "PT1H").await;
    let denied = grants::decide(&router, APPROVER, &other, "deny", Some("use the replica")).await;
    assert_eq!(denied.status, StatusCode::OK, "{}", denied.json);
    let trail = grants::events(&router, ALICE, &other).await.json;
    let event = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "denied")
        .expect("denied event");
    assert_eq!(event["detail"]["comment"], "use the replica");

    // An empty JSON object decides as no body does.
    let third = request(&router, ALICE, "prod-db", "PT1H").await;
    let (status, json) = call(
        &router,
        "POST",
        &format!("/v1/grants/{third}/approve"),
        APPROVER,
        Some("{}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert!(json["approvals"][0].get("comment").is_none(), "{json}");
}

#[tokio::test]
async fn an_approved_extension_supersedes_the_old_grant_without_a_gap_or_a_revoke() {
    let provisioner = provisioner_ok().await;
    let (app, _store, _scheduler) = local_test_app();
    let router = local_router(app);
    ticketbound_tests::define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;
    let old = request(&router, ALICE, "prod-db", "PT1H").await;
    assert_eq!(
        grants::decide(&router, APPROVER, &old, "approve", None)
            .await
            .status,
        StatusCode::OK
    );

    let extension = grants::request(
        &router,
        ALICE,
        &json!({"resource": "prod-db", "reason": "more time", "duration": "PT4H", "extends": old}),
    )
    .await;
    assert_eq!(extension.status, StatusCode::CREATED, "{}", extension.json);
    assert_eq!(extension.json["extends"], old.as_str());
    let new = extension.json["id"].as_str().unwrap().to_owned();
    // Until the extension is approved, the old grant goes on.
    assert_eq!(
        grants::get(&router, ALICE, &old).await.json["status"],
        "active"
    );

    let approved = grants::decide(&router, APPROVER, &new, "approve", None).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.json);
    assert_eq!(approved.json["status"], "active");
    let old_now = grants::get(&router, ALICE, &old).await.json;
    assert_eq!(old_now["status"], "ended", "{old_now}");
    assert_eq!(old_now["end_reason"], "superseded");
    assert_eq!(old_now["ended_by"], ALICE.0);
    let skipped = eventually(std::time::Duration::from_secs(5), || {
        let router = router.clone();
        let old = old.clone();
        async move {
            grants::get(&router, ALICE, &old).await.json["deprovisioning"]["state"] == "skipped"
        }
    })
    .await;
    assert!(
        skipped,
        "the old grant's removal is skipped: the new grant gives the access"
    );
    assert_eq!(
        provisioner_actions(&provisioner).await,
        ["grant", "grant"],
        "one grant call per grant, no revoke"
    );
}

#[tokio::test]
async fn extends_must_name_the_callers_own_active_grant_of_the_same_resource() {
    let (app, store, _scheduler) = local_test_app();
    let router = local_router(app);
    define_plain_resource(&router, "prod-db").await;
    define_plain_resource(&router, "staging-db").await;
    let theirs = {
        let id = request(&router, MALLORY, "prod-db", "PT1H").await;
        grants::decide(&router, APPROVER, &id, "approve", None).await;
        id
    };
    let pending = request(&router, ALICE, "prod-db", "PT1H").await;
    let other_resource = {
        let id = request(&router, ALICE, "staging-db", "PT1H").await;
        grants::decide(&router, APPROVER, &id, "approve", None).await;
        id
    };
    let before =
        ticketbound::ports::GrantStore::list_grants(&store, &Default::default(), 100, None)
            .await
            .unwrap()
            .items
            .len();
    for (extends, why) in [
        (theirs.as_str(), "someone else's grant"),
        (pending.as_str(), "a pending request"),
        (other_resource.as_str(), "another resource's grant"),
        ("01JD3AAAAAAAAAAAAAAAAAAAAA", "no grant"),
        ("not an id", "not an id"),
    ] {
        let reply = grants::request(
            &router,
            ALICE,
            &json!({"resource": "prod-db", "reason": "more", "duration": "PT2H", "extends": extends}),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{why}: {}",
            reply.json
        );
        assert_eq!(reply.json["error"]["code"], "invalid_extends", "{why}");
    }
    let after = ticketbound::ports::GrantStore::list_grants(&store, &Default::default(), 100, None)
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(before, after, "a refused extension stores nothing");
}

/// A Jira Cloud connection `jira-main` on a wiremock server, created through the API.
async fn app_with_jira() -> (ticketbound_tests::TestApp, MockServer) {
    let jira = MockServer::start().await;
    let app = spawn_app(quick_policy()).await;
    let created = app
        .call(
            "POST",
            "/v1/connections",
            ADMIN,
            Some(json!({"id": "jira-main", "kind": "jira_cloud", "base_url": jira.uri(), "email": "bot@acme.com", "api_token": "jira-token-s3cr3t-value"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    (app, jira)
}

#[tokio::test]
async fn anyone_signed_in_reads_the_connection_directory_and_nothing_but_id_name_kind_and_site() {
    let (app, jira) = app_with_jira().await;
    let reply = grants::directory(&app.router, ALICE).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json["next"], Value::Null);
    let items = reply.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let entry = items[0].as_object().unwrap();
    let mut fields: Vec<&str> = entry.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["id", "kind", "name", "site"]);
    let host = url_host(&jira.uri());
    assert_eq!(entry["id"], "jira-main");
    assert_eq!(entry["kind"], "jira_cloud");
    assert_eq!(entry["site"], host.as_str());
    assert_eq!(entry["name"], format!("Jira Cloud ({host})").as_str());
    assert!(!reply.text.contains("s3cr3t") && !reply.text.contains("bot@acme.com"));

    let anonymous = grants::directory(&app.router, ("", "")).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

fn url_host(uri: &str) -> String {
    uri.trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_bound_ticket_is_read_live_for_whoever_may_see_the_grant() {
    let (app, jira) = app_with_jira().await;
    let issue = json!({
        "id": "10042", "key": "SEC-42",
        "self": format!("{}/rest/api/3/issue/10042", jira.uri()),
        "fields": {"summary": "Database is slow", "assignee": null,
                   "status": {"name": "In Progress", "id": "3",
                              "statusCategory": {"id": 4, "key": "indeterminate", "name": "In Progress"}}}
    });
    Mock::given(method("GET"))
        .and(path("/rest/api/3/issue/SEC-42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(issue))
        .mount(&jira)
        .await;
    let ticket = TicketRef {
        connection: "jira-main".into(),
        key: "SEC-42".into(),
    };
    let bound = seed_bound_active_grants(&app.app, &ticket, "prod-db", 1).await;
    let requester = ("engineer0@example.com", "");

    let reply = grants::ticket(&app.router, requester, &bound[0]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json["key"], "SEC-42");
    assert_eq!(reply.json["summary"], "Database is slow");
    assert_eq!(reply.json["status"], "In Progress");
    assert_eq!(reply.json["closed"], false);
    assert!(reply.json["url"].as_str().unwrap().contains("SEC-42"));
    assert_eq!(
        grants::ticket(&app.router, AUDITOR, &bound[0]).await.status,
        StatusCode::OK
    );

    let stranger = grants::ticket(&app.router, MALLORY, &bound[0]).await;
    assert_eq!(stranger.status, StatusCode::NOT_FOUND);
    assert_eq!(stranger.json["error"]["code"], "grant_not_found");

    let unbound = request(&app.router, ALICE, "prod-db", "PT1H").await;
    let reply = grants::ticket(&app.router, ALICE, &unbound).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json["error"]["code"], "no_ticket");
}

/// A minimal RFC 4180 reader, independent of the server's writer: records of fields, quoted or not.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(!quoted, "unterminated quote");
    assert!(
        field.is_empty() && record.is_empty(),
        "the last record ends with a line break"
    );
    records
}

#[tokio::test]
async fn overseers_filter_the_list_and_export_it_as_csv_with_each_grants_timeline() {
    let (app, _store, _scheduler) = local_test_app();
    let router = local_router(app);
    define_plain_resource(&router, "prod-db").await;
    define_plain_resource(&router, "staging-db").await;
    // Ended before the next one is active, so its access is removed (rule 8 would skip it otherwise).
    let a_ended = grant_in(&router, State::Ended).await;
    let a_active = grant_in(&router, State::Active).await;
    let a_pending = grant_in(&router, State::Pending).await;
    let m_staging = request(&router, MALLORY, "staging-db", "PT1H").await;

    let ids = |reply: &ticketbound_tests::Reply| -> Vec<String> {
        reply.json["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", reply.json))
            .iter()
            .map(|g| g["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = grants::list(&router, AUDITOR, "resource=prod-db&status=active,ended").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(ids(&r), [a_active.clone(), a_ended.clone()]);
    let r = grants::list(&router, ADMIN, "status=pending&status=active").await;
    assert_eq!(
        ids(&r),
        [m_staging.clone(), a_pending.clone(), a_active.clone()]
    );
    let r = grants::list(&router, APPROVER, "requester=mallory%40example.com").await;
    assert_eq!(ids(&r), std::slice::from_ref(&m_staging));
    let r = grants::list(&router, ADMIN, "resource=prod-db&limit=1").await;
    assert_eq!(ids(&r), std::slice::from_ref(&a_pending));
    let next = r.json["next"].as_str().expect("a next cursor").to_owned();
    let r = grants::list(
        &router,
        ADMIN,
        &format!("resource=prod-db&limit=2&cursor={next}"),
    )
    .await;
    assert_eq!(ids(&r), [a_active.clone(), a_ended.clone()]);
    let r = grants::list(
        &router,
        ADMIN,
        "from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z",
    )
    .await;
    assert_eq!(ids(&r), Vec::<String>::new());
    let r = grants::list(&router, ADMIN, "from=2000-01-01T00:00:00Z").await;
    assert_eq!(ids(&r).len(), 4);
    for (query, status, code) in [
        ("status=open", StatusCode::BAD_REQUEST, "invalid_status"),
        ("from=yesterday", StatusCode::BAD_REQUEST, "invalid_time"),
        // Two well-formed times in the wrong order: the query is fine, the range breaks a rule.
        (
            "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_time",
        ),
        (
            "resource=a&resource=b",
            StatusCode::BAD_REQUEST,
            "malformed_query",
        ),
        ("colour=red", StatusCode::BAD_REQUEST, "malformed_query"),
    ] {
        let r = grants::list(&router, ADMIN, query).await;
        assert_eq!(r.status, status, "{query}");
        assert_eq!(r.json["error"]["code"], code, "{query}");
    }
    // Someone who oversees nothing still lists only their own grants, whatever they filter on.
    let r = grants::list(&router, MALLORY, "resource=prod-db").await;
    assert_eq!(ids(&r), Vec::<String>::new());

    let export = grants::export(&router, AUDITOR, "").await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    assert!(
        export
            .content_type
            .as_deref()
            .unwrap()
            .starts_with("text/csv"),
        "{:?}",
        export.content_type
    );
    let rows = parse_csv(&export.text);
    assert_eq!(
        rows[0],
        [
            "id",
            "requester",
            "resource",
            "ticket",
            "status",
            "requested_at",
            "decided_by",
            "decided_at",
            "activated_at",
            "ended_at",
            "end_reason",
            "ended_by",
            "access_removed_at",
            "deprovisioning",
            "residual_until",
        ]
    );
    assert_eq!(rows.len(), 5, "a header and one row per grant");
    assert!(rows.iter().all(|r| r.len() == 15));
    let ended = rows
        .iter()
        .find(|r| r[0] == a_ended)
        .expect("the ended grant");
    assert_eq!(ended[1], ALICE.0);
    assert_eq!(ended[4], "ended");
    assert_eq!(ended[6], APPROVER2.0);
    assert!(!ended[8].is_empty(), "activated_at");
    assert_eq!(ended[10], "revoked");
    assert_eq!(ended[11], ALICE.0);
    assert!(!ended[12].is_empty(), "access_removed_at: {ended:?}");
    assert_eq!(ended[13], "done");
    assert_eq!(
        ended[14], "",
        "no session outlived a removal the provisioner did not qualify"
    );
    let pending = rows
        .iter()
        .find(|r| r[0] == a_pending)
        .expect("the pending grant");
    assert!(pending[6..].iter().all(String::is_empty), "{pending:?}");

    let filtered = grants::export(&router, ADMIN, "resource=staging-db").await;
    let rows = parse_csv(&filtered.text);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][0], m_staging);

    let refused = grants::export(&router, ADMIN, "limit=5").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.json["error"]["code"], "malformed_query");
    let anonymous = grants::export(&router, ("", ""), "").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_exported_cell_a_spreadsheet_would_run_is_defused() {
    let (app, _store, _scheduler) = local_test_app();
    let router = local_router(app);
    define_plain_resource(&router, "prod-db").await;
    let evil = ("=cmd@example.com", "");
    let id = request(&router, evil, "prod-db", "PT1H").await;
    let rows = parse_csv(&grants::export(&router, ADMIN, "").await.text);
    let row = rows.iter().find(|r| r[0] == id).expect("the row");
    assert_eq!(row[1], "'=cmd@example.com");
}

#[tokio::test]
async fn a_revocation_keeps_its_reason_in_the_trail_and_a_bad_one_changes_nothing() {
    let (app, _store, _scheduler) = local_test_app();
    let router = local_router(app);
    define_plain_resource(&router, "prod-db").await;
    let id = request(&router, ALICE, "prod-db", "PT1H").await;
    let approved = grants::decide(&router, APPROVER, &id, "approve", None).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.json);

    // A reason that would read differently from what it says, or a body that is not an object: refused, and
    // the grant stays active.
    let spoofed = grants::decide(
        &router,
        ADMIN,
        &id,
        "revoke",
        Some("left the team \u{202e}nur-no"),
    )
    .await;
    assert_eq!(spoofed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(spoofed.json["error"]["code"], "invalid_text");
    let (status, json) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        ADMIN,
        Some(r#"["left the team"]"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["error"]["code"], "malformed_request");
    assert_eq!(
        grants::get(&router, ALICE, &id).await.json["status"],
        "active"
    );

    let revoked =
        grants::decide(&router, ADMIN, &id, "revoke", Some("left the on-call rota")).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.json);
    assert_eq!(revoked.json["status"], "ended");
    let trail = grants::events(&router, ALICE, &id).await.json;
    let event = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "ended")
        .expect("ended event");
    assert_eq!(event["detail"]["comment"], "left the on-call rota");
    assert_eq!(event["detail"]["end_reason"], "revoked");
}
