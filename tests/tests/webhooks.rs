//! Ticket webhooks end bound grants (DESIGN §1 rules 5, 7, 9; §9): signed deliveries in the Cloud, Data
//! Center, deleted-issue, Automation and Freshservice shapes end the right grants with the right reason and no
//! others; bad deliveries change nothing; duplicates and races end a grant once.

mod support;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::domain::TicketRef;
use ticketbound::domain::webhook_auth::hub_signature;
use ticketbound::ports::{GrantFilter, GrantStore, Job, JobKind};
use ticketbound_tests::{
    ADMIN, ALICE, APPROVER, JiraStack, call, provisioner_actions, seed_bound_active_grants,
};

/// The app of [`JiraStack`] with the Jira Cloud connection `jira-main` (`Won't Do` also closes) and a
/// Freshservice connection `fs-main` (its API on wiremock too).
struct Hooks {
    stack: JiraStack,
    jira_secret: String,
    fs_secret: String,
    fs: MockServer,
}

impl std::ops::Deref for Hooks {
    type Target = JiraStack;
    fn deref(&self) -> &JiraStack {
        &self.stack
    }
}

async fn hooks() -> Hooks {
    let stack = JiraStack::start("hooks").await;
    let jira_secret = stack
        .create_jira_main(json!({"closed_statuses": ["Won't Do"]}))
        .await;
    let fs = MockServer::start().await;
    let body = json!({"id": "fs-main", "kind": "freshservice", "base_url": fs.uri(), "api_key": "fs-key-123"});
    let (status, created) = call(
        &stack.router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let fs_secret = created["webhook_secret"].as_str().unwrap().to_owned();
    Hooks {
        stack,
        jira_secret,
        fs_secret,
        fs,
    }
}

impl Hooks {
    /// Alice requests `prod-db` bound to `key` in jira-main (checked against the Jira API); approved unless `pending`.
    async fn jira_grant(&self, key: &str, pending: bool) -> String {
        self.bound_grant(key, pending).await
    }

    async fn post(
        &self,
        uri: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A Jira admin-webhook delivery signed with the connection's secret.
    async fn jira(&self, body: &Value, delivery: &str) -> (StatusCode, Value) {
        let bytes = body.to_string().into_bytes();
        let headers = [
            ("x-hub-signature", hub_signature(&self.jira_secret, &bytes)),
            ("x-atlassian-webhook-identifier", delivery.to_owned()),
        ];
        self.post("/webhooks/jira/jira-main", &headers, bytes).await
    }

    async fn snapshot(&self) -> Value {
        let grants = self
            .store
            .list_grants(&GrantFilter::default(), 200, None)
            .await
            .unwrap()
            .items;
        json!({"grants": grants, "calls": self.provisioner.received_requests().await.unwrap().len()})
    }
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap(),
    )
    .unwrap()
}

/// The real Cloud capture, for `key`, moved to a status in `category` with a two-item changelog.
/// A webhook `timestamp` (epoch milliseconds) for an event happening now: a second ahead, so it follows every
/// grant the test bound before it (a closing never ends a grant bound after the event it reports).
fn just_now() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp() + 1) * 1000
}

fn cloud_transition(key: &str, status: &str, category: &str) -> Value {
    let mut body = fixture("jira-cloud-issue-updated-status-inprogress.json");
    body["timestamp"] = just_now().into();
    body["issue"]["key"] = key.into();
    body["issue"]["id"] = support::issue_id(key).into();
    let id = if category == "done" { 3 } else { 4 };
    body["issue"]["fields"]["status"] = json!({"name": status, "id": "10001", "statusCategory": {"id": id, "key": category, "colorName": "green", "name": "Localised"}});
    body["changelog"]["items"] = json!([
        {"field": "resolution", "fieldtype": "jira", "fieldId": "resolution", "from": null, "fromString": null, "to": "10000", "toString": "Done"},
        {"field": "status", "fieldtype": "jira", "fieldId": "status", "from": "3", "fromString": "In Progress", "to": "10001", "toString": status}
    ]);
    body
}

#[tokio::test]
async fn a_cloud_issue_moving_to_done_ends_its_grants_and_no_others() {
    let h = hooks().await;
    let active = h.jira_grant("SEC-42", false).await;
    let pending = h.jira_grant("SEC-42", true).await;
    let other = h.jira_grant("SEC-43", false).await;

    let (status, answer) = h
        .jira(&cloud_transition("SEC-42", "Done", "done"), "delivery-1")
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (answer["ended"].as_u64(), answer["cancelled"].as_u64()),
        (Some(1), Some(1)),
        "{answer}"
    );

    let ended = h.grant(&active).await;
    assert_eq!(
        (ended["status"].as_str(), ended["end_reason"].as_str()),
        (Some("ended"), Some("ticket_closed"))
    );
    // Alice still holds prod-db through SEC-43 (rule 8): access stays in the end system.
    assert_eq!(ended["deprovisioning"]["state"], "skipped");
    let cancelled = h.grant(&pending).await;
    assert_eq!(
        (
            cancelled["status"].as_str(),
            cancelled["end_reason"].as_str()
        ),
        (Some("cancelled"), Some("ticket_closed"))
    );
    assert_eq!(
        h.grant(&other).await["status"],
        "active",
        "a grant on another ticket must not end"
    );
    assert_eq!(
        provisioner_actions(&h.provisioner).await,
        ["grant", "grant"]
    );
}

