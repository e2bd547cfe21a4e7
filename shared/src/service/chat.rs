//! Deciding from chat: an interaction a chat app (Slack) sends when someone presses *Approve*, *Deny*, *I'm
//! done* or *Extend* on one of its messages, run through the same use cases and policy checks as the portal.
//!
//! In order, and nothing changes before the last step:
//! 1. the chat app verifies the request (signature on the raw bytes, timestamp within five minutes) and only then
//!    reads it (401 `invalid_signature` or `stale_request`, 400 `malformed_interaction`);
//! 2. a signed request seen before is a replay (401 `replayed_request`), remembered through the store's
//!    delivery records like a ticket system's deliveries;
//! 3. the person is the chat user's confirmed e-mail address, with the Ticketbound groups their chat user groups
//!    map to; someone the chat app cannot name this way is told to decide in the portal;
//! 4. the use case (`approve_grant`, `deny_grant`, `revoke_grant`, `request_grant` with `extends`) checks the
//!    resource's policy exactly as for the portal. A refusal (not an approver of this resource, not theirs)
//!    is told privately with the portal's link; a decision that lost a race is told who won.
//!
//! The messages themselves are brought up to date by the notification of the decision (`notifications.rs`),
//! which every decision emits whatever its origin. A decision taken here also runs that notification's job at
//! once (bounded), so the messages show it within a second even where the scheduler fires later (AWS).
//!
//! Slack waits three seconds for the answer, then shows the person an error. Every Slack call made while
//! answering (who pressed, the deny dialog, the messages' edits, the private answer) shares one deadline,
//! [`ANSWER_WITHIN`] from the request's arrival, the last part of it kept for the private answer. Who pressed
//! not known in time: nothing changes and the person is told to try again (or use the portal); if even that
//! cannot be told, the answer is 503 `chat_unavailable`, which Slack shows them. A decision taken: it stands,
//! the answer goes out in time, and edits not done by then are left to the decision's durable job.

use std::time::Duration as StdDuration;

use time::Duration;
use tokio::time::Instant;

use super::{ErrorKind, ServiceError, Ticketbound};
use crate::domain::identity::RoleGroups;
use crate::domain::notification::NotifyEvent;
use crate::domain::{Caller, Grant, GrantStatus};
use crate::ports::Job;
use crate::ports::notify::{ChatAction, ChatApp, ChatInteraction, ChatRefusal};
use crate::service::{Decision, GrantRequest};

/// How long a signed interaction is remembered against a replay: longer than the window its timestamp is
/// accepted in.
const REPLAY_WINDOW: Duration = Duration::minutes(11);

/// How long a decision taken from chat waits for its messages to be updated before answering, at most (less
/// when the reads before the decision took part of the answer's time).
const TELL_NOW_WITHIN: StdDuration = StdDuration::from_millis(1500);

/// Slack shows the person an error when the answer takes over three seconds: every Slack call made while
/// answering fits in this, counted from the request's arrival, with room left for the answer to travel.
pub(crate) const ANSWER_WITHIN: StdDuration = StdDuration::from_millis(2500);

/// The end of [`ANSWER_WITHIN`] kept for telling the person privately what happened (one ephemeral message).
const KEPT_FOR_TELLING: StdDuration = StdDuration::from_millis(500);

/// Below this, running the decision's notification job now is not attempted: it would claim the job and be
/// cut off at once, and the armed job then waits for the claim's lease to run out.
const TOO_LITTLE_TO_TELL_NOW: StdDuration = StdDuration::from_millis(200);

tokio::task_local! {
    /// When the interaction being answered must have its answer (the request's arrival plus
    /// [`ANSWER_WITHIN`]); set only while answering one.
    static ANSWER_BY: Instant;
}

