//! What one grant's whole life costs on AWS, counted call by call: the application as the Lambda functions build
//! it (DynamoDB, EventBridge Scheduler, Secrets Manager, SES and, for the built-in provisioner, IAM Identity
//! Center, all on moto) with every AWS call going through a private `infra/fault_proxy.py` at 0% faults, which
//! counts them by operation. A life is: the request, the approval (granting), the time bound firing (the end and
//! the removal), and every notification job, each scheduled job fired from its schedule's `Input` through the
//! expiry function's handler as EventBridge Scheduler and Lambda do.
//!
//! The tests assert what a user depends on (the access is set up and removed, every message sent, no schedule
//! left behind, one notification job for a closing however many grants it ends) and print the table
//! BENCHMARKS.md holds ("What one grant costs"); run them with `--nocapture` to regenerate it:
//! `MOTO_PORT=5005 bash infra/test.sh -p ticketbound-tests --test grant_cost -- --nocapture --test-threads 1`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::http::StatusCode;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use ticketbound::adapters::dynamodb::DynamoStore;
use ticketbound::adapters::identity_center::IdentityCenter;
use ticketbound::adapters::notify::{ChannelOptions, NotifyChannels, NotifyConfig};
use ticketbound::adapters::provisioner::HttpProvisioners;
use ticketbound::adapters::scheduler::{EventBridgeScheduler, EventBridgeSettings};
use ticketbound::adapters::secrets::SecretsManagerStore;
use ticketbound::domain::{EndReason, Grant, GrantStatus, SideEffectState, TicketRef};
use ticketbound::handlers::handle_scheduled_job;
use ticketbound::ports::{Clock, GrantStore};
use ticketbound::service::{Ports, Settings, Ticketbound};
use ticketbound_tests::*;

const SENDER: &str = "ticketbound@cost.example.com";
const ACCOUNT: &str = "123456789012";

/// A fault proxy of this test's own, in front of moto, faulting nothing: it only counts.
struct CountingProxy {
    child: Child,
    url: String,
}

impl CountingProxy {
    fn start() -> Self {
        let upstream = std::env::var("AWS_ENDPOINT_URL").expect("moto's URL (bash infra/test.sh)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/fault_proxy.py");
        let child = Command::new("python3")
            .args([script, "127.0.0.1", &port.to_string(), &upstream])
            .env("FAULT_RATE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs infra/fault_proxy.py");
        let proxy = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return proxy;
            }
            std::thread::sleep(StdDuration::from_millis(50));
        }
        panic!("the counting proxy did not start on port {port}");
    }

    /// The calls counted so far, by operation.
    fn operations(&self) -> BTreeMap<String, Counted> {
        use std::io::{Read, Write};
        let address = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).expect("the proxy answers");
        write!(
            stream,
            "GET /__fault_proxy/stats HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let stats: Value =
            serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
        stats["operations"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, v)| {
                let n = |k: &str| v[k].as_u64().unwrap_or(0);
                (
                    name.clone(),
                    Counted {
                        calls: n("calls"),
                        items: n("items"),
                        bytes: n("bytes"),
                    },
                )
            })
            .collect()
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy counted for one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counted {
    calls: u64,
    items: u64,
    bytes: u64,
}

/// The calls of `after` not yet in `before`.
fn since(
    before: &BTreeMap<String, Counted>,
    after: &BTreeMap<String, Counted>,
) -> BTreeMap<String, Counted> {
    after
        .iter()
        .filter_map(|(op, a)| {
            let b = before.get(op).copied().unwrap_or_default();
            let d = Counted {
                calls: a.calls - b.calls,
                items: a.items - b.items,
                bytes: a.bytes - b.bytes,
            };
            (d.calls > 0).then(|| (op.clone(), d))
        })
        .collect()
}

/// Moto's Identity Center instance and a permission set of this test's own.
struct IdentityCenterSetup {
    ids: aws_sdk_identitystore::Client,
    sso: aws_sdk_ssoadmin::Client,
    instance_arn: String,
    identity_store_id: String,
    permission_set_arn: String,
}

/// One deployment on moto whose AWS calls go through `proxy`; `clean_*` go straight to moto (setup and checks,
/// not counted).
struct Stack {
    proxy: CountingProxy,
    app: Ticketbound,
    router: axum::Router,
    clean_store: DynamoStore,
    schedules: aws_sdk_scheduler::Client,
    group: String,
    clock: ManualClock,
    /// Lambda invocations: API requests and fired schedules (each fired schedule is also one EventBridge
    /// Scheduler invocation).
    api_requests: u64,
    fired: u64,
}