/// Item 7 of issue 9: SEC-42 is moved to project OPS and becomes OPS-7 (same issue id). The closing delivery
/// names only the new key; the grants bound under the old key still end, matched by the id recorded when the
/// binding was checked.
#[tokio::test]
async fn a_jira_issue_moved_to_another_project_still_ends_its_grants() {
    let h = hooks().await;
    let active = h.jira_grant("SEC-42", false).await;
    let other = h.jira_grant("SEC-43", false).await;
    assert_eq!(
        h.grant(&active).await["ticket_id"],
        support::issue_id("SEC-42"),
        "the binding check recorded the issue id"
    );

    let mut moved = cloud_transition("OPS-7", "Done", "done");
    moved["issue"]["id"] = support::issue_id("SEC-42").into();
    let (status, answer) = h.jira(&moved, "delivery-moved").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1, "{answer}");
    let ended = h.grant(&active).await;
    assert_eq!(
        (ended["status"].as_str(), ended["end_reason"].as_str()),
        (Some("ended"), Some("ticket_closed"))
    );
    assert_eq!(h.grant(&other).await["status"], "active");

    // A delivery with an id nobody is bound to, under a key nobody is bound to, ends nothing.
    let mut stranger = cloud_transition("OPS-8", "Done", "done");
    stranger["issue"]["id"] = "424242".into();
    let (status, answer) = h.jira(&stranger, "delivery-stranger").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (answer["ended"].as_u64(), answer["already_closed"].as_u64()),
        (Some(0), Some(0)),
        "{answer}"
    );
    assert_eq!(h.grant(&other).await["status"], "active");
}

#[tokio::test]
async fn the_same_delivery_twice_ends_grants_once_and_revokes_once() {
    let h = hooks().await;
    let id = h.jira_grant("SEC-42", false).await;
    let body = cloud_transition("SEC-42", "Done", "done");
    assert_eq!(h.jira(&body, "delivery-1").await.1["ended"], 1);
    let (status, again) = h.jira(&body, "delivery-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["ignored"], true, "{again}");
    // The same event delivered under another id (a late duplicate) finds the grant already closed.
    let (status, late) = h.jira(&body, "delivery-2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (late["ended"].as_u64(), late["already_closed"].as_u64()),
        (Some(0), Some(1)),
        "{late}"
    );
    let events = h.store.list_events(&id, 100, None).await.unwrap().items;
    assert_eq!(events.iter().filter(|e| e.kind == "ended").count(), 1);
    assert_eq!(
        provisioner_actions(&h.provisioner).await,
        ["grant", "revoke"]
    );
}

#[tokio::test]
async fn a_reopened_ticket_never_restores_access() {
    let h = hooks().await;
    let id = h.jira_grant("SEC-42", false).await;
    h.jira(&cloud_transition("SEC-42", "Done", "done"), "d-1")
        .await;
    let reopened = cloud_transition("SEC-42", "In Progress", "indeterminate");
    let (status, answer) = h.jira(&reopened, "d-2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["ignored"], true);
    assert_eq!(h.grant(&id).await["status"], "ended");
    assert_eq!(
        provisioner_actions(&h.provisioner).await,
        ["grant", "revoke"]
    );
}

#[tokio::test]
async fn events_that_close_nothing_are_ignored() {
    let h = hooks().await;
    let id = h.jira_grant("SEC-42", false).await;
    let mut in_progress = fixture("jira-cloud-issue-updated-status-inprogress.json");
    in_progress["issue"]["key"] = "SEC-42".into();
    let mut created = fixture("jira-cloud-issue-created.json");
    created["issue"]["key"] = "SEC-42".into();
    for (body, delivery) in [
        (in_progress, "a"),
        (created, "b"),
        (
            json!({"webhookEvent": "project_created", "project": {"key": "X"}}),
            "c",
        ),
    ] {
        let (status, answer) = h.jira(&body, delivery).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["ignored"], true, "{answer}");
    }
    assert_eq!(h.grant(&id).await["status"], "active");
}

#[tokio::test]
async fn a_status_listed_in_closed_statuses_closes() {
    let h = hooks().await;
    let id = h.jira_grant("SEC-42", false).await;
    let (_, answer) = h
        .jira(
            &cloud_transition("SEC-42", "Won't Do", "indeterminate"),
            "d",
        )
        .await;
    assert_eq!(answer["ended"], 1, "{answer}");
    assert_eq!(h.grant(&id).await["end_reason"], "ticket_closed");
}

#[tokio::test]
async fn a_deleted_issue_ends_grants_as_deleted() {
    let h = hooks().await;
    let id = h.jira_grant("SEC-42", false).await;
    let mut body = fixture("jira-cloud-issue-updated-status-inprogress.json");
    body["issue"]["key"] = "SEC-42".into();
    body["timestamp"] = just_now().into();
    body["webhookEvent"] = "jira:issue_deleted".into();
    body.as_object_mut().unwrap().remove("changelog");
    body.as_object_mut()
        .unwrap()
        .remove("issue_event_type_name");
    let (_, answer) = h.jira(&body, "d").await;
    assert_eq!(answer["ended"], 1, "{answer}");
    assert_eq!(h.grant(&id).await["end_reason"], "ticket_deleted");
}

#[tokio::test]
async fn a_data_center_close_without_delivery_headers_is_understood() {
    let h = hooks().await;
    let id = h.jira_grant("SEC-42", false).await;
    let body = json!({
        "timestamp": just_now(), "webhookEvent": "jira:issue_updated", "issue_event_type_name": "issue_closed",
        "user": {"name": "valentijn", "key": "valentijn", "emailAddress": "v@example.com"},
        "issue": {"id": "12345", "key": "SEC-42", "fields": {"status": {"name": "Closed", "id": "6", "statusCategory": {"id": 3, "key": "done", "name": "Done"}}}},
        "changelog": {"id": "1", "items": [{"field": "status", "fieldtype": "jira", "from": "10000", "fromString": "New", "to": "6", "toString": "Closed"}]}
    });
    let bytes = body.to_string().into_bytes();
    let (status, answer) = h
        .post(
            "/webhooks/jira/jira-main",
            &[("x-hub-signature", hub_signature(&h.jira_secret, &bytes))],
            bytes,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1);
    assert_eq!(h.grant(&id).await["status"], "ended");
}

#[tokio::test]
async fn a_jira_automation_body_with_the_shared_secret_header_closes_once_jira_confirms_it() {
    let h = hooks().await;
    let id = h.jira_grant("SEC-42", false).await;
    // An Automation body carries no event time, so Jira is asked; it says the issue is done.
    Mock::given(path("/rest/api/3/issue/SEC-42"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(support::cloud_issue("SEC-42", "Done", "done", None)),
        )
        .with_priority(1)
        .mount(&h.stack.jira)
        .await;
    let body = json!({"source": "jira-automation", "key": "SEC-42", "statusCategory": "done"})
        .to_string()
        .into_bytes();
    let (status, answer) = h
        .post(
            "/webhooks/jira/jira-main",
            &[("x-ticketbound-secret", h.jira_secret.clone())],
            body,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1);
    assert_eq!(h.grant(&id).await["end_reason"], "ticket_closed");
}

/// What is sent, where, with which headers and body, and the status and error code it must get.
type BadDelivery<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, String)>,
    Vec<u8>,
    StatusCode,
    &'a str,
);

