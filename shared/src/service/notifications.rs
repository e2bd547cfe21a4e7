//! Notifications (DESIGN §12): events become messages to recipients, sent by a durable job as a side effect.
//!
//! ## Emitting an event
//!
//! Only the writer whose conditional write made an event happen emits it (the request's insert, the approval,
//! the denial, the ending, deprovisioning turning `failed`), so a webhook, a schedule and a person racing to end
//! one grant emit one `ended`. Emitting arms a one-time job named per (grant, event)
//! (`tb-<grant>-ntf-<event code>`, [`Job::notify`]): arming one event twice leaves one schedule. Nothing is sent
//! in the caller's path, and arming is bounded ([`ARM_TIMEOUT`]): a failure is logged and counted
//! (`NotificationsNotArmed`) and that one message is lost, never the request, the decision or the ending.
//! Reminders are armed when a grant longer than a day becomes active, at one day and one hour before its bound.
//!
//! ## The job
//!
//! When the job runs it first checks that its event still holds (a reminder for a grant that already ended
//! sends nothing, an early one re-arms for its time, a request decided before its message went out is not
//! announced any more), then claims every channel that takes the event with a lease on the grant (one
//! conditional write), so the same job delivered twice does not send twice. It sends to the claimed channels at
//! once, each bounded by half the lease, records each channel's outcome on the grant (`grant.notifications`:
//! `done`, `skipped`, `failed`, or `pending` with `next_attempt_at`), and re-arms one retry for the channels that
//! may work later, with the backoff of deprovisioning (30 s doubling to 1 h, jittered; the channel's
//! `Retry-After` when it asked for longer) under a new arming, as `service/lifecycle.rs` describes. A permanent
//! refusal, or the whole retry budget, makes a channel `failed`: logged at error level and counted as the
//! `NotificationsFailed` metric, without the channel's URL or secret. A send in flight when a process dies is
//! sent again when the lease runs out (at-least-once); each message carries a stable id for receivers to drop
//! the duplicate.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use tokio::task::JoinSet;

use super::grants::rfc3339;
use super::jobs::{next_arming, record_attempt_on_span};
use super::{JobOutcome, ServiceError, Ticketbound};
use crate::domain::identity::{looks_like_email, normalize_email};
pub use crate::domain::notification::NotifySettings;
use crate::domain::notification::{ChatMessageRef, NotificationState, NotifyEvent};
use crate::domain::resource::Approvers;
use crate::domain::side_effect::{Claim, Failure, Tracked};
use crate::domain::{EndReason, Grant, GrantStatus, SideEffectState};
use crate::ports::Job;
use crate::ports::notify::{Message, SendError, SendOutcome};
use crate::telemetry;

/// The most grants one `ended` job tells of: its Input (26-character ids) stays far inside EventBridge's 8 KB.
const MAX_TOLD_TOGETHER: usize = 100;
/// How long reading the bound ticket for an approval request's message may take.
const TICKET_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long an approver waits, at most, for the chat messages to show their approval (one edit per message).
const PROGRESS_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// How long arming a notification may hold up the request, decision or ending that emits it.
pub const ARM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// A reminder that fires up to this much before its time still sends (schedules fire to the second, clocks
/// differ by less).
const EARLY_SLACK: Duration = Duration::seconds(60);

