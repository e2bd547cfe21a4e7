//! The end of access (DESIGN §2) and the scheduled work behind it.
//!
//! Ending a grant is one conditional write; its side effects run after that write is durable and are tracked on
//! the grant as `deprovisioning`. Before the write, a "deprovision" schedule is armed a lease-length ahead: if the
//! process dies right after the write, that schedule finishes the job, so a revocation is never lost between the
//! state change and the call to the end system. Each attempt takes a lease on the grant (a conditional write), so
//! a schedule firing while another worker is mid-attempt does not call the end system twice. Failures back off
//! with jitter through one-time retry schedules until the budget is spent; then the state is `failed`, logged at
//! error level and counted as a metric.
//!
//! ## Armings
//!
//! A job never re-arms under the name of the schedule that is firing: EventBridge deletes a one-time schedule
//! after it fires (`ActionAfterCompletion: DELETE`), and whether it would delete one updated while it fires is
//! not documented. So every arming is its own schedule, numbered per (grant, kind) ([`Job::arming`], carried
//! in the schedule's Input): arming 0 is the first (the expiry armed at approval, the safety net armed when a
//! grant ends), and a re-arm takes a number above both the arming that fired and the one the grant records as
//! live. The live arming is recorded on the grant (`expiry_arming`, and `arming` in `provisioning` and
//! `deprovisioning`) by a conditional write after the schedule exists; then the armings it replaces (the one
//! recorded before and the one that fired) are deleted. Arming a number the grant no longer wants (a higher one
//! is recorded, or the work is finished) deletes it again. Cancelling a job deletes the recorded live arming,
//! so no list call (and no account-wide `ListSchedules` permission) is needed. Creating the same arming twice
//! is an upsert: one schedule. If a process dies between creating a schedule and recording it, that schedule
//! fires once and finds nothing to do, or does an attempt that was due anyway.

use time::{Duration, OffsetDateTime};

use super::jobs::{JobOutcome, next_arming, record_attempt_on_span};
use super::{ServiceError, Ticketbound};
use crate::domain::grant::SideEffect;
use crate::domain::notification::NotifyEvent;
use crate::domain::side_effect::{Claim, Failure, Tracked};
use crate::domain::{AuditEvent, AuditKind, EndReason, Grant, GrantStatus, SideEffectState};
use crate::ports::{
    Job, JobKind, ProvisionAction, ProvisionError, ProvisionOutcome, ProvisionReceipt, StoreError,
};
use crate::telemetry;

/// What [`Ticketbound::end_grant`] did.
#[derive(Debug, Clone)]
pub enum EndOutcome {
    /// This call ended (or cancelled) the grant; the grant as it is now.
    Ended(Grant),
    /// Somebody else had already closed it: nothing was done.
    AlreadyClosed(Grant),
}

/// How many times a write is retried when another writer moved the grant in between.
const RACE_RETRIES: usize = 8;

/// Which tracked side effect.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    Provision,
    Deprovision,
}

/// What the `ended` (or `cancelled`) audit event says besides the end reason: who found the closing
/// (reconciliation says so) and what the person who ended it wrote.
#[derive(Clone, Copy, Debug, Default)]
struct EndNote<'a> {
    found_by: Option<&'a str>,
    comment: Option<&'a str>,
}

impl Effect {
    fn field(self, grant: &Grant) -> Option<&SideEffect> {
        match self {
            Self::Provision => grant.provisioning.as_ref(),
            Self::Deprovision => grant.deprovisioning.as_ref(),
        }
    }
    fn field_mut(self, grant: &mut Grant) -> Option<&mut SideEffect> {
        match self {
            Self::Provision => grant.provisioning.as_mut(),
            Self::Deprovision => grant.deprovisioning.as_mut(),
        }
    }
    fn kind(self) -> JobKind {
        match self {
            Self::Provision => JobKind::Provision,
            Self::Deprovision => JobKind::Deprovision,
        }
    }
    fn action(self) -> ProvisionAction {
        match self {
            Self::Provision => ProvisionAction::Grant,
            Self::Deprovision => ProvisionAction::Revoke,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::Provision => "provisioning",
            Self::Deprovision => "deprovisioning",
        }
    }
}

/// The arming of `kind` that `grant` records as live (see "Armings" in the module docs).
fn live_arming(kind: JobKind, grant: &Grant) -> u32 {
    match kind {
        JobKind::Expire => grant.expiry_arming,
        JobKind::Provision => grant.provisioning.as_ref().map_or(0, |p| p.arming),
        JobKind::Deprovision => grant.deprovisioning.as_ref().map_or(0, |d| d.arming),
        JobKind::Confirm => 0,
        // Per event, on the grant's notifications (service/notifications.rs keeps its own).
        JobKind::Notify => 0,
        JobKind::PendingExpiry => grant.pending_arming,
        // Not recorded on the grant: each arming fires once and the work is idempotent.
        JobKind::EndSessionCut => 0,
    }
}

