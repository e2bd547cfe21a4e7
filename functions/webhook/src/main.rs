//! `ticketbound-webhook`: `POST /webhooks/{kind}/{connection}` (DESIGN §9) for every kind of ticket system,
//! with no JWT authorizer: the kind's plug-in checks the delivery's authenticity against the connection's
//! webhook secrets. `/webhooks/jira/…` and `/webhooks/freshservice/…` keep their own functions; this one answers
//! them too, so it can replace them.

use ticketbound::config::Config;
use ticketbound::http::webhooks::generic_router;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ticketbound::telemetry::init_lambda();
    let config = Config::from_env()?;
    let app = ticketbound::wiring::aws_app(&config).await?;
    lambda_http::run(generic_router(app)).await
}