/// Whether an event is still worth telling when its job runs.
enum Holds {
    Yes,
    /// A reminder fired before its time: re-arm for then.
    Early(OffsetDateTime),
    /// No longer true: nothing is sent, and what waited is `skipped` with this reason.
    No(&'static str),
}

fn holds(event: NotifyEvent, grant: &Grant, now: OffsetDateTime) -> Holds {
    use NotifyEvent as E;
    let yes_if = |ok: bool, why: &'static str| if ok { Holds::Yes } else { Holds::No(why) };
    match event {
        E::ApprovalRequested => yes_if(
            grant.status == GrantStatus::Pending,
            "the request was decided or withdrawn before the message went out",
        ),
        E::Approved => yes_if(
            grant.status == GrantStatus::Active,
            "the grant ended before the message went out; its end is told instead",
        ),
        E::Denied => yes_if(
            grant.status == GrantStatus::Denied,
            "the grant is not denied",
        ),
        E::EndingInADay | E::EndingInAnHour => {
            let lead = event.reminder_lead().unwrap_or_default();
            match (grant.status, grant.expires_at) {
                (GrantStatus::Active, Some(end)) => {
                    let at = end - lead;
                    if now + EARLY_SLACK < at {
                        Holds::Early(at)
                    } else if now >= end {
                        Holds::No("the time bound was reached before the reminder went out")
                    } else if event == E::EndingInADay && end - now <= Duration::hours(1) {
                        Holds::No(
                            "too late for the one-day reminder; the one-hour reminder tells it",
                        )
                    } else {
                        Holds::Yes
                    }
                }
                _ => Holds::No("the grant ended before the reminder"),
            }
        }
        E::Ended => yes_if(
            matches!(grant.status, GrantStatus::Ended | GrantStatus::Cancelled),
            "the grant has not ended",
        ),
        E::DeprovisioningFailed => yes_if(
            grant
                .deprovisioning
                .as_ref()
                .is_some_and(|d| d.state == SideEffectState::Failed),
            "deprovisioning is no longer failed",
        ),
    }
}

/// The live arming of `event`'s job on `grant`: the highest any of its channels records.
fn live_arming(grant: &Grant, event: NotifyEvent) -> u32 {
    grant
        .notifications
        .iter()
        .filter(|n| n.event == event)
        .map(|n| n.arming)
        .max()
        .unwrap_or(0)
}

/// What one send comes to, as written on the grant.
struct Outcome {
    state: SideEffectState,
    error: Option<String>,
    reason: Option<String>,
    next_attempt_at: Option<OffsetDateTime>,
    /// The chat messages the send posted, to be updated by later events.
    messages: Vec<ChatMessageRef>,
}

impl Ticketbound {
    /// Emits `event` for `grant`: arms its notification job, at once, if any channel takes the event. Never
    /// fails and never waits longer than [`ARM_TIMEOUT`].
    pub(crate) async fn notify(&self, grant: &Grant, event: NotifyEvent) {
        if self.notifier.channels_for(event).is_empty() {
            return;
        }
        self.arm_notification(&Job::notify(event, &grant.id, 0), self.clock.now())
            .await;
    }

    /// Tells `ended` for grants one closing ended together: one job (one schedule) per [`MAX_TOLD_TOGETHER`]
    /// grants, named after the first and naming the others ([`Job::also`]), instead of one per grant. Never
    /// fails and never waits longer than [`ARM_TIMEOUT`] per job.
    pub(crate) async fn notify_ended(&self, grants: &[Grant]) {
        if grants.is_empty() || self.notifier.channels_for(NotifyEvent::Ended).is_empty() {
            return;
        }
        for chunk in grants.chunks(MAX_TOLD_TOGETHER) {
            let Some((first, others)) = chunk.split_first() else {
                continue;
            };
            let job = Job {
                also: others.iter().map(|g| g.id.clone()).collect(),
                ..Job::notify(NotifyEvent::Ended, &first.id, 0)
            };
            self.arm_notification(&job, self.clock.now()).await;
        }
    }

    /// Arms the reminders of a grant that just became active, when its time bound is longer than a day: one day
    /// and one hour before the bound, skipping those already past.
    pub(crate) async fn arm_reminders(&self, grant: &Grant) {
        let (Some(end), Some(bound)) = (grant.expires_at, grant.duration.bound()) else {
            return;
        };
        if bound.seconds() <= Duration::days(1).whole_seconds() {
            return;
        }
        let now = self.clock.now();
        for event in NotifyEvent::REMINDERS {
            let at = end - event.reminder_lead().unwrap_or_default();
            if at <= now || self.notifier.channels_for(event).is_empty() {
                continue;
            }
            self.arm_notification(&Job::notify(event, &grant.id, 0), at)
                .await;
        }
    }

    /// Creates the schedule of a notification job, bounded in time; a failure is logged and counted, not
    /// returned (the message is then lost; the docs say so).
    async fn arm_notification(&self, job: &Job, at: OffsetDateTime) {
        let error = match tokio::time::timeout(ARM_TIMEOUT, self.scheduler.schedule(job, at)).await
        {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("the scheduler did not answer within {ARM_TIMEOUT:?}"),
        };
        tracing::warn!(grant = %job.grant_id, event = ?job.event, %error, "a notification could not be scheduled and will not be sent");
        telemetry::metric("NotificationsNotArmed", 1.0);
    }

