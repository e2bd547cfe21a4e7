//! The portal API through the router, as the local server serves it: rules of access, permissions, and bad
//! input that must get the documented 4xx and leave the store exactly as it was.

use axum::http::StatusCode;
use serde_json::Value;

use ticketbound::ports::{GrantFilter, GrantStore};
use ticketbound_tests::*;

/// Everything a client could observe: every grant and every grant's events.
async fn snapshot(store: &dyn GrantStore) -> Value {
    let grants = store
        .list_grants(&GrantFilter::default(), 200, None)
        .await
        .unwrap()
        .items;
    let mut all = Vec::new();
    for g in grants {
        let events = store.list_events(&g.id, 200, None).await.unwrap().items;
        all.push(serde_json::json!({"grant": g, "events": events}));
    }
    let resources = store.list_resources(200, None).await.unwrap().items;
    serde_json::json!({"grants": all, "resources": resources.iter().map(|r| r.to_storage_json()).collect::<Vec<_>>()})
}

#[tokio::test]
async fn request_approve_list_and_revoke_walk_through() {
    let provisioner = provisioner_ok().await;
    let (app, _store, _) = local_test_app();
    let router = local_router(app);
    define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;

    let id = request_grant(&router, ALICE, "prod-db", "PT4H").await;
    let (status, grant) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    assert_eq!(grant["status"], "active");
    assert_eq!(grant["decided_by"], APPROVER.0);
    assert!(grant["expires_at"].is_string());

    let (status, list) = call(&router, "GET", "/v1/grants?status=active", ALICE, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["next"], Value::Null);

    let (status, ended) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["end_reason"], "revoked");
    assert_eq!(ended["ended_by"], ALICE.0);
    assert_eq!(ended["deprovisioning"]["state"], "done");
    assert_eq!(provisioner_actions(&provisioner).await, ["grant", "revoke"]);

    let (_, events) = call(
        &router,
        "GET",
        &format!("/v1/grants/{id}/events"),
        ALICE,
        None,
    )
    .await;
    let kinds: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "requested",
            "approved",
            "provisioned",
            "ended",
            "deprovisioned"
        ]
    );
}

#[tokio::test]
async fn provisioner_calls_are_signed_with_the_resource_secret() {
    let provisioner = provisioner_ok().await;
    let (app, _, _) = local_test_app();
    let router = local_router(app);
    define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;
    let id = request_grant(&router, ALICE, "prod-db", "PT1H").await;
    call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        APPROVER,
        None,
    )
    .await;
    let requests = provisioner.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let header = requests[0]
        .headers
        .get("x-ticketbound-signature")
        .unwrap()
        .to_str()
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(ticketbound::adapters::provisioner::verify_signature_header(
        "provisioner-secret-0123456789",
        header,
        &requests[0].body,
        now,
        300
    ));
    assert!(
        !ticketbound::adapters::provisioner::verify_signature_header(
            "another-secret-0123456789",
            header,
            &requests[0].body,
            now,
            300
        )
    );
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["action"], "grant");
    assert_eq!(body["grant"]["id"], id.as_str());
}

#[tokio::test]
async fn the_resource_secret_is_never_returned() {
    let (app, _, _) = local_test_app();
    let router = local_router(app);
    define_webhook_resource(&router, "prod-db", "https://hooks.example.com/p").await;
    for path in ["/v1/resources", "/v1/resources/prod-db"] {
        let (_, body) = call(&router, "GET", path, ALICE, None).await;
        assert!(!body.to_string().contains("provisioner-secret"), "{body}");
        assert!(body.to_string().contains("********"));
    }
}

/// One bad request: what is sent, and the status and error code it must get.
struct Bad {
    what: &'static str,
    method: &'static str,
    path: String,
    who: (&'static str, &'static str),
    body: Option<&'static str>,
    status: StatusCode,
    code: &'static str,
}

