//! `ticketbound-expiry`: EventBridge Scheduler's target. Ends grants whose time bound is reached and runs the
//! retries of provisioning and deprovisioning.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use ticketbound::config::Config;
use ticketbound::handlers::handle_scheduled_job;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ticketbound::telemetry::init_lambda();
    let config = Config::from_env()?;
    let app = ticketbound::wiring::aws_app(&config).await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle_scheduled_job(app, event).await
    }))
    .await
}
