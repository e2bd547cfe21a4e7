//! The HTTP routers: the portal API (`/v1`, DESIGN §5) for `ticketbound-api` and the local server, and the
//! portal page that uses it (DESIGN §12).

pub mod api;
pub mod connection_json;
pub mod connections;
pub mod error;
pub mod extract;
pub mod portal;
pub mod webhooks;

use axum::Router;

pub use error::ApiError;
pub use extract::{IdentitySource, JwtClaimNames};
pub use portal::Portal;

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

/// What the API function serves on AWS: the portal API and the portal page (same origin, so no CORS).
pub fn api_router_with_portal(state: AppState, portal: Portal) -> Router {
    api::routes()
        .merge(connections::routes())
        .with_state(state)
        .merge(portal::routes(portal))
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::wrong_method)
}

/// Everything the local server serves: the portal API, both webhook routes, and the portal page at `/`.
pub fn local_router(state: AppState) -> Router {
    let webhooks = webhooks::routes(state.app.clone());
    let portal = portal::routes(Portal::local(&state.roles));
    api::routes()
        .merge(connections::routes())
        .with_state(state)
        .merge(webhooks)
        .merge(portal)
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::wrong_method)
}