    /// Runs a notification job (see "The job" in the module docs): for its grant, then for each grant it also
    /// names (whose own arming is 0: none of theirs fired). The first error is returned after every grant had
    /// its turn; each grant's record makes the redelivered job skip what was sent.
    pub(crate) async fn run_notification(&self, job: &Job) -> Result<JobOutcome, ServiceError> {
        if job.also.is_empty() {
            return self.run_one_notification(job).await;
        }
        let Some(event) = job.event else {
            return self.run_one_notification(job).await;
        };
        let mut outcome = JobOutcome::Nothing;
        let mut first_error = None;
        let each = std::iter::once((job.grant_id.as_str(), job.arming))
            .chain(job.also.iter().map(|id| (id.as_str(), 0)));
        for (id, fired) in each {
            match self
                .run_one_notification(&Job::notify(event, id, fired))
                .await
            {
                Ok(JobOutcome::Nothing) => {}
                Ok(done) => outcome = done,
                Err(e) => {
                    tracing::warn!(grant = %id, error = %e, "a notification of a closing could not run");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(outcome), Err)
    }

    /// Runs one grant's notification of one event.
    async fn run_one_notification(&self, job: &Job) -> Result<JobOutcome, ServiceError> {
        let Some(event) = job.event else {
            tracing::error!(grant = %job.grant_id, "a notification job without an event; ignored");
            return Ok(JobOutcome::Nothing);
        };
        let (id, fired) = (job.grant_id.as_str(), job.arming);
        let Some(grant) = self.store.get_grant(id).await? else {
            tracing::warn!(grant = %id, "notification job for a grant that does not exist");
            return Ok(JobOutcome::Nothing);
        };
        let now = self.clock.now();
        match holds(event, &grant, now) {
            Holds::Yes => {}
            Holds::Early(at) => {
                let next = next_arming(fired, live_arming(&grant, event));
                self.scheduler
                    .schedule(&Job::notify(event, id, next), at)
                    .await?;
                return Ok(JobOutcome::Rearmed);
            }
            Holds::No(reason) => {
                self.skip_waiting(event, id, reason).await?;
                return Ok(JobOutcome::Nothing);
            }
        }
        if event == NotifyEvent::Ended {
            self.drop_reminders(&grant).await;
        }
        let channels = self.notifier.channels_for(event);
        if channels.is_empty() {
            return Ok(JobOutcome::Nothing);
        }

        // Claim every channel still to send, with a lease.
        let lease = self.settings.retry.lease;
        let mut claimed: Vec<String> = Vec::new();
        let mut busy_until: Option<OffsetDateTime> = None;
        let written = self
            .modify_grant(id, |g| {
                claimed.clear();
                busy_until = None;
                let mut next = g.touched();
                for channel in &channels {
                    let index = match next
                        .notifications
                        .iter()
                        .position(|n| n.event == event && n.channel == *channel)
                    {
                        Some(i) => i,
                        None => {
                            next.notifications
                                .push(NotificationState::pending(event, channel));
                            next.notifications.len() - 1
                        }
                    };
                    match next.notifications[index].claim(now, lease) {
                        Claim::Claimed => claimed.push(channel.clone()),
                        Claim::Busy(until) => {
                            busy_until = Some(busy_until.map_or(until, |b| b.max(until)));
                        }
                        Claim::Finished => {}
                    }
                }
                (!claimed.is_empty()).then_some((next, None))
            })
            .await?;
        let Some(grant) = written else {
            if let Some(until) = busy_until {
                // Another worker is sending: come back when its lease runs out, in case it died.
                let next = next_arming(fired, live_arming(&grant, event));
                self.scheduler
                    .schedule(&Job::notify(event, id, next), until + Duration::seconds(1))
                    .await?;
                return Ok(JobOutcome::Rearmed);
            }
            return Ok(JobOutcome::Nothing);
        };

        record_attempt_on_span(
            grant
                .notifications
                .iter()
                .filter(|n| n.event == event && claimed.contains(&n.channel))
                .map(|n| n.attempts)
                .max()
                .unwrap_or(1),
        );
        let results = self.send_all(event, &grant, &claimed).await;
        self.record_sends(event, &grant, fired, results).await
    }

    /// Sends the event's message to each claimed channel at once, each bounded by half the lease.
    async fn send_all(
        &self,
        event: NotifyEvent,
        grant: &Grant,
        channels: &[String],
    ) -> BTreeMap<String, Result<SendOutcome, SendError>> {
        // A resource that lists its own approvers is decided by them: they, not the deployment's approver
        // addresses, hear of its requests. Unreadable now: the deployment's addresses.
        let approvers = match event {
            NotifyEvent::ApprovalRequested => {
                match self.store.get_resource(&grant.resource).await {
                    Ok(resource) => resource.and_then(|r| r.policy.approvers),
                    Err(e) => {
                        tracing::warn!(grant = %grant.id, error = %e, "could not read the resource's approvers; addressing the deployment's");
                        None
                    }
                }
            }
            _ => None,
        };
        let comment = self.decision_comment(event, grant).await;
        let mut message = self.compose(event, grant, approvers.as_ref(), comment.as_deref());
        if event == NotifyEvent::ApprovalRequested {
            self.add_ticket_facts(grant, &mut message).await;
        }
        let message = Arc::new(message);
        let limit: std::time::Duration = self.settings.retry.lease.unsigned_abs() / 2;
        let mut sends = JoinSet::new();
        for channel in channels {
            let (notifier, message, channel) =
                (self.notifier.clone(), message.clone(), channel.clone());
            sends.spawn(async move {
                let result = tokio::time::timeout(limit, notifier.send(&channel, &message))
                    .await
                    .unwrap_or_else(|_| {
                        Err(SendError::Retryable {
                            message: format!("the channel did not answer within {limit:?}"),
                            retry_after: None,
                        })
                    });
                (channel, result)
            });
        }
        let mut results = BTreeMap::new();
        while let Some(joined) = sends.join_next().await {
            if let Ok((channel, result)) = joined {
                results.insert(channel, result);
            }
        }
        for channel in channels {
            results.entry(channel.clone()).or_insert_with(|| {
                Err(SendError::Retryable {
                    message: "the send failed inside Ticketbound".into(),
                    retry_after: None,
                })
            });
        }
        results
    }

    /// An approver deciding from a message needs the bound ticket as it is now: its summary, status and link,
    /// read live (bounded by [`TICKET_READ_TIMEOUT`]). Unreadable now: the message keeps the key alone.
    async fn add_ticket_facts(&self, grant: &Grant, message: &mut Message) {
        let Some(ticket) = &grant.ticket else {
            return;
        };
        let read =
            tokio::time::timeout(TICKET_READ_TIMEOUT, self.connections.read_ticket(ticket)).await;
        let found = match read {
            Ok(Ok(Some(found))) => found,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::warn!(grant = %grant.id, error = %e, "could not read the bound ticket; the message names its key only");
                return;
            }
            Err(_) => {
                tracing::warn!(grant = %grant.id, "the bound ticket did not answer in time; the message names its key only");
                return;
            }
        };
        if let Some(fact) = message
            .facts
            .iter_mut()
            .find(|(label, _)| label == "Ticket")
        {
            fact.1 = format!("{}: {} ({})", found.key, found.summary, found.status);
        }
        message
            .facts
            .push(("Ticket link".to_owned(), found.url.clone()));
    }

    /// What the person who decided or ended the grant said with it (the `comment` of the audit event that
    /// recorded the decision), for the messages that tell of it. Unreadable now: none (the message still goes).
    async fn decision_comment(&self, event: NotifyEvent, grant: &Grant) -> Option<String> {
        use crate::domain::AuditKind as K;
        let kinds: &[K] = match event {
            NotifyEvent::Approved => &[K::Approved],
            NotifyEvent::Denied => &[K::Denied],
            NotifyEvent::Ended if grant.end_reason == Some(EndReason::Revoked) => {
                &[K::Ended, K::Cancelled]
            }
            _ => return None,
        };
        let events = match self.store.list_events(&grant.id, 200, None).await {
            Ok(page) => page.items,
            Err(e) => {
                tracing::warn!(grant = %grant.id, error = %e, "could not read the decision's comment; the message goes without it");
                return None;
            }
        };
        events
            .iter()
            .rev()
            .find(|e| kinds.contains(&e.kind))
            .and_then(|e| e.detail.get("comment"))
            .and_then(|c| c.as_str())
            .map(str::to_owned)
    }

    /// Writes each channel's outcome on the grant and arms one retry for those that may work later.
    async fn record_sends(
        &self,
        event: NotifyEvent,
        claimed: &Grant,
        fired: u32,
        results: BTreeMap<String, Result<SendOutcome, SendError>>,
    ) -> Result<JobOutcome, ServiceError> {
        let id = claimed.id.as_str();
        let policy = &self.settings.retry;
        let now = self.clock.now();
        let attempts = |channel: &str| {
            claimed
                .notifications
                .iter()
                .find(|n| n.event == event && n.channel == channel)
                .map_or(1, |n| n.attempts)
        };
        let outcomes: BTreeMap<String, Outcome> = results
            .into_iter()
            .map(|(channel, result)| {
                let outcome = match result {
                    Ok(SendOutcome::Sent) => Outcome {
                        state: SideEffectState::Done,
                        error: None,
                        reason: None,
                        next_attempt_at: None,
                        messages: Vec::new(),
                    },
                    Ok(SendOutcome::Posted(messages)) => Outcome {
                        state: SideEffectState::Done,
                        error: None,
                        reason: None,
                        next_attempt_at: None,
                        messages,
                    },
                    Ok(SendOutcome::NoRecipients) => Outcome {
                        state: SideEffectState::Skipped,
                        error: None,
                        reason: Some("no recipient for this event".into()),
                        next_attempt_at: None,
                        messages: Vec::new(),
                    },
                    Err(error) => {
                        let failure = match error {
                            SendError::Permanent(message) => Failure::permanent(message),
                            SendError::Retryable {
                                message,
                                retry_after,
                            } => Failure {
                                retry_after,
                                ..Failure::retryable(message)
                            },
                        };
                        let done = attempts(&channel);
                        match policy.retry_at(done, &failure, now) {
                            Some(at) => Outcome {
                                state: SideEffectState::Pending,
                                error: Some(failure.message),
                                reason: None,
                                next_attempt_at: Some(at),
                                messages: Vec::new(),
                            },
                            None => Outcome {
                                state: SideEffectState::Failed,
                                error: Some(if failure.is_retried() {
                                    format!("{} (after {done} attempts)", failure.message)
                                } else {
                                    failure.message
                                }),
                                reason: None,
                                next_attempt_at: None,
                                messages: Vec::new(),
                            },
                        }
                    }
                };
                (channel, outcome)
            })
            .collect();

        // The retry is armed before the outcome is written, under a new arming ("Armings" in lifecycle.rs).
        let retry_at = outcomes.values().filter_map(|o| o.next_attempt_at).min();
        let retry_arming = next_arming(fired, live_arming(claimed, event));
        let mut arm_error = None;
        if let Some(at) = retry_at
            && let Err(e) = self
                .scheduler
                .schedule(&Job::notify(event, id, retry_arming), at)
                .await
        {
            arm_error = Some(e);
        }
        let armed = retry_at.is_some() && arm_error.is_none();
        let mut replaced = Vec::new();
        let written = self
            .modify_grant(id, |g| {
                let mut next = g.touched();
                replaced = vec![fired];
                let mut changed = false;
                for (channel, outcome) in &outcomes {
                    let Some(entry) = next
                        .notifications
                        .iter_mut()
                        .find(|n| n.event == event && n.channel == *channel)
                    else {
                        continue;
                    };
                    if entry.state != SideEffectState::Pending {
                        continue;
                    }
                    replaced.push(entry.arming);
                    entry.state = outcome.state;
                    entry.last_error.clone_from(&outcome.error);
                    entry.reason.clone_from(&outcome.reason);
                    entry.next_attempt_at = outcome.next_attempt_at;
                    entry.release();
                    if outcome.state == SideEffectState::Done {
                        entry.sent_at = Some(now);
                        entry.messages.clone_from(&outcome.messages);
                    }
                    if armed && outcome.state == SideEffectState::Pending {
                        entry.arming = entry.arming.max(retry_arming);
                    }
                    changed = true;
                }
                changed.then_some((next, None))
            })
            .await?;
        let keep = (armed && written.is_some()).then_some(retry_arming);
        let mut stale = replaced;
        if armed && written.is_none() {
            // Somebody else finished it meanwhile: the retry just armed has nothing to do.
            stale.push(retry_arming);
        }
        stale.retain(|a| Some(*a) != keep);
        self.remove_notification_armings(event, id, stale).await;

        for (channel, outcome) in &outcomes {
            let error = outcome.error.as_deref().unwrap_or_default();
            match outcome.state {
                SideEffectState::Done => {
                    tracing::info!(grant = %id, event = event.as_str(), %channel, "notification sent");
                    telemetry::metric("NotificationsSent", 1.0);
                }
                SideEffectState::Skipped => {
                    tracing::info!(grant = %id, event = event.as_str(), %channel, reason = ?outcome.reason, "notification skipped");
                }
                SideEffectState::Pending => {
                    tracing::warn!(grant = %id, event = event.as_str(), %channel, %error, next_attempt_at = ?outcome.next_attempt_at, "notification failed; retry scheduled");
                    telemetry::metric("NotificationRetries", 1.0);
                }
                SideEffectState::Failed => {
                    tracing::error!(grant = %id, event = event.as_str(), %channel, %error, "notification FAILED; it will not be retried");
                    telemetry::metric("NotificationsFailed", 1.0);
                }
            }
        }
        match arm_error {
            // The outcomes are written; the job's own trigger (Lambda's retry, the local redelivery) comes back
            // for the channels still pending.
            Some(e) => Err(e.into()),
            None => Ok(JobOutcome::Done),
        }
    }

    /// Marks the event's waiting channels `skipped` (the event no longer holds); leased ones are left to the
    /// worker holding them.
    async fn skip_waiting(
        &self,
        event: NotifyEvent,
        id: &str,
        reason: &'static str,
    ) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let mut live = Vec::new();
        self.modify_grant(id, |g| {
            let mut next = g.touched();
            live.clear();
            let mut changed = false;
            for entry in next.notifications.iter_mut().filter(|n| {
                n.event == event
                    && n.state == SideEffectState::Pending
                    && n.leased_until(now).is_none()
            }) {
                live.push(entry.arming);
                entry.state = SideEffectState::Skipped;
                entry.reason = Some(reason.to_owned());
                entry.next_attempt_at = None;
                entry.release();
                changed = true;
            }
            changed.then_some((next, None))
        })
        .await?;
        self.remove_notification_armings(event, id, live).await;
        Ok(())
    }

