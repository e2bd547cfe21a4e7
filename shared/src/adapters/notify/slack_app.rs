//! A Slack app: two-way Slack through the Web API with the app's bot token, and the interactions Slack sends
//! back (`POST /slack/interactions`), verified with the app's signing secret.
//!
//! Posting: an approval request goes to the configured conversation, and as a direct message to each approver
//! Slack finds by e-mail (`users.lookupByEmail`) and to each member of the Slack user groups the `user_groups`
//! mapping ties to a deciding Ticketbound group (`usergroups.users.list`), never to the requester and once per
//! person, at most [`MAX_DIRECT_MESSAGES`] per request, as Block Kit with *Approve*, *Deny* and *Open in
//! portal*. A
//! decision, a cancellation or an ending updates every message posted about the grant in place
//! (`chat.update`: the state line, buttons removed) and tells the requester directly; the "granted" message
//! carries *I'm done* and *Extend*. Where each message went (conversation and `ts`) comes back as
//! [`SendOutcome::Posted`] and is kept on the grant.
//!
//! Answers: HTTP statuses are judged by the engine's one table (429 with its `Retry-After`, 5xx retried); a
//! 200 with `"ok": false` is judged by its `error`: Slack's own trouble (`ratelimited`, `internal_error`,
//! `fatal_error`, `service_unavailable`, `request_timeout`) is retried, anything else (`invalid_auth`,
//! `channel_not_found`, `not_in_channel`, `missing_scope`, ...) is permanent. Errors name the method and
//! Slack's error word, never the token.
//!
//! Interactions: the signature (`X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret,
//! "v0:<X-Slack-Request-Timestamp>:<raw body>")>`) is checked in constant time, and the timestamp within five
//! minutes, before the body is read. Then the form's `payload` is read as a `block_actions` (a button) or a
//! `view_submission` (the deny dialog) of this app; anything else is malformed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;

use super::config::SlackAppSettings;
use super::slack::escape;
use super::{Http, error_token, judge};
use crate::domain::identity::looks_like_email;
use crate::domain::notification::{ChatMessageRef, NotifyEvent, decision_line};
use crate::ports::notify::{
    ChatAction, ChatApp, ChatInteraction, ChatPerson, ChatRefusal, Message, SendError, SendOutcome,
};

/// How far a request's timestamp may be from now, either way (Slack's own advice).
const MAX_SKEW_SECONDS: i64 = 5 * 60;
/// The most direct messages one approval request sends (named approvers first, then the members of mapped
/// groups): a Slack user group of hundreds must not turn one request into hundreds of calls against Slack's
/// rate limits. Beyond it, the post in the channel is how the others hear.
pub const MAX_DIRECT_MESSAGES: usize = 25;
/// The deny dialog's `callback_id`.
const DENY_DIALOG: &str = "tb_deny";
/// Slack's errors that say Slack, not the request, is the trouble: worth another attempt.
const RETRYABLE_ERRORS: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

pub(super) struct SlackApp {
    pub(super) http: Http,
    pub(super) settings: SlackAppSettings,
    pub(super) what: String,
}

impl SlackApp {
    /// Calls a Web API method with a JSON body (the write methods) and answers its JSON when `ok`.
    async fn call(&self, method: &str, body: &Value) -> Result<Value, SendError> {
        let bytes = serde_json::to_vec(body).map_err(|e| SendError::Permanent(e.to_string()))?;
        self.request(method, "application/json; charset=utf-8", bytes)
            .await
    }

