//! The deployment's notification configuration: one JSON document, kept with the other secrets (a Secrets
//! Manager secret named by `NOTIFICATIONS_SECRET` on AWS; the key [`LOCAL_SECRET_KEY`] of the local server's
//! secret file), read and checked once at start.
//!
//! ```json
//! {
//!   "channels": [
//!     {"id": "slack-access", "kind": "slack", "url": "https://hooks.slack.com/services/T000/B000/XXXX"},
//!     {"id": "teams-access", "kind": "teams", "url": "https://prod-00.westeurope.logic.azure.com/workflows/...",
//!      "events": ["approval_requested", "deprovisioning_failed"]},
//!     {"id": "bot", "kind": "webhook", "url": "https://bot.example.com/ticketbound", "secret": "at-least-16-chars"},
//!     {"id": "email", "kind": "email", "sender": "Ticketbound <ticketbound@example.com>"},
//!     {"id": "slack-app", "kind": "slack_app", "bot_token": "xoxb-...", "signing_secret": "...",
//!      "channel": "C0123456789", "user_groups": {"S0123456789": "approvers"}}
//!   ],
//!   "approver_emails": ["access-approvers@example.com"],
//!   "admin_emails": ["secops@example.com"]
//! }
//! ```
//!
//! Errors name the channel and the field, never a value: Slack and Teams URLs, bot tokens and signing secrets
//! are credentials. At most one `slack_app` channel: `POST /slack/interactions` verifies with its secret.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::domain::identity::Email;
use crate::domain::ids::Slug;
use crate::domain::notification::NotifyEvent;
use crate::domain::notification::NotifySettings;
use crate::domain::secret::Secret;
use crate::domain::url_policy::{UrlPolicyError, check_outbound_url};

/// The key of the local server's secret file (`<data dir>/secrets.json`) that holds the configuration. Not a
/// connection id: those are slugs, which never start with `_`.
pub const LOCAL_SECRET_KEY: &str = "_notifications";

/// The shortest signing secret of an event webhook (as for provisioner secrets).
const MIN_SECRET: usize = 16;

/// Why the configuration cannot be used. Never quotes a URL or a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("notifications: {0}")]
pub struct NotifyConfigError(pub String);