    /// Deletes the reminder schedules of a grant that ended (they would only fire to find it ended).
    async fn drop_reminders(&self, grant: &Grant) {
        if grant
            .duration
            .bound()
            .is_none_or(|b| b.seconds() <= Duration::days(1).whole_seconds())
        {
            return;
        }
        for event in NotifyEvent::REMINDERS {
            let live = live_arming(grant, event);
            self.remove_notification_armings(event, &grant.id, vec![0, live])
                .await;
        }
    }

    /// Deletes the given armings of an event's job (the engine's [`Ticketbound::remove_armings`]).
    async fn remove_notification_armings(&self, event: NotifyEvent, id: &str, armings: Vec<u32>) {
        self.remove_armings(&Job::notify(event, id, 0), armings)
            .await;
    }

    /// Who is e-mailed about a waiting request, never the requester, who cannot decide their own request: the
    /// people a resource lists as its own `approvers` (its listed groups cannot be expanded to addresses: a
    /// directory is not consulted, so their members hear through the chat channels), or, for a resource decided
    /// by the approver group, the deployment-level `approver_emails` of the notification configuration.
    pub(crate) fn approver_recipients(
        &self,
        grant: &Grant,
        approvers: Option<&Approvers>,
    ) -> Vec<String> {
        let requester = normalize_email(&grant.requester);
        let listed = match approvers {
            Some(approvers) => &approvers.users,
            None => &self.settings.notifications.approver_emails,
        };
        listed
            .iter()
            .filter(|e| normalize_email(e) != requester)
            .cloned()
            .collect()
    }