/// How long a Slack call may take now: `bound`, or less while answering an interaction, so that the call ends
/// before the time kept for telling the person ([`KEPT_FOR_TELLING`]). Outside an interaction, `bound`.
pub(crate) fn within_answer(bound: StdDuration) -> StdDuration {
    ANSWER_BY
        .try_with(|by| {
            by.saturating_duration_since(Instant::now())
                .saturating_sub(KEPT_FOR_TELLING)
        })
        .map_or(bound, |left| left.min(bound))
}

/// What is left of the answer's time, all of it (the private answer is the last call).
fn left_to_answer() -> StdDuration {
    ANSWER_BY
        .try_with(|by| by.saturating_duration_since(Instant::now()))
        .unwrap_or(ANSWER_WITHIN)
}

impl Ticketbound {
    /// `POST /slack/interactions`: see the module docs. `Ok` means Slack is answered 200 (the person was told
    /// whatever there was to tell); an error is the §5 answer.
    pub async fn chat_interaction(
        &self,
        roles: &RoleGroups,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), ServiceError> {
        let answer_by = Instant::now() + ANSWER_WITHIN;
        ANSWER_BY
            .scope(
                answer_by,
                self.answer_interaction(roles, timestamp, signature, body),
            )
            .await
    }

    /// [`Self::chat_interaction`] within its deadline (set by the caller).
    async fn answer_interaction(
        &self,
        roles: &RoleGroups,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), ServiceError> {
        // A request without Slack's signature headers is not Slack's, whatever this deployment has configured.
        if timestamp.is_none() || signature.is_none() {
            return Err(ServiceError::new(
                ErrorKind::Unauthenticated,
                "invalid_signature",
                ChatRefusal::BadSignature.to_string(),
            ));
        }
        let Some(app) = self.notifier.chat_app() else {
            return Err(ServiceError::not_found(
                "chat_app_not_configured",
                "no Slack app channel is configured in this deployment",
            ));
        };
        let now = self.clock.now();
        let (interaction, signed) =
            app.verify(timestamp, signature, body, now)
                .map_err(|refusal| match refusal {
                    ChatRefusal::BadSignature => ServiceError::new(
                        ErrorKind::Unauthenticated,
                        "invalid_signature",
                        refusal.to_string(),
                    ),
                    ChatRefusal::Stale => ServiceError::new(
                        ErrorKind::Unauthenticated,
                        "stale_request",
                        refusal.to_string(),
                    ),
                    ChatRefusal::Malformed(why) => {
                        ServiceError::bad_request("malformed_interaction", why)
                    }
                })?;
        if !self
            .store
            .remember_delivery(&format!("slack:{signed}"), now + REPLAY_WINDOW)
            .await?
        {
            return Err(ServiceError::new(
                ErrorKind::Unauthenticated,
                "replayed_request",
                "this signed request was already received",
            ));
        }
        self.decide_from_chat(app, roles, interaction).await
    }

