//! Notification channels (DESIGN §12), the adapters of the [`Notifier`] port: Slack incoming webhooks
//! (`slack.rs`), Microsoft Teams workflow webhooks (`teams.rs`), a signed JSON event webhook for anything else
//! (`event_webhook.rs`), e-mail through Amazon SES (`ses.rs`, with the feature `aws`) and a two-way Slack app
//! (`slack_app.rs`: posts through the Web API, edits its messages as a grant moves on, and takes decisions back
//! as the port's [`ChatApp`]), chosen per channel by one exhaustive `match`.
//!
//! Each send is one call, bounded by a timeout, with no retries here: the service retries durably and records
//! the outcome on the grant. What a channel answers decides whether retrying can help: 2xx is sent; 429 (with
//! its `Retry-After`), 408, 425, 5xx, a timeout or a connection failure are worth another attempt; any other
//! answer (400, 401, 403, 404, 410: a revoked or deleted webhook) is permanent. Redirects are not followed.
//! Errors and logs never show a channel's URL or secret.

pub mod config;
mod event_webhook;
#[cfg(feature = "aws")]
mod ses;
mod slack;
mod slack_app;
mod teams;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::RETRY_AFTER;

pub use config::{
    ChannelConfig, ChannelSettings, LOCAL_SECRET_KEY, NotifyConfig, NotifyConfigError,
    SLACK_API_URL, SlackAppSettings,
};

use crate::domain::notification::NotifyEvent;
use crate::domain::notification::NotifySettings;
use crate::domain::secret::Secret;
use crate::domain::side_effect::{FailureClass, classify_http_status};
use crate::ports::Clock;
use crate::ports::notify::{ChatApp, Message, Notifier, SendError, SendOutcome};

/// How long one send may take: well inside the service's lease (60 s), so attempts never overlap.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the channels are built with besides their configuration.
#[derive(Clone)]
pub struct ChannelOptions {
    /// Signs event-webhook calls (`t=` of the signature).
    pub clock: Arc<dyn Clock>,
    /// One HTTP send's limit.
    pub timeout: Duration,
    /// The SES client e-mail channels send through; `None` where there is no AWS (the local server), which
    /// refuses e-mail channels at start.
    #[cfg(feature = "aws")]
    pub ses: Option<aws_sdk_sesv2::Client>,
}

impl ChannelOptions {
    /// HTTP channels only, with the default timeout.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            timeout: DEFAULT_TIMEOUT,
            #[cfg(feature = "aws")]
            ses: None,
        }
    }
}

/// The deployment's channels: the [`Notifier`] of every binary. [`NotifyChannels::none`] is the configuration of
/// a deployment that sends no notification.
pub struct NotifyChannels {
    channels: Vec<Channel>,
}

struct Channel {
    id: String,
    events: Option<BTreeSet<NotifyEvent>>,
    kind: ChannelKind,
}

enum ChannelKind {
    Slack(slack::Slack),
    Teams(teams::Teams),
    Webhook(event_webhook::EventWebhook),
    SlackApp(Arc<slack_app::SlackApp>),
    #[cfg(feature = "aws")]
    Email(ses::SesEmail),
}

impl NotifyChannels {
    /// No channel: every event is taken by nobody, nothing is ever armed or sent.
    pub fn none() -> Self {
        Self {
            channels: Vec::new(),
        }
    }