#[tokio::test]
async fn bad_deliveries_get_their_status_and_change_nothing() {
    let h = hooks().await;
    h.jira_grant("SEC-42", false).await;
    let before = h.snapshot().await;
    let body = cloud_transition("SEC-42", "Done", "done")
        .to_string()
        .into_bytes();
    let other = cloud_transition("SEC-43", "Done", "done")
        .to_string()
        .into_bytes();
    let signed = |b: &[u8]| hub_signature(&h.jira_secret, b);
    let mut huge = br#"{"webhookEvent":"jira:issue_updated","pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
    huge.extend(br#""}"#);
    let cases: Vec<BadDelivery> = vec![
        (
            "no signature",
            "/webhooks/jira/jira-main",
            vec![],
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "a wrong signature",
            "/webhooks/jira/jira-main",
            vec![("x-hub-signature", hub_signature("not-the-secret", &body))],
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "a signature over another body",
            "/webhooks/jira/jira-main",
            vec![("x-hub-signature", signed(&other))],
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "a malformed signature",
            "/webhooks/jira/jira-main",
            vec![("x-hub-signature", "sha256=zz".into())],
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "a wrong shared secret",
            "/webhooks/jira/jira-main",
            vec![("x-ticketbound-secret", "guess".into())],
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "the Freshservice secret on Jira",
            "/webhooks/jira/jira-main",
            vec![("x-ticketbound-secret", h.fs_secret.clone())],
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "an unknown connection",
            "/webhooks/jira/jira-nope",
            vec![("x-hub-signature", signed(&body))],
            body.clone(),
            StatusCode::NOT_FOUND,
            "unknown_connection",
        ),
        (
            "a Freshservice connection on the Jira route",
            "/webhooks/jira/fs-main",
            vec![("x-ticketbound-secret", h.fs_secret.clone())],
            body.clone(),
            StatusCode::NOT_FOUND,
            "unknown_connection",
        ),
        (
            "a body over 2 MiB",
            "/webhooks/jira/jira-main",
            vec![("x-hub-signature", signed(&huge))],
            huge.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "malformed JSON, signed",
            "/webhooks/jira/jira-main",
            vec![("x-hub-signature", signed(b"{\"webhookEvent\":"))],
            b"{\"webhookEvent\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "JSON naming no ticket, signed",
            "/webhooks/jira/jira-main",
            vec![("x-hub-signature", signed(b"{\"hello\":1}"))],
            b"{\"hello\":1}".to_vec(),
            StatusCode::BAD_REQUEST,
            "unrecognized_delivery",
        ),
        (
            "no Freshservice secret",
            "/webhooks/freshservice/fs-main",
            vec![],
            br#"{"ticket_id":"264"}"#.to_vec(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "a wrong Basic password",
            "/webhooks/freshservice/fs-main",
            vec![("authorization", support::basic("ticketbound", "guess"))],
            br#"{"ticket_id":"264"}"#.to_vec(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "a Freshservice body without a ticket",
            "/webhooks/freshservice/fs-main",
            vec![("x-ticketbound-secret", h.fs_secret.clone())],
            br#"{"ticket_id":"{{ticket.id_numeric}}"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "unrecognized_delivery",
        ),
    ];
    for (what, uri, headers, body, status, code) in cases {
        let (got, answer) = h.post(uri, &headers, body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{what}: {answer}");
        assert_eq!(h.snapshot().await, before, "{what} changed something");
    }
}

/// Freshservice answers `GET /api/v2/tickets/{id}` with `status` (or 404).
async fn freshservice_ticket(h: &Hooks, id: &str, status: Option<u64>) {
    h.fs.reset().await;
    let response = match status {
        Some(status) => {
            let mut ticket = fixture("freshservice-api-ticket-view-response.doc.json");
            ticket["ticket"]["id"] = id.parse::<u64>().unwrap().into();
            ticket["ticket"]["status"] = status.into();
            ResponseTemplate::new(200).set_body_json(ticket)
        }
        None => ResponseTemplate::new(404)
            .set_body_json(json!({"code": "access_denied", "message": "not found"})),
    };
    Mock::given(method("GET"))
        .and(path(format!("/api/v2/tickets/{id}")))
        .respond_with(response)
        .mount(&h.fs)
        .await;
}

#[tokio::test]
async fn freshservice_deliveries_are_confirmed_with_the_api_before_grants_end() {
    let h = hooks().await;
    let ticket = TicketRef {
        connection: "fs-main".into(),
        key: "264".into(),
    };
    let ids = seed_bound_active_grants(&h.app, &ticket, "prod-db", 2).await;
    let template = fixture("freshservice-webhook-template.json")
        .to_string()
        .replace("{{ticket.id_numeric}}", "264")
        .replace("{{ticket.status}}", "Resolved");
    let secret = [("x-ticketbound-secret", h.fs_secret.clone())];

    freshservice_ticket(&h, "264", Some(2)).await;
    let (status, answer) = h
        .post(
            "/webhooks/freshservice/fs-main",
            &secret,
            template.clone().into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["ignored"], true,
        "the body says Resolved but the API says open: the API wins"
    );
    assert_eq!(h.grant(&ids[0]).await["status"], "active");

    freshservice_ticket(&h, "264", Some(4)).await;
    let basic = [("authorization", support::basic("ticketbound", &h.fs_secret))];
    let (status, answer) = h
        .post(
            "/webhooks/freshservice/fs-main",
            &basic,
            template.into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 2, "{answer}");
    assert_eq!(h.grant(&ids[1]).await["end_reason"], "ticket_closed");
}

#[tokio::test]
async fn a_deleted_freshservice_ticket_ends_grants_as_deleted_and_an_unreachable_api_is_retried() {
    let h = hooks().await;
    let ticket = TicketRef {
        connection: "fs-main".into(),
        key: "77".into(),
    };
    let ids = seed_bound_active_grants(&h.app, &ticket, "prod-db", 1).await;
    let secret = [("x-ticketbound-secret", h.fs_secret.clone())];
    h.fs.reset().await;
    Mock::given(path("/api/v2/tickets/77"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&h.fs)
        .await;
    let (status, answer) = h
        .post(
            "/webhooks/freshservice/fs-main",
            &secret,
            br#"{"ticket_id": 77}"#.to_vec(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "never a silent pass: {answer}"
    );
    assert_eq!(h.grant(&ids[0]).await["status"], "active");

    freshservice_ticket(&h, "77", None).await;
    let (status, answer) = h
        .post(
            "/webhooks/freshservice/fs-main",
            &secret,
            br#"{"ticket_id": 77}"#.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(h.grant(&ids[0]).await["end_reason"], "ticket_deleted");
}

/// The confirmation schedules of the app's local scheduler: (name, when).
async fn confirmations(h: &Hooks) -> Vec<(String, time::OffsetDateTime)> {
    LocalScheduler::new(h.store.clone())
        .pending()
        .await
        .unwrap()
        .into_iter()
        .filter(|(name, _)| name.contains("-cnf"))
        .collect()
}

/// Issue 9 item 8: Freshservice rate limits the confirmation for longer than the webhook can wait. The
/// delivery is recorded as a one-time schedule after `Retry-After` and answered 202 (not a 503 the sender may
/// never retry); when the schedule fires and the ticket is resolved, every grant of the ticket ends.
#[tokio::test]
async fn a_rate_limited_freshservice_confirmation_is_deferred_and_the_closing_is_not_lost() {
    let h = hooks().await;
    let ticket = TicketRef {
        connection: "fs-main".into(),
        key: "88".into(),
    };
    let ids = seed_bound_active_grants(&h.app, &ticket, "prod-db", 2).await;
    let secret = [("x-ticketbound-secret", h.fs_secret.clone())];
    h.fs.reset().await;
    Mock::given(path("/api/v2/tickets/88"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "120"))
        .mount(&h.fs)
        .await;
    let before = time::OffsetDateTime::now_utc();

    let deliver = || {
        h.post(
            "/webhooks/freshservice/fs-main",
            &secret,
            br#"{"ticket_id": "88", "status": "Resolved"}"#.to_vec(),
        )
    };
    let (status, answer) = deliver().await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["deferred"], true);
    let scheduled = confirmations(&h).await;
    assert_eq!(scheduled.len(), 1, "{scheduled:?}");
    let wait = scheduled[0].1 - before;
    assert!(
        wait >= time::Duration::seconds(119) && wait <= time::Duration::seconds(125),
        "after Retry-After: {wait}"
    );
    for id in &ids {
        assert_eq!(
            h.grant(id).await["status"],
            "active",
            "nothing ends unconfirmed"
        );
    }
    // The sender retries while still rate limited: the same one schedule, not two.
    let (status, _) = deliver().await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(confirmations(&h).await.len(), 1);

    // It fires while Freshservice is still rate limiting: it re-arms under a new name.
    let grant_id = scheduled[0]
        .0
        .strip_prefix("tb-")
        .and_then(|n| n.strip_suffix("-cnf"))
        .unwrap()
        .to_owned();
    let job = Job::new(JobKind::Confirm, &grant_id);
    assert_eq!(
        h.app.run_job(&job).await.unwrap(),
        ticketbound::service::JobOutcome::Rearmed
    );
    let names: Vec<String> = confirmations(&h)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains(&format!("tb-{grant_id}-cnf-1")),
        "re-armed under its own name: {names:?}"
    );

    // The next firing finds the ticket resolved: both grants end, access is removed.
    freshservice_ticket(&h, "88", Some(4)).await;
    assert_eq!(
        h.app.run_job(&job.with_arming(1)).await.unwrap(),
        ticketbound::service::JobOutcome::Done
    );
    for id in &ids {
        let ended = h.grant(id).await;
        assert_eq!(
            (ended["status"].as_str(), ended["end_reason"].as_str()),
            (Some("ended"), Some("ticket_closed"))
        );
    }
    assert_eq!(
        provisioner_actions(&h.provisioner)
            .await
            .iter()
            .filter(|a| *a == "revoke")
            .count(),
        2,
        "one revoke per grant (two requesters)"
    );
}

#[tokio::test]
async fn a_rate_limited_confirmation_for_a_ticket_nobody_is_bound_to_schedules_nothing() {
    let h = hooks().await;
    h.fs.reset().await;
    Mock::given(path("/api/v2/tickets/99"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "600"))
        .mount(&h.fs)
        .await;
    let (status, answer) = h
        .post(
            "/webhooks/freshservice/fs-main",
            &[("x-ticketbound-secret", h.fs_secret.clone())],
            br#"{"ticket_id": 99}"#.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ignored"], true);
    assert!(confirmations(&h).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closing_webhook_racing_the_expiry_schedule_ends_the_grant_once() {
    for round in 0..4 {
        let h = hooks().await;
        let body = json!({"resource": "prod-db", "reason": "bound", "duration": "PT1S", "ticket": {"connection": "jira-main", "key": "SEC-42"}});
        let (_, grant) = call(
            &h.router,
            "POST",
            "/v1/grants",
            ALICE,
            Some(&body.to_string()),
        )
        .await;
        let id = grant["id"].as_str().unwrap().to_owned();
        call(
            &h.router,
            "POST",
            &format!("/v1/grants/{id}/approve"),
            APPROVER,
            None,
        )
        .await;
        tokio::time::sleep(StdDuration::from_millis(1100)).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let expiry = {
            let (app, id, barrier) = (h.app.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                app.run_job(&Job::new(JobKind::Expire, &id)).await.unwrap()
            })
        };
        let body = cloud_transition("SEC-42", "Done", "done")
            .to_string()
            .into_bytes();
        let signature = hub_signature(&h.jira_secret, &body);
        let barrier2 = barrier.clone();
        let router = h.router.clone();
        let webhook = tokio::spawn(async move {
            barrier2.wait().await;
            let request = Request::builder()
                .method("POST")
                .uri("/webhooks/jira/jira-main")
                .header("x-hub-signature", signature)
                .body(Body::from(body))
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            (
                status,
                serde_json::from_slice::<Value>(
                    &response.into_body().collect().await.unwrap().to_bytes(),
                )
                .unwrap(),
            )
        });
        let (_, (status, answer)) = (expiry.await.unwrap(), webhook.await.unwrap());
        assert_eq!(status, StatusCode::OK, "round {round}: {answer}");
        let events = h.store.list_events(&id, 100, None).await.unwrap().items;
        assert_eq!(
            events.iter().filter(|e| e.kind == "ended").count(),
            1,
            "round {round}"
        );
        let reason = h.grant(&id).await["end_reason"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            reason == "ticket_closed" || reason == "time_bound_reached",
            "round {round}: {reason}"
        );
        let revoked = ticketbound_tests::eventually(StdDuration::from_secs(5), || async {
            provisioner_actions(&h.provisioner).await.len() == 2
        })
        .await;
        assert!(revoked, "round {round}");
        assert_eq!(
            provisioner_actions(&h.provisioner).await,
            ["grant", "revoke"],
            "round {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_grants_on_one_ticket_all_end_in_one_delivery() {
    let h = hooks().await;
    let ticket = TicketRef {
        connection: "jira-main".into(),
        key: "SEC-500".into(),
    };
    let ids = seed_bound_active_grants(&h.app, &ticket, "prod-db", 500).await;
    let (status, answer) = h
        .jira(&cloud_transition("SEC-500", "Done", "done"), "big")
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 500);
    let active = GrantFilter {
        status: Some(ticketbound::domain::GrantStatus::Active),
        ..GrantFilter::default()
    };
    assert!(
        h.store
            .list_grants(&active, 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        provisioner_actions(&h.provisioner).await.len(),
        500,
        "one revoke per grant (one requester each)"
    );
    assert_eq!(h.grant(&ids[499]).await["end_reason"], "ticket_closed");
}

/// A delivery as API Gateway hands it to `ticketbound-jira-webhook`: payload 2.0, no authorizer, the body
/// base64-encoded (API Gateway does this for many content types): the signature must hold over the raw bytes.
#[tokio::test]
async fn a_signed_delivery_through_an_api_gateway_event_ends_grants() {
    use base64::Engine;
    let h = hooks().await;
    let id = h.jira_grant("SEC-42", false).await;
    let body = cloud_transition("SEC-42", "Done", "done").to_string();
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/apigw-v2-post-jwt.json")).unwrap();
    event["rawPath"] = "/webhooks/jira/jira-main".into();
    event["rawQueryString"] = "".into();
    event
        .as_object_mut()
        .unwrap()
        .remove("queryStringParameters");
    event["routeKey"] = "POST /webhooks/jira/{connection}".into();
    event["requestContext"]["http"]["path"] = "/webhooks/jira/jira-main".into();
    event["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    event["headers"] = json!({
        "content-type": "application/json",
        "x-hub-signature": hub_signature(&h.jira_secret, body.as_bytes()),
        "x-atlassian-webhook-identifier": "apigw-1",
    });
    event["body"] = base64::engine::general_purpose::STANDARD
        .encode(body.as_bytes())
        .into();
    event["isBase64Encoded"] = true.into();
    let request = lambda_http::request::from_str(&event.to_string()).expect("API Gateway v2 event");
    let router = ticketbound::http::webhooks::jira_router(h.app.clone());
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let answer: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1);
    assert_eq!(h.grant(&id).await["end_reason"], "ticket_closed");
}

// ---------------------------------------------------------------------------------------------------------------
// Jira Data Center webhooks that cannot sign: HTTP Basic with the webhook secret as the password (issue 11).

/// A Jira Data Center connection `jira-dc` beside the hooks' Cloud one (its API on wiremock, never asked by a
/// delivery) and `n` active grants bound to `DC-7`, seeded as approved. Answers the connection's webhook secret
/// and the grant ids.
async fn data_center(h: &Hooks, n: usize) -> (String, Vec<String>, MockServer) {
    let dc = MockServer::start().await;
    let body = json!({"id": "jira-dc", "kind": "jira_data_center", "base_url": dc.uri(), "personal_access_token": "dc-pat-0123456789"});
    let (status, created) = call(
        &h.router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["webhook_secret"].as_str().unwrap().to_owned();
    let ticket = TicketRef {
        connection: "jira-dc".into(),
        key: "DC-7".into(),
    };
    let ids = seed_bound_active_grants(&h.app, &ticket, "prod-db", n).await;
    (secret, ids, dc)
}

/// A Data Center delivery closing `key`: REST v2 shape, users by name, changelog items without `fieldId`.
fn data_center_close(key: &str) -> Vec<u8> {
    json!({
        "timestamp": just_now(), "webhookEvent": "jira:issue_updated", "issue_event_type_name": "issue_closed",
        "user": {"name": "valentijn", "key": "valentijn", "emailAddress": "v@example.com"},
        "issue": {"id": "12345", "key": key, "fields": {"status": {"name": "Closed", "id": "6", "statusCategory": {"id": 3, "key": "done", "name": "Done"}}}},
        "changelog": {"id": "1", "items": [{"field": "status", "fieldtype": "jira", "from": "10000", "fromString": "New", "to": "6", "toString": "Closed"}]}
    })
    .to_string()
    .into_bytes()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn a_data_center_delivery_with_the_secret_as_basic_password_ends_its_grants() {
    let h = hooks().await;
    let (secret, ids, dc) = data_center(&h, 2).await;
    let cloud = h.jira_grant("SEC-42", false).await;

    let (status, answer) = h
        .post(
            "/webhooks/jira/jira-dc",
            &[("authorization", basic("ticketbound", &secret))],
            data_center_close("DC-7"),
        )
        .await;

    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ticket"], "DC-7");
    assert_eq!(answer["ended"], 2);
    for id in &ids {
        let grant = h.grant(id).await;
        assert_eq!(grant["status"], "ended");
        assert_eq!(grant["end_reason"], "ticket_closed");
    }
    assert_eq!(h.grant(&cloud).await["status"], "active");
    assert_eq!(
        provisioner_actions(&h.provisioner)
            .await
            .iter()
            .filter(|a| a.as_str() == "revoke")
            .count(),
        2,
        "one revoke per grant"
    );
    assert!(
        dc.received_requests().await.unwrap().is_empty(),
        "a Jira delivery is not confirmed through the API"
    );
}

#[tokio::test]
async fn a_data_center_delivery_with_any_user_name_and_a_rotated_secret_is_accepted() {
    let h = hooks().await;
    let (old, ids, _dc) = data_center(&h, 1).await;
    // Rotation: a second secret is added; the first stays active until retired.
    let (status, rotated) = call(
        &h.router,
        "PATCH",
        "/v1/connections/jira-dc",
        ADMIN,
        Some(r#"{"new_webhook_secret": true}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["webhook_secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    let (status, answer) = h
        .post(
            "/webhooks/jira/jira-dc",
            &[("authorization", basic("", &old))],
            data_center_close("DC-7"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1);
    assert_eq!(h.grant(&ids[0]).await["end_reason"], "ticket_closed");

    let (status, answer) = h
        .post(
            "/webhooks/jira/jira-dc",
            &[("authorization", basic("jira-dc-webhook", &new))],
            data_center_close("DC-7"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["already_closed"], 1, "{answer}");
}

/// What is sent, where, with which headers and body, and what the 401's message must say.
type RefusedProof<'a> = (&'a str, &'a str, Vec<(&'a str, String)>, &'a [u8], &'a str);

#[tokio::test]
async fn basic_auth_that_does_not_prove_the_secret_is_refused_and_changes_nothing() {
    let h = hooks().await;
    let (dc_secret, _ids, _dc) = data_center(&h, 2).await;
    h.jira_grant("SEC-42", false).await;
    let before = h.snapshot().await;
    let dc_body = data_center_close("DC-7");
    let cloud_body = cloud_transition("SEC-42", "Done", "done")
        .to_string()
        .into_bytes();
    let cases: Vec<RefusedProof> = vec![
        (
            "a wrong Basic password",
            "/webhooks/jira/jira-dc",
            vec![("authorization", basic("ticketbound", "not-the-secret"))],
            &dc_body,
            "Basic auth password is not",
        ),
        (
            "the secret as the user name",
            "/webhooks/jira/jira-dc",
            vec![("authorization", basic(&dc_secret, "x"))],
            &dc_body,
            "Basic auth password is not",
        ),
        (
            "another connection's secret",
            "/webhooks/jira/jira-dc",
            vec![("authorization", basic("ticketbound", &h.jira_secret))],
            &dc_body,
            "Basic auth password is not",
        ),
        (
            "a bearer token",
            "/webhooks/jira/jira-dc",
            vec![("authorization", format!("Bearer {dc_secret}"))],
            &dc_body,
            "is not Basic auth",
        ),
        (
            "Basic with the right password on a Jira Cloud connection",
            "/webhooks/jira/jira-main",
            vec![("authorization", basic("ticketbound", &h.jira_secret))],
            &cloud_body,
            "only from Jira Data Center",
        ),
        (
            "a wrong signature with the right Basic password",
            "/webhooks/jira/jira-dc",
            vec![
                ("x-hub-signature", hub_signature("not-the-secret", &dc_body)),
                ("authorization", basic("ticketbound", &dc_secret)),
            ],
            &dc_body,
            "signature alone",
        ),
        (
            "a signature over another body with the right Basic password",
            "/webhooks/jira/jira-dc",
            vec![
                ("x-hub-signature", hub_signature(&dc_secret, &cloud_body)),
                ("authorization", basic("ticketbound", &dc_secret)),
            ],
            &dc_body,
            "signature alone",
        ),
        (
            "a wrong signature with the right shared secret (Cloud)",
            "/webhooks/jira/jira-main",
            vec![
                (
                    "x-hub-signature",
                    hub_signature("not-the-secret", &cloud_body),
                ),
                ("x-ticketbound-secret", h.jira_secret.clone()),
            ],
            &cloud_body,
            "signature alone",
        ),
        (
            "a wrong shared secret with the right Basic password",
            "/webhooks/jira/jira-dc",
            vec![
                ("x-ticketbound-secret", "guess".into()),
                ("authorization", basic("ticketbound", &dc_secret)),
            ],
            &dc_body,
            "X-Ticketbound-Secret is not",
        ),
    ];
    for (what, uri, headers, body, message) in cases {
        let (status, answer) = h.post(uri, &headers, body.to_vec()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_signature", "{what}");
        let text = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{what}: {text}");
        assert!(
            !text.contains(&dc_secret) && !text.contains(&h.jira_secret),
            "{what}: a secret in the answer"
        );
    }
    assert_eq!(
        h.snapshot().await,
        before,
        "a refused delivery changes nothing"
    );
}

/// A Data Center delivery with Basic auth as API Gateway hands it to `ticketbound-jira-webhook` (payload 2.0,
/// no authorizer, header names lower-cased): accepted and ends the grant; the same event with a wrong password
/// is a 401 that changes nothing.
#[tokio::test]
async fn a_basic_auth_delivery_through_an_api_gateway_event_ends_grants_and_a_wrong_one_does_not() {
    let h = hooks().await;
    let (secret, ids, _dc) = data_center(&h, 1).await;
    let body = String::from_utf8(data_center_close("DC-7")).unwrap();
    let event = |authorization: String| {
        let mut event: Value =
            serde_json::from_str(include_str!("../fixtures/apigw-v2-post-jwt.json")).unwrap();
        event["rawPath"] = "/webhooks/jira/jira-dc".into();
        event["rawQueryString"] = "".into();
        event
            .as_object_mut()
            .unwrap()
            .remove("queryStringParameters");
        event["routeKey"] = "POST /webhooks/jira/{connection}".into();
        event["requestContext"]["http"]["path"] = "/webhooks/jira/jira-dc".into();
        event["requestContext"]
            .as_object_mut()
            .unwrap()
            .remove("authorizer");
        event["headers"] =
            json!({"content-type": "application/json", "authorization": authorization});
        event["body"] = body.clone().into();
        event["isBase64Encoded"] = false.into();
        lambda_http::request::from_str(&event.to_string()).expect("API Gateway v2 event")
    };
    let router = ticketbound::http::webhooks::jira_router(h.app.clone());
    let send = |request: lambda_http::Request| {
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };

    let before = h.snapshot().await;
    let (status, answer) = send(event(basic("ticketbound", "not-the-secret"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_signature");
    assert_eq!(h.snapshot().await, before);

    let (status, answer) = send(event(basic("ticketbound", &secret))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1);
    assert_eq!(h.grant(&ids[0]).await["end_reason"], "ticket_closed");
}

/// One route serves every kind: `/webhooks/{kind}/{connection}` with the connection's kind (or its source's
/// name) authenticates and interprets a delivery as that kind's own route does, and refuses what it refuses.
#[tokio::test]
async fn the_generic_route_serves_each_kind_as_its_own_route_does() {
    let h = hooks().await;
    let grant = h.jira_grant("SEC-42", false).await;
    let before = h.snapshot().await;
    let body = cloud_transition("SEC-42", "Done", "done");
    let bytes = body.to_string().into_bytes();

    // Unknown kinds, and a connection that is not of the kind named, are not found: nothing changes.
    let signed = [("x-hub-signature", hub_signature(&h.jira_secret, &bytes))];
    for uri in [
        "/webhooks/zendesk/jira-main",
        "/webhooks/JIRA_CLOUD/jira-main",
    ] {
        let (status, answer) = h.post(uri, &signed, bytes.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(answer["error"]["code"], "unknown_kind", "{uri}");
    }
    for uri in [
        "/webhooks/freshservice/jira-main",
        "/webhooks/servicenow/jira-main",
        "/webhooks/jira_cloud/fs-main",
        "/webhooks/jira_data_center/jira-main",
        "/webhooks/jira_cloud/nobody",
    ] {
        let (status, answer) = h.post(uri, &signed, bytes.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(answer["error"]["code"], "unknown_connection", "{uri}");
    }
    // A forged signature is refused before anything is read or changed.
    let forged = [("x-hub-signature", hub_signature("not-the-secret", &bytes))];
    let (status, answer) = h
        .post("/webhooks/jira_cloud/jira-main", &forged, bytes.clone())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["error"]["code"], "invalid_signature");
    assert_eq!(h.snapshot().await, before);

    // The signed delivery ends the bound grant.
    let (status, answer) = h
        .post("/webhooks/jira_cloud/jira-main", &signed, bytes)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1, "{answer}");
    assert_eq!(h.grant(&grant).await["end_reason"], "ticket_closed");
}

/// The Lambda path of the generic route: an API Gateway event for `/webhooks/servicenow/{connection}` into the
/// `ticketbound-webhook` function's router. The Business Rule's signed body names the number; the record is
/// re-read (inactive) before the bound grant ends, and a wrong signature changes nothing.
#[tokio::test]
async fn a_servicenow_delivery_through_an_api_gateway_event_to_the_generic_function_ends_grants() {
    use base64::Engine;
    use ticketbound::adapters::servicenow::events::servicenow_signature;
    let h = hooks().await;
    let snow = MockServer::start().await;
    let body = json!({"id": "snow", "kind": "servicenow", "base_url": snow.uri(), "username": "svc", "password": "snow-pass"});
    let (status, created) = call(
        &h.router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["webhook_secret"].as_str().unwrap().to_owned();
    Mock::given(method("GET"))
        .and(path("/api/now/table/task"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": [{
            "sys_id": "9d385017c611228701d22104cc95c371", "number": "INC0010001", "short_description": "Access",
            "state": "7", "active": "false", "sys_class_name": "incident", "assigned_to": ""
        }]})))
        .mount(&snow)
        .await;
    let ticket = TicketRef {
        connection: "snow".into(),
        key: "INC0010001".into(),
    };
    let ids = seed_bound_active_grants(&h.app, &ticket, "prod-db", 1).await;
    let delivery = json!({"table": "incident", "sys_id": "9d385017c611228701d22104cc95c371", "number": "INC0010001", "state": "7", "active": "false"}).to_string();
    let router = ticketbound::http::webhooks::generic_router(h.app.clone());
    let send = |signature: String| {
        let mut event: Value =
            serde_json::from_str(include_str!("../fixtures/apigw-v2-post-jwt.json")).unwrap();
        event["rawPath"] = "/webhooks/servicenow/snow".into();
        event["rawQueryString"] = "".into();
        event
            .as_object_mut()
            .unwrap()
            .remove("queryStringParameters");
        event["routeKey"] = "POST /webhooks/{kind}/{connection}".into();
        event["requestContext"]["http"]["path"] = "/webhooks/servicenow/snow".into();
        event["requestContext"]
            .as_object_mut()
            .unwrap()
            .remove("authorizer");
        event["headers"] =
            json!({"content-type": "application/json", "x-ticketbound-signature": signature});
        event["body"] = base64::engine::general_purpose::STANDARD
            .encode(delivery.as_bytes())
            .into();
        event["isBase64Encoded"] = true.into();
        let request =
            lambda_http::request::from_str(&event.to_string()).expect("API Gateway v2 event");
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let (status, answer) = send(servicenow_signature("not-the-secret", delivery.as_bytes())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_signature");
    assert_eq!(h.grant(&ids[0]).await["status"], "active");
    let (status, answer) = send(servicenow_signature(&secret, delivery.as_bytes())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1, "{answer}");
    assert_eq!(h.grant(&ids[0]).await["end_reason"], "ticket_closed");
}

/// The Lambda path of the generic route for Linear: an API Gateway event for `/webhooks/linear/{connection}` into
/// the `ticketbound-webhook` function's router. Linear's signed `Issue` update moving the issue to a completed
/// state ends the bound grant; a forged signature, or the same signed body sent two minutes late (a replay),
/// changes nothing.
#[tokio::test]
async fn a_linear_delivery_through_an_api_gateway_event_to_the_generic_function_ends_grants() {
    use base64::Engine;
    use ticketbound::adapters::ticket_systems::linear::linear_signature;
    let h = hooks().await;
    let body = json!({"id": "lin", "kind": "linear", "api_key": "lin_api_key"});
    let (status, created) = call(
        &h.router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["webhook_secret"].as_str().unwrap().to_owned();
    let ticket = TicketRef {
        connection: "lin".into(),
        key: "ENG-42".into(),
    };
    let ids = seed_bound_active_grants(&h.app, &ticket, "prod-db", 1).await;
    let delivery = |at_ms: i64| {
        json!({
            "action": "update", "type": "Issue", "webhookTimestamp": at_ms, "webhookId": "wh-1",
            "organizationId": "org-1", "url": "https://linear.app/acme/issue/ENG-42",
            "data": {"id": "2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9", "identifier": "ENG-42", "title": "Access",
                     "trashed": null, "archivedAt": null,
                     "state": {"id": "s-done", "name": "Done", "type": "completed"}},
            "updatedFrom": {"stateId": "s-started"}
        })
        .to_string()
    };
    let router = ticketbound::http::webhooks::generic_router(h.app.clone());
    let send = |body: String, signature: String, delivery_id: &str| {
        let mut event: Value =
            serde_json::from_str(include_str!("../fixtures/apigw-v2-post-jwt.json")).unwrap();
        event["rawPath"] = "/webhooks/linear/lin".into();
        event["rawQueryString"] = "".into();
        event
            .as_object_mut()
            .unwrap()
            .remove("queryStringParameters");
        event["routeKey"] = "POST /webhooks/{kind}/{connection}".into();
        event["requestContext"]["http"]["path"] = "/webhooks/linear/lin".into();
        event["requestContext"]
            .as_object_mut()
            .unwrap()
            .remove("authorizer");
        event["headers"] = json!({"content-type": "application/json", "linear-signature": signature,
                                  "linear-delivery": delivery_id, "linear-event": "Issue"});
        event["body"] = base64::engine::general_purpose::STANDARD
            .encode(body.as_bytes())
            .into();
        event["isBase64Encoded"] = true.into();
        let request =
            lambda_http::request::from_str(&event.to_string()).expect("API Gateway v2 event");
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let fresh = delivery(now_ms + 1000);
    let (status, answer) = send(
        fresh.clone(),
        linear_signature("not-the-secret", fresh.as_bytes()),
        "d-0",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_signature");
    let late = delivery(now_ms - 120_000);
    let (status, answer) = send(
        late.clone(),
        linear_signature(&secret, late.as_bytes()),
        "d-1",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_signature");
    assert_eq!(h.grant(&ids[0]).await["status"], "active");
    let (status, answer) = send(
        fresh.clone(),
        linear_signature(&secret, fresh.as_bytes()),
        "d-2",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ended"], 1, "{answer}");
    assert_eq!(h.grant(&ids[0]).await["end_reason"], "ticket_closed");
}