    /// The requester, when their id is an e-mail address (it always is through the API).
    fn requester_recipients(grant: &Grant) -> Vec<String> {
        if looks_like_email(&grant.requester) {
            vec![grant.requester.clone()]
        } else {
            Vec::new()
        }
    }

    /// A request still pending got one of its approvals: every chat message about it shows the approvals so
    /// far ("Approvals: 1 of 2 (bob@…)"), its buttons kept. Best effort and bounded by
    /// [`PROGRESS_WITHIN`], in the approver's path: no schedule and no record, because the decision that
    /// settles the request updates the same messages durably through its notification job.
    pub(crate) async fn show_approval_progress(&self, grant: &Grant) {
        let Some(app) = self.notifier.chat_app() else {
            return;
        };
        let message = self.compose(NotifyEvent::ApprovalRequested, grant, None, None);
        if message.posted.is_empty() {
            return;
        }
        // From Slack, within what is left of the interaction's answer (Slack waits three seconds).
        let within = super::chat::within_answer(PROGRESS_WITHIN);
        match tokio::time::timeout(within, app.show_progress(&message)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(grant = %grant.id, error = %e, "the chat messages do not show the new approval yet")
            }
            Err(_) => {
                tracing::warn!(grant = %grant.id, "showing the new approval in chat took too long")
            }
        }
    }

