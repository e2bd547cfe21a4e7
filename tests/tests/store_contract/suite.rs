//! The grant store contract, generic over the store: `main.rs` runs it against the embedded (SQLite) store and
//! the DynamoDB store (on moto), `faults.rs` against DynamoDB behind the fault-injecting proxy.

use std::sync::Arc;

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use ticketbound::domain::ids::new_ulid;
use ticketbound::domain::secret::Secret;
use ticketbound::domain::{
    AuditEvent, AuditKind, EndReason, Grant, GrantDuration, GrantStatus, Provisioner, Resource,
    TicketRef,
};
use ticketbound::ports::{GrantFilter, GrantStore, StoreError};

fn grant_at(minute: i64, requester: &str, resource: &str, ticket: Option<(&str, &str)>) -> Grant {
    let at = datetime!(2026-03-01 09:00 UTC) + Duration::minutes(minute);
    Grant::request(
        new_ulid(at),
        requester.into(),
        resource.into(),
        "testing".into(),
        GrantDuration::parse("PT1H").unwrap(),
        ticket.map(|(c, k)| TicketRef {
            connection: c.into(),
            key: k.into(),
        }),
        at,
    )
}

fn requested(grant: &Grant) -> AuditEvent {
    AuditEvent::of(
        grant,
        AuditKind::Requested,
        Some(&grant.requester),
        grant.requested_at,
        serde_json::Value::Null,
    )
}

async fn insert(store: &dyn GrantStore, grant: &Grant) {
    store
        .insert_grant(grant, &requested(grant))
        .await
        .expect("insert");
}

async fn approve(store: &dyn GrantStore, grant: &Grant) -> Grant {
    let approved = grant
        .approve("bob@example.com", grant.requested_at + Duration::minutes(1))
        .unwrap();
    let event = AuditEvent::of(
        &approved,
        AuditKind::Approved,
        Some("bob@example.com"),
        approved.decided_at.unwrap(),
        serde_json::Value::Null,
    );
    store
        .update_grant(&approved, grant.expected(), Some(&event))
        .await
        .expect("approve");
    approved
}

fn resource(id: &str) -> Resource {
    Resource {
        id: id.into(),
        name: format!("Resource {id}"),
        description: "d".into(),
        max_duration: None,
        require_ticket: false,
        provisioner: Provisioner::Webhook {
            url: "https://hooks.example.com/x".into(),
            secret: Some(Secret::new("provisioner-secret-value")),
            reconcile: false,
        },
        // A policy other than the defaults, so both stores are seen to keep it.
        policy: ticketbound::domain::resource::ApprovalPolicy {
            approvers: Some(ticketbound::domain::resource::Approvers {
                groups: vec!["dba".into()],
                users: vec!["dana@example.com".into()],
            }),
            approvals_required: 2,
            requesters: Some(vec!["oncall".into()]),
            auto_approve: Some(ticketbound::domain::resource::AutoApprove {
                max_duration: ticketbound::domain::IsoDuration::parse("PT4H").unwrap(),
            }),
        },
    }
}

pub async fn a_grant_reads_back_as_written(store: Arc<dyn GrantStore>) {
    let grant = grant_at(
        0,
        "alice@example.com",
        "prod-db",
        Some(("jira-main", "SEC-42")),
    );
    insert(&*store, &grant).await;
    assert_eq!(store.get_grant(&grant.id).await.unwrap(), Some(grant));
    assert_eq!(
        store
            .get_grant(&new_ulid(OffsetDateTime::now_utc()))
            .await
            .unwrap(),
        None
    );
}

pub async fn inserting_an_existing_id_is_refused(store: Arc<dyn GrantStore>) {
    let grant = grant_at(0, "alice@example.com", "prod-db", None);
    insert(&*store, &grant).await;
    let err = store
        .insert_grant(&grant, &requested(&grant))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
}

pub async fn a_stale_write_conflicts_and_changes_nothing(store: Arc<dyn GrantStore>) {
    let grant = grant_at(0, "alice@example.com", "prod-db", None);
    insert(&*store, &grant).await;
    let approved = approve(&*store, &grant).await;
    // A second writer that still holds the pending version.
    let denied = grant.deny("carol@example.com", grant.requested_at).unwrap();
    let event = AuditEvent::of(
        &denied,
        AuditKind::Denied,
        Some("carol@example.com"),
        grant.requested_at,
        serde_json::Value::Null,
    );
    let err = store
        .update_grant(&denied, grant.expected(), Some(&event))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(store.get_grant(&grant.id).await.unwrap(), Some(approved));
    let kinds: Vec<AuditKind> = store
        .list_events(&grant.id, 50, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [AuditKind::Requested, AuditKind::Approved],
        "the losing write's event must not be stored"
    );
}