    /// Steps 3 and 4 (the module docs), for a verified interaction seen once.
    #[tracing::instrument(name = "chat_interaction", skip_all, fields(grant = %interaction.grant_id, action = ?interaction.action))]
    async fn decide_from_chat(
        &self,
        app: std::sync::Arc<dyn ChatApp>,
        roles: &RoleGroups,
        interaction: ChatInteraction,
    ) -> Result<(), ServiceError> {
        let link = self.settings.notifications.link(&interaction.grant_id);
        let person = match tokio::time::timeout(
            within_answer(ANSWER_WITHIN),
            app.person(&interaction.user),
        )
        .await
        {
            Ok(Ok(person)) => person,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Slack could not say who pressed; nothing changed");
                return must_tell(app.as_ref(), &interaction, &format!("Slack could not say who you are just now, so nothing was done: try again, or decide this in the portal: {link}")).await;
            }
            Err(_) => {
                tracing::warn!("Slack did not say in time who pressed; nothing changed");
                return must_tell(app.as_ref(), &interaction, &format!("Slack did not say in time who you are, so nothing was done: try again, or decide this in the portal: {link}")).await;
            }
        };
        let Some(person) = person else {
            tell(
                app.as_ref(),
                &interaction,
                &format!("Ticketbound cannot tell who you are from Slack (no confirmed e-mail address): decide this in the portal: {link}"),
            )
            .await;
            return Ok(());
        };
        let caller = Caller::new(&person.email, person.groups, roles);
        let id = interaction.grant_id.as_str();
        // What the decision told everyone, when it made one: that notification's job is also run right here
        // (below), so the messages about it change while the person still looks at the one they pressed.
        let mut told: Option<(NotifyEvent, String)> = None;
        let outcome = match &interaction.action {
            ChatAction::Approve => self
                .approve_grant(&caller, id, &Decision::default())
                .await
                .map(|g| {
                    if g.status == GrantStatus::Active {
                        told = Some((NotifyEvent::Approved, g.id.clone()));
                    }
                    approved_text(&g)
                }),
            ChatAction::AskDenyComment { .. } => {
                // Only someone who may deny sees the dialog; the denial itself is checked again on submit.
                match self.may_decide_grant(&caller, id).await {
                    Ok(()) => {
                        let opened = tokio::time::timeout(
                            within_answer(ANSWER_WITHIN),
                            app.ask_deny_comment(&interaction),
                        )
                        .await;
                        let why = match opened {
                            Ok(Ok(())) => return Ok(()),
                            Ok(Err(e)) => e.to_string(),
                            Err(_) => "Slack did not open it in time".to_owned(),
                        };
                        tracing::warn!(error = %why, "the deny dialog did not open; nothing changed");
                        // A dialog's trigger is good for three seconds only: the person presses Deny again.
                        return must_tell(app.as_ref(), &interaction, &format!("The dialog to deny could not be opened, so nothing was done: press Deny again, or deny this in the portal: {link}")).await;
                    }
                    Err(e) => Err(e),
                }
            }
            ChatAction::Deny { comment } => self
                .deny_grant(
                    &caller,
                    id,
                    &Decision {
                        comment: comment.clone(),
                    },
                )
                .await
                .map(|g| {
                    told = Some((NotifyEvent::Denied, g.id.clone()));
                    "You denied the request.".to_owned()
                }),
            ChatAction::Done => self
                .revoke_grant(&caller, id, &Decision::default())
                .await
                .map(|g| {
                    told = Some((NotifyEvent::Ended, g.id.clone()));
                    "Your access is ending now; thank you.".to_owned()
                }),
            ChatAction::Extend => self.extend_from_chat(&caller, id).await.map(|g| {
                told = Some((NotifyEvent::ApprovalRequested, g.id.clone()));
                format!(
                    "Extension requested ({}): approvers decide it as any request.",
                    g.id
                )
            }),
        };
        if let Err(e) = &outcome {
            tracing::info!(caller = %caller.email, code = e.code, "an interaction from Slack was refused; nothing changed");
        }
        let text = match outcome {
            Ok(text) => text,
            Err(e) => match e.kind {
                ErrorKind::Forbidden | ErrorKind::NotFound | ErrorKind::Unauthenticated => format!(
                    "You cannot do this from Slack ({}): decide this in the portal: {link}",
                    e.message
                ),
                ErrorKind::Conflict => self.who_won(id, &e).await,
                ErrorKind::BadRequest | ErrorKind::Unprocessable => {
                    format!("Not done: {}", e.message)
                }
                _ => return Err(e),
            },
        };
        if let Some((event, grant_id)) = told {
            self.tell_now(event, &grant_id).await;
        }
        tell(app.as_ref(), &interaction, &text).await;
        Ok(())
    }

    /// Runs the notification job a decision armed, in the caller's path and bounded by [`TELL_NOW_WITHIN`] and
    /// what is left of the answer's time, so every message about the grant shows the decision within a second
    /// instead of when the scheduler fires (on AWS a one-time schedule fires seconds to a minute later). The
    /// armed job stays the durable path: it finds the deliveries this run recorded and skips them, and a run
    /// cut short by the bound is, for the engine, a process that died mid-attempt (the lease runs out and the
    /// armed job sends). With too little time left it is not started at all, so the armed job sends at once.
    async fn tell_now(&self, event: NotifyEvent, grant_id: &str) {
        let within = within_answer(TELL_NOW_WITHIN);
        if within < TOO_LITTLE_TO_TELL_NOW {
            tracing::info!(
                "no time left to update the decision's messages before answering; the armed job will"
            );
            return;
        }
        let job = Job::notify(event, grant_id, 0);
        match tokio::time::timeout(within, self.run_job(&job)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the decision's messages were not updated now; the armed job will")
            }
            Err(_) => tracing::warn!(
                "the decision's messages took longer than {within:?}; the armed job will finish them"
            ),
        }
    }

    /// Whether `caller` may decide the grant now, by the same checks as a decision (nothing is written).
    async fn may_decide_grant(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        let grant = self.get_grant(caller, id).await?;
        let policy = self
            .store
            .get_resource(&grant.resource)
            .await?
            .map(|r| r.policy)
            .unwrap_or_default();
        if !policy.may_decide(caller) {
            return Err(ServiceError::forbidden(
                "not_a_resource_approver",
                "you are not one of this resource's approvers",
            ));
        }
        if grant.status != crate::domain::GrantStatus::Pending {
            return Err(ServiceError::conflict(
                "grant_not_pending",
                format!("the request is already {}", grant.status.as_str()),
            ));
        }
        Ok(())
    }

    /// *Extend*: the same request again (resource, reason, duration, ticket), extending this grant.
    async fn extend_from_chat(&self, caller: &Caller, id: &str) -> Result<Grant, ServiceError> {
        let grant = self.get_grant(caller, id).await?;
        self.request_grant(
            caller,
            GrantRequest {
                resource: grant.resource.clone(),
                reason: grant.reason.clone(),
                duration: grant.duration.to_string(),
                ticket: grant.ticket.clone(),
                extends: Some(grant.id.clone()),
            },
        )
        .await
    }

    /// A decision that lost: who decided first, and when, read back from the grant.
    async fn who_won(&self, id: &str, lost: &ServiceError) -> String {
        match self.store.get_grant(id).await {
            Ok(Some(grant)) if grant.decided_by.is_some() || grant.ended_by.is_some() => {
                let line = crate::domain::notification::decision_line(&grant);
                format!("Too late: {line}. Your click changed nothing.")
            }
            _ => format!("Not done: {}", lost.message),
        }
    }
}