    /// The message of `event` for `grant`: what happened, what to do, the facts, the link, the recipients.
    fn compose(
        &self,
        event: NotifyEvent,
        grant: &Grant,
        approvers: Option<&Approvers>,
        comment: Option<&str>,
    ) -> Message {
        use NotifyEvent as E;
        let settings = &self.settings.notifications;
        let (who, what) = (grant.requester.as_str(), grant.resource.as_str());
        let ticket = grant.ticket.as_ref().map(|t| t.key.clone());
        let ends = grant.expires_at.map(rfc3339);
        let decider = match grant.decided_by.as_deref() {
            Some(crate::domain::grant::POLICY_ACTOR) => "The resource's auto-approve rule",
            Some(person) => person,
            None => "an approver",
        };
        let until = match (&ends, &ticket) {
            (Some(at), Some(key)) => format!("It ends at {at}, or earlier when {key} is closed."),
            (Some(at), None) => format!("It ends at {at}."),
            (None, Some(key)) => format!("It ends when {key} is closed."),
            (None, None) => String::new(),
        };
        let (subject, text, to) = match event {
            E::ApprovalRequested => (
                format!("{who} asks for access to {what}"),
                format!(
                    "{who} asks for {} of access to {what}: \"{}\". Approve or deny it in Ticketbound.",
                    grant.duration, grant.reason
                ),
                self.approver_recipients(grant, approvers),
            ),
            E::Approved => (
                format!("Your access to {what} was approved"),
                format!("{decider} approved your request for {what}. {until}")
                    .trim_end()
                    .to_owned(),
                Self::requester_recipients(grant),
            ),
            E::Denied => (
                format!("Your request for {what} was denied"),
                format!("{decider} denied your request for {what}."),
                Self::requester_recipients(grant),
            ),
            E::EndingInADay | E::EndingInAnHour => {
                let when = if event == E::EndingInADay {
                    "a day"
                } else {
                    "an hour"
                };
                (
                    format!("Your access to {what} ends in {when}"),
                    format!(
                        "Your access to {what} ends at {}. Ask again in Ticketbound if you need longer.",
                        ends.clone().unwrap_or_default()
                    ),
                    Self::requester_recipients(grant),
                )
            }
            E::Ended => {
                let why = end_reason_text(grant);
                if grant.status == GrantStatus::Cancelled {
                    (
                        format!("Your request for {what} was cancelled: {why}"),
                        format!("Your request for {what} was cancelled because {why}."),
                        Self::requester_recipients(grant),
                    )
                } else {
                    (
                        format!("Your access to {what} ended: {why}"),
                        format!(
                            "Your access to {what} ended{} because {why}.{}",
                            grant
                                .ended_at
                                .map(|t| format!(" at {}", rfc3339(t)))
                                .unwrap_or_default(),
                            removal_text(grant)
                        ),
                        Self::requester_recipients(grant),
                    )
                }
            }
            E::DeprovisioningFailed => {
                let state = grant.deprovisioning.as_ref();
                (
                    format!("Removing {who}'s access to {what} FAILED"),
                    format!(
                        "Ticketbound could not remove {who}'s access to {what} after {} attempts (last error: {}). Remove it by hand.",
                        state.map_or(0, |d| d.attempts),
                        state
                            .and_then(|d| d.last_error.as_deref())
                            .unwrap_or("none recorded")
                    ),
                    settings.admin_emails.clone(),
                )
            }
        };
        // The decider's own words travel with the decision: "Bob approved ... They said: \"go ahead\"."
        let text = match comment {
            Some(said) => format!("{text} They said: \"{said}\"."),
            None => text,
        };
        let mut facts = vec![
            ("Requester".to_owned(), who.to_owned()),
            ("Resource".to_owned(), what.to_owned()),
            ("Duration".to_owned(), grant.duration.to_string()),
            ("Reason".to_owned(), grant.reason.clone()),
        ];
        if let Some(t) = &grant.ticket {
            facts.push(("Ticket".to_owned(), format!("{} ({})", t.key, t.connection)));
        }
        if let Some(at) = ends {
            facts.push(("Ends at".to_owned(), at));
        }
        if let Some(at) = grant.access_removed_at {
            facts.push(("Access removed at".to_owned(), rfc3339(at)));
        }
        if let Some(at) = grant.residual_until {
            facts.push(("Sessions may work until".to_owned(), rfc3339(at)));
        }
        if let Some(said) = comment {
            facts.push(("Comment".to_owned(), said.to_owned()));
        }
        facts.push(("Status".to_owned(), grant.status.as_str().to_owned()));
        let posted = grant
            .notifications
            .iter()
            .flat_map(|n| n.messages.iter().cloned())
            .collect();
        // Who decides a waiting request, as groups (the deployment's approver group when the resource lists
        // no approvers, or could not be read).
        let approver_groups = match (event, approvers) {
            (E::ApprovalRequested, Some(listed)) => listed.groups.clone(),
            (E::ApprovalRequested, None) => vec![settings.approver_group.clone()],
            _ => Vec::new(),
        };
        let mut shown = grant.clone();
        // The receiver needs the grant, not our delivery bookkeeping.
        shown.notifications.clear();
        Message {
            id: format!("{}.{}", grant.id, event.as_str()),
            event,
            subject,
            text,
            facts,
            link: settings.link(&grant.id),
            to,
            grant: shown,
            posted,
            approver_groups,
        }
    }
}