/// Records `arming` as the live one on `next`, if the grant still wants that job (an active grant's expiry, a
/// pending side effect). `false` when it does not.
fn record_arming(kind: JobKind, next: &mut Grant, arming: u32) -> bool {
    let slot = match kind {
        JobKind::Expire if next.status == GrantStatus::Active => &mut next.expiry_arming,
        JobKind::PendingExpiry if next.status == GrantStatus::Pending => &mut next.pending_arming,
        JobKind::Expire
        | JobKind::Confirm
        | JobKind::Notify
        | JobKind::PendingExpiry
        | JobKind::EndSessionCut => {
            return false;
        }
        JobKind::Provision | JobKind::Deprovision => {
            let effect = if kind == JobKind::Provision {
                next.provisioning.as_mut()
            } else {
                next.deprovisioning.as_mut()
            };
            match effect {
                Some(e) if e.state == SideEffectState::Pending => &mut e.arming,
                _ => return false,
            }
        }
    };
    *slot = arming;
    true
}

/// The result of one attempt at a side effect's steps.
#[derive(Default)]
struct Report {
    provisioner_done: bool,
    skipped: Option<String>,
    error: Option<Failure>,
    /// The provisioner accepted the call and works on it: check this status URL at the next attempt.
    accepted: Option<String>,
    /// What the provisioner reported when it finished (contract v2).
    receipt: Option<ProvisionReceipt>,
}

/// One provisioner call (or status check) as the engine sees it.
enum Called {
    Done(ProvisionReceipt),
    Accepted(String),
}

/// What the removal step of a deprovisioning came to.
enum Revoked {
    /// Rule 8: another grant still gives the access; nothing was removed.
    Skipped(String),
    Done(ProvisionReceipt),
    Accepted(String),
}

impl From<Called> for Revoked {
    fn from(called: Called) -> Self {
        match called {
            Called::Done(receipt) => Self::Done(receipt),
            Called::Accepted(url) => Self::Accepted(url),
        }
    }
}

/// Reads a provisioner's answer into the engine's terms: a failure the end system reports is permanent, one the
/// call met keeps the class the provisioner gave it (`ProvisionError`: by HTTP status, AWS error code, or
/// retryable for a timeout).
fn called(
    result: Result<ProvisionOutcome, ProvisionError>,
    action: ProvisionAction,
) -> Result<Called, Failure> {
    let what = format!("provisioner {}", action.as_str());
    match result {
        Ok(ProvisionOutcome::Done(receipt)) => Ok(Called::Done(receipt)),
        Ok(ProvisionOutcome::Accepted { status_url }) => Ok(Called::Accepted(status_url)),
        Ok(ProvisionOutcome::Failed(reason)) => {
            Err(Failure::permanent(format!("{what}: {reason}")))
        }
        Err(ProvisionError(failure)) => Err(Failure {
            message: format!("{what}: {}", failure.message),
            ..failure
        }),
    }
}

impl Ticketbound {
    /// Ends a grant once, whoever asks (a person, a schedule, a webhook): `pending → cancelled`,
    /// `active → ended`. A caller that finds it already closed gets [`EndOutcome::AlreadyClosed`] and nothing
    /// else happens.
    pub async fn end_grant(
        &self,
        id: &str,
        reason: EndReason,
        actor: Option<&str>,
    ) -> Result<EndOutcome, ServiceError> {
        self.end_grant_noting(id, reason, actor, None).await
    }

    /// [`Self::end_grant`], with `"found_by": found_by` added to the audit event (reconciliation says so).
    pub(crate) async fn end_grant_noting(
        &self,
        id: &str,
        reason: EndReason,
        actor: Option<&str>,
        found_by: Option<&str>,
    ) -> Result<EndOutcome, ServiceError> {
        self.end_grant_when(
            id,
            reason,
            actor,
            EndNote {
                found_by,
                comment: None,
            },
            None,
            true,
        )
        .await
    }

    /// [`Self::end_grant`] by a person who said why (`comment`, kept in the `ended` audit event).
    pub(crate) async fn end_grant_commented(
        &self,
        id: &str,
        reason: EndReason,
        actor: &str,
        comment: Option<&str>,
    ) -> Result<EndOutcome, ServiceError> {
        self.end_grant_when(
            id,
            reason,
            Some(actor),
            EndNote {
                found_by: None,
                comment,
            },
            None,
            true,
        )
        .await
    }

