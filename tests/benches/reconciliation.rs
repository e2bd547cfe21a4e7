//! Reconciliation cost: 10,000 open grants bound to 2,000 tickets on the embedded store, against a local fake
//! of Jira Cloud's `/rest/api/3/search/jql` (wiremock). Reports ticket-system calls and wall time per run, for
//! a run where every ticket is open and one where 1% of the tickets (100 grants) were closed with their
//! webhook lost.
//!
//! `cargo bench -p ticketbound-tests --bench reconciliation` (`TB_BENCH_TICKETS`, default 2000;
//! `TB_BENCH_GRANTS_PER_TICKET`, default 5; `TB_BENCH_RUNS`, default 5).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};
use time::OffsetDateTime;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::ticket_http::HttpPolicy;
use ticketbound::domain::{
    AuditEvent, AuditKind, Grant, GrantDuration, Provisioner, Resource, TicketRef,
};
use ticketbound::ports::{Clock, GrantStore, SystemClock};
use ticketbound::service::{Settings, Ticketbound};
use ticketbound_tests::{ADMIN, APPROVER, call, unique};

/// Answers `key in (...)` with every key, the closed ones in the `done` category.
struct Search(Arc<Mutex<BTreeSet<String>>>);

impl Respond for Search {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let jql = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "jql")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let closed = self.0.lock().unwrap();
        let inner = jql
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map(|(i, _)| i)
            .unwrap_or_default();
        let issues: Vec<Value> = inner
            .split(',')
            .map(|k| k.trim().trim_matches('"'))
            .map(|key| {
                let (name, category) = if closed.contains(key) {
                    ("Done", "done")
                } else {
                    ("In Progress", "indeterminate")
                };
                json!({"id": "1", "key": key, "fields": {"status": {"name": name, "statusCategory": {"key": category}}}})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"issues": issues, "isLast": true}))
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let tickets = env("TB_BENCH_TICKETS", 2000);
    let per_ticket = env("TB_BENCH_GRANTS_PER_TICKET", 5);
    let runs = env("TB_BENCH_RUNS", 5);

    let jira = MockServer::start().await;
    let closed = Arc::new(Mutex::new(BTreeSet::new()));
    Mock::given(method("GET"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(Search(closed.clone()))
        .mount(&jira)
        .await;
    let store = EmbeddedStore::in_memory().unwrap();
    let dir = std::env::temp_dir().join(unique("bench-reconcile"));
    std::fs::create_dir_all(&dir).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = Ticketbound::build(
        ticketbound_tests::ticket_ports(
            Arc::new(store.clone()),
            Arc::new(LocalScheduler::new(store.clone())),
            clock.clone(),
            &dir.join("secrets.json"),
            HttpPolicy::default(),
        ),
        Settings::default(),
    );
    let router = ticketbound_tests::local_router(app.clone());
    let body = json!({"id": "jira-main", "kind": "jira_cloud", "base_url": jira.uri(), "email": "bot@acme.com", "api_token": "jira-token-1"});
    let (status, json) = call(
        &router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert!(status.is_success(), "{json}");
    store
        .put_resource(&Resource {
            id: "prod-db".into(),
            name: "Production database".into(),
            description: String::new(),
            max_duration: None,
            require_ticket: false,
            provisioner: Provisioner::None,
            policy: Default::default(),
        })
        .await
        .unwrap();

    // Seed: `per_ticket` active grants on each ticket, one requester per grant.
    let now = OffsetDateTime::now_utc();
    let keys: Vec<String> = (0..tickets)
        .map(|i| format!("SEC-{}", 10_000 + i))
        .collect();
    for (t, key) in keys.iter().enumerate() {
        for g in 0..per_ticket {
            let grant = Grant::request(
                ticketbound::domain::ids::new_ulid(now),
                format!("engineer{t}-{g}@example.com"),
                "prod-db".into(),
                "bench".into(),
                GrantDuration::Indefinite,
                Some(TicketRef {
                    connection: "jira-main".into(),
                    key: key.clone(),
                }),
                now,
            );
            let requested = AuditEvent::of(&grant, AuditKind::Requested, None, now, Value::Null);
            store.insert_grant(&grant, &requested).await.unwrap();
            let active = grant.approve(APPROVER.0, now).unwrap();
            let approved = AuditEvent::of(
                &active,
                AuditKind::Approved,
                Some(APPROVER.0),
                now,
                Value::Null,
            );
            store
                .update_grant(&active, grant.expected(), Some(&approved))
                .await
                .unwrap();
        }
    }
    println!(
        "reconciliation of {} open grants on {tickets} tickets (embedded store, fake Jira Cloud search on loopback), {}",
        tickets * per_ticket,
        OffsetDateTime::now_utc().date()
    );

    // Every ticket open: what a run costs when nothing was missed.
    let mut times = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..runs {
        let before = jira.received_requests().await.unwrap().len();
        let started = Instant::now();
        let report = app.reconcile().await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        calls.push(jira.received_requests().await.unwrap().len() - before);
        assert_eq!(report.tickets_checked, tickets);
        assert_eq!(report.closings_found, 0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "  all open: {} ticket-system calls per run ({} to {} over {runs} runs); wall time per run min {:.0} ms | median {:.0} ms | max {:.0} ms",
        calls[0],
        calls.iter().min().unwrap(),
        calls.iter().max().unwrap(),
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );

    // 1% of the tickets closed with their webhook lost: the run also ends their grants.
    {
        let mut c = closed.lock().unwrap();
        for key in keys.iter().step_by(100) {
            c.insert(key.clone());
        }
    }
    let before = jira.received_requests().await.unwrap().len();
    let started = Instant::now();
    let report = app.reconcile().await.unwrap();
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    println!(
        "  1% closed: {} calls, {} closings found, {} grants ended, wall time {:.0} ms",
        jira.received_requests().await.unwrap().len() - before,
        report.closings_found,
        report.grants_ended,
        elapsed
    );
    let _ = std::fs::remove_dir_all(&dir);
}
