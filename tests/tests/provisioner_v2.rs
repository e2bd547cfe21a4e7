//! Provisioner contract v2 against wiremock endpoints answering as the operator guide says: the fields a call
//! carries, the answer recorded on the grant (`access_removed_at`, `residual_until`, `sessions`), a v1 endpoint
//! that still works, and `202 Accepted` with a status URL checked through the engine until done or failed.

use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration as StdDuration;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::provisioner::verify_signature_header;
use ticketbound::ports::SystemClock;
use ticketbound::service::Ticketbound;
use ticketbound::telemetry::metric_total;
use ticketbound_tests::*;

const SECRET: &str = "provisioner-secret-0123456789";

/// An app on the embedded store whose in-process scheduler runs the retries and status checks.
async fn running_app(max_attempts: u32) -> axum::Router {
    running(max_attempts).await.1
}

/// The same app, and its service (to run reconciliation as the scheduled job does).
async fn running(max_attempts: u32) -> (Ticketbound, axum::Router) {
    let store = embedded_store();
    let scheduler = LocalScheduler::new(store.clone());
    let app = build_app(AppParts {
        store: Arc::new(store),
        scheduler: Arc::new(scheduler.clone()),
        clock: Arc::new(SystemClock),
        retry: fast_retry(max_attempts),
        provisioner_timeout: StdDuration::from_secs(2),
    });
    scheduler.start(Arc::new(app.clone())).await.unwrap();
    (app.clone(), local_router(app))
}

/// The grant as an admin reads it: with what the provisioner answered (a requester reads a plain sentence).
async fn grant_json(router: &axum::Router, id: &str) -> Value {
    call(router, "GET", &format!("/v1/grants/{id}"), ADMIN, None)
        .await
        .1
}

