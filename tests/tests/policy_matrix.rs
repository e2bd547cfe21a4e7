//! The approval policy (issue 13) route by route: for every combination of who may request (`requesters`),
//! who decides (the approver group, a listed group, listed people) and the quorum (1 or 2), every caller kind
//! is tried on every route. Each answer is compared with what the rules say, by status and §5 `code`; every
//! refusal must leave the grant, its audit trail, the number of grants and the stored schedules exactly as
//! they were.

use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};

use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::ports::{GrantFilter, GrantStore};
use ticketbound_tests::{ADMIN, call, local_router, local_test_app};

type Who = (&'static str, &'static str);

/// No groups.
const ALICE: Who = ("alice@example.com", "");
/// May request resources limited to `oncall`.
const OLIVE: Who = ("olive@example.com", "oncall");
/// The deployment's approver group.
const BOB: Who = ("bob@example.com", "ticketbound-approvers");
/// The deployment's approver group, and `oncall`.
const BERT: Who = ("bert@example.com", "ticketbound-approvers,oncall");
/// A listed group (`dba`).
const DAVE: Who = ("dave@example.com", "dba");
/// The listed group, and `oncall`.
const DORA: Who = ("dora@example.com", "dba,oncall");
/// A listed person.
const DANA: Who = ("dana@example.com", "");
/// A listed person, in `oncall`.
const ERIN: Who = ("erin@example.com", "oncall");

const EVERYONE: [Who; 9] = [ALICE, OLIVE, BOB, BERT, DAVE, DORA, DANA, ERIN, ADMIN];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scope {
    ApproverGroup,
    ListedGroup,
    ListedPeople,
}

#[derive(Clone, Copy, Debug)]
struct Policy {
    scope: Scope,
    quorum: u32,
    oncall_only: bool,
}

impl Policy {
    fn id(&self) -> String {
        format!(
            "{}-q{}-{}",
            match self.scope {
                Scope::ApproverGroup => "group",
                Scope::ListedGroup => "dba",
                Scope::ListedPeople => "people",
            },
            self.quorum,
            if self.oncall_only { "oncall" } else { "all" }
        )
    }

    fn body(&self) -> Value {
        let mut body = json!({"name": self.id(), "provisioner": {"kind": "none"}, "approvals_required": self.quorum});
        match self.scope {
            Scope::ApproverGroup => {}
            Scope::ListedGroup => body["approvers"] = json!({"groups": ["dba"]}),
            Scope::ListedPeople => {
                body["approvers"] = json!({"users": ["Dana@Example.com", "erin@example.com"]})
            }
        }
        if self.oncall_only {
            body["requesters"] = json!(["oncall"]);
        }
        body
    }

    // ---- the rules, as the operator guide states them -------------------------------------------------------

    fn in_group(who: Who, group: &str) -> bool {
        who.1.split(',').any(|g| g == group)
    }

    fn may_request(&self, who: Who) -> bool {
        !self.oncall_only || Self::in_group(who, "oncall")
    }

    /// Listed people only, and the requester among them: fewer than the quorum are left.
    fn quorum_unreachable_for(&self, who: Who) -> bool {
        self.scope == Scope::ListedPeople && self.quorum == 2 && [DANA.0, ERIN.0].contains(&who.0)
    }

    fn decides(&self, who: Who) -> bool {
        match self.scope {
            Scope::ApproverGroup => Self::in_group(who, "ticketbound-approvers"),
            Scope::ListedGroup => Self::in_group(who, "dba"),
            Scope::ListedPeople => [DANA.0, ERIN.0].contains(&who.0),
        }
    }

    fn sees_all(who: Who) -> bool {
        Self::in_group(who, "ticketbound-approvers") || Self::in_group(who, "ticketbound-admins")
    }

    fn sees(&self, who: Who, requester: Who) -> bool {
        who == requester
            || Self::sees_all(who)
            || (self.scope != Scope::ApproverGroup && self.decides(who))
    }