async fn stack() -> Stack {
    let moto = moto_config().await;
    let proxy = CountingProxy::start();
    let via_proxy = |url: &str| {
        (
            aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(&moto)
                    .endpoint_url(url)
                    .build(),
            ),
            aws_sdk_scheduler::Client::from_conf(
                aws_sdk_scheduler::config::Builder::from(&moto)
                    .endpoint_url(url)
                    .build(),
            ),
            aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(&moto)
                    .endpoint_url(url)
                    .build(),
            ),
            aws_sdk_sesv2::Client::from_conf(
                aws_sdk_sesv2::config::Builder::from(&moto)
                    .endpoint_url(url)
                    .build(),
            ),
            aws_sdk_ssoadmin::Client::from_conf(
                aws_sdk_ssoadmin::config::Builder::from(&moto)
                    .endpoint_url(url)
                    .build(),
            ),
            aws_sdk_identitystore::Client::from_conf(
                aws_sdk_identitystore::config::Builder::from(&moto)
                    .endpoint_url(url)
                    .build(),
            ),
        )
    };
    let (dynamodb, scheduler, secrets, ses, sso, ids) = via_proxy(&proxy.url);

    // Setup straight on moto.
    let table = unique("cost");
    let clean_dynamodb = aws_sdk_dynamodb::Client::new(&moto);
    DynamoStore::create_table(&clean_dynamodb, &table)
        .await
        .unwrap();
    let schedules = aws_sdk_scheduler::Client::new(&moto);
    let group = unique("tb");
    schedules
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .unwrap();
    aws_sdk_sesv2::Client::new(&moto)
        .create_email_identity()
        .email_identity(SENDER)
        .send()
        .await
        .expect("verify the sender on moto");

    let clock = ManualClock::now_system();
    let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let config = NotifyConfig::parse(
        &json!({
            "channels": [{"id": "email", "kind": "email", "sender": SENDER}],
            "approver_emails": ["access-approvers@example.com"],
        })
        .to_string(),
    )
    .expect("configuration");
    let options = ChannelOptions {
        timeout: StdDuration::from_secs(2),
        ses: Some(ses),
        ..ChannelOptions::new(shared_clock.clone())
    };
    let provisioners = HttpProvisioners::new(shared_clock.clone(), StdDuration::from_secs(2))
        .unwrap()
        .with_identity_center(IdentityCenter::from_clients(sso, ids, shared_clock.clone()));
    let ports = Ports {
        notifier: Arc::new(NotifyChannels::build(&config, &options).expect("channels")),
        provisioners: Arc::new(provisioners),
        // No cache across calls: each Lambda invocation of a life is a fresh process, as far as a count may
        // assume (a warm one reads the secret less often).
        secrets: Arc::new(SecretsManagerStore::new(
            secrets,
            format!("{}/", unique("tb")),
            StdDuration::ZERO,
        )),
        ..test_ports(
            Arc::new(DynamoStore::new(dynamodb, table.clone())),
            Arc::new(EventBridgeScheduler::new(
                scheduler,
                EventBridgeSettings {
                    group: group.clone(),
                    target_arn: EXPIRY_ARN.into(),
                    role_arn: SCHEDULER_ROLE_ARN.into(),
                    dlq_arn: DLQ_ARN.into(),
                },
            )),
            shared_clock,
            StdDuration::from_secs(2),
        )
    };
    let app = Ticketbound::build(
        ports,
        Settings {
            retry: fast_retry(4),
            notifications: config
                .settings(Some("https://tb.example.com"))
                .expect("settings"),
            ..Settings::default()
        },
    );
    Stack {
        proxy,
        router: local_router(app.clone()),
        app,
        clean_store: DynamoStore::new(clean_dynamodb, table),
        schedules,
        group,
        clock,
        api_requests: 0,
        fired: 0,
    }
}

async fn identity_center_setup() -> IdentityCenterSetup {
    let moto = moto_config().await;
    let sso = aws_sdk_ssoadmin::Client::new(&moto);
    let ids = aws_sdk_identitystore::Client::new(&moto);
    let instances = sso.list_instances().send().await.expect("list instances");
    let instance = instances.instances().first().expect("moto has an instance");
    let instance_arn = instance.instance_arn().unwrap().to_owned();
    let identity_store_id = instance.identity_store_id().unwrap().to_owned();
    let permission_set_arn = sso
        .create_permission_set()
        .instance_arn(&instance_arn)
        .name(unique("ps"))
        .session_duration("PT1H")
        .send()
        .await
        .expect("create permission set")
        .permission_set()
        .and_then(|p| p.permission_set_arn())
        .unwrap()
        .to_owned();
    IdentityCenterSetup {
        ids,
        sso,
        instance_arn,
        identity_store_id,
        permission_set_arn,
    }
}

