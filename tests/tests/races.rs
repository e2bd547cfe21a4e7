//! Randomized races on one grant (issue 9, DESIGN §2): the Jira closing webhook, a duplicate delivery of it (same
//! `X-Atlassian-Webhook-Identifier`), the expiry job with the grant's bound already reached, and a person
//! revoking, started together behind a barrier in a seeded random order with random offsets, 1,000 times on the
//! embedded store kept in a file, on a multi-thread runtime. Every trial must end the grant exactly once: one
//! `ended` audit event, one end reason that agrees with who says they ended it, one `revoke` call to the
//! provisioner's HTTP endpoint, and deprovisioning `done`.
//!
//! `RACE_SEED` replays a run (the seed is printed with every failure); `RACE_TRIALS` changes the count.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use time::Duration;
use tower::ServiceExt;
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

use ticketbound::domain::webhook_auth::hub_signature;
use ticketbound::domain::{AuditEvent, AuditKind, Grant, GrantDuration, IsoDuration, TicketRef};
use ticketbound::ports::{GrantStore, Job, JobKind};
use ticketbound_tests::{ADMIN, APPROVER, define_webhook_resource};

/// A provisioner endpoint that counts the calls it gets per (grant id, action).
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<HashMap<(String, String), usize>>>);

impl Respond for Calls {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        if let Ok(body) = serde_json::from_slice::<Value>(&request.body) {
            let key = (
                body["grant"]["id"].as_str().unwrap_or_default().to_owned(),
                body["action"].as_str().unwrap_or_default().to_owned(),
            );
            *self.0.lock().expect("lock").entry(key).or_default() += 1;
        }
        ResponseTemplate::new(200)
    }
}

