//! Slack incoming webhooks: `POST <webhook URL>` with `{"text": ..., "blocks": [...]}` (Block Kit). Slack answers
//! 200 `ok`; 400/403/404/410 with a word saying why (`invalid_payload`, `invalid_token`, `channel_not_found`,
//! `no_service`, `channel_is_archived`), which is permanent; 429 with `Retry-After`, and 5xx, are retried.
//!
//! Text from people (a reason, a resource name) is escaped as Slack asks (`&`, `<`, `>`), so a reason cannot
//! mention `<!channel>` or hide a link.

use serde_json::{Value, json};

use super::{Http, judge};
use crate::domain::secret::Secret;
use crate::ports::notify::{Message, SendError, SendOutcome};

pub(super) struct Slack {
    pub(super) http: Http,
    pub(super) url: Secret,
    pub(super) what: String,
}

impl Slack {
    pub(super) async fn send(&self, message: &Message) -> Result<SendOutcome, SendError> {
        let body =
            serde_json::to_vec(&body(message)).map_err(|e| SendError::Permanent(e.to_string()))?;
        let answer = self.http.post(&self.url, body, &[], &self.what).await?;
        judge(answer, &self.what)
    }
}

/// Slack's escaping of `mrkdwn` and plain text.
pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The message as Slack's JSON: `text` (the notification's one line) and the blocks (what happened, the facts,
/// a button to the grant).
pub(super) fn body(message: &Message) -> Value {
    let fields: Vec<Value> = message
        .facts
        .iter()
        .take(10) // Slack's limit per section.
        .map(|(label, value)| json!({"type": "mrkdwn", "text": format!("*{}*\n{}", escape(label), escape(value))}))
        .collect();
    json!({
        "text": escape(&message.subject),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*\n{}", escape(&message.subject), escape(&message.text))}},
            {"type": "section", "fields": fields},
            {"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Open in Ticketbound"}, "url": message.link}
            ]}
        ]
    })
}
