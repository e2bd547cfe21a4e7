//! Notifications (issue 13 part 2) on the local stack: the real application over the embedded store and the
//! in-process scheduler (started, so notification jobs fire as they do in `ticketbound-local`), with Slack,
//! Teams and the signed event webhook answered by local wiremock servers as those services answer (200 `ok`,
//! 202, 404 `no_service`, 429 with `Retry-After`, 500, a hang).
//!
//! EventBridge Scheduler and SES on moto are in `notifications_aws.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration as StdDuration, Instant};

use axum::http::StatusCode;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use time::{Duration, OffsetDateTime};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::notify::{ChannelOptions, NotifyChannels, NotifyConfig};
use ticketbound::domain::{AuditEvent, AuditKind, Grant, GrantDuration, IsoDuration, TicketRef};
use ticketbound::ports::{Clock, GrantStore, Job, JobKind, SystemClock};
use ticketbound::service::{Ports, RetryPolicy, Settings, Ticketbound};
use ticketbound_tests::*;

const PORTAL: &str = "https://tb.example.com";
/// The secret part of the Slack webhook URL, the Teams workflow signature and the event webhook's signing
/// secret: none may reach a log line, an error or the API.
const SLACK_TOKEN: &str = "SLACKTOKENzzzz0123456789";
const TEAMS_SIG: &str = "TEAMSSIGyyyy0123456789";
const HOOK_SECRET: &str = "HOOKSECRETxxxx0123456789";

// ------------------------------------------------------------------------------------------- the harness

/// A channel endpoint: records every request (when, headers, body) and answers from a script, then `then`.
#[derive(Clone)]
struct Endpoint {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<ResponseTemplate>>>,
    then: ResponseTemplate,
}

#[derive(Clone)]
struct Seen {
    at: Instant,
    headers: HashMap<String, String>,
    raw: Vec<u8>,
    body: Value,
}

impl Respond for Endpoint {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        self.seen.lock().unwrap().push(Seen {
            at: Instant::now(),
            headers: request
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        v.to_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            raw: request.body.clone(),
            body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
        });
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.then.clone())
    }
}

impl Endpoint {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn endpoint(script: Vec<ResponseTemplate>, then: ResponseTemplate) -> (MockServer, Endpoint) {
    let server = MockServer::start().await;
    let endpoint = Endpoint {
        seen: Arc::default(),
        script: Arc::new(Mutex::new(script.into())),
        then,
    };
    Mock::given(method("POST"))
        .respond_with(endpoint.clone())
        .mount(&server)
        .await;
    (server, endpoint)
}

fn slack_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_string("ok")
}

fn slack_url(server: &MockServer) -> String {
    format!("{}/services/T000/B000/{SLACK_TOKEN}", server.uri())
}

fn teams_url(server: &MockServer) -> String {
    format!(
        "{}/workflows/1a2b/triggers/manual/paths/invoke?api-version=1&sig={TEAMS_SIG}",
        server.uri()
    )
}

struct Stack {
    app: Ticketbound,
    router: axum::Router,
    scheduler: LocalScheduler,
}