    /// Calls a Web API method with form arguments (the read methods, which take no JSON body).
    async fn read(&self, method: &str, args: &[(&str, &str)]) -> Result<Value, SendError> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(args)
            .finish();
        self.request(
            method,
            "application/x-www-form-urlencoded",
            form.into_bytes(),
        )
        .await
    }

    async fn request(
        &self,
        method: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Value, SendError> {
        let what = format!("{} ({method})", self.what);
        let url = format!("{}/{method}", self.settings.api_url);
        let response = self
            .http
            .client
            .post(url)
            .bearer_auth(self.settings.bot_token.expose())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if let Some(refused) = crate::adapters::tls::refused_address(&e) {
                    return SendError::Permanent(format!("{what}: {refused}"));
                }
                SendError::Retryable {
                    message: if e.is_timeout() {
                        format!("{what} did not answer within {:?}", self.http.timeout)
                    } else {
                        format!("the call to {what} failed")
                    },
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
        if !(200..300).contains(&status) {
            judge(
                super::Answer {
                    status,
                    retry_after,
                    token: error_token(&bytes),
                },
                &what,
            )?;
        }
        let json: Value = serde_json::from_slice(&bytes).map_err(|_| SendError::Retryable {
            message: format!("{what} answered something that is not the Web API's JSON"),
            retry_after,
        })?;
        if json.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(json);
        }
        let error = error_token(&bytes).unwrap_or_else(|| "unknown_error".to_owned());
        Err(refusal(&what, &error, retry_after))
    }

    /// The Slack user with this e-mail address, when Slack knows one (`users_not_found` is no error).
    async fn user_by_email(&self, email: &str) -> Result<Option<String>, SendError> {
        match self.read("users.lookupByEmail", &[("email", email)]).await {
            Ok(json) => Ok(json
                .pointer("/user/id")
                .and_then(Value::as_str)
                .map(str::to_owned)),
            Err(SendError::Permanent(message)) if message.ends_with("`users_not_found`") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Posts `blocks` to `channel` (a conversation id, or a user id for a direct message); where it went.
    async fn post(
        &self,
        channel: &str,
        text: &str,
        blocks: Value,
    ) -> Result<ChatMessageRef, SendError> {
        let json = self
            .call(
                "chat.postMessage",
                &json!({"channel": channel, "text": text, "blocks": blocks, "unfurl_links": false}),
            )
            .await?;
        match (
            json.get("channel").and_then(Value::as_str),
            json.get("ts").and_then(Value::as_str),
        ) {
            (Some(channel), Some(ts)) => Ok(ChatMessageRef {
                channel: channel.to_owned(),
                ts: ts.to_owned(),
            }),
            _ => Err(SendError::Permanent(format!(
                "{} (chat.postMessage) answered without the message's channel and ts",
                self.what
            ))),
        }
    }

    /// Posts a direct message to the person with `email`; `None` when Slack does not know them.
    async fn post_to_person(
        &self,
        email: &str,
        text: &str,
        blocks: Value,
    ) -> Result<Option<ChatMessageRef>, SendError> {
        match self.user_by_email(email).await? {
            Some(user) => self.post(&user, text, blocks).await.map(Some),
            None => Ok(None),
        }
    }

    /// The Slack users an approval request is sent to directly, in order and each once: the approvers named
    /// by e-mail whom Slack finds, then the members of the Slack user groups mapped to the request's deciding
    /// groups, but never the requester, and no more than [`MAX_DIRECT_MESSAGES`].
    async fn approvers_to_message(&self, message: &Message) -> Result<Vec<String>, SendError> {
        let mut users = Vec::new();
        let mut seen = BTreeSet::new();
        for approver in &message.to {
            if users.len() == MAX_DIRECT_MESSAGES {
                break;
            }
            if let Some(user) = self.user_by_email(approver).await?
                && seen.insert(user.clone())
            {
                users.push(user);
            }
        }
        let usergroups: Vec<&str> = self
            .settings
            .user_groups
            .iter()
            .filter(|(_, group)| message.approver_groups.contains(group))
            .map(|(usergroup, _)| usergroup.as_str())
            .collect();
        if usergroups.is_empty() || users.len() == MAX_DIRECT_MESSAGES {
            return Ok(users);
        }
        // The requester may well be in an approvers' group; they cannot decide their own request.
        let requester = &message.grant.requester;
        if looks_like_email(requester)
            && let Some(user) = self.user_by_email(requester).await?
        {
            seen.insert(user);
        }
        for usergroup in usergroups {
            for member in self.members(usergroup).await? {
                if seen.contains(&member) {
                    continue;
                }
                if users.len() == MAX_DIRECT_MESSAGES {
                    tracing::info!(
                        grant = %message.grant.id,
                        max = MAX_DIRECT_MESSAGES,
                        "more approvers than direct messages per request; the others see the channel's post"
                    );
                    return Ok(users);
                }
                seen.insert(member.clone());
                users.push(member);
            }
        }
        Ok(users)
    }

    /// The user ids in a Slack user group (`usergroups.users.list`, scope `usergroups:read`).
    async fn members(&self, usergroup: &str) -> Result<Vec<String>, SendError> {
        let json = self
            .read("usergroups.users.list", &[("usergroup", usergroup)])
            .await?;
        Ok(json
            .get("users")
            .and_then(Value::as_array)
            .map(|users| {
                users
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    pub(super) async fn send(&self, message: &Message) -> Result<SendOutcome, SendError> {
        use NotifyEvent as E;
        let text = escape(&message.subject);
        let mut posted = Vec::new();
        // Every message already about the grant first shows what happened now (idempotent: a retry edits again).
        if matches!(message.event, E::Approved | E::Denied | E::Ended) {
            let blocks = decided_blocks(message);
            for at in &message.posted {
                self.call(
                    "chat.update",
                    &json!({"channel": at.channel, "ts": at.ts, "text": text, "blocks": blocks}),
                )
                .await?;
            }
        }
        match message.event {
            E::ApprovalRequested => {
                let blocks = request_blocks(message);
                posted.push(
                    self.post(&self.settings.channel, &text, blocks.clone())
                        .await?,
                );
                for user in self.approvers_to_message(message).await? {
                    posted.push(self.post(&user, &text, blocks.clone()).await?);
                }
            }
            E::DeprovisioningFailed => {
                posted.push(
                    self.post(&self.settings.channel, &text, plain_blocks(message))
                        .await?,
                );
            }
            E::Approved => {
                let blocks = granted_blocks(message);
                if let Some(at) = self
                    .post_to_person(&message.grant.requester, &text, blocks)
                    .await?
                {
                    posted.push(at);
                }
            }
            E::Denied | E::Ended | E::EndingInADay | E::EndingInAnHour => {
                if let Some(at) = self
                    .post_to_person(&message.grant.requester, &text, plain_blocks(message))
                    .await?
                {
                    posted.push(at);
                }
            }
        }
        Ok(SendOutcome::Posted(posted))
    }
}

/// What a `"ok": false` answer means (the module docs).
fn refusal(what: &str, error: &str, retry_after: Option<Duration>) -> SendError {
    if RETRYABLE_ERRORS.contains(&error) {
        SendError::Retryable {
            message: format!("{what} answered `{error}`"),
            retry_after,
        }
    } else {
        SendError::Permanent(format!("{what} refused the call: `{error}`"))
    }
}

fn summary_block(message: &Message) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn",
        "text": format!("*{}*\n{}", escape(&message.subject), escape(&message.text))}})
}

fn facts_block(message: &Message) -> Value {
    let fields: Vec<Value> = message
        .facts
        .iter()
        .take(10) // Slack's limit per section.
        .map(|(label, value)| json!({"type": "mrkdwn", "text": format!("*{}*\n{}", escape(label), escape(value))}))
        .collect();
    json!({"type": "section", "fields": fields})
}

fn portal_button(message: &Message) -> Value {
    json!({"type": "button", "action_id": "portal", "text": {"type": "plain_text", "text": "Open in portal"}, "url": message.link})
}

/// An approval request: who asks for what, for how long and why, the ticket, the approvals so far, and the
/// buttons. A button's `value` is the grant id, nothing else: the use case decides what it may do.
fn request_blocks(message: &Message) -> Value {
    let grant = &message.grant;
    let id = grant.id.as_str();
    json!([
        summary_block(message),
        facts_block(message),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": approvals_line(grant)}]},
        {"type": "actions", "block_id": "decide", "elements": [
            {"type": "button", "action_id": "approve", "style": "primary", "value": id, "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": "deny", "style": "danger", "value": id, "text": {"type": "plain_text", "text": "Deny"}},
            portal_button(message),
        ]}
    ])
}

/// "Approvals: 1 of 2 (bob@example.com)": how many of the required approvals are in, and whose.
fn approvals_line(grant: &crate::domain::Grant) -> String {
    let required = grant.approvals_required.max(1);
    if grant.approvals.is_empty() {
        return format!("Approvals: 0 of {required}");
    }
    let who: Vec<String> = grant.approvals.iter().map(|a| escape(&a.by)).collect();
    format!(
        "Approvals: {} of {required} ({})",
        grant.approvals.len(),
        who.join(", ")
    )
}

/// The requester's "granted" message, with *I'm done* and *Extend*.
fn granted_blocks(message: &Message) -> Value {
    let id = message.grant.id.as_str();
    json!([
        summary_block(message),
        facts_block(message),
        {"type": "actions", "block_id": "own", "elements": [
            {"type": "button", "action_id": "done", "value": id, "text": {"type": "plain_text", "text": "I'm done"}},
            {"type": "button", "action_id": "extend", "value": id, "text": {"type": "plain_text", "text": "Extend"}},
            portal_button(message),
        ]}
    ])
}

fn plain_blocks(message: &Message) -> Value {
    json!([
        summary_block(message),
        facts_block(message),
        {"type": "actions", "elements": [portal_button(message)]}
    ])
}

/// A message brought up to date after a decision or an ending: the facts and the state line, no buttons but
/// the portal's.
fn decided_blocks(message: &Message) -> Value {
    json!([
        facts_block(message),
        {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", escape(&decision_line(&message.grant)))}},
        {"type": "actions", "elements": [portal_button(message)]}
    ])
}

type HmacSha256 = Hmac<Sha256>;

/// Checks Slack's signature on the raw bytes (constant time) and the timestamp's age; nothing of the body is
/// read before both hold. Answers the signature's hex, unique to this signed request.
pub(super) fn verify_signature(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<String, ChatRefusal> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(ChatRefusal::BadSignature);
    };
    let hex_part = signature
        .strip_prefix("v0=")
        .ok_or(ChatRefusal::BadSignature)?;
    let expected = hex::decode(hex_part).map_err(|_| ChatRefusal::BadSignature)?;
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).map_err(|_| ChatRefusal::BadSignature)?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| ChatRefusal::BadSignature)?;
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| ChatRefusal::BadSignature)?;
    if (now.unix_timestamp() - sent).abs() > MAX_SKEW_SECONDS {
        return Err(ChatRefusal::Stale);
    }
    Ok(hex_part.to_ascii_lowercase())
}

