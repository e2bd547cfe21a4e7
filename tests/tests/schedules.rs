//! Time bounds on AWS: the schedule an approval creates in EventBridge Scheduler (moto), and the expiry
//! function's handler fed the real `Input` JSON through `LambdaEvent`.

use axum::http::StatusCode;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use std::sync::Arc;
use time::Duration;

use ticketbound::adapters::scheduler::EventBridgeScheduler;
use ticketbound::handlers::handle_scheduled_job;
use ticketbound::ports::{Job, JobKind};
use ticketbound::service::Ticketbound;
use ticketbound_tests::*;

/// What EventBridge Scheduler delivers for `job`: the schedule's Input with its placeholders substituted.
fn delivered(job: &Job) -> LambdaEvent<Value> {
    substituted(&EventBridgeScheduler::input(job))
}

fn substituted(input: &str) -> LambdaEvent<Value> {
    let input = input
        .replace("<aws.scheduler.scheduled-time>", "2026-03-01T09:00:00Z")
        .replace("<aws.scheduler.attempt-number>", "1");
    LambdaEvent::new(serde_json::from_str(&input).unwrap(), Context::default())
}

/// What EventBridge Scheduler delivers when the schedule `name` fires: the Input stored on it in moto.
async fn fired(client: &aws_sdk_scheduler::Client, group: &str, name: &str) -> LambdaEvent<Value> {
    let schedule = client
        .get_schedule()
        .name(name)
        .group_name(group)
        .send()
        .await
        .unwrap_or_else(|e| panic!("schedule {name} exists: {e:?}"));
    substituted(schedule.target().unwrap().input().unwrap())
}

/// The names of the schedules of one grant's job of one kind (`exp`, `prv`, `dep`), every arming of it.
async fn armings(
    client: &aws_sdk_scheduler::Client,
    group: &str,
    id: &str,
    kind: &str,
) -> Vec<String> {
    let base = format!("tb-{id}-{kind}");
    schedule_names(client, group)
        .await
        .into_iter()
        .filter(|n| *n == base || n.starts_with(&format!("{base}-")))
        .collect()
}

async fn approved_grant(
    app: &Ticketbound,
    provisioner: &wiremock::MockServer,
    duration: &str,
) -> (axum::Router, String) {
    let router = local_router(app.clone());
    define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;
    let id = request_grant(&router, ALICE, "prod-db", duration).await;
    let (status, body) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (router, id)
}