/// The application with the notification configuration `config`, built through the composition root, its
/// local scheduler started, and a resource `prod-db` without a provisioner.
async fn stack(config: Value, clock: Arc<dyn Clock>, retry: RetryPolicy) -> Stack {
    let _ = captured_logs();
    let store = embedded_store();
    let scheduler = LocalScheduler::new(store.clone());
    let config = NotifyConfig::parse(&config.to_string()).expect("a valid configuration");
    let notifications = config.settings(Some(PORTAL)).expect("settings");
    let options = ChannelOptions {
        timeout: StdDuration::from_secs(2),
        ..ChannelOptions::new(clock.clone())
    };
    let ports = Ports {
        notifier: Arc::new(NotifyChannels::build(&config, &options).expect("channels")),
        ..test_ports(
            Arc::new(store.clone()),
            Arc::new(scheduler.clone()),
            clock,
            StdDuration::from_secs(2),
        )
    };
    let app = Ticketbound::build(
        ports,
        Settings {
            retry,
            notifications,
            ..Settings::default()
        },
    );
    scheduler
        .start(Arc::new(app.clone()))
        .await
        .expect("scheduler");
    let router = local_router(app.clone());
    let (status, body) = call(
        &router,
        "PUT",
        "/v1/resources/prod-db",
        ADMIN,
        Some(r#"{"name": "Production database", "provisioner": {"kind": "none"}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    Stack {
        app,
        router,
        scheduler,
    }
}

/// `grant.notifications` as the API shows it, keyed by (event, channel).
async fn notifications(router: &axum::Router, id: &str) -> BTreeMap<(String, String), Value> {
    let (status, grant) = call(router, "GET", &format!("/v1/grants/{id}"), ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    grant["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|n| {
            (
                (
                    n["event"].as_str().unwrap().to_owned(),
                    n["channel"].as_str().unwrap().to_owned(),
                ),
                n,
            )
        })
        .collect()
}

/// Waits until the (event, channel) entry satisfies `check`; returns it.
async fn entry_when(
    router: &axum::Router,
    id: &str,
    event: &str,
    channel: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let key = (event.to_owned(), channel.to_owned());
    let mut last = Value::Null;
    let deadline = Instant::now() + StdDuration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(entry) = notifications(router, id).await.remove(&key) {
            if check(&entry) {
                return entry;
            }
            last = entry;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    panic!("{event}/{channel} never got there; last seen: {last}");
}

async fn wait_for(endpoint: &Endpoint, n: usize) {
    assert!(
        eventually(StdDuration::from_secs(15), || async {
            endpoint.count() >= n
        })
        .await,
        "expected {n} requests, got {}",
        endpoint.count()
    );
}

async fn approve(router: &axum::Router, id: &str) -> Value {
    let (status, body) = call(
        router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Every log line of this test binary, at every level.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> Buffer {
    static LOGS: OnceLock<Buffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        buffer
    })
    .clone()
}

/// Checks `X-Ticketbound-Signature: t=<t>,v1=<hex>` by computing HMAC-SHA256(secret, "<t>.<body>") here.
fn signature_is_valid(header: &str, secret: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value.to_owned()),
            Some(("v1", value)) => v1 = Some(value.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes()) == v1
}

// ------------------------------------------------------------------------------------------- the tests

#[tokio::test]
async fn slack_teams_and_the_event_webhook_each_get_one_message_per_event_linking_to_the_grant() {
    let (slack_server, slack) = endpoint(vec![], slack_ok()).await;
    let (teams_server, teams) = endpoint(vec![], ResponseTemplate::new(202)).await;
    let (hook_server, hook) = endpoint(vec![], ResponseTemplate::new(204)).await;
    let s = stack(
        json!({
            "channels": [
                {"id": "slack-access", "kind": "slack", "url": slack_url(&slack_server)},
                {"id": "teams-access", "kind": "teams", "url": teams_url(&teams_server)},
                {"id": "bot", "kind": "webhook", "url": format!("{}/ticketbound", hook_server.uri()), "secret": HOOK_SECRET},
            ],
            "approver_emails": ["access-approvers@example.com"],
        }),
        Arc::new(SystemClock),
        fast_retry(4),
    )
    .await;

    // Each step waits for its message: an event that no longer holds when its job runs is not sent.
    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    for e in [&slack, &teams, &hook] {
        wait_for(e, 1).await;
    }
    approve(&s.router, &id).await;
    for e in [&slack, &teams, &hook] {
        wait_for(e, 2).await;
    }
    let (status, body) = call(
        &s.router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for e in [&slack, &teams, &hook] {
        wait_for(e, 3).await;
    }
    // Nothing more comes.
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let link = format!("{PORTAL}/#/grant/{id}");

    // Slack: text plus blocks, a button to the grant.
    let texts: BTreeSet<String> = slack
        .seen()
        .iter()
        .map(|m| {
            assert_eq!(
                m.body["blocks"][2]["elements"][0]["url"],
                link.as_str(),
                "{}",
                m.body
            );
            assert_eq!(m.body["blocks"][2]["elements"][0]["type"], "button");
            m.body["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        texts,
        BTreeSet::from([
            "alice@example.com asks for access to prod-db".to_owned(),
            "Your access to prod-db was approved".to_owned(),
            "Your access to prod-db ended: you ended it".to_owned(),
        ])
    );
    assert_eq!(slack.count(), 3);

    // Teams: an Adaptive Card 1.4 in a message, opening the grant.
    assert_eq!(teams.count(), 3);
    for m in teams.seen() {
        let attachment = &m.body["attachments"][0];
        assert_eq!(m.body["type"], "message");
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(attachment["content"]["type"], "AdaptiveCard");
        assert_eq!(attachment["content"]["version"], "1.4");
        assert_eq!(attachment["content"]["actions"][0]["url"], link.as_str());
        assert!(
            attachment["content"]["body"][0]["text"]
                .as_str()
                .unwrap()
                .contains("prod-db")
        );
    }

    // The event webhook: signed like the provisioner calls, a stable id per event, the grant, the recipients.
    assert_eq!(hook.count(), 3);
    let mut events = BTreeMap::new();
    for m in hook.seen() {
        assert!(
            signature_is_valid(&m.headers["x-ticketbound-signature"], HOOK_SECRET, &m.raw),
            "the signature verifies: {}",
            m.headers["x-ticketbound-signature"]
        );
        assert!(!signature_is_valid(
            &m.headers["x-ticketbound-signature"],
            "another-secret-0123",
            &m.raw
        ));
        let event = m.body["event"].as_str().unwrap().to_owned();
        assert_eq!(m.body["id"], format!("{id}.{event}"));
        assert_eq!(m.headers["idempotency-key"], format!("{id}.{event}"));
        assert_eq!(m.body["grant"]["id"], id.as_str());
        assert_eq!(m.body["link"], link.as_str());
        assert!(
            m.body["grant"].get("notifications").is_none(),
            "no delivery bookkeeping in the payload"
        );
        events.insert(event, m.body["recipients"].clone());
    }
    assert_eq!(
        events,
        BTreeMap::from([
            (
                "approval_requested".to_owned(),
                json!(["access-approvers@example.com"])
            ),
            ("approved".to_owned(), json!(["alice@example.com"])),
            ("ended".to_owned(), json!(["alice@example.com"])),
        ])
    );

    // On the grant: every (event, channel) done after one attempt.
    let states = notifications(&s.router, &id).await;
    assert_eq!(states.len(), 9, "{states:?}");
    for ((event, channel), n) in &states {
        assert_eq!(n["state"], "done", "{event}/{channel}: {n}");
        assert_eq!(n["attempts"], 1, "{event}/{channel}: {n}");
        assert!(n["sent_at"].is_string(), "{n}");
        assert!(n.get("lease_until").is_none(), "{n}");
    }
    // Every notification schedule is gone once sent.
    let left: Vec<String> = s
        .scheduler
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.contains("-ntf-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_channel_answering_500_is_retried_by_the_job_with_backoff_until_it_takes_the_message() {
    let (server, slack) = endpoint(
        vec![ResponseTemplate::new(500), ResponseTemplate::new(503)],
        slack_ok(),
    )
    .await;
    let s = stack(
        json!({"channels": [{"id": "slack", "kind": "slack", "url": slack_url(&server), "events": ["approved"]}]}),
        Arc::new(SystemClock),
        fast_retry(5),
    )
    .await;
    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    let approved = approve(&s.router, &id).await;
    assert_eq!(approved["status"], "active");

    let entry = entry_when(&s.router, &id, "approved", "slack", |n| {
        n["state"] == "done"
    })
    .await;
    assert_eq!(entry["attempts"], 3, "{entry}");
    assert_eq!(entry["last_error"], Value::Null, "{entry}");
    assert_eq!(slack.count(), 3);
    // Backoff between attempts: the retries are scheduled, not immediate.
    let seen = slack.seen();
    assert!(seen[1].at.duration_since(seen[0].at) >= StdDuration::from_millis(25));
    // The request's event is not one this channel takes: nothing was sent or recorded for it.
    assert!(
        !notifications(&s.router, &id)
            .await
            .contains_key(&("approval_requested".into(), "slack".into()))
    );
    let left: Vec<String> = s
        .scheduler
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.contains("-ntf-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let (server, slack) = endpoint(
        vec![
            ResponseTemplate::new(429)
                .insert_header("retry-after", "2")
                .set_body_string("rate_limited"),
        ],
        slack_ok(),
    )
    .await;
    let s = stack(
        json!({"channels": [{"id": "slack", "kind": "slack", "url": slack_url(&server), "events": ["approved"]}]}),
        Arc::new(SystemClock),
        fast_retry(5),
    )
    .await;
    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    approve(&s.router, &id).await;

    let waiting = entry_when(&s.router, &id, "approved", "slack", |n| {
        n["state"] == "pending" && n["attempts"] == 1 && n["next_attempt_at"].is_string()
    })
    .await;
    assert!(
        waiting["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 429: rate_limited"),
        "{waiting}"
    );
    let next = OffsetDateTime::parse(
        waiting["next_attempt_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        next >= OffsetDateTime::now_utc() + Duration::milliseconds(1_000),
        "{waiting}"
    );

    entry_when(&s.router, &id, "approved", "slack", |n| {
        n["state"] == "done"
    })
    .await;
    let seen = slack.seen();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at.duration_since(seen[0].at);
    assert!(
        waited >= StdDuration::from_millis(1_900),
        "retried after {waited:?}"
    );
}

#[tokio::test]
async fn a_permanent_404_fails_at_once_and_shows_on_the_grant_without_the_url() {
    let (server, slack) = endpoint(
        vec![],
        ResponseTemplate::new(404).set_body_string("no_service"),
    )
    .await;
    let failed_before = ticketbound::telemetry::metric_total("NotificationsFailed");
    let s = stack(
        json!({"channels": [{"id": "slack", "kind": "slack", "url": slack_url(&server), "events": ["approved"]}]}),
        Arc::new(SystemClock),
        fast_retry(5),
    )
    .await;
    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    approve(&s.router, &id).await;

    let entry = entry_when(&s.router, &id, "approved", "slack", |n| {
        n["state"] == "failed"
    })
    .await;
    assert_eq!(entry["attempts"], 1, "not retried: {entry}");
    let error = entry["last_error"].as_str().unwrap();
    assert!(
        error.contains("channel `slack` (Slack) refused the message (HTTP 404: no_service)"),
        "{error}"
    );
    assert!(
        !error.contains(SLACK_TOKEN) && !error.contains("127.0.0.1"),
        "{error}"
    );
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(slack.count(), 1);
    assert!(ticketbound::telemetry::metric_total("NotificationsFailed") >= failed_before + 1.0);
    // The grant itself is unaffected.
    let (_, grant) = call(&s.router, "GET", &format!("/v1/grants/{id}"), ALICE, None).await;
    assert_eq!(grant["status"], "active");
}

#[tokio::test]
async fn an_approval_returns_promptly_while_the_channel_hangs() {
    let (server, _slack) = endpoint(vec![], slack_ok().set_delay(StdDuration::from_secs(30))).await;
    let s = stack(
        json!({"channels": [{"id": "slack", "kind": "slack", "url": slack_url(&server)}]}),
        Arc::new(SystemClock),
        fast_retry(2),
    )
    .await;
    let started = Instant::now();
    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    let requested_in = started.elapsed();
    // The "request waits" message is now hanging on the channel; the approver acts meanwhile.
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    let started = Instant::now();
    let approved = approve(&s.router, &id).await;
    let approved_in = started.elapsed();
    assert_eq!(approved["status"], "active", "{approved}");
    assert!(
        requested_in < StdDuration::from_millis(1_000),
        "the request took {requested_in:?}"
    );
    assert!(
        approved_in < StdDuration::from_millis(1_000),
        "the approval took {approved_in:?}"
    );

    // The hanging channel is bounded by its timeout, retried, then failed, all off the grant's path.
    let entry = entry_when(&s.router, &id, "approved", "slack", |n| {
        n["state"] == "failed"
    })
    .await;
    assert!(
        entry["last_error"]
            .as_str()
            .unwrap()
            .contains("did not answer within"),
        "{entry}"
    );
    assert_eq!(entry["attempts"], 2, "{entry}");
    let (_, grant) = call(&s.router, "GET", &format!("/v1/grants/{id}"), ALICE, None).await;
    assert_eq!(grant["status"], "active");
}

#[tokio::test]
async fn reminders_fire_through_the_local_scheduler_and_go_when_the_grant_ends() {
    let (server, slack) = endpoint(vec![], slack_ok()).await;
    let real = SystemClock.now();
    // Approved "57 s ago" for P1DT1M: the one-day reminder falls 3 s from now in real time (the local
    // scheduler's timers run on the real clock), the one-hour reminder 23 h later.
    let clock = ManualClock::at(real - Duration::seconds(57));
    let s = stack(
        json!({"channels": [{"id": "slack", "kind": "slack", "url": slack_url(&server), "events": ["ending_in_a_day", "ending_in_an_hour", "ended"]}]}),
        Arc::new(clock.clone()),
        fast_retry(4),
    )
    .await;
    let short = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    approve(&s.router, &short).await;
    let id = request_grant(&s.router, ALICE, "prod-db", "P1DT1M").await;
    let approved = approve(&s.router, &id).await;
    let end = OffsetDateTime::parse(
        approved["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();

    let schedules: BTreeMap<String, OffsetDateTime> =
        s.scheduler.pending().await.unwrap().into_iter().collect();
    assert_eq!(
        schedules.get(&format!("tb-{id}-ntf-r1d")),
        Some(&(end - Duration::days(1))),
        "{schedules:?}"
    );
    assert_eq!(
        schedules.get(&format!("tb-{id}-ntf-r1h")),
        Some(&(end - Duration::hours(1))),
        "{schedules:?}"
    );
    assert!(
        !schedules
            .keys()
            .any(|n| n.starts_with(&format!("tb-{short}-ntf-r"))),
        "a grant of a day or less has no reminders: {schedules:?}"
    );

    // The reminder's time comes.
    clock.set(end - Duration::days(1));
    wait_for(&slack, 1).await;
    let reminder = &slack.seen()[0].body;
    assert_eq!(
        reminder["text"], "Your access to prod-db ends in a day",
        "{reminder}"
    );
    assert_eq!(
        reminder["blocks"][2]["elements"][0]["url"],
        format!("{PORTAL}/#/grant/{id}")
    );
    entry_when(&s.router, &id, "ending_in_a_day", "slack", |n| {
        n["state"] == "done"
    })
    .await;

    // Ended early: the "ended" message goes, and the one-hour reminder with it.
    let (status, body) = call(
        &s.router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for(&slack, 2).await;
    assert_eq!(
        slack.seen()[1].body["text"],
        "Your access to prod-db ended: bob@example.com revoked it"
    );
    assert!(
        eventually(StdDuration::from_secs(5), || async {
            !s.scheduler
                .pending()
                .await
                .unwrap()
                .iter()
                .any(|(n, _)| *n == format!("tb-{id}-ntf-r1h"))
        })
        .await,
        "the one-hour reminder's schedule is deleted"
    );
    // Had it fired anyway, it would send nothing for an ended grant.
    let outcome = s
        .app
        .run_job(&Job::notify(
            ticketbound::domain::notification::NotifyEvent::EndingInAnHour,
            &id,
            0,
        ))
        .await
        .unwrap();
    assert_eq!(outcome, ticketbound::service::JobOutcome::Nothing);
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(slack.count(), 2);
}

#[tokio::test]
async fn a_deployment_without_channels_arms_nothing_and_records_nothing() {
    let s = stack(json!({}), Arc::new(SystemClock), fast_retry(4)).await;
    let id = request_grant(&s.router, ALICE, "prod-db", "P3D").await;
    approve(&s.router, &id).await;
    let names: Vec<String> = s
        .scheduler
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(!names.iter().any(|n| n.contains("-ntf-")), "{names:?}");
    let (_, grant) = call(&s.router, "GET", &format!("/v1/grants/{id}"), ALICE, None).await;
    assert!(grant.get("notifications").is_none(), "{grant}");
}

#[tokio::test]
async fn denial_and_deprovisioning_failure_reach_the_requester_and_the_admins() {
    let (hook_server, hook) = endpoint(vec![], ResponseTemplate::new(200)).await;
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&provisioner)
        .await;
    let s = stack(
        json!({
            "channels": [{"id": "bot", "kind": "webhook", "url": format!("{}/hook", hook_server.uri()), "secret": HOOK_SECRET, "events": ["denied", "deprovisioning_failed"]}],
            "admin_emails": ["secops@example.com"],
        }),
        Arc::new(SystemClock),
        fast_retry(2),
    )
    .await;
    let denied = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    let (status, body) = call(
        &s.router,
        "POST",
        &format!("/v1/grants/{denied}/deny"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for(&hook, 1).await;
    assert_eq!(
        hook.seen()[0].body["subject"],
        "Your request for prod-db was denied"
    );
    assert_eq!(
        hook.seen()[0].body["text"],
        "bob@example.com denied your request for prod-db."
    );

    define_webhook_resource(&s.router, "vault", &provisioner.uri()).await;
    let id = request_grant(&s.router, ALICE, "vault", "PT4H").await;
    approve(&s.router, &id).await;
    call(
        &s.router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        APPROVER,
        None,
    )
    .await;
    wait_for(&hook, 2).await;
    let failed = &hook.seen()[1].body;
    assert_eq!(failed["event"], "deprovisioning_failed", "{failed}");
    assert_eq!(failed["recipients"], json!(["secops@example.com"]));
    assert_eq!(failed["grant"]["deprovisioning"]["state"], "failed");
    assert!(
        failed["text"]
            .as_str()
            .unwrap()
            .contains("Remove it by hand"),
        "{failed}"
    );
}

#[tokio::test]
async fn no_channel_url_or_secret_reaches_a_log_line_the_api_or_an_error() {
    let logs = captured_logs();
    let (slack_server, _) =
        endpoint(vec![ResponseTemplate::new(500)], ResponseTemplate::new(404)).await;
    let (teams_server, _) = endpoint(vec![], ResponseTemplate::new(403)).await;
    let (hook_server, _) = endpoint(vec![], ResponseTemplate::new(500)).await;
    let s = stack(
        json!({"channels": [
            {"id": "slack", "kind": "slack", "url": slack_url(&slack_server)},
            {"id": "teams", "kind": "teams", "url": teams_url(&teams_server)},
            {"id": "bot", "kind": "webhook", "url": format!("{}/hook?token={HOOK_SECRET}", hook_server.uri()), "secret": HOOK_SECRET},
        ]}),
        Arc::new(SystemClock),
        fast_retry(2),
    )
    .await;
    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    for channel in ["slack", "teams", "bot"] {
        entry_when(&s.router, &id, "approval_requested", channel, |n| {
            n["state"] == "failed"
        })
        .await;
    }
    let (_, grant) = call(&s.router, "GET", &format!("/v1/grants/{id}"), ADMIN, None).await;
    let shown = grant.to_string();
    let lines = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        lines.contains("notification FAILED"),
        "the log capture works"
    );
    for secret in [SLACK_TOKEN, TEAMS_SIG, HOOK_SECRET] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
        assert!(!lines.contains(secret), "{secret} in the logs");
    }
    // A configuration error names the field, never the value.
    let error = NotifyConfig::parse(
        &json!({"channels": [{"id": "s", "kind": "slack", "url": format!("http://hooks.example.com/{SLACK_TOKEN}")}]}).to_string(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("channel `s`: `url` must use https://"),
        "{error}"
    );
    assert!(!error.contains(SLACK_TOKEN), "{error}");
}

#[tokio::test]
async fn the_local_server_reads_its_channels_from_the_secret_file_and_refuses_a_bad_one() {
    let dir = temp_dir("notify-local");
    let file = dir.join("secrets.json");
    // No file, and a file without the key: no channels.
    let (none, settings) =
        ticketbound::adapters::notify::local_notifications(&file, None, Arc::new(SystemClock))
            .unwrap();
    assert!(none.ids().is_empty());
    assert_eq!(settings.portal_url, None);
    std::fs::write(
        &file,
        json!({
            "jira-main": {"credentials": {"kind": "api_token", "api_token": "x"}, "webhook_secrets": []},
            "_notifications": {"channels": [{"id": "slack", "kind": "slack", "url": format!("https://hooks.slack.com/services/{SLACK_TOKEN}")}], "approver_emails": ["a@example.com"]},
        })
        .to_string(),
    )
    .unwrap();
    let (channels, settings) = ticketbound::adapters::notify::local_notifications(
        &file,
        Some("http://127.0.0.1:8080"),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert_eq!(channels.ids(), ["slack"]);
    assert_eq!(settings.approver_emails, ["a@example.com"]);
    assert_eq!(settings.link("X"), "http://127.0.0.1:8080/#/grant/X");

    // The local server refuses to start on a bad channel, saying which and why.
    std::fs::write(
        &file,
        json!({"_notifications": {"channels": [{"id": "slack", "kind": "slack", "url": format!("http://hooks.slack.com/services/{SLACK_TOKEN}")}]}}).to_string(),
    )
    .unwrap();
    let error = match ticketbound::wiring::local_app(&dir, Settings::default()) {
        Ok(_) => panic!("a bad channel must stop the start"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("channel `slack`: `url` must use https://"),
        "{error}"
    );
    assert!(!error.contains(SLACK_TOKEN), "{error}");
    // E-mail needs SES: refused locally, with the reason.
    std::fs::write(
        &file,
        json!({"_notifications": {"channels": [{"id": "mail", "kind": "email", "sender": "tb@example.com"}]}}).to_string(),
    )
    .unwrap();
    let error = ticketbound::adapters::notify::local_notifications(
        &file,
        Some("http://127.0.0.1:8080"),
        Arc::new(SystemClock),
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(error.contains("Amazon SES"), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}

// ------------------------------------------------------------------------------------------- the race

/// An active grant of `requester` bound to `ticket`, approved two seconds ago for one second: its bound is
/// already reached.
async fn seed_expired_bound_grant(
    store: &dyn GrantStore,
    requester: String,
    ticket: TicketRef,
) -> String {
    let then = OffsetDateTime::now_utc() - Duration::seconds(2);
    let then = then.replace_millisecond(then.millisecond()).unwrap();
    let id = ticketbound::domain::ids::new_ulid(then);
    let grant = Grant::request(
        id.clone(),
        requester,
        "prod-db".into(),
        "racing".into(),
        GrantDuration::Bounded(IsoDuration::parse("PT1S").unwrap()),
        Some(ticket),
        then,
    );
    let requested = AuditEvent::of(
        &grant,
        AuditKind::Requested,
        Some(&grant.requester),
        then,
        Value::Null,
    );
    store.insert_grant(&grant, &requested).await.unwrap();
    let active = grant.approve(APPROVER.0, then).unwrap();
    let approved = AuditEvent::of(
        &active,
        AuditKind::Approved,
        Some(APPROVER.0),
        then,
        Value::Null,
    );
    store
        .update_grant(&active, grant.expected(), Some(&approved))
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_webhook_the_schedule_and_a_person_ending_one_grant_at_once_send_one_ended_message_per_channel()
 {
    let trials: usize = std::env::var("NOTIFY_RACE_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let (slack_server, slack) = endpoint(vec![], slack_ok()).await;
    let (hook_server, hook) = endpoint(vec![], ResponseTemplate::new(200)).await;
    let _ = captured_logs();

    // The application as the local server builds it, with a Jira Cloud connection for the closing webhook.
    let dir = temp_dir("notify-race");
    let store = EmbeddedStore::open(&dir.join("ticketbound.db")).unwrap();
    let scheduler = LocalScheduler::new(store.clone());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = NotifyConfig::parse(
        &json!({"channels": [
            {"id": "slack", "kind": "slack", "url": slack_url(&slack_server), "events": ["ended"]},
            {"id": "bot", "kind": "webhook", "url": format!("{}/hook", hook_server.uri()), "secret": HOOK_SECRET, "events": ["ended"]},
        ]})
        .to_string(),
    )
    .unwrap();
    let ports = Ports {
        notifier: Arc::new(
            NotifyChannels::build(&config, &ChannelOptions::new(clock.clone())).unwrap(),
        ),
        ..ticket_ports(
            Arc::new(store.clone()),
            Arc::new(scheduler.clone()),
            clock,
            &dir.join("secrets.json"),
            quick_policy(),
        )
    };
    let app = Ticketbound::build(
        ports,
        Settings {
            retry: fast_retry(4),
            notifications: config.settings(Some(PORTAL)).unwrap(),
            ..Settings::default()
        },
    );
    scheduler.start(Arc::new(app.clone())).await.unwrap();
    let router = local_router(app.clone());
    let (status, created) = call(
        &router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(&json!({"id": "jira-main", "kind": "jira_cloud", "base_url": "http://127.0.0.1:9", "email": "bot@acme.com", "api_token": "jira-token-0123456789"}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["webhook_secret"].as_str().unwrap().to_owned();
    call(
        &router,
        "PUT",
        "/v1/resources/prod-db",
        ADMIN,
        Some(r#"{"name": "Production database", "provisioner": {"kind": "none"}}"#),
    )
    .await;

    let mut ids = Vec::with_capacity(trials);
    for trial in 0..trials {
        let context = format!("seed {seed}, trial {trial}");
        let key = format!("RACE-{trial}");
        let ticket = TicketRef {
            connection: "jira-main".into(),
            key: key.clone(),
        };
        let id =
            seed_expired_bound_grant(&store, format!("engineer{trial}@example.com"), ticket).await;
        // The real Jira Cloud capture, moved to Done (as races.rs builds it).
        let mut closing: Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/fixtures/jira-cloud-issue-updated-status-inprogress.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        closing["issue"]["key"] = key.clone().into();
        // The event follows the grant bound before it (a closing never ends a grant bound after its event).
        closing["timestamp"] = (OffsetDateTime::now_utc().unix_timestamp() * 1000).into();
        closing["issue"]["fields"]["status"] = json!({"name": "Done", "id": "10001", "statusCategory": {"id": 3, "key": "done", "name": "Done"}});
        let body = closing.to_string().into_bytes();
        let signature = ticketbound::domain::webhook_auth::hub_signature(&secret, &body);

        let mut order = [0usize, 1, 2];
        rng.shuffle(&mut order);
        let barrier = Arc::new(tokio::sync::Barrier::new(order.len()));
        let mut racers = Vec::new();
        for racer in order {
            let (barrier, router, app) = (barrier.clone(), router.clone(), app.clone());
            let (body, signature, id, delivery) = (
                body.clone(),
                signature.clone(),
                id.clone(),
                format!("race-{trial}"),
            );
            let yields = rng.usize(0..20);
            racers.push(tokio::spawn(async move {
                barrier.wait().await;
                for _ in 0..yields {
                    tokio::task::yield_now().await;
                }
                match racer {
                    // The closing webhook.
                    0 => {
                        use tower::ServiceExt;
                        let request = axum::http::Request::builder()
                            .method("POST")
                            .uri("/webhooks/jira/jira-main")
                            .header("content-type", "application/json")
                            .header("x-hub-signature", signature)
                            .header("x-atlassian-webhook-identifier", delivery)
                            .body(axum::body::Body::from(body))
                            .unwrap();
                        let status = router.oneshot(request).await.unwrap().status();
                        assert_eq!(status, StatusCode::OK);
                    }
                    // The expiry schedule firing.
                    1 => {
                        app.run_job(&Job::new(JobKind::Expire, &id)).await.unwrap();
                    }
                    // An approver revoking.
                    _ => {
                        let (status, body) = call(
                            &router,
                            "POST",
                            &format!("/v1/grants/{id}/revoke"),
                            APPROVER,
                            None,
                        )
                        .await;
                        assert!(
                            status == StatusCode::OK
                                || (status == StatusCode::CONFLICT
                                    && body["error"]["code"] == "grant_already_closed"),
                            "{status}: {body}"
                        );
                    }
                }
            }));
        }
        for racer in racers {
            racer
                .await
                .unwrap_or_else(|e| panic!("{context}: a racer failed: {e}"));
        }
        let grant = store.get_grant(&id).await.unwrap().unwrap();
        assert_eq!(grant.status.as_str(), "ended", "{context}");
        ids.push(id);
    }

    // Every ending's message arrives, once per channel and grant.
    let per_grant = |endpoint: &Endpoint, grant_of: &dyn Fn(&Value) -> Option<String>| {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for m in endpoint.seen() {
            *counts
                .entry(grant_of(&m.body).expect("names its grant"))
                .or_default() += 1;
        }
        counts
    };
    let slack_grant = |b: &Value| {
        b["blocks"][2]["elements"][0]["url"]
            .as_str()
            .and_then(|u| u.rsplit('/').next())
            .map(str::to_owned)
    };
    let hook_grant = |b: &Value| {
        assert_eq!(b["event"], "ended");
        b["grant"]["id"].as_str().map(str::to_owned)
    };
    assert!(
        eventually(StdDuration::from_secs(60), || async {
            slack.count() >= trials && hook.count() >= trials
        })
        .await,
        "seed {seed}: {} Slack and {} webhook messages for {trials} endings",
        slack.count(),
        hook.count()
    );
    // Late duplicates would come within the retry lease; wait past a few job rounds.
    tokio::time::sleep(StdDuration::from_millis(1_500)).await;
    for (name, counts) in [
        ("slack", per_grant(&slack, &slack_grant)),
        ("bot", per_grant(&hook, &hook_grant)),
    ] {
        for id in &ids {
            assert_eq!(
                counts.get(id).copied(),
                Some(1),
                "seed {seed}: channel {name}, grant {id}: {counts:?}"
            );
        }
        assert_eq!(counts.len(), trials, "seed {seed}: channel {name}");
    }
    for id in &ids {
        let grant = serde_json::to_value(store.get_grant(id).await.unwrap().unwrap()).unwrap();
        let entries = grant["notifications"].as_array().unwrap();
        assert_eq!(entries.len(), 2, "{grant}");
        for entry in entries {
            assert_eq!(entry["event"], "ended");
            assert_eq!(entry["state"], "done", "{entry}");
            assert_eq!(entry["attempts"], 1, "{entry}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decision_racing_the_request_messages_bookkeeping_always_decides() {
    let (server, _slack) = endpoint(vec![], slack_ok()).await;
    let s = stack(
        json!({"channels": [
            {"id": "slack", "kind": "slack", "url": slack_url(&server), "events": ["approval_requested"]},
            {"id": "slack2", "kind": "slack", "url": slack_url(&server), "events": ["approval_requested"]},
        ]}),
        Arc::new(SystemClock),
        fast_retry(4),
    )
    .await;
    let job_of = |id: &str| {
        Job::notify(
            ticketbound::domain::notification::NotifyEvent::ApprovalRequested,
            id,
            0,
        )
    };
    // Approvals and denials alternate: each loses its conditional write to the bookkeeping now and then, and
    // must then decide again rather than answer 409.
    for round in 0..60 {
        let (verb, decided) = if round % 2 == 0 {
            ("approve", "active")
        } else {
            ("deny", "denied")
        };
        let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
        // The scheduler's own run of the job, two more deliveries of it, and the approver, all at once: the
        // job's claims and records write the pending grant while the approval's conditional write lands.
        let (router, app, job) = (s.router.clone(), s.app.clone(), job_of(&id));
        let jobs: Vec<_> = (0..2)
            .map(|_| {
                let (app, job) = (app.clone(), job.clone());
                tokio::spawn(async move { app.run_job(&job).await })
            })
            .collect();
        let deciding = {
            let id = id.clone();
            tokio::spawn(async move {
                call(
                    &router,
                    "POST",
                    &format!("/v1/grants/{id}/{verb}"),
                    APPROVER,
                    None,
                )
                .await
            })
        };
        let (status, body) = deciding.await.unwrap();
        assert_eq!(status, StatusCode::OK, "round {round} ({verb}): {body}");
        assert_eq!(body["status"], decided, "round {round} ({verb}): {body}");
        for j in jobs {
            j.await.unwrap().unwrap();
        }
    }
}

#[tokio::test]
async fn decision_messages_carry_what_the_decider_said() {
    let (hook_server, hook) = endpoint(vec![], ResponseTemplate::new(204)).await;
    let s = stack(
        json!({"channels": [
            {"id": "bot", "kind": "webhook", "url": format!("{}/ticketbound", hook_server.uri()), "secret": HOOK_SECRET},
        ]}),
        Arc::new(SystemClock),
        fast_retry(4),
    )
    .await;
    let said = |event: &str| {
        hook.seen()
            .into_iter()
            .find(|m| m.body["event"] == event)
            .map(|m| (m.body["text"].clone(), m.body["facts"]["Comment"].clone()))
    };

    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    wait_for(&hook, 1).await;
    let reply = grants::decide(&s.router, APPROVER, &id, "approve", Some("go ahead")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    wait_for(&hook, 2).await;
    let reply = grants::decide(&s.router, APPROVER, &id, "revoke", Some("incident over")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    wait_for(&hook, 3).await;

    let (text, fact) = said("approved").expect("an approved message");
    assert!(
        text.as_str().unwrap().ends_with("They said: \"go ahead\"."),
        "{text}"
    );
    assert_eq!(fact, "go ahead");
    let (text, fact) = said("ended").expect("an ended message");
    assert!(
        text.as_str()
            .unwrap()
            .contains("bob@example.com revoked it")
            && text
                .as_str()
                .unwrap()
                .contains("They said: \"incident over\"."),
        "{text}"
    );
    assert_eq!(fact, "incident over");
    let (text, fact) = said("approval_requested").expect("the request's message");
    assert!(!text.as_str().unwrap().contains("They said"), "{text}");
    assert!(fact.is_null());
}
