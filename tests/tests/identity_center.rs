//! The built-in IAM Identity Center provisioner on moto's `sso-admin` and `identitystore`, driven through the
//! real router and the engine (the in-process scheduler runs the status checks and retries): an account
//! assignment present after approval and gone after the end, overlapping grants removing it once, a user found
//! by e-mail or through the resource's `people` mapping and never guessed, a group membership, and live sessions
//! cut by a deny in the permission set's inline policy for that user only, then taken out by the one-time job.
//! What AWS holds is read back with the SDK's own clients, independently of the adapter. moto finishes every
//! assignment request at once, so the request still `IN_PROGRESS` (checked through the engine) and then `FAILED`
//! is a wiremock endpoint answering the AWS JSON protocol. Reconciliation runs compare moto's assignments with
//! the grants: an assignment that outlived its grant is removed and recorded on that grant's trail, one nobody
//! was granted is left and counted, an active grant's is kept (and a missing one reported, not made again), and a
//! run whose Identity Center calls fail (a wiremock endpoint answering AWS's errors, or not answering at all)
//! changes no grant and keeps its time.

use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use aws_sdk_identitystore::types::{Email, MemberId, Name};
use aws_sdk_ssoadmin::types::{PrincipalType, TargetType};
use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::adapters::identity_center::IdentityCenter;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::provisioner::HttpProvisioners;
use ticketbound::ports::{Clock, Job, JobKind};
use ticketbound::service::{Ports, ReconcileReport, Settings, Ticketbound};
use ticketbound::telemetry::metric_total;
use ticketbound_tests::*;
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const WAIT: StdDuration = StdDuration::from_secs(10);

/// Held by the tests that read the process-wide reconciliation metrics, so another test's run cannot move them.
static METRIC_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Moto's Identity Center instance, a permission set of its own (session duration two hours) and the clients.
struct Aws {
    sso: aws_sdk_ssoadmin::Client,
    ids: aws_sdk_identitystore::Client,
    instance_arn: String,
    identity_store_id: String,
    permission_set_arn: String,
}

const ACCOUNT: &str = "123456789012";

async fn identity_center() -> Aws {
    let sdk = aws().await;
    let sso = aws_sdk_ssoadmin::Client::new(&sdk);
    let ids = aws_sdk_identitystore::Client::new(&sdk);
    let instances = sso.list_instances().send().await.expect("list instances");
    let instance = instances.instances().first().expect("moto has an instance");
    let instance_arn = instance.instance_arn().unwrap().to_owned();
    let identity_store_id = instance.identity_store_id().unwrap().to_owned();
    let permission_set_arn = sso
        .create_permission_set()
        .instance_arn(&instance_arn)
        .name(unique("ps"))
        .session_duration("PT2H")
        .send()
        .await
        .expect("create permission set")
        .permission_set()
        .and_then(|p| p.permission_set_arn())
        .unwrap()
        .to_owned();
    Aws {
        sso,
        ids,
        instance_arn,
        identity_store_id,
        permission_set_arn,
    }
}

