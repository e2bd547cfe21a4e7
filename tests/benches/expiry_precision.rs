//! How precisely local timers end grants: approves N grants with a few seconds' bound on the local wiring
//! (SQLite + in-process scheduler + HTTP provisioner against a local endpoint) and reports how late each
//! `ended_at` is after its `expires_at`.
//!
//! `cargo bench -p ticketbound-tests --bench expiry_precision` (N with `TB_BENCH_GRANTS`, default 200).

use std::sync::Arc;
use std::time::Duration as StdDuration;
use time::OffsetDateTime;

use ticketbound::domain::GrantStatus;
use ticketbound::ports::GrantFilter;
use ticketbound::service::Settings;
use ticketbound_tests::*;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("TB_BENCH_GRANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = std::env::temp_dir().join(unique("bench-expiry"));
    let (app, scheduler) = ticketbound::wiring::local_app(&dir, Settings::default()).unwrap();
    scheduler.start(Arc::new(app.clone())).await.unwrap();
    let store = app.store().clone();
    let router = local_router(app);
    let provisioner = provisioner_ok().await;
    define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;

    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        // Spread the bounds over 3–5 s so timers fire while others are being armed.
        let duration = format!("PT{}S", 3 + (i % 3));
        let id = request_grant(&router, ALICE, "prod-db", &duration).await;
        call(
            &router,
            "POST",
            &format!("/v1/grants/{id}/approve"),
            APPROVER,
            None,
        )
        .await;
        ids.push(id);
    }
    let all_ended = eventually(StdDuration::from_secs(30), || async {
        let filter = GrantFilter {
            status: Some(GrantStatus::Active),
            ..GrantFilter::default()
        };
        store
            .list_grants(&filter, 1, None)
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;
    assert!(all_ended, "not every grant ended");

    let mut late_ms: Vec<f64> = Vec::with_capacity(n);
    for id in &ids {
        let g = store.get_grant(id).await.unwrap().unwrap();
        let late = g.ended_at.unwrap() - g.expires_at.unwrap();
        late_ms.push(late.as_seconds_f64() * 1000.0);
    }
    late_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| late_ms[((late_ms.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "local expiry precision over {n} grants (ended_at - expires_at), {}",
        OffsetDateTime::now_utc().date()
    );
    println!(
        "  min {:.1} ms | p50 {:.1} ms | p99 {:.1} ms | max {:.1} ms",
        late_ms[0],
        pct(0.5),
        pct(0.99),
        late_ms[late_ms.len() - 1]
    );
    assert!(late_ms[0] >= 0.0, "a grant ended before its bound");
    let _ = std::fs::remove_dir_all(&dir);
}
