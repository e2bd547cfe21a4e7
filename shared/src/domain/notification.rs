//! Notifications (DESIGN §12): which events people are told of, and where each message to each channel stands.
//!
//! A notification is a side effect like deprovisioning: the writer whose conditional write made the event happen
//! arms a job for it, and the job sends the message to every channel that takes the event, recording each
//! channel's delivery on the grant as a [`NotificationState`] (`grant.notifications`). How the job retries is in
//! `service/notifications.rs`.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::side_effect::{SideEffectState, Tracked};

/// Where messages link to and whom they address, from the deployment's notification configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifySettings {
    /// The portal's public base URL (`PORTAL_URL`); a grant's page is `<portal_url>/#/grant/<id>`.
    pub portal_url: Option<String>,
    /// Addresses told of waiting requests (the deployment-level approvers).
    pub approver_emails: Vec<String>,
    /// Addresses told when removing access failed.
    pub admin_emails: Vec<String>,
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
    fn a_pending_state_serializes_without_its_empty_fields() {
        let json = serde_json::to_value(NotificationState::pending(NotifyEvent::Approved, "slack"))
            .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"event": "approved", "channel": "slack", "state": "pending", "attempts": 0, "last_error": null})
        );
    }
}
