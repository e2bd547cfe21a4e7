//! `ticketbound-jira-webhook`: `POST /webhooks/jira/{connection}` (DESIGN §9), with no JWT authorizer: the
//! delivery's authenticity is checked against the connection's webhook secrets.

use ticketbound::config::Config;
use ticketbound::http::webhooks::jira_router;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ticketbound::telemetry::init_lambda();
    let config = Config::from_env()?;
    let app = ticketbound::wiring::aws_app(&config).await?;
    lambda_http::run(jira_router(app)).await
}
