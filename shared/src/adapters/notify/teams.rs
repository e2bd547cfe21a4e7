//! Microsoft Teams through a workflow webhook (the Workflows app's "When a Teams webhook request is received"
//! trigger, which replaced Office 365 connectors): `POST <workflow URL>` with a message carrying an Adaptive
//! Card (`application/vnd.microsoft.card.adaptive`, version 1.4). The workflow answers 202 Accepted; 400/401/403/
//! 404 (a deleted or disabled workflow) are permanent, 429 with `Retry-After` and 5xx are retried.

use serde_json::{Value, json};

use super::{Http, judge};
use crate::domain::secret::Secret;
use crate::ports::notify::{Message, SendError, SendOutcome};

pub(super) struct Teams {
    pub(super) http: Http,
    pub(super) url: Secret,
    pub(super) what: String,
}

impl Teams {
    pub(super) async fn send(&self, message: &Message) -> Result<SendOutcome, SendError> {
        let body =
            serde_json::to_vec(&body(message)).map_err(|e| SendError::Permanent(e.to_string()))?;
        let answer = self.http.post(&self.url, body, &[], &self.what).await?;
        judge(answer, &self.what)
    }
}

/// The message with its Adaptive Card: a title, what happened, the facts, and a button to the grant.
pub(super) fn body(message: &Message) -> Value {
    let facts: Vec<Value> = message
        .facts
        .iter()
        .map(|(label, value)| json!({"title": label, "value": value}))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": message.subject, "weight": "Bolder", "size": "Medium", "wrap": true},
                    {"type": "TextBlock", "text": message.text, "wrap": true},
                    {"type": "FactSet", "facts": facts}
                ],
                "actions": [
                    {"type": "Action.OpenUrl", "title": "Open in Ticketbound", "url": message.link}
                ]
            }
        }]
    })
}