    /// What approving (or denying) answers: `Ok(())` or the refusal.
    fn decision(&self, who: Who, requester: Who) -> Result<(), (StatusCode, &'static str)> {
        if !self.decides(who) {
            let named =
                self.scope != Scope::ApproverGroup && (who == requester || Self::sees_all(who));
            return Err((
                StatusCode::FORBIDDEN,
                if named {
                    "not_a_resource_approver"
                } else {
                    "not_an_approver"
                },
            ));
        }
        if who == requester {
            return Err((StatusCode::FORBIDDEN, "self_approval"));
        }
        Ok(())
    }
}

fn policies() -> Vec<Policy> {
    let mut all = Vec::new();
    for scope in [
        Scope::ApproverGroup,
        Scope::ListedGroup,
        Scope::ListedPeople,
    ] {
        for quorum in [1, 2] {
            for oncall_only in [false, true] {
                all.push(Policy {
                    scope,
                    quorum,
                    oncall_only,
                });
            }
        }
    }
    all
}

/// What a refusal must not change: the grant, its trail, how many grants there are, the stored schedules.
async fn snapshot(store: &EmbeddedStore, id: Option<&str>) -> Value {
    let grants = store
        .list_grants(&GrantFilter::default(), 200, None)
        .await
        .unwrap()
        .items;
    let (grant, events) = match id {
        Some(id) => (
            json!(store.get_grant(id).await.unwrap()),
            json!(store.list_events(id, 200, None).await.unwrap().items),
        ),
        None => (Value::Null, Value::Null),
    };
    let schedules = LocalScheduler::new(store.clone()).pending().await.unwrap();
    json!({"count": grants.len(), "grant": grant, "events": events, "schedules": format!("{schedules:?}")})
}

fn request_body(resource: &str) -> String {
    json!({"resource": resource, "reason": "INC-7 debugging", "duration": "PT1H"}).to_string()
}