fn err(message: impl Into<String>) -> NotifyConfigError {
    NotifyConfigError(message.into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    channels: Vec<RawChannel>,
    #[serde(default)]
    approver_emails: Vec<String>,
    #[serde(default)]
    admin_emails: Vec<String>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawChannel {
    Slack {
        id: String,
        url: Secret,
        #[serde(default)]
        events: Option<Vec<String>>,
    },
    Teams {
        id: String,
        url: Secret,
        #[serde(default)]
        events: Option<Vec<String>>,
    },
    Webhook {
        id: String,
        url: Secret,
        secret: Secret,
        #[serde(default)]
        events: Option<Vec<String>>,
    },
    Email {
        id: String,
        sender: String,
        #[serde(default)]
        events: Option<Vec<String>>,
    },
    SlackApp {
        id: String,
        bot_token: Secret,
        signing_secret: Secret,
        channel: String,
        #[serde(default)]
        api_url: Option<String>,
        #[serde(default)]
        user_groups: BTreeMap<String, String>,
        #[serde(default)]
        events: Option<Vec<String>>,
    },
}

/// What one channel is and where it sends.
#[derive(Clone, Debug)]
pub enum ChannelSettings {
    /// A Slack incoming webhook (the URL is the credential).
    Slack { url: Secret },
    /// A Microsoft Teams workflow webhook ("When a Teams webhook request is received"; the URL carries its
    /// signature).
    Teams { url: Secret },
    /// A generic JSON event webhook, signed like the provisioner calls.
    Webhook { url: Secret, secret: Secret },
    /// E-mail through Amazon SES from `sender`, a verified identity.
    Email { sender: String },
    /// A Slack app: posts through the Web API with its bot token, and takes decisions back through
    /// `POST /slack/interactions`, verified with its signing secret.
    SlackApp(SlackAppSettings),
}

/// A Slack app channel's settings.
#[derive(Clone, Debug)]
pub struct SlackAppSettings {
    /// The bot user OAuth token (`xoxb-...`).
    pub bot_token: Secret,
    /// The app's signing secret, which signs every interaction Slack sends.
    pub signing_secret: Secret,
    /// The conversation id (`C...`) approval requests are posted to.
    pub channel: String,
    /// The Web API's base URL, `https://slack.com/api` unless set (tests point it at a local fake; the
    /// outbound URL policy still applies, so only a loopback host may be plain http).
    pub api_url: String,
    /// The admin-kept mapping from Slack user group ids (`S...`) to Ticketbound groups: a member of the Slack
    /// group decides from Slack as a member of the Ticketbound group.
    pub user_groups: BTreeMap<String, String>,
}

/// Slack's Web API.
pub const SLACK_API_URL: &str = "https://slack.com/api";

/// One configured channel.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    /// A slug, unique in the configuration; what `grant.notifications[].channel` names.
    pub id: String,
    /// The events it takes; `None`: every event.
    pub events: Option<BTreeSet<NotifyEvent>>,
    pub settings: ChannelSettings,
}

/// The checked configuration.
#[derive(Clone, Debug, Default)]
pub struct NotifyConfig {
    pub channels: Vec<ChannelConfig>,
    pub approver_emails: Vec<String>,
    pub admin_emails: Vec<String>,
}

impl NotifyConfig {
    /// Parses and checks the JSON document.
    pub fn parse(json: &str) -> Result<Self, NotifyConfigError> {
        let raw: Raw = serde_json::from_str(json).map_err(|e| {
            // serde's "invalid type" messages quote the value, which may be a URL: only field names pass.
            let text = e.to_string();
            let safe = [
                "unknown field",
                "missing field",
                "unknown variant",
                "duplicate field",
            ]
            .iter()
            .any(|p| text.starts_with(p));
            let what = if safe {
                text.split(" at line ")
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            } else {
                "not the expected JSON".to_owned()
            };
            err(format!(
                "{what} (line {}, column {}); see docs/operator-guide.md, \"Notifications\"",
                e.line(),
                e.column()
            ))
        })?;
        let mut ids = BTreeSet::new();
        let mut slack_apps = 0;
        let mut channels = Vec::with_capacity(raw.channels.len());
        for channel in raw.channels {
            let (id, events, settings) = match channel {
                RawChannel::Slack { id, url, events } => {
                    let url = checked_url(&id, "url", url)?;
                    (id, events, ChannelSettings::Slack { url })
                }
                RawChannel::Teams { id, url, events } => {
                    let url = checked_url(&id, "url", url)?;
                    (id, events, ChannelSettings::Teams { url })
                }
                RawChannel::Webhook {
                    id,
                    url,
                    secret,
                    events,
                } => {
                    let url = checked_url(&id, "url", url)?;
                    if secret.expose().len() < MIN_SECRET {
                        return Err(err(format!(
                            "channel `{id}`: `secret` must be at least {MIN_SECRET} characters"
                        )));
                    }
                    (id, events, ChannelSettings::Webhook { url, secret })
                }
                RawChannel::SlackApp {
                    id,
                    bot_token,
                    signing_secret,
                    channel,
                    api_url,
                    user_groups,
                    events,
                } => {
                    if !bot_token.expose().starts_with("xoxb-") {
                        return Err(err(format!(
                            "channel `{id}`: `bot_token` must be the app's bot user OAuth token (`xoxb-...`)"
                        )));
                    }
                    if signing_secret.expose().trim().len() < MIN_SECRET {
                        return Err(err(format!(
                            "channel `{id}`: `signing_secret` must be the app's signing secret (Basic Information, App Credentials)"
                        )));
                    }
                    if !slack_id(&channel) {
                        return Err(err(format!(
                            "channel `{id}`: `channel` must be a Slack conversation id such as `C0123456789`"
                        )));
                    }
                    if let Some((group, _)) = user_groups
                        .iter()
                        .find(|(group, to)| !slack_id(group) || to.trim().is_empty())
                    {
                        return Err(err(format!(
                            "channel `{id}`: `user_groups` maps Slack user group ids (`S0123456789`) to Ticketbound group names; `{group}` is not one"
                        )));
                    }
                    let api_url = api_url.unwrap_or_else(|| SLACK_API_URL.to_owned());
                    let api_url = checked_url(&id, "api_url", Secret::new(api_url))?
                        .expose()
                        .trim_end_matches('/')
                        .to_owned();
                    if slack_apps > 0 {
                        return Err(err(format!(
                            "channel `{id}`: only one `slack_app` channel may be configured (interactions are verified with its signing secret)"
                        )));
                    }
                    slack_apps += 1;
                    let settings = SlackAppSettings {
                        bot_token,
                        signing_secret,
                        channel,
                        api_url,
                        user_groups,
                    };
                    (id, events, ChannelSettings::SlackApp(settings))
                }
                RawChannel::Email { id, sender, events } => {
                    if Email::parse(sender_address(&sender)).is_err() {
                        return Err(err(format!(
                            "channel `{id}`: `sender` must be an e-mail address (`ticketbound@example.com` or `Ticketbound <ticketbound@example.com>`), verified in SES"
                        )));
                    }
                    (id, events, ChannelSettings::Email { sender })
                }
            };
            if Slug::parse(&id).is_err() {
                return Err(err(format!(
                    "channel id `{id}` must be a slug: lowercase letters, digits, `-` and `_`, at most 64"
                )));
            }
            if !ids.insert(id.clone()) {
                return Err(err(format!("channel id `{id}` is used twice")));
            }
            let events = match events {
                None => None,
                Some(names) if names.is_empty() => {
                    return Err(err(format!(
                        "channel `{id}`: `events` is empty; leave it out for every event"
                    )));
                }
                Some(names) => Some(
                    names
                        .iter()
                        .map(|name| {
                            NotifyEvent::parse(name).ok_or_else(|| {
                                err(format!(
                                    "channel `{id}`: unknown event `{name}`; the events are {}",
                                    NotifyEvent::ALL.map(NotifyEvent::as_str).join(", ")
                                ))
                            })
                        })
                        .collect::<Result<BTreeSet<_>, _>>()?,
                ),
            };
            channels.push(ChannelConfig {
                id,
                events,
                settings,
            });
        }
        let emails = |field: &str, list: Vec<String>| {
            list.into_iter()
                .map(|e| {
                    let e = e.trim().to_owned();
                    Email::parse(&e)
                        .map(|_| e.clone())
                        .map_err(|_| err(format!("`{field}`: `{e}` is not an e-mail address")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            channels,
            approver_emails: emails("approver_emails", raw.approver_emails)?,
            admin_emails: emails("admin_emails", raw.admin_emails)?,
        })
    }

    /// The settings the service reads: the portal's URL (required once a channel exists, so every message can
    /// link to its grant) and the recipients.
    pub fn settings(&self, portal_url: Option<&str>) -> Result<NotifySettings, NotifyConfigError> {
        let portal_url = match portal_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => {
                check_outbound_url(url).map_err(|e| err(format!("PORTAL_URL: {e}")))?;
                Some(url.trim_end_matches('/').to_owned())
            }
            None if !self.channels.is_empty() => {
                return Err(err(
                    "PORTAL_URL is not set: every message links to its grant in the portal, so give the portal's public base URL (on AWS the stack's ApiUrl output)",
                ));
            }
            None => None,
        };
        Ok(NotifySettings {
            portal_url,
            approver_emails: self.approver_emails.clone(),
            admin_emails: self.admin_emails.clone(),
            ..NotifySettings::default()
        })
    }
}

/// Whether `id` reads like a Slack id (`C0123456789`, `S0123456789`): uppercase letters and digits.
fn slack_id(id: &str) -> bool {
    (2..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The address in a sender written `Name <address>` or `address`.
pub(super) fn sender_address(sender: &str) -> &str {
    match (sender.rfind('<'), sender.rfind('>')) {
        (Some(open), Some(close)) if open < close => sender[open + 1..close].trim(),
        _ => sender.trim(),
    }
}

/// The URL policy of DESIGN §6 (https, or http to a loopback host; no link-local or metadata address), with
/// errors that never show the URL.
fn checked_url(id: &str, field: &str, url: Secret) -> Result<Secret, NotifyConfigError> {
    match check_outbound_url(url.expose()) {
        Ok(_) => Ok(url),
        Err(e) => {
            let why = match e {
                UrlPolicyError::Invalid(_) => "is not a valid absolute URL",
                UrlPolicyError::NotHttps(_) => {
                    "must use https:// (plain http:// is allowed only to a loopback host such as 127.0.0.1)"
                }
                UrlPolicyError::Forbidden(_) => {
                    "points at a link-local or cloud metadata address, which is refused"
                }
                UrlPolicyError::Credentials(_) => "must not carry a username or password",
            };
            Err(err(format!("channel `{id}`: `{field}` {why}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLACK: &str = "https://hooks.slack.com/services/T000/B000/SECRETPART";

    #[test]
    fn a_full_configuration_parses() {
        let config = NotifyConfig::parse(&serde_json::json!({
            "channels": [
                {"id": "slack", "kind": "slack", "url": SLACK},
                {"id": "teams", "kind": "teams", "url": "https://example.logic.azure.com/workflows/1", "events": ["approval_requested"]},
                {"id": "bot", "kind": "webhook", "url": "http://127.0.0.1:9000/hook", "secret": "0123456789abcdef"},
                {"id": "mail", "kind": "email", "sender": "Ticketbound <tb@example.com>"},
            ],
            "approver_emails": ["approvers@example.com"],
            "admin_emails": ["secops@example.com"],
        }).to_string())
        .unwrap();
        assert_eq!(config.channels.len(), 4);
        assert_eq!(
            config.channels[1].events,
            Some(BTreeSet::from([NotifyEvent::ApprovalRequested]))
        );
        assert_eq!(config.channels[0].events, None);
        let settings = config.settings(Some("https://tb.example.com/")).unwrap();
        assert_eq!(
            settings.portal_url.as_deref(),
            Some("https://tb.example.com")
        );
        assert_eq!(settings.approver_emails, ["approvers@example.com"]);
    }

    #[test]
    fn bad_channels_are_refused_without_quoting_their_url() {
        for (channel, expected) in [
            (
                serde_json::json!({"id": "s", "kind": "slack", "url": "http://hooks.slack.com/services/SECRETPART"}),
                "channel `s`: `url` must use https://",
            ),
            (
                serde_json::json!({"id": "s", "kind": "slack", "url": "https://169.254.169.254/SECRETPART"}),
                "link-local",
            ),
            (
                serde_json::json!({"id": "s", "kind": "slack", "url": "SECRETPART"}),
                "not a valid absolute URL",
            ),
            (
                serde_json::json!({"id": "Bad Id", "kind": "slack", "url": SLACK}),
                "must be a slug",
            ),
            (
                serde_json::json!({"id": "w", "kind": "webhook", "url": SLACK, "secret": "short"}),
                "at least 16",
            ),
            (
                serde_json::json!({"id": "s", "kind": "slack", "url": SLACK, "events": ["approve"]}),
                "unknown event `approve`",
            ),
            (
                serde_json::json!({"id": "s", "kind": "slack", "url": SLACK, "events": []}),
                "`events` is empty",
            ),
            (
                serde_json::json!({"id": "m", "kind": "email", "sender": "nobody"}),
                "`sender` must be an e-mail address",
            ),
            (
                serde_json::json!({"id": "s", "kind": "slack", "url": SLACK, "channel": "#x"}),
                "unknown field `channel`",
            ),
            (
                serde_json::json!({"id": "s", "kind": "pager", "url": SLACK}),
                "unknown variant `pager`",
            ),
            (
                serde_json::json!({"id": "s", "kind": "slack", "url": ["SECRETPART"]}),
                "not the expected JSON",
            ),
        ] {
            let error =
                NotifyConfig::parse(&serde_json::json!({"channels": [channel]}).to_string())
                    .unwrap_err()
                    .to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("SECRETPART"), "{error}");
        }
    }

    #[test]
    fn duplicate_ids_and_bad_addresses_are_refused() {
        let twice = serde_json::json!({"channels": [
            {"id": "s", "kind": "slack", "url": SLACK},
            {"id": "s", "kind": "teams", "url": SLACK},
        ]});
        assert!(
            NotifyConfig::parse(&twice.to_string())
                .unwrap_err()
                .0
                .contains("used twice")
        );
        let bad = serde_json::json!({"approver_emails": ["not an address"]});
        assert!(
            NotifyConfig::parse(&bad.to_string())
                .unwrap_err()
                .0
                .contains("`approver_emails`")
        );
    }

    #[test]
    fn channels_need_a_portal_url_and_no_channels_need_nothing() {
        let config = NotifyConfig::parse(
            &serde_json::json!({"channels": [{"id": "s", "kind": "slack", "url": SLACK}]})
                .to_string(),
        )
        .unwrap();
        assert!(config.settings(None).unwrap_err().0.contains("PORTAL_URL"));
        assert!(
            config
                .settings(Some("ftp://portal.example.com"))
                .unwrap_err()
                .0
                .contains("PORTAL_URL")
        );
        let empty = NotifyConfig::parse("{}").unwrap();
        assert_eq!(empty.settings(None).unwrap(), NotifySettings::default());
    }

    const BOT: &str = "xoxb-1-2-SECRETPART";
    const SIGNING: &str = "0123456789abcdefSECRETPART";

    fn slack_app(extra: serde_json::Value) -> serde_json::Value {
        let mut channel = serde_json::json!({"id": "app", "kind": "slack_app", "bot_token": BOT,
            "signing_secret": SIGNING, "channel": "C0123456789"});
        for (k, v) in extra.as_object().unwrap() {
            channel[k] = v.clone();
        }
        serde_json::json!({"channels": [channel]})
    }

    #[test]
    fn a_slack_app_reads_its_mapping_and_never_shows_its_token_or_secret() {
        let config = NotifyConfig::parse(
            &slack_app(serde_json::json!({"user_groups": {"S0123": "ticketbound-approvers"}}))
                .to_string(),
        )
        .unwrap();
        let ChannelSettings::SlackApp(app) = &config.channels[0].settings else {
            panic!("a Slack app");
        };
        assert_eq!(app.api_url, SLACK_API_URL);
        assert_eq!(app.user_groups["S0123"], "ticketbound-approvers");
        let shown = format!("{config:?}");
        assert!(!shown.contains("SECRETPART"), "{shown}");
    }

    #[test]
    fn bad_slack_apps_are_refused_without_quoting_their_credentials() {
        for (extra, expected) in [
            (
                serde_json::json!({"bot_token": "xoxp-SECRETPART"}),
                "`bot_token`",
            ),
            (
                serde_json::json!({"signing_secret": "SECRETPART"}),
                "`signing_secret`",
            ),
            (serde_json::json!({"channel": "#access"}), "`channel`"),
            (
                serde_json::json!({"user_groups": {"approvers": "x"}}),
                "`user_groups`",
            ),
            (
                serde_json::json!({"api_url": "http://slack.example.com/api"}),
                "`api_url` must use https://",
            ),
        ] {
            let error = NotifyConfig::parse(&slack_app(extra).to_string())
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("SECRETPART"), "{error}");
        }
        let mut two = slack_app(serde_json::json!({}));
        let mut second = two["channels"][0].clone();
        second["id"] = "other".into();
        two["channels"].as_array_mut().unwrap().push(second);
        assert!(
            NotifyConfig::parse(&two.to_string())
                .unwrap_err()
                .0
                .contains("only one `slack_app`")
        );
    }

    #[test]
    fn the_sender_address_is_read_from_either_form() {
        assert_eq!(
            sender_address("Ticketbound <tb@example.com>"),
            "tb@example.com"
        );
        assert_eq!(sender_address(" tb@example.com "), "tb@example.com");
    }
}