    /// [`Self::end_grant_noting`] without arming its `ended` notification: the caller ends many grants at once
    /// and tells them together ([`Self::notify_ended`]).
    pub(crate) async fn end_grant_untold(
        &self,
        id: &str,
        reason: EndReason,
        found_by: Option<&str>,
    ) -> Result<EndOutcome, ServiceError> {
        self.end_grant_when(
            id,
            reason,
            None,
            EndNote {
                found_by,
                comment: None,
            },
            None,
            false,
        )
        .await
    }

    /// [`Self::end_grant_noting`], only while the grant is in status `only` when given (a request's deadline
    /// cancels a pending request, never the grant an approval made of it a moment before); otherwise
    /// [`EndOutcome::AlreadyClosed`] with nothing done. `tell`: arm the `ended` notification here.
    async fn end_grant_when(
        &self,
        id: &str,
        reason: EndReason,
        actor: Option<&str>,
        note: EndNote<'_>,
        only: Option<GrantStatus>,
        tell: bool,
    ) -> Result<EndOutcome, ServiceError> {
        for _ in 0..RACE_RETRIES {
            let Some(grant) = self.store.get_grant(id).await? else {
                return Err(ServiceError::grant_not_found(id));
            };
            if !grant.status.is_open() || only.is_some_and(|only| only != grant.status) {
                return Ok(EndOutcome::AlreadyClosed(grant));
            }
            let now = self.clock.now();
            let next = grant.end(reason, actor, now)?;
            if next.status == GrantStatus::Ended {
                // The safety net: armed before the write, so a crash after it still ends in a revocation.
                self.scheduler
                    .schedule(
                        &Job::new(JobKind::Deprovision, id),
                        now + self.settings.retry.lease,
                    )
                    .await?;
            }
            let kind = if next.status == GrantStatus::Cancelled {
                AuditKind::Cancelled
            } else {
                AuditKind::Ended
            };
            let mut detail = serde_json::json!({"end_reason": reason});
            if let Some(found_by) = note.found_by {
                detail["found_by"] = found_by.into();
            }
            if let Some(comment) = note.comment {
                detail["comment"] = comment.into();
            }
            let event = AuditEvent::of(&next, kind, actor, now, detail);
            match self
                .store
                .update_grant(&next, grant.expected(), Some(&event))
                .await
            {
                Ok(()) => {}
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
            tracing::info!(grant = %id, reason = reason.as_str(), status = next.status.as_str(), "grant ended");
            if tell {
                self.notify(&next, NotifyEvent::Ended).await;
            }
            if next.status == GrantStatus::Cancelled {
                // No decision is coming: its deadline has nothing left to do.
                self.cancel_pending_expiry(&next).await;
            }
            if next.status == GrantStatus::Ended
                && let Err(e) = self.deprovision_attempt(id).await
            {
                // The state change is durable and the safety schedule is armed: it will try again.
                tracing::warn!(grant = %id, error = %e, "first deprovisioning attempt could not run; the schedule will retry");
            }
            // Access is removed first; the audit-ticket note (bounded, best effort) must never delay it.
            self.audit_on_end(&next).await;
            let latest = self.store.get_grant(id).await?.unwrap_or(next);
            return Ok(EndOutcome::Ended(latest));
        }
        Err(ServiceError::conflict(
            "grant_busy",
            "the grant kept changing while it was being ended; try again",
        ))
    }

    /// A provisioning or deprovisioning job fired (`fired` is its arming).
    pub(super) async fn side_effect_job(
        &self,
        kind: JobKind,
        id: &str,
        fired: u32,
    ) -> Result<JobOutcome, ServiceError> {
        let effect = if kind == JobKind::Provision {
            Effect::Provision
        } else {
            Effect::Deprovision
        };
        self.side_effect_attempt(effect, id, fired).await
    }

    /// A request's decision deadline fired: still pending (and the deadline reached), it is cancelled as
    /// `approval_timed_out`, by the same conditional write as every other end, and only while it is pending:
    /// an approval landing at the same moment either wins (the grant stays active) or finds it cancelled.
    /// Decided or withdrawn meanwhile: nothing.
    pub(super) async fn pending_expired(
        &self,
        id: &str,
        fired: u32,
    ) -> Result<JobOutcome, ServiceError> {
        let Some(grant) = self.store.get_grant(id).await? else {
            return Ok(JobOutcome::Nothing);
        };
        if grant.status != GrantStatus::Pending {
            return Ok(JobOutcome::Nothing);
        }
        let due = grant
            .decide_by
            .unwrap_or(grant.requested_at + self.settings.pending_for.as_duration());
        if self.clock.now() < due {
            // Early (clock skew): re-arm under a new name rather than cancel.
            self.rearm(JobKind::PendingExpiry, id, fired, due).await?;
            tracing::info!(grant = %id, %due, "pending deadline fired early; re-armed");
            return Ok(JobOutcome::Rearmed);
        }
        match self
            .end_grant_when(
                id,
                EndReason::ApprovalTimedOut,
                None,
                EndNote::default(),
                Some(GrantStatus::Pending),
                true,
            )
            .await?
        {
            EndOutcome::Ended(_) => {
                tracing::info!(grant = %id, "request cancelled: nobody decided it within PENDING_FOR");
                telemetry::metric("ApprovalsTimedOut", 1.0);
                Ok(JobOutcome::Done)
            }
            EndOutcome::AlreadyClosed(_) => Ok(JobOutcome::Nothing),
        }
    }

    /// Deletes a request's live deadline schedule once the request is decided or ended. A failure is only
    /// logged: the schedule fires once, finds the request no longer pending, and does nothing.
    pub(crate) async fn cancel_pending_expiry(&self, grant: &Grant) {
        let job = Job::armed(JobKind::PendingExpiry, &grant.id, grant.pending_arming);
        if let Err(e) = self.scheduler.cancel(&job).await {
            tracing::warn!(grant = %grant.id, error = %e, "could not delete the request's deadline schedule");
        }
    }

    /// Arms the next arming of `kind` for grant `id` at `at`, numbered above `fired` (the arming running now;
    /// 0 outside a fired job) and above the grant's live arming, records it as live and deletes the armings it
    /// replaces ("Armings" in the module docs).
    async fn rearm(
        &self,
        kind: JobKind,
        id: &str,
        fired: u32,
        at: OffsetDateTime,
    ) -> Result<(), ServiceError> {
        let Some(grant) = self.store.get_grant(id).await? else {
            return Ok(());
        };
        let next = next_arming(fired, live_arming(kind, &grant));
        let job = Job::armed(kind, id, next);
        self.scheduler.schedule(&job, at).await?;
        let mut live = next;
        let mut replaced = None;
        let recorded = self
            .modify_grant(id, |g| {
                live = live_arming(kind, g);
                replaced = Some(live);
                if live >= next {
                    return None;
                }
                let mut updated = g.touched();
                record_arming(kind, &mut updated, next).then_some((updated, None))
            })
            .await?;
        let (keep, mut stale) = match (recorded, replaced) {
            (Some(_), Some(before)) => (next, vec![fired, before]),
            // Not wanted (finished, or a higher arming is live): this one would only fire for nothing.
            _ => (live, vec![fired, next]),
        };
        stale.retain(|a| *a != keep);
        self.remove_armings(&Job::new(kind, id), stale).await;
        Ok(())
    }

    pub(super) async fn expire(&self, id: &str, fired: u32) -> Result<JobOutcome, ServiceError> {
        let Some(grant) = self.store.get_grant(id).await? else {
            tracing::warn!(grant = %id, "expiry schedule fired for a grant that does not exist");
            return Ok(JobOutcome::Nothing);
        };
        match (grant.status, grant.expires_at) {
            (GrantStatus::Active, Some(expires_at)) => {
                let now = self.clock.now();
                if now < expires_at {
                    // Early (clock skew, or the bound moved): re-arm rather than end, under a new name.
                    self.rearm(JobKind::Expire, id, fired, expires_at).await?;
                    tracing::info!(grant = %id, %expires_at, "expiry fired early; re-armed");
                    return Ok(JobOutcome::Rearmed);
                }
                match self
                    .end_grant(id, EndReason::TimeBoundReached, None)
                    .await?
                {
                    EndOutcome::Ended(_) => Ok(JobOutcome::Done),
                    EndOutcome::AlreadyClosed(_) => Ok(JobOutcome::Nothing),
                }
            }
            // Ended by someone else with its side effects still open: make sure they finish.
            (GrantStatus::Ended, _)
                if grant
                    .deprovisioning
                    .as_ref()
                    .is_some_and(|d| d.state == SideEffectState::Pending) =>
            {
                // The expiry's arming number says nothing about deprovisioning's: none fired.
                self.side_effect_attempt(Effect::Deprovision, id, 0).await
            }
            _ => Ok(JobOutcome::Nothing),
        }
    }

    /// One attempt at setting up access after approval; failures are retried through the scheduler.
    pub(crate) async fn provision_attempt(&self, id: &str) {
        if let Err(e) = self.side_effect_attempt(Effect::Provision, id, 0).await {
            tracing::warn!(grant = %id, error = %e, "provisioning attempt could not run");
        }
    }

    /// One attempt at finishing the side effects of a grant's end, outside any fired schedule (the safety net,
    /// arming 0, is what it stands for).
    pub(crate) async fn deprovision_attempt(&self, id: &str) -> Result<JobOutcome, ServiceError> {
        self.side_effect_attempt(Effect::Deprovision, id, 0).await
    }

    /// Claims the side effect (a lease), runs its steps, records the outcome and arranges the next retry.
    /// `fired` is the arming of the schedule running this attempt (0 outside one).
    async fn side_effect_attempt(
        &self,
        effect: Effect,
        id: &str,
        fired: u32,
    ) -> Result<JobOutcome, ServiceError> {
        let now = self.clock.now();
        let lease = self.settings.retry.lease;
        let mut busy_until: Option<OffsetDateTime> = None;
        let claimed = self
            .modify_grant(id, |g| {
                busy_until = None;
                let state = effect.field(g)?;
                if state.state != SideEffectState::Pending {
                    return None;
                }
                if let Some(until) = state.leased_until(now) {
                    busy_until = Some(until);
                    return None;
                }
                let mut next = g.touched();
                match effect {
                    Effect::Provision
                        if g.status != GrantStatus::Active
                            && g.provisioning
                                .as_ref()
                                .is_none_or(|p| p.status_url.is_none()) =>
                    {
                        // Ended before access was set up: nothing to grant (the end's revoke covers the rest).
                        // A grant call the provisioner accepted is still followed to its end, so that the
                        // revoke comes after it.
                        let p = effect.field_mut(&mut next)?;
                        p.state = SideEffectState::Skipped;
                        p.reason = Some("the grant ended before access was set up".into());
                        p.next_attempt_at = None;
                        let event = AuditEvent::of(
                            &next,
                            AuditKind::ProvisioningSkipped,
                            None,
                            now,
                            serde_json::Value::Null,
                        );
                        return Some((next, Some(event)));
                    }
                    Effect::Deprovision => {
                        // Revoke only after an in-flight grant call has finished, never before it: one being
                        // made now (its lease), or one the provisioner accepted and still works on (its status
                        // is checked at `next_attempt_at`).
                        if let Some(until) =
                            g.provisioning.as_ref().and_then(|p| p.leased_until(now))
                        {
                            busy_until = Some(until);
                            return None;
                        }
                        if let Some(p) = g.provisioning.as_ref().filter(|p| {
                            p.state == SideEffectState::Pending && p.status_url.is_some()
                        }) {
                            busy_until = Some(p.next_attempt_at.unwrap_or(now).max(now));
                            return None;
                        }
                    }
                    Effect::Provision => {}
                }
                match effect.field_mut(&mut next)?.claim(now, lease) {
                    Claim::Claimed => Some((next, None)),
                    Claim::Busy(until) => {
                        busy_until = Some(until);
                        None
                    }
                    Claim::Finished => None,
                }
            })
            .await?;
        let Some(grant) = claimed.filter(|g| {
            effect
                .field(g)
                .is_some_and(|s| s.state == SideEffectState::Pending)
        }) else {
            if let Some(until) = busy_until {
                self.rearm(effect.kind(), id, fired, until + Duration::seconds(1))
                    .await?;
                return Ok(JobOutcome::Rearmed);
            }
            return Ok(JobOutcome::Nothing);
        };
        record_attempt_on_span(effect.field(&grant).map_or(1, |s| s.attempts));
        let report = match effect {
            Effect::Provision => self.provision_steps(&grant).await,
            Effect::Deprovision => self.deprovision_steps(&grant).await,
        };
        self.record_attempt(effect, &grant, report, fired).await
    }

    async fn provision_steps(&self, grant: &Grant) -> Report {
        let status_url = grant
            .provisioning
            .as_ref()
            .and_then(|p| p.status_url.clone());
        let result = match self.store.get_resource(&grant.resource).await {
            Ok(Some(resource)) => {
                let action = ProvisionAction::Grant;
                let answer = match &status_url {
                    Some(url) => self.provisioners.poll(&resource, action, grant, url).await,
                    None => self.provisioners.apply(&resource, action, grant).await,
                };
                called(answer, action)
            }
            Ok(None) => Err(Failure::retryable(format!(
                "resource `{}` no longer exists",
                grant.resource
            ))),
            Err(e) => Err(Failure::retryable(format!("reading resource: {e}"))),
        };
        match result {
            Ok(Called::Done(receipt)) => Report {
                provisioner_done: true,
                receipt: Some(receipt),
                ..Report::default()
            },
            Ok(Called::Accepted(url)) => Report {
                accepted: Some(url),
                ..Report::default()
            },
            Err(failure) => Report {
                error: Some(failure),
                ..Report::default()
            },
        }
    }

    async fn deprovision_steps(&self, grant: &Grant) -> Report {
        let state = grant
            .deprovisioning
            .clone()
            .unwrap_or_else(SideEffect::pending);
        let mut report = Report {
            provisioner_done: state.provisioner_done,
            skipped: state.reason.clone(),
            ..Report::default()
        };
        if !report.provisioner_done {
            let revoked = match state.status_url.as_deref() {
                // Accepted earlier: rule 8 was decided then; only its status is still open.
                Some(url) => self.check_revoke(grant, url).await,
                None => self.revoke_unless_still_granted(grant).await,
            };
            match revoked {
                Ok(Revoked::Skipped(reason)) => {
                    report.provisioner_done = true;
                    report.skipped = Some(reason);
                }
                Ok(Revoked::Done(receipt)) => {
                    report.provisioner_done = true;
                    report.receipt = Some(receipt);
                }
                Ok(Revoked::Accepted(url)) => {
                    report.accepted = Some(url);
                    return report;
                }
                Err(e) => {
                    report.error = Some(e);
                    return report;
                }
            }
        }
        if grant.expires_at.is_some()
            && let Err(e) = self
                .scheduler
                .cancel(&Job::armed(JobKind::Expire, &grant.id, grant.expiry_arming))
                .await
        {
            report.error = Some(Failure::retryable(format!(
                "deleting the expiry schedule: {e}"
            )));
            return report;
        }
        if grant
            .provisioning
            .as_ref()
            .is_some_and(|p| p.state == SideEffectState::Pending)
            && let Err(e) = self
                .scheduler
                .cancel(&Job::armed(
                    JobKind::Provision,
                    &grant.id,
                    live_arming(JobKind::Provision, grant),
                ))
                .await
        {
            report.error = Some(Failure::retryable(format!(
                "deleting the provisioning retry schedule: {e}"
            )));
        }
        if let Err(e) = self.close_audit_ticket(grant).await
            && report.error.is_none()
        {
            report.error = Some(e);
        }
        report
    }

    /// Rule 8: remove access unless another active grant of the same requester and resource still gives it.
    async fn revoke_unless_still_granted(&self, grant: &Grant) -> Result<Revoked, Failure> {
        let (requester, resource_id) = grant.access_key();
        let others = self
            .store
            .active_grants_for(requester, resource_id)
            .await
            .map_err(|e| Failure::retryable(format!("checking other grants: {e}")))?;
        if let Some(other) = others.iter().find(|g| g.id != grant.id) {
            return Ok(Revoked::Skipped(format!(
                "grant {} still gives {requester} access to {resource_id}",
                other.id
            )));
        }
        let resource = self.resource_for_revoke(resource_id).await?;
        let action = ProvisionAction::Revoke;
        let answer = self.provisioners.apply(&resource, action, grant).await;
        Ok(called(answer, action)?.into())
    }

    /// Checks again on a revoke the provisioner accepted.
    async fn check_revoke(&self, grant: &Grant, status_url: &str) -> Result<Revoked, Failure> {
        let resource = self.resource_for_revoke(&grant.resource).await?;
        let action = ProvisionAction::Revoke;
        let answer = self
            .provisioners
            .poll(&resource, action, grant, status_url)
            .await;
        Ok(called(answer, action)?.into())
    }

    async fn resource_for_revoke(
        &self,
        resource_id: &str,
    ) -> Result<crate::domain::Resource, Failure> {
        self.store
            .get_resource(resource_id)
            .await
            .map_err(|e| Failure::retryable(format!("reading resource: {e}")))?
            .ok_or_else(|| {
                Failure::retryable(format!(
                    "resource `{resource_id}` no longer exists; remove the access by hand"
                ))
            })
    }

    /// Takes out the session cut a removal of the grant's access placed ([`JobKind::EndSessionCut`]); when the
    /// provisioner could not, re-arms under the next arming at the engine's backoff, and past the retry budget
    /// logs at error level (the cut then denies only sessions that have all expired: harmless, but it takes
    /// room in the permission set's inline policy until the next cut prunes it).
    pub(super) async fn end_session_cut(&self, job: &Job) -> Result<JobOutcome, ServiceError> {
        let Some(grant) = self.store.get_grant(&job.grant_id).await? else {
            return Ok(JobOutcome::Nothing);
        };
        let resource = match self.store.get_resource(&grant.resource).await {
            Ok(Some(resource)) => resource,
            Ok(None) => {
                tracing::warn!(grant = %grant.id, resource = %grant.resource, "the resource is gone; its session cut stays until the next cut on the permission set prunes it");
                return Ok(JobOutcome::Nothing);
            }
            Err(e) => return Err(e.into()),
        };
        let Err(e) = self.provisioners.end_session_cut(&resource, &grant).await else {
            tracing::info!(grant = %grant.id, "session cut taken out");
            return Ok(JobOutcome::Done);
        };
        let now = self.clock.now();
        let failure = e.0;
        match self
            .settings
            .retry
            .retry_at(job.arming.saturating_add(1), &failure, now)
        {
            Some(at) => {
                self.scheduler
                    .schedule(&job.with_arming(job.arming.saturating_add(1)), at)
                    .await?;
                tracing::warn!(grant = %grant.id, error = %failure.message, %at, "the session cut could not be taken out; trying again later");
                Ok(JobOutcome::Rearmed)
            }
            None => {
                tracing::error!(grant = %grant.id, error = %failure.message, "the session cut could not be taken out; it stays until the next cut on the permission set prunes it");
                telemetry::metric("SessionCutsNotEnded", 1.0);
                Ok(JobOutcome::Nothing)
            }
        }
    }

    /// Writes the outcome of an attempt and arranges what comes next (the engine's retry, `service/jobs.rs`).
    async fn record_attempt(
        &self,
        effect: Effect,
        claimed: &Grant,
        report: Report,
        fired: u32,
    ) -> Result<JobOutcome, ServiceError> {
        let id = claimed.id.as_str();
        let attempts = effect.field(claimed).map_or(1, |s| s.attempts);
        let policy = &self.settings.retry;
        let now = self.clock.now();
        let accepted = report.accepted.clone();
        let retry_at = match (&report.error, &accepted) {
            (Some(failure), _) => policy.retry_at(attempts, failure, now),
            (None, Some(_)) => policy.check_again_at(attempts, now),
            (None, None) => None,
        };
        let error = match (&report.error, &accepted, retry_at) {
            (None, Some(_), None) => Some(Failure::permanent(format!(
                "provisioner {}: accepted, but not finished after {attempts} status checks",
                effect.action().as_str()
            ))),
            (error, _, _) => error.clone(),
        };
        // The retry is a new arming, above the one firing and the one recorded ("Armings" in the module docs).
        let retry_arming = next_arming(fired, live_arming(effect.kind(), claimed));
        if let Some(at) = retry_at {
            // Armed before the outcome is written: if this fails, the attempt errors and its own trigger retries.
            self.scheduler
                .schedule(&Job::armed(effect.kind(), id, retry_arming), at)
                .await?;
        }
        let receipt = report.receipt.clone().unwrap_or_default();
        if let (Effect::Deprovision, None, None, Some(at)) =
            (effect, &error, retry_at, receipt.cut_until)
        {
            // The provisioner cut the sessions with something to take out once none of them can still be
            // valid: armed before the removal is recorded, like a retry (if this fails the attempt is retried,
            // and placing the cut again is harmless).
            self.scheduler
                .schedule(&Job::new(JobKind::EndSessionCut, id), at)
                .await?;
        }
        let mut replaced = Vec::new();
        let written = self
            .modify_grant(id, |g| {
                let mut next = g.touched();
                let state = effect.field_mut(&mut next)?;
                if state.state != SideEffectState::Pending {
                    return None;
                }
                replaced = vec![fired, state.arming];
                if retry_at.is_some() && state.arming < retry_arming {
                    state.arming = retry_arming;
                }
                state.attempts = state.attempts.max(attempts);
                state.release();
                state.provisioner_done = report.provisioner_done;
                state.reason = report.skipped.clone();
                if accepted.is_some() {
                    state.status_url.clone_from(&accepted);
                }
                let kind;
                match (&error, retry_at) {
                    (None, Some(at)) => {
                        // Accepted: the provisioner works on it; the next attempt checks its status.
                        state.last_error = None;
                        state.next_attempt_at = Some(at);
                        return Some((next, None));
                    }
                    (None, None) => {
                        state.state = if report.skipped.is_some() {
                            SideEffectState::Skipped
                        } else {
                            SideEffectState::Done
                        };
                        state.last_error = None;
                        state.next_attempt_at = None;
                        state.status_url = None;
                        state.sessions = receipt.sessions;
                        kind = match (effect, report.skipped.is_some()) {
                            (Effect::Provision, _) => AuditKind::Provisioned,
                            (Effect::Deprovision, false) => AuditKind::Deprovisioned,
                            (Effect::Deprovision, true) => AuditKind::DeprovisioningSkipped,
                        };
                        // A provisioner that only asked for the removal (a ticket to a person) says so.
                        if kind == AuditKind::Deprovisioned && receipt.access_removed != Some(false)
                        {
                            next.record_removal(now, receipt.sessions, receipt.residual_until);
                        }
                    }
                    (Some(error), Some(at)) => {
                        state.last_error = Some(error.message.clone());
                        state.next_attempt_at = Some(at);
                        kind = if effect == Effect::Provision {
                            AuditKind::ProvisioningRetry
                        } else {
                            AuditKind::DeprovisioningRetry
                        };
                    }
                    (Some(error), None) => {
                        state.state = SideEffectState::Failed;
                        state.last_error = Some(error.message.clone());
                        state.next_attempt_at = None;
                        state.status_url = None;
                        kind = if effect == Effect::Provision {
                            AuditKind::ProvisioningFailed
                        } else {
                            AuditKind::DeprovisioningFailed
                        };
                    }
                }
                let state = effect.field(&next)?;
                let mut detail = serde_json::json!({
                    "attempts": state.attempts,
                    "error": state.last_error,
                    "reason": state.reason,
                    "next_attempt_at": state.next_attempt_at.map(super::grants::rfc3339),
                });
                if kind == AuditKind::Deprovisioned {
                    detail["access_removed_at"] =
                        next.access_removed_at.map(super::grants::rfc3339).into();
                    detail["residual_until"] =
                        next.residual_until.map(super::grants::rfc3339).into();
                    detail["sessions"] = serde_json::to_value(state.sessions).unwrap_or_default();
                }
                let event = AuditEvent::of(&next, kind, None, now, detail);
                Some((next, Some(event)))
            })
            .await?;
        let Some(grant) = written else {
            if retry_at.is_some() {
                // Somebody else finished it meanwhile: the retry just armed has nothing to do.
                self.remove_armings(&Job::new(effect.kind(), id), vec![retry_arming])
                    .await;
            }
            return Ok(JobOutcome::Nothing);
        };
        let state = effect
            .field(&grant)
            .cloned()
            .unwrap_or_else(SideEffect::pending);
        match state.state {
            SideEffectState::Pending => {
                replaced.push(retry_arming);
                replaced.retain(|a| *a != state.arming);
                self.remove_armings(&Job::new(effect.kind(), id), replaced)
                    .await;
                if state.last_error.is_none() {
                    tracing::info!(grant = %id, effect = effect.name(), attempts = state.attempts, next_attempt_at = ?state.next_attempt_at, "the provisioner accepted the call; its status will be checked");
                    return Ok(JobOutcome::Done);
                }
                tracing::warn!(grant = %id, effect = effect.name(), attempts = state.attempts, error = ?state.last_error, next_attempt_at = ?state.next_attempt_at, "side effect failed; retry scheduled");
                telemetry::metric(
                    if effect == Effect::Provision {
                        "ProvisioningRetries"
                    } else {
                        "DeprovisioningRetries"
                    },
                    1.0,
                );
                Ok(JobOutcome::Done)
            }
            finished => {
                if finished == SideEffectState::Failed {
                    tracing::error!(grant = %id, effect = effect.name(), attempts = state.attempts, error = ?state.last_error, "side effect FAILED; act by hand");
                    if effect == Effect::Deprovision {
                        self.notify(&grant, NotifyEvent::DeprovisioningFailed).await;
                    }
                    telemetry::metric(
                        if effect == Effect::Provision {
                            "ProvisioningFailed"
                        } else {
                            "DeprovisioningFailed"
                        },
                        1.0,
                    );
                } else {
                    tracing::info!(grant = %id, effect = effect.name(), attempts = state.attempts, state = ?finished, "side effect finished");
                }
                let live = Job::armed(effect.kind(), id, state.arming);
                if let Err(e) = self.scheduler.cancel(&live).await {
                    // Harmless: when it fires it finds nothing pending.
                    tracing::warn!(grant = %id, error = %e, "could not delete a finished retry schedule");
                }
                Ok(JobOutcome::Done)
            }
        }
    }

    /// Read-modify-write with a conditional write, retried when another writer got there first. `change`
    /// returns the next grant (with its version bumped) and an optional event, or `None` for "nothing to do".
    pub(super) async fn modify_grant<F>(
        &self,
        id: &str,
        change: F,
    ) -> Result<Option<Grant>, ServiceError>
    where
        F: FnMut(&Grant) -> Option<(Grant, Option<AuditEvent>)> + Send,
    {
        let Some(grant) = self.store.get_grant(id).await? else {
            return Ok(None);
        };
        self.modify_loaded(grant, change).await
    }

    /// [`Self::modify_grant`] from a grant the caller has just read: the first write is conditional on its
    /// version, and each conflict reads the grant again. `None` also when the grant is gone meanwhile.
    pub(super) async fn modify_loaded<F>(
        &self,
        mut grant: Grant,
        mut change: F,
    ) -> Result<Option<Grant>, ServiceError>
    where
        F: FnMut(&Grant) -> Option<(Grant, Option<AuditEvent>)> + Send,
    {
        for _ in 0..RACE_RETRIES {
            let Some((next, event)) = change(&grant) else {
                return Ok(None);
            };
            match self
                .store
                .update_grant(&next, grant.expected(), event.as_ref())
                .await
            {
                Ok(()) => return Ok(Some(next)),
                Err(StoreError::Conflict) => match self.store.get_grant(&grant.id).await? {
                    Some(current) => grant = current,
                    None => return Ok(None),
                },
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::conflict(
            "grant_busy",
            "the grant kept changing; try again",
        ))
    }
}