/// Reads a verified body: the form's `payload`, a `block_actions` or `view_submission` of this app.
pub(super) fn interaction(body: &[u8]) -> Result<ChatInteraction, ChatRefusal> {
    let malformed = |why: &str| ChatRefusal::Malformed(format!("not an interaction: {why}"));
    let payload = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| malformed("no `payload` field"))?;
    let json: Value =
        serde_json::from_str(&payload).map_err(|_| malformed("`payload` is not JSON"))?;
    let text = |pointer: &str| json.pointer(pointer).and_then(Value::as_str);
    let user = text("/user/id")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| malformed("no user"))?
        .to_owned();
    match text("/type") {
        Some("block_actions") => {
            let action = json
                .pointer("/actions/0")
                .ok_or_else(|| malformed("no action"))?;
            let grant_id = action
                .get("value")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty() && v.len() <= 64)
                .ok_or_else(|| malformed("the action carries no grant"))?
                .to_owned();
            let channel = text("/channel/id")
                .or_else(|| text("/container/channel_id"))
                .map(str::to_owned);
            let action = match action.get("action_id").and_then(Value::as_str) {
                Some("approve") => ChatAction::Approve,
                Some("deny") => ChatAction::AskDenyComment {
                    trigger_id: text("/trigger_id")
                        .ok_or_else(|| malformed("a deny without a trigger_id"))?
                        .to_owned(),
                },
                Some("done") => ChatAction::Done,
                Some("extend") => ChatAction::Extend,
                _ => return Err(malformed("an action this app does not send")),
            };
            Ok(ChatInteraction {
                user,
                action,
                grant_id,
                channel,
            })
        }
        Some("view_submission") if text("/view/callback_id") == Some(DENY_DIALOG) => {
            let meta: Value = text("/view/private_metadata")
                .and_then(|m| serde_json::from_str(m).ok())
                .ok_or_else(|| malformed("the dialog lost its grant"))?;
            let grant_id = meta
                .get("grant")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty() && v.len() <= 64)
                .ok_or_else(|| malformed("the dialog lost its grant"))?
                .to_owned();
            let comment = text("/view/state/values/comment/comment/value")
                .map(str::to_owned)
                .filter(|c| !c.trim().is_empty());
            Ok(ChatInteraction {
                user,
                action: ChatAction::Deny { comment },
                grant_id,
                channel: meta
                    .get("channel")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
        }
        _ => Err(malformed("a type this app does not handle")),
    }
}