    /// The channels of `config`.
    pub fn build(
        config: &NotifyConfig,
        options: &ChannelOptions,
    ) -> Result<Self, NotifyConfigError> {
        let needs_http = config
            .channels
            .iter()
            .any(|c| !matches!(c.settings, ChannelSettings::Email { .. }));
        let http = if needs_http {
            Some(Http::new(options.timeout)?)
        } else {
            None
        };
        let mut channels = Vec::with_capacity(config.channels.len());
        for channel in &config.channels {
            let kind = match &channel.settings {
                ChannelSettings::Slack { url } => ChannelKind::Slack(slack::Slack {
                    http: http.clone().expect("built for HTTP channels"),
                    url: url.clone(),
                    what: format!("channel `{}` (Slack)", channel.id),
                }),
                ChannelSettings::Teams { url } => ChannelKind::Teams(teams::Teams {
                    http: http.clone().expect("built for HTTP channels"),
                    url: url.clone(),
                    what: format!("channel `{}` (Teams)", channel.id),
                }),
                ChannelSettings::Webhook { url, secret } => {
                    ChannelKind::Webhook(event_webhook::EventWebhook {
                        http: http.clone().expect("built for HTTP channels"),
                        url: url.clone(),
                        secret: secret.clone(),
                        clock: options.clock.clone(),
                        what: format!("channel `{}` (event webhook)", channel.id),
                    })
                }
                ChannelSettings::SlackApp(settings) => {
                    ChannelKind::SlackApp(Arc::new(slack_app::SlackApp {
                        http: http.clone().expect("built for HTTP channels"),
                        settings: settings.clone(),
                        what: format!("channel `{}` (Slack app)", channel.id),
                    }))
                }
                ChannelSettings::Email { sender } => email_channel(&channel.id, sender, options)?,
            };
            channels.push(Channel {
                id: channel.id.clone(),
                events: channel.events.clone(),
                kind,
            });
        }
        Ok(Self { channels })
    }

    /// The ids of the configured channels.
    pub fn ids(&self) -> Vec<&str> {
        self.channels.iter().map(|c| c.id.as_str()).collect()
    }
}

#[cfg(feature = "aws")]
fn email_channel(
    id: &str,
    sender: &str,
    options: &ChannelOptions,
) -> Result<ChannelKind, NotifyConfigError> {
    match &options.ses {
        Some(client) => Ok(ChannelKind::Email(ses::SesEmail {
            client: client.clone(),
            sender: sender.to_owned(),
            what: format!("channel `{id}` (e-mail)"),
        })),
        None => Err(no_email(id)),
    }
}

#[cfg(not(feature = "aws"))]
fn email_channel(
    id: &str,
    _sender: &str,
    _options: &ChannelOptions,
) -> Result<ChannelKind, NotifyConfigError> {
    Err(no_email(id))
}

fn no_email(id: &str) -> NotifyConfigError {
    NotifyConfigError(format!(
        "channel `{id}`: e-mail is sent through Amazon SES, which only the AWS deployment has; locally use a Slack, Teams or webhook channel"
    ))
}

#[async_trait]
impl Notifier for NotifyChannels {
    fn channels_for(&self, event: NotifyEvent) -> Vec<String> {
        self.channels
            .iter()
            .filter(|c| c.events.as_ref().is_none_or(|e| e.contains(&event)))
            .map(|c| c.id.clone())
            .collect()
    }

    async fn send(&self, channel: &str, message: &Message) -> Result<SendOutcome, SendError> {
        let Some(found) = self.channels.iter().find(|c| c.id == channel) else {
            return Err(SendError::Permanent(format!(
                "channel `{channel}` is no longer configured"
            )));
        };
        match &found.kind {
            ChannelKind::Slack(c) => c.send(message).await,
            ChannelKind::Teams(c) => c.send(message).await,
            ChannelKind::Webhook(c) => c.send(message).await,
            ChannelKind::SlackApp(c) => c.send(message).await,
            #[cfg(feature = "aws")]
            ChannelKind::Email(c) => c.send(message).await,
        }
    }

    fn chat_app(&self) -> Option<Arc<dyn ChatApp>> {
        self.channels.iter().find_map(|c| match &c.kind {
            ChannelKind::SlackApp(app) => Some(app.clone() as Arc<dyn ChatApp>),
            _ => None,
        })
    }
}