#[tokio::test]
async fn approval_creates_exactly_the_documented_schedule() {
    let clock = ManualClock::now_system();
    let (app, client, group) = aws_test_app(clock.clone(), fast_retry(4)).await;
    let provisioner = provisioner_ok().await;
    let (_, id) = approved_grant(&app, &provisioner, "PT4H").await;
    let grant = app.store().get_grant(&id).await.unwrap().unwrap();
    let name = Job::new(JobKind::Expire, &id).schedule_name();
    assert!(
        name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    );

    let schedule = client
        .get_schedule()
        .name(&name)
        .group_name(&group)
        .send()
        .await
        .expect("the schedule exists");
    let expected_at =
        EventBridgeScheduler::expression(grant.expires_at.unwrap(), clock.now_offset());
    assert_eq!(schedule.schedule_expression(), Some(expected_at.as_str()));
    assert_eq!(schedule.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(schedule.group_name(), Some(group.as_str()));
    assert_eq!(
        schedule.flexible_time_window().unwrap().mode().as_str(),
        "OFF"
    );
    assert_eq!(
        schedule.action_after_completion().map(|a| a.as_str()),
        Some("DELETE")
    );
    let target = schedule.target().unwrap();
    assert_eq!(target.arn(), EXPIRY_ARN);
    assert_eq!(target.role_arn(), SCHEDULER_ROLE_ARN);
    assert_eq!(
        target.dead_letter_config().and_then(|d| d.arn()),
        Some(DLQ_ARN)
    );
    let retry = target.retry_policy().unwrap();
    assert!(
        retry.maximum_retry_attempts().unwrap() > 0
            && retry.maximum_event_age_in_seconds().unwrap() >= 60
    );
    let input: Value = serde_json::from_str(target.input().unwrap()).unwrap();
    assert_eq!(input["job"], "expire");
    assert_eq!(input["grant_id"], id.as_str());
    assert_eq!(input["arming"], 0, "the first arming");
    assert_eq!(schedule_names(&client, &group).await, [name]);
}

#[tokio::test]
async fn revoking_deletes_every_schedule_of_the_grant() {
    let (app, client, group) = aws_test_app(ManualClock::now_system(), fast_retry(4)).await;
    let provisioner = provisioner_ok().await;
    let (router, id) = approved_grant(&app, &provisioner, "PT4H").await;
    let (status, grant) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(grant["deprovisioning"]["state"], "done");
    assert!(
        schedule_names(&client, &group).await.is_empty(),
        "{:?}",
        schedule_names(&client, &group).await
    );
    // Deleting a schedule that is already gone is fine.
    app.scheduler()
        .cancel(&Job::new(JobKind::Expire, &id))
        .await
        .expect("already gone is not an error");
}

#[tokio::test]
async fn approving_twice_or_retrying_the_schedule_leaves_one_schedule() {
    let clock = ManualClock::now_system();
    let (app, client, group) = aws_test_app(clock.clone(), fast_retry(4)).await;
    let provisioner = provisioner_ok().await;
    let (router, id) = approved_grant(&app, &provisioner, "PT4H").await;
    let (status, _) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        APPROVER2,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // A retried create (the same job again, e.g. a Lambda retry) moves the one schedule instead of adding one.
    let job = Job::new(JobKind::Expire, &id);
    let later = clock.now_offset() + Duration::hours(5);
    app.scheduler().schedule(&job, later).await.unwrap();
    app.scheduler().schedule(&job, later).await.unwrap();
    assert_eq!(schedule_names(&client, &group).await, [job.schedule_name()]);
    // The same holds for a later arming: arming 3 created twice is one schedule beside arming 0.
    let third = job.with_arming(3);
    app.scheduler().schedule(&third, later).await.unwrap();
    app.scheduler().schedule(&third, later).await.unwrap();
    assert_eq!(
        schedule_names(&client, &group).await,
        [job.schedule_name(), third.schedule_name()]
    );
    let schedule = client
        .get_schedule()
        .name(job.schedule_name())
        .group_name(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(
        schedule.schedule_expression(),
        Some(EventBridgeScheduler::expression(later, clock.now_offset()).as_str())
    );
}

#[tokio::test]
async fn the_expiry_handler_ends_a_due_grant_once() {
    let clock = ManualClock::now_system();
    let (app, client, group) = aws_test_app(clock.clone(), fast_retry(4)).await;
    let provisioner = provisioner_ok().await;
    let (_, id) = approved_grant(&app, &provisioner, "PT1H").await;
    clock.advance(Duration::hours(1) + Duration::seconds(1));

    let job = Job::new(JobKind::Expire, &id);
    let first = handle_scheduled_job(&app, delivered(&job)).await.unwrap();
    assert_eq!(first["outcome"], "done");
    let grant = app.store().get_grant(&id).await.unwrap().unwrap();
    assert_eq!(grant.status.as_str(), "ended");
    assert_eq!(grant.end_reason.unwrap().as_str(), "time_bound_reached");
    assert_eq!(grant.ended_by, None);

    // Lambda's asynchronous invocation may deliver the same event again.
    let again = handle_scheduled_job(&app, delivered(&job)).await.unwrap();
    assert_eq!(again["outcome"], "nothing");
    assert_eq!(provisioner_actions(&provisioner).await, ["grant", "revoke"]);
    assert!(schedule_names(&client, &group).await.is_empty());
}

#[tokio::test]
async fn an_early_expiry_re_arms_under_a_new_name_and_leaves_exactly_one_schedule() {
    let clock = ManualClock::now_system();
    let (app, client, group) = aws_test_app(clock.clone(), fast_retry(4)).await;
    let provisioner = provisioner_ok().await;
    let (_, id) = approved_grant(&app, &provisioner, "PT1H").await;
    let first = Job::new(JobKind::Expire, &id).schedule_name();
    assert_eq!(armings(&client, &group, &id, "exp").await, [first.as_str()]);
    clock.advance(Duration::minutes(59));

    // The schedule fires early and is still there while its target runs (EventBridge deletes it afterwards).
    let outcome = handle_scheduled_job(&app, fired(&client, &group, &first).await)
        .await
        .unwrap();

    assert_eq!(outcome["outcome"], "rearmed");
    let grant = app.store().get_grant(&id).await.unwrap().unwrap();
    assert_eq!(grant.status.as_str(), "active");
    let live = armings(&client, &group, &id, "exp").await;
    assert_eq!(
        live,
        [format!("{first}-1")],
        "one schedule, not the one that fired"
    );
    let schedule = client
        .get_schedule()
        .name(&live[0])
        .group_name(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(
        schedule.schedule_expression(),
        Some(
            EventBridgeScheduler::expression(grant.expires_at.unwrap(), clock.now_offset())
                .as_str()
        )
    );

    // Early again (and Lambda delivering that event twice): each time one new arming replaces the last.
    let second = fired(&client, &group, &live[0]).await;
    handle_scheduled_job(&app, second.clone()).await.unwrap();
    assert_eq!(
        armings(&client, &group, &id, "exp").await,
        [format!("{first}-2")]
    );
    handle_scheduled_job(&app, second).await.unwrap();
    let live = armings(&client, &group, &id, "exp").await;
    assert_eq!(live, [format!("{first}-3")]);
    assert_eq!(provisioner_actions(&provisioner).await, ["grant"]);

    // On time, the live arming ends the grant and nothing is left behind.
    clock.advance(Duration::minutes(1));
    let outcome = handle_scheduled_job(&app, fired(&client, &group, &live[0]).await)
        .await
        .unwrap();
    assert_eq!(outcome["outcome"], "done");
    assert_eq!(provisioner_actions(&provisioner).await, ["grant", "revoke"]);
    assert!(
        schedule_names(&client, &group).await.is_empty(),
        "{:?}",
        schedule_names(&client, &group).await
    );
}

#[tokio::test]
async fn a_failing_deprovisioning_re_arms_under_a_new_name_and_leaves_exactly_one_schedule() {
    let clock = ManualClock::now_system();
    let (app, client, group) = aws_test_app(clock.clone(), fast_retry(5)).await;
    let provisioner = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::body_partial_json(
        serde_json::json!({"action": "revoke"}),
    ))
    .respond_with(wiremock::ResponseTemplate::new(503))
    .up_to_n_times(2)
    .with_priority(1)
    .mount(&provisioner)
    .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&provisioner)
        .await;
    let (router, id) = approved_grant(&app, &provisioner, "PT4H").await;
    let safety_net = Job::new(JobKind::Deprovision, &id).schedule_name();

    // The first revoke fails: its retry is arming 1, and the safety net (arming 0) is gone.
    let (status, ended) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ended["deprovisioning"]["state"], "pending");
    let live = armings(&client, &group, &id, "dep").await;
    assert_eq!(live, [format!("{safety_net}-1")]);

    // Arming 1 fires and fails: exactly one schedule for the next try, under a new name.
    let outcome = handle_scheduled_job(&app, fired(&client, &group, &live[0]).await)
        .await
        .unwrap();
    assert_eq!(outcome["outcome"], "done", "an attempt was made");
    let grant = app.store().get_grant(&id).await.unwrap().unwrap();
    let deprovisioning = grant.deprovisioning.unwrap();
    assert_eq!(deprovisioning.attempts, 2);
    assert_eq!(
        deprovisioning.state,
        ticketbound::domain::SideEffectState::Pending
    );
    let next = armings(&client, &group, &id, "dep").await;
    assert_eq!(next, [format!("{safety_net}-2")]);
    assert_ne!(next, live);
    let schedule = client
        .get_schedule()
        .name(&next[0])
        .group_name(&group)
        .send()
        .await
        .unwrap();
    // Its Input tells the job which arming it is (what the next re-arm numbers from).
    let input: Value = serde_json::from_str(schedule.target().unwrap().input().unwrap()).unwrap();
    assert_eq!(
        (&input["job"], &input["grant_id"], &input["arming"]),
        (&json!("deprovision"), &json!(id), &json!(2))
    );

    // Arming 2 fires and the end system answers: done, and no schedule of the grant is left.
    let outcome = handle_scheduled_job(&app, fired(&client, &group, &next[0]).await)
        .await
        .unwrap();
    assert_eq!(outcome["outcome"], "done");
    let grant = app.store().get_grant(&id).await.unwrap().unwrap();
    assert_eq!(
        grant.deprovisioning.unwrap().state,
        ticketbound::domain::SideEffectState::Done
    );
    assert_eq!(
        provisioner_actions(&provisioner).await,
        ["grant", "revoke", "revoke", "revoke"]
    );
    assert!(
        schedule_names(&client, &group).await.is_empty(),
        "{:?}",
        schedule_names(&client, &group).await
    );
}