impl Aws {
    /// A user of the identity store with `email`; its id.
    async fn user(&self, email: &str) -> String {
        self.ids
            .create_user()
            .identity_store_id(&self.identity_store_id)
            .user_name(unique("user"))
            .display_name("Test User")
            .name(
                Name::builder()
                    .given_name("Test")
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

    /// The users assigned the permission set in the account.
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

    /// Assigns the permission set to `user` directly, as a person in the console leaves it (or a removal whose
    /// deletion never reached AWS).
    async fn assign_by_hand(&self, user: &str) {
        self.sso
            .create_account_assignment()
            .instance_arn(&self.instance_arn)
            .target_id(ACCOUNT)
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(&self.permission_set_arn)
            .principal_type(PrincipalType::User)
            .principal_id(user)
            .send()
            .await
            .expect("create assignment");
    }

    /// Deletes `user`'s assignment directly, as a person cutting access in an emergency does.
    async fn unassign_by_hand(&self, user: &str) {
        self.sso
            .delete_account_assignment()
            .instance_arn(&self.instance_arn)
            .target_id(ACCOUNT)
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(&self.permission_set_arn)
            .principal_type(PrincipalType::User)
            .principal_id(user)
            .send()
            .await
            .expect("delete assignment");
    }

    async fn inline_policy(&self) -> Value {
        let policy = self
            .sso
            .get_inline_policy_for_permission_set()
            .instance_arn(&self.instance_arn)
            .permission_set_arn(&self.permission_set_arn)
            .send()
            .await
            .expect("get inline policy");
        serde_json::from_str(policy.inline_policy().unwrap_or("null")).unwrap_or(Value::Null)
    }

    /// An account assignment provisioner for the permission set.
    fn assignment(&self, extra: Value) -> Value {
        let mut provisioner = json!({
            "kind": "aws_identity_center",
            "instance_arn": self.instance_arn,
            "identity_store_id": self.identity_store_id,
            "account_id": ACCOUNT,
            "permission_set_arn": self.permission_set_arn,
        });
        for (k, v) in extra.as_object().unwrap() {
            provisioner[k] = v.clone();
        }
        provisioner
    }
}

/// The app as the Lambda functions build it (the Identity Center provisioner on moto), on the embedded store
/// with its in-process scheduler running the engine's jobs.
async fn running_app() -> axum::Router {
    running_app_at(ManualClock::now_system()).await.0
}

/// The same app on `clock` (it stands still until moved: the in-process scheduler runs what is due at once, a
/// job armed for later waits for the test to run it), with the app and its scheduler.
async fn running_app_at(clock: ManualClock) -> (axum::Router, Ticketbound, LocalScheduler) {
    running_app_on(&aws().await, clock).await
}

/// The same app with its AWS calls going where `sdk` says.
async fn running_app_on(
    sdk: &aws_config::SdkConfig,
    clock: ManualClock,
) -> (axum::Router, Ticketbound, LocalScheduler) {
    running_app_with(IdentityCenter::new(sdk, Arc::new(clock.clone())), clock).await
}

/// The same app over `identity_center`.
async fn running_app_with(
    identity_center: IdentityCenter,
    clock: ManualClock,
) -> (axum::Router, Ticketbound, LocalScheduler) {
    running_app_in(identity_center, clock, embedded_store()).await
}

/// The same app over `identity_center` and `store`.
async fn running_app_in(
    identity_center: IdentityCenter,
    clock: ManualClock,
    store: EmbeddedStore,
) -> (axum::Router, Ticketbound, LocalScheduler) {
    let (app, scheduler) = app_over(identity_center, clock, store);
    scheduler.start(Arc::new(app.clone())).await.unwrap();
    (local_router(app.clone()), app, scheduler)
}

/// The app over `identity_center` and `store`, its scheduler not started (a second app over the same store
/// reconciles through other Identity Center endpoints without running the first one's jobs twice).
fn app_over(
    identity_center: IdentityCenter,
    clock: ManualClock,
    store: EmbeddedStore,
) -> (Ticketbound, LocalScheduler) {
    let scheduler = LocalScheduler::new(store.clone());
    let clock: Arc<dyn Clock> = Arc::new(clock);
    let provisioners = HttpProvisioners::new(clock.clone(), StdDuration::from_secs(2))
        .unwrap()
        .with_identity_center(identity_center);
    let ports = Ports {
        provisioners: Arc::new(provisioners),
        ..test_ports(
            Arc::new(store),
            Arc::new(scheduler.clone()),
            clock,
            StdDuration::from_secs(2),
        )
    };
    let app = Ticketbound::build(
        ports,
        Settings {
            retry: fast_retry(6),
            ..Settings::default()
        },
    );
    (app, scheduler)
}

async fn put_resource(router: &axum::Router, id: &str, provisioner: Value) -> (StatusCode, Value) {
    let body = json!({"name": format!("Resource {id}"), "provisioner": provisioner});
    call(
        router,
        "PUT",
        &format!("/v1/resources/{id}"),
        ADMIN,
        Some(&body.to_string()),
    )
    .await
}

/// Requests `resource` for an hour as `who` and approves it; the grant id.
async fn approved(router: &axum::Router, who: (&str, &str), resource: &str) -> String {
    let id = request_grant(router, who, resource, "PT1H").await;
    let (status, json) = call(
        router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    id
}

async fn grant_json(router: &axum::Router, id: &str) -> Value {
    call(router, "GET", &format!("/v1/grants/{id}"), ADMIN, None)
        .await
        .1
}

async fn revoke(router: &axum::Router, id: &str) {
    let (status, ended) = call(
        router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ended}");
}

/// Waits until the grant's `effect` (`provisioning`/`deprovisioning`) is no longer pending; the grant.
async fn settled(router: &axum::Router, id: &str, effect: &str) -> Value {
    let done = eventually(WAIT, || async {
        let grant = grant_json(router, id).await;
        grant[effect]["state"].is_string() && grant[effect]["state"] != "pending"
    })
    .await;
    let grant = grant_json(router, id).await;
    assert!(done, "{effect} still pending: {grant}");
    grant
}

fn requester(label: &str) -> String {
    format!("{}@example.com", unique(label))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_request_assigns_the_permission_set_and_its_end_removes_it() {
    let aws = identity_center().await;
    let email = requester("alice");
    let user = aws.user(&email).await;
    let router = running_app().await;
    let (status, json) = put_resource(&router, "prod-admin", aws.assignment(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    assert_eq!(json["provisioner"]["kind"], "aws_identity_center");

    let id = approved(&router, (&email, ""), "prod-admin").await;
    let grant = settled(&router, &id, "provisioning").await;
    assert_eq!(grant["provisioning"]["state"], "done", "{grant}");
    assert_eq!(aws.assigned().await, vec![user.clone()]);

    revoke(&router, &id).await;
    let grant = settled(&router, &id, "deprovisioning").await;
    assert_eq!(grant["deprovisioning"]["state"], "done", "{grant}");
    assert!(aws.assigned().await.is_empty(), "the assignment is gone");
    // Without `cut_sessions`, the grant says until when the role sessions it issued may still work: the end plus
    // the permission set's two hours.
    let parse = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().expect("a time"),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert!(grant["access_removed_at"].is_string(), "{grant}");
    assert_eq!(
        parse(&grant["residual_until"]) - parse(&grant["ended_at"]),
        time::Duration::hours(2),
        "{grant}"
    );
    assert_eq!(
        grant["deprovisioning"]["sessions"], "will_expire",
        "{grant}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_grants_keep_the_assignment_until_the_last_one_ends() {
    let aws = identity_center().await;
    let email = requester("alice");
    let user = aws.user(&email).await;
    let router = running_app().await;
    put_resource(&router, "prod-admin", aws.assignment(json!({}))).await;

    let first = approved(&router, (&email, ""), "prod-admin").await;
    settled(&router, &first, "provisioning").await;
    let second = approved(&router, (&email, ""), "prod-admin").await;
    let grant = settled(&router, &second, "provisioning").await;
    assert_eq!(grant["provisioning"]["state"], "done", "{grant}");
    assert_eq!(aws.assigned().await, vec![user.clone()], "one assignment");

    revoke(&router, &first).await;
    let grant = settled(&router, &first, "deprovisioning").await;
    assert_eq!(grant["deprovisioning"]["state"], "skipped", "{grant}");
    assert_eq!(aws.assigned().await, vec![user.clone()], "still held");

    revoke(&router, &second).await;
    let grant = settled(&router, &second, "deprovisioning").await;
    assert_eq!(grant["deprovisioning"]["state"], "done", "{grant}");
    assert!(aws.assigned().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_not_found_fails_with_the_reason_and_the_people_mapping_finds_one() {
    let aws = identity_center().await;
    let router = running_app().await;
    put_resource(&router, "prod-admin", aws.assignment(json!({}))).await;
    let stranger = requester("stranger");
    let id = approved(&router, (&stranger, ""), "prod-admin").await;
    let grant = settled(&router, &id, "provisioning").await;
    assert_eq!(grant["provisioning"]["state"], "failed", "{grant}");
    let reason = grant["provisioning"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains(&stranger) && reason.contains("people"),
        "{grant}"
    );
    assert!(aws.assigned().await.is_empty(), "nobody was guessed");

    // The same person, mapped by an admin to the user their e-mail does not find.
    let user = aws.user(&requester("other-address")).await;
    let mapped = aws.assignment(json!({"people": {stranger.clone(): user.clone()}}));
    let (status, json) = put_resource(&router, "prod-mapped", mapped).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let id = approved(&router, (&stranger, ""), "prod-mapped").await;
    let grant = settled(&router, &id, "provisioning").await;
    assert_eq!(grant["provisioning"]["state"], "done", "{grant}");
    assert_eq!(aws.assigned().await, vec![user]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_membership_is_added_and_removed() {
    let aws = identity_center().await;
    let email = requester("alice");
    let user = aws.user(&email).await;
    let group = aws
        .ids
        .create_group()
        .identity_store_id(&aws.identity_store_id)
        .display_name(unique("oncall"))
        .send()
        .await
        .unwrap()
        .group_id()
        .to_owned();
    let groups = || async {
        aws.ids
            .list_group_memberships_for_member()
            .identity_store_id(&aws.identity_store_id)
            .member_id(MemberId::UserId(user.clone()))
            .send()
            .await
            .unwrap()
            .group_memberships()
            .iter()
            .filter_map(|m| m.group_id().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let router = running_app().await;
    let provisioner = json!({
        "kind": "aws_identity_center",
        "instance_arn": aws.instance_arn,
        "identity_store_id": aws.identity_store_id,
        "group_id": group,
    });
    let (status, json) = put_resource(&router, "oncall", provisioner).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let id = approved(&router, (&email, ""), "oncall").await;
    let grant = settled(&router, &id, "provisioning").await;
    assert_eq!(grant["provisioning"]["state"], "done", "{grant}");
    assert_eq!(groups().await, vec![group.clone()]);

    revoke(&router, &id).await;
    let grant = settled(&router, &id, "deprovisioning").await;
    assert_eq!(grant["deprovisioning"]["state"], "done", "{grant}");
    assert!(groups().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_sessions_denies_that_users_earlier_sessions_and_nobody_elses_until_they_expire() {
    let aws = identity_center().await;
    let alice = requester("alice");
    let dana = requester("dana");
    let alice_id = aws.user(&alice).await;
    let dana_id = aws.user(&dana).await;
    let clock = ManualClock::now_system();
    let (router, app, scheduler) = running_app_at(clock.clone()).await;
    // An operator's own statement in the permission set's inline policy, kept throughout.
    let own = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Ops", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
    aws.sso
        .put_inline_policy_to_permission_set()
        .instance_arn(&aws.instance_arn)
        .permission_set_arn(&aws.permission_set_arn)
        .inline_policy(own.to_string())
        .send()
        .await
        .unwrap();
    let (status, json) = put_resource(
        &router,
        "prod-admin",
        aws.assignment(json!({"cut_sessions": true})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let ended = approved(&router, (&alice, ""), "prod-admin").await;
    let kept = approved(&router, (&dana, ""), "prod-admin").await;
    settled(&router, &ended, "provisioning").await;
    settled(&router, &kept, "provisioning").await;

    revoke(&router, &ended).await;
    let grant = settled(&router, &ended, "deprovisioning").await;
    assert_eq!(grant["deprovisioning"]["state"], "done", "{grant}");
    assert_eq!(grant["deprovisioning"]["sessions"], "terminated", "{grant}");
    assert!(grant["residual_until"].is_null(), "{grant}");
    assert_eq!(
        aws.assigned().await,
        vec![dana_id.clone()],
        "Dana keeps hers"
    );

    let policy = aws.inline_policy().await;
    let statements = policy["Statement"].as_array().expect("a policy").clone();
    assert_eq!(statements.len(), 2, "{policy}");
    assert_eq!(
        statements[0], own["Statement"][0],
        "the operator's statement is kept"
    );
    let deny = &statements[1];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(
        deny["Condition"]["StringEquals"]["identitystore:userId"], alice_id,
        "only Alice's sessions: {policy}"
    );
    let issued_before = time::OffsetDateTime::parse(
        deny["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
            .as_str()
            .unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let ended_at = time::OffsetDateTime::parse(
        grant["ended_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        issued_before >= ended_at && issued_before - ended_at <= time::Duration::SECOND,
        "{policy} {grant}"
    );
    assert!(!policy.to_string().contains(&dana_id), "{policy}");

    // The cut's end is armed for when no session it denies can still be valid: the end plus two hours.
    let name = Job::new(JobKind::EndSessionCut, &ended).schedule_name();
    let armed = scheduler.pending().await.unwrap();
    let (_, at) = armed
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("{name} is armed: {armed:?}"));
    assert_eq!(*at - ended_at, time::Duration::hours(2));

    // Once the session duration has passed, the job takes the deny out.
    clock.set(*at);
    clock.advance(time::Duration::seconds(1));
    app.run_job(&Job::new(JobKind::EndSessionCut, &ended))
        .await
        .expect("the job runs");
    assert_eq!(
        aws.inline_policy().await,
        own,
        "only the operator's statement is left"
    );
    assert_eq!(aws.assigned().await, vec![dana_id], "Dana is untouched");
    // Run again (at-least-once), it finds nothing to do.
    app.run_job(&Job::new(JobKind::EndSessionCut, &ended))
        .await
        .expect("a repeated job is harmless");
    assert_eq!(aws.inline_policy().await, own);
}

#[tokio::test]
async fn the_local_server_refuses_the_kind_and_bad_configurations_are_refused() {
    let (app, _, _) = local_test_app();
    let router = local_router(app);
    let provisioner = json!({
        "kind": "aws_identity_center",
        "instance_arn": "arn:aws:sso:::instance/ssoins-0123456789abcdef",
        "identity_store_id": "d-0123456789",
        "group_id": "g-1",
    });
    let (status, json) = put_resource(&router, "oncall", provisioner).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert_eq!(json["error"]["code"], "provisioner_unavailable", "{json}");
    let (status, _) = call(&router, "GET", "/v1/resources/oncall", ADMIN, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was saved");

    let router = running_app().await;
    for bad in [
        // Both modes at once.
        json!({"group_id": "g-1", "account_id": ACCOUNT, "permission_set_arn": "arn:aws:sso:::permissionSet/ssoins-1/ps-1"}),
        // Neither.
        json!({}),
        json!({"account_id": "12345", "permission_set_arn": "arn:aws:sso:::permissionSet/ssoins-1/ps-1"}),
        // Sessions of a group come from elsewhere.
        json!({"group_id": "g-1", "cut_sessions": true}),
        json!({"group_id": "g-1", "people": {"Alice@Example.com": "u-1"}}),
    ] {
        let mut provisioner = json!({
            "kind": "aws_identity_center",
            "instance_arn": "arn:aws:sso:::instance/ssoins-0123456789abcdef",
            "identity_store_id": "d-0123456789",
        });
        for (k, v) in bad.as_object().unwrap() {
            provisioner[k] = v.clone();
        }
        let (status, json) = put_resource(&router, "bad", provisioner.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{provisioner} {json}"
        );
        assert_eq!(json["error"]["code"], "invalid_provisioner", "{json}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_bound_removes_the_assignment() {
    let aws = identity_center().await;
    let email = requester("alice");
    let user = aws.user(&email).await;
    let clock = ManualClock::now_system();
    let (router, app, _scheduler) = running_app_at(clock.clone()).await;
    put_resource(&router, "prod-admin", aws.assignment(json!({}))).await;
    let id = approved(&router, (&email, ""), "prod-admin").await;
    settled(&router, &id, "provisioning").await;
    assert_eq!(aws.assigned().await, vec![user]);

    // The expiry schedule fires after the hour.
    clock.advance(time::Duration::minutes(61));
    app.run_job(&Job::new(JobKind::Expire, &id))
        .await
        .expect("the expiry runs");
    let grant = settled(&router, &id, "deprovisioning").await;
    assert_eq!(grant["end_reason"], "time_bound_reached", "{grant}");
    assert_eq!(grant["deprovisioning"]["state"], "done", "{grant}");
    assert!(aws.assigned().await.is_empty(), "the assignment is gone");
}

/// An Identity Center endpoint answering as the AWS JSON 1.1 protocol does: `operation` (the `X-Amz-Target`)
/// answers `body`, at most `times` times when given.
async fn answers(server: &MockServer, operation: &str, body: Value, times: Option<u64>) {
    let mock = Mock::given(method("POST"))
        .and(header("x-amz-target", operation))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_string(body.to_string()),
        );
    let mock = match times {
        Some(n) => mock.up_to_n_times(n),
        None => mock,
    };
    mock.mount(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_in_progress_is_checked_through_the_engine_and_a_failed_one_keeps_the_reason()
{
    // moto finishes every request at once; this endpoint keeps it in progress for one check, then fails it.
    let server = MockServer::start().await;
    answers(
        &server,
        "AWSIdentityStore.GetUserId",
        json!({"UserId": "u-1", "IdentityStoreId": "d-0123456789"}),
        None,
    )
    .await;
    answers(
        &server,
        "SWBExternalService.ListAccountAssignments",
        json!({"AccountAssignments": []}),
        None,
    )
    .await;
    answers(
        &server,
        "SWBExternalService.CreateAccountAssignment",
        json!({"AccountAssignmentCreationStatus": {"Status": "IN_PROGRESS", "RequestId": "req-1"}}),
        None,
    )
    .await;
    answers(
        &server,
        "SWBExternalService.DescribeAccountAssignmentCreationStatus",
        json!({"AccountAssignmentCreationStatus": {"Status": "IN_PROGRESS", "RequestId": "req-1"}}),
        Some(1),
    )
    .await;
    answers(
        &server,
        "SWBExternalService.DescribeAccountAssignmentCreationStatus",
        json!({"AccountAssignmentCreationStatus": {"Status": "FAILED", "RequestId": "req-1",
            "FailureReason": "The permission set is not provisioned to the account"}}),
        None,
    )
    .await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(server.uri())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ssoadmin::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let (router, _app, _scheduler) = running_app_on(&sdk, ManualClock::now_system()).await;
    let provisioner = json!({
        "kind": "aws_identity_center",
        "instance_arn": "arn:aws:sso:::instance/ssoins-0123456789abcdef",
        "identity_store_id": "d-0123456789",
        "account_id": ACCOUNT,
        "permission_set_arn": "arn:aws:sso:::permissionSet/ssoins-0123456789abcdef/ps-0123456789abcdef",
    });
    let (status, json) = put_resource(&router, "prod-admin", provisioner).await;
    assert_eq!(status, StatusCode::CREATED, "{json}");
    let id = request_grant(&router, ALICE, "prod-admin", "PT1H").await;
    let (status, approved) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["provisioning"]["state"], "pending", "{approved}");
    assert_eq!(
        approved["provisioning"]["status_url"], "aws-sso:request/req-1",
        "{approved}"
    );

    let grant = settled(&router, &id, "provisioning").await;
    assert_eq!(grant["provisioning"]["state"], "failed", "{grant}");
    assert!(
        grant["provisioning"]["last_error"]
            .as_str()
            .is_some_and(|e| e.ends_with("The permission set is not provisioned to the account")),
        "{grant}"
    );
    let checks = server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| {
            r.headers.get("x-amz-target").and_then(|v| v.to_str().ok())
                == Some("SWBExternalService.DescribeAccountAssignmentCreationStatus")
        })
        .count();
    assert_eq!(checks, 2, "one check still in progress, one failed");
}

/// The adapter's AWS calls through `infra/fault_proxy.py` (20% throttled, failed before or after reaching moto,
/// or stalled past the attempt timeout): every grant still ends with its assignment, every removal with none
/// left, and no removal is made more often than the faults explain (counted through the proxy's log). A create faulted after it reached moto is made again by the SDK's retry, and moto (unlike AWS)
/// then holds the assignment twice: the check after a deletion deletes the second copy too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_share_of_identity_center_calls_faulted_every_grant_is_set_up_and_every_removal_made()
 {
    let proxy = std::env::var("TICKETBOUND_FAULT_PROXY")
        .expect("run through `bash infra/test.sh`, which starts the fault proxy");
    let aws = identity_center().await;
    // Only the code under test goes through the proxy (infra/fault_proxy.py); setup and checks go to moto.
    let sdk = ticketbound::wiring::aws_sdk_config(ticketbound::wiring::AwsTimeouts {
        connect: StdDuration::from_secs(1),
        attempt: StdDuration::from_secs(1),
        operation: StdDuration::from_secs(20),
    })
    .await;
    let clock = ManualClock::now_system();
    let faulty = IdentityCenter::from_clients(
        aws_sdk_ssoadmin::Client::from_conf(
            aws_sdk_ssoadmin::config::Builder::from(&sdk)
                .endpoint_url(&proxy)
                .build(),
        ),
        aws_sdk_identitystore::Client::from_conf(
            aws_sdk_identitystore::config::Builder::from(&sdk)
                .endpoint_url(&proxy)
                .build(),
        ),
        Arc::new(clock.clone()),
    );
    let (router, _app, _scheduler) = running_app_with(faulty, clock).await;
    put_resource(&router, "prod-admin", aws.assignment(json!({}))).await;
    let before = proxy_stats(&proxy);
    let mut users = Vec::new();
    let mut grants = Vec::new();
    for _ in 0..8 {
        let email = requester("faulted");
        users.push(aws.user(&email).await);
        grants.push(approved(&router, (&email, ""), "prod-admin").await);
    }
    for id in &grants {
        let grant = settled(&router, id, "provisioning").await;
        assert_eq!(grant["provisioning"]["state"], "done", "{grant}");
    }
    let mut assigned = aws.assigned().await;
    assigned.sort();
    assigned.dedup();
    users.sort();
    assert_eq!(assigned, users, "every grant's assignment is there");

    for id in &grants {
        revoke(&router, id).await;
    }
    for id in &grants {
        let grant = settled(&router, id, "deprovisioning").await;
        assert_eq!(grant["deprovisioning"]["state"], "done", "{grant}");
    }
    assert!(aws.assigned().await.is_empty(), "no removal is lost");
    let after = proxy_stats(&proxy);
    eprintln!("fault proxy before: {before}\nafter: {after}");
    assert!(
        after["calls"].as_u64() > before["calls"].as_u64(),
        "the calls went through the proxy: {after}"
    );

    // No removal is repeated beyond the calls in flight at a fault. Every DeleteAccountAssignment that reached
    // moto is one of: the one removal per grant; a delete whose answer the proxy replaced with a 500 after moto
    // had done it (the SDK or the engine cannot know it was done, and sends it again); or the removal of a
    // second copy moto made of an assignment whose create was answered 500 after it was done (AWS keeps one).
    let ours = proxy_stats_naming(&proxy, &aws.permission_set_arn);
    let op = |name: &str| ours["operations"][name].clone();
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    let deletes_reached = count(&op("DeleteAccountAssignment")["reached"]);
    let deletes_answer_lost = count(&op("DeleteAccountAssignment")["faults"]["error_after"]);
    let creates_answer_lost = count(&op("CreateAccountAssignment")["faults"]["error_after"]);
    eprintln!("this test's Identity Center calls through the proxy: {ours}");
    assert!(
        deletes_reached >= grants.len() as u64,
        "every removal reached moto: {ours}"
    );
    assert!(
        deletes_reached <= grants.len() as u64 + deletes_answer_lost + creates_answer_lost,
        "{deletes_reached} deletions reached moto for {} grants, with {deletes_answer_lost} deletions and \
         {creates_answer_lost} creations whose answer was lost: a removal was repeated without a fault: {ours}",
        grants.len()
    );
}

/// What the fault proxy has done so far (calls and faults by kind).
fn proxy_stats(proxy: &str) -> Value {
    proxy_stats_at(proxy, "/__fault_proxy/stats")
}

/// What the fault proxy did to the calls whose body names `name` (a permission set's ARN), by operation.
fn proxy_stats_naming(proxy: &str, name: &str) -> Value {
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    proxy_stats_at(proxy, &format!("/__fault_proxy/stats?table={encoded}"))
}

fn proxy_stats_at(proxy: &str, path: &str) -> Value {
    use std::io::{Read, Write};
    let address = proxy.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("the proxy answers");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default())
        .expect("stats are JSON")
}

/// The grant's audit trail, as an admin reads it.
async fn trail(router: &axum::Router, id: &str) -> Vec<Value> {
    let reply = grants::events(router, ADMIN, id).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json["items"].as_array().cloned().unwrap_or_default()
}

/// The events of a trail that record access reconciliation removed again.
fn removed_again(trail: &[Value]) -> Vec<Value> {
    trail
        .iter()
        .filter(|e| e["detail"]["access_removed_again"] == true)
        .cloned()
        .collect()
}

/// What a run did to the provisioners: (calls, failed calls, access removed again, unmanaged assignments,
/// missing assignments).
fn convergence(report: &ReconcileReport) -> (usize, usize, usize, usize, usize) {
    (
        report.provisioners_reconciled,
        report.provisioner_errors,
        report.access_removed_again,
        report.unmanaged_assignments,
        report.missing_assignments,
    )
}

/// A grant of `email` on `resource` approved, set up, revoked and removed through the engine; its id.
async fn ended_and_removed(
    router: &axum::Router,
    aws: &Aws,
    email: &str,
    resource: &str,
) -> String {
    let id = approved(router, (email, ""), resource).await;
    let grant = settled(router, &id, "provisioning").await;
    assert_eq!(grant["provisioning"]["state"], "done", "{grant}");
    revoke(router, &id).await;
    let grant = settled(router, &id, "deprovisioning").await;
    assert_eq!(grant["deprovisioning"]["state"], "done", "{grant}");
    assert!(aws.assigned().await.is_empty(), "removed by the engine");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_run_removes_an_assignment_that_outlived_its_grant_and_the_grants_trail_says_so()
 {
    let _metrics = METRIC_LOCK.lock().await;
    let aws = identity_center().await;
    let alice = requester("alice");
    let alice_id = aws.user(&alice).await;
    let clock = ManualClock::now_system();
    let (router, app, _scheduler) = running_app_at(clock.clone()).await;
    put_resource(&router, "prod-admin", aws.assignment(json!({}))).await;
    let id = ended_and_removed(&router, &aws, &alice, "prod-admin").await;
    // The grant records its removal, but AWS holds the assignment again (a deletion lost on the way, or a person
    // giving it back by hand after the grant was over).
    aws.assign_by_hand(&alice_id).await;
    let grant_before = grant_json(&router, &id).await;
    let events_before = trail(&router, &id).await;
    let metric_before = metric_total("AccessRemovedByReconciliation");

    let report = app.reconcile().await.expect("the run");
    assert_eq!(convergence(&report), (1, 0, 1, 0, 0), "{report:?}");
    assert!(aws.assigned().await.is_empty(), "the assignment is gone");
    assert_eq!(
        metric_total("AccessRemovedByReconciliation") - metric_before,
        1.0
    );
    let events = trail(&router, &id).await;
    assert_eq!(events.len(), events_before.len() + 1, "{events:?}");
    let recorded = removed_again(&events);
    assert_eq!(recorded.len(), 1, "{events:?}");
    let event = &recorded[0];
    assert_eq!(event["kind"], "deprovisioned", "{event}");
    assert_eq!(
        event["actor"],
        Value::Null,
        "the system removed it: {event}"
    );
    assert_eq!(event["status"], "ended", "{event}");
    assert_eq!(
        event["detail"],
        json!({"found_by": "reconciliation", "access_removed_again": true, "principal_id": alice_id}),
        "{event}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["seq"].as_u64() <= event["seq"].as_u64()),
        "the newest event: {events:?}"
    );
    // The grant's story is otherwise what it was.
    let grant = grant_json(&router, &id).await;
    for field in [
        "status",
        "end_reason",
        "ended_at",
        "access_removed_at",
        "deprovisioning",
    ] {
        assert_eq!(grant[field], grant_before[field], "{field}: {grant}");
    }

    // Converged: the next run finds nothing to remove and records nothing.
    let again = app.reconcile().await.expect("the next run");
    assert_eq!(convergence(&again), (1, 0, 0, 0, 0), "{again:?}");
    assert_eq!(trail(&router, &id).await.len(), events.len());

    // Runs look back 30 days: an assignment given back after that is no longer the grant's, and left alone.
    aws.assign_by_hand(&alice_id).await;
    clock.advance(time::Duration::days(31));
    let later = app.reconcile().await.expect("a run a month later");
    assert_eq!(convergence(&later), (1, 0, 0, 1, 0), "{later:?}");
    assert_eq!(aws.assigned().await, vec![alice_id]);
    assert_eq!(trail(&router, &id).await.len(), events.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_leaves_assignments_it_never_made_keeps_active_ones_and_does_not_remake_missing_ones()
 {
    let _metrics = METRIC_LOCK.lock().await;
    let aws = identity_center().await;
    let (carol, dana, erin, frank) = (
        requester("carol"),
        requester("dana"),
        requester("erin"),
        requester("frank"),
    );
    let carol_id = aws.user(&carol).await;
    let dana_id = aws.user(&dana).await;
    let erin_id = aws.user(&erin).await;
    let frank_id = aws.user(&frank).await;
    let (router, app, _scheduler) = running_app_at(ManualClock::now_system()).await;
    put_resource(&router, "prod-admin", aws.assignment(json!({}))).await;
    // A second resource naming the same assignment: Frank's grant of the first ended, his grant of this one
    // gives him the same assignment now.
    put_resource(&router, "prod-admin-too", aws.assignment(json!({}))).await;
    let frank_ended = ended_and_removed(&router, &aws, &frank, "prod-admin").await;
    let frank_active = approved(&router, (&frank, ""), "prod-admin-too").await;
    let grant = settled(&router, &frank_active, "provisioning").await;
    assert_eq!(grant["provisioning"]["state"], "done", "{grant}");
    // Dana holds an active grant. Erin held one that ended and holds another now: hers is kept too.
    let kept = approved(&router, (&dana, ""), "prod-admin").await;
    settled(&router, &kept, "provisioning").await;
    let erin_ended = ended_and_removed_keeping(&router, &erin, "prod-admin").await;
    let erin_active = approved(&router, (&erin, ""), "prod-admin").await;
    let grant = settled(&router, &erin_active, "provisioning").await;
    assert_eq!(grant["provisioning"]["state"], "done", "{grant}");
    // Carol was never granted anything: her assignment is somebody else's business.
    aws.assign_by_hand(&carol_id).await;
    let mut expected = vec![
        carol_id.clone(),
        dana_id.clone(),
        erin_id.clone(),
        frank_id.clone(),
    ];
    expected.sort();
    let mut assigned = aws.assigned().await;
    assigned.sort();
    assert_eq!(assigned, expected);
    let grants = [
        &kept,
        &erin_ended,
        &erin_active,
        &frank_ended,
        &frank_active,
    ];
    let before = stories(&router, &grants).await;

    // Carol's assignment is counted once by each resource.
    let report = app.reconcile().await.expect("the run");
    assert_eq!(convergence(&report), (2, 0, 0, 2, 0), "{report:?}");
    let mut assigned = aws.assigned().await;
    assigned.sort();
    assert_eq!(assigned, expected, "nothing was removed");

    // Erin's assignment is cut by hand in an emergency: reported as missing, and not made again.
    aws.unassign_by_hand(&erin_id).await;
    let report = app.reconcile().await.expect("the next run");
    assert_eq!(convergence(&report), (2, 0, 0, 2, 1), "{report:?}");
    let mut assigned = aws.assigned().await;
    assigned.sort();
    let mut left = vec![carol_id, dana_id, frank_id];
    left.sort();
    assert_eq!(assigned, left, "the missing assignment is not made again");
    let after = stories(&router, &grants).await;
    assert_eq!(after, before, "no grant and no trail changed");
}

/// Each grant as the API shows it, with its trail.
async fn stories(router: &axum::Router, ids: &[&String]) -> Vec<Value> {
    let mut stories = Vec::new();
    for id in ids {
        stories.push(json!([
            grant_json(router, id).await,
            trail(router, id).await
        ]));
    }
    stories
}

/// [`ended_and_removed`] for a requester whose other grants may still hold the assignment.
async fn ended_and_removed_keeping(router: &axum::Router, email: &str, resource: &str) -> String {
    let id = approved(router, (email, ""), resource).await;
    let grant = settled(router, &id, "provisioning").await;
    assert_eq!(grant["provisioning"]["state"], "done", "{grant}");
    revoke(router, &id).await;
    let grant = settled(router, &id, "deprovisioning").await;
    assert_eq!(grant["deprovisioning"]["state"], "done", "{grant}");
    id
}

/// What an Identity Center endpoint answers one operation with: its `X-Amz-Target`, the HTTP status and the body.
type Answer = (&'static str, u16, Value);

/// SDK clients pointed at `uri`, with test credentials.
async fn sdk_at(uri: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(uri)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ssoadmin::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_run_whose_identity_center_calls_fail_changes_no_grant_and_the_next_one_converges()
 {
    let _metrics = METRIC_LOCK.lock().await;
    let aws = identity_center().await;
    let alice = requester("alice");
    let alice_id = aws.user(&alice).await;
    let clock = ManualClock::now_system();
    let store = embedded_store();
    let (router, app, _scheduler) = running_app_in(
        IdentityCenter::new(&ticketbound_tests::aws().await, Arc::new(clock.clone())),
        clock.clone(),
        store.clone(),
    )
    .await;
    put_resource(&router, "prod-admin", aws.assignment(json!({}))).await;
    let id = ended_and_removed(&router, &aws, &alice, "prod-admin").await;
    aws.assign_by_hand(&alice_id).await;
    let grant_before = grant_json(&router, &id).await;
    let events_before = trail(&router, &id).await;
    let removed_before = metric_total("AccessRemovedByReconciliation");

    // Listing the assignments throttled, refused, or failing on AWS's side; then the list answered and the
    // deletion refused; then the deletion accepted and, at its status check, failed. Each case: what the
    // endpoint answers (operation, HTTP status, body) before the list and the user it otherwise answers, the
    // last being the call that must have been made.
    let listing = "SWBExternalService.ListAccountAssignments";
    let deleting = "SWBExternalService.DeleteAccountAssignment";
    let error = |code: &str| json!({"__type": code, "message": "refused by the test"});
    let cases: Vec<(&str, Vec<Answer>)> = vec![
        (
            "throttled",
            vec![(listing, 400, error("ThrottlingException"))],
        ),
        (
            "access denied",
            vec![(listing, 400, error("AccessDeniedException"))],
        ),
        (
            "server error",
            vec![(listing, 500, error("InternalServerException"))],
        ),
        (
            "deletion refused",
            vec![(deleting, 400, error("AccessDeniedException"))],
        ),
        (
            "deletion failed",
            vec![
                (
                    deleting,
                    200,
                    json!({"AccountAssignmentDeletionStatus": {"Status": "IN_PROGRESS", "RequestId": "req-9"}}),
                ),
                (
                    "SWBExternalService.DescribeAccountAssignmentDeletionStatus",
                    200,
                    json!({"AccountAssignmentDeletionStatus": {"Status": "FAILED", "RequestId": "req-9",
                        "FailureReason": "Received a 404 status error: Not supported account"}}),
                ),
            ],
        ),
    ];
    for (case, answered) in cases {
        let server = MockServer::start().await;
        for (operation, status, body) in &answered {
            Mock::given(method("POST"))
                .and(header("x-amz-target", *operation))
                .respond_with(
                    ResponseTemplate::new(*status)
                        .insert_header("content-type", "application/x-amz-json-1.1")
                        .set_body_string(body.to_string()),
                )
                .mount(&server)
                .await;
        }
        answers(
            &server,
            "AWSIdentityStore.GetUserId",
            json!({"UserId": alice_id, "IdentityStoreId": aws.identity_store_id}),
            None,
        )
        .await;
        answers(
            &server,
            listing,
            json!({"AccountAssignments": [{"AccountId": ACCOUNT, "PermissionSetArn": aws.permission_set_arn,
                "PrincipalType": "USER", "PrincipalId": alice_id}]}),
            None,
        )
        .await;
        let operation = answered.last().map(|(op, _, _)| *op).unwrap_or_default();
        let (failing, _) = app_over(
            IdentityCenter::new(&sdk_at(&server.uri()).await, Arc::new(clock.clone())),
            clock.clone(),
            store.clone(),
        );
        let failures_before = metric_total("ProvisionerReconcileFailures");
        let report = failing.reconcile().await.expect("the run itself goes on");
        assert_eq!(convergence(&report), (1, 1, 0, 0, 0), "{case}: {report:?}");
        assert_eq!(
            metric_total("ProvisionerReconcileFailures") - failures_before,
            1.0,
            "{case}"
        );
        let called = server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .any(|r| {
                r.headers.get("x-amz-target").and_then(|v| v.to_str().ok()) == Some(operation)
            });
        assert!(called, "{operation} was asked");
        assert_eq!(grant_json(&router, &id).await, grant_before, "{case}");
        assert_eq!(trail(&router, &id).await, events_before, "{case}");
        assert_eq!(aws.assigned().await, vec![alice_id.clone()], "{case}");
    }
    // Identity Center not answering at all: the call is cut at its bound (10 s), so the run keeps its time.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(StdDuration::from_secs(60)))
        .mount(&server)
        .await;
    let (stalled, _) = app_over(
        IdentityCenter::new(&sdk_at(&server.uri()).await, Arc::new(clock.clone())),
        clock.clone(),
        store.clone(),
    );
    let started = std::time::Instant::now();
    let report = stalled.reconcile().await.expect("the run itself goes on");
    assert_eq!(convergence(&report), (1, 1, 0, 0, 0), "stalled: {report:?}");
    assert!(
        started.elapsed() < StdDuration::from_secs(15),
        "the run took {:?}",
        started.elapsed()
    );
    assert_eq!(grant_json(&router, &id).await, grant_before, "stalled");
    assert_eq!(trail(&router, &id).await, events_before, "stalled");
    assert_eq!(
        metric_total("AccessRemovedByReconciliation"),
        removed_before,
        "nothing was counted as removed"
    );

    // With Identity Center answering again, the next run removes it.
    let report = app.reconcile().await.expect("the next run");
    assert_eq!(convergence(&report), (1, 0, 1, 0, 0), "{report:?}");
    assert!(aws.assigned().await.is_empty());
    assert_eq!(removed_again(&trail(&router, &id).await).len(), 1);
}