impl Calls {
    fn revokes(&self, grant: &str) -> usize {
        self.0
            .lock()
            .expect("lock")
            .get(&(grant.to_owned(), "revoke".to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// An active grant of `requester` on `resource`, bound to `ticket`, approved two seconds ago for one second: its
/// bound is already reached when the trial starts.
async fn seed_expired_bound_grant(
    store: &dyn GrantStore,
    requester: String,
    resource: &str,
    ticket: TicketRef,
) -> String {
    let then = time::OffsetDateTime::now_utc() - Duration::seconds(2);
    let then = then.replace_millisecond(then.millisecond()).expect("ms");
    let duration = GrantDuration::Bounded(IsoDuration::parse("PT1S").expect("a duration"));
    let id = ticketbound::domain::ids::new_ulid(then);
    let grant = Grant::request(
        id.clone(),
        requester,
        resource.to_owned(),
        "racing".into(),
        duration,
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
    store
        .insert_grant(&grant, &requested)
        .await
        .expect("insert");
    let active = grant.approve(APPROVER.0, then).expect("approve");
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
        .expect("approve");
    id
}

/// What each racer saw.
#[derive(Debug)]
enum Saw {
    Webhook(StatusCode, Value),
    Expiry(Result<Value, String>),
    Revoke(StatusCode, Value),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closing_its_duplicate_the_expiry_job_and_a_revoke_end_a_grant_exactly_once_in_every_trial()
 {
    let seed: u64 = std::env::var("RACE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let trials: usize = std::env::var("RACE_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    let mut rng = fastrand::Rng::with_seed(seed);
    let t = support::spawn_app_on_disk(support::quick_policy()).await;
    let connection = json!({"id": "jira-main", "kind": "jira_cloud", "base_url": "http://127.0.0.1:9", "email": "bot@acme.com", "api_token": "jira-token-0123456789"});
    let created = t
        .call("POST", "/v1/connections", ADMIN, Some(connection))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let secret = created.json["webhook_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let provisioner = MockServer::start().await;
    let calls = Calls::default();
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(calls.clone())
        .mount(&provisioner)
        .await;
    define_webhook_resource(&t.router, "vault", &provisioner.uri()).await;

    let mut winners: HashMap<String, usize> = HashMap::new();
    let mut duplicates_seen_as_such = 0;
    for trial in 0..trials {
        let context = format!("seed {seed} (RACE_SEED={seed} replays it), trial {trial}");
        let key = format!("RACE-{trial}");
        let ticket = TicketRef {
            connection: "jira-main".into(),
            key: key.clone(),
        };
        // One requester per trial, so rule 8 never skips the revocation.
        let id = seed_expired_bound_grant(
            &t.store,
            format!("engineer{trial}@example.com"),
            "vault",
            ticket,
        )
        .await;
        let mut closing = serde_json::from_str::<Value>(
            &std::fs::read_to_string(format!(
                "{}/fixtures/jira-cloud-issue-updated-status-inprogress.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .expect("fixture"),
        )
        .expect("JSON");
        closing["issue"]["key"] = key.clone().into();
        // The event follows the grant bound before it (a closing never ends a grant bound after its event).
        closing["timestamp"] = (time::OffsetDateTime::now_utc().unix_timestamp() * 1000).into();
        closing["issue"]["fields"]["status"] = json!({"name": "Done", "id": "10001", "statusCategory": {"id": 3, "key": "done", "name": "Done"}});
        let body = closing.to_string().into_bytes();
        let signature = hub_signature(&secret, &body);
        let delivery = format!("race-{trial}");

        // Four racers in a random order, each with a random head start or delay after the barrier.
        let mut order = [0usize, 1, 2, 3];
        rng.shuffle(&mut order);
        let barrier = Arc::new(tokio::sync::Barrier::new(order.len()));
        let mut racers = Vec::new();
        for racer in order {
            let (barrier, router, app) = (barrier.clone(), t.router.clone(), t.app.clone());
            let (body, signature, delivery, id) = (
                body.clone(),
                signature.clone(),
                delivery.clone(),
                id.clone(),
            );
            let offset = match rng.u8(0..4) {
                0 => Some(StdDuration::from_micros(rng.u64(0..2_000))),
                _ => None,
            };
            let yields = rng.usize(0..20);
            racers.push(tokio::spawn(async move {
                barrier.wait().await;
                match offset {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => {
                        for _ in 0..yields {
                            tokio::task::yield_now().await;
                        }
                    }
                }
                match racer {
                    // (a) the closing webhook and (d) its duplicate delivery.
                    0 | 1 => {
                        let request = Request::builder()
                            .method("POST")
                            .uri("/webhooks/jira/jira-main")
                            .header("content-type", "application/json")
                            .header("x-hub-signature", signature)
                            .header("x-atlassian-webhook-identifier", delivery)
                            .body(Body::from(body))
                            .expect("request");
                        let response = router.oneshot(request).await.expect("infallible");
                        let status = response.status();
                        let bytes = response
                            .into_body()
                            .collect()
                            .await
                            .expect("body")
                            .to_bytes();
                        Saw::Webhook(
                            status,
                            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                        )
                    }
                    // (b) the expiry job as EventBridge Scheduler delivers it.
                    2 => {
                        let input =
                            serde_json::to_value(Job::new(JobKind::Expire, &id)).expect("job");
                        let event = LambdaEvent::new(input, Context::default());
                        Saw::Expiry(
                            ticketbound::handlers::handle_scheduled_job(&app, event)
                                .await
                                .map_err(|e| e.to_string()),
                        )
                    }
                    // (c) an approver revoking through the API.
                    _ => {
                        let request = Request::builder()
                            .method("POST")
                            .uri(format!("/v1/grants/{id}/revoke"))
                            .header("x-ticketbound-user", APPROVER.0)
                            .header("x-ticketbound-groups", APPROVER.1)
                            .body(Body::empty())
                            .expect("request");
                        let response = router.oneshot(request).await.expect("infallible");
                        let status = response.status();
                        let bytes = response
                            .into_body()
                            .collect()
                            .await
                            .expect("body")
                            .to_bytes();
                        Saw::Revoke(
                            status,
                            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                        )
                    }
                }
            }));
        }
        let mut seen = Vec::new();
        for racer in racers {
            seen.push(
                racer
                    .await
                    .unwrap_or_else(|e| panic!("{context}: a racer panicked: {e}")),
            );
        }

        // Who says they ended it.
        let mut closed_by_webhook = 0;
        let mut revoked = 0;
        for saw in &seen {
            match saw {
                Saw::Webhook(status, answer) => {
                    assert_eq!(*status, StatusCode::OK, "{context}: {answer}");
                    let ended = answer["ended"].as_u64().unwrap_or(0);
                    let duplicate = answer["ignored"] == true;
                    duplicates_seen_as_such += usize::from(duplicate);
                    assert!(
                        duplicate || ended + answer["already_closed"].as_u64().unwrap_or(0) == 1,
                        "{context}: {answer}"
                    );
                    closed_by_webhook += ended;
                }
                Saw::Expiry(outcome) => {
                    assert!(
                        outcome.is_ok(),
                        "{context}: the expiry job failed: {outcome:?}"
                    );
                }
                Saw::Revoke(status, answer) => match *status {
                    StatusCode::OK => revoked += 1,
                    StatusCode::CONFLICT => {
                        assert_eq!(
                            answer["error"]["code"], "grant_already_closed",
                            "{context}: {answer}"
                        )
                    }
                    other => panic!("{context}: revoke answered {other}: {answer}"),
                },
            }
        }

        let grant = t
            .store
            .get_grant(&id)
            .await
            .expect("read")
            .expect("the grant");
        let grant = serde_json::to_value(grant).expect("JSON");
        assert_eq!(grant["status"], "ended", "{context}: {grant}");
        let reason = grant["end_reason"].as_str().unwrap_or_default().to_owned();
        let events = t
            .store
            .list_events(&id, 100, None)
            .await
            .expect("events")
            .items;
        let ended: Vec<&AuditEvent> = events.iter().filter(|e| e.kind == "ended").collect();
        assert_eq!(ended.len(), 1, "{context}: {events:?}");
        assert_eq!(
            ended[0].detail["end_reason"],
            reason.as_str(),
            "{context}: {events:?}"
        );
        let expected_claims = match reason.as_str() {
            "ticket_closed" => (1, 0),
            "revoked" => (0, 1),
            "time_bound_reached" => (0, 0),
            other => panic!("{context}: unexpected end reason {other}"),
        };
        assert_eq!(
            (closed_by_webhook, revoked),
            expected_claims,
            "{context}: ended as {reason}, but {seen:?}"
        );
        assert_eq!(
            calls.revokes(&id),
            1,
            "{context}: revoke calls to the end system"
        );
        assert_eq!(
            grant["deprovisioning"]["state"], "done",
            "{context}: {grant}"
        );
        *winners.entry(reason).or_default() += 1;
    }
    eprintln!(
        "seed {seed}: {trials} trials, won by {winners:?}; a duplicate answered as one {duplicates_seen_as_such} times"
    );
    if trials >= 100 {
        // The schedule really races: each of the three ways of ending won some trials.
        assert_eq!(winners.len(), 3, "seed {seed}: {winners:?}");
    }
}