#[tokio::test]
async fn the_expiry_handler_ignores_an_ended_grant_and_junk() {
    let clock = ManualClock::now_system();
    let (app, _, _) = aws_test_app(clock.clone(), fast_retry(4)).await;
    let provisioner = provisioner_ok().await;
    let (router, id) = approved_grant(&app, &provisioner, "PT1H").await;
    call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        ALICE,
        None,
    )
    .await;
    let before = app.store().get_grant(&id).await.unwrap();
    clock.advance(Duration::hours(2));
    let outcome = handle_scheduled_job(&app, delivered(&Job::new(JobKind::Expire, &id)))
        .await
        .unwrap();
    assert_eq!(outcome["outcome"], "nothing");
    assert_eq!(app.store().get_grant(&id).await.unwrap(), before);

    let junk = LambdaEvent::new(
        serde_json::json!({"kind": "close_freshservice_ticket", "ticket_id": 123456}),
        Context::default(),
    );
    assert_eq!(
        handle_scheduled_job(&app, junk).await.unwrap()["outcome"],
        "ignored"
    );
    let missing = ticketbound::domain::ids::new_ulid(clock.now_offset());
    let outcome = handle_scheduled_job(&app, delivered(&Job::new(JobKind::Expire, &missing)))
        .await
        .unwrap();
    assert_eq!(outcome["outcome"], "nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_racing_a_revoke_ends_the_grant_once_and_revokes_once() {
    for round in 0..4 {
        let clock = ManualClock::now_system();
        let (app, _, _) = aws_test_app(clock.clone(), fast_retry(4)).await;
        let provisioner = provisioner_ok().await;
        let (router, id) = approved_grant(&app, &provisioner, "PT1H").await;
        clock.advance(Duration::hours(1));
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let expiry = {
            let (app, id, barrier) = (app.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                handle_scheduled_job(&app, delivered(&Job::new(JobKind::Expire, &id)))
                    .await
                    .unwrap()
            })
        };
        let revoke = {
            let (router, id, barrier) = (router.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                call(
                    &router,
                    "POST",
                    &format!("/v1/grants/{id}/revoke"),
                    APPROVER,
                    None,
                )
                .await
                .0
            })
        };
        let (expired, revoked) = (expiry.await.unwrap(), revoke.await.unwrap());
        let one_winner = (expired["outcome"] == "done") != (revoked == StatusCode::OK);
        assert!(
            one_winner,
            "round {round}: expiry {expired}, revoke {revoked}"
        );
        let events = app.store().list_events(&id, 100, None).await.unwrap().items;
        assert_eq!(
            events.iter().filter(|e| e.kind == "ended").count(),
            1,
            "round {round}"
        );
        assert!(
            ticketbound_tests::eventually(std::time::Duration::from_secs(5), || async {
                app.store()
                    .get_grant(&id)
                    .await
                    .unwrap()
                    .unwrap()
                    .deprovisioning
                    .is_some_and(|d| d.state.eq(&ticketbound::domain::SideEffectState::Done))
            })
            .await
        );
        assert_eq!(
            provisioner_actions(&provisioner).await,
            ["grant", "revoke"],
            "round {round}"
        );
    }
}