#[tokio::test]
async fn bad_input_gets_the_documented_error_and_changes_nothing() {
    let provisioner = provisioner_ok().await;
    let (app, store, _) = local_test_app();
    let router = local_router(app);
    define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;
    let pending = request_grant(&router, ALICE, "prod-db", "PT1H").await;
    let ended = request_grant(&router, ALICE, "prod-db", "PT1H").await;
    call(
        &router,
        "POST",
        &format!("/v1/grants/{ended}/approve"),
        APPROVER,
        None,
    )
    .await;
    call(
        &router,
        "POST",
        &format!("/v1/grants/{ended}/revoke"),
        APPROVER,
        None,
    )
    .await;
    let calls_before = provisioner.received_requests().await.unwrap().len();
    let before = snapshot(&store).await;

    let huge = Box::leak(
        format!(
            "{{\"resource\":\"prod-db\",\"reason\":\"{}\",\"duration\":\"PT1H\"}}",
            "x".repeat(70_000)
        )
        .into_boxed_str(),
    );
    let cases = [
        Bad {
            what: "malformed JSON",
            method: "POST",
            path: "/v1/grants".into(),
            who: ALICE,
            body: Some("{\"resource\": \"prod-db\","),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_request",
        },
        Bad {
            what: "duration of the wrong type",
            method: "POST",
            path: "/v1/grants".into(),
            who: ALICE,
            body: Some(r#"{"resource":"prod-db","reason":"r","duration":3600}"#),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_request",
        },
        Bad {
            what: "ticket of the wrong type",
            method: "POST",
            path: "/v1/grants".into(),
            who: ALICE,
            body: Some(r#"{"resource":"prod-db","reason":"r","duration":"PT1H","ticket":"SEC-1"}"#),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_request",
        },
        Bad {
            what: "unknown field",
            method: "POST",
            path: "/v1/grants".into(),
            who: ALICE,
            body: Some(
                r#"{"resource":"prod-db","reason":"r","duration":"PT1H","durration":"P1D"}"#,
            ),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_request",
        },
        Bad {
            what: "missing field",
            method: "POST",
            path: "/v1/grants".into(),
            who: ALICE,
            body: Some(r#"{"resource":"prod-db","duration":"PT1H"}"#),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_request",
        },
        Bad {
            what: "no identity",
            method: "POST",
            path: "/v1/grants".into(),
            who: ("", ""),
            body: Some(r#"{"resource":"prod-db","reason":"r","duration":"PT1H"}"#),
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
        },
        Bad {
            what: "identity that is not an e-mail",
            method: "POST",
            path: "/v1/grants".into(),
            who: ("alice", ""),
            body: Some(r#"{"resource":"prod-db","reason":"r","duration":"PT1H"}"#),
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
        },
        Bad {
            what: "negative duration",
            method: "POST",
            path: "/v1/grants".into(),
            who: ALICE,
            body: Some(r#"{"resource":"prod-db","reason":"r","duration":"-PT1H"}"#),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_duration",
        },
        Bad {
            what: "zero duration",
            method: "POST",
            path: "/v1/grants".into(),
            who: ALICE,
            body: Some(r#"{"resource":"prod-db","reason":"r","duration":"PT0S"}"#),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_duration",
        },
        Bad {
            what: "absurd duration",
            method: "POST",
            path: "/v1/grants".into(),
            who: ALICE,
            body: Some(
                r#"{"resource":"prod-db","reason":"r","duration":"P99999999999999999999D"}"#,
            ),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_duration",
        },
        Bad {
            what: "longer than max_duration",
            method: "POST",
            path: "/v1/grants".into(),
            who: ALICE,
            body: Some(r#"{"resource":"prod-db","reason":"r","duration":"P30D"}"#),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "duration_too_long",
        },
        Bad {
            what: "indefinite without ticket",
            method: "POST",
            path: "/v1/grants".into(),
            who: ALICE,
            body: Some(r#"{"resource":"prod-db","reason":"r","duration":"indefinite"}"#),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "indefinite_requires_ticket",
        },
        Bad {
            what: "unknown resource",
            method: "POST",
            path: "/v1/grants".into(),
            who: ALICE,
            body: Some(r#"{"resource":"nope","reason":"r","duration":"PT1H"}"#),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "unknown_resource",
        },
        Bad {
            what: "empty reason",
            method: "POST",
            path: "/v1/grants".into(),
            who: ALICE,
            body: Some(r#"{"resource":"prod-db","reason":"  ","duration":"PT1H"}"#),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_reason",
        },
        Bad {
            what: "body over the limit",
            method: "POST",
            path: "/v1/grants".into(),
            who: ALICE,
            body: Some(huge),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "body_too_large",
        },
        Bad {
            what: "approving your own request",
            method: "POST",
            path: format!("/v1/grants/{pending}/approve"),
            who: ("alice@example.com", "ticketbound-approvers"),
            body: None,
            status: StatusCode::FORBIDDEN,
            code: "self_approval",
        },
        Bad {
            what: "approving without being an approver",
            method: "POST",
            path: format!("/v1/grants/{pending}/approve"),
            who: MALLORY,
            body: None,
            status: StatusCode::FORBIDDEN,
            code: "not_an_approver",
        },
        Bad {
            what: "approving an ended grant",
            method: "POST",
            path: format!("/v1/grants/{ended}/approve"),
            who: APPROVER,
            body: None,
            status: StatusCode::CONFLICT,
            code: "grant_not_pending",
        },
        Bad {
            what: "denying an ended grant",
            method: "POST",
            path: format!("/v1/grants/{ended}/deny"),
            who: APPROVER,
            body: None,
            status: StatusCode::CONFLICT,
            code: "grant_not_pending",
        },
        Bad {
            what: "revoking an ended grant",
            method: "POST",
            path: format!("/v1/grants/{ended}/revoke"),
            who: APPROVER,
            body: None,
            status: StatusCode::CONFLICT,
            code: "grant_already_closed",
        },
        Bad {
            what: "revoking someone else's grant",
            method: "POST",
            path: format!("/v1/grants/{pending}/revoke"),
            who: MALLORY,
            body: None,
            status: StatusCode::NOT_FOUND,
            code: "grant_not_found",
        },
        Bad {
            what: "reading someone else's grant",
            method: "GET",
            path: format!("/v1/grants/{pending}"),
            who: MALLORY,
            body: None,
            status: StatusCode::NOT_FOUND,
            code: "grant_not_found",
        },
        Bad {
            what: "listing someone else's grants",
            method: "GET",
            path: "/v1/grants?requester=alice@example.com".into(),
            who: MALLORY,
            body: None,
            status: StatusCode::FORBIDDEN,
            code: "not_allowed",
        },
        Bad {
            what: "a junk grant id",
            method: "GET",
            path: "/v1/grants/..%2F..%2Fetc".into(),
            who: ALICE,
            body: None,
            status: StatusCode::NOT_FOUND,
            code: "grant_not_found",
        },
        Bad {
            what: "a bad status filter",
            method: "GET",
            path: "/v1/grants?status=alive".into(),
            who: APPROVER,
            body: None,
            status: StatusCode::BAD_REQUEST,
            code: "invalid_status",
        },
        Bad {
            what: "a bad limit",
            method: "GET",
            path: "/v1/grants?limit=0".into(),
            who: APPROVER,
            body: None,
            status: StatusCode::BAD_REQUEST,
            code: "invalid_limit",
        },
        Bad {
            what: "a forged cursor",
            method: "GET",
            path: "/v1/grants?cursor=abc".into(),
            who: APPROVER,
            body: None,
            status: StatusCode::BAD_REQUEST,
            code: "invalid_cursor",
        },
        Bad {
            what: "an unknown query parameter",
            method: "GET",
            path: "/v1/grants?stauts=active".into(),
            who: APPROVER,
            body: None,
            status: StatusCode::BAD_REQUEST,
            code: "malformed_query",
        },
        Bad {
            what: "a resource by a non-admin",
            method: "PUT",
            path: "/v1/resources/x-db".into(),
            who: APPROVER,
            body: Some(r#"{"name":"x","provisioner":{"kind":"none"}}"#),
            status: StatusCode::FORBIDDEN,
            code: "not_an_admin",
        },
        Bad {
            what: "a provisioner over plain http",
            method: "PUT",
            path: "/v1/resources/x-db".into(),
            who: ADMIN,
            body: Some(
                r#"{"name":"x","provisioner":{"kind":"webhook","url":"http://hooks.example.com","secret":"0123456789abcdef0"}}"#,
            ),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_url",
        },
        Bad {
            what: "a provisioner at the metadata address",
            method: "PUT",
            path: "/v1/resources/x-db".into(),
            who: ADMIN,
            body: Some(
                r#"{"name":"x","provisioner":{"kind":"webhook","url":"http://169.254.169.254/latest","secret":"0123456789abcdef0"}}"#,
            ),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_url",
        },
        Bad {
            what: "a short provisioner secret",
            method: "PUT",
            path: "/v1/resources/x-db".into(),
            who: ADMIN,
            body: Some(
                r#"{"name":"x","provisioner":{"kind":"webhook","url":"https://hooks.example.com","secret":"short"}}"#,
            ),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_secret",
        },
        Bad {
            what: "an unknown provisioner kind",
            method: "PUT",
            path: "/v1/resources/x-db".into(),
            who: ADMIN,
            body: Some(r#"{"name":"x","provisioner":{"kind":"ldap"}}"#),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_request",
        },
        Bad {
            what: "a bad resource id",
            method: "PUT",
            path: "/v1/resources/Bad%20Id".into(),
            who: ADMIN,
            body: Some(r#"{"name":"x","provisioner":{"kind":"none"}}"#),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_id",
        },
        Bad {
            what: "a bad max_duration",
            method: "PUT",
            path: "/v1/resources/x-db".into(),
            who: ADMIN,
            body: Some(r#"{"name":"x","max_duration":"P1M","provisioner":{"kind":"none"}}"#),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_duration",
        },
        Bad {
            what: "deleting a resource in use",
            method: "DELETE",
            path: "/v1/resources/prod-db".into(),
            who: ADMIN,
            body: None,
            status: StatusCode::CONFLICT,
            code: "resource_in_use",
        },
        Bad {
            what: "an unknown route",
            method: "GET",
            path: "/v1/nothing".into(),
            who: ALICE,
            body: None,
            status: StatusCode::NOT_FOUND,
            code: "no_such_route",
        },
        Bad {
            what: "a wrong method",
            method: "DELETE",
            path: "/v1/grants".into(),
            who: ALICE,
            body: None,
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
        },
    ];
    for case in cases {
        let (status, body) = call(&router, case.method, &case.path, case.who, case.body).await;
        assert_eq!(status, case.status, "{}: {body}", case.what);
        assert_eq!(body["error"]["code"], case.code, "{}: {body}", case.what);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}: {body}",
            case.what
        );
        assert_eq!(
            snapshot(&store).await,
            before,
            "{} changed the store",
            case.what
        );
    }
    assert_eq!(
        provisioner.received_requests().await.unwrap().len(),
        calls_before,
        "a rejected request called the provisioner"
    );
}

#[tokio::test]
async fn a_ticket_binding_is_never_accepted_unchecked() {
    let (app, store, _) = local_test_app();
    let router = local_router(app);
    define_webhook_resource(&router, "prod-db", "https://hooks.example.com/p").await;
    let body = r#"{"resource":"prod-db","reason":"r","duration":"indefinite","ticket":{"connection":"jira-main","key":"SEC-42"}}"#;
    let (status, json) = call(&router, "POST", "/v1/grants", ALICE, Some(body)).await;
    // The app has connections (none defined, no ticket systems): the binding is checked and refused.
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert_eq!(json["error"]["code"], "unknown_connection", "{json}");
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
async fn a_resource_requiring_a_ticket_refuses_a_request_without_one() {
    let (app, _, _) = local_test_app();
    let router = local_router(app);
    let body = r#"{"name":"Prod","require_ticket":true,"provisioner":{"kind":"none"}}"#;
    assert_eq!(
        call(&router, "PUT", "/v1/resources/prod-db", ADMIN, Some(body))
            .await
            .0,
        StatusCode::CREATED
    );
    let (status, json) = call(
        &router,
        "POST",
        "/v1/grants",
        ALICE,
        Some(r#"{"resource":"prod-db","reason":"r","duration":"PT1H"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json["error"]["code"], "ticket_required");
}

#[tokio::test]
async fn requesters_see_only_their_own_grants_and_approvers_see_all() {
    let (app, _, _) = local_test_app();
    let router = local_router(app);
    define_webhook_resource(&router, "prod-db", "https://hooks.example.com/p").await;
    request_grant(&router, ALICE, "prod-db", "PT1H").await;
    request_grant(&router, MALLORY, "prod-db", "PT1H").await;
    let (_, mine) = call(&router, "GET", "/v1/grants", ALICE, None).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    assert_eq!(mine["items"][0]["requester"], ALICE.0);
    let (_, all) = call(&router, "GET", "/v1/grants?status=pending", APPROVER, None).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn withdrawing_a_pending_request_cancels_it() {
    let (app, _, _) = local_test_app();
    let router = local_router(app);
    define_webhook_resource(&router, "prod-db", "https://hooks.example.com/p").await;
    let id = request_grant(&router, ALICE, "prod-db", "PT1H").await;
    let (status, grant) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(grant["status"], "cancelled");
    assert_eq!(grant["end_reason"], "withdrawn");
    assert_eq!(grant["deprovisioning"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_approvers_racing_one_wins_one_gets_409_and_the_provisioner_is_called_once() {
    for round in 0..5 {
        let provisioner = provisioner_ok().await;
        let (app, _, _) = local_test_app();
        let router = local_router(app);
        define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;
        let id = request_grant(&router, ALICE, "prod-db", "PT1H").await;
        let path = format!("/v1/grants/{id}/approve");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let race = |who: (&'static str, &'static str)| {
            let (router, path, barrier) = (router.clone(), path.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                call(&router, "POST", &path, who, None).await.0
            })
        };
        let (a, b) = (race(APPROVER), race(APPROVER2));
        let mut statuses = vec![a.await.unwrap(), b.await.unwrap()];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "round {round}"
        );
        assert_eq!(
            provisioner_actions(&provisioner).await,
            ["grant"],
            "round {round}"
        );
    }
}

#[tokio::test]
async fn a_resource_no_open_grant_uses_can_be_deleted_once() {
    let (app, store, _) = local_test_app();
    let router = local_router(app);
    define_webhook_resource(&router, "old-db", "https://hooks.example.com/p").await;
    let id = request_grant(&router, ALICE, "old-db", "PT1H").await;
    let (status, _) = call(&router, "DELETE", "/v1/resources/old-db", ADMIN, None).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a pending request still names it"
    );
    call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        ALICE,
        None,
    )
    .await;

    let (status, body) = call(&router, "DELETE", "/v1/resources/old-db", ADMIN, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(store.get_resource("old-db").await.unwrap(), None);
    let (status, body) = call(&router, "GET", "/v1/resources/old-db", ALICE, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("resource_not_found"))
    );
    let (status, _) = call(&router, "DELETE", "/v1/resources/old-db", ADMIN, None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "deleting twice says it is gone"
    );
}
