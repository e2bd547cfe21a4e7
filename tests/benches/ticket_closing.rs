//! How long one ticket closing takes to end every grant bound to it: the path a closing webhook runs before it
//! answers (each grant: conditional write with its audit event, safety schedule, provisioner `revoke` over HTTP,
//! schedule clean-up, outcome write).
//!
//! `cargo bench -p ticketbound-tests --bench ticket_closing` — local wiring (SQLite, in-process scheduler,
//! webhook provisioner on a local endpoint). With `bash infra/test.sh`'s environment (moto running,
//! `TICKETBOUND_MOTO=1`) it also runs on DynamoDB and EventBridge Scheduler on moto.
//! `TB_BENCH_GRANTS` sets the number of grants (default 500).

use std::sync::Arc;
use std::time::Instant;

use ticketbound::domain::{EndReason, TicketRef};
use ticketbound::ports::SystemClock;
use ticketbound::service::{Settings, Ticketbound};
use ticketbound_tests::*;

async fn measure(label: &str, app: Ticketbound, n: usize) {
    let provisioner = provisioner_ok().await;
    define_webhook_resource(&local_router(app.clone()), "prod-db", &provisioner.uri()).await;
    let ticket = TicketRef {
        connection: "jira-main".into(),
        key: "SEC-500".into(),
    };
    seed_bound_active_grants(&app, &ticket, "prod-db", n).await;
    let started = Instant::now();
    let outcome = app
        .close_ticket(&ticket, None, EndReason::TicketClosed)
        .await
        .expect("closing");
    let took = started.elapsed();
    assert_eq!(outcome.ended, n);
    let revokes = provisioner_actions(&provisioner)
        .await
        .iter()
        .filter(|a| *a == "revoke")
        .count();
    assert_eq!(revokes, n, "every grant's access removed once");
    println!(
        "{label}: {n} bound grants ended in {:.2} s ({:.1} ms per grant, {} revokes)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / n as f64,
        revokes
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("TB_BENCH_GRANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let dir = std::env::temp_dir().join(unique("bench-closing"));
    let (app, scheduler) = ticketbound::wiring::local_app(&dir, Settings::default()).unwrap();
    scheduler.start(Arc::new(app.clone())).await.unwrap();
    measure("local (SQLite, in-process scheduler)", app, n).await;
    let _ = std::fs::remove_dir_all(&dir);

    if std::env::var("TICKETBOUND_MOTO").is_ok() {
        let (scheduler, _, _) = eventbridge_scheduler().await;
        let app = build_app(AppParts {
            store: Arc::new(dynamo_store().await),
            scheduler: Arc::new(scheduler),
            clock: Arc::new(SystemClock),
            retry: Default::default(),
            provisioner_timeout: std::time::Duration::from_secs(10),
        });
        measure(
            "AWS adapters on moto (DynamoDB, EventBridge Scheduler)",
            app,
            n,
        )
        .await;
    }
}
