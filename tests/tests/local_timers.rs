//! Time bounds in local mode: in-process timers that fire on time and survive a restart of the server.

use axum::http::StatusCode;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use ticketbound::service::Settings;
use ticketbound_tests::*;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts the local server's app over `data_dir` as `ticketbound-local` does, and returns its router.
async fn start(data_dir: &Path) -> axum::Router {
    let (app, scheduler) = ticketbound::wiring::local_app(data_dir, Settings::default()).unwrap();
    scheduler.start(Arc::new(app.clone())).await.unwrap();
    local_router(app)
}

fn time_of(value: &serde_json::Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("a time"), &Rfc3339).unwrap()
}

/// Runs `f` on a runtime of its own and drops the runtime: every timer and task of that "process" is gone.
fn in_a_process_that_stops<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pt3s_grant_ends_within_a_second_of_its_bound() {
    let dir = temp_dir("local-pt3s");
    let router = start(&dir).await;
    define_webhook_resource(&router, "prod-db", &provisioner_ok().await.uri()).await;
    let id = request_grant(&router, ALICE, "prod-db", "PT3S").await;
    let (status, approved) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let expires_at = time_of(&approved["expires_at"]);
    let ended = eventually(StdDuration::from_secs(6), || async {
        call(&router, "GET", &format!("/v1/grants/{id}"), ALICE, None)
            .await
            .1["status"]
            == "ended"
    })
    .await;
    let grant = call(&router, "GET", &format!("/v1/grants/{id}"), ALICE, None)
        .await
        .1;
    assert!(ended, "{grant}");
    assert_eq!(grant["end_reason"], "time_bound_reached");
    let late = time_of(&grant["ended_at"]) - expires_at;
    assert!(
        late >= time::Duration::ZERO && late < time::Duration::seconds(1),
        "ended {late} after its bound"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_a_bound_is_pending_still_ends_it_on_time() {
    let dir = temp_dir("local-restart");
    let provisioner_url = provisioner_ok().await.uri();
    let first_dir = dir.clone();
    let (id, expires_at) = in_a_process_that_stops(async move {
        let router = start(&first_dir).await;
        define_webhook_resource(&router, "prod-db", &provisioner_url).await;
        let id = request_grant(&router, ALICE, "prod-db", "PT3S").await;
        let (_, approved) = call(
            &router,
            "POST",
            &format!("/v1/grants/{id}/approve"),
            APPROVER,
            None,
        )
        .await;
        (id, time_of(&approved["expires_at"]))
    });
    // The "server" is down now; it comes back before the bound.
    let router = start(&dir).await;
    let (_, grant) = call(&router, "GET", &format!("/v1/grants/{id}"), ALICE, None).await;
    assert_eq!(
        grant["status"], "active",
        "nothing is lost across the restart: {grant}"
    );
    let ended = eventually(StdDuration::from_secs(6), || async {
        call(&router, "GET", &format!("/v1/grants/{id}"), ALICE, None)
            .await
            .1["status"]
            == "ended"
    })
    .await;
    let grant = call(&router, "GET", &format!("/v1/grants/{id}"), ALICE, None)
        .await
        .1;
    assert!(ended, "{grant}");
    let late = time_of(&grant["ended_at"]) - expires_at;
    assert!(
        late >= time::Duration::ZERO && late < time::Duration::seconds(1),
        "ended {late} after its bound"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_that_passed_while_the_server_was_down_ends_at_start() {
    let dir = temp_dir("local-down");
    let provisioner = provisioner_ok().await;
    let (first_dir, url) = (dir.clone(), provisioner.uri());
    let id = in_a_process_that_stops(async move {
        let router = start(&first_dir).await;
        define_webhook_resource(&router, "prod-db", &url).await;
        let id = request_grant(&router, ALICE, "prod-db", "PT1S").await;
        call(
            &router,
            "POST",
            &format!("/v1/grants/{id}/approve"),
            APPROVER,
            None,
        )
        .await;
        id
    });
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    let router = start(&dir).await;
    let ended = eventually(StdDuration::from_secs(3), || async {
        call(&router, "GET", &format!("/v1/grants/{id}"), ALICE, None)
            .await
            .1["status"]
            == "ended"
    })
    .await;
    assert!(ended);
    let ended = eventually(StdDuration::from_secs(3), || async {
        provisioner_actions(&provisioner).await.len() == 2
    })
    .await;
    assert!(ended, "the revocation runs after the restart");
    assert_eq!(provisioner_actions(&provisioner).await, ["grant", "revoke"]);
}

/// The names of the stored schedules of one grant's job of one kind (`exp`, `prv`, `dep`), every arming.
async fn local_armings(
    scheduler: &ticketbound::adapters::local_scheduler::LocalScheduler,
    id: &str,
    kind: &str,
) -> Vec<String> {
    let base = format!("tb-{id}-{kind}");
    scheduler
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|n| *n == base || n.starts_with(&format!("{base}-")))
        .collect()
}

#[tokio::test]
async fn an_early_local_expiry_re_arms_under_a_new_name_and_leaves_exactly_one_schedule() {
    use ticketbound::ports::{Job, JobKind};
    // The local scheduler stores schedules but fires none (not started): the test fires them.
    let clock = ManualClock::now_system();
    let store = embedded_store();
    let scheduler = ticketbound::adapters::local_scheduler::LocalScheduler::new(store.clone());
    let app = build_app(AppParts {
        store: Arc::new(store),
        scheduler: Arc::new(scheduler.clone()),
        clock: Arc::new(clock.clone()),
        retry: fast_retry(4),
        provisioner_timeout: StdDuration::from_secs(2),
    });
    let router = local_router(app.clone());
    let provisioner = provisioner_ok().await;
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
    let first = Job::new(JobKind::Expire, &id);
    assert_eq!(
        local_armings(&scheduler, &id, "exp").await,
        [first.schedule_name()]
    );
    clock.advance(time::Duration::minutes(59));

    let outcome = app.run_job(&first).await.unwrap();

    assert_eq!(outcome, ticketbound::service::JobOutcome::Rearmed);
    let second = first.with_arming(1);
    let stored = scheduler.pending().await.unwrap();
    assert_eq!(
        stored
            .iter()
            .filter(|(n, _)| n.contains("-exp"))
            .collect::<Vec<_>>(),
        [&(second.schedule_name(), time_of(&approved["expires_at"]))],
        "one schedule, at the bound, not the one that fired"
    );
    app.run_job(&second).await.unwrap();
    assert_eq!(
        local_armings(&scheduler, &id, "exp").await,
        [first.with_arming(2).schedule_name()]
    );

    clock.advance(time::Duration::minutes(1));
    let outcome = app.run_job(&first.with_arming(2)).await.unwrap();
    assert_eq!(outcome, ticketbound::service::JobOutcome::Done);
    assert_eq!(provisioner_actions(&provisioner).await, ["grant", "revoke"]);
    assert_eq!(scheduler.pending().await.unwrap(), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_in_flight_when_the_server_died_resumes_at_restart_without_waiting_for_the_lease()
{
    use wiremock::matchers::{body_partial_json, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    // The end system is slow to answer the first revoke: it is in flight when the "process" dies.
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(serde_json::json!({"action": "revoke"})))
        .respond_with(ResponseTemplate::new(200).set_delay(StdDuration::from_secs(30)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&provisioner)
        .await;
    let dir = temp_dir("local-lease");
    let (first_dir, url) = (dir.clone(), provisioner.uri());
    let id = in_a_process_that_stops(async move {
        let router = start(&first_dir).await;
        define_webhook_resource(&router, "prod-db", &url).await;
        let id = request_grant(&router, ALICE, "prod-db", "PT1H").await;
        call(
            &router,
            "POST",
            &format!("/v1/grants/{id}/approve"),
            APPROVER,
            None,
        )
        .await;
        let revoking = {
            let (router, id) = (router.clone(), id.clone());
            tokio::spawn(async move {
                call(
                    &router,
                    "POST",
                    &format!("/v1/grants/{id}/revoke"),
                    ALICE,
                    None,
                )
                .await
            })
        };
        let claimed = eventually(StdDuration::from_secs(5), || async {
            call(&router, "GET", &format!("/v1/grants/{id}"), ALICE, None)
                .await
                .1["deprovisioning"]["attempts"]
                == 1
        })
        .await;
        assert!(claimed);
        // Let the claimed call reach the end system, then the process dies with it unanswered.
        tokio::time::sleep(StdDuration::from_millis(300)).await;
        drop(revoking);
        id
    });
    let leased = {
        let (app, _) = ticketbound::wiring::local_app(&dir, Settings::default()).unwrap();
        app.store().get_grant(&id).await.unwrap().unwrap()
    };
    let deprovisioning = leased.deprovisioning.unwrap();
    assert_eq!(
        deprovisioning.state,
        ticketbound::domain::SideEffectState::Pending
    );
    assert!(
        deprovisioning.lease_until.unwrap()
            > OffsetDateTime::now_utc() + time::Duration::seconds(30),
        "the dead process's lease still runs for most of a minute"
    );

    let restarted = std::time::Instant::now();
    let router = start(&dir).await;

    let done = eventually(StdDuration::from_secs(5), || async {
        call(&router, "GET", &format!("/v1/grants/{id}"), ALICE, None)
            .await
            .1["deprovisioning"]["state"]
            == "done"
    })
    .await;
    assert!(
        done,
        "{}",
        call(&router, "GET", &format!("/v1/grants/{id}"), ALICE, None)
            .await
            .1
    );
    assert!(restarted.elapsed() < StdDuration::from_secs(5));
    let revokes: Vec<String> = provisioner
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .filter(|b| b["action"] == "revoke")
        .map(|b| b["idempotency_key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        revokes,
        [format!("{id}-revoke"), format!("{id}-revoke")],
        "the call in flight is repeated once, with the same key"
    );
}

#[tokio::test]
async fn at_start_only_side_effects_in_flight_or_never_attempted_are_released_and_resumed() {
    use ticketbound::domain::{
        AuditEvent, AuditKind, EndReason, Grant, GrantDuration, SideEffectState,
    };
    use ticketbound::ports::{GrantStore, Job, JobKind};
    let store = embedded_store();
    let now = OffsetDateTime::now_utc();
    // An ended grant whose deprovisioning is shaped by `shape`; returns its id.
    let ended = |shape: fn(&mut ticketbound::domain::grant::SideEffect)| {
        let store = store.clone();
        async move {
            let grant = Grant::request(
                ticketbound::domain::ids::new_ulid(now),
                "alice@example.com".into(),
                "prod-db".into(),
                "INC-7".into(),
                GrantDuration::parse("PT1H").unwrap(),
                None,
                now,
            );
            let event = AuditEvent::of(
                &grant,
                AuditKind::Requested,
                None,
                now,
                serde_json::Value::Null,
            );
            store.insert_grant(&grant, &event).await.unwrap();
            let mut over = grant
                .approve(APPROVER.0, now)
                .unwrap()
                .end(EndReason::Revoked, None, now)
                .unwrap();
            // Access was set up; only the end's side effect varies.
            over.provisioning.as_mut().unwrap().state = SideEffectState::Done;
            shape(over.deprovisioning.as_mut().unwrap());
            store
                .update_grant(&over, grant.expected(), None)
                .await
                .unwrap();
            over.id
        }
    };
    let in_flight = ended(|d| {
        d.attempts = 3;
        d.arming = 2;
        d.lease_until = Some(OffsetDateTime::now_utc() + time::Duration::seconds(50));
    })
    .await;
    let never_attempted = ended(|_| {}).await;
    let backing_off = ended(|d| {
        d.attempts = 1;
        d.arming = 1;
        d.next_attempt_at = Some(OffsetDateTime::now_utc() + time::Duration::minutes(5));
    })
    .await;
    let finished = ended(|d| d.state = SideEffectState::Done).await;
    let before_backing_off = store.get_grant(&backing_off).await.unwrap();
    let before_finished = store.get_grant(&finished).await.unwrap();

    let mut resumed = store.release_leases().await.unwrap();

    resumed.sort_by(|a, b| a.grant_id.cmp(&b.grant_id));
    let mut expected = vec![
        Job::armed(JobKind::Deprovision, &in_flight, 2),
        Job::new(JobKind::Deprovision, &never_attempted),
    ];
    expected.sort_by(|a, b| a.grant_id.cmp(&b.grant_id));
    assert_eq!(resumed, expected);
    let released = store.get_grant(&in_flight).await.unwrap().unwrap();
    let deprovisioning = released.deprovisioning.unwrap();
    assert_eq!(deprovisioning.lease_until, None);
    assert_eq!(deprovisioning.attempts, 3, "only the lease changes");
    assert_eq!(
        store.get_grant(&backing_off).await.unwrap(),
        before_backing_off,
        "a retry waiting out its backoff keeps its schedule"
    );
    assert_eq!(store.get_grant(&finished).await.unwrap(), before_finished);
}