/// The local server's notifications: the configuration under [`LOCAL_SECRET_KEY`] in its secret file (none
/// when the file or the key is absent), HTTP channels only.
pub fn local_notifications(
    secret_file: &Path,
    portal_url: Option<&str>,
    clock: Arc<dyn Clock>,
) -> Result<(NotifyChannels, NotifySettings), NotifyConfigError> {
    let text = match std::fs::read_to_string(secret_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::from("{}"),
        Err(e) => {
            return Err(NotifyConfigError(format!(
                "reading {}: {e}",
                secret_file.display()
            )));
        }
    };
    let file: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| {
            NotifyConfigError(format!(
                "{} is not the expected JSON (line {}, column {})",
                secret_file.display(),
                e.line(),
                e.column()
            ))
        })?;
    let config = match file.get(LOCAL_SECRET_KEY) {
        Some(value) => NotifyConfig::parse(&value.to_string()).map_err(|e| {
            NotifyConfigError(format!(
                "`{LOCAL_SECRET_KEY}` in {}: {}",
                secret_file.display(),
                e.0
            ))
        })?,
        None => NotifyConfig::default(),
    };
    let settings = config.settings(portal_url)?;
    let channels = NotifyChannels::build(&config, &ChannelOptions::new(clock))?;
    Ok((channels, settings))
}

/// The Lambda functions' notifications: the configuration in the Secrets Manager secret `secret_id`
/// (`NOTIFICATIONS_SECRET`), e-mail through SES; none when `secret_id` is `None`.
#[cfg(feature = "aws")]
pub async fn aws_notifications(
    sdk: &aws_config::SdkConfig,
    secret_id: Option<&str>,
    portal_url: Option<&str>,
    clock: Arc<dyn Clock>,
) -> Result<(NotifyChannels, NotifySettings), NotifyConfigError> {
    let Some(secret_id) = secret_id else {
        let none = NotifyConfig::default();
        return Ok((NotifyChannels::none(), none.settings(portal_url)?));
    };
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| {
            NotifyConfigError(format!(
                "reading the secret NOTIFICATIONS_SECRET names ({secret_id}): {}",
                super::aws_errors::describe(&e)
            ))
        })?;
    let text = out
        .secret_string()
        .ok_or_else(|| NotifyConfigError(format!("the secret {secret_id} holds no text value")))?;
    let config = NotifyConfig::parse(text)
        .map_err(|e| NotifyConfigError(format!("the secret {secret_id}: {}", e.0)))?;
    let settings = config.settings(portal_url)?;
    let options = ChannelOptions {
        ses: Some(aws_sdk_sesv2::Client::new(sdk)),
        ..ChannelOptions::new(clock)
    };
    Ok((NotifyChannels::build(&config, &options)?, settings))
}

/// The HTTP client every HTTP channel shares (one connection pool per process).
#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    timeout: Duration,
}

/// What a channel answered: its status, its `Retry-After` in seconds, and a short error token from its body.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    token: Option<String>,
}

impl Http {
    fn new(timeout: Duration) -> Result<Self, NotifyConfigError> {
        // A webhook URL is a credential: the client never carries it, or the body, to wherever a redirect points.
        let client = super::tls::outbound_client(Some(timeout)).map_err(NotifyConfigError)?;
        Ok(Self { client, timeout })
    }

