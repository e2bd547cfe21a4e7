//! `ticketbound-api`: the portal API (DESIGN §5) behind API Gateway's JWT authorizer, and the portal page
//! (DESIGN §12), which loads without it and signs in with OpenID Connect.

use ticketbound::config::Config;
use ticketbound::http::{AppState, IdentitySource, Portal, api_router_with_portal};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ticketbound::telemetry::init_lambda();
    let config = Config::from_env()?;
    for warning in &config.identity_warnings {
        tracing::warn!(%warning, "identity claims");
    }
    let app = ticketbound::wiring::aws_app(&config).await?;
    ticketbound::wiring::move_provisioner_secrets_at_start(&app).await;
    let portal = Portal::aws(
        config.oidc.clone(),
        &config.roles,
        &config.email_claim,
        &config.groups_claim,
    );
    let state = AppState {
        app,
        identity: IdentitySource::Jwt(config.claim_names()),
        roles: config.roles.clone(),
    };
    lambda_http::run(api_router_with_portal(state, portal)).await
}