#[async_trait]
impl ChatApp for SlackApp {
    async fn show_progress(&self, message: &Message) -> Result<(), SendError> {
        let text = escape(&message.subject);
        let blocks = request_blocks(message);
        for at in &message.posted {
            self.call(
                "chat.update",
                &json!({"channel": at.channel, "ts": at.ts, "text": text, "blocks": blocks}),
            )
            .await?;
        }
        Ok(())
    }

    fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<(ChatInteraction, String), ChatRefusal> {
        let id = verify_signature(
            self.settings.signing_secret.expose(),
            timestamp,
            signature,
            body,
            now,
        )?;
        Ok((interaction(body)?, id))
    }

    async fn person(&self, user: &str) -> Result<Option<ChatPerson>, SendError> {
        let json = match self.read("users.info", &[("user", user)]).await {
            Ok(json) => json,
            // A user this workspace does not know (another workspace's, or deleted since) is nobody here.
            Err(SendError::Permanent(message)) if message.ends_with("`user_not_found`") => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let Some(found) = json.get("user") else {
            return Ok(None);
        };
        let flag = |name: &str| found.get(name).and_then(Value::as_bool) == Some(true);
        // Only a confirmed address of a real, current member names a person.
        if flag("deleted") || flag("is_bot") || !flag("is_email_confirmed") {
            return Ok(None);
        }
        let Some(email) = found
            .pointer("/profile/email")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
        else {
            return Ok(None);
        };
        let mut groups = Vec::new();
        let mapping: &BTreeMap<String, String> = &self.settings.user_groups;
        for (usergroup, group) in mapping {
            let member = self.members(usergroup).await?.iter().any(|u| u == user);
            if member && !groups.contains(group) {
                groups.push(group.clone());
            }
        }
        Ok(Some(ChatPerson {
            email: email.to_owned(),
            groups,
        }))
    }

    async fn ask_deny_comment(&self, interaction: &ChatInteraction) -> Result<(), SendError> {
        let ChatAction::AskDenyComment { trigger_id } = &interaction.action else {
            return Ok(());
        };
        let meta =
            json!({"grant": interaction.grant_id, "channel": interaction.channel}).to_string();
        self.call(
            "views.open",
            &json!({"trigger_id": trigger_id, "view": {
                "type": "modal",
                "callback_id": DENY_DIALOG,
                "private_metadata": meta,
                "title": {"type": "plain_text", "text": "Deny the request"},
                "submit": {"type": "plain_text", "text": "Deny"},
                "close": {"type": "plain_text", "text": "Cancel"},
                "blocks": [{
                    "type": "input", "block_id": "comment", "optional": true,
                    "label": {"type": "plain_text", "text": "Comment (optional)"},
                    "element": {"type": "plain_text_input", "action_id": "comment", "multiline": true, "max_length": 2000}
                }]
            }}),
        )
        .await
        .map(drop)
    }

    async fn tell(&self, interaction: &ChatInteraction, text: &str) -> Result<(), SendError> {
        let Some(channel) = &interaction.channel else {
            return Ok(());
        };
        self.call(
            "chat.postEphemeral",
            &json!({"channel": channel, "user": interaction.user, "text": escape(text)}),
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

    fn sign(ts: &str, body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("v0:{ts}:").as_bytes());
        mac.update(body);
        format!("v0={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn a_signature_is_checked_on_the_raw_bytes_and_its_age() {
        let now = datetime!(2026-01-01 10:00 UTC);
        let ts = now.unix_timestamp().to_string();
        let body = b"payload=%7B%7D";
        let good = sign(&ts, body);
        assert!(verify_signature(SECRET, Some(&ts), Some(&good), body, now).is_ok());
        assert_eq!(
            verify_signature(SECRET, Some(&ts), Some(&good), b"payload=%7B%20%7D", now),
            Err(ChatRefusal::BadSignature)
        );
        assert_eq!(
            verify_signature(SECRET, Some(&ts), None, body, now),
            Err(ChatRefusal::BadSignature)
        );
        assert_eq!(
            verify_signature(SECRET, Some(&ts), Some("v0=zz"), body, now),
            Err(ChatRefusal::BadSignature)
        );
        let later = now + time::Duration::minutes(6);
        assert_eq!(
            verify_signature(SECRET, Some(&ts), Some(&good), body, later),
            Err(ChatRefusal::Stale)
        );
    }

    #[test]
    fn a_button_and_the_deny_dialog_are_read_and_anything_else_is_malformed() {
        let form = |payload: Value| {
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("payload", &payload.to_string())
                .finish()
        };
        let approve = form(
            json!({"type": "block_actions", "user": {"id": "U1"}, "channel": {"id": "C1"},
            "trigger_id": "t", "actions": [{"action_id": "approve", "value": "G1"}]}),
        );
        assert_eq!(
            interaction(approve.as_bytes()).unwrap(),
            ChatInteraction {
                user: "U1".into(),
                action: ChatAction::Approve,
                grant_id: "G1".into(),
                channel: Some("C1".into())
            }
        );
        let deny = form(
            json!({"type": "view_submission", "user": {"id": "U1"}, "view": {
            "callback_id": DENY_DIALOG, "private_metadata": "{\"grant\":\"G1\",\"channel\":\"C1\"}",
            "state": {"values": {"comment": {"comment": {"type": "plain_text_input", "value": "not now"}}}}}}),
        );
        assert_eq!(
            interaction(deny.as_bytes()).unwrap().action,
            ChatAction::Deny {
                comment: Some("not now".into())
            }
        );
        for bad in [
            "payload=not-json".to_owned(),
            "other=1".to_owned(),
            form(
                json!({"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": "delete", "value": "G1"}]}),
            ),
            form(json!({"type": "block_actions", "user": {"id": "U1"}, "actions": []})),
            form(json!({"type": "shortcut", "user": {"id": "U1"}})),
        ] {
            assert!(
                matches!(interaction(bad.as_bytes()), Err(ChatRefusal::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ok_false_is_retried_only_when_slack_is_the_trouble() {
        assert!(matches!(
            refusal("c", "ratelimited", Some(Duration::from_secs(3))),
            SendError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            refusal("c", "internal_error", None),
            SendError::Retryable { .. }
        ));
        for permanent in ["invalid_auth", "channel_not_found", "not_in_channel"] {
            assert!(matches!(
                refusal("c", permanent, None),
                SendError::Permanent(_)
            ));
        }
    }
}
