//! A request nobody decides is cancelled after `PENDING_FOR` (issue 13), as `approval_timed_out`, through the
//! scheduler port: on EventBridge Scheduler (moto; the expiry function's handler fed the schedule's stored
//! Input) and on the in-process local scheduler (really firing, and surviving a restart). Deciding or
//! withdrawing deletes the deadline, and a stale one does nothing; a deadline racing an approval ends in
//! exactly one of them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::Router;
use axum::http::StatusCode;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::scheduler::EventBridgeScheduler;
use ticketbound::domain::IsoDuration;
use ticketbound::handlers::handle_scheduled_job;
use ticketbound::ports::{Job, JobKind};
use ticketbound::service::{JobOutcome, Settings, Ticketbound};
use ticketbound_tests::*;

const DAVE: (&str, &str) = ("dave@example.com", "dba");

/// What EventBridge Scheduler delivers when the schedule `name` fires: the Input stored on it in moto.
async fn fired(client: &aws_sdk_scheduler::Client, group: &str, name: &str) -> LambdaEvent<Value> {
    let schedule = client
        .get_schedule()
        .name(name)
        .group_name(group)
        .send()
        .await
        .unwrap_or_else(|e| panic!("schedule {name} exists: {e:?}"));
    delivered(schedule.target().unwrap().input().unwrap())
}

fn delivered(input: &str) -> LambdaEvent<Value> {
    let input = input
        .replace("<aws.scheduler.scheduled-time>", "2026-03-01T09:00:00Z")
        .replace("<aws.scheduler.attempt-number>", "1");
    LambdaEvent::new(serde_json::from_str(&input).unwrap(), Context::default())
}

/// The names of one grant's schedules.
async fn schedules_of(client: &aws_sdk_scheduler::Client, group: &str, id: &str) -> Vec<String> {
    schedule_names(client, group)
        .await
        .into_iter()
        .filter(|n| n.starts_with(&format!("tb-{id}-")))
        .collect()
}

async fn define(router: &Router, id: &str, extra: Value) {
    let mut body = json!({"name": id, "provisioner": {"kind": "none"}});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, answer) = call(
        router,
        "PUT",
        &format!("/v1/resources/{id}"),
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

async fn grant(router: &Router, id: &str) -> Value {
    call(router, "GET", &format!("/v1/grants/{id}"), ADMIN, None)
        .await
        .1
}

fn time_of(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("a time"), &Rfc3339).unwrap()
}

