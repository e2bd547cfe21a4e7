//! The pipeline with a share of AWS calls faulted (issue 9): the AWS adapters talk to moto through
//! `infra/fault_proxy.py`, which answers 20% of calls (by default) with throttling in each service's wire
//! format, 500s before or after forwarding, and stalls longer than the SDK's attempt timeout. `bash infra/test.sh`
//! starts it and sets `TICKETBOUND_FAULT_PROXY`; without that variable these tests say so and do nothing.
//!
//! Setup and inspection use clients straight to moto (a fault there would test nothing); only the code under test
//! goes through the proxy. Callers retry as they do in production: a store caller on `Unavailable`, a webhook
//! sender on 503, Lambda's async invocation when the expiry function returns a retryable error.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use tower::ServiceExt;

use ticketbound::adapters::dynamodb::DynamoStore;
use ticketbound::adapters::scheduler::{EventBridgeScheduler, EventBridgeSettings};
use ticketbound::adapters::secrets::SecretsManagerStore;
use ticketbound::adapters::ticket_systems::HttpTicketSystems;
use ticketbound::domain::grant::Expected;
use ticketbound::domain::webhook_auth::hub_signature;
use ticketbound::domain::{AuditEvent, Grant, Resource, SideEffectState, TicketRef};
use ticketbound::handlers::handle_scheduled_job;
use ticketbound::ports::{
    Clock, GrantFilter, GrantStore, Page, ResourceExpected, StoreError, VersionedResource,
};
use ticketbound::service::{Ports, Settings, Ticketbound};
use ticketbound::wiring::{AwsTimeouts, aws_sdk_config};
use ticketbound_tests::{
    ADMIN, APPROVER, DLQ_ARN, EXPIRY_ARN, ManualClock, SCHEDULER_ROLE_ARN, call,
    define_webhook_resource, fast_retry, moto_config, provisioner_ok, request_grant,
    schedule_names, seed_bound_active_grants, unique,
};

mod support;

#[path = "store_contract/suite.rs"]
#[macro_use]
mod suite;

/// Short enough that a stall (`FAULT_STALL_SECONDS`, 3 s by default) always outlives an attempt; production
/// uses `AwsTimeouts::default()`, built by the same function.
const TEST_TIMEOUTS: AwsTimeouts = AwsTimeouts {
    connect: StdDuration::from_secs(1),
    attempt: StdDuration::from_secs(1),
    operation: StdDuration::from_secs(20),
};

/// How many times a test-level caller tries before the test fails: with 20% faults and the SDK's own three
/// attempts, ten calls all failing is a broken pipeline, not bad luck.
const CALLER_TRIES: usize = 10;

/// The proxy's URL, or `None` after saying why the test does nothing.
fn proxy_url() -> Option<String> {
    match std::env::var("TICKETBOUND_FAULT_PROXY") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "SKIPPED: TICKETBOUND_FAULT_PROXY is not set; run `bash infra/test.sh`, which starts \
                 infra/fault_proxy.py in front of moto"
            );
            None
        }
    }
}

/// AWS clients built as production builds them (`aws_sdk_config`), pointed at the proxy.
struct Faulty {
    dynamodb: aws_sdk_dynamodb::Client,
    scheduler: aws_sdk_scheduler::Client,
    secrets: aws_sdk_secretsmanager::Client,
}

async fn faulty_clients(proxy: &str) -> Faulty {
    moto_config().await; // asserts the test command's environment
    let sdk = aws_sdk_config(TEST_TIMEOUTS).await;
    Faulty {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .endpoint_url(proxy)
                .build(),
        ),
        scheduler: aws_sdk_scheduler::Client::from_conf(
            aws_sdk_scheduler::config::Builder::from(&sdk)
                .endpoint_url(proxy)
                .build(),
        ),
        secrets: aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&sdk)
                .endpoint_url(proxy)
                .build(),
        ),
    }
}

