//! The generic event webhook, for anything Slack, Teams and e-mail do not cover (PagerDuty, an e-mail relay, a
//! company bot): `POST <url>` with
//! `{"id", "event", "subject", "text", "facts", "link", "recipients", "grant"}`, signed exactly like the
//! provisioner calls (`X-Ticketbound-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
//! `adapters::provisioner::signature_header`). `id` is `<grant id>.<event>`, the same on every attempt, and is
//! repeated in `Idempotency-Key` and `X-Ticketbound-Delivery` so the receiver can drop a repeat before parsing.
//! 2xx is delivered; 429 (honouring `Retry-After`), 408, 425 and 5xx are retried; other answers are permanent.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Http, judge};
use crate::adapters::provisioner::signature_header;
use crate::domain::secret::Secret;
use crate::ports::Clock;
use crate::ports::notify::{Message, SendError, SendOutcome};

pub(super) struct EventWebhook {
    pub(super) http: Http,
    pub(super) url: Secret,
    pub(super) secret: Secret,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) what: String,
}

impl EventWebhook {
    pub(super) async fn send(&self, message: &Message) -> Result<SendOutcome, SendError> {
        let body =
            serde_json::to_vec(&body(message)).map_err(|e| SendError::Permanent(e.to_string()))?;
        let t = self.clock.now().unix_timestamp();
        let headers = [
            (
                "x-ticketbound-signature",
                signature_header(self.secret.expose(), t, &body),
            ),
            ("x-ticketbound-event", message.event.as_str().to_owned()),
            ("idempotency-key", message.id.clone()),
            ("x-ticketbound-delivery", message.id.clone()),
        ];
        let answer = self
            .http
            .post(&self.url, body, &headers, &self.what)
            .await?;
        judge(answer, &self.what)
    }
}

pub(super) fn body(message: &Message) -> Value {
    let facts: serde_json::Map<String, Value> = message
        .facts
        .iter()
        .map(|(label, value)| (label.clone(), Value::String(value.clone())))
        .collect();
    json!({
        "id": message.id,
        "event": message.event,
        "subject": message.subject,
        "text": message.text,
        "facts": facts,
        "link": message.link,
        "recipients": message.to,
        "grant": message.grant,
    })
}