/// Requests `prod-db` for an hour as Alice and approves it; the grant id.
async fn active_grant(router: &axum::Router, provisioner: &MockServer) -> String {
    define_webhook_resource(router, "prod-db", &provisioner.uri()).await;
    let id = request_grant(router, ALICE, "prod-db", "PT1H").await;
    let (status, approved) = call(
        router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    id
}

async fn revoke(router: &axum::Router, id: &str) -> Value {
    let (status, ended) = call(
        router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["status"], "ended");
    ended
}

/// The bodies of the POSTs an endpoint received, in order.
async fn posted(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

async fn event_kinds_and_last(router: &axum::Router, id: &str) -> (Vec<String>, Value) {
    let (_, events) = call(
        router,
        "GET",
        &format!("/v1/grants/{id}/events"),
        ALICE,
        None,
    )
    .await;
    let items = events["items"].as_array().unwrap().clone();
    let kinds = items
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    (kinds, items.last().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_endpoint_gets_the_bound_and_the_end_and_its_answer_is_recorded_on_the_grant() {
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"action": "revoke"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_removed": true,
            "sessions": "will_expire",
            "residual_until": "2099-01-01T00:00:00Z",
        })))
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&provisioner)
        .await;
    let router = running_app(3).await;
    let id = active_grant(&router, &provisioner).await;
    let ended = revoke(&router, &id).await;

    let calls = posted(&provisioner).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    let (grant_call, revoke_call) = (&calls[0], &calls[1]);
    assert_eq!(grant_call["action"], "grant");
    assert_eq!(
        grant_call["valid_until"], grant_call["grant"]["expires_at"],
        "the grant call carries the time bound: {grant_call}"
    );
    assert!(grant_call["valid_until"].is_string(), "{grant_call}");
    assert_eq!(revoke_call["action"], "revoke");
    assert_eq!(revoke_call["reason"], "revoked");
    assert_eq!(revoke_call["ended_at"], ended["ended_at"]);
    assert_eq!(
        revoke_call["sessions"],
        json!({"terminate": true, "issued_before": ended["ended_at"]})
    );

    assert_eq!(ended["deprovisioning"]["state"], "done", "{ended}");
    assert_eq!(ended["deprovisioning"]["sessions"], "will_expire");
    assert!(ended["access_removed_at"].is_string(), "{ended}");
    assert_eq!(ended["residual_until"], "2099-01-01T00:00:00Z");
    let (kinds, last) = event_kinds_and_last(&router, &id).await;
    assert_eq!(kinds.last().map(String::as_str), Some("deprovisioned"));
    assert_eq!(
        last["detail"]["access_removed_at"],
        ended["access_removed_at"]
    );
    assert_eq!(last["detail"]["residual_until"], "2099-01-01T00:00:00Z");
    assert_eq!(last["detail"]["sessions"], "will_expire");
    // The export says when access really ended: sessions may last until the residual.
    let export = grants::export(&router, ADMIN, "").await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    let header: Vec<&str> = export.text.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = export
        .text
        .lines()
        .find(|l| l.starts_with(id.as_str()))
        .expect("the grant's row")
        .split(',')
        .collect();
    let column = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(column("residual_until"), "2099-01-01T00:00:00Z");
    assert!(!column("access_removed_at").is_empty(), "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_endpoint_answering_an_empty_2xx_keeps_working_and_records_when_access_ended() {
    let provisioner = provisioner_ok().await;
    let router = running_app(3).await;
    let id = active_grant(&router, &provisioner).await;
    let ended = revoke(&router, &id).await;
    assert_eq!(ended["deprovisioning"]["state"], "done", "{ended}");
    assert!(ended["access_removed_at"].is_string(), "{ended}");
    assert_eq!(ended["residual_until"], Value::Null);
    assert!(ended["deprovisioning"].get("sessions").is_none(), "{ended}");
    assert_eq!(provisioner_actions(&provisioner).await, ["grant", "revoke"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_202_is_checked_through_the_engine_until_done_and_each_check_is_signed() {
    let provisioner = MockServer::start().await;
    let base = provisioner.uri();
    // The grant call names its status URL in the body, the revoke in `Location` (relative).
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"action": "grant"})))
        .respond_with(
            ResponseTemplate::new(202)
                .set_body_json(json!({"status_url": format!("{base}/jobs/grant-1")})),
        )
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"action": "revoke"})))
        .respond_with(ResponseTemplate::new(202).insert_header("Location", "/jobs/revoke-1"))
        .mount(&provisioner)
        .await;
    Mock::given(method("GET"))
        .and(path("/jobs/grant-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "done"})))
        .mount(&provisioner)
        .await;
    Mock::given(method("GET"))
        .and(path("/jobs/revoke-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "in_progress"})))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("GET"))
        .and(path("/jobs/revoke-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "done", "access_removed": true, "sessions": "terminated",
        })))
        .with_priority(2)
        .mount(&provisioner)
        .await;
    let router = running_app(6).await;
    let id = active_grant(&router, &provisioner).await;
    let provisioned = eventually(StdDuration::from_secs(10), || async {
        grant_json(&router, &id).await["provisioning"]["state"] == "done"
    })
    .await;
    assert!(provisioned, "{}", grant_json(&router, &id).await);

    let ended = revoke(&router, &id).await;
    // The revoke request does not wait for the target: the call is accepted and recorded as such.
    assert_eq!(ended["deprovisioning"]["state"], "pending", "{ended}");
    assert_eq!(
        ended["deprovisioning"]["status_url"],
        format!("{base}/jobs/revoke-1")
    );
    assert_eq!(ended["deprovisioning"]["last_error"], Value::Null);
    assert_eq!(ended["access_removed_at"], Value::Null);

    let done = eventually(StdDuration::from_secs(10), || async {
        grant_json(&router, &id).await["deprovisioning"]["state"] == "done"
    })
    .await;
    let grant = grant_json(&router, &id).await;
    assert!(done, "{grant}");
    assert_eq!(
        grant["deprovisioning"]["attempts"], 4,
        "one call, three checks"
    );
    assert_eq!(grant["deprovisioning"]["sessions"], "terminated");
    assert!(
        grant["deprovisioning"].get("status_url").is_none(),
        "{grant}"
    );
    assert!(grant["access_removed_at"].is_string(), "{grant}");
    assert_eq!(grant["residual_until"], Value::Null);
    assert_eq!(provisioner_actions(&provisioner).await, ["grant", "revoke"]);

    let requests = provisioner.received_requests().await.unwrap();
    let checks: Vec<_> = requests
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .collect();
    assert_eq!(checks.len(), 4, "one grant check, three revoke checks");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for check in checks {
        let signature = check.headers["x-ticketbound-signature"].to_str().unwrap();
        assert!(verify_signature_header(SECRET, signature, b"", now, 300));
        let key = check.headers["idempotency-key"].to_str().unwrap();
        assert!(
            key == format!("{id}-grant") || key == format!("{id}-revoke"),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_waits_for_a_grant_call_the_provisioner_still_works_on() {
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"action": "grant"})))
        .respond_with(ResponseTemplate::new(202).insert_header("Location", "/jobs/g"))
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"action": "revoke"})))
        .respond_with(ResponseTemplate::new(204))
        .mount(&provisioner)
        .await;
    Mock::given(method("GET"))
        .and(path("/jobs/g"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "in_progress"})))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("GET"))
        .and(path("/jobs/g"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "done"})))
        .with_priority(2)
        .mount(&provisioner)
        .await;
    let router = running_app(8).await;
    let id = active_grant(&router, &provisioner).await;
    // Ended while the target still sets the access up.
    let ended = revoke(&router, &id).await;
    assert_eq!(ended["deprovisioning"]["state"], "pending", "{ended}");

    let done = eventually(StdDuration::from_secs(10), || async {
        grant_json(&router, &id).await["deprovisioning"]["state"] == "done"
    })
    .await;
    let grant = grant_json(&router, &id).await;
    assert!(done, "{grant}");
    assert_eq!(
        grant["provisioning"]["state"], "done",
        "the accepted grant call is followed to its end: {grant}"
    );
    let order: Vec<String> = provisioner
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| match r.method.as_str() {
            "GET" => "check".to_owned(),
            _ => serde_json::from_slice::<Value>(&r.body).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned(),
        })
        .collect();
    assert_eq!(
        order,
        ["grant", "check", "check", "check", "check", "revoke"],
        "the revoke is sent only once the grant call finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_202_whose_status_says_failed_ends_failed_with_the_targets_reason() {
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"action": "revoke"})))
        .respond_with(ResponseTemplate::new(202).insert_header("Location", "/jobs/r"))
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&provisioner)
        .await;
    Mock::given(method("GET"))
        .and(path("/jobs/r"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "failed", "reason": "the account is locked by its owner",
        })))
        .mount(&provisioner)
        .await;
    let router = running_app(6).await;
    let id = active_grant(&router, &provisioner).await;
    revoke(&router, &id).await;

    let failed = eventually(StdDuration::from_secs(10), || async {
        grant_json(&router, &id).await["deprovisioning"]["state"] == "failed"
    })
    .await;
    let grant = grant_json(&router, &id).await;
    assert!(failed, "{grant}");
    assert_eq!(
        grant["deprovisioning"]["attempts"], 2,
        "a failure the target reports is not retried: {grant}"
    );
    assert!(
        grant["deprovisioning"]["last_error"]
            .as_str()
            .unwrap()
            .contains("the account is locked by its owner"),
        "{grant}"
    );
    assert_eq!(grant["access_removed_at"], Value::Null);
    let (kinds, _) = event_kinds_and_last(&router, &id).await;
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("deprovisioning_failed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_url_on_another_origin_is_never_called() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "done"})))
        .mount(&elsewhere)
        .await;
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"action": "revoke"})))
        .respond_with(
            ResponseTemplate::new(202)
                .insert_header("Location", format!("{}/steal", elsewhere.uri()).as_str()),
        )
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&provisioner)
        .await;
    let router = running_app(4).await;
    let id = active_grant(&router, &provisioner).await;
    let ended = revoke(&router, &id).await;
    assert_eq!(ended["deprovisioning"]["state"], "failed", "{ended}");
    assert!(
        ended["deprovisioning"]["last_error"]
            .as_str()
            .unwrap()
            .contains("another origin"),
        "{ended}"
    );
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    assert!(
        elsewhere.received_requests().await.unwrap().is_empty(),
        "no signed request leaves for another origin"
    );
    assert_eq!(
        grant_json(&router, &id).await["access_removed_at"],
        Value::Null
    );
}