    /// POSTs a JSON body; the error of a call that got no answer never shows the URL (reqwest's would).
    async fn post(
        &self,
        url: &Secret,
        body: Vec<u8>,
        headers: &[(&'static str, String)],
        what: &str,
    ) -> Result<Answer, SendError> {
        let mut request = self
            .client
            .post(url.expose())
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.body(body).send().await.map_err(|e| {
            if let Some(refused) = crate::adapters::tls::refused_address(&e) {
                // A channel URL whose name resolves to a refused address: nothing was sent, no retry helps.
                return SendError::Permanent(format!("{what}: {refused}"));
            }
            let message = if e.is_timeout() {
                format!("{what} did not answer within {:?}", self.timeout)
            } else if e.is_connect() {
                format!("could not connect to {what}")
            } else {
                format!("the call to {what} failed")
            };
            SendError::Retryable {
                message,
                retry_after: None,
            }
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.unwrap_or_default();
        Ok(Answer {
            status,
            retry_after,
            token: error_token(&bytes),
        })
    }
}

/// A short machine-readable error from a body: Slack's plain `channel_not_found`, or the `code` of a JSON
/// `{"error": {"code": ...}}` (Power Automate). Only `[A-Za-z0-9_.-]`, at most 64 characters, so nothing a
/// proxy or receiver echoes (a URL, a token) reaches the grant or the logs.
fn error_token(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let candidate = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => json
            .pointer("/error/code")
            .or_else(|| json.get("error"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)?,
        Err(_) => text.to_owned(),
    };
    let ok = !candidate.is_empty()
        && candidate.len() <= 64
        && candidate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    ok.then_some(candidate)
}

/// What an answer means (the module docs), by the engine's one HTTP classification
/// ([`classify_http_status`]): a conflict is retried like a throttled or failed call.
fn judge(answer: Answer, what: &str) -> Result<SendOutcome, SendError> {
    let detail = answer.token.map(|t| format!(": {t}")).unwrap_or_default();
    match classify_http_status(answer.status) {
        None => Ok(SendOutcome::Sent),
        Some(FailureClass::Retryable | FailureClass::Conflict) => Err(SendError::Retryable {
            message: if answer.status == 429 {
                format!("{what} is rate limiting (HTTP 429{detail})")
            } else {
                format!("{what} answered HTTP {}{detail}", answer.status)
            },
            retry_after: answer.retry_after,
        }),
        Some(FailureClass::Permanent) => Err(SendError::Permanent(format!(
            "{what} refused the message (HTTP {}{detail})",
            answer.status
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_tokens_are_short_words_only() {
        assert_eq!(
            error_token(b"channel_not_found").as_deref(),
            Some("channel_not_found")
        );
        assert_eq!(
            error_token(br#"{"error": {"code": "WorkflowTriggerIsNotEnabled", "message": "x"}}"#)
                .as_deref(),
            Some("WorkflowTriggerIsNotEnabled")
        );
        assert_eq!(
            error_token(b"see https://hooks.slack.com/services/T/B/SECRET"),
            None
        );
        assert_eq!(error_token(b""), None);
    }

    #[tokio::test]
    async fn a_channel_whose_name_resolves_to_a_refused_address_is_permanently_undeliverable() {
        let lookup: crate::adapters::tls::Lookup =
            Arc::new(|_host| Box::pin(async { Ok(vec!["[fd00:ec2::254]:0".parse().unwrap()]) }));
        let http = Http {
            client: crate::adapters::tls::outbound_client_resolving(None, lookup).unwrap(),
            timeout: Duration::from_secs(2),
        };
        let url = Secret::new("https://hooks.example.com/services/T/B/SECRET");

        let sent = http.post(&url, b"{}".to_vec(), &[], "channel `ops`").await;

        match sent {
            Err(SendError::Permanent(message)) => {
                assert!(
                    message.contains("`hooks.example.com` resolves to fd00:ec2::254"),
                    "{message}"
                );
                assert!(
                    !message.contains("SECRET"),
                    "the URL is a credential: {message}"
                );
            }
            Err(other) => panic!("expected a permanent refusal, got {other:?}"),
            Ok(_) => panic!("expected a permanent refusal, got an answer"),
        }
    }

    #[test]
    fn answers_are_judged_by_status() {
        let answer = |status, retry_after| Answer {
            status,
            retry_after,
            token: None,
        };
        assert_eq!(judge(answer(200, None), "c"), Ok(SendOutcome::Sent));
        assert_eq!(judge(answer(202, None), "c"), Ok(SendOutcome::Sent));
        assert!(matches!(
            judge(answer(429, Some(Duration::from_secs(7))), "c"),
            Err(SendError::Retryable { retry_after: Some(d), .. }) if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            judge(answer(503, None), "c"),
            Err(SendError::Retryable { .. })
        ));
        for permanent in [400, 401, 403, 404, 410] {
            assert!(matches!(
                judge(answer(permanent, None), "c"),
                Err(SendError::Permanent(_))
            ));
        }
    }

    #[test]
    fn a_deployment_without_channels_takes_no_event() {
        let none = NotifyChannels::none();
        for event in NotifyEvent::ALL {
            assert!(none.channels_for(event).is_empty());
        }
    }
}