async fn request(router: &Router, who: Who, resource: &str) -> String {
    let (status, body) = call(
        router,
        "POST",
        "/v1/grants",
        who,
        Some(&request_body(resource)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{who:?} on {resource}: {body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Calls `method path` as `who`, expecting a refusal; checks the code, a message, and that nothing changed.
async fn refused(
    router: &Router,
    store: &EmbeddedStore,
    grant: Option<&str>,
    (method, path, body): (&str, &str, Option<&str>),
    who: Who,
    (status, code): (StatusCode, &str),
    context: &str,
) {
    let before = snapshot(store, grant).await;
    let (got, answer) = call(router, method, path, who, body).await;
    assert_eq!(
        (got, answer["error"]["code"].as_str().unwrap_or_default()),
        (status, code),
        "{context}: {answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.len() > 10),
        "{context}: a message names the rule: {answer}"
    );
    assert_eq!(
        snapshot(store, grant).await,
        before,
        "{context}: a refusal changed the store"
    );
}

#[tokio::test]
async fn every_route_allows_and_refuses_as_the_policy_says_and_a_refusal_changes_nothing() {
    let mut checked = 0;
    for policy in policies() {
        // One application per resource keeps each snapshot small.
        let (app, store, _) = local_test_app();
        let router = local_router(app);
        let rid = policy.id();
        let (status, resource) = call(
            &router,
            "PUT",
            &format!("/v1/resources/{rid}"),
            ADMIN,
            Some(&policy.body().to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{resource}");

        for requester in EVERYONE {
            let context = format!("{rid}: {} requests", requester.0);
            // POST /v1/grants
            if !policy.may_request(requester) {
                refused(
                    &router,
                    &store,
                    None,
                    ("POST", "/v1/grants", Some(&request_body(&rid))),
                    requester,
                    (StatusCode::FORBIDDEN, "not_a_requester"),
                    &context,
                )
                .await;
                checked += 1;
                continue;
            }
            if policy.quorum_unreachable_for(requester) {
                refused(
                    &router,
                    &store,
                    None,
                    ("POST", "/v1/grants", Some(&request_body(&rid))),
                    requester,
                    (StatusCode::UNPROCESSABLE_ENTITY, "quorum_unreachable"),
                    &context,
                )
                .await;
                checked += 1;
                continue;
            }
            let id = request(&router, requester, &rid).await;
            checked += 1;
            let (_, pending) =
                call(&router, "GET", &format!("/v1/grants/{id}"), requester, None).await;
            assert_eq!(
                (&pending["status"], &pending["approvals_required"]),
                (&json!("pending"), &json!(policy.quorum)),
                "{context}: {pending}"
            );

            for actor in EVERYONE {
                let context = format!("{context}, {} acts", actor.0);
                // GET /v1/grants/{id} and its events
                for path in [
                    format!("/v1/grants/{id}"),
                    format!("/v1/grants/{id}/events"),
                ] {
                    if policy.sees(actor, requester) {
                        let (status, body) = call(&router, "GET", &path, actor, None).await;
                        assert_eq!(status, StatusCode::OK, "{context} {path}: {body}");
                    } else {
                        refused(
                            &router,
                            &store,
                            Some(&id),
                            ("GET", &path, None),
                            actor,
                            (StatusCode::NOT_FOUND, "grant_not_found"),
                            &context,
                        )
                        .await;
                    }
                    checked += 1;
                }
                // POST approve / deny
                for verb in ["approve", "deny"] {
                    let path = format!("/v1/grants/{id}/{verb}");
                    match policy.decision(actor, requester) {
                        Err(refusal) => {
                            refused(
                                &router,
                                &store,
                                Some(&id),
                                ("POST", &path, None),
                                actor,
                                refusal,
                                &format!("{context} ({verb})"),
                            )
                            .await;
                        }
                        Ok(()) => {
                            // Allowed: on a fresh request, so the shared one stays pending for the others.
                            let fresh = request(&router, requester, &rid).await;
                            let (status, body) = call(
                                &router,
                                "POST",
                                &format!("/v1/grants/{fresh}/{verb}"),
                                actor,
                                None,
                            )
                            .await;
                            assert_eq!(status, StatusCode::OK, "{context} ({verb}): {body}");
                            let expected = match (verb, policy.quorum) {
                                ("deny", _) => "denied",
                                (_, 1) => "active",
                                _ => "pending",
                            };
                            assert_eq!(body["status"], expected, "{context} ({verb}): {body}");
                            if verb == "approve" {
                                assert_eq!(
                                    body["approvals"][0]["by"], actor.0,
                                    "{context}: the approval is recorded: {body}"
                                );
                                // The same approver again: not a second approval.
                                let again = if policy.quorum == 2 {
                                    (StatusCode::CONFLICT, "already_approved")
                                } else {
                                    (StatusCode::CONFLICT, "grant_not_pending")
                                };
                                refused(
                                    &router,
                                    &store,
                                    Some(&fresh),
                                    ("POST", &format!("/v1/grants/{fresh}/approve"), None),
                                    actor,
                                    again,
                                    &format!("{context} (approve again)"),
                                )
                                .await;
                            }
                        }
                    }
                    checked += 1;
                }
                // POST revoke (withdraw) of a pending request
                let may_revoke = actor == requester
                    || Policy::sees_all(actor)
                    || (policy.scope != Scope::ApproverGroup && policy.decides(actor));
                if may_revoke {
                    let fresh = request(&router, requester, &rid).await;
                    let (status, body) = call(
                        &router,
                        "POST",
                        &format!("/v1/grants/{fresh}/revoke"),
                        actor,
                        None,
                    )
                    .await;
                    assert_eq!(status, StatusCode::OK, "{context} (revoke): {body}");
                    assert_eq!(body["status"], "cancelled", "{context}: {body}");
                    let reason = if actor == requester {
                        "withdrawn"
                    } else {
                        "revoked"
                    };
                    assert_eq!(body["end_reason"], reason, "{context}: {body}");
                } else {
                    refused(
                        &router,
                        &store,
                        Some(&id),
                        ("POST", &format!("/v1/grants/{id}/revoke"), None),
                        actor,
                        (StatusCode::NOT_FOUND, "grant_not_found"),
                        &format!("{context} (revoke)"),
                    )
                    .await;
                }
                checked += 1;
            }
        }
    }
    eprintln!("{checked} (route, policy, requester, caller) cases checked");
    assert!(checked > 2_000, "{checked}");
}

/// A two-person rule through the API: two distinct approvers, each recorded; the second activates it, and
/// each approval is in the trail.
#[tokio::test]
async fn a_quorum_of_two_needs_two_distinct_approvers_and_records_each() {
    let (app, _store, _) = local_test_app();
    let router = local_router(app);
    let body = json!({"name": "Vault", "provisioner": {"kind": "none"}, "approvers": {"groups": ["dba"]}, "approvals_required": 2});
    call(
        &router,
        "PUT",
        "/v1/resources/vault",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    let id = request(&router, ALICE, "vault").await;

    let (status, first) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        DAVE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "pending");
    assert_eq!(first["decided_by"], Value::Null);
    assert_eq!(first["expires_at"], Value::Null);

    let (status, second) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        DORA,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["status"], "active");
    assert_eq!(second["decided_by"], DORA.0);
    let by: Vec<&str> = second["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["by"].as_str().unwrap())
        .collect();
    assert_eq!(by, [DAVE.0, DORA.0]);
    assert!(second["expires_at"].is_string());

    let (_, events) = call(
        &router,
        "GET",
        &format!("/v1/grants/{id}/events"),
        ALICE,
        None,
    )
    .await;
    let trail: Vec<(&str, &str)> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["actor"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        &trail[..3],
        [
            ("requested", ALICE.0),
            ("approval_recorded", DAVE.0),
            ("approved", DORA.0)
        ]
    );

    // A third approver comes too late.
    let dina: Who = ("dina@example.com", "dba");
    let (status, late) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        dina,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(late["error"]["code"], "grant_not_pending");
}

/// Any one denial denies, whatever approvals were recorded; they stay on the grant.
#[tokio::test]
async fn a_denial_after_an_approval_denies_and_keeps_the_approval_on_record() {
    let (app, _store, _) = local_test_app();
    let router = local_router(app);
    let body = json!({"name": "Vault", "provisioner": {"kind": "none"}, "approvers": {"users": ["dana@example.com", "erin@example.com"]}, "approvals_required": 2});
    call(
        &router,
        "PUT",
        "/v1/resources/vault",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    let id = request(&router, ALICE, "vault").await;
    let (status, _) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        DANA,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, denied) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/deny"),
        ERIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{denied}");
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["end_reason"], "denied");
    assert_eq!(denied["decided_by"], ERIN.0);
    assert_eq!(denied["approvals"][0]["by"], DANA.0);
}

/// The approvers a resource lists find its requests in their list, and nothing else of other people's.
#[tokio::test]
async fn a_resource_approver_lists_that_resources_requests_and_their_own_only() {
    let (app, _store, _) = local_test_app();
    let router = local_router(app);
    let scoped =
        json!({"name": "Vault", "provisioner": {"kind": "none"}, "approvers": {"groups": ["dba"]}});
    call(
        &router,
        "PUT",
        "/v1/resources/vault",
        ADMIN,
        Some(&scoped.to_string()),
    )
    .await;
    let open = json!({"name": "Wiki", "provisioner": {"kind": "none"}});
    call(
        &router,
        "PUT",
        "/v1/resources/wiki",
        ADMIN,
        Some(&open.to_string()),
    )
    .await;
    let mut vault = Vec::new();
    for i in 0..7 {
        vault.push(request(&router, ALICE, "vault").await);
        request(&router, OLIVE, "wiki").await;
        if i % 3 == 0 {
            request(&router, DAVE, "wiki").await;
        }
    }
    let own = request(&router, DAVE, "wiki").await;

    // Small pages, so the filtered reading crosses store pages; follow `next` to the end.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/grants?status=pending&limit=2&cursor={c}"),
            None => "/v1/grants?status=pending&limit=2".to_owned(),
        };
        let (status, page) = call(&router, "GET", &path, DAVE, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|g| {
            (
                g["id"].as_str().unwrap().to_owned(),
                g["resource"].as_str().unwrap().to_owned(),
                g["requester"].as_str().unwrap().to_owned(),
            )
        }));
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert!(
        seen.iter()
            .all(|(_, resource, requester)| resource == "vault" || requester == DAVE.0),
        "{seen:?}"
    );
    for id in vault.iter().chain([&own]) {
        assert!(
            seen.iter().any(|(s, _, _)| s == id),
            "{id} missing: {seen:?}"
        );
    }
    // Newest first, each once.
    let ids: Vec<&String> = seen.iter().map(|(id, _, _)| id).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(ids, sorted);

    // Somebody approving nothing still lists only their own, and may not ask for someone else's.
    let (_, mine) = call(&router, "GET", "/v1/grants", OLIVE, None).await;
    assert!(
        mine["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["requester"] == OLIVE.0)
    );
    let (status, answer) = call(
        &router,
        "GET",
        &format!("/v1/grants?requester={}", ALICE.0),
        OLIVE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer["error"]["code"], "not_allowed");
    // A resource approver asking for one requester sees that requester's requests of their resources only.
    let (_, alices) = call(
        &router,
        "GET",
        &format!("/v1/grants?requester={}", ALICE.0),
        DAVE,
        None,
    )
    .await;
    assert_eq!(alices["items"].as_array().unwrap().len(), vault.len());
}

/// The policy as an admin writes it: validated field by field, normalised, shown back, and kept by a PUT of
/// what a GET answered.
#[tokio::test]
async fn a_bad_policy_is_refused_with_a_code_naming_the_field_and_a_good_one_round_trips() {
    let (app, store, _) = local_test_app();
    let router = local_router(app);
    let base = || json!({"name": "Vault", "max_duration": "PT8H", "provisioner": {"kind": "none"}});
    let with = |field: &str, value: Value| {
        let mut body = base();
        body[field] = value;
        body
    };
    let cases = [
        (
            with("approvers", json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_approvers",
        ),
        (
            with("approvers", json!({"groups": ["db a"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_approvers",
        ),
        (
            with("approvers", json!({"groups": ["a,b"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_approvers",
        ),
        (
            with("approvers", json!({"users": ["not-an-address"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_approvers",
        ),
        (
            with("approvers", json!({"roles": ["dba"]})),
            StatusCode::BAD_REQUEST,
            "malformed_request",
        ),
        (
            with("approvers", json!("dba")),
            StatusCode::BAD_REQUEST,
            "malformed_request",
        ),
        (
            with("approvals_required", json!(0)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_approvals_required",
        ),
        (
            with("approvals_required", json!(-1)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_approvals_required",
        ),
        (
            with("approvals_required", json!(11)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_approvals_required",
        ),
        (
            with("approvals_required", json!(1.5)),
            StatusCode::BAD_REQUEST,
            "malformed_request",
        ),
        (
            with("requesters", json!([])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_requesters",
        ),
        (
            with("requesters", json!([""])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_requesters",
        ),
        (
            with("auto_approve", json!({"max_duration": "P1M"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_auto_approve",
        ),
        (
            with("auto_approve", json!({"max_duration": "PT9H"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_auto_approve",
        ),
        (
            with("auto_approve", json!({})),
            StatusCode::BAD_REQUEST,
            "malformed_request",
        ),
        (
            {
                let mut body = with("approvers", json!({"users": ["dana@example.com"]}));
                body["approvals_required"] = json!(2);
                body
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "quorum_unreachable",
        ),
    ];
    for (body, status, code) in cases {
        let before = store.list_resources(10, None).await.unwrap();
        let (got, answer) = call(
            &router,
            "PUT",
            "/v1/resources/vault",
            ADMIN,
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(
            (got, answer["error"]["code"].as_str().unwrap_or_default()),
            (status, code),
            "{body}: {answer}"
        );
        assert_eq!(
            store.list_resources(10, None).await.unwrap(),
            before,
            "{body}"
        );
    }

    let mut good = base();
    good["approvers"] = json!({"groups": ["dba", "dba"], "users": ["Dana@Example.com "]});
    good["approvals_required"] = json!(2);
    good["requesters"] = json!(["oncall"]);
    good["auto_approve"] = json!({"max_duration": "PT1H"});
    let (status, saved) = call(
        &router,
        "PUT",
        "/v1/resources/vault",
        ADMIN,
        Some(&good.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    assert_eq!(
        saved["approvers"],
        json!({"groups": ["dba"], "users": ["dana@example.com"]})
    );
    assert_eq!(saved["approvals_required"], 2);
    assert_eq!(saved["requesters"], json!(["oncall"]));
    assert_eq!(saved["auto_approve"], json!({"max_duration": "PT1H"}));

    // What a GET answers can be PUT back unchanged; a resource without a policy reads with the defaults.
    let (_, read) = call(&router, "GET", "/v1/resources/vault", ALICE, None).await;
    let (status, again) = call(
        &router,
        "PUT",
        "/v1/resources/vault",
        ADMIN,
        Some(&read.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, read);
    call(
        &router,
        "PUT",
        "/v1/resources/wiki",
        ADMIN,
        Some(&base().to_string()),
    )
    .await;
    let (_, wiki) = call(&router, "GET", "/v1/resources/wiki", ALICE, None).await;
    assert_eq!(
        (
            &wiki["approvers"],
            &wiki["approvals_required"],
            &wiki["requesters"],
            &wiki["auto_approve"]
        ),
        (&Value::Null, &json!(1), &Value::Null, &Value::Null)
    );
}

/// Raising a resource's quorum applies to requests already waiting; lowering it does not shorten theirs.
#[tokio::test]
async fn a_waiting_request_needs_the_larger_of_its_quorum_and_the_resources_current_one() {
    let (app, _store, _) = local_test_app();
    let router = local_router(app);
    let put = |quorum: u32| {
        json!({"name": "Vault", "provisioner": {"kind": "none"}, "approvers": {"groups": ["dba"]}, "approvals_required": quorum}).to_string()
    };
    call(&router, "PUT", "/v1/resources/vault", ADMIN, Some(&put(1))).await;
    let raised = request(&router, ALICE, "vault").await;
    call(&router, "PUT", "/v1/resources/vault", ADMIN, Some(&put(2))).await;
    let lowered = request(&router, ALICE, "vault").await;

    // Requested under 1, the resource now asks 2: the first approval does not activate it.
    let (_, first) = call(
        &router,
        "POST",
        &format!("/v1/grants/{raised}/approve"),
        DAVE,
        None,
    )
    .await;
    assert_eq!(
        (&first["status"], &first["approvals_required"]),
        (&json!("pending"), &json!(2)),
        "{first}"
    );

    // Requested under 2, the resource now asks 1: it still needs its 2.
    call(&router, "PUT", "/v1/resources/vault", ADMIN, Some(&put(1))).await;
    let (_, first) = call(
        &router,
        "POST",
        &format!("/v1/grants/{lowered}/approve"),
        DAVE,
        None,
    )
    .await;
    assert_eq!(
        (&first["status"], &first["approvals_required"]),
        (&json!("pending"), &json!(2)),
        "{first}"
    );

    for id in [&raised, &lowered] {
        let (status, second) = call(
            &router,
            "POST",
            &format!("/v1/grants/{id}/approve"),
            DORA,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{second}");
        assert_eq!(second["status"], "active", "{second}");
    }
}
