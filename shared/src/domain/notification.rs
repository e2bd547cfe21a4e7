//! Notifications (DESIGN §12): which events people are told of, and where each message to each channel stands.
//!
//! A notification is a side effect like deprovisioning: the writer whose conditional write made the event happen
//! arms a job for it, and the job sends the message to every channel that takes the event, recording each
//! channel's delivery on the grant as a [`NotificationState`] (`grant.notifications`). How the job retries is in
//! `service/notifications.rs`.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::side_effect::{SideEffectState, Tracked};
use super::{EndReason, Grant, GrantStatus};

/// Where messages link to and whom they address, from the deployment's notification configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifySettings {
    /// The portal's public base URL (`PORTAL_URL`); a grant's page is `<portal_url>/#/grant/<id>`.
    pub portal_url: Option<String>,
    /// Addresses told of waiting requests (the deployment-level approvers).
    pub approver_emails: Vec<String>,
    /// Addresses told when removing access failed.
    pub admin_emails: Vec<String>,
    /// The approver group (`APPROVER_GROUP`): who decides a resource that lists no approvers of its own, and
    /// whose members a chat app with a mapping for it messages about such a request.
    pub approver_group: String,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            portal_url: None,
            approver_emails: Vec::new(),
            admin_emails: Vec::new(),
            approver_group: super::identity::RoleGroups::default().approver,
        }
    }
}

impl NotifySettings {
    /// The grant's page in the portal (the hash route the portal's `#/grant/<id>` view reads).
    pub fn link(&self, grant_id: &str) -> String {
        let base = self.portal_url.as_deref().unwrap_or_default();
        format!("{}/#/grant/{grant_id}", base.trim_end_matches('/'))
    }
}

/// What happened that someone should hear of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A request waits for a decision: to the resource's approvers.
    ApprovalRequested,
    /// Your request was approved: to the requester.
    Approved,
    /// Your request was denied: to the requester.
    Denied,
    /// Your access ends in a day (grants longer than a day): to the requester.
    EndingInADay,
    /// Your access ends in an hour (grants longer than a day): to the requester.
    EndingInAnHour,
    /// Your access ended, or your pending request was cancelled, and why: to the requester.
    Ended,
    /// Removing access failed after the whole retry budget: to the admins.
    DeprovisioningFailed,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 7] = [
        Self::ApprovalRequested,
        Self::Approved,
        Self::Denied,
        Self::EndingInADay,
        Self::EndingInAnHour,
        Self::Ended,
        Self::DeprovisioningFailed,
    ];

    /// The name in JSON and in the configuration's `events` lists.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApprovalRequested => "approval_requested",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::EndingInADay => "ending_in_a_day",
            Self::EndingInAnHour => "ending_in_an_hour",
            Self::Ended => "ended",
            Self::DeprovisioningFailed => "deprovisioning_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Three letters for schedule names (`tb-<grant>-ntf-<code>`): short enough for EventBridge's 64.
    pub fn code(self) -> &'static str {
        match self {
            Self::ApprovalRequested => "req",
            Self::Approved => "apr",
            Self::Denied => "den",
            Self::EndingInADay => "r1d",
            Self::EndingInAnHour => "r1h",
            Self::Ended => "end",
            Self::DeprovisioningFailed => "dpf",
        }
    }

    /// For a reminder, how long before the time bound it is sent.
    pub fn reminder_lead(self) -> Option<Duration> {
        match self {
            Self::EndingInADay => Some(Duration::days(1)),
            Self::EndingInAnHour => Some(Duration::hours(1)),
            _ => None,
        }
    }

    /// The reminders, in the order they come.
    pub const REMINDERS: [NotifyEvent; 2] = [Self::EndingInADay, Self::EndingInAnHour];
}

/// Where a chat message was posted, so it can be edited later (Slack: the conversation id and the message's
/// `ts`). Neither is a secret: they name a message only to someone already in the workspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessageRef {
    pub channel: String,
    pub ts: String,
}

/// One event's message to one channel, on the grant:
/// `{"event": "approved", "channel": "slack-access", "state": "done", "attempts": 1, "last_error": null}`.
///
/// `state` reads like deprovisioning's: `pending` while it is being sent or waits for a retry (`next_attempt_at`),
/// `done` once the channel accepted it, `skipped` when there was nothing to send (the event no longer held, or no
/// recipient), `failed` after a permanent refusal or the whole retry budget (`last_error` says why).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationState {
    pub event: NotifyEvent,
    /// The channel's id in the notification configuration.
    pub channel: String,
    pub state: SideEffectState,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Why it was skipped, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the channel accepted it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub sent_at: Option<OffsetDateTime>,
    /// When the next retry is scheduled, while one is.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// An attempt in progress holds this lease, so that the same job delivered twice does not send twice.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub lease_until: Option<OffsetDateTime>,
    /// The live arming of this event's retry schedule (`ports::Job::arming`); not written while 0.
    #[serde(default, skip_serializing_if = "super::side_effect::is_zero")]
    pub arming: u32,
    /// The chat messages this delivery posted (a Slack app channel), kept with the grant so that every later
    /// event about it can update them in place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<ChatMessageRef>,
}

