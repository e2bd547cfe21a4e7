//! Logging and metrics. Logs are JSON lines on Lambda (CloudWatch Logs), human text locally. Metrics are
//! CloudWatch Embedded Metric Format lines: CloudWatch turns them into metrics in the `Ticketbound` namespace
//! with no API call and no extra permission.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::EnvFilter;

static EMF: AtomicBool = AtomicBool::new(false);

/// JSON logs for Lambda; also enables metric lines.
pub fn init_lambda() {
    EMF.store(true, Ordering::Relaxed);
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .with_target(false)
        .try_init();
}

/// Human-readable logs for the local server.
pub fn init_local() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .try_init();
}

/// What this process has emitted per metric name, so the local server and tests can see it too.
static TOTALS: Mutex<BTreeMap<String, f64>> = Mutex::new(BTreeMap::new());

/// The sum of the values this process has emitted for metric `name`.
pub fn metric_total(name: &str) -> f64 {
    TOTALS
        .lock()
        .map(|totals| totals.get(name).copied().unwrap_or(0.0))
        .unwrap_or(0.0)
}

/// Emits one metric value (count-like) in Embedded Metric Format when running on Lambda.
pub fn metric(name: &str, value: f64) {
    if let Ok(mut totals) = TOTALS.lock() {
        *totals.entry(name.to_owned()).or_default() += value;
    }
    if !EMF.load(Ordering::Relaxed) {
        return;
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let line = serde_json::json!({
        "_aws": {"Timestamp": now as i64, "CloudWatchMetrics": [{"Namespace": "Ticketbound", "Dimensions": [[]], "Metrics": [{"Name": name, "Unit": "Count"}]}]},
        name: value,
    });
    println!("{line}");
}