fn approved_text(grant: &Grant) -> String {
    if grant.status == GrantStatus::Active {
        "You approved the request; access is being granted.".to_owned()
    } else {
        format!(
            "Your approval is recorded ({} of {}).",
            grant.approvals.len(),
            grant.approvals_required
        )
    }
}

/// Tells the person privately, within what is left of the answer's time; whether they were told. A failure
/// is logged, not returned (the decision, if any, stands).
async fn tell(app: &dyn ChatApp, interaction: &ChatInteraction, text: &str) -> bool {
    match tokio::time::timeout(left_to_answer(), app.tell(interaction, text)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not answer the person in Slack");
            false
        }
        Err(_) => {
            tracing::warn!("Slack did not take the answer to the person in time");
            false
        }
    }
}

/// Tells the person that nothing was done and why; when even that fails, the answer is 503
/// `chat_unavailable`, which Slack shows them as an error: a press is never dropped without a word.
async fn must_tell(
    app: &dyn ChatApp,
    interaction: &ChatInteraction,
    text: &str,
) -> Result<(), ServiceError> {
    if tell(app, interaction, text).await {
        return Ok(());
    }
    Err(ServiceError::unavailable(
        "chat_unavailable",
        "Slack is not answering in time; nothing was done: try again, or decide in the portal",
    ))
}