/// What the proxy did to the DynamoDB calls naming `table` (each test has its own).
fn proxy_stats(proxy: &str, table: &str) -> Value {
    let address = proxy.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("the proxy answers");
    write!(
        stream,
        "GET /__fault_proxy/stats?table={table} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).expect("stats are JSON")
}

fn faults_injected(stats: &Value) -> u64 {
    stats["faults"]
        .as_object()
        .map(|kinds| kinds.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------------------------
// (a) The grant store contract through the proxy.
// ---------------------------------------------------------------------------------------------------------------

/// A caller of the store that retries what is worth retrying, as the service's callers do (a webhook sender on
/// 503, Lambda on a retryable error). A write retried after `Unavailable` may have been applied the first time
/// (the answer was lost): if the retry then finds its own grant in place, the write was done.
///
/// Like any caller, it knows what it has already written: an insert that finds its grant in place after an
/// unanswered attempt was applied, unless this caller had inserted that grant before (then the id was taken).
struct RetryingStore(
    DynamoStore,
    std::sync::Mutex<std::collections::HashSet<String>>,
);

async fn retried<T, F, Fut>(mut call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    for _ in 1..CALLER_TRIES {
        match call().await {
            Err(StoreError::Unavailable(_)) => {
                tokio::time::sleep(StdDuration::from_millis(50)).await
            }
            other => return other,
        }
    }
    call().await
}

impl RetryingStore {
    /// Runs a conditional write of `grant`, reading a condition failure after an `Unavailable` attempt as
    /// success when the stored grant is exactly the one written.
    async fn write<F, Fut>(&self, grant: &Grant, mut write: F) -> Result<(), StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), StoreError>>,
    {
        let result = self.write_once(grant, &mut write).await;
        if result.is_ok() {
            self.1.lock().unwrap().insert(grant.id.clone());
        }
        result
    }

    async fn write_once<F, Fut>(&self, grant: &Grant, write: &mut F) -> Result<(), StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), StoreError>>,
    {
        let mut unanswered = false;
        for _ in 0..CALLER_TRIES {
            match write().await {
                Err(StoreError::Unavailable(_)) => {
                    unanswered = true;
                    tokio::time::sleep(StdDuration::from_millis(50)).await;
                }
                Err(StoreError::Conflict) if unanswered && self.holds(grant).await? => {
                    return Ok(());
                }
                Err(StoreError::AlreadyExists)
                    if unanswered
                        && !self.1.lock().unwrap().contains(&grant.id)
                        && self.holds(grant).await? =>
                {
                    return Ok(());
                }
                other => return other,
            }
        }
        Err(StoreError::Unavailable("still unavailable".into()))
    }
}

impl RetryingStore {
    async fn holds(&self, grant: &Grant) -> Result<bool, StoreError> {
        Ok(retried(|| self.0.get_grant(&grant.id)).await?.as_ref() == Some(grant))
    }
}

#[async_trait]
impl GrantStore for RetryingStore {
    async fn insert_grant(&self, grant: &Grant, event: &AuditEvent) -> Result<(), StoreError> {
        self.write(grant, || self.0.insert_grant(grant, event))
            .await
    }
    async fn update_grant(
        &self,
        grant: &Grant,
        expected: Expected,
        event: Option<&AuditEvent>,
    ) -> Result<(), StoreError> {
        self.write(grant, || self.0.update_grant(grant, expected, event))
            .await
    }
    async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        retried(|| self.0.get_grant(id)).await
    }
    async fn list_grants(
        &self,
        filter: &GrantFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Grant>, StoreError> {
        retried(|| self.0.list_grants(filter, limit, cursor)).await
    }
    async fn active_grants_for(
        &self,
        requester: &str,
        resource: &str,
    ) -> Result<Vec<Grant>, StoreError> {
        retried(|| self.0.active_grants_for(requester, resource)).await
    }
    async fn grants_for_ticket(&self, ticket: &TicketRef) -> Result<Vec<Grant>, StoreError> {
        retried(|| self.0.grants_for_ticket(ticket)).await
    }
    async fn grants_for_ticket_id(
        &self,
        connection: &str,
        ticket_id: &str,
    ) -> Result<Vec<Grant>, StoreError> {
        retried(|| self.0.grants_for_ticket_id(connection, ticket_id)).await
    }
    async fn open_bound_tickets(
        &self,
        connection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        retried(|| self.0.open_bound_tickets(connection, after, limit)).await
    }
    async fn reconcile_state(
        &self,
    ) -> Result<Option<ticketbound::domain::reconcile::ReconcileState>, StoreError> {
        retried(|| self.0.reconcile_state()).await
    }
    async fn save_reconcile_state(
        &self,
        state: &ticketbound::domain::reconcile::ReconcileState,
    ) -> Result<(), StoreError> {
        retried(|| self.0.save_reconcile_state(state)).await
    }
    async fn list_events(
        &self,
        grant_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AuditEvent>, StoreError> {
        retried(|| self.0.list_events(grant_id, limit, cursor)).await
    }
    async fn put_resource(&self, resource: &Resource) -> Result<(), StoreError> {
        retried(|| self.0.put_resource(resource)).await
    }
    async fn put_resource_if(
        &self,
        resource: &Resource,
        expected: ResourceExpected,
    ) -> Result<u64, StoreError> {
        // No resource is written conditionally through the faults: the inner store's own reading of a retried
        // write is enough here.
        retried(|| self.0.put_resource_if(resource, expected)).await
    }
    async fn get_resource(&self, id: &str) -> Result<Option<Resource>, StoreError> {
        retried(|| self.0.get_resource(id)).await
    }
    async fn get_resource_versioned(
        &self,
        id: &str,
    ) -> Result<Option<VersionedResource>, StoreError> {
        retried(|| self.0.get_resource_versioned(id)).await
    }
    async fn delete_resource_if(&self, id: &str, version: u64) -> Result<(), StoreError> {
        retried(|| self.0.delete_resource_if(id, version)).await
    }
    async fn list_resources_versioned(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<VersionedResource>, StoreError> {
        retried(|| self.0.list_resources_versioned(limit, cursor)).await
    }
    async fn delete_resource(&self, id: &str) -> Result<bool, StoreError> {
        retried(|| self.0.delete_resource(id)).await
    }
    async fn remember_delivery(
        &self,
        key: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // As for inserts: "already recorded" after an unanswered attempt was this caller's own record, unless it
        // had recorded this very delivery before.
        let mine = format!("delivery:{key}:{}", expires_at.unix_timestamp());
        let mut unanswered = false;
        for _ in 0..CALLER_TRIES {
            match self.0.remember_delivery(key, expires_at).await {
                Err(StoreError::Unavailable(_)) => {
                    unanswered = true;
                    tokio::time::sleep(StdDuration::from_millis(50)).await;
                }
                Ok(false)
                    if unanswered
                        && !self.1.lock().unwrap().contains(&mine)
                        && retried(|| self.0.delivery_seen(key, expires_at)).await? =>
                {
                    self.1.lock().unwrap().insert(mine);
                    return Ok(true);
                }
                Ok(recorded) => {
                    if recorded {
                        self.1.lock().unwrap().insert(mine);
                    }
                    return Ok(recorded);
                }
                Err(other) => return Err(other),
            }
        }
        Err(StoreError::Unavailable("still unavailable".into()))
    }
    async fn delivery_seen(&self, key: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        retried(|| self.0.delivery_seen(key, now)).await
    }
}

/// A fresh table (created straight on moto), used through the proxy by a retrying caller.
async fn store_through_faults() -> Option<RetryingStore> {
    let proxy = proxy_url()?;
    let table = unique("faults");
    let clean = aws_sdk_dynamodb::Client::new(&moto_config().await);
    DynamoStore::create_table(&clean, &table)
        .await
        .expect("create table on moto");
    let faulty = faulty_clients(&proxy).await;
    Some(RetryingStore(
        DynamoStore::new(faulty.dynamodb, table),
        Default::default(),
    ))
}

contract!(
    dynamodb_through_faults,
    match store_through_faults().await {
        Some(store) => store,
        None => return,
    }
);

// ---------------------------------------------------------------------------------------------------------------
// (b) and (c): a ticket closing and the expiry path.
// ---------------------------------------------------------------------------------------------------------------

/// One table, one schedule group and one secret prefix on moto, served by two apps: `app` through the proxy (under
/// test) and `clean` straight to moto (setup and inspection). They share `clock` and the provisioner endpoint.
struct Pipeline {
    proxy: String,
    table: String,
    app: Ticketbound,
    router: Router,
    clean: Ticketbound,
    clean_router: Router,
    schedules: aws_sdk_scheduler::Client,
    group: String,
    clock: ManualClock,
    provisioner: wiremock::MockServer,
    jira: wiremock::MockServer,
}

fn app_over(
    dynamodb: aws_sdk_dynamodb::Client,
    scheduler: aws_sdk_scheduler::Client,
    secrets: aws_sdk_secretsmanager::Client,
    names: (&str, &str, &str),
    clock: &ManualClock,
) -> Ticketbound {
    let (table, group, prefix) = names;
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let store = Arc::new(DynamoStore::new(dynamodb, table));
    let scheduler = EventBridgeScheduler::new(
        scheduler,
        EventBridgeSettings {
            group: group.into(),
            target_arn: EXPIRY_ARN.into(),
            role_arn: SCHEDULER_ROLE_ARN.into(),
            dlq_arn: DLQ_ARN.into(),
        },
    );
    let ports = Ports {
        secrets: Arc::new(SecretsManagerStore::new(
            secrets,
            prefix,
            StdDuration::from_secs(30),
        )),
        ticket_systems: Arc::new(HttpTicketSystems::new(support::quick_policy()).unwrap()),
        ..ticketbound_tests::test_ports(
            store,
            Arc::new(scheduler),
            clock,
            StdDuration::from_secs(2),
        )
    };
    Ticketbound::build(
        ports,
        Settings {
            retry: fast_retry(8),
            ..Settings::default()
        },
    )
}

async fn pipeline() -> Option<Pipeline> {
    let proxy = proxy_url()?;
    let moto = moto_config().await;
    let faulty = faulty_clients(&proxy).await;
    let (table, group, prefix) = (unique("faults"), unique("tb"), format!("{}/", unique("tb")));
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto);
    DynamoStore::create_table(&dynamodb, &table).await.unwrap();
    let schedules = aws_sdk_scheduler::Client::new(&moto);
    schedules
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .unwrap();
    let clock = ManualClock::now_system();
    let names = (table.as_str(), group.as_str(), prefix.as_str());
    let clean = app_over(
        dynamodb,
        schedules.clone(),
        aws_sdk_secretsmanager::Client::new(&moto),
        names,
        &clock,
    );
    let app = app_over(
        faulty.dynamodb,
        faulty.scheduler,
        faulty.secrets,
        names,
        &clock,
    );
    let provisioner = provisioner_ok().await;
    let jira = wiremock::MockServer::start().await;
    let clean_router = ticketbound_tests::local_router(clean.clone());
    define_webhook_resource(&clean_router, "prod-db", &provisioner.uri()).await;
    Some(Pipeline {
        proxy,
        table,
        router: ticketbound_tests::local_router(app.clone()),
        app,
        clean,
        clean_router,
        schedules,
        group,
        clock,
        provisioner,
        jira,
    })
}

impl Pipeline {
    /// Creates the Jira Cloud connection `jira-main` (straight on moto); returns its webhook secret.
    async fn jira_connection(&self) -> String {
        let body = json!({"id": "jira-main", "kind": "jira_cloud", "base_url": self.jira.uri(), "email": "bot@acme.com", "api_token": "jira-token-1"});
        let (status, created) = call(
            &self.clean_router,
            "POST",
            "/v1/connections",
            ADMIN,
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["webhook_secret"].as_str().unwrap().to_owned()
    }

    /// Delivers every schedule due at the clock's time to the expiry handler of the app under test, at once, as
    /// EventBridge Scheduler and Lambda do. A job that returns a retryable error keeps its schedule (Lambda's
    /// async retry delivers it again); one that succeeds has it deleted (`ActionAfterCompletion: DELETE`) unless
    /// the job moved it to a later time under the same name. Returns (delivered, answered with a retryable error).
    async fn fire_due_schedules(&self) -> (usize, usize) {
        let now = self.clock.now_offset();
        let mut due = Vec::new();
        for name in schedule_names(&self.schedules, &self.group).await {
            let schedule = self
                .schedules
                .get_schedule()
                .name(&name)
                .group_name(&self.group)
                .send()
                .await
                .expect("get schedule");
            let expression = schedule
                .schedule_expression()
                .unwrap_or_default()
                .to_owned();
            if at_of(&expression) > now {
                continue;
            }
            let input = schedule
                .target()
                .and_then(|t| t.input())
                .unwrap_or_default()
                .replace("<aws.scheduler.scheduled-time>", "2026-03-01T09:00:00Z")
                .replace("<aws.scheduler.attempt-number>", "1");
            due.push((name, expression, input));
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (name, expression, input) in due {
            let app = self.app.clone();
            tasks.spawn(async move {
                let event =
                    LambdaEvent::new(serde_json::from_str(&input).unwrap(), Context::default());
                (
                    name,
                    expression,
                    handle_scheduled_job(&app, event).await.is_ok(),
                )
            });
        }
        let (mut delivered, mut retryable) = (0, 0);
        while let Some(joined) = tasks.join_next().await {
            let (name, expression, ok) = joined.unwrap();
            delivered += 1;
            if !ok {
                retryable += 1;
                continue;
            }
            let now_there = self
                .schedules
                .get_schedule()
                .name(&name)
                .group_name(&self.group)
                .send()
                .await
                .ok();
            if now_there.is_some_and(|s| s.schedule_expression() == Some(expression.as_str())) {
                let deleted = self
                    .schedules
                    .delete_schedule()
                    .name(&name)
                    .group_name(&self.group)
                    .send()
                    .await;
                if let Err(e) = deleted {
                    assert!(
                        e.as_service_error()
                            .is_some_and(|e| e.is_resource_not_found_exception()),
                        "deleting fired schedule {name}: {:?}",
                        e
                    );
                }
            }
        }
        (delivered, retryable)
    }

    /// Lets time pass (10 s per round: longer than a lease and than a retry's backoff) and fires what is due,
    /// until every grant in `ids` is closed with its deprovisioning `done`, or 60 rounds. Returns how many
    /// deliveries answered with a retryable error.
    async fn run_schedules_until_settled(&self, ids: &[String]) -> usize {
        let mut redelivered = 0;
        for _ in 0..60 {
            if self.all_settled(ids).await {
                return redelivered;
            }
            redelivered += self.fire_due_schedules().await.1;
            self.clock.advance(Duration::seconds(10));
        }
        redelivered
    }

    async fn all_settled(&self, ids: &[String]) -> bool {
        for id in ids {
            let grant = self.clean.store().get_grant(id).await.unwrap().unwrap();
            let done = grant
                .deprovisioning
                .as_ref()
                .is_some_and(|d| d.state == SideEffectState::Done);
            if grant.status.is_open() || !done {
                return false;
            }
        }
        true
    }

    /// The guarantees, read straight from moto: every grant ended, its deprovisioning `done`, one audit event per
    /// version with exactly one `ended`; the provisioner saw each revoke at least once. Returns the repeats.
    async fn assert_every_grant_ended_once(&self, ids: &[String], reason: &str) -> usize {
        for id in ids {
            let grant = self.clean.store().get_grant(id).await.unwrap().unwrap();
            let json = serde_json::to_value(&grant).unwrap();
            assert_eq!(json["status"], "ended", "{json}");
            assert_eq!(json["end_reason"], reason, "{json}");
            assert_eq!(json["deprovisioning"]["state"], "done", "{json}");
            let events = self
                .clean
                .store()
                .list_events(id, 200, None)
                .await
                .unwrap()
                .items;
            assert!(
                events.windows(2).all(|w| w[0].seq < w[1].seq),
                "at most one event per grant version: {id}"
            );
            for kind in ["ended", "deprovisioned"] {
                assert_eq!(
                    events.iter().filter(|e| e.kind == kind).count(),
                    1,
                    "exactly one `{kind}` event: {id}"
                );
            }
        }
        let mut revokes: HashMap<String, usize> = HashMap::new();
        for request in self
            .provisioner
            .received_requests()
            .await
            .unwrap_or_default()
        {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            if body["action"] == "revoke" {
                let id = body["grant"]["id"].as_str().unwrap_or_default().to_owned();
                *revokes.entry(id).or_default() += 1;
            }
        }
        for id in ids {
            assert!(
                revokes.get(id).copied().unwrap_or(0) >= 1,
                "{id} was never revoked"
            );
        }
        ids.iter().map(|id| revokes[id] - 1).sum()
    }
}

/// The time of an `at(YYYY-MM-DDTHH:MM:SS)` expression (UTC).
fn at_of(expression: &str) -> OffsetDateTime {
    let text = expression.trim_start_matches("at(").trim_end_matches(')');
    time::PrimitiveDateTime::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    )
    .expect("an at() expression")
    .assume_utc()
}

/// Sends one Jira delivery to the router as Jira does, again on every 503 (Jira retries failed deliveries),
/// until it is answered 200. Returns (the answer, how many 503s came first). Anything but 200 or 503 fails: a
/// fault must never be answered as if the request were wrong.
async fn deliver_until_ok(router: &Router, secret: &str, body: &Value) -> (Value, usize) {
    let bytes = body.to_string().into_bytes();
    let mut unavailable = 0;
    for _ in 0..30 {
        let request = Request::builder()
            .method("POST")
            .uri("/webhooks/jira/jira-main")
            .header("content-type", "application/json")
            .header("x-hub-signature", hub_signature(secret, &bytes))
            .header("x-atlassian-webhook-identifier", "delivery-1")
            .body(Body::from(bytes.clone()))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let answer: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap_or(Value::Null);
        match status {
            StatusCode::OK => return (answer, unavailable),
            StatusCode::SERVICE_UNAVAILABLE => unavailable += 1,
            other => panic!("a faulted delivery was answered {other}: {answer}"),
        }
    }
    panic!("the delivery was still refused after 30 tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ticket_closing_ends_every_bound_grant_once_with_a_fifth_of_aws_calls_faulted() {
    let Some(p) = pipeline().await else { return };
    let secret = p.jira_connection().await;
    let ticket = TicketRef {
        connection: "jira-main".into(),
        key: "SEC-9".into(),
    };
    let ids = seed_bound_active_grants(&p.clean, &ticket, "prod-db", 20).await;

    // The real Cloud capture, moved to Done (as webhooks.rs builds it).
    let mut closing: Value = serde_json::from_str(include_str!(
        "../fixtures/jira-cloud-issue-updated-status-inprogress.json"
    ))
    .unwrap();
    closing["issue"]["key"] = "SEC-9".into();
    // The event follows the grants bound before it (a closing never ends a grant bound after its event).
    closing["timestamp"] = ((p.clock.now_offset().unix_timestamp() + 1) * 1000).into();
    closing["issue"]["fields"]["status"] = json!({"name": "Done", "id": "10001", "statusCategory": {"id": 3, "key": "done", "colorName": "green", "name": "Done"}});
    closing["changelog"]["items"] = json!([
        {"field": "status", "fieldtype": "jira", "fieldId": "status", "from": "3", "fromString": "In Progress", "to": "10001", "toString": "Done"}
    ]);
    let (answer, refused) = deliver_until_ok(&p.router, &secret, &closing).await;
    let redelivered = p.run_schedules_until_settled(&ids).await;

    assert_eq!(
        answer["ended"].as_u64().unwrap() + answer["already_closed"].as_u64().unwrap(),
        20,
        "{answer}"
    );
    let repeats = p.assert_every_grant_ended_once(&ids, "ticket_closed").await;
    let stats = proxy_stats(&p.proxy, &p.table);
    eprintln!(
        "closing of 20 grants: {refused} deliveries answered 503 before the 200, {redelivered} scheduled jobs \
         re-delivered, {repeats} repeated revokes; DynamoDB faults on this table: {stats}"
    );
    assert!(
        faults_injected(&stats) > 0,
        "the proxy faulted nothing: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_expiry_ends_its_grant_once_with_a_fifth_of_aws_calls_faulted() {
    let Some(p) = pipeline().await else { return };
    let mut ids = Vec::new();
    for i in 0..20 {
        let who = (format!("engineer{i}@example.com"), String::new());
        let id = request_grant(&p.clean_router, (&who.0, &who.1), "prod-db", "PT1H").await;
        let (status, approved) = call(
            &p.clean_router,
            "POST",
            &format!("/v1/grants/{id}/approve"),
            APPROVER,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        ids.push(id);
    }

    p.clock.advance(Duration::hours(1) + Duration::seconds(5));
    let redelivered = p.run_schedules_until_settled(&ids).await;

    let repeats = p
        .assert_every_grant_ended_once(&ids, "time_bound_reached")
        .await;
    let stats = proxy_stats(&p.proxy, &p.table);
    eprintln!(
        "expiry of 20 grants: {redelivered} scheduled jobs re-delivered after a retryable error, {repeats} \
         repeated revokes; DynamoDB faults on this table: {stats}"
    );
    assert!(
        faults_injected(&stats) > 0,
        "the proxy faulted nothing: {stats}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// What is not retryable stays so, over the real wire protocol (moto, no proxy needed). Scheduler's equivalent (a
// missing schedule group) cannot be shown on moto, which answers it with a 500 of its own (a KeyError).
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_missing_table_is_a_refused_call_not_an_outage() {
    let client = aws_sdk_dynamodb::Client::new(&moto_config().await);
    let store = DynamoStore::new(client, unique("no-such-table"));

    let error = store
        .get_grant("01JD3AAAAAAAAAAAAAAAAAAAAA")
        .await
        .unwrap_err();

    assert!(matches!(error, StoreError::Rejected(_)), "{error:?}");
}

#[tokio::test]
async fn a_stalled_endpoint_fails_as_retryable_within_the_operation_timeout() {
    moto_config().await; // the test command's region and credentials
    // An endpoint that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let timeouts = AwsTimeouts {
        operation: StdDuration::from_secs(3),
        ..TEST_TIMEOUTS
    };
    let sdk = aws_sdk_config(timeouts).await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(&endpoint)
            .build(),
    );
    let store = DynamoStore::new(client, "grants");

    // Without the timeouts the call would wait forever: bound the wait so a regression fails, not hangs.
    let error = tokio::time::timeout(
        StdDuration::from_secs(6),
        store.get_grant("01JD3AAAAAAAAAAAAAAAAAAAAA"),
    )
    .await
    .expect("the operation timeout ends the call")
    .unwrap_err();

    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    held.abort();
}
