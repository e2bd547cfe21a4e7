//! How a Linear connection signs in: a personal API key sent as is, or an OAuth application's client credentials,
//! exchanged at `POST /oauth/token` (`grant_type=client_credentials`, scopes `read,write`: audit tickets are
//! written) for an app-actor access token that lives 30
//! days and comes without a refresh token. A client is built for every use of a connection, so the token is
//! kept for the process, keyed by a digest of the token endpoint and the credentials (a rotated secret gets its
//! own), and asked for again when it is about to expire or Linear refuses it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use serde::Deserialize;

use crate::adapters::ticket_http::{Probed, TicketHttp, bearer};
use crate::domain::connection::AuthMethod;
use crate::domain::secret::Secret;
use crate::ports::TicketSystemError;

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

/// An access token is asked for again this long before Linear says it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// The longest a token is kept, whatever its `expires_in` (Linear's client-credentials tokens live 30 days).
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// `POST /oauth/token`'s answer.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The most tokens kept at once (one per connection that signs in this way); when full, all are forgotten.
const MAX_KEPT: usize = 256;

/// A digest of a token endpoint and the credentials sent to it, never the credentials themselves.
type TokenKey = [u8; 32];

/// The live access tokens of this process and until when they are used.
static TOKENS: Mutex<Option<HashMap<TokenKey, (HeaderValue, Instant)>>> = Mutex::new(None);

/// An OAuth application's client credentials.
pub(crate) struct ClientCredentials {
    client_id: String,
    client_secret: Secret,
}

impl ClientCredentials {
    pub(crate) fn new(client_id: String, client_secret: Secret) -> Self {
        Self {
            client_id,
            client_secret,
        }
    }

    /// The key of the token these credentials get from `endpoint`.
    fn key(&self, endpoint: &url::Url) -> TokenKey {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        for part in [
            endpoint.as_str(),
            &self.client_id,
            self.client_secret.expose(),
        ] {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part.as_bytes());
        }
        digest.finalize().into()
    }

    /// `http` signed in with a live access token: the one kept, or a new one from the token endpoint.
    pub(super) async fn signed_in(
        &self,
        http: &TicketHttp,
    ) -> Result<TicketHttp, TicketSystemError> {
        let endpoint = http.url(&["oauth", "token"]);
        let key = self.key(&endpoint);
        if let Some((header, until)) = kept(&key)
            && Instant::now() < until
        {
            return Ok(http.signed_in_as(header));
        }
        let answer: Probed<TokenAnswer> = http
            .post_form_json(
                endpoint,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &self.client_id),
                    ("client_secret", self.client_secret.expose()),
                    ("scope", "read,write"),
                ],
            )
            .await?;
        let token = match answer {
            Probed::Found(token) => token,
            Probed::Refused(detail) => return Err(refused(&detail)),
            Probed::NotFound => {
                return Err(TicketSystemError::Unexpected(
                    "Linear has no OAuth token endpoint at this base URL".into(),
                ));
            }
            Probed::Busy(wait) => {
                return Err(TicketSystemError::RateLimited {
                    message: "Linear's token endpoint is rate limiting the connection".into(),
                    retry_after: wait,
                });
            }
        };
        let header = bearer(&token.access_token)?;
        let lifetime = token
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(MAX_LIFETIME)
            .min(MAX_LIFETIME)
            .saturating_sub(RENEW_BEFORE);
        let mut tokens = TOKENS.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = tokens.get_or_insert_with(HashMap::new);
        if tokens.len() >= MAX_KEPT {
            tokens.clear();
        }
        tokens.insert(key, (header.clone(), Instant::now() + lifetime));
        Ok(http.signed_in_as(header))
    }

    /// Forgets the kept token of `http`'s token endpoint (Linear refused it: revoked, say).
    pub(super) fn forget(&self, http: &TicketHttp) {
        let key = self.key(&http.url(&["oauth", "token"]));
        if let Some(tokens) = TOKENS.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            tokens.remove(&key);
        }
    }
}

/// The token kept under `key`, if any.
fn kept(key: &TokenKey) -> Option<(HeaderValue, Instant)> {
    TOKENS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|tokens| tokens.get(key).cloned())
}

/// Refused client credentials: the connection needs new ones (the detail is Linear's words, never the secret).
fn refused(detail: &str) -> TicketSystemError {
    TicketSystemError::Unauthorized {
        status: 401,
        message: if detail.is_empty() {
            "Linear refused the OAuth client credentials".into()
        } else {
            format!("Linear refused the OAuth client credentials: {detail}")
        },
    }
}