impl IdentityCenterSetup {
    async fn user(&self, email: &str) -> String {
        use aws_sdk_identitystore::types::{Email, Name};
        self.ids
            .create_user()
            .identity_store_id(&self.identity_store_id)
            .user_name(unique("user"))
            .display_name("Cost User")
            .name(
                Name::builder()
                    .given_name("Cost")
                    .family_name("User")
                    .build(),
            )
            .emails(Email::builder().value(email).primary(true).build())
            .send()
            .await
            .expect("create user")
            .user_id()
            .to_owned()
    }

    async fn assigned(&self) -> Vec<String> {
        self.sso
            .list_account_assignments()
            .instance_arn(&self.instance_arn)
            .account_id(ACCOUNT)
            .permission_set_arn(&self.permission_set_arn)
            .send()
            .await
            .expect("list assignments")
            .account_assignments()
            .iter()
            .filter_map(|a| a.principal_id().map(str::to_owned))
            .collect()
    }
}

/// The time of an `at(YYYY-MM-DDTHH:MM:SS)` expression.
fn at_of(expression: &str) -> OffsetDateTime {
    let inner = expression.trim_start_matches("at(").trim_end_matches(')');
    OffsetDateTime::parse(
        &format!("{inner}Z"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

impl Stack {
    async fn put_resource(&self, id: &str, provisioner: Value) {
        let body = json!({"name": format!("Resource {id}"), "provisioner": provisioner});
        let (status, json) = call(
            &self.router,
            "PUT",
            &format!("/v1/resources/{id}"),
            ADMIN,
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
    }

    async fn grant(&self, id: &str) -> Grant {
        self.clean_store.get_grant(id).await.unwrap().unwrap()
    }

    async fn schedule_names(&self) -> Vec<String> {
        schedule_names(&self.schedules, &self.group).await
    }

    /// Fires every schedule due at the clock's time, as EventBridge Scheduler does (its `Input` to the expiry
    /// function's handler), then deletes it as `ActionAfterCompletion: DELETE` does unless the job moved it;
    /// again until nothing is due. Reads and deletions go straight to moto: AWS does them, not Ticketbound.
    async fn fire_due(&mut self) {
        for _ in 0..20 {
            let now = self.clock.now_offset();
            let mut fired_any = false;
            for name in self.schedule_names().await {
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
                let event =
                    LambdaEvent::new(serde_json::from_str(&input).unwrap(), Context::default());
                handle_scheduled_job(&self.app, event)
                    .await
                    .unwrap_or_else(|e| panic!("schedule {name} failed: {e:?}"));
                self.fired += 1;
                fired_any = true;
                let still = self
                    .schedules
                    .get_schedule()
                    .name(&name)
                    .group_name(&self.group)
                    .send()
                    .await
                    .ok();
                if still.is_some_and(|s| s.schedule_expression() == Some(expression.as_str())) {
                    let _ = self
                        .schedules
                        .delete_schedule()
                        .name(&name)
                        .group_name(&self.group)
                        .send()
                        .await;
                }
            }
            if !fired_any {
                return;
            }
        }
        panic!("schedules kept coming due");
    }

    /// One grant's whole life on `resource` as Alice: requested, approved, ended by its time bound, removed,
    /// every notification sent. Returns the grant as it ends.
    async fn one_life(&mut self, resource: &str) -> Grant {
        let id = request_grant(&self.router, ALICE, resource, "PT1H").await;
        self.api_requests += 1;
        // A job armed "at once" is scheduled a few seconds ahead (EventBridge takes no time in the past): let
        // them pass before firing.
        self.clock.advance(Duration::seconds(10));
        self.fire_due().await;
        let (status, approved) = call(
            &self.router,
            "POST",
            &format!("/v1/grants/{id}/approve"),
            APPROVER,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        self.api_requests += 1;
        self.clock.advance(Duration::seconds(10));
        self.fire_due().await;
        // The bound passes; then time goes on until everything it started has run.
        self.clock.advance(Duration::minutes(61));
        for _ in 0..10 {
            self.fire_due().await;
            self.clock.advance(Duration::seconds(30));
        }
        self.grant(&id).await
    }

    fn invocations(&self) -> (u64, u64) {
        (self.api_requests, self.fired)
    }
}

/// Asserts the life ended as a user expects: ended by its bound, access removed, every message sent, nothing
/// left scheduled.
async fn assert_a_whole_life(stack: &Stack, grant: &Grant) {
    assert_eq!(grant.status, GrantStatus::Ended, "{grant:?}");
    assert_eq!(grant.end_reason, Some(EndReason::TimeBoundReached));
    let removal = grant.deprovisioning.as_ref().expect("a removal");
    assert_eq!(removal.state, SideEffectState::Done, "{grant:?}");
    assert!(grant.access_removed_at.is_some(), "{grant:?}");
    assert!(!grant.notifications.is_empty(), "{grant:?}");
    for n in &grant.notifications {
        assert!(
            matches!(n.state, SideEffectState::Done | SideEffectState::Skipped),
            "{n:?}"
        );
    }
    // The approvers were asked, the requester told of the approval and of the end.
    let sent: Vec<&str> = grant
        .notifications
        .iter()
        .filter(|n| n.state == SideEffectState::Done)
        .map(|n| n.event.as_str())
        .collect();
    assert_eq!(
        sent,
        ["approval_requested", "approved", "ended"],
        "{grant:?}"
    );
    assert!(
        stack.schedule_names().await.is_empty(),
        "nothing is left scheduled: {:?}",
        stack.schedule_names().await
    );
}

/// The list prices the cost table uses: us-east-1, as published on the AWS pricing pages (DynamoDB on-demand
/// after the November 2024 reduction), read for this table on 2026-12-05.
mod price {
    /// DynamoDB on-demand, per write request unit (1 KB) and per read request unit (4 KB, strongly consistent).
    pub const DYNAMODB_WRU: f64 = 0.625 / 1e6;
    pub const DYNAMODB_RRU: f64 = 0.125 / 1e6;
    /// Lambda requests, and arm64 compute per GB-second.
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    pub const LAMBDA_ARM_GB_SECOND: f64 = 0.000_013_333_4;
    /// EventBridge Scheduler, per invocation (the schedule API calls are not billed; 14 million invocations a
    /// month are free, not counted here).
    pub const SCHEDULER_INVOCATION: f64 = 1.00 / 1e6;
    /// Secrets Manager, per API call (the $0.40 per secret per month does not grow with grants).
    pub const SECRETS_CALL: f64 = 0.05 / 10_000.0;
    /// SES, per e-mail sent.
    pub const SES_EMAIL: f64 = 0.10 / 1_000.0;
    /// API Gateway HTTP API, per request.
    pub const HTTP_API_REQUEST: f64 = 1.00 / 1e6;
    /// What a Lambda invocation is assumed to use: the template's 256 MB for 100 ms (not measured on AWS).
    pub const LAMBDA_GB_SECONDS: f64 = 0.25 * 0.1;
}

/// DynamoDB request units of an operation's calls: writes by their size in KB (rounded up, from the request's
/// bytes), doubled in a transaction; reads one unit per call (items under 4 KB), doubled in a transaction.
fn request_units(op: &str, c: &Counted) -> (f64, f64) {
    let kb_per_item = |items: u64| {
        (c.bytes as f64 / items.max(1) as f64 / 1024.0)
            .ceil()
            .max(1.0)
    };
    match op {
        "PutItem" | "UpdateItem" | "DeleteItem" => (c.calls as f64 * kb_per_item(c.calls), 0.0),
        "TransactWriteItems" => (2.0 * c.items as f64 * kb_per_item(c.items), 0.0),
        "BatchWriteItem" => (c.items as f64 * kb_per_item(c.items), 0.0),
        "GetItem" | "Query" | "Scan" => (0.0, c.calls as f64),
        "TransactGetItems" => (0.0, 2.0 * c.items as f64),
        "BatchGetItem" => (0.0, c.items as f64),
        _ => (0.0, 0.0),
    }
}

/// The dollars per 1,000 grants of one life's calls and invocations.
fn cost_per_thousand(
    ops: &BTreeMap<String, Counted>,
    (api, fired): (u64, u64),
) -> Vec<(&'static str, f64)> {
    let (mut wru, mut rru) = (0.0, 0.0);
    for (op, c) in ops {
        let (w, r) = request_units(op, c);
        wru += w;
        rru += r;
    }
    let calls = |name: &str| ops.get(name).map_or(0, |c| c.calls) as f64;
    let invocations = (api + fired) as f64;
    let rows = vec![
        ("DynamoDB writes", wru * price::DYNAMODB_WRU),
        ("DynamoDB reads", rru * price::DYNAMODB_RRU),
        (
            "Lambda requests and compute",
            invocations
                * (price::LAMBDA_REQUEST + price::LAMBDA_GB_SECONDS * price::LAMBDA_ARM_GB_SECOND),
        ),
        (
            "EventBridge Scheduler invocations",
            fired as f64 * price::SCHEDULER_INVOCATION,
        ),
        (
            "Secrets Manager calls",
            calls("GetSecretValue") * price::SECRETS_CALL,
        ),
        ("SES e-mails", calls("SendEmail") * price::SES_EMAIL),
        ("API Gateway requests", api as f64 * price::HTTP_API_REQUEST),
    ];
    rows.into_iter().map(|(k, v)| (k, v * 1_000.0)).collect()
}

/// The two lives side by side, as BENCHMARKS.md shows them.
fn table(
    webhook: &BTreeMap<String, Counted>,
    webhook_invocations: (u64, u64),
    idc: &BTreeMap<String, Counted>,
    idc_invocations: (u64, u64),
) -> String {
    let service = |op: &str| match op {
        "GetItem" | "PutItem" | "UpdateItem" | "DeleteItem" | "Query" | "Scan"
        | "TransactWriteItems" | "TransactGetItems" | "BatchWriteItem" | "BatchGetItem" => {
            "DynamoDB"
        }
        "CreateSchedule" | "UpdateSchedule" | "DeleteSchedule" | "GetSchedule"
        | "ListSchedules" => "EventBridge Scheduler",
        "GetSecretValue" | "PutSecretValue" | "CreateSecret" => "Secrets Manager",
        "SendEmail" => "SES",
        "GetUserId"
        | "ListGroupMembershipsForMember"
        | "CreateGroupMembership"
        | "DeleteGroupMembership" => "Identity Store",
        _ => "IAM Identity Center (sso-admin)",
    };
    let mut ops: Vec<&String> = webhook.keys().chain(idc.keys()).collect();
    ops.sort_by_key(|op| (service(op), op.as_str()));
    ops.dedup();
    let cell = |m: &BTreeMap<String, Counted>, op: &str| match m.get(op) {
        Some(c) if c.items != c.calls => format!("{} ({} items)", c.calls, c.items),
        Some(c) => c.calls.to_string(),
        None => "0".into(),
    };
    let mut out = String::from(
        "| service | call | webhook resource | Identity Center resource |\n|---|---|---|---|\n",
    );
    for op in ops {
        out += &format!(
            "| {} | {op} | {} | {} |\n",
            service(op),
            cell(webhook, op),
            cell(idc, op)
        );
    }
    let total = |m: &BTreeMap<String, Counted>| m.values().map(|c| c.calls).sum::<u64>();
    out += &format!(
        "| **all AWS API calls** | | **{}** | **{}** |\n",
        total(webhook),
        total(idc)
    );
    out += &format!(
        "| Lambda | invocations (API requests + fired schedules) | {} + {} | {} + {} |\n",
        webhook_invocations.0, webhook_invocations.1, idc_invocations.0, idc_invocations.1
    );
    out += &format!(
        "| EventBridge Scheduler | invocations (fired schedules) | {} | {} |\n\n",
        webhook_invocations.1, idc_invocations.1
    );
    let webhook_cost = cost_per_thousand(webhook, webhook_invocations);
    let idc_cost = cost_per_thousand(idc, idc_invocations);
    out +=
        "| per 1,000 grants (USD) | webhook resource | Identity Center resource |\n|---|---|---|\n";
    for ((name, w), (_, i)) in webhook_cost.iter().zip(&idc_cost) {
        out += &format!("| {name} | {w:.4} | {i:.4} |\n");
    }
    let sum = |rows: &[(&str, f64)]| rows.iter().map(|(_, v)| v).sum::<f64>();
    out += &format!(
        "| **total** | **{:.4}** | **{:.4}** |\n",
        sum(&webhook_cost),
        sum(&idc_cost)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_grants_whole_life_on_aws_is_counted_call_by_call_for_a_webhook_and_an_identity_center_resource()
 {
    // A webhook resource.
    let provisioner = provisioner_ok().await;
    let mut webhook = stack().await;
    webhook
        .put_resource(
            "prod-db",
            json!({"kind": "webhook", "url": provisioner.uri(), "secret": "provisioner-secret-0123456789"}),
        )
        .await;
    let before = webhook.proxy.operations();
    let ended = webhook.one_life("prod-db").await;
    let webhook_calls = since(&before, &webhook.proxy.operations());
    assert_a_whole_life(&webhook, &ended).await;
    assert_eq!(provisioner_actions(&provisioner).await, ["grant", "revoke"]);

    // An IAM Identity Center resource (account assignment).
    let idc = identity_center_setup().await;
    let user = idc.user(ALICE.0).await;
    let mut assigned = stack().await;
    assigned
        .put_resource(
            "prod-admin",
            json!({
                "kind": "aws_identity_center",
                "instance_arn": idc.instance_arn,
                "identity_store_id": idc.identity_store_id,
                "account_id": ACCOUNT,
                "permission_set_arn": idc.permission_set_arn,
            }),
        )
        .await;
    let before = assigned.proxy.operations();
    let ended = assigned.one_life("prod-admin").await;
    let idc_calls = since(&before, &assigned.proxy.operations());
    assert_a_whole_life(&assigned, &ended).await;
    assert!(idc.assigned().await.is_empty(), "the assignment is gone");
    assert!(
        idc_calls.contains_key("CreateAccountAssignment")
            && idc_calls.contains_key("DeleteAccountAssignment"),
        "{idc_calls:?}"
    );
    let _ = user;

    // The two lives differ only in the provisioner's own calls: the engine adds none on either path.
    let engine_ops = |m: &BTreeMap<String, Counted>| -> BTreeMap<String, u64> {
        m.iter()
            .filter(|(op, _)| {
                !op.contains("AccountAssignment")
                    && !op.contains("PermissionSet")
                    && op.as_str() != "GetUserId"
                    && op.as_str() != "GetSecretValue"
            })
            .map(|(op, c)| (op.clone(), c.calls))
            .collect()
    };
    assert_eq!(
        engine_ops(&webhook_calls),
        engine_ops(&idc_calls),
        "the same store, schedule and e-mail calls for both kinds"
    );

    eprintln!(
        "\n{}",
        table(
            &webhook_calls,
            webhook.invocations(),
            &idc_calls,
            assigned.invocations()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_that_ends_many_grants_on_aws_arms_one_notification_job_not_one_per_grant() {
    let provisioner = provisioner_ok().await;
    let s = stack().await;
    s.put_resource(
        "prod-db",
        json!({"kind": "webhook", "url": provisioner.uri(), "secret": "provisioner-secret-0123456789"}),
    )
    .await;
    // Closings of one and of four grants: the schedules the second arms grow by the grants' own (their safety
    // nets), never by a notification schedule per grant.
    let mut created = Vec::new();
    for (n, key) in [(1, "SEC-1"), (4, "SEC-4")] {
        let ticket = TicketRef {
            connection: "jira-main".into(),
            key: key.into(),
        };
        let ids = seed_bound_active_grants(&s.app, &ticket, "prod-db", n).await;
        let before = s.proxy.operations();
        let closing = s
            .app
            .close_ticket(&ticket, None, EndReason::TicketClosed)
            .await
            .unwrap();
        assert_eq!(closing.ended, n);
        let calls = since(&before, &s.proxy.operations());
        created.push(calls.get("CreateSchedule").map_or(0, |c| c.calls));
        let notification_schedules: Vec<String> = s
            .schedule_names()
            .await
            .into_iter()
            .filter(|name| {
                name.contains("-ntf-") && ids.iter().any(|id| name.contains(id.as_str()))
            })
            .collect();
        assert_eq!(
            notification_schedules.len(),
            1,
            "one notification job for the closing of {n}: {notification_schedules:?}"
        );
        for id in &ids {
            let grant = s.grant(id).await;
            assert_eq!(grant.status, GrantStatus::Ended);
            assert_eq!(
                grant.deprovisioning.as_ref().map(|d| d.state),
                Some(SideEffectState::Done),
                "{grant:?}"
            );
        }
    }
    let per_grant = created[0] - 1;
    assert_eq!(
        created[1],
        4 * per_grant + 1,
        "schedules created: {created:?} (one closing of 1 grant, one of 4)"
    );
    eprintln!(
        "CreateSchedule calls of a closing: 1 grant {}, 4 grants {}",
        created[0], created[1]
    );
}