/// An endpoint that answers every call with `answer`.
async fn provisioner_answering(answer: ResponseTemplate) -> MockServer {
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(answer)
        .mount(&provisioner)
        .await;
    provisioner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioner_refusing_the_call_fails_the_grant_at_once_and_is_not_called_again() {
    let provisioner = provisioner_answering(ResponseTemplate::new(403)).await;
    let router = running_app(5).await;
    let id = active_grant(&router, &provisioner).await;

    let grant = grant_json(&router, &id).await;
    assert_eq!(grant["provisioning"]["state"], "failed", "{grant}");
    assert_eq!(grant["provisioning"]["attempts"], 1, "{grant}");
    assert!(
        grant["provisioning"]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 403"),
        "{grant}"
    );
    // No retry is armed: a while later the endpoint has still been called once.
    tokio::time::sleep(StdDuration::from_millis(600)).await;
    assert_eq!(provisioner_actions(&provisioner).await, ["grant"]);
    let (kinds, _) = event_kinds_and_last(&router, &id).await;
    assert!(
        kinds.iter().any(|k| k == "provisioning_failed"),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_call_is_tried_again_no_sooner_than_its_retry_after() {
    let provisioner =
        provisioner_answering(ResponseTemplate::new(429).insert_header("Retry-After", "600")).await;
    let router = running_app(5).await;
    let before = time::OffsetDateTime::now_utc();
    let id = active_grant(&router, &provisioner).await;

    let grant = grant_json(&router, &id).await;
    assert_eq!(grant["provisioning"]["state"], "pending", "{grant}");
    let next = time::OffsetDateTime::parse(
        grant["provisioning"]["next_attempt_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    // The backoff alone would be at most 200 ms; the endpoint asked for ten minutes.
    assert!(
        next >= before + time::Duration::seconds(599),
        "next attempt at {next}, asked for 600 s after {before}"
    );
    assert_eq!(provisioner_actions(&provisioner).await, ["grant"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_and_a_server_error_are_tried_again_until_the_call_succeeds() {
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(409))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(3)
        .mount(&provisioner)
        .await;
    let router = running_app(5).await;
    let id = active_grant(&router, &provisioner).await;

    let done = eventually(StdDuration::from_secs(10), || async {
        grant_json(&router, &id).await["provisioning"]["state"] == "done"
    })
    .await;
    let grant = grant_json(&router, &id).await;
    assert!(done, "{grant}");
    assert_eq!(grant["provisioning"]["attempts"], 3, "{grant}");
    assert_eq!(
        provisioner_actions(&provisioner).await,
        ["grant", "grant", "grant"]
    );
}

const DAVE: (&str, &str) = ("dave@example.com", "");
const ERIN: (&str, &str) = ("erin@example.com", "");
const FRANK: (&str, &str) = ("frank@example.com", "");

/// Defines `id` with a webhook provisioner at `url` that takes the `reconcile` call when `reconcile` is set.
async fn define_resource(router: &axum::Router, id: &str, url: &str, reconcile: bool) {
    let body = json!({
        "name": format!("Resource {id}"),
        "provisioner": {"kind": "webhook", "url": url, "secret": SECRET, "reconcile": reconcile},
    });
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

/// Requests `resource` for an hour as `who` and approves it; the grant id.
async fn approved(router: &axum::Router, who: (&str, &str), resource: &str) -> String {
    let id = request_grant(router, who, resource, "PT1H").await;
    let (status, approved) = call(
        router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        APPROVER2,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["provisioning"]["state"], "done", "{approved}");
    id
}

/// The signed `reconcile` calls an endpoint received, their signatures checked.
async fn reconcile_calls(server: &MockServer) -> Vec<Value> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .filter_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            (body["action"] == "reconcile").then(|| {
                let header = r
                    .headers
                    .get("x-ticketbound-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                assert!(
                    verify_signature_header(SECRET, header, &r.body, now, 300),
                    "unsigned reconcile call: {body}"
                );
                body
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_run_tells_an_opted_in_endpoint_exactly_who_holds_access_now() {
    // Arrange: on `prod-db` Alice and Dave hold access, Erin's grant has ended and Frank's is still pending.
    let reconciled = provisioner_ok().await;
    let (app, router) = running(3).await;
    define_resource(&router, "prod-db", &reconciled.uri(), true).await;
    approved(&router, DAVE, "prod-db").await;
    approved(&router, ALICE, "prod-db").await;
    let erin = approved(&router, ERIN, "prod-db").await;
    revoke(&router, &erin).await;
    request_grant(&router, FRANK, "prod-db", "PT1H").await;

    // Act
    let before = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let report = app.reconcile().await.unwrap();

    // Assert
    assert_eq!(
        (report.provisioners_reconciled, report.provisioner_errors),
        (1, 0)
    );
    let calls = reconcile_calls(&reconciled).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(
        call["principals"],
        json!(["alice@example.com", "dave@example.com"])
    );
    assert_eq!(call["resource"]["id"], "prod-db");
    let at = time::OffsetDateTime::parse(
        call["at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(at >= before, "{call}");
    assert_eq!(
        call["idempotency_key"],
        format!("prod-db-reconcile-{}", at.unix_timestamp())
    );
    // The call grants and ends nothing: the grant/revoke calls are the ones the grants made.
    assert_eq!(
        provisioner_actions(&reconciled).await,
        ["grant", "grant", "grant", "revoke", "reconcile"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_that_did_not_opt_in_gets_no_reconcile_call_and_an_empty_list_is_still_sent() {
    let plain = provisioner_ok().await;
    let reconciled = provisioner_ok().await;
    let (app, router) = running(3).await;
    define_resource(&router, "plain-db", &plain.uri(), false).await;
    define_resource(&router, "quiet-db", &reconciled.uri(), true).await;
    approved(&router, ALICE, "plain-db").await;

    let report = app.reconcile().await.unwrap();

    assert_eq!(report.provisioners_reconciled, 1);
    assert!(reconcile_calls(&plain).await.is_empty());
    assert_eq!(provisioner_actions(&plain).await, ["grant"]);
    // Nobody holds `quiet-db`: the endpoint is told so, and may take away anything left.
    let calls = reconcile_calls(&reconciled).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["principals"], json!([]));
    // Read back, the resource says it takes the call; the other leaves the setting out.
    let (_, quiet) = call(&router, "GET", "/v1/resources/quiet-db", ADMIN, None).await;
    assert_eq!(quiet["provisioner"]["reconcile"], true, "{quiet}");
    let (_, plain_json) = call(&router, "GET", "/v1/resources/plain-db", ADMIN, None).await;
    assert!(
        plain_json["provisioner"].get("reconcile").is_none(),
        "{plain_json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_reconcile_call_is_reported_and_changes_no_grant() {
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"action": "reconcile"})))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&provisioner)
        .await;
    let (app, router) = running(3).await;
    define_resource(&router, "prod-db", &provisioner.uri(), true).await;
    let id = approved(&router, ALICE, "prod-db").await;
    let before = grant_json(&router, &id).await;
    let failures_before = metric_total("ProvisionerReconcileFailures");

    let report = app.reconcile().await.unwrap();

    assert_eq!(
        (report.provisioners_reconciled, report.provisioner_errors),
        (1, 1)
    );
    assert_eq!(
        metric_total("ProvisionerReconcileFailures"),
        failures_before + 1.0
    );
    assert_eq!(
        reconcile_calls(&provisioner).await.len(),
        1,
        "not retried within the run"
    );
    let after = grant_json(&router, &id).await;
    assert_eq!(after, before, "the grant is untouched");
    assert_eq!(after["status"], "active");
    let (kinds, _) = event_kinds_and_last(&router, &id).await;
    assert!(!kinds.iter().any(|k| k.contains("reconcil")), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconcile_setting_is_patched_like_any_other_and_a_bad_value_changes_nothing() {
    let endpoint = provisioner_ok().await;
    let (app, router) = running(3).await;
    define_resource(&router, "prod-db", &endpoint.uri(), false).await;

    let bad = resources::patch(
        &router,
        "prod-db",
        &json!({"provisioner": {"reconcile": "yes"}}),
        None,
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.json);
    assert_eq!(bad.json["error"]["code"], "invalid_patch");
    let (_, unchanged) = call(&router, "GET", "/v1/resources/prod-db", ADMIN, None).await;
    assert!(
        unchanged["provisioner"].get("reconcile").is_none(),
        "{unchanged}"
    );
    assert_eq!(app.reconcile().await.unwrap().provisioners_reconciled, 0);

    let on = resources::patch(
        &router,
        "prod-db",
        &json!({"provisioner": {"reconcile": true}}),
        None,
    )
    .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.json);
    assert_eq!(on.json["provisioner"]["reconcile"], true);
    assert_eq!(
        on.json["provisioner"]["secret"], "********",
        "the secret is kept, masked"
    );
    let report = app.reconcile().await.unwrap();
    assert_eq!(
        (report.provisioners_reconciled, report.provisioner_errors),
        (1, 0)
    );
    assert_eq!(
        reconcile_calls(&endpoint).await.len(),
        1,
        "signed with the kept secret"
    );
}
