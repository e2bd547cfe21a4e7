//! Notifications as the Lambda functions run them (issue 13 part 2): DynamoDB and EventBridge Scheduler on
//! moto, each notification job fired by reading its schedule's `Input` from moto and feeding it to the expiry
//! function's handler through `LambdaEvent`, e-mail through SES v2 on moto (asserted through moto's record of
//! sent messages), and the channels read from Secrets Manager at start. Slack is a local wiremock server.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::http::StatusCode;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

use ticketbound::adapters::notify::{ChannelOptions, NotifyChannels, NotifyConfig};
use ticketbound::adapters::scheduler::EventBridgeScheduler;
use ticketbound::handlers::handle_scheduled_job;
use ticketbound::ports::Clock;
use ticketbound::service::{Ports, Settings, Ticketbound};
use ticketbound_tests::*;

const PORTAL: &str = "https://tb.example.com";
const SLACK_TOKEN: &str = "SLACKTOKENawsq0123456789";

/// A Slack endpoint answering from a script, then 200 `ok`; counts what it received.
#[derive(Clone, Default)]
struct Slack {
    bodies: Arc<Mutex<Vec<Value>>>,
    script: Arc<Mutex<VecDeque<ResponseTemplate>>>,
}

impl Respond for Slack {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        self.bodies
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&request.body).unwrap_or(Value::Null));
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| ResponseTemplate::new(200).set_body_string("ok"))
    }
}

impl Slack {
    async fn start(script: Vec<ResponseTemplate>) -> (MockServer, Self) {
        let server = MockServer::start().await;
        let slack = Self {
            bodies: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
        };
        Mock::given(method("POST"))
            .respond_with(slack.clone())
            .mount(&server)
            .await;
        (server, slack)
    }
    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

struct AwsStack {
    app: Ticketbound,
    router: axum::Router,
    client: aws_sdk_scheduler::Client,
    group: String,
}

/// The application as `wiring::aws_app` builds it (DynamoDB, EventBridge Scheduler and SES on moto), with the
/// notification configuration `config`, the clock `clock`, and a resource `prod-db` without a provisioner.
async fn aws_stack(config: Value, clock: ManualClock) -> AwsStack {
    let sdk = moto_config().await;
    let (scheduler, client, group) = eventbridge_scheduler().await;
    let config = NotifyConfig::parse(&config.to_string()).expect("configuration");
    let options = ChannelOptions {
        timeout: StdDuration::from_secs(2),
        ses: Some(aws_sdk_sesv2::Client::new(&sdk)),
        ..ChannelOptions::new(Arc::new(clock.clone()))
    };
    let ports = Ports {
        notifier: Arc::new(NotifyChannels::build(&config, &options).expect("channels")),
        ..test_ports(
            Arc::new(dynamo_store().await),
            Arc::new(scheduler),
            Arc::new(clock),
            StdDuration::from_secs(2),
        )
    };
    let app = Ticketbound::build(
        ports,
        Settings {
            retry: fast_retry(4),
            notifications: config.settings(Some(PORTAL)).expect("settings"),
            ..Settings::default()
        },
    );
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
    AwsStack {
        app,
        router,
        client,
        group,
    }
}

impl AwsStack {
    /// The grant's notification schedules (`tb-<id>-ntf-...`), every arming.
    async fn notification_schedules(&self, id: &str) -> Vec<String> {
        schedule_names(&self.client, &self.group)
            .await
            .into_iter()
            .filter(|n| n.starts_with(&format!("tb-{id}-ntf-")))
            .collect()
    }

    /// The schedule's `at(...)` expression.
    async fn expression(&self, name: &str) -> String {
        self.client
            .get_schedule()
            .name(name)
            .group_name(&self.group)
            .send()
            .await
            .unwrap_or_else(|e| panic!("schedule {name}: {e:?}"))
            .schedule_expression()
            .unwrap()
            .to_owned()
    }