pub async fn of_many_concurrent_writers_exactly_one_wins(store: Arc<dyn GrantStore>) {
    let grant = grant_at(0, "alice@example.com", "prod-db", None);
    insert(&*store, &grant).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (store, grant) = (store.clone(), grant.clone());
        tasks.push(tokio::spawn(async move {
            let approver = format!("approver{i}@example.com");
            let next = grant.approve(&approver, grant.requested_at).unwrap();
            let event = AuditEvent::of(
                &next,
                AuditKind::Approved,
                Some(&approver),
                grant.requested_at,
                serde_json::Value::Null,
            );
            store
                .update_grant(&next, grant.expected(), Some(&event))
                .await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => wins += 1,
            Err(StoreError::Conflict) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    let events = store.list_events(&grant.id, 50, None).await.unwrap().items;
    assert_eq!(
        events.len(),
        2,
        "one requested event and one approved event"
    );
}

pub async fn lists_are_newest_first_and_page_without_gaps(store: Arc<dyn GrantStore>) {
    let mut ids = Vec::new();
    for minute in 0..7 {
        let grant = grant_at(minute, "alice@example.com", "prod-db", None);
        insert(&*store, &grant).await;
        ids.push(grant.id);
    }
    ids.reverse();
    let filter = GrantFilter {
        requester: Some("alice@example.com".into()),
        ..GrantFilter::default()
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_grants(&filter, 3, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().map(|g| g.id));
        pages += 1;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, ids);
}

pub async fn lists_filter_by_requester_status_and_ticket(store: Arc<dyn GrantStore>) {
    let a = grant_at(
        0,
        "alice@example.com",
        "prod-db",
        Some(("jira-main", "SEC-1")),
    );
    let b = grant_at(
        1,
        "alice@example.com",
        "prod-db",
        Some(("jira-main", "SEC-2")),
    );
    let c = grant_at(
        2,
        "dave@example.com",
        "prod-db",
        Some(("jira-main", "SEC-1")),
    );
    for g in [&a, &b, &c] {
        insert(&*store, g).await;
    }
    let b_active = approve(&*store, &b).await;
    let ids = |page: Vec<Grant>| page.into_iter().map(|g| g.id).collect::<Vec<_>>();
    let by =
        |requester: Option<&str>, status: Option<GrantStatus>, ticket: Option<&str>| GrantFilter {
            requester: requester.map(str::to_owned),
            status,
            ticket: ticket.map(|k| TicketRef {
                connection: "jira-main".into(),
                key: k.into(),
            }),
        };
    assert_eq!(
        ids(store
            .list_grants(&by(Some("alice@example.com"), None, None), 50, None)
            .await
            .unwrap()
            .items),
        [b.id.clone(), a.id.clone()]
    );
    assert_eq!(
        ids(store
            .list_grants(&by(None, Some(GrantStatus::Active), None), 50, None)
            .await
            .unwrap()
            .items),
        vec![b_active.id.clone()]
    );
    assert_eq!(
        ids(store
            .list_grants(&by(None, None, Some("SEC-1")), 50, None)
            .await
            .unwrap()
            .items),
        [c.id.clone(), a.id.clone()]
    );
    assert_eq!(
        ids(store
            .list_grants(
                &by(
                    Some("dave@example.com"),
                    Some(GrantStatus::Pending),
                    Some("SEC-1")
                ),
                50,
                None
            )
            .await
            .unwrap()
            .items),
        vec![c.id.clone()]
    );
    assert_eq!(
        ids(store
            .list_grants(&GrantFilter::default(), 50, None)
            .await
            .unwrap()
            .items),
        [c.id, b.id, a.id]
    );
}

pub async fn a_forged_cursor_is_refused(store: Arc<dyn GrantStore>) {
    for cursor in ["not-a-cursor", "eyJ4IjoxfQ"] {
        let err = store
            .list_grants(&GrantFilter::default(), 10, Some(cursor))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidCursor),
            "{cursor}: {err:?}"
        );
    }
}

pub async fn active_grants_of_a_requester_and_resource_are_found(store: Arc<dyn GrantStore>) {
    let first = grant_at(0, "alice@example.com", "prod-db", None);
    let second = grant_at(1, "alice@example.com", "prod-db", None);
    let other_resource = grant_at(2, "alice@example.com", "staging-db", None);
    let pending = grant_at(3, "alice@example.com", "prod-db", None);
    for g in [&first, &second, &other_resource, &pending] {
        insert(&*store, g).await;
    }
    let first = approve(&*store, &first).await;
    let second = approve(&*store, &second).await;
    approve(&*store, &other_resource).await;
    let mut active: Vec<String> = store
        .active_grants_for("alice@example.com", "prod-db")
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    active.sort();
    assert_eq!(active, [first.id.clone(), second.id.clone()]);
    // Ending one removes it from the set.
    let ended = second
        .end(EndReason::Revoked, None, second.decided_at.unwrap())
        .unwrap();
    store
        .update_grant(&ended, second.expected(), None)
        .await
        .unwrap();
    let active: Vec<String> = store
        .active_grants_for("alice@example.com", "prod-db")
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(active, [first.id]);
}

pub async fn grants_bound_to_a_ticket_are_found_in_every_status(store: Arc<dyn GrantStore>) {
    let bound: Vec<Grant> = (0..3)
        .map(|m| {
            grant_at(
                m,
                "alice@example.com",
                "prod-db",
                Some(("jira-main", "SEC-9")),
            )
        })
        .collect();
    let unbound = grant_at(
        5,
        "alice@example.com",
        "prod-db",
        Some(("jira-other", "SEC-9")),
    );
    for g in bound.iter().chain([&unbound]) {
        insert(&*store, g).await;
    }
    approve(&*store, &bound[0]).await;
    let mut found: Vec<String> = store
        .grants_for_ticket(&TicketRef {
            connection: "jira-main".into(),
            key: "SEC-9".into(),
        })
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    found.sort();
    let mut expected: Vec<String> = bound.into_iter().map(|g| g.id).collect();
    expected.sort();
    assert_eq!(found, expected);
}

/// A grant stored under a key in another spelling (`sec-42`, as older versions kept what was typed) and
/// rewritten under the canonical one (`SEC-42`) by a conditional write is found, filtered and listed open under
/// the canonical key only: every index of bound grants follows the rewrite.
pub async fn a_grant_rewritten_under_its_canonical_ticket_key_is_found_only_by_it(
    store: Arc<dyn GrantStore>,
) {
    let typed = TicketRef {
        connection: "jira".into(),
        key: "sec-42".into(),
    };
    let canonical = TicketRef {
        connection: "jira".into(),
        key: "SEC-42".into(),
    };
    let grant = grant_at(0, "alice@example.com", "prod-db", Some(("jira", "sec-42")));
    insert(&*store, &grant).await;
    let active = approve(&*store, &grant).await;
    let mut moved = active.touched();
    moved.ticket = Some(canonical.clone());
    store
        .update_grant(&moved, active.expected(), None)
        .await
        .expect("rewrite");

    let ids = |grants: Vec<Grant>| grants.into_iter().map(|g| g.id).collect::<Vec<_>>();
    let only = vec![grant.id.clone()];
    assert_eq!(
        ids(store.grants_for_ticket(&canonical).await.unwrap()),
        only
    );
    assert!(store.grants_for_ticket(&typed).await.unwrap().is_empty());
    assert_eq!(
        store.open_bound_tickets("jira", None, 10).await.unwrap(),
        ["SEC-42"]
    );
    let filtered = |ticket: TicketRef| GrantFilter {
        ticket: Some(ticket),
        ..GrantFilter::default()
    };
    assert_eq!(
        ids(store
            .list_grants(&filtered(canonical), 10, None)
            .await
            .unwrap()
            .items),
        only
    );
    assert!(
        store
            .list_grants(&filtered(typed), 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

pub async fn grants_are_found_by_their_tickets_stable_id_whatever_their_key(
    store: Arc<dyn GrantStore>,
) {
    // Two grants bound to one Jira issue (id 10042) by its old key, one bound after it moved (new key); one
    // grant of another connection with the same id, and one with no id recorded.
    let mut old_key = grant_at(
        0,
        "alice@example.com",
        "prod-db",
        Some(("jira-main", "SEC-42")),
    );
    old_key.ticket_id = Some("10042".into());
    let mut new_key = grant_at(
        1,
        "bob@example.com",
        "prod-db",
        Some(("jira-main", "OPS-7")),
    );
    new_key.ticket_id = Some("10042".into());
    let mut elsewhere = grant_at(
        2,
        "alice@example.com",
        "prod-db",
        Some(("jira-dc", "SEC-42")),
    );
    elsewhere.ticket_id = Some("10042".into());
    let no_id = grant_at(
        3,
        "alice@example.com",
        "prod-db",
        Some(("jira-main", "SEC-42")),
    );
    for g in [&old_key, &new_key, &elsewhere, &no_id] {
        insert(&*store, g).await;
    }
    // The id survives a state change.
    let approved = approve(&*store, &old_key).await;
    assert_eq!(approved.ticket_id.as_deref(), Some("10042"));
    let mut found: Vec<String> = store
        .grants_for_ticket_id("jira-main", "10042")
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    found.sort();
    let mut expected = vec![old_key.id.clone(), new_key.id.clone()];
    expected.sort();
    assert_eq!(found, expected);
    assert!(
        store
            .grants_for_ticket_id("jira-main", "99999")
            .await
            .unwrap()
            .is_empty()
    );
    let read = store.get_grant(&new_key.id).await.unwrap().unwrap();
    assert_eq!(read.ticket_id.as_deref(), Some("10042"));
}

pub async fn events_read_in_order_and_page(store: Arc<dyn GrantStore>) {
    let grant = grant_at(0, "alice@example.com", "prod-db", None);
    insert(&*store, &grant).await;
    let mut current = approve(&*store, &grant).await;
    for _ in 0..4 {
        let next = current.touched();
        let event = AuditEvent::of(
            &next,
            AuditKind::ProvisioningRetry,
            None,
            grant.requested_at,
            serde_json::Value::Null,
        );
        store
            .update_grant(&next, current.expected(), Some(&event))
            .await
            .unwrap();
        current = next;
    }
    let first = store.list_events(&grant.id, 4, None).await.unwrap();
    assert_eq!(
        first.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let rest = store
        .list_events(&grant.id, 4, first.next.as_deref())
        .await
        .unwrap();
    assert_eq!(rest.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 6]);
    assert_eq!(rest.next, None);
}

/// The store keeps a resource without its provisioner secret, which the secret store keeps.
pub async fn resources_are_kept_without_their_secret_and_paged(store: Arc<dyn GrantStore>) {
    for id in ["a-db", "b-db", "c-db"] {
        store.put_resource(&resource(id)).await.unwrap();
    }
    let read = store.get_resource("b-db").await.unwrap().unwrap();
    assert_eq!(read.policy, resource("b-db").policy, "the approval policy");
    assert_eq!(read, resource("b-db").without_secret());
    match &read.provisioner {
        Provisioner::Webhook { secret, url, .. } => {
            assert_eq!(
                (url.as_str(), secret),
                ("https://hooks.example.com/x", &None)
            )
        }
        other => panic!("{other:?}"),
    }
    let first = store.list_resources(2, None).await.unwrap();
    assert_eq!(
        first
            .items
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["a-db", "b-db"]
    );
    let rest = store
        .list_resources(2, first.next.as_deref())
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["c-db"]
    );
    assert!(store.delete_resource("b-db").await.unwrap());
    assert!(!store.delete_resource("b-db").await.unwrap());
    assert_eq!(store.get_resource("b-db").await.unwrap(), None);
}

pub async fn a_delivery_is_remembered_until_it_expires(store: Arc<dyn GrantStore>) {
    let now = OffsetDateTime::now_utc();
    let later = now + Duration::hours(1);
    assert!(!store.delivery_seen("jira:abc", now).await.unwrap());
    assert!(
        store.remember_delivery("jira:abc", later).await.unwrap(),
        "first time"
    );
    assert!(store.delivery_seen("jira:abc", now).await.unwrap());
    assert!(
        !store
            .delivery_seen("jira:abc", now + Duration::hours(2))
            .await
            .unwrap(),
        "expired by then"
    );
    assert!(
        !store.remember_delivery("jira:abc", later).await.unwrap(),
        "a duplicate"
    );
    assert!(
        store
            .remember_delivery("jira:old", now - Duration::seconds(5))
            .await
            .unwrap()
    );
    assert!(
        store.remember_delivery("jira:old", later).await.unwrap(),
        "an expired record no longer blocks"
    );
}

pub async fn open_bound_tickets_are_listed_once_each_in_key_order_after_a_position(
    store: Arc<dyn GrantStore>,
) {
    // Several grants on one ticket, keys whose order differs from insertion order, a ticket whose key is a
    // prefix of another, another connection, an unbound grant, and closed grants that must not count.
    let mut minute = 0;
    let mut bound = |connection: &'static str, key: &'static str| {
        minute += 1;
        grant_at(minute, "alice@example.com", "db", Some((connection, key)))
    };
    let pending_a = [bound("jira", "SEC-4"), bound("jira", "SEC-4")];
    let active_b = bound("jira", "SEC-40");
    let active_c = bound("jira", "OPS-7");
    let other = bound("fs", "1234");
    let ended = bound("jira", "AAA-1");
    let denied = bound("jira", "ZZZ-9");
    let unbound = grant_at(99, "alice@example.com", "db", None);
    for g in pending_a
        .iter()
        .chain([&active_b, &active_c, &other, &ended, &denied, &unbound])
    {
        insert(&*store, g).await;
    }
    approve(&*store, &active_b).await;
    approve(&*store, &active_c).await;
    let approved = approve(&*store, &ended).await;
    let closed = approved
        .end(EndReason::Revoked, None, approved.decided_at.unwrap())
        .unwrap();
    store
        .update_grant(&closed, approved.expected(), None)
        .await
        .unwrap();
    let refused = denied.deny("bob@example.com", denied.requested_at).unwrap();
    store
        .update_grant(&refused, denied.expected(), None)
        .await
        .unwrap();

    let all = store.open_bound_tickets("jira", None, 10).await.unwrap();
    assert_eq!(
        all,
        ["OPS-7", "SEC-4", "SEC-40"],
        "each open ticket once, in key order"
    );
    let first = store.open_bound_tickets("jira", None, 2).await.unwrap();
    assert_eq!(first, ["OPS-7", "SEC-4"]);
    let rest = store
        .open_bound_tickets("jira", Some("SEC-4"), 2)
        .await
        .unwrap();
    assert_eq!(rest, ["SEC-40"], "strictly after the position");
    assert!(
        store
            .open_bound_tickets("jira", Some("SEC-40"), 2)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.open_bound_tickets("fs", None, 10).await.unwrap(),
        ["1234"]
    );
    assert!(
        store
            .open_bound_tickets("nope", None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A ticket whose last open grant ends leaves the list.
    let active = approve(&*store, &pending_a[0]).await;
    let gone = active
        .end(EndReason::TicketClosed, None, active.decided_at.unwrap())
        .unwrap();
    store
        .update_grant(&gone, active.expected(), None)
        .await
        .unwrap();
    assert_eq!(
        store.open_bound_tickets("jira", None, 10).await.unwrap(),
        ["OPS-7", "SEC-4", "SEC-40"],
        "SEC-4 still has a pending request"
    );
    let cancelled = pending_a[1]
        .end(EndReason::TicketClosed, None, pending_a[1].requested_at)
        .unwrap();
    store
        .update_grant(&cancelled, pending_a[1].expected(), None)
        .await
        .unwrap();
    assert_eq!(
        store.open_bound_tickets("jira", None, 10).await.unwrap(),
        ["OPS-7", "SEC-40"]
    );
}

pub async fn the_reconciliation_position_is_kept(store: Arc<dyn GrantStore>) {
    use ticketbound::domain::reconcile::{ReconcileState, TimeValue};
    assert_eq!(store.reconcile_state().await.unwrap(), None);
    let mut state = ReconcileState::default();
    state.positions.insert("jira".into(), "SEC-42".into());
    state
        .paused_until
        .insert("fs".into(), TimeValue(datetime!(2026-03-01 09:00 UTC)));
    state.next_connection = Some("fs".into());
    state.saved_at = Some(datetime!(2026-03-01 08:59 UTC));
    store.save_reconcile_state(&state).await.unwrap();
    assert_eq!(store.reconcile_state().await.unwrap(), Some(state.clone()));
    state.positions.clear();
    store.save_reconcile_state(&state).await.unwrap();
    assert_eq!(store.reconcile_state().await.unwrap(), Some(state));
}

/// Where a Slack app posted a grant's messages (conversation and `ts`) is kept with the grant's delivery record,
/// so a later event, whichever process runs it, can update them in place.
pub async fn where_chat_messages_went_is_kept_with_the_grant(store: Arc<dyn GrantStore>) {
    use ticketbound::domain::notification::{ChatMessageRef, NotificationState, NotifyEvent};
    let grant = grant_at(0, "alice@example.com", "prod-db", None);
    insert(&*store, &grant).await;
    let mut posted = grant.touched();
    let mut entry = NotificationState::pending(NotifyEvent::ApprovalRequested, "slack-app");
    entry.messages = vec![
        ChatMessageRef {
            channel: "C0ACCESS01".into(),
            ts: "1700000000.000001".into(),
        },
        ChatMessageRef {
            channel: "D0BOB".into(),
            ts: "1700000000.000002".into(),
        },
    ];
    posted.notifications.push(entry);
    store
        .update_grant(&posted, grant.expected(), None)
        .await
        .expect("the delivery record");
    let read = store.get_grant(&grant.id).await.unwrap().unwrap();
    assert_eq!(read.notifications, posted.notifications);
    // A later decision's write carries them on.
    let approved = approve(&*store, &read).await;
    let read = store.get_grant(&grant.id).await.unwrap().unwrap();
    assert_eq!(read.notifications[0].messages.len(), 2);
    assert_eq!(read, approved);
}

/// A list gives each resource the version a single read gives it, so a list can offer the same entity tag.
pub async fn listed_resources_carry_the_version_a_single_read_has(store: Arc<dyn GrantStore>) {
    for id in ["a-db", "b-db"] {
        store.put_resource(&resource(id)).await.unwrap();
    }
    let before = store.get_resource_versioned("a-db").await.unwrap().unwrap();
    // Another write moves `a-db` on (by exactly one, unless a retry behind the fault proxy wrote it twice).
    store.put_resource(&resource("a-db")).await.unwrap();

    let listed = store.list_resources_versioned(10, None).await.unwrap();

    let ids: Vec<&str> = listed
        .items
        .iter()
        .map(|r| r.resource.id.as_str())
        .collect();
    assert_eq!(ids, ["a-db", "b-db"]);
    assert!(
        listed.items[0].version > before.version,
        "{} after {}",
        listed.items[0].version,
        before.version
    );
    for item in &listed.items {
        let single = store
            .get_resource_versioned(&item.resource.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*item, single);
    }
    let plain = store.list_resources(10, None).await.unwrap();
    assert_eq!(
        plain.items,
        listed
            .items
            .into_iter()
            .map(|r| r.resource)
            .collect::<Vec<_>>()
    );
}

/// One test per case of the suite, each with a fresh store from `$make`, in module `$store` (the including file
/// names this module `suite` and imports `Arc` and `GrantStore`).
macro_rules! contract {
    ($store:ident, $make:expr) => {
        mod $store {
            use super::*;
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $name() {
                        let store: Arc<dyn GrantStore> = Arc::new($make);
                        suite::$name(store).await;
                    }
                };
            }
            case!(a_grant_reads_back_as_written);
            case!(inserting_an_existing_id_is_refused);
            case!(a_stale_write_conflicts_and_changes_nothing);
            case!(of_many_concurrent_writers_exactly_one_wins);
            case!(lists_are_newest_first_and_page_without_gaps);
            case!(lists_filter_by_requester_status_and_ticket);
            case!(a_forged_cursor_is_refused);
            case!(active_grants_of_a_requester_and_resource_are_found);
            case!(grants_bound_to_a_ticket_are_found_in_every_status);
            case!(grants_are_found_by_their_tickets_stable_id_whatever_their_key);
            case!(a_grant_rewritten_under_its_canonical_ticket_key_is_found_only_by_it);
            case!(events_read_in_order_and_page);
            case!(resources_are_kept_without_their_secret_and_paged);
            case!(listed_resources_carry_the_version_a_single_read_has);
            case!(a_delivery_is_remembered_until_it_expires);
            case!(open_bound_tickets_are_listed_once_each_in_key_order_after_a_position);
            case!(the_reconciliation_position_is_kept);
            case!(where_chat_messages_went_is_kept_with_the_grant);
        }
    };
}
