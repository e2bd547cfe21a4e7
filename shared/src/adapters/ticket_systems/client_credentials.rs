//! Signing in with an OAuth application's client credentials (`grant_type=client_credentials`), shared by the
//! plug-ins that offer it (Linear, ServiceNow): the credentials are exchanged at the vendor's token endpoint for
//! an access token sent as `Bearer`. A client is built for every use of a connection, so the token is kept for
//! the process, keyed by a digest of the token endpoint and the credentials (a rotated secret gets its own), and
//! asked for again when it is about to expire or the vendor refuses it ([`ClientCredentials::forget`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use serde::Deserialize;

use crate::adapters::ticket_http::{Probed, TicketHttp, bearer};
use crate::domain::secret::Secret;
use crate::ports::TicketSystemError;

/// Where and how one vendor hands out client-credentials tokens.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokenEndpoint {
    /// The token endpoint's path below the connection's base URL (`["oauth", "token"]`).
    pub path: &'static [&'static str],
    /// The vendor's name, for messages.
    pub vendor: &'static str,
    /// The `scope` form field, for a vendor that wants one.
    pub scope: Option<&'static str>,
    /// The longest a token is kept when the answer has no `expires_in`, and at most whatever it says.
    pub max_lifetime: Duration,
}

/// An access token is asked for again this long before the vendor says it expires (or half its life, when that
/// is shorter).
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// The token endpoint's answer (RFC 6749 §5.1).
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

/// An OAuth application's client credentials, and the endpoint that exchanges them.
pub(crate) struct ClientCredentials {
    endpoint: TokenEndpoint,
    client_id: String,
    client_secret: Secret,
}

impl ClientCredentials {
    pub(crate) fn new(endpoint: TokenEndpoint, client_id: String, client_secret: Secret) -> Self {
        Self {
            endpoint,
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
    pub(crate) async fn signed_in(
        &self,
        http: &TicketHttp,
    ) -> Result<TicketHttp, TicketSystemError> {
        let vendor = self.endpoint.vendor;
        let endpoint = http.url(self.endpoint.path);
        let key = self.key(&endpoint);
        if let Some((header, until)) = kept(&key)
            && Instant::now() < until
        {
            return Ok(http.signed_in_as(header));
        }
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
        ];
        if let Some(scope) = self.endpoint.scope {
            form.push(("scope", scope));
        }
        let answer: Probed<TokenAnswer> = http.post_form_json(endpoint, &form).await?;
        let token = match answer {
            Probed::Found(token) => token,
            Probed::Refused(detail) => return Err(refused(vendor, &detail)),
            Probed::NotFound => {
                return Err(TicketSystemError::Unexpected(format!(
                    "{vendor} has no OAuth token endpoint at this base URL"
                )));
            }
            Probed::Busy(wait) => {
                return Err(TicketSystemError::RateLimited {
                    message: format!("{vendor}'s token endpoint is rate limiting the connection"),
                    retry_after: wait,
                });
            }
        };
        let header = bearer(&token.access_token)?;
        let lifetime = token
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(self.endpoint.max_lifetime)
            .min(self.endpoint.max_lifetime);
        let lifetime = lifetime.saturating_sub(RENEW_BEFORE.min(lifetime / 2));
        let mut tokens = TOKENS.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = tokens.get_or_insert_with(HashMap::new);
        if tokens.len() >= MAX_KEPT {
            tokens.clear();
        }
        tokens.insert(key, (header.clone(), Instant::now() + lifetime));
        Ok(http.signed_in_as(header))
    }

    /// Forgets the kept token of `http`'s token endpoint (the vendor refused it: expired early or revoked).
    pub(crate) fn forget(&self, http: &TicketHttp) {
        let key = self.key(&http.url(self.endpoint.path));
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

/// Refused client credentials: the connection needs new ones (the detail is the vendor's words, never the
/// secret).
fn refused(vendor: &str, detail: &str) -> TicketSystemError {
    TicketSystemError::Unauthorized {
        status: 401,
        message: if detail.is_empty() {
            format!("{vendor} refused the OAuth client credentials")
        } else {
            format!("{vendor} refused the OAuth client credentials: {detail}")
        },
    }
}