/// When access really ended, as sentences to follow the "ended" one: empty while the removal is not confirmed
/// (the message may go out before it is).
fn removal_text(grant: &Grant) -> String {
    let Some(removed) = grant.access_removed_at else {
        return String::new();
    };
    let mut text = format!(" Access was removed at {}.", rfc3339(removed));
    if let Some(until) = grant.residual_until {
        text.push_str(&format!(
            " Sessions opened before then may keep working until {}.",
            rfc3339(until)
        ));
    }
    text
}

/// Why a grant ended, as the end of a sentence ("SEC-42 was closed").
fn end_reason_text(grant: &Grant) -> String {
    let ticket = grant
        .ticket
        .as_ref()
        .map_or_else(|| "its ticket".to_owned(), |t| t.key.clone());
    match grant.end_reason {
        Some(EndReason::TimeBoundReached) => "its time bound was reached".into(),
        Some(EndReason::TicketClosed) => format!("{ticket} was closed"),
        Some(EndReason::TicketDeleted) => format!("{ticket} was deleted"),
        Some(EndReason::Withdrawn) => "you withdrew it".into(),
        Some(EndReason::Revoked) => match grant.ended_by.as_deref() {
            Some(by) if normalize_email(by) == normalize_email(&grant.requester) => {
                "you ended it".into()
            }
            Some(by) => format!("{by} revoked it"),
            None => "it was revoked".into(),
        },
        Some(EndReason::Denied) => "it was denied".into(),
        Some(EndReason::ApprovalTimedOut) => "nobody decided it in time".into(),
        Some(EndReason::Superseded) => "your extension of it took over".into(),
        Some(EndReason::ConnectionRemoved) => {
            format!("the ticket-system connection of {ticket} was removed")
        }
        None => "it ended".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GrantDuration, TicketRef};
    use time::macros::datetime;

    fn active(duration: &str) -> Grant {
        let now = datetime!(2026-01-01 10:00 UTC);
        let mut grant = Grant::request(
            "01JD3AAAAAAAAAAAAAAAAAAAAA".into(),
            "alice@example.com".into(),
            "prod-db".into(),
            "INC-7".into(),
            GrantDuration::parse(duration).unwrap(),
            Some(TicketRef {
                connection: "jira-main".into(),
                key: "SEC-42".into(),
            }),
            now,
        );
        grant = grant.approve("bob@example.com", now).unwrap();
        grant
    }

    #[test]
    fn a_reminder_holds_only_in_its_window_of_an_active_grant() {
        let grant = active("P2D");
        let end = grant.expires_at.unwrap();
        let day = NotifyEvent::EndingInADay;
        assert!(
            matches!(holds(day, &grant, end - Duration::days(2)), Holds::Early(at) if at == end - Duration::days(1))
        );
        assert!(matches!(
            holds(day, &grant, end - Duration::days(1)),
            Holds::Yes
        ));
        assert!(matches!(
            holds(day, &grant, end - Duration::minutes(30)),
            Holds::No(_)
        ));
        assert!(matches!(
            holds(
                NotifyEvent::EndingInAnHour,
                &grant,
                end - Duration::minutes(30)
            ),
            Holds::Yes
        ));
        assert!(matches!(
            holds(NotifyEvent::EndingInAnHour, &grant, end),
            Holds::No(_)
        ));
        let ended = grant
            .end(
                EndReason::Revoked,
                Some("bob@example.com"),
                end - Duration::days(1),
            )
            .unwrap();
        assert!(matches!(
            holds(day, &ended, end - Duration::days(1)),
            Holds::No(_)
        ));
    }

    #[test]
    fn the_end_reason_reads_as_a_sentence() {
        let grant = active("PT4H");
        let now = grant.decided_at.unwrap();
        let closed = grant.end(EndReason::TicketClosed, None, now).unwrap();
        assert_eq!(end_reason_text(&closed), "SEC-42 was closed");
        let own = grant
            .end(EndReason::Revoked, Some("Alice@Example.com"), now)
            .unwrap();
        assert_eq!(end_reason_text(&own), "you ended it");
        let other = grant
            .end(EndReason::Revoked, Some("bob@example.com"), now)
            .unwrap();
        assert_eq!(end_reason_text(&other), "bob@example.com revoked it");
    }

    #[test]
    fn the_ended_text_says_when_access_really_ended_once_it_is_known() {
        let grant = active("PT4H");
        let now = grant.decided_at.unwrap();
        let mut ended = grant.end(EndReason::TicketClosed, None, now).unwrap();
        assert_eq!(removal_text(&ended), "");
        ended.record_removal(
            now + Duration::minutes(1),
            Some(crate::domain::side_effect::SessionsOutcome::WillExpire),
            Some(now + Duration::hours(1)),
        );
        assert_eq!(
            removal_text(&ended),
            " Access was removed at 2026-01-01T10:01:00Z. Sessions opened before then may keep working until 2026-01-01T11:00:00Z."
        );
    }

    #[test]
    fn the_link_is_the_portals_grant_route() {
        let settings = NotifySettings {
            portal_url: Some("https://tb.example.com/".into()),
            ..NotifySettings::default()
        };
        assert_eq!(
            settings.link("01JD3AAAAAAAAAAAAAAAAAAAAA"),
            "https://tb.example.com/#/grant/01JD3AAAAAAAAAAAAAAAAAAAAA"
        );
    }
}
