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

use time::Duration;

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

/// How long a decision taken from chat waits for its messages to be updated before answering: well inside
/// Slack's three seconds, with the reads before the decision.
const TELL_NOW_WITHIN: std::time::Duration = std::time::Duration::from_millis(1500);

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
        let person = app.person(&interaction.user).await.map_err(|e| {
            ServiceError::unavailable(
                "chat_unavailable",
                format!("Slack could not say who pressed: {e}"),
            )
        })?;
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
                        return app.ask_deny_comment(&interaction).await.map_err(|e| {
                            ServiceError::unavailable("chat_unavailable", e.to_string())
                        });
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

    /// Runs the notification job a decision armed, in the caller's path and bounded by [`TELL_NOW_WITHIN`],
    /// so every message about the grant shows the decision within a second instead of when the scheduler
    /// fires (on AWS a one-time schedule fires seconds to a minute later). The armed job stays the durable
    /// path: it finds the deliveries this run recorded and skips them, and a run cut short by the bound is, for
    /// the engine, a process that died mid-attempt (the lease runs out and the armed job sends).
    async fn tell_now(&self, event: NotifyEvent, grant_id: &str) {
        let job = Job::notify(event, grant_id, 0);
        match tokio::time::timeout(TELL_NOW_WITHIN, self.run_job(&job)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the decision's messages were not updated now; the armed job will")
            }
            Err(_) => tracing::warn!(
                "the decision's messages took longer than {TELL_NOW_WITHIN:?}; the armed job will finish them"
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

/// Tells the person privately; a failure is logged, not returned (the decision, if any, stands).
async fn tell(app: &dyn ChatApp, interaction: &ChatInteraction, text: &str) {
    if let Err(e) = app.tell(interaction, text).await {
        tracing::warn!(error = %e, "could not answer the person in Slack");
    }
}
