//! The end-of-access pipeline: durable retries of a failing provisioner, the `failed` state after the budget,
//! and rule 8 (overlapping grants).

use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration as StdDuration;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::ports::SystemClock;
use ticketbound::service::{RetryPolicy, Ticketbound};
use ticketbound_tests::*;

/// An app on the embedded store whose in-process scheduler runs the retries.
async fn running_app(
    retry: RetryPolicy,
    provisioner_timeout: StdDuration,
) -> (Ticketbound, axum::Router) {
    let store = embedded_store();
    let scheduler = LocalScheduler::new(store.clone());
    let app = build_app(AppParts {
        store: Arc::new(store),
        scheduler: Arc::new(scheduler.clone()),
        clock: Arc::new(SystemClock),
        retry,
        provisioner_timeout,
    });
    scheduler.start(Arc::new(app.clone())).await.unwrap();
    let router = local_router(app.clone());
    (app, router)
}

/// The grant as an admin reads it: with what the provisioner answered (a requester reads a plain sentence).
async fn grant_json(router: &axum::Router, id: &str) -> Value {
    call(router, "GET", &format!("/v1/grants/{id}"), ADMIN, None)
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioner_failing_three_revokes_gets_a_fourth_and_the_grant_shows_done() {
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"action": "revoke"})))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&provisioner)
        .await;
    let (_, router) = running_app(fast_retry(6), StdDuration::from_secs(2)).await;
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

    // Revoked by an approver, who reads what the provisioner answered.
    let (status, ended) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ended["status"], "ended",
        "the grant ends at once, whatever the provisioner does"
    );
    assert_eq!(ended["deprovisioning"]["state"], "pending");
    assert_eq!(ended["deprovisioning"]["attempts"], 1);
    assert!(
        ended["deprovisioning"]["last_error"]
            .as_str()
            .unwrap()
            .contains("503")
    );

    let done = eventually(StdDuration::from_secs(10), || async {
        grant_json(&router, &id).await["deprovisioning"]["state"] == "done"
    })
    .await;
    let grant = grant_json(&router, &id).await;
    assert!(done, "{grant}");
    assert_eq!(grant["deprovisioning"]["attempts"], 4);
    assert_eq!(grant["deprovisioning"]["last_error"], Value::Null);
    assert_eq!(
        provisioner_actions(&provisioner).await,
        ["grant", "revoke", "revoke", "revoke", "revoke"]
    );
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
        kinds
            .iter()
            .filter(|k| **k == "deprovisioning_retry")
            .count(),
        3,
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"deprovisioned"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioner_that_never_answers_ends_as_failed_with_its_error() {
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"action": "revoke"})))
        .respond_with(ResponseTemplate::new(200).set_delay(StdDuration::from_secs(30)))
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&provisioner)
        .await;
    let (_, router) = running_app(fast_retry(3), StdDuration::from_millis(300)).await;
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
    call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        ALICE,
        None,
    )
    .await;

    let failed = eventually(StdDuration::from_secs(10), || async {
        grant_json(&router, &id).await["deprovisioning"]["state"] == "failed"
    })
    .await;
    let grant = grant_json(&router, &id).await;
    assert!(failed, "{grant}");
    assert_eq!(grant["deprovisioning"]["attempts"], 3);
    assert!(
        grant["deprovisioning"]["last_error"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{grant}"
    );
    let (_, events) = call(
        &router,
        "GET",
        &format!("/v1/grants/{id}/events"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(
        events["items"].as_array().unwrap().last().unwrap()["kind"],
        "deprovisioning_failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_grant_call_is_retried_until_access_is_set_up() {
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&provisioner)
        .await;
    let (_, router) = running_app(fast_retry(5), StdDuration::from_secs(2)).await;
    define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;
    let id = request_grant(&router, ALICE, "prod-db", "PT1H").await;
    let (_, approved) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(approved["status"], "active");
    assert_eq!(approved["provisioning"]["state"], "pending");
    let done = eventually(StdDuration::from_secs(10), || async {
        grant_json(&router, &id).await["provisioning"]["state"] == "done"
    })
    .await;
    assert!(done, "{}", grant_json(&router, &id).await);
    assert_eq!(
        grant_json(&router, &id).await["provisioning"]["attempts"],
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_grant_keeps_access_until_the_last_one_ends() {
    let provisioner = provisioner_ok().await;
    let (_, router) = running_app(fast_retry(3), StdDuration::from_secs(2)).await;
    define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;
    let first = request_grant(&router, ALICE, "prod-db", "PT1H").await;
    let second = request_grant(&router, ALICE, "prod-db", "PT2H").await;
    for id in [&first, &second] {
        call(
            &router,
            "POST",
            &format!("/v1/grants/{id}/approve"),
            APPROVER,
            None,
        )
        .await;
    }
    let (_, ended) = call(
        &router,
        "POST",
        &format!("/v1/grants/{first}/revoke"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(ended["deprovisioning"]["state"], "skipped");
    assert!(
        ended["deprovisioning"]["reason"]
            .as_str()
            .unwrap()
            .contains(&second)
    );
    assert_eq!(
        provisioner_actions(&provisioner).await,
        ["grant", "grant"],
        "access must stay while the second grant is active"
    );
    let (_, ended) = call(
        &router,
        "POST",
        &format!("/v1/grants/{second}/revoke"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(ended["deprovisioning"]["state"], "done");
    assert_eq!(
        provisioner_actions(&provisioner).await,
        ["grant", "grant", "revoke"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_local_deprovisioning_re_arms_under_a_new_name_and_leaves_exactly_one_schedule() {
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"action": "revoke"})))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&provisioner)
        .await;
    // Retries 1–2 s apart, so the test sees each arming before it fires.
    let retry = RetryPolicy {
        base: time::Duration::seconds(2),
        cap: time::Duration::seconds(2),
        max_attempts: 5,
        lease: time::Duration::seconds(5),
    };
    let store = embedded_store();
    let scheduler = LocalScheduler::new(store.clone());
    let app = build_app(AppParts {
        store: Arc::new(store),
        scheduler: Arc::new(scheduler.clone()),
        clock: Arc::new(SystemClock),
        retry,
        provisioner_timeout: StdDuration::from_secs(2),
    });
    scheduler.start(Arc::new(app.clone())).await.unwrap();
    let router = local_router(app.clone());
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
    let dep = |scheduler: LocalScheduler, id: String| async move {
        scheduler
            .pending()
            .await
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|n| n.starts_with(&format!("tb-{id}-dep")))
            .collect::<Vec<_>>()
    };
    let safety_net = format!("tb-{id}-dep");

    let (status, _) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        ALICE,
        None,
    )
    .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        dep(scheduler.clone(), id.clone()).await,
        [format!("{safety_net}-1")],
        "the first retry replaced the safety net"
    );
    let second = eventually(StdDuration::from_secs(5), || {
        let (scheduler, id) = (scheduler.clone(), id.clone());
        let expected = format!("{safety_net}-2");
        async move { dep(scheduler, id).await == [expected] }
    })
    .await;
    assert!(
        second,
        "arming 1 fired, failed and left only arming 2: {:?}",
        dep(scheduler.clone(), id.clone()).await
    );
    assert_eq!(
        grant_json(&router, &id).await["deprovisioning"]["attempts"],
        2
    );
    let done = eventually(StdDuration::from_secs(5), || async {
        grant_json(&router, &id).await["deprovisioning"]["state"] == "done"
    })
    .await;
    assert!(done, "{}", grant_json(&router, &id).await);
    assert_eq!(
        provisioner_actions(&provisioner).await,
        ["grant", "revoke", "revoke", "revoke"]
    );
    let cleared = eventually(StdDuration::from_secs(2), || async {
        scheduler.pending().await.unwrap().is_empty()
    })
    .await;
    assert!(cleared, "{:?}", scheduler.pending().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provisioner_call_carries_one_signed_idempotency_key_per_action_across_retries() {
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"action": "grant"})))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"action": "revoke"})))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&provisioner)
        .await;
    let (_, router) = running_app(fast_retry(6), StdDuration::from_secs(2)).await;
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
    let provisioned = eventually(StdDuration::from_secs(5), || async {
        grant_json(&router, &id).await["provisioning"]["state"] == "done"
    })
    .await;
    assert!(provisioned, "{}", grant_json(&router, &id).await);
    call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        ALICE,
        None,
    )
    .await;
    let done = eventually(StdDuration::from_secs(5), || async {
        grant_json(&router, &id).await["deprovisioning"]["state"] == "done"
    })
    .await;
    assert!(done, "{}", grant_json(&router, &id).await);

    let requests = provisioner.received_requests().await.unwrap();
    let mut keys: Vec<(String, String)> = Vec::new();
    for request in &requests {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .unwrap_or_else(|| panic!("{name} is sent"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let key = header("idempotency-key");
        assert_eq!(
            body["idempotency_key"],
            key.as_str(),
            "body and header agree"
        );
        assert_eq!(header("x-ticketbound-delivery"), key);
        // The key is inside the signed bytes: changing it breaks the signature.
        let signature = header("x-ticketbound-signature");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let verify = |body: &[u8]| {
            ticketbound::adapters::provisioner::verify_signature_header(
                "provisioner-secret-0123456789",
                &signature,
                body,
                now,
                300,
            )
        };
        assert!(verify(&request.body));
        let tampered = String::from_utf8(request.body.clone())
            .unwrap()
            .replace(&key, &format!("{id}-other"));
        assert!(!verify(tampered.as_bytes()));
        keys.push((body["action"].as_str().unwrap().to_owned(), key));
    }
    let grant_key = format!("{id}-grant");
    let revoke_key = format!("{id}-revoke");
    assert_eq!(
        keys,
        [
            ("grant".to_owned(), grant_key.clone()),
            ("grant".to_owned(), grant_key),
            ("revoke".to_owned(), revoke_key.clone()),
            ("revoke".to_owned(), revoke_key.clone()),
            ("revoke".to_owned(), revoke_key),
        ],
        "one key per action, identical on every attempt"
    );
}
