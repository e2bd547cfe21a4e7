//! Provisioners (DESIGN §7): the signed `webhook` call and `none`.
//!
//! A webhook call is `POST <url>` with `{"action": "grant"|"revoke", "grant": {...}, "resource": {...},
//! "idempotency_key": "..."}` and the headers
//! `X-Ticketbound-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, `Idempotency-Key` and
//! `X-Ticketbound-Delivery`. The idempotency key ([`idempotency_key`]) is the same on every attempt of one
//! action on one grant, so the receiver can make a repeated call harmless: a call in flight when a process
//! dies is made again (at-least-once across crashes). It is in the body so the signature covers it; the
//! headers repeat it for receivers that de-duplicate before parsing (`X-Ticketbound-Delivery` was the name
//! before the key existed, kept for them). 2xx means done; anything else, a timeout or a connection error is a
//! failed attempt that the service retries durably. Redirects are not followed.

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Grant, Provisioner, Resource};
use crate::ports::{Clock, ProvisionAction, ProvisionError, Provisioners};

type HmacSha256 = Hmac<Sha256>;

/// The signature header value for `body` sent at unix time `t`.
pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The idempotency key of one action on one grant: `<grant id>-<action>`, the same on every attempt.
pub fn idempotency_key(grant_id: &str, action: ProvisionAction) -> String {
    format!("{grant_id}-{}", action.as_str())
}

/// Verifies an `X-Ticketbound-Signature` header the way a provisioner endpoint should: HMAC over `"<t>.<body>"`
/// compared in constant time, and `t` within `tolerance_seconds` of `now` (replay protection).
pub fn verify_signature_header(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    // `abs_diff`: a forged `t` near i64::MIN or MAX is out of the window, not an overflow.
    if i64::try_from(now.abs_diff(t))
        .ok()
        .is_none_or(|age| age > tolerance_seconds)
    {
        return false;
    }
    v1.iter().any(|candidate| {
        let mut mac =
            HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(candidate).is_ok()
    })
}

/// Calls provisioners over HTTP (reqwest with rustls).
#[derive(Clone)]
pub struct HttpProvisioners {
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

/// How long one provisioner call may take. Shorter than the retry lease, so attempts never overlap.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl HttpProvisioners {
    pub fn new(clock: Arc<dyn Clock>, timeout: Duration) -> Result<Self, ProvisionError> {
        let client = super::tls::outbound_client(Some(timeout)).map_err(ProvisionError)?;
        Ok(Self {
            client,
            clock,
            timeout,
        })
    }
}

/// A URL as it may appear in errors and logs: no query string (it may carry a token).
fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<invalid url>".into(),
    }
}

#[async_trait]
impl Provisioners for HttpProvisioners {
    async fn apply(
        &self,
        resource: &Resource,
        action: ProvisionAction,
        grant: &Grant,
    ) -> Result<(), ProvisionError> {
        match &resource.provisioner {
            Provisioner::None => Ok(()),
            Provisioner::Ticket { connection, .. } => Err(ProvisionError(format!(
                "the ticket provisioner (connection `{connection}`) is not available in this deployment"
            ))),
            Provisioner::Webhook { url, secret } => {
                // The service loads the secret from the secret store before the call
                // (`service::SecretLoadingProvisioners`); a resource as stored does not hold it.
                let secret = secret.as_ref().ok_or_else(|| {
                    ProvisionError(format!(
                        "no signing secret was loaded for resource `{}`",
                        resource.id
                    ))
                })?;
                let key = idempotency_key(&grant.id, action);
                let body = serde_json::to_vec(&serde_json::json!({
                    "action": action,
                    "grant": grant,
                    "resource": {"id": resource.id, "name": resource.name},
                    "idempotency_key": key,
                }))
                .map_err(|e| ProvisionError(e.to_string()))?;
                let t = self.clock.now().unix_timestamp();
                let response = self
                    .client
                    .post(url)
                    .header("content-type", "application/json")
                    .header(
                        "x-ticketbound-signature",
                        signature_header(secret.expose(), t, &body),
                    )
                    .header("idempotency-key", &key)
                    .header("x-ticketbound-delivery", &key)
                    .body(body)
                    .send()
                    .await;
                let shown = display_url(url);
                match response {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(ProvisionError(format!(
                        "{shown} answered HTTP {}",
                        r.status().as_u16()
                    ))),
                    Err(e) if e.is_timeout() => Err(ProvisionError(format!(
                        "{shown} did not answer within {:?}",
                        self.timeout
                    ))),
                    Err(e) if e.is_connect() => {
                        Err(ProvisionError(format!("could not connect to {shown}")))
                    }
                    Err(_) => Err(ProvisionError(format!("the call to {shown} failed"))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject_tampering_and_replay() {
        let header = signature_header("topsecret-provisioner", 1_700_000_000, b"{\"a\":1}");
        assert!(verify_signature_header(
            "topsecret-provisioner",
            &header,
            b"{\"a\":1}",
            1_700_000_010,
            300
        ));
        assert!(!verify_signature_header(
            "topsecret-provisioner",
            &header,
            b"{\"a\":2}",
            1_700_000_010,
            300
        ));
        assert!(!verify_signature_header(
            "other-secret-value",
            &header,
            b"{\"a\":1}",
            1_700_000_010,
            300
        ));
        assert!(!verify_signature_header(
            "topsecret-provisioner",
            &header,
            b"{\"a\":1}",
            1_700_001_000,
            300
        ));
        assert!(!verify_signature_header(
            "topsecret-provisioner",
            "garbage",
            b"{\"a\":1}",
            1_700_000_010,
            300
        ));
    }

    #[test]
    fn the_idempotency_key_names_the_grant_and_the_action() {
        let id = "01JD3AAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(
            idempotency_key(id, ProvisionAction::Revoke),
            "01JD3AAAAAAAAAAAAAAAAAAAAA-revoke"
        );
        assert_ne!(
            idempotency_key(id, ProvisionAction::Grant),
            idempotency_key(id, ProvisionAction::Revoke)
        );
    }

    #[test]
    fn timestamps_at_the_ends_of_i64_are_refused_without_overflowing() {
        for (t, now) in [(i64::MIN, i64::MAX), (i64::MIN, 0), (i64::MAX, i64::MIN)] {
            let header = signature_header("topsecret-provisioner", t, b"{}");
            assert!(!verify_signature_header(
                "topsecret-provisioner",
                &header,
                b"{}",
                now,
                300
            ));
        }
    }

    #[test]
    fn urls_in_errors_lose_their_query() {
        assert_eq!(
            display_url("https://h.example.com/p?token=abc"),
            "https://h.example.com/p"
        );
    }
}
