//! How a Linear connection signs in: a personal API key sent as is, or an OAuth application's client credentials,
//! exchanged at `POST /oauth/token` (`grant_type=client_credentials`, scopes `read,write`: audit tickets are
//! written) for an app-actor access token that lives 30
//! days and comes without a refresh token; the exchange and the kept token are the shared
//! [`ClientCredentials`](crate::adapters::ticket_systems::client_credentials::ClientCredentials)'s.

use std::time::Duration;

use crate::adapters::ticket_systems::client_credentials::TokenEndpoint;
use crate::domain::connection::AuthMethod;
use crate::domain::secret::Secret;

/// Signing in with an OAuth application's client credentials (`client_id` is a setting, the secret is the
/// connection's credential).
pub const CLIENT_SECRET: AuthMethod = AuthMethod::named("client_secret");

/// The sign-in a connection body gives.
pub(super) enum SignIn {
    ApiKey(Secret),
    ClientCredentials {
        client_id: String,
        client_secret: Secret,
    },
    /// Only the client id (a change of it alone).
    ClientId(String),
    /// Only the client secret (a rotation).
    ClientSecret(Secret),
}

/// Linear's token endpoint: `POST /oauth/token`, scopes `read,write`; its client-credentials tokens live 30 days.
pub(super) const TOKEN_ENDPOINT: TokenEndpoint = TokenEndpoint {
    path: &["oauth", "token"],
    vendor: "Linear",
    scope: Some("read,write"),
    max_lifetime: Duration::from_secs(30 * 24 * 3600),
};