    /// Fires schedule `name` as EventBridge Scheduler does: its stored `Input`, placeholders substituted, to
    /// the expiry function's handler.
    async fn fire(&self, name: &str) -> Value {
        let schedule = self
            .client
            .get_schedule()
            .name(name)
            .group_name(&self.group)
            .send()
            .await
            .unwrap_or_else(|e| panic!("schedule {name}: {e:?}"));
        let input = schedule
            .target()
            .unwrap()
            .input()
            .unwrap()
            .replace("<aws.scheduler.scheduled-time>", "2026-03-01T09:00:00Z")
            .replace("<aws.scheduler.attempt-number>", "1");
        let event = LambdaEvent::new(serde_json::from_str(&input).unwrap(), Context::default());
        handle_scheduled_job(&self.app, event)
            .await
            .expect("the job succeeds")
    }

    async fn entry(&self, id: &str, event: &str, channel: &str) -> Value {
        let (status, grant) = call(
            &self.router,
            "GET",
            &format!("/v1/grants/{id}"),
            ADMIN,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{grant}");
        grant["notifications"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|n| n["event"] == event && n["channel"] == channel)
                    .cloned()
            })
            .unwrap_or_else(|| panic!("no {event}/{channel} on {grant}"))
    }
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

fn parse_time(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

/// The time of an `at(YYYY-MM-DDTHH:MM:SS)` expression.
fn at_time(expression: &str) -> OffsetDateTime {
    let inner = expression.trim_start_matches("at(").trim_end_matches(')');
    parse_time(&format!("{inner}Z"))
}

#[tokio::test]
async fn on_eventbridge_a_throttled_channel_is_retried_under_a_new_arming_after_its_retry_after() {
    let (server, slack) = Slack::start(vec![
        ResponseTemplate::new(429).insert_header("retry-after", "120"),
    ])
    .await;
    let clock = ManualClock::now_system();
    let s = aws_stack(
        json!({"channels": [{"id": "slack", "kind": "slack", "url": format!("{}/services/T/B/{SLACK_TOKEN}", server.uri()), "events": ["approval_requested"]}]}),
        clock.clone(),
    )
    .await;

    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    // The request armed one schedule for its event, at once; nothing was sent in the request's path.
    assert_eq!(
        s.notification_schedules(&id).await,
        [format!("tb-{id}-ntf-req")]
    );
    assert!(slack.bodies().is_empty());

    let outcome = s.fire(&format!("tb-{id}-ntf-req")).await;
    assert_eq!(outcome["outcome"], "done");
    assert_eq!(slack.bodies().len(), 1);
    let waiting = s.entry(&id, "approval_requested", "slack").await;
    assert_eq!(waiting["state"], "pending", "{waiting}");
    assert_eq!(waiting["attempts"], 1, "{waiting}");
    assert_eq!(waiting["arming"], 1, "{waiting}");
    assert!(
        parse_time(waiting["next_attempt_at"].as_str().unwrap())
            >= clock.now() + Duration::seconds(120),
        "{waiting}"
    );
    // One schedule: the retry, under a new name, no sooner than the Retry-After.
    let retry = format!("tb-{id}-ntf-req-1");
    assert_eq!(
        s.notification_schedules(&id).await,
        std::slice::from_ref(&retry)
    );
    // Measured from the test's own clock (the retry is computed from it), never from a second reading of the
    // real one: a busy machine may take seconds between the two. `at()` is whole seconds, rounded up.
    assert!(at_time(&s.expression(&retry).await) >= clock.now() + Duration::seconds(119));

    let outcome = s.fire(&retry).await;
    assert_eq!(outcome["outcome"], "done");
    let done = s.entry(&id, "approval_requested", "slack").await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(slack.bodies().len(), 2);
    assert!(s.notification_schedules(&id).await.is_empty());

    // EventBridge delivers at least once: the same Input again sends nothing.
    let again = handle_scheduled_job(
        &s.app,
        LambdaEvent::new(
            serde_json::from_str(&EventBridgeScheduler::input(
                &ticketbound::ports::Job::notify(
                    ticketbound::domain::notification::NotifyEvent::ApprovalRequested,
                    &id,
                    1,
                ),
            ))
            .unwrap(),
            Context::default(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(again["outcome"], "nothing");
    assert_eq!(slack.bodies().len(), 2);
}

#[tokio::test]
async fn on_eventbridge_reminders_are_one_time_schedules_a_day_and_an_hour_before_the_bound() {
    let (server, slack) = Slack::start(vec![]).await;
    let clock = ManualClock::now_system();
    let s = aws_stack(
        json!({"channels": [{"id": "slack", "kind": "slack", "url": format!("{}/services/T/B/{SLACK_TOKEN}", server.uri()), "events": ["ending_in_a_day", "ending_in_an_hour"]}]}),
        clock.clone(),
    )
    .await;
    let short = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    approve(&s.router, &short).await;
    assert!(
        s.notification_schedules(&short).await.is_empty(),
        "no reminder for a grant of a day or less"
    );

    let id = request_grant(&s.router, ALICE, "prod-db", "P2D").await;
    let approved = approve(&s.router, &id).await;
    let end = parse_time(approved["expires_at"].as_str().unwrap());
    let (day, hour) = (format!("tb-{id}-ntf-r1d"), format!("tb-{id}-ntf-r1h"));
    assert_eq!(
        s.notification_schedules(&id).await,
        [day.clone(), hour.clone()]
    );
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        s.expression(&day).await,
        EventBridgeScheduler::expression(end - Duration::days(1), now)
    );
    assert_eq!(
        s.expression(&hour).await,
        EventBridgeScheduler::expression(end - Duration::hours(1), now)
    );

    // A day before the bound the schedule fires.
    clock.set(end - Duration::days(1));
    assert_eq!(s.fire(&day).await["outcome"], "done");
    let sent = slack.bodies();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["text"], "Your access to prod-db ends in a day");
    assert_eq!(
        sent[0]["blocks"][2]["elements"][0]["url"],
        format!("{PORTAL}/#/grant/{id}")
    );
    assert_eq!(
        s.entry(&id, "ending_in_a_day", "slack").await["state"],
        "done"
    );

    // Ended before the hour: its reminder fires for nothing.
    let (status, body) = call(
        &s.router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    clock.set(end - Duration::hours(1));
    assert_eq!(s.fire(&hour).await["outcome"], "nothing");
    assert_eq!(slack.bodies().len(), 1);
}

/// The e-mails moto's SES recorded whose body mentions `needle`: (source, to, subject, body).
async fn sent_mail(needle: &str) -> Vec<(String, Vec<String>, String, String)> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("moto");
    let data: Value = reqwest::get(format!("{endpoint}/moto-api/data.json"))
        .await
        .expect("moto's model data")
        .json()
        .await
        .expect("JSON");
    data["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["body"].as_str().is_some_and(|b| b.contains(needle)))
        .map(|m| {
            (
                m["source"].as_str().unwrap_or_default().to_owned(),
                m["destinations"]["ToAddresses"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_owned())
                    .collect(),
                m["subject"].as_str().unwrap_or_default().to_owned(),
                m["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn email_through_ses_on_moto_reaches_the_approvers_and_then_the_requester_with_the_link() {
    let sdk = moto_config().await;
    let sender = "ticketbound@notify.example.com";
    aws_sdk_sesv2::Client::new(&sdk)
        .create_email_identity()
        .email_identity(sender)
        .send()
        .await
        .expect("verify the sender on moto");
    let s = aws_stack(
        json!({
            "channels": [{"id": "email", "kind": "email", "sender": format!("Ticketbound <{sender}>")}],
            // The requester is listed too, and still never asked to approve their own request.
            "approver_emails": ["access-approvers@example.com", "alice@example.com"],
        }),
        ManualClock::now_system(),
    )
    .await;
    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    let link = format!("{PORTAL}/#/grant/{id}");
    assert_eq!(s.fire(&format!("tb-{id}-ntf-req")).await["outcome"], "done");
    approve(&s.router, &id).await;
    assert_eq!(s.fire(&format!("tb-{id}-ntf-apr")).await["outcome"], "done");

    let mut mail = sent_mail(&link).await;
    mail.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(mail.len(), 2, "{mail:?}");
    let (source, to, subject, body) = &mail[1];
    assert_eq!(source, &format!("Ticketbound <{sender}>"));
    assert_eq!(to, &["access-approvers@example.com"]);
    assert_eq!(subject, "alice@example.com asks for access to prod-db");
    assert!(
        body.contains("Approve or deny it in Ticketbound") && body.contains(&link),
        "{body}"
    );
    let (_, to, subject, body) = &mail[0];
    assert_eq!(to, &["alice@example.com"]);
    assert_eq!(subject, "Your access to prod-db was approved");
    assert!(
        body.contains("bob@example.com approved your request") && body.contains(&link),
        "{body}"
    );
    assert_eq!(s.entry(&id, "approved", "email").await["state"], "done");
}

#[tokio::test]
async fn an_unverified_sender_fails_permanently_and_shows_on_the_grant() {
    let s = aws_stack(
        json!({"channels": [{"id": "email", "kind": "email", "sender": "ticketbound@unverified.example.net", "events": ["approved"]}]}),
        ManualClock::now_system(),
    )
    .await;
    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    approve(&s.router, &id).await;
    assert_eq!(s.fire(&format!("tb-{id}-ntf-apr")).await["outcome"], "done");
    let entry = s.entry(&id, "approved", "email").await;
    assert_eq!(entry["state"], "failed", "{entry}");
    assert_eq!(entry["attempts"], 1, "{entry}");
    assert!(
        entry["last_error"]
            .as_str()
            .unwrap()
            .contains("MessageRejected"),
        "{entry}"
    );
    assert!(s.notification_schedules(&id).await.is_empty());
}

#[tokio::test]
async fn the_lambda_functions_read_their_channels_from_secrets_manager_at_start() {
    let sdk = moto_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("ticketbound/_notifications-{}", unique("n"));
    secrets
        .create_secret()
        .name(&name)
        .secret_string(
            json!({"channels": [{"id": "slack", "kind": "slack", "url": format!("https://hooks.slack.com/services/T/B/{SLACK_TOKEN}")}, {"id": "mail", "kind": "email", "sender": "tb@example.com"}], "admin_emails": ["secops@example.com"]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::now_system());
    let (channels, settings) = ticketbound::adapters::notify::aws_notifications(
        &sdk,
        Some(&name),
        Some(PORTAL),
        clock.clone(),
    )
    .await
    .unwrap();
    assert_eq!(channels.ids(), ["slack", "mail"]);
    assert_eq!(settings.admin_emails, ["secops@example.com"]);

    // No secret named: no channels, no calls.
    let (none, _) =
        ticketbound::adapters::notify::aws_notifications(&sdk, None, None, clock.clone())
            .await
            .unwrap();
    assert!(none.ids().is_empty());

    // A bad channel, a missing PORTAL_URL and a missing secret stop the start with a reason, never a value.
    secrets
        .put_secret_value()
        .secret_id(&name)
        .secret_string(json!({"channels": [{"id": "slack", "kind": "slack", "url": format!("http://hooks.slack.com/services/T/B/{SLACK_TOKEN}")}]}).to_string())
        .send()
        .await
        .unwrap();
    for (secret, portal, expected) in [
        (
            name.clone(),
            Some(PORTAL),
            "channel `slack`: `url` must use https://",
        ),
        (
            format!("{name}-missing"),
            Some(PORTAL),
            "ResourceNotFoundException",
        ),
    ] {
        let error = ticketbound::adapters::notify::aws_notifications(
            &sdk,
            Some(&secret),
            portal,
            clock.clone(),
        )
        .await
        .err()
        .expect("refused")
        .to_string();
        assert!(error.contains(expected), "{error}");
        assert!(!error.contains(SLACK_TOKEN), "{error}");
    }
    secrets
        .put_secret_value()
        .secret_id(&name)
        .secret_string(json!({"channels": [{"id": "slack", "kind": "slack", "url": format!("https://hooks.slack.com/services/T/B/{SLACK_TOKEN}")}]}).to_string())
        .send()
        .await
        .unwrap();
    let error = ticketbound::adapters::notify::aws_notifications(&sdk, Some(&name), None, clock)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("PORTAL_URL is not set"), "{error}");
}