impl NotificationState {
    /// A message not yet attempted.
    pub fn pending(event: NotifyEvent, channel: &str) -> Self {
        Self {
            event,
            channel: channel.to_owned(),
            state: SideEffectState::Pending,
            attempts: 0,
            last_error: None,
            reason: None,
            sent_at: None,
            next_attempt_at: None,
            lease_until: None,
            arming: 0,
            messages: Vec::new(),
        }
    }
}

impl Tracked for NotificationState {
    fn state(&self) -> SideEffectState {
        self.state
    }
    fn attempts_mut(&mut self) -> &mut u32 {
        &mut self.attempts
    }
    fn lease_until_mut(&mut self) -> &mut Option<OffsetDateTime> {
        &mut self.lease_until
    }
    fn lease_until(&self) -> Option<OffsetDateTime> {
        self.lease_until
    }
}

/// Where a request stands, as one line on every chat message about it: "Approved by dana@example.com (2 of 2) at 2026-01-01T10:02:00Z", "Cancelled: nobody decided in time".
pub fn decision_line(grant: &Grant) -> String {
    let at = |t: Option<OffsetDateTime>| {
        t.and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map(|t| format!(" at {t}"))
        .unwrap_or_default()
    };
    let by = grant.decided_by.as_deref().unwrap_or("an approver");
    match grant.status {
        GrantStatus::Pending => format!(
            "Waiting: {} of {} approvals",
            grant.approvals.len(),
            grant.approvals_required.max(1)
        ),
        GrantStatus::Active => format!(
            "Approved by {by} ({} of {}){}",
            grant.approvals.len().max(1),
            grant.approvals_required.max(1),
            at(grant.decided_at)
        ),
        GrantStatus::Denied => format!("Denied by {by}{}", at(grant.decided_at)),
        GrantStatus::Cancelled | GrantStatus::Ended => {
            let why = match grant.end_reason {
                Some(EndReason::ApprovalTimedOut) => "nobody decided in time".to_owned(),
                Some(EndReason::Withdrawn) => "withdrawn by the requester".to_owned(),
                Some(EndReason::TimeBoundReached) => "its time bound was reached".to_owned(),
                Some(EndReason::TicketClosed) => "its ticket was closed".to_owned(),
                Some(EndReason::TicketDeleted) => "its ticket was deleted".to_owned(),
                Some(EndReason::Superseded) => "an extension took over".to_owned(),
                Some(EndReason::Revoked) => match grant.ended_by.as_deref() {
                    Some(by) if by == grant.requester => "the requester was done".to_owned(),
                    Some(by) => format!("revoked by {by}"),
                    None => "revoked".to_owned(),
                },
                Some(EndReason::Denied) => "denied".to_owned(),
                Some(EndReason::ConnectionRemoved) => {
                    "its ticket-system connection was removed".to_owned()
                }
                None => "ended".to_owned(),
            };
            let word = if grant.status == GrantStatus::Cancelled {
                "Cancelled"
            } else {
                "Ended"
            };
            format!("{word}: {why}{}", at(grant.ended_at))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip_and_codes_are_distinct() {
        let mut codes = std::collections::BTreeSet::new();
        for event in NotifyEvent::ALL {
            assert_eq!(NotifyEvent::parse(event.as_str()), Some(event));
            assert_eq!(
                serde_json::to_value(event).unwrap(),
                serde_json::Value::String(event.as_str().into())
            );
            assert!(codes.insert(event.code()), "{event:?}");
        }
        assert_eq!(NotifyEvent::parse("approve"), None);
    }

    #[test]
    fn the_decision_line_says_who_decided_and_why_it_ended() {
        use crate::domain::GrantDuration;
        use time::macros::datetime;
        let at = datetime!(2026-01-01 10:00 UTC);
        let mut pending = Grant::request(
            "01JD3AAAAAAAAAAAAAAAAAAAAA".into(),
            "alice@example.com".into(),
            "prod-db".into(),
            "INC-7".into(),
            GrantDuration::parse("PT4H").unwrap(),
            None,
            at,
        );
        pending.approvals_required = 2;
        assert_eq!(decision_line(&pending), "Waiting: 0 of 2 approvals");
        let once = pending
            .approve("dana@example.com", at + Duration::minutes(1))
            .unwrap();
        let twice = once
            .approve("bob@example.com", at + Duration::minutes(2))
            .unwrap();
        assert_eq!(
            decision_line(&twice),
            "Approved by bob@example.com (2 of 2) at 2026-01-01T10:02:00Z"
        );
        let denied = pending.deny("bob@example.com", at).unwrap();
        assert_eq!(
            decision_line(&denied),
            "Denied by bob@example.com at 2026-01-01T10:00:00Z"
        );
        let timed_out = pending
            .end(EndReason::ApprovalTimedOut, None, at + Duration::days(1))
            .unwrap();
        assert_eq!(
            decision_line(&timed_out),
            "Cancelled: nobody decided in time at 2026-01-02T10:00:00Z"
        );
    }

    #[test]
    fn a_pending_state_serializes_without_its_empty_fields() {
        let json = serde_json::to_value(NotificationState::pending(NotifyEvent::Approved, "slack"))
            .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"event": "approved", "channel": "slack", "state": "pending", "attempts": 0, "last_error": null})
        );
    }
}
