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

use super::{ServiceError, Ticketbound};
use crate::domain::grant::SideEffect;
use crate::domain::notification::NotifyEvent;
use crate::domain::{AuditEvent, AuditKind, EndReason, Grant, GrantStatus, SideEffectState};
use crate::ports::{Job, JobKind, ProvisionAction, StoreError};
use crate::telemetry;

/// What [`Ticketbound::end_grant`] did.
#[derive(Debug, Clone)]
pub enum EndOutcome {
    /// This call ended (or cancelled) the grant; the grant as it is now.
    Ended(Grant),
    /// Somebody else had already closed it: nothing was done.
    AlreadyClosed(Grant),
}

/// What a scheduled job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// It did its work (ended a grant, finished or retried a side effect).
    Done,
    /// It was early, or another worker held the grant: it scheduled itself again.
    Rearmed,
    /// There was nothing to do (the grant had already moved on).
    Nothing,
}

/// How many times a write is retried when another writer moved the grant in between.
const RACE_RETRIES: usize = 8;

/// Which tracked side effect.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    Provision,
    Deprovision,
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
    }
}

/// Records `arming` as the live one on `next`, if the grant still wants that job (an active grant's expiry, a
/// pending side effect). `false` when it does not.
fn record_arming(kind: JobKind, next: &mut Grant, arming: u32) -> bool {
    let slot = match kind {
        JobKind::Expire if next.status == GrantStatus::Active => &mut next.expiry_arming,
        JobKind::PendingExpiry if next.status == GrantStatus::Pending => &mut next.pending_arming,
        JobKind::Expire | JobKind::Confirm | JobKind::Notify | JobKind::PendingExpiry => {
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
struct Report {
    provisioner_done: bool,
    skipped: Option<String>,
    error: Option<String>,
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
        self.end_grant_when(id, reason, actor, found_by, None).await
    }

    /// [`Self::end_grant_noting`], only while the grant is in status `only` when given (a request's deadline
    /// cancels a pending request, never the grant an approval made of it a moment before); otherwise
    /// [`EndOutcome::AlreadyClosed`] with nothing done.
    async fn end_grant_when(
        &self,
        id: &str,
        reason: EndReason,
        actor: Option<&str>,
        found_by: Option<&str>,
        only: Option<GrantStatus>,
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
            if let Some(found_by) = found_by {
                detail["found_by"] = found_by.into();
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
            self.notify(&next, NotifyEvent::Ended).await;
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

    /// Handles a scheduled job (the expiry function's event, or an in-process timer locally).
    pub async fn run_job(&self, job: &Job) -> Result<JobOutcome, ServiceError> {
        match job.job {
            JobKind::Expire => self.expire(&job.grant_id, job.arming).await,
            JobKind::Provision => {
                self.side_effect_attempt(Effect::Provision, &job.grant_id, job.arming)
                    .await
            }
            JobKind::Deprovision => {
                self.side_effect_attempt(Effect::Deprovision, &job.grant_id, job.arming)
                    .await
            }
            JobKind::Confirm => self.confirm_ticket(job).await,
            JobKind::Notify => self.run_notification(job).await,
            JobKind::PendingExpiry => self.pending_expired(&job.grant_id, job.arming).await,
        }
    }

    /// A request's decision deadline fired: still pending (and the deadline reached), it is cancelled as
    /// `approval_timed_out`, by the same conditional write as every other end, and only while it is pending:
    /// an approval landing at the same moment either wins (the grant stays active) or finds it cancelled.
    /// Decided or withdrawn meanwhile: nothing.
    async fn pending_expired(&self, id: &str, fired: u32) -> Result<JobOutcome, ServiceError> {
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
                None,
                Some(GrantStatus::Pending),
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
        let next = fired.max(live_arming(kind, &grant)).saturating_add(1);
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
        self.remove_armings(kind, id, stale).await;
        Ok(())
    }

    /// Deletes the given (stale) armings of a job. A failure is only logged: such a schedule fires once, finds
    /// the work done or due, and EventBridge deletes it after it fires.
    async fn remove_armings(&self, kind: JobKind, id: &str, mut armings: Vec<u32>) {
        armings.sort_unstable();
        armings.dedup();
        for arming in armings {
            if let Err(e) = self.scheduler.cancel(&Job::armed(kind, id, arming)).await {
                tracing::warn!(grant = %id, job = ?kind, arming, error = %e, "could not delete a stale schedule");
            }
        }
    }

    async fn expire(&self, id: &str, fired: u32) -> Result<JobOutcome, ServiceError> {
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
                if let Some(until) = state.lease_until.filter(|until| *until > now) {
                    busy_until = Some(until);
                    return None;
                }
                let mut next = g.touched();
                match effect {
                    Effect::Provision if g.status != GrantStatus::Active => {
                        // Ended before access was set up: nothing to grant (the end's revoke covers the rest).
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
                        // Revoke only after an in-flight grant call has finished, never before it.
                        if let Some(until) = g
                            .provisioning
                            .as_ref()
                            .and_then(|p| p.lease_until)
                            .filter(|u| *u > now)
                        {
                            busy_until = Some(until);
                            return None;
                        }
                    }
                    Effect::Provision => {}
                }
                let state = effect.field_mut(&mut next)?;
                state.attempts += 1;
                state.lease_until = Some(now + lease);
                Some((next, None))
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
        let report = match effect {
            Effect::Provision => self.provision_steps(&grant).await,
            Effect::Deprovision => self.deprovision_steps(&grant).await,
        };
        self.record_attempt(effect, &grant, report, fired).await
    }

    async fn provision_steps(&self, grant: &Grant) -> Report {
        let error = match self.store.get_resource(&grant.resource).await {
            Ok(Some(resource)) => self
                .provisioners
                .apply(&resource, ProvisionAction::Grant, grant)
                .await
                .err()
                .map(|e| format!("provisioner grant: {e}")),
            Ok(None) => Some(format!("resource `{}` no longer exists", grant.resource)),
            Err(e) => Some(format!("reading resource: {e}")),
        };
        Report {
            provisioner_done: error.is_none(),
            skipped: None,
            error,
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
            error: None,
        };
        if !report.provisioner_done {
            match self.revoke_unless_still_granted(grant).await {
                Ok(skipped) => {
                    report.provisioner_done = true;
                    report.skipped = skipped;
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
            report.error = Some(format!("deleting the expiry schedule: {e}"));
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
            report.error = Some(format!("deleting the provisioning retry schedule: {e}"));
        }
        if let Err(e) = self.close_audit_ticket(grant).await
            && report.error.is_none()
        {
            report.error = Some(e);
        }
        report
    }

    /// Rule 8: remove access unless another active grant of the same requester and resource still gives it.
    /// `Ok(Some(reason))` when skipped.
    async fn revoke_unless_still_granted(&self, grant: &Grant) -> Result<Option<String>, String> {
        let (requester, resource_id) = grant.access_key();
        let others = self
            .store
            .active_grants_for(requester, resource_id)
            .await
            .map_err(|e| format!("checking other grants: {e}"))?;
        if let Some(other) = others.iter().find(|g| g.id != grant.id) {
            return Ok(Some(format!(
                "grant {} still gives {requester} access to {resource_id}",
                other.id
            )));
        }
        let resource = self
            .store
            .get_resource(resource_id)
            .await
            .map_err(|e| format!("reading resource: {e}"))?
            .ok_or_else(|| {
                format!("resource `{resource_id}` no longer exists; remove the access by hand")
            })?;
        self.provisioners
            .apply(&resource, ProvisionAction::Revoke, grant)
            .await
            .map_err(|e| format!("provisioner revoke: {e}"))?;
        Ok(None)
    }

    /// Writes the outcome of an attempt and arranges what comes next.
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
        let retry_at = (report.error.is_some() && attempts < policy.max_attempts)
            .then(|| now + policy.delay_after(attempts));
        // The retry is a new arming, above the one firing and the one recorded ("Armings" in the module docs).
        let retry_arming = fired
            .max(live_arming(effect.kind(), claimed))
            .saturating_add(1);
        if let Some(at) = retry_at {
            // Armed before the outcome is written: if this fails, the attempt errors and its own trigger retries.
            self.scheduler
                .schedule(&Job::armed(effect.kind(), id, retry_arming), at)
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
                state.lease_until = None;
                state.provisioner_done = report.provisioner_done;
                state.reason = report.skipped.clone();
                let kind;
                match (&report.error, retry_at) {
                    (None, _) => {
                        state.state = if report.skipped.is_some() {
                            SideEffectState::Skipped
                        } else {
                            SideEffectState::Done
                        };
                        state.last_error = None;
                        state.next_attempt_at = None;
                        kind = match (effect, report.skipped.is_some()) {
                            (Effect::Provision, _) => AuditKind::Provisioned,
                            (Effect::Deprovision, false) => AuditKind::Deprovisioned,
                            (Effect::Deprovision, true) => AuditKind::DeprovisioningSkipped,
                        };
                    }
                    (Some(error), Some(at)) => {
                        state.last_error = Some(error.clone());
                        state.next_attempt_at = Some(at);
                        kind = if effect == Effect::Provision {
                            AuditKind::ProvisioningRetry
                        } else {
                            AuditKind::DeprovisioningRetry
                        };
                    }
                    (Some(error), None) => {
                        state.state = SideEffectState::Failed;
                        state.last_error = Some(error.clone());
                        state.next_attempt_at = None;
                        kind = if effect == Effect::Provision {
                            AuditKind::ProvisioningFailed
                        } else {
                            AuditKind::DeprovisioningFailed
                        };
                    }
                }
                let detail = serde_json::json!({
                    "attempts": state.attempts,
                    "error": state.last_error,
                    "reason": state.reason,
                    "next_attempt_at": state.next_attempt_at.map(super::grants::rfc3339),
                });
                let event = AuditEvent::of(&next, kind, None, now, detail);
                Some((next, Some(event)))
            })
            .await?;
        let Some(grant) = written else {
            if retry_at.is_some() {
                // Somebody else finished it meanwhile: the retry just armed has nothing to do.
                self.remove_armings(effect.kind(), id, vec![retry_arming])
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
                self.remove_armings(effect.kind(), id, replaced).await;
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
                    tracing::error!(grant = %id, effect = effect.name(), attempts = state.attempts, error = ?state.last_error, "side effect FAILED after its retry budget; act by hand");
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
