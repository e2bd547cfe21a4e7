//! ServiceNow deliveries. ServiceNow has no webhook subscription: an admin installs the Business Rule of
//! docs/connections.md, which posts `{"table", "sys_id", "number", "state", "active"}` after a task's `active`
//! turns false or its `state` changes, signed in `X-Ticketbound-Signature: sha256=<base64 HMAC-SHA256(secret,
//! raw body)>` (the base64 form is what ServiceNow's `GlideCertificateEncryption.generateMac` gives). The body
//! only names the ticket: Ticketbound re-reads the record before ending anything (the Freshservice trust model),
//! so the values it carries decide nothing.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use super::is_number;
use crate::adapters::lenient_json::Text;
use crate::domain::connection::{ConnectionSettings, WebhookSecrets};
use crate::domain::ticket_events::Delivery;
use crate::ports::{DeliveryHeaders, DeliveryRefusal, DeliveryRules};

/// The header the Business Rule signs in.
pub const SIGNATURE_HEADER: &str = "x-ticketbound-signature";

/// The `X-Ticketbound-Signature` value for `body` under `secret`, as the Business Rule computes it.
pub fn servicenow_signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(body);
    format!(
        "sha256={}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Whether `header` is the base64 HMAC-SHA256 of `body` under one of the active secrets; every secret is tried,
/// so the time taken does not say which one matched.
fn signature_matches(secrets: &WebhookSecrets, header: &str, body: &[u8]) -> bool {
    let Some(encoded) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(claimed) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let mut any = false;
    for secret in &secrets.0 {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes keys of any size");
        mac.update(body);
        any |= mac.verify_slice(&claimed).is_ok();
    }
    any
}

/// The Business Rule's body; only `number` is used.
#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    number: Text,
}

/// ServiceNow's deliveries for the one webhook extractor: a signature on the raw body, then the number it names.
pub struct ServiceNowDeliveries;

impl DeliveryRules for ServiceNowDeliveries {
    fn proof_needs_body(&self, _headers: &dyn DeliveryHeaders) -> bool {
        true
    }

    fn authenticate(
        &self,
        _settings: &ConnectionSettings,
        headers: &dyn DeliveryHeaders,
        body: &[u8],
        secrets: &WebhookSecrets,
    ) -> Result<(), DeliveryRefusal> {
        match headers.present(SIGNATURE_HEADER) {
            Some(signature) if signature_matches(secrets, signature, body) => Ok(()),
            Some(_) => Err(DeliveryRefusal {
                reason: "wrong_signature",
                message: "`X-Ticketbound-Signature` is not the HMAC-SHA256 of the body under an active webhook secret of this connection",
            }),
            None => Err(DeliveryRefusal {
                reason: "missing",
                message: "the delivery carries no `X-Ticketbound-Signature`; use the Business Rule in docs/connections.md",
            }),
        }
    }

    fn interpret(
        &self,
        settings: &ConnectionSettings,
        _headers: &dyn DeliveryHeaders,
        body: &Value,
    ) -> Result<Delivery, String> {
        let parsed = Body::deserialize(body).map_err(|_| {
            "the body is not a JSON object; use the Business Rule in docs/connections.md".to_owned()
        })?;
        let number = parsed
            .number
            .0
            .map(|n| n.trim().to_ascii_uppercase())
            .filter(|n| is_number(n))
            .ok_or_else(|| {
                "the body names no ticket `number`; use the Business Rule in docs/connections.md"
                    .to_owned()
            })?;
        Ok(Delivery::Named {
            connection: settings.id.clone(),
            key: number,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::secret::Secret;

    #[test]
    fn only_the_signature_of_an_active_secret_over_these_bytes_is_accepted() {
        let secrets = WebhookSecrets(vec![Secret::new("old-secret"), Secret::new("new-secret")]);
        let body = br#"{"table":"incident","number":"INC0010001","active":"false"}"#;
        assert!(signature_matches(
            &secrets,
            &servicenow_signature("new-secret", body),
            body
        ));
        assert!(signature_matches(
            &secrets,
            &servicenow_signature("old-secret", body),
            body
        ));
        assert!(!signature_matches(
            &secrets,
            &servicenow_signature("other", body),
            body
        ));
        assert!(!signature_matches(
            &secrets,
            &servicenow_signature("new-secret", b"{}"),
            body
        ));
        assert!(!signature_matches(&secrets, "sha256=not base64!", body));
        assert!(!signature_matches(&secrets, "new-secret", body));
    }
}