#[tokio::test]
async fn a_request_nobody_decides_is_cancelled_by_its_eventbridge_schedule_after_pending_for() {
    let clock = ManualClock::now_system();
    let (app, client, group) = aws_test_app(clock.clone(), fast_retry(4)).await;
    let router = local_router(app.clone());
    define(&router, "prod-db", json!({})).await;
    let id = request_grant(&router, ALICE, "prod-db", "PT1H").await;
    let pending = grant(&router, &id).await;
    let decide_by = time_of(&pending["decide_by"]);
    assert_eq!(
        decide_by,
        time_of(&pending["requested_at"]) + Duration::days(1),
        "PENDING_FOR defaults to P1D"
    );

    // The deadline is one one-time schedule, `pnd`, at decide_by, targeting the expiry function.
    let name = Job::new(JobKind::PendingExpiry, &id).schedule_name();
    assert_eq!(name, format!("tb-{id}-pnd"));
    assert_eq!(schedules_of(&client, &group, &id).await, [name.as_str()]);
    let schedule = client
        .get_schedule()
        .name(&name)
        .group_name(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(
        schedule.schedule_expression(),
        Some(EventBridgeScheduler::expression(decide_by, clock.now_offset()).as_str())
    );
    assert_eq!(
        schedule.action_after_completion().map(|a| a.as_str()),
        Some("DELETE")
    );
    let input: Value = serde_json::from_str(schedule.target().unwrap().input().unwrap()).unwrap();
    assert_eq!(
        (&input["job"], &input["grant_id"]),
        (&json!("pending_expiry"), &json!(id))
    );

    // Fired early (clock skew): re-armed under a new name, the request untouched.
    clock.advance(Duration::hours(23));
    let early = handle_scheduled_job(&app, fired(&client, &group, &name).await)
        .await
        .unwrap();
    assert_eq!(early["outcome"], "rearmed");
    assert_eq!(
        schedules_of(&client, &group, &id).await,
        [format!("{name}-1")]
    );
    assert_eq!(grant(&router, &id).await["status"], "pending");

    // On time: cancelled as approval_timed_out, by nobody, with nothing to deprovision, and no schedule left.
    clock.advance(Duration::hours(1));
    let live = format!("{name}-1");
    let event = fired(&client, &group, &live).await;
    let outcome = handle_scheduled_job(&app, event.clone()).await.unwrap();
    assert_eq!(outcome["outcome"], "done");
    let cancelled = grant(&router, &id).await;
    assert_eq!(
        (
            &cancelled["status"],
            &cancelled["end_reason"],
            &cancelled["ended_by"],
            &cancelled["deprovisioning"]
        ),
        (
            &json!("cancelled"),
            &json!("approval_timed_out"),
            &Value::Null,
            &Value::Null
        ),
        "{cancelled}"
    );
    let (_, events) = call(
        &router,
        "GET",
        &format!("/v1/grants/{id}/events"),
        ALICE,
        None,
    )
    .await;
    let last = events["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["kind"], &last["actor"], &last["detail"]["end_reason"]),
        (
            &json!("cancelled"),
            &Value::Null,
            &json!("approval_timed_out")
        ),
        "{events}"
    );
    assert!(schedules_of(&client, &group, &id).await.is_empty());

    // Lambda delivering the same event again changes nothing.
    let again = handle_scheduled_job(&app, event).await.unwrap();
    assert_eq!(again["outcome"], "nothing");
    assert_eq!(grant(&router, &id).await, cancelled);
}

#[tokio::test]
async fn deciding_or_withdrawing_deletes_the_deadline_and_a_stale_one_does_nothing_on_eventbridge()
{
    let clock = ManualClock::now_system();
    let (app, client, group) = aws_test_app(clock.clone(), fast_retry(4)).await;
    let router = local_router(app.clone());
    define(&router, "prod-db", json!({})).await;
    define(
        &router,
        "vault",
        json!({"approvers": {"groups": ["dba"]}, "approvals_required": 2}),
    )
    .await;

    let approved = request_grant(&router, ALICE, "prod-db", "P2D").await;
    call(
        &router,
        "POST",
        &format!("/v1/grants/{approved}/approve"),
        APPROVER,
        None,
    )
    .await;
    let denied = request_grant(&router, ALICE, "prod-db", "PT1H").await;
    call(
        &router,
        "POST",
        &format!("/v1/grants/{denied}/deny"),
        APPROVER,
        None,
    )
    .await;
    let withdrawn = request_grant(&router, ALICE, "prod-db", "PT1H").await;
    call(
        &router,
        "POST",
        &format!("/v1/grants/{withdrawn}/revoke"),
        ALICE,
        None,
    )
    .await;
    let half = request_grant(&router, ALICE, "vault", "PT1H").await;
    let (status, one) = call(
        &router,
        "POST",
        &format!("/v1/grants/{half}/approve"),
        DAVE,
        None,
    )
    .await;
    assert_eq!(
        (status, &one["status"]),
        (StatusCode::OK, &json!("pending"))
    );

    assert_eq!(
        schedules_of(&client, &group, &approved).await,
        [format!("tb-{approved}-exp")],
        "an approval replaces the deadline with the time bound"
    );
    assert!(schedules_of(&client, &group, &denied).await.is_empty());
    assert!(schedules_of(&client, &group, &withdrawn).await.is_empty());
    assert_eq!(
        schedules_of(&client, &group, &half).await,
        [format!("tb-{half}-pnd")],
        "one approval of two: still waiting, still a deadline"
    );

    clock.advance(Duration::days(1) + Duration::seconds(1));
    for (id, status, reason) in [
        (&approved, "active", Value::Null),
        (&denied, "denied", json!("denied")),
        (&withdrawn, "cancelled", json!("withdrawn")),
    ] {
        let before = grant(&router, id).await;
        let stale = Job::new(JobKind::PendingExpiry, id);
        let outcome = handle_scheduled_job(&app, delivered(&EventBridgeScheduler::input(&stale)))
            .await
            .unwrap();
        assert_eq!(outcome["outcome"], "nothing", "{id}");
        let after = grant(&router, id).await;
        assert_eq!(after, before, "a stale deadline changes nothing");
        assert_eq!(
            (&after["status"], &after["end_reason"]),
            (&json!(status), &reason)
        );
    }

    // The half-approved request times out with its approval on record.
    let outcome = handle_scheduled_job(
        &app,
        fired(&client, &group, &format!("tb-{half}-pnd")).await,
    )
    .await
    .unwrap();
    assert_eq!(outcome["outcome"], "done");
    let timed_out = grant(&router, &half).await;
    assert_eq!(timed_out["end_reason"], "approval_timed_out");
    assert_eq!(timed_out["approvals"][0]["by"], DAVE.0);
    assert!(schedules_of(&client, &group, &half).await.is_empty());
}

/// Starts the local server's app over `data_dir` as `ticketbound-local` does, with `pending_for`.
async fn start_local(data_dir: &Path, pending_for: &str) -> (Router, LocalScheduler) {
    let settings = Settings {
        pending_for: IsoDuration::parse(pending_for).unwrap(),
        ..Settings::default()
    };
    let (app, scheduler) = ticketbound::wiring::local_app(data_dir, settings).unwrap();
    scheduler.start(Arc::new(app.clone())).await.unwrap();
    (local_router(app), scheduler)
}

async fn local_schedules_of(scheduler: &LocalScheduler, id: &str) -> Vec<String> {
    scheduler
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|n| n.starts_with(&format!("tb-{id}-")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_scheduler_cancels_a_request_nobody_decides_on_time_and_leaves_a_decided_one_alone()
 {
    let dir = temp_dir("pending-local");
    let (router, scheduler) = start_local(&dir, "PT2S").await;
    define(&router, "prod-db", json!({})).await;
    let waiting = request_grant(&router, ALICE, "prod-db", "PT1H").await;
    let decided = request_grant(&router, ALICE, "prod-db", "PT1H").await;
    let (status, _) = call(
        &router,
        "POST",
        &format!("/v1/grants/{decided}/approve"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        local_schedules_of(&scheduler, &waiting).await,
        [format!("tb-{waiting}-pnd")]
    );
    assert_eq!(
        local_schedules_of(&scheduler, &decided).await,
        [format!("tb-{decided}-exp")]
    );

    let cancelled = eventually(StdDuration::from_secs(6), || async {
        grant(&router, &waiting).await["status"] == "cancelled"
    })
    .await;
    let timed_out = grant(&router, &waiting).await;
    assert!(cancelled, "{timed_out}");
    assert_eq!(timed_out["end_reason"], "approval_timed_out");
    let late = time_of(&timed_out["ended_at"]) - time_of(&timed_out["decide_by"]);
    assert!(
        late >= Duration::ZERO && late < Duration::seconds(1),
        "cancelled {late} after its deadline"
    );
    let cleared = eventually(StdDuration::from_secs(2), || async {
        local_schedules_of(&scheduler, &waiting).await.is_empty()
    })
    .await;
    assert!(
        cleared,
        "{:?}",
        local_schedules_of(&scheduler, &waiting).await
    );
    assert_eq!(grant(&router, &decided).await["status"], "active");
    let _ = std::fs::remove_dir_all(&dir);
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
async fn a_deadline_survives_a_restart_of_the_local_server() {
    let dir = temp_dir("pending-restart");
    let first = dir.clone();
    let id = in_a_process_that_stops(async move {
        let (router, _) = start_local(&first, "PT3S").await;
        define(&router, "prod-db", json!({})).await;
        request_grant(&router, ALICE, "prod-db", "PT1H").await
    });
    // The "server" is down; it comes back before the deadline.
    let (router, _) = start_local(&dir, "PT3S").await;
    assert_eq!(grant(&router, &id).await["status"], "pending");
    let cancelled = eventually(StdDuration::from_secs(6), || async {
        grant(&router, &id).await["end_reason"] == "approval_timed_out"
    })
    .await;
    assert!(cancelled, "{}", grant(&router, &id).await);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The deadline and an approver at the same moment, many rounds, on the embedded store in a file: exactly one
/// of them wins. Approved: active, provisioned once, the deadline did nothing. Timed out: cancelled, the
/// approver told 409 `grant_not_pending`, nothing provisioned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deadline_racing_an_approval_ends_in_exactly_one_of_them() {
    let dir = temp_dir("pending-race");
    let store = EmbeddedStore::open(&dir.join("ticketbound.db")).unwrap();
    let clock = ManualClock::now_system();
    let app: Ticketbound = build_app(AppParts {
        store: Arc::new(store.clone()),
        scheduler: Arc::new(LocalScheduler::new(store)),
        clock: Arc::new(clock.clone()),
        retry: fast_retry(4),
        provisioner_timeout: StdDuration::from_secs(2),
    });
    let router = local_router(app.clone());
    let provisioner = provisioner_ok().await;
    define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;
    let mut wins = [0usize; 2];
    let rounds = 150;
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    for round in 0..rounds {
        let requester = format!("engineer{round}@example.com");
        let id = request_grant(&router, (requester.as_str(), ""), "prod-db", "PT1H").await;
        clock.advance(Duration::days(1));
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        // The approval has more to read before it writes: the deadline starts a random number of yields late.
        let (late, early) = (rng.usize(0..120), rng.usize(0..10));
        let deadline = {
            let (app, id, barrier) = (app.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                for _ in 0..late {
                    tokio::task::yield_now().await;
                }
                app.run_job(&Job::new(JobKind::PendingExpiry, &id))
                    .await
                    .unwrap()
            })
        };
        let approval = {
            let (router, id, barrier) = (router.clone(), id.clone(), barrier.clone());
            let yields = early;
            tokio::spawn(async move {
                barrier.wait().await;
                for _ in 0..yields {
                    tokio::task::yield_now().await;
                }
                call(
                    &router,
                    "POST",
                    &format!("/v1/grants/{id}/approve"),
                    APPROVER,
                    None,
                )
                .await
            })
        };
        let (outcome, (status, answer)) = (deadline.await.unwrap(), approval.await.unwrap());
        let state = grant(&router, &id).await;
        let grants_sent = provisioner
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(|b| b["grant"]["id"] == id.as_str() && b["action"] == "grant")
            .count();
        match (outcome, status) {
            (JobOutcome::Nothing, StatusCode::OK) => {
                assert_eq!(state["status"], "active", "round {round}: {state}");
                assert_eq!(grants_sent, 1, "round {round}");
                wins[0] += 1;
            }
            (JobOutcome::Done, StatusCode::CONFLICT) => {
                assert_eq!(
                    answer["error"]["code"], "grant_not_pending",
                    "round {round}"
                );
                assert_eq!(
                    state["end_reason"], "approval_timed_out",
                    "round {round}: {state}"
                );
                assert_eq!(grants_sent, 0, "round {round}");
                wins[1] += 1;
            }
            other => panic!(
                "seed {seed}, round {round}: both or neither won: {other:?} {answer} {state}"
            ),
        }
    }
    eprintln!(
        "seed {seed}, {rounds} rounds: the approval won {}, the deadline {}",
        wins[0], wins[1]
    );
    // The two really raced: each won some rounds.
    assert!(wins[0] > 0 && wins[1] > 0, "seed {seed}: {wins:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
