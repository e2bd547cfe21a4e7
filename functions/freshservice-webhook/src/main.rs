//! `ticketbound-freshservice-webhook`: `POST /webhooks/freshservice/{connection}` (DESIGN §9), with no JWT authorizer: the
//! delivery's authenticity is checked against the connection's webhook secrets.

use ticketbound::config::Config;
use ticketbound::http::webhooks::freshservice_router;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ticketbound::telemetry::init_lambda();
    let config = Config::from_env()?;
    let app = ticketbound::wiring::aws_app(&config).await?;
    lambda_http::run(freshservice_router(app)).await
}
