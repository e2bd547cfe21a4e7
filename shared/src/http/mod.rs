//! The HTTP routers: the portal API (`/v1`, DESIGN §5) for `ticketbound-api` and the local server.

pub mod api;
pub mod connections;
pub mod error;
pub mod extract;
pub mod webhooks;

use axum::Router;

pub use error::ApiError;
pub use extract::IdentitySource;

use crate::domain::identity::RoleGroups;
use crate::service::Ticketbound;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub app: Ticketbound,
    pub identity: IdentitySource,
    pub roles: RoleGroups,
}

/// The portal API router, with JSON 404 and 405 answers.
pub fn api_router(state: AppState) -> Router {
    api::routes()
        .merge(connections::routes())
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::wrong_method)
        .with_state(state)
}

/// Everything the local server serves: the portal API and both webhook routes.
pub fn local_router(state: AppState) -> Router {
    let webhooks = webhooks::routes(state.app.clone());
    api::routes()
        .merge(connections::routes())
        .with_state(state)
        .merge(webhooks)
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::wrong_method)
}
