//! Webhook authenticity, checked on the raw bytes before anything is parsed, in constant time.
//!
//! Jira admin webhooks sign: `X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`. Senders that cannot
//! sign (Jira Automation, Freshservice workflows) send the secret itself in `X-Ticketbound-Secret`, or as the
//! password of HTTP Basic auth (Freshservice's credential store). Several secrets may be active at once, for
//! rotation: any of them authenticates.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::secret::Secret;

/// The `X-Hub-Signature` value Jira sends for `body` under `secret` (for tests and for documentation).
pub fn hub_signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under one of `secrets`.
pub fn hub_signature_matches(secrets: &[Secret], header: &str, body: &[u8]) -> bool {
    let Some(hex_mac) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(claimed) = hex::decode(hex_mac.trim()) else {
        return false;
    };
    let mut any = false;
    for secret in secrets {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes keys of any size");
        mac.update(body);
        // Every secret is tried, so the time taken does not say which one matched.
        any |= mac.verify_slice(&claimed).is_ok();
    }
    any
}

/// Whether `presented` equals one of `secrets`, comparing SHA-256 digests in constant time (so neither the
/// content nor the length of a secret leaks through timing).
pub fn shared_secret_matches(secrets: &[Secret], presented: &str) -> bool {
    let presented = Sha256::digest(presented.trim().as_bytes());
    let mut any = false;
    for secret in secrets {
        let expected = Sha256::digest(secret.expose().as_bytes());
        any |= bool::from(expected.ct_eq(&presented));
    }
    any
}

/// The password of an `Authorization: Basic` header, if it is one.
pub fn basic_auth_password(header: &str) -> Option<String> {
    let encoded = header
        .trim()
        .strip_prefix("Basic ")
        .or_else(|| header.trim().strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_test_vector_verifies() {
        let secrets = [Secret::new("shhh")];
        let body = br#"{"webhookEvent":"jira:issue_created"}"#;
        let header = "sha256=3fabe2d04ab39e6c32cd69443906602514ec29b8c013897d29901059b6adfbce";
        assert!(hub_signature_matches(&secrets, header, body));
        assert_eq!(hub_signature("shhh", body), header);
        assert!(!hub_signature_matches(
            &secrets,
            header,
            br#"{"webhookEvent":"jira:issue_deleted"}"#
        ));
        assert!(!hub_signature_matches(
            &[Secret::new("other")],
            header,
            body
        ));
        assert!(!hub_signature_matches(&secrets, "sha1=3fab", body));
        assert!(!hub_signature_matches(&secrets, "sha256=zz", body));
    }

    #[test]
    fn any_active_secret_verifies_during_rotation() {
        let secrets = [Secret::new("old-secret"), Secret::new("shhh")];
        let header = "sha256=3fabe2d04ab39e6c32cd69443906602514ec29b8c013897d29901059b6adfbce";
        assert!(hub_signature_matches(
            &secrets,
            header,
            br#"{"webhookEvent":"jira:issue_created"}"#
        ));
        assert!(shared_secret_matches(&secrets, "old-secret"));
        assert!(!shared_secret_matches(&secrets, "old-secre"));
        assert!(!shared_secret_matches(&[], "anything"));
    }

    #[test]
    fn basic_auth_yields_the_password() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ticketbound:s3cret")
        );
        assert_eq!(basic_auth_password(&header).as_deref(), Some("s3cret"));
        assert_eq!(basic_auth_password("Bearer x"), None);
        assert_eq!(basic_auth_password("Basic !!!"), None);
    }
}
