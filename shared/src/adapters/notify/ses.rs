//! E-mail through Amazon SES (API v2 `SendEmail`), from the channel's `sender` (an identity verified in SES) to
//! the message's recipients: the requester, or the approvers, or the admins. A plain-text e-mail with the link
//! to the grant; at most 50 recipients per `SendEmail` (SES's limit), so a longer list is sent in parts.
//!
//! Throttling, 5xx and timeouts are retried (`adapters::aws_errors`); a refusal (an unverified sender, a
//! suspended account, a bad address) is permanent.

use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent};

use crate::adapters::aws_errors;
use crate::domain::side_effect::FailureClass;
use crate::ports::notify::{Message, SendError, SendOutcome};

/// SES's limit of recipients per message.
const MAX_RECIPIENTS: usize = 50;

pub(super) struct SesEmail {
    pub(super) client: Client,
    pub(super) sender: String,
    pub(super) what: String,
}

impl SesEmail {
    pub(super) async fn send(&self, message: &Message) -> Result<SendOutcome, SendError> {
        if message.to.is_empty() {
            return Ok(SendOutcome::NoRecipients);
        }
        let built = |text: &str| {
            Content::builder()
                .data(text)
                .charset("UTF-8")
                .build()
                .map_err(|e| SendError::Permanent(format!("{}: {e}", self.what)))
        };
        let text = format!(
            "{}\n\n{}\n\nOpen it in Ticketbound: {}\n",
            message.text,
            fact_lines(message),
            message.link
        );
        let content = EmailContent::builder()
            .simple(
                aws_sdk_sesv2::types::Message::builder()
                    .subject(built(&message.subject)?)
                    .body(Body::builder().text(built(&text)?).build())
                    .build(),
            )
            .build();
        for recipients in message.to.chunks(MAX_RECIPIENTS) {
            let sent = self
                .client
                .send_email()
                .from_email_address(&self.sender)
                .destination(
                    Destination::builder()
                        .set_to_addresses(Some(recipients.to_vec()))
                        .build(),
                )
                .content(content.clone())
                .send()
                .await;
            if let Err(e) = sent {
                let detail = format!("{} could not send: {}", self.what, aws_errors::describe(&e));
                return Err(match aws_errors::classify(&e) {
                    FailureClass::Retryable | FailureClass::Conflict => SendError::Retryable {
                        message: detail,
                        retry_after: None,
                    },
                    FailureClass::Permanent => SendError::Permanent(detail),
                });
            }
        }
        Ok(SendOutcome::Sent)
    }
}

/// The facts of a message as `label: value` lines.
fn fact_lines(message: &Message) -> String {
    message
        .facts
        .iter()
        .map(|(label, value)| format!("{label}: {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}
